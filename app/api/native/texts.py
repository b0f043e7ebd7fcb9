"""Native `/embed_text` (dense, sparse and ColBERT outputs, quantized vectors), and its body, which the
earlier BGE-M3 server's `/embed` shares."""

from __future__ import annotations

from flask import Blueprint

from ...engine.requests import EmbedRequest
from .. import service
from ..http.encoding import encode_rows, encode_sparse, json_response, multi_vector_fields, usage
from ..http.parsing import parse_json
from ..http.spec import operation
from .schemas import EmbedTextRequest, EmbedTextResponse

bp = Blueprint("embeddings", __name__)


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
        sparse_top_k=req.sparse_top_k,
        sparse_min_weight=req.sparse_min_weight,
        pool_factor=req.colbert_pool_factor,
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
        body.update(multi_vector_fields(result.colbert, req.encoding_format, req.colbert_precision))
    body["usage"] = usage(result.prompt_tokens)
    return body
