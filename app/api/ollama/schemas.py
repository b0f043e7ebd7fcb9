"""Ollama's `/api/embed`, `/api/embeddings`, `/api/tags`, `/api/show` and `/api/version` bodies and answers
(its api/types.go)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, field_validator

from ..http.fields import Dimensions, RequestBody, Texts, text_list


class OllamaEmbedRequest(RequestBody):
    """Ollama's `POST /api/embed` body."""

    model_config = ConfigDict(extra="ignore", strict=True)

    model: str
    input: Texts
    truncate: bool = Field(default=True, description="false: an input over the model's context is an error.")
    dimensions: Dimensions | None = None
    keep_alive: str | int | float | None = Field(default=None, description="Accepted; models stay loaded.")
    options: dict | None = Field(default=None, description="Accepted; generation options do not apply.")

    @field_validator("input", mode="before")
    @classmethod
    def _check_input(cls, value):
        return text_list(value, "input")


class OllamaEmbeddingsRequest(RequestBody):
    """Ollama's legacy `POST /api/embeddings` body."""

    model_config = ConfigDict(extra="ignore", strict=True)

    model: str
    prompt: str
    keep_alive: str | int | float | None = None
    options: dict | None = None


class OllamaShowRequest(RequestBody):
    model_config = ConfigDict(extra="ignore", strict=True)

    model: str | None = None
    name: str | None = Field(default=None, description="The older clients' field for `model`.")


class OllamaEmbedResponse(BaseModel):
    model: str
    embeddings: list[list[float]]
    total_duration: int = Field(description="Nanoseconds.")
    load_duration: int
    prompt_eval_count: int


class OllamaEmbeddingsResponse(BaseModel):
    embedding: list[float]


class OllamaModels(BaseModel):
    models: list[dict]


class OllamaShowResponse(BaseModel):
    modelfile: str
    parameters: str
    template: str
    details: dict
    model_info: dict
    capabilities: list[str]
    modified_at: str


class OllamaError(BaseModel):
    error: str


class OllamaVersion(BaseModel):
    version: str
