#!/usr/bin/env python3
"""Reranking throughput of the service against sentence-transformers' CrossEncoder in-process, in one run.

    python benchmarks/rerank.py                          # random BERT-base-sized cross-encoder, float32 and bfloat16
    python benchmarks/rerank.py --model-path DIR --dtype float32 --requests 8

1. The limit: `CrossEncoder.predict` in this process on the same directory
   (its own length-sorted batches of 32, all cores), one query x 100
   documents per call, in pairs/s.
2. The service: `gunicorn -c gunicorn.conf.py` with its defaults (one worker
   per core, gevent), POST /rerank with the same query and 100 documents per
   request from 4 keep-alive clients at once, in pairs/s.

Documents are paragraphs of the license texts that ship with the machine, cut
to 8-120 words so their lengths mix. Scores of the two are compared too.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import random
import sys
import tempfile
import time
from pathlib import Path

from serving import ROOT, free_port, gunicorn_command, post_json, run_clients, running, service_env

CORPUS_FILES = [
    "/usr/share/common-licenses/GPL-3",
    "/usr/share/common-licenses/Apache-2.0",
    "/usr/share/common-licenses/MPL-2.0",
]
QUERY = "what may I do with the source code when I distribute the program?"


def corpus(count: int, seed: int = 0) -> list[str]:
    words = []
    for file in CORPUS_FILES:
        if os.path.isfile(file):
            words += Path(file).read_text(encoding="utf-8", errors="replace").split()
    if not words:
        raise SystemExit(f"no corpus: none of {CORPUS_FILES} exists")
    rng = random.Random(seed)
    documents = []
    for _ in range(count):
        length = rng.randint(8, 120)
        start = rng.randrange(0, len(words) - length)
        documents.append(" ".join(words[start : start + length]))
    return documents


def build_cross_encoder(directory: Path) -> Path:
    """BERT-base-sized (12 layers, 768 wide), one label, random weights, the default model's tokenizer,
    saved as sentence-transformers' CrossEncoder saves it."""
    import torch
    from sentence_transformers import CrossEncoder
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

    sys.path.insert(0, str(ROOT))
    from app.config import default_model_path

    torch.manual_seed(0)
    tokenizer = AutoTokenizer.from_pretrained(str(default_model_path()))
    config = BertConfig(vocab_size=tokenizer.vocab_size, num_labels=1)
    plain = directory.parent / f"{directory.name}-hf"
    BertForSequenceClassification(config).eval().save_pretrained(plain)
    tokenizer.save_pretrained(plain)
    CrossEncoder(str(plain), device="cpu").save(str(directory))
    return directory


def in_process(model_path: Path, documents: list[str], dtype: str, requests: int) -> dict:
    import torch
    from sentence_transformers import CrossEncoder

    torch.set_num_threads(os.cpu_count() or 1)
    model = CrossEncoder(str(model_path), device="cpu", model_kwargs={"dtype": getattr(torch, dtype)})
    pairs = [(QUERY, document) for document in documents]
    model.predict(pairs[:8], batch_size=32)  # warm-up
    started = time.perf_counter()
    for _ in range(requests):
        scores = model.predict(pairs, batch_size=32)
    seconds = time.perf_counter() - started
    return {"pairs_per_s": requests * len(pairs) / seconds, "scores": [float(s) for s in scores]}


def over_http(model_path: Path, documents: list[str], dtype: str, requests: int, concurrency: int) -> dict:
    port = free_port()
    # 100 inputs of a BERT-base-sized model in float32 are ~40 s of a 2-core CPU worker: over the token budget
    # a 30 s REQUEST_TIMEOUT gives (docs/performance.md#per-request-budgets). Throughput is what is measured.
    env = service_env(str(model_path), port, "", DTYPE=dtype, REQUEST_TIMEOUT="120")
    body = json.dumps({"query": QUERY, "texts": documents}).encode()
    result: dict = {}
    with running("service", gunicorn_command(), env, f"http://127.0.0.1:{port}/ready", timeout=600):
        # Every worker warm (and one request each through the route) before the clock starts.
        post_json(port, "/rerank", body)
        post_json(port, "/rerank", body)
        per_client = max(1, requests // concurrency)
        failures: list[str] = []

        def client(_number):
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
            for _ in range(per_client):
                status, payload = post_json(port, "/rerank", body, connection)
                if status != 200:
                    failures.append(payload[:200])
            connection.close()

        seconds = run_clients(client, concurrency)
        if failures:
            raise SystemExit(f"{len(failures)} requests failed: {failures[0]}")
        ranks = json.loads(post_json(port, "/rerank", body)[1])
        scores = [0.0] * len(documents)
        for rank in ranks:
            scores[rank["index"]] = rank["score"]
        result = {"pairs_per_s": concurrency * per_client * len(documents) / seconds, "scores": scores}
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--model-path", type=Path, help="a cross-encoder directory (default: build a random BERT-base-sized one)"
    )
    parser.add_argument(
        "--dtype", action="append", choices=["float32", "bfloat16"], help="repeatable; default float32 and bfloat16"
    )
    parser.add_argument("--documents", type=int, default=100, help="documents per request")
    parser.add_argument("--requests", type=int, default=8, help="requests per measurement")
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    documents = corpus(args.documents)
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-rerank-") as scratch:
        model_path = args.model_path or build_cross_encoder(Path(scratch) / "bert-base-cross-encoder")
        for dtype in args.dtype or ["float32", "bfloat16"]:
            print(f"{dtype}: in-process CrossEncoder.predict", file=sys.stderr, flush=True)
            bare = in_process(model_path, documents, dtype, max(2, args.requests // 2))
            print(f"{dtype}: the service, c={args.concurrency}", file=sys.stderr, flush=True)
            served = over_http(model_path, documents, dtype, args.requests, args.concurrency)
            difference = max(abs(a - b) for a, b in zip(bare["scores"], served["scores"]))
            rows.append(
                {
                    "dtype": dtype,
                    "in_process_pairs_per_s": bare["pairs_per_s"],
                    "service_pairs_per_s": served["pairs_per_s"],
                    "ratio": served["pairs_per_s"] / bare["pairs_per_s"],
                    "max_score_difference": difference,
                }
            )
    if args.json:
        print(json.dumps(rows, indent=2))
        return
    print(
        f"1 query x {args.documents} documents per request, {os.cpu_count()} cores; service at c={args.concurrency}\n"
    )
    print("| dtype | CrossEncoder.predict pairs/s | service pairs/s | service / in-process | max score difference |")
    print("|---|---|---|---|---|")
    for row in rows:
        print(
            f"| {row['dtype']} | {row['in_process_pairs_per_s']:.0f} | {row['service_pairs_per_s']:.0f} | "
            f"{row['ratio']:.2f} | {row['max_score_difference']:.1e} |"
        )


if __name__ == "__main__":
    main()
