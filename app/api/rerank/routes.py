"""The rerank routes: Jina's and Cohere's `/v1/rerank`, Cohere's `/v2/rerank`; the body of
text-embeddings-inference's `/rerank` (its route is in `tei`).

All three score every document against the query in one engine call (one
pair row per document, batched with other requests' rows) and answer best
first; they differ only in their shapes.
"""

from __future__ import annotations

import time
import uuid

import numpy as np
from flask import Blueprint

from ...engine.requests import ScoreRequest
from .. import service
from ..http.encoding import json_response, usage
from ..http.parsing import parse_json
from ..http.spec import operation
from .schemas import InfinityRerankRequest, RerankRequest, RerankResponse, TEIRerankRequest

bp = Blueprint("rerank", __name__)

_ERRORS = (400, 401, 404, 413, 415, 503)


def _rerank(model_name: str | None, query: str, documents: list[str], request: ScoreRequest):
    """One query's scores against `documents`, and the order best first (ties keep the caller's order)."""
    served = service.rerank(model_name, query, documents, request)
    scores = served.result.scores[0]
    order = np.argsort(-scores, kind="stable")
    return served.model, served.result, scores, order


def rerank_tei_body(req: TEIRerankRequest) -> list[dict]:
    """text-embeddings-inference's `/rerank` answer (its route is with TEI's others)."""
    request = ScoreRequest(
        field="texts",
        truncate=req.truncate,
        truncation_direction=req.truncation_direction,
        instruction=req.instruction,
        raw_scores=req.raw_scores,
        use_cache=req.cache,
    )
    _, _, scores, order = _rerank(req.model, req.query, req.texts, request)
    ranks = []
    for index in order.tolist():
        rank = {"index": index, "score": float(scores[index])}
        if req.return_text:
            rank["text"] = req.texts[index]
        ranks.append(rank)
    return ranks


def _ranked_documents(req: RerankRequest, document, raw_scores: bool = False):
    """A `documents` body's (Jina's, Cohere's, Infinity's) results, best first and cut to top_n, each with its
    document as `document(text)` shapes it when return_documents asks."""
    request = ScoreRequest(
        field="documents",
        instruction=req.instruction,
        max_document_tokens=req.max_tokens_per_doc,
        raw_scores=raw_scores,
        use_cache=req.cache,
    )
    model, result, scores, order = _rerank(req.model, req.query, req.documents, request)
    results = []
    for index in order.tolist()[: req.top_n]:
        item = {"index": index, "relevance_score": float(scores[index])}
        if req.return_documents:
            item["document"] = document(req.documents[index])
        results.append(item)
    return model, result, results


def rerank_infinity_body(req: InfinityRerankRequest) -> dict:
    """Infinity's `/rerank` answer: its `document` is the text itself (Jina's, Cohere's and vLLM's is an object,
    on /v1/rerank and /v2/rerank)."""
    model, result, results = _ranked_documents(req, str, req.raw_scores)
    return {
        "object": "rerank",
        "results": results,
        "model": model.name,
        "usage": usage(result.prompt_tokens),
        "id": f"rerank-{uuid.uuid4().hex}",
        "created": int(time.time()),
    }


def _cohere_shaped(version: str):
    model, result, results = _ranked_documents(parse_json(RerankRequest), lambda text: {"text": text})
    return json_response(
        {
            "id": str(uuid.uuid4()),
            "model": model.name,
            "results": results,
            "usage": usage(result.prompt_tokens),
            "meta": {"api_version": {"version": version}, "billed_units": {"search_units": 1}},
        }
    )


@bp.post("/v1/rerank")
@operation(
    summary="Rerank documents against a query (Jina's and Cohere's v1 shape)",
    request=RerankRequest,
    response=RerankResponse,
    auth=True,
    tags=("rerank",),
    errors=_ERRORS,
)
def rerank_v1():
    return _cohere_shaped("1")


@bp.post("/v2/rerank")
@operation(
    summary="Rerank documents against a query (Cohere's v2 shape)",
    request=RerankRequest,
    response=RerankResponse,
    auth=True,
    tags=("rerank",),
    errors=_ERRORS,
)
def rerank_v2():
    return _cohere_shaped("2")
