"""Skin tone as people see it, not as the camera exposed it.

The artist measures the skin on the lit upper cheeks, so the drawn
lightness is the photo's exposure as much as the person's skin: over the
training photos labelled by eye (``docs/data.md``), the measured L* of
people both labellers called Monk Skin Tone step 2, 7 and 8 have medians
of 77.7, 64.9 and 53.9, 24 L* apart where the Monk swatches are 62 apart.
The attribute regressor H (from 2.3.1) has a ``skin_tone`` output:
the skin tone in even daylight on the Monk scale (1 lightest ... 10
darkest), trained on 2,877 such labels with exposure and white-balance
augmentation. Its estimates were a step off on average and read dark
skin too light (out of fold on the training photos, 13% of the people
labelled Monk 6 or darker were drawn more than 15 L* off their label's
lightness with a 6 L* band; H's head refitted out of fold, session 32's
scratch ``/tmp/s32/tone/collect.py``): the hybrid reads the tone with the
skin-tone network instead (:data:`NETWORK`, a small CNN over the face's
centre fitted on the same labels and, since session 35, 1,389 more of the
loose portraits, 4,266 in all: out of fold 0.70 steps off, 5.0%; held
out 0.66 steps off (0.76 with the 2,877 labels) where H's head was 1.09,
but loose, brightly lit portraits of dark skin are still read light
(held out, H's -1.0 steps on average, scratch ``/tmp/s32/tone/fold.py``;
the network's -0.7, -0.9 with the 2,877 labels, both by scratch
``/tmp/s35/st2.py``, -0.8 by session 32's report): 5 of 27 such held-out
photos drawn more than 15 L* off (7 with the 2,877 labels, 6 with H's);
UTKFace's chips, most of the dark-labelled training photos, without
bias). H's reading is kept as ``skin_tone_h`` in the pipeline's
attributes and weighs the hair colour classes, whose prior was fitted
against it.

:func:`skin_by_tone` keeps the measured colour when its L* is within
:data:`MARGIN` of the lightness of that estimate (:func:`lightness_of_tone`)
and otherwise moves it to the nearest edge of that band, its a* and b*
toward those of skin in good light at that lightness
(:data:`WELL_LIT_SKIN_LAB`) as far as the lightness moved: a dim photo of a
light-skinned person, or a bright one of a dark-skinned person, no longer
changes the person's skin tone category (nor draws the shade's redder hue
on daylight skin), while a photo that already agrees keeps its own colour. A tone the app
set is drawn at its own lightness (:func:`skin_of_set_tone`).

The avatar's lightness per step (:func:`lightness_of_tone`) follows the
Monk swatches' relative lightness, compressed by :data:`CONTRAST` around
:data:`ANCHOR_L` (the median measured skin of the training photos labelled
step 2):
a style choice that keeps the darkest tones light enough for the drawn
shading, lids and nostrils (multiples of the skin colour) to show.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from . import regionnet as RN

#: CIELAB L* of the Monk Skin Tone scale's ten swatches (skintone.google),
#: made non-increasing (swatch 3 is a shade lighter than 2, yellower)
MONK_L = (94.2, 92.3, 92.3, 87.6, 77.9, 55.1, 42.5, 30.7, 21.1, 14.6)
#: the avatar's skin L* at Monk step 2: the median measured skin of the 538 training
#: photos both labellers called step 2 (``avatarizer-export skin-tone``'s ``anchor_L``)
ANCHOR_L = 77.7
#: the avatar's L* steps are this fraction of the swatches' (a style choice, module docstring)
CONTRAST = 0.55
#: the band, in L* either side of the estimate's lightness, in which the measured skin is
#: kept: chosen on the skin-tone network's out-of-fold estimates of the training photos
#: (``avatarizer-export skin-tone-net``'s report, ``margin_chosen``) as the widest band
#: that keeps avatars more than 15 L* off their label's lightness at or under 5% in every
#: skin-tone group, or, where none does, within a point of the lowest. Session 35's network
#: (4,266 training labels): Monk 6 or darker 5.3% at 4 L*, 4.99% at 5, 5.3% at 6, 5.75% at 7,
#: 6.7% at 8 (all photos 1.8%, 1.7%, 1.9%, 2.0%, 2.3%); the narrower band moves more photos'
#: own skin (by over 6 L*: 25% at 8, 32% at 6, 36% at 5). Held out (454 photos, the
#: network's report): Monk 6 or darker 11.3% at 5 L* (the same at 6 by scratch
#: ``/tmp/s35/st2.py``; loose portraits of dark skin are still read light,
#: ``docs/MODEL_CARD.md``). 6 L* in sessions 32-34 (the network of 2,877 labels);
#: 8 L* until session 32, chosen on H's estimates (the widest under 5% over all photos); where
#: H's estimate is still drawn (``estimator="model"``, the hybrid without the network's files)
#: a narrower band was no worse by H's own report: 4.62% of all photos over 15 L* at 6, 4.90% at 8
MARGIN = 5.0


def lightness_of_tone(tone) -> np.ndarray:
    """The avatar's skin L* for a Monk step (1-10, fractional steps interpolated)."""
    t = np.clip(np.asarray(tone, np.float64), 1.0, 10.0)
    return ANCHOR_L + CONTRAST * (np.interp(t, np.arange(1, 11), MONK_L) - MONK_L[1])


#: (L*, a*, b*): the colour of skin in good light by lightness, the median
#: a* and b* of the measured skin of those of the 2,877 training photos labelled
#: by eye for skin tone whose measured L* is within 8 L* of their label's
#: lightness (``avatarizer_export.skintone.WELL_LIT_MARGIN``), in bins of ±5 L* (``avatarizer-export skin-tone``'s report
#: ``well_lit_skin_lab``, :func:`avatarizer_export.skintone.well_lit_skin_lab`;
#: session 18). Skin the camera left in shade is redder and more saturated
#: for its lightness (hue angle median 41° where these are 48°): lifted
#: with its a* and b* kept, it was drawn salmon, hot pink or dusty mauve
WELL_LIT_SKIN_LAB = ((40.0, 18.0, 18.6), (45.0, 18.0, 21.7), (50.0, 20.5, 23.8), (55.0, 21.5, 25.9),
                     (60.0, 19.7, 25.0), (65.0, 18.9, 23.9), (70.0, 17.4, 19.1), (75.0, 15.7, 17.7),
                     (80.0, 14.2, 15.6), (85.0, 13.1, 14.2), (90.0, 10.1, 11.9))
#: :func:`skin_by_tone` and :func:`skin_of_set_tone` move a* and b* toward
#: :func:`well_lit_ab` in proportion to how far they move the lightness, wholly
#: from this many L*
LIT_AB_DL = 25.0


def well_lit_ab(L: float) -> np.ndarray:
    """(a*, b*) of skin in good light at lightness ``L`` (:data:`WELL_LIT_SKIN_LAB`,
    interpolated; the end bins' beyond them)."""
    t = np.asarray(WELL_LIT_SKIN_LAB, np.float64)
    return np.array([np.interp(L, t[:, 0], t[:, 1]), np.interp(L, t[:, 0], t[:, 2])])


#: (lowest, highest): the CIELAB chroma of skin in good light as a fraction of
#: the chroma of :data:`WELL_LIT_SKIN_LAB` at the same lightness: the 2.5th and
#: 97.5th percentiles over the artist's measured skin (without this band) of
#: the 1,498 training photos labelled by eye for skin tone whose measured L*
#: is within 8 L* of their label's lightness (exposed as the labellers saw
#: them; ``avatarizer-export skin-tone``'s report ``well_lit_chroma``,
#: :func:`avatarizer_export.skintone.well_lit_chroma`; session 47). Held out
#: (229 such photos) 0.41 and 1.71. A skin below the band reads grey, ash or
#: mauve (a cold or green white balance, a desaturated photo, a bluish screen
#: light); one above it, orange or salmon (a sodium lamp, a warm filter):
#: :func:`chroma_in_good_light` moves such a skin to the band's edge
WELL_LIT_CHROMA = (0.45, 1.71)

#: (lowest, highest): the chroma band a drawn skin is moved into (fractions as :data:`WELL_LIT_CHROMA`'s),
#: narrower than the measured one: at its ceiling (1.71) salmon and orange skins passed (a warm lamp, a
#: magenta cast), and at its floor (0.45) ash. Session 66 (a read-only review, scratch ``/tmp/rv665``): of
#: 592 held-out photos (ffhq128, ffhq128-labelled, 300 of UTKFace) 143 drawn outside a hue of 32-62 degrees
#: or over 1.4 times that chroma were judged by eye, 98 wrong (pink, mauve, salmon, orange, mustard);
#: with this band, :data:`DRAWN_CHROMA_OFF_HUE` and :data:`SKIN_HUE`, 89 of the 98 came into the natural
#: range, 31 of the 45 judged right changed by over ΔE 2 (7 over 5, median 2.4; ruddy men stay ruddy), 42
#: of the 449 not judged by over 2 (5 over 5); drawn hue outside 32-62 degrees at over 1.1 times good
#: light's chroma 33 -> 0 (``/tmp/s66/skin_mine.json``).
DRAWN_CHROMA = (0.60, 1.45)
#: where a drawn skin's hue lies 14 degrees or more from good-light skin's at its lightness, its chroma
#: ceiling is this (falling from :data:`DRAWN_CHROMA`'s from 5 degrees off): an off hue with high chroma
#: reads as a cast, pink or orange
DRAWN_CHROMA_OFF_HUE = 1.15
#: (from, to) the CIELAB hue angle, degrees, of a drawn skin (``ArtistStyle.skin_hue``; the tone step's
#: skin, :func:`skin_by_tone`): 20-70 let pink (20-32: every Asian and Indian face drawn there was wrong by
#: eye) and orange and mustard (62-70) through; see :data:`DRAWN_CHROMA`
SKIN_HUE = (36.0, 62.0)


def natural_skin_hue(rgb, band=SKIN_HUE) -> np.ndarray:
    """The skin colour ``rgb`` (float sRGB in [0, 1]) with its CIELAB hue
    clipped into ``band`` (degrees) at the same lightness, keeping the part
    of its chroma that lies along the new hue (the rest is the cast's, as
    ``artist.colour.skin_locus`` takes it); ``rgb`` as float64 when its hue
    is in the band or it is not one finite colour."""
    from .artist.photo import to_lab

    rgb = np.asarray(rgb, np.float64)
    if rgb.shape != (3,) or not np.isfinite(rgb).all():
        return rgb
    L, a, b = to_lab(np.clip(rgb, 0.0, 1.0))
    c, h = float(np.hypot(a, b)), float(np.degrees(np.arctan2(b, a)))
    to = min(max(h, float(band[0])), float(band[1]))
    if to == h or c < 1e-9:
        return rgb
    kept = c * max(float(np.cos(np.radians(h - to))), 0.0)
    return _in_gamut(float(L), kept, float(np.radians(to)), kept)


def chroma_in_good_light(rgb, band=WELL_LIT_CHROMA, off_hue: float | None = None) -> np.ndarray:
    """The skin colour ``rgb`` (one float sRGB colour in [0, 1]) with its
    CIELAB chroma moved into ``band`` (fractions of the chroma of skin in
    good light at its lightness, :func:`well_lit_ab`; default
    :data:`WELL_LIT_CHROMA`) at the same lightness. Raised to the band's
    floor, its hue moves toward the well-lit skin's in proportion to the
    chroma it lacked (a grey has no hue of its own; a faint cast's hue
    tells little); lowered to the band's ceiling, its hue is kept. Where
    sRGB has no colour of that lightness, hue and chroma (near black or
    white), the chroma stops at the gamut's edge (:func:`_in_gamut`).
    ``rgb`` as a float64 array, unchanged, when already in the band, when
    it is not one finite colour, or when ``band`` is None. ``off_hue``
    (:data:`DRAWN_CHROMA_OFF_HUE`): the ceiling falls to it as the hue lies
    5 to 14 degrees from the well-lit skin's."""
    from .artist.photo import to_lab

    rgb = np.asarray(rgb, np.float64)
    if band is None or rgb.shape != (3,) or not np.isfinite(rgb).all():
        return rgb
    lo, hi = (float(v) for v in band)
    L, a, b = to_lab(np.clip(rgb, 0.0, 1.0))
    wa, wb = well_lit_ab(L)
    lit = float(np.hypot(wa, wb))
    chroma = float(np.hypot(a, b))
    if off_hue is not None and chroma > 1e-9:
        off = abs(float(np.degrees(np.arctan2(b, a) - np.arctan2(wb, wa))))
        off = min(off, 360.0 - off)
        hi = hi - (hi - min(float(off_hue), hi)) * min(max((off - 5.0) / 9.0, 0.0), 1.0)
    if lo * lit <= chroma <= hi * lit:
        return rgb
    if chroma > hi * lit:
        return _in_gamut(L, hi * lit, float(np.arctan2(b, a)), chroma)
    w = chroma / max(lo * lit, 1e-9)  # how much of its hue the colour has to tell
    # the hues blended as unit vectors (no wrap-around at +-180 degrees); a cast opposite the
    # well-lit hue that cancels it out tells nothing: the well-lit hue
    v = w * np.array([a, b]) / max(chroma, 1e-9) + (1.0 - w) * np.array([wa, wb]) / max(lit, 1e-9)
    hue = float(np.arctan2(v[1], v[0])) if np.hypot(*v) > 1e-3 else float(np.arctan2(wb, wa))
    return _in_gamut(L, lo * lit, hue, chroma)  # (never greyer than it was, where sRGB has that)


def _in_gamut(L: float, chroma: float, hue: float, fallback: float) -> np.ndarray:
    """sRGB in [0, 1] of CIELAB lightness ``L``, hue angle ``hue``
    (radians) and ``chroma``, or, where sRGB has no such colour, of the
    largest chroma it has there (bisected down to ``fallback`` where sRGB
    has that chroma at ``L`` and ``hue``, else to 0; within 0.05)."""
    from .artist.photo import from_lab, in_srgb_gamut

    def lab_of(c):
        return np.array([L, c * np.cos(hue), c * np.sin(hue)])

    if not in_srgb_gamut(lab_of(chroma)):
        lo, hi = min(fallback, chroma), chroma
        if not in_srgb_gamut(lab_of(lo)):
            lo = 0.0
        while hi - lo > 0.05:
            mid = 0.5 * (lo + hi)
            lo, hi = (mid, hi) if in_srgb_gamut(lab_of(mid)) else (lo, mid)
        chroma = lo
    return np.clip(from_lab(lab_of(chroma)), 0.0, 1.0)


def _readable(rgb, tone) -> tuple[np.ndarray, float | None]:
    """(``rgb`` as a float64 array, ``tone`` as a float: a number or a
    one-element array); the tone None when it is missing or not finite, or
    when ``rgb`` is not one finite colour (nothing to move then)."""
    rgb = np.asarray(rgb, np.float64)
    t = None if tone is None else np.asarray(tone, np.float64).reshape(-1)
    if t is None or t.size != 1 or not np.isfinite(t[0]) or rgb.shape != (3,) or not np.isfinite(rgb).all():
        return rgb, None
    return rgb, float(t[0])


def _skin_at(lab: np.ndarray, L: float) -> np.ndarray:
    """The skin colour of CIELAB ``lab`` drawn at lightness ``L``: its a* and
    b* moved toward those of skin in good light there (:func:`well_lit_ab`)
    in proportion to how far the lightness moves, wholly from
    :data:`LIT_AB_DL` L*; float sRGB in [0, 1]."""
    from .artist.photo import from_lab

    w = min(1.0, abs(L - lab[0]) / LIT_AB_DL)
    out = np.array([L, *((1.0 - w) * lab[1:] + w * well_lit_ab(L))])
    return np.clip(from_lab(out), 0.0, 1.0)


def skin_by_tone(rgb, tone: float, margin: float = MARGIN) -> np.ndarray:
    """The skin colour ``rgb`` (one float sRGB colour in [0, 1]) with its L*
    moved into ``lightness_of_tone(tone) ± margin`` and its a* and b* moved
    toward those of skin in good light at the new lightness
    (:func:`_skin_at`: a photo whose lightness was near keeps its undertone;
    shade lifted to daylight is not drawn salmon or mauve); ``rgb`` itself
    when already in the band, or when ``tone`` or ``rgb`` is not finite."""
    from .artist.photo import to_lab

    rgb, t = _readable(rgb, tone)
    if t is None:
        return rgb
    lab = to_lab(rgb)
    centre = float(lightness_of_tone(t))
    if abs(lab[0] - centre) <= margin:
        return rgb
    # (the drawn skin's hue and chroma bands again at the new lightness: lifted to L* 73, a salmon skin of
    # chroma 1.34 times good light's at L* 65 came out 1.46 times)
    moved = _skin_at(lab, min(max(lab[0], centre - margin), centre + margin))
    return chroma_in_good_light(natural_skin_hue(moved), DRAWN_CHROMA, off_hue=DRAWN_CHROMA_OFF_HUE)


def skin_of_set_tone(rgb, tone: float) -> np.ndarray:
    """The skin colour ``rgb`` (one float sRGB colour in [0, 1]) drawn at the
    Monk step ``tone`` an app set (``Options.attributes``): the lightness of
    that step (:func:`lightness_of_tone`), a* and b* moved toward those of
    skin in good light at that lightness as far as the lightness moves
    (:func:`_skin_at`; the Monk swatches' own a* and b*, measured at their
    much darker lightness, drew steps 9 and 10 ash grey at the avatar's);
    ``rgb`` itself when it is not finite."""
    from .artist.photo import to_lab

    rgb, t = _readable(rgb, tone)
    if t is None:
        return rgb
    return _skin_at(to_lab(rgb), float(lightness_of_tone(t)))  # (lightness_of_tone clips to 1..10)


#: :func:`relight`'s change of exposure (the skin's linear-light luminance
#: after over before) stays within this range (the Monk bands can ask for x7)
RELIGHT_EXPOSURE = (1.0 / 16.0, 16.0)
#: ... and each channel's gain over that exposure (the change of white
#: balance) within this one: a channel the skin hardly shows, such as blue
#: in warm shade, is not blown up, and the exposure is kept whole
RELIGHT_BALANCE = (0.5, 2.0)
#: added to every linear-light channel of both skins before their ratio (a
#: channel at 0 in both does not read as a change)
RELIGHT_EPS = 1e-3


def relight(rgb, skin_before, skin_after, balance: bool = True) -> np.ndarray:
    """Colours ``rgb`` (float sRGB, last axis 3) seen in the light where the
    skin read ``skin_before``, as they would look where the skin is drawn
    ``skin_after``: the skin's change of exposure (its linear-light
    luminance, within :data:`RELIGHT_EXPOSURE`) times each channel's change
    of balance (the channel's linear-light gain over that exposure, within
    :data:`RELIGHT_BALANCE`): a von Kries-like scaling of linear sRGB;
    float sRGB in [0, 1]. The merge stage relights the lips with the skin
    it moved into its tone's band, so that their contrast against the skin
    stays the photo's (session 41, 1,288 held-out photos: left as they
    were, the lips' light against the skin's was off the photo's by a
    median factor of 0.64 where the skin was lifted more than 5 L*, 1.32
    where it was darkened). ``rgb`` as a float64 array, unchanged, where
    any of the three is not finite or not of that shape. ``balance`` False:
    the change of exposure alone (each channel times the same gain), for
    colours whose hue the skin's does not tell: a grey beard under skin
    whose hue moved toward daylight's was drawn green."""
    from .artist.photo import linear_to_srgb, srgb_to_linear

    rgb = np.asarray(rgb, np.float64)
    before, after = (np.clip(np.asarray(c, np.float64), 0.0, 1.0) for c in (skin_before, skin_after))
    if rgb.shape[-1:] != (3,) or before.shape != (3,) or after.shape != (3,) \
            or not (np.isfinite(rgb).all() and np.isfinite(before).all() and np.isfinite(after).all()):
        return rgb
    lin_before, lin_after = srgb_to_linear(before) + RELIGHT_EPS, srgb_to_linear(after) + RELIGHT_EPS
    exposure = float(lin_after @ _LUMA) / float(lin_before @ _LUMA)
    shift = np.clip(lin_after / lin_before / exposure, *RELIGHT_BALANCE) if balance else 1.0
    gain = float(np.clip(exposure, *RELIGHT_EXPOSURE)) * shift
    return np.clip(linear_to_srgb(np.clip(srgb_to_linear(np.clip(rgb, 0.0, 1.0)) * gain, 0.0, 1.0)), 0.0, 1.0)


#: linear sRGB's luminance weights (Rec. 709)
_LUMA = np.array([0.2126, 0.7152, 0.0722])


#: the skin-tone network (``data/skin_tone_net.onnx`` and ``.json``,
#: ``avatarizer-export skin-tone-net``): the region networks' small CNN
#: (:mod:`avatarizer.regionnet`) over the face's centre (rows and columns
#: 16-112 of the aligned 128-px crop, averaged 2x2 first), fitted on the
#: labels by eye with exposure and white-balance augmentation and
#: de-attenuated as H's head is; its one output is the Monk step scaled
#: to [0, 1] (:func:`tone_of_network`). The hybrid's skin tone
NETWORK = RN.Spec("skin_tone_net", (16, 112, 16, 112), ("skin_tone",),
                  fallback="the skin tone is read by the attribute model", title="skin-tone", thresholds=False)
#: ``attributes["skin_tone_by"]`` (and the public ``decided_by``) when the network read the tone
BY_NETWORK = "skin-tone network"


def load_network(folder: str | Path | None = None) -> "RN.RegionNetwork | None":
    """The skin-tone network in ``folder`` (default the SDK's data folder),
    loaded once; None when its files are missing or unusable (a warning says why)."""
    return RN.load(NETWORK, folder)


def tone_of_network(read) -> float:
    """The Monk step (1-10) of the network's output (``{"skin_tone": u}``, u in [0, 1])."""
    return 1.0 + 9.0 * float(np.clip(float(read["skin_tone"]), 0.0, 1.0))


def clear_cache() -> None:
    """Forgets the loaded network (after ``avatarizer-export skin-tone-net`` rewrote it)."""
    RN.clear_cache()
