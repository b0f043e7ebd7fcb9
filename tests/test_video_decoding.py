"""Video decoding (app/media/video.py, PyAV): the frames a model samples equal those of a decode of the whole
video (H.264 in MP4 with B-frames and long key-frame intervals, VP9 in WebM), found by seeking or decoding
forward; and untrusted videos (a header declaring ten hours, more frames or seconds than the caps, frames larger
than MAX_VIDEO_PIXELS, a truncated or corrupt stream, a container that is not on the allow-list, too many
bytes) are refused naming the limit, most before a frame is decoded. No model here: the sampling is a function
of the stream's info, as a model's video processor is."""

from __future__ import annotations

import numpy as np
import pytest

from app.config import Settings
from app.errors import InvalidRequest, PayloadTooLarge
from app.media.video import VideoLimits, container_of

from .videos import declaring_hours, decode_all, encode_video


def every(step: int):
    return lambda info: list(range(0, info.total_frames, step))


@pytest.mark.parametrize(
    "container, codec, gop",
    [("mp4", "libx264", 12), ("mp4", "libx264", 250), ("webm", "libvpx-vp9", 30), ("mp4", "mpeg4", 5)],
)
def test_sampled_frames_equal_a_whole_decode(container, codec, gop):
    data = encode_video(seconds=6.0, fps=10, container=container, codec=codec, gop=gop)
    everything, fps = decode_all(data)
    for sample in (every(10), every(1), lambda info: [0, info.total_frames - 1], lambda info: [3, 3, 47]):
        video = VideoLimits().decode(data, "videos[0]", sample)
        assert video.info.total_frames == len(everything) == 60 and video.info.fps == fps == 10
        assert video.info.duration == pytest.approx(6.0) and (video.info.width, video.info.height) == (64, 48)
        np.testing.assert_array_equal(video.frames, everything[list(video.indices)].transpose(0, 3, 1, 2))


def test_the_sampling_sees_the_streams_info():
    seen = []
    VideoLimits().decode(encode_video(seconds=2.0, fps=25), "v", lambda info: seen.append(info) or [0])
    assert [(info.total_frames, info.fps, info.duration) for info in seen] == [(50, 25.0, 2.0)]


def test_containers_by_signature():
    assert container_of(encode_video(seconds=0.5)) == ("mov", "MP4")
    assert container_of(encode_video(seconds=0.5, container="webm", codec="libvpx-vp9")) == ("matroska", "WebM")
    assert container_of(b"#EXTM3U\n#EXT-X-VERSION:3\nhttp://127.0.0.1/x.ts\n") is None
    assert container_of(encode_video(seconds=0.5, container="avi", codec="mpeg4")) is None


DEFAULTS = VideoLimits()
TENTHS = every(10)


def refusal(data: bytes, limits: VideoLimits = DEFAULTS, sample=TENTHS):
    with pytest.raises((InvalidRequest, PayloadTooLarge)) as caught:
        limits.decode(data, "videos[1]", sample)
    assert caught.value.param == "videos[1]"
    return caught.value


SHORT = VideoLimits(max_seconds=5)


def test_hostile_videos_are_refused_naming_the_limit():
    declared = refusal(declaring_hours(), SHORT)
    assert declared.code == "video_too_long" and "declared as 36000.0 s" in declared.message
    assert "MAX_VIDEO_SECONDS" in refusal(encode_video(seconds=7.0, fps=5), SHORT).message
    # 1,500 frames in 1.5 s: more than 5 s at 240 frames a second are ever read
    crowded = refusal(encode_video(seconds=1.5, fps=1000, size=(16, 16), gop=500), SHORT)
    assert crowded.code == "video_too_long" and "1200 are read" in crowded.message
    large = refusal(encode_video(seconds=0.5), VideoLimits(max_pixels=64 * 47))
    assert large.code == "video_too_large" and "64x48" in large.message and "MAX_VIDEO_PIXELS" in large.message
    data = encode_video(seconds=3.0)
    assert refusal(data[: len(data) // 3]).code == "invalid_video"
    assert refusal(data[:40] + bytes(range(256)) * 20).code == "invalid_video"
    assert refusal(b"\x1a\x45\xdf\xa3" + b"\x00" * 300).code == "invalid_video"
    assert refusal(encode_video(seconds=0.5, container="avi", codec="mpeg4")).code == "unsupported_video_format"
    assert refusal(b"").code == "invalid_video"
    assert "MAX_VIDEO_BYTES" in refusal(data, VideoLimits(max_bytes=len(data) - 1)).message
    many = refusal(data, VideoLimits(max_frames=4), every(1))
    assert many.code == "video_too_large" and "MAX_VIDEO_FRAMES" in many.message


def test_settings_declare_the_video_limits():
    settings = Settings.from_env({"MAX_VIDEO_SECONDS": "30", "MAX_VIDEO_PIXELS": "1000"})
    limits = VideoLimits.from_settings(settings)
    assert (limits.max_seconds, limits.max_pixels, limits.max_frames, limits.max_bytes) == (30.0, 1000, 64, 16 << 20)
