"""What the engine hands back, and the hooks through which it reports what it ran."""

from __future__ import annotations

from contextlib import nullcontext
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Timings:
    """Seconds spent in each stage of one request, for metrics and response headers."""

    tokenize: float = 0.0  # tokenisation, or image decoding and preprocessing
    queue: float = 0.0
    inference: float = 0.0


@dataclass(frozen=True)
class Embeddings:
    vectors: np.ndarray  # float32 [n, dim], caller's order
    prompt_tokens: int
    timings: Timings = Timings()
    sparse: list[tuple[np.ndarray, np.ndarray]] | None = None  # per input: (token ids, weights)
    colbert: list[np.ndarray] | None = None  # per input: [tokens - 1, dim]
    tokens: list[np.ndarray] | None = None  # per input: [tokens, hidden], before pooling
    model: str = ""
    cache: str | None = None  # hit, partial or miss; None: the cache was not asked
    # per vector, (input index, page from 1): set where an input was a document embedded page by page
    sources: list[tuple[int, int | None]] | None = None


@dataclass(frozen=True)
class Scores:
    """Relevance scores of (query, document) pairs: [queries, documents], the caller's order."""

    scores: np.ndarray
    prompt_tokens: int
    timings: Timings = Timings()
    model: str = ""
    cache: str | None = None
    # which input (and page, from 1) each document column is, where a document was a PDF of several pages
    sources: list[tuple[int, int | None]] | None = None


@dataclass(frozen=True)
class Classes:
    """Every label's score for each input: [inputs, labels], labels in the model's id order."""

    scores: np.ndarray
    labels: list[str]
    prompt_tokens: int
    timings: Timings = Timings()
    model: str = ""
    cache: str | None = None


class EngineObserver:
    """Hooks for what the engine runs: the service's metrics and traces implement them (no-ops here).

    The trace hooks are called in the request's own greenlet or thread, where its span is current, except
    `batch`, which the inference loop calls with the span contexts of the requests whose rows the pass ran."""

    def batch(self, model: str, size: int, tokens: int, seconds: float, links: tuple = ()) -> None:
        pass

    def queue_depth(self, model: str, depth: int) -> None:
        pass

    def cache(self, model: str, tier: str, hits: int, misses: int, errors: int = 0) -> None:
        pass

    def trace_context(self):
        """The calling request's span context, for the batch that carries its rows to link to; None when
        untraced."""
        return None

    def stage(self, name: str, **attributes):
        """A span around one stage of the calling request (tokenising, the cache lookup)."""
        return nullcontext()

    def interval(self, name: str, started: float, finished: float, **attributes) -> None:
        """A stage of the calling request that already happened elsewhere (queue wait, its share of the
        forward passes), with `time.perf_counter()` times."""
