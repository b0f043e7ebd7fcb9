"""Decoder-LLM embedders: Qwen3-Embedding, gte-Qwen2, e5-mistral, SFR-Embedding and the like.

A causal language model whose last token's hidden state is the embedding,
usually shipped with sentence-transformers files (`1_Pooling` with
`pooling_mode_lasttoken`, instruction prompts in
`config_sentence_transformers.json`). Without those files the last token is
pooled too. The tokenizer decides whether an end-of-text token closes each
input (Qwen3-Embedding's does, e5-mistral's `add_eos_token` does), exactly
as sentence-transformers leaves it to the tokenizer.

Rows are padded on the right, whatever side the tokenizer pads: under a
causal mask no real token sees the pads after it and positions start at 0 as
for an unpadded input, so each vector is what the model gives that input
alone (left padding, as sentence-transformers does, shifts every position by
the pad count; rotary attention only sees relative positions, so both agree
to rounding).
"""

from __future__ import annotations

from pathlib import Path

import torch
from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES, MODEL_FOR_MASKED_LM_MAPPING_NAMES

from ..layout import model_config
from .sentence_transformer import SentenceTransformerModel


def is_decoder_only(config: dict) -> bool:
    """A causal LM by its architectures, or a model type that only has a causal-LM head
    (BERT and XLM-R also have one, but are encoders: they have a masked-LM head too)."""
    if config.get("is_encoder_decoder") or "vision_config" in config:
        return False
    if any(str(name).endswith("ForCausalLM") for name in config.get("architectures") or []):
        return True
    model_type = config.get("model_type")
    return model_type in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES and model_type not in MODEL_FOR_MASKED_LM_MAPPING_NAMES


class DecoderEmbedder(SentenceTransformerModel):
    family = "decoder"
    default_pooling = ("lasttoken",)

    @classmethod
    def detect(cls, path: Path) -> bool:
        return is_decoder_only(model_config(path))

    def hidden_states(self, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        # No KV cache: nothing is generated, and building one costs memory per pass.
        return self.model(**inputs, use_cache=False).last_hidden_state
