"""A corpus as a stream of records: JSONL, CSV, Parquet or plain text (a line a record), from a file or
stdin, never held in memory whole. Each record has its position in the input (what resuming counts by),
an id (the named field, else the position) and a text."""

from __future__ import annotations

import csv
import io
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import orjson

FORMATS = ("jsonl", "csv", "parquet", "text")
_SUFFIXES = {".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "jsonl", ".csv": "csv", ".parquet": "parquet"}
_SUFFIXES.update({".txt": "text", ".text": "text"})


class InputError(ValueError):
    """The input cannot be read as asked: a missing field, a line that is not JSON, an unknown format."""


@dataclass(frozen=True)
class Record:
    position: int
    id: str
    text: str | None  # None: the record has no text in the named field (it is rejected, not sent)


def input_format(path: str, given: str | None) -> str:
    if given:
        return given
    if path == "-":
        raise InputError("reading stdin: say what it holds with --format (jsonl, csv, parquet or text)")
    name = path[:-3] if path.endswith(".gz") else path
    found = _SUFFIXES.get(Path(name).suffix.lower())
    if found is None:
        raise InputError(f"cannot tell the format of {path!r} from its name: give --format ({', '.join(FORMATS)})")
    return found


def read_records(path: str, fmt: str, text_field: str = "text", id_field: str | None = None) -> Iterator[Record]:
    """Every record of the input, in order."""
    readers = {"jsonl": _jsonl, "csv": _csv, "parquet": _parquet, "text": _text}
    yield from readers[fmt](path, text_field, id_field)


def _binary(path: str):
    if path == "-":
        return sys.stdin.buffer
    if path.endswith(".gz"):
        import gzip

        return gzip.open(path, "rb")
    return open(path, "rb")  # noqa: SIM115 - closed by the generator that reads it


def _record(position: int, row: dict, text_field: str, id_field: str | None, where: str) -> Record:
    if id_field is not None and id_field not in row:
        raise InputError(f"{where}: no id field {id_field!r} (fields: {', '.join(map(str, row))})")
    text = row.get(text_field)
    ident = str(row[id_field]) if id_field is not None else str(position)
    return Record(position, ident, text if isinstance(text, str) else None)


def _jsonl(path: str, text_field: str, id_field: str | None) -> Iterator[Record]:
    with _binary(path) as handle:
        position = 0
        for number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            try:
                row = orjson.loads(line)
            except orjson.JSONDecodeError as exc:
                raise InputError(f"{path}:{number}: not a JSON object: {exc}") from None
            if not isinstance(row, dict):
                raise InputError(f"{path}:{number}: not a JSON object")
            yield _record(position, row, text_field, id_field, f"{path}:{number}")
            position += 1


def _csv(path: str, text_field: str, id_field: str | None) -> Iterator[Record]:
    with _binary(path) as handle:
        reader = csv.DictReader(io.TextIOWrapper(handle, encoding="utf-8", newline=""))
        if reader.fieldnames is None or text_field not in reader.fieldnames:
            raise InputError(f"{path}: no column {text_field!r} (columns: {', '.join(reader.fieldnames or [])})")
        for position, row in enumerate(reader):
            yield _record(position, row, text_field, id_field, f"{path}:{position + 2}")


def _parquet(path: str, text_field: str, id_field: str | None) -> Iterator[Record]:
    parquet = require_pyarrow("reading Parquet").parquet
    source = io.BytesIO(sys.stdin.buffer.read()) if path == "-" else path
    reader = parquet.ParquetFile(source)
    names = reader.schema_arrow.names
    for needed in (text_field, id_field):
        if needed is not None and needed not in names:
            raise InputError(f"{path}: no column {needed!r} (columns: {', '.join(names)})")
    columns = [text_field] if id_field is None else [text_field, id_field]
    position = 0
    for batch in reader.iter_batches(batch_size=4096, columns=columns):
        texts = batch.column(text_field).to_pylist()
        ids = batch.column(id_field).to_pylist() if id_field is not None else None
        for index, text in enumerate(texts):
            ident = str(ids[index]) if ids is not None else str(position)
            yield Record(position, ident, text if isinstance(text, str) else None)
            position += 1


def _text(path: str, _text_field: str, _id_field: str | None) -> Iterator[Record]:
    with _binary(path) as handle:
        position = 0
        for line in io.TextIOWrapper(handle, encoding="utf-8", newline=None):
            text = line.rstrip("\n")
            if not text.strip():
                continue
            yield Record(position, str(position), text)
            position += 1


def count_records(path: str, fmt: str) -> int | None:
    """About how many records the input holds, for the progress bar's ETA (lines, fast; Parquet's own
    count): None from stdin."""
    if path == "-":
        return None
    if fmt == "parquet":
        return require_pyarrow("reading Parquet").parquet.ParquetFile(path).metadata.num_rows
    lines = 0
    with _binary(path) as handle:
        while block := handle.read(1 << 20):
            lines += block.count(b"\n")
    return max(0, lines - 1) if fmt == "csv" else lines


def require_pyarrow(for_what: str):
    try:
        import pyarrow
        import pyarrow.parquet  # noqa: F401 - the submodule callers use
    except ImportError:
        raise InputError(f"{for_what} needs pyarrow: pip install 'embedding-service[bulk]'") from None
    return pyarrow
