"""Renderer speed: ms per frame at 256, 512 and 1024 px for the native C
renderer, pycairo drawing the same scene from Python, and Pillow drawing it
with 4x supersampling -- all in one run, on one core, so ratios hold on a
noisy machine.

    python benchmarks/render.py                        # table
    python benchmarks/render.py --json                 # one JSON object (below)
    python benchmarks/render.py --baseline OLD_avz.so  # also an older build of the renderer, interleaved
    python benchmarks/render.py --dump-scenes F.f32    # the scenes for `make profile-render SCENES=F.f32`

Scenes (``--scenes``): ``real`` (default) are avatars of real faces: ``Avatarizer()``
(image mode) on the first photos of ``--faces`` (default
``../shared/data/faces/ffhq128``) and video-mode avatars of the frames ``avatarizer
bench`` uses (``$AVATARIZER_BENCH_VIDEO``: the shared clips, else the built-in
frames); ``sampled`` are ``schema.sample`` vectors (random in the schema ranges,
the numbers quoted before issue #16). Every backend renders the same scenes
after a warm-up; each distribution is p50/p95/p99/max ms per frame, on white.

``native`` is ``render(p, size, threads=1)`` with the default antialiasing: the
public call, parameter validation included, on the calling thread;
``native_fast`` is ``antialias="fast"`` (4x4 coverage). With ``--threads N``
(N >= 2) the process is not pinned to one core and ``native_threads`` is
``render(p, size, threads=N)`` (bands of rows on N threads), interleaved with
the others, its ratio to ``native`` in ``ratios``. ``native_call`` and, with ``--baseline``, ``baseline_call`` are the
bare ``avz_render`` of this build and of the other one (e.g. the ``_avz*.so`` of
an older checkout), called the same way from Python into one buffer and
interleaved frame by frame, so their ratio is the C change alone. The slow
backends (``pycairo``, ``pillow``) draw ``--slow-repeats`` frames, the first
scenes only, interleaved with ``native_same_scenes`` (the native call again on
those scenes): their ratios are to that, not to ``native``'s every scene.
``--json``: {"scenes", "cpu", "load_avg", "detail": {backend: {size: {p50_ms,
p95_ms, p99_ms, max_ms, n}}}, backend: {size: p50_ms}, "ratios": {...}}.
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

os.environ.setdefault("GLOG_minloglevel", "2")

from avatarizer import native, render, schema  # noqa: E402
from avatarizer.checks import int_arg  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def _pct(times) -> dict:
    t = np.asarray(times, np.float64)
    p50, p95, p99 = np.percentile(t, (50, 95, 99))
    return {"p50_ms": round(float(p50), 3), "p95_ms": round(float(p95), 3), "p99_ms": round(float(p99), 3),
            "max_ms": round(float(t.max()), 3), "n": int(t.size)}


def real_scenes(faces: Path, n_photos: int, n_frames: int, video=None) -> tuple[list[np.ndarray], str]:
    """Avatars of real faces: photos (image mode) and clip frames (video mode)."""
    import cv2

    from avatarizer.api import Avatarizer
    from avatarizer.bench import bench_frames

    params, parts = [], []
    # the clip first: a missing or unreadable --video fails at once, not after the photos' work
    frames, source = bench_frames(n_frames, video=video)
    photos = sorted(faces.glob("*.jpg"))[:n_photos] if faces.is_dir() else []
    if photos:
        with Avatarizer() as av:
            got = [av.from_frame(cv2.cvtColor(cv2.imread(str(f)), cv2.COLOR_BGR2RGB)) for f in photos]
        params += [a.params for a in got if a is not None]
        parts.append(f"{sum(a is not None for a in got)} photos of {faces}")
    with Avatarizer(mode="video", max_faces=1) as av:
        got = [av.from_frame(img, timestamp_ms=i * 1000.0 / 30) for i, img in enumerate(frames)]
    params += [a.params for a in got if a is not None]
    parts.append(f"{sum(a is not None for a in got)} video-mode avatars of {source}")
    return params, "; ".join(parts)


class _BareCall:
    """``avz_render`` of one build (this one, or an ``_avz*.so`` from elsewhere)
    called from Python the same way for both: one renderer, one buffer."""

    def __init__(self, module, size: int):
        self.ffi, self.lib = module.ffi, module.lib
        out = self.ffi.new("avz_renderer **")
        assert self.lib.avz_renderer_create(out) == 0
        self.r = self.ffi.gc(out[0], self.lib.avz_renderer_destroy)
        self.opt = self.ffi.new("avz_render_options *")
        self.lib.avz_render_options_init(self.opt)
        for i in range(4):
            self.opt.background[i] = 1.0
        self.size = size
        self.buf = np.empty((size, size, 4), np.uint8)
        self.ptr = self.ffi.cast("uint8_t *", self.buf.ctypes.data)

    def __call__(self, p):
        st = self.lib.avz_render(self.r, self.ffi.from_buffer("float[]", p), p.size, self.ptr, self.size,
                                 self.size, 4 * self.size, self.opt)
        if st != 0:
            raise RuntimeError(f"avz_render status {st}")
        return self.buf


def _load_baseline(path: str):
    """Loads another build of ``avatarizer._avz`` under the name ``_avz``
    (a missing or broken file: one line, exit 2)."""
    spec = importlib.util.spec_from_file_location("_avz", path) if os.path.isfile(path) else None
    if spec is None or spec.loader is None:
        raise SystemExit(f"--baseline {path}: not a loadable extension module")
    try:
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
    except ImportError as exc:
        raise SystemExit(f"--baseline {path}: not a loadable extension module ({exc})") from None
    return mod


def time_interleaved(fns: dict, params, repeats: int, warmup: int) -> dict:
    """Each frame rendered by every function in turn (so load swings hit all
    alike), the order rotated frame by frame and once more each pass over the
    scenes (rotated by the frame index alone, a function held the same place
    on a scene whenever the counts of scenes and functions share a factor)."""
    for p in params[:warmup]:
        for fn in fns.values():
            fn(p)
    times = {k: [] for k in fns}
    names = list(fns)
    for r in range(repeats):
        p = params[r % len(params)]
        shift = (r % len(params) + r // len(params)) % len(names)
        for k in names[shift:] + names[:shift]:
            fn = fns[k]
            t0 = time.perf_counter()
            fn(p)
            times[k].append((time.perf_counter() - t0) * 1000)
    return {k: _pct(v) for k, v in times.items()}


_positive_int = int_arg(1)  # argparse type= (avatarizer.checks)


_non_negative_int = int_arg(0)


_size = int_arg(1, native.MAX_SIZE, out_of_range=f"sizes must be in 1..{native.MAX_SIZE}, got {{v}}")


def _sizes(text: str) -> list[int]:
    """argparse ``type=`` for ``--sizes``: comma-separated pixel sizes, each in
    1..``native.MAX_SIZE`` (a larger one ended in the renderer's traceback, or
    in a 37 GiB allocation, after the avatars were built; a review, session 77)."""
    return [_size(s.strip()) for s in text.split(",")]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    ap.add_argument("--sizes", type=_sizes, default=[256, 512, 1024], help="comma-separated sizes in px "
                    "(default 256,512,1024)")
    ap.add_argument("--scenes", choices=("real", "sampled"), default="real")
    ap.add_argument("--faces", type=Path, default=None,
                    help="real scenes: a folder of .jpg portraits (default ../shared/data/faces/ffhq128 where "
                         "it is there)")
    ap.add_argument("--photos", type=_non_negative_int, default=40, help="real scenes: photos (image mode)")
    ap.add_argument("--frames", type=_positive_int, default=40, help="real scenes: clip frames (video mode)")
    ap.add_argument("--video", default=None, help="real scenes: a clip or a folder of .mp4 clips for the video-mode "
                                                  "frames (default $AVATARIZER_BENCH_VIDEO, else the bundled "
                                                  "portrait with synthetic head motion)")
    ap.add_argument("--repeats", type=_positive_int, default=240, help="timed frames per native backend and size")
    ap.add_argument("--slow-repeats", type=_positive_int, default=8, help="timed frames for pycairo and pillow")
    ap.add_argument("--no-slow", action="store_true", help="skip pycairo and pillow")
    ap.add_argument("--baseline", help="an _avz*.so of another build, timed interleaved with this one")
    ap.add_argument("--threads", type=int, default=1, help="N >= 2: also render(threads=N), on all cores "
                    "(the process is then not pinned to one)")
    ap.add_argument("--seed", type=int_arg(0, 2 ** 64 - 1, out_of_range="expected a seed from 0 to 2**64 - 1, got {v}"),
                    default=0)  # (-1 was schema.sample's traceback)
    ap.add_argument("--dump-scenes", type=Path, help="write the scenes' parameters (N x 629 float32) "
                    "for `make profile-render SCENES=FILE` and exit")
    args = ap.parse_args(argv)
    base = _load_baseline(args.baseline) if args.baseline else None  # (checked before the scenes are built)
    sizes = args.sizes
    if args.scenes == "real":
        if args.faces is None:
            args.faces = ROOT.parent / "shared" / "data" / "faces" / "ffhq128"
            if args.photos and not args.faces.is_dir():
                print(f"note: no {args.faces}: clip frames only (--faces DIR for photos)", file=sys.stderr)
        elif args.photos and not (args.faces.is_dir() and any(args.faces.glob("*.jpg"))):
            # (a --faces folder that is not there was left out without a word)
            ap.exit(1, f"{ap.prog}: error: --faces {args.faces} is no folder of .jpg photos (--photos 0 for "
                       "clip frames only)\n")
        try:
            params, scenes = real_scenes(args.faces, args.photos, args.frames, video=args.video)
        except (OSError, ValueError) as exc:  # a missing or unreadable clip: one line, not a traceback
            ap.exit(1, f"{ap.prog}: error: {exc}\n")
    else:
        params, scenes = list(schema.sample(24, seed=args.seed)), "24 schema.sample avatars"
    params = [np.ascontiguousarray(p, np.float32) for p in params]
    if not params:
        print("no scenes", file=sys.stderr)
        return 1
    if args.dump_scenes:
        np.stack(params).astype("<f4").tofile(args.dump_scenes)
        print(f"wrote {len(params)} scenes ({scenes}) to {args.dump_scenes}")
        return 0
    if not 1 <= args.threads <= native.MAX_THREADS:
        ap.error(f"--threads must be in 1..{native.MAX_THREADS}")
    from avatarizer.bench import pin_cpus

    cpu = (pin_cpus(1) or [None])[0] if args.threads == 1 else None  # (every thread on the first CPU)
    from avatarizer import _avz as this

    load_before = os.getloadavg()
    detail = {}
    for s in sizes:
        fns = {"native": lambda p, s=s: render(p, s, background="white", threads=1),
               "native_fast": lambda p, s=s: render(p, s, background="white", antialias="fast", threads=1),
               "native_call": _BareCall(this, s)}
        if args.threads > 1:
            fns["native_threads"] = lambda p, s=s: render(p, s, background="white", threads=args.threads)
        if base is not None:
            fns["baseline_call"] = _BareCall(base, s)
        res = time_interleaved(fns, params, args.repeats, warmup=min(5, len(params)))
        if not args.no_slow:
            # with the native renderer again on the same few scenes: the slow backends' ratios compare
            # like with like (their --slow-repeats scenes are the first few, not all of native's)
            slow = {b: (lambda p, s=s, b=b: render(p, s, background="white", backend=b))
                    for b in ("pycairo", "pillow")}
            slow["native_same_scenes"] = fns["native"]
            res.update(time_interleaved(slow, params, args.slow_repeats, warmup=1))
        for k, v in res.items():
            detail.setdefault(k, {})[str(s)] = v
    summary = {b: {s: v["p50_ms"] for s, v in d.items()} for b, d in detail.items()}
    slow_names = ("pycairo", "pillow", "native_same_scenes")
    ratios = {f"{b}/native": {s: round(summary[b][s] / summary["native"][s], 2) for s in summary[b]}
              for b in summary if b not in ("native", "baseline_call", "native_call", *slow_names)}
    ratios.update({f"{b}/native": {s: round(summary[b][s] / summary["native_same_scenes"][s], 2) for s in summary[b]}
                   for b in ("pycairo", "pillow") if b in summary})
    if base is not None:
        ratios["baseline_call/native_call"] = {s: round(summary["baseline_call"][s] / summary["native_call"][s], 3)
                                               for s in summary["native_call"]}
    load = {"before": [round(v, 2) for v in load_before], "after": [round(v, 2) for v in os.getloadavg()]}
    if args.json:
        print(json.dumps({"scenes": scenes, "cpu": cpu, "load_avg": load, **summary, "detail": detail,
                          "ratios": ratios}))
        return 0
    where = f"one core (cpu {cpu})" if cpu is not None else f"not pinned, native_threads on {args.threads} threads"
    print(f"renderer ms per frame, {where}; scenes: {scenes}; "
          f"load average {load['before'][0]} -> {load['after'][0]}")
    print(f"{'backend':14s}" + "".join(f"{s:>30d}" for s in sizes))
    print(f"{'':14s}" + "".join(f"{'p50 / p95 / p99 / max':>30s}" for _ in sizes))
    for b, d in detail.items():
        print(f"{b:14s}" + "".join(
            f"{d[str(s)]['p50_ms']:9.2f} /{d[str(s)]['p95_ms']:6.2f} /{d[str(s)]['p99_ms']:6.2f} /"
            f"{d[str(s)]['max_ms']:6.2f}" for s in sizes))
    for k, v in ratios.items():
        print(f"{k:26s}" + "  ".join(f"{s}: {r}x" for s, r in v.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
