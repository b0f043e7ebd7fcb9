"""Vision-language embedders in GME's recipe (gme-Qwen2-VL-2B/7B-Instruct): a text, an image, or both
together become one vector, the last token's hidden state of a Qwen2-VL.

As `gme_inference.py` (GmeQwen2VL) computes it:

- one prompt per input: `<|im_start|>system\\n{instruction}<|im_end|>\\n<|im_start|>user\\n{image}{text}
  <|im_end|>\\n<|im_start|>assistant\\n<|endoftext|>`, the image part being `<|vision_start|><|image_pad|>
  <|vision_end|>` (the pad expanded to one token per merged image patch, as Qwen2-VL's processor does);
  a caller's instruction applies to queries only, documents always get "You are a helpful assistant.";
- images: RGB, resized by GME's `smart_resize` (factor 28, 4 to 16384 x 28 x 28 pixels, aspect at most
  200), then the model's image processor with min/max pixels of VLM_MIN/MAX_IMAGE_TOKENS x 28 x 28;
- token embeddings, the vision tower's outputs written at the image-pad positions, the language model over
  them with the attention mask and no position ids, the last non-padding token's hidden state.

GME passes no position ids to the language model. With the transformers it pins (< 4.52),
`Qwen2VLForConditionalGeneration.model` was the text decoder alone, which then numbers positions
0..T-1 on all three M-RoPE axes (text-style positions, not the 3-D image grid that generation uses);
transformers 5's `Qwen2VLTextModel` (`model.model.language_model`) does the same when given none,
so that is what runs here. Inputs are cut at VLM_MAX_LENGTH tokens from the right, as the recipe's
processor call does; an input whose image tokens alone would be cut is a 400.

Qwen2.5-VL checkpoints in the same recipe load the same way.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from transformers import AutoImageProcessor, AutoModelForImageTextToText, AutoTokenizer

from ..capabilities import EMBED_IMAGE, EMBED_INTERLEAVED, EMBED_TEXT
from ..errors import InvalidInput
from ..layout import model_config
from ..outputs import BatchOutput
from ..requests import DEFAULT_EMBED, EmbedRequest
from ..rows import MultimodalRow, Prepared, pad_right
from ..text_inputs import pad_id_of
from .base import ServedModel, preprocess_image

DEFAULT_INSTRUCTION = "You are a helpful assistant."
MODEL_TYPES = {"qwen2_vl", "qwen2_5_vl"}

# gme_inference.fetch_image's resize (copied there from qwen_vl_utils), applied before the processor's.
IMAGE_FACTOR = 28
FETCH_MIN_PIXELS = 4 * 28 * 28
FETCH_MAX_PIXELS = 16384 * 28 * 28
MAX_RATIO = 200


def smart_resize(
    height: int,
    width: int,
    factor: int = IMAGE_FACTOR,
    min_pixels: int = FETCH_MIN_PIXELS,
    max_pixels: int = FETCH_MAX_PIXELS,
) -> tuple[int, int]:
    """Both sides divisible by `factor`, the area within [min_pixels, max_pixels], the aspect kept, at most 200:1."""
    h_bar = max(factor, round(height / factor) * factor)
    w_bar = max(factor, round(width / factor) * factor)
    if h_bar * w_bar > max_pixels:
        beta = math.sqrt((height * width) / max_pixels)
        h_bar = math.floor(height / beta / factor) * factor
        w_bar = math.floor(width / beta / factor) * factor
    elif h_bar * w_bar < min_pixels:
        beta = math.sqrt(min_pixels / (height * width))
        h_bar = math.ceil(height * beta / factor) * factor
        w_bar = math.ceil(width * beta / factor) * factor
    if max(h_bar, w_bar) / min(h_bar, w_bar) > MAX_RATIO:
        if h_bar > w_bar:
            h_bar = w_bar * MAX_RATIO
        else:
            w_bar = h_bar * MAX_RATIO
    return h_bar, w_bar


class VLMEmbedder(ServedModel):
    family = "gme"
    capabilities = frozenset({EMBED_TEXT, EMBED_IMAGE, EMBED_INTERLEAVED})
    # Texts, images and fused inputs are one kind of row: they share passes.
    kinds = ("multimodal",)

    def __init__(
        self, name: str, tokenizer, image_processor, model: torch.nn.Module, max_length: int, dtype: torch.dtype
    ):
        super().__init__(name, dtype)
        self.model = model
        self.tokenizer = tokenizer
        self.image_processor = image_processor
        self.max_length = max_length
        config = model.config
        self.image_token_id = int(config.image_token_id)
        self.image_token = tokenizer.convert_ids_to_tokens(self.image_token_id)
        self.merge_size = int(getattr(image_processor, "merge_size", 2))
        text_config = getattr(config, "text_config", config)
        self.dimension = int(text_config.hidden_size)
        self.pad_id = pad_id_of(tokenizer)

    # ------------------------------------------------------------ recognition
    @classmethod
    def detect(cls, path: Path) -> bool:
        return model_config(path).get("model_type") in MODEL_TYPES

    @classmethod
    def load(cls, path: Path, name: str, dtype: torch.dtype, options=None) -> VLMEmbedder:
        tokenizer = AutoTokenizer.from_pretrained(str(path))
        # GME counts pixels in image tokens of 28 x 28 (Qwen2-VL's 14-pixel patches merged 2 x 2).
        image_processor = AutoImageProcessor.from_pretrained(
            str(path),
            min_pixels=options.vlm_min_image_tokens * 28 * 28,
            max_pixels=options.vlm_max_image_tokens * 28 * 28,
        )
        model = AutoModelForImageTextToText.from_pretrained(str(path), dtype=dtype)
        model.eval().requires_grad_(False)
        if getattr(model.config, "image_token_id", None) is None:
            raise ValueError("the model's config has no image_token_id")
        return cls(name, tokenizer, image_processor, model, options.vlm_max_length, dtype)

    def summary(self) -> str:
        return (
            f"text+image+fused, {self.model.config.model_type}: dim={self.dimension} "
            f"max_tokens={self.max_length} dtype={self.dtype}"
        )

    def kind_of(self, modality: str) -> str:
        return "multimodal"

    # ------------------------------------------------------------ preparation
    def prepare_texts(self, texts: list[str], request: EmbedRequest = DEFAULT_EMBED) -> Prepared:
        prompt, truncate, field = request.prompt, request.truncate, request.field
        if prompt is not None or request.prompt_name is not None:
            raise InvalidInput(
                f"the model {self.name!r} takes an instruction (and is_query), not a prompt",
                param="prompt_name" if prompt is None else "prompt",
            )
        if request.truncation_direction != "right" and truncate:
            # The text sits inside a chat template: cutting the start would cut the instruction.
            raise InvalidInput(
                f"the model {self.name!r} truncates inputs at their end only", param="truncation_direction"
            )
        limit = self.max_length if request.max_tokens is None else min(request.max_tokens, self.max_length)
        prompts = [self._prompt(text, 0, request) for text in texts]
        encoded = self.tokenizer(
            prompts,
            add_special_tokens=True,
            truncation=truncate,
            max_length=limit if truncate else None,
            padding=False,
            return_attention_mask=False,
        )["input_ids"]
        for index, ids in enumerate(encoded):
            if len(ids) > limit:
                raise InvalidInput(
                    f"{field}[{index}] is {len(ids)} tokens with GME's prompt, over the limit of {limit} "
                    "(VLM_MAX_LENGTH or the request's); shorten it or send truncate=true",
                    param=f"{field}[{index}]",
                    code="input_too_long",
                )
        return Prepared(rows=[MultimodalRow(ids) for ids in encoded])

    def prepare_image(self, image: Image.Image, param: str, request: EmbedRequest = DEFAULT_EMBED) -> MultimodalRow:
        return self.prepare_fused(None, image, param, request)

    def prepare_fused(
        self, text: str | None, image: Image.Image, param: str, request: EmbedRequest = DEFAULT_EMBED
    ) -> MultimodalRow:
        """GME's resize, the processor's patches, and the prompt with one pad per image token."""
        height, width = smart_resize(image.height, image.width)
        resized = image.resize((width, height))
        features = preprocess_image(self.image_processor, resized, param)
        arrays = {
            "pixel_values": np.asarray(features["pixel_values"]),
            "image_grid_thw": np.asarray(features["image_grid_thw"]),
        }
        tokens = int(arrays["image_grid_thw"].prod()) // (self.merge_size**2)
        prompt = self._prompt(text, tokens, request)
        ids = self.tokenizer(
            prompt, add_special_tokens=True, truncation=True, max_length=self.max_length, return_attention_mask=False
        )["input_ids"]
        if sum(1 for token in ids if token == self.image_token_id) != tokens:
            raise InvalidInput(
                f"{param} takes {tokens} image tokens, more than fit in VLM_MAX_LENGTH "
                f"({self.max_length}) with the prompt",
                param=param,
                code="input_too_long",
            )
        return MultimodalRow(ids, arrays)

    def _prompt(self, text: str | None, image_tokens: int, request: EmbedRequest) -> str:
        instruction = request.instruction
        if request.is_query is False or instruction is None:
            instruction = DEFAULT_INSTRUCTION
        image = f"<|vision_start|>{self.image_token * image_tokens}<|vision_end|>" if image_tokens else ""
        return (
            f"<|im_start|>system\n{instruction}<|im_end|>\n<|im_start|>user\n{image}{text or ''}<|im_end|>\n"
            "<|im_start|>assistant\n<|endoftext|>"
        )

    # ---------------------------------------------------------------- forward
    def forward(self, kind: str, rows: list[MultimodalRow], outputs: frozenset[str]) -> BatchOutput:
        input_ids, mask = pad_right(rows, self.pad_id)
        ids = torch.from_numpy(input_ids).to(self.device)
        attention_mask = torch.from_numpy(mask).to(self.device)
        core = self.model.model
        embeds = core.get_input_embeddings()(ids)
        images = [row.image for row in rows if row.image is not None]
        if images:
            # The vision tower runs once per pass, over every image of the pass, in row order:
            # the order the image-pad positions take row by row.
            pixels = torch.from_numpy(np.concatenate([image["pixel_values"] for image in images])).to(self.device)
            grid = torch.from_numpy(np.concatenate([image["image_grid_thw"] for image in images])).to(self.device)
            features = core.get_image_features(pixels.to(self.dtype), grid)
            pooled = features.pooler_output if hasattr(features, "pooler_output") else features
            image_embeds = torch.cat(list(pooled)) if isinstance(pooled, (list, tuple)) else pooled
            image_mask = (ids == self.image_token_id).unsqueeze(-1).expand_as(embeds)
            embeds = embeds.masked_scatter(image_mask, image_embeds.to(embeds.dtype))
        hidden = core.language_model(
            inputs_embeds=embeds, attention_mask=attention_mask, position_ids=None, use_cache=False
        ).last_hidden_state
        last = torch.tensor([len(row) - 1 for row in rows], device=self.device)
        pooled = hidden[torch.arange(len(rows), device=self.device), last]
        return BatchOutput(dense=pooled.float().cpu().numpy())

    def warmup_inputs(self) -> list[tuple[str, Prepared]]:
        text = self.prepare_texts(["warm-up"]).rows
        image = self.prepare_image(Image.new("RGB", (64, 48), (127, 127, 127)), "warm-up")
        return [("multimodal", Prepared(rows=text + [image]))]

    # -------------------------------------------------------------- lifecycle
    def modules(self) -> list[torch.nn.Module]:
        return [self.model]

    def describe(self) -> dict:
        return {
            **super().describe(),
            "modality": "text+image",
            "modalities": ["text", "image", "text+image"],
            "outputs": ["dense"],
            "dimension": self.dimension,
            "max_input_tokens": self.max_length,
            "pooling": ["lasttoken"],
            "prompts": [],
            "default_prompt_name": None,
            "default_instruction": DEFAULT_INSTRUCTION,
        }
