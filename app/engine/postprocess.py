"""Per-request post-processing of raw pooled vectors, in numpy."""

from __future__ import annotations

import numpy as np


def postprocess(vectors: np.ndarray, *, normalize: bool, dimensions: int | None) -> np.ndarray:
    """Matryoshka truncation first, then L2 normalisation, as OpenAI's `dimensions` does."""
    if dimensions is not None:
        vectors = vectors[:, :dimensions]
    if normalize:
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        vectors = vectors / np.maximum(norms, 1e-12)
    return np.ascontiguousarray(vectors, dtype=np.float32)
