"""Every error leaves as the one OpenAI-style envelope, whatever raised it."""

from __future__ import annotations

import logging

from flask import Flask, current_app, request
from werkzeug.exceptions import HTTPException

from ...engine.errors import EngineError
from ...errors import (
    InvalidRequest,
    MethodNotAllowed,
    NotFound,
    PayloadTooLarge,
    ServiceError,
    UnsupportedMediaType,
    from_engine,
)
from .encoding import json_response
from .observability import record_error

log = logging.getLogger(__name__)


def error_response(error: ServiceError):
    record_error(error)
    return json_response(error.envelope(), status=error.status, headers=error.headers)


def init_error_handlers(app: Flask, max_content_length: int) -> None:
    app.register_error_handler(ServiceError, error_response)

    @app.errorhandler(EngineError)
    def _engine_error(exc: EngineError):
        # Dispatched again as the service error it maps to, so that a surface's own handler (Cohere's,
        # Ollama's) shapes it in its peer's envelope.
        return current_app.handle_user_exception(from_engine(exc))

    @app.errorhandler(HTTPException)
    def _http_error(exc: HTTPException):
        return error_response(_translate(exc, max_content_length))

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception):
        log.exception("unhandled error on %s %s", request.method, request.path)
        return error_response(ServiceError(f"internal error: {type(exc).__name__}"))


def _translate(exc: HTTPException, max_content_length: int) -> ServiceError:
    if exc.code == 404:
        return NotFound(f"no route {request.method} {request.path}")
    if exc.code == 405:
        allowed = sorted(m for m in (exc.valid_methods or []) if m not in ("HEAD", "OPTIONS"))
        error = MethodNotAllowed(
            f"method {request.method} is not allowed on {request.path}; allowed: {', '.join(allowed)}"
        )
        error.headers = {"Allow": ", ".join(exc.valid_methods or [])}
        return error
    if exc.code == 413:
        return PayloadTooLarge(f"the request body is larger than {max_content_length} bytes (MAX_CONTENT_LENGTH)")
    if exc.code == 415:
        return UnsupportedMediaType(exc.description or "unsupported media type")
    if exc.code == 400:
        return InvalidRequest(exc.description or "bad request")
    error = ServiceError(exc.description or exc.name)
    error.status = exc.code or 500
    return error
