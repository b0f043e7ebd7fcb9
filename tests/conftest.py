"""Fixture chain: settings -> engine (the real default model, loaded once) -> app -> client."""

from __future__ import annotations

import os

import pytest

from app import create_app
from app.config import Settings

from .engines import started_engine

# The suite starts dozens of servers: compiling in each would cost minutes of CPU. They inherit RUNTIME=eager
# unless they ask for a runtime (tests/test_compiled_runtime.py does); in-process engines built from a dict of
# settings in bfloat16 say RUNTIME=eager themselves.
os.environ.setdefault("RUNTIME", "eager")

# Correctness is checked against sentence-transformers in float32; DTYPE=auto
# (bfloat16 on CPUs with native bf16) has its own accuracy test.
FLOAT32 = {"DTYPE": "float32"}


@pytest.fixture(scope="session")
def settings() -> Settings:
    return Settings.from_env(FLOAT32)


@pytest.fixture(scope="session")
def engine(settings):
    return started_engine(settings)


@pytest.fixture(scope="session")
def model(engine):
    return engine.resolve(None)


@pytest.fixture
def app(settings, engine):
    return create_app(settings, engine)


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture(scope="session")
def reference_model(settings):
    """sentence-transformers on the same directory: the ground truth for vectors."""
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(settings.resolved_model_path()), device="cpu")


@pytest.fixture(scope="session")
def fake(settings):
    """The fake engine (tests/fake_engine.py) under the default model's name, for tests of shapes and errors."""
    from .fake_engine import fake_engine

    return fake_engine(settings, name="all-MiniLM-L6-v2")


@pytest.fixture
def fake_client(settings, fake):
    return create_app(settings, fake).test_client()
