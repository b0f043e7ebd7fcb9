"""Ollama's API, for Ollama's clients and front ends (Open WebUI): `/api/embed`, the legacy `/api/embeddings`,
and the listing routes `/api/tags`, `/api/show`, `/api/version`.

Shapes as Ollama's api/types.go has them; errors in Ollama's `{"error": "..."}`
shape on these routes. `/api/embed` L2-normalises, as Ollama does; the legacy
`/api/embeddings` returns the raw vector, as Ollama does.
"""

from __future__ import annotations

import time
from datetime import datetime, timezone

from flask import Blueprint, Response

from ...engine import errors as engine_errors
from ...engine.requests import EmbedRequest
from ...errors import InvalidRequest, ModelNotFound, ServiceError
from ...version import __version__
from .. import service
from ..http import context
from ..http.encoding import json_response
from ..http.observability import record_error
from ..http.parsing import parse_json
from ..http.spec import operation
from .schemas import (
    OllamaEmbeddingsRequest,
    OllamaEmbeddingsResponse,
    OllamaEmbedRequest,
    OllamaEmbedResponse,
    OllamaError,
    OllamaModels,
    OllamaShowRequest,
    OllamaShowResponse,
    OllamaVersion,
)

bp = Blueprint("ollama", __name__)

_ERRORS = (400, 401, 404, 413, 415, 503)


@bp.errorhandler(ServiceError)
def _ollama_error(error: ServiceError) -> Response:
    record_error(error)
    return json_response({"error": error.message}, status=error.status, headers=error.headers)


def _resolve(name: str):
    """Ollama names carry a tag (`nomic-embed-text:latest`); `:latest` means the served name itself."""
    try:
        return service.pick(name.removesuffix(":latest"))
    except engine_errors.ModelNotFound:
        served = ", ".join(context.engine().models)
        raise ModelNotFound(f'model "{name}" not found; served models: {served}', param="model") from None


def _created(engine) -> str:
    return datetime.fromtimestamp(engine.created, timezone.utc).isoformat()


def _card(card: dict, engine) -> dict:
    return {
        "name": card["id"],
        "model": card["id"],
        "modified_at": _created(engine),
        "size": 0,
        "digest": "",
        "details": {
            "parent_model": "",
            "format": "safetensors",
            "family": card["family"],
            "families": [card["family"]],
            "parameter_size": "",
            "quantization_level": str(context.engine().health()["dtype"]),
        },
    }


@bp.post("/api/embed")
@operation(
    summary="Embed texts (Ollama's shape)",
    request=OllamaEmbedRequest,
    response=OllamaEmbedResponse,
    auth=True,
    tags=("ollama",),
    errors=_ERRORS,
    error=OllamaError,
)
def api_embed():
    started = time.perf_counter()
    req = parse_json(OllamaEmbedRequest)
    request = EmbedRequest(truncate=req.truncate, dimensions=req.dimensions)
    result = service.embed_texts(_resolve(req.model), req.input, request).result
    return json_response(
        {
            "model": req.model,
            "embeddings": result.vectors,
            "total_duration": int((time.perf_counter() - started) * 1e9),
            "load_duration": 0,
            "prompt_eval_count": result.prompt_tokens,
        }
    )


@bp.post("/api/embeddings")
@operation(
    summary="Embed one prompt, unnormalised (Ollama's legacy shape)",
    request=OllamaEmbeddingsRequest,
    response=OllamaEmbeddingsResponse,
    auth=True,
    tags=("ollama",),
    errors=_ERRORS,
    error=OllamaError,
)
def api_embeddings():
    req = parse_json(OllamaEmbeddingsRequest)
    if not req.prompt:
        # Ollama answers an empty prompt with an empty embedding (clients use it to load a model).
        _resolve(req.model)
        return json_response({"embedding": []})
    served = service.embed_texts(_resolve(req.model), [req.prompt], EmbedRequest(field="prompt", normalize=False))
    return json_response({"embedding": served.result.vectors[0]})


@bp.get("/api/tags")
@operation(
    summary="The served models (Ollama's list)", response=OllamaModels, auth=True, tags=("ollama",), errors=(401,)
)
def api_tags():
    engine = context.engine()
    return json_response({"models": [_card(card, engine) for card in engine.describe_models()]})


@bp.post("/api/show")
@operation(
    summary="One model's details (Ollama's shape)",
    request=OllamaShowRequest,
    response=OllamaShowResponse,
    auth=True,
    tags=("ollama",),
    errors=(400, 401, 404, 415),
    error=OllamaError,
)
def api_show():
    req = parse_json(OllamaShowRequest)
    name = req.model or req.name
    if not name:
        raise InvalidRequest("model is required", param="model")
    engine = context.engine()
    model = _resolve(name)
    card = next(card for card in engine.describe_models() if card["id"] == model.name)
    capabilities = ["embedding"] if any(c.startswith("embed") for c in card["capabilities"]) else []
    return json_response(
        {
            "modelfile": f"# served by embedding-service {__version__}\nFROM {model.name}\n",
            "parameters": "",
            "template": "",
            "details": _card(card, engine)["details"],
            "model_info": {
                "general.architecture": card["family"],
                "embedding_length": card["dimension"],
                "context_length": card["max_input_tokens"],
            },
            "capabilities": capabilities + (["rerank"] if "rerank" in card["capabilities"] else []),
            "modified_at": _created(engine),
        }
    )


@bp.get("/api/version")
@operation(summary="The server's version (Ollama's shape)", response=OllamaVersion, tags=("ollama",))
def api_version():
    return json_response({"version": __version__})
