"""A real gunicorn (preload, 2 workers) serving the default embedder and a cross-encoder, called by the real
`cohere` client (v2 and v1) and by curl-style requests to text-embeddings-inference's /rerank."""

from __future__ import annotations

import numpy as np
import pytest
import requests

from app.config import default_model_path

from .gunicorn_process import GunicornProcess
from .tiny_models import models_setting, tiny_cross_encoder

pytestmark = pytest.mark.slow

QUERY = "what is the capital of France?"
DOCUMENTS = ["Paris is the capital of France.", "the cat sat on the mat", "France borders Spain", "x"]


@pytest.fixture(scope="module")
def cross_encoder_dir(tmp_path_factory):
    return tiny_cross_encoder(tmp_path_factory.mktemp("served-rerank") / "bge-reranker-tiny", "bert")


@pytest.fixture(scope="module")
def server(cross_encoder_dir, tmp_path_factory):
    log = tmp_path_factory.mktemp("gunicorn-rerank") / "server.log"
    env = {
        "MODELS": models_setting({"minilm": default_model_path(), "bge-reranker": cross_encoder_dir}),
        "DTYPE": "float32",
    }
    with GunicornProcess(env, workers=2, log_path=log) as proc:
        yield proc


@pytest.fixture(scope="module")
def expected(cross_encoder_dir):
    from sentence_transformers import CrossEncoder

    return CrossEncoder(str(cross_encoder_dir), device="cpu").predict([(QUERY, d) for d in DOCUMENTS])


def test_cohere_v2_client_reranks(server, expected):
    import cohere

    client = cohere.ClientV2(api_key="unused", base_url=server.url, max_retries=0)
    response = client.rerank(model="bge-reranker", query=QUERY, documents=DOCUMENTS, top_n=3)
    order = list(np.argsort(-expected, kind="stable"))
    assert [r.index for r in response.results] == order[:3]
    assert np.allclose([r.relevance_score for r in response.results], expected[order[:3]], atol=1e-5)
    assert response.id and response.meta.api_version.version == "2"


def test_cohere_v1_client_reranks(server, expected):
    import cohere

    client = cohere.Client(api_key="unused", base_url=server.url, max_retries=0)
    response = client.rerank(model="bge-reranker", query=QUERY, documents=DOCUMENTS, return_documents=True)
    best = int(np.argmax(expected))
    assert response.results[0].index == best and response.results[0].document.text == DOCUMENTS[best]


def test_bad_input_is_a_client_error_and_the_workers_keep_serving(server):
    import cohere

    before = server.worker_pids()
    client = cohere.ClientV2(api_key="unused", base_url=server.url, max_retries=0)
    with pytest.raises(cohere.BadRequestError):
        client.rerank(model="bge-reranker", query=QUERY, documents=[])
    with pytest.raises(cohere.BadRequestError):
        client.rerank(model="minilm", query=QUERY, documents=DOCUMENTS)  # an embedder does not rerank
    for body in ({"query": "", "texts": ["a"]}, {"query": "q", "texts": ["a", ""]}, {"query": "q", "texts": [1]}):
        response = requests.post(server.url + "/rerank", json=body, timeout=30)
        # text-embeddings-inference's route, in its shape: 422 for an invalid input
        assert response.status_code == 422 and response.json()["error_type"] == "Validation", response.json()
    assert server.worker_pids() == before
    ranks = requests.post(server.url + "/rerank", json={"query": QUERY, "texts": DOCUMENTS}, timeout=30).json()
    assert sorted(r["index"] for r in ranks) == [0, 1, 2, 3]


def test_an_instruction_counts_once_per_document(server):
    """#32 finding 2: a 99,000-character instruction over 2,048 one-word documents is 200 M characters to
    tokenise; it is refused before any of it, like a long query, and the workers serve on."""
    before = server.worker_pids()
    body = {"model": "bge-reranker", "query": "q", "documents": ["word"] * 2048, "instruction": "x" * 99_000}
    refused = requests.post(server.url + "/v2/rerank", json=body, timeout=60)
    assert refused.status_code == 413, refused.text
    message = refused.json()["error"]["message"]
    assert "MAX_REQUEST_CHARS" in message and "instruction" in message
    too_long = {**body, "documents": ["word"], "instruction": "x" * 100_000}
    refused = requests.post(server.url + "/v2/rerank", json=too_long, timeout=60)
    assert refused.status_code == 400 and "MAX_INPUT_CHARS" in refused.json()["error"]["message"]
    fine = requests.post(
        server.url + "/v2/rerank", json={**body, "documents": DOCUMENTS, "instruction": "short"}, timeout=60
    )
    assert fine.status_code == 200 and server.worker_pids() == before
