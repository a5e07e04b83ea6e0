"""Latency of the alignment stage (avatarizer.align) on real frames.

Frames: consecutive frames of the talking-face clips in
``../shared/data/video/*.mp4`` resized to 512×512 when that folder exists,
otherwise scikit-image's ``astronaut`` portrait (512×512) repeated. Each
measurement runs ``--warmup`` untimed calls first and reports p50, p95, p99
and the worst call in milliseconds per frame (and n):

* ``landmarks_only``: MediaPipe Face Mesh alone, made and called as
  ``align_image``'s aligner makes and calls it (its own settings, the
  baseline the SDK's overhead is judged by), timed frame by frame in turn
  with ``align_image``, each first on every other frame;
* ``align_image``: ``FaceAligner(mode="image").align(frame)``, and its p50
  over the baseline's (``vs_landmarks_p50``);
* ``align_video``: ``FaceAligner(mode="video", max_faces=1)`` with
  timestamps (tracking; the setting for one person in front of a camera);
* ``align_video_max_faces_4``: the same with the default ``max_faces=4``,
  where MediaPipe keeps running its detector while fewer than 4 faces are
  tracked;
* ``crop_128``, ``crop_256``: ``AlignedFace.crop(size)`` on a fresh face;
* ``segmentation``: the first ``AlignedFace.segmentation(128)`` of a frame
  (selfie segmentation on the full frame plus the warp);
* ``hair_mask_128``: ``hair_mask(128)`` once the person mask exists.

Usage::

    python benchmarks/align.py [--frames N] [--warmup N] [--json]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import sys
import time
from pathlib import Path
from typing import Callable

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if importlib.util.find_spec("avatarizer") is None:  # not installed: use the checkout
    sys.path.insert(0, str(ROOT / "sdk"))

from avatarizer.align import FaceAligner  # noqa: E402
from avatarizer.videoio import capture as open_clip  # noqa: E402
from avatarizer.bench import _cpu_name  # noqa: E402
from avatarizer.checks import int_arg  # noqa: E402

SHARED_VIDEO = ROOT.parent / "shared" / "data" / "video"
SIZE = 512


def load_frames(count: int) -> tuple[list[np.ndarray], str]:
    """``count`` RGB 512×512 frames, consecutive within each clip; at most
    ``avatarizer.bench.MAX_DISTINCT_FRAMES`` distinct ones, then the same
    again (as ``avatarizer bench``: more than the clips hold came back
    fewer, still reported as asked, and were all kept in memory)."""
    from avatarizer.bench import MAX_DISTINCT_FRAMES, _square

    frames, source = _distinct_frames(min(count, MAX_DISTINCT_FRAMES), _square)
    if len(frames) < count:
        source += f", looped to {count}"
        frames = [frames[i % len(frames)] for i in range(count)]
    return frames, source


def _distinct_frames(count: int, _square) -> tuple[list[np.ndarray], str]:
    frames: list[np.ndarray] = []
    clips = sorted(SHARED_VIDEO.glob("*.mp4")) if SHARED_VIDEO.is_dir() else []
    used = []
    for clip in clips:
        capture = open_clip(clip)
        taken = 0
        while len(frames) < count:
            ok, frame = capture.read()
            if not ok:
                break
            # centre-cropped square, as avatarizer bench's frames (a resize alone stretched non-square clips)
            frames.append(_square(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB), SIZE))
            taken += 1
        capture.release()
        if taken:
            used.append(f"{clip.name}[{taken}]")
        if len(frames) >= count:
            break
    if frames:
        return frames, "../shared/data/video/" + " ".join(used)
    from skimage import data

    astronaut = cv2.resize(data.astronaut(), (SIZE, SIZE), interpolation=cv2.INTER_AREA)
    return [astronaut] * count, "skimage.data.astronaut (../shared/data/video not found)"


def timed(calls: list[Callable[[], object]], warmup: int) -> tuple[dict, list]:
    """Run the calls, time all but the first ``warmup``; return stats and results."""
    times, results = [], []
    for index, call in enumerate(calls):
        start = time.perf_counter()
        result = call()
        elapsed = (time.perf_counter() - start) * 1e3
        if index >= warmup:
            times.append(elapsed)
        results.append(result)
    if not times:
        raise SystemExit("nothing was timed: use more --frames than --warmup")
    return _stats(times), results


def _stats(times: list[float]) -> dict:
    p50, p95, p99 = np.percentile(times, (50, 95, 99))
    return {
        "p50_ms": round(float(p50), 3),
        "p95_ms": round(float(p95), 3),
        "p99_ms": round(float(p99), 3),
        "max_ms": round(float(np.max(times)), 3),
        "n": len(times),
    }


def run(frame_count: int, warmup: int) -> dict:
    frames, source = load_frames(frame_count + warmup)
    stages: dict[str, dict] = {}
    detected: dict[str, float] = {}

    from avatarizer.align import _face_landmarks

    with FaceAligner(mode="image") as aligner:
        # the baseline: MediaPipe's landmarks as the aligner finds them (its own FaceMesh settings and call),
        # interleaved frame by frame with align_image, each first on every other frame (timed in a block of
        # its own, with other settings, it came out slower than the alignment that contains it)
        mesh = aligner._new_mesh()
        try:
            base, aligned, faces = [], [], []
            for i, f in enumerate(frames):
                for which in ((0, 1) if i % 2 == 0 else (1, 0)):
                    start = time.perf_counter()
                    if which == 0:
                        _face_landmarks(mesh, f)
                    else:
                        faces.append(aligner.align(f))
                    elapsed = (time.perf_counter() - start) * 1e3
                    if i >= warmup:
                        (base if which == 0 else aligned).append(elapsed)
        finally:
            mesh.close()
        if not base:
            raise SystemExit("nothing was timed: use more --frames than --warmup")
        stages["landmarks_only"], stages["align_image"] = _stats(base), _stats(aligned)
        stages["align_image"]["vs_landmarks_p50"] = round(stages["align_image"]["p50_ms"]
                                                          / stages["landmarks_only"]["p50_ms"], 3)
        detected["image"] = sum(face is not None for face in faces) / len(faces)
        faces = [face for face in faces if face is not None]
        for size in (128, 256):
            stages[f"crop_{size}"], _ = timed([lambda x=x, s=size: x.crop(s) for x in faces], warmup)
        stages["segmentation"], _ = timed([lambda x=x: x.segmentation(128) for x in faces], warmup)
        stages["hair_mask_128"], _ = timed([lambda x=x: x.hair_mask(128) for x in faces], warmup)

    fps = 30.0
    for name, max_faces in (("align_video", 1), ("align_video_max_faces_4", 4)):
        with FaceAligner(mode="video", max_faces=max_faces, segmentation=False) as aligner:
            calls = [
                lambda f=f, t=i * 1000.0 / fps: aligner.align(f, timestamp_ms=t)
                for i, f in enumerate(frames)
            ]
            stages[name], results = timed(calls, warmup)
            detected[name.replace("align_", "")] = sum(r is not None for r in results) / len(results)

    import mediapipe

    return {
        "device": "cpu",
        "cpu": _cpu_name(),  # (the model name: platform.processor() is empty on Linux, "x86_64" was written)
        "cpu_count": os.cpu_count(),
        "mediapipe": mediapipe.__version__,
        "input": [SIZE, SIZE],
        "frames": frame_count,
        "warmup": warmup,
        "source": source,
        "stages": stages,
        "detection_rate": {key: round(value, 4) for key, value in detected.items()},
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--frames", type=int_arg(1, 100_000), default=200, help="timed frames per measurement (default 200)")
    parser.add_argument("--warmup", type=int_arg(0, 100_000), default=10, help="untimed calls first (default 10)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)
    if args.frames < 1 or args.warmup < 0:
        parser.error("--frames must be at least 1 and --warmup at least 0")

    report = run(args.frames, args.warmup)
    if args.json:
        print(json.dumps(report))
        return 0
    print(f"align benchmark: {report['frames']} frames {SIZE}×{SIZE} from {report['source']}")
    print(f"mediapipe {report['mediapipe']}, {report['cpu_count']} CPUs, warm-up {report['warmup']}")
    print(f"{'stage':<26}{'p50 ms':>9}{'p95 ms':>9}{'p99 ms':>9}{'max ms':>9}")
    for name, stats in report["stages"].items():
        print(f"{name:<26}{stats['p50_ms']:>9.2f}{stats['p95_ms']:>9.2f}{stats['p99_ms']:>9.2f}{stats['max_ms']:>9.2f}")
    rates = ", ".join(f"{k} {v:.1%}" for k, v in report["detection_rate"].items())
    print(f"faces found: {rates}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
