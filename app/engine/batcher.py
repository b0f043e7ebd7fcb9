"""Dynamic batching across the concurrent requests of one worker.

Request threads (or greenlets) put their prepared rows (token ids,
preprocessed images: any kind, see rows.py) in a bounded queue and wait; one
inference loop takes rows from the queue, a row from each request in turn, into
batches of at most `max_batch_size` rows and `max_batch_tokens` padded tokens,
runs them, and hands each request exactly its own vectors back. A large request
is split over several batches, and the rows of small requests that arrived
meanwhile ride in the next one, so nobody waits for a whole 2048-item request
to finish. There is no fixed collection window by default: whatever is
queued when the model becomes free forms the next batch (continuous batching,
as text-embeddings-inference does), except just after a pass, when a partial
batch waits briefly for the requests that pass answered (`return_wait`);
`max_wait_ms` > 0 holds every partial batch open for late arrivals instead.

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

# How long one pass may take at the measured rate: a request that arrives while a pass runs waits for the rest
# of it, so a giant request's rows go in passes of about this long (on a CPU, 32 rows of 250 tokens of the
# default model are 2.7 s; on a GPU the rate is high enough that MAX_BATCH_TOKENS decides).
PASS_SECONDS = 0.5


@dataclass(frozen=True)
class BatchLimits:
    max_batch_size: int = 32
    max_batch_tokens: int = 16384
    max_wait: float = 0.0  # seconds
    max_queue: int = 256  # requests waiting
    request_timeout: float = 30.0  # seconds a request may wait before its first row runs
    # Just after a pass, the requests it answered are usually on their way back (keep-alive clients sending
    # their next text, an indexer's N workers): the first to return would otherwise run alone and the rest in
    # the pass after it. So a partial batch waits for as many requests as the last pass carried, at most this
    # share of that pass's duration after it ended (RETURN_WAIT): a latency cost bounded by the share, and
    # none for a request arriving later than that or for a lone client (its last pass carried one request).
    return_wait: float = 0.25


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
    trace: object = None  # the request's span context: each pass that runs its rows links to it


class Batcher:
    """Batches one kind of row for one model; `lane` runs them."""

    def __init__(
        self,
        lane,
        limits: BatchLimits,
        offload: Callable,
        on_batch: Callable,
        on_queue: Callable,
        rate=None,
        trace_context: Callable = lambda: None,
    ):
        """`rate`: the tokens a second this lane's passes run at in this worker (None until measured);
        `trace_context`: the calling request's span context (None when untraced), taken as it is queued."""
        self.lane = lane
        self.rate = rate or (lambda: None)
        self.trace_context = trace_context
        self.limits = limits
        self.offload = offload
        self.on_batch = on_batch
        self.on_queue = on_queue
        self._jobs: collections.deque[_Job] = collections.deque()
        self._pending_rows = 0
        self._last_pass = (0, 0.0)  # (requests it carried, when a partial batch stops waiting for them)
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
            trace=self.trace_context(),
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
            if limits.max_wait > 0:
                self._hold(time.perf_counter() + limits.max_wait, limits.max_batch_size)
            else:
                carried, until = self._last_pass
                self._hold(until, carried)
            expired = self._expire()
            picks = self._pick()
            self._pending_rows -= len(picks)
            depth = len(self._jobs)
        for job in expired:
            job.done.set()
        self.on_queue(depth)
        return picks

    def _hold(self, deadline: float, enough: int) -> None:
        """Wait until `deadline`, `enough` requests queued or a full batch of rows (caller holds the lock)."""
        limits = self.limits
        while len(self._jobs) < enough and self._pending_rows < limits.max_batch_size:
            left = deadline - time.perf_counter()
            if left <= 0:
                return
            self._cv.wait(left)

    def _pick(self) -> list[tuple[_Job, int]]:
        """The next batch's rows, one from each waiting request in turn (caller holds the lock).

        Taking a giant request's rows first would make a one-text request wait for all of them: in turns, it
        rides in the very next batch, and a request's share of the model is one row per turn however large it
        is. A batch is what runs in about PASS_SECONDS at the measured rate (and within MAX_BATCH_TOKENS), so
        "the next batch" is soon. The turns start with the requests that have had the fewest rows scheduled
        (the newest arrivals, then the oldest), so a row too wide to sit beside the others is first in a later
        batch, never starved. Each request's rows still go longest first, and `_run` re-plans the batch."""
        limits = self.limits
        for job in [job for job in self._jobs if job.error is not None]:  # failed in an earlier batch
            self._jobs.remove(job)
            self._pending_rows -= len(job.order) - job.cursor
        turns = sorted(self._jobs, key=lambda job: job.cursor)
        rate = self.rate()
        max_tokens = limits.max_batch_tokens if rate is None else min(limits.max_batch_tokens, rate * PASS_SECONDS)
        picks: list[tuple[_Job, int]] = []
        longest = 0
        while len(picks) < limits.max_batch_size:
            took = False
            for job in turns:
                if job.cursor == len(job.order) or len(picks) == limits.max_batch_size:
                    continue
                index = job.order[job.cursor]
                widest = max(longest, len(job.rows[index]))
                if picks and widest * (len(picks) + 1) > max_tokens:
                    continue  # too wide beside what is picked; a shorter row of another request may fit
                picks.append((job, index))
                longest = widest
                job.cursor += 1
                took = True
            if not took:
                break
        for job in [job for job in self._jobs if job.cursor == len(job.order)]:  # every row scheduled
            self._jobs.remove(job)
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
        """Run the picked rows as the cheapest sequence of forward passes (planning.py), the shortest rows'
        first: a one-text request's short row is done before the long rows of the giant beside it."""
        picks.sort(key=lambda pick: len(pick[0].rows[pick[1]]), reverse=True)
        lengths = [len(job.rows[index]) for job, index in picks]
        plan = plan_batches(
            lengths, self.limits.max_batch_size, self.limits.max_batch_tokens, self.lane.overhead_tokens
        )
        began = time.perf_counter()
        for start, end in reversed(plan):
            self._run_batch(picks[start:end])
        ended = time.perf_counter()
        carried = len({id(job) for job, _ in picks})
        with self._cv:
            self._last_pass = (carried, ended + self.limits.return_wait * (ended - began))

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
        jobs = {id(job): job for job, _ in picks}.values()
        links = tuple(job.trace for job in jobs if job.trace is not None)
        self.on_batch(len(rows), sum(len(r) for r in rows), time.perf_counter() - began, links)
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
