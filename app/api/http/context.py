"""Where the views find what the factory bound to the app."""

from __future__ import annotations

from flask import current_app

from ...config import Settings

ENGINE_KEY = "embedding_engine"
SETTINGS_KEY = "embedding_settings"
FETCHER_KEY = "embedding_image_fetcher"
# A callable, set in gunicorn workers: true once the worker has been told to stop.
DRAINING_KEY = "embedding_draining"


def engine():
    return current_app.extensions[ENGINE_KEY]


def settings() -> Settings:
    return current_app.extensions[SETTINGS_KEY]


def image_fetcher():
    """The URL fetcher, or None when IMAGE_URL_FETCH is off."""
    return current_app.extensions.get(FETCHER_KEY)
