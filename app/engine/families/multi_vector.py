"""Late-interaction (ColBERT-style) text models, as sentence-transformers' `MultiVectorEncoder` loads them.

A text becomes one vector per token; a query and a document are scored by MaxSim (each query vector's best
match among the document's, summed, or averaged for `meanmaxsim` models). Recognised by
`config_sentence_transformers.json` saying `"model_type": "MultiVectorEncoder"` (sentence-transformers' own
save) or `"ColBERT"` (PyLate's), or by a Stanford ColBERT checkpoint (`architectures: ["HF_ColBERT"]`).

sentence-transformers reads the directory in the master: the legacy layouts' translation (PyLate's
`[Q]`/`[D]` prefixes, `query_length`, punctuation skip-list; Stanford's `artifact.metadata` and inline
projection), and, per request, its own `Transformer.preprocess` with the request's side as the `task`:
the prefix, query expansion with mask tokens to the query length, the document length. The pass runs the
encoder this family holds (so the engine batches, compiles and shares it copy-on-write), then the
sentence-transformers modules after it (the token-level `Dense`, `MultiVectorMask` with its skip-list,
`Normalize`). MaxSim is sentence-transformers' own, through the model's `similarity`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..capabilities import COLBERT, RERANK
from ..errors import InvalidInput
from ..layout import json_object, model_config
from ..outputs import BatchOutput
from ..requests import DEFAULT_EMBED, SIDE_PROMPT_NAMES, EmbedRequest
from ..rows import Prepared, TextRow
from ..text_inputs import WARMUP_TOKENS
from .base import ServedModel, named_prompt, refuse_long, sentence_transformers_model

MODEL_TYPES = ("MultiVectorEncoder", "ColBERT")  # ColBERT: PyLate's saves
# The modules after the encoder that this family runs as sentence-transformers does.
HEAD_MODULES = ("Dense", "MultiVectorMask", "Normalize")


def declares_multi_vector(path: Path) -> bool:
    if json_object(path / "config_sentence_transformers.json").get("model_type") in MODEL_TYPES:
        return True
    return "HF_ColBERT" in (model_config(path).get("architectures") or [])


@dataclass(frozen=True, eq=False)
class LateRow(TextRow):
    """A text as sentence-transformers prepared it for one side: where the encoder attends, when not at every
    position (query-expansion tokens it does not attend to), and which positions are expansion tokens (scored
    though not attended). Both follow from the ids and the side, which the cache keys on."""

    attention: tuple[int, ...] | None = None
    expansion: tuple[bool, ...] | None = None


class MultiVectorModel(ServedModel):
    family = "multi-vector"
    # RERANK: a query against documents scored by MaxSim (late_interaction.py), on the rerank routes too.
    capabilities = frozenset({COLBERT, RERANK})
    kinds = ("text",)
    compile_targets = ("model",)

    def __init__(self, name: str, dtype: torch.dtype, encoder, transformer, head: list):
        super().__init__(name, dtype)
        self.encoder = encoder
        self.transformer = transformer
        self.model = transformer.model
        self.head = head
        self.tokenizer = transformer.tokenizer
        self.pad_id = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        self.token_types = "token_type_ids" in self.tokenizer.model_input_names
        self.max_length = int(transformer.max_seq_length or self.tokenizer.model_max_length)
        self.dimension = int(encoder.get_embedding_dimension())
        self.similarity_name = encoder.similarity_fn_name

    # ------------------------------------------------------------ recognition
    @classmethod
    def detect(cls, path: Path) -> bool:
        return declares_multi_vector(path)

    @classmethod
    def load(cls, path: Path, name: str, dtype: torch.dtype, options=None) -> MultiVectorModel:
        encoder, stack = sentence_transformers_model("MultiVectorEncoder", path, dtype)
        kinds = [type(module).__name__ for module in stack]
        transformer = stack[0]
        if (
            kinds[0] != "Transformer"
            or getattr(transformer, "transformer_task", None) == "retrieval"
            or "text" not in transformer.modalities
            or any(kind not in HEAD_MODULES for kind in kinds[1:])
        ):
            raise ValueError(
                f"{path}: the multi-vector model is {' -> '.join(kinds)}; this service serves text late-interaction "
                f"models (a Transformer, then {', '.join(HEAD_MODULES)}) only"
            )
        return cls(name, dtype, encoder, transformer, stack[1:])

    # ------------------------------------------------------------ preparation
    def prompt_text(self, prompt_name: str | None) -> str:
        return named_prompt(self.name, self.encoder.prompts, prompt_name)

    def _prompt(self, side: str, request: EmbedRequest) -> str:
        """As encode_query and encode_document: the side's own prompt unless the request names one."""
        if request.prompt is not None:
            return request.prompt
        if request.prompt_name is not None:
            return self.prompt_text(request.prompt_name)
        name = next((name for name in SIDE_PROMPT_NAMES[side] if name in self.encoder.prompts), None)
        return self.encoder.prompts[name] if name is not None else ""

    def limit(self, side: str, max_tokens: int | None = None) -> int:
        """How many tokens sentence-transformers keeps of a text on `side`."""
        transformer = self.transformer
        expansion = transformer.query_expansion if side == "query" else None
        if expansion is not None and expansion["strategy"] == "fixed":
            return int(expansion["length"])  # queries are this wide exactly: max_tokens cannot cut them
        own = transformer.query_length if side == "query" else transformer.document_length
        limit = int(own or self.max_length)
        return min(limit, max_tokens) if max_tokens else limit

    def prepare_texts(self, texts: list[str], request: EmbedRequest = DEFAULT_EMBED) -> Prepared:
        self.refuse_instruction(request.instruction)
        if request.truncation_direction != "right":
            raise InvalidInput(
                f"the model {self.name!r} cuts an over-long text at its end, as sentence-transformers does; "
                "truncation_direction must be right",
                param="truncation_direction",
            )
        side = request.side or "document"  # an index is built of documents: what a side-less call embeds
        prompt = self._prompt(side, request)
        limit = self.limit(side, request.max_tokens)
        options = {"task": side}
        if request.max_tokens:
            options["max_length"] = limit
        rows = _rows(self.encoder.preprocess(texts, prompt=prompt or None, **options), side)
        if not request.truncate:
            # Only a row that reached the limit can have been cut: the others are tokenised once, not twice.
            full = [index for index, row in enumerate(rows) if len(row) >= limit]
            refuse_long(self.tokenizer, [texts[i] for i in full], prompt, limit, request.field, " on this side", full)
        return Prepared(rows=rows, outputs=request.outputs)

    def token_width(self, output: str) -> int:
        return self.dimension

    # ---------------------------------------------------------------- forward
    def forward(self, kind: str, rows: list[LateRow], outputs: frozenset[str]) -> BatchOutput:
        vectors: list = [None] * len(rows)
        groups: dict[str, list[int]] = {}
        for position, row in enumerate(rows):
            groups.setdefault(row.route, []).append(position)
        for side, positions in groups.items():
            for position, matrix in zip(positions, self._side(side, [rows[i] for i in positions])):
                vectors[position] = matrix
        return BatchOutput(multivector=vectors)

    def _side(self, side: str, rows: list[LateRow]) -> list[np.ndarray]:
        width = self.padded_width(rows)
        input_ids = np.full((len(rows), width), self.pad_id, dtype=np.int64)
        attention = np.zeros((len(rows), width), dtype=np.int64)
        expansion = np.zeros((len(rows), width), dtype=bool)
        for index, row in enumerate(rows):
            input_ids[index, : len(row)] = row.ids
            attention[index, : len(row)] = row.attention if row.attention is not None else 1
            if row.expansion is not None:
                expansion[index, : len(row)] = row.expansion
        features = {
            "input_ids": torch.from_numpy(input_ids).to(self.device),
            "attention_mask": torch.from_numpy(attention).to(self.device),
        }
        inputs = dict(features)
        if self.token_types:
            inputs["token_type_ids"] = torch.zeros_like(features["input_ids"])
        output = self.model(**inputs)
        features["token_embeddings"] = output.last_hidden_state if hasattr(output, "last_hidden_state") else output[0]
        if expansion.any():
            features["query_expansion_positions"] = torch.from_numpy(expansion).to(self.device)
        return self._finish(side, features)

    def _finish(self, side: str, features: dict) -> list[np.ndarray]:
        """sentence-transformers' modules after the encoder, for `side`; then each row's vectors at the positions
        its mask keeps."""
        for module in self.head:
            features = module(features, **({"task": side} if "task" in module.forward_kwargs else {}))
        embeddings = features["token_embeddings"].float()
        masks = features["attention_mask"].bool()
        return [embeddings[index][masks[index]].cpu().numpy() for index in range(len(embeddings))]

    def maxsim(self, queries: list[np.ndarray], documents: list[np.ndarray]) -> np.ndarray:
        """[queries, documents] scores by the model's own late-interaction function (maxsim or meanmaxsim)."""

        def tensors(matrices: list[np.ndarray]) -> list[torch.Tensor]:
            return [torch.from_numpy(np.asarray(matrix, dtype=np.float32)) for matrix in matrices]

        return self.encoder.similarity(tensors(queries), tensors(documents)).float().cpu().numpy()

    def warmup_inputs(self) -> list[tuple[str, Prepared]]:
        short = [
            *self.prepare_texts(["warm-up"], EmbedRequest(is_query=True, outputs=frozenset({COLBERT}))).rows,
            *self.prepare_texts(["warm-up"], EmbedRequest(is_query=False, outputs=frozenset({COLBERT}))).rows,
        ]
        longest = LateRow([self.pad_id + 1] * min(self.limit("document"), WARMUP_TOKENS), route="document")
        return [("text", Prepared(rows=[*short, longest], outputs=frozenset({COLBERT})))]

    # -------------------------------------------------------------- lifecycle
    def modules(self) -> list[torch.nn.Module]:
        return [self.model, *self.head]

    def summary(self) -> str:
        expansion = self.transformer.query_expansion
        return (
            f"dim={self.dimension} per token, max_tokens={self.max_length} query={self.limit('query')} "
            f"document={self.limit('document')} query_expansion={'on' if expansion else 'off'} "
            f"similarity={self.similarity_name} head={'+'.join(type(m).__name__ for m in self.head)} dtype={self.dtype}"
        )

    def describe(self) -> dict:
        return {
            **super().describe(),
            "modality": "text",
            "modalities": ["text"],
            "outputs": ["colbert"],
            "dimension": self.dimension,
            "max_input_tokens": self.max_length,
            "query_tokens": self.limit("query"),
            "document_tokens": self.limit("document"),
            "similarity": self.similarity_name,
            "pooling": [],
            "prompts": sorted(self.encoder.prompts),
            "default_prompt_name": self.encoder.default_prompt_name,
        }


def _rows(features: dict, side: str) -> list[LateRow]:
    """sentence-transformers' padded batch for one request -> a row per text, unpadded, so that the batcher can
    pad it again beside other requests' rows."""
    ids = features["input_ids"].tolist()
    attention = features["attention_mask"].tolist()
    expansion = features.get("query_expansion_positions")
    expansion = expansion.tolist() if expansion is not None else None
    rows = []
    for index, row_ids in enumerate(ids):
        attended = attention[index]
        expanded = expansion[index] if expansion is not None else [False] * len(row_ids)
        kept = [position for position, (a, e) in enumerate(zip(attended, expanded)) if a or e]
        start, end = kept[0], kept[-1] + 1
        attended, expanded = attended[start:end], expanded[start:end]
        rows.append(
            LateRow(
                row_ids[start:end],
                route=side,
                attention=None if all(attended) else tuple(attended),
                expansion=tuple(bool(e) for e in expanded) if any(expanded) else None,
            )
        )
    return rows
