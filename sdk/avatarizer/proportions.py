"""A child's head: taller above the brows than an adult's, by age, and a
young child's face (:func:`child_face`).

A young child's skull is large for the face under it. Measured on the
photos of ``ffhq128-labelled`` whose head lies inside the photo (468), the
person mask's top above the eye line over the eye-line to chin distance
has a median of 1.126 at 0-2 years (21 photos), 1.083 at 3-5 (21), 1.038 at
6-9 (21), 1.011 at 10-12 (9) and 0.98 at 18 and over (385). The auto-artist
draws the skull top at a fixed fraction of the eye-line to chin distance
above the eyes (``ArtistStyle.cranium``), so every avatar had an adult's
head: the drawn ratio's median is 0.79 at 0-2 years and 0.81-0.82 for
adults (996 held-out UTKFace faces through ``Avatarizer()``).

:func:`child_head` stretches what lies above the brows (skull, hair,
forehead lines; a hat stays where it was placed) so that the head above
the eye line is :func:`cranium_scale` times as tall: the brows, eyes and
everything below them stay where the landmarks put them, the hair keeps
covering the skull (it is stretched with it) and a fringe that ends at the
brows still does.
The merge stage (:func:`avatarizer.pipeline.merge.merge_face`) applies it
with the age the hair stage reports (the attribute regressor's combined
with the artist's own estimate, :func:`avatarizer.hair.fuse_age`, session
28; not one read under a face mask) or an age the app set; the auto-artist
alone (``estimator="artist"``) does not: its own estimate alone read 19% of
18-30-year-olds as under 18.
"""
from __future__ import annotations

import numpy as np

from . import prior as P
from . import schema as S
from .checks import is_real

#: (years, how much taller than an adult's the head is above the eye line,
#: relative to the eye-line to chin distance): the measured medians of the
#: module docstring over the adults' 0.98, at each age band's middle; 1 from 18
CRANIUM_BY_AGE = ((1.5, 1.149), (4.5, 1.105), (8.0, 1.059), (11.5, 1.032), (18.0, 1.0))

#: the features whose points above the brows are stretched with the skull
#: (the face outline's skull cap, both hair layers and strands, the forehead
#: line and highlight)
STRETCHED = ("face", "hair_back", "hair_front", "hair_strand0", "hair_strand1", "forehead_line",
             "forehead_highlight")

#: the y parameters of :data:`STRETCHED`
_Y = np.array([S.index(r["name"]) for r in S.table() if r["feature"] in STRETCHED and r["kind"] == "y"])
#: the skull cap's top point (``face`` point 7)
_TOP = S.index("face.y7")
_HAT_TYPE, _CROWN = S.index("headwear.type"), S.index("headwear.crown")
_UPPER_LIDS = np.array([S.index(r["name"]) for r in S.table()
                        if r["feature"] in ("eye_l_upper", "eye_r_upper") and r["kind"] == "y"])
#: the skull top must lie at least this far above the brows for the stretch (else nothing moves)
MIN_SPAN = 0.05
#: the stretch stops where the highest stretched point reaches this height, just under the top
#: edge of the picture (the canonical frame's [-1, 1] square, what ``render`` fits): a child's
#: hair is not cut off by the picture's edge (23 of the 329 held-out UTKFace children under 13
#: reached it without this stop, 6 before the stretch)
FRAME_TOP = -0.95


def cranium_scale(age) -> float:
    """How much taller than an adult's (1) a face of ``age`` years has its
    head above the eye line (:data:`CRANIUM_BY_AGE`, interpolated, held at
    its ends; 1 for None, a bool or an age that is not a finite number)."""
    if not is_real(age):
        return 1.0
    t = np.asarray(CRANIUM_BY_AGE, np.float64)
    return float(np.interp(float(age), t[:, 0], t[:, 1]))


def child_head(params, age) -> np.ndarray:
    """A copy of the (629,) ``params`` (made valid first,
    :func:`avatarizer.schema.clip`) with the head above the brows stretched
    upward so that the skull top lies :func:`cranium_scale` of ``age`` times
    as far above the eye line (the upper lids' mean height) as it did. A
    height ``y`` above the brows' top ``b`` goes to ``b - k (b - y)``;
    heights at or below ``b`` do not move, so the face, a fringe that ends at
    the brows and long hair's ends stay put.

    A hat stays where it was placed (at the photo's heights above the brows,
    ``headwear.place``, or over the skull where the photo does not show it):
    its band and its top keep their heights, its crown reaching at least
    :data:`avatarizer.headwear.MIN_CROWN` over the taller skull (only then
    does its top rise), and the hair is tucked under it again
    (:func:`avatarizer.prior.hair_under_the_hat`).

    The stretch stops where the highest stretched point (or the lowest top a
    hat may have) reaches :data:`FRAME_TOP`; when one is already there or
    above it, nothing moves. Returned valid; an adult's head, or a skull
    that does not lie :data:`MIN_SPAN` above the brows, unchanged."""
    p = S.clip(params).astype(np.float64)
    s = cranium_scale(age)
    eye, top, brow = float(p[_UPPER_LIDS].mean()), float(p[_TOP]), P.brow_top(p)
    if s <= 1.0 or not brow - top >= MIN_SPAN or not eye > brow:
        return p.astype(np.float32)
    kind = int(round(float(p[_HAT_TYPE])))
    y = p[_Y]
    k = (brow - (eye - s * (eye - top))) / (brow - top)
    k = min(k, (brow - FRAME_TOP) / (brow - float(y.min())))  # the highest stretched point stops at the edge
    if kind > 0:
        from .headwear import MIN_CROWN

        lift = P.crown_lift(kind)
        hat_top = P.hat_crown(p)[3]
        # the lowest top the hat may have lies this far over the skull top: it stops at the edge too
        k = min(k, (brow - FRAME_TOP - (P.HAT_GAP + MIN_CROWN * lift)) / (brow - top))
    if not k > 1.0:
        return p.astype(np.float32)
    p[_Y] = P.stretched_up(y, brow, k)
    if kind > 0:
        p[_CROWN] = max((p[_TOP] - P.HAT_GAP - hat_top) / lift, MIN_CROWN)
        P.hair_under_the_hat(p)
    return S.clip(p.astype(np.float32))


# ------------------------------------------------------------ a child's face
#: (years, weight): how much of :func:`child_face` a face of that age gets
#: (interpolated, held at its ends): all of it to 2 years, none from 12
CHILD_FACE_BY_AGE = ((2.0, 1.0), (12.0, 0.0))
#: at weight 1: the eyes (lids, crease, iris) this much larger about the iris
#: centre, the nose this much smaller about its base's middle, the lips' colours
#: this far toward the skin's, and the neck's visible length (chin to the
#: clothes' neckline) this much shorter
CHILD_EYES, CHILD_NOSE, CHILD_LIPS, CHILD_NECK = 0.28, 0.3, 0.35, 0.55
#: the lines an adult's face has and a young child's has not: their widths go to 0 at weight 1
CHILD_NO_LINES = ("nasolabial_l", "nasolabial_r", "undereye_l", "undereye_r", "forehead_line")


def _pts(feature: str, axis: str) -> np.ndarray:
    return np.array([S.index(r["name"]) for r in S.table() if r["feature"] == feature and r["kind"] == axis])


def _rgb(feature: str) -> np.ndarray:
    return np.array([S.index(f"{feature}.{c}") for c in "rgb"])


_EYES = {side: ([_pts(f"eye_{side}_{part}", a) for part in ("upper", "lower", "crease") for a in "xy"],
                S.index(f"iris_{side}.cx"), S.index(f"iris_{side}.cy"), S.index(f"iris_{side}.radius"))
         for side in "lr"}
_NOSE = ("nose_base", "nostril_l", "nostril_r", "nose_bridge", "nose_shadow", "nose_highlight")
_NOSE_X = np.concatenate([_pts(f, "x") for f in _NOSE])
_NOSE_Y = np.concatenate([_pts(f, "y") for f in _NOSE])
_NOSE_BASE_X, _NOSE_BASE_Y = _pts("nose_base", "x"), _pts("nose_base", "y")
_LIPS_RGB = [_rgb(f) for f in ("lip_upper_outer", "lip_lower_outer")]
_SKIN_RGB = _rgb("face")
_LINE_WIDTHS = np.array([S.index(f"{f}.{w}") for f in CHILD_NO_LINES for w in ("w0", "w1")])
#: the upper lids' and the brows' stroke widths, this much thinner at weight 1 (an adult's lined lids and
#: full brows read as make-up on a toddler)
CHILD_THIN = 0.3
_THIN = np.array([S.index(f"{f}.{w}") for f in ("eye_l_upper", "eye_r_upper", "brow_l", "brow_r")
                  for w in ("w0", "w1")])
_CHIN = S.index("face.y0")
_CLOTHES_Y = _pts("clothes", "y")
_NECKLINE = S.index("clothes.y2")  # the neckline's middle (under the chin)


def child_weight(age) -> float:
    """How much of :func:`child_face` a face of ``age`` years gets (0 for
    None, a bool, an age that is not a finite number, and from 12 years)."""
    if not is_real(age):
        return 0.0
    t = np.asarray(CHILD_FACE_BY_AGE, np.float64)
    return float(np.interp(float(age), t[:, 0], t[:, 1]))


def child_face(params, age) -> np.ndarray:
    """A copy of the (629,) ``params`` (made valid first) drawn as a young
    child's face, by :func:`child_weight` of ``age``: larger eyes (lids,
    crease and iris scaled about the iris centre, :data:`CHILD_EYES`), a
    smaller nose (:data:`CHILD_NOSE`, about its base's middle), lips
    coloured nearer the skin (:data:`CHILD_LIPS`: a child's are not
    tinted), thinner upper lids and brows (:data:`CHILD_THIN`), none of
    the lines of :data:`CHILD_NO_LINES` (what the face
    estimate read as folds on a toddler's cheeks) and a shorter neck (the
    clothes raised so that the neckline's middle comes nearer the chin,
    :data:`CHILD_NECK`). The
    places the landmarks give (the eyes' and the nose's centres, the mouth,
    the face outline) stay. Every child was drawn with an adult's eyes,
    nose, lines and neck under a child's taller skull (:func:`child_head`;
    a review's contact sheet: 24 of 24). Returned valid; unchanged (a
    copy) from 12 years."""
    p = S.clip(params).astype(np.float64)
    w = child_weight(age)
    if w <= 0.0:
        return p.astype(np.float32)
    s = 1.0 + CHILD_EYES * w
    for (xy, cx, cy, radius) in _EYES.values():
        c = (p[cx], p[cy])
        for k, idx in enumerate(xy):
            p[idx] = c[k % 2] + s * (p[idx] - c[k % 2])
        p[radius] *= s
    n = 1.0 - CHILD_NOSE * w
    nx, ny = float(p[_NOSE_BASE_X].mean()), float(p[_NOSE_BASE_Y].mean())
    p[_NOSE_X] = nx + n * (p[_NOSE_X] - nx)
    p[_NOSE_Y] = ny + n * (p[_NOSE_Y] - ny)
    for rgb in _LIPS_RGB:
        p[rgb] += CHILD_LIPS * w * (p[_SKIN_RGB] - p[rgb])
    p[_LINE_WIDTHS] *= 1.0 - w
    p[_THIN] *= 1.0 - CHILD_THIN * w
    gap = float(p[_NECKLINE]) - float(p[_CHIN])  # the neck's visible length, under the chin
    if gap > 0:
        p[_CLOTHES_Y] -= CHILD_NECK * w * gap
    return S.clip(p.astype(np.float32))
