"""``avatarizer-export detectors``: fit the auto-artist's accessory detectors.

The artist measures cues in the photo (frame lines across the nose and
cheeks, how dark and how transparent the eye boxes are; darkness, texture
and loss of skin colour on the chin, jaw and upper lip; flatness and colour
of the hair region) and decides with small logistic models over them,
stored as data in ``sdk/avatarizer/data/artist_detectors.json``. They are
fitted here on the labelled FFHQ photos of the *training* split only:

* glasses: none / clear / sunglasses (3 classes); beard; moustache;
  headwear (binary);
* class-balanced L2 logistic regression (Newton steps), features
  standardised;
* each drawing threshold is chosen on 5-fold out-of-fold probabilities of
  the training photos as the lowest that keeps precision >= ``precision``
  (an invented accessory is worse than a missed one);
* the held-out labelled photos are scored once, for the report;
* a detector whose threshold cannot reach the precision on the training
  photos is left out of the file (listed under ``not_reliable``): the
  artist then keeps its conservative hand-set rule (beards) or draws
  nothing (headwear: the SDK's attribute regressor covers it).

    avatarizer-export detectors [--shared ../shared] [--precision 0.9]
"""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np

from .data import is_heldout
from .paths import ROOT, cache_dir, shared_dir

OUT = ROOT / "sdk" / "avatarizer" / "data" / "artist_detectors.json"
GLASSES = {"NoGlasses": 0, "ReadingGlasses": 1, "Sunglasses": 2, "SwimmingGoggles": 2}


def labels_of(path: Path) -> dict:
    out = {}
    for line in path.read_text().splitlines():
        r = json.loads(line)
        if not r.get("faces"):
            continue
        a = r["faces"][0]["faceAttributes"]
        out[r["file"]] = dict(glasses=GLASSES.get(a["glasses"], 0), beard=int(a["facialHair"]["beard"] >= 0.5),
                              moustache=int(a["facialHair"]["moustache"] >= 0.5),
                              headwear=int(any(x["type"] == "headwear" and x["confidence"] >= 0.5
                                               for x in a.get("accessories", []))))
    return out


def features(folder: Path, names: list[str], progress: bool = True) -> dict:
    """The artist's cue vectors per photo (aligned at the artist's crop size)."""
    from tqdm import tqdm

    from avatarizer.align import AlignOptions, FaceAligner
    from avatarizer.artist import ArtistStyle, AutoArtist, crop_valid_mask
    from avatarizer.artist import accessories as A
    from avatarizer.imageio import load_image

    art = AutoArtist(ArtistStyle())
    size = art.style.crop_size
    out = {"names": [], "glasses": [], "beard": [], "headwear": []}
    with FaceAligner(AlignOptions(mode="image", max_faces=1, segmentation=True)) as al:
        for n in tqdm(names, desc="detector cues", disable=not progress):
            face = al.align(load_image(folder / n))
            if face is None:
                continue
            _, g = art._fit(face.canonical, face.crop(size), face.hair_mask(size), crop_valid_mask(face, size),
                            face.landmarks)
            if "glasses_score" not in g or not g.get("beard_features"):
                continue
            out["names"].append(n)
            out["glasses"].append(A.glasses_vector(g))
            out["beard"].append(A.beard_vector(g["beard_features"]))
            out["headwear"].append(A.headwear_vector(g))
    return {k: (v if k == "names" else np.array(v, np.float64)) for k, v in out.items()}


def fit_logistic(x: np.ndarray, y: np.ndarray, k: int, l2: float = 1.0, iters: int = 30) -> dict:
    """Class-balanced multinomial logistic regression (k classes) with L2,
    by Newton steps on standardised features."""
    mean, scale = x.mean(0), x.std(0) + 1e-6
    z = np.concatenate([(x - mean) / scale, np.ones((len(x), 1))], 1)
    d = z.shape[1]
    w = np.zeros((k, d))
    cw = np.array([len(y) / (k * max((y == c).sum(), 1)) for c in range(k)])[y]
    onehot = np.eye(k)[y]
    reg = np.eye(d) * l2
    reg[-1, -1] = 0.0
    for _ in range(iters):
        lg = z @ w.T
        p = np.exp(lg - lg.max(1, keepdims=True))
        p /= p.sum(1, keepdims=True)
        grad = ((p - onehot) * cw[:, None]).T @ z + (w @ reg.T)
        # block-diagonal Newton steps; class 0 is the reference (its row stays 0)
        for c in range(1, k):
            h = (z * (cw * p[:, c] * (1 - p[:, c]))[:, None]).T @ z + reg + 1e-6 * np.eye(d)
            step = np.linalg.solve(h, grad[c])
            n = np.linalg.norm(step)
            w[c] -= step * min(1.0, 5.0 / max(n, 1e-12))
    return {"mean": mean.tolist(), "scale": scale.tolist(), "W": w[:, :-1].tolist(), "b": w[:, -1].tolist()}


def predict(model: dict, x: np.ndarray) -> np.ndarray:
    z = (x - np.asarray(model["mean"])) / np.asarray(model["scale"])
    lg = z @ np.asarray(model["W"]).T + np.asarray(model["b"])
    p = np.exp(lg - lg.max(1, keepdims=True))
    return p / p.sum(1, keepdims=True)


def precision_threshold(prob: np.ndarray, truth: np.ndarray, precision: float) -> float:
    """Lowest threshold at which the out-of-fold precision is still >=
    ``precision`` (1.0: never draw, when no threshold reaches it)."""
    order = np.argsort(-prob)
    tp = np.cumsum(truth[order])
    prec = tp / np.arange(1, len(order) + 1)
    ok = np.flatnonzero((prec >= precision) & (tp >= 3))  # at least 3 true finds behind it
    if not len(ok):
        return 1.0
    return float(prob[order][ok[-1]])


def oof(x: np.ndarray, y: np.ndarray, k: int, folds: int = 5, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    fold = rng.permutation(len(y)) % folds
    out = np.zeros((len(y), k))
    for f in range(folds):
        tr, te = fold != f, fold == f
        out[te] = predict(fit_logistic(x[tr], y[tr], k), x[te])
    return out


def balanced_accuracy(y, pred, k) -> float:
    return float(np.mean([np.mean(pred[y == c] == c) for c in range(k) if (y == c).any()]))


def _cue_key() -> str:
    """The artist's source: cues are measured again whenever it changes."""
    import hashlib

    import avatarizer.artist as pkg

    h = hashlib.sha256()
    for p in sorted(Path(pkg.__file__).parent.glob("*.py")):
        h.update(p.read_bytes())
    return h.hexdigest()[:16]


def main_detectors(args) -> int:
    shared = shared_dir(args.shared)
    lab_path = shared / "data" / "faces" / "ffhq128-labelled" / "attributes.jsonl"
    if not lab_path.is_file():
        print(f"avatarizer-export detectors: {lab_path} not found", file=sys.stderr)
        return 1
    fit(shared, cache_dir(args.cache), precision=args.precision, out=Path(args.out) if args.out else None,
        quiet=args.quiet)
    return 0


def fit(shared: Path, cache: Path, *, precision: float = 0.9, out: Path | None = None, quiet: bool = False) -> dict:
    """Fits the artist's accessory detectors on the labelled training photos
    and writes them (default ``sdk/avatarizer/data/artist_detectors.json``);
    returns the document. A missing label file raises FileNotFoundError."""
    folder = Path(shared) / "data" / "faces" / "ffhq128-labelled"
    lab_path = folder / "attributes.jsonl"
    if not lab_path.is_file():
        raise FileNotFoundError(f"{lab_path} not found: the detectors are fitted on the labelled photos")
    t0 = time.time()
    labels = labels_of(lab_path)
    names = sorted(labels)
    cue_cache = Path(cache) / "detector_cues.npz"
    key = _cue_key()
    if cue_cache.exists() and str(np.load(cue_cache)["key"]) == key:
        z = np.load(cue_cache)
        feats = {k: z[k] for k in ("glasses", "beard", "headwear")}
        feats["names"] = [str(n) for n in z["names"]]
    else:
        feats = features(folder, names, progress=not quiet)
        cue_cache.parent.mkdir(parents=True, exist_ok=True)
        np.savez(cue_cache, key=key, **{k: (np.array(v) if k == "names" else v) for k, v in feats.items()})
    held = np.array([is_heldout(f"ffhq128-labelled/{n}") for n in feats["names"]])
    tasks = {"glasses": ("glasses", 3), "beard": ("beard", 2), "moustache": ("beard", 2), "headwear": ("headwear", 2)}
    doc = {"format": 1, "fitted_on": f"{int((~held).sum())} training photos of ffhq128-labelled",
           "precision_target": precision, "detectors": {}, "heldout": {}}
    for task, (fkey, k) in tasks.items():
        x = feats[fkey]
        y = np.array([labels[n][task] for n in feats["names"]])
        xt, yt = x[~held], y[~held]
        model = fit_logistic(xt, yt, k)
        po = oof(xt, yt, k)
        if task == "glasses":
            th = {"clear": precision_threshold(po[:, 1], (yt == 1).astype(float), precision),
                  "sun": precision_threshold(po[:, 2], (yt == 2).astype(float), precision)}
        else:
            th = {"yes": precision_threshold(po[:, 1], (yt == 1).astype(float), precision)}
        model["thresholds"] = th
        if min(th.values()) >= 1.0:
            # no threshold keeps the precision: the artist keeps its hand-set
            # rule (beards) or leaves the accessory to the attribute model
            doc.setdefault("not_reliable", []).append(task)
            continue
        doc["detectors"][task] = model
        ph = predict(model, x[held])
        yh = y[held]
        if task == "glasses":
            pred = np.where(ph[:, 2] >= th["sun"], 2, np.where(ph[:, 1] >= th["clear"], 1, 0))
        else:
            pred = (ph[:, 1] >= th["yes"]).astype(int)
        inv = int(((pred > 0) & (yh == 0)).sum())
        doc["heldout"][task] = {"photos": int(len(yh)), "balanced_accuracy": round(balanced_accuracy(yh, pred, k), 3),
                                "accuracy": round(float(np.mean(pred == yh)), 3), "invented": inv,
                                "positives": int((yh > 0).sum()), "found": int(((pred > 0) & (yh > 0)).sum())}
    doc["seconds"] = round(time.time() - t0, 1)
    out = Path(out) if out else OUT
    out.write_text(json.dumps(doc, indent=1) + "\n")
    from avatarizer.artist import accessories

    accessories.detectors.cache_clear()
    print(json.dumps(doc["heldout"]))
    print(f"wrote {out}")
    return doc


def add_parser(sub):
    p = sub.add_parser("detectors", help="fit the auto-artist's accessory detectors on labelled training photos")
    p.add_argument("--shared", help="the shared folder (default ../shared)")
    p.add_argument("--precision", type=float, default=0.9, help="precision each drawing threshold keeps (OOF)")
    p.add_argument("--out", help=f"where to write (default {OUT.relative_to(ROOT)})")
    p.add_argument("--cache", help="cache folder (default <repo>/cache): the measured cues are kept there")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=main_detectors)
