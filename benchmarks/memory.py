#!/usr/bin/env python3
"""How much memory does each extra gunicorn worker cost, with and without preload?

Starts the service (`gunicorn -c gunicorn.conf.py`) with 1 and with N workers,
preload on and off, sends traffic to every worker, then reads PSS and private
memory of the master and each worker from /proc/<pid>/smaps_rollup (Linux).

    python benchmarks/memory.py                       # BERT-large-sized random model, 1 vs 4 workers
    python benchmarks/memory.py --model-path DIR --workers 3
    python benchmarks/memory.py --three-models        # MODELS: the default model + BERT-large + a tiny CLIP

PSS (proportional set size) charges each shared page to the processes sharing
it, so the PSS summed over master + workers is the real footprint; the
difference between N and 1 workers, divided by N - 1, is what one more worker
costs.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from serving import ROOT, free_port, gunicorn_command, wait_compiled

MiB = 1024 * 1024
PRELOAD = {"both": (True, False), "on": (True,), "off": (False,)}
# A 24 x 24 grey PNG, for models that embed images.
IMAGE = (
    "iVBORw0KGgoAAAANSUhEUgAAABgAAAAYCAIAAABvFaqvAAAAIklEQVR4nGNsaGhgoAZgooopowaNGjRq0KhBowaNGkQRAADsrgGw98"
    "EGIwAAAABJRU5ErkJggg=="
)

TEXTS = [
    "Copy-on-write keeps one physical copy of every page until a process writes to it.",
    "Short.",
    "The gunicorn master loads the weights, then forks its workers; each worker inherits the "
    "address space and only the pages it modifies are duplicated by the kernel.",
] * 4


def build_large_model(directory: Path, hidden: int, layers: int) -> Path:
    """A BERT-large-shaped model with random weights and the default model's tokenizer."""
    import torch
    from transformers import AutoTokenizer, BertConfig, BertModel

    sys.path.insert(0, str(ROOT))
    from app.config import default_model_path

    torch.manual_seed(0)
    config = BertConfig(
        hidden_size=hidden,
        num_hidden_layers=layers,
        num_attention_heads=hidden // 64,
        intermediate_size=4 * hidden,
        max_position_embeddings=512,
    )
    BertModel(config).eval().save_pretrained(directory)
    AutoTokenizer.from_pretrained(str(default_model_path())).save_pretrained(directory)
    return directory


def build_three_models(scratch: Path, hidden: int, layers: int) -> str:
    """MODELS for the default model, a BERT-large-sized random model and a tiny CLIP, in that order."""
    sys.path.insert(0, str(ROOT))
    from app.config import default_model_path
    from tests.tiny_models import tiny_vision_model

    large = build_large_model(scratch / "bert-large-random", hidden, layers)
    clip = tiny_vision_model(scratch / "clip-tiny", "clip")
    return f"minilm={default_model_path()},large={large},clip={clip}"


def model_names(env: dict[str, str]) -> list[str]:
    if "MODELS" in env:
        return [entry.split("=", 1)[0] for entry in env["MODELS"].split(",")]
    return [Path(env["MODEL_PATH"]).name]


def model_dirs(env: dict[str, str]) -> list[Path]:
    if "MODELS" in env:
        return [Path(entry.split("=", 1)[1]) for entry in env["MODELS"].split(",")]
    return [Path(env["MODEL_PATH"])]


def weight_bytes(directory: Path) -> int:
    from safetensors import safe_open

    total = 0
    for file in directory.rglob("*.safetensors"):
        with safe_open(str(file), "pt") as handle:
            for key in handle.keys():
                tensor = handle.get_slice(key)
                count = 1
                for dim in tensor.get_shape():
                    count *= dim
                total += count * {"F32": 4, "F16": 2, "BF16": 2}.get(tensor.get_dtype(), 4)
    return total


def smaps(pid: int) -> dict[str, int]:
    values = {}
    with open(f"/proc/{pid}/smaps_rollup") as handle:
        for line in handle:
            parts = line.split()
            if len(parts) >= 3 and parts[-1] == "kB":
                values[parts[0].rstrip(":")] = int(parts[1]) * 1024
    return values


def children(pid: int) -> list[int]:
    with open(f"/proc/{pid}/task/{pid}/children") as handle:
        return [int(p) for p in handle.read().split()]


def get_json(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=30) as response:
        return json.loads(response.read())


def post_json(url: str, body: dict) -> dict:
    request = urllib.request.Request(
        url, data=json.dumps(body).encode(), method="POST", headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=120) as response:
        return json.loads(response.read())


def traffic(url: str) -> None:
    """One round of requests: texts to every text model, an image to every image model."""
    for card in get_json(url + "/v1/models")["data"]:
        post_json(url + "/embed_text", {"texts": TEXTS, "model": card["id"]})
        if "embed:image" in card.get("capabilities", []):
            post_json(url + "/embed_image", {"images": [IMAGE], "model": card["id"]})


def measure(models: dict[str, str], workers: int, preload: bool, requests_per_worker: int, dtype: str) -> dict:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {
        **os.environ,
        **models,
        "WORKERS": str(workers),
        "BIND": f"127.0.0.1:{port}",
        "PRELOAD": "true" if preload else "false",
        "WORKER_CLASS": "sync",
        "ALLOW_UNBOUNDED_QUEUE": "true",
        "LOG_REQUESTS": "false",
        "MAX_REQUESTS": "0",
        "DTYPE": dtype,
    }
    proc = subprocess.Popen(
        gunicorn_command(),
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 600
        served: set[int] = set()
        # Ready once every worker has answered /ready, then traffic until each has served its share.
        while len(served) < workers:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"server did not start (exit {proc.returncode})")
            try:
                if get_json(url + "/ready")["status"] == "ready":
                    served.add(get_json(url + "/health")["pid"])
            except OSError:
                time.sleep(0.2)
        if env.get("RUNTIME", "auto") != "eager":
            wait_compiled(url, workers, 600)  # what compiled graphs add is part of what a worker costs
        for _ in range(requests_per_worker * workers):
            traffic(url)
        master = smaps(proc.pid)
        worker_stats = [smaps(pid) for pid in children(proc.pid)]
        private = [w.get("Private_Clean", 0) + w.get("Private_Dirty", 0) for w in worker_stats]
        return {
            "workers": workers,
            "preload": preload,
            "total_pss": master["Pss"] + sum(w["Pss"] for w in worker_stats),
            "master_pss": master["Pss"],
            "worker_pss": [w["Pss"] for w in worker_stats],
            "worker_private": private,
            "worker_rss": [w["Rss"] for w in worker_stats],
        }
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model-path", type=Path, help="model directory (default: build a random BERT-large)")
    parser.add_argument(
        "--three-models",
        action="store_true",
        help="serve the default model, the BERT-large-sized one and a tiny CLIP together (MODELS)",
    )
    parser.add_argument("--hidden", type=int, default=1024)
    parser.add_argument("--layers", type=int, default=24)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--requests-per-worker", type=int, default=10)
    parser.add_argument("--dtype", default="float32", help="DTYPE for the service (weights are stored in float32)")
    parser.add_argument("--preload", choices=sorted(PRELOAD), default="both", help="which preload settings to run")
    parser.add_argument("--json", action="store_true", help="print the raw measurements as JSON")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="memory-bench-") as scratch:
        if args.three_models:
            models = {"MODELS": build_three_models(Path(scratch), args.hidden, args.layers)}
        else:
            models = {
                "MODEL_PATH": str(
                    args.model_path or build_large_model(Path(scratch) / "bert-large-random", args.hidden, args.layers)
                )
            }
        size = sum(weight_bytes(path) for path in model_dirs(models))
        label = ", ".join(model_names(models))
        rows = [
            measure(models, n, preload, args.requests_per_worker, args.dtype)
            for preload in PRELOAD[args.preload]
            for n in (1, args.workers)
        ]

    if args.json:
        print(json.dumps({"model_weight_bytes": size, "runs": rows}, indent=2))
        return
    print(
        f"models: {label}, weights {size / MiB:.0f} MiB on disk in all, served as {args.dtype}; "
        f"{args.requests_per_worker} requests "
        f"per worker before measuring\n"
    )
    print("| preload | workers | total PSS MiB | master PSS MiB | mean worker PSS MiB | mean worker private MiB |")
    print("|---|---|---|---|---|---|")
    for row in rows:
        print(
            f"| {'on' if row['preload'] else 'off'} | {row['workers']} | {row['total_pss'] / MiB:.0f} | "
            f"{row['master_pss'] / MiB:.0f} | {sum(row['worker_pss']) / len(row['worker_pss']) / MiB:.0f} | "
            f"{sum(row['worker_private']) / len(row['worker_private']) / MiB:.0f} |"
        )
    print()
    for preload in PRELOAD[args.preload]:
        one, many = [r for r in rows if r["preload"] == preload]
        extra = (many["total_pss"] - one["total_pss"]) / (many["workers"] - one["workers"])
        print(
            f"preload {'on ' if preload else 'off'}: each extra worker adds {extra / MiB:.0f} MiB "
            f"= {extra / size:.2f} x the model's weight bytes on disk"
        )


if __name__ == "__main__":
    main()
