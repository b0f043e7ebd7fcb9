"""OpenAI's `POST /v1/embeddings` body and answer (with vLLM's multimodal items and Infinity's images)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from ...errors import InvalidRequest
from ..http.fields import (
    EMPTY,
    CacheOption,
    Dimensions,
    EncodingFormat,
    RequestBody,
    TruncationDirection,
    Usage,
    direction_of,
    json_type,
    text_list,
)
from .multimodal import chat_item, input_items, is_parts


def is_token(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def openai_input(value, field: str = "input") -> list[str] | list[list[int]] | list:
    """OpenAI's four input shapes -> a list of texts or a list of token-id rows; inputs with content
    parts (vLLM's multimodal form) -> (text, image) items."""
    if isinstance(value, list) and any(is_parts(item) for item in value):
        return input_items(value, field)
    if isinstance(value, str) or (isinstance(value, list) and value and isinstance(value[0], str)):
        return text_list(value, field)
    if not isinstance(value, list):
        raise InvalidRequest(
            f"{field} must be a string, a list of strings, a list of token ids or a list of lists of token ids",
            param=field,
        )
    if not value:
        raise InvalidRequest(f"{field} must not be empty", param=field, code=EMPTY)
    if is_token(value[0]):
        return [token_row(value, field)]
    rows = []
    for index, row in enumerate(value):
        if not isinstance(row, list):
            raise InvalidRequest(
                f"{field}[{index}] must be a list of token ids like {field}[0], got {json_type(row)}",
                param=f"{field}[{index}]",
            )
        rows.append(token_row(row, f"{field}[{index}]"))
    return rows


def token_row(row: list, field: str) -> list[int]:
    if not row:
        raise InvalidRequest(f"{field} is an empty list of token ids", param=field)
    for position, token in enumerate(row):
        if not is_token(token) or token < 0:
            raise InvalidRequest(
                f"{field}[{position}] must be a non-negative integer token id, got {token!r}", param=field
            )
    return row


# --------------------------------------------------------------------- requests
class OpenAIEmbeddingRequest(RequestBody):
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
    is_query: bool | None = Field(
        default=None, description="GME: false embeds a document (default instruction); not given: a query."
    )
    model: str | None = Field(default=None, description="Served model id; defaults to the first model.")
    cache: CacheOption = True
    encoding_format: EncodingFormat = "float"
    dimensions: Dimensions | None = None
    user: str | None = None
    modality: Literal["text", "image", "audio", "video"] = Field(
        default="text",
        description="Infinity's extension: 'image' makes `input` images, 'audio' audio clips (URLs, data URIs, "
        "base64); 'video' (not Infinity's) videos.",
    )
    truncation_direction: TruncationDirection = "right"

    @field_validator("truncation_direction", mode="before")
    @classmethod
    def _check_direction(cls, value):
        return direction_of(value)

    @field_validator("input", mode="before")
    @classmethod
    def _normalise_input(cls, value):
        return None if value is None else openai_input(value)

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


class EmbeddingObject(BaseModel):
    object: Literal["embedding"] = "embedding"
    index: int
    embedding: list[float] | str = Field(description="Floats, or base64 of little-endian float32.")


class OpenAIEmbeddingResponse(BaseModel):
    id: str = Field(description="This answer's id (the Mistral SDK requires one; OpenAI's clients ignore it).")
    object: Literal["list"] = "list"
    created: int = Field(description="When the answer was made, in Unix seconds.")
    data: list[EmbeddingObject]
    model: str
    usage: Usage
