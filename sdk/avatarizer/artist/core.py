"""The orchestrator: one aligned photo → all 629 avatar parameters."""
from __future__ import annotations

import numpy as np

from .. import schema as S
from . import accessories, colour, geometry, hair
from .photo import crop_valid_mask, make_photo
from .style import ArtistStyle

__all__ = ["AutoArtist"]


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
        size = int(self.style.crop_size)
        crop = face.crop(size)
        try:
            hair_mask = face.hair_mask(size)
        except RuntimeError:
            hair_mask = None
        valid = crop_valid_mask(face, size)
        return self.fit_landmarks(face.canonical, crop, hair_mask, valid=valid)

    def fit_landmarks(self, canonical: np.ndarray, crop: np.ndarray, hair_mask: np.ndarray | None = None,
                      *, valid: np.ndarray | None = None) -> np.ndarray:
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
        """
        return self._fit(canonical, crop, hair_mask, valid)[0]

    def _fit(self, canonical, crop, hair_mask, valid):
        """(params, measurements): the measurements dict is for diagnostics."""
        lm = np.asarray(canonical, np.float64)
        if lm.ndim != 2 or lm.shape[0] < 478 or lm.shape[1] < 2:
            raise ValueError(f"canonical landmarks must have shape (478, 2), got {lm.shape}")
        lm = lm[:478, :2]
        if not np.isfinite(lm).all():
            raise ValueError("canonical landmarks contain NaN or infinity")
        st = self.style
        photo = make_photo(st, crop, hair_mask, valid)
        p = S.default()
        g: dict = {}  # shared geometry (canonical units)
        geometry.outline(st, p, lm, g)
        geometry.eyes(st, p, lm, g)
        geometry.brows(st, p, lm, g, photo)
        geometry.nose(st, p, lm, g, photo)
        geometry.mouth(st, p, lm, g)
        geometry.stylise(st, p, g)
        col = colour.colours(st, p, lm, g, photo)
        geometry.shading(st, p, lm, g, photo, col)
        hair.hair(st, p, lm, g, photo, col)
        if st.detect_glasses:
            accessories.glasses(st, p, lm, g, photo, col)
        if st.detect_beard:
            accessories.facial_hair(st, p, lm, g, photo, col)
        accessories.clothes(st, p, g, photo, col)
        return S.clip(p), g
