"""SPLADE-style sparse encoders, as sentence-transformers' `SparseEncoder` loads them.

A text becomes a vector over the vocabulary: the masked-LM logits of every token, through SpladePooling
(`log(1 + relu(logits))`, max or sum over the tokens), kept where non-zero. Recognised by
`config_sentence_transformers.json` saying `"model_type": "SparseEncoder"`, by sparse modules in
`modules.json`, or by a plain `...ForMaskedLM` directory with no sentence-transformers files (max-pooled
SPLADE, as sentence-transformers and text-embeddings-inference serve one).

sentence-transformers reads the directory (its module stack, a `Router`'s query and document routes, the IDF
table of an inference-free query side) in the master; the pass runs its `SpladePooling` and
`SparseStaticEmbedding` modules on logits that this family computes itself, so the engine keeps the masked
LM to batch, compile and share copy-on-write. Modules other than those are refused at start-up by name: a
directory is never served as something it is not.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..capabilities import SPARSE
from ..layout import ModelLayout, json_list, json_object, model_config, module_kind
from ..outputs import BatchOutput
from ..requests import DEFAULT_EMBED, SIDE_PROMPT_NAMES, EmbedRequest
from ..rows import Prepared, TextRow, pad_right
from ..text_inputs import TextInputs
from .base import TextFamily, sentence_transformers_model

# Module types (the last part of modules.json's "type") that make a directory a sparse encoder.
SPARSE_MODULES = frozenset({"SpladePooling", "MLMTransformer", "SparseStaticEmbedding", "SparseAutoEncoder"})
TRANSFORMERS = frozenset({"Transformer", "MLMTransformer"})
# A pass's logits ([rows, width, vocabulary]) are computed in slices of about this many bytes: a whole pass
# of 16k tokens over a 30k vocabulary would hold 2 GB in float32.
LOGITS_BYTES = 256 << 20


def declares_sparse(path: Path) -> bool:
    if json_object(path / "config_sentence_transformers.json").get("model_type") == "SparseEncoder":
        return True
    modules = json_list(path / "modules.json")
    kinds = {module_kind(str(module.get("type", ""))) for module in modules if isinstance(module, dict)}
    for module in modules:
        if isinstance(module, dict) and module_kind(str(module.get("type", ""))) == "Router":
            router = json_object(path / str(module.get("path", "")) / "router_config.json")
            kinds |= {module_kind(str(name)) for name in (router.get("types") or {}).values()}
    if kinds:
        return bool(kinds & SPARSE_MODULES)
    architectures = model_config(path).get("architectures") or []
    return any(str(name).endswith("ForMaskedLM") for name in architectures)


@dataclass
class Route:
    """One way through the model: how its texts are tokenised, and either a masked LM (the attribute on the
    model that holds it) and its pooling modules, or a static table of token weights (no forward pass)."""

    name: str
    text: TextInputs
    encoder: str | None = None
    model: torch.nn.Module | None = None
    pooling: tuple = ()
    static: torch.nn.Module | None = None
    token_type_ids: bool = False


class SparseEncoderModel(TextFamily):
    family = "sparse-encoder"
    capabilities = frozenset({SPARSE})
    kinds = ("text",)

    def __init__(self, name: str, dtype: torch.dtype, routes: dict[str, Route], sides: dict, max_active_dims):
        super().__init__(name, dtype)
        self.routes = routes
        # request side (query, document or None) -> the route that reads it, as the Router resolves it
        self.sides = sides
        self.max_active_dims = max_active_dims
        default = routes[sides[None]]
        self.text = default.text
        self.tokenizer = default.text.tokenizer
        self.max_length = default.text.max_length
        # The masked LMs are attributes of their own, which RUNTIME=compile swaps for compiled ones.
        for route in routes.values():
            if route.encoder:
                setattr(self, route.encoder, route.model)
        self.compile_targets = tuple(route.encoder for route in routes.values() if route.encoder)
        self.dimension = self._vocabulary()

    # ------------------------------------------------------------ recognition
    @classmethod
    def detect(cls, path: Path) -> bool:
        return declares_sparse(path)

    @classmethod
    def load(cls, path: Path, name: str, dtype: torch.dtype, options=None) -> SparseEncoderModel:
        encoder, stack = sentence_transformers_model("SparseEncoder", path, dtype)
        router = stack[0] if len(stack) == 1 and type(stack[0]).__name__ == "Router" else None
        stacks = {key: list(modules) for key, modules in router.sub_modules.items()} if router else {"": stack}
        prompts = ModelLayout(
            transformer_path=Path(path), prompts=dict(encoder.prompts), default_prompt_name=encoder.default_prompt_name
        )
        routes = {key: route_of(path, name, key, modules, prompts) for key, modules in stacks.items()}
        sides = {side: _resolve(router, side) for side in (None, "query", "document")}
        return cls(name, dtype, routes, sides, encoder.max_active_dims)

    def _vocabulary(self) -> int:
        for route in self.routes.values():
            if route.encoder:
                return int(getattr(self, route.encoder).get_output_embeddings().weight.shape[0])
        return int(next(iter(self.routes.values())).static.num_dimensions)

    # ------------------------------------------------------------ preparation
    def route_for(self, request: EmbedRequest) -> Route:
        return self.routes[self.sides[request.side]]

    def prepare_texts(self, texts: list[str], request: EmbedRequest = DEFAULT_EMBED) -> Prepared:
        self.refuse_instruction(request.instruction)
        route = self.route_for(request)
        prompt = self._prompt(route, request)
        return route.text.tokenize(texts, request, prompt=prompt)

    def prepare_token_ids(self, rows: list[list[int]], request: EmbedRequest = DEFAULT_EMBED) -> Prepared:
        return self.route_for(request).text.token_ids(rows, request)

    @staticmethod
    def _prompt(route: Route, request: EmbedRequest) -> str:
        """As encode_query and encode_document: a side's own prompt unless the request names one."""
        side = request.side
        if request.prompt is None and request.prompt_name is None and side is not None:
            prompts = route.text.layout.prompts
            name = next((name for name in SIDE_PROMPT_NAMES[side] if name in prompts), None)
            if name is not None:
                return prompts[name]
        return route.text.resolve_prompt(request.prompt, request.prompt_name)

    def sparse_width(self, tokens: int) -> int:
        return self.max_active_dims or self.dimension

    # ---------------------------------------------------------------- forward
    def forward(self, kind: str, rows: list[TextRow], outputs: frozenset[str]) -> BatchOutput:
        default = self.sides[None]
        groups: dict[str, list[int]] = {}
        for position, row in enumerate(rows):
            groups.setdefault(row.route if row.route in self.routes else default, []).append(position)
        sparse: list = [None] * len(rows)
        for key, positions in groups.items():
            route = self.routes[key]
            for start, vectors in self._pooled(route, [rows[i] for i in positions]):
                for offset, vector in enumerate(vectors):
                    sparse[positions[start + offset]] = vector
        return BatchOutput(sparse=sparse)

    def _pooled(self, route: Route, rows: list[TextRow]):
        """(first row's index, its slice's sparse vectors) for `rows`, in slices whose logits fit LOGITS_BYTES."""
        width = self.padded_width(rows)
        per_slice = max(1, LOGITS_BYTES // (width * self.dimension * 4))
        for start in range(0, len(rows), per_slice):
            chunk = rows[start : start + per_slice]
            input_ids, mask = pad_right(chunk, route.text.pad_id, width if route.encoder else None)
            features = {
                "input_ids": torch.from_numpy(input_ids).to(self.device),
                "attention_mask": torch.from_numpy(mask).to(self.device),
            }
            if route.static is not None:
                features = route.static(features)
            else:
                features["token_embeddings"] = self._logits(route, features)
                for module in route.pooling:
                    features = module(features)
            yield start, self._sparse(features["sentence_embedding"])

    def _logits(self, route: Route, features: dict) -> torch.Tensor:
        inputs = {"input_ids": features["input_ids"], "attention_mask": features["attention_mask"]}
        if route.token_type_ids:
            inputs["token_type_ids"] = torch.zeros_like(inputs["input_ids"])
        output = getattr(self, route.encoder)(**inputs)
        return output.logits if hasattr(output, "logits") else output[0]

    def _sparse(self, pooled: torch.Tensor) -> list[tuple[np.ndarray, np.ndarray]]:
        if self.max_active_dims is not None:
            from sentence_transformers.util import select_max_active_dims

            pooled = select_max_active_dims(pooled, max_active_dims=self.max_active_dims)
        weights = pooled.float().cpu().numpy()
        vectors = []
        for row in weights:
            ids = np.flatnonzero(row)
            vectors.append((ids.astype(np.int64), row[ids].astype(np.float32)))
        return vectors

    def warmup_inputs(self) -> list[tuple[str, Prepared]]:
        rows = []
        for route in self.routes.values():
            rows.extend(route.text.tokenize(["warm-up"]).rows)
            if route.encoder:
                rows.append(route.text.longest_row())
        return [("text", Prepared(rows=rows, outputs=frozenset({SPARSE})))]

    # -------------------------------------------------------------- lifecycle
    def modules(self) -> list[torch.nn.Module]:
        encoders = [getattr(self, route.encoder) for route in self.routes.values() if route.encoder]
        return [*encoders, *(route.static for route in self.routes.values() if route.static is not None)]

    def summary(self) -> str:
        routes = ", ".join(f"{key or 'text'}={self._describe_route(route)}" for key, route in self.routes.items())
        return f"dim={self.dimension} max_tokens={self.max_length} outputs=sparse routes: {routes} dtype={self.dtype}"

    @staticmethod
    def _describe_route(route: Route) -> str:
        if route.static is not None:
            return "static token weights (no forward pass)"
        return "splade(" + ",".join(f"{m.pooling_strategy}/{m.activation_function}" for m in route.pooling) + ")"

    def describe(self) -> dict:
        return {
            **super().describe(),
            "modality": "text",
            "modalities": ["text"],
            "outputs": ["sparse"],
            "dimension": self.dimension,
            "max_input_tokens": self.max_length,
            "pooling": ["splade"],
            "prompts": sorted(self.text.layout.prompts),
            "default_prompt_name": self.text.layout.default_prompt_name,
            "routes": {side or "default": self.sides[side] or "text" for side in (None, "query", "document")},
            "max_active_dims": self.max_active_dims,
        }


def route_of(path: Path, name: str, key: str, modules: list, layout: ModelLayout) -> Route:
    """One route of sentence-transformers' loaded module stack, or the start-up error naming what it holds."""
    kinds = [type(module).__name__ for module in modules]
    first, rest = modules[0], modules[1:]
    if kinds == ["SparseStaticEmbedding"]:
        text = TextInputs(
            name, first.tokenizer, layout, _NoPositions(), first.num_dimensions, route=key, special_tokens=False
        )
        return Route(key, text, static=first)
    where = f"{path}: the sparse encoder's {key + ' route' if key else 'module stack'}"
    if kinds[0] in TRANSFORMERS and kinds[1:] and all(kind == "SpladePooling" for kind in kinds[1:]):
        task = getattr(first, "transformer_task", "fill-mask")
        if task != "fill-mask" or first.model.get_output_embeddings() is None:
            raise ValueError(f"{where} has a Transformer for {task!r}; SPLADE needs a fill-mask (masked LM) one")
        st_layout = ModelLayout(
            transformer_path=layout.transformer_path,
            max_seq_length=first.max_seq_length,
            do_lower_case=bool(getattr(first, "do_lower_case", False)),
            prompts=layout.prompts,
            default_prompt_name=layout.default_prompt_name,
        )
        vocabulary = first.model.get_input_embeddings().num_embeddings
        text = TextInputs(name, first.tokenizer, st_layout, first.model.config, vocabulary, route=key)
        accepts = "token_type_ids" in first.tokenizer.model_input_names
        attribute = "model_" + re.sub(r"\W", "_", key) if key else "model"
        return Route(key, text, encoder=attribute, model=first.model, pooling=tuple(rest), token_type_ids=accepts)
    raise ValueError(
        f"{where} is {' -> '.join(kinds)}; this service serves SPLADE (a fill-mask Transformer, then "
        "SpladePooling) and inference-free sides (SparseStaticEmbedding) only"
    )


class _NoPositions:
    """A static side has no positions: its length is the tokenizer's (sentence-transformers truncates there)."""


def _resolve(router, side: str | None) -> str:
    """The route sentence-transformers' Router takes for texts of `side` (None: encode() with no task)."""
    if router is None:
        return ""
    try:
        return router._resolve_route(task=side, modality="text")
    except ValueError:  # no route for that task: the Router's default, as encode() without one
        return router._resolve_route(task=None, modality="text")
