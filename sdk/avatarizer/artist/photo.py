"""The aligned photo the artist samples, and small geometry and colour helpers."""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import lru_cache

import cv2
import numpy as np

from .. import prior as P
from .. import schema as S
from ..landmarks import side_index
from .stats import mean, median, percentile


#: the ufunc behind ``np.clip`` (which spends ~5 µs a call on argument
#: handling before calling it; the artist clips ~100 small arrays a face)
clip = np.core.umath.clip
#: the compiled function behind ``np.interp`` for real data, which it calls
#: after its own argument handling (~2 µs; the artist interpolates ~40 times a face)
interp = np.core.multiarray.interp


def clamp(x, lo, hi) -> float:
    """``float(np.clip(x, lo, hi))`` for one number (NaN stays NaN), without
    NumPy's ~10 µs a call (the artist clamps ~100 numbers a face)."""
    return float(min(max(x, lo), hi))


@lru_cache(maxsize=None)
def landmark_index(name: str, side: int) -> np.ndarray:
    """``side_index(name, side)`` as an index array, made once (read-only)."""
    idx = np.array(side_index(name, side), np.intp)
    idx.setflags(write=False)
    return idx


def linspace(start: float, stop: float, num: int) -> np.ndarray:
    """``np.linspace(start, stop, num)`` for scalars and num >= 2, with
    NumPy's arithmetic (i * step + start, the last value exactly ``stop``)
    but not its ~20 µs of argument handling."""
    y = np.arange(num, dtype=np.float64)
    y *= (stop - start) / (num - 1)
    y += start
    y[-1] = stop
    return y


def grid(x0: float, x1: float, nx: int, y0: float, y1: float, ny: int) -> np.ndarray:
    """(ny, nx, 2) canonical points: ``np.stack(np.meshgrid(linspace(x0, x1, nx),
    linspace(y0, y1, ny)), -1)``."""
    out = np.empty((ny, nx, 2))
    out[..., 0] = linspace(x0, x1, nx)[None, :]
    out[..., 1] = linspace(y0, y1, ny)[:, None]
    return out


def resample(poly: np.ndarray, ts) -> np.ndarray:
    """Points at arc-length fractions ``ts`` along an open polyline."""
    poly = np.asarray(poly, np.float64)
    d = poly[1:] - poly[:-1]
    d *= d
    acc = np.empty(len(poly))  # arc length at each point: 0, then the running sum of the segment lengths
    acc[0] = 0.0
    np.cumsum(np.sqrt(d[:, 0] + d[:, 1]), out=acc[1:])  # np.linalg.norm(np.diff(poly), axis=1), same sums
    total = acc[-1] if acc[-1] > 1e-9 else 1.0
    t = np.asarray(ts, np.float64) * total
    out = np.empty((len(t), 2))
    out[:, 0] = interp(t, acc, poly[:, 0])
    out[:, 1] = interp(t, acc, poly[:, 1])
    return out


def cr_closed(pts: np.ndarray, per: int = 6) -> np.ndarray:
    """Samples the renderer's closed Catmull-Rom curve through ``pts``."""
    p = np.asarray(pts, np.float64)
    # np.roll(p, 1), p, np.roll(p, -1), np.roll(p, -2)
    p0, p1, p2, p3 = np.concatenate([p[-1:], p[:-1]]), p, np.concatenate([p[1:], p[:1]]), \
        np.concatenate([p[2:], p[:2]])
    c1 = p1 + (p2 - p0) / 6.0
    c2 = p2 - (p3 - p1) / 6.0
    b0, b1, b2, b3 = _bernstein(per)
    out = b0 * p1[:, None] + b1 * c1[:, None] + b2 * c2[:, None] + b3 * p2[:, None]
    return out.reshape(-1, 2)


@lru_cache(maxsize=8)
def _bernstein(per: int):
    """The cubic Bezier weights at t = k / per, k < per, shaped (1, per, 1):
    u^3, 3u^2 t, 3u t^2, t^3 (u = 1 - t), multiplied in that order."""
    t = (np.arange(per) / per)[None, :, None]
    u = 1 - t
    out = (u ** 3, 3 * u * u * t, 3 * u * t * t, t ** 3)
    for b in out:
        b.setflags(write=False)
    return out


def laplace(pts: np.ndarray, w: float, keep=()) -> np.ndarray:
    """Pulls interior points of an open curve toward their neighbours' mean."""
    out = pts.copy()
    if w <= 0 or len(pts) < 3:
        return out
    mid = 0.5 * (pts[:-2] + pts[2:])
    out[1:-1] = pts[1:-1] + w * (mid - pts[1:-1])
    for k in keep:
        out[k] = pts[k]
    return out


def to_px(xy: np.ndarray, size: int) -> np.ndarray:
    """Canonical → cv2 pixel-index coordinates of a ``size`` crop."""
    return (np.asarray(xy, np.float64) + 1.0) * 0.5 * size - 0.5


def poly_mask(size: int, *polys) -> np.ndarray:
    m = np.zeros((size, size), np.uint8)
    pp = [np.rint(to_px(p, size) * 16).astype(np.int32) for p in polys]  # np.round, decimals=0
    cv2.fillPoly(m, pp, 1, lineType=cv2.LINE_8, shift=4)
    return m.astype(bool)


def sample_at(img: np.ndarray, xy: np.ndarray) -> np.ndarray:
    """Bilinear samples of ``img`` (float32, HxW or HxWxC) at canonical points ``xy`` (..., 2)."""
    size = img.shape[0]
    px = to_px(xy, size).astype(np.float32)
    shp = px.shape[:-1]
    flat = px.reshape(1, -1, 2)
    out = cv2.remap(img, flat[..., 0], flat[..., 1], cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    return out.reshape(*shp, *img.shape[2:])


_NORM_FAST = (np.dtype(np.float32), np.dtype(np.float64))


def norm(x: np.ndarray, keepdims: bool = False) -> np.ndarray:
    """``np.linalg.norm(x, axis=-1, keepdims=keepdims)`` of a real float
    array: the same ``sqrt(add.reduce(x * x))`` NumPy computes there, without
    its argument handling (~8 µs a call; the artist takes ~25 norms a face).
    Over a last axis of three (colours, CIELAB differences) the squares are
    added elementwise, ``(x0² + x1²) + x2²``: the order NumPy's reduction
    adds three values in (the same values for float32 and float64, checked
    on 20,000 vectors and 3,000 arrays of either), 5x as fast over an image
    as the reduction, which loops over the short axis once per pixel."""
    x2 = x * x
    if x2.ndim and x2.shape[-1] == 3 and x2.dtype in _NORM_FAST:  # (NumPy's reduction adds float16 in float32,
        # small integers in a wider type: those go to it)
        s = x2[..., 0] + x2[..., 1]
        s += x2[..., 2]
        if keepdims:
            s = s[..., None]
        return np.sqrt(s)
    return np.sqrt(np.add.reduce(x2, axis=-1, keepdims=keepdims))


def masked(img: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """``img[mask]`` for an H×W×C image and an H×W bool mask: the same pixels
    in the same (row-major) order, as ``compress`` on the image flattened to
    (H·W, C) (NumPy's 2-D boolean index into a 3-D array costs 3-5x as much)."""
    return img.reshape(-1, img.shape[-1]).compress(mask.ravel(), axis=0)


def luma_of(rgb: np.ndarray) -> np.ndarray:
    """``rgb[..., 0] * 0.299 + rgb[..., 1] * 0.587 + rgb[..., 2] * 0.114``,
    the sums made in place (same order, same values)."""
    y = rgb[..., 0] * 0.299
    y += rgb[..., 1] * 0.587
    y += rgb[..., 2] * 0.114
    return y


def robust_median(px: np.ndarray, lo: float = 20.0, hi: float = 80.0):
    """Median colour of (N, 3) pixels between two luminance percentiles; None if empty."""
    if len(px) == 0:
        return None
    if len(px) >= 8:
        y = luma_of(px)
        a, b = percentile(y, [lo, hi])
        keep = (y >= a) & (y <= b)
        if np.count_nonzero(keep) >= 3:
            px = px[keep]
    return median(px, axis=0)


_RGB2XYZ = np.array([[0.412453, 0.357580, 0.180423],
                     [0.212671, 0.715160, 0.072169],
                     [0.019334, 0.119193, 0.950227]]) / np.array([[0.950456], [1.0], [1.088754]])


def srgb_to_linear(x) -> np.ndarray:
    """The sRGB transfer function undone: linear light of sRGB values in [0, 1].

    ``np.where(x <= 0.04045, x / 12.92, ((x + 0.055) / 1.055) ** 2.4)``
    computed in place, the power only once per value (the same elementwise
    operations in the same dtype, so the same values)."""
    if np.ndim(x) == 0:  # a number: NumPy's scalar promotion, the formula as it is
        return np.where(x <= 0.04045, x / 12.92, ((x + 0.055) / 1.055) ** 2.4)
    x = np.asarray(x)
    out = x + 0.055
    out /= 1.055
    np.power(out, 2.4, out=out)
    low = x <= 0.04045
    if np.count_nonzero(low):  # (cheaper than low.any() on the artist's small arrays)
        out[low] = x[low] / 12.92
    return out


def linear_to_srgb(x) -> np.ndarray:
    """The sRGB transfer function: sRGB values of linear light in [0, 1]."""
    return np.where(x <= 0.0031308, 12.92 * x, 1.055 * x ** (1 / 2.4) - 0.055)


def to_lab(rgb) -> np.ndarray:
    """CIE L*a*b* (D65) of float sRGB in [0, 1], any leading shape, in numpy
    (matches OpenCV's RGB2LAB within 0.3; OpenCV's float path costs ~100 ms
    on its first call in a process and ~0.5 ms a call on a busy machine)."""
    a = clip(np.asarray(rgb, np.float64), 0.0, 1.0)
    xyz = srgb_to_linear(a) @ _RGB2XYZ.T
    # f = np.where(xyz > 0.008856, np.cbrt(xyz), 7.787 * xyz + 16.0 / 116.0), the
    # dark values patched in afterwards (same values, no second full-size branch)
    f = np.cbrt(xyz)
    dark = ~(xyz > 0.008856)
    if np.count_nonzero(dark):
        f[dark] = 7.787 * xyz[dark] + 16.0 / 116.0
    # written into one array (np.stack of three 0-d results costs more than the rest for one colour)
    out = np.empty(xyz.shape)
    L = out[..., 0]
    np.multiply(f[..., 1], 116.0, out=L)
    L -= 16.0
    y = xyz[..., 1]
    dark = dark[..., 1]
    if np.count_nonzero(dark):  # np.where(y > 0.008856, 116 f_y - 16, 903.3 y)
        L[dark] = 903.3 * y[dark]
    out[..., 1] = 500.0 * (f[..., 0] - f[..., 1])
    out[..., 2] = 200.0 * (f[..., 1] - f[..., 2])
    return out


_XYZ2RGB = np.linalg.inv(_RGB2XYZ)


def _lab_to_linear(lab) -> np.ndarray:
    lab = np.asarray(lab, np.float64)
    fy = (lab[..., 0] + 16.0) / 116.0
    f = np.stack([fy + lab[..., 1] / 500.0, fy, fy - lab[..., 2] / 200.0], -1)
    xyz = np.where(f > 0.206893, f ** 3, (f - 16.0 / 116.0) / 7.787)
    return xyz @ _XYZ2RGB.T


def from_lab(lab) -> np.ndarray:
    """The inverse of :func:`to_lab`: float sRGB in [0, 1] (clipped) of CIE
    L*a*b* (D65) values, any leading shape."""
    return linear_to_srgb(clip(_lab_to_linear(lab), 0.0, 1.0))


def in_srgb_gamut(lab, tol: float = 1e-6) -> bool:
    """Whether sRGB has the one CIE L*a*b* (D65) colour ``lab`` (its linear
    channels within [0, 1], ``tol`` either side): :func:`from_lab` clips the
    rest, which moves their lightness and hue."""
    rgb = _lab_to_linear(lab)
    return bool(((rgb >= -tol) & (rgb <= 1.0 + tol)).all())


def crop_valid_mask(face, size: int) -> np.ndarray:
    """Which pixels of ``face.crop(size)`` come from inside the frame (crops
    replicate the frame's border beyond it; those pixels carry no information)."""
    h, w = face.frame_shape[:2]
    c = (np.arange(size) + 0.5) * 2.0 / size - 1.0
    t = np.asarray(face.transform, np.float64)
    # the crop's corner pixels all inside: so is every pixel (an affine map of a square is convex), the
    # common case of a loose portrait (0.3 ms of a frame at 192 px for a mask of ones)
    e = (c[0], c[-1])
    if all(0 <= t[0, 0] * u + t[0, 1] * v + t[0, 2] <= w and 0 <= t[1, 0] * u + t[1, 1] * v + t[1, 2] <= h
           for u in e for v in e):
        return np.ones((size, size), bool)
    x = t[0, 0] * c[None, :] + t[0, 1] * c[:, None] + t[0, 2]
    y = t[1, 0] * c[None, :] + t[1, 1] * c[:, None] + t[1, 2]
    return (x >= 0) & (x <= w) & (y >= 0) & (y <= h)



@lru_cache(maxsize=None)
def _point_ranges(feature: str) -> tuple[np.ndarray, np.ndarray]:
    """The schema's (N, 2) lower and upper bounds of a feature's points (read-only)."""
    f = S.FEATURES[feature]
    lo, hi = S.LO[f.points].reshape(-1, 2), S.HI[f.points].reshape(-1, 2)
    lo.setflags(write=False)
    hi.setflags(write=False)
    return lo, hi


def translate_into_range(pts: np.ndarray, feature: str) -> np.ndarray:
    """Shifts a small feature as a whole (keeping its shape) so that its points
    fit the schema ranges as well as they can, instead of clipping points one
    by one later."""
    lo, hi = _point_ranges(feature)
    out = np.asarray(pts, np.float64).copy()
    for a in (0, 1):
        need_up = float(np.max(lo[:, a] - out[:, a]))  # > 0: some point is below its range
        need_dn = float(np.min(hi[:, a] - out[:, a]))  # < 0: some point is above its range
        if need_up > 0 and need_dn >= 0:
            out[:, a] += min(need_up, need_dn)
        elif need_dn < 0 and need_up <= 0:
            out[:, a] += max(need_dn, need_up)
    return out


#: ``prior.set_rgb`` (its indices cached there); the artist's modules take it from here
set_rgb = P.set_rgb


def _quad(xy: np.ndarray) -> np.ndarray:
    """The quadratic monomials (1, x, y, x², xy, y²) of (..., 2) points, (..., 6)."""
    x, y = xy[..., 0], xy[..., 1]
    out = np.empty(xy.shape[:-1] + (6,), xy.dtype)
    out[..., 0] = 1.0
    out[..., 1] = x
    out[..., 2] = y
    out[..., 3] = x * x
    out[..., 4] = x * y
    out[..., 5] = y * y
    return out


def fit_warp(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """(6, 2) least-squares quadratic map taking canonical points ``src`` to
    ``dst`` (the frontal face's landmarks to the photo's)."""
    return np.linalg.lstsq(_quad(np.asarray(src, np.float64)), np.asarray(dst, np.float64), rcond=None)[0]


@dataclass
class Photo:
    """The aligned crop and the masks the colour samplers share."""

    rgb: np.ndarray            # S×S×3 float32 in [0, 1]
    luma: np.ndarray           # S×S float32
    valid: np.ndarray          # S×S bool
    hair: np.ndarray | None    # S×S float32 person-minus-face mask, or None
    size: int
    gx: np.ndarray = field(default=None)  # canonical x of each pixel column (1, S)
    gy: np.ndarray = field(default=None)  # canonical y of each pixel row (S, 1)

    #: the S×S×3 uint8 crop ``rgb`` was made from (``rgb`` is it / 255); None for a float crop
    crop: np.ndarray | None = None

    _hp: np.ndarray | None = None
    _vf: np.ndarray | None = None
    _net_crop: np.ndarray | None = None
    _resized: dict = field(default_factory=dict)  # :meth:`resized`'s, by size
    #: region() of single discs already asked for (this photo's own: the cheek
    #: discs are read for the skin colour and again for the light direction)
    _disc_regions: dict = field(default_factory=dict)
    #: (6, 2) quadratic map from the drawn (frontal) face's canonical
    #: coordinates to the photo's; None = the identity (no head pose taken out)
    warp: np.ndarray | None = None

    def network_crop(self) -> np.ndarray:
        """The crop as the region networks read it (:mod:`avatarizer.regionnet`:
        an aligned uint8 RGB crop of :data:`avatarizer.regionnet.CROP` px, area-resampled
        from this one), made once."""
        if self._net_crop is None:
            from ..regionnet import CROP

            if self.crop is not None:
                # the uint8 crop itself: the same bytes as the line below makes (k / 255 in float32, times
                # 255, plus 0.5 truncates back to k for every uint8 k), without its float arithmetic
                img = np.ascontiguousarray(self.crop)
            else:
                img = np.clip(self.rgb * 255.0 + 0.5, 0, 255).astype(np.uint8)
            if img.shape[0] != CROP:
                img = cv2.resize(img, (CROP, CROP), interpolation=cv2.INTER_AREA)
            elif img is self.crop:
                img = img.copy()  # (not the caller's array)
            img.setflags(write=False)  # (shared by the networks that read it)
            self._net_crop = img
        return self._net_crop

    def resized(self, size: int) -> np.ndarray:
        """``rgb`` area-resampled to ``size``² (read-only; made once per size: the hat's shape cues and
        the age estimate both read the crop at 128 px); ``rgb`` itself at its own size."""
        if size == self.size:
            return self.rgb
        img = self._resized.get(size)
        if img is None:
            img = self._resized[size] = cv2.resize(self.rgb, (size, size), interpolation=cv2.INTER_AREA)
            img.setflags(write=False)
        return img

    def to_img(self, xy) -> np.ndarray:
        """Canonical points of the drawn (frontal) face → where that point
        of the face lies in the photo's crop."""
        xy = np.asarray(xy, np.float64)
        return xy if self.warp is None else _quad(xy) @ self.warp

    @property
    def validf(self) -> np.ndarray:
        if self._vf is None:
            self._vf = self.valid.astype(np.float32)
        return self._vf

    def pixels(self, mask: np.ndarray) -> np.ndarray:
        return masked(self.rgb, mask & self.valid)

    def region(self, *polys, minus=(), discs=(), minus_discs=(), within=None):
        """The valid pixels inside canonical polygons (and discs ``(centre,
        radius)``), minus others, computed in their bounding window only.
        Returns ``(window, mask)`` for ``self.rgb[window][mask]``."""
        if len(discs) == 1 and not (polys or minus or minus_discs or within is not None):
            c, r = discs[0]
            key = (*np.asarray(c, np.float64).tolist(), float(r))
            got = self._disc_regions.get(key)
            if got is None:
                got = self._disc_regions[key] = self._region((), minus, discs, minus_discs, within)
                got[1].setflags(write=False)  # shared by the callers
            return got
        return self._region(polys, minus, discs, minus_discs, within)

    def _region(self, polys, minus, discs, minus_discs, within):
        S_ = self.size
        polys = [np.asarray(q, np.float64).reshape(-1, 2) for q in polys]
        discs = [(np.asarray(c, np.float64), r) for c, r in discs]
        ext = polys + [c[None] + np.array([[-r, -r], [r, r]]) for c, r in discs]
        px = to_px(np.concatenate(ext), S_)
        # the window: integer bounds, clipped to the crop (plain ints: NumPy's
        # maximum / minimum on two numbers cost more than the masks below;
        # math.floor / ceil of the finite float64 bounds = np.floor / np.ceil's)
        (lx, ly), (hx, hy) = px.min(0).tolist(), px.max(0).tolist()
        x0, y0 = max(math.floor(lx) - 1, 0), max(math.floor(ly) - 1, 0)
        x1, y1 = min(math.ceil(hx) + 2, S_), min(math.ceil(hy) + 2, S_)
        if x1 <= x0 or y1 <= y0:
            return (slice(0, 0), slice(0, 0)), np.zeros((0, 0), bool)
        m = np.zeros((y1 - y0, x1 - x0), np.uint8)
        off = np.array([x0, y0], np.float64)

        def fix_px(q_px):  # window pixels in OpenCV's 4-bit fixed point (np.rint is np.round's decimals=0 path)
            return np.rint((q_px - off) * 16).astype(np.int32)

        def fix(q):
            return fix_px(to_px(q, S_))

        def centre(c):  # the same for one point, in Python floats (same operations, same rounding)
            return (round((((c[0] + 1.0) * 0.5 * S_ - 0.5) - x0) * 16),
                    round((((c[1] + 1.0) * 0.5 * S_ - 0.5) - y0) * 16))

        if polys:  # their pixel coordinates are the first rows of px
            parts, start = [], 0
            for q in polys:
                parts.append(fix_px(px[start:start + len(q)]))
                start += len(q)
            cv2.fillPoly(m, parts, 1, lineType=cv2.LINE_8, shift=4)
        for c, r in discs:
            cv2.circle(m, centre(c), max(1, int(round(r * 0.5 * S_ * 16))), 1, -1, cv2.LINE_8, 4)
        if minus:
            cv2.fillPoly(m, [fix(q) for q in minus], 0, lineType=cv2.LINE_8, shift=4)
        for c, r in minus_discs:
            cv2.circle(m, centre(np.asarray(c, np.float64)), max(1, int(round(r * 0.5 * S_ * 16))), 0, -1,
                       cv2.LINE_8, 4)
        if within is not None:
            w = np.zeros_like(m)
            cv2.fillPoly(w, [fix(within)], 1, lineType=cv2.LINE_8, shift=4)
            m &= w
        win = (slice(y0, y1), slice(x0, x1))
        return win, m.view(bool) & self.valid[win]  # m holds 0 / 1: its bytes are the bool mask

    def region_pixels(self, *polys, **kw) -> np.ndarray:
        win, m = self.region(*polys, **kw)
        return masked(self.rgb[win], m)

    @property
    def highpass(self) -> np.ndarray:
        """|luma - blurred luma|: fine texture (hair strands, stubble, frames)."""
        if self._hp is None:
            self._hp = np.abs(self.luma - cv2.GaussianBlur(self.luma, (0, 0), 1.2 * self.size / 192.0))
        return self._hp

    def region_texture(self, window, mask: np.ndarray) -> float:
        """Mean relative fine texture of a :meth:`region` (``window``, ``mask``)."""
        return float(mean(self.highpass[window][mask])) / (float(mean(self.luma[window][mask])) + 0.06)

    def texture(self, mask: np.ndarray) -> float:
        """Mean relative fine texture inside a mask (crop resolution)."""
        m = mask & self.valid
        if np.count_nonzero(m) < 8:
            return 0.0
        return float(mean(self.highpass[m])) / (float(mean(self.luma[m])) + 0.06)



def at_size(a: np.ndarray, size: int) -> np.ndarray:
    """A square S×S array at ``size``² by nearest pixel (rows and columns
    ``i * S // size``), as it is when already that size."""
    if a.shape[0] == size:
        return a
    idx = np.arange(size) * a.shape[0] // size
    return a[idx][:, idx]


def mask01(mask) -> np.ndarray:
    """A square person or hair mask as bool: uint8 at >= 128, any other
    dtype at >= 0.5 (``ValueError`` unless S×S)."""
    m = np.asarray(mask)
    if m.ndim != 2 or m.shape[0] != m.shape[1]:
        raise ValueError(f"hair mask must be a square S×S array, got shape {m.shape}")
    if m.dtype == np.uint8:
        return m >= 128
    return m.astype(np.float32) >= 0.5


def float_rgb(crop) -> np.ndarray:
    """An image as float32 RGB: uint8 scaled to [0, 1], floats as they are."""
    img = np.asarray(crop)
    if img.dtype != np.uint8:
        return img.astype(np.float32)
    out = img.astype(np.float32)
    out /= 255.0  # in place: the same float32 quotients as img.astype(np.float32) / 255.0
    return out


@lru_cache(maxsize=8)
def pixel_centres(size: int) -> np.ndarray:
    """(size,) float32 canonical coordinate of each pixel row / column of a
    ``size`` crop, made once per size (read-only)."""
    c = ((np.arange(size) + 0.5) * 2.0 / size - 1.0).astype(np.float32)
    c.setflags(write=False)
    return c


def make_photo(st, crop, hair_mask, valid) -> Photo:
    img = np.asarray(crop)
    if img.ndim != 3 or img.shape[2] < 3 or img.shape[0] != img.shape[1]:
        raise ValueError(f"crop must be a square S×S×3 image, got shape {img.shape}")
    img = img[..., :3]
    rgb = float_rgb(img) if img.dtype == np.uint8 else clip(float_rgb(img), 0, 1)
    size = rgb.shape[0]
    if valid is None:
        valid = np.ones((size, size), bool)
    valid = np.asarray(valid, bool)
    if valid.shape != (size, size):
        valid = cv2.resize(valid.astype(np.uint8), (size, size), interpolation=cv2.INTER_NEAREST).astype(bool)
    hm = None
    if hair_mask is not None:
        hm = np.asarray(hair_mask, np.float32)
        if hm.shape != (size, size):
            hm = cv2.resize(hm, (size, size), interpolation=cv2.INTER_LINEAR)
    c = pixel_centres(size)
    return Photo(np.ascontiguousarray(rgb), luma_of(rgb).astype(np.float32, copy=False), valid, hm, size,
                  c[None, :], c[:, None], crop=img if img.dtype == np.uint8 else None)

def gain(st, c):
    c = np.asarray(c, np.float64)
    k = st.color_gain
    if k == 1.0:
        return clip(c, 0, 1)
    m = mean(c)
    return clip(m + (c - m) * k, 0, 1)
