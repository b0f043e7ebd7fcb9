"""Audio inputs from a request -> encoded audio bytes, in order, each refusal naming its index.

JSON strings (base64, `data:audio/...;base64,` URIs, http(s) URLs fetched under the image fetcher's rules and
allow-list, with IMAGE_URL_FETCH on) and multipart file uploads end up as the same list of bytes; decoding
happens in the engine, off the event loop (app/media/audio.py).
"""

from __future__ import annotations

from ...errors import InvalidRequest
from ...media.audio import audio_too_large
from ...media.fetch import ImageFetcher
from ...media.images import parse_media_source
from . import context
from .image_inputs import read_uploads


def check_audio_count(count: int, field: str) -> None:
    limit = context.settings().max_audio_per_request
    if count > limit:
        raise InvalidRequest(
            f"{field} has {count} clips; at most {limit} are allowed per request (MAX_AUDIO_PER_REQUEST)",
            param=field,
            code="too_many_items",
        )


def gather_audio(values: list[str], field: str) -> list[bytes]:
    """JSON audio strings -> bytes; URLs fetched here, one after another (I/O, cooperative under gevent)."""
    settings = context.settings()
    check_audio_count(len(values), field)
    clips = []
    for index, value in enumerate(values):
        param = f"{field}[{index}]"
        source = parse_media_source(
            value,
            param,
            max_bytes=settings.max_audio_bytes,
            accepts=lambda mime: mime.startswith("audio/") or mime in ("application/ogg", "video/ogg"),
            example="audio",
            what="audio",
            too_large=audio_too_large,
        )
        clips.append(_fetch(source.url, param) if source.kind == "url" else source.data)
    return clips


def _fetch(url: str, param: str) -> bytes:
    settings = context.settings()
    if not settings.image_url_fetch:
        raise InvalidRequest(
            f"{param} is a URL, and this server does not fetch URLs (IMAGE_URL_FETCH is off); send the audio as "
            "base64 or a data: URI",
            param=param,
            code="image_url_fetch_disabled",
        )
    fetcher = ImageFetcher(
        allowed_hosts=settings.allowed_image_hosts,
        allowed_networks=settings.allowed_image_networks,
        timeout=settings.image_fetch_timeout,
        max_bytes=settings.max_audio_bytes,
        accept="audio/*",
        too_large=audio_too_large,
    )
    return fetcher.fetch(url, param)


def audio_uploads(field: str = "audio") -> list[bytes]:
    """Every file of a multipart/form-data request, in order, whatever its field name."""
    max_bytes = context.settings().max_audio_bytes
    return read_uploads(
        field,
        max_bytes=max_bytes,
        check_count=lambda count: check_audio_count(count, field),
        too_large=lambda param, _filename: audio_too_large(param, max_bytes),
        what="clip",
        example="audio=@dog.wav",
    )
