"""Two models whose weight files differ only in the middle never share cache entries (#32, finding 1).

The altered copy of the default model has one middle layer's FFN weight scaled x3: the same file sizes, the
same first and last MiB of every file, the same configs and tokenizer. The fingerprint once read only those,
and the altered model answered the original's cached vectors.
"""

from __future__ import annotations

import json
import shutil
import struct
import time

import numpy as np
import pytest
import requests

from app.config import default_model_path
from app.engine.cache import model_fingerprint

from .gunicorn_process import GunicornProcess
from .redis_process import RedisProcess

MIB = 1 << 20
TEXTS = ["a fine-tune that keeps the file layout", "must never answer", "another model's cached vectors"]


def altered_copy(source, target, tensor="encoder.layer.3.intermediate.dense.weight", factor=3.0):
    """A copy of `source` with `tensor` scaled in place in model.safetensors: same header, same size."""
    shutil.copytree(source, target)
    weights = target / "model.safetensors"
    data = bytearray(weights.read_bytes())
    (header_length,) = struct.unpack("<Q", data[:8])
    entry = json.loads(data[8 : 8 + header_length])[tensor]
    assert entry["dtype"] == "F32"
    start, end = (8 + header_length + offset for offset in entry["data_offsets"])
    values = np.frombuffer(bytes(data[start:end]), dtype="<f4") * np.float32(factor)
    data[start:end] = values.astype("<f4").tobytes()
    weights.write_bytes(bytes(data))
    return target, (start, end)


@pytest.fixture(scope="module")
def two_models(tmp_path_factory):
    root = tmp_path_factory.mktemp("identity")
    original = root / "original"
    shutil.copytree(default_model_path(), original)
    altered, changed = altered_copy(original, root / "altered")
    return original, altered, changed


def test_the_altered_copy_differs_only_where_the_old_fingerprint_did_not_read(two_models):
    original, altered, (start, end) = two_models
    a, b = (path.joinpath("model.safetensors").read_bytes() for path in (original, altered))
    assert len(a) == len(b) and a != b
    assert a[:MIB] == b[:MIB] and a[-MIB:] == b[-MIB:] and MIB <= start < end <= len(a) - MIB
    for other in original.rglob("*"):
        if other.is_file() and other.name != "model.safetensors":
            assert other.read_bytes() == (altered / other.relative_to(original)).read_bytes()
    assert model_fingerprint(original) != model_fingerprint(altered)


@pytest.fixture(scope="module")
def redis():
    if not RedisProcess.available():
        pytest.skip("redis-server comes from Debian (.ci/run installs it)")
    with RedisProcess() as process:
        yield process


@pytest.fixture(scope="module")
def instances(two_models, redis, tmp_path_factory):
    original, altered, _ = two_models
    logs = tmp_path_factory.mktemp("identity-logs")
    # CACHE_BYTES=0: no local tier, so a hit is a Redis hit, and once one instance has a hit the entry is there
    # for the other.
    shared = {"DTYPE": "float32", "REDIS_URL": redis.url, "CACHE_BYTES": "0"}
    # One instance serves both; the other serves only the altered copy, under the original's name.
    a = GunicornProcess({**shared, "MODELS": f"original={original},altered={altered}"}, workers=2, log_path=logs / "a")
    b = GunicornProcess(
        {**shared, "MODEL_PATH": str(altered), "MODEL_NAME": "original"}, workers=2, log_path=logs / "b"
    )
    with a, b:
        yield a, b


def embed(server, model, texts, cache=True):
    body = {"texts": texts, "model": model, "cache": cache}
    response = requests.post(server.url + "/embed_text", json=body, timeout=60)
    assert response.status_code == 200, response.text
    return np.asarray(response.json()["embeddings"]), response.headers.get("X-Cache")


def until_hit(server, model, texts, timeout=30.0):
    """Redis is written off the request path: ask until the answer is a hit."""
    deadline = time.monotonic() + timeout
    while True:
        vectors, state = embed(server, model, texts)
        if state == "hit" or time.monotonic() > deadline:
            return vectors, state
        time.sleep(0.05)


def assert_same(got, expected):
    assert got.shape == expected.shape
    assert (np.sum(got * expected, axis=1) >= 0.9999).all()


@pytest.mark.slow
def test_two_models_in_one_instance_keep_their_own_vectors(instances):
    a, _ = instances
    texts = [text + " (one instance)" for text in TEXTS]
    original_fresh, _ = embed(a, "original", texts, cache=False)
    altered_fresh, _ = embed(a, "altered", texts, cache=False)
    assert np.sum(original_fresh * altered_fresh, axis=1).min() < 0.99  # the alteration shows in the vectors
    _, state = embed(a, "original", texts)
    assert state == "miss"
    cached, state = until_hit(a, "original", texts)
    assert state == "hit"
    assert_same(cached, original_fresh)
    altered, state = embed(a, "altered", texts)
    assert state == "miss"  # the original's entries are not the altered model's
    assert_same(altered, altered_fresh)
    altered, state = until_hit(a, "altered", texts)
    assert state == "hit"
    assert_same(altered, altered_fresh)


@pytest.mark.slow
def test_two_instances_on_one_redis_share_only_what_is_the_same_model(instances):
    a, b = instances
    texts = [text + " (two instances)" for text in TEXTS]
    b_fresh, _ = embed(b, "original", texts, cache=False)  # b's "original" is the altered copy
    a_original, _ = until_hit(a, "original", texts)
    assert np.sum(a_original * b_fresh, axis=1).min() < 0.99
    vectors, state = embed(b, "original", texts)
    assert state == "miss"  # the same name on another instance, other weights: not a's entries
    assert_same(vectors, b_fresh)
    # The same content under another name and path is the same model: b answers what a computed for it.
    shared_texts = [text + " (shared)" for text in TEXTS]
    a_altered, _ = until_hit(a, "altered", shared_texts)
    vectors, state = embed(b, "original", shared_texts)
    assert state == "hit"
    assert_same(vectors, a_altered)
