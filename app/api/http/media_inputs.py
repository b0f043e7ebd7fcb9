"""Audio and video inputs from a request -> encoded bytes, in order, each refusal naming its index.

JSON strings (base64, `data:audio/...;base64,` or `data:video/...;base64,` URIs, http(s) URLs fetched under the
image fetcher's rules and allow-list, with IMAGE_URL_FETCH on) and multipart file uploads end up as the same
list of bytes; decoding happens in the engine, off the event loop (app/media/audio.py, app/media/video.py).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from ...errors import InvalidRequest
from ...media.audio import audio_too_large
from ...media.fetch import ImageFetcher
from ...media.images import parse_media_source
from ...media.video import video_too_large
from . import context
from .image_inputs import read_uploads


@dataclass(frozen=True)
class MediaKind:
    """What differs between audio and video inputs: their MIME types, limits (settings attributes) and words."""

    mime: str  # the top-level type: "audio", "video"
    also_accepted: tuple[str, ...]
    what: str  # one input, in messages: "clip", "video"
    example: str  # a curl -F part
    bytes_setting: str
    count_setting: str
    count_variable: str
    too_large: Callable

    def accepts(self, mime: str) -> bool:
        return mime.startswith(f"{self.mime}/") or mime in self.also_accepted


AUDIO = MediaKind(
    mime="audio",
    also_accepted=("application/ogg", "video/ogg"),
    what="clip",
    example="audio=@dog.wav",
    bytes_setting="max_audio_bytes",
    count_setting="max_audio_per_request",
    count_variable="MAX_AUDIO_PER_REQUEST",
    too_large=audio_too_large,
)
VIDEO = MediaKind(
    mime="video",
    also_accepted=("application/mp4", "application/x-matroska"),
    what="video",
    example="video=@clip.mp4",
    bytes_setting="max_video_bytes",
    count_setting="max_video_per_request",
    count_variable="MAX_VIDEO_PER_REQUEST",
    too_large=video_too_large,
)


def check_count(count: int, field: str, kind: MediaKind) -> None:
    limit = getattr(context.settings(), kind.count_setting)
    if count > limit:
        raise InvalidRequest(
            f"{field} has {count} {kind.what}s; at most {limit} are allowed per request ({kind.count_variable})",
            param=field,
            code="too_many_items",
        )


def gather_media(values: list[str], field: str, kind: MediaKind, positions: list[int] | None = None) -> list[bytes]:
    """JSON strings -> bytes; URLs fetched here, one after another (I/O, cooperative under gevent). `positions`
    are the values' indices in the request, for the errors that name them."""
    check_count(len(values), field, kind)
    max_bytes = getattr(context.settings(), kind.bytes_setting)
    items = []
    for index, value in zip(positions or range(len(values)), values):
        param = f"{field}[{index}]"
        source = parse_media_source(
            value,
            param,
            max_bytes=max_bytes,
            accepts=kind.accepts,
            example=kind.mime,
            what=kind.mime,
            too_large=kind.too_large,
        )
        items.append(_fetch(source.url, param, kind) if source.kind == "url" else source.data)
    return items


def gather_audio(values: list[str], field: str, positions: list[int] | None = None) -> list[bytes]:
    return gather_media(values, field, AUDIO, positions)


def gather_videos(values: list[str], field: str, positions: list[int] | None = None) -> list[bytes]:
    return gather_media(values, field, VIDEO, positions)


def _fetch(url: str, param: str, kind: MediaKind) -> bytes:
    settings = context.settings()
    if not settings.image_url_fetch:
        raise InvalidRequest(
            f"{param} is a URL, and this server does not fetch URLs (IMAGE_URL_FETCH is off); send the {kind.mime} "
            "as base64 or a data: URI",
            param=param,
            code="image_url_fetch_disabled",
        )
    fetcher = ImageFetcher(
        allowed_hosts=settings.allowed_image_hosts,
        allowed_networks=settings.allowed_image_networks,
        timeout=settings.image_fetch_timeout,
        max_bytes=getattr(settings, kind.bytes_setting),
        accept=f"{kind.mime}/*",
        too_large=kind.too_large,
    )
    return fetcher.fetch(url, param)


def media_uploads(field: str, kind: MediaKind) -> list[bytes]:
    """Every file of a multipart/form-data request, in order, whatever its field name."""
    max_bytes = getattr(context.settings(), kind.bytes_setting)
    return read_uploads(
        field,
        max_bytes=max_bytes,
        check_count=lambda count: check_count(count, field, kind),
        too_large=lambda param, _filename: kind.too_large(param, max_bytes),
        what=kind.what,
        example=kind.example,
    )
