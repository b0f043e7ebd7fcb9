"""Cache keys: a model's fingerprint, and what one row feeds the model."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

from ..rows import FeatureRow, ImageRow, MultimodalRow, PairRow, TextRow

_CHUNK = 1 << 20
# Other runtimes' exports that hub repositories ship beside the torch weights (sentence-transformers' onnx/ and
# openvino/ folders): never loaded here, so they cannot change a vector, and they can be several times the size
# of the weights.
_NOT_LOADED = frozenset({"onnx", "openvino"})


def model_fingerprint(path: str | Path) -> str:
    """A hash of every byte of a model directory (but hidden files and other runtimes' exports).

    Two copies of one model share it wherever they are mounted; two different models never do, whatever they
    are called, even a fine-tune that keeps every file's size and layout. It reads the whole directory once
    per instance, in the master before fork, right after loading put the files in the page cache: see
    docs/cache.md for what it costs.
    """
    root = Path(path)
    digest = hashlib.sha256()
    buffer = bytearray(_CHUNK)
    view = memoryview(buffer)
    for file in sorted(p for p in root.rglob("*") if p.is_file()):
        parts = file.relative_to(root).parts
        if any(part.startswith(".") for part in parts) or parts[0] in _NOT_LOADED:
            continue
        digest.update(f"{'/'.join(parts)}\0{file.stat().st_size}\0".encode())
        with file.open("rb", buffering=0) as handle:
            while read := handle.readinto(buffer):
                digest.update(view[:read])
    return digest.hexdigest()[:32]


def model_salt(fingerprint: str, **served: object) -> bytes:
    """Every cache key's prefix for one served model: its content and everything else that changes its
    output for the same ids (dtype, family, load options)."""
    described = ",".join(f"{name}={served[name]!r}" for name in sorted(served))
    return hashlib.sha256(f"{fingerprint}|{described}".encode()).digest()[:16]


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
        body = b"T" + row.prompt_length.to_bytes(4, "little") + row.route.encode() + b"\0" + _ids(row.ids)
    elif isinstance(row, PairRow):
        body = b"P" + row.first_segment.to_bytes(4, "little") + _ids(row.ids)
    elif isinstance(row, MultimodalRow):
        body = b"M" + _ids(row.ids) + (_arrays(row.image) if row.image is not None else b"")
    elif isinstance(row, ImageRow):
        body = b"I" + _arrays(row.arrays)
    elif isinstance(row, FeatureRow):
        body = b"F" + row.route.encode() + b"\0" + _arrays(row.arrays)
    else:
        return None
    return hashlib.sha256(output.encode() + b"\0" + body).digest()[:20]
