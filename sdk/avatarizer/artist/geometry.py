"""Geometry: the face's outline, ears, eyes, brows, nose, mouth and neck from its landmarks, the stylisation, and the shading placed on it."""
from __future__ import annotations

from functools import lru_cache

import numpy as np

from .. import prior as P
from .. import schema as S
from ..landmarks import (
    EYE_ENDS,
    FACE_OVAL,
    LIP_LI,
    LIP_LO,
    LIP_UI,
    LIP_UO,
    side_index,
)
from .photo import (
    clamp,
    clip,
    interp,
    landmark_index,
    Photo,
    laplace,
    luma_of,
    norm,
    resample,
    sample_at,
    set_rgb,
    to_px,
    to_lab,
    translate_into_range,
)
from .stats import mean, median, percentile

# features placed by _shading (after the main symmetrisation)
SHADING = ("blush_l", "blush_r", "cheek_shadow_l", "cheek_shadow_r", "cheek_highlight_l", "cheek_highlight_r",
            "nasolabial_l", "nasolabial_r", "undereye_l", "undereye_r", "forehead_line", "neck_shadow")

# feature-level mirror kinds, from the schema
_MIRROR_KIND = {name: f.mirror for name, f in S.FEATURES.items()}
_FEATURE_OF = np.array(S.FEATURE_OF)
# parameters the symmetrisation blends: continuous ones of two-sided features
_SYM_OK = np.isin(np.array(S.KINDS), ("x", "y", "width", "size", "ratio", "opacity")) \
    & ~np.array([_MIRROR_KIND[f] == "negate" for f in S.FEATURE_OF])



_LOWER_FACE = np.r_[0:6, 9:14]  # the template's face points placed on the landmarks' oval


def outline(st, p, lm, g):
    oval = lm[list(FACE_OVAL)]
    eye_c = 0.5 * (mean(lm[list(EYE_ENDS[0])], 0) + mean(lm[list(EYE_ENDS[1])], 0))
    g["eye_y"] = float(eye_c[1])
    # the lower face: oval points at the template's angles about a centre on the mid-line
    tmpl = S.points(S.DEFAULT, "face").astype(np.float64)
    centre = np.array([0.5 * (lm[234, 0] + lm[454, 0]), 0.0])
    ang_o = np.arctan2(oval[:, 1] - centre[1], oval[:, 0] - centre[0])
    rad_o = norm(oval - centre)
    order = np.argsort(ang_o)
    a_s, r_s = ang_o[order], rad_o[order]
    a_s = np.concatenate([a_s - 2 * np.pi, a_s, a_s + 2 * np.pi])
    r_s = np.tile(r_s, 3)
    face = tmpl.copy()
    # all 11 points at once (elementwise: each gets the value it got alone)
    ks = _LOWER_FACE
    a = np.arctan2(tmpl[ks, 1], tmpl[ks, 0])
    r = interp(a, a_s, r_s)
    face[ks] = centre + r[:, None] * np.stack([np.cos(a), np.sin(a)], 1)
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
        side_w = abs(lm[side_index("cheek_outline", s), 0] - lm[1, 0])
        vis = clamp(side_w / max(g["half_w"], 0.2), 0.35, 1.15)
        xo = oval_x(oval, sgn, (y_top, y_bot))
        prot = 0.1 * st.ear_scale * g["half_w"] / 0.5 * vis
        e = np.array([
            (xo[0] - sgn * 0.035, y_top),
            (xo[0] + sgn * prot * 0.75, y_top - 0.03),
            (0.5 * (xo[0] + xo[1]) + sgn * prot, 0.5 * (y_top + y_bot) - 0.06),
            (xo[1] + sgn * prot * 0.72, y_bot - 0.07),
            (xo[1] - sgn * 0.03, y_bot),
        ])
        P.put(p, name, translate_into_range(e, name))
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


def oval_x(oval, sgn, y):
    """x of the face oval's image-left (sgn -1) or image-right (+1) side at
    height y (a number, or a tuple of them: a tuple of x)."""
    ys = y if isinstance(y, tuple) else (y,)
    cx = 0.5 * (oval[:, 0].min() + oval[:, 0].max())
    side = oval[(oval[:, 0] - cx) * sgn > 0]
    if len(side) == 0:
        xs = [float(oval[:, 0].max() if sgn > 0 else oval[:, 0].min())] * len(ys)
    else:
        side = side[np.argsort(side[:, 1])]
        xs = [float(v) for v in interp(ys, side[:, 1], side[:, 0])]
    return tuple(xs) if isinstance(y, tuple) else xs[0]


_FIVE = np.linspace(0, 1, 5)  # lid points at these arc-length fractions
_CREASE_AT = np.array([0.12, 0.5, 0.85])  # crease points at these fractions of the lid


def eyes(st, p, lm, g):
    for s, sd in ((0, "l"), (1, "r")):
        up = resample(lm[landmark_index("eye_up", s)], _FIVE)
        lo = resample(lm[landmark_index("eye_lo", s)], _FIVE)
        corner = 0.5 * (up[[0, -1]] + lo[[0, -1]])
        up[[0, -1]] = lo[[0, -1]] = corner
        crease_ring = resample(lm[landmark_index("crease", s)], _CREASE_AT)
        lid_at = resample(up, _CREASE_AT)
        crease = lid_at + st.crease_lift * (crease_ring - lid_at)
        iris = lm[landmark_index("iris", s)]
        ic = iris[0]
        ir = float(mean(norm(iris[1:] - ic)))
        P.put(p, f"eye_{sd}_upper", up)
        P.put(p, f"eye_{sd}_lower", lo)
        P.put(p, f"eye_{sd}_crease", crease)
        g[f"eye_{sd}"] = dict(center=0.5 * (corner[0] + corner[1]), iris=ic.copy(), iris_r=ir,
                              opening=float(mean(lo[1:4, 1] - up[1:4, 1])))
    even_eyes(p, g)


#: A head turned further than ``FAR_EYE_TURN[0]`` (``g["turn"]``: the nose's
#: offset from the face's middle in half-widths, about yaw / 38 degrees) has
#: its less open eye drawn toward the other eye's shape (mirrored, set on its
#: own corners), wholly from ``FAR_EYE_TURN[1]``: MediaPipe's lids of a turned
#: head are unreliable (6 held-out photos at 48-54 degrees of yaw: one eye read
#: at 0.4-0.9 of the other's opening with a flat upper lid over a high iris,
#: drawn as a drowsy wink, whichever way the head turned).
FAR_EYE_TURN = (0.8, 1.2)
_EYE_PARTS = ("upper", "lower", "crease")


#: An eye whose lid landmarks lie outside the photo (the frame cuts the
#: face: ``g["eye_cut"]``, the fraction of them outside) by more than
#: ``EYE_CUT[0]`` than the other eye's is drawn toward the other eye's shape
#: as a far eye is, wholly from ``EYE_CUT[1]``: MediaPipe guesses an eye it
#: cannot see, and the guess was drawn as a wink (80 UTKFace portraits cut
#: at the inner corner of one eye: that eye drawn at a median 0.49 of the
#: other's opening, 61 of them under 0.7).
EYE_CUT = (0.1, 0.5)


def eye_cut(lm: np.ndarray, photo) -> tuple[float, float]:
    """The fraction of each eye's lid landmarks (image-left "l", then "r")
    that fall outside the photo: outside the crop or on its pixels that
    come from beyond the frame (``photo.valid``)."""
    size, valid = photo.size, photo.valid
    out = []
    for s in (0, 1):
        idx = np.concatenate([landmark_index("eye_up", s), landmark_index("eye_lo", s)])
        px = np.rint(to_px(lm[idx, :2], size)).astype(np.intp)
        inside = ((px >= 0) & (px < size)).all(axis=1)
        ok = np.zeros(len(idx), bool)
        ok[inside] = valid[px[inside, 1], px[inside, 0]]
        out.append(1.0 - float(ok.mean()))
    return out[0], out[1]


def even_eyes(p, g) -> None:
    """See :data:`FAR_EYE_TURN` and :data:`EYE_CUT`. The less open (or the
    cut) eye's lids and crease move toward the other eye's, mirrored and
    mapped by the similarity that takes its corners onto this eye's corners;
    its iris toward the same place and size in the eye; ``g["eye_*"]``
    follows."""
    w = clamp((abs(g.get("turn", 0.0)) - FAR_EYE_TURN[0]) / (FAR_EYE_TURN[1] - FAR_EYE_TURN[0]), 0.0, 1.0)
    cut_l, cut_r = g.get("eye_cut", (0.0, 0.0))
    w_cut = clamp((abs(cut_l - cut_r) - EYE_CUT[0]) / (EYE_CUT[1] - EYE_CUT[0]), 0.0, 1.0)
    if w <= 0 and w_cut <= 0:
        return
    pts = {sd: [P.pts(p, f"eye_{sd}_{part}").astype(np.float64) for part in _EYE_PARTS] for sd in "lr"}
    if w_cut >= w:  # the eye the frame cuts takes the shape of the one the photo shows, however open
        small, w = ("l" if cut_l > cut_r else "r"), w_cut
        big = "r" if small == "l" else "l"
    else:
        ratio = {sd: g[f"eye_{sd}"]["opening"] / max(float(norm(pts[sd][0][-1] - pts[sd][0][0])), 1e-6)
                 for sd in "lr"}
        small = min(ratio, key=ratio.get)
        big = "r" if small == "l" else "l"
        if ratio[big] <= ratio[small]:
            return

    def cx(a):  # points as complex numbers
        return a[..., 0] + 1j * a[..., 1]

    b_up = pts[big][0]
    s_up = pts[small][0]
    mb0, mb1 = complex(-b_up[0, 0], b_up[0, 1]), complex(-b_up[-1, 0], b_up[-1, 1])  # mirrored corners
    s0, s1 = cx(s_up[0]), cx(s_up[-1])
    if abs(mb1 - mb0) < 1e-9:
        return
    scale = (s1 - s0) / (mb1 - mb0)
    for arr, part in zip(pts[small], _EYE_PARTS):
        mirrored = pts[big][_EYE_PARTS.index(part)] * np.array([-1.0, 1.0])
        z = scale * (cx(mirrored) - mb0) + s0
        arr[:] = (1.0 - w) * arr + w * np.stack([z.real, z.imag], axis=-1)
        P.put(p, f"eye_{small}_{part}", arr)
    es, eb = g[f"eye_{small}"], g[f"eye_{big}"]
    size = abs(scale)
    es["opening"] += w * (eb["opening"] * size - es["opening"])
    es["iris_r"] += w * (eb["iris_r"] * size - es["iris_r"])
    # eyes look the same way: the other iris's offset in its eye (not mirrored), at this eye's size
    es["iris"] = es["iris"] + w * (es["center"] + (eb["iris"] - eb["center"]) * size - es["iris"])


# the brow profile: 31 samples across each brow station, the middle +-0.03 "near" the brow line
_BROW_US = np.linspace(-0.075, 0.075, 31)
_BROW_NEAR = np.abs(_BROW_US) <= 0.03
_BROW_IDX = np.arange(len(_BROW_US))[None]


def brows(st, p, lm, g, photo):
    us, near, idx = _BROW_US, _BROW_NEAR, _BROW_IDX
    # both brows' profiles are measured together: every step below works
    # point by point or row by row (one row per station), so stacking the
    # two brows' 5 stations as 10 rows gives each row what it got alone
    sides = []
    for s in (0, 1):
        up = lm[landmark_index("brow_up", s)]
        lo = lm[landmark_index("brow_lo", s)]
        ctr = 0.5 * (up + lo)
        band = norm(up - lo)
        # photo: the dark band across the brow at 5 stations
        tang = _gradient(ctr)
        tang /= np.maximum(norm(tang, keepdims=True), 1e-9)
        nrm = np.stack([tang[:, 1], -tang[:, 0]], 1)
        nrm *= np.where(nrm[:, 1:2] > 0, -1.0, 1.0)  # pointing up
        sides.append((ctr, band, nrm))
    pts = photo.to_img(np.stack([ctr[:, None, :] + us[None, :, None] * nrm[:, None, :]
                                 for ctr, _band, nrm in sides]))  # (2, 5, 31, 2)
    prof = sample_at(photo.luma, pts).reshape(-1, len(us))  # (10, 31)
    ok = sample_at(photo.validf, pts).reshape(-1, len(us)).min(1) > 0.5
    ref = percentile(prof, 85, axis=1, keepdims=True)
    dark = clip((ref - prof) / np.maximum(0.28 * ref, 0.035) - 0.15, 0, 1)
    du = us[1] - us[0]
    # only the dark run through the brow line (not the lashes or a fringe beside it)
    peak = np.where(near[None], dark, -1).argmax(1)
    light = dark < 0.2
    below = np.where(light & (idx < peak[:, None]), idx, -1).max(1)
    above = np.where(light & (idx > peak[:, None]), idx, len(us)).min(1)
    run = (idx > below[:, None]) & (idx < above[:, None])
    dark = dark * run
    mass = dark.sum(1) * du
    shift = (dark * us[None]).sum(1) / np.maximum(dark.sum(1), 1e-6)
    nst = len(sides[0][0])  # stations per brow
    contrasts = median(clip((ref[:, 0] - prof.min(1)) / np.maximum(ref[:, 0], 0.05), 0, 1).reshape(2, nst), axis=1)
    for s, sd in ((0, "l"), (1, "r")):
        ctr, band, nrm = sides[s]
        rows = slice(nst * s, nst * (s + 1))
        contrast = float(contrasts[s])
        k = st.brow_photo * ok[rows].astype(np.float64) * clamp(contrast / 0.2, 0, 1)
        mass_s, shift_s = mass[rows], shift[rows]
        thick = (1 - k) * 0.6 * band + k * clip(mass_s * 1.1, 0.008, 0.08)
        centre = ctr + (k * clip(shift_s, -0.025, 0.025))[:, None] * nrm
        centre = laplace(centre, st.smoothing)
        thick = st.brow_weight * thick
        P.put(p, f"brow_{sd}", centre)
        p[S.index(f"brow_{sd}.w0")] = clamp(mean(thick[:2]) * 1.05, 0.01, 0.08)
        p[S.index(f"brow_{sd}.mid_width")] = clamp(thick[2], 0.008, 0.08)
        p[S.index(f"brow_{sd}.w1")] = clamp(thick[4] * 0.7, 0.004, 0.06)
        p[S.index(f"brow_{sd}.hairiness")] = st.brow_hairiness
        g[f"brow_{sd}"] = dict(centre=centre, thick=thick, contrast=contrast)


def _gradient(xy: np.ndarray) -> np.ndarray:
    """``np.gradient(xy, axis=0)`` for unit spacing and 3+ points, without its
    ~40 µs of argument handling: central differences inside, one-sided at the ends."""
    out = np.empty_like(xy)
    out[1:-1] = (xy[2:] - xy[:-2]) / 2.0
    out[0] = xy[1] - xy[0]
    out[-1] = xy[-1] - xy[-2]
    return out


def nose(st, p, lm, g, photo):
    nc = mean(lm[[2, 94]], 0)  # subnasale
    cx = float(nc[0])
    sx = st.nose_scale

    def nx(pt):
        q = np.array(pt, np.float64)
        q[..., 0] = cx + (q[..., 0] - cx) * sx
        return q

    L = lambda name, s: lm[side_index(name, s)]  # noqa: E731
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


def mouth(st, p, lm, g):
    uo = lm[list(LIP_UO)].copy()
    lo = lm[list(LIP_LO)].copy()
    ui = lm[list(LIP_UI)].copy()
    li = lm[list(LIP_LI)].copy()
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
    g["mouth_c"] = mean(corners, 0)
    g["lip_gap"] = gap


def stylise(st, p, g):
    """The one place where the measured geometry becomes the drawn one."""
    # eyes: enlarged about their centres, a little more open
    for sd in "lr":
        e = g[f"eye_{sd}"]
        c = e["center"]
        up, lo, cr = (P.pts(p, f"eye_{sd}_{k}").astype(np.float64) for k in ("upper", "lower", "crease"))
        line_y = lambda x: interp(x, sorted([up[0, 0], up[-1, 0]]),  # noqa: E731
                                  [up[0, 1], up[-1, 1]] if up[0, 0] < up[-1, 0] else [up[-1, 1], up[0, 1]])
        for arr in (up, lo, cr):  # (up is opened first: lo and cr open about its new corner line)
            ly = line_y(arr[:, 0])
            arr[:, 1] = ly + (arr[:, 1] - ly) * st.eye_open
            arr[:] = P.scale_about(arr, c, st.eye_scale)
        up = laplace(up, st.smoothing)
        lo = laplace(lo, st.smoothing)
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
            ly = interp(q[:, 0], lx, line[:, 1])
            q[:, 1] = ly + (q[:, 1] - ly) * st.lip_fullness
        q[:, 0] = mc[0] + (q[:, 0] - mc[0]) * st.mouth_width
        if feat == "lip_lower_outer":
            q = laplace(q, st.smoothing)
        P.put(p, feat, q)
    for feat in ("lip_upper_outer", "lip_lower_outer"):
        p[S.index(f"{feat}.w0")] = st.lip_outline
        p[S.index(f"{feat}.w1")] = st.lip_outline
    p[S.index("teeth.show")] = 1.0 if g["lip_gap"] > st.teeth_gap else 0.0
    # partial symmetrisation of everything that has a mirror partner
    symmetrise(p, S.FACE, st.symmetry)
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


def symmetrise(p, sl: slice, w: float, features=None):
    """Blends the continuous parameters in ``sl`` (or only those of
    ``features``) toward their mirror image, leaving out one-sided
    ("negate") features."""
    if w <= 0:
        return
    at = _symmetrised(sl.start, sl.stop, sl.step, None if features is None else tuple(features))
    m = S.mirror(p)
    p[at] += w * (m[at] - p[at])


@lru_cache(maxsize=None)
def _symmetrised(start, stop, step, features: tuple | None) -> np.ndarray:
    """The indices of the parameters :func:`symmetrise` blends in
    ``start:stop:step`` (only those of ``features`` when given), in order,
    made once (read-only)."""
    sel = np.zeros(S.PARAM_COUNT, bool)
    sel[start:stop:step] = True
    sel &= _SYM_OK
    if features is not None:
        sel &= np.isin(_FEATURE_OF, list(features))
    at = np.flatnonzero(sel)
    at.setflags(write=False)
    return at


def cheek_discs(lm, g):
    """Skin discs on the upper cheeks, well inside the face outline (smaller
    on the side turned away, which is foreshortened). On a head turned so
    far that the turned-away cheek's disc reaches past the nose tip's line
    (its landmarks lie behind the nose's profile: the disc shows the
    silhouette's edge and the background), that cheek is hidden: the near
    cheek's disc stands for both (``g["cheek_hidden"]`` says which; a white
    wall behind a head turned 48° was read as the lit cheek and drew the
    skin grey-beige, ΔE 22)."""
    out = []
    for s in (0, 1):
        c = (lm[side_index("cheekbone", s)] + lm[side_index("cheek", s)] + lm[side_index("cheek_in", s)]) / 3.0
        side_w = abs(lm[side_index("cheek_outline", s), 0] - lm[1, 0])
        r = 0.06 * clamp(side_w / max(g["half_w"], 0.2), 0.5, 1.0)
        out.append((c, r))
    # the side turned away: the narrower one (its outline nearer the nose tip); its disc is hidden where
    # it reaches the nose tip's vertical line from its own side
    w = [abs(lm[side_index("cheek_outline", s), 0] - lm[1, 0]) for s in (0, 1)]
    far = int(np.argmin(w))
    side = np.sign(lm[side_index("cheek_outline", far), 0] - lm[1, 0])
    (c, r), hidden = out[far], [False, False]
    if side != 0 and (c[0] - lm[1, 0]) * side < r:
        out[far], hidden[far] = out[1 - far], True
    g["cheek_hidden"] = tuple(hidden)
    return out


def disc_luma(photo: Photo, disc) -> float | None:
    win, m = photo.region(discs=[disc])
    if np.count_nonzero(m) < 4:
        return None
    return float(median(photo.luma[win][m]))


def shading(st, p, lm, g, photo: Photo, col):
    skin = col["skin"]
    skin_y = float(luma_of(skin))
    L = lambda name, s: lm[side_index(name, s)]  # noqa: E731
    # lighting side: the brighter cheek gets the highlights, the darker the shadow
    yl, yr = (disc_luma(photo, d) for d in g["cheek_discs"])
    light = 0.0 if yl is None or yr is None else clamp((yr - yl) / max(skin_y, 0.1), -0.5, 0.5)
    g["light"] = light
    lab_skin = col["skin_lab"]
    # the cheeks' redness against the skin as the photo shows it (col's is moved onto the skin locus and
    # into good light's chroma: against it a colour cast, or the chroma taken off orange skin, read as
    # blush, 7 of 40 cast photos at the opacity's cap against none of 80 others)
    cast = g.get("skin_cast")
    skin_a = float(to_lab(np.asarray(cast[0], np.float64))[1]) if cast is not None else float(lab_skin[1])
    lines: dict = {}
    for s, sd in ((0, "l"), (1, "r")):
        sgn = -1 if s == 0 else 1
        # blush on the cheek apple, its strength from the cheek's redness
        c = 0.5 * (L("cheek", s) + L("cheek_in", s)) + (sgn * 0.02, 0.0)
        px = photo.region_pixels(discs=[(photo.to_img(c), 0.06)])
        red = 0.0
        if len(px) >= 6:
            red = float(to_lab(median(px, 0))[1] - skin_a)
        p[S.index(f"blush_{sd}.cx")] = c[0]
        p[S.index(f"blush_{sd}.cy")] = c[1]
        p[S.index(f"blush_{sd}.rx")] = 0.085 * g["half_w"] / 0.5
        p[S.index(f"blush_{sd}.ry")] = 0.058 * g["half_w"] / 0.5
        p[S.index(f"blush_{sd}.opacity")] = clamp(0.05 + 0.015 * red, 0.0, 0.25) * st.blush_strength
        set_rgb(p, f"blush_{sd}", clip(0.5 * skin + 0.5 * np.array([0.92, 0.5, 0.5]), 0, 1))
        # cheek shadow: a sliver under the cheekbone along the jaw
        q = np.array([L("cheek_hi", s) + (-sgn * 0.01, 0.0), 0.5 * (L("jowl", s) + L("jowl_lo", s)),
                      L("mouth_side", s) + (sgn * 0.01, 0.0),
                      0.5 * (L("mouth_side", s) + L("jaw", s)) + (sgn * 0.02, -0.02)])
        P.put(p, f"cheek_shadow_{sd}", q)
        dark_side = 0.5 - 0.5 * clamp(light / 0.1, -1, 1) * sgn  # continuous in the light
        p[S.index(f"cheek_shadow_{sd}.opacity")] = clamp((0.12 + 0.14 * dark_side) * st.shadow_strength,
                                                                 0, 1)
        # cheek highlight: a small triangle under the eye
        ec = g[f"eye_{sd}"]["center"]
        tri = np.array([(0.06, 0.16), (-0.07, 0.125), (-0.04, 0.2)]) * np.array([-sgn, 1.0]) + ec
        P.put(p, f"cheek_highlight_{sd}", tri)
        p[S.index(f"cheek_highlight_{sd}.opacity")] = clamp(
            (0.06 + 0.06 * (1 - dark_side)) * st.highlight_strength, 0, 1)
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
        ue = resample(lo, [0.15, 0.5, 0.85]) + (0, 0.045)
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
    ls = clamp(light / 0.05, -1, 1)
    fy = 0.5 * (g["brow_l"]["centre"][:, 1].min() + lm[10, 1]) + 0.02
    fh = np.array([(-0.16, 0.0), (0.1, -0.05), (0.2, 0.04), (-0.05, 0.07)])
    fh = fh * np.array([ls * g["half_w"] / 0.5, 1.0]) + (g["centre_x"] + ls * 0.03, fy - 0.02)
    P.put(p, "forehead_highlight", fh)
    p[S.index("forehead_highlight.opacity")] = clamp(0.04 + 0.3 * abs(light), 0, 0.2) \
        * abs(ls) * st.highlight_strength
    fl = np.array([(-0.2, fy + 0.01), (0.0, fy - 0.01), (0.2, fy + 0.01)]) + (g["centre_x"], 0)
    P.put(p, "forehead_line", fl)
    lines["forehead_line"] = fl
    # wrinkle widths from how dark the photo is along each line (subtle)
    dark = dict(zip(lines, creases(photo, list(lines.values()), skin_y)))
    for name, v in dark.items():
        if name.startswith("nasolabial"):
            w0, w1 = 0.0005, clamp(0.001 + 0.03 * v, 0, 0.005)
        elif name.startswith("undereye"):
            w0, w1 = 0.0, clamp(0.04 * (v - 0.02), 0, 0.005)
        else:
            w0, w1 = 0.0, clamp(0.04 * (v - 0.03), 0, 0.005)
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
    symmetrise(p, S.FACE, st.symmetry, SHADING)


_CREASE_T = np.linspace(0.15, 0.85, 9)


def creases(photo: Photo, lines, skin_y: float) -> np.ndarray:
    """For each 3-point line, how much darker the photo is along it than
    0.035 to either side (relative luminance; 0 = no crease)."""
    t = _CREASE_T
    pts = np.stack([resample(q, t) for q in lines])  # (k, 9, 2)
    d = np.stack([q[-1] - q[0] for q in lines])
    n = np.stack([-d[:, 1], d[:, 0]], 1) / np.maximum(norm(d), 1e-9)[:, None]
    allp = photo.to_img(np.stack([pts, pts + 0.035 * n[:, None], pts - 0.035 * n[:, None]]))  # (3, k, 9, 2)
    lum = sample_at(photo.luma, allp)
    ok = sample_at(photo.validf, allp[0]).min(1) > 0.5
    v = median(np.maximum(lum[1], lum[2]) - lum[0], axis=1) / max(skin_y, 0.1)
    return np.where(ok, clip(v, 0, 1), 0.0)
