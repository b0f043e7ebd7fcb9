"""Text encoders as sentence-transformers runs them: transformer -> pooling (-> Dense).

The catch-all family: any local Hugging Face text model directory, with or
without sentence-transformers files (modules.json, 1_Pooling, N_Dense,
prompts). A plain directory pools by mean; encoder-decoder checkpoints
(sentence-t5, GTR) use their encoder.
"""

from __future__ import annotations

import inspect
from pathlib import Path

import numpy as np
import torch
from transformers import AutoModel, AutoTokenizer

from ..capabilities import EMBED_TEXT, TOKENS
from ..dense import load_dense
from ..layout import ModelLayout, read_layout
from ..outputs import BatchOutput
from ..pooling import pool
from ..rows import Prepared, TextRow, pad_right
from ..text_inputs import TextInputs
from .base import TextFamily


class SentenceTransformerModel(TextFamily):
    family = "sentence-transformers"
    capabilities = frozenset({EMBED_TEXT, TOKENS})
    kinds = ("text",)
    compile_targets = ("model",)
    # How a directory without sentence-transformers files pools.
    default_pooling: tuple[str, ...] = ("mean",)

    def __init__(
        self,
        name: str,
        tokenizer,
        model: torch.nn.Module,
        layout: ModelLayout,
        dense: list[torch.nn.Module],
        dtype: torch.dtype,
    ):
        super().__init__(name, dtype)
        self.model = model
        self.layout = layout
        self.dense = dense
        self.text = TextInputs(name, tokenizer, layout, model.config, model.get_input_embeddings().num_embeddings)
        self.max_length = self.text.max_length
        self.tokenizer = tokenizer
        accepted = inspect.signature(model.forward).parameters
        self._token_type_ids = "token_type_ids" in accepted and "token_type_ids" in tokenizer.model_input_names
        self.dimension = dense[-1][0].out_features if dense else model.config.hidden_size * len(layout.pooling_modes)

    def token_width(self, output: str) -> int:
        return self.model.config.hidden_size  # `tokens`: the encoder's last hidden state

    # ------------------------------------------------------------ recognition
    @classmethod
    def detect(cls, path: Path) -> bool:
        return True  # the fallback: the registry asks it last

    @classmethod
    def load(cls, path: Path, name: str, dtype: torch.dtype, options=None) -> SentenceTransformerModel:
        layout = read_layout(path, cls.default_pooling, pooled=True)
        tokenizer = AutoTokenizer.from_pretrained(str(layout.transformer_path))
        model = AutoModel.from_pretrained(str(layout.transformer_path), dtype=dtype)
        if getattr(model.config, "is_encoder_decoder", False):
            model = model.get_encoder()
        model.eval().requires_grad_(False)
        dense = [load_dense(spec, dtype) for spec in layout.dense]
        return cls.assemble(path, name, tokenizer, model, layout, dense, dtype)

    @classmethod
    def assemble(cls, path: Path, name: str, tokenizer, model, layout: ModelLayout, dense: list, dtype):
        """The loaded parts -> the model object; families that add parts (heads) override this."""
        return cls(name, tokenizer, model, layout, dense, dtype)

    # ---------------------------------------------------------------- forward
    def forward(self, kind: str, rows: list[TextRow], outputs: frozenset[str]) -> BatchOutput:
        inputs = self.padded(rows)
        hidden = self.hidden_states(inputs)
        return BatchOutput(
            dense=self.pooled(hidden, inputs["attention_mask"], rows), tokens=self.token_states(hidden, rows, outputs)
        )

    @staticmethod
    def token_states(hidden: torch.Tensor, rows: list[TextRow], outputs: frozenset[str]) -> list | None:
        if TOKENS not in outputs:
            return None
        states = hidden.float().cpu().numpy()
        return [np.ascontiguousarray(states[i, : len(row)]) for i, row in enumerate(rows)]

    def padded(self, rows: list[TextRow]) -> dict[str, torch.Tensor]:
        """input_ids and attention_mask on the model's device, right-padded to the longest row (see padded_width)."""
        input_ids, mask = pad_right(rows, self.text.pad_id, self.padded_width(rows))
        return {
            "input_ids": torch.from_numpy(input_ids).to(self.device),
            "attention_mask": torch.from_numpy(mask).to(self.device),
        }

    def hidden_states(self, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        if self._token_type_ids:
            inputs = {**inputs, "token_type_ids": torch.zeros_like(inputs["input_ids"])}
        output = self.model(**inputs)
        return output.last_hidden_state if hasattr(output, "last_hidden_state") else output[0]

    def pooled(self, hidden: torch.Tensor, mask: torch.Tensor, rows: list[TextRow]) -> np.ndarray:
        prompt_lengths = [row.prompt_length for row in rows]
        prompt = torch.tensor(prompt_lengths, device=self.device) if any(prompt_lengths) else None
        vectors = pool(hidden, mask, self.layout.pooling_modes, prompt)
        for module in self.dense:
            vectors = module(vectors.to(self.dtype))
        return vectors.float().cpu().numpy()

    def warmup_inputs(self) -> list[tuple[str, Prepared]]:
        short = self.text.tokenize(["warm-up"])
        return [("text", Prepared(rows=short.rows + [self.text.longest_row()]))]

    # -------------------------------------------------------------- lifecycle
    def modules(self) -> list[torch.nn.Module]:
        return [self.model, *self.dense]

    def summary(self) -> str:
        return (
            f"dim={self.dimension} max_tokens={self.max_length} pooling={','.join(self.layout.pooling_modes)} "
            f"dtype={self.dtype}"
        )

    def describe(self) -> dict:
        return {
            **super().describe(),
            "modality": "text",
            "modalities": ["text"],
            "outputs": ["dense"],
            "dimension": self.dimension,
            "max_input_tokens": self.max_length,
            "pooling": list(self.layout.pooling_modes),
            "prompts": sorted(self.layout.prompts),
            "default_prompt_name": self.layout.default_prompt_name,
        }
