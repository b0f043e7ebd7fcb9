"""Prometheus metrics, aggregated over every gunicorn worker.

Multiprocess mode: gunicorn.conf.py points PROMETHEUS_MULTIPROC_DIR at a
fresh directory before anything imports prometheus_client, each worker writes
its own files there, `child_exit` marks dead workers, and /metrics merges
them. Without that variable (tests, `flask run`) the ordinary in-process
registry is used.
"""

from __future__ import annotations

import os

from prometheus_client import (CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, Counter, Gauge, Histogram,
                               generate_latest, multiprocess)

LATENCY = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
SIZES = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048)
TOKENS = (8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192, 16384, 65536)

REQUESTS = Counter("embedding_requests_total", "HTTP requests answered.", ["route", "method", "status"])
REQUEST_SECONDS = Histogram("embedding_request_duration_seconds", "Whole request time, parse to response.",
                            ["route"], buckets=LATENCY)
TOKENIZE_SECONDS = Histogram("embedding_tokenize_duration_seconds", "Tokenisation / preprocessing per request.",
                             buckets=LATENCY)
QUEUE_SECONDS = Histogram("embedding_queue_duration_seconds", "Time a request waited for the model.",
                          buckets=LATENCY)
INFERENCE_SECONDS = Histogram("embedding_inference_duration_seconds", "Model time per request.", buckets=LATENCY)
BATCH_SIZE = Histogram("embedding_batch_size", "Inputs per forward pass.", buckets=SIZES)
BATCH_TOKENS = Histogram("embedding_batch_tokens", "Real (unpadded) tokens per forward pass.", buckets=TOKENS)
REQUEST_ITEMS = Histogram("embedding_request_items", "Inputs per request.", buckets=SIZES)
INPUT_TOKENS = Counter("embedding_input_tokens_total",
                       "Tokens embedded, special tokens included (image patches for images).")
INPUTS = Counter("embedding_inputs_total", "Inputs embedded, by modality.", ["modality"])
IN_FLIGHT = Gauge("embedding_requests_in_flight", "Requests being handled now.", multiprocess_mode="livesum")
QUEUE_DEPTH = Gauge("embedding_queue_depth", "Requests waiting for the model now.", multiprocess_mode="livesum")


class MetricsObserver:
    """Receives the engine's batch and queue events (duck-typed: no torch import here)."""

    def batch(self, size: int, tokens: int, seconds: float) -> None:
        BATCH_SIZE.observe(size)
        BATCH_TOKENS.observe(tokens)

    def queue_depth(self, depth: int) -> None:
        QUEUE_DEPTH.set(depth)


def observe_embedding(items: int, tokens: int, timings, modality: str = "text") -> None:
    INPUTS.labels(modality).inc(items)
    REQUEST_ITEMS.observe(items)
    INPUT_TOKENS.inc(tokens)
    TOKENIZE_SECONDS.observe(timings.tokenize)
    QUEUE_SECONDS.observe(timings.queue)
    INFERENCE_SECONDS.observe(timings.inference)


def observe_request(route: str, method: str, status: int, seconds: float) -> None:
    REQUESTS.labels(route, method, str(status)).inc()
    REQUEST_SECONDS.labels(route).observe(seconds)


def render() -> tuple[bytes, str]:
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return generate_latest(registry), CONTENT_TYPE_LATEST
    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST


def mark_worker_dead(pid: int) -> None:
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        multiprocess.mark_process_dead(pid)
