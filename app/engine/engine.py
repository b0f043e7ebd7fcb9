"""The engine: a small facade over parts with their own state.

`Engine.load` runs once in the gunicorn master (weights in, nothing run);
`start_worker` runs once in each worker after fork. Behind it:

- the models by name (this module: `resolve`), and what each can do (`checks`);
- the worker's lifecycle: threads, device, warm-up, calibration, batchers (`lifecycle`);
- execution: tokenising off the event loop, the cache, the batcher or an inline pass, timings (`execution`);
- accounting: batch totals, queue depths, the observer (`accounting`), and what `status` reports.

The web layer calls the `embed_*` and `rerank` methods with a request object (`requests`) and gets numpy
arrays back. Which family a model is never matters here: requests are checked against its capabilities and
its rows go through its `forward`.
"""

from __future__ import annotations

import functools
import logging
import time

import numpy as np
import torch

from . import checks, classification, late_interaction, status
from .accounting import Accounting
from .cache import TieredCache, model_fingerprint, model_salt
from .calibration import Calibrations
from .capabilities import RERANK
from .compiled import CompiledRuntime
from .device import resolve_device, resolve_dtype
from .engine_config import EngineConfig
from .errors import ModelLoadError, ModelNotFound
from .execution import Execution
from .families import ServedModel
from .lifecycle import Lifecycle
from .loader import load_model
from .requests import (
    AudioDecoder,
    EmbedRequest,
    ImageDecoder,
    MediaDecoders,
    MixedInput,
    ScoreRequest,
    VideoDecoder,
    request_of,
)
from .results import Classes, Embeddings, EngineObserver, Scores
from .rows import Prepared

log = logging.getLogger(__name__)


class Engine:
    def __init__(
        self,
        config: EngineConfig,
        models: dict[str, ServedModel],
        device: str,
        dtype: torch.dtype,
        observer: EngineObserver | None = None,
        fingerprints: dict[str, str] | None = None,
    ):
        if not models:
            raise ValueError("an engine needs at least one model")
        self.config = config
        self.models = models
        self.dtype = dtype
        self.created = int(time.time())
        self.runtime = CompiledRuntime(config.runtime, device, dtype, config.cpu_threads, config.shared_load)
        # Every cache key starts with its model's content fingerprint, family and dtype: two models never
        # share entries, whatever they are called; one model shares them across instances. (The load options
        # change only the ids or pixels a row holds, which its key hashes.)
        self.cache = TieredCache(config.cache) if config.cache.enabled else None
        self.fingerprints = dict(fingerprints or {})  # by model: its content's hash (/info's model_sha)
        salts = {
            name: model_salt(fingerprint, family=models[name].family, dtype=str(dtype))
            for name, fingerprint in self.fingerprints.items()
        }
        self.batchers: dict = {}  # (model, kind of row) -> Batcher, filled by each worker's start
        self.accounting = Accounting(models, observer or EngineObserver(), self.batchers)
        self.calibrator = Calibrations(config.limits)
        self.execution = Execution(
            config.limits, config.budgets, self.accounting, self.batchers, self.cache, salts, self._ensure
        )
        self.lifecycle = Lifecycle(
            config, models, dtype, self.runtime, self.execution, self.accounting, self.calibrator, self.batchers
        )
        self.lifecycle.device = device

    @classmethod
    def load(cls, config: EngineConfig, observer: EngineObserver | None = None) -> Engine:
        device = resolve_device(config.device)
        dtype = resolve_dtype(config.dtype, device)
        # One intra-op thread while loading: a thread pool created in the master is
        # inherited broken by forked workers (pytorch issue 49555).
        torch.set_num_threads(1)
        models: dict[str, ServedModel] = {}
        fingerprints: dict[str, str] = {}
        for spec in config.models:
            try:
                models[spec.name] = load_model(spec.path, spec.name, dtype, config.load)
                if config.cache.enabled:
                    fingerprints[spec.name] = model_fingerprint(spec.path)
            except Exception as exc:  # noqa: BLE001 - any reader's error (safetensors, torch, a config) is this entry's
                raise ModelLoadError(spec, f"cannot load it: {type(exc).__name__}: {exc}") from exc
        engine = cls(config, models, device, dtype, observer, fingerprints)
        engine.runtime.before_fork(models)  # still on one thread: see compiled.py
        return engine

    # ---------------------------------------------------------------- lifecycle
    def start_worker(self, batching=None, offload=None, background=None) -> None:
        """Per-process start after fork (see Lifecycle.start). Idempotent per pid."""
        self.lifecycle.start(batching, offload, background)

    def _ensure(self) -> None:
        # Servers other than gunicorn have no post-fork hook: the first request starts the process instead.
        self.lifecycle.ensure_started()

    @property
    def ready(self) -> bool:
        return self.lifecycle.ready

    @property
    def device(self) -> str:
        return self.lifecycle.device

    @device.setter
    def device(self, device: str) -> None:
        self.lifecycle.device = device

    # ------------------------------------------------------------------ models
    def resolve(self, name: str | None, *capabilities: str | None) -> ServedModel:
        """The model a request names. None named: the first served model that has the first of `capabilities`
        any model has (the route's task, so a rerank request finds the reranker beside an embedder, and GME's
        routes the vision-language model beside a text one), else the first. Picks only: `check` says whether
        it can do the task."""
        if name is None or name == "":
            for capability in capabilities:
                for model in self.models.values():
                    if capability in model.capabilities:
                        return model
            return next(iter(self.models.values()))
        model = self.models.get(name)
        if model is None:
            # "org/name" resolves to "name": clients often send the hub id.
            model = self.models.get(name.rstrip("/").rsplit("/", 1)[-1])
        if model is None:
            served = ", ".join(self.models)
            raise ModelNotFound(f"the model {name!r} is not served here; served models: {served}", param="model")
        return model

    check = staticmethod(checks.check)
    is_reranker = staticmethod(checks.is_reranker)
    scores_late = staticmethod(checks.scores_late)

    def describe_models(self) -> list[dict]:
        return [model.describe() for model in self.models.values()]

    def health(self) -> dict:
        return status.health(self)

    def describe_runtime(self) -> dict:
        return status.runtime(self)

    @property
    def stats(self):
        return self.accounting.stats

    @property
    def model_stats(self) -> dict:
        return self.accounting.model_stats

    @property
    def calibrations(self) -> dict:
        """This worker's int8 ranges by model."""
        return self.calibrator.by_model

    @property
    def queue_depth(self) -> int:
        return self.accounting.queue_depth

    # -------------------------------------------------------------- tokenizer
    def tokenize(self, model: ServedModel, texts: list[str], *, add_special_tokens=True, prompt_name=None):
        """How the model's tokenizer splits `texts`: TEI's /tokenize."""
        split = functools.partial(model.tokens, add_special_tokens=add_special_tokens, prompt_name=prompt_name)
        return self.execution.off_loop(sum(map(len, texts)), split, texts)

    def decode(self, model: ServedModel, rows: list[list[int]], *, skip_special_tokens: bool = True) -> list[str]:
        decode = functools.partial(model.decode, skip_special_tokens=skip_special_tokens)
        return self.execution.off_loop(sum(map(len, rows)), decode, rows, stage="decode")

    # --------------------------------------------------------------- embedding
    def embed_texts(self, model: ServedModel, texts: list[str], request: EmbedRequest | None = None, **fields):
        """Dense vectors, plus sparse weights, multi-vectors or token vectors where the request's outputs ask
        and the model has them."""
        request = request_of(EmbedRequest, request, fields)
        checks.check_text(model, request)
        checks.check_dimensions(model, request.dimensions)
        self.execution.check_capacity(model, "text")
        started = time.perf_counter()
        chars = sum(map(len, texts)) + len(texts) * request.prefix_chars
        prepared = self.execution.off_loop(chars, model.prepare_texts, texts, request)
        return self.execution.embed(model, "text", prepared, request, time.perf_counter() - started)

    def embed_token_ids(self, model: ServedModel, rows: list[list[int]], request=None, **fields) -> Embeddings:
        request = request_of(EmbedRequest, request, fields)
        checks.require(model, "text", request.field)
        checks.check_dimensions(model, request.dimensions)
        started = time.perf_counter()
        prepared = model.prepare_token_ids(rows, request)
        return self.execution.embed(model, "text", prepared, request, time.perf_counter() - started)

    def embed_images(self, model, images: list[bytes], decoder: ImageDecoder, request=None, **fields) -> Embeddings:
        """Encoded image files (already fetched) -> vectors; a bad image is a 4xx naming its index."""
        return self.embed_inputs(model, [None] * len(images), images, decoder, request, **fields)

    def embed_inputs(self, model, texts: list, images: list, decoder: ImageDecoder, request=None, **fields):
        """One vector per input: a text, an image, or (vision-language embedders) a text and an image together."""
        request = request_of(EmbedRequest, request, {"field": "images", **fields} if request is None else fields)
        modality = checks.check_inputs(model, texts, images, request)
        checks.check_dimensions(model, request.dimensions)
        self.execution.check_capacity(model, modality)
        started = time.perf_counter()
        prepared = self.execution.prepare_inputs(model, texts, images, decoder, request)
        return self.execution.embed(model, modality, prepared, request, time.perf_counter() - started)

    def embed_audio(self, model, clips: list[bytes], decoder: AudioDecoder, request=None, **fields) -> Embeddings:
        """Encoded audio files (already fetched) -> vectors; a bad clip is a 4xx naming its index."""
        return self._embed_media(model, "audio", clips, decoder, request, fields)

    def embed_videos(self, model, videos: list[bytes], decoder: VideoDecoder, request=None, **fields) -> Embeddings:
        """Encoded video files (already fetched) -> vectors, from the frames the model samples; a bad video is a
        4xx naming its index."""
        return self._embed_media(model, "video", videos, decoder, request, fields)

    def embed_mixed(self, model, inputs: list[MixedInput], decoders: MediaDecoders, request=None, **fields):
        """Inputs of several modalities each (a text with a video, a clip with an image) -> one vector each, for a
        model that takes them together (sentence-transformers' message modality)."""
        request = request_of(EmbedRequest, request, {"field": "input", **fields} if request is None else fields)
        checks.check_mixed(model, inputs, request.field)
        checks.check_dimensions(model, request.dimensions)
        self.execution.check_capacity(model, "message")
        started = time.perf_counter()
        prepared = self.execution.prepare_mixed(model, inputs, decoders, request)
        return self.execution.embed(model, "message", prepared, request, time.perf_counter() - started)

    def _embed_media(self, model, kind: str, items: list[bytes], decoder, request, fields) -> Embeddings:
        request = request_of(EmbedRequest, request, {"field": kind, **fields} if request is None else fields)
        checks.require(model, kind, request.field)
        checks.check_dimensions(model, request.dimensions)
        self.execution.check_capacity(model, kind)
        started = time.perf_counter()
        prepared = self.execution.prepare_media(model, kind, items, decoder, request)
        return self.execution.embed(model, kind, prepared, request, time.perf_counter() - started)

    def quantize(self, model, vectors: np.ndarray, precision: str, *, dimensions=None, normalize=True) -> np.ndarray:
        """`vectors` (post-processed with `dimensions` and `normalize`) at `precision`."""
        offload = self.execution.offload
        return self.calibrator.quantize(model, vectors, precision, dimensions, normalize, offload)

    # ----------------------------------------------------------------- scoring
    def rerank_images(
        self, model, queries: list[str], images: list[bytes], decoder: ImageDecoder, request=None, **fields
    ):
        """Every text query against every image (a PDF: each of its pages) by a visual late-interaction model."""
        request = request_of(ScoreRequest, request, {"field": "images", **fields} if request is None else fields)
        checks.require_multi_vector_images(model, request.field)
        return late_interaction.rerank_images(self, model, queries, images, decoder, request)

    def classify(self, model, inputs: list, request=None, **fields) -> Classes:
        """Texts or (text, text pair) tuples -> every label's score, [inputs, labels] (classification.py)."""
        request = request_of(ScoreRequest, request, {"field": "inputs", **fields} if request is None else fields)
        return classification.classify(self.execution, model, inputs, request)

    def rerank(self, model, queries: list[str], documents: list[str], request=None, **fields) -> Scores:
        """Every query against every document: one pair row each, batched like any other row."""
        request = request_of(ScoreRequest, request, fields)
        checks.require_rerank(model)
        if checks.scores_late(model):
            return late_interaction.rerank(self, model, queries, documents, request)
        self.execution.check_capacity(model, "pair")
        started = time.perf_counter()

        def prepare() -> Prepared:
            rows = [row for query in queries for row in model.prepare_pairs(query, documents, request).rows]
            return Prepared(rows=rows, outputs=frozenset({RERANK}))

        pair_prefix = len(queries[0] if queries else "") + len(request.instruction or "")
        chars = len(queries) * (sum(map(len, documents)) + len(documents) * pair_prefix)
        prepared = self.execution.off_loop(chars, prepare)
        results, timings, cached = self.execution.execute(
            model, "pair", prepared, time.perf_counter() - started, request
        )
        scores = results.scores if request.raw_scores else model.activate(results.scores)
        return Scores(
            scores=scores.reshape(len(queries), len(documents)),
            prompt_tokens=prepared.token_count,
            timings=timings,
            model=model.name,
            cache=cached,
        )
