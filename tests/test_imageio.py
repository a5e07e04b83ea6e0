"""load_image on files people have and files made to break it: phone photos
with broken EXIF still load upright; crafted files Pillow fails on in
unexpected ways give ValueError naming the path, never another type."""
from __future__ import annotations

import io
import struct

import numpy as np
import pytest
from PIL import Image, ImageOps

from avatarizer.imageio import load_image

RGB = (np.random.default_rng(0).random((48, 64, 3)) * 255).astype(np.uint8)


def _exif(*entries: tuple[int, int, int, bytes]) -> bytes:
    """An EXIF block (little-endian TIFF header, one IFD) holding the given
    (tag, type, count, 4-byte value) entries as they are, right or wrong."""
    ifd = b"".join(struct.pack("<HHI", tag, kind, count) + value for tag, kind, count, value in entries)
    return b"Exif\x00\x00II*\x00" + struct.pack("<IH", 8, len(entries)) + ifd + struct.pack("<I", 0)


def _orientation(value: int) -> tuple[int, int, int, bytes]:
    return (0x0112, 3, 1, struct.pack("<HH", value, 0))


def _jpeg(exif: bytes, pixels: np.ndarray = RGB) -> bytes:
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, "JPEG", quality=95, exif=exif)
    return out.getvalue()


def _plain(data: bytes) -> np.ndarray:
    """The pixels as stored, orientation not applied."""
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))


# ---------------------------------------------------------------- EXIF orientation
def test_a_photo_whose_exif_has_a_broken_tag_loads_upright(tmp_path):
    """Orientation 6 beside XPosition (a RATIONAL tag) stored as text, as
    phone photos have: ImageOps.exif_transpose raised TypeError rewriting
    the EXIF; the photo loads, turned 90° clockwise."""
    data = _jpeg(_exif(_orientation(6), (0x011F, 2, 4, b"abc\x00")))
    path = tmp_path / "phone.jpg"
    path.write_bytes(data)
    out = load_image(path)
    assert out.shape == (64, 48, 3)
    np.testing.assert_array_equal(out, np.rot90(_plain(data), k=-1))


@pytest.mark.parametrize("value", range(0, 10))
def test_every_orientation_is_applied_as_exif_transpose_does(tmp_path, value):
    """Values 2..8 turn and flip the image as Pillow's exif_transpose does
    with an intact EXIF; 1 and values outside 1..8 leave it as stored."""
    data = _jpeg(_exif(_orientation(value)))
    path = tmp_path / "o.jpg"
    path.write_bytes(data)
    want = np.asarray(ImageOps.exif_transpose(Image.open(io.BytesIO(data))).convert("RGB"))
    np.testing.assert_array_equal(load_image(path), want)
    if value not in range(2, 9):
        np.testing.assert_array_equal(load_image(path), _plain(data))


@pytest.mark.parametrize("entry", [
    (0x0112, 2, 4, b"six\x00"),                     # orientation as text
    (0x0112, 3, 1000, struct.pack("<I", 4000)),     # values past the end of the block
    (0x0112, 99, 1, struct.pack("<I", 6)),          # an unknown type
])
def test_an_orientation_that_cannot_be_read_leaves_the_photo_as_stored(tmp_path, entry):
    data = _jpeg(_exif(entry))
    path = tmp_path / "o.jpg"
    path.write_bytes(data)
    np.testing.assert_array_equal(load_image(path), _plain(data))


@pytest.mark.parametrize("fmt", ["PNG", "TIFF", "WEBP"])
def test_the_orientation_of_other_formats_is_applied_too(tmp_path, fmt):
    exif = Image.Exif()
    exif[0x0112] = 8
    out = io.BytesIO()
    Image.fromarray(RGB).save(out, fmt, exif=exif, lossless=True)
    path = tmp_path / f"o.{fmt.lower()}"
    path.write_bytes(out.getvalue())
    np.testing.assert_array_equal(load_image(path), np.rot90(RGB))


# ---------------------------------------------------------------- crafted files Pillow fails on in other ways
def _float_tiff_with_float_offsets() -> bytes:
    """A 40×48 float TIFF whose StripOffsets entry is typed FLOAT: Pillow
    raised TypeError ('float' object cannot be interpreted as an integer)."""
    out = io.BytesIO()
    Image.fromarray(np.zeros((48, 40), np.float32)).save(out, "TIFF")
    data = bytearray(out.getvalue())
    entry = data.index(struct.pack("<HHI", 273, 4, 1))  # StripOffsets, LONG, one value
    data[entry + 2:entry + 4] = struct.pack("<H", 11)   # FLOAT
    return bytes(data)


def _dds_with_unknown_pixel_format() -> bytes:
    """A 40×48 DDS whose pixel format flags are 0xFF000000: Pillow raised
    NotImplementedError (Unknown pixel format flags)."""
    out = io.BytesIO()
    Image.new("RGB", (40, 48)).save(out, "DDS")
    data = bytearray(out.getvalue())
    data[80:84] = struct.pack("<I", 0xFF000000)
    return bytes(data)


@pytest.mark.parametrize("make, name", [(_float_tiff_with_float_offsets, "offsets.tif"),
                                        (_dds_with_unknown_pixel_format, "format.dds")])
def test_crafted_files_pillow_fails_on_give_value_error_naming_the_path(tmp_path, make, name):
    path = tmp_path / name
    path.write_bytes(make())
    with pytest.raises(ValueError, match=f"Could not read {path} as an image: [A-Za-z]+Error: "):
        load_image(path)
