"""A dual-encoder vision-language model (CLIP, SigLIP, SigLIP 2, ...): text and images in one space.

The text side reuses TextEmbedder's tokenisation, prompts and limits; its
vectors are the model's `get_text_features`, and images go through the
model's own image processor and `get_image_features`, so both are exactly
what the model's authors compute. `tower("image")` gives the batcher and
planner an image side with the same interface as the text side.
"""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image

from ..errors import InvalidRequest
from .layout import ModelLayout
from .planning import OVERHEAD_TOKENS
from .rows import ImageRow, stack_rows
from .text_model import TextEmbedder

# Text towers that pool the last position and were trained on text padded to the
# full context, so the pooled position is a pad token: pad to it here too, as the
# model cards tell users to (padding="max_length").
_FIXED_LENGTH_TEXT = {"siglip", "siglip2"}


def is_dual_encoder(model: torch.nn.Module) -> bool:
    return callable(getattr(model, "get_text_features", None)) and callable(
        getattr(model, "get_image_features", None))


def _features(output) -> torch.Tensor:
    """transformers 5 returns a ModelOutput whose pooler_output is projected; 4.x a tensor."""
    if isinstance(output, torch.Tensor):
        return output
    pooled = getattr(output, "pooler_output", None)
    return pooled if pooled is not None else output[0]


def _embedding_dimension(model: torch.nn.Module) -> int:
    projection = getattr(model, "text_projection", None)
    if isinstance(projection, torch.nn.Linear):
        return projection.out_features
    head = getattr(getattr(model, "text_model", None), "head", None)
    if isinstance(head, torch.nn.Linear):
        return head.out_features
    config = model.config
    return int(getattr(config, "projection_dim", None) or config.text_config.hidden_size)


class VisionTextEmbedder(TextEmbedder):
    modality = "text+image"
    modalities = ("text", "image")

    def __init__(self, name: str, tokenizer, image_processor, model: torch.nn.Module, layout: ModelLayout,
                 dtype: torch.dtype):
        text_config = model.config.text_config
        self._init_text(name, tokenizer, model, layout, dtype, text_config=text_config,
                        vocab_size=int(text_config.vocab_size))
        self.dense = []
        self.image_processor = image_processor
        self.dimension = _embedding_dimension(model)
        self.fixed_length = getattr(model.config, "model_type", "") in _FIXED_LENGTH_TEXT
        self._attention_mask = "attention_mask" in getattr(tokenizer, "model_input_names", ["attention_mask"])
        self.patch_size = int(getattr(model.config.vision_config, "patch_size", 16) or 16)
        self.image = ImageTower(self)

    def tower(self, modality: str):
        return {"text": self, "image": self.image}.get(modality)

    def describe(self) -> dict:
        info = super().describe()
        info["pooling"] = ["model"]
        return info

    # --------------------------------------------------------------------- text
    def _forward_batch(self, rows: list[list[int]], prompt_lengths: list[int], outputs=None) -> np.ndarray:
        inputs = self._padded(rows, self.max_length if self.fixed_length else None)
        if not self._attention_mask:
            del inputs["attention_mask"]
        return _features(self.model.get_text_features(**inputs)).float().cpu().numpy()

    # ------------------------------------------------------------------- images
    def preprocess_image(self, image: Image.Image, param: str) -> ImageRow:
        """The model's own resize / crop / normalise (runs outside the model lock)."""
        try:
            features = self.image_processor(images=[image], return_tensors="np")
        except Exception as exc:  # noqa: BLE001 - the processor's errors are about this image
            raise InvalidRequest(f"{param} could not be preprocessed for this model: {exc}", param=param,
                                 code="invalid_image") from None
        arrays = {name: np.asarray(value) for name, value in features.items()}
        return ImageRow(arrays=arrays, tokens=self._image_tokens(arrays["pixel_values"]))

    def _image_tokens(self, pixel_values: np.ndarray) -> int:
        if pixel_values.ndim == 4:  # [1, channels, height, width]
            return max(1, (pixel_values.shape[2] // self.patch_size) * (pixel_values.shape[3] // self.patch_size))
        return int(pixel_values.shape[1])  # [1, patches, patch_dim]: already patchified (SigLIP 2)

    def forward_image_rows(self, rows: list[ImageRow]) -> np.ndarray:
        out = np.empty((len(rows), self.dimension), dtype=np.float32)
        with torch.inference_mode():
            for positions, arrays in stack_rows(rows):
                inputs = {name: self._tensor(array) for name, array in arrays.items()}
                out[positions] = _features(self.model.get_image_features(**inputs)).float().cpu().numpy()
        return out

    def _tensor(self, array: np.ndarray) -> torch.Tensor:
        tensor = torch.from_numpy(np.ascontiguousarray(array))
        if tensor.is_floating_point():
            tensor = tensor.to(self.dtype)
        return tensor.to(self.device)


class ImageTower:
    """The image side of a VisionTextEmbedder, shaped as the batcher and planner expect a model."""

    modality = "image"

    def __init__(self, owner: VisionTextEmbedder):
        self.owner = owner

    @property
    def name(self) -> str:
        return self.owner.name

    @property
    def dimension(self) -> int:
        return self.owner.dimension

    @property
    def lock(self):
        return self.owner.lock

    @property
    def overhead_tokens(self) -> int:
        return OVERHEAD_TOKENS.get(self.owner.device, OVERHEAD_TOKENS["cpu"])

    def forward_rows(self, rows: list[ImageRow], prompt_lengths: list[int], outputs=None) -> np.ndarray:
        return self.owner.forward_image_rows(rows)
