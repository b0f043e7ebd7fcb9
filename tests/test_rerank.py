"""Rerankers: cross-encoders against sentence-transformers' CrossEncoder, the LLM yes/no reranker against
Qwen3-Reranker's published recipe, and the three rerank routes with the bodies real clients send."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

from app import create_app
from app.config import ConfigError, Settings
from app.engine.errors import InvalidInput, Unsupported
from app.engine.requests import ScoreRequest
from app.runtime import load_engine

from .engines import started_engine
from .tiny_models import models_setting, tiny_cross_encoder, tiny_qwen3_reranker

QUERY = "what is the capital of France?"
DOCUMENTS = [
    "Paris is the capital and largest city of France.",
    "the cat sat on the mat",
    "Berlin is the capital of Germany; France's capital is Paris. " * 2,
    "x",
    "a very long document that goes on and on " * 30,  # over the tiny models' 64 tokens
]
QWEN3_PREFIX = (
    "<|im_start|>system\nJudge whether the Document meets the requirements based on the Query and the "
    'Instruct provided. Note that the answer can only be "yes" or "no".<|im_end|>\n<|im_start|>user\n'
)
QWEN3_SUFFIX = "<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n"
QWEN3_INSTRUCTION = "Given a web search query, retrieve relevant passages that answer the query"


@pytest.fixture(scope="module")
def dirs(tmp_path_factory):
    root = tmp_path_factory.mktemp("rerankers")
    return {
        "bert": tiny_cross_encoder(root / "ce-bert", "bert"),
        "xlmr": tiny_cross_encoder(root / "ce-xlmr", "xlmr", sentence_transformers=False, seed=1),
        "llm": tiny_qwen3_reranker(root / "qwen3-reranker-tiny"),
    }


def served(path, **env):
    engine = started_engine(Settings.from_env({"MODEL_PATH": str(path), "DTYPE": "float32", **env}))
    return engine


# --------------------------------------------------------------- cross-encoders
@pytest.mark.parametrize("kind", ["bert", "xlmr"])
def test_cross_encoder_scores_equal_sentence_transformers(dirs, kind):
    from sentence_transformers import CrossEncoder

    engine = served(dirs[kind])
    model = engine.resolve(None)
    assert model.describe()["family"] == "cross-encoder" and model.describe()["capabilities"] == ["classify", "rerank"]
    reference = CrossEncoder(str(dirs[kind]), device="cpu")
    pairs = [(QUERY, document) for document in DOCUMENTS]
    ours = engine.rerank(model, [QUERY], DOCUMENTS).scores[0]
    assert np.abs(ours - reference.predict(pairs)).max() <= 1e-5
    raw = engine.rerank(model, [QUERY], DOCUMENTS, raw_scores=True).scores[0]
    assert np.abs(raw - reference.predict(pairs, activation_fn=torch.nn.Identity())).max() <= 1e-5
    assert np.ptp(raw) > 1e-3  # the documents score differently: a mix-up would show


def test_cross_encoder_in_bfloat16_stays_within_1e_2(dirs):
    from sentence_transformers import CrossEncoder

    engine = started_engine(
        Settings.from_env({"MODEL_PATH": str(dirs["bert"]), "DTYPE": "bfloat16", "RUNTIME": "eager"})
    )
    ours = engine.rerank(engine.resolve(None), [QUERY], DOCUMENTS).scores[0]
    reference = CrossEncoder(str(dirs["bert"]), device="cpu").predict([(QUERY, d) for d in DOCUMENTS])
    assert np.abs(ours - reference).max() <= 1e-2


@pytest.mark.parametrize("kind", ["bert", "xlmr"])
def test_pairs_are_framed_as_the_tokenizer_frames_them(dirs, kind):
    model = served(dirs[kind]).resolve(None)
    for document in DOCUMENTS[:4]:
        row = model.prepare_pairs(QUERY, [document]).rows[0]
        expected = model.tokenizer(QUERY, document, return_token_type_ids=True)
        assert row.ids == expected["input_ids"]
        types = [0] * row.first_segment + [1] * (len(row) - row.first_segment)
        if kind == "bert":
            assert types == expected["token_type_ids"]


def test_truncation_cuts_the_document_from_either_end(dirs):
    model = served(dirs["bert"]).resolve(None)
    long_document = " ".join(f"w{i}" for i in range(200))
    right = model.prepare_pairs(QUERY, [long_document]).rows[0]
    left = model.prepare_pairs(QUERY, [long_document], ScoreRequest(truncation_direction="left")).rows[0]
    assert len(right) == len(left) == model.max_length == 64
    query_ids = model.tokenizer(QUERY, add_special_tokens=False)["input_ids"]
    assert right.ids[1 : 1 + len(query_ids)] == query_ids == left.ids[1 : 1 + len(query_ids)]  # the query is whole
    document_ids = model.tokenizer(long_document, add_special_tokens=False)["input_ids"]
    assert right.ids[right.first_segment : -1] == document_ids[: len(right) - right.first_segment - 1]
    assert left.ids[left.first_segment : -1] == document_ids[-(len(left) - left.first_segment - 1) :]
    with pytest.raises(InvalidInput) as info:
        model.prepare_pairs(QUERY, ["fine", long_document], ScoreRequest(truncate=False))
    assert info.value.param == "documents[1]" and info.value.code == "input_too_long"


def test_a_sequence_classifier_of_several_labels_is_served_as_a_classifier_not_a_reranker(tmp_path):
    from .tiny_models import tiny_classifier

    path = tiny_classifier(tmp_path / "classifier", ["a", "b", "c"])
    engine = load_engine(Settings.from_env({"MODEL_PATH": str(path)}))
    model = engine.resolve(None)
    assert model.family == "classifier" and model.labels == ["a", "b", "c"]
    with pytest.raises(Unsupported, match="does not rerank: a sequence classifier of 3 labels"):
        engine.rerank(model, ["q"], ["d"])


# ------------------------------------------------------------------ LLM reranker
def qwen3_recipe(
    directory, query: str, documents: list[str], instruction: str | None = None, max_length: int = 8192
) -> np.ndarray:
    """Qwen3-Reranker's published usage with transformers, step by step."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(directory, padding_side="left")
    model = AutoModelForCausalLM.from_pretrained(directory).eval()
    token_false_id = tokenizer.convert_tokens_to_ids("no")
    token_true_id = tokenizer.convert_tokens_to_ids("yes")
    prefix_tokens = tokenizer.encode(QWEN3_PREFIX, add_special_tokens=False)
    suffix_tokens = tokenizer.encode(QWEN3_SUFFIX, add_special_tokens=False)
    instruction = instruction or QWEN3_INSTRUCTION
    pairs = [f"<Instruct>: {instruction}\n<Query>: {query}\n<Document>: {doc}" for doc in documents]
    inputs = tokenizer(
        pairs,
        padding=False,
        truncation="longest_first",
        return_attention_mask=False,
        max_length=max_length - len(prefix_tokens) - len(suffix_tokens),
    )
    for i, ele in enumerate(inputs["input_ids"]):
        inputs["input_ids"][i] = prefix_tokens + ele + suffix_tokens
    with warnings.catch_warnings():  # the recipe passes max_length with padding=True, which transformers notes
        warnings.simplefilter("ignore", UserWarning)
        inputs = tokenizer.pad(inputs, padding=True, return_tensors="pt", max_length=max_length)
    with torch.no_grad():
        batch_scores = model(**inputs).logits[:, -1, :]
    stacked = torch.stack([batch_scores[:, token_false_id], batch_scores[:, token_true_id]], dim=1)
    return torch.nn.functional.log_softmax(stacked, dim=1)[:, 1].exp().numpy()


@pytest.mark.parametrize("instruction", [None, "Given a question, find the passage that answers it"])
def test_llm_reranker_equals_the_published_recipe(dirs, instruction):
    engine = served(dirs["llm"])
    model = engine.resolve(None)
    assert model.describe()["family"] == "llm-reranker"
    ours = engine.rerank(model, [QUERY], DOCUMENTS, instruction=instruction).scores[0]
    expected = qwen3_recipe(dirs["llm"], QUERY, DOCUMENTS, instruction)
    assert np.abs(ours - expected).max() <= 1e-4
    assert np.ptp(expected) > 1e-3
    raw = engine.rerank(model, [QUERY], DOCUMENTS, raw_scores=True, instruction=instruction).scores[0]
    assert np.allclose(1 / (1 + np.exp(-raw)), ours, atol=1e-6)  # raw = log-odds of yes against no


def test_llm_reranker_template_from_the_directory(tmp_path):
    directory = tiny_qwen3_reranker(
        tmp_path / "custom-llm",
        template={"instruction": "Given a question, find the passage that answers it", "max_length": 160},
    )
    engine = served(directory)
    model = engine.resolve(None)
    assert model.max_length == 160 and model.describe()["default_instruction"].startswith("Given a question")
    ours = engine.rerank(model, [QUERY], DOCUMENTS).scores[0]
    expected = qwen3_recipe(
        directory, QUERY, DOCUMENTS, "Given a question, find the passage that answers it", max_length=160
    )
    assert np.abs(ours - expected).max() <= 1e-4
    assert max(len(row) for row in model.prepare_pairs(QUERY, DOCUMENTS).rows) == 160  # the long one was cut


def test_a_causal_lm_reranker_without_yes_and_no_tokens_does_not_start(tmp_path):
    directory = tiny_qwen3_reranker(tmp_path / "no-yes", template={"yes": "affirmatively-yes"})
    with pytest.raises(ConfigError, match="no single 'affirmatively-yes' token"):
        load_engine(Settings.from_env({"MODEL_PATH": str(directory)}))


# ------------------------------------------------------------------------ routes
@pytest.fixture(scope="module")
def client(dirs):
    from app.config import default_model_path

    settings = Settings.from_env(
        {
            "MODELS": models_setting(
                {"minilm": default_model_path(), "bge-reranker": dirs["bert"], "qwen3-reranker": dirs["llm"]}
            ),
            "DTYPE": "float32",
            "MAX_BATCH_ITEMS": "8",
        }
    )
    engine = started_engine(settings)
    return create_app(settings, engine).test_client(), engine


def test_tei_rerank_shape(client):
    http, engine = client
    expected = engine.rerank(engine.resolve("bge-reranker"), [QUERY], DOCUMENTS).scores[0]
    ranks = http.post(
        "/rerank", json={"query": QUERY, "texts": DOCUMENTS, "model": "bge-reranker", "return_text": True}
    ).get_json()
    assert [r["index"] for r in ranks] == list(np.argsort(-expected, kind="stable"))
    assert all(abs(r["score"] - expected[r["index"]]) < 1e-6 and r["text"] == DOCUMENTS[r["index"]] for r in ranks)
    raw = http.post(
        "/rerank", json={"query": QUERY, "texts": DOCUMENTS, "model": "bge-reranker", "raw_scores": True}
    ).get_json()
    logits = engine.rerank(engine.resolve("bge-reranker"), [QUERY], DOCUMENTS, raw_scores=True).scores[0]
    assert "text" not in raw[0] and all(abs(r["score"] - logits[r["index"]]) < 1e-6 for r in raw)
    assert not np.allclose(logits, expected)


def test_cohere_and_jina_shapes(client):
    http, engine = client
    expected = engine.rerank(engine.resolve("qwen3-reranker"), [QUERY], DOCUMENTS).scores[0]
    order = list(np.argsort(-expected, kind="stable"))
    for route in ("/v1/rerank", "/v2/rerank"):
        body = http.post(
            route,
            json={
                "model": "qwen3-reranker",
                "query": QUERY,
                "documents": DOCUMENTS,
                "top_n": 2,
                "return_documents": True,
            },
        ).get_json()
        assert body["model"] == "qwen3-reranker" and body["id"] and body["usage"]["total_tokens"] > 0
        assert [r["index"] for r in body["results"]] == order[:2]
        assert body["results"][0]["document"] == {"text": DOCUMENTS[order[0]]}
        assert abs(body["results"][0]["relevance_score"] - expected[order[0]]) < 1e-6
        assert body["meta"]["api_version"]["version"] == route[2]


@pytest.mark.parametrize(
    "route,body",
    [
        # LlamaIndex's TextEmbeddingInference reranker: no model named, the first reranker answers
        ("/rerank", {"query": QUERY, "texts": DOCUMENTS[:3]}),
        # litellm's Hugging Face (TEI) rerank
        (
            "/rerank",
            {
                "query": QUERY,
                "texts": DOCUMENTS[:3],
                "raw_scores": False,
                "truncate": False,
                "truncation_direction": "Right",
            },
        ),
        # LangChain's and LlamaIndex's Jina rerankers, documents as objects, Cohere v1 extras
        (
            "/v1/rerank",
            {
                "model": "bge-reranker",
                "query": QUERY,
                "documents": [{"text": d} for d in DOCUMENTS[:3]],
                "top_n": None,
                "return_documents": True,
                "rank_fields": None,
                "max_chunks_per_doc": 10,
            },
        ),
        # Cohere's ClientV2.rerank
        (
            "/v2/rerank",
            {"model": "bge-reranker", "query": QUERY, "documents": DOCUMENTS[:3], "top_n": 3, "max_tokens_per_doc": 4},
        ),
    ],
)
def test_bodies_real_clients_send(client, route, body):
    http, _ = client
    response = http.post(route, json=body)
    assert response.status_code == 200, response.get_json()
    payload = response.get_json()
    results = payload if route == "/rerank" else payload["results"]
    assert sorted(r["index"] for r in results) == [0, 1, 2]


def test_max_tokens_per_doc_cuts_documents(client):
    http, engine = client
    short = http.post(
        "/v2/rerank",
        json={"model": "bge-reranker", "query": QUERY, "documents": DOCUMENTS[:1], "max_tokens_per_doc": 2},
    ).get_json()["results"][0]["relevance_score"]
    cut = engine.rerank(engine.resolve("bge-reranker"), [QUERY], ["paris is"]).scores[0][0]
    assert abs(short - cut) < 1e-6


def test_similarity_with_a_reranker_is_the_score_matrix(client):
    http, engine = client
    queries = [QUERY, "who sat on the mat?"]
    body = http.post(
        "/similarity", json={"texts": queries, "documents": DOCUMENTS[:3], "model": "bge-reranker"}
    ).get_json()
    assert body["shape"] == [2, 3]
    for row, query in zip(body["similarity_matrix"], queries):
        expected = engine.rerank(engine.resolve("bge-reranker"), [query], DOCUMENTS[:3]).scores[0]
        assert np.allclose(row, expected, atol=1e-6)
    refused = http.post("/similarity", json={"texts": queries, "model": "bge-reranker"})
    assert refused.status_code == 400 and refused.get_json()["error"]["code"] == "unsupported_task"
    refused = http.post("/similarity", json={"texts": ["q"] * 3, "documents": ["d"] * 3, "model": "bge-reranker"})
    assert refused.status_code == 400 and refused.get_json()["error"]["code"] == "too_many_items"  # 9 pairs > 8
    refused = http.post(
        "/similarity", json={"texts": ["q" * 90_000] * 2, "documents": ["d" * 90_000] * 4, "model": "bge-reranker"}
    )
    assert refused.status_code == 413 and refused.get_json()["error"]["code"] == "request_too_large"


@pytest.mark.parametrize(
    "route,body,param",
    [
        ("/rerank", {"query": "", "texts": ["a"]}, "query"),
        ("/rerank", {"query": "q", "texts": []}, "texts"),
        ("/rerank", {"query": "q", "texts": ["a", ""]}, "texts[1]"),
        ("/rerank", {"query": "q", "texts": ["a"], "truncation_direction": "middle"}, "truncation_direction"),
        ("/v1/rerank", {"query": "q", "documents": []}, "documents"),
        ("/v1/rerank", {"query": "q", "documents": ["a", ""]}, "documents[1]"),
        ("/v2/rerank", {"query": "q", "documents": ["a"], "top_n": 0}, "top_n"),
        ("/v2/rerank", {"query": "   ", "documents": ["a"]}, "query"),
        ("/v2/rerank", {"documents": ["a"]}, "query"),
        ("/v2/rerank", {"query": "q", "documents": ["a"] * 9}, "documents"),  # MAX_BATCH_ITEMS=8
        ("/v2/rerank", {"query": "q" * 100_001, "documents": ["a"]}, "query"),  # MAX_INPUT_CHARS
    ],
)
def test_bad_rerank_requests_are_400s_naming_the_field(client, route, body, param):
    http, _ = client
    response = http.post(route, json={"model": "bge-reranker", **body})
    if route == "/rerank":  # text-embeddings-inference's route answers in its shape: 422 (400 when empty)
        error = response.get_json()
        assert response.status_code in (400, 422) and error["error_type"] in ("Validation", "Empty"), error
        assert error["error"].startswith(param.split("[")[0])
    else:
        assert response.status_code == 400, response.get_json()
        assert response.get_json()["error"]["param"] == param
    assert http.post("/v2/rerank", json={"model": "bge-reranker", "query": "q", "documents": ["a"]}).status_code == 200


def test_each_side_says_what_the_model_does(client):
    http, _ = client
    refused = http.post("/embed_text", json={"texts": "x", "model": "bge-reranker"})
    error = refused.get_json()["error"]
    assert refused.status_code == 400 and error["code"] == "unsupported_task" and "/rerank" in error["message"]
    refused = http.post("/v1/embeddings", json={"input": "x", "model": "qwen3-reranker"})
    assert refused.status_code == 400 and refused.get_json()["error"]["code"] == "unsupported_task"
    refused = http.post("/v2/rerank", json={"model": "minilm", "query": "q", "documents": ["a"]})
    error = refused.get_json()["error"]
    assert refused.status_code == 400 and error["code"] == "unsupported_task" and "embed:text" in error["message"]


def test_models_list_rerank_and_pairs_are_batched(client):
    http, engine = client
    cards = {card["id"]: card for card in http.get("/v1/models").get_json()["data"]}
    assert (
        cards["bge-reranker"]["capabilities"] == ["classify", "rerank"]
        and cards["bge-reranker"]["family"] == "cross-encoder"
    )
    assert cards["qwen3-reranker"]["family"] == "llm-reranker"
    assert ("bge-reranker", "pair") in engine.batchers and ("qwen3-reranker", "pair") in engine.batchers
    before = engine.model_stats["bge-reranker"].items
    response = http.post(
        "/rerank", json={"query": QUERY, "texts": DOCUMENTS, "model": "bge-reranker", "cache": False}
    )  # computed, not answered from the cache
    assert engine.model_stats["bge-reranker"].items == before + len(DOCUMENTS)
    assert int(response.headers["X-Compute-Tokens"]) > 0 and float(response.headers["X-Inference-Time"]) > 0
    metrics = http.get("/metrics").get_data(as_text=True)
    assert 'embedding_inputs_total{modality="pair",model="bge-reranker"}' in metrics


def test_rerank_routes_need_the_api_key(client):
    _, engine = client
    settings = Settings.from_env({"API_KEYS": "secret", "DTYPE": "float32"})
    http = create_app(settings, engine).test_client()
    body = {"query": QUERY, "documents": ["a"], "texts": ["a"]}
    for route in ("/rerank", "/v1/rerank", "/v2/rerank"):
        assert http.post(route, json=body).status_code == 401
        assert http.post(route, json=body, headers={"Authorization": "Bearer secret"}).status_code == 200
