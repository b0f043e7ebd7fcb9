#!/usr/bin/env python3
"""A busy worker's private memory in bfloat16 against float32, and what bounds it, in one run (#30).

    python benchmarks/lean_workers.py --seconds 120
    python benchmarks/lean_workers.py --seconds 600 --configs "DTYPE=float32" "DTYPE=bfloat16" \
        "DTYPE=bfloat16 MALLOC_ARENA_MAX=2"

Each configuration is a real gunicorn (2 gevent workers, the default model, MAX_REQUESTS=0 so no worker is
recycled, the cache off) under the same load for `--seconds`: 4 keep-alive clients, each request 1-16 random
texts of 2-400 words (widths from 4 to 512 tokens: many distinct batch shapes). Every `--sample` seconds the
workers' private memory (smaps_rollup: what a worker alone holds) is read; the table gives its last value and
its most, per worker, and the texts/s the configuration served. A configuration is the settings (or allocator
variables: `MALLOC_ARENA_MAX`, `LD_PRELOAD` of jemalloc or tcmalloc, `ONEDNN_PRIMITIVE_CACHE_CAPACITY`) it runs
with, as `KEY=VALUE` words.

`--rounds N` runs the configurations in turn N times (first, second, ..., first, second, ...), so a drift in
the machine's speed between minutes falls on every configuration alike; the table then gives each one's median
texts/s, its texts/s in each round, and its median ratio to the first configuration of the same round:

    python benchmarks/lean_workers.py --seconds 150 --rounds 3 --configs "DTYPE=bfloat16" \
        "DTYPE=bfloat16 LD_PRELOAD=/usr/lib/x86_64-linux-gnu/libjemalloc.so.2"
"""

from __future__ import annotations

import argparse
import http.client
import json
import random
import statistics
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from serving import ROOT, free_port, gunicorn_command, running, service_env  # noqa: E402
from soak import WORDS, children, memory_mib  # noqa: E402

DEFAULT_CONFIGS = (
    "DTYPE=float32",
    "DTYPE=bfloat16",
    "DTYPE=bfloat16 MALLOC_ARENA_MAX=2",
    "DTYPE=bfloat16 ONEDNN_PRIMITIVE_CACHE_CAPACITY=64",
)


def load(port: int, seconds: float, clients: int) -> int:
    """Texts embedded in `seconds` by `clients` keep-alive clients."""
    deadline = time.monotonic() + seconds
    counts = [0] * clients

    def client(number: int) -> None:
        rng = random.Random(number)
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        while time.monotonic() < deadline:
            texts = [" ".join(rng.choices(WORDS, k=rng.randint(2, 400))) for _ in range(rng.randint(1, 16))]
            connection.request("POST", "/embed_text", json.dumps({"texts": texts, "cache": False}).encode())
            response = connection.getresponse()
            response.read()
            assert response.status == 200, response.status
            counts[number] += len(texts)

    threads = [threading.Thread(target=client, args=(n,)) for n in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return sum(counts)


def measure(config: str, seconds: float, clients: int, sample: float, model_path: str) -> dict:
    port = free_port()
    env = service_env(model_path, port, config, WORKERS="2", MAX_REQUESTS="0")
    with running(config, gunicorn_command(), env, f"http://127.0.0.1:{port}/ready", timeout=600) as server:
        samples: dict[int, list[float]] = {}
        result: dict = {}
        thread = threading.Thread(target=lambda: result.update(texts=load(port, seconds, clients)))
        started = time.monotonic()
        thread.start()
        while thread.is_alive():
            for pid in children(server.pid):
                memory = memory_mib(pid)
                if memory:
                    samples.setdefault(pid, []).append(memory["private"])
            time.sleep(sample)
        thread.join()
        elapsed = time.monotonic() - started
    return {
        "config": config,
        "texts_per_s": result.get("texts", 0) / elapsed,
        "private_last_mib": [values[-1] for values in samples.values()],
        "private_max_mib": [max(values) for values in samples.values()],
    }


def summary(runs: list[dict], firsts: list[dict]) -> dict:
    """One configuration over the rounds: median texts/s, median ratio to the round's first configuration,
    and memory as the last round left it (the most: over all rounds)."""
    return {
        "config": runs[0]["config"],
        "texts_per_s": statistics.median(r["texts_per_s"] for r in runs),
        "rounds": [r["texts_per_s"] for r in runs],
        "vs_first": statistics.median(r["texts_per_s"] / f["texts_per_s"] for r, f in zip(runs, firsts, strict=True)),
        "private_last_mib": runs[-1]["private_last_mib"],
        "private_max_mib": [max(values) for values in zip(*(r["private_max_mib"] for r in runs), strict=False)],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=120)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--sample", type=float, default=5.0)
    parser.add_argument("--configs", nargs="+", default=list(DEFAULT_CONFIGS))
    parser.add_argument("--rounds", type=int, default=1, help="interleaved rounds of all the configurations")
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    from app.config import default_model_path

    model_path = str(default_model_path())
    rounds = [
        [measure(c, args.seconds, args.clients, args.sample, model_path) for c in args.configs]
        for _ in range(args.rounds)
    ]
    rows = [summary([r[i] for r in rounds], [r[0] for r in rounds]) for i in range(len(args.configs))]
    base = rows[0]
    print(
        "| configuration | texts/s (median) | each round | vs first, same round (median) "
        "| worker private MiB, last | most | most vs first |"
    )
    print("|---|---|---|---|---|---|---|")
    for row in rows:
        most = max(row["private_max_mib"], default=0)
        print(
            f"| `{row['config']}` | {row['texts_per_s']:.1f} | {', '.join(f'{v:.1f}' for v in row['rounds'])} | "
            f"{row['vs_first']:.3f}x | {', '.join(f'{v:.0f}' for v in row['private_last_mib'])} | {most:.0f} | "
            f"{most / max(max(base['private_max_mib'], default=1), 1):.2f}x |"
        )
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
