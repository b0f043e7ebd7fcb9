"""The embedding cache: raw model outputs per row, in each worker and (with REDIS_URL) shared through Redis.

A row's key is everything that changes its raw output: the model's
fingerprint and dtype, the exact ids (and image pixels) the forward pass
reads, and the output kind. Values are the raw outputs before
normalisation and `dimensions`, so every per-request option still applies.
"""

from .keys import model_fingerprint, model_salt, row_key
from .lookup import CacheLookup, lookup
from .tiers import CacheConfig, CacheStats, LocalCache, RedisTier, TieredCache

__all__ = [
    "CacheConfig",
    "CacheLookup",
    "CacheStats",
    "LocalCache",
    "RedisTier",
    "TieredCache",
    "lookup",
    "model_fingerprint",
    "model_salt",
    "row_key",
]
