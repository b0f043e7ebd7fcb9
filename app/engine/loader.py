"""Pick a model directory's family and load it on the CPU, in its final dtype.

Runs in the gunicorn master before fork: nothing here may run a forward pass
or touch CUDA, and the weights are left exactly as the workers will use them
so their pages stay shared copy-on-write.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from transformers.utils import logging as hf_logging

from .declared import unserved
from .engine_config import LoadOptions
from .families import FAMILIES, ServedModel

log = logging.getLogger(__name__)


def family_of(path: str | Path) -> type[ServedModel]:
    path = Path(path)
    if not (path / "config.json").is_file() and not (path / "modules.json").is_file():
        raise ValueError(f"{str(path)!r} has no config.json or modules.json: not a Hugging Face model directory")
    reason = unserved(path)
    if reason is not None:
        raise ValueError(f"{path}: {reason}")
    return next(family for family in FAMILIES if family.detect(path))


def load_model(path: str | Path, name: str, dtype: torch.dtype, options: LoadOptions | None = None) -> ServedModel:
    hf_logging.disable_progress_bar()
    family = family_of(path)
    model = family.load(Path(path), name, dtype, options or LoadOptions())
    log.info("loaded model %s (%s) from %s: %s", name, family.family, path, model.summary())
    return model
