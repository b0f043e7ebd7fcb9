"""BGE-M3's scores between two inputs' sparse weights or ColBERT vectors (numpy only: the web layer uses them)."""

from __future__ import annotations

import numpy as np


def lexical_score(a: tuple[np.ndarray, np.ndarray], b: tuple[np.ndarray, np.ndarray]) -> float:
    """Sum over shared token ids of the product of their weights (BGE-M3's lexical matching score)."""
    shared, in_a, in_b = np.intersect1d(a[0], b[0], assume_unique=True, return_indices=True)
    return float(np.dot(a[1][in_a], b[1][in_b])) if len(shared) else 0.0


def maxsim_score(query: np.ndarray, document: np.ndarray) -> float:
    """Late interaction: each query vector's best match in the document, averaged over the query."""
    if not len(query) or not len(document):
        return 0.0
    return float((query @ document.T).max(axis=1).mean())
