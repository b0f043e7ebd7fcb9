"""Untrusted image inputs -> RGB PIL images, refusing what should not be decoded.

Every source (raw base64, a `data:image/...;base64,` URI, bytes from a file
upload or a URL fetch) goes through the same checks, in this order, so the
cheap ones run before anything is decoded:

1. the byte cap, on the encoded size first (before base64 decoding) and on the bytes;
2. the format, read from the file header, against an allow-list;
3. the pixel count, read from the header before the full decode (a 50 kB PNG
   can claim 2.5 billion pixels: a decompression bomb);
4. the decode itself, where a corrupt file is the caller's error (400);
5. the first frame of animations, EXIF orientation, and every mode
   (RGBA, P, LA, CMYK, 16-bit, float, 1-bit) converted to 8-bit RGB.

Errors name the input's index (`param`), so one bad image is reported as such
and never fails the other images of a request.
"""

from __future__ import annotations

import base64
import binascii
import io
import re
from dataclasses import dataclass

from PIL import Image, ImageOps, UnidentifiedImageError

from ..config import Settings
from ..errors import InvalidRequest, PayloadTooLarge
from .pdf import PdfPages, is_pdf
from .signatures import image_format

DATA_URI = re.compile(
    r"^data:(?P<mime>[\w.+-]+/[\w.+-]+)?(?P<params>(;[\w.+-]+=[^;,]*)*)(?P<b64>;base64)?,", re.IGNORECASE
)


@dataclass(frozen=True)
class ImageLimits:
    # The defaults are the settings' own (MAX_IMAGE_BYTES, MAX_IMAGE_PIXELS, IMAGE_FORMATS), declared once there.
    max_bytes: int = Settings.max_image_bytes
    max_pixels: int = Settings.max_image_pixels
    formats: frozenset[str] = frozenset(Settings.image_formats)
    # PDFs (pdf.py): pages per document, the rendering's resolution, a rendered page's pixels; None: a route
    # that answers one vector per input takes no documents
    max_pdf_pages: int | None = None
    pdf_dpi: int = Settings.pdf_dpi
    max_pdf_page_pixels: int = Settings.max_pdf_page_pixels

    @classmethod
    def from_settings(cls, settings, *, documents: bool = False) -> ImageLimits:
        return cls(
            max_bytes=settings.max_image_bytes,
            max_pixels=settings.max_image_pixels,
            formats=frozenset(settings.image_formats),
            max_pdf_pages=settings.max_pdf_pages if documents else None,
            pdf_dpi=settings.pdf_dpi,
            max_pdf_page_pixels=settings.max_pdf_page_pixels,
        )

    def decode(self, data: bytes, param: str) -> Image.Image:
        """The engine's ImageDecoder: it decodes images off the event loop, under these limits."""
        return decode_image(data, self, param)

    def pages(self, data: bytes, param: str) -> PdfPages | None:
        """The engine's ImageDecoder, for an input that is a document: its pages, checked against the limits and
        rendered one at a time (off the event loop); None for an image."""
        if not is_pdf(data):
            return None
        if len(data) > self.max_bytes:
            raise image_too_large(param, self.max_bytes)
        if self.max_pdf_pages is None:
            raise InvalidRequest(
                f"{param} is a PDF: PDFs are embedded page by page by POST /embed_image, whose answer says which "
                "page each vector is; this route answers one vector per input",
                param=param,
                code="pdf_not_accepted",
            )
        return PdfPages(
            data,
            max_pages=self.max_pdf_pages,
            dpi=self.pdf_dpi,
            max_page_pixels=self.max_pdf_page_pixels,
            param=param,
        )


@dataclass(frozen=True)
class ImageSource:
    """A file a JSON string holds (an image, a PDF or a clip): its bytes, or the URL to fetch them from."""

    kind: str  # "bytes" or "url"
    data: bytes = b""
    url: str = ""


def parse_source(value: str, limits: ImageLimits, param: str) -> ImageSource:
    """A JSON string: an http(s) URL, a `data:image/...` (or PDF) URI, or raw base64."""
    return parse_media_source(
        value,
        param,
        max_bytes=limits.max_bytes,
        accepts=lambda mime: mime.startswith("image/") or mime == "application/pdf",
        example="image",
        what="an image or a PDF",
        too_large=image_too_large,
    )


def parse_media_source(value: str, param: str, *, max_bytes: int, accepts, example: str, what: str, too_large):
    """A JSON string holding a file (an image, a clip): an http(s) URL, a data URI of a type `accepts` takes
    (`data:{example}/...;base64,`), or raw base64, decoded under `max_bytes` (`too_large` names the limit)."""
    if not isinstance(value, str) or not value.strip():
        raise InvalidRequest(f"{param} must be a non-empty string: base64, a data: URI or a URL", param=param)
    value = value.strip()
    lowered = value[:8].lower()
    if lowered.startswith(("http://", "https://")):
        return ImageSource(kind="url", url=value)
    if lowered.startswith("data:"):
        match = DATA_URI.match(value)
        if not match or not match.group("b64"):
            raise InvalidRequest(
                f"{param} is a data URI that is not base64 (data:{example}/...;base64,...)", param=param
            )
        mime = (match.group("mime") or "").lower()
        if not accepts(mime):
            raise InvalidRequest(f"{param} is a data URI of type {mime or 'none'!r}, not {what}", param=param)
        payload = value[match.end() :]
    else:
        payload = value
    # base64 is 4 characters per 3 bytes: refuse an over-size file before decoding it.
    if len(payload) * 3 // 4 > max_bytes + 3:
        raise too_large(param, max_bytes)
    try:
        data = base64.b64decode("".join(payload.split()), validate=True)
    except (binascii.Error, ValueError):
        raise InvalidRequest(f"{param} is neither a URL nor valid base64", param=param) from None
    return ImageSource(kind="bytes", data=data)


def decode_image(data: bytes, limits: ImageLimits, param: str) -> Image.Image:
    if len(data) > limits.max_bytes:
        raise image_too_large(param, limits.max_bytes)
    if not data:
        raise InvalidRequest(f"{param} is empty", param=param)
    allowed = ", ".join(sorted(limits.formats))
    try:
        # Only the allowed formats' parsers see the bytes (PIL would otherwise try
        # every plugin it has, EPS through Ghostscript among them). Header only.
        image = Image.open(io.BytesIO(data), formats=sorted(limits.formats))
    except Image.DecompressionBombError as exc:  # PIL's own guard, far above ours
        raise InvalidRequest(f"{param} claims too many pixels: {exc}", param=param, code="image_too_large") from None
    except UnidentifiedImageError:
        detected = image_format(data)
        if detected:
            raise InvalidRequest(
                f"{param} is {detected}; allowed formats: {allowed}", param=param, code="unsupported_image_format"
            ) from None
        raise InvalidRequest(
            f"{param} is not an image in a known format (allowed: {allowed})", param=param, code="invalid_image"
        ) from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise InvalidRequest(f"{param} could not be read: {exc}", param=param, code="invalid_image") from None
    width, height = image.size
    if width * height > limits.max_pixels:
        raise InvalidRequest(
            f"{param} is {width}x{height} = {width * height} pixels, over the limit of {limits.max_pixels}",
            param=param,
            code="image_too_large",
        )
    try:
        if getattr(image, "is_animated", False):
            image.seek(0)
        image.load()
        image = ImageOps.exif_transpose(image)
        return to_rgb(image)
    except (OSError, SyntaxError, ValueError, EOFError, Image.DecompressionBombError) as exc:
        raise InvalidRequest(
            f"{param} is a corrupt or truncated {image.format}: {exc}", param=param, code="invalid_image"
        ) from None


def to_rgb(image: Image.Image) -> Image.Image:
    """8-bit RGB from any PIL mode; transparency becomes white, as a viewer shows it."""
    if image.mode == "RGB":
        return image
    if image.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        return _wide_to_rgb(image)
    if image.mode == "P":
        image = image.convert("RGBA" if "transparency" in image.info else "RGB")
    if image.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image.convert("RGB")


def _wide_to_rgb(image: Image.Image) -> Image.Image:
    """16-bit or float greyscale: scale the used range to 0-255 (PIL's convert would clip)."""
    import numpy as np

    array = np.asarray(image, dtype=np.float64)
    low, high = float(array.min()), float(array.max())
    if image.mode.startswith("I;16") and high <= 65535 and low >= 0:
        low, high = 0.0, 65535.0
    scaled = np.zeros_like(array) if high <= low else (array - low) * (255.0 / (high - low))
    return Image.fromarray(scaled.round().clip(0, 255).astype(np.uint8)).convert("RGB")


def image_too_large(param: str, max_bytes: int) -> PayloadTooLarge:
    """The one 413 for an image over MAX_IMAGE_BYTES, whether it came inline or from a URL."""
    return PayloadTooLarge(f"{param} is larger than {max_bytes} bytes (MAX_IMAGE_BYTES)", param=param)
