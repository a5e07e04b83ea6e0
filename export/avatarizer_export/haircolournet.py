"""``avatarizer-export hair-colour-net``: fit the hair-colour network (``avatarizer.haircolour``).

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
are the colour). The held-out photos are scored once, for the report,
alone and as the runtime fuses it is left to ``eval``.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from .regionnet import SEED, fit_threads, predict, write_files

EPOCHS, BATCH = 25, 64


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


def _augment(x, rng):
    import torch

    from .regionnet import flip_shift

    n = x.shape[0]
    x = flip_shift(x, rng)
    gain = torch.from_numpy(np.exp(rng.uniform(np.log(0.7), np.log(1.4), (n, 1, 1, 1)))).float()
    cast = torch.from_numpy(np.exp(rng.uniform(-0.08, 0.08, (n, 3, 1, 1)))).float()
    return (x * gain * cast).clamp(0, 1)


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


def fit_net(crops, index: np.ndarray, y: np.ndarray, *, seed: int = SEED, progress: bool = False):
    import torch
    import torch.nn.functional as F
    from tqdm import tqdm

    from avatarizer.haircolour import CLASSES, SPEC

    from .regionnet import _net, _tensor

    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    net = _net(len(CLASSES), pool=2)
    x_all, y_all = _tensor(SPEC, crops, index), torch.from_numpy(y)
    counts = np.bincount(y, minlength=len(CLASSES))
    weight = torch.from_numpy(len(y) / (len(CLASSES) * np.maximum(counts, 1))).float()
    opt = torch.optim.AdamW(net.parameters(), 2e-3, weight_decay=1e-3)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, 3e-3, total_steps=EPOCHS * -(-len(y) // BATCH))
    for _ in tqdm(range(EPOCHS), desc="hair-colour network", disable=not progress):
        net.train()
        order = rng.permutation(len(y))
        for j in range(0, len(y), BATCH):
            b = torch.from_numpy(order[j:j + BATCH])
            loss = F.cross_entropy(net.logits(_augment(x_all[b], rng)), y_all[b], weight=weight)
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


def fit(shared: Path | None, cache: Path, *, data: Path | None = None, quiet: bool = False) -> dict:
    """Fits the network on the labelled training photos of the aligned
    ``cache``, scores the held-out ones, and writes ``hair_colour_net.onnx``
    then ``hair_colour_net.json`` into ``data`` (default the SDK's data
    folder); returns the JSON document."""
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
    threads = torch.get_num_threads()
    torch.set_num_threads(fit_threads())
    try:
        model = fit_net(al.crops, index[tr], y[tr], progress=not quiet)
        report: dict = {}
        if len(hv):
            ph = predict(model, HC.SPEC, al.crops, index[hv])
            for what, prefix in (("held out, labelled by eye (ffhq128)", "ffhq128/"),
                                 ("held out, shared labels (ffhq128-labelled)", "ffhq128-labelled/"),
                                 ("held out, labelled by eye (stylegan128)", "stylegan128/"),
                                 ("held out, all", "")):
                m = np.array([keys[i].startswith(prefix) for i in hv])
                if m.any():
                    report[what] = report_of(ph[m], y[hv][m])
        doc, onnx_path, json_path = write_files(model, HC.SPEC, data, "crop", al.crops, index[tr[:64]], {
            "trained_on": {"photos": int(len(tr)), "by_class": dict(zip(HC.CLASSES, counts.tolist())),
                           "labels": "hair colours by eye and the shared labels of ffhq128-labelled (training split)",
                           "epochs": EPOCHS, "seed": SEED, "torch": torch.__version__},
            "report": report}, t0)
    finally:
        torch.set_num_threads(threads)
    HC.clear_cache()
    if not quiet:
        print(json.dumps(report, indent=1))
        print(f"wrote {onnx_path} and {json_path} ({time.time() - t0:.0f} s)")
    return doc


def add_parser(sub):
    from .regionnet import add_fit_parser

    add_fit_parser(sub, "hair-colour-net", "fit the hair-colour network (black, brown, blond, red, gray) on the "
                                           "labelled photos", fit)
