"""``avatarizer-export gender``: fit the gender fusion (``avatarizer.gender``).

Why: on the shared labels' 102 held-out loose portraits the shipped
pipeline's gender was wrong on 20 (session 38: balanced accuracy 0.806; H
alone at its threshold 0.78), the errors mostly from what is around the
face (hair pulled back, caps, a hard hat); on held-out UTKFace adults H
alone reaches 0.89. The face's proportions, pose-free, read gender without
the hair: a logistic model on the frontal landmarks alone reached 0.90 on
the held-out UTKFace adults and 0.81 on those loose portraits (scratch,
session 38).

Rows: the training photos (:func:`avatarizer_export.data.is_heldout`) of
the aligned cache with a gender label: UTKFace's by its file names
(:func:`avatarizer_export.data.utk_labels`), ``ffhq128-labelled``'s by the
shared labels, and the loose portraits of ``ffhq128`` and ``stylegan128``
labelled by eye (``labels/gender_by_eye.jsonl``: batch ``gender_train``;
its held-out batch ``gender_heldout`` is the report's cleanest test); every
one also mirrored (its landmarks mirrored, H's probability the same), a
photo's two rows in one fold.

Features: the frontal landmarks (:func:`avatarizer.gender.frontal_vector`,
956 numbers) projected on their ``k`` leading principal components
(whitened, from the training rows), and the logit of H's P(male) (the H of
``models``: the staged one in ``make models``; computed on the cached
crops as the hair stage reads them). A logistic model
(:func:`avatarizer_export.detectors.fit_logistic`, every row alike: the
probabilities keep the classes' frequencies), ``k`` of :data:`K_GRID` and
the L2 weight of :data:`L2_GRID` chosen by 5-fold out-of-fold log loss
of the loose portraits' rows (UTKFace's chips, most of the rows, favour
more components than help loose portraits);
the decision threshold the best balanced accuracy out of fold. The model
is written collapsed to ``logit = u . x + a * logit(P_H) + c`` (the
runtime reads no PCA).

H's P(male) on its own training photos is in-sample (H trained on the
UTKFace and shared labels): measured on UTKFace adults it read 0.889 on
training photos and 0.892 held out (no optimism there), on the 394 loose
training photos of the shared labels 0.875 against 0.726 held out; the
photos labelled by eye have no gender label H trained on (its reading
there is as on new photos). The held-out report says what the fusion does.

    avatarizer-export gender [--shared ../shared] [--cache cache] [--models DIR [--data DIR]]
    # writes sdk/avatarizer/data/gender_fusion.json (or DIR/gender_fusion.json)
"""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np

K_GRID = (20, 40, 80, 120, 160, 240)
L2_GRID = (1.0, 10.0, 100.0)
FOLDS = 5


def training_rows(shared: Path, aligned) -> dict:
    """``keys``, ``y`` (1 male), ``held``, ``index`` (rows of the aligned
    cache), ``age`` (years, NaN unknown), ``loose`` (not a UTKFace chip)
    and ``by_eye`` (a label by eye, ``labels/gender_by_eye.jsonl``) of the
    photos with a gender label."""
    from .data import ffhq_labels, gender_labels, is_heldout, utk_labels

    lab: dict[str, tuple[int, float]] = {}
    eye = gender_labels()
    for k, v in eye.items():
        lab[k] = (int(v), np.nan)
    for k in aligned.keys:
        folder, _, name = k.partition("/")
        if folder.startswith("utkface"):
            u = utk_labels(name)
            if u is not None:
                lab[k] = (int(u["gender"] == "male"), float(u["age"]))
    for name, a in ffhq_labels(Path(shared)).items():
        if a.get("gender") in ("male", "female"):
            lab[f"ffhq128-labelled/{name}"] = (int(a["gender"] == "male"), float(a.get("age", np.nan)))
    pos = {k: i for i, k in enumerate(aligned.keys)}
    keys = [k for k in sorted(lab) if k in pos]
    return {"keys": keys, "y": np.array([lab[k][0] for k in keys], np.int64),
            "age": np.array([lab[k][1] for k in keys], np.float64),
            "held": np.array([is_heldout(k) for k in keys], bool),
            "loose": np.array([not k.startswith("utkface") for k in keys], bool),
            "by_eye": np.array([k in eye for k in keys], bool),
            "index": np.array([pos[k] for k in keys], np.int64)}


def landmark_rows(aligned, index: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(frontal vectors, their mirror images, ok) of cache rows ``index``
    (:func:`avatarizer.gender.frontal_vector` of the cached 3D landmarks;
    ``ok`` False where they cannot be read)."""
    from avatarizer.gender import frontal_vector

    n = 2 * 478
    x, xm, ok = np.zeros((len(index), n)), np.zeros((len(index), n)), np.ones(len(index), bool)
    for j, i in enumerate(index):
        try:
            x[j], xm[j] = frontal_vector(aligned.landmarks3d[i])
        except ValueError:
            ok[j] = False
    return x, xm, ok


def model_probabilities(models: Path | None, aligned, index: np.ndarray) -> tuple[np.ndarray, str, float]:
    """(H's P(male) for cache rows ``index``, H's sha256, H's own decision
    threshold for it): the attribute model of ``models`` (default the
    SDK's) on the cached crops, as the hair stage reads them
    (:func:`avatarizer_export.onnx_util.model_flag`)."""
    from avatarizer.pipeline.config import attributes_entry
    from avatarizer.runtime import Manifest, Session

    entry = attributes_entry(Manifest.load(models))
    if entry is None:
        raise RuntimeError("gender fusion: no attribute model (role 'attributes') to fuse the landmarks with")
    p, threshold = session_male(Session.from_entry(entry, device="cpu", providers=["CPUExecutionProvider"]),
                                aligned, index)
    return p, entry.sha256, threshold


def session_male(session, aligned, index: np.ndarray) -> tuple[np.ndarray, float]:
    """(H's P(male) for cache rows ``index`` through ``session``, an
    ``avatarizer.runtime.Session`` of an attribute model, as the hair stage
    reads them (:func:`avatarizer_export.onnx_util.model_flag`); its own
    decision threshold for it)."""
    from avatarizer import hair as HR

    from .onnx_util import model_flag

    threshold = float(HR.model_thresholds(session.description)[0].get("male", HR.DEFAULT_THRESHOLD))
    return model_flag(session, aligned.crops, index, "male"), threshold


def _features(x: np.ndarray, h: np.ndarray, basis: dict, k: int) -> np.ndarray:
    return np.concatenate([(x - basis["mean"]) @ basis["P"][:k].T, h[:, None]], 1)


def pca_basis(x: np.ndarray, k: int) -> dict:
    """``mean`` and ``P`` (k x d: the leading principal directions, each
    divided by its standard deviation) of the rows ``x``."""
    mean = x.mean(0)
    _, s, vt = np.linalg.svd(x - mean, full_matrices=False)
    sd = s[:k] / np.sqrt(max(len(x) - 1, 1))
    return {"mean": mean, "P": vt[:k] / np.maximum(sd, 1e-12)[:, None]}


def collapse(model: dict, basis: dict, k: int) -> tuple[np.ndarray, float, float]:
    """(u, a, c) with ``u . x + a * h + c`` the logit of class 1 of the
    :func:`avatarizer_export.detectors.fit_logistic` ``model`` over
    :func:`_features` (k components and the logit ``h``)."""
    W, b = np.asarray(model["W"], np.float64), np.asarray(model["b"], np.float64)
    mean, scale = np.asarray(model["mean"], np.float64), np.asarray(model["scale"], np.float64)
    w = (W[1] - W[0]) / scale  # the logit of class 1 against class 0, on the raw features
    c0 = float(b[1] - b[0] - w @ mean)
    u = w[:k] @ basis["P"][:k]
    return u, float(w[k]), float(c0 - u @ basis["mean"])


def fit(shared: Path, cache: Path, *, models: Path | None = None, data: Path | None = None,
        quiet: bool = False) -> dict:
    """Fits the fusion (module doc) and writes ``gender_fusion.json`` into
    ``data`` (default the SDK's data folder); returns the document."""
    from avatarizer import gender as G

    from .attributes import _best_ba_threshold
    from .data import load_aligned
    from .detectors import fit_logistic, predict
    from .metrics import balanced_accuracy
    from .onnx_util import write_json_staged

    t0 = time.time()
    al = load_aligned(cache)
    rows = training_rows(shared, al)
    x, xm, ok = landmark_rows(al, rows["index"])
    p_h, sha, h_th = model_probabilities(models, al, rows["index"])
    keep = ok & np.isfinite(p_h)
    if (~keep).any() and not quiet:
        print(f"gender fusion: {int((~keep).sum())} photos without readable landmarks or H output left out",
              file=sys.stderr)
    y, held = rows["y"], rows["held"]
    tr, hv = np.flatnonzero(keep & ~held), np.flatnonzero(keep & held)
    if len(tr) < 200 or min((y[tr] == 0).sum(), (y[tr] == 1).sum()) < 50:
        raise SystemExit(f"gender fusion: too few labelled training photos ({len(tr)})")
    h = np.array([G.logit(p) for p in p_h])
    # each training photo and its mirror image, one group
    X, H, Y = np.concatenate([x[tr], xm[tr]]), np.concatenate([h[tr], h[tr]]), np.concatenate([y[tr], y[tr]])
    groups = np.concatenate([np.arange(len(tr))] * 2)
    fold = (np.random.default_rng(0).permutation(len(tr)) % FOLDS)[groups]
    oofs = {(k, l2): np.zeros(len(Y)) for k in K_GRID for l2 in L2_GRID}
    for f in range(FOLDS):
        a, b = fold != f, fold == f
        basis = pca_basis(X[a], max(K_GRID))  # (the leading k of it for each k)
        for k, l2 in oofs:
            m = fit_logistic(_features(X[a], H[a], basis, k), Y[a], 2, l2=l2, balanced=False)
            oofs[(k, l2)][b] = predict(m, _features(X[b], H[b], basis, k))[:, 1]
    def log_loss(o, m):
        return float(-np.mean(np.log(np.clip(np.where(Y[m] > 0, o[m], 1 - o[m]), 1e-9, 1))))

    # chosen on the loose portraits' rows (what apps give; the UTKFace chips, most of the rows, favour more
    # components than help them), the rows of all photos reported beside
    loose = np.concatenate([rows["loose"][tr]] * 2)
    losses = {kl: log_loss(o, loose) for kl, o in oofs.items()}
    losses_all = {kl: log_loss(o, np.ones(len(Y), bool)) for kl, o in oofs.items()}
    k, l2 = min(losses, key=losses.get)
    threshold = _best_ba_threshold(oofs[(k, l2)], Y > 0)
    basis = pca_basis(X, max(K_GRID))
    model = fit_logistic(_features(X, H, basis, k), Y, 2, l2=l2, balanced=False)
    u, a, c = collapse(model, basis, k)
    doc = {"format": G.FORMAT, "attributes_sha256": sha,
           "features": "frontal landmarks (avatarizer.gender.frontal_vector, and mirrored, averaged) and "
                       "logit(H's P(male)) clipped to [1e-4, 1 - 1e-4]",
           "u": [round(float(v), 7) for v in u], "a": round(a, 7), "c": round(c, 7),
           "threshold": threshold, "k": k, "l2": l2}
    fusion = G.GenderFusion(doc)  # (what the runtime reads, rounded as written)

    def fused(i):  # (GenderFusion.probability on the rows' landmarks, already made frontal)
        return 1.0 / (1.0 + np.exp(-(0.5 * (x[i] @ fusion.u + xm[i] @ fusion.u) + fusion.a * h[i] + fusion.c)))
    report: dict = {"out of fold (training photos and their mirror images)": {
        "balanced_accuracy": round(balanced_accuracy(Y, (oofs[(k, l2)] >= threshold).astype(int)), 4),
        "chosen": {"k": k, "l2": l2, "by": "log loss of the loose portraits' rows"},
        "log_loss_loose_by_k_l2": {f"{kk},{ll}": round(v, 4) for (kk, ll), v in losses.items()},
        "log_loss_all_by_k_l2": {f"{kk},{ll}": round(v, 4) for (kk, ll), v in losses_all.items()}}}
    age = rows["age"]
    groups_ = (("held out, loose portraits labelled by eye (ffhq128, stylegan128)", rows["by_eye"]),
               ("held out, loose portraits (ffhq128-labelled, shared labels)", rows["loose"] & ~rows["by_eye"]),
               ("held out, UTKFace 18 and over", ~rows["loose"] & (age >= 18)),
               ("held out, UTKFace 13-17", ~rows["loose"] & (age >= 13) & (age < 18)),
               ("held out, UTKFace under 13", ~rows["loose"] & (age < 13)))
    if len(hv):
        pf = fused(hv)
        for what, mask in groups_:
            m = mask[hv]
            if m.any() and 0 < y[hv][m].sum() < m.sum():
                report[what] = {"photos": int(m.sum()),
                                "fusion": round(balanced_accuracy(y[hv][m], (pf[m] >= threshold).astype(int)), 4),
                                f"H alone (its threshold {h_th:g})": round(balanced_accuracy(
                                    y[hv][m], (p_h[hv][m] >= h_th).astype(int)), 4)}
    doc.update({"trained_on": {"photos": int(len(tr)), "mirrored": True, "male": int(y[tr].sum()),
                               "loose": int(rows["loose"][tr].sum()), "by_eye": int(rows["by_eye"][tr].sum()),
                               "labels": "UTKFace file names; ffhq128-labelled shared labels; labels by eye "
                                         "(labels/gender_by_eye.jsonl); the training split"},
                "report": report, "seconds": round(time.time() - t0, 1)})
    from avatarizer.gender import DATA, NAME

    path = Path(data or DATA) / NAME
    path.parent.mkdir(parents=True, exist_ok=True)  # (--data NEW: the write failed after the whole fit)
    write_json_staged(path, doc)
    if not quiet:
        print(json.dumps(report, indent=1))
        print(f"wrote {path} ({time.time() - t0:.0f} s)")
    return doc


def _refuse_other_h_into_the_sdk(models: Path) -> None:
    """SystemExit where ``models``' H is not the one the SDK ships: its
    fusion, written into the SDK's data folder, names that H, and the SDK
    would no longer use the gender fusion at all (a review, session 75)."""
    from avatarizer.pipeline.config import attributes_entry
    from avatarizer.runtime import Manifest

    theirs, ours = attributes_entry(Manifest.load(models)), attributes_entry(Manifest.load(None))
    if theirs is None or ours is None or theirs.sha256 != ours.sha256:
        raise SystemExit(f"gender: {models}'s attribute model is not the one the SDK ships: its fusion would "
                         "replace the SDK's and the SDK would not use it; give --data DIR for it")


def add_parser(sub):
    from .paths import cache_dir, shared_dir

    def main(args) -> int:
        models = Path(args.models) if args.models else None
        if models is not None and args.data is None:
            _refuse_other_h_into_the_sdk(models)
        if args.data is not None and Path(args.data).exists() and not Path(args.data).is_dir():
            raise SystemExit(f"gender: --data {args.data} is a file, not a folder")  # (before the fit)
        fit(shared_dir(args.shared), cache_dir(args.cache), models=models,
            data=Path(args.data) if args.data else None, quiet=args.quiet)
        return 0

    p = sub.add_parser("gender", help="fit the gender fusion (the face's frontal landmarks and H's P(male))")
    p.add_argument("--shared", help="the shared folder (default ../shared)")
    p.add_argument("--cache", default=None, help="the cache folder (default cache/; `data align` fills it)")
    p.add_argument("--models", default=None, help="the models folder whose H is fused (default the SDK's); "
                                                  "with an H the SDK does not ship, --data is needed")
    p.add_argument("--data", default=None, help="the folder gender_fusion.json is written to (default the SDK's "
                                                "data folder)")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=main)
    return p
