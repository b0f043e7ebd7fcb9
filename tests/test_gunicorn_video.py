"""A real gunicorn (preload, 2 gevent workers) serving a tiny EmbeddingGemma 2: the OpenAI SDK embeds videos
with `modality: "video"` on every worker, equal to /embed_video's multipart answer; /similarity across two
kinds, a text with a video in one input, and clips, over HTTP; untrusted videos (a WebM
declaring ten hours, one longer than MAX_VIDEO_SECONDS, 1,500 frames in 1.5 s, frames over MAX_VIDEO_PIXELS, a
truncated MP4, noise behind an MP4 signature, an AVI) get their 4xx over and over while a bystander keeps being
answered and no worker is replaced. Needs torchvision (the model's video processor)."""

from __future__ import annotations

import base64

import numpy as np
import pytest
import requests

from .bystanders import answered_throughout
from .gunicorn_process import GunicornProcess
from .test_audio import encoded as encoded_clip
from .test_audio import tone
from .tiny_models import tiny_embedding_gemma2
from .videos import declaring_hours, encode_video, needs_torchvision

pytestmark = [pytest.mark.slow, *needs_torchvision]

VIDEOS = [encode_video(seconds=3.0, seed=1), encode_video(seconds=4.0, fps=6, container="webm", codec="libvpx-vp9")]
TRUNCATED = encode_video(seconds=4.0, seed=2)
HOSTILE = {
    "ten hours declared": (declaring_hours(), 413, "MAX_VIDEO_SECONDS"),
    "longer than the cap": (encode_video(seconds=7.0, fps=4), 413, "MAX_VIDEO_SECONDS"),
    "1500 frames": (encode_video(seconds=1.5, fps=1000, size=(16, 16), gop=500), 413, "frames"),
    "frames too large": (encode_video(seconds=1.0, size=(128, 96)), 413, "MAX_VIDEO_PIXELS"),
    "truncated": (TRUNCATED[: len(TRUNCATED) // 3], 400, "corrupt or truncated"),
    "noise": (TRUNCATED[:12] + bytes(range(256)) * 40, 400, "MP4"),
    "avi": (encode_video(seconds=0.5, container="avi", codec="mpeg4"), 400, "accepted container"),
}


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    root = tmp_path_factory.mktemp("served-video")
    env = {
        "MODEL_PATH": str(tiny_embedding_gemma2(root / "gemma")),
        "DTYPE": "float32",
        "MAX_VIDEO_SECONDS": "5",
        "MAX_VIDEO_PIXELS": str(64 * 64),
    }
    with GunicornProcess(env, workers=2, log_path=root / "server.log") as proc:
        yield proc


def test_openai_sdk_embeds_videos_on_every_worker(server):
    import openai

    files = [("videos", (f"{i}.bin", video, "video/mp4")) for i, video in enumerate(VIDEOS)]
    expected = np.array(requests.post(server.url + "/embed_video", files=files, timeout=120).json()["embeddings"])
    inputs = [base64.b64encode(video).decode() for video in VIDEOS]
    for session in server.pinned_sessions(2).values():
        client = openai.OpenAI(base_url=server.url + "/v1", api_key="unused", max_retries=0)
        answer = client.embeddings.create(model="gemma", input=inputs, extra_body={"modality": "video"})
        np.testing.assert_allclose(np.array([row.embedding for row in answer.data]), expected, atol=1e-5)
        direct = session.post(server.url + "/embed_video", json={"videos": inputs}, timeout=120)
        np.testing.assert_allclose(np.array(direct.json()["embeddings"]), expected, atol=1e-5)


def test_every_video_route_over_http(server):
    """/similarity texts x videos and clips x videos, a text with a video in one input (content parts through the
    OpenAI SDK), and a clip on /embed_audio: each equal to what the single-kind routes answer."""
    import openai

    inputs = [base64.b64encode(video).decode() for video in VIDEOS]
    seen = np.array(
        requests.post(server.url + "/embed_video", json={"videos": inputs}, timeout=120).json()["embeddings"]
    )
    texts = ["waves", "a street"]
    said = np.array(requests.post(server.url + "/embed_text", json={"texts": texts}, timeout=60).json()["embeddings"])
    body = {"texts": texts, "videos": inputs}
    matrix = requests.post(server.url + "/similarity", json=body, timeout=120).json()["similarity_matrix"]
    np.testing.assert_allclose(np.array(matrix), said @ seen.T, atol=1e-4)
    clip = base64.b64encode(encoded_clip(tone(1.0, rate=16_000, seed=3), 16_000)).decode()
    heard = np.array(
        requests.post(server.url + "/embed_audio", json={"audio": [clip]}, timeout=60).json()["embeddings"]
    )
    matrix = requests.post(server.url + "/similarity", json={"audio": [clip], "videos": inputs}, timeout=120).json()
    np.testing.assert_allclose(np.array(matrix["similarity_matrix"]), heard @ seen.T, atol=1e-4)
    client = openai.OpenAI(base_url=server.url + "/v1", api_key="unused", max_retries=0)
    parts = [[{"type": "text", "text": "waves"}, {"type": "video_url", "video_url": {"url": inputs[0]}}]]
    mixed = client.embeddings.create(model="gemma", input=parts)
    assert len(mixed.data) == 1 and len(mixed.data[0].embedding) == seen.shape[1]
    assert abs(float(np.dot(mixed.data[0].embedding, seen[0]))) < 0.9999  # the text is in it


def test_hostile_videos_leave_a_bystander_answered(server):
    before = server.worker_pids()
    with answered_throughout(server.url):
        for name, (data, status, words) in sorted(HOSTILE.items()):
            for _ in range(3):
                files = {"videos": (f"{name}.bin", data, "application/octet-stream")}
                answer = requests.post(server.url + "/embed_video", files=files, timeout=120)
                assert answer.status_code == status and words in answer.json()["error"]["message"], (name, answer.text)
        served = requests.post(server.url + "/embed_video", files={"videos": ("ok.mp4", VIDEOS[0])}, timeout=120)
        assert served.status_code == 200
    assert server.worker_pids() == before
