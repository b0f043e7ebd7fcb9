#!/usr/bin/env python3
"""Load tester for the embedding service (or any OpenAI-compatible embedding server).

    python benchmark.py --url http://localhost:8080 --concurrency 50 --requests 500
    python benchmark.py --url http://localhost:8080 --concurrency 1,8,32,64 --duration 20 --plot sweep.png
    python benchmark.py --url http://localhost:8080 --rate 40 --duration 30      # open loop

Closed loop (default): `--concurrency` clients, each on its own keep-alive
connection, send the next request as soon as the previous one answers.
Open loop (`--rate R`): requests are scheduled at R per second whatever the
server does, and latency is measured from the scheduled send time, so
queueing in a slow server shows up instead of hiding (no coordinated
omission); `--concurrency` then caps the connections in use.

Against this service (found from its `/health`), every request asks for
`"cache": false` unless `--cache on`, so the rate is the model's and not the
embedding cache's; other servers are sent no extra field. The hit ratio the
answers' `X-Cache` headers report is printed either way. The built-in corpus
is 50,000 distinct generated texts of 4-80 words, so a run does not repeat
itself unless it is that long; `--corpus` takes your own.

Needs only the Python standard library; `pip install tqdm matplotlib` adds a
nicer progress bar and `--plot`. Copy this single file to any client machine.
"""

from __future__ import annotations

import argparse
import base64
import csv
import http.client
import io
import json
import math
import os
import queue
import random
import struct
import sys
import threading
import time
import zlib
from collections import Counter
from dataclasses import dataclass, field
from urllib.parse import urlsplit

TIMING_HEADERS = {"tokenize": "x-tokenization-time", "queue": "x-queue-time", "inference": "x-inference-time"}

BUILTIN_TEXTS = [
    "What is an embedding?",
    "Vector search finds the passages whose embeddings lie closest to the query's.",
    "A worker process that loads its own copy of a model multiplies the memory bill by the number of workers.",
    "Latency percentiles say more than averages: the slowest one request in a hundred is what a user "
    "eventually waits for, and it is usually queueing rather than computing that makes it slow.",
    "Tokenizers split text into sub-word units; a rare word becomes several pieces, a common one stays whole.",
    "ok",
    "The quick brown fox jumps over the lazy dog.",
    "Batching amortises the fixed cost of a forward pass over many inputs, but padding every input to the "
    "longest one in its batch wastes work, which is why inputs of similar length are best batched together. "
    "A server that sorts by length before it batches gets most of the benefit of batching with little of "
    "the cost of padding, and a client that sends many short requests at once lets it do so.",
    "Retry with backoff when the server answers 503 with a Retry-After header.",
    "Les modèles multilingues placent les phrases de même sens près les unes des autres, quelle que soit la langue.",
    "Copy-on-write lets forked processes share memory pages until one of them writes.",
    "Measure, then change one thing, then measure again.",
]


BUILTIN_CORPUS_SIZE = 50_000


# ----------------------------------------------------------------------------- inputs
def builtin_corpus(count: int = BUILTIN_CORPUS_SIZE, seed: int = 0) -> list[str]:
    """`count` distinct texts of 4-80 words drawn from the built-in sentences' words: a server's cache sees
    each once in a run of up to `count` items."""
    words = sorted({word for text in BUILTIN_TEXTS for word in text.split()})
    rng = random.Random(seed)
    texts: dict[str, None] = {}
    while len(texts) < count:
        texts[" ".join(rng.choices(words, k=rng.randint(4, 80)))] = None
    return list(texts)


def load_texts(path: str | None) -> list[str]:
    """Paragraphs (blank-line separated) of a text file, or lines if it has no blank lines."""
    if not path:
        return builtin_corpus()
    with open(path, encoding="utf-8", errors="replace") as handle:
        content = handle.read()
    blocks = [" ".join(b.split()) for b in content.split("\n\n")]
    if len([b for b in blocks if b]) < 2:
        blocks = [line.strip() for line in content.splitlines()]
    texts = [b for b in blocks if b]
    if not texts:
        raise SystemExit(f"--corpus {path}: no text found")
    return texts


def load_images(path: str | None) -> list[str]:
    """Data URIs of the image files in a directory (or one file); generated PNGs otherwise."""
    if not path:
        return [_png_data_uri(size, seed) for seed, size in enumerate((32, 64, 128, 224, 256, 384))]
    files = [os.path.join(path, f) for f in sorted(os.listdir(path))] if os.path.isdir(path) else [path]
    kinds = {".png": "png", ".jpg": "jpeg", ".jpeg": "jpeg", ".webp": "webp", ".gif": "gif", ".bmp": "bmp"}
    images = []
    for file in files:
        kind = kinds.get(os.path.splitext(file)[1].lower())
        if kind:
            with open(file, "rb") as handle:
                images.append(f"data:image/{kind};base64," + base64.b64encode(handle.read()).decode())
    if not images:
        raise SystemExit(f"--corpus {path}: no image files (.png, .jpg, .webp, .gif, .bmp)")
    return images


def _png_data_uri(size: int, seed: int) -> str:
    rng = random.Random(seed)
    rows = b"".join(b"\x00" + bytes(rng.randrange(256) for _ in range(size * 3)) for _ in range(size))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    png = (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", struct.pack(">IIBBBBB", size, size, 8, 2, 0, 0, 0))
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )
    return "data:image/png;base64," + base64.b64encode(png).decode()


class Bodies:
    """Request bodies cycling through the corpus, `batch` items each."""

    def __init__(self, args, texts: list[str], images: list[str]):
        self.args = args
        self.texts = texts
        self.images = images
        self.lock = threading.Lock()
        self.position = 0

    def next(self) -> tuple[str, bytes, int]:
        with self.lock:
            start = self.position
            self.position += self.args.batch
        modality = self.args.mode
        if modality == "mixed":
            modality = "image" if (start // self.args.batch) % 2 else "text"
        pool = self.texts if modality == "text" else self.images
        items = [pool[(start + i) % len(pool)] for i in range(self.args.batch)]
        path, body = request_for(self.args.endpoint, modality, items, self.args.model)
        if getattr(self.args, "uncached", False):
            body["cache"] = False
        return path, json.dumps(body).encode(), len(items)


def is_this_service(args) -> bool:
    """Whether `--url` is this embedding service: its /health lists its models and library versions (TEI's is
    an empty 200, Infinity's another shape)."""
    client = Client(args.url, min(args.timeout, 10.0), args.api_key)
    try:
        if client.connection is None:
            client.connection = client._connect()
        client.connection.request("GET", client.prefix + "/health", headers=client.headers)
        response = client.connection.getresponse()
        payload = json.loads(response.read() or b"null") if response.status == 200 else None
    except (OSError, http.client.HTTPException, ValueError):
        return False
    finally:
        client.close()
    return isinstance(payload, dict) and isinstance(payload.get("models"), list) and "versions" in payload


def request_for(endpoint: str, modality: str, items: list[str], model: str | None) -> tuple[str, dict]:
    if endpoint == "openai":
        body = {"input": items}
        if model:
            body["model"] = model
        if modality == "image":
            body["modality"] = "image"
        return "/v1/embeddings", body
    if modality == "image":
        body = {"images": items}
        path = "/embed_image"
    else:
        body = {"texts": items}
        path = "/embed_text"
    if model:
        body["model"] = model
    return path, body


# ---------------------------------------------------------------------------- results
@dataclass
class Sample:
    latency: float  # seconds
    items: int
    status: int | None  # None: no HTTP answer (exception)
    error: str | None = None
    timings: dict = field(default_factory=dict)  # ms, from the server's timing headers
    cache: str | None = None  # the X-Cache header: hit, partial, miss; None: the cache was not asked


def percentile(values: list[float], q: float) -> float:
    """Linear interpolation between closest ranks (numpy's default), q in [0, 100]."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100.0
    low, high = math.floor(rank), math.ceil(rank)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def summarise(samples: list[Sample], elapsed: float, concurrency: int, rate: float | None) -> dict:
    ok = [s for s in samples if s.status is not None and 200 <= s.status < 300]
    latencies = [s.latency * 1000 for s in ok]
    statuses = Counter(str(s.status) for s in samples if s.status is not None and not 200 <= s.status < 300)
    exceptions = Counter(s.error for s in samples if s.status is None)
    row = {
        "concurrency": concurrency,
        "rate": rate,
        "requests": len(samples),
        "ok": len(ok),
        "errors": len(samples) - len(ok),
        "errors_by_status": dict(statuses),
        "errors_by_exception": dict(exceptions),
        "duration_s": elapsed,
        "requests_per_s": len(ok) / elapsed if elapsed else 0.0,
        "items_per_s": sum(s.items for s in ok) / elapsed if elapsed else 0.0,
        "mean_ms": sum(latencies) / len(latencies) if latencies else float("nan"),
        "p50_ms": percentile(latencies, 50),
        "p90_ms": percentile(latencies, 90),
        "p95_ms": percentile(latencies, 95),
        "p99_ms": percentile(latencies, 99),
        "max_ms": max(latencies) if latencies else float("nan"),
    }
    cached = Counter(s.cache for s in ok if s.cache)
    row["cache"] = dict(cached)
    row["cache_hit_ratio"] = cached["hit"] / sum(cached.values()) if cached else None
    for stage in TIMING_HEADERS:
        values = [s.timings[stage] for s in ok if stage in s.timings]
        if values:
            row[f"server_{stage}_mean_ms"] = sum(values) / len(values)
            row[f"server_{stage}_p50_ms"] = percentile(values, 50)
    return row


# ----------------------------------------------------------------------------- client
class Client:
    """One keep-alive connection; reconnects after errors."""

    def __init__(self, url: str, timeout: float, api_key: str | None):
        parts = urlsplit(url)
        self.https = parts.scheme == "https"
        self.host = parts.hostname or "localhost"
        self.port = parts.port or (443 if self.https else 80)
        self.prefix = parts.path.rstrip("/")
        self.timeout = timeout
        self.headers = {"Content-Type": "application/json"}
        if api_key:
            self.headers["Authorization"] = f"Bearer {api_key}"
        self.connection = None

    def _connect(self):
        cls = http.client.HTTPSConnection if self.https else http.client.HTTPConnection
        return cls(self.host, self.port, timeout=self.timeout)

    def send(self, path: str, body: bytes, items: int, started: float) -> Sample:
        try:
            if self.connection is None:
                self.connection = self._connect()
            self.connection.request("POST", self.prefix + path, body=body, headers=self.headers)
            response = self.connection.getresponse()
            response.read()
            latency = time.perf_counter() - started
            timings = {}
            for stage, header in TIMING_HEADERS.items():
                value = response.getheader(header)
                if value:
                    try:
                        timings[stage] = float(value)
                    except ValueError:
                        pass
            if response.getheader("connection", "").lower() == "close":
                self.close()
            return Sample(latency, items, response.status, None, timings, response.getheader("x-cache"))
        except (OSError, http.client.HTTPException) as exc:
            self.close()
            return Sample(time.perf_counter() - started, items, None, type(exc).__name__)

    def close(self):
        if self.connection is not None:
            self.connection.close()
            self.connection = None


class Progress:
    def __init__(self, total: int | None, seconds: float | None, label: str, enabled: bool):
        self.enabled = enabled
        self.total = total
        self.seconds = seconds
        self.label = label
        self.count = 0
        self.started = time.monotonic()
        self.bar = None
        if enabled:
            try:
                from tqdm import tqdm

                self.bar = tqdm(total=total, desc=label, unit="req", leave=False, file=sys.stderr)
            except ImportError:
                pass

    def tick(self):
        self.count += 1
        if not self.enabled:
            return
        if self.bar is not None:
            self.bar.update(1)
        elif self.count % 10 == 0:
            done = f"{self.count}/{self.total}" if self.total else f"{self.count}"
            left = f" {max(0.0, self.seconds - (time.monotonic() - self.started)):.0f}s left" if self.seconds else ""
            print(f"\r{self.label}: {done} requests{left}   ", end="", file=sys.stderr, flush=True)

    def close(self):
        if not self.enabled:
            return
        if self.bar is not None:
            self.bar.close()
        else:
            print("\r" + " " * 60 + "\r", end="", file=sys.stderr, flush=True)


def run_level(args, bodies: Bodies, concurrency: int) -> dict:
    """One closed- or open-loop run at one concurrency level."""
    if args.warmup > 0:
        _run(args, bodies, concurrency, requests=None, duration=args.warmup, progress=None)
    label = f"c={concurrency}" + (f" rate={args.rate:g}/s" if args.rate else "")
    progress = Progress(args.requests, args.duration, label, enabled=not args.quiet and sys.stderr.isatty())
    samples, elapsed = _run(args, bodies, concurrency, args.requests, args.duration, progress)
    progress.close()
    return summarise(samples, elapsed, concurrency, args.rate)


def _run(
    args, bodies: Bodies, concurrency: int, requests: int | None, duration: float | None, progress: Progress | None
) -> tuple[list[Sample], float]:
    samples: list[Sample] = []
    lock = threading.Lock()
    start = time.perf_counter()
    deadline = start + duration if duration else None
    budget = {"left": requests}
    schedule: queue.Queue | None = None
    if args.rate:
        schedule = queue.Queue()

    def take_ticket() -> bool:
        with lock:
            if budget["left"] is not None:
                if budget["left"] <= 0:
                    return False
                budget["left"] -= 1
            return deadline is None or time.perf_counter() < deadline

    def record(sample: Sample):
        with lock:
            samples.append(sample)
        if progress is not None:
            progress.tick()

    def closed_loop():
        client = Client(args.url, args.timeout, args.api_key)
        while take_ticket():
            path, body, items = bodies.next()
            record(client.send(path, body, items, time.perf_counter()))
        client.close()

    def open_loop():
        client = Client(args.url, args.timeout, args.api_key)
        while True:
            scheduled = schedule.get()
            if scheduled is None:
                break
            path, body, items = bodies.next()
            record(client.send(path, body, items, scheduled))
        client.close()

    threads = [
        threading.Thread(target=open_loop if args.rate else closed_loop, daemon=True) for _ in range(concurrency)
    ]
    for thread in threads:
        thread.start()
    if args.rate:
        interval = 1.0 / args.rate
        n = 0
        while take_ticket():
            scheduled = start + n * interval
            pause = scheduled - time.perf_counter()
            if pause > 0:
                time.sleep(pause)
            schedule.put(scheduled)
            n += 1
        for _ in threads:
            schedule.put(None)
    for thread in threads:
        thread.join()
    return samples, time.perf_counter() - start


# ----------------------------------------------------------------------------- output
COLUMNS = [
    ("concurrency", "conc", "{:d}"),
    ("requests", "reqs", "{:d}"),
    ("errors", "errors", "{:d}"),
    ("requests_per_s", "req/s", "{:.1f}"),
    ("items_per_s", "items/s", "{:.1f}"),
    ("mean_ms", "mean ms", "{:.1f}"),
    ("p50_ms", "p50 ms", "{:.1f}"),
    ("p90_ms", "p90 ms", "{:.1f}"),
    ("p95_ms", "p95 ms", "{:.1f}"),
    ("p99_ms", "p99 ms", "{:.1f}"),
    ("max_ms", "max ms", "{:.1f}"),
]


def format_table(rows: list[dict]) -> str:
    header = [title for _, title, _ in COLUMNS]
    lines = [[fmt.format(row[key]) for key, _, fmt in COLUMNS] for row in rows]
    widths = [max(len(h), *(len(line[i]) for line in lines)) for i, h in enumerate(header)]
    out = ["  ".join(h.rjust(w) for h, w in zip(header, widths))]
    out += ["  ".join(v.rjust(w) for v, w in zip(line, widths)) for line in lines]
    for row in rows:
        details = []
        if row["errors_by_status"]:
            details.append(
                "errors by status " + ", ".join(f"{k}: {v}" for k, v in sorted(row["errors_by_status"].items()))
            )
        if row["errors_by_exception"]:
            details.append(
                "errors by exception " + ", ".join(f"{k}: {v}" for k, v in row["errors_by_exception"].items())
            )
        split = [
            f"{stage} {row[f'server_{stage}_mean_ms']:.1f}"
            for stage in TIMING_HEADERS
            if f"server_{stage}_mean_ms" in row
        ]
        if split:
            details.append("server time, mean ms: " + ", ".join(split))
        if row.get("cache"):
            counts = ", ".join(f"{k} {v}" for k, v in sorted(row["cache"].items()))
            details.append(f"cache hit ratio {row['cache_hit_ratio']:.2f} ({counts})")
        if details:
            out.append(f"c={row['concurrency']}: " + "; ".join(details))
    return "\n".join(out)


def write_csv(rows: list[dict], path: str) -> None:
    rows = [{**row, "cache": json.dumps(row.get("cache") or {})} for row in rows]
    keys = [k for k in rows[0] if not isinstance(rows[0][k], dict)]
    for row in rows[1:]:
        keys += [k for k in row if k not in keys and not isinstance(row[k], dict)]
    buffer = io.StringIO()
    writer = csv.DictWriter(
        buffer, fieldnames=keys + ["errors_by_status", "errors_by_exception"], extrasaction="ignore"
    )
    writer.writeheader()
    for row in rows:
        writer.writerow(
            {
                **row,
                "errors_by_status": json.dumps(row["errors_by_status"]),
                "errors_by_exception": json.dumps(row["errors_by_exception"]),
            }
        )
    with open(path, "w", newline="", encoding="utf-8") as handle:
        handle.write(buffer.getvalue())


def have_matplotlib() -> bool:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return False
    return True


def plot(rows: list[dict], path: str, title: str = "") -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    x = [r["concurrency"] for r in rows]
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    left.plot(x, [r["items_per_s"] for r in rows], marker="o")
    left.set(xlabel="concurrency", ylabel="items / s", title="Throughput")
    right.plot(x, [r["p50_ms"] for r in rows], marker="o", label="p50")
    right.plot(x, [r["p99_ms"] for r in rows], marker="o", label="p99")
    right.set(xlabel="concurrency", ylabel="latency, ms", title="Latency")
    right.legend()
    for axis in (left, right):
        axis.grid(True, alpha=0.3)
        if len(set(x)) > 1 and max(x) / max(min(x), 1) >= 8:
            axis.set_xscale("log", base=2)
        axis.set_xticks(x, [str(level) for level in x])  # the levels tested, not the scale's round numbers
        axis.minorticks_off()
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


# ------------------------------------------------------------------------------- main
def parse_args(argv=None):
    class Help(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
        """The module docstring as written, and every option's default (where it has one)."""

        def _get_help_string(self, action):
            if action.default is None or isinstance(action.default, bool):
                return action.help
            return super()._get_help_string(action)

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=Help)
    parser.add_argument("--url", default="http://localhost:8080", help="service base URL")
    parser.add_argument(
        "--concurrency", default="8", help="clients (connections); a comma-separated list runs a sweep, one row each"
    )
    parser.add_argument("--requests", type=int, help="requests per level (default 200 unless --duration)")
    parser.add_argument("--duration", type=float, help="seconds per level (instead of, or as a cap on, --requests)")
    parser.add_argument("--warmup", type=float, default=0.0, help="seconds of unrecorded traffic before each level")
    parser.add_argument("--rate", type=float, help="open loop: requests per second, latency from scheduled time")
    parser.add_argument("--mode", choices=("text", "image", "mixed"), default="text")
    parser.add_argument("--batch", type=int, default=1, help="items per request")
    parser.add_argument("--endpoint", choices=("native", "openai"), default="native")
    parser.add_argument("--model", help="model id to send (default: the server's default)")
    parser.add_argument("--corpus", help="text file (paragraphs or lines), or image file / directory")
    parser.add_argument("--api-key", default=os.environ.get("EMBEDDING_API_KEY"), help="Bearer token")
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds per request")
    parser.add_argument("--seed", type=int, default=0, help="shuffle seed for the corpus")
    parser.add_argument("--json", action="store_true", help="print the results as JSON instead of a table")
    parser.add_argument("--csv", metavar="FILE", help="also write the results as CSV")
    parser.add_argument("--plot", metavar="FILE", help="also draw throughput and p50/p99 against concurrency")
    parser.add_argument(
        "--cache",
        choices=("off", "on"),
        default="off",
        help="against this service: off sends cache: false (every request computed), on measures its cache",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress display")
    args = parser.parse_args(argv)
    try:
        args.levels = [int(c) for c in str(args.concurrency).split(",") if c.strip()]
    except ValueError:
        parser.error("--concurrency takes integers, for example 8 or 1,8,32")
    if not args.levels or min(args.levels) < 1:
        parser.error("--concurrency must be at least 1")
    if args.batch < 1:
        parser.error("--batch must be at least 1")
    if args.rate is not None and args.rate <= 0:
        parser.error("--rate must be positive")
    if args.requests is None and args.duration is None:
        args.requests = 200
    if args.plot and not have_matplotlib():
        parser.error("--plot needs matplotlib: pip install matplotlib")  # before the sweep, not after it
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    texts = load_texts(args.corpus if args.mode == "text" else None) if args.mode != "image" else []
    images = load_images(args.corpus if args.mode == "image" else None) if args.mode != "text" else []
    random.Random(args.seed).shuffle(texts)
    args.this_service = is_this_service(args)
    args.uncached = args.this_service and args.cache == "off"
    bodies = Bodies(args, texts, images)
    rows = [run_level(args, bodies, level) for level in args.levels]
    if args.json:
        print(
            json.dumps(
                {
                    "url": args.url,
                    "mode": args.mode,
                    "endpoint": args.endpoint,
                    "batch": args.batch,
                    "cache": "off" if args.uncached else ("on" if args.this_service else "not this service"),
                    "results": rows,
                },
                indent=2,
            )
        )
    else:
        print(
            f"{args.url} {args.endpoint} {args.mode}, {args.batch} item(s) per request"
            + (f", open loop at {args.rate:g} req/s" if args.rate else "")
            + (", cache off (every request computed)" if args.uncached else "")
            + (", cache on" if args.this_service and not args.uncached else "")
        )
        print(format_table(rows))
    if args.csv:
        write_csv(rows, args.csv)
    if args.plot:
        plot(rows, args.plot, f"{args.url} {args.endpoint} {args.mode}, {args.batch} item(s) per request")
    return 0


if __name__ == "__main__":
    sys.exit(main())
