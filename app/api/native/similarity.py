"""`POST /similarity`: score matrices between any two kinds of input (texts, images, audio, videos; texts and
documents), or one kind and itself.

Dense scores are cosines. For BGE-M3-style models, `output_types` adds the
lexical matching score of sparse weights and ColBERT's late-interaction
(MaxSim) score, and a weighted `hybrid` of the requested ones, as BGE-M3's
`compute_score` combines them.
"""

from __future__ import annotations

import numpy as np
from flask import Blueprint

from ...engine.capabilities import COLBERT_IMAGE, EMBED_IMAGE
from ...engine.requests import EmbedRequest, ScoreRequest
from ...errors import InvalidRequest, PayloadTooLarge
from .. import service
from ..http import context
from ..http.encoding import json_response, usage
from ..http.image_inputs import gather
from ..http.parsing import parse_object, validate
from ..http.spec import operation
from ..tei import routes as tei
from .schemas import SimilarityRequest, SimilarityResponse
from .scores import lexical_score, maxsim_score

bp = Blueprint("similarity", __name__)

# BGE-M3's defaults for combining its three scores.
DEFAULT_WEIGHTS = {"dense": 0.4, "sparse": 0.2, "colbert": 0.4}
# The kinds of input a matrix's rows or columns may be, in the order rows are taken; the media ones need these.
KINDS = ("texts", "images", "audio", "videos", "documents")
# a media kind's field -> the medium (service.MEDIA)
MEDIA = {"images": "image", "audio": "audio", "videos": "video"}


@bp.post("/similarity")
@operation(
    summary="Similarity of texts x images, texts x documents, or texts (images) among themselves; "
    "with a reranker, the relevance of every document to every text",
    request=SimilarityRequest,
    response=SimilarityResponse,
    auth=True,
    tags=("native",),
    errors=(400, 401, 404, 413, 415),
)
def similarity():
    body = parse_object()
    if "inputs" in body:  # text-embeddings-inference's body: {"inputs": {"source_sentence", "sentences"}}
        return tei.similarity(body)
    req = validate(SimilarityRequest, body)
    kinds = [kind for kind in KINDS if getattr(req, kind)]
    if not kinds:
        raise InvalidRequest("send texts, images, audio or videos: one kind, or two (rows and columns)", param="texts")
    if len(kinds) > 2:
        raise InvalidRequest(
            f"give at most two kinds of input, the rows and the columns; got {', '.join(kinds)}", param=kinds[-1]
        )
    media = [kind for kind in kinds if kind in MEDIA]
    model = service.pick(req.model, service.MEDIA[MEDIA[media[0]]].capability if media else None)
    for kind in media:
        if kind != "images":
            service.check(model, service.MEDIA[MEDIA[kind]].capability, kind)
    if req.images and service.scores_late(model):
        return _late_image_matrix(model, req)
    outputs = list(dict.fromkeys(req.output_types or ["dense"]))
    if media and outputs != ["dense"]:
        raise InvalidRequest(
            "images, audio and videos have dense vectors only; output_types applies to texts", param="output_types"
        )
    if service.is_reranker(model) or service.scores_late(model):
        return _reranker_matrix(model, req)
    if req.images:
        service.check(model, EMBED_IMAGE, "images")
    for output in outputs:
        if output != "dense":
            service.check(model, output, "output_types")

    def embed(kind: str):
        request = EmbedRequest(field=kind, outputs=frozenset(outputs), use_cache=req.cache)
        values = getattr(req, kind)
        if kind in MEDIA:
            medium = service.MEDIA[MEDIA[kind]]
            return medium.embed(model, medium.gather(values, kind), request).result
        return service.embed_texts(model, values, request).result

    sides = [embed(kind) for kind in kinds]
    rows, columns = sides[0], sides[-1]
    scores = {output: _score(output, rows, columns) for output in outputs}
    if len(outputs) > 1:
        weights = {**DEFAULT_WEIGHTS, **(req.weights or {})}
        total = sum(weights[o] for o in outputs)
        # Denormal weights (1e-320) would divide into infinities and NaN scores.
        if total < 1e-6:
            raise InvalidRequest(
                "the weights of the requested output types sum to (almost) 0; give at least one weight of 1e-6 or more",
                param="weights",
            )
        scores["hybrid"] = sum(weights[o] * scores[o] for o in outputs) / total
    matrix = scores["hybrid"] if len(outputs) > 1 else scores[outputs[0]]
    body = {
        "model": model.name,
        "similarity_matrix": matrix,
        "shape": [int(matrix.shape[0]), int(matrix.shape[1])],
        "usage": usage(sum(side.prompt_tokens for side in sides)),
    }
    if req.output_types:
        body["scores"] = scores
    return json_response(body)


def _reranker_matrix(model, req: SimilarityRequest):
    """A reranker scores every text (as a query) against every document: the relevance matrix. A late-interaction
    model does too, by MaxSim, and scores texts (as queries) against themselves (as documents) when no
    documents are given."""
    late = service.scores_late(model)
    documents = req.documents or (req.texts if late else None)
    if req.images or req.audio or req.videos or not documents:
        raise InvalidRequest(
            f"the model {model.name!r} is a reranker: send texts (queries) and documents",
            param="documents" if not req.images else "images",
            code="unsupported_task",
        )
    if req.output_types and not (late and req.output_types == ["colbert"]):
        what = "scores by MaxSim (output_types colbert)" if late else "has one score per pair"
        raise InvalidRequest(f"the model {model.name!r} {what}; output_types does not apply", param="output_types")
    settings = context.settings()
    service.check_sizes(req.texts, "texts")
    service.check_sizes(documents, "documents")
    _check_pairs(len(req.texts), len(documents), "documents")
    characters = len(documents) * sum(map(len, req.texts)) + len(req.texts) * sum(map(len, documents))
    if characters > settings.max_request_chars:
        raise PayloadTooLarge(
            f"every text paired with every document makes {characters} characters to score; at "
            f"most {settings.max_request_chars} are allowed per request (MAX_REQUEST_CHARS)",
            param="documents",
            code="request_too_large",
        )
    result = service.score_pairs(model, req.texts, documents, ScoreRequest(use_cache=req.cache)).result
    matrix = result.scores
    return json_response(
        {
            "model": model.name,
            "similarity_matrix": matrix,
            "shape": [int(matrix.shape[0]), int(matrix.shape[1])],
            "usage": usage(result.prompt_tokens),
        }
    )


def _late_image_matrix(model, req: SimilarityRequest):
    """A visual late-interaction model scores every text (a query) against every image (a page: a PDF gives a
    column per page, which `pages` names) by MaxSim."""
    service.check(model, COLBERT_IMAGE, "images")
    if not req.texts:
        raise InvalidRequest(
            f"the model {model.name!r} scores text queries against page images: send texts and images",
            param="texts",
            code="unsupported_task",
        )
    if req.output_types and req.output_types != ["colbert"]:
        raise InvalidRequest(
            f"the model {model.name!r} scores by MaxSim (output_types colbert); output_types does not apply",
            param="output_types",
        )
    service.check_sizes(req.texts, "texts")
    images = gather(req.images, "images")
    _check_pairs(len(req.texts), len(images), "images")
    result = service.score_images(model, req.texts, images, ScoreRequest(field="images", use_cache=req.cache)).result
    matrix = result.scores
    _check_pairs(*matrix.shape, "images")  # a PDF's pages are columns: counted again once rendered
    body = {
        "model": model.name,
        "similarity_matrix": matrix,
        "shape": [int(matrix.shape[0]), int(matrix.shape[1])],
        "usage": usage(result.prompt_tokens),
    }
    if result.sources is not None:
        body["pages"] = [{"input": index, "page": page} for index, page in result.sources]
    return json_response(body)


def _check_pairs(rows: int, columns: int, field: str) -> None:
    limit = context.settings().max_batch_items
    if rows * columns > limit:
        raise InvalidRequest(
            f"{rows} texts x {columns} {field} are {rows * columns} pairs to score; at most {limit} are allowed "
            "per request (MAX_BATCH_ITEMS)",
            param=field,
            code="too_many_items",
        )


def _score(output: str, rows, columns) -> np.ndarray:
    if output == "dense":  # both sides normalised: the product is the cosine
        return rows.vectors @ columns.vectors.T
    if output == "sparse":
        pairs = [[lexical_score(a, b) for b in columns.sparse] for a in rows.sparse]
    else:
        pairs = [[maxsim_score(q, d) for d in columns.colbert] for q in rows.colbert]
    return np.array(pairs, dtype=np.float32).reshape(len(rows.vectors), len(columns.vectors))
