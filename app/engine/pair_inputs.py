"""(query, document) pairs -> PairRows, exactly as the tokenizer would encode `tokenizer(query, document)`.

The query is tokenised once per request and the documents in one batch,
without special tokens; each pair is then framed with the tokenizer's own
pair template (found by probing it: `[CLS] a [SEP] b [SEP]`, `<s> a </s></s>
b </s>`, ...), so truncation can cut the document first and from either end
without re-tokenising anything.
"""

from __future__ import annotations

from dataclasses import dataclass

from .errors import InvalidInput
from .requests import DEFAULT_SCORE, ScoreRequest
from .rows import PairRow


@dataclass(frozen=True)
class PairFrame:
    prefix: list[int]
    middle: list[int]
    suffix: list[int]

    @property
    def size(self) -> int:
        return len(self.prefix) + len(self.middle) + len(self.suffix)


def pair_frame(tokenizer) -> PairFrame:
    a = tokenizer("hello", add_special_tokens=False)["input_ids"]
    b = tokenizer("world", add_special_tokens=False)["input_ids"]
    full = tokenizer("hello", "world", add_special_tokens=True)["input_ids"]
    for start in range(len(full) - len(a) + 1):
        if full[start : start + len(a)] != a:
            continue
        for second in range(start + len(a), len(full) - len(b) + 1):
            if full[second : second + len(b)] == b:
                return PairFrame(
                    prefix=list(full[:start]),
                    middle=list(full[start + len(a) : second]),
                    suffix=list(full[second + len(b) :]),
                )
    raise ValueError("cannot find how the tokenizer frames a pair of texts")


def cut(ids: list[int], keep: int, direction: str) -> list[int]:
    if len(ids) <= keep:
        return ids
    return ids[len(ids) - keep :] if direction == "left" else ids[:keep]


class PairInputs:
    def __init__(self, tokenizer, max_length: int):
        self.tokenizer = tokenizer
        self.max_length = max_length
        self.frame = pair_frame(tokenizer)

    def tokenize(self, query: str, documents: list[str], request: ScoreRequest = DEFAULT_SCORE) -> list[PairRow]:
        truncate, direction, field = request.truncate, request.truncation_direction, request.field
        max_document_tokens = request.max_document_tokens
        frame = self.frame
        budget = self.max_length - frame.size
        encoded = self.tokenizer(
            [query, *documents],
            add_special_tokens=False,
            padding=False,
            return_attention_mask=False,
            return_token_type_ids=False,
        )["input_ids"]
        query_ids, document_ids = encoded[0], encoded[1:]
        rows = []
        for index, ids in enumerate(document_ids):
            if max_document_tokens is not None:
                ids = cut(ids, max_document_tokens, direction)
            q = query_ids
            if len(q) + len(ids) > budget:
                if not truncate:
                    raise InvalidInput(
                        f"the query and {field}[{index}] are {len(q) + len(ids) + frame.size} tokens together, over "
                        f"this model's maximum of {self.max_length}; shorten them or send truncate=true",
                        param=f"{field}[{index}]",
                        code="input_too_long",
                    )
                q, ids = self._fit(q, ids, budget, direction)
            first = len(frame.prefix) + len(q) + len(frame.middle)
            rows.append(PairRow(frame.prefix + q + frame.middle + ids + frame.suffix, first))
        return rows

    @staticmethod
    def _fit(query: list[int], document: list[int], budget: int, direction: str) -> tuple[list[int], list[int]]:
        """The document gives way first; a query that leaves it no room at all is cut too, as
        the tokenizer's `longest_first` would (the longer side first, ties from the document)."""
        if len(query) < budget:
            return query, cut(document, budget - len(query), direction)
        keep_document = min(len(document), budget // 2)
        return query[: budget - keep_document], cut(document, keep_document, direction)
