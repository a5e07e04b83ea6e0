"""``avatarizer-export beard-grey-fusion``: fit the hybrid's grey-beard fusion
(:mod:`avatarizer.beardgrey`): grey or dark facial hair from the artist's
grey-beard detector and the hybrid's P(grey hair) together.

Rows: the photos whose facial hair's colour is labelled by eye
(:func:`avatarizer_export.data.beard_colour_labels`: grey or white, or dark
or brown) that ``Avatarizer()`` draws with a beard or a moustache and whose
detector reading it reports (``attributes["beard_grey_detector_read"]``),
with the hybrid's ``hair_colour_probs["gray"]``: the shipped SDK as it
runs, so the fusion learns what it will be given (the fusion file already
there changes neither reading). The model is a logistic regression over
the two logits (:func:`avatarizer.beardgrey.features`), L2 :data:`L2` on
the weights, fitted on the training split; its threshold is the best
balanced accuracy of :data:`FOLDS`-fold out-of-fold probabilities
(grouped by nothing: one row per photo). The report has that balanced
accuracy and the detector's alone at its own threshold, out of fold and
on the held-out photos, by framing (UTKFace's tight chips, loose
portraits). The file names what it was fitted with (H, the detector, the
hair-colour network): the SDK uses it with those only. Run it after
``detectors``, ``hair-colour-net`` and H (a ``make models`` step after the
models are committed).
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from . import metrics as M
from .paths import shared_dir

L2 = 1.0
FOLDS = 5
SEED = 0
#: the thresholds tried (the best out-of-fold balanced accuracy; the lowest of equals)
THRESHOLDS = tuple(round(t, 2) for t in np.arange(0.05, 0.96, 0.01))
#: fewer training rows of either colour than this stop the fit
MIN_ROWS = 20


def collect(shared: Path, log=print) -> dict:
    """Per labelled photo the SDK draws with facial hair and a detector
    reading: ``keys``, ``y`` (True: grey or white), ``held``, ``tight``
    (a UTKFace chip), ``p_detector``, ``p_hair`` (P(grey hair)), and the
    SHA-256 of H and of the hair-colour network and the detector's key it
    read them with."""
    import os

    os.environ.setdefault("GLOG_minloglevel", "2")
    from avatarizer import Avatarizer
    from avatarizer import regionnet
    from avatarizer.artist.accessories import detectors, loaded_detector_key
    from avatarizer.imageio import load_image
    from avatarizer.pipeline.config import attributes_entry
    from avatarizer.runtime import Manifest

    from .data import beard_colour_labels, is_heldout

    labels = beard_colour_labels()
    faces = Path(shared) / "data" / "faces"
    rows: dict = {k: [] for k in ("keys", "y", "held", "tight", "p_detector", "p_hair")}
    # the files as they are now (a run that rewrote them earlier in this process read the old ones)
    detectors.cache_clear()
    regionnet.clear_cache()
    with Avatarizer() as az:
        stage = next(s for s in az._pipeline.stages if s.name == "hair")
        if stage.hair_colour is None or attributes_entry(Manifest.load(None)) is None:
            raise SystemExit("beard grey fusion: the SDK has no attribute model or hair-colour network")
        shas = {"attributes_sha256": attributes_entry(Manifest.load(None)).sha256,
                "detector": loaded_detector_key("beard_grey"),
                "hair_colour_sha256": stage.hair_colour.sha256,
                # (most rows are tight crops, read by the tight network: the SDK checks it too; a review)
                "hair_colour_tight_sha256": None if stage.hair_colour_tight is None
                else stage.hair_colour_tight.sha256}
        if shas["detector"] is None:
            raise SystemExit("beard grey fusion: no grey-beard detector (run `avatarizer-export detectors`)")
        for k in sorted(labels):
            path = faces / k
            if not path.is_file():
                continue
            state = az.run(load_image(path))
            if not state.faces:
                continue
            a = state.faces[0].attributes
            p_det, p_hair = a.get("beard_grey_detector_read"), (a.get("hair_colour_probs") or {}).get("gray")
            if p_det is None or p_hair is None or not (np.isfinite(p_det) and np.isfinite(p_hair)):
                continue  # (no facial hair drawn, too few of its pixels, no hair colour read)
            rows["keys"].append(k)
            rows["y"].append(bool(labels[k]["beard_grey"]))
            rows["held"].append(is_heldout(k))
            rows["tight"].append(k.startswith("utkface"))
            rows["p_detector"].append(float(p_det))
            rows["p_hair"].append(float(p_hair))
    log(f"beard grey fusion: {len(rows['keys'])} labelled photos drawn with facial hair and read")
    out = {k: np.array(v) for k, v in rows.items()}
    out.update(shas)
    return out


def design(p_detector: np.ndarray, p_hair: np.ndarray) -> np.ndarray:
    """(n, 2): :func:`avatarizer.beardgrey.features` of each row."""
    from avatarizer.beardgrey import features

    return np.array([features(d, h) for d, h in zip(p_detector, p_hair)], np.float64).reshape(-1, 2)


def fit_logistic(X: np.ndarray, y: np.ndarray, l2: float = L2) -> tuple[np.ndarray, float]:
    """(weights (2,), intercept) of an L2-penalised logistic regression
    (the intercept not penalised), by Newton's method."""
    A = np.c_[X, np.ones(len(X))]
    pen = np.r_[np.full(X.shape[1], l2), 0.0]
    w = np.zeros(A.shape[1])
    t = y.astype(np.float64)
    for _ in range(100):
        p = 1.0 / (1.0 + np.exp(-np.clip(A @ w, -60, 60)))
        grad = A.T @ (p - t) + pen * w
        hess = A.T @ (A * (p * (1.0 - p))[:, None]) + np.diag(pen) + 1e-9 * np.eye(len(w))
        step = np.linalg.solve(hess, grad)
        w -= step
        if np.abs(step).max() < 1e-10:
            break
    return w[:-1], float(w[-1])


def predict(w: np.ndarray, c: float, X: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.clip(X @ w + c, -60, 60)))


def _reads(y, pred) -> dict:
    """``n``, grey and dark right as "k/n", the balanced accuracy (``eval``'s form)."""
    from .evaluate import _two_class_reads

    return _two_class_reads(list(y), list(pred), "grey", "dark")


def fit(shared: Path | None, *, data: Path | None = None, quiet: bool = False, rows: dict | None = None) -> dict:
    """Fits the fusion (module doc) and writes ``beard_grey_fusion.json``
    into ``data`` (default the SDK's data folder); returns the document.
    ``rows``: :func:`collect`'s, when already collected."""
    from avatarizer import beardgrey as BG
    from avatarizer.artist.accessories import detectors

    from .onnx_util import write_json_staged

    t0 = time.time()
    log = (lambda *a, **k: None) if quiet else print
    if rows is None:
        if shared is None:
            raise SystemExit("beard grey fusion: the shared photos are needed (--shared)")
        rows = collect(shared, log=log)
    y, held, tight = rows["y"].astype(bool), rows["held"].astype(bool), rows["tight"].astype(bool)
    X = design(rows["p_detector"], rows["p_hair"])
    tr = ~held
    if min(int(y[tr].sum()), int((~y[tr]).sum())) < MIN_ROWS:
        raise SystemExit(f"beard grey fusion: too few training rows ({int(y[tr].sum())} grey, "
                         f"{int((~y[tr]).sum())} dark; at least {MIN_ROWS} each): label more")
    fold = np.random.default_rng(SEED).integers(0, FOLDS, int(tr.sum()))
    oof = np.zeros(int(tr.sum()))
    for f in range(FOLDS):
        w, c = fit_logistic(X[tr][fold != f], y[tr][fold != f])
        oof[fold == f] = predict(w, c, X[tr][fold == f])
    scores = [M.balanced_accuracy(y[tr].astype(int), (oof >= t).astype(int)) for t in THRESHOLDS]
    threshold = THRESHOLDS[int(np.argmax(scores))]
    w, c = fit_logistic(X[tr], y[tr])
    fused = predict(w, c, X)
    det = detectors()["beard_grey"]
    det_threshold = float(det["thresholds"]["yes"])
    alone = rows["p_detector"] >= det_threshold
    report: dict = {"out of fold (training photos)": {"fusion": _reads(y[tr], oof >= threshold),
                                                      "detector alone": _reads(y[tr], alone[tr])}}
    for name, sel in (("held out", held), ("held out, loose portraits", held & ~tight),
                      ("held out, tight crops", held & tight)):
        if sel.any():
            report[name] = {"fusion": _reads(y[sel], fused[sel] >= threshold),
                            "detector alone": _reads(y[sel], alone[sel])}
    doc = {"format": BG.FORMAT, "w": [round(float(v), 6) for v in w], "c": round(c, 6), "threshold": threshold,
           "attributes_sha256": rows["attributes_sha256"], "detector": rows["detector"],
           "hair_colour_sha256": rows["hair_colour_sha256"],
           "hair_colour_tight_sha256": rows.get("hair_colour_tight_sha256"),
           "trained_on": {"photos": int(tr.sum()), "grey": int(y[tr].sum()), "dark": int((~y[tr]).sum()),
                          "labels": "facial hair colours by eye (labels, data.beard_colour_labels), the training "
                                    "split, through Avatarizer()",
                          "l2": L2, "folds": FOLDS, "seed": SEED, "detector_threshold": round(det_threshold, 4)},
           "report": report}
    path = Path(data if data is not None else BG.DATA) / BG.NAME
    write_json_staged(path, doc)
    log(json.dumps(report, indent=1))
    log(f"wrote {path} ({time.time() - t0:.0f} s)")
    return doc


def add_parser(sub):
    def main(args) -> int:
        fit(shared_dir(args.shared), quiet=args.quiet)
        return 0

    p = sub.add_parser("beard-grey-fusion", help="fit the hybrid's grey-beard decision (the artist's grey-beard "
                                                 "detector with the hair's colour) on the facial hair colours "
                                                 "labelled by eye")
    p.add_argument("--shared", default=None, help="the shared folder (default ../shared)")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=main)
    return p
