"""Field types, validators and response parts every surface's schemas share.

Validation runs in strict mode on the parsed JSON, so `"normalize": "yes"` or
`"dimensions": "64"` is an error rather than a guess. Polymorphic inputs are
normalised by hand in before-validators, which raise `InvalidRequest` naming
the exact offending index (pydantic's union errors would list every branch).
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from ...errors import InvalidRequest

EncodingFormat = Literal["float", "base64"]


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


class TruncationFields(BaseModel):
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
