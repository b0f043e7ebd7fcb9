"""Model listing, liveness, readiness and the OpenAPI document."""

from __future__ import annotations

from flask import Blueprint, current_app

from ...errors import NotReady
from ...version import __version__
from ..http import context
from ..http.encoding import json_response
from ..http.openapi import openapi_document
from ..http.spec import operation
from .schemas import HealthResponse, ModelList, OpenAPIDocument, ReadyResponse

bp = Blueprint("meta", __name__)


@bp.get("/v1/models")
@bp.get("/models", endpoint="infinity_models")  # Infinity's path
@operation(
    summary="List the served models (OpenAI's shape, with Infinity's fields; also at `/models`, Infinity's path)",
    response=ModelList,
    auth=True,
    tags=("openai",),
    errors=(401,),
)
def list_models():
    engine = context.engine()
    cards = [
        {
            **card,
            "object": "model",
            "created": engine.created,
            "owned_by": "embedding-service",
            "backend": "torch",
            "stats": {},
        }
        for card in engine.describe_models()
    ]
    return json_response({"object": "list", "data": cards})


@bp.get("/health")
@bp.get("/", endpoint="root_health")
@operation(
    summary="Liveness: the model is loaded; device, dtype and versions (also `GET /`, where "
    "text-embeddings-inference answers its health)",
    response=HealthResponse,
    tags=("operations",),
)
def health():
    return json_response({"status": "ok", "version": __version__, **context.engine().health()})


@bp.get("/ready")
@operation(
    summary="Readiness: 200 once this worker has loaded and warmed up its model, else 503",
    response=ReadyResponse,
    tags=("operations",),
    errors=(503,),
)
def ready():
    draining = current_app.extensions.get(context.DRAINING_KEY)
    if draining is not None and draining():
        raise NotReady("this worker is shutting down", headers={"Retry-After": "1"})
    if not context.engine().ready:
        raise NotReady("this worker has not finished warming up", headers={"Retry-After": "1"})
    return json_response({"status": "ready"})


@bp.get("/openapi.json")
@operation(summary="This OpenAPI 3.1 document", response=OpenAPIDocument, tags=("operations",))
def openapi():
    if "openapi_document" not in current_app.extensions:
        current_app.extensions["openapi_document"] = openapi_document(current_app, bool(context.settings().api_keys))
    return json_response(current_app.extensions["openapi_document"])
