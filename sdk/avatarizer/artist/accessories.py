"""Accessories: glasses, beard and moustache, clothes."""
from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

import cv2
import numpy as np

from .. import prior as P
from ..checks import is_real
from .. import schema as S
from ..landmarks import (
    CHEEK_PATCH,
    CHIN_BOTTOM,
    LOWER_LIP_BOTTOM,
    LOWER_OUTLINE,
    MOUTH_CORNERS,
    NOSE_BOTTOM,
    UPPER_LIP_TOP,
    side_index,
)
from .photo import (
    at_size,
    float_rgb,
    from_lab,
    landmark_index,
    grid,
    clamp,
    clip,
    Photo,
    gain,
    luma_of,
    masked,
    pixel_centres,
    norm,
    sample_at,
    set_rgb,
    to_lab,
)
from .stats import mean, median, percentile

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


def glasses_scores(st, lm, g, photo: Photo, col) -> tuple[float, float, float]:
    """Frame evidence where bare skin is smooth: a thin horizontal bar
    (dark or bright) across the nose between the eyes, and the lower rims
    across the upper cheeks. Each is the strongest row of a horizontal
    line detector (the row against the mean of the rows 0.02 above and
    below, averaged along the row), relative to the local luminance."""
    step = 2.0 / photo.size
    ex = photo.to_img(0.5 * (g["eye_l"]["center"] + g["eye_r"]["center"]))

    def rows(x0, x1, y0, y1):  # rows of 9 samples, 0.75 px apart
        return grid(x0, x1, 9, y0, y1, int(round((y1 - y0) / (step * 0.75))) + 1)

    grids = [rows(ex[0] - 0.04, ex[0] + 0.04, ex[1] - 0.16, ex[1] + 0.02)]
    for sd in "lr":
        e = g[f"eye_{sd}"]
        c = photo.to_img(e["center"])
        lo_y = c[1] + 0.5 * max(e["opening"], 0.02)
        grids.append(rows(c[0] - 0.06, c[0] + 0.06, lo_y + 0.04, lo_y + 0.17))
    sizes = [q.shape[0] for q in grids]
    allg = np.concatenate(grids, 0)  # rows of 9 samples
    d = np.array([0.0, 0.02])
    lum = mean(sample_at(photo.luma, np.stack([allg, allg - d, allg + d])), 2)  # (3, rows)
    mean_ud = 0.5 * (lum[1] + lum[2])
    line = np.abs(mean_ud - lum[0]) / (mean_ud + 0.06)
    parts = np.split(line, np.cumsum(sizes)[:-1])
    bridge = float(parts[0].max())
    rims = [float(q.max()) for q in parts[1:]]
    # tinted lenses: the whole eye box is dark against the skin
    dark = []
    for sd in "lr":
        c = photo.to_img(g[f"eye_{sd}"]["center"])
        box = grid(c[0] - 0.09, c[0] + 0.09, 7, c[1] - 0.05, c[1] + 0.07, 5)
        dark.append(float(median(sample_at(photo.luma, box))))
    skin_y = max(float(luma_of(col["skin"])), 0.05)
    tint = float(mean(dark)) / skin_y
    # transparency: how bright the eye whites show through (sunglasses hide
    # them) and how much detail the eye box keeps
    sclera, detail = [], []
    for s_ in (0, 1):
        opening = np.concatenate([lm[landmark_index("eye_up", s_)], lm[landmark_index("eye_lo", s_)][::-1]])
        win, m = photo.region(opening)
        if np.count_nonzero(m) >= 4:
            y = photo.luma[win][m]
            sclera.append(float(percentile(y, 90)) / skin_y)
            detail.append(float(np.std(y)) / (float(mean(y)) + 0.06))
    g["glasses_extra"] = (float(mean(sclera)) if sclera else 1.0, float(mean(detail)) if detail else 0.3)
    ok = float(sample_at(photo.validf, ex[None]).min()) > 0.5
    return (bridge, float(min(rims)), tint) if ok else (0.0, 0.0, 1.0)


def _grid_cells(photo: Photo, box, nx: int, ny: int):
    """The valid pixels of the canonical box ``(x0, x1, y0, y1)`` at half the
    crop's resolution, each with its cell of an ``nx`` × ``ny`` grid (row by
    row): ``(win, pool, valid, cell, n)`` -- ``win`` the box's slice of the
    crop, ``pool(a)`` the 2x2 block means of a
    crop-sized array in the box (``a`` already cut to the box with
    ``cut=False``), ``valid`` the half-resolution mask, ``cell`` each valid
    pixel's cell and ``n`` the pixels per cell -- or None when the box holds
    fewer than 4 valid pixels."""
    x0, x1, y0, y1 = box
    if not (x1 - x0 > 1e-3 and y1 - y0 > 1e-3):
        return None
    gx, gy = photo.gx.ravel(), photo.gy.ravel()
    c0, c1 = np.searchsorted(gx, (x0, x1))
    r0, r1 = np.searchsorted(gy, (y0, y1))
    c1, r1 = c0 + (c1 - c0) // 2 * 2, r0 + (r1 - r0) // 2 * 2  # whole 2x2 blocks
    if not (c1 > c0 and r1 > r0):
        return None
    win, half = np.s_[r0:r1, c0:c1], ((c1 - c0) // 2, (r1 - r0) // 2)

    def pool(a, cut: bool = True):  # 2x2 block means
        return cv2.resize(np.ascontiguousarray(a[win] if cut else a), half, interpolation=cv2.INTER_AREA)

    valid = pool(photo.validf) > 0.99
    if np.count_nonzero(valid) < 4:
        return None
    ix = np.minimum((gx[c0:c1].reshape(-1, 2).mean(1) - x0) * (nx / (x1 - x0)), nx - 1)
    iy = np.minimum((gy[r0:r1].reshape(-1, 2).mean(1) - y0) * (ny / (y1 - y0)), ny - 1)
    cell = (np.maximum(iy, 0).astype(np.intp)[:, None] * nx + np.maximum(ix, 0).astype(np.intp)[None, :])[valid]
    return win, pool, valid, cell, np.bincount(cell, minlength=nx * ny).astype(np.float64)


#: the glasses cues' grid over the eyes (columns, rows): 1.45 times the outer
#: eye corners' half span each side of their middle, from 0.6 of it above
#: the eyes to 0.45 below. A cell's cues against the skin (darkness,
#: chroma loss, texture, share of dark pixels, horizontal and vertical edge
#: strength) see frames and tinted lenses where they are (the detector over
#: them and the seven cues: glasses type right on 0.952 of 289 held-out
#: labelled photos against the seven cues' 0.920, session 12)
GLASSES_GRID = (6, 3)


def glasses_grid(lm, photo: Photo, skin_lab, ref_tex: float) -> list[float]:
    """Per cell of :data:`GLASSES_GRID` (row by row) against the skin's
    CIELAB ``skin_lab`` and the cheeks' fine texture ``ref_tex``: darkness
    (L* difference / 20), chroma loss (/ 20), texture ratio (log), share of
    pixels 35 L* darker than the skin, and mean horizontal and vertical
    luma gradients (x 4); zeros for a cell with fewer than 4 valid pixels.
    Read at half the crop's resolution (2x2 means)."""
    nx, ny = GLASSES_GRID
    lm = np.asarray(lm, np.float64)
    eo_l, eo_r = lm[side_index("eye_outer", 0)], lm[side_index("eye_outer", 1)]
    cx, hw = 0.5 * (eo_l[0] + eo_r[0]), 0.725 * abs(eo_r[0] - eo_l[0])
    ey = 0.5 * (eo_l[1] + eo_r[1])
    k = nx * ny
    out = np.zeros((k, 6))
    grid = _grid_cells(photo, (cx - hw, cx + hw, ey - 0.6 * hw, ey + 0.45 * hw), nx, ny)
    if grid is None:
        return out.ravel().tolist()
    win, pool, valid, cell, n = grid
    lab = to_lab(masked(pool(photo.rgb), valid))
    luma = photo.luma[win]
    edge_x = pool(np.abs(cv2.Sobel(luma, cv2.CV_32F, 1, 0)), cut=False)[valid]
    edge_y = pool(np.abs(cv2.Sobel(luma, cv2.CV_32F, 0, 1)), cut=False)[valid]
    m = np.maximum(n, 1.0)
    big_l, big_a, big_b = (np.bincount(cell, lab[:, i], k) / m for i in range(3))
    tex = np.bincount(cell, pool(photo.highpass)[valid], k) / (np.bincount(cell, pool(photo.luma)[valid], k) + 0.06 * m)
    s_l, s_c = float(skin_lab[0]), float(np.hypot(skin_lab[1], skin_lab[2]))
    out[:] = np.stack([(s_l - big_l) / 20.0, (s_c - np.hypot(big_a, big_b)) / 20.0,
                       np.log((tex + 1e-3) / (ref_tex + 1e-3)),
                       np.bincount(cell, (lab[:, 0] < s_l - 35.0).astype(np.float64), k) / m,
                       4.0 * np.bincount(cell, edge_x, k) / m, 4.0 * np.bincount(cell, edge_y, k) / m], 1)
    out[n < 4] = 0.0
    return out.ravel().tolist()


#: Under a face mask (``colour.skin_colour``'s ``cheeks_covered``: cheeks and
#: mouth of one colour that is not skin's) sunglasses are drawn only where the eye boxes
#: themselves are this dark against the skin (``glasses_scores``' tint): a
#: dark mask below the eyes reads as tinted lenses' lower half to both the
#: glasses network and H (sunglasses on 39 of 79 synthetically masked
#: held-out faces without them). The artist's hand-set rule's tint; of 1,006
#: labelled photos (session 27) sunglasses have a median tint of 0.24, faces
#: without glasses a 5th percentile of 0.32 (0.37-0.40 under the masks).
MASK_SUN_TINT = 0.3
#: ... and where they are not tinted, the pair is drawn clear only where the
#: glasses network's P(clear) reaches this (its threshold for unmasked faces
#: is ``thresholds["clear"]``, 0.32): a mask's top edge below the eyes raises
#: P(clear) on faces without glasses too. On 760 training photos (360 wearers
#: of clear glasses, 400 without) under 12 synthetic masks (plain, patterned,
#: higher on the nose; session 28, ``/tmp/s28/gl``), where a mask vetoed
#: sunglasses, the precision at the training photos' share of wearers (17%)
#: is 0.49 at 0.32, 0.74 at 0.7, 0.83 at 0.9 and levels off at 0.88-0.89 from
#: here on (0.9 is not reached); 29% of the wearers keep their glasses
MASK_CLEAR_PROB = 0.97


def tinted_under_mask(cue_vector) -> bool:
    """Whether the eyes look tinted enough for sunglasses under a face mask
    (:data:`MASK_SUN_TINT`; ``cue_vector``: :func:`glasses_vector`'s)."""
    return cue_vector is not None and float(np.asarray(cue_vector)[2]) < MASK_SUN_TINT


def clear_under_mask(probs) -> bool:
    """Whether the glasses network (its (none, clear, sun) probabilities
    ``probs``) draws clear glasses where a face mask vetoed its sunglasses
    (:data:`MASK_CLEAR_PROB`); the artist alone and the hybrid decide alike."""
    return probs is not None and bool(float(probs[1]) >= MASK_CLEAR_PROB)


def glasses(st, p, lm, g, photo: Photo, col, cues: dict | None = None):
    """The artist's glasses: its fitted detector over the photo's cues
    decides none / clear / sunglasses and draws them. With ``cues`` (a dict)
    it also leaves the evidence for a caller that decides with more
    information (the runtime's hybrid fuses it with the attribute model):
    ``cues["glasses"]`` the cue vector (:func:`glasses_vector`),
    ``cues["glasses_probs"]`` the fitted network's (none, clear, sun)
    probabilities (None without one for these cues) and
    ``cues["glasses_shape"]`` a function returning the (12,) ``glasses``
    feature drawn as clear glasses whatever the artist decided (given the
    kind the caller will draw, 2: the lenses' height is not read on
    sunglasses)
    (:func:`set_glasses_kind` turns it into sunglasses or none); it is only
    drawn when asked for (most faces have no glasses)."""
    bridge, rim, tint = glasses_scores(st, lm, g, photo, col)
    g["glasses_score"] = (bridge, rim, tint)
    x = glasses_vector(g)
    det = detectors().get("glasses")
    win, m = photo.region(lm[list(CHEEK_PATCH[0])], lm[list(CHEEK_PATCH[1])])
    ref_tex = photo.region_texture(win, m) if np.count_nonzero(m) >= 8 else 0.0
    skin_lab = col["skin_lab"] if "skin_lab" in col else to_lab(np.asarray(col["skin"], np.float64))
    g["glasses_grid"] = glasses_grid(lm, photo, skin_lab, ref_tex)
    x_det = glasses_detector_vector(g)
    if det is not None and len(det["mean"]) != len(x_det):
        x_det = x  # a detector fitted on the seven cues alone (an older file)
    if det is not None and len(det["mean"]) == len(x_det):
        prob = probabilities(det, x_det)  # none, clear, sun
        g["glasses_prob"] = prob
        th = det["thresholds"]
        sun = prob[2] >= th["sun"]
        vetoed = sun and g.get("cheeks_covered") and not tinted_under_mask(x)
        if vetoed:
            sun = False  # a face mask's dark edge, not tinted lenses (MASK_SUN_TINT)
        clear = not sun and (clear_under_mask(prob) if vetoed else prob[1] >= th["clear"])
    else:  # no fitted detector: the conservative hand-set rule
        sun = tint < 0.3 and max(bridge, rim) > 0.06
        clear = bridge > 0.12 and rim > 0.09 and not sun
    if cues is not None:
        def shape(kind: int = 1) -> np.ndarray:  # (the kind the caller will draw: 2 sunglasses)
            q = S.default()
            _glasses_shape(st, q, lm, g, photo, bridge, sunglasses=kind == 2)
            set_glasses_kind(q, 1)
            return q[GLASSES].astype(np.float32)

        cues["glasses"] = x
        # the glasses network's (none, clear, sun) probabilities (set above where it decided): what the fusion reads
        cues["glasses_probs"] = g.get("glasses_prob")
        cues["glasses_shape"] = shape
        cues["lens_rgb"] = lens_colour(g, photo)  # (drawn on sunglasses, whoever decides them)
    if clear or sun:
        _glasses_shape(st, p, lm, g, photo, bridge, sunglasses=bool(sun))
        set_glasses_kind(p, 2 if sun else 1, lens_colour(g, photo) if sun else None)


#: the ``glasses`` feature's parameters (a slice of the vector)
GLASSES = S.FEATURES["glasses"].indices
_LENS = ("glasses.lens_r", "glasses.lens_g", "glasses.lens_b", "glasses.lens_opacity")
_SUN_LENS = (0.08, 0.09, 0.1, 0.9)


def set_glasses_kind(p, kind: int, lens_rgb=None) -> None:
    """Makes drawn glasses clear (1), sunglasses (2: dark lenses, opacity 0.9;
    with ``lens_rgb``, :func:`sun_lens`'s colour and opacity for it)
    or none (0) in ``p`` -- a whole (629,) vector or a (12,) ``glasses``
    feature -- keeping their shape and frame."""
    full = len(p) == S.PARAM_COUNT
    at = (lambda name: S.index(name)) if full else (lambda name: S.index(name) - GLASSES.start)
    p[at("glasses.type")] = int(kind)
    lens = (sun_lens(lens_rgb) if lens_rgb is not None else _SUN_LENS) if kind == 2 \
        else tuple(S.default()[S.index(n)] for n in _LENS)
    for name, v in zip(_LENS, lens):
        p[at(name)] = v


#: sunglasses' lenses: drawn at the lenses' own median colour in the photo
#: (:func:`lens_colour`) at this opacity where they are dark (L* up to the
#: first value), down to the second opacity for light tints (L* from the
#: second value): a pink or violet tint was drawn black like every lens (a
#: review's contact sheet: 2 of 12 sunglasses), and the eyes behind a
#: light one show through
SUN_LENS_OPACITY = (0.9, 0.7)
SUN_LENS_L = (35.0, 70.0)
#: the boxes sampled for the lens colour, around each eye's centre (canonical units, half sizes)
LENS_BOX = (0.07, 0.035)


def sun_lens(rgb) -> tuple:
    """(r, g, b, opacity) of sunglasses' lenses of the colour ``rgb``
    (:data:`SUN_LENS_OPACITY` by its lightness, :data:`SUN_LENS_L`)."""
    c = np.clip(np.asarray(rgb, np.float64).reshape(3), 0.0, 1.0)
    lum = float(to_lab(c)[0])
    t = float(np.clip((lum - SUN_LENS_L[0]) / (SUN_LENS_L[1] - SUN_LENS_L[0]), 0.0, 1.0))
    return (float(c[0]), float(c[1]), float(c[2]), SUN_LENS_OPACITY[0] + t * (SUN_LENS_OPACITY[1] - SUN_LENS_OPACITY[0]))


def lens_colour(g, photo: Photo):
    """The median colour of the photo inside both lenses (a box of
    :data:`LENS_BOX` around each eye's centre), or None with too few pixels."""
    hx, hy = LENS_BOX
    box = np.array([(-hx, -hy), (hx, -hy), (hx, hy), (-hx, hy)])
    px = [photo.region_pixels(photo.to_img(np.asarray(g[e]["center"], np.float64)[:2] + box)) for e in ("eye_l", "eye_r")]
    px = np.concatenate([x for x in px if len(x)]) if any(len(x) for x in px) else np.zeros((0, 3))
    return None if len(px) < 12 else np.median(px, 0)


#: The lens's half-width over the half eye width (outer to inner corner),
#: drawn over the drawn eye's: the median in the photos of the lens rims
#: fitted by :func:`lens_fit` on
#: 118 training photos of clear glasses (233 of their 236 lenses fitted
#: within :data:`LENS_FIT_RMS`; session 41, scratch ``/tmp/s41/lenseval2.py``):
#: 1.84, quartiles 1.65-2.00 (a lens 1.8 eyes wide; it had been drawn 1.27,
#: hugging the eye). Not per photo: the fitted width did not tell the lenses
#: labelled by eye "large" from "medium" (medians 1.79 and 1.84)
LENS_HALF_WIDTH = 1.84
#: the lens's height over its width where no rim was fitted: the median of
#: those fitted lenses (it had been drawn 0.70); a fitted one is kept
#: within :data:`LENS_ASPECT_RANGE`
LENS_ASPECT = 0.77
LENS_ASPECT_RANGE = (0.45, 1.0)
#: a lens fit counts when its rim points lie within this RMS distance of the
#: fitted outline, in half eye widths: chosen on the training photos, where
#: the aspects labelled by eye separate best with (almost) every fit kept
#: (ROC AUC flat < medium 0.77, medium < tall 0.72, flat < tall 0.96; at
#: 0.25, half the fits: 0.73, 0.64, 0.82; scratch ``/tmp/s41/rmsvar.py``)
LENS_FIT_RMS = 0.5
#: the drawn lens's half width and height stay within these (canonical
#: units; the schema's ranges are 0.06-0.20 and 0.04-0.16)
LENS_W_RANGE = (0.08, 0.20)
LENS_H_RANGE = (0.05, 0.16)
#: the rays cast from each eye's centre for the rim, every 10 degrees, out to
#: this many half eye widths
LENS_RAY_ANGLES = np.radians(np.arange(0.0, 360.0, 10.0))
LENS_RAY_REACH = 2.7


_EIGHTHS = np.linspace(0.0, 1.0, 8, endpoint=False)


def lens_rim(photo: Photo, lm, side: int):
    """The rim of a lens around eye ``side`` (0 image-left, 1 right) of the
    photo's own landmarks ``lm`` (canonical units of the photo's crop, as
    the glasses cues read it; not the drawn face, whose frontalising warp
    misses the eyes' corners by up to a whole half eye width on a turned
    head): on each ray of :data:`LENS_RAY_ANGLES` from the eye's centre
    (the middle of its corners), beyond the eye's own outline and inside
    the photo, where the photo's luma dips most (a dark line 1-7 half
    pixels wide, darker than both its sides: a step from light to dark is
    not one). Returns (rim points (A, 2), the dip at each (luma; -1 where
    none), the eye's centre, its half width)."""
    lm = np.asarray(lm, np.float64)[:, :2]
    outer, inner = lm[side_index("eye_outer", side)], lm[side_index("eye_inner", side)]
    c = 0.5 * (outer + inner)
    e = 0.5 * float(norm(outer - inner))
    opening = np.concatenate([lm[landmark_index("eye_up", side)], lm[landmark_index("eye_lo", side)][::-1]])
    ring = np.concatenate([opening, opening[:1]])
    # 8 points along each segment of the ring, all segments at once
    dense = (ring[:-1, None, :] + _EIGHTHS[None, :, None] * (ring[1:] - ring[:-1])[:, None, :]).reshape(-1, 2) - c
    eye_ang, eye_rad = np.arctan2(dense[:, 1], dense[:, 0]), norm(dense)
    pix = abs(float(photo.gx.ravel()[1] - photo.gx.ravel()[0]))
    rs = np.arange(0.3 * e, LENS_RAY_REACH * e, 0.5 * pix)
    u = np.stack([np.cos(LENS_RAY_ANGLES), np.sin(LENS_RAY_ANGLES)], 1)
    if len(rs) < 16:  # (an eye of no width: nothing to cast)
        return np.repeat(c[None], len(u), 0), np.full(len(u), -1.0), c, e
    rays = c + rs[None, :, None] * u[:, None, :]
    prof, inside = sample_at(photo.luma, rays), sample_at(photo.validf, rays) > 0.99
    dip = np.full(prof.shape, -1.0)
    for d in (2, 4, 7):  # half pixels either side
        dip[:, d:-d] = np.maximum(dip[:, d:-d], np.minimum(prof[:, :-2 * d], prof[:, 2 * d:]) - prof[:, d:-d])
    dip[~inside] = -1.0  # (the crop's replicated border, outside the photo)
    # beyond the eye's outline along the ray (lashes and lids are not the rim)
    off = np.abs((eye_ang[None, :] - LENS_RAY_ANGLES[:, None] + np.pi) % (2 * np.pi) - np.pi) < np.radians(12)
    reach = np.where(off.any(1), np.where(off, eye_rad[None, :], 0.0).max(1), 0.5 * e)
    dip[rs[None, :] <= reach[:, None] * 1.15 + 1.5 * pix] = -1.0
    j = dip.argmax(1)
    at = rs[j]
    return c + at[:, None] * u, dip[np.arange(len(j)), j], c, e


def _box_distance(P: np.ndarray, th) -> np.ndarray:
    """Signed distance of points ``P`` (N, 2) from the rounded boxes ``th``
    ((K, 5) or (5,): centre x, centre y, half width, half height, corner
    radius over the smaller half side): the lens outline the renderer draws
    (``avz__rrect``); (K, N) or (N,)."""
    th = np.asarray(th, np.float64)
    t = th.reshape(-1, 5)[:, None, :]
    rho = t[..., 4] * np.minimum(t[..., 2], t[..., 3])
    qx = np.abs(P[None, :, 0] - t[..., 0]) - (t[..., 2] - rho)
    qy = np.abs(P[None, :, 1] - t[..., 1]) - (t[..., 3] - rho)
    d = np.hypot(np.maximum(qx, 0.0), np.maximum(qy, 0.0)) + np.minimum(np.maximum(qx, qy), 0.0) - rho
    return d.reshape(th.shape[:-1] + (len(P),))


#: :func:`lens_fit`'s Gauss-Newton: at most this many steps, each with a
#: forward-difference Jacobian of this step
LENS_FIT_STEPS = 20
_JAC_STEP = 1e-4


def lens_fit(photo: Photo, lm, side: int) -> dict | None:
    """The rounded box (:func:`_box_distance`) through a lens's rim
    (:func:`lens_rim`), by Gauss-Newton with Huber weights from a box the
    rim's extent wide and tall; the rays with a dip under 0.3 of the median
    left out. ``{"a", "b"}`` its half width and height, ``"rms"`` the rim
    points' RMS distance from it, all in half eye widths; None with fewer
    than 12 rays kept or a fit that is not finite."""
    P, dip, c, e = lens_rim(photo, lm, side)
    if not (np.isfinite(e) and e > 0.0):
        return None
    ref = float(median(dip[dip > 0])) if np.any(dip > 0) else 0.0
    keep = dip >= 0.3 * ref
    if ref <= 0.0 or np.count_nonzero(keep) < 12:
        return None
    Q, w = P[keep], np.clip(dip[keep] / ref, 0.0, 1.0)
    lo, hi = np.array([-np.inf, -np.inf, 0.2 * e, 0.2 * e, 0.0]), np.array([np.inf, np.inf, 5 * e, 5 * e, 1.0])
    th = np.clip(np.array([c[0], c[1] + 0.1 * e, 0.5 * np.ptp(Q[:, 0]), 0.5 * np.ptp(Q[:, 1]), 0.5]), lo, hi)
    probe = np.eye(5) * _JAC_STEP
    for _ in range(LENS_FIT_STEPS):
        d = _box_distance(Q, np.vstack([th, th + probe]))
        r, J = d[0], ((d[1:] - d[0]) / _JAC_STEP).T
        scale = max(1.5 * float(median(np.abs(r))), 1e-4)
        wr = w * np.minimum(1.0, scale / np.maximum(np.abs(r), 1e-9))
        A = J * wr[:, None]
        step = np.linalg.solve(A.T @ J + 1e-6 * np.eye(5), -(A.T @ r))
        th = np.clip(th + step, lo, hi)
        if not np.isfinite(th).all():
            return None
        if np.abs(step).max() < 1e-6:
            break
    rms = float(np.sqrt(np.average(_box_distance(Q, th) ** 2, weights=w)))
    if not np.isfinite(rms):
        return None
    return {"a": th[2] / e, "b": th[3] / e, "rms": rms / e}


def lens_aspect(photo: Photo, lm) -> float | None:
    """The lenses' height over their width in the photo: the median of the
    two lenses' fits (:func:`lens_fit`) within :data:`LENS_FIT_RMS`, kept
    within :data:`LENS_ASPECT_RANGE`; None where neither fits (then
    :data:`LENS_ASPECT`). On the photos of clear glasses whose lenses two
    labellers by eye called alike (session 41, ``/tmp/s41/glab``), held out:
    medians 0.67 for lenses called flat (22 of 22 fitted), 0.74 medium
    (58 of 58), 0.89 tall (8 of 8); training 0.61, 0.79, 0.90."""
    got = []
    for side in (0, 1):
        fit = lens_fit(photo, lm, side)
        if fit is not None and fit["rms"] < LENS_FIT_RMS and fit["a"] > 0:
            got.append(fit["b"] / fit["a"])
    return clamp(float(np.median(got)), *LENS_ASPECT_RANGE) if got else None


def lens_size(half_eye: float, aspect: float, eye_scale: float = 1.0) -> tuple[float, float]:
    """(``glasses.lens_w``, ``glasses.lens_h``): a lens :data:`LENS_HALF_WIDTH`
    times ``half_eye / eye_scale`` wide (the photo's half eye width: a
    drawn eye's over the style's ``eye_scale``) and ``aspect`` as tall,
    within :data:`LENS_W_RANGE` and :data:`LENS_H_RANGE`; a lens taller
    than the schema's height allows is drawn smaller, in its own shape."""
    w = clamp(min(LENS_HALF_WIDTH * half_eye / eye_scale, LENS_H_RANGE[1] / aspect), *LENS_W_RANGE)
    return w, clamp(aspect * w, *LENS_H_RANGE)


def _glasses_shape(st, p, lm, g, photo: Photo, bridge: float, sunglasses: bool = False) -> None:
    """Frame colour (the darkest pixels of the bridge band), lens size from
    the drawn eye's width (:data:`LENS_HALF_WIDTH`), its height from the
    lenses' rims (:func:`lens_aspect` on the photo's landmarks ``lm``; not
    on sunglasses: :data:`LENS_ASPECT`), frame width from the bridge's
    line strength."""
    ex = photo.to_img(0.5 * (g["eye_l"]["center"] + g["eye_r"]["center"]))
    px = photo.region_pixels(ex + np.array([(-0.05, -0.12), (0.05, -0.12), (0.05, 0.0), (-0.05, 0.0)]))
    if len(px) >= 6:
        y = luma_of(px)
        fc = median(px[y <= percentile(y, 15)], 0)
        set_rgb(p, "glasses", clip(fc * 0.8, 0, 1), prefix="frame_")
    geo = np.asarray(g.get("geo", lm), np.float64)[:, :2]  # the drawn face (the photo's own without a warp)
    # (the lens as many of the drawn eye's widths as the photo's lenses are of its eyes')
    e = 0.25 * sum(float(norm(geo[side_index("eye_outer", s)] - geo[side_index("eye_inner", s)])) for s in (0, 1))
    # (sunglasses' dark lenses show no rim line against them: their height is the median's; the tint cue
    # alone is no guide: it reads many clear glasses under MASK_SUN_TINT)
    if not sunglasses and "lens_aspect" not in g:  # (measured once a face: the hybrid asks for the shape again)
        g["lens_aspect"] = lens_aspect(photo, lm)
    aspect = LENS_ASPECT if sunglasses or g["lens_aspect"] is None else g["lens_aspect"]
    p[S.index("glasses.lens_w")], p[S.index("glasses.lens_h")] = lens_size(e, aspect)
    p[S.index("glasses.frame_width")] = clamp(0.006 + 0.04 * (bridge - 0.1), 0.006, 0.02)
    p[S.index("glasses.roundness")] = 0.5


#: the beard cues' grid over the lower face (columns, rows): from the nose's
#: bottom to a quarter of the lip-chin drop below the chin, 1.9 mouth widths
#: wide. A cell's four cues against the upper cheeks tell where the lower
#: face differs from them, which regions' medians cannot: a white beard is
#: not darker than the cheeks, it is greyer and rougher, and only below the
#: mouth (a linear model over these cells and the regions' cues: held-out
#: ROC AUC 0.84 -> 0.91 on 3,510 labelled photos, session 12)
BEARD_GRID = (3, 3)


def beard_grid(lm, photo: Photo, ref: tuple, ref_tex: float) -> list[float]:
    """Per cell of :data:`BEARD_GRID` (row by row) against the upper cheeks'
    pixels (``ref``: :func:`_ref_cues`) and fine texture ``ref_tex``: darkness (mean L*
    against the cheeks' median, / 20), loss of chroma (/ 20), texture ratio
    (log) and L* spread ratio (log); zeros for a cell with fewer than 4
    valid pixels. Read at half the crop's resolution (2x2 means; the
    texture measured at full resolution)."""
    nx, ny = BEARD_GRID
    lm = np.asarray(lm, np.float64)
    ml, mr = lm[side_index("mouth_corner", 0)], lm[side_index("mouth_corner", 1)]
    cx, hw = 0.5 * (ml[0] + mr[0]), 0.95 * abs(mr[0] - ml[0])
    chin = lm[CHIN_BOTTOM][1]
    k = nx * ny
    out = np.zeros((k, 4))
    grid = _grid_cells(photo, (cx - hw, cx + hw, lm[NOSE_BOTTOM][1], chin + 0.25 * (chin - lm[LOWER_LIP_BOTTOM][1])),
                       nx, ny)
    if grid is None:
        return out.ravel().tolist()
    _, pool, valid, cell, n = grid
    out[:] = _cell_cues(pool, valid, cell, n, photo, ref, ref_tex)
    return out.ravel().tolist()


def _ref_cues(ref_px: np.ndarray) -> tuple[float, float, float]:
    """The upper cheeks' pixels' median L*, chroma of the median a*, b*, and
    L* spread: what the lower face's cells are measured against."""
    ref = to_lab(ref_px)
    return median(ref[:, 0]), float(np.hypot(median(ref[:, 1]), median(ref[:, 2]))), float(np.std(ref[:, 0]))


def _cell_cues(pool, valid, cell, n, photo: Photo, ref: tuple, ref_tex: float) -> np.ndarray:
    """Per cell (``len(n)``) of pooled crop pixels (``pool``, ``valid``,
    ``cell``: as :func:`_grid_cells` gives them) the four cues of
    :func:`beard_grid` against the cheeks' ``ref`` (:func:`_ref_cues`) and
    texture ``ref_tex``; zeros for a cell of fewer than 4 pixels."""
    k = len(n)
    lab = to_lab(masked(pool(photo.rgb), valid))
    m = np.maximum(n, 1.0)
    big_l, big_a, big_b = (np.bincount(cell, lab[:, i], k) / m for i in range(3))
    sd = np.sqrt(np.maximum(np.bincount(cell, lab[:, 0] ** 2, k) / m - big_l ** 2, 0.0))
    tex = np.bincount(cell, pool(photo.highpass)[valid], k) / (np.bincount(cell, pool(photo.luma)[valid], k) + 0.06 * m)
    r_l, r_c, r_sd = ref
    out = np.stack([(r_l - big_l) / 20.0, (r_c - np.hypot(big_a, big_b)) / 20.0,
                    np.log((tex + 1e-3) / (ref_tex + 1e-3)), np.log((sd + 1.0) / (r_sd + 1.0))], 1)
    out[n < 4] = 0.0
    return out


#: the beard fan's rows (:func:`beard_fan`): from the nose's bottom to the
#: mouth corners, to the lower lip's bottom, to just above the chin's bottom
FAN_ROWS = 3
#: the fan's columns per side: these fractions of the way from the face's
#: middle to its outline (the outermost stops short of the outline, where
#: the background or the neck's shadow begins)
FAN_COLUMNS = (0.0, 0.35, 0.65, 0.92)


def beard_fan(lm, photo: Photo, ref: tuple, ref_tex: float) -> list[float]:
    """The lower face cut into cells that follow its outline
    (:data:`FAN_ROWS` rows by the :data:`FAN_COLUMNS` columns on each side),
    each cell's four cues of :func:`beard_grid` against the upper cheeks
    (``ref``: :func:`_ref_cues`, ``ref_tex``); the cells' cues averaged over
    the two sides, then their minimum over the two sides (a beard is on both
    sides; a shadow or a turned head darkens one); a cell that one side does
    not show (fewer than 4 pixels: cut by the frame, the far side of a
    turned head) takes the other side's cues. Where :data:`BEARD_GRID`
    stops at the mouth's width, the fan reaches the jaw's sides: bare jaw
    sides under a dark chin are a goatee (session 21, out of fold over the
    353 photos labelled with a beard style, held-out ones included: goatees
    told from full beards and stubble at ROC AUC 0.76 without the fan, 0.86
    with it). Zeros where the lower face is not in the crop."""
    lm = np.asarray(lm, np.float64)
    ncol = len(FAN_COLUMNS) - 1
    per_side = FAN_ROWS * ncol
    zeros = [0.0] * (2 * 4 * per_side)
    ys = np.array([lm[NOSE_BOTTOM][1], 0.5 * (lm[MOUTH_CORNERS[0]][1] + lm[MOUTH_CORNERS[1]][1]),
                   lm[LOWER_LIP_BOTTOM][1], lm[CHIN_BOTTOM][1] - 0.01])
    if not (np.diff(ys) > 1e-3).all():
        return zeros
    mid = 0.5 * (lm[CHIN_BOTTOM][0] + lm[NOSE_BOTTOM][0])
    outlines = [lm[list(o)] for o in LOWER_OUTLINE]
    grid = _grid_cells(photo, (min(o[:, 0].min() for o in outlines), max(o[:, 0].max() for o in outlines),
                               ys[0], ys[-1]), 1, 1)
    if grid is None:
        return zeros
    win, pool, valid, _, _ = grid
    cx = photo.gx.ravel()[win[1]].reshape(-1, 2).mean(1)  # the pooled pixels' centres
    cy = photo.gy.ravel()[win[0]].reshape(-1, 2).mean(1)
    row = np.searchsorted(ys, cy, side="right") - 1  # (rows,)
    side = (cx >= mid).astype(np.intp)  # (cols,)
    # each pooled pixel's fraction of the way from the middle to its side's outline at its height
    by_y = [o[np.argsort(o[:, 1])] for o in outlines]
    edge = np.stack([np.interp(cy, o[:, 1], o[:, 0]) for o in by_y])
    reach = edge[side].T - mid  # (rows, cols)
    # (where the outline meets the middle, no column: the row's pixels are left out)
    apart = np.abs(reach) > 1e-6
    t = np.where(apart, (cx[None, :] - mid) / np.where(apart, reach, 1.0), np.inf)
    col = np.searchsorted(FAN_COLUMNS, t, side="right") - 1
    inside = valid & (row[:, None] >= 0) & (row[:, None] < FAN_ROWS) & (col >= 0) & (col < ncol)
    if np.count_nonzero(inside) < 4:
        return zeros
    cell_map = side[None, :] * per_side + row[:, None] * ncol + col
    cell = cell_map[inside]
    n = np.bincount(cell, minlength=2 * per_side).astype(np.float64)
    cues = _cell_cues(pool, inside, cell, n, photo, ref, ref_tex).reshape(2, per_side, 4)
    # a cell one side does not show (cut by the frame, the far side of a turned head) takes the
    # other side's cues: its zeros ("as the cheeks") would read as a bare jaw there
    seen = n.reshape(2, per_side) >= 4
    for s_ in (0, 1):
        only_other = ~seen[s_] & seen[1 - s_]
        cues[s_, only_other] = cues[1 - s_, only_other]
    return np.concatenate([cues.mean(0).ravel(), cues.min(0).ravel()]).tolist()


def facial_hair_features(st, lm, g, photo: Photo) -> dict:
    """Per region (chin, jaw sides, upper lip) against the upper cheeks:
    relative darkness, texture ratio (log) and loss of skin chroma; the
    cells of :func:`beard_grid` (``"grid"``) and of :func:`beard_fan`
    (``"fan"``)."""
    L = lambda name, s: lm[side_index(name, s)]  # noqa: E731
    lip, chin = lm[LOWER_LIP_BOTTOM], lm[CHIN_BOTTOM]
    regions = {
        "ref": [lm[list(CHEEK_PATCH[0])], lm[list(CHEEK_PATCH[1])]],
        "chin": [np.array([lip + (-0.11, 0.04), lip + (0.11, 0.04), chin + (0.09, -0.05), chin + (-0.09, -0.05)])],
        "jaw": [np.array([L("mouth_side", 0) + (-0.02, 0.05), lip + (-0.14, 0.06),
                          L("chin_side", 0) + (0.03, -0.04), L("jaw", 0) + (0.05, -0.03)]),
                np.array([L("mouth_side", 1) + (0.02, 0.05), lip + (0.14, 0.06),
                          L("chin_side", 1) + (-0.03, -0.04), L("jaw", 1) + (-0.05, -0.03)])],
        "must": [np.array([lm[NOSE_BOTTOM] + (-0.09, 0.025), lm[NOSE_BOTTOM] + (0.09, 0.025), lm[0] + (0.09, -0.012),
                           lm[0] + (-0.09, -0.012)])],
    }
    stats = {}
    for k, polys in regions.items():
        win, m = photo.region(*polys)
        if np.count_nonzero(m) < 6:
            return {}
        px = masked(photo.rgb[win], m)
        y = photo.luma[win][m]
        lab = to_lab(median(px, 0))
        y_med = median(y)
        stats[k] = (float(y_med), photo.region_texture(win, m),
                    float(np.hypot(lab[1], lab[2])))
        if k in ("chin", "must"):  # the darker half: the colour of the hair there, if any
            g[f"{k}_dark_rgb"] = median(px[y <= y_med], 0)
        elif k == "ref":
            ref_px = px
    ref = stats["ref"]
    out = {}
    for k in ("chin", "jaw", "must"):
        y, t, c = stats[k]
        out[k] = (float((ref[0] - y) / max(ref[0], 0.05)), float(np.log((t + 1e-3) / (ref[1] + 1e-3))),
                  float((ref[2] - c) / 20.0))
    ref_cues = _ref_cues(ref_px)
    out["grid"] = beard_grid(lm, photo, ref_cues, ref[1])
    out["fan"] = beard_fan(lm, photo, ref_cues, ref[1])
    return out


def facial_hair_evidence(st, lm, g, photo: Photo) -> dict | None:
    """The facial-hair cues (``g["beard_features"]``) and, for the beard and
    the moustache, (probability, drawing threshold) of the fitted detector
    over them, or None where no detector for these cues is fitted
    (``g["beard_prob"]`` the probabilities); None when the lower face is not
    in the crop, or is covered by a face mask (``g["cheeks_covered"]``)."""
    if g.get("cheeks_covered"):  # a face mask covers the lower face (colour.skin_colour): nothing to read
        g["beard_features"] = {}
        return None
    f = facial_hair_features(st, lm, g, photo)
    g["beard_features"] = f
    if not f:
        return None
    x = beard_vector(f)
    dets = detectors()
    out = {k: _reading(dets.get(k), x) for k in ("beard", "moustache")}
    g["beard_prob"] = tuple(None if out[k] is None else out[k][0] for k in ("beard", "moustache"))
    return out


def _reading(det: dict | None, x: np.ndarray, finite: bool = False) -> tuple[float, float] | None:
    """(probability of yes, drawing threshold) of a two-class fitted detector
    (:func:`detectors`' entry, or None) for the cue vector ``x``; None without
    a detector, for a detector of another cue vector (an older artist's), or,
    with ``finite``, for cues that are not all finite."""
    if det is None or len(det["mean"]) != len(x) or (finite and not np.isfinite(x).all()):
        return None
    return float(probabilities(det, x)[1]), float(det["thresholds"]["yes"])


def goatee_evidence(f: dict) -> tuple[float, float] | None:
    """(probability, drawing threshold) of the fitted goatee detector (the
    chin's hair with the jaw's sides bare, against a full beard or stubble)
    over a beard's cues ``f`` (:func:`facial_hair_features`), or None where
    no detector for these cues is fitted or the cues are not measured. Asked
    only of a beard that is drawn: it decides its shape, not whether it is
    there (``avatarizer-export detectors``, task ``goatee``: logistic, on the
    beard styles labelled by eye, threshold chosen for precision)."""
    if not f or "fan" not in f:
        return None
    return _reading(detectors().get("goatee"), goatee_vector(f), finite=True)


def is_goatee(evidence) -> bool:
    """Whether a drawn beard is drawn as a goatee: the goatee detector's
    probability (``evidence``: :func:`goatee_evidence`'s pair, or None) at
    or past its threshold."""
    return evidence is not None and evidence[0] >= evidence[1]


def beard_opacity(prob: float, threshold: float) -> float:
    """A drawn beard's opacity from its detector: as sure as the detector is,
    its probability across [threshold, 1] onto [0.7, 0.95] (at 0.5 a white
    beard over the skin drew as a pink shadow)."""
    return clamp(0.7 + 0.25 * (prob - threshold) / max(1.0 - threshold, 1e-6), 0.7, 0.95)


#: the artist draws no beard or moustache on a face its age estimate
#: (:func:`age_estimate`) puts under this many years: on the UTKFace photos of
#: children under 13 it drew 10 beards in 3,250 faces (the chin of a baby, a
#: toddler's shadowed jaw), the 7 whose estimate the hair step had made at
#: 0.4-7.4 years, and
#: on the 345 photos labelled bearded (shared labels and labels by eye) every
#: one of its 280 beards at 13.4 or more (session 25, ``estimator="artist"``)
NO_FACIAL_HAIR_AGE = 10.0


# ------------------------------------------------------------ facial hair's colour
#: a chin pixel below this CIELAB chroma (or 0.55 of the skin's, if more)
#: is grey hair (or a shadow), and a
#: beard whose grey pixels' median L* is above :data:`BEARD_GREY_L` is grey
#: or white (:func:`sample_beard_rgb`'s rule where no grey-beard detector is
#: fitted; dark beards are below it)
BEARD_GREY_C = 10.0
BEARD_GREY_L = 50.0
#: ... and at least this CIELAB distance from the skin
BEARD_UNLIKE_SKIN = 12.0
#: grey or white facial hair is drawn at this percentile of its grey
#: pixels' L*: its lit strands, not the shadows between them, which have
#: little chroma too (session 40: at the upper quartile, 103 of the 126
#: grey beards labelled by eye and called grey drew as the palette's grey,
#: at the upper decile 113, for as many of the 22 dark ones called grey: 9)
BEARD_LIT_PERCENTILE = 90
#: grey strands whose lit percentile is darker than this L* are not drawn (nor reported) grey: a
#: black goatee, a young man's black beard, that the detector called grey with a scalp read as grey
#: hair, were drawn dark and reported grey (a read-only review, session 70). With the cap below, on the
#: 327 training photos whose drawn facial hair's colour is labelled by eye: grey drawn grey 103 -> 101 of
#: 128, dark drawn dark 181 -> 185 of 199, the colour reported as drawn 283 -> 292 (held out: 34 -> 34 of
#: 38, 38 -> 41 of 43, 66 -> 71 of 81); at 45: grey 96, dark 189 (the cap alone: 102, 184)
BEARD_GREY_MIN_L = 35.0
#: dark facial hair of less than :data:`BEARD_DARK_MAX_C` chroma is drawn at most this light: the chin's
#: pixels least like the skin are partly skin where the hair is short (stubble, a thin beard), and a
#: brown beard came out a light mauve (L* 45-57), grey to the eye; a ginger or blond beard keeps its light
BEARD_DARK_MAX_L = 40.0
BEARD_DARK_MAX_C = 15.0
#: the cues :func:`beard_colour_cues` measures per region (the chin's box, the upper lip's)
BEARD_REGION_CUES = 8
#: the length of :func:`beard_colour_cues`' vector: two regions' and the skin's L* and chroma
BEARD_COLOUR_CUES = 2 * BEARD_REGION_CUES + 2
#: the fewest pixels a region is measured on
_BEARD_MIN_PX = 20


def _beard_boxes(lm: np.ndarray, gx, gy) -> tuple[np.ndarray, np.ndarray]:
    """(the chin's box, the upper lip's box) in the landmarks' canonical
    frame: from the lower lip to below the chin (full beards hang below the
    chin landmark), and between the nose's base and the upper lip, inside
    the mouth's corners (a moustache)."""
    lip, chin = lm[LOWER_LIP_BOTTOM], lm[CHIN_BOTTOM]
    drop = abs(chin[1] - lip[1])
    chin_box = ((np.abs(gx - 0.5 * (lip[0] + chin[0])) < 0.6 * drop + 0.04)
                & (gy > lip[1] + 0.02) & (gy < chin[1] + 0.4 * drop))
    nose, top = lm[NOSE_BOTTOM], lm[UPPER_LIP_TOP]
    left, right = sorted((float(lm[MOUTH_CORNERS[0], 0]), float(lm[MOUTH_CORNERS[1], 0])))
    h = top[1] - nose[1]  # (<= 0 on a face too turned to read: an empty box)
    lip_box = (gx > left + 0.02) & (gx < right - 0.02) & (gy > nose[1] + 0.25 * h) & (gy < top[1] - 0.05 * h)
    return chin_box, lip_box


def _region_cues(lab: np.ndarray, skin: np.ndarray, skin_c: float) -> list[float]:
    """:data:`BEARD_REGION_CUES` numbers of one region's CIELAB pixels against
    the skin's: the share unlike the skin; the lower quartile, median and
    upper quartile of their L* less the skin's; their median chroma, as a
    share of the skin's and as it is; the share of pale low-chroma pixels
    (grey and white strands) and of pixels far darker than the skin (dark
    hair, shadow). NaN with fewer than 20 pixels."""
    if len(lab) < _BEARD_MIN_PX:
        return [float("nan")] * BEARD_REGION_CUES
    c = np.hypot(lab[:, 1], lab[:, 2])
    differs = norm(lab - skin) > BEARD_UNLIKE_SKIN
    unlike = differs if np.count_nonzero(differs) >= 5 else np.ones(len(lab), bool)  # (bare skin: as it is)
    q1, q2, q3 = (float(v) - float(skin[0]) for v in percentile(lab[unlike, 0], [25, 50, 75]))
    cu = float(median(c[unlike]))
    return [float(np.mean(differs)), q1, q2, q3, cu / max(skin_c, 1.0),
            float(np.mean((c < 0.55 * skin_c) & (lab[:, 0] > skin[0] - 25.0))),
            float(np.mean(lab[:, 0] < skin[0] - 30.0)), cu]


def _beard_pixels(crop, landmarks, skin_rgb, valid=None, grid=None):
    """(the chin box's RGB pixels, the upper lip box's, their CIELAB, the
    skin's CIELAB) of an aligned crop (:func:`sample_beard_rgb`)."""
    rgb = float_rgb(crop)
    size = rgb.shape[0]
    lm = np.asarray(landmarks, np.float64)
    if grid is None:
        g = (np.arange(size) + 0.5) * 2.0 / size - 1.0
        gx, gy = g[None, :], g[:, None]
    else:
        gx, gy = grid
    boxes = _beard_boxes(lm, gx, gy)
    if valid is not None:
        boxes = tuple(b & np.asarray(valid, bool) for b in boxes)
    chin, lip = (masked(rgb, b) for b in boxes)
    return chin, lip, to_lab(chin), to_lab(lip), to_lab(np.asarray(skin_rgb, np.float64))


def _colour_cues(chin_lab, lip_lab, skin) -> np.ndarray:
    skin_c = float(np.hypot(skin[1], skin[2]))
    return np.array(_region_cues(chin_lab, skin, skin_c) + _region_cues(lip_lab, skin, skin_c)
                    + [float(skin[0]), skin_c], np.float64)


def beard_colour_cues(crop, landmarks, skin_rgb, valid=None, grid=None) -> np.ndarray:
    """The grey-beard detector's cues (``artist_detectors.json``'s
    ``beard_grey``, fitted on the beard colours labelled by eye by
    ``avatarizer-export detectors``): :func:`_region_cues` of the chin's box
    and of the upper lip's (:func:`_beard_boxes`), the skin's L* and
    chroma; a region with too few pixels NaN. Arguments as
    :func:`sample_beard_rgb`'s."""
    _, _, chin, lip, skin = _beard_pixels(crop, landmarks, skin_rgb, valid, grid)
    return _colour_cues(chin, lip, skin)


def beard_grey_evidence(cues: np.ndarray) -> tuple[float, float] | None:
    """(probability that the facial hair is grey or white, drawing
    threshold) of the fitted grey-beard detector over
    :func:`beard_colour_cues`, or None without one or where a region is not
    measured."""
    return _reading(detectors().get("beard_grey"), np.asarray(cues, np.float64), finite=True)


def sample_beard_rgb(crop, landmarks, skin_rgb, valid=None, grid=None) -> np.ndarray | None:
    """The colour of the facial hair, from the photo; float RGB in [0, 1],
    or None with fewer than 20 pixels in the chin's box (:func:`_beard_boxes`).
    Grey or white where the grey-beard detector says so
    (:func:`beard_grey_evidence`; without it, where at least a quarter of
    the chin's pixels are grey and unlike the skin and their median L* is
    above :data:`BEARD_GREY_L`): drawn as the lit strands look (the upper
    decile of the grey pixels' L*, of the chin and, with the detector, the
    upper lip; under 10 such pixels, of their pixels unlike the skin: grey
    strands a warm light tints), not as their median with the shadows
    between, with half their tint (the
    light's: beside the skin it reads mauve), where those strands are at
    least :data:`BEARD_GREY_MIN_L` light. Else the median of the half of
    the chin's pixels that differ most from the skin (CIELAB), at most
    :data:`BEARD_DARK_MAX_L` light where its chroma is under
    :data:`BEARD_DARK_MAX_C`. Drawn where a
    beard or moustache is drawn (``merge``'s ``beard_rgb``; the artist's
    beards too), so a white beard under a dark hat is not drawn in the hat's
    colour. ``grid``: the canonical (x (1, S), y (S, 1)) of the crop's
    pixels when the crop is not the canonical square (the artist's padded
    photo)."""
    return _facial_hair_colour(crop, landmarks, skin_rgb, valid, grid)[0]


def facial_hair_colour(crop, landmarks, skin_rgb, valid=None, grid=None, grey: bool = True, decide=None
                       ) -> tuple[np.ndarray | None, bool, float | None]:
    """(:func:`sample_beard_rgb`'s colour, whether it is drawn as grey or
    white strands, the grey-beard detector's probability that it is grey
    (None without the detector or the pixels)); with ``grey`` False the
    colour of dark facial hair (the half of the chin's pixels that differ
    most from the skin) even where the facial hair reads grey (the
    hybrid's hair stage, where the rest of the face makes grey facial hair
    unlikely: :func:`avatarizer.hair.grey_beard_plausible`). ``decide``:
    where the detector reads the pixels, a function of its probability
    that says whether they are grey, in place of its own threshold (the
    hybrid's :class:`avatarizer.beardgrey.BeardGreyFusion`, which weighs the hair's colour too)."""
    rgb, is_grey, _, p = _facial_hair_colour(crop, landmarks, skin_rgb, valid, grid, grey_ok=grey, decide=decide)
    return rgb, is_grey, p


def _facial_hair_colour(crop, landmarks, skin_rgb, valid=None, grid=None, grey_ok: bool = True, decide=None
                        ) -> tuple[np.ndarray | None, bool, bool, float | None]:
    """(:func:`sample_beard_rgb`'s colour, whether it is drawn grey, whether
    the grey-beard detector called it grey (False where the hand-set rule
    decided), the detector's probability (None without it)); ``grey_ok``
    and ``decide`` as :func:`facial_hair_colour`'s ``grey`` and ``decide``."""
    px, _, lab, lip, skin = _beard_pixels(crop, landmarks, skin_rgb, valid, grid)
    if len(px) < _BEARD_MIN_PX:
        return None, False, False, None
    d = norm(lab - skin)

    def grey_of(lab_):  # grey: well below the skin's chroma (a warm light tints white hair too), and unlike
        # the skin (in a black-and-white or washed-out photo the skin is grey too)
        return (np.hypot(lab_[:, 1], lab_[:, 2]) < max(BEARD_GREY_C, 0.55 * float(np.hypot(skin[1], skin[2])))) \
            & (norm(lab_ - skin) > BEARD_UNLIKE_SKIN)

    grey = grey_of(lab)
    evidence = beard_grey_evidence(_colour_cues(lab, lip, skin))
    if evidence is None:  # the hand-set rule
        is_grey = np.count_nonzero(grey) >= max(20, 0.25 * len(px)) and median(lab[grey, 0]) > BEARD_GREY_L
        strands = lab[grey]
    else:
        is_grey = bool(decide(evidence[0])) if decide is not None else evidence[0] >= evidence[1]
        strands = np.concatenate([lab[grey], lip[grey_of(lip)]]) if len(lip) else lab[grey]
        if len(strands) < 10:  # (strands tinted by a warm light: the lit part of the pixels unlike the skin)
            both = np.concatenate([lab, lip]) if len(lip) else lab
            strands = both[norm(both - skin) > BEARD_UNLIKE_SKIN]
            is_grey = is_grey and len(strands) >= 10
    p = None if evidence is None else evidence[0]
    if is_grey and grey_ok:
        grey_lab = np.array([percentile(strands[:, 0], BEARD_LIT_PERCENTILE), 0.5 * median(strands[:, 1]),
                             0.5 * median(strands[:, 2])])
        if grey_lab[0] >= BEARD_GREY_MIN_L:
            return from_lab(grey_lab).astype(np.float32), True, evidence is not None, p
    dark = median(px[d >= median(d)], 0)
    dark_lab = to_lab(dark.astype(np.float64))
    if dark_lab[0] > BEARD_DARK_MAX_L and np.hypot(dark_lab[1], dark_lab[2]) < BEARD_DARK_MAX_C:
        dark = np.clip(from_lab(np.array([BEARD_DARK_MAX_L, dark_lab[1], dark_lab[2]])), 0.0, 1.0)
    return np.asarray(dark, np.float32), False, False, p


def network_facial_hair(st, photo: Photo) -> dict | None:
    """``{"beard": (probability, drawing threshold), "moustache": ...}`` of
    the facial-hair network (:mod:`avatarizer.facialhair`, the one the
    hybrid decides with) on the crop seen as the region networks see it
    (:meth:`Photo.network_crop`), each only where its reading is finite;
    None with ``st.facial_hair_network`` off or without the network's files."""
    if not st.facial_hair_network:
        return None
    from .. import facialhair

    net = facialhair.load()
    if net is None:
        return None
    probs = net.probabilities(photo.network_crop())
    return {k: (float(probs[k]), float(net.thresholds[k]["draw"])) for k in ("beard", "moustache")
            if np.isfinite(probs[k])}


def facial_hair(st, p, lm, g, photo: Photo, col):
    """Beard and moustache: chin/jaw and upper-lip regions that are darker,
    more textured and less skin-coloured than the upper cheeks. Whether
    they are drawn: the facial-hair network's reading where it is there
    (:func:`network_facial_hair`: on the held-out photos labelled by eye it
    finds 60 of 86 beards where the detector over the cues below found 41,
    session 47), else that detector's, else the hand-set rule; never on a
    face the artist's age estimate puts under :data:`NO_FACIAL_HAIR_AGE`."""
    ev = facial_hair_evidence(st, lm, g, photo)
    if ev is None:
        return
    net = network_facial_hair(st, photo)
    if net:
        g["facial_hair_by"] = "facial-hair network"
        ev = {**ev, **net}
    lm2 = np.asarray(lm, np.float64)[:, :2]
    # the grey-beard detector's cues, measured when asked (the toolchain's detector fit)
    g["beard_colour_cues"] = lambda skin=col["skin"]: beard_colour_cues(photo.rgb, lm2, skin, photo.valid,
                                                                         grid=(photo.gx, photo.gy))
    beard, must = rule_scores(beard_vector(g["beard_features"]))
    # a fitted detector, where there is one for these cues (light and grey
    # beards too), decides in place of the hand-set rule: its score is the
    # probability past the drawing threshold
    opacity = None
    if ev["beard"] is not None:
        prob, th = ev["beard"]
        beard = 10.0 * (prob - th)
        opacity = beard_opacity(prob, th)
    if ev["moustache"] is not None:
        must = 10.0 * (ev["moustache"][0] - ev["moustache"][1])
    if max(beard, must) > 0.0:  # (the age only where facial hair would be drawn: ~0.5 ms)
        age = g["age"] if g.get("age") is not None else age_estimate(lm, photo.resized(AGE_TEXTURE_SIZE))
        if age is not None and age < NO_FACIAL_HAIR_AGE:
            g["facial_hair_age"] = age  # a child's chin read as a beard: not drawn
            beard, must, opacity = min(beard, 0.0), min(must, 0.0), None
    g["beard_score"] = (beard, must)
    hair = col.get("hair", np.array(P.HAIR_COLORS["dark_brown"]))
    beard_rgb = None
    if beard > 0.0:
        # the chin's hair as it is (white and grey beards too), else the darker chin mixed with the hair
        beard_rgb, g["beard_grey"], _ = facial_hair_colour(photo.rgb, lm2, col["skin"], photo.valid,
                                                           grid=(photo.gx, photo.gy))
        g["beard_rgb"] = beard_rgb
        face = g["face"]
        g["goatee"] = goatee_evidence(g["beard_features"])
        if is_goatee(g["goatee"]):  # the chin's hair, the jaw's sides bare
            P.put(p, "beard", P.goatee_outline(P.pts(p, "lip_lower_outer"), g["chin"]))
        else:
            P.put(p, "beard", P.beard_outline(face, g["geo"][LOWER_LIP_BOTTOM], g["chin"]))
        p[S.index("beard.opacity")] = clamp(0.5 + 0.06 * beard, 0.5, 0.95) if opacity is None else opacity
        set_rgb(p, "beard", gain(st, beard_rgb if beard_rgb is not None
                                 else 0.75 * g.get("chin_dark_rgb", hair) + 0.25 * hair) * 0.9)
    if must > 0.0:
        uo = P.pts(p, "lip_upper_outer").astype(np.float64)
        ms = np.array([uo[0] + (-0.02, 0.0), uo[1] + (0, -0.03), uo[3] + (0, -0.045), uo[5] + (0, -0.03),
                       uo[6] + (0.02, 0.0)])
        P.put(p, "moustache", ms)
        p[S.index("moustache.w0")] = 0.01
        p[S.index("moustache.w1")] = clamp(0.03 + 0.003 * max(must, beard), 0.025, 0.05)
        if beard_rgb is None:  # a moustache alone: grey where the grey-beard detector says so (not the
            # hand-set rule, which reads the chin's box alone), else the upper lip's darker pixels
            grey, _, by_detector, _ = _facial_hair_colour(photo.rgb, lm2, col["skin"], photo.valid,
                                                       grid=(photo.gx, photo.gy))
            beard_rgb = grey if by_detector else None
            g["beard_grey"] = bool(by_detector)  # (drawn as its grey strands: lifted with a dim photo's skin)
        set_rgb(p, "moustache", gain(st, beard_rgb * 1.05 if beard_rgb is not None
                                     else 0.75 * g.get("must_dark_rgb", hair) + 0.25 * hair) * 0.85)


def clothes_rgb(rgb: np.ndarray, person, valid, skin_lab, hair_rgb) -> np.ndarray | None:
    """The clothes' colour in a canonical crop (float RGB ``rgb``, S×S): the
    median of the person's pixels (``person``: its mask, > 0.5; None: every
    pixel) inside the photo (``valid``) in the crop's bottom corners, beside
    the neck, leaving out those within ΔE 15 of the skin (CIELAB
    ``skin_lab``) or the hair (``hair_rgb``) and pure black ones (every
    channel at most :data:`avatarizer.headwear.BLACK_LEVEL`: a letterboxed
    frame's bars, inside the frame but no picture: d0's black jacket was
    read (0, 0, 0) from them, its own pixels about 0.2); None where fewer
    than 10 are left (the crop ends at the chin, bare shoulders)."""
    from ..headwear import BLACK_LEVEL

    size = rgb.shape[0]
    region = _clothes_box(size).copy()
    if valid is not None:
        region &= at_size(np.asarray(valid), size).astype(bool)
    if person is not None:
        region &= at_size(np.asarray(person, np.float32), size) > 0.5
    rgb = np.asarray(rgb)
    # (the channels' maximum elementwise: ndarray.max over the last, 3-long axis costs 20x as much, 1.2 ms a
    # 192-px crop, the same values)
    region &= np.maximum(np.maximum(rgb[..., 0], rgb[..., 1]), rgb[..., 2]) > (BLACK_LEVEL + 0.5) / 255.0
    # (half a level: float32's 3/255 rounds up)
    px = masked(rgb, region)
    if len(px) < 20:
        return None
    lab = to_lab(px)
    far = (norm(lab - np.asarray(skin_lab, np.float64)) > 15) & \
        (norm(lab - to_lab(np.asarray(hair_rgb, np.float64))) > 15)
    return median(px[far], 0) if np.count_nonzero(far) >= 10 else None


def clothes(st, p, g, photo: Photo, col):
    measured = clothes_rgb(photo.rgb, photo.hair, photo.valid, col["skin_lab"], col["hair"])
    set_rgb(p, "clothes", P.CLOTHES[0] if measured is None else measured)


@lru_cache(maxsize=8)
def _clothes_box(size: int) -> np.ndarray:
    """The crop's bottom corners, where the clothes show (read-only; per crop size)."""
    c = pixel_centres(size)
    box = (c[:, None] > 0.88) & (np.abs(c[None, :]) > 0.45)
    box.setflags(write=False)
    return box


# ------------------------------------------------------------ fitted detectors
_DETECTORS_PATH = Path(__file__).resolve().parent.parent / "data" / "artist_detectors.json"


@lru_cache(maxsize=1)
def detectors() -> dict:
    """The artist's accessory detectors over the measured cues above
    (``data/artist_detectors.json``, fitted on the labelled training photos
    by ``avatarizer-export detectors``; thresholds chosen for precision: an
    invented accessory is worse than a missed one): logistic models, or
    small networks (``"kind": "mlp"``: an ensemble of one-hidden-layer ReLU
    networks whose softmaxes are averaged; the beard, moustache and glasses
    detectors), their weights as arrays. Empty when the file is absent (the
    hand-set rules then decide), and also, with a warning, when it is there
    but unreadable; a detector whose weights do not fit together is left
    out, with a warning (a cut file changed ages, glasses and hair colours
    silently: a review, session 66)."""
    import warnings

    if not _DETECTORS_PATH.is_file():
        return {}
    try:
        doc = json.loads(_DETECTORS_PATH.read_text(encoding="utf-8"))
        dets = doc.get("detectors") if isinstance(doc, dict) else None
        if not isinstance(dets, dict):
            raise ValueError("no detectors in it")
    except (OSError, ValueError, RecursionError) as exc:  # (RecursionError: JSON nested too deep to parse)
        warnings.warn(f"{_DETECTORS_PATH} is not used ({type(exc).__name__}: {exc}); the artist's hand-set "
                      "rules decide its accessories and age", RuntimeWarning, stacklevel=2)
        return {}
    out = {}
    for name, model in dets.items():
        try:
            out[name] = _checked(model, name)
            out[name]["raw"] = model  # as written: for detector_key, when asked
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            warnings.warn(f"{_DETECTORS_PATH}: its {name!r} detector is not used ({type(exc).__name__}: {exc})",
                          RuntimeWarning, stacklevel=2)
            continue
    return out


def loaded_detector_key(name: str) -> str | None:
    """:func:`detector_key` of the detector ``name`` :func:`detectors`
    loaded (None without one): hashed when first asked (the hybrid's glasses
    fusion checks the network it was fitted with), not at every load (~22
    ms for all of them)."""
    m = detectors().get(name)
    if m is None:
        return None
    if "key" not in m:
        m["key"] = detector_key(m["raw"])
    return m["key"]


def detector_key(model: dict) -> str:
    """A fitted detector's identity as written in the detectors file: the
    hash of its weights (what the glasses fusion names the network it was
    fitted with)."""
    import hashlib

    return hashlib.sha1(json.dumps({k: model[k] for k in ("mean", "scale", "members", "W", "b") if k in model},
                                   sort_keys=True).encode()).hexdigest()


#: classes of each detector the artist reads, and its drawing thresholds' names
_CLASSES = {"glasses": 3, "beard": 2, "moustache": 2, "headwear": 2, "hair_colour": 5, "bald": 2}
_THRESHOLDS = {"glasses": ("clear", "sun"), "beard": ("yes",), "moustache": ("yes",), "headwear": ("yes",), "bald": ("yes",)}


def _array(v, ndim: int) -> np.ndarray:
    a = np.asarray(v, np.float64)
    if a.ndim != ndim or not np.isfinite(a).all():
        raise ValueError("weights of the wrong rank or not finite")
    return a


def _feature_count(name: str | None) -> int | None:
    """How many features the code computes for detector ``name``'s input
    (None: not checked here): a file fitted on another feature set would
    fail at its first photo (a broadcast error in every ``from_frame``)."""
    if name == "hair_colour":
        return HAIR_COLOUR_FEATURES
    if name == "age":
        return AGE_FEATURES
    return None


#: the side the crop is read at for the age regressor's texture grid, and
#: the grid's cells (8 x 8 px each, of 16 x 16) it reads: canonical y from
#: -0.5 (the top of the forehead) to 0.75 (below the chin), x from -0.625 to
#: 0.625 (the cells above lie outside most of UTKFace's tight crops, where
#: the aligner's border fill would have been learned; a review, session 23)
AGE_TEXTURE_SIZE = 128
AGE_CELLS = (slice(4, 14), slice(3, 13))
#: every AGE_LANDMARK_STEP-th canonical landmark is read (120 of 478: on
#: UTKFace's 8,772 training photos, 5-fold, mean absolute error 9.48 years
#: against 9.18 with all of them)
AGE_LANDMARK_STEP = 4
#: the age regressor's inputs: those landmarks' x and y, and the log of the
#: crop's fine luminance detail (wrinkles, skin texture) per cell
AGE_FEATURES = 2 * len(range(0, 478, AGE_LANDMARK_STEP)) + 10 * 10


def age_vector(canonical, crop) -> np.ndarray:
    """The artist's age regressor's input (:data:`AGE_FEATURES` values)
    for a face's canonical landmarks (478 x 2 or 3) and its aligned crop
    (S x S x 3, uint8 or float in [0, 1]; read at :data:`AGE_TEXTURE_SIZE`
    px): a face's proportions change with age (a child's eyes sit low in a
    large skull), and its skin's fine detail (wrinkles)."""
    c = np.asarray(crop)
    c = c.astype(np.float32) / 255.0 if c.dtype == np.uint8 else c.astype(np.float32)
    if c.shape[0] != AGE_TEXTURE_SIZE:
        c = cv2.resize(c, (AGE_TEXTURE_SIZE, AGE_TEXTURE_SIZE), interpolation=cv2.INTER_AREA)
    y = c[..., :3] @ np.array([0.299, 0.587, 0.114], np.float32)
    detail = np.abs(y - cv2.GaussianBlur(y, (0, 0), 1.0))
    n = AGE_TEXTURE_SIZE // 16
    grid = detail.reshape(16, n, 16, n).mean((1, 3))[AGE_CELLS]
    lm = np.asarray(canonical, np.float64)[:478:AGE_LANDMARK_STEP, :2]
    return np.concatenate([lm.ravel(), np.log(grid.astype(np.float64).ravel() + 1e-3)])


def age_estimate(canonical, crop) -> float | None:
    """The artist's estimate of a face's age in years (a ridge regression
    over :func:`age_vector`, fitted on UTKFace's ages by ``avatarizer-export
    detectors``), or None without a fitted regressor or with a non-finite
    input."""
    model = detectors().get("age")
    if model is None:
        return None
    x = age_vector(canonical, crop)
    if not np.isfinite(x).all():
        return None
    return float(age_years(model, x))


def age_years(model, x) -> np.ndarray:
    """Years from an age regressor (``detectors()["age"]``, or as fitted:
    lists) for one :func:`age_vector` or rows of them: log(1 + years) is
    linear in the standardised vector; clipped to [0, 100]."""
    z = (np.asarray(x, np.float64) - np.asarray(model["mean"], np.float64)) / np.asarray(model["scale"], np.float64)
    return np.clip(np.expm1(z @ np.asarray(model["w"], np.float64) + float(model["b"])), 0.0, 100.0)


def gray_ratio(prior, age) -> float:
    """The grey-hair ratio of the age band ``age`` falls in, from an age
    prior of the hair-colour classifier (``bins`` and ``gray``,
    :func:`_age_prior`'s form); 1.0 without the prior or a finite age."""
    if prior is None or age is None or not np.isfinite(age):
        return 1.0
    i = int(np.searchsorted(np.asarray(prior["bins"], np.float64), float(age), side="right"))
    return float(prior["gray"][min(i, len(prior["gray"]) - 1)])


def artist_gray_ratio(age: float | None) -> float:
    """How much likelier grey hair is at the artist's ``age`` estimate
    than over the hair-colour classifier's training photos, never above 1
    (its ``artist_age_prior``: the estimate reads older people younger than
    they are, so it only lowers grey where the face looks young); 1.0
    without a prior or an age."""
    return min(gray_ratio((detectors().get("hair_colour") or {}).get("artist_age_prior"), age), 1.0)


#: The length of :func:`avatarizer.hair.hair_colour_features` (the hair-colour
#: detector's input; a number here, not a call: the hair module imports this
#: one; a test checks they agree)
HAIR_COLOUR_FEATURES = 22


def _age_prior(prior) -> dict:
    """The hair-colour classifier's ``age_prior`` checked (ValueError when
    not as :func:`avatarizer.hair.age_gray_ratio` reads it): ``bins``
    (increasing ages) and ``gray`` (one ratio per band, one more than the
    bins), finite numbers, none negative."""
    if not isinstance(prior, dict):
        raise ValueError("hair_colour: age_prior is not a mapping")
    bins, gray = prior.get("bins"), prior.get("gray")
    if not (isinstance(bins, list) and isinstance(gray, list)) or not all(
            is_real(v) for v in bins + gray):  # (is_real: finite too)
        raise ValueError("hair_colour: age_prior's bins and gray are not lists of numbers")
    b, g = np.asarray(bins, np.float64), np.asarray(gray, np.float64)
    if len(g) != len(b) + 1 or (b < 0).any() or (g < 0).any() or (np.diff(b) <= 0).any():
        raise ValueError("hair_colour: age_prior's bins and gray do not fit together")
    return {**prior, "bins": b, "gray": g}


def _checked(model: dict, name: str | None = None) -> dict:
    """``model`` with its weights as float64 arrays, checked to fit together
    and to be finite, with ``name``'s number of classes and drawing
    thresholds (finite, in [0, 1]) where ``name`` is a detector the artist
    reads, and as many inputs as the code computes for it (hair colour and
    headwear; the hair colour's ``age_prior`` checked too), ValueError,
    KeyError, TypeError or AttributeError when not."""
    m = dict(model)
    mean, scale = _array(m["mean"], 1), _array(m["scale"], 1)
    if scale.shape != mean.shape or not (scale > 0).all():
        raise ValueError("mean and scale")
    n = _feature_count(name)
    if name == "headwear":  # its pixel block's projection (hat_inputs), then as many inputs as it gives
        from ..headwear import PIXEL_COUNT

        px = m["pixels"]
        pm, ps, basis = _array(px["mean"], 1), _array(px["scale"], 1), _array(px["basis"], 2)
        if pm.shape != (PIXEL_COUNT,) or ps.shape != pm.shape or not (ps > 0).all() or basis.shape[0] != PIXEL_COUNT:
            raise ValueError("headwear: pixel projection")
        m["pixels"] = {"mean": pm, "scale": ps, "basis": basis}
        n = HAT_CUES + basis.shape[1]
    if n is not None and len(mean) != n:
        raise ValueError(f"{name}: {len(mean)} inputs, the code computes {n}")
    m["mean"], m["scale"] = mean, scale
    kind = m.get("kind", "logistic")
    if kind == "mlp":
        members = []
        for mem in m["members"]:
            W1, b1, W2, b2 = _array(mem["W1"], 2), _array(mem["b1"], 1), _array(mem["W2"], 2), _array(mem["b2"], 1)
            if W1.shape != (len(b1), len(mean)) or W2.shape != (len(b2), len(b1)):
                raise ValueError("layer shapes")
            members.append((W1, b1, W2, b2))
        if not members or len({(mem[1].shape, mem[3].shape) for mem in members}) != 1:
            raise ValueError("members")
        m["members"] = members
        # the members stacked: one batched product per layer (~0.1 ms a call less than one by one)
        m["stacked"] = tuple(np.stack([mem[i] for mem in members]) for i in range(4))
        k = len(members[0][3])
    elif kind == "logistic":
        m["W"], m["b"] = _array(m["W"], 2), _array(m["b"], 1)
        if m["W"].shape != (len(m["b"]), len(mean)):
            raise ValueError("W and b")
        k = len(m["b"])
    elif kind == "ridge" and name in (None, "age"):  # a regression: the age (log1p years)
        m["w"], m["b"] = _array(m["w"], 1), float(m["b"])
        if m["w"].shape != mean.shape or not np.isfinite(m["b"]):
            raise ValueError("w and b")
        k = 1
    else:
        raise ValueError(f"unknown kind {kind!r}")
    if name == "age" and kind != "ridge":  # (age_estimate reads a ridge regression's w and b)
        raise ValueError(f"age: a {kind} model, not a ridge regression")
    if name in _CLASSES and k != _CLASSES[name]:
        raise ValueError(f"{name}: {k} classes, not {_CLASSES[name]}")
    if name in _THRESHOLDS:
        th = {t: float(m["thresholds"][t]) for t in _THRESHOLDS[name]}
        if not all(0.0 <= v <= 1.0 for v in th.values()):  # (NaN fails too)
            raise ValueError(f"{name}: thresholds outside [0, 1]")
        m["thresholds"] = {**m["thresholds"], **th}
        if name == "bald" and "bare_top" in m["thresholds"]:  # (optional: the bare-top band's floor)
            r = float(m["thresholds"]["bare_top"])
            if not 0.0 <= r <= th["yes"]:  # (NaN fails too)
                raise ValueError("bald: the bare_top threshold is outside [0, the bald threshold]")
            m["thresholds"]["bare_top"] = r
    if name == "hair_colour" and "min_prob" in m:
        m["min_prob"] = float(m["min_prob"])
        if not 0.0 <= m["min_prob"] <= 1.0:
            raise ValueError("hair_colour: min_prob outside [0, 1]")
    if name == "hair_colour" and "age_prior" in m:
        m["age_prior"] = _age_prior(m["age_prior"])
    if name == "hair_colour" and "artist_age_prior" in m:
        m["artist_age_prior"] = _age_prior(m["artist_age_prior"])
    return m


def _softmax(lg: np.ndarray) -> np.ndarray:
    e = np.exp(lg - lg.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def probabilities(model: dict, x) -> np.ndarray:
    """Class probabilities of one detector (as :func:`detectors` gives it,
    or as fitted: lists) for the feature vector ``x`` (k,), or for each row
    of ``x`` (n, k)."""
    if not isinstance(model.get("mean"), np.ndarray):
        model = _checked(model)
    z = (np.asarray(x, np.float64) - model["mean"]) / model["scale"]
    if model.get("kind", "logistic") == "mlp":
        W1, b1, W2, b2 = model["stacked"]  # (M, h, d), (M, h), (M, k, h), (M, k)
        h = np.maximum(np.matmul(z[..., None, None, :], W1.transpose(0, 2, 1))[..., 0, :] + b1, 0.0)  # (..., M, h)
        lg = np.matmul(h[..., None, :], W2.transpose(0, 2, 1))[..., 0, :] + b2  # (..., M, k)
        return _softmax(lg).mean(-2)
    return _softmax(z @ model["W"].T + model["b"])


def glasses_vector(g) -> np.ndarray:
    bridge, rim, tint = g["glasses_score"]
    sclera, detail = g.get("glasses_extra", (1.0, 0.3))
    return np.array([bridge, rim, tint, sclera, detail, np.log(tint + 0.05), np.log(sclera + 0.05)])


def glasses_detector_vector(g) -> np.ndarray:
    """The artist's glasses detector's input: :func:`glasses_vector` (the
    seven cues the runtime's fusion reads too) and the eyes' grid
    (:func:`glasses_grid`, ``g["glasses_grid"]``)."""
    return np.concatenate([glasses_vector(g), np.asarray(g["glasses_grid"], np.float64)])


def beard_vector(f) -> np.ndarray:
    v = [*f["chin"], *f["jaw"], *f["must"]]
    return np.array(v + [abs(f["chin"][0]), abs(f["jaw"][0]), abs(f["must"][0])] + list(f["grid"]))


def goatee_vector(f) -> np.ndarray:
    """The goatee detector's input: :func:`beard_vector` and the cells of
    :func:`beard_fan`, which reach the jaw's sides."""
    return np.concatenate([beard_vector(f), np.asarray(f["fan"], np.float64)])


def rule_scores(x) -> tuple[float, float]:
    """The hand-set rule's (beard, moustache) scores (> 0: drawn) of a
    :func:`beard_vector`: the sums of its chin + jaw (beard) and upper lip +
    chin (moustache) cues, standardised, past a threshold. Decides where no
    fitted detector for these cues is at hand."""
    chin, jaw, must = x[0:3], x[3:6], x[6:9]
    beard = float(((np.concatenate([chin, jaw]) - _BEARD_MED) / _BEARD_IQR).sum()) - _BEARD_T
    moustache = float(((np.concatenate([must, chin]) - _MOUSTACHE_MED) / _MOUSTACHE_IQR).sum()) - _MOUSTACHE_T
    return beard, moustache


def headwear_vector(g) -> np.ndarray:
    h = g.get("hair_stats", {})
    return np.array([h.get("top_tex", 0.0), h.get("top_skin", 0.5), h.get("region_dl", 0.0),
                     h.get("region_chroma", 0.0), h.get("region_tex", 0.0), h.get("top_flat", 0.0)])


def bald_evidence(g) -> tuple[float, float] | None:
    """(probability, drawing threshold) of the fitted bald detector over the
    hair region's cues (:func:`headwear_vector`: how much of the head's top is
    skin-coloured, its texture, lightness and chroma against the skin), or
    None without a detector or without those cues (``g["hair_stats"]``,
    :func:`avatarizer.artist.hair.hair_maps`). Fitted on the shared labels'
    bald and the labels by eye of the top of the head and of hair length
    (``avatarizer-export detectors``, session 18)."""
    if "hair_stats" not in g:
        return None
    return _reading(detectors().get("bald"), headwear_vector(g), finite=True)


def receding_evidence(g) -> tuple[float, float] | None:
    """(probability, drawing threshold) of the fitted receding detector over
    the top of the head's cues (:func:`avatarizer.artist.hair.receding_cues`,
    ``g["receding_cues"]``, measured by :func:`avatarizer.artist.hair.hair_maps`):
    a hairline receding at the temples or the crown, against a full one;
    None without a detector, without the cues or where one is not finite.
    Fitted on the heads labelled by eye receding or with hair
    (``labels/scalp_by_eye.jsonl``, ``avatarizer-export detectors``, task
    ``receding``: logistic, threshold chosen for precision). It decides the
    top's shape on a head not drawn bald; whom it is asked of (not a child,
    not a face reported female) is the caller's."""
    cues = g.get("receding_cues")
    if cues is None:
        return None
    return _reading(detectors().get("receding"), np.asarray(cues, np.float64), finite=True)


def bare_top_threshold() -> float | None:
    """The bald detector's probability from which, below its drawing
    threshold, the artist draws the top of the head bare (the bald family:
    hair at the sides only; its ``thresholds``' ``bare_top``: chosen out of
    fold on the heads labelled by eye, the lowest at which most heads in
    the band are bald or receding, ``avatarizer-export detectors``), or None
    without one."""
    model = detectors().get("bald")
    r = None if model is None else model["thresholds"].get("bare_top")
    return None if r is None else float(r)


#: the side of the crop the hat's shape is read at (:func:`hat_shape`):
#: the SDK hair stage's 128 px, which the hat kind model was fitted at,
#: whatever the artist's own crop size (and ~3 ms a face rather than ~4.5 at
#: 192 px)
HAT_CUE_SIZE = 128
#: the hat detector's inputs before its pixel block: :func:`headwear_vector`'s
#: six cues, the hat's shape cues (:data:`avatarizer.headwear.CUES`, zeros
#: where the mask shows nothing above the forehead) and whether it shows nothing
HAT_CUES = 6 + 10 + 1
#: the standardised pixel block is clipped to this many standard deviations
#: before its projection (:func:`hat_inputs`)
HAT_PIXEL_CLIP = 5.0


def hat_shape(photo: Photo, lm) -> dict | None:
    """:func:`avatarizer.headwear.shape_cues` of the photo seen at
    :data:`HAT_CUE_SIZE` px (area-resampled; the person mask and the valid
    pixels as ``shape_cues`` resamples them); None without a person mask or
    where it shows nothing above the forehead."""
    from .. import headwear as HW

    if photo.hair is None:
        return None
    return HW.shape_cues(photo.resized(HAT_CUE_SIZE), photo.hair, np.asarray(lm, np.float64)[:, :2], photo.valid)


def hat_vector(g, shape: dict | None) -> np.ndarray:
    """The hat detector's raw input: :data:`HAT_CUES` values, then the pixel
    block (:func:`avatarizer.headwear.pixel_features`, zeros without a shape)
    that :func:`hat_inputs` projects."""
    from .. import headwear as HW

    if shape is None:
        cues, pixels = np.zeros(len(HW.CUES)), np.zeros(HW.PIXEL_COUNT)
    else:
        cues, pixels = np.nan_to_num(HW.cue_vector(shape)), np.nan_to_num(np.asarray(shape["pixels"], np.float64))
    return np.concatenate([np.nan_to_num(headwear_vector(g)), cues, [float(shape is None)], pixels])


def hat_inputs(x, det: dict) -> np.ndarray:
    """The hat detector's inputs from :func:`hat_vector`'s (one vector or
    rows): the cues as they are, the pixel block standardised and projected
    on the detector's principal components (``det["pixels"]``: ``mean``,
    ``scale``, ``basis``)."""
    x = np.asarray(x, np.float64)
    px = det["pixels"]
    # clipped: a cell the training photos hardly ever covered (the forehead inside the face oval, on a
    # strongly turned head) would otherwise push a component far outside what the network saw
    z = np.clip((x[..., HAT_CUES:] - px["mean"]) / px["scale"], -HAT_PIXEL_CLIP, HAT_PIXEL_CLIP)
    return np.concatenate([x[..., :HAT_CUES], z @ px["basis"]], -1)


def headwear(st, p, lm, g, photo: Photo, col):
    """A hat, cap or scarf when the head's top is covered, of the kind and
    placed where the person mask's shape says (:mod:`avatarizer.headwear`).
    The detector (``avatarizer-export detectors``, session 20) is a small
    network over the hair region's cues (fabric is flat and uniform, hair
    has strands), the hat's shape cues and a coarse picture of the mask and
    the horizontal edges above the brows (:func:`hat_vector`), fitted on
    the labels by eye of hats and uncovered heads; drawn at its threshold
    for 90% precision out of fold."""
    if "hair_stats" not in g:
        return
    from .. import headwear as HW

    # measured whether or not a detector is fitted: the toolchain's cue tables read it
    shape = g["headwear_shape"] = hat_shape(photo, lm)
    x = g["hat_vector"] = hat_vector(g, shape)
    det = detectors().get("headwear")
    if det is None:
        return
    prob = float(probabilities(det, hat_inputs(x, det))[1])
    g["headwear_prob"] = prob
    if not prob >= det["thresholds"]["yes"]:  # (a NaN probability draws nothing, as the toolchain decides)
        return
    # the hair region's colour; the orchestrator then reads the hat's own (core.hat_colour)
    set_rgb(p, "headwear", g["hair_stats"].get("region_rgb", (0.2, 0.2, 0.25)))
    HW.place(p, shape, HW.kind_of(shape))  # (the hair is drawn already: tucked under the hat)
