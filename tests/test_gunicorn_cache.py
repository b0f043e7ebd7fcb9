"""Two real gunicorn instances sharing a real Redis: what one computes, the other answers from the cache with
the same bits; Redis stopped mid-test costs nothing but the sharing, which resumes when it is back."""

from __future__ import annotations

import base64
import io
import time

import pytest
import requests
from PIL import Image

from .gunicorn_process import GunicornProcess
from .redis_process import RedisProcess
from .tiny_models import models_setting, tiny_bge_m3, tiny_vision_model

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not RedisProcess.available(), reason="redis-server comes from Debian"),
]

TEXTS = ["shared between instances", "through one Redis", "with the same bits on both"]


def png(color) -> str:
    buffer = io.BytesIO()
    Image.new("RGB", (40, 30), color).save(buffer, "PNG")
    return base64.b64encode(buffer.getvalue()).decode()


@pytest.fixture(scope="module")
def redis():
    with RedisProcess() as process:
        yield process


@pytest.fixture(scope="module")
def instances(redis, tmp_path_factory):
    root = tmp_path_factory.mktemp("cache-served")
    models = models_setting({"m3": tiny_bge_m3(root / "bge-m3-tiny"), "clip": tiny_vision_model(root / "clip", "clip")})
    # CACHE_BYTES=0: no local tier, so every hit below is a Redis hit.
    env = {
        "MODELS": models,
        "DTYPE": "float32",
        "REDIS_URL": redis.url,
        "CACHE_BYTES": "0",
        "REDIS_TIMEOUT": "0.05",
        "REDIS_RETRY_AFTER": "1",
    }
    a = GunicornProcess(env, workers=2, log_path=root / "a.log").start()
    b = GunicornProcess(env, workers=2, log_path=root / "b.log").start()
    yield a, b
    a.stop()
    b.stop()


def post(server, route, body):
    response = requests.post(server.url + route, json=body, timeout=60)
    assert response.status_code == 200, response.text
    return response


def until_hit(server, route, body, timeout=10.0):
    """Writes reach Redis off the request path: ask until the answer comes from it."""
    deadline = time.monotonic() + timeout
    while True:
        response = post(server, route, body)
        if response.headers.get("X-Cache") == "hit" or time.monotonic() > deadline:
            return response
        time.sleep(0.05)


@pytest.mark.parametrize(
    "route,body",
    [
        ("/embed_text", {"texts": [t + " (dense)" for t in TEXTS], "model": "m3"}),
        (
            "/embed_text",
            {
                "texts": [t + " (all)" for t in TEXTS],
                "model": "m3",
                "output_types": ["dense", "sparse", "colbert"],
                "encoding_format": "base64",
            },
        ),
        (
            "/embed_text",
            {"texts": [t + " (sparse)" for t in TEXTS], "model": "m3", "output_type": "sparse", "return_tokens": True},
        ),
        ("/embed_image", {"images": [png((200, 10, 10)), png((10, 10, 200))], "model": "clip"}),
    ],
)
def test_what_a_computes_b_answers_from_redis_with_the_same_bits(instances, route, body):
    a, b = instances
    computed = post(a, route, body)
    assert computed.headers["X-Cache"] == "miss"
    shared = until_hit(b, route, body)
    assert shared.headers["X-Cache"] == "hit" and shared.content == computed.content


@pytest.mark.parametrize("bad", ["ten floats", "nan"])
def test_a_well_formed_value_of_the_wrong_shape_in_redis_is_a_miss(instances, redis, bad):
    """#32 finding 5: a value with a valid checksum but the wrong size (or NaNs) is never served."""
    import numpy as np
    import redis as redis_client

    from app.engine.cache import codec

    a, b = instances
    body = {"texts": [f"overwritten in Redis ({bad})"], "model": "m3", "cache": False}
    fresh = np.asarray(post(a, "/embed_text", body).json()["embeddings"][0])
    store = redis_client.Redis.from_url(redis.url)
    store.flushall()  # only this text's entry below
    post(a, "/embed_text", {**body, "cache": True})
    deadline = time.monotonic() + 10
    while not (keys := store.keys("emb:*")) and time.monotonic() < deadline:  # written off the request path
        time.sleep(0.05)
    wrong = np.full(10, 0.5) if bad == "ten floats" else np.full(len(fresh), np.nan)
    before = b.metric("embedding_cache_lookups_total", model="m3", tier="rejected", result="error")
    for precision in ("float32", "int8"):
        # Once the good value is back (the last answer rewrote it, off the request path), overwrite it again.
        while not all(codec.plausible("dense", codec.decode("dense", store.get(key)), len(fresh)) for key in keys):
            assert time.monotonic() < deadline + 20, "the recomputed value never reached Redis"
            time.sleep(0.05)
        for key in keys:
            store.set(key, codec.encode("dense", wrong))
        response = post(b, "/embed_text", {**body, "cache": True, "precision": precision})
        assert response.headers["X-Cache"] == "miss"
        vector = np.asarray(response.json()["embeddings"][0])
        assert vector.shape == fresh.shape
        if precision == "float32":
            assert float(vector @ fresh) >= 0.9999
    assert b.metric("embedding_cache_lookups_total", model="m3", tier="rejected", result="error") >= before + 1
    store.flushall()  # the other tests' keys start from an empty Redis again


def test_redis_down_costs_only_the_sharing(instances, redis):
    a, b = instances
    redis.stop()
    for i in range(6):
        started = time.monotonic()
        response = post(a, "/embed_text", {"texts": [f"while Redis is down {i}"], "model": "m3"})
        assert response.headers["X-Cache"] == "miss" and time.monotonic() - started < 2.0
    redis.start()
    time.sleep(1.2)  # REDIS_RETRY_AFTER
    body = {"texts": ["after Redis is back"], "model": "m3"}
    deadline = time.monotonic() + 15
    while True:  # each worker's tier tries Redis again once its pause is over
        post(a, "/embed_text", {**body, "cache": True})
        shared = post(b, "/embed_text", body)
        if shared.headers["X-Cache"] == "hit" or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert shared.headers["X-Cache"] == "hit"
