"""Grey or dark facial hair from the beard's own pixels and the hair's colour together (the hybrid's).

The artist's grey-beard detector (``artist_detectors.json``'s ``beard_grey``,
:func:`avatarizer.artist.accessories.beard_grey_evidence`) reads the colour
of the chin's and upper lip's pixels. Stubble and short grey beards show
the skin between the strands and read brown: on the photos labelled by eye
for their facial hair's colour, a third of the grey beards on loose
portraits were drawn dark, most of them under hair the hybrid reads grey
with P 0.99 or more. Grey facial hair goes with grey hair: of the
training photos whose hair the hybrid reads grey at 0.99 or more, 90% of
the beards are labelled grey.

The fusion is a logistic model over the logits of the detector's
probability and the hybrid's P(grey hair) (``hair_colour_probs["gray"]``:
H, the hair region and the hair-colour network together), fitted by
``avatarizer-export beard-grey-fusion`` on the training photos whose facial
hair's colour is labelled by eye, through ``Avatarizer()``; its threshold is
the best balanced accuracy out of fold. The file names what it was fitted
with: H's checksum, the detector (:func:`avatarizer.artist.accessories.detector_key`)
and the hair-colour network's checksum; with any other, it is not used
and the detector alone decides, as before.

``data/beard_grey_fusion.json`` (format 1): ``w`` (the two weights: the
detector's logit, the grey hair's), ``c``, ``threshold``,
``attributes_sha256``, ``detector``, ``hair_colour_sha256``, and the
fit's report; ``hair_colour_tight_sha256``, the tight crops' hair-colour
network's (most of its rows are tight crops, read by that network: a refit
of it alone left the fusion in use on other readings; a file without the
key, older, is not checked for it).
"""
from __future__ import annotations

import math
from pathlib import Path

from .checks import clipped_logit, read_json_object

#: the file in the SDK's data folder
NAME = "beard_grey_fusion.json"
#: the file format this SDK reads
FORMAT = 1
#: ``attributes["beard_grey_by"]`` where the fusion decided the facial hair's colour
BY = "grey-beard detector x hair colour"
#: the largest file accepted; the largest weight (a crafted file cannot make the logit NaN)
MAX_BYTES, MAX_WEIGHT = 1 << 16, 1e3
#: probabilities are clipped to [P_FLOOR, 1 - P_FLOOR] before their logits
P_FLOOR = 1e-4
DATA = Path(__file__).resolve().parent / "data"
#: a file without ``hair_colour_tight_sha256`` (older than the key): the tight network not checked
_UNCHECKED = object()


def features(p_detector: float, p_grey_hair: float) -> tuple[float, float]:
    """The fusion's inputs: the logits of the detector's probability and of P(grey hair)."""
    return clipped_logit(p_detector, P_FLOOR), clipped_logit(p_grey_hair, P_FLOOR)


class BeardGreyFusion:
    """P(the facial hair is grey or white) from the detector and P(grey hair) (see the module doc)."""

    def __init__(self, doc) -> None:
        """ValueError when ``doc`` (the parsed file) is not a valid fusion file."""
        try:
            if isinstance(doc.get("format"), bool) or doc.get("format") != FORMAT:
                raise ValueError(f"format {doc.get('format')!r:.40}, this SDK reads {FORMAT}")
            w = doc["w"]
            if not isinstance(w, list) or len(w) != 2:
                raise ValueError("w must be two numbers")
            values = [*w, doc["c"], doc["threshold"]]
            if any(isinstance(v, bool) or not isinstance(v, (int, float)) for v in values):
                raise ValueError("w, c and threshold must be numbers")
            self.w = (float(w[0]), float(w[1]))
            self.c, self.threshold = float(doc["c"]), float(doc["threshold"])
            self.attributes_sha256, self.detector, self.hair_colour_sha256 = (
                str(doc[k]) for k in ("attributes_sha256", "detector", "hair_colour_sha256"))
            tight = doc.get("hair_colour_tight_sha256", _UNCHECKED)
            if tight is not _UNCHECKED and tight is not None and not isinstance(tight, str):
                raise ValueError("hair_colour_tight_sha256 must be a string or null")
            self.hair_colour_tight_sha256 = tight
        except (KeyError, TypeError, AttributeError, OverflowError) as exc:  # (a whole number too large: 1e400)
            raise ValueError(f"not a beard grey fusion file ({exc!r:.80})") from None
        if not all(math.isfinite(v) and abs(v) <= MAX_WEIGHT for v in (*self.w, self.c)):
            raise ValueError(f"weights that are not finite or beyond {MAX_WEIGHT:g}")
        if not 0.0 < self.threshold < 1.0:
            raise ValueError(f"threshold {self.threshold!r} is not in (0, 1)")

    @classmethod
    def load(cls, attributes_sha256: str | None, detector: str | None, hair_colour_sha256: str | None,
             folder: str | Path | None = None,
             hair_colour_tight_sha256: str | None = None) -> "BeardGreyFusion | None":
        """The fusion in ``folder`` (default the SDK's data folder) fitted
        with this H, this grey-beard detector and this hair-colour network
        (and this tight crops' network, ``hair_colour_tight_sha256``: None
        without one, where the file names one); None when the file is
        missing or was fitted with others (the detector alone decides then),
        and also, with a warning, when it is there but unusable."""
        import warnings

        path = Path(folder if folder is not None else DATA) / NAME
        if not path.is_file() or None in (attributes_sha256, detector, hair_colour_sha256):
            return None
        try:
            fusion = cls(read_json_object(path, MAX_BYTES))
        except (OSError, ValueError) as exc:
            warnings.warn(f"{path} is not used ({exc}); the grey-beard detector alone reads the facial hair's "
                          "colour", RuntimeWarning, stacklevel=2)
            return None
        if (fusion.attributes_sha256, fusion.detector, fusion.hair_colour_sha256) != \
                (str(attributes_sha256), str(detector), str(hair_colour_sha256)):
            return None  # fitted on other readings: not what it learned
        if fusion.hair_colour_tight_sha256 is not _UNCHECKED and \
                fusion.hair_colour_tight_sha256 != (None if hair_colour_tight_sha256 is None
                                                    else str(hair_colour_tight_sha256)):
            return None  # (its tight crops were read by another network)
        return fusion

    def probability(self, p_detector: float, p_grey_hair: float) -> float:
        """P(grey or white facial hair); NaN where either input is not finite."""
        if not (math.isfinite(float(p_detector)) and math.isfinite(float(p_grey_hair))):
            return math.nan
        x = features(p_detector, p_grey_hair)
        z = self.w[0] * x[0] + self.w[1] * x[1] + self.c
        return 1.0 / (1.0 + math.exp(-min(max(z, -60.0), 60.0)))

    def grey(self, p_detector: float, p_grey_hair: float) -> bool:
        """Whether the facial hair is drawn grey: :meth:`probability` at or past the threshold."""
        p = self.probability(p_detector, p_grey_hair)
        return math.isfinite(p) and p >= self.threshold
