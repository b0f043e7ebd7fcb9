"""Request and response models: they validate requests and generate /openapi.json.

Validation runs in strict mode on the parsed JSON, so `"normalize": "yes"` or
`"dimensions": "64"` is an error rather than a guess. Polymorphic inputs are
normalised by hand in before-validators, which raise `InvalidRequest` naming
the exact offending index (pydantic's union errors would list every branch).
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, RootModel, field_validator

from ..errors import InvalidRequest
from .multimodal_inputs import chat_item, input_items, is_parts

EncodingFormat = Literal["float", "base64"]
# text-embeddings-inference's spellings are accepted too ("Left", "Right").
TruncationDirection = Annotated[
    Literal["left", "right"],
    Field(description="Which end of an over-long input is cut: right (its end, the default) or left (its start)."),
]
Precision = Annotated[
    Literal["float32", "int8", "uint8", "binary", "ubinary"],
    Field(
        description="As sentence-transformers' encode(precision=...): int8/uint8 scale each dimension by ranges "
        "calibrated once per model; binary/ubinary pack one bit per dimension (> 0) into bytes."
    ),
]
# What the before-validators enforce, said in the schema too (minLength, minItems), so /openapi.json and the
# service agree on what is valid.
Text = Annotated[str, Field(min_length=1)]
TextList = Annotated[list[Text], Field(min_length=1)]
Texts = Text | TextList
# The error code of an empty input list, which text-embeddings-inference answers as its own kind of error.
EMPTY = "empty_input"
OutputType = Literal["dense", "sparse", "colbert"]
Dimensions = Annotated[int, Field(gt=0, description="Keep the first N components, then re-normalise.")]
CacheOption = Annotated[bool, Field(description="false: compute, neither reading nor writing the embedding cache.")]


def _text_list(value, field: str) -> list[str]:
    """A string or a non-empty list of non-empty strings -> list of strings."""
    return _string_list(value, field, "", "")


def _image_list(value, field: str) -> list[str]:
    """One image string or a non-empty list of them; what each string holds is checked later."""
    return _string_list(value, field, " (base64, data: URIs or URLs)", " (base64, a data: URI or a URL)")


def _string_list(value, field: str, what: str, each: str) -> list[str]:
    """`what` and `each` say what the strings hold, in the messages for the list and for one item."""
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list):
        raise InvalidRequest(f"{field} must be a string or a list of strings{what}", param=field)
    if not value:
        raise InvalidRequest(f"{field} must not be empty", param=field, code=EMPTY)
    for index, item in enumerate(value):
        if not isinstance(item, str):
            raise InvalidRequest(
                f"{field}[{index}] must be a string{each}, got {_json_type(item)}", param=f"{field}[{index}]"
            )
        blank = not item.strip() if what else not item  # a text of spaces is a text; an image's is not
        if blank:
            raise InvalidRequest(f"{field}[{index}] is an empty string", param=f"{field}[{index}]")
    return value


def direction_of(value) -> str:
    """text-embeddings-inference's clients send "Right"/"Left" as well as "right"/"left"."""
    if isinstance(value, str) and value.lower() in ("left", "right"):
        return value.lower()
    raise InvalidRequest("truncation_direction must be 'left' or 'right'", param="truncation_direction")


def _is_token(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _openai_input(value, field: str = "input") -> list[str] | list[list[int]] | list:
    """OpenAI's four input shapes -> a list of texts or a list of token-id rows; inputs with content
    parts (vLLM's multimodal form) -> (text, image) items."""
    if isinstance(value, list) and any(is_parts(item) for item in value):
        return input_items(value, field)
    if isinstance(value, str) or (isinstance(value, list) and value and isinstance(value[0], str)):
        return _text_list(value, field)
    if not isinstance(value, list):
        raise InvalidRequest(
            f"{field} must be a string, a list of strings, a list of token ids or a list of lists of token ids",
            param=field,
        )
    if not value:
        raise InvalidRequest(f"{field} must not be empty", param=field, code=EMPTY)
    if _is_token(value[0]):
        return [_token_row(value, field)]
    rows = []
    for index, row in enumerate(value):
        if not isinstance(row, list):
            raise InvalidRequest(
                f"{field}[{index}] must be a list of token ids like {field}[0], got {_json_type(row)}",
                param=f"{field}[{index}]",
            )
        rows.append(_token_row(row, f"{field}[{index}]"))
    return rows


def _token_row(row: list, field: str) -> list[int]:
    if not row:
        raise InvalidRequest(f"{field} is an empty list of token ids", param=field)
    for position, token in enumerate(row):
        if not _is_token(token) or token < 0:
            raise InvalidRequest(
                f"{field}[{position}] must be a non-negative integer token id, got {token!r}", param=field
            )
    return row


def _json_type(value) -> str:
    if value is None:
        return "null"
    return {
        bool: "a boolean",
        int: "a number",
        float: "a number",
        str: "a string",
        list: "an array",
        dict: "an object",
    }.get(type(value), type(value).__name__)


# --------------------------------------------------------------------- requests
class OpenAIEmbeddingRequest(BaseModel):
    """OpenAI's `POST /v1/embeddings` body. Unknown fields are ignored, as clients add their own."""

    model_config = ConfigDict(extra="ignore", strict=True)

    input: str | list[str] | list[int] | list[list[int]] | list | None = Field(
        default=None,
        description="Text, texts, one token-id list, a list of token-id lists (this model's "
        "vocabulary), or (vision-language models) items that are lists of content parts: "
        '{"type": "text", "text"} and {"type": "image_url", '
        '"image_url": {"url"}}.',
    )
    messages: list | None = Field(
        default=None,
        description="vLLM's form: one chat (content parts as above) -> one embedding; a system "
        "message's text is the instruction. Instead of `input`.",
    )
    instruction: str | None = Field(default=None, description="Vision-language embedders (GME): the query instruction.")
    is_query: bool = Field(default=True, description="GME: false embeds a document (default instruction).")
    model: str | None = Field(default=None, description="Served model id; defaults to the first model.")
    encoding_format: EncodingFormat = "float"
    dimensions: Dimensions | None = None
    user: str | None = None
    modality: Literal["text", "image"] = Field(
        default="text", description="Infinity's extension: 'image' makes `input` images (URLs, data URIs, base64)."
    )
    truncation_direction: TruncationDirection = "right"

    @field_validator("truncation_direction", mode="before")
    @classmethod
    def _check_direction(cls, value):
        return direction_of(value)

    @field_validator("input", mode="before")
    @classmethod
    def _normalise_input(cls, value):
        return None if value is None else _openai_input(value)

    @field_validator("messages", mode="before")
    @classmethod
    def _check_messages(cls, value):
        if value is None:
            return None
        item, system = chat_item(value)
        return [item, system]

    def inputs(self) -> list:
        """The inputs, whichever field carried them."""
        if (self.input is None) == (self.messages is None):
            raise InvalidRequest("send either input or messages", param="input")
        return self.input if self.input is not None else [self.messages[0]]

    def effective_instruction(self) -> str | None:
        if self.instruction is not None or self.messages is None:
            return self.instruction
        return self.messages[1]


class EmbedTextRequest(BaseModel):
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
        default=None, description="One output: dense (default), sparse or colbert (BGE-M3-style models)."
    )
    output_types: list[OutputType] | None = Field(
        default=None, min_length=1, description="Several outputs, computed in one forward pass."
    )
    return_tokens: bool = Field(default=False, description="Add each sparse weight's token string.")
    instruction: str | None = Field(
        default=None, description="Vision-language embedders (GME): the instruction for queries."
    )
    is_query: bool = Field(default=True, description="GME: false embeds documents, with the default instruction.")
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
        return _text_list(value, "texts")

    def requested_outputs(self) -> list[str]:
        if self.output_type is not None and self.output_types is not None:
            raise InvalidRequest("give output_type or output_types, not both", param="output_types")
        if self.output_types is not None:
            return list(dict.fromkeys(self.output_types))
        return [self.output_type or "dense"]


class ImageOptions(BaseModel):
    """What `/embed_image` takes besides the images (also its multipart form fields)."""

    model_config = ConfigDict(extra="forbid", strict=True)

    model: str | None = None
    normalize: bool = Field(default=True, description="L2-normalise each vector.")
    dimensions: Dimensions | None = None
    encoding_format: EncodingFormat = "float"
    instruction: str | None = Field(
        default=None, description="Vision-language embedders (GME): the instruction for queries."
    )
    is_query: bool = Field(default=True, description="GME: false embeds documents, with the default instruction.")
    cache: CacheOption = True
    precision: Precision = "float32"


class EmbedImageRequest(ImageOptions):
    """The JSON `POST /embed_image` body (or multipart/form-data with image files and these fields)."""

    images: Texts = Field(
        description="Base64, `data:image/...;base64,` URIs, or http(s) URLs when IMAGE_URL_FETCH is on."
    )

    @field_validator("images", mode="before")
    @classmethod
    def _normalise_images(cls, value):
        return _image_list(value, "images")


class SimilarityRequest(BaseModel):
    """`POST /similarity`: texts x images, or texts x texts (images x images) when only one kind is given."""

    model_config = ConfigDict(extra="forbid", strict=True)

    texts: Texts | None = None
    images: Texts | None = None
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
        return None if value is None else _text_list(value, "texts")

    @field_validator("documents", mode="before")
    @classmethod
    def _normalise_documents(cls, value):
        return None if value is None else _text_list(value, "documents")

    @field_validator("images", mode="before")
    @classmethod
    def _normalise_images(cls, value):
        return None if value is None else _image_list(value, "images")


# -------------------------------------------------------------------- responses
class Usage(BaseModel):
    prompt_tokens: int
    total_tokens: int


class EmbeddingObject(BaseModel):
    object: Literal["embedding"] = "embedding"
    index: int
    embedding: list[float] | str = Field(description="Floats, or base64 of little-endian float32.")


class OpenAIEmbeddingResponse(BaseModel):
    object: Literal["list"] = "list"
    data: list[EmbeddingObject]
    model: str
    usage: Usage


class SparseVector(BaseModel):
    indices: list[int] = Field(description="Token ids, ascending.")
    values: list[float]
    tokens: list[str] | None = Field(default=None, description="With return_tokens.")


class EmbedTextResponse(BaseModel):
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
    colbert: list[list[list[float]]] | list[str] | None = Field(
        default=None,
        description="Per input, a vector per token after the first; with base64, one string per "
        "input of its [tokens x colbert_dimension] little-endian float32 matrix.",
    )
    colbert_dimension: int | None = None
    usage: Usage


class EmbedImageResponse(BaseModel):
    model: str
    embeddings: list[list[float]] | list[list[int]] | list[str] = Field(
        description="Per image its vector: floats, integers at another precision, or base64 of its buffer."
    )
    dimension: int
    precision: str
    usage: Usage = Field(description="prompt_tokens counts the image patches the vision tower attended over.")


class SparseValue(BaseModel):
    index: int
    value: float


class EmbedSparseResponse(RootModel[list[list[SparseValue]]]):
    """text-embeddings-inference's shape: per input, its non-zero weights."""


class SimilarityResponse(BaseModel):
    model: str
    similarity_matrix: list[list[float]] = Field(description="Cosine similarities, rows x columns.")
    shape: list[int] = Field(description="[rows, columns]: [texts, images], or [n, n] for one kind.")
    scores: dict[str, list[list[float]]] | None = Field(
        default=None, description="With output_types: a matrix per output type, and `hybrid` for several."
    )
    usage: Usage


class ModelCard(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str
    family: str = Field(
        description="How the model is run: sentence-transformers, bge-m3, decoder, dual-encoder, "
        "cross-encoder, llm-reranker."
    )
    capabilities: list[str] = Field(
        description="What the model does: embed:text, embed:image, sparse, colbert, rerank."
    )
    modality: str
    modalities: list[str]
    outputs: list[str] = Field(description="dense, plus sparse and colbert for BGE-M3-style models.")
    dimension: int
    max_input_tokens: int
    pooling: list[str]
    prompts: list[str]
    default_prompt_name: str | None
    activation: str | None = Field(
        default=None, description="Rerankers: what turns the raw score into the default one (sigmoid, identity, tanh)."
    )
    default_instruction: str | None = Field(
        default=None, description="LLM rerankers: the instruction used when a request gives none."
    )


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelCard]


class HealthResponse(BaseModel):
    status: Literal["ok"]
    version: str
    models: list[str]
    device: str
    dtype: str
    ready: bool
    pid: int
    torch_threads: int | None
    versions: dict[str, str]


class ReadyResponse(BaseModel):
    status: Literal["ready"]


class ErrorDetail(BaseModel):
    message: str
    type: str
    param: str | None
    code: str | None


class ErrorResponse(BaseModel):
    error: ErrorDetail


class OpenAPIDocument(BaseModel):
    openapi: str
    info: dict
    tags: list[dict]
    paths: dict
    components: dict


class MetricsText(RootModel[str]):
    """Prometheus text exposition format."""


class StatsResponse(BaseModel):
    settings: dict
    worker: dict
