#!/usr/bin/env python3
"""CPU runtimes for a sentence-transformers encoder, measured in one run on this machine: eager torch (float32,
bfloat16, int8 weights by dynamic quantization), torch.compile (inductor), TorchScript with oneDNN Graph, ONNX
Runtime and OpenVINO, and int8 by each of their quantizers (#30: dynamic, static with calibration, weights
only); texts/s at batch 16 and batch 1, fidelity against sentence-transformers float32 (the lowest cosine;
recall@10: how much of float32's top 10 documents for each query each runtime's top 10 finds; and the task
itself: the reciprocal rank of each query's own document), and what each costs to prepare.

    pip install onnxruntime onnx onnxscript openvino nncf    # the runtimes not in the service's requirements
    python benchmarks/runtimes.py                            # the default model, all cores
    python benchmarks/runtimes.py --model-path /models/bge-base --seconds 8
    python benchmarks/runtimes.py --only "eager float32" --only "eager int8"   # a subset
    python benchmarks/runtimes.py --rounds 3 --seconds 3     # speeds as the median of 3 interleaved rounds

Each runtime runs the transformer; pooling (the model's, from its sentence-transformers config) and
normalisation are the same numpy code for all. Texts: the standard library's docstrings (see quantization.py),
tokenised once, sorted by length into batches (as the service's planner does), each padded to its longest row;
the static int8 quantizers calibrate on `--calibration` further docstrings, not among those measured.
"prepare" is the one-off cost per process (export, conversion, quantization or compilation, plus the first
call of each batch size) that a worker would pay at start-up unless it is cached.
A runtime that is not installed, or fails on this model, is reported as such.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import itertools
import json
import os
import random
import statistics
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


def matmul_peak_gflops(threads: int, seconds: float = 3.0) -> float:
    """What this CPU's bfloat16 matmul reaches on `threads` threads (torch, 2048-cubed): the ceiling every
    runtime's bfloat16 works under."""
    import torch

    a, b = torch.randn(2048, 2048, dtype=torch.bfloat16), torch.randn(2048, 2048, dtype=torch.bfloat16)
    for _ in range(3):
        a @ b
    done, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        a @ b
        done += 1
    return 2 * 2048**3 * done / (time.perf_counter() - started) / 1e9


def flops_per_token(config, tokens: float) -> float | None:
    """An encoder layer stack's matmul FLOPs for one token of a `tokens`-long text: the projections and
    feed-forward (2 per weight) and attention's scores and context (4 x tokens x width)."""
    try:
        width, inner, layers = config.hidden_size, config.intermediate_size, config.num_hidden_layers
    except AttributeError:
        return None
    return layers * (2 * (4 * width * width + 2 * width * inner) + 4 * tokens * width)


def own_document_mrr(queries: np.ndarray, documents: np.ndarray) -> float:
    """The task itself rather than agreement with float32: each docstring's first line as the query of its own
    document (the rest of that docstring); the mean reciprocal rank of that document within the top 10."""
    scores = queries @ documents.T
    ranks = (scores > scores[np.arange(len(queries)), np.arange(len(queries))][:, None]).sum(1)
    return float(np.mean(np.where(ranks < 10, 1.0 / (ranks + 1), 0.0)))


def compiled(model, dtype):
    import torch

    model = model.to(dtype)
    forward = torch.compile(model, dynamic=True)

    def run(ids, mask):
        with torch.inference_mode():
            out = forward(input_ids=torch.from_numpy(ids), attention_mask=torch.from_numpy(mask))
        return out.last_hidden_state.float().numpy()

    return run


def positional(model):
    """`model` taking its inputs by position and returning its last hidden state: what tracing and ONNX export
    take (tensors in and out, no keywords or output dicts)."""
    import torch

    class Positional(torch.nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, input_ids, attention_mask):
            return self.inner(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state

    return Positional(model)


def onednn_graph(model, dtype, example):
    """TorchScript, traced on one batch and frozen, with oneDNN Graph's fusions on (LLGA: a matmul with its bias,
    scale and add; attention's patterns): PyTorch's one path to oneDNN's graph compiler, which inductor does not
    use. The traced graph takes any batch shape."""
    import torch

    torch.jit.enable_onednn_fusion(True)
    wrapped = positional(model.to(dtype)).eval()
    with torch.no_grad():
        traced = torch.jit.freeze(torch.jit.trace(wrapped, tuple(map(torch.from_numpy, example)), strict=False))

    def run(ids, mask):
        with torch.no_grad():
            return traced(torch.from_numpy(ids), torch.from_numpy(mask)).float().numpy()

    return run


def exported_onnx(model, directory: Path) -> Path:
    import torch

    path = directory / "model.onnx"
    ids = torch.ones((2, 16), dtype=torch.long)
    torch.onnx.export(
        positional(model),
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


def openvino_(model, directory: Path, precision: str, threads: int):
    import openvino as ov

    core = ov.Core()
    converted = core.read_model(str(exported_onnx(model, directory)))
    return openvino_compiled(core, converted, {"INFERENCE_PRECISION_HINT": precision}, threads)


def calibration_batches(tokenizer, texts: list[str], limit: int, pad_id: int) -> list:
    """Batches of 16 similar-length texts for the static int8 runtimes' activation ranges."""
    encoded = tokenizer(texts, truncation=True, max_length=limit)["input_ids"]
    return list(batches(sorted(encoded, key=len), 16, pad_id))


def ort_session(path: Path, threads: int):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])

    def run(ids, mask):
        return session.run(["last_hidden_state"], {"input_ids": ids, "attention_mask": mask})[0]

    return run


def ort_fused(model, directory: Path) -> Path:
    """The exported graph with ONNX Runtime's BERT fusions (attention, LayerNorm, GELU), as Optimum's O2-O4
    exports make it."""
    from onnxruntime.transformers.optimizer import optimize_model

    optimized = optimize_model(
        str(exported_onnx(model, directory)),
        model_type="bert",
        num_heads=model.config.num_attention_heads,
        hidden_size=model.config.hidden_size,
    )
    path = directory / "fused.onnx"
    optimized.save_model_to_file(str(path))
    return path


def ort_int8_dynamic(model, directory: Path, threads: int, per_channel: bool):
    """ONNX Runtime's dynamic quantization, as sentence-transformers' `export_dynamic_quantized_onnx_model`
    (Optimum's avx512_vnni config) makes the published int8 builds: int8 weights, uint8 activations whose range
    is taken per call, on the fused graph."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    path = directory / "int8.onnx"
    quantize_dynamic(
        str(ort_fused(model, directory)),
        str(path),
        per_channel=per_channel,
        reduce_range=False,
        weight_type=QuantType.QInt8,
        # The fused graph's contrib ops (Attention, SkipLayerNormalization) have no ONNX shape inference.
        extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT},
    )
    return ort_session(path, threads)


def activation_matmuls(path: Path) -> list[str]:
    """The graph's MatMul nodes between two activations (attention's scores and context), not a weight."""
    import onnx

    graph = onnx.load(str(path)).graph
    weights = {init.name for init in graph.initializer}
    weights |= {out for node in graph.node if node.op_type == "Constant" for out in node.output}
    return [node.name for node in graph.node if node.op_type == "MatMul" and node.input[1] not in weights]


def ort_int8_static(model, directory: Path, threads: int, calibration: list):
    """ONNX Runtime's static quantization in QDQ form: int8 weights with one scale per output channel,
    uint8 activations with ranges calibrated (min-max) on held-out texts; only the weights' MatMuls."""
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.batches = iter(calibration)

        def get_next(self):
            batch = next(self.batches, None)
            return None if batch is None else {"input_ids": batch[0], "attention_mask": batch[1]}

    prepared = directory / "prepared.onnx"
    # Symbolic shape inference cannot follow the position ids' Min(512, sequence); ONNX's own can.
    quant_pre_process(str(exported_onnx(model, directory)), str(prepared), skip_symbolic_shape=True)
    path = directory / "int8-static.onnx"
    quantize_static(
        str(prepared),
        str(path),
        Reader(),
        quant_format=QuantFormat.QDQ,
        per_channel=True,
        activation_type=QuantType.QUInt8,
        weight_type=QuantType.QInt8,
        op_types_to_quantize=["MatMul"],
        nodes_to_exclude=activation_matmuls(prepared),
        calibrate_method=CalibrationMethod.MinMax,
    )
    return ort_session(path, threads)


# Where int8 costs MiniLM most (measured: error spread over all six layers, largest in the feed-forward
# down-projections, whose inputs are GELU's skewed outputs, and in attention's two activation-by-activation MatMuls).
SENSITIVE = [r".*layer\.\d+/output/dense/MatMul", r".*attention/self/MatMul.*", r".*MatMul_1$"]


def openvino_int8(model, directory: Path, threads: int, calibration: list, keep_float: list[str] = ()):
    """OpenVINO with NNCF's post-training quantization for transformers (SmoothQuant's scale migration, int8
    weights per channel, activations calibrated on held-out texts); the MatMuls `keep_float` matches, and
    everything not quantized, run in bfloat16."""
    import nncf
    import openvino as ov

    core = ov.Core()
    dataset = nncf.Dataset(calibration, lambda batch: {"input_ids": batch[0], "attention_mask": batch[1]})
    quantized = nncf.quantize(
        core.read_model(str(exported_onnx(model, directory))),
        dataset,
        model_type=nncf.ModelType.TRANSFORMER,
        preset=nncf.QuantizationPreset.MIXED,
        subset_size=len(calibration),
        ignored_scope=nncf.IgnoredScope(patterns=list(keep_float), validate=False),
    )
    return openvino_compiled(core, quantized, {"INFERENCE_PRECISION_HINT": "bf16"}, threads)


def openvino_int8_weights(model, directory: Path, threads: int, activation_group: int):
    """OpenVINO with int8 weights (NNCF's weight compression, one scale per output channel) and no calibration:
    activations in bfloat16 (`activation_group` 0), or quantized to int8 on the fly in groups of that many
    channels, each group its own scale (OpenVINO's dynamic quantization)."""
    import nncf
    import openvino as ov

    core = ov.Core()
    compressed = nncf.compress_weights(
        core.read_model(str(exported_onnx(model, directory))), mode=nncf.CompressWeightsMode.INT8_SYM
    )
    properties = {"INFERENCE_PRECISION_HINT": "bf16", "DYNAMIC_QUANTIZATION_GROUP_SIZE": activation_group}
    return openvino_compiled(core, compressed, properties, threads)


def openvino_compiled(core, model, properties: dict, threads: int):
    request = core.compile_model(model, "CPU", {**properties, "INFERENCE_NUM_THREADS": threads}).create_infer_request()

    def run(ids, mask):
        return request.infer({"input_ids": ids, "attention_mask": mask})[0]

    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model-path", default="")
    parser.add_argument("--documents", type=int, default=512)
    parser.add_argument("--seconds", type=float, default=6.0, help="per runtime, batch size and round")
    parser.add_argument("--rounds", type=int, default=1, help="interleaved rounds of the speed measurement")
    parser.add_argument(
        "--keep-float",
        action="append",
        default=[],
        help="a further NNCF static int8 runtime with the MatMuls this regular expression matches in bfloat16 "
        r"(e.g. '.*layer\.0/.*': where the error is)",
    )
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument(
        "--calibration", type=int, default=1024, help="further docstrings, not measured, for static int8's ranges"
    )
    parser.add_argument("--only", action="append", help="run only the runtimes whose names start with this")
    args = parser.parse_args()

    import torch
    from sentence_transformers import SentenceTransformer
    from transformers import AutoConfig, AutoModel, AutoTokenizer

    from app.config import default_model_path

    torch.set_num_threads(args.threads)
    path = args.model_path or str(default_model_path())
    pairs = docstrings(args.documents + args.calibration)
    held_out = [document for _, document in pairs[args.documents :]]
    pairs = pairs[: args.documents]
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

    @functools.cache
    def calibration():  # tokenised once, and only when a static int8 runtime is measured
        return calibration_batches(tokenizer, held_out, limit, pad_id)

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
        "torchscript bfloat16, oneDNN Graph fusion": lambda d: onednn_graph(fresh(), torch.bfloat16, timed[16][0]),
        "onnxruntime float32": lambda d: ort_session(exported_onnx(fresh(), d), args.threads),
        "onnxruntime float32 fused": lambda d: ort_session(ort_fused(fresh(), d), args.threads),
        "onnxruntime int8 dynamic": lambda d: ort_int8_dynamic(fresh(), d, args.threads, per_channel=False),
        "onnxruntime int8 dynamic per-channel": lambda d: ort_int8_dynamic(fresh(), d, args.threads, True),
        "onnxruntime int8 static": lambda d: ort_int8_static(fresh(), d, args.threads, calibration()),
        "openvino float32": lambda d: openvino_(fresh(), d, "f32", args.threads),
        "openvino bfloat16": lambda d: openvino_(fresh(), d, "bf16", args.threads),
        "openvino int8 static (NNCF)": lambda d: openvino_int8(fresh(), d, args.threads, calibration()),
        "openvino int8 static (NNCF), sensitive MatMuls in bfloat16": lambda d: openvino_int8(
            fresh(), d, args.threads, calibration(), SENSITIVE
        ),
        "openvino int8 weights, bfloat16 activations": lambda d: openvino_int8_weights(fresh(), d, args.threads, 0),
        "openvino int8 weights, int8 activations in groups of 32": lambda d: openvino_int8_weights(
            fresh(), d, args.threads, 32
        ),
    }
    # Batches of similar lengths, as the service's batch planner makes them, visited in a fixed shuffled order
    # so that the part a runtime gets through in the time allowed has the corpus's mix of lengths.
    timed = {size: list(batches(sorted(encoded, key=len), size, pad_id)) for size in (16, 1)}
    for size, listed in timed.items():
        random.Random(size).shuffle(listed)

    def keeping(pattern):
        return lambda d: openvino_int8(fresh(), d, args.threads, calibration(), [pattern])

    for pattern in args.keep_float:
        candidates[f"openvino int8 static (NNCF), {pattern} in bfloat16"] = keeping(pattern)
    results, prepared = [], {}
    for name, make in candidates.items():
        if args.only and not any(name.startswith(prefix) for prefix in args.only):
            continue
        row = {"runtime": name}
        try:
            # ONNX Runtime's quantizers leave working files in the current directory.
            with tempfile.TemporaryDirectory() as directory, contextlib.chdir(directory):
                started = time.perf_counter()
                run = make(Path(directory))
                for size in (16, 1):  # each batch size's first call (torch.compile: its graph)
                    run(*timed[size][0])
                row["prepare_s"] = round(time.perf_counter() - started, 1)
            vectors = np.concatenate([mean_pool(run(ids, mask), mask) for ids, mask in batches(encoded, 16, pad_id)])
            row["min_cosine"] = round(float((vectors * reference).sum(1).min()), 5)
            queries = np.concatenate(
                [mean_pool(run(ids, mask), mask) for ids, mask in batches(encoded_queries, 16, pad_id)]
            )
            row["recall_at_10"] = round(recall_at_10(queries, vectors, reference_top), 4)
            row["own_mrr_10"] = round(own_document_mrr(queries, vectors), 4)
            prepared[name] = run
        except Exception as exc:  # noqa: BLE001 - reported, the run goes on
            row["failed"] = f"{type(exc).__name__}: {str(exc)[:200]}"
        results.append(row)
        print(json.dumps(row), file=sys.stderr, flush=True)

    # Speed in interleaved rounds (every runtime once per round), the median of each: this machine's speed
    # drifts between minutes by more than some of the differences measured here.
    speeds: dict[tuple[str, int], list[float]] = {}
    for _ in range(args.rounds):
        for name, run in prepared.items():
            for size, listed in timed.items():
                done, started = 0, time.perf_counter()
                for ids, mask in itertools.cycle(listed):
                    mean_pool(run(ids, mask), mask)
                    done += len(ids)
                    if time.perf_counter() - started > args.seconds:
                        break
                speeds.setdefault((name, size), []).append(done / (time.perf_counter() - started))
    for row in results:
        for size in (16, 1):
            if (row["runtime"], size) in speeds:
                row[f"texts_per_s_b{size}"] = round(statistics.median(speeds[row["runtime"], size]), 1)
    print(json.dumps(results), file=sys.stderr, flush=True)
    peak = matmul_peak_gflops(args.threads)
    per_token = flops_per_token(AutoConfig.from_pretrained(path), tokens / len(texts))
    ceiling = peak * 1e9 / (per_token * tokens / len(texts)) if per_token else None

    base = next((r for r in results if r["runtime"] == "eager float32" and "failed" not in r), None)
    print(
        json.dumps(
            {
                "model": Path(path).name,
                "texts": len(texts),
                "tokens_per_text": round(tokens / len(texts)),
                "threads": args.threads,
                "bf16_matmul_peak_gflops": round(peak, 1),
                "mflop_per_token": round(per_token / 1e6, 2) if per_token else None,
                # What the corpus could reach in bfloat16 if every FLOP ran at the matmul peak.
                "bf16_ceiling_texts_per_s": round(ceiling, 1) if ceiling else None,
            }
        )
    )
    # int8's bar (#30): at least 1.3x the fastest runtime that keeps float weights, on this CPU.
    floats = [r for r in results if "failed" not in r and "int8" not in r["runtime"]]
    best = max(floats, key=lambda r: r["texts_per_s_b16"], default=None)
    print(
        "| runtime | prepare s | min cosine vs ST fp32 | recall@10 vs ST fp32 | own document MRR@10 "
        "| texts/s batch 16 | x eager fp32 | x fastest float | of the bf16 ceiling | texts/s batch 1 | x eager fp32 |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for r in results:
        if "failed" in r:
            print(f"| {r['runtime']} | failed: {r['failed']} | | | | | | | | | |")
            continue

        def ratio(key, against):
            return f"{r[key] / against[key]:.2f}" if against else "-"

        share = f"{r['texts_per_s_b16'] / ceiling:.0%}" if ceiling else "-"

        print(
            f"| {r['runtime']} | {r['prepare_s']} | {r['min_cosine']:.5f} | {r['recall_at_10']:.4f} | "
            f"{r['own_mrr_10']:.4f} | {r['texts_per_s_b16']} | {ratio('texts_per_s_b16', base)} | "
            f"{ratio('texts_per_s_b16', best)} | {share} | "
            f"{r['texts_per_s_b1']} | {ratio('texts_per_s_b1', base)} |"
        )


if __name__ == "__main__":
    main()
