"""The one sequence behind every route that embeds or scores: check the inputs' sizes against the settings,
resolve the model (checking it can do what is asked), call the engine with the request object, record the
result for metrics and the access log.

Every surface (native, OpenAI, TEI, Cohere, Ollama, GME, rerank, similarity) parses its body into an
`EmbedRequest` or `ScoreRequest`, calls one of these, and shapes the answer; none of them checks sizes,
resolves a model or records a result itself.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..engine.capabilities import (
    CLASSIFY,
    EMBED_AUDIO,
    EMBED_IMAGE,
    EMBED_INTERLEAVED,
    EMBED_TEXT,
    EMBED_VIDEO,
    OUTPUT_TYPES,
    RERANK,
    TOKENS,
)
from ..engine.requests import EmbedRequest, MediaDecoders, MixedInput, ScoreRequest
from ..errors import InvalidRequest
from ..media.audio import AudioLimits
from ..media.images import ImageLimits
from ..media.video import VideoLimits
from .http import context
from .http.image_inputs import gather
from .http.media_inputs import gather_audio, gather_videos
from .http.observability import record_embedding
from .http.parsing import check_count, check_items

if TYPE_CHECKING:
    from .openai.multimodal import Item


@dataclass(frozen=True)
class Served:
    """What the engine answered, and the model that answered it (its name, card and tokenizer views)."""

    model: object
    result: object


# ------------------------------------------------------------------ models
def pick(name: str | None, capability: str | None = None):
    """The model a request names, or the first served one with `capability`: picked, not checked."""
    return context.engine().resolve(name, capability)


def resolve(name: str | None, capability: str, field: str = "input", prefer: str | None = None):
    """The model a request names (or the first that has `prefer`, else `capability`), refused with the caller's
    4xx unless it has `capability`: before anything is tokenised, decoded or fetched."""
    model = context.engine().resolve(name, prefer, capability)
    check(model, capability, field)
    return model


def check(model, capability: str, field: str = "input") -> None:
    """A model already picked (to read its card first), refused unless it has `capability`."""
    context.engine().check(model, capability, field)


def is_reranker(model) -> bool:
    """It scores pairs and embeds nothing."""
    return context.engine().is_reranker(model)


def scores_late(model) -> bool:
    """It scores a query against documents by late interaction (MaxSim over its per-token vectors)."""
    return context.engine().scores_late(model)


def is_classifier(model) -> bool:
    """It labels texts (every label's score) and neither embeds nor reranks."""
    return CLASSIFY in model.capabilities and RERANK not in model.capabilities


def check_sizes(items: list, field: str) -> None:
    """Batch-size and length limits for inputs a surface combines itself (a reranker's matrix)."""
    check_items(items, context.settings(), field)


def _model(model_or_name, capability: str, field: str, prefer: str | None = None):
    """A surface passes a model's name (resolved here, after the sizes are checked) or a model it picked."""
    if model_or_name is None or isinstance(model_or_name, str):
        return resolve(model_or_name, capability, field, prefer)
    return model_or_name


# --------------------------------------------------------------- embedding
def embed_texts(
    model, texts: list[str], request: EmbedRequest, *, capability: str | None = None, prefer: str | None = None
) -> Served:
    """`model`: a name (None: the first model with `prefer`, else with `capability`: by default the dense
    vector, or the first output a request without one names), resolved after the sizes are checked, or a
    model a surface resolved already (Cohere's input_type needs the model's prompts first)."""
    prefix_field = "prompt" if request.prompt else "instruction"
    check_items(texts, context.settings(), request.field, request.prompt or request.instruction, prefix_field)
    if capability is None:
        others = [output for output in (*OUTPUT_TYPES, TOKENS) if output in request.outputs]
        capability = EMBED_TEXT if "dense" in request.outputs or not others else others[0]
    model = _model(model, capability, request.field, prefer)
    result = context.engine().embed_texts(model, texts, request)
    record_embedding(result, len(texts))
    return Served(model, result)


def embed_token_ids(model, rows: list[list[int]], request: EmbedRequest, *, foreign_guard: bool = False) -> Served:
    """`foreign_guard`: the route's clients may send another tokenizer's ids, refused unless ACCEPT_TOKEN_IDS."""
    settings = context.settings()
    check_items(rows, settings, request.field, request.instruction, "instruction")
    if foreign_guard:
        refuse_foreign_token_ids(settings, request.field)
    model = _model(model, EMBED_TEXT, request.field)
    result = context.engine().embed_token_ids(model, rows, request)
    record_embedding(result, len(rows))
    return Served(model, result)


def refuse_foreign_token_ids(settings, field: str) -> None:
    if not settings.accept_token_ids:
        raise InvalidRequest(
            f"{field} is token ids, and this server takes text: ids from another tokenizer (OpenAI's tiktoken, "
            "which LangChain's OpenAIEmbeddings sends by default) would be embedded as if they were this "
            "model's, a wrong answer without an error. Send the texts (LangChain: "
            "OpenAIEmbeddings(..., check_embedding_ctx_length=False)), or start the server with "
            "ACCEPT_TOKEN_IDS=true if the ids are this model's",
            param=field,
            code="token_ids_not_accepted",
        )


def embed_images(model, images: list[bytes], request: EmbedRequest, *, documents: bool = False) -> Served:
    """Encoded images (already gathered from the body or its files) -> vectors, under this app's image limits.
    `model` is resolved by the caller: a text-only model must refuse before any file is read or URL fetched.
    `documents`: PDFs are taken, a vector per page (the result's `sources` say which); else they are 400s."""
    return _embed_inputs(model, [None] * len(images), images, request, "image", documents)


def embed_audio(model, clips: list[bytes], request: EmbedRequest) -> Served:
    """Encoded audio clips (already gathered from the body or its files) -> vectors, under this app's audio
    limits. `model` is resolved by the caller, before any file is read or URL fetched."""
    limits = AudioLimits.from_settings(context.settings())
    result = context.engine().embed_audio(model, clips, limits, request)
    record_embedding(result, len(clips), "audio")
    return Served(model, result)


def embed_videos(model, videos: list[bytes], request: EmbedRequest) -> Served:
    """Encoded videos (already gathered from the body or its files) -> vectors, under this app's video limits.
    `model` is resolved by the caller, before any file is read or URL fetched."""
    limits = VideoLimits.from_settings(context.settings())
    result = context.engine().embed_videos(model, videos, limits, request)
    record_embedding(result, len(videos), "video")
    return Served(model, result)


@dataclass(frozen=True)
class Medium:
    """A medium a request may bring: the capability a model needs for it, how its JSON strings become files
    (`gather(values, field, positions=None)`), and how its files become vectors (`embed(model, files, request)`)."""

    capability: str
    gather: Callable
    embed: Callable


MEDIA = {
    "image": Medium(EMBED_IMAGE, gather, embed_images),
    "audio": Medium(EMBED_AUDIO, gather_audio, embed_audio),
    "video": Medium(EMBED_VIDEO, gather_videos, embed_videos),
}


def check_item_texts(items: list[Item], settings, field: str) -> None:
    check_count(len(items), settings, field)
    for index, item in enumerate(items):
        if item.text is not None and len(item.text) > settings.max_input_chars:
            raise InvalidRequest(
                f"{field}[{index}] has {len(item.text)} characters; at most "
                f"{settings.max_input_chars} are allowed (MAX_INPUT_CHARS)",
                param=f"{field}[{index}]",
                code="input_too_long",
            )


def embed_items(model, items: list[Item], request: EmbedRequest) -> Served:
    """(text, image) items -> one vector each (vision-language embedders embed both together)."""
    settings = context.settings()
    field = request.field
    check_item_texts(items, settings, field)
    with_images = [index for index, item in enumerate(items) if item.image is not None]
    fetched = gather([items[index].image for index in with_images], field, with_images) if with_images else []
    images: list = [None] * len(items)
    for index, data in zip(with_images, fetched):
        images[index] = data
    return _embed_inputs(model, [item.text for item in items], images, request, "image" if with_images else "text")


def embed_mixed(model, items: list[Item], request: EmbedRequest) -> Served:
    """Items of several modalities each (a text with a clip or a video, say) -> one vector each, every medium
    gathered under its own route's limits."""
    settings = context.settings()
    field = request.field
    check_item_texts(items, settings, field)
    fetched = {}
    for name, medium in MEDIA.items():
        positions = [index for index, item in enumerate(items) if getattr(item, name) is not None]
        values = medium.gather([getattr(items[index], name) for index in positions], field, positions)
        fetched[name] = dict(zip(positions, values)) if positions else {}
    inputs = [
        MixedInput(
            text=item.text,
            image=fetched["image"].get(index),
            audio=fetched["audio"].get(index),
            video=fetched["video"].get(index),
        )
        for index, item in enumerate(items)
    ]
    decoders = MediaDecoders(
        image=ImageLimits.from_settings(settings),
        audio=AudioLimits.from_settings(settings),
        video=VideoLimits.from_settings(settings),
    )
    result = context.engine().embed_mixed(model, inputs, decoders, request)
    record_embedding(result, len(items), "mixed")
    return Served(model, result)


def embed_fused(name: str | None, texts: list[str], images: list[str], request: EmbedRequest) -> Served:
    """Pairs of a text and an image (JSON image strings), each into one vector (GME's `/embeddings/fused`)."""
    check_items(texts, context.settings(), "texts", request.instruction, "instruction")
    model = resolve(name, EMBED_INTERLEAVED, request.field)
    return _embed_inputs(model, texts, gather(images, request.field), request, "image")


def _embed_inputs(
    model, texts: list, images: list, request: EmbedRequest, modality: str, documents: bool = False
) -> Served:
    limits = ImageLimits.from_settings(context.settings(), documents=documents)
    result = context.engine().embed_inputs(model, texts, images, limits, request)
    record_embedding(result, len(texts), modality)
    return Served(model, result)


def interleaves(model) -> bool:
    return EMBED_INTERLEAVED in model.capabilities


def quantize(served: Served, precision: str, request: EmbedRequest):
    """The dense vectors at `precision` (int8 and uint8 on the model's calibrated ranges)."""
    return context.engine().quantize(
        served.model, served.result.vectors, precision, dimensions=request.dimensions, normalize=request.normalize
    )


# ----------------------------------------------------------------- scoring
def rerank(name: str | None, query: str, documents: list[str], request: ScoreRequest) -> Served:
    """One query against `documents`. The query goes into every pair: it counts toward each document's length
    and, once per document, toward the request's total."""
    settings = context.settings()
    check_items(documents, settings, request.field, query, "query")
    if request.instruction:  # an LLM reranker's instruction goes into every pair too
        check_items(documents, settings, request.field, query + request.instruction, "instruction")
    model = resolve(name, RERANK, request.field)
    result = context.engine().rerank(model, [query], documents, request)
    record_embedding(result, len(documents), "pair")
    return Served(model, result)


def score_pairs(model, queries: list[str], documents: list[str], request: ScoreRequest) -> Served:
    """Every query against every document (a reranker's relevance matrix); sizes checked by the caller, whose
    limits count pairs."""
    result = context.engine().rerank(model, queries, documents, request)
    record_embedding(result, len(queries) * len(documents), "pair")
    return Served(model, result)


def score_images(model, queries: list[str], images: list[bytes], request: ScoreRequest) -> Served:
    """Every text query against every image (a PDF: each page) by a visual late-interaction model; the caller
    checks the sizes."""
    limits = ImageLimits.from_settings(context.settings(), documents=True)
    result = context.engine().rerank_images(model, queries, images, limits, request)
    record_embedding(result, len(queries) * result.scores.shape[1], "pair")
    return Served(model, result)


def classify(name: str | None, inputs: list, request: ScoreRequest) -> Served:
    """Texts and (text, text pair) tuples -> every label's score; a pair counts as its two texts together."""
    sizes = [item if isinstance(item, str) else item[0] + item[1] for item in inputs]
    check_items(sizes, context.settings(), request.field)
    model = resolve(name, CLASSIFY, request.field)
    result = context.engine().classify(model, inputs, request)
    record_embedding(result, len(inputs), "text")
    return Served(model, result)


# --------------------------------------------------------------- tokenizer
def tokenize(name: str | None, texts: list[str], *, add_special_tokens: bool, prompt_name: str | None):
    check_items(texts, context.settings(), "inputs")
    engine = context.engine()
    model = engine.resolve(name)
    return engine.tokenize(model, texts, add_special_tokens=add_special_tokens, prompt_name=prompt_name)


def decode(name: str | None, rows: list[list[int]], *, skip_special_tokens: bool):
    check_items(rows, context.settings(), "ids")
    engine = context.engine()
    return engine.decode(engine.resolve(name), rows, skip_special_tokens=skip_special_tokens)
