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

from .engine import Embeddings, Engine, EngineObserver, ModelLoadError, Scores, Timings  # noqa: E402
from .engine_config import EngineConfig, ModelSpec  # noqa: E402
from .families import Lane, ModelFamily  # noqa: E402

__all__ = [
    "Embeddings",
    "Engine",
    "EngineConfig",
    "EngineObserver",
    "Lane",
    "ModelFamily",
    "ModelLoadError",
    "ModelSpec",
    "Scores",
    "Timings",
]
