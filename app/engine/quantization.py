"""Quantized vectors, as sentence-transformers' `quantize_embeddings` makes them.

binary and ubinary need nothing but the vector: one bit per dimension (> 0),
packed eight to a byte (binary: offset by -128 into int8). int8 and uint8 map
each dimension's range onto 256 steps; the ranges come from a fixed
calibration corpus shipped with the package, embedded once per model when it
loads, so a vector's quantized form never depends on what else was in its
request. A value outside its dimension's calibrated range saturates at the
end of the scale, as sentence-transformers' does.
"""

from __future__ import annotations

from importlib import resources

import numpy as np

from .errors import InvalidInput, Unsupported
from .postprocess import postprocess

PRECISIONS = ("float32", "int8", "uint8", "binary", "ubinary")
CALIBRATED = frozenset({"int8", "uint8"})


def calibration_texts() -> list[str]:
    text = resources.files(__package__).joinpath("data/calibration.txt").read_text(encoding="utf-8")
    return [line for line in text.splitlines() if line.strip()]


class Calibration:
    """One model's calibration vectors (raw, as the model gives them) and the int8 ranges they imply for
    each way a request post-processes its vectors (dimensions, normalisation)."""

    def __init__(self, raw: np.ndarray):
        self.raw = np.ascontiguousarray(raw, dtype=np.float32)
        self._ranges: dict[tuple[int | None, bool], np.ndarray] = {}

    def ranges(self, dimensions: int | None, normalize: bool) -> np.ndarray:
        key = (dimensions, normalize)
        if key not in self._ranges:
            vectors = postprocess(self.raw, normalize=normalize, dimensions=dimensions)
            self._ranges[key] = np.vstack((vectors.min(axis=0), vectors.max(axis=0)))
        return self._ranges[key]


def quantize(vectors: np.ndarray, precision: str, ranges: np.ndarray | None = None) -> np.ndarray:
    if precision == "float32":
        return vectors
    if precision == "binary":
        return (np.packbits(vectors > 0, axis=-1).astype(np.int16) - 128).astype(np.int8)
    if precision == "ubinary":
        return np.packbits(vectors > 0, axis=-1)
    if precision in CALIBRATED:
        if ranges is None:
            raise Unsupported(
                f"precision {precision!r} needs calibration ranges this model does not have",
                param="precision",
                code="unsupported_precision",
            )
        ranges = ranges.astype(np.float32, copy=False)
        starts = ranges[0]
        steps = (ranges[1] - starts) / 255
        steps = np.where(steps == 0, 1, steps)  # a dimension constant over the corpus
        buckets = np.clip(np.floor((vectors - starts) / steps), 0, 255)
        if precision == "uint8":
            return buckets.astype(np.uint8)
        return (buckets - 128).astype(np.int8)
    raise InvalidInput(f"unknown precision {precision!r}; one of {', '.join(PRECISIONS)}", param="precision")
