"""Token embeddings -> one vector per input, as sentence-transformers' Pooling does.

Every mode works with right or left padding: positions come from the attention
mask, never from the assumption that real tokens start at index 0.
"""

from __future__ import annotations

import torch

POOLING_MODES = ("cls", "mean", "max", "mean_sqrt_len_tokens", "weightedmean", "lasttoken")

# sentence-transformers' legacy boolean keys, in the order it concatenates them.
_LEGACY_KEYS = (
    ("pooling_mode_cls_token", "cls"),
    ("pooling_mode_max_tokens", "max"),
    ("pooling_mode_mean_tokens", "mean"),
    ("pooling_mode_mean_sqrt_len_tokens", "mean_sqrt_len_tokens"),
    ("pooling_mode_weightedmean_tokens", "weightedmean"),
    ("pooling_mode_lasttoken", "lasttoken"),
)

_ALIASES = {
    "mean_tokens": "mean",
    "cls_token": "cls",
    "max_tokens": "max",
    "last_token": "lasttoken",
    "last": "lasttoken",
    "mean_sqrt_len": "mean_sqrt_len_tokens",
    "weighted_mean": "weightedmean",
}


def modes_from_config(config: dict) -> tuple[str, ...]:
    """Read `1_Pooling/config.json` in either its legacy (booleans) or newer (`pooling_mode`) form."""
    raw = config.get("pooling_mode")
    if raw is not None:
        names = [raw] if isinstance(raw, str) else list(raw)
        modes = tuple(_ALIASES.get(n, n) for n in names)
    else:
        modes = tuple(mode for key, mode in _LEGACY_KEYS if config.get(key))
    unknown = [m for m in modes if m not in POOLING_MODES]
    if unknown:
        raise ValueError(f"unsupported pooling mode(s) {unknown}; supported: {POOLING_MODES}")
    return modes or ("mean",)


def pool(
    hidden: torch.Tensor, mask: torch.Tensor, modes: tuple[str, ...], prompt_length: int | torch.Tensor | None = None
) -> torch.Tensor:
    """hidden [B, T, H], mask [B, T] (1 = real token) -> [B, H * len(modes)] in float32.

    prompt_length (one int, or one per row) excludes that many leading real
    tokens, for models whose pooling has `include_prompt: false`.
    """
    hidden = hidden.float()
    full_mask = mask
    if prompt_length is not None:
        mask = _exclude_prompt(mask, prompt_length)
    weights = mask.unsqueeze(-1).to(hidden.dtype)
    outputs = []
    for mode in modes:
        if mode == "cls":
            first = mask.int().argmax(dim=1)
            outputs.append(hidden[torch.arange(hidden.shape[0]), first])
        elif mode == "max":
            outputs.append(hidden.masked_fill(weights == 0, float("-inf")).max(dim=1).values)
        elif mode in ("mean", "mean_sqrt_len_tokens"):
            counts = weights.sum(dim=1).clamp(min=1e-9)
            summed = (hidden * weights).sum(dim=1)
            outputs.append(summed / (counts if mode == "mean" else counts.sqrt()))
        elif mode == "weightedmean":
            positions = torch.arange(1, hidden.shape[1] + 1, dtype=hidden.dtype, device=hidden.device)
            # Left padding shifts real tokens right; weights count from the first real one.
            offsets = full_mask.int().argmax(dim=1, keepdim=True).to(hidden.dtype)
            position_weights = (positions.unsqueeze(0) - offsets).unsqueeze(-1) * weights
            outputs.append((hidden * position_weights).sum(dim=1) / position_weights.sum(dim=1).clamp(min=1e-9))
        elif mode == "lasttoken":
            seq_len = mask.shape[1]
            last = seq_len - 1 - full_mask.flip(1).int().argmax(dim=1)
            outputs.append(hidden[torch.arange(hidden.shape[0]), last])
        else:  # pragma: no cover - rejected by modes_from_config
            raise ValueError(f"unsupported pooling mode {mode!r}")
    return torch.cat(outputs, dim=-1)


def _exclude_prompt(mask: torch.Tensor, prompt_length: int | torch.Tensor) -> torch.Tensor:
    """Zero the first prompt_length real tokens of each row (pooling `include_prompt: false`)."""
    if isinstance(prompt_length, torch.Tensor):
        prompt_length = prompt_length.view(-1, 1)
    real_before = mask.cumsum(dim=1)
    return mask * (real_before > prompt_length).to(mask.dtype)
