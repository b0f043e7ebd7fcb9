"""GME (Qwen2-VL) vision-language embeddings: texts, images and both fused, against a reference that follows
gme_inference.py step by step with transformers directly, on a tiny Qwen2-VL built from its config."""

from __future__ import annotations

import base64
import io
import math

import numpy as np
import pytest
import torch
from PIL import Image

from app import create_app
from app.config import Settings
from app.engine import Lane
from app.engine.rows import Prepared, forward_planned
from app.media.images import ImageLimits

from .engines import engine_for, started_engine
from .test_engine import cosines
from .tiny_models import tiny_qwen2_vl

MIN_TOKENS, MAX_TOKENS = 4, 16  # VLM_MIN/MAX_IMAGE_TOKENS for the tests: small images, small sequences
ENV = {"DTYPE": "float32", "VLM_MIN_IMAGE_TOKENS": str(MIN_TOKENS), "VLM_MAX_IMAGE_TOKENS": str(MAX_TOKENS)}
TEXTS = ["What kind of car is this?", "a red square", "The Tesla Cybertruck is a battery electric pickup truck. " * 3]
DEFAULT = "You are a helpful assistant."


def picture(size, color, stripes=True) -> Image.Image:
    image = Image.new("RGB", size, color)
    if stripes:  # some structure, so different images embed differently
        pixels = image.load()
        for x in range(0, size[0], 7):
            for y in range(size[1]):
                pixels[x, y] = (255 - color[0], 255 - color[1], 255 - color[2])
    return image


PICTURES = [
    picture((40, 60), (200, 30, 30)),
    picture((120, 50), (30, 30, 200)),
    picture((33, 33), (20, 180, 20)),
    picture((300, 9), (250, 250, 0)),
]


def png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


# --------------------------------------------------------------- the reference
def fetch_resize(image: Image.Image) -> Image.Image:
    """gme_inference.fetch_image: RGB, then smart_resize with factor 28 (a copy of qwen_vl_utils' numbers)."""
    factor, min_pixels, max_pixels, max_ratio = 28, 4 * 28 * 28, 16384 * 28 * 28, 200
    image = image.convert("RGB")
    width, height = image.size
    h_bar = max(factor, round(height / factor) * factor)
    w_bar = max(factor, round(width / factor) * factor)
    if h_bar * w_bar > max_pixels:
        beta = math.sqrt((height * width) / max_pixels)
        h_bar, w_bar = math.floor(height / beta / factor) * factor, math.floor(width / beta / factor) * factor
    elif h_bar * w_bar < min_pixels:
        beta = math.sqrt(min_pixels / (height * width))
        h_bar, w_bar = math.ceil(height * beta / factor) * factor, math.ceil(width * beta / factor) * factor
    if max(h_bar, w_bar) / min(h_bar, w_bar) > max_ratio:
        if h_bar > w_bar:
            h_bar = w_bar * max_ratio
        else:
            w_bar = h_bar * max_ratio
    return image.resize((w_bar, h_bar))


class GmeReference:
    """GmeQwen2VL.embed and .forward, with transformers 5's names: `model.model.language_model` is what the
    pinned transformers called `model.model`. Qwen2VLProcessor's text expansion (one <|image_pad|> per merged
    patch) is done by hand, as the processor object needs torchvision here."""

    def __init__(self, directory, max_length: int = 1800, min_tokens: int = MIN_TOKENS, max_tokens: int = MAX_TOKENS):
        from transformers import AutoImageProcessor, AutoModelForImageTextToText, AutoTokenizer

        self.model = AutoModelForImageTextToText.from_pretrained(directory, dtype=torch.float32).eval()
        self.tokenizer = AutoTokenizer.from_pretrained(directory)
        self.tokenizer.padding_side = "right"
        self.images = AutoImageProcessor.from_pretrained(
            directory, min_pixels=min_tokens * 28 * 28, max_pixels=max_tokens * 28 * 28
        )
        self.max_length = max_length

    def embed(self, texts, images, is_query=True, instruction=None) -> np.ndarray:
        input_texts, input_images = [], []
        for t, i in zip(texts, images):
            if not is_query or instruction is None:
                instruction = DEFAULT
            input_str = ""
            if i is None:
                input_images = None
            else:
                input_str += "<|vision_start|><|image_pad|><|vision_end|>"
                input_images.append(fetch_resize(i))
            if t is not None:
                input_str += t
            input_texts.append(
                f"<|im_start|>system\n{instruction}<|im_end|>\n<|im_start|>user\n{input_str}"
                "<|im_end|>\n<|im_start|>assistant\n<|endoftext|>"
            )
        extra = {}
        if input_images:
            extra = dict(self.images(images=input_images, return_tensors="pt"))
            merge = self.images.merge_size**2
            counts = iter((extra["image_grid_thw"].prod(-1) // merge).tolist())
            input_texts = [text.replace("<|image_pad|>", "<|image_pad|>" * next(counts)) for text in input_texts]
        inputs = self.tokenizer(
            input_texts, padding=True, truncation=True, max_length=self.max_length, return_tensors="pt"
        )
        with torch.no_grad():
            return self.forward(**inputs, **extra).numpy()

    def forward(self, input_ids, attention_mask, pixel_values=None, image_grid_thw=None):
        base = self.model
        inputs_embeds = base.model.language_model.embed_tokens(input_ids)
        if pixel_values is not None:
            image_embeds = base.model.visual(pixel_values, grid_thw=image_grid_thw).pooler_output
            image_mask = input_ids == base.config.image_token_id
            inputs_embeds[image_mask] = image_embeds
        outputs = base.model.language_model(
            input_ids=None, position_ids=None, attention_mask=attention_mask, inputs_embeds=inputs_embeds
        )
        sequence_lengths = attention_mask.sum(dim=1) - 1
        embeddings = outputs.last_hidden_state[torch.arange(len(input_ids)), sequence_lengths]
        return torch.nn.functional.normalize(embeddings, p=2, dim=1)


@pytest.fixture(scope="module")
def gme_dir(tmp_path_factory):
    return tiny_qwen2_vl(tmp_path_factory.mktemp("gme") / "gme-Qwen2-VL-tiny")


@pytest.fixture(scope="module")
def reference(gme_dir):
    return GmeReference(gme_dir)


@pytest.fixture(scope="module")
def engine(gme_dir):
    engine = started_engine(Settings.from_env({"MODEL_PATH": str(gme_dir), **ENV}))
    return engine


@pytest.fixture(scope="module")
def client(engine, gme_dir):
    return create_app(Settings.from_env({"MODEL_PATH": str(gme_dir), **ENV}), engine).test_client()


# ------------------------------------------------------------------ fidelity
def test_recognised_as_gme(engine):
    card = engine.describe_models()[0]
    assert card["family"] == "gme" and card["capabilities"] == ["embed:image", "embed:interleaved", "embed:text"]
    assert card["dimension"] == 32 and card["max_input_tokens"] == 1800


@pytest.mark.parametrize(
    "instruction,is_query",
    [
        (None, True),
        ("Find an image that matches the given text.", True),
        ("Find an image that matches the given text.", False),
    ],
)
def test_texts_images_and_fused_equal_the_recipe(engine, reference, instruction, is_query):
    model = engine.resolve(None)
    options = {"instruction": instruction, "is_query": is_query}
    texts = engine.embed_texts(model, TEXTS, **options).vectors
    assert cosines(texts, reference.embed(TEXTS, [None] * 3, **options)).min() >= 0.9999
    images = engine.embed_images(model, [png(p) for p in PICTURES], ImageLimits(), **options).vectors
    assert cosines(images, reference.embed([None] * 4, PICTURES, **options)).min() >= 0.9999
    fused = engine.embed_inputs(model, TEXTS, [png(p) for p in PICTURES[:3]], ImageLimits(), **options).vectors
    assert cosines(fused, reference.embed(TEXTS, PICTURES[:3], **options)).min() >= 0.9999
    # Three kinds of input, three different vectors: the test could tell a mix-up.
    assert cosines(texts, images[:3]).max() < 0.999 and cosines(fused, images[:3]).max() < 0.999


def test_one_pass_mixes_texts_images_and_fused_inputs_of_different_sizes(engine, reference):
    model = engine.resolve(None)
    rows = (
        model.prepare_texts(TEXTS[:2]).rows
        + [model.prepare_image(PICTURES[i], f"images[{i}]") for i in (1, 3)]
        + [model.prepare_fused(TEXTS[2], PICTURES[0], "fused")]
    )
    results = forward_planned(Lane(model, "multimodal"), Prepared(rows=rows), batch_size=32).dense
    assert len({len(row) for row in rows}) == 5  # five lengths, padded into one pass
    expected = np.concatenate(
        [
            reference.embed(TEXTS[:2], [None, None]),
            reference.embed([None, None], [PICTURES[1], PICTURES[3]]),
            reference.embed([TEXTS[2]], [PICTURES[0]]),
        ]
    )
    assert cosines(results, expected).min() >= 0.9999


def test_instruction_applies_to_queries_only(engine):
    model = engine.resolve(None)
    plain = engine.embed_texts(model, TEXTS[:1]).vectors
    query = engine.embed_texts(model, TEXTS[:1], instruction="Find an image that matches the given text.").vectors
    document = engine.embed_texts(
        model, TEXTS[:1], instruction="Find an image that matches the given text.", is_query=False
    ).vectors
    assert cosines(plain, query).max() < 0.9999 and np.allclose(plain, document, atol=1e-6)


def test_thin_images_are_bounded_before_the_processor(engine):
    """GME's resize caps the aspect at 200:1 before the processor sees the image, so a 1-pixel strip
    becomes at most a 200-token one, however long it is."""
    model = engine.resolve(None)
    for size in ((1, 20000), (20000, 1), (5, 3000)):
        row = model.prepare_image(Image.new("RGB", size, (9, 9, 9)), "images[0]")
        assert len(row) <= 200 + 40 and row.image["pixel_values"].nbytes < 1 << 20


# -------------------------------------------------------------------- routes
def b64(image: Image.Image) -> str:
    return base64.b64encode(png(image)).decode()


def test_the_earlier_servers_routes(client, reference):
    body = client.post("/embeddings/text", json={"texts": TEXTS, "instruction": "Find an image."}).get_json()
    assert set(body) == {"embeddings", "dimension"} and body["dimension"] == 32
    assert (
        cosines(np.array(body["embeddings"]), reference.embed(TEXTS, [None] * 3, True, "Find an image.")).min()
        >= 0.9999
    )
    body = client.post(
        "/embeddings/image", json={"images": [b64(p) for p in PICTURES[:2]], "is_query": False}
    ).get_json()
    assert cosines(np.array(body["embeddings"]), reference.embed([None] * 2, PICTURES[:2], False)).min() >= 0.9999
    body = client.post("/embeddings/fused", json={"texts": TEXTS[:2], "images": [b64(p) for p in PICTURES[:2]]})
    assert cosines(np.array(body.get_json()["embeddings"]), reference.embed(TEXTS[:2], PICTURES[:2])).min() >= 0.9999


def test_native_and_openai_routes(client, reference):
    expected_text = reference.embed(TEXTS[:1], [None], True, "Find an image.")
    body = client.post("/embed_text", json={"texts": TEXTS[:1], "instruction": "Find an image."}).get_json()
    assert cosines(np.array(body["embeddings"]), expected_text).min() >= 0.9999
    body = client.post("/embed_image", json={"images": [b64(PICTURES[0])], "instruction": "Find an image."})
    assert (
        cosines(
            np.array(body.get_json()["embeddings"]), reference.embed([None], PICTURES[:1], True, "Find an image.")
        ).min()
        >= 0.9999
    )
    uri = "data:image/png;base64," + b64(PICTURES[1])
    fused_part = [{"type": "image_url", "image_url": {"url": uri}}, {"type": "text", "text": TEXTS[1]}]
    body = client.post("/v1/embeddings", json={"input": [fused_part, TEXTS[0]]}).get_json()
    vectors = np.array([d["embedding"] for d in body["data"]])
    assert cosines(vectors[:1], reference.embed(TEXTS[1:2], PICTURES[1:2])).min() >= 0.9999
    assert cosines(vectors[1:], reference.embed(TEXTS[:1], [None])).min() >= 0.9999
    chat = [{"role": "system", "content": "Find an image."}, {"role": "user", "content": fused_part}]
    body = client.post("/v1/embeddings", json={"messages": chat}).get_json()
    assert len(body["data"]) == 1
    assert (
        cosines(
            np.array([body["data"][0]["embedding"]]), reference.embed(TEXTS[1:2], PICTURES[1:2], True, "Find an image.")
        ).min()
        >= 0.9999
    )
    similarity = client.post("/similarity", json={"texts": TEXTS[:2], "images": [b64(p) for p in PICTURES[:3]]})
    assert similarity.get_json()["shape"] == [2, 3]


@pytest.mark.parametrize(
    "route,body,param",
    [
        ("/embeddings/fused", {"texts": ["a", "b"], "images": ["x"]}, "images"),
        ("/embeddings/image", {"images": ["bm90IGFuIGltYWdl"]}, "images[0]"),
        ("/embeddings/image", {"images": []}, "images"),
        ("/embeddings/text", {"texts": [""]}, "texts[0]"),
        ("/embed_text", {"texts": "x", "prompt_name": "query"}, "prompt_name"),
        ("/v1/embeddings", {"input": [[{"type": "audio", "audio": "x"}]]}, "input[0][0]"),
        (
            "/v1/embeddings",
            {
                "input": [
                    [{"type": "image_url", "image_url": {"url": "a"}}, {"type": "image_url", "image_url": {"url": "b"}}]
                ]
            },
            "input[0]",
        ),
        ("/v1/embeddings", {"input": "x", "messages": [{"role": "user", "content": "y"}]}, "input"),
    ],
)
def test_bad_inputs_are_400s_and_the_model_keeps_serving(client, route, body, param):
    response = client.post(route, json=body)
    assert response.status_code == 400, response.get_json()
    assert response.get_json()["error"]["param"] == param
    assert client.post("/embeddings/text", json={"texts": "still fine"}).status_code == 200


def test_instruction_on_a_model_without_one_is_a_400(client):
    app_client = create_app(
        Settings.from_env({"DTYPE": "float32"}), engine_for(Settings.from_env({"DTYPE": "float32"}))
    ).test_client()
    response = app_client.post("/embed_text", json={"texts": "x", "instruction": "Find it."})
    assert response.status_code == 400 and response.get_json()["error"]["param"] == "instruction"
    response = app_client.post("/embeddings/fused", json={"texts": ["x"], "images": [b64(PICTURES[0])]})
    assert response.status_code == 400 and response.get_json()["error"]["code"] == "unsupported_modality"
