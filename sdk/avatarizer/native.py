"""Friendly layer over the native renderer (``avatarizer._avz``, cffi API mode).

The raw ``ffi``/``lib`` stay private to this module; every avz status code is
turned into an exception in :func:`_check`, with the message from C. Handles
are freed by ``ffi.gc`` when their Python object goes away, or at once with
``close()``. Calls on one :class:`Renderer` from several threads take turns
(a lock); :func:`renderer` hands out one per thread, so threads draw at once.
"""
from __future__ import annotations

import hashlib
import os
import re
import threading
import weakref

import numpy as np

from .checks import holds_bool, is_real
from .errors import AvatarizerError, NativeError
from .schema import PARAM_COUNT, _real_array
from .schema import FLOAT32_MAX as _FLOAT_MAX  # (the largest C float, ~3.4e38)

def _truncated_extension() -> str | None:
    """Why the built extension cannot be loaded safely, or None. A shared
    library cut short (a copy or download that stopped) is not refused by
    the loader: it maps the file and the process dies of SIGBUS on the first
    page past its end, before Python can raise anything. An ELF file ends at
    its section header table or later, so a file shorter than that is cut."""
    import importlib.util
    import os
    import struct

    try:
        spec = importlib.util.find_spec(f"{__package__}._avz")
        path = spec.origin if spec is not None else None
        if not path or not os.path.isfile(path):
            return None  # (the import says what is missing)
        with open(path, "rb") as f:
            head = f.read(64)
        size = os.path.getsize(path)
    except (ImportError, OSError, ValueError):
        return None
    if len(head) < 64 or head[:4] != b"\x7fELF" or head[4] != 2:
        return None  # not a 64-bit ELF file: left to the loader (which refuses such files cleanly)
    order = "<" if head[5] == 1 else ">"
    shoff, = struct.unpack_from(order + "Q", head, 0x28)
    shentsize, shnum = struct.unpack_from(order + "HH", head, 0x3A)
    if shoff and size < shoff + shentsize * shnum:
        return (f"{path} is cut short ({size} bytes; its own header says at least "
                f"{shoff + shentsize * shnum}): a copy or download that stopped; rebuild it with `make native`")
    return None


_TRUNCATED = _truncated_extension()
if _TRUNCATED is not None:
    _ffi = _lib = None
    _IMPORT_ERROR = ImportError(_TRUNCATED)
else:
    try:
        from ._avz import ffi as _ffi, lib as _lib
    except ImportError as exc:  # pragma: no cover - depends on the build
        _ffi = _lib = None
        _IMPORT_ERROR = exc
    else:
        _IMPORT_ERROR = None

_STATUS = {
    0: "AVZ_OK", 1: "AVZ_E_NULL", 2: "AVZ_E_PARAM_COUNT", 3: "AVZ_E_NONFINITE", 4: "AVZ_E_RANGE",
    5: "AVZ_E_SIZE", 6: "AVZ_E_STRIDE", 7: "AVZ_E_NOMEM", 8: "AVZ_E_CAIRO", 9: "AVZ_E_ARG",
}

ITEM_FILL, ITEM_STROKE, ITEM_CLIP_PUSH, ITEM_CLIP_POP = 0, 1, 2, 3
OP_MOVE, OP_LINE, OP_CURVE, OP_CLOSE = 0, 1, 2, 3
MAX_SIZE = 16384
MAX_THREADS = 8  # AVZ_MAX_THREADS
INT_MAX = 2**31 - 1  # a C int: the row strides the C calls take
_FLOAT_TINY = float(np.nextafter(np.float32(0), np.float32(1)))  # the smallest positive C float (~1.4e-45)


#: ``threads="auto"`` draws in bands only images of at least this many pixels:
#: a 256 px render in a live video loop came out no faster on two threads
#: (the per-band set-up and the caches MediaPipe leaves cold), where a ~470 px
#: overlay box of a 512 px frame and renders of 512-1024 px were (README,
#: Performance; docs/render_profile.md)
AUTO_MIN_PIXELS = 384 * 384
_streams = 0  # Avatarizer.stream() iterations running in this process
_streams_lock = threading.Lock()


def stream_started(delta: int) -> None:
    """``Avatarizer.stream`` counts its running iterations here (+1 / -1):
    while one runs, its worker keeps another core busy finding landmarks, and
    ``threads="auto"`` draws on the calling thread alone."""
    global _streams
    with _streams_lock:
        _streams = max(_streams + delta, 0)


def streams_running() -> bool:
    """Whether an :meth:`avatarizer.Avatarizer.stream` of this process is being iterated."""
    return _streams > 0


#: every live :class:`Renderer` and :class:`SceneBuilder` by id (their locks are made again in a forked
#: child; by id, not in a WeakSet: a subclass that defines ``__eq__`` is unhashable)
_handles: "weakref.WeakValueDictionary[int, object]" = weakref.WeakValueDictionary()


def _after_fork_in_child() -> None:
    """A forked child runs none of its parent's streams, and the handles'
    locks are free in it: a lock a parent's thread held over a C call at
    the fork stays held in the child, where that thread does not exist,
    and the child's first call on the handle waited forever (the C side
    starts its helper threads afresh in a new process)."""
    global _streams, _streams_lock
    _streams, _streams_lock = 0, threading.Lock()
    for h in list(_handles.values()):
        h._lock = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def auto_threads(pixels: int | None = None) -> int:
    """What ``threads="auto"`` draws with: 2 when this process may run on two
    or more CPUs, no :meth:`avatarizer.Avatarizer.stream` of it is running,
    and the image has at least :data:`AUTO_MIN_PIXELS` pixels (``pixels``,
    when given); else 1. More than 2 were not measured (the development
    machine has two cores), and every band repeats the set-up of the shapes
    that cross it."""
    if _streams or (pixels is not None and pixels < AUTO_MIN_PIXELS):
        return 1
    try:
        n = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        n = os.cpu_count() or 1
    return 2 if n >= 2 else 1


def resolve_threads(threads, pixels: int | None = None) -> int:
    """``"auto"`` (:func:`auto_threads` for an image of ``pixels``) or a whole
    number in 1..MAX_THREADS, else ``ValueError``."""
    if isinstance(threads, str) and threads == "auto":
        return auto_threads(pixels)
    if isinstance(threads, bool) or not isinstance(threads, (int, np.integer)) or not 1 <= threads <= MAX_THREADS:
        raise ValueError(f"threads must be 'auto' or a whole number in 1..{MAX_THREADS}, got {threads!r:.40}")
    return int(threads)


# ------------------------------------------------------------ argument checks (render() and Renderer)

def _sides(size, width, height) -> list[tuple[str, object]]:
    """The width and the height an image or page is given, each with the
    argument it came from (for messages): ``size`` for both where neither
    is given; one of them alone, a square of that side (a width alone did
    so, a height alone took ``size`` as the width). The one rule of
    :func:`_size` and :func:`_vector_size`."""
    if width is None and height is None:
        return [("size", size), ("size", size)]
    return [("width" if width is not None else "height", height if width is None else width),
            ("height" if height is not None else "width", width if height is None else height)]


def _size(size, width, height):
    """(width, height) in whole pixels, 1..MAX_SIZE (:func:`_sides`)."""
    sides = _sides(size, width, height)
    for name, v in sides:
        if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, np.integer)):
            raise ValueError(f"{name} must be an integer number of pixels, got {v!r:.40}")
        if not 1 <= int(v) <= MAX_SIZE:
            raise ValueError(f"{name} must be between 1 and {MAX_SIZE} pixels, got {v}")
    return int(sides[0][1]), int(sides[1][1])


def _background(background):
    if background is None:
        return None
    if isinstance(background, str):
        named = {"white": (1, 1, 1, 1), "black": (0, 0, 0, 1), "transparent": (0, 0, 0, 0)}
        if background in named:
            return named[background]
        hexdigits = background[1:]
        if background.startswith("#") and len(hexdigits) in (6, 8) and all(
                c in "0123456789abcdefABCDEF" for c in hexdigits):
            vals = [int(hexdigits[i:i + 2], 16) / 255 for i in range(0, len(hexdigits), 2)]
            return tuple(vals) + ((1.0,) if len(vals) == 3 else ())
        raise ValueError(f"unknown background {background!r:.40}: use 'white', 'black', 'transparent', "
                         "'#rrggbb[aa]' or an RGB(A) tuple of floats in [0, 1]")
    # (as an object array, once: numpy's own ndim raised its message on a ragged sequence, (0.1, (0.2,), 0.3),
    # and len() of a 0-d array a TypeError)
    values = np.asarray(background, dtype=object) if isinstance(background, (tuple, list, np.ndarray)) else None
    ok = values is not None and values.ndim == 1 and len(values) in (3, 4) and all(
        is_real(v) and 0.0 <= float(v) <= 1.0 for v in values)
    if not ok:
        raise ValueError(f"background must be None, a name ('white', 'black', 'transparent'), '#rrggbb[aa]' "
                         f"or 3 or 4 floats in [0, 1]; got {background!r:.60}")
    bg = tuple(float(v) for v in background)
    return bg + ((1.0,) if len(bg) == 3 else ())


#: Smallest zoom accepted (cairo refuses the matrix of a far smaller one; at 1e-6 the avatar is a speck).
MIN_ZOOM = 1e-6


def _zoom(zoom, width: float | None = None, height: float | None = None) -> float:
    """``zoom`` as a float; ValueError outside [1e-6, 1000] or, with the
    image's size, where the fitted scale (``zoom`` times half the shorter
    side, pixels per frame unit) passes :data:`MAX_TRANSFORM`: cairo's
    coordinates wrap beyond it (a head scarf drawn over the whole face at
    10240 px and zoom 1000)."""
    if not is_real(zoom) or not MIN_ZOOM <= float(zoom) <= 1000.0:
        raise ValueError(f"zoom must be a number in [1e-6, 1000], got {zoom!r:.40}")
    if width is not None and height is not None and 0.5 * min(width, height) * float(zoom) > MAX_TRANSFORM:
        raise ValueError(f"zoom {float(zoom):g} at {width:g} x {height:g}: zoom times half the shorter side must be "
                         f"at most {MAX_TRANSFORM:g} pixels per frame unit")
    return float(zoom)


#: Largest transform coefficient accepted (pixels per frame unit, or pixels of offset).
MAX_TRANSFORM = 1e6


def _transform(transform):
    if transform is None:
        return None
    try:
        arr = np.asarray(transform)
        # complex, bool (also one among numbers in a list), strings, objects: refused, never cast (a complex
        # cast warned first)
        t = arr.astype(np.float64) if arr.dtype.kind in "iuf" and not holds_bool(transform) else None
    except (TypeError, ValueError, OverflowError):
        t = None
    if t is None or t.shape != (2, 3):
        got = " ".join(repr(transform).split())  # (one line: an array's repr has several)
        raise ValueError(f"transform must be a 2x3 affine matrix of real numbers (frame -> pixels), "
                         f"got {got:.60}")
    if not np.isfinite(t).all() or np.abs(t).max() > MAX_TRANSFORM:
        raise ValueError(f"transform must be finite, with coefficients within ±{MAX_TRANSFORM:g}")
    if abs(t[0, 0] * t[1, 1] - t[0, 1] * t[1, 0]) < 1e-12:  # det (np.linalg is slow per call)
        raise ValueError("transform is not invertible (its 2x2 part's |determinant| is below 1e-12)")
    return t


#: vector output takes a transform whose 2x2 part has a² + b² + c² + d² at most this times |ad − bc|
#: (it stretches one way at most this many times the other): flatter, cairo's stroker took seconds and
#: gigabytes (avz.c's AVZ__MAX_VECTOR_STRETCH)
MAX_VECTOR_STRETCH = 1e8


def _vector_transform(t) -> None:
    """``ValueError`` for a (checked) transform too flat for vector output."""
    if t is not None and float((t[:, :2] ** 2).sum()) > MAX_VECTOR_STRETCH * abs(
            t[0, 0] * t[1, 1] - t[0, 1] * t[1, 0]):
        raise ValueError("transform stretches one way over 1e8 times the other (a²+b²+c²+d² > 1e8 |ad-bc|): "
                         "too flat for vector output")


def _vector_size(size, width, height, max_side: float = MAX_SIZE, what: str = ""):
    """(width, height) in points (:func:`_sides`), each a number in
    1..``max_side`` (``what``: why that limit, for the message)."""
    sides = _sides(size, width, height)
    for name, v in sides:
        if not is_real(v) or not 1.0 <= float(v) <= max_side:
            raise ValueError(f"{name} must be a number of points in 1..{max_side:g}{what}, got {v!r:.40}")
    return float(sides[0][1]), float(sides[1][1])



def available() -> bool:
    return _lib is not None


def _need():
    if _lib is None:
        raise AvatarizerError(
            "the native renderer is not built (avatarizer._avz failed to import: "
            f"{_IMPORT_ERROR}). In a source checkout run `make native`; the wheel ships it built, with "
            "libcairo inside, so for an installed package run `pip install --force-reinstall avatarizer`")
    return _ffi, _lib


def _check(status: int, detail: str = "") -> None:
    """The one place where native status codes become exceptions."""
    if status == 0:
        return
    ffi, lib = _need()
    name = _STATUS.get(status, f"status {status}")
    text = ffi.string(lib.avz_status_string(status)).decode()
    msg = f"{text}: {detail}" if detail else text
    if status == 7:
        raise MemoryError(msg)
    raise NativeError(name, msg)


def version() -> str:
    ffi, lib = _need()
    return ffi.string(lib.avz_version()).decode()


def schema_version() -> str:
    ffi, lib = _need()
    return ffi.string(lib.avz_schema_version()).decode()


def default_params() -> np.ndarray:
    ffi, lib = _need()
    out = np.empty(PARAM_COUNT, np.float32)
    _check(lib.avz_default_params(ffi.from_buffer("float[]", out), PARAM_COUNT))
    return out


def _params_buffer(params) -> np.ndarray:
    """A contiguous float32 copy; SchemaError (a ValueError) for strings,
    complex numbers, objects and ragged lists, as everywhere in the SDK (the
    count is left to the C library: AVZ_E_PARAM_COUNT)."""
    arr = _real_array(params)
    if arr.ndim != 1:
        raise NativeError("AVZ_E_PARAM_COUNT", f"expected a flat vector of {PARAM_COUNT} parameters, got shape {arr.shape}")
    return arr


def _options(background, transform, zoom, antialias="best"):
    """The C render options, from arguments checked as render() checks them
    (the checks above, which render() uses too: real numbers only, ValueError otherwise)."""
    ffi, lib = _need()
    opt = ffi.new("avz_render_options *")
    lib.avz_render_options_init(opt)
    opt.antialias = _antialias_mode(lib, antialias)
    try:
        if isinstance(background, str):  # names ('white', '#rrggbb') are render()'s; here numbers only
            raise ValueError
        bg = _background(background) or (0.0, 0.0, 0.0, 0.0)
    except ValueError:
        raise ValueError(f"background must be None or 3 or 4 floats in [0, 1], got {background!r:.60}") from None
    for i in range(4):
        opt.background[i] = bg[i]
    t = _transform(transform)
    if t is not None:
        opt.use_transform = 1
        for i, v in enumerate((t[0, 0], t[1, 0], t[0, 1], t[1, 1], t[0, 2], t[1, 2])):
            opt.transform[i] = float(v)
    opt.zoom = _zoom(zoom)
    return opt


def _antialias_mode(lib, antialias) -> int:
    """The C library's antialiasing constant for 'best' or 'fast'; ValueError otherwise."""
    if not isinstance(antialias, str) or antialias not in ("best", "fast"):
        raise ValueError(f"antialias must be 'best' or 'fast', got {antialias!r:.40}")
    return lib.AVZ_AA_FAST if antialias == "fast" else lib.AVZ_AA_BEST


def row_stride(arr) -> int:
    """Bytes between the rows of an H x W x C pixel array as the C calls take
    it: its own row stride, or W x C for one row (whose stride numpy sets
    to anything, 0 for ``a[None]``)."""
    return int(arr.strides[0]) if arr.shape[0] > 1 else int(arr.shape[1] * arr.shape[2])


def _check_pixels(arr, name: str, channels: int, kind: str) -> None:
    """ValueError unless ``arr`` is a writable H x W x ``channels`` uint8 array
    whose pixels are contiguous (rows may be padded), as the C calls write it."""
    if not isinstance(arr, np.ndarray) or arr.dtype != np.uint8 or arr.ndim != 3 or arr.shape[2] != channels:
        raise ValueError(f"{name} must be an H x W x {channels} uint8 numpy array")
    if arr.shape[0] < 1 or arr.shape[1] < 1:  # (it was refused as not having contiguous pixels; a review)
        raise ValueError(f"{name} is empty ({arr.shape[0]} x {arr.shape[1]} pixels)")
    # (the stride of an axis of length 1 is never used, and numpy gives it any value: a[None] has 0)
    if arr.strides[2] != 1 or (arr.shape[1] > 1 and arr.strides[1] != channels) or row_stride(arr) <= 0:
        raise ValueError(f"{name} must have contiguous {kind} pixels (strides (stride, {channels}, 1))")
    if not arr.flags.writeable:
        raise ValueError(f"{name} is read-only")
    if max(row_stride(arr), arr.shape[0], arr.shape[1]) > INT_MAX:  # C ints (sizes over 16384 are AVZ_E_SIZE)
        raise ValueError(f"{name} rows are {row_stride(arr)} bytes apart, more than the {INT_MAX} the renderer "
                         "takes" if row_stride(arr) > INT_MAX else f"{name} is larger than the renderer takes")
    if channels == 4 and (arr.ctypes.data % 4 or row_stride(arr) % 4):
        # cairo draws 32-bit pixels (a view such as buf[1:] of a byte buffer is not aligned)
        raise ValueError(f"{name} must start on a 4-byte boundary, with rows a multiple of 4 bytes apart")


class Renderer:
    """A native renderer handle (reuses its buffers between calls).

    ``threads``: how many threads draw one image of :meth:`render_into` /
    :meth:`overlay_into` (``avz_renderer_set_threads``): 1 draws on the
    calling thread; more cut the image into bands of rows drawn at the same
    time by helper threads the handle keeps (the same picture but where an
    outline meets a band edge: within 3 levels composited on white with 2
    threads, 3.5 at most seen, up to 5 seen with 3-8; random parameter
    vectors, not faces: 8 seen with 3 threads; fast
    antialiasing is never cut into bands).

    One handle draws one image at a time: calls from several threads take
    turns (the handle's buffers are shared), and :meth:`close` waits for a
    call in progress (it freed the handle under a render on another thread:
    a segmentation fault). For images drawn at the same time, one handle per
    thread (:func:`renderer`)."""

    def __init__(self, threads=1):
        ffi, lib = _need()
        out = ffi.new("avz_renderer **")
        _check(lib.avz_renderer_create(out))
        self._h = ffi.gc(out[0], lib.avz_renderer_destroy)
        self._lock = threading.Lock()  # (held over each C call and by close; made again in a forked child)
        _handles[id(self)] = self
        self._threads = 1
        self.threads = threads

    @property
    def threads(self) -> int:
        return self._threads

    @threads.setter
    def threads(self, value) -> None:
        n = resolve_threads(value)
        with self._lock:
            if n != self._threads:
                _check(_lib.avz_renderer_set_threads(self._handle(), n), self._error())
                self._threads = n

    def close(self) -> None:
        with self._lock:  # (after a call in progress on another thread)
            if self._h is not None:
                _ffi.release(self._h)
                self._h = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __getstate__(self):
        # copy.copy, deepcopy and pickle give a new handle with the same threads (and a subclass's own
        # attributes): a plain copy shared this handle, and closing the copy freed it under the original (a
        # segmentation fault; a review, session 73)
        self._handle()  # (a closed renderer: RuntimeError, as any use of it)
        return {k: v for k, v in self.__dict__.items() if k not in ("_h", "_lock")}

    def __setstate__(self, state) -> None:
        state = dict(state)
        Renderer.__init__(self, threads=state.pop("_threads", 1))
        self.__dict__.update(state)

    def _handle(self):
        if self._h is None:  # as a closed Avatarizer or FaceAligner (README: errors)
            raise RuntimeError("This renderer is closed; create a new one.")
        return self._h

    def _error(self) -> str:
        return _ffi.string(_lib.avz_renderer_error(self._handle())).decode()

    def render_into(self, params, out: np.ndarray, *, background=None, transform=None, zoom=1.0,
                    antialias="best") -> np.ndarray:
        """Draws into a caller-owned H x W x 4 uint8 array (rows may be padded)."""
        ffi, lib = _need()
        _check_pixels(out, "out", 4, "RGBA")
        h, w = out.shape[:2]
        p = _params_buffer(params)
        opt = _options(background, transform, zoom, antialias)
        # numpy keeps `out` (and so its memory) alive for the duration of the call;
        # the renderer writes 4*w bytes per row, rows out.strides[0] apart.
        buf = ffi.cast("uint8_t *", out.ctypes.data)
        with self._lock:
            st = lib.avz_render(self._handle(), ffi.from_buffer("float[]", p), p.size, buf, w, h,
                                row_stride(out), opt)
            _check(st, self._error())
        return out

    def render(self, params, width: int, height: int | None = None, *, background=None,
               transform=None, zoom=1.0, antialias="best") -> np.ndarray:
        """A new H x W x 4 uint8 straight-alpha RGBA image."""
        height = width if height is None else height
        for name, v in (("width", width), ("height", height)):
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)):
                raise ValueError(f"{name} must be an integer number of pixels, got {v!r}")
            if not 1 <= int(v) <= MAX_SIZE:
                raise ValueError(f"{name} must be between 1 and {MAX_SIZE} pixels, got {v}")
        out = np.empty((int(height), int(width), 4), np.uint8)
        return self.render_into(params, out, background=background, transform=transform, zoom=zoom,
                                antialias=antialias)

    def overlay_into(self, params, frame: np.ndarray, transform, *, box=None, opacity: float = 1.0,
                     order: str = "rgb", fade=None, antialias="best") -> np.ndarray:
        """Draws the avatar over ``frame`` in place (``avz_overlay``): an H x W x 3
        uint8 array (rows may be padded; pixels contiguous) in ``order`` ('rgb'
        or 'bgr'). ``transform``: 2x3, canonical frame -> frame pixels;
        ``box``: (x0, y0, x1, y1), the region drawn into (default: the whole
        frame); ``fade``: None or (end, width), the avatar's alpha fading to 0
        toward canonical y = end over ``width`` (> 0; any width under a pixel,
        however small, is a hard edge at ``end``). Each channel becomes
        round(frame + a * (avatar - frame)), a = alpha * opacity * fade."""
        ffi, lib = _need()
        _check_pixels(frame, "frame", 3, "3-byte")
        if not isinstance(order, str) or order not in ("rgb", "bgr"):
            raise ValueError(f"order must be 'rgb' or 'bgr', got {order!r:.40}")
        aa = _antialias_mode(lib, antialias)
        t = _transform(transform)
        if t is None:
            raise ValueError("transform is required (2x3, canonical frame -> frame pixels)")
        h, w = frame.shape[:2]
        if box is None:
            box = (0, 0, w, h)
        if not (isinstance(box, (tuple, list, np.ndarray)) and getattr(box, "ndim", 1) == 1 and len(box) == 4 and all(
                isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_)) for v in box)):
            raise ValueError(f"box must be 4 whole numbers of pixels (x0, y0, x1, y1), got {box!r:.60}")
        if not is_real(opacity):
            raise ValueError(f"opacity must be a number in [0, 1], got {opacity!r:.40}")
        if fade is not None and not (isinstance(fade, (tuple, list, np.ndarray)) and getattr(fade, "ndim", 1) == 1
                                     and len(fade) == 2
                                     and all(is_real(v) for v in fade)):
            raise ValueError(f"fade must be None or two numbers (end, width), got {fade!r:.60}")
        opt = ffi.new("avz_overlay_options *")
        lib.avz_overlay_options_init(opt)
        for i, v in enumerate((t[0, 0], t[1, 0], t[0, 1], t[1, 1], t[0, 2], t[1, 2])):
            opt.transform[i] = float(v)
        for i, v in enumerate(box):
            opt.box[i] = max(-1, min(int(v), MAX_SIZE + 1))
        opt.opacity = float(opacity)  # beyond a float: inf, refused by the C check ([0, 1])
        opt.order = lib.AVZ_ORDER_BGR if order == "bgr" else lib.AVZ_ORDER_RGB
        if fade is not None:
            opt.use_fade = 1
            end, width = (float(v) for v in fade)
            # the C options are floats: a positive width under half the smallest one (~7e-46)
            # would round to 0 and be refused as not > 0; any width that small is the same
            # hard edge at fade_end (avz.h), so it is given as the smallest positive float; beyond
            # the largest float either became infinity, refused as not finite: the same picture as
            # at the largest, which no frame distance reaches
            opt.fade_width = _FLOAT_TINY if 0.0 < width < _FLOAT_TINY else min(width, _FLOAT_MAX)
            opt.fade_end = max(-_FLOAT_MAX, min(end, _FLOAT_MAX))
        opt.antialias = aa
        p = _params_buffer(params)
        buf = ffi.cast("uint8_t *", frame.ctypes.data)
        with self._lock:
            st = lib.avz_overlay(self._handle(), ffi.from_buffer("float[]", p), p.size, buf, w, h,
                                 row_stride(frame), opt)
            _check(st, self._error())
        return frame

    def vector(self, params, fmt: str, width: float, height: float, *, background=None,
               transform=None, zoom=1.0) -> bytes:
        """The same picture as an SVG or PDF document (bytes); ``width`` and
        ``height`` in points, 1..16384 (a PDF page at most 14400, the PDF limit)."""
        ffi, lib = _need()
        fmts = {"svg": lib.AVZ_FORMAT_SVG, "pdf": lib.AVZ_FORMAT_PDF}
        if not isinstance(fmt, str) or fmt not in fmts:
            raise ValueError(f"format must be 'svg' or 'pdf', got {fmt!r:.40}")
        width, height = _vector_size(None, width, height)
        p = _params_buffer(params)
        t = _transform(transform)
        _vector_transform(t)
        # an SVG is drawn at least SVG_FINE_SIDE units a side (its viewBox), shown at the size asked for:
        # cairo writes path coordinates in 1/256 of a unit, coarse on a small document shown large
        # (a transform is scaled with it, within the header's bound: a 4-pt document's 2e4 became 2.56e6 and was
        # refused; and one of a document not scaled is passed as given: it was dropped, the fitted view drawn)
        k = 1.0 if fmt != "svg" else max(1.0, min(SVG_FINE_SIDE / min(width, height), MAX_SIZE / max(width, height)))
        if t is not None:
            k = max(1.0, min(k, MAX_TRANSFORM / float(np.abs(t).max())))
            while k > 1.0 and float(np.abs(t * k).max()) > MAX_TRANSFORM:  # (the division's rounding: 1e6 + 1 ulp
                k = max(1.0, float(np.nextafter(k, 0.0)))  # was refused; a review, session 70)
        opt = _options(background, None if t is None else t * k, zoom)
        data = ffi.new("const uint8_t **")
        size = ffi.new("size_t *")
        with self._lock:  # (the document lives in the handle until its next call)
            st = lib.avz_render_vector(self._handle(), ffi.from_buffer("float[]", p), p.size, fmts[fmt],
                                       float(width * k), float(height * k), opt, data, size)
            _check(st, self._error())
            out = bytes(ffi.buffer(data[0], size[0]))
        if fmt != "svg":
            return out
        svg = out.decode("utf-8")
        if k != 1.0:
            svg = _SVG_SIZE.sub(f'width="{width:g}pt" height="{height:g}pt"', svg, count=1)
        return unique_svg_ids(svg).encode("utf-8")


#: an SVG smaller than this many points a side is drawn this many units a side and shown at its size
#: (``width``/``height`` in points, ``viewBox`` in the units): cairo writes path coordinates in 1/256 of a
#: unit, so a 4-pt document's were 1/1024 of its width, and shown at 512 px its lashes and brow hairs came out
#: jagged (162 pixels more than 64 levels off the native picture, against 64 for a 512-pt document; a review,
#: session 64); documents of at least this size are written as before
SVG_FINE_SIDE = 512.0
_SVG_SIZE = re.compile(r'width="[^"]*pt" height="[^"]*pt"')
# (literals first: a \b or a look-behind before "id" is tried at every character, 2-5x slower)
_SVG_ID = re.compile(r'(\sid="|url\(#|href="#)([^")]+)')
_CAIRO_SURFACE = re.compile(r"surface\d+")


def unique_svg_ids(svg: str) -> str:
    """``svg`` with each ``id`` (and every reference to it) renamed to a
    prefix drawn from the document's content and its place in the
    document: cairo names the clip paths ``clip1``, ``clip2``... in every
    document and its surfaces by a counter global to the process, so two
    avatars inlined in one HTML page drew with each other's clips (the
    second's irises cut by the first's eye openings) and no two calls gave
    the same bytes. The same picture gives the same document; two different
    pictures never share an id."""
    found = list(_SVG_ID.finditer(svg))
    ids = list(dict.fromkeys(m.group(2) for m in found if m.group(1).endswith('id="')))
    if not ids:
        return svg
    # (the content: the document without cairo's process-wide surface numbers, its only varying part)
    digest = hashlib.sha1(_CAIRO_SURFACE.sub("", svg).encode("utf-8")).hexdigest()[:12]
    names = {old: f"avz{digest}-{i}" for i, old in enumerate(ids)}
    parts, at = [], 0  # (the matches found above, replaced in one pass: a second regex pass cost as much)
    for m in found:
        parts += (svg[at:m.start(2)], names.get(m.group(2), m.group(2)))
        at = m.end(2)
    parts.append(svg[at:])
    return "".join(parts)


class Scene:
    """The shapes of one avatar, as built by the native code (the single source
    of geometry that every backend draws)."""

    def __init__(self, params):
        ffi, lib = _need()
        out = ffi.new("avz_scene **")
        _check(lib.avz_scene_create(out))
        h = ffi.gc(out[0], lib.avz_scene_destroy)
        p = _params_buffer(params)
        st = lib.avz_scene_build(h, ffi.from_buffer("float[]", p), p.size)
        _check(st, ffi.string(lib.avz_scene_error(h)).decode())
        items = ffi.new("const avz_item **")
        n = ffi.new("size_t *")
        _check(lib.avz_scene_items(h, items, n))
        self.items = [(it.kind, tuple(it.rgba), it.width, it.path_begin, it.path_end)
                      for it in (items[0][i] for i in range(n[0]))]
        data = ffi.new("const float **")
        m = ffi.new("size_t *")
        _check(lib.avz_scene_path(h, data, m))
        self.path = np.frombuffer(ffi.buffer(data[0], m[0] * 4), np.float32).copy()
        ffi.release(h)

    def commands(self, begin: int, end: int):
        """Decodes a path range into (op, coords) tuples."""
        d, i = self.path, begin
        while i < end:
            op = int(d[i])
            n = {OP_MOVE: 2, OP_LINE: 2, OP_CURVE: 6}.get(op, 0)
            yield op, d[i + 1:i + 1 + n]
            i += 1 + n


_local = threading.local()


def renderer() -> Renderer:
    """This thread's renderer (created on first use, and again after an app
    closed it: every later ``render()`` of the thread had raised "closed")."""
    r = getattr(_local, "renderer", None)
    if r is None or r._h is None:
        r = _local.renderer = Renderer()
    return r


ITEM_DTYPE = np.dtype({"names": ["kind", "rgba", "width", "path_begin", "path_end"],
                       "formats": [np.int32, (np.float32, 4), np.float32, np.uint32, np.uint32],
                       "offsets": [0, 4, 20, 24, 28], "itemsize": 32})


class SceneBuilder:
    """One reusable scene handle for many parameter vectors (animation export):
    :meth:`build` returns the items as a structured array (:data:`ITEM_DTYPE`)
    and the path stream, both copies, without a Python object per item.
    Builds from several threads take turns (the handle holds one scene: a
    second thread's build was returned as the first's)."""

    def __init__(self):
        ffi, lib = _need()
        if (ffi.sizeof("avz_item") != ITEM_DTYPE.itemsize
                or ffi.offsetof("avz_item", "path_end") != ITEM_DTYPE.fields["path_end"][1]):
            raise AvatarizerError("avz_item layout in native/avz.h changed; update native.ITEM_DTYPE")
        out = ffi.new("avz_scene **")
        _check(lib.avz_scene_create(out))
        self._h = ffi.gc(out[0], lib.avz_scene_destroy)
        self._items = ffi.new("const avz_item **")
        self._n = ffi.new("size_t *")
        self._data = ffi.new("const float **")
        self._m = ffi.new("size_t *")
        self._lock = threading.Lock()  # (made again in a forked child)
        _handles[id(self)] = self

    def build(self, params) -> tuple[np.ndarray, np.ndarray]:
        ffi, lib = _need()
        p = _params_buffer(params)
        with self._lock:  # (the scene, and the out-pointers read into, are the handle's)
            st = lib.avz_scene_build(self._h, ffi.from_buffer("float[]", p), p.size)
            _check(st, ffi.string(lib.avz_scene_error(self._h)).decode())
            _check(lib.avz_scene_items(self._h, self._items, self._n))
            _check(lib.avz_scene_path(self._h, self._data, self._m))
            n, m = self._n[0], self._m[0]
            items = np.frombuffer(ffi.buffer(self._items[0], n * ITEM_DTYPE.itemsize), ITEM_DTYPE).copy() if n \
                else np.zeros(0, ITEM_DTYPE)
            path = np.frombuffer(ffi.buffer(self._data[0], m * 4), np.float32).copy() if m \
                else np.zeros(0, np.float32)
        return items, path
