#!/usr/bin/env python3
"""Visual-document (ColQwen2) page throughput of the service against sentence-transformers' MultiVectorEncoder
in-process, in one run, with the bytes each answer format takes.

    python benchmarks/visual_pages.py                      # a random ColQwen2, float32
    python benchmarks/visual_pages.py --dtype float32 --dtype bfloat16

1. The limit: `MultiVectorEncoder.encode_document` in this process on the page images (all cores, batches
   of 8), in pages/s.
2. The service: `gunicorn -c gunicorn.conf.py` with its defaults (one worker per core), `POST /embed_image`
   with `output_type: "colbert"` and `cache: false`, from 4 keep-alive clients at once: PNG pages as base64 in
   JSON (`--pages` a request), and the same pages as one multipart PDF a request (rendered by the service
   at `PDF_DPI=72`, so the pages are the images of (1)); pages/s each. Its vectors compared with the
   in-process ones (the smallest cosine of any patch vector, and whether every page has as many).
3. One page's answer in each `encoding_format` x `colbert_precision`, in bytes.

The model is a ColQwen2 with random weights: a Qwen2-VL of 6 layers 512 wide, the real 14-pixel patches merged
2 x 2 and pages up to 448 x 448 pixels (256 merged patches: a quarter of ColPali's 1,024), with a tokenizer
trained here. Pages are a PDF of text and shapes made with fpdf2, rendered at 72 dpi (306 x 396 points).
"""

from __future__ import annotations

import argparse
import base64
import http.client
import io
import json
import os
import sys
import tempfile
import uuid
from pathlib import Path

from multi_vector import compare
from serving import ROOT, figure, free_port, gunicorn_command, post_json, run_clients, running, service_env

sys.path.insert(0, str(ROOT))


def build_model(directory: Path) -> Path:
    from tests.tiny_models import tiny_colqwen2

    return tiny_colqwen2(directory, width=512, layers=6, patch=14, max_pixels=448 * 448)


def make_pdf(pages: int) -> bytes:
    import fpdf

    document = fpdf.FPDF(unit="pt", format=(306, 396))
    document.set_font("helvetica", size=11)
    for number in range(1, pages + 1):
        document.add_page()
        document.multi_cell(w=260, text=f"Page {number}. " + "Quarterly revenue grew in every region. " * 12)
        document.set_fill_color(37 * number % 255, 120, 200)
        document.rect(40, 250, 60 + 20 * (number % 7), 90, style="F")
    return bytes(document.output())


def rendered(pdf: bytes) -> list:
    from app.media.pdf import PdfPages

    pages = PdfPages(pdf, max_pages=1000, dpi=72, max_page_pixels=10**8, param="pdf")
    try:
        return [pages.render(index) for index in range(len(pages))]
    finally:
        pages.close()


def png(image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def in_process(model_path: Path, pages: list, dtype: str, rounds: int) -> dict:
    import time

    import torch
    from sentence_transformers import MultiVectorEncoder

    torch.set_num_threads(os.cpu_count() or 1)
    encoder = MultiVectorEncoder(str(model_path), device="cpu", model_kwargs={"dtype": getattr(torch, dtype)})
    encoder.encode_document(pages[:2], batch_size=8)  # warm-up
    started = time.perf_counter()
    for _ in range(rounds):
        vectors = encoder.encode_document(pages, batch_size=8, convert_to_numpy=True)
    seconds = time.perf_counter() - started
    return {"pages_per_s": rounds * len(pages) / seconds, "vectors": [v.astype("float32") for v in vectors]}


def multipart(pdf: bytes) -> tuple[bytes, str]:
    boundary = uuid.uuid4().hex
    parts = [
        f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode()
        for name, value in (("output_type", "colbert"), ("cache", "false"), ("encoding_format", "base64"))
    ]
    parts.append(
        f'--{boundary}\r\nContent-Disposition: form-data; name="images"; filename="doc.pdf"\r\n'
        "Content-Type: application/pdf\r\n\r\n".encode()
        + pdf
        + b"\r\n"
    )
    return b"".join(parts) + f"--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


def over_http(model_path: Path, pages: list, pdf: bytes, dtype: str, requests: int, concurrency: int) -> dict:
    import numpy as np

    port = free_port()
    env = service_env(str(model_path), port, "", DTYPE=dtype, REQUEST_TIMEOUT="300", PDF_DPI="72")
    images = [base64.b64encode(png(page)).decode() for page in pages]
    body = json.dumps({"images": images, "output_type": "colbert", "cache": False}).encode()
    form, content_type = multipart(pdf)
    sizes = {}
    with running("service", gunicorn_command(), env, f"http://127.0.0.1:{port}/ready", timeout=900):
        status, answer = post_json(port, "/embed_image", body)
        if status != 200:
            raise SystemExit(f"the service answered {status}: {answer[:300]}")
        vectors = [np.asarray(matrix, dtype=np.float32) for matrix in json.loads(answer)["colbert"]]
        for encoding in ("float", "base64"):
            for precision in ("float32", "float16", "binary"):
                one = {"images": images[:1], "output_type": "colbert", "encoding_format": encoding}
                status, answer = post_json(port, "/embed_image", {**one, "colbert_precision": precision})
                sizes[f"{encoding} {precision}"] = len(answer.encode())
        per_client = max(1, requests // concurrency)
        rates = {}
        for name, payload, headers in (
            ("png_json", body, {"Content-Type": "application/json"}),
            ("pdf_multipart", form, {"Content-Type": content_type}),
        ):
            failures: list[str] = []

            def client(_number, payload=payload, headers=headers, failures=failures):
                connection = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
                for _ in range(per_client):
                    connection.request("POST", "/embed_image", body=payload, headers=headers)
                    response = connection.getresponse()
                    text = response.read()
                    if response.status != 200:
                        failures.append(text[:200].decode(errors="replace"))
                connection.close()

            seconds = run_clients(client, concurrency)
            if failures:
                raise SystemExit(f"{len(failures)} {name} requests failed: {failures[0]}")
            rates[name] = concurrency * per_client * len(pages) / seconds
    return {"rates": rates, "vectors": vectors, "sizes": sizes}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model-path", type=Path, help="a *ForRetrieval directory (default: a random ColQwen2)")
    parser.add_argument("--dtype", action="append", choices=["float32", "bfloat16"], help="repeatable; default float32")
    parser.add_argument("--pages", type=int, default=4, help="pages per request")
    parser.add_argument("--requests", type=int, default=8, help="requests per measurement")
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    pdf = make_pdf(args.pages)
    pages = rendered(pdf)
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-pages-") as scratch:
        model_path = args.model_path or build_model(Path(scratch) / "colqwen2")
        for dtype in args.dtype or ["float32"]:
            print(f"{dtype}: in-process MultiVectorEncoder", file=sys.stderr, flush=True)
            bare = in_process(model_path, pages, dtype, max(2, args.requests // 2))
            print(f"{dtype}: the service, c={args.concurrency}", file=sys.stderr, flush=True)
            served = over_http(model_path, pages, pdf, dtype, args.requests, args.concurrency)
            cosine, same_counts = compare(bare["vectors"], served["vectors"])
            rows.append(
                {
                    "dtype": dtype,
                    "in_process_pages_per_s": bare["pages_per_s"],
                    **{f"service_{name}_pages_per_s": rate for name, rate in served["rates"].items()},
                    "min_cosine": cosine,
                    "same_counts": same_counts,
                    "vectors_per_page": sum(len(m) for m in served["vectors"]) / len(pages),
                    "answer_bytes_per_page": served["sizes"],
                }
            )
    if args.json:
        print(json.dumps(rows, indent=2))
        return
    print(f"{args.pages} pages per request, {os.cpu_count()} cores; service at c={args.concurrency}\n")
    print(
        "| dtype | MultiVectorEncoder pages/s | service, PNG in JSON | x in-process | service, PDF upload "
        "| x in-process | vectors per page | min patch cosine | same counts |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for row in rows:
        bare = row["in_process_pages_per_s"]
        png_rate, pdf_rate = row["service_png_json_pages_per_s"], row["service_pdf_multipart_pages_per_s"]
        print(
            f"| {row['dtype']} | {bare:.2f} | {png_rate:.2f} | {png_rate / bare:.2f} | {pdf_rate:.2f} | "
            f"{pdf_rate / bare:.2f} | {row['vectors_per_page']:.0f} | {figure(row, 'min_cosine', '.5f')} | "
            f"{'yes' if row['same_counts'] else 'no'} |"
        )
    print("\nOne page's answer, bytes:\n")
    print("| encoding_format | float32 | float16 | binary |")
    print("|---|---|---|---|")
    sizes = rows[0]["answer_bytes_per_page"]
    for encoding in ("float", "base64"):
        print(
            f"| {encoding} | "
            + " | ".join(f"{sizes[f'{encoding} {p}']:,}" for p in ("float32", "float16", "binary"))
            + " |"
        )


if __name__ == "__main__":
    main()
