"""Where a job's vectors go: Parquet (one file, a row group per chunk) or NumPy shards plus an ids file.

Resuming rests on one rule: a chunk of the input is done exactly when its file exists, and that file is
written whole or not at all (a temporary name, then a rename). A job killed at any point, SIGKILL included,
leaves only whole chunks behind; run again, it skips them and computes the rest. The final Parquet file is
put together from the chunks' files at the end, again under a temporary name first.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np

from .records import InputError, require_pyarrow

OUTPUT_FORMATS = ("parquet", "numpy")
# sentence-transformers' precisions: what each dimension is stored as
STORED = {"float32": "float32", "float16": "float16", "int8": "int8", "uint8": "uint8"}
STORED.update({"binary": "int8", "ubinary": "uint8"})  # 8 dimensions a byte
METADATA_PREFIX = "embedding_service."


def output_format(path: str, given: str | None) -> str:
    if given:
        return given
    return "parquet" if path.endswith(".parquet") else "numpy"


class Sink:
    """The chunks' files, the job's identity beside them, and the final output."""

    def __init__(self, output: str, meta: dict):
        self.output = Path(output)
        self.meta = meta  # model, fingerprint, precision, dimension, ...: into the output's metadata

    # the state of a job, kept in `work`; the records refused, listed in `rejects_path` at the end
    work: Path
    rejects_path: Path

    def identity_problem(self, identity: dict) -> str | None:
        """Why the chunks already here cannot be continued with `identity` (None: they can, or there are none).
        Records the identity when the job starts fresh."""
        self.work.mkdir(parents=True, exist_ok=True)
        stored = self.work / "job.json"
        if stored.exists():
            before = json.loads(stored.read_text())
            changed = sorted(key for key in set(before) | set(identity) if before.get(key) != identity.get(key))
            if changed:
                return ", ".join(f"{key}: was {before.get(key)!r}, now {identity.get(key)!r}" for key in changed)
            return None
        _atomic_write(stored, json.dumps(identity, indent=2).encode())
        return None

    def done_chunks(self) -> set[int]:
        raise NotImplementedError

    def write_chunk(
        self, chunk: int, ids: list[str], rows: list, rejects: list[dict], pages: list | None = None
    ) -> None:
        """`rows`: a vector per id, or (token ids, weights) for sparse output. `pages`: with image inputs, each
        row's page of its PDF (from 1), None for an image; a PDF's record has a row per page."""
        raise NotImplementedError

    def finish(self, chunks: int) -> dict:
        raise NotImplementedError

    def write_rejects(self, chunk_rejects: list[list[dict]]) -> int:
        rows = [row for rejects in chunk_rejects for row in rejects]
        if rows:
            _atomic_write(self.rejects_path, b"".join(json.dumps(row).encode() + b"\n" for row in rows))
        elif self.rejects_path.exists():
            self.rejects_path.unlink()
        return len(rows)


class ParquetSink(Sink):
    """OUTPUT.parquet: columns `id` (string) and `embedding` (a fixed-size list of the precision's type),
    or for sparse output `indices` (int32 token ids) and `values` (float32 weights), lists of each row's
    own length; with image inputs, `page` after the id (a PDF's page, from 1; null for an image); the
    model, its fingerprint and the options in the file's key-value metadata. While the job runs, one file a
    chunk in OUTPUT.parquet.parts/."""

    def __init__(self, output: str, meta: dict):
        super().__init__(output, meta)
        self.pa = require_pyarrow("Parquet output")
        self.work = self.output.with_name(self.output.name + ".parts")
        self.rejects_path = self.output.with_name(self.output.name + ".rejects.jsonl")

    def _part(self, chunk: int) -> Path:
        return self.work / f"part-{chunk:08d}.parquet"

    def done_chunks(self) -> set[int]:
        if not self.work.exists():
            return set()
        return {int(p.stem.split("-")[1]) for p in self.work.glob("part-*.parquet")}

    def _metadata(self, rejects: list[dict] | None = None) -> dict:
        metadata = {f"{METADATA_PREFIX}{k}": str(v) for k, v in self.meta.items()}
        if rejects is not None:  # a chunk's, kept in its file until the rejects file is written
            metadata[f"{METADATA_PREFIX}rejects"] = json.dumps(rejects)
        return metadata

    def _table(self, ids: list[str], rows: list, rejects: list[dict] | None = None, pages: list | None = None):
        table = self._columns(ids, rows)
        if self.meta.get("images"):
            table = table.add_column(1, "page", self.pa.array(pages or [None] * len(ids), type=self.pa.int32()))
        return table.replace_schema_metadata(self._metadata(rejects))

    def _columns(self, ids: list[str], rows: list):
        pa = self.pa
        if self.meta.get("output_type") == "sparse":  # list columns: each row has its own length
            table = pa.table(
                {
                    "id": pa.array(ids, type=pa.string()),
                    "indices": pa.array([row[0] for row in rows], type=pa.list_(pa.int32())),
                    "values": pa.array([row[1] for row in rows], type=pa.list_(pa.float32())),
                }
            )
            return table
        if self.meta.get("output_type") == "colbert":  # a matrix a row: one vector per token
            width = rows[0].shape[1] if rows else 1
            flat = np.concatenate([m.reshape(-1) for m in rows]) if rows else np.empty(0, np.float32)
            tokens = pa.FixedSizeListArray.from_arrays(pa.array(flat, type=pa.float32()), width)
            offsets = np.concatenate([[0], np.cumsum([len(m) for m in rows])]).astype(np.int32)
            column = pa.ListArray.from_arrays(pa.array(offsets, type=pa.int32()), tokens)
            return pa.table({"id": pa.array(ids, type=pa.string()), "colbert": column})
        vectors = np.stack(rows) if len(rows) else np.empty((0, 1), np.float32)
        width = max(1, vectors.shape[1])  # a chunk whose every record was rejected has no width of its own
        flat = pa.array(np.ascontiguousarray(vectors).reshape(-1), type=pa.from_numpy_dtype(vectors.dtype))
        column = pa.FixedSizeListArray.from_arrays(flat, width)
        return pa.table({"id": pa.array(ids, type=pa.string()), "embedding": column})

    def write_chunk(
        self, chunk: int, ids: list[str], rows: list, rejects: list[dict], pages: list | None = None
    ) -> None:
        part = self._part(chunk)
        temporary = part.with_suffix(".tmp")
        self.pa.parquet.write_table(self._table(ids, rows, rejects, pages), temporary)
        _fsync_rename(temporary, part)

    def finish(self, chunks: int) -> dict:
        parquet = self.pa.parquet
        temporary = self.output.with_name(self.output.name + ".tmp")
        writer = None
        rows = 0
        rejects = []
        for chunk in range(chunks):
            table = parquet.read_table(self._part(chunk))
            rejects.append(json.loads(table.schema.metadata[f"{METADATA_PREFIX}rejects".encode()]))
            if not table.num_rows:
                continue  # every record of the chunk was rejected
            table = table.replace_schema_metadata(self._metadata())
            if writer is None:
                writer = parquet.ParquetWriter(temporary, table.schema)
            writer.write_table(table)  # a row group a chunk
            rows += table.num_rows
        if writer is None:  # an empty input
            writer = parquet.ParquetWriter(temporary, self._table([], []).schema)
        writer.close()
        _fsync_rename(temporary, self.output)
        rejected = self.write_rejects(rejects)
        shutil.rmtree(self.work)
        return {"rows": rows, "rejected": rejected}


class NumpySink(Sink):
    """OUTPUT/ (a directory): `embeddings-NNNNNNNN.npy`, one shard a chunk of the input (memory-mappable),
    `ids.txt` (one id a line, in the shards' order), `manifest.json` (the model, its fingerprint, the
    precision, the dimension and each shard's rows) and `rejects.jsonl` when a record was refused."""

    def __init__(self, output: str, meta: dict):
        super().__init__(output, meta)
        self.work = self.output / ".parts"
        self.rejects_path = self.output / "rejects.jsonl"

    def _shard(self, chunk: int) -> Path:
        return self.output / f"embeddings-{chunk:08d}.npy"

    def done_chunks(self) -> set[int]:
        return {int(p.stem.split("-")[1]) for p in self.output.glob("embeddings-*.npy")}

    def write_chunk(
        self, chunk: int, ids: list[str], rows: list, rejects: list[dict], pages: list | None = None
    ) -> None:
        vectors = np.stack(rows) if rows else np.empty((0, 1), np.float32)
        # the ids first: the shard's rename is what says the chunk is done
        stored = {"ids": ids, "rejects": rejects, "pages": pages}
        _atomic_write(self.work / f"chunk-{chunk:08d}.json", json.dumps(stored).encode())
        shard = self._shard(chunk)
        temporary = shard.with_suffix(".tmp")
        with open(temporary, "wb") as handle:
            np.save(handle, np.ascontiguousarray(vectors))
        _fsync_rename(temporary, shard)

    def finish(self, chunks: int) -> dict:
        lines, pages, rejects, shards = [], [], [], []
        for chunk in range(chunks):
            stored = json.loads((self.work / f"chunk-{chunk:08d}.json").read_text())
            lines.extend(f"{ident}\n" for ident in stored["ids"])
            pages.extend("\n" if page is None else f"{page}\n" for page in stored.get("pages") or [])
            rejects.append(stored["rejects"])
            shards.append({"file": self._shard(chunk).name, "rows": len(stored["ids"])})
        _atomic_write(self.output / "ids.txt", "".join(lines).encode())
        if self.meta.get("images"):  # a line a row, as ids.txt: its page of a PDF, empty for an image
            _atomic_write(self.output / "pages.txt", "".join(pages).encode())
        manifest = {**self.meta, "rows": len(lines), "shards": shards}
        _atomic_write(self.output / "manifest.json", json.dumps(manifest, indent=2).encode())
        rejected = self.write_rejects(rejects)
        shutil.rmtree(self.work)
        return {"rows": len(lines), "rejected": rejected}


def make_sink(output: str, fmt: str, meta: dict) -> Sink:
    if fmt == "numpy":
        if meta.get("output_type") in ("sparse", "colbert"):
            raise InputError(
                f"{meta['output_type']} output is written to Parquet (an OUTPUT ending in .parquet), not NumPy shards"
            )
        Path(output).mkdir(parents=True, exist_ok=True)
        return NumpySink(output, meta)
    return ParquetSink(output, meta)


def _fsync_rename(temporary: Path, final: Path) -> None:
    with open(temporary, "rb+") as handle:
        os.fsync(handle.fileno())
    os.replace(temporary, final)


def _atomic_write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(path.name + ".tmp")
    with open(temporary, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, path)
