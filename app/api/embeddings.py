"""The embedding routes: OpenAI-compatible `/v1/embeddings` (texts, token ids, or images with
Infinity's `"modality": "image"`), native `/embed_text` (dense, sparse and ColBERT outputs), and
the shared body of /embed_text and the earlier BGE-M3 server's `/embed`."""

from __future__ import annotations

from flask import Blueprint

from ..engine.capabilities import EMBED_IMAGE, EMBED_INTERLEAVED
from ..engine.requests import EmbedRequest
from ..errors import InvalidRequest
from . import service
from .encoding import encode_matrices, encode_rows, encode_sparse, json_response, usage
from .image_inputs import gather
from .multimodal_inputs import Item
from .parsing import parse_json
from .schemas import EmbedTextRequest, EmbedTextResponse, OpenAIEmbeddingRequest, OpenAIEmbeddingResponse
from .spec import operation

bp = Blueprint("embeddings", __name__)


@bp.post("/v1/embeddings")
@operation(
    summary="Create embeddings (OpenAI-compatible)",
    request=OpenAIEmbeddingRequest,
    response=OpenAIEmbeddingResponse,
    auth=True,
    tags=("openai",),
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
    )
    if req.modality == "image":
        model = service.pick(req.model, EMBED_IMAGE)
        if not isinstance(inputs[0], str):
            raise InvalidRequest(
                "with modality 'image', input must be image URLs, data: URIs or base64 strings", param="input"
            )
        service.check(model, EMBED_IMAGE, "input")  # a text-only model says so before anything is fetched
        served = service.embed_images(model, gather(inputs, "input"), request)
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
            "object": "list",
            "data": [{"object": "embedding", "index": i, "embedding": row} for i, row in enumerate(rows)],
            "model": served.model.name,
            "usage": usage(served.result.prompt_tokens),
        }
    )


@bp.post("/embed_text")
@operation(
    summary="Embed texts (native)",
    request=EmbedTextRequest,
    response=EmbedTextResponse,
    auth=True,
    tags=("native",),
    errors=(400, 401, 404, 413, 415),
)
def embed_text():
    return json_response(embed_text_body(parse_json(EmbedTextRequest)))


def embed_text_body(req: EmbedTextRequest) -> dict:
    """/embed_text's answer; also the earlier BGE-M3 server's `/embed`, whose body is /embed_text's."""
    outputs = req.requested_outputs()
    request = EmbedRequest(
        field="texts",
        truncate=req.truncate,
        truncation_direction=req.truncation_direction,
        max_tokens=req.max_length,
        prompt=req.prompt,
        prompt_name=req.prompt_name,
        instruction=req.instruction,
        is_query=req.is_query,
        outputs=frozenset(outputs),
        outputs_field="output_types" if req.output_types else "output_type",
        normalize=req.normalize,
        dimensions=req.dimensions,
        use_cache=req.cache,
    )
    served = service.embed_texts(req.model, req.texts, request)
    result = served.result
    body = {"model": served.model.name}
    if "dense" in outputs:
        body["embeddings"] = encode_rows(service.quantize(served, req.precision, request), req.encoding_format)
        body["dimension"] = int(result.vectors.shape[1])
        body["precision"] = req.precision
    if "sparse" in outputs:
        body["sparse"] = encode_sparse(result.sparse, served.model.token_strings if req.return_tokens else None)
    if "colbert" in outputs:
        body["colbert"] = encode_matrices(result.colbert, req.encoding_format)
        body["colbert_dimension"] = int(result.colbert[0].shape[1])
    body["usage"] = usage(result.prompt_tokens)
    return body
