"""Field types, validators and response parts every surface's schemas share.

Validation runs in strict mode on the parsed JSON, so `"normalize": "yes"` or
`"dimensions": "64"` is an error rather than a guess. Polymorphic inputs are
normalised by hand in before-validators, which raise `InvalidRequest` naming
the exact offending index (pydantic's union errors would list every branch).
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from ...errors import InvalidRequest

EncodingFormat = Literal["float", "base64"]


def _nullable_optionals(schema: dict) -> None:
    """The document says what the bodies take: every optional property may also be null."""
    required = set(schema.get("required", ()))
    for name, prop in (schema.get("properties") or {}).items():
        if name in required:
            continue
        branches = prop.get("anyOf")
        if branches is not None:
            if {"type": "null"} not in branches:
                branches.append({"type": "null"})
            continue
        kept = {key: prop.pop(key) for key in ("title", "description", "default", "examples") if key in prop}
        schema["properties"][name] = {"anyOf": [prop, {"type": "null"}], **kept}


class RequestBody(BaseModel):
    """Every request body's base: an optional field sent as `null` is a field not sent. SDKs send explicit
    nulls for the options a caller left unset (the cohere SDK's `truncate`, OpenAI-style clients'
    `encoding_format`); a required field's null, and an unknown field's, are still the body's error."""

    model_config = ConfigDict(json_schema_extra=lambda schema, cls: _nullable_optionals(schema))

    @model_validator(mode="before")
    @classmethod
    def _null_is_absent(cls, data):
        if not isinstance(data, dict) or None not in data.values():
            return data
        fields = cls.model_fields
        return {
            name: value
            for name, value in data.items()
            if value is not None or name not in fields or fields[name].is_required()
        }


# text-embeddings-inference's spellings are accepted too ("Left", "Right").
TruncationDirection = Annotated[
    Literal["left", "right"],
    Field(description="Which end of an over-long input is cut: right (its end, the default) or left (its start)."),
]


Precision = Annotated[
    Literal["float32", "int8", "uint8", "binary", "ubinary"],
    Field(
        description="As sentence-transformers' encode(precision=...): int8/uint8 scale each dimension by ranges "
        "calibrated once per model; binary/ubinary pack one bit per dimension (> 0) into bytes."
    ),
]


# What the before-validators enforce, said in the schema too (minLength, minItems), so /openapi.json and the
# service agree on what is valid.
Text = Annotated[str, Field(min_length=1)]


TextList = Annotated[list[Text], Field(min_length=1)]


Texts = Text | TextList


# The error code of an empty input list, which text-embeddings-inference answers as its own kind of error.
EMPTY = "empty_input"


OutputType = Literal["dense", "sparse", "colbert"]


Dimensions = Annotated[int, Field(gt=0, description="Keep the first N components, then re-normalise.")]


CacheOption = Annotated[bool, Field(description="false: compute, neither reading nor writing the embedding cache.")]


def text_list(value, field: str) -> list[str]:
    """A string or a non-empty list of non-empty strings -> list of strings."""
    return string_list(value, field, "", "")


def image_list(value, field: str) -> list[str]:
    """One image string or a non-empty list of them; what each string holds is checked later."""
    return string_list(value, field, " (base64, data: URIs or URLs)", " (base64, a data: URI or a URL)")


def string_list(value, field: str, what: str, each: str) -> list[str]:
    """`what` and `each` say what the strings hold, in the messages for the list and for one item."""
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list):
        raise InvalidRequest(f"{field} must be a string or a list of strings{what}", param=field)
    if not value:
        raise InvalidRequest(f"{field} must not be empty", param=field, code=EMPTY)
    for index, item in enumerate(value):
        if not isinstance(item, str):
            raise InvalidRequest(
                f"{field}[{index}] must be a string{each}, got {json_type(item)}", param=f"{field}[{index}]"
            )
        blank = not item.strip() if what else not item  # a text of spaces is a text; an image's is not
        if blank:
            raise InvalidRequest(f"{field}[{index}] is an empty string", param=f"{field}[{index}]")
    return value


def direction_of(value) -> str:
    """text-embeddings-inference's clients send "Right"/"Left" as well as "right"/"left"."""
    if isinstance(value, str) and value.lower() in ("left", "right"):
        return value.lower()
    raise InvalidRequest("truncation_direction must be 'left' or 'right'", param="truncation_direction")


def json_type(value) -> str:
    if value is None:
        return "null"
    return {
        bool: "a boolean",
        int: "a number",
        float: "a number",
        str: "a string",
        list: "an array",
        dict: "an object",
    }.get(type(value), type(value).__name__)


class TruncationFields(RequestBody):
    """text-embeddings-inference's truncation options, which its classification peers share: `truncate`
    null or true cuts an over-long input (its --auto-truncate default), false makes it a 4xx."""

    model_config = ConfigDict(extra="ignore", strict=True)

    truncate: bool | None = Field(
        default=None,
        description="Cut over-long inputs (null: yes, as TEI's --auto-truncate default); false makes them a 4xx.",
    )
    truncation_direction: TruncationDirection = "right"

    @field_validator("truncation_direction", mode="before")
    @classmethod
    def _check_direction(cls, value):
        return direction_of(value)

    @property
    def truncates(self) -> bool:
        return self.truncate is not False


# -------------------------------------------------------------------- responses
class Usage(BaseModel):
    prompt_tokens: int
    total_tokens: int


class ErrorDetail(BaseModel):
    message: str
    type: str
    param: str | None
    code: str | None


class ErrorResponse(BaseModel):
    error: ErrorDetail
