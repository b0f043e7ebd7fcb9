"""What runs before and after fork, tested in-process (the real-gunicorn side is in test_process_model)."""

import json
import logging
import os

import pytest
import torch

from app import create_app
from app.api.http.context import DRAINING_KEY
from app.config import Settings
from app.engine.device import resolve_device, resolve_dtype
from app.logs import JsonFormatter, gunicorn_logconfig
from app.runtime import prepare_metrics_dir

from .engines import engine_for, started_engine


def test_loading_never_initialises_cuda_or_runs_the_model(settings, monkeypatch):
    calls = []
    from app.engine.families import FAMILIES

    for family in FAMILIES:
        monkeypatch.setattr(family, "forward", lambda self, *a: calls.append(a))
    engine = engine_for(settings)
    assert calls == [] and not engine.ready
    assert not torch.cuda.is_initialized()
    assert os.environ["PYTORCH_NVML_BASED_CUDA_CHECK"] == "1"
    assert os.environ["TOKENIZERS_PARALLELISM"] == "false"


def test_gpu_workers_move_their_copy_after_fork_and_only_then(settings, monkeypatch):
    """The CUDA path without a GPU: the engine is told its device is cuda, the move is recorded."""
    engine = engine_for(Settings.from_env({"ENABLE_WARMUP": "false", "RUNTIME": "eager"}))
    moved = []
    model = engine.resolve(None)
    monkeypatch.setattr(model, "to", lambda device: moved.append(device))
    engine.device = "cuda"
    assert moved == []  # nothing moved in the "master"
    engine.start_worker()
    assert moved == ["cuda"] and engine.ready
    engine.start_worker()  # idempotent within one process
    assert moved == ["cuda"]


def test_device_and_dtype_choices():
    if not torch.cuda.is_available():
        assert resolve_device("auto") == "cpu"
        from app.engine.errors import UnusableSetting

        with pytest.raises(UnusableSetting, match="DEVICE"):
            resolve_device("cuda")
    assert resolve_dtype("auto", "cuda") == torch.float16
    assert resolve_dtype("bfloat16", "cpu") == torch.bfloat16
    assert resolve_dtype("float32", "cuda") == torch.float32


def test_auto_dtype_follows_the_cpu(monkeypatch):
    from app.engine import device

    monkeypatch.setattr(device, "cpu_has_native_bf16", lambda: True)
    assert device.resolve_dtype("auto", "cpu") == torch.bfloat16
    monkeypatch.setattr(device, "cpu_has_native_bf16", lambda: False)
    assert device.resolve_dtype("auto", "cpu") == torch.float32


def test_threads_follow_the_settings(settings):
    started_engine(Settings.from_env({"CPU_THREADS": "1", "ENABLE_WARMUP": "false", "RUNTIME": "eager"}))
    assert torch.get_num_threads() == 1
    torch.set_num_threads(settings.resolved_cpu_threads())


def test_ready_turns_503_while_draining(app):
    client = app.test_client()
    assert client.get("/ready").status_code == 200
    app.extensions[DRAINING_KEY] = lambda: True
    response = client.get("/ready")
    assert response.status_code == 503 and response.get_json()["error"]["code"] == "not_ready"
    assert response.headers["Retry-After"] == "1"
    assert client.get("/health").status_code == 200


def test_metrics_route_counts_requests(client):
    client.post("/embed_text", json={"texts": ["a", "b", "c"]})
    text = client.get("/metrics").get_data(as_text=True)
    assert 'embedding_requests_total{method="POST",route="/embed_text",status="200"}' in text
    assert "embedding_inference_duration_seconds_bucket" in text
    assert "embedding_batch_size_bucket" in text
    before = _sample(text, 'embedding_requests_total{method="POST",route="/embed_text",status="200"}')
    client.post("/embed_text", json={"texts": "d"})
    after = _sample(
        client.get("/metrics").get_data(as_text=True),
        'embedding_requests_total{method="POST",route="/embed_text",status="200"}',
    )
    assert after == before + 1


def _sample(text: str, key: str) -> float:
    return next(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(key + " "))


def test_stats_describe_the_worker_and_mask_secrets(engine):
    client = create_app(Settings.from_env({"API_KEYS": "top-secret"}), engine).test_client()
    assert client.get("/stats").status_code == 401
    body = client.get("/stats", headers={"Authorization": "Bearer top-secret"}).get_json()
    assert "top-secret" not in json.dumps(body)
    worker = body["worker"]
    assert worker["pid"] == os.getpid() and worker["device"] == "cpu" and worker["queue_depth"] == 0
    model = worker["models"][0]
    assert model["parameters"] > 20_000_000 and model["weight_bytes"] >= 4 * model["parameters"]
    assert worker["batches"]["count"] >= 1 and body["settings"]["max_batch_size"] == 32


def test_json_log_lines_carry_extra_fields():
    record = logging.LogRecord("app.access", logging.INFO, __file__, 1, "POST %s", ("/x",), None)
    record.request_id = "r-1"
    line = json.loads(JsonFormatter().format(record))
    assert line["msg"] == "POST /x" and line["request_id"] == "r-1" and line["level"] == "info"
    assert line["ts"].endswith("Z")


def test_gunicorn_logs_follow_the_format():
    assert gunicorn_logconfig(Settings.from_env({"LOG_FORMAT": "text"})) is None
    config = gunicorn_logconfig(Settings.from_env({"LOG_FORMAT": "json"}))
    assert config["formatters"]["json"]["()"] == "app.logs.JsonFormatter"
    assert config["loggers"]["gunicorn.access"]["propagate"] is False


@pytest.fixture
def logging_restored():
    """gunicorn's logger configures the process's logging (dictConfig, handlers): put it back afterwards."""
    loggers = [logging.getLogger(name) for name in ("", "gunicorn.error", "gunicorn.access")]
    saved = [(logger, logger.handlers[:], logger.level, logger.propagate) for logger in loggers]
    yield
    for logger, handlers, level, propagate in saved:
        logger.handlers[:] = handlers
        logger.setLevel(level)
        logger.propagate = propagate


def test_gunicorn_builds_no_access_line_that_nothing_writes(monkeypatch, logging_restored):
    """In JSON mode gunicorn.access is off (the app writes its own line), yet gunicorn counts its access log
    as enabled and would build every request's line to drop it; with an access log that writes, it still does."""
    from gunicorn.config import Config

    from app.gunicorn_logger import Logger

    built = []
    monkeypatch.setattr(Logger, "atoms", lambda self, *args: built.append(args) or {})
    json_mode = Config()
    json_mode.set("logconfig_dict", gunicorn_logconfig(Settings.from_env({"LOG_FORMAT": "json"})))
    logger = Logger(json_mode)
    assert logger.access_log_enabled  # what gunicorn's own Logger goes by
    logger.access(None, None, {}, None)
    assert built == []
    text_mode = Config()
    text_mode.set("accesslog", "-")
    Logger(text_mode).access(None, None, {}, None)
    assert len(built) == 1


def test_metrics_dir_is_wiped_on_start(tmp_path, monkeypatch):
    # setenv first, so monkeypatch restores the variable's absence after prepare_metrics_dir sets it;
    # left set, it would switch the in-process /metrics of later tests to multiprocess mode.
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", "")
    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR")
    (tmp_path / "counter_123.db").write_bytes(b"stale")
    (tmp_path / "keep.txt").write_text("not ours")
    path, created = prepare_metrics_dir(Settings.from_env({"PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}))
    assert path == str(tmp_path) and not created
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep.txt"]
    assert os.environ["PROMETHEUS_MULTIPROC_DIR"] == str(tmp_path)


def test_gpu_visible_decides_before_fork_without_cuda():
    from app.runtime import gpu_visible

    assert gpu_visible("cuda") is True and gpu_visible("cpu") is False
    assert gpu_visible("auto") == torch.cuda.is_available()
    assert not torch.cuda.is_initialized()
