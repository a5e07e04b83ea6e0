"""Attribute regressor H: aligned crop → calibrated probabilities of hair
colour, glasses (none / reading / sunglasses), bald, beard, moustache,
headwear and gender, and regressed age and hair length / volume / curl /
fringe.

``avatarizer-export attributes`` (part of ``make models``) trains it,
evaluates it on the held-out labelled photos, exports it to ONNX and ships
the int8 file (role ``attributes``) in ``sdk/avatarizer/models/`` with its
manifest entry, behind a quality gate.

The graph (:class:`AttributeNet`, 2.2.0), one input ``image`` (N×3×128×128,
the canonical crop mapped to [-1, 1]):

* the crop through the **student** (:class:`Student`: seven 3×3
  convolutions, 128 → 8 px, about 44 M multiply-adds), its 16 px and 8 px
  maps average-pooled to a 3×3 grid and mapped by one linear layer to 256
  values (:data:`STUDENT_OUT`), trained by :func:`distil` to reproduce the
  **teacher**'s whitened principal components and head logits;
* the crop itself average-pooled to 8×8 RGB (192): colour statistics for
  the hair colour;
* the concatenation standardised with the training statistics, then one
  linear layer per output group whose weights already hold the PCA
  projection and the calibration: ``hair_colour`` (N×5 softmax: black,
  brown, blond, red, gray), ``glasses`` (N×3 softmax: none, reading,
  sunglasses), ``binary`` (N×5 sigmoid: bald, beard, moustache, headwear,
  male) and ``regress`` (N×5: age in years; hair length, volume, curl,
  fringe in [0, 1]).

The teacher is 2.1.0 (built first by the same run, :func:`fit_heads` on
:class:`Backbone`): a frozen **ImageNet AlexNet** (conv1-5, the weights in
``../shared/weights/alexnet_lpips.npz``) at :data:`ALEX_SIZE` px, relu3-5
average-pooled to a 3×3 grid (8,064 values; without conv5 the
cross-validated scores were as good but the held-out ones worse), plus the
same colour block and heads. It costs about 196 M multiply-adds (6.3 ms per
face on one core); the student does the same job at a quarter of that.

Distillation (:func:`distil`): every training photo of every folder
(labelled or not; never a held-out photo), drawn at random as it is,
mirrored or with :func:`augment_crop`'s warp and jitter; the teacher runs on
the same crop; the loss is the mean squared error of the teacher's first
256 whitened principal components plus that of its head logits (each
scaled to unit spread). Then the student's features of the labelled
training rows get their own heads, calibration and thresholds by the same
procedure as the teacher's (below): the labelled losses.

Data (held-out photos never used; ``docs/split.md``): the training split of
``ffhq128-labelled/attributes.jsonl`` for every label; UTKFace file names
for age and gender; the project's labels by eye (``labels/*.jsonl``,
``docs/data.md``: beard and moustache of 1,049 UTKFace men, glasses,
headwear, beard and moustache of 1,995 ``ffhq128`` photos; UTKFace women
and children count as without facial hair); the auto-artist's hair fits of
the training photos (``cache/pairs``, or the artist run on the aligned
originals when the pairs are not built) as pseudo-labels for hair length,
volume, curl and fringe. :func:`refit` refits chosen heads of the shipped
file alone (2.3.0: beard, moustache and glasses on the labels by eye).
Augmentation: every training photo with the shared labels also enters mirrored and
:data:`N_AUG` times with a random similarity warp and a colour-safe
photometric jitter; the other training photos enter with their mirror image.

Fitting: whitened principal components of the frozen features; per head a
class-balanced softmax / logistic regression or a ridge regression; the
number of components and the L2 weight chosen by 5-fold cross-validation
*grouped by photo* (a photo's copies never straddle folds) on the training
photos. The same folds' out-of-fold scores (never the held-out photos)
then give

* the **calibration** (Platt scaling for the flags, temperature and class
  biases for the softmax heads, fitted by likelihood on the photos' own
  label frequencies) so that a probability of 0.8 means right 8 times in 10;
  the expected calibration error is reported on the held-out photos;
* the **decision** thresholds (best cross-validated balanced accuracy; what
  ``eval`` scores);
* the **drawing** thresholds (:func:`precision_threshold`): the lowest
  probability at which the cross-validated precision reaches
  :data:`DRAW_PRECISION`: an invented hat is worse than a missed one.

Both threshold sets travel in the model's metadata (``decision_thresholds``,
``draw_thresholds``) and :func:`avatarizer.hair.decode_attributes` reads
them. The report (``runs/attributes/report.json``) holds the CV scores, the
held-out metrics of the torch model and of the shipped int8 file, the
expected calibration errors and the thresholds.

The shipped file is int8 (:func:`export`: the student's convolutions after
the first and the pooling in integers, the first convolution, the student's
linear layer and the heads in fp32, unsigned activations so that ONNX Runtime
runs every quantized convolution as a ``QLinearConv``) and passes the gate
of :func:`gate_metrics` against the fp32 file.
"""
from __future__ import annotations

import json
import math
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as Fn
from torch import nn

from avatarizer import hair as HR

from . import staging
from .onnx_util import NPZ_UNREADABLE, mirror_mean, staged
from .paths import ROOT, cache_dir, shared_dir

RUN = ROOT / "runs" / "attributes"
MODELS = ROOT / "sdk" / "avatarizer" / "models"
ROLE = "attributes"
FP32_NAME, FP32_FILE = "attributes-onnx-fp32", "attributes-fp32.onnx"  # build artefact (runs/export)
SHIP_NAME, SHIP_FILE = "attributes-onnx-int8", "attributes-int8.onnx"  # shipped
#: files of earlier versions removed from the models folder (and its manifest) on export
RETIRED = {"attributes-onnx-fp16": "attributes-fp16.onnx"}
#: what a full run (:func:`run`) writes. 2.3.0, the shipped file, is 2.2.0 with
#: its beard, moustache and glasses heads refitted on the labels by eye
#: (:func:`refit`); a full run trains the teacher, the student and every head
#: with those labels, a different network, hence its own version.
VERSION = "2.4.0"
INPUT = 128
ALEX_SIZE = 128
COLOUR_POOL = 8
ALEX_TAPS = (2, 3, 4)  # relu3, relu4, relu5
ALEX_POOL = 3
#: where the maps do not split into ALEX_POOL equal sliding bins (5×5 at 96 px),
#: pool with one window sliding by a cell (one ONNX AveragePool) rather than
#: adaptive_avg_pool2d's bins as slices and means (dozens of small ops)
OVERLAP_POOL = True
N_AUG = 2
#: every training photo with a label of a head in :data:`LIGHTING_HEADS` also
#: enters ``N_LIGHTING`` times under another light (:func:`lighting_crop`, the
#: variants from :data:`LIGHTING_VARIANT`), for those heads alone: the hair
#: colour's labels change with the light's colour. Measured (session 74, the
#: glasses head refitted on the shipped 2.3.6's features without and with 2
#: such variants, the held-out crops with a glasses label read with their
#: mirror image, 11 with sunglasses): sunglasses invented under a
#: fluorescent cast 2 -> 0, a cool cast 2 -> 0, gamma 1.7 6 -> 3, gamma 2.5
#: 26 -> 12, as shot 2 -> 2, found 9 -> 10 of 11 as shot; the out-of-fold
#: balanced accuracy 0.930 -> 0.936 (the shipped refit, its own basis:
#: 0.938; docs/MODEL_CARD.md, H 2.3.7).
N_LIGHTING = 2
LIGHTING_VARIANT = 100
LIGHTING_HEADS = ("glasses",)
GLASSES_LABEL = {"NoGlasses": 0, "ReadingGlasses": 1, "Sunglasses": 2}  # SwimmingGoggles: dropped
HEADS = {"hair_colour": len(HR.HAIR_COLOURS), "glasses": len(HR.GLASSES),
         "binary": len(HR.BINARY_ATTRIBUTES), "regress": len(HR.REGRESSED_ATTRIBUTES)}
#: the labels by eye H learns from (docs/data.md). Headwear and hair colour
#: are labelled too but left out: refitted on them (session 6) the headwear
#: head invented 3 hats among the held-out photos labelled by eye (none
#: before) and the hair colour head scored 0.648 against 0.673 on the shared
#: labels' held-out photos (0.648 against 0.529 on those labelled by eye).
H_EYE_FIELDS = ("glasses", "beard", "moustache")
#: UTKFace training photos used (age and gender; a random, fixed subset keeps
#: `make models` to minutes on two cores)
UTK_TRAIN = 3000
#: cross-validated precision an accessory needs before it is drawn; where no
#: threshold reaches it, the next lower target (the model card names which)
DRAW_PRECISION = 0.9
DRAW_PRECISION_FALLBACKS = (0.8, 0.7)
#: the int8 gate (the face model's gate is on its outputs too): mean |Δp| over
#: every probability, and the share of decisions (drawing and balanced) that flip
GATE_PROB_DRIFT = 0.02
GATE_FLIP_RATE = 0.02
#: activation type of the int8 file (see :func:`export`)
QUANT_ACTIVATIONS = "quint8"
#: how many more of the student's last convolutions may be kept in fp32, one at
#: a time, when the quality gate refuses its int8 file (then the run fails)
INT8_FALLBACKS = 2
#: attributes with a drawing threshold (accessories) and with a decision threshold
DRAWN = ("glasses", "sunglasses", "beard", "moustache", "headwear", "bald")
DECIDED = ("glasses", "sunglasses", "bald", "beard", "moustache", "headwear", "male")


# ------------------------------------------------------------------ network


class AlexTaps(nn.Module):
    """ImageNet AlexNet up to the last of :data:`ALEX_TAPS` (frozen), those ReLU
    outputs pooled to a grid."""

    def __init__(self, weights_dir=None):
        super().__init__()
        from .lpips import LPIPS

        lp = LPIPS.from_npz(weights_dir, net="alex")
        self.scaling = lp.scaling
        self.slices = nn.ModuleList(list(lp.slices)[:max(ALEX_TAPS) + 1])
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


def _uniform_bins(n: int, k: int) -> tuple[int, int] | None:
    """(kernel, stride) when ``adaptive_avg_pool2d``'s ``k`` bins over ``n``
    cells are one window sliding by a fixed step (7 -> 3: 3 wide, step 2),
    else None."""
    bins = [((i * n) // k, -((-(i + 1) * n) // k)) for i in range(k)]
    widths = {b - a for a, b in bins}
    steps = {bins[i + 1][0] - bins[i][0] for i in range(k - 1)} or {1}
    if len(widths) == 1 and len(steps) == 1 and bins[0][0] == 0:
        return widths.pop(), steps.pop()
    return None


def adaptive_pool(h: torch.Tensor, k: int) -> torch.Tensor:
    """``adaptive_avg_pool2d(h, k)`` as one ``avg_pool2d`` where its bins are
    a sliding window (7×7 -> 3×3 at 128 px: one ONNX AveragePool), else as
    slices and means (the same bins), which the ONNX exporter takes for any
    input size (5 -> 3 is not a whole factor, which ``adaptive_avg_pool2d``
    needs to export)."""
    n, m = int(h.shape[-2]), int(h.shape[-1])
    rs, cs = _uniform_bins(n, k), _uniform_bins(m, k)
    if rs is not None and cs is not None:
        return Fn.avg_pool2d(h, kernel_size=(rs[0], cs[0]), stride=(rs[1], cs[1]))
    if OVERLAP_POOL and n >= k and m >= k:
        # one window sliding by one cell (5 -> 3: 3 wide); not adaptive_avg_pool2d's bins
        return Fn.avg_pool2d(h, kernel_size=(n - k + 1, m - k + 1), stride=1)
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
    """Frozen features: AlexNet taps of the crop at ALEX_SIZE px, 8×8 mean colours."""

    def __init__(self, alex: AlexTaps, size: int | None = None):
        super().__init__()
        self.alex, self.size = alex, int(ALEX_SIZE if size is None else size)

    def forward(self, x):
        xs = x if x.shape[-1] == self.size else Fn.interpolate(x, size=(self.size, self.size), mode="bilinear",
                                                                 align_corners=False, antialias=False)
        col = Fn.adaptive_avg_pool2d(x, COLOUR_POOL).flatten(1)
        return torch.cat([self.alex(xs), col], 1)


#: the student backbone of 2.2.0 (:class:`Student`): channels of its three
#: stages after a 16-channel stem, and the size of its output (it predicts the
#: teacher's first STUDENT_OUT whitened principal components)
STUDENT_WIDTHS = (32, 64, 128)
STUDENT_STEM = 16
STUDENT_OUT = 256
#: distillation: optimiser steps of DISTIL_BATCH crops (fixed, so that a run is
#: reproducible; about 30 minutes on one shared core), learning rate, the
#: weight of the logit term against the feature term, checkpoint interval
DISTIL_STEPS = 1500
DISTIL_BATCH = 64
DISTIL_LR = 2e-3
DISTIL_LOGIT_WEIGHT = 1.0
DISTIL_CHECKPOINT = 100


def _cbr(cin: int, cout: int, stride: int = 1) -> list:
    return [nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]


class Student(nn.Module):
    """The small CNN of 2.2.0 (about 44 M multiply-adds at 128 px against
    AlexNet's 196 M): seven 3×3 convolutions with batch norm (folded into the
    convolutions on export) and ReLU, 128 → 64 → 32 → 16 → 8 px; the 16 px
    and 8 px maps average-pooled to a 3×3 grid (one AveragePool each, as the
    teacher's taps) and one linear layer to :data:`STUDENT_OUT` values, trained
    (:func:`distil`) to reproduce the teacher's whitened principal components
    and the teacher's head logits."""

    def __init__(self, widths=STUDENT_WIDTHS, stem: int = STUDENT_STEM, out: int = STUDENT_OUT):
        super().__init__()
        a, b, c = widths
        self.s1 = nn.Sequential(*_cbr(3, stem, 2), *_cbr(stem, a, 2), *_cbr(a, a))
        self.s2 = nn.Sequential(*_cbr(a, b, 2), *_cbr(b, b))
        self.s3 = nn.Sequential(*_cbr(b, c, 2), *_cbr(c, c))
        self.fc = nn.Linear(9 * (b + c), out)

    def forward(self, x):
        h2 = self.s2(self.s1(x))
        h3 = self.s3(h2)
        return self.fc(torch.cat([adaptive_pool(h2, ALEX_POOL).flatten(1), adaptive_pool(h3, ALEX_POOL).flatten(1)], 1))


class StudentBackbone(nn.Module):
    """2.2.0's features: the student's output and the 8×8 mean colours (the
    same colour block as :class:`Backbone`, at the end)."""

    def __init__(self, student: Student):
        super().__init__()
        self.student = student

    def forward(self, x):
        col = Fn.adaptive_avg_pool2d(x, COLOUR_POOL).flatten(1)
        return torch.cat([self.student(x), col], 1)


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


def _at_least(d, key: str, threshold: float = 0.5) -> float:
    """1.0 / 0.0 as ``d[key] >= threshold``; NaN (not labelled) where ``d``
    or the key is missing or null."""
    v = d.get(key) if isinstance(d, dict) else None
    return np.nan if v is None else float(float(v) >= threshold)


def _ffhq_targets(a: dict) -> dict:
    """The targets of one ffhq128-labelled ``faceAttributes`` record. A field
    the record lacks is not labelled (-1 for the classes, NaN for the rest),
    not "no": a labels file of glasses alone scored every photo beardless,
    hatless and female. A gender other than male / female (any case) is not
    labelled either (``read_labels``, the explicit ``--labels`` file,
    refuses it)."""
    hair = a.get("hair")
    hc = [c["color"] for c in (hair or {}).get("hairColor") or []]
    top = hc[0] if hc else None
    gender = a.get("gender")
    gender = gender.lower() if isinstance(gender, str) and gender.lower() in ("male", "female") else None
    acc = a.get("accessories")
    return dict(
        hair_colour=HR.HAIR_COLOURS.index(top) if top in HR.HAIR_COLOURS else -1,
        glasses=GLASSES_LABEL.get(a.get("glasses"), -1),
        bald=_at_least(hair, "bald"),
        beard=_at_least(a.get("facialHair"), "beard"),
        moustache=_at_least(a.get("facialHair"), "moustache"),
        headwear=np.nan if acc is None else float(any(
            x.get("type") == "headwear" and x.get("confidence", 0) >= 0.5 for x in acc)),
        male=np.nan if gender is None else float(gender == "male"),
        age=float(a.get("age") if a.get("age") is not None else np.nan),
    )


def _artist_hair(al, rows: np.ndarray, shared: Path) -> np.ndarray:
    """The auto-artist's hair fit of each aligned original (rows), as
    :func:`avatarizer.hair.hair_attributes_from_params` (length, volume,
    curl, fringe); cached in ``runs/attributes``, kept while the photos and
    the artist (:func:`avatarizer_export.data.artist_key`, what the pairs'
    cache is keyed by) are the same."""
    from tqdm import tqdm

    from avatarizer.artist import AutoArtist

    from .data import _load_rgb, _pad, artist_key, valid_mask

    path = RUN / "artist_hair.npz"
    keys = np.array([al.keys[i] for i in rows])
    artist = json.dumps(artist_key(), sort_keys=True)
    if path.exists():
        try:
            with np.load(path) as z:
                if len(z["keys"]) == len(keys) and (z["keys"] == keys).all() \
                        and "artist" in z.files and str(z["artist"]) == artist:
                    return z["hair"]
        except NPZ_UNREADABLE as exc:
            print(f"attributes: {path} unreadable ({type(exc).__name__}: {exc}); computed again")
    fit = AutoArtist().fit_landmarks
    out = np.full((len(rows), 4), np.nan, np.float32)
    for j, i in enumerate(tqdm(rows, desc="artist hair", unit="photo", mininterval=30)):
        img = _load_rgb(shared / "data" / "faces" / al.keys[i])
        shape = _pad(img, int(al.pad[i])).shape if al.pad[i] else img.shape
        p = fit(al.landmarks[i], np.asarray(al.crops[i]), np.asarray(al.hair[i]) / 255.0,
                valid=valid_mask(al.transforms[i], shape))
        out[j] = HR.hair_attributes_from_params(p)[:4]
    RUN.mkdir(parents=True, exist_ok=True)
    with staged(path, "part") as tmp:  # (an interrupted write never leaves half a cache)
        np.savez_compressed(tmp, keys=keys, hair=out, artist=np.array(artist))
    return out


def build_targets(keys: list[str], shared: Path, cache: Path, al=None) -> dict:
    """Per aligned photo: targets (NaN / -1 = unknown) and the held-out mask."""
    from .data import EYE_LABEL_FIELDS, eye_labels, ffhq_labels, is_heldout, utk_labels

    n = len(keys)
    T = {"hair_colour": np.full(n, -1), "glasses": np.full(n, -1)}
    for k in (*HR.BINARY_ATTRIBUTES, *HR.REGRESSED_ATTRIBUTES):
        T[k] = np.full(n, np.nan)
    labels = ffhq_labels(shared)
    by_eye = eye_labels()
    T["eye_labelled"] = np.zeros(n, bool)
    # per field, the photos whose label of it is by eye (a defaulted "no facial hair" is not)
    eye_fields = {k: np.zeros(n, bool) for k in EYE_LABEL_FIELDS}
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
            if by_eye and u and (u["gender"] == "female" or u["age"] < 13) \
                    and not {"beard", "moustache"} & set(by_eye.get(key, ())):
                # UTKFace women and children: no facial hair (a label by eye of another
                # field, as glasses, leaves this default; one of facial hair replaces it)
                T["beard"][i] = T["moustache"][i] = 0.0
        if key in by_eye and folder != "ffhq128-labelled":  # the project's labels by eye (docs/data.md)
            for k, v in by_eye[key].items():
                if k in H_EYE_FIELDS or is_heldout(key):  # the others: held-out reports only
                    T[k][i] = v
                eye_fields[k][i] = True
            T["eye_labelled"][i] = True
    T["eye_fields"] = eye_fields
    T["heldout"] = np.array([is_heldout(k) for k in keys])
    folder = np.array([k.split("/", 1)[0] for k in keys])
    T["folder"] = folder
    hair_rows = np.flatnonzero(~T["heldout"] & np.isin(folder, ["ffhq128", "ffhq128-labelled"]))
    try:  # the pairs' original rows when they are built (make models builds them first)
        from .data import load_pairs

        _, params, source, augs = load_pairs(cache)
        orig = np.array([a == "original" for a in augs])
        for p, i in zip(params[orig], source[orig]):
            if folder[i] != "utkface200":
                T["length"][i], T["volume"][i], T["curl"][i], T["fringe"][i] = HR.hair_attributes_from_params(p)[:4]
    except FileNotFoundError:
        if al is not None:
            h = _artist_hair(al, hair_rows, shared)
            for j, k in enumerate(("length", "volume", "curl", "fringe")):
                T[k][hair_rows] = h[:, j]
    return T


# ----------------------------------------------------------------- features


def load_backbone(weights_dir=None, size: int | None = None) -> Backbone:
    return Backbone(AlexTaps(weights_dir), ALEX_SIZE if size is None else size).eval()


def to_input128(crops_uint8: np.ndarray) -> torch.Tensor:
    x = torch.from_numpy(np.ascontiguousarray(crops_uint8)).permute(0, 3, 1, 2).float()
    return x / 127.5 - 1.0


def augment_crop(crop: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A random similarity warp of the crop (rotation ±10°, scale ±8%, shift
    ±4 px; borders replicated), a mirror half the time, and a colour-safe
    photometric jitter (brightness, contrast, slight blur; hues untouched, so
    hair colour labels stay true)."""
    import cv2

    s = crop.shape[0]
    m = cv2.getRotationMatrix2D((s / 2, s / 2), rng.uniform(-10, 10), 1.0 + rng.uniform(-0.08, 0.08))
    m[:, 2] += rng.uniform(-4, 4, 2)
    x = cv2.warpAffine(np.ascontiguousarray(crop), m, (s, s), flags=cv2.INTER_LINEAR,
                       borderMode=cv2.BORDER_REPLICATE)
    if rng.random() < 0.5:
        x = x[:, ::-1]
    x = x.astype(np.float32)
    x = (x - x.mean()) * rng.uniform(0.85, 1.15) + x.mean() * rng.uniform(0.85, 1.15)
    if rng.random() < 0.25:
        x = cv2.GaussianBlur(x, (0, 0), rng.uniform(0.4, 1.0))
    return np.clip(x + 0.5, 0, 255).astype(np.uint8)


def lighting_crop(crop: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """:func:`augment_crop`'s warp and jitter under another light: a dimmer
    or brighter exposure (gamma 0.6-2.6, seven times in ten), a colour cast
    (each channel's gain log-normal, sigma 0.12, the largest 1: fluorescent,
    tungsten, shade) and, three times in ten, a partial loss of colour (up to
    80% toward grey: faded and sepia prints). H read sunglasses on bare eyes
    under such light (0.08 -> 0.63-0.95 on photos of the labelled set)."""
    x = augment_crop(crop, rng).astype(np.float32) / 255.0
    if rng.random() < 0.7:
        x = x ** rng.uniform(0.6, 2.6)
    g = np.exp(rng.normal(0.0, 0.12, 3))
    x = x * (g / g.max()).astype(np.float32)
    if rng.random() < 0.3:
        s = rng.uniform(0.0, 0.8)
        x = s * (x @ np.array([0.299, 0.587, 0.114], np.float32))[..., None] + (1.0 - s) * x
    return np.clip(x * 255.0 + 0.5, 0, 255).astype(np.uint8)


def compute_features(bb: Backbone, crops, batch: int = 128, desc: str = "features") -> np.ndarray:
    from tqdm import tqdm

    out = []
    with torch.no_grad():
        for i in tqdm(range(0, len(crops), batch), desc=desc, unit="batch"):
            out.append(bb(to_input128(np.asarray(crops[i:i + batch]))).numpy().astype(np.float32))
    return np.concatenate(out) if out else np.zeros((0, 0), np.float32)


def sample_table(al, T: dict, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(photo index, variant) of every feature row: each used photo's original
    (variant 0); training photos also mirrored (1); training photos of
    ffhq128-labelled also ``N_AUG`` random augmentations (2..); training
    photos with a label of a head in :data:`LIGHTING_HEADS` also
    ``N_LIGHTING`` under another light (:data:`LIGHTING_VARIANT`..), rows
    only those heads train on (:func:`_task`)."""
    rng = np.random.default_rng(seed)
    folder = np.array([k.split("/", 1)[0] for k in al.keys])
    held = T["heldout"]
    utk_train = np.flatnonzero((folder == "utkface200") & ~held)
    utk_train = np.sort(rng.choice(utk_train, min(UTK_TRAIN, len(utk_train)), replace=False))
    utk_held = np.flatnonzero((folder == "utkface200") & held)
    ffhq = np.flatnonzero(np.isin(folder, ["ffhq128", "ffhq128-labelled"]))
    photos = np.unique(np.concatenate([ffhq, utk_train, utk_held]))
    rows = [(i, 0) for i in photos]
    rows += [(i, 1) for i in photos if not held[i]]
    rows += [(i, v) for i in photos if not held[i] and folder[i] == "ffhq128-labelled" for v in range(2, 2 + N_AUG)]
    lit = np.zeros(len(held), bool)
    for name in LIGHTING_HEADS:
        lit |= (T[name] >= 0) if name in ("hair_colour", "glasses") else np.isfinite(T[name])
    rows += [(i, LIGHTING_VARIANT + v) for i in photos if not held[i] and lit[i] for v in range(N_LIGHTING)]
    t = np.array(rows, np.int64)
    return t[:, 0], t[:, 1]


def table_crops(al, photo: np.ndarray, variant: np.ndarray, seed: int = 0):
    """The feature table's crops in row order (uint8 H×W×3): the original
    (variant 0), mirrored (1), :func:`augment_crop`'s warp and jitter (2..)
    or :func:`lighting_crop`'s (:data:`LIGHTING_VARIANT`..), the same for
    every backbone of one ``seed`` (each kind from its own random stream:
    the lighting rows leave the others' crops as they were)."""
    rng, rng_light = np.random.default_rng(seed + 1), np.random.default_rng(seed + 2)
    for i, v in zip(photo, variant):
        c = np.asarray(al.crops[i])
        if v >= LIGHTING_VARIANT:
            yield lighting_crop(c, rng_light)
        else:
            yield c if v == 0 else (np.ascontiguousarray(c[:, ::-1]) if v == 1 else augment_crop(c, rng))


def weights_key(m: nn.Module) -> str:
    """SHA-1 (12 hex digits) of a module's parameters and buffers, by name."""
    import hashlib

    h = hashlib.sha1()
    for k, v in m.state_dict().items():
        h.update(k.encode())
        h.update(v.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:12]


def table_features(bb: nn.Module, al, photo: np.ndarray, variant: np.ndarray, seed: int = 0,
                   name: str | None = None) -> np.ndarray:
    """Backbone features of every (photo, variant) row; cached in runs/attributes
    (the teacher's under a name from its configuration, another backbone's
    under ``name``: ``features_<name>_...``) for those rows, the backbone's
    weights (:func:`weights_key`: a retrained student is run again) and the
    aligned crops (``al.key``: photos aligned again, another cache)."""
    RUN.mkdir(parents=True, exist_ok=True)
    wk = weights_key(bb)
    taps = "".join(str(t + 1) for t in ALEX_TAPS)
    prefix = f"features_{name}_" if name else "features_a"
    tag = (f"{prefix}{ALEX_SIZE}_p{ALEX_POOL}_r{taps}_n{len(photo)}_s{seed}.npz" if not name
           else f"{prefix}n{len(photo)}_s{seed}.npz")
    path = RUN / tag
    if path.exists():
        try:
            with np.load(path) as z:
                if "weights" in z.files and str(z["weights"]) == wk and z["photo"].shape == photo.shape \
                        and "aligned" in z.files and str(z["aligned"]) == getattr(al, "key", "") \
                        and (z["photo"] == photo).all() and (z["variant"] == variant).all():
                    return z["f"]
        except NPZ_UNREADABLE as exc:
            print(f"attributes: {path} unreadable ({type(exc).__name__}: {exc}); computed again")
    out, buf = [], []
    from tqdm import tqdm

    with torch.no_grad():
        for c in tqdm(table_crops(al, photo, variant, seed), total=len(photo), desc="features", unit="crop",
                      mininterval=30):
            buf.append(c)
            if len(buf) == 128:
                out.append(bb(to_input128(np.stack(buf))).numpy())
                buf = []
        if buf:
            out.append(bb(to_input128(np.stack(buf))).numpy())
    f = np.concatenate(out).astype(np.float32)
    for old in RUN.glob(f"{prefix}*.npz"):
        old.unlink()
    with staged(path, "part") as tmp:
        np.savez(tmp, photo=photo, variant=variant, weights=wk, aligned=getattr(al, "key", ""), f=f)
    return f


# ----------------------------------------------------------------- training
#
# ~400 labelled photos and ~8,300 frozen features: a linear head overfits at
# once. The features are projected on their first principal components
# (computed on every training row, labelled or not) and whitened; each head is
# an L2-regularised, class-balanced logistic / softmax regression or a ridge
# regression in that space, fitted to its optimum (L-BFGS / closed form). The
# number of components and the L2 weight are chosen per head by 5-fold CV
# grouped by photo; the projection and the calibration are folded into the
# head's linear layer for export.

PCA_COMPONENTS = 256
K_GRID = (64, 128, 256)
LAMBDA_GRID = (0.03, 0.1, 0.3, 1.0, 3.0)
#: the hair colour head also sees the whitened PCA of the 8×8 colour block alone
COLOUR_COMPONENTS = 48
FOLDS = 5


def pca_basis(X: np.ndarray, q: int = PCA_COMPONENTS, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(V (D×q), scale (q,)): whitened coordinates are ``x_std @ V / scale``."""
    torch.manual_seed(seed)
    _, sv, V = torch.svd_lowrank(torch.from_numpy(np.ascontiguousarray(X)), q=q, niter=3)
    scale = (sv / np.sqrt(len(X))).clamp(min=1e-6)
    return V.numpy().astype(np.float32), scale.numpy().astype(np.float32)


def _cached_pca(X: np.ndarray, tag: int, name: str = "") -> np.ndarray:
    """Whitened PCA basis (D×q) of the training rows, cached beside the features
    (one file per backbone ``name``)."""
    import hashlib

    # (all of it: a key of every 97th row reused the old basis, and the student trained in it, for a table
    # whose other rows had changed; a review, session 73)
    digest = hashlib.sha1(repr(X.shape).encode() + np.ascontiguousarray(X).tobytes()).hexdigest()[:12]
    path = RUN / f"pca_{name}n{tag}_{digest}.npy"
    if path.exists():
        try:
            return np.load(path)
        except (OSError, ValueError, EOFError) as exc:
            print(f"attributes: {path} unreadable ({type(exc).__name__}: {exc}); computed again")
    V, sc = pca_basis(X)
    V = (V / sc).astype(np.float32)
    for old in RUN.glob(f"pca_{name}n*.npy"):
        old.unlink()
    with staged(path, "part") as tmp:
        np.save(tmp, V)
    return V


def _torch_load_or_none(path: Path, log=print):
    """A checkpoint saved by this module, or None where there is none or it
    cannot be read (half a file from a run killed while saving, before the
    saves were staged: named, and the step run again). Read with
    ``weights_only`` (tensors, numbers, strings and containers: what it
    saves), so a file put there cannot run code as it is read."""
    if not path.exists():
        return None
    try:
        d = torch.load(path, weights_only=True)
    except Exception as exc:  # (torch raises RuntimeError, EOFError, UnpicklingError, ... for a bad file)
        log(f"attributes: {path} unreadable ({type(exc).__name__}: {exc}); not used")
        return None
    return d if isinstance(d, dict) else None


def _class_weights(y, kind, ncls):
    """Per-row weights that give every class the same total weight."""
    if kind == "ce":
        yt = np.asarray(y, np.int64)
        cnt = np.maximum(np.bincount(yt, minlength=ncls), 1)
        return (len(yt) / (ncls * cnt))[yt].astype(np.float64)
    yt = np.asarray(y, np.float64)
    pos, neg = max(yt.sum(), 1.0), max((1 - yt).sum(), 1.0)
    return np.where(yt > 0.5, 0.5 * len(yt) / pos, 0.5 * len(yt) / neg)


def fit_head(Z: np.ndarray, y, kind: str, lam: float, ncls: int = 2, balance: bool = True):
    """One head on whitened coordinates Z: returns (W (k×out), b (out,)).
    kind 'ce' (softmax, int classes), 'bce' (logistic, 0/1), 'ridge' (float)."""
    Zd = torch.from_numpy(np.asarray(Z, np.float64))
    n, k = Zd.shape
    if kind == "ridge":
        yt = torch.from_numpy(np.asarray(y, np.float64))
        mz, my = Zd.mean(0), yt.mean()
        Zc = Zd - mz
        A = Zc.T @ Zc / n + lam * torch.eye(k, dtype=torch.float64)
        W = torch.linalg.solve(A, Zc.T @ (yt - my) / n)
        return W[:, None].numpy(), np.array([float(my - mz @ W)])
    out = ncls if kind == "ce" else 1
    cw = torch.from_numpy(_class_weights(y, kind, ncls) if balance else np.ones(n))
    yt = torch.from_numpy(np.asarray(y, np.int64 if kind == "ce" else np.float64))
    W = torch.zeros(k, out, dtype=torch.float64, requires_grad=True)
    b = torch.zeros(out, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([W, b], lr=1, max_iter=100, line_search_fn="strong_wolfe", tolerance_grad=1e-6,
                            tolerance_change=1e-8, history_size=20)

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


def fit_calibration(logits: np.ndarray, y, kind: str) -> tuple[np.ndarray, np.ndarray]:
    """(a, c) with calibrated logits ``a * logits + c`` by likelihood on
    out-of-fold logits and the true labels (unweighted, so the photos' own
    label frequencies): Platt scaling for a flag (a, c scalars), a
    temperature and per-class biases for a softmax head."""
    s = torch.from_numpy(np.asarray(logits, np.float64))
    ncls = s.shape[1]
    a = torch.ones(1, dtype=torch.float64, requires_grad=True)
    c = torch.zeros(ncls, dtype=torch.float64, requires_grad=True)
    yt = torch.from_numpy(np.asarray(y, np.int64 if kind == "ce" else np.float64))
    opt = torch.optim.LBFGS([a, c], lr=1, max_iter=200, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        o = a * s + c
        loss = Fn.cross_entropy(o, yt) if kind == "ce" else Fn.binary_cross_entropy_with_logits(o[:, 0], yt)
        loss = loss + 1e-4 * (a - 1) ** 2
        loss.sum().backward()
        return loss.sum()

    opt.step(closure)
    return a.detach().numpy(), c.detach().numpy()


def expected_calibration_error(p: np.ndarray, y: np.ndarray, bins: int = 10) -> float:
    """ECE of binary probabilities ``p`` against 0/1 labels ``y``: the
    size-weighted mean |accuracy − confidence| over ``bins`` equal-width bins
    of the predicted probability of the positive class."""
    p, y = np.asarray(p, np.float64), np.asarray(y, np.float64)
    if len(p) == 0:
        return float("nan")
    idx = np.minimum((p * bins).astype(int), bins - 1)
    err = 0.0
    for b in range(bins):
        m = idx == b
        if m.any():
            err += m.sum() * abs(y[m].mean() - p[m].mean())
    return float(err / len(p))


def precision_threshold(p: np.ndarray, y: np.ndarray, target: float = DRAW_PRECISION, min_hits: int = 3) -> float:
    """The lowest probability from which the precision among photos at or
    above it is at least ``target`` (with at least ``min_hits`` of them),
    scanning the observed probabilities; if no threshold reaches the target,
    the one with the best precision (ties: the lower); never below 0.5."""
    p, y = np.asarray(p, np.float64), np.asarray(y, np.float64)
    order = np.argsort(-p)
    ps, ys = p[order], y[order]
    tp = np.cumsum(ys)
    n = np.arange(1, len(ps) + 1)
    prec = tp / n
    ok = (n >= min_hits) & (prec >= target)
    # only cut between distinct probabilities
    distinct = np.r_[ps[1:] < ps[:-1], True]
    ok &= distinct
    if ok.any():
        j = np.flatnonzero(ok)[-1]
    else:
        cand = np.flatnonzero(distinct & (n >= min_hits))
        if len(cand) == 0:
            return 0.99
        j = cand[np.argmax(prec[cand])]
    return float(round(max(0.5, ps[j] - 1e-6), 4))


def _score(y, pred, kind):
    from .metrics import balanced_accuracy, mae

    return balanced_accuracy(y, pred) if kind != "ridge" else -mae(y, pred)


def _task(T: dict, name: str, photo: np.ndarray, variant: np.ndarray, train_photo: np.ndarray):
    """(row mask over the feature table, targets, kind, ncls) of one head's training rows."""
    if name in ("hair_colour", "glasses"):
        y_ph = T[name]
        ok = y_ph >= 0
        kind, ncls = "ce", HEADS[name]
    elif name in HR.BINARY_ATTRIBUTES:
        y_ph, ok, kind, ncls = T[name], np.isfinite(T[name]), "bce", 2
    else:
        y_ph, ok, kind, ncls = T[name], np.isfinite(T[name]), "ridge", 1
    rows = ok[photo] & train_photo[photo]
    if name not in LIGHTING_HEADS:  # (another light's rows: only for the heads whose labels it keeps)
        rows &= variant < LIGHTING_VARIANT
    y = y_ph[photo[rows]]
    if kind == "ridge" and name == "age":
        y = y / 100.0
    if kind == "ce":
        y = y.astype(np.int64)
    return rows, y, kind, ncls


def _photo_folds(photos: np.ndarray, strat: np.ndarray, seed: int = 0) -> dict:
    """photo index → fold, stratified by the photo's label."""
    rng = np.random.default_rng(seed)
    fold = {}
    for c in np.unique(strat):
        idx = photos[strat == c]
        idx = idx[rng.permutation(len(idx))]
        for j, i in enumerate(idx):
            fold[int(i)] = j % FOLDS
    return fold


def train_head(Z: np.ndarray, T: dict, name: str, photo, variant, train_photo, log=print, cv: bool = True,
               k_grid=K_GRID, extra: np.ndarray | None = None):
    """CV-chosen (k, λ), the final head on every training row, its
    calibration (of one view's logits), and the out-of-fold calibrated
    outputs of the training photos, each the mean of its original's and its
    mirror image's probabilities (the SDK reads H so). Returns a dict."""
    t0 = time.time()
    rows, y, kind, ncls = _task(T, name, photo, variant, train_photo)
    ridx = np.flatnonzero(rows)
    ph = photo[ridx]
    orig = variant[ridx] == 0
    # each original's mirror-image row (variant 1, the same photo and fold): the out-of-fold outputs the
    # calibration and the thresholds are fitted on are the two averaged, as the SDK reads H (the crop and its
    # mirror image, avatarizer.pipeline.hair.mirrored_mean; a review, session 73); -1 where there is none
    mirror_row = {int(p_): j for j, p_ in enumerate(ph) if variant[ridx[j]] == 1}
    mir = np.array([mirror_row.get(int(p_), -1) for p_ in ph[orig]], np.int64)
    read = orig | (variant[ridx] == 1)
    if kind == "ridge" and name != "age" and rows.sum() > 6000:  # hair pseudo-labels: enough as they are
        cv = False
    uniq, first = np.unique(ph, return_index=True)
    strat = (y[first] >= 0.5).astype(int) if kind == "bce" else (y[first] if kind == "ce" else np.zeros(len(uniq)))
    folds = _photo_folds(uniq, strat)
    fold = np.array([folds[int(i)] for i in ph])
    grid = [(k, lam) for k in k_grid for lam in LAMBDA_GRID] if cv else [(128, 0.03 if kind != "ridge" else 1.0)]
    scores, oofs = {}, {}
    Zr = Z[ridx]
    Er = None if extra is None else extra[ridx]

    def cols(k):
        return Zr[:, :k] if Er is None else np.concatenate([Zr[:, :k], Er], 1)

    for k, lam in grid:
        Zk = cols(k)
        oof = np.zeros((len(ridx), ncls if kind == "ce" else 1))
        for f in range(FOLDS):
            tr, te = fold != f, (fold == f) & read
            if kind != "ridge" and len(np.unique(y[tr])) < 2:
                continue
            W, b = fit_head(Zk[tr], y[tr], kind, lam, ncls)
            oof[te] = Zk[te] @ W + b
        avg = _mirror_averaged(oof, orig, mir)  # (one row per original: the model's choice on the two views)
        pred = avg.argmax(1) if kind == "ce" else ((avg[:, 0] > 0).astype(float) if kind == "bce" else avg[:, 0])
        scores[(k, lam)] = _score(y[orig], pred, kind)
        oofs[(k, lam)] = oof
    best = max(scores, key=lambda kl: (round(scores[kl], 3), -kl[0], kl[1]))
    k, lam = best
    W, b = fit_head(cols(k), y, kind, lam, ncls)
    oof = oofs[best]
    res = {"name": name, "kind": kind, "k": k, "lambda": lam, "W": W, "b": b, "train_rows": int(len(ridx)),
           "train_photos": int(len(uniq)), "cv": {f"k{kk}_lambda{ll:g}": round(v, 4) for (kk, ll), v in scores.items()},
           "cv_best": round(scores[best], 4)}
    if kind != "ridge" and cv:
        # the calibration is of one view's logits, as the exported head applies it to each; the out-of-fold
        # outputs the thresholds are fitted on are each view's calibrated probabilities averaged, what the SDK
        # compares them with (avatarizer.pipeline.hair.mirrored_mean averages H's outputs; a review)
        views = np.concatenate([orig.nonzero()[0], mir[mir >= 0]])
        a, c = fit_calibration(oof[views], y[views], kind)
        res["calibration"] = {"a": float(a[0]), "c": [float(v) for v in c]}
        logits = a * oof + c
        probs = (torch.softmax(torch.from_numpy(logits), 1).numpy() if kind == "ce"
                 else 1 / (1 + np.exp(-logits)))
        out = _mirror_averaged(probs, orig, mir)
        res["oof"] = out if kind == "ce" else out[:, 0]
        res["oof_y"] = y[orig]
        res["W"], res["b"] = W * a, b * a + c
    log(f"  {name}: {'balanced accuracy' if kind != 'ridge' else '-MAE'} (5-fold CV by photo, "
        f"{len(uniq)} photos, {len(ridx)} rows) best k={k} lambda={lam:g}: {scores[best]:.3f} "
        f"({time.time() - t0:.0f} s)")
    return res


def _mirror_averaged(oof: np.ndarray, orig: np.ndarray, mir: np.ndarray) -> np.ndarray:
    """The out-of-fold outputs of the rows ``orig`` (the originals), each
    averaged with its mirror image's row ``mir`` (-1: none, the original's
    alone)."""
    out = oof[orig].copy()
    has = mir >= 0
    out[has] = 0.5 * (out[has] + oof[mir[has]])
    return out


def _best_ba_threshold(p, y) -> float:
    from .metrics import balanced_accuracy

    grid = np.round(np.arange(0.02, 0.99, 0.01), 2)
    s = [balanced_accuracy(y.astype(int), (p >= t).astype(int)) for t in grid]
    best = max(s)
    # the middle of the best plateau (less sensitive to the exact OOF scores)
    ts = grid[np.array(s) >= best - 1e-9]
    return float(ts[len(ts) // 2])


def thresholds_from_oof(heads: dict) -> tuple[dict, dict, dict]:
    """Decision (best CV balanced accuracy) and drawing (CV precision >=
    DRAW_PRECISION) thresholds from the out-of-fold calibrated outputs;
    plus the CV precision / recall at each drawing threshold."""
    dec, draw, at = {}, {}, {}
    flags = _glasses_flags(heads["glasses"])
    for name in ("bald", "beard", "moustache", "headwear", "male"):
        flags[name] = (heads[name]["oof"], heads[name]["oof_y"].astype(float))
    for name, (p, y) in flags.items():
        dec[name], t, a = flag_thresholds(name, p, y)
        if t is not None:
            draw[name], at[name] = t, a
    return dec, draw, at


def _glasses_flags(head: dict) -> dict:
    """The glasses head's out-of-fold outputs as its two flags: glasses of
    any kind (1 - P(none)) and sunglasses, each with its 0/1 labels."""
    oof, y = head["oof"], head["oof_y"]
    return {"glasses": (1 - oof[:, 0], (y > 0).astype(float)), "sunglasses": (oof[:, 2], (y == 2).astype(float))}


def _flags_of(head: str) -> tuple[str, ...]:
    """The decided flags a head's outputs give (the glasses head gives two)."""
    return ("glasses", "sunglasses") if head == "glasses" else (head,)


def flag_thresholds(name: str, p: np.ndarray, y: np.ndarray) -> tuple[float, float | None, dict | None]:
    """One flag's decision threshold (best balanced accuracy), drawing threshold
    (precision >= DRAW_PRECISION, else the fallbacks; None for flags that are
    not drawn) and the precision / recall there, from out-of-fold outputs."""
    dec = _best_ba_threshold(p, y)
    if name not in DRAWN:
        return dec, None, None
    for target in (DRAW_PRECISION, *DRAW_PRECISION_FALLBACKS):
        t = precision_threshold(p, y, target=target)
        m = p >= t
        if m.sum() >= 3 and y[m].mean() >= target:
            break
    at = {"target": target, "cv_precision": round(float(y[m].mean()), 3) if m.any() else None,
          "cv_recall": round(float(m[y > 0].mean()), 3), "positives": int(y.sum()), "photos": len(y)}
    return dec, t, at


def assemble(bb: Backbone, mean: np.ndarray, std: np.ndarray, V: np.ndarray, heads: dict,
             Vc: np.ndarray | None = None) -> AttributeNet:
    """The exportable net: the PCA projection (V: D×q, whitened; Vc: D×c, the
    colour block's, for heads fitted with it) folded into each linear head."""
    net = AttributeNet(bb, torch.from_numpy(mean), torch.from_numpy(std), len(mean))

    def full(name):
        h = heads[name]
        k = h["k"]
        Wf = V[:, :k] @ h["W"][:k]  # D × out
        if len(h["W"]) > k:
            Wf = Wf + Vc @ h["W"][k:]
        return torch.from_numpy(Wf.T.astype(np.float32)), torch.from_numpy(np.asarray(h["b"], np.float32))

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


def flag_metrics(p: np.ndarray, y: np.ndarray, decision: float, draw: float | None = None) -> dict:
    """One flag's held-out record (what :func:`evaluate` writes per flag):
    balanced accuracy at ``decision``, ECE, photos and positives; with a
    ``draw`` threshold also the photos drawn, those drawn without the label
    and the recall of drawing."""
    from .metrics import balanced_accuracy

    p, y = np.asarray(p, np.float64), np.asarray(y).astype(int)
    r = {"balanced_accuracy": round(balanced_accuracy(y, (p >= decision).astype(int)), 3),
         "ece": round(expected_calibration_error(p, y), 3), "n": int(len(y)), "positives": int(y.sum())}
    if draw is not None:
        d = p >= draw
        r["drawn"] = int(d.sum())
        r["drawn_wrong"] = int((d & (y == 0)).sum())
        r["draw_recall"] = round(float(d[y == 1].mean()), 3) if (y == 1).any() else None
    return r


def evaluate(pred: dict, T: dict, photos: np.ndarray, decision: dict, draw: dict,
             priors: dict | None = None) -> dict:
    """Held-out metrics of predictions ``pred`` (rows = ``photos``): balanced
    accuracy per attribute at the decision thresholds (and the argmax of the
    prior-corrected probabilities for hair colour), precision / recall of
    drawing, expected calibration error, MAEs."""
    from .metrics import balanced_accuracy, mae

    res: dict = {}
    p = {"glasses": 1 - pred["glasses"][:, 0], "sunglasses": pred["glasses"][:, 2]}
    y = {"glasses": np.where(T["glasses"][photos] >= 0, (T["glasses"][photos] > 0).astype(float), np.nan),
         "sunglasses": np.where(T["glasses"][photos] >= 0, (T["glasses"][photos] == 2).astype(float), np.nan)}
    for j, k in enumerate(HR.BINARY_ATTRIBUTES):
        p[k], y[k] = pred["binary"][:, j], T[k][photos]
    # the flags over the FFHQ labels (gender also over UTKFace's names); beard
    # and moustache once more over the men labelled by eye (docs/data.md)
    folder = T.get("folder")
    ffhq = np.ones(len(photos), bool) if folder is None else folder[photos] == "ffhq128-labelled"
    eye = T["eye_labelled"][photos] if "eye_labelled" in T else np.zeros(len(photos), bool)

    def by_eye(field):  # the photos whose label of this field is by eye (not a UTKFace default)
        m = (T.get("eye_fields") or {}).get(field)
        return eye if m is None else m[photos]

    for k in DECIDED:
        subsets = [(k, ffhq if k != "male" else np.ones(len(photos), bool))]
        keep_eye = by_eye("glasses" if k == "sunglasses" else k)
        if k != "male" and keep_eye.any():
            subsets.append((f"{k}_eye_labels", keep_eye))
        for key, keep in subsets:
            m = np.isfinite(y[k]) & keep
            if not m.any():
                continue
            res[key] = flag_metrics(p[k][m], y[k][m], decision[k], draw.get(k))
    hc = T["hair_colour"][photos]
    for key, keep in (("hair_colour", ~eye), ("hair_colour_eye_labels", by_eye("hair_colour"))):
        m = (hc >= 0) & keep
        if not m.any():
            continue
        pr = np.array([priors[c] for c in HR.HAIR_COLOURS]) if priors else np.ones(len(HR.HAIR_COLOURS))
        dec_hc = (pred["hair_colour"][m] / np.maximum(pr, 1e-3)).argmax(1)
        res[key] = {"balanced_accuracy": round(balanced_accuracy(hc[m], dec_hc), 3),
                    "balanced_accuracy_argmax": round(balanced_accuracy(hc[m], pred["hair_colour"][m].argmax(1)), 3),
                    "ece_top": round(expected_calibration_error(pred["hair_colour"][m].max(1),
                                                                (pred["hair_colour"][m].argmax(1) == hc[m]).astype(float)), 3),
                    "n": int(m.sum()), "classes": {HR.HAIR_COLOURS[c]: int((hc[m] == c).sum()) for c in np.unique(hc[m])},
                    "recall": {HR.HAIR_COLOURS[c]: f"{int((dec_hc[hc[m] == c] == c).sum())}/{int((hc[m] == c).sum())}"
                               for c in np.unique(hc[m])}}
    for j, k in enumerate(HR.REGRESSED_ATTRIBUTES):
        t = T[k][photos]
        m = np.isfinite(t)
        if not m.any():
            continue
        if k == "age":
            res["age_mae"] = {"mae_years": round(mae(t[m], pred["regress"][m, j]), 2), "n": int(m.sum())}
        else:
            res[f"{k}_mae"] = {"mae": round(mae(t[m], np.clip(pred["regress"][m, j], 0, 1)), 3), "n": int(m.sum())}
    return res


# ------------------------------------------------------------------- export


def _metadata(extra: dict) -> dict:
    from . import formats

    spec = [
        formats.tensor_spec("hair_colour", ["batch", 5], classes=list(HR.HAIR_COLOURS), activation="softmax"),
        formats.tensor_spec("glasses", ["batch", 3], classes=list(HR.GLASSES), activation="softmax"),
        formats.tensor_spec("binary", ["batch", 5], names=list(HR.BINARY_ATTRIBUTES), activation="sigmoid"),
        formats.tensor_spec("regress", ["batch", 5], names=list(HR.REGRESSED_ATTRIBUTES),
                            units=["years", "0..1", "0..1", "0..1", "0..1"]),
    ]
    return formats.make_metadata(
        name=FP32_NAME, role=ROLE, version=VERSION, inputs=[formats.image_input("image", INPUT)], outputs=spec,
        training_data={"faces": "ffhq128-labelled attributes.jsonl (training split), UTKFace file names "
                                "(age, gender), auto-artist hair fits (pseudo-labels) of the training photos",
                       "split": "docs/split.md (held-out photos never used)",
                       "licence": "non-commercial (FFHQ CC BY-NC-SA 4.0, UTKFace research only)",
                       "backbone": f"a {len(STUDENT_WIDTHS) * 2 + 1}-convolution student distilled from "
                                   f"ImageNet AlexNet conv1-{max(ALEX_TAPS) + 1} at {ALEX_SIZE} px (frozen, "
                                   "../shared/weights/alexnet_lpips.npz) with 2.1.0's heads"},
        decode="avatarizer.hair.decode_attributes", **extra)


def gate_metrics(decision: dict, draw: dict):
    """The int8 gate's metrics on (fp32 outputs, candidate outputs)."""

    def flags(o):
        g, b = np.asarray(o["glasses"]), np.asarray(o["binary"])
        p = {"glasses": 1 - g[:, 0], "sunglasses": g[:, 2]}
        p.update({k: b[:, j] for j, k in enumerate(HR.BINARY_ATTRIBUTES)})
        return p

    def prob_drift(ref, cand):
        return float(np.mean([np.abs(np.asarray(ref[k]) - np.asarray(cand[k])).mean()
                              for k in ("hair_colour", "glasses", "binary")]))

    def flip_rate(ref, cand):
        a, b = flags(ref), flags(cand)
        flips = [np.mean((a[k] >= t) != (b[k] >= t)) for th in (decision, draw) for k, t in th.items()]
        flips.append(np.mean(np.asarray(ref["hair_colour"]).argmax(1) != np.asarray(cand["hair_colour"]).argmax(1)))
        return float(np.max(flips))

    def age_drift(ref, cand):
        return float(np.abs(np.asarray(ref["regress"])[:, 0] - np.asarray(cand["regress"])[:, 0]).mean())

    return ({"prob_drift": prob_drift, "decision_flip_rate": flip_rate, "age_drift_years": age_drift},
            {"prob_drift": GATE_PROB_DRIFT, "decision_flip_rate": GATE_FLIP_RATE, "age_drift_years": 1.0})


def retire_old_files(folder: Path = MODELS) -> list[str]:
    """Removes earlier versions' entries (``RETIRED``) from ``folder``'s
    manifest, with the files they list; a file of a retired name that the
    manifest does not list is not ours and stays."""
    from . import formats

    return [name for name in RETIRED if formats.remove_from_manifest(name, folder)]


def export(net: AttributeNet, calib_crops: np.ndarray, eval_crops: np.ndarray, extra: dict,
           decision: dict, draw: dict, folder: Path = MODELS, al=None) -> dict:
    """The int8 H into ``folder`` (the SDK's models folder, or a staging
    copy of it), through a staging copy swapped in whole when it passed its
    gate. With ``al`` (the aligned photos) the staged file's outputs on every
    photo are staged with it (:func:`write_predictions`): what the hair bank
    and the detectors' grey-hair prior read then follows the file shipped."""
    from . import onnx_export
    from .quantize import quantize_gated
    from .ship import BUILD

    meta = _metadata(extra)
    xe = to_input128(eval_crops)
    BUILD.mkdir(parents=True, exist_ok=True)
    rep = onnx_export.export_onnx(net, xe[:1], BUILD / FP32_FILE, FP32_NAME, ["image"],
                                  ["hair_colour", "glasses", "binary", "regress"], meta,
                                  check_inputs=[xe[:8], xe[8:16]], atol=1e-4, manifest_folder=BUILD)
    fns, th = gate_metrics(decision, draw)
    evals = [{"image": xe[i:i + 16].numpy()} for i in range(0, len(xe), 16)]
    # int8: every convolution after the first (2.2.0: the student's six; 2.1.0:
    # AlexNet conv2-5 and their max pooling) and the average pooling of the
    # taps to the grid; the first convolution (on the raw image) and the small
    # tail (the student's linear layer, standardisation, heads) stay fp32: with
    # AlexNet's conv1 quantized the
    # probabilities drift by 0.022 on average and age by 3 years, with it in
    # fp32 by 0.003 and 0.5 (measured on the 96 px model of 2.0.0).
    # Activations unsigned (U8S8, ``QUANT_ACTIVATIONS``): with signed ones
    # ONNX Runtime 1.32 on this AVX2 CPU fuses only conv2 into an integer
    # QLinearConv; conv3-5, whose outputs also feed a tap, ran in fp32 between
    # a DequantizeLinear and a QuantizeLinear, and the int8 file was slower
    # than the fp32 one (2.0.0: 10.0 ms vs 7.0 ms p50). Unsigned: all four
    # fused, the same gate metrics (ONNX Runtime converts signed Q/DQ to
    # unsigned on this CPU anyway).
    import onnx

    nodes = onnx.load(str(BUILD / FP32_FILE)).graph.node
    convs = [n.name for n in nodes if n.op_type == "Conv"]
    keep_fp32 = convs[:1] + [n.name for n in nodes if n.op_type not in ("Conv", "MaxPool", "Relu", "AveragePool")]
    keep_fp32 += [n.name for n in nodes if n.op_type == "AveragePool" and n.input[0] == "image"]
    from .ship import drop_stale
    from .staging import staged_folder

    # into a staging copy of the folder, swapped in whole at the end: a failed or
    # interrupted export leaves the shipped H and its manifest entry as they were
    from .quantize import QualityGateError

    with staged_folder(folder) as stage:
        # a network the gate refuses with every convolution after the first in int8 is tried with its
        # last convolutions kept in fp32 too, one more each time (a fresh-clone make models, session 24:
        # the retrained student flipped 2.9% of the decisions, over the gate's 2%, and the run failed)
        calib = {"image": to_input128(calib_crops).numpy()}
        refused = []
        for extra in range(INT8_FALLBACKS + 1):
            exclude = keep_fp32 + (convs[-extra:] if extra else [])
            try:
                q = quantize_gated(BUILD / FP32_FILE, stage / SHIP_FILE, calib, evals, fns, th, name=SHIP_NAME,
                                   manifest_folder=stage, nodes_to_exclude=exclude,
                                   activation_type=QUANT_ACTIVATIONS)
            except QualityGateError as exc:
                refused.append({"last_convs_fp32": extra, "metrics": exc.report.get("metrics"),
                                "failed": exc.report.get("failed")})
                if extra == INT8_FALLBACKS or extra + 1 >= len(convs):
                    raise
                print(f"attributes: {exc}; again with the last {extra + 1} convolution(s) in fp32", flush=True)
                continue
            q["last_convs_fp32"], q["refused"] = extra, refused
            break
        # H's other entries (earlier versions' files, engines) belong to the previous network
        retired = retire_old_files(stage)
        retired += drop_stale(stage, ROLE, {SHIP_NAME})
        if al is not None:  # committed with the file (and its manifest entry), or discarded with it
            write_predictions(stage / SHIP_FILE, al, folder=stage)
    return {"fp32": {k: rep.get(k) for k in ("max_abs_diff", "size")},
            "int8": {k: q.get(k) for k in ("metrics", "thresholds", "passed", "inputs", "size", "sha256",
                                           "last_convs_fp32", "refused")},
            "retired": retired}


# ---------------------------------------------------------------------- CLI


def fit_heads(feats: np.ndarray, T: dict, photo: np.ndarray, variant: np.ndarray, cv: bool = True,
              name: str = "", log=print) -> dict:
    """Standardisation, whitened PCA and the CV-fitted, calibrated heads on a
    feature table (the last ``3·COLOUR_POOL²`` columns are the colour block);
    the thresholds from their out-of-fold outputs. Returns a dict (``mean``,
    ``std``, ``V``, ``Vc``, ``Z``, ``heads``, ``decision``, ``draw``, ``at``)."""
    held = T["heldout"]
    # the statistics (standardisation, PCA) of the photos as they come: another light's rows are for the heads
    # of LIGHTING_HEADS alone (_task), not the basis every head and the student's distillation read (a third of
    # the training rows; a review, session 74); refit() gives a head of LIGHTING_HEADS refitted alone its own
    train_row = ~held[photo] & (variant < LIGHTING_VARIANT)
    mean = feats[train_row].mean(0)
    std = feats[train_row].std(0) + 1e-3
    Xs = ((feats - mean) / std).astype(np.float32)
    V = _cached_pca(Xs[train_row], len(photo), name)
    Z = Xs @ V
    # the colour block (8×8 mean RGB, the last columns) on its own, for the hair colour head
    ncol = 3 * COLOUR_POOL * COLOUR_POOL
    Vc_blk, sc_c = pca_basis(Xs[train_row][:, -ncol:], q=COLOUR_COMPONENTS)
    Vc = np.zeros((Xs.shape[1], COLOUR_COMPONENTS), np.float32)
    Vc[-ncol:] = Vc_blk / sc_c
    Zc = Xs @ Vc
    heads = {}
    for h in ("hair_colour", "glasses", *HR.BINARY_ATTRIBUTES, *HR.REGRESSED_ATTRIBUTES):
        heads[h] = train_head(Z, T, h, photo, variant, ~held, log=log, cv=cv,
                              extra=Zc if h == "hair_colour" else None)
    decision, draw, at = thresholds_from_oof(heads) if cv else ({k: 0.5 for k in DECIDED}, {k: 0.5 for k in DRAWN}, {})
    return {"mean": mean.astype(np.float32), "std": std.astype(np.float32), "V": V, "Vc": Vc, "Z": Z,
            "heads": heads, "decision": decision, "draw": draw, "at": at}


def logit_map(heads: dict, q: int = STUDENT_OUT) -> tuple[np.ndarray, np.ndarray]:
    """(A (q×m), b (m,)): every head's output before its softmax / sigmoid as a
    linear function ``Z[:, :q] @ A + b`` of the whitened components (the hair
    colour head's colour-block terms left out: the student sees the colour
    block itself)."""
    cols, bias = [], []
    for name in ("hair_colour", "glasses", *HR.BINARY_ATTRIBUTES, *HR.REGRESSED_ATTRIBUTES):
        h = heads[name]
        W = np.zeros((q, np.asarray(h["W"]).shape[1]), np.float32)
        k = min(h["k"], q)
        W[:k] = np.asarray(h["W"])[:k]
        cols.append(W)
        bias.append(np.asarray(h["b"], np.float32).reshape(-1))
    return np.concatenate(cols, 1), np.concatenate(bias)


def distil_photos(al, T: dict) -> np.ndarray:
    """Every aligned photo the student learns from: all training photos of
    every folder, labelled or not (the held-out photos never)."""
    return np.flatnonzero(~T["heldout"][: len(al.keys)])


def distil(teacher: Backbone, mean: np.ndarray, std: np.ndarray, V: np.ndarray, A: np.ndarray, al,
           photos: np.ndarray, steps: int = DISTIL_STEPS, seed: int = 0, log=print) -> Student:
    """Trains :class:`Student` to reproduce the teacher's whitened components
    ``Z = ((teacher(x) - mean) / std) @ V[:, :STUDENT_OUT]`` and its head
    logits ``Z @ A`` (each logit scaled to unit spread) on crops of
    ``photos`` drawn at random, each as it is, mirrored or with
    :func:`augment_crop`'s warp and jitter (a third each); the teacher runs
    on the same crop. Mean squared error of both, AdamW, a cosine learning
    rate. Checkpointed in ``runs/attributes/student_ckpt.pt`` every
    :data:`DISTIL_CHECKPOINT` steps and resumed from there; the finished
    student is kept in ``runs/attributes/student.pt`` (reused while its
    configuration, photos, teacher components and logit map ``A`` are the
    same)."""
    import hashlib

    RUN.mkdir(parents=True, exist_ok=True)
    cfg = {"widths": list(STUDENT_WIDTHS), "stem": STUDENT_STEM, "out": STUDENT_OUT, "steps": int(steps),
           "batch": DISTIL_BATCH, "lr": DISTIL_LR, "logit_weight": DISTIL_LOGIT_WEIGHT, "seed": int(seed),
           "photos": hashlib.sha1(np.asarray(photos, np.int64).tobytes()).hexdigest()[:12],
           "teacher": hashlib.sha1(np.ascontiguousarray(V[:, :STUDENT_OUT]).tobytes()).hexdigest()[:12],
           "logits": hashlib.sha1(np.ascontiguousarray(A, np.float64).tobytes()).hexdigest()[:12]}
    final, ckpt = RUN / "student.pt", RUN / "student_ckpt.pt"
    student = Student()
    d = _torch_load_or_none(final, log)
    if d is not None:
        if d.get("config") == cfg:
            student.load_state_dict(d["state"])
            log(f"attributes: student reused ({final})")
            return student.eval()
    torch.manual_seed(seed)
    student = Student()
    Vq = torch.from_numpy(np.ascontiguousarray(V[:, :STUDENT_OUT]))
    mu, sd = torch.from_numpy(mean), torch.from_numpy(std)
    At = torch.from_numpy(A)
    # each logit to unit spread over the teacher's components (std of Z @ A, Z whitened)
    a_scale = torch.from_numpy(np.sqrt((A ** 2).sum(0)) + 1e-6)
    opt = torch.optim.AdamW(student.parameters(), lr=DISTIL_LR, weight_decay=1e-4)
    warm = max(1, steps // 20)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda t: min(1.0, (t + 1) / warm) * 0.5 * (1 + math.cos(math.pi * min(t, steps) / steps)))
    rng = np.random.default_rng(seed + 7)
    start, hist = 0, []
    d = _torch_load_or_none(ckpt, log)
    if d is not None:
        if d.get("config") == cfg:
            student.load_state_dict(d["state"])
            opt.load_state_dict(d["opt"])
            sched.load_state_dict(d["sched"])
            rng.bit_generator.state = d["rng"]
            torch.set_rng_state(d["torch_rng"])
            start, hist = d["step"], d["hist"]
            log(f"attributes: distillation resumed at step {start}")
    teacher.eval()
    student.train()
    t0 = time.time()
    for step in range(start, steps):
        idx = rng.choice(photos, DISTIL_BATCH)
        kinds = rng.integers(0, 3, DISTIL_BATCH)
        batch = []
        for i, kd in zip(idx, kinds):
            c = np.asarray(al.crops[i])
            batch.append(c if kd == 0 else (np.ascontiguousarray(c[:, ::-1]) if kd == 1 else augment_crop(c, rng)))
        x = to_input128(np.stack(batch))
        with torch.no_grad():
            z = ((teacher(x) - mu) / sd) @ Vq
        zh = student(x)
        e = zh - z
        lf = (e ** 2).mean()
        ll = (((e @ At) / a_scale) ** 2).mean()
        loss = lf + DISTIL_LOGIT_WEIGHT * ll
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        hist.append((lf.item(), ll.item()))
        if (step + 1) % DISTIL_CHECKPOINT == 0 or step + 1 == steps:
            f, lg = np.mean(hist[-DISTIL_CHECKPOINT:], 0)
            log(f"  distil step {step + 1}/{steps}: feature MSE {f:.3f}, logit MSE {lg:.3f} "
                f"({(time.time() - t0) / (step + 1 - start):.2f} s/step)")
            with staged(ckpt, "part") as tmp:  # (killed while saving: the checkpoint before stays whole)
                torch.save({"config": cfg, "state": student.state_dict(), "opt": opt.state_dict(),
                            "sched": sched.state_dict(), "rng": rng.bit_generator.state,
                            "torch_rng": torch.get_rng_state(), "step": step + 1, "hist": hist}, tmp)
    student.eval()
    with staged(final, "part") as tmp:
        torch.save({"config": cfg, "state": student.state_dict(), "hist": hist}, tmp)
    if ckpt.exists():
        ckpt.unlink()
    return student


def run(cache: Path | None = None, shared: Path | None = None, cv: bool = True, do_export: bool = True,
        log=print, steps: int = DISTIL_STEPS, folder: Path = MODELS) -> dict:
    """H's training, and with ``do_export`` its int8 file into ``folder``
    (the SDK's models folder, or ``make models``' staging copy of it)."""
    from .data import load_aligned

    torch.set_num_threads(1)  # small dense fits: one thread is fastest on a shared machine
    torch.manual_seed(0)
    t0 = time.time()
    cache = cache_dir(cache)
    shared = shared_dir(shared)
    al = load_aligned(cache)
    T = build_targets(al.keys, shared, cache, al=al)
    bb = load_backbone()
    photo, variant = sample_table(al, T)
    log(f"attributes: AlexNet features at {ALEX_SIZE} px of {len(photo)} rows ({len(np.unique(photo))} photos)")
    feats = table_features(bb, al, photo, variant)
    held = T["heldout"]
    hc_train = T["hair_colour"][(~held) & (T["hair_colour"] >= 0)]
    priors = {c: round(float(np.mean(hc_train == j)), 4) for j, c in enumerate(HR.HAIR_COLOURS)}
    hrows = np.flatnonzero(held[photo] & (variant == 0))
    hphotos = photo[hrows]
    # the teacher: 2.1.0's fit on the frozen AlexNet features
    log("attributes: teacher heads (AlexNet features)")
    tf = fit_heads(feats, T, photo, variant, cv=cv, log=log)
    teacher = assemble(bb, tf["mean"], tf["std"], tf["V"], tf["heads"], tf["Vc"])
    with torch.no_grad():
        tpred = outputs_to_arrays(teacher.from_features(torch.from_numpy(feats[hrows])))
    teacher_res = evaluate(tpred, T, hphotos, tf["decision"], tf["draw"], priors)
    del feats
    # the student, distilled from the teacher on every training photo, then
    # its own heads, calibration and thresholds by the same procedure
    A, _ = logit_map(tf["heads"])
    photos = distil_photos(al, T)
    log(f"attributes: distilling the student on {len(photos)} training photos, {steps} steps of {DISTIL_BATCH}")
    student = distil(bb, tf["mean"], tf["std"], tf["V"], A, al, photos, steps=steps, log=log)
    sbb = StudentBackbone(student).eval()
    sfeats = table_features(sbb, al, photo, variant, name="student")
    log("attributes: student heads")
    sf = fit_heads(sfeats, T, photo, variant, cv=cv, name="student_", log=log)
    decision, draw, at, heads = sf["decision"], sf["draw"], sf["at"], sf["heads"]
    log(f"attributes: decision thresholds {decision}; drawing thresholds (CV precision >= {DRAW_PRECISION}) {draw}")
    net = assemble(sbb, sf["mean"], sf["std"], sf["V"], heads, sf["Vc"])
    with torch.no_grad():
        pred = outputs_to_arrays(net.from_features(torch.from_numpy(sfeats[hrows])))
    res = evaluate(pred, T, hphotos, decision, draw, priors)
    report = {"heldout": res, "teacher_heldout": teacher_res, "decision_thresholds": decision,
              "draw_thresholds": draw, "draw_cv": at, "hair_colour_priors": priors,
              "heads": {k: {kk: vv for kk, vv in h.items() if kk not in ("W", "b", "oof", "oof_y")}
                        for k, h in heads.items()},
              "teacher_heads": {k: {kk: vv for kk, vv in h.items() if kk not in ("W", "b", "oof", "oof_y")}
                                for k, h in tf["heads"].items()},
              "rows": int(len(photo)), "alex_size": ALEX_SIZE, "distil_photos": int(len(photos)),
              "distil_steps": int(steps), "student": {"widths": list(STUDENT_WIDTHS), "stem": STUDENT_STEM,
                                                      "out": STUDENT_OUT}}
    RUN.mkdir(parents=True, exist_ok=True)
    with staged(RUN / "heads.pt", "part") as tmp:
        torch.save({"state": net.state_dict(), "dim": len(sf["mean"]), "student": True,
                    "decision_thresholds": decision, "draw_thresholds": draw}, tmp)
    if do_export:
        source = np.array([k.split("/", 1)[0] for k in al.keys])  # each photo's folder under data/faces
        lab_held = np.flatnonzero(held & (source == "ffhq128-labelled"))
        calib = np.flatnonzero(~held & np.isin(source, ["ffhq128-labelled", "ffhq128"]))
        calib = np.random.default_rng(2).choice(calib, 256, replace=False)
        extra = {"decision_thresholds": decision, "draw_thresholds": draw, "draw_precision_target": DRAW_PRECISION,
                 "hair_colour_priors": priors, "heldout_metrics": res}
        # with the file, its predictions on every photo (what the hair bank uses), staged and committed with it
        report["export"] = export(net, np.asarray(al.crops[np.sort(calib)]), np.asarray(al.crops[lab_held]),
                                  extra, decision, draw, folder=folder, al=al)
        pred_all = {k: v for k, v in load_predictions(folder).items() if k != "keys"}
        report["heldout_int8"] = evaluate({k: v[hphotos] for k, v in pred_all.items()}, T, hphotos, decision, draw,
                                          priors)
    report["seconds"] = round(time.time() - t0, 1)
    (RUN / "report.json").write_text(json.dumps(report, indent=1))
    log(json.dumps(report.get("heldout_int8", report["heldout"]), indent=1))
    log(f"attributes: done in {time.time() - t0:.0f} s; report {RUN / 'report.json'}")
    if do_export:
        log(f"attributes: {FUSION_HINT}")
    return report


#: what a new H file asks for next (logged wherever one is written)
FUSION_HINT = ("the H file's checksum changed; run `avatarizer-export detectors --fusion`, `avatarizer-export "
               "hat-net --fusion` and `avatarizer-export gender` next (the hybrid's glasses, hat and gender fusions "
               "are used only with the H file they were fitted on; `make models` runs all three after this step)")

REFIT_FLAGS = ("beard", "moustache")
#: the heads :func:`refit` can refit: the binary flags and the glasses and hair colour softmaxes
REFITTABLE = ("glasses", "hair_colour", *HR.BINARY_ATTRIBUTES)


def _heads_input(model) -> str:
    """The name of the standardised feature tensor the shipped heads read."""
    for n in model.graph.node:
        if n.op_type == "Gemm" and n.input[1] == "heads.binary.weight":
            return n.input[0]
    raise ValueError("the attribute model has no Gemm reading heads.binary.weight")


def features_session(model):
    """(the heads' input tensor's name, a one-thread ONNX Runtime session of
    a copy of ``model`` that also outputs it, the session options)."""
    import onnx
    import onnxruntime as ort

    feat_name = _heads_input(model)
    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    probe.graph.output.append(onnx.helper.make_tensor_value_info(feat_name, onnx.TensorProto.FLOAT, None))
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    return feat_name, ort.InferenceSession(probe.SerializeToString(), opts, providers=["CPUExecutionProvider"]), opts


def refit(names=REFIT_FLAGS, cache: Path | None = None, shared: Path | None = None, version: str | None = None,
          folder: Path = MODELS, log=print) -> dict:
    """Refits some heads of the *shipped* file (binary flags, the glasses or
    hair colour softmax, :data:`REFITTABLE`) on its own features, leaving
    everything else as it is: the int8 network, the standardisation and the
    other heads stay byte for byte, so every other output is unchanged
    (checked on the held-out crops before the file is replaced).

    For new labels of a few heads (e.g. the labels by eye, docs/data.md)
    without the teacher's and the student's retraining: the features are what
    the shipped file computes (its heads' standardised input) on the feature
    table's rows (:func:`sample_table`, :func:`table_crops`); each head is
    fitted as :func:`fit_heads` fits it (whitened PCA of the training rows,
    with the rows under another light for a head of :data:`LIGHTING_HEADS`,
    5-fold CV by photo, calibration, thresholds from the out-of-fold outputs)
    and folded into its rows of ``heads.binary`` / ``heads.glasses``. Run
    ``avatarizer-export detectors --fusion`` and ``hat-net --fusion`` after
    it: the glasses and hat fusions name the H file they were fitted on. The file's description gets
    the new thresholds, the held-out metrics, ``version`` (default: the
    source's patch + 1) and a ``refit`` record; the manifest entry is
    replaced (its quality gate marked as carried from the source file); the
    report goes to ``runs/attributes/refit_<version>.json`` and, for the
    shipped folder, H's predictions on every photo are written again."""
    import onnx
    import onnxruntime as ort

    from . import formats
    from .data import load_aligned

    t0 = time.time()
    cache, shared = cache_dir(cache), shared_dir(shared)
    al = load_aligned(cache)
    T = build_targets(al.keys, shared, cache, al=al)
    photo, variant = sample_table(al, T)
    path = Path(folder) / SHIP_FILE
    model = onnx.load(str(path))
    old_desc = formats.onnx_metadata(model)
    feat_name, sess, opts = features_session(model)
    from tqdm import tqdm

    feats, buf = [], []

    def flush():
        feats.append(sess.run([feat_name], {"image": to_input128(np.stack(buf)).numpy()})[0])
        buf.clear()

    for c in tqdm(table_crops(al, photo, variant), total=len(photo), desc="shipped features", unit="crop",
                  mininterval=30):
        buf.append(c)
        if len(buf) == 128:
            flush()
    if buf:
        flush()
    Xs = np.concatenate(feats).astype(np.float32)
    held = T["heldout"]
    train_row = ~held[photo] & (variant < LIGHTING_VARIANT)  # (the basis of the photos as they come, as fit_heads)
    V, sc = pca_basis(Xs[train_row])
    V = (V / sc).astype(np.float32)
    # a head of LIGHTING_HEADS refitted alone reads a basis of its training rows with the light's rows (the
    # projection folds into its own weights): the glasses head so scored 0.938 out of fold against 0.930 in the
    # photos' own basis, and held out by eye 0.906 against 0.876 (session 74); a full run (fit_heads) keeps
    # one basis, the photos' own, which every head and the student's distillation share
    V_lit = V
    if any(n in LIGHTING_HEADS for n in names) and (variant >= LIGHTING_VARIANT).any():
        V_lit, sc_lit = pca_basis(Xs[~held[photo]])
        V_lit = (V_lit / sc_lit).astype(np.float32)
    # the hair colour head also sees the colour block's own whitened PCA (as fit_heads)
    ncol = 3 * COLOUR_POOL * COLOUR_POOL
    Vc_blk, sc_c = pca_basis(Xs[train_row][:, -ncol:], q=COLOUR_COMPONENTS)
    Vc = np.zeros((Xs.shape[1], COLOUR_COMPONENTS), np.float32)
    Vc[-ncol:] = Vc_blk / sc_c
    init = {t.name: t for t in model.graph.initializer}
    groups = ("binary", "glasses", "hair_colour")
    Wb = {g: onnx.numpy_helper.to_array(init[f"heads.{g}.weight"]).copy() for g in groups}
    bb = {g: onnx.numpy_helper.to_array(init[f"heads.{g}.bias"]).copy() for g in groups}
    if Wb["binary"].shape[0] != len(HR.BINARY_ATTRIBUTES) or any(Wb[g].shape[0] != HEADS[g] for g in groups[1:]):
        raise ValueError(f"unexpected head weight shapes {[Wb[g].shape for g in groups]}")
    desc = json.loads(json.dumps(old_desc))  # the new description, a copy to change
    decision, draw = dict(desc["decision_thresholds"]), dict(desc["draw_thresholds"])
    heads, at = {}, {}
    for name in names:
        extra = Xs @ Vc if name == "hair_colour" else None
        Vn = V_lit if name in LIGHTING_HEADS else V
        h = train_head(Xs @ Vn, T, name, photo, variant, ~held, log=log, extra=extra)
        heads[name] = h
        k = h["k"]
        Wfull = Vn[:, :k] @ h["W"][:k] + (Vc @ h["W"][k:] if extra is not None else 0.0)
        Wf, bf = Wfull.T, np.asarray(h["b"], np.float32).reshape(-1)
        if name == "hair_colour":
            Wb["hair_colour"][:], bb["hair_colour"][:] = Wf, bf
            # the balanced decision divides by the training photos' colour frequencies
            hc = T["hair_colour"][(~held) & (T["hair_colour"] >= 0)]
            desc["hair_colour_priors"] = {c: round(float(np.mean(hc == j)), 4) for j, c in enumerate(HR.HAIR_COLOURS)}
            continue
        if name == "glasses":
            Wb["glasses"][:], bb["glasses"][:] = Wf, bf
            flags = _glasses_flags(h)
        else:
            j = HR.BINARY_ATTRIBUTES.index(name)
            Wb["binary"][j], bb["binary"][j] = Wf[0], bf[0]
            flags = {name: (h["oof"], h["oof_y"].astype(float))}
        for flag, (pf, yf) in flags.items():
            decision[flag], t, a = flag_thresholds(flag, pf, yf)
            if t is not None:
                draw[flag], at[flag] = t, a
    log(f"attributes: refit {list(names)}: decision {decision}, drawing {draw} ({at})")
    for g in groups:
        for part, arr in (("weight", Wb[g]), ("bias", bb[g])):
            init[f"heads.{g}.{part}"].CopyFrom(onnx.numpy_helper.from_array(arr.astype(np.float32), f"heads.{g}.{part}"))
    # held-out: the refitted file against the shipped one on the same crops
    hrows = np.flatnonzero(held[photo] & (variant == 0))
    hphotos = photo[hrows]
    if len(hphotos) == 0:
        raise ValueError("refit: the feature table has no held-out photo to check the refitted file on")
    crops = to_input128(np.asarray(al.crops[hphotos]))
    new_sess = ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    old_sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    names4 = ["hair_colour", "glasses", "binary", "regress"]
    # every output the file has (skin_tone and hair_long too: the fusions carried to a refitted file rest on it)
    every = names4 + [o.name for o in model.graph.output if o.name not in names4]
    old_all = [np.concatenate(z) for z in zip(*[old_sess.run(every, {"image": crops[i:i + 128].numpy()})
                                                for i in range(0, len(crops), 128)])]
    new_all = [np.concatenate(z) for z in zip(*[new_sess.run(every, {"image": crops[i:i + 128].numpy()})
                                                for i in range(0, len(crops), 128)])]
    old_o, new_o = old_all[:4], new_all[:4]
    keep = [HR.BINARY_ATTRIBUTES.index(n) for n in HR.BINARY_ATTRIBUTES if n not in names]
    for nm, o, nw in zip(every, old_all, new_all):
        if nm in ("glasses", "hair_colour") and nm in names:
            continue
        same = o[:, keep] if nm == "binary" else o
        now = nw[:, keep] if nm == "binary" else nw
        if not np.array_equal(same, now):
            raise RuntimeError(f"refit changed the {nm} outputs of heads it does not refit")
    before = evaluate(outputs_to_arrays(old_o), T, hphotos, old_desc["decision_thresholds"],
                      old_desc["draw_thresholds"], old_desc.get("hair_colour_priors"))
    after = evaluate(outputs_to_arrays(new_o), T, hphotos, decision, draw, desc.get("hair_colour_priors"))
    from_version = str(desc.get("version", "0.0.0"))
    desc.update(decision_thresholds=decision, draw_thresholds=draw, created_by=formats.created_by(),
                version=version or next_patch(from_version))
    flags_refit = {f for n in names for f in _flags_of(n)}
    metrics = {k: v for k, v in (desc.get("heldout_metrics") or {}).items() if k.split("_eye")[0] not in flags_refit}
    metrics.update({k: v for k, v in after.items() if k.split("_eye")[0] in flags_refit})
    desc["heldout_metrics"] = metrics
    eye = T.get("eye_labelled", np.zeros(len(held), bool))
    eye_fields = T.get("eye_fields") or {}
    labelled = np.zeros(len(held), bool)
    for n in names:  # (a defaulted "no facial hair" is not a label by eye)
        labelled |= ((T[n] >= 0) if n in ("glasses", "hair_colour") else np.isfinite(T[n])) & eye_fields.get(n, eye)
    labels = int((eye & labelled & ~held).sum())
    desc["refit"] = {**(desc.get("refit") or {}),
                     **{n: {"from": f"{SHIP_FILE} {from_version}", "to": desc["version"], "k": heads[n]["k"],
                            "lambda": heads[n]["lambda"], "cv_best": heads[n]["cv_best"],
                            "train_photos": heads[n]["train_photos"],
                            "draw_cv": {f: at[f] for f in _flags_of(n) if f in at}} for n in names}}
    desc["refit_labels"] = (f"ffhq128-labelled attributes.jsonl (training split); {labels} training photos labelled by "
                            "eye (avatarizer_export/labels/*.jsonl, docs/data.md); UTKFace women and children "
                            "as without facial hair")
    entry = save_head_change(model, desc, path, folder, from_version,
                             f"labels by eye for {', '.join(names)} (avatarizer_export/labels, docs/data.md)")
    report = {"refit": list(names), "version": desc["version"], "before": before, "after": after,
              "draw_cv": at, "decision_thresholds": decision, "draw_thresholds": draw,
              "sha256": entry["sha256"], "seconds": round(time.time() - t0, 1)}
    RUN.mkdir(parents=True, exist_ok=True)
    (RUN / f"refit_{desc['version']}.json").write_text(json.dumps(report, indent=1))
    if Path(folder).resolve() == MODELS.resolve():  # what the hair bank's sheets read: the shipped file's outputs
        write_predictions(path, al)
    log(json.dumps({k: report[k] for k in ("before", "after")}, indent=1))
    log(f"attributes: refit: {FUSION_HINT}")
    return report


def next_patch(version: str) -> str:
    """The patch after ``version`` (a refit of some heads; a full run, :data:`VERSION`, is another network);
    ``ValueError`` for a version that is not MAJOR.MINOR.PATCH."""
    parts = str(version).split(".")
    if len(parts) != 3 or not all(p.isdigit() for p in parts):
        raise ValueError(f"the model's version {version!r} is not MAJOR.MINOR.PATCH: give --version")
    major, minor, patch = (int(v) for v in parts)
    return f"{major}.{minor}.{patch + 1}"


def save_head_change(model, desc: dict, path: Path, folder: Path, from_version: str, label_note: str) -> dict:
    """Writes ``model`` with the description ``desc`` (its training data
    noting ``label_note``) over ``path`` and its manifest entry; returns the
    entry. The quality gate is the source file's, marked ``carried_from``:
    the int8 network is the source's, gated against its fp32 file, and the
    heads refitted or added are fp32, fitted on the int8 features themselves."""
    import onnx

    from . import formats

    # the manifest and the model's entry first: the file was replaced before a missing manifest (or entry)
    # was found, leaving a folder whose manifest no longer matched its model
    manifest = Path(folder) / formats.MANIFEST_NAME
    try:
        entry = json.loads(manifest.read_text())["models"][desc["name"]]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ValueError(f"{manifest} has no readable entry {desc.get('name')!r} for {path.name} "
                         f"({type(exc).__name__}: {exc}); nothing was written") from None
    td = dict(desc.get("training_data") or {})
    if label_note not in str(td.get("faces", "")):
        td["faces"] = f"{td.get('faces', '')}; {label_note}".lstrip("; ")
    desc["training_data"] = td
    formats.set_onnx_metadata(model, desc)
    with staged(path, path.stem) as tmp:
        onnx.save(model, str(tmp))
    gate = dict(entry.get("quality_gate") or {})
    gate.setdefault("carried_from", from_version)
    gate["note"] = (f"int8 network and standardisation of {gate['carried_from']}, gated against its fp32 file; "
                    "heads refitted on the int8 features (no fp32 counterpart)")
    return formats.add_to_manifest(path, desc, folder=folder, quality_gate=gate)


def strip_head(model, output: str) -> None:
    """Removes a head a head tool added (``skin-tone``, ``hair-length``): its
    nodes (named ``heads.<output>`` and ``heads.<output>.*``), its graph
    output and its ``heads.<output>.*`` initializers, in place, so that a
    refit replaces it."""
    for node in [n for n in model.graph.node if n.name == f"heads.{output}" or n.name.startswith(f"heads.{output}.")]:
        model.graph.node.remove(node)
    for out in [o for o in model.graph.output if o.name == output]:
        model.graph.output.remove(out)
    for init in [t for t in model.graph.initializer if t.name.startswith(f"heads.{output}.")]:
        model.graph.initializer.remove(init)


def open_for_head(folder: Path, output: str):
    """The shipped H file of ``folder`` ready for a head tool: ``(path, the
    model without an earlier ``output`` head, its description, the names of
    its other outputs, the feature tensor's name, a session that outputs the
    features, its options)``."""
    import onnx

    from . import formats

    path = Path(folder) / SHIP_FILE
    model = onnx.load(str(path))
    desc = formats.onnx_metadata(model)
    strip_head(model, output)  # a refit replaces the earlier head
    feat, sess, opts = features_session(model)
    return path, model, desc, [o.name for o in model.graph.output], feat, sess, opts


def head_features(sess, feat: str, crops, batch: int = 128, desc: str | None = None) -> np.ndarray:
    """``(len(crops), features)`` float64: what ``sess`` (of :func:`open_for_head`)
    gives as ``feat`` for the uint8 crops (an array or a list of them),
    ``batch`` at a time, with a progress bar named ``desc`` when given."""
    starts = range(0, len(crops), batch)
    if desc is not None:
        from tqdm import tqdm

        starts = tqdm(starts, desc=desc, unit="batch")
    return np.concatenate([sess.run([feat], {"image": to_input128(np.stack(crops[i:i + batch])).numpy()})[0]
                           for i in starts]).astype(np.float64)


def append_head(model, feat: str, output: str, W: np.ndarray, b, sigmoid: bool = False) -> None:
    """Appends a head tool's head to ``model`` in place and checks the graph:
    the initializers ``heads.<output>.weight`` (``W`` as ``(1, features)``)
    and ``heads.<output>.bias`` (``b``), a Gemm ``heads.<output>`` on the
    tensor ``feat`` (with ``sigmoid``, into ``<output>_logit`` and then a
    Sigmoid ``heads.<output>.sigmoid``) and the graph output ``output``,
    ``(batch, 1)`` float32 (what :func:`strip_head` removes)."""
    import onnx

    model.graph.initializer.extend([
        onnx.numpy_helper.from_array(W[None, :].astype(np.float32), f"heads.{output}.weight"),
        onnx.numpy_helper.from_array(np.array([b], np.float32), f"heads.{output}.bias")])
    gemm = f"{output}_logit" if sigmoid else output
    model.graph.node.append(onnx.helper.make_node("Gemm", [feat, f"heads.{output}.weight", f"heads.{output}.bias"],
                                                  [gemm], name=f"heads.{output}", transB=1))
    if sigmoid:
        model.graph.node.append(onnx.helper.make_node("Sigmoid", [gemm], [output], name=f"heads.{output}.sigmoid"))
    model.graph.output.append(onnx.helper.make_tensor_value_info(output, onnx.TensorProto.FLOAT, ["batch", 1]))
    onnx.checker.check_model(model)


def check_added_head(path: Path, model, others: list[str], opts, x: np.ndarray, output: str,
                     expected: np.ndarray, what: str) -> None:
    """``RuntimeError`` unless ``model`` (``path``'s file with a head added)
    gives every output of ``others`` byte for byte as ``path`` does on the
    images ``x``, and its ``output`` what the fit predicted (``expected``,
    within 1e-3)."""
    import onnxruntime as ort

    old = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"]).run(others, {"image": x})
    new = ort.InferenceSession(model.SerializeToString(), opts,
                               providers=["CPUExecutionProvider"]).run(others + [output], {"image": x})
    if not all(np.array_equal(a, c) for a, c in zip(old, new[:-1])):
        raise RuntimeError(f"adding the {what} head changed another output")
    if not np.allclose(new[-1][:, 0], expected, atol=1e-3):
        raise RuntimeError(f"the exported {what} head does not give the fitted predictions")


def save_added_head(model, desc: dict, path: Path, folder: Path, output: str, units: str, record: dict,
                    label_note: str, version: str | None, report: dict, t0: float, log=print,
                    report_stem: str | None = None) -> dict:
    """The last steps of a head tool: the description gains the output
    (``units``) and its ``record`` (plus where it came from), the file and
    its manifest entry are written (:func:`save_head_change`), and the
    report, completed with version, sha256 and seconds, is written to
    ``runs/attributes/<report_stem or output>_<version>.json``, logged and returned."""
    from . import formats

    from_version = str(desc.get("version", "0.0.0"))
    desc["version"] = version or next_patch(from_version)
    desc["created_by"] = formats.created_by()
    desc["outputs"] = [o for o in desc.get("outputs", []) if o.get("name") != output] + [
        {"dtype": "float32", "name": output, "names": [output], "shape": ["batch", 1], "units": [units]}]
    desc[output] = {**record, "from": f"{SHIP_FILE} {from_version}"}
    entry = save_head_change(model, desc, path, folder, from_version, label_note)
    report.update(version=desc["version"], sha256=entry["sha256"], seconds=round(time.time() - t0, 1))
    RUN.mkdir(parents=True, exist_ok=True)
    (RUN / f"{report_stem or output}_{desc['version']}.json").write_text(json.dumps(report, indent=1))
    log(json.dumps(report, indent=1))
    log(f"{output}: {FUSION_HINT}")
    return report


def add_head_tool(sub, name: str, help: str, fit, shared: str | None = None) -> None:
    """The ``avatarizer-export <name>`` command of a head tool: ``fit(cache=,
    folder=, version=)`` on the SDK's models folder or ``--models``; with
    ``shared`` (its help) also ``--shared``, passed as ``fit(shared=)``."""
    def main(args) -> int:
        kw = {"shared": args.shared} if shared is not None else {}
        fit(cache=args.cache, folder=Path(args.models) if args.models else MODELS, version=args.version, **kw)
        return 0

    p = sub.add_parser(name, help=help)
    p.add_argument("--cache")
    if shared is not None:
        p.add_argument("--shared", help=shared)
    p.add_argument("--models", help="the models folder (default: the SDK's)")
    p.add_argument("--version", type=_version_arg, help="the new file's version (default: the source's patch + 1)")
    p.set_defaults(func=main)


def write_predictions(path: Path, al, folder: Path | None = None) -> dict:
    """The model file's outputs on every aligned photo, saved (atomically)
    as :func:`predictions_path` of ``folder``, the models folder the file is
    in (``runs/attributes/predictions.npz``, what the hair bank and the
    detectors' grey-hair prior read; for a staging copy, staged with it and
    moved there by its commit), and returned."""
    pred_all = onnx_predictions(path, al.crops)
    if folder is not None and staging.is_staging(folder):
        out = staging.outside(folder, predictions_path())
    else:
        out = predictions_path()
        out.parent.mkdir(parents=True, exist_ok=True)
    with staged(out, "part") as tmp:
        np.savez_compressed(tmp, keys=np.array(al.keys), **pred_all)
    return pred_all


def onnx_predictions(path: Path, crops, batch: int = 128) -> dict:
    """Runs the exported file with ONNX Runtime (1 thread) on uint8 crops
    (N x H x W x 3) and on their mirror images, and averages the two, as the
    SDK's hair stage reads a face (:func:`avatarizer.pipeline.hair.mirrored_mean`,
    session 73: what the bank, the hats' threshold and the grey-hair prior
    read is what the runtime reads)."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    sess = ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])
    names = [o.name for o in sess.get_outputs()]
    outs = {k: [] for k in names}
    for i in range(0, len(crops), batch):
        res = mirror_mean(lambda x: dict(zip(names, sess.run(names, {"image": to_input128(x).numpy()}))),
                          crops[i:i + batch])
        for k in names:
            outs[k].append(res[k].astype(np.float32))
    return {k: np.concatenate(v) for k, v in outs.items()}


def predictions_path(folder: Path | None = None) -> Path:
    """Where the outputs on every aligned photo of the H in ``folder`` are
    kept (:func:`load_predictions`): the shipped H's (``folder`` None or the
    SDK's models folder) in ``RUN/predictions.npz``; a staged H's (``folder``
    a staging copy: ``make models``) in the copy, moved to
    ``RUN/predictions.npz`` when it is committed (:func:`staging.outside`)."""
    path = RUN / "predictions.npz"
    if folder is not None and staging.is_staging(folder):
        return staging.outside_path(folder, path)
    return path


def load_predictions(folder: Path | None = None) -> dict:
    """The predictions for every aligned photo of the H in ``folder``
    (default the shipped one: ``runs/attributes/predictions.npz``;
    :func:`predictions_path`)."""
    path = predictions_path(folder)
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing: run `avatarizer-export attributes` first")
    with np.load(path) as z:
        return {k: z[k] for k in z.files}


def main_attributes(args) -> int:
    if args.refit:
        names = tuple(n.strip() for n in args.refit.split(",") if n.strip())
        bad = [n for n in names if n not in REFITTABLE]
        if bad or not names:
            raise SystemExit(f"--refit takes heads from {REFITTABLE}, got {args.refit!r}")
        refit(names, cache=args.cache, shared=args.shared, version=args.version)
        return 0
    run(cache=args.cache, shared=args.shared, cv=not args.no_cv, do_export=not args.no_export,
        steps=args.distil_steps)
    return 0


def _version_arg(text: str) -> str:
    """``--version``: MAJOR.MINOR.PATCH, non-negative integers, as the SDK
    compares them (:func:`avatarizer.pipeline.config.parse_version`; it
    refuses others) and :func:`next_patch` counts on."""
    import argparse

    from avatarizer.pipeline.config import parse_version

    try:
        parse_version(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    if len(text.split(".")) != 3:  # (a "1.0" was written, and every later refit failed after its work)
        raise argparse.ArgumentTypeError(f"expected MAJOR.MINOR.PATCH, got {text!r:.60}")
    return text


def add_parser(sub):
    from .argtypes import positive_int

    p = sub.add_parser("attributes", help="train, evaluate and export the attribute regressor H "
                                          "(docs/hair.md)")
    p.add_argument("--cache")
    p.add_argument("--shared")
    p.add_argument("--no-cv", action="store_true", help="skip the cross-validation (and the calibration)")
    p.add_argument("--no-export", action="store_true", help="train and evaluate only")
    p.add_argument("--distil-steps", type=positive_int, default=DISTIL_STEPS,
                   help=f"optimiser steps of the student's distillation (default {DISTIL_STEPS})")
    p.add_argument("--refit", metavar="FLAGS",
                   help="refit only these heads (binary flags, glasses, hair_colour; e.g. beard,moustache,glasses) "
                        "of the shipped file on its own features, everything else unchanged (after new labels)")
    p.add_argument("--version", type=_version_arg, help="the refitted file's version (default: the source's patch + 1)")
    p.set_defaults(func=main_attributes)
