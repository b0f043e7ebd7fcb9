"""The engine: a registry of named models and their per-process lifecycle.

`Engine.load` runs once in the gunicorn master (weights in, nothing run);
`start_worker` runs once in each worker after fork (threads, device, warm-up).
The web layer talks to it only through `resolve`, `embed_texts`,
`embed_token_ids`, `embed_images` and the describe methods, and gets numpy
arrays back.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import threading
import time
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
import transformers
from PIL import Image

from ..config import Settings
from ..errors import InferenceFailed, InvalidRequest, ModelNotFound, ServiceError
from ..images import ImageLimits, decode_image
from .batcher import Batcher, BatchLimits
from .device import dtype_name, resolve_device, resolve_dtype
from .loader import load_model
from .m3 import DENSE, HEAD_FILES, RowOutput
from .rows import Prepared, forward_planned
from .text_model import TextEmbedder, postprocess

log = logging.getLogger(__name__)


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


class EngineObserver:
    """Hooks for the batches the engine runs; the web layer's metrics implement them."""

    def batch(self, size: int, tokens: int, seconds: float) -> None:
        pass

    def queue_depth(self, depth: int) -> None:
        pass


def run_inline(fn: Callable, *args):
    return fn(*args)


class Engine:
    def __init__(self, settings: Settings, models: dict[str, TextEmbedder], device: str, dtype: torch.dtype):
        if not models:
            raise ValueError("an engine needs at least one model")
        self.settings = settings
        self.models = models
        self.device = device
        self.dtype = dtype
        self.created = int(time.time())
        self._started_pid: int | None = None
        self._start_lock = threading.Lock()
        self._ready = False
        self.observer = EngineObserver()
        # How a forward pass is run: inline, or (under gevent) in a real OS thread so
        # the worker's event loop keeps serving while the model computes.
        self.offload: Callable = run_inline
        self._waiting = 0
        self._waiting_lock = threading.Lock()
        self.stats = BatchStats()
        self.batchers: dict[tuple[str, str], Batcher] = {}  # (model, modality)

    @classmethod
    def load(cls, settings: Settings) -> "Engine":
        device = resolve_device(settings.device)
        dtype = resolve_dtype(settings.dtype, device)
        # One intra-op thread while loading: a thread pool created in the master is
        # inherited broken by forked workers (pytorch issue 49555).
        torch.set_num_threads(1)
        model = load_model(settings.resolved_model_path(), settings.served_model_name, dtype)
        return cls(settings, {model.name: model}, device, dtype)

    # ---------------------------------------------------------------- lifecycle
    def start_worker(self, batching: bool | None = None) -> None:
        """Per-process start: thread count, device move, warm-up, batcher. Idempotent per pid.

        `batching=False` serves each request on its own thread (sync workers,
        where requests never overlap and a hand-off would only add latency).
        """
        with self._start_lock:
            if self._started_pid == os.getpid():
                return
            self._ready = False
            threads = self.settings.resolved_cpu_threads()
            torch.set_num_threads(threads)
            if self.device != "cpu":
                for model in self.models.values():
                    model.to(self.device)
            if self.settings.enable_warmup:
                self.warmup()
            batching = self.settings.enable_batching if batching is None else batching
            self.batchers = {}
            if batching:
                for name, model in self.models.items():
                    for modality in model.modalities:
                        self.batchers[(name, modality)] = self._make_batcher(model.tower(modality))
            self._started_pid = os.getpid()
            self._ready = True
            log.info("worker %d ready: device=%s dtype=%s torch_threads=%d batching=%s",
                     os.getpid(), self.device, dtype_name(self.dtype), threads, "on" if batching else "off")

    def _make_batcher(self, tower) -> Batcher:
        s = self.settings
        limits = BatchLimits(max_batch_size=s.max_batch_size, max_batch_tokens=s.max_batch_tokens,
                             max_wait=s.max_wait_ms / 1000.0, max_queue=s.max_queue,
                             request_timeout=s.request_timeout)
        return Batcher(tower, limits, offload=self.offload, on_batch=self._on_batch,
                       on_queue=lambda depth: self.observer.queue_depth(self.queue_depth))

    @property
    def queue_depth(self) -> int:
        return self._waiting + sum(batcher.depth for batcher in self.batchers.values())

    def warmup(self) -> None:
        for model in self.models.values():
            short = model.tokenize_texts(["warm-up"])
            longest = model.tokenize_ids([[model.pad_id + 1] * model.max_length])
            model.forward(Prepared(rows=short.rows + longest.rows), self.settings.max_batch_size,
                          self.settings.max_batch_tokens)
            if "image" in model.modalities:
                row = model.preprocess_image(Image.new("RGB", (64, 48), (127, 127, 127)), "warm-up")
                model.tower("image").forward_rows([row], [0])

    @property
    def ready(self) -> bool:
        return self._ready and self._started_pid == os.getpid()

    def _ensure_started(self) -> None:
        # Servers other than gunicorn (the Flask test client, `flask run`) have no
        # post-fork hook: the first request starts the process instead.
        if self._started_pid != os.getpid():
            self.start_worker()

    # ------------------------------------------------------------------ lookups
    def resolve(self, name: str | None) -> TextEmbedder:
        if name is None or name == "":
            return next(iter(self.models.values()))
        model = self.models.get(name)
        if model is None:
            # "org/name" resolves to "name": clients often send the hub id.
            model = self.models.get(name.rstrip("/").rsplit("/", 1)[-1])
        if model is None:
            served = ", ".join(self.models)
            raise ModelNotFound(f"the model {name!r} is not served here; served models: {served}", param="model")
        return model

    @staticmethod
    def tower(model: TextEmbedder, modality: str, field: str):
        """The part of `model` that embeds `modality`, or a 400 that says the model has none."""
        tower = model.tower(modality)
        if tower is None:
            part = "vision tower" if modality == "image" else f"{modality} encoder"
            raise InvalidRequest(f"the model {model.name!r} has no {part}: it embeds "
                                 f"{' and '.join(model.modalities)} only", param=field, code="unsupported_modality")
        return tower

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
            "versions": {"torch": torch.__version__, "transformers": transformers.__version__,
                         "numpy": np.__version__},
        }

    # --------------------------------------------------------------- embedding
    def embed_texts(self, model: TextEmbedder, texts: list[str], *, normalize: bool = True, truncate: bool = True,
                    prompt: str | None = None, prompt_name: str | None = None, dimensions: int | None = None,
                    field: str = "input", outputs: frozenset[str] = DENSE) -> Embeddings:
        """Dense vectors, plus BGE-M3-style sparse weights and ColBERT vectors when `outputs` asks for them."""
        self._check_dimensions(model, dimensions)
        self.check_outputs(model, outputs)
        prefix = model.resolve_prompt(prompt, prompt_name)
        started = time.perf_counter()
        tokenized = model.tokenize_texts(texts, truncate=truncate, prompt=prefix, field=field)
        tokenized = dataclasses.replace(tokenized, outputs=frozenset(outputs) | DENSE)
        return self._run(model, "text", tokenized, normalize, dimensions, time.perf_counter() - started)

    @staticmethod
    def check_outputs(model: TextEmbedder, outputs, param: str = "output_types") -> None:
        missing = [output for output in outputs if output not in model.outputs]
        if missing:
            output = missing[0]
            raise InvalidRequest(
                f"the model {model.name!r} has no {output} head ({HEAD_FILES.get(output, output)} is not in its "
                f"directory); it computes {', '.join(sorted(model.outputs))}", param=param, code="unsupported_output")

    def embed_token_ids(self, model: TextEmbedder, rows: list[list[int]], *, normalize: bool = True,
                        truncate: bool = True, dimensions: int | None = None, field: str = "input") -> Embeddings:
        self._check_dimensions(model, dimensions)
        started = time.perf_counter()
        tokenized = model.tokenize_ids(rows, truncate=truncate, field=field)
        return self._run(model, "text", tokenized, normalize, dimensions, time.perf_counter() - started)

    def embed_images(self, model: TextEmbedder, images: list[bytes], limits: ImageLimits, *,
                     normalize: bool = True, dimensions: int | None = None, field: str = "images") -> Embeddings:
        """Encoded image files (already fetched) -> vectors; a bad image is a 4xx naming its index."""
        tower = self.tower(model, "image", field)
        self._check_dimensions(model, dimensions)
        started = time.perf_counter()
        # Decoding and resizing are CPU work: off the event loop under gevent, and
        # in parallel with other requests' preprocessing and the model (PIL and
        # numpy release the GIL in their kernels).
        prepared = self.offload(self._prepare_images, model, images, limits, field)
        return self._run(tower, "image", prepared, normalize, dimensions, time.perf_counter() - started)

    @staticmethod
    def _prepare_images(model, images: list[bytes], limits: ImageLimits, field: str) -> Prepared:
        rows = []
        for index, data in enumerate(images):
            param = f"{field}[{index}]"
            rows.append(model.preprocess_image(decode_image(data, limits, param), param))
        return Prepared(rows=rows)

    @staticmethod
    def _check_dimensions(model: TextEmbedder, dimensions: int | None) -> None:
        if dimensions is not None and dimensions > model.dimension:
            raise InvalidRequest(
                f"dimensions={dimensions} is larger than the model's {model.dimension} dimensions",
                param="dimensions")

    def _run(self, tower, modality: str, prepared: Prepared, normalize: bool, dimensions: int | None,
             tokenize_seconds: float) -> Embeddings:
        self._ensure_started()
        enqueued = time.perf_counter()
        batcher = self.batchers.get((tower.name, modality))
        try:
            if batcher is not None:
                vectors, started, finished = batcher.submit(prepared)
            else:
                self._queue_changed(+1)
                vectors, started = self.offload(self._forward, tower, prepared)
                finished = time.perf_counter()
        except ServiceError:
            raise
        except Exception as exc:  # an inference fault fails this request only
            log.exception("inference failed for model %s (%s)", tower.name, modality)
            raise InferenceFailed(f"inference failed: {type(exc).__name__}: {exc}") from exc
        timings = Timings(tokenize=tokenize_seconds, queue=started - enqueued, inference=finished - started)
        sparse = colbert = None
        if isinstance(vectors, list):  # RowOutputs: heads ran too
            rows: list[RowOutput] = vectors
            vectors = np.stack([row.dense for row in rows])
            if "sparse" in prepared.outputs:
                sparse = [row.sparse for row in rows]
            if "colbert" in prepared.outputs:
                colbert = [postprocess(row.colbert, normalize=normalize, dimensions=None) for row in rows]
        vectors = postprocess(vectors, normalize=normalize, dimensions=dimensions)
        return Embeddings(vectors=vectors, prompt_tokens=prepared.token_count, timings=timings, sparse=sparse,
                          colbert=colbert)

    def _forward(self, tower, prepared: Prepared) -> tuple[np.ndarray, float]:
        """Runs in the inference thread; returns the vectors and when the model became free."""
        with tower.lock:
            started = time.perf_counter()
            self._queue_changed(-1)
            vectors = forward_planned(tower, prepared, self.settings.max_batch_size,
                                      self.settings.max_batch_tokens, on_batch=self._on_batch)
        return vectors, started

    def _queue_changed(self, delta: int) -> None:
        with self._waiting_lock:
            self._waiting += delta
        self.observer.queue_depth(self.queue_depth)

    def _on_batch(self, size: int, tokens: int, seconds: float) -> None:
        self.stats.add(size, tokens, seconds)
        self.observer.batch(size, tokens, seconds)

    def describe_runtime(self) -> dict:
        """For /stats: this process's view of its models, queue and batches."""
        info = {
            "pid": os.getpid(),
            "device": self.device,
            "dtype": dtype_name(self.dtype),
            "ready": self.ready,
            "torch_threads": torch.get_num_threads(),
            "queue_depth": self.queue_depth,
            "batching": bool(self.batchers),
            "batches": self.stats.as_dict(),
            "models": [{**model.describe(), **model.size()} for model in self.models.values()],
        }
        if self.device == "cuda" and self.ready:
            info["gpu_memory"] = {"allocated_bytes": torch.cuda.memory_allocated(),
                                  "reserved_bytes": torch.cuda.memory_reserved(),
                                  "max_allocated_bytes": torch.cuda.max_memory_allocated()}
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
        return {"count": self.batches, "items": self.items, "tokens": self.tokens,
                "mean_size": self.items / self.batches if self.batches else 0.0, "max_size": self.largest,
                "inference_seconds": round(self.seconds, 6)}
