#!/usr/bin/env python3
"""Late-interaction (ColBERT) throughput of the service against sentence-transformers' MultiVectorEncoder
in-process, in one run.

    python benchmarks/multi_vector.py                       # random BERT-base-sized ColBERT, float32
    python benchmarks/multi_vector.py --dtype float32 --dtype bfloat16 --runtime eager --runtime auto

1. The limit: `MultiVectorEncoder.encode_document` in this process on the same directory (all cores,
   batches of 32), in documents/s.
2. The service: `gunicorn -c gunicorn.conf.py` with its defaults (one worker per core, gevent), `POST
   /embed_text` with `output_types: ["colbert"]`, `is_query: false` and `cache: false` (every request
   computed) from 4 keep-alive clients at once, in documents/s, for each `--runtime`; its vectors compared
   with the in-process ones (the smallest cosine of any token vector, and whether every document has the
   same number of vectors).

The model is BERT-base sized (12 layers, 768 wide, the default model's tokenizer) with random weights and a
token-level projection to 128, saved as MultiVectorEncoder saves a ColBERT (query expansion to 32 tokens,
documents cut at 180, the punctuation skip-list). Documents are paragraphs of the license texts that ship
with the machine, 8-120 words (benchmarks/rerank.py's corpus).
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import string
import sys
import tempfile
import time
from pathlib import Path

from rerank import corpus
from serving import ROOT, figure, free_port, gunicorn_command, post_json, run_clients, running, service_env


def build_colbert(directory: Path) -> Path:
    import torch
    from sentence_transformers import MultiVectorEncoder
    from sentence_transformers.base.modules import Dense, Normalize, Transformer
    from sentence_transformers.multi_vector_encoder.modules import MultiVectorMask
    from transformers import AutoTokenizer, BertConfig, BertModel

    sys.path.insert(0, str(ROOT))
    from app.config import default_model_path

    torch.manual_seed(0)
    base = directory.parent / f"{directory.name}-base"
    tokenizer = AutoTokenizer.from_pretrained(str(default_model_path()))
    BertModel(BertConfig(vocab_size=tokenizer.vocab_size)).eval().save_pretrained(base)
    tokenizer.save_pretrained(base)
    modules = [
        Transformer(
            str(base), query_expansion={"strategy": "fixed", "attend": False, "length": 32}, document_length=180
        ),
        Dense(768, 128, bias=False, module_input_name="token_embeddings"),
        MultiVectorMask(skiplist_words=list(string.punctuation)),
        Normalize(module_input_name="token_embeddings"),
    ]
    MultiVectorEncoder(modules=modules, device="cpu").save(str(directory))
    return directory


def in_process(model_path: Path, texts: list[str], dtype: str, rounds: int) -> dict:
    import torch
    from sentence_transformers import MultiVectorEncoder

    torch.set_num_threads(os.cpu_count() or 1)
    encoder = MultiVectorEncoder(str(model_path), device="cpu", model_kwargs={"dtype": getattr(torch, dtype)})
    encoder.encode_document(texts[:8], batch_size=32)  # warm-up
    started = time.perf_counter()
    for _ in range(rounds):
        vectors = encoder.encode_document(texts, batch_size=32, convert_to_numpy=True)
    seconds = time.perf_counter() - started
    return {"texts_per_s": rounds * len(texts) / seconds, "vectors": [v.astype("float32") for v in vectors]}


def over_http(model_path: Path, texts: list[str], dtype: str, requests: int, concurrency: int, runtime: str) -> dict:
    import numpy as np

    port = free_port()
    env = service_env(str(model_path), port, "", DTYPE=dtype, REQUEST_TIMEOUT="120", RUNTIME=runtime)
    body = {"texts": texts, "output_types": ["colbert"], "is_query": False, "cache": False}
    encoded = json.dumps(body).encode()
    with running("service", gunicorn_command(), env, f"http://127.0.0.1:{port}/ready", timeout=900):
        status, answer = post_json(port, "/embed_text", encoded)
        if status != 200:
            raise SystemExit(f"the service answered {status}: {answer[:300]}")
        vectors = [np.asarray(matrix, dtype=np.float32) for matrix in json.loads(answer)["colbert"]]
        per_client = max(1, requests // concurrency)
        failures: list[str] = []

        def client(_number):
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
            for _ in range(per_client):
                status, answer = post_json(port, "/embed_text", encoded, connection)
                if status != 200:
                    failures.append(answer[:200])
            connection.close()

        seconds = run_clients(client, concurrency)
        if failures:
            raise SystemExit(f"{len(failures)} requests failed: {failures[0]}")
    return {"texts_per_s": concurrency * per_client * len(texts) / seconds, "vectors": vectors}


def compare(bare: list, served: list) -> tuple[float, bool]:
    """(the smallest cosine of any token vector, whether every document has as many vectors)."""
    import numpy as np

    if [m.shape for m in bare] != [m.shape for m in served]:
        return float("nan"), False
    cosines = [
        ((a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)).min() for a, b in zip(bare, served)
    ]
    return float(min(cosines)), True


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model-path", type=Path, help="a ColBERT directory (default: a random BERT-base one)")
    parser.add_argument("--dtype", action="append", choices=["float32", "bfloat16"], help="repeatable; default float32")
    parser.add_argument("--runtime", action="append", choices=["auto", "eager", "compile"], help="repeatable")
    parser.add_argument("--texts", type=int, default=64, help="documents per request")
    parser.add_argument("--requests", type=int, default=8, help="requests per measurement")
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    texts = corpus(args.texts)
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-colbert-") as scratch:
        model_path = args.model_path or build_colbert(Path(scratch) / "bert-base-colbert")
        for dtype in args.dtype or ["float32"]:
            print(f"{dtype}: in-process MultiVectorEncoder", file=sys.stderr, flush=True)
            bare = in_process(model_path, texts, dtype, max(2, args.requests // 2))
            for runtime in args.runtime or ["auto"]:
                print(f"{dtype}: the service, RUNTIME={runtime}, c={args.concurrency}", file=sys.stderr, flush=True)
                served = over_http(model_path, texts, dtype, args.requests, args.concurrency, runtime)
                cosine, same_counts = compare(bare["vectors"], served["vectors"])
                rows.append(
                    {
                        "dtype": dtype,
                        "runtime": runtime,
                        "in_process_texts_per_s": bare["texts_per_s"],
                        "service_texts_per_s": served["texts_per_s"],
                        "ratio": served["texts_per_s"] / bare["texts_per_s"],
                        "min_cosine": cosine,
                        "same_counts": same_counts,
                        "vectors_per_text": sum(len(m) for m in served["vectors"]) / len(texts),
                    }
                )
    if args.json:
        print(json.dumps(rows, indent=2))
        return
    print(f"{args.texts} documents per request, {os.cpu_count()} cores; service at c={args.concurrency}\n")
    print(
        "| dtype | RUNTIME | MultiVectorEncoder docs/s | service docs/s | service / in-process | vectors per doc "
        "| min token cosine | same counts |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for row in rows:
        print(
            f"| {row['dtype']} | {row['runtime']} | {row['in_process_texts_per_s']:.1f} | "
            f"{row['service_texts_per_s']:.1f} | {row['ratio']:.2f} | {row['vectors_per_text']:.0f} | "
            f"{figure(row, 'min_cosine', '.5f')} | {'yes' if row['same_counts'] else 'no'} |"
        )


if __name__ == "__main__":
    main()
