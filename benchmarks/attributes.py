"""Latency of the attribute regressor H, against MediaPipe's landmarks in the same run.

Frames: those of :func:`avatarizer.bench.bench_frames`: the clips named by
``$AVATARIZER_BENCH_VIDEO`` (e.g. ``../shared/data/video``; 512×512), else the
bundled sample portrait with synthetic head motion (the JSON's ``frames`` says which).
The process is pinned to one CPU core (``--cores 1``, the default; ``--cores
N`` pins it to N cores, ``--cores 0`` leaves it on every core it may use:
image mode runs its segmentation and networks beside its Python on a second
core) and every ONNX Runtime session uses one thread. After ``--warmup``
untimed frames, each frame is timed for, in turn:

* ``landmarks_image``: MediaPipe Face Mesh in image mode as the align stage
  runs it (``static_image_mode=True``, refined landmarks, searching for
  ``align.IMAGE_MESH_FACES``, called as ``align._face_landmarks`` calls it,
  without ``process()``'s per-call overhead, as ``avatarizer bench``'s
  baseline; ``process()`` with 4 faces read 4-9% slower: a review, session
  72), the baseline;
* ``h_<model>``: H on the frame's aligned 128 px crop as the hair stage runs
  it: the crop and its mirror image, one call of a batch of two, their
  outputs averaged (:func:`avatarizer.pipeline.hair.mirrored_mean`),
  preprocessing included, for the shipped model and every extra ``--model
  FILE`` (e.g. an older H, for comparison);
* ``from_frame_image``: ``Avatarizer(mode="image").from_frame(frame)``
  (alignment, face model, H + hair retrieval, merge; no render), and its
  process CPU time (every thread's) as ``from_frame_image_cpu``;
Then, in a second pass over the frames (its identity worker process, which
inherits the pinning, computed beside the image-mode calls above when both
ran in one loop: their wall time 2.4x their CPU time), each frame is timed
for:

* ``landmarks_video``: this pass's baseline, MediaPipe Face Mesh in video
  mode as the align stage runs it there (tracking, one face): the static
  graph re-detects on every frame, 1.6x tracking's time, and made video mode
  read faster than MediaPipe alone (a review, session 72);
* ``from_frame_video``: ``Avatarizer(mode="video").from_frame(frame, t)``
  at 30 fps timestamps, timed once its identity is warm
  (``video_warm_after_frames``; before, the frames compute the identity
  networks themselves, 15-53 ms: they were timed with the rest), where the
  identity worker refreshes it off the frames' path: its p99 and max show
  whether a refresh still stalls a frame (``video_timed`` frames).

Prints p50 / p95 / p99 / max in ms per call and the ratios of wall times to
their pass's landmarks (``ratio_to_landmarks_p50``; the CPU time has
none).

Usage::

    python benchmarks/attributes.py [--frames N] [--warmup N] [--cores N] [--video PATH] [--model FILE ...] [--json]
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if importlib.util.find_spec("avatarizer") is None:  # not installed: use the checkout
    sys.path.insert(0, str(ROOT / "sdk"))

from avatarizer.checks import int_arg  # noqa: E402


def stats(ms: list[float]) -> dict:
    v = np.asarray(ms, np.float64)
    return {"p50_ms": round(float(np.percentile(v, 50)), 3), "p95_ms": round(float(np.percentile(v, 95)), 3),
            "p99_ms": round(float(np.percentile(v, 99)), 3), "max_ms": round(float(v.max()), 3), "n": int(len(v))}


class BenchInputError(Exception):
    """The frames to time could not be read (``--video``), or a ``--model`` file."""


def run(frames: int, warmup: int, models: list[str], log=print, cores: int = 1, video=None) -> dict:
    from avatarizer import Avatarizer
    from avatarizer.align import AlignOptions, FaceAligner, _face_landmarks, face_mesh_graph
    from avatarizer.bench import bench_frames, pin_cpus
    from avatarizer.errors import ModelError
    from avatarizer.models import Manifest, Session
    from avatarizer.pipeline.hair import mirrored_mean

    extra = {}
    for m in models:  # (first: a missing or broken file was a ModelError traceback after the frames were read)
        try:
            extra[f"h_{Path(m).stem}"] = Session(m)
        except (ModelError, OSError, ValueError) as exc:
            raise BenchInputError(f"--model {m}: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}") \
                from exc
    if cores > 0:
        pin_cpus(cores)  # (every thread of the process, not the calling one only)
    try:
        images, source = bench_frames(frames + warmup, video=video)
    except (OSError, ValueError) as exc:  # a missing or unreadable clip: the caller says it in one line
        raise BenchInputError(str(exc)) from exc
    log(f"frames: {source}")
    entry = Manifest.load().find("attributes", precision="int8")
    sessions = {f"h_{entry.name}": Session.from_entry(entry), **extra}
    aligner = FaceAligner(AlignOptions(mode="image", max_faces=1, segmentation=False))
    av_img = Avatarizer(mode="image")

    mesh = face_mesh_graph(AlignOptions(mode="image", max_faces=av_img.max_faces))  # (the align stage's graph)
    mesh_video = None
    av_vid = None
    log(f"image-mode Avatarizer: estimator {av_img.estimator}, precision {av_img.precision}")
    times: dict[str, list[float]] = {k: [] for k in ["landmarks_image", *sessions, "from_frame_image",
                                                       "from_frame_image_cpu", "landmarks_video",
                                                       "from_frame_video"]}
    missed, warm_at = 0, None
    try:
        for i, img in enumerate(images):  # pass 1: image mode
            rec = {}
            t0 = time.perf_counter()
            _face_landmarks(mesh, img)
            rec["landmarks_image"] = time.perf_counter() - t0
            faces = aligner.detect(img)
            if not faces:
                missed += 1
                continue
            crop = faces[0].crop(128)
            for name, s in sessions.items():
                t0 = time.perf_counter()
                mirrored_mean(s, crop)
                rec[name] = time.perf_counter() - t0
            t0, c0 = time.perf_counter(), time.process_time()
            av_img.from_frame(img)
            rec["from_frame_image"] = time.perf_counter() - t0
            rec["from_frame_image_cpu"] = time.process_time() - c0
            if i >= warmup:
                for k, v in rec.items():
                    times[k].append(v * 1e3)
        av_img.close()
        av_vid = Avatarizer(mode="video", max_faces=1)
        mesh_video = face_mesh_graph(AlignOptions(mode="video", max_faces=av_vid.max_faces))
        for i, img in enumerate(images):  # pass 2: video mode (its worker process beside these frames only)
            t0 = time.perf_counter()
            _face_landmarks(mesh_video, img)
            base = time.perf_counter() - t0
            warm = av_vid._pipeline.stream.tracker.warm  # (before the call: the frame that warms it is not timed)
            t0 = time.perf_counter()
            found = av_vid.from_frame(img, timestamp_ms=i * 1000.0 / 30.0) is not None
            took = time.perf_counter() - t0
            if warm and warm_at is None:
                warm_at = i  # (the identity's start-up, its networks on the frames, is not timed)
            if warm and found and i >= warmup:
                times["landmarks_video"].append(base * 1e3)
                times["from_frame_video"].append(took * 1e3)
    finally:
        mesh.close()
        if mesh_video is not None:
            mesh_video.close()
        aligner.close()
        av_img.close()
        if av_vid is not None:
            av_vid.close()
    if not times["landmarks_image"]:
        raise BenchInputError(f"no face in any of the {len(images) - warmup} frames after the warm-up: nothing "
                              "was timed")
    out = {"frames": source, "timed": len(times["landmarks_image"]), "no_face": missed, "threads": 1,
           "video_warm_after_frames": warm_at, "video_timed": len(times["from_frame_video"]),
           "pinned_cpus": sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
           # (the whole process's: pin_cpus pins every thread)
           "shipped_attributes": entry.name, "stages": {k: stats(v) for k, v in times.items() if v}}
    # wall times over their own pass's landmarks (a CPU time over a wall time is no ratio)
    ratios = {}
    for k, v in out["stages"].items():
        base = out["stages"].get("landmarks_video" if k in ("from_frame_video", "landmarks_video")
                                 else "landmarks_image")
        if not k.endswith("_cpu") and base:
            ratios[k] = round(v["p50_ms"] / base["p50_ms"], 3)
    out["ratio_to_landmarks_p50"] = ratios
    if not out["video_timed"]:  # (the stage was left out without a word: a review, session 65)
        out["note"] = ("from_frame_video not timed: the video-mode identity did not warm up within the frames "
                       "given (more --frames)")
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--frames", type=int_arg(1, 100_000), default=200)
    ap.add_argument("--warmup", type=int_arg(0, 100_000), default=20,
                    help="untimed frames first; video mode also skips frames until the identity is warm")
    ap.add_argument("--model", action="append", default=[], help="an extra attribute model file to time")
    ap.add_argument("--cores", type=int_arg(0, 1024), default=1,
                    help="pin the process to this many CPU cores (default 1; 0: leave it on all it may use)")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--video", default=None, help="a clip or a folder of .mp4 clips, centre-cropped to 512x512 (default $AVATARIZER_BENCH_VIDEO, else the bundled portrait with synthetic head motion)")
    args = ap.parse_args(argv)
    if args.cores < 0:
        ap.error("--cores must be 0 (all) or a positive number")
    try:
        res = run(args.frames, args.warmup, args.model, log=(lambda *_: None) if args.json else print,
                  cores=args.cores, video=args.video)
    except BenchInputError as exc:  # a missing or unreadable clip: one line, not a traceback
        ap.exit(1, f"{ap.prog}: error: {exc}\n")
    if args.json:
        print(json.dumps(res))
        return 0
    for k, v in res["stages"].items():
        r = res["ratio_to_landmarks_p50"].get(k)
        print(f"{k:32s} p50 {v['p50_ms']:7.2f}  p95 {v['p95_ms']:7.2f}  p99 {v['p99_ms']:7.2f}  "
              f"max {v['max_ms']:7.2f} ms" + (f"   ({r:.2f}x landmarks)" if r is not None else ""))
    if res.get("note"):
        print(res["note"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
