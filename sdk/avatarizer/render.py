"""Drawing avatars: the native Cairo renderer, and two reference backends
that draw the *same* scene (built by the native code) from Python.

* ``"native"``  -- C on libcairo (default, fastest).
* ``"pycairo"`` -- the scene drawn through pycairo from Python.
* ``"pillow"``  -- the scene flattened to polygons and drawn by Pillow at 4x,
  then downsampled (a baseline with no Cairo at all; sides up to
  ``PILLOW_MAX_SIZE``, 2048 px).

All backends return H x W x 4 uint8 straight-alpha RGBA. The canonical frame's
[-1, 1] square is fitted, centred, into the output (any aspect), unless an
explicit ``transform`` (2x3, frame -> pixels) is given.
"""
from __future__ import annotations


import numpy as np

from . import native
from .errors import NativeError
# the argument checks live beside the renderer they guard (native imports nothing from here);
# api and animation import _size and _background from this module
from .native import _background, _size, _transform, _vector_size, _zoom
from .schema import as_params, validate

BACKENDS = ("native", "pycairo", "pillow")
#: The largest side the pillow backend draws. It draws at 4x, with a full-size RGBA layer and mask
#: per clip group: ~0.4 GB of memory at 1024 px (measured), growing with the square of the side
#: (at the 16384 the other backends take, layers of 65536² RGBA: 16 GiB each). A reference
#: backend: the native one draws every size.
PILLOW_MAX_SIZE = 2048
TOLERANCE = 0.25  # curve flattening tolerance in pixels, as in native/avz.c


def _fit_matrix(width, height, zoom=1.0):
    s = 0.5 * min(width, height) * zoom
    return np.array([[s, 0, 0.5 * width], [0, s, 0.5 * height]], np.float64)


def render(params, size: int = 512, *, width: int | None = None, height: int | None = None,
           background=None, backend: str = "native", transform=None, zoom: float = 1.0,
           antialias: str = "best", threads="auto") -> np.ndarray:
    """Renders one avatar to an H x W x 4 uint8 RGBA array.

    ``params``: 629 floats in schema ranges (see :mod:`avatarizer.schema`);
    wrong length, NaN/inf or out-of-range values raise ``ValueError``.
    ``background``: None/'transparent', 'white', '#rrggbb', or an RGB(A) tuple.
    ``size``: the side of a square image; ``width``/``height`` instead (one of
    them alone: a square of that side).
    ``antialias``: 'best' (default) or 'fast' (native only: 4x4 coverage, ~25% faster;
    always drawn on one thread, whatever ``threads`` says).
    ``zoom``: in [1e-6, 1000], and, but with pillow, zoom times half the shorter side
    at most 1e6 pixels (cairo's coordinates wrap beyond); ``transform`` coefficients within ±1e6.
    ``backend="pillow"`` draws sides up to ``PILLOW_MAX_SIZE`` (2048) only.
    ``threads``: native only, how many threads draw the image (bands of rows,
    at least 32 rows each; the picture the same within 3 levels with 2 threads (3.5 at most seen,
    up to 5 with 3-8; random parameter vectors, not faces: 8 with 3) where an outline meets a band
    edge): ``"auto"`` (default) is 2 for images of
    384² pixels or more where the process may run on two or more CPUs and no
    ``Avatarizer.stream()`` is running, else 1
    (:func:`avatarizer.native.auto_threads`); 1 keeps the drawing on the
    calling thread.
    """
    w, h = _size(size, width, height)
    bg = _background(background)
    transform = _transform(transform)
    if not isinstance(antialias, str) or antialias not in ("best", "fast"):
        raise ValueError(f"antialias must be 'best' or 'fast', got {antialias!r:.40}")
    if not isinstance(backend, str) or backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r:.40}; choose one of {BACKENDS}")
    # (the fitted scale's bound is cairo's: not the pillow backend's; a transform is bounded itself)
    zoom = _zoom(zoom, *((w, h) if transform is None and backend != "pillow" else (None, None)))
    if backend == "pillow" and max(w, h) > PILLOW_MAX_SIZE:
        raise ValueError(f"the pillow backend draws at most {PILLOW_MAX_SIZE} x {PILLOW_MAX_SIZE} pixels "
                         f"(it supersamples 4x), got {w} x {h}; backend='native' draws up to 16384")
    n_threads = native.resolve_threads(threads, w * h)
    if backend == "native":
        # avz_render checks the values itself (the same float32 bounds as
        # schema.validate); schema.validate runs only to name the bad one. Two
        # passes of numpy per call cost ~0.1 ms after a render has pushed
        # Python's working set out of the caches.
        p = as_params(params)
        r = native.renderer()
        r.threads = n_threads
        try:
            return r.render(p, w, h, background=bg, transform=transform, zoom=zoom, antialias=antialias)
        except NativeError as exc:
            if exc.status in ("AVZ_E_NONFINITE", "AVZ_E_RANGE"):
                validate(params)  # raises the SchemaError that names the parameter (and a too large one's value)
            raise
    p = validate(params)
    scene = native.Scene(p)
    m = _fit_matrix(w, h, zoom) if transform is None else np.asarray(transform, np.float64)
    if backend == "pycairo":
        try:
            import cairo
        except ImportError:
            cairo = None
        if cairo is None:
            return _render_pycairo(scene, w, h, bg, m)  # raises the ImportError that says what to install
        try:
            return _render_pycairo(scene, w, h, bg, m)
        except cairo.Error as exc:  # the same status the native renderer reports
            raise NativeError("AVZ_E_CAIRO", f"cairo reported an error: {exc}") from None
    try:
        return _render_pillow(scene, w, h, bg, m)
    except OverflowError as exc:  # coordinates beyond what Pillow draws
        raise ValueError(f"the pillow backend cannot draw at this size and transform: {exc}") from None


def to_svg(params, size: float = 512, *, width: float | None = None, height: float | None = None,
           background=None) -> str:
    """The avatar as an SVG document (a string); scales to any size.
    ``size`` (or ``width``/``height``; one of them alone: a square) in points, 1..16384."""
    w, h = _vector_size(size, width, height)
    return native.renderer().vector(validate(params), "svg", w, h, background=_background(background)).decode()


#: the largest PDF page, points a side (``AVZ_MAX_PDF_SIZE``: the PDF specification's; readers refuse larger pages)
PDF_MAX_SIZE = 14400


def to_pdf(params, size: float = 512, *, width: float | None = None, height: float | None = None,
           background=None) -> bytes:
    """The avatar as a one-page PDF document (bytes); ``size`` (or
    ``width``/``height``; one of them alone: a square) in points, at least 1 and at most
    :data:`PDF_MAX_SIZE` (14400) a side."""
    w, h = _vector_size(size, width, height, PDF_MAX_SIZE,
                        f" (a PDF page is at most {PDF_MAX_SIZE} points a side, the PDF limit)")
    return native.renderer().vector(validate(params), "pdf", w, h, background=_background(background))


# ------------------------------------------------------------------ pycairo


def _render_pycairo(scene: "native.Scene", w, h, bg, m) -> np.ndarray:
    try:
        import cairo
    except ImportError:
        raise ImportError('backend="pycairo" needs pycairo, which is not installed (it is a test/reference '
                          'backend: pip install pycairo, or "avatarizer[dev]"; the default backend="native" '
                          'needs nothing more)') from None

    surf = cairo.ImageSurface(cairo.FORMAT_ARGB32, w, h)
    cr = cairo.Context(surf)
    if bg is not None:
        cr.set_operator(cairo.OPERATOR_SOURCE)
        cr.set_source_rgba(*bg)
        cr.paint()
        cr.set_operator(cairo.OPERATOR_OVER)
    cr.transform(cairo.Matrix(m[0, 0], m[1, 0], m[0, 1], m[1, 1], m[0, 2], m[1, 2]))
    cr.set_line_cap(cairo.LINE_CAP_ROUND)
    cr.set_line_join(cairo.LINE_JOIN_ROUND)
    cr.set_tolerance(TOLERANCE)
    path = scene.path
    depth = 0
    for kind, rgba, width, a, b in scene.items:
        if kind == native.ITEM_CLIP_POP:
            if depth:
                cr.restore()
                depth -= 1
            continue
        cr.new_path()
        i = a
        while i < b:
            op = int(path[i])
            if op == native.OP_MOVE:
                cr.move_to(path[i + 1], path[i + 2])
                i += 3
            elif op == native.OP_LINE:
                cr.line_to(path[i + 1], path[i + 2])
                i += 3
            elif op == native.OP_CURVE:
                cr.curve_to(*path[i + 1:i + 7])
                i += 7
            else:
                cr.close_path()
                i += 1
        if kind == native.ITEM_CLIP_PUSH:
            cr.save()
            depth += 1
            cr.clip()
            continue
        cr.set_source_rgba(*rgba)
        if kind == native.ITEM_FILL:
            cr.fill()
        else:
            cr.set_line_width(width)
            cr.stroke()
    while depth:
        cr.restore()
        depth -= 1
    surf.flush()
    stride = surf.get_stride()
    bgra = np.ndarray((h, stride // 4, 4), np.uint8, surf.get_data())[:, :w]
    return _unpremultiply_bgra(bgra)


def _unpremultiply_bgra(bgra: np.ndarray) -> np.ndarray:
    out = np.empty(bgra.shape, np.uint8)
    a = bgra[..., 3].astype(np.uint32)
    safe = np.maximum(a, 1)
    for dst, src in ((0, 2), (1, 1), (2, 0)):
        c = bgra[..., src].astype(np.uint32)
        out[..., dst] = np.where((a > 0) & (a < 255), (c * 255 + a // 2) // safe, c).astype(np.uint8)
    out[..., 3] = bgra[..., 3]
    return out


# ------------------------------------------------------------------- pillow

_SS = 4  # supersampling factor


def _flatten(scene: "native.Scene", a: int, b: int, m: np.ndarray, steps: int = 12):
    """Path range -> list of polygons (N x 2 pixel arrays) at supersampled scale."""
    polys, cur, start = [], [], None
    path = scene.path
    t = np.linspace(0, 1, steps + 1)[1:, None]
    i = a
    while i < b:
        op = int(path[i])
        if op == native.OP_MOVE:
            if len(cur) > 1:
                polys.append(np.array(cur))
            start = path[i + 1:i + 3].astype(np.float64)
            cur = [start]
            i += 3
        elif op == native.OP_LINE:
            cur.append(path[i + 1:i + 3].astype(np.float64))
            i += 3
        elif op == native.OP_CURVE:
            p0 = cur[-1]
            c1, c2, p3 = (path[i + 1 + 2 * k:i + 3 + 2 * k].astype(np.float64) for k in range(3))
            u = 1 - t
            pts = u ** 3 * p0 + 3 * u * u * t * c1 + 3 * u * t * t * c2 + t ** 3 * p3
            cur.extend(pts)
            i += 7
        else:
            if start is not None:
                cur.append(start)
            i += 1
    if len(cur) > 1:
        polys.append(np.array(cur))
    out = []
    for poly in polys:
        xy = poly @ m[:, :2].T + m[:, 2]
        out.append(xy * _SS)
    return out


def _render_pillow(scene: "native.Scene", w, h, bg, m) -> np.ndarray:
    from PIL import Image, ImageDraw

    W, H = w * _SS, h * _SS
    scale = float(np.sqrt(abs(np.linalg.det(m[:, :2]))))
    # layers: a stack of (image, clip mask) for clip groups
    base = Image.new("RGBA", (W, H), tuple(int(round(c * 255)) for c in bg) if bg else (0, 0, 0, 0))
    stack: list[tuple[Image.Image, Image.Image | None]] = [(base, None)]

    def draw_shape(img, polys, rgba, width=None):
        col = tuple(int(round(c * 255)) for c in rgba)
        lw = 0 if width is None else max(1, int(round(width * scale * _SS)))
        allpts = np.concatenate(polys) if polys else np.zeros((0, 2))
        if len(allpts) == 0:
            return
        # Pillow writes RGBA pixels without blending, so translucent shapes are
        # drawn on a small layer (their bounding box) and alpha-composited.
        x0, y0 = np.floor(allpts.min(0)).astype(int) - lw - 1
        x1, y1 = np.ceil(allpts.max(0)).astype(int) + lw + 2
        x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1, W), min(y1, H)
        if x1 <= x0 or y1 <= y0:
            return
        layer = Image.new("RGBA", (x1 - x0, y1 - y0), col[:3] + (0,))
        d = ImageDraw.Draw(layer)
        for poly in polys:
            xy = [(float(px - x0), float(py - y0)) for px, py in poly]
            if width is None:
                if len(xy) >= 3:
                    d.polygon(xy, fill=col)
            else:
                d.line(xy, fill=col, width=lw, joint="curve")
        img.alpha_composite(layer, (x0, y0))

    for kind, rgba, width, a, b in scene.items:
        if kind == native.ITEM_CLIP_PUSH:
            mask = Image.new("L", (W, H), 0)
            md = ImageDraw.Draw(mask)
            for poly in _flatten(scene, a, b, m):
                if len(poly) >= 3:
                    md.polygon([tuple(p) for p in poly], fill=255)
            parent_mask = stack[-1][1]
            if parent_mask is not None:
                mask = Image.fromarray(np.minimum(np.asarray(mask), np.asarray(parent_mask)))
            stack.append((Image.new("RGBA", (W, H), (0, 0, 0, 0)), mask))
        elif kind == native.ITEM_CLIP_POP:
            if len(stack) > 1:
                layer, mask = stack.pop()
                arr = np.asarray(layer).copy()
                arr[..., 3] = (arr[..., 3].astype(np.uint16) * np.asarray(mask) // 255).astype(np.uint8)
                stack[-1][0].alpha_composite(Image.fromarray(arr))
        else:
            polys = _flatten(scene, a, b, m)
            draw_shape(stack[-1][0], polys, rgba, width if kind == native.ITEM_STROKE else None)
    while len(stack) > 1:
        layer, mask = stack.pop()
        stack[-1][0].alpha_composite(layer)
    return np.array(base.resize((w, h), Image.Resampling.BOX))  # a writable array, as the other backends give
