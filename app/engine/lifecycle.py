"""A worker's start, after fork: torch threads, the device move, warm-up, int8 calibration, batchers, and the
compiled runtime's per-worker part. Idempotent per pid; the first request starts a process that no server
hook started (the Flask test client, `flask run`)."""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable

import torch

from .batcher import Batcher
from .device import dtype_name
from .heap import trim_heap
from .rows import forward_planned

log = logging.getLogger(__name__)


class Lifecycle:
    def __init__(self, config, models: dict, dtype, runtime, execution, accounting, calibrations, batchers: dict):
        self.config = config
        self.models = models
        self.device = "cpu"  # where the models run in workers; the engine sets it from its config
        self.dtype = dtype
        self.runtime = runtime
        self.execution = execution
        self.accounting = accounting
        self.calibrations = calibrations
        self.batchers = batchers
        self._started_pid: int | None = None
        self._lock = threading.Lock()
        self._ready = False

    @property
    def ready(self) -> bool:
        return self._ready and self._started_pid == os.getpid()

    def ensure_started(self) -> None:
        if self._started_pid != os.getpid():
            self.start()

    def start(
        self, batching: bool | None = None, offload: Callable | None = None, background: Callable | None = None
    ) -> None:
        """`batching=False` serves each request on its own thread (sync workers, where requests never overlap
        and a hand-off would only add latency). `offload` runs forward passes (gevent's pool of OS threads, in
        gevent workers). `background` runs a callable in a real OS thread: the compiled runtime's compilation
        for workers of several threads, after the worker is ready (without it, as under `flask run` or in
        tests, those models stay eager; workers of one thread inherit what the master compiled)."""
        with self._lock:
            if self._started_pid == os.getpid():
                return
            self._ready = False
            if offload is not None:
                self.execution.offload = offload
            torch.set_num_threads(self.config.cpu_threads)
            if self.device != "cpu":
                for model in self.models.values():
                    model.to(self.device)
            self.calibrations.reset()
            self.accounting.reset_rates()
            if self.config.warmup:
                self.warmup()
            batching = self.config.batching if batching is None else batching
            # Filled in place: execution and accounting hold this same map.
            self.batchers.clear()
            if batching:
                for name, model in self.models.items():
                    for kind in model.kinds:
                        self.batchers[(name, kind)] = self._batcher(model, kind)
            for name in self.models:  # a new worker's queues exist (empty) before its first request
                self.accounting.report_queue(name)
            self._started_pid = os.getpid()
            self._ready = True
            self.runtime.start(self.models, background)
            log.info(
                "worker %d ready: models=%s device=%s dtype=%s torch_threads=%d batching=%s",
                os.getpid(),
                ",".join(self.models),
                self.device,
                dtype_name(self.dtype),
                self.config.cpu_threads,
                "on" if batching else "off",
            )

    def _batcher(self, model, kind: str) -> Batcher:
        name = model.name
        return Batcher(
            model.lane(kind),
            self.config.limits,
            offload=self.execution.offload,
            on_batch=self.accounting.batch_hook(name, kind),
            on_queue=lambda depth: self.accounting.report_queue(name),
            rate=lambda: self.accounting.rate(name, kind),
            trace_context=self.accounting.observer.trace_context,
        )

    def warmup(self) -> None:
        """Every model, every kind of row it takes, and its int8 calibration: /ready turns 200 only after
        all of them ran."""
        limits = self.config.limits
        for model in self.models.values():
            for kind, prepared in model.warmup_inputs():
                # Timed: the first measure of this worker's rate, which its token budget starts from.
                measure = self.accounting.measure(model.name, kind)
                forward_planned(model.lane(kind), prepared, limits.max_batch_size, limits.max_batch_tokens, measure)
            # A corpus of real texts: the rate a worker starts with is the one it has on text like its requests'.
            self.calibrations.of(model, self.accounting.measure(model.name, model.kind_of("text")))
        trim_heap()  # what the longest rows needed is freed, and should not stay with this worker
