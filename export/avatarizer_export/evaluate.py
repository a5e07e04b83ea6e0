"""``avatarizer-export eval``: metrics of DESIGN.md on any folder of face photos.

    avatarizer-export eval --faces ../shared/data/faces/ffhq128 --heldout --methods artist,model,direct,nearest --json

Pseudo ground truth is the auto-artist's avatar for the un-augmented photo.
Methods predict the *face slice*; every method's avatar takes its hair and
accessory slices from the same pseudo ground truth, so the render metrics
compare faces (hair retrieval is evaluated separately). Renders are 256 px on
white. Identity top-1 is computed within consecutive groups of N photos (100
by default) and averaged; N is reported.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

from avatarizer import schema

from . import metrics as M
from .data import is_heldout

IMG_EXT = (".jpg", ".jpeg", ".png")
MODEL_RUN = "mapper_full"  # the run behind method "model"


# ------------------------------------------------------------- predictors


class TorchPredictor:
    """Face-slice predictors from training runs (export side)."""

    def __init__(self, method: str):
        import torch

        from . import train as T

        self.method = method
        self.torch = torch
        if method == "direct" or method.startswith("direct:"):
            run = method.split(":", 1)[1] if ":" in method else "direct"
            mods, ck = T.load_modules(run)
            self.net = mods["net"]
            self.size = ck["config"]["net"]["image_size"]
            self.kind = "direct"
        elif method == "nearest":
            mods, ck = T.load_modules("image_ae")
            self.enc = mods["enc"]
            self.size = ck["config"]["net"]["image_size"]
            from .data import load_pairs

            _, params, source, augs = load_pairs()
            orig = np.array([a == "original" for a in augs])
            z = T.pair_encodings()["z_pairs"][orig]
            self.bank_z = z / np.linalg.norm(z, axis=1, keepdims=True)
            self.bank_y = params[orig][:, schema.FACE]
            self.kind = "nearest"
        else:  # model or mapper:<run>
            run = method.split(":", 1)[1] if ":" in method else MODEL_RUN
            self.net, self.size = T.load_image_to_face(run)
            self.kind = "model"

    def __call__(self, crops: np.ndarray) -> np.ndarray:
        from .train import to_input

        with self.torch.no_grad():
            x = to_input(crops, self.size)
            if self.kind == "direct":
                return schema.denormalize(self.net(x).numpy(), schema.FACE)
            if self.kind == "nearest":
                z = self.enc(x).numpy()
                z /= np.linalg.norm(z, axis=1, keepdims=True)
                return self.bank_y[np.argmax(z @ self.bank_z.T, axis=1)]
            return schema.denormalize(self.net(x).numpy(), schema.FACE)


# ------------------------------------------------------------ photo colours


def photo_skin(crop: np.ndarray, lm: np.ndarray) -> np.ndarray:
    """Median cheek colour of the photo, independent of the artist's sampling:
    two discs on the cheeks, between the eye line and the mouth."""
    s = crop.shape[0]
    ys, xs = np.mgrid[0:s, 0:s]
    c = (np.stack([xs, ys], -1) + 0.5) * 2 / s - 1
    out = []
    for cx in (-0.27, 0.27):
        m = ((c[..., 0] - cx) ** 2 + (c[..., 1] - 0.14) ** 2) < 0.06 ** 2
        out.append(crop[m])
    px = np.concatenate(out).astype(np.float32) / 255
    return np.median(px, 0)


def photo_hair(crop: np.ndarray, hair: np.ndarray | None) -> np.ndarray | None:
    if hair is None:
        return None
    m = hair > 0.5
    if m.sum() < 30:
        return None
    return np.median(crop[m].astype(np.float32) / 255, 0)


# ------------------------------------------------------------------- eval


def list_photos(faces: Path, heldout: bool, limit: int | None) -> list[Path]:
    files = sorted(p for p in faces.iterdir() if p.suffix.lower() in IMG_EXT)
    if heldout:
        files = [p for p in files if is_heldout(f"{faces.name}/{p.name}")]
    return files[:limit] if limit else files


def prepare(files: list[Path], progress: bool = True) -> dict:
    """Aligns every photo and runs the artist on it: crops, pseudo ground truth,
    landmarks, photo skin and hair colours (NaN where no hair) per aligned photo."""
    from tqdm import tqdm

    from avatarizer.align import AlignOptions, FaceAligner
    from avatarizer.artist import AutoArtist
    from avatarizer.imageio import load_image

    artist = AutoArtist()
    crops, gts, lms, skins, hairs, names = [], [], [], [], [], []
    with FaceAligner(AlignOptions(mode="image", max_faces=1, segmentation=True)) as al:
        for f in tqdm(files, desc="align+artist", disable=not progress):
            try:
                face = al.align(load_image(f))
            except ValueError:
                face = None
            if face is None:
                continue
            crops.append(face.crop(128))
            gts.append(artist.fit(face))
            lms.append(face.canonical)
            skins.append(photo_skin(face.crop(128), face.canonical))
            h = photo_hair(face.crop(128), face.hair_mask(128))
            hairs.append(np.full(3, np.nan, np.float32) if h is None else h)
            names.append(f.name)
    return {"faces": len(files), "names": names,
            "crops": np.stack(crops) if crops else np.zeros((0, 128, 128, 3), np.uint8),
            "gts": np.stack(gts) if gts else np.zeros((0, schema.PARAM_COUNT), np.float32),
            "lms": np.stack(lms) if lms else np.zeros((0, 478, 2), np.float32),
            "skins": np.stack(skins) if skins else np.zeros((0, 3), np.float32),
            "hairs": np.stack(hairs) if hairs else np.zeros((0, 3), np.float32)}


def prepared(files: list[Path], cache: Path | None, progress: bool = True) -> dict:
    """``prepare`` with its result kept in ``cache`` (an .npz), keyed by the file list."""
    import hashlib

    if cache is None:
        return prepare(files, progress)
    key = hashlib.sha256("\n".join(str(f) for f in files).encode()).hexdigest()[:16]
    if cache.exists():
        z = np.load(cache, allow_pickle=False)
        if str(z["key"]) == key:
            out = {k: z[k] for k in ("crops", "gts", "lms", "skins", "hairs")}
            out.update(names=[str(n) for n in z["names"]], faces=int(z["faces"]))
            return out
    out = prepare(files, progress)
    cache.parent.mkdir(parents=True, exist_ok=True)
    np.savez(cache, key=key, **{k: (np.array(v) if k == "names" else v) for k, v in out.items()})
    return out


def evaluate(files: list[Path], methods: list[str], labels: Path | None = None, identity_n: int = 100,
             progress: bool = True, keep: dict | None = None, cache: Path | None = None) -> dict:
    """Metrics for ``methods`` on the photos ``files``. When ``keep`` is a dict it
    receives the per-photo arrays (names, crops, pseudo ground truth, and each
    method's avatars) for figures. ``cache``: an .npz keeping the aligned
    photos and their pseudo ground truth between calls on the same files."""
    from tqdm import tqdm

    prep = prepared(files, cache, progress)
    names, crops, gts, lms, skins = prep["names"], prep["crops"], prep["gts"], prep["lms"], prep["skins"]
    hairs = [None if not np.isfinite(h).all() else h for h in prep["hairs"]]
    result = {"faces": prep["faces"], "aligned": len(names), "methods": {}}
    import avatarizer

    gt_imgs = np.stack([avatarizer.render(g, M.RENDER_SIZE, background="white") for g in gts]) if len(gts) else None
    lp = None
    with M.LandmarkProbe() as probe:
        for method in methods:
            if method == "artist":
                preds = gts
            else:
                face = TorchPredictor(method)(crops) if len(crops) else np.zeros((0, 483), np.float32)
                preds = gts.copy()
                preds[:, schema.FACE] = face
                preds = schema.clip(preds)
            imgs = np.stack([avatarizer.render(p, M.RENDER_SIZE, background="white") for p in preds])
            rl = np.full((len(preds), 478, 2), np.nan, np.float32)
            for i, im in enumerate(tqdm(imgs, desc=f"{method}: probe", disable=not progress)):
                got = probe(im)
                if got is not None:
                    rl[i] = got
            ids = []
            hits = np.zeros(len(preds), bool)
            n = min(identity_n, len(preds))
            for a in range(0, len(preds) - n + 1, n) if n else []:
                b = a + n if a + 2 * n <= len(preds) else len(preds)
                ids.append(M.identity_top1(lms[a:b], rl[a:b]))
                r = M.identity_ranks(lms[a:b], rl[a:b])
                hits[a:b] = (r >= 0) & (r < 1)
            out = {
                "identity_top1": float(np.mean([d["top1"] for d in ids])) if ids else float("nan"),
                "identity_n": n,
                "render_detect_rate": float(np.isfinite(rl[:, 0, 0]).mean()) if len(rl) else float("nan"),
                "skin_delta_e": float(np.mean(M.delta_e(skins, preds[:, [schema.index(f"face.{c}") for c in "rgb"]]))),
            }
            hv = [i for i, h in enumerate(hairs) if h is not None and preds[i, schema.index("hair_style.layers")] > 0]
            if hv:
                hcol = preds[hv][:, [schema.index(f"hair_front.{c}") for c in "rgb"]]
                out["hair_delta_e"] = float(np.mean(M.delta_e(np.stack([hairs[i] for i in hv]), hcol)))
            if method != "artist":
                if lp is None:
                    from .lpips import LPIPS

                    lp = LPIPS.from_npz(net="alex")
                out["param_l1"] = float(M.param_l1(preds, gts))
                out["render_l1"] = float(np.mean([M.render_l1(a, b) for a, b in zip(imgs, gt_imgs)]))
                per_lpips = np.asarray(M.render_lpips(imgs, gt_imgs, model=lp), np.float64)
                out["render_lpips"] = float(np.mean(per_lpips))
                if keep is not None:
                    keep.setdefault("per_photo", {})[method] = {"render_lpips": per_lpips, "identity_hit": hits}
            result["methods"][method] = out
            if keep is not None:
                keep.setdefault("preds", {})[method] = preds
    if keep is not None:
        keep.update(names=names, crops=crops, gts=gts)
    result["attributes"] = attribute_metrics(names, crops, labels) if labels else {}
    return result


def attribute_metrics(names: list[str], crops: np.ndarray, labels: Path) -> dict:
    """Balanced accuracy per attribute of the shipped attribute regressor H
    (``attributes`` model) against labels in the ffhq128-labelled format,
    at the decision thresholds the model file carries; ``age_mae`` in years;
    ``glasses_ece`` and ``headwear_ece``: expected calibration error of
    P(glasses) and P(headwear). Photos without a face entry in the labels
    are skipped."""
    from avatarizer import hair as HR
    from avatarizer.models import Manifest

    from .attributes import _ffhq_targets, expected_calibration_error

    lab = {}
    for line in Path(labels).read_text().splitlines():
        if line.strip():
            rec = json.loads(line)
            if rec.get("faces"):
                lab[rec["file"]] = _ffhq_targets(rec["faces"][0]["faceAttributes"])
    rows = [i for i, n in enumerate(names) if n in lab]
    if not rows:
        return {}
    sess = Manifest.load().session("attributes")
    dec, draw = HR.model_thresholds(sess.description)
    preds = [HR.decode_attributes(sess.run({sess.input_names[0]: sess.preprocess(crops[i][None])}),
                                  decision=dec, draw=draw) for i in rows]
    t = [lab[names[i]] for i in rows]
    out = {}
    gl_t = np.array([x["glasses"] for x in t])
    ok = gl_t >= 0
    for name, truth in (("glasses", gl_t > 0), ("sunglasses", gl_t == 2)):
        out[name] = M.balanced_accuracy(truth[ok].astype(int),
                                        np.array([int(p["decided"][name]) for p in preds])[ok])
    for name in ("beard", "moustache", "headwear", "bald"):
        out[name] = M.balanced_accuracy(np.array([int(x[name]) for x in t]),
                                        np.array([int(p["decided"][name]) for p in preds]))
    # expected calibration error of P(glasses) and P(headwear)
    out["glasses_ece"] = expected_calibration_error(np.array([p["glasses_any"] for p in preds])[ok],
                                                    (gl_t[ok] > 0).astype(float))
    out["headwear_ece"] = expected_calibration_error(np.array([p["headwear"] for p in preds]),
                                                     np.array([x["headwear"] for x in t]))
    hc_t = np.array([x["hair_colour"] for x in t])
    hc_p = np.array([HR.HAIR_COLOURS.index(p["hair_colour"]) for p in preds])
    ok = hc_t >= 0
    out["hair_color"] = M.balanced_accuracy(hc_t[ok], hc_p[ok])
    out["gender"] = M.balanced_accuracy(np.array([int(x["male"]) for x in t]),
                                        np.array([int(p["decided"]["male"]) for p in preds]))
    ages = np.array([x["age"] for x in t])
    ok = np.isfinite(ages)
    out["age_mae"] = M.mae(ages[ok], np.array([p["age"] for p in preds])[ok])
    out["n"] = len(rows)
    return {k: (round(float(v), 4) if k != "n" else v) for k, v in out.items()}


def main_eval(args) -> int:
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    faces = Path(args.faces)
    if not faces.is_dir():
        print(f"avatarizer-export eval: {faces} is not a folder of face photos", file=sys.stderr)
        return 1
    res = evaluate(list_photos(faces, args.heldout, args.limit), methods,
                   labels=Path(args.labels) if args.labels else None, identity_n=args.identity_n,
                   progress=not args.json, cache=Path(args.prepared) if getattr(args, "prepared", None) else None)
    text = json.dumps(res, indent=None if args.json else 1)
    if args.out:
        Path(args.out).write_text(text + "\n")
    print(text)
    return 0


def add_parser(sub):
    p = sub.add_parser("eval", help="metrics on a folder of face photos (JSON)")
    p.add_argument("--faces", required=True, help="folder of face photos")
    p.add_argument("--labels", help="attributes.jsonl in the ffhq128-labelled format")
    p.add_argument("--methods", default="artist,model,direct,nearest",
                   help="comma list of artist, model, direct, nearest, mapper:<run>, direct:<run>")
    p.add_argument("--limit", type=int)
    p.add_argument("--heldout", action="store_true", help="only the held-out split's photos of that folder")
    p.add_argument("--identity-n", type=int, default=100)
    p.add_argument("--json", action="store_true", help="print one JSON object (no progress bars)")
    p.add_argument("--out", help="also write the JSON here")
    p.add_argument("--prepared", metavar="NPZ",
                   help="keep the aligned photos and pseudo ground truth here, reused on the same file list")
    p.set_defaults(func=main_eval)
