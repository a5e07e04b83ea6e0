"""ONNX Runtime CPU latency of one model role in fp32, fp16 and int8, batch 1 and 8.

All precisions and batch sizes are timed in the same run, interleaved call by
call (round robin), so the ratios against fp32 hold on a noisy shared
machine. Each (precision, batch) gets ``--warmup`` untimed calls first; the
report has p50, p95, p99, the worst call and n in milliseconds per call, ms per image, and p50
ratios against fp32 at the same batch (and of int8 against fp16, the shipped pair).

Models come from a models folder (default ``sdk/avatarizer/models``, verified
through its manifest), or, with ``--standin``, from the test suite's
stand-in networks (random weights, the real shapes: crop 3×128×128 → 483
face parameters) exported on the fly into a temporary folder. Stand-in
numbers say how the toolchain's files run, not how the trained models will.

    python benchmarks/onnx_cpu.py --standin
    python benchmarks/onnx_cpu.py --standin --json
    python benchmarks/onnx_cpu.py --models sdk/avatarizer/models --role encoder --threads 1

Sessions use ``intra_op_num_threads=--threads`` (default 1, the SDK's
real-time setting).
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if importlib.util.find_spec("avatarizer") is None:  # not installed: use the checkout
    sys.path.insert(0, str(ROOT / "sdk"))
    sys.path.insert(0, str(ROOT / "export"))

from avatarizer.bench import _cpu_name  # noqa: E402
from avatarizer.checks import int_arg  # noqa: E402
from avatarizer.errors import ModelError  # noqa: E402
from avatarizer.models import DEFAULT_FOLDER, ROLES, Manifest, Session  # noqa: E402

PRECISIONS = ("fp32", "fp16", "int8")


def _standin_folder(tmp: Path) -> tuple[Path, str]:
    """Exports the stand-in image→face models (from tests/test_export.py) into ``tmp``."""
    spec = importlib.util.spec_from_file_location("_avz_test_export", ROOT / "tests" / "test_export.py")
    if spec is None or spec.loader is None:
        raise SystemExit("--standin needs tests/test_export.py from the checkout")
    def absent(name: str) -> bool:
        try:
            return importlib.util.find_spec(name) is None
        except (ImportError, ValueError):  # (a module set to None in sys.modules: ValueError)
            return True

    missing = [m for m in ("torch", "onnx", "pytest") if absent(m)]
    if missing:  # (pytest's importorskip raised Skipped, a BaseException: a traceback, exit 1)
        print(f"onnx_cpu.py: --standin needs {', '.join(missing)} (pip install -e '.[export,dev]')",
              file=sys.stderr)
        raise SystemExit(2)
    mod = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(mod)  # needs torch, onnx and pytest (the [export,dev] extras)
    except BaseException as exc:  # (pytest's Skipped where one of them cannot be imported after all)
        if isinstance(exc, (KeyboardInterrupt, SystemExit)):
            raise
        print(f"onnx_cpu.py: --standin could not load its stand-in models: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    mod.build_standin_models(tmp)
    return tmp, "image_to_face"


def _inputs(sess: Session, batch: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    feed = {}
    for info in sess.inputs:
        shape = [batch if not isinstance(d, int) or d < 0 else d for d in info.shape]
        feed[info.name] = rng.uniform(-1, 1, shape).astype(info.dtype or np.float32)
    return feed


def run(folder: Path, role: str, batches: list[int], runs: int, warmup: int, threads: int) -> dict:
    manifest = Manifest.load(folder)
    sessions = {}
    for p in PRECISIONS:
        try:
            entry = manifest.find(role, p)
        except Exception:
            continue
        sessions[p] = Session(entry.path, name=entry.name, description=entry.description, device="cpu",
                              intra_op_num_threads=threads)
    if not sessions:
        raise SystemExit(f"no ONNX model for role {role!r} in {folder}")
    rng = np.random.default_rng(0)
    batches = list(dict.fromkeys(batches))  # (a batch size given twice was timed twice into one row: n 2x runs)
    jobs = [(p, b, sessions[p], _inputs(sessions[p], b, rng)) for p in sessions for b in batches]
    for _, _, sess, feed in jobs:
        for _ in range(warmup):
            sess.run(feed)
    times: dict[tuple[str, int], list[float]] = {(p, b): [] for p, b, _, _ in jobs}
    for _ in range(runs):
        for p, b, sess, feed in jobs:
            t0 = time.perf_counter()
            sess.run(feed)
            times[(p, b)].append((time.perf_counter() - t0) * 1000.0)
    results: dict[str, dict] = {}
    for (p, b), ms in times.items():
        arr = np.asarray(ms)
        results.setdefault(p, {})[str(b)] = {
            "p50_ms": round(float(np.percentile(arr, 50)), 3),
            "p95_ms": round(float(np.percentile(arr, 95)), 3),
            "p99_ms": round(float(np.percentile(arr, 99)), 3),
            "max_ms": round(float(arr.max()), 3),
            "n": int(arr.size),
            "p50_ms_per_image": round(float(np.percentile(arr, 50)) / b, 3),
        }
    ratios: dict[str, dict[str, float | None]] = {}
    for p in results:  # null: no fp32 model to compare with (the shipped set is fp16 and int8)
        if p != "fp32":
            ratios[p] = {b: round(results[p][b]["p50_ms"] / results["fp32"][b]["p50_ms"], 3)
                         if "fp32" in results else None for b in results[p]}
    # the shipped folder has no fp32 file: int8 against fp16, timed in the same round robin
    vs_fp16 = {b: round(results["int8"][b]["p50_ms"] / results["fp16"][b]["p50_ms"], 3)
               for b in results["int8"]} if "int8" in results and "fp16" in results else None
    first = next(iter(sessions.values()))
    return {
        "device": "cpu",
        "cpu": _cpu_name(),  # (the model name: platform.processor() is empty on Linux, "x86_64" was written)
        "cores_visible": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "providers": first.providers,
        "threads": threads,
        "role": role,
        "models": {p: s.name for p, s in sessions.items()},
        "input": {i.name: list(i.shape) for i in first.inputs},
        "runs": runs,
        "warmup": warmup,
        "results": results,
        "p50_ratio_vs_fp32": ratios,
        "p50_ratio_int8_vs_fp16": vs_fp16,
    }


_positive_int = int_arg(1)  # argparse type= (avatarizer.checks)


_non_negative_int = int_arg(0)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", type=Path, default=DEFAULT_FOLDER, help="models folder (with manifest.json)")
    ap.add_argument("--standin", action="store_true",
                    help="export the test stand-in networks to a temporary folder and time those")
    ap.add_argument("--role", choices=sorted(ROLES), default="image_to_face")
    ap.add_argument("--batches", type=_positive_int, nargs="+", default=[1, 8])
    ap.add_argument("--runs", type=_positive_int, default=200, help="timed calls per (precision, batch)")
    ap.add_argument("--warmup", type=_non_negative_int, default=5)
    # (at most 256: 100,000 threads hung, taking memory, where a session of 64 starts in seconds)
    ap.add_argument("--threads", type=int_arg(0, 256, out_of_range="expected 0..256 threads, got {v}"), default=1,
                    help="intra_op_num_threads (0: ONNX Runtime decides)")
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="avz-standin-") as tmp:
        if args.standin:
            folder, role = _standin_folder(Path(tmp))
            source = "stand-in networks (random weights; tests/test_export.py)"
        else:
            folder, role, source = args.models, args.role, str(args.models)
        try:
            report = run(folder, role, args.batches, args.runs, args.warmup, args.threads)
        except ModelError as exc:
            print(f"onnx_cpu: {exc}\n(no trained models here: try --standin)", file=sys.stderr)
            return 2
    report["source"] = source
    if args.json:
        print(json.dumps(report))
        return 0
    print(f"{report['role']} from {source}; ONNX Runtime {report['providers']}, "
          f"{report['threads']} thread(s), {report['runs']} runs after {report['warmup']} warm-up")
    print(f"{'precision':<10}{'batch':>6}{'p50 ms':>10}{'p95 ms':>10}{'ms/img':>10}{'vs fp32':>9}")
    for p, by_batch in report["results"].items():
        for b, r in by_batch.items():
            ratio = 1.0 if p == "fp32" else report["p50_ratio_vs_fp32"].get(p, {}).get(b)
            shown = "n/a" if ratio is None else f"{ratio:.2f}"
            print(f"{p:<10}{b:>6}{r['p50_ms']:>10.2f}{r['p95_ms']:>10.2f}{r['p50_ms_per_image']:>10.2f}"
                  f"{shown:>9}")
    if "fp32" not in report["results"]:
        print("vs fp32: n/a, no fp32 model in this folder")
    if report["p50_ratio_int8_vs_fp16"]:
        print("same run, int8 / fp16 p50: " + ", ".join(f"batch {b} {r:.2f}"
                                                         for b, r in report["p50_ratio_int8_vs_fp16"].items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
