"""Cohere's `/v2/embed` and `/v1/embed` bodies and answers, in its field names."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from ..http.fields import Dimensions, RequestBody, TextList, image_list, text_list

InputType = Literal["search_document", "search_query", "classification", "clustering", "image"]


EmbeddingType = Literal["float", "int8", "uint8", "binary", "ubinary", "base64"]


class CohereEmbedRequest(RequestBody):
    """Cohere's `POST /v2/embed` body: one of texts, images or inputs."""

    model_config = ConfigDict(extra="ignore", strict=True)

    model: str | None = None
    texts: TextList | None = None
    images: TextList | None = Field(default=None, description="data: URIs (or URLs with IMAGE_URL_FETCH).")
    inputs: list[dict] | None = Field(
        default=None,
        description='Items of {"content": [{"type": "text", "text"} | {"type": "image_url", '
        '"image_url": {"url"}}]}; several parts in one item need a vision-language model.',
    )
    input_type: InputType | None = None
    embedding_types: list[EmbeddingType] | None = Field(
        default=None, min_length=1, description="Default: float (v2); v1 without it answers bare float vectors."
    )
    output_dimension: Dimensions | None = None
    truncate: Literal["NONE", "START", "END"] = "END"
    max_tokens: Annotated[int, Field(gt=0)] | None = None

    @field_validator("texts", mode="before")
    @classmethod
    def _check_texts(cls, value):
        return None if value is None else text_list(value, "texts")

    @field_validator("images", mode="before")
    @classmethod
    def _check_images(cls, value):
        return None if value is None else image_list(value, "images")


class CohereError(BaseModel):
    message: str


class CohereEmbeddings(BaseModel):
    float_: list[list[float]] | None = Field(default=None, alias="float")
    int8: list[list[int]] | None = None
    uint8: list[list[int]] | None = None
    binary: list[list[int]] | None = None
    ubinary: list[list[int]] | None = None
    base64: list[str] | None = None


class CohereEmbedResponse(BaseModel):
    id: str
    embeddings: CohereEmbeddings
    texts: list[str] | None = None
    meta: dict
    response_type: Literal["embeddings_by_type"]


class CohereEmbedV1Response(BaseModel):
    id: str
    embeddings: list[list[float]] | CohereEmbeddings
    texts: list[str]
    meta: dict
    response_type: Literal["embeddings_floats", "embeddings_by_type"]
