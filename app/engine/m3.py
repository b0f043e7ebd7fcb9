"""BGE-M3's extra outputs: sparse lexical weights and multi-vector (ColBERT) embeddings.

Semantics as FlagEmbedding's BGEM3FlagModel defines them, from the same
forward pass as the dense vector:

- sparse: `relu(sparse_linear(hidden))` per token, the largest weight per
  distinct token id, leaving out the tokenizer's cls, eos, pad and unk tokens
  and zero weights;
- colbert: `colbert_linear(hidden)` for every token after the first (the CLS),
  up to the sequence's end, each vector L2-normalised (by the engine, with the
  request's `normalize`).

The heads ship as `sparse_linear.pt` and `colbert_linear.pt` next to the
encoder's config.json.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

SPARSE_FILE = "sparse_linear.pt"
COLBERT_FILE = "colbert_linear.pt"
DENSE = frozenset({"dense"})
OUTPUT_TYPES = ("dense", "sparse", "colbert")
HEAD_FILES = {"sparse": SPARSE_FILE, "colbert": COLBERT_FILE}


@dataclass(frozen=True, eq=False)
class RowOutput:
    """Everything one forward pass computed for one input."""

    dense: np.ndarray
    sparse: tuple[np.ndarray, np.ndarray] | None = None  # (token ids ascending, weights)
    colbert: np.ndarray | None = None  # [tokens - 1, dim], not yet normalised


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


def head_outputs(hidden: torch.Tensor, rows: list[list[int]], dense: np.ndarray, outputs: frozenset[str],
                 sparse_head: torch.nn.Module | None, colbert_head: torch.nn.Module | None,
                 excluded: frozenset[int]) -> list[RowOutput]:
    """Per-row results of the requested heads over one batch's last hidden states."""
    sparse = colbert = None
    if "sparse" in outputs:
        sparse = torch.relu(sparse_head(hidden)).squeeze(-1).float().cpu().numpy()
    if "colbert" in outputs:
        colbert = colbert_head(hidden[:, 1:]).float().cpu().numpy()
    results = []
    for i, row in enumerate(rows):
        results.append(RowOutput(
            dense=dense[i],
            sparse=lexical_weights(row, sparse[i, :len(row)], excluded) if sparse is not None else None,
            colbert=np.ascontiguousarray(colbert[i, :len(row) - 1]) if colbert is not None else None))
    return results
