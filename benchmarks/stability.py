"""Temporal stability of video mode: jitter with and without smoothing, and the lag it adds.

On each clip in ``../shared/data/video/*.mp4`` (or the files given), every
frame goes once through the video-mode pipeline (MediaPipe tracking + the
face estimator on that frame, its networks run on every frame: the *raw*
per-frame avatar), and the recorded per-frame
estimates are replayed through :class:`avatarizer.video.Tracker` in three
configurations (the same computation the pipeline's merge stage does):

* ``raw``: the per-frame estimate itself (what image mode gives frame by frame);
* ``tracked_unsmoothed``: stable identity (median + slow refresh) and live
  expressions, One Euro filter off (``smoothing=None``);
* ``tracked``: the default (identity + One Euro on expressions and transform).

Metrics, per configuration, averaged over frames and clips:

* ``identity_jitter``: mean |Δ| from frame to frame of the identity
  parameters (everything but the expression features), in the normalised
  [-1, 1] units networks see (so colours, widths and coordinates count alike);
* ``expression_jitter``: the same over the expression features (eyelids,
  irises, brows, lips);
* ``transform_jitter_px``: mean |Δ| of the overlay transform's translation, px;
* ``mouth_lag_ms``: the lag of the avatar's mouth opening behind the raw
  landmark signal (inner-lip gap), from the peak of their cross-correlation
  over ±8 frames (0 = in step), and ``mouth_corr``, the correlation at that lag.

Usage::

    python benchmarks/stability.py [--frames N] [--json] [--plot out/stability.png] [CLIP ...]

The plot shows, for the first clip, the mouth signal (raw landmarks, raw
avatar, tracked) and a jitter summary.
"""
from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import json
import os
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if importlib.util.find_spec("avatarizer") is None:  # not installed: use the checkout
    sys.path.insert(0, str(ROOT / "sdk"))
os.environ.setdefault("GLOG_minloglevel", "2")

from avatarizer import expressions as X  # noqa: E402
from avatarizer import schema  # noqa: E402
from avatarizer.filters import Smoothing  # noqa: E402
from avatarizer.video import Tracker, TrackerOptions  # noqa: E402
from avatarizer.videoio import capture  # noqa: E402
from avatarizer.checks import int_arg  # noqa: E402

SHARED_VIDEO = ROOT.parent / "shared" / "data" / "video"
EXPRESSION_FEATURES = ("eye_l_upper", "eye_l_lower", "eye_l_crease", "eye_r_upper", "eye_r_lower",
                       "eye_r_crease", "brow_l", "brow_r", "lip_upper_outer", "lip_lower_outer",
                       "lip_inner_upper", "lip_inner_lower")


def _expression_mask() -> np.ndarray:
    m = np.zeros(schema.PARAM_COUNT, bool)
    for f in EXPRESSION_FEATURES:
        m[schema.FEATURES[f].points] = True
    for side in "lr":
        m[schema.index(f"iris_{side}.cx")] = m[schema.index(f"iris_{side}.cy")] = True
    m[schema.index("teeth.show")] = True
    return m


EXPR_MASK = _expression_mask()
IDENT_MASK = ~EXPR_MASK


def read_clip(path: Path, max_frames: int | None = None):
    """(frames as RGB uint8, timestamps in ms) of a video file."""
    import cv2

    cap = capture(path)
    if not cap.isOpened():
        raise ValueError(f"could not open {path} as a video")
    fps = cap.get(cv2.CAP_PROP_FPS) or 30.0
    frames = []
    while max_frames is None or len(frames) < max_frames:
        ok, bgr = cap.read()
        if not ok:
            break
        frames.append(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
    cap.release()
    return frames, [i * 1000.0 / fps for i in range(len(frames))]


def record(frames, times, estimator: str = "auto"):
    """Per-frame raw estimates of face 0 from the video-mode pipeline: a list of
    dicts (raw params, canonical, landmarks, transform, yaw, pitch, t); only ``t`` where no face."""
    from avatarizer.api import Avatarizer

    out = []
    # the identity networks on every frame, inline: each frame's own estimate (by default video mode
    # reuses the identity worker's last answer between refreshes, and st.params would be that answer:
    # the "raw" configuration changed on 14 of 120 frames, a review)
    every = TrackerOptions(identity_every_ms=0, identity_worker="inline")
    with Avatarizer(mode="video", estimator=estimator, tracker=every) as av:
        for frame, t in zip(frames, times):
            st = av.run(frame, t)
            if not st.faces:
                out.append({"t": t})
                continue
            f = st.faces[0]
            out.append({"raw": st.params[0].copy(), "canonical": f.canonical.copy(),
                        "landmarks": f.aligned.landmarks.copy(), "transform": f.transform.copy(), "yaw": f.yaw, "pitch": f.pitch, "t": t})
    return out


def replay(rec, tracker: Tracker | None):
    """(params per frame, transforms per frame) through ``tracker`` (None = raw)."""
    params, tfs = [], []
    for r in rec:
        if "raw" not in r:
            tr = tracker.miss(r["t"]) if tracker is not None else None
            params.append(None if tr is None else tr.params)
            tfs.append(None if tr is None else tr.transform)
            continue
        if tracker is None:
            params.append(r["raw"])
            tfs.append(r["transform"])
            continue
        tr = tracker.update(r["raw"], r["canonical"], r["transform"], r["t"], r["yaw"], r["pitch"],
                            landmarks=r["landmarks"])  # (as the video pipeline: expressions read pose-free)
        params.append(tr.params)
        tfs.append(tr.transform)
    return params, tfs


def _nan_as_null(v):
    """``v`` (nested dicts, lists, numbers) with every non-finite float as None."""
    if isinstance(v, dict):
        return {k: _nan_as_null(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_nan_as_null(x) for x in v]
    if isinstance(v, float) and not np.isfinite(v):
        return None
    return v


def jitter(params, tfs, skip: int = 0):
    """Mean |Δ| per frame pair (identity, expression, transform px); frames
    without a face break the chain."""
    di, de, dt = [], [], []
    for i in range(max(1, skip + 1), len(params)):
        a, b = params[i - 1], params[i]
        if a is None or b is None:
            continue
        d = np.abs(schema.normalize(b) - schema.normalize(a))
        di.append(d[IDENT_MASK].mean())
        de.append(d[EXPR_MASK].mean())
        dt.append(np.abs(tfs[i][:, 2] - tfs[i - 1][:, 2]).mean())
    f = lambda v: float(np.mean(v)) if v else float("nan")  # noqa: E731
    return f(di), f(de), f(dt)


def mouth_lag(raw_signal: np.ndarray, out_signal: np.ndarray, dt_ms: float, max_lag: int = 8):
    """(lag in ms, correlation at the best whole-frame lag) of ``out_signal``
    behind ``raw_signal``; the lag between frames from a parabola through the
    correlations at the best lag and its two neighbours (whole frames alone
    gave 0 or 33-40 ms, and their mean over clips looked finer than it was)."""
    ok = np.isfinite(raw_signal) & np.isfinite(out_signal)
    a = raw_signal[ok] - raw_signal[ok].mean()
    b = out_signal[ok] - out_signal[ok].mean()
    if len(a) < 2 * max_lag + 2 or a.std() < 1e-9 or b.std() < 1e-9:
        return float("nan"), float("nan")
    corr = {}
    for lag in range(-max_lag, max_lag + 1):
        x, y = (a[:len(a) - lag], b[lag:]) if lag >= 0 else (a[-lag:], b[:len(b) + lag])
        corr[lag] = float(np.corrcoef(x, y)[0, 1])
    best = max(corr, key=lambda k: (corr[k], -abs(k)))
    shift = 0.0
    if -max_lag < best < max_lag:
        lo, mid, hi = corr[best - 1], corr[best], corr[best + 1]
        curve = lo - 2.0 * mid + hi
        if curve < 0:
            shift = float(np.clip(0.5 * (lo - hi) / curve, -0.5, 0.5))
    return (best + shift) * dt_ms, corr[best]


CONFIGS = {
    "raw": None,
    "tracked_unsmoothed": dict(smoothing=None),
    "tracked": dict(smoothing=Smoothing()),
}


def evaluate(rec, times, configs=CONFIGS, skip: int = 15):
    """Metrics per configuration for one recorded clip (see the module doc).
    The first ``skip`` frames (the identity warm-up) are left out of jitter."""
    dt_ms = float(np.median(np.diff(times))) if len(times) > 1 else 40.0
    raw_mouth = np.array([X.measure(r["canonical"], landmarks=r["landmarks"])[X.SIGNALS.index("mouth_open")]
                          if "raw" in r else np.nan
                          for r in rec])
    res, series = {}, {"landmarks": raw_mouth}
    for name, cfg in configs.items():
        tracker = None if cfg is None else Tracker(TrackerOptions(), cfg["smoothing"])
        params, tfs = replay(rec, tracker)
        ji, je, jt = jitter(params, tfs, skip)
        mouth = np.array([X.inner_lip_gap(p) if p is not None else np.nan for p in params])
        lag, corr = mouth_lag(raw_mouth, mouth, dt_ms)
        res[name] = {"identity_jitter": ji, "expression_jitter": je, "transform_jitter_px": jt,
                     "mouth_lag_ms": lag, "mouth_corr": corr}
        series[name] = mouth
    return res, series


def _plot(path: Path, clip: str, times, series, summary):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(1, 2, figsize=(12, 4), gridspec_kw={"width_ratios": [2, 1]})
    t = np.asarray(times) / 1000.0
    z = lambda v: (v - np.nanmean(v)) / (np.nanstd(v) + 1e-9)  # noqa: E731
    for name, style in (("landmarks", "k-"), ("raw", "c-"), ("tracked_unsmoothed", "b--"), ("tracked", "r-")):
        ax[0].plot(t, z(series[name]), style, lw=1.2 if name == "tracked" else 0.8, label=name)
    ax[0].set_title(f"mouth opening, standardised ({clip})")
    ax[0].set_xlabel("s")
    ax[0].legend(fontsize=8)
    names = list(summary)
    x = np.arange(len(names))
    ax[1].bar(x - 0.2, [summary[n]["identity_jitter"] for n in names], 0.4, label="identity")
    ax[1].bar(x + 0.2, [summary[n]["expression_jitter"] for n in names], 0.4, label="expression")
    ax[1].set_xticks(x, names, fontsize=8)
    ax[1].set_title("mean |Δ| per frame, all clips (normalised)")
    ax[1].legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("clips", nargs="*", help=f"video files (default: {SHARED_VIDEO}/*.mp4)")
    ap.add_argument("--frames", type=int_arg(1, 100_000), default=150, help="frames per clip (default 150)")
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    ap.add_argument("--plot", default=str(ROOT / "out" / "stability.png"), help="PNG plot path ('' for none)")
    ap.add_argument("--estimator", default="auto", choices=("auto", "model", "artist"))
    args = ap.parse_args(argv)
    clips = [Path(c) for c in args.clips] or sorted(SHARED_VIDEO.glob("*.mp4"))
    if not clips:
        print(f"no clips: give video files or put some in {SHARED_VIDEO}", file=sys.stderr)
        return 2
    missing = [str(c) for c in clips if not c.is_file()]
    if missing:
        ap.error(f"not a video file: {', '.join(missing)}")
    per_clip, first = {}, None
    for clip in clips:
        try:
            frames, times = read_clip(clip, args.frames)
        except (OSError, ValueError) as exc:  # a file OpenCV cannot read: one line, not a traceback
            ap.exit(1, f"{ap.prog}: error: {clip}: {exc}\n")
        rec = record(frames, times, args.estimator)
        res, series = evaluate(rec, times)
        res["frames"] = len(frames)
        res["faces"] = int(sum("raw" in r for r in rec))
        per_clip[clip.name] = res
        if first is None:
            first = (clip.name, times, series, res)
        if not args.json:
            print(f"{clip.name}: {len(frames)} frames, face in {res['faces']}", file=sys.stderr)
    names = list(CONFIGS)
    keys = ("identity_jitter", "expression_jitter", "transform_jitter_px", "mouth_lag_ms", "mouth_corr")
    mean = {n: {k: float(np.nanmean([per_clip[c][n][k] for c in per_clip])) for k in keys} for n in names}
    out = {"clips": per_clip, "mean": mean, "smoothing": dataclasses.asdict(Smoothing()),
           "frames_per_clip": args.frames}
    if args.plot and first is not None:
        _plot(Path(args.plot), first[0], first[1], first[2], mean)
        out["plot"] = args.plot
    if args.json:  # (a measure too few frames give, NaN, is null: JSON has no NaN)
        print(json.dumps(_nan_as_null(out), indent=1, allow_nan=False))
    else:
        print(f"{'config':20s} {'identity':>9s} {'expression':>10s} {'transform px':>12s} "
              f"{'mouth lag ms':>12s} {'corr':>6s}")
        for n in names:
            m = mean[n]
            print(f"{n:20s} {m['identity_jitter']:9.4f} {m['expression_jitter']:10.4f} "
                  f"{m['transform_jitter_px']:12.2f} {m['mouth_lag_ms']:12.1f} {m['mouth_corr']:6.3f}")
        if args.plot:
            print(f"plot: {args.plot}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
