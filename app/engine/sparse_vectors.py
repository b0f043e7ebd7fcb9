"""Finishing sparse vectors per request: (token ids ascending, weights) rows, pruned as the request asks."""

from __future__ import annotations

import numpy as np


def prune(rows: list | None, top_k: int | None, min_weight: float | None) -> list | None:
    """Each row's weights of at least `min_weight`, then its `top_k` largest (ties: the lower id first), ids
    still ascending. Rows are the cache's and other requests' too: never changed in place."""
    if rows is None or (top_k is None and min_weight is None):
        return rows
    return [_prune(ids, weights, top_k, min_weight) for ids, weights in rows]


def _prune(ids: np.ndarray, weights: np.ndarray, top_k: int | None, min_weight: float | None):
    keep = np.arange(len(ids))
    if min_weight is not None:
        keep = keep[weights >= min_weight]
    if top_k is not None and len(keep) > top_k:
        order = np.lexsort((ids[keep], -weights[keep]))[:top_k]
        keep = np.sort(keep[order])
    return ids[keep], weights[keep]
