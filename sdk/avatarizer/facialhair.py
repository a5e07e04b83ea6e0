"""Beard and moustache from the lower face: the facial-hair network.

The attribute regressor H sees the whole aligned crop through features
distilled from ImageNet and misses light beards (red, grey, white) and
stubble; the auto-artist's detector over hand-measured cues misses the same.
This small CNN (:mod:`avatarizer.regionnet`) reads only the lower face: the
:data:`REGION` block of the aligned 128-px crop (the crop H and the hair
stage read), and gives P(beard) and P(moustache), the crop's and its
mirror image's averaged inside the graph. ``avatarizer-export facial-hair``
fits it (on the labels by eye, the shared labels and UTKFace women and
children by their file names; thresholds out of fold for precision 0.95
on the labels by eye of photos as they come, ``ffhq128``'s)
and writes ``data/facial_hair.onnx`` and ``data/facial_hair.json`` (the
file's SHA-256, the thresholds, the report). The hybrid estimator decides
the beard and the moustache with it (:func:`avatarizer.hair.add_facial_hair`),
and so does the auto-artist since session 47
(:func:`avatarizer.artist.accessories.network_facial_hair`);
without the files, or with files that do not match (a checksum, a format),
it falls back to H and the artist's detector, with a warning for files
that are there but unusable.
"""
from __future__ import annotations

from pathlib import Path

from . import regionnet as RN
from .regionnet import CROP, DATA, FORMAT, RegionNetwork

__all__ = ["SPEC", "REGION", "CROP", "INPUT_HW", "OUTPUTS", "ONNX_NAME", "JSON_NAME", "DATA", "FORMAT",
           "load", "clear_cache", "RegionNetwork"]

#: the lower face's block of the aligned 128-px crop: rows 56-120, columns 24-104
#: (under the nose's tip to below the chin, the jaw's corners included)
SPEC = RN.Spec("facial_hair", (56, 120, 24, 104), ("beard", "moustache"),
               fallback="beards and moustaches are decided by the attribute model and the artist's detector",
               title="facial-hair")
REGION, OUTPUTS, INPUT_HW = SPEC.region, SPEC.outputs, SPEC.input_hw
ONNX_NAME, JSON_NAME = SPEC.onnx_name, SPEC.json_name


def load(folder: str | Path | None = None) -> RegionNetwork | None:
    """The network in ``folder`` (default the SDK's data folder), loaded once;
    None when its files are missing or unusable (a warning says why)."""
    return RN.load(SPEC, folder)


def clear_cache() -> None:
    """Forgets the loaded network (after ``avatarizer-export facial-hair`` rewrote it)."""
    RN.clear_cache()
