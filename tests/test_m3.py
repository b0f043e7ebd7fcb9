"""BGE-M3's three outputs from one forward pass, checked against FlagEmbedding's BGEM3FlagModel on the same
tiny directory (XLM-RoBERTa encoder + sparse_linear.pt + colbert_linear.pt, random weights)."""

from __future__ import annotations

import base64
import json
import shutil
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from app import create_app
from app.config import Settings

from .engines import engine_for, started_engine
from .flag_embedding import bgem3_flag_model
from .tiny_models import tiny_bge_m3

TEXTS = [
    "the cat sat on the mat",
    "dense sparse hybrid search with an unknownword",
    "the the the cat",
    "a",
    "query passage retrieval model embedding colbert late interaction score " * 3,
]
ALL = frozenset({"dense", "sparse", "colbert"})


@pytest.fixture(scope="module")
def m3_dir(tmp_path_factory):
    return tiny_bge_m3(tmp_path_factory.mktemp("m3") / "bge-m3-tiny")


@pytest.fixture(scope="module")
def m3_engine(m3_dir):
    engine = started_engine(Settings.from_env({"MODEL_PATH": str(m3_dir), "DTYPE": "float32"}))
    return engine


@pytest.fixture(scope="module")
def flag(m3_dir):
    return bgem3_flag_model()(str(m3_dir), use_fp16=False, devices="cpu")


@pytest.fixture(scope="module")
def reference(flag):
    return flag.encode(TEXTS, return_dense=True, return_sparse=True, return_colbert_vecs=True)


@pytest.fixture(scope="module")
def m3_app(m3_dir, m3_engine):
    return create_app(Settings.from_env({"MODEL_PATH": str(m3_dir), "DTYPE": "float32"}), m3_engine)


@pytest.fixture
def m3(m3_app):
    return m3_app.test_client()


def as_dict(ids, values) -> dict[int, float]:
    return dict(zip((int(i) for i in ids), (float(v) for v in values)))


def assert_matches_reference(dense, sparse, colbert, reference):
    assert ((dense * reference["dense_vecs"]).sum(axis=1) >= 0.9999).all()
    for (ids, values), expected in zip(sparse, reference["lexical_weights"]):
        expected = {int(k): float(v) for k, v in expected.items()}
        got = as_dict(ids, values)
        assert set(got) == set(expected)
        assert all(abs(got[k] - expected[k]) <= 1e-4 for k in expected)
    for vectors, expected in zip(colbert, reference["colbert_vecs"]):
        assert vectors.shape == expected.shape
        cosine = (vectors * expected).sum(1) / np.linalg.norm(vectors, axis=1) / np.linalg.norm(expected, axis=1)
        assert cosine.min() >= 0.9999


def test_all_three_outputs_match_bgem3flagmodel(m3_engine, reference):
    model = m3_engine.resolve(None)
    assert frozenset(model.describe()["outputs"]) == ALL and model.layout.pooling_modes == ("cls",)
    result = m3_engine.embed_texts(model, TEXTS, outputs=ALL)
    assert_matches_reference(result.vectors, result.sparse, result.colbert, reference)
    # Special tokens are never weighted; repeated words keep their largest weight.
    excluded = {0, 1, 2, 3}  # <s>, <pad>, </s>, <unk>
    assert not any(excluded & set(ids.tolist()) for ids, _ in result.sparse)
    assert len(result.sparse[2][0]) <= 2  # "the the the cat": at most two distinct ids


def test_sync_workers_compute_the_same_outputs(m3_dir, reference):
    engine = engine_for(Settings.from_env({"MODEL_PATH": str(m3_dir), "DTYPE": "float32"}))
    engine.start_worker(batching=False)
    result = engine.embed_texts(engine.resolve(None), TEXTS, outputs=ALL)
    assert_matches_reference(result.vectors, result.sparse, result.colbert, reference)


def test_sentence_transformers_layout_with_heads_in_the_root(m3_dir, tmp_path, reference):
    """The hub's BGE-M3 ships sentence-transformers files too (CLS pooling, Normalize) beside its heads."""
    root = tmp_path / "bge-m3-st"
    shutil.copytree(m3_dir, root)
    (root / "1_Pooling").mkdir()
    (root / "1_Pooling" / "config.json").write_text(
        json.dumps({"word_embedding_dimension": 32, "pooling_mode_cls_token": True})
    )
    (root / "modules.json").write_text(
        json.dumps(
            [
                {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
                {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
                {"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"},
            ]
        )
    )
    engine = engine_for(Settings.from_env({"MODEL_PATH": str(root), "DTYPE": "float32"}))
    result = engine.embed_texts(engine.resolve(None), TEXTS, outputs=ALL)
    assert_matches_reference(result.vectors, result.sparse, result.colbert, reference)


# ----------------------------------------------------------------------- routes
def test_embed_text_output_types_in_one_response(m3, reference):
    body = m3.post(
        "/embed_text", json={"texts": TEXTS, "output_types": ["dense", "sparse", "colbert"], "return_tokens": True}
    ).get_json()
    dense = np.array(body["embeddings"], dtype=np.float32)
    sparse = [(s["indices"], s["values"]) for s in body["sparse"]]
    colbert = [np.array(c, dtype=np.float32).reshape(-1, body["colbert_dimension"]) for c in body["colbert"]]
    assert_matches_reference(dense, sparse, colbert, reference)
    assert body["sparse"][0]["tokens"] and set(body["sparse"][0]["tokens"]) <= {"the", "cat", "sat", "on", "mat"}
    assert body["usage"]["prompt_tokens"] == sum(len(c) + 1 for c in colbert)


def test_single_output_type_and_base64_colbert(m3, reference):
    sparse_only = m3.post("/embed_text", json={"texts": TEXTS[:2], "output_type": "sparse"}).get_json()
    assert "embeddings" not in sparse_only and "colbert" not in sparse_only
    assert "tokens" not in sparse_only["sparse"][0]
    floats = m3.post("/embed_text", json={"texts": TEXTS, "output_type": "colbert"}).get_json()
    packed = m3.post(
        "/embed_text", json={"texts": TEXTS, "output_type": "colbert", "encoding_format": "base64"}
    ).get_json()
    width = packed["colbert_dimension"]
    for as_floats, as_base64 in zip(floats["colbert"], packed["colbert"]):
        decoded = np.frombuffer(base64.b64decode(as_base64), dtype="<f4").reshape(-1, width)
        np.testing.assert_allclose(decoded, np.array(as_floats, dtype=np.float32), rtol=1e-6)
    dense = m3.post("/embed_text", json={"texts": TEXTS}).get_json()
    assert set(dense) == {"model", "embeddings", "dimension", "precision", "usage"}


def test_colbert_at_float16_and_binary_with_shapes(m3):
    """Wire formats for multi-vectors: float16 (half float32's bytes) and binary (signs packed 8 to a byte,
    sentence-transformers' ubinary), as numbers or base64, with each input's shape to reshape the bytes."""
    body = {"texts": TEXTS, "output_type": "colbert"}
    exact = m3.post("/embed_text", json=body).get_json()
    vectors = [np.array(matrix, dtype=np.float32) for matrix in exact["colbert"]]
    assert exact["colbert_shapes"] == [list(v.shape) for v in vectors] and exact["colbert_precision"] == "float32"
    half = m3.post("/embed_text", json={**body, "colbert_precision": "float16", "encoding_format": "base64"})
    half = half.get_json()
    signs = m3.post("/embed_text", json={**body, "colbert_precision": "binary"}).get_json()
    packed = m3.post("/embed_text", json={**body, "colbert_precision": "binary", "encoding_format": "base64"})
    packed = packed.get_json()
    for index, expected in enumerate(vectors):
        tokens, width = half["colbert_shapes"][index]
        decoded = np.frombuffer(base64.b64decode(half["colbert"][index]), dtype="<f2").reshape(tokens, width)
        np.testing.assert_allclose(decoded.astype(np.float32), expected, atol=1e-3)
        bits = np.packbits(expected > 0, axis=-1)
        assert np.array_equal(np.array(signs["colbert"][index], dtype=np.uint8), bits)
        raw = np.frombuffer(base64.b64decode(packed["colbert"][index]), dtype=np.uint8).reshape(tokens, -1)
        assert np.array_equal(raw, bits) and raw.shape[1] == -(-width // 8)
    sizes = {name: len(json.dumps(answer["colbert"])) for name, answer in (("f32", exact), ("f16", half))}
    assert len(json.dumps(packed["colbert"])) < sizes["f16"] < sizes["f32"]
    refused = m3.post("/embed_text", json={**body, "colbert_precision": "int4"})
    assert refused.status_code == 400 and "colbert_precision" in refused.get_json()["error"]["message"]


def test_colbert_token_pooling_is_sentence_transformers(m3):
    """colbert_pool_factor clusters each input's vectors as sentence-transformers' HierarchicalTokenPooling
    (PyLate's token pooling) does; the cache keeps every token's vector, so the same texts pool again."""
    import torch
    from sentence_transformers.multi_vector_encoder.modules import HierarchicalTokenPooling

    body = {"texts": TEXTS, "output_type": "colbert"}
    full = [np.array(m, dtype=np.float32) for m in m3.post("/embed_text", json=body).get_json()["colbert"]]
    pooled = m3.post("/embed_text", json={**body, "colbert_pool_factor": 2}).get_json()
    expected = HierarchicalTokenPooling(2, num_protected_tokens=0).pool([torch.from_numpy(m) for m in full])
    for got, want, matrix in zip(pooled["colbert"], expected, full):
        got = np.array(got, dtype=np.float32)
        assert got.shape == tuple(want.shape) and got.shape[0] < matrix.shape[0]
        np.testing.assert_allclose(got, want.numpy(), atol=1e-5)
    assert pooled["colbert_shapes"] == [list(w.shape) for w in expected]
    again = m3.post("/embed_text", json=body).get_json()["colbert"]  # the cached rows are the whole ones
    assert [len(m) for m in again] == [len(m) for m in full]
    refused = m3.post("/embed_text", json={**body, "colbert_pool_factor": 0.5})
    assert refused.status_code == 400 and "colbert_pool_factor" in refused.get_json()["error"]["message"]


def test_embed_sparse_speaks_teis_shape(m3, reference):
    response = m3.post("/embed_sparse", json={"inputs": TEXTS})
    assert response.status_code == 200
    body = response.get_json()
    assert len(body) == len(TEXTS) and set(body[0][0]) == {"index", "value"}
    for row, expected in zip(body, reference["lexical_weights"]):
        got = {item["index"]: item["value"] for item in row}
        assert got.keys() == {int(k) for k in expected}
        assert max(abs(got[int(k)] - float(v)) for k, v in expected.items()) <= 1e-4
    single = m3.post("/embed_sparse", json={"inputs": "the cat", "truncate": True, "raw_scores": False})
    assert single.status_code == 200 and len(single.get_json()) == 1


def test_similarity_scores_match_bgem3s_own(m3, flag):
    queries, passages = TEXTS[:2], TEXTS[2:]
    body = m3.post(
        "/similarity", json={"texts": queries, "documents": passages, "output_types": ["dense", "sparse", "colbert"]}
    ).get_json()
    assert body["shape"] == [2, 3] and set(body["scores"]) == {"dense", "sparse", "colbert", "hybrid"}
    q = flag.encode(queries, return_dense=True, return_sparse=True, return_colbert_vecs=True)
    p = flag.encode(passages, return_dense=True, return_sparse=True, return_colbert_vecs=True)
    np.testing.assert_allclose(body["scores"]["dense"], q["dense_vecs"] @ p["dense_vecs"].T, atol=1e-4)
    lexical = flag.compute_lexical_matching_score(q["lexical_weights"], p["lexical_weights"])
    np.testing.assert_allclose(body["scores"]["sparse"], lexical, atol=1e-4)
    colbert = [[float(flag.colbert_score(a, b)) for b in p["colbert_vecs"]] for a in q["colbert_vecs"]]
    np.testing.assert_allclose(body["scores"]["colbert"], colbert, atol=1e-4)
    hybrid = (0.4 * np.array(body["scores"]["dense"]) + 0.2 * lexical + 0.4 * np.array(colbert)) / 1.0
    np.testing.assert_allclose(body["similarity_matrix"], hybrid, atol=1e-4)
    weighted = m3.post(
        "/similarity",
        json={
            "texts": queries,
            "documents": passages,
            "output_types": ["dense", "sparse"],
            "weights": {"dense": 1, "sparse": 3},
        },
    ).get_json()
    expected = (np.array(body["scores"]["dense"]) + 3 * lexical) / 4
    np.testing.assert_allclose(weighted["similarity_matrix"], expected, atol=1e-4)


def test_missing_heads_are_a_400_naming_the_head(client, m3_dir, tmp_path):
    error = client.post("/embed_text", json={"texts": ["a"], "output_type": "sparse"}).get_json()["error"]
    assert error["code"] == "unsupported_output" and "sparse_linear.pt" in error["message"]
    refused = client.post("/embed_sparse", json={"inputs": ["a"]})
    assert refused.status_code == 422 and "gives no sparse vectors" in refused.get_json()["error"]  # TEI's shape
    error = client.post("/similarity", json={"texts": ["a"], "output_types": ["colbert"]}).get_json()["error"]
    assert "colbert_linear.pt" in error["message"]

    only_sparse = tiny_bge_m3(tmp_path / "sparse-only", colbert=False)
    app = create_app(Settings.from_env({"MODEL_PATH": str(only_sparse), "DTYPE": "float32"}))
    response = app.test_client().post("/embed_text", json={"texts": ["a"], "output_types": ["sparse", "colbert"]})
    assert response.status_code == 400 and "no colbert head" in response.get_json()["error"]["message"]
    assert app.test_client().post("/embed_text", json={"texts": ["a"], "output_type": "sparse"}).status_code == 200


def test_request_shape_errors(m3):
    both = m3.post("/embed_text", json={"texts": ["a"], "output_type": "sparse", "output_types": ["dense"]})
    assert both.status_code == 400 and "not both" in both.get_json()["error"]["message"]
    unknown = m3.post("/embed_text", json={"texts": ["a"], "output_type": "multivector"})
    assert unknown.status_code == 400 and unknown.get_json()["error"]["param"] == "output_type"
    assert m3.post("/embed_text", json={"texts": ["a"], "output_types": []}).status_code == 400
    empty = m3.post("/embed_sparse", json={"inputs": []})
    assert empty.status_code == 400 and empty.get_json() == {"error": "inputs must not be empty", "error_type": "Empty"}


def test_mixed_requests_share_batches_and_each_gets_its_own_outputs(m3_app, m3_engine, reference):
    """Dense-only and all-output requests ride the same forward passes; each answer matches FlagEmbedding."""
    # cache off: the point is that these requests' rows meet in forward passes
    bodies = [
        {"texts": TEXTS, "output_types": ["dense", "sparse", "colbert"], "cache": False},
        {"texts": TEXTS, "cache": False},
    ]

    def call(i):
        return i, m3_app.test_client().post("/embed_text", json=bodies[i % 2]).get_json()

    before = m3_engine.stats.as_dict()["count"]
    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(call, range(16)))
    for i, body in results:
        dense = np.array(body["embeddings"], dtype=np.float32)
        assert ((dense * reference["dense_vecs"]).sum(axis=1) >= 0.9999).all()
        if i % 2 == 0:
            sparse = [(s["indices"], s["values"]) for s in body["sparse"]]
            colbert = [np.array(c, dtype=np.float32) for c in body["colbert"]]
            assert_matches_reference(dense, sparse, colbert, reference)
        else:
            assert "sparse" not in body
    assert m3_engine.stats.as_dict()["count"] > before


def test_models_list_the_outputs(m3):
    card = m3.get("/v1/models").get_json()["data"][0]
    assert card["outputs"] == ["dense", "sparse", "colbert"]


@pytest.mark.slow
def test_gunicorn_serves_all_outputs(m3_dir, reference, tmp_path):
    import requests

    from .gunicorn_process import GunicornProcess

    with GunicornProcess(
        {"MODEL_PATH": str(m3_dir), "DTYPE": "float32"}, workers=2, log_path=tmp_path / "server.log"
    ) as server:
        body = requests.post(
            server.url + "/embed_text",
            json={"texts": TEXTS, "output_types": ["sparse", "colbert"], "encoding_format": "base64"},
            timeout=60,
        ).json()
        width = body["colbert_dimension"]
        colbert = [np.frombuffer(base64.b64decode(c), dtype="<f4").reshape(-1, width) for c in body["colbert"]]
        dense = requests.post(server.url + "/v1/embeddings", json={"input": TEXTS}, timeout=60).json()
        vectors = np.array([d["embedding"] for d in dense["data"]], dtype=np.float32)
        sparse = [(s["indices"], s["values"]) for s in body["sparse"]]
        assert_matches_reference(vectors, sparse, colbert, reference)
        tei = requests.post(server.url + "/embed_sparse", json={"inputs": TEXTS[0]}, timeout=60).json()
        assert {item["index"] for item in tei[0]} == {int(k) for k in reference["lexical_weights"][0]}


@pytest.mark.parametrize(
    "weights", [{"dense": 1e308, "sparse": 1e308}, {"dense": 1e-320, "sparse": 1e-320}, {"dense": float("inf")}]
)
def test_hybrid_weights_that_overflow_are_refused(m3, weights):
    body = {"texts": TEXTS[:1], "documents": TEXTS[1:2], "output_types": ["dense", "sparse"], "weights": weights}
    response = m3.post("/similarity", data=json.dumps(body, allow_nan=True), content_type="application/json")
    error = response.get_json()["error"]
    # Infinity is not JSON at all (a 400 for the body); finite extremes are refused naming the weights.
    assert response.status_code == 400 and (error["param"] or "weights").startswith("weights")
    fine = m3.post("/similarity", json={**body, "weights": {"dense": 2.0, "sparse": 1.0}}).get_json()
    assert all(value == value for row in fine["similarity_matrix"] for value in row)  # no NaN


@pytest.mark.parametrize("output_type", ["dense", "sparse", "colbert"])
def test_the_earlier_bge_m3_servers_embed_body(m3, output_type):
    """Scripts written for the earlier BGE-M3 FastAPI server post its body to /embed unchanged."""
    body = {"texts": TEXTS, "output_type": output_type, "normalize": True, "max_length": 8192, "batch_size": 4}
    old = m3.post("/embed", json=body).get_json()
    native = m3.post("/embed_text", json={"texts": TEXTS, "output_type": output_type}).get_json()
    assert old == native and {"dense": "embeddings"}.get(output_type, output_type) in old
    short = m3.post("/embed", json={**body, "max_length": 4}).get_json()
    # min(max_length, the model's maximum) tokens per text
    assert short["usage"]["prompt_tokens"] <= 4 * len(TEXTS) < old["usage"]["prompt_tokens"]
