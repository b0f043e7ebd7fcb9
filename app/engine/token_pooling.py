"""Shrinking a document's multi-vectors (ColBERT's token vectors) by a pool factor, as PyLate offers it:
sentence-transformers' HierarchicalTokenPooling (Ward clustering on cosine distance, each cluster replaced by
its mean), called rather than written again. A finishing step, like `normalize`: per request, after the cache
(which keeps every token's vector)."""

from __future__ import annotations

import numpy as np
import torch


def pool_tokens(matrices: list[np.ndarray], pool_factor: float, normalize: bool) -> list[np.ndarray]:
    """Each [tokens x dim] matrix clustered to about tokens / pool_factor vectors. No token is protected:
    the vectors given are the scored ones (BGE-M3's leave out the CLS already)."""
    from sentence_transformers.multi_vector_encoder.modules import HierarchicalTokenPooling

    pooling = HierarchicalTokenPooling(pool_factor, num_protected_tokens=0, normalize_embeddings=normalize)
    with torch.inference_mode():
        pooled = pooling.pool([torch.from_numpy(np.ascontiguousarray(m, dtype=np.float32)) for m in matrices])
    return [np.ascontiguousarray(p.numpy(), dtype=np.float32) for p in pooled]
