"""Videos made here for the tests (PyAV's encoders: H.264 in MP4, VP9 in WebM), hostile ones among them, and
whether this environment can serve video models (their processors need torchvision)."""

from __future__ import annotations

import io
import struct

import numpy as np
import pytest


def torchvision_works() -> bool:
    try:
        import torchvision  # noqa: F401
    except Exception:  # noqa: BLE001 - PyPI's torchvision beside another torch build fails with a RuntimeError
        return False
    return True


# Tests of video models: their processors (EmbeddingGemma 2's video processor) need torchvision, which imports
# only beside the torch build it was made for; CI runs them in an environment that has it (`-m video`).
needs_torchvision = [
    pytest.mark.video,
    pytest.mark.skipif(not torchvision_works(), reason="video processors need torchvision (pip install -e '.[video]')"),
]


def frames(count: int, size: tuple[int, int] = (64, 48), seed: int = 0) -> np.ndarray:
    """`count` frames of a textured picture sliding sideways, with a colour that drifts: neighbours differ."""
    rng = np.random.default_rng(seed)
    width, height = size
    base = rng.integers(0, 255, (height, width, 3), dtype=np.uint8)
    out = np.empty((count, height, width, 3), dtype=np.uint8)
    for index in range(count):
        shifted = np.roll(base, 3 * index, axis=1).astype(np.int16)
        shifted[..., index % 3] += 40
        out[index] = np.clip(shifted, 0, 255).astype(np.uint8)
    return out


def encode_video(
    seconds: float = 3.0,
    fps: int = 10,
    size: tuple[int, int] = (64, 48),
    container: str = "mp4",
    codec: str = "libx264",
    seed: int = 0,
    gop: int = 12,
    b_frames: int = 2,
) -> bytes:
    """A video of `seconds` at `fps`, a key frame every `gop` frames (B-frames in H.264: decode order differs from
    presentation order)."""
    import av

    buffer = io.BytesIO()
    output = av.open(buffer, mode="w", format=container)
    stream = output.add_stream(codec, rate=fps)
    stream.width, stream.height = size
    stream.pix_fmt = "yuv420p"
    stream.codec_context.gop_size = gop
    if codec == "libx264":
        stream.codec_context.max_b_frames = b_frames
        stream.options = {"crf": "18"}
    for picture in frames(int(round(seconds * fps)), size, seed):
        for packet in stream.encode(av.VideoFrame.from_ndarray(picture, format="rgb24")):
            output.mux(packet)
    for packet in stream.encode():
        output.mux(packet)
    output.close()
    return buffer.getvalue()


def decode_all(data: bytes) -> tuple[np.ndarray, float]:
    """Every frame, decoded start to end (what a reference that reads the whole video sees), and the frame rate."""
    import av

    with av.open(io.BytesIO(data)) as container:
        stream = container.streams.video[0]
        pictures = [frame.to_ndarray(format="rgb24") for frame in container.decode(stream)]
        return np.stack(pictures), float(stream.average_rate)


def declaring_hours(seconds: float = 1.0, hours: int = 10) -> bytes:
    """A WebM of `seconds` whose segment declares `hours` (its Duration element, a float of milliseconds,
    rewritten): a few kilobytes that claim ten hours."""
    data = encode_video(seconds=seconds, container="webm", codec="libvpx-vp9")
    at = data.index(b"\x44\x89") + 2
    width = data[at] & 0x7F
    out = bytearray(data)
    out[at + 1 : at + 1 + width] = struct.pack(">d" if width == 8 else ">f", hours * 3600 * 1000.0)
    return bytes(out)
