"""Prometheus metrics, aggregated over every gunicorn worker.

Multiprocess mode: gunicorn.conf.py points PROMETHEUS_MULTIPROC_DIR at a
fresh directory before anything imports prometheus_client, each worker writes
its own files there, `child_exit` marks dead workers, and /metrics merges
them. Without that variable (tests, `flask run`) the ordinary in-process
registry is used.
"""

from __future__ import annotations

import os

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)

from .engine.results import EngineObserver
from .process_metrics import refresh_memory

LATENCY = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
SIZES = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048)
TOKENS = (8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192, 16384, 65536)

REQUESTS = Counter("embedding_requests_total", "HTTP requests answered.", ["route", "method", "status"])
REQUEST_SECONDS = Histogram(
    "embedding_request_duration_seconds", "Whole request time, parse to response.", ["route"], buckets=LATENCY
)
# Everything about model work carries the served model's name: one instance serves several.
TOKENIZE_SECONDS = Histogram(
    "embedding_tokenize_duration_seconds", "Tokenisation / preprocessing per request.", ["model"], buckets=LATENCY
)
QUEUE_SECONDS = Histogram(
    "embedding_queue_duration_seconds", "Time a request waited for the model.", ["model"], buckets=LATENCY
)
INFERENCE_SECONDS = Histogram(
    "embedding_inference_duration_seconds", "Model time per request.", ["model"], buckets=LATENCY
)
BATCH_SIZE = Histogram("embedding_batch_size", "Inputs per forward pass.", ["model"], buckets=SIZES)
BATCH_TOKENS = Histogram(
    "embedding_batch_tokens", "Real (unpadded) tokens per forward pass.", ["model"], buckets=TOKENS
)
REQUEST_ITEMS = Histogram("embedding_request_items", "Inputs per request.", ["model"], buckets=SIZES)
INPUT_TOKENS = Counter(
    "embedding_input_tokens_total", "Tokens embedded, special tokens included (image patches for images).", ["model"]
)
INPUTS = Counter("embedding_inputs_total", "Inputs embedded, by modality and model.", ["modality", "model"])
CACHE_LOOKUPS = Counter(
    "embedding_cache_lookups_total", "Cache lookups of rows, by tier and result.", ["model", "tier", "result"]
)
IN_FLIGHT = Gauge("embedding_requests_in_flight", "Requests being handled now.", multiprocess_mode="livesum")
TRACE_EXPORTS = Counter(
    "embedding_trace_exports_total", "Batches of spans sent to the OTLP endpoint, by result.", ["result"]
)
QUEUE_DEPTH = Gauge(
    "embedding_queue_depth", "Requests waiting for the model now.", ["model"], multiprocess_mode="livesum"
)


class MetricsObserver(EngineObserver):
    """Receives the engine's batch and queue events (engine/results.py imports no torch). Its trace hooks
    are the base's no-ops: tracing.TracingObserver is the one that traces."""

    def batch(self, model: str, size: int, tokens: int, seconds: float, links: tuple = ()) -> None:
        BATCH_SIZE.labels(model).observe(size)
        BATCH_TOKENS.labels(model).observe(tokens)

    def queue_depth(self, model: str, depth: int) -> None:
        QUEUE_DEPTH.labels(model).set(depth)

    def cache(self, model: str, tier: str, hits: int, misses: int, errors: int = 0) -> None:
        for result, count in (("hit", hits), ("miss", misses), ("error", errors)):
            if count:
                CACHE_LOOKUPS.labels(model, tier, result).inc(count)


def observe_embedding(model: str, items: int, tokens: int, timings, modality: str = "text") -> None:
    INPUTS.labels(modality, model).inc(items)
    REQUEST_ITEMS.labels(model).observe(items)
    INPUT_TOKENS.labels(model).inc(tokens)
    TOKENIZE_SECONDS.labels(model).observe(timings.tokenize)
    QUEUE_SECONDS.labels(model).observe(timings.queue)
    INFERENCE_SECONDS.labels(model).observe(timings.inference)


def observe_request(route: str, method: str, status: int, seconds: float) -> None:
    REQUESTS.labels(route, method, str(status)).inc()
    REQUEST_SECONDS.labels(route).observe(seconds)
    refresh_memory()


def render() -> tuple[bytes, str]:
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return generate_latest(registry), CONTENT_TYPE_LATEST
    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST


def mark_worker_dead(pid: int) -> None:
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        multiprocess.mark_process_dead(pid)
