"""OpenAI's `POST /v1/embeddings`: texts, this model's token ids, vLLM's multimodal items and chats, and
images and audio with Infinity's `"modality": "image"` / `"audio"`, and videos with `"modality": "video"`."""

from __future__ import annotations

import time
import uuid

from flask import Blueprint

from ...engine.capabilities import EMBED_INTERLEAVED
from ...engine.requests import EmbedRequest
from ...errors import InvalidRequest
from .. import service
from ..http.encoding import encode_rows, json_response, usage
from ..http.parsing import parse_json
from ..http.spec import operation
from .multimodal import Item
from .schemas import OpenAIEmbeddingRequest, OpenAIEmbeddingResponse

bp = Blueprint("openai", __name__)


@bp.post("/v1/embeddings")
@bp.post("/embeddings", endpoint="infinity_embeddings")  # Infinity's path; its clients take the base URL alone
@operation(
    summary="Create embeddings (OpenAI-compatible; also at `/embeddings`, Infinity's path)",
    request=OpenAIEmbeddingRequest,
    response=OpenAIEmbeddingResponse,
    auth=True,
    tags=("openai",),
    operation_id="embeddings_create_embeddings",
    errors=(400, 401, 404, 413, 415),
)
def create_embeddings():
    req = parse_json(OpenAIEmbeddingRequest)
    inputs = req.inputs()
    multimodal = isinstance(inputs[0], Item)
    request = EmbedRequest(
        dimensions=req.dimensions,
        instruction=req.effective_instruction(),
        is_query=req.is_query,
        truncation_direction=req.truncation_direction,
        use_cache=req.cache,
    )
    # Infinity's `modality` (and `video`, this service's): what `input` then holds
    if req.modality in service.MEDIA:
        medium = service.MEDIA[req.modality]
        model = service.pick(req.model, medium.capability)
        if not isinstance(inputs[0], str):
            raise InvalidRequest(
                f"with modality {req.modality!r}, input must be {req.modality} URLs, data: URIs or base64 strings",
                param="input",
            )
        service.check(model, medium.capability, "input")  # a model that does not take them says so before any fetch
        served = medium.embed(model, medium.gather(inputs, "input"), request)
    elif multimodal and any(item.has_audio_or_video() for item in inputs):
        served = service.embed_mixed(service.pick(req.model, EMBED_INTERLEAVED), inputs, request)
    elif multimodal:
        served = service.embed_items(service.pick(req.model, EMBED_INTERLEAVED), inputs, request)
    elif isinstance(inputs[0], str):
        served = service.embed_texts(req.model, inputs, request)
    else:
        # OpenAI's clients send tiktoken's ids by default: taken only where ACCEPT_TOKEN_IDS says they are ours.
        served = service.embed_token_ids(req.model, inputs, request, foreign_guard=True)
    rows = encode_rows(served.result.vectors, req.encoding_format)
    return json_response(
        {
            # OpenAI's own answers have no id; the Mistral SDK (and vLLM's and Infinity's answers) have one
            "id": f"embd-{uuid.uuid4().hex}",
            "object": "list",
            "created": int(time.time()),
            "data": [{"object": "embedding", "index": i, "embedding": row} for i, row in enumerate(rows)],
            "model": served.model.name,
            "usage": usage(served.result.prompt_tokens),
        }
    )
