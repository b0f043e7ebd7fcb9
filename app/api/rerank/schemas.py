"""Request and response models of the rerank routes, in the shapes their clients already send and read:
text-embeddings-inference's `/rerank`, Jina's and Cohere's `/v1/rerank`, Cohere's `/v2/rerank`."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, RootModel, field_validator

from ...errors import InvalidRequest
from ..http.fields import (
    CacheOption,
    RequestBody,
    Text,
    TextList,
    TruncationDirection,
    Usage,
    direction_of,
    json_type,
    text_list,
)


def _query(value) -> str:
    if not isinstance(value, str):
        raise InvalidRequest(f"query must be a string, got {json_type(value)}", param="query")
    if not value.strip():
        raise InvalidRequest("query is empty", param="query")
    return value


def _documents(value) -> list[str]:
    """Strings, or Cohere v1 / Jina objects with a `text`, -> strings."""
    if isinstance(value, list):
        value = [
            item["text"] if isinstance(item, dict) and isinstance(item.get("text"), str) else item for item in value
        ]
    return text_list(value, "documents")


class _RerankBody(RequestBody):
    """What every rerank body has: a query, and this service's model, instruction and cache options."""

    model_config = ConfigDict(extra="ignore", strict=True)

    model: str | None = Field(default=None, description="A served reranker; defaults to the first one.")
    query: Text
    instruction: str | None = Field(default=None, description="LLM rerankers: the task instruction.")
    cache: CacheOption = True

    @field_validator("query", mode="before")
    @classmethod
    def _check_query(cls, value):
        return _query(value)


class TEIRerankRequest(_RerankBody):
    """text-embeddings-inference's `POST /rerank` body; fields it has that do not apply are ignored."""

    texts: TextList = Field(description="The documents to score against the query.")
    raw_scores: bool = Field(default=False, description="The model's logit instead of its activated score.")
    return_text: bool = Field(default=False, description="Add each document's text to its result.")
    truncate: bool = Field(default=True, description="Cut over-long pairs, the document first; false makes them a 400.")
    truncation_direction: TruncationDirection = "right"

    @field_validator("texts", mode="before")
    @classmethod
    def _check_texts(cls, value):
        return text_list(value, "texts")

    @field_validator("truncation_direction", mode="before")
    @classmethod
    def _check_direction(cls, value):
        return direction_of(value)


class Rank(BaseModel):
    index: int
    score: float
    text: str | None = None


class TEIRerankResponse(RootModel[list[Rank]]):
    """Per document, best first."""


class RerankRequest(_RerankBody):
    """Jina's and Cohere's `POST /v1/rerank` and Cohere's `POST /v2/rerank` body."""

    documents: TextList = Field(description="Strings, or objects with a `text` field.")
    top_n: int | None = Field(default=None, ge=1, description="Return only the best N.")
    return_documents: bool = Field(default=False, description='Add each document as {"text": ...}.')
    max_tokens_per_doc: int | None = Field(default=None, ge=1, description="Cut each document to N tokens.")

    @field_validator("documents", mode="before")
    @classmethod
    def _check_documents(cls, value):
        return _documents(value)

    @field_validator("top_n", mode="before")
    @classmethod
    def _top_n(cls, value):
        if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
            raise InvalidRequest("top_n must be an integer >= 1", param="top_n")
        return value


class InfinityRerankRequest(RerankRequest):
    """Infinity's `POST /rerank` body (vLLM's clients post it there too): documents, not TEI's texts."""

    raw_scores: bool = Field(default=False, description="The model's logit instead of its activated score.")


class InfinityRank(BaseModel):
    relevance_score: float
    index: int
    document: str | None = Field(default=None, description="The document's text, with return_documents.")


class InfinityRerankResponse(BaseModel):
    object: Literal["rerank"] = "rerank"
    results: list[InfinityRank] = Field(description="Best first; top_n cuts the list.")
    model: str
    usage: Usage
    id: str
    created: int


class RerankDocument(BaseModel):
    text: str


class RerankResult(BaseModel):
    index: int
    relevance_score: float
    document: RerankDocument | None = None


class RerankResponse(BaseModel):
    id: str
    model: str
    results: list[RerankResult] = Field(description="Best first; top_n cuts the list.")
    usage: Usage
    meta: dict = Field(description="Cohere's meta: api_version and billed_units.")


class RerankBodies(RootModel[TEIRerankRequest | InfinityRerankRequest]):
    """`POST /rerank`: text-embeddings-inference's body (`texts`) or Infinity's (`documents`)."""


class RerankAnswers(RootModel[list[Rank] | InfinityRerankResponse]):
    """`POST /rerank`: TEI's ranks for its body, Infinity's answer for Infinity's."""
