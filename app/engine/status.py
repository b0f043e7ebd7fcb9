"""What a process says about itself: `/health`'s summary and `/stats`' detail, read from the engine's public
state only."""

from __future__ import annotations

import os

import numpy as np
import torch
import transformers

from .budgets import token_budget
from .device import dtype_name


def health(engine) -> dict:
    return {
        "models": list(engine.models),
        # what each model takes: text, image, audio (a load balancer's routing by input kind reads this)
        "modalities": {name: model.describe().get("modalities", ["text"]) for name, model in engine.models.items()},
        "device": engine.device,
        "dtype": dtype_name(engine.dtype),
        "ready": engine.ready,
        "pid": os.getpid(),
        "torch_threads": torch.get_num_threads() if engine.ready else None,
        "runtime": {name: engine.runtime.describe(name)["runtime"] for name in engine.models},
        "versions": {"torch": torch.__version__, "transformers": transformers.__version__, "numpy": np.__version__},
    }


def runtime(engine) -> dict:
    """For /stats: this process's view of its models, queues and batches."""
    accounting = engine.accounting
    info = {
        "pid": os.getpid(),
        "device": engine.device,
        "dtype": dtype_name(engine.dtype),
        "ready": engine.ready,
        "torch_threads": torch.get_num_threads(),
        "queue_depth": accounting.queue_depth,
        "batching": bool(engine.batchers),
        "batches": accounting.stats.as_dict(),
        "cache": engine.cache.describe() if engine.cache is not None else None,
        "models": [
            {
                **model.describe(),
                **model.size(),
                **engine.runtime.describe(name),
                "queue_depth": accounting.model_queue_depth(name),
                "batches": accounting.model_stats[name].as_dict(),
                "token_budget": token_budgets(engine, model),
            }
            for name, model in engine.models.items()
        ],
    }
    if engine.device == "cuda" and engine.ready:
        info["gpu_memory"] = {
            "allocated_bytes": torch.cuda.memory_allocated(),
            "reserved_bytes": torch.cuda.memory_reserved(),
            "max_allocated_bytes": torch.cuda.max_memory_allocated(),
        }
    return info


def token_budgets(engine, model) -> dict:
    """Per kind of row: the rate this worker measured (tokens a second) and the tokens a request may have."""
    budgets = engine.config.budgets
    out = {}
    for kind in model.kinds:
        rate = engine.accounting.rate(model.name, kind)
        out[kind] = {
            "tokens_per_second": None if rate is None else round(rate, 1),
            "max_request_tokens": token_budget(budgets, rate),
        }
    return out
