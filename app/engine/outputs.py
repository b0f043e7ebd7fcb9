"""What a forward pass gives back: one `BatchOutput` per pass, gathered into one request's `Results`."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .capabilities import COLBERT, OUTPUT_TYPES, RERANK, SPARSE, TOKENS


@dataclass(frozen=True, eq=False)
class BatchOutput:
    """Everything one forward pass computed, row-aligned with the rows it was given."""

    dense: np.ndarray | None = None  # float32 [n, dim], before normalisation
    scores: np.ndarray | None = None  # float32 [n]: one score per row (rerankers)
    sparse: list | None = None  # per row: (token ids ascending, weights)
    multivector: list | None = None  # per row: float32 [tokens, dim], before normalisation
    tokens: list | None = None  # per row: float32 [tokens, hidden], the encoder's last hidden state


class Results:
    """One request's results, filled row by row from whichever passes computed them."""

    def __init__(self, count: int, outputs: frozenset[str]):
        self.count = count
        self.dense: np.ndarray | None = None
        self.scores = np.empty(count, dtype=np.float32) if RERANK in outputs else None
        self.sparse = [None] * count if SPARSE in outputs else None
        self.multivector = [None] * count if COLBERT in outputs else None
        self.tokens = [None] * count if TOKENS in outputs else None

    def put(self, index: int, batch: BatchOutput, position: int) -> None:
        # A pass that also ran heads for other requests gives this one only what it asked for.
        if batch.dense is not None:
            if self.dense is None:
                self.dense = np.empty((self.count, batch.dense.shape[1]), dtype=np.float32)
            self.dense[index] = batch.dense[position]
        if self.scores is not None:
            self.scores[index] = batch.scores[position]
        if self.sparse is not None:
            self.sparse[index] = batch.sparse[position]
        if self.multivector is not None:
            self.multivector[index] = batch.multivector[position]
        if self.tokens is not None:
            self.tokens[index] = batch.tokens[position]

    def put_values(self, index: int, values: dict) -> None:
        """One row's outputs from elsewhere (the cache), by output kind: dense, score, sparse, colbert."""
        if "dense" in values:
            if self.dense is None:
                self.dense = np.empty((self.count, len(values["dense"])), dtype=np.float32)
            self.dense[index] = values["dense"]
        if self.scores is not None:
            self.scores[index] = values["score"]
        if self.sparse is not None:
            self.sparse[index] = values["sparse"]
        if self.multivector is not None:
            self.multivector[index] = values["colbert"]

    def values(self, index: int) -> dict:
        """One row's outputs by output kind, for the cache."""
        values = {}
        if self.dense is not None:
            values["dense"] = self.dense[index]
        if self.scores is not None:
            values["score"] = self.scores[index]
        if self.sparse is not None:
            values["sparse"] = self.sparse[index]
        if self.multivector is not None:
            values["colbert"] = self.multivector[index]
        return values


def cached_kinds(outputs: frozenset[str]) -> list[str]:
    """The output kinds a row of a request with these outputs is cached under."""
    if RERANK in outputs:
        return ["score"]
    return [kind for kind in OUTPUT_TYPES if kind in outputs] or ["dense"]
