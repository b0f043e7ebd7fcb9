"""RUNTIME=compile (and `auto` for bfloat16 on CPUs): a family's transformer through torch.compile
(inductor, frozen weights).

Eager PyTorch spends most of a small encoder's time re-packing each weight for
every matmul and dispatching small unfused kernels; inductor with freezing
packs the weights once and fuses the rest (figures in docs/performance.md).

Where it compiles. Compiled graphs are specialised to the number of torch
threads (dynamo guards on it, and inductor writes it into its kernels), so:

- Workers with one torch thread each (the CPU profile's default sizing): the
  process that loads the models (the gunicorn master, with preload) compiles
  them before fork, itself on one thread. One intra-op thread creates no
  thread pool, which is what makes running a model before fork unsafe
  (ARCHITECTURE.md, pytorch issue 49555: a pool inherited by a fork hangs it);
  every worker, including the ones gunicorn re-forks, then inherits the graphs
  and the packed weights copy-on-write: compiled once per instance, not per worker.
- Workers with several threads, or without preload (PRELOAD=false: a worker's
  boot, where it would otherwise compile, is bounded by gunicorn's TIMEOUT):
  each compiles for itself after /ready, in a background OS thread, serving
  eagerly meanwhile, and switches between passes.

Either way the compiled forward is checked against the eager one on the
warm-up rows before it is used, and a shape the compiled graphs were not
built for runs eagerly instead of compiling while a request waits (see
`GuardedModule`).
"""

from __future__ import annotations

import copy
import logging
import os
import shutil
import time
import types
from collections.abc import Callable

import numpy as np
import torch

log = logging.getLogger("embedding.engine")

# Compiled passes pad their width to a multiple of this: fewer distinct shapes for oneDNN's per-shape
# kernels (of 1, 8, 16 and 32 tokens, 8 measured best: 1.2x single texts and 1.1x batches against 1).
PAD_MULTIPLE = 8
INDUCTOR_OPTIONS = {
    "freezing": True,  # weights become constants: packed once for oneDNN, not on every matmul
    "cpp_wrapper": True,  # the graph's calls in C++, not Python (measured: faster one at a time)
    "compile_threads": 1,  # no pool of compiler processes forked from a gunicorn worker
}
# The compiled forward must agree with the eager one on the warm-up rows, or the model stays eager.
MIN_COSINE = 0.999


def compiler_missing() -> str | None:
    """Why inductor cannot build CPU kernels here, or None."""
    candidates = [os.environ.get("CXX", ""), "g++", "c++", "clang++"]
    if not any(shutil.which(name.split()[0]) for name in candidates if name):
        return "no C++ compiler on PATH (inductor needs one: g++ or clang++)"
    return None


def choose(runtime: str, device: str, dtype: torch.dtype) -> tuple[str, str]:
    """(eager|compile, why) for this process's device and dtype."""
    if runtime == "eager":
        return "eager", "RUNTIME=eager"
    if device != "cpu":
        return "eager", f"compiled runtime is for CPUs; device is {device}"
    if runtime == "auto" and dtype != torch.bfloat16:
        # Measured: inductor gains nothing over eager in float32 on these models (docs/performance.md).
        return "eager", f"RUNTIME=auto compiles bfloat16 models only; dtype is {str(dtype).removeprefix('torch.')}"
    missing = compiler_missing()
    if missing:
        return "eager", missing
    return "compile", f"RUNTIME={runtime}"


class GuardedModule:
    """A compiled module that never compiles again while serving: a call its graphs do not cover
    (a guard the warm-up shapes did not exercise) runs the eager module instead. Attributes (config,
    parameters, embeddings) are the eager module's."""

    def __init__(self, compiled: Callable, eager: torch.nn.Module, name: str):
        self._compiled = compiled
        self._eager = eager
        self._name = name
        self._warned = False

    def __call__(self, *args, **kwargs):
        try:
            with torch.compiler.set_stance("fail_on_recompile"):
                return self._compiled(*args, **kwargs)
        except RuntimeError as exc:  # what the stance raises: a RuntimeError saying so
            if "recompile" not in str(exc).lower():
                raise
            if not self._warned:
                self._warned = True
                log.warning("model %s: an input shape outside the compiled graphs runs eagerly", self._name)
            return self._eager(*args, **kwargs)

    def __getattr__(self, attribute):
        return getattr(self._eager, attribute)


class CompiledRuntime:
    """Which runtime each model runs on, and the compilation that gets it there."""

    def __init__(self, runtime: str, device: str, dtype: torch.dtype, threads: int = 1, shared_load: bool = True):
        self.requested = runtime
        self.threads = threads
        self.shared_load = shared_load
        self.choice, self.reason = choose(runtime, device, dtype)
        self.status: dict[str, str] = {}

    def describe(self, name: str) -> dict:
        return {"runtime": self.status.get(name, "eager"), "runtime_requested": self.requested}

    def before_fork(self, models: dict) -> None:
        """In the process that loaded the models, on one torch thread: compile now what workers of one
        thread will run (they inherit it); mark the rest eager, or `compiling` for workers to compile."""
        if self.choice != "compile":
            self.status = dict.fromkeys(models, "eager")
            if self.requested != "eager":
                log.info("runtime eager: %s", self.reason)
            return
        now = []
        for name, model in models.items():
            if not model.compile_targets:
                self.status[name] = "eager"
                log.info("model %s: family %s has no compiled runtime; it runs eagerly", name, model.family)
                continue
            self.status[name] = "compiling"
            now.append(model)
        if self.threads == 1 and torch.get_num_threads() == 1 and self.shared_load:
            self._compile_all(now)
        elif now and not self.shared_load:
            log.info("runtime compile: no preload (PRELOAD=false), so each worker compiles for itself after /ready")
        elif now:
            log.info("runtime compile: %d torch threads per worker, so each worker compiles for itself", self.threads)

    def start(self, models: dict, spawn: Callable[[Callable], object] | None) -> None:
        """In a worker once it is ready: compile what is still `compiling` with `spawn` (a real OS thread);
        without one, it stays eager."""
        pending = [model for name, model in models.items() if self.status.get(name) == "compiling"]
        if pending and spawn is None:
            self.status.update(dict.fromkeys((model.name for model in pending), "eager"))
        elif pending:
            spawn(lambda: self._compile_all(pending))

    def _compile_all(self, models: list) -> None:
        import torch._inductor.config as inductor

        for option, value in INDUCTOR_OPTIONS.items():
            setattr(inductor, option, value)
        for model in models:
            started = time.perf_counter()
            # Tens of seconds of one core, before the workers start when the master does it: say so first.
            log.info("model %s: compiling for %d torch thread(s)", model.name, self.threads)
            try:
                swap = self._compile(model)
            except Exception as exc:  # noqa: BLE001 - any failure leaves the model eager, said once
                self.status[model.name] = "eager (compilation failed)"
                log.warning("model %s: compilation failed, it runs eagerly: %r", model.name, exc)
                continue
            if swap is None:
                self.status[model.name] = "eager (compiled output differed)"
                continue
            with model.lock:  # between passes, never during one
                swap()
            self.status[model.name] = "compiled"
            log.info("model %s: compiled in %.1f s; it runs compiled", model.name, time.perf_counter() - started)

    @staticmethod
    def _compile(model) -> Callable[[], None] | None:
        """Compile `model`'s targets on a shallow copy, run its warm-up rows through both, and return
        how to switch the model over (None when the outputs disagree)."""
        trial = copy.copy(model)
        guarded = {}
        for attribute in model.compile_targets:
            eager = getattr(model, attribute)
            compiled = torch.compile(_own_code(eager, f"{model.name}.{attribute}"), dynamic=True)
            guarded[attribute] = GuardedModule(compiled, eager, model.name)
            setattr(trial, attribute, _BatchUnbackedOnce(compiled))
        trial.pad_multiple = PAD_MULTIPLE
        for kind, prepared in model.warmup_inputs():
            rows = prepared.rows
            # Several rows first (that call compiles), then one: the same graph must take both.
            for batch in (rows, [rows[0]]):
                outputs = prepared.outputs
                with torch.inference_mode():
                    expected = model.forward(kind, batch, outputs)
                    got = trial.forward(kind, batch, outputs)
                if not _agree(expected, got, model.name):
                    return None

        def swap() -> None:
            for attribute, module in guarded.items():
                setattr(model, attribute, module)
            model.pad_multiple = PAD_MULTIPLE

        return swap


def _own_code(module: torch.nn.Module, label: str) -> Callable:
    """`module`'s call behind a function with a code object of its own. Dynamo keeps compiled graphs on
    the code object of the frame it starts from; transformers' models share theirs (the output-capturing
    decorator around every `forward`), and the graphs of a second model compiled in the same process
    then push out the first's."""

    def call(*args, **kwargs):
        return module(*args, **kwargs)

    code = call.__code__.replace(co_name=f"compiled_{abs(hash(label))}")
    return types.FunctionType(code, call.__globals__, code.co_name, None, call.__closure__)


class _BatchUnbackedOnce:
    """Marks the batch dimension of the first call's tensors unbacked: dynamic shapes would otherwise
    build one graph for a batch of one and another for the rest (measured: twice the compile time for
    no speed)."""

    def __init__(self, compiled: Callable):
        self.compiled = compiled
        self.marked = False

    def __call__(self, *args, **kwargs):
        if not self.marked:
            self.marked = True
            for value in (*args, *kwargs.values()):
                if isinstance(value, torch.Tensor) and value.dim() >= 1:
                    torch._dynamo.decorators.mark_unbacked(value, 0)
        return self.compiled(*args, **kwargs)


def _as_dense(*sides: list) -> list[np.ndarray]:
    """Sparse rows (ids, weights) as dense matrices of one width, so that they compare as vectors do."""
    width = 1 + max((int(ids[-1]) for rows in sides for ids, _ in rows if len(ids)), default=0)
    matrices = []
    for rows in sides:
        matrix = np.zeros((len(rows), width))
        for index, (ids, weights) in enumerate(rows):
            matrix[index, ids] = weights
        matrices.append(matrix)
    return matrices


def _agree(expected, got, name: str) -> bool:
    for field in ("dense", "scores", "sparse", "multivector"):
        a, b = getattr(expected, field, None), getattr(got, field, None)
        if a is None:
            continue
        if field == "sparse":
            a, b = _as_dense(a, b)
        if field == "multivector":  # every row's token vectors, compared as vectors are
            if [m.shape for m in a] != [m.shape for m in b]:
                log.warning("model %s: compiled multi-vectors differ in shape from eager; it stays eager", name)
                return False
            a, b = np.concatenate(a), np.concatenate(b)
        a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
        if field == "scores" or a.ndim == 1:
            close = bool(np.allclose(a, b, atol=0.05, rtol=0.05))
            worst = float(np.abs(a - b).max())
        else:
            cosine = (a * b).sum(1) / np.maximum(np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1), 1e-12)
            worst = float(cosine.min())
            close = worst >= MIN_COSINE
        if not close:
            log.warning("model %s: compiled %s differ from eager (%.5f); it stays eager", name, field, worst)
            return False
    return True
