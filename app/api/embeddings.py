"""The embedding routes: OpenAI-compatible `/v1/embeddings` (texts, token ids, or images with
Infinity's `"modality": "image"`), native `/embed_text` (dense, sparse and ColBERT outputs), and
the shared body of /embed_text and the earlier BGE-M3 server's `/embed`."""

from __future__ import annotations

from flask import Blueprint

from ..errors import InvalidRequest
from . import context
from .encoding import encode_matrices, encode_rows, encode_sparse, json_response, usage
from .image_inputs import embed, embed_items, gather
from .multimodal_inputs import Item
from .observability import record_embedding
from .parsing import check_items, parse_json
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
    engine = context.engine()
    multimodal = isinstance(inputs[0], Item)
    wants = "embed:image" if req.modality == "image" else "embed:interleaved" if multimodal else "embed:text"
    model = engine.resolve(req.model, wants)
    options = {"dimensions": req.dimensions, "instruction": req.effective_instruction(), "is_query": req.is_query}
    if req.modality == "image":
        if not isinstance(inputs[0], str):
            raise InvalidRequest(
                "with modality 'image', input must be image URLs, data: URIs or base64 strings", param="input"
            )
        engine.require(model, "image", "input")  # a text-only model says so before anything is fetched
        result = embed(model, gather(inputs, "input"), "input", **options)
    elif multimodal:
        result = embed_items(model, inputs, "input", **options)
    else:
        settings = context.settings()
        check_items(inputs, settings, "input", req.effective_instruction(), "instruction")
        if isinstance(inputs[0], str):
            result = engine.embed_texts(model, inputs, truncation_direction=req.truncation_direction, **options)
        else:
            refuse_foreign_token_ids(settings, "input")
            result = engine.embed_token_ids(
                model, inputs, dimensions=req.dimensions, truncation_direction=req.truncation_direction
            )
        record_embedding(result, len(inputs))
    rows = encode_rows(result.vectors, req.encoding_format)
    return json_response(
        {
            "object": "list",
            "data": [{"object": "embedding", "index": i, "embedding": row} for i, row in enumerate(rows)],
            "model": model.name,
            "usage": usage(result.prompt_tokens),
        }
    )


def refuse_foreign_token_ids(settings, field: str) -> None:
    if not settings.accept_token_ids:
        raise InvalidRequest(
            f"{field} is token ids, and this server takes text: ids from another tokenizer (OpenAI's tiktoken, "
            "which LangChain's OpenAIEmbeddings sends by default) would be embedded as if they were this "
            "model's, a wrong answer without an error. Send the texts (LangChain: "
            "OpenAIEmbeddings(..., check_embedding_ctx_length=False)), or start the server with "
            "ACCEPT_TOKEN_IDS=true if the ids are this model's",
            param=field,
            code="token_ids_not_accepted",
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
    check_items(
        req.texts, context.settings(), "texts", req.prompt or req.instruction, "prompt" if req.prompt else "instruction"
    )
    engine = context.engine()
    model = engine.resolve(req.model, "embed:text")
    engine.check_outputs(model, outputs, "output_types" if req.output_types else "output_type")
    result = engine.embed_texts(
        model,
        req.texts,
        normalize=req.normalize,
        truncate=req.truncate,
        prompt=req.prompt,
        prompt_name=req.prompt_name,
        dimensions=req.dimensions,
        field="texts",
        outputs=frozenset(outputs),
        instruction=req.instruction,
        is_query=req.is_query,
        use_cache=req.cache,
        truncation_direction=req.truncation_direction,
        max_tokens=req.max_length,
    )
    record_embedding(result, len(req.texts))
    body = {"model": model.name}
    if "dense" in outputs:
        vectors = engine.quantize(
            model, result.vectors, req.precision, dimensions=req.dimensions, normalize=req.normalize
        )
        body["embeddings"] = encode_rows(vectors, req.encoding_format)
        body["dimension"] = int(result.vectors.shape[1])
        body["precision"] = req.precision
    if "sparse" in outputs:
        body["sparse"] = encode_sparse(result.sparse, model.token_strings if req.return_tokens else None)
    if "colbert" in outputs:
        body["colbert"] = encode_matrices(result.colbert, req.encoding_format)
        body["colbert_dimension"] = int(result.colbert[0].shape[1])
    body["usage"] = usage(result.prompt_tokens)
    return body
