"""The hair colour class from the whole face: the hair-colour network.

The hair's drawn colour is the photo's, moved into the class that the
attribute regressor H (the whole crop, through features distilled from
ImageNet) and the hair region's colour classifier (statistics of the
segmented hair's pixels against the cheeks) agree on
(:func:`avatarizer.hair.fuse_hair_colour`). Both confused brown with black
and blond with brown: held out, labelled by eye, 15 of 29 blond heads and 34
of 68 brown ones were drawn in their colour (session 30). This small CNN
(:mod:`avatarizer.regionnet`, the blocks' network over the whole aligned
128-px crop, averaged 2x2 first) gives P(black, brown, blond, red, gray),
a softmax, the crop's and its mirror image's averaged inside the graph;
the hair stage multiplies it into that fusion as a third expert (it was
trained class-balanced, as the fusion's other readings are weighed).
It was fitted and checked on loose portraits; on UTKFace's tight chips
(mostly forehead, above it the aligner's replicated border) it drew 17 of
129 black-haired people brown and a Black baby blond (session 31). So
where the hair region covers less than
:data:`avatarizer.hair.HAIR_CLASS_MIN_AREA` of the crop, or none is read,
a second network of the same shape reads it instead
(:data:`SPEC_TIGHT`, :func:`load_tight`): trained on the same photos, a
third of them shown framed as UTKFace frames its chips (session 45),
its reading fused at :data:`TIGHT_WEIGHT` (:func:`tempered`); on the 312
chips labelled by eye (never trained on) the drawn class's accuracy went
0.644 -> 0.683 through ``Avatarizer()``, where before no network read
them. Loose portraits keep the first network: the second reads them 0.03
worse (balanced, two seeds).
``avatarizer-export hair-colour-net`` fits both on the hair colours
labelled by eye and the shared labels (the training split) and writes
``data/hair_colour_net.onnx`` and ``data/hair_colour_net.json`` (the
file's SHA-256, the report), then the pair ``hair_colour_net_tight``.
Without a network's files, or with files that do not match (a checksum, a
format; then with a warning), the crops it reads are read as before it.
"""
from __future__ import annotations

from pathlib import Path

from . import regionnet as RN
from .hair import HAIR_COLOURS as CLASSES  # its outputs, in the hair colour classes' order
from .hair import tempered  # (the hair region's reading of a tight crop is tempered too)
from .regionnet import RegionNetwork

__all__ = ["SPEC", "SPEC_TIGHT", "TIGHT_WEIGHT", "CLASSES", "load", "load_tight", "tempered", "clear_cache",
           "RegionNetwork"]
SPEC = RN.Spec("hair_colour_net", (0, RN.CROP, 0, RN.CROP), CLASSES,
               fallback="the hair colour is read by the attribute model and the hair region's classifier",
               title="hair-colour", thresholds=False)
#: the network of tight crops (the hair region under HAIR_CLASS_MIN_AREA of the crop, or none read)
SPEC_TIGHT = RN.Spec("hair_colour_net_tight", (0, RN.CROP, 0, RN.CROP), CLASSES,
                     fallback="a tight crop's hair colour is read by the attribute model and the hair "
                              "region's classifier", title="tight-crop hair-colour", thresholds=False)
#: the power the tight crops' network's probabilities are raised to in the fusion (:func:`tempered`): it
#: reads UTKFace's chips confidently and wrongly often enough (grey at 0.87-0.92 on young Black people with
#: short dark hair) that at full weight it drew young Black adults' hair grey 14.4% -> 17.3% and black
#: 65.5% -> 57.6% of 139 chips (both splits, aged 15-45); at 0.5, 15.1% and 61.2%, with most of the gain on the
#: 312 chips labelled by eye kept (drawn class 0.644 -> 0.683, 0.689 at full weight; session 45)
TIGHT_WEIGHT = 0.5


def load(folder: str | Path | None = None) -> RegionNetwork | None:
    """The network in ``folder`` (default the SDK's data folder), loaded once;
    None when its files are missing or unusable (a warning says why)."""
    return RN.load(SPEC, folder)


def load_tight(folder: str | Path | None = None) -> RegionNetwork | None:
    """The tight crops' network (:data:`SPEC_TIGHT`) in ``folder``, as :func:`load`."""
    return RN.load(SPEC_TIGHT, folder)


def clear_cache() -> None:
    """Forgets the loaded networks (after ``avatarizer-export hair-colour-net`` rewrote it)."""
    RN.clear_cache()
