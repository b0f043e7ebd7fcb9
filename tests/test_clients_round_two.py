"""The calls that failed when fourteen client libraries were pointed at this service (#28), against one real
gunicorn (preload, two workers) serving the default model and a cross-encoder: bodies with explicit nulls for
the options left unset, rerank bodies of Infinity's and vLLM's shape on `/rerank`, Infinity's root routes
through the OpenAI SDK given the base URL alone, the Mistral SDK (which needs an `id`), and a Cohere body
posted to the root. Every answer equals the native route's."""

from __future__ import annotations

import numpy as np
import pytest
import requests

from app.config import default_model_path

from .gunicorn_process import GunicornProcess
from .tiny_models import models_setting, tiny_cross_encoder

pytestmark = pytest.mark.slow

TEXTS = ["clients work unchanged", "only the base URL changes", "a third text to embed"]
QUERY = "which text is about clients?"
MODEL = "minilm"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    root = tmp_path_factory.mktemp("clients-two")
    models = {MODEL: default_model_path(), "reranker": tiny_cross_encoder(root / "reranker")}
    env = {"DTYPE": "float32", "MODELS": models_setting(models)}
    with GunicornProcess(env, workers=2, log_path=root / "server.log") as proc:
        yield proc


@pytest.fixture(scope="module")
def native(server) -> np.ndarray:
    body = requests.post(server.url + "/embed_text", json={"texts": TEXTS, "model": MODEL}, timeout=60).json()
    return np.array(body["embeddings"])


@pytest.fixture(scope="module")
def scores(server) -> list[float]:
    body = {"query": QUERY, "documents": TEXTS, "model": "reranker"}
    results = requests.post(server.url + "/v1/rerank", json=body, timeout=60).json()["results"]
    return [next(r["relevance_score"] for r in results if r["index"] == i) for i in range(len(TEXTS))]


def post(server, path: str, body: dict):
    answer = requests.post(server.url + path, json=body, timeout=60)
    assert answer.status_code == 200, (path, body, answer.text)
    return answer.json()


@pytest.mark.parametrize(
    "path,body",
    [
        (
            "/v1/embeddings",
            {"input": TEXTS, "model": MODEL, "encoding_format": None, "truncation_direction": None, "modality": None},
        ),
        ("/embed", {"inputs": TEXTS, "model": MODEL, "normalize": None, "truncation_direction": None}),
        ("/api/embed", {"input": TEXTS, "model": MODEL, "truncate": None}),
        (
            "/v2/embed",  # langchain-cohere's CohereEmbeddings through the cohere SDK
            {
                "texts": TEXTS,
                "model": MODEL,
                "input_type": "search_document",
                "truncate": None,
                "embedding_types": None,
            },
        ),
    ],
)
def test_nulls_for_unset_options_are_options_not_given(server, native, path, body):
    answer = post(server, path, body)
    vectors = {
        "/v1/embeddings": lambda a: [d["embedding"] for d in a["data"]],
        "/embed": lambda a: a,
        "/api/embed": lambda a: a["embeddings"],
        "/v2/embed": lambda a: a["embeddings"]["float"],
    }[path](answer)
    assert np.allclose(vectors, native, atol=1e-6)


def test_nulls_on_the_rerank_routes(server, scores):
    tei = post(
        server,
        "/rerank",
        {
            "query": QUERY,
            "texts": TEXTS,
            "model": "reranker",
            "truncate": None,
            "raw_scores": None,
            "return_text": None,
            "truncation_direction": None,
        },
    )
    assert {r["index"]: r["score"] for r in tei} == pytest.approx(dict(enumerate(scores)), abs=1e-6)
    for path in ("/v1/rerank", "/v2/rerank"):
        body = {"query": QUERY, "documents": TEXTS, "model": "reranker", "return_documents": None, "top_n": None}
        results = post(server, path, body)["results"]
        assert len(results) == 3 and all("document" not in r for r in results)


def test_infinity_and_vllm_rerank_bodies_on_rerank(server, scores):
    body = {"query": QUERY, "documents": TEXTS, "model": "reranker"}
    vllm = post(server, "/rerank", body)  # vLLM's clients: index and relevance_score, best first
    assert [r["index"] for r in vllm["results"]] == list(np.argsort(-np.array(scores), kind="stable"))
    assert {r["index"]: r["relevance_score"] for r in vllm["results"]} == pytest.approx(
        dict(enumerate(scores)), abs=1e-6
    )
    infinity = post(server, "/rerank", {**body, "return_documents": True, "top_n": 2, "raw_scores": True})
    assert infinity["object"] == "rerank" and infinity["id"] and infinity["created"] > 0
    assert len(infinity["results"]) == 2 and infinity["usage"]["total_tokens"] > 0
    for result in infinity["results"]:
        assert result["document"] == TEXTS[result["index"]]  # Infinity's document is the text itself
    raw = infinity["results"][0]["relevance_score"]
    assert raw == pytest.approx(float(np.log(max(scores) / (1 - max(scores)))), abs=1e-4)  # the logit
    refused = requests.post(server.url + "/rerank", json={"query": QUERY, "documents": []}, timeout=30)
    assert refused.status_code == 400 and "documents" in refused.json()["error"]["message"]


def test_openai_sdk_at_the_root_reaches_infinitys_routes(server, native):
    import openai

    client = openai.OpenAI(base_url=server.url, api_key="unused", max_retries=0)  # Infinity's URLs: no /v1
    answer = client.embeddings.create(input=TEXTS, model=MODEL)
    assert np.allclose([d.embedding for d in answer.data], native, atol=1e-6)
    listed = {model.id: model for model in client.models.list()}
    assert set(listed) == {MODEL, "reranker"}
    assert listed[MODEL].model_extra["capabilities"] and "stats" in listed[MODEL].model_extra


def test_mistral_sdk_embeddings(server, native):
    from mistralai.client import Mistral  # mistralai 2+ (1.x: from mistralai import Mistral)

    client = Mistral(api_key="unused", server_url=server.url)
    answer = client.embeddings.create(model=MODEL, inputs=TEXTS)
    assert answer.id and np.allclose([d.embedding for d in answer.data], native, atol=1e-6)


def test_a_cohere_body_posted_to_the_root(server, native):
    v2 = post(
        server, "/", {"texts": TEXTS, "model": MODEL, "input_type": "search_document", "embedding_types": ["float"]}
    )
    assert v2["response_type"] == "embeddings_by_type" and np.allclose(v2["embeddings"]["float"], native, atol=1e-6)
    v1 = post(server, "/", {"texts": TEXTS, "model": MODEL, "input_type": "search_document"})
    assert v1["response_type"] == "embeddings_floats" and np.allclose(v1["embeddings"], native, atol=1e-6)
    refused = requests.post(server.url + "/", json={"texts": [], "model": MODEL}, timeout=30)
    assert refused.status_code == 400 and "message" in refused.json()  # Cohere's error shape
