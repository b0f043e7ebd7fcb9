"""What runs in the gunicorn master before fork, and in each worker after it.

gunicorn.conf.py's hooks are one line each and call in here.
"""

from __future__ import annotations

import gc
import logging
import os
import shutil
import socket
import tempfile
import threading

from .config import ConfigError, Settings

log = logging.getLogger(__name__)


def bind_problem(bind: str) -> str | None:
    """Why gunicorn could not listen on `bind` (a port another process holds), found before the models load:
    gunicorn itself binds only after, and then retries for seconds in a dozen lines."""
    if bind.startswith(("unix:", "fd://")):
        return None
    host, _, port = bind.rpartition(":")
    host = host.strip("[]") or "0.0.0.0"
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind((host, int(port)))
    except (OSError, ValueError) as exc:
        reason = getattr(exc, "strerror", None) or str(exc)
        return f"cannot listen on {bind} ({reason}): another process may hold the port; set BIND or PORT"
    return None


def load_engine(settings: Settings, observer=None):
    """Master (or single process): load every model's weights in their final dtype, and compile the ones the
    compiled runtime compiles before fork (on one thread: see engine/compiled.py); serve nothing."""
    from .engine import Engine, EngineConfig, ModelLoadError
    from .engine.errors import UnusableSetting

    log.info("settings: %s", settings.public_dict())
    try:
        return Engine.load(EngineConfig.from_settings(settings), observer)
    except UnusableSetting as exc:
        raise ConfigError(exc.setting, exc.message) from exc
    except ModelLoadError as exc:
        if settings.models:
            raise ConfigError("MODELS", f"entry {exc}") from exc
        raise ConfigError("MODEL_PATH", f"cannot load a model from {str(exc.spec.path)!r}: {exc.__cause__}") from exc


def gpu_visible(device: str) -> bool:
    """Whether workers will run on a GPU: DEVICE=cuda, or auto with one visible. Asks NVML, not CUDA,
    so the master creates no CUDA context before fork."""
    if device != "auto":
        return device == "cuda"
    from .engine.device import cuda_present

    return cuda_present()


def prepare_metrics_dir(settings: Settings) -> tuple[str, bool]:
    """Point prometheus_client's multiprocess mode at an empty directory.

    Must run before anything imports prometheus_client. Returns the directory
    and whether it was created here (and so is ours to remove at exit).
    """
    created = not settings.metrics_dir
    path = tempfile.mkdtemp(prefix="embedding-metrics-") if created else settings.metrics_dir
    os.makedirs(path, exist_ok=True)
    for entry in os.listdir(path):
        if entry.endswith(".db"):  # a previous run's counters would otherwise be summed in
            os.remove(os.path.join(path, entry))
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = path
    return path, created


def remove_metrics_dir(path: str) -> None:
    shutil.rmtree(path, ignore_errors=True)


def freeze_master_heap() -> None:
    """Move everything allocated so far out of the collector's reach before fork,
    so a collection in a worker never writes to (and un-shares) the model's pages; and say what the master
    holds (the weights every worker shares)."""
    from .process_metrics import refresh_memory

    gc.collect()
    gc.freeze()
    refresh_memory("master", force=True)


def start_worker(worker) -> None:
    """Worker, after fork: torch threads, device move, warm-up; then /ready turns 200."""
    from .api.http.context import DRAINING_KEY, ENGINE_KEY

    app = worker.wsgi
    engine = app.extensions[ENGINE_KEY]
    worker_module = type(worker).__module__
    # /ready turns 503 as soon as gunicorn tells this worker to stop.
    app.extensions[DRAINING_KEY] = lambda: not worker.alive
    # A sync worker handles one request at a time: nothing to batch across.
    gevent = worker_module.endswith("ggevent")
    engine.start_worker(
        batching=False if worker_module.endswith(".sync") else None,
        offload=gevent_offload() if gevent else None,
        background=gevent_background if gevent else thread_background,
    )
    from .api.http.tracing import TRACING_KEY
    from .process_metrics import refresh_memory

    tracing = app.extensions.get(TRACING_KEY)
    if tracing is not None:
        tracing.start()  # its export thread belongs to this worker: started after fork, never in the master
    refresh_memory("worker", force=True)


def worker_exited(worker) -> None:
    """Master, as it reaps a worker: its metrics files are closed, and its exit counted by cause."""
    from .metrics import mark_worker_dead
    from .process_metrics import count_exit

    mark_worker_dead(worker.pid)
    cause = count_exit(os.environ.get("PROMETHEUS_MULTIPROC_DIR"), worker.pid, bool(getattr(worker, "aborted", False)))
    if cause not in ("recycled", "shutdown"):
        log.warning("worker %s exited: %s", worker.pid, cause)


def worker_leaving(worker) -> None:
    """Worker, on its way out (not when killed): why, for the master's count; and the spans it still holds
    are sent."""
    from .api.http.tracing import TRACING_KEY
    from .process_metrics import record_exit_cause

    tracing = worker.wsgi.extensions.get(TRACING_KEY) if getattr(worker, "wsgi", None) is not None else None
    if tracing is not None:
        tracing.shutdown()

    max_requests = getattr(worker, "max_requests", 0)
    if max_requests and getattr(worker, "nr", 0) >= max_requests:
        cause = "recycled"
    elif not worker.alive:
        cause = "shutdown"
    else:
        return  # leaving with an exception: the master counts it as died
    record_exit_cause(os.environ.get("PROMETHEUS_MULTIPROC_DIR"), cause)


def thread_background(fn) -> None:
    threading.Thread(target=fn, name="compile", daemon=True).start()


def gevent_background(fn) -> None:
    """A long job (compilation) in one of gevent's real OS threads: a greenlet would stop the event loop.
    Inductor runs the C++ compiler through `subprocess`, whose gevent version waits for children on the
    main thread's loop only; the job gets the standard library's while it runs (nothing else in a worker
    starts processes)."""
    from gevent import get_hub

    get_hub().threadpool.spawn(_with_stdlib_subprocess, fn)


def _with_stdlib_subprocess(fn) -> None:
    import subprocess

    from gevent import monkey
    from gevent import os as gevent_os
    from gevent import subprocess as gevent_subprocess

    saved = []
    for module, names in ((subprocess, gevent_subprocess.__implements__), (os, gevent_os.__implements__)):
        for name in names:
            if monkey.is_object_patched(module.__name__, name):
                saved.append((module, name, getattr(module, name)))
                setattr(module, name, monkey.get_original(module.__name__, name))
    try:
        fn()
    finally:
        for module, name, value in saved:
            setattr(module, name, value)


def gevent_offload():
    """Run a callable in gevent's pool of real OS threads.

    A forward pass in a greenlet would hold the event loop for its whole
    duration; in the pool it releases the GIL in torch's kernels and the
    worker keeps accepting and answering (health checks included).
    """
    from gevent import get_hub

    pool = get_hub().threadpool

    def offload(fn, *args):
        # An exception is carried back and raised in the calling greenlet: one raised in the pool itself
        # would also be printed by gevent as a traceback, a dozen lines per rejected image.
        ok, value = pool.apply(_outcome, (fn, *args))
        if not ok:
            raise value
        return value

    return offload


def _outcome(fn, *args):
    try:
        return True, fn(*args)
    except Exception as exc:
        return False, exc
