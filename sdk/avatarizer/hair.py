"""Hair and accessories at run time: the hairstyle bank, nearest-neighbour
retrieval and the merge into a full avatar vector (numpy only, no torch).

The bank (``data/hair_bank.npz`` + ``data/hair_bank.json``, built by
``avatarizer-export hairbank`` from the auto-artist's hair fits of the
training photos) holds a few hundred real fitted hairstyles (k-means medoids).
Each entry has

* its hair **geometry**: the non-colour parameters of the ``hair`` slice, with
  every point in a *head frame* (x relative to the head's centre line, y
  relative to the skull top, both divided by the head's half width; see
  :func:`head_frame`), so it can be fitted onto any face;
* its **attribute vector** (:data:`RETRIEVAL_ATTRIBUTES`: hair length, volume,
  curl, fringe, bald, headwear): the attribute regressor's predictions for
  the cluster's member photos, averaged, so that bank and query live in the
  same space;
* its **shape descriptor** (:func:`shape_descriptor`: the outer radius of the
  hair silhouette along :data:`N_RAYS` fixed rays from the head centre, and
  the hairline height, from the members' hair masks, averaged).

Hair *colour* is not in the bank: it comes from the photo.

Typical use, after the attribute regressor H (role ``attributes``)::

    from avatarizer import hair

    bank = hair.HairBank.load()                      # verifies the sha256
    retriever = hair.HairRetriever.for_model(bank, h_session.description)  # the model's gates
    attrs = hair.decode_attributes(mirrored_mean(h_session, crop))  # avatarizer.pipeline.hair: H on the crop
                                                                    # and its mirror image, as the hair stage
    idx = retriever.query(attrs, face.hair_mask(128), face.canonical)
    params = hair.merge(face_params, bank.entry(idx), hair_rgb, attrs)

The search is a brute-force weighted squared distance over the whole bank in
numpy (:meth:`HairRetriever.distances`), a few microseconds for ~500 entries.
"""
from __future__ import annotations

import hashlib
from functools import lru_cache
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

import numpy as np

from . import landmarks as L
from .checks import gate_pair_ok, is_real
from .errors import ModelError
from .gender import BY as GENDER_FUSION_BY
from . import prior as P
from . import schema as S
from .artist import stats
from .artist.accessories import LENS_ASPECT, lens_size, sample_beard_rgb
from .artist.style import ArtistStyle
from .artist.photo import at_size, float_rgb, from_lab, mask01, norm, poly_mask, to_lab

__all__ = [
    "HairBank", "HairBankError", "HairEntry", "HairRetriever", "RetrievalWeights", "merge",
    "shape_descriptor", "head_frame", "hair_attributes_from_params", "decode_attributes",
    "model_thresholds", "public_attributes",
    "attribute_vector", "sample_hair_rgb", "hair_colour", "hair_colour_probs",
    "drawn_hair_colour", "class_hair_colour", "hair_colour_class_of", "hair_colour_of_class", "age_lines", "hair_colour_features",
    "read_hair_colour", "sample_beard_rgb", "fuse_hair_colour", "hair_region_reading", "age_gray_ratio",
    "cheek_skin_lab", "region_classifier_reads", "gray_weighted", "too_little_hair", "tempered", "hair_unseen",
    "steady_style", "steady_beard_style", "steady_gender", "steady_readings", "STEADY_READINGS", "add_artist_receding", "RECEDING_BY", "RECEDING_MIN_MALE", "RECEDING_HYSTERESIS", "tone_colour_ratios", "model_hair_colour", "natural_hair_colour", "attributes_as_drawn", "hair_length_as_drawn",
    "drawn_length", "fuse_age", "trusted_age", "model_age", "add_facial_hair", "FACIAL_HAIR_BY", "read_with_facial_hair",
    "sunglasses_under_hat", "sure_under_hat", "SUNGLASSES_UNDER_HAT", "UNDER_HAT_BY",
    "TIGHT_LENGTH_BY", "TIGHT_LENGTH_WITH_FACIAL_HAIR_BY",
    "WITH_FACIAL_HAIR_BY", "add_hat_network",
    "HAT_NETWORK_BY", "HAT_FUSION_BY", "hat_query",
    "hair_region", "FALLBACK_HAIR_RGB",
    "N_RAYS", "RAY_ANGLES_DEG", "DESCRIPTOR_NAMES",
    "RETRIEVAL_ATTRIBUTES", "HAIR_COLOURS", "GLASSES", "BINARY_ATTRIBUTES", "REGRESSED_ATTRIBUTES",
    "FAMILIES",
]

DATA = Path(__file__).resolve().with_name("data")
BANK_FORMAT = 1

# ------------------------------------------------------------------ layout
#: Attribute regressor outputs (ONNX role ``attributes``), in order.
HAIR_COLOURS = ("black", "brown", "blond", "red", "gray")
GLASSES = ("none", "reading", "sunglasses")
BINARY_ATTRIBUTES = ("bald", "beard", "moustache", "headwear", "male")
REGRESSED_ATTRIBUTES = ("age", "length", "volume", "curl", "fringe")
#: The hair attributes retrieval compares (all in [0, 1]).
RETRIEVAL_ATTRIBUTES = ("length", "volume", "curl", "fringe", "bald", "headwear")
#: Hairstyle families the bank reports its coverage in.
FAMILIES = ("bald", "receding", "buzz", "short", "fringe", "parted", "tied_up", "bob", "medium", "long",
            "curly", "afro", "headwear")

# The shape descriptor: rays from the head centre, y down, 0 deg = image right,
# -90 = straight up; from 40 deg below the right horizontal over the top to 40
# deg below the left one (the 100 deg under the chin show neck and clothes).
N_RAYS = 32
RAY_ANGLES_DEG = np.linspace(40.0, -220.0, N_RAYS)
_RAY_DIRS = np.stack([np.cos(np.deg2rad(RAY_ANGLES_DEG)), np.sin(np.deg2rad(RAY_ANGLES_DEG))], 1)
_RAY_RADII = np.linspace(0.2, 2.6, 97)  # in head half-widths
_GAP = 3  # hair samples further than this many samples apart are not connected
DESCRIPTOR_NAMES = tuple(f"ray{k}" for k in range(N_RAYS)) + ("hairline",)

# MediaPipe face oval (used as a polygon) and the four eye corners (avatarizer.landmarks)
_FACE_OVAL = L.FACE_OVAL
_EYE_CORNERS = (*L.EYE_ENDS[0], *L.EYE_ENDS[1])

_HAIR_FEATURES = ("hair_back", "hair_front", "hair_strand0", "hair_strand1")
_COLOUR = np.array([k == "color" for k in S.KINDS])
#: Schema indices of the bank's geometry columns: the hair slice without colours.
GEOMETRY_INDEX = np.array([i for i in range(S.HAIR.start, S.HAIR.stop) if not _COLOUR[i]], np.int64)
_KIND = np.array(S.KINDS)


class HairBankError(ModelError, RuntimeError):
    """The hairstyle bank is missing, corrupt or of another format: a
    :class:`~avatarizer.errors.ModelError`, as the README's table of errors
    gives for a damaged data file (an app catching ModelError missed it),
    and a RuntimeError as before."""


# ------------------------------------------------------------------- frames


def head_frame(params) -> tuple[float, float, float]:
    """``(cx, top, hw)`` of a parameter vector's face outline: the head's centre
    line (mid-point of the temples, outline points 5 and 9), the skull top
    (point 7) and the half width at the temples. Hair geometry in the bank is
    ``((x - cx) / hw, (y - top) / hw)``."""
    f = S.points(np.asarray(params, np.float32), "face").astype(np.float64)
    cx = 0.5 * (f[5, 0] + f[9, 0])
    hw = max(0.5 * (f[5, 0] - f[9, 0]), 0.15)
    return float(cx), float(f[7, 1]), float(hw)


def _to_head(values: np.ndarray, index: np.ndarray, frame) -> np.ndarray:
    cx, top, hw = frame
    out = np.array(values, np.float64, copy=True)
    k = _KIND[index]
    out[..., k == "x"] = (out[..., k == "x"] - cx) / hw
    out[..., k == "y"] = (out[..., k == "y"] - top) / hw
    w = np.isin(k, ("width", "size"))
    out[..., w] = out[..., w] / hw
    return out


def _from_head(values: np.ndarray, index: np.ndarray, frame) -> np.ndarray:
    cx, top, hw = frame
    out = np.array(values, np.float64, copy=True)
    k = _KIND[index]
    out[..., k == "x"] = out[..., k == "x"] * hw + cx
    out[..., k == "y"] = out[..., k == "y"] * hw + top
    w = np.isin(k, ("width", "size"))
    out[..., w] = out[..., w] * hw
    return out


def hair_to_head_frame(params) -> np.ndarray:
    """The geometry columns (:data:`GEOMETRY_INDEX`) of a 629 vector in its head frame."""
    p = np.asarray(params, np.float32)
    return _to_head(p[GEOMETRY_INDEX], GEOMETRY_INDEX, head_frame(p)).astype(np.float32)


# --------------------------------------------------------------- attributes


#: The back contour's two side points whose lower one says how far the hair
#: comes down (``length``: :func:`hair_attributes_from_params`, :meth:`HairBank.drawn_long`).
_BACK_LOW_POINTS = (1, 11)


def _length_of(low):
    """The ``length`` attribute of the back contour's lowest side point's y."""
    return np.clip((low - 0.05) / 0.85, 0.0, 1.0)


def hair_attributes_from_params(params) -> np.ndarray:
    """Hair attributes of an avatar vector (the auto-artist's hair fit), in
    :data:`RETRIEVAL_ATTRIBUTES` order except ``headwear`` (NaN: not in the
    hair slice). All in [0, 1]:

    * length: how far the back hair reaches below the eyes (0 = short, 1 =
      past the shoulders): lowest of the back contour's lower side points;
    * volume: mean distance of the back contour's upper points from the
      skull centre, in head half widths, minus 1 (tight = 0);
    * curl: ``hair_style.curl``;
    * fringe: how low the front hairline comes (0 = at the skull top, 1 =
      down to the brows);
    * bald: no front hair layer (``layers`` < 2).
    """
    p = np.asarray(params, np.float32)
    cx, top, hw = head_frame(p)
    back = S.points(p, "hair_back").astype(np.float64)
    front = S.points(p, "hair_front").astype(np.float64)
    length = _length_of(max(back[j, 1] for j in _BACK_LOW_POINTS))
    c = np.array([cx, top + hw])
    vol = np.linalg.norm(back[3:10] - c, axis=1).mean() / hw - 1.0
    volume = np.clip(vol / 0.8, 0.0, 1.0)
    curl = float(p[S.index("hair_style.curl")])
    fringe = np.clip((front[0, 1] - top) / hw / 1.0 - 0.2, 0.0, 1.0)
    layers = float(p[S.index("hair_style.layers")])
    bald = 1.0 if layers < 1.5 else 0.0
    return np.array([length, volume, curl, fringe, bald, np.nan], np.float32)


#: thresholds used when a model file carries none (models before 2.0.0)
DEFAULT_THRESHOLD = 0.5
#: flags that have decision / drawing thresholds (glasses: any glasses;
#: sunglasses: dark lenses)
FLAGS = ("glasses", "sunglasses", "bald", "beard", "moustache", "headwear", "male")


def length_gates(description: Mapping | None) -> tuple[float | None, float | None] | None:
    """``(gate_long, gate_short)`` of an attribute model's ``hair_long``
    output (its description's ``hair_long`` record, ``avatarizer-export
    hair-length``; either may be None: that side has no gate, no threshold
    having reached the precision), or None when it has none."""
    rec = (dict(description or {}).get("hair_long") or {})
    return _gate_pair(rec) if isinstance(rec, Mapping) else None


#: the genders :func:`length_gates_by_gender` reads (as ``decided["male"]`` reports them)
GENDERS = ("female", "male")


def length_gates_by_gender(description: Mapping | None) -> dict[str, tuple[float | None, float | None]] | None:
    """``{"female": (gate_long, gate_short), "male": ...}``: the length
    gate's thresholds for faces reported female and male (the ``hair_long``
    record's ``gates_by_gender``, chosen by ``avatarizer-export
    hair-length`` on the out-of-fold predictions of each gender's training
    photos at the same precision: long hair is three in four women's and
    one in fifteen men's, so one pair of thresholds gated long-haired women
    short; ``(None, None)``: no threshold reached it, no length gate for
    that gender), or None where the record has no valid pair for both or
    no valid pair for all (:func:`length_gates`, which then serves every
    face, or none)."""
    rec = (dict(description or {}).get("hair_long") or {})
    by = rec.get("gates_by_gender") if isinstance(rec, Mapping) else None
    if not isinstance(by, Mapping) or length_gates(description) is None:
        return None
    pairs = {g: _gate_pair(by[g], no_gate_ok=True) if isinstance(by.get(g), Mapping) else None for g in GENDERS}
    return pairs if all(v is not None for v in pairs.values()) else None


def _checked_gender_gates(by) -> dict[str, tuple[float | None, float | None]]:
    """``by`` (:func:`length_gates_by_gender`'s form) as floats; ValueError
    for a key that is not one of :data:`GENDERS` or a pair that is not two
    thresholds in (0, 1) or None, the short one not above the long one."""
    if not isinstance(by, Mapping) or not set(by) <= set(GENDERS):
        raise ValueError(f"length_gate_by_gender: a mapping of {GENDERS} to (gate_long, gate_short)")
    out = {}
    for g, pair in by.items():
        try:
            hi, lo = (None if v is None else float(v) for v in pair)
        except (TypeError, ValueError):
            raise ValueError(f"length_gate_by_gender[{g!r}]: not a pair of thresholds") from None
        if not gate_pair_ok(hi, lo):
            raise ValueError(f"length_gate_by_gender[{g!r}]: thresholds in (0, 1), "
                             "the short one not above the long one")
        out[g] = (hi, lo)
    return out


def _gate_pair(rec: Mapping, no_gate_ok: bool = False) -> tuple[float | None, float | None] | None:
    """``(gate_long, gate_short)`` of a record holding both (either None:
    no gate on that side; both None only with ``no_gate_ok``), or None when
    it is missing or not a pair of :func:`~avatarizer.checks.gate_pair_ok` thresholds."""
    if "gate_long" not in rec or "gate_short" not in rec:
        return None
    try:
        hi, lo = (None if rec[k] is None else float(rec[k]) for k in ("gate_long", "gate_short"))
    except (TypeError, ValueError):
        return None
    if (hi is None and lo is None and not no_gate_ok) or not gate_pair_ok(hi, lo):
        return None
    return hi, lo


#: A crop is *tight* (the photo ends just below the chin, as UTKFace's chips)
#: when less than this share of the crop below the mouth lies inside the
#: photo (loose crops, FFHQ and StyleGAN: 0.74 or more, median 0.91; UTKFace
#: 0.33-0.44): the retrieval's bald floor (:data:`TIGHT_CROP_BALD_FLOOR`)
MIN_LOWER_VALID = 0.6

#: H's ``hair_long`` is used only when at least this share of each band beside
#: the face (:data:`SIDE_BAND` wide, outside the cheeks' outline, from the eye
#: line to the mouth) lies inside the photo (:func:`side_share`): the hair
#: that hangs beside the cheeks is what tells long from short. Measured on the photos labelled by eye
#: for hair length (session 26, scratch ``/tmp/s26/tight4*.py``; docs/hair.md),
#: each also cut as UTKFace cuts its chips (a square 1.163 face widths wide,
#: UTKFace's median), 1.4 and 1.7 face widths wide, at the chin and 0.1 face
#: widths above it, and at one cheek's outline and at the nose: on the 526
#: training photos the crops kept were read right 91.8% of the time (the long
#: and short gates right 93.8% and 94.9%, over the head's 90% target), those
#: dropped 81.4% (UTKFace-like squares, faces cut at one side). The share below
#: the mouth (the rule before: kept 91.3%, its short gate 92.7%) dropped crops cut
#: at the chin, where H reads as well as on the whole photo (92.0%), and webcam
#: close-ups (a long-haired woman in ``d3.mp4`` was drawn with a short crop), and
#: kept faces cut at the cheek (87.3%, short gate 84.1%)
MIN_SIDE_VALID = 0.5
#: width of each band beside the face (canonical units, the crop is [-1, 1])
SIDE_BAND = 0.4


def lower_face_observed(valid, landmarks) -> bool:
    """Whether the crop shows the photo below the mouth (see
    :data:`MIN_LOWER_VALID`); ``valid``: S×S bool, crop pixels inside the
    photo (None: all are)."""
    if valid is None:
        return True
    v = np.asarray(valid, bool)
    lm = np.asarray(landmarks, np.float64)
    g = (np.arange(v.shape[0]) + 0.5) * 2.0 / v.shape[0] - 1.0
    a, b = L.MOUTH_CORNERS
    rows = g >= 0.5 * (lm[a, 1] + lm[b, 1])
    return bool(rows.any() and v[rows].mean() >= MIN_LOWER_VALID)


def sides_observed(valid, landmarks) -> bool:
    """Whether the crop shows the photo beside the face, where long hair
    hangs: :func:`side_share` at least :data:`MIN_SIDE_VALID`."""
    return side_share(valid, landmarks) >= MIN_SIDE_VALID


def side_share(valid, landmarks) -> float:
    """How much of the photo beside the face the crop shows: of the two
    bands :data:`SIDE_BAND` wide outside the cheeks' outline (landmarks 234
    and 454), from the eye line to the mouth, the share inside the photo of
    the *less* visible one (a face cut at one side by the frame's edge, or
    a crop as tight as UTKFace's chips, shows one side or neither). A band
    is read over its columns inside the crop; one with less than a quarter
    of its width there (a face turned or placed far to one side) counts as
    not seen, 0, as do empty rows. ``valid``: S×S bool, crop pixels inside
    the photo (None: all are, 1); ``landmarks``: the canonical landmarks."""
    if valid is None:
        return 1.0
    v = np.asarray(valid, bool)
    lm = np.asarray(landmarks, np.float64)
    n = v.shape[0]
    g = (np.arange(n) + 0.5) * 2.0 / n - 1.0
    eye = np.mean([lm[i, 1] for pair in L.EYE_ENDS for i in pair])
    a, b = L.MOUTH_CORNERS
    rows = (g >= eye) & (g <= 0.5 * (lm[a, 1] + lm[b, 1]))
    if not rows.any():
        return 0.0
    left, right = (lm[i, 0] for i in L.PAIR["cheek_outline"])
    lo, hi = min(left, right), max(left, right)
    width = SIDE_BAND * n / 2.0  # a band's columns, in or out of the crop
    seen = [float(v[np.ix_(rows, cols)].mean()) if cols.sum() >= 0.25 * width else 0.0
            for cols in ((g < lo) & (g >= lo - SIDE_BAND), (g > hi) & (g <= hi + SIDE_BAND))]
    return min(seen)


def model_thresholds(description: Mapping | None) -> tuple[dict, dict]:
    """``(decision, draw)`` thresholds from an attribute model's embedded
    description (``decision_thresholds``, ``draw_thresholds``; 0.5 for
    any flag a model does not name). :class:`ModelError` naming the field
    when one is not what it should be: thresholds an object of numbers in
    [0, 1], ``hair_colour_priors`` an object with a number >= 0 for every
    colour of :data:`HAIR_COLOURS`, ``skin_tone.hair_colour_by_tone`` (when
    there) bins and ratios (``decision["hair_colour_tone_prior"]``,
    :func:`tone_colour_ratios`)."""
    from .errors import ModelError

    d = dict(description or {})
    where = f"attribute model {d.get('name')!r}: embedded description field"

    def number(field: str, key: str, v, lo: float, hi: float) -> float:
        if not (is_real(v) and lo <= float(v) <= hi):
            raise ModelError(f"{where} {field}[{key!r}] is {v!r:.80}, not a number in [{lo:g}, {hi:g}]")
        return float(v)

    out = []
    for field in ("decision_thresholds", "draw_thresholds"):
        given = d.get(field) or {}
        if not isinstance(given, Mapping):
            raise ModelError(f"{where} {field} is {given!r:.80}, not an object {{flag: threshold}}")
        out.append({k: number(field, k, given.get(k, DEFAULT_THRESHOLD), 0.0, 1.0) for k in FLAGS})
    dec, draw = out
    priors = d.get("hair_colour_priors")
    if priors is not None:
        if not isinstance(priors, Mapping) or any(c not in priors for c in HAIR_COLOURS):
            raise ModelError(f"{where} hair_colour_priors is {priors!r:.80}, not an object with a prior "
                             f"for each of {list(HAIR_COLOURS)}")
        dec["hair_colour_priors"] = [number("hair_colour_priors", c, priors[c], 0.0, float("inf"))
                                     for c in HAIR_COLOURS]
    rec = d.get("skin_tone")
    prior = rec.get("hair_colour_by_tone") if isinstance(rec, Mapping) else None
    if prior is not None:  # (avatarizer-export skin-tone, H 2.3.4 on)
        bins, ratios = (prior.get(k) if isinstance(prior, Mapping) else None for k in ("bins", "ratios"))
        ok = isinstance(bins, list) and isinstance(ratios, list) and len(ratios) == len(bins) + 1 \
            and all(is_real(v) for v in bins) and all(
                isinstance(r, list) and len(r) == len(HAIR_COLOURS) and all(is_real(v) and v >= 0 for v in r)
                for r in ratios) and bool(np.all(np.diff(np.asarray(bins, np.float64)) > 0))
        if not ok:
            raise ModelError(f"{where} skin_tone.hair_colour_by_tone is {prior!r:.80}, not an object with "
                             f"increasing 'bins' and one row of {len(HAIR_COLOURS)} ratios >= 0 per band")
        dec["hair_colour_tone_prior"] = {"bins": np.asarray(bins, np.float64),
                                         "ratios": np.asarray(ratios, np.float64)}
    return dec, draw


def decode_attributes(outputs: Mapping[str, np.ndarray], i: int = 0, *, decision: Mapping | None = None,
                      draw: Mapping | None = None) -> dict:
    """The attribute regressor's outputs (one batch row ``i``) as a dict.

    Probabilities: ``hair_colour_probs``, ``glasses_probs`` (none, reading,
    sunglasses) and one float per flag (``bald``, ``beard``, ``moustache``,
    ``headwear``, ``male``); ``glasses_any`` = 1 − P(none). Regressed:
    ``age`` (years), ``length``, ``volume``, ``curl``, ``fringe`` (0..1);
    ``skin_tone`` (the Monk Skin Tone step in even daylight, 1-10) and
    ``hair_long`` (the calibrated probability that the hair hangs to the chin
    or jaw line or lower) when the model has those outputs.

    Decisions: ``decided`` (flag → bool at the ``decision`` thresholds, the
    model's best balanced accuracy: what ``eval`` scores) and ``drawn``
    (flag → bool at the ``draw`` thresholds, chosen for precision: what
    :func:`merge` draws). ``glasses_type`` (0 none, 1 reading, 2 sunglasses)
    and ``glasses`` follow ``drawn``; ``hair_colour`` is the colour with the
    highest probability relative to its training frequency
    (``decision["hair_colour_priors"]``; the most probable colour without
    them); ``gender`` follows ``decided["male"]``. Thresholds default to
    0.5 (see :func:`model_thresholds`)."""
    dec = {k: DEFAULT_THRESHOLD for k in FLAGS} | dict(decision or {})
    drw = {k: DEFAULT_THRESHOLD for k in FLAGS} | dict(draw or {})
    out: dict = {}
    hc = np.asarray(outputs["hair_colour"], np.float64)[i]
    out["hair_colour_probs"] = dict(zip(HAIR_COLOURS, map(float, hc)))
    priors = dec.get("hair_colour_priors")
    # with the training colour frequencies: the balanced decision argmax p / prior
    score = hc / np.maximum(np.asarray(priors, np.float64), 1e-3) if priors is not None else hc
    out["hair_colour"] = HAIR_COLOURS[int(np.argmax(score))]
    gl = np.asarray(outputs["glasses"], np.float64)[i]
    out["glasses_probs"] = dict(zip(GLASSES, map(float, gl)))
    out["glasses_any"] = float(1.0 - gl[0])
    out["sunglasses"] = float(gl[2])
    b = np.asarray(outputs["binary"], np.float64)[i]
    for name, v in zip(BINARY_ATTRIBUTES, b):
        out[name] = float(v)
    r = np.asarray(outputs["regress"], np.float64)[i]
    for name, v in zip(REGRESSED_ATTRIBUTES, r):
        out[name] = float(np.clip(v, 0.0, 100.0)) if name == "age" else float(np.clip(v, 0.0, 1.0))
    # the optional heads: H 2.3.1 on, the Monk step in even daylight (avatarizer.skintone); H 2.3.2 on,
    # P(hair to the chin or lower) from the labels by eye
    for name, lo, hi in (("skin_tone", 1.0, 10.0), ("hair_long", 0.0, 1.0)):
        if outputs.get(name) is not None:
            v = float(np.asarray(outputs[name], np.float64)[i].reshape(-1)[0])
            out[name] = float(np.clip(v, lo, hi)) if np.isfinite(v) else None
    p = {"glasses": out["glasses_any"], "sunglasses": out["sunglasses"],
         **{k: out[k] for k in BINARY_ATTRIBUTES}}
    out["decided"] = {k: bool(p[k] >= dec[k]) for k in FLAGS}
    out["drawn"] = {k: bool(p[k] >= drw[k]) for k in FLAGS}
    out["thresholds"] = {"decision": {k: float(dec[k]) for k in FLAGS}, "draw": {k: float(drw[k]) for k in FLAGS}}
    out["glasses_type"] = (0 if not out["drawn"]["glasses"] else 2 if out["drawn"]["sunglasses"] else 1)
    out["glasses"] = GLASSES[out["glasses_type"]]
    out["gender"] = "male" if out["decided"]["male"] else "female"
    return out


def public_attributes(attributes: Mapping) -> dict:
    """What ``Avatar.attributes`` shows, from :func:`decode_attributes`'s dict:
    per attribute its ``value`` and the calibrated ``probability`` of that
    value, plus ``probabilities`` of every class for glasses and hair colour.
    Glasses, beard, moustache, headwear and bald take the *drawing*
    decision (what the avatar shows: the thresholds chosen for precision; a
    moustache is drawn with a beard); gender the balanced decision; hair
    colour the decoded colour; age is
    regressed (years; its probability is ``None``), and so is ``skin_tone``
    (the Monk step, where the model has it; ``decided_by`` ``"skin-tone
    network"`` where that network read it, the hybrid); ``hair_length`` is ``long`` or
    ``short`` with its probability, where the model has ``hair_long``. A
    drawn beard or moustache whose colour the hair stage sampled has
    ``colour``: ``"grey"`` (drawn as its grey or white strands) or
    ``"dark"`` (the chin's darker hair: black, brown or red). A
    moustache drawn only because a beard is has ``drawn_with`` ``"beard"``
    (its probability then the larger of the two). An
    attribute the app set (:func:`apply_settings`) has the set value,
    probability 1 (``None`` for age and skin tone), ``source`` ``"app"``
    and under ``model`` the value and probability the model gave it."""
    a = attributes
    out = _public_view(a)
    given = a.get("set_by_app", ())
    model = _public_view(_as_the_model_read(a)) if given else {}
    for name in given:
        if name == "headwear_kind":  # (reported as the headwear's ``kind``, ``kind_source`` "app")
            continue
        entry = out.setdefault(name, {})
        entry.update(probability=None if name in ("age", "skin_tone") else 1.0, source="app")
        if name in model:
            entry["model"] = {"value": model[name]["value"], "probability": model[name]["probability"]}
            if name in ("beard", "moustache", "bald", "headwear", "skin_tone") and a.get(f"{name}_by"):
                # a detector's reading (the skin-tone network's)
                entry["model"]["decided_by"] = a[f"{name}_by"]
            if name == "headwear" and "headwear_kind" in given:  # the kind the kind model read, if any
                entry["model"].update({k: model[name][k] for k in ("kind", "kind_probabilities")
                                       if k in model[name]})
    return out


def attributes_as_drawn(public: dict | None, params) -> dict | None:
    """``public`` (:func:`public_attributes` of the last identity refresh)
    with the glasses, headwear and hair length values of what ``params``
    draws (in place, returned): in video mode the drawing keeps each
    categorical parameter at its most frequent recent value
    (``video.Tracker``), so a refresh that reads the glasses away is not
    drawn at once, and the attributes said "none" beside drawn glasses on
    25-44 of d12's 183 frames. A value that differs from the refresh's gets
    that refresh's probability of it and ``"decided_by": "kept from earlier
    refreshes"``; the hair length is that of the hairstyle shown
    (:func:`drawn_length`; the stream keeps its style over refreshes,
    :func:`steady_style`, and H's reading between the length gates leaves
    the style to the silhouette: it said the other length on 221 of d3's 354
    frames and 126 of d11's 225), ``"decided_by": "the hairstyle drawn"``.
    Values the app set are left as set (the drawing follows them)."""
    if public is None:
        return None
    p = np.asarray(params).reshape(-1)
    g = public.get("glasses")
    kind = GLASSES[int(np.clip(S.category(p, "glasses.type"), 0, len(GLASSES) - 1))]
    if g is not None and g.get("source") != "app" and g["value"] != kind:
        g["value"] = kind
        g["probability"] = float(g.get("probabilities", {}).get(kind, g["probability"]))
        g["decided_by"] = "kept from earlier refreshes"
    h = public.get("headwear")
    hat = S.category(p, "headwear.type") > 0
    if h is not None and h.get("source") != "app" and bool(h["value"]) != hat:
        h["value"], h["probability"] = hat, 1.0 - float(h["probability"])
        h["decided_by"] = "kept from earlier refreshes"
    if h is not None and hat and ("kind" in h or h.get("decided_by") == "kept from earlier refreshes"):
        # the kind drawn (kept, as the hat itself, over refreshes; also where this refresh drew none)
        from .headwear import KINDS

        h["kind"] = KINDS[int(np.clip(S.category(p, "headwear.type"), 0, len(KINDS) - 1))]
    elif h is not None and not hat:
        h.pop("kind", None)
        h.pop("kind_probabilities", None)
    _facial_hair_as_drawn(public, p)
    _hair_colour_as_drawn(public, p)
    return hair_length_as_drawn(public, p)


#: the beard's opacity over which the renderer draws it (avz.c: 0.002)
DRAWN_BEARD_OPACITY = 0.002
#: the moustache's widths over which the renderer draws its tapered stroke (avz.c: any width over 1e-5)
DRAWN_MOUSTACHE_WIDTH = 1e-5
#: what a beard or moustache another reading took away loses of that reading (its shape, colour, and the
#: moustache's "drawn with the beard")
_FACIAL_HAIR_DETAIL = ("style", "style_probability", "style_decided_by", "colour", "colour_decided_by",
                       "drawn_with")


def _facial_hair_as_drawn(public: dict, p: np.ndarray) -> None:
    """The beard and moustache of :func:`attributes_as_drawn`: as drawn (the
    tracker keeps the identity's, frozen while it suspects another person and
    else moving ~2% a frame): a stream from a bearded man to a clean-shaven
    one reported no beard beside the drawn one for 75 frames (a review,
    session 76). A value that differs from the refresh's gets that refresh's
    probability of it and ``"decided_by": "kept from earlier refreshes"``; one
    taken away loses the refresh's shape and colour."""
    drawn = {"beard": float(p[S.index("beard.opacity")]) > DRAWN_BEARD_OPACITY,
             "moustache": max(float(p[S.index("moustache.w0")]), float(p[S.index("moustache.w1")]))
             > DRAWN_MOUSTACHE_WIDTH}
    for name, shown in drawn.items():
        e = public.get(name)
        if e is None or e.get("source") == "app" or bool(e["value"]) == shown:
            continue
        e["value"], e["probability"] = shown, 1.0 - float(e["probability"])
        e["decided_by"] = KEPT_BY
        if not shown:
            for k in _FACIAL_HAIR_DETAIL:
                e.pop(k, None)
    m, b = public.get("moustache"), public.get("beard")
    if m is not None and m.get("drawn_with") == "beard" and b is not None and not b["value"]:
        m.pop("drawn_with")  # (the beard it was drawn with is not drawn: the moustache alone)


def _hair_colour_as_drawn(public: dict, p: np.ndarray) -> None:
    """The hair colour of :func:`attributes_as_drawn`: the class the drawn
    hair reads as (:func:`hair_colour_class_of`), where hair is drawn and
    shows (no bald style, no head scarf or turban over it): the tracker keeps
    the identity's colour over refreshes (brown drawn beside a reported
    black for 75 frames after a change of person; a review, session 76)."""
    e = public.get("hair_colour")
    if e is None or e.get("source") == "app" or S.category(p, "headwear.type") >= 4 \
            or S.category(p, "hair_style.layers") <= 0:
        return
    shown = hair_colour_class_of([float(p[S.index(f"hair_front.{c}")]) for c in "rgb"])
    if shown != e["value"] and shown in HAIR_COLOURS:
        e["value"] = shown
        e["probability"] = float((e.get("probabilities") or {}).get(shown, 0.0))
        e["decided_by"] = KEPT_BY


#: ``decided_by`` of an attribute reported as the hairstyle drawn shows it (the hair length, a bald head the
#: silhouette's search drew)
DRAWN_STYLE_BY = "the hairstyle drawn"


def hair_length_as_drawn(public: dict | None, params) -> dict | None:
    """``public`` with the hair length of the hairstyle ``params`` draws
    (:func:`drawn_length`) where H read the other (in place, returned): that
    value, the probability of it (one less H's), ``"decided_by": "the
    hairstyle drawn"``. H's reading between the length gates leaves the
    style to the silhouette, and a reported gender's gates differ from 0.5
    (a man read long is not gated long), so the two can differ in image mode
    too. A length the app set is left as set, and so is H's under a head
    scarf or a turban (``headwear.type`` 4 or 5: no hair is drawn, the
    hair is hidden)."""
    if public is None:
        return None
    n = public.get("hair_length")
    p = np.asarray(params).reshape(-1)
    if S.category(p, "headwear.type") in (4, 5):
        return public
    drawn = drawn_length(p)
    if n is not None and n.get("source") != "app" and n["value"] != drawn:
        n["value"] = drawn
        n["probability"] = None if n.get("probability") is None else 1.0 - float(n["probability"])
        n["decided_by"] = DRAWN_STYLE_BY
    return public


def _eye_and_chin(p: np.ndarray) -> tuple[float, float]:
    """The y of a parameter vector's eye line (the upper lids' mean) and chin (``face`` point 0)."""
    from .proportions import _UPPER_LIDS

    return float(np.mean(np.asarray(p, np.float64)[_UPPER_LIDS])), float(p[S.index("face.y0")])


def _length_on_face(p: np.ndarray) -> float:
    """Where the back hair's lowest side point lies on the face: 0 at the eye
    line (the upper lids' mean), 1 at the chin (``face`` point 0)."""
    back = S.points(p, "hair_back").astype(np.float64)
    low = max(back[j, 1] for j in _BACK_LOW_POINTS)
    eye, chin = _eye_and_chin(p)
    return (low - eye) / max(chin - eye, 1e-3)


def _long_on_face() -> float:
    """:func:`_length_on_face` of the default face with its back hair at the
    ``length`` attribute's 0.5 (:func:`hair_attributes_from_params`), the line
    :meth:`HairBank.drawn_long` draws between the bank's long and short styles."""
    p = S.default().copy()
    col = S.FEATURES["hair_back"].points.start
    for j in _BACK_LOW_POINTS:
        p[col + 2 * j + 1] = 0.05 + 0.85 * 0.5
    return _length_on_face(p)


#: :func:`drawn_length`'s line between long and short, on the face's own eye-to-chin scale
LONG_ON_FACE = _long_on_face()


def drawn_length(params) -> str:
    """``"long"`` or ``"short"``: the length of the hair ``params`` draw, on
    the face's own scale: the back hair's lowest side point at least
    :data:`LONG_ON_FACE` of the way from the eye line to the chin, the line
    the bank's long and short styles are told apart by on the default face
    (:meth:`HairBank.drawn_long`), wherever the face is drawn and however
    large (measured in the frame, a style the bank calls short came out long
    on larger faces: 9 of 300 photos; a review). No hair is short."""
    p = np.asarray(params, np.float32).reshape(-1)
    if S.category(p, "hair_style.layers") <= 0:  # (the renderer draws no hair under 0.5)
        return "short"
    return "long" if _length_on_face(p) >= LONG_ON_FACE else "short"


def _public_view(a: Mapping) -> dict:
    gp = a["glasses_probs"]
    kind = GLASSES[int(a["glasses_type"])]
    out = {"glasses": {"value": kind, "probability": float(gp[kind]), "probabilities": dict(gp)}}
    for k in ("beard", "moustache", "headwear", "bald"):
        on = bool(a["drawn"][k])
        out[k] = {"value": on, "probability": float(a[k] if on else 1.0 - a[k])}
    for k in ("beard", "moustache", "bald"):
        if a.get(f"{k}_by") and k not in a.get("set_by_app", ()):  # the artist's detector, or a face mask
            out[k]["decided_by"] = a[f"{k}_by"]
    if out["beard"]["value"] and a.get("beard_style"):  # the drawn beard's shape (read_beard_style)
        out["beard"]["style"] = a["beard_style"]
        out["beard"]["style_probability"] = float(a["beard_style_probability"])
        if a.get("beard_style_by"):  # a stream's shape kept over a refresh that read the other
            out["beard"]["style_decided_by"] = a["beard_style_by"]
    if a.get("glasses_by") and "glasses" not in a.get("set_by_app", ()):  # drawn from the artist's cues
        out["glasses"]["decided_by"] = a["glasses_by"]
    if a.get("headwear_by") and "headwear" not in a.get("set_by_app", ()):  # not drawn (a face cut by the edge)
        out["headwear"]["decided_by"] = a["headwear_by"]
    kind_set = "headwear_kind" in a.get("set_by_app", ())
    if out["headwear"]["value"]:  # the kind drawn (headwear.read_kind)
        from .headwear import DEFAULT_KIND, KINDS

        kind = a.get("headwear_type")
        out["headwear"]["kind"] = KINDS[int(kind) if kind else DEFAULT_KIND]
        if kind_set:  # (the kind model's reading is under "model", public_attributes)
            out["headwear"]["kind_source"] = "app"
        elif a.get("headwear_kind_probs"):
            out["headwear"]["kind_probabilities"] = dict(a["headwear_kind_probs"])
        else:  # no reading (the hat's shape could not be measured: a photo cut above the brows): the default
            out["headwear"]["kind_source"] = "default"
    if a["drawn"]["beard"] and not a["drawn"]["moustache"] and "moustache" not in a.get("set_by_app", ()):
        # merge draws a beard with its moustache
        out["moustache"] = {"value": True, "probability": float(max(a["moustache"], a["beard"])),
                            "drawn_with": "beard"}
    if a.get("beard_grey") is not None:  # the drawn facial hair's colour, as the hair stage sampled it
        for k in ("beard", "moustache"):
            if out[k]["value"]:
                out[k]["colour"] = "grey" if a["beard_grey"] else "dark"
                if a.get("beard_grey_by"):  # (the grey-beard detector with the hair's colour: avatarizer.beardgrey)
                    out[k]["colour_decided_by"] = a["beard_grey_by"]
    out["hair_colour"] = {"value": a["hair_colour"], "probability": float(a["hair_colour_probs"][a["hair_colour"]]),
                          "probabilities": dict(a["hair_colour_probs"])}
    if "hair-colour network" in str(a.get("hair_colour_source", "")):  # (the hybrid's third reading took part)
        out["hair_colour"]["decided_by"] = a["hair_colour_source"]
    male = bool(a["decided"]["male"])
    out["gender"] = {"value": "male" if male else "female", "probability": float(a["male"] if male else 1 - a["male"])}
    if a.get("male_by"):  # the gender fusion's, read with the facial hair drawn, or kept in a stream
        out["gender"]["decided_by"] = a["male_by"]
    out["age"] = {"value": float(a["age"]), "probability": None}
    if a.get("age_by") and "age" not in a.get("set_by_app", ()):  # H's with the artist's, or a face mask's
        out["age"]["decided_by"] = a["age_by"]
    if a.get("skin_tone") is not None:
        out["skin_tone"] = {"value": round(float(a["skin_tone"]), 2), "probability": None}
        if a.get("skin_tone_by") and "skin_tone" not in a.get("set_by_app", ()):  # the skin-tone network's
            out["skin_tone"]["decided_by"] = a["skin_tone_by"]
    if a.get("hair_long") is not None:
        long_ = float(a["hair_long"]) >= 0.5
        out["hair_length"] = {"value": "long" if long_ else "short",
                              "probability": float(a["hair_long"] if long_ else 1.0 - a["hair_long"])}
        if a.get("hair_long_by") == BABY_SHORT_BY and "hair_length" not in a.get("set_by_app", ()):
            out["hair_length"]["probability"] = None  # (a rule's, not a reading: the network's stays internal)
        if a.get("hair_long_by") and "hair_length" not in a.get("set_by_app", ()):
            out["hair_length"]["decided_by"] = a["hair_long_by"]
    return out


def decide_glasses(attributes: dict, kind: int) -> None:
    """Makes a :func:`decode_attributes` dict say glasses ``kind`` (0 none,
    1 reading, 2 sunglasses): its drawn and decided ``glasses`` and
    ``sunglasses`` flags, ``glasses_type`` and ``glasses`` (in place)."""
    for d in ("drawn", "decided"):
        attributes[d]["glasses"], attributes[d]["sunglasses"] = kind > 0, kind == 2
    attributes["glasses_type"], attributes["glasses"] = int(kind), GLASSES[int(kind)]


#: Under a drawn hat, sunglasses are drawn only at this probability or more
#: (:func:`sunglasses_under_hat`): a brim's shadow darkens the eyes as tinted
#: lenses do. Every hatted photo labelled with sunglasses read 0.9993 or more
#: through ``Avatarizer()`` (17: 13 of the 243 hatted photos labelled by eye,
#: 4 of the 36 hatted ones of the shared labels), while the held-out
#: ``ffhq128-labelled/69129`` (a white visor, no glasses) read 0.965 and was
#: drawn in sunglasses (session 52; the 48-photo sheet's invented sunglasses).
SUNGLASSES_UNDER_HAT = 0.99
#: what ``glasses_by`` says where :func:`sunglasses_under_hat` took the sunglasses off
UNDER_HAT_BY = "not sunglasses: under a hat, whose shadow reads as tinted lenses"


def sure_under_hat(p_sunglasses) -> bool:
    """Whether a P(sunglasses) (a number, or None) is sure enough for
    sunglasses under a hat: finite and at least :data:`SUNGLASSES_UNDER_HAT`."""
    return is_real(p_sunglasses) and float(p_sunglasses) >= SUNGLASSES_UNDER_HAT


def sunglasses_under_hat(attributes: dict, hat) -> dict:
    """Sunglasses decided under a drawn hat of any kind (``hat``: the hat
    decision, the app's where it set one) with P(sunglasses) under
    :data:`SUNGLASSES_UNDER_HAT` become clear glasses where P(clear) is the
    larger of the other two, else none; ``glasses_by`` says why. In place,
    returned; nothing without a hat, without sunglasses, or where the app set
    the glasses."""
    a = attributes
    if not hat or a.get("glasses_type") != 2 or "glasses" in a.get("set_by_app", ()):
        return a
    p = a.get("glasses_probs") or {}
    if not is_real(p.get("sunglasses")) or sure_under_hat(p["sunglasses"]):
        return a
    decide_glasses(a, 1 if float(p.get("reading", 0.0)) > float(p.get("none", 0.0)) else 0)
    a["glasses_by"] = UNDER_HAT_BY
    return a


def add_artist_glasses(attributes: dict, glasses_type: float, probs=None) -> dict:
    """Makes a :func:`decode_attributes` dict report the glasses the hair
    stage draws from the artist's frame, tint and transparency cues where H
    drew none and no fusion decided (``glasses_type``: the artist's
    ``glasses.type``, 1 clear, 2 sunglasses; ``probs``: its network's
    (none, clear, sun) probabilities, or None), as :func:`add_artist_beard`
    reports a beard: the drawn and decided flags and ``glasses_type`` /
    ``glasses`` follow the kind, ``glasses_by`` is ``"artist cues"``, and
    with finite ``probs`` ``glasses_probs`` become the network's (H's stay
    under ``glasses_probs_model``). In place, returned."""
    a = attributes
    kind = 2 if float(glasses_type) >= 1.5 else 1
    p = None if probs is None else np.asarray(probs, np.float64).reshape(-1)
    if p is not None and p.shape == (len(GLASSES),) and np.isfinite(p).all():
        a.setdefault("glasses_probs_model", dict(a["glasses_probs"]))
        a["glasses_probs"] = {k: float(v) for k, v in zip(GLASSES, p)}
        a["glasses_any"], a["sunglasses"] = float(1.0 - p[0]), float(p[2])
    decide_glasses(a, kind)
    a["glasses_by"] = "artist cues"
    return a


def _as_the_model_read(a: Mapping) -> dict:
    """A copy of an :func:`apply_settings` dict with the model's own values
    back in place of what the app set (what :func:`public_attributes` shows
    under ``model``)."""
    m = dict(a)
    m["drawn"], m["decided"] = dict(a["drawn"]), dict(a["decided"])
    draw = (a.get("thresholds") or {}).get("draw", {})
    decide = (a.get("thresholds") or {}).get("decision", {})
    for name in a.get("set_by_app", ()):
        if name == "glasses":
            decide_glasses(m, GLASSES.index(a["glasses_model"]))
        elif name in BINARY_ATTRIBUTES:
            p = a[f"{name}_model"]
            m[name] = p
            m["drawn"][name] = p >= draw.get(name, DEFAULT_THRESHOLD)
            m["decided"][name] = p >= decide.get(name, DEFAULT_THRESHOLD)
            if f"{name}_model_flags" in a and _decided_elsewhere({**a, "set_by_app": ()}, name):
                # a detector's decision (a network's own thresholds, the artist's), or not drawn (a face mask, a
                # child, a face cut by the frame's edge): the flags as the model decided them before the app's
                m["drawn"][name], m["decided"][name] = a[f"{name}_model_flags"]
        elif name == "hair_length":
            m["hair_long"] = a["hair_long_model"]
        elif name == "headwear_kind":  # the kind the model read (none without a kind model or a hat)
            m.pop("headwear_type", None)
            if a.get("headwear_type_model") is not None:
                m["headwear_type"] = a["headwear_type_model"]
        else:  # hair_colour, age, skin_tone
            m[name] = a[f"{name}_model"]
    m["set_by_app"] = []
    return m


#: What an app can set instead of the regressor's decision (``Options.attributes``,
#: ``from_frame(..., attributes=...)``): name → the allowed values (a tuple of
#: names, ``bool``, or the ``(low, high)`` range of a number)
SETTABLE = {"glasses": GLASSES, "beard": bool, "moustache": bool, "headwear": bool, "bald": bool,
            "hair_colour": HAIR_COLOURS, "hair_length": ("long", "short"), "age": (0.0, 100.0),
            "skin_tone": (1.0, 10.0), "headwear_kind": ("cap", "beanie", "brimmed", "scarf", "turban")}


def check_settings(settings, what: str = "attributes") -> dict:
    """``settings`` (a mapping of :data:`SETTABLE` names, or None) checked and
    normalised: names as given, booleans as ``bool``, numbers as ``float``;
    a ``None`` value is left out (the regressor decides). ``ValueError``
    with a plain sentence for anything else, naming the value
    ``what[name]`` (or ``what`` with ``{name}`` filled in, when it has
    that placeholder: the CLI's ``{name}`` after argparse's "argument --set:")."""
    if settings is None:
        return {}
    if not isinstance(settings, Mapping):
        raise ValueError(f"{what} must be None or a mapping such as {{'glasses': 'none'}}, "
                         f"got {type(settings).__name__}.")
    out = {}
    for name, v in settings.items():
        allowed = SETTABLE.get(name) if isinstance(name, str) else None
        if allowed is None:
            raise ValueError(f"{what}: unknown attribute {name!r}; the settable ones are "
                             f"{', '.join(SETTABLE)}.")
        if v is None:
            continue
        subject = what.format(name=name) if "{name}" in what else f"{what}[{name!r}]"
        if allowed is bool:
            if not isinstance(v, (bool, np.bool_)):
                raise ValueError(f"{subject} must be True or False, got {v!r:.60}.")
            out[name] = bool(v)
        elif isinstance(allowed[0], str):
            if not isinstance(v, str) or v not in allowed:
                raise ValueError(f"{subject} must be one of {', '.join(map(repr, allowed))}, got {v!r:.60}.")
            out[name] = v
        else:
            lo, hi = allowed
            if not is_real(v) or not lo <= float(v) <= hi:
                raise ValueError(f"{subject} must be a number from {lo:g} to {hi:g}, got {v!r:.60}.")
            out[name] = float(v) + 0.0  # (-0 as 0: "-0 years" read oddly)
    if "headwear_kind" in out and out.get("headwear") is False:
        raise ValueError(f"{what.format(name='headwear_kind') if '{name}' in what else what}: "
                         f"headwear_kind {out['headwear_kind']!r} asks for headwear that headwear=False "
                         "leaves out; set one of them.")
    if out.get("bald") is True and out.get("hair_length") == "long":
        # (the bald family has no long style: the head was drawn bald and short while reported long)
        raise ValueError(f"{what.format(name='hair_length') if '{name}' in what else what}: "
                         "hair_length 'long' asks for long hair that bald=True leaves out; set one of them.")
    return out


def merged_settings(given: Mapping, call: Mapping | None = None) -> dict:
    """What is drawn from the settings ``given`` (an option's, checked by
    :func:`check_settings`) with a call's ``call`` (checked, ``None`` values
    taking a setting back) on top: a ``headwear_kind`` is headwear
    (``headwear`` True), a call's ``headwear`` False takes an option's
    kind back and a call's kind an option's ``headwear`` False; likewise a
    call's ``bald`` True an option's long ``hair_length`` and a call's long
    length an option's ``bald`` True (no bald style is long)."""
    call = {} if call is None else dict(call)
    cleared = {k for k, v in call.items() if v is None}
    out = {k: v for k, v in given.items() if k not in cleared}
    if call.get("headwear") is False:
        out.pop("headwear_kind", None)
    if call.get("headwear_kind") is not None and out.get("headwear") is False:
        out.pop("headwear")
    if call.get("bald") is True and out.get("hair_length") == "long":  # (no long bald style: the call wins)
        out.pop("hair_length")
    if call.get("hair_length") == "long" and out.get("bald") is True:
        out.pop("bald")
    out |= {k: v for k, v in call.items() if v is not None}
    if "headwear_kind" in out:  # a kind of headwear is headwear
        out["headwear"] = True
    return out


def apply_settings(attributes: dict, settings: Mapping) -> dict:
    """Makes a :func:`decode_attributes` dict follow what the app set
    (:func:`merged_settings`' dict; in place, returned): the drawn and
    decided flags, ``glasses_type`` / ``glasses``, ``hair_colour``,
    ``hair_long`` (1 long, 0 short), ``age`` and ``skin_tone`` take the
    set values, and a set flag's probability becomes 1 or 0 so that
    :func:`merge` and the retrieval's gates draw it. The regressor's own
    values (for a beard the artist's detector drew, :func:`add_artist_beard`,
    that detector's) stay under ``<name>_model``; ``set_by_app`` lists the
    names."""
    a = attributes
    for name, v in settings.items():
        if name == "glasses":
            a.setdefault("glasses_model", a.get("glasses"))
            decide_glasses(a, GLASSES.index(v))
            a["glasses_source"] = "app"
        elif name in BINARY_ATTRIBUTES:
            a.setdefault(f"{name}_model", a.get(name))
            # the model's own drawn and decided flags (a detector's that are not H's thresholds': _as_the_model_read)
            a.setdefault(f"{name}_model_flags", (bool(a["drawn"][name]), bool(a["decided"][name])))
            a[name] = 1.0 if v else 0.0
            a["drawn"][name] = a["decided"][name] = bool(v)
        elif name == "hair_colour":
            a.setdefault("hair_colour_model", a.get("hair_colour"))
            a["hair_colour"] = v
            a["hair_colour_source"] = "app"
        elif name == "hair_length":
            a.setdefault("hair_long_model", a.get("hair_long"))
            a["hair_long"] = 1.0 if v == "long" else 0.0
        elif name == "headwear_kind":  # drawn where the photo shows a hat (headwear.place), of this kind
            from .headwear import KINDS

            a.setdefault("headwear_type_model", a.get("headwear_type"))
            a["headwear_type"] = KINDS.index(v)
        else:  # age, skin_tone
            a.setdefault(f"{name}_model", a.get(name))
            a[name] = float(v)
    drawn = a.get("drawn")
    if settings.get("hair_length") == "long" and "bald" not in settings and isinstance(drawn, dict) \
            and drawn.get("bald"):
        # no bald style is long: the model's bald head gives way to the length set (the retrieval's bald
        # gate does, HairRetriever.candidates), as a set bald head takes a set long length back
        drawn["bald"] = False
        if isinstance(a.get("decided"), dict):
            a["decided"]["bald"] = False
        a["bald_by"] = LONG_NOT_BALD_BY
    a["set_by_app"] = sorted(set(a.get("set_by_app", ())) | set(settings))
    return a


#: ``bald_by`` where H read a bald head and the app set long hair (:func:`apply_settings`): not drawn bald
LONG_NOT_BALD_BY = "hair_length set long by the app"


def attribute_vector(attributes) -> np.ndarray:
    """Retrieval attribute vector (:data:`RETRIEVAL_ATTRIBUTES`) from a dict
    (missing keys: NaN, ignored by the distance) or an array of that length."""
    if isinstance(attributes, Mapping):
        return np.array([float(attributes[k]) if attributes.get(k) is not None else np.nan
                         for k in RETRIEVAL_ATTRIBUTES], np.float64)
    a = np.asarray(attributes, np.float64).reshape(-1)
    if a.shape != (len(RETRIEVAL_ATTRIBUTES),):
        raise ValueError(f"an attribute vector has {len(RETRIEVAL_ATTRIBUTES)} values "
                         f"{RETRIEVAL_ATTRIBUTES}, got shape {a.shape}")
    return a


# --------------------------------------------------------------- descriptor


def _eye_line(lm: np.ndarray) -> float:
    """The eye line's height: the mean y of the four eye corners (canonical landmarks ``lm``)."""
    return float(lm[list(_EYE_CORNERS), 1].mean())


def _head_centre(lm: np.ndarray) -> tuple[np.ndarray, float]:
    cx = 0.5 * (lm[234, 0] + lm[454, 0])
    hw = max(0.5 * abs(lm[454, 0] - lm[234, 0]), 0.2)
    return np.array([cx, _eye_line(lm) - 0.1]), float(hw)


def shape_descriptor(hair_mask, landmarks, valid=None) -> tuple[np.ndarray, np.ndarray]:
    """The hair-shape descriptor of an aligned photo and which of its values
    were observed.

    Args:
        hair_mask: S×S person-minus-face mask of the aligned crop
            (``AlignedFace.hair_mask(S)``; float in [0, 1] or uint8 × 255).
        landmarks: (478, 2) canonical landmarks.
        valid: optional S×S bool, crop pixels inside the photo.

    Returns ``(desc, observed)``, both of length ``N_RAYS + 1``:
    ``desc[k]`` is the outer radius of the hair silhouette along ray ``k``
    (angles :data:`RAY_ANGLES_DEG` from the head centre: mid-point of the
    cheeks, 0.1 above the eye line), in head half-widths, from the face oval
    outward along samples connected to the head (the face-oval radius where
    the ray meets no hair); ``desc[-1]`` is the hairline height: how far
    above the eye line the hair starts on the mid-line, in head half-widths.
    ``observed`` is False where the silhouette runs out of the crop (or the
    valid region), so the value is only a lower bound.
    """
    m = mask01(hair_mask)
    lm = np.asarray(landmarks, np.float64)[:, :2]
    if lm.shape[0] < 478 or not np.isfinite(lm[:478]).all():
        raise ValueError("landmarks must be (478, 2) finite canonical coordinates")
    size = m.shape[0]
    ok_px = np.ones_like(m) if valid is None else np.asarray(valid, bool)
    c, hw = _head_centre(lm)
    # face-oval radius along each ray (polar interpolation of the oval)
    oval = lm[list(_FACE_OVAL)] - c
    ang = np.arctan2(oval[:, 1], oval[:, 0])
    rad = np.hypot(oval[:, 0], oval[:, 1])
    o = np.argsort(ang)
    a3 = np.concatenate([ang[o] - 2 * np.pi, ang[o], ang[o] + 2 * np.pi])
    r3 = np.tile(rad[o], 3)
    ray_a = np.deg2rad(RAY_ANGLES_DEG)
    ray_a = np.arctan2(np.sin(ray_a), np.cos(ray_a))
    r_oval = np.interp(ray_a, a3, r3) / hw  # (R,)
    # samples along the rays (nearest pixel)
    pts = c[None, None, :] + hw * _RAY_RADII[None, :, None] * _RAY_DIRS[:, None, :]  # (R, T, 2)
    px = np.floor((pts + 1.0) * 0.5 * size).astype(np.int64)
    inside = ((px >= 0) & (px < size)).all(-1)
    pxc = np.clip(px, 0, size - 1)
    hair = m[pxc[..., 1], pxc[..., 0]] & inside
    seen = ok_px[pxc[..., 1], pxc[..., 0]] & inside
    hair &= seen
    desc = np.empty(N_RAYS + 1, np.float64)
    obs = np.ones(N_RAYS + 1, bool)
    T = len(_RAY_RADII)
    rays = np.arange(N_RAYS)
    start_ok = _RAY_RADII[None, :] <= r_oval[:, None] + 0.25  # hair must start near the face
    # per ray: the first hair sample, and the last one connected to it (the
    # first hair sample whose next one lies more than _GAP samples on; the
    # ray's last hair sample has none, so it ends the run if no gap comes first)
    first = hair.argmax(1)
    has = hair[rays, first] & start_ok[rays, first]
    pos = np.where(hair, np.arange(T)[None, :], 2 * T)
    nxt = np.minimum.accumulate(np.concatenate([pos[:, 1:], np.full((N_RAYS, 1), 2 * T)], 1)[:, ::-1],
                                axis=1)[:, ::-1]  # nxt[k, t]: the next hair sample after t
    ends = hair & (nxt - np.arange(T)[None, :] > _GAP)
    last = ends.argmax(1)
    # no hair near the face: the oval's radius, observed where the ray leaves it inside the photo
    first_out = np.minimum(np.searchsorted(_RAY_RADII, r_oval) + 1, T - 1)
    desc[:N_RAYS] = np.where(has, np.maximum(_RAY_RADII[last], r_oval), r_oval)
    obs[:N_RAYS] = np.where(has, (last + 1 < T) & seen[rays, np.minimum(last + 1, T - 1)], seen[rays, first_out])
    # hairline: lowest hair row on the mid-line above the eyes, going up from the oval top
    eye_y = c[1] + 0.1
    xs = np.clip(np.floor((c[0] + np.array([-0.06, 0.0, 0.06]) + 1.0) * 0.5 * size).astype(int), 0, size - 1)
    ys = (np.arange(size) + 0.5) * 2.0 / size - 1.0
    rows = np.flatnonzero(ys < eye_y - 0.15)
    col = m[rows][:, xs].mean(1) >= 0.5
    colv = ok_px[rows][:, xs].all(1)
    if col.any():
        r = rows[np.flatnonzero(col)[-1]]  # the lowest hair row above the eyes
        desc[-1] = (eye_y - ys[r]) / hw
        obs[-1] = bool(colv[np.flatnonzero(col)[-1]])
    else:
        desc[-1] = (eye_y - float(lm[10, 1])) / hw
        obs[-1] = bool(colv.all())
    return desc.astype(np.float32), obs


def hair_region(crop_size: int, hair_mask, landmarks, valid=None) -> np.ndarray:
    """Where :func:`sample_hair_rgb` looks for hair: the hair-mask pixels
    above the eyes and beside/above the face, as a ``crop_size``² bool mask."""
    size = int(crop_size)
    region = _head_top(size, landmarks)
    region &= at_size(mask01(hair_mask), size)
    if valid is not None:
        region &= np.asarray(valid, bool)
    return region


def _head_top(size: int, landmarks) -> np.ndarray:
    """The part of a ``size``² crop :func:`hair_region` looks in before the
    hair mask: an ellipse about the head's centre, above the brows."""
    lm = np.asarray(landmarks, np.float64)
    c, hw = _head_centre(lm)
    g = (np.arange(size) + 0.5) * 2.0 / size - 1.0
    # the ellipse only evaluated in the rows above that line (g rises: the first `top` rows)
    top = int(np.count_nonzero(g < c[1] + 0.05))
    region = np.zeros((size, size), bool)
    region[:top] = np.hypot((g[None, :] - c[0]) / (hw * 1.7), (g[:top, None] - c[1]) / (hw * 1.9)) < 1.0
    return region


#: The crown is out of the frame where less than this share of the head's top (:func:`_head_top`) lies
#: inside the photo (:func:`hair_unseen`): of 2,338 photos (hair colours labelled by eye, and held-out
#: UTKFace babies), UTKFace's chips cut at the forehead read 0.15-0.45, loose portraits 0.9-1.0.
UNSEEN_CROWN_SHARE = 0.5
#: CIELAB distance from the cheeks' colour within which a hair region read on a crown out of the frame
#: holds skin, not hair (:func:`hair_unseen`)
UNSEEN_SKIN_DE = 12.0
#: how the hair colour reads where :func:`hair_unseen` holds (after its readers in ``hair_colour_source``)
UNSEEN_BY = " x hair not in the frame"


def hair_unseen(px, crop_pixels: int, skin_lab, landmarks, valid, size: int) -> bool:
    """Whether the photo shows no hair to read a colour from: the crown out
    of the frame (under :data:`UNSEEN_CROWN_SHARE` of the head's top inside
    it, ``valid`` being the ``size``² crop's in-photo mask) and the hair
    region's pixels ``px`` (float RGB, N×3, as :func:`hair_region_reading`
    gives them with the crop's pixel count ``crop_pixels`` and the cheeks'
    CIELAB ``skin_lab``) either too few to read or too few for a class
    (:func:`too_little_hair`) and within :data:`UNSEEN_SKIN_DE` of the
    cheeks: the temples' skin. Blond and red then read as black or brown
    (as :func:`light_hair_as_dark`): every reader took a baby's forehead for
    blond or red hair. Of the 176 held-out UTKFace photos under 5 not
    labelled for hair colour (their chips end at the forehead: the hair out
    of the frame in most), 100 were drawn blond or red, 43 of the 85 East
    Asian ones; of the 310 photos labelled by eye whose crown is out of the
    frame, 6 drawn light meet it, 2 of them blond (session 66,
    ``/tmp/s66/crown.py``)."""
    if valid is None:
        return False
    top = _head_top(size, landmarks)
    inside = np.count_nonzero(top & at_size(np.asarray(valid), size).astype(bool))
    if inside >= UNSEEN_CROWN_SHARE * max(np.count_nonzero(top), 1):
        return False
    px = np.asarray(px, np.float64).reshape(-1, 3)
    raw = _robust_hair_median(px) if len(px) else None
    if raw is None:
        return True
    if skin_lab is None or not too_little_hair(len(px), crop_pixels):
        return False
    return float(np.linalg.norm(to_lab(np.asarray(raw, np.float64)) - np.asarray(skin_lab, np.float64))) \
        < UNSEEN_SKIN_DE


def sample_hair_rgb(crop, hair_mask, landmarks, valid=None) -> np.ndarray | None:
    """A robust hair colour from the photo: the median of the hair-mask pixels
    above the eyes and beside/above the face (luminance 15th-85th percentile),
    float RGB in [0, 1]; None when fewer than 20 such pixels exist."""
    rgb = float_rgb(crop)
    px = rgb[hair_region(rgb.shape[0], hair_mask, landmarks, valid)]
    return _robust_hair_median(px)


def _robust_hair_median(px: np.ndarray) -> np.ndarray | None:
    if len(px) < 20:
        return None
    y = px @ np.array([0.299, 0.587, 0.114], np.float32)
    lo, hi = stats.percentile(y, [15, 85])
    keep = (y >= lo) & (y <= hi)
    return stats.median(px[keep] if np.count_nonzero(keep) >= 10 else px, 0).astype(np.float32)


# ------------------------------------------------------- hair colour class

#: The drawing palette's hair colours (``prior.HAIR_COLORS``) by class: a
#: drawn hair colour reads as the class of its nearest palette colour (CIELAB).
HAIR_CLASS_PALETTE = {"black": ("black",), "brown": ("dark_brown", "brown", "light_brown"),
                      "blond": ("blond",), "red": ("red",), "gray": ("gray", "white")}
#: a colour moved into its class stays this much nearer (relative distance)
#: to its class's palette than to any other class's
HAIR_CLASS_MARGIN = 0.1
#: ... and a brown, blond or red one at least :data:`HAIR_MIN_LIGHT_L` L* light
#: has at least this CIELAB chroma, the palette's dark brown's (:func:`drawn_hair_colour`):
#: a neutral taupe (L* 30-41, chroma 2-8; the hair region's median where a green or
#: blue background mixes in) is nearer the palette's browns than its grey (L* 63) and
#: read as brown, but looks grey: a toddler's and boys' brown hair, reported brown,
#: looked grey-haired (a read-only review, session 70). Of the 2,162 photos whose hair
#: colour is labelled by eye, 82 are drawn warmer: 66 labelled brown, 2 blond, 1 red,
#: 11 black, 2 grey (at 8: 24, still taupe to the eye; 16: 147). Darker colours read
#: as near-black whatever their chroma.
HAIR_MIN_CHROMA = 12.0
HAIR_MIN_LIGHT_L = 30.0
HAIR_CHROMATIC = ("brown", "blond", "red")
#: the classifier reads at most about this many of the region's pixels (an even subsample)
HAIR_FEATURE_PIXELS = 1024
#: without H's reading (the auto-artist), the drawn colour is moved into a
#: class only when the hair region covers at least this share of the crop:
#: the classifier was fitted and checked on loose portraits (the labelled
#: photos' regions: 9% of the crop or more, 1st percentile); a tight crop's
#: few hair pixels are mostly background. With H's reading the class is
#: always fused (:func:`hair_colour_of_class`), and the hybrid's hair-colour
#: network joins it above this share, the tight crops' network below it
#: (:mod:`avatarizer.haircolour`)
HAIR_CLASS_MIN_AREA = 0.06


#: the power the hair region classifier's reading is raised to (:func:`tempered`) where the region is
#: too small to read a class from (:func:`too_little_hair`) and H's reading is fused with it: a tight crop's
#: few "hair" pixels are partly forehead and background (a baby's sparse hair over the scalp read blond).
#: On the 312 UTKFace chips labelled by eye (all of them tight crops; never trained on) the drawn class
#: through ``Avatarizer()``: accuracy 0.696 -> 0.705, balanced 0.697 -> 0.701, blond or red drawn on black
#: or brown hair 21 -> 16 (children under 12: 13 -> 10), black or brown drawn on blond or red 5 -> 6
#: (session 61, scratch ``/tmp/s61/hcev2.py``; in a replay of the fusion 0.25 read alike, 0 balanced
#: 0.685). Loose portraits, where the region is large enough, keep the full reading (on the 87 held-out
#: labelled ones, weighed at 0.5 it read balanced 0.793 -> 0.787, at 0 0.755). The same weight as the
#: tight crops' network's (:data:`avatarizer.haircolour.TIGHT_WEIGHT`).
TIGHT_REGION_WEIGHT = 0.5


def tempered(probs, power: float) -> dict:
    """``probs`` (class -> probability) raised to ``power`` and renormalised:
    an expert's reading weighed less in a product of experts (1: as read,
    0: uniform)."""
    q = {k: max(float(v), 1e-9) ** power for k, v in probs.items()}
    total = sum(q.values())
    return {k: v / total for k, v in q.items()}


def too_little_hair(region_pixels: int, crop_pixels: int) -> bool:
    """Whether a hair region of ``region_pixels`` covers less than
    :data:`HAIR_CLASS_MIN_AREA` of a crop of ``crop_pixels``: too little to
    read a class from (a tight crop, or none read), the rule the hair
    colour's drawing, the hybrid's and the artist's choice of hair-colour
    network share."""
    return region_pixels < HAIR_CLASS_MIN_AREA * crop_pixels


def hair_colour_features(px: np.ndarray, skin_lab=None) -> np.ndarray:
    """Colour statistics of hair pixels (float RGB, N×3) for the hair-colour
    classifier: CIELAB L* percentiles 10/25/50/75/90, a* and b* quartiles,
    chroma median and 90th percentile, the hue angle of the medians; then
    the same hair against the skin under the same light (``skin_lab``, the
    cheeks' CIELAB: :func:`cheek_skin_lab`): the hair's median, 10th and
    90th percentile L* less the skin's, its median a* and b* less the
    skin's, and the skin's L*, a*, b* (NaN without ``skin_lab``). A colour
    alone does not tell dark blond from light brown in a dim photo, nor
    platinum from grey; read with the skin beside it, the classifier does
    better held out (``docs/hair.md``, "Read against the skin")."""
    lab = to_lab(np.asarray(px, np.float64).reshape(-1, 3))
    L, a, b = lab[:, 0], lab[:, 1], lab[:, 2]
    chroma = np.hypot(a, b)
    med_b, med_a = stats.median(np.stack([b, a]), axis=1)  # one partition, each row's own median
    hue = np.degrees(np.arctan2(med_b, med_a))
    # one partition for all four rows (each row's percentiles are those of its own call)
    q = stats.percentile(np.stack([L, a, b, chroma]), [10, 25, 50, 75, 90], axis=1)  # (5 q, 4 rows)
    colour = np.concatenate([q[:, 0], q[1:4, 1], q[1:4, 2], q[[2, 4], 3], [hue]])
    sk = np.full(3, np.nan) if skin_lab is None else np.asarray(skin_lab, np.float64).reshape(3)
    against = np.array([q[2, 0] - sk[0], q[0, 0] - sk[0], q[4, 0] - sk[0], q[2, 1] - sk[1], q[2, 2] - sk[2]])
    return np.concatenate([colour, against, sk])


#: the rows of the face oval whose median colour is the skin the hair is
#: read against (:func:`cheek_skin_lab`): this far below the eye line, in
#: canonical units (the cheeks and the nose, clear of brows, fringe and beard)
CHEEK_ROWS = (0.05, 0.35)
#: the cheeks' median reads at most about this many pixels (an even subsample)
CHEEK_PIXELS = 1024


def cheek_skin_lab(crop, landmarks, valid=None, masked: bool = False) -> np.ndarray | None:
    """The skin the hair-colour classifier reads the hair against: the
    median CIELAB colour of the aligned ``crop``'s pixels inside the face
    oval between :data:`CHEEK_ROWS` below the eye line (``valid``: the crop
    pixels inside the photo, when given); the whole oval's when fewer than
    20 of those show; with ``masked`` (the artist found a face mask:
    :func:`avatarizer.artist.colour.skin_colour`'s ``cheeks_covered``) the
    oval's above the eye line (the forehead) where that shows skin (with
    ``STAND_IN_CHROMA``) at least ``COVER_DE`` from the cheeks' colour: a
    mask's colour read as the skin drew a man's short dark hair long and
    red. None when the oval shows fewer than 20 pixels."""
    from .artist.colour import COVER_DE, STAND_IN_CHROMA, lab_shows_skin

    img = np.asarray(crop)
    size = img.shape[0]
    lm = np.asarray(landmarks, np.float64)[:, :2]
    oval = poly_mask(size, lm[list(_FACE_OVAL)])
    if valid is not None:
        oval &= np.asarray(valid, bool)
    eye_y = _eye_line(lm)
    g = (np.arange(size) + 0.5) * 2.0 / size - 1.0
    rows = (g >= eye_y + CHEEK_ROWS[0]) & (g < eye_y + CHEEK_ROWS[1])
    cheeks = oval & rows[:, None]
    px = img[cheeks] if np.count_nonzero(cheeks) >= 20 else img[oval]
    if len(px) < 20:
        return None
    lab = _median_lab(px)
    if masked:
        forehead = oval & (g < eye_y - CHEEK_ROWS[0])[:, None]
        if np.count_nonzero(forehead) >= 20:
            above = _median_lab(img[forehead])
            if lab_shows_skin(above, STAND_IN_CHROMA) and float(norm(above - lab)) > COVER_DE:
                return above
    return lab


def _median_lab(px: np.ndarray) -> np.ndarray:
    """The median CIELAB colour of uint8 or float RGB pixels (an even subsample of at most
    :data:`CHEEK_PIXELS`; only the pixels read are made float, not the whole crop)."""
    px = float_rgb(px[::max(1, len(px) // CHEEK_PIXELS)])
    return stats.median(to_lab(px.astype(np.float64)), 0)


def hair_colour_probs(px: np.ndarray, skin_lab=None) -> dict | None:
    """P(black, brown, blond, red, gray) of hair pixels (float RGB, N×3)
    against the skin ``skin_lab`` (:func:`cheek_skin_lab`) from the fitted
    hair-colour classifier (``data/artist_detectors.json``,
    ``avatarizer-export detectors``); None with fewer than 20 pixels, no
    skin, or no fitted classifier."""
    from .artist.accessories import detectors, probabilities

    if len(px) < 20 or not region_classifier_reads(skin_lab):
        return None
    model = detectors()["hair_colour"]
    x = hair_colour_features(px, skin_lab)
    if not np.isfinite(x).all():
        return None
    return dict(zip(HAIR_COLOURS, map(float, probabilities(model, x))))


@lru_cache(maxsize=1)
def _palette_lab():
    names = [n for c in HAIR_COLOURS for n in HAIR_CLASS_PALETTE[c]]
    classes = [c for c in HAIR_COLOURS for _ in HAIR_CLASS_PALETTE[c]]
    return to_lab(np.array([P.HAIR_COLORS[n] for n in names], np.float64)), np.array(classes)


def hair_colour_class_of(rgb) -> str:
    """The class a drawn hair colour reads as: that of its nearest palette colour."""
    pal, classes = _palette_lab()
    return str(classes[int(np.argmin(norm(pal - to_lab(np.asarray(rgb, np.float64)))))])


#: CIELAB hue angles (degrees) of natural hair: red through yellow (the
#: palette's browns, blond and red lie at 51-83, black, grey and white are
#: near neutral), with a margin. Outside them a colour drawn from the photo
#: keeps at most :data:`HAIR_COOL_CHROMA` of chroma (:func:`natural_hair_colour`).
HAIR_HUE_RANGE = (-10.0, 110.0)
#: the chroma a cool (blue, purple, green) hair colour is capped at: about a
#: neutral grey's; the palette's black has 1.1
HAIR_COOL_CHROMA = 6.0


def natural_hair_colour(rgb) -> np.ndarray:
    """``rgb`` (float RGB in [0, 1]) with its CIELAB chroma capped at
    :data:`HAIR_COOL_CHROMA` where its hue lies outside
    :data:`HAIR_HUE_RANGE` (lightness and hue direction kept), else as it
    is: a photo's colour cast (blue light, a blue or green background seen
    through the hair region) drew black hair vivid blue or purple (27 of
    1,168 held-out avatars at a chroma over 6, up to 39). Dyed hair of an
    unnatural colour is drawn as a near-neutral of its lightness."""
    x = np.asarray(rgb, np.float64).reshape(3)
    lab = to_lab(x)
    chroma = float(np.hypot(lab[1], lab[2]))
    hue = float(np.degrees(np.arctan2(lab[2], lab[1])))
    if chroma <= HAIR_COOL_CHROMA or HAIR_HUE_RANGE[0] <= hue <= HAIR_HUE_RANGE[1]:
        return x.astype(np.float32)
    lab[1:] *= HAIR_COOL_CHROMA / chroma
    return np.clip(from_lab(lab), 0.0, 1.0).astype(np.float32)


#: the hair colour drawn where none is read from the photo (a bald head, a hat, too few hair pixels),
#: before it is moved into the class reported
FALLBACK_HAIR_RGB = (0.25, 0.17, 0.11)


def class_hair_colour(probs: Mapping[str, float] | None, apart: float = 0.0, sampled=None) -> np.ndarray:
    """The hair colour of the likeliest class of ``probs``: the ``sampled``
    colour (a hair colour read from the photo, beside a hat) moved into that
    class (:func:`drawn_hair_colour` at any probability); where the photo
    gives no hair to sample (``sampled`` None: a hat, no hair region, the hair
    out of the frame) :data:`FALLBACK_HAIR_RGB` moved into it, and for grey
    hair the palette's grey (moved into grey, the brown came out a dark
    taupe, L* 44.6, on the white hair of UTKFace's tight chips: a read-only
    review, session 67). ``apart``: as :func:`drawn_hair_colour`'s (a class
    the app set; the palette's grey lies over 20 from every other class's
    colours)."""
    if sampled is not None:
        return drawn_hair_colour(sampled, probs, min_prob=0.0, apart=apart)
    if probs and max(probs, key=probs.get) == "gray":
        return np.array(P.HAIR_COLORS["gray"], np.float32)
    return drawn_hair_colour(FALLBACK_HAIR_RGB, probs, min_prob=0.0, apart=apart)


def drawn_hair_colour(rgb, probs: Mapping[str, float] | None, min_prob: float = 0.5,
                      apart: float = 0.0) -> np.ndarray:
    """The hair colour to draw: the photo's ``rgb`` as it is when it already
    reads as the likeliest class (or no class reaches ``min_prob``), else
    moved the least way toward that class's nearest palette colour that makes
    it read so, with a :data:`HAIR_CLASS_MARGIN` (brown, blond and red hair
    not a grey-looking neutral: :data:`HAIR_MIN_CHROMA`). Blond hair photographs
    darker than it looks (its shadows and roots are in the median), so a
    human artist draws it lighter; this does the same, by evidence.

    ``apart`` (CIELAB ΔE; a class the app set: :data:`HAIR_SET_APART`): the
    colour must also lie that far from every other class's palette colours,
    and is moved toward the class's own colour (:data:`HAIR_SET_TARGET`),
    as far as it takes (to that colour where it is nearer)."""
    rgb = np.asarray(rgb, np.float64)
    if not probs:
        return rgb.astype(np.float32)
    cls = max(probs, key=probs.get)
    if probs[cls] < min_prob:
        return rgb.astype(np.float32)
    pal, classes = _palette_lab()
    x = to_lab(rgb)
    mine, other = pal[classes == cls], pal[classes != cls]

    # (a colour read light enough to show it: its chroma at least the floor wherever it is moved, also below
    # that lightness, so that the path to a darker palette brown cannot stop at a neutral grey; a review)
    floor = HAIR_MIN_CHROMA if cls in HAIR_CHROMATIC and x[0] >= HAIR_MIN_LIGHT_L else 0.0

    def reads(y):
        if np.hypot(y[1], y[2]) < floor:
            return False  # (a neutral taupe: grey to the eye)
        near = norm(other - y).min()
        return norm(mine - y).min() * (1.0 + HAIR_CLASS_MARGIN) <= near and near >= apart

    if reads(x):
        return rgb.astype(np.float32)
    if apart > 0:
        targets = [to_lab(np.array(P.HAIR_COLORS[HAIR_SET_TARGET.get(cls, cls)], np.float64))]
    elif floor > 0:  # (the class's palette colour the floor is reached toward soonest: a bluish taupe moved
        targets = list(mine)  # toward the nearest, the darkest brown, reached its chroma only at L* 15)
    else:
        targets = [mine[int(np.argmin(norm(mine - x)))]]
    best = None
    for target in targets:
        lo, hi = 0.0, 1.0
        for _ in range(10):  # the least step along the way to the palette colour (to 1/1024 of it)
            mid = 0.5 * (lo + hi)
            lo, hi = (lo, mid) if reads(x + mid * (target - x)) else (mid, hi)
        y = x + hi * (target - x)
        if best is None or norm(y - x) < norm(best - x):
            best = y
    return np.clip(from_lab(best), 0.0, 1.0).astype(np.float32)


#: A hair colour class the app sets is drawn at least this far (CIELAB ΔE) from every other class's palette
#: colours (:func:`drawn_hair_colour`'s ``apart``): moved the least way into the class, black hair set brown
#: came out at L* 10-13, a* 4-6, b* 2-6 (the palette's dark brown lies 15 from its black), black to the eye
#: (16 of 41 black-haired photos changed by less than ΔE 6: a read-only review, session 65); at 20 it is
#: drawn (0.27, 0.18, 0.12), a dark brown. Where the class's own colour is nearer (black is 15 from dark
#: brown) that colour is drawn.
HAIR_SET_APART = 20.0
#: the palette colour a class the app sets is moved toward (a class of one colour: that one)
HAIR_SET_TARGET = {"brown": "brown", "gray": "gray"}


def hair_colour(crop, hair_mask, landmarks, valid=None, model=None) -> tuple[np.ndarray | None, dict | None]:
    """(the hair colour to draw, its class probabilities) from the photo's
    hair region: :func:`sample_hair_rgb`'s colour through
    :func:`drawn_hair_colour` (as sampled when the region covers less than
    :data:`HAIR_CLASS_MIN_AREA` of the crop); (None, None) when the region
    holds too few pixels. ``model``: H's reading to fuse with the region's
    classifier (:func:`hair_colour_of_class`)."""
    reading = hair_region_reading(crop, hair_mask, landmarks, valid)
    if reading is None:
        return None, None
    raw, px, crop_pixels, skin = reading
    return hair_colour_of_class(raw, px, crop_pixels, skin_lab=skin, model=model)


def _head_frame(crop, hair_mask, landmarks, valid):
    """What :func:`headwear_colours` and :func:`scarf_colour` read: the
    crop's float RGB, its person mask (within ``valid``) at the crop's
    size, the landmarks, the head's centre and half-width, the eye line and
    the pixel centres' x (a row) and y (a column) in the canonical frame."""
    rgb = float_rgb(crop)
    size = rgb.shape[0]
    m = at_size(mask01(hair_mask), size)
    if valid is not None:
        m = m & np.asarray(valid, bool)
    lm = np.asarray(landmarks, np.float64)
    c, hw = _head_centre(lm)
    g = (np.arange(size) + 0.5) * 2.0 / size - 1.0
    return rgb, m, lm, c, hw, _eye_line(lm), g[None, :], g[:, None]


def headwear_colours(crop, hair_mask, landmarks, valid=None, skin_rgb=None
                     ) -> tuple[np.ndarray | None, np.ndarray | None]:
    """Under a hat, what the hair region's colour (:func:`hair_region_reading`)
    mixes up: (the hat's colour, the hair's), each a median RGB in [0, 1] or
    None when too few pixels show it. The hat is the hair mask above the
    forehead's top (landmark 10) over the head's width; the hair is the mask
    beside the face between the eyes and the cheeks, where hair shows under
    a hat (as the artist reads it: ``artist.hair.side_rgb``); the hat from
    its crown (0.1 higher) where that shows. Pixels within
    :data:`SKIN_DE` of ``skin_rgb`` (ears, a forehead under a high brim) are
    neither, when given, and a hair reading within twice that of the skin is
    None (the caller then draws the attribute model's hair colour class). A
    white hard hat was drawn as a navy beanie over grey hair; a cap's short
    hair read beside the face was the ears' skin."""
    rgb, m, lm, c, hw, eye_y, gx, gy = _head_frame(crop, hair_mask, landmarks, valid)
    hat = m & (gy < lm[10, 1] - 0.02) & (np.abs(gx - c[0]) < hw * 1.3)
    crown = hat & (gy < lm[10, 1] - 0.1)  # the hat's crown, clear of a brim's shadow and the hair under it
    if np.count_nonzero(crown) >= 24:
        hat = crown
    side = m & (np.abs(gx - c[0]) > hw * 0.85) & (gy > eye_y - 0.05) & (gy < eye_y + 0.35)
    hat_px, side_px = rgb[hat], rgb[side]
    skin = None if skin_rgb is None else to_lab(np.asarray(skin_rgb, np.float64))
    hat_px, side_px = _off_skin(hat_px, skin), _off_skin(side_px, skin)
    from_band = False
    if len(hat_px) < HAT_MIN_PIXELS and skin is not None:
        # a photo cut at the forehead (a close-up, UTKFace's chips): the hat pulled down to the brows shows
        # only below the forehead's top; the mask above the brows' tops, skin left out (a hat drawn in the
        # default navy on 16 of the 29 hats drawn on a quarter of UTKFace's chips: red, white and blue hats,
        # a black beanie; on 471 loose portraits labelled with hats, 1 of 348)
        brows = float(np.min(lm[BROW_TOPS, 1]))
        band = m & (gy < brows - HAT_BAND_ABOVE_BROWS) & (np.abs(gx - c[0]) < hw * 1.3)
        band_px = _off_skin(rgb[band], skin)
        if len(band_px) > len(hat_px):
            hat_px, from_band = band_px, True
    hair = _robust_hair_median(side_px)
    if hair is not None and skin is not None and norm(to_lab(hair.astype(np.float64)) - skin) <= 2 * SKIN_DE:
        hair = None  # still the ears' or the temples' skin, in brighter or dimmer light
    hat = stats.median(hat_px, 0).astype(np.float32) if len(hat_px) >= HAT_MIN_PIXELS else None
    if hat is not None and from_band and norm(to_lab(hat.astype(np.float64)) - skin) <= 2 * SKIN_DE:
        hat = None  # the forehead's skin in shade or light, as a hair reading is refused (a review, session 68)
    return hat, hair


def _off_skin(px: np.ndarray, skin) -> np.ndarray:
    """The pixels ``px`` (float RGB) further than :data:`SKIN_DE` from the
    skin's L*a*b* ``skin`` (all of them without one)."""
    return px[norm(to_lab(px) - skin) > SKIN_DE] if skin is not None and len(px) else px


#: :func:`headwear_colours`: the fewest pixels a hat's colour is read from
HAT_MIN_PIXELS = 12
#: ... and where fewer show above the forehead's top, the band read instead: the mask this far (canonical
#: units) and more above the brows' tops (:data:`BROW_TOPS`; the eye line was too low: the brows and the
#: forehead's skin were read as the hat)
HAT_BAND_ABOVE_BROWS = 0.03
#: MediaPipe's upper-brow landmarks, both sides (``landmarks.SIDES["brow_up"]``)
BROW_TOPS = [i for side in L.SIDES["brow_up"] for i in side]


def scarf_colour(crop, hair_mask, landmarks, valid=None, skin_rgb=None) -> np.ndarray | None:
    """A head scarf's cloth colour (``headwear.type`` 4): the median RGB in
    [0, 1] of the person mask over the crown (as :func:`headwear_colours`
    reads a hat) and beside the face's outer half (1.1-1.6 head half-widths
    out, from the eyes to the mouth: the inner half is the hood's shade or
    hair inside it), pooled, so that the cloth that covers most of both
    wins over a band or a cord on top; pixels within :data:`SKIN_DE` of
    ``skin_rgb`` left out; None under 24 pixels."""
    rgb, m, lm, c, hw, eye_y, gx, gy = _head_frame(crop, hair_mask, landmarks, valid)
    crown = m & (gy < lm[10, 1] - 0.1) & (np.abs(gx - c[0]) < hw * 1.3)
    dx = np.abs(gx - c[0])
    side = m & (dx > hw * 1.1) & (dx < hw * 1.6) & (gy > eye_y - 0.1) & (gy < eye_y + 0.4)
    px = rgb[crown | side]
    if skin_rgb is not None and len(px):
        px = px[norm(to_lab(px) - to_lab(np.asarray(skin_rgb, np.float64))) > SKIN_DE]
    return stats.median(px, 0).astype(np.float32) if len(px) >= 24 else None


#: CIELAB distance under which a pixel reads as the skin (:func:`headwear_colours`;
#: a reading of the hair under a hat within twice that is taken for skin).
SKIN_DE = 15.0


def hair_region_reading(crop, hair_mask, landmarks, valid=None, masked: bool = False
                        ) -> tuple[np.ndarray, np.ndarray, int, np.ndarray | None] | None:
    """(the region's robust median colour, its pixels (float RGB, N×3), the
    crop's pixel count, the cheeks' CIELAB (:func:`cheek_skin_lab`; ``masked``:
    the face wears a mask)): what :func:`hair_colour_of_class` reads; None
    when the region holds too few pixels."""
    rgb = float_rgb(crop)
    px = rgb[hair_region(rgb.shape[0], hair_mask, landmarks, valid)]
    raw = _robust_hair_median(px)
    return None if raw is None else (raw, px, rgb.shape[0] * rgb.shape[1],
                                     cheek_skin_lab(rgb, landmarks, valid, masked=masked))


#: No grey hair on a face read younger than this (:func:`age_gray_ratio` is 0
#: there; the model's age, not one read under a face mask): of the 241
#: photos labelled by eye for hair colour read under 15, none is grey; over
#: 6,821 photos through the shipped pipeline (session 39, scratch
#: ``/tmp/s39/survey.py``), 22 read under 15 were drawn grey, all children
#: and babies with dark, brown or blond hair (or a coloured cap), where the
#: fitted prior's smoothed ratio under 15 (0.09) still left grey the
#: likeliest; none of the 300 UTKFace photos of people 50 or older read
#: under 18.
GRAY_MIN_AGE = 15.0


def _too_young_for_grey(age) -> bool:
    """Whether ``age`` is under :data:`GRAY_MIN_AGE` (no grey hair at all)."""
    return is_real(age) and float(age) < GRAY_MIN_AGE


def age_gray_ratio(age) -> float:
    """How much likelier grey hair is at ``age`` (the model's: H's with the
    artist's, :func:`fuse_age`, never one the app set; the prior was fitted
    against H's own ages) than over all
    training photos (the hair-colour classifier's fitted ``age_prior``:
    P(gray | age band) / P(gray), smoothed toward 1; 1.0 without it or
    without an age); 0 under :data:`GRAY_MIN_AGE`. Grey hair under 25 is rare (ratio ~0.05): without it
    the fused reading drew 35 of the training children and young adults
    grey-haired (session 6, docs/hair.md)."""
    from .artist.accessories import detectors, gray_ratio

    if _too_young_for_grey(age):
        return 0.0
    return gray_ratio((detectors().get("hair_colour") or {}).get("age_prior"), age)


def tone_colour_ratios(tone, prior) -> np.ndarray | None:
    """How much likelier each hair colour (:data:`HAIR_COLOURS`) is at H's
    Monk skin tone estimate ``tone`` than over all training photos: the row
    of ``prior`` (``model_thresholds``' ``hair_colour_tone_prior``, fitted by
    ``avatarizer-export skin-tone`` against H's own estimates) for that
    band; None without a prior or a tone. Blond and red hair are rare on
    darker skin, and tight crops drew dark-skinned children blond from their
    foreheads' pixels."""
    if prior is None or tone is None or not is_real(tone):
        return None
    i = int(np.searchsorted(prior["bins"], float(tone), side="right"))
    return prior["ratios"][min(i, len(prior["ratios"]) - 1)]


#: Blond and red read as black or brown on a face whose skin the skin-tone
#: network reads at this Monk step or darker (:func:`light_hair_as_dark`): of the 96
#: photos labelled by eye for hair colour (``ffhq128``, ``ffhq128-labelled``,
#: ``stylegan128`` and UTKFace's eval labels) it reads at 6 or darker, none
#: has blond or red hair (89 black, 4 grey, 3 brown); over 6,821 photos
#: through the shipped pipeline (session 39, scratch ``/tmp/s39/survey.py``)
#: 20 of the 345 it reads there were drawn blond or red: 16 with black or
#: dark brown hair (babies and children read from their foreheads, a shaved
#: head's sides, short hair before a green background), 4 under a turban, a
#: hood or a scarf whose colour was read as the hair's. Their probability
#: goes to black and brown in the ratio the readings give those two (the
#: light pixels read were not hair), not spread over every class: ruled out
#: and renormalised, six of the 16 went grey; all of it given to brown, a
#: black-haired woman the readings had right went brown.
DARK_SKIN_TONE = 6.0
#: the hair colours :data:`DARK_SKIN_TONE` reads as black or brown
LIGHT_HAIR = ("blond", "red")


def light_hair_as_dark(attributes: Mapping) -> tuple[str, ...]:
    """The hair colours to read as black or brown for these attributes
    (:data:`LIGHT_HAIR` where the skin-tone network read the skin at
    :data:`DARK_SKIN_TONE` or darker, ``skin_tone_by`` its own; none for a
    tone H or the app gave, nor under a face mask, where it is not read)."""
    from .skintone import BY_NETWORK

    tone = attributes.get("skin_tone")
    if attributes.get("skin_tone_by") == BY_NETWORK and is_real(tone) and float(tone) >= DARK_SKIN_TONE:
        return LIGHT_HAIR
    return ()


def fuse_hair_colour(model_probs: Mapping[str, float], region_probs: Mapping[str, float],
                     priors=None, age=None, tone_ratios=None, network=None, as_dark=()) -> dict:
    """P(black, brown, blond, red, gray) from two readings of the hair: H's
    (the whole crop; divided by its training colour frequencies ``priors``,
    as its balanced decision does) and the hair region's classifier (fitted
    class-balanced), multiplied as independent experts and normalised. No
    weight is fitted: a fusion fitted on H's outputs for its own training
    photos trusted them (over-confident there) and lost held out
    (``docs/hair.md``). With H's regressed ``age`` grey is weighed by
    :func:`age_gray_ratio` (how common grey hair is at that age; none
    under :data:`GRAY_MIN_AGE`); with
    ``tone_ratios`` (:func:`tone_colour_ratios` at H's skin tone) every class
    by its ratio. ``network``: the hair-colour network's probabilities
    (:mod:`avatarizer.haircolour`, trained class-balanced; a mapping or a
    sequence in :data:`HAIR_COLOURS` order), a third expert. ``as_dark``:
    classes whose probability goes to black and brown, in the ratio of
    those two (:func:`light_hair_as_dark`); the other classes keep theirs."""
    score = np.log(np.clip([model_probs[c] for c in HAIR_COLOURS], 1e-4, 1.0))
    score = score + np.log(np.clip([region_probs[c] for c in HAIR_COLOURS], 1e-4, 1.0))
    if network is not None:
        net = [network[c] for c in HAIR_COLOURS] if isinstance(network, Mapping) else list(network)
        score = score + np.log(np.clip(np.asarray(net, np.float64), 1e-4, 1.0))
    if priors is not None:
        score = score - np.log(np.clip(np.asarray(priors, np.float64), 1e-3, 1.0))
    if age is not None:  # (a child: no grey at all; a fitted ratio of 0 elsewhere is floored as before)
        score[HAIR_COLOURS.index("gray")] += -np.inf if _too_young_for_grey(age) \
            else np.log(max(age_gray_ratio(age), 1e-3))
    if tone_ratios is not None:
        score = score + np.log(np.clip(np.asarray(tone_ratios, np.float64), 1e-3, None))
    p = np.exp(score - score.max())
    p = p / p.sum()
    dark = [HAIR_COLOURS.index("black"), HAIR_COLOURS.index("brown")]
    moved = [HAIR_COLOURS.index(c) for c in set(as_dark) if c in HAIR_COLOURS and c not in ("black", "brown")]
    if moved:
        share = p[dark] / p[dark].sum() if p[dark].sum() > 0 else np.full(2, 0.5)
        p[dark] += p[moved].sum() * share
        p[moved] = 0.0
    return dict(zip(HAIR_COLOURS, map(float, p)))


def model_hair_colour(model_probs: Mapping[str, float], priors=None, age=None, tone_ratios=None,
                      network=None, as_dark=()) -> dict:
    """P(black, brown, blond, red, gray) from H's reading alone, weighed as
    :func:`fuse_hair_colour` weighs it (divided by H's training colour
    frequencies ``priors``, grey by :func:`age_gray_ratio`, every class by
    ``tone_ratios``): where no hair region is read (no person mask, a crop
    that ends at the hairline). Its likeliest class is
    :func:`decode_attributes`' balanced ``hair_colour`` where neither age nor
    tone weighs in; drawing H's raw likeliest class instead drew white-haired
    85- to 92-year-olds reported grey in dark brown. ``network``,
    ``as_dark``: as :func:`fuse_hair_colour`'s."""
    return fuse_hair_colour(model_probs, {c: 1.0 for c in HAIR_COLOURS}, priors, age, tone_ratios, network,
                            as_dark)


def hair_colour_of_class(raw, px: np.ndarray, crop_pixels: int, *, skin_lab=None, model=None,
                         gray_ratio: float | None = None) -> tuple[np.ndarray, dict | None]:
    """(``raw``, a hair colour sampled from the photo, drawn as the class
    the classifier reads in the hair region's pixels ``px`` against the
    cheeks' ``skin_lab`` (:func:`cheek_skin_lab`; without it the classifier
    reads nothing: H's reading alone decides where ``model`` gives one,
    :func:`model_hair_colour`, else ``raw`` is drawn as it is); its class
    probabilities): :func:`drawn_hair_colour` at the fitted gate, or ``raw``
    as it is when the region covers less than :data:`HAIR_CLASS_MIN_AREA` of
    the crop's ``crop_pixels`` and there is no ``model`` reading to fuse. ``model``: (H's hair-colour probabilities,
    H's training colour frequencies or None[, H's regressed age[, :func:`tone_colour_ratios`[, the
    hair-colour network's probabilities[, the classes read as black or brown]]]]): the class is then the one of :func:`fuse_hair_colour`
    (the region's reading tempered to :data:`TIGHT_REGION_WEIGHT` where it is too small, :func:`too_little_hair`). ``gray_ratio`` (without ``model``: the
    auto-artist's :func:`avatarizer.artist.accessories.artist_gray_ratio` at its own age
    estimate) weighs the region's grey as H's age weighs it in the fusion. The SDK's hair
    stage (with H) and the auto-artist (without) both draw their hair colour through this."""
    raw = natural_hair_colour(raw)  # without a colour cast, before the class is read into it
    little = too_little_hair(len(px), crop_pixels)
    # the classifier's statistics are percentiles: an even subsample of at
    # most HAIR_FEATURE_PIXELS pixels gives them within a fraction of a unit
    step = max(1, len(px) // HAIR_FEATURE_PIXELS)
    probs = hair_colour_probs(px[::step], skin_lab)
    gate = hair_colour_gate()
    if probs is not None and (model is None or not model[0]):
        probs = gray_weighted(probs, gray_ratio)
    if model is not None and model[0]:
        if probs is None:
            # the region's classifier reads nothing (no skin reading, no fitted classifier): H's
            # reading alone, weighed alike and drawn at any probability, as where no hair region is
            # read at all (the pipeline's hair stage), so that the colour reads as the class reported
            probs, gate = model_hair_colour(model[0], *model[1:6]), 0.0
        else:
            region = tempered(probs, TIGHT_REGION_WEIGHT) if little else probs
            probs = fuse_hair_colour(model[0], region, model[1], *model[2:6])
    if little and (model is None or not model[0]):
        return raw, probs  # too little hair to read a class from: the colour as sampled
    if probs and max(probs, key=probs.get) == "gray" and probs["gray"] >= gate:
        raw = lit_grey_hair(px, raw)  # (its lit strands, less the warmth around them)
    # (with H's reading the class is fused from both, and the drawing reads as the class reported:
    # an 86-year-old reported grey in a tight crop was drawn in the few pixels' brown)
    return drawn_hair_colour(raw, probs, min_prob=gate), probs


#: grey hair is drawn at this percentile of its region's lightness (its lit strands) and at
#: :data:`GREY_CHROMA` of their chroma (the skin and the background seen through it warm it): the
#: region's median, shadows in it, drew white hair a dark taupe (of the 96 held-out UTKFace people aged
#: 60 and over drawn grey, 61 darker than L* 55, median 47.7, chroma 6.8; now 17, 63.2 and 4.1, with
#: the palette's grey where no hair is sampled, :func:`class_hair_colour`; 16 held-out photos labelled
#: grey by eye and drawn grey: median L* 61.8 -> 68.2; no class changed, no other class's colour;
#: a read-only review, session 67, scratch ``/tmp/s67/grey.py``)
GREY_LIT_PERCENTILE = 75.0
GREY_CHROMA = 0.5


def lit_grey_hair(px: np.ndarray, raw) -> np.ndarray:
    """Grey hair's colour as it looks: the region's pixels ``px`` (float
    RGB) at their :data:`GREY_LIT_PERCENTILE` lightness, in the median hue
    of the pixels at least that light, at :data:`GREY_CHROMA` of their
    chroma, without a colour cast (:func:`natural_hair_colour`); never darker
    than ``raw`` (the region's median)."""
    if len(px) < 20:
        return np.asarray(raw, np.float32)
    lab = to_lab(np.asarray(px, np.float64))
    light = float(stats.percentile(lab[:, 0], [GREY_LIT_PERCENTILE])[0])
    lit = lab[lab[:, 0] >= light]
    ab = stats.median(lit[:, 1:], 0) * GREY_CHROMA if len(lit) else np.zeros(2)
    was = to_lab(np.asarray(raw, np.float64))
    if light <= was[0]:
        return np.asarray(raw, np.float32)
    return natural_hair_colour(np.clip(from_lab(np.array([light, ab[0], ab[1]])), 0.0, 1.0))


def gray_weighted(probs: Mapping[str, float], gray_ratio) -> dict:
    """Hair-colour class probabilities ``probs`` with grey weighed by
    ``gray_ratio`` (how much likelier grey is at an age than over the
    classifier's training photos, :func:`avatarizer.artist.accessories.artist_gray_ratio`;
    floored at 1e-3) and renormalised; ``probs`` itself when the ratio is
    None, not finite, or 1."""
    if gray_ratio is None or not np.isfinite(gray_ratio) or gray_ratio == 1.0:
        return probs
    w = {c: max(float(gray_ratio), 1e-3) if c == "gray" else 1.0 for c in HAIR_COLOURS}
    total = sum(probs[c] * w[c] for c in HAIR_COLOURS)
    return {c: float(probs[c] * w[c] / total) for c in HAIR_COLOURS}


def region_classifier_reads(skin_lab) -> bool:
    """Whether the hair region's classifier reads a region (of at least 20
    pixels, as :func:`hair_region_reading` gives) beside the cheeks'
    ``skin_lab`` (its 4th item): a finite skin reading and a fitted
    classifier (else :func:`hair_colour_probs` gives None and
    :func:`hair_colour_of_class` follows H's reading alone)."""
    from .artist.accessories import detectors

    return skin_lab is not None and bool(np.isfinite(np.asarray(skin_lab, np.float64)).all()) \
        and detectors().get("hair_colour") is not None


def read_hair_colour(attributes: dict, probs: Mapping, source: str = "hair region") -> dict:
    """Makes a :func:`decode_attributes` dict report the hair-colour
    classifier's reading of the hair region (``probs``, as
    :func:`hair_colour` returns them: the class the drawn colour follows)
    instead of H's own (in place, returned): ``hair_colour`` its likeliest
    class, ``hair_colour_probs`` its probabilities; H's stay under
    ``hair_colour_probs_model``; ``hair_colour_source`` is ``source``
    (``"hair region"``: the artist's; ``"H x hair region"``: the hair
    stage's fusion; ``"H"``: H's reading alone, :func:`model_hair_colour`).
    On 87 held-out labelled photos the classifier's class
    has a balanced accuracy of 0.635 against H's 0.531 (``docs/hair.md``)."""
    a = attributes
    a.setdefault("hair_colour_probs_model", dict(a["hair_colour_probs"]))
    a["hair_colour_probs"] = {k: float(probs[k]) for k in HAIR_COLOURS}
    a["hair_colour"] = max(HAIR_COLOURS, key=lambda k: a["hair_colour_probs"][k])
    a["hair_colour_source"] = source
    return a


#: Under a hat of one of these colour classes (its crown's colour, :func:`headwear_colours`, read as
#: :func:`hair_colour_class_of` reads a hair colour) with hair beside the face read as another class, the
#: hair is not read as that class (:func:`not_the_hats_colour`): the readers of the whole crop took a red
#: hat's colour for the hair's. Over the drawn hats of the photos labelled by eye for hair colour (ffhq128,
#: ffhq128-labelled, stylegan128, UTKFace's), 6 were drawn red under a red hat with the hair beside the face
#: read another class, all 6 not red-haired (brown 4, black 2); none red-haired lost. Grey (white hats)
#: and black (dark hats) are not: there the hair beside the face read another class on 2 grey-haired and 5
#: black-haired photos the readings had right (session 66, ``/tmp/s66/hatcol.py``).
HAT_COLOUR_CLASSES = ("red",)
#: how the hair colour reads where :func:`not_the_hats_colour` moved it (after its readers)
HAT_COLOUR_BY = " x not the hat's colour"


def not_the_hats_colour(probs: Mapping[str, float], hat_rgb, side_rgb) -> dict | None:
    """``probs`` (hair-colour class probabilities) with the hat's colour
    class (:data:`HAT_COLOUR_CLASSES`) ruled out and the rest renormalised,
    where it is the likeliest class and the hair beside the face
    (``side_rgb``: :func:`headwear_colours`' hair, None where none shows)
    reads another class; else None (nothing to change)."""
    if hat_rgb is None or side_rgb is None or not probs:
        return None
    cls = hair_colour_class_of(natural_hair_colour(hat_rgb))
    if cls not in HAT_COLOUR_CLASSES or max(probs, key=probs.get) != cls \
            or hair_colour_class_of(natural_hair_colour(side_rgb)) == cls:
        return None
    rest = sum(float(v) for k, v in probs.items() if k != cls)
    if not rest > 0:
        return None
    return {k: (0.0 if k == cls else float(v) / rest) for k, v in probs.items()}


def hair_colour_gate() -> float:
    """The probability the likeliest hair-colour class needs before the drawn
    colour is moved into it (fitted with the classifier; 0.5 without one)."""
    from .artist.accessories import detectors

    return float(detectors().get("hair_colour", {}).get("min_prob", 0.5))


# -------------------------------------------------------------------- bank


@dataclass(frozen=True)
class HairEntry:
    """One bank entry (a real fitted hairstyle)."""

    index: int
    geometry: np.ndarray      # (len(GEOMETRY_INDEX),) head-frame hair parameters
    attributes: np.ndarray    # (len(RETRIEVAL_ATTRIBUTES),)
    descriptor: np.ndarray    # (N_RAYS + 1,)
    family: str
    members: int


class HairBank:
    """The shipped hairstyle bank (see the module doc); build with :meth:`load`."""

    def __init__(self, arrays: Mapping[str, np.ndarray], info: Mapping):
        """Checks what retrieval and :func:`merge` index and divide by, so
        that a bank rebuilt wrong (its sha256 then matches) is refused here
        with :class:`HairBankError` rather than failing at a query: every
        array present, of its shape, at least one entry, the geometry
        finite, families in range, spreads finite and above 0."""
        if not isinstance(info, Mapping):
            raise HairBankError(f"hair bank: its description is a {type(info).__name__}, not a mapping")
        self.info = dict(info)
        missing = [k for k in ("geometry", "geometry_index", "attributes", "descriptors", "attr_scale",
                               "desc_scale", "members", "family", "families") if k not in arrays]
        if missing:
            raise HairBankError(f"hair bank: no {', '.join(missing)} array")
        try:
            self.geometry = np.asarray(arrays["geometry"], np.float32)
            self.geometry_index = np.asarray(arrays["geometry_index"], np.int64)
            self.attributes = np.asarray(arrays["attributes"], np.float32)
            self.descriptors = np.asarray(arrays["descriptors"], np.float32)
            self.attr_scale = np.asarray(arrays["attr_scale"], np.float32)
            self.desc_scale = np.asarray(arrays["desc_scale"], np.float32)
            self.members = np.asarray(arrays["members"], np.int64)
            self.family = np.asarray(arrays["family"], np.int64)
            self.families = tuple(str(f) for f in np.asarray(arrays["families"]).reshape(-1))
            self.medoid_keys = tuple(str(k) for k in np.asarray(arrays["medoid_keys"]).reshape(-1)) \
                if "medoid_keys" in arrays else ()
        except (TypeError, ValueError, OverflowError) as exc:
            raise HairBankError(f"hair bank: an array of the wrong type: {exc}") from None
        self._drawn_long: np.ndarray | None = None
        if not np.array_equal(self.geometry_index, GEOMETRY_INDEX):
            raise HairBankError("hair bank: its geometry columns do not match this schema's hair slice "
                                "(rebuild it with `avatarizer-export hairbank`)")
        n = len(self.geometry) if self.geometry.ndim else 0
        if n < 1:
            raise HairBankError("hair bank: no entries")
        shapes = {"geometry": (n, len(GEOMETRY_INDEX)), "attributes": (n, len(RETRIEVAL_ATTRIBUTES)),
                  "descriptors": (n, N_RAYS + 1), "members": (n,), "family": (n,),
                  "attr_scale": (len(RETRIEVAL_ATTRIBUTES),), "desc_scale": (N_RAYS + 1,)}
        for name, shape in shapes.items():
            if getattr(self, name).shape != shape:
                raise HairBankError(f"hair bank: {name} has shape {getattr(self, name).shape}, this SDK reads "
                                    f"{shape} (geometry's {n} rows; descriptor/attribute widths "
                                    f"{N_RAYS + 1}/{len(RETRIEVAL_ATTRIBUTES)})")
        if not np.isfinite(self.geometry).all():  # what merge draws (an entry's NaN attribute only ranks it last)
            raise HairBankError("hair bank: geometry holds values that are not finite")
        for name in ("attr_scale", "desc_scale"):
            v = getattr(self, name)
            if not (np.isfinite(v) & (v > 0)).all():
                raise HairBankError(f"hair bank: {name} holds spreads that are not finite numbers above 0")
        if not ((self.family >= 0) & (self.family < len(self.families))).all():
            raise HairBankError(f"hair bank: family indices outside 0..{len(self.families) - 1}")

    def __len__(self) -> int:
        return len(self.geometry)

    @classmethod
    def load(cls, path: str | Path | None = None) -> "HairBank":
        """Loads ``hair_bank.npz`` after checking its sha256 against
        ``hair_bank.json`` beside it (``path``: the npz; default the package's).
        Raises :class:`HairBankError` when either file is missing, the
        checksum differs (a corrupt or edited bank) or the format is unknown."""
        npz = Path(path) if path is not None else DATA / "hair_bank.npz"
        meta_path = npz.with_suffix(".json")
        if not npz.is_file():
            raise HairBankError(f"{npz}: no hairstyle bank (build it with `avatarizer-export hairbank`)")
        if not meta_path.is_file():
            raise HairBankError(f"{meta_path}: the bank's description (with its sha256) is missing")
        try:
            info = json.loads(meta_path.read_text(encoding="utf-8"))
        except (OSError, ValueError, RecursionError) as exc:
            # (ValueError: also a number too long to convert; RecursionError: JSON nested too deep to parse)
            raise HairBankError(f"{meta_path}: unreadable: {exc!s:.200}") from None
        if not isinstance(info, dict):
            raise HairBankError(f"{meta_path}: holds a {type(info).__name__}, not the bank's description")
        data = npz.read_bytes()
        got = hashlib.sha256(data).hexdigest()
        if got != info.get("sha256"):
            raise HairBankError(f"{npz}: checksum mismatch (sha256 {got[:16]}…, {meta_path.name} says "
                                f"{str(info.get('sha256'))[:16]}…): the bank is corrupt or was changed; "
                                "reinstall it or rebuild it with `avatarizer-export hairbank`")
        if info.get("format") != BANK_FORMAT:
            raise HairBankError(f"{meta_path}: bank format {info.get('format')!r}, this SDK reads {BANK_FORMAT}")
        import io

        try:
            z = np.load(io.BytesIO(data), allow_pickle=False)
            if not isinstance(z, np.lib.npyio.NpzFile):  # (a plain .npy under the bank's name)
                raise ValueError(f"a {type(z).__name__}, not an npz archive")
            with z:
                arrays = {k: z[k] for k in z.files}
        except Exception as exc:  # noqa: BLE001 (bytes in memory, no pickles: whatever the parsers raise on
            # them, BadZipFile, zlib.error, EOFError, a damaged array header's SyntaxError, means unreadable)
            raise HairBankError(f"{npz}: unreadable npz: {type(exc).__name__}: {exc!s:.200}") from None
        bank = cls(arrays, info)
        if info.get("count") != len(bank):
            raise HairBankError(f"{meta_path}: says {info.get('count')} entries, the npz has {len(bank)}")
        return bank

    def entry(self, i: int) -> HairEntry:
        i = int(i)
        if not 0 <= i < len(self):
            raise IndexError(f"hair bank entry {i} out of range 0..{len(self) - 1}")
        return HairEntry(i, self.geometry[i], self.attributes[i], self.descriptors[i],
                         self.families[self.family[i]], int(self.members[i]))

    def drawn_long(self, face=None) -> np.ndarray:
        """Whether each entry is drawn with long hair on the face of the
        parameter vector ``face`` (default: :func:`avatarizer.schema.default`,
        computed once and kept), placed by its head frame as :func:`merge`
        places it: :func:`drawn_length` of the result, for every entry at a
        time (the back hair's lowest side point at least
        :data:`LONG_ON_FACE` of the way from the face's eye line to its chin;
        on the default face, the back hair's ``length`` attribute,
        :func:`hair_attributes_from_params`, at least 0.5). On a face of
        other proportions than the default (its skull top and temple width,
        which place the hair, against its eye line and chin, which measure
        it) a style near the line comes out the other way; the hairstyle
        search's length gate takes this face's
        (:meth:`HairRetriever.candidates`)."""
        if face is None and self._drawn_long is not None:
            return self._drawn_long
        p = np.asarray(S.default() if face is None else S.as_params(face), np.float64)
        cx, top, hw = head_frame(p)
        pts = S.FEATURES["hair_back"].points
        low = None
        for j in _BACK_LOW_POINTS:  # as merge places them (then schema.clip), for every entry at once
            col = int(pts.start) + 2 * j + 1
            y = np.clip(self.geometry[:, list(GEOMETRY_INDEX).index(col)] * hw + top, S.LO[col], S.HI[col])
            low = y if low is None else np.maximum(low, y)
        eye, chin = _eye_and_chin(p)
        layers = self.geometry[:, list(GEOMETRY_INDEX).index(S.index("hair_style.layers"))]
        long_ = ((low - eye) / max(chin - eye, 1e-3) >= LONG_ON_FACE) & (layers > 0)  # (no hair: short)
        long_.setflags(write=False)
        if face is None:
            self._drawn_long = long_
        return long_

    def coverage(self) -> dict[str, int]:
        """Entries per family."""
        return {f: int((self.family == k).sum()) for k, f in enumerate(self.families)}

    def most_common(self) -> int:
        """The entry with the most members (the 'most common hairstyle')."""
        return int(np.lexsort((np.arange(len(self)), -self.members))[0])


# --------------------------------------------------------------- retrieval


@dataclass(frozen=True)
class RetrievalWeights:
    """Weights of the retrieval distance (see :meth:`HairRetriever.distances`).

    The defaults (1, 4; with ``HairRetriever(k=5)``) come from
    ``avatarizer-export hairbank tune`` (``docs/hair.md``): on 400 training
    photos left out of a tuning bank they are within 0.003 mean hair IoU of
    the best setting tried (0.002 on the bank of 2026-11-28), and weigh the
    attributes the silhouette cannot see (fringe, bald, headwear) more than
    it.

    Attributes:
        attributes: weight of the mean squared z-score difference of the hair
            attributes (:data:`RETRIEVAL_ATTRIBUTES`, each divided by its
            spread over the bank's training photos).
        shape: weight of the mean squared z-score difference of the observed
            shape-descriptor values (silhouette radii and hairline).
        per_attribute: optional extra factor per attribute name (default 1).
    """

    attributes: float = 1.0
    shape: float = 4.0
    per_attribute: tuple = ()

    def attribute_factors(self) -> np.ndarray:
        f = dict(self.per_attribute)
        bad = sorted(set(f) - set(RETRIEVAL_ATTRIBUTES))
        if bad:
            raise ValueError(f"unknown attribute(s) {bad}; attributes: {RETRIEVAL_ATTRIBUTES}")
        return np.array([float(f.get(k, 1.0)) for k in RETRIEVAL_ATTRIBUTES])


#: Family gates: when the query's score for a flag is at least the threshold
#: (the prevalence-matched thresholds of the attribute regressor, as for
#: drawing), only entries of these families are candidates. The silhouette
#: cannot tell a bald scalp from short hair (both are "person" in the mask),
#: and a hat needs a hat-shaped hairstyle. Checked in this order.
GATES = (("headwear", 0.678, ("headwear",)), ("bald", 0.587, ("bald", "receding")))

#: A bald or receding style needs at least this much of the query's bald score
#: (else the retrieval leaves those families out): the silhouette of hair
#: pulled back from a high forehead matches a receding hairline. On the 1,151
#: photos labelled by eye (``labels/hair_length_by_eye.jsonl``), through the
#: shipped pipeline, every bald or receding style drawn had P(bald) >= 0.041
#: (training photos) and >= 0.034 (held out), and none went to long hair; on
#: clip frames a long-haired woman (d3) was drawn receding at P(bald) 0.014.
BALD_FLOOR = 0.03

#: A wholly bald style (the bald family) needs at least this much of the
#: query's bald score, beside :data:`BALD_FLOOR` (a receding style keeps that
#: one). The bank rebuilt from the artist that draws bald heads bald (session
#: 49: 27 bald styles from the fits of bald men; the earlier bank's 20 were
#: mostly tight crops of babies) drew short-haired men bald at P(bald)
#: 0.03-0.15, grey and thinning hair most. Chosen on the 1,290 training
#: photos labelled by eye (``labels/hair_length_by_eye.jsonl``,
#: ``labels/scalp_by_eye.jsonl``; floors 0.03, 0.1, 0.12, 0.15, 0.2): short
#: hair drawn bald 11 -> 2 of 293, heads with hair drawn bald 14 -> 3 of 450,
#: bald heads drawn bald 31 -> 30 of 35 (0.2: 1, 2 and 30).
BALD_STYLE_FLOOR = 0.15

#: On a tight crop (:func:`lower_face_observed` False: the photo ends at the
#: chin and the hairline, as UTKFace's chips and webcam close-ups do) the
#: silhouette shows too little of the head to tell hair from scalp: the
#: search drew bald or receding styles on 96 of the 996 held-out UTKFace
#: faces (65 wholly bald; 38 children, 30 women with long hair, 28 men, most
#: with hair showing at the crop's top), all at P(bald) 0.03-0.16. There
#: bald and receding styles come only through the retriever's bald gate
#: (H's bald score at its drawing threshold, 0.5 for the shipped H, or a
#: bald head the app sets), never from the silhouette alone (H's score stays
#: under 0.29 on all 996). This is the floor of a retriever without a bald
#: gate (:data:`GATES`' default).
TIGHT_CROP_BALD_FLOOR = dict((n, t) for n, t, _ in GATES)["bald"]

#: A face read younger than this (the model's age, :func:`silhouette_bald_unlikely`)
#: or reported female gets a bald or receding style only through the
#: retriever's bald gate (H's bald score at its drawing threshold, a bald
#: head the app sets; the artist's bald detector too, for a child of
#: :data:`ARTIST_BALD_MIN_AGE` or more, never for a face reported female),
#: never from the silhouette alone: a child's short or fine hair and a
#: woman's hair pulled back from the forehead match a receding hairline's
#: silhouette. Session 39, the shipped pipeline on 6,131 photos (the loose
#: portraits, half the synthetic ones, half the UTKFace children and
#: teenagers): 18 read under 18 (ages 0.3-17.6; all children but a
#: long-haired young man) and 12 read female were drawn receding (one
#: bald), every one of them with hair on the top of the head; of the 227
#: heads labelled bald or receding by eye (``labels/scalp_by_eye.jsonl``,
#: ``labels/hair_length_by_eye.jsonl``) the youngest read 18.4 and two were
#: reported female (P(female) 0.59 and 0.76), neither drawn bald or
#: receding before.
SILHOUETTE_BALD_MIN_AGE = 18.0


def silhouette_bald_unlikely(attributes: Mapping) -> bool:
    """Whether the hairstyle search should draw a bald or receding style
    for these attributes only through its bald gate (a child or a face
    reported female: :data:`SILHOUETTE_BALD_MIN_AGE`); False where the app
    set the bald flag (the gates draw what it set). The age is the model's
    (an age the app set draws age lines and a child's head, and leaves the
    silhouette's hairstyle as the model read it), none read under a face
    mask (:data:`MASKED_AGE_BY`: masked adults read young); the gender the
    decided one (in a stream, :func:`steady_gender`'s)."""
    if "bald" in attributes.get("set_by_app", ()):
        return False
    age = model_age(attributes)
    return (is_real(age) and float(age) < SILHOUETTE_BALD_MIN_AGE) or reported_female(attributes)


def reported_female(attributes: Mapping) -> bool:
    """Whether the attributes decide a woman (``decided["male"]`` False; in
    a stream, :func:`steady_gender`'s); False where no gender is decided."""
    return reported_gender(attributes) == "female"


#: ``hair_long_by`` where the tight crops' hair-length network read the length (:mod:`avatarizer.hairlength`),
#: and where the facial hair drawn then read on top (:func:`read_with_facial_hair`)
TIGHT_LENGTH_BY = "tight-crop hair-length network"
TIGHT_LENGTH_WITH_FACIAL_HAIR_BY = f"{TIGHT_LENGTH_BY} x facial-hair network"
#: A tight crop's hair is drawn short on a face read (:func:`trusted_age`) under this many years
#: (:func:`baby_hair_short`): the tight crops' network read long hair on 117 of UTKFace's 1,101
#: one-year-olds' chips (a bonnet, a hood or a blanket beside a bald or downy head; all 60 of those read
#: under 2.5 years looked at had no long hair). Read under 2: 73 one-year-olds and 25 two- and
#: three-year-olds drawn long, of whom 2 to 4 show hair past the ears (session 68, ``/tmp/s68/baby``).
#: Loose portraits read by H are left as read (3 of the 50 read under 2.5 were drawn long, hair to the
#: chin, as they are).
BABY_SHORT_HAIR_AGE = 2.0
#: ``hair_long_by`` where :func:`baby_hair_short` drew the hair short
BABY_SHORT_BY = f"{TIGHT_LENGTH_BY}; short under {BABY_SHORT_HAIR_AGE:g} years"


def is_baby(age) -> bool:
    """Whether ``age`` (years, or None) is under :data:`BABY_SHORT_HAIR_AGE`."""
    return is_real(age) and float(age) < BABY_SHORT_HAIR_AGE


def baby_hair_short(attributes: dict, age=None) -> dict:
    """Short hair for a baby's tight crop: where the tight crops' network read
    the length (``hair_long_by`` :data:`TIGHT_LENGTH_BY`, its gate pair under
    ``hair_long_gate``) and the face reads under :data:`BABY_SHORT_HAIR_AGE`
    years (``age``: one the app set, else :func:`trusted_age`, not one read
    under a face mask), a P(long) over the short gate comes down to it (the
    reading stays under ``hair_long_model_read``, the public ``hair_length``
    gives no probability; ``hair_long_by`` :data:`BABY_SHORT_BY`). In
    place, returned."""
    a = attributes
    age = trusted_age(a) if age is None else age
    p = a.get("hair_long")
    gate = _own_length_gate(a)
    if a.get("hair_long_by") != TIGHT_LENGTH_BY or not is_baby(age) or not is_real(p) or gate is None:
        return a
    hi, lo = gate
    short = lo if lo is not None else min(hi, 0.5) - 0.01  # (no short gate: under the long one)
    if float(p) > short:
        a["hair_long_model_read"] = float(p)
        a["hair_long"] = float(short)
        a["hair_long_by"] = BABY_SHORT_BY
    return a


def _own_length_gate(attributes) -> tuple[float | None, float | None] | None:
    """The ``hair_long_gate`` pair a reading of ``hair_long`` brought with it
    (the tight crops' network's: its own, not H's), or None."""
    g = attributes.get("hair_long_gate") if isinstance(attributes, Mapping) else None
    if not isinstance(g, (tuple, list)) or len(g) != 2 or not all(v is None or is_real(v) for v in g):
        return None
    hi, lo = (None if v is None else float(v) for v in g)
    return (hi, lo) if gate_pair_ok(hi, lo) else None  # (as H's pair is checked)


def reported_gender(attributes) -> str | None:
    """``"female"`` or ``"male"`` as the attributes decide it
    (``decided["male"]``; in a stream, :func:`steady_gender`'s), or None
    where none is decided (or for an attribute vector)."""
    decided = attributes.get("decided") if isinstance(attributes, Mapping) else None
    if not isinstance(decided, Mapping) or "male" not in decided:
        return None
    return "male" if decided["male"] else "female"


def _model_score_if_as_drawn(attributes: Mapping, name: str) -> float | None:
    """The model's own score of flag ``name`` (``<name>_model``, kept by
    :func:`apply_settings`) where the app set the flag to what the model
    drew (``<name>_model_flags``), else None."""
    flags, own = attributes.get(f"{name}_model_flags"), attributes.get(f"{name}_model")
    drawn = (attributes.get("drawn") or {}).get(name)
    if flags is None or own is None or drawn is None or bool(flags[0]) != bool(drawn):
        return None
    own = float(own)
    return own if np.isfinite(own) else None


def _set_by_app(attributes) -> tuple:
    """The names the app set (:func:`apply_settings`'s ``set_by_app``) of a
    query's attributes; none for a vector."""
    return tuple(attributes.get("set_by_app", ())) if isinstance(attributes, Mapping) else ()


#: Under a family gate other than the bald one (a hat's hat-shaped styles), the hairstyle search keeps the
#: length the model is sure of (:meth:`HairRetriever._sure_length`, the length gate's thresholds), as
#: without a hat: the gate held only a length the app set, and the silhouette of a cap over a dark jacket
#: drew men's short hair to the shoulders against H's short at P(long) 0.05 (ffhq-1408; a read-only review,
#: session 66). Of the 229 drawn hats of the photos labelled by eye for hair colour, 50 changed length:
#: by eye (``/tmp/s66/hatlen1.png``, ``hatlen2.png``, 32 of them) about 20 better (men in caps and beanies
#: short, women with long hair under a scarf or hat long), 5 worse (boys in caps read female drawn long,
#: hair pulled back or covered drawn long), the rest neither; of the 12 with hair-length labels, 8 better
#: (6 covered drawn short, 2 long drawn long), 4 covered drawn long.
HAT_LENGTH_GATE = True


class HairRetriever:
    """k-nearest-neighbour search in a :class:`HairBank`.

    The distance of entry ``e`` to a query with attribute vector ``a`` and
    descriptor ``d`` (observed values ``o``)::

        D(e) = w_attr  * mean_j( f_j ((a_j - A_ej) / s_j)^2 )        over attributes given
             + w_shape * mean_k( ((d_k - S_ek) / t_k)^2 )            over observed d_k

    (``s``, ``t``: the spreads stored in the bank). ``query`` takes the ``k``
    nearest entries (default 5; ties broken by the lower entry index) and
    returns the one whose summed distance to the other ``k - 1`` is smallest
    (the neighbourhood's medoid, more robust to a noisy query; ``k = 1``:
    the nearest; an entry at distance 0 is always returned). With ``gates`` (default :data:`GATES`) a confident bald or
    headwear score restricts the candidates to those families; ``gates=None``
    searches the whole bank. With ``length_gate`` ``(gate_long,
    gate_short)`` (:func:`length_gates`) and a query whose ``hair_long`` is
    given, when no family gate applies: at ``gate_long`` or above only
    entries drawn long (:meth:`HairBank.drawn_long`) are candidates, at
    ``gate_short`` or below only those drawn short. The long set holds no
    bald, receding or headwear style, the short one no headwear style (those
    follow the family gates); either threshold may be None (no gate there).
    With ``length_gate_by_gender`` too (``{"female": (gate_long,
    gate_short), "male": ...}``, :func:`length_gates_by_gender`), a query
    whose gender is decided (:func:`reported_gender`) is gated at its
    gender's pair instead.
    With ``bald_floor`` (default :data:`BALD_FLOOR`; None: none), a query
    whose bald score is below it gets no bald or receding style; with
    ``bald_style_floor`` (default :data:`BALD_STYLE_FLOOR`; None: none), one
    below that gets no wholly bald style (a receding one may still come).
    """

    def __init__(self, bank: HairBank, weights: RetrievalWeights | None = None, k: int = 5,
                 gates=GATES, length_gate: tuple[float, float] | None = None,
                 bald_floor: float | None = BALD_FLOOR,
                 length_gate_by_gender: Mapping[str, tuple[float | None, float | None]] | None = None,
                 bald_style_floor: float | None = BALD_STYLE_FLOOR):
        if k < 1:
            raise ValueError("k must be >= 1")
        self.bank = bank
        self.weights = weights or RetrievalWeights()
        self.k = int(k)
        fam = np.array(bank.families)[bank.family]
        #: each entry's family name
        self.families = fam
        # (attribute index, threshold, entries of its families, the family names)
        self._gates = [(RETRIEVAL_ATTRIBUTES.index(n), float(t), np.isin(fam, list(fs)), frozenset(fs))
                       for n, t, fs in (gates or ())]
        self._fa = self.weights.attribute_factors()
        self._A = bank.attributes.astype(np.float64) / bank.attr_scale
        self._D = bank.descriptors.astype(np.float64) / bank.desc_scale
        self._Dz = np.concatenate([bank.attributes / bank.attr_scale, bank.descriptors / bank.desc_scale], 1)
        self._bald = RETRIEVAL_ATTRIBUTES.index("bald")
        self._bald_floor = None if bald_floor is None else float(bald_floor)
        self._bald_style_floor = None if bald_style_floor is None else float(bald_style_floor)
        # a tight crop's floor: this retriever's own bald gate (the pipeline's follows H's drawing threshold)
        self._tight_floor = next((t for j, t, _, _ in self._gates if j == self._bald), TIGHT_CROP_BALD_FLOOR)
        self._not_bald = ~np.isin(fam, ["bald", "receding"])
        self._bald_family = fam == "bald"
        #: entries drawn without a front hair layer (``hair_style.layers`` 1: a bald top)
        self._no_front = bank.geometry[:, list(GEOMETRY_INDEX).index(S.index("hair_style.layers"))] < 1.5
        # under the bald style floor: every style but the wholly bald ones (None where that leaves all or none)
        self._no_bald_style = ~self._bald_family if self._bald_family.any() and not self._bald_family.all() else None
        self._drawn_long = bank.drawn_long()
        # long: no bald, receding or hat-shaped style (they follow their own gates); short: any short
        # style but the hat-shaped ones (a receding style is short hair too)
        self._not_hat = fam != "headwear"
        self._length_sets = self._length_sets_of(self._drawn_long)
        self._length_gate = None
        self._length_gate_by_gender: dict = {}
        if length_gate is not None:
            hi, lo = (None if v is None else float(v) for v in length_gate)
            self._length_gate = (hi, lo)
            if length_gate_by_gender is not None:  # (a face whose gender is reported: its own gender's)
                self._length_gate_by_gender = _checked_gender_gates(length_gate_by_gender)
        elif length_gate_by_gender is not None:
            raise ValueError("length_gate_by_gender needs length_gate (the pair for a face of no decided gender)")

    @classmethod
    def for_model(cls, bank: HairBank, description: Mapping | None, **kw) -> "HairRetriever":
        """The retriever the pipeline uses with the attribute model whose
        ONNX ``description`` (metadata) is given: the family gates at the
        model's drawing thresholds (:func:`model_thresholds`, where
        :func:`merge` draws a hat or a bald head from them too: at the
        default gates a hat drawn from 0.33 came over a style without one),
        the hair-length gates by its ``hair_long`` output, overall and per
        reported gender. ``kw``: the other :class:`HairRetriever` arguments."""
        _, draw = model_thresholds(description)
        gates = tuple((name, draw.get(name, t), fams) for name, t, fams in GATES)
        return cls(bank, gates=gates, length_gate=length_gates(description),
                   length_gate_by_gender=length_gates_by_gender(description), **kw)

    def _length_sets_of(self, drawn_long: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(long, short) candidates of the length gate, from which entries
        are drawn long (:meth:`HairBank.drawn_long`): long, no bald, receding
        or hat-shaped style (they follow their own gates); short, any short
        style but the hat-shaped ones (a receding style is short hair too)."""
        return drawn_long & self._not_bald & self._not_hat, ~drawn_long & self._not_hat

    def distances(self, attributes=None, descriptor=None, observed=None) -> np.ndarray:
        """Distance of every bank entry to the query (see the class doc)."""
        w = self.weights
        d = np.zeros(len(self.bank))
        if attributes is not None and w.attributes > 0:
            a = attribute_vector(attributes)
            if "bald" in _set_by_app(attributes):
                # a set bald flag is 1 or 0, many bank spreads from every entry's score (H's own, 0.01-0.25):
                # its term would rank the entries by their distance to an impossible value. The gates
                # (candidates) draw it instead; set as the model drew it, the model's own score stays in
                # the distance (the app confirming the model's "not bald" changed 69 of 294 hairstyles)
                own = _model_score_if_as_drawn(attributes, "bald")
                a[self._bald] = np.nan if own is None else own
            m = np.isfinite(a)
            if m.any():
                diff = self._A[:, m] - (a[m] / self.bank.attr_scale[m])
                d += w.attributes * (diff * diff * self._fa[m]).sum(1) / m.sum()
        if descriptor is not None and w.shape > 0:
            q = np.asarray(descriptor, np.float64)
            o = np.ones(len(q), bool) if observed is None else np.asarray(observed, bool)
            if o.any():
                diff = self._D[:, o] - (q[o] / self.bank.desc_scale[o])
                d += w.shape * (diff * diff).sum(1) / o.sum()
        return d

    def candidates(self, attributes=None, tight: bool = False, gate_only: bool = False,
                   face=None) -> np.ndarray | None:
        """Boolean mask of the entries a query may return (None: all), from
        the family gates, then the bald floor (:data:`BALD_FLOOR`; when
        ``tight``, a crop that does not show the lower face, or
        ``gate_only``, a face :func:`silhouette_bald_unlikely` says so of,
        the retriever's own bald gate, :data:`TIGHT_CROP_BALD_FLOOR` without
        one, also with ``bald_floor=None``), the bald style floor
        (:data:`BALD_STYLE_FLOOR`: under it no wholly bald style) and the
        length gate. A bald head the app set (``"bald"`` in the dict's
        ``set_by_app``, :func:`apply_settings`) gets only the ``bald``
        family: a receding style has a full front hair layer, so the bald
        gate's receding entries would draw hair on a head said to be bald.
        A length the app set (``"hair_length"`` there) holds under a family
        gate too, where that family has styles of that length (a hat over
        long hair: 17 of the 38 hat-shaped styles), and also without a
        length gate; H's own length keeps the order above. ``face``: the
        parameter vector of the face the style is drawn on, whose length
        classes (:meth:`HairBank.drawn_long`, :func:`drawn_length`) the length
        gate and a set length then follow (default: the default face's).
        A reading that brings its own length gate (``hair_long_gate``: the
        tight crops' network's, :mod:`avatarizer.hairlength`) is gated at
        that pair, not at the model's nor its per-gender pairs."""
        if attributes is None:
            return None
        a = attribute_vector(attributes)
        given = _set_by_app(attributes)
        h = attributes.get("hair_long") if isinstance(attributes, Mapping) else None
        drawn_long, length_sets = self._drawn_long, self._length_sets
        if face is not None and h is not None and np.isfinite(h):  # long and short as drawn on this face
            drawn_long = self.bank.drawn_long(face)
            length_sets = self._length_sets_of(drawn_long)
        # a length the app set (hair_long 1 or 0) holds under a family gate too, where the family has
        # styles of that length (a hat over long hair); H's own length keeps the gates' order
        set_length = None
        if "hair_length" in given and h is not None and np.isfinite(h):
            set_length = drawn_long if h >= 0.5 else ~drawn_long
        gate = self._gate_firing(a)
        if gate is not None and set_length is not None and not (gate[2] & set_length).any() \
                and RETRIEVAL_ATTRIBUTES[gate[0]] not in given:
            # the model's gate (H's bald head) has no style of the length the app set (no bald style is
            # long): the app's length wins, as a set bald head takes a set long length back
            # (merged_settings); the head was drawn bald and short while reported long
            gate = None
        if gate is not None:
            j, _, mask, _ = gate
            bald_set = "bald" in given and np.isfinite(a[self._bald]) and a[self._bald] >= 0.5
            if j == self._bald and "bald" in given and (mask & self._bald_family).any():
                mask = mask & self._bald_family
            elif bald_set:
                # a bald head the app set under a hat (the hat's gate fires first): a hat-shaped style
                # without a front hair layer, as a bald style has none, else a short one (one with hair
                # hanging halfway to the chin from under the hat was drawn on a head reported bald)
                for bare in (self._no_front, ~drawn_long):
                    if (mask & bare).any():
                        mask = mask & bare
                        break
            if set_length is not None and (mask & set_length).any():
                mask = mask & set_length
            elif HAT_LENGTH_GATE and j != self._bald and h is not None and np.isfinite(h):
                # the model's length where it is sure, under a hat too (the silhouette of a cap over a dark
                # jacket or wall drew men's short hair to the shoulders against H's short at P(long) 0.05)
                sure = self._sure_length(attributes, h, drawn_long)
                if sure is not None and (mask & sure).any():
                    mask = mask & sure
            return mask
        b = a[self._bald]
        floor = self._bald_floor
        if tight or gate_only:
            floor = max(floor or 0.0, self._tight_floor)
        keep = None
        if np.isfinite(b):
            if floor is not None and b < floor and self._not_bald.any():
                keep = self._not_bald
            elif self._bald_style_floor is not None and b < self._bald_style_floor:
                keep = self._no_bald_style  # (a receding style may still come)
        pair = self._length_pair(attributes)
        if set_length is not None:  # the app's length, also where the model has no length gate
            hi, lo, long_, short = (0.5, 0.5, *length_sets)
        elif pair is not None and h is not None and np.isfinite(h):
            (hi, lo), (long_, short) = pair, length_sets
        else:
            return keep
        if hi is not None and h >= hi and long_.any():
            return long_  # (no bald or receding style in it)
        if lo is not None and h <= lo and short.any():
            return short if keep is None or not (short & keep).any() else short & keep
        return keep

    def _length_pair(self, attributes) -> tuple[float | None, float | None] | None:
        """The ``(gate_long, gate_short)`` thresholds ``attributes``' ``hair_long``
        is gated at: the reading's own gate (a tight crop's, :func:`_own_length_gate`),
        else the reported gender's, else the model's; None without a gate."""
        own = _own_length_gate(attributes)
        if own is not None:
            return own
        if self._length_gate is not None:
            return self._length_gate_by_gender.get(reported_gender(attributes), self._length_gate)
        return None

    def _sure_length(self, attributes, h: float, drawn_long: np.ndarray) -> np.ndarray | None:
        """The styles (of any family: ``drawn_long``, the bank's styles drawn
        long on this face) of the length the model's ``hair_long`` ``h`` is sure of
        (at or past the length gate's thresholds: the reading's own gate, else
        the gate of the reported gender, else the model's), None where it is
        not sure or there is no gate."""
        pair = self._length_pair(attributes)
        if pair is None:
            return None
        hi, lo = pair
        if hi is not None and h >= hi:
            return drawn_long
        if lo is not None and h <= lo:
            return ~drawn_long
        return None

    def _gate_firing(self, a: np.ndarray):
        """The first family gate whose attribute in the vector ``a`` is at its
        threshold (as :meth:`candidates` checks them), or None."""
        return next((g for g in self._gates if np.isfinite(a[g[0]]) and a[g[0]] >= g[1] and g[2].any()), None)

    def gated_families(self, attributes=None) -> frozenset:
        """The families a family gate restricts this query to (the first
        that fires), or none."""
        gate = None if attributes is None else self._gate_firing(attribute_vector(attributes))
        return frozenset() if gate is None else gate[3]

    def nearest(self, attributes=None, descriptor=None, observed=None, k: int | None = None,
                tight: bool = False, gate_only: bool = False, face=None):
        """``(indices, distances)`` of the ``k`` nearest candidate entries,
        nearest first (equal distances: lower index first); ``tight``,
        ``gate_only``, ``face``: see :meth:`candidates`."""
        k = self.k if k is None else k
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
            raise ValueError(f"k must be a whole number >= 1, got {k!r}")
        d = self.distances(attributes, descriptor, observed)
        cand = self.candidates(attributes, tight=tight, gate_only=gate_only, face=face)
        part = np.arange(len(d)) if cand is None or not cand.any() else np.flatnonzero(cand)
        order = _nearest_first(part, d)[:int(k)]
        return order, d[order]

    def query(self, attributes=None, hair_mask_crop=None, canonical_landmarks=None, *, valid=None,
              k: int | None = None, gate_only: bool = False, face=None) -> int:
        """Index of the best bank entry for a photo.

        Args:
            attributes: dict (e.g. :func:`decode_attributes`) or vector of
                :data:`RETRIEVAL_ATTRIBUTES`; None to match on shape only.
            hair_mask_crop: the photo's S×S hair mask, or None to match on
                attributes only.
            canonical_landmarks: (478, 2), needed with a mask.
            valid: optional S×S bool mask of crop pixels inside the photo;
                with the landmarks it also tells a tight crop
                (:func:`lower_face_observed`), where bald and receding
                styles need the bald gate (:data:`TIGHT_CROP_BALD_FLOOR`).
            k: neighbourhood size (default the retriever's ``k``).
            gate_only: bald and receding styles only through the bald gate
                (:func:`silhouette_bald_unlikely`, :meth:`candidates`).
            face: the parameter vector of the face it is drawn on: the
                length gate's long and short styles as drawn there
                (:meth:`candidates`).
        """
        desc = obs = None
        tight = valid is not None and canonical_landmarks is not None and \
            not lower_face_observed(valid, canonical_landmarks)
        if hair_mask_crop is not None:
            if canonical_landmarks is None:
                raise ValueError("a hair mask needs the canonical landmarks to compute its descriptor")
            desc, obs = shape_descriptor(hair_mask_crop, canonical_landmarks, valid)
        if attributes is None and desc is None:
            raise ValueError("query needs attributes, a hair mask, or both")
        return self.query_descriptor(attributes, desc, obs, k=k, tight=tight, gate_only=gate_only, face=face)

    def query_family(self, family: str, attributes=None, hair_mask_crop=None, canonical_landmarks=None, *,
                     valid=None) -> int | None:
        """The nearest entry of one ``family`` to the photo (the distances
        :meth:`query` ranks by: the attributes and the hair mask's shape),
        None where the bank has no entry of it (the receding family of a
        head the receding detector reads, :func:`add_artist_receding`)."""
        mine = np.flatnonzero(self.families == family)
        if not len(mine):
            return None
        desc = obs = None
        if hair_mask_crop is not None and canonical_landmarks is not None:
            desc, obs = shape_descriptor(hair_mask_crop, canonical_landmarks, valid)
        return int(_nearest_first(mine, self.distances(attributes, desc, obs))[0])

    def query_descriptor(self, attributes=None, descriptor=None, observed=None, k: int | None = None,
                         tight: bool = False, gate_only: bool = False, face=None) -> int:
        """:meth:`query` with a precomputed descriptor (``tight``: a crop
        that does not show the lower face; ``gate_only``, ``face``: see
        :meth:`candidates`)."""
        idx, dist = self.nearest(attributes, descriptor, observed, k, tight=tight, gate_only=gate_only,
                                 face=face)
        if len(idx) <= 1 or dist[0] <= 1e-9:  # an exact match is the answer
            return int(idx[0])
        z = self._Dz[idx]
        dd = ((z[:, None, :] - z[None, :, :]) ** 2).sum(-1).sum(1)
        return int(idx[np.lexsort((np.arange(len(idx)), dd))[0]])


def _nearest_first(part: np.ndarray, d: np.ndarray) -> np.ndarray:
    """The entries ``part`` (indices) ranked by their distances in ``d``:
    nearest first, equal distances by index, a distance that is not a number
    last (an entry's NaN attribute in a bank built so; as np.inf for the
    others it sorted after them: the gates were passed over)."""
    key = d[part]
    return part[np.lexsort((part, np.where(np.isnan(key), np.inf, key)))]


#: Families a gate decides (:data:`GATES`): a stream leaves a style of
#: these at once when its gate no longer fires (:func:`steady_style`)
UNSTEADY_FAMILIES = ("headwear", "bald", "receding")


#: how many of a stream's latest hair readings :func:`steady_style` counts
#: (one a second of the stream at most: :data:`avatarizer.pipeline.hair.VIDEO_REFRESH_MS`)
STYLE_WINDOW = 15


def steady_style(families, shown: int | None, recent: tuple | None, new: int,
                 gated=frozenset()) -> tuple[int, tuple]:
    """The hairstyle a stream keeps showing, ``(shown, recent)``, after a
    refresh retrieved ``new`` (``families``: each bank entry's family name;
    ``recent``: the families of the stream's latest :data:`STYLE_WINDOW`
    retrievals before this one, a gate's marked with a trailing ``*``, None
    at first; ``gated``: the families a gate restricted this retrieval to,
    :meth:`HairRetriever.gated_families`). A face's hair does not change
    between refreshes of one stream, but the retrieval from each moment's
    silhouette did: on the shared clips a woman's bun became a buzz cut and
    back, a long-haired woman's style changed family on 4 of 5 refreshes. So
    the style just found is shown only when its family outnumbers the shown
    one among the latest readings (this one included; two readings in a row
    early in a stream; a hairstyle changed for good within the window); one
    of the same family keeps the style shown; the first is shown at once,
    and so are a style a gate decided (a hat put on, H's bald head) and any
    style after one a gate decided whose gate no longer fires (the hat taken
    off). A bald, receding or hat style the silhouette alone found is kept
    like any other. With a reading every second of 5 shared clips, the shown
    family changed 4 times where it changed 9 times when two readings in a
    row found another (session 25: ``d3`` 3 -> 1, ``d6`` 5 -> 2)."""
    new_f = families[new]
    before = tuple(recent or ())
    recent = (before + (new_f + "*" if new_f in gated else new_f,))[-STYLE_WINDOW:]
    if shown is None or new == shown:
        return new, recent
    old_f = families[shown]
    if new_f in gated and not (old_f in gated and before and before[-1].endswith("*")):
        # a gate that fires now (a hat put on): at once; under a gate that kept firing, the style shown
        # changes as any other (another hat-shaped style at each refresh flickered)
        return new, recent
    last_old = next((r for r in reversed(before) if r.rstrip("*") == old_f), None)
    if old_f in UNSTEADY_FAMILIES and old_f not in gated and last_old is not None and last_old.endswith("*"):
        return new, recent  # the gate that decided the style shown no longer fires
    found = [r.rstrip("*") for r in recent]
    if new_f != old_f and found.count(new_f) > found.count(old_f):
        return new, recent
    return shown, recent


# -------------------------------------------------------------------- merge

#: Score from which :func:`merge` draws a flag's overlay. The regressor's 0.5
#: is tuned for balanced accuracy (recall on rare flags); these are the
#: (1 - prevalence) quantiles of its scores on the training photos, so that
#: about as many overlays are drawn as the labels have (``avatarizer-export
#: attributes`` prints them; ``runs/attributes/report.json``).
DRAW_THRESHOLDS = {"beard": 0.716, "moustache": 0.808, "headwear": 0.678}
_GLASSES_FRAME = (0.12, 0.1, 0.1)
_HEADWEAR_RGB = (0.22, 0.24, 0.3)


#: H's P(beard) below which the artist's beard detector is not asked
#: (:func:`add_artist_beard`; its lower-face cues cost ~2 ms a face): on the
#: held-out labelled photos (session 13) 29% of the faces reach it, and it
#: keeps 21 of the 24 beards the detector added and 3 of its 4 inventions
ARTIST_BEARD_GATE = 0.05
#: the artist's detector adds no beard where the age (H's with the artist's since session 28) is under this
#: or its P(male) under :data:`ARTIST_BEARD_MIN_MALE`: on 4,309 photos (the
#: labelled ones and 800 UTKFace women and children) the 162 beards it added
#: on bearded people came at H ages of 11.1 or more and P(male) 0.109 or
#: more, while on 3,250 UTKFace children it added two, at 6.0 years and at
#: P(male) 0.025 (a baby girl drawn with a grey beard; session 25)
ARTIST_BEARD_MIN_AGE = 10.0
ARTIST_BEARD_MIN_MALE = 0.05


def _evidence(evidence, *args, extra: bool = False) -> tuple | None:
    """An artist detector's (probability, threshold) as finite floats, from
    the pair or a function of ``args`` returning it; None for None or a
    pair that is not finite. ``extra``: (probability, threshold, whether a
    third item is there and true) (the bald reading's bare top)."""
    if callable(evidence):
        evidence = evidence(*args)
    if evidence is None:
        return None
    prob, threshold = float(evidence[0]), float(evidence[1])
    if not (np.isfinite(prob) and np.isfinite(threshold)):
        return None
    return (prob, threshold, len(evidence) > 2 and bool(evidence[2])) if extra else (prob, threshold)


def _artist_reading(a: dict, name: str, evidence, gate: float, *args, extra: bool = False) -> tuple | None:
    """The artist's detector's reading for flag ``name`` (:func:`_evidence`
    of ``evidence`` and ``args``), asked only where H did not draw the flag
    and H's P(name) is at least ``gate``; else None."""
    if evidence is None or a["drawn"][name] or not _flag(a, name) >= gate:
        return None
    return _evidence(evidence, *args, extra=extra)


def _artist_flag(a: dict, name: str, evidence, gate: float, *args) -> tuple[float, float] | None:
    """The artist's detector's (probability, threshold) for flag ``name``
    where it fires (``evidence``: that pair, a function of ``args``
    returning it, or None), asked as :func:`_artist_reading` asks; else None."""
    got = _artist_reading(a, name, evidence, gate, *args)
    if got is None or not got[0] >= got[1]:
        return None
    prob, threshold = got
    _take_artist_flag(a, name, prob, "artist cues")
    return prob, threshold


def _take_artist_flag(a: dict, name: str, prob: float, by: str) -> None:
    """Draws and decides flag ``name`` of ``a`` by an artist detector's
    ``prob`` (H's own under ``<name>_model_read``, ``<name>_by`` ``by``)."""
    a[f"{name}_model_read"] = float(a[name])
    a[name] = prob
    a["drawn"][name] = a["decided"][name] = True
    a[f"{name}_by"] = by


def add_artist_beard(attributes: dict, evidence, age=None) -> dict:
    """A beard H did not draw, drawn where the artist's facial-hair detector
    finds one (``evidence``: its (probability, drawing threshold), a function
    returning that, or None; ``accessories.facial_hair_evidence``), asked
    only where H's P(beard) is at least :data:`ARTIST_BEARD_GATE`, and not on a child or a face H
    reads as a woman's (:data:`ARTIST_BEARD_MIN_AGE`, :data:`ARTIST_BEARD_MIN_MALE`; ``age``: one the
    app set, in place of H's). On the held-out labelled photos
    (shared labels and labels by eye, session 13) ``Avatarizer()`` drew 24
    of 92 beards with H alone (3 invented in 470 without), 45 (6) with
    this (48 (7) asking on every face). In place, returned: ``beard`` becomes the detector's probability,
    the drawn and decided flags are set, ``beard_by`` is ``"artist cues"``,
    ``beard_margin`` how far past its threshold it is (a moustache is drawn
    with it) and ``beard_opacity`` the artist's own opacity for it
    (``accessories.beard_opacity``: 0.7-0.95, white beards stay visible);
    H's own probability stays under ``beard_model_read``."""
    from .artist.accessories import beard_opacity

    age = attributes.get("age") if age is None else age  # (an age the app set wins over H's)
    male = attributes.get("male_model_read", attributes.get("male"))  # H's own (the floor was chosen on it)
    if (is_real(age) and age < ARTIST_BEARD_MIN_AGE) or (is_real(male) and male < ARTIST_BEARD_MIN_MALE):
        return attributes  # a child, or a face H reads as a woman's: the detector's beard is not taken
    got = _artist_flag(attributes, "beard", evidence, ARTIST_BEARD_GATE)
    if got is not None:
        attributes["beard_margin"] = got[0] - got[1]
        attributes["beard_opacity"] = beard_opacity(*got)
    return attributes


#: Grey facial hair is drawn (:func:`grey_beard_plausible`) only where the
#: grey-beard detector (``artist_detectors.json``'s ``beard_grey``) is at least
#: :data:`GREY_BEARD_SURE` sure, or on a face whose hair reads grey with at
#: least :data:`GREY_BEARD_HAIR_P` (``hair_colour_probs``), or whose age is at
#: least :data:`GREY_BEARD_AGE` years. Over the 371 training photos with a
#: beard colour labelled by eye (session 43, scratch ``/tmp/s43/bcol.py``;
#: the detector's decision, drawn or not), the detector read 17 of the 230
#: dark or brown beards grey (ffhq-1378, ffhq-0204: young men whose dark
#: beards in dim light have little chroma) and 110 of the 141 grey ones:
#: with the gate 11 and 109, balanced accuracy 0.853 to 0.863 (the three
#: numbers chosen there); held out (101 photos) 9 of 57 and 38 of 44 before,
#: 6 and 37 after, 0.853 to 0.868
GREY_BEARD_SURE = 0.85
GREY_BEARD_HAIR_P = 0.1
GREY_BEARD_AGE = 40.0


def grey_beard_plausible(attributes: Mapping, probability: float | None = None) -> bool:
    """Whether facial hair the photo shows grey may be drawn grey: the
    grey-beard detector's ``probability`` is :data:`GREY_BEARD_SURE` or
    more, the hair reads grey with probability :data:`GREY_BEARD_HAIR_P`
    or more (the model's reading), or the age is :data:`GREY_BEARD_AGE` or
    more; True where neither the hair colour nor the age is known. The age
    is the app's where it set one: it only lets the photo's grey through
    (the hair colour's grey weight reads the model's age instead,
    :func:`model_age`, because there the age alone can turn hair grey)."""
    probs = attributes.get("hair_colour_probs") or {}
    grey, age = probs.get("gray"), attributes.get("age")
    if not is_real(grey) and not is_real(age):
        return True
    return (is_real(probability) and float(probability) >= GREY_BEARD_SURE) \
        or (is_real(grey) and float(grey) >= GREY_BEARD_HAIR_P) or (is_real(age) and float(age) >= GREY_BEARD_AGE)


#: what ``beard_by`` and ``moustache_by`` say where the facial-hair network decided (:func:`add_facial_hair`)
FACIAL_HAIR_BY = "facial-hair network"


def add_facial_hair(attributes: dict, probabilities: Mapping[str, float],
                    thresholds: Mapping[str, Mapping[str, float]], age=None,
                    names: tuple[str, ...] = ("beard", "moustache")) -> dict:
    """The beard and the moustache decided by the facial-hair network
    (:mod:`avatarizer.facialhair`: ``probabilities`` its P per name,
    ``thresholds`` its drawing and decision thresholds) in place of H's
    heads: drawn at or past the drawing threshold, decided at or past the
    decision threshold, neither on a child (the age under
    :data:`ARTIST_BEARD_MIN_AGE`; ``age``: one the app set, in place of the
    estimate). In place, returned: ``<name>`` becomes the network's
    probability (H's stays under ``<name>_model_read``), ``<name>_by`` is
    :data:`FACIAL_HAIR_BY` (``"not drawn: a child ..."`` where the network
    would draw it on a child), ``<name>_margin`` how far past the drawing
    threshold it is (negative where not drawn), ``beard_opacity`` the
    drawn beard's (:func:`avatarizer.artist.accessories.beard_opacity`),
    and ``thresholds`` the network's for these names (H's stay under
    ``thresholds_model``). ``names``: the ones to decide."""
    from .artist.accessories import beard_opacity

    a = attributes
    age = a.get("age") if age is None else age
    child = is_real(age) and float(age) < ARTIST_BEARD_MIN_AGE
    for name in names:
        p, t = float(probabilities[name]), thresholds[name]
        _take_network(a, name, p, t, FACIAL_HAIR_BY,
                      gate=f"not drawn: a child (age under {ARTIST_BEARD_MIN_AGE:g})" if child else None)
        if name == "beard" and a["drawn"][name]:
            a["beard_opacity"] = beard_opacity(p, t["draw"])
    return attributes


#: Odds multipliers on H's P(long hair) and P(male) where the facial-hair
#: network draws a beard or a moustache (:func:`read_with_facial_hair`). Of
#: the 375 photos labelled by eye both for hair length
#: (``avatarizer_export.data.hair_length_labels``) and for beard and
#: moustache (``eye_labels``), none of the 51 with facial hair has long hair
#: (136 of the 324 without do); H's length head, trained on the length
#: alone, read 0.62-0.95 on three held-out bearded men with short hair (a
#: golden backdrop, a jacket collar), and its gender head read one of them
#: as a woman (P(male) 0.33 under the decision threshold 0.37). Naive Bayes
#: on those counts gives a long-hair odds ratio near 0.01; the head sees
#: the face too, so the ratios here are milder (session 34). With the men's
#: length gates (H 2.3.6: no long gate, short up to 0.50) a bearded face
#: reported male is drawn from the short styles up to H's P(long) 0.952
#: (20/21) and left to the silhouette above, never gated long.
FACIAL_HAIR_LONG_ODDS = 0.05
FACIAL_HAIR_MALE_ODDS = 10.0

#: ``male_by`` where the gender fusion read P(male) (:data:`GENDER_FUSION_BY`, :mod:`avatarizer.gender`'s),
#: and where the facial hair drawn then read on top
GENDER_FUSION_WITH_FACIAL_HAIR_BY = f"{GENDER_FUSION_BY} x facial-hair network"
#: what ``hair_long_by`` and ``male_by`` say where :func:`read_with_facial_hair` moved them
WITH_FACIAL_HAIR_BY = "H x facial-hair network"


def _times_odds(p: float, ratio: float) -> float:
    p = min(max(float(p), 1e-6), 1.0 - 1e-6)
    odds = ratio * p / (1.0 - p)
    return float(odds / (1.0 + odds))


def read_with_facial_hair(attributes: dict) -> dict:
    """H's P(long hair) and P(male) read with the beard or moustache the
    facial-hair network drew (:func:`add_facial_hair`; not on a child, nor
    under a face mask; also where the app then sets the beard or the hair's
    length: the photo's evidence stands, and what the model read beside a
    set value is what it reads unset): their odds times
    :data:`FACIAL_HAIR_LONG_ODDS` and :data:`FACIAL_HAIR_MALE_ODDS`, the
    decided and drawn ``male`` flags again at their thresholds. H's own values stay under
    ``hair_long_model_read`` and ``male_model_read``; ``hair_long_by`` and
    ``male_by`` are :data:`WITH_FACIAL_HAIR_BY` (``"H x face shape x
    facial-hair network"`` where the gender fusion read P(male) first,
    :func:`avatarizer.gender.fuse`, which keeps H's own under
    ``male_model_read``). A second call changes
    nothing. The artist's bare-top bald band keeps reading H's own P(male)
    (:func:`add_artist_bald`: its floor was chosen on it). In place, returned."""
    a = attributes
    if WITH_FACIAL_HAIR_BY in (a.get("male_by"), a.get("hair_long_by")) \
            or a.get("male_by") == GENDER_FUSION_WITH_FACIAL_HAIR_BY \
            or a.get("hair_long_by") == TIGHT_LENGTH_WITH_FACIAL_HAIR_BY:
        return a  # read already
    if not any(a.get(f"{k}_by") == FACIAL_HAIR_BY and a["drawn"].get(k) for k in ("beard", "moustache")):
        return a
    if is_real(a.get("hair_long")) and a.get("hair_long_by") != BABY_SHORT_BY:  # (a baby's rule stands)
        a.setdefault("hair_long_model_read", float(a["hair_long"]))
        a["hair_long"] = _times_odds(a["hair_long"], FACIAL_HAIR_LONG_ODDS)
        a["hair_long_by"] = TIGHT_LENGTH_WITH_FACIAL_HAIR_BY \
            if str(a.get("hair_long_by") or "").startswith(TIGHT_LENGTH_BY) else WITH_FACIAL_HAIR_BY
    if is_real(a.get("male")):
        a.setdefault("male_model_read", float(a["male"]))  # (H's own, also where the gender fusion read it)
        a["male"] = _times_odds(a["male"], FACIAL_HAIR_MALE_ODDS)
        th = a.get("thresholds") or {}
        for flags, kind in (("decided", "decision"), ("drawn", "draw")):
            a[flags]["male"] = bool(a["male"] >= float((th.get(kind) or {}).get("male", DEFAULT_THRESHOLD)))
        a["gender"] = "male" if a["decided"]["male"] else "female"
        a["male_by"] = GENDER_FUSION_WITH_FACIAL_HAIR_BY if a.get("male_by") == GENDER_FUSION_BY \
            else WITH_FACIAL_HAIR_BY
    return a


#: what ``headwear_by`` says where the hat network decided (:func:`add_hat_network`)
HAT_NETWORK_BY = "hat network"
#: ... and where the hat network and H decided together (:class:`avatarizer.headwear.HatFusion`)
HAT_FUSION_BY = "hat network x H"
#: the ``<name>_by`` of a decision a region network made (:mod:`avatarizer.regionnet`)
NETWORK_BY = (FACIAL_HAIR_BY, HAT_NETWORK_BY, HAT_FUSION_BY)


def add_hat_network(attributes: dict, probability: float, thresholds: Mapping[str, Mapping[str, float]],
                    fusion=None) -> dict:
    """The hat decided by the hat network (:data:`avatarizer.headwear.NETWORK`:
    ``probability`` its P(headwear), ``thresholds["headwear"]`` its drawing
    and decision thresholds) in place of H's head; as
    :func:`add_facial_hair` (H's probability under ``headwear_model_read``,
    whether H drew it under ``headwear_model_drawn``: the retrieval's query,
    :func:`hat_query`). With ``fusion`` (an
    :class:`avatarizer.headwear.HatFusion` fitted with this H and this
    network) the network's probability and H's decide together, at the
    fusion's thresholds (``"decided_by": "hat network x H"``; the
    network's own probability under ``headwear_network_read``). In place,
    returned."""
    a = attributes
    a["headwear_model_drawn"] = bool(a["drawn"]["headwear"])
    if fusion is not None:
        a["headwear_network_read"] = float(probability)
        _take_network(a, "headwear", fusion.probability(float(probability), float(a["headwear"])),
                      fusion.thresholds, HAT_FUSION_BY)
    else:
        _take_network(a, "headwear", float(probability), thresholds["headwear"], HAT_NETWORK_BY)
    return attributes


def hat_query(attributes: dict) -> dict:
    """The retrieval's query where the hat network decided the hat
    (:func:`add_hat_network`; also where a face cut by the frame's edge
    then un-drew it): H's own P(headwear) (the bank's entries hold H's
    scores, the family gate H's threshold) where the hat drawn is the one
    H would draw, and where it is not, the hat as the app would set it
    (1.0 or 0.0: the gate fires or not), so the hairstyle is chosen for the
    hat drawn. Without the network, H's own score, but 0.0 where a hat was
    un-drawn (a face cut by the frame's edge: its hairstyle came from the
    hat family, without the hat); a hat the app set otherwise than the
    model drew it: ``attributes`` as they are (set as it drew it: the
    model's own query)."""
    a = attributes
    if "headwear" in a.get("set_by_app", ()):
        own = _model_score_if_as_drawn(a, "headwear")
        if own is None:
            return a
        # set as the model drew it: the model's own query (a 1.0 or 0.0 in the distance, where the bank's
        # entries hold H's scores, changed 20 of 123 hatted heads' hairstyles, two long to short)
        a = {**a, "headwear": own, "set_by_app": [n for n in a["set_by_app"] if n != "headwear"]}
    if "headwear_model_drawn" not in a:  # no hat network: H's own reading, unless a hat was un-drawn
        # (a face cut by the frame's edge: its replicated border read as a hat; no hat-shaped hairstyle)
        return {**a, "headwear": 0.0} if str(a.get("headwear_by", "")).startswith("not drawn") else a
    if bool(a["drawn"]["headwear"]) == bool(a.get("headwear_model_drawn")):
        return {**a, "headwear": float(a["headwear_model_read"])}
    return {**a, "headwear": 1.0 if a["drawn"]["headwear"] else 0.0}


def _take_network(a: dict, name: str, p: float, t: Mapping[str, float], by: str, gate: str | None = None) -> None:
    """Writes a region network's decision for flag ``name`` into ``a``: its
    probability ``p`` (H's under ``<name>_model_read``), drawn and decided
    at its thresholds ``t`` (a drawing threshold of 1: never drawn, the
    fit's "no threshold reached the precision"), ``<name>_by`` ``by`` (or
    ``gate``, a "not drawn: ..." reason, where it would be drawn but a gate
    says no: then neither drawn nor decided), ``<name>_margin``, and its
    thresholds into ``a["thresholds"]`` (H's stay under ``thresholds_model``)."""
    th = a.setdefault("thresholds", {})
    th["decision"], th["draw"] = dict(th.get("decision") or {}), dict(th.get("draw") or {})  # (copies: H's kept)
    a.setdefault("thresholds_model", {"decision": dict(th["decision"]), "draw": dict(th["draw"])})
    a[f"{name}_model_read"] = float(a[name])
    a[name] = p
    on = bool(p >= t["draw"] and t["draw"] < 1.0)
    a["drawn"][name] = on and gate is None
    a["decided"][name] = bool(p >= t["decision"]) and gate is None
    a[f"{name}_by"] = gate if gate is not None and on else by
    a[f"{name}_margin"] = p - t["draw"] if a["drawn"][name] else min(p - t["draw"], -1e-6)
    th["draw"][name], th["decision"][name] = float(t["draw"]), float(t["decision"])


def read_beard_style(attributes: dict, evidence) -> dict:
    """The shape of a drawn beard from the artist's goatee detector
    (``evidence``: its (probability, drawing threshold), a function
    returning that, or None; ``accessories.goatee_evidence``): in place,
    returned, ``beard_style`` ``"goatee"`` (the chin's hair, the jaw's sides
    bare: :func:`merge` draws ``prior.goatee_outline``) or ``"full"``, and
    ``beard_style_probability`` the probability of that shape; nothing where
    no beard is drawn or there is no reading."""
    from .artist.accessories import is_goatee

    if not attributes["drawn"].get("beard"):
        return attributes
    ev = _evidence(evidence)
    if ev is None:
        return attributes
    goatee = is_goatee(ev)
    attributes["beard_style"] = "goatee" if goatee else "full"
    attributes["beard_style_probability"] = float(ev[0] if goatee else 1.0 - ev[0])
    return attributes


#: what ``beard_style_by`` and ``male_by`` say where a stream kept an earlier refresh's reading
KEPT_BY = "kept from earlier refreshes"


def _read_twice(shown: str | None, pending: str | None, new: str) -> tuple[str | None, str | None]:
    """A stream's ``(shown, pending)`` after a refresh read ``new``: the
    first reading is shown at once, another only when the refresh after the
    one that first read it reads it too (``pending`` holds that first
    reading); otherwise ``shown`` stays and ``new`` is pending."""
    if shown is None or new == shown or pending == new:
        return new, None
    return shown, new


def steady_beard_style(attributes: dict, shown: str | None, pending: str | None) -> tuple[str | None, str | None]:
    """The drawn beard's shape a stream keeps, ``(shown, pending)``, after a
    refresh read ``attributes["beard_style"]`` (:func:`read_beard_style`;
    none read: the stream's kept as it is). As :func:`steady_style` keeps the
    hair: the first shape is shown at once, another only when the next
    refresh reads it too (``pending`` holds the first reading), so a goatee
    probability near its threshold does not flip the beard's outline between
    refreshes; a refresh that reads none (no beard drawn) keeps the shape
    shown and forgets the pending one. In place: where the shape shown is not the one read,
    ``beard_style`` is the one shown, its ``beard_style_probability`` that
    refresh's probability of it, and ``beard_style_by`` ``"kept from earlier
    refreshes"``."""
    new = attributes.get("beard_style")
    if new is None:
        return shown, None
    shown, pending = _read_twice(shown, pending, new)
    if shown != new:
        attributes["beard_style"] = shown
        attributes["beard_style_probability"] = 1.0 - float(attributes["beard_style_probability"])
        attributes["beard_style_by"] = KEPT_BY
    return shown, pending


def steady_gender(attributes: dict, shown: str | None, pending: str | None) -> tuple[str | None, str | None]:
    """The gender a stream reports, ``(shown, pending)``, after a refresh
    decided ``attributes["decided"]["male"]``, as :func:`steady_beard_style`
    keeps the beard's shape: the first reading is reported at once, the
    other only when the next refresh reads it too, so that a P(male) near
    its threshold does not flip the reported gender between refreshes
    (three of the seven shared clips flipped it 2-5 times in 7.5-15 s, their
    facial hair steady). A refresh without a reading keeps the stream's. In
    place: where the gender kept is not the one read, ``decided["male"]``
    and ``gender`` say the one kept (the public ``gender``'s probability
    then that refresh's for it: P(male) for a kept "male", under the
    decision threshold; 1 - P(male) for a kept "female", which can pass a
    half where the threshold is under it, as H's 0.37 and the gender
    fusion's) and ``male_by`` is
    ``"kept from earlier refreshes"`` (in place of a reading "H x
    facial-hair network"); the drawn flag and P(male) stay this refresh's.
    Nothing is drawn by the gender: the report alone is steadied."""
    if not is_real(attributes.get("male")) or "male" not in attributes.get("decided", {}):
        return shown, None
    new = "male" if attributes["decided"]["male"] else "female"
    shown, pending = _read_twice(shown, pending, new)
    if shown != new:
        attributes["decided"]["male"] = shown == "male"
        attributes["gender"] = shown
        attributes["male_by"] = KEPT_BY
    return shown, pending


#: a stream reports the median age and skin tone of its last this many refreshes' readings
#: (:func:`steady_readings`): one refresh's reading jumped 26.7 -> 16.1 years on d6 and 2.61 -> 4.33 Monk
#: steps and back on the next refresh, the face drawn the same (a read-only review, session 69)
STEADY_READINGS = 5


def steady_readings(attributes: dict, recent: dict | None, *, clothes_rgb=None) -> tuple[dict, object]:
    """A stream's regressed readings, steadied over its refreshes:
    ``(memory, clothes)``. ``recent``: the stream's memory so far (None at
    its start): ``{"age": (years, ...), "skin_tone": (steps, ...),
    "clothes_rgb": (r, g, b) or None}`` (and the receding detector's
    readings, :func:`add_artist_receding`'s, which this keeps as they are).

    * ``age`` and ``skin_tone`` (in place in ``attributes``) become the
      median of this refresh's reading and the previous
      :data:`STEADY_READINGS` - 1 refreshes'; this refresh's own is kept
      under ``age_refresh_read`` / ``skin_tone_refresh_read``. Neither a
      reading under a face mask (:data:`MASKED_AGE_BY`; the skin tone is
      not read there) nor a missing one enters the memory or is changed.
    * ``clothes_rgb`` (this refresh's reading of the clothes' colour, or
      None where the corners showed none: bare shoulders, the frame's edge)
      comes back as this refresh's, or the last refresh's that read one: a
      refresh that read none drew the prior's blue top, and the stream's
      average drifted between the two (d6: a tan top to blue and back).

    The drawing's own average (``video.Tracker``) follows what is drawn;
    this keeps the report (and what reads the age: the hair colour's grey,
    a child's head) as steady."""
    memory = dict(recent or {})
    for name, masked in (("age", attributes.get("age_by") == MASKED_AGE_BY), ("skin_tone", False)):
        value = attributes.get(name)
        if masked or not is_real(value) or not np.isfinite(float(value)):
            continue
        seen = (tuple(memory.get(name, ())) + (float(value),))[-STEADY_READINGS:]
        memory[name] = seen
        attributes[f"{name}_refresh_read"] = float(value)
        attributes[name] = float(np.median(seen))
    if clothes_rgb is not None:
        memory["clothes_rgb"] = tuple(float(v) for v in clothes_rgb)
    return memory, memory.get("clothes_rgb")


#: H's P(bald) below which the artist's bald detector is not asked
#: (:func:`add_artist_bald`; its hair measurements cost ~1-2 ms a face): the
#: retrieval's own floor for a receding style (:data:`BALD_FLOOR`; a wholly
#: bald style needs :data:`BALD_STYLE_FLOOR` of H's score, or the artist's
#: reading, which reaches it through the bald gate as a set flag)
ARTIST_BALD_GATE = BALD_FLOOR


#: the artist's age estimate's weight in :func:`fuse_age` (log(1 + years)) where H reads
#: under ``AGE_RAMP[0]`` years, falling to 0 at ``AGE_RAMP[1]``: the artist reads
#: children within 1-4 years where H reads them 6-10 older, but it regresses the
#: old toward the middle further than H (over 65: -21 years against -18, held-out UTKFace)
AGE_ARTIST_WEIGHT = 0.5
AGE_RAMP = (40.0, 60.0)
#: the artist's weight where H reads under ``AGE_YOUNG_RAMP[0]`` years, falling linearly to
#: :data:`AGE_ARTIST_WEIGHT` at ``AGE_YOUNG_RAMP[1]`` (:func:`fuse_age`): H reads 6- to 12-year-olds as 16-22
#: (session 61, 996 held-out UTKFace photos: +4.5 years at 6-9, +6.7 at 9-12), the artist +2 and +3. Chosen on
#: 2,498 UTKFace training photos through ``Avatarizer()`` (scratch ``/tmp/s61/agepw.py``; mean error 7.94 ->
#: 7.70, the best of 0.85 and 1.0 at 12-22, 15-25 and 18-28 within 0.06 of it); held out 7.66 -> 7.47 years,
#: 6- to 12-year-olds read under 12 (drawn as a child's face) 36% -> 44%; on the 496 labelled FFHQ photos
#: 7.31 -> 7.21, adults read under 12 1.2% -> 1.5% (18-28 gave 1.7%; a ramp on the younger of the two
#: readings read more children young but 3.2% of those adults too). Adults over 25 as before.
AGE_YOUNG_WEIGHT = 0.85
AGE_YOUNG_RAMP = (15.0, 25.0)


#: ``age_by`` where the cheeks are covered (a face mask): H's age is kept,
#: and :func:`avatarizer.pipeline.merge.merge_face` draws no child's head by it
MASKED_AGE_BY = "H; a face mask: no child's head drawn by it"


def model_age(attributes: Mapping):
    """The age the model read (also where the app then set another, kept
    under ``age_model``; :func:`apply_settings`), or None where it was read
    under a face mask (:data:`MASKED_AGE_BY`: masked adults read young):
    what the hair colour's grey and the hairstyle search weigh, never the
    app's age (which draws age lines and a child's head)."""
    if attributes.get("age_by") == MASKED_AGE_BY:
        return None
    return attributes.get("age_model" if "age" in attributes.get("set_by_app", ()) else "age")


def trusted_age(attributes: Mapping):
    """The attributes' age to draw by (a child's head, the artist's bald age
    gate): the age, or an age the app set, but None for H's age read under
    a face mask (:data:`MASKED_AGE_BY`: masked adults read as children)."""
    if attributes.get("age_by") == MASKED_AGE_BY and "age" not in attributes.get("set_by_app", ()):
        return None
    return attributes.get("age")


def fuse_age(attributes: dict, artist_age) -> dict:
    """H's regressed age combined with the artist's own estimate
    (``artist_age``: :func:`avatarizer.artist.accessories.age_estimate`,
    years, or None: H's alone): a weighted mean of log(1 + years), as both
    regress it, the artist's weight :data:`AGE_ARTIST_WEIGHT` where H reads
    under ``AGE_RAMP[0]`` years, falling linearly to 0 at ``AGE_RAMP[1]``, and
    :data:`AGE_YOUNG_WEIGHT` where H reads under ``AGE_YOUNG_RAMP[0]``, falling
    linearly to :data:`AGE_ARTIST_WEIGHT` at ``AGE_YOUNG_RAMP[1]``.
    H reads children years older than they are (996 held-out UTKFace
    photos: +5.7 years under 4, +10.3 at 4-12), the artist's estimate (the
    face's proportions and skin detail) within 1-2; their errors are partly
    independent (correlation 0.4-0.5). Mean error, H / artist / this:
    held-out labelled photos 9.33 / 8.61 / 7.37 years, UTKFace 9.59 / 8.94 /
    7.72; over 65, 19.5 / 24.4 / 19.2 (session 28, docs/hair.md "Age"). In
    place, returned: ``age`` becomes the combination, H's own stays under
    ``age_model_read``, ``age_by`` says so; nothing without a finite pair."""
    h = attributes.get("age")
    if not (is_real(h) and is_real(artist_age)):
        return attributes
    h, a = float(np.clip(h, 0.0, 100.0)), float(np.clip(artist_age, 0.0, 100.0))
    lo, hi = AGE_RAMP
    w = AGE_ARTIST_WEIGHT * float(np.clip((hi - h) / (hi - lo), 0.0, 1.0))
    y0, y1 = AGE_YOUNG_RAMP  # (more of the artist's where H reads young: H reads children years older)
    w = max(w, w + (AGE_YOUNG_WEIGHT - w) * float(np.clip((y1 - h) / (y1 - y0), 0.0, 1.0)))
    attributes["age_model_read"] = h
    attributes["age"] = float(np.expm1((1.0 - w) * np.log1p(h) + w * np.log1p(a)))
    attributes["age_by"] = "H x artist"
    return attributes


def add_artist_bald(attributes: dict, evidence, hair_mask=None, hat: bool | None = None,
                    bare_top: bool = True, age=None) -> dict:
    """A bald head H did not draw, drawn where the artist's bald detector
    finds one (``evidence``: its (probability, drawing threshold), a function
    of the face's ``hair_mask`` returning that, or None;
    ``accessories.bald_evidence``), asked only where H's P(bald) is at
    least :data:`ARTIST_BALD_GATE` and no hat is drawn (``hat``: the hat
    decision when the app set it, else the model's: the hat network's,
    fused with H's, in the hybrid; H's without it). H's bald output barely
    separates bald heads (its P(bald) 0.07-0.28 on clearly bald men, under
    its drawing threshold of 0.5: none drawn); the detector over the hair
    region's cues reaches ROC AUC 0.98 out of fold on labelled men
    (docs/data.md). In place, returned: ``bald`` becomes the detector's
    probability, the drawn and decided flags are set, ``bald_by`` is
    ``"artist cues"`` (the retrieval then takes a style of the bald family,
    as for a bald head the app sets, :func:`bald_query`); H's own
    probability stays under ``bald_model_read``. Below the detector's
    threshold, where the reading's third item says the artist draws the
    top bare (its bare-top band, ``artist.hair.in_bare_top_band``: most
    heads this likely bald are bald or receding, out of fold), the same with
    ``bald_by`` :data:`BARE_TOP_BY` (session 28: shaved and bald heads the
    artist drew bald were drawn with a full head of hair; held out, bald
    heads drawn bald 3 -> 7 of 14, docs/hair.md "Bald heads"); not with
    ``bare_top`` False (a stream: from one identity refresh to the next a
    head near the band's floor went in and out of it, and the hairstyle
    with it: a shaved head's still photo, jittered, was drawn bald on 25 of
    150 frames). Neither under :data:`ARTIST_BALD_MIN_AGE` years (``age``:
    one the app set, else the attributes' own; not an age read under a
    face mask, :data:`MASKED_AGE_BY`, which reads adults young), nor on a
    face reported female (``decided["male"]`` False: a woman with pink hair
    was drawn bald, the detector's cues are the hair region's; of 227 heads
    labelled bald or receding by eye two were reported female, neither
    drawn bald), nor the band where H's own P(male) is under
    :data:`BARE_TOP_MIN_MALE`."""
    a = attributes
    if not _asked_of_the_top(a, hat, age):
        return a
    got = _artist_reading(a, "bald", evidence, ARTIST_BALD_GATE, hair_mask, extra=True)
    if got is None:
        return a
    prob, threshold, bare = got
    if prob >= threshold:
        _take_artist_flag(a, "bald", prob, "artist cues")
    elif bare and bare_top and float(a.get("male_model_read", _flag(a, "male"))) >= BARE_TOP_MIN_MALE:
        # (H's own P(male), not one read with a drawn beard: the floor was chosen on H's)
        _take_artist_flag(a, "bald", prob, BARE_TOP_BY)
    return a


#: the artist's bald detector draws no bald head where the age is under this
#: (the app's, else the hair stage's, :func:`fuse_age`; not one read under a
#: face mask): of the labelled bald heads the youngest is 22; a review found
#: babies with fine hair drawn bald (ages 1-5)
ARTIST_BALD_MIN_AGE = 16.0
#: ... and its bare-top band none where H's P(male) is under this: a woman
#: with her hair pulled back was drawn bald through it (a review, session 28)
BARE_TOP_MIN_MALE = 0.5


def _asked_of_the_top(a: dict, hat: bool | None, age) -> bool:
    """Whether the artist's detectors of the head's top (bald, receding) are
    asked of a face: no hat (``hat``: the decision the app set, else the
    model's), not under :data:`ARTIST_BALD_MIN_AGE` (``age``: one the app
    set, else :func:`trusted_age`), not a face reported female."""
    age = trusted_age(a) if age is None else age  # (an age the app set wins)
    return not ((a["drawn"]["headwear"] if hat is None else hat) or (is_real(age) and age < ARTIST_BALD_MIN_AGE)
                or reported_female(a))


#: ``receding_by`` where the artist's receding detector drew the hairline receding (:func:`add_artist_receding`)
RECEDING_BY = "artist cues"
#: the receding detector is asked only of a face whose H's own P(male) is at least this (helper-446's
#: survey of 7,001 photos, session 69: of the 283 it fired on, 15 were women the gender fusion reported
#: male, children read as adults or a hat missed, at H's P(male) 0.58-0.83 but one; at 0.8, 5 of them
#: left, the heads labelled receding the detector fired on 111 -> 88 of 186 (held out 12 -> 9 of 22) and
#: those labelled with hair 26 -> 16 (3 -> 1); drawn receding held out, ``eval``: 11 -> 8 of 22 and
#: 4 -> 2 of 409; at 0.5, the bare-top band's floor, all 15)
RECEDING_MIN_MALE = 0.8


def add_artist_receding(attributes: dict, evidence, hair_mask=None, hat: bool | None = None, age=None,
                        recent: dict | None = None, stream: bool = False) -> tuple[bool, dict | None]:
    """Whether the head's hairline is drawn receding, and a stream's memory
    of the detector's readings: ``(drawn, memory)``. The artist's receding
    detector (``evidence``: its (probability, drawing threshold), a function
    of the face's ``hair_mask`` returning that, or None;
    ``accessories.receding_evidence``) at its threshold, asked as
    :func:`add_artist_bald` asks the bald detector (H's P(bald) at least
    :data:`ARTIST_BALD_GATE`, no hat, not under
    :data:`ARTIST_BALD_MIN_AGE`, not a face reported female, nor one whose
    H's own P(male) is under :data:`RECEDING_MIN_MALE`) and only of a head
    not drawn bald (one those refuse is not drawn receding; H's P(bald)
    under the gate reads 0). In a ``stream``
    (``recent``: its memory so far, :func:`steady_readings`' dict, or None)
    the median of its last :data:`STEADY_READINGS` readings decides, with
    :data:`RECEDING_HYSTERESIS` either side of the threshold (it starts
    above it and stays until below it; a refused refresh or cues that are
    not numbers add no reading and leave that state): one reading at a time, a still of
    a man read 0.78-0.81 against a threshold of 0.78 flipped the style 10
    times in 20 s. Where it is drawn (in place): ``receding`` the
    probability (the median in a stream), ``receding_by``
    :data:`RECEDING_BY`; the hairstyle search then takes the nearest style
    of the receding family (:meth:`HairRetriever.query_family`). H has no
    receding output and its P(bald) barely tells a receding hairline (ROC
    AUC 0.81 on the 199 held-out men labelled by eye, the detector 0.89):
    of the 186 heads labelled receding the hybrid drew 1 receding (session 69)."""
    a = attributes
    prob, threshold, read = 0.0, None, False
    refused = (a["drawn"]["bald"] or not _asked_of_the_top(a, hat, age)
               # (H's own P(male) too: women with their hair pulled back that the gender fusion reported male
               # were drawn receding)
               or not float(a.get("male_model_read", _flag(a, "male"))) >= RECEDING_MIN_MALE)
    if not refused and evidence is not None:
        if _flag(a, "bald") >= ARTIST_BALD_GATE:
            got = _evidence(evidence, hair_mask)
            if got is not None:
                (prob, threshold), read = got, True
        else:
            read = True  # (H's P(bald) under the gate: a reading of 0)
    memory = None
    if stream:
        memory = dict(recent or {})
        if read:  # (a refused refresh, or cues that are not numbers: no reading, the memory as it was)
            memory["receding"] = (tuple(memory.get("receding", ())) + (float(prob),))[-STEADY_READINGS:]
        if threshold is not None:
            memory["receding_threshold"] = float(threshold)
        threshold = memory.get("receding_threshold")
        seen = memory.get("receding", ())
        prob = float(np.median(seen)) if seen else 0.0
        if threshold is not None:
            threshold += -RECEDING_HYSTERESIS if memory.get("receding_on") else RECEDING_HYSTERESIS
    drawn = not refused and threshold is not None and prob >= threshold  # (a gate refusing now: not drawn)
    if stream and not refused:  # (a refusal, a hat on for a moment, leaves the on state as it was)
        memory["receding_on"] = drawn
    if drawn:
        a["receding"], a["receding_by"] = float(prob), RECEDING_BY
    return drawn, memory


#: a stream's receding hairline starts where the median of its readings is this far above the detector's
#: threshold and stays until it is this far below (:func:`add_artist_receding`)
RECEDING_HYSTERESIS = 0.05


#: ``bald_by`` where the artist's bald detector read a head in its bare-top
#: band (:func:`add_artist_bald`)
BARE_TOP_BY = "artist cues: a bare top (the bald detector's band where most heads are bald or receding)"


def bald_query(attributes: dict) -> dict:
    """The retrieval's query for ``attributes``: where the artist's bald
    detector drew a bald head (:func:`add_artist_bald`), a bald head as the
    app would set it (the bald family; H's own bald score is no bank
    entry's), else ``attributes`` as they are."""
    if attributes.get("bald_by") not in ("artist cues", BARE_TOP_BY) or "bald" in attributes.get("set_by_app", ()):
        return attributes
    return {**attributes, "bald": 1.0, "set_by_app": [*attributes.get("set_by_app", ()), "bald"]}


def _beard_drawn(a: Mapping, th: float) -> tuple[bool, float, float]:
    """(whether :func:`merge` draws a beard, how far past its drawing
    threshold, its opacity): H's probability against ``th``, or the
    artist's detector's decision (:func:`add_artist_beard`) unless the app
    set the beard."""
    if _decided_elsewhere(a, "beard"):  # a detector's decision (a network's, the artist's), or none (a mask)
        on = bool(a["drawn"]["beard"])
        return on, float(a.get("beard_margin", 0.0)) if on else -1.0, float(a.get("beard_opacity", 0.7))
    pb = _flag(a, "beard")
    return pb >= th, pb - th, float(np.clip(0.6 + 0.8 * (pb - th), 0.6, 0.95))


def _decided_elsewhere(a: Mapping, name: str) -> bool:
    """Whether flag ``name`` is drawn as ``a["drawn"]`` says rather than by
    H's probability against the drawing threshold: a network decided it
    (:func:`add_facial_hair`, :func:`add_hat_network`), the artist's
    detector drew it (``"artist cues..."``: :func:`add_artist_beard`,
    :func:`add_artist_bald`), or something un-drew it (``<name>_by`` "not
    drawn: ...": a face mask over the lower face, a child, a face cut by
    the frame's edge); never what the app set."""
    by = str(a.get(f"{name}_by") or "")
    return (by in NETWORK_BY or by.startswith(("not drawn", "artist cues"))) and name not in a.get("set_by_app", ())


def _flag(attributes: Mapping, name: str) -> float:
    v = attributes.get(name)
    if v is None:
        return 0.0
    if isinstance(v, (bool, np.bool_)):
        return 1.0 if v else 0.0
    return float(v)


#: age lines: the age estimate (years; H's, with the artist's under 60,
#: :func:`fuse_age`) where they start and where they are at full width. H
#: compresses ages toward the middle (on held-out UTKFace: median estimate
#: 53 for people aged 60-75, 59 for 75+, 35 for 30-45), and reads older
#: women younger still (median 43 at 60-69, 52 at 70-79; men 57.5 and 70: a
#: read-only review, session 67), so the ramp sits low: from 50 to 65 until
#: session 67, when of the 996 held-out UTKFace photos' women aged 60 and
#: over 52% got any lines and 32% half or more (men 86% and 75%); from 45 to
#: 58, 70% and 51% (men 95% and 83%), at a cost of faint lines on 8% of
#: people aged 18-40 (2% before; half or more on 1%, 0 before) and some on
#: 42% of those aged 40-50 (18%; scratch ``/tmp/s67/lines.py``)
AGE_LINES_FROM = 45.0
AGE_LINES_FULL = 58.0
#: full widths (canonical units, end of the tapered stroke) of the age lines: 1.8 times the
#: first ones since session 60 (0.010, 0.008, 0.006: 1.3 px of a 256-px avatar, so faint that
#: a review's contact sheet found only faint lines on 24 of 24 people over 70); the schema
#: allows 0.02
AGE_LINE_WIDTHS = {"nasolabial_l": 0.018, "nasolabial_r": 0.018, "forehead_line": 0.014,
                   "undereye_l": 0.011, "undereye_r": 0.011}


def age_lines(params: np.ndarray, age: float | None) -> np.ndarray:
    """``params`` (629,) with the wrinkle lines (nasolabial folds, under-eye
    lines, the forehead line) drawn at least as wide as an estimated ``age``
    calls for: nothing below :data:`AGE_LINES_FROM`, full
    :data:`AGE_LINE_WIDTHS` from :data:`AGE_LINES_FULL`. Lines the face
    estimate already draws wider stay as they are; a copy is returned."""
    out = np.array(params, np.float32, copy=True)
    if age is None or not np.isfinite(age):
        return out
    t = float(np.clip((float(age) - AGE_LINES_FROM) / (AGE_LINES_FULL - AGE_LINES_FROM), 0.0, 1.0))
    if t <= 0.0:
        return out
    for name, width in AGE_LINE_WIDTHS.items():
        for end, w in (("w1", t * width), ("w0", 0.25 * t * width)):
            i = S.index(f"{name}.{end}")
            out[i] = max(out[i], w)
    return S.clip(out)


def onto_face(full, face_params) -> np.ndarray:
    """``full`` (a 629 vector whose hair :func:`merge` fitted to its own face
    outline) with its face slice replaced by ``face_params``' (a 629 vector
    or the face slice) and its hair geometry (:data:`GEOMETRY_INDEX`) moved
    from the old face's head frame (:func:`head_frame`) onto the new one's:
    in video the hair retrieved for one frame is reused for a second
    (``pipeline.hair.VIDEO_REFRESH_MS``) while the face is measured again on
    each frame the networks run on, and the skull top moved from under it
    (``d6.mp4`` after a gap: skull tops -0.84 to -0.90 under hair reaching
    -0.848, a bald crown showing above the hair). A drawn hat's band keeps
    its height above the brows (``headwear.place`` put it at the photo's)
    within that function's bounds, and the hair is tucked under the hat again
    (:func:`avatarizer.prior.hair_under_the_hat`). Glasses, beard and
    moustache stay as fitted (the renderer centres the lenses on the eyes).
    ``full`` itself when the face is the same."""
    full = np.asarray(full)
    face = np.asarray(face_params)
    target = np.array(full, np.float32, copy=True)
    target[S.FACE] = face[S.FACE] if face.shape == (S.PARAM_COUNT,) else face
    if np.array_equal(target[S.FACE], full[S.FACE]):
        return full
    old, new = head_frame(full), head_frame(target)
    out = np.array(full, np.float64, copy=True)
    out[GEOMETRY_INDEX] = _from_head(_to_head(out[GEOMETRY_INDEX], GEOMETRY_INDEX, old), GEOMETRY_INDEX, new)
    out[S.FACE] = target[S.FACE]
    if S.category(out, "headwear.type") > 0:
        band, brow = S.index("headwear.band_y"), P.brow_top(target)
        out[band] = float(np.clip(out[band] + brow - P.brow_top(full), new[1] + 0.12, brow - 0.04))
        P.hair_under_the_hat(out)
    return S.clip(out.astype(np.float32))


def merge(face_params, entry: HairEntry, hair_rgb, attributes: Mapping | None = None, *,
          thresholds: Mapping[str, float] | None = None, hat_shape: dict | None = None) -> np.ndarray:
    """A full avatar vector: the face from ``face_params``, the hair geometry of
    a bank ``entry`` fitted to the face outline's skull top and width, the
    hair colour ``hair_rgb`` (from the photo; None: :data:`FALLBACK_HAIR_RGB`
    moved into the class ``attributes["hair_colour_probs"]`` reads) and accessories from the
    ``attributes``:

    * glasses: ``glasses_type`` (0 none, 1 reading, 2 sunglasses; or
      ``glasses`` as a name) placed on the eyes, lens size from the eye size;
    * beard (``beard`` score >= its threshold, :data:`DRAW_THRESHOLDS` or
      ``thresholds``): a shape along the jaw, from the face outline's lower
      points to under the lower lip; ``moustache`` (or a beard): a stroke
      above the upper lip;
    * headwear (``headwear`` >= its threshold): ``headwear_type`` (1 a cap,
      2 a beanie, the default, 3 a brimmed hat, 4 a head scarf, 5 a turban,
      which the app sets: ``headwear_kind``), colour ``headwear_rgb``,
      placed where ``hat_shape`` (:func:`avatarizer.headwear.shape_cues` of
      the photo) shows it, else on the skull with its band at the hairline
      (:func:`avatarizer.headwear.place`);
    * optional ``beard_rgb``, ``frame_rgb``, ``clothes_rgb``.

    Without attributes the accessories of ``face_params`` are kept. The
    result is passed through ``schema.clip``.
    """
    p = np.array(S.as_params(face_params), np.float64)
    if hair_rgb is None:  # no hair colour read (sample_hair_rgb of too few hair pixels): the class reported
        hair_rgb = class_hair_colour((attributes or {}).get("hair_colour_probs"))
    rgb = np.clip(np.asarray(hair_rgb, np.float64).reshape(3), 0, 1)
    frame = head_frame(p)
    # hair geometry from the bank
    geo = _from_head(entry.geometry, GEOMETRY_INDEX, frame)
    p[GEOMETRY_INDEX] = geo
    p[S.index("hair_style.bank_id")] = entry.index
    # (a buzz cut in the colour read too: mixed 40% with the skin, the short dark hair of boys and girls read
    # as a pale grey or pink, 6 of the 27 training photos drawn buzz in their hair colour labelled by eye,
    # now 21; the photo's colour of a real buzz cut already shows the scalp through; session 70)
    P.set_hair_rgb(p, rgb)
    if attributes is None:
        return S.clip(p)
    a = attributes
    th = {**DRAW_THRESHOLDS, **(thresholds or {})}
    # glasses on the eyes
    gtype = a.get("glasses_type")
    if gtype is None and isinstance(a.get("glasses"), str):
        gtype = GLASSES.index(a["glasses"]) if a["glasses"] in GLASSES else 0
    if gtype is not None:
        gtype = int(gtype)
        p[S.index("glasses.type")] = gtype
        if gtype > 0:
            el, er = S.points(p, "eye_l_upper"), S.points(p, "eye_r_upper")
            half = 0.25 * (abs(el[4, 0] - el[0, 0]) + abs(er[4, 0] - er[0, 0]))  # half eye width, as drawn
            # the lenses' size against the eye as the artist measures it (artist.accessories.lens_size,
            # of the photo's eye: the drawn eye is the style's eye_scale times that)
            p[S.index("glasses.lens_w")], p[S.index("glasses.lens_h")] = lens_size(half, LENS_ASPECT,
                                                                                   ArtistStyle.eye_scale)
            p[S.index("glasses.roundness")] = 0.5
            p[S.index("glasses.frame_width")] = 0.012 if gtype == 2 else 0.009
            P.set_rgb(p, "glasses", a.get("frame_rgb", _GLASSES_FRAME), prefix="frame_")
            if gtype == 2:
                P.set_rgb(p, "glasses", (0.08, 0.09, 0.1), prefix="lens_")
                p[S.index("glasses.lens_opacity")] = 0.9
            else:
                P.set_rgb(p, "glasses", (0.75, 0.85, 0.95), prefix="lens_")
                p[S.index("glasses.lens_opacity")] = 0.15
    # facial hair following the jaw and the lips
    face = S.points(p, "face").astype(np.float64)
    beard_rgb = np.asarray(a.get("beard_rgb", rgb * 0.9), np.float64)
    beard_on, beard_margin, opacity = _beard_drawn(a, th["beard"]) if "beard" in a else (False, -1.0, 0.0)
    if "beard" in a:
        if beard_on:
            lo = S.points(p, "lip_lower_outer").astype(np.float64)
            S.set_points(p, "beard", P.goatee_outline(lo, face[0, 1]) if a.get("beard_style") == "goatee"
                         else P.beard_outline(face, lo[2], face[0, 1]))
            p[S.index("beard.opacity")] = opacity
            P.set_rgb(p, "beard", beard_rgb)
        else:
            p[S.index("beard.opacity")] = 0.0
    if "moustache" in a or "beard" in a:
        pm = _flag(a, "moustache") - th["moustache"]
        if _decided_elsewhere(a, "moustache"):
            pm = float(a.get("moustache_margin", 0.0)) if a["drawn"]["moustache"] else -1.0
        if "moustache" not in a.get("set_by_app", ()):  # a beard is drawn with its moustache, unless set
            pm = max(pm, beard_margin)
        pm += 0.5
        if pm >= 0.5:
            uo = S.points(p, "lip_upper_outer").astype(np.float64)
            ms = np.array([uo[0] + (-0.02, 0.0), uo[1] + (0, -0.03), uo[3] + (0, -0.045), uo[5] + (0, -0.03),
                           uo[6] + (0.02, 0.0)])
            S.set_points(p, "moustache", ms)
            p[S.index("moustache.w0")] = 0.01
            p[S.index("moustache.w1")] = np.clip(0.03 + 0.03 * (pm - 0.5), 0.03, 0.045)
            P.set_rgb(p, "moustache", beard_rgb * 0.95)
        else:
            p[S.index("moustache.w0")] = 0.0
            p[S.index("moustache.w1")] = 0.0
    # headwear on the skull
    if "headwear" in a:
        if a["drawn"]["headwear"] if _decided_elsewhere(a, "headwear") else _flag(a, "headwear") >= th["headwear"]:
            from . import headwear as HW

            P.set_rgb(p, "headwear", a.get("headwear_rgb", _HEADWEAR_RGB))
            HW.place(p, hat_shape, int(a.get("headwear_type", HW.DEFAULT_KIND)))
        else:
            p[S.index("headwear.type")] = 0
    if "clothes_rgb" in a:
        P.set_rgb(p, "clothes", a["clothes_rgb"])
    return S.clip(p)
