"""Texts and client-sent token ids -> TextRows, with a model's prompts, limits and special tokens.

Every family that reads text (encoders, decoder embedders, the text side of
dual encoders) tokenises through one `TextInputs`, so prompts, truncation and
the 400s for bad inputs behave the same whatever the model.
"""

from __future__ import annotations

from .errors import InvalidInput
from .layout import ModelLayout
from .requests import DEFAULT_EMBED, EmbedRequest
from .rows import Prepared, TextRow

# Models whose position ids start after the padding index, so the last
# `padding_idx + 1` positions of max_position_embeddings are unusable.
_OFFSET_POSITION_MODELS = {
    "roberta",
    "xlm-roberta",
    "xlm-roberta-xl",
    "camembert",
    "mpnet",
    "longformer",
    "data2vec-text",
    "ernie_m",
    "luke",
    "clap_text_model",  # CLAP's text tower is a RoBERTa
}

# Warm-up runs a row this long at most: decoder embedders accept 32k-token inputs,
# and one such pass would cost a CPU worker seconds and gigabytes before it serves.
WARMUP_TOKENS = 1024


def pad_id_of(tokenizer) -> int:
    """The id rows are padded with: the tokenizer's pad token, or 0 where it has none (the mask hides it)."""
    return tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0


def special_token_frame(tokenizer) -> tuple[list[int], list[int]]:
    """The ids the tokenizer puts before and after a single sequence ([CLS] … [SEP], <s> … </s>, …).

    Found by encoding one word with and without special tokens, which works for
    every tokenizer family without relying on version-specific helpers.
    """
    probe = "hello"
    bare = tokenizer(probe, add_special_tokens=False)["input_ids"]
    full = tokenizer(probe, add_special_tokens=True)["input_ids"]
    for start in range(len(full) - len(bare) + 1):
        if full[start : start + len(bare)] == bare:
            return list(full[:start]), list(full[start + len(bare) :])
    return [], []


def max_sequence_length(layout: ModelLayout, tokenizer, config) -> int:
    """The smallest of sentence-transformers' max_seq_length, the tokenizer's limit and the positions."""
    limits = []
    if layout.max_seq_length:
        limits.append(int(layout.max_seq_length))
    tokenizer_limit = getattr(tokenizer, "model_max_length", None)
    if tokenizer_limit and tokenizer_limit < 1_000_000:
        limits.append(int(tokenizer_limit))
    positions = getattr(config, "max_position_embeddings", None)
    if positions:
        if getattr(config, "model_type", "") in _OFFSET_POSITION_MODELS:
            positions -= (getattr(config, "pad_token_id", None) or 0) + 1
        limits.append(int(positions))
    return min(limits) if limits else 512


class TextInputs:
    """`route` marks the rows for the model route that reads them; without `special_tokens`, texts are
    tokenised bare (sentence-transformers' SparseStaticEmbedding reads them so)."""

    def __init__(
        self, name: str, tokenizer, layout: ModelLayout, config, vocab_size: int, *, route="", special_tokens=True
    ):
        self.name = name
        self.tokenizer = tokenizer
        self.layout = layout
        self.max_length = max_sequence_length(layout, tokenizer, config)
        self.special_tokens = special_tokens
        self.route = route
        self.prefix, self.suffix = special_token_frame(tokenizer) if special_tokens else ([], [])
        self.vocab_size = vocab_size
        self.pad_id = pad_id_of(tokenizer)

    # ------------------------------------------------------------------ prompts
    def resolve_prompt(self, prompt: str | None, prompt_name: str | None) -> str:
        if prompt is not None and prompt_name is not None:
            raise InvalidInput("give either prompt or prompt_name, not both", param="prompt_name")
        if prompt is not None:
            return prompt
        prompts = self.layout.prompts
        if prompt_name is not None:
            if prompt_name not in prompts:
                known = ", ".join(sorted(prompts)) or "none"
                raise InvalidInput(
                    f"unknown prompt_name {prompt_name!r} for model {self.name!r}; known prompts: {known}",
                    param="prompt_name",
                    code="unknown_prompt",
                )
            return prompts[prompt_name]
        if self.layout.default_prompt_name:
            return prompts.get(self.layout.default_prompt_name, "")
        return ""

    # -------------------------------------------------------------------- texts
    def limit(self, max_tokens: int | None, field: str = "max_tokens") -> int:
        """A request's token limit: the model's maximum, or a smaller one the request asks for."""
        if max_tokens is None:
            return self.max_length
        frame = len(self.prefix) + len(self.suffix)
        if max_tokens <= frame:
            raise InvalidInput(
                f"{field} must be more than {frame}, the special tokens every input of this model carries", param=field
            )
        return min(max_tokens, self.max_length)

    def tokenize(self, texts: list[str], request: EmbedRequest = DEFAULT_EMBED, *, prompt: str = "") -> Prepared:
        """`texts` with `prompt` (already resolved from the request) before each, cut as the request says."""
        truncate, direction, field = request.truncate, request.truncation_direction, request.field
        limit = self.limit(request.max_tokens)
        if prompt:
            texts = [prompt + text for text in texts]
        if self.layout.do_lower_case:
            texts = [text.lower() for text in texts]
        # Cutting the end is the tokenizer's own truncation; cutting the start is done here, keeping
        # the special tokens and the prompt, so a long input loses its oldest text, not its instruction.
        cut_end = truncate and direction == "right"
        encoded = self.tokenizer(
            texts,
            add_special_tokens=self.special_tokens,
            truncation=cut_end,
            max_length=limit if cut_end else None,
            padding=False,
            return_attention_mask=False,
            return_token_type_ids=False,
        )["input_ids"]
        if not truncate:
            for index, row in enumerate(encoded):
                if len(row) > limit:
                    raise self._too_long(index, len(row), field, limit)
        elif direction == "left":
            kept = len(self.tokenizer(prompt, add_special_tokens=False)["input_ids"]) if prompt else 0
            encoded = [self._cut_start(row, limit, kept) for row in encoded]
        prompt_length = 0
        if prompt and not self.layout.include_prompt:
            # As sentence-transformers: the prompt's tokens less its closing special token.
            prompt_length = len(self.tokenizer(prompt, add_special_tokens=True)["input_ids"]) - 1
        return Prepared(rows=[TextRow(ids, prompt_length, self.route) for ids in encoded], outputs=request.outputs)

    def _cut_start(self, row: list[int], limit: int, kept: int) -> list[int]:
        """`row` at most `limit` long, cut after its leading special tokens and `kept` prompt tokens."""
        if len(row) <= limit:
            return row
        head = len(self.prefix) + kept
        tail = len(self.suffix)
        room = limit - head - tail
        if room <= 0:  # the prompt alone fills the limit: keep what fits of it, as a right cut would
            return row[: limit - tail] + row[len(row) - tail :]
        return row[:head] + row[len(row) - tail - room :]

    def token_ids(self, rows: list[list[int]], request: EmbedRequest = DEFAULT_EMBED) -> Prepared:
        """Token ids sent by the client, in this model's vocabulary.

        Rows that already carry the model's special tokens pass as they are;
        bare rows get them added, so both `tokenizer.encode(text)` and
        `encode(text, add_special_tokens=False)` give the text's embedding.
        """
        truncate, direction, field = request.truncate, request.truncation_direction, request.field
        limit = self.limit(request.max_tokens)
        framed = []
        frame = len(self.prefix) + len(self.suffix)
        for index, row in enumerate(rows):
            bad = next((t for t in row if not 0 <= t < self.vocab_size), None)
            if bad is not None:
                raise InvalidInput(
                    f"{field}[{index}] has token id {bad}, outside this model's vocabulary of {self.vocab_size}",
                    param=f"{field}[{index}]",
                )
            body = row[len(self.prefix) : len(row) - len(self.suffix)] if self._has_frame(row) else row
            if len(body) + frame > limit:
                if not truncate:
                    raise self._too_long(index, len(body) + frame, field, limit)
                room = limit - frame
                body = body[:room] if direction == "right" else body[len(body) - room :]
            framed.append(TextRow(self.prefix + list(body) + self.suffix, route=self.route))
        return Prepared(rows=framed)

    def longest_row(self) -> TextRow:
        """A row of the maximum length (at most WARMUP_TOKENS), for warm-up."""
        return TextRow([self.pad_id + 1] * min(self.max_length, WARMUP_TOKENS), route=self.route)

    def token_strings(self, ids) -> list[str]:
        return self.tokenizer.convert_ids_to_tokens([int(i) for i in ids])

    def _has_frame(self, row: list[int]) -> bool:
        if not self.prefix and not self.suffix:
            return False
        return (
            len(row) >= len(self.prefix) + len(self.suffix)
            and row[: len(self.prefix)] == self.prefix
            and (not self.suffix or row[-len(self.suffix) :] == self.suffix)
        )

    def _too_long(self, index: int, length: int, field: str, limit: int) -> InvalidInput:
        over = (
            f"this model's maximum of {self.max_length}"
            if limit == self.max_length
            else f"the request's limit of {limit}"
        )
        return InvalidInput(
            f"{field}[{index}] is {length} tokens long, over {over}; shorten it or send truncate=true",
            param=f"{field}[{index}]",
            code="input_too_long",
        )
