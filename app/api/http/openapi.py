"""/openapi.json, generated from the registered routes and the same pydantic models that validate them."""

from __future__ import annotations

import re

from flask import Flask
from pydantic.json_schema import models_json_schema

from ...version import __version__
from .fields import ErrorResponse
from .spec import operation_of

# The order /docs lists the groups in: this service's own routes first, then each peer's.
_TAGS = [
    ("native", "This service's routes: texts, images, similarity, every output and option"),
    ("openai", "OpenAI's embeddings API (and Infinity's image extension)"),
    ("rerank", "Rerank in Jina's and Cohere's shapes"),
    ("tei", "text-embeddings-inference's API, in its error shape"),
    ("cohere", "Cohere's v2 embed, in its error shape"),
    ("ollama", "Ollama's API, in its error shape"),
    ("gme", "The earlier GME Qwen2-VL server's routes"),
    ("operations", "Health, readiness, metrics, this document"),
]

_STATUS_TEXT = {
    400: "Invalid request",
    401: "Missing or invalid API key",
    404: "Unknown model",
    405: "Method not allowed (see the Allow header)",
    408: "The request body arrived too slowly",
    413: "Request body too large",
    415: "Unsupported Content-Type",
    500: "Inference or internal error",
    503: "Not ready or overloaded",
}


def openapi_document(app: Flask, keys_required: bool = False) -> dict:
    """`keys_required`: the service runs with API_KEYS, so the protected routes need a bearer key (without
    them the key is optional: `{}` is an alternative requirement)."""
    security = [{"bearerAuth": []}] if keys_required else [{"bearerAuth": []}, {}]
    routes = []
    for rule in sorted(app.url_map.iter_rules(), key=lambda r: r.rule):
        op = operation_of(app.view_functions.get(rule.endpoint))
        if op is not None:
            routes.append((rule, sorted(rule.methods - {"HEAD", "OPTIONS"}), op))

    wanted = {(ErrorResponse, "serialization")}
    for _, _, op in routes:
        wanted.add((op.response, "serialization"))
        if op.error is not None:
            wanted.add((op.error, "serialization"))
        if op.request is not None:
            wanted.add((op.request, "validation"))
        if op.multipart is not None:
            wanted.add((op.multipart, "validation"))
    refs, definitions = models_json_schema(
        sorted(wanted, key=lambda item: (item[0].__name__, item[1])), ref_template="#/components/schemas/{model}"
    )

    def json_content(schema: dict, media_type: str = "application/json") -> dict:
        return {media_type: {"schema": schema}}

    paths: dict[str, dict] = {}
    for rule, methods, op in routes:
        error = json_content(refs[(op.error or ErrorResponse, "serialization")])
        path = re.sub(r"<(?:[^:<>]+:)?([^<>]+)>", r"{\1}", rule.rule)
        for method in methods:
            ok = json_content(refs[(op.response, "serialization")], op.media_type)
            responses = {"200": {"description": "OK", "content": ok}}
            # Any route answers a wrong method with 405; an engine route (the protected ones) may be overloaded.
            codes = set(op.errors) | {405, 500} | ({401, 503} if op.auth else set())
            for code in sorted(codes):
                responses[str(code)] = {"description": _STATUS_TEXT.get(code, "Error"), "content": error}
            # A route served at a second path too (`endpoint=` names the alias) keeps its operationId on the first.
            alias = rule.endpoint.rsplit(".", 1)[-1] != app.view_functions[rule.endpoint].__name__
            entry = {
                "operationId": (not alias and op.operation_id) or rule.endpoint.replace(".", "_"),
                "summary": op.summary,
                "tags": list(op.tags),
                "responses": responses,
            }
            if op.request is not None:
                entry["requestBody"] = {"required": True, "content": json_content(refs[(op.request, "validation")])}
            if op.multipart is not None:
                files = {
                    "type": "object",
                    "properties": {
                        "image": {
                            "type": "array",
                            "items": {"type": "string", "format": "binary"},
                            "description": "One or more image files, under any part name.",
                        }
                    },
                }
                entry["requestBody"]["content"]["multipart/form-data"] = {
                    "schema": {"allOf": [refs[(op.multipart, "validation")], files]}
                }
            if op.auth:
                entry["security"] = security
            paths.setdefault(path, {})[method.lower()] = entry

    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Embedding service",
            "version": __version__,
            "description": "Text and image embeddings over HTTP; errors use the OpenAI error envelope.",
        },
        "tags": [{"name": name, "description": description} for name, description in _TAGS],
        "paths": paths,
        "components": {
            "schemas": definitions.get("$defs", {}),
            "securitySchemes": {
                "bearerAuth": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "Required on routes marked with it when the service runs with API_KEYS.",
                }
            },
        },
    }
