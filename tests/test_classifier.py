"""Sequence classifiers (#25) against `transformers.pipeline("text-classification")` on the same directory:
single-label (softmax), multi-label (sigmoid), regression (raw), and text pairs (NLI), in float32; bfloat16
keeps the same ranking; the routes that serve them (TEI's /predict and POST /, Infinity's /classify, the
native /classify_text) in their peers' shapes."""

from __future__ import annotations

import numpy as np
import pytest

from app import create_app
from app.config import Settings
from app.engine.errors import Unsupported

from .engines import serving_fixtures, started_engine
from .tiny_models import tiny_classifier, tiny_cross_encoder

TEXTS = [
    "I loved every minute of this film.",
    "The service was slow and the food was cold.",
    "It is a train timetable.",
    "Absolutely terrible, would not recommend to anyone at all.",
]
PAIRS = [
    ("A man is playing a guitar.", "Someone is making music."),
    ("A man is playing a guitar.", "Nobody is playing anything."),
    ("The cat sleeps on the mat.", "An animal is resting."),
]
SENTIMENT = ["negative", "neutral", "positive"]
TOPICS = ["sports", "politics", "science", "art"]
NLI = ["contradiction", "entailment", "neutral"]


@pytest.fixture(scope="module")
def directories(tmp_path_factory):
    root = tmp_path_factory.mktemp("classifiers")
    return {
        "sentiment": tiny_classifier(root / "sentiment", SENTIMENT),
        "topics": tiny_classifier(root / "topics", TOPICS, problem_type="multi_label_classification", seed=1),
        "score": tiny_classifier(root / "score", ["quality", "fluency"], problem_type="regression", seed=2),
        "nli": tiny_classifier(root / "nli", NLI, seed=3, cross_encoder_files=True),
        "reranker": tiny_cross_encoder(root / "reranker"),
    }


settings, engine, client = serving_fixtures()


def pipeline_scores(path, inputs, function: str | None = None) -> np.ndarray:
    """Every label's score per input, in the model's label order, from transformers' pipeline."""
    from transformers import AutoConfig, pipeline

    classify = pipeline("text-classification", model=str(path), device="cpu", dtype="float32")
    labels = [AutoConfig.from_pretrained(str(path)).id2label[i] for i in range(len(classify.model.config.id2label))]
    kwargs = {"top_k": None} if function is None else {"top_k": None, "function_to_apply": function}
    asked = [item if isinstance(item, str) else {"text": item[0], "text_pair": item[1]} for item in inputs]
    answers = classify(asked, **kwargs)
    return np.array(
        [[next(a["score"] for a in answer if a["label"] == label) for label in labels] for answer in answers]
    )


@pytest.mark.parametrize(
    "name,inputs,function",
    [
        ("sentiment", TEXTS, None),  # softmax
        ("topics", TEXTS, None),  # multi-label: sigmoid
        ("score", TEXTS, None),  # regression: the logits
        ("nli", PAIRS, None),  # pairs, softmax
        ("sentiment", TEXTS, "none"),  # raw scores
    ],
)
def test_every_kind_of_classifier_equals_the_text_classification_pipeline(engine, directories, name, inputs, function):
    model = engine.resolve(name)
    assert model.family == "classifier"
    result = engine.classify(model, list(inputs), raw_scores=function == "none")
    expected = pipeline_scores(directories[name], inputs, function)
    assert result.labels == list(model.labels) and result.scores.shape == expected.shape
    assert np.abs(result.scores - expected).max() < 1e-5, (result.scores, expected)
    assert result.prompt_tokens > 0


def test_texts_and_pairs_mix_in_one_request(engine, directories):
    model = engine.resolve("nli")
    mixed = [PAIRS[0], TEXTS[0], PAIRS[1]]
    result = engine.classify(model, mixed)
    expected = np.concatenate(
        [pipeline_scores(directories["nli"], [PAIRS[0]]), pipeline_scores(directories["nli"], [TEXTS[0]])]
        + [pipeline_scores(directories["nli"], [PAIRS[1]])]
    )
    assert np.abs(result.scores - expected).max() < 1e-5


def test_bfloat16_keeps_the_labels_and_their_order(directories):
    bf16 = started_engine(Settings.from_env({"DTYPE": "bfloat16", "MODEL_PATH": str(directories["sentiment"])}))
    scores = bf16.classify(bf16.resolve(None), TEXTS).scores
    expected = pipeline_scores(directories["sentiment"], TEXTS)
    assert (scores.argmax(axis=1) == expected.argmax(axis=1)).all()
    cosine = (scores * expected).sum(axis=1) / np.linalg.norm(scores, axis=1) / np.linalg.norm(expected, axis=1)
    assert cosine.min() >= 0.999


def test_a_cross_encoder_classifies_with_its_score_and_a_classifier_neither_embeds_nor_reranks(engine):
    reranker = engine.resolve("reranker")
    single = engine.classify(reranker, [("a question", "an answer")])
    reranked = engine.rerank(reranker, ["a question"], ["an answer"])
    assert single.scores.shape == (1, 1) and single.scores[0, 0] == pytest.approx(reranked.scores[0, 0], abs=1e-6)
    classifier = engine.resolve("sentiment")
    with pytest.raises(Unsupported, match="sequence classifier"):
        engine.embed_texts(classifier, ["text"])
    with pytest.raises(Unsupported, match="does not rerank: a sequence classifier of 3 labels"):
        engine.rerank(classifier, ["q"], ["d"])
    embedder = started_engine(Settings.from_env({"DTYPE": "float32"}))
    with pytest.raises(Unsupported, match="does not classify"):
        embedder.classify(embedder.resolve(None), ["text"])


# ------------------------------------------------------------------ routes
def expected_ranking(engine, name, inputs, raw=False):
    result = engine.classify(engine.resolve(name), list(inputs), raw_scores=raw)
    return [sorted(zip(result.labels, row.tolist()), key=lambda pair: -pair[1]) for row in result.scores]


def test_tei_predict_takes_a_text_a_pair_or_a_batch_and_answers_every_label_best_first(client, engine):
    single = client.post("/predict", json={"inputs": TEXTS[0], "model": "sentiment"})
    assert single.status_code == 200
    want = expected_ranking(engine, "sentiment", TEXTS[:1])[0]
    assert [(p["label"], pytest.approx(p["score"], abs=1e-6)) for p in single.get_json()] == want
    pair = client.post("/predict", json={"inputs": list(PAIRS[0]), "model": "nli"}).get_json()
    assert [p["label"] for p in pair] == [label for label, _ in expected_ranking(engine, "nli", PAIRS[:1])[0]]
    batch = client.post("/predict", json={"inputs": [[TEXTS[1]], list(PAIRS[1])], "model": "nli"}).get_json()
    assert len(batch) == 2 and all(len(row) == 3 for row in batch)
    raw = client.post("/predict", json={"inputs": TEXTS[0], "model": "sentiment", "raw_scores": True}).get_json()
    assert sorted(p["score"] for p in raw) == sorted(
        s for _, s in expected_ranking(engine, "sentiment", TEXTS[:1], True)[0]
    )
    # A cross-encoder answers its one score, as TEI's /predict does.
    scored = client.post("/predict", json={"inputs": ["a question", "an answer"], "model": "reranker"}).get_json()
    assert [p["label"] for p in scored] == ["LABEL_0"] and 0 < scored[0]["score"] < 1


@pytest.mark.parametrize(
    "body,status,kind",
    [
        ({"inputs": ["a", "b", "c"]}, 422, "Validation"),  # not a pair, not a batch
        ({"inputs": []}, 400, "Empty"),
        ({"inputs": [["a", "b", "c"]]}, 422, "Validation"),
        ({"inputs": ""}, 422, "Validation"),
        ({"inputs": 3}, 422, "Validation"),
        ({"inputs": "text", "model": "minilm-missing"}, 404, "Validation"),
    ],
)
def test_bad_predict_bodies_are_teis_errors(client, body, status, kind):
    response = client.post("/predict", json={"model": "sentiment", **body})
    assert response.status_code == status and response.get_json()["error_type"] == kind, response.get_json()


def test_the_root_answers_a_classifier_in_the_inference_apis_shape(directories):
    settings = Settings.from_env({"DTYPE": "float32", "MODEL_PATH": str(directories["sentiment"])})
    engine = started_engine(settings)
    client = create_app(settings, engine).test_client()
    body = client.post("/", json={"inputs": TEXTS[0]}).get_json()
    assert len(body) == 1 and [p["label"] for p in body[0]] == [
        label for label, _ in expected_ranking(engine, None, TEXTS[:1])[0]
    ]
    top = client.post("/", json={"inputs": TEXTS[:2], "parameters": {"top_k": 1, "function_to_apply": "sigmoid"}})
    logits = engine.classify(engine.resolve(None), TEXTS[:2], raw_scores=True).scores
    assert [[p["score"] for p in row] for row in top.get_json()] == [
        [pytest.approx(float(1 / (1 + np.exp(-row.max()))), abs=1e-6)] for row in logits
    ]
    info = client.get("/info").get_json()
    assert info["model_type"] == {
        "classifier": {
            "id2label": {"0": "negative", "1": "neutral", "2": "positive"},
            "label2id": {"negative": 0, "neutral": 1, "positive": 2},
        }
    }
    refused = client.post("/embed", json={"inputs": "text"})
    assert refused.status_code == 422 and "sequence classifier" in refused.get_json()["error"]


def test_infinity_classify_and_the_native_route(client, engine):
    infinity = client.post("/classify", json={"input": TEXTS[:2], "model": "topics"})
    body = infinity.get_json()
    assert infinity.status_code == 200 and body["object"] == "classify" and body["model"] == "topics"
    assert body["id"].startswith("infinity-") and body["usage"]["prompt_tokens"] > 0
    want = expected_ranking(engine, "topics", TEXTS[:2])
    assert [[p["label"] for p in row] for row in body["data"]] == [[label for label, _ in row] for row in want]
    native = client.post(
        "/classify_text", json={"texts": [TEXTS[0], list(PAIRS[0])], "model": "nli", "top_k": 2}
    ).get_json()
    assert native["labels"] == NLI and [len(row) for row in native["predictions"]] == [2, 2]
    everything = client.post("/classify_text", json={"texts": TEXTS, "model": "sentiment"}).get_json()["predictions"]
    threshold = sorted(p["score"] for row in everything for p in row)[len(TEXTS) * 3 // 2]
    kept = client.post(
        "/classify_text", json={"texts": TEXTS, "model": "sentiment", "threshold": threshold}
    ).get_json()["predictions"]
    assert sum(map(len, kept)) == sum(p["score"] >= threshold for row in everything for p in row) < len(TEXTS) * 3
    wrong = client.post("/classify_text", json={"texts": ["a"], "model": "reranker-missing"})
    assert wrong.status_code == 404
    embedder_only = client.post("/v1/embeddings", json={"input": "a", "model": "sentiment"})
    assert embedder_only.status_code == 400 and "sequence classifier" in embedder_only.get_json()["error"]["message"]
    not_a_classifier = client.post("/classify", json={"input": "a", "model": "nli-missing"})
    assert not_a_classifier.status_code == 404
    listed = {m["id"] for m in client.get("/v1/models").get_json()["data"]}
    assert {"sentiment", "topics", "score", "nli", "reranker"} <= listed


def test_classifications_are_cached_per_model_and_equal_uncached_ones(client):
    body = {"texts": [TEXTS[2], list(PAIRS[2])], "model": "nli"}
    first = client.post("/classify_text", json=body)
    second = client.post("/classify_text", json=body)
    fresh = client.post("/classify_text", json={**body, "cache": False})
    assert second.headers["X-Cache"] == "hit" and fresh.headers.get("X-Cache") is None
    assert first.get_json()["predictions"] == second.get_json()["predictions"]
    # Computed again in another batch: equal but for the last float bits a different padding gives.
    for cached, computed in zip(second.get_json()["predictions"], fresh.get_json()["predictions"]):
        assert [(p["label"], pytest.approx(p["score"], abs=1e-6)) for p in computed] == [
            (p["label"], p["score"]) for p in cached
        ]
    other = client.post("/classify_text", json={**body, "model": "sentiment"})
    assert other.headers["X-Cache"] != "hit" and other.get_json()["labels"] == SENTIMENT
