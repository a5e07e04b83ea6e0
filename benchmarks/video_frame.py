"""Where a video-mode frame's time goes (issue #16): a per-stage split, and the
frames the identity worker overlaps against the others, in one run.

    python benchmarks/video_frame.py                      # table
    python benchmarks/video_frame.py --json               # one JSON object
    python benchmarks/video_frame.py --profile 40         # + cProfile, top 40 functions by own time

Frames: consecutive frames of the shared clips (``../shared/data/video``, as
``avatarizer bench --video``; 512×512), through
``Avatarizer(mode="video").run(frame, t, render_size=256)`` as ``bench`` runs
them, with MediaPipe Face Mesh alone on the same frame in the same loop (the
baseline: called as the align stage calls it, ``align._face_landmarks``; the
two first in turn). As in ``bench`` (its gate), the identity's start-up (its
networks inline) comes first, then ``--warmup`` frames, untimed; then
``--frames`` timed frames, leaving out any without a face or of a new
person's start-up (a new stream at each change of clip), counted in
``left_out``; ``frames`` is the number timed.
Per timed frame:

* ``mediapipe``: the aligner's own MediaPipe graph call (``align._face_landmarks``),
  and ``align_python``: the rest of the align stage (landmark decoding, the
  similarity fit, the face objects);
* ``identity``: the identity stage on the frame's thread (reusing an answer,
  handing a copy of the frame to the worker when one is due);
* ``merge``: the merge stage (the tracker: signals, filters, expressions, pose);
* ``render``: the render stage (native, 256 px);
* ``other``: ``run()``'s wall time minus the stages (validation, locks, the
  frame's state);
* ``end_to_end`` and ``landmarks_only``.

Each as p50/p95/p99/max ms. ``worker``: how many timed frames overlapped the
identity worker (busy at the frame's start or end) and ``end_to_end`` p50/p95
of those frames and of the others; the worker's time per answer (a thread
worker only: a process worker computes in its child, ``answer_ms`` null). The load
average before and after is printed: the numbers compare only within one run.
``--profile N`` adds cProfile's top N functions over the timed frames (MediaPipe's
and the renderer's C calls included, under their own names) to stderr.
"""
from __future__ import annotations

import argparse
import cProfile
import io
import json
import os
import pstats
import sys
import threading
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("GLOG_minloglevel", "2")

from avatarizer import align as _align  # noqa: E402
from avatarizer.api import Avatarizer  # noqa: E402
from avatarizer.bench import _Gate, _pct, bench_clips  # noqa: E402
from avatarizer.checks import int_arg  # noqa: E402

DEFAULT_VIDEO = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "video"
PARTS = ("mediapipe", "align_python", "identity", "merge", "render", "other", "end_to_end", "landmarks_only")


def run(frames: int = 300, warmup: int = 30, video=None, profile: int = 0) -> dict:
    from mediapipe.python.solutions import face_mesh

    # (more frames than timed: the identity's start-up comes first, untimed, as in `avatarizer bench`)
    images, source, cuts = bench_clips(2 * (frames + warmup) + 400, video=DEFAULT_VIDEO if video is None else video)
    cuts = set(cuts)
    load_before = os.getloadavg()
    av = Avatarizer(mode="video")
    pipe = av._pipeline
    ident = pipe.by_name.get("identity")
    mp_ms = []  # per call of the aligner's graph on this thread

    real_landmarks = _align._face_landmarks

    def timed_landmarks(mesh, image):
        t = time.perf_counter()
        try:
            return real_landmarks(mesh, image)
        finally:
            if threading.current_thread() is threading.main_thread():
                mp_ms.append((time.perf_counter() - t) * 1e3)

    _align._face_landmarks = timed_landmarks
    id_ms = []
    if ident is not None:
        real_run = ident.run

        def timed_run(state):
            t = time.perf_counter()
            real_run(state)
            id_ms.append((time.perf_counter() - t) * 1e3)

        ident.run = timed_run
        answers, real_compute = [], ident._compute

        def timed_compute(state, *args, **kwargs):  # (the stage's own signature, whatever it takes)
            t = time.perf_counter()
            real_compute(state, *args, **kwargs)
            if threading.current_thread() is not threading.main_thread():
                answers.append((time.perf_counter() - t) * 1e3)

        ident._compute = timed_compute
    mesh = face_mesh.FaceMesh(static_image_mode=False, max_num_faces=av.max_faces, refine_landmarks=True,
                              min_detection_confidence=0.5, min_tracking_confidence=0.5)
    rows = {k: [] for k in PARTS}
    busy = []
    prof = cProfile.Profile() if profile else None
    try:
        gate = _Gate("video", warmup)  # (as bench: no start-up, warm-up or re-warm frame, none without a face)
        for i, img in enumerate(images):
            if len(rows["end_to_end"]) == frames:
                break
            if i in cuts:  # another clip: a new stream (as bench)
                av.reset()
                gate.cut()
            if prof is not None and i == gate.lead:
                prof.enable()
            was_busy = ident is not None and ident._busy
            n_mp, n_id = len(mp_ms), len(id_ms)
            # the baseline (MediaPipe as the align stage calls it) and the pipeline, each first in turn
            if i % 2:
                t1 = time.perf_counter()
                state = av.run(img, i * 1000.0 / 30.0, render_size=256)
                t2 = t0 = time.perf_counter()
                real_landmarks(mesh, img)
                base_ms = (time.perf_counter() - t0) * 1e3
            else:
                t0 = time.perf_counter()
                real_landmarks(mesh, img)
                t1 = time.perf_counter()
                base_ms = (t1 - t0) * 1e3
                state = av.run(img, i * 1000.0 / 30.0, render_size=256)
                t2 = time.perf_counter()
            was_busy = was_busy or (ident is not None and ident._busy)
            if not gate.timed(i, state, (t2 - t1) * 1e3):
                continue
            tm = state.timings
            mp = sum(mp_ms[n_mp:])
            idt = sum(id_ms[n_id:])
            e2e = (t2 - t1) * 1e3
            rows["mediapipe"].append(mp)
            rows["align_python"].append(tm.get("align", 0.0) - mp)
            rows["identity"].append(idt)
            rows["merge"].append(tm.get("merge", 0.0))
            rows["render"].append(tm.get("render", 0.0))
            rows["other"].append(e2e - sum(tm.get(k, 0.0) for k in ("align", "merge", "render")) - idt)
            rows["end_to_end"].append(e2e)
            rows["landmarks_only"].append(base_ms)
            busy.append(was_busy)
        if prof is not None:
            prof.disable()
    finally:
        _align._face_landmarks = real_landmarks
        mesh.close()
        av.close()
    if not rows["end_to_end"]:
        raise SystemExit(gate.nothing_timed(len(images)))
    e2e, b = np.array(rows["end_to_end"]), np.array(busy, bool)
    res = {"frames": len(e2e), "warmup": warmup, "source": source, "left_out": gate.left_out,
           "load_avg": {"before": [round(v, 2) for v in load_before],
                        "after": [round(v, 2) for v in os.getloadavg()]},
           "parts": {k: _pct(v) for k, v in rows.items()},
           "worker": {"busy_frames": int(b.sum()),
                      "busy": _pct(e2e[b]) if b.any() else None,
                      "idle": _pct(e2e[~b]) if (~b).any() else None,
                      "answer_ms": _pct(answers) if ident is not None and answers else None}}
    if prof is not None:
        s = io.StringIO()
        pstats.Stats(prof, stream=s).sort_stats("tottime").print_stats(profile)
        print(s.getvalue(), file=sys.stderr)
    return res


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--frames", type=int_arg(1, 100_000), default=300)
    ap.add_argument("--warmup", type=int_arg(0, 100_000), default=30)
    ap.add_argument("--video", default=None, help="a clip or a folder of .mp4 clips (default ../shared/data/video)")
    ap.add_argument("--profile", type=int_arg(0, 1000), default=0, metavar="N", help="print cProfile's top N functions to stderr")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    if args.frames < 1 or args.warmup < 0:
        ap.error("--frames must be >= 1 and --warmup >= 0")
    try:
        res = run(args.frames, args.warmup, args.video, args.profile)
    except (OSError, ValueError) as exc:  # a missing or unreadable clip, a folder without clips: one line
        ap.exit(1, f"{ap.prog}: error: {exc}\n")
    if args.json:
        print(json.dumps(res))
        return 0
    print(f"{res['source']}; load average {res['load_avg']['before'][0]} -> {res['load_avg']['after'][0]}")
    print(f"{'':15s} {'p50 ms':>8s} {'p95 ms':>8s} {'p99 ms':>8s} {'max ms':>8s}")
    for k, v in res["parts"].items():
        print(f"{k:15s} " + " ".join(f"{v[c]:8.2f}" for c in ("p50_ms", "p95_ms", "p99_ms", "max_ms")))
    w = res["worker"]
    print(f"identity worker busy on {w['busy_frames']} of {res['frames']} frames", end="")
    if w["busy"] and w["idle"]:
        print(f"; end_to_end p50/p95 {w['busy']['p50_ms']:.2f}/{w['busy']['p95_ms']:.2f} ms on those, "
              f"{w['idle']['p50_ms']:.2f}/{w['idle']['p95_ms']:.2f} on the others", end="")
    if w["answer_ms"]:
        print(f"; an answer takes {w['answer_ms']['p50_ms']:.1f} ms (p50)", end="")
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
