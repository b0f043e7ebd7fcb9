"""sentence-transformers `Dense` modules: a linear projection after pooling."""

from __future__ import annotations

import torch

from .layout import DenseSpec


def _activation(path: str) -> torch.nn.Module:
    # Only classes from torch.nn, looked up by name: the config is data, not code to import.
    name = path.rsplit(".", 1)[-1]
    cls = getattr(torch.nn, name, None)
    if not (isinstance(cls, type) and issubclass(cls, torch.nn.Module)):
        raise ValueError(f"unsupported Dense activation {path!r}")
    return cls()


def load_dense(spec: DenseSpec, dtype: torch.dtype) -> torch.nn.Sequential:
    linear = torch.nn.Linear(spec.in_features, spec.out_features, bias=spec.bias)
    state = _load_state(spec)
    linear.load_state_dict({k.removeprefix("linear."): v for k, v in state.items()})
    module = torch.nn.Sequential(linear, _activation(spec.activation)).to(dtype)
    module.eval().requires_grad_(False)
    return module


def _load_state(spec: DenseSpec) -> dict[str, torch.Tensor]:
    safetensors_file = spec.path / "model.safetensors"
    if safetensors_file.is_file():
        from safetensors.torch import load_file

        return load_file(str(safetensors_file))
    bin_file = spec.path / "pytorch_model.bin"
    if bin_file.is_file():
        return torch.load(str(bin_file), map_location="cpu", weights_only=True)
    raise FileNotFoundError(f"{spec.path}: no model.safetensors or pytorch_model.bin for the Dense module")
