"""A procedural prior over plausible avatars (``schema.sample``).

Each avatar starts from a few interpretable identity factors -- age, a
masculine/feminine axis, skin tone, face width/length/jaw, eye, nose and mouth
proportions, a hairstyle family with its colour, facial hair, glasses and
headwear -- and turns them into all 629 parameters with the editing helpers
below. It is a hand-made prior: the export side refits its statistics on the
auto-artist's outputs for real photos (``avatarizer_export``), and the
editing helpers are shared with the artist and the hairstyle bank.
"""
from __future__ import annotations

import numpy as np

from . import schema as S

# ------------------------------------------------------------------ palettes
SKIN_TONES = np.array([
    (0.98, 0.87, 0.80), (0.95, 0.80, 0.69), (0.90, 0.72, 0.58), (0.80, 0.60, 0.45),
    (0.70, 0.50, 0.36), (0.56, 0.38, 0.27), (0.42, 0.28, 0.20), (0.30, 0.20, 0.15),
], np.float32)
HAIR_COLORS = {
    "black": (0.08, 0.07, 0.07), "dark_brown": (0.20, 0.13, 0.09), "brown": (0.36, 0.24, 0.15),
    "light_brown": (0.55, 0.40, 0.26), "blond": (0.86, 0.72, 0.47), "red": (0.62, 0.29, 0.13),
    "gray": (0.60, 0.60, 0.60), "white": (0.88, 0.88, 0.86),
}
IRIS_COLORS = {
    "dark_brown": (0.20, 0.12, 0.07), "brown": (0.38, 0.23, 0.11), "hazel": (0.50, 0.40, 0.20),
    "green": (0.33, 0.48, 0.30), "blue": (0.35, 0.52, 0.72), "gray": (0.50, 0.55, 0.58),
}
CLOTHES = [(0.25, 0.35, 0.55), (0.15, 0.15, 0.17), (0.85, 0.85, 0.82), (0.55, 0.15, 0.18),
           (0.20, 0.45, 0.35), (0.85, 0.65, 0.25), (0.45, 0.30, 0.55), (0.35, 0.55, 0.75)]
HAIRSTYLES = ("bald", "receding", "buzz", "short", "side_part", "fringe", "bob", "medium",
              "long", "long_wavy", "curly", "afro", "bun")


def skin_color(t: float) -> np.ndarray:
    """Skin colour along the palette, t in [0, 1] from light to dark."""
    t = float(np.clip(t, 0, 1)) * (len(SKIN_TONES) - 1)
    i = min(int(t), len(SKIN_TONES) - 2)
    return SKIN_TONES[i] + (SKIN_TONES[i + 1] - SKIN_TONES[i]) * (t - i)


# ---------------------------------------------------------- editing helpers


def pts(p, feature):
    return S.points(p, feature).copy()


def put(p, feature, xy):
    S.set_points(p, feature, xy)


_RGB_AT: dict = {}  # (feature, prefix) -> index of the colour's r (g and b follow it)


def set_rgb(p, feature, rgb, prefix=""):
    """Writes a colour (clipped to [0, 1]) into a parameter vector. The
    channel indices are looked up once (the artist sets ~60 colours a face)
    and the three written as one slice: the same float64 -> dtype casts as
    writing them one by one."""
    key = (feature, prefix)
    i = _RGB_AT.get(key)
    if i is None:
        i = S.index(f"{feature}.{prefix}r")
        if S.NAMES[i + 1:i + 3] != (f"{feature}.{prefix}g", f"{feature}.{prefix}b"):
            raise AssertionError(f"{feature}.{prefix}r, g, b are not consecutive parameters")
        _RGB_AT[key] = i
    v = np.core.umath.clip(np.asarray(rgb, np.float64), 0, 1)  # np.clip's ufunc, without its wrapper
    if isinstance(p, np.ndarray) and p.ndim == 1 and v.shape == (3,):
        p[i:i + 3] = v
    else:
        for k, c in enumerate(v):
            p[i + k] = float(c)


def set_skin_colours(p, skin, neck: float = 0.92) -> None:
    """Every colour derived from the skin: face, ears and neck (``neck`` ×
    skin), the shading lines and shadows, nose base, nostrils and lower
    lids; used by the prior and by the artist."""
    shade = skin * np.array([0.84, 0.78, 0.78])
    for feat in ("face", "ear_l", "ear_r"):
        set_rgb(p, feat, skin)
    set_rgb(p, "neck", skin * neck)
    for feat in ("cheek_shadow_l", "cheek_shadow_r", "nose_shadow", "nose_bridge", "eye_l_crease",
                 "eye_r_crease", "nasolabial_l", "nasolabial_r", "forehead_line", "undereye_l", "undereye_r"):
        set_rgb(p, feat, shade)
    set_rgb(p, "neck_shadow", skin * 0.72)
    set_rgb(p, "nose_base", skin * np.array([0.7, 0.55, 0.52]))
    for side in ("l", "r"):
        set_rgb(p, f"nostril_{side}", skin * np.array([0.5, 0.36, 0.34]))
        set_rgb(p, f"eye_{side}_lower", skin * 0.6)


def set_hair_rgb(p, hair) -> None:
    """The drawn hair's colours, the auto-artist's and
    :func:`avatarizer.hair.merge`'s: ``hair`` on the front layer, a shade
    darker behind, the strands lighter (as :func:`random_avatar` draws its
    own, in float32). A buzz cut's too, unmixed: mixed 40% with the skin
    (as :func:`random_avatar` still mixes its random buzz cuts), short dark
    hair read as the skin-pale grey or pink of no class, where the photo's
    colour of a real buzz cut already shows the scalp through (session 70)."""
    hair = np.asarray(hair, np.float64)
    set_rgb(p, "hair_back", hair * 0.85)
    set_rgb(p, "hair_front", hair)
    for i in (0, 1):
        set_rgb(p, f"hair_strand{i}", np.clip(hair * 1.25 + 0.05, 0, 1))


def crown_lift(kind: int) -> float:
    """How far the hat's top lies above the skull top per unit of
    ``headwear.crown`` (above a :data:`HAT_GAP`) for a hat of ``kind`` (the
    renderer's ``avz.c``: 0.5 for a brimmed hat, 0.35 for the others)."""
    return 0.5 if int(kind) == 3 else 0.35


#: the hat's top lies this far above the skull top at the least (``headwear.crown`` 0; ``avz.c``)
HAT_GAP = 0.06


def brow_top(p) -> float:
    """The height of the brows' highest point (the top of either brow's
    outline points), canonical units."""
    return float(np.concatenate([S.points(p, "brow_l"), S.points(p, "brow_r")])[:, 1].min())


def hat_crown(p) -> tuple[float, float, float, float]:
    """The crown the native renderer draws for ``p``'s headwear (``avz.c``,
    ``avz__headwear``): (centre x, half width, band y, top y), canonical units."""
    face = S.points(p, "face").astype(np.float64)
    kind = S.category(p, "headwear.type")
    cx = 0.5 * (face[5, 0] + face[9, 0])
    half = 0.5 * abs(face[5, 0] - face[9, 0]) * float(p[S.index("headwear.width")])
    ytop = face[7, 1] - float(p[S.index("headwear.crown")]) * crown_lift(kind) - HAT_GAP
    return cx, half, float(p[S.index("headwear.band_y")]), ytop


#: the y coordinates of the hair's outlines and strands (:func:`hair_over_the_skull`)
_HAIR_Y = np.array([i for i in range(S.HAIR.start, S.HAIR.stop)
                    if S.KINDS[i] == "y" and S.NAMES[i].split(".")[0] != "hair_style"], np.int64)
#: :func:`hair_over_the_skull`: how far over the skull's top the hair's top is lifted to
SKULL_COVER = 0.002


def hair_over_the_skull(params) -> np.ndarray:
    """``params`` (629, float32) with the front hair's top lifted to
    :data:`SKULL_COVER` over the skull's where the skull rose above it
    (what lies above the brows stretched upward, as
    :func:`avatarizer.proportions.child_head` stretches a child's head;
    below the brows nothing moves); ``params`` itself where the hair covers
    it, or where no front hair layer is drawn (a bald top, no hair) or a
    hat is. Video's avatar averages its estimates value by value, the
    skull's top and the hair's outline apart: under a close crop (a buzz
    cut, whose top lies a few thousandths over the skull's) the drawn
    avatar showed a bald crown over its hair for a second after the hair
    changed, and a sliver of it after (``d6.mp4``, up to 0.037; session
    73)."""
    p = np.asarray(params)
    if S.category(p, "hair_style.layers") < 2 or S.category(p, "headwear.type") > 0:
        return p
    top = float(p[S.index("face.y7")])
    # (the front layer's: the renderer fills the head over the back hair, so only the front hair hides the skull;
    # a back layer reaching higher left the crown bare, a review)
    hair_top = float(S.points(p, "hair_front")[:, 1].min())
    want, brow = top - SKULL_COVER, brow_top(p)
    if hair_top <= want or not brow - hair_top > 0.05:
        return p
    out = p.astype(np.float64)
    out[_HAIR_Y] = stretched_up(out[_HAIR_Y], brow, (brow - want) / (brow - hair_top))
    return S.clip(out.astype(np.float32))


def stretched_up(y: np.ndarray, brow: float, k: float) -> np.ndarray:
    """Heights ``y`` above the brows' top ``brow`` (canonical y grows
    downward) stretched upward by ``k``: ``brow - k (brow - y)``; those at
    or below it as they are (:func:`hair_over_the_skull`,
    :func:`avatarizer.proportions.child_head`)."""
    return np.where(y < brow, brow - k * (brow - y), y)


def hair_under_the_hat(p: np.ndarray) -> None:
    """Moves, in place, the hair's points above the hat's band line down:
    within the crown's width (less a margin for the curls' zigzag and the
    outline's width) under the crown (:func:`hat_crown`), beside it no
    higher than its top, so that no hair rises over the hat: the bank's
    curly hat-shaped styles (fitted to photos where hat and hair were one
    silhouette) drew a ragged fringe of curls over it. Hair may still puff
    out beside the hat; hair below the band (at the sides, down the back)
    is untouched. Only y moves."""
    cx, half, band, ytop = hat_crown(p)
    curl = float(p[S.index("hair_style.curl")])
    for name in ("hair_back", "hair_front", "hair_strand0", "hair_strand1"):
        pts = S.points(p, name).astype(np.float64)
        width = float(p[S.index(f"{name}.w0")]) if f"{name}.w0" in S.NAMES else 0.0
        margin = 0.045 * curl + 0.5 * width + 0.01
        h, top = max(half - margin, 0.05), ytop + margin
        above = pts[:, 1] < band
        if not above.any():
            continue
        u = (pts[above, 0] - cx) / h
        crown = band - max(band - top, 0.0) * np.sqrt(np.clip(1.0 - u * u, 0.0, 1.0))
        crown[np.abs(u) > 1.0] = top  # beside the crown: hair may puff out, not rise above it
        pts[above, 1] = np.maximum(pts[above, 1], crown)
        S.set_points(p, name, pts)


def beard_outline(face, lip_point, chin_y: float) -> np.ndarray:
    """The beard polygon (6 points) from the face outline, the lower-lip point
    it hangs below and the chin height; used by the artist and by hair merge."""
    return np.array([
        (face[0, 0], chin_y + 0.05),
        (face[2, 0] + 0.02, face[2, 1] + 0.02),
        (face[4, 0] - 0.02, face[4, 1] + 0.1),
        (lip_point[0], lip_point[1] + 0.01),
        (face[10, 0] + 0.02, face[10, 1] + 0.1),
        (face[12, 0] - 0.02, face[12, 1] + 0.02),
    ], np.float64)


def goatee_outline(lip_lower, chin_y: float) -> np.ndarray:
    """A goatee's polygon (the 6 points of :func:`beard_outline`, in its
    order): the chin's hair from the mouth's corners down to just below the
    chin, hugging the lower lip, the jaw's sides bare (its sides at least
    0.16 / 0.21 from the face's middle: the schema's ranges). ``lip_lower``: the
    lower lip's outer points (``lip_lower_outer``, corner to corner);
    ``chin_y`` the chin's height."""
    lo = np.asarray(lip_lower, np.float64)
    left, right = (lo[0], lo[-1]) if lo[0, 0] <= lo[-1, 0] else (lo[-1], lo[0])
    mid, bottom = lo[len(lo) // 2], max(float(chin_y), float(lo[:, 1].max()) + 0.08)
    # the sides no nearer the middle than the schema's ranges allow (beard.x1 >= 0.15, x2 >= 0.2, mirrored)
    lo_x, hi_x = max(right[0] + 0.01, 0.16), max(right[0] + 0.025, 0.21)
    lo_xl, hi_xl = min(left[0] - 0.01, -0.16), min(left[0] - 0.025, -0.21)
    return np.array([
        (mid[0], bottom + 0.03),
        (lo_x, bottom - 0.06),
        (hi_x, right[1] + 0.03),
        (mid[0], mid[1] + 0.01),
        (hi_xl, left[1] + 0.03),
        (lo_xl, bottom - 0.06),
    ], np.float64)


def scale_about(xy, center, sx, sy=None):
    sy = sx if sy is None else sy
    c = np.asarray(center, np.float32)
    return (xy - c) * np.array([sx, sy], np.float32) + c


def rotate_about(xy, center, deg):
    a = np.deg2rad(deg)
    r = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]], np.float32)
    c = np.asarray(center, np.float32)
    return (xy - c) @ r.T + c


def closed_sym(half):
    """Closed symmetric contour from a half profile (first and last on the axis)."""
    half = np.asarray(half, np.float32)
    other = half[1:-1][::-1] * np.array([-1, 1], np.float32)
    return np.concatenate([half, other])


def head_geometry(p) -> dict:
    f = pts(p, "face")
    return dict(top=float(f[7, 1]), chin=float(f[0, 1]), half_w=float(0.5 * (f[5, 0] - f[9, 0])),
                upper_w=float(0.5 * (f[6, 0] - f[8, 0])), jaw_w=float(0.5 * (f[3, 0] - f[11, 0])),
                outline=f)


def hairstyle_contours(p, style: str, rng: np.random.Generator, volume: float = 1.0):
    """Back and front hair contours (12 and 10 points) for a style family,
    fitted to the head outline already in ``p``. Returns (back, front, curl, layers):
    layers 0 = no hair, 1 = back layer only (bald or receding top: hair shows at
    the sides), 2 = back and front layers."""
    g = head_geometry(p)
    top, hw, uw = g["top"], g["half_w"], g["upper_w"]
    v = 0.04 + 0.06 * volume * rng.uniform(0.6, 1.4)  # thickness above the skull
    j = lambda s=0.02: rng.normal(0, s)  # noqa: E731
    curl = 0.0
    layers = 2.0
    hairline = top + rng.uniform(0.22, 0.32)  # y of the hairline at the centre
    length = {"bob": 0.55, "medium": 0.75, "long": 0.95, "long_wavy": 0.95, "curly": 0.55,
              "afro": 0.35}.get(style, 0.05)
    side_x = hw + v * 0.9
    # back: bottom centre, 5 points up the right side, top centre
    if style in ("long", "long_wavy", "medium", "bob", "curly"):
        bw = side_x + (0.14 if style != "bob" else 0.10) + j()
        back_half = [(0.0, length - 0.15 + j()), (bw, length + j()), (bw + 0.02, 0.25 + j()),
                     (side_x + 0.06, -0.35 + j()), (uw + v, top + 0.20 + j()),
                     (0.5 * uw, top - v * 0.8 + j(0.01)), (0.0, top - v + j(0.01))]
    elif style == "afro":
        big = 0.18 + 0.12 * rng.random()
        back_half = [(0.0, 0.25), (side_x + big * 0.6, 0.28 + j()), (side_x + big, -0.05 + j()),
                     (side_x + big * 1.05, -0.45 + j()), (uw + big * 0.9, top + 0.05 + j()),
                     (0.5 * uw, top - big + j(0.01)), (0.0, top - big * 1.05)]
        curl = rng.uniform(0.6, 1.0)
    elif style in ("bald", "receding"):
        # only a fringe of hair at the sides and the back of the head shows past the face
        low = top + (0.38 if style == "bald" else 0.30)
        back_half = [(0.0, 0.0), (hw - 0.02, 0.08 + j()), (hw + 0.05, -0.12 + j()),
                     (hw + 0.045, -0.35 + j()), (uw * 0.9, low + j(0.01)),
                     (0.4 * uw, low - 0.06), (0.0, low - 0.08)]
        v = 0.02
    else:  # short, buzz, side_part, fringe, bun
        tight = 0.012 if style == "buzz" else v
        back_half = [(0.0, 0.0), (hw - 0.02, 0.05 + j()), (hw + tight * 0.7, -0.12 + j()),
                     (hw + tight * 0.9, -0.40 + j()), (uw + tight, top + 0.20 + j()),
                     (0.5 * uw, top - tight * 0.85), (0.0, top - tight)]
        v = tight
        if style == "bun":
            back_half[5] = (0.16, top - 0.20 + j())
            back_half[6] = (0.0, top - 0.30 + j())
    back = closed_sym(back_half)
    if style == "long_wavy":
        curl = rng.uniform(0.25, 0.45)
    elif style == "curly":
        curl = rng.uniform(0.5, 0.8)

    # front: hairline centre, hairline, temple, outer side, upper side, top centre
    temple_y = top + rng.uniform(0.48, 0.58)
    if style == "fringe":
        hairline = rng.uniform(-0.42, -0.30)
        temple_y = hairline + 0.06
    if style == "bob":
        hairline = min(hairline, rng.uniform(-0.55, -0.35))
    if style in ("bald", "receding"):
        hairline = top + (0.01 if style == "bald" else rng.uniform(0.12, 0.2))
        temple_y = top + (0.02 if style == "bald" else 0.4)
    outer_top = top - v
    front_half = [(0.0, hairline), (0.55 * hw, hairline + (0.03 if style != "fringe" else 0.0) + j(0.01)),
                  (hw - 0.02, temple_y + j(0.01)), (side_x, top + 0.33 + j(0.01)),
                  (uw + v, top + 0.12), (0.0, outer_top)]
    if style == "afro":
        front_half[3] = (side_x + 0.05, top + 0.3)
        front_half[4] = (uw + v + 0.05, top + 0.08)
    front = closed_sym(front_half)
    if style in ("bald", "receding") or (style == "buzz" and rng.random() < 0.3):
        pass
    if style == "side_part":
        part = rng.choice([-1, 1]) * rng.uniform(0.12, 0.22)
        # the side with more hair sweeps lower across the forehead
        front[0] = (part * 0.4, hairline + 0.05)
        sweep = 1 if part < 0 else 9
        front[sweep] = (front[sweep][0], front[sweep][1] + 0.08)
    if style == "bald":
        layers = 0.0 if rng.random() < 0.4 else 1.0
    return back.astype(np.float32), front.astype(np.float32), curl, layers


# ----------------------------------------------------------------- sampler


def random_avatar(rng: np.random.Generator) -> np.ndarray:
    p = S.default()
    fem = rng.random() < 0.5
    age = float(np.clip(rng.choice([rng.uniform(4, 14), rng.uniform(16, 40), rng.uniform(40, 85)],
                                   p=[0.12, 0.5, 0.38]), 3, 90))
    child = age < 14
    tone = float(np.clip(rng.beta(1.4, 1.8), 0, 1))
    skin = skin_color(tone) * rng.uniform(0.97, 1.03, 3).astype(np.float32)

    # face shape
    width = rng.normal(1.0, 0.055) + (0.04 if child else 0.0)
    length = rng.normal(1.0, 0.06) - (0.08 if child else 0.0)
    jaw = rng.normal(0.0, 1.0) + (0.5 if not fem else -0.3)
    f = pts(p, "face")
    f[:, 0] *= width
    lower = f[:, 1] > 0.1
    f[lower, 1] = 0.1 + (f[lower, 1] - 0.1) * length
    for k in (2, 3, 11, 12):
        f[k, 0] *= 1.0 + 0.045 * jaw
    for k in (1, 13):
        f[k, 0] *= 1.0 + 0.06 * jaw
    f[0, 1] += rng.normal(0, 0.02)
    f[6:9, 1] -= rng.normal(0.0, 0.03)
    put(p, "face", f)
    for side, sgn in (("l", -1), ("r", 1)):
        e = pts(p, f"ear_{side}")
        e[:, 0] += sgn * (width - 1.0) * 0.5
        e = scale_about(e, e[[0, -1]].mean(0), rng.normal(1.0, 0.08))
        put(p, f"ear_{side}", e)
    neck = pts(p, "neck")
    neck[:, 0] *= rng.normal(1.0, 0.06) * (1.1 if not fem else 0.95)
    put(p, "neck", neck)

    # eyes
    esize = rng.normal(1.0, 0.09) * (1.12 if child else 1.0)
    espace = rng.normal(0.0, 0.015)
    open_ = rng.normal(1.0, 0.15)
    tilt = rng.normal(0.0, 3.0)
    iris_name = rng.choice(list(IRIS_COLORS), p=[0.35, 0.25, 0.12, 0.08, 0.14, 0.06] if tone < 0.35
                           else [0.6, 0.3, 0.07, 0.01, 0.01, 0.01])
    iris = np.array(IRIS_COLORS[iris_name]) * rng.uniform(0.9, 1.1)
    for side, sgn in (("l", -1), ("r", 1)):
        up, lo, cr = pts(p, f"eye_{side}_upper"), pts(p, f"eye_{side}_lower"), pts(p, f"eye_{side}_crease")
        c = 0.5 * (up[0] + up[-1])
        shift = np.array([sgn * espace, 0], np.float32)
        up[1:-1, 1] = c[1] + (up[1:-1, 1] - c[1]) * open_
        for arr in (up, lo, cr):
            arr[:] = rotate_about(scale_about(arr, c, esize), c, -sgn * tilt) + shift
        put(p, f"eye_{side}_upper", up)
        put(p, f"eye_{side}_lower", lo)
        put(p, f"eye_{side}_crease", cr)
        ic = 0.5 * (up[0] + up[-1])
        p[S.index(f"iris_{side}.cx")] = ic[0]
        p[S.index(f"iris_{side}.cy")] = ic[1] - 0.004
        p[S.index(f"iris_{side}.radius")] = 0.043 * esize * min(1.0, 0.85 + 0.15 * open_)
        set_rgb(p, f"iris_{side}", iris)
        p[S.index(f"lashes_{side}.length")] = rng.uniform(0.012, 0.024) if fem else rng.uniform(0.0, 0.008)
        p[S.index(f"eye_{side}_upper.w1")] = (0.02 if fem else 0.014) * rng.uniform(0.8, 1.2)

    # hair colour (also brows)
    if age > 65 and rng.random() < 0.7:
        hair_name = rng.choice(["gray", "white"])
    elif age > 45 and rng.random() < 0.35:
        hair_name = "gray"
    elif tone > 0.5:
        hair_name = rng.choice(["black", "dark_brown"], p=[0.7, 0.3])
    else:
        hair_name = rng.choice(["black", "dark_brown", "brown", "light_brown", "blond", "red"],
                               p=[0.15, 0.3, 0.22, 0.13, 0.14, 0.06])
    hair = np.array(HAIR_COLORS[hair_name], np.float32) * rng.uniform(0.9, 1.1)
    brow_col = hair * 0.8 if hair_name not in ("blond", "white", "gray") else hair * 0.65

    # brows
    thick = rng.normal(1.0, 0.2) * (1.25 if not fem else 0.85)
    arch = rng.normal(0.0, 0.012) + (0.008 if fem else 0.0)
    bshift = rng.normal(0.0, 0.015)
    for side in ("l", "r"):
        b = pts(p, f"brow_{side}")
        b[:, 1] += bshift
        b[1:4, 1] -= arch * np.array([0.6, 1.0, 0.8])
        put(p, f"brow_{side}", b)
        p[S.index(f"brow_{side}.w0")] = np.clip(0.030 * thick, 0.008, 0.09)
        p[S.index(f"brow_{side}.mid_width")] = np.clip(0.026 * thick, 0.006, 0.09)
        p[S.index(f"brow_{side}.w1")] = np.clip(0.012 * thick, 0.003, 0.09)
        p[S.index(f"brow_{side}.hairiness")] = rng.uniform(0.2, 0.9)
        set_rgb(p, f"brow_{side}", brow_col)

    # nose
    nwidth = rng.normal(1.0, 0.1) + 0.12 * tone
    nlen = rng.normal(0.0, 0.02) - (0.03 if child else 0.0)
    for feat in ("nose_base", "nostril_l", "nostril_r", "nose_shadow", "nose_highlight"):
        q = pts(p, feat)
        q[:, 0] *= nwidth
        q[:, 1] += nlen
        put(p, feat, q)
    nb = pts(p, "nose_bridge")
    nb[-1, 1] += nlen
    nb[:, 0] *= nwidth
    put(p, "nose_bridge", nb)

    # mouth
    mw = rng.normal(1.0, 0.08)
    upper_t = rng.normal(1.0, 0.2) * (1.1 if fem else 0.9)
    lower_t = rng.normal(1.0, 0.2) * (1.1 if fem else 0.95)
    smile = rng.normal(0.0, 0.012)
    openness = rng.uniform(0.02, 0.07) if rng.random() < 0.15 else 0.0
    mc = np.array([0.0, 0.40], np.float32)
    for feat, thick_k in (("lip_upper_outer", upper_t), ("lip_lower_outer", lower_t),
                          ("lip_inner_upper", 1.0), ("lip_inner_lower", 1.0)):
        q = pts(p, feat)
        q[:, 0] *= mw
        q[:, 1] = mc[1] + (q[:, 1] - mc[1]) * thick_k
        q[[0, -1], 1] -= smile
        if feat == "lip_inner_lower":
            q[1:-1, 1] += openness * np.array([0.7, 1.0, 0.7])[: len(q) - 2] if len(q) == 5 else 0
        if feat == "lip_lower_outer":
            q[1:-1, 1] += openness * 0.9
        put(p, feat, q)
    p[S.index("teeth.show")] = 1.0 if openness > 0.035 else 0.0
    lip = skin * np.array([0.95, 0.68, 0.68]) + np.array([0.05, 0.0, 0.02])
    if fem and rng.random() < 0.3:
        lip = np.array([rng.uniform(0.6, 0.85), rng.uniform(0.15, 0.35), rng.uniform(0.2, 0.35)])
    set_rgb(p, "lip_upper_outer", lip * 0.93)
    set_rgb(p, "lip_lower_outer", lip)
    set_rgb(p, "lip_inner_upper", lip * 0.5)
    set_rgb(p, "lip_inner_lower", lip * 0.5)

    # skin and shading colours
    set_skin_colours(p, skin, neck=0.92)
    for side in ("l", "r"):
        p[S.index(f"blush_{side}.opacity")] = rng.uniform(0.06, 0.2) if (fem or child) else rng.uniform(0.0, 0.08)
        p[S.index(f"cheek_shadow_{side}.opacity")] = rng.uniform(0.1, 0.3)
    p[S.index("neck_shadow.opacity")] = rng.uniform(0.3, 0.55)

    # age lines
    aging = np.clip((age - 30) / 50, 0, 1)
    for side in ("l", "r"):
        p[S.index(f"nasolabial_{side}.w0")] = 0.002 + 0.006 * aging
        p[S.index(f"nasolabial_{side}.w1")] = 0.001 + 0.004 * aging
        p[S.index(f"undereye_{side}.w0")] = 0.0
        p[S.index(f"undereye_{side}.w1")] = 0.006 * np.clip((age - 40) / 40, 0, 1)
    p[S.index("forehead_line.w1")] = 0.006 * np.clip((age - 45) / 35, 0, 1)
    if not child and aging < 0.05:
        for side in ("l", "r"):
            p[S.index(f"nasolabial_{side}.w0")] = 0.0
            p[S.index(f"nasolabial_{side}.w1")] = 0.0

    # hair
    if fem:
        style = rng.choice(HAIRSTYLES, p=[0.0, 0.0, 0.01, 0.05, 0.06, 0.12, 0.14, 0.14, 0.18, 0.12, 0.07, 0.04, 0.07])
    elif child:
        style = rng.choice(["short", "fringe", "side_part", "curly", "buzz"])
    else:
        pr = np.array([0.06, 0.12, 0.12, 0.24, 0.16, 0.08, 0.0, 0.08, 0.03, 0.02, 0.05, 0.04, 0.0])
        if age > 50:
            pr[[0, 1]] *= 2.5
        style = rng.choice(HAIRSTYLES, p=pr / pr.sum())
    back, front, curl, layers = hairstyle_contours(p, style, rng)
    if style == "curly" and tone > 0.55:
        curl = max(curl, 0.7)
    put(p, "hair_back", back)
    put(p, "hair_front", front)
    p[S.index("hair_style.curl")] = curl
    p[S.index("hair_style.layers")] = layers
    if style == "side_part":
        p[S.index("hair_style.part_x")] = float(front[0][0])
    p[S.index("hair_style.bank_id")] = HAIRSTYLES.index(style)
    hair_col = hair if style != "buzz" else hair * 0.6 + skin * 0.4
    set_rgb(p, "hair_back", hair_col * 0.85)
    set_rgb(p, "hair_front", hair_col)
    for i, sgn in ((0, -1), (1, 1)):
        hl = pts(p, f"hair_strand{i}")
        g = head_geometry(p)
        hl[:] = np.array([(sgn * 0.05, g["top"] + 0.08), (sgn * 0.22, g["top"] + 0.14),
                          (sgn * 0.36, g["top"] + 0.3)], np.float32)
        put(p, f"hair_strand{i}", hl)
        has = layers > 1 and style not in ("buzz", "bald", "receding")
        p[S.index(f"hair_strand{i}.w0")] = 0.004 if has else 0.0
        p[S.index(f"hair_strand{i}.w1")] = 0.02 if has else 0.0
        set_rgb(p, f"hair_strand{i}", np.clip(hair_col * 1.25 + 0.05, 0, 1))

    # facial hair
    if not fem and not child and age > 17:
        r = rng.random()
        if r < 0.22:  # full beard or stubble
            bd = pts(p, "beard")
            g = head_geometry(p)
            bd[:, 0] *= g["jaw_w"] / 0.44
            bd[0, 1] = g["chin"] + rng.uniform(0.02, 0.10)
            put(p, "beard", bd)
            stubble = rng.random() < 0.4
            p[S.index("beard.opacity")] = rng.uniform(0.25, 0.4) if stubble else rng.uniform(0.85, 1.0)
            set_rgb(p, "beard", hair * 0.9)
        if r < 0.3:
            p[S.index("moustache.w0")] = rng.uniform(0.005, 0.012)
            p[S.index("moustache.w1")] = rng.uniform(0.02, 0.05)
            set_rgb(p, "moustache", hair * 0.85)

    # glasses
    if rng.random() < (0.45 if age > 55 else 0.18):
        sun = rng.random() < 0.15
        p[S.index("glasses.type")] = 2 if sun else 1
        # (lenses about 1.8 eyes wide, flat to tall: the artist's fits of real frames, session 41)
        w = rng.uniform(0.15, 0.20)
        p[S.index("glasses.lens_w")] = w
        p[S.index("glasses.lens_h")] = min(rng.uniform(0.55, 0.95) * w, 0.16)
        p[S.index("glasses.roundness")] = rng.uniform(0.2, 1.0)
        p[S.index("glasses.frame_width")] = rng.uniform(0.006, 0.018)
        frame = rng.choice([(0.1, 0.08, 0.08), (0.45, 0.28, 0.15), (0.7, 0.65, 0.55), (0.2, 0.2, 0.45)])
        set_rgb(p, "glasses", frame, prefix="frame_")
        if sun:
            set_rgb(p, "glasses", (0.08, 0.09, 0.1), prefix="lens_")
            p[S.index("glasses.lens_opacity")] = rng.uniform(0.8, 0.95)

    # headwear
    if rng.random() < 0.08 and style not in ("afro", "bun"):
        p[S.index("headwear.type")] = rng.choice([1, 2, 3])
        set_rgb(p, "headwear", rng.choice(CLOTHES))
        p[S.index("headwear.band_y")] = rng.uniform(-0.62, -0.48)
        p[S.index("headwear.crown")] = rng.uniform(0.1, 0.35)
        p[S.index("headwear.brim")] = rng.uniform(0.1, 0.35)

    # clothes
    set_rgb(p, "clothes", np.array(CLOTHES[rng.integers(len(CLOTHES))]) * rng.uniform(0.85, 1.1))
    cl = pts(p, "clothes")
    cl[2, 1] += rng.uniform(-0.06, 0.12)
    put(p, "clothes", cl)
    return S.clip(p)


def sample(n: int, seed: int = 0) -> np.ndarray:
    """``n`` plausible random avatars, float32 (n, 629), reproducible by seed."""
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 0:
        raise ValueError(f"n must be a non-negative integer, got {n!r}")
    if isinstance(seed, (bool, np.bool_)) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r:.40}")
    rng = np.random.default_rng(int(seed))
    out = np.empty((int(n), S.PARAM_COUNT), np.float32)
    for i in range(int(n)):
        out[i] = random_avatar(rng)
    return out
