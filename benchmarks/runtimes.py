#!/usr/bin/env python3
"""CPU runtimes for a sentence-transformers encoder, measured in one run on this machine: eager torch (float32,
bfloat16, int8 weights by dynamic quantization), torch.compile (inductor), ONNX Runtime and OpenVINO; texts/s at
batch 16 and batch 1, fidelity against sentence-transformers float32 (the lowest cosine, and recall@10: how much
of float32's top 10 documents for each query each runtime's top 10 finds), and what each costs to prepare.

    pip install onnxruntime onnx onnxscript openvino     # the runtimes not in the service's requirements
    python benchmarks/runtimes.py                        # the default model, all cores
    python benchmarks/runtimes.py --model-path /models/bge-base --seconds 8
    python benchmarks/runtimes.py --only "eager float32" --only "eager int8"   # a subset

Each runtime runs the transformer; pooling (the model's, from its sentence-transformers config) and
normalisation are the same numpy code for all. Texts: the standard library's docstrings (see quantization.py),
tokenised once, sorted by length into batches (as the service's planner does), each padded to its longest row.
"prepare" is the one-off cost per process (export, conversion or compilation, plus the first call) that a worker
would pay at start-up unless it is cached.
A runtime that is not installed, or fails on this model, is reported as such.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from quantization import docstrings  # noqa: E402


def mean_pool(hidden: np.ndarray, mask: np.ndarray) -> np.ndarray:
    summed = (hidden * mask[..., None]).sum(1)
    vectors = summed / np.maximum(mask.sum(1, keepdims=True), 1e-9)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def batches(encoded: list[list[int]], size: int, pad_id: int):
    for start in range(0, len(encoded), size):
        rows = encoded[start : start + size]
        width = max(map(len, rows))
        ids = np.full((len(rows), width), pad_id, dtype=np.int64)
        mask = np.zeros((len(rows), width), dtype=np.int64)
        for i, row in enumerate(rows):
            ids[i, : len(row)] = row
            mask[i, : len(row)] = 1
        yield ids, mask


def eager(model, dtype):
    import torch

    model = model.to(dtype)

    def run(ids, mask):
        with torch.inference_mode():
            out = model(input_ids=torch.from_numpy(ids), attention_mask=torch.from_numpy(mask))
        return out.last_hidden_state.float().numpy()

    return run


def int8_dynamic(model, per_channel: bool = False, keep_float=lambda name: False):
    """Linear layers' weights in int8 (per-tensor scales, or one per output channel), activations quantized on the
    fly; the layers `keep_float` names stay in float32."""
    import torch
    from torch.ao.quantization import default_dynamic_qconfig, per_channel_dynamic_qconfig

    qconfig = per_channel_dynamic_qconfig if per_channel else default_dynamic_qconfig
    spec = {
        name: qconfig
        for name, module in model.named_modules()
        if isinstance(module, torch.nn.Linear) and not keep_float(name)
    }
    quantized = torch.ao.quantization.quantize_dynamic(model, spec, dtype=torch.qint8)
    return eager(quantized, torch.float32)


def feed_forward(name: str) -> bool:
    """A BERT layer's feed-forward projections (intermediate.dense, output.dense), where its outlier activations
    are."""
    return "intermediate" in name or (name.endswith("output.dense") and "attention" not in name)


def recall_at_10(queries: np.ndarray, documents: np.ndarray, reference_top: np.ndarray) -> float:
    top = np.argsort(-(queries @ documents.T), axis=1)[:, :10]
    return float(np.mean([len(set(a) & set(b)) / 10 for a, b in zip(top, reference_top, strict=True)]))


def compiled(model, dtype):
    import torch

    model = model.to(dtype)
    forward = torch.compile(model, dynamic=True)

    def run(ids, mask):
        with torch.inference_mode():
            out = forward(input_ids=torch.from_numpy(ids), attention_mask=torch.from_numpy(mask))
        return out.last_hidden_state.float().numpy()

    return run


def exported_onnx(model, directory: Path) -> Path:
    import torch

    class Positional(torch.nn.Module):  # the exporter passes inputs by position
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, input_ids, attention_mask):
            return self.inner(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state

    path = directory / "model.onnx"
    ids = torch.ones((2, 16), dtype=torch.long)
    torch.onnx.export(
        Positional(model),
        (ids, torch.ones_like(ids)),
        str(path),
        input_names=["input_ids", "attention_mask"],
        output_names=["last_hidden_state"],
        dynamo=False,
        opset_version=17,
        dynamic_axes={
            "input_ids": {0: "batch", 1: "sequence"},
            "attention_mask": {0: "batch", 1: "sequence"},
            "last_hidden_state": {0: "batch", 1: "sequence"},
        },
    )
    return path


def onnxruntime_(model, directory: Path, threads: int):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    session = ort.InferenceSession(str(exported_onnx(model, directory)), options, providers=["CPUExecutionProvider"])

    def run(ids, mask):
        return session.run(["last_hidden_state"], {"input_ids": ids, "attention_mask": mask})[0]

    return run


def openvino_(model, directory: Path, precision: str, threads: int):
    import openvino as ov

    core = ov.Core()
    converted = core.read_model(str(exported_onnx(model, directory)))
    compiled_model = core.compile_model(
        converted, "CPU", {"INFERENCE_PRECISION_HINT": precision, "INFERENCE_NUM_THREADS": threads}
    )
    request = compiled_model.create_infer_request()

    def run(ids, mask):
        return request.infer({"input_ids": ids, "attention_mask": mask})[0]

    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model-path", default="")
    parser.add_argument("--documents", type=int, default=512)
    parser.add_argument("--seconds", type=float, default=6.0, help="per runtime and batch size, at most")
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--only", action="append", help="run only the runtimes whose names start with this")
    args = parser.parse_args()

    import torch
    from sentence_transformers import SentenceTransformer
    from transformers import AutoModel, AutoTokenizer

    from app.config import default_model_path

    torch.set_num_threads(args.threads)
    path = args.model_path or str(default_model_path())
    pairs = docstrings(args.documents)
    texts = [document for _, document in pairs]
    query_texts = [query for query, _ in pairs]
    st_model = SentenceTransformer(path, device="cpu")
    reference = st_model.encode(texts, batch_size=32, normalize_embeddings=True)
    reference_queries = st_model.encode(query_texts, batch_size=32, normalize_embeddings=True)
    reference_top = np.argsort(-(reference_queries @ reference.T), axis=1)[:, :10]
    tokenizer = AutoTokenizer.from_pretrained(path)
    limit = st_model.max_seq_length
    encoded = tokenizer(texts, truncation=True, max_length=limit)["input_ids"]
    encoded_queries = tokenizer(query_texts, truncation=True, max_length=limit)["input_ids"]
    pad_id = tokenizer.pad_token_id or 0
    tokens = sum(map(len, encoded))

    def fresh():
        return AutoModel.from_pretrained(path, torch_dtype=torch.float32).eval()

    candidates = {
        "eager float32": lambda d: eager(fresh(), torch.float32),
        "eager bfloat16": lambda d: eager(fresh(), torch.bfloat16),
        "eager int8 (dynamic quantization)": lambda d: int8_dynamic(fresh()),
        "eager int8 per-channel": lambda d: int8_dynamic(fresh(), per_channel=True),
        "eager int8 per-channel, feed-forward in float32": lambda d: int8_dynamic(
            fresh(), per_channel=True, keep_float=feed_forward
        ),
        "torch.compile float32": lambda d: compiled(fresh(), torch.float32),
        "torch.compile bfloat16": lambda d: compiled(fresh(), torch.bfloat16),
        "onnxruntime float32": lambda d: onnxruntime_(fresh(), d, args.threads),
        "openvino float32": lambda d: openvino_(fresh(), d, "f32", args.threads),
        "openvino bfloat16": lambda d: openvino_(fresh(), d, "bf16", args.threads),
    }
    results = []
    for name, make in candidates.items():
        if args.only and not any(name.startswith(prefix) for prefix in args.only):
            continue
        row = {"runtime": name}
        try:
            with tempfile.TemporaryDirectory() as directory:
                started = time.perf_counter()
                run = make(Path(directory))
                first = next(batches(encoded[:16], 16, pad_id))
                run(*first)
                row["prepare_s"] = round(time.perf_counter() - started, 1)
                vectors = np.concatenate(
                    [mean_pool(run(ids, mask), mask) for ids, mask in batches(encoded, 16, pad_id)]
                )
                cosines = (vectors * reference).sum(1)
                row["min_cosine"] = round(float(cosines.min()), 5)
                queries = np.concatenate(
                    [mean_pool(run(ids, mask), mask) for ids, mask in batches(encoded_queries, 16, pad_id)]
                )
                row["recall_at_10"] = round(recall_at_10(queries, vectors, reference_top), 4)
                for size in (16, 1):
                    done, started = 0, time.perf_counter()
                    # Batches of similar lengths, as the service's batch planner makes them.
                    for ids, mask in batches(sorted(encoded, key=len), size, pad_id):
                        mean_pool(run(ids, mask), mask)
                        done += len(ids)
                        if time.perf_counter() - started > args.seconds:
                            break
                    row[f"texts_per_s_b{size}"] = round(done / (time.perf_counter() - started), 1)
        except Exception as exc:  # noqa: BLE001 - reported, the run goes on
            row["failed"] = f"{type(exc).__name__}: {str(exc)[:200]}"
        results.append(row)
        print(json.dumps(row), file=sys.stderr, flush=True)

    base = next((r for r in results if r["runtime"] == "eager float32" and "failed" not in r), None)
    print(
        json.dumps(
            {
                "model": Path(path).name,
                "texts": len(texts),
                "tokens_per_text": round(tokens / len(texts)),
                "threads": args.threads,
            }
        )
    )
    print(
        "| runtime | prepare s | min cosine vs ST fp32 | recall@10 vs ST fp32 | texts/s batch 16 | x eager fp32 "
        "| texts/s batch 1 | x |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for r in results:
        if "failed" in r:
            print(f"| {r['runtime']} | failed: {r['failed']} | | | | | | |")
            continue
        x16 = r["texts_per_s_b16"] / base["texts_per_s_b16"] if base else float("nan")
        x1 = r["texts_per_s_b1"] / base["texts_per_s_b1"] if base else float("nan")
        print(
            f"| {r['runtime']} | {r['prepare_s']} | {r['min_cosine']:.5f} | {r['recall_at_10']:.4f} | "
            f"{r['texts_per_s_b16']} | "
            f"{x16:.2f} | {r['texts_per_s_b1']} | {x1:.2f} |"
        )


if __name__ == "__main__":
    main()
