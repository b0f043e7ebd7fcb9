"""The routes of GME's earlier server: `/embeddings/text`, `/embeddings/image`, `/embeddings/fused`.

Same bodies and answers as before (`{"embeddings": [[...]], "dimension": d}`),
served by any model that takes the input: GME and other vision-language
embedders for all three, CLIP-style models for texts and images.
"""

from __future__ import annotations

from flask import Blueprint

from ..errors import InvalidRequest
from ..image_decoding import ImageLimits
from . import context
from .encoding import json_response
from .gme_schemas import GMEEmbeddingsResponse, GMEFusedRequest, GMEImageRequest, GMETextRequest
from .image_inputs import embed, gather
from .observability import record_embedding
from .parsing import check_items, parse_json
from .spec import operation

bp = Blueprint("gme", __name__)

_ERRORS = (400, 401, 404, 413, 415, 503)


def _answer(result):
    return json_response({"embeddings": result.vectors, "dimension": int(result.vectors.shape[1])})


@bp.post("/embeddings/text")
@operation(
    summary="Embed texts (GME server's shape)",
    request=GMETextRequest,
    response=GMEEmbeddingsResponse,
    auth=True,
    tags=("gme",),
    errors=_ERRORS,
)
def embeddings_text():
    req = parse_json(GMETextRequest)
    check_items(req.texts, context.settings(), "texts", req.instruction, "instruction")
    engine = context.engine()
    model = engine.resolve(req.model, "embed:text")
    result = engine.embed_texts(
        model, req.texts, field="texts", instruction=req.instruction, is_query=req.is_query, use_cache=req.cache
    )
    record_embedding(result, len(req.texts))
    return _answer(result)


@bp.post("/embeddings/image")
@operation(
    summary="Embed images (GME server's shape)",
    request=GMEImageRequest,
    response=GMEEmbeddingsResponse,
    auth=True,
    tags=("gme",),
    errors=_ERRORS,
)
def embeddings_image():
    req = parse_json(GMEImageRequest)
    engine = context.engine()
    model = engine.resolve(req.model, "embed:image")
    engine.require(model, "image", "images")
    return _answer(
        embed(
            model, gather(req.images, "images"), instruction=req.instruction, is_query=req.is_query, use_cache=req.cache
        )
    )


@bp.post("/embeddings/fused")
@operation(
    summary="Embed (text, image) pairs, each into one vector (GME server's shape)",
    request=GMEFusedRequest,
    response=GMEEmbeddingsResponse,
    auth=True,
    tags=("gme",),
    errors=_ERRORS,
)
def embeddings_fused():
    req = parse_json(GMEFusedRequest)
    if len(req.texts) != len(req.images):
        raise InvalidRequest(
            f"texts and images pair up one to one: got {len(req.texts)} texts and {len(req.images)} images",
            param="images",
        )
    settings = context.settings()
    check_items(req.texts, settings, "texts", req.instruction, "instruction")
    engine = context.engine()
    model = engine.resolve(req.model, "embed:interleaved")
    engine.require(model, "image", "images")
    images = gather(req.images, "images")
    result = engine.embed_inputs(
        model,
        req.texts,
        images,
        ImageLimits.from_settings(settings),
        field="images",
        instruction=req.instruction,
        is_query=req.is_query,
        use_cache=req.cache,
    )
    record_embedding(result, len(images), "image")
    return _answer(result)
