"""Image inputs from a request -> encoded image bytes, in order, each refusal naming its index.

JSON strings (base64, data URIs, URLs) and multipart file uploads end up as
the same list of bytes; decoding happens in the engine, off the event loop.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from flask import request

from ...config import Settings
from ...errors import InvalidRequest, PayloadTooLarge
from ...media.fetch import ImageFetcher
from ...media.images import ImageLimits, parse_source
from . import context
from .parsing import validate

_PARALLEL_FETCHES = 8


def make_fetcher(settings: Settings) -> ImageFetcher | None:
    if not settings.image_url_fetch:
        return None
    return ImageFetcher(
        allowed_hosts=settings.allowed_image_hosts,
        allowed_networks=settings.allowed_image_networks,
        timeout=settings.image_fetch_timeout,
        max_bytes=settings.max_image_bytes,
    )


def check_image_count(count: int, settings: Settings, field: str) -> None:
    if count > settings.max_images_per_request:
        raise InvalidRequest(
            f"{field} has {count} images; at most {settings.max_images_per_request} are allowed "
            "per request (MAX_IMAGES_PER_REQUEST)",
            param=field,
            code="too_many_items",
        )


def gather(values: list[str], field: str, positions: list[int] | None = None) -> list[bytes]:
    """JSON image strings -> bytes; URLs are fetched here (I/O, cooperative under gevent).
    `positions` are the values' indices in the request, for the errors that name them."""
    settings = context.settings()
    check_image_count(len(values), settings, field)
    limits = ImageLimits.from_settings(settings)
    fetcher = context.image_fetcher()
    images: list = []
    urls: dict[int, str] = {}
    names = [f"{field}[{index}]" for index in (positions or range(len(values)))]
    for index, value in enumerate(values):
        param = names[index]
        source = parse_source(value, limits, param)
        if source.kind == "url":
            if fetcher is None:
                raise InvalidRequest(
                    f"{param} is a URL, and this server does not fetch image URLs "
                    "(IMAGE_URL_FETCH is off); send the image as base64 or a data: URI",
                    param=param,
                    code="image_url_fetch_disabled",
                )
            urls[index] = source.url
        images.append(source.data)
    if len(urls) == 1:
        index, url = next(iter(urls.items()))
        images[index] = fetcher.fetch(url, names[index])
    elif urls:
        # Several URLs are fetched at once (greenlets under gevent, threads otherwise);
        # map keeps the order, so the first failing index is the one reported.
        with ThreadPoolExecutor(max_workers=min(_PARALLEL_FETCHES, len(urls))) as pool:
            fetched = pool.map(lambda item: fetcher.fetch(item[1], names[item[0]]), urls.items())
            for index, data in zip(urls, fetched):
                images[index] = data
    return images


def is_multipart() -> bool:
    return request.mimetype == "multipart/form-data"


def uploads(field: str = "images") -> list[bytes]:
    """Every file of a multipart/form-data request, in order, whatever its field name."""
    settings = context.settings()

    def too_large(param: str, filename: str | None) -> PayloadTooLarge:
        name = f" ({filename})" if filename else ""
        return PayloadTooLarge(
            f"{param}{name} is larger than {settings.max_image_bytes} bytes (MAX_IMAGE_BYTES)", param=param
        )

    return read_uploads(
        field,
        max_bytes=settings.max_image_bytes,
        check_count=lambda count: check_image_count(count, settings, field),
        too_large=too_large,
        what="image",
        example="image=@cat.jpg",
    )


def read_uploads(field: str, *, max_bytes: int, check_count, too_large, what: str, example: str) -> list[bytes]:
    """A multipart request's files (images, clips), in order, each read to at most `max_bytes` + 1 bytes: one over
    is `too_large(param, filename)`; no file at all, or more than `check_count` allows, the caller's 4xx."""
    files = [upload for _, upload in request.files.items(multi=True)]
    if not files:
        raise InvalidRequest(
            f"the multipart request has no files; send each {what} as a file part (curl -F {example})", param=field
        )
    check_count(len(files))
    contents = []
    for index, upload in enumerate(files):
        data = upload.stream.read(max_bytes + 1)
        if len(data) > max_bytes:
            raise too_large(f"{field}[{index}]", upload.filename)
        contents.append(data)
    return contents


def form_options(allowed: set[str]) -> dict:
    """Multipart text fields -> the JSON-typed values a request model validates strictly."""
    options = {}
    for name, value in request.form.items(multi=False):
        if name not in allowed:
            raise InvalidRequest(
                f"{name}: is not a known field; multipart requests take image files plus {', '.join(sorted(allowed))}",
                param=name,
            )
        if name in ("normalize", "is_query", "cache"):
            lowered = value.strip().lower()
            if lowered not in ("true", "false", "1", "0"):
                raise InvalidRequest(f"{name}: must be true or false", param=name)
            options[name] = lowered in ("true", "1")
        elif name == "dimensions":
            if not value.strip().isdigit():
                raise InvalidRequest("dimensions: must be a positive integer", param=name)
            options[name] = int(value)
        elif name == "colbert_pool_factor":
            try:
                options[name] = float(value)
            except ValueError:
                raise InvalidRequest("colbert_pool_factor: must be a number", param=name) from None
        else:
            options[name] = value
    return options


def form_request(options_cls):
    """The options of a multipart/form-data request, validated as strictly as JSON."""
    return validate(options_cls, form_options(set(options_cls.model_fields)))
