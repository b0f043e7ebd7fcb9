"""FlagEmbedding's BGEM3FlagModel, the reference BGE-M3 is checked against, imported without the package's
`__init__`.

`import FlagEmbedding` runs `FlagEmbedding/__init__.py` and `FlagEmbedding/inference/__init__.py`, which
import every reranker FlagEmbedding ships; FlagEmbedding 1.4.2's MiniCPM and Gemma rerankers import
`transformers.modeling_attn_mask_utils`, which transformers 5 removed, so the whole package fails to import
under the transformers a fresh install resolves. The BGE-M3 embedder itself
(`inference/embedder/encoder_only/m3.py` and what it imports) does not touch those modules: registering the
two package `__init__`s as empty packages lets it import, and run, unchanged under the same transformers
the service is served with. Lift this when a FlagEmbedding release imports under transformers 5.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys

# The packages whose __init__ pulls in the rerankers; everything below them imports as FlagEmbedding wrote it.
_SKIPPED_INITS = ("FlagEmbedding", "FlagEmbedding.inference")


def _empty_package(name: str) -> None:
    if name in sys.modules:
        return
    spec = importlib.util.find_spec(name)
    if spec is None:
        raise ModuleNotFoundError(f"{name} is not installed (the test extra installs FlagEmbedding)")
    sys.modules[name] = importlib.util.module_from_spec(spec)  # its __path__ is set; its __init__ is not run


def bgem3_flag_model():
    """FlagEmbedding's `BGEM3FlagModel` class (`M3Embedder`), FlagEmbedding's own code."""
    for name in _SKIPPED_INITS:
        _empty_package(name)
    return importlib.import_module("FlagEmbedding.inference.embedder.encoder_only.m3").M3Embedder
