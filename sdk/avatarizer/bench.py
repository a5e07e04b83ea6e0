"""``avatarizer bench``: per-stage and end-to-end latency of the runtime pipeline.

Frames: with ``--video PATH`` (a video file, or a folder whose ``*.mp4``
clips are read in name order; ``AVATARIZER_BENCH_VIDEO`` is the default for
it), consecutive frames of those clips, centre-cropped and resized to
512×512; the project's own numbers use the talking-face clips in
``../shared/data/video``. Without it, built-in frames that need nothing
beyond the installed package: the bundled sample portrait
(:func:`avatarizer.imageio.sample_photo`, 512×512) moved by a small
synthetic head motion (shift, roll and scale changing from frame to frame),
so the video tracker follows a moving face. The pipeline runs as a live app
would (``mode="video"`` by default: tracking, one face) and draws a 256-pixel
avatar per frame.

For every frame, in the same loop (so ratios survive a noisy machine):

* ``baseline.landmarks_only``: MediaPipe Face Mesh alone, with the settings
  of the align stage (same mode, same max faces: image mode searches for at
  least ``align.IMAGE_MESH_FACES``; iris refinement) and called as the align
  stage calls it (``align._face_landmarks``: the graph without
  ``process()``'s per-call overhead, ~0.2 ms; before session 34 the
  baseline paid it and ``vs_landmarks`` read 6-9% low);
* the pipeline: ``align``, ``encode`` and ``map_decode`` (the face stage: the
  network, or the auto-artist's whole fit booked as ``encode`` when no models
  are shipped), ``hair``, ``merge`` (with the video tracker), and ``render``
  (native renderer, 256 px, transparent). In video mode the face and hair
  networks run inline only on a person's first frame; while the identity
  warms up (until the tracker holds ``TrackerOptions.identity_frames``
  estimates, 15 by default) a worker computes them as soon as it is free,
  or the frame itself when none came for ``--identity-every-ms`` of stream
  time (``avatarizer.pipeline.identity``), and these start-up frames come before
  the ``--warmup`` frames and are reported apart as ``startup``; then at
  most every ``--identity-every-ms``, on the worker (it also rests for
  ``TrackerOptions.identity_duty``: at most a quarter of one core by
  default), so they show up in ``encode`` and
  ``hair`` only on frames that ran them inline; ``--identity-every-ms 0``
  runs them on every frame, as before;
* ``end_to_end``: wall time of ``Avatarizer.run(frame, t, render_size=256)``,
  from the input frame to the rendered avatar (input validation included; the
  pipeline's render stage draws it, as it would for any caller); ``fps`` is ``1000 / mean(end_to_end ms)``,
  the sequential throughput on one stream. Model loading, the identity's
  start-up and the warm-up frames are outside the timed loop, so they are not
  in ``fps``; ``startup`` (video mode) gives the start-up frames' own
  distribution (``frames``, the frames in it, and p50/p95/p99/max ms).

Then, in video mode, the frames of the clip the timed frames begin in,
from its first frame, once more through :meth:`Avatarizer.stream` (a new
stream; the landmarks of the next frame are found on a worker thread while
this one is merged and drawn), each avatar drawn at 256 px by the consumer,
timed by the loop's rules (from its own identity warm and ``--warmup``
frames more, not before the loop's first timed frame; no re-warm, no frame
without a fresh avatar) up to as many frames as the loop timed or the clip's
end: ``stream.fps`` (timed frames over the sum of their intervals),
``stream.vs_sequential`` (over ``end_to_end_alone.fps``, below) and ``stream.latency`` (a
frame taken from the source → its avatar drawn; a frame may wait for the
worker); all three null where the clip ended before any frame could be
timed. ``null`` in image mode.

With ``--live`` (video mode), the sequential loop once more on a new stream,
its frames handed over on a 30 fps clock as a camera's would be (a frame
later than its slot starts at once) and the landmarks-only baseline in the
same slot: ``live.end_to_end`` (with ``hitch_ratio`` and ``vs_landmarks``)
and ``live.baseline.landmarks_only``; ``live.late`` counts the timed frames
handed over more than 5 ms after their slot (the last slot's frame and
baseline ran over; the frames that may be timed run on a clock of their
own from one slot after the start-up's, a warm-up's or a re-warm's last
frame, and ``live.left_out`` counts as ``left_out`` does). Back to back, the loop above leaves the cores no idle time,
so the identity worker's jobs (its process shares the cores) take frames'
time (in the loop above partly the baseline's, which is timed apart:
``end_to_end_alone`` has none); at a camera's rate they fit between frames.
``live`` is ``null`` without it. Which worker computed the identity
(``TrackerOptions.identity_worker``, ``--identity-worker``: a process by
default, or a thread; a thread where no process starts) is printed to
stderr with the answers it gave.

Every distribution reports ``p50_ms``, ``p95_ms``, ``p99_ms`` and ``max_ms``
(the worst frame), and ``n``, the number of frames in it (with ``n`` from
2 to 100, ``p99_ms`` lies between the two slowest frames, a share
``1.01 - 0.01 n`` of the way to the slowest: a single stall is nearly all of
it at 5 frames, 41% at 60, 1% at 100, and from 101 frames it is gone from
``p99_ms`` and ``hitch_ratio`` and shows in ``max_ms`` only, so hitch ratios
of different ``--frames`` do not compare; ``startup`` has fewer as a rule).
A stage's distribution is over the timed frames it ran on (``n``; in video
mode ``encode``, ``map_decode`` and ``hair`` run on a frame only when it
computes the identity itself): ``n`` 0 and ``null`` times when it ran on
none (a frame without it once counted as 0 ms; the stage itself was
``null`` until session 75, where the contract is an object with
``p50_ms`` and ``p95_ms``).
Stalls are what a live viewer sees, so ``end_to_end`` adds
``hitch_ratio`` (``p99_ms / p50_ms``), ``max_frame`` (the index of the worst
timed frame) and ``vs_landmarks`` (its ``p50_ms`` over the baseline's
``p50_ms``, both from this run). In video mode ``end_to_end_alone`` is the
same loop once more on a new stream without the baseline between its frames
(``p50_ms`` ... ``max_ms``, ``n``, ``fps``, ``hitch_ratio``; null in image
mode): the baseline's ~3 ms a frame gave the identity worker's jobs time in
which no frame was timed, so the interleaved loop's tail and ``fps`` read
better than back-to-back frames (:func:`_alone`).

Frames after the warm-up that show no face (the pipeline's cheap path) or,
in video mode, a new person's identity warming up (and the ``--warmup``
frames after it) are left out of every distribution and counted in
``left_out`` (``no_face``, ``rewarm``); the loop reads on for more (up to
twice the frames it would need without them; fewer timed frames than
``--frames`` are noted on stderr and show in ``n``). Where the clips of a
folder change (and where they loop back to the first of several) the stream
starts anew (``Avatarizer.reset()``, as a live app does for a new source),
so no clip's start-up is timed and no avatar is of the clip before; a
start-up a cut interrupted starts again, and ``startup`` is the one that
completed.
``end_to_end.max_frame_source`` is the worst frame's index in the frames as
read (clips in name order, looped). No frame timed is an error that says
why.

``--json`` prints exactly::

    {"device": ..., "providers": [...], "precision": ..., "input": [h, w],
     "stages": {"align": {"p50_ms", "p95_ms", "p99_ms", "max_ms", "n"}, "encode",
                "map_decode", "hair", "render"},
     "end_to_end": {"p50_ms", "p95_ms", "p99_ms", "max_ms", "n", "fps", "hitch_ratio",
                    "max_frame", "max_frame_source", "vs_landmarks"},
     "baseline": {"landmarks_only": {"p50_ms", "p95_ms", "p99_ms", "max_ms", "n"}},
     "left_out": {"no_face", "rewarm"},
     "startup": {"frames", "p50_ms", "p95_ms", "p99_ms", "max_ms", "n"} or null,
     "end_to_end_alone": {"p50_ms", "p95_ms", "p99_ms", "max_ms", "n", "fps", "hitch_ratio"} or null,
     "stream": {"fps", "vs_sequential", "latency": {"p50_ms", ...}} (each may be null) or null,
     "live": {"fps_in", "late", "end_to_end": {"p50_ms", ..., "hitch_ratio", "vs_landmarks"},
              "baseline": {"landmarks_only": {...}}, "left_out": {...}} or null}

(the contract in DESIGN.md); which estimator ran is printed to stderr.
"""
from __future__ import annotations

import argparse
import gc
import json
import math
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

INPUT = 512
RENDER = 256
#: video mode: the frames' stream time runs at this rate
FPS = 30.0
#: video mode: at most this many frames are read for the identity's start-up
#: (a long ``--identity-every-ms`` asked for millions)
MAX_STARTUP_FRAMES = 400
STAGE_KEYS = ("align", "encode", "map_decode", "hair", "render")


def startup_frames(tracker) -> int:
    """Video mode: the most frames read for the identity's start-up (at
    most :data:`MAX_STARTUP_FRAMES`): twice ``identity_frames`` estimates of
    at most ``identity_every_ms`` of stream time each (capped before the
    product: ``--identity-every-ms 1e308`` overflowed into a traceback)."""
    per = max(1, math.ceil(min(float(tracker.identity_every_ms), 1e9) * FPS / 1000.0))
    return min(2 * tracker.identity_frames * per, MAX_STARTUP_FRAMES)


def video_source(path: str | os.PathLike | None = None) -> Path | None:
    """Where the clips come from: ``path``, else ``$AVATARIZER_BENCH_VIDEO``, else None (built-in frames).
    ValueError for an empty ``path`` (``Path("")`` is the working folder: ``--video ''`` timed its clips)."""
    if path is not None and not os.fspath(path):
        raise ValueError("the video path is empty: give a video file or a folder of .mp4 clips")
    env = os.environ.get("AVATARIZER_BENCH_VIDEO")
    chosen = path if path is not None else env or None
    return Path(chosen) if chosen is not None else None


def pin_cpus(count: int = 1) -> list[int] | None:
    """Pins the whole process to its first ``count`` CPUs (of those it may
    use): every thread it has now (Linux: each of ``/proc/self/task``), and
    so every thread started later. ``os.sched_setaffinity(0, ...)`` alone
    pins the calling thread only: a pool started before it (OpenBLAS's, at
    numpy's import) kept every core (a review, session 72). Returns the CPUs,
    or None where the system cannot pin."""
    try:
        cpus = set(sorted(os.sched_getaffinity(0))[:max(1, count)])
        os.sched_setaffinity(0, cpus)  # (first this thread: the threads it starts from now on inherit it)
    except (AttributeError, OSError):
        return None
    from .pipeline.cores import _tasks  # (this process's thread ids, /proc/self/task)

    done: set[int] = set()
    for _ in range(3):  # (again for threads started while the list was read, by threads not yet pinned)
        tasks = _tasks() - done
        if not tasks:
            break
        for tid in tasks:
            try:
                os.sched_setaffinity(tid, cpus)
            except OSError:  # (a thread that ended meanwhile)
                pass
        done |= tasks
    return sorted(cpus)


def _square(frame: np.ndarray, size: int) -> np.ndarray:
    import cv2

    h, w = frame.shape[:2]
    s = min(h, w)
    y0, x0 = (h - s) // 2, (w - s) // 2
    crop = frame[y0:y0 + s, x0:x0 + s]
    interp = cv2.INTER_AREA if s > size else cv2.INTER_LINEAR
    return np.ascontiguousarray(cv2.resize(crop, (size, size), interpolation=interp))


#: distinct frames a benchmark holds: more are the same frames again (a loop, as
#: a short clip is), so that memory stays under 0.8 GB at 512 px however many
#: frames are timed (``--frames`` up to 100,000 held 79 GB)
MAX_DISTINCT_FRAMES = 1000


def _looped(frames: list, n: int) -> list:
    """``frames`` repeated (the same arrays, no copies) to ``n``."""
    return [frames[i % len(frames)] for i in range(n)]


def builtin_frames(n: int, size: int = INPUT) -> list[np.ndarray]:
    """``n`` frames of the bundled portrait with a smooth synthetic head
    motion (at most :data:`MAX_DISTINCT_FRAMES` distinct ones, then again)."""
    import cv2

    from .imageio import sample_photo

    base = _square(sample_photo(), size)
    c = size / 2.0
    frames = []
    for i in range(min(n, MAX_DISTINCT_FRAMES)):
        t = 2.0 * np.pi * i
        angle = 3.0 * np.sin(t / 50.0)                  # degrees of roll
        scale = 1.0 + 0.03 * np.sin(t / 70.0)
        m = cv2.getRotationMatrix2D((c, c), angle, scale)
        m[0, 2] += 0.02 * size * np.sin(t / 40.0)       # a few pixels of sway
        m[1, 2] += 0.015 * size * np.sin(t / 55.0)
        frames.append(cv2.warpAffine(base, m, (size, size), flags=cv2.INTER_LINEAR,
                                     borderMode=cv2.BORDER_REFLECT_101))
    return _looped(frames, n)


def bench_frames(n: int, size: int = INPUT, video: str | os.PathLike | None = None
                 ) -> tuple[list[np.ndarray], str]:
    """``n`` RGB frames of ``size``×``size`` and a description of where they came from.

    ``video`` (or ``$AVATARIZER_BENCH_VIDEO``): a video file or a folder of
    ``*.mp4`` clips; ``ValueError`` when it holds no decodable frame. Without
    it: :func:`builtin_frames`. At most :data:`MAX_DISTINCT_FRAMES` distinct
    frames are read; the clips loop to ``n``.
    """
    frames, source, _ = bench_clips(n, size, video)
    return frames, source


def bench_clips(n: int, size: int = INPUT, video: str | os.PathLike | None = None
                ) -> tuple[list[np.ndarray], str, list[int]]:
    """:func:`bench_frames` and the indices (ascending, over 0) of the frames
    that start another clip, or the first clip again where they loop: the
    cuts, where a live app would start a new stream (none for the built-in
    frames, nor for a single clip looping: one person throughout)."""
    import cv2

    from . import videoio

    source = video_source(video)
    if source is None:
        return builtin_frames(n, size), (f"{n} built-in frames (the bundled sample portrait with synthetic "
                                         "head motion; --video PATH for real clips)"), []
    if source.is_file():
        kind = videoio.still_image(source)
        if kind is not None:  # (timed as a frozen frame looped: as `video` and `live` refuse it)
            raise ValueError(f"{source} is a still image ({kind}), not a video: the frames timed are a video's "
                             "(or, without a video, the built-in ones)")
        clips = [source]
    elif source.is_dir():
        clips = videoio.video_files(source, (".mp4",))
        if not clips:
            raise ValueError(f"no .mp4 clips in the folder {source}")
    elif source.exists():
        raise ValueError(f"{source} is not a regular file or a folder (a pipe or a device cannot be timed)")
    else:
        raise ValueError(f"no such video file or folder: {source}")
    frames: list[np.ndarray] = []
    used, starts = [], []
    distinct = min(n, MAX_DISTINCT_FRAMES)
    for clip in clips:
        cap = videoio.capture(clip)
        got = 0
        starts.append(len(frames))
        while len(frames) < distinct:
            ok, bgr = cap.read()
            if not ok:
                break
            frames.append(_square(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), size))
            got += 1
        cap.release()
        if got:
            used.append(clip.name)
        if len(frames) >= distinct:
            break
    if not frames:
        raise ValueError(f"could not decode any video frame from {source}")
    looped = "" if len(frames) >= n else f", looped from {len(frames)}"
    heads = sorted(set(starts) - {len(frames)})  # (a clip that gave no frame starts none)
    if len(heads) == 1:
        heads = []  # one clip: where it loops it is the same person again (a reset there kept a short clip cold)
    cuts = [k * len(frames) + h for k in range(-(-n // len(frames))) for h in heads]
    return _looped(frames, n), f"{n} frames of {', '.join(used)} ({source}{looped})", [c for c in cuts if 0 < c < n]


def _pct(values) -> dict:
    """p50, p95, p99 (linear interpolation between frames) and the worst frame, in ms;
    ``n``: the number of frames."""
    v = np.asarray(values, np.float64)
    p50, p95, p99 = np.percentile(v, (50, 95, 99))
    return {"p50_ms": round(float(p50), 3), "p95_ms": round(float(p95), 3),
            "p99_ms": round(float(p99), 3), "max_ms": round(float(v.max()), 3), "n": int(v.size)}


#: a stage that ran on no timed frame (the contract's object, with no times)
_NOT_RUN = {"p50_ms": None, "p95_ms": None, "p99_ms": None, "max_ms": None, "n": 0}


def _p99_note(n: int) -> str | None:
    """What ``p99_ms`` (and the hitch ratio) is of ``n`` frames where it is
    not a tail: linear interpolation between the two slowest frames (numpy)
    puts it ``1.01 - 0.01 n`` of the way to the slowest for n of 2 to 100;
    from 101 frames one stall is in ``max_ms`` only."""
    if not 2 <= n <= 100:
        return None
    share = 1.01 - 0.01 * n
    return (f"note: {n} timed frames (<= 100): p99 lies between the two slowest frames, {share:.0%} of the way to "
            "the slowest (a single stall weighs that much in p99 and the hitch ratio; from 101 frames it shows "
            "in max only): hitch ratios of other --frames do not compare")


def _ratio(a: float, b: float) -> float | None:
    return round(a / b, 3) if b > 0 else None


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def describe_device(device: str) -> str:
    if device == "cuda":
        try:
            from .runtime.tensorrt import cuda_status

            ok, what = cuda_status()
            if ok:
                return f"cuda: {what}"
        except Exception:  # pragma: no cover - best effort description
            pass
        return "cuda"
    total = os.cpu_count()
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else total
    # (the cores this process may run on: under taskset or a container's CPU set it said all the machine's)
    return f"cpu: {_cpu_name()} ({usable} logical cores" + (f" of {total})" if usable != total else ")")


def run(frames: int = 100, warmup: int = 10, mode: str = "video", estimator: str = "auto",
        device: str = "auto", backend: str = "onnxruntime", precision: str = "auto",
        log=None, video: str | os.PathLike | None = None, identity_every_ms: float | None = None,
        identity_worker: str | None = None, live: bool = False, worker_cpu="auto") -> dict:
    """Runs the benchmark; returns the DESIGN.md ``bench --json`` object
    (``live``: also the frames paced at :data:`LIVE_FPS`, video mode only;
    ``worker_cpu``: ``TrackerOptions.worker_cpu``)."""
    from .align import AlignOptions, face_mesh_graph
    from .api import Avatarizer

    if frames < 1 or warmup < 0:
        raise ValueError("frames must be >= 1 and warmup >= 0")
    from .video import TrackerOptions

    if live and mode != "video":
        raise ValueError("live pacing is for video mode (a camera's frames); image mode has no frame rate")
    if mode != "video" and (identity_every_ms is not None or identity_worker is not None
                            or worker_cpu != "auto"):
        # (accepted and ignored: image mode has no identity worker; --live was refused already)
        raise ValueError("--identity-every-ms, --identity-worker and --worker-cpu are for video mode (its identity "
                         "worker); image mode runs every network on every frame")
    tracker = TrackerOptions(worker_cpu=worker_cpu,
                             **{k: v for k, v in (("identity_every_ms", identity_every_ms),
                                                  ("identity_worker", identity_worker)) if v is not None})
    # video: the identity's start-up (until the tracker's identity is warm:
    # identity_frames estimates, the first inline, the others from the
    # worker as soon as it is free, or inline once the last is
    # identity_every_ms old, so at most ~identity_every_ms of stream time
    # each) comes first, then the warm-up frames; only the frames after both
    # are timed
    spare = startup_frames(tracker) if mode == "video" else 0
    # (frames left out of the timing, below: the loop reads on for as many as it needs, up to these; the
    # list holds the same arrays again, so its length costs no memory)
    images, source, cuts = bench_clips(2 * (frames + warmup + spare) + MAX_STARTUP_FRAMES, video=video)
    cuts = set(cuts) if mode == "video" else set()
    if log:
        log(f"frames: {frames} timed, after {'the start-up and ' if spare else ''}{warmup} warm-up, of {source}")  # (the source's
        # count is what is read ahead for them: "frames: 766 built-in frames" for --frames 3 read as the timed)
    av = Avatarizer(mode=mode, estimator=estimator, device=device, backend=backend, precision=precision,
                    tracker=tracker)
    # the baseline: the align stage's own FaceMesh (its settings; image mode searches for at least
    # IMAGE_MESH_FACES faces) called as the align stage calls it (align._face_landmarks)
    mesh = face_mesh_graph(AlignOptions(mode=mode, max_faces=av.max_faces))
    if log:
        log(f"estimator: {av.estimator} ({av.estimator_reason}); mode {mode}; "
            f"providers {av.providers}; precision {av.precision}")
    stages = {k: [] for k in STAGE_KEYS}
    e2e, base, merge, index = [], [], [], []
    gate = _Gate(mode, warmup)
    gc.collect()  # (each phase starts with no garbage of what came before: see _live)
    try:
        for i, img in enumerate(images):
            if len(e2e) == frames:
                break
            if i in cuts:  # another clip: a new stream, as a live app starts one for a new source
                av.reset()
                gate.cut()
            ts = i * 1000.0 / FPS if mode == "video" else None
            state, (t0, t1), (t2, t3) = _pair(av, mesh, img, ts, i)
            if not gate.timed(i, state, (t3 - t2) * 1e3):
                continue
            base.append((t1 - t0) * 1e3)
            e2e.append((t3 - t2) * 1e3)
            index.append(i)
            for k in STAGE_KEYS:
                if k in state.timings:  # (a stage that did not run on this frame: not a 0 ms frame)
                    stages[k].append(state.timings[k])
            merge.append(state.timings.get("merge", 0.0))
        if not e2e:
            raise ValueError(gate.nothing_timed(len(images)))
        startup, left_out = gate.startup, gate.left_out
        alone = _alone(av, images, cuts, warmup, len(e2e)) if mode == "video" else None
        # the stream: the clip the timed frames begin in, from its first frame (a new stream) up to the next
        # cut (or the frames' end), not timed before the loop's first timed frame (_stream)
        seg = max([0] + [c for c in cuts if c <= index[0]])
        stop = min([len(images)] + [c for c in cuts if c > index[0]])
        streamed = _stream(av, images[seg:stop], index[0] - seg, warmup, len(e2e)) if mode == "video" else None
        if log and streamed is not None and (streamed["latency"] or {}).get("n", 0) < len(e2e):
            log(f"note: the stream phase timed {(streamed['latency'] or {}).get('n', 0)} of {len(e2e)} frames: "
                f"its clip (frames {seg}-{stop - 1}) ended first (its own start-up and warm-up, or frames without "
                "a fresh avatar, left out)")
        paced = _live(av, mesh, images, frames, warmup, cuts) if live else None
        ident = av._pipeline.by_name.get("identity")
        if log and ident is not None:
            log(f"identity worker: {ident.worker}; answers adopted: {ident.answers}; "
                + (f"its CPU {ident.cores.worker_cpu}, the frames' {sorted(ident.cores.frame_cpus)} during "
                   f"{ident.cores.pinned_jobs} jobs" if ident.cores is not None else "no CPU of its own"))
    finally:
        mesh.close()
        out_device = av.device
        providers, prec = list(av.providers), av.precision
        av.close()
    if log and left_out["no_face"]:
        log(f"note: {left_out['no_face']} frames without a face were left out of the timing")
    if log and left_out["rewarm"]:
        log(f"note: {left_out['rewarm']} frames of a new person's identity start-up (after a cut) were left out")
    if log and len(e2e) < frames:
        log(f"note: {len(e2e)} of {frames} frames timed: the frames read ran out (the identity's start-up took "
            f"{len(startup)} frames; {sum(left_out.values())} were left out)")
    if log:
        log(f"merge{' (incl. video tracker)' if mode == 'video' else ''}: p50 {np.percentile(merge, 50):.2f} ms")
    end, landmarks = _pct(e2e), _pct(base)
    return {
        "device": describe_device(out_device),
        "providers": providers,
        "precision": prec,
        "input": [INPUT, INPUT],
        "stages": {k: _pct(v) if v else dict(_NOT_RUN) for k, v in stages.items()},
        "end_to_end": {**end, "fps": round(1000.0 / float(np.mean(e2e)), 2),
                       "hitch_ratio": _ratio(end["p99_ms"], end["p50_ms"]),
                       "max_frame": int(np.argmax(e2e)),
                       "max_frame_source": int(index[int(np.argmax(e2e))]),
                       "vs_landmarks": _ratio(end["p50_ms"], landmarks["p50_ms"])},
        "baseline": {"landmarks_only": landmarks},
        "left_out": dict(left_out),
        "startup": {"frames": len(startup), **_pct(startup)} if startup else None,
        "end_to_end_alone": alone,
        "stream": None if streamed is None else {
            "fps": streamed["fps"],
            # (against the loop without the baseline: the one that paced the worker's jobs alike)
            "vs_sequential": None if streamed["fps"] is None else _ratio(
                streamed["fps"], alone["fps"] if alone is not None else 1000.0 / float(np.mean(e2e))),
            "latency": streamed["latency"]},
        "live": paced,
    }


#: ``--live``: the frames are handed over at a camera's rate
LIVE_FPS = 30.0
#: ``--live``: a timed frame handed over this much after its slot counts as ``late``
LATE_S = 0.005


def _live(av, mesh, images, frames: int, warmup: int, cuts=frozenset(), fps: float = LIVE_FPS) -> dict:
    """The sequential loop once more on a new stream, with each frame handed
    over at its time on a ``fps`` clock (a camera's; a frame later than its
    slot starts at once) instead of as soon as the last one is done, and the
    landmarks-only baseline in the same slot: what a live app sees, where the
    cores are idle between frames and the identity worker can use them. The
    identity's start-up and ``warmup`` frames come first, untimed.

    It starts with a full garbage collection, as the other phases do: left to
    Python, the cyclic collector's first full pass after the stream phase
    (~100,000 objects the libraries hold, 30-45 ms) fell on one live frame
    (session 24: worst frame 40-60 ms in 3 of 3 runs, none with it)."""
    e2e, base, late = [], [], 0
    gate = _Gate("video", warmup)
    stream = _new_stream(av, images, cuts, gate, lambda: len(e2e) == frames)
    start, first = time.perf_counter(), 0  # the clock: frame i's slot is start + (i - first) / fps
    could = False
    for i, img in stream:
        can = gate.lead is not None and i >= gate.lead and not gate.rewarming
        if can and not could:  # the frames that may be timed on a clock of their own, one slot after the
            start, first = time.perf_counter() + 1.0 / fps, i  # last untimed one (a slow start-up is not caught up)
        could = can
        wait = start + (i - first) / fps - time.perf_counter()
        if wait > 0:
            time.sleep(wait)
        ts = i * 1000.0 / fps
        state, (t0, t1), (t2, t3) = _pair(av, mesh, img, ts, i)
        if not gate.timed(i, state, (t3 - t2) * 1e3):
            continue
        if wait < -LATE_S:  # (only a timed frame is counted late)
            late += 1
        base.append((t1 - t0) * 1e3)
        e2e.append((t3 - t2) * 1e3)
    if not e2e:
        raise ValueError("live: " + gate.nothing_timed(len(images)))
    left_out = gate.left_out
    end, landmarks = _pct(e2e), _pct(base)
    return {"fps_in": fps, "late": late,
            "end_to_end": {**end, "hitch_ratio": _ratio(end["p99_ms"], end["p50_ms"]),
                           "vs_landmarks": _ratio(end["p50_ms"], landmarks["p50_ms"])},
            "baseline": {"landmarks_only": landmarks}, "left_out": left_out}


class _Gate:
    """Which frames of a benchmark loop are timed: in video mode none before
    the identity is warm (the start-up, whose times are kept in ``startup``,
    those of the last stream only where a cut came during it), then not the
    ``warmup`` frames after it; no frame without a face (``left_out["no_face"]``),
    none of a new person's start-up after a cut or a switch the tracker found,
    nor the ``warmup`` frames after that (``left_out["rewarm"]``)."""

    def __init__(self, mode: str, warmup: int):
        self.mode, self.warmup = mode, warmup
        self.lead = warmup if mode != "video" else None  # the first frame that may be timed (None: starting)
        self.startup: list[float] = []
        self.left_out = {"no_face": 0, "rewarm": 0}
        self.rewarming = False
        self.lead_rewarm = False  # the frames before ``lead`` are a re-warm's warm-up

    def cut(self) -> None:
        """A new stream (``Avatarizer.reset()``) from the next frame on."""
        if self.lead is None:
            self.startup = []  # the start-up begins again: only the one that completes is reported
        else:
            self.rewarming = self.lead_rewarm = True  # (also a cut during the warm-up frames: counted)

    def timed(self, i: int, state, ms: float) -> bool:
        if self.lead is None:  # the first start-up
            self.startup.append(ms)
            if state.tracked is not None and state.tracked.warm:
                self.lead = i + 1 + self.warmup
            return False
        if i < self.lead:
            if self.lead_rewarm:  # the warm-up after a re-warm: counted with it
                self.left_out["rewarm"] += 1
            return False
        why = _left_out(state, self.mode)
        if why == "no_face":
            self.left_out[why] += 1
            return False
        if why == "rewarm":
            self.rewarming = True
        elif self.rewarming:  # warm again: then its warm-up frames, as after the first start-up
            self.rewarming = False
            self.lead, self.lead_rewarm = i + 1 + self.warmup, True  # (this frame too, as after the start-up)
            why = "rewarm"
        if why is not None:
            self.left_out["rewarm"] += 1
            return False
        return True

    def nothing_timed(self, read: int) -> str:
        """Why no frame was timed, in a sentence."""
        if self.lead is None:
            return (f"no frame was timed: the tracker's identity did not warm up in the {len(self.startup)} "
                    "frames read for it since the last cut (no face in them, or clips too short?)")
        if self.left_out["no_face"] and not self.left_out["rewarm"]:
            return f"no frame was timed: none of the {self.left_out['no_face']} frames after the warm-up showed a face"
        return (f"no frame was timed in the {read} frames read: {self.left_out['no_face']} without a face and "
                f"{self.left_out['rewarm']} of new persons' start-ups after cuts (clips too short?)")


def _left_out(state, mode: str) -> str | None:
    """Why a frame after the warm-up is not timed, or None: ``"no_face"``
    (no face found: the pipeline's cheap path, which would flatter its
    times), ``"rewarm"`` (video: a new person's identity warming up, after a
    cut or a switch the tracker found: the networks run inline there)."""
    if not state.faces:
        return "no_face"
    if mode == "video" and (state.tracked is None or not state.tracked.warm):
        return "rewarm"
    return None


def _landmarks_only(mesh, img):
    """The baseline's work on one frame: ``mesh``'s landmarks as the align
    stage finds them (``align._face_landmarks``: the graph called without
    ``process()``'s per-call overhead, the landmark lists as bytes)."""
    from .align import _face_landmarks

    return _face_landmarks(mesh, img)


def _pair(av, mesh, img, ts, i: int):
    """One frame through the landmarks-only baseline and the pipeline (its
    own render stage drawing at :data:`RENDER` px), in turn first (odd
    frames the pipeline), so that neither always finds the frame in a warm
    cache the other left: ``(state, (baseline start, end), (pipeline start,
    end))`` in ``perf_counter`` seconds."""
    if i % 2:
        t2 = time.perf_counter()
        state = av.run(img, ts, render_size=RENDER)
        t3 = t0 = time.perf_counter()
        _landmarks_only(mesh, img)
        t1 = time.perf_counter()
    else:
        t0 = time.perf_counter()
        _landmarks_only(mesh, img)
        t1 = t2 = time.perf_counter()
        state = av.run(img, ts, render_size=RENDER)
        t3 = time.perf_counter()
    return state, (t0, t1), (t2, t3)


def _new_stream(av, images, cuts, gate: "_Gate", done):
    """A benchmark phase on a new stream: ``av`` reset now, then a full
    garbage collection (see :func:`_live`; before the caller starts its
    clock), and an iterator of ``(i, image)`` of ``images`` that resets it
    again at each of ``cuts`` (``gate`` told), until ``done()``."""
    av.reset()
    gc.collect()

    def frames():
        for i, img in enumerate(images):
            if done():
                return
            if i in cuts:
                av.reset()
                gate.cut()
            yield i, img

    return frames()


def _alone(av, images, cuts, warmup: int, frames: int) -> dict | None:
    """The sequential loop again on a new stream (video mode), its frames
    back to back without the landmarks-only baseline between them, timed by
    the loop's rules (:class:`_Gate`) up to ``frames``: the interleaved
    baseline (~35% of that loop's time) gave the identity worker's jobs time
    in which no frame was timed, so the loop's tail (``p99_ms``,
    ``hitch_ratio``) and ``fps`` read better than an app's back-to-back
    frames (a review, session 72: p99 higher without the baseline in 7 of 7
    pairs). ``{p50_ms, p95_ms, p99_ms, max_ms, n, fps, hitch_ratio}``; None
    where no frame was timed."""
    gate = _Gate("video", warmup)
    e2e: list[float] = []
    for i, img in _new_stream(av, images, cuts, gate, lambda: len(e2e) == frames):
        t0 = time.perf_counter()
        state = av.run(img, i * 1000.0 / FPS, render_size=RENDER)
        ms = (time.perf_counter() - t0) * 1e3
        if gate.timed(i, state, ms):
            e2e.append(ms)
    if not e2e:
        return None
    d = _pct(e2e)
    return {**d, "fps": round(1000.0 / float(np.mean(e2e)), 2), "hitch_ratio": _ratio(d["p99_ms"], d["p50_ms"])}


def _stream(av, images, first: int, warmup: int, frames: int) -> dict:
    """``images`` (one clip's frames, from its first) through
    :meth:`Avatarizer.stream` (a new stream: ``reset``), each avatar drawn at
    256 px by the consumer as the sequential loop's render stage draws it,
    the frames timed by the loop's own rules (:class:`_Gate`: not before the
    stream's own identity is warm and ``warmup`` frames more, nor a re-warm,
    nor a frame without a fresh avatar: none, or a stale one) and not before
    frame ``first`` (where the loop's timing began); up to ``frames`` timed
    frames. ``fps``: the timed frames over the sum of their own intervals
    (from the frame before to their avatar drawn), ``latency``: a timed frame
    taken from the source → its avatar drawn (both None where no frame was
    timed)."""
    from types import SimpleNamespace

    av.reset()
    gc.collect()
    taken: dict[int, float] = {}

    def source():
        for i, img in enumerate(images):
            taken[i] = time.perf_counter()
            yield img

    gate = _Gate("video", warmup)
    latency, total = [], 0.0
    prev = time.perf_counter()
    for i, avatar in av.stream(source(), fps=FPS):
        if avatar is not None:
            avatar.render(RENDER)
        done = time.perf_counter()
        fresh = avatar is not None and not avatar.stale
        # (the consumer merged frames 0..i before this yield: the tracker is this frame's)
        seen = SimpleNamespace(faces=[0] if fresh else [], tracked=SimpleNamespace(warm=av._pipeline.stream.tracker.warm))
        if gate.timed(i, seen, 0.0) and i >= first:
            latency.append((done - taken[i]) * 1e3)
            total += done - prev
        prev = done
        if len(latency) == frames:
            break
    if not latency:
        return {"fps": None, "latency": None}
    return {"fps": round(len(latency) / max(total, 1e-9), 2), "latency": _pct(latency)}


def add_arguments(ap: argparse.ArgumentParser) -> None:
    from .checks import float_arg, int_arg

    ap.add_argument("--json", action="store_true",
                    help="print one JSON object: per-stage and end-to-end p50/p95/p99/max ms, the "
                         "landmarks-only baseline in the same run, the stream's throughput and latency")
    ap.add_argument("--frames", type=int_arg(1, 100_000), default=100, help="timed frames (default 100)")
    ap.add_argument("--warmup", type=int_arg(0, 100_000), default=10,
                    help="untimed frames first, after the identity's start-up in video mode (default 10)")
    ap.add_argument("--mode", choices=("video", "image"), default="video",
                    help="pipeline mode (default video: tracking, as a live app)")
    ap.add_argument("--estimator", choices=("auto", "hybrid", "model", "artist"), default="auto")
    ap.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    ap.add_argument("--backend", choices=("onnxruntime", "tensorrt"), default="onnxruntime",
                    help="onnxruntime (default): the shipped ONNX files; tensorrt: TensorRT engines, which do not "
                         "ship (avatarizer-export tensorrt builds them on an NVIDIA GPU, after make models)")
    ap.add_argument("--precision", choices=("auto", "fp32", "fp16", "int8"), default="auto",
                    help="auto (default): int8 on the CPU, fp16 on a GPU. The package ships int8 and fp16 files "
                         "only; fp32 is a build artefact of make models (runs/export/, for the API's models_dir)")
    ap.add_argument("--video", metavar="PATH", default=None,
                    help="a video file or a folder of .mp4 clips to take frames from (default: "
                         "$AVATARIZER_BENCH_VIDEO, else built-in frames of the bundled portrait)")
    ap.add_argument("--identity-every-ms", type=float_arg(lambda v: v >= 0, "expected a number of milliseconds >= 0, got {text!r:.60}"), default=None, metavar="MS",
                    help="video mode: run the face and hair networks at most this often, on a worker "
                         "(default 200; 0 runs them inline on every frame)")
    ap.add_argument("--identity-worker", choices=("process", "thread", "inline"), default=None,
                    help="video mode: where the identity worker computes (default process: a child process "
                         "of its own; thread: a thread of this one; inline: no worker, the due frames "
                         "compute the refreshes, as avatarizer video does for files)")
    ap.add_argument("--worker-cpu", type=_cpu_arg, default="auto", metavar="auto|none|N",
                    help="video mode: the CPU the identity worker process runs on, which the frames keep off "
                         "while it computes (default auto: the last of this process's; none: any; "
                         "TrackerOptions.worker_cpu)")
    ap.add_argument("--live", action="store_true",
                    help=f"video mode: also time the frames handed over at {LIVE_FPS:g} fps, as a camera's "
                         f"(JSON 'live'; adds frames / {LIVE_FPS:g} seconds and more)")


def _cpu_arg(text: str):
    """``--worker-cpu``: 'auto', 'none' or a CPU number."""
    if text in ("auto", "none"):
        return None if text == "none" else text
    if text.isdigit() and int(text) < 1 << 16:
        return int(text)
    raise argparse.ArgumentTypeError(f"expected auto, none or a CPU number, got {text!r:.40}")


def command(args) -> int:
    os.environ.setdefault("GLOG_minloglevel", "2")
    log = lambda m: print(m, file=sys.stderr)  # noqa: E731
    res = run(frames=args.frames, warmup=args.warmup, mode=args.mode, estimator=args.estimator,
              device=args.device, backend=args.backend, precision=args.precision, log=log,
              video=args.video, identity_every_ms=args.identity_every_ms,
              identity_worker=args.identity_worker, live=args.live, worker_cpu=args.worker_cpu)
    if args.json:
        print(json.dumps(res))
        return 0
    print(f"device     {res['device']}")
    print(f"providers  {res['providers'] or '(none: no network runs)'}   precision {res['precision']}")
    print(f"input      {res['input'][0]}×{res['input'][1]}, render {RENDER} px")
    cols = ("p50_ms", "p95_ms", "p99_ms", "max_ms")
    e = res["end_to_end"]
    print(f"{'':12s} {'p50 ms':>8s} {'p95 ms':>8s} {'p99 ms':>8s} {'max ms':>8s}")
    row = lambda name, v: print(f"{name:12s} " + " ".join(f"{v[c]:8.2f}" for c in cols))  # noqa: E731
    for k, v in res["stages"].items():
        if not v["n"]:
            print(f"{k:12s} (did not run on a timed frame)")
        else:
            row(k, v)
            if v["n"] < e["n"]:
                print(f"{'':12s} (on {v['n']} of the {e['n']} timed frames)")
    row("end_to_end", e)
    b = res["baseline"]["landmarks_only"]
    row("landmarks", b)
    if res.get("startup"):
        row("startup", res["startup"])
        print(f"startup: the first {res['startup']['frames']} frames of a stream, until its identity is warm "
              "(not in end_to_end)")
    note = _p99_note(e["n"])
    if note:
        print(note)
    print(f"end to end: {e['fps']:.1f} fps (model loading and warm-up excluded); "
          f"hitch ratio p99/p50 {e['hitch_ratio']}; worst frame #{e['max_frame']} "
          f"(frame {e['max_frame_source']} of the clips as read); "
          f"p50 {e['vs_landmarks']}x MediaPipe landmarks alone (same run)")
    al = res.get("end_to_end_alone")
    if al is not None:
        row("e2e alone", al)
        print(f"end to end without the baseline between frames: {al['fps']:.1f} fps, hitch ratio p99/p50 "
              f"{al['hitch_ratio']}")
    st = res["stream"]
    if st is not None:
        if st["latency"] is None:
            print("stream(): no frame timed (its clip ended first: its own start-up and warm-up, or frames "
                  "without a fresh avatar, left out)")
        else:
            row("stream lat.", st["latency"])
            print(f"stream(): {st['fps']:.1f} fps, {st['vs_sequential']}x the sequential loop "
                  "(landmarks of the next frame on a worker thread)")
    lv = res.get("live")
    if lv is not None:
        row("live", lv["end_to_end"])
        row("live lmarks", lv["baseline"]["landmarks_only"])
        print(f"live ({lv['fps_in']:g} fps, frames handed over on a camera's clock): hitch ratio "
              f"{lv['end_to_end']['hitch_ratio']}; p50 {lv['end_to_end']['vs_landmarks']}x landmarks alone; "
              f"{lv['late']} frames late")
    return 0


def main(argv=None, prog: str = "avatarizer bench") -> int:
    """``python -m avatarizer.bench`` and ``benchmarks/e2e.py``: as the CLI's ``bench`` command,
    a plain-sentence error (a missing ``--video``, no CUDA) is one line on stderr and exit
    status 1; a usage error (a bad ``--frames``, ``--warmup`` or ``--identity-every-ms``) is
    argparse's, status 2."""
    ap = argparse.ArgumentParser(prog=prog, description=__doc__.split("\n\n")[0])
    add_arguments(ap)
    args = ap.parse_args(argv)
    from .errors import AvatarizerError

    try:
        return command(args)
    except (ValueError, AvatarizerError, RuntimeError) as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        where = f" ({exc.filename})" if getattr(exc, "filename", None) else ""
        print(f"{prog}: error: {exc.strerror or exc}{where}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
