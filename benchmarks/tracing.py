#!/usr/bin/env python3
"""What traces cost: the same service with traces off, exporting to a collector that answers, and exporting
to one that is down (nothing listens), in one run, each under three loads.

    python benchmarks/tracing.py                 # the default model, 2 workers, 15 s per load in 3 rounds

Also with the collector up and one trace in ten sampled (OTEL_TRACES_SAMPLER=parentbased_traceidratio,
OTEL_TRACES_SAMPLER_ARG=0.1), what a busy production instance would run.

Loads (cache off, distinct texts): one client sending one text a request (latency p50 and p99), eight clients
of one text (texts/s), four clients of 16 texts (texts/s). The collector is a stand-in in this script that
answers every OTLP/HTTP post with 200 and counts the bytes; the SDK's defaults otherwise (a batch every 5 s,
a queue of 2048 spans). Prints a table and each configuration's ratio to traces off.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from bystander import percentile
from serving import ROOT, free_port, gunicorn_command, post_json, run_clients, running, service_env


class Collector:
    """Answers OTLP/HTTP posts with 200, counting them and their bytes."""

    def __init__(self):
        self.posts = 0
        self.bytes = 0
        collector = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 - http.server's name
                collector.bytes += len(self.rfile.read(int(self.headers.get("Content-Length", 0))))
                collector.posts += 1
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.endpoint = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


def load(port: int, clients: int, texts: int, seconds: float, tag: str) -> dict:
    counter = iter(range(10**9))
    lock = threading.Lock()
    latencies: list[float] = []
    deadline = time.perf_counter() + seconds

    def client(_number):
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        while time.perf_counter() < deadline:
            with lock:
                first = next(counter) * texts
            body = {"texts": [f"{tag} text number {first + i} of this load" for i in range(texts)], "cache": False}
            started = time.perf_counter()
            status, _ = post_json(port, "/embed_text", body, connection)
            if status == 200:
                with lock:
                    latencies.append(time.perf_counter() - started)
        connection.close()

    elapsed = run_clients(client, clients)
    return {"texts": len(latencies) * texts, "seconds": elapsed, "latencies": latencies}


def _pooled(runs: list[dict]) -> dict:
    latencies = [latency for run in runs for latency in run["latencies"]]
    return {
        "texts_per_s": sum(run["texts"] for run in runs) / sum(run["seconds"] for run in runs),
        "p50_ms": percentile(latencies, 0.5) * 1e3,
        "p99_ms": percentile(latencies, 0.99) * 1e3,
    }


LOADS = (("c1 x 1", 1, 1), ("c8 x 1", 8, 1), ("c4 x 16", 4, 16))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3, help="the loads go round-robin this many times")
    parser.add_argument("--config", default="", help="more settings for every run, e.g. 'RUNTIME=eager'")
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    from app.config import default_model_path

    collector = Collector()
    configurations = {
        "traces off": {},
        "collector up": {"OTEL_EXPORTER_OTLP_ENDPOINT": collector.endpoint},
        "collector up, 1 in 10 sampled": {
            "OTEL_EXPORTER_OTLP_ENDPOINT": collector.endpoint,
            "OTEL_TRACES_SAMPLER": "parentbased_traceidratio",
            "OTEL_TRACES_SAMPLER_ARG": "0.1",
        },
        "collector down": {"OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{free_port()}"},
    }
    # Every configuration's server runs at once and the loads go round-robin over them, `rounds` times: the
    # drift of a shared machine's speed over minutes falls on every configuration alike.
    samples: dict[str, dict[str, list[dict]]] = {name: {label: [] for label, _, _ in LOADS} for name in configurations}
    with contextlib.ExitStack() as servers:
        ports = {}
        for name, settings in configurations.items():
            port = ports[name] = free_port()
            env = service_env(str(default_model_path()), port, args.config, WORKERS=str(args.workers), **settings)
            servers.enter_context(running(name, gunicorn_command(), env, f"http://127.0.0.1:{port}/ready", 600))
            load(port, 4, 4, 3.0, f"warm-up {name}")
        for round_ in range(args.rounds):
            for label, clients, texts in LOADS:
                for name, port in ports.items():
                    tag = f"{name} {label} {round_}"
                    samples[name][label].append(load(port, clients, texts, args.seconds / args.rounds, tag))
    results = {name: {label: _pooled(runs) for label, runs in by_load.items()} for name, by_load in samples.items()}
    print(
        f"{args.workers} workers, {args.seconds:g} s per load in {args.rounds} rounds, cache off; "
        f"{args.config or 'default settings'}"
    )
    print(f"the collector received {collector.posts} posts, {collector.bytes / 1e6:.1f} MB\n")
    print(
        "| traces | " + " | ".join(f"{label} texts/s | {label} p50 ms | {label} p99 ms" for label, _, _ in LOADS) + " |"
    )
    print("|---" * (1 + 3 * len(LOADS)) + "|")
    for name, by_load in results.items():
        cells = [
            f"{r['texts_per_s']:.1f} | {r['p50_ms']:.1f} | {r['p99_ms']:.1f}"
            for r in (by_load[label] for label, _, _ in LOADS)
        ]
        print(f"| {name} | " + " | ".join(cells) + " |")
    base = results["traces off"]
    print()
    for name in list(configurations)[1:]:
        ratios = ", ".join(
            f"{label}: {results[name][label]['texts_per_s'] / base[label]['texts_per_s']:.2f}x texts/s, "
            f"p50 {results[name][label]['p50_ms'] / base[label]['p50_ms']:.2f}x"
            for label, _, _ in LOADS
        )
        print(f"{name} / traces off: {ratios}")


if __name__ == "__main__":
    main()
