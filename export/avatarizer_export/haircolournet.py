"""``avatarizer-export hair-colour-net``: fit the hair-colour networks (``avatarizer.haircolour``).

The hair colour class the avatar draws came from two readings multiplied as
independent experts, the attribute regressor H's and the hair region's
colour classifier's (``avatarizer.hair.fuse_hair_colour``); held out and
labelled by eye they drew 15 of 29 blond heads blond and 34 of 68 brown
ones brown (session 30). This network, the region networks' small CNN
(:mod:`avatarizer_export.regionnet`: five 3x3 convolutions, 16-64
channels, mean and max pooled) over the whole aligned 128-px crop averaged
2x2 first, with a softmax over the five classes (the crop's and its mirror
image's averaged inside the graph), is the fusion's third expert.

Data (the training split of :func:`avatarizer_export.data.is_heldout` only):
the hair colours labelled by eye (``ffhq128``; since session 43 also the 223
``stylegan128`` photos mined for red hair that only this network trains on,
``data.HAIR_COLOUR_NETWORK_ONLY_LABELS``) and the shared labels of
``ffhq128-labelled`` (:func:`avatarizer_export.skintone.hair_colour_labels`;
the labels by eye win where both have one; bald heads and unknown colours
left out). Training: AdamW, one-cycle learning rate, :data:`EPOCHS` epochs of
batch 64, cross-entropy with each class weighted by its inverse frequency
(the fusion's other experts are weighed to balanced classes too),
augmented by mirror image, shifts of up to 4 px, exposure x0.7-1.4 and a
white balance of +-8% per channel (no grey or saturation change: they
are the colour). Two networks are fitted so: ``hair_colour_net``, read on
loose portraits, and ``hair_colour_net_tight``, read where the hair region
covers less than ``avatarizer.hair.HAIR_CLASS_MIN_AREA`` of the crop,
with :data:`TIGHT_SHARE` of its training crops shown as a tight chip
(:func:`tight_framings`: the framing of a UTKFace photo, whatever lies
outside it replaced by its edge as the aligner's replicated border does;
session 45). The held-out photos are scored once, for the report (and
UTKFace's tight chips labelled by eye, never trained on,
:func:`tight_chip_report`), alone; as the runtime fuses it is left to
``eval``.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from .regionnet import SEED, fit_threads, predict, write_files

EPOCHS, BATCH = 25, 64
#: the share of the tight crops' network's training crops shown as a tight
#: chip (:func:`tight_framings`). On the 312 UTKFace chips labelled by eye
#: (the hair region 1-3% of the crop, above it the forehead's replicated
#: edge; never trained on) the network alone reads 0.562 balanced without
#: them (the shipped portraits' network), 0.687 with them (session 45); on held-out loose
#: portraits 0.03 worse (0.726 -> 0.702 at seed 0, 0.719 -> 0.683 at seed
#: 1), so portraits keep the other network. 0.6 read the chips no better
#: through ``Avatarizer()`` (session 44, docs/hair.md "Tight crops")
TIGHT_SHARE = 0.35
#: how many framings :func:`tight_framings` draws, from which folder of the
#: cache (its training photos), with which seed
TIGHT_FRAMINGS, TIGHT_FOLDER, TIGHT_SEED = 256, "utkface200/", 7


def training_rows(shared: Path | None, aligned) -> dict:
    """``keys``, ``y`` (class index, :data:`avatarizer.haircolour.CLASSES`),
    ``held`` and ``index`` (rows of the aligned cache) of the labelled photos
    (:func:`~avatarizer_export.skintone.hair_colour_labels` and the network's
    own, :func:`~avatarizer_export.data.hair_colour_network_labels`, where
    those have none)."""
    from .data import hair_colour_network_labels, is_heldout
    from .skintone import hair_colour_labels

    lab = hair_colour_labels(shared)
    lab.update({k: v for k, v in hair_colour_network_labels().items() if k not in lab})
    idx = {k: i for i, k in enumerate(aligned.keys)}
    keys = [k for k in sorted(lab) if k in idx]
    return {"keys": keys, "y": np.array([lab[k] for k in keys], np.int64),
            "held": np.array([is_heldout(k) for k in keys], bool), "index": np.array([idx[k] for k in keys], np.int64)}


def tight_framings(shared: Path | None, aligned, n: int = TIGHT_FRAMINGS, seed: int = TIGHT_SEED
                   ) -> np.ndarray | None:
    """Sampling grids (``n`` x 128 x 128 x 2, ``torch.nn.functional.grid_sample``'s
    coordinates, ``align_corners=False``) that show a loose aligned crop as
    the runtime sees a tight chip: each the framing of one of ``n`` training
    photos of :data:`TIGHT_FOLDER` in the cache (its canonical -> frame
    transform, padding and size), every crop pixel outside the photo taken
    from the photo's nearest edge, as the aligner's replicated border does.
    None where the cache has no such photo (or without ``shared``, where the
    photos' sizes are read)."""
    from .data import CROP, _load_rgb, is_heldout

    transforms = getattr(aligned, "transforms", None)
    if shared is None or transforms is None:
        return None
    rows = [i for i, k in enumerate(aligned.keys) if k.startswith(TIGHT_FOLDER) and not is_heldout(k)]
    if not rows:
        return None
    pick = np.random.default_rng(seed).choice(rows, min(n, len(rows)), replace=False)
    c = (np.arange(CROP) + 0.5) * 2.0 / CROP - 1.0
    canon = np.stack(np.meshgrid(c, c), -1)  # each crop pixel's canonical (x, y)
    grids = []
    for i in pick:
        # (its size as the aligner read it: load_image turns it by its EXIF orientation)
        h, w = _load_rgb(Path(shared) / "data" / "faces" / aligned.keys[i]).shape[:2]
        A, t, pad = transforms[i][:, :2], transforms[i][:, 2], float(aligned.pad[i])
        f = canon @ A.T + t  # frame pixels (of the padded frame), clamped to the photo's pixel centres
        f = np.stack([np.clip(f[..., 0], pad + 0.5, pad + w - 0.5), np.clip(f[..., 1], pad + 0.5, pad + h - 0.5)], -1)
        grids.append((f - t) @ np.linalg.inv(A).T)
    return np.asarray(grids, np.float32)


def _augment(x, rng, framings=None):
    return framed_augment(x, rng, framings, TIGHT_SHARE)


def framed_augment(x, rng, framings=None, share: float = TIGHT_SHARE, saturation: tuple | None = None):
    """A copy of the batch ``x`` (N x 3 x H x W in [0, 1]) mirrored and
    shifted (:func:`~avatarizer_export.regionnet.flip_shift`), its exposure
    x0.7-1.4 and white balance +-8% a channel; with ``saturation`` (lo, hi),
    its saturation scaled within them; and with ``framings``
    (:func:`tight_framings`) ``share`` of them shown as tight chips. The
    hair-colour networks' and the tight crops' hair-length network's."""
    import torch
    import torch.nn.functional as F

    from .regionnet import flip_shift

    n = x.shape[0]
    x = flip_shift(x, rng)
    gain = torch.from_numpy(np.exp(rng.uniform(np.log(0.7), np.log(1.4), (n, 1, 1, 1)))).float()
    cast = torch.from_numpy(np.exp(rng.uniform(-0.08, 0.08, (n, 3, 1, 1)))).float()
    x = (x * gain * cast).clamp(0, 1)
    if saturation is not None:
        grey = x.mean(1, keepdim=True)
        x = (grey + (x - grey) * torch.from_numpy(rng.uniform(*saturation, (n, 1, 1, 1))).float()).clamp(0, 1)
    if framings is not None:  # share of them as tight chips
        tight = torch.from_numpy(rng.random(n) < share)
        if tight.any():
            grid = framings[torch.from_numpy(rng.integers(0, len(framings), int(tight.sum())))]
            x[tight] = F.grid_sample(x[tight], grid, mode="bilinear", padding_mode="border", align_corners=False)
    return x


def _softmaxed(net):
    """The graph the runtime reads: class probabilities, the crop's and its mirror image's averaged."""
    import torch

    class Softmaxed(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.net = net

        def forward(self, x):
            return 0.5 * (torch.softmax(self.net.logits(x), 1) + torch.softmax(self.net.logits(x.flip(3)), 1))

    return Softmaxed().eval()


def fit_net(crops, index: np.ndarray, y: np.ndarray, *, seed: int = SEED, progress: bool = False,
            framings: np.ndarray | None = None):
    import torch
    import torch.nn.functional as F
    from tqdm import tqdm

    from avatarizer.haircolour import CLASSES, SPEC

    from .regionnet import _net, _tensor

    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    net = _net(len(CLASSES), pool=2)
    x_all, y_all = _tensor(SPEC, crops, index), torch.from_numpy(y)
    framings = None if framings is None else torch.from_numpy(framings)
    counts = np.bincount(y, minlength=len(CLASSES))
    weight = torch.from_numpy(len(y) / (len(CLASSES) * np.maximum(counts, 1))).float()
    opt = torch.optim.AdamW(net.parameters(), 2e-3, weight_decay=1e-3)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, 3e-3, total_steps=EPOCHS * -(-len(y) // BATCH))
    for _ in tqdm(range(EPOCHS), desc="hair-colour network", disable=not progress):
        net.train()
        order = rng.permutation(len(y))
        for j in range(0, len(y), BATCH):
            b = torch.from_numpy(order[j:j + BATCH])
            loss = F.cross_entropy(net.logits(_augment(x_all[b], rng, framings)), y_all[b], weight=weight)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
    return _softmaxed(net.eval())


def report_of(p: np.ndarray, y: np.ndarray) -> dict:
    """Per class found / labelled, and the balanced accuracy, of the likeliest class."""
    from avatarizer.haircolour import CLASSES

    pred = p.argmax(1)
    per = {c: f"{int(((pred == j) & (y == j)).sum())}/{int((y == j).sum())}" for j, c in enumerate(CLASSES)}
    present = [j for j in range(len(CLASSES)) if (y == j).any()]
    ba = float(np.mean([np.mean(pred[y == j] == j) for j in present])) if present else None
    return {"photos": int(len(y)), **per, "balanced_accuracy": None if ba is None else round(ba, 3)}


#: the held-out photos each network's report scores, by key prefix
REPORTED = (("held out, labelled by eye (ffhq128)", "ffhq128/"),
            ("held out, shared labels (ffhq128-labelled)", "ffhq128-labelled/"),
            ("held out, labelled by eye (stylegan128)", "stylegan128/"),
            ("held out, all", ""))


def tight_chip_report(model, spec, al) -> dict:
    """The network's reading of UTKFace's tight chips labelled by eye
    (``utkface_hair_colour.jsonl``, evaluation only: never trained on),
    training and held-out split alike, where the cache holds them; {} else."""
    from .data import tight_crop_hair_colours

    labels = tight_crop_hair_colours()
    idx = {k: i for i, k in enumerate(al.keys)}
    keys = sorted(k for k in labels if k in idx)
    if not keys:
        return {}
    pred = predict(model, spec, al.crops, np.array([idx[k] for k in keys], np.int64))
    return {"UTKFace tight chips labelled by eye (never trained on)":
            report_of(pred, np.array([labels[k] for k in keys]))}


def fit(shared: Path | None, cache: Path, *, data: Path | None = None, quiet: bool = False) -> dict:
    """Fits the two networks on the labelled training photos of the aligned
    ``cache`` (``hair_colour_net``: the crops as they are;
    ``hair_colour_net_tight``: :data:`TIGHT_SHARE` of them shown as tight
    chips, :func:`tight_framings`; not fitted, with a message, where the
    cache has no framings to show), scores the held-out ones, and writes
    each one's ONNX file then its JSON into ``data`` (default the SDK's data
    folder); returns ``{network name: its JSON document or None}``."""
    import torch

    from avatarizer import haircolour as HC

    from .data import load_aligned

    t0 = time.time()
    al = load_aligned(cache)
    rows = training_rows(shared, al)
    y, held, index, keys = rows["y"], rows["held"], rows["index"], rows["keys"]
    tr, hv = np.flatnonzero(~held), np.flatnonzero(held)
    counts = np.bincount(y[tr], minlength=len(HC.CLASSES))
    if counts.min() < 20:
        raise SystemExit(f"hair-colour network: too few labelled training photos of a colour "
                         f"({dict(zip(HC.CLASSES, counts.tolist()))}): label more")
    framings = tight_framings(shared, al)
    out: dict = {}
    threads = torch.get_num_threads()
    torch.set_num_threads(fit_threads())
    try:
        for spec, tight in ((HC.SPEC, None), (HC.SPEC_TIGHT, framings)):
            if spec is HC.SPEC_TIGHT and framings is None:
                out[spec.name] = None
                if not quiet:
                    print(f"{spec.name}: not fitted: the cache holds no {TIGHT_FOLDER.rstrip('/')} training "
                          "photo's framing (or no shared folder to read their sizes); its files in the data "
                          "folder, if any, are left as they were (without them tight crops are read without "
                          "a hair-colour network)")
                continue
            t1 = time.time()
            model = fit_net(al.crops, index[tr], y[tr], progress=not quiet, framings=tight)
            report: dict = {}
            if len(hv):
                ph = predict(model, spec, al.crops, index[hv])
                for what, prefix in REPORTED:
                    m = np.array([keys[i].startswith(prefix) for i in hv])
                    if m.any():
                        report[what] = report_of(ph[m], y[hv][m])
            report.update(tight_chip_report(model, spec, al))
            trained_on = {"photos": int(len(tr)), "by_class": dict(zip(HC.CLASSES, counts.tolist())),
                          "labels": "hair colours by eye and the shared labels of ffhq128-labelled (training split)",
                          "epochs": EPOCHS, "seed": SEED, "torch": torch.__version__}
            if tight is not None:
                trained_on["tight_chips"] = {"share": TIGHT_SHARE, "framings": int(len(tight)),
                                             "from": f"{TIGHT_FOLDER.rstrip('/')} training photos "
                                                     f"(seed {TIGHT_SEED})"}
            doc, onnx_path, json_path = write_files(model, spec, data, "crop", al.crops, index[tr[:64]],
                                                    {"trained_on": trained_on, "report": report}, t1)
            out[spec.name] = doc
            if not quiet:
                print(json.dumps(report, indent=1))
                print(f"wrote {onnx_path} and {json_path} ({time.time() - t1:.0f} s)")
    finally:
        torch.set_num_threads(threads)
        HC.clear_cache()
    if not quiet:
        print(f"hair-colour networks: {time.time() - t0:.0f} s")
    return out


def add_parser(sub):
    from .regionnet import add_fit_parser

    add_fit_parser(sub, "hair-colour-net", "fit the hair-colour network (black, brown, blond, red, gray) on the "
                                           "labelled photos", fit)
