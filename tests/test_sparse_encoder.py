"""Sparse encoders (#25): SPLADE as sentence-transformers' SparseEncoder saves it (max and sum pooling, relu and
log1p_relu, the v5 class names the hub's models ship), an inference-free Router (an IDF table on the query
side, no forward pass), and a plain `...ForMaskedLM` directory, each equal to `SparseEncoder.encode_query` /
`encode_document` on the same directory in float32 (same ids, weights within 1e-4); bfloat16 keeps the top
ids; the routes that serve them (TEI's /embed_sparse, the native /embed_text) and the 400s for what they do
not do."""

from __future__ import annotations

import json

import numpy as np
import pytest

from app.config import Settings
from app.engine.capabilities import SPARSE
from app.engine.errors import Unsupported
from app.engine.loader import load_model
from app.engine.requests import EmbedRequest
from app.engine.sparse_vectors import prune

from .engines import serving_fixtures, started_engine
from .tiny_models import (
    tiny_inference_free_splade,
    tiny_masked_lm,
    tiny_sentence_transformer,
    tiny_splade,
)

TEXTS = [
    "What is the capital of France?",
    "Paris is the capital and most populous city of France.",
    "sparse retrieval",
    "Lexical expansion lets a sparse encoder match documents that never use the query's own words, "
    "which is why SPLADE is used for hybrid search next to dense vectors.",
    # over the document side's 64 tokens (cut there) and not the query side's 512
    " ".join(["hybrid search with sparse and dense vectors"] * 15),
]


@pytest.fixture(scope="module")
def directories(tmp_path_factory):
    root = tmp_path_factory.mktemp("sparse")
    return {
        "splade": tiny_splade(root / "splade", legacy=True),
        "splade-sum": tiny_splade(root / "splade-sum", pooling="sum", activation="log1p_relu", seed=1),
        "prompted": tiny_splade(root / "prompted", prompts={"query": "query: ", "document": "passage: "}, seed=2),
        "pruned": tiny_splade(root / "pruned", max_active_dims=16, seed=3),
        "doc-only": tiny_inference_free_splade(root / "doc-only", seed=4),
        "mlm": tiny_masked_lm(root / "mlm", seed=5),
        "dense": tiny_sentence_transformer(root / "dense"),
    }


settings, engine, client = serving_fixtures()


def reference(path, texts, side: str | None, dtype: str = "float32") -> np.ndarray:
    """sentence-transformers' SparseEncoder on the same directory, as dense [texts, vocabulary] weights."""
    import torch
    from sentence_transformers import SparseEncoder

    encoder = SparseEncoder(str(path), device="cpu", model_kwargs={"dtype": getattr(torch, dtype)})
    encode = {"query": encoder.encode_query, "document": encoder.encode_document, None: encoder.encode}[side]
    return encode(texts, convert_to_sparse_tensor=False).float().numpy()


def assert_equal_to_reference(vectors, expected: np.ndarray) -> None:
    for (ids, weights), row in zip(vectors, expected):
        want = np.flatnonzero(row)
        assert want.size > 0
        np.testing.assert_array_equal(ids, want)
        np.testing.assert_allclose(weights, row[want], atol=1e-4, rtol=0)


@pytest.mark.parametrize("name", ["splade", "splade-sum", "prompted", "pruned", "doc-only", "mlm"])
@pytest.mark.parametrize("side", ["query", "document", None])
def test_each_layout_equals_sentence_transformers(engine, directories, name, side):
    model = engine.models[name]
    assert model.family == "sparse-encoder" and model.capabilities == {SPARSE}
    is_query = None if side is None else side == "query"
    result = engine.embed_texts(model, TEXTS, EmbedRequest(outputs={"sparse"}, is_query=is_query, use_cache=False))
    assert result.vectors.shape == (len(TEXTS), 0)
    assert_equal_to_reference(result.sparse, reference(directories[name], TEXTS, side))


def test_the_inference_free_query_side_runs_no_forward_pass(engine, directories):
    model = engine.models["doc-only"]
    assert model.describe()["routes"] == {"default": "document", "query": "query", "document": "document"}
    query = engine.embed_texts(model, TEXTS[:1], outputs={"sparse"}, is_query=True, use_cache=False).sparse[0]
    document = engine.embed_texts(model, TEXTS[:1], outputs={"sparse"}, is_query=False, use_cache=False).sparse[0]
    # an IDF table weighs only the text's own tokens; the document side expands over the vocabulary
    words = model.tokenizer(TEXTS[0], add_special_tokens=False)["input_ids"]
    assert set(query[0].tolist()) <= set(words)
    assert len(document[0]) > len(query[0])
    # a prompt named for a side picks it as is_query does (TEI's /embed_sparse has only prompt_name)
    named = engine.embed_texts(model, TEXTS[:1], outputs={"sparse"}, prompt_name="query", use_cache=False).sparse[0]
    np.testing.assert_array_equal(named[0], query[0])


@pytest.mark.parametrize("name", ["splade", "doc-only"])
def test_bfloat16_keeps_the_top_ids(directories, name):
    import torch

    model = load_model(directories[name], name, torch.bfloat16)
    for side in ("query", "document"):
        prepared = model.prepare_texts(TEXTS, EmbedRequest(outputs={"sparse"}, is_query=side == "query"))
        got = model.lane("text").forward_rows(prepared.rows, prepared.outputs).sparse
        in_bfloat16 = reference(directories[name], TEXTS, side, "bfloat16")
        in_float32 = reference(directories[name], TEXTS, side)
        for (ids, weights), same_dtype, exact in zip(got, in_bfloat16, in_float32):
            count = min(32, len(ids))
            top = set(np.argsort(-same_dtype, kind="stable")[:count].tolist())
            assert set(ids[np.argsort(-weights, kind="stable")[:count]].tolist()) == top
            dense = np.zeros_like(exact)
            dense[ids] = weights
            assert float(dense @ exact / np.linalg.norm(dense) / np.linalg.norm(exact)) >= 0.999


def test_a_plain_masked_lm_is_max_pooled_splade(engine):
    assert engine.models["mlm"].describe()["pooling"] == ["splade"]
    assert "splade(max/relu)" in engine.models["mlm"].summary()


def test_pruning_keeps_the_largest_weights_ids_ascending(engine):
    model = engine.models["splade"]
    full = engine.embed_texts(model, TEXTS, outputs={"sparse"}).sparse
    top = engine.embed_texts(model, TEXTS, outputs={"sparse"}, sparse_top_k=5).sparse
    floor = engine.embed_texts(model, TEXTS, outputs={"sparse"}, sparse_min_weight=0.5).sparse
    for (ids, weights), (top_ids, top_weights), (floor_ids, floor_weights) in zip(full, top, floor):
        assert len(top_ids) == 5 and np.all(np.diff(top_ids) > 0)
        assert top_weights.min() >= np.sort(weights)[-5]
        np.testing.assert_array_equal(floor_ids, ids[weights >= 0.5])
        np.testing.assert_array_equal(floor_weights, weights[weights >= 0.5])
    # the model's own max_active_dims (config_sentence_transformers.json) applies as sentence-transformers does
    assert all(
        len(ids) == 16 for ids, _ in engine.embed_texts(engine.models["pruned"], TEXTS, outputs={"sparse"}).sparse
    )


def test_prune_breaks_ties_by_the_lower_id():
    ids, weights = np.array([3, 7, 9, 12]), np.array([0.5, 1.0, 0.5, 0.25], dtype=np.float32)
    (kept_ids, kept), *_ = prune([(ids, weights)], 2, None)
    assert kept_ids.tolist() == [3, 7] and kept.tolist() == [0.5, 1.0]
    assert prune(None, 2, 0.1) is None


def test_a_sparse_encoder_gives_no_dense_vector(engine):
    with pytest.raises(Unsupported, match="sparse encoder.*/embed_sparse"):
        engine.embed_texts(engine.models["splade"], TEXTS[:1])
    with pytest.raises(Unsupported, match="gives no sparse vectors.*not a sparse encoder"):
        engine.embed_texts(engine.models["dense"], TEXTS[:1], outputs={"sparse"})


def test_tei_embed_sparse(client, directories):
    answer = client.post("/embed_sparse", json={"inputs": TEXTS[:2], "model": "doc-only"})
    assert answer.status_code == 200, answer.get_json()
    expected = reference(directories["doc-only"], TEXTS[:2], None)
    rows = answer.get_json()
    assert_equal_to_reference(
        [(np.array([p["index"] for p in row]), np.array([p["value"] for p in row])) for row in rows], expected
    )
    query = client.post(
        "/embed_sparse", json={"inputs": "sparse retrieval", "model": "doc-only", "prompt_name": "query"}
    )
    expected = reference(directories["doc-only"], ["sparse retrieval"], "query")
    assert {p["index"] for p in query.get_json()[0]} == set(np.flatnonzero(expected[0]).tolist())
    pruned = client.post("/embed_sparse", json={"inputs": TEXTS[1], "model": "splade", "sparse_top_k": 3})
    assert len(pruned.get_json()[0]) == 3


def test_native_embed_text_sparse_with_token_strings(client, engine):
    body = {"texts": TEXTS[:2], "model": "splade", "output_types": ["sparse"], "return_tokens": True}
    answer = client.post("/embed_text", json=body)
    assert answer.status_code == 200, answer.get_json()
    payload = answer.get_json()
    assert "embeddings" not in payload
    tokenizer = engine.models["splade"].tokenizer
    for entry in payload["sparse"]:
        assert entry["tokens"] == tokenizer.convert_ids_to_tokens(entry["indices"])
        assert len(entry["indices"]) == len(entry["values"]) > 0
    documents = client.post("/embed_text", json={**body, "is_query": False, "model": "doc-only"}).get_json()
    queries = client.post("/embed_text", json={**body, "is_query": True, "model": "doc-only"}).get_json()
    assert len(queries["sparse"][0]["indices"]) < len(documents["sparse"][0]["indices"])


def test_dense_routes_answer_a_400_that_names_the_sparse_routes(client):
    for path, body in [
        ("/v1/embeddings", {"input": "hello", "model": "splade"}),
        ("/embed_text", {"texts": ["hello"], "model": "splade"}),
        ("/embed", {"inputs": "hello", "model": "splade"}),
    ]:
        answer = client.post(path, json=body)
        assert answer.status_code in (400, 422), (path, answer.get_json())
        assert "/embed_sparse" in json.dumps(answer.get_json()), path
    # and a dense model asked for sparse vectors says it has none, in TEI's shape
    answer = client.post("/embed_sparse", json={"inputs": "hello", "model": "dense"})
    assert answer.status_code == 422 and answer.get_json()["error_type"] == "Validation"


def test_the_model_is_listed_with_its_outputs(client):
    cards = {card["id"]: card for card in client.get("/v1/models").get_json()["data"]}
    assert "splade" in cards
    info = client.get("/info?model=splade").get_json()
    assert info["model_type"] == {"embedding": {"pooling": "splade"}}
    tags = {tag["name"] for tag in client.get("/api/tags").get_json()["models"]}
    assert "splade" in tags or "splade:latest" in tags


def test_the_cache_tells_sides_apart(tmp_path, directories):
    settings = Settings.from_env({"DTYPE": "float32", "MODELS": f"doc-only={directories['doc-only']}"})
    engine = started_engine(settings)
    model = engine.models["doc-only"]
    document = engine.embed_texts(model, TEXTS[:1], outputs={"sparse"}, is_query=False)
    query = engine.embed_texts(model, TEXTS[:1], outputs={"sparse"}, is_query=True)
    again = engine.embed_texts(model, TEXTS[:1], outputs={"sparse"}, is_query=True)
    assert (document.cache, query.cache, again.cache) == ("miss", "miss", "hit")
    np.testing.assert_array_equal(again.sparse[0][0], query.sparse[0][0])
    assert len(document.sparse[0][0]) != len(query.sparse[0][0])


def test_modules_it_does_not_implement_stop_start_up_by_name(tmp_path, directories):
    import shutil

    broken = tmp_path / "csr"
    shutil.copytree(directories["splade"], broken)
    listing = json.loads((broken / "modules.json").read_text())
    listing.append(
        {"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.base.modules.Normalize"}
    )
    (broken / "2_Normalize").mkdir()
    (broken / "modules.json").write_text(json.dumps(listing))
    with pytest.raises(ValueError, match="Transformer -> SpladePooling -> Normalize"):
        load_model(broken, "csr", __import__("torch").float32)
