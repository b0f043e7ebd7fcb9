"""What a model directory declares it is, against what this service implements.

A directory is served only as what it is: one that declares a kind of model no family implements (a
sentence-transformers `model_type`, a multi-vector checkpoint) stops start-up with a message naming it,
where loading it as the catch-all dense family would answer mean-pooled vectors the model was never trained
to give. Modules a family does not implement are refused where its layout is read (layout.py).
"""

from __future__ import annotations

from pathlib import Path

from .layout import json_object, model_config

# config_sentence_transformers.json's model types that a family here implements (SentenceTransformer: the
# dense families; SparseEncoder: sparse_encoder.py; CrossEncoder: the rerankers and classifiers;
# MultiVectorEncoder and PyLate's ColBERT: multi_vector.py and visual_retriever.py).
SERVED_MODEL_TYPES = ("SentenceTransformer", "SparseEncoder", "CrossEncoder", "MultiVectorEncoder", "ColBERT")


def unserved(path: Path) -> str | None:
    """Why `path` cannot be served exactly, or None."""
    model_type = json_object(path / "config_sentence_transformers.json").get("model_type")
    if model_type is not None and model_type not in SERVED_MODEL_TYPES:
        return (
            f"config_sentence_transformers.json says model_type {model_type!r}, which this service does not serve "
            f"(it serves {', '.join(SERVED_MODEL_TYPES)})"
        )
    architectures = model_config(path).get("architectures") or []
    if (path / "artifact.metadata").is_file() and "HF_ColBERT" not in architectures:
        return (
            "artifact.metadata says a Stanford ColBERT checkpoint, but config.json's architectures do not say "
            "HF_ColBERT, where its projection is read from"
        )
    return None
