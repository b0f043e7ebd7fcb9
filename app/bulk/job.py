"""A bulk job: records in, vectors out, in chunks that are each written whole (sinks.py), so that a job
killed at any point continues where it stopped and ends with the output an uninterrupted run gives.

The input is read once, as a stream, in chunks of `chunk_size` records by position. A chunk's texts are
deduplicated (within the chunk, and against the vectors of recent chunks this run computed), sorted by
length and packed into requests by estimated tokens (not items), and sent through the embedder by
`concurrency` threads; a few chunks are in flight at once so the servers never wait for the job. A
request the server refuses (400, 413, 422) is split in halves until the refused records are alone: those
go to the rejects file with the server's error, every other record of the request is embedded.
"""

from __future__ import annotations

import collections
import concurrent.futures
import hashlib
import os
import shutil
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .embedders import JobFailed, Pages, Refused
from .progress import Progress
from .records import Record, count_records, read_records
from .sinks import Sink

# chunks in flight beyond the one being read: enough to keep every thread busy across a chunk's tail
WINDOW = 3


@dataclass(frozen=True)
class JobOptions:
    input: str
    output: str
    input_format: str
    output_format: str
    text_field: str = "text"
    id_field: str | None = None
    precision: str = "float32"
    output_type: str = "dense"  # sparse: token ids and weights (SPLADE, BGE-M3); colbert: a vector per token
    # "image" or "audio": the text field holds such files' paths or URLs (image, vision-language, audio models)
    media: str | None = None
    chunk_size: int = 4096
    batch_tokens: int = 8192  # estimated tokens per request
    concurrency: int | None = None  # None: what the embedder suggests (the servers' workers)
    dedup_bytes: int = 256 * 1024 * 1024
    encode: dict = field(default_factory=dict)  # normalize, prompt_name, dimensions, is_query, cache
    restart: bool = False


@dataclass
class Summary:
    records: int = 0  # in the input
    embedded: int = 0  # rows in the output
    rejected: int = 0
    skipped: int = 0  # records of chunks a previous run had finished
    requests: int = 0
    tokens: int = 0
    duplicates: int = 0
    seconds: float = 0.0
    output: str = ""

    def as_dict(self) -> dict:
        return dict(self.__dict__)


# What an image or a clip costs a request, in estimated tokens (a ViT-B/32 makes 50, larger towers and VLMs
# hundreds, CLAP's audio tower 4096 patches of a fixed spectrogram)
IMAGE_TOKENS = 256
# The service's MAX_IMAGES_PER_REQUEST and MAX_AUDIO_PER_REQUEST defaults: more in one request is a 4xx the job
# would split anyway
FILES_PER_REQUEST = {"image": 64, "audio": 32}


def estimate_tokens(text: str) -> int:
    """About what a WordPiece or BPE tokenizer makes of a text (4 bytes a token), with its special tokens."""
    return len(text.encode("utf-8", "surrogatepass")) // 4 + 2


def job_identity(options: JobOptions, model) -> dict:
    """What must not change between a run and the run that continues it."""
    return {
        "input": options.input if options.input == "-" else str(Path(options.input).resolve()),
        "input_format": options.input_format,
        "text_field": options.text_field,
        "id_field": options.id_field,
        "chunk_size": options.chunk_size,
        "precision": options.precision,
        "output_type": options.output_type,
        "images": options.media == "image",
        **({"audio": True} if options.media == "audio" else {}),
        "output_format": options.output_format,
        "model": model.name,
        "model_fingerprint": model.fingerprint,
        # the cache changes where a vector comes from, not what it is
        **{f"encode.{key}": value for key, value in sorted(options.encode.items()) if key != "cache"},
    }


class _Deduplicated:
    """Vectors of texts this run has computed, by the text's hash, up to `capacity` bytes (least recently
    used out first)."""

    def __init__(self, capacity: int):
        self.capacity = capacity
        self.size = 0
        self._entries: collections.OrderedDict[bytes, np.ndarray] = collections.OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: bytes):
        with self._lock:
            vector = self._entries.get(key)
            if vector is not None:
                self._entries.move_to_end(key)
            return vector

    def put(self, key: bytes, vector: np.ndarray) -> None:
        if self.capacity <= 0:
            return
        with self._lock:
            if key in self._entries:
                return
            self._entries[key] = vector
            self.size += _nbytes(vector)
            while self.size > self.capacity and self._entries:
                _, dropped = self._entries.popitem(last=False)
                self.size -= _nbytes(dropped)


def _nbytes(row) -> int:
    """A dense vector's bytes, a sparse one's (its ids and weights) or a PDF's pages', with what holding it
    costs."""
    if isinstance(row, Pages):
        return sum(_nbytes(page) for page in row.rows)
    arrays = row if isinstance(row, tuple) else (row,)
    return sum(array.nbytes for array in arrays) + 64


def _key(text: str) -> bytes:
    return hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=16).digest()


class _Chunk:
    def __init__(self, index: int, records: list[Record]):
        self.index = index
        self.records = records
        # each record's text by its hash, once; None: no text to embed (the record is rejected)
        self.keys = [_key(r.text) if r.text is not None and r.text.strip() else None for r in records]
        self.futures: list[concurrent.futures.Future] = []
        self.known: dict[bytes, np.ndarray] = {}  # from the dedup cache


class BulkJob:
    def __init__(self, options: JobOptions, embedder, sink: Sink, progress: Progress | None = None):
        self.options = options
        self.embedder = embedder
        self.sink = sink
        self.progress = progress or Progress(quiet=True)
        self.summary = Summary(output=options.output)
        self.recent = _Deduplicated(options.dedup_bytes)
        self._lock = threading.Lock()

    def run(self) -> Summary:
        started = time.monotonic()
        model = self.model = self.embedder.describe()
        concurrency = self.options.concurrency or model.concurrency
        done = self.sink.done_chunks()
        chunks = 0
        self.progress.start(lambda: count_records(self.options.input, self.options.input_format))
        pool = concurrent.futures.ThreadPoolExecutor(concurrency, thread_name_prefix="bulk")
        pending: collections.deque[_Chunk] = collections.deque()
        try:
            for chunk in self._chunks():
                chunks += 1
                self.summary.records += len(chunk.records)
                if chunk.index in done:
                    self.summary.skipped += len(chunk.records)
                    self.progress.advance(len(chunk.records), 0, skipped=True)
                    continue
                self._submit(pool, chunk)
                pending.append(chunk)
                while len(pending) > WINDOW:
                    self._finish(pending.popleft())
            while pending:
                self._finish(pending.popleft())
        finally:
            # stopped by an error: what is queued is dropped (the chunks done are on disk, the rest is redone)
            pool.shutdown(wait=not pending, cancel_futures=True)
        totals = self.sink.finish(chunks)
        self.summary.embedded = totals["rows"]
        self.summary.rejected = totals["rejected"]
        self.summary.seconds = round(time.monotonic() - started, 3)
        self.progress.close(self.summary)
        return self.summary

    def _chunks(self):
        options = self.options
        batch: list[Record] = []
        index = 0
        for record in read_records(options.input, options.input_format, options.text_field, options.id_field):
            batch.append(record)
            if len(batch) == options.chunk_size:
                yield _Chunk(index, batch)
                index, batch = index + 1, []
        if batch:
            yield _Chunk(index, batch)

    # ------------------------------------------------------------ a chunk
    def _submit(self, pool, chunk: _Chunk) -> None:
        """Its distinct texts, not known already, as requests of about `batch_tokens` estimated tokens."""
        wanted: dict[bytes, str] = {}
        for record, key in zip(chunk.records, chunk.keys):
            if key is None or key in wanted or key in chunk.known:
                continue
            vector = self.recent.get(key)
            if vector is not None:
                chunk.known[key] = vector
            else:
                wanted[key] = record.text
        with_text = sum(key is not None for key in chunk.keys)
        self.summary.duplicates += with_text - len(wanted)  # records whose vector is not asked for again
        media = self.options.media
        limit_items = max(1, min(self.model.max_items, FILES_PER_REQUEST[media]) if media else self.model.max_items)
        batch: list[tuple[bytes, str]] = []
        tokens = 0
        # shortest first: a request's texts are of about one length, so the server pads them little
        costs = {
            key: IMAGE_TOKENS if media else min(estimate_tokens(text), self.model.max_input_tokens)
            for key, text in wanted.items()
        }
        for key, text in sorted(wanted.items(), key=lambda item: costs[item[0]]):
            cost = costs[key]
            if batch and (tokens + cost > self.options.batch_tokens or len(batch) == limit_items):
                chunk.futures.append(pool.submit(self._embed, batch))
                batch, tokens = [], 0
            batch.append((key, text))
            tokens += cost
        if batch:
            chunk.futures.append(pool.submit(self._embed, batch))

    def _embed(self, batch: list[tuple[bytes, str]]) -> tuple[dict[bytes, np.ndarray], dict[bytes, tuple]]:
        """Vectors by text key; the refused texts by key with (status, message), narrowed down by halves."""
        try:
            vectors, tokens = self.embedder.embed([text for _, text in batch])
        except Refused as refused:
            if len(batch) == 1:
                return {}, {batch[0][0]: (refused.status, refused.message)}
            half = len(batch) // 2
            first, second = self._embed(batch[:half]), self._embed(batch[half:])
            return {**first[0], **second[0]}, {**first[1], **second[1]}
        if len(vectors) != len(batch):
            raise JobFailed(f"asked for {len(batch)} vectors, got {len(vectors)}")
        with self._lock:
            self.summary.requests += 1
            self.summary.tokens += tokens
        self.progress.tokens(tokens)
        return {key: vectors[index] for index, (key, _) in enumerate(batch)}, {}

    def _finish(self, chunk: _Chunk) -> None:
        vectors_by_key = dict(chunk.known)
        refused: dict[bytes, tuple] = {}
        for future in chunk.futures:
            computed, failed = future.result()
            vectors_by_key.update(computed)
            refused.update(failed)
        for key, vector in vectors_by_key.items():
            if key not in chunk.known:
                self.recent.put(key, vector)
        ids, rows, pages, rejects = [], [], [], []
        for record, key in zip(chunk.records, chunk.keys):
            if key is None:
                rejects.append(self._reject(record, 400, f"no text in the field {self.options.text_field!r}"))
            elif key in refused:
                rejects.append(self._reject(record, *refused[key]))
            elif isinstance(vectors_by_key[key], Pages):  # a PDF: a row per page, each with the record's id
                document = vectors_by_key[key]
                ids.extend([record.id] * len(document.rows))
                rows.extend(document.rows)
                pages.extend(document.numbers)
            else:
                ids.append(record.id)
                rows.append(vectors_by_key[key])
                pages.append(None)
        self.sink.write_chunk(chunk.index, ids, rows, rejects, pages if self.options.media == "image" else None)
        self.progress.advance(len(chunk.records), len(rejects))

    @staticmethod
    def _reject(record: Record, status: int, message: str) -> dict:
        return {"position": record.position, "id": record.id, "status": status, "error": message}


def prepare_output(options: JobOptions, sink: Sink, identity: dict) -> str | None:
    """Before a run: 'done' when the output is complete already (and nothing is to run); raises JobFailed
    when the chunks here were made with other arguments, unless `restart` clears them first."""
    output = Path(options.output)
    if options.restart:
        if sink.work.exists():
            shutil.rmtree(sink.work)
        if output.is_dir():
            shutil.rmtree(output)
            output.mkdir(parents=True)
        elif output.exists():
            os.remove(output)
        if sink.rejects_path.exists():
            os.remove(sink.rejects_path)
    finished = output.exists() and not sink.work.exists() and (not output.is_dir() or any(output.iterdir()))
    if finished:
        return "done"
    problem = sink.identity_problem(identity)
    if problem is not None:
        raise JobFailed(
            f"{options.output} holds part of a job run with other arguments ({problem}); run it with those, "
            "or add --restart to begin again"
        )
    return None
