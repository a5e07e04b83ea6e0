"""The SDK's GPU path measured against its CPU path, on real photos.

    python benchmarks/gpu.py --photos DIR [--limit 32] [--calls 200] [--warmup 20] [--json] [--out FILE]

Needs an NVIDIA GPU and ``onnxruntime-gpu`` (README "GPU"); ``make test-gpu``
runs it after the GPU tests. Everything below is measured in this one run:

1. environment: the GPU and driver (:func:`avatarizer.runtime.gpu_info`),
   ONNX Runtime's version and providers, TensorRT's status, and what
   :func:`avatarizer.runtime.preload_gpu_libraries` said.
2. models: every ONNX file of the shipped manifest on ``--device`` (default
   ``cuda``) and on the CPU, fed the same real aligned crops of ``--photos``
   (the SDK's own alignment and normalisation): drift per output (mean |Δ|,
   :func:`avatarizer.runtime.compare_outputs`' gate metrics, and max |Δ|), and latency at batch 1 and 8 (p50/p95/p99/max after
   ``--warmup`` untimed calls; device and CPU calls interleaved).
3. avatars: ``Avatarizer(device=...)`` against ``Avatarizer(device="cpu")``
   for each shipped precision, image mode, on every photo: mean |Δ| of the
   normalised parameter vector (gate: ``param_l1`` <= 0.01), mean |Δ| of
   the 256 px renders, attribute decisions that differ (gate: <= 2%), and the latency of
   ``from_frame`` on each.
4. ``device="auto"``: the providers each model got, or the error.

Exit status: 0 when every gate passed, 1 when one failed, 2 when the device
cannot be used (the report says why).
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if importlib.util.find_spec("avatarizer") is None:  # not installed: use the checkout
    sys.path.insert(0, str(ROOT / "sdk"))

PARAM_L1 = 0.01  # the image model's shipping gate (gate_report.json): mean |Δ| of the normalised parameters
FLIP_RATE = 0.02  # the attribute regressor's int8 gate: decisions that may differ
PHOTO_SUFFIXES = {".jpg", ".jpeg", ".png"}


def interleaved(fns: dict, calls: int, warmup: int) -> dict:
    """``{name: p50/p95/p99/max}`` of each callable in ``fns``, called in turn
    (round robin, each round in the order after the last's: none always
    first, as a cache or a clock ramp would favour it; a review, session 72)
    ``warmup`` untimed then ``calls`` timed times."""
    from avatarizer.bench import _pct

    times: dict = {k: [] for k in fns}
    order = list(fns.items())
    for i in range(warmup + calls):
        k = i % len(order)
        for key, fn in order[k:] + order[:k]:
            t0 = time.perf_counter()
            fn()
            if i >= warmup:
                times[key].append((time.perf_counter() - t0) * 1e3)
    return {k: _pct(v) for k, v in times.items()}


def environment(device: str) -> dict:
    import onnxruntime as ort

    from avatarizer import runtime

    env = {"python": platform.python_version(), "onnxruntime": ort.__version__,
           "onnxruntime_providers": ort.get_available_providers(), "numpy": np.__version__}
    ok, why = runtime.cuda_status()
    env["cuda"] = {"usable": ok, "status": why, **runtime.gpu_info()}
    env["tensorrt"] = dict(zip(("usable", "status"), runtime.tensorrt_status()))
    if device != "cpu":
        env["preload_gpu_libraries"] = runtime.preload_gpu_libraries()
    try:
        import mediapipe

        env["mediapipe"] = mediapipe.__version__
    except Exception as exc:  # reported, not fatal: the model part needs no landmarks of its own
        env["mediapipe"] = f"not importable: {exc!r}"
    return env


def load_photos(folder: Path, limit: int) -> list[tuple[str, np.ndarray]]:
    from avatarizer.imageio import load_image

    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in PHOTO_SUFFIXES and p.is_file())[:limit]
    if not files:
        raise SystemExit(f"no photos (.jpg/.png) in {folder}")
    return [(p.name, load_image(p)) for p in files]


def crops(photos) -> tuple[list[str], np.ndarray]:
    """The canonical 128 px crops the SDK cuts (first face of each photo)."""
    from avatarizer.align import FaceAligner

    names, out = [], []
    with FaceAligner(mode="image", max_faces=1, segmentation=False) as aligner:
        for name, img in photos:
            faces = aligner.detect(img)
            if faces:
                names.append(name)
                out.append(faces[0].crop(128))
    if not out:
        raise SystemExit("MediaPipe found no face in any photo")
    return names, np.stack(out)


def model_inputs(entry, crops128: np.ndarray) -> np.ndarray:
    from avatarizer.pipeline.face import resize_aa
    from avatarizer.runtime import normalise_images

    spec = entry.inputs[0]
    size = int(spec["shape"][-1])
    norm = spec.get("normalisation") or entry.description.get("inputs", [{}])[0].get("normalisation", {})
    return normalise_images(resize_aa(crops128, size), norm)


def check_models(entries, device: str, crops128: np.ndarray, calls: int, warmup: int) -> dict:
    from avatarizer.bench import _ratio
    from avatarizer.runtime import Session, compare_outputs

    report = {}
    for entry in entries:
        x = model_inputs(entry, crops128)
        cpu = Session.from_entry(entry, device="cpu")
        try:
            dev = Session.from_entry(entry, device=device)
        except Exception as exc:
            report[entry.name] = {"error": f"{type(exc).__name__}: {exc}"}
            continue
        feed = dev.input_names[0]
        want = dev.inputs[0].dtype or np.dtype(np.float32)
        ref = cpu.run({feed: x.astype(want)})
        got = dev.run({feed: x.astype(want)})
        gate = compare_outputs(ref, got, entry)
        drift = {}
        for k in ref:
            diff = np.abs(np.asarray(ref[k], np.float64) - np.asarray(got[k], np.float64))
            drift[k] = {"mean_abs": float(diff.mean()), "max_abs": float(diff.max())}
        timings = {}
        for batch in (1, 8):
            xb = {feed: np.resize(x, (batch,) + x.shape[1:]).astype(want)}
            t = interleaved({"device": lambda: dev.run(xb), "cpu": lambda: cpu.run(xb)}, calls, warmup)
            timings[f"batch{batch}"] = {**t, "cpu_over_device_p50": _ratio(t["cpu"]["p50_ms"], t["device"]["p50_ms"])}
        report[entry.name] = {"file": entry.file, "precision": entry.precision, "providers": dev.providers,
                              "inputs": int(len(x)), "gate": gate, "drift": drift, "passed": gate["passed"],
                              "latency": timings}
    return report


def check_auto(entries) -> dict:
    from avatarizer.runtime import Session

    out = {}
    for entry in entries:
        try:
            out[entry.name] = {"providers": Session.from_entry(entry, device="auto").providers}
        except Exception as exc:
            out[entry.name] = {"error": f"{type(exc).__name__}: {exc}"}
    return out


def check_avatars(entries, device: str, photos, calls: int, warmup: int) -> dict:
    from avatarizer import Avatarizer, schema

    precisions = sorted({e.precision for e in entries if e.role == "image_to_face"})
    report = {}
    for precision in precisions:
        try:
            gpu = Avatarizer(device=device, precision=precision)
        except Exception as exc:
            report[precision] = {"error": f"{type(exc).__name__}: {exc}"}
            continue
        cpu = Avatarizer(device="cpu", precision=precision)
        l1, pix, differ, worst, n, decisions = [], [], [], ("", 0.0), 0, 0
        for name, img in photos:
            a, b = cpu.from_frame(img), gpu.from_frame(img)
            if (a is None) != (b is None):
                differ.append({"photo": name, "what": "face found on one device only"})
                continue
            if a is None:
                continue
            n += 1
            d = float(np.mean(np.abs(schema.normalize(a.params) - schema.normalize(b.params))))
            l1.append(d)
            if d > worst[1]:
                worst = (name, d)
            pix.append(float(np.mean(np.abs(a.render(256).astype(np.float64) - b.render(256).astype(np.float64)))))
            ta, tb = a.attributes or {}, b.attributes or {}
            for key in sorted(set(ta) | set(tb)):
                decisions += 1
                va = ta.get(key, {}).get("value") if isinstance(ta.get(key), dict) else ta.get(key)
                vb = tb.get(key, {}).get("value") if isinstance(tb.get(key), dict) else tb.get(key)
                if va != vb and not (isinstance(va, float) and isinstance(vb, float) and abs(va - vb) < 0.5):
                    differ.append({"photo": name, "attribute": key, "cpu": va, "device": vb})
        frame = photos[0][1]
        timed = interleaved({"device": lambda: gpu.from_frame(frame), "cpu": lambda: cpu.from_frame(frame)},
                            calls, warmup)
        providers = list(gpu.providers)
        report[precision] = {
            "faces": n, "param_l1_mean": float(np.mean(l1)) if l1 else None,
            "param_l1_max": float(np.max(l1)) if l1 else None, "worst_photo": worst[0],
            "render_mean_abs_diff_256px": float(np.mean(pix)) if pix else None,
            "gate_param_l1": PARAM_L1, "decisions": decisions, "gate_flip_rate": FLIP_RATE,
            "passed": bool(l1) and max(l1) <= PARAM_L1 and len(differ) <= FLIP_RATE * max(decisions, 1),
            "decisions_that_differ": differ, "providers": providers,
            "from_frame": timed}
        gpu.close()
        cpu.close()
    return report


def main(argv=None) -> int:
    from avatarizer.checks import int_arg

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--photos", type=Path, default=None,
                    help="folder of portrait photos (default: the bundled sample portrait)")
    ap.add_argument("--limit", type=int_arg(1, 100_000), default=32, help="most photos used (default 32)")
    ap.add_argument("--device", default="cuda", choices=("cuda", "cpu", "auto"),
                    help="the device under test (cpu: a dry run of this script)")
    ap.add_argument("--calls", type=int_arg(1, 100_000), default=200, help="timed calls per model and batch (default 200)")
    ap.add_argument("--warmup", type=int_arg(0, 100_000), default=20, help="untimed calls first (default 20; the from_frame "
                    "comparison takes a quarter of it, at least 2: a call there is a whole frame)")
    ap.add_argument("--frames", type=int_arg(1, 100_000), default=50, help="timed from_frame calls per precision (default 50)")
    ap.add_argument("--json", action="store_true", help="print the report as JSON")
    ap.add_argument("--out", type=Path, default=None, help="also write the JSON report here (a new file)")
    args = ap.parse_args(argv)
    # checked before any measurement: a GPU's time is lent by the minute (the report was lost after the run)
    if args.photos is not None and not args.photos.is_dir():
        ap.error(f"--photos {args.photos}: not a folder")
    if args.out is not None and (args.out.exists() or args.out.is_symlink() or not args.out.parent.is_dir()):
        ap.error(f"--out {args.out}: " + ("already exists (a new file is written)" if args.out.exists()
                                          or args.out.is_symlink() else "its folder does not exist"))

    report: dict = {"device_under_test": args.device, "environment": environment(args.device)}
    env = report["environment"]
    if args.device == "cuda" and ("CUDAExecutionProvider" not in env["onnxruntime_providers"]
                                  or not env["cuda"]["usable"]):
        report["error"] = ("no usable CUDA: " + env["cuda"]["status"] + "; onnxruntime providers "
                           + str(env["onnxruntime_providers"]))
        status = 2
    else:
        from avatarizer.imageio import sample_photo
        from avatarizer.runtime import Manifest

        manifest = Manifest.load()  # verified once: every ONNX file the checks below run
        entries = [manifest[n] for n in manifest if manifest[n].kind == "onnx"]
        photos = load_photos(args.photos, args.limit) if args.photos else [("sample", sample_photo())]
        names, c128 = crops(photos)
        report["photos"] = {"given": len(photos), "with_face": len(names)}
        report["models"] = check_models(entries, args.device, c128, args.calls, args.warmup)
        report["avatars"] = check_avatars(entries, args.device, photos, args.frames, max(2, args.warmup // 4))
        report["auto"] = check_auto(entries)
        failed = [k for k, v in {**report["models"], **report["avatars"]}.items() if not v.get("passed")]
        report["failed"] = failed
        status = 1 if failed else 0
    text = json.dumps(report, indent=1, default=str)
    if args.json:  # (printed first: a file that cannot be written after all loses nothing)
        print(text, flush=True)
    if args.out:
        try:
            with open(args.out, "x") as f:  # never replaces a file
                f.write(text + "\n")
        except OSError as exc:
            print(f"gpu.py: could not write {args.out}: {exc}", file=sys.stderr)
            if not args.json:
                print(text)
            status = status or 1
    elif not args.json:  # (--json: the JSON alone on stdout; the summary after it made it unreadable)
        print(f"device {args.device}: {env.get('cuda', {}).get('device', '-')}, onnxruntime {env['onnxruntime']} "
              f"{env['onnxruntime_providers']}")
        if "error" in report:
            print(report["error"])
        for name, m in report.get("models", {}).items():
            if "error" in m:
                print(f"{name}: {m['error']}")
                continue
            lat = m["latency"]
            print(f"{name}: {'passed' if m['passed'] else 'FAILED'} "
                  f"{', '.join(f'{k} {v:.2e}' for k, v in m['gate']['metrics'].items())}; "
                  f"b1 {lat['batch1']['device']['p50_ms']:.3f} ms vs cpu {lat['batch1']['cpu']['p50_ms']:.3f}; "
                  f"b8 {lat['batch8']['device']['p50_ms']:.3f} ms vs cpu {lat['batch8']['cpu']['p50_ms']:.3f}")
        for p, a in report.get("avatars", {}).items():
            if "error" in a:
                print(f"avatars {p}: {a['error']}")
                continue
            print(f"avatars {p}: {'passed' if a['passed'] else 'FAILED'} param_l1 mean {a['param_l1_mean']} "
                  f"max {a['param_l1_max']}; from_frame p50 {a['from_frame']['device']['p50_ms']} ms vs cpu "
                  f"{a['from_frame']['cpu']['p50_ms']} ms; {len(a['decisions_that_differ'])} decisions differ")
    return status


if __name__ == "__main__":
    sys.exit(main())
