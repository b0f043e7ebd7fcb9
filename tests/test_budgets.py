"""#32 findings 3, 4 and 6: what one request may cost a worker (tokens, numbers in its answer, tokens of its
images) is checked once its rows are known, before anything is queued, and refused with a 413 that names the
setting; a request under the budgets runs with small requests answered between its batches."""

from __future__ import annotations

from pathlib import Path

import pytest
import requests

from app import create_app
from app.config import Settings
from app.engine.budgets import Budgets, Throughput, token_budget

from .bystanders import one_text, while_running
from .engines import started_engine
from .gunicorn_process import GunicornProcess

LONG_TEXT = ("The quick brown fox jumps over the lazy dog near the riverbank today. " * 7)[:480]


def client_with(**env: str):
    settings = Settings.from_env({"DTYPE": "float32", "MAX_CONTENT_LENGTH": str(64 * 2**20), **env})
    return create_app(settings, started_engine(settings)).test_client()


def refused(response, setting: str) -> dict:
    assert response.status_code == 413, response.get_data(as_text=True)[:500]
    body = response.get_json() if hasattr(response, "get_json") else response.json()
    error = body["error"]
    message = error["message"] if isinstance(error, dict) else body["error"]
    assert setting in message, message
    return body


# ------------------------------------------------------------------ in-process
def test_the_measured_rate_decays_toward_recent_batches_of_a_large_requests_size():
    throughput = Throughput()
    assert throughput.rate is None and token_budget(Budgets(request_timeout=10), None) is None
    throughput.add(1000, 1.0)
    assert throughput.rate == pytest.approx(1000)
    throughput.add(8, 0.02)  # a one-text pass measures the fixed cost of a pass: not counted
    assert throughput.rate == pytest.approx(1000)
    throughput.add(100, 0.2)  # a slow model's pass of one row is: it ran long enough to say its rate
    assert throughput.rate < 1000
    for _ in range(40):  # the worker got four times slower: the rate follows
        throughput.add(1000, 4.0)
    assert throughput.rate == pytest.approx(250, rel=0.05)
    assert token_budget(Budgets(request_timeout=10), throughput.rate) == pytest.approx(2500, rel=0.05)
    assert token_budget(Budgets(request_tokens=77, request_timeout=10), throughput.rate) == 77


def test_max_request_tokens_refuses_what_is_over_it_on_every_embedding_and_rerank_route():
    client = client_with(MAX_REQUEST_TOKENS="100")
    body = refused(client.post("/embed_text", json={"texts": [LONG_TEXT] * 2}), "MAX_REQUEST_TOKENS")
    assert body["error"]["code"] == "request_too_large" and body["error"]["param"] == "texts"
    refused(client.post("/v1/embeddings", json={"input": [LONG_TEXT] * 2}), "MAX_REQUEST_TOKENS")
    tei = client.post("/embed", json={"inputs": [[101] + [2000] * 60 + [102]] * 2})
    assert tei.status_code == 413 and "MAX_REQUEST_TOKENS" in tei.get_json()["error"]  # TEI's shape
    assert client.post("/embed_text", json={"texts": [LONG_TEXT[:200]] * 2}).status_code == 200


def test_the_default_token_budget_is_what_the_worker_computes_in_request_timeout():
    # A REQUEST_TIMEOUT of 50 ms makes the measured budget a few hundred tokens on any CPU.
    client = client_with(REQUEST_TIMEOUT="0.05", ENABLE_BATCHING="false")
    stats = client.get("/stats").get_json()
    budget = stats["worker"]["models"][0]["token_budget"]["text"]
    assert budget["tokens_per_second"] > 0  # measured in warm-up, before any request
    assert budget["max_request_tokens"] == int(budget["tokens_per_second"] * 0.05)
    texts = [LONG_TEXT] * (budget["max_request_tokens"] // 100 + 2)
    body = refused(client.post("/embed_text", json={"texts": texts, "cache": False}), "MAX_REQUEST_TOKENS")
    assert "tokens a second" in body["error"]["message"] and "REQUEST_TIMEOUT (0.05 s)" in body["error"]["message"]
    # One input is never refused for time: it cannot be split any further.
    assert client.post("/embed_text", json={"texts": [LONG_TEXT * 4], "cache": False}).status_code == 200


def test_max_response_values_bounds_per_token_outputs_before_they_are_computed():
    client = client_with(MAX_RESPONSE_VALUES="20000")
    body = client.post("/embed_all", json={"inputs": [LONG_TEXT] * 4})
    assert body.status_code == 413 and "MAX_RESPONSE_VALUES" in body.get_json()["error"]
    message = body.get_json()["error"]
    assert "token vectors of 384" in message  # what would have come back
    # Dense vectors of the same texts are far fewer numbers.
    assert client.post("/embed", json={"inputs": [LONG_TEXT] * 4}).status_code == 200
    assert client.post("/embed_all", json={"inputs": ["short"]}).status_code == 200


def test_max_response_values_counts_colbert_multivectors(tmp_path):
    from .tiny_models import tiny_bge_m3

    path = tiny_bge_m3(tmp_path / "m3")
    settings = Settings.from_env({"DTYPE": "float32", "MODEL_PATH": str(path), "MAX_RESPONSE_VALUES": "3000"})
    client = create_app(settings, started_engine(settings)).test_client()
    texts = ["a few words of text to embed here " * 5] * 8
    assert client.post("/embed_text", json={"texts": texts}).status_code == 200
    response = client.post("/embed_text", json={"texts": texts, "output_types": ["dense", "colbert"]})
    body = refused(response, "MAX_RESPONSE_VALUES")
    assert "multi-vectors of" in body["error"]["message"]


# ------------------------------------------------------------------ real gunicorn
@pytest.mark.extended
@pytest.mark.slow
def test_giant_requests_are_refused_up_front_and_bystanders_ride_between_a_large_ones_batches(tmp_path):
    env = {
        "DTYPE": "float32",
        "WORKER_CLASS": "gevent",
        "REQUEST_TIMEOUT": "20",
        "CACHE_BYTES": "0",
        "MAX_RESPONSE_VALUES": "2000000",
        "MAX_CONTENT_LENGTH": str(32 * 2**20),
    }
    with GunicornProcess(env, workers=1, log_path=tmp_path / "server.log") as server:
        pid = requests.get(server.url + "/health", timeout=30).json()["pid"]
        peak_before = peak_rss(pid)
        # Finding 4: 2,048 texts of 480 characters (a minute of this CPU) and TEI's 2,048 rows of 480 ids.
        giant = requests.post(server.url + "/embed_text", json={"texts": [LONG_TEXT] * 2048}, timeout=120)
        refused(giant, "MAX_REQUEST_TOKENS")
        ids = requests.post(server.url + "/embed", json={"inputs": [[101] + [2000] * 478 + [102]] * 2048}, timeout=120)
        assert ids.status_code == 413 and "MAX_REQUEST_TOKENS" in ids.json()["error"]
        # Finding 3: every token's vector of 64 such texts is 3 M numbers, over the 2 M allowed here.
        every_token = requests.post(server.url + "/embed_all", json={"inputs": [LONG_TEXT] * 64}, timeout=120)
        assert every_token.status_code == 413 and "MAX_RESPONSE_VALUES" in every_token.json()["error"]
        # Refused before computing: the worker grew by its tokenising, not by a forward pass over it all.
        assert peak_rss(pid) - peak_before < 300 * 2**20

        # Under the budget: a large request runs, and one-text requests are answered between its batches.
        budget = requests.get(server.url + "/stats", timeout=30).json()["worker"]["models"][0]["token_budget"]["text"]
        count = max(64, int(budget["max_request_tokens"] * 0.6) // 100)
        outcome = while_running(
            lambda: requests.post(server.url + "/embed_text", json={"texts": [LONG_TEXT] * count}, timeout=300),
            one_text(server.url),
        )
        assert outcome.response.status_code == 200, outcome.response.text[:300]
        assert len(outcome.response.json()["embeddings"]) == count
        # Before, a bystander waited behind every row the large request still had queued.
        assert outcome.answered_before >= 3 and outcome.slowest < outcome.seconds / 3, outcome
        assert requests.get(server.url + "/health", timeout=30).json()["pid"] == pid


def peak_rss(pid: int) -> int:
    """The process's resident-memory high-water mark, in bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM")
