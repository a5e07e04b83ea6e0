"""The automatic avatar artist: one aligned photo → all 629 avatar parameters.

:class:`AutoArtist` measures a face from its MediaPipe landmarks (already in
the canonical frame, see :mod:`avatarizer.align`) and from the aligned crop,
then draws it in one consistent, simplified style. Every choice that turns a
*measured* face into a *drawn* face lives in :class:`ArtistStyle`, so the style
is changed in one place. The artist is what the export side runs on real
photos to make paired training data, and it is a usable avatarizer on its own::

    from avatarizer.align import FaceAligner
    from avatarizer.artist import AutoArtist

    with FaceAligner() as aligner:
        face = aligner.align(frame)                 # H×W×3 uint8 RGB
    params = AutoArtist().fit(face)                 # (629,) float32, valid
    image = avatarizer.render(params, 256, background="white")

It works in three steps:

1. **Geometry** from the canonical landmarks: the face outline (MediaPipe
   face-oval points at the template's angles, with the skull above the
   forehead extrapolated from the eye-to-chin distance), ears, eyelids,
   creases, irises, brows (refined by the dark band in the photo), nose,
   lips, cheeks, shadows, highlights, wrinkles and the neck.
2. **Stylisation** (:meth:`AutoArtist._stylise`): slightly bigger eyes,
   narrower mouth, fuller lips, cleaned curves and a partial left-right
   symmetrisation, all from :class:`ArtistStyle`.
3. **Colour, hair and accessories** from the crop: robust medians of skin,
   lips, irises, brows and hair; a hairstyle family from the prior
   (:func:`avatarizer.prior.hairstyle_contours`) chosen from the hair
   silhouette (length, volume, fringe, bald scalp, texture) and pulled onto
   the outline of the hair mask; conservative glasses and facial-hair
   detectors.

Everything is numpy/OpenCV on small arrays, no per-pixel Python loops: about
5-10 ms of one CPU core per face (landmarks and crop given).
Side naming follows the schema: ``_l`` is the feature on the *image's* left,
which MediaPipe calls the subject's right (indices 33, 133, 468, ...).
"""
from __future__ import annotations

from dataclasses import dataclass, field, fields

import cv2
import numpy as np

from . import prior as P
from . import schema as S

__all__ = ["ArtistStyle", "AutoArtist", "crop_valid_mask"]

# --------------------------------------------------------------- landmarks
# Image-left side (MediaPipe's "right") and the mirror partner on the image's
# right. Checked against the mirrored median face of 592 photos (< 0.012).
_FACE_OVAL = (10, 338, 297, 332, 284, 251, 389, 356, 454, 323, 361, 288, 397, 365, 379, 378, 400, 377,
              152, 148, 176, 149, 150, 136, 172, 58, 132, 93, 234, 127, 162, 21, 54, 103, 67, 109)
_SIDES = {
    # eye, inner corner → outer corner
    "eye_up": ((133, 173, 157, 158, 159, 160, 161, 246, 33), (362, 398, 384, 385, 386, 387, 388, 466, 263)),
    "eye_lo": ((133, 155, 154, 153, 145, 144, 163, 7, 33), (362, 382, 381, 380, 374, 373, 390, 249, 263)),
    "crease": ((190, 56, 28, 27, 29, 30, 247), (414, 286, 258, 257, 259, 260, 467)),
    # brows, inner → outer (upper and lower edge of MediaPipe's brow band)
    "brow_up": ((107, 66, 105, 63, 70), (336, 296, 334, 293, 300)),
    "brow_lo": ((55, 65, 52, 53, 46), (285, 295, 282, 283, 276)),
    "iris": ((468, 469, 470, 471, 472), (473, 474, 475, 476, 477)),
}
# single landmarks, (image-left, image-right)
_PAIR = {
    "ala_out": (64, 294), "ala_bot": (98, 327), "nostril_in": (97, 326), "bridge_top": (122, 351),
    "bridge_mid": (3, 248), "bridge_side": (236, 456), "ala_top": (134, 363), "ala_crease": (129, 358),
    "ala_up": (49, 279), "cheek": (205, 425), "cheek_out": (50, 280), "cheek_in": (36, 266),
    "cheekbone": (101, 330), "cheek_hi": (117, 346), "jowl": (187, 411), "jowl_lo": (207, 427),
    "mouth_side": (212, 432), "forehead_in": (108, 337), "forehead_mid": (69, 299),
    "forehead_out": (104, 333), "mouth_corner": (61, 291), "eye_outer": (33, 263), "eye_inner": (133, 362),
    "jaw": (172, 397), "chin_side": (149, 378), "temple": (162, 389), "cheek_outline": (234, 454),
}
_LIP_UO = (61, 40, 37, 0, 267, 270, 291)
_LIP_LO = (61, 181, 17, 405, 291)
_LIP_UI = (78, 81, 13, 311, 308)
_LIP_LI = (78, 178, 14, 402, 308)
_LIPS_OUTER = (61, 146, 91, 181, 84, 17, 314, 405, 321, 375, 291, 409, 270, 269, 267, 0, 37, 39, 40, 185)
_LIPS_INNER = (78, 95, 88, 178, 87, 14, 317, 402, 318, 324, 308, 415, 310, 311, 312, 13, 82, 81, 80, 191)
_BROW_OUTLINE = ((70, 63, 105, 66, 107, 55, 65, 52, 53, 46), (300, 293, 334, 296, 336, 285, 295, 282, 283, 276))
_CHEEK_PATCH = ((117, 118, 101, 36, 205, 187, 123), (346, 347, 330, 266, 425, 411, 352))
_FOREHEAD_PATCH = (108, 151, 337, 336, 9, 107)
_NOSE_PATCH = (6, 351, 412, 399, 5, 174, 188, 122)

# Facial-hair detectors. Each region (chin, jaw sides, upper lip) is measured
# against the upper cheeks: relative darkness, log texture ratio and loss of
# skin chroma. The score is the sum of the six features (chin + jaw for the
# beard, upper lip + chin for the moustache) standardised by their median and
# inter-quartile range on the 496 labelled FFHQ photos; the threshold keeps
# the top ~2% (precision about 0.6-0.7 against the labels, higher by eye:
# most "misses" there are stubble). Conservative on purpose.
_BEARD_MED = np.array([0.062, 0.312, 0.078, 0.119, 0.258, 0.048])
_BEARD_IQR = np.array([0.216, 0.826, 0.314, 0.181, 0.739, 0.32])
_MOUSTACHE_MED = np.array([0.104, 0.967, 0.114, 0.062, 0.312, 0.078])
_MOUSTACHE_IQR = np.array([0.24, 0.867, 0.366, 0.216, 0.826, 0.314])
_BEARD_T = 9.0
_MOUSTACHE_T = 9.0

# features placed by _shading (after the main symmetrisation)
_SHADING = ("blush_l", "blush_r", "cheek_shadow_l", "cheek_shadow_r", "cheek_highlight_l", "cheek_highlight_r",
            "nasolabial_l", "nasolabial_r", "undereye_l", "undereye_r", "forehead_line", "neck_shadow")

# feature-level mirror kinds, from the schema
_MIRROR_KIND = {f["name"]: f["mirror"] for f in S._DOC["features"]}
_FEATURE_OF = np.array(S.FEATURE_OF)
# parameters the symmetrisation blends: continuous ones of two-sided features
_SYM_OK = np.isin(np.array(S.KINDS), ("x", "y", "width", "size", "ratio", "opacity")) \
    & ~np.array([_MIRROR_KIND[f] == "negate" for f in S.FEATURE_OF])


def _idx(name: str, side: int):
    """Landmark indices of a sided group; side 0 = image-left, 1 = image-right."""
    return _SIDES[name][side] if name in _SIDES else _PAIR[name][side]


# ------------------------------------------------------------------- style


@dataclass(frozen=True)
class ArtistStyle:
    """The mapping from a measured face to the drawn face, in one place.

    Geometry (canonical units: the eye centres are 0.5 apart):

    Attributes:
        symmetry: how far every paired feature (eyes, brows, ears, cheeks...)
            and every mid-line feature (face outline, nose, lips) is blended
            toward the mirror image of its partner: 0 keeps the landmarks as
            measured, 0.5 makes the face exactly symmetric. Gaze (iris offset
            inside the eye) is kept.
        hair_symmetry: the same blend for the hair contours (side parts and
            swept fringes are identity, so it is weaker).
        smoothing: weight of a light Laplacian smoothing of the interior
            points of lids, brows and lower lips (removes landmark jitter;
            0 = none, 0.5 = strong).
        eye_scale: lids, creases and irises are enlarged about each eye's
            centre by this factor (1.1 = slightly bigger, friendlier eyes).
        eye_open: extra vertical opening of the lids about the corner line.
        iris_scale: iris radius relative to the measured iris ring (after
            ``eye_scale``).
        pupil_ratio: pupil radius / iris radius.
        lashes: eyelash length (0 = none).
        lid_width: thickness of the upper lid line at its outer end.
        crease_lift: crease position between the upper lid (0) and MediaPipe's
            upper-lid-1 ring (1).
        crease_width: thickness of the crease line.
        brow_weight: multiplies the fitted brow thickness.
        brow_photo: share of the brow thickness (and centre line) taken from
            the dark band in the photo; the rest comes from the landmark band.
        brow_hairiness: the brow's hair-stroke texture (0 = a flat shape).
        nose_scale: width of the nose base and nostrils about the nose centre.
        nose_line: multiplies the widths of the nose bridge line and base.
        mouth_width: lips are scaled horizontally about the mouth centre.
        lip_fullness: outer lip contours are moved away from the lip line.
        lip_outline: outline width of the outer lips.
        teeth_gap: inner lips further apart than this (canonical units at the
            centre) show teeth.
        outline_width: head outline stroke width.
        ear_scale: ear size relative to the face size.
        cranium: skull top above the eye line, as a fraction of the eye-line
            to chin distance (the forehead landmarks stop at the hairline).

    Shading and colour:

    Attributes:
        shadow_strength: multiplies the opacity of cheek, nose and neck
            shadows.
        highlight_strength: multiplies the opacity of forehead, nose and
            cheek highlights.
        blush_strength: multiplies the cheek blush opacity (measured from the
            cheeks' redness).
        wrinkle_strength: multiplies the widths of nasolabial, under-eye and
            forehead lines measured from dark creases in the photo; kept
            subtle.
        skin_percentiles: luminance percentiles between which skin pixels
            are kept (rejects highlights and shadows) before the median.
        color_gain: hair, lip, iris, brow and facial-hair colours are pushed
            away from their grey by this factor (1 = as sampled; >1 gives
            livelier flat colours). Skin always stays as sampled.
        sclera: the fixed eye-white colour.
        teeth: the teeth colour (blended 40% toward the photo's brightest
            mouth pixels when teeth show).

    Hair and accessories:

    Attributes:
        hair_fit: how far the chosen hairstyle's back contour is pulled onto
            the outline of the hair mask (0 = the family template as is).
        hair_volume: multiplies the hair volume measured above and beside
            the skull before the prior's template is built (before
            ``hair_fit`` pulls it onto the mask).
        detect_glasses, detect_beard: run the conservative detectors; off
            keeps them at "none".
        crop_size: crop size :meth:`AutoArtist.fit` samples the photo at.
    """

    symmetry: float = 0.25
    hair_symmetry: float = 0.1
    smoothing: float = 0.25
    eye_scale: float = 1.1
    eye_open: float = 1.05
    iris_scale: float = 0.98
    pupil_ratio: float = 0.42
    lashes: float = 0.006
    lid_width: float = 0.016
    crease_lift: float = 0.75
    crease_width: float = 0.003
    brow_weight: float = 0.9
    brow_photo: float = 0.6
    brow_hairiness: float = 0.4
    nose_scale: float = 0.85
    nose_line: float = 1.0
    mouth_width: float = 0.85
    lip_fullness: float = 1.1
    lip_outline: float = 0.002
    teeth_gap: float = 0.03
    outline_width: float = 0.006
    ear_scale: float = 1.0
    cranium: float = 0.86
    shadow_strength: float = 1.0
    highlight_strength: float = 1.0
    blush_strength: float = 1.0
    wrinkle_strength: float = 0.7
    skin_percentiles: tuple = (35.0, 90.0)
    color_gain: float = 1.08
    sclera: tuple = (0.97, 0.96, 0.94)
    teeth: tuple = (0.96, 0.95, 0.90)
    hair_fit: float = 0.6
    hair_volume: float = 1.0
    detect_glasses: bool = True
    detect_beard: bool = True
    crop_size: int = 192

    def replace(self, **changes) -> "ArtistStyle":
        """A copy with some fields changed."""
        known = {f.name for f in fields(self)}
        bad = sorted(set(changes) - known)
        if bad:
            raise ValueError(f"unknown ArtistStyle field(s) {bad}")
        return ArtistStyle(**{**{f.name: getattr(self, f.name) for f in fields(self)}, **changes})


# ----------------------------------------------------------------- helpers


def _resample(poly: np.ndarray, ts) -> np.ndarray:
    """Points at arc-length fractions ``ts`` along an open polyline."""
    poly = np.asarray(poly, np.float64)
    seg = np.linalg.norm(np.diff(poly, axis=0), axis=1)
    acc = np.concatenate([[0.0], np.cumsum(seg)])
    total = acc[-1] if acc[-1] > 1e-9 else 1.0
    t = np.asarray(ts, np.float64) * total
    return np.stack([np.interp(t, acc, poly[:, 0]), np.interp(t, acc, poly[:, 1])], axis=1)


def _cr_closed(pts: np.ndarray, per: int = 6) -> np.ndarray:
    """Samples the renderer's closed Catmull-Rom curve through ``pts``."""
    p = np.asarray(pts, np.float64)
    p0, p1, p2, p3 = np.roll(p, 1, 0), p, np.roll(p, -1, 0), np.roll(p, -2, 0)
    c1 = p1 + (p2 - p0) / 6.0
    c2 = p2 - (p3 - p1) / 6.0
    t = (np.arange(per) / per)[None, :, None]
    u = 1 - t
    out = (u ** 3 * p1[:, None] + 3 * u * u * t * c1[:, None] + 3 * u * t * t * c2[:, None]
           + t ** 3 * p2[:, None])
    return out.reshape(-1, 2)


def _laplace(pts: np.ndarray, w: float, keep=()) -> np.ndarray:
    """Pulls interior points of an open curve toward their neighbours' mean."""
    out = pts.copy()
    if w <= 0 or len(pts) < 3:
        return out
    mid = 0.5 * (pts[:-2] + pts[2:])
    out[1:-1] = pts[1:-1] + w * (mid - pts[1:-1])
    for k in keep:
        out[k] = pts[k]
    return out


def _to_px(xy: np.ndarray, size: int) -> np.ndarray:
    """Canonical → cv2 pixel-index coordinates of a ``size`` crop."""
    return (np.asarray(xy, np.float64) + 1.0) * 0.5 * size - 0.5


def _poly_mask(size: int, *polys) -> np.ndarray:
    m = np.zeros((size, size), np.uint8)
    pp = [np.round(_to_px(p, size) * 16).astype(np.int32) for p in polys]
    cv2.fillPoly(m, pp, 1, lineType=cv2.LINE_8, shift=4)
    return m.astype(bool)


def _sample(img: np.ndarray, xy: np.ndarray) -> np.ndarray:
    """Bilinear samples of ``img`` (float32, HxW or HxWxC) at canonical points ``xy`` (..., 2)."""
    size = img.shape[0]
    px = _to_px(xy, size).astype(np.float32)
    shp = px.shape[:-1]
    flat = px.reshape(1, -1, 2)
    out = cv2.remap(img, flat[..., 0], flat[..., 1], cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    return out.reshape(*shp, *img.shape[2:])


def _luma(rgb: np.ndarray) -> np.ndarray:
    return rgb[..., 0] * 0.299 + rgb[..., 1] * 0.587 + rgb[..., 2] * 0.114


def _robust_median(px: np.ndarray, lo: float = 20.0, hi: float = 80.0):
    """Median colour of (N, 3) pixels between two luminance percentiles; None if empty."""
    if len(px) == 0:
        return None
    if len(px) >= 8:
        y = _luma(px)
        a, b = np.percentile(y, [lo, hi])
        keep = (y >= a) & (y <= b)
        if keep.sum() >= 3:
            px = px[keep]
    return np.median(px, axis=0)


_RGB2XYZ = np.array([[0.412453, 0.357580, 0.180423],
                     [0.212671, 0.715160, 0.072169],
                     [0.019334, 0.119193, 0.950227]]) / np.array([[0.950456], [1.0], [1.088754]])


def _lab(rgb) -> np.ndarray:
    """CIE L*a*b* (D65) of float sRGB in [0, 1], any leading shape, in numpy
    (matches OpenCV's RGB2LAB within 0.3; OpenCV's float path costs ~100 ms
    on its first call in a process and ~0.5 ms a call on a busy machine)."""
    a = np.clip(np.asarray(rgb, np.float64), 0.0, 1.0)
    lin = np.where(a <= 0.04045, a / 12.92, ((a + 0.055) / 1.055) ** 2.4)
    xyz = lin @ _RGB2XYZ.T
    f = np.where(xyz > 0.008856, np.cbrt(xyz), 7.787 * xyz + 16.0 / 116.0)
    L = np.where(xyz[..., 1] > 0.008856, 116.0 * f[..., 1] - 16.0, 903.3 * xyz[..., 1])
    return np.stack([L, 500.0 * (f[..., 0] - f[..., 1]), 200.0 * (f[..., 1] - f[..., 2])], -1)


def crop_valid_mask(face, size: int) -> np.ndarray:
    """Which pixels of ``face.crop(size)`` come from inside the frame (crops
    replicate the frame's border beyond it; those pixels carry no information)."""
    h, w = face.frame_shape[:2]
    c = (np.arange(size) + 0.5) * 2.0 / size - 1.0
    t = np.asarray(face.transform, np.float64)
    x = t[0, 0] * c[None, :] + t[0, 1] * c[:, None] + t[0, 2]
    y = t[1, 0] * c[None, :] + t[1, 1] * c[:, None] + t[1, 2]
    return (x >= 0) & (x <= w) & (y >= 0) & (y <= h)


class _CentralRng:
    """Stands in for a numpy Generator in the prior's helpers: every draw is
    the distribution's centre, so hairstyle templates are deterministic."""

    def __init__(self, choice=None):
        self._choice = choice

    def normal(self, loc=0.0, scale=1.0, size=None):
        return loc if size is None else np.full(size, loc)

    def uniform(self, low=0.0, high=1.0, size=None):
        v = 0.5 * (low + high)
        return v if size is None else np.full(size, v)

    def random(self, size=None):
        return 0.5 if size is None else np.full(size, 0.5)

    def choice(self, a, p=None):
        return self._choice if self._choice is not None else a[0]


def _translate_into_range(pts: np.ndarray, feature: str) -> np.ndarray:
    """Shifts a small feature as a whole (keeping its shape) so that its points
    fit the schema ranges as well as they can, instead of clipping points one
    by one later."""
    f = S.FEATURES[feature]
    lo = S.LO[f.points].reshape(-1, 2)
    hi = S.HI[f.points].reshape(-1, 2)
    out = np.asarray(pts, np.float64).copy()
    for a in (0, 1):
        need_up = float(np.max(lo[:, a] - out[:, a]))  # > 0: some point is below its range
        need_dn = float(np.min(hi[:, a] - out[:, a]))  # < 0: some point is above its range
        if need_up > 0 and need_dn >= 0:
            out[:, a] += min(need_up, need_dn)
        elif need_dn < 0 and need_up <= 0:
            out[:, a] += max(need_dn, need_up)
    return out


_RGB_AT: dict = {}


def _set_rgb(p, feature: str, rgb, prefix: str = "") -> None:
    """``prior.set_rgb`` with the indices cached (it runs ~40 times a face)."""
    key = (feature, prefix)
    i = _RGB_AT.get(key)
    if i is None:
        i = _RGB_AT[key] = S.index(f"{feature}.{prefix}r")
        assert S.NAMES[i + 2] == f"{feature}.{prefix}b"
    p[i:i + 3] = np.clip(np.asarray(rgb, np.float64), 0.0, 1.0)


# ----------------------------------------------------------------- artist


@dataclass
class _Photo:
    """The aligned crop and the masks the colour samplers share."""

    rgb: np.ndarray            # S×S×3 float32 in [0, 1]
    luma: np.ndarray           # S×S float32
    valid: np.ndarray          # S×S bool
    hair: np.ndarray | None    # S×S float32 person-minus-face mask, or None
    size: int
    gx: np.ndarray = field(default=None)  # canonical x of each pixel column (1, S)
    gy: np.ndarray = field(default=None)  # canonical y of each pixel row (S, 1)

    _hp: np.ndarray | None = None
    _vf: np.ndarray | None = None

    @property
    def validf(self) -> np.ndarray:
        if self._vf is None:
            self._vf = self.valid.astype(np.float32)
        return self._vf

    def pixels(self, mask: np.ndarray) -> np.ndarray:
        return self.rgb[mask & self.valid]

    def region(self, *polys, minus=(), discs=(), minus_discs=(), within=None):
        """The valid pixels inside canonical polygons (and discs ``(centre,
        radius)``), minus others, computed in their bounding window only.
        Returns ``(window, mask)`` for ``self.rgb[window][mask]``."""
        S_ = self.size
        ext = [np.asarray(q, np.float64).reshape(-1, 2) for q in polys]
        ext += [np.asarray(c, np.float64)[None] + np.array([[-r, -r], [r, r]]) for c, r in discs]
        px = _to_px(np.concatenate(ext), S_)
        x0, y0 = np.maximum(np.floor(px.min(0)).astype(int) - 1, 0)
        x1, y1 = np.minimum(np.ceil(px.max(0)).astype(int) + 2, S_)
        if x1 <= x0 or y1 <= y0:
            return (slice(0, 0), slice(0, 0)), np.zeros((0, 0), bool)
        m = np.zeros((y1 - y0, x1 - x0), np.uint8)
        off = np.array([x0, y0], np.float64)

        def fix(q):
            return np.round((_to_px(q, S_) - off) * 16).astype(np.int32)

        if polys:
            cv2.fillPoly(m, [fix(q) for q in polys], 1, lineType=cv2.LINE_8, shift=4)
        for c, r in discs:
            cc = fix(np.asarray(c, np.float64))
            cv2.circle(m, (int(cc[0]), int(cc[1])), max(1, int(round(r * 0.5 * S_ * 16))), 1, -1, cv2.LINE_8, 4)
        if minus:
            cv2.fillPoly(m, [fix(q) for q in minus], 0, lineType=cv2.LINE_8, shift=4)
        for c, r in minus_discs:
            cc = fix(np.asarray(c, np.float64))
            cv2.circle(m, (int(cc[0]), int(cc[1])), max(1, int(round(r * 0.5 * S_ * 16))), 0, -1, cv2.LINE_8, 4)
        if within is not None:
            w = np.zeros_like(m)
            cv2.fillPoly(w, [fix(within)], 1, lineType=cv2.LINE_8, shift=4)
            m &= w
        win = (slice(y0, y1), slice(x0, x1))
        return win, m.astype(bool) & self.valid[win]

    def region_pixels(self, *polys, **kw) -> np.ndarray:
        win, m = self.region(*polys, **kw)
        return self.rgb[win][m]

    @property
    def highpass(self) -> np.ndarray:
        """|luma - blurred luma|: fine texture (hair strands, stubble, frames)."""
        if self._hp is None:
            self._hp = np.abs(self.luma - cv2.GaussianBlur(self.luma, (0, 0), 1.2 * self.size / 192.0))
        return self._hp

    def texture(self, mask: np.ndarray) -> float:
        """Mean relative fine texture inside a mask (crop resolution)."""
        m = mask & self.valid
        if m.sum() < 8:
            return 0.0
        return float(self.highpass[m].mean()) / (float(self.luma[m].mean()) + 0.06)


class AutoArtist:
    """Fits the 629 avatar parameters to one aligned photo (see the module doc).

    Args:
        style: the :class:`ArtistStyle`; the default when omitted.
    """

    def __init__(self, style: ArtistStyle | None = None):
        if style is not None and not isinstance(style, ArtistStyle):
            raise ValueError(f"style must be an ArtistStyle, got {type(style).__name__}")
        self.style = style or ArtistStyle()

    # ------------------------------------------------------------ public
    def fit(self, face) -> np.ndarray:
        """Avatar parameters for an :class:`avatarizer.align.AlignedFace`
        (which must have its frame attached, as faces from ``FaceAligner``
        do). Returns (629,) float32 that passes ``schema.validate``."""
        size = int(self.style.crop_size)
        crop = face.crop(size)
        try:
            hair = face.hair_mask(size)
        except RuntimeError:
            hair = None
        valid = crop_valid_mask(face, size)
        return self.fit_landmarks(face.canonical, crop, hair, valid=valid)

    def fit_landmarks(self, canonical: np.ndarray, crop: np.ndarray, hair_mask: np.ndarray | None = None,
                      *, valid: np.ndarray | None = None) -> np.ndarray:
        """The same from raw canonical landmarks and the aligned crop, so
        that callers can augment them.

        Args:
            canonical: (478, 2) (or (478, 3); z is ignored) landmarks in the
                canonical frame.
            crop: S×S×3 aligned crop (uint8, or float in [0, 1]) whose pixel
                grid maps canonical c to (c + 1) / 2 * S.
            hair_mask: optional S'×S' person-minus-face mask in [0, 1]
                (``AlignedFace.hair_mask``); resized to S if needed.
            valid: optional S×S bool mask of crop pixels that come from
                inside the photo (see :func:`crop_valid_mask`).
        """
        return self._fit(canonical, crop, hair_mask, valid)[0]

    def _fit(self, canonical, crop, hair_mask, valid):
        """(params, measurements): the measurements dict is for diagnostics."""
        lm = np.asarray(canonical, np.float64)
        if lm.ndim != 2 or lm.shape[0] < 478 or lm.shape[1] < 2:
            raise ValueError(f"canonical landmarks must have shape (478, 2), got {lm.shape}")
        lm = lm[:478, :2]
        if not np.isfinite(lm).all():
            raise ValueError("canonical landmarks contain NaN or infinity")
        photo = self._photo(crop, hair_mask, valid)
        st = self.style
        p = S.default()
        g: dict = {}  # shared geometry (canonical units)
        self._outline(p, lm, g)
        self._eyes(p, lm, g)
        self._brows(p, lm, g, photo)
        self._nose(p, lm, g, photo)
        self._mouth(p, lm, g)
        self._stylise(p, g)
        col = self._colours(p, lm, g, photo)
        self._shading(p, lm, g, photo, col)
        self._hair(p, lm, g, photo, col)
        if st.detect_glasses:
            self._glasses(p, lm, g, photo, col)
        if st.detect_beard:
            self._facial_hair(p, lm, g, photo, col)
        self._clothes(p, g, photo, col)
        return S.clip(p), g

    # ------------------------------------------------------------ photo
    def _photo(self, crop, hair_mask, valid) -> _Photo:
        img = np.asarray(crop)
        if img.ndim != 3 or img.shape[2] < 3 or img.shape[0] != img.shape[1]:
            raise ValueError(f"crop must be a square S×S×3 image, got shape {img.shape}")
        img = img[..., :3]
        rgb = img.astype(np.float32) / 255.0 if img.dtype == np.uint8 else np.clip(img.astype(np.float32), 0, 1)
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
        c = ((np.arange(size) + 0.5) * 2.0 / size - 1.0).astype(np.float32)
        return _Photo(np.ascontiguousarray(rgb), _luma(rgb).astype(np.float32), valid, hm, size,
                      c[None, :], c[:, None])

    # ---------------------------------------------------------- geometry
    def _outline(self, p, lm, g):
        st = self.style
        oval = lm[list(_FACE_OVAL)]
        eye_c = 0.5 * (lm[[33, 133]].mean(0) + lm[[263, 362]].mean(0))
        g["eye_y"] = float(eye_c[1])
        # the lower face: oval points at the template's angles about a centre on the mid-line
        tmpl = S.points(S.DEFAULT, "face").astype(np.float64)
        centre = np.array([0.5 * (lm[234, 0] + lm[454, 0]), 0.0])
        ang_o = np.arctan2(oval[:, 1] - centre[1], oval[:, 0] - centre[0])
        rad_o = np.linalg.norm(oval - centre, axis=1)
        order = np.argsort(ang_o)
        a_s, r_s = ang_o[order], rad_o[order]
        a_s = np.concatenate([a_s - 2 * np.pi, a_s, a_s + 2 * np.pi])
        r_s = np.tile(r_s, 3)
        face = tmpl.copy()
        for k in list(range(0, 6)) + list(range(9, 14)):
            d = tmpl[k] - np.array([0.0, 0.0])
            a = np.arctan2(d[1], d[0])
            r = np.interp(a, a_s, r_s)
            face[k] = centre + r * np.array([np.cos(a), np.sin(a)])
        chin = face[0, 1]
        # the skull above the forehead landmarks: an elliptic cap through the temples
        top = g["eye_y"] - st.cranium * (chin - g["eye_y"])
        top = min(top, float(lm[10, 1]) - 0.2)
        cx = 0.5 * (face[5, 0] + face[9, 0])
        face[7] = (cx, top)
        for k, sgn in ((6, 1), (8, -1)):
            side = face[5] if sgn > 0 else face[9]
            a_ = abs(side[0] - cx) * 1.02
            b_ = side[1] - top
            face[k] = (cx + sgn * a_ * np.cos(np.pi / 4) * 1.03, side[1] - b_ * np.sin(np.pi / 4) * 1.02)
        g["face"] = face
        g["centre_x"] = float(centre[0])
        g["half_w"] = float(0.5 * (face[5, 0] - face[9, 0]))
        g["chin"] = float(chin)
        g["top"] = float(top)
        # which way the face is turned: nose tip relative to the cheeks (+: nose toward image right)
        turn = (lm[1, 0] - centre[0]) / max(g["half_w"], 0.2)
        g["turn"] = float(turn)
        g["nose_side"] = 1.0 if turn >= 0 else -1.0
        # ears beside the outline, eye to nose-base height
        y_top = g["eye_y"] - 0.04
        y_bot = float(lm[2, 1]) - 0.01
        for s, sgn in ((0, -1), (1, 1)):
            name = "ear_l" if s == 0 else "ear_r"
            # the side facing away from the camera shows less ear
            side_w = abs(lm[_idx("cheek_outline", s), 0] - lm[1, 0])
            vis = float(np.clip(side_w / max(g["half_w"], 0.2), 0.35, 1.15))
            xo = self._oval_x(oval, sgn, y_top), self._oval_x(oval, sgn, y_bot)
            prot = 0.1 * st.ear_scale * g["half_w"] / 0.5 * vis
            e = np.array([
                (xo[0] - sgn * 0.035, y_top),
                (xo[0] + sgn * prot * 0.75, y_top - 0.03),
                (0.5 * (xo[0] + xo[1]) + sgn * prot, 0.5 * (y_top + y_bot) - 0.06),
                (xo[1] + sgn * prot * 0.72, y_bot - 0.07),
                (xo[1] - sgn * 0.03, y_bot),
            ])
            P.put(p, name, _translate_into_range(e, name))
            p[S.index(f"{name}.w0")] = st.outline_width * 0.8
            p[S.index(f"{name}.w1")] = st.outline_width * 0.8
        P.put(p, "face", face)
        p[S.index("face.w0")] = st.outline_width
        p[S.index("face.w1")] = st.outline_width
        # neck under the jaw
        jaw_w = 0.5 * (face[3, 0] - face[11, 0])
        nw = 0.56 * jaw_w
        ny = chin - 0.27
        P.put(p, "neck", np.array([(cx + nw, ny), (cx + nw * 1.12, ny + 0.8), (cx - nw * 1.12, ny + 0.8),
                                   (cx - nw, ny)]))
        g["neck_w"] = nw

    @staticmethod
    def _oval_x(oval, sgn, y):
        """x of the face oval's image-left (sgn -1) or image-right (+1) side at height y."""
        cx = 0.5 * (oval[:, 0].min() + oval[:, 0].max())
        side = oval[(oval[:, 0] - cx) * sgn > 0]
        if len(side) == 0:
            return float(oval[:, 0].max() if sgn > 0 else oval[:, 0].min())
        side = side[np.argsort(side[:, 1])]
        return float(np.interp(y, side[:, 1], side[:, 0]))

    def _eyes(self, p, lm, g):
        for s, sd in ((0, "l"), (1, "r")):
            up = _resample(lm[list(_idx("eye_up", s))], np.linspace(0, 1, 5))
            lo = _resample(lm[list(_idx("eye_lo", s))], np.linspace(0, 1, 5))
            corner = 0.5 * (up[[0, -1]] + lo[[0, -1]])
            up[[0, -1]] = lo[[0, -1]] = corner
            crease_ring = _resample(lm[list(_idx("crease", s))], [0.12, 0.5, 0.85])
            lid_at = _resample(up, [0.12, 0.5, 0.85])
            crease = lid_at + self.style.crease_lift * (crease_ring - lid_at)
            iris = lm[list(_idx("iris", s))]
            ic = iris[0]
            ir = float(np.linalg.norm(iris[1:] - ic, axis=1).mean())
            P.put(p, f"eye_{sd}_upper", up)
            P.put(p, f"eye_{sd}_lower", lo)
            P.put(p, f"eye_{sd}_crease", crease)
            g[f"eye_{sd}"] = dict(center=0.5 * (corner[0] + corner[1]), iris=ic.copy(), iris_r=ir,
                                  opening=float(np.mean(lo[1:4, 1] - up[1:4, 1])))

    def _brows(self, p, lm, g, photo):
        st = self.style
        for s, sd in ((0, "l"), (1, "r")):
            up = lm[list(_idx("brow_up", s))]
            lo = lm[list(_idx("brow_lo", s))]
            ctr = 0.5 * (up + lo)
            band = np.linalg.norm(up - lo, axis=1)
            # photo: the dark band across the brow at 5 stations
            tang = np.gradient(ctr, axis=0)
            tang /= np.maximum(np.linalg.norm(tang, axis=1, keepdims=True), 1e-9)
            nrm = np.stack([tang[:, 1], -tang[:, 0]], 1)
            nrm *= np.where(nrm[:, 1:2] > 0, -1.0, 1.0)  # pointing up
            us = np.linspace(-0.075, 0.075, 31)
            pts = ctr[:, None, :] + us[None, :, None] * nrm[:, None, :]
            prof = _sample(photo.luma, pts)  # (5, 31)
            ok = _sample(photo.validf, pts).min(1) > 0.5
            ref = np.percentile(prof, 85, axis=1, keepdims=True)
            dark = np.clip((ref - prof) / np.maximum(0.28 * ref, 0.035) - 0.15, 0, 1)
            du = us[1] - us[0]
            # only the dark run through the brow line (not the lashes or a fringe beside it)
            near = np.abs(us) <= 0.03
            peak = np.where(near[None], dark, -1).argmax(1)
            idx = np.arange(len(us))[None]
            light = dark < 0.2
            below = np.where(light & (idx < peak[:, None]), idx, -1).max(1)
            above = np.where(light & (idx > peak[:, None]), idx, len(us)).min(1)
            run = (idx > below[:, None]) & (idx < above[:, None])
            dark = dark * run
            mass = dark.sum(1) * du
            shift = (dark * us[None]).sum(1) / np.maximum(dark.sum(1), 1e-6)
            contrast = float(np.median(np.clip((ref[:, 0] - prof.min(1)) / np.maximum(ref[:, 0], 0.05), 0, 1)))
            k = st.brow_photo * ok.astype(np.float64) * float(np.clip(contrast / 0.2, 0, 1))
            thick = (1 - k) * 0.6 * band + k * np.clip(mass * 1.1, 0.008, 0.08)
            centre = ctr + (k * np.clip(shift, -0.025, 0.025))[:, None] * nrm
            centre = _laplace(centre, st.smoothing)
            thick = st.brow_weight * thick
            P.put(p, f"brow_{sd}", centre)
            p[S.index(f"brow_{sd}.w0")] = float(np.clip(np.mean(thick[:2]) * 1.05, 0.01, 0.08))
            p[S.index(f"brow_{sd}.mid_width")] = float(np.clip(thick[2], 0.008, 0.08))
            p[S.index(f"brow_{sd}.w1")] = float(np.clip(thick[4] * 0.7, 0.004, 0.06))
            p[S.index(f"brow_{sd}.hairiness")] = st.brow_hairiness
            g[f"brow_{sd}"] = dict(centre=centre, thick=thick, contrast=contrast)

    def _nose(self, p, lm, g, photo):
        st = self.style
        nc = lm[[2, 94]].mean(0)  # subnasale
        cx = float(nc[0])
        sx = st.nose_scale

        def nx(pt):
            q = np.array(pt, np.float64)
            q[..., 0] = cx + (q[..., 0] - cx) * sx
            return q

        L = lambda name, s: lm[_idx(name, s)]  # noqa: E731
        base = np.array([L("ala_out", 0) + (0, -0.005), 0.5 * (L("ala_bot", 0) + L("nostril_in", 0)) + (0, 0.008),
                         nc + (0, -0.002),
                         0.5 * (L("ala_bot", 1) + L("nostril_in", 1)) + (0, 0.008), L("ala_out", 1) + (0, -0.005)])
        base = nx(base)
        P.put(p, "nose_base", base)
        p[S.index("nose_base.w0")] = 0.004 * st.nose_line
        p[S.index("nose_base.w1")] = 0.003 * st.nose_line
        for s, sd in ((0, "l"), (1, "r")):
            inner = 0.55 * nc + 0.45 * L("nostril_in", s) + (0, -0.012)
            outer = 0.5 * L("nostril_in", s) + 0.5 * L("ala_bot", s) + (0, -0.018)
            P.put(p, f"nostril_{sd}", nx(np.array([inner, outer])))
            p[S.index(f"nostril_{sd}.w0")] = 0.011
            p[S.index(f"nostril_{sd}.w1")] = 0.006
        # the bridge line on the side the nose is turned toward (its silhouette side)
        s = 1 if g["nose_side"] > 0 else 0
        sgn = g["nose_side"]
        bridge = np.array([L("bridge_top", s) + (sgn * 0.005, 0.03), 0.5 * (L("bridge_mid", s) + L("bridge_side", s)),
                           L("ala_top", s) + (sgn * 0.005, 0.025)])
        bridge = nx(bridge)
        P.put(p, "nose_bridge", bridge)
        p[S.index("nose_bridge.w0")] = 0.001
        p[S.index("nose_bridge.w1")] = 0.007 * st.nose_line
        g["nose_tip"] = lm[1].copy()
        g["nose_c"] = nc
        g["bridge"] = bridge

    def _mouth(self, p, lm, g):
        uo = lm[list(_LIP_UO)].copy()
        lo = lm[list(_LIP_LO)].copy()
        ui = lm[list(_LIP_UI)].copy()
        li = lm[list(_LIP_LI)].copy()
        corners = uo[[0, -1]]
        lo[[0, -1]] = corners
        inner_c = corners + 0.06 * (corners[::-1] - corners)
        ui[[0, -1]] = li[[0, -1]] = inner_c
        gap = float(lm[14, 1] - lm[13, 1])
        if gap < 0.006:  # closed: one lip line
            mid = 0.5 * (ui + li)
            ui, li = mid.copy(), mid.copy()
        P.put(p, "lip_upper_outer", uo)
        P.put(p, "lip_lower_outer", lo)
        P.put(p, "lip_inner_upper", ui)
        P.put(p, "lip_inner_lower", li)
        g["mouth_c"] = corners.mean(0)
        g["lip_gap"] = gap

    def _stylise(self, p, g):
        """The one place where the measured geometry becomes the drawn one."""
        st = self.style
        # eyes: enlarged about their centres, a little more open
        for sd in "lr":
            e = g[f"eye_{sd}"]
            c = e["center"]
            up, lo, cr = (P.pts(p, f"eye_{sd}_{k}").astype(np.float64) for k in ("upper", "lower", "crease"))
            line_y = lambda x: np.interp(x, sorted([up[0, 0], up[-1, 0]]),  # noqa: E731
                                         [up[0, 1], up[-1, 1]] if up[0, 0] < up[-1, 0] else [up[-1, 1], up[0, 1]])
            for arr in (up, lo, cr):
                arr[:, 1] = line_y(arr[:, 0]) + (arr[:, 1] - line_y(arr[:, 0])) * st.eye_open
                arr[:] = P.scale_about(arr, c, st.eye_scale)
            up = _laplace(up, st.smoothing)
            lo = _laplace(lo, st.smoothing)
            P.put(p, f"eye_{sd}_upper", up)
            P.put(p, f"eye_{sd}_lower", lo)
            P.put(p, f"eye_{sd}_crease", cr)
            p[S.index(f"eye_{sd}_upper.w1")] = st.lid_width
            p[S.index(f"eye_{sd}_upper.w0")] = st.lid_width * 0.4
            p[S.index(f"eye_{sd}_crease.w1")] = st.crease_width
            p[S.index(f"eye_{sd}_crease.w0")] = st.crease_width * 0.35
            p[S.index(f"lashes_{sd}.length")] = st.lashes
            e["gaze"] = (e["iris"] - c) * st.eye_scale
            e["radius"] = e["iris_r"] * st.eye_scale * st.iris_scale
        # mouth: narrower, fuller
        mc = g["mouth_c"]
        ui, li = P.pts(p, "lip_inner_upper").astype(np.float64), P.pts(p, "lip_inner_lower").astype(np.float64)
        line = 0.5 * (ui + li)
        lx = line[:, 0]
        for feat in ("lip_upper_outer", "lip_lower_outer", "lip_inner_upper", "lip_inner_lower"):
            q = P.pts(p, feat).astype(np.float64)
            if feat.endswith("outer"):
                ly = np.interp(q[:, 0], lx, line[:, 1])
                q[:, 1] = ly + (q[:, 1] - ly) * st.lip_fullness
            q[:, 0] = mc[0] + (q[:, 0] - mc[0]) * st.mouth_width
            if feat == "lip_lower_outer":
                q = _laplace(q, st.smoothing)
            P.put(p, feat, q)
        for feat in ("lip_upper_outer", "lip_lower_outer"):
            p[S.index(f"{feat}.w0")] = st.lip_outline
            p[S.index(f"{feat}.w1")] = st.lip_outline
        p[S.index("teeth.show")] = 1.0 if g["lip_gap"] > st.teeth_gap else 0.0
        # partial symmetrisation of everything that has a mirror partner
        self._symmetrise(p, S.FACE, st.symmetry)
        # gaze: the iris keeps its measured offset inside the (now symmetric) eye
        gl, gr = g["eye_l"]["gaze"], g["eye_r"]["gaze"]
        mean_g = np.array([0.5 * (gl[0] + gr[0]), 0.5 * (gl[1] + gr[1])])
        rad = 0.5 * (g["eye_l"]["radius"] + g["eye_r"]["radius"])
        for sd, off in (("l", gl), ("r", gr)):
            up = P.pts(p, f"eye_{sd}_upper")
            c = 0.5 * (up[0] + up[-1])
            o = (1 - st.symmetry) * off + st.symmetry * mean_g
            p[S.index(f"iris_{sd}.cx")] = c[0] + o[0]
            p[S.index(f"iris_{sd}.cy")] = c[1] + o[1]
            r = (1 - st.symmetry) * g[f"eye_{sd}"]["radius"] + st.symmetry * rad
            p[S.index(f"iris_{sd}.radius")] = r
            p[S.index(f"iris_{sd}.pupil")] = st.pupil_ratio
        g["face"] = P.pts(p, "face").astype(np.float64)

    @staticmethod
    def _symmetrise(p, sl: slice, w: float, features=None):
        """Blends the continuous parameters in ``sl`` (or only those of
        ``features``) toward their mirror image, leaving out one-sided
        ("negate") features."""
        if w <= 0:
            return
        sel = np.zeros(S.PARAM_COUNT, bool)
        sel[sl] = True
        sel &= _SYM_OK
        if features is not None:
            sel &= np.isin(_FEATURE_OF, list(features))
        m = S.mirror(p)
        p[sel] += w * (m[sel] - p[sel])

    # ------------------------------------------------------------ colour
    def _colours(self, p, lm, g, photo: _Photo) -> dict:
        st = self.style
        lo_pc, hi_pc = st.skin_percentiles
        discs = self._cheek_discs(lm, g)
        g["cheek_discs"] = discs
        skin_px = np.concatenate([photo.region_pixels(discs=[d]) for d in discs]
                                 + [photo.region_pixels(lm[list(q)]) for q in (_FOREHEAD_PATCH, _NOSE_PATCH)])
        skin = _robust_median(skin_px, lo_pc, hi_pc)
        if skin is None:
            skin = P.skin_color(0.3)
        skin = np.clip(skin, 0, 1)  # skin stays as sampled (no colour gain)
        col = {"skin": skin}
        shade = skin * np.array([0.84, 0.78, 0.78])
        for feat in ("face", "ear_l", "ear_r"):
            _set_rgb(p, feat, skin)
        _set_rgb(p, "neck", skin * 0.9)
        for feat in ("cheek_shadow_l", "cheek_shadow_r", "nose_shadow", "nose_bridge", "eye_l_crease",
                     "eye_r_crease", "nasolabial_l", "nasolabial_r", "forehead_line", "undereye_l", "undereye_r"):
            _set_rgb(p, feat, shade)
        _set_rgb(p, "neck_shadow", skin * 0.72)
        _set_rgb(p, "nose_base", skin * np.array([0.7, 0.55, 0.52]))
        for sd in "lr":
            _set_rgb(p, f"nostril_{sd}", skin * np.array([0.5, 0.36, 0.34]))
            _set_rgb(p, f"eye_{sd}_lower", skin * 0.6)
            _set_rgb(p, f"eye_{sd}_upper", np.minimum(skin * 0.25, (0.14, 0.09, 0.08)) + 0.02)
        # lips: inside the outer contour, outside the mouth opening
        lip = _robust_median(photo.region_pixels(lm[list(_LIPS_OUTER)], minus=[lm[list(_LIPS_INNER)]]), 15, 85)
        if lip is None:
            lip = skin * np.array([0.95, 0.68, 0.68]) + np.array([0.05, 0.0, 0.02])
        else:
            # a touch toward the skin-derived lip colour: flat fills read darker than photos
            lip = self._gain(0.8 * lip + 0.2 * (skin * np.array([0.95, 0.66, 0.66]) + (0.05, 0, 0.02)))
        col["lip"] = lip
        _set_rgb(p, "lip_upper_outer", lip * 0.93)
        _set_rgb(p, "lip_lower_outer", lip)
        _set_rgb(p, "lip_inner_upper", lip * 0.5)
        _set_rgb(p, "lip_inner_lower", lip * 0.5)
        teeth = np.array(st.teeth, np.float64)
        if p[S.index("teeth.show")] > 0.5:
            px = photo.region_pixels(lm[list(_LIPS_INNER)])
            if len(px) >= 8:
                y = _luma(px)
                bright = px[y >= np.percentile(y, 70)]
                teeth = 0.6 * teeth + 0.4 * np.clip(np.median(bright, 0) * 1.1, 0.6, 1.0)
        _set_rgb(p, "teeth", teeth)
        # irises: the visible ring inside the lids, without pupil and highlights
        iris_cols = []
        for s, sd in ((0, "l"), (1, "r")):
            e = g[f"eye_{sd}"]
            opening = np.concatenate([lm[list(_idx("eye_up", s))], lm[list(_idx("eye_lo", s))][::-1]])
            px = photo.region_pixels(discs=[(e["iris"], e["iris_r"] * 0.92)],
                                     minus_discs=[(e["iris"], e["iris_r"] * 0.42)], within=opening)
            c = _robust_median(px, 10, 75) if len(px) >= 6 else None
            iris_cols.append(c)
        got = [c for c in iris_cols if c is not None]
        iris = np.mean(got, 0) if got else np.array(P.IRIS_COLORS["brown"])
        iris = self._gain(np.clip(iris * 1.15, 0, 1))
        col["iris"] = iris
        for sd in "lr":
            _set_rgb(p, f"iris_{sd}", iris)
        _set_rgb(p, "sclera", st.sclera)
        # brows: the dark part of the brow band
        bcols = []
        for s in (0, 1):
            px = photo.region_pixels(lm[list(_BROW_OUTLINE[s])])
            if len(px) >= 8:
                y = _luma(px)
                bcols.append(np.median(px[y <= np.percentile(y, 30)], 0))
        brow = np.mean(bcols, 0) if bcols else skin * 0.35
        # a faint brow (light hair, thin brows) blends with the skin in the median
        contrast = 0.5 * (g["brow_l"]["contrast"] + g["brow_r"]["contrast"])
        brow = self._gain(brow * (0.85 if contrast > 0.15 else 0.75))
        col["brow"] = brow
        for sd in "lr":
            _set_rgb(p, f"brow_{sd}", brow)
        return col

    def _gain(self, c):
        c = np.asarray(c, np.float64)
        k = self.style.color_gain
        if k == 1.0:
            return np.clip(c, 0, 1)
        m = c.mean()
        return np.clip(m + (c - m) * k, 0, 1)

    @staticmethod
    def _disc_luma(photo: _Photo, disc) -> float | None:
        win, m = photo.region(discs=[disc])
        if m.sum() < 4:
            return None
        return float(np.median(photo.luma[win][m]))

    @staticmethod
    def _cheek_discs(lm, g):
        """Skin discs on the upper cheeks, well inside the face outline (smaller
        on the side turned away, which is foreshortened)."""
        out = []
        for s in (0, 1):
            c = (lm[_idx("cheekbone", s)] + lm[_idx("cheek", s)] + lm[_idx("cheek_in", s)]) / 3.0
            side_w = abs(lm[_idx("cheek_outline", s), 0] - lm[1, 0])
            r = 0.06 * float(np.clip(side_w / max(g["half_w"], 0.2), 0.5, 1.0))
            out.append((c, r))
        return out

    def _shading(self, p, lm, g, photo: _Photo, col):
        st = self.style
        skin = col["skin"]
        skin_y = float(_luma(skin))
        face = g["face"]
        L = lambda name, s: lm[_idx(name, s)]  # noqa: E731
        # lighting side: the brighter cheek gets the highlights, the darker the shadow
        yl, yr = (self._disc_luma(photo, d) for d in g["cheek_discs"])
        light = 0.0 if yl is None or yr is None else float(np.clip((yr - yl) / max(skin_y, 0.1), -0.5, 0.5))
        g["light"] = light
        lab_skin = _lab(skin)
        lines: dict = {}
        for s, sd in ((0, "l"), (1, "r")):
            sgn = -1 if s == 0 else 1
            # blush on the cheek apple, its strength from the cheek's redness
            c = 0.5 * (L("cheek", s) + L("cheek_in", s)) + (sgn * 0.02, 0.0)
            px = photo.region_pixels(discs=[(c, 0.06)])
            red = 0.0
            if len(px) >= 6:
                red = float(_lab(np.median(px, 0))[1] - lab_skin[1])
            p[S.index(f"blush_{sd}.cx")] = c[0]
            p[S.index(f"blush_{sd}.cy")] = c[1]
            p[S.index(f"blush_{sd}.rx")] = 0.085 * g["half_w"] / 0.5
            p[S.index(f"blush_{sd}.ry")] = 0.058 * g["half_w"] / 0.5
            p[S.index(f"blush_{sd}.opacity")] = float(np.clip(0.05 + 0.015 * red, 0.0, 0.25)) * st.blush_strength
            _set_rgb(p, f"blush_{sd}", np.clip(0.5 * skin + 0.5 * np.array([0.92, 0.5, 0.5]), 0, 1))
            # cheek shadow: a sliver under the cheekbone along the jaw
            q = np.array([L("cheek_hi", s) + (-sgn * 0.01, 0.0), 0.5 * (L("jowl", s) + L("jowl_lo", s)),
                          L("mouth_side", s) + (sgn * 0.01, 0.0),
                          0.5 * (L("mouth_side", s) + L("jaw", s)) + (sgn * 0.02, -0.02)])
            P.put(p, f"cheek_shadow_{sd}", q)
            dark_side = 0.5 - 0.5 * float(np.clip(light / 0.1, -1, 1)) * sgn  # continuous in the light
            p[S.index(f"cheek_shadow_{sd}.opacity")] = float(np.clip((0.12 + 0.14 * dark_side) * st.shadow_strength,
                                                                     0, 1))
            # cheek highlight: a small triangle under the eye
            ec = g[f"eye_{sd}"]["center"]
            tri = np.array([(0.06, 0.16), (-0.07, 0.125), (-0.04, 0.2)]) * np.array([-sgn, 1.0]) + ec
            P.put(p, f"cheek_highlight_{sd}", tri)
            p[S.index(f"cheek_highlight_{sd}.opacity")] = float(np.clip(
                (0.06 + 0.06 * (1 - dark_side)) * st.highlight_strength, 0, 1))
            # nasolabial fold: from beside the nose wing to outside the mouth corner
            mc = P.pts(p, "lip_upper_outer")[0 if s == 0 else -1]
            n0 = L("ala_crease", s) + (0.0, 0.04)
            n2 = mc + (sgn * 0.05, -0.005)
            n1 = 0.5 * (n0 + n2) + (sgn * 0.018, 0.0)
            nl = np.array([n0, n1, n2])
            P.put(p, f"nasolabial_{sd}", nl)
            lines[f"nasolabial_{sd}"] = nl
            # under-eye line
            lo = P.pts(p, f"eye_{sd}_lower")
            ue = _resample(lo, [0.15, 0.5, 0.85]) + (0, 0.045)
            P.put(p, f"undereye_{sd}", ue)
            lines[f"undereye_{sd}"] = ue
        # nose shadow on the bridge-line side, nose highlight on the ridge
        sgn = g["nose_side"]
        br = g["bridge"]
        ns = np.array([br[0] + (-sgn * 0.01, 0.03), br[1] + (sgn * 0.02, 0.0), br[2] + (sgn * 0.025, 0.05),
                       br[2] + (-sgn * 0.03, 0.03)])
        P.put(p, "nose_shadow", ns)
        p[S.index("nose_shadow.opacity")] = 0.16 * st.shadow_strength
        tip = g["nose_tip"]
        hl = np.array([lm[5] + (-sgn * 0.008, 0.0), tip + (sgn * 0.012, -0.02), tip + (-sgn * 0.018, -0.01)])
        P.put(p, "nose_highlight", hl)
        p[S.index("nose_highlight.opacity")] = 0.3 * st.highlight_strength
        # forehead highlight, spread toward the lit side: continuous in the light
        # direction (it narrows to nothing under frontal light), so mirrored
        # photos give mirrored highlights
        ls = float(np.clip(light / 0.05, -1, 1))
        fy = 0.5 * (g["brow_l"]["centre"][:, 1].min() + lm[10, 1]) + 0.02
        fh = np.array([(-0.16, 0.0), (0.1, -0.05), (0.2, 0.04), (-0.05, 0.07)])
        fh = fh * np.array([ls * g["half_w"] / 0.5, 1.0]) + (g["centre_x"] + ls * 0.03, fy - 0.02)
        P.put(p, "forehead_highlight", fh)
        p[S.index("forehead_highlight.opacity")] = float(np.clip(0.04 + 0.3 * abs(light), 0, 0.2)) \
            * abs(ls) * st.highlight_strength
        fl = np.array([(-0.2, fy + 0.01), (0.0, fy - 0.01), (0.2, fy + 0.01)]) + (g["centre_x"], 0)
        P.put(p, "forehead_line", fl)
        lines["forehead_line"] = fl
        # wrinkle widths from how dark the photo is along each line (subtle)
        dark = dict(zip(lines, self._creases(photo, list(lines.values()), skin_y)))
        for name, v in dark.items():
            if name.startswith("nasolabial"):
                w0, w1 = 0.0005, float(np.clip(0.001 + 0.03 * v, 0, 0.005))
            elif name.startswith("undereye"):
                w0, w1 = 0.0, float(np.clip(0.04 * (v - 0.02), 0, 0.005))
            else:
                w0, w1 = 0.0, float(np.clip(0.04 * (v - 0.03), 0, 0.005))
            p[S.index(f"{name}.w0")] = w0
            p[S.index(f"{name}.w1")] = w1 * st.wrinkle_strength
        # neck shadow under the chin
        chin = g["chin"]
        nw = g["neck_w"]
        cx = g["centre_x"]
        # the template's shape (whatever its point order), fitted to this chin and neck
        ns = S.points(S.DEFAULT, "neck_shadow").astype(np.float64)
        ns[:, 0] = cx + ns[:, 0] * (nw * 1.05 / 0.25)
        ns[:, 1] += chin - 0.8
        P.put(p, "neck_shadow", ns)
        p[S.index("neck_shadow.opacity")] = 0.45 * st.shadow_strength
        # the shading placed here from the landmarks gets the same symmetrisation as the features
        self._symmetrise(p, S.FACE, st.symmetry, _SHADING)

    @staticmethod
    def _creases(photo: _Photo, lines, skin_y: float) -> np.ndarray:
        """For each 3-point line, how much darker the photo is along it than
        0.035 to either side (relative luminance; 0 = no crease)."""
        t = np.linspace(0.15, 0.85, 9)
        pts = np.stack([_resample(q, t) for q in lines])  # (k, 9, 2)
        d = np.stack([q[-1] - q[0] for q in lines])
        n = np.stack([-d[:, 1], d[:, 0]], 1) / np.maximum(np.linalg.norm(d, axis=1), 1e-9)[:, None]
        allp = np.stack([pts, pts + 0.035 * n[:, None], pts - 0.035 * n[:, None]])  # (3, k, 9, 2)
        lum = _sample(photo.luma, allp)
        ok = _sample(photo.validf, pts).min(1) > 0.5
        v = np.median(np.maximum(lum[1], lum[2]) - lum[0], axis=1) / max(skin_y, 0.1)
        return np.where(ok, np.clip(v, 0, 1), 0.0)

    # -------------------------------------------------------------- hair
    def _hair_maps(self, lm, g, photo: _Photo, col) -> dict:
        """Hair measurements on a 64-px copy of the crop: colour, the hair
        evidence map and the regions the style decision looks at."""
        n = 64
        small = cv2.resize(photo.rgb, (n, n), interpolation=cv2.INTER_AREA)
        valid = cv2.resize(photo.validf, (n, n), interpolation=cv2.INTER_AREA) > 0.75
        c = ((np.arange(n) + 0.5) * 2.0 / n - 1.0).astype(np.float32)
        gx, gy = c[None, :], c[:, None]
        near_head = np.hypot((gx - g["centre_x"]) / 1.1, (gy - g["eye_y"] + 0.1) / 1.2) < 1.0
        if photo.hair is not None:
            seg = cv2.resize(photo.hair, (n, n), interpolation=cv2.INTER_AREA) > 0.5
            # the selfie mask is soft and a little too big: trust its inside
            person = cv2.erode(seg.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)
        else:
            person = np.hypot((gx - g["centre_x"]) / 0.8, (gy - g["eye_y"] + 0.1) / 0.95) < 1.0
        oval = _poly_mask(n, lm[list(_FACE_OVAL)])
        head = _poly_mask(n, _cr_closed(g["face"], 6))
        brow_y = float(min(g["brow_l"]["centre"][:, 1].min(), g["brow_r"]["centre"][:, 1].min()))
        lab = _lab(small)
        w = np.array([0.5, 1.0, 1.0], np.float32)
        lab_skin = _lab(col["skin"])
        d_skin = np.linalg.norm((lab - lab_skin) * w, axis=-1)
        # skin-coloured: the skin's hue and chroma at about its lightness (a bald
        # scalp is often lighter or darker than the cheeks, hair rarely has skin's chroma)
        skinlike = np.hypot(lab[..., 1] - lab_skin[1], lab[..., 2] - lab_skin[2]) / 13.0 \
            + np.abs(lab[..., 0] - lab_skin[0]) / 40.0 < 1.0
        hair = np.array(P.HAIR_COLORS["dark_brown"], np.float32)
        hair_known = False
        # hair colour, first from the band just above the forehead (hair, or a bald scalp)
        y10 = float(lm[10, 1])
        band = (person | oval) & valid & (np.abs(gx - g["centre_x"]) < 0.25) & (gy > y10 - 0.45) & (gy < y10 - 0.12)
        top_skin, top_tex = None, 1.0
        if band.sum() >= 10:
            sk_b = skinlike[band]
            top_skin = float(np.mean(sk_b))
            big = cv2.resize(band.astype(np.uint8), (photo.size, photo.size), interpolation=cv2.INTER_NEAREST)
            top_tex = photo.texture(big.astype(bool))
            if top_skin < 0.6:
                # the farther half from the skin colour: not the skin/hair transition
                cand = small[band][~sk_b]
                dc = d_skin[band][~sk_b]
                hair = _robust_median(cand[dc >= np.median(dc)], 10, 90)
                hair_known = True
        if not hair_known:
            # else two clusters (skin, hair) over the head ring above the eyes
            region = person & valid & ~oval & near_head & (gy < g["eye_y"] + 0.05)
            if top_skin is not None:
                region &= ~band
            px, lpx, ds = small[region], lab[region], d_skin[region]
            if len(px) >= 12:
                far = ds >= max(10.0, float(np.percentile(ds, 60)))
                if far.sum() < 6:
                    far = ds >= np.percentile(ds, 60)
                hc = np.median(lpx[far], 0)
                is_h = far
                for _ in range(3):
                    dh = np.linalg.norm((lpx - hc) * w, axis=-1)
                    is_h = dh < ds
                    if is_h.sum() < 6:
                        break
                    hc = np.median(lpx[is_h], 0)
                sel = px[is_h] if is_h.sum() >= 6 else px[far]
                hair = _robust_median(sel, 10, 90)
                hair_known = True
        d_hair = np.linalg.norm((lab - _lab(hair)) * w, axis=-1)
        is_hair = (d_hair < d_skin) & (d_hair < 32.0) & ~skinlike
        evidence = person & valid & is_hair & near_head
        fringe = oval & valid & (d_hair < 0.8 * d_skin) & (d_hair < 25.0) & (gy < brow_y - 0.03) \
            & (gy > lm[10, 1] - 0.05)
        hairmap = (evidence & ~oval) | fringe
        # keep only hair that touches the head (drops dark background the soft mask let in)
        count, labels = cv2.connectedComponents(hairmap.astype(np.uint8), connectivity=8)
        if count > 2:
            ring = cv2.dilate(oval.astype(np.uint8), np.ones((7, 7), np.uint8)).astype(bool) | fringe
            keep = np.zeros(count, bool)
            keep[np.unique(labels[ring & hairmap])] = True
            keep[0] = False
            hairmap = keep[labels]
        skull_all = head & ~oval & (gy < brow_y - 0.05)
        skull_valid = float((skull_all & valid).sum()) / max(float(skull_all.sum()), 1.0)
        # the mid-line, from the top of the person down to the brows: hair, then skin
        ys = gy[:, 0]
        cols = np.abs(gx[0] - g["centre_x"]) < 0.15
        if not cols.any():  # the mid-line is off the crop (degenerate landmarks)
            cols[np.argmin(np.abs(gx[0] - g["centre_x"]))] = True
        colv = valid[:, cols].mean(1) > 0.6
        pf = (person | oval)[:, cols].mean(1) > 0.5
        hair_r = is_hair[:, cols].mean(1) > 0.5
        skin_r = skinlike[:, cols].mean(1) > 0.5
        above = ys < brow_y - 0.03
        rows = np.flatnonzero(pf & colv & above)
        top_y, hairline, top_hair, top_known = None, None, 0, False
        if len(rows) >= 3:
            r0 = int(rows[0])
            top_y = float(ys[r0])
            top_known = r0 > 0 and colv[r0 - 1]  # the head's top is inside the photo
            hairline = float(brow_y)
            seen = 0
            for r in range(r0, int(rows[-1]) + 1):
                if hair_r[r]:
                    seen += 1
                elif skin_r[r] and seen:
                    hairline = float(ys[r]) - 0.5 * (ys[1] - ys[0])
                    break
            top_hair = seen
        return dict(n=n, gx=gx, gy=gy, valid=valid, person=person, oval=oval, head=head, brow_y=brow_y,
                    hairmap=hairmap, skull_valid=skull_valid, hair=hair, hair_known=hair_known, small=small,
                    fringe=fringe, top_y=top_y, top_known=top_known, hairline=hairline, top_hair=top_hair,
                    mid_rows=len(rows), top_skin=top_skin, top_tex=top_tex)

    def _hair_style(self, lm, g, hm, photo: _Photo) -> tuple[str, float, dict]:
        """A hairstyle family of the prior from simple silhouette measurements."""
        gx, gy, H, valid = hm["gx"], hm["gy"], hm["hairmap"], hm["valid"]
        cx, hw = g["centre_x"], g["half_w"]
        info: dict = {}
        if hm["skull_valid"] < 0.3 or not hm["hair_known"]:
            return ("short" if hm["hair_known"] or hm["skull_valid"] < 0.3 else "bald"), 0.0, info
        # length: how far down the hair reaches beside the face and neck
        side = (np.abs(gx - cx) > hw * 0.8) & (np.abs(gx - cx) < hw + 0.3) & ~hm["oval"]
        rows = np.arange(hm["n"])
        frac = (H & side).sum(1) / np.maximum((side & valid).sum(1), 1)
        okrow = (side & valid).sum(1) >= 3
        ys = gy[:, 0]
        bottom = g["eye_y"]
        for r in rows:
            if ys[r] < g["eye_y"]:
                continue
            if okrow[r] and frac[r] > 0.22:
                bottom = ys[r]
            elif okrow[r] and ys[r] > bottom + 0.07:
                break
        runs_off = bottom >= ys[okrow].max() - 0.05 if okrow.any() else False
        # volume: hair above the skull top and beside the temples
        col_c = np.abs(gx[0] - cx) < 0.12
        if not col_c.any():
            col_c[np.argmin(np.abs(gx[0] - cx))] = True
        top_rows = H[:, col_c].mean(1) > 0.4
        hair_top = float(ys[np.flatnonzero(top_rows)[0]]) if top_rows.any() else g["top"]
        vol_top = g["top"] - hair_top
        temple = (np.abs(gy - (g["eye_y"] - 0.25)) < 0.08)
        wide = []
        for sgn in (-1, 1):
            band = temple & ((gx - cx) * sgn > 0)
            cols = np.flatnonzero((H & band).any(0))
            if len(cols):
                xs = np.abs(gx[0, cols] - cx)
                wide.append(float(xs.max()) - hw)
        vol_side = float(np.median(wide)) if wide else 0.0
        # fringe: hair over the forehead inside the face oval
        fore = hm["oval"] & (gy < hm["brow_y"] - 0.03) & (gy > lm[10, 1] - 0.05) & (np.abs(gx - cx) < 0.3) & valid
        fringe = float((hm["fringe"] & fore).sum()) / max(float(fore.sum()), 1.0)
        # texture: curly hair is full of small bright/dark alternations
        tex = self._hair_texture(photo, hm)
        info.update(bottom=bottom, runs_off=bool(runs_off), vol_top=vol_top, vol_side=vol_side, fringe=fringe,
                    tex=tex)
        curly = tex > 0.085 and max(vol_top, vol_side) > 0.2
        volume = float(np.clip(0.5 + 4.0 * max(vol_top, vol_side), 0.4, 2.0))
        info.update(top_hair=hm["top_hair"], hairline=hm["hairline"] if hm["hairline"] is not None else 0.0)
        if hm["top_skin"] is not None and hm["top_skin"] >= 0.7 and hm["top_tex"] < 0.01:
            style = "bald" if hm["top_hair"] <= 1 else "receding"
        elif hm["top_skin"] is None and hm["top_hair"] <= 1 and hm["mid_rows"] >= 3:
            style = "bald"
        elif curly and max(vol_top, vol_side) > 0.16 and bottom < 0.45:
            style = "afro"
        elif bottom > 0.62 or runs_off and bottom > 0.4:
            style = "curly" if curly else ("long" if bottom > 0.8 or runs_off else "medium")
        elif bottom > 0.35:
            style = "curly" if curly else "bob"
        elif fringe > 0.45:
            style = "fringe"
        elif max(vol_top, vol_side) < 0.02:
            style = "buzz"
        else:
            style = "short"
        return style, volume, info

    @staticmethod
    def _hair_texture(photo: _Photo, hm) -> float:
        """Relative high-frequency luminance energy inside the hair region."""
        H = cv2.resize(hm["hairmap"].astype(np.uint8), (photo.size, photo.size), interpolation=cv2.INTER_NEAREST)
        H = cv2.erode(H, np.ones((5, 5), np.uint8)).astype(bool)
        if H.sum() < 50:
            return 0.0
        y = photo.luma
        hp = photo.highpass
        e = float(np.sqrt(np.mean(hp[H] ** 2)))
        return e / (float(np.mean(y[H])) + 0.08)

    def _hair(self, p, lm, g, photo: _Photo, col):
        st = self.style
        skin = col["skin"]
        hm = self._hair_maps(lm, g, photo, col)
        hair = self._gain(hm["hair"])
        col["hair"] = hair
        fam, volume, info = self._hair_style(lm, g, hm, photo)
        part = self._part_side(hm, g)
        back, front, curl, layers = P.hairstyle_contours(p, fam, _CentralRng(choice=part),
                                                         volume=volume * st.hair_volume)
        back = back.astype(np.float64)
        front = front.astype(np.float64)
        if hm["skull_valid"] >= 0.3 and hm["hair_known"]:
            back, front = self._refine_hair(back, front, hm, g)
        if fam in ("curly", "afro", "long_wavy"):
            curl = float(np.clip(curl * (0.5 + 0.5 * min(info.get("tex", 0.0) / 0.2, 1.5)), 0, 1))
        if fam == "bald":
            # hair at the sides of the head? otherwise nothing is drawn
            side = hm["hairmap"] & ~hm["oval"] & (np.abs(hm["gx"] - g["centre_x"]) > g["half_w"] * 0.85) \
                & (hm["gy"] < g["eye_y"] + 0.25) & (hm["gy"] > g["eye_y"] - 0.35)
            layers = 1.0 if side.sum() >= 6 else 0.0
        g["hair_family"], g["hair_info"] = fam, info
        P.put(p, "hair_back", back)
        P.put(p, "hair_front", front)
        self._symmetrise(p, S.SLICES["hair"], st.hair_symmetry)
        p[S.index("hair_style.curl")] = curl
        p[S.index("hair_style.layers")] = layers
        p[S.index("hair_style.bank_id")] = P.HAIRSTYLES.index(fam)
        p[S.index("hair_style.part_x")] = float(P.pts(p, "hair_front")[0, 0]) if fam == "side_part" else 0.0
        hair_col = hair if fam != "buzz" else hair * 0.6 + skin * 0.4
        _set_rgb(p, "hair_back", hair_col * 0.85)
        _set_rgb(p, "hair_front", hair_col)
        has = layers > 1 and fam not in ("buzz", "bald", "receding")
        fr = P.pts(p, "hair_front")
        top = float(fr[:, 1].min())
        # strand 0 on the parting side, strand 1 opposite (mirror-consistent)
        for i, sgn in ((0, part), (1, -part)):
            hl = np.array([(sgn * 0.05, top + 0.1), (sgn * 0.22, top + 0.16), (sgn * 0.36, top + 0.3)])
            hl[:, 0] += g["centre_x"]
            P.put(p, f"hair_strand{i}", hl)
            p[S.index(f"hair_strand{i}.w0")] = 0.004 if has else 0.0
            p[S.index(f"hair_strand{i}.w1")] = 0.016 if has else 0.0
            _set_rgb(p, f"hair_strand{i}", np.clip(hair_col * 1.25 + 0.05, 0, 1))

    @staticmethod
    def _part_side(hm, g) -> int:
        """-1 when the forehead's image-left half shows less hair (a parting there), else +1."""
        f = hm["fringe"]
        gx = hm["gx"]
        d = float((f & (gx > g["centre_x"])).sum()) - float((f & (gx < g["centre_x"])).sum())
        return -1 if d > 0 else 1

    def _refine_hair(self, back, front, hm, g):
        """Pulls the template's back contour onto the hair outline along rays
        from the head centre, and the front's hairline onto the photo's."""
        st = self.style
        back = back.copy()
        front = front.copy()
        c = np.array([g["centre_x"], g["eye_y"] - 0.1])
        H = hm["hairmap"].astype(np.float32)
        V = hm["valid"].astype(np.float32)
        rs = np.linspace(0.3, 1.7, 57)
        ks = np.arange(2, 11)  # 0, 1 and 11 lie behind the shoulders: keep the template
        d = back[ks] - c
        r0 = np.linalg.norm(d, axis=1)
        u = d / np.maximum(r0, 1e-6)[:, None]
        pts = c + rs[None, :, None] * u[:, None, :]  # (9, R, 2)
        inside = (np.abs(pts) < 0.985).all(-1)
        h = (_sample(H, pts) > 0.5) & inside
        v = (_sample(V, pts) > 0.5) & inside
        h &= v
        for i, k in enumerate(ks):
            if not h[i].any():
                continue
            # the outermost hair sample that is connected to the head (gaps up to 3 samples)
            idx = np.flatnonzero(h[i])
            start = idx[0]
            last = start
            for j in idx[1:]:
                if j - last > 3:
                    break
                last = j
            if rs[start] > r0[i] + 0.1:
                continue
            r_meas = rs[last]
            if last + 1 < len(rs) and not v[i, last + 1]:
                r_meas = max(r_meas, r0[i])  # runs off the photo: at least this big
            back[k] = c + (r0[i] + st.hair_fit * (r_meas - r0[i])) * u[i]
        # the hairline at the centre, measured on the mid-line
        if hm["hairline"] is not None and hm["top_hair"] >= 2:
            dy = hm["hairline"] - front[0, 1]
            front[0, 1] += st.hair_fit * dy
            for k in (1, len(front) - 1):
                front[k, 1] += st.hair_fit * dy * 0.8
            for k in (2, len(front) - 2):
                front[k, 1] += st.hair_fit * dy * 0.4
        # the front's crown follows the back's
        m = len(front) // 2
        front[m, 1] = min(front[m, 1], back[6, 1] + 0.03)
        return back, front

    # ------------------------------------------------------- accessories
    def _glasses_scores(self, lm, g, photo: _Photo, col) -> tuple[float, float, float]:
        """Frame evidence where bare skin is smooth: a thin horizontal bar
        (dark or bright) across the nose between the eyes, and the lower rims
        across the upper cheeks. Each is the strongest row of a horizontal
        line detector (the row against the mean of the rows 0.02 above and
        below, averaged along the row), relative to the local luminance."""
        step = 2.0 / photo.size
        ex = 0.5 * (g["eye_l"]["center"] + g["eye_r"]["center"])

        def grid(x0, x1, y0, y1):
            xs = np.linspace(x0, x1, 9)
            ys = np.linspace(y0, y1, int(round((y1 - y0) / (step * 0.75))) + 1)
            return np.stack(np.meshgrid(xs, ys), -1)

        grids = [grid(ex[0] - 0.04, ex[0] + 0.04, ex[1] - 0.16, ex[1] + 0.02)]
        for sd in "lr":
            e = g[f"eye_{sd}"]
            c = e["center"]
            lo_y = c[1] + 0.5 * max(e["opening"], 0.02)
            grids.append(grid(c[0] - 0.06, c[0] + 0.06, lo_y + 0.04, lo_y + 0.17))
        sizes = [q.shape[0] for q in grids]
        allg = np.concatenate(grids, 0)  # rows of 9 samples
        d = np.array([0.0, 0.02])
        lum = _sample(photo.luma, np.stack([allg, allg - d, allg + d])).mean(2)  # (3, rows)
        mean_ud = 0.5 * (lum[1] + lum[2])
        line = np.abs(mean_ud - lum[0]) / (mean_ud + 0.06)
        parts = np.split(line, np.cumsum(sizes)[:-1])
        bridge = float(parts[0].max())
        rims = [float(q.max()) for q in parts[1:]]
        # tinted lenses: the whole eye box is dark against the skin
        dark = []
        for sd in "lr":
            c = g[f"eye_{sd}"]["center"]
            box = np.stack(np.meshgrid(np.linspace(c[0] - 0.09, c[0] + 0.09, 7),
                                       np.linspace(c[1] - 0.05, c[1] + 0.07, 5)), -1)
            dark.append(float(np.median(_sample(photo.luma, box))))
        tint = float(np.mean(dark)) / max(float(_luma(col["skin"])), 0.05)
        ok = float(_sample(photo.validf, ex[None]).min()) > 0.5
        return (bridge, float(min(rims)), tint) if ok else (0.0, 0.0, 1.0)

    def _glasses(self, p, lm, g, photo: _Photo, col):
        bridge, rim, tint = self._glasses_scores(lm, g, photo, col)
        g["glasses_score"] = (bridge, rim, tint)
        sun = tint < 0.3 and max(bridge, rim) > 0.06
        if (bridge > 0.12 and rim > 0.09) or sun:
            p[S.index("glasses.type")] = 2 if sun else 1
            if sun:
                _set_rgb(p, "glasses", (0.08, 0.09, 0.1), prefix="lens_")
                p[S.index("glasses.lens_opacity")] = 0.9
            # frame colour: the darkest pixels of the bridge band
            ex = 0.5 * (g["eye_l"]["center"] + g["eye_r"]["center"])
            px = photo.region_pixels(ex + np.array([(-0.05, -0.12), (0.05, -0.12), (0.05, 0.0), (-0.05, 0.0)]))
            if len(px) >= 6:
                y = _luma(px)
                fc = np.median(px[y <= np.percentile(y, 15)], 0)
                _set_rgb(p, "glasses", np.clip(fc * 0.8, 0, 1), prefix="frame_")
            L = lambda name, s: lm[_idx(name, s)]  # noqa: E731
            ew = 0.5 * abs(L("eye_outer", 0)[0] - L("eye_inner", 0)[0]) * self.style.eye_scale
            p[S.index("glasses.lens_w")] = float(np.clip(ew * 1.15, 0.08, 0.18))
            p[S.index("glasses.lens_h")] = float(np.clip(ew * 0.8, 0.05, 0.12))
            p[S.index("glasses.frame_width")] = float(np.clip(0.006 + 0.04 * (bridge - 0.1), 0.006, 0.02))
            p[S.index("glasses.roundness")] = 0.5

    def _facial_hair_features(self, lm, g, photo: _Photo) -> dict:
        """Per region (chin, jaw sides, upper lip) against the upper cheeks:
        relative darkness, texture ratio (log) and loss of skin chroma."""
        L = lambda name, s: lm[_idx(name, s)]  # noqa: E731
        hp = photo.highpass
        regions = {
            "ref": [lm[list(_CHEEK_PATCH[0])], lm[list(_CHEEK_PATCH[1])]],
            "chin": [np.array([lm[17] + (-0.11, 0.04), lm[17] + (0.11, 0.04), lm[152] + (0.09, -0.05),
                               lm[152] + (-0.09, -0.05)])],
            "jaw": [np.array([L("mouth_side", 0) + (-0.02, 0.05), lm[17] + (-0.14, 0.06),
                              L("chin_side", 0) + (0.03, -0.04), L("jaw", 0) + (0.05, -0.03)]),
                    np.array([L("mouth_side", 1) + (0.02, 0.05), lm[17] + (0.14, 0.06),
                              L("chin_side", 1) + (-0.03, -0.04), L("jaw", 1) + (-0.05, -0.03)])],
            "must": [np.array([lm[2] + (-0.09, 0.025), lm[2] + (0.09, 0.025), lm[0] + (0.09, -0.012),
                               lm[0] + (-0.09, -0.012)])],
        }
        stats = {}
        for k, polys in regions.items():
            win, m = photo.region(*polys)
            if m.sum() < 6:
                return {}
            px = photo.rgb[win][m]
            y = photo.luma[win][m]
            lab = _lab(np.median(px, 0))
            stats[k] = (float(np.median(y)), float(hp[win][m].mean()) / (float(y.mean()) + 0.06),
                        float(np.hypot(lab[1], lab[2])))
            if k in ("chin", "must"):  # the darker half: the colour of the hair there, if any
                g[f"{k}_dark_rgb"] = np.median(px[y <= np.median(y)], 0)
        ref = stats["ref"]
        out = {}
        for k in ("chin", "jaw", "must"):
            y, t, c = stats[k]
            out[k] = (float((ref[0] - y) / max(ref[0], 0.05)), float(np.log((t + 1e-3) / (ref[1] + 1e-3))),
                      float((ref[2] - c) / 20.0))
        return out

    def _facial_hair(self, p, lm, g, photo: _Photo, col):
        """Beard and moustache: chin/jaw and upper-lip regions that are darker,
        more textured and less skin-coloured than the upper cheeks."""
        f = self._facial_hair_features(lm, g, photo)
        g["beard_features"] = f
        if not f:
            return
        beard = float(((np.array([*f["chin"], *f["jaw"]]) - _BEARD_MED) / _BEARD_IQR).sum()) - _BEARD_T
        must = float(((np.array([*f["must"], *f["chin"]]) - _MOUSTACHE_MED) / _MOUSTACHE_IQR).sum()) - _MOUSTACHE_T
        g["beard_score"] = (beard, must)
        hair = col.get("hair", np.array(P.HAIR_COLORS["dark_brown"]))
        if beard > 0.0:
            face = g["face"]
            P.put(p, "beard", P.beard_outline(face, lm[17], g["chin"]))
            p[S.index("beard.opacity")] = float(np.clip(0.5 + 0.06 * beard, 0.5, 0.95))
            _set_rgb(p, "beard", self._gain(0.75 * g.get("chin_dark_rgb", hair) + 0.25 * hair) * 0.9)
        if must > 0.0 or (beard > 0.0 and must > -5.0):
            uo = P.pts(p, "lip_upper_outer").astype(np.float64)
            ms = np.array([uo[0] + (-0.02, 0.0), uo[1] + (0, -0.03), uo[3] + (0, -0.045), uo[5] + (0, -0.03),
                           uo[6] + (0.02, 0.0)])
            P.put(p, "moustache", ms)
            p[S.index("moustache.w0")] = 0.01
            p[S.index("moustache.w1")] = float(np.clip(0.03 + 0.003 * max(must, beard), 0.025, 0.05))
            _set_rgb(p, "moustache", self._gain(0.75 * g.get("must_dark_rgb", hair) + 0.25 * hair) * 0.85)

    def _clothes(self, p, g, photo: _Photo, col):
        gx, gy = photo.gx, photo.gy
        region = (gy > 0.88) & (np.abs(gx) > 0.45) & photo.valid
        if photo.hair is not None:
            region &= photo.hair > 0.5
        px = photo.rgb[region]
        if len(px) >= 20:
            lab = _lab(px)
            far = (np.linalg.norm(lab - _lab(col["skin"]), axis=1) > 15) & \
                  (np.linalg.norm(lab - _lab(col["hair"]), axis=1) > 15)
            if far.sum() >= 10:
                _set_rgb(p, "clothes", np.median(px[far], 0))
                return
        _set_rgb(p, "clothes", P.CLOTHES[0])
