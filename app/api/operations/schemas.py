"""Answers of the operations routes: models, health, readiness, the OpenAPI document, metrics, stats."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field, RootModel


class ModelCard(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str
    family: str = Field(
        description="How the model is run: sentence-transformers, bge-m3, sparse-encoder, multi-vector, decoder, "
        "dual-encoder, gme, cross-encoder, classifier, llm-reranker."
    )
    capabilities: list[str] = Field(
        description="What the model does: embed:text, embed:image, embed:interleaved, sparse, colbert, tokens, "
        "rerank, classify."
    )
    modality: str
    modalities: list[str]
    outputs: list[str] = Field(
        description="dense, plus sparse and colbert for BGE-M3-style models; sparse only for a sparse encoder."
    )
    dimension: int = Field(description="The dense vector's length; a sparse encoder's: its vocabulary's size.")
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
    backend: str = Field(default="torch", description="Infinity's field: what runs the model.")
    stats: dict = Field(default_factory=dict, description="Infinity's field (empty here: see /stats and /metrics).")
    routes: dict[str, str] | None = Field(
        default=None,
        description="Sparse encoders: the route that reads texts of each side (default, query, document); "
        "an inference-free query side is a route of its own.",
    )
    max_active_dims: int | None = Field(
        default=None, description="Sparse encoders: the most weights a vector keeps (the model's own setting)."
    )


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelCard]


class HealthResponse(BaseModel):
    status: Literal["ok"]
    version: str
    models: list[str]
    modalities: dict[str, list[str]] = Field(description="Per model, what it takes: text, image, audio, video.")
    device: str
    dtype: str
    ready: bool
    pid: int
    torch_threads: int | None
    versions: dict[str, str]


class ReadyResponse(BaseModel):
    status: Literal["ready"]


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
