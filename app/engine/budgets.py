"""What one request may cost a worker, checked when its rows are known and before any of them runs.

Sizes checked at the door (items, characters, body bytes) do not bound what a request costs: 2,048 texts of
480 characters are a legal body that holds a CPU worker for a minute, and the same texts asked for every
token's vector answer 1.5 GB of JSON. Once the inputs are rows, their cost is known exactly; these budgets
refuse (413, naming the setting) what would run past REQUEST_TIMEOUT or answer more than a worker should
hold, before anything is queued:

- tokens (MAX_REQUEST_TOKENS; 0, the default: what this worker computes in REQUEST_TIMEOUT at the rate it
  measured for this model and kind of row, in warm-up and in every batch since);
- tokens of inputs with images (MAX_REQUEST_IMAGE_TOKENS): a picture's preprocessed pixels cost memory in
  proportion to its tokens after resizing (a GME image at 1,280 tokens holds 24 MB), counted as each one
  is prepared so that the request stops at the first image over the budget;
- numbers in the answer (MAX_RESPONSE_VALUES): dense vectors, per-token vectors (token embeddings, ColBERT
  multi-vectors) and sparse weights, counted from the token counts before the forward pass.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

from .capabilities import COLBERT, RERANK, SPARSE, TOKENS
from .errors import TooLarge

# How much each measured batch's rate counts against the ones before it: recent batches (the load this worker
# is under now) count most, and one slow batch does not halve the budget.
DECAY = 0.9
# Short passes measure mostly a pass's fixed cost (a one-text request: 8 tokens in 15 ms, a tenth of the rate
# a large request is computed at): a pass counts when it has this many tokens or ran this long (a slow model's
# passes are cut to a row or two, see batcher.PASS_SECONDS, and must still be measured).
MEASURED_MIN_TOKENS = 256
MEASURED_MIN_SECONDS = 0.1


@dataclass(frozen=True)
class Budgets:
    request_tokens: int = 0  # 0: auto, the measured rate x request_timeout
    request_image_tokens: int = 32_768
    response_values: int = 16_777_216
    request_timeout: float = 30.0


class Throughput:
    """Tokens a second that one kind of row goes through one model in this worker, in batches large enough to
    say how fast a large request runs. (A worker's first such pass, in warm-up, is about a fifth slower than
    the ones after: it counts, and the budget starts a little low.)"""

    def __init__(self):
        self._tokens = 0.0
        self._seconds = 0.0
        self._lock = threading.Lock()

    def add(self, tokens: int, seconds: float) -> None:
        if tokens < MEASURED_MIN_TOKENS and seconds < MEASURED_MIN_SECONDS:
            return
        with self._lock:
            self._tokens = self._tokens * DECAY + tokens
            self._seconds = self._seconds * DECAY + seconds

    @property
    def rate(self) -> float | None:
        """None until a batch has been measured."""
        return self._tokens / self._seconds if self._seconds > 0 else None


def check_request(budgets: Budgets, model, prepared, request, rate: float | None) -> None:
    """A request's tokens and the numbers its answer would hold, against their budgets."""
    check_tokens(budgets, prepared, request.field, rate)
    if RERANK not in prepared.outputs:
        check_response(budgets, model, prepared, request.field, getattr(request, "sparse_top_k", None))


def token_budget(budgets: Budgets, rate: float | None) -> int | None:
    """Tokens one request may have: the setting, or what `rate` computes in REQUEST_TIMEOUT (None: no rate yet)."""
    if budgets.request_tokens:
        return budgets.request_tokens
    return None if rate is None else int(rate * budgets.request_timeout)


def check_tokens(budgets: Budgets, prepared, field: str, rate: float | None) -> None:
    tokens = prepared.token_count
    if budgets.request_tokens:
        if tokens > budgets.request_tokens:
            raise TooLarge(
                f"{field} add up to {tokens} tokens; at most {budgets.request_tokens} are allowed per request "
                "(MAX_REQUEST_TOKENS); send them in several requests",
                param=field,
            )
        return
    if rate is None or len(prepared.rows) < 2:  # nothing measured yet; one input is never refused for time
        return
    allowed = token_budget(budgets, rate)
    if tokens > allowed:
        raise TooLarge(
            f"{field} add up to {tokens} tokens; this worker computes about {rate:.0f} tokens a second for this "
            f"model, so about {allowed} finish within REQUEST_TIMEOUT ({budgets.request_timeout:g} s) "
            "(MAX_REQUEST_TOKENS=0: measured); send them in several requests, or set MAX_REQUEST_TOKENS",
            param=field,
        )


def response_values(model, prepared, sparse_top_k: int | None = None) -> tuple[int, list[str]]:
    """How many numbers the answer to these rows holds, and what they are, in words. A sparse row holds an
    (id, weight) pair for each weight the model may give it (see ServedModel.sparse_width), at most
    `sparse_top_k`."""
    tokens = prepared.token_count
    parts = []
    if "dense" in prepared.outputs:
        parts.append((len(prepared.rows) * model.dimension, f"{len(prepared.rows)} vectors of {model.dimension}"))
    for output, what in ((TOKENS, "token vectors"), (COLBERT, "multi-vectors")):
        if output in prepared.outputs:
            width = model.token_width(output)
            parts.append((tokens * width, f"{what} of {width} for {tokens} tokens"))
    if SPARSE in prepared.outputs:
        widths = [model.sparse_width(len(row)) for row in prepared.rows]
        if sparse_top_k is not None:
            widths = [min(width, sparse_top_k) for width in widths]
        weights = sum(widths)
        parts.append((2 * weights, f"{weights} sparse weights at most"))
    return sum(count for count, _ in parts), [words for _, words in parts]


def check_response(budgets: Budgets, model, prepared, field: str, sparse_top_k: int | None = None) -> None:
    values, parts = response_values(model, prepared, sparse_top_k)
    if values > budgets.response_values:
        raise TooLarge(
            f"the answer would hold {values} numbers ({', '.join(parts)}); at most {budgets.response_values} "
            "are allowed per response (MAX_RESPONSE_VALUES); send fewer or shorter inputs per request",
            param=field,
        )


class ImageTokens:
    """Counts the tokens of a request's inputs with images as each is prepared (see the module's notes)."""

    def __init__(self, budgets: Budgets, field: str):
        self.budget = budgets.request_image_tokens
        self.field = field
        self.total = 0

    def add(self, row, param: str) -> None:
        self.total += len(row)
        if self.total > self.budget:
            raise TooLarge(
                f"{self.field} up to {param} add up to {self.total} tokens of inputs with images after resizing; "
                f"at most {self.budget} are allowed per request (MAX_REQUEST_IMAGE_TOKENS); send fewer or "
                "smaller images per request",
                param=self.field,
            )
