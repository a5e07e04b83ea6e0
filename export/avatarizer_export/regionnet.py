"""Fitting the small networks over one block of the aligned crop
(:mod:`avatarizer.regionnet`): the facial-hair network
(:mod:`avatarizer_export.facialhair`) and the hat network
(:mod:`avatarizer_export.hatnet`).

A small CNN (five 3x3 convolutions, 16-64 channels, batch norm, ReLU, three
2x max pools; mean and max pooled, dropout 0.3, one sigmoid output per
attribute; an optional average pool first for a larger block), trained
with AdamW, a one-cycle learning rate, 30 epochs of batch 64 and positives
weighted by sqrt(negatives / positives), augmented by mirror image, shifts
of up to 4 px, brightness, contrast, saturation (15% grey) and colour
cast; the exported graph averages the block's and its mirror image's
probabilities. :func:`fit_task` chooses the drawing thresholds on 3-fold
out-of-fold predictions of the labelled training photos, or of those a task
trusts for it (``rows["choose"]``: the facial-hair network's labels by eye):
the lowest with precision at least :data:`PRECISION`; and the decision
thresholds for the best balanced accuracy there, fits on every training photo, scores the
held-out photos once for the report, and writes ``<name>.onnx`` then
``<name>.json`` (which names the ONNX file's SHA-256).
"""
from __future__ import annotations

import hashlib
import json
import time
import warnings
from pathlib import Path

import numpy as np

from .onnx_util import staged
from .paths import ROOT

DATA = ROOT / "sdk" / "avatarizer" / "data"
#: the drawing thresholds' out-of-fold precision (the other accessories' target)
PRECISION = 0.9
EPOCHS, BATCH, NEGATIVES_PER_EPOCH, FOLDS, SEED = 30, 64, 1500, 3, 0


def _net(outputs: int, pool: int = 1):
    import torch
    from torch import nn

    class RegionNet(nn.Module):
        def __init__(self, w: int = 16):
            super().__init__()

            def block(i, o):
                return nn.Sequential(nn.Conv2d(i, o, 3, padding=1, bias=False), nn.BatchNorm2d(o), nn.ReLU())

            layers = [nn.AvgPool2d(pool)] if pool > 1 else []
            self.features = nn.Sequential(*layers, block(3, w), nn.MaxPool2d(2), block(w, 2 * w), nn.MaxPool2d(2),
                                          block(2 * w, 4 * w), nn.MaxPool2d(2), block(4 * w, 4 * w),
                                          block(4 * w, 4 * w))
            self.drop = nn.Dropout(0.3)
            self.head = nn.Linear(8 * w, outputs)

        def logits(self, x):  # x: N x 3 x H x W, RGB in [0, 1]
            h = self.features((x - 0.5) / 0.25)
            return self.head(self.drop(torch.cat([h.mean((2, 3)), h.amax((2, 3))], 1)))

        def forward(self, x):  # probabilities, the block's and its mirror image's averaged
            return 0.5 * (torch.sigmoid(self.logits(x)) + torch.sigmoid(self.logits(x.flip(3))))

    return RegionNet()


def flip_shift(x, rng: np.random.Generator):
    """A copy of the batch ``x`` (N x 3 x H x W), each image mirrored with
    probability 0.5 and shifted by up to 4 px (the border replicated)."""
    import torch
    import torch.nn.functional as F

    n = x.shape[0]
    x = x.clone()
    flip = torch.from_numpy(rng.random(n) < 0.5)
    x[flip] = x[flip].flip(3)
    pad = F.pad(x, (4, 4, 4, 4), mode="replicate")
    h, w = x.shape[2:]
    shifts = rng.integers(0, 9, (n, 2))
    return torch.stack([pad[i, :, dy:dy + h, dx:dx + w] for i, (dy, dx) in enumerate(shifts)])


def _augment(x, rng: np.random.Generator):
    import torch

    n = x.shape[0]
    x = flip_shift(x, rng)

    def u(*shape, amount):
        return torch.from_numpy(1.0 + amount * (2.0 * rng.random(shape) - 1.0)).float()

    mean = x.mean((1, 2, 3), keepdim=True)
    x = (x - mean) * u(n, 1, 1, 1, amount=0.3) + mean * u(n, 1, 1, 1, amount=0.3)
    grey = x.mean(1, keepdim=True)
    sat = u(n, 1, 1, 1, amount=0.4)
    sat[torch.from_numpy(rng.random(n) < 0.15)] = 0.0
    x = grey + (x - grey) * sat
    return (x * u(n, 3, 1, 1, amount=0.08)).clamp(0, 1)


def _tensor(spec, crops, rows):
    import torch

    return torch.from_numpy(np.stack([spec.block(crops[i]) for i in rows])).permute(0, 3, 1, 2).float() / 255.0


def fit_net(spec, crops, index: np.ndarray, y: np.ndarray, negatives: np.ndarray, *, pool: int = 1,
            seed: int = SEED, progress: bool = False, desc: str = ""):
    """The network of ``spec`` fitted on cache rows ``index`` (labels ``y``,
    N x outputs); rows where ``negatives`` is set are sampled,
    :data:`NEGATIVES_PER_EPOCH` an epoch."""
    import torch
    import torch.nn.functional as F
    from tqdm import tqdm

    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    net = _net(len(spec.outputs), pool)
    x_all, y_all = _tensor(spec, crops, index), torch.from_numpy(y)
    pos = y_all[~torch.from_numpy(negatives)].mean(0).clamp(1e-3, 1 - 1e-3)
    weight = ((1 - pos) / pos).sqrt()
    keep, neg = np.flatnonzero(~negatives), np.flatnonzero(negatives)
    per_epoch = len(keep) + min(NEGATIVES_PER_EPOCH, len(neg))
    opt = torch.optim.AdamW(net.parameters(), 2e-3, weight_decay=1e-3)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, 3e-3, total_steps=EPOCHS * -(-per_epoch // BATCH))
    for _ in tqdm(range(EPOCHS), desc=desc or spec.name.replace("_", " "), disable=not progress):
        net.train()
        rows = np.concatenate([keep, rng.choice(neg, min(NEGATIVES_PER_EPOCH, len(neg)), replace=False)])
        rows = rows[rng.permutation(len(rows))]
        for j in range(0, len(rows), BATCH):
            b = torch.from_numpy(rows[j:j + BATCH])
            step(opt, sched, F.binary_cross_entropy_with_logits(net.logits(_augment(x_all[b], rng)), y_all[b],
                                                                pos_weight=weight))
    return net.eval()


def step(opt, sched, loss) -> None:
    """One optimiser step on ``loss`` and one of the learning-rate schedule."""
    opt.zero_grad()
    loss.backward()
    opt.step()
    sched.step()


def predict(net, spec, crops, index: np.ndarray) -> np.ndarray:
    import torch

    out = []
    with torch.no_grad():
        for j in range(0, len(index), 256):
            out.append(net(_tensor(spec, crops, index[j:j + 256])).numpy())
    return np.concatenate(out) if out else np.zeros((0, len(spec.outputs)), np.float32)


def scores(p: np.ndarray, y: np.ndarray, th: float) -> dict:
    """Recall, precision, balanced accuracy and counts of ``p >= th``."""
    d = p >= th
    tp, fp, fn = int((d & y).sum()), int((d & ~y).sum()), int((~d & y).sum())
    return {"n": int(len(y)), "positives": int(y.sum()), "drawn": tp + fp, "recall": round(tp / max(tp + fn, 1), 3),
            "precision": round(tp / max(tp + fp, 1), 3),
            "balanced_accuracy": round(0.5 * (d[y].mean() + (~d[~y]).mean()), 3) if 0 < y.sum() < len(y) else None,
            "invented": fp, "missed": fn}


#: the largest difference allowed between ONNX Runtime's and PyTorch's probabilities on the training crops
ONNX_TOLERANCE = 1e-4


def write_onnx(net, spec, path: Path, input_name: str, crops, index: np.ndarray) -> str:
    """Exports ``net`` (N x 3 x block -> ``probabilities``, batch dynamic) to
    ``path`` with the TorchScript exporter, checks that ONNX Runtime reads
    what PyTorch computes on ``index``'s crops (:func:`_check_onnx`) and
    returns the file's SHA-256."""
    import torch

    with warnings.catch_warnings():  # (the TorchScript exporter, as onnx_export uses it)
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        torch.onnx.export(net, torch.zeros(1, 3, *spec.input_hw), str(path), input_names=[input_name],
                          output_names=["probabilities"], dynamic_axes={input_name: {0: "batch"},
                                                                        "probabilities": {0: "batch"}},
                          opset_version=17, dynamo=False)
    _check_onnx(path, net, spec, crops, index)  # ONNX Runtime reads what PyTorch does
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def write_files(net, spec, data: Path | None, input_name: str, crops, index: np.ndarray, fields: dict,
                t0: float) -> tuple[dict, Path, Path]:
    """Writes ``<name>.onnx`` (:func:`write_onnx`, checked on ``index``'s
    crops) and then ``<name>.json`` naming its checksum into ``data``
    (default the SDK's data folder), each staged: a reader of an old JSON
    beside the new network refuses the pair and falls back, never the new
    JSON's thresholds on an old network. The JSON document (the format, the
    outputs, the block and its input, the ONNX file and its SHA-256, then
    ``fields``, then the ``seconds`` since ``t0``) and the two paths are
    returned."""
    from avatarizer.regionnet import CROP, FORMAT

    data = Path(data or DATA)
    onnx_path, json_path = data / spec.onnx_name, data / spec.json_name
    with staged(json_path, "part") as tmp_json:
        with staged(onnx_path, "part") as tmp:
            digest = write_onnx(net, spec, tmp, input_name, crops, index)
        doc = {"format": FORMAT, "outputs": list(spec.outputs), "region": list(spec.region), "crop": CROP,
               "input": {"layout": "NCHW", "shape": ["batch", 3, *spec.input_hw], "colour_order": "RGB",
                         "pixel_range": [0, 1], "mirror_averaged_inside": True},
               "onnx": spec.onnx_name, "sha256": digest, **fields, "seconds": round(time.time() - t0, 1)}
        tmp_json.write_text(json.dumps(doc, indent=1) + "\n", encoding="utf-8")
    return doc, onnx_path, json_path


def _check_onnx(path: Path, net, spec, crops, index: np.ndarray) -> None:
    """Raises RuntimeError where ONNX Runtime's probabilities for ``index``'s
    crops differ from PyTorch's by more than :data:`ONNX_TOLERANCE`."""
    import onnxruntime as ort

    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    x = np.stack([spec.block(crops[i]) for i in index]).transpose(0, 3, 1, 2).astype(np.float32) / 255.0
    got = sess.run(None, {sess.get_inputs()[0].name: x})[0]
    want = predict(net, spec, crops, index)
    diff = float(np.abs(got - want).max()) if len(index) else 0.0
    if not diff <= ONNX_TOLERANCE:
        raise RuntimeError(f"{spec.name}: ONNX Runtime and PyTorch differ by {diff:.2g} on the training crops")


#: the fewest positives per output among the training photos that choose the thresholds
MIN_POSITIVES = 20


def fit_threads() -> int:
    """The threads :func:`fit_task` trains with: the machine's cores, at most 4
    (the networks' bytes depend on it: the same machine gives the same files
    whichever step ran before)."""
    import os

    try:
        cores = len(os.sched_getaffinity(0))  # (the CPUs this process may run on: taskset, a container's limit)
    except (AttributeError, OSError):
        cores = os.cpu_count() or 1
    return max(1, min(cores, 4))


def threshold_positives(rows: dict) -> np.ndarray:
    """Positives per output among the training photos of ``rows`` that
    choose the thresholds (``choose`` within ``labelled``, not held out):
    what :func:`fit_task` needs :data:`MIN_POSITIVES` of."""
    y, lab, held = np.asarray(rows["y"]), np.asarray(rows["labelled"], bool), np.asarray(rows["held"], bool)
    choose = lab & np.asarray(rows.get("choose", lab), bool)
    return y[~held & choose].sum(0)


def fit_task(spec, crops, rows: dict, *, data: Path | None = None, quiet: bool = False, pool: int = 1,
             input_name: str = "block", held_groups: tuple = (), trained_on: dict | None = None,
             clear=None, precision: float = PRECISION, chosen_on: str = "labelled training photos",
             oof_out: Path | None = None) -> dict:
    """Fits the network of ``spec`` on ``rows`` (``y``: N x outputs;
    ``labelled``: rows that choose the thresholds, the others are sampled
    as negatives; optional ``choose``: the labelled rows that choose the
    thresholds where not all do, the others still trained on; ``held``;
    ``index``: rows of ``crops``) and writes its
    files into ``data`` (default the SDK's data folder); returns the JSON
    document. ``held_groups``: (report name, mask over ``rows``) for the
    held-out report; ``clear``: called once the files are written (the
    runtime's cache); ``precision``: the drawing thresholds' out-of-fold
    precision; ``chosen_on``: what the report calls the rows that choose
    them; ``oof_out``: where to keep the out-of-fold probabilities of the
    training rows (``keys``, ``oof``, ``y``, and ``sha256``, the network
    written: what a later fusion with H is fitted on, :func:`read_oof`)."""
    import torch

    from .attributes import _best_ba_threshold
    from .detectors import precision_threshold

    t0 = time.time()
    threads = torch.get_num_threads()
    # a fixed count (the result depends on it), not whatever an earlier step left: in make models the hat
    # network runs after H's training, which sets one thread
    torch.set_num_threads(fit_threads())
    try:
        y, lab, held, index = rows["y"], rows["labelled"], rows["held"], rows["index"]
        choose = lab & np.asarray(rows.get("choose", lab), bool)
        tr = np.flatnonzero(~held)
        names = spec.outputs
        counts = threshold_positives(rows)
        if counts.min() < MIN_POSITIVES:
            raise SystemExit(f"{spec.name}: too few labelled positives among the training photos that choose "
                             f"the thresholds ({dict(zip(names, counts.astype(int).tolist()))}): label more")
        # out of fold, the labelled training photos (those that choose them): the thresholds
        fold = np.random.default_rng(SEED).integers(0, FOLDS, len(tr))
        oof = np.zeros((len(tr), len(names)), np.float32)
        for f in range(FOLDS):
            part = tr[fold != f]
            net = fit_net(spec, crops, index[part], y[part], ~lab[part], pool=pool, seed=SEED + 1 + f,
                          progress=not quiet, desc=f"{spec.name.replace('_', ' ')}, fold {f + 1} of {FOLDS}")
            oof[fold == f] = predict(net, spec, crops, index[tr[fold == f]])
        lo = choose[tr]
        th = {n: {"draw": precision_threshold(oof[lo, j], (y[tr][lo, j] > 0).astype(float), precision),
                  "decision": _best_ba_threshold(oof[lo, j], y[tr][lo, j] > 0)} for j, n in enumerate(names)}
        net = fit_net(spec, crops, index[tr], y[tr], ~lab[tr], pool=pool, seed=SEED, progress=not quiet)
        report: dict = {f"out of fold ({chosen_on})": {
            n: scores(oof[lo, j], y[tr][lo, j] > 0, th[n]["draw"]) for j, n in enumerate(names)}}
        hv = np.flatnonzero(held)
        if len(hv):
            ph = predict(net, spec, crops, index[hv])
            for what, mask in held_groups:
                m = np.asarray(mask)[hv]
                if m.any():
                    report[what] = {n: scores(ph[m, j], y[hv][m, j] > 0, th[n]["draw"]) for j, n in enumerate(names)}
        doc, onnx_path, json_path = write_files(net, spec, data, input_name, crops, index[tr[:64]], {
            "thresholds": th, "precision_target": precision,
            "trained_on": {"photos": int(len(tr)), "labelled": int(lab[tr].sum()),
                           **({"choose_thresholds": int(choose[tr].sum())} if choose[tr].sum() != lab[tr].sum() else {}),
                           **(trained_on or {}), "epochs": EPOCHS, "negatives_per_epoch": NEGATIVES_PER_EPOCH,
                           "folds": FOLDS, "seed": SEED, "torch": torch.__version__},
            "report": report}, t0)
        digest = doc["sha256"]
        if oof_out is not None:
            Path(oof_out).parent.mkdir(parents=True, exist_ok=True)
            with staged(Path(oof_out), "part") as tmp_oof:
                with open(tmp_oof, "wb") as fh:
                    np.savez(fh, keys=np.array([rows["keys"][i] for i in tr]), oof=oof, y=y[tr],
                             sha256=np.array(digest))
    finally:
        torch.set_num_threads(threads)  # (make models' later steps keep their own)
    if clear is not None:
        clear()  # this process reads the new files from now on
    if not quiet:
        print(json.dumps(report, indent=1))
        print(f"wrote {onnx_path} and {json_path} ({time.time() - t0:.0f} s)")
    return doc


def read_oof(path: Path, sha256: str, labels: dict | None = None) -> dict[str, np.ndarray]:
    """``{photo key: out-of-fold probabilities}`` that :func:`fit_task` kept
    (``oof_out``) for the network whose checksum is ``sha256``;
    RuntimeError when the file is missing, of another network, or (with
    ``labels``, ``{key: y}``) when a photo's label differs from the one the
    network was fitted with (a label changed since: fit it again)."""
    path = Path(path)
    if not path.is_file():
        raise RuntimeError(f"{path}: no out-of-fold probabilities of the network (fit it first, with the same "
                           f"--cache)")
    with np.load(path) as z:
        if str(z["sha256"]) != sha256:
            raise RuntimeError(f"{path} holds another network's out-of-fold probabilities: fit it again")
        keys = [str(k) for k in z["keys"]]
        if labels is not None:
            changed = [k for k, y in zip(keys, np.asarray(z["y"])) if k in labels
                       and not np.array_equal(np.asarray(labels[k], np.float32).reshape(-1), y.reshape(-1))]
            if changed:
                raise RuntimeError(f"{path}: the labels of {len(changed)} photos (e.g. {changed[0]}) changed since the "
                                   f"network was fitted: fit it again")
        return dict(zip(keys, np.asarray(z["oof"], np.float64)))


def add_fit_parser(sub, command: str, help_text: str, fit,
                   shared_help: str = "the shared data folder (default ../shared)", extra: tuple = (),
                   uses_shared: bool = True):
    """The ``avatarizer-export COMMAND`` of a region network's ``fit(shared,
    cache, quiet=...)`` (and the options named in ``extra``, which the
    caller adds to the returned parser, as keywords); returns the parser.
    With ``uses_shared`` False (a ``fit`` that reads nothing of the shared
    folder) the folder is not looked for: ``fit`` gets ``--shared`` as
    given, or None."""
    from .paths import cache_dir, shared_dir

    def main(args) -> int:
        shared = shared_dir(args.shared) if uses_shared else (Path(args.shared) if args.shared else None)
        fit(shared, cache_dir(args.cache), quiet=args.quiet,
            **{k: getattr(args, k) for k in extra})
        return 0

    p = sub.add_parser(command, help=help_text)
    p.add_argument("--shared", default=None, help=shared_help)
    p.add_argument("--cache", default=None, help="the cache folder (default cache/; `data align` fills it)")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=main)
    return p
