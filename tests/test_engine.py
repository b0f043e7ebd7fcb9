"""The engine's vectors against sentence-transformers on the same directories."""

import numpy as np
import pytest

from app.config import Settings
from app.engine.errors import InvalidInput, ModelNotFound

from .engines import started_engine, vectors_of
from .tiny_models import tiny_bert, tiny_sentence_transformer

TEXTS = [
    "The quick brown fox jumps over the lazy dog.",
    "a",
    "Embeddings map text to vectors so that similar meanings land close together; "
    "this sentence is longer than the others to make padding matter. " * 3,
    "naïve café — 東京 — emoji 🙂",
    "   spaced   out   ",
]


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = a / np.linalg.norm(a, axis=1, keepdims=True)
    b = b / np.linalg.norm(b, axis=1, keepdims=True)
    return (a * b).sum(axis=1)


def load(path, **env):
    engine = started_engine(Settings.from_env({"MODEL_PATH": str(path), "DTYPE": "float32", **env}))
    return engine


def test_default_model_matches_sentence_transformers(engine, model, reference_model):
    ours = engine.embed_texts(model, TEXTS).vectors
    reference = reference_model.encode(TEXTS, convert_to_numpy=True)
    assert ours.dtype == np.float32 and ours.shape == (len(TEXTS), 384)
    assert cosines(ours, reference).min() >= 0.9999
    assert np.allclose(np.linalg.norm(ours, axis=1), 1.0, atol=1e-5)


def test_batching_and_order_do_not_change_vectors(engine, model):
    together = engine.embed_texts(model, TEXTS).vectors
    alone = np.stack([engine.embed_texts(model, [t]).vectors[0] for t in TEXTS])
    assert cosines(together, alone).min() >= 0.9999
    reversed_ = engine.embed_texts(model, TEXTS[::-1]).vectors[::-1]
    assert cosines(together, reversed_).min() >= 0.9999


def test_small_batches_pad_each_to_its_own_longest(engine, model, monkeypatch):
    widths = []
    original = model.forward

    def spy(kind, rows, *args):
        widths.append([len(r) for r in rows])
        return original(kind, rows, *args)

    monkeypatch.setattr(model, "forward", spy)
    texts = ["word " * n for n in (50, 1, 40, 2, 30, 3)]
    vectors_of(model, model.prepare_texts(texts), batch_size=2)
    assert [sorted(w, reverse=True) for w in widths] == widths  # length-sorted
    assert max(widths[-1]) < 10  # the short batch is not padded to the long ones


def test_usage_counts_tokens_including_special_tokens(engine, model):
    result = engine.embed_texts(model, ["hello world", "a"])
    assert result.prompt_tokens == 4 + 3


def test_token_ids_with_or_without_special_tokens_embed_like_the_text(engine, model):
    text = "token ids are the model's own vocabulary"
    expected = engine.embed_texts(model, [text]).vectors
    framed = model.tokenizer(text)["input_ids"]
    bare = model.tokenizer(text, add_special_tokens=False)["input_ids"]
    result = engine.embed_token_ids(model, [framed, bare])
    assert cosines(result.vectors, np.repeat(expected, 2, axis=0)).min() >= 0.9999
    assert result.prompt_tokens == 2 * len(framed)


def test_token_ids_outside_the_vocabulary_name_the_input(engine, model):
    with pytest.raises(InvalidInput) as info:
        engine.embed_token_ids(model, [[101, 102], [5, 10**6]])
    assert info.value.param == "input[1]"


def test_over_long_input_truncates_or_is_refused(engine, model):
    long_text = "word " * 1000
    truncated = engine.embed_texts(model, [long_text, "x"])
    assert truncated.prompt_tokens == model.max_length + 3
    with pytest.raises(InvalidInput) as info:
        engine.embed_texts(model, ["short", long_text], truncate=False, field="texts")
    assert info.value.param == "texts[1]" and str(model.max_length) in info.value.message


def test_dimensions_truncate_then_renormalise(engine, model):
    full = engine.embed_texts(model, TEXTS[:2]).vectors
    short = engine.embed_texts(model, TEXTS[:2], dimensions=64).vectors
    assert short.shape == (2, 64)
    assert np.allclose(np.linalg.norm(short, axis=1), 1.0, atol=1e-5)
    assert cosines(short, full[:, :64]).min() >= 0.9999
    with pytest.raises(InvalidInput):
        engine.embed_texts(model, ["x"], dimensions=385)


def test_unnormalised_vectors_keep_their_norm(engine, model, reference_model):
    raw = engine.embed_texts(model, TEXTS[:1], normalize=False).vectors
    assert raw.shape == (1, 384)
    assert cosines(raw, reference_model.encode(TEXTS[:1])).min() >= 0.9999


def test_unknown_model_and_hub_style_names(engine):
    assert engine.resolve("sentence-transformers/all-MiniLM-L6-v2").name == "all-MiniLM-L6-v2"
    with pytest.raises(ModelNotFound):
        engine.resolve("text-embedding-3-small")


@pytest.mark.parametrize(
    "pooling", ["cls", "max", "lasttoken", "weightedmean", "mean_sqrt_len_tokens", ("cls", "mean")]
)
def test_pooling_read_from_sentence_transformers_files(tmp_path, pooling):
    from sentence_transformers import SentenceTransformer

    directory = tiny_sentence_transformer(tmp_path / "st", pooling=pooling, normalize=False)
    engine = load(directory)
    ours = engine.embed_texts(engine.resolve(None), TEXTS).vectors
    reference = SentenceTransformer(str(directory), device="cpu").encode(TEXTS)
    assert ours.shape == reference.shape
    assert cosines(ours, reference).min() >= 0.9999


def test_dense_prompts_and_default_prompt(tmp_path):
    from sentence_transformers import SentenceTransformer

    directory = tiny_sentence_transformer(
        tmp_path / "st",
        pooling="mean",
        dense=16,
        prompts={"query": "query: ", "doc": "passage: "},
        default_prompt_name="query",
        include_prompt=False,
    )
    engine = load(directory)
    model = engine.resolve(None)
    reference = SentenceTransformer(str(directory), device="cpu")
    assert model.dimension == 16
    dense_parameters = 32 * 16 + 16  # the Dense head's weight and bias count as the model's too
    assert model.size()["parameters"] == sum(p.numel() for p in model.model.parameters()) + dense_parameters
    default = engine.embed_texts(model, TEXTS).vectors
    assert cosines(default, reference.encode(TEXTS)).min() >= 0.9999
    doc = engine.embed_texts(model, TEXTS, prompt_name="doc").vectors
    assert cosines(doc, reference.encode(TEXTS, prompt_name="doc")).min() >= 0.9999
    literal = engine.embed_texts(model, TEXTS, prompt="custom: ").vectors
    assert cosines(literal, reference.encode(TEXTS, prompt="custom: ")).min() >= 0.9999
    # The default prompt really was prepended: "query: " adds 2 tokens to each short input.
    short = TEXTS[:2]
    assert engine.embed_texts(model, short).prompt_tokens == engine.embed_texts(
        model, short, prompt=""
    ).prompt_tokens + 2 * len(short)
    with pytest.raises(InvalidInput) as info:
        engine.embed_texts(model, TEXTS, prompt_name="passage")
    assert info.value.param == "prompt_name" and "query" in info.value.message


def test_max_seq_length_comes_from_the_model_files(tmp_path):
    directory = tiny_sentence_transformer(tmp_path / "st", max_seq_length=24)
    model = load(directory).resolve(None)
    assert model.max_length == 24
    assert model.prepare_texts(["word " * 100]).token_count == 24


def test_plain_huggingface_directory_uses_mean_pooling(tmp_path):
    import torch
    from transformers import AutoModel, AutoTokenizer

    directory = tiny_bert(tmp_path / "plain", max_position_embeddings=40)
    engine = load(directory)
    model = engine.resolve("plain")
    assert model.max_length == 40 and model.layout.pooling_modes == ("mean",)
    tokenizer = AutoTokenizer.from_pretrained(directory)
    reference_model = AutoModel.from_pretrained(directory).eval()
    batch = tokenizer(TEXTS, padding=True, truncation=True, max_length=40, return_tensors="pt")
    with torch.no_grad():
        hidden = reference_model(**batch).last_hidden_state
    weights = batch["attention_mask"].unsqueeze(-1).float()
    reference = ((hidden * weights).sum(1) / weights.sum(1)).numpy()
    assert cosines(engine.embed_texts(model, TEXTS).vectors, reference).min() >= 0.9999


def test_an_inference_fault_fails_only_that_call(engine, model, monkeypatch):
    from app.engine.errors import InferenceFailed

    def broken(*args, **kwargs):
        raise RuntimeError("CUDA out of memory (simulated)")

    monkeypatch.setattr(model, "forward", broken)
    with pytest.raises(InferenceFailed):
        engine.embed_texts(model, ["x"], use_cache=False)
    monkeypatch.undo()
    assert engine.embed_texts(model, ["x"]).vectors.shape == (1, 384)


def test_auto_dtype_is_fast_and_stays_correct(engine, model):
    """DTYPE=auto (bfloat16 on CPUs with native bf16) keeps cosine >= 0.999 against float32."""
    from app.engine.device import cpu_has_native_bf16

    auto = started_engine(Settings.from_env({"RUNTIME": "eager"}))  # compiled: test_compiled_runtime.py
    expected = "bfloat16" if cpu_has_native_bf16() else "float32"
    assert auto.health()["dtype"] == expected
    texts = TEXTS * 3 + ["the same vectors, give or take rounding"]
    reference = engine.embed_texts(model, texts).vectors
    assert cosines(auto.embed_texts(auto.resolve(None), texts).vectors, reference).min() >= 0.999
