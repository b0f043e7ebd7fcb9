"""Load a local Hugging Face model directory, on the CPU, in its final dtype.

A text model becomes a TextEmbedder; a CLIP-style text+image model a
VisionTextEmbedder.

Runs in the gunicorn master before fork: nothing here may run a forward pass
or touch CUDA, and the weights are left exactly as the workers will use them
so their pages stay shared copy-on-write.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from transformers import AutoImageProcessor, AutoModel, AutoProcessor, AutoTokenizer
from transformers.utils import logging as hf_logging

from .dense import load_dense
from .m3 import load_head
from .layout import dual_encoder_dir, dual_encoder_layout, read_layout
from .text_model import TextEmbedder
from .vision_model import VisionTextEmbedder, is_dual_encoder

log = logging.getLogger(__name__)


def load_model(path: str | Path, name: str, dtype: torch.dtype) -> TextEmbedder:
    hf_logging.disable_progress_bar()
    model_dir = dual_encoder_dir(path)
    if model_dir is not None:
        return load_vision_text_model(path, model_dir, name, dtype)
    return load_text_model(path, name, dtype)


def load_vision_text_model(path: str | Path, model_dir: Path, name: str, dtype: torch.dtype) -> VisionTextEmbedder:
    tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
    image_processor = _image_processor(model_dir)
    model = AutoModel.from_pretrained(str(model_dir), dtype=dtype)
    if not is_dual_encoder(model):
        raise ValueError(f"{type(model).__name__} has a vision config but no get_text_features / "
                         "get_image_features: only dual encoders (CLIP, SigLIP, ...) can serve embeddings")
    model.eval().requires_grad_(False)
    embedder = VisionTextEmbedder(name, tokenizer, image_processor, model, dual_encoder_layout(path, model_dir), dtype)
    log.info("loaded model %s (text+image, %s) from %s: dim=%d max_tokens=%d dtype=%s", name,
             model.config.model_type, path, embedder.dimension, embedder.max_length, dtype)
    return embedder


def _image_processor(model_dir: Path):
    """The model's processor where it has one: its call-time defaults (SigLIP 2's patch
    budget, for one) are part of how the model expects images; else the image processor."""
    try:
        processor = AutoProcessor.from_pretrained(str(model_dir))
    except (OSError, ValueError, TypeError):
        processor = None
    if processor is not None and hasattr(processor, "image_processor"):
        return processor
    return AutoImageProcessor.from_pretrained(str(model_dir))


def load_text_model(path: str | Path, name: str, dtype: torch.dtype) -> TextEmbedder:
    layout = read_layout(path)
    tokenizer = AutoTokenizer.from_pretrained(str(layout.transformer_path))
    model = AutoModel.from_pretrained(str(layout.transformer_path), dtype=dtype)
    if getattr(model.config, "is_encoder_decoder", False):
        # T5-style embedders (sentence-t5, GTR) use the encoder alone.
        model = model.get_encoder()
    model.eval().requires_grad_(False)
    dense = [load_dense(spec, dtype) for spec in layout.dense]
    heads = {output: load_head(file, model.config.hidden_size, dtype) for output, file in layout.heads.items()}
    embedder = TextEmbedder(name, tokenizer, model, layout, dense, dtype, heads=heads)
    log.info("loaded model %s from %s: dim=%d max_tokens=%d pooling=%s outputs=%s dtype=%s",
             name, path, embedder.dimension, embedder.max_length, ",".join(layout.pooling_modes),
             ",".join(sorted(embedder.outputs)), dtype)
    return embedder
