"""`POST /embed_audio` and `POST /embed_video`: clips or videos as JSON strings or multipart file uploads ->
vectors (models that take audio or video)."""

from __future__ import annotations

from flask import Blueprint

from ...engine.capabilities import EMBED_AUDIO, EMBED_VIDEO
from ...engine.requests import EmbedRequest
from .. import service
from ..http import context
from ..http.body_deadline import body_deadline
from ..http.encoding import encode_rows, json_response, usage
from ..http.image_inputs import form_request, is_multipart
from ..http.media_inputs import AUDIO, VIDEO, MediaKind, gather_media, media_uploads
from ..http.parsing import parse_json
from ..http.spec import operation
from .schemas import EmbedAudioRequest, EmbedMediaResponse, EmbedVideoRequest, MediaOptions

bp = Blueprint("media", __name__)


@bp.post("/embed_audio")
@operation(
    summary="Embed audio clips (JSON strings or multipart files)",
    request=EmbedAudioRequest,
    multipart=MediaOptions,
    response=EmbedMediaResponse,
    auth=True,
    tags=("native",),
    errors=(400, 401, 404, 413, 415),
)
def embed_audio():
    return _embed(AUDIO, "audio", EmbedAudioRequest, EMBED_AUDIO, service.embed_audio)


@bp.post("/embed_video")
@operation(
    summary="Embed videos (JSON strings or multipart files), from the frames the model samples",
    request=EmbedVideoRequest,
    multipart=MediaOptions,
    response=EmbedMediaResponse,
    auth=True,
    tags=("native",),
    errors=(400, 401, 404, 413, 415),
)
def embed_video():
    return _embed(VIDEO, "videos", EmbedVideoRequest, EMBED_VIDEO, service.embed_videos)


def _embed(kind: MediaKind, field: str, body, capability: str, embed):
    multipart = is_multipart()
    if multipart:
        with body_deadline(context.settings().body_timeout):  # the form parser reads the whole body here
            options = form_request(MediaOptions)
    else:
        options = parse_json(body, accepted="application/json or multipart/form-data")
    # A model that does not take this kind refuses before any file is read or URL fetched.
    model = service.resolve(options.model, capability, field)
    items = media_uploads(field, kind) if multipart else gather_media(getattr(options, field), field, kind)
    request = EmbedRequest(
        field=field, normalize=options.normalize, dimensions=options.dimensions, use_cache=options.cache
    )
    served = embed(model, items, request)
    vectors = service.quantize(served, options.precision, request)
    return json_response(
        {
            "model": model.name,
            "embeddings": encode_rows(vectors, options.encoding_format),
            "dimension": int(served.result.vectors.shape[1]),
            "precision": options.precision,
            "usage": usage(served.result.prompt_tokens),
        }
    )
