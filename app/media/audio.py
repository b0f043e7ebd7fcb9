"""Untrusted audio inputs -> mono float32 waveforms at the model's sampling rate, refusing what should not be
decoded.

Decoded by libsndfile (through `soundfile`: WAV, FLAC, OGG Vorbis and Opus, MP3, AIFF; a self-contained wheel,
no ffmpeg) and resampled by libsoxr (through `soxr`, its "very high quality" setting), the two libraries the
Python audio stack (librosa, torchaudio's CPU path, datasets) is built on. Every input passes, in this order:

1. the byte cap (`MAX_AUDIO_BYTES`), on the encoded size first;
2. the container and codec, read from the header, against the allow-list;
3. what the header declares, before any sample is decoded: channels (`MAX_AUDIO_CHANNELS`), sampling rate
   (`MAX_AUDIO_SAMPLE_RATE`) and duration (`MAX_AUDIO_SECONDS`): a 200-byte WAV can declare ten hours (its
   data chunk's size, read here: libsndfile itself trusts the file's length instead);
4. the decode itself, block by block with a running count, so a stream that holds more than its header says
   (or declares nothing, as Ogg and MP3 may not) stops at the duration cap; each block is averaged to mono
   and resampled to the model's rate as it is read (soxr's streaming resampler, the same filter as its
   one-shot call), so memory holds one clip at the model's rate, whatever the file claims; a truncated or
   corrupt stream is the caller's 400;
5. reading stops at the model's window where it has one (CLAP hears its first 10 s): what it would not hear
   is never decoded.

Errors name the input (`param`), so one bad clip never fails the other inputs of a request.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np

from ..config import Settings
from ..errors import InvalidRequest, PayloadTooLarge

# libsndfile's container names -> what the allow-list and the messages call them
FORMATS = {"WAV": "WAV", "WAVEX": "WAV", "RF64": "WAV", "FLAC": "FLAC", "OGG": "OGG", "MP3": "MP3", "AIFF": "AIFF"}
_BLOCK = 64 * 1024  # frames decoded at a time


@dataclass(frozen=True)
class AudioLimits:
    # The defaults are the settings' own, declared once there.
    max_bytes: int = Settings.max_audio_bytes
    max_seconds: float = Settings.max_audio_seconds
    max_channels: int = Settings.max_audio_channels
    max_sample_rate: int = Settings.max_audio_sample_rate

    @classmethod
    def from_settings(cls, settings) -> AudioLimits:
        return cls(
            max_bytes=settings.max_audio_bytes,
            max_seconds=settings.max_audio_seconds,
            max_channels=settings.max_audio_channels,
            max_sample_rate=settings.max_audio_sample_rate,
        )

    def decode(self, data: bytes, param: str, rate: int, window: float | None = None) -> np.ndarray:
        """The engine's AudioDecoder: a clip decoded off the event loop, under these limits, mono at `rate`, its
        first `window` seconds at most."""
        return decode_audio(data, self, param, rate, window)


def decode_audio(data: bytes, limits: AudioLimits, param: str, rate: int, window: float | None = None) -> np.ndarray:
    import soundfile

    if len(data) > limits.max_bytes:
        raise audio_too_large(param, limits.max_bytes)
    if not data:
        raise InvalidRequest(f"{param} is empty", param=param, code="invalid_audio")
    declared = wav_declared_seconds(data)
    if declared is not None and declared > limits.max_seconds:
        raise too_long(param, declared, limits.max_seconds, "declared as ")
    try:
        handle = soundfile.SoundFile(io.BytesIO(data))
    except (soundfile.LibsndfileError, RuntimeError, TypeError, ValueError) as exc:
        raise InvalidRequest(
            f"{param} is not audio in a known format (WAV, FLAC, OGG Vorbis or Opus, MP3, AIFF): {exc}",
            param=param,
            code="invalid_audio",
        ) from None
    with handle:
        kind = FORMATS.get(handle.format)
        if kind is None:
            raise InvalidRequest(
                f"{param} is {handle.format} audio; allowed: {', '.join(sorted(set(FORMATS.values())))}",
                param=param,
                code="unsupported_audio_format",
            )
        _check_header(handle, limits, param)
        samples = _read_bounded(handle, limits, param, rate, window)
    if not len(samples):
        raise InvalidRequest(f"{param} holds no audio samples", param=param, code="invalid_audio")
    return samples


def wav_declared_seconds(data: bytes) -> float | None:
    """The duration a RIFF/WAVE file's `data` chunk declares, from the chunk headers alone; None when it is not a
    WAV or declares nothing (0 or 0xFFFFFFFF: a stream written before its length was known)."""
    if data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        return None
    position, byte_rate = 12, 0
    while position + 8 <= len(data):
        name, size = data[position : position + 4], int.from_bytes(data[position + 4 : position + 8], "little")
        if name == b"fmt " and position + 16 <= len(data):
            byte_rate = int.from_bytes(data[position + 16 : position + 20], "little")
        if name == b"data":
            if size in (0, 0xFFFFFFFF) or byte_rate <= 0:
                return None
            return size / byte_rate
        position += 8 + size + (size & 1)
    return None


def _check_header(handle, limits: AudioLimits, param: str) -> None:
    if handle.channels > limits.max_channels:
        raise InvalidRequest(
            f"{param} has {handle.channels} channels; at most {limits.max_channels} are allowed (MAX_AUDIO_CHANNELS)",
            param=param,
            code="audio_too_large",
        )
    if not 0 < handle.samplerate <= limits.max_sample_rate:
        raise InvalidRequest(
            f"{param} is sampled at {handle.samplerate} Hz; at most {limits.max_sample_rate} Hz is allowed "
            "(MAX_AUDIO_SAMPLE_RATE)",
            param=param,
            code="audio_too_large",
        )
    declared = handle.frames / handle.samplerate if 0 < handle.frames < 1 << 62 else 0.0
    if declared > limits.max_seconds:
        raise too_long(param, declared, limits.max_seconds)


def _read_bounded(handle, limits: AudioLimits, param: str, rate: int, window: float | None) -> np.ndarray:
    """The clip, a block at a time, mono at `rate`: stopping once past the duration cap whatever the header said,
    or at the window, whichever comes first."""
    import soundfile

    source = handle.samplerate
    cap = int(limits.max_seconds * source)
    wanted = cap if window is None else min(cap, int(np.ceil(window * source)))
    stream = None if source == rate else _resampler(source, rate)
    pieces, frames = [], 0
    try:
        while frames < wanted:
            block = handle.read(min(_BLOCK, wanted - frames + 1), dtype="float32", always_2d=True)
            if not len(block):
                break
            if frames + len(block) > cap:
                raise too_long(param, (frames + len(block)) / source, limits.max_seconds, "at least ")
            block = block[: wanted - frames]
            frames += len(block)
            mono = block.mean(axis=1, dtype=np.float32)
            pieces.append(mono if stream is None else stream.resample_chunk(mono))
    except (soundfile.LibsndfileError, RuntimeError) as exc:
        raise InvalidRequest(
            f"{param} is a corrupt or truncated {handle.format}: {exc}", param=param, code="invalid_audio"
        ) from None
    if stream is not None:
        pieces.append(stream.resample_chunk(np.empty(0, np.float32), last=True))
    return np.concatenate(pieces).astype(np.float32, copy=False) if pieces else np.empty(0, np.float32)


def _resampler(source: int, target: int):
    import soxr

    return soxr.ResampleStream(source, target, 1, dtype="float32", quality="VHQ")


def resample(samples: np.ndarray, source: int, target: int) -> np.ndarray:
    """One-shot, as the tests and references resample: the streaming resampler's output equals it."""
    if source == target:
        return np.ascontiguousarray(samples, dtype=np.float32)
    import soxr

    return soxr.resample(samples, source, target, quality="VHQ").astype(np.float32, copy=False)


def too_long(param: str, seconds: float, limit: float, qualifier: str = "") -> PayloadTooLarge:
    return PayloadTooLarge(
        f"{param} is {qualifier}{seconds:.1f} s of audio; at most {limit:g} s are allowed (MAX_AUDIO_SECONDS)",
        param=param,
        code="audio_too_long",
    )


def audio_too_large(param: str, max_bytes: int) -> PayloadTooLarge:
    return PayloadTooLarge(
        f"{param} is larger than {max_bytes} bytes (MAX_AUDIO_BYTES)", param=param, code="audio_too_large"
    )
