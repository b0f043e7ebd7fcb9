"""The embedding cache: keys, values, the byte-bounded local tier, a real Redis tier, and the engine and routes
with the cache on (the default) and off."""

from __future__ import annotations

import shutil
import time

import numpy as np
import pytest

from app import create_app
from app.config import Settings
from app.engine.cache import CacheConfig, LocalCache, TieredCache, codec, model_fingerprint, row_key
from app.engine.rows import PairRow, TextRow

from .engines import started_engine
from .redis_process import RedisProcess
from .tiny_models import tiny_bge_m3, tiny_sentence_transformer

TEXTS = ["the cache keeps raw vectors", "a second text", "and a third one, a little longer than the others"]


# ---------------------------------------------------------------- values and keys
@pytest.mark.parametrize(
    "kind,value",
    [
        ("dense", np.arange(5, dtype=np.float32) / 7),
        ("score", np.float32(-1.25)),
        ("sparse", (np.array([3, 9, 40], dtype=np.int64), np.array([0.5, 0.25, 2.0], dtype=np.float32))),
        ("colbert", np.arange(12, dtype=np.float32).reshape(3, 4) / 3),
    ],
)
def test_values_round_trip_and_damage_is_a_miss(kind, value):
    data = codec.encode(kind, value)
    back = codec.decode(kind, data)
    if kind == "sparse":
        assert np.array_equal(back[0], value[0]) and np.array_equal(back[1], value[1])
    else:
        assert np.array_equal(np.asarray(back), np.asarray(value))
    flipped = bytearray(data)
    flipped[-1] ^= 0x01
    assert codec.decode(kind, bytes(flipped)) is None
    assert codec.decode(kind, data[:-2]) is None
    assert codec.decode(kind, b"") is None
    assert codec.decode("dense" if kind != "dense" else "score", data) is None  # another kind's value


def test_keys_follow_what_the_model_reads_and_the_output():
    row = TextRow([101, 7, 102])
    assert row_key(row, "dense") == row_key(TextRow([101, 7, 102]), "dense")
    assert row_key(row, "dense") != row_key(row, "sparse")
    assert row_key(row, "dense") != row_key(TextRow([101, 8, 102]), "dense")  # another prompt or truncation
    assert row_key(row, "dense") != row_key(TextRow([101, 7, 102], prompt_length=1), "dense")
    assert row_key(PairRow([101, 7, 102], 2), "score") != row_key(PairRow([101, 7, 102], 1), "score")


def test_fingerprints_tell_models_apart_not_their_names(tmp_path):
    a = tiny_sentence_transformer(tmp_path / "a" / "same-name")
    b = tiny_sentence_transformer(tmp_path / "b" / "same-name", dense=8)
    copy = tmp_path / "c" / "same-name"
    shutil.copytree(a, copy)
    assert model_fingerprint(a) != model_fingerprint(b)
    assert model_fingerprint(a) == model_fingerprint(copy)  # one model, mounted elsewhere: shared entries


def test_the_local_tier_stays_under_its_bytes():
    cache = LocalCache(capacity=10_000)
    for i in range(500):
        cache.set_many({i.to_bytes(4, "little"): bytes(100 + i % 50)})
        assert cache.size_bytes <= 10_000
    measured = sum(len(k) + len(v) for k, v in cache._entries.items())
    assert measured == cache.size_bytes <= 10_000 and len(cache) < 500
    assert cache.get_many([(499).to_bytes(4, "little")]) and not cache.get_many([(0).to_bytes(4, "little")])


# ---------------------------------------------------------------- the engine and routes
@pytest.fixture(scope="module")
def m3_dir(tmp_path_factory):
    return tiny_bge_m3(tmp_path_factory.mktemp("cache") / "bge-m3-tiny")


def served(path, **env):
    settings = Settings.from_env({"MODEL_PATH": str(path), "DTYPE": "float32", **env})
    engine = started_engine(settings)
    return engine, create_app(settings, engine).test_client()


def test_a_repeat_is_a_hit_with_the_same_bits_and_no_forward_pass(m3_dir):
    engine, client = served(m3_dir)
    body = {"texts": TEXTS, "output_types": ["dense", "sparse", "colbert"]}
    first = client.post("/embed_text", json=body)
    computed = engine.model_stats[engine.resolve(None).name].items
    second = client.post("/embed_text", json=body)
    assert first.headers["X-Cache"] == "miss" and second.headers["X-Cache"] == "hit"
    assert first.get_data() == second.get_data()  # the same bytes: equal bits of every output
    assert engine.model_stats[engine.resolve(None).name].items == computed  # nothing computed the second time
    assert second.get_json()["usage"] == first.get_json()["usage"]
    partial = client.post("/embed_text", json={"texts": [TEXTS[0], "something new"]})
    assert partial.headers["X-Cache"] == "partial"


def test_per_request_options_apply_to_cached_raw_vectors(m3_dir):
    engine, client = served(m3_dir)
    _, uncached = served(m3_dir, CACHE_BYTES="0")
    client.post("/embed_text", json={"texts": TEXTS})  # cached, normalised on the way out
    for options in (
        {"normalize": False},
        {"dimensions": 8},
        {"normalize": False, "dimensions": 4},
        {"encoding_format": "base64"},
    ):
        hit = client.post("/embed_text", json={"texts": TEXTS, **options})
        assert hit.headers["X-Cache"] == "hit"
        assert (
            hit.get_json()["embeddings"]
            == uncached.post("/embed_text", json={"texts": TEXTS, **options}).get_json()["embeddings"]
        )
    assert "X-Cache" not in uncached.post("/embed_text", json={"texts": TEXTS}).headers


def test_cache_false_computes_and_a_corrupt_entry_is_recomputed(m3_dir):
    engine, client = served(m3_dir)
    model = engine.resolve(None)
    expected = client.post("/embed_text", json={"texts": TEXTS[:1]}).get_json()["embeddings"]
    opted_out = client.post("/embed_text", json={"texts": TEXTS[:1], "cache": False})
    assert "X-Cache" not in opted_out.headers and opted_out.get_json()["embeddings"] == expected
    local = engine.cache.local
    for key in list(local._entries):
        local._entries[key] = local._entries[key][:-3]  # truncated values: none may come back as vectors
    again = client.post("/embed_text", json={"texts": TEXTS[:1]})
    assert again.headers["X-Cache"] == "miss" and again.get_json()["embeddings"] == expected
    assert engine.model_stats[model.name].items >= 2


def test_stats_and_metrics_count_the_tiers(m3_dir):
    _, client = served(m3_dir)
    client.post("/embed_text", json={"texts": ["counted once"]})
    client.post("/embed_text", json={"texts": ["counted once"]})
    local = client.get("/stats").get_json()["worker"]["cache"]["local"]
    assert local["hits"] >= 1 and local["misses"] >= 1 and 0 < local["bytes"] <= local["capacity_bytes"]
    metrics = client.get("/metrics").get_data(as_text=True)
    assert 'embedding_cache_lookups_total{model="bge-m3-tiny",result="hit",tier="local"}' in metrics


def test_rerank_scores_and_images_are_cached_too(tmp_path):
    from .test_rerank import DOCUMENTS, QUERY
    from .tiny_models import tiny_cross_encoder

    engine, client = served(tiny_cross_encoder(tmp_path / "ce", "bert"))
    first = client.post("/rerank", json={"query": QUERY, "texts": DOCUMENTS[:3]})
    second = client.post("/rerank", json={"query": QUERY, "texts": DOCUMENTS[:3], "raw_scores": True})
    assert first.headers["X-Cache"] == "miss" and second.headers["X-Cache"] == "hit"
    raw = engine.rerank(engine.resolve(None), [QUERY], DOCUMENTS[:3], raw_scores=True, use_cache=False).scores[0]
    assert all(r["score"] == float(raw[r["index"]]) for r in second.get_json())


# ---------------------------------------------------------------- a real Redis
pytestmark_redis = pytest.mark.skipif(
    not RedisProcess.available(), reason="redis-server comes from Debian (.ci/run installs it)"
)


@pytestmark_redis
def test_redis_shares_between_workers_and_its_failure_is_a_fast_miss():
    with RedisProcess() as redis:
        config = CacheConfig(local_bytes=0, redis_url=redis.url, redis_timeout=0.05, redis_retry_after=0.5)
        writer, reader = TieredCache(config), TieredCache(config)
        writer.set_many({b"k1": b"v1", b"k2": b"v2"})
        deadline = time.monotonic() + 5
        found = {}
        while time.monotonic() < deadline and len(found) < 2:  # writes are queued off the request path
            found, _ = reader.get_many([b"k1", b"k2", b"k3"])
        assert found == {b"k1": b"v1", b"k2": b"v2"} and reader.redis.stats.misses >= 1
        redis.stop()
        started = time.monotonic()
        for _ in range(5):
            assert reader.get_many([b"k1"])[0] == {}
        assert time.monotonic() - started < 2.0  # bounded by REDIS_TIMEOUT, then not even tried
        assert reader.redis.stats.errors == 3 and not reader.redis.available
        redis.start()
        time.sleep(0.6)  # REDIS_RETRY_AFTER, so the tier tries again
        writer.set_many({b"k4": b"v4"})
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and not found.get(b"k4"):
            found, _ = reader.get_many([b"k4"])
        assert found == {b"k4": b"v4"} and reader.redis.available


@pytestmark_redis
def test_a_tier_that_cannot_connect_never_fails_a_request(m3_dir):
    engine, client = served(m3_dir, REDIS_URL="redis://127.0.0.1:1/0", CACHE_BYTES="0")
    for _ in range(5):
        response = client.post("/embed_text", json={"texts": TEXTS})
        assert response.status_code == 200 and response.headers["X-Cache"] == "miss"
    redis = client.get("/stats").get_json()["worker"]["cache"]["redis"]
    assert redis["errors"] >= 3 and redis["available"] is False


def test_redis_url_must_be_a_redis_url():
    from app.config import ConfigError

    with pytest.raises(ConfigError, match="REDIS_URL"):
        Settings.from_env({"REDIS_URL": "localhost:6379"})
    assert "secret" not in str(Settings.from_env({"REDIS_URL": "redis://user:secret@host:6379/0"}).public_dict())
