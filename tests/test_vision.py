"""Text+image models (tiny CLIP, SigLIP, SigLIP 2 built from their configs) through the real loading code,
checked against the model's own get_image_features / get_text_features, and the image routes."""

from __future__ import annotations

import base64
import io
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import torch
from PIL import Image

from app import create_app
from app.config import Settings
from app.media.images import ImageLimits

from .engines import engine_for, started_engine
from .tiny_models import tiny_vision_model

KINDS = ("clip", "siglip", "siglip2")
TEXTS = ["a photo of a cat", "hello", "a much longer caption about a dog running on the beach at sunset"]


def picture(width: int, height: int, seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8))


PICTURES = [picture(50, 70, 1), picture(32, 32, 2), picture(120, 20, 3), picture(7, 5, 4)]


def encode(image: Image.Image, fmt: str = "PNG") -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt)
    return buffer.getvalue()


def b64(image: Image.Image, fmt: str = "PNG") -> str:
    return base64.b64encode(encode(image, fmt)).decode()


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)


@pytest.fixture(scope="module")
def model_dirs(tmp_path_factory):
    root = tmp_path_factory.mktemp("vision")
    return {kind: tiny_vision_model(root / kind, kind) for kind in KINDS}


@pytest.fixture(scope="module")
def engines(model_dirs):
    engines = {}
    for kind, path in model_dirs.items():
        engine = started_engine(Settings.from_env({"MODEL_PATH": str(path), "DTYPE": "float32"}))
        engines[kind] = engine
    return engines


@pytest.fixture(scope="module")
def references(model_dirs):
    from transformers import AutoModel, AutoProcessor

    return {
        kind: (AutoModel.from_pretrained(str(path)).eval(), AutoProcessor.from_pretrained(str(path)))
        for kind, path in model_dirs.items()
    }


def features(output) -> np.ndarray:
    tensor = output if isinstance(output, torch.Tensor) else output.pooler_output
    return tensor.detach().float().numpy()


# ------------------------------------------------------------------ correctness
@pytest.mark.parametrize("kind", KINDS)
def test_image_vectors_equal_the_models_own_image_features(kind, engines, references):
    engine = engines[kind]
    model = engine.resolve(None)
    vectors = engine.embed_images(model, [encode(p) for p in PICTURES], ImageLimits(), normalize=False).vectors
    reference_model, processor = references[kind]
    with torch.no_grad():
        expected = np.concatenate(
            [
                features(reference_model.get_image_features(**processor(images=[p], return_tensors="pt")))
                for p in PICTURES
            ]
        )
    assert vectors.shape == expected.shape == (len(PICTURES), model.dimension)
    assert cosines(vectors, expected).min() >= 0.9999
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), np.linalg.norm(expected, axis=1), rtol=1e-4)


@pytest.mark.parametrize("kind", KINDS)
def test_text_vectors_equal_the_models_own_text_features(kind, engines, references):
    engine = engines[kind]
    model = engine.resolve(None)
    vectors = engine.embed_texts(model, TEXTS, normalize=False).vectors
    reference_model, processor = references[kind]
    # SigLIP's text tower pools the last position and was trained on padded text: its
    # model cards say padding="max_length", which is what the service does for it.
    padding = {} if kind == "clip" else {"padding": "max_length", "max_length": model.max_length}
    with torch.no_grad():
        expected = []
        for text in TEXTS:
            inputs = processor(text=[text], return_tensors="pt", **padding)
            inputs.pop("token_type_ids", None)
            expected.append(features(reference_model.get_text_features(**inputs)))
    assert cosines(vectors, np.concatenate(expected)).min() >= 0.9999


@pytest.mark.parametrize("kind", KINDS)
def test_normalised_vectors_and_batching_do_not_change_results(kind, engines):
    engine = engines[kind]
    model = engine.resolve(None)
    together = engine.embed_images(model, [encode(p) for p in PICTURES], ImageLimits()).vectors
    alone = np.concatenate([engine.embed_images(model, [encode(p)], ImageLimits()).vectors for p in PICTURES])
    np.testing.assert_allclose(np.linalg.norm(together, axis=1), 1.0, rtol=1e-5)
    assert cosines(together, alone).min() >= 0.99999


def test_text_and_images_share_one_space_and_dimension(engines):
    engine = engines["clip"]
    model = engine.resolve(None)
    text = engine.embed_texts(model, ["x"]).vectors
    image = engine.embed_images(model, [encode(PICTURES[0])], ImageLimits()).vectors
    assert text.shape[1] == image.shape[1] == model.dimension == 24
    card = engine.describe_models()[0]
    assert card["modalities"] == ["text", "image"] and card["dimension"] == 24


def test_sync_workers_without_batching_embed_images_the_same(model_dirs, engines):
    engine = engine_for(Settings.from_env({"MODEL_PATH": str(model_dirs["siglip2"]), "DTYPE": "float32"}))
    engine.start_worker(batching=False)
    model = engine.resolve(None)
    images = [encode(p) for p in PICTURES]
    plain = engine.embed_images(model, images, ImageLimits()).vectors
    batched = engines["siglip2"].embed_images(engines["siglip2"].resolve(None), images, ImageLimits()).vectors
    assert cosines(plain, batched).min() >= 0.99999
    assert engine.stats.as_dict()["items"] >= len(images)


# ----------------------------------------------------------------------- routes
@pytest.fixture(scope="module")
def clip_app(model_dirs, engines):
    settings = Settings.from_env(
        {
            "MODEL_PATH": str(model_dirs["clip"]),
            "DTYPE": "float32",
            "MAX_IMAGES_PER_REQUEST": "8",
            "MAX_IMAGE_BYTES": "200000",
            "MAX_IMAGE_PIXELS": "250000",
        }
    )
    return create_app(settings, engines["clip"])


@pytest.fixture
def clip(clip_app):
    return clip_app.test_client()


def vectors_of(response) -> np.ndarray:
    assert response.status_code == 200, response.get_json()
    return np.array(response.get_json()["embeddings"], dtype=np.float32)


def error_of(response, status: int) -> dict:
    assert response.status_code == status, response.get_json()
    return response.get_json()["error"]


def test_embed_image_json_takes_base64_and_data_uris(clip, engines):
    engine = engines["clip"]
    expected = engine.embed_images(engine.resolve(None), [encode(p) for p in PICTURES[:2]], ImageLimits()).vectors
    response = clip.post(
        "/embed_image", json={"images": [b64(PICTURES[0]), "data:image/png;base64," + b64(PICTURES[1])], "cache": False}
    )  # computed: its inference time is measured
    body = response.get_json()
    assert body["model"] == "clip" and body["dimension"] == 24
    assert cosines(vectors_of(response), expected).min() >= 0.99999
    assert body["usage"]["prompt_tokens"] == 2 * 16  # 32x32 pixels in 8x8 patches, per image
    assert response.headers["X-Compute-Tokens"] == "32" and float(response.headers["X-Inference-Time"]) > 0


def test_embed_image_multipart_files_in_order_with_form_options(clip):
    json_vectors = vectors_of(
        clip.post("/embed_image", json={"images": [b64(PICTURES[2]), b64(PICTURES[0])], "normalize": False})
    )
    response = clip.post(
        "/embed_image",
        data={
            "image": [(io.BytesIO(encode(PICTURES[2])), "c.png"), (io.BytesIO(encode(PICTURES[0], "JPEG")), "a.jpg")],
            "normalize": "false",
            "model": "clip",
        },
        content_type="multipart/form-data",
    )
    vectors = vectors_of(response)
    assert vectors.shape == (2, 24)
    assert cosines(vectors[:1], json_vectors[:1]).min() >= 0.99999
    assert cosines(vectors[1:], json_vectors[1:]).min() >= 0.95  # the same picture through JPEG
    assert abs(np.linalg.norm(vectors[0]) - np.linalg.norm(json_vectors[0])) < 1e-4


def test_embed_image_base64_encoding_and_dimensions(clip):
    floats = vectors_of(clip.post("/embed_image", json={"images": b64(PICTURES[0]), "dimensions": 8}))
    body = clip.post(
        "/embed_image", json={"images": b64(PICTURES[0]), "dimensions": 8, "encoding_format": "base64"}
    ).get_json()
    decoded = np.frombuffer(base64.b64decode(body["embeddings"][0]), dtype="<f4")
    assert floats.shape == (1, 8) and body["dimension"] == 8
    np.testing.assert_allclose(decoded, floats[0], rtol=1e-6)


def test_openai_route_with_modality_image_matches_embed_image(clip):
    native = vectors_of(clip.post("/embed_image", json={"images": [b64(PICTURES[1])]}))
    response = clip.post(
        "/v1/embeddings",
        json={"model": "clip", "modality": "image", "input": ["data:image/png;base64," + b64(PICTURES[1])]},
    )
    assert response.status_code == 200, response.get_json()
    data = response.get_json()["data"]
    assert cosines(np.array([data[0]["embedding"]], dtype=np.float32), native).min() >= 0.99999
    texts = clip.post("/v1/embeddings", json={"model": "clip", "input": ["a cat"]}).get_json()["data"]
    assert len(texts[0]["embedding"]) == 24


def test_similarity_is_the_cosine_of_the_embeddings(clip):
    texts = vectors_of(clip.post("/embed_text", json={"texts": TEXTS}))
    images = vectors_of(clip.post("/embed_image", json={"images": [b64(p) for p in PICTURES[:2]]}))
    body = clip.post("/similarity", json={"texts": TEXTS, "images": [b64(p) for p in PICTURES[:2]]}).get_json()
    assert body["shape"] == [3, 2]
    np.testing.assert_allclose(np.array(body["similarity_matrix"]), texts @ images.T, atol=1e-5)
    same = clip.post("/similarity", json={"texts": TEXTS[:2]}).get_json()
    assert same["shape"] == [2, 2]
    np.testing.assert_allclose(np.diag(same["similarity_matrix"]), 1.0, atol=1e-5)
    pictures = clip.post("/similarity", json={"images": [b64(p) for p in PICTURES[:3]]}).get_json()
    assert pictures["shape"] == [3, 3]


def test_text_only_model_has_no_vision_tower(client):
    image = b64(PICTURES[0])
    for path, body in (
        ("/embed_image", {"images": [image]}),
        ("/v1/embeddings", {"input": [image], "modality": "image"}),
        ("/similarity", {"texts": ["a"], "images": [image]}),
    ):
        error = error_of(client.post(path, json=body), 400)
        assert "no vision tower" in error["message"] and error["code"] == "unsupported_modality", path
    assert client.post("/similarity", json={"texts": ["a", "b"]}).status_code == 200


# ----------------------------------------------------------------------- refusals
def test_a_corrupt_image_is_a_400_that_names_its_index(clip):
    truncated = encode(PICTURES[0])[:60]
    for bad, code in (
        (base64.b64encode(b"not an image").decode(), "invalid_image"),
        (base64.b64encode(truncated).decode(), "invalid_image"),
        ("%%% not base64 %%%", "invalid_request"),
    ):
        error = error_of(clip.post("/embed_image", json={"images": [b64(PICTURES[0]), b64(PICTURES[1]), bad]}), 400)
        assert error["param"] == "images[2]" and error["code"] == code and "images[2]" in error["message"]


def test_size_pixel_format_and_count_limits(clip):
    big = base64.b64encode(b"\x89PNG" + bytes(300_000)).decode()
    error = error_of(clip.post("/embed_image", json={"images": [b64(PICTURES[0]), big]}), 413)
    assert error["param"] == "images[1]" and "MAX_IMAGE_BYTES" in error["message"]
    upload = {"image": [(io.BytesIO(encode(PICTURES[0])), "ok.png"), (io.BytesIO(bytes(300_000)), "big.png")]}
    error = error_of(clip.post("/embed_image", data=upload, content_type="multipart/form-data"), 413)
    assert error["param"] == "images[1]"
    wide = Image.new("L", (1000, 1000))
    error = error_of(clip.post("/embed_image", json={"images": [b64(wide)]}), 400)
    assert error["code"] == "image_too_large" and "1000x1000" in error["message"]
    error = error_of(clip.post("/embed_image", json={"images": [b64(PICTURES[0], "TIFF")]}), 400)
    assert error["code"] == "unsupported_image_format" and "TIFF" in error["message"]
    error = error_of(clip.post("/embed_image", json={"images": [b64(PICTURES[0])] * 9}), 400)
    assert error["code"] == "too_many_items" and "MAX_IMAGES_PER_REQUEST" in error["message"]


def test_request_shape_errors(clip):
    assert error_of(clip.post("/embed_image", json={"images": []}), 400)["param"] == "images"
    assert error_of(clip.post("/embed_image", json={"images": [b64(PICTURES[0]), 3]}), 400)["param"] == "images[1]"
    assert error_of(clip.post("/embed_image", json={"images": ["x"], "normalise": True}), 400)["param"] == "normalise"
    error = error_of(clip.post("/embed_image", data="x", content_type="text/plain"), 415)
    assert "multipart/form-data" in error["message"]
    error = error_of(clip.post("/embed_image", data={"model": "clip"}, content_type="multipart/form-data"), 400)
    assert "no files" in error["message"]
    files = {"image": (io.BytesIO(encode(PICTURES[0])), "a.png"), "colour": "red"}
    assert error_of(clip.post("/embed_image", data=files, content_type="multipart/form-data"), 400)["param"] == "colour"
    error = error_of(clip.post("/v1/embeddings", json={"input": [[1, 2, 3]], "modality": "image"}), 400)
    assert error["param"] == "input"
    assert error_of(clip.post("/similarity", json={}), 400)["message"].startswith("send texts, images, audio")


def test_urls_are_refused_while_fetching_is_off(clip):
    error = error_of(clip.post("/embed_image", json={"images": ["https://example.com/cat.png"]}), 400)
    assert error["code"] == "image_url_fetch_disabled" and "IMAGE_URL_FETCH" in error["message"]


def test_a_bad_image_fails_only_its_own_request_in_a_shared_batch(clip_app, engines):
    """Concurrent requests share batches; the one with a corrupt image gets its 400, the rest their vectors."""
    engine = engines["clip"]
    expected = engine.embed_images(engine.resolve(None), [encode(p) for p in PICTURES], ImageLimits()).vectors
    bad = base64.b64encode(encode(PICTURES[0])[:80]).decode()
    batches_before = engine.stats.as_dict()["count"]

    def call(i):
        images = [b64(PICTURES[i % 4]), bad] if i == 3 else [b64(PICTURES[i % 4])]
        return i, clip_app.test_client().post("/embed_image", json={"images": images, "cache": False})

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(call, range(16)))
    for i, response in results:
        if i == 3:
            assert error_of(response, 400)["param"] == "images[1]"
        else:
            assert cosines(vectors_of(response), expected[i % 4 : i % 4 + 1]).min() >= 0.99999
    assert engine.stats.as_dict()["count"] > batches_before


def test_image_inputs_are_counted_by_modality(clip):
    served = clip.get("/v1/models").get_json()["data"][0]["id"]

    def count() -> float:
        text = clip.get("/metrics").get_data(as_text=True)
        for line in text.splitlines():
            if line.startswith(f'embedding_inputs_total{{modality="image",model="{served}"}}'):
                return float(line.split()[-1])
        return 0.0

    before = count()
    vectors_of(clip.post("/embed_image", json={"images": [b64(PICTURES[0])] * 3}))
    assert count() == before + 3


def test_openapi_documents_the_image_routes(clip):
    from openapi_spec_validator import validate

    document = clip.get("/openapi.json").get_json()
    validate(document)
    body = document["paths"]["/embed_image"]["post"]["requestBody"]["content"]
    assert set(body) == {"application/json", "multipart/form-data"}
    assert "/similarity" in document["paths"]


# ------------------------------------------------------- real gunicorn, real clients
@pytest.mark.slow
def test_gunicorn_workers_serve_images_to_the_openai_client_curl_style_uploads_and_urls(model_dirs, tmp_path):
    import requests
    from openai import OpenAI

    from .gunicorn_process import GunicornProcess
    from .test_image_fetch import PNG, serve

    image_server, image_url = serve("127.0.0.1")
    env = {
        "MODEL_PATH": str(model_dirs["siglip2"]),
        "DTYPE": "float32",
        "IMAGE_URL_FETCH": "true",
        "ALLOWED_IMAGE_NETWORKS": "127.0.0.1/32",
    }
    try:
        with GunicornProcess(env, workers=2, log_path=tmp_path / "server.log") as server:
            assert server.model_loads() == [server.proc.pid]
            client = OpenAI(base_url=server.url + "/v1", api_key="unused", max_retries=0)
            data_uri = "data:image/png;base64," + base64.b64encode(PNG).decode()
            result = client.embeddings.create(
                model="siglip2", input=[data_uri, f"{image_url}/cat.png"], extra_body={"modality": "image"}
            )
            vectors = np.array([d.embedding for d in result.data], dtype=np.float32)
            assert vectors.shape == (2, 32) and cosines(vectors[:1], vectors[1:]).min() >= 0.99999
            upload = requests.post(
                server.url + "/embed_image", files=[("image", ("cat.png", PNG, "image/png"))], timeout=60
            )
            assert upload.status_code == 200
            assert cosines(np.array(upload.json()["embeddings"], dtype=np.float32), vectors[:1]).min() >= 0.99999
            corrupt = base64.b64encode(PNG[:70]).decode()
            for session in server.pinned_sessions(2).values():  # each worker decodes in its thread pool
                broken = session.post(server.url + "/embed_image", json={"images": [data_uri, corrupt]}, timeout=60)
                assert broken.status_code == 400 and broken.json()["error"]["param"] == "images[1]"
                assert (
                    session.post(server.url + "/embed_image", json={"images": [data_uri]}, timeout=60).status_code
                    == 200
                )
            refused = requests.post(
                server.url + "/embed_image",
                json={"images": [f"{image_url.replace('127.0.0.1', '127.0.0.2')}/cat.png"]},
                timeout=60,
            )
            assert refused.status_code == 400 and refused.json()["error"]["code"] == "image_url_refused"
            similarity = requests.post(
                server.url + "/similarity", json={"texts": TEXTS, "images": [data_uri]}, timeout=60
            ).json()
            assert similarity["shape"] == [3, 1]
    finally:
        image_server.shutdown()


def test_thin_strips_cannot_blow_up_a_shortest_edge_processor(engines):
    """CLIP's processor scales the short side up first: unguarded, 1 x 100000 pixels became 32 x 3,200,000
    here (over a GiB as float32), 224 x 22,400,000 for ViT-B/32."""
    import tracemalloc

    engine = engines["clip"]
    model = engine.resolve(None)
    strips = [encode(Image.new("RGB", size, (90, 160, 30))) for size in ((1, 100_000), (100_000, 1), (3, 50_000))]
    tracemalloc.start()  # numpy's arrays, the processor's, are traced
    try:
        for strip in strips:
            assert engine.embed_images(model, [strip], ImageLimits(), use_cache=False).vectors.shape == (1, 24)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 64 * 2**20


def test_an_elongated_image_embeds_as_its_processor_would(engines, references):
    """Cutting the far ends of a 10:1 image before the processor's centre crop changes nothing that matters."""
    engine = engines["clip"]
    model = engine.resolve(None)
    picture = Image.new("RGB", (400, 40), (200, 30, 30))
    for x in range(0, 400, 9):
        for y in range(40):
            picture.putpixel((x, y), (20, 20, 220))
    ours = engine.embed_images(model, [encode(picture)], ImageLimits(), normalize=False).vectors
    reference, processor = references["clip"]
    with torch.no_grad():
        expected = features(reference.get_image_features(**processor(images=[picture], return_tensors="pt")))
    assert cosines(ours, expected).min() >= 0.999


def test_cohere_v2_embed_images_and_image_precision(clip, clip_app):
    """Cohere's `images` and `inputs` image parts, and `precision` on /embed_image, on a text+image model."""
    uris = ["data:image/png;base64," + b64(picture) for picture in PICTURES[:2]]
    native = vectors_of(clip.post("/embed_image", json={"images": uris}))
    body = clip.post(
        "/v2/embed",
        json={"model": "clip", "images": uris, "input_type": "image", "embedding_types": ["float", "ubinary"]},
    ).get_json()
    assert cosines(np.array(body["embeddings"]["float"], dtype=np.float32), native).min() >= 0.99999
    packed = clip.post("/embed_image", json={"images": uris, "precision": "ubinary"}).get_json()
    assert body["embeddings"]["ubinary"] == packed["embeddings"] and packed["precision"] == "ubinary"
    assert np.array(packed["embeddings"]).shape == (2, 3)  # 24 dimensions, 8 to a byte
    parts = [{"content": [{"type": "image_url", "image_url": {"url": uri}}]} for uri in uris]
    inputs = clip.post("/v2/embed", json={"model": "clip", "inputs": parts}).get_json()
    assert cosines(np.array(inputs["embeddings"]["float"], dtype=np.float32), native).min() >= 0.99999
    int8 = clip.post("/embed_image", json={"images": uris, "precision": "int8"}).get_json()["embeddings"]
    assert np.array(int8).dtype.kind == "i" and np.abs(int8).max() <= 128
