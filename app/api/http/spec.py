"""Route metadata that both protects the route and documents it in /openapi.json."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from pydantic import BaseModel


@dataclass(frozen=True)
class Operation:
    summary: str
    response: type[BaseModel]
    request: type[BaseModel] | None = None
    # The form fields of a multipart/form-data alternative, which also carries files.
    multipart: type[BaseModel] | None = None
    auth: bool = False
    tags: tuple[str, ...] = ()
    errors: tuple[int, ...] = field(default=())
    media_type: str = "application/json"
    # The error body's shape where it is not the OpenAI envelope (the compatibility routes answer in their peer's).
    error: type[BaseModel] | None = None
    # The id clients' generated code names the operation by; by default "<blueprint>_<view>". Routes that moved
    # to another blueprint keep the id they were published under.
    operation_id: str | None = None


def operation(**kwargs) -> Callable:
    """Attach an Operation to a view function; route registration stays Flask's own."""
    op = Operation(**kwargs)

    def attach(view: Callable) -> Callable:
        view.operation = op
        return view

    return attach


def operation_of(view: Callable | None) -> Operation | None:
    return getattr(view, "operation", None)
