"""A real gunicorn (preload, 2 gevent workers) serving a SPLADE model and an inference-free one beside a dense
model: TEI's /embed_sparse body over HTTP on every worker, equal to sentence-transformers' SparseEncoder on
the same directory; the OpenAI SDK gets a 400 that names the sparse routes; bad bodies are 4xx and the
workers keep serving."""

from __future__ import annotations

import numpy as np
import pytest
import requests

from .gunicorn_process import GunicornProcess
from .test_sparse_encoder import TEXTS, reference
from .tiny_models import models_setting, tiny_inference_free_splade, tiny_sentence_transformer, tiny_splade

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def directories(tmp_path_factory):
    root = tmp_path_factory.mktemp("served-sparse")
    return {
        "dense": tiny_sentence_transformer(root / "dense"),
        "splade": tiny_splade(root / "splade", legacy=True),
        "doc-only": tiny_inference_free_splade(root / "doc-only", seed=4),
    }


@pytest.fixture(scope="module")
def server(directories, tmp_path_factory):
    log = tmp_path_factory.mktemp("gunicorn-sparse") / "server.log"
    env = {"DTYPE": "float32", "MODELS": models_setting(directories)}
    with GunicornProcess(env, workers=2, log_path=log) as proc:
        yield proc


def as_dense(rows, width: int) -> np.ndarray:
    matrix = np.zeros((len(rows), width), dtype=np.float32)
    for index, row in enumerate(rows):
        for pair in row:
            matrix[index, pair["index"]] = pair["value"]
    return matrix


@pytest.mark.parametrize("name,prompt_name,side", [("splade", None, None), ("doc-only", "query", "query")])
def test_tei_embed_sparse_on_every_worker(server, directories, name, prompt_name, side):
    expected = reference(directories[name], TEXTS, side)
    body = {"inputs": TEXTS, "model": name, **({"prompt_name": prompt_name} if prompt_name else {})}
    for session in server.pinned_sessions(2).values():
        answer = session.post(server.url + "/embed_sparse", json=body, timeout=60)
        assert answer.status_code == 200, answer.text
        rows = answer.json()
        assert all([pair["index"] for pair in row] == sorted(pair["index"] for pair in row) for row in rows)
        got = as_dense(rows, expected.shape[1])
        np.testing.assert_array_equal(got != 0, expected != 0)
        np.testing.assert_allclose(got, expected, atol=1e-4, rtol=0)


def test_the_default_sparse_model_answers_embed_sparse_without_a_name(server):
    # /embed_sparse picks the first model with sparse vectors, not the first model (a dense one)
    answer = requests.post(server.url + "/embed_sparse", json={"inputs": "hello"}, timeout=60)
    assert answer.status_code == 200 and answer.json()[0]


def test_openai_sdk_gets_a_400_that_names_the_sparse_routes(server):
    import openai

    client = openai.OpenAI(base_url=server.url + "/v1", api_key="unused", max_retries=0)
    with pytest.raises(openai.BadRequestError) as raised:
        client.embeddings.create(input=["hello"], model="splade")
    assert "sparse encoder" in str(raised.value) and "/embed_sparse" in str(raised.value)
    assert len(client.embeddings.create(input=["hello"], model="dense").data[0].embedding) == 32


def test_bad_bodies_are_4xx_and_the_workers_keep_serving(server):
    before = server.worker_pids()
    for body in (
        {"inputs": [], "model": "splade"},
        {"inputs": "a", "model": "splade", "sparse_top_k": 0},
        {"inputs": "a", "model": "splade", "sparse_min_weight": -1},
        {"inputs": "a", "model": "splade", "prompt_name": "nope"},
        {"inputs": [1, 2], "model": "splade"},
    ):
        response = requests.post(server.url + "/embed_sparse", json=body, timeout=30)
        assert response.status_code in (400, 422), (body, response.text)
        assert "error_type" in response.json()
    assert server.worker_pids() == before
    assert requests.post(server.url + "/embed_sparse", json={"inputs": "a", "model": "splade"}, timeout=30).ok
