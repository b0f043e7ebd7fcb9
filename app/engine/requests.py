"""What a caller asked of the engine, whole: one typed, frozen object per kind of call.

The API layer parses any peer's body into one of these and hands it down;
the engine checks it once against the model's capabilities, and families read
their options from it (`prepare_texts(texts, request)`), so no keyword list is
threaded through the layers. vLLM's `PoolingParams` is the model. Imports
nothing heavy: the web layer builds these without torch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from .errors import InvalidInput

if TYPE_CHECKING:
    import numpy as np
    from PIL import Image

DIRECTIONS = ("right", "left")
# prompt names that say which side a text is on
PROMPT_SIDES = {"query": "query", "document": "document", "passage": "document", "corpus": "document"}
# a side's own prompt, the first of these a model has (as encode_query and encode_document look them up)
SIDE_PROMPT_NAMES = {"query": ("query",), "document": ("document", "passage", "corpus")}


def check_direction(direction: str) -> None:
    if direction not in DIRECTIONS:
        raise InvalidInput(
            f"truncation_direction must be one of {', '.join(DIRECTIONS)}; got {direction!r}",
            param="truncation_direction",
        )


@dataclass(frozen=True)
class EmbedRequest:
    """Options of an embedding call: how inputs become tokens, what is computed, how vectors are finished."""

    # how inputs are named in errors (`texts[3]`)
    field: str = "input"
    # tokenising: which end an over-long input loses, or a 400 if truncate is false; a per-request limit
    # below the model's own
    truncate: bool = True
    truncation_direction: str = "right"
    max_tokens: int | None = None
    # what goes before each text: a literal prompt, or one of the model's named prompts (sentence-
    # transformers' prompts), or (vision-language embedders) an instruction for the query side
    prompt: str | None = None
    prompt_name: str | None = None
    instruction: str | None = None
    # which side of an asymmetric model reads the texts: True a query, False a document, None not said (the
    # model's default: GME's query instruction, a sparse encoder's default route)
    is_query: bool | None = None
    # what the forward pass computes: "dense", "sparse", "colbert", "tokens"; and how the request named them,
    # for errors
    outputs: frozenset[str] = frozenset({"dense"})
    outputs_field: str = "output_types"
    # finishing the dense and multi-vectors
    normalize: bool = True
    dimensions: int | None = None
    # finishing sparse vectors: the largest `sparse_top_k` weights, those of at least `sparse_min_weight`
    sparse_top_k: int | None = None
    sparse_min_weight: float | None = None
    # finishing multi-vectors: clustered to about 1 / pool_factor of the tokens (token_pooling.py)
    pool_factor: float | None = None
    use_cache: bool = True

    def __post_init__(self):
        check_direction(self.truncation_direction)
        object.__setattr__(self, "outputs", frozenset(self.outputs))
        if self.pool_factor is not None and not 1 <= self.pool_factor <= 64:
            raise InvalidInput(f"pool_factor must be from 1 to 64; got {self.pool_factor}", param="pool_factor")
        if self.sparse_top_k is not None and self.sparse_top_k < 1:
            raise InvalidInput(f"sparse_top_k must be at least 1; got {self.sparse_top_k}", param="sparse_top_k")

    @property
    def side(self) -> str | None:
        """query, document or None: from is_query, else from a prompt named for a side (as
        sentence-transformers' encode_query and encode_document name theirs)."""
        if self.is_query is not None:
            return "query" if self.is_query else "document"
        return PROMPT_SIDES.get(self.prompt_name or "")

    @property
    def prefix_chars(self) -> int:
        """Characters every text carries before it (a prompt or an instruction): counted per text."""
        return len(self.prompt or self.instruction or "")


@dataclass(frozen=True)
class ScoreRequest:
    """Options of a scoring call: every query against every document, one pair each."""

    field: str = "documents"
    truncate: bool = True
    truncation_direction: str = "right"
    # the reranker's instruction (LLM rerankers), and a limit on each document's tokens
    instruction: str | None = None
    max_document_tokens: int | None = None
    # scores as the model computes them, before its activation (a sigmoid for most cross-encoders)
    raw_scores: bool = False
    use_cache: bool = True

    def __post_init__(self):
        check_direction(self.truncation_direction)


DEFAULT_EMBED = EmbedRequest()
DEFAULT_SCORE = ScoreRequest()


def request_of(cls, request, fields: dict):
    """`request` as given, or one built from keyword fields (tests and scripts): never both."""
    if request is None:
        return cls(**fields)
    if fields:
        raise TypeError(f"give a {cls.__name__} or its fields, not both: {', '.join(fields)}")
    return request


@dataclass(frozen=True)
class MixedInput:
    """One input of several modalities (a text and a video, a clip and an image): its text, and each medium's
    encoded file, already fetched."""

    text: str | None = None
    image: bytes | None = None
    audio: bytes | None = None
    video: bytes | None = None

    def media(self) -> list[str]:
        return [name for name in ("image", "audio", "video") if getattr(self, name) is not None]


@dataclass(frozen=True)
class MediaDecoders:
    """The caller's decoders, under its limits, for the media a mixed request holds."""

    image: ImageDecoder
    audio: AudioDecoder
    video: VideoDecoder


class ImageDecoder(Protocol):
    """Turns an encoded image file into a picture, or raises the caller's error naming `param`. The engine
    calls it off the event loop; what counts as a safe image (bytes, pixels, formats) is the caller's."""

    def decode(self, data: bytes, param: str) -> Image.Image: ...

    def pages(self, data: bytes, param: str) -> Pages | None:
        """A document's pages (each embedded as an image), or None when `data` is one image."""


class AudioDecoder(Protocol):
    """Turns an encoded audio file into a mono waveform at `rate` (its first `window` seconds at most), or raises
    the caller's error naming `param`; called off the event loop, under the caller's limits."""

    def decode(self, data: bytes, param: str, rate: int, window: float | None = None) -> np.ndarray: ...


class VideoDecoder(Protocol):
    """Turns an encoded video file into the frames `sample` picks (given the stream's `total_frames`, `fps`,
    `duration`, `width` and `height`, it returns frame indices): a result with `frames` ((n, 3, height, width)
    uint8 RGB), `indices` and that `info`; or raises the caller's error naming `param`. Called off the event
    loop, under the caller's limits."""

    def decode(self, data: bytes, param: str, sample): ...


class Pages(Protocol):
    """A document's pages, already checked against the caller's limits; each rendered when asked for."""

    def __len__(self) -> int: ...

    def render(self, index: int) -> Image.Image: ...

    def close(self) -> None: ...
