"""Robustness of image mode to framing: the same photo a little smaller, moved or turned.

A user's two selfies differ by a few pixels of framing and a few degrees of
head roll; the avatar should not. Each photo (upscaled to 384 px and placed
on a 576 px gray canvas, so the turned and moved versions stay whole) goes
through ``Avatarizer()`` (image mode) as it is and in five slightly changed
framings (scaled 0.97 and 1.03, moved 7 px right and 5 px down, turned
+3 and -3 degrees). Reported per framing and over all: the share of avatars
whose hairstyle (``hair_style.bank_id``) changed, whose hair family changed
(``HairBank.families``, e.g. short -> long), whose glasses type, headwear
type or beard (drawn or not) changed, and the mean absolute change of the
face geometry (outline, eyes, brows, nose, mouth points in normalised
units) against a reference of the same photo, beside the same change
between consecutive photos' references (two people: the scale it is read
against).

Usage::

    python benchmarks/framing.py [--photos N] [--json] [FOLDER ...]

(default: the first N photos of ``../shared/data/faces/ffhq128-labelled``).
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import os
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if importlib.util.find_spec("avatarizer") is None:  # not installed: use the checkout
    sys.path.insert(0, str(ROOT / "sdk"))
os.environ.setdefault("GLOG_minloglevel", "2")

SHARED_FACES = ROOT.parent / "shared" / "data" / "faces" / "ffhq128-labelled"
#: (name, degrees turned, scale, dx, dy) of each changed framing
FRAMINGS = (("scale 0.97", 0.0, 0.97, 0, 0), ("scale 1.03", 0.0, 1.03, 0, 0), ("moved 7,5 px", 0.0, 1.0, 7, 5),
            ("turned +3 deg", 3.0, 1.0, 0, 0), ("turned -3 deg", -3.0, 1.0, 0, 0))
GEOMETRY = ("face", "eye_l_upper", "eye_l_lower", "eye_r_upper", "eye_r_lower", "brow_l", "brow_r",
            "nose_bridge", "nose_base", "lip_upper_outer", "lip_lower_outer")


def framed(photo: np.ndarray, degrees: float, scale: float, dx: int, dy: int) -> np.ndarray:
    import cv2

    img = cv2.resize(photo, (384, 384), interpolation=cv2.INTER_CUBIC)
    img = cv2.copyMakeBorder(img, 96, 96, 96, 96, cv2.BORDER_CONSTANT, value=(128, 128, 128))
    m = cv2.getRotationMatrix2D((288, 288), degrees, scale)
    m[0, 2] += dx
    m[1, 2] += dy
    return cv2.warpAffine(img, m, (576, 576), flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_CONSTANT,
                          borderValue=(128, 128, 128))


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r:.60}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, not {value}")
    return value


def _fail(message: str) -> int:
    print(f"framing.py: error: {message}", file=sys.stderr)
    return 1


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("folders", nargs="*", type=Path, help="folders of face photos (default: ffhq128-labelled)")
    ap.add_argument("--photos", type=_positive, default=100, help="photos of each folder, in name order (default 100)")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    folders = args.folders or [SHARED_FACES]
    files = []
    for folder in folders:
        if not folder.is_dir():
            return _fail(f"{folder} is not a folder of photos" + ("" if args.folders else
                                                                  " (the default needs ../shared/data)"))
        files += sorted(p for p in folder.iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png")
                        and p.is_file())[:args.photos]
    if not files:
        return _fail(f"no .jpg or .png photos in {', '.join(map(str, folders))}")

    from avatarizer import Avatarizer, load_image, schema
    from avatarizer.hair import HairBank

    families = HairBank.load()
    fam = np.array(families.families)[families.family]
    at = {n: schema.index(n) for n in ("hair_style.bank_id", "glasses.type", "headwear.type", "beard.opacity")}
    geometry = np.zeros(schema.PARAM_COUNT, bool)
    for f in GEOMETRY:
        geometry[schema.FEATURES[f].points] = True
    counts = {name: dict(n=0, style=0, family=0, glasses=0, headwear=0, beard=0, geometry=[])
              for name, *_ in FRAMINGS}
    refs = []
    with Avatarizer() as av:
        for path in files:
            try:
                photo = load_image(path)
            except ValueError:  # (an unreadable file among the photos: left out)
                continue
            ref = av.from_frame(framed(photo, 0.0, 1.0, 0, 0))
            if ref is None:
                continue
            r = ref.params
            refs.append(schema.normalize(r)[geometry])
            for name, *how in FRAMINGS:
                a = av.from_frame(framed(photo, *how))
                c = counts[name]
                c["n"] += 1
                if a is None:  # no face found: every decision counts as changed
                    for k in ("style", "family", "glasses", "headwear", "beard"):
                        c[k] += 1
                    continue
                p = a.params
                i, j = int(r[at["hair_style.bank_id"]]), int(p[at["hair_style.bank_id"]])
                c["style"] += i != j
                c["family"] += fam[i] != fam[j]
                c["glasses"] += round(r[at["glasses.type"]]) != round(p[at["glasses.type"]])
                c["headwear"] += round(r[at["headwear.type"]]) != round(p[at["headwear.type"]])
                c["beard"] += (r[at["beard.opacity"]] > 0) != (p[at["beard.opacity"]] > 0)
                c["geometry"].append(float(np.abs(schema.normalize(p)[geometry] - schema.normalize(r)[geometry]).mean()))
    out = {"photos": len(files), "framings": {}}
    total = dict(n=0, style=0, family=0, glasses=0, headwear=0, beard=0, geometry=[])
    for name, c in counts.items():
        out["framings"][name] = {k: round(c[k] / max(c["n"], 1), 3) for k in ("style", "family", "glasses",
                                                                            "headwear", "beard")}
        out["framings"][name]["geometry_mean_abs"] = round(float(np.mean(c["geometry"])), 4) if c["geometry"] \
            else None
        for k in total:
            total[k] = total[k] + c[k]
    out["all"] = {k: round(total[k] / max(total["n"], 1), 3) for k in ("style", "family", "glasses", "headwear",
                                                                      "beard")}
    out["all"]["geometry_mean_abs"] = round(float(np.mean(total["geometry"])), 4) if total["geometry"] else None
    out["all"]["n"] = total["n"]
    out["geometry_between_people"] = round(float(np.mean([np.abs(a - b).mean() for a, b in zip(refs, refs[1:])])),
                                           4) if len(refs) > 1 else None
    if args.json:
        print(json.dumps(out))
    else:
        for name, row in [*out["framings"].items(), ("all", out["all"])]:
            print(f"{name:>14}: " + ", ".join(f"{k} {v}" for k, v in row.items()))
        print(f"geometry between consecutive photos (two people): {out['geometry_between_people']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
