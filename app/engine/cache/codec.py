"""Cached values as bytes: a header, the payload, a checksum. A value that does not check out is a miss."""

from __future__ import annotations

import struct
import zlib

import numpy as np

_MAGIC = b"EC1"
_HEADER = struct.Struct("<3sBII")  # magic, kind, payload bytes, crc32
_KINDS = {"dense": 1, "score": 2, "sparse": 3, "colbert": 4}
_NAMES = {code: name for name, code in _KINDS.items()}


def encode(kind: str, value) -> bytes:
    if kind in ("dense", "score"):
        payload = np.asarray(value, dtype="<f4").tobytes()
    elif kind == "sparse":
        ids, weights = value
        count = len(ids)
        payload = struct.pack("<I", count) + np.asarray(ids, "<i8").tobytes() + np.asarray(weights, "<f4").tobytes()
    elif kind == "colbert":
        matrix = np.ascontiguousarray(value, dtype="<f4")
        payload = struct.pack("<II", *matrix.shape) + matrix.tobytes()
    else:
        raise ValueError(kind)
    return _HEADER.pack(_MAGIC, _KINDS[kind], len(payload), zlib.crc32(payload)) + payload


def plausible(kind: str, value, dimension: int) -> bool:
    """Whether a decoded value can be this model's output of `kind`: a well-formed value of another shape (a
    Redis shared with something else, a hand-edited key) or with NaNs is never served."""
    if kind == "score":
        return bool(np.isfinite(value))
    if kind == "dense":
        return value.shape == (dimension,) and bool(np.isfinite(value).all())
    if kind == "sparse":
        ids, weights = value
        return bool(np.isfinite(weights).all()) and (len(ids) == 0 or (ids[0] >= 0 and bool((np.diff(ids) > 0).all())))
    return value.ndim == 2 and bool(np.isfinite(value).all())


def decode(kind: str, data: bytes):
    """The value, or None when the bytes are not a whole, intact value of this kind."""
    if not data or len(data) < _HEADER.size:
        return None
    magic, code, length, crc = _HEADER.unpack_from(data)
    payload = data[_HEADER.size :]
    if magic != _MAGIC or _NAMES.get(code) != kind or len(payload) != length or zlib.crc32(payload) != crc:
        return None
    if kind == "dense":
        return np.frombuffer(payload, "<f4").astype(np.float32)
    if kind == "score":
        return float(np.frombuffer(payload, "<f4")[0])
    if kind == "sparse":
        (count,) = struct.unpack_from("<I", payload)
        ids = np.frombuffer(payload, "<i8", count, 4).astype(np.int64)
        weights = np.frombuffer(payload, "<f4", count, 4 + 8 * count).astype(np.float32)
        return ids, weights
    rows, columns = struct.unpack_from("<II", payload)
    return np.frombuffer(payload, "<f4", rows * columns, 8).reshape(rows, columns).astype(np.float32)
