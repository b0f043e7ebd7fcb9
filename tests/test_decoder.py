"""Decoder-LLM embedders (Qwen3-Embedding and the like): last-token pooling, instruction prompts,
the model's own maximum length; checked against sentence-transformers on a tiny Qwen3."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from app import create_app
from app.config import Settings

from .engines import engine_for, started_engine
from .test_engine import cosines
from .tiny_models import QWEN3_QUERY_PROMPT, tiny_qwen3, tiny_qwen3_embedding

TEXTS = [
    "what is the capital of France?",
    "Paris",
    "Large language models pool the hidden state of the last token into a sentence embedding. " * 3,
    "A decoder attends only to earlier positions.",
    "x",
]


@pytest.fixture(scope="module")
def qwen3_dir(tmp_path_factory):
    return tiny_qwen3_embedding(tmp_path_factory.mktemp("decoder") / "qwen3-embedding", max_seq_length=48)


@pytest.fixture(scope="module")
def decoder_engine(qwen3_dir):
    engine = started_engine(Settings.from_env({"MODEL_PATH": str(qwen3_dir), "DTYPE": "float32"}))
    return engine


@pytest.fixture(scope="module")
def reference(qwen3_dir):
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(qwen3_dir), device="cpu")


def test_recognised_as_a_decoder_with_its_limits_and_prompts(decoder_engine):
    card = decoder_engine.describe_models()[0]
    assert card["family"] == "decoder" and card["capabilities"] == ["embed:text", "tokens"]
    assert card["pooling"] == ["lasttoken"] and card["prompts"] == ["document", "query"]
    # sentence-transformers' max_seq_length wins over the tokenizer's 131072 and the 4096 positions.
    assert card["max_input_tokens"] == 48


@pytest.mark.parametrize("prompt_name", [None, "query", "document"])
def test_vectors_equal_sentence_transformers(decoder_engine, reference, prompt_name):
    model = decoder_engine.resolve(None)
    ours = decoder_engine.embed_texts(model, TEXTS, prompt_name=prompt_name).vectors
    theirs = reference.encode(TEXTS, prompt_name=prompt_name, convert_to_numpy=True, batch_size=8)
    assert cosines(ours, theirs).min() >= 0.9999
    # The texts differ, and so must their vectors: the test could tell a wrong pooled position.
    assert np.abs(ours[0] - ours[1]).max() > 1e-3


def test_a_literal_instruction_equals_the_named_prompt(decoder_engine):
    model = decoder_engine.resolve(None)
    named = decoder_engine.embed_texts(model, TEXTS[:2], prompt_name="query").vectors
    literal = decoder_engine.embed_texts(model, TEXTS[:2], prompt=QWEN3_QUERY_PROMPT).vectors
    plain = decoder_engine.embed_texts(model, TEXTS[:2]).vectors
    assert np.allclose(named, literal, atol=1e-6)
    assert cosines(named, plain).max() < 0.9999


def test_batched_and_alone_agree_whatever_the_padding(decoder_engine):
    model = decoder_engine.resolve(None)
    together = decoder_engine.embed_texts(model, TEXTS).vectors
    alone = np.stack([decoder_engine.embed_texts(model, [text]).vectors[0] for text in TEXTS])
    assert cosines(together, alone).min() >= 0.99999


def test_truncation_keeps_the_closing_token_and_the_models_limit(decoder_engine, reference):
    model = decoder_engine.resolve(None)
    long_text = "the last token decides " * 40
    result = decoder_engine.embed_texts(model, [long_text])
    assert result.prompt_tokens == 48
    row = model.prepare_texts([long_text]).rows[0]
    assert row.ids[-1] == model.tokenizer.eos_token_id  # the pooled token is still the end-of-text
    theirs = reference.encode([long_text], convert_to_numpy=True)
    assert cosines(result.vectors, theirs).min() >= 0.9999
    from app.engine.errors import InvalidInput

    with pytest.raises(InvalidInput) as info:
        decoder_engine.embed_texts(model, [long_text], truncate=False, field="texts")
    assert info.value.code == "input_too_long" and "48" in info.value.message


def test_a_plain_causal_lm_directory_pools_its_last_token(tmp_path):
    """gte-Qwen-style: a *ForCausalLM checkpoint without sentence-transformers files."""
    from transformers import AutoModel, AutoTokenizer

    directory = tiny_qwen3(tmp_path / "gte-qwen-like", seed=1)
    engine = engine_for(Settings.from_env({"MODEL_PATH": str(directory), "DTYPE": "float32"}))
    engine.start_worker(batching=False)
    model = engine.resolve(None)
    assert model.describe()["family"] == "decoder" and model.describe()["pooling"] == ["lasttoken"]
    ours = engine.embed_texts(model, TEXTS, normalize=False).vectors
    tokenizer = AutoTokenizer.from_pretrained(directory)
    reference_model = AutoModel.from_pretrained(directory).eval()
    expected = []
    with torch.no_grad():
        for text in TEXTS:  # one at a time: no padding at all
            ids = tokenizer(text, return_tensors="pt")
            expected.append(reference_model(**ids).last_hidden_state[0, -1].numpy())
    assert cosines(ours, np.stack(expected)).min() >= 0.9999
    assert np.allclose(np.linalg.norm(ours, axis=1), np.linalg.norm(np.stack(expected), axis=1), rtol=1e-4)


def test_served_over_http_with_prompts(decoder_engine, qwen3_dir, reference):
    client = create_app(
        Settings.from_env({"MODEL_PATH": str(qwen3_dir), "DTYPE": "float32"}), decoder_engine
    ).test_client()
    body = client.post("/embed_text", json={"texts": TEXTS[:2], "prompt_name": "query"}).get_json()
    theirs = reference.encode(TEXTS[:2], prompt_name="query", convert_to_numpy=True)
    assert cosines(np.array(body["embeddings"]), theirs).min() >= 0.9999
    openai = client.post("/v1/embeddings", json={"input": TEXTS[:2], "model": "qwen3-embedding"}).get_json()
    assert len(openai["data"]) == 2 and openai["model"] == "qwen3-embedding"
    refused = client.post("/embed_text", json={"texts": "x", "prompt_name": "passage"})
    assert refused.status_code == 400 and refused.get_json()["error"]["param"] == "prompt_name"
