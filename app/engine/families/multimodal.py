"""sentence-transformers 6 multimodal directories: a `Transformer` whose modality config maps each modality it
takes (text, image, audio, video) to a method of the model, then whatever modules follow. Two shapes ship:

- the method gives the vector itself (`get_text_features`, `get_image_features`, ...), then `Dense`/`Normalize`:
  how sentence-transformers 6 saves CLIP, SigLIP and the other dual encoders;
- the method gives token embeddings (the model's `forward`, the processor having put each image's, clip's or
  frame's soft tokens among the text's), then `Pooling` and `Normalize`: EmbeddingGemma 2, one space for all four.

sentence-transformers loads the directory in the master; each input is preprocessed alone by its own
`preprocess` (the model's processor, with the prompt for texts), off the event loop; each pass pads the rows of
several requests together as the processor pads a batch (feature_batches.py) and runs sentence-transformers'
modules on them, so answers equal `SentenceTransformer.encode` while the engine keeps cross-request batching,
preload and the cache. These models run eager (no compile targets): their work is the model's own methods.

A CLAP directory is served by clap.py even when sentence-transformers saved it: transformers 5's
`ClapProcessor`, which sentence-transformers calls, cuts every clip to 128 samples (docs/audio.md).
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch

from ..capabilities import EMBED_AUDIO, EMBED_IMAGE, EMBED_INTERLEAVED, EMBED_TEXT, EMBED_VIDEO
from ..errors import InvalidInput
from ..feature_batches import collate, split_rows
from ..layout import json_list, json_object, module_kind
from ..outputs import BatchOutput
from ..requests import DEFAULT_EMBED, SIDE_PROMPT_NAMES, EmbedRequest
from ..rows import FeatureRow, Prepared
from .base import ServedModel, named_prompt, refuse_long, sentence_transformers_model
from .dual_encoder import FIXED_LENGTH_TEXT

SERVED_MODALITIES = {"text": EMBED_TEXT, "image": EMBED_IMAGE, "audio": EMBED_AUDIO, "video": EMBED_VIDEO}
# What the first module may give: the sentence vector itself, or token vectors that a later Pooling module pools
MODULE_OUTPUTS = ("sentence_embedding", "token_embeddings")
# What an image or a clip costs when its processor says nothing of tokens
DEFAULT_MEDIA_TOKENS = 256


def declared_modalities(path: Path) -> list[str]:
    """The modalities a sentence-transformers 6 directory's first module (a Transformer that gives the sentence
    vector itself, or token vectors a Pooling module after it pools) declares; [] for anything else."""
    modules = sorted(json_list(path / "modules.json"), key=lambda module: module.get("idx", 0))
    if not modules or module_kind(str(modules[0].get("type", ""))) != "Transformer":
        return []
    config = json_object(path / str(modules[0].get("path", "")) / "sentence_bert_config.json")
    declared = config.get("modality_config") or {}
    output = config.get("module_output_name")
    if output not in MODULE_OUTPUTS or not isinstance(declared, dict):
        return []
    pooled = any(module_kind(str(module.get("type", ""))) == "Pooling" for module in modules[1:])
    if output == "token_embeddings" and not pooled:
        return []
    return [str(name) for name in declared]


class MultimodalModel(ServedModel):
    family = "sentence-transformers-multimodal"

    def __init__(self, name: str, dtype: torch.dtype, encoder, stack: list):
        super().__init__(name, dtype)
        self.encoder = encoder
        self.stack = stack
        self.transformer = stack[0]
        self.modalities = [m for m in self.transformer.modalities if m in SERVED_MODALITIES]
        # sentence-transformers' message modality (a chat template in the processor) takes several modalities in
        # one input: a text and an image together, as vision-language embedders do
        self.mixes = "message" in self.transformer.modalities and "image" in self.modalities
        self.capabilities = frozenset(SERVED_MODALITIES[m] for m in self.modalities) | (
            {EMBED_INTERLEAVED} if self.mixes else set()
        )
        self.kinds = tuple(self.modalities) + (("message",) if self.mixes else ())
        processor = self.transformer.processor
        self.tokenizer = getattr(processor, "tokenizer", processor)
        self.pad_id = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        self.padding_side = getattr(self.tokenizer, "padding_side", "right")
        self.max_length = int(min(self.transformer.max_seq_length or 1 << 30, 1 << 30))
        # what the model declares that no route takes yet ("message" is taken: several modalities in one input)
        self.unserved = [str(m) for m in self.transformer.modalities if m not in SERVED_MODALITIES and m != "message"]
        extractor = getattr(processor, "feature_extractor", None)
        self.sampling_rate = int(getattr(extractor, "sampling_rate", 16_000) or 16_000)
        self.audio_window = heard_seconds(extractor, self.sampling_rate)
        self.architecture = type(self.transformer.model).__name__
        # SigLIP's text tower pools the last position and was trained on text padded to its full context: padded
        # to it here as its model card says (sentence-transformers pads to the batch's longest, so the same text
        # embeds differently beside a longer one: cosine 0.91 on a tiny SigLIP)
        fixed = getattr(self.transformer.model.config, "model_type", "") in FIXED_LENGTH_TEXT
        self.text_width = self.max_length if fixed else 0
        # What the stack gives, from a pass rather than the modules' sizes: a Pooling module reports the hidden
        # size, which EmbeddingGemma 2's projection changes
        kind, prepared = next(self._warmup_inputs())  # one input prepared, not every modality's
        self.dimension = int(self.forward(kind, prepared.rows, prepared.outputs).dense.shape[1])

    @classmethod
    def detect(cls, path: Path) -> bool:
        return any(modality != "text" for modality in declared_modalities(path))

    @classmethod
    def load(cls, path: Path, name: str, dtype: torch.dtype, options=None) -> MultimodalModel:
        try:
            encoder, stack = sentence_transformers_model("SentenceTransformer", path, dtype)
        except ImportError as exc:
            if "torchvision" not in str(exc).lower():
                raise
            # A processor with a video processor (EmbeddingGemma 2's) does not load without torchvision, whatever
            # modality is asked for
            raise ValueError(
                f"{path}: its processor needs torchvision (the `video` extra: pip install 'embedding-service[video]', "
                f"with the torchvision release built for this torch; docs/models.md, Audio and video): {exc}"
            ) from None
        if not any(m in SERVED_MODALITIES for m in stack[0].modalities):
            raise ValueError(
                f"{path}: the model takes {', '.join(map(str, stack[0].modalities))}; this service serves "
                f"{', '.join(SERVED_MODALITIES)}"
            )
        return cls(name, dtype, encoder, stack)

    def kind_of(self, modality: str) -> str:
        return modality

    # ------------------------------------------------------------ preparation
    def prompt_text(self, prompt_name: str | None) -> str:
        return named_prompt(self.name, self.encoder.prompts, prompt_name)

    def _prompt(self, request: EmbedRequest) -> str:
        """As encode, encode_query and encode_document choose one: the request's, its side's, the default."""
        if request.prompt is not None:
            return request.prompt
        if request.prompt_name is not None:
            return self.prompt_text(request.prompt_name)
        side = request.side
        name = next((n for n in SIDE_PROMPT_NAMES.get(side or "", ()) if n in self.encoder.prompts), None)
        return self.prompt_text(name or self.encoder.default_prompt_name)

    def prepare_texts(self, texts: list[str], request: EmbedRequest = DEFAULT_EMBED) -> Prepared:
        self.refuse_instruction(request.instruction)
        if "text" not in self.modalities:
            raise InvalidInput(f"the model {self.name!r} does not take texts", param=request.field)
        if request.truncation_direction != "right":
            raise InvalidInput(
                f"the model {self.name!r} cuts an over-long text at its end, as sentence-transformers does; "
                "truncation_direction must be right",
                param="truncation_direction",
            )
        prompt = self._prompt(request)
        limit = min(self.max_length, request.max_tokens) if request.max_tokens else self.max_length
        if not request.truncate:
            refuse_long(self.tokenizer, texts, prompt, limit, request.field)
        # The limit always: a processor's own default may be longer than the model's positions (sentence-transformers
        # 6.3 fails on a 100-token text for CLIP, whose processor passes max_length 128 to its tokenizer).
        features = self.encoder.preprocess(texts, prompt=prompt or None, max_length=limit)
        return Prepared(rows=modality_rows(features), outputs=request.outputs)

    def prepare_image(self, image, param: str, request: EmbedRequest = DEFAULT_EMBED) -> FeatureRow:
        self.refuse_instruction(request.instruction)
        return self._one(image, param, "invalid_image")

    def prepare_audio(self, waveform, param: str, request: EmbedRequest = DEFAULT_EMBED) -> FeatureRow:
        self.refuse_instruction(request.instruction)
        return self._one(self._clip(waveform), param, "invalid_audio")

    def prepare_fused(self, text: str | None, image, param: str, request: EmbedRequest = DEFAULT_EMBED) -> FeatureRow:
        """A text and an image in one input, as sentence-transformers takes `{"text": ..., "image": ...}` (its
        message modality, through the processor's chat template), with the request's prompt."""
        return self.prepare_mixed(
            {"text": text, "image": image} if text is not None else {"image": image}, param, request
        )

    def prepare_mixed(self, parts: dict, param: str, request: EmbedRequest = DEFAULT_EMBED) -> FeatureRow:
        """Several modalities in one input (`parts`: a text, an image, a decoded clip, a decoded video), as
        sentence-transformers takes `{"text": ..., "video": ...}` (its message modality), with the request's
        prompt."""
        if not self.mixes:
            return super().prepare_mixed(parts, param, request)
        # A chat's system message (the instruction) is sentence-transformers' prompt for a message input: it adds
        # its prompt to a message as the system turn
        prompt = request.instruction if request.instruction is not None else self._prompt(request)
        item, kwargs = dict(parts), {}
        if "audio" in parts:
            item["audio"] = self._clip(parts["audio"])
        if "video" in parts:
            item["video"], kwargs = self._video(parts["video"])
        return self._one(item, param, "invalid_input", processing_kwargs=kwargs, prompt=prompt)

    def video_frames(self, info) -> list[int]:
        """The frames the model's video processor samples (as its preprocess does for an array video with this
        metadata), so that only they are decoded."""
        processor = self.transformer.processor.video_processor
        # the processor's own defaults merged with the directory's, as its preprocess merges them before sampling
        kwargs = processor._merge_and_standardize_kwargs(**self._video_kwargs())
        for name in ("input_data_format", "do_convert_rgb", "device", "video_metadata"):
            kwargs.pop(name, None)
        if not kwargs.pop("do_sample_frames", False):
            return list(range(info.total_frames))
        return sorted(int(index) for index in processor.sample_frames(metadata=video_metadata(info), **kwargs))

    def _video_kwargs(self) -> dict:
        configured = getattr(self.transformer, "processing_kwargs", None) or {}
        return {**configured.get("common", {}), **configured.get("video", {})}

    def prepare_video(self, video, param: str, request: EmbedRequest = DEFAULT_EMBED) -> FeatureRow:
        """The sampled frames, with the metadata of the video they came from (the processor's timestamps read
        it), preprocessed without sampling again."""
        self.refuse_instruction(request.instruction)
        item, kwargs = self._video(video)
        return self._one(item, param, "invalid_video", processing_kwargs=kwargs)

    def _clip(self, waveform) -> dict:
        return {"array": waveform, "sampling_rate": self.sampling_rate}

    def _video(self, video) -> tuple[dict, dict]:
        """A decoded video as sentence-transformers takes one (its frames and the stream's metadata), and the
        processing kwargs that keep its processor from sampling the already-sampled frames again."""
        item = {"array": video.frames, "video_metadata": video_metadata(video.info, video.indices)}
        return item, {"video": {**self._video_kwargs(), "do_sample_frames": False}}

    def _one(self, item, param: str, code: str, processing_kwargs: dict | None = None, prompt: str = "") -> FeatureRow:
        # An image's, clip's or frame's soft tokens are all placeholders the model fills: cutting the ids would
        # leave features without their slots, so a media input is never cut, and one too long is the caller's 400
        processing = {**(processing_kwargs or {}), "text": {"truncation": False}}
        try:
            features = self.transformer.preprocess([item], prompt=prompt or None, processing_kwargs=processing)
        except Exception as exc:  # noqa: BLE001 - the processor's errors are about this input
            raise InvalidInput(
                f"{param} could not be preprocessed for this model: {exc}", param=param, code=code
            ) from None
        row = modality_rows(features)[0]
        ids = row.arrays.get("input_ids")
        if ids is not None and len(ids) > self.max_length:
            raise InvalidInput(
                f"{param} takes {len(ids)} tokens (the model's tokens for each of its images, frames or audio "
                f"frames); this model reads at most {self.max_length}",
                param=param,
                code="input_too_long",
            )
        return FeatureRow(row.arrays, tokens=self._media_tokens(row), route=row.route)

    def _media_tokens(self, row: FeatureRow) -> int:
        """What a row costs the planner: its token ids (soft tokens included), the patches its vision tower attends
        over, or the spectrogram frames its audio tower reads, whichever is more."""
        ids = row.arrays.get("input_ids")
        tokens = len(ids) if ids is not None else 0
        pixels = row.arrays.get("pixel_values")
        vision = getattr(self.transformer.model.config, "vision_config", None)
        patch = int(getattr(vision, "patch_size", 0) or 0)
        if pixels is not None and pixels.ndim == 3 and patch:  # channels x height x width
            tokens = max(tokens, (pixels.shape[1] // patch) * (pixels.shape[2] // patch))
        elif pixels is not None and pixels.ndim == 2:  # patches x patch pixels
            tokens = max(tokens, pixels.shape[0])
        frames = row.arrays.get("pixel_values_videos")
        if frames is not None and frames.ndim >= 2:  # every frame's patches
            tokens = max(tokens, int(np.prod(frames.shape[:-1])))
        # an audio tower runs over every spectrogram frame before it pools them into soft tokens (EmbeddingGemma 2:
        # 100 frames a second, 25 soft tokens), and its first layers' activations grow with the frames
        spectrogram = row.arrays.get("input_features")
        if spectrogram is not None and spectrogram.ndim >= 2:
            tokens = max(tokens, spectrogram.shape[0])
        return tokens or DEFAULT_MEDIA_TOKENS

    # ---------------------------------------------------------------- forward
    def forward(self, kind: str, rows: list[FeatureRow], outputs: frozenset[str]) -> BatchOutput:
        """Rows of one modality as sentence-transformers' preprocess named it (`message` where the processor's chat
        template took the input) run together: the Transformer picks its method by it."""
        groups: dict[tuple, list[int]] = {}
        for position, row in enumerate(rows):
            groups.setdefault((row.route or kind, tuple(sorted(row.arrays))), []).append(position)
        passes = [
            (positions, self._pass(kind, modality, [rows[p] for p in positions]))
            for (modality, _), positions in groups.items()
        ]
        if len(passes) == 1:
            return BatchOutput(dense=passes[0][1])
        dense = np.empty((len(rows), passes[0][1].shape[1]), dtype=np.float32)
        for positions, vectors in passes:
            dense[positions] = vectors
        return BatchOutput(dense=dense)

    def _pass(self, kind: str, modality: str, rows: list[FeatureRow]) -> np.ndarray:
        features = {}
        width = self.text_width if kind == "text" else 0
        for name, array in collate(rows, self.pad_id, self.padding_side, width).items():
            tensor = torch.from_numpy(array)
            if tensor.is_floating_point():
                tensor = tensor.to(self.dtype)
            features[name] = tensor.to(self.device)
        features["modality"] = modality
        for module in self.stack:
            features = module(features)
        return features["sentence_embedding"].float().cpu().numpy()

    def warmup_inputs(self) -> list[tuple[str, Prepared]]:
        return list(self._warmup_inputs())

    def _warmup_inputs(self):
        """A small input of each modality, prepared as it is reached."""
        from PIL import Image

        if "text" in self.modalities:
            yield "text", self.prepare_texts(["warm-up"])
        if "image" in self.modalities:
            yield "image", Prepared(rows=[self.prepare_image(Image.new("RGB", (64, 48), (127,) * 3), "warm-up")])
        if "audio" in self.modalities:
            second = np.zeros(self.sampling_rate, dtype=np.float32)
            yield "audio", Prepared(rows=[self.prepare_audio(second, "warm-up")])
        if "video" in self.modalities:
            yield "video", Prepared(rows=[self.prepare_video(still_video(), "warm-up")])

    # -------------------------------------------------------------- lifecycle
    def modules(self) -> list[torch.nn.Module]:
        return list(self.stack)

    def summary(self) -> str:
        return (
            f"{'+'.join(self.modalities)} ({self.architecture}, sentence-transformers): dim={self.dimension} "
            f"max_tokens={self.max_length} modules={'+'.join(type(m).__name__ for m in self.stack)} dtype={self.dtype}"
        )

    def _audio_card(self) -> dict:
        if "audio" not in self.modalities:
            return {}
        return {"sampling_rate": self.sampling_rate, "max_audio_seconds": self.audio_window}

    def describe(self) -> dict:
        return {
            **super().describe(),
            "modality": "+".join(self.modalities),
            "modalities": list(self.modalities),
            **({"modalities_not_served": self.unserved} if self.unserved else {}),
            **self._audio_card(),
            "outputs": ["dense"],
            "dimension": self.dimension,
            "max_input_tokens": self.max_length,
            "pooling": ["model"],
            "prompts": sorted(self.encoder.prompts),
            "default_prompt_name": self.encoder.default_prompt_name,
            "architecture": self.architecture,
        }


def heard_seconds(extractor, rate: int) -> float | None:
    """How much of a clip the feature extractor keeps (None: all), so that no more is decoded: its window
    (CLAP's `nb_max_samples`, Whisper's `n_samples`), or the length it truncates to when called as
    sentence-transformers calls it (EmbeddingGemma 2's: max_length 480,000 samples, truncation on, 30 s)."""
    import inspect

    if extractor is None:
        return None
    for name in ("nb_max_samples", "n_samples"):
        if getattr(extractor, name, None):
            return float(getattr(extractor, name)) / rate
    parameters = inspect.signature(extractor.__call__).parameters
    length, truncation = parameters.get("max_length"), parameters.get("truncation")
    if length is None or not isinstance(length.default, int) or truncation is None or truncation.default is not True:
        return None
    return length.default / rate


def modality_rows(features: dict) -> list[FeatureRow]:
    """A row per input, each carrying the modality sentence-transformers' preprocess gave them (as its route)."""
    return split_rows(features, route=str(features.get("modality") or ""))


def video_metadata(info, indices=None):
    """transformers' VideoMetadata of a decoded stream's info (and the frames taken from it, when given)."""
    from transformers.video_utils import VideoMetadata

    return VideoMetadata(
        total_num_frames=info.total_frames,
        fps=info.fps,
        duration=info.duration,
        width=info.width,
        height=info.height,
        frames_indices=None if indices is None else list(indices),
    )


def still_video(frames: int = 2, fps: float = 1.0):
    """A short grey video, as a decoder gives one: its frames, their indices and the stream's info."""
    info = SimpleNamespace(total_frames=frames, fps=fps, duration=frames / fps, width=64, height=48)
    pixels = np.full((frames, 3, info.height, info.width), 127, dtype=np.uint8)
    return SimpleNamespace(frames=pixels, indices=tuple(range(frames)), info=info)
