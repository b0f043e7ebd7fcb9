"""Device and dtype choices, made in the master without initialising CUDA.

`torch.cuda.is_available()` initialises the CUDA driver unless
PYTORCH_NVML_BASED_CUDA_CHECK is set, and a CUDA context created before fork
is unusable in the children (pytorch issue 68861). The engine package sets
that variable before torch is imported, so asking here is safe.
"""

from __future__ import annotations

import torch

from .errors import UnusableSetting

_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


def cuda_present() -> bool:
    return torch.cuda.is_available()


def resolve_device(requested: str) -> str:
    if requested == "cuda":
        if not cuda_present():
            raise UnusableSetting("DEVICE", "cuda was requested but no CUDA GPU is visible to torch")
        return "cuda"
    if requested == "cpu":
        return "cpu"
    return "cuda" if cuda_present() else "cpu"


def cpu_has_native_bf16() -> bool:
    """AVX512-BF16 or AMX: bfloat16 matmuls run natively (2-3x float32 on such CPUs)."""
    for name in ("_is_avx512_bf16_supported", "_is_amx_tile_supported"):
        check = getattr(torch.cpu, name, None)
        if check is not None:
            try:
                if check():
                    return True
            except RuntimeError:
                pass
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as handle:
            flags = next((line for line in handle if line.startswith("flags")), "").split()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def resolve_dtype(requested: str, device: str) -> torch.dtype:
    """auto: float16 on CUDA; bfloat16 on CPUs with native bf16; float32 otherwise.

    Chosen in the master, so the converted weights are the ones the workers share.
    """
    if requested != "auto":
        return _DTYPES[requested]
    if device == "cuda":
        return torch.float16
    return torch.bfloat16 if cpu_has_native_bf16() else torch.float32


def dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")
