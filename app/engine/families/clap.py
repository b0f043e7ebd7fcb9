"""Text-audio dual encoders (CLAP): texts and sounds in one space, as the model card computes them.

Texts go through the model's tokenizer and `get_text_features`, audio through its feature extractor
(`ClapFeatureExtractor`: log-mel spectrogram, its own padding and truncation settings) and
`get_audio_features`. Recognised by a config with both a text and an audio config (`ClapModel`'s).

Two choices the model card leaves to chance or to the caller are fixed here:

- CLAP hears `nb_max_samples` (10 s at 48 kHz for LAION's checkpoints); a longer clip is cut by the feature
  extractor at a random offset (`rand_trunc`) or summarised from random chunks (`fusion`), so the same file
  would embed differently each time and never be cacheable. The service keeps the clip's first window:
  what the feature extractor computes when its random offset is 0. Clips within the window are untouched.
- sentence-transformers 6 loads CLAP too, but passes the audio with `padding=True`, which replaces CLAP's
  own `repeatpad` by zero padding: a short clip embeds differently from the model card's (cosine about 0.98
  on a tiny CLAP). The model card is the reference here.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from transformers import AutoModel, AutoProcessor, AutoTokenizer

from ..capabilities import EMBED_AUDIO, EMBED_TEXT
from ..errors import InvalidInput
from ..layout import dual_encoder_layout, model_config
from ..outputs import BatchOutput
from ..requests import DEFAULT_EMBED, EmbedRequest
from ..rows import ImageRow, Prepared, TextRow, pad_right
from ..text_inputs import TextInputs
from .base import TextFamily
from .dual_encoder import embedding_dimension, features_of, stacked_vectors


def is_text_audio_model(path: Path) -> bool:
    """A text tower and an audio tower, each projected into one space (CLAP's `projection_dim`): not a model whose
    audio tower feeds its text model's tokens (EmbeddingGemma 2), which the multimodal family serves."""
    config = model_config(path)
    return "text_config" in config and "audio_config" in config and "projection_dim" in config


class AudioRow(ImageRow):
    """One clip as the feature extractor prepared it (its spectrogram and flags, batch axis 1); its cost is the
    patches the audio tower attends over."""


class ClapModel(TextFamily):
    family = "clap"
    capabilities = frozenset({EMBED_TEXT, EMBED_AUDIO})
    kinds = ("text", "audio")

    def __init__(self, name: str, tokenizer, processor, model: torch.nn.Module, layout, dtype: torch.dtype):
        super().__init__(name, dtype)
        self.model = model
        self.layout = layout
        text_config = model.config.text_config
        self.text = TextInputs(name, tokenizer, layout, text_config, int(text_config.vocab_size))
        self.max_length = self.text.max_length
        self.tokenizer = tokenizer
        self.features = processor.feature_extractor
        self.sampling_rate = int(self.features.sampling_rate)
        self.audio_window = float(self.features.nb_max_samples) / self.sampling_rate
        self.dimension = embedding_dimension(model)
        audio = model.config.audio_config
        self.audio_tokens = max(1, (int(audio.spec_size) // int(audio.patch_size)) ** 2)

    # ------------------------------------------------------------ recognition
    @classmethod
    def detect(cls, path: Path) -> bool:
        return is_text_audio_model(path)

    @classmethod
    def load(cls, path: Path, name: str, dtype: torch.dtype, options=None) -> ClapModel:
        tokenizer = AutoTokenizer.from_pretrained(str(path))
        processor = AutoProcessor.from_pretrained(str(path))
        model = AutoModel.from_pretrained(str(path), dtype=dtype)
        if not callable(getattr(model, "get_audio_features", None)) or not hasattr(processor, "feature_extractor"):
            raise ValueError(
                f"{type(model).__name__} has an audio config but no get_audio_features or feature extractor: only "
                "text-audio dual encoders (CLAP) can serve audio embeddings"
            )
        model.eval().requires_grad_(False)
        return cls(name, tokenizer, processor, model, dual_encoder_layout(path, path), dtype)

    def summary(self) -> str:
        return (
            f"text+audio, {self.model.config.model_type}: dim={self.dimension} max_tokens={self.max_length} "
            f"audio={self.sampling_rate} Hz, {self.audio_window:g} s dtype={self.dtype}"
        )

    # ------------------------------------------------------------ preparation
    def prepare_audio(self, waveform: np.ndarray, param: str, request: EmbedRequest = DEFAULT_EMBED) -> AudioRow:
        """The feature extractor's spectrogram of the clip's first window (the decoder read no more)."""
        self.refuse_instruction(request.instruction)
        clip = waveform[: self.features.nb_max_samples]
        try:
            features = self.features(clip, sampling_rate=self.sampling_rate, return_tensors="np")
        except Exception as exc:  # noqa: BLE001 - the feature extractor's errors are about this clip
            raise InvalidInput(
                f"{param} could not be preprocessed for this model: {exc}", param=param, code="invalid_audio"
            ) from None
        arrays = {name: np.asarray(value) for name, value in features.items()}
        return AudioRow(arrays=arrays, tokens=self.audio_tokens)

    # ---------------------------------------------------------------- forward
    def forward(self, kind: str, rows: list, outputs: frozenset[str]) -> BatchOutput:
        if kind == "audio":
            return BatchOutput(dense=self._audio_vectors(rows))
        return BatchOutput(dense=self._text_vectors(rows))

    def _text_vectors(self, rows: list[TextRow]) -> np.ndarray:
        input_ids, mask = pad_right(rows, self.text.pad_id)
        inputs = {
            "input_ids": torch.from_numpy(input_ids).to(self.device),
            "attention_mask": torch.from_numpy(mask).to(self.device),
        }
        return features_of(self.model.get_text_features(**inputs)).float().cpu().numpy()

    def _audio_vectors(self, rows: list[AudioRow]) -> np.ndarray:
        return stacked_vectors(rows, self.dimension, self.model.get_audio_features, self.dtype, self.device)

    def warmup_inputs(self) -> list[tuple[str, Prepared]]:
        second = np.zeros(self.sampling_rate, dtype=np.float32)
        return [
            ("text", Prepared(rows=self.text.tokenize(["warm-up"]).rows + [self.text.longest_row()])),
            ("audio", Prepared(rows=[self.prepare_audio(second, "warm-up")])),
        ]

    # -------------------------------------------------------------- lifecycle
    def modules(self) -> list[torch.nn.Module]:
        return [self.model]

    def describe(self) -> dict:
        return {
            **super().describe(),
            "modality": "text+audio",
            "modalities": ["text", "audio"],
            "outputs": ["dense"],
            "dimension": self.dimension,
            "max_input_tokens": self.max_length,
            "sampling_rate": self.sampling_rate,
            "max_audio_seconds": self.audio_window,
            "pooling": ["model"],
            "prompts": sorted(self.layout.prompts),
            "default_prompt_name": self.layout.default_prompt_name,
        }
