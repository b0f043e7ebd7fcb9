#!/usr/bin/env python3
"""Throughput and latency of the service against the bare model and a peer, in one run.

    python benchmarks/throughput.py                                   # the service's default settings
    python benchmarks/throughput.py --config "WORKERS=1 CPU_THREADS=2" --config "WORKERS=2 CPU_THREADS=1"
    python benchmarks/throughput.py --infinity-venv /path/to/venv     # add Infinity, same model, same client

1. The limit: the bare model in this process (tokenizer + AutoModel + mean
   pooling, same dtype, length-sorted batches of 32, all cores), in texts/s,
   and its single-text latency.
2. The service over HTTP (its embedding cache off: the corpus repeats), for each --config (environment
   overrides), driven by
   benchmark.py with keep-alive clients: single-text requests at concurrency
   1, 8 and 32, and 16-text requests at concurrency 4.
3. Infinity (`infinity_emb v2`) from its own virtual environment on the same
   model directory, for each --infinity-args, driven by the same client.

The corpus is paragraphs of real prose that ships with the machine (the
license texts in /usr/share/common-licenses), varied in length.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from serving import ROOT, free_port, gunicorn_command, running, service_env

CORPUS_FILES = [
    "/usr/share/common-licenses/GPL-3",
    "/usr/share/common-licenses/Apache-2.0",
    "/usr/share/common-licenses/MPL-2.0",
]
SCENARIOS = [  # (name, items per request, concurrency)
    ("1 text, c=1", 1, 1),
    ("1 text, c=8", 1, 8),
    ("1 text, c=32", 1, 32),
    ("16 texts, c=4", 16, 4),
]


def build_corpus(files: list[str], limit: int) -> list[str]:
    paragraphs = []
    for file in files:
        if os.path.isfile(file):
            text = Path(file).read_text(encoding="utf-8", errors="replace")
            paragraphs += [" ".join(p.split()) for p in text.split("\n\n")]
    paragraphs = [p for p in paragraphs if len(p.split()) >= 3]
    if not paragraphs:
        raise SystemExit(f"no corpus: none of {files} exists; pass --corpus-file")
    return paragraphs[:limit]


# ------------------------------------------------------------------ 1. the bare model
def bare_model(model_path: str, texts: list[str], dtype_name: str, threads: int, seconds: float) -> dict:
    import torch
    from transformers import AutoModel, AutoTokenizer

    torch.set_num_threads(threads)
    dtype = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[dtype_name]
    tokenizer = AutoTokenizer.from_pretrained(model_path)
    model = AutoModel.from_pretrained(model_path, dtype=dtype).eval()
    max_length = min(256, tokenizer.model_max_length)

    def embed(batch: list[str]):
        encoded = tokenizer(batch, padding=True, truncation=True, max_length=max_length, return_tensors="pt")
        with torch.inference_mode():
            hidden = model(**encoded).last_hidden_state.float()
        mask = encoded["attention_mask"].unsqueeze(-1).float()
        pooled = (hidden * mask).sum(1) / mask.sum(1)
        return torch.nn.functional.normalize(pooled, dim=-1)

    ordered = sorted(texts, key=len, reverse=True)
    embed(ordered[:32])
    done, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        for i in range(0, len(ordered), 32):
            embed(ordered[i : i + 32])
        done += len(ordered)
    batched = done / (time.perf_counter() - started)
    singles = []
    for text in texts[:200]:
        began = time.perf_counter()
        embed([text])
        singles.append((time.perf_counter() - began) * 1000)
    return {
        "texts_per_s": batched,
        "single_p50_ms": statistics.median(singles),
        "single_texts_per_s": 1000 / statistics.mean(singles),
    }


# ---------------------------------------------------------------- 2 and 3. over HTTP
def drive(url: str, endpoint: str, corpus: Path, seconds: float, warmup: float, model: str | None) -> dict:
    rows = {}
    for name, batch, concurrency in SCENARIOS:
        command = [
            sys.executable,
            str(ROOT / "benchmark.py"),
            "--url",
            url,
            "--endpoint",
            endpoint,
            "--corpus",
            str(corpus),
            "--batch",
            str(batch),
            "--concurrency",
            str(concurrency),
            "--duration",
            str(seconds),
            "--warmup",
            str(warmup),
            "--json",
            "--quiet",
        ]
        if model:
            command += ["--model", model]
        out = subprocess.run(command, capture_output=True, text=True, check=True).stdout
        rows[name] = json.loads(out)["results"][0]
    return rows


def serve_and_drive(
    name: str,
    command: list[str],
    env: dict,
    ready_path: str,
    endpoint: str,
    port: int,
    corpus: Path,
    args,
    model: str | None = None,
) -> dict:
    url = f"http://127.0.0.1:{port}"
    with running(name, command, env, url + ready_path, args.start_timeout):
        return drive(url, endpoint, corpus, args.seconds, args.warmup, model)
    return {}


def service(config: str, model_path: str, corpus: Path, args) -> dict:
    port = free_port()
    return serve_and_drive(
        f"service [{config or 'defaults'}]",
        gunicorn_command(),
        # The corpus repeats: with the embedding cache on, this would measure the cache (benchmarks/cache.py
        # does that). A --config can still turn it on.
        service_env(model_path, port, config, CACHE_BYTES="0"),
        "/ready",
        "native",
        port,
        corpus,
        args,
    )


def infinity(venv: str, extra: str, model_path: str, corpus: Path, args) -> dict:
    port = free_port()
    command = [
        str(Path(venv) / "bin" / "infinity_emb"),
        "v2",
        "--model-id",
        model_path,
        "--port",
        str(port),
        "--url-prefix",
        "/v1",
        "--served-model-name",
        "bench",
        *shlex.split(extra),
    ]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "INFINITY_ANONYMOUS_USAGE_STATS": "0", "DO_NOT_TRACK": "1"}
    return serve_and_drive(f"infinity [{extra}]", command, env, "/health", "openai", port, corpus, args, model="bench")


# --------------------------------------------------------------------------- report
def report(results: dict) -> str:
    limit = results["bare_model"]
    lines = [
        f"bare model ({results['dtype']}, {results['threads']} threads): "
        f"{limit['texts_per_s']:.1f} texts/s batched, single text p50 {limit['single_p50_ms']:.1f} ms "
        f"({limit['single_texts_per_s']:.1f} texts/s)",
        "",
    ]
    lines.append("| server | scenario | texts/s | x limit | p50 ms | p99 ms | errors |")
    lines.append("|---|---|---|---|---|---|---|")
    for server, rows in results["servers"].items():
        for scenario, row in rows.items():
            lines.append(
                f"| {server} | {scenario} | {row['items_per_s']:.1f} | "
                f"{row['items_per_s'] / limit['texts_per_s']:.2f} | {row['p50_ms']:.1f} | "
                f"{row['p99_ms']:.1f} | {row['errors']} |"
            )
    ours = {k: v for k, v in results["servers"].items() if k.startswith("service") and v}
    peers = {k: v for k, v in results["servers"].items() if k.startswith("infinity") and v}
    if ours:
        lines.append("")
        for scenario in ("1 text, c=8", "16 texts, c=4"):
            best = max(ours.items(), key=lambda kv: kv[1][scenario]["items_per_s"])
            text = (
                f"{scenario}: best service config {best[0]} = {best[1][scenario]['items_per_s']:.1f} texts/s"
                f" = {best[1][scenario]['items_per_s'] / limit['texts_per_s']:.2f} x the bare limit"
            )
            if peers:
                peer = max(peers.items(), key=lambda kv: kv[1][scenario]["items_per_s"])
                text += (
                    f", {best[1][scenario]['items_per_s'] / peer[1][scenario]['items_per_s']:.2f} x "
                    f"Infinity's best ({peer[0]})"
                )
            lines.append(text)
        best_c1 = min(ours.items(), key=lambda kv: kv[1]["1 text, c=1"]["p50_ms"])
        p50 = best_c1[1]["1 text, c=1"]["p50_ms"]
        lines.append(
            f"1 text, c=1: p50 {p50:.1f} ms = {p50 / limit['single_p50_ms']:.2f} x the bare single-text "
            f"forward ({best_c1[0]})"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model-path", help="model directory (default: the packaged all-MiniLM-L6-v2)")
    parser.add_argument("--dtype", default=None, help="dtype of the bare model (default: what DTYPE=auto picks)")
    parser.add_argument(
        "--config",
        action="append",
        default=None,
        help='service settings to try, e.g. "WORKERS=1 CPU_THREADS=2" (repeatable)',
    )
    parser.add_argument("--infinity-venv", help="virtual environment with infinity-emb[server,torch]")
    parser.add_argument(
        "--infinity-args", action="append", default=None, help="extra infinity_emb v2 arguments to try (repeatable)"
    )
    parser.add_argument("--corpus-file", action="append", default=None)
    parser.add_argument("--corpus-size", type=int, default=1000)
    parser.add_argument("--seconds", type=float, default=15.0, help="measured seconds per scenario")
    parser.add_argument("--warmup", type=float, default=3.0)
    parser.add_argument("--start-timeout", type=float, default=300.0)
    parser.add_argument("--json", metavar="FILE", help="also write all results as JSON")
    args = parser.parse_args()

    sys.path.insert(0, str(ROOT))
    from app.config import default_model_path
    from app.engine.device import dtype_name, resolve_dtype

    model_path = args.model_path or str(default_model_path())
    dtype = args.dtype or dtype_name(resolve_dtype("auto", "cpu"))
    threads = os.cpu_count() or 1
    texts = build_corpus(args.corpus_file or CORPUS_FILES, args.corpus_size)
    with tempfile.TemporaryDirectory(prefix="throughput-") as scratch:
        corpus = Path(scratch) / "corpus.txt"
        corpus.write_text("\n\n".join(texts), encoding="utf-8")
        print(
            f"corpus: {len(texts)} paragraphs, {sum(map(len, texts)) / len(texts):.0f} characters on average",
            file=sys.stderr,
        )
        results = {"dtype": dtype, "threads": threads, "corpus_paragraphs": len(texts), "servers": {}}
        print("bare model ...", file=sys.stderr, flush=True)
        results["bare_model"] = bare_model(model_path, texts, dtype, threads, args.seconds)
        for config in args.config or [""]:
            results["servers"][f"service [{config or 'defaults'}]"] = service(config, model_path, corpus, args)
        if args.infinity_venv:
            for extra in args.infinity_args or ["--engine torch --device cpu"]:
                results["servers"][f"infinity [{extra}]"] = infinity(
                    args.infinity_venv, extra, model_path, corpus, args
                )
    print(report(results))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
