"""Per-worker int8 and uint8 ranges: each text model's vectors of the shipped calibration corpus."""

from __future__ import annotations

import threading
from collections.abc import Callable

import numpy as np

from .capabilities import EMBED_TEXT
from .quantization import CALIBRATED, Calibration, calibration_texts, quantize
from .rows import forward_planned


class Calibrations:
    """Computed in each worker (the master never runs a forward pass: see ARCHITECTURE.md), the same in all of
    them: the same weights, corpus, device and dtype give the same ranges, so a vector's int8 form never
    depends on its request or on the worker that answered it."""

    def __init__(self, limits):
        self.limits = limits
        self.by_model: dict[str, Calibration] = {}
        self._lock = threading.Lock()

    def reset(self) -> None:
        """A fork's copy is its parent's, who may have run on another device."""
        self.by_model = {}

    def of(self, model, on_batch=None) -> Calibration | None:
        """`on_batch`: told each pass's size, tokens and seconds (warm-up measures the worker's rate by it)."""
        if EMBED_TEXT not in model.capabilities:
            return None
        with self._lock:
            if model.name not in self.by_model:
                lane = model.lane(model.kind_of("text"))
                prepared = model.prepare_texts(calibration_texts())
                with model.lock:
                    limits = self.limits
                    results = forward_planned(lane, prepared, limits.max_batch_size, limits.max_batch_tokens, on_batch)
                self.by_model[model.name] = Calibration(results.dense)
            return self.by_model[model.name]

    def quantize(
        self, model, vectors: np.ndarray, precision: str, dimensions: int | None, normalize: bool, offload: Callable
    ) -> np.ndarray:
        """`vectors` (post-processed with `dimensions` and `normalize`) at `precision`."""
        ranges = None
        if precision in CALIBRATED:
            calibration = self.by_model.get(model.name) or offload(self.of, model)
            ranges = calibration.ranges(dimensions, normalize) if calibration else None
        return quantize(vectors, precision, ranges)
