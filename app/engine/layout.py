"""What a model directory says about how to embed with it.

Reads the sentence-transformers files when they exist (`modules.json`,
`1_Pooling/config.json`, `sentence_bert_config.json`,
`config_sentence_transformers.json`, `N_Dense/`) and falls back to sensible
defaults for a plain Hugging Face directory: mean pooling, normalised output,
the model's own maximum length.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from .pooling import modes_from_config


@dataclass(frozen=True)
class DenseSpec:
    path: Path
    in_features: int
    out_features: int
    bias: bool
    activation: str


@dataclass(frozen=True)
class ModelLayout:
    transformer_path: Path
    pooling_modes: tuple[str, ...] = ("mean",)
    include_prompt: bool = True
    dense: tuple[DenseSpec, ...] = ()
    max_seq_length: int | None = None
    do_lower_case: bool = False
    prompts: dict[str, str] = field(default_factory=dict)
    default_prompt_name: str | None = None


def _read_json(path: Path) -> dict | list | None:
    if not path.is_file():
        return None
    with path.open(encoding="utf-8") as handle:
        return json.load(handle)


def json_object(path: Path) -> dict:
    """A JSON file's object, or {} when the file is missing, unreadable or not an object."""
    try:
        data = _read_json(path)
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def json_list(path: Path) -> list:
    try:
        data = _read_json(path)
    except (OSError, ValueError):
        return []
    return data if isinstance(data, list) else []


def module_kind(type_name: str) -> str:
    """A modules.json `type` (a class path) -> its class name."""
    return type_name.rsplit(".", 1)[-1]


def dual_encoder_dir(root: str | Path) -> Path | None:
    """Where a CLIP-style text+image model lives under `root`, or None for a text model.

    A Hugging Face directory whose config has both a text and a vision config, or a
    sentence-transformers directory whose first module is a CLIPModel.
    """
    root = Path(root)
    candidates = [root]
    modules = _read_json(root / "modules.json")
    if isinstance(modules, list):
        candidates = [root / m.get("path", "") for m in modules if module_kind(m.get("type", "")) == "CLIPModel"]
    for candidate in candidates:
        config = _read_json(candidate / "config.json")
        if isinstance(config, dict) and "text_config" in config and "vision_config" in config:
            return candidate
    return None


def dual_encoder_layout(root: str | Path, model_dir: Path) -> ModelLayout:
    """Text+image models pool inside the model; only the prompts come from the directory."""
    st_config = _read_json(Path(root) / "config_sentence_transformers.json") or {}
    return ModelLayout(
        transformer_path=model_dir,
        pooling_modes=(),
        prompts=dict(st_config.get("prompts") or {}),
        default_prompt_name=st_config.get("default_prompt_name") or None,
    )


def read_layout(root: str | Path, default_pooling: tuple[str, ...] = ("mean",), *, pooled: bool = False) -> ModelLayout:
    """`default_pooling` is the family's convention for a directory without sentence-transformers files;
    `pooled`: the family makes one vector per text, so a module stack must say how (a Pooling module)."""
    root = Path(root)
    modules = _read_json(root / "modules.json")
    st_config = _read_json(root / "config_sentence_transformers.json") or {}
    prompts = dict(st_config.get("prompts") or {})
    default_prompt_name = st_config.get("default_prompt_name") or None

    if not isinstance(modules, list):
        # A plain Hugging Face directory: the family's pooling convention, normalised.
        bert_config = _read_json(root / "sentence_bert_config.json") or {}
        return ModelLayout(
            transformer_path=root,
            max_seq_length=bert_config.get("max_seq_length"),
            prompts=prompts,
            default_prompt_name=default_prompt_name,
            pooling_modes=default_pooling,
        )

    transformer_path = root
    pooling_modes: tuple[str, ...] = ("mean",)
    include_prompt = True
    dense: list[DenseSpec] = []
    ordered = sorted(modules, key=lambda m: m.get("idx", 0))
    kinds = [module_kind(module.get("type", "")) for module in ordered]
    if pooled and "Pooling" not in kinds and any(kind in ("Transformer", "Dense") for kind in kinds):
        # sentence-transformers would answer the token vectors (a multi-vector model's output), not one vector
        raise ValueError(
            f"{root}: modules.json ({' -> '.join(kinds)}) has no Pooling module, so the model's output is one vector "
            "per token, not per text; such (multi-vector) models are not served"
        )
    if pooled and "Dense" in kinds and kinds.index("Dense") < kinds.index("Pooling"):
        raise ValueError(
            f"{root}: modules.json ({' -> '.join(kinds)}) has a Dense module before Pooling (a per-token "
            "projection), which this service does not implement; it applies Dense to the pooled vector only"
        )
    for module, kind in zip(ordered, kinds):
        path = root / module.get("path", "")
        if kind == "Transformer":
            transformer_path = path if (path / "config.json").is_file() else root
        elif kind == "Pooling":
            config = _read_json(path / "config.json") or {}
            pooling_modes = modes_from_config(config)
            include_prompt = bool(config.get("include_prompt", True))
        elif kind == "Dense":
            config = _read_json(path / "config.json") or {}
            dense.append(
                DenseSpec(
                    path=path,
                    in_features=int(config["in_features"]),
                    out_features=int(config["out_features"]),
                    bias=bool(config.get("bias", True)),
                    activation=str(config.get("activation_function", "torch.nn.modules.linear.Identity")),
                )
            )
        elif kind == "Normalize":
            pass  # every vector is normalised unless the request says `normalize: false` (see postprocess.py)
        else:
            raise ValueError(f"{root}: unsupported sentence-transformers module {module.get('type')!r}")

    bert_config = (
        _read_json(transformer_path / "sentence_bert_config.json")
        or _read_json(root / "sentence_bert_config.json")
        or {}
    )
    return ModelLayout(
        transformer_path=transformer_path,
        pooling_modes=pooling_modes,
        include_prompt=include_prompt,
        dense=tuple(dense),
        max_seq_length=bert_config.get("max_seq_length"),
        do_lower_case=bool(bert_config.get("do_lower_case", False)),
        prompts=prompts,
        default_prompt_name=default_prompt_name,
    )


def transformer_dir(root: str | Path) -> Path:
    """Where the transformer's config.json is: the sentence-transformers Transformer module's
    directory, or the root of a plain Hugging Face directory."""
    root = Path(root)
    modules = _read_json(root / "modules.json")
    if isinstance(modules, list):
        for module in modules:
            if module_kind(module.get("type", "")) == "Transformer":
                path = root / module.get("path", "")
                if (path / "config.json").is_file():
                    return path
    return root


def model_config(root: str | Path) -> dict:
    """The transformer's config.json as a dict ({} when there is none)."""
    config = _read_json(transformer_dir(root) / "config.json")
    return config if isinstance(config, dict) else {}
