"""What a bulk job embeds with: running instances over HTTP (remote.py), or the engine in this process
(`LocalEmbedder`: the same families, batching and precisions, for one machine without a server). Both
answer `describe()` and `embed(texts) -> (vectors, tokens)`, and raise `Refused` for records the model
will not take and `JobFailed` when the job cannot go on."""

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

    def __init__(self, model_path: str, precision: str, encode: dict, output_type: str = "dense"):
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
        self.request = EmbedRequest(  # the same for every batch of the job
            field="texts",
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
            return rows, result.prompt_tokens
        if self.output_type == "colbert":
            return [np.asarray(m, np.float32) for m in result.colbert], result.prompt_tokens
        request = self.request
        precision = "float32" if self.precision == "float16" else self.precision
        vectors = self.engine.quantize(
            self.model, result.vectors, precision, dimensions=request.dimensions, normalize=request.normalize
        )
        return list(vectors.astype(np.float16) if self.precision == "float16" else vectors), result.prompt_tokens

    def _embedded(self, texts: list[str]):
        from ..engine.errors import EngineError, InvalidInput, Overloaded, TooLarge

        while True:
            try:
                return self.engine.embed_texts(self.model, texts, self.request)
            except Overloaded:  # more of the job's threads than its queue holds: wait a turn
                time.sleep(0.05)
            except InvalidInput as exc:
                raise Refused(413 if isinstance(exc, TooLarge) else 400, str(exc)) from None
            except EngineError as exc:
                raise JobFailed(f"{type(exc).__name__}: {exc}") from exc
