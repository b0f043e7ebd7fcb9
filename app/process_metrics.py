"""Per-process memory and worker exits, as metrics: memory is the constraint of the CPU profile (many
workers sharing one copy of the weights), and a worker that dies is the first sign of running out of it.

- `embedding_worker_memory_bytes{kind, pid}` and `embedding_master_memory_bytes{kind}`: each process's RSS,
  PSS (its share of the pages it shares: what the workers really cost together), private (what only it holds:
  what copy-on-write has copied) and shared, from /proc/self/smaps_rollup (RSS alone from /proc/self/statm
  where that is missing). Refreshed in a worker at most every `REFRESH_SECONDS` as requests finish (a read
  costs ~0.1 ms) and at start, in the master when it is ready; a dead worker's values go with it.
- `embedding_worker_exits_total{cause}`: counted by the master as it reaps each worker: `recycled`
  (MAX_REQUESTS), `shutdown` (a stop or reload), `timeout` (gunicorn killed it for missing heartbeats),
  `died` (anything else: a crash, the kernel's OOM killer). A worker says why it leaves in a file the master
  reads, since gunicorn gives the master no exit status in its hook.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from prometheus_client import Counter, Gauge

REFRESH_SECONDS = 5.0

# Two gauges, since a worker inherits the master's metric values when it forks and writes them back as zeros
# under its own pid: the workers' (one series per live worker pid; the master never sets it) and the master's
# (the largest value any process wrote, which is the master's own).
WORKER_MEMORY = Gauge(
    "embedding_worker_memory_bytes",
    "Memory of each gunicorn worker, by pid: rss, pss, private, shared.",
    ["kind"],
    multiprocess_mode="liveall",
)
MASTER_MEMORY = Gauge(
    "embedding_master_memory_bytes",
    "Memory of the gunicorn master (the loaded weights the workers share): rss, pss, private, shared.",
    ["kind"],
    multiprocess_mode="max",
)
WORKER_EXITS = Counter("embedding_worker_exits_total", "Workers that exited, by cause.", ["cause"])

_SMAPS_FIELDS = {
    "Rss": "rss",
    "Pss": "pss",
    "Private_Clean": "private",
    "Private_Dirty": "private",
    "Shared_Clean": "shared",
    "Shared_Dirty": "shared",
}
_refreshed = [0.0]


def read_memory() -> dict[str, int]:
    """This process's memory in bytes by kind (only rss where the platform has no smaps_rollup)."""
    try:
        values: dict[str, int] = {}
        for line in Path("/proc/self/smaps_rollup").read_text().splitlines():
            name, _, rest = line.partition(":")
            kind = _SMAPS_FIELDS.get(name)
            if kind is not None:
                values[kind] = values.get(kind, 0) + int(rest.split()[0]) * 1024
        if values:
            return values
    except (OSError, ValueError, IndexError):
        pass
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
        return {"rss": pages * os.sysconf("SC_PAGE_SIZE")}
    except (OSError, ValueError, IndexError):
        return {}


def refresh_memory(process: str = "worker", *, force: bool = False) -> None:
    now = time.monotonic()
    if not force and now - _refreshed[0] < REFRESH_SECONDS:
        return
    _refreshed[0] = now
    gauge = MASTER_MEMORY if process == "master" else WORKER_MEMORY
    for kind, value in read_memory().items():
        gauge.labels(kind).set(value)


def _marker(directory: str, pid: int) -> Path:
    return Path(directory) / f"exit-{pid}.cause"


def record_exit_cause(directory: str | None, cause: str) -> None:
    """In a worker leaving on its own (recycled, shutdown): tell the master why."""
    if directory:
        try:
            _marker(directory, os.getpid()).write_text(cause)
        except OSError:
            pass


def count_exit(directory: str | None, pid: int, aborted: bool) -> str:
    """In the master, for each worker it reaps: the cause the worker left, else what the master saw."""
    cause = "timeout" if aborted else "died"
    if directory:
        marker = _marker(directory, pid)
        try:
            cause = marker.read_text().strip() or cause
            marker.unlink()
        except OSError:
            pass
    WORKER_EXITS.labels(cause).inc()
    return cause
