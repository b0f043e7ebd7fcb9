"""Dynamic batching across the concurrent requests of one worker.

Request threads (or greenlets) put their prepared rows (token ids,
preprocessed images: any kind, see rows.py) in a bounded queue and wait; one
inference loop takes rows from the queue, oldest request first, into batches
of at most `max_batch_size` rows and `max_batch_tokens` padded tokens, runs
them, and hands each request exactly its own vectors back. A large request is
split over several batches, and the rows of small requests that arrived
meanwhile ride along in the next one, so nobody waits for a whole 2048-item
request to finish. There is no fixed collection window by default: whatever is
queued when the model becomes free forms the next batch (continuous batching,
as text-embeddings-inference does); `max_wait_ms` > 0 holds a partial batch
open for late arrivals.

The primitives come from `threading` at start time, so under gevent (after
monkey-patching) the loop is a greenlet and waiting is cooperative, while
the forward pass itself goes through `offload` to a real OS thread.
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from .errors import EngineError, InferenceFailed, Overloaded
from .outputs import BatchOutput, Results
from .planning import plan_batches

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class BatchLimits:
    max_batch_size: int = 32
    max_batch_tokens: int = 16384
    max_wait: float = 0.0  # seconds
    max_queue: int = 256  # requests waiting
    request_timeout: float = 30.0  # seconds a request may wait before its first row runs


@dataclass(eq=False)
class _Job:
    rows: list  # len(row) is the cost (rows.py)
    outputs: frozenset[str]
    out: Results
    order: list[int]
    enqueued: float
    done: threading.Event
    cursor: int = 0  # rows of `order` already scheduled
    remaining: int = 0  # rows not yet computed
    started: float | None = None
    error: BaseException | None = None
    finished: float = 0.0


class Batcher:
    """Batches one kind of row for one model; `lane` runs them."""

    def __init__(self, lane, limits: BatchLimits, offload: Callable, on_batch: Callable, on_queue: Callable):
        self.lane = lane
        self.limits = limits
        self.offload = offload
        self.on_batch = on_batch
        self.on_queue = on_queue
        self._jobs: collections.deque[_Job] = collections.deque()
        self._pending_rows = 0
        self._cv = threading.Condition()
        self._thread = threading.Thread(target=self._loop, name=f"batcher-{lane.name}", daemon=True)
        self._thread.start()

    @property
    def depth(self) -> int:
        return len(self._jobs)

    # ------------------------------------------------------------ request side
    def check_capacity(self) -> None:
        """503 at once when the queue is full: before a request is tokenised, and again when it is queued."""
        if len(self._jobs) >= self.limits.max_queue:
            raise Overloaded(
                f"this worker's queue is full ({self.limits.max_queue} requests waiting, MAX_QUEUE); retry shortly"
            )

    def submit(self, prepared) -> tuple[Results, float, float]:
        """Block until this request's rows are computed: (results, started, finished)."""
        rows = prepared.rows
        outputs = prepared.outputs
        job = _Job(
            rows=rows,
            outputs=outputs,
            out=Results(len(rows), outputs),
            order=sorted(range(len(rows)), key=lambda i: len(rows[i]), reverse=True),
            enqueued=time.perf_counter(),
            done=threading.Event(),
            remaining=len(rows),
        )
        with self._cv:
            self.check_capacity()
            self._jobs.append(job)
            self._pending_rows += len(rows)
            depth = len(self._jobs)
            self._cv.notify()
        self.on_queue(depth)
        job.done.wait()
        if job.error is not None:
            raise job.error
        return job.out, job.started, job.finished

    # --------------------------------------------------------- inference side
    def _loop(self) -> None:
        while True:
            try:
                picks = self._next_batch()
                if picks:
                    self._run(picks)
            except Exception:  # pragma: no cover - a bug here must not strand every waiting request
                log.exception("batcher loop error")

    def _next_batch(self) -> list[tuple[_Job, int]]:
        limits = self.limits
        with self._cv:
            while not self._jobs:
                self._cv.wait()
            if limits.max_wait > 0 and self._pending_rows < limits.max_batch_size:
                deadline = time.perf_counter() + limits.max_wait
                while self._pending_rows < limits.max_batch_size:
                    left = deadline - time.perf_counter()
                    if left <= 0:
                        break
                    self._cv.wait(left)
            expired = self._expire()
            picks: list[tuple[_Job, int]] = []
            longest = 0
            while self._jobs and len(picks) < limits.max_batch_size:
                job = self._jobs[0]
                if job.error is not None:  # failed in an earlier batch: drop its remaining rows
                    self._jobs.popleft()
                    self._pending_rows -= len(job.order) - job.cursor
                    continue
                while job.cursor < len(job.order) and len(picks) < limits.max_batch_size:
                    index = job.order[job.cursor]
                    widest = max(longest, len(job.rows[index]))
                    if picks and widest * (len(picks) + 1) > limits.max_batch_tokens:
                        break
                    picks.append((job, index))
                    longest = widest
                    job.cursor += 1
                if job.cursor < len(job.order):
                    break  # the batch is full; this job continues in the next one
                self._jobs.popleft()
            self._pending_rows -= len(picks)
            depth = len(self._jobs)
        for job in expired:
            job.done.set()
        self.on_queue(depth)
        return picks

    def _expire(self) -> list[_Job]:
        """Fail the requests that waited too long before any of their rows ran (caller holds the lock)."""
        now = time.perf_counter()
        expired = [job for job in self._jobs if job.cursor == 0 and now - job.enqueued > self.limits.request_timeout]
        for job in expired:
            self._jobs.remove(job)
            self._pending_rows -= len(job.rows)
            job.error = Overloaded(
                f"the request waited {now - job.enqueued:.1f}s for the model, over REQUEST_TIMEOUT "
                f"({self.limits.request_timeout:g}s); the worker is overloaded"
            )
        return expired

    def _run(self, picks: list[tuple[_Job, int]]) -> None:
        """Run the picked rows as the cheapest sequence of forward passes (planning.py)."""
        picks.sort(key=lambda pick: len(pick[0].rows[pick[1]]), reverse=True)
        lengths = [len(job.rows[index]) for job, index in picks]
        for start, end in plan_batches(
            lengths, self.limits.max_batch_size, self.limits.max_batch_tokens, self.lane.overhead_tokens
        ):
            self._run_batch(picks[start:end])

    def _run_batch(self, picks: list[tuple[_Job, int]]) -> None:
        began = time.perf_counter()
        for job, _ in picks:
            if job.started is None:
                job.started = began
        rows = [job.rows[index] for job, index in picks]
        # One pass runs every head any of its rows' requests asked for.
        outputs = frozenset().union(*(job.outputs for job, _ in picks))
        try:
            output = self.offload(self._forward, rows, outputs)
        except BaseException as exc:  # noqa: BLE001 - every waiting request must hear about it
            log.exception("batch of %d rows failed", len(rows))
            error = (
                exc
                if isinstance(exc, EngineError)
                else InferenceFailed(f"inference failed: {type(exc).__name__}: {exc}")
            )
            self._finish(picks, None, error)
            return
        self.on_batch(len(rows), sum(len(r) for r in rows), time.perf_counter() - began)
        self._finish(picks, output, None)

    def _forward(self, rows: list, outputs: frozenset[str]) -> BatchOutput:
        # A model with batchers for several kinds of row must still run one pass at a time.
        with self.lane.lock:
            return self.lane.forward_rows(rows, outputs)

    @staticmethod
    def _finish(picks, output: BatchOutput | None, error) -> None:
        finished = time.perf_counter()
        for position, (job, index) in enumerate(picks):
            if error is None:
                job.out.put(index, output, position)
            else:
                job.error = job.error or error
            job.remaining -= 1
        for job in {id(job): job for job, _ in picks}.values():
            if (job.remaining == 0 or job.error is not None) and not job.done.is_set():
                job.finished = finished
                job.done.set()
