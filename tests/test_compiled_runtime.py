"""RUNTIME=compile: every family that compiles gives its reference's vectors and scores, the rest stay
eager and say so, no shape compiles while a request waits; a real gunicorn compiles once in the master for
workers of one thread (re-forked workers inherit it), and workers of several threads switch over after /ready."""

from __future__ import annotations

import logging
import os
import signal
import time

import numpy as np
import pytest
import requests
import torch

from app.config import Settings
from app.engine import compiled
from app.engine.compiled import CompiledRuntime, GuardedModule, choose

from .engines import engine_for
from .gunicorn_process import GunicornProcess
from .tiny_models import (
    DECODER_CORPUS,
    models_setting,
    tiny_bge_m3,
    tiny_classifier,
    tiny_cross_encoder,
    tiny_inference_free_splade,
    tiny_multi_vector,
    tiny_qwen3_embedding,
    tiny_sentence_transformer,
    tiny_vision_model,
)

TEXTS = [
    "a",
    "The quick brown fox jumps over the lazy dog.",
    "Embeddings turn text into vectors; " * 6,
    "short one",
    "A longer passage about compilers, kernels and the shapes they are built for. " * 3,
] + DECODER_CORPUS[:5]
DOCUMENTS = ["Paris is the capital of France.", "Bananas are yellow.", "France " * 30, "x"]


# Tests marked `compile` cost about 15 s of CPU per tiny model compiled: they run in their own CI step
# (`python -m pytest -m compile`), not in the default run.


# ----------------------------------------------------------------- choosing
@pytest.mark.parametrize(
    ("runtime", "device", "dtype", "expected"),
    [
        ("eager", "cpu", torch.bfloat16, "eager"),
        ("auto", "cpu", torch.bfloat16, "compile"),
        ("auto", "cpu", torch.float32, "eager"),
        ("compile", "cpu", torch.float32, "compile"),
        ("compile", "cuda", torch.float16, "eager"),
        ("auto", "cuda", torch.float16, "eager"),
    ],
)
def test_the_runtime_follows_the_setting_device_and_dtype(monkeypatch, runtime, device, dtype, expected):
    monkeypatch.setattr(compiled, "compiler_missing", lambda: None)
    assert choose(runtime, device, dtype)[0] == expected


def test_auto_is_the_default():
    assert Settings.from_env({}).runtime == "auto"


def test_without_a_cxx_compiler_it_stays_eager_and_says_why(monkeypatch):
    monkeypatch.setattr(compiled.shutil, "which", lambda name: None)
    choice, why = choose("compile", "cpu", torch.float32)
    assert choice == "eager" and "C++ compiler" in why


def test_a_shape_outside_the_graphs_runs_eagerly_and_warns_once(caplog):
    calls = []

    def refusing(x):
        raise RuntimeError("Detected recompile when torch.compile stance is 'fail_on_recompile'.")

    def eager(x):
        calls.append(x)
        return x + 1

    module = GuardedModule(refusing, eager, "m")
    with caplog.at_level(logging.WARNING, logger="embedding.engine"):
        assert module(1) == 2 and module(2) == 3
    assert calls == [1, 2]
    assert sum("runs eagerly" in r.message for r in caplog.records) == 1


def test_other_errors_of_the_compiled_call_are_not_hidden():
    def failing(x):
        raise RuntimeError("out of memory")

    with pytest.raises(RuntimeError, match="out of memory"):
        GuardedModule(failing, lambda x: x, "m")(1)


@pytest.mark.parametrize("sizing", [{"CPU_THREADS": "2"}, {"CPU_THREADS": "1", "PRELOAD": "false"}])
def test_workers_of_several_threads_or_without_preload_compile_for_themselves(tmp_path, monkeypatch, sizing):
    """Graphs are built for one thread count: with several per worker nothing compiles as the models load;
    nor without preload, where loading is a worker's boot. Each worker compiles after /ready, and one given
    no thread to do it in stays eager."""
    monkeypatch.setattr(compiled, "compiler_missing", lambda: None)
    env = {"MODEL_PATH": str(tiny_sentence_transformer(tmp_path / "st")), "RUNTIME": "compile", **sizing}
    engine = engine_for(Settings.from_env(env))
    assert engine.health()["runtime"] == {"st": "compiling"}
    assert not isinstance(engine.models["st"].model, GuardedModule)
    spawned = []
    engine.runtime.start(engine.models, spawned.append)
    assert len(spawned) == 1  # what the worker's background thread would run
    engine.start_worker()  # no background thread here (as under `flask run`)
    assert engine.health()["runtime"] == {"st": "eager"}


def test_padded_widths_round_up_within_the_models_limit(tmp_path):
    env = {"MODEL_PATH": str(tiny_sentence_transformer(tmp_path / "st")), "RUNTIME": "eager"}
    engine = engine_for(Settings.from_env(env))
    model = engine.models["st"]
    rows = model.prepare_texts(["a b c", "one two three four five six"]).rows
    assert model.padded_width(rows) == max(map(len, rows))
    model.pad_multiple = 32
    assert model.padded_width(rows) == 32
    long = model.prepare_texts(["word " * 200]).rows  # cut to the model's 64 tokens
    assert model.padded_width(long) == model.max_length == 64


# ------------------------------------------------------------------ fidelity
@pytest.fixture(scope="module")
def model_dirs(tmp_path_factory):
    root = tmp_path_factory.mktemp("compiled")
    return {
        "st": tiny_sentence_transformer(root / "st", dense=24),
        "qwen3": tiny_qwen3_embedding(root / "qwen3"),
        "m3": tiny_bge_m3(root / "m3"),
        "ce": tiny_cross_encoder(root / "ce", "xlmr"),
        "cls": tiny_classifier(root / "cls", ["negative", "neutral", "positive"]),
        "splade": tiny_inference_free_splade(root / "splade"),
        "colbert": tiny_multi_vector(root / "colbert"),
        "clip": tiny_vision_model(root / "clip", "clip"),
    }


@pytest.fixture(scope="module")
def engines(model_dirs):
    """The same models eager and compiled (float32, one torch thread: compiled as they load, as in a gunicorn
    master). The graph's host code in Python rather than C++ halves the compile time; the gunicorn tests
    below run the production options."""
    saved = dict(compiled.INDUCTOR_OPTIONS)
    compiled.INDUCTOR_OPTIONS["cpp_wrapper"] = False
    env = {"MODELS": models_setting(model_dirs), "DTYPE": "float32", "CACHE_BYTES": "0", "CPU_THREADS": "1"}
    eager = engine_for(Settings.from_env({**env, "RUNTIME": "eager"}))
    eager.start_worker()
    fast = engine_for(Settings.from_env({**env, "RUNTIME": "compile"}))
    fast.start_worker()
    compiled.INDUCTOR_OPTIONS.update(saved)
    return eager, fast


@pytest.mark.slow
@pytest.mark.compile
def test_families_that_compile_do_and_the_rest_say_they_run_eagerly(engines):
    eager, fast = engines
    assert fast.health()["runtime"] == {
        "st": "compiled",
        "qwen3": "compiled",
        "m3": "compiled",
        "ce": "compiled",
        "cls": "compiled",
        "splade": "compiled",
        "colbert": "compiled",
        "clip": "eager",
    }
    assert set(eager.health()["runtime"].values()) == {"eager"}
    stats = {m["id"]: m for m in fast.describe_runtime()["models"]}
    assert stats["st"]["runtime"] == "compiled" and stats["st"]["runtime_requested"] == "compile"


def _cosines(a, b):
    return (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


def _embed_in_batches(engine, name, texts, **options):
    """Batches of every size from 1 to 5 and widths on both sides of the padding multiple."""
    model, out, start, size = engine.models[name], [], 0, 1
    while start < len(texts):
        out.append(engine.embed_texts(model, texts[start : start + size], use_cache=False, **options).vectors)
        start, size = start + size, size % 5 + 1
    return np.concatenate(out)


@pytest.mark.slow
@pytest.mark.compile
def test_sentence_transformer_and_decoder_vectors_equal_sentence_transformers(engines, model_dirs):
    from sentence_transformers import SentenceTransformer

    _, fast = engines
    texts = TEXTS * 3
    for name, options in (("st", {}), ("qwen3", {"prompt_name": "query"})):
        reference = SentenceTransformer(str(model_dirs[name]), device="cpu").encode(
            texts, normalize_embeddings=True, **options
        )
        got = _embed_in_batches(fast, name, texts, **options)
        assert _cosines(got, reference).min() >= 0.9999, name


@pytest.mark.slow
@pytest.mark.compile
def test_bge_m3_outputs_equal_the_eager_ones(engines):
    eager, fast = engines
    outputs = frozenset({"dense", "sparse", "colbert"})
    a = eager.embed_texts(eager.models["m3"], TEXTS, outputs=outputs, use_cache=False)
    b = fast.embed_texts(fast.models["m3"], TEXTS, outputs=outputs, use_cache=False)
    assert _cosines(a.vectors, b.vectors).min() >= 0.9999
    for (ids_a, w_a), (ids_b, w_b) in zip(a.sparse, b.sparse, strict=True):
        assert list(ids_a) == list(ids_b) and np.allclose(w_a, w_b, atol=1e-5)
    for va, vb in zip(a.colbert, b.colbert, strict=True):
        assert va.shape == vb.shape and _cosines(va, vb).min() >= 0.9999


@pytest.mark.slow
@pytest.mark.compile
def test_cross_encoder_scores_equal_cross_encoder_predict(engines, model_dirs):
    from sentence_transformers import CrossEncoder

    _, fast = engines
    for query in ("capital of France", "a"):
        reference = CrossEncoder(str(model_dirs["ce"]), device="cpu").predict([(query, d) for d in DOCUMENTS])
        got = fast.rerank(fast.models["ce"], [query], DOCUMENTS, use_cache=False).scores[0]
        assert np.allclose(got, reference, atol=1e-5)


@pytest.mark.slow
@pytest.mark.compile
def test_classifier_scores_equal_the_text_classification_pipeline(engines, model_dirs):
    from .test_classifier import PAIRS, pipeline_scores

    _, fast = engines
    inputs = [*TEXTS, *PAIRS]
    got = fast.classify(fast.models["cls"], inputs, use_cache=False).scores
    assert np.abs(got - pipeline_scores(model_dirs["cls"], inputs)).max() < 1e-5


@pytest.mark.slow
@pytest.mark.compile
def test_sparse_encoder_vectors_equal_sparse_encoder(engines, model_dirs):
    from .test_sparse_encoder import assert_equal_to_reference, reference

    _, fast = engines
    model = fast.models["splade"]
    for side in ("query", "document"):
        got = fast.embed_texts(model, TEXTS, outputs={"sparse"}, is_query=side == "query", use_cache=False).sparse
        assert_equal_to_reference(got, reference(model_dirs["splade"], TEXTS, side))
    assert isinstance(model.model_document, GuardedModule) and not model.model_document._warned


@pytest.mark.slow
@pytest.mark.compile
def test_multi_vectors_and_maxsim_equal_multi_vector_encoder(engines, model_dirs):
    from .test_multi_vector import DOCUMENTS as PASSAGES
    from .test_multi_vector import QUERIES, assert_same_vectors, reference

    _, fast = engines
    model = fast.models["colbert"]
    encoder = reference(model_dirs["colbert"])
    for is_query, texts, encode in ((True, QUERIES, encoder.encode_query), (False, PASSAGES, encoder.encode_document)):
        got = fast.embed_texts(model, texts, outputs={"colbert"}, is_query=is_query, use_cache=False).colbert
        assert_same_vectors(got, encode(texts, convert_to_numpy=True))
    scores = fast.rerank(model, QUERIES, PASSAGES, use_cache=False).scores
    expected = encoder.similarity(encoder.encode_query(QUERIES), encoder.encode_document(PASSAGES)).numpy()
    np.testing.assert_allclose(scores, expected, atol=1e-4)
    assert isinstance(model.model, GuardedModule) and not model.model._warned


@pytest.mark.slow
@pytest.mark.compile
def test_no_served_shape_falls_back_to_eager(engines):
    """The warm-up shapes (one row, several rows) cover every batch size and padded width after them."""
    _, fast = engines
    for name in ("st", "qwen3", "m3"):
        _embed_in_batches(fast, name, TEXTS * 2)
    fast.rerank(fast.models["ce"], ["q"], DOCUMENTS * 3, use_cache=False)
    for name in ("st", "qwen3", "m3", "ce"):
        module = fast.models[name].model
        assert isinstance(module, GuardedModule) and not module._warned, name


@pytest.mark.slow
@pytest.mark.compile
def test_a_model_whose_compiled_output_differs_stays_eager(model_dirs, monkeypatch):
    engine = engine_for(Settings.from_env({"MODEL_PATH": str(model_dirs["st"]), "DTYPE": "float32"}))
    runtime = CompiledRuntime("compile", "cpu", torch.float32, threads=1)
    monkeypatch.setattr(compiled, "_agree", lambda expected, got, name: False)
    runtime.before_fork(engine.models)
    assert runtime.status == {"st": "eager (compiled output differed)"}
    assert not isinstance(engine.models["st"].model, GuardedModule)


# ------------------------------------------------------------- real gunicorn
def _runtimes(url: str, workers: int, timeout: float = 240.0) -> dict[int, dict]:
    """Each worker's /health runtime, once every worker has been seen with nothing still compiling."""
    deadline, seen = time.monotonic() + timeout, {}
    while time.monotonic() < deadline:
        try:
            health = requests.get(url + "/health", timeout=30).json()
        except requests.Timeout:
            # a worker compiling on a busy 2-core machine (inductor's C++ compilers take both cores) may
            # answer late: the deadline, not one probe, bounds the wait
            continue
        seen[health["pid"]] = health["runtime"]
        if len(seen) >= workers and all("compiling" not in r.values() for r in seen.values()):
            return seen
    raise AssertionError(f"still compiling after {timeout}s: {seen}")


def _compile_logs(server) -> list[dict]:
    return [r for r in server.log_records() if "compil" in r["msg"]]


@pytest.mark.slow
@pytest.mark.compile
def test_gunicorn_master_compiles_once_and_every_worker_inherits_it(model_dirs, tmp_path):
    """Workers of one thread: the master compiles before fork, so /ready already serves compiled, and a
    worker gunicorn re-forks (MAX_REQUESTS) is compiled from its first request without compiling again."""
    from sentence_transformers import SentenceTransformer

    env = {
        "MODEL_PATH": str(model_dirs["st"]),
        "RUNTIME": "compile",
        "DTYPE": "float32",
        "CPU_THREADS": "1",
        "MAX_REQUESTS": "15",
        "MAX_REQUESTS_JITTER": "0",
        "ALLOW_UNBOUNDED_QUEUE": "true",
        "WORKER_CLASS": "sync",  # recycles at once (gevent lets open connections finish first)
        "CACHE_BYTES": "0",
    }
    reference = SentenceTransformer(str(model_dirs["st"]), device="cpu").encode(TEXTS, normalize_embeddings=True)
    with GunicornProcess(env, workers=2, log_path=tmp_path / "log") as server:
        first, pids = server.worker_pids(), set()
        deadline = time.monotonic() + 120
        while not pids - first:  # until a re-forked worker answered
            assert time.monotonic() < deadline, "no worker was re-forked"
            answer = requests.post(server.url + "/embed_text", json={"texts": TEXTS}, timeout=60)
            assert _cosines(np.array(answer.json()["embeddings"]), reference).min() >= 0.9999
            health = requests.get(server.url + "/health", timeout=10).json()
            assert health["runtime"] == {"st": "compiled"}, health
            pids.add(health["pid"])
        logs = _compile_logs(server)
        master = server.proc.pid
        assert [r["pid"] for r in logs if "compiled in" in r["msg"]] == [master], logs
        assert not [r for r in server.log_records() if "runs eagerly" in r["msg"]]


@pytest.mark.slow
@pytest.mark.compile
def test_gunicorn_workers_of_several_threads_serve_while_compiling_then_switch(model_dirs, tmp_path):
    from sentence_transformers import SentenceTransformer

    env = {"MODEL_PATH": str(model_dirs["st"]), "RUNTIME": "compile", "DTYPE": "float32", "CPU_THREADS": "2"}
    reference = SentenceTransformer(str(model_dirs["st"]), device="cpu").encode(TEXTS, normalize_embeddings=True)
    with GunicornProcess(env, workers=1, log_path=tmp_path / "log") as server:
        # /ready came before compilation ended: requests are answered meanwhile, by the eager model.
        early = requests.post(server.url + "/embed_text", json={"texts": TEXTS}, timeout=60)
        assert early.status_code == 200
        runtimes = _runtimes(server.url, 1)
        assert all(r == {"st": "compiled"} for r in runtimes.values()), (runtimes, _compile_logs(server))
        assert [r["pid"] for r in _compile_logs(server) if "compiled in" in r["msg"]] == list(runtimes)
        for _ in range(3):
            answer = requests.post(server.url + "/embed_text", json={"texts": TEXTS}, timeout=60)
            assert _cosines(np.array(answer.json()["embeddings"]), reference).min() >= 0.9999
        assert _cosines(np.array(early.json()["embeddings"]), reference).min() >= 0.9999


@pytest.mark.slow
@pytest.mark.compile
def test_a_worker_stopped_while_compiling_exits_promptly(model_dirs, tmp_path):
    env = {"MODEL_PATH": str(model_dirs["qwen3"]), "RUNTIME": "compile", "DTYPE": "float32", "CPU_THREADS": "2"}
    # inductor's on-disk caches off: warm from the other tests, they make a compilation short enough to end
    # before /health is asked, and this test is about stopping one that has not
    env.update(TORCHINDUCTOR_FX_GRAPH_CACHE="0", TORCHINDUCTOR_AUTOGRAD_CACHE="0")
    with GunicornProcess(env, workers=1, log_path=tmp_path / "log") as server:
        assert requests.get(server.url + "/health", timeout=60).json()["runtime"] == {"qwen3": "compiling"}
        os.killpg(server.proc.pid, signal.SIGTERM)
        assert server.proc.wait(timeout=120) == 0
    lines = (tmp_path / "log").read_text().splitlines()
    assert lines and all(line.startswith("{") for line in lines), lines[-5:]
    assert not any("compiled in" in line for line in lines), "held until the compilation ended"
