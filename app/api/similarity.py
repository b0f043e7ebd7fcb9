"""`POST /similarity`: a cosine similarity matrix, texts x images (or one kind against itself)."""

from __future__ import annotations

from flask import Blueprint

from ..errors import InvalidRequest
from ..images import ImageLimits
from . import context
from .embeddings import usage
from .encoding import json_response
from .image_inputs import gather
from .observability import record_embedding
from .parsing import check_items, parse_json
from .schemas import SimilarityRequest, SimilarityResponse
from .spec import operation

bp = Blueprint("similarity", __name__)


@bp.post("/similarity")
@operation(summary="Cosine similarity of texts x images, or of texts (images) among themselves",
           request=SimilarityRequest, response=SimilarityResponse, auth=True, tags=("native",),
           errors=(400, 401, 404, 413, 415))
def similarity():
    req = parse_json(SimilarityRequest)
    if not req.texts and not req.images:
        raise InvalidRequest("send texts, images, or both", param="texts")
    settings = context.settings()
    engine = context.engine()
    model = engine.resolve(req.model)
    if req.images:
        engine.tower(model, "image", "images")
    sides = []
    if req.texts:
        check_items(req.texts, settings, "texts")
        result = engine.embed_texts(model, req.texts, field="texts")
        record_embedding(result, len(req.texts), "text")
        sides.append(result)
    if req.images:
        images = gather(req.images, "images")
        result = engine.embed_images(model, images, ImageLimits.from_settings(settings))
        record_embedding(result, len(images), "image")
        sides.append(result)
    rows, columns = sides[0].vectors, sides[-1].vectors  # both normalised: the product is the cosine
    matrix = rows @ columns.T
    return json_response({
        "model": model.name,
        "similarity_matrix": matrix,
        "shape": [int(matrix.shape[0]), int(matrix.shape[1])],
        "usage": usage(sum(side.prompt_tokens for side in sides)),
    })
