"""The classification routes: Infinity's `/classify`, the native `/classify_text` (top-k, a threshold,
pairs), and the bodies of text-embeddings-inference's `/predict` and of `POST /` for a classifier (their
routes are with TEI's others). All of them classify through `service.classify`: one row per text or pair,
batched with other requests' rows."""

from __future__ import annotations

import time
import uuid

import numpy as np
from flask import Blueprint

from ...engine.classification import apply
from ...engine.requests import ScoreRequest
from .. import service
from ..http.encoding import json_response, usage
from ..http.parsing import parse_json, validate
from ..http.spec import operation
from .schemas import (
    ClassifyRequest,
    ClassifyResponse,
    ClassifyTextRequest,
    ClassifyTextResponse,
    InferenceRequest,
    PredictRequest,
    classify_inputs,
)

bp = Blueprint("classify", __name__)

_ERRORS = (400, 401, 404, 413, 415, 503)


def ranked(scores: np.ndarray, labels: list[str], top_k: int | None = None, threshold: float | None = None):
    """Per input, its labels best first as {"label", "score"} (ties keep the model's label order)."""
    out = []
    for row in scores:
        order = np.argsort(-row, kind="stable")[:top_k]
        out.append(
            [
                {"label": labels[i], "score": float(row[i])}
                for i in order.tolist()
                if threshold is None or row[i] >= threshold
            ]
        )
    return out


def _score_first(rows: list[list[dict]]) -> list[list[dict]]:
    """`ranked`'s rows as TEI and Infinity write each label: {"score", "label"}."""
    return [[{"score": p["score"], "label": p["label"]} for p in row] for row in rows]


def _classify(name, inputs, *, raw_scores=False, truncate=True, direction="right", field="inputs", cache=True):
    request = ScoreRequest(
        field=field, truncate=truncate, truncation_direction=direction, raw_scores=raw_scores, use_cache=cache
    )
    return service.classify(name, inputs, request)


def predict_tei_body(req: PredictRequest):
    """text-embeddings-inference's `/predict` answer: every label best first, a list per input for a batch."""
    inputs, batch = req.batch()
    served = _classify(
        req.model, inputs, raw_scores=req.raw_scores, truncate=req.truncates, direction=req.truncation_direction
    )
    predictions = _score_first(ranked(served.result.scores, served.result.labels))
    return predictions if batch else predictions[0]


def inference_api_body(body: dict):
    """The Hugging Face Inference API's text classification (what huggingface_hub's `text_classification`
    reads): a list of labels, best first, per input; `parameters.function_to_apply` on the logits."""
    req = validate(InferenceRequest, body)
    parameters = req.parameters
    inputs = classify_inputs(req.inputs if isinstance(req.inputs, list) else [req.inputs], "inputs")
    function = parameters.function_to_apply if parameters else None
    served = _classify(req.model, inputs, raw_scores=function is not None)
    scores = served.result.scores if function is None else apply(function, served.result.scores)
    return ranked(scores, served.result.labels, parameters.top_k if parameters else None)


@bp.post("/classify")
@operation(
    summary="Classify texts (Infinity's shape): every label's score, best first",
    request=ClassifyRequest,
    response=ClassifyResponse,
    auth=True,
    tags=("classify",),
    errors=_ERRORS,
)
def classify():
    req = parse_json(ClassifyRequest)
    served = _classify(req.model, req.input, raw_scores=req.raw_scores, field="input")
    return json_response(
        {
            "object": "classify",
            "data": _score_first(ranked(served.result.scores, served.result.labels)),
            "model": served.model.name,
            "usage": usage(served.result.prompt_tokens),
            "id": f"infinity-{uuid.uuid4()}",
            "created": int(time.time()),
        }
    )


@bp.post("/classify_text")
@operation(
    summary="Classify texts and text pairs: each input's labels best first, with top_k and a threshold",
    request=ClassifyTextRequest,
    response=ClassifyTextResponse,
    auth=True,
    tags=("native",),
    errors=_ERRORS,
)
def classify_text():
    req = parse_json(ClassifyTextRequest)
    served = _classify(
        req.model,
        req.texts,
        raw_scores=req.raw_scores,
        truncate=req.truncates,
        direction=req.truncation_direction,
        field="texts",
        cache=req.cache,
    )
    result = served.result
    return json_response(
        {
            "model": served.model.name,
            "labels": list(result.labels),
            "predictions": ranked(result.scores, result.labels, req.top_k, req.threshold),
            "usage": usage(result.prompt_tokens),
        }
    )
