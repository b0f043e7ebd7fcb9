"""Late-interaction text models (#27): ColBERT as sentence-transformers' MultiVectorEncoder saves it (query
expansion attended or not, maxsim and meanmaxsim), as PyLate saves it (model type ColBERT, [Q]/[D] prefixes
added to the tokenizer, only the Transformer and Dense listed), and a Stanford ColBERT checkpoint (HF_ColBERT,
artifact.metadata); each equal to `MultiVectorEncoder.encode_query` / `encode_document` on the same directory in
float32 (the same number of vectors, each cosine >= 0.9999) with MaxSim scores within 1e-4 of its
`similarity`; bfloat16 keeps cosine >= 0.999; the routes that serve them and the 400s for what they do not do."""

from __future__ import annotations

import json
import string

import numpy as np
import pytest

from app.config import Settings
from app.engine.capabilities import COLBERT
from app.engine.errors import InvalidInput, Unsupported
from app.engine.loader import load_model
from app.engine.requests import EmbedRequest

from .engines import serving_fixtures, started_engine
from .tiny_models import (
    tiny_multi_vector,
    tiny_pylate_colbert,
    tiny_sentence_transformer,
    tiny_stanford_colbert,
)

QUERIES = ["Where is Paris?", "what do late-interaction models score", "hi"]
DOCUMENTS = [
    "Paris is the capital and most populous city of France.",
    "ColBERT keeps one vector per token; MaxSim sums each query token's best match!",
    "a",
    # over every layout's document length: cut there, as sentence-transformers cuts it
    " ".join(["late interaction scores every query token against every document token"] * 6),
]
LAYOUTS = ["colbert", "attended-mean", "pylate", "stanford"]


@pytest.fixture(scope="module")
def directories(tmp_path_factory):
    root = tmp_path_factory.mktemp("multi-vector")
    return {
        "colbert": tiny_multi_vector(root / "colbert"),
        "attended-mean": tiny_multi_vector(root / "attended-mean", attend=True, similarity="meanmaxsim", seed=1),
        "pylate": tiny_pylate_colbert(root / "pylate", seed=2),
        "stanford": tiny_stanford_colbert(root / "stanford", seed=3),
        "dense": tiny_sentence_transformer(root / "dense"),
    }


settings, engine, client = serving_fixtures()


def reference(path, dtype: str = "float32"):
    import torch
    from sentence_transformers import MultiVectorEncoder

    return MultiVectorEncoder(str(path), device="cpu", model_kwargs={"dtype": getattr(torch, dtype)})


def assert_same_vectors(got: list[np.ndarray], expected, floor: float = 0.9999) -> None:
    assert len(got) == len(expected)
    for matrix, want in zip(got, expected):
        want = np.asarray(want, dtype=np.float64)
        assert matrix.shape == want.shape
        cosine = (matrix * want).sum(1) / np.linalg.norm(matrix, axis=1) / np.linalg.norm(want, axis=1)
        assert cosine.min() >= floor, cosine.min()


@pytest.mark.parametrize("name", LAYOUTS)
def test_each_layout_equals_sentence_transformers(engine, directories, name):
    model = engine.models[name]
    assert model.family == "multi-vector" and model.capabilities == {COLBERT, "rerank"}
    encoder = reference(directories[name])
    for is_query, texts, encode in ((True, QUERIES, encoder.encode_query), (False, DOCUMENTS, encoder.encode_document)):
        result = engine.embed_texts(model, texts, outputs={COLBERT}, is_query=is_query, use_cache=False)
        assert result.vectors.shape == (len(texts), 0)
        assert_same_vectors(result.colbert, encode(texts, convert_to_numpy=True))
    scores = engine.rerank(model, QUERIES, DOCUMENTS, use_cache=False).scores
    expected = encoder.similarity(encoder.encode_query(QUERIES), encoder.encode_document(DOCUMENTS)).numpy()
    np.testing.assert_allclose(scores, expected, atol=1e-4, rtol=0)


def test_the_layouts_read_their_own_settings(engine):
    cards = {name: engine.models[name].describe() for name in LAYOUTS}
    assert (cards["colbert"]["query_tokens"], cards["colbert"]["document_tokens"]) == (16, 24)
    assert (cards["pylate"]["query_tokens"], cards["pylate"]["document_tokens"]) == (12, 20)  # PyLate's top-level keys
    assert (cards["stanford"]["query_tokens"], cards["stanford"]["document_tokens"]) == (12, 20)  # artifact.metadata
    assert cards["attended-mean"]["similarity"] == "meanmaxsim" and cards["colbert"]["similarity"] == "maxsim"
    # every query is padded with mask tokens to the query length: that many vectors, whatever its own length
    short = engine.embed_texts(engine.models["colbert"], ["hi"], outputs={COLBERT}, is_query=True).colbert[0]
    assert short.shape == (16, 16)
    # the punctuation skip-list drops document tokens, not query tokens
    tokenizer = engine.models["colbert"].tokenizer
    text = "a, b; c!"
    document = engine.embed_texts(engine.models["colbert"], [text], outputs={COLBERT}, is_query=False).colbert[0]
    pieces = tokenizer.tokenize("[D] " + text)  # [D] is three pieces here, its brackets punctuation too
    assert len(document) == 2 + sum(piece not in string.punctuation for piece in pieces) < 2 + len(pieces)


def test_queries_and_documents_batched_together_equal_each_alone(engine):
    """Rows of both sides (expansion masks, prefixes) in one pass, as the batcher mixes requests."""
    model = engine.models["attended-mean"]
    queries = model.prepare_texts(QUERIES, EmbedRequest(is_query=True, outputs={COLBERT}))
    documents = model.prepare_texts(DOCUMENTS, EmbedRequest(is_query=False, outputs={COLBERT}))
    rows = [row for pair in zip(queries.rows, documents.rows) for row in pair] + documents.rows[len(QUERIES) :]
    together = model.lane("text").forward_rows(rows, frozenset({COLBERT})).multivector
    alone = [model.lane("text").forward_rows([row], frozenset({COLBERT})).multivector[0] for row in rows]
    for a, b in zip(together, alone):
        np.testing.assert_allclose(a, b, atol=1e-5)


@pytest.mark.parametrize("name", ["colbert", "pylate"])
def test_bfloat16_keeps_every_vector(directories, name):
    import torch

    model = load_model(directories[name], name, torch.bfloat16)
    encoder = reference(directories[name])
    for is_query, texts, encode in ((True, QUERIES, encoder.encode_query), (False, DOCUMENTS, encoder.encode_document)):
        prepared = model.prepare_texts(texts, EmbedRequest(is_query=is_query, outputs={COLBERT}))
        got = model.lane("text").forward_rows(prepared.rows, prepared.outputs).multivector
        assert_same_vectors(got, encode(texts, convert_to_numpy=True), floor=0.999)


def test_it_gives_no_single_vector_and_says_where_to_go(engine, client):
    with pytest.raises(Unsupported, match="multi-vector.*output_types"):
        engine.embed_texts(engine.models["colbert"], QUERIES[:1])
    for path, body in [
        ("/v1/embeddings", {"input": "hello", "model": "colbert"}),
        ("/embed_text", {"texts": ["hello"], "model": "colbert"}),
        ("/embed", {"inputs": "hello", "model": "colbert"}),
    ]:
        answer = client.post(path, json=body)
        assert answer.status_code in (400, 422), (path, answer.get_json())
        assert "colbert" in json.dumps(answer.get_json()) and "MaxSim" in json.dumps(answer.get_json()), path


def test_requests_it_cannot_serve_exactly_are_400s(engine):
    model = engine.models["colbert"]
    with pytest.raises(InvalidInput, match="truncation_direction"):
        engine.embed_texts(model, DOCUMENTS, outputs={COLBERT}, truncation_direction="left")
    with pytest.raises(InvalidInput, match=r"input\[3\] has \d+ tokens.*at most 24"):
        engine.embed_texts(model, DOCUMENTS, outputs={COLBERT}, truncate=False)
    with pytest.raises(InvalidInput, match="instruction"):
        engine.rerank(model, QUERIES[:1], DOCUMENTS, instruction="judge relevance")


def test_truncate_false_tokenises_again_only_the_texts_that_reached_the_limit(engine, monkeypatch):
    """sentence-transformers tokenises each text once; only a row as long as the limit can have been cut, so only
    such a text is tokenised a second time, whole, to be refused if it was longer."""
    model = engine.models["colbert"]
    tokenizer, again = model.tokenizer, []
    monkeypatch.setattr(model, "tokenizer", lambda texts, **kw: again.append(list(texts)) or tokenizer(texts, **kw))
    short = engine.embed_texts(model, DOCUMENTS[::2][:2], outputs={COLBERT}, truncate=False, use_cache=False)
    assert len(short.colbert) == 2 and again == []
    with pytest.raises(InvalidInput, match=r"input\[3\] has \d+ tokens.*at most 24"):
        engine.embed_texts(model, DOCUMENTS, outputs={COLBERT}, truncate=False, use_cache=False)
    assert len(again) == 1 and again[0][-1].endswith(DOCUMENTS[3])
    assert not any(text.endswith((DOCUMENTS[0], DOCUMENTS[2])) for text in again[0])


def test_native_embed_text_and_similarity(client, engine, directories):
    encoder = reference(directories["colbert"])
    body = {"texts": DOCUMENTS, "model": "colbert", "output_types": ["colbert"], "is_query": False}
    answer = client.post("/embed_text", json=body)
    assert answer.status_code == 200, answer.get_json()
    payload = answer.get_json()
    assert "embeddings" not in payload and payload["colbert_dimension"] == 16
    assert_same_vectors([np.array(m) for m in payload["colbert"]], encoder.encode_document(DOCUMENTS))
    half = client.post("/embed_text", json={**body, "colbert_precision": "float16", "encoding_format": "base64"})
    assert half.get_json()["colbert_shapes"] == [list(np.shape(m)) for m in payload["colbert"]]
    matrix = client.post("/similarity", json={"texts": QUERIES, "documents": DOCUMENTS, "model": "colbert"})
    assert matrix.status_code == 200, matrix.get_json()
    expected = encoder.similarity(encoder.encode_query(QUERIES), encoder.encode_document(DOCUMENTS)).numpy()
    np.testing.assert_allclose(matrix.get_json()["similarity_matrix"], expected, atol=1e-4)
    alone = client.post("/similarity", json={"texts": QUERIES, "model": "colbert", "output_types": ["colbert"]})
    expected = encoder.similarity(encoder.encode_query(QUERIES), encoder.encode_document(QUERIES)).numpy()
    np.testing.assert_allclose(alone.get_json()["similarity_matrix"], expected, atol=1e-4)
    dense_asked = client.post("/similarity", json={"texts": QUERIES, "model": "colbert", "output_types": ["dense"]})
    assert dense_asked.status_code == 400 and "MaxSim" in dense_asked.get_json()["error"]["message"]


@pytest.mark.parametrize("path", ["/rerank", "/v1/rerank", "/v2/rerank"])
def test_the_rerank_routes_score_by_maxsim(client, directories, path):
    encoder = reference(directories["pylate"])
    expected = encoder.similarity(encoder.encode_query(QUERIES[:1]), encoder.encode_document(DOCUMENTS)).numpy()[0]
    body = (
        {"query": QUERIES[0], "texts": DOCUMENTS, "model": "pylate"}
        if path == "/rerank"
        else {"query": QUERIES[0], "documents": DOCUMENTS, "model": "pylate"}
    )
    answer = client.post(path, json=body)
    assert answer.status_code == 200, answer.get_json()
    results = answer.get_json() if path == "/rerank" else answer.get_json()["results"]
    scores = {r["index"]: r.get("score", r.get("relevance_score")) for r in results}
    np.testing.assert_allclose([scores[i] for i in range(len(DOCUMENTS))], expected, atol=1e-4)
    assert [r["index"] for r in results] == list(np.argsort(-expected, kind="stable"))


def test_listed_and_cached_by_side(client, tmp_path, directories):
    cards = {card["id"]: card for card in client.get("/v1/models").get_json()["data"]}
    assert cards["colbert"]["family"] == "multi-vector"
    assert sorted(cards["colbert"]["capabilities"]) == ["colbert", "rerank"]
    engine = started_engine(Settings.from_env({"DTYPE": "float32", "MODEL_PATH": str(directories["colbert"])}))
    model = engine.resolve(None)
    document = engine.embed_texts(model, QUERIES[:1], outputs={COLBERT}, is_query=False)
    query = engine.embed_texts(model, QUERIES[:1], outputs={COLBERT}, is_query=True)
    again = engine.embed_texts(model, QUERIES[:1], outputs={COLBERT}, is_query=True)
    assert (document.cache, query.cache, again.cache) == ("miss", "miss", "hit")
    np.testing.assert_array_equal(again.colbert[0], query.colbert[0])
    assert document.colbert[0].shape != query.colbert[0].shape
    # reranking embeds each side once: the documents' vectors come from the cache the second time
    engine.rerank(model, QUERIES[:1], DOCUMENTS)
    assert engine.rerank(model, QUERIES[1:2], DOCUMENTS).cache == "partial"
