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
  linear head per attribute group (trained; everything before is frozen):
  ``hair_colour`` (N×5 softmax: black, brown, blond, red, gray), ``glasses``
  (N×3 softmax: none, reading, sunglasses), ``binary`` (N×5 sigmoid: bald,
  beard, moustache, headwear, male) and ``regress`` (N×5: age in years;
  hair length, volume, curl, fringe in [0, 1]).

Training data (held-out photos never used; see ``docs/split.md``):
``ffhq128-labelled/attributes.jsonl`` (training split, 394 photos) for hair
colour (top ``hairColor``, 'other' dropped), glasses, bald, beard,
moustache, headwear, age, gender; the UTKFace file names for age and gender;
the auto-artist's hair fits (``cache/pairs/params.npy``, original rows) as
pseudo-labels for hair length, volume, curl and fringe (not on UTKFace's
tight crops); the artist's conservative glasses detector as down-weighted
extra glasses labels. Classes are weighted by inverse frequency. Each head's
weight decay is chosen by 5-fold cross-validation on the training photos.

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
VERSION = "1.0.0"
INPUT = 128
COLOUR_POOL = 8
ALEX_TAPS = (2, 3, 4)  # relu3, relu4, relu5
ALEX_POOL = 3
GLASSES_LABEL = {"NoGlasses": 0, "ReadingGlasses": 1, "Sunglasses": 2}  # SwimmingGoggles: dropped
WEAK_GLASSES_WEIGHT = 0.3
WD_GRID = (1e-3, 1e-2, 1e-1, 1.0)
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
                out.append(Fn.adaptive_avg_pool2d(h, ALEX_POOL).flatten(1))
        return torch.cat(out, 1)


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
    )


def build_targets(keys: list[str], shared: Path, cache: Path) -> dict:
    """Per aligned photo: targets (NaN / -1 = unknown) and the training mask."""
    from .data import ffhq_labels, is_heldout, load_pairs, utk_labels

    n = len(keys)
    T = {"hair_colour": np.full(n, -1), "glasses": np.full(n, -1), "glasses_weak": np.full(n, -1)}
    for k in HR.BINARY_ATTRIBUTES:
        T[k] = np.full(n, np.nan)
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


def _fit_linear(X, y, kind: str, wd: float, weights=None, steps: int = 300, lr: float = 3e-3, ncls: int = 2,
                seed: int = 0):
    """One linear head on standardised features, full batch Adam.
    kind: 'ce' (y int classes), 'bce' (y 0/1 float), 'l1' (y float)."""
    g = torch.Generator().manual_seed(seed)
    Xt = torch.from_numpy(X)
    out = ncls if kind == "ce" else 1
    lin = nn.Linear(X.shape[1], out)
    with torch.no_grad():
        lin.weight.copy_(torch.randn(out, X.shape[1], generator=g) * 0.001)
        lin.bias.zero_()
    sw = torch.ones(len(y)) if weights is None else torch.from_numpy(np.asarray(weights, np.float32))
    if kind == "ce":
        yt = torch.from_numpy(np.asarray(y, np.int64))
        cnt = torch.bincount(yt, weights=sw, minlength=ncls).clamp(min=1e-3)
        cw = (sw.sum() / (ncls * cnt)).float()
    elif kind == "bce":
        yt = torch.from_numpy(np.asarray(y, np.float32))
        pos = float((sw * yt).sum())
        neg = float((sw * (1 - yt)).sum())
        pw = torch.tensor(neg / max(pos, 1e-3))
    else:
        yt = torch.from_numpy(np.asarray(y, np.float32))
    opt = torch.optim.Adam(lin.parameters(), lr=lr, weight_decay=0.0)
    for _ in range(steps):
        o = lin(Xt)
        if kind == "ce":
            loss = (Fn.cross_entropy(o, yt, weight=cw, reduction="none") * sw).sum() / (cw[yt] * sw).sum()
        elif kind == "bce":
            loss = (Fn.binary_cross_entropy_with_logits(o[:, 0], yt, pos_weight=pw, reduction="none") * sw).mean()
        else:
            loss = ((o[:, 0] - yt).abs() * sw).mean()
        loss = loss + wd * (lin.weight ** 2).sum()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return lin


def _predict(lin, X, kind):
    with torch.no_grad():
        o = lin(torch.from_numpy(X))
    if kind == "ce":
        return o.argmax(1).numpy()
    if kind == "bce":
        return (o[:, 0] > 0).numpy().astype(np.float64)
    return o[:, 0].numpy()


def _score(y, p, kind):
    from .metrics import balanced_accuracy, mae

    return balanced_accuracy(y, p) if kind != "l1" else -mae(y, p)


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
    if name in HR.BINARY_ATTRIBUTES:
        rows = np.flatnonzero(train_mask & np.isfinite(T[name]))
        return rows, T[name][rows], np.ones(len(rows)), "bce", 2
    rows = np.flatnonzero(train_mask & np.isfinite(T[name]))
    y = T[name][rows] / (100.0 if name == "age" else 1.0)
    return rows, y, np.ones(len(rows)), "l1", 1


def _cv_choose(X, T, name, train_mask, folds: int = 5, log=print):
    """Weight decay by k-fold CV on the *strongly* labelled training rows."""
    rows, y, w, kind, ncls = _task_rows(T, name, train_mask)
    rng = np.random.default_rng(0)
    if len(rows) > 3000:  # big pseudo-labelled tasks: CV on a subsample (all strong labels kept)
        keep = np.sort(np.concatenate([np.flatnonzero(w >= 1.0)[:3000] if kind == "l1" or name != "glasses"
                                       else np.flatnonzero(w >= 1.0),
                                       rng.choice(np.flatnonzero(w < 1.0), min(2000, int((w < 1.0).sum())),
                                                  replace=False) if (w < 1.0).any() else np.zeros(0, int)]))
        if name != "glasses":
            keep = np.sort(rng.choice(len(rows), 3000, replace=False))
        rows, y, w = rows[keep], y[keep], w[keep]
    strong = w >= 1.0
    fold = rng.integers(0, folds, len(rows))
    best, scores = None, {}
    for wd in WD_GRID:
        s = []
        for f in range(folds):
            tr = fold != f
            te = (fold == f) & strong
            if te.sum() < 3 or (kind != "l1" and len(np.unique(y[te])) < 2):
                continue
            lin = _fit_linear(X[rows[tr]], y[tr], kind, wd, w[tr], ncls=ncls,
                              steps=150 if len(rows) > 3000 else 300)
            s.append(_score(y[te], _predict(lin, X[rows[te]], kind), kind))
        scores[wd] = float(np.mean(s)) if s else float("nan")
        if best is None or scores[wd] > scores[best]:
            best = wd
    log(f"  {name}: CV {'balanced accuracy' if kind != 'l1' else '-MAE'} per weight decay "
        + ", ".join(f"{k:g}: {v:.3f}" for k, v in scores.items()) + f" -> {best:g}")
    return best, scores


def train_heads(Xs: np.ndarray, T: dict, log=print, cv: bool = True) -> tuple[dict, dict]:
    """Fits every head on the training photos; returns the linear layers per
    target name and the CV report."""
    train_mask = ~T["heldout"]
    names = ["hair_colour", "glasses", *HR.BINARY_ATTRIBUTES, *HR.REGRESSED_ATTRIBUTES]
    lins, report = {}, {}
    for name in names:
        wd, scores = _cv_choose(Xs, T, name, train_mask, log=log) if cv else (WD_GRID[1], {})
        rows, y, w, kind, ncls = _task_rows(T, name, train_mask)
        lins[name] = _fit_linear(Xs[rows], y, kind, wd, w, ncls=ncls, steps=400)
        report[name] = {"weight_decay": wd, "cv": scores, "train_rows": int(len(rows))}
    return lins, report


def assemble(bb: Backbone, mean: np.ndarray, std: np.ndarray, lins: dict) -> AttributeNet:
    dim = len(mean)
    net = AttributeNet(bb, torch.from_numpy(mean), torch.from_numpy(std), dim)
    with torch.no_grad():
        net.heads["hair_colour"].weight.copy_(lins["hair_colour"].weight)
        net.heads["hair_colour"].bias.copy_(lins["hair_colour"].bias)
        net.heads["glasses"].weight.copy_(lins["glasses"].weight)
        net.heads["glasses"].bias.copy_(lins["glasses"].bias)
        for j, k in enumerate(HR.BINARY_ATTRIBUTES):
            net.heads["binary"].weight[j] = lins[k].weight[0]
            net.heads["binary"].bias[j] = lins[k].bias[0]
        for j, k in enumerate(HR.REGRESSED_ATTRIBUTES):
            net.heads["regress"].weight[j] = lins[k].weight[0]
            net.heads["regress"].bias[j] = lins[k].bias[0]
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
    x = to_input128(check_crops)
    return onnx_export.export_onnx(net, x[:1], folder / ONNX_FILE, ONNX_NAME, ["image"],
                                   ["hair_colour", "glasses", "binary", "regress"], meta,
                                   check_inputs=[x[:4], x[4:8]], atol=1e-4)


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
    lins, cvrep = train_heads(Xs, T, log=log, cv=cv)
    net = assemble(bb, mean.astype(np.float32), std.astype(np.float32), lins)
    with torch.no_grad():
        pred = outputs_to_arrays(net.from_features(torch.from_numpy(feats)))
    res = evaluate(pred, T, al.keys)
    # E_s alone, for the record (same heads, only the z_s columns)
    zdim = bb.enc.fc.out_features
    lins_z, _ = train_heads(np.ascontiguousarray(Xs[:, :zdim]), {**T}, log=lambda *_: None, cv=False)
    with torch.no_grad():
        pz = {}
        Xz = torch.from_numpy(np.ascontiguousarray(Xs[:, :zdim]))
        pz["hair_colour"] = torch.softmax(lins_z["hair_colour"](Xz), 1).numpy()
        pz["glasses"] = torch.softmax(lins_z["glasses"](Xz), 1).numpy()
        pz["binary"] = np.stack([torch.sigmoid(lins_z[k](Xz))[:, 0].numpy() for k in HR.BINARY_ATTRIBUTES], 1)
        pz["regress"] = np.stack([lins_z[k](Xz)[:, 0].numpy() * (100 if k == "age" else 1)
                                  for k in HR.REGRESSED_ATTRIBUTES], 1)
    res_z = evaluate(pz, T, al.keys)
    report = {"heldout": res, "heldout_es_only": res_z, "cv": cvrep, "image_ae_step": int(ck["step"]),
              "seconds": round(time.time() - t0, 1)}
    RUN.mkdir(parents=True, exist_ok=True)
    torch.save({"state": net.state_dict(), "image_ae": image_ae, "image_ae_step": ck["step"],
                "dim": len(mean)}, RUN / "heads.pt")
    np.savez_compressed(RUN / "predictions.npz", keys=np.array(al.keys), **pred)
    if do_export:
        rep = export(net, np.asarray(al.crops[np.flatnonzero(T["heldout"])[:8]]),
                     {"heldout_metrics": {k: v for k, v in res.items()}})
        report["onnx"] = {k: rep[k] for k in ("path", "max_abs_diff", "size", "sha256") if k in rep}
        # predictions of the shipped file on every photo (what retrieval and the bank use)
        from .onnx_export import ort_outputs

        x_all = []
        for i in range(0, len(al.crops), 256):
            x_all.append({"image": to_input128(np.asarray(al.crops[i:i + 256])).numpy()})
        outs = ort_outputs(MODELS / ONNX_FILE, x_all)
        pred_onnx = {k: np.concatenate([o[k] for o in outs]) for k in outs[0]}
        report["heldout_onnx"] = evaluate(pred_onnx, T, al.keys)
        np.savez_compressed(RUN / "predictions.npz", keys=np.array(al.keys), **pred_onnx)
    (RUN / "report.json").write_text(json.dumps(report, indent=1))
    log(json.dumps(report["heldout"], indent=1))
    log(f"attributes: done in {time.time() - t0:.0f} s; report {RUN / 'report.json'}")
    return report


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
