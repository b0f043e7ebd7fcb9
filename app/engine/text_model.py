"""A text embedding model: tokenizer + transformer + pooling (+ Dense, + BGE-M3's sparse and
ColBERT heads) behind one small interface.

Three stages, as Infinity splits them: `tokenize_*` (CPU, no model),
`forward` (the model, under a lock so concurrent requests in one worker never
oversubscribe the torch thread pool), and post-processing in numpy
(`postprocess`), which the engine applies per request.
"""

from __future__ import annotations

import inspect
import threading

import numpy as np
import torch

from ..errors import InvalidRequest
from .layout import ModelLayout
from .m3 import DENSE, OUTPUT_TYPES, excluded_ids, head_outputs
from .planning import OVERHEAD_TOKENS
from .pooling import pool
from .rows import Prepared, forward_planned

# Models whose position ids start after the padding index, so the last
# `padding_idx + 1` positions of max_position_embeddings are unusable.
_OFFSET_POSITION_MODELS = {"roberta", "xlm-roberta", "xlm-roberta-xl", "camembert", "mpnet", "longformer",
                           "data2vec-text", "ernie_m", "luke"}


def special_token_frame(tokenizer) -> tuple[list[int], list[int]]:
    """The ids the tokenizer puts before and after a single sequence ([CLS] … [SEP], <s> … </s>, …).

    Found by encoding one word with and without special tokens, which works for
    every tokenizer family without relying on version-specific helpers.
    """
    probe = "hello"
    bare = tokenizer(probe, add_special_tokens=False)["input_ids"]
    full = tokenizer(probe, add_special_tokens=True)["input_ids"]
    for start in range(len(full) - len(bare) + 1):
        if full[start:start + len(bare)] == bare:
            return list(full[:start]), list(full[start + len(bare):])
    return [], []


def max_sequence_length(layout: ModelLayout, tokenizer, config) -> int:
    limits = []
    if layout.max_seq_length:
        limits.append(int(layout.max_seq_length))
    tokenizer_limit = getattr(tokenizer, "model_max_length", None)
    if tokenizer_limit and tokenizer_limit < 1_000_000:
        limits.append(int(tokenizer_limit))
    positions = getattr(config, "max_position_embeddings", None)
    if positions:
        if getattr(config, "model_type", "") in _OFFSET_POSITION_MODELS:
            positions -= (getattr(config, "pad_token_id", None) or 0) + 1
        limits.append(int(positions))
    return min(limits) if limits else 512


class TextEmbedder:
    modality = "text"
    modalities: tuple[str, ...] = ("text",)

    def __init__(self, name: str, tokenizer, model: torch.nn.Module, layout: ModelLayout,
                 dense: list[torch.nn.Module], dtype: torch.dtype, heads: dict[str, torch.nn.Module] | None = None):
        self._init_text(name, tokenizer, model, layout, dtype, text_config=model.config,
                        vocab_size=model.get_input_embeddings().num_embeddings)
        self.dense = dense
        self.heads = dict(heads or {})
        self.outputs = frozenset({"dense", *self.heads})
        self.excluded_ids = excluded_ids(tokenizer) if self.heads else frozenset()
        accepted = inspect.signature(model.forward).parameters
        self._token_type_ids = "token_type_ids" in accepted and "token_type_ids" in tokenizer.model_input_names
        hidden = model.config.hidden_size
        self.dimension = dense[-1][0].out_features if dense else hidden * len(layout.pooling_modes)

    def _init_text(self, name: str, tokenizer, model: torch.nn.Module, layout: ModelLayout, dtype: torch.dtype,
                   *, text_config, vocab_size: int) -> None:
        self.name = name
        self.tokenizer = tokenizer
        self.model = model
        self.layout = layout
        self.dtype = dtype
        self.device = "cpu"
        self.max_length = max_sequence_length(layout, tokenizer, text_config)
        self.prefix, self.suffix = special_token_frame(tokenizer)
        self.vocab_size = vocab_size
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
        self.heads: dict[str, torch.nn.Module] = {}
        self.outputs = DENSE
        # One forward at a time per model and process: concurrent requests would
        # otherwise oversubscribe the torch thread pool. The engine and batchers hold it.
        self.lock = threading.Lock()

    def tower(self, modality: str):
        """What embeds inputs of `modality` (this object for text), or None."""
        return self if modality == "text" else None

    # ---------------------------------------------------------------- lifecycle
    @property
    def overhead_tokens(self) -> int:
        return OVERHEAD_TOKENS.get(self.device, OVERHEAD_TOKENS["cpu"])

    def to(self, device: str) -> None:
        """Only ever called in a worker after fork, and only for a GPU."""
        self.model.to(device)
        for module in [*self.dense, *self.heads.values()]:
            module.to(device)
        self.device = device

    def size(self) -> dict:
        """Parameters (transformer and Dense heads) and the bytes they and the buffers take."""
        parameters = [*self.model.parameters()]
        for module in [*self.dense, *self.heads.values()]:
            parameters.extend(module.parameters())
        tensors = parameters + [*self.model.buffers()]
        return {"parameters": sum(t.numel() for t in parameters),
                "weight_bytes": sum(t.numel() * t.element_size() for t in tensors)}

    def describe(self) -> dict:
        return {
            "id": self.name,
            "modality": self.modality,
            "modalities": list(self.modalities),
            "outputs": [output for output in OUTPUT_TYPES if output in self.outputs],
            "dimension": self.dimension,
            "max_input_tokens": self.max_length,
            "pooling": list(self.layout.pooling_modes),
            "prompts": sorted(self.layout.prompts),
            "default_prompt_name": self.layout.default_prompt_name,
        }

    # ----------------------------------------------------------------- tokenize
    def resolve_prompt(self, prompt: str | None, prompt_name: str | None) -> str:
        if prompt is not None and prompt_name is not None:
            raise InvalidRequest("give either prompt or prompt_name, not both", param="prompt_name")
        if prompt is not None:
            return prompt
        if prompt_name is not None:
            if prompt_name not in self.layout.prompts:
                known = ", ".join(sorted(self.layout.prompts)) or "none"
                raise InvalidRequest(
                    f"unknown prompt_name {prompt_name!r} for model {self.name!r}; known prompts: {known}",
                    param="prompt_name", code="unknown_prompt")
            return self.layout.prompts[prompt_name]
        if self.layout.default_prompt_name:
            return self.layout.prompts.get(self.layout.default_prompt_name, "")
        return ""

    def tokenize_texts(self, texts: list[str], *, truncate: bool = True, prompt: str = "",
                       field: str = "input") -> Prepared:
        if prompt:
            texts = [prompt + text for text in texts]
        if self.layout.do_lower_case:
            texts = [text.lower() for text in texts]
        encoded = self.tokenizer(
            texts, add_special_tokens=True, truncation=truncate, max_length=self.max_length if truncate else None,
            padding=False, return_attention_mask=False, return_token_type_ids=False,
        )["input_ids"]
        if not truncate:
            self._reject_over_long(encoded, field)
        prompt_length = 0
        if prompt and not self.layout.include_prompt:
            # As sentence-transformers: the prompt's tokens less its closing special token.
            prompt_length = len(self.tokenizer(prompt, add_special_tokens=True)["input_ids"]) - 1
        return Prepared(rows=encoded, prompt_length=prompt_length)

    def tokenize_ids(self, rows: list[list[int]], *, truncate: bool = True, field: str = "input") -> Prepared:
        """Token ids sent by the client, in this model's vocabulary.

        Rows that already carry the model's special tokens pass as they are;
        bare rows get them added, so both `tokenizer.encode(text)` and
        `encode(text, add_special_tokens=False)` give the text's embedding.
        """
        framed = []
        frame = len(self.prefix) + len(self.suffix)
        for index, row in enumerate(rows):
            bad = next((t for t in row if not 0 <= t < self.vocab_size), None)
            if bad is not None:
                raise InvalidRequest(
                    f"{field}[{index}] has token id {bad}, outside this model's vocabulary of {self.vocab_size}",
                    param=f"{field}[{index}]")
            if self._has_frame(row):
                body = row[len(self.prefix):len(row) - len(self.suffix)]
            else:
                body = row
            if len(body) + frame > self.max_length:
                if not truncate:
                    raise self._too_long(index, len(body) + frame, field)
                body = body[:self.max_length - frame]
            framed.append(self.prefix + list(body) + self.suffix)
        return Prepared(rows=framed)

    def _has_frame(self, row: list[int]) -> bool:
        if not self.prefix and not self.suffix:
            return False
        return (len(row) >= len(self.prefix) + len(self.suffix)
                and row[:len(self.prefix)] == self.prefix
                and (not self.suffix or row[-len(self.suffix):] == self.suffix))

    def _reject_over_long(self, encoded: list[list[int]], field: str) -> None:
        for index, row in enumerate(encoded):
            if len(row) > self.max_length:
                raise self._too_long(index, len(row), field)

    def _too_long(self, index: int, length: int, field: str) -> InvalidRequest:
        return InvalidRequest(
            f"{field}[{index}] is {length} tokens long, over this model's maximum of {self.max_length}; "
            "shorten it or send truncate=true", param=f"{field}[{index}]", code="input_too_long")

    # ------------------------------------------------------------------ forward
    def forward(self, prepared: Prepared, batch_size: int, batch_tokens: int = 1 << 30,
                on_batch=None) -> np.ndarray:
        """Pooled float32 vectors in the caller's order (see rows.forward_planned)."""
        return forward_planned(self, prepared, batch_size, batch_tokens, on_batch)

    def forward_rows(self, rows: list[list[int]], prompt_lengths: list[int], outputs: frozenset[str] = DENSE):
        """One forward pass over rows of any lengths: [len(rows), dimension] float32 for dense
        vectors alone, else a RowOutput per row with the requested heads' results too."""
        with torch.inference_mode():
            return self._forward_batch(rows, prompt_lengths, outputs)

    def _padded(self, rows: list[list[int]], width: int | None = None) -> dict[str, torch.Tensor]:
        """input_ids and attention_mask on the model's device, right-padded to `width` or the longest row."""
        width = width or max(len(row) for row in rows)
        input_ids = np.full((len(rows), width), self.pad_id, dtype=np.int64)
        mask = np.zeros((len(rows), width), dtype=np.int64)
        for i, row in enumerate(rows):
            input_ids[i, :len(row)] = row
            mask[i, :len(row)] = 1
        return {"input_ids": torch.from_numpy(input_ids).to(self.device),
                "attention_mask": torch.from_numpy(mask).to(self.device)}

    def _forward_batch(self, rows: list[list[int]], prompt_lengths: list[int], outputs: frozenset[str] = DENSE):
        inputs = self._padded(rows)
        if self._token_type_ids:
            inputs["token_type_ids"] = torch.zeros_like(inputs["input_ids"])
        output = self.model(**inputs)
        hidden = output.last_hidden_state if hasattr(output, "last_hidden_state") else output[0]
        prompt = torch.tensor(prompt_lengths, device=self.device) if any(prompt_lengths) else None
        vectors = pool(hidden, inputs["attention_mask"], self.layout.pooling_modes, prompt)
        for module in self.dense:
            vectors = module(vectors.to(self.dtype))
        dense = vectors.float().cpu().numpy()
        if outputs == DENSE:
            return dense
        return head_outputs(hidden, rows, dense, outputs, self.heads.get("sparse"), self.heads.get("colbert"),
                            self.excluded_ids)

    def token_strings(self, ids) -> list[str]:
        return self.tokenizer.convert_ids_to_tokens([int(i) for i in ids])


def postprocess(vectors: np.ndarray, *, normalize: bool, dimensions: int | None) -> np.ndarray:
    """Matryoshka truncation first, then L2 normalisation, as OpenAI's `dimensions` does."""
    if dimensions is not None:
        vectors = vectors[:, :dimensions]
    if normalize:
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        vectors = vectors / np.maximum(norms, 1e-12)
    return np.ascontiguousarray(vectors, dtype=np.float32)
