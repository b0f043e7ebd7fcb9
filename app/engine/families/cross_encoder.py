"""Cross-encoder rerankers: a sequence-classification head over an encoder, one logit per (query, document).

bge-reranker-base/large/v2-m3, the ms-marco MiniLM cross-encoders, gte and
ModernBERT rerankers: `AutoModelForSequenceClassification` with one label.
Recognised by `architectures` ending in `ForSequenceClassification` or by
sentence-transformers' CrossEncoder files. The raw score is the logit; the
default score applies the activation `CrossEncoder.predict` applies for the
model (its saved `activation_fn`, else sigmoid for one label).
"""

from __future__ import annotations

import inspect
from pathlib import Path

import numpy as np
import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from ..capabilities import CLASSIFY, RERANK
from ..errors import InvalidInput
from ..layout import ModelLayout, json_object, model_config, read_layout
from ..outputs import BatchOutput
from ..pair_inputs import PairInputs, cut
from ..requests import DEFAULT_SCORE, ScoreRequest
from ..rows import PairRow, Prepared, pad_right
from ..text_inputs import max_sequence_length, pad_id_of, special_token_frame
from .base import RerankerFamily

# Score activations by name, as sentence-transformers stores them ("torch.nn.modules.activation.Sigmoid").
ACTIVATIONS = {
    "Sigmoid": lambda x: 1.0 / (1.0 + np.exp(-x)),
    "Identity": lambda x: x,
    "Tanh": np.tanh,
}


def labels_of(config) -> list[str]:
    """The label names in id order (`id2label`; LABEL_i where a model has none)."""
    names = getattr(config, "id2label", None) or {}
    return [str(names.get(i, names.get(str(i), f"LABEL_{i}"))) for i in range(int(config.num_labels))]


def is_cross_encoder_dir(path: Path) -> bool:
    if json_object(path / "config_sentence_transformers.json").get("model_type") == "CrossEncoder":
        return True
    return any(
        str(name).endswith("ForSequenceClassification") for name in model_config(path).get("architectures") or []
    )


def activation_name(path: Path, config: dict) -> str:
    """The activation sentence-transformers' CrossEncoder.predict would apply, by class name."""
    for found in (
        json_object(path / "config_sentence_transformers.json").get("activation_fn"),
        (config.get("sentence_transformers") or {}).get("activation_fn"),
        config.get("sbert_ce_default_activation_function"),
    ):
        if isinstance(found, str) and found.startswith("torch."):
            name = found.rsplit(".", 1)[-1]
            if name not in ACTIVATIONS:
                raise ValueError(f"unsupported score activation {found!r}; supported: {', '.join(ACTIVATIONS)}")
            return name
    return "Sigmoid"


class CrossEncoderModel(RerankerFamily):
    family = "cross-encoder"
    # A classification route asks a cross-encoder for its one score, as text-embeddings-inference's /predict.
    capabilities = frozenset({RERANK, CLASSIFY})
    compile_targets = ("model",)

    def __init__(
        self, name: str, tokenizer, model: torch.nn.Module, layout: ModelLayout, activation: str, dtype: torch.dtype
    ):
        super().__init__(name, dtype)
        self.model = model
        self.tokenizer = tokenizer
        self.layout = layout
        self.activation = activation
        self.max_length = max_sequence_length(layout, tokenizer, model.config)
        self.pairs = PairInputs(tokenizer, self.max_length)
        self.single = special_token_frame(tokenizer)
        self.pad_id = pad_id_of(tokenizer)
        self.labels = labels_of(model.config)
        accepted = inspect.signature(model.forward).parameters
        self._token_type_ids = "token_type_ids" in accepted and "token_type_ids" in tokenizer.model_input_names

    @classmethod
    def detect(cls, path: Path) -> bool:
        return is_cross_encoder_dir(path)

    @classmethod
    def load(cls, path: Path, name: str, dtype: torch.dtype, options=None) -> CrossEncoderModel:
        layout = read_layout(path)
        tokenizer = AutoTokenizer.from_pretrained(str(layout.transformer_path))
        model = AutoModelForSequenceClassification.from_pretrained(str(layout.transformer_path), dtype=dtype)
        labels = int(model.config.num_labels)
        if labels != 1:
            raise ValueError(
                f"a sequence-classification model with {labels} labels is a classifier, not a "
                "reranker; only one-label cross-encoders are served"
            )
        model.eval().requires_grad_(False)
        return cls(name, tokenizer, model, layout, activation_name(Path(path), model_config(path)), dtype)

    def summary(self) -> str:
        return f"rerank: max_tokens={self.max_length} activation={self.activation} dtype={self.dtype}"

    # ------------------------------------------------------------ preparation
    def prepare_pairs(self, query: str, documents: list[str], request: ScoreRequest = DEFAULT_SCORE) -> Prepared:
        return Prepared(rows=self.pairs.tokenize(query, documents, request), outputs=frozenset({RERANK}))

    def prepare_classify(self, inputs: list, request: ScoreRequest = DEFAULT_SCORE) -> Prepared:
        """Texts and (text, text pair) tuples -> one row each, as the tokenizer encodes `tokenizer(text)` and
        `tokenizer(text, text_pair)`."""
        singles = [index for index, item in enumerate(inputs) if isinstance(item, str)]
        texts = [inputs[index] for index in singles]
        encoded = (
            self.tokenizer(texts, add_special_tokens=False, return_attention_mask=False, return_token_type_ids=False)[
                "input_ids"
            ]
            if texts
            else []
        )
        rows: list = [None] * len(inputs)
        before, after = self.single
        room = self.max_length - len(before) - len(after)
        for index, ids in zip(singles, encoded):
            if len(ids) > room and not request.truncate:
                raise InvalidInput(
                    f"{request.field}[{index}] is {len(ids) + len(before) + len(after)} tokens, over this model's "
                    f"maximum of {self.max_length}; shorten it or send truncate=true",
                    param=f"{request.field}[{index}]",
                    code="input_too_long",
                )
            ids = before + cut(ids, room, request.truncation_direction) + after
            rows[index] = PairRow(ids, len(ids))
        for index, item in enumerate(inputs):
            if rows[index] is None:
                pair = ScoreRequest(
                    field=f"{request.field}[{index}]",
                    truncate=request.truncate,
                    truncation_direction=request.truncation_direction,
                )
                rows[index] = self.pairs.tokenize(item[0], [item[1]], pair)[0]
        return Prepared(rows=rows, outputs=self.classify_outputs)

    # What a classification pass computes: one score per row for a cross-encoder (cached as its rerank scores).
    classify_outputs = frozenset({RERANK})

    def activate(self, scores: np.ndarray) -> np.ndarray:
        return ACTIVATIONS[self.activation](scores.astype(np.float64)).astype(np.float32)

    def classify_activate(self, logits: np.ndarray) -> np.ndarray:
        """A classification route's default scores: the same as the rerank routes'."""
        return self.activate(logits)

    # ---------------------------------------------------------------- forward
    def logits(self, rows: list[PairRow]) -> torch.Tensor:
        input_ids, mask = pad_right(rows, self.pad_id, self.padded_width(rows))
        types = np.zeros_like(input_ids)
        for i, row in enumerate(rows):
            types[i, row.first_segment : len(row)] = 1
        inputs = {
            "input_ids": torch.from_numpy(input_ids).to(self.device),
            "attention_mask": torch.from_numpy(mask).to(self.device),
        }
        if self._token_type_ids:
            inputs["token_type_ids"] = torch.from_numpy(types).to(self.device)
        return self.model(**inputs).logits

    def forward(self, kind: str, rows: list[PairRow], outputs: frozenset[str]) -> BatchOutput:
        return BatchOutput(scores=self.logits(rows)[:, 0].float().cpu().numpy())
