"""How a request's rows become results in a worker: tokenising off the event loop when large, the cache read
through, then the model's batcher (or an inline pass), with each stage timed."""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable

import numpy as np

from .budgets import Budgets, ImageTokens, check_request
from .cache import lookup as cache_lookup
from .errors import EngineError, InferenceFailed
from .outputs import Results
from .postprocess import postprocess
from .requests import EmbedRequest, ImageDecoder
from .results import Embeddings, Timings
from .rows import Prepared, forward_planned
from .sparse_vectors import prune
from .token_pooling import pool_tokens

log = logging.getLogger(__name__)

# Requests with more characters than this are tokenised off the event loop (see Execution.off_loop).
OFFLOAD_CHARS = 20_000


def run_inline(fn: Callable, *args):
    return fn(*args)


class Execution:
    """Per process. What it needs is handed in: the batch limits and per-request budgets, the accounting it
    reports to (and reads the measured rates from), the batchers the lifecycle fills, the cache and each
    model's key prefix, and how to make sure the process started."""

    def __init__(
        self, limits, budgets: Budgets, accounting, batchers: dict, cache, salts: dict[str, bytes], ensure_started
    ):
        self.limits = limits
        self.budgets = budgets
        self.accounting = accounting
        self.batchers = batchers
        self.cache = cache
        self.salts = salts
        self.ensure_started = ensure_started
        # How a forward pass is run: inline, or (under gevent) in a real OS thread so the worker's event loop
        # keeps serving while the model computes. Set per worker when it starts.
        self.offload: Callable = run_inline

    def off_loop(self, chars: int, prepare: Callable, *args, stage: str = "tokenize"):
        """Tokenising is CPU work: a large request's runs where it cannot stop a gevent worker's event loop
        (and heartbeat); tokenizers release the GIL while they work. Small ones are not worth the hand-off."""
        with self.accounting.observer.stage(stage, chars=chars):
            if chars > OFFLOAD_CHARS:
                return self.offload(functools.partial(prepare, *args))
            return prepare(*args)

    def check_capacity(self, model, modality: str) -> None:
        """Overload is refused in milliseconds: checked before any tokenising, not only when rows are queued."""
        batcher = self.batchers.get((model.name, model.kind_of(modality)))
        if batcher is not None:
            batcher.check_capacity()

    def embed(self, model, modality: str, prepared: Prepared, request: EmbedRequest, tokenize_seconds: float):
        """The request's rows -> its finished Embeddings (normalised, cut to `dimensions`)."""
        results, timings, cached = self.execute(model, model.kind_of(modality), prepared, tokenize_seconds, request)
        multivector = results.multivector
        colbert = (
            None
            if multivector is None
            else [postprocess(m, normalize=request.normalize, dimensions=None) for m in multivector]
        )
        if colbert is not None and request.pool_factor not in (None, 1):
            # Clustering is CPU work of numpy and scipy: off the event loop like tokenising
            colbert = self.offload(pool_tokens, colbert, request.pool_factor, request.normalize)
        vectors = (
            np.empty((len(prepared.rows), 0), dtype=np.float32)
            if results.dense is None  # a sparse encoder's answer, or a cached one without the dense vector
            else postprocess(results.dense, normalize=request.normalize, dimensions=request.dimensions)
        )
        return Embeddings(
            vectors=vectors,
            prompt_tokens=prepared.token_count,
            timings=timings,
            sparse=prune(results.sparse, request.sparse_top_k, request.sparse_min_weight),
            colbert=colbert,
            tokens=results.tokens,
            model=model.name,
            cache=cached,
            sources=prepared.sources,
        )

    def execute(self, model, kind: str, prepared: Prepared, tokenize_seconds: float, request):
        """The request's results (checked against the budgets first): cached rows from the cache, the rest
        computed (and then stored). Returns (results, timings, the cache's state)."""
        self.ensure_started()
        check_request(self.budgets, model, prepared, request, self.accounting.rate(model.name, kind))
        salt = self.salts.get(model.name)
        if self.cache is None or not request.use_cache or salt is None:
            return (*self._compute(model, kind, prepared, tokenize_seconds), None)
        with self.accounting.observer.stage("cache", rows=len(prepared.rows)) as span:
            found = cache_lookup(self.cache, salt, prepared, model.dimension)
            if span is not None:
                span.set_attribute("cache.state", found.state)
                span.set_attribute("cache.misses", len(found.misses))
        self.accounting.cache(model.name, found.tiers)
        if not found.misses:
            return found.merge(None), Timings(tokenize=tokenize_seconds), found.state
        computed, timings = self._compute(model, kind, found.to_compute(), tokenize_seconds)
        self.cache.set_many(found.entries(computed))
        return found.merge(computed), timings, found.state

    def _compute(self, model, kind: str, prepared: Prepared, tokenize_seconds: float) -> tuple[Results, Timings]:
        enqueued = time.perf_counter()
        batcher = self.batchers.get((model.name, kind))
        observer = self.accounting.observer
        try:
            if batcher is not None:
                results, started, finished = batcher.submit(prepared)
            else:
                self.accounting.waiting(model.name, +1)
                trace = observer.trace_context()
                results, started = self.offload(self._forward, model, kind, prepared, (trace,) if trace else ())
                finished = time.perf_counter()
        except EngineError:
            raise
        except Exception as exc:  # an inference fault fails this request only
            log.exception("inference failed for model %s (%s)", model.name, kind)
            raise InferenceFailed(f"inference failed: {type(exc).__name__}: {exc}") from exc
        # The request's stages in the inference loop, as spans of its own trace; the passes themselves are
        # spans of their own, linked to every request they carried.
        observer.interval("queue", enqueued, started, model=model.name)
        observer.interval("inference", started, finished, model=model.name, rows=len(prepared.rows))
        return results, Timings(tokenize=tokenize_seconds, queue=started - enqueued, inference=finished - started)

    def _forward(self, model, kind: str, prepared: Prepared, links: tuple = ()) -> tuple[Results, float]:
        """Runs in the inference thread; returns the results and when the model became free."""
        with model.lock:
            started = time.perf_counter()
            self.accounting.waiting(model.name, -1)
            results = forward_planned(
                model.lane(kind),
                prepared,
                self.limits.max_batch_size,
                self.limits.max_batch_tokens,
                on_batch=self.accounting.batch_hook(model.name, kind, links),
            )
        return results, started

    def prepare_media(self, model, kind: str, items: list[bytes], decoder, request: EmbedRequest) -> Prepared:
        """Audio clips or videos -> a row each, off the event loop (decoding, resampling and frame conversion are
        CPU work in C)."""
        with self.accounting.observer.stage("preprocess", inputs=len(items)):
            return self.offload(prepare_media, model, kind, items, decoder, request)

    def prepare_mixed(self, model, inputs: list, decoders, request: EmbedRequest) -> Prepared:
        """Inputs of several modalities -> a row each, off the event loop, one input decoded at a time."""
        with self.accounting.observer.stage("preprocess", inputs=len(inputs)):
            return self.offload(prepare_mixed, model, inputs, decoders, request)

    def prepare_inputs(self, model, texts: list, images: list, decoder: ImageDecoder, request: EmbedRequest):
        """Texts, images or both per input -> one row each, off the event loop (decoding and resizing are CPU
        work that PIL and numpy do without the GIL); inputs with images are counted against their budget as
        each is prepared, so an over-budget request stops before the rest are decoded."""
        with self.accounting.observer.stage("preprocess", inputs=len(texts)):
            return self.offload(
                prepare_inputs, model, texts, images, decoder, request, ImageTokens(self.budgets, request.field)
            )


def prepare_media(model, kind: str, items: list[bytes], decoder, request: EmbedRequest) -> Prepared:
    """A row per clip or video: decoded (a clip mono at the model's rate and no longer than it hears; a video's
    frames as the model samples them) and prepared one at a time, so a request holds one input's samples or
    frames beside the rows already made."""
    prepare = model.prepare_audio if kind == "audio" else model.prepare_video
    rows = []
    for index, data in enumerate(items):
        param = f"{request.field}[{index}]"
        rows.append(prepare(decode_medium(model, kind, decoder, data, param), param, request))
    return Prepared(rows=rows, outputs=request.outputs)


def decode_medium(model, kind: str, decoder, data: bytes, param: str):
    """One clip or video decoded for `model`: a clip mono at its rate and no longer than it hears, a video's frames
    as its processor samples them."""
    if kind == "audio":
        return decoder.decode(data, param, model.sampling_rate, model.audio_window)
    return decoder.decode(data, param, model.video_frames)


def prepare_mixed(model, inputs: list, decoders, request: EmbedRequest) -> Prepared:
    """A row per input: each medium decoded as its own route decodes it (an image whole, a clip as far as the
    model hears, a video's sampled frames), then the input prepared, before the next is decoded."""
    rows = []
    for index, item in enumerate(inputs):
        param = f"{request.field}[{index}]"
        parts = {"text": item.text} if item.text is not None else {}
        if item.image is not None:
            parts["image"] = decoders.image.decode(item.image, param)
        for kind in ("audio", "video"):
            if getattr(item, kind) is not None:
                parts[kind] = decode_medium(model, kind, getattr(decoders, kind), getattr(item, kind), param)
        rows.append(model.prepare_mixed(parts, param, request))
    return Prepared(rows=rows, outputs=request.outputs)


def prepare_inputs(model, texts: list, images: list, decoder: ImageDecoder, request: EmbedRequest, budget) -> Prepared:
    """One row per input, or per page of an input that is a document (`sources` then says which input and page
    each row is); pages are rendered one at a time, each prepared before the next."""
    rows, sources = [], []
    for index, (text, data) in enumerate(zip(texts, images)):
        param = f"{request.field}[{index}]"
        if data is None:
            rows.extend(model.prepare_texts([text], request).rows)
            sources.append((index, None))
            continue
        pages = decoder.pages(data, param)
        if pages is None:
            rows.append(_image_row(model, text, decoder.decode(data, param), param, request, budget))
            sources.append((index, None))
            continue
        try:
            for number in range(len(pages)):
                page = f"{param} page {number + 1}"
                rows.append(_image_row(model, text, pages.render(number), page, request, budget))
                sources.append((index, number + 1))
        finally:
            pages.close()
    documents = any(page is not None for _, page in sources)
    return Prepared(rows=rows, outputs=request.outputs, sources=sources if documents else None)


def _image_row(model, text, image, param: str, request: EmbedRequest, budget):
    row = (
        model.prepare_image(image, param, request) if text is None else model.prepare_fused(text, image, param, request)
    )
    budget.add(row, param)
    return row
