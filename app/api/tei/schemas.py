"""Request and response models of text-embeddings-inference's routes, in its field names and defaults
(router/src/http/types.rs): `/embed`, `/embed_all`, `/embed_sparse`, `/similarity`, `/tokenize`,
`/decode`, `/info`. Fields it has that do not apply here are accepted and ignored."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, RootModel, field_validator

from ...errors import InvalidRequest
from ..cohere.schemas import CohereError
from ..http.fields import (
    EMPTY,
    Dimensions,
    ErrorResponse,
    RequestBody,
    Text,
    TextList,
    Texts,
    TruncationFields,
    json_type,
    text_list,
)
from ..openai.schemas import openai_input, token_row

TEIInput = str | list[str] | list[int] | list[list[int]]


def _inputs(value) -> list[str] | list[list[int]]:
    """TEI's `inputs`: a text, texts, one row of token ids, or rows of them."""
    if isinstance(value, list) and any(isinstance(item, dict) for item in value):
        raise InvalidRequest("inputs must be a string, a list of strings or lists of token ids", param="inputs")
    inputs = openai_input(value, "inputs")
    if not isinstance(inputs[0], (str, list)):  # content parts: this service's other routes take images
        raise InvalidRequest(
            "inputs must be texts or token ids; send images to /embed_image or /v1/embeddings", param="inputs"
        )
    return inputs


class _TEIBody(TruncationFields):
    prompt_name: str | None = Field(
        default=None, description="A prompt from the model's config_sentence_transformers.json, by name."
    )
    model: str | None = Field(default=None, description="This service's extension: a served model id.")


class TEIEmbedRequest(_TEIBody):
    """text-embeddings-inference's `POST /embed` (and `POST /`) body."""

    inputs: TEIInput = Field(description="A text, texts, or token ids (with ACCEPT_TOKEN_IDS).")
    normalize: bool = True
    dimensions: Dimensions | None = None

    @field_validator("inputs", mode="before")
    @classmethod
    def _check_inputs(cls, value):
        return _inputs(value)


class TEITextsRequest(_TEIBody):
    """`/embed_all` and `/embed_sparse`: texts only."""

    inputs: Texts = Field(description="One text or a list of texts.")

    @field_validator("inputs", mode="before")
    @classmethod
    def _check_inputs(cls, value):
        return text_list(value, "inputs")


class TEISparseRequest(TEITextsRequest):
    """`/embed_sparse`: TEI's body; `prompt_name` "query" or "document" also picks an asymmetric sparse
    encoder's side, and the pruning fields are this service's extension."""

    sparse_top_k: Annotated[int, Field(gt=0)] | None = Field(
        default=None, description="This service's extension: keep each vector's largest weights, this many at most."
    )
    sparse_min_weight: Annotated[float, Field(ge=0)] | None = Field(
        default=None, description="This service's extension: drop weights below this."
    )


class SimilarityInput(RequestBody):
    model_config = ConfigDict(extra="forbid", strict=True)

    source_sentence: Text
    sentences: TextList

    @field_validator("source_sentence", mode="before")
    @classmethod
    def _check_source(cls, value):
        return text_list(value, "inputs.source_sentence")[0] if isinstance(value, str) else value

    @field_validator("sentences", mode="before")
    @classmethod
    def _check_sentences(cls, value):
        return text_list(value, "inputs.sentences")


class SimilarityParameters(_TEIBody):
    pass


class TEISimilarityRequest(RequestBody):
    """text-embeddings-inference's `POST /similarity` body (huggingface_hub's `sentence_similarity`)."""

    model_config = ConfigDict(extra="ignore", strict=True)

    inputs: SimilarityInput
    parameters: SimilarityParameters | None = None
    model: str | None = None


class TokenizeRequest(RequestBody):
    model_config = ConfigDict(extra="ignore", strict=True)

    inputs: Texts
    add_special_tokens: bool = True
    prompt_name: str | None = None
    model: str | None = None

    @field_validator("inputs", mode="before")
    @classmethod
    def _check_inputs(cls, value):
        if isinstance(value, list) and not value:
            raise InvalidRequest("inputs cannot be empty", param="inputs", code=EMPTY)
        if isinstance(value, list):
            for index, item in enumerate(value):
                if not isinstance(item, str):
                    raise InvalidRequest(
                        f"inputs[{index}] must be a string, got {json_type(item)}", param=f"inputs[{index}]"
                    )
            return value
        if not isinstance(value, str):
            raise InvalidRequest("inputs must be a string or a list of strings", param="inputs")
        return [value]


class DecodeRequest(RequestBody):
    model_config = ConfigDict(extra="ignore", strict=True)

    ids: list[int] | list[list[int]]
    skip_special_tokens: bool = True
    model: str | None = None

    @field_validator("ids", mode="before")
    @classmethod
    def _check_ids(cls, value):
        if not isinstance(value, list) or not value:
            raise InvalidRequest(
                "ids must be a non-empty list of token ids, or a list of them",
                param="ids",
                code=EMPTY if value == [] else None,
            )
        rows = value if isinstance(value[0], list) else [value]
        return [token_row(row, f"ids[{index}]") for index, row in enumerate(rows)]


# -------------------------------------------------------------------- responses
class TEIEmbedResponse(RootModel[list[list[float]]]):
    """Per input, its vector."""


class TEIEmbedAllResponse(RootModel[list[list[list[float]]]]):
    """Per input, a vector per token (special tokens included), before pooling."""


class SimpleToken(BaseModel):
    id: int
    text: str
    special: bool
    start: int | None = Field(description="Byte offset in the input; null for special tokens.")
    stop: int | None


class TokenizeResponse(RootModel[list[list[SimpleToken]]]):
    """Per input, its tokens."""


class DecodeResponse(RootModel[list[str]]):
    """Per row of ids, its text."""


class TEIInfo(BaseModel):
    model_id: str
    model_sha: str | None = Field(
        description="A hash of the model directory's bytes (TEI: the hub revision); null with the cache off."
    )
    model_dtype: str
    served_model_name: str
    model_type: dict = Field(
        description='{"embedding": {"pooling": ...}} or {"reranker": {"id2label", '
        '"label2id"}}, as text-embeddings-inference says it.'
    )
    max_concurrent_requests: int
    max_input_length: int
    max_batch_tokens: int
    max_batch_requests: int | None
    max_client_batch_size: int
    auto_truncate: bool
    tokenization_workers: int
    version: str
    sha: str | None
    docker_label: str | None
    workers: int = Field(description="Not TEI's: the gunicorn workers behind this address.")
    modalities: list[str] = Field(
        default=["text"], description="Not TEI's: what the model takes (text, image, audio, video)."
    )


class TEIError(BaseModel):
    error: str
    error_type: str = Field(description="Validation, Empty, Tokenizer, Overloaded, Unhealthy or Backend.")


class TEIOrNativeError(RootModel[TEIError | ErrorResponse]):
    """`/rerank`'s errors: TEI's for TEI's body, the native envelope (Infinity's) for Infinity's."""


class TEIOrCohereError(RootModel[TEIError | CohereError]):
    """`POST /`'s errors: TEI's, or Cohere's for a Cohere embed body."""


class SparseValue(BaseModel):
    index: int
    value: float


class EmbedSparseResponse(RootModel[list[list[SparseValue]]]):
    """text-embeddings-inference's shape: per input, its non-zero weights."""
