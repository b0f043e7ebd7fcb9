"""What the batcher and planner move around: a request's inputs as rows with a cost.

A row's cost in tokens is `len(row)`: the token ids of a text, the patches a
vision tower attends over for an image. The planner (planning.py) cuts
length-sorted rows into forward passes by that cost, so every kind of row is
batched by the same rules. Per-row data a family needs (a prompt's length,
an image's arrays) travels inside the row.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from .capabilities import DENSE
from .outputs import Results
from .planning import plan_batches


@dataclass(frozen=True, eq=False)
class TextRow:
    """One tokenised text: its ids (special tokens included), how many leading ones are prompt
    tokens that pooling leaves out (sentence-transformers' `include_prompt: false`), and which of the
    model's routes reads it (a sparse encoder's query or document side; "" for the only one)."""

    ids: list[int]
    prompt_length: int = 0
    route: str = ""

    def __len__(self) -> int:
        return len(self.ids)


@dataclass(frozen=True, eq=False)
class PairRow:
    """One (query, document) pair as the model reads it: special tokens included; the first
    `first_segment` ids (prefix, query, separator) are segment 0 for models with token types."""

    ids: list[int]
    first_segment: int = 0

    def __len__(self) -> int:
        return len(self.ids)


@dataclass(frozen=True, eq=False)
class MultimodalRow:
    """One vision-language input: its token ids, image placeholders already expanded to one per
    image token, and the processed image (pixel patches and grid) when it has one. Its cost is
    its text tokens plus its image tokens, which is `len(ids)`."""

    ids: list[int]
    image: dict[str, np.ndarray] | None = None

    def __len__(self) -> int:
        return len(self.ids)


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


@dataclass(frozen=True, eq=False)
class FeatureRow:
    """One input as the model's own processor prepared it, without padding or a batch axis: its token arrays
    (ids, masks) along axis 0, and for an image its pixel arrays too; `route` is the side that reads it. Its
    cost is its tokens, image tokens included."""

    arrays: dict[str, np.ndarray]
    route: str = ""

    # what its media cost beyond its token ids: the patches a vision tower attends over, the spectrogram frames an
    # audio tower reads (more than the soft tokens they become)
    tokens: int = 0

    def __len__(self) -> int:
        ids = self.arrays.get("input_ids")
        return max(int(ids.shape[0]) if ids is not None else 0, self.tokens)


@dataclass(frozen=True)
class Prepared:
    """A request's rows, and the outputs it wants computed for them."""

    rows: list
    outputs: frozenset[str] = DENSE
    # which input (and page, from 1) each row is, where an input was a document of several pages
    sources: list[tuple[int, int | None]] | None = None

    @property
    def token_count(self) -> int:
        return sum(len(row) for row in self.rows)


def pad_right(rows: Sequence, pad_id: int, width: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Rows of token ids -> (input_ids, attention_mask) int64 arrays, padded on the right to `width` or the longest.

    Right padding suits decoders too: under a causal mask no real token attends
    to the pads after it, and positions start at 0 as for an unpadded input.
    """
    width = width or max(len(row) for row in rows)
    input_ids = np.full((len(rows), width), pad_id, dtype=np.int64)
    mask = np.zeros((len(rows), width), dtype=np.int64)
    for i, row in enumerate(rows):
        input_ids[i, : len(row)] = row.ids
        mask[i, : len(row)] = 1
    return input_ids, mask


def forward_planned(
    lane, prepared: Prepared, batch_size: int, batch_tokens: int = 1 << 30, on_batch: Callable | None = None
) -> Results:
    """A whole request through `lane.forward_rows`, without a batcher; results in the caller's order.

    Rows are sorted by cost and cut into passes of at most `batch_size` rows
    and `batch_tokens` padded tokens, each padded only to its own longest row.
    """
    rows = prepared.rows
    out = Results(len(rows), prepared.outputs)
    order = sorted(range(len(rows)), key=lambda i: len(rows[i]), reverse=True)
    plan = plan_batches([len(rows[i]) for i in order], batch_size, batch_tokens, lane.overhead_tokens)
    for start, end in plan:
        chunk = order[start:end]
        batch = [rows[i] for i in chunk]
        began = time.perf_counter()
        output = lane.forward_rows(batch, prepared.outputs)
        for position, index in enumerate(chunk):
            out.put(index, output, position)
        if on_batch is not None:
            on_batch(len(batch), sum(len(row) for row in batch), time.perf_counter() - began)
    return out


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
        stacked.append((positions, {name: np.concatenate([rows[p].arrays[name] for p in positions]) for name in names}))
    return stacked
