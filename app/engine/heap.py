"""Hand freed heap memory back to the kernel.

glibc keeps freed memory in its arenas for reuse, and raises its mmap
threshold after large frees, so a worker's warm-up activations (tens of MiB
for a large model at full length) would stay in the worker's private memory
for its whole life: with several workers, that is the difference between
sharing the weights and paying for them again.
"""

from __future__ import annotations

import ctypes
import ctypes.util


def trim_heap() -> None:
    """malloc_trim(0) where the C library has it (glibc); nothing elsewhere."""
    name = ctypes.util.find_library("c")
    if name is None:
        return
    try:
        ctypes.CDLL(name).malloc_trim(0)
    except (OSError, AttributeError):
        pass
