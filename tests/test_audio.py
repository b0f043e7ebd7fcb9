"""Audio (#26): a tiny CLAP (ClapModel and its processor, as LAION's unfused checkpoints ship it) equals the model
card's computation (`get_text_features`, and `get_audio_features` on its feature extractor's output) in float32
(cosine >= 0.9999) and bfloat16 (>= 0.999); WAV, FLAC, OGG Vorbis and Opus and MP3 decode, stereo averaged,
resampled by soxr to the model's rate; a clip longer than the model's window embeds as its first window, the
same each time; the routes (/embed_audio as JSON, multipart and URL, /v1/embeddings with modality audio from the
OpenAI SDK, /similarity texts x audio); and untrusted clips (a header declaring ten hours, a stream longer than
MAX_AUDIO_SECONDS, a truncated file, too many channels, too many bytes) are 4xx naming the limit."""

from __future__ import annotations

import base64
import io
import struct

import numpy as np
import pytest
import soundfile
import torch

from app import create_app
from app.config import Settings
from app.engine.capabilities import EMBED_AUDIO, EMBED_TEXT
from app.engine.requests import EmbedRequest
from app.media.audio import AudioLimits, resample

from .engines import serving_fixtures
from .file_server import serving
from .tiny_models import tiny_clap, tiny_sentence_transformer

RATE = 8000  # the tiny CLAP's; LAION's are 48 kHz
TEXTS = ["a dog barking", "rain on a tin roof at night", "x"]


def tone(seconds: float, rate: int = RATE, seed: int = 0, channels: int = 1) -> np.ndarray:
    """A few tones and some noise: a clip whose spectrogram has structure."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * rate)) / rate
    wave = sum(np.sin(2 * np.pi * f * t) * a for f, a in zip(rng.uniform(100, rate / 3, 3), (0.3, 0.2, 0.1)))
    wave = (wave + 0.05 * rng.standard_normal(len(t))).astype(np.float32)
    return np.stack([wave * (1 - 0.3 * c) for c in range(channels)], axis=1) if channels > 1 else wave


def encoded(samples: np.ndarray, rate: int = RATE, fmt: str = "WAV", subtype: str | None = None) -> bytes:
    buffer = io.BytesIO()
    soundfile.write(buffer, samples, rate, format=fmt, subtype=subtype or ("FLOAT" if fmt == "WAV" else None))
    return buffer.getvalue()


CLIPS = [tone(0.5, seed=1), tone(1.3, seed=2), tone(2.0, seed=3)]


@pytest.fixture(scope="module")
def directories(tmp_path_factory):
    root = tmp_path_factory.mktemp("audio")
    return {"clap": tiny_clap(root / "clap"), "text": tiny_sentence_transformer(root / "text")}


settings, engine, client = serving_fixtures(IMAGE_URL_FETCH="true", ALLOWED_IMAGE_NETWORKS="127.0.0.1")


@pytest.fixture(scope="module")
def reference(directories):
    from transformers import ClapModel, ClapProcessor

    model = ClapModel.from_pretrained(directories["clap"]).eval()
    processor = ClapProcessor.from_pretrained(directories["clap"])

    def audio(clips: list[np.ndarray]) -> np.ndarray:
        # The feature extractor itself: transformers 5's ClapProcessor passes the tokenizer's max_length (128) to
        # it as a length in samples, cutting every clip to 16 ms (docs/audio.md)
        with torch.no_grad():
            features = processor.feature_extractor(clips, sampling_rate=RATE, return_tensors="pt")
            return model.get_audio_features(**features).pooler_output.numpy()

    def text(texts: list[str]) -> np.ndarray:
        with torch.no_grad():
            return model.get_text_features(
                **processor.tokenizer(texts, padding=True, return_tensors="pt")
            ).pooler_output.numpy()

    return audio, text


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)


def embed(engine, clips: list[bytes], **fields):
    limits = AudioLimits.from_settings(Settings.from_env({}))
    return engine.embed_audio(
        engine.models["clap"], clips, limits, EmbedRequest(field="audio", use_cache=False, **fields)
    )


def test_clap_equals_the_model_card(engine, reference):
    audio, text = reference
    model = engine.models["clap"]
    assert model.family == "clap" and model.capabilities == {EMBED_TEXT, EMBED_AUDIO}
    got = embed(engine, [encoded(clip) for clip in CLIPS], normalize=False).vectors
    assert cosines(got, audio(CLIPS)).min() >= 0.9999
    got = engine.embed_texts(model, TEXTS, normalize=False, use_cache=False).vectors
    assert cosines(got, text(TEXTS)).min() >= 0.9999


def test_bfloat16_keeps_the_vectors(directories, reference):
    from app.engine.loader import load_model

    model = load_model(directories["clap"], "clap", torch.bfloat16)
    audio, text = reference
    rows = [model.prepare_audio(clip, f"audio[{i}]") for i, clip in enumerate(CLIPS)]
    assert cosines(model.forward("audio", rows, frozenset({"dense"})).dense, audio(CLIPS)).min() >= 0.999
    rows = model.prepare_texts(TEXTS).rows
    assert cosines(model.forward("text", rows, frozenset({"dense"})).dense, text(TEXTS)).min() >= 0.999


@pytest.mark.parametrize(
    "fmt, subtype, rate, floor",
    [
        ("WAV", "PCM_16", RATE, 0.9999),
        ("FLAC", "PCM_16", 44100, 0.9999),  # resampled to the model's 8 kHz
        ("OGG", "VORBIS", 22050, None),
        ("OGG", "OPUS", 48000, None),
        ("MP3", "MPEG_LAYER_III", 16000, None),
    ],
)
def test_each_format_decodes_and_resamples(engine, reference, fmt, subtype, rate, floor):
    """Lossless formats equal the reference on the same samples resampled by soxr; lossy ones decode to a clip
    of the right length (their samples are not the source's)."""
    audio, _ = reference
    stereo = tone(1.5, rate=rate, seed=4, channels=2)
    data = encoded(stereo, rate, fmt, subtype)
    decoded = AudioLimits().decode(data, "audio[0]", RATE)
    assert abs(len(decoded) - 1.5 * RATE) <= RATE * 0.06
    got = embed(engine, [data], normalize=False).vectors
    if floor is not None:
        source, _ = soundfile.read(io.BytesIO(data), dtype="float32", always_2d=True)
        expected = audio([resample(source.mean(axis=1), rate, RATE)])
        assert cosines(got, expected).min() >= floor


def test_a_clip_past_the_window_embeds_as_its_first_window_every_time(engine, reference):
    audio, _ = reference
    long = tone(5.0, seed=5)  # the tiny CLAP hears 2 s
    first = embed(engine, [encoded(long)], normalize=False).vectors
    again = embed(engine, [encoded(long)], normalize=False).vectors
    np.testing.assert_array_equal(first, again)
    assert cosines(first, audio([long[: 2 * RATE]])).min() >= 0.9999


@pytest.fixture(scope="module")
def clip_server():
    with serving({"/dog.wav": (encoded(CLIPS[1]), "audio/wav")}) as url:
        yield url


def test_every_input_path_of_embed_audio(client, engine, clip_server):
    expected = embed(engine, [encoded(CLIPS[1])]).vectors[0]
    raw = base64.b64encode(encoded(CLIPS[1])).decode()
    for value in (raw, "data:audio/wav;base64," + raw, clip_server + "/dog.wav"):
        answer = client.post("/embed_audio", json={"audio": [value], "model": "clap"})
        assert answer.status_code == 200, answer.get_json()
        np.testing.assert_allclose(answer.get_json()["embeddings"][0], expected, atol=1e-5)
    form = {"model": "clap", "audio": (io.BytesIO(encoded(CLIPS[1])), "dog.wav", "audio/wav")}
    answer = client.post("/embed_audio", data=form, content_type="multipart/form-data")
    assert answer.status_code == 200, answer.get_json()
    np.testing.assert_allclose(answer.get_json()["embeddings"][0], expected, atol=1e-5)
    assert answer.get_json()["dimension"] == 16


def test_openai_modality_audio_and_similarity(client, engine, reference):
    audio, text = reference
    raw = [base64.b64encode(encoded(clip)).decode() for clip in CLIPS]
    body = {"input": raw, "model": "clap", "modality": "audio"}
    answer = client.post("/v1/embeddings", json=body)
    assert answer.status_code == 200, answer.get_json()
    got = np.array([row["embedding"] for row in answer.get_json()["data"]])
    assert cosines(got, audio(CLIPS)).min() >= 0.9999
    matrix = client.post("/similarity", json={"texts": TEXTS, "audio": raw, "model": "clap"}).get_json()
    a, t = audio(CLIPS), text(TEXTS)
    expected = (t / np.linalg.norm(t, axis=1, keepdims=True)) @ (a / np.linalg.norm(a, axis=1, keepdims=True)).T
    np.testing.assert_allclose(np.array(matrix["similarity_matrix"]), expected, atol=1e-4)
    assert matrix["shape"] == [3, 3]


def wav_declaring(seconds: int, rate: int = RATE) -> bytes:
    """A 16-bit mono WAV whose data chunk declares `seconds`, followed by 100 bytes of samples."""
    size = seconds * rate * 2
    header = b"RIFF" + struct.pack("<I", 36 + size) + b"WAVE"
    header += b"fmt " + struct.pack("<IHHIIHH", 16, 1, 1, rate, rate * 2, 2, 16)
    return header + b"data" + struct.pack("<I", size) + b"\0" * 100


HOSTILE = {
    "ten hours declared": (wav_declaring(36_000), 413, "MAX_AUDIO_SECONDS"),
    "longer than the cap": (encoded(tone(700 / 100, seed=6), RATE, "OGG", "VORBIS"), 413, "MAX_AUDIO_SECONDS"),
    "truncated": (encoded(tone(3.0, seed=7), RATE, "FLAC", "PCM_16")[:3000], 400, "truncated"),
    "not audio": (b"hello, world" * 20, 400, "not audio"),
    "nine channels": (encoded(tone(0.2, seed=8, channels=9), RATE, "WAV", "PCM_16"), 400, "MAX_AUDIO_CHANNELS"),
}


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_untrusted_clips_are_4xx_naming_the_limit(directories, name):
    data, status, words = HOSTILE[name]
    env = {"MODEL_PATH": str(directories["clap"]), "DTYPE": "float32", "MAX_AUDIO_SECONDS": "5"}
    client = create_app(Settings.from_env(env)).test_client()
    good = base64.b64encode(encoded(CLIPS[0])).decode()
    answer = client.post("/embed_audio", json={"audio": [good, base64.b64encode(data).decode()]})
    assert answer.status_code == status, answer.get_json()
    error = answer.get_json()["error"]
    assert words in error["message"] and error["param"] == "audio[1]", error
    assert client.post("/embed_audio", json={"audio": [good]}).status_code == 200


def test_sizes_and_counts_refused_before_decoding(client):
    big = base64.b64encode(b"\0" * (11 * 1024 * 1024)).decode()
    answer = client.post("/embed_audio", json={"audio": [big], "model": "clap"})
    assert answer.status_code == 413 and "MAX_AUDIO_BYTES" in answer.get_json()["error"]["message"]
    clip = base64.b64encode(encoded(CLIPS[0])).decode()
    answer = client.post("/embed_audio", json={"audio": [clip] * 33, "model": "clap"})
    assert answer.status_code == 400 and "MAX_AUDIO_PER_REQUEST" in answer.get_json()["error"]["message"]


def test_what_a_model_does_not_hear_is_a_400(client):
    clip = base64.b64encode(encoded(CLIPS[0])).decode()
    answer = client.post("/embed_audio", json={"audio": [clip], "model": "text"})
    assert answer.status_code == 400 and answer.get_json()["error"]["code"] == "unsupported_modality"
    answer = client.post("/embed_image", json={"images": [clip], "model": "clap"})
    assert answer.status_code == 400 and answer.get_json()["error"]["code"] == "unsupported_modality"
    cards = {card["id"]: card for card in client.get("/v1/models").get_json()["data"]}
    assert cards["clap"]["modalities"] == ["text", "audio"] and cards["clap"]["sampling_rate"] == RATE
    assert client.get("/health").get_json()["modalities"] == {"clap": ["text", "audio"], "text": ["text"]}
    assert client.get("/info?model=clap").get_json()["modalities"] == ["text", "audio"]
