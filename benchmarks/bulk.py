#!/usr/bin/env python3
"""Does `embedding-service bulk` keep the servers busy? Against one running instance, in one run:

    python benchmarks/bulk.py                    # the default model, 2 workers, 20,000 records

1. `benchmark.py` at concurrency 4, 8 and 16 with 16 texts a request (cache off, its built-in corpus of
   distinct texts): the best texts/s the server gives a load tester.
2. `embedding-service bulk` over 20,000 distinct records of the same corpus (JSONL in, Parquet out, cache
   off, its default concurrency and request size): records/s from its summary.
3. `embedding-service bulk --local` over the same records in this machine's process (the server stopped
   first, so the CPUs are the job's), against sentence-transformers' `encode` of the model on the same
   texts at batch size 32 in the same dtype: the bare model's batched rate.

Prints the rates and the ratios (1 -> 2 and 3's), which the issue asks to be >= 0.9.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from serving import ROOT, free_port, gunicorn_command, running, service_env

COMMAND = str(Path(sys.executable).with_name("embedding-service"))


def corpus(count: int) -> list[str]:
    """benchmark.py's own built-in corpus: distinct generated texts of 4-80 words."""
    sys.path.insert(0, str(ROOT))
    import benchmark

    return benchmark.builtin_corpus(count)


def benchmark_py(port: int, concurrency: str, seconds: float) -> list[dict]:
    command = [sys.executable, str(ROOT / "benchmark.py"), "--url", f"http://127.0.0.1:{port}", "--json", "--quiet"]
    command += ["--concurrency", concurrency, "--batch", "16", "--duration", str(seconds), "--warmup", "2"]
    return json.loads(subprocess.run(command, capture_output=True, text=True, check=True).stdout)["results"]


def bulk(args: list[str], env: dict | None = None) -> dict:
    done = subprocess.run([COMMAND, "bulk", *args, "--json"], capture_output=True, text=True, env=env)
    if done.returncode != 0:
        raise RuntimeError(done.stderr[-2000:])
    return json.loads(done.stdout)


def bare_rate(texts: list[str], model_path: str, dtype: str) -> float:
    import torch
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(model_path, device="cpu", model_kwargs={"torch_dtype": getattr(torch, dtype)})
    model.encode(texts[:256], batch_size=32)
    started = time.perf_counter()
    model.encode(texts, batch_size=32)
    return len(texts) / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--records", type=int, default=20_000)
    parser.add_argument("--seconds", type=float, default=15.0, help="per benchmark.py level")
    parser.add_argument("--config", default="", help="settings for the server and --local, e.g. 'DTYPE=float32'")
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    from app.config import default_model_path

    model_path = str(default_model_path())
    texts = corpus(args.records)
    with tempfile.TemporaryDirectory() as scratch:
        records = Path(scratch) / "records.jsonl"
        records.write_text("".join(json.dumps({"text": text}) + "\n" for text in texts))
        port = free_port()
        env = service_env(model_path, port, args.config)
        with running("service", gunicorn_command(), env, f"http://127.0.0.1:{port}/ready", timeout=600):
            levels = benchmark_py(port, "4,8,16", args.seconds)
            best = max(levels, key=lambda level: level["items_per_s"])
            remote = bulk([str(records), str(Path(scratch) / "remote.parquet"), "--url", f"http://127.0.0.1:{port}"])
        dtype = _dtype(env)
        local_env = {**os.environ, **dict(item.split("=", 1) for item in args.config.split() if "=" in item)}
        local = bulk([str(records), str(Path(scratch) / "local.parquet"), "--local", model_path], local_env)
    bare = bare_rate(texts, model_path, dtype)
    remote_rate = remote["records"] / remote["seconds"]
    local_rate = local["records"] / local["seconds"]
    print(f"{args.records} records; benchmark.py levels (16 texts a request, cache off):")
    for level in levels:
        print(f"  c={level['concurrency']}: {level['items_per_s']:.1f} texts/s")
    print("\n| what | texts/s | ratio |")
    print("|---|---|---|")
    print(f"| benchmark.py, best level (c={best['concurrency']}) | {best['items_per_s']:.1f} | 1.00 |")
    print(f"| embedding-service bulk --url | {remote_rate:.1f} | {remote_rate / best['items_per_s']:.2f} |")
    print(f"| sentence-transformers encode, batch 32, {dtype} | {bare:.1f} | 1.00 |")
    print(f"| embedding-service bulk --local | {local_rate:.1f} | {local_rate / bare:.2f} |")


def _dtype(env: dict) -> str:
    """The dtype the service picked (DTYPE=auto: bfloat16 on CPUs with native bf16), as the bare model's."""
    if env.get("DTYPE", "auto") != "auto":
        return env["DTYPE"]
    sys.path.insert(0, str(ROOT))
    from app.engine.device import resolve_dtype

    return str(resolve_dtype("auto", "cpu")).removeprefix("torch.")


if __name__ == "__main__":
    main()
