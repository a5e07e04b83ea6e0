"""Image input for the runtime pipeline: everything becomes H×W×3 uint8 RGB.

Every stage of the SDK works on one kind of image: a C-contiguous
``(H, W, 3)`` ``uint8`` array in RGB order. :func:`to_rgb_uint8` turns the
inputs people actually have (OpenCV BGR frames, RGBA screenshots, grayscale
scans, float images in [0, 1], PIL images) into that, and rejects everything
else with a :class:`ValueError` that says what was received and what is
expected. :func:`load_image` reads a file into the same form.

The caller's array is never modified. When the input already is a
C-contiguous RGB ``uint8`` image it is returned as is (no copy), so the
result may share memory with the input.
"""

from __future__ import annotations

import os
import re
import stat
import struct
import warnings
import zlib
from functools import lru_cache
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from PIL import Image, ImageFile, UnidentifiedImageError

from .errors import MissingFileError

__all__ = ["MIN_SIDE", "MAX_SIDE", "COLOR_ORDERS", "SAMPLE_PHOTO", "to_rgb_uint8", "load_image", "sample_photo",
           "CUTOUT_BACKGROUND", "flatten_alpha"]

#: Smallest accepted image side in pixels; below this no face is findable.
MIN_SIDE = 32
#: Largest accepted image side in pixels; guards against decompression bombs
#: and accidental huge allocations (downscale larger images first).
MAX_SIDE = 8192
#: Accepted values of ``color_order``.
COLOR_ORDERS = ("rgb", "bgr")
#: The sample portrait shipped inside the package: NASA's photograph of the
#: astronaut Eileen Collins, public domain (provenance in ``data/README.md``).
SAMPLE_PHOTO = Path(__file__).resolve().parent / "data" / "astronaut.jpg"

_EXPECTED = (
    "an H×W×3 uint8 RGB image (also accepted: H×W×4 with alpha, H×W or H×W×1 "
    "grayscale, floats in [0, 1], or a PIL image)"
)


#: the grey (each channel, 0-255) a cut-out's transparent pixels are read on
#: (:func:`flatten_alpha`). On 60 held-out FFHQ portraits cut out with the
#: person mask, the drawn gender, hair colour and length, glasses, beard,
#: bald head or skin tone (1.5 steps) differed from the photo's own 26 times
#: read on black (what dropping the alpha channel gave a cut-out stored as
#: (0, 0, 0, 0)), 19 on white, 13 on grey 128, 11 on grey 200 (session 73).
CUTOUT_BACKGROUND = 200


def flatten_alpha(rgb: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """``rgb`` (H×W×3 uint8) over a :data:`CUTOUT_BACKGROUND` grey by
    ``alpha`` (H×W uint8, straight) where the alpha channel marks something
    transparent (it varies); ``rgb`` itself where it is uniform: a camera's
    or screen grabber's BGRA frame carries a constant, often 0, alpha that
    means nothing."""
    lo, hi = (int(alpha.min()), int(alpha.max())) if alpha.size else (255, 255)
    if lo == hi:
        return rgb
    out = np.array(rgb, np.uint8, order="C", copy=True)
    for y0 in range(0, out.shape[0], 256):  # (bands of rows: a whole 8192² image's uint16 temporaries took GBs)
        a = alpha[y0:y0 + 256]
        seen = a < 255
        if not seen.any():
            continue
        w = a[seen].astype(np.uint16)[:, None]
        band = out[y0:y0 + 256]
        band[seen] = ((band[seen].astype(np.uint16) * w + CUTOUT_BACKGROUND * (255 - w) + 127) // 255).astype(np.uint8)
    return out


def to_rgb_uint8(image: Any, color_order: str = "rgb") -> np.ndarray:
    """Convert ``image`` to a C-contiguous ``(H, W, 3)`` ``uint8`` RGB array.

    Args:
        image: a numpy array or a ``PIL.Image.Image``. Arrays may be
            ``(H, W, 3)`` colour, ``(H, W, 4)`` colour with alpha (a cut-out,
            whose alpha varies, is read over a light grey,
            :func:`flatten_alpha`; a uniform alpha channel, as a camera's
            BGRA frames carry, is dropped), ``(H, W)`` or ``(H, W, 1)``
            grayscale (replicated to three channels), of dtype ``uint8`` or
            floating point with every value in [0, 1] (scaled by 255 and
            rounded). PIL images are converted to RGB (through an embedded
            colour profile that is not sRGB, as :func:`load_image`).
        color_order: ``"rgb"`` (default) or ``"bgr"`` for arrays from OpenCV
            (``cv2.imread``, ``cv2.VideoCapture``); for 4-channel arrays
            ``"bgr"`` means BGRA. Ignored for grayscale arrays. PIL images
            are always RGB, so only ``"rgb"`` is accepted with them.

    Returns:
        A C-contiguous ``(H, W, 3)`` ``uint8`` RGB array. It is ``image``
        itself when no conversion was needed; otherwise a new array.

    Raises:
        ValueError: for any other input: an unknown ``color_order``, a
            non-image object, a wrong number of dimensions or channels, an
            empty image, a side shorter than ``MIN_SIDE`` or longer than
            ``MAX_SIDE`` pixels, integer dtypes other than uint8, bool,
            complex or object arrays, and float images with values outside
            [0, 1] or not finite. The message says what was received.
    """
    if not isinstance(color_order, str) or color_order not in COLOR_ORDERS:
        raise ValueError(
            f"color_order must be 'rgb' or 'bgr', got {color_order!r}."
        )
    # the common case (a video frame already as wanted), without building the
    # messages of the checks below: every frame goes through here, some twice
    if (type(image) is np.ndarray and image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3
            and color_order == "rgb" and image.flags.c_contiguous
            and MIN_SIDE <= min(image.shape[0], image.shape[1]) and max(image.shape[0], image.shape[1]) <= MAX_SIDE):
        return image

    if isinstance(image, Image.Image):
        if color_order != "rgb":
            raise ValueError(
                "color_order='bgr' does not apply to PIL images, which are "
                "always RGB; pass color_order='rgb'."
            )
        _check_size(image.height, image.width, f"a PIL image of size {image.width}×{image.height}")
        try:
            # decoded first (a lazily opened image: a cut file raised OSError here), as load_image does: a
            # TIFF's loading turns it by its orientation itself and drops the tag (read before, it was turned
            # twice); then an image as opened (Image.open: its format known) upright by its EXIF orientation,
            # as load_image reads a file (a phone photo was a face on its side); one the app made from it
            # (transposed, converted: format None, the tag still copied) as it is
            image.load()
            rgb = _pil_rgb(_upright(image) if image.format is not None else image)
        except ValueError as exc:  # (Pillow's "Operation on closed image", the size checks of _pil_rgb)
            raise ValueError(f"a PIL image that cannot be used ({exc})") from None
        except Exception as exc:  # noqa: BLE001 - as load_image: Pillow's decoders raise OSError, SyntaxError,
            # EOFError, and a closed image (a `with Image.open(...)` block left) an AssertionError
            detail = str(exc) or ("it was closed" if getattr(image, "fp", 0) is None else type(exc).__name__)
            raise ValueError(f"a PIL image that cannot be decoded ({detail})") from None
        return np.array(rgb, dtype=np.uint8, order="C")

    if not isinstance(image, np.ndarray):
        raise ValueError(
            f"Expected {_EXPECTED} as a numpy array, but got an object of type "
            f"{type(image).__module__}.{type(image).__qualname__}; convert it "
            "with np.asarray(...) first."
        )
    image = np.asarray(image)  # drop ndarray subclasses (masked, matrix); no copy

    what = _What(image)  # formatted only into an error message
    _check_dtype(image, what)
    gray = _check_shape(image, what)
    _check_size(image.shape[0], image.shape[1], what)

    if image.dtype != np.uint8:
        image = _float_to_uint8(image, what)  # new array from here on
    if gray:
        image = image.reshape(image.shape[:2])  # a view when it can be
        return cv2.cvtColor(np.ascontiguousarray(image), cv2.COLOR_GRAY2RGB)

    channels = image.shape[2]
    if channels == 3 and color_order == "rgb":
        return np.ascontiguousarray(image)
    code = {
        (3, "bgr"): cv2.COLOR_BGR2RGB,
        (4, "rgb"): cv2.COLOR_RGBA2RGB,
        (4, "bgr"): cv2.COLOR_BGRA2RGB,
    }[(channels, color_order)]
    # cvtColor writes a new array; ascontiguousarray copies only when needed.
    rgb = cv2.cvtColor(np.ascontiguousarray(image), code)
    # (a cut-out's transparent pixels, often stored black, were read as they are: on 60 portraits the drawn
    # gender, hair or glasses differed from the photo's 26 times, 11 over the grey; a review, session 73)
    return flatten_alpha(rgb, image[..., 3]) if channels == 4 else rgb


def load_image(path: str | os.PathLike) -> np.ndarray:
    """Read an image file into a ``(H, W, 3)`` ``uint8`` RGB array.

    The EXIF orientation tag is applied, so phone photos come out upright
    (one that cannot be read leaves the image as stored; other EXIF tags,
    broken or not, do not matter).
    Any format Pillow reads is accepted but icon files (ICO, CUR, ICNS); a cut-out (transparent pixels) is
    read over a light grey (:func:`flatten_alpha`), a uniform alpha channel dropped; grayscale and
    palette images are converted to RGB. An embedded colour profile that is
    not sRGB (a phone's Display P3, Adobe RGB, CMYK) is converted to sRGB
    through it (littlecms), so the colours are the photo's; not for 16-bit,
    32-bit or float grayscale images (scaled to 8 bits as they are) nor a
    profile over :data:`MAX_ICC_BYTES`. An animated image (GIF, WebP, APNG)
    or a multi-page one (TIFF) gives its first frame (every frame, timed as
    the file says: ``avatarizer video``; in Python, ``PIL.ImageSequence``
    and ``Avatarizer.from_frames``).

    The size is read from the file's header and checked against
    ``MIN_SIDE``/``MAX_SIDE`` *before* any pixel is decoded, so a small file
    that declares a huge image (a decompression bomb) is refused without
    allocating it. So is a JPEG with more than :data:`MAX_JPEG_SCANS` scans
    (each is a pass over the whole image: a small file could take minutes),
    with none, or with more than :data:`MAX_JPEG_HEADER_JUNK` bytes of junk
    in its header (``Image.open`` reads it a byte at a time), and a PNG with
    more than :data:`MAX_PNG_HEAD_BYTES` or :data:`MAX_PNG_HEAD_CHUNKS` of
    chunks before its image data or after it (Pillow reads them into
    memory). A cut JPEG or PNG is refused even where the app has set
    Pillow's ``ImageFile.LOAD_TRUNCATED_IMAGES`` (a JPEG whose data runs out
    while it is decoded; a whole one whose end marker gave way to padding
    loads, as it does without the flag).

    Raises:
        FileNotFoundError: if nothing exists at ``path`` (a
            :class:`~avatarizer.errors.MissingFileError`, which is also a
            ``ValueError``).
        ValueError: if ``path`` is a directory or not a regular file (a named
            pipe or device, which could block forever), cannot be decoded as an
            image (whatever Pillow raised on it), is an icon file (:data:`ICON_FORMATS`) or a BLP or EPS
            file (:data:`CONTAINER_FORMATS`), declares a size
            outside ``MIN_SIDE``..``MAX_SIDE``, is a JPEG with more than
            :data:`MAX_JPEG_SCANS` scans, none, too much junk in its header
            or (the flag set) data that runs out, is a PNG with too much
            before or after its image data, or
            decodes to an image :func:`to_rgb_uint8` rejects; the message
            names the path.
    """
    if not isinstance(path, (str, os.PathLike)):
        raise ValueError(f"Expected an image file path (str or os.PathLike), got {type(path).__name__}.")
    try:
        path = Path(path)
        mode = path.stat().st_mode
    except FileNotFoundError:
        raise MissingFileError(f"No image file at {path}.") from None
    except (OSError, TypeError, ValueError) as exc:  # permissions, NUL bytes, over-long names, bytes paths
        raise ValueError(f"Could not read {path!s}: {exc}") from None
    if stat.S_ISDIR(mode):
        raise ValueError(f"{path} is a directory, not an image file.")
    if not stat.S_ISREG(mode):
        raise ValueError(f"{path} is not a regular file (a named pipe, socket or device); "
                         "pass an image file on disk.")
    try:
        with open(path, "rb") as f, warnings.catch_warnings():
            # Pillow only warns below 2x its own pixel limit; the check below refuses first
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            # before Image.open, which reads a PNG's chunks before its image data into memory and a
            # JPEG's header a byte at a time
            _check_png_head(f)
            _check_jpeg_head(f)
            watched = _ReadWatch(f)
            try:
                opened = Image.open(watched, formats=_formats())
            except Image.DecompressionBombError as exc:
                # (over twice Pillow's own pixel limit it refuses in Image.open, before the size check below:
                # its words were given, not this SDK's; a review, session 76)
                got = re.search(r"\((\d+) pixels\)", str(exc))
                if got is None or int(got.group(1)) <= MAX_SIDE * MAX_SIDE:  # (an app lowered Pillow's limit:
                    raise  # its words, the only true ones; below handled as every unreadable file)
                raise ValueError(f"Expected an image at most {MAX_SIDE} pixels on each side, but got an image file "
                                 f"of {int(got.group(1))} pixels; downscale it first.") from None
            # Image.open reads only the header: refuse a bad size before decoding
            width, height = opened.size
            _check_size(height, width, "an image file")
            _check_data(f, opened)
            watched.ran_out = False
            if hidden_default_image(opened):  # (the animation's first frame, not the fallback picture)
                opened.seek(1)
            opened.load()
            if watched.ran_out and opened.format in _JPEG_FORMATS and ImageFile.LOAD_TRUNCATED_IMAGES:
                raise ValueError("the JPEG is cut: its data ends before the image does (a cut file is refused "
                                 "even with Pillow's ImageFile.LOAD_TRUNCATED_IMAGES set)")
            _check_size(*opened.size[::-1], "an image file")  # (what was decoded, should a header lie)
            rgb = np.asarray(_pil_rgb(_upright(opened)))  # (an array: to_rgb_uint8 turns PIL images itself)
            opened.close()
    except ValueError as exc:
        raise ValueError(f"{path}: {exc}") from None
    except UnidentifiedImageError as exc:
        # (Pillow's text names its file object: "cannot identify image file <_io.BufferedReader name=...>")
        raise ValueError(f"Could not read {path} as an image: not a format this SDK reads (PNG, JPEG, WebP, "
                         "BMP, GIF, TIFF ...)"
                         + (" (icon files are not read: their header does not give the size of the "
                            "image they hold; save the picture as PNG or JPEG)" if _is_icon(path) else "")
                         ) from exc
    except (OSError, Image.DecompressionBombError, SyntaxError, EOFError, MemoryError) as exc:
        raise ValueError(f"Could not read {path} as an image: {exc}") from exc
    except Exception as exc:  # noqa: BLE001 - Pillow's plugins raise what they like on crafted files
        # (TypeError for a TIFF's offsets typed float, NotImplementedError for a DDS pixel format, ...)
        raise ValueError(f"Could not read {path} as an image: {type(exc).__name__}: {exc}") from exc
    try:
        return to_rgb_uint8(rgb)
    except ValueError as exc:
        raise ValueError(f"{path}: {exc}") from exc


#: Pillow formats refused by :func:`load_image`: icon containers hold images
#: of any size (an embedded PNG) behind a header that says at most 256×256,
#: so the size check before decoding cannot see a decompression bomb there.
ICON_FORMATS = ("ICO", "CUR", "ICNS")
#: Other Pillow formats refused by :func:`load_image`: BLP (a game texture)
#: wraps a JPEG whose own size no check before decoding reads (a 64×64
#: header around a 12000×12000 JPEG took 1.6 GB; a progressive one's scans
#: are not counted either), and EPS is PostScript that Pillow hands to
#: Ghostscript, a program of its own, with no time limit (a loop hangs it).
CONTAINER_FORMATS = ("BLP", "EPS")


#: Most scans a JPEG read by :func:`load_image` may have. The decoder goes
#: over the whole image once per scan of a progressive JPEG, so a file that
#: repeats a scan (99 bytes each) costs 0.1 s a scan at 8192×8192: 270 KB
#: took 14 s, 500 KB would take minutes. Encoders write 1 to 3 scans
#: (baseline) or about 10 (progressive).
MAX_JPEG_SCANS = 100

#: How much of a file the checks before decoding read at a time.
_CHUNK = 1 << 20


class _ReadWatch:
    """A file that notes when a read finds nothing left (``ran_out``): a
    JPEG decoder that runs out of data before the image ends is what Pillow
    refuses as truncated, unless the app has set
    ``ImageFile.LOAD_TRUNCATED_IMAGES`` (it then ends the data itself and
    leaves the rest of the image gray). A whole JPEG, also one whose end
    marker gave way to padding, is decoded without such a read (one that
    merely lacks its last two bytes is not: Pillow refuses it too)."""

    def __init__(self, f):
        self._f, self.ran_out = f, False

    def read(self, size: int = -1) -> bytes:
        data = self._f.read(size)
        if size != 0 and not data:
            self.ran_out = True
        return data

    def __getattr__(self, name: str):
        return getattr(self._f, name)

    def __repr__(self) -> str:  # (Pillow's "cannot identify image file ..." names it: the file, not this)
        return repr(self._f)


#: The Pillow formats of a JPEG file (MPO: JPEGs in a row, Pillow decodes the first).
_JPEG_FORMATS = ("JPEG", "MPO")


def _check_data(f, opened) -> None:
    """Refuse, before Pillow decodes it, a PNG (``opened``, as ``Image.open``
    gave it) whose image data is short or damaged (:func:`_check_png_data`),
    which Pillow decodes without a word, or whose chunks after the image
    data are too many or too long (:func:`_check_png_tail`). Reads ``f`` from
    the start and leaves it where it was."""
    if opened.format != "PNG":
        return
    at = f.tell()
    try:
        _check_png_data(f)
        _check_png_tail(f, getattr(opened, "is_animated", False))
    finally:
        f.seek(at)


#: Most bytes a JPEG read by :func:`load_image` may have between the
#: segments of its header (nothing, in what encoders write): ``Image.open``
#: goes over them a byte at a time in Python (256 MB took 15 s).
MAX_JPEG_HEADER_JUNK = 1 << 20


def _check_jpeg_head(f) -> None:
    """Refuse, before ``Image.open`` reads it, a JPEG with more than
    :data:`MAX_JPEG_SCANS` scans, with none (a header and then anything:
    Pillow took 15 s to open a header and 256 MB of zeros, 134 s for 2 GB),
    or with more than :data:`MAX_JPEG_HEADER_JUNK` bytes between the
    segments before its first scan, from its markers. Anything that does
    not start as a JPEG does is left to ``Image.open``. Reads ``f`` from
    the start and leaves it where it was."""
    at = f.tell()
    try:
        f.seek(0)
        if f.read(3) != b"\xff\xd8\xff":  # (what Pillow's JPEG and MPO plugins accept)
            return
        scans, junk = _jpeg_scans(f, MAX_JPEG_SCANS + 1, MAX_JPEG_HEADER_JUNK)
    finally:
        f.seek(at)
    if junk > MAX_JPEG_HEADER_JUNK:
        raise ValueError(f"the JPEG has more than {MAX_JPEG_HEADER_JUNK >> 20} MB of bytes that are no marker "
                         "between the segments of its header (Pillow reads them a byte at a time)")
    if scans > MAX_JPEG_SCANS:
        raise ValueError(f"the JPEG has more than {MAX_JPEG_SCANS} scans (a photo has 1 to about 10; "
                         "decoding each is a pass over the whole image, so such a file can take minutes)")
    if scans == 0:
        raise ValueError("the JPEG has no image data (no scan after its header)")


#: A JPEG marker: 0xFF and a code other than 0x00 (a stuffed 0xFF in a
#: scan's data), 0xFF (a fill byte: the marker starts at the last one) and
#: 0xD0..0xD7 (restart markers, part of a scan's data). Searched for from
#: where the decoder looks for the next marker, skipping what is before it
#: as libjpeg does.
_JPEG_MARKER = re.compile(rb"\xff[\x01-\xcf\xd8-\xfe]")


def _jpeg_scans(f, stop: int, max_junk: int | None = None) -> tuple[int, int]:
    """The number of scans (SOS markers) in the JPEG in ``f``, counting no
    further than ``stop``, and how many bytes before the first scan are no
    marker nor segment (junk, which the decoder skips), counting no further
    than just past ``max_junk``.

    Walks the markers from the start of the file to its first EOI as libjpeg
    does (a marker segment is skipped by its length, a scan's data and
    anything between segments up to the next marker), so a JPEG inside a
    segment (an EXIF thumbnail) or after the image (MPO) does not count.
    Reads the file once, a megabyte at a time: the regular expression runs
    at ~1 ms per MB (10 ms per MB of nothing but stuffed 0xFF bytes).
    """
    scans, junk, pos, start, buf = 0, 0, 2, 0, b""  # after SOI
    while scans < stop and (max_junk is None or junk <= max_junk):
        if not start <= pos <= start + len(buf) - 4:  # the window must hold a marker and its length
            f.seek(pos)
            start, buf = pos, f.read(_CHUNK)
            if len(buf) < 2:
                junk += 0 if scans else len(buf)
                break
        found = _JPEG_MARKER.search(buf, pos - start)
        if found is None:
            if len(buf) < _CHUNK:  # the end of the file
                junk += 0 if scans else start + len(buf) - pos
                break
            junk += 0 if scans else start + len(buf) - 1 - pos
            pos = start + len(buf) - 1  # its last byte may be the 0xFF of a marker
            buf = b""
            continue
        junk += 0 if scans else start + found.start() - pos
        code, at = buf[found.start() + 1], found.end()
        if code == 0xD9:  # EOI
            break
        if code == 0x01 or 0xD0 <= code <= 0xD8:  # markers without a length (TEM, RSTn, SOI)
            pos = start + at
            continue
        if at + 2 > len(buf):  # the length is past the window: read on from the marker
            if len(buf) < _CHUNK:
                break
            pos, buf = start + found.start(), b""
            continue
        pos = start + at + int.from_bytes(buf[at:at + 2], "big")
        if code == 0xDA:  # SOS
            scans += 1
    return scans, junk


def _check_png_data(f) -> None:
    """Refuse a PNG whose image data inflates to fewer bytes than its header's
    size needs.

    Pillow decodes such a file without a word, the rows the data lacks left
    black: a 207-byte file holding a few rows of an 8192×8192 image took 7 s
    and 1 GB. The data (the first run of IDAT chunks, which Pillow reads) is
    inflated here and thrown away a megabyte at a time, stopping once it is
    long enough: no memory beyond that, and a short file is refused before
    the image is allocated; inflating is most of decoding a PNG, so this
    adds a fifth to four fifths to the time a PNG photo takes to load
    (measured: +23% for a Pillow-written 3000², +80% for a 4000×3000 one
    OpenCV wrote with light compression). A stream
    zlib finds corrupt is refused too (Pillow refuses it while decoding),
    and so is a chunk whose CRC does not match its data (Pillow does not
    read IDAT CRCs, and stops inflating at the last row, before zlib's own
    checksum: changed image data came out as changed pixels).
    """
    f.seek(8)
    head = f.read(25)
    if len(head) < 25 or head[4:8] != b"IHDR":
        return  # Pillow's own checks refuse it
    width, height, depth, color, _, _, interlace = struct.unpack(">IIBBBBB", head[8:21])
    need = _png_data_size(width, height, depth, color, interlace)
    if need is None:
        return
    inflate, got = zlib.decompressobj(), 0
    try:
        for piece in _png_idat(f):  # to the end of the run: each chunk's CRC is checked
            got = _inflated(inflate, piece, got, need)
    except zlib.error as exc:
        raise ValueError(f"the PNG's image data is corrupt ({exc})") from None
    if got < need:
        raise ValueError(f"the PNG's image data ends after {got} of the {need} bytes its {width}×{height} "
                         "header needs (a cut or crafted file)")


def check_animated_png(f) -> None:
    """Refuse an animated PNG (in ``f``, a binary file; read from the start and left where it was) one of
    whose frames (its fcTL chunk) lies outside the image or is empty, or whose data (its fdAT chunks; a
    first frame that is the default image has the IDAT run, which :func:`_check_png_data` checks, as
    :func:`avatarizer.videoio.animated_image` runs it first) inflates to fewer bytes than the frame's
    size needs or is corrupt, or holds a chunk whose CRC does not match: Pillow decodes
    such a frame without a word, the rows missing left as they were (a 511-byte file of two 8000×8000
    frames of 4 rows each took 1.3 GB and 5 s and came out as a video of grey frames). ``ValueError``
    saying what; a file that is not a PNG is left alone. Every frame's data is inflated here and thrown
    away a megabyte at a time, as :func:`_check_png_data` does with a still PNG's."""
    at = f.tell()
    try:
        f.seek(0)
        if f.read(8) != _PNG_SIGNATURE:
            return
        head = f.read(25)
        if len(head) < 25 or head[4:8] != b"IHDR":
            return  # Pillow's own checks refuse it
        width, height, depth, color, _, _, interlace = struct.unpack(">IIBBBBB", head[8:21])
        f.seek(8)
        frame, count = None, 0  # [bytes needed, inflater, bytes got]

        def ended(fr) -> None:
            if fr is not None and fr[2] < fr[0]:
                raise ValueError(f"frame {count} of the animated PNG has {fr[2]} of the {fr[0]} bytes of image "
                                 "data its size needs (a cut or crafted file)")

        while True:
            chunk = f.read(8)
            if len(chunk) < 8:
                break
            length, kind = struct.unpack(">I4s", chunk)
            if kind == b"IEND":
                break
            if kind == b"fcTL":
                data = f.read(length)
                if len(data) < 26 or f.read(4) != struct.pack(">I", zlib.crc32(kind + data)):
                    raise ValueError("the animated PNG's frame header (fcTL) is damaged")
                ended(frame)
                count += 1
                w, h, x, y = struct.unpack(">IIII", data[4:20])
                if not (0 < w and 0 < h and x + w <= width and y + h <= height):
                    raise ValueError(f"frame {count} of the animated PNG ({w}×{h} at {x}, {y}) does not fit "
                                     f"in its {width}×{height} image")
                need = _png_data_size(w, h, depth, color, interlace)
                frame = None if need is None else [need, zlib.decompressobj(), 0]
                continue
            if kind == b"IDAT":  # (a first frame that is the default image: its data is _check_png_data's)
                frame = None
            if frame is None or kind != b"fdAT":
                f.seek(length + 4, os.SEEK_CUR)
                continue
            skip = 4  # (an fdAT's sequence number first)
            for piece in _chunk_pieces(f, kind, length, f"the animated PNG's image data is corrupt (the CRC of one "
                                       f"of frame {count}'s {kind.decode()} chunks does not match)"):
                piece, skip = piece[skip:], max(0, skip - len(piece))
                try:
                    frame[2] = _inflated(frame[1], piece, frame[2], frame[0])
                except zlib.error as exc:
                    raise ValueError(f"frame {count} of the animated PNG has corrupt image data ({exc})") from None
        ended(frame)
    finally:
        f.seek(at)


#: Most bytes of chunks a PNG read by :func:`load_image` may have before its
#: image data, and again after it (the header, colour profile, text, EXIF: a
#: photo's are a few KB to a few MB). Pillow reads each of them whole into
#: memory: a 1 MB file whose one sparse text chunk said 840 MB took 1.27 GB
#: in ``Image.open``, and those after the image are read the same way.
MAX_PNG_HEAD_BYTES = 32 << 20
#: Most chunks a PNG read by :func:`load_image` may have before its image
#: data, and again after it (a photo has under 20; Pillow reads each in
#: Python).
MAX_PNG_HEAD_CHUNKS = 4096
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _check_png_head(f) -> None:
    """Refuse a PNG whose chunks before its image data (the first IDAT,
    where ``Image.open`` stops) are longer in all than
    :data:`MAX_PNG_HEAD_BYTES` or more than :data:`MAX_PNG_HEAD_CHUNKS`,
    from their 8-byte headers alone (no chunk's data is read). Anything
    that is not a PNG is left to ``Image.open``. Reads ``f`` from the start
    and leaves it where it was."""
    at = f.tell()
    try:
        f.seek(0)
        if f.read(8) == _PNG_SIGNATURE:
            _png_chunks_until(f, (b"IDAT", b"IEND"), "before")
    finally:
        f.seek(at)


def _check_png_tail(f, animated: bool) -> None:
    """Refuse a PNG whose chunks after its image data (the first run of
    IDAT chunks), up to its end (IEND) or, in an animated PNG (``animated``:
    Pillow's ``is_animated``, which decides where it stops), its next frame
    (fcTL), are longer in all than :data:`MAX_PNG_HEAD_BYTES` or more than
    :data:`MAX_PNG_HEAD_CHUNKS`: Pillow reads them into memory once the
    image is decoded. From the chunk headers, as :func:`_check_png_head`."""
    f.seek(8)
    _png_chunks_until(f, (b"IDAT", b"IEND"), None)
    while True:  # the image data: IDAT and what Pillow takes for it after the first
        head = f.read(8)
        if len(head) < 8:
            return
        length, kind = struct.unpack(">I4s", head)
        if kind not in (b"IDAT", b"DDAT", b"fdAT"):
            f.seek(-8, os.SEEK_CUR)
            break
        f.seek(length + 4, os.SEEK_CUR)
    _png_chunks_until(f, (b"IEND", b"fcTL") if animated else (b"IEND",), "after")


def _png_chunks_until(f, stops: tuple[bytes, ...], where: str | None) -> None:
    """Walk the PNG's chunks from ``f``'s position to the first of kind
    ``stops`` (left unread) or the end of the file, by their headers;
    ValueError, when ``where`` names the walk ("before", "after" the image
    data), if they are more than :data:`MAX_PNG_HEAD_CHUNKS` or longer in all
    than :data:`MAX_PNG_HEAD_BYTES`."""
    total = 0
    for count in range(MAX_PNG_HEAD_CHUNKS + 1):
        head = f.read(8)
        if len(head) < 8:
            return  # (cut: Pillow's own checks refuse it)
        length, kind = struct.unpack(">I4s", head)
        if kind in stops:
            f.seek(-8, os.SEEK_CUR)
            return
        total += length + 12
        if where is not None:
            if count == MAX_PNG_HEAD_CHUNKS:
                raise ValueError(f"the PNG has more than {MAX_PNG_HEAD_CHUNKS} chunks {where} its image data")
            if total > MAX_PNG_HEAD_BYTES:
                name = kind.decode("latin-1")
                raise ValueError(f"the PNG has more than {MAX_PNG_HEAD_BYTES >> 20} MB of chunks {where} its "
                                 f"image data (a {length}-byte {name!r} chunk; Pillow reads them into memory)")
        f.seek(length + 4, os.SEEK_CUR)


#: Channels of each PNG colour type: gray, RGB, palette, gray and alpha, RGBA.
_PNG_CHANNELS = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}
#: The seven passes of an Adam7-interlaced PNG: first column and row, steps.
_ADAM7 = ((0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2))


def _png_data_size(width: int, height: int, depth: int, color: int, interlace: int) -> int | None:
    """How many bytes a PNG's image data inflates to: a filter byte and the
    packed pixels of each row, of the image or of each of its seven
    interlaced passes; None for a header PNG does not allow (Pillow decides)."""
    channels = _PNG_CHANNELS.get(color)
    if channels is None or depth not in (1, 2, 4, 8, 16) or interlace not in (0, 1):
        return None
    bits = channels * depth

    def rows(w: int, h: int) -> int:
        return h * (1 + (w * bits + 7) // 8) if w > 0 and h > 0 else 0

    if not interlace:
        return rows(width, height)
    return sum(rows((width - x + dx - 1) // dx, (height - y + dy - 1) // dy) for x, y, dx, dy in _ADAM7)


def _png_idat(f):
    """The data of the first run of IDAT chunks of the PNG in ``f`` (where
    Pillow reads the image: after the first IDAT it takes DDAT chunks for
    IDAT and stops at any other chunk), in pieces of at most :data:`_CHUNK`
    bytes; ValueError when a chunk's CRC does not match (read after its
    last piece)."""
    f.seek(8)
    seen = False
    while True:
        head = f.read(8)
        if len(head) < 8:
            return
        length, kind = struct.unpack(">I4s", head)
        if kind not in ((b"IDAT", b"DDAT") if seen else (b"IDAT",)):
            if seen:
                return
            f.seek(length + 4, os.SEEK_CUR)  # the chunk and its CRC
            continue
        seen = True
        yield from _chunk_pieces(f, kind, length, f"the PNG's image data is corrupt (the CRC of one of its "
                                 f"{kind.decode()} chunks does not match)")


def _inflated(inflate, piece: bytes, got: int, need: int) -> int:
    """``got`` plus the bytes ``piece`` inflates to through ``inflate`` (a ``zlib.decompressobj``), up to
    ``need`` in all, a megabyte at a time and thrown away; ``zlib.error`` for a corrupt stream."""
    while piece and got < need and not inflate.eof:
        got += len(inflate.decompress(piece, min(_CHUNK, need - got)))
        piece = inflate.unconsumed_tail
    return got


def _chunk_pieces(f, kind: bytes, length: int, corrupt: str):
    """The data of the PNG chunk whose 8-byte header ``f`` has just read (``kind``, ``length`` bytes), in
    pieces of at most :data:`_CHUNK` bytes; ``ValueError(corrupt)`` when its CRC, read after the last
    piece, does not match. A file cut inside the chunk ends it (the data found short says so)."""
    crc = zlib.crc32(kind)
    while length:
        piece = f.read(min(length, _CHUNK))
        if not piece:
            return
        length -= len(piece)
        crc = zlib.crc32(piece, crc)
        yield piece
    if f.read(4) != struct.pack(">I", crc):
        raise ValueError(corrupt)


def _formats() -> list[str]:
    """Every format Pillow reads but :data:`ICON_FORMATS` (Pillow decodes an
    icon's image when it opens the file, so they are never tried) and
    :data:`CONTAINER_FORMATS`."""
    Image.init()
    return [f for f in Image.ID if f not in ICON_FORMATS + CONTAINER_FORMATS]


#: How to turn an image for each value of the EXIF orientation tag (0x0112)
#: but 1 (as stored), as ``ImageOps.exif_transpose`` does.
_ORIENTATIONS = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}


def _upright(image: Image.Image) -> Image.Image:
    """``image`` turned as its EXIF orientation tag says, so phone photos come
    out upright; as stored when the tag is missing, cannot be read or is not
    2..8.

    Not ``ImageOps.exif_transpose``: after turning it writes the EXIF again
    without the tag, and one broken tag anywhere in it (text where a number
    belongs, common in phone photos) made that raise TypeError. Here only
    the orientation tag's value is decoded, and the EXIF is not written.
    """
    try:
        method = _ORIENTATIONS.get(image.getexif().get(0x0112, 1))
    except Exception:  # noqa: BLE001 - an unreadable orientation is no orientation
        return image
    return image if method is None else image.transpose(method)


def _is_icon(path: Path) -> bool:
    try:
        with open(path, "rb") as f:
            head = f.read(4)
    except OSError:
        return False
    return head in (b"\x00\x00\x01\x00", b"\x00\x00\x02\x00", b"icns")


class _What:
    """'an array of shape ... and dtype ...', formatted only when an error
    message uses it: formatting the shape and dtype on every call cost more
    than the checks (a video loop converts every frame)."""

    __slots__ = ("image",)

    def __init__(self, image: np.ndarray):
        self.image = image

    def __str__(self) -> str:
        return f"an array of shape {self.image.shape} and dtype {self.image.dtype}"

    def __format__(self, spec: str) -> str:
        return format(str(self), spec)


def hidden_default_image(im) -> int:
    """1 where the opened Pillow image ``im`` is an animated PNG whose
    default image is not part of its animation (``default_image``: a
    fallback picture for viewers without APNG support, which APNG-aware
    players never show; Pillow counts it as frame 0), else 0: the frame the
    animation starts at. Such a file's green "no animation here" picture was
    read as the photo and played as the video's first frame."""
    try:
        return int(im.format == "PNG" and bool(im.info.get("default_image")) and im.n_frames > 1)
    except Exception:  # noqa: BLE001 - a damaged file: as Pillow gives it
        return 0


def _pil_rgb(image: Image.Image) -> Image.Image:
    """:func:`_pil_rgb_opaque`, a cut-out (an alpha channel or a transparent
    colour that marks some pixels transparent) read over a light grey
    (:func:`flatten_alpha`)."""
    rgb = _pil_rgb_opaque(image)
    if image.mode in ("RGBA", "LA", "PA", "La", "RGBa") or "transparency" in image.info:
        try:
            alpha = np.asarray((image if image.mode in ("RGBA", "LA", "PA") else image.convert("RGBA"))
                               .getchannel("A"))
        except (ValueError, OSError):  # (a transparency Pillow cannot apply: the colours as they are)
            return rgb
        if alpha.shape == (rgb.height, rgb.width) and alpha.min() != alpha.max():
            return Image.fromarray(flatten_alpha(np.asarray(rgb), alpha), "RGB")
    return rgb


def _pil_rgb_opaque(image: Image.Image) -> Image.Image:
    """``image.convert("RGB")``, except for Pillow's 16-bit (``I;16*``),
    32-bit integer (``I``) and float (``F``) grayscale modes, which
    ``convert`` clips at 255 instead of scaling (a 16-bit PNG came out almost
    all white). Those are scaled to 8 bits: ``I;16*`` from 0..65535; ``I``
    and ``F`` from the range their values fit (0..1 for float, 0..255,
    0..65535), else from their own minimum..maximum."""
    mode = image.mode
    if not (mode.startswith("I;16") or mode in ("I", "F")):
        return _to_srgb(image)
    a = np.asarray(image).astype(np.float64)
    if not np.isfinite(a).all():
        raise ValueError(f"the {mode} image has NaN or infinite values")
    lo, hi = (float(a.min()), float(a.max())) if a.size else (0.0, 0.0)
    if mode.startswith("I;16"):
        lo, scale = 0.0, 65535.0
    elif lo >= 0 and hi <= (1.0 if mode == "F" else 0.0):
        lo, scale = 0.0, 1.0
    elif lo >= 0 and hi <= 255:
        lo, scale = 0.0, 255.0
    elif lo >= 0 and hi <= 65535:
        scale = 65535.0  # 16-bit data in a 32-bit mode (how some files and Pillow versions give it)
        lo = 0.0
    else:
        scale = max(hi - lo, 1e-12)
    gray = np.clip(np.rint((a - lo) * (255.0 / scale)), 0, 255).astype(np.uint8)
    if _min_is_white(image):  # a TIFF whose 0 is white: Pillow inverts it at 8 bits (L;I), not at 16
        gray = 255 - gray
    return Image.fromarray(gray, "L").convert("RGB")


def _min_is_white(image: Image.Image) -> bool:
    """A TIFF of photometric interpretation 0 (WhiteIsZero)."""
    try:
        return image.format == "TIFF" and int(image.tag_v2.get(262, 1)) == 0
    except (AttributeError, TypeError, ValueError):
        return False


#: the largest embedded colour profile used (display profiles are a few KB, print CMYK ones 1-3 MB)
MAX_ICC_BYTES = 4 << 20


def _to_srgb(image: Image.Image) -> Image.Image:
    """``image`` as 8-bit sRGB: through its embedded ICC profile where it
    has one that does not map sRGB onto itself (a phone's Display P3 photo,
    an Adobe RGB or CMYK file: their numbers read as sRGB drew skin up to 14
    levels less red and flipped hair colour classes), else
    ``convert("RGB")``. A profile lcms cannot use is ignored (the numbers as
    they are, as before)."""
    icc = image.info.get("icc_profile")
    if not icc or not isinstance(icc, bytes) or len(icc) > MAX_ICC_BYTES:
        return image.convert("RGB")
    from io import BytesIO

    try:
        from PIL import ImageCms
    except ImportError:  # (a Pillow built without littlecms)
        return image.convert("RGB")
    try:
        src = ImageCms.ImageCmsProfile(BytesIO(icc))
        if image.mode in ("RGB", "RGBA", "P", "PA") and _is_srgb(src):
            return image.convert("RGB")  # (sRGB already, whatever its name: the transform would only round)
        # (the modes lcms takes with the profile's colour space; alpha dropped, as convert("RGB") drops it)
        im = image if image.mode in ("RGB", "CMYK", "L") else image.convert("L" if image.mode == "LA" else "RGB")
        out = ImageCms.profileToProfile(im, src, _srgb_profile(), outputMode="RGB")
    except (ImageCms.PyCMSError, OSError, ValueError, TypeError):
        return image.convert("RGB")
    return out if out is not None and out.mode == "RGB" else image.convert("RGB")


#: every 17th level of each channel (16 x 16 x 16 colours): what a profile is checked on (:func:`_is_srgb`)
_CUBE = np.stack(np.meshgrid(*[np.arange(0, 256, 17, dtype=np.uint8)] * 3, indexing="ij"), -1).reshape(1, -1, 3)


def _is_srgb(profile) -> bool:
    """Whether the RGB ``profile`` maps sRGB's numbers onto themselves (within
    a level, on a cube of 4,096 colours): then the transform is skipped. By
    its effect, not its name: a "Linear sRGB" profile is not sRGB (40 levels
    apart)."""
    from PIL import ImageCms

    out = ImageCms.profileToProfile(Image.fromarray(_CUBE, "RGB"), profile, _srgb_profile(), outputMode="RGB")
    return out is not None and int(np.abs(np.asarray(out, np.int16) - _CUBE.astype(np.int16)).max()) <= 1


@lru_cache(maxsize=None)
def _srgb_profile():
    from PIL import ImageCms

    return ImageCms.createProfile("sRGB")


def _check_dtype(image: np.ndarray, what: str) -> None:
    dtype = image.dtype
    if dtype == np.uint8:
        return
    if dtype == np.bool_:
        raise ValueError(
            f"Expected {_EXPECTED}, but got {what}; a boolean array is a mask, "
            "not an image: convert with mask.astype(np.uint8) * 255."
        )
    if dtype.kind in "iu":
        if image.size == 0:
            hint = "convert with .astype(np.uint8)"
        else:
            lo, hi = image.min(), image.max()
            if lo >= 0 and hi <= 255:
                hint = "its values fit in 0..255: convert with .astype(np.uint8)"
            else:
                hint = (
                    f"its values span {lo}..{hi}, outside 0..255: rescale to "
                    "0..255 first (for 16-bit images: (image >> 8).astype(np.uint8))"
                )
        raise ValueError(f"Expected {_EXPECTED}, but got {what}; {hint}.")
    if dtype.kind == "f":
        return
    raise ValueError(
        f"Expected {_EXPECTED}, but got {what}; {dtype} arrays "
        "(object, complex, string, ...) are not images."
    )


def _check_shape(image: np.ndarray, what: str) -> bool:
    """Validate dimensions and channels; return True for grayscale input."""
    if image.ndim == 2:
        return True
    if image.ndim != 3:
        raise ValueError(
            f"Expected {_EXPECTED}, but got {what} with {image.ndim} "
            "dimensions; an image has 2 (grayscale) or 3 (H×W×C). For a batch, "
            "pass one image at a time."
        )
    channels = image.shape[2]
    if channels in (1, 3, 4):
        return channels == 1
    hint = ""
    if image.shape[0] in (1, 3, 4) and channels > 4:
        hint = " It looks channels-first (C×H×W): use image.transpose(1, 2, 0)."
    elif channels == 2:
        hint = " Two channels (gray + alpha?) are not supported: pass image[:, :, 0]."
    raise ValueError(
        f"Expected {_EXPECTED}, but got {what} with {channels} channels; "
        f"expected 1, 3 or 4 channels in the last axis.{hint}"
    )


def _check_size(height: int, width: int, what: str) -> None:
    # (a file's size said as an image's: the arrays and PIL images accepted mean nothing to one who gave a file)
    expected = "an image" if what in ("an image file", "an animated image") else _EXPECTED
    if height == 0 or width == 0:
        raise ValueError(f"Expected {expected}, but got {what}, which is empty.")
    if min(height, width) < MIN_SIDE:
        raise ValueError(
            f"Expected {expected} at least {MIN_SIDE} pixels on each side, but got "
            f"{what} ({width}×{height} pixels)."
        )
    if max(height, width) > MAX_SIDE:
        raise ValueError(
            f"Expected {expected} at most {MAX_SIDE} pixels on each side, but got "
            f"{what} ({width}×{height} pixels); downscale it first."
        )


def _float_to_uint8(image: np.ndarray, what: str) -> np.ndarray:
    """Scale a float image in [0, 1] to uint8 (round half up) as a new array."""
    if not np.isfinite(image).all():
        raise ValueError(
            f"Expected {_EXPECTED}, but got {what} containing NaN or infinite values."
        )
    lo, hi = float(image.min()), float(image.max())
    if lo < 0.0 or hi > 1.0:
        if lo >= 0.0 and 1.01 < hi <= 255.0:
            hint = (" It looks like 0..255 data stored as float: use "
                    "np.clip(image, 0, 255).astype(np.uint8).")
        elif lo >= -0.01 and hi <= 1.01:  # (0..1 data a little off: float rounding, a brightened image)
            hint = " If it is 0..1 data a little out of range, use np.clip(image, 0, 1)."
        else:
            hint = ""
        raise ValueError(  # (repr: 1.0000001 printed with :g read as 1, "in [0, 1]")
            f"Expected {_EXPECTED}, but got {what} with float values in "
            f"[{lo!r}, {hi!r}]; float images must lie in [0, 1].{hint}"
        )
    scaled = np.multiply(image, 255.0, dtype=np.float32)
    scaled += 0.5
    return scaled.astype(np.uint8)


def sample_photo() -> np.ndarray:
    """The bundled sample portrait as a ``(512, 512, 3)`` ``uint8`` RGB array.

    NASA's photograph of the astronaut Eileen Collins (public domain; the same
    picture as scikit-image's ``astronaut``, stored as a JPEG in
    :data:`SAMPLE_PHOTO`). ``avatarizer demo``, ``avatarizer bench`` without
    clips and the README's examples run on it, so they need no extra package.
    """
    return load_image(SAMPLE_PHOTO)
