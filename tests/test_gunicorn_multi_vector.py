"""A real gunicorn (preload, 2 gevent workers) serving a ColBERT model (sentence-transformers' MultiVectorEncoder
save) and a ColQwen2 beside a dense model: /embed_text's multi-vectors on every worker equal MultiVectorEncoder's;
a PDF uploaded to /embed_image gives a multi-vector per page on every worker, and /similarity scores queries
against its pages; the cohere client and TEI's /rerank body rerank by MaxSim, equal to its `similarity`; the
OpenAI SDK gets a 400 that says what the model does; bad bodies are 4xx and the workers keep serving."""

from __future__ import annotations

import base64

import numpy as np
import pytest
import requests

from .gunicorn_process import GunicornProcess
from .test_multi_vector import DOCUMENTS, QUERIES, assert_same_vectors, reference
from .test_pdf import make_pdf, renderings
from .tiny_models import models_setting, tiny_colqwen2, tiny_multi_vector, tiny_sentence_transformer

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def directories(tmp_path_factory):
    root = tmp_path_factory.mktemp("served-multi-vector")
    return {
        "dense": tiny_sentence_transformer(root / "dense"),
        "colbert": tiny_multi_vector(root / "colbert"),
        "colqwen2": tiny_colqwen2(root / "colqwen2"),
    }


@pytest.fixture(scope="module")
def server(directories, tmp_path_factory):
    log = tmp_path_factory.mktemp("gunicorn-multi-vector") / "server.log"
    env = {"DTYPE": "float32", "MODELS": models_setting(directories), "PDF_DPI": "72"}
    with GunicornProcess(env, workers=2, log_path=log) as proc:
        yield proc


@pytest.fixture(scope="module")
def encoder(directories):
    return reference(directories["colbert"])


def test_multi_vectors_on_every_worker(server, encoder):
    expected = encoder.encode_query(QUERIES, convert_to_numpy=True)
    body = {"texts": QUERIES, "model": "colbert", "output_types": ["colbert"], "is_query": True, "cache": False}
    for session in server.pinned_sessions(2).values():
        answer = session.post(server.url + "/embed_text", json=body, timeout=60)
        assert answer.status_code == 200, answer.text
        assert_same_vectors([np.array(m) for m in answer.json()["colbert"]], expected)


def test_pdf_pages_as_multi_vectors_on_every_worker(server, directories):
    import io

    from PIL import Image

    pdf = make_pdf(2)
    pages = [Image.open(io.BytesIO(png)) for png in renderings(pdf)]  # renderings() draws at 72 dpi too
    encoder = reference(directories["colqwen2"])
    expected = encoder.encode_document(pages, convert_to_numpy=True)
    form = {"model": "colqwen2", "output_type": "colbert", "cache": "false"}
    for session in server.pinned_sessions(2).values():
        files = {"images": ("paper.pdf", pdf, "application/pdf")}
        answer = session.post(server.url + "/embed_image", data=form, files=files, timeout=60)
        assert answer.status_code == 200, answer.text
        assert [entry["page"] for entry in answer.json()["pages"]] == [1, 2]
        assert_same_vectors([np.array(m) for m in answer.json()["colbert"]], expected)
    body = {"texts": QUERIES, "images": [base64.b64encode(pdf).decode()], "model": "colqwen2"}
    answer = requests.post(server.url + "/similarity", json=body, timeout=60)
    assert answer.status_code == 200, answer.text
    scores = encoder.similarity(encoder.encode_query(QUERIES), encoder.encode_document(pages)).numpy()
    np.testing.assert_allclose(np.array(answer.json()["similarity_matrix"]), scores, atol=1e-4)


def test_cohere_client_reranks_by_maxsim(server, encoder):
    import cohere

    expected = encoder.similarity(encoder.encode_query(QUERIES[:1]), encoder.encode_document(DOCUMENTS)).numpy()[0]
    client = cohere.ClientV2(api_key="unused", base_url=server.url, max_retries=0)
    response = client.rerank(model="colbert", query=QUERIES[0], documents=DOCUMENTS, top_n=2)
    order = list(np.argsort(-expected, kind="stable"))
    assert [r.index for r in response.results] == order[:2]
    assert np.allclose([r.relevance_score for r in response.results], expected[order[:2]], atol=1e-4)
    tei = requests.post(server.url + "/rerank", json={"query": QUERIES[0], "texts": DOCUMENTS, "model": "colbert"})
    assert tei.status_code == 200, tei.text
    assert np.allclose(sorted(r["score"] for r in tei.json()), sorted(expected), atol=1e-4)


def test_openai_sdk_gets_a_400_that_says_what_the_model_does(server):
    import openai

    client = openai.OpenAI(base_url=server.url + "/v1", api_key="unused", max_retries=0)
    with pytest.raises(openai.BadRequestError) as info:
        client.embeddings.create(input=["hello"], model="colbert")
    assert "multi-vector" in str(info.value) and "colbert" in str(info.value)


def test_bad_bodies_are_4xx_and_the_workers_keep_serving(server):
    before = server.worker_pids()
    for path, body in [
        (
            "/embed_text",
            {"texts": ["a"], "model": "colbert", "output_types": ["colbert"], "truncation_direction": "up"},
        ),
        ("/embed_text", {"texts": DOCUMENTS, "model": "colbert", "output_types": ["colbert"], "truncate": False}),
        ("/v1/rerank", {"query": "q", "documents": [], "model": "colbert"}),
        ("/similarity", {"texts": ["q"], "documents": ["d"], "model": "colbert", "output_types": ["sparse"]}),
        ("/embed_image", {"images": ["bm90IGFuIGltYWdl"], "model": "colqwen2", "output_type": "colbert"}),
        (
            "/embed_image",
            {"images": [base64.b64encode(make_pdf(1)[:300]).decode()], "model": "colqwen2", "output_type": "colbert"},
        ),
    ]:
        answer = requests.post(server.url + path, json=body, timeout=30)
        assert 400 <= answer.status_code < 500, (path, answer.text)
    assert server.worker_pids() == before
    ok = requests.post(server.url + "/v1/rerank", json={"query": "q", "documents": ["d"], "model": "colbert"})
    assert ok.status_code == 200
