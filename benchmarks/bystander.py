#!/usr/bin/env python3
"""A bystander's latency while the largest request the budgets accept runs, for each kind of request.

    python benchmarks/bystander.py                       # 1 gevent worker, the default model + a cross-encoder
    python benchmarks/bystander.py --workers 2 --seconds 20 --json bystander.json

One gunicorn (`--workers`, default 1: the bystander always shares the big
request's worker, the worst case) serves the default model and a random
BERT-base-sized cross-encoder (benchmarks/rerank.py's), cache off. For each
kind of big request:

- text: `/embed_text` with as many 480-character texts as the worker's
  measured token budget (`/stats` `token_budget`) accepts;
- token ids: TEI's `/embed` with rows of 250 token ids, as many as accepted;
- per-token: `/embed_all` with as many texts as `MAX_RESPONSE_VALUES` accepts;
- rerank: `/rerank` on the cross-encoder, one query and as many documents as
  accepted;

big requests are sent back to back by one client for `--seconds`, while
another client sends one-text `/embed_text` requests in a loop: their p50,
p99 and max latency is the figure (and, first, the same bystander with no
big request, the baseline). The big requests' statuses are reported (each
should be a 200: the largest *accepted*), and the status of the largest plus
10% (a 413, unless the measured rate rose since it was read).
"""

from __future__ import annotations

import argparse
import http.client
import json
import sys
import tempfile
import threading
import time
from pathlib import Path

from rerank import build_cross_encoder
from serving import ROOT, free_port, gunicorn_command, post_json, running, service_env

TEXT = ("The quick brown fox jumps over the lazy dog near the riverbank today. " * 7)[:480]
QUERY = "what does the fox do near the river?"


def get_json(port: int, path: str) -> dict:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    connection.request("GET", path)
    return json.loads(connection.getresponse().read())


def budgets(port: int) -> dict:
    """(model, kind) -> the tokens one request may have now, from /stats."""
    models = get_json(port, "/stats")["worker"]["models"]
    return {(m["id"], kind): b["max_request_tokens"] for m in models for kind, b in m["token_budget"].items()}


def tokens_of(port: int, model: str, text: str) -> int:
    status, payload = post_json(port, "/tokenize", {"inputs": text, "model": model})
    assert status == 200, payload
    return len(json.loads(payload)[0])


def big_requests(port: int, settings: dict) -> dict[str, tuple[str, dict, dict]]:
    """kind -> (route, the largest body accepted, the same plus 10%)."""
    limits = budgets(port)
    unmeasured = 10**9  # no rate measured yet: the other limits decide
    text_budget = limits[("all-MiniLM-L6-v2", "text")] or unmeasured
    pair_budget = limits[("reranker", "pair")] or unmeasured
    per_text = tokens_of(port, "all-MiniLM-L6-v2", TEXT)
    per_pair = tokens_of(port, "reranker", QUERY) + tokens_of(port, "reranker", TEXT) - 1
    max_items = int(settings["MAX_BATCH_ITEMS"])
    max_chars = int(settings["MAX_REQUEST_CHARS"])
    values = int(settings["MAX_RESPONSE_VALUES"])

    def sized(limit: int) -> tuple[int, int]:
        count = min(max_items, int(limit * 0.95))
        return count, min(max_items + 1, int(count * 1.1) + 1)

    texts, texts_over = sized(min(text_budget // per_text, max_chars // len(TEXT)))
    rows, rows_over = sized(text_budget // 250)
    every, every_over = sized(min(text_budget // per_text, values // ((per_text + 1) * 384)))
    pairs, pairs_over = sized(min(pair_budget // per_pair, max_chars // (len(TEXT) + len(QUERY))))
    ids = [101] + [2000] * 248 + [102]
    return {
        "text": ("/embed_text", {"texts": [TEXT] * texts}, {"texts": [TEXT] * texts_over}),
        "token ids": ("/embed", {"inputs": [ids] * rows}, {"inputs": [ids] * rows_over}),
        "per-token": ("/embed_all", {"inputs": [TEXT] * every}, {"inputs": [TEXT] * every_over}),
        "rerank": (
            "/rerank",
            {"model": "reranker", "query": QUERY, "texts": [TEXT] * pairs},
            {"model": "reranker", "query": QUERY, "texts": [TEXT] * pairs_over},
        ),
    }


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def bystanders_during(port: int, seconds: float, big: tuple[str, dict] | None) -> dict:
    stop = threading.Event()
    big_runs: list[tuple[int, float]] = []

    def run_big() -> None:
        route, body = big
        data = json.dumps(body).encode()
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
        while not stop.is_set():
            started = time.perf_counter()
            status, payload = post_json(port, route, data, connection)
            big_runs.append((status, time.perf_counter() - started))
            if status != 200:
                print(f"    big {route}: {status} {payload[:200]}", file=sys.stderr)

    sender = threading.Thread(target=run_big) if big else None
    if sender:
        sender.start()
        time.sleep(0.5)  # the first big request is in
    latencies = []
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        started = time.perf_counter()
        status, _ = post_json(port, "/embed_text", {"texts": "a bystander's question", "cache": False}, connection)
        assert status == 200
        latencies.append(time.perf_counter() - started)
    stop.set()
    if sender:
        sender.join()
    result = {
        "bystanders": len(latencies),
        "p50_s": round(percentile(latencies, 0.5), 3),
        "p99_s": round(percentile(latencies, 0.99), 3),
        "max_s": round(max(latencies), 3),
    }
    if big:
        result["big_requests"] = len(big_runs)
        result["big_statuses"] = sorted({status for status, _ in big_runs})
        result["big_mean_s"] = round(sum(s for _, s in big_runs) / len(big_runs), 2) if big_runs else None
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--seconds", type=float, default=15.0, help="per kind of big request")
    parser.add_argument("--config", default="", help="extra settings, e.g. 'REQUEST_TIMEOUT=10'")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()

    sys.path.insert(0, str(ROOT))
    from app.config import Settings, default_model_path

    directory = Path(tempfile.mkdtemp(prefix="bystander-"))
    reranker = build_cross_encoder(directory / "reranker")
    port = free_port()
    env = service_env(
        "",
        port,
        args.config,
        MODELS=f"all-MiniLM-L6-v2={default_model_path()},reranker={reranker}",
        WORKERS=str(args.workers),
        CACHE_BYTES="0",
        MAX_CONTENT_LENGTH=str(64 * 2**20),
    )
    env.pop("MODEL_PATH")
    settings = Settings.from_env(env).public_dict()
    settings = {key.upper(): str(value) for key, value in settings.items()}
    results: dict = {"workers": args.workers, "config": args.config, "kinds": {}}
    with running("service", gunicorn_command(), env, f"http://127.0.0.1:{port}/ready", timeout=600):
        results["baseline"] = bystanders_during(port, args.seconds, None)
        print(f"  no big request: {results['baseline']}", file=sys.stderr, flush=True)
        for kind in ("text", "token ids", "per-token", "rerank"):
            # Sized from the budget measured now: the worker's rate moves with what it has run.
            route, body, over = big_requests(port, settings)[kind]
            status, payload = post_json(port, route, over)
            if status != 413:
                print(f"  {kind}: the largest + 10% answered {status}, not 413: {payload[:200]}", file=sys.stderr)
            items = len(body.get("texts") or body.get("inputs"))
            result = {"route": route, "items": items, "over_budget_status": status}
            result.update(bystanders_during(port, args.seconds, (route, body)))
            results["kinds"][kind] = result
            print(f"  {kind}: {result}", file=sys.stderr, flush=True)
    print(json.dumps(results, indent=2))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
