#!/usr/bin/env python3
"""GME throughput: texts/s, images/s and fused/s of the service against GME's recipe in-process, in one run.

    python benchmarks/vlm.py                  # a random Qwen2-VL about 1/8 of gme-Qwen2-VL-2B's width and depth
    python benchmarks/vlm.py --model-path DIR --dtype bfloat16

1. The limit: the recipe of gme_inference.py in this process (the reference
   the tests check the service against: GME's resize, the image processor,
   the model), batches of 8, all cores.
2. The service: `gunicorn -c gunicorn.conf.py` with its defaults, the earlier
   GME server's routes (/embeddings/text with 8 texts per request,
   /embeddings/image and /embeddings/fused with 4 inputs per request) from 4
   keep-alive clients at once.

Images are noisy JPEGs of six sizes (the default 256-1280 image tokens apply);
texts are license paragraphs of 10-60 words.
"""

from __future__ import annotations

import argparse
import base64
import http.client
import io
import json
import os
import random
import sys
import tempfile
import threading
import time
from pathlib import Path

from serving import ROOT, free_port, gunicorn_command, post_json, run_clients, running, service_env

SIZES = [(320, 240), (448, 448), (640, 480), (200, 600), (512, 384), (300, 300)]


def build_model(directory: Path) -> Path:
    """Qwen2-VL-2B's shape at about 1/8: text 192 wide, 4 layers; vision 160 wide, 4 blocks; GME's tokens."""
    import torch
    from transformers import Qwen2VLConfig, Qwen2VLForConditionalGeneration

    sys.path.insert(0, str(ROOT))
    from tests.tiny_models import tiny_qwen2_vl

    base = tiny_qwen2_vl(directory.parent / "tokenizer-source")
    from transformers import AutoImageProcessor, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(base)
    ids = {
        t: tokenizer.convert_tokens_to_ids(t)
        for t in ("<|endoftext|>", "<|im_end|>", "<|image_pad|>", "<|video_pad|>", "<|vision_start|>", "<|vision_end|>")
    }
    torch.manual_seed(0)
    config = Qwen2VLConfig(
        text_config=dict(
            vocab_size=len(tokenizer),
            hidden_size=192,
            intermediate_size=1120,
            num_hidden_layers=4,
            num_attention_heads=3,
            num_key_value_heads=1,
            max_position_embeddings=32768,
            rope_scaling={"type": "mrope", "mrope_section": [8, 12, 12]},
            pad_token_id=ids["<|endoftext|>"],
            eos_token_id=ids["<|im_end|>"],
            bos_token_id=ids["<|endoftext|>"],
        ),
        vision_config=dict(
            depth=4,
            embed_dim=160,
            hidden_size=192,
            num_heads=2,
            mlp_ratio=4,
            patch_size=14,
            spatial_merge_size=2,
            temporal_patch_size=2,
            in_channels=3,
        ),
        image_token_id=ids["<|image_pad|>"],
        video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"],
        vision_end_token_id=ids["<|vision_end|>"],
        tie_word_embeddings=True,
    )
    Qwen2VLForConditionalGeneration(config).eval().save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    processor = AutoImageProcessor.from_pretrained(base)
    processor.patch_size = 14
    processor.save_pretrained(directory)
    return directory


def inputs(seed: int = 0) -> tuple[list[str], list[bytes]]:
    from PIL import Image

    words = Path("/usr/share/common-licenses/GPL-3").read_text(errors="replace").split() or ["word"] * 1000
    rng = random.Random(seed)
    texts = []
    for _ in range(32):
        length = rng.randint(10, 60)
        start = rng.randrange(0, len(words) - length)
        texts.append(" ".join(words[start : start + length]))
    images = []
    for index in range(16):
        width, height = SIZES[index % len(SIZES)]
        noise = bytes(rng.getrandbits(8) for _ in range(width * height * 3 // 16))
        image = Image.frombytes("RGB", (width // 4, height // 4), noise).resize((width, height))
        buffer = io.BytesIO()
        image.save(buffer, "JPEG", quality=85)
        images.append(buffer.getvalue())
    return texts, images


def in_process(model_path: Path, texts: list[str], images: list[bytes], dtype: str, repeats: int) -> dict:
    import torch
    from PIL import Image

    sys.path.insert(0, str(ROOT))
    from tests.test_gme import GmeReference

    torch.set_num_threads(os.cpu_count() or 1)
    reference = GmeReference(model_path, min_tokens=256, max_tokens=1280)
    reference.model.to(getattr(torch, dtype))
    pictures = [Image.open(io.BytesIO(data)) for data in images]
    kinds = {
        "texts": (texts, [None] * len(texts)),
        "images": ([None] * len(pictures), pictures),
        "fused": (texts[: len(pictures)], pictures),
    }
    rates = {}
    for kind, (batch_texts, batch_images) in kinds.items():
        reference.embed(batch_texts[:2], batch_images[:2])  # warm-up
        started = time.perf_counter()
        for _ in range(repeats):
            for start in range(0, len(batch_texts), 8):
                reference.embed(batch_texts[start : start + 8], batch_images[start : start + 8])
        rates[kind] = repeats * len(batch_texts) / (time.perf_counter() - started)
    return rates


def over_http(
    model_path: Path, texts: list[str], images: list[bytes], dtype: str, repeats: int, concurrency: int
) -> dict:
    port = free_port()
    env = service_env(str(model_path), port, "", DTYPE=dtype)
    encoded = [base64.b64encode(data).decode() for data in images]
    jobs = {
        "texts": ("/embeddings/text", [{"texts": texts[i : i + 8]} for i in range(0, len(texts), 8)]),
        "images": ("/embeddings/image", [{"images": encoded[i : i + 4]} for i in range(0, len(encoded), 4)]),
        "fused": (
            "/embeddings/fused",
            [{"texts": texts[i : i + 4], "images": encoded[i : i + 4]} for i in range(0, len(encoded), 4)],
        ),
    }
    rates = {}
    with running("service", gunicorn_command(), env, f"http://127.0.0.1:{port}/ready", timeout=600):
        for kind, (route, bodies) in jobs.items():
            post_json(port, route, bodies[0])
            items = sum(len(body.get("texts") or body["images"]) for body in bodies) * repeats
            work = [body for _ in range(repeats) for body in bodies]
            lock = threading.Lock()
            failures = []

            def client(_number):
                connection = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
                while True:
                    with lock:
                        if not work:
                            break
                        body = work.pop()
                    status, _ = post_json(port, route, body, connection)
                    if status != 200:
                        failures.append(status)
                connection.close()

            seconds = run_clients(client, concurrency)
            if failures:
                raise SystemExit(f"{len(failures)} {kind} requests failed: {failures[:3]}")
            rates[kind] = items / seconds
    return rates


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model-path", type=Path, help="a GME directory (default: build a random 1/8-size one)")
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    texts, images = inputs()
    with tempfile.TemporaryDirectory(prefix="bench-vlm-") as scratch:
        model_path = args.model_path or build_model(Path(scratch) / "gme-random-eighth")
        print("in-process recipe", file=sys.stderr, flush=True)
        bare = in_process(model_path, texts, images, args.dtype, args.repeats)
        print(f"the service, c={args.concurrency}", file=sys.stderr, flush=True)
        served = over_http(model_path, texts, images, args.dtype, args.repeats, args.concurrency)
    rows = [
        {"kind": kind, "recipe_per_s": bare[kind], "service_per_s": served[kind], "ratio": served[kind] / bare[kind]}
        for kind in bare
    ]
    if args.json:
        print(json.dumps(rows, indent=2))
        return
    print(f"{args.dtype}, {os.cpu_count()} cores; service at c={args.concurrency}\n")
    print("| inputs | GME recipe in-process /s | service /s | service / recipe |")
    print("|---|---|---|---|")
    for row in rows:
        print(f"| {row['kind']} | {row['recipe_per_s']:.1f} | {row['service_per_s']:.1f} | {row['ratio']:.2f} |")


if __name__ == "__main__":
    main()
