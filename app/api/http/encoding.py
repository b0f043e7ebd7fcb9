"""Vectors -> response bytes without per-float Python objects.

orjson serialises numpy rows directly; `base64` is the little-endian float32
buffer the official OpenAI client decodes with `np.frombuffer(..., "float32")`.
"""

from __future__ import annotations

import base64

import numpy as np
import orjson
from flask import Response

_JSON_OPTIONS = orjson.OPT_SERIALIZE_NUMPY


def encode_rows(vectors: np.ndarray, encoding_format: str) -> list:
    if encoding_format == "base64":
        # Quantized rows are bytes already; float rows are sent as little-endian float32.
        rows = vectors.astype("<f4", copy=False) if vectors.dtype.kind == "f" else vectors
        return [base64.b64encode(row.tobytes()).decode("ascii") for row in rows]
    return list(vectors)


# Multi-vector precisions: what each token's vector is sent as.
MATRIX_DTYPES = {"float32": "<f4", "float16": "<f2"}


def matrix_at(matrix: np.ndarray, precision: str) -> np.ndarray:
    """One input's [tokens x dim] vectors at `precision`: float32, float16, or binary (each vector's signs,
    8 to a byte as numpy's packbits packs them: sentence-transformers' ubinary)."""
    if precision == "binary":
        return np.packbits(np.asarray(matrix) > 0, axis=-1)
    return np.ascontiguousarray(matrix, dtype=MATRIX_DTYPES[precision])


def encode_matrices(matrices: list[np.ndarray], encoding_format: str, precision: str = "float32") -> list:
    """Per input, a matrix (ColBERT's token vectors) at `precision`: nested numbers, or one base64 string of
    its rows' bytes."""
    converted = [matrix_at(matrix, precision) for matrix in matrices]
    if encoding_format == "base64":
        return [base64.b64encode(m.tobytes()).decode("ascii") for m in converted]
    return [m.astype(np.float32) if m.dtype.kind == "f" else m for m in converted]


def multi_vector_fields(matrices: list[np.ndarray], encoding_format: str, precision: str) -> dict:
    """An answer's per-input multi-vectors (ColBERT's tokens, a page's patches) with what it takes to read them."""
    return {
        "colbert": encode_matrices(matrices, encoding_format, precision),
        "colbert_dimension": int(matrices[0].shape[1]) if matrices else 0,
        "colbert_precision": precision,
        "colbert_shapes": [list(matrix.shape) for matrix in matrices],
    }


def encode_sparse(sparse: list, token_strings=None) -> list[dict]:
    out = []
    for ids, values in sparse:
        entry = {"indices": ids, "values": values}
        if token_strings is not None:
            entry["tokens"] = token_strings(ids)
        out.append(entry)
    return out


def usage(tokens: int) -> dict:
    """OpenAI's usage block: every token here is a prompt token."""
    return {"prompt_tokens": tokens, "total_tokens": tokens}


def json_response(payload, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(
        orjson.dumps(payload, option=_JSON_OPTIONS), status=status, headers=headers, mimetype="application/json"
    )
