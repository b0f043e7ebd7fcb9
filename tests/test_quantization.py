"""Quantized vectors (`precision` on the native routes, `embedding_types` on Cohere's `/v2/embed`) against
sentence-transformers' `quantize_embeddings`, and Cohere's route in-process. The real `cohere` client is in
test_clients.py."""

from __future__ import annotations

import base64

import numpy as np
import pytest
from sentence_transformers.util.quantization import quantize_embeddings

from app.engine.quantization import calibration_texts

TEXTS = [
    "quantized vectors are smaller",
    "binary vectors are 32 times smaller",
    "a third text",
    "int8 keeps most of the recall",
]
PRECISIONS = ["int8", "uint8", "binary", "ubinary"]


def native(client, precision: str, texts=TEXTS, **extra) -> np.ndarray:
    body = client.post("/embed_text", json={"texts": texts, "precision": precision, **extra}).get_json()
    assert body["precision"] == precision
    return np.array(body["embeddings"])


def test_calibration_is_the_shipped_corpus_embedded_once(engine, model, reference_model):
    calibration = engine.calibrations[model.name]
    corpus = calibration_texts()
    assert len(corpus) >= 64 and calibration.raw.shape == (len(corpus), 384)
    expected = reference_model.encode(corpus)
    ranges = calibration.ranges(None, True)
    assert np.allclose(ranges, np.vstack((expected.min(axis=0), expected.max(axis=0))), atol=1e-5)


@pytest.mark.parametrize("precision", PRECISIONS)
def test_precision_is_quantize_embeddings_of_the_float_vectors(client, engine, model, precision):
    floats = native(client, "float32")
    got = native(client, precision)
    ranges = engine.calibrations[model.name].ranges(None, True)
    kwargs = {"ranges": ranges} if precision in ("int8", "uint8") else {}
    expected = quantize_embeddings(floats.astype(np.float32), precision, **kwargs)
    assert np.array_equal(got, expected.astype(np.int64))


@pytest.mark.parametrize("precision", PRECISIONS)
def test_end_to_end_against_sentence_transformers(client, reference_model, precision):
    """sentence-transformers' own encode + quantize_embeddings with the shipped calibration corpus."""
    calibration = reference_model.encode(calibration_texts())
    expected = quantize_embeddings(
        reference_model.encode(TEXTS),
        precision,
        calibration_embeddings=calibration if precision in ("int8", "uint8") else None,
    )
    got = native(client, precision)
    assert got.shape == expected.shape
    # float32 rounding may move a value across a step boundary, never further
    assert np.abs(got - expected.astype(np.int64)).max() <= 1 and np.mean(got == expected) > 0.99


def test_a_vectors_quantized_form_does_not_depend_on_its_request(client):
    alone = native(client, "int8", texts=TEXTS[:1])
    together = native(client, "int8", texts=TEXTS)
    assert np.array_equal(alone[0], together[0])


def test_dimensions_and_base64_with_a_precision(client, engine, model):
    short = native(client, "int8", dimensions=128)
    floats = native(client, "float32", dimensions=128)
    ranges = engine.calibrations[model.name].ranges(128, True)
    assert np.array_equal(short, quantize_embeddings(floats.astype(np.float32), "int8", ranges=ranges))
    encoded = client.post(
        "/embed_text", json={"texts": TEXTS, "precision": "ubinary", "encoding_format": "base64"}
    ).get_json()["embeddings"]
    assert np.array_equal(
        [np.frombuffer(base64.b64decode(row), np.uint8) for row in encoded], native(client, "ubinary")
    )
    refused = client.post("/embed_text", json={"texts": TEXTS, "precision": "int4"})
    assert refused.status_code == 400 and refused.get_json()["error"]["param"] == "precision"


# ----------------------------------------------------------------- Cohere's /v2/embed
def test_v2_embed_returns_every_type_asked_for(client):
    body = client.post(
        "/v2/embed",
        json={
            "model": "all-MiniLM-L6-v2",
            "texts": TEXTS,
            "input_type": "search_query",
            "embedding_types": ["float", "int8", "uint8", "binary", "ubinary", "base64"],
        },
    ).get_json()
    assert body["response_type"] == "embeddings_by_type" and body["texts"] == TEXTS and body["id"]
    assert body["meta"]["billed_units"]["input_tokens"] > 0
    embeddings = body["embeddings"]
    assert np.allclose(embeddings["float"], native(client, "float32"), atol=1e-6)
    for precision in PRECISIONS:
        assert np.array_equal(embeddings[precision], native(client, precision))
    decoded = [np.frombuffer(base64.b64decode(row), "<f4") for row in embeddings["base64"]]
    assert np.allclose(decoded, embeddings["float"], atol=1e-6)
    only_float = client.post("/v2/embed", json={"texts": TEXTS[:1], "input_type": "search_document"}).get_json()
    assert list(only_float["embeddings"]) == ["float"]


def test_v2_embed_truncate_max_tokens_and_output_dimension(client):
    long = " ".join(f"word{i}" for i in range(400))

    def vector(**extra):
        return client.post("/v2/embed", json={"texts": [long], "input_type": "clustering", **extra})

    assert vector(truncate="NONE").status_code == 400
    end = vector(truncate="END").get_json()["embeddings"]["float"][0]
    start = vector(truncate="START").get_json()["embeddings"]["float"][0]
    assert np.allclose(start, native(client, "float32", texts=[long], truncation_direction="left")[0], atol=1e-6)
    assert not np.allclose(start, end, atol=1e-3)
    capped = vector(max_tokens=16).get_json()["embeddings"]["float"][0]
    assert np.allclose(capped, native(client, "float32", texts=[long], max_length=16)[0], atol=1e-6)
    assert len(vector(output_dimension=128).get_json()["embeddings"]["float"][0]) == 128


def test_v2_embed_inputs_with_text_content(client):
    body = {
        "inputs": [{"content": [{"type": "text", "text": text}]} for text in TEXTS],
        "input_type": "search_document",
    }
    got = client.post("/v2/embed", json=body).get_json()["embeddings"]["float"]
    assert np.allclose(got, native(client, "float32"), atol=1e-6)


@pytest.mark.parametrize(
    "body,status",
    [
        ({"texts": TEXTS, "images": ["data:image/png;base64,AAAA"]}, 400),
        ({"input_type": "search_query"}, 400),
        ({"texts": [], "input_type": "search_query"}, 400),
        ({"texts": ["a"], "embedding_types": ["int4"]}, 400),
        ({"texts": ["a"], "truncate": "MIDDLE"}, 400),
        ({"texts": ["a"], "model": "embed-english-v3.0"}, 404),
        ({"images": ["data:image/png;base64,AAAA"]}, 400),  # a text model
        ({"inputs": [{"content": []}]}, 400),
    ],
)
def test_v2_embed_errors_are_in_cohere_shape(fake_client, body, status):
    client = fake_client
    response = client.post("/v2/embed", json=body)
    assert response.status_code == status and set(response.get_json()) == {"message"}, response.get_json()
    assert client.post("/v2/embed", json={"texts": ["fine"]}).status_code == 200


def test_input_type_picks_the_models_prompt(tmp_path):
    from app import create_app
    from app.config import Settings

    from .tiny_models import tiny_qwen3_embedding

    directory = tiny_qwen3_embedding(tmp_path / "qwen3-embedding")
    client = create_app(Settings.from_env({"MODEL_PATH": str(directory), "DTYPE": "float32"})).test_client()
    query = client.post("/v2/embed", json={"texts": TEXTS, "input_type": "search_query"}).get_json()
    document = client.post("/v2/embed", json={"texts": TEXTS, "input_type": "search_document"}).get_json()
    with_prompt = client.post("/embed_text", json={"texts": TEXTS, "prompt_name": "query"}).get_json()
    without = client.post("/embed_text", json={"texts": TEXTS, "prompt_name": "document"}).get_json()
    assert np.allclose(query["embeddings"]["float"], with_prompt["embeddings"], atol=1e-6)
    assert np.allclose(document["embeddings"]["float"], without["embeddings"], atol=1e-6)
    assert not np.allclose(query["embeddings"]["float"], document["embeddings"]["float"], atol=1e-3)
