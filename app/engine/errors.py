"""What can go wrong in the engine, said without HTTP.

Each error says what was wrong and, where the caller can fix it, which
parameter (`param`, in the caller's terms: `texts[3]`) and a stable `code`.
How that reaches a client (a status, an envelope, a Retry-After header) is the
API layer's business: each surface maps these once, the way TEI's router maps
its core's `TextEmbeddingsError`.
"""

from __future__ import annotations


class EngineError(Exception):
    code = "engine_error"

    def __init__(self, message: str, *, param: str | None = None, code: str | None = None):
        super().__init__(message)
        self.message = message
        self.param = param
        if code is not None:
            self.code = code


class InvalidInput(EngineError):
    """The caller's input cannot be served as it is: too long, empty, malformed, or for another model."""

    code = "invalid_request"


class Unsupported(InvalidInput):
    """The model cannot do what was asked (a modality, an output, a task or a precision it does not have)."""

    code = "unsupported"


class TooLarge(InvalidInput):
    """Legal in every part, but more than one request may cost: tokens, image tokens or numbers in the answer
    over a budget (budgets.py). The message names the setting."""

    code = "request_too_large"


class ModelNotFound(EngineError):
    code = "model_not_found"


class Overloaded(EngineError):
    """Not now: the queue is full or the request waited too long. `retry_after`: seconds worth waiting."""

    code = "overloaded"

    def __init__(self, message: str, *, retry_after: float = 1.0):
        super().__init__(message)
        self.retry_after = retry_after


class InferenceFailed(EngineError):
    """The model raised while computing: this request fails, the worker serves on."""

    code = "inference_failed"


class UnusableSetting(EngineError):
    """A setting the engine was given cannot be honoured here (DEVICE=cuda without a GPU)."""

    code = "unusable_setting"

    def __init__(self, setting: str, message: str):
        super().__init__(message, param=setting)
        self.setting = setting

    def __str__(self) -> str:
        return f"{self.setting}: {self.message}"


class ModelLoadError(ValueError):
    """One entry of the model list could not be loaded; says which (the service turns it into a config error)."""

    def __init__(self, spec, reason: str):
        super().__init__(f"{spec.name}={spec.path}: {reason}")
        self.spec = spec
