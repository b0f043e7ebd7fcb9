"""Safe decoding of untrusted images (the part of the image routes that needs no model)."""

from __future__ import annotations

import base64
import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from app.errors import InvalidRequest, PayloadTooLarge
from app.media.images import ImageLimits, decode_image, parse_source, to_rgb

LIMITS = ImageLimits(max_bytes=200_000, max_pixels=1_000_000)


def encode(image: Image.Image, fmt: str, **kwargs) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **kwargs)
    return buffer.getvalue()


def png_claiming(width: int, height: int) -> bytes:
    """A tiny PNG whose header claims width x height pixels."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
        + chunk(b"IDAT", zlib.compress(b"\x00" * 64))
        + chunk(b"IEND", b"")
    )


# -------------------------------------------------------------------- sources
def test_sources_base64_data_uri_and_url():
    data = encode(Image.new("RGB", (4, 4), "red"), "PNG")
    b64 = base64.b64encode(data).decode()
    assert parse_source(b64, LIMITS, "images[0]").data == data
    assert parse_source(f"data:image/png;base64,{b64}", LIMITS, "images[0]").data == data
    assert parse_source(f"DATA:image/png;base64,{b64[:20]}\n{b64[20:]}", LIMITS, "x").data == data
    url = parse_source("https://example.org/cat.jpg", LIMITS, "images[0]")
    assert url.kind == "url" and url.url == "https://example.org/cat.jpg"


@pytest.mark.parametrize(
    "value,fragment",
    [
        ("", "non-empty"),
        ("not base64 !!", "valid base64"),
        ("data:text/plain;base64,aGVsbG8=", "not an image"),
        ("data:image/png,rawbytes", "not base64"),
    ],
)
def test_bad_sources_name_the_index(value, fragment):
    with pytest.raises(InvalidRequest, match=fragment) as info:
        parse_source(value, LIMITS, "images[2]")
    assert info.value.param == "images[2]"


def test_byte_cap_applies_before_base64_decoding():
    with pytest.raises(PayloadTooLarge) as info:
        parse_source("A" * 400_000, LIMITS, "images[1]")
    assert info.value.status == 413 and info.value.param == "images[1]"
    with pytest.raises(PayloadTooLarge):
        decode_image(b"\x00" * 200_001, LIMITS, "images[0]")


# ------------------------------------------------------------------- decoding
def test_decompression_bomb_is_refused_from_its_header():
    bomb = png_claiming(50_000, 50_000)
    assert len(bomb) < 200
    with pytest.raises(InvalidRequest, match="2500000000 pixels") as info:
        decode_image(bomb, LIMITS, "images[0]")
    assert info.value.code == "image_too_large"


def test_format_allow_list():
    tiff = encode(Image.new("RGB", (4, 4)), "TIFF")
    with pytest.raises(InvalidRequest, match="TIFF; allowed formats") as info:
        decode_image(tiff, LIMITS, "images[0]")
    assert info.value.code == "unsupported_image_format"
    assert decode_image(tiff, ImageLimits(formats=frozenset({"TIFF"})), "images[0]").size == (4, 4)


NOISE = Image.fromarray(np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8))


@pytest.mark.parametrize("data", [b"garbage bytes", encode(NOISE, "PNG")[:2000], encode(NOISE, "JPEG")[:1500]])
def test_corrupt_or_truncated_images_are_a_400(data):
    with pytest.raises(InvalidRequest) as info:
        decode_image(data, LIMITS, "images[3]")
    assert info.value.status == 400 and info.value.param == "images[3]" and info.value.code == "invalid_image"


def test_animated_images_use_their_first_frame():
    frames = [Image.new("RGB", (8, 8), color) for color in ((255, 0, 0), (0, 0, 255))]
    buffer = io.BytesIO()
    frames[0].save(buffer, format="GIF", save_all=True, append_images=frames[1:], duration=50, loop=0)
    image = decode_image(buffer.getvalue(), LIMITS, "images[0]")
    assert image.mode == "RGB" and image.getpixel((0, 0))[0] > 200 and image.getpixel((0, 0))[2] < 50


def test_exif_orientation_is_applied():
    source = Image.new("RGB", (40, 20), "white")
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    image = decode_image(encode(source, "JPEG", exif=exif), LIMITS, "images[0]")
    assert image.size == (20, 40)


@pytest.mark.parametrize(
    "mode,pixel,expected",
    [
        ("RGBA", (255, 0, 0, 255), (255, 0, 0)),
        ("RGBA", (255, 0, 0, 0), (255, 255, 255)),  # fully transparent shows as white
        ("LA", (0, 255), (0, 0, 0)),
        ("L", 128, (128, 128, 128)),
        ("CMYK", (0, 255, 255, 0), (255, 0, 0)),
        ("1", 1, (255, 255, 255)),
    ],
)
def test_every_mode_becomes_rgb(mode, pixel, expected):
    image = Image.new(mode, (4, 4), pixel)
    fmt = "JPEG" if mode == "CMYK" else "PNG"
    decoded = decode_image(encode(image, fmt), ImageLimits(formats=frozenset({"PNG", "JPEG"})), "images[0]")
    assert decoded.mode == "RGB"
    assert all(abs(a - b) <= 3 for a, b in zip(decoded.getpixel((1, 1)), expected))


def test_palette_with_transparency():
    image = Image.new("P", (4, 4), 0)
    image.putpalette([0, 0, 255] + [0, 0, 0] * 255)
    decoded = decode_image(encode(image, "PNG", transparency=0), LIMITS, "images[0]")
    assert decoded.getpixel((0, 0)) == (255, 255, 255)


def test_sixteen_bit_greyscale_keeps_its_range():
    array = np.array([[0, 32768], [65535, 16384]], dtype=np.uint16)
    image = Image.fromarray(array)
    assert image.mode.startswith("I;16")
    decoded = decode_image(encode(image, "PNG"), LIMITS, "images[0]")
    values = [decoded.getpixel(p)[0] for p in ((0, 0), (1, 0), (0, 1))]
    assert values == [0, 128, 255]  # not clipped to white as a plain convert would
    assert to_rgb(Image.fromarray(np.full((2, 2), 0.5, dtype=np.float32))).mode == "RGB"
