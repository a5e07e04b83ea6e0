"""Latency of the auto-artist (avatarizer.artist) per face, landmarks and crop given.

Photos: the held-out photos of ``../shared/data/faces/ffhq128`` (aligned once,
untimed); without ``../shared``, scikit-image's ``astronaut`` portrait. Each
variant runs ``--warmup`` untimed fits, then fits every face ``--rounds``
times, interleaved with the other variants so machine load hits them alike:

* ``frontal``: the shipped style (head pose out in 3D, exaggeration 1.25);
* ``as_seen``: the same without depth (``ArtistStyle(frontal=False,
  exaggeration=1.0)``), the baseline the frontal fit's cost is judged by;
* ``geometry_skin``: ``AutoArtist.fit_geometry_skin`` as image mode's hybrid
  face estimator (``pipeline/face.py``) and the video identity worker call
  it: frontal geometry, skin and the glasses cues, no hair segmentation;
* ``geometry_skin_beard``: the same and the beard network's reading the
  hybrid asks for where H's P(beard) is not low (``cues["beard"]``, measured
  on demand since session 13; a version that measured it always, or never,
  is timed the same way).

Reports p50 / p95 / p99 / max wall milliseconds and the p50 of CPU time
(``time.thread_time``, which load on other cores does not inflate) per face,
and the ratios of the variants' p50s in the same run. One thread.

``--baseline DIR``: also the same three variants of another version of the
artist, DIR being that version's ``avatarizer`` package folder (for example
``git worktree add /tmp/base REV`` and ``/tmp/base/sdk/avatarizer``; it is
copied to a temporary folder and imported under another name), interleaved
face by face with this checkout's (``baseline_frontal``, ...), with the ratios
this / baseline.

    python benchmarks/artist.py [--faces N] [--rounds N] [--warmup N] [--baseline DIR] [--json]
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np  # noqa: E402

from avatarizer.checks import int_arg  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"


def faces(n: int):
    from avatarizer.align import AlignOptions, FaceAligner
    from avatarizer.artist import crop_valid_mask
    from avatarizer.imageio import load_image

    folder = SHARED / "data" / "faces" / "ffhq128"
    if folder.is_dir():
        sys.path.insert(0, str(ROOT / "export"))
        from avatarizer_export.data import is_heldout

        files = [p for p in sorted(folder.glob("*.jpg")) if is_heldout(f"ffhq128/{p.name}")][:n]
        images = [load_image(p) for p in files]
    else:
        import skimage.data

        images = [skimage.data.astronaut()]
    out = []
    with FaceAligner(AlignOptions(mode="image", max_faces=1, segmentation=True)) as al:
        for img in images:
            f = al.align(img)
            if f is not None:
                out.append((f.canonical, f.crop(192), f.hair_mask(192), crop_valid_mask(f, 192), f.landmarks))
    return out


def stats(wall, cpu) -> dict:
    w = np.asarray(wall) * 1e3
    return {"p50_ms": round(float(np.percentile(w, 50)), 2), "p95_ms": round(float(np.percentile(w, 95)), 2),
            "p99_ms": round(float(np.percentile(w, 99)), 2), "max_ms": round(float(w.max()), 2),
            "cpu_p50_ms": round(float(np.percentile(np.asarray(cpu) * 1e3, 50)), 2), "n": len(w)}


def artist_variants(artist_module, prefix: str = "") -> dict:
    """The three timed calls of one version of ``avatarizer.artist``."""
    frontal = artist_module.AutoArtist()
    as_seen = artist_module.AutoArtist(artist_module.ArtistStyle(frontal=False, exaggeration=1.0))
    def with_beard(c, crop, hair, valid, lm3):
        cues: dict = {}
        frontal.fit_geometry_skin(c, crop, valid=valid, landmarks3d=lm3, glasses=True, cues=cues)
        beard = cues.get("beard")
        return beard() if callable(beard) else beard

    return {
        f"{prefix}frontal": lambda c, crop, hair, valid, lm3: frontal.fit_landmarks(c, crop, hair, valid=valid,
                                                                                    landmarks3d=lm3),
        f"{prefix}as_seen": lambda c, crop, hair, valid, lm3: as_seen.fit_landmarks(c, crop, hair, valid=valid),
        f"{prefix}geometry_skin": lambda c, crop, hair, valid, lm3: frontal.fit_geometry_skin(
            c, crop, valid=valid, landmarks3d=lm3, glasses=True, cues={}),
        f"{prefix}geometry_skin_beard": with_beard,
    }


def baseline_artist(folder: Path):
    """``avatarizer.artist`` of another version: its package folder copied
    to a temporary folder as ``avatarizer_baseline`` (its imports are
    relative) and imported from there."""
    import importlib
    import shutil
    import tempfile

    folder = Path(folder)
    if not (folder / "__init__.py").is_file() or not (folder / "artist").is_dir():
        raise SystemExit(f"--baseline {folder}: not an avatarizer package folder (no __init__.py / artist/)")
    import atexit

    tmp = Path(tempfile.mkdtemp(prefix="artist-baseline-"))
    atexit.register(shutil.rmtree, tmp, ignore_errors=True)  # (the copy, models included, was left behind)
    shutil.copytree(folder, tmp / "avatarizer_baseline", ignore=shutil.ignore_patterns("__pycache__"))
    sys.path.insert(0, str(tmp))
    return importlib.import_module("avatarizer_baseline.artist")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--faces", type=int_arg(1, 100_000), default=60)
    ap.add_argument("--rounds", type=int_arg(1, 1000), default=3)
    ap.add_argument("--warmup", type=int_arg(0, 100_000), default=5)
    ap.add_argument("--baseline", type=Path, help="another version's avatarizer package folder, interleaved")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    import avatarizer.artist

    data = faces(args.faces)
    variants = artist_variants(avatarizer.artist)
    if args.baseline is not None:
        variants.update(artist_variants(baseline_artist(args.baseline), "baseline_"))
    for fit in variants.values():
        for face in data[: args.warmup]:
            fit(*face)
    times = {k: ([], []) for k in variants}
    names = list(variants)
    for r in range(args.rounds):
        for i, face in enumerate(data):
            turn = (r * len(data) + i) % len(names)  # the order rotated face by face: none always first
            for name in names[turn:] + names[:turn]:
                fit = variants[name]
                t0, c0 = time.perf_counter(), time.thread_time()
                fit(*face)
                times[name][0].append(time.perf_counter() - t0)
                times[name][1].append(time.thread_time() - c0)
    res = {k: stats(*v) for k, v in times.items()}
    res["ratio_p50"] = round(res["frontal"]["p50_ms"] / res["as_seen"]["p50_ms"], 3)
    res["ratio_cpu_p50"] = round(res["frontal"]["cpu_p50_ms"] / res["as_seen"]["cpu_p50_ms"], 3)
    res["geometry_skin_ratio_cpu_p50"] = round(res["geometry_skin"]["cpu_p50_ms"] / res["frontal"]["cpu_p50_ms"], 3)
    if args.baseline is not None:  # this checkout / the baseline, same run, interleaved
        res["vs_baseline_p50"] = {k: round(res[k]["p50_ms"] / res[f"baseline_{k}"]["p50_ms"], 3)
                                  for k in ("frontal", "as_seen", "geometry_skin", "geometry_skin_beard")}
        res["vs_baseline_cpu_p50"] = {k: round(res[k]["cpu_p50_ms"] / res[f"baseline_{k}"]["cpu_p50_ms"], 3)
                                      for k in ("frontal", "as_seen", "geometry_skin", "geometry_skin_beard")}
    res["faces"] = len(data)
    if args.json:
        print(json.dumps(res))
    else:
        for k in variants:
            print(f"{k:22s} " + "  ".join(f"{a}={b}" for a, b in res[k].items()))
        print(f"frontal / as_seen p50: {res['ratio_p50']} (CPU time {res['ratio_cpu_p50']})")
        print(f"geometry_skin / frontal CPU p50: {res['geometry_skin_ratio_cpu_p50']}")
        if args.baseline is not None:
            print(f"this / baseline p50: {res['vs_baseline_p50']} (CPU time {res['vs_baseline_cpu_p50']})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
