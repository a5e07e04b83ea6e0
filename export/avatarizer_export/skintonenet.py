"""``avatarizer-export skin-tone-net``: fit the skin-tone network (``avatarizer.skintone.NETWORK``).

The avatar's skin is the photo's measured skin moved into a band around
the lightness of an estimate of the skin tone in even daylight
(``avatarizer.skintone.skin_by_tone``). The estimate was H's ``skin_tone``
head, a ridge regression on H's features: its out-of-fold error on the
training photos was a step on average and it read dark skin too light, so
that dark skin was drawn lighter than the labels (module docstring of
``avatarizer.skintone``). This network, the region networks' small CNN
(:mod:`avatarizer_export.regionnet`: five 3x3 convolutions, 16-64 channels,
mean and max pooled) over the face's centre (rows and columns 16-112 of the
aligned 128-px crop, averaged 2x2 first), regresses the Monk step.

Data: the skin tones labelled by eye (``labels/skin_tone_by_eye.jsonl``,
:func:`avatarizer_export.data.skin_tone_labels`), the training split of
:func:`avatarizer_export.data.is_heldout` only. Training: AdamW, one-cycle
learning rate, :data:`EPOCHS` epochs of batch 64, a smooth L1 loss on
``1 + 9 sigmoid(logit)`` with each Monk step weighted alike
(:func:`avatarizer_export.skintone._step_weights`), augmented by mirror
image, shifts of up to 4 px and the exposure and white balance of
:func:`avatarizer_export.skintone.photometric` (x0.35-2.6 in linear light
with clipping, +-18% per channel, a camera-curve gamma half the time), so
that it learns the tone, not the exposure. :data:`FOLDS`-fold out-of-fold
estimates of the training photos give the de-attenuation
(:func:`avatarizer_export.skintone.deattenuation`: estimates regress toward
the middle of the scale; undone on average at every step), which the
exported graph applies, and the report of the avatar's lightness for each
band width (``margins``: how often it lands more than 15 L* off the
label's lightness, by skin-tone group, and how far the photo's own skin
is moved); ``margin_chosen`` is the widest band that keeps every group
at or under 5%, or, where none does, within a point of the lowest worst
group (:func:`widest_margin`: what :data:`avatarizer.skintone.MARGIN` is
chosen from). The graph's one output is the de-attenuated Monk step scaled to
[0, 1] (``(step - 1) / 9``, clipped), the crop's and its mirror image's
averaged inside. The held-out photos are scored once for the report.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from .regionnet import SEED, fit_threads, flip_shift, write_files

EPOCHS, BATCH, FOLDS, POOL = 30, 64, 5, 2
#: the band widths (L* either side of the estimate's lightness) the report tries
MARGINS = (4.0, 5.0, 6.0, 7.0, 8.0, 10.0)
#: the skin-tone groups the report (and ``eval``'s ``skin_tone_by_eye``) splits by: (name, lowest, highest step)
GROUPS = (("light (Monk <= 3)", 1.0, 3.0), ("medium (3.5-5.5)", 3.5, 5.5), ("dark (>= 6)", 6.0, 10.0))
#: the widest band is chosen that keeps every group's share of avatars more than 15 L* off at or under
#: this, or, where no band does, within :data:`TOLERANCE` of the lowest worst-group share (a point of
#: the training photos' ~500 labelled Monk 6 or darker is five photos)
MAX_OFF, TOLERANCE = 0.05, 0.01


def training_rows(aligned) -> dict:
    """``keys``, ``y`` (Monk steps), ``held`` and ``index`` (rows of the
    aligned cache) of the photos labelled by eye for skin tone."""
    from .data import is_heldout, skin_tone_labels

    lab = skin_tone_labels()
    idx = {k: i for i, k in enumerate(aligned.keys)}
    keys = [k for k in sorted(lab) if k in idx]
    return {"keys": keys, "y": np.array([lab[k] for k in keys], np.float64),
            "held": np.array([is_heldout(k) for k in keys], bool),
            "index": np.array([idx[k] for k in keys], np.int64)}


def _augment(x, rng: np.random.Generator):
    """Mirror, shift, and another exposure and white balance
    (:func:`avatarizer_export.skintone.photometric`, in PyTorch, per image)."""
    import torch

    n = x.shape[0]
    x = flip_shift(x, rng)
    lin = torch.where(x <= 0.04045, x / 12.92, ((x + 0.055) / 1.055) ** 2.4)
    gain = torch.from_numpy(np.exp(rng.uniform(np.log(0.35), np.log(2.6), (n, 1, 1, 1)))).float()
    wb = np.exp(rng.uniform(-0.18, 0.18, (n, 3)))
    wb = torch.from_numpy((wb / wb.mean(1, keepdims=True))[:, :, None, None]).float()
    lin = (lin * gain * wb).clamp(0, 1)
    gamma = np.where(rng.random(n) < 0.5, np.exp(rng.uniform(-0.25, 0.25, n)), 1.0)
    lin = lin ** torch.from_numpy(gamma[:, None, None, None]).float()
    return torch.where(lin <= 0.0031308, lin * 12.92, 1.055 * lin.clamp(min=1e-8) ** (1 / 2.4) - 0.055).clamp(0, 1)


def _step_of(net, x):
    """The Monk step the network reads from ``x`` (the crop's and its mirror image's averaged)."""
    import torch

    return 1.0 + 4.5 * (torch.sigmoid(net.logits(x)) + torch.sigmoid(net.logits(x.flip(3))))


def _exported(net, intercept: float, slope: float):
    """The graph the runtime reads: the de-attenuated step, ``(step - 1) / 9`` clipped to [0, 1]."""
    import torch

    class Exported(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.net = net

        def forward(self, x):
            return (((_step_of(self.net, x) - intercept) / slope - 1.0) / 9.0).clamp(0.0, 1.0)

    return Exported().eval()


def fit_net(crops, index: np.ndarray, y: np.ndarray, *, seed: int = SEED, progress: bool = False, desc: str = ""):
    """The network (its raw Monk step, not de-attenuated) fitted on cache rows ``index`` with labels ``y``."""
    import torch
    import torch.nn.functional as F
    from tqdm import tqdm

    from avatarizer.skintone import NETWORK

    from .regionnet import _net, _tensor
    from .skintone import _step_weights

    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    net = _net(1, pool=POOL)
    x_all, y_all = _tensor(NETWORK, crops, index), torch.from_numpy(y).float()
    w_all = torch.from_numpy(_step_weights(y, np.ones(len(y), bool))).float()
    opt = torch.optim.AdamW(net.parameters(), 2e-3, weight_decay=1e-3)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, 3e-3, total_steps=EPOCHS * -(-len(y) // BATCH))
    for _ in tqdm(range(EPOCHS), desc=desc or "skin-tone network", disable=not progress):
        net.train()
        order = rng.permutation(len(y))
        for j in range(0, len(y), BATCH):
            b = torch.from_numpy(order[j:j + BATCH])
            step = 1.0 + 9.0 * torch.sigmoid(net.logits(_augment(x_all[b], rng))[:, 0])
            w = w_all[b]
            loss = (F.smooth_l1_loss(step, y_all[b], reduction="none") * w).sum() / w.sum()
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
    return net.eval()


def raw_steps(net, crops, index: np.ndarray) -> np.ndarray:
    """The network's raw Monk steps (before de-attenuation) for cache rows ``index``."""
    import torch

    from avatarizer.skintone import NETWORK

    from .regionnet import _tensor

    out = []
    with torch.no_grad():
        for j in range(0, len(index), 256):
            out.append(_step_of(net, _tensor(NETWORK, crops, index[j:j + 256]))[:, 0].numpy())
    return np.concatenate(out).astype(np.float64) if out else np.zeros(0)


def off_by_margin(rgb: np.ndarray, tone: np.ndarray, label: np.ndarray, margins=MARGINS) -> dict:
    """For each band width: the share of avatars more than 15 L* off their
    label's lightness, overall and by :data:`GROUPS`, and how far the
    photo's own skin is moved (median, share over 6 L*), the skin drawn
    through ``avatarizer.skintone.skin_by_tone`` from the measured
    ``rgb`` and the estimates ``tone``."""
    from .skintone import _avatar_error

    out = {}
    for m in margins:
        to_label, moved = _avatar_error(rgb, tone, label, m)
        row = {"over_15": round(float((to_label > 15).mean()), 4)}
        for name, lo, hi in GROUPS:
            g = (label >= lo) & (label <= hi)
            row[name] = round(float((to_label[g] > 15).mean()), 4) if g.any() else None
        row.update(moved_median=round(float(np.median(moved)), 2), moved_over_6=round(float((moved > 6).mean()), 4))
        out[str(m)] = row
    return out


def widest_margin(rows: dict) -> float | None:
    """The widest band of :func:`off_by_margin`'s ``rows`` whose every group
    stays at or under :data:`MAX_OFF`, or, where none does, whose worst
    group is within :data:`TOLERANCE` of the lowest worst group's share
    (None without rows)."""
    worst = {float(m): max([r[name] for name, _, _ in GROUPS if r[name] is not None], default=0.0)
             for m, r in rows.items()}
    if not worst:
        return None
    lowest = min(worst.values())
    limit = MAX_OFF if lowest <= MAX_OFF else lowest + TOLERANCE
    return max(m for m, w in worst.items() if w <= limit + 1e-9)  # (shares rounded to 4 places)


def _heldout_report(step: np.ndarray, y: np.ndarray) -> dict:
    from .skintone import step_bias

    err = np.abs(step - y)
    return {"photos": int(len(y)), "mae_steps": round(float(err.mean()), 3),
            "off_2_steps": round(float((err >= 2).mean()), 4), "bias_by_step": step_bias(step, y)}


def fit(shared: Path | None, cache: Path, *, data: Path | None = None, quiet: bool = False) -> dict:
    """Fits the network on the labelled training photos of the aligned
    ``cache``, scores the held-out ones, and writes ``skin_tone_net.onnx``
    then ``skin_tone_net.json`` into ``data`` (default the SDK's data
    folder); returns the JSON document. (``shared`` is not read: the labels
    are the project's own; it keeps the region networks' signature.)"""
    import torch

    from avatarizer import skintone as ST

    from .data import load_aligned
    from .skintone import deattenuation, measured_skin, step_bias

    t0 = time.time()
    al = load_aligned(cache)
    rows = training_rows(al)
    y, held, index, keys = rows["y"], rows["held"], rows["index"], rows["keys"]
    tr, hv = np.flatnonzero(~held), np.flatnonzero(held)
    if len(tr) < 100 or (y[tr] >= 6).sum() < 20:
        raise SystemExit(f"skin-tone network: too few labelled training photos ({len(tr)}, "
                         f"{int((y[tr] >= 6).sum())} of Monk 6 or darker): label more")
    threads = torch.get_num_threads()
    torch.set_num_threads(fit_threads())
    try:
        fold = np.random.default_rng(SEED).integers(0, FOLDS, len(tr))
        oof = np.zeros(len(tr))
        for f in range(FOLDS):
            part = tr[fold != f]
            net = fit_net(al.crops, index[part], y[part], seed=SEED + 1 + f, progress=not quiet,
                          desc=f"skin-tone network, fold {f + 1} of {FOLDS}")
            oof[fold == f] = raw_steps(net, al.crops, index[tr[fold == f]])
        intercept, slope = deattenuation(oof, y[tr], np.ones(len(tr), bool))
        oof_d = np.clip((oof - intercept) / slope, 1.0, 10.0)
        net = fit_net(al.crops, index[tr], y[tr], seed=SEED, progress=not quiet)
        model = _exported(net, intercept, slope)
        # the avatar's lightness on the training photos, out of fold: what the band width is chosen from
        measured = measured_skin(al, index[tr], progress=not quiet)
        has = np.array([i in measured for i in index[tr]])
        rgb = np.stack([measured[i] for i in index[tr][has]]) if has.any() else np.zeros((0, 3))
        margins = off_by_margin(rgb, oof_d[has], y[tr][has]) if has.any() else {}
        report: dict = {"out of fold (training photos)": {
            **_heldout_report(oof_d, y[tr]), "bias_by_step_before_deattenuation": step_bias(oof, y[tr]),
            "deattenuation": {"intercept": round(intercept, 4), "slope": round(slope, 4)},
            "margins": margins, "margin_chosen": widest_margin(margins),
            "margin_shipped": ST.MARGIN}}
        if len(hv):
            from .regionnet import predict

            step = 1.0 + 9.0 * predict(model, ST.NETWORK, al.crops, index[hv])[:, 0].astype(np.float64)
            for what, prefix in (("held out, all", ""), ("held out, ffhq128", "ffhq128/"),
                                 ("held out, ffhq128-labelled", "ffhq128-labelled/"),
                                 ("held out, utkface200", "utkface200/")):
                m = np.array([keys[i].startswith(prefix) for i in hv])
                if m.any():
                    report[what] = _heldout_report(step[m], y[hv][m])
            measured_h = measured_skin(al, index[hv], progress=not quiet)
            has_h = np.array([i in measured_h for i in index[hv]])
            if has_h.any():
                report["held out, all"]["at the shipped margin"] = off_by_margin(
                    np.stack([measured_h[i] for i in index[hv][has_h]]), step[has_h], y[hv][has_h],
                    (ST.MARGIN,))[str(ST.MARGIN)]
        doc, onnx_path, json_path = write_files(model, ST.NETWORK, data, "block", al.crops, index[tr[:64]], {
            "output": "(Monk step - 1) / 9, de-attenuated, clipped to [0, 1]",
            "trained_on": {"photos": int(len(tr)), "dark (>= 6)": int((y[tr] >= 6).sum()),
                           "labels": "skin tones by eye (labels/skin_tone_by_eye.jsonl, training split)",
                           "epochs": EPOCHS, "folds": FOLDS, "seed": SEED, "torch": torch.__version__},
            "report": report}, t0)
    finally:
        torch.set_num_threads(threads)
    ST.clear_cache()
    if not quiet:
        print(json.dumps(report, indent=1))
        print(f"wrote {onnx_path} and {json_path} ({time.time() - t0:.0f} s)")
    widest = report["out of fold (training photos)"]["margin_chosen"]
    if widest is not None and widest != ST.MARGIN:
        print(f"note: the band width chosen for this network (widest_margin) is {widest:g} L*; "
              f"avatarizer.skintone.MARGIN is {ST.MARGIN:g}: set it and fit again for the report at it")
    return doc


def add_parser(sub):
    from .paths import cache_dir

    def main(args) -> int:  # (the labels are the project's own: no --shared)
        fit(None, cache_dir(args.cache), quiet=args.quiet)
        return 0

    p = sub.add_parser("skin-tone-net", help="fit the skin-tone network (the Monk step in even daylight) on the "
                                             "skin tones labelled by eye")
    p.add_argument("--cache", default=None, help="the cache folder (default cache/; `data align` fills it)")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=main)
    return p
