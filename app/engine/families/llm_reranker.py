"""LLM yes/no rerankers: a causal LM asked whether a document answers a query (Qwen3-Reranker and the like).

Score = P("yes") against P("no") at the final position, softmax over the two
logits: the raw score is their difference (log-odds), the default score its
sigmoid, which is the same number. Inputs follow the model's prompt template:

    {prefix}<Instruct>: {instruction}\\n<Query>: {query}\\n<Document>: {document}{suffix}

tokenised as Qwen3-Reranker's published recipe does: the formatted body is
tokenised and cut from the right to `max_length` less the prefix and suffix
tokens, which frame it unchanged.

Recognised as a causal LM (see decoder_embedder.is_decoder_only) whose
directory says it reranks: a `reranker.json`, sentence-transformers'
CrossEncoder files, or "rerank" in the directory's name. `reranker.json`
may set any of the template's fields; where it is silent, Qwen3-Reranker's
template is the default. The "yes" and "no" tokens must each be one token of
the vocabulary (or be given as ids), or the model does not start.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from pathlib import Path

import numpy as np
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from ..capabilities import RERANK
from ..errors import InvalidInput
from ..layout import json_list, json_object, model_config, transformer_dir
from ..outputs import BatchOutput
from ..requests import DEFAULT_SCORE, ScoreRequest
from ..rows import PairRow, Prepared, pad_right
from ..text_inputs import pad_id_of
from .base import RerankerFamily
from .cross_encoder import ACTIVATIONS
from .decoder_embedder import is_decoder_only

TEMPLATE_FILE = "reranker.json"


@dataclass(frozen=True)
class RerankTemplate:
    prefix: str = (
        "<|im_start|>system\nJudge whether the Document meets the requirements based on the Query and "
        'the Instruct provided. Note that the answer can only be "yes" or "no".<|im_end|>\n'
        "<|im_start|>user\n"
    )
    body: str = "<Instruct>: {instruction}\n<Query>: {query}\n<Document>: {document}"
    suffix: str = "<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n"
    instruction: str = "Given a web search query, retrieve relevant passages that answer the query"
    yes: str = "yes"
    no: str = "no"
    max_length: int = 8192


def _logit_score_ids(path: Path) -> tuple[int | None, int | None]:
    """sentence-transformers' LogitScore module: the true / false token ids it reads."""
    modules = json_list(path / "modules.json")
    for module in modules:
        if str(module.get("type", "")).endswith("LogitScore"):
            config = json_object(path / module.get("path", "") / "config.json")
            return config.get("true_token_id"), config.get("false_token_id")
    return None, None


def read_template(path: Path) -> RerankTemplate:
    overrides = json_object(path / TEMPLATE_FILE)
    known = {field.name for field in fields(RerankTemplate)}
    unknown = sorted(set(overrides) - known - {"yes_id", "no_id"})
    if unknown:
        raise ValueError(f"{path / TEMPLATE_FILE}: unknown keys {unknown}; known: {sorted(known)}")
    return replace(RerankTemplate(), **{k: v for k, v in overrides.items() if k in known})


class LLMReranker(RerankerFamily):
    family = "llm-reranker"

    def __init__(
        self,
        name: str,
        tokenizer,
        model: torch.nn.Module,
        template: RerankTemplate,
        yes_id: int,
        no_id: int,
        dtype: torch.dtype,
    ):
        super().__init__(name, dtype)
        self.model = model
        self.tokenizer = tokenizer
        self.template = template
        self.yes_id, self.no_id = yes_id, no_id
        self.prefix_ids = tokenizer(template.prefix, add_special_tokens=False)["input_ids"]
        self.suffix_ids = tokenizer(template.suffix, add_special_tokens=False)["input_ids"]
        positions = getattr(model.config, "max_position_embeddings", None) or template.max_length
        self.max_length = min(template.max_length, int(positions))
        if self.max_length - len(self.prefix_ids) - len(self.suffix_ids) < 16:
            raise ValueError(
                f"the template's prefix and suffix take {len(self.prefix_ids) + len(self.suffix_ids)} "
                f"of the {self.max_length} tokens, leaving no room for a query and a document"
            )
        self.pad_id = pad_id_of(tokenizer)

    @classmethod
    def detect(cls, path: Path) -> bool:
        if not is_decoder_only(model_config(path)):
            return False
        st_config = json_object(path / "config_sentence_transformers.json")
        return (
            (path / TEMPLATE_FILE).is_file()
            or st_config.get("model_type") == "CrossEncoder"
            or "rerank" in path.resolve().name.lower()
        )

    @classmethod
    def load(cls, path: Path, name: str, dtype: torch.dtype, options=None) -> LLMReranker:
        path = Path(path)
        directory = transformer_dir(path)
        template = read_template(path)
        tokenizer = AutoTokenizer.from_pretrained(str(directory))
        overrides = json_object(path / TEMPLATE_FILE)
        true_id, false_id = _logit_score_ids(path)
        yes_id = overrides.get("yes_id", true_id)
        no_id = overrides.get("no_id", false_id)
        yes_id = cls._token_id(tokenizer, template.yes, path) if yes_id is None else int(yes_id)
        no_id = cls._token_id(tokenizer, template.no, path) if no_id is None else int(no_id)
        model = AutoModelForCausalLM.from_pretrained(str(directory), dtype=dtype)
        model.eval().requires_grad_(False)
        vocabulary = model.get_output_embeddings().weight.shape[0]
        if not (0 <= yes_id < vocabulary and 0 <= no_id < vocabulary):
            raise ValueError(f"the yes/no token ids {yes_id}/{no_id} are outside the vocabulary of {vocabulary}")
        return cls(name, tokenizer, model, template, yes_id, no_id, dtype)

    @staticmethod
    def _token_id(tokenizer, token: str, path: Path) -> int:
        ids = tokenizer(token, add_special_tokens=False)["input_ids"]
        token_id = tokenizer.convert_tokens_to_ids(token)
        if len(ids) == 1:
            return int(ids[0])
        if token_id is not None and token_id != tokenizer.unk_token_id:
            return int(token_id)
        raise ValueError(
            f"{path}: this causal LM has no single {token!r} token, so it cannot answer yes or no; "
            f'give the token ("yes"/"no") or its id ("yes_id"/"no_id") in {TEMPLATE_FILE}'
        )

    def summary(self) -> str:
        return f"rerank (yes/no LLM): max_tokens={self.max_length} yes={self.yes_id} no={self.no_id} dtype={self.dtype}"

    # ------------------------------------------------------------ preparation
    def prepare_pairs(self, query: str, documents: list[str], request: ScoreRequest = DEFAULT_SCORE) -> Prepared:
        template = self.template
        truncate, direction, field = request.truncate, request.truncation_direction, request.field
        max_document_tokens = request.max_document_tokens
        instruction = template.instruction if request.instruction is None else request.instruction
        budget = self.max_length - len(self.prefix_ids) - len(self.suffix_ids)
        bodies = [
            template.body.format(instruction=instruction, query=query, document=document) for document in documents
        ]
        encoded = self.tokenizer(bodies, padding=False, truncation=False, return_attention_mask=False)["input_ids"]
        head = None
        rows = []
        for index, ids in enumerate(encoded):
            limit = budget
            if max_document_tokens is not None or (len(ids) > budget and direction == "left"):
                head = head if head is not None else self._head_length(instruction, query)
                if max_document_tokens is not None:
                    limit = min(limit, head + max_document_tokens)
            if len(ids) > limit:
                if not truncate and limit == budget:
                    raise InvalidInput(
                        f"the prompt for the query and {field}[{index}] is "
                        f"{len(ids) + len(self.prefix_ids) + len(self.suffix_ids)} tokens, over this model's "
                        f"maximum of {self.max_length}; shorten them or send truncate=true",
                        param=f"{field}[{index}]",
                        code="input_too_long",
                    )
                # Right: the recipe's cut. Left: keep the head (instruction, query) and the document's end.
                ids = (
                    ids[:limit]
                    if direction == "right" or head >= limit
                    else ids[:head] + ids[len(ids) - (limit - head) :]
                )
            rows.append(PairRow(self.prefix_ids + list(ids) + self.suffix_ids))
        return Prepared(rows=rows, outputs=frozenset({RERANK}))

    def _head_length(self, instruction: str, query: str) -> int:
        """Tokens of the body before the document."""
        head = self.template.body.split("{document}", 1)[0].format(instruction=instruction, query=query)
        return len(self.tokenizer(head, padding=False, return_attention_mask=False)["input_ids"])

    def activate(self, scores: np.ndarray) -> np.ndarray:
        return ACTIVATIONS["Sigmoid"](scores.astype(np.float64)).astype(np.float32)

    # ---------------------------------------------------------------- forward
    def forward(self, kind: str, rows: list[PairRow], outputs: frozenset[str]) -> BatchOutput:
        # Right padding: under the causal mask the pads never reach a real token, and each
        # row's last real position is read directly; only the yes and no rows of the LM
        # head are applied, not the whole vocabulary.
        input_ids, mask = pad_right(rows, self.pad_id)
        inputs = {
            "input_ids": torch.from_numpy(input_ids).to(self.device),
            "attention_mask": torch.from_numpy(mask).to(self.device),
        }
        hidden = self.model.base_model(**inputs, use_cache=False).last_hidden_state
        last = torch.tensor([len(row) - 1 for row in rows], device=self.device)
        final = hidden[torch.arange(len(rows), device=self.device), last]
        head = self.model.get_output_embeddings()
        logits = torch.nn.functional.linear(
            final,
            head.weight[[self.yes_id, self.no_id]],
            None if head.bias is None else head.bias[[self.yes_id, self.no_id]],
        )
        logits = logits.float()
        return BatchOutput(scores=(logits[:, 0] - logits[:, 1]).cpu().numpy())

    def describe(self) -> dict:
        return {**super().describe(), "default_instruction": self.template.instruction}
