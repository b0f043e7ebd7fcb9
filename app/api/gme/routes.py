"""The routes of GME's earlier server: `/embeddings/text`, `/embeddings/image`, `/embeddings/fused`.

Same bodies and answers as before (`{"embeddings": [[...]], "dimension": d}`),
served by any model that takes the input: GME and other vision-language
embedders for all three, CLIP-style models for texts and images.
"""

from __future__ import annotations

from flask import Blueprint

from ...engine.capabilities import EMBED_IMAGE, EMBED_INTERLEAVED
from ...engine.requests import EmbedRequest
from ...errors import InvalidRequest
from .. import service
from ..http.encoding import json_response
from ..http.image_inputs import gather
from ..http.parsing import parse_json
from ..http.spec import operation
from .schemas import GMEEmbeddingsResponse, GMEFusedRequest, GMEImageRequest, GMETextRequest

bp = Blueprint("gme", __name__)

_ERRORS = (400, 401, 404, 413, 415, 503)


def _request(req, field: str) -> EmbedRequest:
    """Every GME body's options: the instruction (queries only), is_query, the cache."""
    return EmbedRequest(field=field, instruction=req.instruction, is_query=req.is_query, use_cache=req.cache)


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
    # Without a model, the route's own kind: a vision-language embedder beside a text model.
    served = service.embed_texts(req.model, req.texts, _request(req, "texts"), prefer=EMBED_INTERLEAVED)
    return _answer(served.result)


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
    model = service.resolve(req.model, EMBED_IMAGE, "images", prefer=EMBED_INTERLEAVED)
    return _answer(service.embed_images(model, gather(req.images, "images"), _request(req, "images")).result)


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
    return _answer(service.embed_fused(req.model, req.texts, req.images, _request(req, "images")).result)
