"""The reported gender from H and the face's shape together (the gender fusion).

H, the attribute regressor, reads P(male) from the crop's appearance; on
loose portraits it misread a fifth of the held-out photos of the shared
labels (hair pulled back read male, a cap or a hard hat read female). The
face's own proportions, taken pose-free from MediaPipe's 3D landmarks
(:func:`avatarizer.landmarks.frontalize`: the same face seen from the
front, as the artist draws it), carry much of what tells them apart (jaw,
brow, nose and lip proportions) and none of the hair or headwear.

The fusion is a logistic model over the frontal landmarks (x, y of all 478
points, flattened) and the logit of H's P(male), fitted by
``avatarizer-export gender`` on the training photos with a gender label
(UTKFace's names, the shared labels of ``ffhq128-labelled``), each photo
also mirrored (its principal components and L2 weight chosen out of fold),
and stored collapsed to one linear map: ``logit = u . x + a * logit(P_H) +
c``, read here on the landmarks and on their mirror image, averaged, so a
face and its mirror image read alike. The file names the H it was fitted
with (``attributes_sha256``): with another H it is not used and H alone
decides, as with the hat fusion. Its decision threshold (the best balanced
accuracy out of fold) decides ``gender``.

``data/gender_fusion.json`` (format 1): ``u`` (956 numbers), ``a``, ``c``,
``threshold``, ``attributes_sha256``, and the fit's report.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from . import landmarks as LM
from .checks import clipped_logit, read_json_object

#: the file in the SDK's data folder
NAME = "gender_fusion.json"
#: the file format this SDK reads
FORMAT = 1
#: ``attributes["male_by"]`` (the public gender's ``decided_by``) where the fusion read it
BY = "H x face shape"
#: the largest file accepted, and the largest weight (a crafted file cannot make the logit NaN)
MAX_BYTES = 1 << 20
MAX_WEIGHT = 1e6
#: H's probability is clipped to [P_FLOOR, 1 - P_FLOOR] before its logit
P_FLOOR = 1e-4
DATA = Path(__file__).resolve().parent / "data"


def frontal_vector(landmarks) -> tuple[np.ndarray, np.ndarray]:
    """((956,), (956,)): the frontal landmarks (:func:`avatarizer.landmarks.frontalize`
    of MediaPipe's (478, 3) landmarks), flattened x0, y0, x1, ...; and the
    same of their mirror image (x negated, each point swapped with its
    mirror partner). ValueError for landmarks of another shape or not finite."""
    f = LM.frontalize(landmarks)
    m = f[LM.mean_face().mirror] * np.array([-1.0, 1.0])
    return f.reshape(-1), m.reshape(-1)


def logit(p: float) -> float:
    """H's P(male) as the fusion reads it: its logit, clipped at :data:`P_FLOOR`."""
    return clipped_logit(p, P_FLOOR)


class GenderFusion:
    """P(male) from the frontal landmarks and H's P(male) (see the module doc)."""

    def __init__(self, doc) -> None:
        """ValueError when ``doc`` (the parsed file) is not a valid gender fusion file."""
        try:
            if isinstance(doc.get("format"), bool) or doc.get("format") != FORMAT:
                raise ValueError(f"format {doc.get('format')!r:.40}, this SDK reads {FORMAT}")
            u = np.asarray(doc["u"])
            if u.dtype.kind not in "iuf" or u.shape != (2 * LM.NUM_LANDMARKS,):
                raise ValueError(f"u must be {2 * LM.NUM_LANDMARKS} numbers")
            self.u = u.astype(np.float64)
            self.a, self.c, self.threshold = (float(doc[k]) for k in ("a", "c", "threshold"))
            self.attributes_sha256 = str(doc["attributes_sha256"])
        except (KeyError, TypeError, AttributeError, OverflowError) as exc:  # (a whole number too large: 1e400)
            raise ValueError(f"not a gender fusion file ({exc!r:.80})") from None
        if not (np.isfinite(self.u).all() and (np.abs(self.u) <= MAX_WEIGHT).all()
                and all(math.isfinite(v) and abs(v) <= MAX_WEIGHT for v in (self.a, self.c))):
            raise ValueError(f"weights that are not finite or beyond {MAX_WEIGHT:g}")
        if not 0.0 < self.threshold < 1.0:
            raise ValueError(f"threshold {self.threshold!r} is not in (0, 1)")

    @classmethod
    def load(cls, attributes_sha256: str | None, folder: str | Path | None = None) -> "GenderFusion | None":
        """The fusion in ``folder`` (default the SDK's data folder) fitted
        with the H file of this checksum; None when the file is missing or
        was fitted with another H (H alone decides then), and also, with a
        warning, when it is there but unusable."""
        import warnings

        path = Path(folder if folder is not None else DATA) / NAME
        if not path.is_file() or attributes_sha256 is None:
            return None
        try:
            fusion = cls(read_json_object(path, MAX_BYTES))
        except (OSError, ValueError) as exc:
            warnings.warn(f"{path} is not used ({exc}); H alone reads the gender", RuntimeWarning, stacklevel=2)
            return None
        if fusion.attributes_sha256 != str(attributes_sha256):
            return None  # fitted on another H's probabilities
        return fusion

    def probability(self, landmarks, p_model: float) -> float:
        """P(male) from MediaPipe's (478, 3) landmarks and H's P(male)."""
        x, xm = frontal_vector(landmarks)
        z = 0.5 * (float(self.u @ x) + float(self.u @ xm)) + self.a * logit(p_model) + self.c
        return float(1.0 / (1.0 + math.exp(-min(max(z, -60.0), 60.0))))


def fuse(attributes: dict, fusion: GenderFusion, landmarks) -> dict:
    """``attributes`` (:func:`avatarizer.hair.decode_attributes`'s) with
    ``male`` read by ``fusion`` from the face's ``landmarks`` and H's
    ``male``: H's own value kept under ``male_model_read``, the decided and
    drawn ``male`` flags (and the thresholds later readings use,
    :func:`avatarizer.hair.read_with_facial_hair`) at the fusion's
    threshold, ``gender`` and ``male_by`` (:data:`BY`). Nothing changes
    without a finite P(male) or with landmarks that cannot be read. In
    place, returned."""
    p_h = attributes.get("male")
    if p_h is None or not math.isfinite(float(p_h)):
        return attributes
    try:
        p = fusion.probability(landmarks, float(p_h))
    except ValueError:  # (landmarks of another shape, not finite)
        return attributes
    attributes["male_model_read"] = float(p_h)
    attributes["male"] = p
    th = attributes.setdefault("thresholds", {})
    for flags, kind in (("decided", "decision"), ("drawn", "draw")):
        th.setdefault(kind, {})["male"] = fusion.threshold
        attributes.setdefault(flags, {})["male"] = bool(p >= fusion.threshold)
    attributes["gender"] = "male" if attributes["decided"]["male"] else "female"
    attributes["male_by"] = BY
    return attributes
