#!/usr/bin/env python3
"""Sparse-encoder (SPLADE) throughput of the service against sentence-transformers' SparseEncoder in-process,
in one run.

    python benchmarks/sparse.py                      # random BERT-base-sized SPLADE, float32
    python benchmarks/sparse.py --dtype float32 --dtype bfloat16 --model-path DIR

1. The limit: `SparseEncoder.encode_document` in this process on the same
   directory (all cores, batches of 32), in texts/s.
2. The service: `gunicorn -c gunicorn.conf.py` with its defaults (one worker
   per core, gevent), `POST /embed_text` with `output_types: ["sparse"]`,
   `is_query: false` and `cache: false` (every request computed) from 4
   keep-alive clients at once, in texts/s; vectors compared through TEI's
   `/embed_sparse`.

The model is BERT-base sized (12 layers, 768 wide, the default model's 30,522-token vocabulary) with random
weights, saved as SparseEncoder saves SPLADE; its output bias is lowered so that, as a trained SPLADE
model's, about 1 % of the vocabulary is weighted per text (a random one weighs half of it). Texts are
paragraphs of the license texts that ship with the machine, 8-120 words (benchmarks/rerank.py's corpus).
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


def build_splade(directory: Path, texts: list[str]) -> Path:
    import torch
    from sentence_transformers import SparseEncoder
    from sentence_transformers.base.modules import Transformer
    from sentence_transformers.sparse_encoder.modules import SpladePooling
    from transformers import AutoTokenizer, BertConfig, BertForMaskedLM

    sys.path.insert(0, str(ROOT))
    from app.config import default_model_path

    torch.manual_seed(0)
    tokenizer = AutoTokenizer.from_pretrained(str(default_model_path()))
    model = BertForMaskedLM(BertConfig(vocab_size=tokenizer.vocab_size)).eval()
    with torch.inference_mode():
        inputs = tokenizer(texts[:16], padding=True, truncation=True, return_tensors="pt")
        logits = model(**inputs).logits.masked_fill(~inputs["attention_mask"].bool()[..., None], float("-inf"))
        # the weight SPLADE's max pooling keeps: each text's largest logit per vocabulary entry
        model.cls.predictions.bias -= float(torch.quantile(logits.amax(dim=1).flatten().float(), 0.99))
    base = directory.parent / f"{directory.name}-mlm"
    model.save_pretrained(base)
    tokenizer.save_pretrained(base)
    modules = [Transformer(str(base), transformer_task="fill-mask", max_seq_length=512), SpladePooling("max")]
    SparseEncoder(modules=modules, device="cpu").save(str(directory))
    return directory


def in_process(model_path: Path, texts: list[str], dtype: str, rounds: int) -> dict:
    import torch
    from sentence_transformers import SparseEncoder

    torch.set_num_threads(os.cpu_count() or 1)
    encoder = SparseEncoder(str(model_path), device="cpu", model_kwargs={"dtype": getattr(torch, dtype)})
    encoder.encode_document(texts[:8], batch_size=32)  # warm-up
    started = time.perf_counter()
    for _ in range(rounds):
        vectors = encoder.encode_document(texts, batch_size=32, convert_to_sparse_tensor=False)
    seconds = time.perf_counter() - started
    return {"texts_per_s": rounds * len(texts) / seconds, "vectors": vectors.float().numpy()}


def over_http(
    model_path: Path, texts: list[str], dtype: str, requests: int, concurrency: int, runtime: str = "auto"
) -> dict:
    import numpy as np

    port = free_port()
    # a BERT-base-sized model's 64 texts in float32 are over the token budget a 30 s REQUEST_TIMEOUT gives a
    # 2-core CPU worker (docs/performance.md#per-request-budgets): throughput is what is measured
    env = service_env(str(model_path), port, "", DTYPE=dtype, REQUEST_TIMEOUT="120", RUNTIME=runtime)
    body = json.dumps({"texts": texts, "output_types": ["sparse"], "is_query": False, "cache": False}).encode()
    with running("service", gunicorn_command(), env, f"http://127.0.0.1:{port}/ready", timeout=600):
        post_json(port, "/embed_text", body)
        per_client = max(1, requests // concurrency)
        failures: list[str] = []
        nonzero: list[int] = []

        def client(_number):
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
            for _ in range(per_client):
                status, answer = post_json(port, "/embed_text", body, connection)
                if status != 200:
                    failures.append(answer[:200])
                else:
                    nonzero.extend(len(row["indices"]) for row in json.loads(answer)["sparse"])
            connection.close()

        seconds = run_clients(client, concurrency)
        if failures:
            raise SystemExit(f"{len(failures)} requests failed: {failures[0]}")
        rows = json.loads(post_json(port, "/embed_sparse", json.dumps({"inputs": texts}).encode())[1])
    width = 1 + max(pair["index"] for row in rows for pair in row)
    vectors = np.zeros((len(rows), width), dtype=np.float32)
    for index, row in enumerate(rows):
        for pair in row:
            vectors[index, pair["index"]] = pair["value"]
    return {
        "texts_per_s": concurrency * per_client * len(texts) / seconds,
        "vectors": vectors,
        "nonzero": sum(nonzero) / max(1, len(nonzero)),
    }


def compare(bare, served) -> tuple[float, float]:
    """(the largest weight difference, the smallest overlap of the 32 largest weights' ids)."""
    import numpy as np

    width = max(bare.shape[1], served.shape[1])
    bare = np.pad(bare, ((0, 0), (0, width - bare.shape[1])))
    served = np.pad(served, ((0, 0), (0, width - served.shape[1])))
    top = min(
        len(set(np.argsort(-a, kind="stable")[:32]) & set(np.argsort(-b, kind="stable")[:32])) / 32
        for a, b in zip(bare, served)
    )
    return float(np.abs(bare - served).max()), top


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model-path", type=Path, help="a SPLADE directory (default: a random BERT-base one)")
    parser.add_argument("--dtype", action="append", choices=["float32", "bfloat16"], help="repeatable; default float32")
    parser.add_argument("--texts", type=int, default=64, help="texts per request")
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
    with tempfile.TemporaryDirectory(prefix="bench-sparse-") as scratch:
        model_path = args.model_path or build_splade(Path(scratch) / "bert-base-splade", texts)
        for dtype in args.dtype or ["float32"]:
            bare = None
            if not args.no_reference:
                print(f"{dtype}: in-process SparseEncoder", file=sys.stderr, flush=True)
                bare = in_process(model_path, texts, dtype, max(2, args.requests // 2))
            for runtime in args.runtime or ["auto"]:
                print(f"{dtype}: the service, RUNTIME={runtime}, c={args.concurrency}", file=sys.stderr, flush=True)
                served = over_http(model_path, texts, dtype, args.requests, args.concurrency, runtime)
                row = {
                    "dtype": dtype,
                    "runtime": runtime,
                    "service_texts_per_s": served["texts_per_s"],
                    "weights_per_text": served["nonzero"],
                }
                if bare is not None:
                    difference, overlap = compare(bare["vectors"], served["vectors"])
                    row["in_process_texts_per_s"] = bare["texts_per_s"]
                    row["ratio"] = served["texts_per_s"] / bare["texts_per_s"]
                    row["max_weight_difference"] = difference
                    row["top32_overlap"] = overlap
                rows.append(row)
    if args.json:
        print(json.dumps(rows, indent=2))
        return
    print(f"{args.texts} texts per request, {os.cpu_count()} cores; service at c={args.concurrency}\n")
    print(
        "| dtype | RUNTIME | SparseEncoder texts/s | service texts/s | service / in-process | weights per text "
        "| max weight difference | top-32 ids shared |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for row in rows:
        print(
            f"| {row['dtype']} | {row['runtime']} | {figure(row, 'in_process_texts_per_s', '.1f')} | "
            f"{row['service_texts_per_s']:.1f} | {figure(row, 'ratio', '.2f')} | {row['weights_per_text']:.0f} | "
            f"{figure(row, 'max_weight_difference', '.1e')} | {figure(row, 'top32_overlap', '.0%')} |"
        )


if __name__ == "__main__":
    main()
