"""A real `gunicorn -c gunicorn.conf.py` with preload and 2 workers, over real HTTP."""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import subprocess
import sys

import numpy as np
import pytest
import requests

from .gunicorn_process import ROOT, GunicornProcess

pytestmark = pytest.mark.slow

TEXTS = ["Gunicorn forks workers from a master.", "short", "Copy-on-write keeps one copy of the weights."]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    log = tmp_path_factory.mktemp("gunicorn") / "server.log"
    with GunicornProcess({"DTYPE": "float32"}, workers=2, log_path=log) as proc:
        yield proc


def test_model_is_loaded_once_in_the_master(server):
    assert server.model_loads() == [server.proc.pid]
    ready = {r["pid"] for r in server.log_records() if r["msg"].startswith("worker ") and "ready" in r["msg"]}
    assert len(ready) == 2 and server.proc.pid not in ready


def test_both_workers_answer_with_their_share_of_the_cores(server):
    sessions = server.pinned_sessions(2)
    for session in sessions.values():
        health = session.get(server.url + "/health", timeout=10).json()
        assert health["ready"] and health["torch_threads"] == max(1, (os.cpu_count() or 1) // 2)


def test_openai_client_float_and_base64(server, reference_model):
    from openai import OpenAI

    client = OpenAI(base_url=server.url + "/v1", api_key="unused", max_retries=0)
    reference = reference_model.encode(TEXTS)
    # No encoding_format: the SDK asks for base64 and decodes it itself.
    for encoding_format in (None, "float", "base64"):
        kwargs = {"encoding_format": encoding_format} if encoding_format else {}
        result = client.embeddings.create(model="all-MiniLM-L6-v2", input=TEXTS, **kwargs)
        if encoding_format == "base64":  # asked for explicitly, the SDK hands the string over as it is
            vectors = np.stack([np.frombuffer(base64.b64decode(d.embedding), dtype="<f4") for d in result.data])
        else:
            vectors = np.array([d.embedding for d in result.data], dtype=np.float32)
        assert vectors.shape == (3, 384)
        assert (vectors * reference).sum(axis=1).min() >= 0.9999
        assert result.usage.prompt_tokens > 0 and result.model == "all-MiniLM-L6-v2"


def test_openai_client_sees_errors_as_api_errors(server):
    import openai

    client = openai.OpenAI(base_url=server.url + "/v1", api_key="unused", max_retries=0)
    with pytest.raises(openai.NotFoundError) as info:
        client.embeddings.create(model="text-embedding-3-small", input="x")
    assert info.value.code == "model_not_found"
    with pytest.raises(openai.BadRequestError) as info:
        client.embeddings.create(model="all-MiniLM-L6-v2", input=[])
    assert info.value.param == "input"


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
def test_curl_native_route(server, reference_model):
    out = subprocess.run(
        [
            "curl",
            "-sS",
            "-X",
            "POST",
            server.url + "/embed_text",
            "-H",
            "Content-Type: application/json",
            "-d",
            json.dumps({"texts": TEXTS}),
        ],
        capture_output=True,
        check=True,
        timeout=60,
    ).stdout
    body = json.loads(out)
    assert (np.array(body["embeddings"]) * reference_model.encode(TEXTS)).sum(axis=1).min() >= 0.9999


def test_bad_input_leaves_the_workers_up(server):
    before = server.worker_pids()
    bad_bodies = [b"{oops", b"[]", b'{"texts": []}', b'{"texts": [""]}', b'{"texts": "x", "dimensions": -1}']
    for body in bad_bodies * 4:
        response = requests.post(
            server.url + "/embed_text", data=body, headers={"Content-Type": "application/json"}, timeout=30
        )
        assert response.status_code == 400 and "error" in response.json()
    assert requests.post(server.url + "/embed_text", json={"texts": "fine"}, timeout=30).status_code == 200
    assert server.worker_pids() == before


def run_gunicorn_expecting_failure(env: dict[str, str]) -> str:
    gunicorn = os.path.join(os.path.dirname(sys.executable), "gunicorn")
    result = subprocess.run(
        [gunicorn, "-c", "gunicorn.conf.py"],
        cwd=ROOT,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode != 0
    output = result.stdout + result.stderr
    assert "Traceback" not in output
    return output


@pytest.mark.parametrize(
    "env,variable",
    [
        ({"DTYPE": "float8"}, "DTYPE"),
        ({"WORKERS": "lots"}, "WORKERS"),
        ({"MODEL_PATH": "/nonexistent/model"}, "MODEL_PATH"),
        ({"WORKER_CLASS": "gthread"}, "WORKER_CLASS"),
        ({"WORKER_CLASS": "sync", "ALLOW_UNBOUNDED_QUEUE": "false"}, "WORKER_CLASS"),
    ],
)
def test_invalid_setting_stops_start_up_with_one_line(env, variable):
    output = run_gunicorn_expecting_failure(env)
    lines = [line for line in output.splitlines() if line.startswith("config error:")]
    assert len(lines) == 1 and variable in lines[0]
    if variable == "WORKER_CLASS":  # what to put in front, and how to start anyway
        assert "no back-pressure" in lines[0] and "nginx" in lines[0] and "ALLOW_UNBOUNDED_QUEUE=true" in lines[0]


def test_a_port_in_use_stops_start_up_with_one_line_before_the_model_loads():
    import socket
    import time

    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        started = time.monotonic()
        output = run_gunicorn_expecting_failure({"BIND": f"127.0.0.1:{port}"})
        lines = [line for line in output.splitlines() if line.startswith("config error:")]
        assert len(lines) == 1 and f"127.0.0.1:{port}" in lines[0] and "BIND or PORT" in lines[0]
        assert "loaded model" not in output and "Retrying" not in output
        assert time.monotonic() - started < 30


def test_model_path_that_is_not_a_model_stops_start_up(tmp_path):
    output = run_gunicorn_expecting_failure({"MODEL_PATH": str(tmp_path), "BIND": "127.0.0.1:0"})
    assert re.search(r"^config error: MODEL_PATH: cannot load a model", output, re.M)


def test_cuda_without_a_gpu_stops_start_up():
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    output = run_gunicorn_expecting_failure({"DEVICE": "cuda", "BIND": "127.0.0.1:0"})
    assert re.search(r"^config error: DEVICE: cuda was requested but no CUDA GPU", output, re.M)


@pytest.mark.extended
@pytest.mark.skipif(shutil.which("taskset") is None, reason="taskset (util-linux) is not installed")
def test_taskset_to_one_cpu_starts_one_worker_with_one_thread(tmp_path):
    gunicorn = os.path.join(os.path.dirname(sys.executable), "gunicorn")
    log = tmp_path / "server.log"
    env = {"WORKERS": "0", "CPU_THREADS": "0", "DTYPE": "float32"}
    with GunicornProcess(
        env, workers=1, log_path=log, command=["taskset", "-c", "0", gunicorn, "-c", "gunicorn.conf.py"]
    ) as server:
        health = requests.get(server.url + "/health", timeout=10).json()
        assert health["torch_threads"] == 1
        ready = {r["pid"] for r in server.log_records() if r["msg"].startswith("worker ") and "ready" in r["msg"]}
        assert len(ready) == 1
        sizing = [r["msg"] for r in server.log_records() if r["msg"].startswith("sizing:")]
        assert sizing and "1 of" in sizing[0] and "-> 1 workers x 1 torch threads" in sizing[0]


@pytest.mark.extended
def test_worker_class_sync_really_runs_sync_workers(tmp_path):
    """gunicorn turns `sync` with threads > 1 into gthread; THREADS (4 by default) must not do that."""
    with GunicornProcess(
        {"WORKER_CLASS": "sync", "ALLOW_UNBOUNDED_QUEUE": "true", "THREADS": "4", "DTYPE": "float32"},
        workers=1,
        log_path=tmp_path / "server.log",
    ) as server:
        assert requests.post(server.url + "/embed_text", json={"texts": "x"}, timeout=30).status_code == 200
        messages = [r["msg"] for r in server.log_records()]
        assert "Using worker: sync" in messages and "Using worker: gthread" not in messages
        assert any("THREADS=4 applies to gthread workers only" in m for m in messages)


@pytest.mark.extended
def test_sighup_reloads_workers_and_keeps_the_master(tmp_path):
    """gunicorn re-reads gunicorn.conf.py on SIGHUP, in the master that holds the port: the start-up checks
    must not refuse it (the bind check runs once per master)."""
    import signal
    import time

    from .gunicorn_process import GunicornProcess

    with GunicornProcess({"DTYPE": "float32"}, workers=1, log_path=tmp_path / "server.log") as server:
        before = server.worker_pids()
        server.proc.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 60
        while True:
            pids = server.worker_pids()
            if pids and not pids & before:
                break
            assert server.proc.poll() is None, server.log_tail()
            assert time.monotonic() < deadline, "no new worker after SIGHUP"
            time.sleep(0.2)
        server.wait_ready(60)
        response = requests.post(server.url + "/embed_text", json={"texts": "after the reload"}, timeout=30)
        assert response.status_code == 200 and server.proc.poll() is None
        assert "config error" not in server.log_tail()
