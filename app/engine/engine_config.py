"""What the engine needs to know, and nothing else: built once from the service's Settings."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from .batcher import BatchLimits
from .budgets import Budgets
from .cache import CacheConfig
from .device import resolve_device


@dataclass(frozen=True)
class ModelSpec:
    name: str
    path: Path


@dataclass(frozen=True)
class LoadOptions:
    """What some families need at load time (the rest ignore it)."""

    vlm_min_image_tokens: int = 256
    vlm_max_image_tokens: int = 1280
    vlm_max_length: int = 1800


@dataclass(frozen=True)
class EngineConfig:
    models: tuple[ModelSpec, ...]
    device: str = "auto"  # auto, cpu or cuda
    dtype: str = "auto"  # auto, float32, float16 or bfloat16
    runtime: str = "auto"  # auto, eager or compile (see compiled.py)
    cpu_threads: int = 1  # torch threads per worker, already resolved
    # Whether the process that loads the models forks the workers (gunicorn's preload): only then is compiling
    # as they load done once for all; otherwise each worker compiles after /ready, never in its boot, which
    # gunicorn's TIMEOUT bounds.
    shared_load: bool = True
    batching: bool = True
    warmup: bool = True
    limits: BatchLimits = field(default_factory=BatchLimits)
    budgets: Budgets = field(default_factory=Budgets)
    load: LoadOptions = field(default_factory=LoadOptions)
    cache: CacheConfig = field(default_factory=CacheConfig)

    @classmethod
    def from_settings(cls, settings) -> EngineConfig:
        gpu = resolve_device(settings.device) == "cuda"
        return cls(
            models=tuple(ModelSpec(name, Path(path)) for name, path in settings.model_specs()),
            device=settings.device,
            dtype=settings.dtype,
            runtime=settings.runtime,
            cpu_threads=settings.resolved_cpu_threads(gpu=gpu),
            shared_load=settings.preload,
            batching=settings.enable_batching,
            warmup=settings.enable_warmup,
            limits=BatchLimits(
                max_batch_size=settings.max_batch_size,
                max_batch_tokens=settings.max_batch_tokens,
                max_wait=settings.max_wait_ms / 1000.0,
                return_wait=settings.return_wait,
                max_queue=settings.max_queue,
                request_timeout=settings.request_timeout,
            ),
            budgets=Budgets(
                request_tokens=settings.max_request_tokens,
                request_image_tokens=settings.max_request_image_tokens,
                response_values=settings.max_response_values,
                request_timeout=settings.request_timeout,
            ),
            load=LoadOptions(
                vlm_min_image_tokens=settings.vlm_min_image_tokens,
                vlm_max_image_tokens=settings.vlm_max_image_tokens,
                vlm_max_length=settings.vlm_max_length,
            ),
            cache=CacheConfig(
                local_bytes=settings.cache_bytes,
                redis_url=settings.redis_url,
                ttl=settings.cache_ttl,
                redis_timeout=settings.redis_timeout,
                redis_retry_after=settings.redis_retry_after,
            ),
        )
