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
# dense families; SparseEncoder: sparse_encoder.py; CrossEncoder: the rerankers and classifiers).
SERVED_MODEL_TYPES = ("SentenceTransformer", "SparseEncoder", "CrossEncoder")


def unserved(path: Path) -> str | None:
    """Why `path` cannot be served exactly, or None."""
    model_type = json_object(path / "config_sentence_transformers.json").get("model_type")
    if model_type is not None and model_type not in SERVED_MODEL_TYPES:
        return (
            f"config_sentence_transformers.json says model_type {model_type!r}, which this service does not serve "
            f"(it serves {', '.join(SERVED_MODEL_TYPES)}); multi-vector (late-interaction) models are not served yet"
        )
    if (path / "artifact.metadata").is_file():
        return (
            "a Stanford ColBERT checkpoint (artifact.metadata): a multi-vector model, which this service does not serve"
        )
    for architecture in model_config(path).get("architectures") or []:
        if str(architecture).endswith("ForRetrieval"):
            return (
                f"architectures says {architecture}: a multi-vector (late-interaction) retrieval model, which this "
                "service does not serve"
            )
    return None
