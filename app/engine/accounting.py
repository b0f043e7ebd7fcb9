"""What this process has run and what waits: batch totals per model, queue depths, the observer's hooks."""

from __future__ import annotations

import threading
from collections.abc import Callable

from .budgets import Throughput
from .results import EngineObserver


class BatchStats:
    """Running totals of the forward batches this process has run."""

    def __init__(self):
        self.batches = 0
        self.items = 0
        self.tokens = 0
        self.seconds = 0.0
        self.largest = 0

    def add(self, size: int, tokens: int, seconds: float) -> None:
        self.batches += 1
        self.items += size
        self.tokens += tokens
        self.seconds += seconds
        self.largest = max(self.largest, size)

    def as_dict(self) -> dict:
        return {
            "count": self.batches,
            "items": self.items,
            "tokens": self.tokens,
            "mean_size": self.items / self.batches if self.batches else 0.0,
            "max_size": self.largest,
            "inference_seconds": round(self.seconds, 6),
        }


class Accounting:
    """Per process. `batchers` is the engine's (model, kind) -> Batcher map, read for the rows they hold;
    requests served without a batcher are counted here while they wait for the model."""

    def __init__(self, names, observer: EngineObserver, batchers: dict):
        self.observer = observer
        self.batchers = batchers
        self.stats = BatchStats()
        self.model_stats = {name: BatchStats() for name in names}
        self._waiting = dict.fromkeys(names, 0)
        self._lock = threading.Lock()
        self._throughput: dict[tuple[str, str], Throughput] = {}

    @property
    def queue_depth(self) -> int:
        return sum(self.model_queue_depth(name) for name in self._waiting)

    def model_queue_depth(self, name: str) -> int:
        batched = sum(batcher.depth for (model, _), batcher in self.batchers.items() if model == name)
        return self._waiting[name] + batched

    def waiting(self, name: str, delta: int) -> None:
        with self._lock:
            self._waiting[name] += delta
        self.report_queue(name)

    def report_queue(self, name: str) -> None:
        self.observer.queue_depth(name, self.model_queue_depth(name))

    def batch_hook(self, name: str, kind: str, links: tuple = ()) -> Callable[..., None]:
        """Called after each forward pass with its rows, real tokens and seconds, and (from the batcher) the
        span contexts of the requests it carried; `links`: those of an unbatched pass's one request."""
        measure = self.measure(name, kind)

        def on_batch(size: int, tokens: int, seconds: float, carried: tuple = ()) -> None:
            self.stats.add(size, tokens, seconds)
            self.model_stats[name].add(size, tokens, seconds)
            self.observer.batch(name, size, tokens, seconds, carried or links)
            measure(size, tokens, seconds)

        return on_batch

    def measure(self, name: str, kind: str) -> Callable[[int, int, float], None]:
        """A batch hook that only measures the rate (warm-up's batches are timed, not counted as served)."""
        with self._lock:
            throughput = self._throughput.setdefault((name, kind), Throughput())
        return lambda size, tokens, seconds: throughput.add(tokens, seconds)

    def rate(self, name: str, kind: str) -> float | None:
        """Tokens a second this worker computes for `name`'s rows of `kind`; None before any was measured."""
        throughput = self._throughput.get((name, kind))
        return throughput.rate if throughput is not None else None

    def reset_rates(self) -> None:
        """A forked worker measures its own: its parent's rates were taken on other CPUs, or none."""
        with self._lock:
            self._throughput.clear()

    def cache(self, name: str, tiers: dict) -> None:
        for tier, counts in tiers.items():
            self.observer.cache(name, tier, *counts)
