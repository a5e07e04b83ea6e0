"""load_image on files people have and files made to break it: phone photos
with broken EXIF still load upright; crafted files Pillow fails on in
unexpected ways give ValueError naming the path, never another type."""
from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image, ImageOps

from avatarizer.imageio import load_image, to_rgb_uint8
from conftest import ROOT

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


@pytest.mark.parametrize("value", [3, 6, 8])
def test_a_pil_image_is_taken_upright_as_its_file_is(tmp_path, value):
    """A photo given as a PIL image (``Image.open``) is turned by its EXIF
    orientation as ``load_image`` turns its file (README: "PIL images are
    read upright"); it was taken as stored, a face on its side."""
    data = _jpeg(_exif(_orientation(value)))
    path = tmp_path / "o.jpg"
    path.write_bytes(data)
    with Image.open(path) as im:
        got = to_rgb_uint8(im)
        # an image the app turned itself (Pillow copies the tag onto it): taken as it is, not turned twice
        turned = ImageOps.exif_transpose(im)
        assert np.array_equal(to_rgb_uint8(im.transpose(Image.Transpose.FLIP_LEFT_RIGHT)),
                              np.asarray(im.convert("RGB"))[:, ::-1])
    np.testing.assert_array_equal(got, load_image(path))
    np.testing.assert_array_equal(to_rgb_uint8(turned), got)
    assert not np.array_equal(got, _plain(data)) or value == 3 and got.shape == _plain(data).shape


@pytest.mark.parametrize("fmt", ["TIFF", "PNG", "WEBP"])
def test_a_pil_image_of_another_format_is_turned_once(tmp_path, fmt):
    """Pillow turns a TIFF by its orientation itself while loading it (and
    drops the tag): an unloaded ``Image.open`` of a TIFF tagged 6 was turned
    twice (read as stored, on its side); every format comes out as
    ``load_image`` reads its file."""
    exif = Image.Exif()
    exif[0x0112] = 6
    path = tmp_path / f"o.{fmt.lower()}"
    Image.fromarray(RGB).save(path, fmt, exif=exif, lossless=True)
    with Image.open(path) as im:
        got = to_rgb_uint8(im)
    np.testing.assert_array_equal(got, np.rot90(RGB, k=-1))
    np.testing.assert_array_equal(got, load_image(path))


def test_a_closed_pil_image_is_a_value_error(tmp_path):
    """An image used after its ``with Image.open(...)`` block (closed before
    it was loaded) raised a bare AssertionError from Pillow."""
    path = tmp_path / "c.png"
    Image.fromarray(RGB).save(path)
    with Image.open(path) as im:
        pass
    with pytest.raises(ValueError, match="PIL image .*closed"):
        to_rgb_uint8(im)
    im = Image.open(path)
    im.close()
    with pytest.raises(ValueError, match="PIL image .*closed"):
        to_rgb_uint8(im)


def _blp_around(jpeg: bytes, side: int = 64) -> bytes:
    """A BLP1 texture whose header says ``side``×``side``, its one mip level
    the JPEG ``jpeg`` (of any size)."""
    header = b"BLP1" + struct.pack("<iIIIi", 0, 0, side, side, 5) + bytes(4)
    return header + struct.pack("<16I", 160, *[0] * 15) + struct.pack("<16I", len(jpeg), *[0] * 15) \
        + struct.pack("<I", 0) + jpeg


def test_blp_and_eps_files_are_not_read(tmp_path):
    """A BLP texture wraps a JPEG whose size no check before decoding reads
    (a 64×64 header around a 12000×12000 JPEG took 1.6 GB to load), and an
    EPS file is PostScript run by Ghostscript with no time limit: both are
    refused as images that cannot be read, naming the path (Pillow reads the
    BLP here: it is a valid file)."""
    inner = io.BytesIO()
    Image.fromarray(np.tile(RGB, (3, 3, 1))).save(inner, "JPEG")
    blp = tmp_path / "texture.blp"
    blp.write_bytes(_blp_around(inner.getvalue()))
    with Image.open(blp) as im:  # (a file Pillow reads)
        assert im.format == "BLP" and im.size == (64, 64)
    eps = tmp_path / "loop.eps"
    eps.write_bytes(b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 64 64\n{} loop\n%%EOF\n")
    for path in (blp, eps):
        with pytest.raises(ValueError, match=f"Could not read {path} as an image"):
            load_image(path)


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


# ---------------------------------------------------------------- progressive JPEG "scan bombs"
def _progressive(pixels: np.ndarray) -> bytes:
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, "JPEG", progressive=True, quality=90)
    return out.getvalue()


def _scans(jpeg: bytes, total: int, before: bytes = b"") -> bytes:
    """``jpeg`` (one Pillow wrote: no thumbnail) with its last scan repeated
    until it has ``total`` scans, each repeat preceded by ``before``. Every
    scan is a pass over the whole image: a 99-byte scan cost 0.1 s at
    8192×8192, and a 500 KB file minutes."""
    have = jpeg.count(b"\xff\xda")
    last = jpeg[jpeg.rfind(b"\xff\xda"):-2]
    return jpeg[:-2] + (before + last) * (total - have) + b"\xff\xd9"


def _with_thumbnail(jpeg: bytes, thumbnail: bytes) -> bytes:
    """``jpeg`` with an EXIF block (APP1) whose IFD1 holds ``thumbnail``."""
    ifd0 = struct.pack("<H", 1) + struct.pack("<HHIHH", 0x0112, 3, 1, 1, 0) + struct.pack("<I", 26)
    ifd1 = (struct.pack("<H", 2) + struct.pack("<HHII", 0x0201, 4, 1, 56)
            + struct.pack("<HHII", 0x0202, 4, 1, len(thumbnail)))
    tiff = b"II*\x00" + struct.pack("<I", 8) + ifd0 + ifd1 + struct.pack("<I", 0) + thumbnail
    assert tiff.index(thumbnail) == 56
    app1 = b"Exif\x00\x00" + tiff
    return jpeg[:2] + b"\xff\xe1" + struct.pack(">H", len(app1) + 2) + app1 + jpeg[2:]


def test_a_jpeg_with_more_scans_than_the_limit_is_refused_before_decoding(tmp_path):
    from avatarizer.imageio import MAX_JPEG_SCANS

    jpeg = _progressive(RGB)
    path = tmp_path / "scans.jpg"
    path.write_bytes(_scans(jpeg, MAX_JPEG_SCANS))
    assert load_image(path).shape == RGB.shape  # up to the limit: loads
    # one more; and (decoders skip them) fill bytes or garbage before each repeat
    for before in (b"", b"\xff\xff", b"junk"):
        path.write_bytes(_scans(jpeg, MAX_JPEG_SCANS + 1, before))
        with pytest.raises(ValueError, match=f"{path}: .*more than {MAX_JPEG_SCANS} scans"):
            load_image(path)


@pytest.mark.parametrize("kind", ["baseline", "progressive", "gray progressive", "cmyk", "thumbnail", "mpo"])
def test_ordinary_jpegs_still_load(tmp_path, kind):
    """Including one whose EXIF thumbnail (a JPEG of its own) has more scans
    than the limit: the thumbnail's scans are not the image's."""
    from avatarizer.imageio import MAX_JPEG_SCANS

    out = io.BytesIO()
    image = Image.fromarray(RGB)
    if kind == "baseline":
        image.save(out, "JPEG")
    elif kind == "progressive":
        image.save(out, "JPEG", progressive=True)
    elif kind == "gray progressive":
        image.convert("L").save(out, "JPEG", progressive=True)
    elif kind == "cmyk":
        image.convert("CMYK").save(out, "JPEG", progressive=True)
    elif kind == "mpo":
        image.save(out, "MPO", save_all=True, append_images=[image.transpose(Image.Transpose.ROTATE_180)])
    else:
        thumbnail = _scans(_progressive(RGB[:16, :16]), 2 * MAX_JPEG_SCANS)
        out.write(_with_thumbnail(_progressive(RGB), thumbnail))
    path = tmp_path / "ok.jpg"
    path.write_bytes(out.getvalue())
    assert load_image(path).shape == RGB.shape


def test_the_scan_count_does_not_depend_on_where_the_reads_fall(monkeypatch):
    """The marker walk reads a window at a time: with windows of a few
    bytes (every marker, length and fill run split across two) it counts
    what it counts with one window holding the file."""
    import avatarizer.imageio as imageio

    jpeg = _progressive(RGB)
    sos = jpeg.index(b"\xff\xda")
    junk = jpeg[:sos] + b"junk\x00\xff\x00" * 5 + jpeg[sos:]  # (between the header's last segment and the scan)
    files = {jpeg: (10, 0), _scans(jpeg, 150): (150, 0), _scans(jpeg, 150, b"\xff\xff\xff"): (150, 0),
             _scans(jpeg, 150, b"junk\xff"): (150, 0),
             _with_thumbnail(jpeg, _scans(_progressive(RGB[:16, :16]), 200)): (10, 0),
             junk: (10, 35), jpeg[:sos] + b"\x00" * 40: (0, 40)}
    for chunk in (4, 5, 7, 16, 1 << 20):
        monkeypatch.setattr(imageio, "_CHUNK", chunk)
        assert {data: imageio._jpeg_scans(io.BytesIO(data), 1000) for data in files} == files, chunk
    assert imageio._jpeg_scans(io.BytesIO(jpeg[:sos] + b"\x00" * 40), 1000, 9)[1] in range(10, 10 + (1 << 20))


def test_a_jpeg_without_image_data_is_refused_before_decoding(tmp_path):
    """A JPEG's header and then nothing but zeros (a sparse file): Pillow
    went through all of it before refusing it (15 s for 256 MB, 134 s for
    2 GB); refused by the marker walk, which finds no scan."""
    jpeg = _jpeg(b"")
    path = tmp_path / "sparse.jpg"
    with open(path, "wb") as f:
        f.write(jpeg[:jpeg.index(b"\xff\xda")])
        f.truncate(f.tell() + (64 << 20))
    with pytest.raises(ValueError, match=f"{path}: the JPEG has more than 1 MB of bytes that are no marker"):
        load_image(path)
    path.write_bytes(jpeg[:jpeg.index(b"\xff\xda")] + b"\x00" * 1000)
    with pytest.raises(ValueError, match=f"{path}: the JPEG has no image data"):
        load_image(path)


def test_jpeg_checks_run_before_image_open(tmp_path, monkeypatch):
    """Image.open itself went over a JPEG header's junk a byte at a time
    (15 s for a header and 256 MB of zeros): the marker walk runs first, and
    a JPEG it refuses is never opened."""
    from avatarizer.imageio import MAX_JPEG_SCANS

    jpeg = _progressive(RGB)
    sos = jpeg.index(b"\xff\xda")
    opened = []
    real_open = Image.open
    monkeypatch.setattr(Image, "open", lambda *a, **k: opened.append(1) or real_open(*a, **k))
    path = tmp_path / "bad.jpg"
    for data in (jpeg[:sos] + b"\x00" * ((1 << 20) + 1) + jpeg[sos:], jpeg[:sos] + b"\x00" * 100,
                 _scans(jpeg, MAX_JPEG_SCANS + 1)):
        path.write_bytes(data)
        with pytest.raises(ValueError, match=str(path)):
            load_image(path)
    assert not opened
    path.write_bytes(jpeg[:sos] + b"\x00" * 1000 + jpeg[sos:])  # some junk: decoders skip it
    assert load_image(path).shape == RGB.shape and opened


@pytest.mark.parametrize("flag", [False, True])
def test_a_cut_jpeg_is_refused_whatever_pillows_truncation_flag(tmp_path, monkeypatch, flag):
    """An app that sets Pillow's ImageFile.LOAD_TRUNCATED_IMAGES (common in
    training code) got half a photo loaded, the rest gray; the SDK refuses a
    cut JPEG either way, and a whole one still loads with the flag set."""
    from PIL import ImageFile

    monkeypatch.setattr(ImageFile, "LOAD_TRUNCATED_IMAGES", flag)
    big = np.asarray(Image.open(ROOT / "sdk" / "avatarizer" / "data" / "astronaut.jpg"))
    for progressive in (False, True):
        out = io.BytesIO()
        Image.fromarray(big).save(out, "JPEG", progressive=progressive)
        data = out.getvalue()
        whole, cut = tmp_path / "whole.jpg", tmp_path / "cut.jpg"
        whole.write_bytes(data)
        cut.write_bytes(data[: len(data) // 2])
        assert load_image(whole).shape == big.shape
        for data in (data[: len(data) // 2], data[:-200], data[:-2]):
            cut.write_bytes(data)
            with pytest.raises(ValueError, match=str(cut)):
                load_image(cut)
    # a whole baseline JPEG whose end marker gave way to padding: Pillow loads it without the flag, and so do we with it
    padded = tmp_path / "padded.jpg"
    out = io.BytesIO()
    Image.fromarray(big).save(out, "JPEG")
    padded.write_bytes(out.getvalue()[:-2] + b"\x00" * 4096)
    assert load_image(padded).shape == big.shape


def test_a_png_with_huge_chunks_before_its_image_is_refused_unread(tmp_path):
    """Image.open reads every chunk before the image data into memory: a
    small sparse file whose text chunk said 840 MB took 1.27 GB. Refused
    from the chunk headers (sizes and count); a PNG with ordinary metadata
    (text, colour profile, EXIF) still loads."""
    from PIL import PngImagePlugin

    from avatarizer.imageio import MAX_PNG_HEAD_BYTES, MAX_PNG_HEAD_CHUNKS

    info = PngImagePlugin.PngInfo()
    info.add_text("Comment", "x" * 100_000)
    exif = Image.Exif()
    exif[0x0112] = 1
    out = io.BytesIO()
    Image.fromarray(RGB).save(out, "PNG", pnginfo=info, exif=exif)
    png = out.getvalue()
    ok = tmp_path / "ok.png"
    ok.write_bytes(png)
    np.testing.assert_array_equal(load_image(ok), RGB)
    end = 8 + 25  # (after the signature and IHDR)
    big = tmp_path / "big.png"
    with open(big, "wb") as f:
        f.write(png[:end] + struct.pack(">I4s", MAX_PNG_HEAD_BYTES + 1, b"tEXt"))
        f.seek(MAX_PNG_HEAD_BYTES + 5, 1)
        f.write(png[end:])
    with pytest.raises(ValueError, match=f"{big}: the PNG has more than 32 MB of chunks"):
        load_image(big)
    many = tmp_path / "many.png"
    many.write_bytes(png[:end] + _chunk(b"tEXt", b"k\x00v") * (MAX_PNG_HEAD_CHUNKS + 1) + png[end:])
    with pytest.raises(ValueError, match=f"more than {MAX_PNG_HEAD_CHUNKS} chunks"):
        load_image(many)
    fine = tmp_path / "fine.png"
    fine.write_bytes(png[:end] + _chunk(b"tEXt", b"k\x00v") * 100 + png[end:])
    np.testing.assert_array_equal(load_image(fine), RGB)


def test_png_chunk_limits_hold_after_the_image_and_count_exactly(tmp_path):
    """Pillow reads the chunks after the image data into memory too (up to
    IEND), and a DDAT chunk before the first IDAT is one more chunk to it,
    not image data: both count. Exactly the limit of chunks still loads."""
    from avatarizer.imageio import MAX_PNG_HEAD_BYTES, MAX_PNG_HEAD_CHUNKS

    out = io.BytesIO()
    Image.fromarray(RGB).save(out, "PNG")
    png = out.getvalue()
    end, iend = 8 + 25, png.rindex(b"IEND") - 4
    text = _chunk(b"tEXt", b"k\x00v")
    exact = tmp_path / "exact.png"
    exact.write_bytes(png[:end] + text * (MAX_PNG_HEAD_CHUNKS - 1) + png[end:])  # IHDR and these: the limit
    np.testing.assert_array_equal(load_image(exact), RGB)
    exact.write_bytes(png[:iend] + text * MAX_PNG_HEAD_CHUNKS + png[iend:])
    np.testing.assert_array_equal(load_image(exact), RGB)
    many = tmp_path / "many.png"
    many.write_bytes(png[:iend] + text * (MAX_PNG_HEAD_CHUNKS + 1) + png[iend:])
    with pytest.raises(ValueError, match=f"{many}: the PNG has more than {MAX_PNG_HEAD_CHUNKS} chunks after"):
        load_image(many)
    for at, kind, where in ((iend, b"tEXt", "after"), (end, b"DDAT", "before")):
        big = tmp_path / f"big-{where}.png"
        with open(big, "wb") as f:  # sparse: a few KB on disk
            f.write(png[:at] + struct.pack(">I4s", MAX_PNG_HEAD_BYTES + 1, kind))
            f.seek(MAX_PNG_HEAD_BYTES + 5, 1)
            f.write(png[at:])
        with pytest.raises(ValueError, match=f"{big}: the PNG has more than 32 MB of chunks {where}"):
            load_image(big)


# ---------------------------------------------------------------- PNGs whose data is short
def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def _png(pixels: np.ndarray, interlace: bool = False, drop: int = 0, idat_size: int = 0) -> bytes:
    """An 8-bit RGB PNG of ``pixels`` (no filters, Adam7 passes if
    ``interlace``) whose zlib stream, complete and valid, lacks the last
    ``drop`` rows (of the last pass); in IDAT chunks of ``idat_size`` bytes
    (0: one)."""
    h, w = pixels.shape[:2]
    parts = ([pixels[y::dy, x::dx] for x, y, dx, dy in
              ((0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2))]
             if interlace else [pixels])
    raw = b"".join(b"\x00" + row.tobytes() for part in parts if part.size for row in part)
    data = zlib.compress(raw[:len(raw) - drop * (1 + 3 * w)])
    step = idat_size or len(data)
    return (b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, int(interlace)))
            + b"".join(_chunk(b"IDAT", data[i:i + step]) for i in range(0, len(data), step))
            + _chunk(b"IEND", b""))


@pytest.mark.parametrize("interlace", [False, True])
def test_a_png_whose_data_holds_fewer_rows_than_its_header_is_refused(tmp_path, interlace):
    """The zlib stream is valid and ends after a whole row (40 of 48 rows,
    or 16 of the 24 rows of the last interlaced pass), IEND follows: Pillow
    gave the missing rows black without a word."""
    path = tmp_path / "short.png"
    path.write_bytes(_png(RGB, interlace, drop=8))
    with pytest.raises(ValueError, match=f"{path}: the PNG's image data ends after"):
        load_image(path)
    path.write_bytes(_png(RGB, interlace))
    np.testing.assert_array_equal(load_image(path), RGB)  # the same file whole


def test_a_tiny_png_declaring_a_huge_image_is_refused_before_it_is_allocated(tmp_path):
    """A file of a few hundred bytes holding 16 rows of an 8192×8192 image
    (Pillow took 7 s and ~1 GB to make it a black image)."""
    import resource

    row = b"\x00" * (1 + 3 * 8192)
    path = tmp_path / "edge.png"
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", struct.pack(">IIBBBBB", 8192, 8192, 8, 2, 0, 0, 0))
                     + _chunk(b"IDAT", zlib.compress(row * 16, 9)) + _chunk(b"IEND", b""))
    assert path.stat().st_size < 1000
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with pytest.raises(ValueError, match="ends after 393232 of the 201334784 bytes its 8192×8192 header needs"):
        load_image(path)
    assert (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024 < 100


def test_a_png_with_a_corrupt_stream_gives_value_error(tmp_path):
    data = bytearray(_png(RGB))
    data[60:70] = b"\xff" * 10  # inside the deflate data
    path = tmp_path / "corrupt.png"
    path.write_bytes(bytes(data))
    with pytest.raises(ValueError, match=str(path)):
        load_image(path)


def _pillow_png(image: Image.Image, **options) -> bytes:
    out = io.BytesIO()
    image.save(out, "PNG", **options)
    return out.getvalue()


@pytest.mark.parametrize("kind", ["RGB", "RGBA", "L", "LA", "1", "P 4-bit", "P with transparency", "I;16",
                                  "RGB 16-bit", "interlaced", "many IDATs", "animated"])
def test_ordinary_pngs_still_load(tmp_path, kind):
    image = Image.fromarray(RGB)
    want = None
    if kind in ("RGB", "RGBA", "L", "LA", "1"):
        data = _pillow_png(image.convert(kind))
        want = np.asarray(image.convert(kind).convert("RGB"))
    elif kind == "P 4-bit":
        data = _pillow_png(image.quantize(16), bits=4)
        want = np.asarray(image.quantize(16).convert("RGB"))
    elif kind == "P with transparency":
        data = _pillow_png(image.quantize(256), transparency=0)
    elif kind == "I;16":
        data = _pillow_png(Image.fromarray(RGB[..., 0].astype(np.uint16) * 257))
        want = np.repeat(RGB[..., :1], 3, axis=2)
    elif kind == "RGB 16-bit":
        import cv2

        data = cv2.imencode(".png", RGB.astype(np.uint16) * 257)[1].tobytes()
    elif kind == "interlaced":
        data = _png(RGB, interlace=True, idat_size=100)
        want = RGB
    elif kind == "many IDATs":
        data = _png(RGB, idat_size=7)
        want = RGB
    else:
        data = _pillow_png(image, save_all=True, append_images=[image.transpose(Image.Transpose.ROTATE_180)])
        want = RGB
    path = tmp_path / "ok.png"
    path.write_bytes(data)
    out = load_image(path)
    assert out.shape == RGB.shape
    if want is not None:
        np.testing.assert_array_equal(out, want)


def test_a_png_whose_image_data_was_changed_is_refused_by_its_crc(tmp_path):
    """A byte of the image data changed (in a stored block: zlib cannot
    tell), zlib's own checksum in an IDAT chunk of its own: Pillow does not
    read IDAT CRCs and stops inflating at the last row, so it gave the
    changed pixels without a word. The chunk's CRC says so; libpng refuses
    such a file too."""
    whole = _png(RGB)
    start = whole.index(b"IDAT") + 4
    stream = whole[start:start + struct.unpack(">I", whole[start - 8:start - 4])[0]]
    assert stream[2] & 0b110 == 0  # a stored block
    changed = bytearray(stream[:-4])
    changed[500] ^= 0x40
    path = tmp_path / "changed.png"
    first = _chunk(b"IDAT", bytes(changed))[:-4] + struct.pack(">I", zlib.crc32(b"IDAT" + stream[:-4]))
    path.write_bytes(whole[:start - 8] + first + _chunk(b"IDAT", stream[-4:]) + _chunk(b"IEND", b""))
    with pytest.raises(ValueError, match=f"{path}: the PNG's image data is corrupt .*CRC"):
        load_image(path)


def _matrix_profile(name: str, primaries, gamma: float) -> bytes:
    """A small ICC v2 RGB display profile (D65 primaries, one gamma curve),
    made here: what phones (Display P3) and Adobe RGB files embed."""
    import struct

    def xyz(x, y):
        return np.array([x / y, 1.0, (1 - x - y) / y])

    m = np.stack([xyz(*p) for p in primaries], 1)
    m = m * np.linalg.solve(m, xyz(0.3127, 0.3290))
    br = np.array([[0.8951, 0.2664, -0.1614], [-0.7502, 1.7135, 0.0367], [0.0389, -0.0685, 1.0296]])
    d50 = np.array([0.9642, 1.0, 0.8249])
    m = np.linalg.inv(br) @ np.diag((br @ d50) / (br @ xyz(0.3127, 0.3290))) @ br @ m  # Bradford to D50

    def s15(v):
        return struct.pack(">i", int(round(v * 65536)))

    def xyz_tag(v):
        return b"XYZ " + b"\0" * 4 + b"".join(s15(c) for c in v)

    trc = b"curv" + b"\0" * 4 + struct.pack(">I", 1) + struct.pack(">H", int(round(gamma * 256))) + b"\0\0"
    text = name.encode() + b"\0"
    desc = b"desc" + b"\0" * 4 + struct.pack(">I", len(text)) + text + b"\0" * 78
    tags = [(b"desc", desc), (b"wtpt", xyz_tag(d50)), (b"rXYZ", xyz_tag(m[:, 0])), (b"gXYZ", xyz_tag(m[:, 1])),
            (b"bXYZ", xyz_tag(m[:, 2])), (b"rTRC", trc), (b"gTRC", trc), (b"bTRC", trc)]
    table, data, off = b"", b"", 128 + 4 + 12 * len(tags)
    for sig, t in tags:
        t += b"\0" * (-len(t) % 4)
        table += sig + struct.pack(">II", off + len(data), len(t))
        data += t
    body = struct.pack(">I", len(tags)) + table + data
    head = (struct.pack(">I", 128 + len(body)) + b"lcms" + bytes([2, 0x10, 0, 0]) + b"mntrRGB XYZ " + b"\0" * 12
            + b"acspAPPL" + b"\0" * 24 + s15(0.9642) + s15(1.0) + s15(0.8249) + b"\0" * 48)
    assert len(head) == 128
    return head + body


@pytest.mark.parametrize("name,primaries,gamma", [
    ("Adobe RGB (test)", [(0.64, 0.33), (0.21, 0.71), (0.15, 0.06)], 2.2),
    ("Display P3 (test)", [(0.680, 0.320), (0.265, 0.690), (0.150, 0.060)], 2.2),
    ("Linear sRGB (test)", [(0.64, 0.33), (0.30, 0.60), (0.15, 0.06)], 1.0)])  # (sRGB by name only)
def test_an_embedded_colour_profile_is_converted_to_srgb(tmp_path, name, primaries, gamma):
    """A photo in a wide-gamut space (a phone's Display P3, Adobe RGB) carries
    its profile: its numbers read as sRGB drew skin up to 14 levels less red
    and flipped hair colour classes (a review, session 33). ``load_image``
    converts through the profile: the picture comes back within a level or
    two of the sRGB original it was made from; the numbers as stored are
    far off. An sRGB-tagged file is read as it is."""
    from PIL import ImageCms

    src = np.asarray(Image.open(ROOT / "sdk" / "avatarizer" / "data" / "astronaut.jpg").convert("RGB"))
    prof = _matrix_profile(name, primaries, gamma)
    wide = ImageCms.profileToProfile(Image.fromarray(src), ImageCms.createProfile("sRGB"),
                                     ImageCms.ImageCmsProfile(io.BytesIO(prof)), outputMode="RGB")
    for ext in ("png", "jpg"):
        path = tmp_path / f"wide.{ext}"
        wide.save(path, icc_profile=prof, **({"quality": 98} if ext == "jpg" else {}))
        got = load_image(path).astype(int)
        assert np.abs(got - src).mean() < (0.6 if ext == "png" else 2.5), ext
        assert np.abs(np.asarray(wide, int) - src).mean() > 3 * np.abs(got - src).mean()  # (the case: far off)
    Image.fromarray(src).save(tmp_path / "s.png", icc_profile=ImageCms.ImageCmsProfile(
        ImageCms.createProfile("sRGB")).tobytes())
    np.testing.assert_array_equal(load_image(tmp_path / "s.png"), src)
    # the same conversion for a PIL image handed to from_frame / to_rgb_uint8
    with Image.open(tmp_path / "wide.png") as im:
        assert np.abs(to_rgb_uint8(im).astype(int) - src).mean() < 0.6
    # a profile lcms cannot read: the numbers as they are
    Image.fromarray(src).save(tmp_path / "bad.png", icc_profile=b"not a profile" * 20)
    np.testing.assert_array_equal(load_image(tmp_path / "bad.png"), src)


def test_a_16_bit_tiff_whose_zero_is_white_is_not_a_negative(tmp_path):
    """Pillow opens a 16-bit TIFF of photometric interpretation 0
    (WhiteIsZero) as plain I;16: it loaded as a photo negative (it inverts
    the 8-bit kind itself)."""
    gray = np.asarray(Image.open(ROOT / "sdk" / "avatarizer" / "data" / "astronaut.jpg").convert("L"))
    stored = (65535 - gray.astype(np.uint32) * 257).astype(np.uint16)
    path = tmp_path / "w.tif"
    Image.fromarray(stored).save(path, tiffinfo={262: 0})
    assert Image.open(path).mode.startswith("I;16")
    got = load_image(path)[..., 0].astype(int)
    assert np.abs(got - gray).max() <= 1


def test_a_pil_image_that_cannot_be_decoded_is_a_value_error(tmp_path):
    """``from_frame`` / ``to_rgb_uint8`` of a lazily opened PIL image of a cut
    file raised Pillow's OSError, not the documented ValueError."""
    data = (ROOT / "sdk" / "avatarizer" / "data" / "astronaut.jpg").read_bytes()
    cut = tmp_path / "cut.jpg"
    cut.write_bytes(data[: len(data) * 6 // 10])
    with pytest.raises(ValueError, match="cannot be decoded"):
        to_rgb_uint8(Image.open(cut))


@pytest.mark.parametrize("fmt", ["GIF", "WEBP", "PNG", "TIFF"])
def test_an_animated_or_multi_page_image_gives_its_first_frame(tmp_path, fmt):
    frames = [Image.fromarray(np.full((48, 64, 3), c, np.uint8)) for c in (40, 200, 120)]
    path = tmp_path / f"moving.{fmt.lower()}"
    frames[0].save(path, format=fmt, save_all=True, append_images=frames[1:], duration=100)
    with Image.open(path) as im:
        assert getattr(im, "n_frames", 1) == 3  # (really three frames)
    got = load_image(path)
    assert got.shape == (48, 64, 3) and abs(float(got.mean()) - 40) < 3


def test_an_unreadable_file_is_named_in_the_error(tmp_path):
    """The file watcher passed to Image.open made Pillow's message name an
    object (``<avatarizer.imageio._ReadWatch object at 0x...>``)."""
    path = tmp_path / "notes.txt"
    path.write_text("not an image")
    with pytest.raises(ValueError) as exc:
        load_image(path)
    assert "_ReadWatch" not in str(exc.value) and "notes.txt" in str(exc.value)
    # (nor Pillow's own file object: "cannot identify image file <_io.BufferedReader name='bad.jpg'>")
    assert "<_io" not in str(exc.value) and "not a format this SDK reads" in str(exc.value)


def test_a_float_image_a_little_over_one_is_told_to_clip_to_one_not_to_255():
    """A [0, 1] image one float step over 1 (a brightened photo, float32
    rounding) was told its values were "in [0, 1]" (printed with :g) and to
    clip to 0..255, which blanks it; now the bounds are printed as they are
    and the hint is np.clip(image, 0, 1). 0..255 data keeps its hint."""
    from avatarizer.imageio import to_rgb_uint8

    img = np.full((40, 40, 3), 0.5, np.float32)
    img[0, 0, 0] = np.nextafter(np.float32(1), np.float32(2))
    with pytest.raises(ValueError) as e:
        to_rgb_uint8(img)
    msg = str(e.value)
    assert "1.0000001" in msg and "np.clip(image, 0, 1)" in msg and "0, 255" not in msg
    with pytest.raises(ValueError, match=r"np\.clip\(image, 0, 255\)"):
        to_rgb_uint8(np.full((40, 40, 3), 200.0, np.float32))
    with pytest.raises(ValueError) as e:
        to_rgb_uint8(np.full((40, 40, 3), -50.0, np.float32))
    assert "np.clip" not in str(e.value)


def test_an_animated_pngs_hidden_default_image_is_not_read(tmp_path):
    """An APNG whose default image is not part of its animation (a fallback
    picture for viewers without APNG support, which APNG-aware players never
    show): ``load_image`` read the green fallback as the photo ("no face
    found"), and ``video`` played it as a first frame (3 frames where the
    animation has 2). The animation's first frame is read; its frames are
    the animation's (a review, session 66)."""
    from PIL import Image

    from avatarizer import videoio
    from avatarizer.imageio import load_image, sample_photo

    face = Image.fromarray(sample_photo()).resize((128, 128))
    fallback = Image.new("RGB", face.size, (0, 255, 0))
    path = tmp_path / "hidden.png"
    fallback.save(path, save_all=True, append_images=[face, face.rotate(90)], default_image=True, duration=100)
    with Image.open(path) as im:
        assert im.info.get("default_image") and im.n_frames == 3  # (Pillow counts the fallback as frame 0)
    rgb = load_image(path)
    green = (rgb[..., 1] > 200) & (rgb[..., 0] < 50) & (rgb[..., 2] < 50)
    assert green.mean() < 0.01 and np.abs(rgb.astype(int) - np.asarray(face)).mean() < 8
    im, durations = videoio.animated_image(path)
    cap = videoio.ImageFrames(im, durations)
    frames = []
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        frames.append(frame)
    cap.release()
    assert len(durations) == 2 and len(frames) == 2
    assert all(((f[..., 1] > 200) & (f[..., 2] < 50)).mean() < 0.01 for f in frames)  # (BGR: no green frame)
    # an APNG whose default image is its first frame keeps it
    plain = tmp_path / "plain.png"
    face.save(plain, save_all=True, append_images=[face.rotate(90)], duration=100)
    assert len(videoio.animated_image(plain)[1]) == 2


def test_a_file_too_small_or_too_large_is_said_as_an_image_not_an_array(tmp_path):
    """``load_image`` of a file under 32 or over 8192 pixels a side: the
    error spoke of H×W×3 uint8 arrays and PIL images to one who gave a file
    (a review, session 68); now "an image ... an image file (W×H pixels)".
    An array keeps the full list of what is accepted."""
    from avatarizer.imageio import MIN_SIDE, load_image, to_rgb_uint8

    small = tmp_path / "small.png"
    Image.new("RGB", (8, 12)).save(small)
    with pytest.raises(ValueError) as exc:
        load_image(small)
    msg = str(exc.value)
    assert f"Expected an image at least {MIN_SIDE} pixels on each side" in msg and "(8×12 pixels)" in msg
    assert "uint8" not in msg and "PIL" not in msg
    with pytest.raises(ValueError, match="H×W×3 uint8"):
        to_rgb_uint8(np.zeros((8, 12, 3), np.uint8))
    from avatarizer import videoio  # (an animated file too: the live preview and video read it so)

    anim = tmp_path / "small_anim.png"
    Image.new("RGB", (8, 12)).save(anim, save_all=True, append_images=[Image.new("RGB", (8, 12), "red")],
                                   duration=100)
    with pytest.raises(ValueError) as exc:
        videoio.animated_image(anim)
    assert "Expected an image at least" in str(exc.value) and "uint8" not in str(exc.value)


def test_a_cut_out_is_read_over_a_light_grey_and_a_uniform_alpha_is_dropped(tmp_path):
    """Transparent pixels (a background remover's (0, 0, 0, 0)) were read as
    the colour stored under them, black: on 60 cut-out portraits the drawn
    gender, hair or glasses differed from the photo's 26 times (11 over the
    grey). A camera's BGRA frame with a constant alpha keeps its colours."""
    from avatarizer.imageio import CUTOUT_BACKGROUND, flatten_alpha

    rgb = RGB.copy()
    alpha = np.full(rgb.shape[:2], 255, np.uint8)
    alpha[:, : rgb.shape[1] // 2] = 0
    alpha[0, -1] = 128
    cut = np.dstack([np.where(alpha[..., None] > 0, rgb, 0), alpha]).astype(np.uint8)
    want = rgb.copy()
    want[:, : rgb.shape[1] // 2] = CUTOUT_BACKGROUND
    want[0, -1] = (rgb[0, -1].astype(int) * 128 + CUTOUT_BACKGROUND * 127 + 127) // 255
    np.testing.assert_array_equal(to_rgb_uint8(cut), want)
    np.testing.assert_array_equal(to_rgb_uint8(np.ascontiguousarray(cut[..., [2, 1, 0, 3]]), "bgr"), want)
    np.testing.assert_array_equal(to_rgb_uint8(Image.fromarray(cut, "RGBA")), want)
    Image.fromarray(cut, "RGBA").save(tmp_path / "cut.png")
    np.testing.assert_array_equal(load_image(tmp_path / "cut.png"), want)
    # a grey cut-out (LA) and a palette image with a transparent colour alike
    la = Image.fromarray(np.dstack([rgb[..., 1], alpha]), "LA")
    got = to_rgb_uint8(la)
    assert (got[:, 0] == CUTOUT_BACKGROUND).all() and (got[1:, -1] == rgb[1:, -1, 1:2]).all()
    pal = Image.fromarray(cut[..., :3]).quantize(64)
    index = pal.getpixel((0, 0))
    pal.info["transparency"] = index
    got = to_rgb_uint8(pal)
    assert (got[np.asarray(pal) == index] == CUTOUT_BACKGROUND).all()
    # a tall cut-out (composited in bands of rows): as the formula, everywhere
    tall = np.random.default_rng(5).integers(0, 256, (700, 40, 4), dtype=np.uint8)
    tall[:300, :, 3] = 255
    w = tall[..., 3:].astype(int)
    ref = (tall[..., :3].astype(int) * w + CUTOUT_BACKGROUND * (255 - w) + 127) // 255
    np.testing.assert_array_equal(flatten_alpha(np.ascontiguousarray(tall[..., :3]), tall[..., 3]), ref)
    # a uniform alpha (0 as some grabbers send, or 255) means nothing: the colours as they are
    for a in (0, 255, 77):
        frame = np.dstack([rgb, np.full(rgb.shape[:2], a, np.uint8)])
        np.testing.assert_array_equal(to_rgb_uint8(frame), rgb)
        np.testing.assert_array_equal(to_rgb_uint8(Image.fromarray(frame, "RGBA")), rgb)
        assert flatten_alpha(rgb, frame[..., 3]) is rgb
