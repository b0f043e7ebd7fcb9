"""text-embeddings-inference's API, for its clients (huggingface_hub's InferenceClient, LlamaIndex's and
LangChain's TEI embeddings): `/embed`, `/embed_all`, `/embed_sparse`, `/rerank`, `/predict`, `/tokenize`,
`/decode`, `/info`, `POST /` (by what the body holds and the model it goes to), and `/similarity` with
TEI's body.

Errors on these routes are TEI's `{"error", "error_type"}` with its status codes:
422 for an invalid input, 400 for an empty one, 413 for a too large one.

`/embed` is also the earlier BGE-M3 server's route: a body with `texts` (not
`inputs`) is that server's request, answered as `/embed_text` answers it.
"""

from __future__ import annotations

import functools

import numpy as np
from flask import Blueprint, Response, request

from ...engine.errors import EngineError
from ...engine.requests import EmbedRequest
from ...errors import ServiceError, as_service_error
from ...version import __version__
from .. import service
from ..classify.routes import inference_api_body, predict_tei_body
from ..classify.schemas import PredictRequest, PredictResponse
from ..cohere.routes import embed_at_root
from ..http import context
from ..http.encoding import json_response
from ..http.fields import EMPTY
from ..http.observability import record_error
from ..http.parsing import parse_object, validate
from ..http.spec import operation
from ..native.schemas import EmbedTextRequest
from ..native.texts import embed_text_body
from ..rerank.routes import rerank_infinity_body, rerank_tei_body
from ..rerank.schemas import InfinityRerankRequest, RerankAnswers, RerankBodies, TEIRerankRequest
from .schemas import (
    DecodeRequest,
    DecodeResponse,
    EmbedSparseResponse,
    SimilarityParameters,
    TEIEmbedAllResponse,
    TEIEmbedRequest,
    TEIEmbedResponse,
    TEIError,
    TEIInfo,
    TEIOrCohereError,
    TEIOrNativeError,
    TEISimilarityRequest,
    TEISparseRequest,
    TEITextsRequest,
    TokenizeRequest,
    TokenizeResponse,
)

bp = Blueprint("tei", __name__)

_ERRORS = (400, 401, 404, 413, 415, 422, 503)


def tei_error(error: ServiceError) -> Response:
    record_error(error)
    status, kind = error.status, "Backend"
    if error.code == EMPTY:
        status, kind = 400, "Empty"
    elif error.code == "too_many_items":  # TEI's batch size error
        status, kind = 413, "Validation"
    elif error.status == 400:
        status, kind = 422, "Validation"
    elif error.status in (404, 413, 415):
        kind = "Validation"
    elif error.status == 503:
        kind = "Overloaded" if error.code == "overloaded" else "Unhealthy"
    return json_response({"error": error.message, "error_type": kind}, status=status, headers=error.headers)


def speaks_tei(view):
    """The view's errors in TEI's shape (a blueprint handler would also catch the BGE-M3 shape on /embed)."""

    @functools.wraps(view)
    def wrapped(*args, **kwargs):
        try:
            return view(*args, **kwargs)
        except (ServiceError, EngineError) as error:
            return tei_error(as_service_error(error))

    return wrapped


# ---------------------------------------------------------------- the routes
@bp.post("/embed")
@operation(
    summary="Embed (text-embeddings-inference's shape: `inputs`); with `texts`, the earlier BGE-M3 "
    "server's shape, answered as /embed_text",
    request=TEIEmbedRequest,
    response=TEIEmbedResponse,
    auth=True,
    tags=("tei",),
    errors=_ERRORS,
    error=TEIError,
)
def embed():
    try:
        body = parse_object()
    except ServiceError as error:
        return tei_error(error)
    if "texts" in body and "inputs" not in body:
        return json_response(embed_text_body(validate(EmbedTextRequest, body)))
    return _tei_embed(body)


@speaks_tei
def _tei_embed(body: dict):
    req = validate(TEIEmbedRequest, body)
    request = EmbedRequest(
        field="inputs",
        truncate=req.truncates,
        truncation_direction=req.truncation_direction,
        prompt_name=req.prompt_name,
        normalize=req.normalize,
        dimensions=req.dimensions,
    )
    if isinstance(req.inputs[0], str):
        served = service.embed_texts(req.model, req.inputs, request)
    else:
        # TEI's clients get their ids from this model's /tokenize; ACCEPT_TOKEN_IDS guards the OpenAI route,
        # where clients send OpenAI's tiktoken ids by default.
        served = service.embed_token_ids(req.model, req.inputs, request)
    return json_response(served.result.vectors)


def _embed_texts_for(req: TEITextsRequest, output: str, **options):
    """/embed_all's and /embed_sparse's shared part: TEI's texts, embedded for one output."""
    request = EmbedRequest(
        field="inputs",
        truncate=req.truncates,
        truncation_direction=req.truncation_direction,
        prompt_name=req.prompt_name,
        outputs=frozenset({output}),
        **options,
    )
    return service.embed_texts(req.model, req.inputs, request, capability=output).result


@bp.post("/embed_all")
@operation(
    summary="Every token's vector, before pooling (text-embeddings-inference's shape)",
    request=TEITextsRequest,
    response=TEIEmbedAllResponse,
    auth=True,
    tags=("tei",),
    errors=_ERRORS,
    error=TEIError,
)
@speaks_tei
def embed_all():
    req = validate(TEITextsRequest, parse_object())
    return json_response(_embed_texts_for(req, "tokens", normalize=False, use_cache=False).tokens)


@bp.post("/embed_sparse")
@operation(
    summary="Sparse vectors: a sparse encoder's (SPLADE) or BGE-M3's lexical weights (text-embeddings-inference's "
    "shape)",
    request=TEISparseRequest,
    response=EmbedSparseResponse,
    auth=True,
    tags=("tei",),
    errors=_ERRORS,
    error=TEIError,
)
@speaks_tei
def embed_sparse():
    req = validate(TEISparseRequest, parse_object())
    result = _embed_texts_for(req, "sparse", sparse_top_k=req.sparse_top_k, sparse_min_weight=req.sparse_min_weight)
    return json_response(
        [
            [{"index": index, "value": value} for index, value in zip(ids.tolist(), values.tolist())]
            for ids, values in result.sparse
        ]
    )


@bp.post("/rerank")
@operation(
    summary="Rerank texts against a query: text-embeddings-inference's shape (`texts`), or with `documents` "
    "Infinity's (also what vLLM's clients post here), in its answer and error shapes",
    request=RerankBodies,
    response=RerankAnswers,
    auth=True,
    tags=("tei",),
    errors=_ERRORS,
    error=TEIOrNativeError,
)
def rerank():
    try:
        body = parse_object()
    except ServiceError as error:
        return tei_error(error)
    if "documents" in body and "texts" not in body:
        return json_response(rerank_infinity_body(validate(InfinityRerankRequest, body)))
    return _tei_rerank(body)


@speaks_tei
def _tei_rerank(body: dict):
    return json_response(rerank_tei_body(validate(TEIRerankRequest, body)))


@bp.post("/predict")
@operation(
    summary="Classify a text, a pair [text, text pair] or a batch of them (text-embeddings-inference's shape): "
    "every label's score, best first",
    request=PredictRequest,
    response=PredictResponse,
    auth=True,
    tags=("tei",),
    errors=_ERRORS,
    error=TEIError,
)
@speaks_tei
def predict():
    return json_response(predict_tei_body(validate(PredictRequest, parse_object())))


@speaks_tei
def similarity(body: dict):
    """TEI's `/similarity` (routed by body from `/similarity` and `POST /`): each sentence's cosine to the source."""
    req = validate(TEISimilarityRequest, body)
    parameters = req.parameters or SimilarityParameters()
    texts = [req.inputs.source_sentence, *req.inputs.sentences]
    request = EmbedRequest(
        field="inputs.sentences",
        truncate=parameters.truncates,
        truncation_direction=parameters.truncation_direction,
        prompt_name=parameters.prompt_name,
    )
    vectors = service.embed_texts(req.model or parameters.model, texts, request).result.vectors
    # L2-normalised: a dot product is the cosine
    return json_response(np.clip(vectors[1:] @ vectors[0], -1.0, 1.0))


@bp.post("/tokenize")
@operation(
    summary="How the model's tokenizer splits texts (text-embeddings-inference's shape)",
    request=TokenizeRequest,
    response=TokenizeResponse,
    auth=True,
    tags=("tei",),
    errors=_ERRORS,
    error=TEIError,
)
@speaks_tei
def tokenize():
    req = validate(TokenizeRequest, parse_object())
    return json_response(
        service.tokenize(req.model, req.inputs, add_special_tokens=req.add_special_tokens, prompt_name=req.prompt_name)
    )


@bp.post("/decode")
@operation(
    summary="Token ids back to text (text-embeddings-inference's shape)",
    request=DecodeRequest,
    response=DecodeResponse,
    auth=True,
    tags=("tei",),
    errors=_ERRORS,
    error=TEIError,
)
@speaks_tei
def decode():
    req = validate(DecodeRequest, parse_object())
    return json_response(service.decode(req.model, req.ids, skip_special_tokens=req.skip_special_tokens))


@bp.get("/info")
@operation(
    summary="The served model and the server's limits (text-embeddings-inference's shape; ?model= picks "
    "another served model)",
    response=TEIInfo,
    auth=True,
    tags=("tei",),
    errors=(404,),
    error=TEIError,
)
@speaks_tei
def info():
    engine = context.engine()
    settings = context.settings()
    model = service.pick(request.args.get("model"))
    card = model.describe()
    if "rerank" in card["capabilities"] or service.is_classifier(model):
        labels = list(getattr(model, "labels", None) or ["LABEL_0"])  # an LLM reranker's one score
        kind = "reranker" if "rerank" in card["capabilities"] else "classifier"
        model_type = {
            kind: {
                "id2label": {str(i): label for i, label in enumerate(labels)},
                "label2id": {label: i for i, label in enumerate(labels)},
            }
        }
    else:
        model_type = {"embedding": {"pooling": (card.get("pooling") or ["mean"])[0]}}
    return json_response(
        {
            "model_id": model.name,
            # TEI's hub revision; here the hash of the model directory's bytes (the cache's fingerprint), which
            # tells two copies of a model apart from two models: bulk jobs record it beside their vectors
            "model_sha": getattr(engine, "fingerprints", {}).get(model.name),
            "model_dtype": engine.health()["dtype"],
            "served_model_name": model.name,
            "model_type": model_type,
            "max_concurrent_requests": settings.max_queue,
            "max_input_length": card["max_input_tokens"],
            "max_batch_tokens": settings.max_batch_tokens,
            "max_batch_requests": settings.max_batch_size,
            "max_client_batch_size": settings.max_batch_items,
            "auto_truncate": True,
            "tokenization_workers": 1,
            # not TEI's: the gunicorn workers behind this address, which a bulk job sizes its concurrency by
            "workers": settings.resolved_workers(),
            # not TEI's: what the model takes (text, image, audio)
            "modalities": card.get("modalities", ["text"]),
            "version": __version__,
            "sha": None,
            "docker_label": None,
        }
    )


@bp.post("/")
@operation(
    summary="What text-embeddings-inference's root does, by the body: `inputs.source_sentence` -> "
    "similarity, `query` and `texts` -> rerank, `inputs` -> embed, or for a classifier every label's score "
    "per input in the Hugging Face Inference API's shape (huggingface_hub's text_classification); a Cohere "
    "embed body (`texts` or `images`, no `inputs`) -> Cohere's embed, v2's answer with `embedding_types`",
    request=TEIEmbedRequest,
    response=TEIEmbedResponse,
    auth=True,
    tags=("tei",),
    errors=_ERRORS,
    error=TEIOrCohereError,
)
@speaks_tei
def root():
    body = parse_object()
    if isinstance(body.get("inputs"), dict):
        return similarity(body)
    if "query" in body:
        return json_response(rerank_tei_body(validate(TEIRerankRequest, body)))
    if "inputs" not in body and ("texts" in body or "images" in body):
        return embed_at_root(body)  # Cohere's body, from a client given the full embed URL as its base
    name = body.get("model")
    if service.is_classifier(service.pick(name if isinstance(name, str) else None)):
        return json_response(inference_api_body(body))
    return _tei_embed(body)
