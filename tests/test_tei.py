"""text-embeddings-inference's routes in-process, checked against sentence-transformers and the tokenizer;
truncation direction and per-request limits on every text route; the earlier BGE-M3 server's `/embed` body.
The real clients (huggingface_hub, LlamaIndex) are in test_clients.py."""

from __future__ import annotations

import numpy as np
import pytest

TEXTS = ["text-embeddings-inference's clients work unchanged", "only the base URL changes"]
LONG = " ".join(f"word{i}" for i in range(400))  # over MiniLM's 256 tokens


def cosine(a, b) -> float:
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return float(a @ b / np.linalg.norm(a) / np.linalg.norm(b))


@pytest.fixture
def left_reference(reference_model):
    reference_model.tokenizer.truncation_side = "left"
    yield reference_model
    reference_model.tokenizer.truncation_side = "right"


def test_embed_equals_the_native_route_and_sentence_transformers(client, reference_model):
    tei = client.post("/embed", json={"inputs": TEXTS}).get_json()
    native = client.post("/embed_text", json={"texts": TEXTS}).get_json()["embeddings"]
    assert np.allclose(tei, native, atol=1e-6)
    expected = reference_model.encode(TEXTS)
    assert all(cosine(a, b) >= 0.9999 for a, b in zip(tei, expected))
    single = client.post(
        "/embed", json={"inputs": TEXTS[0], "normalize": False, "dimensions": 64, "truncate": None, "prompt_name": None}
    ).get_json()
    assert len(single) == 1 and len(single[0]) == 64


@pytest.mark.parametrize(
    "route,body,vectors",
    [
        ("/embed", {"inputs": [LONG], "truncation_direction": "Left"}, lambda b: b),
        ("/embed_text", {"texts": [LONG], "truncation_direction": "left"}, lambda b: b["embeddings"]),
        (
            "/v1/embeddings",
            {"input": [LONG], "truncation_direction": "left"},
            lambda b: [d["embedding"] for d in b["data"]],
        ),
    ],
)
def test_truncation_direction_left_keeps_the_end(client, left_reference, reference_model, route, body, vectors):
    got = vectors(client.post(route, json=body).get_json())[0]
    assert cosine(got, left_reference.encode([LONG])[0]) >= 0.9999
    reference_model.tokenizer.truncation_side = "right"
    assert cosine(got, reference_model.encode([LONG])[0]) < 0.99  # the other end: a different vector


def test_max_length_truncates_below_the_model_limit(client, reference_model):
    got = client.post("/embed_text", json={"texts": [LONG], "max_length": 16}).get_json()["embeddings"][0]
    previous = reference_model.max_seq_length
    reference_model.max_seq_length = 16
    try:
        assert cosine(got, reference_model.encode([LONG])[0]) >= 0.9999
    finally:
        reference_model.max_seq_length = previous
    refused = client.post("/embed_text", json={"texts": [LONG], "max_length": 16, "truncate": False})
    assert refused.status_code == 400 and "limit of 16" in refused.get_json()["error"]["message"]
    too_small = client.post("/embed_text", json={"texts": ["x"], "max_length": 2})
    assert too_small.status_code == 400  # [CLS] and [SEP] alone fill it


def test_embed_all_is_every_tokens_vector(client, reference_model):
    got = client.post("/embed_all", json={"inputs": TEXTS}).get_json()
    expected = reference_model.encode(TEXTS, output_value="token_embeddings")
    for tokens, reference in zip(got, expected):
        assert len(tokens) == len(reference)
        assert all(cosine(a, b) >= 0.9999 for a, b in zip(tokens, reference.numpy()))


def test_similarity_in_teis_shape_and_the_root_route(client, reference_model):
    body = {"inputs": {"source_sentence": "a cat sits", "sentences": ["a cat sat", "stocks fell"]}}
    got = client.post("/similarity", json=body).get_json()
    vectors = reference_model.encode(["a cat sits", "a cat sat", "stocks fell"])
    expected = [cosine(vectors[0], v) for v in vectors[1:]]
    assert np.allclose(got, expected, atol=1e-4) and got[0] > got[1]
    assert client.post("/", json={**body, "parameters": {"truncate": True}}).get_json() == pytest.approx(got, abs=1e-6)
    assert np.allclose(
        client.post("/", json={"inputs": TEXTS}).get_json(),
        client.post("/embed", json={"inputs": TEXTS}).get_json(),
        atol=1e-6,
    )
    native = client.post("/similarity", json={"texts": ["a"], "documents": ["b"]}).get_json()
    assert native["shape"] == [1, 1]  # the native body still works


def test_tokenize_and_decode_as_the_tokenizer_does(client, model):
    text = "Héllo wörld, tokens!"
    tokens = client.post("/tokenize", json={"inputs": text}).get_json()[0]
    assert [t["id"] for t in tokens] == model.tokenizer(text)["input_ids"]
    assert tokens[0] == {"id": tokens[0]["id"], "text": "[CLS]", "special": True, "start": None, "stop": None}
    data = text.encode()
    for token in tokens[1:-1]:  # byte offsets into the input, as TEI gives them
        assert data[token["start"] : token["stop"]].decode() == token["text"] and not token["special"]
    bare = client.post("/tokenize", json={"inputs": [text, "b"], "add_special_tokens": False}).get_json()
    assert len(bare) == 2 and not any(t["special"] for t in bare[0])
    ids = [t["id"] for t in tokens]
    decoded = client.post("/decode", json={"ids": ids}).get_json()
    assert decoded == [model.tokenizer.decode(ids, skip_special_tokens=True)]
    kept = client.post("/decode", json={"ids": [ids, ids[:2]], "skip_special_tokens": False}).get_json()
    assert kept[0].startswith("[CLS]") and len(kept) == 2


def test_info_describes_the_model_and_limits(client, settings):
    info = client.get("/info").get_json()
    assert info["model_id"] == "all-MiniLM-L6-v2" and info["model_type"] == {"embedding": {"pooling": "mean"}}
    assert info["max_input_length"] == 256 and info["max_client_batch_size"] == settings.max_batch_items
    assert info["model_dtype"] == "float32" and info["auto_truncate"] is True


@pytest.mark.parametrize(
    "route,body,status,kind",
    [
        ("/embed", {"inputs": []}, 400, "Empty"),
        ("/embed", {"inputs": 3}, 422, "Validation"),
        ("/embed", {"inputs": ["a", ""]}, 422, "Validation"),
        ("/embed", {"inputs": [LONG], "truncate": False}, 422, "Validation"),
        ("/embed", {"inputs": [[101, 10**6]]}, 422, "Validation"),  # outside the vocabulary
        ("/embed", {"inputs": "x", "truncation_direction": "middle"}, 422, "Validation"),
        ("/embed", {"inputs": ["a"] * 3000}, 413, "Validation"),  # MAX_BATCH_ITEMS, TEI's batch size error
        ("/embed_all", {"inputs": [3]}, 422, "Validation"),
        ("/similarity", {"inputs": {"source_sentence": "a", "sentences": []}}, 400, "Empty"),
        ("/similarity", {"inputs": {"source_sentence": "a"}}, 422, "Validation"),
        ("/tokenize", {"inputs": []}, 400, "Empty"),
        ("/decode", {"ids": [10**9]}, 422, "Validation"),
        ("/decode", {"ids": "abc"}, 422, "Validation"),
        ("/", {"inputs": {"sentences": ["a"]}}, 422, "Validation"),
        ("/embed", {"inputs": "x", "model": "nope"}, 404, "Validation"),
    ],
)
def test_errors_are_in_teis_shape(fake_client, route, body, status, kind):
    client = fake_client
    response = client.post(route, json=body)
    assert response.status_code == status, response.get_json()
    assert set(response.get_json()) == {"error", "error_type"} and response.get_json()["error_type"] == kind
    assert client.post("/embed", json={"inputs": "still serving"}).status_code == 200


def test_bge_m3_servers_body_on_embed(client, reference_model):
    body = {"texts": TEXTS, "output_type": "dense", "normalize": True, "max_length": 8192, "batch_size": 12}
    answer = client.post("/embed", json=body).get_json()
    assert np.allclose(answer["embeddings"], reference_model.encode(TEXTS), atol=1e-5)
    refused = client.post("/embed", json={"texts": TEXTS, "output_type": "unknown"})
    assert refused.status_code == 400 and refused.get_json()["error"]["param"] == "output_type"  # the native shape


def test_embed_takes_this_models_token_ids_from_tokenize(client):
    ids = [token["id"] for token in client.post("/tokenize", json={"inputs": TEXTS[0]}).get_json()[0]]
    from_ids = client.post("/embed", json={"inputs": [ids]}).get_json()
    assert np.allclose(from_ids, client.post("/embed", json={"inputs": TEXTS[:1]}).get_json(), atol=1e-6)
