"""JSON request bodies -> validated request models, or an InvalidRequest that names the field."""

from __future__ import annotations

from typing import TypeVar

import orjson
from flask import request
from pydantic import BaseModel, ValidationError

from ..config import Settings
from ..errors import InvalidRequest, UnsupportedMediaType

Model = TypeVar("Model", bound=BaseModel)


def parse_json(model_cls: type[Model], accepted: str = "application/json") -> Model:
    mimetype = request.mimetype
    # No Content-Type at all is taken as JSON (some clients omit it); anything else must say JSON.
    if mimetype and mimetype != "application/json" and not mimetype.endswith("+json"):
        raise UnsupportedMediaType(
            f"Content-Type must be {accepted}, got {request.content_type!r}", param="Content-Type")
    raw = request.get_data(cache=False)
    if not raw:
        raise InvalidRequest("the request body is empty; send a JSON object", code="invalid_json")
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise InvalidRequest(f"the request body is not valid JSON: {exc}", code="invalid_json") from None
    if not isinstance(body, dict):
        raise InvalidRequest("the request body must be a JSON object", code="invalid_json")
    return validate(model_cls, body)


def validate(model_cls: type[Model], data: dict) -> Model:
    try:
        return model_cls.model_validate(data)
    except ValidationError as exc:
        raise _first_error(exc) from None


def _first_error(exc: ValidationError) -> InvalidRequest:
    error = exc.errors(include_url=False)[0]
    param = _param(error["loc"])
    message = error["msg"]
    if error["type"] == "missing":
        message = "is required"
    elif error["type"] == "extra_forbidden":
        message = "is not a known field"
    return InvalidRequest(f"{param}: {message}" if param else message, param=param or None)


def _param(loc: tuple) -> str:
    """('texts', 2) -> 'texts[2]'; union branch names like 'list[str]' are dropped."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif "[" in part or part in ("str", "int", "bool", "float", "none"):
            continue
        else:
            out += f".{part}" if out else part
    return out


def check_items(items: list, settings: Settings, field: str) -> None:
    """Batch-size and length limits that depend on the settings, not on the schema."""
    if len(items) > settings.max_batch_items:
        raise InvalidRequest(
            f"{field} has {len(items)} items; at most {settings.max_batch_items} are allowed per request "
            "(MAX_BATCH_ITEMS)", param=field, code="too_many_items")
    for index, item in enumerate(items):
        if len(item) > settings.max_input_chars:
            unit = "characters" if isinstance(item, str) else "token ids"
            raise InvalidRequest(
                f"{field}[{index}] has {len(item)} {unit}; at most {settings.max_input_chars} are allowed "
                "(MAX_INPUT_CHARS)", param=f"{field}[{index}]", code="input_too_long")
