"""Cache keys: a model's fingerprint, and what one row feeds the model."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

from ..rows import ImageRow, MultimodalRow, PairRow, TextRow

_SMALL = 1 << 20  # files up to this size are hashed whole (configs, tokenizers, heads)
_SAMPLE = 1 << 20  # of larger ones (weights), their size and first and last MiB


def model_fingerprint(path: str | Path) -> str:
    """A hash of a model directory's content: small files whole, large ones by size and their ends.

    Two copies of one model share it wherever they are mounted; two different
    models never do, whatever they are called. Cheap enough for start-up:
    it reads at most 2 MiB per weight file.
    """
    root = Path(path)
    digest = hashlib.sha256()
    for file in sorted(p for p in root.rglob("*") if p.is_file()):
        relative = file.relative_to(root).as_posix()
        if relative.startswith(".") or "/." in relative:
            continue
        size = file.stat().st_size
        digest.update(f"{relative}\0{size}\0".encode())
        with file.open("rb") as handle:
            if size <= _SMALL:
                digest.update(handle.read())
            else:
                digest.update(handle.read(_SAMPLE))
                handle.seek(size - _SAMPLE)
                digest.update(handle.read(_SAMPLE))
    return digest.hexdigest()[:24]


def _ids(ids) -> bytes:
    return np.asarray(ids, dtype=np.int64).tobytes()


def _arrays(arrays: dict[str, np.ndarray]) -> bytes:
    digest = hashlib.sha256()
    for name in sorted(arrays):
        array = np.ascontiguousarray(arrays[name])
        digest.update(f"{name}\0{array.dtype.str}\0{array.shape}\0".encode())
        digest.update(array.tobytes())
    return digest.digest()


def row_key(row, output: str) -> bytes | None:
    """What the forward pass reads for this row and which output of it, hashed; None: not cacheable."""
    if isinstance(row, TextRow):
        body = b"T" + row.prompt_length.to_bytes(4, "little") + _ids(row.ids)
    elif isinstance(row, PairRow):
        body = b"P" + row.first_segment.to_bytes(4, "little") + _ids(row.ids)
    elif isinstance(row, MultimodalRow):
        body = b"M" + _ids(row.ids) + (_arrays(row.image) if row.image is not None else b"")
    elif isinstance(row, ImageRow):
        body = b"I" + _arrays(row.arrays)
    else:
        return None
    return hashlib.sha256(output.encode() + b"\0" + body).digest()[:20]
