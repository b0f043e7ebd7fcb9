"""Model loading, tokenisation, forward pass and pooling. Knows nothing of HTTP.

The environment defaults below must be in place before torch, tokenizers or
transformers are first imported, which is why they live at the package's top.
"""

import os

# Ask NVML, not the CUDA driver, whether a GPU exists: the master must not create
# a CUDA context before fork.
os.environ.setdefault("PYTORCH_NVML_BASED_CUDA_CHECK", "1")
# Fast tokenizers disable their thread pool after fork with a warning; say it up front.
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# Weights come from local directories only; never reach for a hub at run time.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

# The engine's classes import torch; the API layer imports this package's torch-free modules (its errors and
# capability names) without them, so the rest is imported on first use.
_EXPORTS = {
    "Embeddings": ".results",
    "Engine": ".engine",
    "EngineObserver": ".results",
    "ModelLoadError": ".errors",
    "Scores": ".results",
    "Timings": ".results",
    "EngineConfig": ".engine_config",
    "ModelSpec": ".engine_config",
    "Lane": ".families",
    "ServedModel": ".families",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from importlib import import_module

    return getattr(import_module(_EXPORTS[name], __name__), name)
