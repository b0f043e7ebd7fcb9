"""Texts or pairs of texts -> every label's score: sequence classifiers (`/predict`, `/classify`), and a
cross-encoder's one score where a classification route asks it (as text-embeddings-inference answers)."""

from __future__ import annotations

import time

import numpy as np

from . import checks
from .capabilities import RERANK
from .requests import ScoreRequest
from .results import Classes


def _softmax(x: np.ndarray) -> np.ndarray:
    shifted = np.exp(x - x.max(axis=-1, keepdims=True))
    return shifted / shifted.sum(axis=-1, keepdims=True)


# What a classification's logits go through, by the text-classification pipeline's names (`function_to_apply`).
FUNCTIONS = {
    "softmax": _softmax,
    "sigmoid": lambda x: 1.0 / (1.0 + np.exp(-x)),
    "none": lambda x: x,
}


def apply(function: str, logits: np.ndarray) -> np.ndarray:
    """`logits` [inputs, labels] through `function`, computed in float64 and given back as float32."""
    return FUNCTIONS[function](logits.astype(np.float64)).astype(np.float32)


def classify(execution, model, inputs: list, request: ScoreRequest) -> Classes:
    """`inputs`: texts, or (text, text pair) tuples, mixed as the caller likes."""
    checks.require_classify(model, request.field)
    kind = model.kinds[0]
    execution.check_capacity(model, kind)
    started = time.perf_counter()
    chars = sum(len(item) if isinstance(item, str) else len(item[0]) + len(item[1]) for item in inputs)
    prepared = execution.off_loop(chars, model.prepare_classify, inputs, request)
    results, timings, cached = execution.execute(model, kind, prepared, time.perf_counter() - started, request)
    logits = results.scores[:, None] if RERANK in prepared.outputs else results.dense
    return Classes(
        scores=logits if request.raw_scores else model.classify_activate(logits),
        labels=model.labels,
        prompt_tokens=prepared.token_count,
        timings=timings,
        model=model.name,
        cache=cached,
    )
