"""Embedding service: a Flask app factory over a torch + transformers engine."""

from __future__ import annotations

from flask import Flask

from .config import Settings
from .version import __version__

__all__ = ["__version__", "create_app"]


def create_app(settings: Settings | None = None, engine=None) -> Flask:
    """Build the WSGI app.

    `engine` is anything with the Engine interface; when omitted the models
    named by the settings are loaded here, which under gunicorn's preload
    happens once, in the master.
    """
    from .api import init_api
    from .logs import configure_logging

    settings = settings or Settings.from_env()
    configure_logging(settings)
    tracing = None
    if settings.otel_traces_endpoint:
        from .tracing import TracingObserver

        tracing = TracingObserver(settings.otel_traces_endpoint)  # starts in each worker, never here
    if engine is None:
        from .metrics import MetricsObserver
        from .runtime import load_engine

        engine = load_engine(settings, observer=tracing or MetricsObserver())
    app = Flask(__name__)
    init_api(app, settings, engine, tracing)
    return app
