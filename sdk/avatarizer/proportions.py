"""A child's head: taller above the brows than an adult's, by age.

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
    p[_Y] = np.where(y < brow, brow - k * (brow - y), y)
    if kind > 0:
        p[_CROWN] = max((p[_TOP] - P.HAT_GAP - hat_top) / lift, MIN_CROWN)
        P.hair_under_the_hat(p)
    return S.clip(p.astype(np.float32))
