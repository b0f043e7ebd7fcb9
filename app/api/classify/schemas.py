"""Request and response models of the classification routes: text-embeddings-inference's `/predict` (and
`POST /` for a classifier, in the Hugging Face Inference API's shape), Infinity's `/classify` and the native
`/classify_text`."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, RootModel, field_validator

from ...errors import InvalidRequest
from ..http.fields import EMPTY, RequestBody, Text, TruncationFields, Usage, json_type, text_list

# A text, or a text and the text it is paired with (NLI: premise, hypothesis).
ClassifyInput = Text | list[Text]


def classify_inputs(value, field: str) -> list[str | tuple[str, str]]:
    """A list of texts and [text, text pair] lists -> texts and (text, pair) tuples."""
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list):
        raise InvalidRequest(f"{field} must be a string or a list of strings and [text, text pair] lists", param=field)
    if not value:
        raise InvalidRequest(f"{field} must not be empty", param=field, code=EMPTY)
    return [classify_input(item, f"{field}[{index}]") for index, item in enumerate(value)]


def classify_input(item, param: str) -> str | tuple[str, str]:
    if isinstance(item, list):
        if len(item) == 1:
            item = item[0]
        elif len(item) == 2:
            first, second = (text_list(part, f"{param}[{n}]")[0] for n, part in enumerate(item))
            return (first, second)
        else:
            raise InvalidRequest(
                f"{param} has {len(item)} texts; an input is a text or a pair [text, text pair]", param=param
            )
    if not isinstance(item, str):
        raise InvalidRequest(
            f"{param} must be a string or a [text, text pair] list, got {json_type(item)}", param=param
        )
    if not item:
        raise InvalidRequest(f"{param} is an empty string", param=param)
    return item


class _ClassifyBody(TruncationFields):
    model: str | None = Field(default=None, description="A served classifier; defaults to the first one.")
    raw_scores: bool = Field(default=False, description="The logits, without the model's softmax or sigmoid.")


class PredictRequest(_ClassifyBody):
    """text-embeddings-inference's `POST /predict`: a text, a pair `[text, text pair]`, or a batch of
    `[text]` and `[text, text pair]` lists."""

    inputs: ClassifyInput | list[list[Text]] = Field(description="A text, a pair, or a batch of [text] / [a, b].")

    def batch(self) -> tuple[list[str | tuple[str, str]], bool]:
        """The inputs, and whether the body was a batch (answered as a list of lists)."""
        value = self.inputs
        if isinstance(value, str):
            return [classify_input(value, "inputs")], False
        if value and isinstance(value[0], list):
            return classify_inputs(value, "inputs"), True
        if not value:
            raise InvalidRequest("inputs must not be empty", param="inputs", code=EMPTY)
        return [classify_input(value, "inputs")], False


class Prediction(BaseModel):
    score: float
    label: str


class PredictResponse(RootModel[list[Prediction] | list[list[Prediction]]]):
    """Every label, best first; a list of them per input for a batch."""


class InferenceParameters(RequestBody):
    model_config = ConfigDict(extra="ignore", strict=True)

    function_to_apply: str | None = Field(default=None, description="softmax, sigmoid or none")
    top_k: int | None = Field(default=None, ge=1, description="Only the best K labels.")

    @field_validator("function_to_apply", mode="before")
    @classmethod
    def _check_function(cls, value):
        if value is not None and value not in ("softmax", "sigmoid", "none"):
            raise InvalidRequest(
                "parameters.function_to_apply must be softmax, sigmoid or none", param="parameters.function_to_apply"
            )
        return value


class InferenceRequest(RequestBody):
    """The Hugging Face Inference API's text-classification body (huggingface_hub's `text_classification`)."""

    model_config = ConfigDict(extra="ignore", strict=True)

    inputs: ClassifyInput | list[list[Text]]
    parameters: InferenceParameters | None = None
    model: str | None = None


class ClassifyRequest(RequestBody):
    """Infinity's `POST /classify`."""

    model_config = ConfigDict(extra="ignore", strict=True)

    input: list[Text] | Text = Field(description="Texts to classify.")
    model: str | None = Field(default=None, description="A served classifier; defaults to the first one.")
    raw_scores: bool = False

    @field_validator("input", mode="before")
    @classmethod
    def _check_input(cls, value):
        return text_list(value, "input")


class ClassifyResponse(BaseModel):
    object: str = "classify"
    data: list[list[Prediction]]
    model: str
    usage: Usage
    id: str
    created: int


class ClassifyTextRequest(_ClassifyBody):
    """The native `POST /classify_text`: texts and pairs, with top-k and a threshold."""

    texts: list[Text | tuple[Text, Text]] | Text = Field(
        description="Texts, and [text, text pair] lists for pair models (NLI)."
    )
    top_k: int | None = Field(default=None, ge=1, description="Only the best K labels of each input.")
    threshold: float | None = Field(default=None, description="Only labels scoring at least this.")
    cache: bool = True

    @field_validator("texts", mode="before")
    @classmethod
    def _check_texts(cls, value):
        return classify_inputs(value, "texts")


class LabelScore(BaseModel):
    label: str
    score: float


class ClassifyTextResponse(BaseModel):
    model: str
    labels: list[str] = Field(description="Every label of the model, in its id order.")
    predictions: list[list[LabelScore]] = Field(description="Per input, its labels best first.")
    usage: Usage
