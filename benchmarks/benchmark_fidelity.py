#!/usr/bin/env python3
"""Does `benchmark.py` measure the model? Its default run against the service, next to an independent client
that sends distinct texts with the cache off, in one run; and `--cache on` for the figure the cache gives.

    python benchmarks/benchmark_fidelity.py                 # the default model, 10 s per measurement, c=8

1. `benchmark.py --url ... --concurrency 8 --duration S` with its defaults
   (its built-in corpus; `"cache": false`, since the server is this service).
2. An independent client: 8 threads, each on a keep-alive connection, posting
   one distinct text per request (runs of 8-120 words of the license texts,
   benchmarks/rerank.py's corpus, none sent twice) to `/embed_text` with `"cache": false`.
3. `benchmark.py ... --cache on` over a corpus of 12 texts: what a load test
   measures when it measures the cache.

Prints each rate and the ratio of (1) to (2), which should be near 1.
"""

from __future__ import annotations

import argparse
import http.client
import json
import subprocess
import sys
import tempfile
import threading
import time

from rerank import corpus
from serving import ROOT, free_port, gunicorn_command, post_json, running, service_env


def benchmark_py(port: int, seconds: float, concurrency: int, *extra: str) -> dict:
    command = [sys.executable, str(ROOT / "benchmark.py"), "--url", f"http://127.0.0.1:{port}", "--json", "--quiet"]
    command += ["--concurrency", str(concurrency), "--duration", str(seconds), "--warmup", "2", *extra]
    return json.loads(subprocess.run(command, capture_output=True, text=True, check=True).stdout)


def independent(port: int, seconds: float, concurrency: int) -> float:
    texts = iter(corpus(200_000, seed=7))
    lock = threading.Lock()
    done = [0]
    deadline = time.perf_counter() + seconds

    def client():
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        while time.perf_counter() < deadline:
            with lock:
                text = next(texts)
            status, _ = post_json(port, "/embed_text", {"texts": [text], "cache": False}, connection)
            if status == 200:
                with lock:
                    done[0] += 1
        connection.close()

    started = time.perf_counter()
    threads = [threading.Thread(target=client) for _ in range(concurrency)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return done[0] / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--concurrency", type=int, default=8)
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    from app.config import default_model_path

    port = free_port()
    env = service_env(str(default_model_path()), port, "")
    with running("service", gunicorn_command(), env, f"http://127.0.0.1:{port}/ready", timeout=600):
        default = benchmark_py(port, args.seconds, args.concurrency)["results"][0]
        other = independent(port, args.seconds, args.concurrency)
        with tempfile.NamedTemporaryFile("w", suffix=".txt") as few:
            few.write("\n".join(corpus(12, seed=3)))
            few.flush()
            cached = benchmark_py(port, args.seconds, args.concurrency, "--cache", "on", "--corpus", few.name)
        cached = cached["results"][0]
    print(f"c={args.concurrency}, {args.seconds:g} s each, one text per request\n")
    print("| client | texts/s | cache hit ratio |")
    print("|---|---|---|")
    print(f"| benchmark.py, defaults (cache off) | {default['items_per_s']:.1f} | {default['cache_hit_ratio']} |")
    print(f"| independent client, distinct texts, cache off | {other:.1f} | - |")
    print(f"| benchmark.py --cache on, 12 texts | {cached['items_per_s']:.1f} | {cached['cache_hit_ratio']:.2f} |")
    print(f"\nbenchmark.py / independent: {default['items_per_s'] / other:.2f}")


if __name__ == "__main__":
    main()
