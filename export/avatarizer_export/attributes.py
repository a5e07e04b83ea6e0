"""Attribute regressor H: aligned crop → hair colour, bald, hair length /
volume / curl / fringe, glasses, beard, moustache, headwear, age, gender.

``avatarizer-export attributes`` trains it, evaluates it on the held-out
labelled photos and exports it to ONNX (role ``attributes``) into
``sdk/avatarizer/models/`` with its manifest entry.

The graph (:class:`AttributeNet`), one input ``image`` (N×3×128×128, the
canonical crop mapped to [-1, 1]):

* **E_s** (the frozen image encoder of ``runs/image_ae``) on the crop resized
  to 96 px inside the graph → z_s (512);
* a frozen **ImageNet AlexNet** (conv1-5, the weights in
  ``../shared/weights/alexnet_lpips.npz``), relu3-5 average-pooled to 3×3
  (8,064): E_s is an autoencoder and its code alone does not separate
  glasses, hats or beards well enough (see ``docs/hair.md``);
* the crop itself average-pooled to 8×8 RGB (192): cheap colour statistics
  for the hair colour;
* the concatenation standardised with the training statistics, then one
  linear layer per output group (trained; everything before is frozen):
  ``hair_colour`` (N×5 softmax: black, brown, blond, red, gray), ``glasses``
  (N×3 softmax: none, reading, sunglasses), ``binary`` (N×5: bald, beard,
  moustache, headwear, male; >= 0.5 = present) and ``regress`` (N×5: age
  in years; hair length, volume, curl, fringe in [0, 1]).

Training data (held-out photos never used; see ``docs/split.md``):
``ffhq128-labelled/attributes.jsonl`` (training split, 394 photos) for hair
colour (top ``hairColor``, 'other' dropped), glasses, bald, beard,
moustache, headwear, age, gender; the UTKFace file names for age and gender;
the auto-artist's hair fits (``cache/pairs/params.npy``, original rows) as
pseudo-labels for hair length, volume, curl and fringe (not on UTKFace's
tight crops); the artist's conservative glasses detector as down-weighted
extra glasses labels.

Fitting (see the comment above :data:`PCA_COMPONENTS`): whitened principal
components of the frozen features, then per head a class-weighted
softmax / logistic regression, a ridge regression, or (rare flags) a ridge
regression of the labels' confidence with a cross-validated threshold; the
number of components, the L2 weight and the threshold chosen by repeated
stratified 5-fold cross-validation on the training photos. The report
(``runs/attributes/report.json``) holds every CV score, the held-out
metrics of the torch model, of the exported file and of E_s features alone,
and the drawing thresholds (:func:`draw_thresholds`).

Decoding the outputs at run time: :func:`avatarizer.hair.decode_attributes`.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as Fn
from torch import nn

from avatarizer import hair as HR
from avatarizer import schema as S

from .paths import ROOT, cache_dir, shared_dir

RUN = ROOT / "runs" / "attributes"
MODELS = ROOT / "sdk" / "avatarizer" / "models"
ONNX_NAME = "attributes-onnx-fp32"
ONNX_FILE = "attributes-fp32.onnx"
# shipped: fp16 (half the size; ONNX Runtime on CPU computes in fp32); the fp32
# reference stays a build artefact in runs/export
SHIP_NAME = "attributes-onnx-fp16"
SHIP_FILE = "attributes-fp16.onnx"
VERSION = "1.0.0"
INPUT = 128
COLOUR_POOL = 8
ALEX_TAPS = (2, 3, 4)  # relu3, relu4, relu5
ALEX_POOL = 3
GLASSES_LABEL = {"NoGlasses": 0, "ReadingGlasses": 1, "Sunglasses": 2}  # SwimmingGoggles: dropped
WEAK_GLASSES_WEIGHT = 0.3
HEADS = {"hair_colour": len(HR.HAIR_COLOURS), "glasses": len(HR.GLASSES),
         "binary": len(HR.BINARY_ATTRIBUTES), "regress": len(HR.REGRESSED_ATTRIBUTES)}


# ------------------------------------------------------------------ network


class AlexTaps(nn.Module):
    """ImageNet AlexNet conv1-5 (frozen), selected ReLU outputs pooled to a grid."""

    def __init__(self, weights_dir=None):
        super().__init__()
        from .lpips import LPIPS

        lp = LPIPS.from_npz(weights_dir, net="alex")
        self.scaling = lp.scaling
        self.slices = lp.slices
        for p in self.parameters():
            p.requires_grad_(False)

    def forward(self, x):
        h = self.scaling(x)
        out = []
        for i, s in enumerate(self.slices):
            h = s(h)
            if i in ALEX_TAPS:
                out.append(adaptive_pool(h, ALEX_POOL).flatten(1))
        return torch.cat(out, 1)


def adaptive_pool(h: torch.Tensor, k: int) -> torch.Tensor:
    """``adaptive_avg_pool2d(h, k)`` written as slices and means (the same
    bins), which the ONNX exporter takes for any input size (7 -> 3 is not
    a whole factor, which ``adaptive_avg_pool2d`` needs to export)."""
    n, m = int(h.shape[-2]), int(h.shape[-1])
    rows = []
    for i in range(k):
        a, b = (i * n) // k, -((-(i + 1) * n) // k)
        cols = []
        for j in range(k):
            c, d = (j * m) // k, -((-(j + 1) * m) // k)
            cols.append(h[:, :, a:b, c:d].mean(dim=(2, 3)))
        rows.append(torch.stack(cols, -1))
    return torch.stack(rows, -2)


class Backbone(nn.Module):
    """Frozen features: E_s(crop at 96 px), AlexNet taps, 8×8 mean colours."""

    def __init__(self, enc: nn.Module, alex: AlexTaps, enc_size: int = 96):
        super().__init__()
        self.enc, self.alex, self.enc_size = enc, alex, enc_size

    def forward(self, x):
        x96 = Fn.interpolate(x, size=(self.enc_size, self.enc_size), mode="bilinear", align_corners=False)
        z = self.enc(x96)
        col = Fn.adaptive_avg_pool2d(x, COLOUR_POOL).flatten(1)
        return torch.cat([z, self.alex(x), col], 1)


class AttributeNet(nn.Module):
    """crop (N×3×128×128 in [-1, 1]) → hair_colour, glasses, binary, regress."""

    def __init__(self, backbone: Backbone, mean: torch.Tensor, std: torch.Tensor, dim: int):
        super().__init__()
        self.backbone = backbone
        self.register_buffer("mean", mean.view(1, -1).float())
        self.register_buffer("std", std.view(1, -1).float())
        self.heads = nn.ModuleDict({k: nn.Linear(dim, n) for k, n in HEADS.items()})
        # regress: age in years (x100), the others in [0, 1]
        self.register_buffer("r_scale", torch.tensor([100.0, 1, 1, 1, 1]).view(1, -1))

    def from_features(self, f):
        f = (f - self.mean) / self.std
        return (torch.softmax(self.heads["hair_colour"](f), 1), torch.softmax(self.heads["glasses"](f), 1),
                torch.sigmoid(self.heads["binary"](f)), self.heads["regress"](f) * self.r_scale)

    def forward(self, x):
        return self.from_features(self.backbone(x))


# ------------------------------------------------------------------- labels


def _ffhq_targets(a: dict) -> dict:
    hc = [c["color"] for c in (a.get("hair") or {}).get("hairColor") or []]
    top = hc[0] if hc else None
    fh = a.get("facialHair") or {}
    return dict(
        hair_colour=HR.HAIR_COLOURS.index(top) if top in HR.HAIR_COLOURS else -1,
        glasses=GLASSES_LABEL.get(a.get("glasses"), -1),
        bald=float((a.get("hair") or {}).get("bald", 0.0) >= 0.5),
        beard=float(fh.get("beard", 0.0) >= 0.5),
        moustache=float(fh.get("moustache", 0.0) >= 0.5),
        headwear=float(any(x.get("type") == "headwear" and x.get("confidence", 0) >= 0.5
                           for x in a.get("accessories") or [])),
        male=float(a.get("gender") == "male"),
        age=float(a.get("age", np.nan)),
        bald_conf=float((a.get("hair") or {}).get("bald", np.nan)),
        beard_conf=float(fh.get("beard", np.nan)),
        moustache_conf=float(fh.get("moustache", np.nan)),
        headwear_conf=float(max([x.get("confidence", 0.0) for x in a.get("accessories") or []
                                 if x.get("type") == "headwear"] + [0.0])),
    )


def build_targets(keys: list[str], shared: Path, cache: Path) -> dict:
    """Per aligned photo: targets (NaN / -1 = unknown) and the training mask."""
    from .data import ffhq_labels, is_heldout, load_pairs, utk_labels

    n = len(keys)
    T = {"hair_colour": np.full(n, -1), "glasses": np.full(n, -1), "glasses_weak": np.full(n, -1)}
    for k in HR.BINARY_ATTRIBUTES:
        T[k] = np.full(n, np.nan)
        T[f"{k}_conf"] = np.full(n, np.nan)
    for k in HR.REGRESSED_ATTRIBUTES:
        T[k] = np.full(n, np.nan)
    labels = ffhq_labels(shared)
    for i, key in enumerate(keys):
        folder, name = key.split("/", 1)
        if folder == "ffhq128-labelled" and name in labels:
            for k, v in _ffhq_targets(labels[name]).items():
                T[k][i] = v
        elif folder == "utkface200":
            u = utk_labels(name)
            if u:
                T["age"][i] = u["age"]
                T["male"][i] = float(u["gender"] == "male")
    _, params, source, augs = load_pairs(cache)
    orig = np.array([a == "original" for a in augs])
    for p, i in zip(params[orig], source[orig]):
        folder = keys[i].split("/", 1)[0]
        if folder != "utkface200":
            length, volume, curl, fringe, _, _ = HR.hair_attributes_from_params(p)
            T["length"][i], T["volume"][i], T["curl"][i], T["fringe"][i] = length, volume, curl, fringe
        T["glasses_weak"][i] = int(round(p[S.index("glasses.type")]))
    T["heldout"] = np.array([is_heldout(k) for k in keys])
    return T


# ----------------------------------------------------------------- features


def load_backbone(image_ae: str = "image_ae", weights_dir=None) -> tuple[Backbone, dict]:
    from .train import load_modules

    mods, ck = load_modules(image_ae)
    enc = mods["enc"].eval()
    for p in enc.parameters():
        p.requires_grad_(False)
    bb = Backbone(enc, AlexTaps(weights_dir), ck["config"]["net"]["image_size"]).eval()
    return bb, ck


def to_input128(crops_uint8: np.ndarray) -> torch.Tensor:
    from .train import to_input

    return to_input(crops_uint8, INPUT)


def compute_features(bb: Backbone, crops, batch: int = 128, desc: str = "features") -> np.ndarray:
    from tqdm import tqdm

    out = []
    with torch.no_grad():
        for i in tqdm(range(0, len(crops), batch), desc=desc, unit="batch"):
            out.append(bb(to_input128(np.asarray(crops[i:i + batch]))).numpy().astype(np.float32))
    return np.concatenate(out)


def cached_features(bb: Backbone, ck: dict, crops, cache_tag: str) -> np.ndarray:
    """Backbone features of every aligned crop, cached per image-AE step."""
    RUN.mkdir(parents=True, exist_ok=True)
    path = RUN / f"features_{cache_tag}_step{ck['step']}.npy"
    if path.exists():
        f = np.load(path)
        if len(f) == len(crops):
            return f
    f = compute_features(bb, crops)
    for old in RUN.glob(f"features_{cache_tag}_step*.npy"):
        old.unlink()
    np.save(path, f)
    return f


# ----------------------------------------------------------------- training
#
# With ~400 labelled photos and ~8,800 frozen features a linear head overfits
# at once. The features are therefore projected on their first principal
# components (computed on *all* training photos, labelled or not) and
# whitened; each head is an L2-regularised (class-weighted) logistic / softmax
# regression or a ridge regression in that space, fitted to its optimum
# (L-BFGS / closed form). The number of components and the L2 weight are
# chosen per head by 5-fold cross-validation on the training photos; the
# projection is folded into the head's linear layer for export.

PCA_COMPONENTS = 256
K_GRID = (32, 64, 128, 256)  # principal components kept
#: Rare flags learnt as a ridge regression of the labels' confidence (0..1,
#: more information than the thresholded flag), thresholded where 5-fold CV
#: gives the best balanced accuracy; exported as sigmoid(SHARP * (r - t)).
CONFIDENCE_HEADS = ("bald", "beard", "moustache", "headwear")
THRESHOLDS = (0.15, 0.2, 0.25, 0.3, 0.35, 0.4, 0.5)
SHARP = 12.0
LAMBDA_GRID = (0.01, 0.1, 1.0, 10.0)
CV_REPEATS = 3


def pca_basis(Xs_train: np.ndarray, q: int = PCA_COMPONENTS, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(V (D×q), scale (q,)): whitened coordinates are ``x_std @ V / scale``."""
    torch.manual_seed(seed)
    _, sv, V = torch.svd_lowrank(torch.from_numpy(np.ascontiguousarray(Xs_train)), q=q, niter=3)
    scale = (sv / np.sqrt(len(Xs_train))).clamp(min=1e-6)
    return V.numpy().astype(np.float32), scale.numpy().astype(np.float32)


class Projection:
    """Whitened PCA, optionally block-diagonal (one block per column group).
    ``matrix`` is D × (sum of the blocks' sizes); :meth:`columns` selects the
    first k components of every block. H uses one block over all features
    (per-group blocks were tried: no better in cross-validation)."""

    def __init__(self, Xs_train: np.ndarray, groups: dict[str, slice], q: int = PCA_COMPONENTS):
        D = Xs_train.shape[1]
        blocks, self.block_cols = [], {}
        col = 0
        mats = []
        for name, sl in groups.items():
            qq = min(q, sl.stop - sl.start - 1)
            V, sc = pca_basis(Xs_train[:, sl], q=qq)
            M = np.zeros((D, qq), np.float32)
            M[sl] = V / sc
            mats.append(M)
            self.block_cols[name] = np.arange(col, col + qq)
            col += qq
        self.matrix = np.concatenate(mats, 1)

    def columns(self, k: int) -> np.ndarray:
        return np.concatenate([c[:k] for c in self.block_cols.values()])


def _class_weights(y, w, kind, ncls):
    if kind == "ce":
        yt = np.asarray(y, np.int64)
        cnt = np.maximum(np.bincount(yt, weights=w, minlength=ncls), 1e-3)
        return w * (w.sum() / (ncls * cnt))[yt]
    yt = np.asarray(y, np.float64)
    pos, neg = max((w * yt).sum(), 1e-3), max((w * (1 - yt)).sum(), 1e-3)
    return w * np.where(yt > 0.5, 0.5 * w.sum() / pos, 0.5 * w.sum() / neg)


def fit_head(Z: np.ndarray, y, kind: str, lam: float, w=None, ncls: int = 2):
    """One head on whitened coordinates Z: returns (W (k×out), b (out,)).
    kind 'ce' (softmax, int classes), 'bce' (logistic, 0/1), 'ridge' (float)."""
    w = np.ones(len(Z)) if w is None else np.asarray(w, np.float64)
    Zd = torch.from_numpy(np.asarray(Z, np.float64))
    n, k = Zd.shape
    if kind in ("ridge", "conf"):
        wt = torch.from_numpy(w)
        yt = torch.from_numpy(np.asarray(y, np.float64))
        mz = (wt[:, None] * Zd).sum(0) / wt.sum()
        my = (wt * yt).sum() / wt.sum()
        Zc = Zd - mz
        A = Zc.T @ (wt[:, None] * Zc) / wt.sum() + lam * torch.eye(k, dtype=torch.float64)
        W = torch.linalg.solve(A, Zc.T @ (wt * (yt - my)) / wt.sum())
        return W[:, None].numpy(), np.array([float(my - mz @ W)])
    out = ncls if kind == "ce" else 1
    cw = torch.from_numpy(_class_weights(y, w, kind, ncls))
    yt = torch.from_numpy(np.asarray(y, np.int64 if kind == "ce" else np.float64))
    W = torch.zeros(k, out, dtype=torch.float64, requires_grad=True)
    b = torch.zeros(out, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([W, b], lr=1, max_iter=300, line_search_fn="strong_wolfe", tolerance_grad=1e-8,
                            tolerance_change=1e-10, history_size=20)

    def closure():
        opt.zero_grad()
        o = Zd @ W + b
        if kind == "ce":
            loss = Fn.cross_entropy(o, yt, reduction="none")
        else:
            loss = Fn.binary_cross_entropy_with_logits(o[:, 0], yt, reduction="none")
        loss = (loss * cw).sum() / cw.sum() + lam * (W ** 2).sum()
        loss.backward()
        return loss

    opt.step(closure)
    return W.detach().numpy(), b.detach().numpy()


def _decide(Z, W, b, kind):
    o = Z @ W + b
    if kind == "ce":
        return o.argmax(1)
    if kind == "bce":
        return (o[:, 0] > 0).astype(np.float64)
    return o[:, 0]


def _score(y, p, kind):
    from .metrics import balanced_accuracy, mae

    return balanced_accuracy(y, p) if kind != "ridge" else -mae(y, p)


def _task_rows(T, name, train_mask):
    """(rows, targets, weights, kind, ncls) of one target on the training photos."""
    if name == "hair_colour":
        rows = np.flatnonzero(train_mask & (T["hair_colour"] >= 0))
        return rows, T["hair_colour"][rows], np.ones(len(rows)), "ce", 5
    if name == "glasses":
        strong = train_mask & (T["glasses"] >= 0)
        weak = train_mask & (T["glasses"] < 0) & (T["glasses_weak"] >= 0)
        rows = np.concatenate([np.flatnonzero(strong), np.flatnonzero(weak)])
        y = np.where(T["glasses"][rows] >= 0, T["glasses"][rows], T["glasses_weak"][rows])
        w = np.where(np.arange(len(rows)) < strong.sum(), 1.0, WEAK_GLASSES_WEIGHT)
        return rows, y, w, "ce", 3
    if name in CONFIDENCE_HEADS:
        rows = np.flatnonzero(train_mask & np.isfinite(T[f"{name}_conf"]))
        return rows, T[f"{name}_conf"][rows], np.ones(len(rows)), "conf", 2
    if name in HR.BINARY_ATTRIBUTES:
        rows = np.flatnonzero(train_mask & np.isfinite(T[name]))
        return rows, T[name][rows], np.ones(len(rows)), "bce", 2
    rows = np.flatnonzero(train_mask & np.isfinite(T[name]))
    y = T[name][rows] / (100.0 if name == "age" else 1.0)
    return rows, y, np.ones(len(rows)), "ridge", 1


def _cv_choose(Z, proj, T, name, train_mask, folds: int = 5, log=print, weak: bool = True,
               k_grid=K_GRID):
    """(k, lambda) by k-fold CV; scored on the strongly labelled rows only."""
    rows, y, w, kind, ncls = _task_rows(T, name, train_mask)
    if not weak:
        keep = w >= 1.0
        rows, y, w = rows[keep], y[keep], w[keep]
    rng = np.random.default_rng(0)
    if len(rows) > 4000:  # CV on a subsample: every strong label plus random others
        strong = np.flatnonzero(w >= 1.0)
        if len(strong) > 4000:
            strong = rng.choice(strong, 4000, replace=False)
        other = np.flatnonzero(w < 1.0)
        other = rng.choice(other, min(len(other), 3000), replace=False)
        keep = np.sort(np.concatenate([strong, other]))
        rows, y, w = rows[keep], y[keep], w[keep]
    # stratified folds (few positives: every fold gets its share), repeated
    flag = (y >= 0.5).astype(np.float64) if kind == "conf" else y
    splits = []
    for r in range(CV_REPEATS):
        fold = np.zeros(len(rows), np.int64)
        strat = flag if kind != "ridge" else np.zeros(len(rows))
        for c in np.unique(strat):
            idx = np.flatnonzero(strat == c)
            rng.shuffle(idx)
            fold[idx] = (np.arange(len(idx)) + r) % folds
        splits.append(fold)
    scores = {}
    for k in k_grid:
        cols = proj.columns(k)
        Zk = Z[rows][:, cols]
        for lam in LAMBDA_GRID:
            if kind == "conf":  # out-of-fold scores, then the best threshold
                per_th = {t: [] for t in THRESHOLDS}
                for fold in splits:
                    oof = np.zeros(len(rows))
                    for f in range(folds):
                        W, b = fit_head(Zk[fold != f], y[fold != f], kind, lam, w[fold != f], ncls)
                        oof[fold == f] = (Zk[fold == f] @ W + b)[:, 0]
                    for t in THRESHOLDS:
                        per_th[t].append(_score(flag, (oof >= t).astype(np.float64), "bce"))
                for t in THRESHOLDS:
                    scores[(k, lam, t)] = float(np.mean(per_th[t]))
                continue
            s = []
            for fold in splits:
                for f in range(folds):
                    tr = fold != f
                    te = (fold == f) & (w >= 1.0)
                    if te.sum() < 3 or (kind != "ridge" and len(np.unique(y[te])) < 2):
                        continue
                    W, b = fit_head(Zk[tr], y[tr], kind, lam, w[tr], ncls)
                    s.append(_score(y[te], _decide(Zk[te], W, b, kind), kind))
            scores[(k, lam, None)] = float(np.mean(s)) if s else float("-inf")
    best = max(scores, key=lambda kl: (round(scores[kl], 4), -kl[0], kl[1], kl[2] or 0))
    log(f"  {name}: {'balanced accuracy' if kind != 'ridge' else '-MAE'} ({CV_REPEATS}x stratified 5-fold CV) "
        f"best k={best[0]} lambda={best[1]:g}" + (f" threshold={best[2]:g}" if best[2] is not None else "")
        + f": {scores[best]:.3f}")
    return best, {f"k{k}_lambda{lam:g}" + (f"_t{t:g}" if t is not None else ""): round(v, 4)
                  for (k, lam, t), v in scores.items()}


def train_heads(Z: np.ndarray, proj: Projection, T: dict, log=print, cv: bool = True,
                k_grid=K_GRID) -> tuple[dict, dict]:
    """Fits every head on the training photos (whitened PCA coordinates Z);
    returns {name: (k, W, b)} and the CV report."""
    train_mask = ~T["heldout"]
    names = ["hair_colour", "glasses", *HR.BINARY_ATTRIBUTES, *HR.REGRESSED_ATTRIBUTES]
    heads, report = {}, {}
    for name in names:
        rows, y, w, kind, ncls = _task_rows(T, name, train_mask)
        (k, lam, t), scores = (_cv_choose(Z, proj, T, name, train_mask, log=log, k_grid=k_grid) if cv
                               else ((k_grid[1], 1.0, 0.3 if kind == "conf" else None), {}))
        W, b = fit_head(Z[rows][:, proj.columns(k)], y, kind, lam, w, ncls)
        if kind == "conf":  # sigmoid(SHARP * (r - t)): 0.5 at the chosen threshold
            W, b = W * SHARP, (b - t) * SHARP
        heads[name] = (k, W, b)
        report[name] = {"components": k, "lambda": lam, "threshold": t, "cv": scores, "train_rows": int(len(rows))}
    return heads, report


def assemble(bb: Backbone, mean: np.ndarray, std: np.ndarray, proj: Projection, heads: dict) -> AttributeNet:
    """The exportable net: the PCA projection folded into each linear head."""
    dim = len(mean)
    net = AttributeNet(bb, torch.from_numpy(mean), torch.from_numpy(std), dim)

    def full(name):
        k, W, b = heads[name]
        Wf = proj.matrix[:, proj.columns(k)] @ W  # D × out
        return torch.from_numpy(Wf.T.astype(np.float32)), torch.from_numpy(np.asarray(b, np.float32))

    with torch.no_grad():
        for name in ("hair_colour", "glasses"):
            W, b = full(name)
            net.heads[name].weight.copy_(W)
            net.heads[name].bias.copy_(b)
        for group, names in (("binary", HR.BINARY_ATTRIBUTES), ("regress", HR.REGRESSED_ATTRIBUTES)):
            for j, k in enumerate(names):
                W, b = full(k)
                net.heads[group].weight[j] = W[0]
                net.heads[group].bias[j] = b[0]
    return net.eval()


# --------------------------------------------------------------- evaluation


def outputs_to_arrays(outs) -> dict:
    """(hair_colour, glasses, binary, regress) tensors/arrays → dict of numpy arrays."""
    names = ("hair_colour", "glasses", "binary", "regress")
    if isinstance(outs, dict):
        return {k: np.asarray(outs[k]) for k in names}
    return {k: (v.numpy() if hasattr(v, "numpy") else np.asarray(v)) for k, v in zip(names, outs)}


def evaluate(pred: dict, T: dict, keys: list[str], rows: np.ndarray | None = None) -> dict:
    """Balanced accuracy per attribute and MAEs on the held-out photos."""
    from .metrics import balanced_accuracy, mae

    held = T["heldout"] if rows is None else np.isin(np.arange(len(keys)), rows)
    folder = np.array([k.split("/", 1)[0] for k in keys])
    res: dict = {}

    def ba(name, y, p, m):
        m = m & held
        if m.sum() == 0:
            return
        res[name] = {"balanced_accuracy": round(balanced_accuracy(y[m], p[m]), 3), "n": int(m.sum()),
                     "positives_or_classes": {str(c): int((y[m] == c).sum()) for c in np.unique(y[m])}}

    ba("hair_colour", T["hair_colour"], pred["hair_colour"].argmax(1), T["hair_colour"] >= 0)
    ba("glasses", T["glasses"], pred["glasses"].argmax(1), T["glasses"] >= 0)
    for j, k in enumerate(HR.BINARY_ATTRIBUTES):
        ba(k, np.nan_to_num(T[k]).astype(int), (pred["binary"][:, j] >= 0.5).astype(int), np.isfinite(T[k]))
    for j, k in enumerate(HR.REGRESSED_ATTRIBUTES):
        m = np.isfinite(T[k]) & held
        if k == "age":
            for src in ("ffhq128-labelled", "utkface200"):
                mm = m & (folder == src)
                if mm.any():
                    res[f"age_mae_{src}"] = {"mae_years": round(mae(T[k][mm], pred["regress"][mm, j]), 2),
                                             "n": int(mm.sum())}
        elif m.any():
            res[f"{k}_mae"] = {"mae": round(mae(T[k][m], np.clip(pred["regress"][m, j], 0, 1)), 3),
                               "n": int(m.sum()), "target_std": round(float(np.std(T[k][m])), 3)}
    return res


def draw_thresholds(pred: dict, T: dict, keys: list[str]) -> dict:
    """Per flag, the score above which an overlay is *drawn*: the (1 - p)
    quantile of the scores on the training photos with loose crops, p the
    flag's prevalence in the labelled training photos. Balanced accuracy
    (threshold 0.5) favours recall on rare flags; a drawn hat or beard
    that is not there is worse than a missing one."""
    train = ~T["heldout"] & np.array([not k.startswith("utkface200/") for k in keys])
    out = {}
    for j, name in enumerate(HR.BINARY_ATTRIBUTES):
        if name == "male":
            continue
        lab = train & np.isfinite(T[name])
        prev = float(T[name][lab].mean())
        q = float(np.quantile(pred["binary"][train, j], 1.0 - prev))
        out[name] = round(max(0.5, q), 3)
    return out


# ------------------------------------------------------------------- export


def export(net: AttributeNet, check_crops: np.ndarray, report_extra: dict, folder: Path = MODELS) -> dict:
    from . import formats, onnx_export

    spec = [
        formats.tensor_spec("hair_colour", ["batch", 5], classes=list(HR.HAIR_COLOURS), activation="softmax"),
        formats.tensor_spec("glasses", ["batch", 3], classes=list(HR.GLASSES), activation="softmax"),
        formats.tensor_spec("binary", ["batch", 5], names=list(HR.BINARY_ATTRIBUTES), activation="sigmoid",
                            threshold=0.5),
        formats.tensor_spec("regress", ["batch", 5], names=list(HR.REGRESSED_ATTRIBUTES),
                            units=["years", "0..1", "0..1", "0..1", "0..1"]),
    ]
    meta = formats.make_metadata(
        name=ONNX_NAME, role="attributes", version=VERSION,
        inputs=[formats.image_input("image", INPUT)], outputs=spec,
        training_data={"faces": "ffhq128-labelled attributes.jsonl (training split), UTKFace file names "
                                "(age, gender), auto-artist hair fits (pseudo-labels) of the training photos",
                       "split": "docs/split.md (held-out photos never used)",
                       "licence": "non-commercial (FFHQ CC BY-NC-SA 4.0, UTKFace research only)",
                       "backbones": "E_s (runs/image_ae, frozen), ImageNet AlexNet conv1-5 (frozen, "
                                    "../shared/weights/alexnet_lpips.npz)"},
        decode="avatarizer.hair.decode_attributes", **report_extra)
    from .ship import BUILD

    x = to_input128(check_crops)
    BUILD.mkdir(parents=True, exist_ok=True)
    rep = onnx_export.export_onnx(net, x[:1], BUILD / ONNX_FILE, ONNX_NAME, ["image"],
                                  ["hair_colour", "glasses", "binary", "regress"], meta,
                                  check_inputs=[x[:4], x[4:8]], atol=1e-4, manifest_folder=BUILD)
    fp16 = onnx_export.convert_fp16(BUILD / ONNX_FILE, folder / SHIP_FILE, name=SHIP_NAME,
                                    check_inputs=[{"image": x[:4].numpy()}, {"image": x[4:8].numpy()}],
                                    manifest_folder=folder)
    rep["fp16"] = {k: fp16.get(k) for k in ("size", "sha256", "max_abs_diff_vs_fp32") if k in fp16}
    return rep


# ---------------------------------------------------------------------- CLI


def run(image_ae: str = "image_ae", cache: Path | None = None, shared: Path | None = None, cv: bool = True,
        do_export: bool = True, log=print) -> dict:
    from .data import load_aligned

    torch.set_num_threads(1)
    torch.manual_seed(0)
    t0 = time.time()
    cache = cache_dir(cache)
    shared = shared_dir(shared)
    al = load_aligned(cache)
    T = build_targets(al.keys, shared, cache)
    bb, ck = load_backbone(image_ae)
    log(f"attributes: backbone E_s from runs/{image_ae} (step {ck['step']}) + AlexNet; features of "
        f"{len(al.keys)} aligned photos")
    feats = cached_features(bb, ck, al.crops, image_ae)
    train = ~T["heldout"]
    mean = feats[train].mean(0)
    std = feats[train].std(0) + 1e-3
    Xs = ((feats - mean) / std).astype(np.float32)
    zdim = bb.enc.fc.out_features
    proj = Projection(Xs[train], {"all": slice(0, Xs.shape[1])})
    Z = Xs @ proj.matrix
    heads, cvrep = train_heads(Z, proj, T, log=log, cv=cv)
    net = assemble(bb, mean.astype(np.float32), std.astype(np.float32), proj, heads)
    with torch.no_grad():
        pred = outputs_to_arrays(net.from_features(torch.from_numpy(feats)))
    res = evaluate(pred, T, al.keys)
    # E_s alone, for the record: the same recipe on the z_s columns only
    Xz = np.ascontiguousarray(Xs[:, :zdim])
    proj_z = Projection(Xz[train], {"z_s": slice(0, zdim)}, q=256)
    heads_z, _ = train_heads(Xz @ proj_z.matrix, proj_z, T, log=lambda *_: None, cv=cv,
                             k_grid=(32, 64, 128, 256))
    net_z = assemble(bb, mean[:zdim].astype(np.float32), std[:zdim].astype(np.float32), proj_z, heads_z)
    with torch.no_grad():
        res_z = evaluate(outputs_to_arrays(net_z.from_features(torch.from_numpy(feats[:, :zdim]))), T, al.keys)
    draw = draw_thresholds(pred, T, al.keys)
    log(f"attributes: drawing thresholds (prevalence-matched on training photos): {draw}")
    report = {"heldout": res, "heldout_es_only": res_z, "cv": cvrep, "image_ae_step": int(ck["step"]),
              "draw_thresholds": draw, "seconds": round(time.time() - t0, 1)}
    RUN.mkdir(parents=True, exist_ok=True)
    torch.save({"state": net.state_dict(), "image_ae": image_ae, "image_ae_step": ck["step"],
                "dim": len(mean)}, RUN / "heads.pt")
    np.savez_compressed(RUN / "predictions.npz", keys=np.array(al.keys), **pred)
    if do_export:
        rep = export(net, np.asarray(al.crops[np.flatnonzero(T["heldout"])[:8]]),
                     {"heldout_metrics": {k: v for k, v in res.items()}, "draw_thresholds": draw})
        report["onnx"] = {k: rep[k] for k in ("path", "max_abs_diff", "size", "sha256") if k in rep}
        # predictions of the shipped file on every photo (what retrieval and the bank use)
        pred_onnx = onnx_predictions(MODELS / SHIP_FILE, al.crops)
        report["heldout_onnx"] = evaluate(pred_onnx, T, al.keys)
        np.savez_compressed(RUN / "predictions.npz", keys=np.array(al.keys), **pred_onnx)
    (RUN / "report.json").write_text(json.dumps(report, indent=1))
    log(json.dumps(report["heldout"], indent=1))
    log(f"attributes: done in {time.time() - t0:.0f} s; report {RUN / 'report.json'}")
    return report


def onnx_predictions(path: Path, crops, batch: int = 128) -> dict:
    """Runs the exported file with ONNX Runtime (1 thread) on uint8 crops."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    sess = ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])
    names = [o.name for o in sess.get_outputs()]
    outs = {k: [] for k in names}
    for i in range(0, len(crops), batch):
        res = sess.run(names, {"image": to_input128(np.asarray(crops[i:i + batch])).numpy()})
        for k, v in zip(names, res):
            outs[k].append(v)
    return {k: np.concatenate(v) for k, v in outs.items()}


def load_predictions() -> dict:
    """The exported model's predictions for every aligned photo (``runs/attributes/predictions.npz``)."""
    path = RUN / "predictions.npz"
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing: run `avatarizer-export attributes` first")
    with np.load(path) as z:
        return {k: z[k] for k in z.files}


def main_attributes(args) -> int:
    run(image_ae=args.image_ae, cache=args.cache, shared=args.shared, cv=not args.no_cv,
        do_export=not args.no_export)
    return 0


def add_parser(sub):
    p = sub.add_parser("attributes", help="train, evaluate and export the attribute regressor H "
                                          "(docs/hair.md)")
    p.add_argument("--image-ae", default="image_ae", help="run folder of the frozen image encoder E_s")
    p.add_argument("--cache")
    p.add_argument("--shared")
    p.add_argument("--no-cv", action="store_true", help="skip the weight-decay cross-validation")
    p.add_argument("--no-export", action="store_true", help="train and evaluate only")
    p.set_defaults(func=main_attributes)
