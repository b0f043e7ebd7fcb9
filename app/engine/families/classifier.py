"""Sequence classifiers: every label's score for a text or a pair of texts (sentiment, toxicity, language,
intent, NLI, guard models).

Any `AutoModelForSequenceClassification` directory with two or more labels (one-label ones are rerankers:
cross_encoder.py), with or without sentence-transformers' CrossEncoder files (NLI cross-encoders ship them).
The scores are the logits through the function `transformers.pipeline("text-classification")` applies for
the model: a sigmoid for `problem_type: multi_label_classification`, none for `regression`, else a softmax;
`raw_scores` gives the logits. Labels come from `id2label`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from ..capabilities import CLASSIFY
from ..classification import apply
from ..layout import model_config, read_layout
from ..outputs import BatchOutput
from ..rows import PairRow, Prepared
from .cross_encoder import CrossEncoderModel


def function_for(config: dict) -> str:
    """The function the text-classification pipeline applies to this model's logits by default."""
    problem = config.get("problem_type")
    if problem == "regression":
        return "none"
    if problem == "multi_label_classification" or int(config.get("num_labels") or 0) == 1:
        return "sigmoid"
    return "softmax"


def label_count(config: dict) -> int:
    return int(config.get("num_labels") or len(config.get("id2label") or {}) or 0)


class SequenceClassifier(CrossEncoderModel):
    family = "classifier"
    capabilities = frozenset({CLASSIFY})
    kinds = ("text",)
    classify_outputs = frozenset({CLASSIFY})

    def __init__(self, name, tokenizer, model, layout, function: str, dtype):
        super().__init__(name, tokenizer, model, layout, "Identity", dtype)
        self.function = function
        self.dimension = len(self.labels)

    @classmethod
    def detect(cls, path: Path) -> bool:
        config = model_config(path)
        architectures = config.get("architectures") or []
        return any(str(name).endswith("ForSequenceClassification") for name in architectures) and (
            label_count(config) > 1
        )

    @classmethod
    def load(cls, path: Path, name: str, dtype: torch.dtype, options=None) -> SequenceClassifier:
        layout = read_layout(path)
        tokenizer = AutoTokenizer.from_pretrained(str(layout.transformer_path))
        model = AutoModelForSequenceClassification.from_pretrained(str(layout.transformer_path), dtype=dtype)
        model.eval().requires_grad_(False)
        return cls(name, tokenizer, model, layout, function_for(model.config.to_dict()), dtype)

    def summary(self) -> str:
        return (
            f"classify: labels={','.join(self.labels)} function={self.function} max_tokens={self.max_length} "
            f"dtype={self.dtype}"
        )

    def classify_activate(self, logits: np.ndarray) -> np.ndarray:
        return apply(self.function, logits)

    def forward(self, kind: str, rows: list[PairRow], outputs: frozenset[str]) -> BatchOutput:
        return BatchOutput(dense=self.logits(rows).float().cpu().numpy())

    def warmup_inputs(self) -> list[tuple[str, Prepared]]:
        short = self.prepare_classify(["warm-up", ("warm-up", "pair")]).rows
        longest = PairRow([self.pad_id] * min(self.max_length, 1024), self.max_length)
        return [("text", Prepared(rows=short + [longest], outputs=self.classify_outputs))]

    def describe(self) -> dict:
        return {
            **super().describe(),
            "modality": "text",
            "modalities": ["text", "text-pair"],
            "outputs": ["labels"],
            "dimension": len(self.labels),
            "labels": list(self.labels),
            "function": self.function,
            "activation": self.function,
        }
