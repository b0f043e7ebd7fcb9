"""A real gunicorn (preload, 2 gevent workers) serving the default model and a tiny GME beside it: the earlier
GME server's routes over HTTP, bad images and mismatched pairs answered with 400s, workers still serving."""

from __future__ import annotations

import numpy as np
import pytest
import requests

from app.config import default_model_path

from .gunicorn_process import GunicornProcess
from .test_engine import cosines
from .test_gme import ENV, PICTURES, TEXTS, GmeReference, b64
from .tiny_models import models_setting, tiny_qwen2_vl

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def gme_dir(tmp_path_factory):
    return tiny_qwen2_vl(tmp_path_factory.mktemp("served-gme") / "gme-tiny")


@pytest.fixture(scope="module")
def server(gme_dir, tmp_path_factory):
    log = tmp_path_factory.mktemp("gunicorn-gme") / "server.log"
    env = {**ENV, "MODELS": models_setting({"minilm": default_model_path(), "gme": gme_dir})}
    with GunicornProcess(env, workers=2, log_path=log) as proc:
        yield proc


def test_gme_routes_over_http_on_both_workers(server, gme_dir):
    reference = GmeReference(gme_dir)
    expected = {
        "text": reference.embed(TEXTS, [None] * 3),
        "image": reference.embed([None] * 2, PICTURES[:2]),
        "fused": reference.embed(TEXTS[:2], PICTURES[:2]),
    }
    images = [b64(p) for p in PICTURES[:2]]
    for session in server.pinned_sessions(2).values():
        # No model named: each route finds the model that takes its input (GME; the default is a text model).
        text = session.post(server.url + "/embeddings/text", json={"texts": TEXTS, "model": "gme"}, timeout=60)
        image = session.post(server.url + "/embeddings/image", json={"images": images}, timeout=60)
        fused = session.post(server.url + "/embeddings/fused", json={"texts": TEXTS[:2], "images": images}, timeout=60)
        for kind, response in (("text", text), ("image", image), ("fused", fused)):
            assert response.status_code == 200, response.text
            assert cosines(np.array(response.json()["embeddings"]), expected[kind]).min() >= 0.9999


def test_gmes_text_route_defaults_to_the_gme_model_beside_a_text_model(server, gme_dir):
    """#32 finding 9: each route's default is the model it exists for, not the instance's first model."""
    response = requests.post(server.url + "/embeddings/text", json={"texts": TEXTS}, timeout=60)
    assert response.status_code == 200, response.text
    expected = GmeReference(gme_dir).embed(TEXTS, [None] * 3)
    assert cosines(np.array(response.json()["embeddings"]), expected).min() >= 0.9999
    # The native text route keeps the instance's first model as its default.
    native = requests.post(server.url + "/embed_text", json={"texts": TEXTS}, timeout=60).json()
    assert native["model"] == "minilm"


def test_bad_images_and_mismatched_pairs_are_400s_and_the_workers_keep_serving(server):
    before = server.worker_pids()
    bad = [
        ("/embeddings/fused", {"texts": ["a", "b"], "images": [b64(PICTURES[0])]}, "images"),
        ("/embeddings/image", {"images": ["bm90IGFuIGltYWdl"]}, "images[0]"),
        ("/embeddings/image", {"images": ["data:image/png;base64,iVBORw0KGgo="]}, "images[0]"),
        ("/embeddings/fused", {"texts": ["a"], "images": ["http://127.0.0.1/x.png"]}, "images[0]"),
    ]
    for route, body, param in bad * 3:
        response = requests.post(server.url + route, json=body, timeout=30)
        assert response.status_code == 400 and response.json()["error"]["param"] == param, response.text
    assert server.worker_pids() == before
    fine = requests.post(server.url + "/embeddings/image", json={"images": [b64(PICTURES[2])]}, timeout=60)
    assert fine.status_code == 200 and fine.json()["dimension"] == 32
