"""The process model under real gunicorn: worker classes, gevent offload, graceful
shutdown, worker replacement, recycling, metrics across workers."""

from __future__ import annotations

import os
import signal
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from .gunicorn_process import GunicornProcess

pytestmark = pytest.mark.slow

LONG_TEXT = "Every worker shares the weights the master loaded, page for page. " * 40


def embed(url: str, texts, session=None, timeout: float = 120):
    return (session or requests).post(url + "/embed_text", json={"texts": texts}, timeout=timeout)


def wait_until(predicate, timeout: float, message: str, interval: float = 0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting until {message}")


@pytest.mark.parametrize(
    "worker_class",
    [pytest.param("sync", marks=pytest.mark.extended), pytest.param("gthread", marks=pytest.mark.extended), "gevent"],
)
def test_every_worker_class_serves_with_preload(tmp_path, worker_class):
    env = {"WORKER_CLASS": worker_class, "ALLOW_UNBOUNDED_QUEUE": "true", "THREADS": "2"}
    with GunicornProcess(env, workers=2, log_path=tmp_path / "log") as server:
        assert server.model_loads() == [server.proc.pid]
        responses = [embed(server.url, ["hello", "world"]) for _ in range(6)]
        assert all(r.status_code == 200 and len(r.json()["embeddings"]) == 2 for r in responses)
        assert len(server.worker_pids()) == 2


def test_gevent_worker_answers_health_while_computing(tmp_path):
    """One gevent worker: a long forward pass runs in an OS thread, so /health still answers."""
    with GunicornProcess({"WORKER_CLASS": "gevent"}, workers=1, log_path=tmp_path / "log") as server:
        long_request = threading.Thread(target=embed, args=(server.url, [LONG_TEXT] * 256))
        long_request.start()
        # The scrape itself is one request in flight; the long one makes two.
        wait_until(lambda: server.metric("embedding_requests_in_flight") >= 2, 30, "the long request is in")
        wait_until(lambda: server.metric("embedding_queue_depth") == 0, 30, "the long request reached the model")
        started = time.monotonic()
        health = requests.get(server.url + "/health", timeout=10)
        answered_in = time.monotonic() - started
        still_computing = long_request.is_alive()
        long_request.join(timeout=120)
        assert health.status_code == 200
        assert still_computing, "the long request finished before /health was asked; make it longer"
        assert answered_in < 1.0


@pytest.mark.extended
def test_sigterm_lets_every_in_flight_request_finish(tmp_path):
    env = {"THREADS": "16", "GRACEFUL_TIMEOUT": "60"}
    server = GunicornProcess(env, workers=2, log_path=tmp_path / "log").start()
    try:
        with ThreadPoolExecutor(max_workers=20) as pool:
            futures = [pool.submit(embed, server.url, [LONG_TEXT] * 8) for _ in range(20)]
            # All 20 accepted by the workers (plus the scrape itself) before the signal.
            wait_until(lambda: server.metric("embedding_requests_in_flight") >= 21, 60, "20 requests are in flight")
            os.kill(server.proc.pid, signal.SIGTERM)
            statuses = [f.result().status_code for f in futures]
        assert statuses == [200] * 20
        assert server.proc.wait(timeout=60) == 0
    finally:
        server.stop()


@pytest.mark.extended
def test_a_killed_worker_is_replaced_and_the_others_keep_serving(tmp_path):
    with GunicornProcess({}, workers=2, log_path=tmp_path / "log") as server:
        sessions = server.pinned_sessions(2)
        survivor, victim = sorted(sessions)
        errors = []
        done = threading.Event()

        def keep_asking():
            while not done.is_set():
                try:
                    if embed(server.url, ["still here"], session=sessions[survivor]).status_code != 200:
                        errors.append("status")
                except requests.RequestException as exc:
                    errors.append(repr(exc))

        client = threading.Thread(target=keep_asking)
        client.start()
        os.kill(victim, signal.SIGKILL)
        replacement = set()

        def replaced():
            replacement.update(server.worker_pids() - {survivor, victim})
            return bool(replacement)

        wait_until(replaced, 60, "a new worker answers", interval=0.2)
        done.set()
        client.join()
        assert errors == []
        assert victim not in server.worker_pids()
        assert server.model_loads() == [server.proc.pid]  # the replacement is a fork, not a reload
        (new_pid,) = replacement
        assert server.pinned_sessions(2)[new_pid].get(server.url + "/ready", timeout=10).status_code == 200


@pytest.mark.extended
def test_max_requests_recycles_workers_without_reloading_or_failing(tmp_path):
    env = {"MAX_REQUESTS": "10", "MAX_REQUESTS_JITTER": "0", "WORKER_CLASS": "sync", "ALLOW_UNBOUNDED_QUEUE": "true"}
    with GunicornProcess(env, workers=1, log_path=tmp_path / "log") as server:
        seen = set()
        for _ in range(35):
            response = requests.get(server.url + "/health", timeout=30)
            assert response.status_code == 200
            seen.add(response.json()["pid"])
        assert len(seen) >= 3
        assert server.model_loads() == [server.proc.pid]


def test_metrics_count_requests_across_workers(tmp_path):
    # Cache off: the same texts again and again must each reach the model for the batch counts below.
    with GunicornProcess({"CACHE_BYTES": "0"}, workers=2, log_path=tmp_path / "log") as server:
        sessions = server.pinned_sessions(2)
        for i in range(30):
            session = list(sessions.values())[i % 2]
            assert embed(server.url, ["count me", "twice"], session=session).status_code == 200
        labels = {"route": "/embed_text", "method": "POST", "status": "200"}
        assert server.metric("embedding_requests_total", **labels) == 30
        assert server.metric("embedding_request_items_sum") == 60
        assert server.metric("embedding_inference_duration_seconds_count") == 30
        assert server.metric("embedding_batch_size_sum") >= 60  # warm-up batches count too
        assert server.metric("embedding_input_tokens_total") > 0


def test_timing_headers_and_request_id(tmp_path):
    with GunicornProcess({}, workers=1, log_path=tmp_path / "log") as server:
        response = requests.post(
            server.url + "/v1/embeddings", json={"input": ["a", "b"]}, headers={"X-Request-ID": "trace-42"}, timeout=30
        )
        assert response.headers["X-Request-ID"] == "trace-42"
        total = float(response.headers["X-Total-Time"])
        parts = [float(response.headers[h]) for h in ("X-Tokenization-Time", "X-Queue-Time", "X-Inference-Time")]
        assert all(p >= 0 for p in parts) and sum(parts) <= total
        assert int(response.headers["X-Compute-Tokens"]) == 6
        generated = requests.get(server.url + "/health", timeout=10).headers["X-Request-ID"]
        assert len(generated) == 32 and generated != "trace-42"
        lines = [r for r in server.log_records() if r.get("logger") == "app.access"]
        line = next(r for r in lines if r.get("request_id") == "trace-42")
        assert line["status"] == 200 and line["items"] == 2 and line["tokens"] == 6 and line["path"] == "/v1/embeddings"
