"""Long or short hair where the crop shows little beside the face: the
tight crops' hair-length network.

The hairstyle search takes only long styles, or only short ones, where the
attribute regressor H's ``hair_long`` output (fitted on loose portraits
labelled by eye) is sure (:class:`avatarizer.hair.HairRetriever`'s length
gate). A tight crop (UTKFace's chips end just below the chin and just
beside the cheeks; :func:`avatarizer.hair.sides_observed` is false: either
band beside the cheeks less than half inside the photo) shows
too little beside the face for it: on 440 held-out chips labelled by eye
H read 187 of 289 long-haired people long, so the hair stage dropped its
reading there, and long hair in a tight crop was drawn short wherever the
silhouette match fell on a short style. This small CNN
(:mod:`avatarizer.regionnet`, over the whole aligned 128-px crop averaged
2x2 first; one sigmoid output, P(the hair hangs to the jaw line or lower),
the crop's and its mirror image's averaged inside the graph) reads those
crops instead: trained on the loose portraits labelled by eye, and on those
where H is sure of the length, 70% of them shown framed as UTKFace frames
its chips (session 46); on those 440 chips (never trained on; the recipe
was chosen with them in view) it reads 255 of 289 long and 147 of 151
short at 0.5, and the avatars draw 254 and 147 so.

Its JSON carries the length gate it was chosen with (``gates``: ``long``
and ``short``, out of fold on the training photos shown as tight chips,
the precision H's gates are chosen at; :attr:`RegionNetwork.gates`), which
the search uses for its reading in place of H's.
``avatarizer-export hair-length-net`` fits it and writes
``data/hair_length_net_tight.onnx`` and ``data/hair_length_net_tight.json``.
Without its files, or with files that do not match (a checksum, a format,
gates that are not numbers in [0, 1]; then with a warning), a tight crop's
length is read as before it: not at all.
"""
from __future__ import annotations

from pathlib import Path

from . import regionnet as RN
from .hair import TIGHT_LENGTH_BY as BY
from .regionnet import RegionNetwork

__all__ = ["SPEC_TIGHT", "BY", "load_tight", "clear_cache", "RegionNetwork"]
SPEC_TIGHT = RN.Spec("hair_length_net_tight", (0, RN.CROP, 0, RN.CROP), ("hair_long",),
                     fallback="a tight crop's hair length is not read", title="tight-crop hair-length",
                     thresholds=False, gates=True)


def load_tight(folder: str | Path | None = None) -> RegionNetwork | None:
    """The network in ``folder`` (default the SDK's data folder), loaded once;
    None when its files are missing or unusable (a warning says why)."""
    return RN.load(SPEC_TIGHT, folder)


def clear_cache() -> None:
    """Forgets the loaded networks (after ``avatarizer-export hair-length-net`` rewrote it)."""
    RN.clear_cache()
