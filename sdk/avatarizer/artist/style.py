"""The artist's style: every choice that turns a measured face into a drawn one."""
from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np

from ..checks import is_real
from ..skintone import DRAWN_CHROMA, SKIN_HUE


@dataclass(frozen=True)
class ArtistStyle:
    """The mapping from a measured face to the drawn face, in one place.

    Geometry (canonical units: the eye centres are 0.5 apart):

    Attributes:
        frontal: draw the face with its head pose taken out in 3D (when the
            landmarks carry depth, as :meth:`AutoArtist.fit` gives them):
            the person's own proportions and asymmetries, seen from the
            front. Off draws the face as the crop shows it.
        exaggeration: the likeness control: each landmark's deviation from
            the population mean face is scaled by this factor before the
            face is drawn (1 = faithful; 1.2-1.5 = a mild caricature, which
            people recognise faster; above 1.75 grotesque).
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
        lit_side: (from, full): when the two cheeks' median lightness differs
            by more than ``from`` L*, the skin moves toward the brighter
            cheek, entirely at ``full`` L* (side light never darkens skin).
        skin_hue: (from, to) CIELAB hue angle (degrees) of skin in white
            light; a measured skin outside it (a colour cast) is clipped
            into it at the same lightness (default
            :data:`avatarizer.skintone.SKIN_HUE`, 36-62; 20-70 before
            session 66 drew pink and orange skins). The artist's skin over
            13,678 training photos: 5th-95th percentile 16-68 degrees.
        skin_chroma: (from, to) CIELAB chroma of skin; a grey (a
            black-and-white photo) gets the lower bound at the middle hue.
        skin_chroma_lit: (from, to) the skin's chroma as a fraction of
            that of skin in good light at its lightness
            (:func:`avatarizer.skintone.chroma_in_good_light`, default
            :data:`avatarizer.skintone.DRAWN_CHROMA`, its ceiling lower
            off good-light skin's hue): a skin outside
            it (grey or ash under a cold white balance, orange under a
            warm lamp) is moved to its edge after ``skin_hue`` and
            ``skin_chroma``; None leaves the chroma as measured.
        color_gain: hair, lip, iris, brow and facial-hair colours are pushed
            away from their grey by this factor (1 = as sampled; >1 gives
            livelier flat colours). Skin always stays as sampled.
        sclera: the fixed eye-white colour.
        teeth: the teeth colour (blended 40% toward the photo's brightest
            mouth pixels when teeth show).

    Hair and accessories:

    Attributes:
        hair_fit: how far the chosen hairstyle's back contour is pulled onto
            the outline of the hair mask (0 = the family template as is; the
            bald family is never pulled: its scalp is in the mask).
        hair_volume: multiplies the hair volume measured above and beside
            the skull before the prior's template is built (before
            ``hair_fit`` pulls it onto the mask).
        detect_glasses, detect_beard, detect_headwear: run the detectors
            (logistic models over measured cues, thresholds chosen for
            precision); off keeps them at "none".
        tight_hair_length: where the crop shows too little beside the face
            for the silhouette to see how far the hair hangs (a crop as
            tight as UTKFace's chips), read the length with the tight
            crops' hair-length network (:mod:`avatarizer.hairlength`) and
            draw a long family where it reads long; off (or without its
            files) the silhouette alone decides.
        loose_hair_length: the same on a loose portrait (the silhouette
            sees beside the face) where the silhouette gives a short family:
            the network, which reads loose portraits too, draws it long
            where it reads long (the silhouette misses hair hanging outside
            the band beside the face it measures, or behind the shoulders).
        facial_hair_network: decide the beard and the moustache with the
            facial-hair network (:mod:`avatarizer.facialhair`, the one the
            hybrid decides with) where its files are there; off, the
            detector over measured cues decides (``detect_beard``).
        hair_colour_network: read the hair's colour class with the
            hair-colour network too (:mod:`avatarizer.haircolour`, the
            portraits' or the tight crops', as the hybrid does) where its
            files are there; off, the hair region's classifier alone.
        skin_tone_network: draw the skin in the skin tone the skin-tone
            network reads (:mod:`avatarizer.skintone`: its lightness within
            ``skintone.MARGIN`` of the tone's, the lips relit with it, as
            the hybrid draws it) where its files are there; off, the skin's
            lightness is the photo's exposure.
        crop_size: crop size :meth:`AutoArtist.fit` samples the photo at.
    """

    frontal: bool = True
    exaggeration: float = 1.25
    symmetry: float = 0.0
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
    mouth_width: float = 1.0
    lip_fullness: float = 1.0
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
    lit_side: tuple = (3.0, 10.0)
    skin_hue: tuple = SKIN_HUE
    skin_chroma: tuple = (8.0, 45.0)
    skin_chroma_lit: tuple | None = DRAWN_CHROMA
    color_gain: float = 1.08
    sclera: tuple = (0.97, 0.96, 0.94)
    teeth: tuple = (0.96, 0.95, 0.90)
    hair_fit: float = 0.6
    hair_volume: float = 1.0
    detect_glasses: bool = True
    detect_beard: bool = True
    detect_headwear: bool = True
    tight_hair_length: bool = True
    loose_hair_length: bool = True
    facial_hair_network: bool = True
    hair_colour_network: bool = True
    skin_tone_network: bool = True
    crop_size: int = 192

    def __post_init__(self):
        e = self.exaggeration
        if not is_real(e) or not 0.5 <= float(e) <= 2.0:
            raise ValueError(f"exaggeration must be a number in [0.5, 2], got {e!r}")
        band = self.skin_chroma_lit
        if band is not None:
            try:
                pair = [v.item() if isinstance(v, np.generic) else v for v in band] \
                    if isinstance(band, (tuple, list, np.ndarray)) else None
            except TypeError:  # (not a sequence)
                pair = None
            if pair is None or len(pair) != 2 or not all(is_real(v) for v in pair) \
                    or not 0.0 <= float(pair[0]) <= float(pair[1]):
                raise ValueError(f"skin_chroma_lit must be None or (lowest, highest): two numbers with "
                                 f"0 <= lowest <= highest, got {band!r:.60}")
            # stored as a tuple of floats: the style stays hashable and cannot change after this check
            object.__setattr__(self, "skin_chroma_lit", (float(pair[0]), float(pair[1])))

    def replace(self, **changes) -> "ArtistStyle":
        """A copy with some fields changed."""
        known = {f.name for f in fields(self)}
        bad = sorted(set(changes) - known)
        if bad:
            raise ValueError(f"unknown ArtistStyle field(s) {bad}")
        return ArtistStyle(**{**{f.name: getattr(self, f.name) for f in fields(self)}, **changes})
