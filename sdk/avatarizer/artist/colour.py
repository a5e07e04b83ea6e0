"""Colour: skin, lips, teeth, irises and brows sampled from the photo."""
from __future__ import annotations

import functools

import numpy as np

from .. import prior as P
from .. import skintone as ST
from .. import schema as S
from ..landmarks import (
    BROW_OUTLINE,
    FOREHEAD_PATCH,
    LIPS_INNER,
    LIPS_OUTER,
    NOSE_PATCH,
)
from .geometry import cheek_discs
from .photo import (
    landmark_index,
    clamp,
    clip,
    Photo,
    from_lab,
    gain,
    luma_of,
    norm,
    robust_median,
    set_rgb,
    to_lab,
)
from .stats import mean, median, percentile


def _matte(px: np.ndarray) -> np.ndarray:
    """Skin pixels without specular sheen: the bright pixels (upper quarter of
    luminance) that have lost 30% of the chroma against the rest (light reflected off
    the surface is white and hides the skin's colour)."""
    if len(px) < 12:
        return px
    lab = to_lab(px)
    chroma = np.hypot(lab[:, 1], lab[:, 2]) / np.maximum(lab[:, 0], 1.0)
    bright = lab[:, 0] > percentile(lab[:, 0], 75)
    ref = median(chroma[~bright])
    keep = ~(bright & (chroma < 0.7 * ref))
    return px[keep] if np.count_nonzero(keep) >= 8 else px


#: a pixel whose darkest channel reaches this is blown out (a flash hotspot,
#: a sunlit cheek): near white, it shows the exposure, not the skin's colour
#: (resampling softens clipped 255s to ~0.97, so the test is on all channels)
CLIPPED = 0.88


def _clipped(px: np.ndarray) -> np.ndarray:
    return px.min(1) >= CLIPPED


def _blown(px: np.ndarray, clipped: np.ndarray | None = None) -> bool:
    """Most of a patch's pixels are blown out (or it has none); ``clipped``:
    ``_clipped(px)`` when already known."""
    return len(px) == 0 or float(mean(_clipped(px) if clipped is None else clipped)) > 0.5


#: A patch whose median colour has less CIELAB chroma than this, or a hue
#: angle outside :data:`SKIN_HUES` (degrees), does not show skin (of 4,000
#: upper cheeks of 2,000 photos, FFHQ, UTKFace and StyleGAN, session 27: 1%
#: have less chroma, black-and-white photos and cheeks blown out by a flash,
#: 0.3% another hue, a magenta or green cast or face paint). Used for the
#: skin that stands in for cheeks under a face mask (:func:`_uncovered_skin`).
SKIN_MIN_CHROMA = 6.0
SKIN_HUES = (-40.0, 110.0)
#: A face mask covers the cheeks and the mouth with one piece of cloth: the
#: lips' median colour (:func:`measured_lip`) lies within this CIELAB
#: distance of the cheeks' (the lightness counted at :data:`CLOTH_L_WEIGHT`).
#: Without a mask the lips are darker or redder than the cheeks, and a
#: colour cast moves both alike: of 1,000 photos
#: (session 27) the distance's 1st percentile is 6.3 and its median 22; a
#: flat synthetic mask gives 0. (A first rule that took cheeks of no skin's
#: colour alone for a mask took a bluish or greenish white balance for one:
#: up to 50 of 1,197 photos under a moderate cast, their skin drawn from a
#: fringe, near black; a review. Without the cheeks' colour, the mouth alone
#: took 4 of 3,361 unmasked faces with pale lips for masked ones.)
MOUTH_AS_CHEEKS_DE = 5.0
#: ... and the forehead and nose stand in for the covered cheeks only where
#: their skin is at least this far from the cheeks' colour (CIELAB
#: distance): a mask of about the skin's colour is drawn as it is
COVER_DE = 15.0
#: ... and only those of the forehead and nose that show skin with at least
#: this chroma (the 5th percentile of the 4,000 cheeks' above): in a photo
#: drained of colour a dark fringe over the forehead (chroma 6.1) stood in
#: for a baby's grey cheeks
STAND_IN_CHROMA = 10.0


def shows_skin(rgb) -> bool:
    """Whether a patch's median colour (float sRGB) can be skin in some
    photo's light (:data:`SKIN_MIN_CHROMA`, :data:`SKIN_HUES`)."""
    if rgb is None:
        return False
    return lab_shows_skin(to_lab(clip(np.asarray(rgb, np.float64), 0, 1)))


def lab_shows_skin(lab, min_chroma: float = SKIN_MIN_CHROMA) -> bool:
    """:func:`shows_skin` of a CIELAB colour (``min_chroma``: the least chroma, :data:`STAND_IN_CHROMA`
    for a patch that stands in for covered cheeks)."""
    _, a, b = (float(v) for v in np.asarray(lab, np.float64).reshape(3))
    hue = float(np.degrees(np.arctan2(b, a)))
    return float(np.hypot(a, b)) >= min_chroma and SKIN_HUES[0] <= hue <= SKIN_HUES[1]


#: :data:`MOUTH_AS_CHEEKS_DE`'s distance counts this much of the lightness
#: difference: a mask's folds and the light from above shade its lower part
#: (a light blue mask 20% darker at the mouth than at the cheeks was found
#: on 0 of 35 faces with the plain distance, a review); shading moves the
#: lightness far more than the colour
CLOTH_L_WEIGHT = 0.4


def _cloth_distance(lab, covered) -> float:
    """CIELAB distance with the lightness difference weighted by :data:`CLOTH_L_WEIGHT`."""
    d = np.asarray(lab, np.float64) - np.asarray(covered, np.float64)
    return float(np.sqrt((CLOTH_L_WEIGHT * d[0]) ** 2 + d[1] ** 2 + d[2] ** 2))


def _uncovered_skin(st, photo: Photo, lm, raw) -> np.ndarray | None:
    """Under a face mask, the skin of the lower forehead and the nose: where
    neither cheek shows skin's colour (:func:`shows_skin`: a black, grey,
    blue or green mask; a red, pink or beige one is drawn as skin), the
    mouth shows the cheeks' colour (:data:`MOUTH_AS_CHEEKS_DE`: one cloth
    over both; a colour cast leaves the lips their own), neither cheek is
    mostly blown out by the light (:func:`_blown`: a white cheek is the
    exposure's, so a white mask is not told from one: session 28 left out
    only cheeks saturated to the sensor's white and found white masks, but
    a review found overexposed faces under tone curves, filters and a sunlit
    lower face taken for masked, 2-141 of 500, drawn from a fringe), and
    those of the two patches that show skin with
    :data:`STAND_IN_CHROMA` are at least :data:`COVER_DE` from the cheeks'
    colour; else None (the cheeks are read as skin)."""
    lo_pc, hi_pc = st.skin_percentiles
    if any(len(px) < 8 or _blown(px) for px in raw):  # (cheeks blown out by the light: the exposure's, below)
        return None
    cheeks = [robust_median(px, lo_pc, hi_pc) for px in raw]
    if any(shows_skin(c) for c in cheeks):
        return None  # (almost every face: the lips are not read here; a mask of a skin's colour is drawn as it is)
    lip = measured_lip(photo, lm)
    mouth = photo.region_pixels(lm[list(LIPS_OUTER)])  # the lips and what shows between them (teeth)
    if lip is None or len(mouth) < 8:
        return None
    covered = to_lab(clip(np.mean(cheeks, 0), 0, 1))
    if any(_cloth_distance(to_lab(clip(c, 0, 1)), covered) >= MOUTH_AS_CHEEKS_DE
           for c in (lip, robust_median(mouth, 15, 85))):
        return None  # lips or teeth of their own colour: no cloth over the mouth
    rest = [_matte(photo.region_pixels(lm[list(q)])) for q in (FOREHEAD_PATCH, NOSE_PATCH)]
    rest = [px for px in rest if len(px) >= 8
            and lab_shows_skin(to_lab(clip(robust_median(px, lo_pc, hi_pc), 0, 1)), STAND_IN_CHROMA)]
    if not rest:
        return None
    skin = robust_median(np.concatenate(rest), lo_pc, hi_pc)
    return skin if float(norm(to_lab(clip(skin, 0, 1)) - covered)) > COVER_DE else None


def skin_colour(st, photo: Photo, lm, discs, info: dict | None = None) -> np.ndarray | None:
    """The skin as it looks in good light: robust medians (between the
    luminance percentiles ``st.skin_percentiles``) of the two upper-cheek
    discs, where skin is rarely covered (the forehead has fringes and hats,
    the nose highlights). Under even light both cheeks count; as they differ
    in lightness (side light) the estimate moves to the brighter cheek, so
    the shadow side never darkens the skin. Blown-out pixels (a flash
    hotspot, a sunlit cheek: all channels near white) are left out unless
    both cheeks are mostly blown, so the brighter-cheek rule never picks an
    overexposed white; a cheek with nothing left is replaced by the other
    one. Forehead and nose only stand in when a cheek is not in the photo,
    or under a face mask (:func:`_uncovered_skin`: the mouth shows the
    cheeks' colour; an ``info`` dict then gets ``"cheeks_covered": True``)."""
    lo_pc, hi_pc = st.skin_percentiles
    raw = [photo.region_pixels(discs=[d]) for d in discs]
    uncovered = _uncovered_skin(st, photo, lm, raw)
    if uncovered is not None:
        if info is not None:
            info["cheeks_covered"] = True
        return uncovered
    clipped = [_clipped(px) for px in raw]
    # blown-out pixels show the exposure, not the skin (unless the whole photo is)
    kept = raw if all(_blown(px, c) for px, c in zip(raw, clipped)) else [px[~c] for px, c in zip(raw, clipped)]
    cheeks = [_matte(px) for px in kept]
    meds = [robust_median(px, lo_pc, hi_pc) if len(px) >= 8 else None for px in cheeks]
    lost = [m is None and len(px) >= 8 for m, px in zip(meds, raw)]  # in the photo, but blown out
    if any(lost) and not all(m is None for m in meds):
        return next(m for m in meds if m is not None)  # the other cheek (not forehead and fringe)
    if any(m is None for m in meds):
        rest = [photo.region_pixels(lm[list(q)]) for q in (FOREHEAD_PATCH, NOSE_PATCH)]
        return robust_median(np.concatenate(cheeks + rest), lo_pc, hi_pc)
    every = robust_median(np.concatenate(cheeks), lo_pc, hi_pc)
    light = to_lab(np.stack(meds))[:, 0]
    lo, hi = st.lit_side
    t = clamp((abs(light[0] - light[1]) - lo) / max(hi - lo, 1e-6), 0.0, 1.0)
    return (1.0 - t) * every + t * meds[int(np.argmax(light))]


def skin_locus(st, rgb) -> np.ndarray:
    """``rgb`` moved onto the colours skin has in white light: its CIELAB hue
    angle clipped to ``st.skin_hue`` and, of its chroma, what lies along
    that hue (the rest is the cast's), clipped to ``st.skin_chroma``, at the
    same lightness; the further the hue was outside the range, the nearer
    the range's middle it goes. A colour cast (blue or purple skin under a cold
    white balance, a green fluorescent tint) is taken out; a black-and-white
    photo gets a neutral skin tone (hue the range's middle) of its own
    lightness; skin within the range is not touched."""
    L, a, b = to_lab(rgb)
    chroma = float(np.hypot(a, b))
    h_lo, h_hi = st.skin_hue
    c_lo, c_hi = st.skin_chroma
    measured = np.degrees(np.arctan2(b, a))
    hue = clamp(measured, h_lo, h_hi)
    # of the chroma, what lies along the skin hue is kept; the rest is the cast's (a cool white
    # balance read hue -35 deg, chroma 14: clipped to 20 deg with all of it, the skin was pink)
    kept = max(float(np.cos(np.radians(measured - hue))), 0.0)
    # a grey has no hue of its own, and the further outside the range, the less the hue tells
    w = min(chroma / max(c_lo, 1e-6), 1.0) * kept
    hue = w * hue + (1.0 - w) * 0.5 * (h_lo + h_hi)
    c = clamp(chroma * kept, c_lo, c_hi)
    return from_lab(np.array([L, c * np.cos(np.radians(hue)), c * np.sin(np.radians(hue))]))


#: The neck's colour against the skin (``prior.set_skin_colours``'s ``neck``) in the artist's drawings.
NECK = 0.9


def measured_skin(st, photo: Photo, lm, g) -> np.ndarray | None:
    """:func:`skin_colour` on the upper-cheek discs (kept in
    ``g["cheek_discs"]``), moved onto the skin locus (:func:`skin_locus`: no
    colour cast), then its chroma into the band of skin in good light at its
    lightness (``st.skin_chroma_lit``,
    :func:`avatarizer.skintone.chroma_in_good_light`: not grey, not orange);
    otherwise as sampled, no colour gain; None when the photo
    shows no skin there. ``g["cheeks_covered"]``: the cheeks showed no skin
    (a face mask) and the forehead and nose were read instead."""
    discs = cheek_discs(lm, g)
    g["cheek_discs"] = discs
    skin = skin_colour(st, photo, lm, discs, info=g)
    if skin is None:
        return None
    raw = clip(skin, 0, 1)
    located = clip(skin_locus(st, raw), 0, 1)
    g["skin_cast"] = (raw, located)  # the photo's colour cast, as the skin shows it (iris_colour)
    # (the lower ceiling off good light's hue belongs to the default band: a style's own band is kept whole)
    off_hue = ST.DRAWN_CHROMA_OFF_HUE if st.skin_chroma_lit == ST.DRAWN_CHROMA else None
    return clip(ST.chroma_in_good_light(located, st.skin_chroma_lit, off_hue=off_hue), 0, 1)


def network_skin_tone(st, photo: Photo, g) -> float | None:
    """The skin tone (Monk step 1-10) the skin-tone network reads on the
    crop as the region networks read it (:mod:`avatarizer.skintone`'s
    :data:`~avatarizer.skintone.NETWORK`, the one the hybrid draws the skin
    by); None with ``st.skin_tone_network`` off, under a face mask
    (``g["cheeks_covered"]``: the hybrid reads no tone there either),
    without the network's files, or for a reading that is not finite."""
    if not st.skin_tone_network or g.get("cheeks_covered"):
        return None
    net = ST.load_network()
    if net is None:
        return None
    read = net.probabilities(photo.network_crop())
    return ST.tone_of_network(read) if np.isfinite(read["skin_tone"]) else None


@functools.lru_cache(maxsize=1)
def tone_indices() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(3,), (4, 3), (2, 3) and (2, 3) parameter indices: the skin's colour
    (``face.rgb``), the lips' colours (``artist.colour.LIP_FEATURES``), the
    beard's and moustache's, and the irises', which :func:`draw_in_tone` moves."""
    out = (np.array([S.index(f"face.{c}") for c in "rgb"]),
           np.array([[S.index(f"{feat}.{c}") for c in "rgb"] for feat in LIP_FEATURES]),
           np.array([[S.index(f"{feat}.{c}") for c in "rgb"] for feat in ("beard", "moustache")]),
           np.array([[S.index(f"{feat}.{c}") for c in "rgb"] for feat in ("iris_l", "iris_r")]))
    for a in out:
        a.setflags(write=False)  # (cached and shared)
    return out


def draw_in_tone(params: np.ndarray, tone, *, set_by_app: bool = False, grey_facial_hair: bool = False) -> bool:
    """In place: the skin of the avatar vector ``params`` drawn in the skin
    tone ``tone`` (a Monk step): its L* within :data:`MARGIN` of the tone's
    lightness (:func:`avatarizer.skintone.skin_by_tone`), or at that lightness for a tone the
    app set (``set_by_app``, :func:`avatarizer.skintone.skin_of_set_tone`), with the colours
    :func:`avatarizer.prior.set_skin_colours` derives from it; the lips
    relit as the skin was (:func:`avatarizer.skintone.relight`: read in the photo's light, their
    contrast kept); grey facial hair (``grey_facial_hair``: drawn as its lit
    strands in the photo's light) lifted by the skin's change of exposure
    alone and never darkened, not with a tone the app set; the irises by the
    skin's change of exposure alone, both ways, not with a tone the app set
    (light eyes in a dim photo read dark: on the 288 held-out photos whose
    eye colour is labelled by eye, light against dark eyes told apart by the
    drawn lightness at ROC AUC 0.854 as measured, 0.869 relit; session 53). The merge stage's
    rule and the auto-artist's. True when the skin moved."""
    skin_i, lip_i, hair_i, iris_i = tone_indices()
    skin = params[skin_i].astype(np.float64)
    toned = ST.skin_of_set_tone(skin, tone) if set_by_app else ST.skin_by_tone(skin, tone)
    if toned is skin:
        return False
    P.set_skin_colours(params, toned, neck=NECK)
    params[lip_i] = ST.relight(params[lip_i], skin, toned)
    if not set_by_app:  # the irises in the skin's light: the change of exposure alone (a hue of their own)
        params[iris_i] = ST.relight(params[iris_i], skin, toned, balance=False)
    if grey_facial_hair and not set_by_app:
        # a grey beard stays grey where the skin's hue moved; strands sampled at 128 px are darker than they look
        params[hair_i] = np.maximum(ST.relight(params[hair_i], skin, toned, balance=False), params[hair_i])
    return True


#: the lip features whose colours :func:`lip_colours` sets
LIP_FEATURES = ("lip_upper_outer", "lip_lower_outer", "lip_inner_upper", "lip_inner_lower")


#: a lip colour measured on the photo reads as lips only when it has at least this CIELAB
#: chroma (:data:`LIP_DARK_MIN_CHROMA` below :data:`LIP_DARK_L` L*) and a hue angle within
#: :data:`LIP_HUE` (degrees; pink to orange-brown) (:func:`lips_plausible`). Black, grey or
#: white tape and microphones (warm-tinted ones too), teal or blue pacifiers and
#: black-and-white photos fail it; lips of every skin tone pass, and so do red, orange or pink
#: objects, dark brown ones and a hand (colour alone cannot tell them from lips). Of 1,288
#: held-out photos (``ffhq128``, ``ffhq128-labelled``, UTKFace; session 26, scratch
#: ``/tmp/s26/lipan.py``) 24 fail it: 14 black-and-white, 3 covered (tape, two pacifiers), 7
#: pale, dark or pink lips; by UTKFace race 0-4% per group. The median lip has chroma 30.8 and hue 31.7
#: degrees. A first rule, redder than the skin and at most 37 L* darker, failed 150 (9 of the
#: 36 Black faces); a second, chroma 6 and hue -10 to 75, failed 38 (20 of them natural pink
#: or mauve lips, 8 children's) and passed warm greys (read-only reviews)
LIP_MIN_CHROMA = 8.0
LIP_HUE = (-30.0, 70.0)
LIP_DARK_L = 30.0
LIP_DARK_MIN_CHROMA = 12.0


def lips_plausible(lip) -> bool:
    """Whether a lip colour measured on the photo (float sRGB) reads as lips:
    its chroma at least :data:`LIP_MIN_CHROMA` (:data:`LIP_DARK_MIN_CHROMA`
    where darker than :data:`LIP_DARK_L`) and its hue within :data:`LIP_HUE`
    (False for a colour that is not finite)."""
    lip = np.asarray(lip, np.float64)
    if lip.shape != (3,) or not np.isfinite(lip).all():
        return False
    L, a, b = to_lab(np.clip(lip, 0.0, 1.0))
    hue, chroma = float(np.degrees(np.arctan2(b, a))), float(np.hypot(a, b))
    least = LIP_DARK_MIN_CHROMA if L < LIP_DARK_L else LIP_MIN_CHROMA
    return bool(chroma >= least and LIP_HUE[0] <= hue <= LIP_HUE[1])


def measured_lip(photo: Photo, lm, cast=None) -> np.ndarray | None:
    """The lips' colour in the photo: the robust median inside the outer
    contour, outside the mouth opening (None where they are not in the crop);
    with ``cast`` (:func:`measured_skin`'s ``g["skin_cast"]``) the photo's
    colour cast taken out as the skin shows it, as :func:`iris_colour` does
    (the skin is drawn on the skin locus: under a cool white balance the
    lips stayed lavender beside it, 22 of the 102 `ffhq128` photos whose
    skin the locus moved more than 5 ΔE drawn with a lip hue under 5°)."""
    lip = robust_median(photo.region_pixels(lm[list(LIPS_OUTER)], minus=[lm[list(LIPS_INNER)]]), 15, 85)
    if lip is not None and cast is not None:
        lip = clip(ST.relight(lip, *cast), 0, 1)
    return lip


def lip_colours(st, p, lm, photo: Photo, skin, lip=None, cast=None) -> np.ndarray:
    """Sets, in place, the lips' colours from the photo (inside the outer
    contour, outside the mouth opening; a touch toward the skin-derived lip
    colour, as flat fills read darker than photos; the skin-derived colour
    where the lips are not in the crop) and returns the lower lip's.
    ``lip``: :func:`measured_lip`, when already measured; else measured
    with ``cast`` taken out."""
    if lip is None:
        lip = measured_lip(photo, lm, cast)
    if lip is None:
        lip = skin * np.array([0.95, 0.68, 0.68]) + np.array([0.05, 0.0, 0.02])
    else:
        lip = gain(st, 0.8 * lip + 0.2 * (skin * np.array([0.95, 0.66, 0.66]) + (0.05, 0, 0.02)))
    set_rgb(p, "lip_upper_outer", lip * 0.93)
    set_rgb(p, "lip_lower_outer", lip)
    set_rgb(p, "lip_inner_upper", lip * 0.5)
    set_rgb(p, "lip_inner_lower", lip * 0.5)
    return lip


def iris_colour(st, photo: Photo, lm, cast=None) -> np.ndarray | None:
    """The irises' colour: the robust median of the visible ring inside the
    lids (without pupil and highlights), both eyes averaged, brightened as
    drawn; with ``cast`` (``(skin as measured, skin on the skin locus)``:
    :func:`measured_skin`'s ``g["skin_cast"]``) the photo's colour cast
    taken out as the skin shows it (:func:`avatarizer.skintone.relight`:
    each channel's gain in linear light, the exposure kept), so a blue
    cast does not draw brown eyes blue. None where neither eye shows
    enough of its iris."""
    iris_cols = []
    for s in (0, 1):
        iris_pts = lm[landmark_index("iris", s)]  # the photo's own iris ring
        centre, r = iris_pts[0], float(mean(norm(iris_pts[1:] - iris_pts[0])))
        opening = np.concatenate([lm[landmark_index("eye_up", s)], lm[landmark_index("eye_lo", s)][::-1]])
        px = photo.region_pixels(discs=[(centre, r * 0.92)], minus_discs=[(centre, r * 0.42)], within=opening)
        if len(px) >= 6:
            iris_cols.append(robust_median(px, 10, 75))
    if not iris_cols:
        return None
    iris = clip(mean(iris_cols, 0), 0, 1)
    if cast is not None:  # (skin_locus keeps the lightness: the exposure is the photo's, the balance changes)
        iris = ST.relight(iris, *cast)
    return gain(st, clip(iris * 1.15, 0, 1))


def colours(st, p, lm, g, photo: Photo) -> dict:
    skin = measured_skin(st, photo, lm, g)
    if skin is None:
        skin = clip(P.skin_color(0.3), 0, 1)
    col = {"skin": skin, "skin_lab": to_lab(skin)}  # (hair, shading and clothes all compare against it)
    P.set_skin_colours(p, skin, neck=NECK)
    for sd in "lr":
        set_rgb(p, f"eye_{sd}_upper", np.minimum(skin * 0.25, (0.14, 0.09, 0.08)) + 0.02)
    col["lip"] = lip_colours(st, p, lm, photo, skin, cast=g.get("skin_cast"))
    teeth = np.array(st.teeth, np.float64)
    if p[S.index("teeth.show")] > 0.5:
        px = photo.region_pixels(lm[list(LIPS_INNER)])
        if len(px) >= 8:
            y = luma_of(px)
            bright = px[y >= percentile(y, 70)]
            teeth = 0.6 * teeth + 0.4 * clip(median(bright, 0) * 1.1, 0.6, 1.0)
    set_rgb(p, "teeth", teeth)
    iris = iris_colour(st, photo, lm, g.get("skin_cast"))
    if iris is None:
        iris = gain(st, clip(np.array(P.IRIS_COLORS["brown"]) * 1.15, 0, 1))
    col["iris"] = iris
    for sd in "lr":
        set_rgb(p, f"iris_{sd}", iris)
    set_rgb(p, "sclera", st.sclera)
    # brows: the dark part of the brow band
    bcols = []
    for s in (0, 1):
        px = photo.region_pixels(lm[list(BROW_OUTLINE[s])])
        if len(px) >= 8:
            y = luma_of(px)
            bcols.append(median(px[y <= percentile(y, 30)], 0))
    brow = mean(bcols, 0) if bcols else skin * 0.35
    if bcols and g.get("skin_cast") is not None:  # the photo's colour cast taken out, as the lips' and irises'
        brow = clip(ST.relight(brow, *g["skin_cast"]), 0, 1)
    # a faint brow (light hair, thin brows) blends with the skin in the median
    contrast = 0.5 * (g["brow_l"]["contrast"] + g["brow_r"]["contrast"])
    brow = gain(st, brow * (0.85 if contrast > 0.15 else 0.75))
    col["brow"] = brow
    for sd in "lr":
        set_rgb(p, f"brow_{sd}", brow)
    return col
