"""A real gunicorn (preload, 2 gevent workers) serving a sequence classifier: huggingface_hub's
InferenceClient.text_classification against the root URL, TEI's /predict, Infinity's /classify, each answer
equal to transformers' text-classification pipeline on every worker, and bad bodies answered with 4xx while
the workers keep serving."""

from __future__ import annotations

import pytest
import requests

from .gunicorn_process import GunicornProcess
from .test_classifier import NLI, PAIRS, SENTIMENT, TEXTS, pipeline_scores
from .tiny_models import models_setting, tiny_classifier

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def directories(tmp_path_factory):
    root = tmp_path_factory.mktemp("served-classifiers")
    return {
        "sentiment": tiny_classifier(root / "sentiment", SENTIMENT),
        "nli": tiny_classifier(root / "nli", NLI, seed=3),
    }


@pytest.fixture(scope="module")
def server(directories, tmp_path_factory):
    log = tmp_path_factory.mktemp("gunicorn-classifier") / "server.log"
    env = {"DTYPE": "float32", "MODELS": models_setting(directories)}
    with GunicornProcess(env, workers=2, log_path=log) as proc:
        yield proc


def test_huggingface_hubs_text_classification_on_every_worker(server, directories, monkeypatch):
    from huggingface_hub import InferenceClient, constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)  # see test_clients.py
    expected = pipeline_scores(directories["sentiment"], TEXTS[:1])[0]
    want = sorted(zip(SENTIMENT, expected.tolist()), key=lambda pair: -pair[1])
    client = InferenceClient(model=server.url)
    for _ in range(12):  # new connections: both workers answer
        answer = client.text_classification(TEXTS[0])
        assert [(a.label, pytest.approx(a.score, abs=1e-5)) for a in answer] == want
        top = client.text_classification(TEXTS[0], top_k=1)
        assert [a.label for a in top] == [want[0][0]]
    assert len(server.worker_pids()) == 2


def test_tei_predict_and_infinity_classify_over_http(server, directories):
    for session in server.pinned_sessions(2).values():
        batch = session.post(
            server.url + "/predict", json={"inputs": [list(PAIRS[0]), list(PAIRS[1])], "model": "nli"}, timeout=60
        )
        assert batch.status_code == 200
        expected = pipeline_scores(directories["nli"], PAIRS[:2])
        for row, scores in zip(batch.json(), expected):
            assert {p["label"]: p["score"] for p in row} == {
                label: pytest.approx(score, abs=1e-5) for label, score in zip(NLI, scores)
            }
        infinity = session.post(server.url + "/classify", json={"input": TEXTS, "model": "sentiment"}, timeout=60)
        assert infinity.status_code == 200 and len(infinity.json()["data"]) == len(TEXTS)
    before = server.worker_pids()
    for body in ({"inputs": ["a", "b", "c"]}, {"inputs": [[]]}, {"inputs": {"text": "a"}}):
        response = requests.post(server.url + "/predict", json=body, timeout=30)
        assert response.status_code in (400, 422) and "error_type" in response.json()
    assert requests.post(server.url + "/embed", json={"inputs": "a"}, timeout=30).status_code == 422
    assert server.worker_pids() == before
