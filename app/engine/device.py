"""Device and dtype choices, made in the master without initialising CUDA.

`torch.cuda.is_available()` initialises the CUDA driver unless
PYTORCH_NVML_BASED_CUDA_CHECK is set, and a CUDA context created before fork
is unusable in the children (pytorch issue 68861). The engine package sets
that variable before torch is imported, so asking here is safe.
"""

from __future__ import annotations

import torch

from ..config import ConfigError

_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


def cuda_present() -> bool:
    return torch.cuda.is_available()


def resolve_device(requested: str) -> str:
    if requested == "cuda":
        if not cuda_present():
            raise ConfigError("DEVICE", "cuda was requested but no CUDA GPU is visible to torch")
        return "cuda"
    if requested == "cpu":
        return "cpu"
    return "cuda" if cuda_present() else "cpu"


def resolve_dtype(requested: str, device: str) -> torch.dtype:
    if requested != "auto":
        return _DTYPES[requested]
    return torch.float16 if device == "cuda" else torch.float32


def dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")
