"""Engines for tests, built as the app factory builds them: from Settings, with the metrics observer."""

from __future__ import annotations

from app.config import Settings
from app.engine import Engine, EngineConfig, Lane
from app.engine.rows import Prepared, forward_planned
from app.metrics import MetricsObserver


def engine_for(settings: Settings) -> Engine:
    """Loaded as in the gunicorn master: not started in this process."""
    return Engine.load(EngineConfig.from_settings(settings), observer=MetricsObserver())


def started_engine(settings: Settings) -> Engine:
    """Loaded and started in this process, as a worker after fork (or a single-process server) has it."""
    engine = engine_for(settings)
    engine.start_worker()
    return engine


def vectors_of(model, prepared: Prepared, batch_size: int = 32):
    """A prepared request straight through the model (no batcher): its raw dense vectors."""
    return forward_planned(Lane(model, "text"), prepared, batch_size).dense


def serving_fixtures(**env: str):
    """A module's `settings`, `engine` and `client` fixtures, serving the models of its `directories` fixture (a
    name -> directory dict) in float32 with `env` on top: `settings, engine, client = serving_fixtures()`."""
    import pytest

    from app import create_app

    from .tiny_models import models_setting

    @pytest.fixture(scope="module")
    def settings(directories):
        return Settings.from_env({"DTYPE": "float32", "MODELS": models_setting(directories), **env})

    @pytest.fixture(scope="module")
    def engine(settings):
        return started_engine(settings)

    @pytest.fixture
    def client(settings, engine):
        return create_app(settings, engine).test_client()

    return settings, engine, client
