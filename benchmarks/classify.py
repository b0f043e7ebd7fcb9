#!/usr/bin/env python3
"""Sequence-classification throughput of the service against transformers' text-classification pipeline
in-process, in one run.

    python benchmarks/classify.py                     # random BERT-base-sized 3-label classifier, float32
    python benchmarks/classify.py --dtype bfloat16 --model-path DIR --requests 8

1. The limit: `pipeline("text-classification", top_k=None)` in this process
   on the same directory (all cores, batches of 32), in texts/s.
2. The service: `gunicorn -c gunicorn.conf.py` with its defaults (one worker
   per core, gevent), `POST /classify_text` with the same texts per request
   and `cache: false` (every request computed) from 4 keep-alive clients at
   once, in texts/s; scores compared through `/predict`.

Texts are paragraphs of the license texts that ship with the machine, cut to
8-120 words (benchmarks/rerank.py's corpus). The two answers' scores are
compared too.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import sys
import tempfile
import time
from pathlib import Path

from rerank import corpus
from serving import ROOT, figure, free_port, gunicorn_command, post_json, run_clients, running, service_env

LABELS = ["negative", "neutral", "positive"]


def build_classifier(directory: Path) -> Path:
    """BERT-base-sized (12 layers, 768 wide), three labels, random weights, the default model's tokenizer."""
    import torch
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

    sys.path.insert(0, str(ROOT))
    from app.config import default_model_path

    torch.manual_seed(0)
    tokenizer = AutoTokenizer.from_pretrained(str(default_model_path()))
    config = BertConfig(vocab_size=tokenizer.vocab_size, num_labels=3, id2label=dict(enumerate(LABELS)), label2id={})
    BertForSequenceClassification(config).eval().save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


def in_process(model_path: Path, texts: list[str], dtype: str, rounds: int) -> dict:
    import torch
    from transformers import pipeline

    torch.set_num_threads(os.cpu_count() or 1)
    classify = pipeline("text-classification", model=str(model_path), device="cpu", dtype=getattr(torch, dtype))
    classify(texts[:8], top_k=None, batch_size=32)  # warm-up
    started = time.perf_counter()
    for _ in range(rounds):
        answers = classify(texts, top_k=None, batch_size=32, truncation=True)
    seconds = time.perf_counter() - started
    scores = [{a["label"]: a["score"] for a in answer} for answer in answers]
    return {"texts_per_s": rounds * len(texts) / seconds, "scores": scores}


def over_http(
    model_path: Path, texts: list[str], dtype: str, requests: int, concurrency: int, runtime: str = "auto"
) -> dict:
    port = free_port()
    # 100 inputs of a BERT-base-sized model in float32 are ~40 s of a 2-core CPU worker: over the token budget
    # a 30 s REQUEST_TIMEOUT gives (docs/performance.md#per-request-budgets). Throughput is what is measured.
    env = service_env(str(model_path), port, "", DTYPE=dtype, REQUEST_TIMEOUT="120", RUNTIME=runtime)
    body = json.dumps({"inputs": [[text] for text in texts]}).encode()
    result: dict = {}
    with running("service", gunicorn_command(), env, f"http://127.0.0.1:{port}/ready", timeout=600):
        post_json(port, "/predict", body)
        post_json(port, "/predict", body)
        per_client = max(1, requests // concurrency)
        failures: list[str] = []

        def client(_number):
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
            for _ in range(per_client):
                # The cache would answer repeats: every request is computed.
                status, answer = post_json(port, "/classify_text", _uncached(texts), connection)
                if status != 200:
                    failures.append(answer[:200])
            connection.close()

        seconds = run_clients(client, concurrency)
        if failures:
            raise SystemExit(f"{len(failures)} requests failed: {failures[0]}")
        answers = json.loads(post_json(port, "/predict", body)[1])
        scores = [{p["label"]: p["score"] for p in answer} for answer in answers]
        result = {"texts_per_s": concurrency * per_client * len(texts) / seconds, "scores": scores}
    return result


def _uncached(texts: list[str]) -> bytes:
    return json.dumps({"texts": texts, "cache": False}).encode()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model-path", type=Path, help="a classifier directory (default: a random BERT-base one)")
    parser.add_argument("--dtype", action="append", choices=["float32", "bfloat16"], help="repeatable; default float32")
    parser.add_argument("--texts", type=int, default=100, help="texts per request")
    parser.add_argument("--requests", type=int, default=8, help="requests per measurement")
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument(
        "--runtime", action="append", choices=["auto", "eager", "compile"], help="the service's RUNTIME; repeatable"
    )
    parser.add_argument("--no-reference", action="store_true", help="the service only (no in-process rate)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    texts = corpus(args.texts)
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-classify-") as scratch:
        model_path = args.model_path or build_classifier(Path(scratch) / "bert-base-classifier")
        for dtype in args.dtype or ["float32"]:
            bare = None
            if not args.no_reference:
                print(f"{dtype}: in-process pipeline", file=sys.stderr, flush=True)
                bare = in_process(model_path, texts, dtype, max(2, args.requests // 2))
            for runtime in args.runtime or ["auto"]:
                print(f"{dtype}: the service, RUNTIME={runtime}, c={args.concurrency}", file=sys.stderr, flush=True)
                served = over_http(model_path, texts, dtype, args.requests, args.concurrency, runtime)
                row = {"dtype": dtype, "runtime": runtime, "service_texts_per_s": served["texts_per_s"]}
                if bare is not None:
                    row["in_process_texts_per_s"] = bare["texts_per_s"]
                    row["ratio"] = served["texts_per_s"] / bare["texts_per_s"]
                    row["max_score_difference"] = max(
                        abs(a[label] - b[label]) for a, b in zip(bare["scores"], served["scores"]) for label in a
                    )
                rows.append(row)
    if args.json:
        print(json.dumps(rows, indent=2))
        return
    print(f"{args.texts} texts per request, {os.cpu_count()} cores; service at c={args.concurrency}\n")
    print("| dtype | RUNTIME | pipeline texts/s | service texts/s | service / in-process | max score difference |")
    print("|---|---|---|---|---|---|")
    for row in rows:
        print(
            f"| {row['dtype']} | {row['runtime']} | {figure(row, 'in_process_texts_per_s', '.1f')} | "
            f"{row['service_texts_per_s']:.1f} | {figure(row, 'ratio', '.2f')} | "
            f"{figure(row, 'max_score_difference', '.1e')} |"
        )


if __name__ == "__main__":
    main()
