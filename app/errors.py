"""The errors the service answers with, shared by the engine and the web layer.

Each one carries what the OpenAI-style envelope needs
(`{"error": {"message", "type", "param", "code"}}`) and its HTTP status, so
the engine can say precisely what was wrong with an input without knowing
anything about Flask.
"""

from __future__ import annotations


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
