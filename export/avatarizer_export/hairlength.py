"""``avatarizer-export hair-length``: adds (or refits) the ``hair_long`` output
of the shipped attribute regressor H: the probability that the person's hair
hangs to the chin or jaw line or lower, from the labels by eye
(``labels/hair_length_by_eye.jsonl``, docs/data.md), on H's own int8 features.

Why: the hair bank's retrieval matches the photo's hair silhouette above the
jaw and H's ``length`` (regressed on the auto-artist's fits), and drew long
hair short on 52 of 219 held-out long-haired photos (labels by eye); hair
hanging beside the neck hardly shows in either (docs/hair.md).

Rows: every labelled training photo (``long`` 1; ``short`` and ``tied``,
hair pulled back, 0; ``bald`` and ``covered`` are left to the bald and
headwear gates) and its mirror image. Held-out photos (the fixed split) are
scored as they are.

The head is a logistic regression on the whitened principal components of the
standardised features (the other heads' input), classes weighted alike, the
number of components and the L2 weight chosen by 5-fold CV grouped by photo
(log loss), then Platt-calibrated on the out-of-fold logits. It is appended
to the graph as one Gemm and a Sigmoid (output ``hair_long``, ``(batch, 1)``),
every other output left byte for byte (checked). The retrieval's length gate
(:class:`avatarizer.hair.HairRetriever`) takes its two thresholds from the
file's description: ``gate_long``, the lowest probability at which the
out-of-fold predictions of the training photos called long are right in
:data:`GATE_PRECISION` of cases, and ``gate_short``, the highest at which
those called short are; and ``gates_by_gender``, the same pair chosen on
the training photos the SDK reports female and those it reports male
(:func:`reported_male`), which a face of a reported gender is gated at
(long hair is three in four labelled women's and one in fifteen men's: the
pair for all gated 18 of the 68 held-out women it called short with long
hair, session 40). The report (``runs/attributes/hair_length_<version>.json``)
has the held-out AUC, accuracy at 0.5, expected calibration error and the
share of held-out photos each gate takes and gets right; the file's
description keeps them. Run ``avatarizer-export gender`` before it (its
gates per gender read the gender through the fusion fitted with this H,
else H's own P(male)). The file's checksum changes, so run
``avatarizer-export detectors --fusion``, ``hat-net --fusion`` and
``gender`` after it (as after ``skin-tone``).
"""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from .attributes import (MODELS, add_head_tool, append_head, check_added_head, expected_calibration_error,
                         fit_calibration, fit_head, head_features, open_for_head, pca_basis, save_added_head,
                         to_input128)
from .paths import cache_dir

K_GRID = (32, 64, 128, 192)
LAMBDA_GRID = (0.001, 0.003, 0.01, 0.03, 0.1)
GATE_PRECISION = 0.9
OUTPUT = "hair_long"
TARGET = {"long": 1.0, "short": 0.0, "tied": 0.0}


def _auc(p: np.ndarray, y: np.ndarray) -> float:
    """:func:`metrics.roc_auc` of ``p`` for the long photos ``y`` (0.0 without both classes, as before)."""
    from .metrics import roc_auc

    a = roc_auc(y, p)
    return 0.0 if a is None else a


def _logloss(z: np.ndarray, y: np.ndarray) -> float:
    return float(np.mean(np.where(y, np.logaddexp(0, -z), np.logaddexp(0, z))))


def gate_thresholds(p: np.ndarray, y: np.ndarray, precision: float = GATE_PRECISION,
                    min_rows: int = 10) -> tuple[float | None, float | None]:
    """(gate_long, gate_short): the lowest probability from which the photos
    at or above it are long in ``precision`` of cases, and the highest to
    which those at or below it are short as often (steps of 0.01 from 0.5;
    None, no gate on that side, when none reaches it)."""
    hi = next((float(t) for t in np.round(np.arange(0.5, 1.0, 0.01), 2)
               if (s := p >= t).sum() >= min_rows and y[s].mean() >= precision), None)
    lo = next((float(t) for t in np.round(np.arange(0.5, 0.0, -0.01), 2)
               if (s := p <= t).sum() >= min_rows and (~y[s]).mean() >= precision), None)
    return hi, lo


def reported_male(aligned, index: np.ndarray, path: Path, desc: dict,
                  data: Path | None = None) -> tuple[np.ndarray, str]:
    """(whether the SDK reports each cache row of ``index`` male, how that
    was read): the P(male) of the H file at ``path`` (description
    ``desc``), as the hair stage reads it, fused with the face's frontal
    landmarks by the gender fusion in ``data`` (default the SDK's data
    folder) where it was fitted with that file (``gender_fusion.json``; a
    face whose landmarks cannot be read: H's), else H's P(male) at its own
    threshold (an H with no fusion fitted yet: ``make models`` fits one
    before this step). Read as the SDK reads an unmasked face, without a
    drawn beard's ten times the odds of male (``hair.read_with_facial_hair``:
    women wearing beards are few); the training photos are read by an H and
    a fusion fitted on them, so the split is a little cleaner than on new
    photos."""
    from avatarizer.gender import GenderFusion
    from avatarizer.runtime import Session, sha256_file

    from .gender import session_male

    p, threshold = session_male(Session(path, name=str(desc.get("name", "attributes")), description=desc,
                                        device="cpu", providers=["CPUExecutionProvider"]), aligned, index)
    male = p >= threshold
    fusion = GenderFusion.load(sha256_file(path), data)
    if fusion is None:
        return male, "H's P(male) at its threshold (no gender fusion fitted with this H)"
    for j, i in enumerate(index):
        try:
            male[j] = fusion.probability(aligned.landmarks3d[i], float(p[j])) >= fusion.threshold
        except ValueError:  # (landmarks that cannot be read: H's reading stands)
            pass
    return male, "the gender fusion (H's P(male) and the frontal landmarks, data/gender_fusion.json)"


def fit_head_cv(X: np.ndarray, Xm: np.ndarray, y: np.ndarray, seed: int = 0, log=print):
    """(W (features,), b, k, lambda, calibrated out-of-fold probabilities):
    the CV-chosen logistic head on X's whitened principal components, trained
    on every row and its mirror (``Xm``), calibrated by Platt scaling."""
    V, sc = pca_basis(np.concatenate([X, Xm]), q=max(K_GRID), seed=seed)
    V = V / sc
    Z, Zm = X @ V, Xm @ V
    fold = np.random.default_rng(seed).integers(0, 5, len(y))
    best = None
    for k in K_GRID:
        for lam in LAMBDA_GRID:
            oof = np.zeros(len(y))
            for f in range(5):
                t = fold != f
                W, b = fit_head(np.concatenate([Z[t, :k], Zm[t, :k]]), np.concatenate([y[t], y[t]]).astype(float),
                                "bce", lam)
                oof[~t] = Z[~t, :k] @ W[:, 0] + b[0]
            score = _logloss(oof, y)
            if best is None or score < best[0]:
                best = (score, k, lam, oof)
    score, k, lam, oof = best
    a, c = fit_calibration(oof[:, None], y.astype(float), "bce")
    log(f"hair length: CV log loss {score:.3f}, AUC {_auc(oof, y):.3f} at k={k}, lambda={lam}")
    W, b = fit_head(np.concatenate([Z[:, :k], Zm[:, :k]]), np.concatenate([y, y]).astype(float), "bce", lam)
    W_full = (V[:, :k] @ W[:, 0]) * float(a[0])
    b_full = float(a[0]) * float(b[0]) + float(c[0])
    p_oof = 1.0 / (1.0 + np.exp(-(float(a[0]) * oof + float(c[0]))))
    return W_full.astype(np.float32), np.float32(b_full), k, lam, p_oof


def fit(cache: Path | None = None, folder: Path = MODELS, version: str | None = None, log=print,
        data: Path | None = None) -> dict:
    """Fits the head, writes it into ``folder``'s H file and its manifest
    entry, and returns the report (module docstring). ``data``: the data
    folder whose gender fusion reads the gender the gates are chosen per
    (default the SDK's)."""
    from .data import hair_length_labels, is_heldout, load_aligned

    t0 = time.time()
    labels = {k: v for k, v in hair_length_labels().items() if v in TARGET}
    if not labels:
        raise SystemExit("no hair length labels (labels/hair_length_by_eye.jsonl): run `avatarizer-export labels merge`")
    al = load_aligned(cache_dir(cache))
    path, model, desc, others, feat, sess, opts = open_for_head(folder, OUTPUT)
    keys = [k for k in al.keys if k in labels]
    idx = al.index()
    crops = np.stack([np.asarray(al.crops[idx[k]]) for k in keys])
    X = head_features(sess, feat, crops)
    Xm = head_features(sess, feat, np.ascontiguousarray(crops[:, :, ::-1]))
    y = np.array([TARGET[labels[k]] > 0.5 for k in keys])
    held = np.array([is_heldout(k) for k in keys])
    W, b, k, lam, p_oof = fit_head_cv(X[~held], Xm[~held], y[~held], log=log)
    gate_long, gate_short = gate_thresholds(p_oof, y[~held])
    # each reported gender's own pair, at the same precision on its own training photos
    male, gender_read = reported_male(al, np.array([idx[key] for key in keys]), path, desc, data)
    by_gender = {g: gate_thresholds(p_oof[sel[~held]], y[~held][sel[~held]])
                 for g, sel in (("female", ~male), ("male", male))}
    p_held = 1.0 / (1.0 + np.exp(-(X[held] @ W + b)))
    yh = y[held]
    append_head(model, feat, OUTPUT, W, b, sigmoid=True)  # a Gemm and a Sigmoid on the standardised features
    # every other output unchanged, and the new output gives what the fit predicts
    check_added_head(path, model, others, opts, to_input128(crops[held]).numpy(), OUTPUT, p_held, "hair length")

    def gate_row(p, yy, gates=(gate_long, gate_short)):
        hi = p >= gates[0] if gates[0] is not None else np.zeros(len(p), bool)
        lo = p <= gates[1] if gates[1] is not None else np.zeros(len(p), bool)
        return {"long_gate_share": round(float(hi.mean()), 4),
                "long_gate_right": round(float(yy[hi].mean()), 4) if hi.any() else None,
                "short_gate_share": round(float(lo.mean()), 4),
                "short_gate_right": round(float((~yy[lo]).mean()), 4) if lo.any() else None}

    def gender_rows(p, yy, mm):  # each gender's photos at its own pair and at the pair for all
        return {g: {"photos": int(sel.sum()), "long": int(yy[sel].sum()),
                    **({"own_gates": gate_row(p[sel], yy[sel], by_gender[g]),
                        "gates_for_all": gate_row(p[sel], yy[sel])} if sel.any() else {})}
                for g, sel in (("female", ~mm), ("male", mm))}

    report = {
        "labels": len(labels), "train_photos": int((~held).sum()), "held_out_photos": int(held.sum()),
        "targets": "long 1; short and tied 0 (labels by eye)", "k": k, "lambda": lam,
        "train_oof": {"auc": round(_auc(p_oof, y[~held]), 4), **gate_row(p_oof, y[~held])},
        "heldout": {"n": int(len(yh)), "long": int(yh.sum()), "auc": round(_auc(p_held, yh), 4),
                    "accuracy_at_0.5": round(float(((p_held >= 0.5) == yh).mean()), 4),
                    "ece": round(expected_calibration_error(p_held, yh.astype(float)), 4),
                    **gate_row(p_held, yh)},
        "gate_long": gate_long, "gate_short": gate_short, "gate_precision": GATE_PRECISION,
        "gates_by_gender": {g: {"gate_long": hi, "gate_short": lo} for g, (hi, lo) in by_gender.items()},
        "gender_read": gender_read,
        "by_gender": {"train_oof": gender_rows(p_oof, y[~held], male[~held]),
                      "heldout": gender_rows(p_held, yh, male[held])},
    }
    record = {"meaning": "P(the hair hangs to the chin or jaw line or lower), calibrated",
              "labels": "labels/hair_length_by_eye.jsonl (by eye, docs/data.md)",
              **{key: report[key] for key in ("train_photos", "targets", "k", "lambda", "train_oof", "heldout",
                                              "gate_long", "gate_short", "gate_precision", "gates_by_gender",
                                              "gender_read", "by_gender")}}
    return save_added_head(model, desc, path, folder, OUTPUT, "probability", record,
                           "labels by eye for hair length (avatarizer_export/labels/hair_length_by_eye.jsonl, "
                           "docs/data.md)", version, report, t0, log, report_stem="hair_length")


def add_parser(sub):
    add_head_tool(sub, "hair-length", "add or refit H's hair length output from the labels by eye", fit)
