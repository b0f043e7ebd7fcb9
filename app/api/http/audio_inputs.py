"""Audio inputs from a request -> encoded audio bytes, in order, each refusal naming its index.

JSON strings (base64, `data:audio/...;base64,` URIs, http(s) URLs fetched under the image fetcher's rules and
allow-list, with IMAGE_URL_FETCH on) and multipart file uploads end up as the same list of bytes; decoding
happens in the engine, off the event loop (app/media/audio.py).
"""

from __future__ import annotations

import base64
import binascii

from flask import request

from ...errors import InvalidRequest
from ...media.audio import audio_too_large
from ...media.fetch import ImageFetcher
from ...media.images import DATA_URI
from . import context


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
        if not isinstance(value, str) or not value.strip():
            raise InvalidRequest(f"{param} must be a non-empty string: base64, a data: URI or a URL", param=param)
        value = value.strip()
        if value[:8].lower().startswith(("http://", "https://")):
            clips.append(_fetch(value, param))
            continue
        payload = value
        if value[:5].lower() == "data:":
            match = DATA_URI.match(value)
            if not match or not match.group("b64"):
                raise InvalidRequest(
                    f"{param} is a data URI that is not base64 (data:audio/...;base64,...)", param=param
                )
            mime = (match.group("mime") or "").lower()
            if not mime.startswith("audio/") and mime not in ("application/ogg", "video/ogg"):
                raise InvalidRequest(f"{param} is a data URI of type {mime or 'none'!r}, not audio", param=param)
            payload = value[match.end() :]
        if len(payload) * 3 // 4 > settings.max_audio_bytes + 3:
            raise audio_too_large(param, settings.max_audio_bytes)
        try:
            clips.append(base64.b64decode("".join(payload.split()), validate=True))
        except (binascii.Error, ValueError):
            raise InvalidRequest(f"{param} is neither a URL nor valid base64", param=param) from None
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
    settings = context.settings()
    files = [upload for _, upload in request.files.items(multi=True)]
    if not files:
        raise InvalidRequest(
            "the multipart request has no files; send each clip as a file part (curl -F audio=@dog.wav)", param=field
        )
    check_audio_count(len(files), field)
    clips = []
    for index, upload in enumerate(files):
        data = upload.stream.read(settings.max_audio_bytes + 1)
        if len(data) > settings.max_audio_bytes:
            raise audio_too_large(f"{field}[{index}]", settings.max_audio_bytes)
        clips.append(data)
    return clips
