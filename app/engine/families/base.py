"""The interface every model family implements, and what the engine builds on it.

A family is one module: it recognises a model directory (`detect`, reading
files only), loads it in the gunicorn master in its final dtype (`load`,
nothing run), turns a request's inputs into rows on the CPU (`prepare_*`,
raising the caller's 400s), runs one forward pass over a batch of rows of one
kind (`forward`, returning one `BatchOutput`), and describes itself. The
engine sees only this interface.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import ClassVar

import torch

from .. import token_views
from ..capabilities import DENSE, RERANK
from ..errors import InvalidInput
from ..outputs import BatchOutput
from ..planning import OVERHEAD_TOKENS
from ..requests import DEFAULT_EMBED, DEFAULT_SCORE, EmbedRequest, ScoreRequest
from ..rows import PairRow, Prepared
from ..text_inputs import WARMUP_TOKENS, TextInputs


def preprocess_image(processor, image, param: str):
    """The model's own image processor on one picture; what it refuses is the caller's 400 naming `param`."""
    try:
        return processor(images=[image], return_tensors="np")
    except Exception as exc:  # noqa: BLE001 - the processor's errors are about this image
        raise InvalidInput(
            f"{param} could not be preprocessed for this model: {exc}", param=param, code="invalid_image"
        ) from None


def sentence_transformers_model(kind: str, path: Path, dtype: torch.dtype):
    """sentence-transformers' `kind` (SparseEncoder, MultiVectorEncoder) loaded from `path` in its final dtype, for
    inference, and its module stack: the families that run its modules read the directory through it."""
    import sentence_transformers  # seconds of imports, paid only where such a model is served

    model = getattr(sentence_transformers, kind)(
        str(path), device="cpu", local_files_only=True, model_kwargs={"dtype": dtype}
    )
    model.eval().requires_grad_(False)
    return model, list(model.children())


def refuse_long(
    tokenizer, texts: list[str], prompt: str, limit: int, field: str, where: str = "", indices: list[int] | None = None
) -> None:
    """truncate=false for a family whose tokenising sentence-transformers does: the first text longer than `limit`
    tokens (with the prompt) is the caller's 400; `where` qualifies the limit (" on this side"); `indices` are the
    texts' places in the request, when they are some of its texts."""
    if not texts:
        return
    lengths = [len(ids) for ids in tokenizer([prompt + text for text in texts])["input_ids"]]
    for index, length in zip(indices if indices is not None else range(len(texts)), lengths, strict=True):
        if length > limit:
            raise InvalidInput(
                f"{field}[{index}] has {length} tokens; this model reads at most {limit}{where} (truncate to cut it)",
                param=f"{field}[{index}]",
                code="input_too_long",
            )


def named_prompt(model_name: str, prompts: dict, prompt_name: str | None) -> str:
    """A sentence-transformers model's prompt by name ("" for none), or the caller's 400 naming the ones it has."""
    if prompt_name is None:
        return ""
    if prompt_name not in prompts:
        known = ", ".join(sorted(prompts)) or "none"
        raise InvalidInput(
            f"the model {model_name!r} has no prompt named {prompt_name!r} (it has: {known})",
            param="prompt_name",
            code="unknown_prompt",
        )
    return prompts[prompt_name]


class ServedModel:
    """A loaded model of some family, as the engine serves it; `family` names which."""

    family: ClassVar[str] = ""
    capabilities: frozenset[str] = frozenset()
    # Kinds of rows the model takes; the engine runs one batcher per (model, kind).
    kinds: tuple[str, ...] = ("text",)
    # Attributes holding the modules RUNTIME=compile may run through torch.compile (none: always eager).
    compile_targets: tuple[str, ...] = ()
    # Passes pad their width up to a multiple of this (a compiled runtime sets it: fewer shapes).
    pad_multiple: int = 1

    name: str
    dtype: torch.dtype
    dimension: int
    max_length: int

    def __init__(self, name: str, dtype: torch.dtype):
        self.name = name
        self.dtype = dtype
        self.device = "cpu"
        # One forward at a time per model and process, whatever the kind of row:
        # concurrent passes would oversubscribe the torch thread pool.
        self.lock = threading.Lock()

    # ------------------------------------------------------------ recognition
    @classmethod
    def detect(cls, path: Path) -> bool:
        raise NotImplementedError

    @classmethod
    def load(cls, path: Path, name: str, dtype: torch.dtype, options=None) -> ServedModel:
        raise NotImplementedError

    # ------------------------------------------------------------ preparation
    # Each takes the request whole (app/engine/requests.py): what to cut, which prompt, which outputs.
    def prepare_texts(self, texts: list[str], request: EmbedRequest = DEFAULT_EMBED) -> Prepared:
        raise InvalidInput(f"the model {self.name!r} does not take texts", param=request.field)

    def prepare_token_ids(self, rows: list[list[int]], request: EmbedRequest = DEFAULT_EMBED) -> Prepared:
        raise InvalidInput(f"the model {self.name!r} does not take token ids", param=request.field)

    def prepare_image(self, image, param: str, request: EmbedRequest = DEFAULT_EMBED):
        """One decoded picture -> one row; `param` names it in errors (`images[2]`)."""
        raise InvalidInput(f"the model {self.name!r} does not take images", param=param)

    # Audio families: the rate their decoder resamples to, and the seconds of a clip the model hears (None: all)
    sampling_rate: int = 16_000
    audio_window: float | None = None

    def prepare_audio(self, waveform, param: str, request: EmbedRequest = DEFAULT_EMBED):
        """One decoded clip (mono float32 at `sampling_rate`) -> one row."""
        raise InvalidInput(f"the model {self.name!r} does not take audio", param=param)

    def video_frames(self, info) -> list[int]:
        """Which frames of a video (its frame count, rate, duration and size in `info`) the model reads: its
        video processor's sampling, so that only those are decoded."""
        raise InvalidInput(f"the model {self.name!r} does not take video")

    def prepare_video(self, video, param: str, request: EmbedRequest = DEFAULT_EMBED):
        """One video's sampled frames (`frames`, `indices`, `info`) -> one row."""
        raise InvalidInput(f"the model {self.name!r} does not take video", param=param)

    def prepare_mixed(self, parts: dict, param: str, request: EmbedRequest = DEFAULT_EMBED):
        """One input of several modalities (`parts`: "text", and each medium decoded) -> one row."""
        raise InvalidInput(f"the model {self.name!r} cannot embed several modalities in one input", param=param)

    def prepare_fused(self, text: str | None, image, param: str, request: EmbedRequest = DEFAULT_EMBED):
        raise InvalidInput(f"the model {self.name!r} cannot embed a text and an image together", param=param)

    def kind_of(self, modality: str) -> str:
        """The kind of row (and so the batcher) inputs of `modality` become."""
        return modality

    def tokens(
        self, texts: list[str], *, add_special_tokens: bool = True, prompt_name: str | None = None
    ) -> list[list[dict]]:
        """How the model's tokenizer splits `texts` (with the named prompt before each)."""
        prompt = self.prompt_text(prompt_name)
        return token_views.tokenize(self.tokenizer, [prompt + text for text in texts], add_special_tokens)

    def decode(self, rows: list[list[int]], *, skip_special_tokens: bool = True) -> list[str]:
        return token_views.decode(self.tokenizer, rows, skip_special_tokens)

    def prompt_text(self, prompt_name: str | None) -> str:
        if prompt_name is not None:
            raise InvalidInput(f"the model {self.name!r} has no prompts", param="prompt_name", code="unknown_prompt")
        return ""

    def refuse_instruction(self, instruction: str | None) -> None:
        if instruction is not None:
            raise InvalidInput(
                f"the model {self.name!r} takes no instruction; give a prompt or prompt_name "
                "(from its sentence-transformers prompts) instead",
                param="instruction",
            )

    # ---------------------------------------------------------------- forward
    def forward(self, kind: str, rows: list, outputs: frozenset[str]) -> BatchOutput:
        raise NotImplementedError

    def token_width(self, output: str) -> int:
        """How many numbers each token's vector holds in a per-token output (`tokens`, `colbert`): what an
        answer of them weighs, counted before the pass (budgets.py)."""
        return self.dimension

    def sparse_width(self, tokens: int) -> int:
        """How many weights a sparse vector of an input of `tokens` tokens may hold: one per token for lexical
        weights (BGE-M3); a sparse encoder's expansion may weigh any of its vocabulary's ids."""
        return tokens

    def padded_width(self, rows: list) -> int:
        """The longest row, rounded up to `pad_multiple` without passing the model's own limit."""
        longest = max(len(row) for row in rows)
        rounded = -(-longest // self.pad_multiple) * self.pad_multiple
        return max(longest, min(rounded, self.max_length))

    def warmup_inputs(self) -> list[tuple[str, Prepared]]:
        """(kind, rows) worth running once per worker before it reports ready: the shortest and
        longest inputs, so the allocator and kernels have seen both extremes."""
        return []

    # -------------------------------------------------------------- lifecycle
    def modules(self) -> list[torch.nn.Module]:
        """Every torch module holding weights: moved to the device together, counted in size()."""
        raise NotImplementedError

    @property
    def overhead_tokens(self) -> int:
        return OVERHEAD_TOKENS.get(self.device, OVERHEAD_TOKENS["cpu"])

    def to(self, device: str) -> None:
        """Only ever called in a worker after fork, and only for a GPU."""
        for module in self.modules():
            module.to(device)
        self.device = device

    def size(self) -> dict:
        """Parameters and the bytes they and the buffers take (shared tensors counted once)."""
        parameters, buffers, seen = [], [], set()
        for module in self.modules():
            for tensor in module.parameters():
                if id(tensor) not in seen:
                    seen.add(id(tensor))
                    parameters.append(tensor)
            for tensor in module.buffers():
                if id(tensor) not in seen:
                    seen.add(id(tensor))
                    buffers.append(tensor)
        return {
            "parameters": sum(t.numel() for t in parameters),
            "weight_bytes": sum(t.numel() * t.element_size() for t in parameters + buffers),
        }

    def summary(self) -> str:
        """One line for the start-up log."""
        return f"dim={self.dimension} max_tokens={self.max_length} dtype={self.dtype}"

    def describe(self) -> dict:
        return {"id": self.name, "family": self.family, "capabilities": sorted(self.capabilities)}

    def lane(self, kind: str) -> Lane:
        return Lane(self, kind)


class TextFamily(ServedModel):
    """A family that reads text through a `TextInputs` (prompts, tokenisation, limits) in `self.text`."""

    text: TextInputs

    def prepare_texts(self, texts: list[str], request: EmbedRequest = DEFAULT_EMBED) -> Prepared:
        self.refuse_instruction(request.instruction)
        prefix = self.text.resolve_prompt(request.prompt, request.prompt_name)
        return self.text.tokenize(texts, request, prompt=prefix)

    def prepare_token_ids(self, rows: list[list[int]], request: EmbedRequest = DEFAULT_EMBED) -> Prepared:
        return self.text.token_ids(rows, request)

    def token_strings(self, ids) -> list[str]:
        return self.text.token_strings(ids)

    def prompt_text(self, prompt_name: str | None) -> str:
        return self.text.resolve_prompt(None, prompt_name)


class RerankerFamily(ServedModel):
    """What every reranker shares: one kind of row (a query and document pair), one score per row,
    and `activate` to turn the raw score into the default one."""

    capabilities = frozenset({RERANK})
    kinds = ("pair",)
    dimension = 1
    activation = "Sigmoid"
    model: torch.nn.Module
    pad_id: int

    def prepare_pairs(self, query: str, documents: list[str], request: ScoreRequest = DEFAULT_SCORE) -> Prepared:
        """One row per document, each paired with `query`, cut as the request says."""
        raise NotImplementedError

    def activate(self, scores):
        raise NotImplementedError

    def warmup_inputs(self) -> list[tuple[str, Prepared]]:
        short = self.prepare_pairs("warm-up", ["warm-up"]).rows
        longest = PairRow([self.pad_id] * min(self.max_length, WARMUP_TOKENS))
        return [("pair", Prepared(rows=short + [longest], outputs=frozenset({RERANK})))]

    def modules(self) -> list[torch.nn.Module]:
        return [self.model]

    def describe(self) -> dict:
        return {
            **super().describe(),
            "modality": "text-pair",
            "modalities": ["text-pair"],
            "outputs": ["score"],
            "dimension": 1,
            "max_input_tokens": self.max_length,
            "pooling": [],
            "prompts": [],
            "default_prompt_name": None,
            "activation": self.activation.lower(),
        }


class Lane:
    """One kind of row through one model: what a batcher or the planner drives."""

    def __init__(self, model: ServedModel, kind: str):
        self.model = model
        self.kind = kind

    @property
    def name(self) -> str:
        return self.model.name

    @property
    def lock(self):
        return self.model.lock

    @property
    def overhead_tokens(self) -> int:
        return self.model.overhead_tokens

    def forward_rows(self, rows: list, outputs: frozenset[str] = DENSE) -> BatchOutput:
        with torch.inference_mode():
            return self.model.forward(self.kind, rows, outputs)
