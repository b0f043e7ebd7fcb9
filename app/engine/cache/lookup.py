"""One request's rows against the cache: which are answered, which must be computed, what to store after."""

from __future__ import annotations

from dataclasses import dataclass

from ..outputs import Results, cached_kinds
from ..rows import Prepared
from . import codec
from .keys import row_key
from .tiers import TieredCache


@dataclass
class CacheLookup:
    prepared: Prepared
    kinds: list[str]
    keys: list[dict[str, bytes] | None]  # per row, per output kind; None: not cacheable
    hits: dict[int, dict]  # row -> its values by kind
    misses: list[int]
    tiers: dict  # per tier: (hits, misses[, errors]) of this lookup

    @property
    def state(self) -> str:
        if not self.misses:
            return "hit"
        return "miss" if not self.hits else "partial"

    def to_compute(self) -> Prepared:
        return Prepared(rows=[self.prepared.rows[i] for i in self.misses], outputs=self.prepared.outputs)

    def merge(self, computed: Results | None) -> Results:
        """The whole request's results: cached rows and computed ones, in the caller's order."""
        results = Results(len(self.prepared.rows), self.prepared.outputs)
        for index, values in self.hits.items():
            results.put_values(index, values)
        if computed is not None:
            for position, index in enumerate(self.misses):
                results.put_values(index, computed.values(position))
        return results

    def entries(self, computed: Results) -> dict[bytes, bytes]:
        """What to store: every computed row's outputs, each under its own key."""
        items = {}
        for position, index in enumerate(self.misses):
            keys = self.keys[index]
            if keys is None:
                continue
            values = computed.values(position)
            for kind in self.kinds:
                items[keys[kind]] = codec.encode(kind, values[kind])
        return items


def lookup(cache: TieredCache, salt: bytes, prepared: Prepared, dimension: int) -> CacheLookup:
    """`dimension`: the length of the model's dense vectors, which a cached one must have."""
    kinds = cached_kinds(prepared.outputs)
    keys: list[dict[str, bytes] | None] = []
    for row in prepared.rows:
        per_kind = {}
        for kind in kinds:
            key = row_key(row, kind)
            if key is None:
                per_kind = None
                break
            per_kind[kind] = salt + key
        keys.append(per_kind)
    wanted = [key for per_kind in keys if per_kind for key in per_kind.values()]
    found, tiers = cache.get_many(list(dict.fromkeys(wanted))) if wanted else ({}, {})
    hits, misses, rejected = {}, [], 0
    for index, per_kind in enumerate(keys):
        values = None
        if per_kind is not None and all(key in found for key in per_kind.values()):
            values = {kind: codec.decode(kind, found[key]) for kind, key in per_kind.items()}
            # Corrupt, truncated, or of the wrong shape or not finite: recompute, never a wrong vector.
            if any(value is None or not codec.plausible(kind, value, dimension) for kind, value in values.items()):
                values = None
                rejected += 1
        if values is None:
            misses.append(index)
        else:
            hits[index] = values
    if rejected:
        tiers = {**tiers, "rejected": (0, 0, rejected)}
    return CacheLookup(prepared, kinds, keys, hits, misses, tiers)
