"""The native routes' bodies and answers: `/embed_text`, `/embed_image`, `/similarity`."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from ...errors import InvalidRequest
from ..http.fields import (
    CacheOption,
    Dimensions,
    EncodingFormat,
    OutputType,
    Precision,
    RequestBody,
    Texts,
    TruncationDirection,
    Usage,
    direction_of,
    image_list,
    text_list,
)


class MultiVectorOptions(RequestBody):
    """How per-token (ColBERT) and per-patch (ColPali) vectors are sent."""

    colbert_pool_factor: Annotated[float, Field(ge=1, le=64)] | None = Field(
        default=None,
        description="Shrink each input's ColBERT vectors to about 1 / this many by clustering them (PyLate's "
        "token pooling: Ward clustering, cluster means); 2 halves a document's index size.",
    )
    colbert_precision: Literal["float32", "float16", "binary"] = Field(
        default="float32",
        description="How each ColBERT vector is sent: float32, float16 (half the bytes), or binary (its signs "
        "packed 8 to a byte, numpy's packbits order: a 32nd of float32's bytes); with base64, the matrix's bytes.",
    )


class EmbedTextRequest(MultiVectorOptions):
    """The native `POST /embed_text` body."""

    model_config = ConfigDict(extra="forbid", strict=True)

    texts: Texts = Field(description="One text or a list of texts.")
    model: str | None = None
    normalize: bool = Field(default=True, description="L2-normalise each vector.")
    truncate: bool = Field(
        default=True, description="Cut inputs at the model's maximum length; false makes an over-long input a 400."
    )
    prompt: str | None = Field(default=None, description="A literal prefix for every text.")
    prompt_name: str | None = Field(
        default=None, description="A prompt from the model's config_sentence_transformers.json, by name."
    )
    dimensions: Dimensions | None = None
    encoding_format: EncodingFormat = "float"
    output_type: OutputType | None = Field(
        default=None,
        description="One output: dense (default), sparse or colbert (BGE-M3-style models; late-interaction models "
        "have only colbert).",
    )
    output_types: list[OutputType] | None = Field(
        default=None, min_length=1, description="Several outputs, computed in one forward pass."
    )
    return_tokens: bool = Field(default=False, description="Add each sparse weight's token string.")
    sparse_top_k: Annotated[int, Field(gt=0)] | None = Field(
        default=None, description="Keep each sparse vector's largest weights, this many at most."
    )
    sparse_min_weight: Annotated[float, Field(ge=0)] | None = Field(
        default=None, description="Drop sparse weights below this."
    )
    instruction: str | None = Field(
        default=None, description="Vision-language embedders (GME): the instruction for queries."
    )
    is_query: bool | None = Field(
        default=None,
        description="Which side the texts are on, for asymmetric models: false embeds documents (GME: with the "
        "default instruction; a sparse encoder: its document route). Not given: queries for GME, a sparse "
        "encoder's default route.",
    )
    cache: CacheOption = True
    precision: Precision = "float32"
    truncation_direction: TruncationDirection = "right"
    max_length: Annotated[int, Field(gt=0)] | None = Field(
        default=None,
        description="Cut (or, with truncate=false, refuse) inputs at this many tokens, below the "
        "model's maximum; the earlier BGE-M3 server's field.",
    )
    batch_size: Annotated[int, Field(gt=0)] | None = Field(
        default=None, description="Accepted from the earlier BGE-M3 server's clients; batching is the server's."
    )

    @field_validator("truncation_direction", mode="before")
    @classmethod
    def _check_direction(cls, value):
        return direction_of(value)

    @field_validator("texts", mode="before")
    @classmethod
    def _normalise_texts(cls, value):
        return text_list(value, "texts")

    def requested_outputs(self) -> list[str]:
        if self.output_type is not None and self.output_types is not None:
            raise InvalidRequest("give output_type or output_types, not both", param="output_types")
        if self.output_types is not None:
            return list(dict.fromkeys(self.output_types))
        return [self.output_type or "dense"]


class ImageOptions(MultiVectorOptions):
    """What `/embed_image` takes besides the images (also its multipart form fields)."""

    model_config = ConfigDict(extra="forbid", strict=True)

    output_type: Literal["dense", "colbert"] = Field(
        default="dense",
        description="dense: a vector per image (or page); colbert: a vector per patch, from a visual "
        "late-interaction model (ColPali, ColQwen2), sent as /embed_text sends ColBERT vectors.",
    )

    model: str | None = None
    normalize: bool = Field(default=True, description="L2-normalise each vector.")
    dimensions: Dimensions | None = None
    encoding_format: EncodingFormat = "float"
    instruction: str | None = Field(
        default=None, description="Vision-language embedders (GME): the instruction for queries."
    )
    is_query: bool | None = Field(
        default=None,
        description="Which side the texts are on, for asymmetric models: false embeds documents (GME: with the "
        "default instruction; a sparse encoder: its document route). Not given: queries for GME, a sparse "
        "encoder's default route.",
    )
    cache: CacheOption = True
    precision: Precision = "float32"


class EmbedImageRequest(ImageOptions):
    """The JSON `POST /embed_image` body (or multipart/form-data with image files and these fields)."""

    images: Texts = Field(
        description="Base64, `data:image/...;base64,` URIs, or http(s) URLs when IMAGE_URL_FETCH is on; a PDF "
        "(`data:application/pdf;base64,`, its base64, or its URL) is embedded page by page."
    )

    @field_validator("images", mode="before")
    @classmethod
    def _normalise_images(cls, value):
        return image_list(value, "images")


class MediaOptions(RequestBody):
    """What `/embed_audio` and `/embed_video` take besides the files (also their multipart form fields)."""

    model_config = ConfigDict(extra="forbid", strict=True)

    model: str | None = None
    normalize: bool = Field(default=True, description="L2-normalise each vector.")
    dimensions: Dimensions | None = None
    encoding_format: EncodingFormat = "float"
    cache: CacheOption = True
    precision: Precision = "float32"


class EmbedAudioRequest(MediaOptions):
    """The JSON `POST /embed_audio` body (or multipart/form-data with audio files and these fields)."""

    audio: Texts = Field(
        description="Base64, `data:audio/...;base64,` URIs, or http(s) URLs when IMAGE_URL_FETCH is on (its allow-list "
        "applies); WAV, FLAC, OGG Vorbis or Opus, MP3, AIFF."
    )

    @field_validator("audio", mode="before")
    @classmethod
    def _normalise_audio(cls, value):
        return image_list(value, "audio")


class EmbedVideoRequest(MediaOptions):
    """The JSON `POST /embed_video` body (or multipart/form-data with video files and these fields)."""

    videos: Texts = Field(
        description="Base64, `data:video/...;base64,` URIs, or http(s) URLs when IMAGE_URL_FETCH is on (its allow-list "
        "applies); MP4/MOV or WebM/Matroska. The model's own frame sampling picks the frames read."
    )

    @field_validator("videos", mode="before")
    @classmethod
    def _normalise_videos(cls, value):
        return image_list(value, "videos")


class EmbedMediaResponse(BaseModel):
    model: str
    embeddings: list[list[float]] | list[list[int]] | list[str] = Field(
        description="Per clip or video its vector: floats, integers at another precision, or base64 of its buffer."
    )
    dimension: int
    precision: str
    usage: Usage = Field(
        description="prompt_tokens counts what the model attended over: a clip's spectrogram patches or soft tokens, "
        "a video's frame patches."
    )


class SimilarityRequest(RequestBody):
    """`POST /similarity`: the rows' kind x the columns' kind (texts, images, audio, videos, documents: two of
    them, in that order), or one kind x itself."""

    model_config = ConfigDict(extra="forbid", strict=True)

    texts: Texts | None = None
    images: Texts | None = None
    audio: Texts | None = Field(default=None, description="Audio clips (models that take audio).")
    videos: Texts | None = Field(default=None, description="Videos (models that take video).")
    documents: Texts | None = Field(
        default=None, description="Texts for the columns: texts x documents (queries x passages)."
    )
    model: str | None = None
    output_types: list[OutputType] | None = Field(
        default=None,
        min_length=1,
        description="Scores to compute for texts: dense cosine (default), sparse lexical matching, colbert MaxSim; "
        "several add a weighted `hybrid`.",
    )
    weights: dict[OutputType, Annotated[float, Field(ge=0, le=1000000.0, allow_inf_nan=False)]] | None = Field(
        default=None, description="Hybrid weights per output type; default dense 0.4, sparse 0.2, colbert 0.4."
    )
    cache: CacheOption = True

    @field_validator("texts", mode="before")
    @classmethod
    def _normalise_texts(cls, value):
        return None if value is None else text_list(value, "texts")

    @field_validator("documents", mode="before")
    @classmethod
    def _normalise_documents(cls, value):
        return None if value is None else text_list(value, "documents")

    @field_validator("images", mode="before")
    @classmethod
    def _normalise_images(cls, value):
        return None if value is None else image_list(value, "images")

    @field_validator("audio", mode="before")
    @classmethod
    def _normalise_audio(cls, value):
        return None if value is None else image_list(value, "audio")

    @field_validator("videos", mode="before")
    @classmethod
    def _normalise_videos(cls, value):
        return None if value is None else image_list(value, "videos")


class SparseVector(BaseModel):
    indices: list[int] = Field(description="Token ids, ascending.")
    values: list[float]
    tokens: list[str] | None = Field(default=None, description="With return_tokens.")


class MultiVectors(BaseModel):
    colbert: list[list[list[float]]] | list[str] | None = Field(
        default=None,
        description="Per input, a vector per token (after the first for BGE-M3; those its mask keeps for a "
        "late-interaction model; per patch and prompt token for a page image), at colbert_precision (binary: "
        "bytes, dimension / 8 per vector); with base64, one string per input of its matrix's little-endian bytes.",
    )
    colbert_dimension: int | None = None
    colbert_precision: str | None = None
    colbert_shapes: list[list[int]] | None = Field(
        default=None, description="Per input, [tokens, colbert_dimension]: how to reshape its base64 bytes."
    )


class EmbedTextResponse(MultiVectors):
    model: str
    embeddings: list[list[float]] | list[list[int]] | list[str] | None = Field(
        default=None,
        description="Dense vectors (when asked for; the default): floats, integers at another "
        "precision, or base64 of the little-endian float32 (or int8/uint8) buffer.",
    )
    dimension: int | None = Field(
        default=None, description="The vectors' dimensions (binary and ubinary rows hold one byte per 8 of them)."
    )
    precision: str | None = None
    sparse: list[SparseVector] | None = None
    usage: Usage


class PageSource(BaseModel):
    input: int
    page: int | None


class EmbedImageResponse(MultiVectors):
    model: str
    embeddings: list[list[float]] | list[list[int]] | list[str] | None = Field(
        default=None,
        description="Per image its vector (output_type dense): floats, integers at another precision, or base64 "
        "of its buffer.",
    )
    dimension: int | None = None
    precision: str | None = None
    pages: list[PageSource] | None = Field(
        default=None,
        description="Present when an input was a PDF: per vector (or multi-vector), which input it is and which "
        "page of it (from 1; null for an input that was an image).",
    )
    usage: Usage = Field(description="prompt_tokens counts the image patches the vision tower attended over.")


class SimilarityResponse(BaseModel):
    model: str
    similarity_matrix: list[list[float]] = Field(description="Cosine similarities, rows x columns.")
    shape: list[int] = Field(description="[rows, columns]: [texts, images], or [n, n] for one kind.")
    scores: dict[str, list[list[float]]] | None = Field(
        default=None, description="With output_types: a matrix per output type, and `hybrid` for several."
    )
    pages: list[PageSource] | None = Field(
        default=None,
        description="A visual late-interaction model given a PDF among the images: per column, which input and "
        "page it is.",
    )
    usage: Usage
