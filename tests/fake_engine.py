"""A fast, deterministic engine for tests of shapes and errors, as Infinity's debug engine: the real Engine
(validation, batching, caching, quantization) over a model family whose forward pass is a hash of the token ids,
with the default model's tokenizer. No weights, no torch forward: an app on it starts in milliseconds.

The vectors mean nothing beyond identity: the same tokens always give the same vector, different tokens
(almost surely) different ones. Tests of what vectors are worth keep the real models."""

from __future__ import annotations

import hashlib
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch
from transformers import AutoTokenizer

from app.config import Settings, default_model_path
from app.engine import Engine, EngineConfig
from app.engine.capabilities import EMBED_TEXT
from app.engine.families.base import TextFamily
from app.engine.layout import ModelLayout
from app.engine.outputs import BatchOutput
from app.engine.rows import Prepared, TextRow
from app.engine.text_inputs import TextInputs

DIMENSION = 32


class HashedTokens(TextFamily):
    family = "fake"
    capabilities = frozenset({EMBED_TEXT})
    kinds = ("text",)

    def __init__(self, name: str, tokenizer, max_length: int = 128):
        super().__init__(name, torch.float32)
        config = SimpleNamespace(max_position_embeddings=max_length, model_type="bert")
        self.text = TextInputs(name, tokenizer, ModelLayout(transformer_path=Path(".")), config, len(tokenizer))
        self.tokenizer = tokenizer
        self.dimension = DIMENSION
        self.max_length = self.text.max_length

    def forward(self, kind: str, rows: list[TextRow], outputs: frozenset[str]) -> BatchOutput:
        vectors = np.empty((len(rows), DIMENSION), dtype=np.float32)
        for index, row in enumerate(rows):
            seed = int.from_bytes(hashlib.sha256(np.asarray(row.ids, dtype=np.int64).tobytes()).digest()[:8], "little")
            vectors[index] = np.random.default_rng(seed).standard_normal(DIMENSION)
        return BatchOutput(dense=vectors)

    def warmup_inputs(self) -> list[tuple[str, Prepared]]:
        return [("text", self.text.tokenize(["warm-up"]))]

    def modules(self) -> list[torch.nn.Module]:
        return []

    def describe(self) -> dict:
        return {
            **super().describe(),
            "modality": "text",
            "modalities": ["text"],
            "outputs": ["dense"],
            "dimension": DIMENSION,
            "max_input_tokens": self.max_length,
            "pooling": [],
            "prompts": [],
            "default_prompt_name": None,
        }


def fake_engine(settings: Settings | None = None, name: str = "fake") -> Engine:
    settings = settings or Settings.from_env({"LOG_REQUESTS": "false"})
    tokenizer = AutoTokenizer.from_pretrained(str(default_model_path()))
    engine = Engine(EngineConfig.from_settings(settings), {name: HashedTokens(name, tokenizer)}, "cpu", torch.float32)
    engine.start_worker()
    return engine
