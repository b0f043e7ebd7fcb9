#!/usr/bin/env python3
"""A soak and fault run users can repeat: steady load on a real gunicorn, a worker recycle and a SIGHUP reload in
the middle, bad requests mixed in; per-worker RSS over time, errors and latency percentiles.

    python benchmarks/soak.py                                   # 60 s, 4 clients, the default model
    python benchmarks/soak.py --seconds 300 --clients 8 --max-requests 5000 --json soak.json

Bounded in time (--seconds) and count (--max-total); it stops by itself and stops its server. Every client
holds a keep-alive connection and sends 1-8 random texts per request (so the embedding cache mostly misses);
one request in 20 is invalid (an empty text) and must be a 400. MAX_REQUESTS makes workers recycle during the
run; at half time the master gets SIGHUP (new workers, the old ones drained). Counted as errors: connection
failures, a 5xx, a 400 for a valid body or anything but 400 for an invalid one.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import random
import signal
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from serving import ROOT, free_port, gunicorn_command, running, service_env  # noqa: E402

WORDS = (
    "embedding vector model token batch worker request latency memory cache index query document search "
    "retrieval rerank cosine dimension normal prompt server client socket thread queue signal reload "
    "recycle gunicorn nginx kubernetes python torch tensor matrix layer attention head pooling"
).split()


def children(pid: int) -> list[int]:
    try:
        return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def memory_mib(pid: int) -> dict | None:
    """RSS (shared pages counted in every process that touched them) and private memory (what the process
    alone holds: what a leak would grow), from smaps_rollup."""
    try:
        fields = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()[1:])
    except OSError:
        return None
    kib = {key: int(value.split()[0]) for key, value in fields.items()}
    return {
        "rss": round(kib["Rss"] / 1024, 1),
        "private": round((kib["Private_Clean"] + kib["Private_Dirty"]) / 1024, 1),
        "anonymous": round(kib["Anonymous"] / 1024, 1),
        "private_dirty": round(kib["Private_Dirty"] / 1024, 1),
    }


class Load:
    def __init__(self, port: int, deadline: float, max_total: int, seed: int):
        self.port, self.deadline, self.max_total = port, deadline, max_total
        self.lock = threading.Lock()
        self.latencies: list[float] = []
        self.statuses: dict[str, int] = {}
        self.errors: list[str] = []
        self.sent = 0
        self.seed = seed

    def client(self, number: int) -> None:
        rng = random.Random(self.seed * 1000 + number)
        connection = None
        while time.monotonic() < self.deadline:
            with self.lock:
                if self.sent >= self.max_total:
                    return
                self.sent += 1
            invalid = rng.random() < 0.05
            texts = [" ".join(rng.choices(WORDS, k=rng.randint(3, 40))) for _ in range(rng.randint(1, 8))]
            if invalid:
                texts[rng.randrange(len(texts))] = ""
            body = json.dumps({"texts": texts}).encode()
            started = time.perf_counter()
            try:
                connection = connection or http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
                connection.request("POST", "/embed_text", body, {"Content-Type": "application/json"})
                response = connection.getresponse()
                response.read()
                status = response.status
            except (OSError, http.client.HTTPException) as exc:
                # A recycled or reloaded worker closes its idle keep-alive connections: reconnect once.
                connection = None
                try:
                    connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
                    connection.request("POST", "/embed_text", body, {"Content-Type": "application/json"})
                    response = connection.getresponse()
                    response.read()
                    status = response.status
                except (OSError, http.client.HTTPException) as again:
                    connection = None
                    with self.lock:
                        self.errors.append(f"connection: {type(exc).__name__}, then {type(again).__name__}")
                    continue
            elapsed = time.perf_counter() - started
            with self.lock:
                self.statuses[str(status)] = self.statuses.get(str(status), 0) + 1
                if (status != 400) if invalid else (status != 200):
                    self.errors.append(f"status {status} for a{'n invalid' if invalid else ' valid'} body")
                elif not invalid:
                    self.latencies.append(elapsed)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--max-requests", type=int, default=1500, help="MAX_REQUESTS: each worker recycles after")
    parser.add_argument("--max-total", type=int, default=200_000, help="stop after this many requests")
    parser.add_argument("--sample", type=float, default=2.0, help="seconds between RSS samples")
    parser.add_argument("--model-path", default="")
    parser.add_argument(
        "--config", default="", help="extra settings, e.g. 'WORKER_CLASS=gthread ALLOW_UNBOUNDED_QUEUE=true THREADS=4'"
    )
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args()

    if not args.model_path:
        sys.path.insert(0, str(ROOT))
        from app.config import default_model_path

        args.model_path = str(default_model_path())
    port = free_port()
    env = service_env(
        args.model_path,
        port,
        args.config,
        WORKERS=str(args.workers),
        MAX_REQUESTS=str(args.max_requests),
        MAX_REQUESTS_JITTER="0",
    )
    samples: list[dict] = []
    events: list[dict] = []
    with running("soak", gunicorn_command(), env, f"http://127.0.0.1:{port}/ready", timeout=300) as server:
        started = time.monotonic()
        load = Load(port, started + args.seconds, args.max_total, seed=1)
        threads = [threading.Thread(target=load.client, args=(n,)) for n in range(args.clients)]
        for thread in threads:
            thread.start()
        hup_sent = False
        while any(thread.is_alive() for thread in threads):
            now = time.monotonic() - started
            workers = children(server.pid)
            samples.append(
                {
                    "t": round(now, 1),
                    "master": memory_mib(server.pid),
                    "workers": {str(pid): memory_mib(pid) for pid in workers},
                }
            )
            if not hup_sent and now >= args.seconds / 2:
                os.kill(server.pid, signal.SIGHUP)
                events.append({"t": round(now, 1), "event": "SIGHUP"})
                hup_sent = True
            time.sleep(args.sample)
        for thread in threads:
            thread.join()
        elapsed = time.monotonic() - started

    seen = {pid for sample in samples for pid in sample["workers"]}
    by_worker = {}
    for pid in sorted(seen, key=int):
        values = [(s["t"], s["workers"][pid]) for s in samples if s["workers"].get(pid)]
        by_worker[pid] = {
            "from_t": values[0][0],
            "to_t": values[-1][0],
            "rss_mib": [values[0][1]["rss"], values[-1][1]["rss"]],
            "private_mib": [values[0][1]["private"], values[-1][1]["private"]],
            "private_max_mib": max(v["private"] for _, v in values),
        }
    result = {
        "seconds": round(elapsed, 1),
        "clients": args.clients,
        "workers": args.workers,
        "max_requests": args.max_requests,
        "requests": sum(load.statuses.values()),
        "statuses": load.statuses,
        "errors": len(load.errors),
        "error_kinds": sorted(set(load.errors))[:10],
        "latency_ms": {
            q: round(percentile(load.latencies, p) * 1e3, 1)
            for q, p in (("p50", 0.5), ("p90", 0.9), ("p99", 0.99), ("max", 1.0))
        },
        "requests_per_s": round(sum(load.statuses.values()) / elapsed, 1),
        "worker_pids_seen": len(seen),
        "events": events,
        "rss_by_worker": by_worker,
        "master_private_mib": [s["master"]["private"] for s in samples if s["master"]][:: max(1, len(samples) // 10)],
    }
    print(json.dumps(result, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps({**result, "samples": samples}, indent=2))


if __name__ == "__main__":
    main()
