"""The orchestrator: one aligned photo → all 629 avatar parameters."""
from __future__ import annotations

import cv2
import numpy as np

from .. import schema as S
from . import accessories, colour, geometry, hair
from functools import lru_cache

from .. import landmarks as LM
from .. import prior as P
from .photo import crop_valid_mask, fit_warp, gain, make_photo, to_lab
from .style import ArtistStyle

__all__ = ["AutoArtist", "exaggerate_params", "geometry_mask", "lip_mask", "mean_avatar", "skin_mask"]


def _facial_hair_readings(style, lm, g):
    """Two functions: the beard detector's (probability, threshold) for the
    face measured in ``g``, and the goatee detector's
    (:func:`accessories.goatee_evidence`: the shape of a drawn beard), each
    None when the lower face is not in the crop or no detector is fitted;
    the lower face's cues are measured once, when either is first called."""
    got = []

    def evidence():
        if not got:
            got.append(accessories.facial_hair_evidence(style, lm, g, g["photo"]))
        return got[0]

    def beard():
        ev = evidence()
        return None if ev is None else ev["beard"]

    def goatee():
        return None if evidence() is None else accessories.goatee_evidence(g["beard_features"])

    return beard, goatee


def _bald_reading(style, lm, g, skin):
    """Two functions of the face's person-minus-face mask (an array of any
    size, or a function of the size returning it: ``AlignedFace.hair_mask``):
    the bald detector's (probability, drawing threshold, whether the artist
    draws the top bare in its band below that threshold:
    :func:`hair.in_bare_top_band`) and the receding detector's (probability,
    drawing threshold) for the face measured in ``g``
    (:func:`accessories.bald_evidence`, :func:`accessories.receding_evidence`;
    None without a detector or a hair region): the artist's hair
    measurements (:func:`hair.hair_maps`, ~1-2 ms) run only when one is
    called, once for both."""
    from dataclasses import replace

    measured: list = []  # ((the mask or function given, its measurements)): the last one

    def measure(hair_mask):
        if hair_mask is None:
            return None
        if measured:
            seen = measured[0][0]
            # (the same array, or the same face's method: bound methods compare equal, not identical)
            if seen is hair_mask or (callable(seen) and callable(hair_mask) and seen == hair_mask):
                return measured[0][1]
        photo = g["photo"]
        hm = hair_mask(photo.size) if callable(hair_mask) else hair_mask
        if hm is None:
            out = None
        else:
            hm = np.asarray(hm, np.float32)
            if hm.shape != (photo.size, photo.size):
                hm = cv2.resize(hm, (photo.size, photo.size), interpolation=cv2.INTER_LINEAR)
            g2 = dict(g)  # (hair_maps writes its cues into g: the face's own g keeps none)
            maps = hair.hair_maps(style, lm, g2, replace(photo, hair=hm, _disc_regions={}), {"skin_lab": to_lab(skin)})
            out = (maps, g2)
        measured[:] = [(hair_mask, out)]
        return out

    def reading(hair_mask):
        got = measure(hair_mask)
        bald = None if got is None else accessories.bald_evidence(got[1])
        # (a third item: whether the artist draws the top bare below the detector's threshold, its
        # bare-top band; session 28: the hybrid drew hair on shaved heads the artist draws bald)
        return None if bald is None else (*bald, hair.in_bare_top_band(got[0], bald))

    def receding(hair_mask):
        got = measure(hair_mask)
        return None if got is None else accessories.receding_evidence(got[1])

    return reading, receding


def hat_colour(p: np.ndarray, photo, lm, skin_rgb=None) -> None:
    """A drawn hat (``headwear.type`` > 0) in its own colour, as the hybrid
    reads it (:func:`avatarizer.hair.headwear_colours`: its crown, not the
    hair region's mix of hat, hair and brim shadow; the skin left out), where
    enough of it shows; else its colour stays."""
    if p[S.index("headwear.type")] <= 0 or photo.hair is None:
        return
    from .. import hair as HR  # (here: avatarizer.hair imports the artist)

    hat_rgb, _ = HR.headwear_colours(photo.rgb, photo.hair, lm, photo.valid, skin_rgb=skin_rgb)
    if hat_rgb is not None:
        P.set_rgb(p, "headwear", hat_rgb)


class AutoArtist:
    """Fits the 629 avatar parameters to one aligned photo (see the package doc).

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
        crop, hair_mask, valid = self._face_inputs(face)
        return self.fit_landmarks(face.canonical, crop, hair_mask, valid=valid, landmarks3d=face.landmarks)

    def _face_inputs(self, face):
        """(the aligned crop, the hair mask or None, the valid-pixel mask) at the style's crop size."""
        size = int(self.style.crop_size)
        try:
            hair_mask = face.hair_mask(size)
        except RuntimeError:
            hair_mask = None
        return face.crop(size), hair_mask, crop_valid_mask(face, size)

    def fit_with_age(self, face) -> tuple[np.ndarray, float | None]:
        """:meth:`fit`'s parameters and the artist's own age estimate of the
        face (:func:`accessories.age_estimate`, years, the same the beard's
        age gate read where it did; None without a fitted regressor, or
        where the cheeks show no skin, a face mask: masked adults read as
        children; a white mask can be missed), what the pipeline draws age
        lines and a child's head by where no regressor runs
        (``estimator="artist"``)."""
        crop, hair_mask, valid = self._face_inputs(face)
        p, g = self._fit(face.canonical, crop, hair_mask, valid, face.landmarks, None)
        age = None if g.get("cheeks_covered") else \
            g["age"] if g.get("age") is not None else accessories.age_estimate(face.canonical, crop)
        return p, age

    def fit_landmarks(self, canonical: np.ndarray, crop: np.ndarray, hair_mask: np.ndarray | None = None,
                      *, valid: np.ndarray | None = None, landmarks3d: np.ndarray | None = None,
                      frontal: np.ndarray | None = None) -> np.ndarray:
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
            landmarks3d: optional (478, 3) MediaPipe landmarks with depth
                (``AlignedFace.landmarks``): the face is then drawn with its
                head pose taken out (:func:`avatarizer.landmarks.frontalize`).
            frontal: optional (478, 2) frontal canonical landmarks computed
                before (e.g. of the un-augmented photo); overrides
                ``landmarks3d``.

        Without ``landmarks3d`` or ``frontal`` the face is drawn as it
        appears in the crop (head turn included).
        """
        return self._fit(canonical, crop, hair_mask, valid, landmarks3d, frontal)[0]

    def geometry_landmarks(self, canonical, landmarks3d=None, frontal=None) -> np.ndarray:
        """The (478, 2) canonical landmarks the artist draws: frontal (head
        pose out) when 3D landmarks are given and ``style.frontal`` is on,
        then exaggerated by ``style.exaggeration``."""
        st = self.style
        if frontal is not None:
            geo = np.asarray(frontal, np.float64)
            if geo.shape != (478, 2) or not np.isfinite(geo).all():
                raise ValueError(f"frontal landmarks must be finite with shape (478, 2), got {geo.shape}")
        elif landmarks3d is not None and st.frontal:
            geo = LM.frontalize(landmarks3d)
        else:
            geo = np.asarray(canonical, np.float64)[:, :2]
        return LM.exaggerate(geo, st.exaggeration) if st.exaggeration != 1.0 else geo

    def fit_geometry_skin(self, canonical: np.ndarray, crop: np.ndarray, *, valid: np.ndarray | None = None,
                          landmarks3d: np.ndarray | None = None, frontal: np.ndarray | None = None,
                          glasses: bool = False, cues: dict | None = None
                          ) -> tuple[np.ndarray, np.ndarray | None]:
        """Only the face's drawn geometry (outline, eyes, irises, brows, nose,
        lips; :func:`geometry_mask`) as :meth:`fit_landmarks` draws it, and
        the skin colour as the artist measures it (the upper cheeks, specular
        sheen dropped, the lit side under side light), without the other
        colours, shading, hair or accessories: ((629,) float32 with the
        defaults elsewhere, skin RGB in [0, 1] or None when the cheeks are not
        in the crop). The skin-derived colours (:func:`skin_mask`) are set
        when the skin is found, and the lips' colours (:func:`lip_mask`,
        :func:`colour.lip_colours`) where the lips' colour in the photo reads
        as lips (:func:`colour.lips_plausible`: not black, grey or white
        tape or a microphone, a teal pacifier, a black-and-white photo); a
        ``cues`` dict then gets ``"lips": True``, and ``"cheeks_covered":
        True`` where the cheeks show no skin (a face mask:
        :func:`colour.skin_colour` read the forehead and the nose).
        With ``glasses`` the artist's glasses decision
        (its fitted detector over the photo's frame, tint and transparency
        cues) also fills the ``glasses`` feature, and a ``cues`` dict gets the
        evidence behind it (``accessories.glasses``: the cue vector and a
        function drawing the glasses as clear ones), the artist's age
        estimate (``"age"``: :func:`accessories.age_estimate`, years or None)
        and the beard
        detector's reading (``"beard"``: a function returning (probability,
        drawing threshold), or None; :func:`accessories.facial_hair_evidence`,
        ~2 ms, measured only when called; the moustache's is not handed
        over: drawn where H missed one, it found 11 more held-out moustaches
        and invented 9 more, session 13) for a caller that decides with
        more information. The runtime's hybrid
        estimator takes these from here and the rest of the face from the
        learned model."""
        p, lm, g = self._geometry(canonical, crop, None, valid, landmarks3d, frontal, S.default())
        skin = colour.measured_skin(self.style, g["photo"], lm, g)
        if skin is not None and np.isfinite(skin).all():
            P.set_skin_colours(p, skin, neck=colour.NECK)
            if cues is not None and g.get("cheeks_covered"):
                cues["cheeks_covered"] = True  # (the skin is the forehead's and the nose's: a face mask)
            lip = colour.measured_lip(g["photo"], lm, g.get("skin_cast"))
            if lip is not None and colour.lips_plausible(lip):
                colour.lip_colours(self.style, p, lm, g["photo"], skin, lip=lip)
                if cues is not None:
                    cues["lips"] = True  # (the lips' colours are the photo's)
            iris = colour.iris_colour(self.style, g["photo"], lm, g.get("skin_cast"))
            if iris is not None:
                for sd in "lr":
                    P.set_rgb(p, f"iris_{sd}", iris)
            if glasses:
                accessories.glasses(self.style, p, lm, g, g["photo"], {"skin": skin}, cues=cues)
                if cues is not None:  # the beard and bald detectors' readings, for the caller to decide with
                    cues["beard"], cues["goatee"] = _facial_hair_readings(self.style, lm, g)
                    cues["bald"], cues["receding"] = _bald_reading(self.style, lm, g, skin)
                    # the artist's own age estimate (~0.3 ms): the hybrid combines it with H's
                    cues["age"] = accessories.age_estimate(canonical, crop)
            if iris is not None and cues is not None:
                # the irises' colour is the photo's (its colour cast taken out), but not through sunglasses
                # (the lenses read L* 3-19: where the sunglasses end up not drawn, black irises)
                probs = cues.get("glasses_probs")
                if probs is None or not float(probs[2]) >= SUNGLASSES_OVER_IRISES:
                    cues["iris"] = True
        else:
            skin = None
        return S.clip(p), skin

    def _geometry(self, canonical, crop, hair_mask, valid, landmarks3d, frontal, p):
        lm = np.asarray(canonical, np.float64)
        if lm.ndim != 2 or lm.shape[0] < 478 or lm.shape[1] < 2:
            raise ValueError(f"canonical landmarks must have shape (478, 2), got {lm.shape}")
        lm = lm[:478, :2]
        if not np.isfinite(lm).all():
            raise ValueError("canonical landmarks contain NaN or infinity")
        st = self.style
        geo = self.geometry_landmarks(lm, landmarks3d, frontal)
        photo = make_photo(st, crop, hair_mask, valid)
        if geo is not lm and np.abs(geo - lm).max() > 1e-6:
            photo.warp = fit_warp(geo[:468], lm[:468])
        g: dict = {"geo": geo, "photo": photo}  # shared geometry (canonical units of the drawn face)
        # geometry from the drawn (frontal) face; the photo is sampled where
        # each point lies in the crop (photo.to_img / the photo's landmarks)
        geometry.outline(st, p, geo, g)
        turn = (lm[1, 0] - 0.5 * (lm[234, 0] + lm[454, 0])) / max(g["half_w"], 0.2)
        g["turn"], g["nose_side"] = float(turn), 1.0 if turn >= 0 else -1.0  # as the photo shows it
        g["eye_cut"] = geometry.eye_cut(lm, photo)
        geometry.eyes(st, p, geo, g)
        geometry.brows(st, p, geo, g, photo)
        geometry.nose(st, p, geo, g, photo)
        geometry.mouth(st, p, geo, g)
        geometry.stylise(st, p, g)
        return p, lm, g

    def _fit(self, canonical, crop, hair_mask, valid, landmarks3d=None, frontal=None):
        """(params, measurements): the measurements dict is for diagnostics."""
        st = self.style
        p, lm, g = self._geometry(canonical, crop, hair_mask, valid, landmarks3d, frontal, S.default())
        photo, geo = g.pop("photo"), g["geo"]
        col = colour.colours(st, p, lm, g, photo)
        geometry.shading(st, p, geo, g, photo, col)
        hair.hair(st, p, lm, g, photo, col)
        if st.detect_glasses:
            accessories.glasses(st, p, lm, g, photo, col)
        if st.detect_headwear:
            accessories.headwear(st, p, lm, g, photo, col)
            hat_colour(p, photo, lm, col.get("skin"))
            if p[S.index("headwear.type")] > 0 and g.get("hair_side_px") is not None:
                # under a hat the hair shows at the sides, not above the brows
                side_rgb = g["hair_stats"]["side_rgb"] = hair.side_rgb(g["hair_side_px"])
                from .. import hair as HR  # (here: avatarizer.hair imports the artist)

                hair_rgb = np.asarray(HR.natural_hair_colour(gain(st, side_rgb)), np.float64)
                col["hair"] = hair_rgb
                P.set_rgb(p, "hair_back", hair_rgb * 0.85)
                P.set_rgb(p, "hair_front", hair_rgb)
        if st.detect_beard:
            accessories.facial_hair(st, p, lm, g, photo, col)
            if not g.get("hair_known", True) and g.get("beard_rgb") is not None \
                    and p[S.index("headwear.type")] == 0 and not g.get("hair_colour_network"):
                # the hair's colour could not be read (no hair region: a
                # tight crop, a bright background) and no hair-colour network
                # read it: the beard's is this person's, not the default dark
                # brown (white-bearded men were drawn dark-haired)
                col["hair"] = gain(st, g["beard_rgb"])
                P.set_hair_rgb(p, col["hair"])
        accessories.clothes(st, p, g, photo, col)
        # the skin drawn in the tone the skin-tone network reads (the hybrid's merge rule): the photo's
        # exposure no longer decides the skin's lightness; the lips relit, grey facial hair lifted with it
        tone = colour.network_skin_tone(st, photo, g)
        if tone is not None:
            g["skin_tone"] = tone
            colour.draw_in_tone(p, tone, grey_facial_hair=bool(g.get("beard_grey")))
        return S.clip(p), g


_FACE_XY = np.flatnonzero(np.isin(np.array(S.KINDS[S.FACE]), ("x", "y")))


@lru_cache(maxsize=1)
def mean_avatar() -> np.ndarray:
    """The face slice drawn for the population mean face (frontal, no
    exaggeration): the centre that :func:`exaggerate_params` scales about."""
    mean = LM.mean_face().points[:, :2]
    grey = np.full((64, 64, 3), 160, np.uint8)
    style = ArtistStyle(exaggeration=1.0, detect_glasses=False, detect_beard=False, tight_hair_length=False,
                        loose_hair_length=False, hair_colour_network=False, skin_tone_network=False)
    p = AutoArtist(style).fit_landmarks(mean, grey, None, frontal=mean)
    out = p[S.FACE].astype(np.float32)
    out.setflags(write=False)
    return out


def exaggerate_params(params, factor: float) -> np.ndarray:
    """A caricature in parameter space: every face-slice coordinate's
    deviation from :func:`mean_avatar` scaled by ``factor`` (1 = unchanged).
    For avatars that were not drawn from landmarks (the learned model's),
    the counterpart of ``ArtistStyle.exaggeration``. Works on (..., 629)."""
    factor = float(factor)
    if not np.isfinite(factor) or not 0.25 <= factor <= 4.0:
        raise ValueError(f"factor must be a number in [0.25, 4], got {factor!r}")
    p = np.array(params, np.float32, copy=True)
    if p.shape[-1] != S.PARAM_COUNT:
        raise ValueError(f"params must have {S.PARAM_COUNT} values in the last axis, got shape {p.shape}")
    if factor == 1.0:
        return p
    face = p[..., S.FACE]
    m = mean_avatar()
    face[..., _FACE_XY] = m[_FACE_XY] + factor * (face[..., _FACE_XY] - m[_FACE_XY])
    p[..., S.FACE] = face
    return S.clip(p)


@lru_cache(maxsize=1)
def geometry_mask() -> np.ndarray:
    """(629,) bool: the geometry :meth:`AutoArtist.fit_geometry_skin` sets (found by
    drawing the mean face onto NaN parameters: what it writes is finite)."""
    mean = LM.mean_face().points[:, :2]
    grey = np.full((64, 64, 3), 160, np.uint8)
    art = AutoArtist(ArtistStyle(exaggeration=1.0))
    p = np.full(S.PARAM_COUNT, np.nan, np.float32)
    p, _lm, _g = art._geometry(mean, grey, None, None, None, mean, p)
    mask = np.isfinite(p)
    mask.setflags(write=False)
    return mask


#: the artist's P(sunglasses) from which the irises it measures are taken for the lenses' colour
#: (:meth:`AutoArtist.fit_geometry_skin` then does not report them: the hybrid keeps the model's)
SUNGLASSES_OVER_IRISES = 0.5


def iris_mask() -> np.ndarray:
    """(629,) bool: the irises' colours (:func:`colour.iris_colour`)."""
    mask = np.zeros(S.PARAM_COUNT, bool)
    mask[[S.index(f"iris_{sd}.{c}") for sd in "lr" for c in "rgb"]] = True
    mask.setflags(write=False)
    return mask


def lip_mask() -> np.ndarray:
    """(629,) bool: the lips' colours (:func:`colour.lip_colours`)."""
    mask = np.zeros(S.PARAM_COUNT, bool)
    mask[[S.index(f"{f}.{c}") for f in colour.LIP_FEATURES for c in "rgb"]] = True
    mask.setflags(write=False)
    return mask


@lru_cache(maxsize=1)
def skin_mask() -> np.ndarray:
    """(629,) bool: the colours derived from the skin (``prior.set_skin_colours``:
    face, ears, neck, shading lines, nostrils, lower lids)."""
    p = np.full(S.PARAM_COUNT, np.nan, np.float32)
    P.set_skin_colours(p, np.array([0.5, 0.4, 0.3]), neck=colour.NECK)
    mask = np.isfinite(p)
    mask.setflags(write=False)
    return mask
