"""``avatarizer-export hats``: fit the hat kind model (``avatarizer.headwear``).

What a hat is (a cap with a peak, a beanie, a hat with a brim all round)
decides how the avatar draws it; the SDK drew every hat as a beanie. The
labels are by eye (``labels/headwear_kind_by_eye.jsonl``, batch ``hats``:
two labellers, kept where they agree); the cues are the person mask's shape
above the forehead and the shade under the band
(:func:`avatarizer.headwear.shape_cues`), measured on the aligned 128-px
crop the SDK's hair stage reads. The model is a class-balanced multinomial
logistic regression (:func:`avatarizer_export.detectors.fit_logistic`) over
the three kinds, fitted on the training split, with a fourth class ``other``
(scarves, hoods, helmets: drawn as the beanie, and counted against a cap's
or a brim's precision when the thresholds are chosen); photos labelled
``none`` are not fitted (a hat is drawn only where the attribute model
decides one; this model only says which kind).
The held-out split (:func:`avatarizer_export.data.is_heldout`) is scored
once for the report, beside 5-fold out-of-fold scores of the training
photos and the accuracy of always drawing a beanie.

    avatarizer-export hats [--shared ../shared]   # writes sdk/avatarizer/data/headwear_kinds.json
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from . import data
from .data import is_heldout
from .onnx_util import staged
from .paths import ROOT, shared_dir

OUT = ROOT / "sdk" / "avatarizer" / "data" / "headwear_kinds.json"
#: the hat kinds' label file, under :data:`avatarizer_export.data.EYE_LABELS` (read when used)
LABELS_NAME = "headwear_kind_by_eye.jsonl"
#: L2 weight of the logistic model (standardised inputs), the principal
#: components of the pixel block it reads (:func:`avatarizer.headwear.pixel_features`)
#: and the precision a cap or a brimmed hat is drawn at (out of fold)
L2, PIXEL_COMPONENTS, PRECISION = 10.0, 16, 0.6


def kind_labels(path: Path | None = None) -> dict[str, int]:
    """``{"FOLDER/NAME": class}`` of the labelled head coverings, the index
    in :data:`avatarizer.headwear.MODEL_KINDS` (0 cap, 1 beanie, 2 brimmed,
    3 other); ``none`` is left out."""
    from avatarizer.headwear import MODEL_KINDS

    out = {}
    for line in Path(path or data.EYE_LABELS / LABELS_NAME).read_text(encoding="utf-8").splitlines():
        if line.strip():
            rec = json.loads(line)
            if rec.get("hat") in MODEL_KINDS:
                out[rec["file"]] = MODEL_KINDS.index(rec["hat"])
    return out


def shapes(faces: Path, keys: list[str], progress: bool = True) -> tuple[list[str], list[dict], list[dict]]:
    """(the keys measured, their hats' :func:`avatarizer.headwear.shape_cues`,
    those of their mirror images): each photo aligned as the SDK's image
    mode does, measured on the 128-px crop and person mask."""
    from tqdm import tqdm

    from avatarizer import headwear as HW
    from avatarizer import landmarks as LM
    from avatarizer.align import AlignOptions, FaceAligner
    from avatarizer.artist import crop_valid_mask
    from avatarizer.imageio import load_image

    mirror = LM.mean_face().mirror
    names, out, flipped = [], [], []
    with FaceAligner(AlignOptions(mode="image", max_faces=1, segmentation=True)) as al:
        for k in tqdm(keys, desc="hat cues", disable=not progress):
            face = al.align(load_image(Path(faces) / k))
            mask = None if face is None else face.hair_mask(128)
            if mask is None:
                continue
            crop, lm, valid = face.crop(128), np.asarray(face.canonical, np.float64)[:, :2], crop_valid_mask(face, 128)
            shape = HW.shape_cues(crop, mask, lm, valid)
            lm_m = lm[mirror] * (-1.0, 1.0)
            shape_m = HW.shape_cues(crop[:, ::-1], np.asarray(mask)[:, ::-1], lm_m, np.asarray(valid)[:, ::-1])
            if shape is None or shape_m is None:
                continue
            names.append(k)
            out.append(shape)
            flipped.append(shape_m)
    return names, out, flipped


def _threshold(prob: np.ndarray, hit: np.ndarray, precision: float, min_rows: int = 5) -> float:
    """The lowest probability (steps of 0.01 from 0.34) from which the rows
    at or above it are ``hit`` in ``precision`` of cases; inf when none is."""
    for t in np.round(np.arange(0.34, 1.0, 0.01), 2):
        s = prob >= t
        if s.sum() >= min_rows and hit[s].mean() >= precision:
            return float(t)
    return float("inf")


def _confusion(y: np.ndarray, drawn: np.ndarray) -> dict:
    """Rows: the class by eye (cap, beanie, brimmed, other); columns: the kind
    drawn (cap, beanie, brimmed). Accuracy over the three kinds (an other
    covering has no right kind), and how many other coverings got a brim."""
    m = np.zeros((4, 3), int)
    for t, p in zip(y, drawn):
        m[t, p] += 1
    kinds = y < 3
    recall = [m[c, c] / max(m[c].sum(), 1) for c in range(3) if m[c].sum()]
    n = int(kinds.sum())
    return {"kinds": n, "accuracy": round(float(np.mean(y[kinds] == drawn[kinds])), 3) if n else None,
            "balanced_accuracy": round(float(np.mean(recall)), 3) if recall else None,
            "beanie_always": round(float(np.mean(y[kinds] == 1)), 3) if n else None,
            "brims on other coverings": f"{int(m[3, 2])}/{int(m[3].sum())}",
            "confusion (rows: by eye cap, beanie, brimmed, other; columns: drawn cap, beanie, brimmed)": m.tolist()}


def fit(shared: Path, *, out: Path | None = None, labels: Path | None = None, quiet: bool = False) -> dict:
    """Fits the model and writes it (``out``, default :data:`OUT`); returns the file's contents."""
    from avatarizer import headwear as HW

    from .detectors import fit_logistic, oof, predict

    t0 = time.time()
    lab = kind_labels(labels)
    names, sh, sh_m = shapes(Path(shared) / "data" / "faces", sorted(lab), progress=not quiet)
    y = np.array([lab[n] for n in names])
    held = np.array([is_heldout(n) for n in names], bool)
    k = len(HW.MODEL_KINDS)
    if len(set(y[~held].tolist())) < k:
        raise SystemExit(f"hats: the training photos lack a kind ({np.bincount(y[~held], minlength=k).tolist()} "
                         f"of {', '.join(HW.MODEL_KINDS)}): label more hats")
    # training rows: every training photo and its mirror image (one fold per photo)
    tr = np.flatnonzero(~held)
    rows = [sh[i] for i in tr] + [sh_m[i] for i in tr]
    y_tr, group = np.concatenate([y[tr], y[tr]]), np.concatenate([tr, tr])
    px = np.array([r["pixels"] for r in rows])
    pm, ps = px.mean(0), px.std(0) + 1e-3
    _, _, vt = np.linalg.svd((px - pm) / ps, full_matrices=False)
    basis = vt[:PIXEL_COMPONENTS].T
    mdl = {"pixel_mean": pm, "pixel_scale": ps, "pixel_basis": basis}
    x_tr = np.array([HW.model_inputs(r, mdl) for r in rows])
    x_held = np.array([HW.model_inputs(sh[i], mdl) for i in np.flatnonzero(held)]).reshape(-1, x_tr.shape[1])
    model = fit_logistic(x_tr, y_tr, k, l2=L2)
    po = oof(x_tr, y_tr, k, l2=L2, groups=group)[: len(tr)]  # (the photos as they are)
    y_o = y[tr]
    # thresholds over every covering (the other ones count against a brim's or a peak's precision)
    brim_ok = po[:, 2] >= po[:, 0]
    th = {"brimmed": _threshold(np.where(brim_ok, po[:, 2], 0.0), y_o == 2, PRECISION)}
    not_brim = ~(brim_ok & (po[:, 2] >= th["brimmed"]))
    th["cap"] = _threshold(np.where(not_brim, po[:, 0], 0.0), y_o == 0, PRECISION)

    def decided(p):
        return np.array([HW.decide(r, th) - 1 for r in p], int)

    report = {"training (5-fold out of fold)": _confusion(y_o, decided(po)),
              "training, likeliest class (out of fold)": _confusion(y_o, np.where(po.argmax(1) == 3, 1, po.argmax(1))),
              "held out": _confusion(y[held], decided(predict(model, x_held))) if held.any() else None}
    doc = {"format": 2, "kinds": list(HW.MODEL_KINDS), "cues": list(HW.CUES),
           "pixel_mean": pm.tolist(), "pixel_scale": ps.tolist(), "pixel_basis": basis.tolist(),
           "mean": model["mean"], "scale": model["scale"],
           # fit_logistic's rows are classes (reference row 0): w is inputs x kinds
           "w": np.asarray(model["W"]).T.tolist(), "b": model["b"],
           "thresholds": {kk: (v if np.isfinite(v) else 2.0) for kk, v in th.items()},
           "trained_on": {"photos": int(len(tr)), "mirrored": True,
                          "per_kind": np.bincount(y[tr], minlength=k).tolist(),
                          "labels": LABELS_NAME if labels is None else Path(labels).name, "l2": L2,
                          "pixel_components": PIXEL_COMPONENTS, "precision": PRECISION},
           "report": report, "seconds": round(time.time() - t0, 1)}
    path = Path(out or OUT)
    with staged(path, "part") as tmp:  # never half-written (the SDK and data.artist_key read it)
        tmp.write_text(json.dumps(doc) + "\n", encoding="utf-8")
    HW._model.cache_clear()  # this process draws with the new model from now on (make models' artist)
    if not quiet:
        print(json.dumps(report, indent=1))
        print(f"wrote {path}")
    return doc


def main_hats(args) -> int:
    fit(shared_dir(args.shared), quiet=args.quiet)
    return 0


def add_parser(sub):
    p = sub.add_parser("hats", help="fit the hat kind model (cap, beanie, brimmed) on the labels by eye")
    p.add_argument("--shared", default=None, help="the shared data folder (default ../shared)")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=main_hats)
