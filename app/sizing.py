"""How many CPUs this process may really use: its affinity mask and its cgroup's CPU quota.

`os.cpu_count()` is the host's core count. Under Docker's `--cpuset-cpus`,
`taskset`, or a Kubernetes CPU limit (a cgroup quota), sizing workers and
torch threads from it oversubscribes the CPUs the process actually gets.
Nothing here imports torch: gunicorn.conf.py sizes its workers with it.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

CGROUP_ROOT = Path("/sys/fs/cgroup")


@dataclass(frozen=True)
class CpuBudget:
    cpus: int  # whole CPUs to size workers x threads by, at least 1
    found: str  # what was read, for the start-up log


def cgroup_quota(root: Path = CGROUP_ROOT) -> float | None:
    """The cgroup's CPU quota in CPUs (cgroup v2 `cpu.max`, or v1 `cpu.cfs_quota_us` / `cpu.cfs_period_us`),
    or None when there is none."""
    v2 = root / "cpu.max"
    if v2.is_file():
        quota, _, period = v2.read_text().strip().partition(" ")
        if quota == "max":
            return None
        return _ratio(quota, period or "100000")
    for directory in (root / "cpu", root / "cpu,cpuacct", root):
        quota_file = directory / "cpu.cfs_quota_us"
        if quota_file.is_file():
            quota = quota_file.read_text().strip()
            if quota.startswith("-"):
                return None
            return _ratio(quota, (directory / "cpu.cfs_period_us").read_text().strip())
    return None


def _ratio(quota: str, period: str) -> float | None:
    try:
        value = int(quota) / int(period)
    except (ValueError, ZeroDivisionError):
        return None
    return value if value > 0 else None


def affinity_cpus() -> int | None:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        return None


def cpu_budget(cgroup_root: Path = CGROUP_ROOT, affinity: int | None = None) -> CpuBudget:
    host = os.cpu_count() or 1
    allowed = affinity if affinity is not None else (affinity_cpus() or host)
    cpus = allowed
    found = [f"{allowed} of {host} host CPUs in the affinity mask"]
    quota = cgroup_quota(cgroup_root)
    if quota is not None:
        cpus = min(cpus, max(1, math.floor(quota)))
        found.append(f"a cgroup quota of {quota:g} CPUs")
    return CpuBudget(cpus=max(1, cpus), found=", ".join(found))
