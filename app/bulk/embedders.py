"""What a bulk job embeds with: running instances over HTTP (remote.py), or the engine in this process
(`LocalEmbedder`: the same families, batching and precisions, for one machine without a server). Both
answer `describe()` and `embed(texts) -> (vectors, tokens)` (a vector, or `Pages` for a PDF, per input),
and raise `Refused` for records the model will not take and `JobFailed` when the job cannot go on."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass

import numpy as np

# How the server's base64 rows are read, by precision (float16 is float32 on the wire, halved here)
DTYPES = {"float32": "<f4", "int8": "i1", "uint8": "u1", "binary": "i1", "ubinary": "u1"}


class Refused(Exception):
    """The server (or engine) refused these records: a 4xx that retrying cannot change."""

    def __init__(self, status: int, message: str):
        super().__init__(f"{status}: {message}")
        self.status = status
        self.message = message


class JobFailed(Exception):
    """The job cannot go on (servers unreachable, answers that do not fit); what is done stays done."""


@dataclass(frozen=True)
class Pages:
    """A PDF embedded page by page: each page's number (from 1) and its row (vector, or multi-vector)."""

    numbers: list[int]
    rows: list


def by_input(rows: list, sources: list | None, inputs: int) -> list:
    """An answer's rows in input order, a PDF's pages gathered into one `Pages` (`sources`: per row, which
    input it is and which page of it, None for an image)."""
    if sources is None:
        return rows
    gathered: list = [None] * inputs
    for row, (index, page) in zip(rows, sources):
        if page is None:
            gathered[index] = row
        else:
            if gathered[index] is None:
                gathered[index] = Pages([], [])
            gathered[index].numbers.append(page)
            gathered[index].rows.append(row)
    return gathered


@dataclass(frozen=True)
class ServedModel:
    name: str
    fingerprint: str
    max_items: int
    max_input_tokens: int
    concurrency: int


class LocalEmbedder:
    """The engine, loaded here: `model_path` served as the service would serve it (its family, dtype and
    runtime from the same settings, read from the environment), with the batcher merging the job's
    concurrent requests into passes."""

    def __init__(
        self,
        model_path: str,
        precision: str,
        encode: dict,
        output_type: str = "dense",
        media: str | None = None,
        media_from: str | None = None,
    ):
        from ..config import Settings
        from ..engine.requests import EmbedRequest
        from ..runtime import load_engine
        from ..sizing import cpu_budget

        environ = {**os.environ, "MODEL_PATH": model_path}
        environ.setdefault("CPU_THREADS", str(cpu_budget().cpus))  # one process: every usable CPU
        environ.pop("MODELS", None)
        self.settings = Settings.from_env(environ)
        self.engine = load_engine(self.settings)
        # The compiled runtime compiles now, before the job (a worker does it in the background, after /ready):
        # the job's texts all run compiled, on CPUs not shared with a compilation.
        self.engine.start_worker(background=lambda compile_models: compile_models())
        self.model = next(iter(self.engine.models.values()))
        self.precision = precision
        self.output_type = output_type
        # "image" or "audio": the inputs are such files' paths, relative to `media_from`, decoded under the limits
        # the service's settings give
        self.media = media
        self.media_from = media_from
        if media == "image":
            from ..media.images import ImageLimits

            self.decoder = ImageLimits.from_settings(self.settings, documents=True)
        elif media == "audio":
            from ..media.audio import AudioLimits

            self.decoder = AudioLimits.from_settings(self.settings)
        self.request = EmbedRequest(  # the same for every batch of the job
            field={"image": "images", "audio": "audio"}.get(media, "texts"),
            normalize=encode.get("normalize", True),
            dimensions=encode.get("dimensions"),
            prompt_name=encode.get("prompt_name"),
            is_query=encode.get("is_query"),
            use_cache=encode.get("cache", False),
            outputs=frozenset({output_type}),
            sparse_top_k=encode.get("sparse_top_k"),
        )

    def describe(self) -> ServedModel:
        card = self.model.describe()
        return ServedModel(
            name=self.model.name,
            fingerprint=self.engine.fingerprints.get(self.model.name, ""),
            max_items=self.settings.max_batch_items,
            max_input_tokens=int(card.get("max_input_tokens") or 512),
            concurrency=4,
        )

    def embed(self, texts: list[str]) -> tuple[list, int]:
        result = self._embedded(texts)
        if self.output_type == "sparse":
            rows = [(np.asarray(i, np.int32), np.asarray(w, np.float32)) for i, w in result.sparse]
        elif self.output_type == "colbert":
            rows = [np.asarray(m, np.float32) for m in result.colbert]
        else:
            request = self.request
            precision = "float32" if self.precision == "float16" else self.precision
            vectors = self.engine.quantize(
                self.model, result.vectors, precision, dimensions=request.dimensions, normalize=request.normalize
            )
            rows = list(vectors.astype(np.float16) if self.precision == "float16" else vectors)
        return by_input(rows, result.sources, len(texts)), result.prompt_tokens

    def _embedded(self, texts: list[str]):
        from ..engine.errors import EngineError, InvalidInput, Overloaded, TooLarge
        from ..errors import ServiceError

        files = [read_file(reference, self.media_from) for reference in texts] if self.media else None
        while True:
            try:
                if self.media == "image":
                    return self.engine.embed_images(self.model, files, self.decoder, self.request)
                if self.media == "audio":
                    return self.engine.embed_audio(self.model, files, self.decoder, self.request)
                return self.engine.embed_texts(self.model, texts, self.request)
            except Overloaded:  # more of the job's threads than its queue holds: wait a turn
                time.sleep(0.05)
            except InvalidInput as exc:
                raise Refused(413 if isinstance(exc, TooLarge) else 400, str(exc)) from None
            except ServiceError as exc:  # the image decoder's (app.media) refusals of an image or PDF
                if exc.status >= 500:
                    raise JobFailed(f"{type(exc).__name__}: {exc}") from exc
                raise Refused(exc.status, str(exc)) from None
            except EngineError as exc:
                raise JobFailed(f"{type(exc).__name__}: {exc}") from exc


def read_file(reference: str, directory: str) -> bytes:
    """An image, PDF or clip's bytes, its path relative to `directory`; one that cannot be read is the record's
    fault. In this process there is no server to fetch a URL: that is the record's fault too."""
    if reference.startswith(("http://", "https://", "data:")):
        raise Refused(400, f"{reference[:80]}: --local reads files; a URL needs a server (--url)")
    try:
        with open(os.path.join(directory, reference), "rb") as handle:
            return handle.read()
    except OSError as exc:
        raise Refused(400, f"{reference}: cannot read the file: {exc.strerror or exc}") from None
