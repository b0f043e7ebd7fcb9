"""Requests whose size is amplified inside the service (a prompt before every text, a query in every pair) are
bounded before any tokenising, and a large legal request is tokenised off a gevent worker's event loop."""

from __future__ import annotations

import time

import pytest
import requests

from app import create_app
from app.config import Settings

from .bystanders import one_text, while_running
from .gunicorn_process import GunicornProcess


@pytest.fixture
def limited(engine):
    return create_app(
        Settings.from_env({"DTYPE": "float32", "MAX_CONTENT_LENGTH": str(64 * 2**20)}), engine
    ).test_client()


def timed(client, route, body):
    started = time.monotonic()
    response = client.post(route, json=body)
    return response, time.monotonic() - started


def test_a_prompt_counts_toward_each_text_and_the_request(limited):
    response, seconds = timed(limited, "/embed_text", {"texts": ["a"] * 128, "prompt": "x" * 1_000_000})
    assert response.status_code == 400 and response.get_json()["error"]["param"] == "prompt" and seconds < 2
    response, seconds = timed(limited, "/embed_text", {"texts": ["a"] * 128, "prompt": "x" * 90_000})
    error = response.get_json()["error"]
    assert (
        response.status_code == 413
        and error["code"] == "request_too_large"
        and "MAX_REQUEST_CHARS" in error["message"]
        and seconds < 2
    )
    response, _ = timed(limited, "/embed_text", {"texts": ["a", "b" * 99_995], "prompt": "x" * 10})
    assert response.status_code == 400 and response.get_json()["error"]["param"] == "texts[1]"


def test_a_16_mb_body_of_long_texts_is_refused_before_tokenising(limited):
    response, seconds = timed(limited, "/embed_text", {"texts": ["word " * 20_000] * 160})
    assert response.status_code == 413 and response.get_json()["error"]["code"] == "request_too_large"
    assert seconds < 3


def test_a_rerank_query_counts_once_per_document(limited):
    response, seconds = timed(limited, "/v1/embeddings", {"input": ["a"] * 100, "instruction": "x" * 20_000})
    assert response.status_code in (400, 413)  # the default model takes no instruction, and it is too long
    body = {"query": "q" * 20_000, "texts": ["document"] * 60}
    response, seconds = timed(limited, "/rerank", body)
    # The default model does not rerank: the size check still comes first, and says so.
    assert response.status_code == 413 and seconds < 2


@pytest.mark.extended
@pytest.mark.slow
def test_a_large_request_leaves_the_event_loop_and_the_heartbeat_free(tmp_path):
    env = {
        "TIMEOUT": "10",
        "MAX_REQUEST_CHARS": "20000000",
        "MAX_INPUT_CHARS": "1000000",
        "MAX_CONTENT_LENGTH": str(64 * 2**20),
        "DTYPE": "float32",
        "WORKER_CLASS": "gevent",
    }
    with GunicornProcess(env, workers=1, log_path=tmp_path / "server.log") as server:
        pid = requests.get(server.url + "/health", timeout=10).json()["pid"]
        # 15 M characters in 15 texts: seconds of tokenising, then only 15 rows for the model.
        big = {"texts": [f"text {i} " + "word " * 199_990 for i in range(15)], "cache": False}

        def bystander():
            assert requests.get(server.url + "/health", timeout=300).status_code == 200
            one_text(server.url)()

        # Bystanders are answered while the big request is still running, each in a small part of its time.
        # With the tokenising on the event loop (as before), the first bystander waited for nearly all of it
        # and none came back in between.
        outcome = while_running(lambda: requests.post(server.url + "/embed_text", json=big, timeout=300), bystander)
        assert outcome.response.status_code == 200 and len(outcome.response.json()["embeddings"]) == 15
        assert outcome.answered_before >= 2 and outcome.slowest < outcome.seconds / 2, outcome
        amplified = requests.post(
            server.url + "/embed_text", json={"texts": ["a"] * 128, "prompt": "x" * 1_000_000}, timeout=30
        )
        assert amplified.status_code == 400
        assert requests.get(server.url + "/health", timeout=10).json()["pid"] == pid  # the same worker, alive
