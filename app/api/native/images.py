"""`POST /embed_image`: images (and PDFs, a vector per page) as JSON strings or multipart file uploads -> vectors;
with output_type colbert, a visual late-interaction model's vectors per patch."""

from __future__ import annotations

from flask import Blueprint

from ...engine.capabilities import COLBERT_IMAGE, EMBED_IMAGE
from ...engine.requests import EmbedRequest
from .. import service
from ..http import context
from ..http.body_deadline import body_deadline
from ..http.encoding import encode_rows, json_response, multi_vector_fields, usage
from ..http.image_inputs import form_request, gather, is_multipart, uploads
from ..http.parsing import parse_json
from ..http.spec import operation
from .schemas import EmbedImageRequest, EmbedImageResponse, ImageOptions

bp = Blueprint("images", __name__)


@bp.post("/embed_image")
@operation(
    summary="Embed images, and PDFs page by page (JSON strings or multipart files)",
    request=EmbedImageRequest,
    multipart=ImageOptions,
    response=EmbedImageResponse,
    auth=True,
    tags=("native",),
    errors=(400, 401, 404, 413, 415),
)
def embed_image():
    multipart = is_multipart()
    if multipart:
        with body_deadline(context.settings().body_timeout):  # the form parser reads the whole body here
            options = form_request(ImageOptions)
    else:
        options = parse_json(EmbedImageRequest, accepted="application/json or multipart/form-data")
    per_patch = options.output_type == "colbert"
    # A text-only model refuses before any file is read or URL fetched.
    model = service.resolve(options.model, COLBERT_IMAGE if per_patch else EMBED_IMAGE, "images")
    images = uploads("images") if multipart else gather(options.images, "images")
    request = EmbedRequest(
        field="images",
        instruction=options.instruction,
        is_query=options.is_query,
        normalize=options.normalize,
        dimensions=options.dimensions,
        outputs=frozenset({options.output_type}),
        outputs_field="output_type",
        pool_factor=options.colbert_pool_factor,
        use_cache=options.cache,
    )
    served = service.embed_images(model, images, request, documents=True)
    body = {"model": model.name}
    if per_patch:
        body.update(multi_vector_fields(served.result.colbert, options.encoding_format, options.colbert_precision))
    else:
        vectors = service.quantize(served, options.precision, request)
        body["embeddings"] = encode_rows(vectors, options.encoding_format)
        body["dimension"] = int(served.result.vectors.shape[1])
        body["precision"] = options.precision
    body["usage"] = usage(served.result.prompt_tokens)
    if served.result.sources is not None:  # a PDF among the inputs: a vector per page
        body["pages"] = [{"input": index, "page": page} for index, page in served.result.sources]
    return json_response(body)
