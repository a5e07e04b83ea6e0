"""The hat as the photo shows it: its kind (a cap, a beanie, a brimmed hat)
and where it sits on the head (docs/hair.md, "Headwear").

Both the auto-artist and the shipped hybrid decided *whether* a hat is there
and drew every hat as a beanie perched on the skull's top, over a hairline
the photo hides. Here the person mask of the aligned crop (the hair mask: the
person outside the face oval) and the crop's colours say:

* **where the hat meets the forehead** (its band): going up the forehead's
  mid-line from the brows, the first rows that do not read as skin (a
  fringe under the hat ends it early);
* **how high and how wide it is**: the mask's top over the mid-line and its
  half-width at a few heights between the top and the band, in units of the
  head's half-width (the cheeks' landmarks 234 and 454);
* **its kind**, from those shape cues and the shade on the forehead (a peak
  or a brim throws one): a multinomial logistic model fitted on hats
  labelled by eye (``avatarizer-export hats``) over those cues and a coarse
  picture of the outline and horizontal edges above the brows
  (:func:`pixel_features`), shipped as ``data/headwear_kinds.json``; a cap
  or a brimmed hat is drawn only where its probability clears a threshold
  chosen for precision, else a beanie (also without that file, as before).

:func:`place` writes the measured band, crown height and width (and a brimmed
hat's brim) into an avatar vector whose ``headwear.type`` is set.
"""
from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

import numpy as np

from . import landmarks as L
from . import regionnet as RN
from . import schema as S
from .artist.photo import at_size, float_rgb, mask01, masked, to_lab
from .artist.stats import median

#: the hat network (:mod:`avatarizer.regionnet`): rows 0-64 of the aligned 128-px crop (the top of the
#: head), P(headwear); ``avatarizer-export hat-net`` fits it, the hybrid decides the hat with it
#: (:func:`avatarizer.hair.add_hat_network`)
NETWORK = RN.Spec("headwear_net", (0, 64, 0, 128), ("headwear",), fallback="hats are decided by the attribute model",
                  title="hat")


def load_network(folder=None) -> "RN.RegionNetwork | None":
    """The hat network in ``folder`` (default the SDK's data folder), loaded
    once; None when its files are missing or unusable (a warning says why)."""
    return RN.load(NETWORK, folder)


#: Where the top of the head (:data:`BLACK_TOP_BOX` of the aligned crop) is this share or more pure black (every
#: channel at most :data:`BLACK_LEVEL`), no hat is read there (:func:`black_top`): a photo rotated or padded
#: with black (UTKFace's aligned chips, letterboxed frames) or a backdrop clipped to black shows nothing of the
#: head's top, and the networks read the black as a beanie. Held out (session 65, scratch
#: ``/tmp/s65/blacktop.py``): of the 14 hats drawn on the 997 held-out UTKFace chips, 7 were invented (all under
#: black padding: shares 0.88, 0.70, 0.31, 0.99, 0.00, 0.91, 0.34) and 7 real (shares 0 each); of the 243
#: ``ffhq128`` photos labelled by eye with a hat the largest share was 0.40 (ffhq-0171, a real hat: lost at
#: this threshold; the next 0.13), of 600 without one 0.38
BLACK_TOP_SHARE = 0.3
#: the box read (canonical units x0, y0, x1, y1: above the brows, within the head's width)
BLACK_TOP_BOX = (-0.56, -0.94, 0.56, -0.31)
BLACK_LEVEL = 3
#: ``headwear_by`` where :func:`black_top` took a hat away
BLACK_TOP_BY = "not drawn: the top of the head is pure black (padding or a clipped backdrop)"


def black_top(crop) -> float:
    """The share of :data:`BLACK_TOP_BOX` of an aligned crop (``size``²×3
    uint8) that is pure black (every channel at most :data:`BLACK_LEVEL`)."""
    c = np.asarray(crop)
    size = c.shape[0]
    x0, y0, x1, y1 = (int(round((v + 1.0) * 0.5 * size)) for v in BLACK_TOP_BOX)
    band = c[max(0, y0):y1, max(0, x0):x1]
    return float((band.max(axis=2) <= BLACK_LEVEL).mean()) if band.size else 0.0


#: the hat network's P(headwear) fused with H's (``data/headwear_fusion.json``,
#: ``avatarizer-export hat-net --fusion``, a ``make models`` step after H ships):
#: a logistic model over the two logits, used only with the H file and the
#: network it was fitted with (their SHA-256 in the file)
FUSION_NAME = "headwear_fusion.json"
FUSION_FORMAT = 1
#: probabilities are clipped to [P_FLOOR, 1 - P_FLOOR] before their logits are taken
P_FLOOR = 1e-4
#: the largest weight (and the inverse of the smallest scale) a fusion file may hold
MAX_WEIGHT = 1e6


def fusion_features(p_network: float, p_model: float) -> np.ndarray:
    """(2,) the logits of the hat network's P(headwear) and H's (each
    clipped to [:data:`P_FLOOR`, 1 - :data:`P_FLOOR`]; NaN stays NaN)."""
    p = np.clip(np.array([p_network, p_model], np.float64), P_FLOOR, 1.0 - P_FLOOR)
    return np.log(p / (1.0 - p))


class HatFusion:
    """The hat decision from the hat network and H together: ``mean``,
    ``scale``, ``W`` (2 x 2), ``b`` (2,) of a standardised logistic model
    over :func:`fusion_features` (``avatarizer_export.detectors.fit_logistic``'s
    form, read as the artist's detectors are), ``thresholds``
    (``draw``: drawn at or above, chosen out of fold for precision;
    ``decision``: the best balanced accuracy), and the ``attributes_sha256``
    and ``network_sha256`` it was fitted with."""

    def __init__(self, doc) -> None:
        """ValueError when ``doc`` (the parsed file) is not a valid fusion file."""
        try:
            if isinstance(doc.get("format"), bool) or doc.get("format") != FUSION_FORMAT:
                raise ValueError(f"format {doc.get('format')!r:.40}, this SDK reads {FUSION_FORMAT}")
            m, th = doc["model"], doc["thresholds"]
            arrays = []
            for k in ("mean", "scale", "W", "b"):
                a = np.asarray(m[k])
                if a.dtype.kind not in "iuf":
                    raise ValueError(f"{k} holds something other than numbers")
                arrays.append(a.astype(np.float64))
            self.mean, self.scale, self.W, self.b = arrays
            self.thresholds = {k: RN.unit_number(th[k], f"threshold {k}") for k in ("draw", "decision")}
            self.attributes_sha256, self.network_sha256 = (str(doc[k]) for k in ("attributes_sha256",
                                                                                  "network_sha256"))
        except (KeyError, TypeError, AttributeError) as exc:
            raise ValueError(f"not a hat fusion file ({exc!r:.80})") from None
        if self.mean.shape != (2,) or self.scale.shape != (2,) or self.W.shape != (2, 2) or self.b.shape != (2,):
            raise ValueError("wrong array shapes")
        # (bounded: the fused logit stays finite for any probabilities, so a crafted file cannot make it NaN)
        if not all(np.isfinite(a).all() and (np.abs(a) <= MAX_WEIGHT).all() for a in (self.mean, self.scale, self.W,
                                                                                       self.b)) \
                or (self.scale < 1.0 / MAX_WEIGHT).any():
            raise ValueError(f"weights that are not finite or beyond {MAX_WEIGHT:g}, or scales under {1 / MAX_WEIGHT:g}")

    @classmethod
    def load(cls, attributes_sha256: str | None, network_sha256: str | None,
             folder: str | Path | None = None) -> "HatFusion | None":
        """The fusion in ``folder`` (default the SDK's data folder) fitted
        with the H file and the hat network of these checksums; None when
        the file is missing or was fitted with another H or network (the
        network alone decides then), and also, with a warning, when it is
        there but unusable."""
        import warnings

        path = Path(folder if folder is not None else RN.DATA) / FUSION_NAME
        if not path.is_file() or attributes_sha256 is None or network_sha256 is None:
            return None
        try:
            if path.stat().st_size > RN.MAX_JSON:
                raise ValueError(f"larger than {RN.MAX_JSON} bytes")
            doc = json.loads(path.read_text(encoding="utf-8"))
            if not isinstance(doc, dict):
                raise ValueError("not a JSON object")
            fusion = cls(doc)
        except (OSError, ValueError, RecursionError) as exc:  # (RecursionError: JSON nested too deep)
            warnings.warn(f"{path} is not used ({exc}); the hat network alone decides hats", RuntimeWarning,
                          stacklevel=2)
            return None
        if fusion.attributes_sha256 != str(attributes_sha256) or fusion.network_sha256 != str(network_sha256):
            return None  # fitted on another H's or another network's probabilities: not what it learned
        return fusion

    def probability(self, p_network: float, p_model: float) -> float:
        """P(headwear) from the hat network's probability and H's: the
        softmax of ``W @ z + b``, ``z`` the standardised
        :func:`fusion_features` (as the artist's logistic detectors are read)."""
        z = (fusion_features(p_network, p_model) - self.mean) / self.scale
        lg = self.W @ z + self.b
        e = np.exp(lg - lg.max())
        return float(np.clip(e[1] / e.sum(), 0.0, 1.0))


#: ``headwear.type`` values, by name (the renderer draws 1 a cap with a peak,
#: 2 a beanie with a cuff, 3 a hat with a brim all round, 4 a head scarf:
#: a headscarf, hijab or hood that covers the hair and the ears and frames
#: the face, its ``headwear.brim`` the drape below the chin; 5 a turban: a
#: wrapped dome over the crown, its front edge dipping to a point over the
#: brows, the ears shown, all the hair hidden; 4 and 5 since schema 1.1.0)
KINDS = ("none", "cap", "beanie", "brimmed", "scarf", "turban")
#: the classes the fitted model tells apart: the first three kinds and any
#: other covering (a scarf, a hood, a turban, a helmet), drawn as the beanie
#: (a scarf or a turban is drawn where the app says so:
#: ``Options.attributes["headwear_kind"]``)
MODEL_KINDS = KINDS[1:4] + ("other",)
#: a head scarf's drape below the chin (``headwear.brim`` of kind 4) where :func:`place` puts one
SCARF_DRAPE = 0.3
#: the kind drawn when no fitted model is at hand (what was drawn before)
DEFAULT_KIND = 2
#: the cues, in the order of the fitted model's inputs
CUES = ("top", "band", "w_band", "w_mid", "w_top", "w_max", "shade", "hat_dl", "hat_chroma", "top_cut")
_DATA = Path(__file__).resolve().with_name("data") / "headwear_kinds.json"
#: a forehead pixel reads as skin within these of the cheeks' colour: its
#: a*b* distance over SKIN_AB plus its L* difference over SKIN_DL under 1
SKIN_AB, SKIN_DL = 13.0, 40.0
_BROW_TOPS = tuple(L.BROW_OUTLINE[0][:5]) + tuple(L.BROW_OUTLINE[1][:5])


def _grid(size: int) -> np.ndarray:
    return (np.arange(size) + 0.5) * 2.0 / size - 1.0


def shape_cues(crop, hair_mask, landmarks, valid=None, skin_rgb=None) -> dict | None:
    """The hat's shape cues (:data:`CUES`) and its measured placement, or
    None when the mask shows nothing above the forehead. ``crop``: the
    aligned S×S RGB crop; ``hair_mask``: its person-minus-face mask (any
    square size); ``landmarks``: canonical landmarks ([-1, 1], y down);
    ``skin_rgb``: the face colour (RGB in [0, 1]; else the cheeks' median).

    Heights are in units of the face's height (landmark 10 to the chin,
    152), up from landmark 10; widths in units of the head's half-width."""
    rgb = float_rgb(crop)
    size = rgb.shape[0]
    m = at_size(mask01(hair_mask), size)
    ok = np.ones((size, size), bool) if valid is None else np.asarray(valid, bool)
    if ok.ndim != 2 or ok.shape[0] != ok.shape[1]:
        raise ValueError(f"valid must be a square S×S array, got shape {ok.shape}")
    ok = at_size(ok, size)  # resampled as the mask is
    lm = np.asarray(landmarks, np.float64)[:, :2]
    if lm.shape[0] < L.NUM_LANDMARKS or not np.isfinite(lm).all():
        return None
    g = _grid(size)
    cx = 0.5 * (lm[234, 0] + lm[454, 0])
    hw = max(0.5 * abs(lm[454, 0] - lm[234, 0]), 0.2)
    y10 = float(lm[10, 1])
    fh = max(float(lm[L.CHIN_BOTTOM, 1]) - y10, 0.3)
    brow = float(lm[list(_BROW_TOPS), 1].min())
    # L*a*b* of the rows above the brows and landmark 10 only: every colour read below is of them
    # (the forehead, the band, the hat; the widths read the mask)
    nb = int(np.clip(np.searchsorted(g, max(brow, y10)), 1, size))
    lab, gb, okb = to_lab(rgb[:nb]), g[:nb], ok[:nb]
    if skin_rgb is None:
        cheeks = np.concatenate([lm[list(c)] for c in L.CHEEK_PATCH])
        px = np.clip(((cheeks + 1.0) * 0.5 * size).astype(int), 0, size - 1)
        skin = median(to_lab(rgb[px[:, 1], px[:, 0]]), 0)
    else:
        skin = to_lab(np.asarray(skin_rgb, np.float64).reshape(3))
    mid = np.abs(g - cx) < 0.35 * hw
    rows_ok = ok[:, mid].mean(1) > 0.6
    person = (m & ok)[:, mid].mean(1) > 0.5
    above = g < y10 - 0.02
    r = np.flatnonzero(person & rows_ok & above)
    if len(r) < 3:
        return None
    r0 = int(r[0])
    top_y = float(g[r0])
    top_cut = float(r0 == 0 or not rows_ok[r0 - 1])
    # the band: going up the forehead's mid-line from the brows, the first
    # rows that are not skin (skin-coloured at about its lightness: a peak's
    # or a brim's shade stays skin; a fringe under the hat ends it early)
    skinlike = np.hypot(lab[..., 1] - skin[1], lab[..., 2] - skin[2]) / SKIN_AB \
        + np.abs(lab[..., 0] - skin[0]) / SKIN_DL < 1.0
    sk_rows = (skinlike & okb)[:, mid].mean(1)
    band_y = top_y
    start = min(int(np.searchsorted(g, brow - 0.03)) - 1, size - 2)
    for i in range(start, r0, -1):
        if sk_rows[i] < 0.5 and sk_rows[i - 1] < 0.5:
            band_y = float(g[i + 1]) - 1.0 / size
            break

    centre = np.abs(g - cx) < 0.5 * hw
    c = min(max(int(np.searchsorted(g, cx)), 0), size - 1)  # the centre column

    def half_width(y: float) -> float:
        i = min(max(int(np.searchsorted(g, y)) - 1, 0), size - 1)  # the last row above y
        row = (m[i] | centre) & ok[i]
        # the run of mask pixels through the centre column: from the first column after the last gap left
        # of it to the last column before the first gap right of it (the centre column counted either way)
        gaps = np.flatnonzero(~row[:c])
        left = int(gaps[-1]) + 1 if len(gaps) else 0
        gaps = np.flatnonzero(~row[c + 1:])
        right = c + int(gaps[0]) if len(gaps) else size - 1
        return float(max(cx - g[left], g[right] - cx)) / hw

    # widths above the face oval (it is not in the mask), the band's row or higher
    low = min(band_y, y10 - 0.04)
    widths = [half_width(y) for y in (low, 0.5 * (low + top_y), top_y + 0.04)]
    w_max = max(half_width(y) for y in np.linspace(top_y + 0.02, low, 8))
    # shade on the forehead under the band (a peak's or a brim's shadow), against the skin
    fore = (gb[:, None] > band_y + 0.02) & (gb[:, None] < brow - 0.01) & (np.abs(g[None, :] - cx) < 0.5 * hw) & okb
    shade = float(median(masked(lab, fore)[:, 0]) - skin[0]) if np.count_nonzero(fore) >= 6 else 0.0
    hat = m[:nb] & okb & (gb[:, None] < band_y - 0.03) & (np.abs(g[None, :] - cx) < 1.2 * hw)
    if np.count_nonzero(hat) >= 12:
        hl = median(masked(lab, hat), 0)
        hat_dl, hat_chroma = float(hl[0] - skin[0]), float(np.hypot(hl[1], hl[2]))
    else:
        hat_dl = hat_chroma = 0.0
    cues = {"top": (y10 - top_y) / fh, "band": (y10 - band_y) / fh, "w_band": widths[0], "w_mid": widths[1],
            "w_top": widths[2], "w_max": w_max, "shade": shade, "hat_dl": hat_dl, "hat_chroma": hat_chroma,
            "top_cut": top_cut}
    return {"cues": cues, "pixels": pixel_features(rgb, m), "top_y": top_y, "band_y": band_y, "brow_y": brow,
            "chin_y": float(lm[L.CHIN_BOTTOM, 1])}


#: the pixel block's grid (columns, rows) over the crop's top (:func:`pixel_features`)
PIXEL_GRID = (16, 8)
#: the pixel block's length: the mask's and the edges' grids
PIXEL_COUNT = 2 * PIXEL_GRID[0] * PIXEL_GRID[1]


def pixel_features(rgb: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """The outline and the horizontal edges above the brows, coarsely: the
    person mask over the crop's top 7/16 and the grey level's vertical
    gradient over its top half, each averaged on a :data:`PIXEL_GRID` grid
    (256 values; a brim and a peak are wide horizontal shapes and edges)."""
    import cv2

    size = rgb.shape[0]
    m = np.ascontiguousarray(mask[: size * 7 // 16], np.float32)
    grey = rgb[..., :3] @ np.array([0.299, 0.587, 0.114], np.float32)
    edges = np.ascontiguousarray(np.abs(np.diff(grey[: size // 2], axis=0)), np.float32)
    return np.concatenate([cv2.resize(a, PIXEL_GRID, interpolation=cv2.INTER_AREA).ravel() for a in (m, edges)]
                          ).astype(np.float64)


def cue_vector(shape: dict) -> np.ndarray:
    return np.array([shape["cues"][k] for k in CUES], np.float64)


@lru_cache(maxsize=2)
def _model(path: str):
    """The hat-kind model at ``path``; None when the file is missing, and
    also, with a warning, when it is there but unusable (a cut or foreign
    file was dropped silently: hats then took the default kind)."""
    p = Path(path)
    if not p.is_file():
        return None
    try:
        return _read_model(p)
    except (ValueError, KeyError, TypeError, AttributeError, RecursionError, OSError) as exc:
        import warnings

        warnings.warn(f"{p} is not used ({type(exc).__name__}: {exc}); hats are drawn as the default kind",
                      RuntimeWarning, stacklevel=2)
        return None


def _read_model(p: Path) -> dict:
    """:func:`_model`'s reading of the file (ValueError where it does not
    fit together)."""
    doc = json.loads(p.read_text(encoding="utf-8"))
    if not isinstance(doc, dict) or tuple(doc.get("cues", ())) != CUES \
            or tuple(doc.get("kinds", ())) != MODEL_KINDS:
        raise ValueError("not a hat-kind model of these cues and kinds")
    mdl = {k: np.asarray(doc[k], np.float64) for k in ("pixel_mean", "pixel_scale", "pixel_basis",
                                                         "mean", "scale", "w", "b")}
    mdl["thresholds"] = {k: float(doc["thresholds"][k]) for k in ("cap", "brimmed")}
    if not all(np.isfinite(a).all() for a in mdl.values() if isinstance(a, np.ndarray)) \
            or (mdl["scale"] <= 0).any() or (mdl["pixel_scale"] <= 0).any() \
            or np.isnan(list(mdl["thresholds"].values())).any():
        raise ValueError("non-finite weights, non-positive scales or a NaN threshold")
    q = mdl["pixel_basis"].shape[1] if mdl["pixel_basis"].ndim == 2 else -1
    n = len(CUES) + q
    if mdl["pixel_basis"].shape != (len(mdl["pixel_mean"]), q) or mdl["w"].shape != (n, len(MODEL_KINDS)) \
            or len(mdl["mean"]) != n or len(mdl["scale"]) != n or len(mdl["b"]) != len(MODEL_KINDS):
        raise ValueError("weights of shapes that do not fit together")
    return mdl


def model_inputs(shape: dict, mdl: dict) -> np.ndarray:
    """The logistic model's inputs: the pixel block's principal components, then the cues."""
    px = (shape["pixels"] - mdl["pixel_mean"]) / mdl["pixel_scale"]
    return np.concatenate([px @ mdl["pixel_basis"], cue_vector(shape)])


def kind_probabilities(shape: dict | None, path: Path | None = None) -> np.ndarray | None:
    """P(cap), P(beanie), P(brimmed), P(other covering) of a measured hat
    (:data:`MODEL_KINDS`), or None without a
    fitted model (``data/headwear_kinds.json``, or one of another layout) or
    a measurement."""
    mdl = _model(str(path or _DATA))
    if mdl is None or shape is None or len(shape["pixels"]) != len(mdl["pixel_mean"]):
        return None
    x = (model_inputs(shape, mdl) - mdl["mean"]) / mdl["scale"]
    if not np.isfinite(x).all():
        return None
    z = x @ mdl["w"] + mdl["b"]
    if not np.isfinite(z).all():
        return None
    z = np.exp(z - z.max())
    return z / z.sum()


def decide(probs: np.ndarray, thresholds: dict) -> int:
    """``headwear.type`` from the kind probabilities: a brimmed hat or a cap
    only when its probability clears its threshold (chosen on held-out
    folds for precision: a brim drawn on a beanie is worse than a beanie
    drawn for a brim), a brimmed hat first; else the beanie."""
    if probs[2] >= thresholds["brimmed"] and probs[2] >= probs[0]:
        return 3
    if probs[0] >= thresholds["cap"]:
        return 1
    return DEFAULT_KIND


def _decided(shape: dict | None, path: Path | None) -> tuple[int, np.ndarray | None]:
    """(``headwear.type`` as :func:`decide` reads the model, its
    probabilities), or (:data:`DEFAULT_KIND`, None) without a model or a
    measurement."""
    pr = kind_probabilities(shape, path)
    return (DEFAULT_KIND, None) if pr is None else (decide(pr, _model(str(path or _DATA))["thresholds"]), pr)


def read_kind(attributes: dict, shape: dict | None, path: Path | None = None) -> None:
    """Sets, in place, a decoded attributes dict's ``headwear_type`` (what
    :func:`avatarizer.hair.merge` draws) and ``headwear_kind_probs`` (what
    ``Avatar.attributes["headwear"]`` reports) from a measured hat; leaves
    them unset without a fitted model or a measurement (a beanie is drawn)."""
    kind, pr = _decided(shape, path)
    if pr is not None:
        attributes["headwear_type"] = kind
        attributes["headwear_kind_probs"] = {k: float(v) for k, v in zip(MODEL_KINDS, pr)}


def kind_of(shape: dict | None, path: Path | None = None) -> int:
    """``headwear.type`` of a measured hat as :func:`decide` reads the model,
    else :data:`DEFAULT_KIND`."""
    return _decided(shape, path)[0]


#: the lowest crown a hat is drawn with (``headwear.crown``; :func:`place`)
MIN_CROWN = 0.05


def place(p: np.ndarray, shape: dict | None, kind: int) -> None:
    """Sets, in place, ``p``'s hat (``headwear.type`` = ``kind``, 1-5) where
    the photo shows it (``shape``: :func:`shape_cues`): the band at the
    height above the brows it has in the photo (in units of brow-to-chin),
    the crown up to the photo's top of the hat (no lower than the
    renderer's default where the crop cuts the hat off), the width of the
    hat at the band and, for a brimmed hat, the brim's reach. Without a
    ``shape`` the hat sits where it was drawn before (band at the skull's
    top + 0.62 half-widths, default crown, width and brim). A scarf's drape
    is :data:`SCARF_DRAPE` (the renderer draws no hair and no ears under
    it). The hair is then tucked under the hat (``prior.hair_under_the_hat``)."""
    from . import prior as P

    face = S.points(p, "face").astype(np.float64)
    skull_top, hw = float(face[7, 1]), max(0.5 * abs(face[5, 0] - face[9, 0]), 0.15)
    p[S.index("headwear.type")] = kind
    band, crown, width, brim = skull_top + 0.62 * hw, 0.2, 1.1, 0.2
    if shape is not None:
        cues = shape["cues"]
        brow_av, chin_av = P.brow_top(p), float(face[0, 1])
        unit_photo = max(shape["chin_y"] - shape["brow_y"], 0.3)
        unit_av = max(chin_av - brow_av, 0.3)
        to_av = lambda y: brow_av - (shape["brow_y"] - y) / unit_photo * unit_av  # noqa: E731
        band = float(np.clip(to_av(shape["band_y"]), skull_top + 0.12, brow_av - 0.04))
        ytop = to_av(shape["top_y"])
        crown = (skull_top - P.HAT_GAP - ytop) / P.crown_lift(kind)
        if cues["top_cut"]:
            crown = max(crown, 0.2)
        crown = float(np.clip(crown, MIN_CROWN, 0.6))
        width = float(np.clip(cues["w_band"], 1.0, 1.3)) if kind != 3 else 1.1
        if kind == 3:  # brim half-width = the crown's + brim * 0.8 + 0.05 (avz.c)
            brim = float(np.clip((cues["w_max"] * hw - hw * width - 0.05) / 0.8, 0.1, 0.5))
    if kind == 4:
        brim = SCARF_DRAPE
    i = S.index("headwear.band_y")
    p[i] = float(np.clip(band, S.LO[i], S.HI[i]))
    p[S.index("headwear.crown")] = crown
    p[S.index("headwear.width")] = width
    p[S.index("headwear.brim")] = brim
    P.hair_under_the_hat(p)
