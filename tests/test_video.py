"""Video, and EmbeddingGemma 2 (#26): a tiny EmbeddingGemma 2 (text, vision and audio towers; its vision tower
reads video frames) in the layout google/embeddinggemma-2 ships (the model and processor at the top,
sentence-transformers 6's Transformer, Pooling and Normalize modules) equals `SentenceTransformer.encode` on
texts, images, audio clips and videos in float32 (cosine >= 0.9999) and bfloat16 (>= 0.999). A video's reference
is the whole video decoded, handed to sentence-transformers with its metadata so the model's own processor
samples it; the service decodes only the frames that sampling picks. Several videos (and clips, images) in one
pass equal each alone. The routes: /embed_video (JSON base64, data URI, multipart, allow-listed URL),
/v1/embeddings with modality video, /similarity across two modalities (texts x videos, audio x videos), and
what /v1/models, /health and /info say the model takes. Needs torchvision (the model's video processor)."""

from __future__ import annotations

import base64
import io

import numpy as np
import pytest
import torch
from PIL import Image

from app.engine.capabilities import EMBED_AUDIO, EMBED_IMAGE, EMBED_INTERLEAVED, EMBED_TEXT, EMBED_VIDEO
from app.engine.errors import InvalidInput
from app.engine.loader import load_model
from app.engine.requests import EmbedRequest
from app.media.audio import AudioLimits
from app.media.video import VideoLimits

from .engines import serving_fixtures
from .file_server import serving
from .test_audio import encoded as encoded_clip
from .test_audio import tone
from .test_multimodal import cosines, png
from .tiny_models import tiny_embedding_gemma2, tiny_sentence_transformer
from .videos import decode_all, encode_video, needs_torchvision

pytestmark = needs_torchvision

TEXTS = ["a dog running on a beach", "rain on a window at night", "x"]
IMAGES = [
    Image.fromarray((np.random.default_rng(i).random((40 + 9 * i, 30 + 5 * i, 3)) * 255).astype("uint8"))
    for i in range(3)
]
RATE = 16_000  # EmbeddingGemma 2's feature extractor
CLIPS = [tone(0.6, rate=RATE, seed=1), tone(1.7, rate=RATE, seed=2)]
# 1 frame a second up to 8 (the tiny model's processor): 3, 8 of 12, and 5 frames
VIDEOS = [
    encode_video(seconds=3.0, fps=10, seed=1),
    encode_video(seconds=12.0, fps=5, size=(48, 64), seed=2, gop=30),
    encode_video(seconds=5.0, fps=8, container="webm", codec="libvpx-vp9", seed=3),
]


@pytest.fixture(scope="module")
def directories(tmp_path_factory):
    root = tmp_path_factory.mktemp("video")
    return {
        "gemma": tiny_embedding_gemma2(root / "gemma"),
        "gemma-plain": tiny_embedding_gemma2(root / "gemma-plain", chat=False),
        "text": tiny_sentence_transformer(root / "text"),
    }


settings, engine, client = serving_fixtures(IMAGE_URL_FETCH="true", ALLOWED_IMAGE_NETWORKS="127.0.0.1")


def st_model(path):
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(path), device="cpu")


@pytest.fixture(scope="module")
def reference(directories):
    return st_model(directories["gemma"])


def whole(data: bytes) -> dict:
    """A video as a reference reads it: every frame, and the metadata the model's processor samples by."""
    from transformers.video_utils import VideoMetadata

    pictures, fps = decode_all(data)
    height, width = pictures.shape[1:3]
    metadata = VideoMetadata(
        total_num_frames=len(pictures), fps=fps, duration=len(pictures) / fps, width=width, height=height
    )
    return {"array": pictures, "video_metadata": metadata}


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def videos(engine, items: list[bytes], name: str = "gemma", **fields):
    request = EmbedRequest(field="videos", use_cache=False, **fields)
    return engine.embed_videos(engine.models[name], items, VideoLimits(), request).vectors


@pytest.mark.parametrize("name", ["gemma", "gemma-plain"])
def test_every_modality_equals_sentence_transformers(engine, directories, name):
    """With a chat template sentence-transformers turns every input into a message first; without, each
    modality goes to the processor alone: both equal."""
    reference = st_model(directories[name])
    model = engine.models[name]
    assert model.family == "sentence-transformers-multimodal"
    mixes = {EMBED_INTERLEAVED} if name == "gemma" else set()
    assert model.capabilities == {EMBED_TEXT, EMBED_IMAGE, EMBED_AUDIO, EMBED_VIDEO, *mixes}
    assert model.dimension == 24  # the model's projection, not the Pooling module's hidden size (32)
    got = engine.embed_texts(model, TEXTS, use_cache=False).vectors
    assert cosines(got, reference.encode(TEXTS)).min() >= 0.9999
    got = engine.embed_images(model, [png(image) for image in IMAGES], engine_decoder(), use_cache=False).vectors
    # each alone: given a list of images, sentence-transformers 6.3 hands EmbeddingGemma 2's processor one input
    # holding all of them (the processor nests a text-less list of images as one sample's), one vector in all
    expected = np.stack([reference.encode([image])[0] for image in IMAGES])
    assert cosines(got, expected).min() >= 0.9999
    clips = [encoded_clip(clip, RATE) for clip in CLIPS]
    got = engine.embed_audio(model, clips, AudioLimits(), EmbedRequest(field="audio", use_cache=False)).vectors
    expected = reference.encode([{"array": clip, "sampling_rate": RATE} for clip in CLIPS])
    assert cosines(got, expected).min() >= 0.9999
    expected = reference.encode([whole(video) for video in VIDEOS])
    assert cosines(videos(engine, VIDEOS, name), expected).min() >= 0.9999


def test_a_text_and_an_image_in_one_input(client, engine, reference):
    """sentence-transformers' `{"text", "image"}` input (its message modality): vLLM's content parts on
    /v1/embeddings and Cohere's on /v2/embed, one vector each; an image alone beside them is the image's own."""
    pairs = [(TEXTS[0], IMAGES[0]), (TEXTS[1], IMAGES[1])]
    expected = np.stack([reference.encode([{"text": text, "image": image}])[0] for text, image in pairs])
    image_part = {"type": "image_url", "image_url": {"url": "data:image/png;base64," + b64(png(IMAGES[2]))}}
    inputs = [
        [{"type": "text", "text": text}, {"type": "image_url", "image_url": {"url": b64(png(image))}}]
        for text, image in pairs
    ] + [[image_part]]
    answer = client.post("/v1/embeddings", json={"input": inputs, "model": "gemma", "cache": False})
    assert answer.status_code == 200, answer.get_json()
    got = np.array([row["embedding"] for row in answer.get_json()["data"]])
    assert cosines(got[:2], expected).min() >= 0.9999
    assert cosines(got[2:], reference.encode([IMAGES[2]])).min() >= 0.9999
    # Cohere's v2 content parts are the same items
    body = {"model": "gemma", "input_type": "search_document", "embedding_types": ["float"]}
    body["inputs"] = [{"content": parts} for parts in inputs[:2]]
    answer = client.post("/v2/embed", json=body)
    assert answer.status_code == 200, answer.get_json()
    assert cosines(answer.get_json()["embeddings"]["float"], expected).min() >= 0.9999
    answer = client.post("/v1/embeddings", json={"input": inputs[:1], "model": "gemma-plain"})
    assert (
        answer.status_code == 400
        and "cannot embed a text and an image together" in answer.get_json()["error"]["message"]
    )


def engine_decoder():
    from app.media.images import ImageLimits

    return ImageLimits()


def test_a_clip_is_decoded_as_far_as_the_model_hears(engine, reference):
    """EmbeddingGemma 2's feature extractor keeps a clip's first 30 s: no more is decoded, and the vector is the
    whole clip's."""
    model = engine.models["gemma"]
    assert model.audio_window == 30.0
    long = tone(40.0, rate=RATE, seed=9)
    assert len(AudioLimits().decode(encoded_clip(long, RATE), "audio[0]", RATE, model.audio_window)) == 30 * RATE
    got = engine.embed_audio(model, [encoded_clip(long, RATE)], AudioLimits(), EmbedRequest(field="audio")).vectors
    assert cosines(got, reference.encode([{"array": long, "sampling_rate": RATE}])).min() >= 0.9999


def test_a_text_with_a_clip_or_a_video_in_one_input(client, reference):
    """Content parts of several modalities (vLLM's audio_url and video_url, OpenAI's input_audio), one vector
    each, equal to sentence-transformers' `{"text", "audio"}` / `{"text", "video"}` inputs (the whole video
    decoded there, its sampled frames here); a bad part names its input."""
    clip = encoded_clip(CLIPS[0], RATE)
    items = [
        ({"text": TEXTS[0], "video": whole(VIDEOS[0])}, [{"type": "video_url", "video_url": {"url": b64(VIDEOS[0])}}]),
        (
            {"text": TEXTS[1], "audio": {"array": CLIPS[0], "sampling_rate": RATE}},
            [{"type": "input_audio", "input_audio": {"data": b64(clip), "format": "wav"}}],
        ),
        (
            {"text": TEXTS[2], "audio": {"array": CLIPS[0], "sampling_rate": RATE}, "video": whole(VIDEOS[2])},
            [
                {"type": "audio_url", "audio_url": {"url": "data:audio/wav;base64," + b64(clip)}},
                {"type": "video_url", "video_url": {"url": "data:video/webm;base64," + b64(VIDEOS[2])}},
            ],
        ),
    ]
    expected = np.stack([reference.encode([item])[0] for item, _ in items])
    inputs = [[{"type": "text", "text": item["text"]}, *parts] for item, parts in items]
    answer = client.post("/v1/embeddings", json={"input": inputs, "model": "gemma", "cache": False})
    assert answer.status_code == 200, answer.get_json()
    got = np.array([row["embedding"] for row in answer.get_json()["data"]])
    assert cosines(got, expected).min() >= 0.9999
    # a chat (vLLM's `messages`: one input) whose system turn is sentence-transformers' prompt
    chat = [{"role": "system", "content": "Find the matching clip."}, {"role": "user", "content": inputs[0]}]
    answer = client.post("/v1/embeddings", json={"messages": chat, "model": "gemma", "cache": False})
    assert answer.status_code == 200, answer.get_json()
    prompted = reference.encode([items[0][0]], prompt="Find the matching clip.")
    assert cosines([answer.get_json()["data"][0]["embedding"]], prompted).min() >= 0.9999
    assert cosines(prompted, expected[:1]).max() < 0.9999  # the prompt is there
    cut = [{"type": "text", "text": "x"}, {"type": "video_url", "video_url": {"url": b64(VIDEOS[1][:900])}}]
    answer = client.post("/v1/embeddings", json={"input": [inputs[1], cut], "model": "gemma"})
    assert answer.status_code == 400 and answer.get_json()["error"]["param"] == "input[1]", answer.get_json()
    answer = client.post("/v1/embeddings", json={"input": inputs[:1], "model": "gemma-plain"})
    assert answer.status_code == 400 and "several modalities in one input" in answer.get_json()["error"]["message"]


def test_videos_in_one_pass_equal_each_alone(engine):
    together = videos(engine, VIDEOS)
    alone = np.concatenate([videos(engine, [video]) for video in VIDEOS])
    assert cosines(together, alone).min() >= 0.99999
    # 12 s at 5 frames a second: 1 a second (every 5th of 60), then 8 of those 12 spread evenly
    info = VideoLimits().decode(VIDEOS[1], "v", lambda info: [0]).info
    spread = np.linspace(0, 11, 8, dtype=int)
    assert engine.models["gemma"].video_frames(info) == [5 * int(i) for i in spread] == [0, 5, 15, 20, 30, 35, 45, 55]


def test_bfloat16_keeps_the_vectors(directories, reference):
    model = load_model(directories["gemma"], "gemma", torch.bfloat16)
    rows = [model.prepare_video(VideoLimits().decode(v, "v", model.video_frames), "v") for v in VIDEOS]
    got = model.forward("video", rows, frozenset({"dense"})).dense
    assert cosines(got, reference.encode([whole(video) for video in VIDEOS])).min() >= 0.999
    got = model.forward("text", model.prepare_texts(TEXTS).rows, frozenset({"dense"})).dense
    assert cosines(got, reference.encode(TEXTS)).min() >= 0.999
    rows = [model.prepare_image(image, f"images[{i}]") for i, image in enumerate(IMAGES)]
    got = model.forward("image", rows, frozenset({"dense"})).dense
    assert cosines(got, np.stack([reference.encode([image])[0] for image in IMAGES])).min() >= 0.999
    rows = [model.prepare_audio(clip, f"audio[{i}]") for i, clip in enumerate(CLIPS)]
    got = model.forward("audio", rows, frozenset({"dense"})).dense
    expected = reference.encode([{"array": clip, "sampling_rate": RATE} for clip in CLIPS])
    assert cosines(got, expected).min() >= 0.999


@pytest.fixture(scope="module")
def video_server():
    with serving({"/walk.mp4": (VIDEOS[0], "video/mp4")}) as url:
        yield url


def test_every_input_path_of_embed_video(client, engine, video_server):
    expected = videos(engine, [VIDEOS[0]])[0]
    raw = b64(VIDEOS[0])
    for value in (raw, "data:video/mp4;base64," + raw, video_server + "/walk.mp4"):
        answer = client.post("/embed_video", json={"videos": [value], "model": "gemma"})
        assert answer.status_code == 200, answer.get_json()
        np.testing.assert_allclose(answer.get_json()["embeddings"][0], expected, atol=1e-5)
    form = {"model": "gemma", "videos": (io.BytesIO(VIDEOS[0]), "walk.mp4", "video/mp4")}
    answer = client.post("/embed_video", data=form, content_type="multipart/form-data")
    assert answer.status_code == 200, answer.get_json()
    body = answer.get_json()
    np.testing.assert_allclose(body["embeddings"][0], expected, atol=1e-5)
    assert body["dimension"] == 24 and body["usage"]["prompt_tokens"] > 0


def test_openai_modality_video_and_similarity_across_modalities(client, engine, reference):
    raw = [b64(video) for video in VIDEOS]
    answer = client.post("/v1/embeddings", json={"input": raw, "model": "gemma", "modality": "video"})
    assert answer.status_code == 200, answer.get_json()
    got = np.array([row["embedding"] for row in answer.get_json()["data"]])
    seen = reference.encode([whole(video) for video in VIDEOS], normalize_embeddings=True)
    assert cosines(got, seen).min() >= 0.9999
    texts = reference.encode(TEXTS, normalize_embeddings=True)
    matrix = client.post("/similarity", json={"texts": TEXTS, "videos": raw, "model": "gemma"}).get_json()
    assert matrix["shape"] == [3, 3]
    np.testing.assert_allclose(np.array(matrix["similarity_matrix"]), texts @ seen.T, atol=1e-4)
    clips = [b64(encoded_clip(clip, RATE)) for clip in CLIPS]
    heard = reference.encode([{"array": clip, "sampling_rate": RATE} for clip in CLIPS], normalize_embeddings=True)
    matrix = client.post("/similarity", json={"audio": clips, "videos": raw, "model": "gemma"}).get_json()
    np.testing.assert_allclose(np.array(matrix["similarity_matrix"]), heard @ seen.T, atol=1e-4)
    answer = client.post("/similarity", json={"texts": TEXTS, "audio": clips, "videos": raw, "model": "gemma"})
    assert answer.status_code == 400 and "at most two kinds" in answer.get_json()["error"]["message"]


def test_what_takes_video_is_said(client):
    raw = b64(VIDEOS[0])
    answer = client.post("/embed_video", json={"videos": [raw], "model": "text"})
    assert answer.status_code == 400 and answer.get_json()["error"]["code"] == "unsupported_modality"
    cards = {card["id"]: card for card in client.get("/v1/models").get_json()["data"]}
    assert cards["gemma"]["modalities"] == ["text", "image", "audio", "video"]
    assert (cards["gemma"]["sampling_rate"], cards["gemma"]["max_audio_seconds"]) == (RATE, 30.0)
    assert client.get("/health").get_json()["modalities"]["gemma"] == ["text", "image", "audio", "video"]
    assert client.get("/info?model=gemma").get_json()["modalities"] == ["text", "image", "audio", "video"]


def test_a_bad_video_fails_alone(client):
    good = b64(VIDEOS[0])
    cut = b64(VIDEOS[1][: len(VIDEOS[1]) // 3])
    answer = client.post("/embed_video", json={"videos": [good, cut], "model": "gemma"})
    assert answer.status_code == 400, answer.get_json()
    assert answer.get_json()["error"]["param"] == "videos[1]"
    answer = client.post("/embed_video", json={"videos": [good] * 5, "model": "gemma"})
    assert answer.status_code == 400 and "MAX_VIDEO_PER_REQUEST" in answer.get_json()["error"]["message"]
    assert client.post("/embed_video", json={"videos": [good], "model": "gemma"}).status_code == 200


def test_a_video_past_the_models_positions_is_refused_not_cut(directories):
    """Its frames' soft tokens are placeholders the model fills: cut, the ids would not match the frames."""
    model = load_model(directories["gemma"], "gemma", torch.float32)
    video = VideoLimits().decode(VIDEOS[1], "videos[0]", model.video_frames)
    assert len(model.prepare_video(video, "videos[0]").arrays["input_ids"]) > 300
    model.max_length = 300
    with pytest.raises(InvalidInput) as refused:
        model.prepare_video(video, "videos[0]")
    assert refused.value.code == "input_too_long" and "reads at most 300" in refused.value.message
