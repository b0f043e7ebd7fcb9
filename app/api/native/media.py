"""`POST /embed_audio`: audio clips as JSON strings or multipart file uploads -> vectors (text-audio models)."""

from __future__ import annotations

from flask import Blueprint

from ...engine.capabilities import EMBED_AUDIO
from ...engine.requests import EmbedRequest
from .. import service
from ..http import context
from ..http.audio_inputs import audio_uploads, gather_audio
from ..http.body_deadline import body_deadline
from ..http.encoding import encode_rows, json_response, usage
from ..http.image_inputs import form_request, is_multipart
from ..http.parsing import parse_json
from ..http.spec import operation
from .schemas import AudioOptions, EmbedAudioRequest, EmbedAudioResponse

bp = Blueprint("audio", __name__)


@bp.post("/embed_audio")
@operation(
    summary="Embed audio clips (JSON strings or multipart files)",
    request=EmbedAudioRequest,
    multipart=AudioOptions,
    response=EmbedAudioResponse,
    auth=True,
    tags=("native",),
    errors=(400, 401, 404, 413, 415),
)
def embed_audio():
    multipart = is_multipart()
    if multipart:
        with body_deadline(context.settings().body_timeout):  # the form parser reads the whole body here
            options = form_request(AudioOptions)
    else:
        options = parse_json(EmbedAudioRequest, accepted="application/json or multipart/form-data")
    # A model without an audio tower refuses before any file is read or URL fetched.
    model = service.resolve(options.model, EMBED_AUDIO, "audio")
    clips = audio_uploads("audio") if multipart else gather_audio(options.audio, "audio")
    request = EmbedRequest(
        field="audio", normalize=options.normalize, dimensions=options.dimensions, use_cache=options.cache
    )
    served = service.embed_audio(model, clips, request)
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
