#!/usr/bin/env python3
"""Bytes a multi-vector answer takes on the wire, per token, in each format `/embed_text` offers for ColBERT
vectors (`colbert_precision` x `encoding_format`), through the service's own encoders and JSON writer.

    python benchmarks/wire_sizes.py                 # 1024-wide vectors (BGE-M3's ColBERT head), 100 tokens
    python benchmarks/wire_sizes.py --dim 128       # a ColBERT/PyLate model's width
"""

from __future__ import annotations

import argparse
import sys

import numpy as np
import orjson
from serving import ROOT


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dim", type=int, default=1024)
    parser.add_argument("--tokens", type=int, default=100)
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    from app.api.http.encoding import encode_matrices

    rng = np.random.default_rng(0)
    matrix = rng.standard_normal((args.tokens, args.dim)).astype(np.float32)
    matrix /= np.linalg.norm(matrix, axis=1, keepdims=True)
    print(f"{args.tokens} tokens x {args.dim} dimensions, normalised\n")
    print("| colbert_precision | encoding_format | bytes per token | x float32 JSON |")
    print("|---|---|---|---|")
    baseline = None
    for precision in ("float32", "float16", "binary"):
        for encoding in ("float", "base64"):
            body = orjson.dumps(
                {"colbert": encode_matrices([matrix], encoding, precision)}, option=orjson.OPT_SERIALIZE_NUMPY
            )
            per_token = len(body) / args.tokens
            baseline = baseline or per_token
            print(f"| {precision} | {encoding} | {per_token:,.0f} | {per_token / baseline:.3f} |")


if __name__ == "__main__":
    main()
