"""Glasses from two detectors: the attribute regressor H and the auto-artist's
glasses network, fused.

H sees the whole aligned crop and is sure of most sunglasses but misses
thin clear frames; the artist's network over its photo cues (the frame's
lines across the nose and under the eyes, a grid of darkness, texture and
edges over the eyes, how bright the eye whites show through:
:func:`avatarizer.artist.accessories.glasses`) finds frames but is fooled
by deep eye sockets and squints. A small multinomial logistic model over
both (the log of each one's none / clear / sunglasses probabilities)
decides. It is fitted by ``avatarizer-export detectors --fusion`` on the
labelled training photos, with H's outputs as the runtime computes them
and the artist network's out-of-fold probabilities (its probabilities on
the photos it was trained on would be too sure), and its thresholds are
chosen there for precision (an invented pair of glasses is worse than a
missed one). The file ``data/glasses_fusion.json`` names the version of H
and the artist glasses network (``accessories.detector_key``) it was
fitted with; with any other H (a models folder of your own) or network
(the detectors refitted alone), or an older file (format 1 read the
artist's seven raw cues), it is not used and the hybrid falls back to H's
decision plus the artist's where H draws none (``docs/hair.md``).
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

import numpy as np

__all__ = ["GlassesFusion", "FUSION_PATH", "KINDS", "fusion_features", "apply_decision", "consensus", "decide_kind",
           "SPLIT_BY"]

FUSION_PATH = Path(__file__).resolve().with_name("data") / "glasses_fusion.json"
FORMAT = 2
from .checks import is_real
from .hair import GLASSES as KINDS  # H's ``glasses`` classes, in ``glasses.type`` order
from .hair import decide_glasses
#: the artist's part of the input: its glasses network's (none, clear, sun) probabilities
N_CUES = 3
#: both detectors' probabilities are clipped here before the log
P_FLOOR = 1e-4


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _numbers(v) -> np.ndarray:
    """``v`` as a float64 array; ValueError unless it holds numbers only
    (NumPy would read the strings "0.3" and "nan" as numbers)."""
    a = np.asarray(v)
    if a.dtype.kind not in "iuf":
        raise ValueError("glasses fusion file: weights that are not numbers")
    return a.astype(np.float64)


def _kind_probs(glasses_probs) -> np.ndarray:
    """H's glasses probabilities, a ``{kind: p}`` mapping or a sequence, as a
    flat array in :data:`KINDS` order."""
    if isinstance(glasses_probs, Mapping):
        glasses_probs = [glasses_probs[k] for k in KINDS]
    return np.asarray(glasses_probs, np.float64).reshape(-1)


def fusion_features(artist_probs, glasses_probs) -> np.ndarray:
    """(6,) the fused model's input: the log of the artist's glasses
    network's (none, reading, sunglasses) probabilities, then the log of
    H's (each clipped at 1e-4)."""
    c = np.asarray(artist_probs, np.float64).reshape(-1)
    q = _kind_probs(glasses_probs)
    if c.size != N_CUES or q.size != len(KINDS):
        raise ValueError(f"fusion_features: want {N_CUES} and {len(KINDS)} probabilities, got {c.size} and {q.size}")
    return np.log(np.clip(np.concatenate([c, q]), P_FLOOR, 1.0))


@dataclass(frozen=True)
class GlassesFusion:
    """The fused glasses decision (see the module's doc)."""

    mean: np.ndarray       # (6,)
    scale: np.ndarray      # (6,)
    W: np.ndarray          # (3, 6)
    b: np.ndarray          # (3,)
    clear: float           # threshold on P(reading)
    sun: float             # threshold on P(sunglasses)
    attributes_version: str
    attributes_sha256: str | None = None  # the H file it was fitted with, when the file names it
    artist_network: str | None = None  # the artist's glasses network it was fitted with (accessories.detector_key)
    any_glasses: float | None = None  # threshold on 1 - P(none) (:func:`decide_kind`); None in older files

    @classmethod
    def from_doc(cls, doc: Mapping) -> "GlassesFusion":
        """From the JSON document; ValueError when it is not a valid fusion
        file. Numbers must be JSON numbers (the format an integer): a string
        or a 2.9 that int() or float() would coerce is a file written by
        something else."""
        try:
            if not _is_int(doc["format"]) or doc["format"] != FORMAT:
                raise ValueError(f"format {doc['format']!r:.40}, this SDK reads {FORMAT}")
            m, th = doc["model"], doc["thresholds"]
            n = N_CUES + len(KINDS)
            mean, scale, W, b = (_numbers(m[k]) for k in ("mean", "scale", "W", "b"))
            if not all(is_real(th[k]) for k in ("clear", "sun")):
                raise ValueError("glasses fusion file: thresholds that are not numbers")
            clear, sun = float(th["clear"]), float(th["sun"])
            any_glasses = th.get("any")
            if any_glasses is not None and not is_real(any_glasses):
                raise ValueError("glasses fusion file: an 'any' threshold that is not a number")
            version = str(doc["attributes_version"])
            fitted = doc.get("attributes_model")
            sha = fitted.get("sha256") if isinstance(fitted, Mapping) else None
            net = doc.get("artist_network")
            net = None if net is None else str(net)
        except (KeyError, TypeError, AttributeError) as e:
            raise ValueError(f"not a glasses fusion file: {e!r}") from None
        if mean.shape != (n,) or scale.shape != (n,) or W.shape != (len(KINDS), n) or b.shape != (len(KINDS),):
            raise ValueError("glasses fusion file: wrong array shapes")
        if not all(np.isfinite(a).all() for a in (mean, scale, W, b)) or (scale <= 0).any():
            raise ValueError("glasses fusion file: non-finite weights or non-positive scales")
        if not all(0.0 <= t <= 1.0 for t in (clear, sun, 0.5 if any_glasses is None else float(any_glasses))):
            raise ValueError("glasses fusion file: thresholds outside [0, 1]")
        return cls(mean, scale, W, b, clear, sun, version, None if sha is None else str(sha), net,
                   None if any_glasses is None else float(any_glasses))

    @classmethod
    def load(cls, attributes_version: str | None, path: str | Path | None = None,
             sha256: str | None = None, artist_network: str | None = None) -> "GlassesFusion | None":
        """The fusion fitted with H ``attributes_version`` (and, when both the
        file and the caller name one, the model file's ``sha256``) and with
        the artist's glasses network ``artist_network`` (its
        ``accessories.detector_key``; the file must name the same); None
        when the file is missing, or was fitted with another H or another
        network (or none is given), and also, with a warning, when it is
        there but unreadable or invalid."""
        file = Path(path or FUSION_PATH)
        if not file.is_file():
            return None
        try:
            doc = json.loads(file.read_text(encoding="utf-8"))
            fusion = cls.from_doc(doc)
        except (OSError, ValueError, RecursionError, KeyError, TypeError, AttributeError) as exc:
            # (RecursionError: JSON nested too deep to parse) there but unusable: said, as the other fitted
            # files say it (a cut file changed the glasses drawn silently)
            import warnings

            warnings.warn(f"{file} is not used ({type(exc).__name__}: {exc}); H alone decides the glasses",
                          RuntimeWarning, stacklevel=2)
            return None
        if attributes_version is None or fusion.attributes_version != str(attributes_version):
            return None
        if sha256 is not None and fusion.attributes_sha256 is not None and fusion.attributes_sha256 != str(sha256):
            return None
        if artist_network is None or fusion.artist_network != str(artist_network):
            return None  # its input is that network's probabilities: another network's are not what it learned
        return fusion

    def probabilities(self, artist_probs, glasses_probs) -> np.ndarray:
        """(3,) P(none, reading, sunglasses) from the artist's glasses
        network's probabilities and H's: a standardised multinomial logistic
        model (:func:`avatarizer.artist.accessories.probabilities`)."""
        from .artist.accessories import probabilities

        return probabilities({"mean": self.mean, "scale": self.scale, "W": self.W, "b": self.b},
                             fusion_features(artist_probs, glasses_probs))

    def decide(self, artist_probs, glasses_probs) -> tuple[int, np.ndarray]:
        """(kind 0 none / 1 reading / 2 sunglasses, the (3,) probabilities):
        :func:`decide_kind` on the fused probabilities."""
        p = self.probabilities(artist_probs, glasses_probs)
        return decide_kind(p, artist_probs, glasses_probs, self.clear, self.sun, self.any_glasses), p

    def split(self, p) -> bool:
        """The fused probabilities ``p`` are sure of glasses (1 - P(none) at
        or over :attr:`any_glasses`) but of neither kind (see
        :func:`decide_kind`)."""
        return _split(p, self.clear, self.sun, self.any_glasses)

    def kind_at_thresholds(self, p) -> int:
        """The kind the fused probabilities ``p`` clear the thresholds for
        (before :func:`consensus`)."""
        return _kind_at(p, self.clear, self.sun)


#: ``avatar.attributes["glasses"]["decided_by"]`` where the fusion decided at its thresholds (with the
#: consensus): every other fused decision names its rule; this one said nothing (as H alone does), where
#: the gender's, the hat's and the hair colour's fusions say theirs
FUSION_BY = "H x the artist's glasses network"
#: ``avatar.attributes["glasses"]["decided_by"]`` of glasses :func:`decide_kind` draws where the fused
#: probabilities are sure of glasses but of neither kind
SPLIT_BY = "fusion: glasses near certain, their kind not: clear ones"


def _kind_at(p, clear: float, sun: float) -> int:
    """The kind the fused probabilities ``p`` clear the thresholds for: sunglasses first."""
    return 2 if float(p[2]) >= sun else 1 if float(p[1]) >= clear else 0


def _split(p, clear: float, sun: float, any_glasses: float | None) -> bool:
    return any_glasses is not None and _kind_at(p, clear, sun) == 0 and 1.0 - float(p[0]) >= any_glasses


def decide_kind(p, artist_probs, glasses_probs, clear: float, sun: float, any_glasses: float | None = None) -> int:
    """The drawn kind (0 none / 1 clear / 2 sunglasses) from the fused
    probabilities ``p`` (none, clear, sunglasses) at the thresholds:
    sunglasses from P(sunglasses) ``sun``, else clear glasses from
    P(clear) ``clear``, then :func:`consensus`. Where neither kind clears
    its threshold but glasses of some kind are near certain (1 - P(none)
    at or over ``any_glasses``, chosen for the same precision; a fusion
    file without it: never), clear glasses where P(clear) is over P(none)
    (as sunglasses not sure enough under a hat, ``hair.sunglasses_under_hat``)
    and one of the two experts ranks some glasses first: the mass split
    between the kinds drew no glasses at all, P(none) 0.001 (the clear
    glasses of black-and-white photos and under face masks, session 74;
    without the P(clear) condition, a dark band under the eyes read as
    sunglasses at 0.72, P(clear) 0.0, drew clear glasses: a review)."""
    if _split(p, clear, sun, any_glasses):
        tops = {int(np.argmax(np.asarray(artist_probs, np.float64))), int(np.argmax(_kind_probs(glasses_probs)))}
        return 1 if tops - {0} and float(p[1]) > float(p[0]) else 0
    return consensus(_kind_at(p, clear, sun), artist_probs, glasses_probs)


def consensus(kind: int, artist_probs, glasses_probs) -> int:
    """The fused ``kind`` kept only where one of the two experts ranks it
    first; sunglasses neither ranks first become clear glasses where one
    ranks some glasses first, otherwise none. The linear fusion over their
    log-probabilities extrapolates where one reads an unusual value: a
    75-year-old man both call "none" (the artist 0.67, H 0.72, H's P(sun)
    0.27, far above its usual 5e-4) was drawn with sunglasses at 0.89. On the
    fusion's training photos out of fold (2,199, 456 with glasses): invented
    42 -> 22 (sunglasses 10 -> 4), found 447 -> 436; held out (102 + 187):
    invented 7 -> 4, found 57 -> 54 (``avatarizer-export detectors --fusion``
    reports the fused decision with it)."""
    if kind == 0:
        return 0
    tops = {int(np.argmax(np.asarray(artist_probs, np.float64))), int(np.argmax(_kind_probs(glasses_probs)))}
    if kind in tops:
        return kind
    return 1 if kind == 2 and (tops - {0}) else 0


def apply_decision(attributes: dict, kind: int, probs) -> dict:
    """Writes the fused decision into a :func:`avatarizer.hair.decode_attributes`
    dict (in place, returned): ``glasses_probs`` / ``glasses_any`` /
    ``sunglasses`` become the fused ones, the drawn and decided glasses
    flags and ``glasses_type`` / ``glasses`` follow ``kind``; H's own
    probabilities stay under ``glasses_probs_model``; ``glasses_source`` is
    ``"fused"``."""
    a = attributes
    a.setdefault("glasses_probs_model", dict(a["glasses_probs"]))
    a["glasses_probs"] = {k: float(v) for k, v in zip(KINDS, probs)}
    a["glasses_any"] = float(1.0 - probs[0])
    a["sunglasses"] = float(probs[2])
    decide_glasses(a, kind)
    a["glasses_source"] = "fused"
    return a
