"""Several models of several families in one instance: MODELS, selection by `model`, and what
/v1/models, /health, /stats and /metrics say about them (in-process; test_gunicorn_models runs it for real)."""

from __future__ import annotations

import base64
import io

import numpy as np
import pytest
from PIL import Image

from app import create_app
from app.config import ConfigError, Settings
from app.runtime import load_engine

from .engines import engine_for, started_engine
from .tiny_models import models_setting, three_models


@pytest.fixture(scope="module")
def model_dirs(tmp_path_factory):
    return three_models(tmp_path_factory.mktemp("models"))


@pytest.fixture(scope="module")
def models_env(model_dirs):
    return {"MODELS": models_setting(model_dirs), "DTYPE": "float32"}


@pytest.fixture(scope="module")
def multi(models_env):
    settings = Settings.from_env(models_env)
    engine = started_engine(settings)
    return create_app(settings, engine).test_client(), engine


def png() -> str:
    buffer = io.BytesIO()
    Image.new("RGB", (40, 30), (200, 30, 30)).save(buffer, "PNG")
    return base64.b64encode(buffer.getvalue()).decode()


# ----------------------------------------------------------------- settings
def test_models_entries_name_and_path(model_dirs):
    clip = model_dirs["clip"]
    settings = Settings.from_env({"MODELS": f"minilm={model_dirs['minilm']}, {clip}"})
    assert settings.model_specs() == [("minilm", str(model_dirs["minilm"])), ("clip-tiny", str(clip))]
    assert [m["name"] for m in settings.public_dict()["models"]] == ["minilm", "clip-tiny"]


@pytest.mark.parametrize(
    "value,fragment",
    [
        ("a=/nonexistent/dir", "'a=/nonexistent/dir'"),
        ("=/tmp", "empty name"),
        ("a=", "no path"),
    ],
)
def test_a_wrong_models_entry_names_it(value, fragment):
    with pytest.raises(ConfigError) as info:
        Settings.from_env({"MODELS": value})
    assert info.value.variable == "MODELS" and fragment in str(info.value)


def test_duplicate_names_and_both_settings_are_errors(model_dirs):
    path = model_dirs["minilm"]
    with pytest.raises(ConfigError, match="'x' is given twice"):
        Settings.from_env({"MODELS": f"x={path},x={model_dirs['clip']}"})
    with pytest.raises(ConfigError) as info:
        Settings.from_env({"MODELS": f"x={path}", "MODEL_PATH": str(path)})
    assert "MODELS" in str(info.value) and "MODEL_PATH" in str(info.value)


def test_an_entry_that_is_not_a_model_stops_loading_naming_it(model_dirs, tmp_path):
    (tmp_path / "notes").mkdir()
    settings = Settings.from_env({"MODELS": f"minilm={model_dirs['minilm']},broken={tmp_path / 'notes'}"})
    with pytest.raises(ConfigError) as info:
        load_engine(settings)
    assert info.value.variable == "MODELS" and "broken=" in str(info.value)


# --------------------------------------------------------------- one engine
def test_models_lists_every_model_with_its_capabilities(multi):
    client, _ = multi
    cards = {card["id"]: card for card in client.get("/v1/models").get_json()["data"]}
    assert list(cards) == ["minilm", "qwen3", "clip"]
    assert cards["minilm"]["family"] == "sentence-transformers"
    assert cards["minilm"]["capabilities"] == ["embed:text", "tokens"]
    assert cards["qwen3"]["family"] == "decoder" and cards["qwen3"]["pooling"] == ["lasttoken"]
    assert cards["clip"]["family"] == "dual-encoder"
    assert cards["clip"]["capabilities"] == ["embed:image", "embed:text"]
    assert {card["dimension"] for card in cards.values()} == {384, 32, 24}


def test_each_model_answers_by_name_and_the_first_is_the_default(multi, model_dirs):
    client, engine = multi
    for name, dimension in (("minilm", 384), ("qwen3", 32), ("clip", 24)):
        body = client.post("/v1/embeddings", json={"input": ["hello"], "model": name}).get_json()
        assert body["model"] == name and len(body["data"][0]["embedding"]) == dimension
        expected = engine.embed_texts(engine.resolve(name), ["hello"]).vectors[0]
        assert np.allclose(body["data"][0]["embedding"], expected, atol=1e-5)
    default = client.post("/embed_text", json={"texts": "hello"}).get_json()
    assert default["model"] == "minilm" and default["dimension"] == 384
    image = client.post("/embed_image", json={"images": [png()], "model": "clip"}).get_json()
    assert image["model"] == "clip" and image["dimension"] == 24


def test_a_model_asked_for_what_it_cannot_do_says_so(multi):
    client, _ = multi
    refused = client.post("/embed_image", json={"images": [png()], "model": "qwen3"})
    error = refused.get_json()["error"]
    assert refused.status_code == 400 and error["code"] == "unsupported_modality" and "'qwen3'" in error["message"]
    refused = client.post("/embed_text", json={"texts": "x", "model": "clip", "output_type": "sparse"})
    assert refused.status_code == 400 and refused.get_json()["error"]["code"] == "unsupported_output"
    missing = client.post("/embed_text", json={"texts": "x", "model": "bge-m3"})
    assert missing.status_code == 404 and "minilm, qwen3, clip" in missing.get_json()["error"]["message"]


def test_similarity_picks_the_model(multi):
    client, _ = multi
    body = client.post("/similarity", json={"texts": ["a red square"], "images": [png()], "model": "clip"}).get_json()
    assert body["model"] == "clip" and body["shape"] == [1, 1]


def test_each_model_has_its_own_batchers(multi):
    _, engine = multi
    assert set(engine.batchers) == {("minilm", "text"), ("qwen3", "text"), ("clip", "text"), ("clip", "image")}


def test_health_stats_and_metrics_cover_every_model(multi):
    client, engine = multi
    client.post("/embed_text", json={"texts": ["counted"], "model": "qwen3"})
    assert client.get("/health").get_json()["models"] == ["minilm", "qwen3", "clip"]
    assert client.get("/ready").status_code == 200
    stats = client.get("/stats").get_json()
    models = {m["id"]: m for m in stats["worker"]["models"]}
    assert set(models) == {"minilm", "qwen3", "clip"}
    assert all(m["weight_bytes"] > 0 and m["parameters"] > 0 for m in models.values())
    assert models["qwen3"]["batches"]["items"] >= 1
    assert [m["name"] for m in stats["settings"]["models"]] == ["minilm", "qwen3", "clip"]
    metrics = client.get("/metrics").get_data(as_text=True)
    assert 'embedding_inputs_total{modality="text",model="qwen3"}' in metrics
    assert 'embedding_batch_size_count{model="qwen3"}' in metrics


def test_warm_up_covers_every_model_before_ready(models_env, monkeypatch):
    from app.engine.families import FAMILIES

    settings = Settings.from_env(models_env)
    engine = engine_for(settings)
    warmed = []
    for family in FAMILIES:
        original = family.forward
        monkeypatch.setattr(
            family,
            "forward",
            lambda self, kind, rows, outputs, original=original: (
                warmed.append((self.name, kind)) or original(self, kind, rows, outputs)
            ),
        )
    client = create_app(settings, engine).test_client()
    assert client.get("/ready").status_code == 503
    engine.start_worker()
    assert set(warmed) == {("minilm", "text"), ("qwen3", "text"), ("clip", "text"), ("clip", "image")}
    assert client.get("/ready").status_code == 200
