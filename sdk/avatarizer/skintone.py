"""Skin tone as people see it, not as the camera exposed it.

The artist measures the skin on the lit upper cheeks, so the drawn
lightness is the photo's exposure as much as the person's skin: over the
training photos labelled by eye (``docs/data.md``), the measured L* of
people both labellers called Monk Skin Tone step 2, 7 and 8 have medians
of 77.7, 64.9 and 53.9, 24 L* apart where the Monk swatches are 62 apart.
The attribute regressor H (from 2.3.1) has a ``skin_tone`` output:
the skin tone in even daylight on the Monk scale (1 lightest ... 10
darkest), trained on 2,877 such labels with exposure and white-balance
augmentation.

:func:`skin_by_tone` keeps the measured colour when its L* is within
:data:`MARGIN` of the lightness of that estimate (:func:`lightness_of_tone`)
and otherwise moves it to the nearest edge of that band, keeping its a*
and b*: a dim photo of a light-skinned person, or a bright one of a
dark-skinned person, no longer changes the person's skin tone category,
while a photo that already agrees keeps its own colour. A tone the app
set is drawn at its own lightness (:func:`skin_of_set_tone`).

The avatar's lightness per step (:func:`lightness_of_tone`) follows the
Monk swatches' relative lightness, compressed by :data:`CONTRAST` around
:data:`ANCHOR_L` (the median measured skin of the training photos labelled
step 2):
a style choice that keeps the darkest tones light enough for the drawn
shading, lids and nostrils (multiples of the skin colour) to show.
"""
from __future__ import annotations

import numpy as np

#: CIELAB L* of the Monk Skin Tone scale's ten swatches (skintone.google),
#: made non-increasing (swatch 3 is a shade lighter than 2, yellower)
MONK_L = (94.2, 92.3, 92.3, 87.6, 77.9, 55.1, 42.5, 30.7, 21.1, 14.6)
#: CIELAB a* and b* of the same swatches (their sRGB codes f6ede4, f3e7db, f7ead0, eadaba, d7bd96,
#: a07e56, 825c43, 604134, 3a312a, 292420)
MONK_AB = ((1.5, 5.4), (2.1, 7.3), (0.2, 14.2), (0.5, 17.8), (3.5, 23.1), (7.8, 26.7), (12.3, 20.5),
           (11.7, 13.3), (2.7, 6.0), (1.5, 3.5))
#: a tone set by the app takes the swatch's a* and b* in proportion to how far
#: the lightness moves, wholly from this many L* (:func:`skin_of_set_tone`)
SWATCH_HUE_DL = 25.0
#: the avatar's skin L* at Monk step 2: the median measured skin of the 538 training
#: photos both labellers called step 2 (``avatarizer-export skin-tone``'s ``anchor_L``)
ANCHOR_L = 77.7
#: the avatar's L* steps are this fraction of the swatches' (a style choice, module docstring)
CONTRAST = 0.55
#: the band, in L* either side of the estimate's lightness, in which the measured skin is
#: kept: chosen on the training photos' out-of-fold estimates as the widest band
#: that keeps avatars more than 15 L* off their label's lightness under 5%
#: (``avatarizer-export skin-tone``'s report: 4.0% at 4 L*, 4.8% at 8, 6.7% at 10;
#: 19.4% with the measured skin alone); 15 L* is about two steps mid-scale
MARGIN = 8.0


def lightness_of_tone(tone) -> np.ndarray:
    """The avatar's skin L* for a Monk step (1-10, fractional steps interpolated)."""
    t = np.clip(np.asarray(tone, np.float64), 1.0, 10.0)
    return ANCHOR_L + CONTRAST * (np.interp(t, np.arange(1, 11), MONK_L) - MONK_L[1])


def skin_by_tone(rgb, tone: float, margin: float = MARGIN) -> np.ndarray:
    """The skin colour ``rgb`` (float sRGB in [0, 1]) with its L* moved into
    ``lightness_of_tone(tone) ± margin``, its a* and b* kept (the same hue
    and chroma); ``rgb`` itself when already in it or when ``tone`` is not
    a finite number."""
    from .artist.photo import from_lab, to_lab

    rgb = np.asarray(rgb, np.float64)
    if tone is None or not np.isfinite(tone):
        return rgb
    lab = to_lab(rgb)
    centre = float(lightness_of_tone(tone))
    if abs(lab[0] - centre) <= margin:
        return rgb
    lab[0] = min(max(lab[0], centre - margin), centre + margin)
    return np.clip(from_lab(lab), 0.0, 1.0)


def skin_of_set_tone(rgb, tone: float) -> np.ndarray:
    """The skin colour ``rgb`` (float sRGB in [0, 1]) drawn at the Monk step
    ``tone`` an app set (``Options.attributes``): the lightness of that step
    (:func:`lightness_of_tone`), and a* and b* moved from the measured
    skin's toward the swatch's (interpolated between steps) in proportion to
    how far the lightness moves (wholly from :data:`SWATCH_HUE_DL` L*): a
    photo whose lightness was near keeps its undertone, while a pale pink
    measured under bright light drawn dark brown is not a dull mauve."""
    from .artist.photo import from_lab, to_lab

    lab = to_lab(np.asarray(rgb, np.float64))
    t = float(np.clip(tone, 1.0, 10.0))
    target = float(lightness_of_tone(t))
    w = min(1.0, abs(lab[0] - target) / SWATCH_HUE_DL)
    steps = np.arange(1, 11)
    swatch = np.array([np.interp(t, steps, [ab[k] for ab in MONK_AB]) for k in (0, 1)])
    out = np.array([target, *((1.0 - w) * lab[1:] + w * swatch)])
    return np.clip(from_lab(out), 0.0, 1.0)
