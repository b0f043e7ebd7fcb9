#!/usr/bin/env python3
"""Audio and video through the service against the bare model, in one run, and a worker's memory for the worst
video request the default limits accept. Needs torchvision (the model's video processor).

    python benchmarks/media.py                  # a small random EmbeddingGemma 2, 2 workers, 4 clients
    python benchmarks/media.py --seconds 20

1. The bare model: sentence-transformers' `SentenceTransformer.encode` in this process (all cores), one input a
   call, on inputs already decoded (clips as arrays at 16 kHz; videos as every frame with their metadata, the
   model's processor sampling them), and again decoding each file in the loop as a script does (soundfile; a
   whole-video PyAV decode, as sentence-transformers' own video path decodes): items/s.
2. The service: `gunicorn -c gunicorn.conf.py`, 2 workers, `cache: false`, 4 keep-alive clients: `/embed_audio`
   with one WAV a request, `/embed_video` with one MP4 a request (the service decodes both: the clip with
   libsndfile and soxr, the video's sampled frames only, with PyAV): items/s, and the service's vectors
   against the bare model's (smallest cosine).
3. Memory: the worker's peak resident memory (VmHWM) and private memory before and after the worst accepted
   requests, multipart: 32 clips (MAX_AUDIO_PER_REQUEST) of 120 s at 48 kHz stereo (the model hears 30 s of each,
   resampled to 16 kHz), then 4 videos (MAX_VIDEO_PER_REQUEST) of 32 s at 1920 x 1080 (MAX_VIDEO_PIXELS), 1 frame a
   second: the model samples 32 frames of each (its processor's most), the most frames at the largest size the
   defaults decode.

The model is tests/tiny_models.py's EmbeddingGemma 2 (2 layers, 32 wide, the real processors' sampling: 1 frame a
second up to 32): its forward pass is small, so the service's decoding and overheads weigh more than they would
beside the real model's 740M parameters.
"""

from __future__ import annotations

import argparse
import base64
import http.client
import io
import json
import sys
import tempfile
import time
import uuid
from pathlib import Path

from serving import ROOT, free_port, gunicorn_command, post_json, run_clients, running, service_env

sys.path.insert(0, str(ROOT))

RATE = 16_000


def clip(seconds: float, seed: int):
    import numpy as np

    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * RATE)) / RATE
    return (np.sin(2 * np.pi * rng.uniform(100, 4000) * t) * 0.3 + 0.02 * rng.standard_normal(len(t))).astype(
        np.float32
    )


def wav(samples) -> bytes:
    import soundfile

    buffer = io.BytesIO()
    soundfile.write(buffer, samples, RATE, format="WAV", subtype="PCM_16")
    return buffer.getvalue()


def bare(model_path: Path, clips: list[bytes], videos: list[bytes], seconds: float) -> tuple[dict, dict]:
    """Items/s of SentenceTransformer.encode, one input a call: on inputs decoded beforehand ("bare"), and decoding
    each file in the loop as a script would ("bare + decode": the clip by soundfile, every frame of the video by
    PyAV, as sentence-transformers' own video path decodes the whole video); and its vectors."""
    import soundfile
    from sentence_transformers import SentenceTransformer

    from tests.test_video import whole

    model = SentenceTransformer(str(model_path), device="cpu")

    def heard(data: bytes) -> dict:
        return {"array": soundfile.read(io.BytesIO(data), dtype="float32")[0], "sampling_rate": RATE}

    decoders = {"audio": (heard, clips), "video": (whole, videos)}
    rates, vectors = {}, {}
    for kind, (decode, files) in decoders.items():
        items = [decode(data) for data in files]
        vectors[kind] = [model.encode([item], normalize_embeddings=True)[0] for item in items]
        for label, prepare in (("bare", lambda n: items[n]), ("bare_decode", lambda n: decode(files[n]))):
            done, started = 0, time.perf_counter()
            while time.perf_counter() - started < seconds:
                model.encode([prepare(done % len(items))])
                done += 1
            rates[kind, label] = done / (time.perf_counter() - started)
    return rates, vectors


def service(port: int, clips: list[bytes], videos: list[bytes], seconds: float, clients: int) -> tuple[dict, dict]:
    import numpy as np

    routes = {"audio": ("/embed_audio", "audio", clips), "video": ("/embed_video", "videos", videos)}
    rates, vectors = {}, {}
    for kind, (route, field, items) in routes.items():
        encoded = [base64.b64encode(item).decode() for item in items]
        vectors[kind] = [
            np.array(json.loads(post_json(port, route, {field: [value], "cache": False})[1])["embeddings"][0])
            for value in encoded
        ]
        bodies = [json.dumps({field: [value], "cache": False}).encode() for value in encoded]
        counts = [0] * clients

        def client(number: int) -> None:
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
            deadline = time.perf_counter() + seconds
            while time.perf_counter() < deadline:
                status, text = post_json(port, route, bodies[(number + counts[number]) % len(bodies)], connection)
                assert status == 200, text[:300]
                counts[number] += 1

        elapsed = run_clients(client, clients)
        rates[kind] = sum(counts) / elapsed
    return rates, vectors


def worst_videos() -> list[bytes]:
    """4 videos of 32 s at 1920 x 1080, 1 frame a second: smooth pictures, so each compresses to a few hundred kB."""
    import av
    import numpy as np

    made = []
    for seed in range(4):
        buffer = io.BytesIO()
        output = av.open(buffer, mode="w", format="mp4")
        stream = output.add_stream("libx264", rate=1)
        stream.width, stream.height, stream.pix_fmt = 1920, 1080, "yuv420p"
        stream.options = {"preset": "ultrafast"}
        ramp = np.linspace(0, 255, 1920, dtype=np.float32)[None, :, None]
        for second in range(32):
            picture = np.broadcast_to((ramp + 8 * second + 40 * seed) % 256, (1080, 1920, 3)).astype(np.uint8)
            for packet in stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(picture), format="rgb24")):
                output.mux(packet)
        for packet in stream.encode():
            output.mux(packet)
        output.close()
        made.append(buffer.getvalue())
    return made


def worker_memory(pid: int) -> dict:
    status = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines() if ":" in line)
    rollup = Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()
    private = sum(int(line.split()[1]) for line in rollup if line.startswith(("Private_Clean", "Private_Dirty")))
    return {"peak_mib": int(status["VmHWM"].split()[0]) / 1024, "private_mib": private / 1024}


def worst_clips() -> list[bytes]:
    """32 clips (MAX_AUDIO_PER_REQUEST) of 120 s at 48 kHz, stereo, FLAC of silence (a few kilobytes each, so
    32 fit the body limit); the model hears 30 s of each, resampled to 16 kHz: what a worker holds depends on the
    samples decoded, not on what they sound like."""
    import numpy as np
    import soundfile

    quiet = np.zeros((120 * 48_000, 2), dtype=np.int16)
    buffer = io.BytesIO()
    soundfile.write(buffer, quiet, 48_000, format="FLAC", subtype="PCM_16")
    return [buffer.getvalue()] * 32


def multipart(field: str, files: list[bytes], mime: str) -> tuple[bytes, str]:
    boundary = uuid.uuid4().hex
    parts = [
        f'--{boundary}\r\nContent-Disposition: form-data; name="{field}"; filename="{n}"\r\n'
        f"Content-Type: {mime}\r\n\r\n".encode()
        + data
        + b"\r\n"
        for n, data in enumerate(files)
    ]
    return b"".join(parts) + f"--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


def memory(port: int, server_pid: int) -> dict:
    """A worker's memory before and after the worst accepted audio request, then the worst video one (a
    1-worker server, so the worker that served them is the one read)."""
    import subprocess

    children = subprocess.run(["pgrep", "-P", str(server_pid)], capture_output=True, text=True).stdout.split()
    pid = int(children[0])
    measured = {}
    for kind, route, field, files, mime in (
        ("audio", "/embed_audio", "audio", worst_clips(), "audio/flac"),
        ("video", "/embed_video", "videos", worst_videos(), "video/mp4"),
    ):
        before = worker_memory(pid)
        body, content_type = multipart(field, files, mime)
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
        started = time.perf_counter()
        connection.request("POST", route, body, {"Content-Type": content_type, "Content-Length": str(len(body))})
        response = connection.getresponse()
        text = response.read().decode()
        assert response.status == 200, text[:500]
        measured[kind] = {
            "request_mb": len(body) / 1e6,
            "seconds": time.perf_counter() - started,
            "before": before,
            "after": worker_memory(pid),
        }
    return measured


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--clients", type=int, default=4)
    args = parser.parse_args()

    import numpy as np

    from tests.tiny_models import tiny_embedding_gemma2
    from tests.videos import encode_video

    scratch = Path(tempfile.mkdtemp(prefix="bench-media-"))
    model_path = tiny_embedding_gemma2(scratch / "gemma", max_frames=32)
    clips = [clip(seconds, seed) for seed, seconds in enumerate((2.0, 5.0, 9.0))]
    videos = [encode_video(seconds=s, fps=24, size=(320, 240), seed=n) for n, s in enumerate((4.0, 8.0, 12.0))]

    print("bare model (in this process) ...", file=sys.stderr, flush=True)
    bare_rates, bare_vectors = bare(model_path, [wav(c) for c in clips], videos, args.seconds)
    rows = {}
    port = free_port()
    env = service_env(str(model_path), port, "", WORKERS="2", DTYPE="float32", RUNTIME="eager")
    with running("service", gunicorn_command(), env, f"http://127.0.0.1:{port}/health", 300):
        rates, vectors = service(port, [wav(c) for c in clips], videos, args.seconds, args.clients)
        for kind in ("audio", "video"):
            got, expected = np.array(vectors[kind]), np.array(bare_vectors[kind])
            rows[kind] = {
                "bare": bare_rates[kind, "bare"],
                "bare_decode": bare_rates[kind, "bare_decode"],
                "service": rates[kind],
                "min_cosine": float((got * expected).sum(1).min()),
            }
    port = free_port()
    env = service_env(str(model_path), port, "", WORKERS="1", DTYPE="float32", RUNTIME="eager")
    with running("memory", gunicorn_command(), env, f"http://127.0.0.1:{port}/health", 300) as proc:
        measured = memory(port, proc.pid)

    columns = ("input", "bare model /s", "bare + decode /s", "service /s", "service / bare", "service / bare + decode")
    print("| " + " | ".join(columns) + " | min cosine |")
    print("|---|---|---|---|---|---|---|")
    for kind, row in rows.items():
        print(
            f"| {kind} | {row['bare']:.1f} | {row['bare_decode']:.1f} | {row['service']:.1f} | "
            f"{row['service'] / row['bare']:.2f}x | {row['service'] / row['bare_decode']:.2f}x | "
            f"{row['min_cosine']:.6f} |"
        )
    what = {"audio": "32 clips of 120 s at 48 kHz stereo", "video": "4 x 32 frames of 1920 x 1080"}
    for kind, row in measured.items():
        before, after = row["before"], row["after"]
        print(
            f"worst accepted {kind} request ({row['request_mb']:.1f} MB, {what[kind]}, {row['seconds']:.1f} s): "
            f"worker peak RSS {before['peak_mib']:.0f} -> {after['peak_mib']:.0f} MiB, "
            f"private {before['private_mib']:.0f} -> {after['private_mib']:.0f} MiB"
        )
    print(json.dumps({"rows": rows, "memory": measured}))


if __name__ == "__main__":
    main()
