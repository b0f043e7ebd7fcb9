"""Dual-encoder vision-language models (CLIP, SigLIP, SigLIP 2, ...): texts and images in one space.

Texts go through the model's tokenizer and `get_text_features`, images
through its own processor and `get_image_features`, so both are exactly what
the model's authors compute. Recognised by a config with both a text and a
vision config, or a sentence-transformers directory whose first module is a
CLIPModel.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image
from transformers import AutoImageProcessor, AutoModel, AutoProcessor, AutoTokenizer

from ..capabilities import EMBED_IMAGE, EMBED_TEXT
from ..errors import InvalidInput
from ..layout import dual_encoder_dir, dual_encoder_layout
from ..outputs import BatchOutput
from ..requests import DEFAULT_EMBED, EmbedRequest
from ..rows import ImageRow, Prepared, TextRow, pad_right, stack_rows
from ..text_inputs import TextInputs
from .base import TextFamily, preprocess_image

# Text towers that pool the last position and were trained on text padded to the
# full context, so the pooled position is a pad token: pad to it here too, as the
# model cards tell users to (padding="max_length").
FIXED_LENGTH_TEXT = {"siglip", "siglip2"}
# The most elongated image a shortest-edge processor is given (see DualEncoderModel._bounded).
MAX_ASPECT = 8


def is_dual_encoder(model: torch.nn.Module) -> bool:
    return callable(getattr(model, "get_text_features", None)) and callable(getattr(model, "get_image_features", None))


def features_of(output) -> torch.Tensor:
    """transformers 5 returns a ModelOutput whose pooler_output is projected; 4.x a tensor."""
    if isinstance(output, torch.Tensor):
        return output
    pooled = getattr(output, "pooler_output", None)
    return pooled if pooled is not None else output[0]


def embedding_dimension(model: torch.nn.Module) -> int:
    projection = getattr(model, "text_projection", None)
    if isinstance(projection, torch.nn.Linear):
        return projection.out_features
    head = getattr(getattr(model, "text_model", None), "head", None)
    if isinstance(head, torch.nn.Linear):
        return head.out_features
    config = model.config
    return int(getattr(config, "projection_dim", None) or config.text_config.hidden_size)


def _image_processor(model_dir: Path):
    """The model's processor where it has one: its call-time defaults (SigLIP 2's patch
    budget, for one) are part of how the model expects images; else the image processor."""
    try:
        processor = AutoProcessor.from_pretrained(str(model_dir))
    except (OSError, ValueError, TypeError):
        processor = None
    if processor is not None and hasattr(processor, "image_processor"):
        return processor
    return AutoImageProcessor.from_pretrained(str(model_dir))


def stacked_vectors(rows: list[ImageRow], dimension: int, method, dtype: torch.dtype, device) -> np.ndarray:
    """Preprocessed rows (an image's, a clip's) grouped by their arrays' shapes, each group through the model's
    `method` (get_image_features, get_audio_features): a vector per row, in order."""
    out = np.empty((len(rows), dimension), dtype=np.float32)
    for positions, arrays in stack_rows(rows):
        inputs = {}
        for name, array in arrays.items():
            tensor = torch.from_numpy(np.ascontiguousarray(array))
            inputs[name] = (tensor.to(dtype) if tensor.is_floating_point() else tensor).to(device)
        out[positions] = features_of(method(**inputs)).float().cpu().numpy()
    return out


class DualEncoderModel(TextFamily):
    family = "dual-encoder"
    capabilities = frozenset({EMBED_TEXT, EMBED_IMAGE})
    kinds = ("text", "image")

    def __init__(self, name: str, tokenizer, image_processor, model: torch.nn.Module, layout, dtype: torch.dtype):
        super().__init__(name, dtype)
        self.model = model
        self.layout = layout
        text_config = model.config.text_config
        self.text = TextInputs(name, tokenizer, layout, text_config, int(text_config.vocab_size))
        self.max_length = self.text.max_length
        self.tokenizer = tokenizer
        self.image_processor = image_processor
        self.dimension = embedding_dimension(model)
        self.fixed_length = getattr(model.config, "model_type", "") in FIXED_LENGTH_TEXT
        self._attention_mask = "attention_mask" in getattr(tokenizer, "model_input_names", ["attention_mask"])
        self.patch_size = int(getattr(model.config.vision_config, "patch_size", 16) or 16)

    # ------------------------------------------------------------ recognition
    @classmethod
    def detect(cls, path: Path) -> bool:
        return dual_encoder_dir(path) is not None

    @classmethod
    def load(cls, path: Path, name: str, dtype: torch.dtype, options=None) -> DualEncoderModel:
        model_dir = dual_encoder_dir(path)
        tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
        image_processor = _image_processor(model_dir)
        model = AutoModel.from_pretrained(str(model_dir), dtype=dtype)
        if not is_dual_encoder(model):
            raise ValueError(
                f"{type(model).__name__} has a vision config but no get_text_features / "
                "get_image_features: only dual encoders (CLIP, SigLIP, ...) can serve embeddings"
            )
        model.eval().requires_grad_(False)
        return cls(name, tokenizer, image_processor, model, dual_encoder_layout(path, model_dir), dtype)

    def summary(self) -> str:
        return (
            f"text+image, {self.model.config.model_type}: dim={self.dimension} max_tokens={self.max_length} "
            f"dtype={self.dtype}"
        )

    # ------------------------------------------------------------ preparation
    def prepare_image(self, image: Image.Image, param: str, request: EmbedRequest = DEFAULT_EMBED) -> ImageRow:
        """The model's own resize / crop / normalise (runs outside the model lock)."""
        self.refuse_instruction(request.instruction)
        image = self._bounded(image, param)
        features = preprocess_image(self.image_processor, image, param)
        arrays = {name: np.asarray(value) for name, value in features.items()}
        return ImageRow(arrays=arrays, tokens=self._image_tokens(arrays["pixel_values"]))

    def _bounded(self, image: Image.Image, param: str) -> Image.Image:
        """Shortest-edge processors (CLIP's) scale the short side up to their size before anything else:
        a 1 x 100000 strip would become 224 x 22,400,000 pixels, gigabytes, before the centre crop keeps
        224 x 224 of it. Only the middle of such a strip reaches the model, so its far ends are cut off
        first, keeping at most MAX_ASPECT:1 around the centre. A processor that would keep the whole
        strip (no centre crop) refuses it instead."""
        processor = getattr(self.image_processor, "image_processor", self.image_processor)
        size = getattr(processor, "size", None)
        shortest = size.get("shortest_edge") if isinstance(size, dict) else getattr(size, "shortest_edge", None)
        width, height = image.size
        if not shortest or max(width, height) <= MAX_ASPECT * min(width, height):
            return image
        if not getattr(processor, "do_center_crop", False):
            raise InvalidInput(
                f"{param} is {width} x {height} pixels; this model's processor scales its short "
                f"side up to {shortest}, so its aspect ratio may be at most {MAX_ASPECT}:1",
                param=param,
                code="image_too_large",
            )
        keep = MAX_ASPECT * min(width, height)
        if width > height:
            left = (width - keep) // 2
            return image.crop((left, 0, left + keep, height))
        top = (height - keep) // 2
        return image.crop((0, top, width, top + keep))

    def _image_tokens(self, pixel_values: np.ndarray) -> int:
        if pixel_values.ndim == 4:  # [1, channels, height, width]
            return max(1, (pixel_values.shape[2] // self.patch_size) * (pixel_values.shape[3] // self.patch_size))
        return int(pixel_values.shape[1])  # [1, patches, patch_dim]: already patchified (SigLIP 2)

    # ---------------------------------------------------------------- forward
    def forward(self, kind: str, rows: list, outputs: frozenset[str]) -> BatchOutput:
        if kind == "image":
            return BatchOutput(dense=self._image_vectors(rows))
        return BatchOutput(dense=self._text_vectors(rows))

    def _text_vectors(self, rows: list[TextRow]) -> np.ndarray:
        input_ids, mask = pad_right(rows, self.text.pad_id, self.max_length if self.fixed_length else None)
        inputs = {"input_ids": torch.from_numpy(input_ids).to(self.device)}
        if self._attention_mask:
            inputs["attention_mask"] = torch.from_numpy(mask).to(self.device)
        return features_of(self.model.get_text_features(**inputs)).float().cpu().numpy()

    def _image_vectors(self, rows: list[ImageRow]) -> np.ndarray:
        return stacked_vectors(rows, self.dimension, self.model.get_image_features, self.dtype, self.device)

    def warmup_inputs(self) -> list[tuple[str, Prepared]]:
        image = self.prepare_image(Image.new("RGB", (64, 48), (127, 127, 127)), "warm-up")
        return [
            ("text", Prepared(rows=self.text.tokenize(["warm-up"]).rows + [self.text.longest_row()])),
            ("image", Prepared(rows=[image])),
        ]

    # -------------------------------------------------------------- lifecycle
    def modules(self) -> list[torch.nn.Module]:
        return [self.model]

    def describe(self) -> dict:
        return {
            **super().describe(),
            "modality": "text+image",
            "modalities": ["text", "image"],
            "outputs": ["dense"],
            "dimension": self.dimension,
            "max_input_tokens": self.max_length,
            "pooling": ["model"],
            "prompts": sorted(self.layout.prompts),
            "default_prompt_name": self.layout.default_prompt_name,
        }
