"""Tiny models built from a transformers config with random weights, saved the way
sentence-transformers saves them, so tests load them through the real loading code."""

from __future__ import annotations

from pathlib import Path

import torch
from transformers import AutoTokenizer, BertConfig, BertModel

from app.config import default_model_path


def tiny_bert(directory: Path, max_position_embeddings: int = 128, seed: int = 0) -> Path:
    """A 2-layer, 32-wide BERT with the default model's tokenizer, as a plain HF directory."""
    torch.manual_seed(seed)
    tokenizer = AutoTokenizer.from_pretrained(str(default_model_path()))
    config = BertConfig(vocab_size=tokenizer.vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                        intermediate_size=64, max_position_embeddings=max_position_embeddings)
    BertModel(config).eval().save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


def tiny_sentence_transformer(directory: Path, *, pooling="mean", dense: int | None = None, normalize=True,
                              prompts: dict[str, str] | None = None, default_prompt_name: str | None = None,
                              include_prompt: bool = True, max_seq_length: int = 64) -> Path:
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import Dense, Normalize, Pooling, Transformer

    base = tiny_bert(directory.parent / f"{directory.name}-base")
    modules = [Transformer(str(base), max_seq_length=max_seq_length),
               Pooling(32, pooling_mode=pooling, include_prompt=include_prompt)]
    if dense:
        width = 32 * (1 if isinstance(pooling, str) else len(pooling))
        modules.append(Dense(width, dense, activation_function=torch.nn.Tanh()))
    if normalize:
        modules.append(Normalize())
    model = SentenceTransformer(modules=modules, prompts=prompts or {}, default_prompt_name=default_prompt_name,
                                device="cpu")
    model.save(str(directory))
    return directory
