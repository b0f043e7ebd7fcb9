"""A real gunicorn (preload, 2 gevent workers) serving the default model and a tiny GME beside it: the earlier
GME server's routes over HTTP, bad images and mismatched pairs answered with 400s, workers still serving."""

from __future__ import annotations

import numpy as np
import pytest
import requests

from app.config import default_model_path

from .gunicorn_process import GunicornProcess
from .test_engine import cosines
from .test_gme import ENV, PICTURES, TEXTS, GmeReference, b64, picture
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


@pytest.mark.extended
def test_large_images_are_budgeted_by_their_tokens_and_stop_before_the_worker_grows_by_them(gme_dir, tmp_path):
    """#32 finding 6: 64 images of 1000 x 1000 (about 24 MB of preprocessed pixels each at GME's default
    VLM_MAX_IMAGE_TOKENS) grew a worker by 1.9 GB; now the request stops at the image that passes
    MAX_REQUEST_IMAGE_TOKENS, and the worker's peak memory grows by what the budget allows, not by 64 images.

    The tiny model's 4-pixel patches make 8 x 8 pixels a token where GME's make 28 x 28: the same pixels (and
    memory) are 12x the tokens here, so the budget and VLM_MAX_LENGTH are scaled by as much."""
    from .test_budgets import peak_rss

    env = {
        "DTYPE": "float32",
        "MODELS": models_setting({"gme": gme_dir}),
        "WORKER_CLASS": "gevent",
        "VLM_MIN_IMAGE_TOKENS": "4",
        "VLM_MAX_LENGTH": "20000",
        "MAX_REQUEST_IMAGE_TOKENS": "400000",  # about 25 images of 1000 x 1000 (32,768 of GME's tokens, x 12)
    }
    with GunicornProcess(env, workers=1, log_path=tmp_path / "server.log") as server:
        pid = requests.get(server.url + "/health", timeout=30).json()["pid"]
        small = [b64(picture((64, 64), (200, 10 * i, 30), stripes=False)) for i in range(2)]
        few = requests.post(server.url + "/embeddings/image", json={"images": small}, timeout=300)
        assert few.status_code == 200 and len(few.json()["embeddings"]) == 2
        images = [b64(picture((1000, 1000), (10 + 3 * i, 120, 200 - 2 * i), stripes=False)) for i in range(64)]
        peak_before = peak_rss(pid)
        response = requests.post(server.url + "/embeddings/image", json={"images": images}, timeout=300)
        assert response.status_code == 413, response.text[:300]
        message = response.json()["error"]["message"]
        assert "MAX_REQUEST_IMAGE_TOKENS" in message and "images[25]" in message, message
        grown = peak_rss(pid) - peak_before
        # 26 images held (about 620 MB) at most, not 64 (1.5 GB of pixels, 1.9 GB measured before).
        assert grown < 1000 * 2**20, f"the worker's peak grew by {grown / 2**20:.0f} MiB"
        assert requests.get(server.url + "/health", timeout=30).json()["pid"] == pid
        again = requests.post(server.url + "/embeddings/image", json={"images": small}, timeout=300)
        assert again.status_code == 200 and again.json()["embeddings"] == few.json()["embeddings"]
