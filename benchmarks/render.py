"""Renderer speed: ms per frame at 256, 512 and 1024 px for the native C
renderer, pycairo drawing the same scene from Python, and Pillow drawing it
with 4x supersampling -- all in one run, on one core, so ratios hold on a
noisy machine.

    python benchmarks/render.py            # table
    python benchmarks/render.py --json     # {"native": {"256": ms, ...}, "pycairo": {...}, "pillow": {...}}

Each backend renders the same set of sampled avatars (``schema.sample``), after
a warm-up; the reported number is the median (p50) ms per frame, with p95 in
the detailed output. ``native`` is the default antialiasing; ``native_fast`` is
``antialias="fast"`` (4x4 coverage). Both include the Python call and the
parameter validation.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np

from avatarizer import render, schema


def _pin_one_core():
    try:
        cpu = sorted(os.sched_getaffinity(0))[0]
        os.sched_setaffinity(0, {cpu})
        return cpu
    except (AttributeError, OSError):
        return None


def time_backend(backend, params, size, repeats, warmup):
    kw = dict(backend="native", antialias="fast") if backend == "native_fast" else dict(backend=backend)
    for p in params[:warmup]:
        render(p, size, background="white", **kw)
    times = []
    for r in range(repeats):
        p = params[r % len(params)]
        t0 = time.perf_counter()
        render(p, size, background="white", **kw)
        times.append((time.perf_counter() - t0) * 1000)
    t = np.array(times)
    return {"p50_ms": float(np.median(t)), "p95_ms": float(np.percentile(t, 95)), "n": len(t)}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    ap.add_argument("--sizes", default="256,512,1024")
    ap.add_argument("--repeats", type=int, default=60, help="timed frames per backend and size (native)")
    ap.add_argument("--slow-repeats", type=int, default=8, help="timed frames for pycairo and pillow")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    cpu = _pin_one_core()
    sizes = [int(s) for s in args.sizes.split(",")]
    params = schema.sample(24, seed=args.seed)
    detail = {}
    for backend in ("native", "native_fast", "pycairo", "pillow"):
        reps = args.repeats if backend.startswith("native") else args.slow_repeats
        detail[backend] = {str(s): time_backend(backend, params, s, reps, warmup=3) for s in sizes}
    summary = {b: {s: round(v["p50_ms"], 3) for s, v in d.items()} for b, d in detail.items()}
    ratios = {f"{b}/native": {s: round(summary[b][s] / summary["native"][s], 1) for s in summary[b]}
              for b in ("native_fast", "pycairo", "pillow")}
    if args.json:
        out = dict(summary)
        out["detail"] = detail
        out["ratios"] = ratios
        out["cpu"] = cpu
        print(json.dumps(out))
        return 0
    print(f"renderer ms per frame (p50 / p95), one core (cpu {cpu}), {len(params)} sampled avatars")
    print(f"{'backend':10s}" + "".join(f"{s:>18d}" for s in sizes))
    for b, d in detail.items():
        print(f"{b:10s}" + "".join(f"{d[str(s)]['p50_ms']:9.2f} /{d[str(s)]['p95_ms']:7.2f}" for s in sizes))
    for k, v in ratios.items():
        print(f"{k:16s}" + "  ".join(f"{s}: {r}x" for s, r in v.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
