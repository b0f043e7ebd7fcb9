"""BGE-M3: dense, sparse lexical weights and multi-vector (ColBERT) outputs from one pass.

Semantics as FlagEmbedding's BGEM3FlagModel defines them:

- dense: the CLS vector (or the sentence-transformers pooling, when the
  directory has those files);
- sparse: `relu(sparse_linear(hidden))` per token, the largest weight per
  distinct token id, leaving out the tokenizer's cls, eos, pad and unk tokens
  and zero weights;
- colbert: `colbert_linear(hidden)` for every token after the first (the CLS),
  up to the sequence's end, each vector L2-normalised (by the engine, with the
  request's `normalize`).

Recognised by the heads, `sparse_linear.pt` and `colbert_linear.pt`, next to
the encoder's config.json (or the sentence-transformers root).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ..capabilities import COLBERT, EMBED_TEXT, HEAD_FILES, OUTPUT_TYPES, SPARSE, TOKENS
from ..layout import transformer_dir
from ..outputs import BatchOutput
from ..rows import TextRow
from .sentence_transformer import SentenceTransformerModel


def find_heads(path: Path) -> dict[str, Path]:
    """Output type -> head file, looked for beside the encoder and at the root."""
    directories = [transformer_dir(path), Path(path)]
    heads = {}
    for output, filename in HEAD_FILES.items():
        found = next((d / filename for d in directories if (d / filename).is_file()), None)
        if found is not None:
            heads[output] = found
    return heads


def load_head(path: Path, hidden_size: int, dtype: torch.dtype) -> torch.nn.Linear:
    state = torch.load(path, map_location="cpu", weights_only=True)
    weight = state.get("weight")
    if weight is None or weight.dim() != 2:
        raise ValueError(f"{path} is not a Linear layer's state dict (no 2-d 'weight')")
    out_features, in_features = weight.shape
    if in_features != hidden_size:
        raise ValueError(f"{path} takes {in_features} inputs; the encoder's hidden size is {hidden_size}")
    head = torch.nn.Linear(in_features, out_features, bias="bias" in state)
    head.load_state_dict(state)
    return head.to(dtype).eval().requires_grad_(False)


def excluded_ids(tokenizer) -> frozenset[int]:
    """The ids FlagEmbedding leaves out of lexical weights: cls, eos, pad and unk."""
    ids = set()
    for name in ("cls_token", "eos_token", "pad_token", "unk_token"):
        token = getattr(tokenizer, name, None)
        if token is not None:
            ids.add(int(tokenizer.convert_tokens_to_ids(str(token))))
    return frozenset(ids)


def lexical_weights(ids: list[int], weights: np.ndarray, excluded: frozenset[int]) -> tuple[np.ndarray, np.ndarray]:
    """Per distinct token id, its largest positive weight; ids ascending."""
    best: dict[int, float] = {}
    for token, weight in zip(ids, weights.tolist()):
        if token in excluded or weight <= 0:
            continue
        if weight > best.get(token, 0.0):
            best[token] = weight
    order = sorted(best)
    return np.array(order, dtype=np.int64), np.array([best[t] for t in order], dtype=np.float32)


class BGEM3Model(SentenceTransformerModel):
    family = "bge-m3"
    # BGE-M3's layout (heads beside the encoder, no pooling files) means its dense vector, the CLS.
    default_pooling = ("cls",)

    def __init__(self, name, tokenizer, model, layout, dense, dtype, heads: dict[str, torch.nn.Module]):
        super().__init__(name, tokenizer, model, layout, dense, dtype)
        self.heads = dict(heads)
        self.capabilities = frozenset({EMBED_TEXT, TOKENS, *self.heads})
        self.excluded_ids = excluded_ids(tokenizer)

    @classmethod
    def detect(cls, path: Path) -> bool:
        return bool(find_heads(path))

    @classmethod
    def assemble(cls, path, name, tokenizer, model, layout, dense, dtype) -> BGEM3Model:
        heads = {output: load_head(file, model.config.hidden_size, dtype) for output, file in find_heads(path).items()}
        return cls(name, tokenizer, model, layout, dense, dtype, heads)

    def token_width(self, output: str) -> int:
        return self.heads[COLBERT].out_features if output == COLBERT else super().token_width(output)

    def summary(self) -> str:
        return f"{super().summary()} outputs=dense,{','.join(sorted(self.heads))}"

    def forward(self, kind: str, rows: list[TextRow], outputs: frozenset[str]) -> BatchOutput:
        inputs = self.padded(rows)
        hidden = self.hidden_states(inputs)
        dense = self.pooled(hidden, inputs["attention_mask"], rows)
        sparse = multivector = None
        if SPARSE in outputs:
            weights = torch.relu(self.heads[SPARSE](hidden)).squeeze(-1).float().cpu().numpy()
            sparse = [lexical_weights(row.ids, weights[i, : len(row)], self.excluded_ids) for i, row in enumerate(rows)]
        if COLBERT in outputs:
            vectors = self.heads[COLBERT](hidden[:, 1:]).float().cpu().numpy()
            multivector = [np.ascontiguousarray(vectors[i, : len(row) - 1]) for i, row in enumerate(rows)]
        return BatchOutput(
            dense=dense, sparse=sparse, multivector=multivector, tokens=self.token_states(hidden, rows, outputs)
        )

    def modules(self) -> list[torch.nn.Module]:
        return [*super().modules(), *self.heads.values()]

    def describe(self) -> dict:
        outputs = {"dense", *self.heads}
        return {**super().describe(), "outputs": [output for output in OUTPUT_TYPES if output in outputs]}
