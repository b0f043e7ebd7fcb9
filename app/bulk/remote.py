"""Texts to vectors through one or more running instances (several base URLs, nginx, a Kubernetes Service):
keep-alive sessions per thread, round-robin over the URLs, and retries that follow the server.

- 429 and 503 (a full queue, a draining worker) wait as long as `Retry-After` says, then try again, for as
  long as `patience` allows: the job slows to what the servers take instead of failing.
- Connection errors and other 5xx back off exponentially (and move to the next URL), `retries` times.
- 400, 413 and 422 are the records' fault: `Refused`, which the job narrows down to the records themselves;
  any other 4xx (401, 404: the wrong URL, key or model) stops the job.
"""

from __future__ import annotations

import base64
import itertools
import random
import threading
import time

import numpy as np
import requests

from .embedders import DTYPES, JobFailed, Refused, ServedModel, by_input, read_file

RETRY_STATUSES = (429, 503)
RECORD_STATUSES = (400, 413, 422)  # what the records themselves can cause


class RemoteEmbedder:
    def __init__(
        self,
        urls: list[str],
        model: str | None,
        precision: str,
        encode: dict,
        output_type: str = "dense",
        media: str | None = None,
        media_from: str | None = None,
        retries: int = 8,
        patience: float = 600.0,
        timeout: float = 300.0,
    ):
        """`encode`: what every request adds (normalize, prompt_name, dimensions, is_query, cache)."""
        self.urls = [url.rstrip("/") for url in urls]
        self.model = model
        self.precision = precision
        self.encode = encode
        self.output_type = output_type
        # "image" or "audio": the inputs are such files' paths (relative to `media_from`) or URLs, sent to
        # /embed_image or /embed_audio
        self.media = media
        self.media_from = media_from
        self.retries = retries
        self.patience = patience
        self.timeout = timeout
        self._turn = itertools.count()
        self._local = threading.local()

    def _session(self) -> requests.Session:
        session = getattr(self._local, "session", None)
        if session is None:
            session = self._local.session = requests.Session()
        return session

    def describe(self) -> ServedModel:
        """The model every URL serves (they must agree), its fingerprint and the workers behind them."""
        infos = []
        for url in self.urls:
            params = {"model": self.model} if self.model else None
            answer = self._call("GET", url + "/info", params=params)
            infos.append(answer.json())
        names = {info.get("model_id") for info in infos}
        fingerprints = {info.get("model_sha") for info in infos}
        if len(names) > 1 or len(fingerprints) > 1:
            raise JobFailed(f"the URLs serve different models: {sorted(map(str, names | fingerprints))}")
        info = infos[0]
        workers = sum(int(info.get("workers") or 2) for info in infos)
        return ServedModel(
            name=info.get("model_id") or self.model or "",
            fingerprint=info.get("model_sha") or "",
            max_items=int(info.get("max_client_batch_size") or 256),
            max_input_tokens=int(info.get("max_input_length") or 512),
            # two requests a worker: one computing, one waiting its turn
            concurrency=max(2, 2 * workers),
        )

    def embed(self, texts: list[str]) -> tuple[list, int]:
        """Vectors at the precision, (token ids, weights) for sparse output or a matrix for ColBERT, in
        order; and the tokens the server counted."""
        body = {"texts": texts, "encoding_format": "base64", **self.encode}
        route = "/embed_text"
        if self.model:
            body["model"] = self.model
        if self.output_type != "dense":
            body["output_types"] = [self.output_type]
        elif self.precision not in ("float32", "float16"):
            body["precision"] = self.precision
        if self.media == "image":
            body = {key: value for key, value in body.items() if key in FILE_OPTIONS}
            body["images"] = [_file(reference, self.media_from) for reference in texts]
            body["output_type"] = self.output_type
            route = "/embed_image"
        elif self.media == "audio":
            body = {key: value for key, value in body.items() if key in FILE_OPTIONS and key != "is_query"}
            body["audio"] = [_file(reference, self.media_from) for reference in texts]
            route = "/embed_audio"
        url = self.urls[next(self._turn) % len(self.urls)]
        answer = self._call("POST", url + route, json=body).json()
        pages = answer.get("pages")  # a PDF among the inputs: a row per page, gathered per input
        sources = None if pages is None else [(entry["input"], entry["page"]) for entry in pages]
        return by_input(self._rows(answer), sources, len(texts)), int(answer.get("usage", {}).get("prompt_tokens", 0))

    def _rows(self, answer: dict) -> list:
        if self.output_type == "sparse":
            return [
                (np.asarray(row["indices"], dtype=np.int32), np.asarray(row["values"], dtype=np.float32))
                for row in answer["sparse"]
            ]
        if self.output_type == "colbert":
            return [
                np.frombuffer(base64.b64decode(matrix), dtype="<f4").reshape(shape)
                for matrix, shape in zip(answer["colbert"], answer["colbert_shapes"])
            ]
        dtype = "<f4" if self.precision in ("float32", "float16") else DTYPES[self.precision]
        vectors = np.stack([np.frombuffer(base64.b64decode(row), dtype=dtype) for row in answer["embeddings"]])
        return list(vectors.astype(np.float16) if self.precision == "float16" else vectors)

    def _call(self, method: str, url: str, **kwargs) -> requests.Response:
        failures = 0
        deadline = time.monotonic() + self.patience
        while True:
            try:
                answer = self._session().request(method, url, timeout=self.timeout, **kwargs)
            except requests.RequestException as exc:
                failures += 1
                if failures > self.retries:
                    raise JobFailed(f"{url}: {type(exc).__name__}: {exc} ({failures} tries)") from None
                url = self._next_url(url)
                time.sleep(_backoff(failures))
                continue
            if answer.status_code < 400:
                return answer
            if answer.status_code in RETRY_STATUSES:
                if time.monotonic() > deadline:
                    raise JobFailed(f"{url}: still {answer.status_code} after {self.patience:g} s of retries")
                time.sleep(_retry_after(answer, failures))
                continue
            if answer.status_code >= 500:
                failures += 1
                if failures > self.retries:
                    raise JobFailed(f"{url}: {answer.status_code} {answer.text[:300]} ({failures} tries)")
                url = self._next_url(url)
                time.sleep(_backoff(failures))
                continue
            if answer.status_code in RECORD_STATUSES:
                raise Refused(answer.status_code, _message(answer))
            # 401, 404, 405, ...: the job is pointed at the wrong thing, which no record can change
            raise JobFailed(f"{method} {url}: {answer.status_code} {_message(answer)}")

    def _next_url(self, url: str) -> str:
        base = next((candidate for candidate in self.urls if url.startswith(candidate)), self.urls[0])
        following = self.urls[(self.urls.index(base) + 1) % len(self.urls)]
        return following + url[len(base) :]


# what /embed_image and /embed_audio take besides the files
FILE_OPTIONS = ("model", "encoding_format", "normalize", "dimensions", "is_query", "cache", "precision")


def _file(reference: str, directory: str) -> str:
    """An image or clip as /embed_image and /embed_audio take it: a URL as it is (the server fetches it, with
    IMAGE_URL_FETCH on), a file's bytes in base64. A file that cannot be read is the record's fault."""
    if reference.startswith(("http://", "https://", "data:")):
        return reference
    return base64.b64encode(read_file(reference, directory)).decode("ascii")


def _backoff(failures: int) -> float:
    return min(30.0, 0.25 * 2 ** (failures - 1)) * random.uniform(0.8, 1.2)


def _retry_after(answer: requests.Response, failures: int) -> float:
    try:
        return max(0.05, min(60.0, float(answer.headers.get("Retry-After", ""))))
    except ValueError:
        return _backoff(failures + 1)


def _message(answer: requests.Response) -> str:
    try:
        error = answer.json().get("error")
    except ValueError:
        return answer.text[:500]
    if isinstance(error, dict):
        return str(error.get("message", error))[:500]
    return str(error or answer.text)[:500]
