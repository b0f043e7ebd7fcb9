#!/usr/bin/env python3
"""Small requests against big ones (#30), in interleaved rounds.

    python benchmarks/small_requests.py                        # the default settings
    python benchmarks/small_requests.py --rounds 2 --config "PYTHONPATH=benchmarks/two_writes RETURN_WAIT=0" \
        --config "RETURN_WAIT=0" --config ""

For each configuration (environment overrides; "" is the defaults), a real gunicorn (the default model, its
cache off) driven by benchmark.py with keep-alive clients: one-text requests at concurrency 8, sixteen-text
requests at concurrency 4, and one-text requests at concurrency 1. Reported per configuration, as the mean
over its rounds: texts/s of each load and their ratio (the issue's goal: c8 x 1 >= 0.85 x c4 x 16), the
server's CPU milliseconds per text under each (its workers' user and system time, from /proc: a measure the
other tenants of a shared machine disturb less than texts/s), the mean rows per forward pass (from /metrics),
and the p50 at concurrency 1 against the bare model's single-text forward (tokenizer + model + pooling in this
process, eager, on one thread as a worker has and on every core). A second table splits the CPU per text by
thread: each worker's event loop (its main thread: HTTP, Flask, tokenizing, the response), its model threads
(the forward passes) and the load generator itself (benchmark.py, on the same cores). The configurations take
turns, round after round: this machine's speed drifts between minutes by more than the effects measured.

`PYTHONPATH=benchmarks/two_writes` puts gunicorn's own two writes per response back (the baseline for
app/gunicorn_response.py); `RETURN_WAIT=0` turns the batcher's wait for returning requests off.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from serving import ROOT, free_port, gunicorn_command, running, service_env  # noqa: E402
from soak import children  # noqa: E402
from throughput import CORPUS_FILES, bare_model, build_corpus  # noqa: E402

LOADS = [("1 text, c=8", 1, 8), ("16 texts, c=4", 16, 4), ("1 text, c=1", 1, 1)]


def cpu_seconds(pid: int, thread: int) -> float:
    fields = Path(f"/proc/{pid}/task/{thread}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def thread_cpu(workers: list[int]) -> tuple[float, float]:
    """CPU seconds so far of the workers' main threads (gevent's event loop) and of all their other threads
    (the model's forward passes: gevent's thread pool, torch's)."""
    loop = other = 0.0
    for pid in workers:
        for thread in map(int, os.listdir(f"/proc/{pid}/task")):
            try:
                used = cpu_seconds(pid, thread)
            except OSError:  # a thread that ended meanwhile
                continue
            if thread == pid:
                loop += used
            else:
                other += used
    return loop, other


def children_cpu() -> float:
    times = os.times()
    return times.children_user + times.children_system


def passes(url: str) -> tuple[float, float]:
    """(rows, passes) so far, from the batch-size histogram."""
    text = urllib.request.urlopen(url + "/metrics", timeout=30).read().decode()
    total = re.search(r"embedding_batch_size_sum\{[^}]*\} ([0-9.e+]+)", text)
    count = re.search(r"embedding_batch_size_count\{[^}]*\} ([0-9.e+]+)", text)
    return (float(total.group(1)), float(count.group(1))) if total and count else (0.0, 0.0)


def drive(url: str, corpus: Path, items: int, concurrency: int, seconds: float, warmup: float) -> dict:
    command = [sys.executable, str(ROOT / "benchmark.py"), "--url", url, "--endpoint", "native"]
    command += ["--corpus", str(corpus), "--batch", str(items), "--concurrency", str(concurrency)]
    command += ["--duration", str(seconds), "--warmup", str(warmup), "--json", "--quiet"]
    return json.loads(subprocess.run(command, capture_output=True, text=True, check=True).stdout)["results"][0]


def measure(config: str, model_path: str, corpus: Path, args) -> dict:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = service_env(model_path, port, config, CACHE_BYTES="0")
    row: dict = {}
    with running(config or "defaults", gunicorn_command(), env, url + "/ready", args.start_timeout) as server:
        drive(url, corpus, 1, 4, args.warmup, 0)  # every worker warm before anything is counted
        for name, items, concurrency in LOADS:
            workers = children(server.pid)
            loop, model = thread_cpu(workers)
            rows, count = passes(url)
            client = children_cpu()
            began = time.monotonic()
            result = drive(url, corpus, items, concurrency, args.seconds, 0)
            elapsed = time.monotonic() - began
            client = children_cpu() - client
            loop_after, model_after = thread_cpu(workers)
            rows_after, count_after = passes(url)
            texts = max(result["items_per_s"] * elapsed, 1)
            row[name] = {
                "texts_per_s": result["items_per_s"],
                "p50_ms": result["p50_ms"],
                "cpu_ms_per_text": 1000 * (loop_after - loop + model_after - model) / texts,
                "loop_ms_per_text": 1000 * (loop_after - loop) / texts,
                "model_ms_per_text": 1000 * (model_after - model) / texts,
                "client_ms_per_text": 1000 * client / texts,
                "rows_per_pass": (rows_after - rows) / max(count_after - count, 1),
            }
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", action="append", help="environment overrides (repeat; default: the defaults)")
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--seconds", type=float, default=12.0, help="measured seconds per load")
    parser.add_argument("--warmup", type=float, default=3.0)
    parser.add_argument("--start-timeout", type=float, default=300.0)
    parser.add_argument("--json", help="also write every round's figures here")
    args = parser.parse_args()
    configs = args.config or [""]
    sys.path.insert(0, str(ROOT))
    from app.config import default_model_path
    from app.engine.device import dtype_name, resolve_dtype

    model_path = str(default_model_path())
    texts = build_corpus(CORPUS_FILES, 1000)
    with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False) as handle:
        handle.write("\n".join(texts))
    corpus = Path(handle.name)
    dtype = dtype_name(resolve_dtype("auto", "cpu"))
    bare = {threads: bare_model(model_path, texts, dtype, threads, 3.0) for threads in (1, os.cpu_count())}

    rounds: dict[str, list[dict]] = {config: [] for config in configs}
    for number in range(args.rounds):
        for config in configs:
            print(f"round {number + 1}: {config or 'defaults'}", file=sys.stderr, flush=True)
            measured = measure(config, model_path, corpus, args)
            if measured:
                rounds[config].append(measured)

    def mean(config: str, load: str, key: str) -> float:
        return statistics.mean(r[load][key] for r in rounds[config])

    print(
        f"bare model ({dtype}, eager): single text p50 {bare[1]['single_p50_ms']:.1f} ms on 1 thread, "
        f"{bare[os.cpu_count()]['single_p50_ms']:.1f} ms on {os.cpu_count()}\n"
    )
    print(
        "| configuration | rounds | c8 x 1 texts/s | c4 x 16 texts/s | ratio | CPU ms/text c8 x 1 | c4 x 16 "
        "| rows/pass c8 x 1 | c4 x 16 | c1 p50 ms | x bare 1 thread | x bare all cores |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    small, big, single = (load for load, _, _ in LOADS)
    for config in configs:
        if not rounds[config]:
            print(f"| `{config or 'defaults'}` | failed | | | | | | | | | | |")
            continue
        p50 = mean(config, single, "p50_ms")
        print(
            f"| `{config or 'defaults'}` | {len(rounds[config])} | {mean(config, small, 'texts_per_s'):.1f} | "
            f"{mean(config, big, 'texts_per_s'):.1f} | "
            f"{mean(config, small, 'texts_per_s') / mean(config, big, 'texts_per_s'):.2f} | "
            f"{mean(config, small, 'cpu_ms_per_text'):.2f} | {mean(config, big, 'cpu_ms_per_text'):.2f} | "
            f"{mean(config, small, 'rows_per_pass'):.2f} | {mean(config, big, 'rows_per_pass'):.2f} | "
            f"{p50:.1f} | {p50 / bare[1]['single_p50_ms']:.2f} | {p50 / bare[os.cpu_count()]['single_p50_ms']:.2f} |"
        )
    print(
        "\nCPU ms per text by thread: the workers' event loops, their model threads, and the load generator\n\n"
        "| configuration | event loop c8 x 1 | c4 x 16 | model c8 x 1 | c4 x 16 | client c8 x 1 | c4 x 16 "
        "| all c8 x 1 | all c4 x 16 | ratio of all |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for config in configs:
        if not rounds[config]:
            continue
        cells = [
            mean(config, load, f"{key}_ms_per_text") for key in ("loop", "model", "client") for load in (small, big)
        ]
        every = [cells[0] + cells[2] + cells[4], cells[1] + cells[3] + cells[5]]
        print(
            f"| `{config or 'defaults'}` | "
            + " | ".join(f"{cell:.2f}" for cell in cells + every)
            + f" | {every[1] / every[0]:.2f} |"
        )
    if args.json:
        Path(args.json).write_text(json.dumps({"bare": bare, "rounds": rounds}, indent=2))


if __name__ == "__main__":
    main()
