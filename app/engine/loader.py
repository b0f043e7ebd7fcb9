"""Load a local Hugging Face model directory into a TextEmbedder, on the CPU, in its final dtype.

Runs in the gunicorn master before fork: nothing here may run a forward pass
or touch CUDA, and the weights are left exactly as the workers will use them
so their pages stay shared copy-on-write.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from transformers import AutoModel, AutoTokenizer
from transformers.utils import logging as hf_logging

from .dense import load_dense
from .layout import read_layout
from .text_model import TextEmbedder

log = logging.getLogger(__name__)


def load_text_model(path: str | Path, name: str, dtype: torch.dtype) -> TextEmbedder:
    hf_logging.disable_progress_bar()
    layout = read_layout(path)
    tokenizer = AutoTokenizer.from_pretrained(str(layout.transformer_path))
    model = AutoModel.from_pretrained(str(layout.transformer_path), dtype=dtype)
    if getattr(model.config, "is_encoder_decoder", False):
        # T5-style embedders (sentence-t5, GTR) use the encoder alone.
        model = model.get_encoder()
    model.eval().requires_grad_(False)
    dense = [load_dense(spec, dtype) for spec in layout.dense]
    embedder = TextEmbedder(name, tokenizer, model, layout, dense, dtype)
    log.info("loaded model %s from %s: dim=%d max_tokens=%d pooling=%s dtype=%s",
             name, path, embedder.dimension, embedder.max_length, ",".join(layout.pooling_modes), dtype)
    return embedder
