"""Untrusted video inputs -> the frames a model samples, as RGB arrays, refusing what should not be decoded.

Read with PyAV (FFmpeg's demuxers and decoders in a self-contained wheel: no system FFmpeg, and no coupling to
the torch version, which torchcodec has). Every input passes, in this order:

1. the byte cap (`MAX_VIDEO_BYTES`), on the encoded size first;
2. the container, by its signature, against the allow-list (MP4/MOV, WebM/Matroska), and opened with that one
   demuxer only: FFmpeg's playlist and concat demuxers (which open other files and URLs) are never reached, and
   MP4's external data references stay off (FFmpeg's default);
3. what the container declares, before any frame is decoded: frame size (`MAX_VIDEO_PIXELS`), duration
   (`MAX_VIDEO_SECONDS`: a few hundred bytes can declare ten hours) and frame count;
4. the packet index, read without decoding (cheap: no pixels), which is what the frames are counted and timed
   from: a container holding more frames or time than it declares stops at the caps, whatever its header said;
5. the model's own frame sampling (its video processor's, e.g. 1 frame a second up to 32) on that index; only
   those frames are decoded, seeking to the key frame before each one when it lies far ahead, so a ten-minute
   video costs its sampled frames' key frame intervals, not ten minutes of decoding; the frames decoded in all
   are capped too (a stream of key-frame-less packets cannot make seeking decode forever);
6. each decoded frame's size again (a stream may change size mid-way).

A truncated or corrupt stream is the caller's 400, naming the input (`param`).
"""

from __future__ import annotations

import bisect
import io
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from ..config import Settings
from ..errors import InvalidRequest, PayloadTooLarge

# The highest frame rate a video is counted against: `MAX_VIDEO_SECONDS` at this rate bounds the packet index
MAX_FRAME_RATE = 240
# Frames a decoder may hold back before giving them out in presentation order (B-frame reordering)
REORDER_SLACK = 16


@dataclass(frozen=True)
class VideoInfo:
    """What a model's frame sampling needs: the stream's frames, rate and length, as counted from its packets."""

    total_frames: int
    fps: float
    duration: float
    width: int
    height: int


@dataclass(frozen=True)
class Video:
    """A video's sampled frames, (frames, 3, height, width) uint8 RGB (channels first, as video processors take
    them: no transposed copy of them is made), and which frames of the stream they are."""

    frames: np.ndarray
    indices: tuple[int, ...]
    info: VideoInfo


@dataclass(frozen=True)
class VideoLimits:
    # The defaults are the settings' own, declared once there.
    max_bytes: int = Settings.max_video_bytes
    max_seconds: float = Settings.max_video_seconds
    max_pixels: int = Settings.max_video_pixels
    max_frames: int = Settings.max_video_frames

    @classmethod
    def from_settings(cls, settings) -> VideoLimits:
        return cls(
            max_bytes=settings.max_video_bytes,
            max_seconds=settings.max_video_seconds,
            max_pixels=settings.max_video_pixels,
            max_frames=settings.max_video_frames,
        )

    def decode(self, data: bytes, param: str, sample: Callable[[VideoInfo], Sequence[int]]) -> Video:
        """The engine's VideoDecoder: the frames `sample` picks from the stream, decoded off the event loop."""
        return decode_video(data, self, param, sample)


# Container signatures -> (the FFmpeg demuxer opened for it, what messages call it)
def container_of(data: bytes) -> tuple[str, str] | None:
    if data[4:8] == b"ftyp" or data[4:8] in (b"moov", b"mdat", b"free", b"wide"):
        return "mov", "MP4"
    if data[:4] == b"\x1a\x45\xdf\xa3":
        return "matroska", "WebM"
    return None


def decode_video(data: bytes, limits: VideoLimits, param: str, sample: Callable[[VideoInfo], Sequence[int]]) -> Video:
    import av

    if len(data) > limits.max_bytes:
        raise video_too_large(param, limits.max_bytes)
    if not data:
        raise InvalidRequest(f"{param} is empty", param=param, code="invalid_video")
    container_kind = container_of(data)
    if container_kind is None:
        raise InvalidRequest(
            f"{param} is not a video in an accepted container (MP4, MOV, WebM, Matroska)",
            param=param,
            code="unsupported_video_format",
        )
    demuxer, name = container_kind
    try:
        container = av.open(io.BytesIO(data), mode="r", format=demuxer, metadata_errors="ignore")
    except (av.FFmpegError, ValueError, OSError, EOFError) as exc:
        raise corrupt(param, name, exc) from None
    try:
        return _decode(container, limits, param, name, sample)
    except (av.FFmpegError, OSError, EOFError) as exc:
        raise corrupt(param, name, exc) from None
    finally:
        container.close()


def _decode(container, limits: VideoLimits, param: str, name: str, sample) -> Video:
    if not container.streams.video:
        raise InvalidRequest(f"{param} holds no video stream", param=param, code="invalid_video")
    stream = container.streams.video[0]
    _check_declared(container, stream, limits, param)
    times, keys = _packet_times(container, stream, limits, param)
    info = _info(stream, times)
    indices = sorted(int(index) for index in sample(info))
    if not indices or min(indices) < 0 or max(indices) >= info.total_frames:
        raise InvalidRequest(f"{param}: the model sampled no frames of it", param=param, code="invalid_video")
    if len(indices) > limits.max_frames:
        raise PayloadTooLarge(
            f"{param}: the model samples {len(indices)} frames of it; at most {limits.max_frames} are decoded a "
            "video (MAX_VIDEO_FRAMES)",
            param=param,
            code="video_too_large",
        )
    wanted = [times[index] for index in indices]
    frames = _decode_frames(container, stream, wanted, (times, keys), limits, param, name)
    return Video(frames=frames, indices=tuple(indices), info=info)


def _check_declared(container, stream, limits: VideoLimits, param: str) -> None:
    context = stream.codec_context
    if context.width * context.height > limits.max_pixels:
        raise frame_too_large(param, context.width, context.height, limits.max_pixels)
    seconds = []
    if container.duration:
        seconds.append(container.duration / 1_000_000)
    if stream.duration and stream.time_base:
        seconds.append(float(stream.duration * stream.time_base))
    if seconds and max(seconds) > limits.max_seconds:
        raise too_long(param, max(seconds), limits.max_seconds, "declared as ")
    if stream.frames and stream.frames > limits.max_seconds * MAX_FRAME_RATE:
        raise too_many_frames(param, stream.frames, limits, "declares ")


def _packet_times(container, stream, limits: VideoLimits, param: str) -> tuple[list[int], list[int]]:
    """Each frame's presentation time and each key frame's, in the stream's time base, in order: from the packets
    alone, without decoding."""
    cap = int(limits.max_seconds * MAX_FRAME_RATE)
    limit = None if not stream.time_base else int(limits.max_seconds / stream.time_base)
    times, keys = [], []
    for packet in container.demux(stream):
        if packet.size == 0:
            continue  # the demuxer's end-of-stream marker
        time = packet.pts if packet.pts is not None else packet.dts
        if time is None:
            continue
        times.append(time)
        if packet.is_keyframe:
            keys.append(time)
        if len(times) > cap:
            raise too_many_frames(param, len(times), limits, "holds at least ")
        if limit is not None and time - times[0] > limit:
            raise too_long(param, float((time - times[0]) * stream.time_base), limits.max_seconds, "at least ")
    if not times:
        raise InvalidRequest(f"{param} holds no video frames", param=param, code="invalid_video")
    return sorted(times), sorted(keys)


def _info(stream, times: list[int]) -> VideoInfo:
    rate = stream.average_rate or stream.guessed_rate
    if rate:
        fps = float(rate)
    elif len(times) > 1 and stream.time_base:
        fps = (len(times) - 1) / float((times[-1] - times[0]) * stream.time_base)
    else:
        fps = 1.0
    context = stream.codec_context
    return VideoInfo(
        total_frames=len(times), fps=fps, duration=len(times) / fps, width=context.width, height=context.height
    )


def _decode_frames(container, stream, wanted: list[int], index: tuple, limits, param: str, name: str) -> np.ndarray:
    """The frames at the `wanted` presentation times, in order, channels first, written into one array as they
    are decoded (no list of frames beside a stacked copy: one video's frames are the largest thing a request
    holds). Decoding goes forward; it seeks (to the key frame at or before the next wanted frame) only past a key
    frame, so no frame is decoded twice and the frames decoded in all are at most the frames the stream holds."""
    times, keys = index
    budget = bisect.bisect_right(times, wanted[-1]) + REORDER_SLACK
    frames, decoded, taken = None, 0, -1
    decoder, current, last = None, None, None
    for slot, target in enumerate(wanted):
        if last is not None and target <= last:
            frames[slot] = frames[taken]  # the same frame sampled twice
            continue
        if decoder is None or current is None or _key_between(keys, current, target):
            container.seek(target, stream=stream, backward=True, any_frame=False)
            decoder = container.decode(stream)
        for frame in decoder:
            decoded += 1
            if decoded > budget:
                raise InvalidRequest(
                    f"{param}: reaching its sampled frames decodes more frames than it holds; a malformed {name}",
                    param=param,
                    code="invalid_video",
                )
            time = frame.pts if frame.pts is not None else frame.dts
            if time is None:
                continue
            current = time
            if time >= target:
                if frame.width * frame.height > limits.max_pixels:
                    raise frame_too_large(param, frame.width, frame.height, limits.max_pixels)
                if frames is None:
                    frames = np.empty((len(wanted), 3, frame.height, frame.width), dtype=np.uint8)
                elif frames.shape[2:] != (frame.height, frame.width):
                    raise InvalidRequest(
                        f"{param} changes frame size mid-stream ({frames.shape[3]}x{frames.shape[2]}, then "
                        f"{frame.width}x{frame.height})",
                        param=param,
                        code="invalid_video",
                    )
                frames[slot] = frame.to_ndarray(format="rgb24").transpose(2, 0, 1)
                last, taken = time, slot
                break
        else:
            raise InvalidRequest(
                f"{param} is a truncated {name}: its frames end before those its packets index",
                param=param,
                code="invalid_video",
            )
    return frames


def _key_between(keys: list[int], current: int, target: int) -> bool:
    """Whether a key frame lies after the frame last decoded and at or before the next one wanted: seeking to it
    skips frames instead of decoding them."""
    index = bisect.bisect_right(keys, current)
    return index < len(keys) and keys[index] <= target


def corrupt(param: str, name: str, exc: Exception) -> InvalidRequest:
    return InvalidRequest(f"{param} is a corrupt or truncated {name}: {exc}", param=param, code="invalid_video")


def too_long(param: str, seconds: float, limit: float, qualifier: str = "") -> PayloadTooLarge:
    return PayloadTooLarge(
        f"{param} is {qualifier}{seconds:.1f} s of video; at most {limit:g} s are allowed (MAX_VIDEO_SECONDS)",
        param=param,
        code="video_too_long",
    )


def too_many_frames(param: str, frames: int, limits: VideoLimits, qualifier: str) -> PayloadTooLarge:
    return PayloadTooLarge(
        f"{param} {qualifier}{frames} frames; at most {int(limits.max_seconds * MAX_FRAME_RATE)} are read "
        f"({MAX_FRAME_RATE} a second for MAX_VIDEO_SECONDS)",
        param=param,
        code="video_too_long",
    )


def frame_too_large(param: str, width: int, height: int, max_pixels: int) -> PayloadTooLarge:
    return PayloadTooLarge(
        f"{param} has {width}x{height} frames; at most {max_pixels} pixels a frame are allowed (MAX_VIDEO_PIXELS)",
        param=param,
        code="video_too_large",
    )


def video_too_large(param: str, max_bytes: int) -> PayloadTooLarge:
    return PayloadTooLarge(
        f"{param} is larger than {max_bytes} bytes (MAX_VIDEO_BYTES)", param=param, code="video_too_large"
    )
