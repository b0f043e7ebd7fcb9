"""Log formatting: one JSON object per line for machines, plain text for a terminal."""

from __future__ import annotations

import logging
import sys
import time

import orjson

from .config import Settings

_TEXT_FORMAT = "%(asctime)s [%(process)d] [%(levelname)s] %(name)s: %(message)s"
# Attributes every LogRecord has; anything else was passed with `extra=` and is a field.
_STANDARD = set(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {"message", "asctime", "taskName"}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "pid": record.process,
            "msg": record.getMessage(),
        }
        entry.update({k: v for k, v in record.__dict__.items() if k not in _STANDARD})
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return orjson.dumps(entry, default=str).decode()


def uses_json(settings: Settings) -> bool:
    if settings.log_format == "auto":
        return not sys.stderr.isatty()
    return settings.log_format == "json"


def make_formatter(settings: Settings) -> logging.Formatter:
    return JsonFormatter() if uses_json(settings) else logging.Formatter(_TEXT_FORMAT)


def configure_logging(settings: Settings) -> None:
    """Give the app's loggers a stderr handler, unless logging was configured already
    (by gunicorn's logconfig_dict below, a test runner, or the embedding program)."""
    root = logging.getLogger()
    if not root.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(make_formatter(settings))
        root.addHandler(handler)
    root.setLevel(settings.log_level.upper())


def gunicorn_logconfig(settings: Settings) -> dict | None:
    """In JSON mode, gunicorn's own lines go through the same formatter, on stderr.

    gunicorn's access line is switched off: the app writes a richer one per
    request (request id, items, tokens, queue and inference time).
    """
    if not uses_json(settings):
        return None
    level = settings.log_level.upper()
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"json": {"()": "app.logs.JsonFormatter"}},
        "handlers": {"stderr": {"class": "logging.StreamHandler", "formatter": "json", "stream": "ext://sys.stderr"}},
        "root": {"level": level, "handlers": ["stderr"]},
        "loggers": {
            "gunicorn.error": {"level": level, "handlers": [], "propagate": True},
            "gunicorn.access": {"level": "CRITICAL", "handlers": [], "propagate": False},
        },
    }
