"""A real gunicorn (preload, 2 gevent workers) serving a tiny CLAP: the OpenAI SDK embeds audio with Infinity's
`modality: "audio"` on every worker, equal to /embed_audio's multipart answer; untrusted clips (a header declaring
ten hours, a truncated stream, noise that is not audio, too many channels) get their 4xx over and over while a
bystander keeps being answered and no worker is replaced."""

from __future__ import annotations

import base64

import numpy as np
import pytest
import requests

from .bystanders import answered_throughout
from .gunicorn_process import GunicornProcess
from .test_audio import CLIPS, HOSTILE, encoded
from .tiny_models import tiny_clap

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    root = tmp_path_factory.mktemp("served-audio")
    env = {"MODEL_PATH": str(tiny_clap(root / "clap")), "DTYPE": "float32", "MAX_AUDIO_SECONDS": "5"}
    with GunicornProcess(env, workers=2, log_path=root / "server.log") as proc:
        yield proc


def test_openai_sdk_embeds_audio_on_every_worker(server):
    import openai

    files = [("audio", (f"{i}.wav", encoded(clip), "audio/wav")) for i, clip in enumerate(CLIPS)]
    expected = np.array(requests.post(server.url + "/embed_audio", files=files, timeout=60).json()["embeddings"])
    inputs = [base64.b64encode(encoded(clip)).decode() for clip in CLIPS]
    for session in server.pinned_sessions(2).values():
        client = openai.OpenAI(base_url=server.url + "/v1", api_key="unused", max_retries=0)
        answer = client.embeddings.create(model="clap", input=inputs, extra_body={"modality": "audio"})
        np.testing.assert_allclose(np.array([row.embedding for row in answer.data]), expected, atol=1e-5)
        direct = session.post(server.url + "/embed_audio", json={"audio": inputs}, timeout=60)
        np.testing.assert_allclose(np.array(direct.json()["embeddings"]), expected, atol=1e-5)


def test_hostile_clips_leave_a_bystander_answered(server):
    before = server.worker_pids()
    with answered_throughout(server.url):
        for name, (data, status, words) in sorted(HOSTILE.items()):
            for _ in range(3):
                files = {"audio": (f"{name}.bin", data, "application/octet-stream")}
                answer = requests.post(server.url + "/embed_audio", files=files, timeout=120)
                assert answer.status_code == status and words in answer.json()["error"]["message"], (name, answer.text)
        served = requests.post(server.url + "/embed_audio", files={"audio": ("ok.wav", encoded(CLIPS[0]))}, timeout=60)
        assert served.status_code == 200
    assert server.worker_pids() == before
