"""The automatic avatar artist: one aligned photo → all 629 avatar parameters.

:class:`AutoArtist` measures a face from its MediaPipe landmarks (already in
the canonical frame, see :mod:`avatarizer.align`) and from the aligned crop,
then draws it in one consistent, simplified style. Every choice that turns a
*measured* face into a *drawn* face lives in :class:`ArtistStyle`, so the style
is changed in one place. The artist is what the export side runs on real
photos to make paired training data, and it is a usable avatarizer on its own::

    from avatarizer.align import FaceAligner
    from avatarizer.artist import AutoArtist

    with FaceAligner() as aligner:
        face = aligner.align(frame)                 # H×W×3 uint8 RGB
    params = AutoArtist().fit(face)                 # (629,) float32, valid
    image = avatarizer.render(params, 256, background="white")

It works in three steps:

1. **Geometry** from the canonical landmarks: the face outline (MediaPipe
   face-oval points at the template's angles, with the skull above the
   forehead extrapolated from the eye-to-chin distance), ears, eyelids,
   creases, irises, brows (refined by the dark band in the photo), nose,
   lips, cheeks, shadows, highlights, wrinkles and the neck.
2. **Stylisation** (:func:`avatarizer.artist.geometry.stylise`): slightly bigger eyes,
   narrower mouth, fuller lips, cleaned curves and a partial left-right
   symmetrisation, all from :class:`ArtistStyle`.
3. **Colour, hair and accessories** from the crop: robust medians of skin,
   lips, irises, brows and hair; a hairstyle family from the prior
   (:func:`avatarizer.prior.hairstyle_contours`) chosen from the hair
   silhouette (length, volume, fringe, bald scalp, texture) and pulled onto
   the outline of the hair mask (a bald head's side hair is the template's:
   its scalp would pull it into a cap); conservative glasses and facial-hair
   detectors.

Everything is numpy/OpenCV on small arrays, no per-pixel Python loops: about
14-21 ms of one CPU core per face for the full fit and 5-7.5 ms for
:meth:`AutoArtist.fit_geometry_skin` (landmarks and crop given;
``benchmarks/artist.py`` on a loaded 2-core machine, docs/artist.md). Most of it is NumPy's
fixed cost per call, so small samples go through :mod:`.stats` and the
helpers in :mod:`.photo` (same arithmetic, less overhead).
Side naming follows the schema: ``_l`` is the feature on the *image's* left,
which MediaPipe calls the subject's right (indices 33, 133, 468, ...).
"""
from .core import AutoArtist, exaggerate_params, mean_avatar
from .photo import crop_valid_mask
from .style import ArtistStyle

__all__ = ["ArtistStyle", "AutoArtist", "crop_valid_mask", "exaggerate_params", "mean_avatar"]
