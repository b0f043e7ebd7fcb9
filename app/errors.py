"""The errors the service answers with over HTTP.

Each one carries what the OpenAI-style envelope needs
(`{"error": {"message", "type", "param", "code"}}`), its HTTP status and any
headers. The engine raises its own errors, which carry no HTTP
(`app/engine/errors.py`); `from_engine` is where they get their status, once
for every surface, whose handlers then shape the envelope their peer speaks.
"""

from __future__ import annotations

from .engine import errors as engine


class ServiceError(Exception):
    status = 500
    type = "server_error"
    code: str | None = None

    def __init__(
        self, message: str, *, param: str | None = None, code: str | None = None, headers: dict[str, str] | None = None
    ):
        super().__init__(message)
        self.message = message
        self.param = param
        if code is not None:
            self.code = code
        self.headers = headers or {}

    def envelope(self) -> dict:
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}


class InvalidRequest(ServiceError):
    status = 400
    type = "invalid_request_error"
    code = "invalid_request"


class Unauthorized(ServiceError):
    status = 401
    type = "authentication_error"
    code = "invalid_api_key"


class NotFound(ServiceError):
    status = 404
    type = "invalid_request_error"
    code = "not_found"


class ModelNotFound(NotFound):
    code = "model_not_found"


class MethodNotAllowed(ServiceError):
    status = 405
    type = "invalid_request_error"
    code = "method_not_allowed"


class RequestTimeout(ServiceError):
    status = 408
    type = "invalid_request_error"
    code = "body_timeout"


class PayloadTooLarge(ServiceError):
    status = 413
    type = "invalid_request_error"
    code = "payload_too_large"


class UnsupportedMediaType(ServiceError):
    status = 415
    type = "invalid_request_error"
    code = "unsupported_media_type"


class NotReady(ServiceError):
    status = 503
    type = "server_error"
    code = "not_ready"


class Overloaded(ServiceError):
    status = 503
    type = "server_error"
    code = "overloaded"


class InferenceFailed(ServiceError):
    status = 500
    type = "server_error"
    code = "inference_failed"


def from_engine(error: engine.EngineError) -> ServiceError:
    """An engine error as the service answers it: the caller's input 400 (413 over a budget), an unknown model
    404, overload 503 with Retry-After, a failed forward pass 500."""
    if isinstance(error, engine.Overloaded):
        return Overloaded(error.message, headers={"Retry-After": str(max(1, round(error.retry_after)))})
    kind = {
        engine.TooLarge: PayloadTooLarge,
        engine.InvalidInput: InvalidRequest,
        engine.ModelNotFound: ModelNotFound,
        engine.InferenceFailed: InferenceFailed,
    }
    status_class = next((kind[cls] for cls in type(error).__mro__ if cls in kind), ServiceError)
    return status_class(error.message, param=error.param, code=error.code)


def as_service_error(error: Exception) -> ServiceError:
    return from_engine(error) if isinstance(error, engine.EngineError) else error
