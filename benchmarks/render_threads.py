"""Drawing one image on one thread or in bands on several (``threads=``),
alone and inside a live video loop: the measurements behind
``threads="auto"`` (README, "Bands on threads").

    python benchmarks/render_threads.py            # table
    python benchmarks/render_threads.py --json     # one JSON object

Two parts, each alternating the thread counts frame by frame in one process
(so the machine's load and speed hit them alike), after a warm-up:

* ``bare``: ``native.Renderer(threads=1)`` and ``Renderer(threads=N)``
  drawing the same avatars (video-mode avatars of the frames below) at
  ``--sizes``, one right after the other, in alternating order: the
  renderer on an otherwise idle machine.
* ``live``: the loop of a live app, as ``avatarizer bench`` runs it: per
  frame MediaPipe's landmarks alone (the baseline graph), then
  ``Avatarizer(mode="video").run(frame, t, render_size=256)`` (its render
  stage drawing with the frame's thread count), then ``avatar.overlay(frame)``
  with the same count. Frames alternate between 1 and N threads.

Frames: ``--frames`` consecutive frames of the shared clips (as ``bench``
takes them; ``$AVATARIZER_BENCH_VIDEO`` or ``--video``, else the built-in
frames) are timed in ``live``, half at each thread count, after the stream's
start-up and ``--warmup`` frames (untimed). Each distribution is
p50/p95/p99/max wall ms.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np

os.environ.setdefault("GLOG_minloglevel", "2")

from avatarizer import native  # noqa: E402
from avatarizer.api import Avatarizer  # noqa: E402
from avatarizer.bench import _Gate, _pct, bench_frames  # noqa: E402
from avatarizer.pipeline import render as render_stage  # noqa: E402
from avatarizer.checks import int_arg  # noqa: E402


def bare(params, sizes, threads: int, repeats: int) -> dict:
    one, many = native.Renderer(threads=1), native.Renderer(threads=threads)
    out = {}
    for s in sizes:
        t = {1: [], threads: []}
        for rep in range(repeats + 1):
            for j, p in enumerate(params):
                for r in ((one, many) if j % 2 else (many, one)):
                    t0 = time.perf_counter()
                    r.render(p, s)
                    if rep:  # the first pass warms up
                        t[r.threads].append((time.perf_counter() - t0) * 1e3)
        out[str(s)] = {"1": _pct(t[1]), str(threads): _pct(t[threads]),
                       "ratio_p50": round(float(np.median(t[threads]) / np.median(t[1])), 3)}
    return out


def live(images, threads: int, warmup: int, frames: int | None = None) -> dict:
    from mediapipe.python.solutions import face_mesh

    counts = (1, threads)
    stage = {n: [] for n in counts}
    overlay = {n: [] for n in counts}
    e2e = {n: [] for n in counts}
    real_render = render_stage.render
    mesh = face_mesh.FaceMesh(static_image_mode=False, max_num_faces=1, refine_landmarks=True,
                              min_detection_confidence=0.5, min_tracking_confidence=0.5)
    try:
        with Avatarizer(mode="video", max_faces=1) as av:
            gate = _Gate("video", warmup)  # (as bench: no start-up, warm-up or re-warm frame, none without a face)
            for i, img in enumerate(images):
                # the thread count alternates in pairs (1, 1, n, n, ...): frame by frame it fell in step with
                # the start-up's 6-frame cadence of inline networks, all of them on the 1-thread frames
                n = counts[(i // 2) % 2]
                render_stage.render = lambda *a, n=n, **k: real_render(*a, threads=n, **k)
                mesh.process(img)
                t0 = time.perf_counter()
                state = av.run(img, i * 1000.0 / 30.0, render_size=256)
                t1 = time.perf_counter()
                avatar = av._avatar(state, 0)
                timed = gate.timed(i, state, (t1 - t0) * 1e3)
                if avatar is None:
                    continue
                avatar.overlay(img, threads=n)
                t2 = time.perf_counter()
                if timed:
                    stage[n].append(state.timings.get("render", 0.0))
                    e2e[n].append((t1 - t0) * 1e3)
                    overlay[n].append((t2 - t1) * 1e3)
                    # (--frames timed, not every frame read: 60 asked timed 134, a review, session 65)
                    if frames is not None and sum(map(len, e2e.values())) >= frames:
                        break
    finally:
        render_stage.render = real_render
        mesh.close()
    if not all(stage[n] for n in counts):
        raise SystemExit("no live frame was timed (no face, or the identity never warmed up): more --frames?")
    return {str(n): {"render_stage_256": _pct(stage[n]), "end_to_end": _pct(e2e[n]),
                     "overlay": _pct(overlay[n])} for n in counts}


def _sizes(text: str) -> list[int]:
    """``--sizes``: comma-separated sizes in px, each 1..MAX_SIZE (checked before any work: a bad one failed
    after the frames were read)."""
    try:
        sizes = [int(v) for v in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated whole numbers, got {text!r:.60}") from None
    if not sizes or not all(1 <= v <= native.MAX_SIZE for v in sizes):
        raise argparse.ArgumentTypeError(f"sizes must be in 1..{native.MAX_SIZE}, got {text!r:.60}")
    return sizes


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--threads", type=int_arg(2, 100_000), default=2, help="the banded count compared with 1 (default 2)")
    ap.add_argument("--sizes", type=_sizes, default=[256, 512, 1024], help="comma-separated sizes in px")
    ap.add_argument("--frames", type=int_arg(1, 100_000), default=300)
    ap.add_argument("--warmup", type=int_arg(0, 100_000), default=30)
    ap.add_argument("--repeats", type=int_arg(1, 100_000), default=3, help="bare: timed passes over the avatars")
    ap.add_argument("--video", default=None)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    if not 2 <= args.threads <= native.MAX_THREADS:
        ap.error(f"--threads must be in 2..{native.MAX_THREADS}")
    try:
        images, source = bench_frames(args.frames + args.warmup + 150, video=args.video)  # (+ the start-up, untimed)
    except (OSError, ValueError) as exc:  # a missing or unreadable clip: one line, not a traceback
        ap.exit(1, f"{ap.prog}: error: {exc}\n")
    with Avatarizer(mode="video", max_faces=1) as av:
        got = [av.from_frame(img, timestamp_ms=i * 1000.0 / 30) for i, img in enumerate(images[:80])]
    params = [a.params for a in got if a is not None]
    load = os.getloadavg()
    res = {"source": source, "threads": args.threads,
           "bare": bare(params, args.sizes, args.threads, args.repeats),
           "live": live(images, args.threads, args.warmup, args.frames),
           "load_avg": {"before": [round(v, 2) for v in load], "after": [round(v, 2) for v in os.getloadavg()]}}
    if args.json:
        print(json.dumps(res))
        return 0
    n = str(args.threads)
    print(f"{source}; load average {res['load_avg']['before'][0]} -> {res['load_avg']['after'][0]}")
    print(f"{'':28s} {'1 thread p50/p95':>18s} {n + ' threads p50/p95':>18s}")
    for s, v in res["bare"].items():
        print(f"{'bare render ' + s + ' px':28s} {v['1']['p50_ms']:8.2f} /{v['1']['p95_ms']:7.2f}  "
              f"{v[n]['p50_ms']:8.2f} /{v[n]['p95_ms']:7.2f}   ({v['ratio_p50']}x)")
    for k in ("render_stage_256", "overlay", "end_to_end"):
        a, b = res["live"]["1"][k], res["live"][n][k]
        print(f"{'live ' + k:28s} {a['p50_ms']:8.2f} /{a['p95_ms']:7.2f}  {b['p50_ms']:8.2f} /{b['p95_ms']:7.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
