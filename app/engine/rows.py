"""What the batcher and planner move around: a request's inputs as rows with a cost.

A row's cost in tokens is `len(row)`: a list of token ids for text, the
number of patches a vision tower attends over for an image. The planner
(planning.py) cuts length-sorted rows into forward passes by that cost, so
text and images are batched by the same rules.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

from .m3 import DENSE, RowOutput
from .planning import plan_batches


@dataclass(frozen=True)
class Prepared:
    rows: list
    prompt_length: int = 0
    outputs: frozenset[str] = DENSE  # what the request wants computed (m3.py)

    @property
    def token_count(self) -> int:
        return sum(len(row) for row in self.rows)


@dataclass(frozen=True, eq=False)
class ImageRow:
    """One preprocessed image: the processor's arrays with a leading batch axis of 1."""

    arrays: dict[str, np.ndarray]
    tokens: int

    def __len__(self) -> int:
        return self.tokens

    @property
    def shape_key(self) -> tuple:
        """Rows with the same key can be concatenated into one batch."""
        return tuple(sorted((name, array.shape[1:]) for name, array in self.arrays.items()))


def forward_planned(tower, prepared: Prepared, batch_size: int, batch_tokens: int = 1 << 30,
                    on_batch: Callable | None = None) -> np.ndarray:
    """A whole request through `tower.forward_rows`, in the caller's order.

    Rows are sorted by cost and cut into passes of at most `batch_size` rows
    and `batch_tokens` padded tokens, each padded only to its own longest row.
    """
    rows = prepared.rows
    out = new_results(len(rows), tower.dimension, prepared.outputs)
    order = sorted(range(len(rows)), key=lambda i: len(rows[i]), reverse=True)
    plan = plan_batches([len(rows[i]) for i in order], batch_size, batch_tokens, tower.overhead_tokens)
    for start, end in plan:
        chunk = order[start:end]
        batch = [rows[i] for i in chunk]
        began = time.perf_counter()
        results = tower.forward_rows(batch, [prepared.prompt_length] * len(batch), prepared.outputs)
        for position, index in enumerate(chunk):
            store(out, index, results[position])
        if on_batch is not None:
            on_batch(len(batch), sum(len(row) for row in batch), time.perf_counter() - began)
    return out


def new_results(count: int, dimension: int, outputs: frozenset[str]):
    """Where a request's results go: a float32 matrix of dense vectors, or a RowOutput per row."""
    if outputs == DENSE:
        return np.empty((count, dimension), dtype=np.float32)
    return [None] * count


def store(out, index: int, result) -> None:
    """One row's result; a pass that also ran heads for other requests still gives dense-only ones a vector."""
    if isinstance(out, np.ndarray):
        out[index] = result.dense if isinstance(result, RowOutput) else result
    else:
        out[index] = result if isinstance(result, RowOutput) else RowOutput(dense=np.asarray(result))


def stack_rows(rows: Sequence[ImageRow]) -> list[tuple[list[int], dict[str, np.ndarray]]]:
    """Group image rows whose arrays have the same shapes and concatenate each group.

    Returns (positions, arrays) per group; fixed-resolution processors (CLIP,
    SigLIP) and padded variable-resolution ones (SigLIP 2) make one group.
    """
    groups: dict[tuple, list[int]] = {}
    for position, row in enumerate(rows):
        groups.setdefault(row.shape_key, []).append(position)
    stacked = []
    for positions in groups.values():
        names = rows[positions[0]].arrays.keys()
        stacked.append((positions, {name: np.concatenate([rows[p].arrays[name] for p in positions])
                                    for name in names}))
    return stacked
