"""The engine: a registry of named models of any family, and their per-process lifecycle.

`Engine.load` runs once in the gunicorn master (weights in, nothing run);
`start_worker` runs once in each worker after fork (threads, device, warm-up,
one batcher per model and kind of row). The web layer talks to it only
through `resolve`, the `require` / `check_outputs` checks, the `embed_*`
methods and the describe methods, and gets numpy arrays back. Which family a
model is never matters here: requests are checked against its capabilities
and its rows go through its `forward`.
"""

from __future__ import annotations

import functools
import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Protocol

import numpy as np
import torch
import transformers
from PIL import Image

from .batcher import Batcher
from .cache import TieredCache, model_fingerprint, model_salt
from .cache import lookup as cache_lookup
from .capabilities import EMBED_IMAGE, EMBED_INTERLEAVED, EMBED_TEXT, HEAD_FILES, MODALITY_CAPABILITY, RERANK, TOKENS
from .compiled import CompiledRuntime
from .device import dtype_name, resolve_device, resolve_dtype
from .engine_config import EngineConfig, ModelSpec
from .errors import EngineError, InferenceFailed, InvalidInput, ModelNotFound, Unsupported
from .families import ModelFamily
from .heap import trim_heap
from .loader import load_model
from .outputs import Results
from .postprocess import postprocess
from .quantization import CALIBRATED, Calibration, calibration_texts, quantize
from .requests import EmbedRequest, ScoreRequest, request_of
from .rows import Prepared, forward_planned

log = logging.getLogger(__name__)

# Requests with more characters than this are tokenised off the event loop (see Engine._off_loop).
OFFLOAD_CHARS = 20_000


class ImageDecoder(Protocol):
    """Turns an encoded image file into a picture, or raises the caller's error naming `param`. The engine
    calls it off the event loop; what counts as a safe image (bytes, pixels, formats) is the caller's."""

    def decode(self, data: bytes, param: str) -> Image.Image: ...


@dataclass(frozen=True)
class Timings:
    """Seconds spent in each stage of one request, for metrics and response headers."""

    tokenize: float = 0.0  # tokenisation, or image decoding and preprocessing
    queue: float = 0.0
    inference: float = 0.0


@dataclass(frozen=True)
class Embeddings:
    vectors: np.ndarray  # float32 [n, dim], caller's order
    prompt_tokens: int
    timings: Timings = Timings()
    sparse: list[tuple[np.ndarray, np.ndarray]] | None = None  # per input: (token ids, weights)
    colbert: list[np.ndarray] | None = None  # per input: [tokens - 1, dim]
    tokens: list[np.ndarray] | None = None  # per input: [tokens, hidden], before pooling
    model: str = ""
    cache: str | None = None  # hit, partial or miss; None: the cache was not asked


@dataclass(frozen=True)
class Scores:
    """Relevance scores of (query, document) pairs: [queries, documents], the caller's order."""

    scores: np.ndarray
    prompt_tokens: int
    timings: Timings = Timings()
    model: str = ""
    cache: str | None = None


class EngineObserver:
    """Hooks for the batches the engine runs; the service's metrics implement them."""

    def batch(self, model: str, size: int, tokens: int, seconds: float) -> None:
        pass

    def queue_depth(self, model: str, depth: int) -> None:
        pass

    def cache(self, model: str, tier: str, hits: int, misses: int, errors: int = 0) -> None:
        pass


class ModelLoadError(ValueError):
    """One entry of the model list could not be loaded; says which."""

    def __init__(self, spec: ModelSpec, reason: str):
        super().__init__(f"{spec.name}={spec.path}: {reason}")
        self.spec = spec


def run_inline(fn: Callable, *args):
    return fn(*args)


class Engine:
    def __init__(
        self,
        config: EngineConfig,
        models: dict[str, ModelFamily],
        device: str,
        dtype: torch.dtype,
        observer: EngineObserver | None = None,
        fingerprints: dict[str, str] | None = None,
    ):
        if not models:
            raise ValueError("an engine needs at least one model")
        self.config = config
        self.models = models
        self.device = device
        self.dtype = dtype
        self.observer = observer or EngineObserver()
        self.created = int(time.time())
        self._started_pid: int | None = None
        self._start_lock = threading.Lock()
        self._ready = False
        # How a forward pass is run: inline, or (under gevent) in a real OS thread so
        # the worker's event loop keeps serving while the model computes.
        self.offload: Callable = run_inline
        self._waiting: dict[str, int] = {name: 0 for name in models}
        self._waiting_lock = threading.Lock()
        self.stats = BatchStats()
        self.runtime = CompiledRuntime(config.runtime, device, dtype, config.cpu_threads, config.shared_load)
        self.model_stats = {name: BatchStats() for name in models}
        self.batchers: dict[tuple[str, str], Batcher] = {}  # (model, kind of row)
        self.calibrations: dict[str, Calibration] = {}  # int8 ranges per text-embedding model, per worker
        self._calibration_lock = threading.Lock()
        # Every cache key starts with its model's content fingerprint, family and dtype: two models never
        # share entries, whatever they are called; one model shares them across instances. (The load options
        # change only the ids or pixels a row holds, which its key hashes.)
        self.cache = TieredCache(config.cache) if config.cache.enabled else None
        self.cache_salts = {
            name: model_salt(fingerprint, family=models[name].family, dtype=str(dtype))
            for name, fingerprint in (fingerprints or {}).items()
        }

    @classmethod
    def load(cls, config: EngineConfig, observer: EngineObserver | None = None) -> Engine:
        device = resolve_device(config.device)
        dtype = resolve_dtype(config.dtype, device)
        # One intra-op thread while loading: a thread pool created in the master is
        # inherited broken by forked workers (pytorch issue 49555).
        torch.set_num_threads(1)
        models: dict[str, ModelFamily] = {}
        fingerprints: dict[str, str] = {}
        for spec in config.models:
            try:
                models[spec.name] = load_model(spec.path, spec.name, dtype, config.load)
                if config.cache.enabled:
                    fingerprints[spec.name] = model_fingerprint(spec.path)
            except (OSError, ValueError) as exc:
                raise ModelLoadError(spec, f"cannot load it: {exc}") from exc
        engine = cls(config, models, device, dtype, observer, fingerprints)
        engine.runtime.before_fork(models)  # still on one thread: see compiled.py
        return engine

    def _calibrate(self, model: ModelFamily) -> Calibration | None:
        """The model's vectors of the shipped calibration corpus, whose per-dimension ranges scale its int8
        and uint8 vectors. Computed in each worker (the master never runs a forward pass: see
        ARCHITECTURE.md), the same in all of them: the same weights, corpus, device and dtype give the same
        ranges, so a vector's int8 form never depends on its request or on the worker that answered it."""
        if MODALITY_CAPABILITY["text"] not in model.capabilities:
            return None
        with self._calibration_lock:
            if model.name not in self.calibrations:
                limits = self.config.limits
                lane = model.lane(model.kind_of("text"))
                prepared = model.prepare_texts(calibration_texts())
                with model.lock:
                    results = forward_planned(lane, prepared, limits.max_batch_size, limits.max_batch_tokens)
                self.calibrations[model.name] = Calibration(results.dense)
            return self.calibrations[model.name]

    def quantize(
        self,
        model: ModelFamily,
        vectors: np.ndarray,
        precision: str,
        *,
        dimensions: int | None = None,
        normalize: bool = True,
    ) -> np.ndarray:
        """`vectors` (post-processed with `dimensions` and `normalize`) at `precision`."""
        ranges = None
        if precision in CALIBRATED:
            calibration = self.calibrations.get(model.name) or self.offload(self._calibrate, model)
            ranges = calibration.ranges(dimensions, normalize) if calibration else None
        return quantize(vectors, precision, ranges)

    # ---------------------------------------------------------------- lifecycle
    def start_worker(
        self, batching: bool | None = None, offload: Callable | None = None, background: Callable | None = None
    ) -> None:
        """Per-process start: thread count, device move, warm-up of every model, batchers. Idempotent per pid.

        `batching=False` serves each request on its own thread (sync workers,
        where requests never overlap and a hand-off would only add latency).
        `offload` runs forward passes (gevent's pool of OS threads, in gevent workers).
        `background` runs a callable in a real OS thread: the compiled runtime's compilation for workers of
        several threads, after the worker is ready (without it, as under `flask run` or in tests, those
        models stay eager; workers of one thread inherit what `load` compiled).
        """
        with self._start_lock:
            if self._started_pid == os.getpid():
                return
            self._ready = False
            if offload is not None:
                self.offload = offload
            torch.set_num_threads(self.config.cpu_threads)
            if self.device != "cpu":
                for model in self.models.values():
                    model.to(self.device)
            self.calibrations = {}  # a fork's copy is its parent's, who may have run on another device
            if self.config.warmup:
                self.warmup()
            batching = self.config.batching if batching is None else batching
            self.batchers = {}
            if batching:
                for name, model in self.models.items():
                    for kind in model.kinds:
                        self.batchers[(name, kind)] = self._make_batcher(model, kind)
            self._started_pid = os.getpid()
            self._ready = True
            self.runtime.start(self.models, background)
            log.info(
                "worker %d ready: models=%s device=%s dtype=%s torch_threads=%d batching=%s",
                os.getpid(),
                ",".join(self.models),
                self.device,
                dtype_name(self.dtype),
                self.config.cpu_threads,
                "on" if batching else "off",
            )

    def _make_batcher(self, model: ModelFamily, kind: str) -> Batcher:
        name = model.name
        return Batcher(
            model.lane(kind),
            self.config.limits,
            offload=self.offload,
            on_batch=self._batch_hook(name),
            on_queue=lambda depth: self._report_queue(name),
        )

    def warmup(self) -> None:
        """Every model, every kind of row it takes, and its int8 calibration: /ready turns 200 only after
        all of them ran."""
        limits = self.config.limits
        for model in self.models.values():
            for kind, prepared in model.warmup_inputs():
                forward_planned(model.lane(kind), prepared, limits.max_batch_size, limits.max_batch_tokens)
            self._calibrate(model)
        trim_heap()  # what the longest rows needed is freed, and should not stay with this worker

    @property
    def ready(self) -> bool:
        return self._ready and self._started_pid == os.getpid()

    def _ensure_started(self) -> None:
        # Servers other than gunicorn (the Flask test client, `flask run`) have no
        # post-fork hook: the first request starts the process instead.
        if self._started_pid != os.getpid():
            self.start_worker()

    # ------------------------------------------------------------------ lookups
    def resolve(self, name: str | None, capability: str | None = None) -> ModelFamily:
        """The model a request names. None named: the first served model that has `capability`
        (the route's task, so a rerank request finds the reranker beside an embedder), else the first."""
        if name is None or name == "":
            if capability is not None:
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

    def check(self, model: ModelFamily, capability: str, field: str = "input") -> None:
        """The caller's 4xx unless `model` can do `capability`: the one place these checks are made."""
        if capability in (EMBED_TEXT, EMBED_IMAGE):
            self.require(model, "text" if capability == EMBED_TEXT else "image", field)
        elif capability == EMBED_INTERLEAVED:  # an image at least: whether it takes both together is the call's
            self.require(model, "image", field)
        elif capability == RERANK:
            self.require_rerank(model)
        else:
            self.check_outputs(model, [capability], field)

    @staticmethod
    def require(model: ModelFamily, modality: str, field: str) -> None:
        """A 400 that says what the model does, unless it embeds `modality`."""
        if MODALITY_CAPABILITY[modality] in model.capabilities:
            return
        if Engine.is_reranker(model):
            raise Unsupported(
                f"the model {model.name!r} is a reranker: it scores (query, document) pairs and "
                "embeds nothing; send it to /rerank, /v1/rerank or /v2/rerank",
                param="model",
                code="unsupported_task",
            )
        embeds = [m for m, capability in MODALITY_CAPABILITY.items() if capability in model.capabilities]
        part = "vision tower" if modality == "image" else f"{modality} encoder"
        does = (
            f"it embeds {' and '.join(embeds)} only"
            if embeds
            else f"it does {', '.join(sorted(model.capabilities))} only"
        )
        raise Unsupported(f"the model {model.name!r} has no {part}: {does}", param=field, code="unsupported_modality")

    @staticmethod
    def is_reranker(model: ModelFamily) -> bool:
        return RERANK in model.capabilities and not any(c in model.capabilities for c in MODALITY_CAPABILITY.values())

    @staticmethod
    def require_rerank(model: ModelFamily) -> None:
        if RERANK not in model.capabilities:
            does = ", ".join(sorted(model.capabilities))
            raise Unsupported(
                f"the model {model.name!r} does not rerank: it does {does}; name a cross-encoder or "
                "LLM reranker in `model`",
                param="model",
                code="unsupported_task",
            )

    @staticmethod
    def check_outputs(model: ModelFamily, outputs, param: str = "output_types") -> None:
        missing = [output for output in outputs if output != "dense" and output not in model.capabilities]
        if TOKENS in missing:
            raise Unsupported(
                f"the model {model.name!r} ({model.family}) does not give per-token vectors; "
                "encoder and decoder text embedders do",
                param=param,
                code="unsupported_output",
            )
        if missing:
            output = missing[0]
            computes = ["dense", *sorted(c for c in model.capabilities if c in HEAD_FILES)]
            raise Unsupported(
                f"the model {model.name!r} has no {output} head ({HEAD_FILES.get(output, output)} is not in its "
                f"directory); it computes {', '.join(computes)}",
                param=param,
                code="unsupported_output",
            )

    def describe_models(self) -> list[dict]:
        return [model.describe() for model in self.models.values()]

    def health(self) -> dict:
        return {
            "models": list(self.models),
            "device": self.device,
            "dtype": dtype_name(self.dtype),
            "ready": self.ready,
            "pid": os.getpid(),
            "torch_threads": torch.get_num_threads() if self.ready else None,
            "runtime": {name: self.runtime.describe(name)["runtime"] for name in self.models},
            "versions": {"torch": torch.__version__, "transformers": transformers.__version__, "numpy": np.__version__},
        }

    # -------------------------------------------------------------- tokenizer
    def tokenize(
        self, model: ModelFamily, texts: list[str], *, add_special_tokens: bool = True, prompt_name: str | None = None
    ) -> list[list[dict]]:
        return self._off_loop(
            sum(map(len, texts)), model.tokens, texts, add_special_tokens=add_special_tokens, prompt_name=prompt_name
        )

    def decode(self, model: ModelFamily, rows: list[list[int]], *, skip_special_tokens: bool = True) -> list[str]:
        return self._off_loop(sum(map(len, rows)), model.decode, rows, skip_special_tokens=skip_special_tokens)

    # --------------------------------------------------------------- embedding
    def embed_texts(
        self, model: ModelFamily, texts: list[str], request: EmbedRequest | None = None, **fields
    ) -> Embeddings:
        """Dense vectors, plus sparse weights, multi-vectors or token vectors where the request's outputs ask
        and the model has them."""
        request = request_of(EmbedRequest, request, fields)
        self.require(model, "text", request.field)
        self.check_outputs(model, request.outputs, request.outputs_field)
        self._check_dimensions(model, request.dimensions)
        self._check_capacity(model, "text")
        started = time.perf_counter()
        chars = sum(map(len, texts)) + len(texts) * request.prefix_chars
        prepared = self._off_loop(chars, model.prepare_texts, texts, request)
        return self._run(model, "text", prepared, request, time.perf_counter() - started)

    def embed_token_ids(
        self, model: ModelFamily, rows: list[list[int]], request: EmbedRequest | None = None, **fields
    ) -> Embeddings:
        request = request_of(EmbedRequest, request, fields)
        self.require(model, "text", request.field)
        self._check_dimensions(model, request.dimensions)
        started = time.perf_counter()
        prepared = model.prepare_token_ids(rows, request)
        return self._run(model, "text", prepared, request, time.perf_counter() - started)

    def embed_images(
        self,
        model: ModelFamily,
        images: list[bytes],
        decoder: ImageDecoder,
        request: EmbedRequest | None = None,
        **fields,
    ) -> Embeddings:
        """Encoded image files (already fetched) -> vectors; a bad image is a 4xx naming its index."""
        request = request_of(EmbedRequest, request, {"field": "images", **fields} if request is None else fields)
        return self.embed_inputs(model, [None] * len(images), images, decoder, request)

    def embed_inputs(
        self,
        model: ModelFamily,
        texts: list[str | None],
        images: list[bytes | None],
        decoder: ImageDecoder,
        request: EmbedRequest | None = None,
        **fields,
    ) -> Embeddings:
        """One vector per input: a text, an image, or (vision-language embedders) a text and an image together."""
        request = request_of(EmbedRequest, request, {"field": "images", **fields} if request is None else fields)
        field = request.field
        if any(image is not None for image in images):
            self.require(model, "image", field)
        if any(text is not None for text in texts):
            self.require(model, "text", field)
        if (
            any(text is not None and image is not None for text, image in zip(texts, images))
            and EMBED_INTERLEAVED not in model.capabilities
        ):
            raise Unsupported(
                f"the model {model.name!r} cannot embed a text and an image together; it does "
                f"{', '.join(sorted(model.capabilities))}",
                param=field,
                code="unsupported_modality",
            )
        kinds = {model.kind_of("text" if image is None else "image") for image in images}
        if len(kinds) > 1:
            raise Unsupported(
                f"the model {model.name!r} embeds texts and images in separate passes; send them in separate requests",
                param=field,
                code="unsupported_modality",
            )
        self._check_dimensions(model, request.dimensions)
        modality = "text" if all(image is None for image in images) else "image"
        self._check_capacity(model, modality)
        started = time.perf_counter()
        # Decoding and resizing are CPU work: off the event loop under gevent, and
        # in parallel with other requests' preprocessing and the model (PIL and
        # numpy release the GIL in their kernels).
        prepared = self.offload(self._prepare_inputs, model, texts, images, decoder, request)
        return self._run(model, modality, prepared, request, time.perf_counter() - started)

    @staticmethod
    def _prepare_inputs(
        model: ModelFamily,
        texts: list[str | None],
        images: list[bytes | None],
        decoder: ImageDecoder,
        request: EmbedRequest,
    ) -> Prepared:
        rows = []
        for index, (text, data) in enumerate(zip(texts, images)):
            param = f"{request.field}[{index}]"
            if data is None:
                rows.extend(model.prepare_texts([text], request).rows)
                continue
            image = decoder.decode(data, param)
            if text is None:
                rows.append(model.prepare_image(image, param, request))
            else:
                rows.append(model.prepare_fused(text, image, param, request))
        return Prepared(rows=rows)

    def _check_capacity(self, model: ModelFamily, modality: str) -> None:
        """Overload is a 503 in milliseconds: checked before any tokenising, not only when rows are queued."""
        batcher = self.batchers.get((model.name, model.kind_of(modality)))
        if batcher is not None:
            batcher.check_capacity()

    def _off_loop(self, chars: int, prepare: Callable, *args, **kwargs):
        """Tokenising is CPU work: a large request's runs where it cannot stop a gevent worker's event loop
        (and heartbeat); tokenizers release the GIL while they work. Small ones are not worth the hand-off."""
        if chars > OFFLOAD_CHARS:
            return self.offload(functools.partial(prepare, *args, **kwargs))
        return prepare(*args, **kwargs)

    @staticmethod
    def _check_dimensions(model: ModelFamily, dimensions: int | None) -> None:
        if dimensions is not None and dimensions > model.dimension:
            raise InvalidInput(
                f"dimensions={dimensions} is larger than the model's {model.dimension} dimensions", param="dimensions"
            )

    def rerank(
        self,
        model: ModelFamily,
        queries: list[str],
        documents: list[str],
        request: ScoreRequest | None = None,
        **fields,
    ) -> Scores:
        """Every query against every document: one pair row each, batched like any other row."""
        request = request_of(ScoreRequest, request, fields)
        self.require_rerank(model)
        self._check_capacity(model, "pair")
        started = time.perf_counter()

        def prepare() -> Prepared:
            rows = [row for query in queries for row in model.prepare_pairs(query, documents, request).rows]
            return Prepared(rows=rows, outputs=frozenset({RERANK}))

        chars = len(queries) * (sum(map(len, documents)) + len(documents) * len(queries[0] if queries else ""))
        prepared = self._off_loop(chars, prepare)
        results, timings, cached = self._execute(
            model, "pair", prepared, time.perf_counter() - started, request.use_cache
        )
        scores = results.scores if request.raw_scores else model.activate(results.scores)
        return Scores(
            scores=scores.reshape(len(queries), len(documents)),
            prompt_tokens=prepared.token_count,
            timings=timings,
            model=model.name,
            cache=cached,
        )

    def _run(
        self, model: ModelFamily, modality: str, prepared: Prepared, request: EmbedRequest, tokenize_seconds: float
    ) -> Embeddings:
        results, timings, cached = self._execute(
            model, model.kind_of(modality), prepared, tokenize_seconds, request.use_cache
        )
        embeddings = self._embeddings(model.name, results, prepared, request.normalize, request.dimensions, timings)
        return replace(embeddings, cache=cached)

    def _execute(
        self, model: ModelFamily, kind: str, prepared: Prepared, tokenize_seconds: float, use_cache: bool = True
    ) -> tuple[Results, Timings, str | None]:
        """The request's results: cached rows from the cache, the rest computed (and then stored)."""
        self._ensure_started()
        salt = self.cache_salts.get(model.name)
        if self.cache is None or not use_cache or salt is None:
            return (*self._compute(model, kind, prepared, tokenize_seconds), None)
        found = cache_lookup(self.cache, salt, prepared)
        for tier, counts in found.tiers.items():
            self.observer.cache(model.name, tier, *counts)
        if not found.misses:
            return found.merge(None), Timings(tokenize=tokenize_seconds), found.state
        computed, timings = self._compute(model, kind, found.to_compute(), tokenize_seconds)
        self.cache.set_many(found.entries(computed))
        return found.merge(computed), timings, found.state

    def _compute(
        self, model: ModelFamily, kind: str, prepared: Prepared, tokenize_seconds: float
    ) -> tuple[Results, Timings]:
        enqueued = time.perf_counter()
        batcher = self.batchers.get((model.name, kind))
        try:
            if batcher is not None:
                results, started, finished = batcher.submit(prepared)
            else:
                self._queue_changed(model.name, +1)
                results, started = self.offload(self._forward, model, kind, prepared)
                finished = time.perf_counter()
        except EngineError:
            raise
        except Exception as exc:  # an inference fault fails this request only
            log.exception("inference failed for model %s (%s)", model.name, kind)
            raise InferenceFailed(f"inference failed: {type(exc).__name__}: {exc}") from exc
        return results, Timings(tokenize=tokenize_seconds, queue=started - enqueued, inference=finished - started)

    @staticmethod
    def _embeddings(
        name: str, results: Results, prepared: Prepared, normalize: bool, dimensions: int | None, timings: Timings
    ) -> Embeddings:
        colbert = None
        if results.multivector is not None:
            colbert = [postprocess(matrix, normalize=normalize, dimensions=None) for matrix in results.multivector]
        return Embeddings(
            vectors=postprocess(results.dense, normalize=normalize, dimensions=dimensions),
            prompt_tokens=prepared.token_count,
            timings=timings,
            sparse=results.sparse,
            colbert=colbert,
            tokens=results.tokens,
            model=name,
        )

    def _forward(self, model: ModelFamily, kind: str, prepared: Prepared) -> tuple[Results, float]:
        """Runs in the inference thread; returns the results and when the model became free."""
        with model.lock:
            started = time.perf_counter()
            self._queue_changed(model.name, -1)
            limits = self.config.limits
            results = forward_planned(
                model.lane(kind),
                prepared,
                limits.max_batch_size,
                limits.max_batch_tokens,
                on_batch=self._batch_hook(model.name),
            )
        return results, started

    # ------------------------------------------------------------ accounting
    @property
    def queue_depth(self) -> int:
        return sum(self.model_queue_depth(name) for name in self.models)

    def model_queue_depth(self, name: str) -> int:
        batched = sum(batcher.depth for (model, _), batcher in self.batchers.items() if model == name)
        return self._waiting[name] + batched

    def _queue_changed(self, name: str, delta: int) -> None:
        with self._waiting_lock:
            self._waiting[name] += delta
        self._report_queue(name)

    def _report_queue(self, name: str) -> None:
        self.observer.queue_depth(name, self.model_queue_depth(name))

    def _batch_hook(self, name: str) -> Callable[[int, int, float], None]:
        def on_batch(size: int, tokens: int, seconds: float) -> None:
            self.stats.add(size, tokens, seconds)
            self.model_stats[name].add(size, tokens, seconds)
            self.observer.batch(name, size, tokens, seconds)

        return on_batch

    def describe_runtime(self) -> dict:
        """For /stats: this process's view of its models, queues and batches."""
        info = {
            "pid": os.getpid(),
            "device": self.device,
            "dtype": dtype_name(self.dtype),
            "ready": self.ready,
            "torch_threads": torch.get_num_threads(),
            "queue_depth": self.queue_depth,
            "batching": bool(self.batchers),
            "batches": self.stats.as_dict(),
            "cache": self.cache.describe() if self.cache is not None else None,
            "models": [
                {
                    **model.describe(),
                    **model.size(),
                    **self.runtime.describe(name),
                    "queue_depth": self.model_queue_depth(name),
                    "batches": self.model_stats[name].as_dict(),
                }
                for name, model in self.models.items()
            ],
        }
        if self.device == "cuda" and self.ready:
            info["gpu_memory"] = {
                "allocated_bytes": torch.cuda.memory_allocated(),
                "reserved_bytes": torch.cuda.memory_reserved(),
                "max_allocated_bytes": torch.cuda.max_memory_allocated(),
            }
        return info


class BatchStats:
    """Running totals of the forward batches this process has run."""

    def __init__(self):
        self.batches = 0
        self.items = 0
        self.tokens = 0
        self.seconds = 0.0
        self.largest = 0

    def add(self, size: int, tokens: int, seconds: float) -> None:
        self.batches += 1
        self.items += size
        self.tokens += tokens
        self.seconds += seconds
        self.largest = max(self.largest, size)

    def as_dict(self) -> dict:
        return {
            "count": self.batches,
            "items": self.items,
            "tokens": self.tokens,
            "mean_size": self.items / self.batches if self.batches else 0.0,
            "max_size": self.largest,
            "inference_seconds": round(self.seconds, 6),
        }
