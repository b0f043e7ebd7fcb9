"""Request ids, per-stage timing headers, Prometheus metrics, one log line per request, /metrics and /stats."""

from __future__ import annotations

import logging
import re
import time
import uuid
from dataclasses import dataclass

from flask import Blueprint, Flask, Response, g, request

from ... import metrics
from ..operations.schemas import MetricsText, StatsResponse
from . import context
from .encoding import json_response
from .spec import operation

access_log = logging.getLogger("app.access")
bp = Blueprint("observability", __name__)

_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


@dataclass(frozen=True)
class _Recorded:
    """What a request embedded, summed over its engine calls (/similarity makes two)."""

    items: int = 0
    prompt_tokens: int = 0
    tokenize: float = 0.0
    queue: float = 0.0
    inference: float = 0.0
    cache: str | None = None  # hit, partial or miss over all of the request's engine calls
    model: str = ""


def record_error(error) -> None:
    """Called by every error handler: the access log's one line for a refused request says why."""
    g.error = (error.code, error.message[:300])


def record_embedding(result, items: int, modality: str = "text") -> None:
    """Called by the embedding views with each of the engine's results."""
    before = g.get("embedding") or _Recorded()
    timings = result.timings
    g.embedding = _Recorded(
        before.items + items,
        before.prompt_tokens + result.prompt_tokens,
        before.tokenize + timings.tokenize,
        before.queue + timings.queue,
        before.inference + timings.inference,
        _combined(before.cache, getattr(result, "cache", None)),
        result.model,
    )
    metrics.observe_embedding(result.model, items, result.prompt_tokens, timings, modality)


def _combined(before: str | None, now: str | None) -> str | None:
    if before is None or now is None:
        return now if before is None else before
    return before if before == now else "partial"


def init_observability(app: Flask, settings, engine) -> None:
    log_requests = settings.log_requests
    compute_type = getattr(engine, "device", "cpu")

    @app.before_request
    def _start():
        g.started = time.perf_counter()
        offered = request.headers.get("X-Request-ID", "")
        g.request_id = offered if _REQUEST_ID.match(offered) else uuid.uuid4().hex
        metrics.IN_FLIGHT.inc()
        g.counted_in_flight = True

    @app.after_request
    def _finish(response: Response) -> Response:
        total = time.perf_counter() - g.get("started", time.perf_counter())
        response.headers["X-Request-ID"] = g.get("request_id", "")
        response.headers["X-Total-Time"] = _ms(total)
        embedding = g.get("embedding")
        fields = {}
        if embedding is not None:
            response.headers["X-Tokenization-Time"] = _ms(embedding.tokenize)
            response.headers["X-Queue-Time"] = _ms(embedding.queue)
            response.headers["X-Inference-Time"] = _ms(embedding.inference)
            response.headers["X-Compute-Tokens"] = str(embedding.prompt_tokens)
            response.headers["X-Compute-Type"] = compute_type
            if embedding.cache is not None:
                response.headers["X-Cache"] = embedding.cache
            fields = {
                "items": embedding.items,
                "tokens": embedding.prompt_tokens,
                "queue_ms": round(embedding.queue * 1e3, 3),
                "inference_ms": round(embedding.inference * 1e3, 3),
            }
        error = g.get("error")
        if error is not None:
            fields["error_code"], fields["error"] = error
        route = request.url_rule.rule if request.url_rule is not None else "unmatched"
        metrics.observe_request(route, request.method, response.status_code, total)
        if log_requests:
            access_log.info(
                "%s %s %d %.1fms",
                request.method,
                request.path,
                response.status_code,
                total * 1e3,
                extra={
                    "request_id": g.get("request_id"),
                    "method": request.method,
                    "path": request.path,
                    "status": response.status_code,
                    "duration_ms": round(total * 1e3, 3),
                    "remote_addr": request.remote_addr,
                    **fields,
                },
            )
        return response

    @app.teardown_request
    def _leave(_exc):
        if g.pop("counted_in_flight", False):
            metrics.IN_FLIGHT.dec()

    app.register_blueprint(bp)


def _ms(seconds: float) -> str:
    return f"{seconds * 1e3:.3f}"


@bp.get("/metrics")
@operation(
    summary="Prometheus metrics from all workers together",
    response=MetricsText,
    media_type="text/plain",
    tags=("operations",),
)
def prometheus_metrics():
    body, content_type = metrics.render()
    return Response(body, content_type=content_type)


@bp.get("/stats")
@operation(
    summary="Resolved configuration and this worker's device, model size, queue and batches",
    response=StatsResponse,
    auth=True,
    tags=("operations",),
    errors=(401,),
)
def stats():
    return json_response({"settings": context.settings().public_dict(), "worker": context.engine().describe_runtime()})
