#!/usr/bin/env python3
"""What the embedding cache buys: texts/s at hit rates 0, 50, 90 and 100 %, cache off / local / local + Redis.

    python benchmarks/cache.py                   # the default model, the service's defaults otherwise
    python benchmarks/cache.py --seconds 6 --redis-server /usr/bin/redis-server

For each configuration the service is started (2 workers here, one per core),
and each client holds one keep-alive connection (so it stays with one worker,
whose local tier it warms first with its own set of texts, unmeasured). Then
each request's texts come from that warm set with the hit rate's probability,
else they are texts never sent before. Scenarios: single texts from 8 clients,
and 16-text requests from 4 clients. Texts are license paragraphs (10-60 words).
First, without a server's run-to-run noise, what a miss costs: one engine in
this process, cache on and off alternating on texts never seen before.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import random
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

from serving import free_port, gunicorn_command, post_json, running, service_env

HIT_RATES = (0.0, 0.5, 0.9, 1.0)
SCENARIOS = (("1 text, c=8", 1, 8), ("16 texts, c=4", 16, 4))


def paragraphs() -> list[str]:
    words = []
    for name in ("GPL-3", "Apache-2.0", "MPL-2.0"):
        path = Path("/usr/share/common-licenses") / name
        if path.is_file():
            words += path.read_text(errors="replace").split()
    rng = random.Random(0)
    out = []
    for _ in range(400):
        length = rng.randint(10, 60)
        start = rng.randrange(0, len(words) - length)
        out.append(" ".join(words[start : start + length]))
    return out


class TextSource:
    """Texts never sent before: a paragraph and a counter, so each is new to the model and the cache."""

    def __init__(self, base: list[str], tag: str):
        self.base, self.tag, self.count = base, tag, 0
        self.lock = threading.Lock()

    def fresh(self) -> str:
        with self.lock:
            self.count += 1
            number = self.count
        return f"{self.base[number % len(self.base)]} [{self.tag}-{number}]"


def measure(port: int, items: int, clients: int, hit_rate: float, source: TextSource, seconds: float) -> float:
    warm_size = 64
    results = []
    lock = threading.Lock()
    start_line = threading.Barrier(clients + 1)

    def client(number: int):
        rng = random.Random(number)
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        warm = [source.fresh() for _ in range(warm_size)]
        for i in range(0, warm_size, 16):
            post_json(port, "/embed_text", {"texts": warm[i : i + 16]}, connection)
        start_line.wait()
        done, deadline = 0, time.monotonic() + seconds
        while time.monotonic() < deadline:
            texts = [rng.choice(warm) if rng.random() < hit_rate else source.fresh() for _ in range(items)]
            status, _ = post_json(port, "/embed_text", {"texts": texts}, connection)
            if status != 200:
                raise SystemExit(f"HTTP {status}")
            done += items
        with lock:
            results.append(done)

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    for thread in threads:
        thread.start()
    start_line.wait()
    started = time.monotonic()
    for thread in threads:
        thread.join()
    return sum(results) / (time.monotonic() - started)


def in_process_miss_cost(base: list[str], rounds: int = 40) -> dict:
    """The cache's own cost on a miss, without a server's run-to-run noise: one engine in this process,
    16 texts never seen before per call, cache on and off alternating."""
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from app.config import Settings
    from app.engine import Engine, EngineConfig

    engine = Engine.load(EngineConfig.from_settings(Settings.from_env({})))
    engine.start_worker(batching=False)
    model = engine.resolve(None)
    source = TextSource(base, "in-process")
    seconds = {True: 0.0, False: 0.0}
    for round_ in range(rounds):
        for use_cache in (True, False) if round_ % 2 else (False, True):
            texts = [source.fresh() for _ in range(16)]
            started = time.perf_counter()
            engine.embed_texts(model, texts, use_cache=use_cache)
            seconds[use_cache] += time.perf_counter() - started
    return {
        "off_ms": seconds[False] / rounds * 1e3,
        "on_ms": seconds[True] / rounds * 1e3,
        "ratio": seconds[True] / seconds[False],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=15.0, help="per measurement")
    parser.add_argument("--redis-server", default=shutil.which("redis-server"), help="for the Redis tier")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    base = paragraphs()
    miss = in_process_miss_cost(base)
    print(
        f"  in-process, 16 new texts: {miss['off_ms']:.1f} ms cache off, {miss['on_ms']:.1f} ms cache on",
        file=sys.stderr,
        flush=True,
    )
    redis_port = free_port()
    redis = None
    if args.redis_server:
        redis = subprocess.Popen(
            [args.redis_server, "--port", str(redis_port), "--save", "", "--appendonly", "no"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
    configs = {"off": {"CACHE_BYTES": "0"}, "local": {}}
    if redis is not None:
        configs["local + Redis"] = {"REDIS_URL": f"redis://127.0.0.1:{redis_port}/0"}
    rows = []
    try:
        for config, settings in configs.items():
            port = free_port()
            env = service_env(os.environ.get("MODEL_PATH", ""), port, "", **settings)
            if not env["MODEL_PATH"]:
                del env["MODEL_PATH"]
            with running(config, gunicorn_command(), env, f"http://127.0.0.1:{port}/ready", timeout=300):
                for scenario, items, clients in SCENARIOS:
                    for hit_rate in HIT_RATES if config != "off" else (0.0,):
                        source = TextSource(base, f"{config}-{scenario}-{hit_rate}")
                        rate = measure(port, items, clients, hit_rate, source, args.seconds)
                        rows.append({"config": config, "scenario": scenario, "hit_rate": hit_rate, "texts_per_s": rate})
                        print(
                            f"  {config}, {scenario}, {hit_rate:.0%} hits: {rate:.0f} texts/s",
                            file=sys.stderr,
                            flush=True,
                        )
    finally:
        if redis is not None:
            redis.terminate()
    if args.json:
        print(json.dumps({"in_process_miss": miss, "rows": rows}, indent=2))
        return
    off = {row["scenario"]: row["texts_per_s"] for row in rows if row["config"] == "off"}
    print(f"{os.cpu_count()} cores, the default model, {args.seconds:g} s per measurement\n")
    print("| scenario | cache | hit rate | texts/s | x cache off |")
    print("|---|---|---|---|---|")
    for row in rows:
        print(
            f"| {row['scenario']} | {row['config']} | {row['hit_rate']:.0%} | {row['texts_per_s']:.0f} | "
            f"{row['texts_per_s'] / off[row['scenario']]:.2f} |"
        )
    print(
        f"\nA miss, in-process (16 new texts a call, cache on and off alternating, 40 calls each): "
        f"{miss['on_ms']:.2f} ms with the cache against {miss['off_ms']:.2f} ms without: x{miss['ratio']:.3f}"
    )


if __name__ == "__main__":
    main()
