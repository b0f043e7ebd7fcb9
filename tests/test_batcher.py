"""Dynamic batching across concurrent requests, with the model gated so batches form deterministically."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from app import create_app
from app.config import Settings
from app.engine import Lane
from app.engine.batcher import Batcher, BatchLimits
from app.engine.errors import InferenceFailed, Overloaded
from app.engine.execution import run_inline
from app.engine.requests import EmbedRequest
from app.errors import from_engine

from .conftest import FLOAT32
from .engines import engine_for, vectors_of
from .tiny_models import tiny_sentence_transformer


class GatedModel:
    """Wraps a model's text lane: records each batch, and can hold the next forward pass until released."""

    def __init__(self, model):
        self.lane = Lane(model, "text")
        self.name = model.name
        self.lock = threading.Lock()
        # A huge fixed cost per pass makes the planner merge as much as the limits allow,
        # so these tests see the batcher's merging alone (planning has its own tests).
        self.overhead_tokens = 10**9
        self.batches: list[list[int]] = []
        self.entered = threading.Event()
        self.gate = threading.Event()
        self.gate.set()
        self.fail_next = False

    def hold(self):
        self.gate.clear()
        self.entered.clear()

    def forward_rows(self, rows, outputs=frozenset({"dense"})):
        self.batches.append([len(r) for r in rows])
        self.entered.set()
        assert self.gate.wait(30)
        if self.fail_next:
            self.fail_next = False
            raise RuntimeError("simulated out of memory")
        return self.lane.forward_rows(rows, outputs)


def make_batcher(model, **limits) -> tuple[Batcher, GatedModel, list]:
    gated = GatedModel(model)
    depths = []
    batcher = Batcher(
        gated, BatchLimits(**limits), offload=run_inline, on_batch=lambda *a: None, on_queue=depths.append
    )
    return batcher, gated, depths


def wait_for(predicate, timeout=30.0):
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.001)


def submit_async(pool, batcher, model, texts, **kwargs):
    return pool.submit(batcher.submit, model.prepare_texts(texts, **kwargs))


def one_running_one_waiting(pool, batcher, gated, model):
    """Hold the model on one request while a second waits in the queue."""
    gated.hold()
    running = submit_async(pool, batcher, model, ["running"])
    assert gated.entered.wait(10)
    waiting = submit_async(pool, batcher, model, ["waiting"])
    wait_for(lambda: batcher.depth == 1)
    return running, waiting


def test_concurrent_requests_share_a_batch_and_get_their_own_vectors(model):
    batcher, gated, _ = make_batcher(model, max_batch_size=32)
    texts = [f"request number {i} says something {'long ' * i}" for i in range(12)]
    expected = vectors_of(model, model.prepare_texts(texts), 32)
    with ThreadPoolExecutor(12) as pool:
        gated.hold()
        first = submit_async(pool, batcher, model, texts[:1])
        assert gated.entered.wait(10)  # the first request is in the model
        rest = [submit_async(pool, batcher, model, [t]) for t in texts[1:]]
        wait_for(lambda: batcher.depth == 11)
        gated.gate.set()
        results = [first.result(30)] + [f.result(30) for f in rest]
    assert [len(b) for b in gated.batches] == [1, 11]  # the 11 waiting requests formed one batch
    for i, (results_, started, finished) in enumerate(results):
        vectors = results_.dense
        assert vectors.shape == (1, model.dimension) and started <= finished
        assert np.allclose(vectors[0], expected[i], atol=1e-5)


def test_a_large_request_is_split_and_small_ones_ride_in_the_next_batch(model):
    batcher, gated, _ = make_batcher(model, max_batch_size=8)
    big = [f"bulk item {i} " * (1 + i % 5) for i in range(40)]
    small_text = "a quick question that is longer than any bulk item " * 2
    with ThreadPoolExecutor(2) as pool:
        gated.hold()
        large = submit_async(pool, batcher, model, big)
        assert gated.entered.wait(10)
        small = submit_async(pool, batcher, model, [small_text])
        wait_for(lambda: batcher.depth == 2)
        gated.gate.set()
        vectors, _, large_finished = large.result(30)
        _, _, small_finished = small.result(30)
    assert all(len(b) <= 8 for b in gated.batches) and sum(map(len, gated.batches)) == 41
    assert len(gated.batches) == 6  # 40 + 1 rows in batches of 8: the small one filled a gap
    # Not behind the 32 bulk rows still queued: in the batch right after the one running when it came.
    small_length = len(model.prepare_texts([small_text]).rows[0])
    assert small_length > max(gated.batches[0]) and small_length in gated.batches[1]
    assert small_finished < large_finished
    expected = vectors_of(model, model.prepare_texts(big), 8)
    assert np.allclose(vectors.dense, expected, atol=1e-5)


def test_requests_take_turns_in_each_batch(model):
    batcher, gated, _ = make_batcher(model, max_batch_size=4)
    with ThreadPoolExecutor(4) as pool:
        gated.hold()
        first = submit_async(pool, batcher, model, ["holds the model"])
        assert gated.entered.wait(10)
        giants = [submit_async(pool, batcher, model, [f"giant {g} row {i}" for i in range(12)]) for g in range(2)]
        wait_for(lambda: batcher.depth == 2)
        late = submit_async(pool, batcher, model, ["late " * 30])
        wait_for(lambda: batcher.depth == 3)
        gated.gate.set()
        for future in [first, *giants, late]:
            future.result(30)
    late_length = len(model.prepare_texts(["late " * 30]).rows[0])
    assert late_length in gated.batches[1]  # the newest request went first in the next batch
    assert sum(map(len, gated.batches)) == 1 + 24 + 1


def test_a_pass_is_cut_to_what_the_measured_rate_runs_in_about_half_a_second(model):
    gated = GatedModel(model)
    rate = {"tokens_per_second": None}
    batcher = Batcher(
        gated,
        BatchLimits(max_batch_size=32),
        run_inline,
        lambda *a: None,
        lambda d: None,
        lambda: rate["tokens_per_second"],
    )
    texts = ["word " * 40] * 6  # 42 tokens each
    batcher.submit(model.prepare_texts(texts))
    assert [len(b) for b in gated.batches] == [6]  # nothing measured: MAX_BATCH_TOKENS alone
    gated.batches.clear()
    rate["tokens_per_second"] = 200  # 100 tokens in PASS_SECONDS
    vectors = batcher.submit(model.prepare_texts(texts))[0].dense
    assert [len(b) for b in gated.batches] == [2, 2, 2] and vectors.shape == (6, model.dimension)
    gated.batches.clear()
    rate["tokens_per_second"] = 1  # slower than one row in PASS_SECONDS: still one row a pass
    batcher.submit(model.prepare_texts(texts[:2]))
    assert [len(b) for b in gated.batches] == [1, 1]


def test_token_budget_limits_padded_batch_size(model):
    batcher, gated, _ = make_batcher(model, max_batch_size=32, max_batch_tokens=100)
    texts = ["word " * 40] * 6  # 42 tokens each
    vectors = batcher.submit(model.prepare_texts(texts))[0].dense
    assert [len(b) for b in gated.batches] == [2, 2, 2]
    assert vectors.shape == (6, model.dimension)


def test_full_queue_refuses_at_once_with_retry_after(model):
    batcher, gated, _ = make_batcher(model, max_queue=1)
    with ThreadPoolExecutor(2) as pool:
        running, waiting = one_running_one_waiting(pool, batcher, gated, model)
        with pytest.raises(Overloaded) as info:
            batcher.submit(model.prepare_texts(["refused"]))
        answered = from_engine(info.value)  # how every surface answers it
        assert answered.status == 503 and answered.headers["Retry-After"] == "1"
        gated.gate.set()
        running.result(30)
        waiting.result(30)


def test_a_request_that_waited_too_long_is_dropped_before_inference(model):
    batcher, gated, _ = make_batcher(model, request_timeout=0.01)
    with ThreadPoolExecutor(2) as pool:
        running, late = one_running_one_waiting(pool, batcher, gated, model)
        time.sleep(0.05)  # the thing under test: time passing beyond REQUEST_TIMEOUT
        gated.gate.set()
        running.result(30)
        with pytest.raises(Overloaded, match="REQUEST_TIMEOUT"):
            late.result(30)
    assert [len(b) for b in gated.batches] == [1]  # the late request never reached the model


def test_a_failed_batch_fails_only_its_requests(model):
    batcher, gated, _ = make_batcher(model)
    gated.fail_next = True
    with pytest.raises(InferenceFailed):
        batcher.submit(model.prepare_texts(["unlucky"]))
    vectors = batcher.submit(model.prepare_texts(["fine"]))[0].dense
    assert vectors.shape == (1, model.dimension)


def test_requests_with_different_prompt_lengths_share_a_batch(tmp_path):
    directory = tiny_sentence_transformer(tmp_path / "st", prompts={"query": "query: "}, include_prompt=False)
    engine = engine_for(Settings.from_env({"MODEL_PATH": str(directory), **FLOAT32}))
    engine.start_worker(batching=False)
    model = engine.resolve(None)
    with_prompt = model.prepare_texts(["alpha beta"], EmbedRequest(prompt="query: "))
    without = model.prepare_texts(["alpha beta"])
    expected = [vectors_of(model, with_prompt, 8)[0], vectors_of(model, without, 8)[0]]
    batcher, gated, _ = make_batcher(model)
    with ThreadPoolExecutor(3) as pool:
        gated.hold()
        first = pool.submit(batcher.submit, without)
        assert gated.entered.wait(10)
        a = pool.submit(batcher.submit, with_prompt)
        b = pool.submit(batcher.submit, without)
        wait_for(lambda: batcher.depth == 2)
        gated.gate.set()
        first.result(30)
        got = [a.result(30)[0].dense[0], b.result(30)[0].dense[0]]
    assert [len(x) for x in gated.batches] == [1, 2]
    assert np.allclose(got[0], expected[0], atol=1e-5) and np.allclose(got[1], expected[1], atol=1e-5)
    assert not np.allclose(got[0], got[1], atol=1e-3)


def test_engine_batches_concurrent_http_requests(settings):
    """Through the app: threads of one worker share forward passes; every caller gets its own vectors."""
    engine = engine_for(settings)
    engine.start_worker(batching=True)
    client_app = create_app(settings, engine)
    texts = [f"concurrent text {i} " + "padding " * (i % 7) for i in range(24)]
    expected = engine.embed_texts(engine.resolve(None), texts).vectors

    def call(i):
        with client_app.test_client() as client:
            return client.post("/embed_text", json={"texts": texts[i]}).get_json()["embeddings"][0]

    with ThreadPoolExecutor(8) as pool:
        got = list(pool.map(call, range(len(texts))))
    assert np.allclose(np.array(got), expected, atol=1e-5)
    assert engine.describe_runtime()["batching"] is True


def test_overload_is_a_503_in_the_envelope(settings):
    engine = engine_for(Settings.from_env({**FLOAT32, "MAX_QUEUE": "1"}))
    engine.start_worker(batching=True)
    model = engine.resolve(None)
    gated = GatedModel(model)
    engine.batchers[(model.name, "text")].lane = gated
    client_app = create_app(settings, engine)
    with ThreadPoolExecutor(2) as pool:
        gated.hold()
        running = pool.submit(client_app.test_client().post, "/embed_text", json={"texts": "one"})
        assert gated.entered.wait(10)
        waiting = pool.submit(client_app.test_client().post, "/embed_text", json={"texts": "two"})
        wait_for(lambda: engine.queue_depth == 1)
        refused = client_app.test_client().post("/embed_text", json={"texts": "three"})
        gated.gate.set()
        assert running.result(30).status_code == 200 and waiting.result(30).status_code == 200
    assert refused.status_code == 503 and refused.headers["Retry-After"] == "1"
    assert refused.get_json()["error"]["code"] == "overloaded"


def a_pass_of_two(pool, batcher, gated, model) -> None:
    """Passes of one request, then of two: the last pass answered two clients."""
    first, second = one_running_one_waiting(pool, batcher, gated, model)
    third = submit_async(pool, batcher, model, ["a third request"])
    wait_for(lambda: batcher.depth == 2)
    gated.gate.set()
    for future in (first, second, third):
        future.result(30)
    assert [len(b) for b in gated.batches] == [1, 2]


def test_just_after_a_pass_a_partial_batch_waits_for_the_requests_that_pass_answered(model):
    """Keep-alive clients come back one by one after the pass that answered them: the first waits (a
    bounded share of that pass's duration, unbounded here) for the others instead of running alone."""
    batcher, gated, _ = make_batcher(model, max_batch_size=32, return_wait=10**6)
    with ThreadPoolExecutor(4) as pool:
        a_pass_of_two(pool, batcher, gated, model)
        back = submit_async(pool, batcher, model, ["the first client is back"])
        wait_for(lambda: batcher.depth == 1)
        assert len(gated.batches) == 2 and not back.done()  # held for the second client
        again = submit_async(pool, batcher, model, ["and the second"])
        back.result(30), again.result(30)
    assert [len(b) for b in gated.batches] == [1, 2, 2]


def test_a_lone_client_and_a_request_after_the_hold_are_not_held(model):
    batcher, gated, _ = make_batcher(model, max_batch_size=32, return_wait=10**6)
    with ThreadPoolExecutor(2) as pool:
        for number in range(3):  # every pass carried one request: nothing to wait for
            submit_async(pool, batcher, model, [f"lone request {number}"]).result(30)
    assert [len(b) for b in gated.batches] == [1, 1, 1]
    batcher, gated, _ = make_batcher(model, max_batch_size=32, return_wait=0)
    with ThreadPoolExecutor(4) as pool:
        a_pass_of_two(pool, batcher, gated, model)
        # the last pass answered two clients, but its hold (none here) is over: one request runs alone
        submit_async(pool, batcher, model, ["after the hold"]).result(30)
    assert [len(b) for b in gated.batches] == [1, 2, 1]
