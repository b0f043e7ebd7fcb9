"""Visual-document retrievers (ColPali, ColQwen2, ColModernVBert): a page image becomes one vector per patch
(and per prompt token), a text query one vector per token, scored by MaxSim; a PDF is searched by its pages'
pictures, without OCR.

These are transformers' `*ForRetrieval` models, loaded as sentence-transformers' `MultiVectorEncoder` loads
them: its `Transformer` (the model's own processor, which bakes in the query prefix, the query augmentation
tokens and the visual prompt; the model's forward, which projects, L2-normalises and zeroes padding), then a
`MultiVectorMask`. A row is the processor's output for one input, unpadded (`FeatureRow`); a pass pads rows
as that processor pads a batch (token arrays on the tokenizer's side; pixel arrays of different sizes with
zeros after, which ColQwen2's forward unpads by its image grid) and runs sentence-transformers' modules on
them, so the engine keeps batching across requests, preload and the cache.

The processors have no document form for text: a text is rendered as a query whichever side it is on (as
sentence-transformers does), and images are documents unless the request says is_query. The compiled runtime
leaves these models eager: a vision tower over page grids of many sizes would compile a graph per size.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ..capabilities import COLBERT, COLBERT_IMAGE, RERANK
from ..errors import InvalidInput
from ..feature_batches import collate, split_rows
from ..layout import model_config
from ..requests import DEFAULT_EMBED, EmbedRequest
from ..rows import FeatureRow, Prepared
from .base import sentence_transformers_model
from .multi_vector import MultiVectorModel


def retrieval_architecture(path: Path) -> str | None:
    """config.json's `*ForRetrieval` architecture, if it names one."""
    return next(
        (str(n) for n in model_config(path).get("architectures") or [] if str(n).endswith("ForRetrieval")), None
    )


class VisualRetrieverModel(MultiVectorModel):
    family = "visual-multi-vector"
    capabilities = frozenset({COLBERT, COLBERT_IMAGE, RERANK})
    kinds = ("text", "image")
    compile_targets = ()

    def __init__(self, name: str, dtype: torch.dtype, encoder, transformer, head: list):
        super().__init__(name, dtype, encoder, transformer, head)
        self.processor = transformer.processor
        self.tokenizer = getattr(self.processor, "tokenizer", self.processor)
        self.padding_side = self.tokenizer.padding_side
        self.architecture = type(transformer.model).__name__
        self.max_length = _max_positions(transformer.model.config, self.tokenizer)

    @classmethod
    def detect(cls, path: Path) -> bool:
        return retrieval_architecture(path) is not None

    @classmethod
    def load(cls, path: Path, name: str, dtype: torch.dtype, options=None) -> VisualRetrieverModel:
        try:
            encoder, stack = sentence_transformers_model("MultiVectorEncoder", path, dtype)
        except (ValueError, AttributeError, KeyError, OSError) as exc:
            raise ValueError(
                f"{path}: config.json's architectures say {retrieval_architecture(path)}, a visual-document "
                f"retriever, but sentence-transformers cannot load it as one: {exc}"
            ) from exc
        kinds = [type(module).__name__ for module in stack]
        transformer = stack[0]
        if (
            kinds[0] != "Transformer"
            or getattr(transformer, "transformer_task", None) != "retrieval"
            or not {"text", "image"} <= set(transformer.modalities)
            or kinds[1:] != ["MultiVectorMask"]
        ):
            raise ValueError(
                f"{path}: the retrieval model loads as {' -> '.join(kinds)}; this service serves visual retrievers "
                "as sentence-transformers loads them (a retrieval Transformer taking text and images, then a "
                "MultiVectorMask)"
            )
        _check_pages(encoder, path)
        return cls(name, dtype, encoder, transformer, stack[1:])

    def kind_of(self, modality: str) -> str:
        return modality

    def limit(self, side: str, max_tokens: int | None = None) -> int:
        return min(self.max_length, max_tokens) if max_tokens else self.max_length

    # ------------------------------------------------------------ preparation
    def prepare_texts(self, texts: list[str], request: EmbedRequest = DEFAULT_EMBED) -> Prepared:
        self.refuse_instruction(request.instruction)
        side = request.side or "query"  # the processors render every text as a query
        features = self.encoder.preprocess(texts, prompt=self._prompt(side, request) or None, task="query")
        rows = split_rows(features, side)
        limit = self.limit(side, request.max_tokens)
        for index, row in enumerate(rows):
            if len(row) > limit:
                # The augmentation tokens close a query: cutting its end would cut them, so it is refused.
                raise InvalidInput(
                    f"{request.field}[{index}] is {len(row)} tokens as this model's processor renders a query, "
                    f"over the limit of {limit}; shorten it",
                    param=f"{request.field}[{index}]",
                    code="input_too_long",
                )
        return Prepared(rows=rows, outputs=request.outputs)

    def prepare_image(self, image, param: str, request: EmbedRequest = DEFAULT_EMBED) -> FeatureRow:
        self.refuse_instruction(request.instruction)
        side = "query" if request.is_query else "document"
        try:
            features = self.encoder.preprocess([image], task=side)
        except Exception as exc:  # noqa: BLE001 - the processor's errors are about this image
            raise InvalidInput(
                f"{param} could not be preprocessed for this model: {exc}", param=param, code="invalid_image"
            ) from None
        return split_rows(features, side)[0]

    # ---------------------------------------------------------------- forward
    def _side(self, side: str, rows: list[FeatureRow]) -> list[np.ndarray]:
        """The rows of one side, padded as the processor pads them, through sentence-transformers' Transformer (the
        model's own forward) and the modules after it."""
        batch = collate(rows, self.pad_id, self.padding_side)
        features = {name: torch.from_numpy(array).to(self.device) for name, array in batch.items()}
        features["modality"] = "image" if "pixel_values" in features else "text"
        return self._finish(side, self.transformer(features))

    def warmup_inputs(self) -> list[tuple[str, Prepared]]:
        from PIL import Image

        query = EmbedRequest(is_query=True, outputs=frozenset({COLBERT}))
        page = self.prepare_image(Image.new("RGB", (48, 64), (250, 250, 250)), "warm-up")
        return [
            ("text", self.prepare_texts(["warm-up"], query)),
            ("image", Prepared(rows=[page], outputs=frozenset({COLBERT}))),
        ]

    # -------------------------------------------------------------- lifecycle
    def modules(self) -> list[torch.nn.Module]:
        return [self.transformer, *self.head]

    def summary(self) -> str:
        return (
            f"text+image ({self.architecture}): dim={self.dimension} per token or patch, max_tokens={self.max_length} "
            f"similarity={self.similarity_name} dtype={self.dtype}"
        )

    def describe(self) -> dict:
        card = super().describe()
        for key in ("query_tokens", "document_tokens"):
            card.pop(key)
        return {**card, "modality": "text+image", "modalities": ["text", "image"], "architecture": self.architecture}


def _check_pages(encoder, path: Path) -> None:
    """A page must become token ids (its visual prompt and image tokens) to be scored: a processor that gives an
    image pixels alone (a tiny ColModernVBert through sentence-transformers 6.3, which fails on it too) would
    fail every page request, and the warm-up before the worker is ready."""
    from PIL import Image

    probe = encoder.preprocess([Image.new("RGB", (64, 64), (255, 255, 255))], task="document")
    if "input_ids" not in probe:
        given = ", ".join(sorted(key for key in probe if key != "modality"))
        raise ValueError(
            f"{path}: the model's processor gives a page image no token ids (only {given}), so sentence-transformers "
            "cannot embed pages with it; not served"
        )


def _max_positions(config, tokenizer) -> int:
    """The text positions the language model has, or the tokenizer's limit where it sets a smaller one."""
    text = config.get_text_config() if hasattr(config, "get_text_config") else config
    positions = getattr(text, "max_position_embeddings", None) or 1 << 30
    declared = tokenizer.model_max_length
    return int(min(positions, declared)) if declared and declared < 1 << 30 else int(positions)
