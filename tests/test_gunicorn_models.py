"""One real gunicorn instance (preload, 2 workers) serving the default model, a tiny decoder-LLM
embedder and a tiny CLIP together under MODELS."""

from __future__ import annotations

import base64
import io
import re
import shutil

import numpy as np
import pytest
import requests
from PIL import Image

from .gunicorn_process import GunicornProcess
from .test_gunicorn import run_gunicorn_expecting_failure
from .tiny_models import models_setting, three_models

pytestmark = pytest.mark.slow

TEXTS = ["several models, one master", "x", "the weights of all three are shared by both workers"]


@pytest.fixture(scope="module")
def model_dirs(tmp_path_factory):
    return three_models(tmp_path_factory.mktemp("served"))


@pytest.fixture(scope="module")
def server(model_dirs, tmp_path_factory):
    log = tmp_path_factory.mktemp("gunicorn-models") / "server.log"
    env = {"MODELS": models_setting(model_dirs), "DTYPE": "float32"}
    with GunicornProcess(env, workers=2, log_path=log) as proc:
        yield proc


def png(color) -> str:
    buffer = io.BytesIO()
    Image.new("RGB", (48, 40), color).save(buffer, "PNG")
    return base64.b64encode(buffer.getvalue()).decode()


def test_every_model_is_loaded_once_in_the_master(server):
    assert server.model_loads() == [server.proc.pid] * 3
    workers = {r["pid"] for r in server.log_records() if r["msg"].startswith("worker ") and "ready" in r["msg"]}
    assert len(workers) == 2 and server.proc.pid not in workers


def test_models_lists_all_three(server):
    cards = requests.get(server.url + "/v1/models", timeout=10).json()["data"]
    assert [(c["id"], c["family"]) for c in cards] == [
        ("minilm", "sentence-transformers"),
        ("qwen3", "decoder"),
        ("clip", "dual-encoder"),
    ]


def test_each_model_answers_on_its_routes_on_both_workers(server, model_dirs, reference_model):
    from openai import OpenAI
    from sentence_transformers import SentenceTransformer

    qwen3 = SentenceTransformer(str(model_dirs["qwen3"]), device="cpu")
    expected = {"minilm": reference_model.encode(TEXTS), "qwen3": qwen3.encode(TEXTS, prompt_name="query")}
    for pid, session in server.pinned_sessions(2).items():
        minilm = session.post(server.url + "/embed_text", json={"texts": TEXTS}, timeout=30).json()
        assert minilm["model"] == "minilm"  # the first entry is the default
        assert (np.array(minilm["embeddings"]) * expected["minilm"]).sum(axis=1).min() >= 0.9999
        decoder = session.post(
            server.url + "/embed_text", json={"texts": TEXTS, "model": "qwen3", "prompt_name": "query"}, timeout=30
        ).json()
        assert (np.array(decoder["embeddings"]) * expected["qwen3"]).sum(axis=1).min() >= 0.9999
        images = session.post(
            server.url + "/embed_image",
            json={"images": [png((250, 0, 0)), png((0, 0, 250))], "model": "clip"},
            timeout=30,
        )
        assert images.status_code == 200 and images.json()["dimension"] == 24
        refused = session.post(
            server.url + "/embed_image", json={"images": [png((0, 0, 0))], "model": "qwen3"}, timeout=30
        )
        assert refused.status_code == 400 and refused.json()["error"]["code"] == "unsupported_modality"
        assert session.get(server.url + "/health", timeout=10).json()["pid"] == pid
    client = OpenAI(base_url=server.url + "/v1", api_key="unused", max_retries=0)
    result = client.embeddings.create(model="qwen3", input=TEXTS)
    assert result.model == "qwen3" and len(result.data[0].embedding) == 32
    similarity = requests.post(
        server.url + "/similarity",
        json={"texts": ["red", "blue"], "model": "clip", "images": [png((250, 0, 0))]},
        timeout=30,
    ).json()
    assert similarity["shape"] == [2, 1]


def test_metrics_carry_the_model(server):
    requests.post(server.url + "/embed_text", json={"texts": ["counted"], "model": "qwen3"}, timeout=30)
    assert server.metric("embedding_inputs_total", modality="text", model="qwen3") >= 1
    assert server.metric("embedding_batch_size_count", model="clip") >= 0
    assert server.metric("embedding_inputs_total", modality="image", model="clip") >= 2


def corrupt_weights(source, target):
    """A copy whose model.safetensors header is garbage: safetensors' own error, neither OSError nor ValueError."""
    shutil.copytree(source, target)
    weights = target / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[8:200] = b"x" * 192
    weights.write_bytes(bytes(data))
    return target


@pytest.mark.parametrize("broken", ["empty", "corrupt"])
def test_a_broken_entry_stops_start_up_with_one_line_naming_it(model_dirs, tmp_path, broken):
    bad = tmp_path / "empty"
    bad.mkdir()
    if broken == "corrupt":
        bad = corrupt_weights(model_dirs["minilm"], tmp_path / "corrupt")
    output = run_gunicorn_expecting_failure(
        {"MODELS": f"minilm={model_dirs['minilm']},bad={bad}", "BIND": "127.0.0.1:0"}
    )
    lines = [line for line in output.splitlines() if line.startswith("config error:")]
    assert len(lines) == 1 and re.match(r"config error: MODELS: entry bad=", lines[0]), output[-2000:]


def test_a_rejected_image_and_a_clean_stop_log_only_json_lines(server):
    """Runs last: it stops the module's server. A refused image is one access line that says why (no traceback
    from the thread pool), and SIGTERM leaves nothing but JSON records behind."""
    truncated_png = png("red")[:60]
    refused = requests.post(
        server.url + "/embed_image",
        json={"model": "clip", "images": [truncated_png]},
        headers={"X-Request-ID": "refused-image"},
        timeout=30,
    )
    assert refused.status_code == 400 and refused.json()["error"]["code"] == "invalid_image"
    assert server.stop() == 0
    lines = [line for line in server.log_path.read_text().splitlines() if line.strip()]
    not_json = [line for line in lines if not line.startswith("{")]
    assert not not_json, not_json[:20]
    records = [__import__("json").loads(line) for line in lines]
    (access,) = [r for r in records if r.get("request_id") == "refused-image"]
    assert access["error_code"] == "invalid_image" and access["error"].startswith("images[0]")
