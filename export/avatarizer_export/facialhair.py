"""``avatarizer-export facial-hair``: fit the facial-hair network (``avatarizer.facialhair``).

Beards and moustaches were the accessories the avatars missed most: on the
held-out photos labelled by eye the shipped pipeline drew 41 of 82 beards
and 42 of 95 moustaches (session 29), because H's heads (linear over
features distilled from ImageNet) and the artist's detector (an MLP over
hand-measured cues: darker, more textured, less skin-coloured than the
cheeks) both miss light beards (red, grey, white) and stubble. This
network looks at the lower face only: a small CNN (five 3x3 convolutions,
16-64 channels, mean and max pooled; ~20 M multiply-adds a pass, two
passes: the crop and its mirror image) over the 64x80 pixel block of the
aligned 128-px crop (:data:`avatarizer.facialhair.REGION`)
the SDK's hair stage reads, with two sigmoid outputs, P(beard) and
P(moustache).

Data (the training split of :func:`avatarizer_export.data.is_heldout` only):

* the project's labels by eye (``labels/*.jsonl``: ``beard`` and
  ``moustache``, two labellers, :func:`avatarizer_export.data.eye_labels`),
* the shared labels of ``ffhq128-labelled`` (``facialHair`` >= 0.5) where the
  photo has none by eye,
* UTKFace women (13 and over) and children under 13, by their file names,
  as photos without either: 1,500 of them drawn afresh each epoch (the
  network had read the wrinkles of very old women and a baby's hand at
  its mouth as a beard).

Training: AdamW, one-cycle learning rate, 30 epochs, batch 64, positive
classes weighted by sqrt(negatives / positives); augmentation by mirror
image, shifts of up to 4 px, brightness, contrast, saturation (15%
grey), colour cast; predictions average the crop and its mirror image.
The drawing thresholds are chosen on 3-fold out-of-fold predictions of the
labelled training photos (not the UTKFace negatives, which would flatter
precision): the lowest with precision at least :data:`PRECISION`; the
decision threshold (what ``attributes`` reports as decided) the best
balanced accuracy there. The held-out photos are scored once, for the report.

    avatarizer-export facial-hair [--shared ../shared] [--cache cache]
    # writes sdk/avatarizer/data/facial_hair.onnx and facial_hair.json
"""
from __future__ import annotations

import hashlib
import json
import re
import time
from pathlib import Path

import numpy as np

from .data import eye_labels, ffhq_labels, is_heldout, load_aligned
from .onnx_util import staged
from .paths import ROOT, cache_dir, shared_dir

DATA = ROOT / "sdk" / "avatarizer" / "data"
#: the drawing thresholds' out-of-fold precision (the other accessories' target)
PRECISION = 0.9
EPOCHS, BATCH, NEGATIVES_PER_EPOCH, FOLDS, SEED = 30, 64, 1500, 3, 0
_UTK = re.compile(r"^utkface[^/]*/(\d{1,3})_([01])_")


def training_rows(shared: Path, aligned) -> dict:
    """The labelled rows of the aligned cache: ``keys``, ``y`` (N x 2:
    beard, moustache), ``labelled`` (a label by eye or a shared one; the
    others are UTKFace women and children by name), ``held`` and ``index``
    (rows of the cache)."""
    lab: dict[str, tuple[int, int]] = {}
    for k, v in eye_labels().items():
        if isinstance(v.get("beard"), int) and isinstance(v.get("moustache"), int):
            lab[k] = (int(v["beard"]), int(v["moustache"]))
    for name, a in ffhq_labels(Path(shared)).items():
        fh = a.get("facialHair") or {}
        lab.setdefault(f"ffhq128-labelled/{name}", (int(fh.get("beard", 0.0) >= 0.5),
                                                    int(fh.get("moustache", 0.0) >= 0.5)))
    labelled = set(lab)
    for k in aligned.keys:
        m = _UTK.match(k)
        if m and k not in lab and (m.group(2) == "1" or int(m.group(1)) < 13):
            lab[k] = (0, 0)  # a woman or a child by the file name: neither
    pos = {k: i for i, k in enumerate(aligned.keys)}
    keys = [k for k in sorted(lab) if k in pos]
    return {"keys": keys, "y": np.array([lab[k] for k in keys], np.float32),
            "labelled": np.array([k in labelled for k in keys], bool),
            "held": np.array([is_heldout(k) for k in keys], bool),
            "index": np.array([pos[k] for k in keys], np.int64)}


def _net():
    import torch
    from torch import nn

    class FacialHairNet(nn.Module):
        def __init__(self, w: int = 16):
            super().__init__()

            def block(i, o):
                return nn.Sequential(nn.Conv2d(i, o, 3, padding=1, bias=False), nn.BatchNorm2d(o), nn.ReLU())

            self.features = nn.Sequential(block(3, w), nn.MaxPool2d(2), block(w, 2 * w), nn.MaxPool2d(2),
                                          block(2 * w, 4 * w), nn.MaxPool2d(2), block(4 * w, 4 * w),
                                          block(4 * w, 4 * w))
            self.drop = nn.Dropout(0.3)
            self.head = nn.Linear(8 * w, 2)

        def logits(self, x):  # x: N x 3 x 64 x 80, RGB in [0, 1]
            h = self.features((x - 0.5) / 0.25)
            return self.head(self.drop(torch.cat([h.mean((2, 3)), h.amax((2, 3))], 1)))

        def forward(self, x):  # probabilities, the crop's and its mirror image's averaged
            return 0.5 * (torch.sigmoid(self.logits(x)) + torch.sigmoid(self.logits(x.flip(3))))

    return FacialHairNet()


def _augment(x, rng: np.random.Generator):
    import torch
    import torch.nn.functional as F

    n = x.shape[0]
    x = x.clone()
    flip = torch.from_numpy(rng.random(n) < 0.5)
    x[flip] = x[flip].flip(3)
    pad = F.pad(x, (4, 4, 4, 4), mode="replicate")
    h, w = x.shape[2:]
    shifts = rng.integers(0, 9, (n, 2))
    x = torch.stack([pad[i, :, dy:dy + h, dx:dx + w] for i, (dy, dx) in enumerate(shifts)])

    def u(*shape, amount):
        return torch.from_numpy(1.0 + amount * (2.0 * rng.random(shape) - 1.0)).float()

    mean = x.mean((1, 2, 3), keepdim=True)
    x = (x - mean) * u(n, 1, 1, 1, amount=0.3) + mean * u(n, 1, 1, 1, amount=0.3)
    grey = x.mean(1, keepdim=True)
    sat = u(n, 1, 1, 1, amount=0.4)
    sat[torch.from_numpy(rng.random(n) < 0.15)] = 0.0
    x = grey + (x - grey) * sat
    return (x * u(n, 3, 1, 1, amount=0.08)).clamp(0, 1)


def _tensor(crops, rows):
    import torch

    from avatarizer.facialhair import region

    return torch.from_numpy(np.stack([region(crops[i]) for i in rows])).permute(0, 3, 1, 2).float() / 255.0


def fit_net(crops, index: np.ndarray, y: np.ndarray, negatives: np.ndarray, *, seed: int = SEED,
            progress: bool = False, desc: str = "facial hair"):
    """The network fitted on cache rows ``index`` (labels ``y``); rows where
    ``negatives`` is set are sampled, :data:`NEGATIVES_PER_EPOCH` an epoch."""
    import torch
    import torch.nn.functional as F
    from tqdm import tqdm

    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    net = _net()
    x_all, y_all = _tensor(crops, index), torch.from_numpy(y)
    pos = y_all[~torch.from_numpy(negatives)].mean(0).clamp(1e-3, 1 - 1e-3)
    weight = ((1 - pos) / pos).sqrt()
    keep, neg = np.flatnonzero(~negatives), np.flatnonzero(negatives)
    per_epoch = len(keep) + min(NEGATIVES_PER_EPOCH, len(neg))
    opt = torch.optim.AdamW(net.parameters(), 2e-3, weight_decay=1e-3)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, 3e-3, total_steps=EPOCHS * -(-per_epoch // BATCH))
    for _ in tqdm(range(EPOCHS), desc=desc, disable=not progress):
        net.train()
        rows = np.concatenate([keep, rng.choice(neg, min(NEGATIVES_PER_EPOCH, len(neg)), replace=False)])
        rows = rows[rng.permutation(len(rows))]
        for j in range(0, len(rows), BATCH):
            b = torch.from_numpy(rows[j:j + BATCH])
            loss = F.binary_cross_entropy_with_logits(net.logits(_augment(x_all[b], rng)), y_all[b],
                                                      pos_weight=weight)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
    return net.eval()


def predict(net, crops, index: np.ndarray) -> np.ndarray:
    import torch

    out = []
    with torch.no_grad():
        for j in range(0, len(index), 256):
            out.append(net(_tensor(crops, index[j:j + 256])).numpy())
    return np.concatenate(out) if out else np.zeros((0, 2), np.float32)


def scores(p: np.ndarray, y: np.ndarray, th: float) -> dict:
    """Recall, precision, balanced accuracy and counts of ``p >= th``."""
    d = p >= th
    tp, fp, fn = int((d & y).sum()), int((d & ~y).sum()), int((~d & y).sum())
    return {"n": int(len(y)), "positives": int(y.sum()), "drawn": tp + fp, "recall": round(tp / max(tp + fn, 1), 3),
            "precision": round(tp / max(tp + fp, 1), 3),
            "balanced_accuracy": round(0.5 * (d[y].mean() + (~d[~y]).mean()), 3) if 0 < y.sum() < len(y) else None,
            "invented": fp, "missed": fn}


def fit(shared: Path, cache: Path, *, data: Path | None = None, quiet: bool = False) -> dict:
    """Fits the network (out-of-fold thresholds, then on every training
    photo), writes ``facial_hair.onnx`` and ``facial_hair.json`` into
    ``data`` (default the SDK's data folder) and returns the JSON document."""
    import torch

    t0 = time.time()
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(max(1, min(threads, 4)))
        return _fit(shared, cache, data, quiet, t0)
    finally:
        torch.set_num_threads(threads)  # (make models' later steps keep their own)


def _fit(shared: Path, cache: Path, data: Path | None, quiet: bool, t0: float) -> dict:
    import torch

    from avatarizer import facialhair as FH

    from .attributes import _best_ba_threshold
    from .detectors import precision_threshold

    al = load_aligned(cache)
    rows = training_rows(shared, al)
    y, lab, held, index = rows["y"], rows["labelled"], rows["held"], rows["index"]
    tr = np.flatnonzero(~held)
    if y[tr][lab[tr]].sum(0).min() < 20:
        raise SystemExit(f"facial-hair: too few labelled beards or moustaches among the training photos "
                         f"({y[tr][lab[tr]].sum(0).astype(int).tolist()}): label more (labels/*.jsonl)")
    # out of fold, the labelled training photos: the thresholds
    fold = np.random.default_rng(SEED).integers(0, FOLDS, len(tr))
    oof = np.zeros((len(tr), 2), np.float32)
    for f in range(FOLDS):
        part = tr[fold != f]
        net = fit_net(al.crops, index[part], y[part], ~lab[part], seed=SEED + 1 + f, progress=not quiet,
                      desc=f"facial hair, fold {f + 1} of {FOLDS}")
        oof[fold == f] = predict(net, al.crops, index[tr[fold == f]])
    lo = lab[tr]
    names = FH.OUTPUTS
    th = {n: {"draw": precision_threshold(oof[lo, j], (y[tr][lo, j] > 0).astype(float), PRECISION),
              "decision": _best_ba_threshold(oof[lo, j], y[tr][lo, j] > 0)} for j, n in enumerate(names)}
    net = fit_net(al.crops, index[tr], y[tr], ~lab[tr], seed=SEED, progress=not quiet)
    report: dict = {"out of fold (labelled training photos)": {
        n: scores(oof[lo, j], y[tr][lo, j] > 0, th[n]["draw"]) for j, n in enumerate(names)}}
    hv = np.flatnonzero(held)
    if len(hv):
        ph = predict(net, al.crops, index[hv])
        for what, m in (("held out, labelled", lab[hv]), ("held out, UTKFace women and children", ~lab[hv])):
            if m.any():
                report[what] = {n: scores(ph[m, j], y[hv][m, j] > 0, th[n]["draw"]) for j, n in enumerate(names)}
    data = Path(data or DATA)
    onnx_path, json_path = data / FH.ONNX_NAME, data / FH.JSON_NAME
    # the network first, then the JSON that names its checksum (a reader of an old JSON beside the new
    # network refuses the pair and falls back: never the new JSON's thresholds on an old network)
    with staged(json_path, "part") as tmp_json:
        with staged(onnx_path, "part") as tmp:
            torch.onnx.export(net, torch.zeros(1, 3, *FH.INPUT_HW), str(tmp), input_names=["lower_face"],
                              output_names=["probabilities"], dynamic_axes={"lower_face": {0: "batch"},
                                                                            "probabilities": {0: "batch"}},
                              opset_version=17, dynamo=False)
            digest = hashlib.sha256(tmp.read_bytes()).hexdigest()
        doc = {"format": FH.FORMAT, "outputs": list(names), "region": list(FH.REGION), "crop": FH.CROP,
               "input": {"layout": "NCHW", "shape": ["batch", 3, *FH.INPUT_HW], "colour_order": "RGB",
                         "pixel_range": [0, 1], "mirror_averaged_inside": True},
               "onnx": FH.ONNX_NAME, "sha256": digest, "thresholds": th, "precision_target": PRECISION,
               "trained_on": {"photos": int(len(tr)), "labelled": int(lab[tr].sum()),
                              "utkface_negatives": int((~lab[tr]).sum()),
                              "beards": int(y[tr][:, 0].sum()), "moustaches": int(y[tr][:, 1].sum()),
                              "epochs": EPOCHS, "negatives_per_epoch": NEGATIVES_PER_EPOCH, "folds": FOLDS,
                              "seed": SEED, "torch": torch.__version__},
               "report": report, "seconds": round(time.time() - t0, 1)}
        tmp_json.write_text(json.dumps(doc, indent=1) + "\n", encoding="utf-8")
    FH.clear_cache()  # this process reads the new files from now on
    if not quiet:
        print(json.dumps(report, indent=1))
        print(f"wrote {onnx_path} and {json_path} ({time.time() - t0:.0f} s)")
    return doc


def main_facial_hair(args) -> int:
    fit(shared_dir(args.shared), cache_dir(args.cache), quiet=args.quiet)
    return 0


def add_parser(sub):
    p = sub.add_parser("facial-hair", help="fit the facial-hair network (beard, moustache) on the labelled photos")
    p.add_argument("--shared", default=None, help="the shared data folder (default ../shared)")
    p.add_argument("--cache", default=None, help="the cache folder (default cache/; `data align` fills it)")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=main_facial_hair)
