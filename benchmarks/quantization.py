#!/usr/bin/env python3
"""What each `precision` costs in retrieval: recall@10 against float32, on a held corpus.

    python benchmarks/quantization.py                  # the default model
    MODEL_PATH=/models/bge-small python benchmarks/quantization.py --documents 3000

The corpus is held out from the calibration corpus: docstrings of Python's
standard library (one document per documented function or class, its text
without its first line; the first line is that document's query). Queries and
documents are embedded through `/embed_text` at each precision, in process;
scores are dot products of the quantized vectors (float32, int8), minus their
L2 distance (uint8, whose buckets are offset), or minus the Hamming distance
(binary, ubinary); recall@10 is the share of float32's top 10
that each precision's top 10 finds, and "first" how often the float32 top hit is
also the precision's top hit. Also: bytes per vector.
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import json
import logging
import pkgutil
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

PRECISIONS = ("float32", "int8", "uint8", "binary", "ubinary")


def docstrings(limit: int) -> list[tuple[str, str]]:
    """(query, document) pairs from the standard library's docstrings, in a fixed order."""
    pairs, seen = [], set()
    names = sorted(
        m.name
        for m in pkgutil.iter_modules()
        if m.module_finder.path.startswith(sys.base_prefix)
        and not m.name.startswith("_")
        and "test" not in m.name
        and m.name not in ("antigravity", "this")
    )
    for name in names:
        try:
            module = importlib.import_module(name)
        except Exception:  # platform-specific modules
            continue
        members = []
        for _, member in sorted(vars(module).items()):
            if (inspect.isfunction(member) or inspect.isclass(member)) and getattr(member, "__module__", None) == name:
                members.append(member)
                if inspect.isclass(member):
                    members.extend(m for _, m in sorted(vars(member).items()) if inspect.isfunction(m))
        for member in members:
            doc = inspect.getdoc(member)
            if not doc:
                continue
            first, _, rest = doc.partition("\n")
            rest = " ".join(rest.split())
            if len(first) < 20 or len(rest) < 80 or rest in seen:
                continue
            seen.add(rest)
            pairs.append((first.strip(), rest[:1500]))
            if len(pairs) == limit:
                return pairs
    return pairs


def embed(client, texts: list[str], precision: str) -> np.ndarray:
    rows = []
    for start in range(0, len(texts), 64):
        body = client.post("/embed_text", json={"texts": texts[start : start + 64], "precision": precision}).get_json()
        rows.extend(body["embeddings"])
    dtype = {"float32": np.float32, "int8": np.int8, "binary": np.int8}.get(precision, np.uint8)
    return np.array(rows, dtype=dtype)


def scores(queries: np.ndarray, documents: np.ndarray, precision: str) -> np.ndarray:
    if precision in ("binary", "ubinary"):
        q = np.unpackbits(queries.view(np.uint8), axis=1).astype(np.int16)
        d = np.unpackbits(documents.view(np.uint8), axis=1).astype(np.int16)
        return -(q @ (1 - d).T + (1 - q) @ d.T)  # minus the Hamming distance
    q, d = queries.astype(np.float32), documents.astype(np.float32)
    if precision == "uint8":  # unsigned buckets carry an offset a dot product would reward: minus L2, as faiss
        return -((q**2).sum(1)[:, None] - 2 * q @ d.T + (d**2).sum(1)[None, :])
    return q @ d.T


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--documents", type=int, default=2000)
    parser.add_argument("--queries", type=int, default=300)
    args = parser.parse_args()
    logging.disable(logging.INFO)

    from app import create_app
    from app.config import Settings

    pairs = docstrings(args.documents)
    queries = [query for query, _ in pairs[: args.queries]]
    documents = [document for _, document in pairs]
    client = create_app(Settings.from_env({"LOG_REQUESTS": "false"})).test_client()
    model = client.get("/v1/models").get_json()["data"][0]
    started = time.perf_counter()
    ranked, sizes = {}, {}
    for precision in PRECISIONS:
        q, d = embed(client, queries, precision), embed(client, documents, precision)
        sizes[precision] = d.shape[1] * d.itemsize
        ranked[precision] = np.argsort(-scores(q, d, precision), axis=1, kind="stable")[:, :10]
    exact = ranked["float32"]
    results = []
    for precision in PRECISIONS:
        top = ranked[precision]
        recall = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(top, exact)])
        first = np.mean(top[:, 0] == exact[:, 0])
        results.append(
            {
                "precision": precision,
                "bytes": sizes[precision],
                "recall@10": round(float(recall), 3),
                "first": round(float(first), 3),
            }
        )
    print(
        json.dumps(
            {
                "model": model["id"],
                "dimension": model["dimension"],
                "documents": len(documents),
                "queries": len(queries),
                "seconds": round(time.perf_counter() - started, 1),
            }
        )
    )
    print("| precision | bytes per vector | recall@10 vs float32 | same top hit |")
    print("|---|---|---|---|")
    for row in results:
        print(f"| {row['precision']} | {row['bytes']} | {row['recall@10']:.3f} | {row['first']:.3f} |")


if __name__ == "__main__":
    main()
