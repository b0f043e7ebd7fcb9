"""`POST /embed_image`: images as JSON strings or multipart file uploads -> vectors."""

from __future__ import annotations

from flask import Blueprint

from . import context
from .body_deadline import body_deadline
from .encoding import encode_rows, json_response, usage
from .image_inputs import embed, form_request, gather, is_multipart, uploads
from .parsing import parse_json
from .schemas import EmbedImageRequest, EmbedImageResponse, ImageOptions
from .spec import operation

bp = Blueprint("images", __name__)


@bp.post("/embed_image")
@operation(
    summary="Embed images (JSON strings or multipart files)",
    request=EmbedImageRequest,
    multipart=ImageOptions,
    response=EmbedImageResponse,
    auth=True,
    tags=("native",),
    errors=(400, 401, 404, 413, 415),
)
def embed_image():
    engine = context.engine()
    multipart = is_multipart()
    if multipart:
        with body_deadline(context.settings().body_timeout):  # the form parser reads the whole body here
            options = form_request(ImageOptions)
    else:
        options = parse_json(EmbedImageRequest, accepted="application/json or multipart/form-data")
    model = engine.resolve(options.model, "embed:image")
    # A text-only model refuses before any file is read or URL fetched.
    engine.require(model, "image", "images")
    images = uploads("images") if multipart else gather(options.images, "images")
    result = embed(
        model,
        images,
        normalize=options.normalize,
        dimensions=options.dimensions,
        instruction=options.instruction,
        is_query=options.is_query,
        use_cache=options.cache,
    )
    vectors = engine.quantize(
        model, result.vectors, options.precision, dimensions=options.dimensions, normalize=options.normalize
    )
    return json_response(
        {
            "model": model.name,
            "embeddings": encode_rows(vectors, options.encoding_format),
            "dimension": int(result.vectors.shape[1]),
            "precision": options.precision,
            "usage": usage(result.prompt_tokens),
        }
    )
