"""The HTTP layer: routes, request parsing, the error envelope. Never imports torch."""

from __future__ import annotations

from flask import Flask

from ..config import Settings
from .classify import routes as classify
from .cohere import routes as cohere
from .gme import routes as gme
from .http import docs
from .http.auth import init_auth
from .http.context import ENGINE_KEY, FETCHER_KEY, SETTINGS_KEY
from .http.error_handlers import init_error_handlers
from .http.image_inputs import make_fetcher
from .http.observability import init_observability
from .http.tracing import init_tracing
from .native import images as image_routes
from .native import media as media_routes
from .native import similarity
from .native import texts as embeddings
from .ollama import routes as ollama
from .openai import routes as openai
from .operations import routes as meta
from .rerank import routes as rerank
from .tei import routes as tei


def init_api(app: Flask, settings: Settings, engine, tracing=None) -> None:
    """`tracing`: the TracingObserver (app/tracing.py) when traces are on."""
    app.extensions[SETTINGS_KEY] = settings
    app.extensions[ENGINE_KEY] = engine
    app.extensions[FETCHER_KEY] = make_fetcher(settings)
    app.config["MAX_CONTENT_LENGTH"] = settings.max_content_length
    init_error_handlers(app, settings.max_content_length)
    init_observability(app, settings, engine)
    if tracing is not None:
        init_tracing(app, tracing)
    init_auth(app, settings.api_keys)
    app.register_blueprint(openai.bp)
    app.register_blueprint(embeddings.bp)
    app.register_blueprint(image_routes.bp)
    app.register_blueprint(media_routes.bp)
    app.register_blueprint(similarity.bp)
    app.register_blueprint(rerank.bp)
    app.register_blueprint(classify.bp)
    app.register_blueprint(gme.bp)
    app.register_blueprint(ollama.bp)
    app.register_blueprint(tei.bp)
    app.register_blueprint(cohere.bp)
    app.register_blueprint(meta.bp)
    app.register_blueprint(docs.bp)
