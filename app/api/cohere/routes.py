"""Cohere's `POST /v2/embed` and `POST /v1/embed`, for Cohere's clients (`cohere.ClientV2.embed`,
`cohere.Client.embed`).

`input_type` picks the model's own prompt for that use where it has one
(search_query -> a `search_query` or `query` prompt; search_document -> a
`search_document`, `document` or `passage` prompt; classification and
clustering -> prompts of those names), and for vision-language embedders
says whether an input is a query (with the instruction) or a document.
`embedding_types` returns several precisions from one forward pass. Errors
are Cohere's `{"message": ...}`.
"""

from __future__ import annotations

import uuid

from flask import Blueprint, Response

from ...engine.capabilities import EMBED_IMAGE, EMBED_INTERLEAVED, EMBED_TEXT
from ...engine.errors import EngineError
from ...engine.requests import EmbedRequest
from ...errors import InvalidRequest, ServiceError, as_service_error
from .. import service
from ..http.encoding import encode_rows, json_response
from ..http.image_inputs import gather
from ..http.observability import record_error
from ..http.parsing import parse_json, validate
from ..http.spec import operation
from ..openai.multimodal import input_items
from .schemas import (
    CohereEmbedRequest,
    CohereEmbedResponse,
    CohereEmbedV1Response,
    CohereError,
)

bp = Blueprint("cohere", __name__)


# input_type -> the prompt names that mean it, in the order they are looked for.
PROMPTS_FOR = {
    "search_query": ("search_query", "query"),
    "search_document": ("search_document", "document", "passage", "doc"),
    "classification": ("classification",),
    "clustering": ("clustering",),
}


@bp.errorhandler(ServiceError)
def _cohere_error(error: ServiceError) -> Response:
    record_error(error)
    return json_response({"message": error.message}, status=error.status, headers=error.headers)


def prompt_name_for(card: dict, input_type: str | None) -> str | None:
    for name in PROMPTS_FOR.get(input_type or "", ()):
        if name in card["prompts"]:
            return name
    return None


@bp.post("/v2/embed")
@operation(
    summary="Embed texts, images or mixed inputs (Cohere's v2 shape), at several precisions at once",
    request=CohereEmbedRequest,
    response=CohereEmbedResponse,
    auth=True,
    tags=("cohere",),
    errors=(400, 401, 404, 413, 415, 503),
    error=CohereError,
)
def v2_embed():
    return json_response(_embed(parse_json(CohereEmbedRequest), "2"))


@bp.post("/v1/embed")
@operation(
    summary="Embed (Cohere's v1 shape: bare float vectors unless embedding_types asks for more)",
    request=CohereEmbedRequest,
    response=CohereEmbedV1Response,
    auth=True,
    tags=("cohere",),
    errors=(400, 401, 404, 413, 415, 503),
    error=CohereError,
)
def v1_embed():
    return json_response(_embed(parse_json(CohereEmbedRequest), "1"))


def embed_at_root(body: dict) -> Response:
    """A Cohere body posted to the base URL (a client given the full embed URL as its base): v2's answer when
    it names `embedding_types` (which v2 requires), else v1's; errors in Cohere's shape."""
    try:
        version = "2" if body.get("embedding_types") is not None else "1"
        return json_response(_embed(validate(CohereEmbedRequest, body), version))
    except (ServiceError, EngineError) as error:
        return _cohere_error(as_service_error(error))


def _embed(req: CohereEmbedRequest, version: str) -> dict:
    given = [name for name in ("texts", "images", "inputs") if getattr(req, name) is not None]
    if len(given) != 1:
        raise InvalidRequest("send one of texts, images or inputs", param="texts")
    field = given[0]
    model = service.pick(req.model, {"texts": EMBED_TEXT, "images": EMBED_IMAGE, "inputs": EMBED_INTERLEAVED}[field])
    # A vision-language embedder takes documents without the query instruction.
    request = EmbedRequest(
        field=field,
        truncate=req.truncate != "NONE",
        truncation_direction="left" if req.truncate == "START" else "right",
        max_tokens=req.max_tokens,
        prompt_name=prompt_name_for(model.describe(), req.input_type),
        is_query=None if req.input_type is None else req.input_type != "search_document",
        dimensions=req.output_dimension,
    )
    if req.texts is not None:
        served = service.embed_texts(model, req.texts, request)
    elif req.images is not None:
        service.check(model, EMBED_IMAGE, "images")
        # images take no prompt: only the options they had
        images = EmbedRequest(field="images", is_query=request.is_query, dimensions=request.dimensions)
        served = service.embed_images(model, gather(req.images, "images"), images)
    else:
        items = input_items([_content(item, index) for index, item in enumerate(req.inputs)], "inputs")
        if not items:
            raise InvalidRequest("inputs must not be empty", param="inputs")
        if all(item.image is None for item in items) and not service.interleaves(model):
            served = service.embed_texts(model, [item.text for item in items], request)
        else:
            mixed = EmbedRequest(field="inputs", is_query=request.is_query, dimensions=request.dimensions)
            served = service.embed_items(model, items, mixed)
    result = served.result
    embeddings = {}
    for kind in dict.fromkeys(req.embedding_types or ["float"]):
        if kind == "float":
            embeddings["float"] = result.vectors
        elif kind == "base64":
            embeddings["base64"] = encode_rows(result.vectors, "base64")
        else:
            embeddings[kind] = service.quantize(served, kind, request)
    floats_only = version == "1" and req.embedding_types is None
    body = {"id": str(uuid.uuid4()), "embeddings": embeddings["float"] if floats_only else embeddings}
    if req.texts is not None or version == "1":
        body["texts"] = req.texts or []
    body["meta"] = {"api_version": {"version": version}, "billed_units": {"input_tokens": result.prompt_tokens}}
    body["response_type"] = "embeddings_floats" if floats_only else "embeddings_by_type"
    return body


def _content(item: dict, index: int) -> list:
    content = item.get("content")
    if not isinstance(content, list) or not content:
        raise InvalidRequest(
            f"inputs[{index}].content must be a non-empty list of content parts", param=f"inputs[{index}].content"
        )
    return content
