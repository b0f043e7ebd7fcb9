"""Rows made by a model's own processor (sentence-transformers' `preprocess`), and batches made of them again.

A processor pads a batch of inputs together; the engine batches inputs of different requests, so each input's
features are kept unpadded in a `FeatureRow` (its attended positions of the token arrays, its slice of every
other array) and a pass pads its rows as the processor pads a batch: token arrays on the tokenizer's side (ids
with the pad id), other arrays stacked, zero-padded at their end where their sizes differ (ColQwen2's patches,
which its forward unpads by its image grid). A video's frames are the exception: processors give every video's
frames along one axis (EmbeddingGemma 2's `pixel_values_videos`, with `num_frames_per_video` to split them), so
a row keeps its video's frames whole and a pass concatenates them.
"""

from __future__ import annotations

import numpy as np
import torch

from .rows import FeatureRow

# A processor's per-token outputs (padded as the tokenizer pads); every other array is per input.
TOKEN_ARRAYS = ("input_ids", "attention_mask", "token_type_ids")
# Arrays that hold every input's frames along their first axis rather than a row per input.
FRAME_ARRAYS = ("pixel_values_videos", "video_position_ids")


def split_rows(features: dict, route: str = "") -> list[FeatureRow]:
    """The processor's padded batch -> a row per input."""
    first = next(value for value in features.values() if isinstance(value, torch.Tensor))
    attended = features["attention_mask"].bool().numpy() if "attention_mask" in features else None
    rows = []
    for index in range(len(first)):
        arrays = {}
        for name, value in features.items():
            if not isinstance(value, torch.Tensor):
                continue  # the modality, a prompt's length: sentence-transformers' bookkeeping
            if name in FRAME_ARRAYS:
                if len(first) != 1:
                    raise ValueError(f"{name} holds several inputs' frames: preprocess one video at a time")
                arrays[name] = value.numpy()
                continue
            array = value[index].numpy()
            arrays[name] = array[attended[index]] if name in TOKEN_ARRAYS and attended is not None else array
        rows.append(FeatureRow(arrays, route=route))
    return rows


def collate(rows: list[FeatureRow], pad_id: int, padding_side: str, width: int = 0) -> dict[str, np.ndarray]:
    """`width`: token arrays padded to at least this many positions (a text tower that pools the last position
    was trained on text padded to its full context)."""
    batch = {}
    for name in rows[0].arrays:
        arrays = [row.arrays[name] for row in rows]
        if name in TOKEN_ARRAYS:
            fill = pad_id if name == "input_ids" else 0
            batch[name] = padded(arrays, fill, left=padding_side == "left", width=width)
        elif name in FRAME_ARRAYS:
            batch[name] = np.concatenate(arrays)
        else:
            batch[name] = padded(arrays, 0, left=False)
    return batch


def padded(arrays: list[np.ndarray], fill, *, left: bool, width: int = 0) -> np.ndarray:
    if arrays[0].ndim == 0:  # a scalar per input (a flag): stacked
        return np.stack(arrays)
    longest = max(width, *(array.shape[0] for array in arrays))
    out = np.full((len(arrays), longest, *arrays[0].shape[1:]), fill, dtype=arrays[0].dtype)
    for index, array in enumerate(arrays):
        if left:
            out[index, longest - array.shape[0] :] = array
        else:
            out[index, : array.shape[0]] = array
    return out
