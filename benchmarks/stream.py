"""``Avatarizer.stream()`` against a sequential ``from_frame`` loop, in the same
run, on the same frames: what a live app gets per frame.

    python benchmarks/stream.py                 # table
    python benchmarks/stream.py --json          # {"frames", "source", "warmup", "repeats", "cpus", "load_avg",
                                                #  "sequential": {...}, "stream": {...}, "throughput_ratio"}

Both loops do a live app's whole job per frame: the avatar (video mode,
timestamps frame index × 40 ms) and ``Avatar.overlay`` onto the frame (the
consumer's render). ``sequential`` is ``for f: a = av.from_frame(f, t);
a.overlay(f)``; ``stream`` is ``for i, a in av.stream(frames, ts):
a.overlay(frames[i])``, where the landmarks of the next frames are found on
a worker thread while the consumer merges and overlays this one.

Each mode runs ``--repeats`` times on a fresh ``Avatarizer`` (model loading
not timed), the two modes alternating (sequential first in odd repeats), and
the first ``--warmup`` frames of every run are left out of the numbers: they
must cover the identity's start-up, where its networks run inline on some
frames (back to back about 85-110 frames, while the worker process starts;
the default 150 does; 30 before session 34 let 9 inline frames into the
timing, a review). Per mode: ``interval`` (time between two finished frames: what
decides the frame rate), ``latency`` (from the moment a frame is taken from
the source to its overlay being done: in a stream a frame may wait in the
read-ahead queue), each p50/p95/p99/max ms over all timed frames of all
repeats, and ``fps`` (timed frames / their wall time; the median of the
repeats, each repeat's in ``fps_runs``), ``cpu_cores_used`` (process CPU
time / wall time of a run, median; this process only: the identity worker
process's CPU is not counted). ``throughput_ratio`` is stream fps /
sequential fps. ``--camera`` delivers the frames no faster than 25 fps (a
camera): then fps is capped at 25 and latency is the number to compare.
``--decode`` decodes the clip inside the loop (on the stream's worker thread
in a stream), as a player does, instead of beforehand. The load average before and after is printed: the numbers are
only comparable within one run.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("GLOG_minloglevel", "2")

from avatarizer.api import Avatarizer  # noqa: E402
from avatarizer.bench import _pct, _square, bench_frames  # noqa: E402
from avatarizer.checks import int_arg  # noqa: E402

DEFAULT_VIDEO = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "video" / "d10.mp4"
DT_MS = 40.0


def _source(frames, t_in: np.ndarray, camera: bool, clip: str | None, store: dict):
    """The frames, recording when each is taken (``t_in``) and keeping it in
    ``store`` for the overlay; ``camera``: none before its time (frame i at
    i * 40 ms after the first), as a 25 fps camera delivers; ``clip``: decoded
    from that file here (OpenCV), as a player would, instead of from memory."""
    import cv2

    from avatarizer.videoio import capture

    cap = capture(clip) if clip else None
    t0 = None
    try:
        for i in range(len(frames)):
            if cap is not None:
                ok, bgr = cap.read()
                if not ok:
                    return
                # (centre-cropped to 512x512 as the frames decoded beforehand are: the clip's own size
                # compared unlike frames; a review, session 72)
                f = _square(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), 512)
            else:
                f = frames[i]
            now = time.perf_counter()
            if camera:
                if t0 is None:
                    t0 = now
                due = t0 + i * DT_MS / 1000.0
                if due > now:
                    time.sleep(due - now)
                    now = time.perf_counter()
            t_in[i] = now
            store[i] = f
            yield f
    finally:
        if cap is not None:
            cap.release()


def run_sequential(frames: list[np.ndarray], camera: bool = False, clip: str | None = None):
    t_in, t_out, store = np.zeros(len(frames)), np.zeros(len(frames)), {}
    with Avatarizer(mode="video", max_faces=1) as av:
        cpu0 = time.process_time()
        for i, f in enumerate(_source(frames, t_in, camera, clip, store)):
            a = av.from_frame(f, timestamp_ms=i * DT_MS)
            if a is not None:
                a.overlay(f)
            del store[i]
            t_out[i] = time.perf_counter()
        cpu = time.process_time() - cpu0
    return t_in, t_out, cpu


def run_stream(frames: list[np.ndarray], camera: bool = False, clip: str | None = None):
    t_in, t_out, store = np.zeros(len(frames)), np.zeros(len(frames)), {}
    with Avatarizer(mode="video", max_faces=1) as av:
        cpu0 = time.process_time()
        for i, a in av.stream(_source(frames, t_in, camera, clip, store), fps=1000.0 / DT_MS):
            f = store.pop(i)
            if a is not None:
                a.overlay(f)
            t_out[i] = time.perf_counter()
        cpu = time.process_time() - cpu0
    return t_in, t_out, cpu


def measure(frames, warmup: int, repeats: int, camera: bool = False, clip: str | None = None) -> dict:
    runs = {"sequential": run_sequential, "stream": run_stream}
    got = {k: {"interval": [], "latency": [], "fps_runs": [], "cores": []} for k in runs}
    for r in range(repeats):
        order = ("sequential", "stream") if r % 2 == 0 else ("stream", "sequential")
        for name in order:
            t_in, t_out, cpu = runs[name](frames, camera, clip)
            if not t_out.all():  # the clip ended early: the frames never delivered would count as time 0
                raise ValueError(f"the {name} run got {int(np.count_nonzero(t_out))} of {len(frames)} frames "
                                 "from the source")
            wall = t_out[-1] - t_in[0]
            got[name]["cores"].append(cpu / wall if wall > 0 else 0.0)
            t_in, t_out = t_in[warmup:], t_out[warmup:]
            got[name]["interval"].extend((np.diff(t_out) * 1000.0).tolist())
            got[name]["latency"].extend(((t_out - t_in) * 1000.0).tolist())
            span = t_out[-1] - t_out[0]
            got[name]["fps_runs"].append(round((len(t_out) - 1) / span, 2) if span > 0 else 0.0)
    out = {}
    for name, g in got.items():
        out[name] = {"interval": _pct(g["interval"]), "latency": _pct(g["latency"]),
                     "fps": float(np.median(g["fps_runs"])), "fps_runs": g["fps_runs"],
                     "cpu_cores_used": round(float(np.median(g["cores"])), 2)}
    seq = out["sequential"]["fps"]
    out["throughput_ratio"] = round(out["stream"]["fps"] / seq, 3) if seq > 0 else None
    return out


def _clip_frames(clip: str, most: int) -> int:
    """How many frames OpenCV decodes from ``clip`` (counting stops at ``most``)."""
    from avatarizer.videoio import capture

    cap = capture(clip)
    n = 0
    try:
        while n < most and cap.grab():
            n += 1
    finally:
        cap.release()
    return n


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--frames", type=int_arg(1, 100_000), default=400, help="frames per run (default 400)")
    ap.add_argument("--warmup", type=int_arg(0, 100_000), default=150,
                    help="frames left out at the start of every run: the identity's start-up (default 150)")
    ap.add_argument("--repeats", type=int_arg(1, 100_000), default=2, help="runs per mode, alternating (default 2)")
    ap.add_argument("--video", default=str(DEFAULT_VIDEO) if DEFAULT_VIDEO.exists() else None,
                    help="a clip or a folder of clips (default ../shared/data/video/d10.mp4; the built-in "
                         "frames without it)")
    ap.add_argument("--camera", action="store_true",
                    help="deliver the frames no faster than 25 fps, as a camera does (default: as fast as taken)")
    ap.add_argument("--decode", action="store_true",
                    help="decode the frames from --video (a file) inside the loop, as a player does, "
                         "centre-cropped to 512x512 there (default: decoded and cropped once beforehand)")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    if not 2 <= args.frames - args.warmup or args.warmup < 0 or args.repeats < 1:
        ap.error("need --frames at least --warmup + 2, --warmup >= 0 and --repeats >= 1")
    clip = None
    if args.decode:
        if not args.video or not Path(args.video).is_file():
            ap.error("--decode needs --video naming one clip")
        clip = str(args.video)
        have = _clip_frames(clip, args.frames)
        if have < args.frames:  # decoded in the loop, a clip is not looped: the run would stop short
            ap.error(f"--decode: {clip} has only {have} frames, fewer than --frames {args.frames}")
    try:
        frames, source = bench_frames(args.frames, 512, args.video)
        if clip:
            source = f"{source}, decoded in the loop"
        load_before = os.getloadavg()
        res = measure(frames, args.warmup, args.repeats, args.camera, clip)
    except ValueError as exc:
        print(f"{ap.prog}: error: {exc}", file=sys.stderr)
        return 1
    doc = {"frames": len(frames), "source": source, "warmup": args.warmup, "repeats": args.repeats,
           "delivery": "camera, 25 fps" if args.camera else "as fast as taken",
           "cpus": os.cpu_count(), "load_avg": {"before": [round(v, 2) for v in load_before],
                                               "after": [round(v, 2) for v in os.getloadavg()]}, **res}
    if args.json:
        print(json.dumps(doc))
        return 0
    print(f"{doc['source']}, delivered {doc['delivery']}; {args.warmup} warm-up frames left out of each run, "
          f"{args.repeats} run(s) per mode; "
          f"{doc['cpus']} CPUs, load average {doc['load_avg']['before'][0]} -> {doc['load_avg']['after'][0]}")
    print(f"{'':12s} {'fps':>6s} {'cores':>5s}   {'interval ms p50/p95/p99/max':>30s}   "
          f"{'latency ms p50/p95/p99/max':>30s}")
    for name in ("sequential", "stream"):
        r = doc[name]
        iv, la = r["interval"], r["latency"]
        print(f"{name:12s} {r['fps']:6.1f} {r['cpu_cores_used']:5.2f}   {iv['p50_ms']:6.1f} {iv['p95_ms']:6.1f} {iv['p99_ms']:6.1f} "
              f"{iv['max_ms']:7.1f}   {la['p50_ms']:6.1f} {la['p95_ms']:6.1f} {la['p99_ms']:6.1f} {la['max_ms']:7.1f}")
    print(f"stream / sequential throughput: {doc['throughput_ratio']}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
