"""sentence-transformers 6 multimodal directories (#26): a tiny CLIP saved by sentence-transformers 6 (one
`Transformer` with a text and an image modality, with and without a `Normalize` and prompts) equals
`SentenceTransformer.encode` / `encode_query` on texts and images in float32 (cosine >= 0.9999) and bfloat16
(>= 0.999); a text past CLIP's 77 positions is cut there (sentence-transformers 6.3 itself fails on it); a
SigLIP saved so is padded to its full context as its model card says, so a text embeds the same beside a longer
one (sentence-transformers pads to the batch's longest); and the routes serve them."""

from __future__ import annotations

import base64
import io

import numpy as np
import pytest
import torch
from PIL import Image

from app.engine.capabilities import EMBED_IMAGE, EMBED_TEXT
from app.engine.loader import load_model
from app.engine.requests import EmbedRequest

from .engines import serving_fixtures
from .tiny_models import tiny_st6_multimodal

TEXTS = ["a photo of a cat", "two dogs playing in the snow", "x"]
IMAGES = [
    Image.fromarray((np.random.default_rng(i).random((40 + 9 * i, 30 + 5 * i, 3)) * 255).astype("uint8"))
    for i in range(3)
]


@pytest.fixture(scope="module")
def directories(tmp_path_factory):
    root = tmp_path_factory.mktemp("st6-multimodal")
    return {
        "clip": tiny_st6_multimodal(root / "clip"),
        "clip-normalized": tiny_st6_multimodal(
            root / "clip-normalized", normalize=True, prompts={"query": "a photo of "}
        ),
        "siglip": tiny_st6_multimodal(root / "siglip", "siglip"),
    }


settings, engine, client = serving_fixtures()


def reference(path, dtype=torch.float32):
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(path), device="cpu", model_kwargs={"dtype": dtype})


def cosines(a, b) -> np.ndarray:
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)


def png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def embed_images(engine, model, images):
    from app.media.images import ImageLimits

    return engine.embed_images(
        model, [png(i) for i in images], ImageLimits(), EmbedRequest(field="images", use_cache=False)
    )


@pytest.mark.parametrize("name", ["clip", "clip-normalized"])
def test_equal_to_sentence_transformers(engine, directories, name):
    model = engine.models[name]
    assert model.family == "sentence-transformers-multimodal" and model.capabilities == {EMBED_TEXT, EMBED_IMAGE}
    encoder = reference(directories[name])
    got = engine.embed_texts(model, TEXTS, normalize=False, use_cache=False).vectors
    assert cosines(got, encoder.encode(TEXTS)).min() >= 0.9999
    got = engine.embed_texts(model, TEXTS, is_query=True, normalize=False, use_cache=False).vectors
    assert cosines(got, encoder.encode_query(TEXTS)).min() >= 0.9999
    assert cosines(embed_images(engine, model, IMAGES).vectors, encoder.encode(IMAGES)).min() >= 0.9999


def test_the_prompt_is_applied_where_sentence_transformers_applies_it(engine):
    model = engine.models["clip-normalized"]
    plain = engine.embed_texts(model, TEXTS[:1], use_cache=False).vectors
    query = engine.embed_texts(model, TEXTS[:1], is_query=True, use_cache=False).vectors
    written = engine.embed_texts(model, ["a photo of " + TEXTS[0]], use_cache=False).vectors
    np.testing.assert_allclose(query, written, atol=1e-6)
    assert cosines(plain, query)[0] < 0.9999


def test_bfloat16_keeps_the_vectors(directories):
    model = load_model(directories["clip"], "clip", torch.bfloat16)
    encoder = reference(directories["clip"])
    texts = model.forward("text", model.prepare_texts(TEXTS).rows, frozenset({"dense"})).dense
    assert cosines(texts, encoder.encode(TEXTS)).min() >= 0.999
    rows = [model.prepare_image(image, f"images[{i}]") for i, image in enumerate(IMAGES)]
    assert cosines(model.forward("image", rows, frozenset({"dense"})).dense, encoder.encode(IMAGES)).min() >= 0.999


def test_a_text_past_the_positions_is_cut_there(engine, directories):
    model = engine.models["clip"]
    long = " ".join(["words"] * 200)
    with pytest.raises(ValueError):  # sentence-transformers 6.3 does not cut it
        reference(directories["clip"]).encode([long])
    got = engine.embed_texts(model, [long], use_cache=False).vectors
    tokenizer = model.tokenizer
    cut = tokenizer.decode(tokenizer(long, truncation=True, max_length=77)["input_ids"], skip_special_tokens=True)
    assert cosines(got, engine.embed_texts(model, [cut], use_cache=False).vectors)[0] >= 0.9999


def test_siglip_is_padded_to_its_context_as_its_model_card_says(engine, directories):
    model = engine.models["siglip"]
    alone = engine.embed_texts(model, ["a cat"], use_cache=False).vectors
    beside = engine.embed_texts(model, ["a cat", " ".join(["a much longer text"] * 5)], use_cache=False).vectors[:1]
    np.testing.assert_allclose(alone, beside, atol=1e-6)
    card = load_model(directories["siglip"].parent / "siglip-source", "card", torch.float32)
    assert card.family == "dual-encoder"
    expected = card.forward("text", card.prepare_texts(["a cat"]).rows, frozenset({"dense"})).dense
    assert cosines(alone, expected)[0] >= 0.9999


def test_the_routes_serve_it(client, directories):
    encoder = reference(directories["clip"])
    images = [base64.b64encode(png(image)).decode() for image in IMAGES]
    answer = client.post("/v1/embeddings", json={"input": TEXTS, "model": "clip"}).get_json()
    texts = np.array([row["embedding"] for row in answer["data"]])
    assert cosines(texts, encoder.encode(TEXTS)).min() >= 0.9999
    answer = client.post("/embed_image", json={"images": images, "model": "clip"}).get_json()
    assert cosines(answer["embeddings"], encoder.encode(IMAGES)).min() >= 0.9999
    matrix = client.post("/similarity", json={"texts": TEXTS, "images": images, "model": "clip"}).get_json()
    t, i = encoder.encode(TEXTS), encoder.encode(IMAGES)
    expected = (t / np.linalg.norm(t, axis=1, keepdims=True)) @ (i / np.linalg.norm(i, axis=1, keepdims=True)).T
    np.testing.assert_allclose(np.array(matrix["similarity_matrix"]), expected, atol=1e-4)
    cards = {card["id"]: card for card in client.get("/v1/models").get_json()["data"]}
    assert cards["clip"]["family"] == "sentence-transformers-multimodal" and cards["clip"]["modalities"] == [
        "text",
        "image",
    ]
