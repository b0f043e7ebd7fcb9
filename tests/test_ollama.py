"""Ollama's API: shapes, normalisation semantics and errors in-process, and the real `ollama` client against a
real gunicorn."""

from __future__ import annotations

import numpy as np
import pytest

TEXTS = ["Ollama's clients work unchanged", "only the base URL changes"]


def test_embed_is_normalised_and_embeddings_is_raw(client, engine, model):
    body = client.post("/api/embed", json={"model": "all-MiniLM-L6-v2", "input": TEXTS}).get_json()
    assert set(body) == {"model", "embeddings", "total_duration", "load_duration", "prompt_eval_count"}
    expected = engine.embed_texts(model, TEXTS).vectors
    assert np.allclose(body["embeddings"], expected, atol=1e-6) and body["prompt_eval_count"] > 0
    raw = client.post("/api/embeddings", json={"model": "all-MiniLM-L6-v2", "prompt": TEXTS[0]}).get_json()
    unnormalised = engine.embed_texts(model, TEXTS[:1], normalize=False).vectors[0]
    assert np.allclose(raw["embedding"], unnormalised, atol=1e-6) and abs(np.linalg.norm(unnormalised) - 1) > 1e-3
    assert client.post("/api/embeddings", json={"model": "all-MiniLM-L6-v2", "prompt": ""}).get_json() == {
        "embedding": []
    }


def test_tags_latest_dimensions_and_truncation(client):
    short = client.post(
        "/api/embed",
        json={
            "model": "all-MiniLM-L6-v2:latest",
            "input": "x",
            "dimensions": 64,
            "keep_alive": "5m",
            "options": {"temperature": 0},
        },
    ).get_json()
    assert len(short["embeddings"][0]) == 64
    refused = client.post("/api/embed", json={"model": "all-MiniLM-L6-v2", "input": "word " * 1000, "truncate": False})
    assert refused.status_code == 400 and set(refused.get_json()) == {"error"}


def test_listing_routes_for_front_ends(client):
    models = client.get("/api/tags").get_json()["models"]
    assert models[0]["name"] == "all-MiniLM-L6-v2" and "details" in models[0]
    show = client.post("/api/show", json={"model": "all-MiniLM-L6-v2"}).get_json()
    assert show["capabilities"] == ["embedding"] and show["model_info"]["embedding_length"] == 384
    assert client.get("/api/version").get_json()["version"]


@pytest.mark.parametrize(
    "route,body,status",
    [
        ("/api/embed", {"model": "nomic-embed-text", "input": "x"}, 404),
        ("/api/embed", {"model": "all-MiniLM-L6-v2", "input": []}, 400),
        ("/api/embed", {"model": "all-MiniLM-L6-v2"}, 400),
        ("/api/embeddings", {"model": "all-MiniLM-L6-v2", "prompt": 3}, 400),
        ("/api/show", {}, 400),
    ],
)
def test_errors_are_in_ollamas_shape(fake_client, route, body, status):
    client = fake_client
    response = client.post(route, json=body)
    assert response.status_code == status and set(response.get_json()) == {"error"}
    assert client.post("/api/embed", json={"model": "all-MiniLM-L6-v2", "input": "fine"}).status_code == 200


@pytest.mark.slow
def test_the_ollama_client_against_gunicorn(tmp_path):
    import ollama
    import requests

    from .gunicorn_process import GunicornProcess

    with GunicornProcess({"DTYPE": "float32"}, workers=2, log_path=tmp_path / "server.log") as server:
        client = ollama.Client(host=server.url)
        result = client.embed(model="all-MiniLM-L6-v2", input=TEXTS)
        native = requests.post(server.url + "/embed_text", json={"texts": TEXTS}, timeout=30).json()["embeddings"]
        assert np.allclose(result.embeddings, native, atol=1e-6)
        assert len(client.embeddings(model="all-MiniLM-L6-v2", prompt=TEXTS[0]).embedding) == 384
        assert [m.model for m in client.list().models] == ["all-MiniLM-L6-v2"]
        assert "embedding" in client.show("all-MiniLM-L6-v2").capabilities
        with pytest.raises(ollama.ResponseError) as info:
            client.embed(model="llama3", input="x")
        assert info.value.status_code == 404 and "not found" in info.value.error
