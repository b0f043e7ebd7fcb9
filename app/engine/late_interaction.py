"""Scoring by late interaction: a multi-vector model reranks (and fills a similarity matrix) by embedding the
queries as queries and the documents as documents, then scoring every pair with the model's own MaxSim.
Each side is an ordinary embedding request, batched and cached like any: a document scored against many
queries is computed once. Documents are texts, or (visual retrievers) page images and PDFs' pages."""

from __future__ import annotations

from .capabilities import COLBERT
from .errors import InvalidInput
from .requests import EmbedRequest, ScoreRequest
from .results import Embeddings, Scores, Timings


def rerank(engine, model, queries: list[str], documents: list[str], request: ScoreRequest) -> Scores:
    asked = engine.embed_texts(model, queries, _side(model, request, True, "query", None))
    answered = engine.embed_texts(
        model, documents, _side(model, request, False, request.field, request.max_document_tokens)
    )
    return _scores(model, asked, answered)


def rerank_images(engine, model, queries: list[str], images: list[bytes], decoder, request: ScoreRequest) -> Scores:
    """Text queries against images, a PDF's pages each a document (the result's `sources` say which)."""
    asked = engine.embed_texts(model, queries, _side(model, request, True, "query", None))
    answered = engine.embed_inputs(
        model, [None] * len(images), images, decoder, _side(model, request, False, request.field, None)
    )
    return _scores(model, asked, answered)


def _side(model, request: ScoreRequest, is_query: bool, field: str, max_tokens: int | None) -> EmbedRequest:
    if request.instruction:
        raise InvalidInput(
            f"the model {model.name!r} scores by late interaction and takes no instruction", param="instruction"
        )
    return EmbedRequest(
        field=field,
        truncate=request.truncate,
        truncation_direction=request.truncation_direction,
        max_tokens=max_tokens,
        is_query=is_query,
        outputs=frozenset({COLBERT}),
        use_cache=request.use_cache,
    )


def _scores(model, asked: Embeddings, answered: Embeddings) -> Scores:
    caches = {asked.cache, answered.cache}
    return Scores(
        scores=model.maxsim(asked.colbert, answered.colbert),
        prompt_tokens=asked.prompt_tokens + answered.prompt_tokens,
        timings=Timings(
            tokenize=asked.timings.tokenize + answered.timings.tokenize,
            queue=asked.timings.queue + answered.timings.queue,
            inference=asked.timings.inference + answered.timings.inference,
        ),
        model=model.name,
        cache=caches.pop() if len(caches) == 1 else "partial",
        sources=answered.sources,
    )
