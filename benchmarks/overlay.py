"""``Avatar.overlay()`` speed on 512×512 talking-head frames: two previous
implementations and the current one, interleaved in the same run (so the ratios
hold on a loaded machine), after a warm-up.

    python benchmarks/overlay.py            # table
    python benchmarks/overlay.py --json     # {"frames", "input", "before": {...}, "box_numpy": {...},
                                            #  "after": {...}, "after_1thread": {...}, "after_fast": {...},
                                            #  "render_box": {...}, "after_paced": {...},
                                            #  "after_1thread_paced": {...}, "pause_ms",
                                            #  "ratio_p50", "ratio_p50_box_numpy",
                                            #  "ratio_p50_fast", "ratio_p50_threads", "max_abs_difference",
                                            #  "max_abs_difference_threads"}

Frames are those of ``avatarizer bench`` (the clips named by ``--video`` or
``$AVATARIZER_BENCH_VIDEO``, centre-cropped to 512×512; else the bundled sample
portrait with synthetic head motion), their avatars made once in video
mode beforehand (only ``overlay`` is timed). ``before`` is the previous code:
the avatar's box rendered, then a float32 blend over the whole box with a
per-pixel fade computed from a full coordinate grid (and the transform
inverted through ``np.linalg``). ``box_numpy`` is the code of the first
half of issue #16: the same box rendered to straight RGBA, then only its drawn
part blended (OpenCV), the fade computed only on the rows that reach it, in
the caller's channel order. ``after`` is ``Avatar.overlay`` now: the native
``avz_overlay`` renders the box premultiplied into a scratch image it keeps
and blends it straight into the frame copy (opacity, fade, channel order in
C), with the default ``threads="auto"`` (two bands of the box drawn and
blended at the same time where the process may use two CPUs);
``after_1thread`` is the same on the calling thread alone (``threads=1``).
``after_paced`` and ``after_1thread_paced`` are ``after`` and
``after_1thread`` called after an idle pause of ``--pause-ms`` (default 25:
a 30 fps camera's frame less the pipeline's work), as a live app calls it,
in a pass of their own after the others (``--repeats`` passes, the two
alternating first; in the same pass the pauses slowed the calls timed after
them too); on the development machine (a virtual one) a call after such a
pause costs about 1 ms more whatever the thread count (session 52).
``after_fast`` is the same call as ``after`` with ``antialias="fast"`` (4x4 edge
coverage, for a live preview). ``render_box`` times ``render()`` of the box
alone (straight RGBA): the floor of the two older paths. Every variant is
timed with numpy's BLAS on one thread (as the SDK's pipeline runs:
``pipeline.base.one_blas_thread``): ``before`` wakes OpenBLAS's thread pool,
whose thread busy-waits on the second core through the calls timed after it,
which took the default's second band its core (session 52). Each
distribution is p50/p95/p99/max ms over all timed calls (the first pass over
the frames is an untimed warm-up, as are ``--warmup`` paced calls);
``max_abs_difference`` is the largest pixel difference between ``before``
and ``after`` (and ``box_numpy`` and ``after``) on the first pass.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np

os.environ.setdefault("GLOG_minloglevel", "2")

from avatarizer.api import _OVERLAY_BOTTOM, _OVERLAY_FADE, Avatarizer, _to_order  # noqa: E402
from avatarizer.align import invert_affine as _invert  # noqa: E402
from avatarizer.bench import _pct, bench_frames  # noqa: E402
from avatarizer.checks import int_arg  # noqa: E402
from avatarizer.imageio import to_rgb_uint8  # noqa: E402
from avatarizer.pipeline.base import one_blas_thread  # noqa: E402
from avatarizer.render import render  # noqa: E402


def _box(avatar, w, h):
    tf = np.asarray(avatar.face.transform, np.float64)
    corners = np.array([[-1.1, -1.1], [1.1, -1.1], [1.1, 1.1], [-1.1, 1.1]]) @ tf[:, :2].T + tf[:, 2]
    x0, y0 = np.floor(corners.min(0)).astype(int)
    x1, y1 = np.ceil(corners.max(0)).astype(int)
    x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1, w), min(y1, h)
    local = tf.copy()
    local[:, 2] -= (x0, y0)
    return x0, y0, x1, y1, local


def _invert_before(m):
    lin = np.linalg.inv(m[:, :2])
    return np.concatenate([lin, (-lin @ m[:, 2])[:, None]], axis=1)


def overlay_before(avatar, frame, opacity=1.0, order="rgb"):
    """The implementation before issue #16 (opacity > 0, face on the frame)."""
    rgb = to_rgb_uint8(frame, order)
    h, w = rgb.shape[:2]
    out = rgb.copy()
    x0, y0, x1, y1, local = _box(avatar, w, h)
    rgba = render(avatar.params, width=int(x1 - x0), height=int(y1 - y0), transform=local)
    a = rgba[..., 3:4].astype(np.float32) * (float(opacity) / 255.0)
    inv = _invert_before(local)
    ys, xs = np.mgrid[0:y1 - y0, 0:x1 - x0].astype(np.float32) + 0.5
    yc = inv[1, 0] * xs + inv[1, 1] * ys + inv[1, 2]
    a *= np.clip((_OVERLAY_BOTTOM - yc) / _OVERLAY_FADE, 0.0, 1.0)[..., None]
    region = out[y0:y1, x0:x1].astype(np.float32)
    out[y0:y1, x0:x1] = np.clip(region + a * (rgba[..., :3].astype(np.float32) - region) + 0.5,
                                0, 255).astype(np.uint8)
    return _to_order(out, order)


def overlay_box_numpy(avatar, frame, opacity=1.0, order="rgb"):
    """The implementation between the two halves of issue #16 (uint8 H×W×3
    input in ``order``, opacity > 0, face on the frame)."""
    import cv2

    out = frame.copy()
    h, w = out.shape[:2]
    x0, y0, x1, y1, local = _box(avatar, w, h)
    rgba = render(avatar.params, width=int(x1 - x0), height=int(y1 - y0), transform=local)
    alpha = cv2.extractChannel(rgba, 3)
    bx, by, bw, bh = cv2.boundingRect(alpha)
    if bw == 0 or bh == 0:
        return out
    rgba = rgba[by:by + bh, bx:bx + bw]
    a = alpha[by:by + bh, bx:bx + bw].astype(np.float32)
    a *= float(opacity) / 255.0
    inv = _invert(local)
    xs = np.array([bx + 0.5, bx + bw - 0.5])
    ys = np.arange(by, by + bh, dtype=np.float64) + 0.5
    row_max = inv[1, 1] * ys + inv[1, 2] + max(inv[1, 0] * xs[0], inv[1, 0] * xs[1])
    rows = np.flatnonzero(row_max > _OVERLAY_BOTTOM - _OVERLAY_FADE)
    if rows.size:
        r0, r1 = int(rows[0]), int(rows[-1]) + 1
        xx = np.arange(bx, bx + bw, dtype=np.float32) + 0.5
        yc = np.float32(inv[1, 0]) * xx[None, :] + (np.float32(inv[1, 1]) * (
            np.arange(by + r0, by + r1, dtype=np.float32) + 0.5) + np.float32(inv[1, 2]))[:, None]
        a[r0:r1] *= np.clip((_OVERLAY_BOTTOM - yc) / _OVERLAY_FADE, 0.0, 1.0)
    src = cv2.cvtColor(rgba, cv2.COLOR_RGBA2BGR if order == "bgr" else cv2.COLOR_RGBA2RGB)
    X0, Y0 = x0 + bx, y0 + by
    region = out[Y0:Y0 + bh, X0:X0 + bw]
    region[...] = cv2.blendLinear(src, np.ascontiguousarray(region), a, 1.0 - a)
    return out


def render_box(avatar, frame):
    x0, y0, x1, y1, local = _box(avatar, frame.shape[1], frame.shape[0])
    return render(avatar.params, width=int(x1 - x0), height=int(y1 - y0), transform=local)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--frames", type=int_arg(1, 1000), default=60, help="distinct frames (default 60)")
    ap.add_argument("--repeats", type=int_arg(1, 1000), default=3, help="timed passes over the frames (default 3)")
    ap.add_argument("--warmup", type=int_arg(0, 1000), default=5,
                    help="untimed paced calls first (the first pass over the frames is untimed; default 5)")
    ap.add_argument("--order", choices=("rgb", "bgr"), default="rgb")
    ap.add_argument("--pause-ms", type=int_arg(0, 1000), default=25,
                    help="the idle pause before each *_paced call, in ms (default 25: a 30 fps camera's pace)")
    ap.add_argument("--video", default=None, help="a clip or a folder of .mp4 clips, centre-cropped to 512x512 (default $AVATARIZER_BENCH_VIDEO, else the bundled portrait with synthetic head motion)")
    args = ap.parse_args(argv)
    try:
        images, source = bench_frames(args.frames, video=args.video)
    except (OSError, ValueError) as exc:  # a missing or unreadable clip: one line, not a traceback
        ap.exit(1, f"{ap.prog}: error: {exc}\n")
    pairs = []
    with Avatarizer(mode="video", max_faces=1) as av:
        for i, img in enumerate(images):
            a = av.from_frame(img, timestamp_ms=i * 1000.0 / 30)
            if a is not None:
                pairs.append((a, img if args.order == "rgb" else np.ascontiguousarray(img[..., ::-1])))
    if not pairs:
        print("no face in the frames", file=sys.stderr)
        return 1
    fns = {"before": lambda a, f: overlay_before(a, f, order=args.order),
           "box_numpy": lambda a, f: overlay_box_numpy(a, f, order=args.order),
           "after": lambda a, f: a.overlay(f, color_order=args.order),
           "after_1thread": lambda a, f: a.overlay(f, color_order=args.order, threads=1),
           "after_fast": lambda a, f: a.overlay(f, color_order=args.order, antialias="fast"),
           "render_box": render_box}
    # timed in a pass of their own: the pauses also leave the next calls a cold core
    paced = {"after_paced": fns["after"], "after_1thread_paced": fns["after_1thread"]}
    times = {k: [] for k in [*fns, *paced]}
    load_before = os.getloadavg()
    worst = banded = 0
    names = list(fns)
    # numpy's BLAS on one thread while timing, as the SDK's pipeline runs (pipeline.base.one_blas_thread):
    # `before` wakes OpenBLAS's thread pool, whose thread then busy-waits on the second core for the
    # calls after it (process CPU time ~2x wall during `after_1thread`), and `after`'s second band
    # got no core (measured: after 2.15-2.26 ms p50 against 1.91-1.99 on one thread; 1.19-1.34 once
    # OpenBLAS is kept to one thread)
    with one_blas_thread():
        for rep in range(args.repeats + 1):
            for j, (a, f) in enumerate(pairs):
                # each function first in turn (a fixed order ran "before" first and "after" third on every
                # frame: its p50 moved ~7% with its place, a review), and on each frame a place of its own
                # from one pass to the next
                shift = (j + rep) % len(names)
                for k in names[shift:] + names[:shift]:
                    fn = fns[k]
                    t0 = time.perf_counter()
                    r = fn(a, f)
                    dt = (time.perf_counter() - t0) * 1e3
                    if rep > 0:  # (pass 0 is the warm-up, and checks the pixels: its times were kept too)
                        times[k].append(dt)
                if rep == 0:
                    got = fns["after"](a, f).astype(int)
                    worst = max(worst, int(np.abs(fns["before"](a, f) - got).max()),
                                int(np.abs(fns["box_numpy"](a, f) - got).max()))
                    banded = max(banded, int(np.abs(fns["after_1thread"](a, f) - got).max()))
                del r
        for j in range(args.warmup):  # the paced calls' own warm-up, untimed
            a, f = pairs[j % len(pairs)]
            for k in paced:
                paced[k](a, f)
        for rep in range(args.repeats):
            for j, (a, f) in enumerate(pairs):
                for k in (list(paced) if (j + rep) % 2 else list(paced)[::-1]):
                    time.sleep(args.pause_ms / 1000.0)  # idle, as between a camera's frames
                    t0 = time.perf_counter()
                    paced[k](a, f)
                    times[k].append((time.perf_counter() - t0) * 1e3)
    res = {"frames": len(pairs), "source": source, "input": list(pairs[0][1].shape[:2]),
           **{k: _pct(v) for k, v in times.items()},
           "ratio_p50": round(_pct(times["before"])["p50_ms"] / _pct(times["after"])["p50_ms"], 2),
           "ratio_p50_box_numpy": round(_pct(times["box_numpy"])["p50_ms"] / _pct(times["after"])["p50_ms"], 2),
           "ratio_p50_fast": round(_pct(times["after"])["p50_ms"] / _pct(times["after_fast"])["p50_ms"], 2),
           "ratio_p50_threads": round(_pct(times["after_1thread"])["p50_ms"] / _pct(times["after"])["p50_ms"], 2),
           "max_abs_difference": worst, "max_abs_difference_threads": banded, "pause_ms": args.pause_ms,
           "load_avg": {"before": [round(v, 2) for v in load_before], "after": [round(v, 2) for v in os.getloadavg()]}}
    if args.json:
        print(json.dumps(res))
        return 0
    print(f"overlay on {res['frames']} frames {res['input']} ({source}), {args.order}; "
          f"load average {res['load_avg']['before'][0]} -> {res['load_avg']['after'][0]}")
    print(f"{'':20s} {'p50 ms':>8s} {'p95 ms':>8s} {'p99 ms':>8s} {'max ms':>8s}")
    for k in [*fns, *paced]:
        print(f"{k:20s} " + " ".join(f"{res[k][c]:8.2f}" for c in ("p50_ms", "p95_ms", "p99_ms", "max_ms")))
    print(f"before/after p50: {res['ratio_p50']}x, box_numpy/after p50: {res['ratio_p50_box_numpy']}x, "
          f"after/after_fast p50: {res['ratio_p50_fast']}x, after_1thread/after p50: {res['ratio_p50_threads']}x; "
          f"largest pixel difference {worst}/255 (after vs after_1thread: {banded}/255); *_paced after {args.pause_ms} ms idle")
    return 0


if __name__ == "__main__":
    sys.exit(main())
