"""What runs in the gunicorn master before fork, and in each worker after it.

gunicorn.conf.py's hooks are one line each and call in here.
"""

from __future__ import annotations

import gc
import logging
import sys

from .config import ConfigError, Settings

log = logging.getLogger(__name__)


def configure_logging(settings: Settings) -> None:
    root = logging.getLogger()
    if not root.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s [%(process)d] [%(levelname)s] %(name)s: %(message)s"))
        root.addHandler(handler)
    root.setLevel(settings.log_level.upper())


def load_engine(settings: Settings):
    """Master (or single process): load weights in their final dtype; run nothing."""
    from .engine import Engine

    log.info("settings: %s", settings.public_dict())
    try:
        return Engine.load(settings)
    except ConfigError:
        raise
    except (OSError, ValueError) as exc:
        path = settings.resolved_model_path()
        raise ConfigError("MODEL_PATH", f"cannot load a model from {str(path)!r}: {exc}") from exc


def freeze_master_heap() -> None:
    """Move everything allocated so far out of the collector's reach before fork,
    so a collection in a worker never writes to (and un-shares) the model's pages."""
    gc.collect()
    gc.freeze()


def start_worker(wsgi_app) -> None:
    """Worker, after fork: torch threads, device move, warm-up; then /ready turns 200."""
    from .api.context import ENGINE_KEY

    wsgi_app.extensions[ENGINE_KEY].start_worker()
