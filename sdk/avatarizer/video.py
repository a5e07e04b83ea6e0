"""Video mode: a stable identity, live expressions and a smooth head transform.

:class:`Tracker` turns per-frame estimates (the 629 raw parameters of one
face, as the image pipeline gives them, plus that face's landmarks and
transform) into an avatar that does not flicker:

* **Identity** (face shape, colours, hair, accessories): the element-wise
  median of the raw parameters over the first ``identity_frames`` frames in
  which the head is roughly frontal (``|yaw|, |pitch| <= max_identity_pose``;
  any frame if none is), then refreshed slowly: an exponential moving average
  with weight ``identity_refresh`` per frame (0.02: a time constant of ~50
  frames, 2 s at 25 fps). Categorical parameters (hair style id, glasses
  type, ...) follow the most frequent value of the last
  ``categorical_window`` frames instead of an average.
* **Expressions and pose**: the signals of :mod:`avatarizer.expressions`
  (eye openness, gaze, brows, mouth, smile, yaw, pitch), measured on every
  frame, normalised by their spans and smoothed with a One Euro filter
  (:mod:`avatarizer.filters`), then applied to the identity relative to the
  person's neutral signals (the same median / moving average as the identity).
* **Head transform** (position, scale, roll): the face's canonical → frame
  similarity, decomposed into log-scale, angle and translation (in units of
  the face size) and smoothed with the same filter; ``Avatar.overlay`` draws
  with it.

**Missing faces.** A frame without a face keeps the last avatar for
``grace_ms`` (default 500 ms; marked ``stale``), so a missed detection or a
hand passing by does not blink the avatar away; after that the tracker
returns ``None`` (hide the avatar). The filters restart when the face comes
back (no glide from an old position); the identity is kept for
``reset_ms`` (default 3 s) of absence and estimated afresh after that, in case
somebody else sits down.

The tracker is not thread-safe on its own; :class:`avatarizer.api.Avatarizer`
serialises calls in video mode.
"""
from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass

import numpy as np

from . import expressions as X
from . import schema as S
from .filters import OneEuroFilter, Smoothing

__all__ = ["TrackerOptions", "TrackedFrame", "Tracker", "decompose", "compose"]

#: Head yaw and pitch change more slowly than expressions and MediaPipe reads
#: them with a few degrees of noise: their filter's min_cutoff and beta are
#: scaled by these (chosen with benchmarks/stability.py).
POSE_CUTOFF_SCALE = 0.3
POSE_BETA_SCALE = 0.2

_CATEGORICAL = np.array([k in ("categorical", "flag") for k in S.KINDS])
_CAT_IDX = np.flatnonzero(_CATEGORICAL)


def _modes(rows: np.ndarray) -> np.ndarray:
    """The most frequent value of each column of ``rows`` (n, k), the smallest
    of them on a tie (what ``np.unique(..., return_counts=True)`` and
    ``argmax`` give), for all columns at once: each entry's count is the
    number of equal entries in its column."""
    counts = (rows[:, None, :] == rows[None, :, :]).sum(0)
    return np.where(counts == counts.max(0), rows, np.inf).min(0)


@dataclass(frozen=True)
class TrackerOptions:
    """Options of the video tracker (see the module doc).

    Attributes:
        identity_frames: frames whose median is the identity (>= 1).
        identity_refresh: moving-average weight per frame afterwards, in
            [0, 1] (0 freezes the identity).
        categorical_window: frames of history for categorical parameters.
        max_identity_pose: frames turned further than this (degrees) do not
            count toward the first identity estimate.
        grace_ms: how long the last avatar is kept when the face is lost.
        reset_ms: after this long without a face the identity is forgotten.
        expressions: apply live expressions (eyes, gaze, brows, mouth).
        pose: apply yaw and pitch as deformations.
        identity_lock: False turns the identity estimate off (every frame's
            raw parameters are used as the identity; for comparisons).
        identity_every_ms: once the identity is warm, the face and hair
            networks run at most this often (stream time), on a worker
            thread, and frames reuse their latest answer (no frame waits for
            them; ``avatarizer.pipeline.identity``). 0 runs them inline on
            every frame.
        identity_duty: the most of one CPU core the identity worker may
            take, in (0, 1]: after an answer that took ``d`` seconds of wall
            time it rests ``d * (1 / identity_duty - 1)`` seconds before the
            next (0.25: at least 3 × ``d``), so on a small CPU it does not
            compete with the frames for the cores (and the GIL) most of the
            time. 1 refreshes as soon as ``identity_every_ms`` allows.
    """

    identity_frames: int = 15
    identity_refresh: float = 0.02
    categorical_window: int = 45
    max_identity_pose: float = 25.0
    grace_ms: float = 500.0
    reset_ms: float = 3000.0
    expressions: bool = True
    pose: bool = True
    identity_lock: bool = True
    identity_every_ms: float = 200.0
    identity_duty: float = 0.25

    def __post_init__(self):
        if isinstance(self.identity_frames, bool) or not isinstance(self.identity_frames, int) \
                or self.identity_frames < 1:
            raise ValueError(f"identity_frames must be a positive integer, got {self.identity_frames!r}")
        if not 0.0 <= float(self.identity_refresh) <= 1.0:
            raise ValueError(f"identity_refresh must be in [0, 1], got {self.identity_refresh!r}")
        if isinstance(self.categorical_window, bool) or not isinstance(self.categorical_window, int) \
                or self.categorical_window < 1:
            raise ValueError(f"categorical_window must be a positive integer, got {self.categorical_window!r}")
        d = self.identity_duty
        if isinstance(d, bool) or not isinstance(d, (int, float)) or not (0.0 < d <= 1.0):
            raise ValueError(f"identity_duty must be a number in (0, 1], got {d!r}")
        for name in ("grace_ms", "reset_ms", "max_identity_pose", "identity_every_ms"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not (v >= 0 and math.isfinite(v)):
                raise ValueError(f"{name} must be a finite number >= 0, got {v!r}")


@dataclass
class TrackedFrame:
    """What the tracker gives for one frame."""

    params: np.ndarray          # (629,) float32, valid
    transform: np.ndarray       # (2, 3) canonical → frame pixels, smoothed
    signals: np.ndarray         # expression signals used (filtered)
    raw_signals: np.ndarray     # as measured on this frame
    stale: bool = False         # True when repeated from an earlier frame (face lost)
    warm: bool = False          # True once the identity median is complete


def decompose(transform) -> np.ndarray:
    """(2, 3) similarity → [log scale, angle (rad), tx, ty]."""
    m = np.asarray(transform, np.float64)
    a, b = m[0, 0], m[1, 0]
    return np.array([math.log(max(math.hypot(a, b), 1e-9)), math.atan2(b, a), m[0, 2], m[1, 2]])


def compose(v) -> np.ndarray:
    """Inverse of :func:`decompose`."""
    s = math.exp(v[0])
    c, n = s * math.cos(v[1]), s * math.sin(v[1])
    return np.array([[c, -n, v[2]], [n, c, v[3]]])


class Tracker:
    """Stateful video tracker for one face (see the module doc).

    Args:
        options: :class:`TrackerOptions`.
        smoothing: One Euro knobs for expressions and the transform; ``None``
            turns the filters off (identity estimation stays on).
    """

    def __init__(self, options: TrackerOptions | None = None, smoothing: Smoothing | None = Smoothing()):
        self.options = options or TrackerOptions()
        self.smoothing = smoothing
        n = len(X.SIGNALS)
        pose = [X.SIGNALS.index("yaw"), X.SIGNALS.index("pitch")]
        cut, beta = np.ones(n), np.ones(n)
        cut[pose], beta[pose] = POSE_CUTOFF_SCALE, POSE_BETA_SCALE
        self._sig_filter = OneEuroFilter(n, smoothing, cut, beta) if smoothing else None
        self._tf_filter = OneEuroFilter(4, smoothing) if smoothing else None
        self.reset()

    # ------------------------------------------------------------------ state
    def reset(self) -> None:
        """Forget everything (identity, neutral signals, filters, last output)."""
        self._buf_params: list[np.ndarray] = []
        self._buf_signals: list[np.ndarray] = []
        self._buf_frontal: list[bool] = []
        self._cat_hist: deque = deque(maxlen=self.options.categorical_window)
        self._cat_mode: np.ndarray | None = None  # the most frequent values of _cat_hist (None: recount)
        self.identity: np.ndarray | None = None
        self.neutral: np.ndarray | None = None
        self.warm = False
        self._last: TrackedFrame | None = None
        self._last_seen_ms: float | None = None
        self._scale_ref: float | None = None
        self._prev_angle: float | None = None
        self._reset_filters()

    def _reset_filters(self) -> None:
        if self._sig_filter is not None:
            self._sig_filter.reset()
            self._tf_filter.reset()
        self._prev_angle = None

    # ------------------------------------------------------------------ frames
    def update(self, raw_params, canonical, transform, timestamp_ms: float, yaw: float = 0.0,
               pitch: float = 0.0) -> TrackedFrame:
        """One frame with a face.

        Args:
            raw_params: (629,) this frame's estimate.
            canonical: (478, 2) this frame's canonical landmarks.
            transform: (2, 3) canonical → frame pixels.
            timestamp_ms: the frame's time (increasing).
            yaw, pitch: head pose in degrees.
        """
        raw = S.as_params(raw_params).astype(np.float64)
        t = float(timestamp_ms) / 1000.0
        if self._last_seen_ms is not None and float(timestamp_ms) - self._last_seen_ms > self.options.grace_ms:
            self._reset_filters()  # the face is back after a gap: no glide
        raw_sig = X.measure(canonical, yaw, pitch)
        self._update_identity(raw, raw_sig)
        # expression signals, normalised for the filter
        if self._sig_filter is not None:
            sig = self._sig_filter(raw_sig / X.SPANS, t) * X.SPANS
        else:
            sig = raw_sig.copy()
        o = self.options
        if o.expressions or o.pose:
            params = X.apply(self.identity, sig, self.neutral, expressions=o.expressions, pose=o.pose)
        else:
            params = S.clip(self.identity)
        tf = self._smooth_transform(transform, t)
        out = TrackedFrame(params=params, transform=tf, signals=sig, raw_signals=raw_sig, stale=False,
                           warm=self.warm)
        self._last = out
        self._last_seen_ms = float(timestamp_ms)
        return out

    def miss(self, timestamp_ms: float) -> TrackedFrame | None:
        """A frame without a face: the last avatar (``stale=True``) within the
        grace period, else ``None``."""
        if self._last is None or self._last_seen_ms is None:
            return None
        gone = float(timestamp_ms) - self._last_seen_ms
        if gone <= self.options.grace_ms:
            last = self._last
            return TrackedFrame(params=last.params, transform=last.transform, signals=last.signals,
                                raw_signals=last.raw_signals, stale=True, warm=last.warm)
        if gone > self.options.reset_ms:
            self.reset()
        return None

    # ------------------------------------------------------------------ internals
    def _update_identity(self, raw: np.ndarray, raw_sig: np.ndarray) -> None:
        o = self.options
        if not o.identity_lock:
            self.identity = raw.copy()
            if len(self._buf_signals) < o.identity_frames:
                self._buf_signals.append(raw_sig)
                self.neutral = np.median(np.stack(self._buf_signals), axis=0)
            self.warm = True
            return
        row = np.round(raw[_CAT_IDX])
        hist = self._cat_hist
        if len(hist) == hist.maxlen and np.array_equal(hist[0], row):
            hist.append(row)  # the same values in and out: the counts, so the modes, are unchanged
        else:
            hist.append(row)
            self._cat_mode = None
        frontal = abs(raw_sig[X.SIGNALS.index("yaw")]) <= o.max_identity_pose and \
            abs(raw_sig[X.SIGNALS.index("pitch")]) <= o.max_identity_pose
        if not self.warm:
            if frontal or not any(self._buf_frontal):
                if frontal and self._buf_params and not any(self._buf_frontal):
                    # the first frontal frame: drop the turned ones collected so far
                    self._buf_params, self._buf_signals, self._buf_frontal = [], [], []
                self._buf_params.append(raw)
                self._buf_signals.append(raw_sig)
                self._buf_frontal.append(frontal)
            P = np.stack(self._buf_params)
            self.identity = S.clip(np.median(P, axis=0)).astype(np.float64)
            self.neutral = np.median(np.stack(self._buf_signals), axis=0)
            if len(self._buf_params) >= o.identity_frames:
                self.warm = True
                self._buf_params, self._buf_signals, self._buf_frontal = [], [], []
            return
        a = float(o.identity_refresh)
        if a > 0 and frontal:
            ident = (1.0 - a) * self.identity + a * raw
            self.neutral = (1.0 - a) * self.neutral + a * raw_sig
            # categorical: the most frequent recent value (recounted only when the window changed)
            if self._cat_mode is None:
                self._cat_mode = _modes(np.stack(self._cat_hist))
            ident[_CAT_IDX] = self._cat_mode
            self.identity = ident

    def _smooth_transform(self, transform, t: float) -> np.ndarray:
        v = decompose(transform)
        if self._prev_angle is not None:  # unwrap the angle
            v[1] = self._prev_angle + (v[1] - self._prev_angle + math.pi) % (2 * math.pi) - math.pi
        self._prev_angle = v[1]
        if self._tf_filter is None:
            return compose(v)
        if self._scale_ref is None or not self._tf_filter.initialized:
            self._scale_ref = math.exp(v[0])
        # translation in units of the face size, so one beta fits every resolution
        w = np.array([v[0], v[1], v[2] / self._scale_ref, v[3] / self._scale_ref])
        f = self._tf_filter(w, t)
        return compose([f[0], f[1], f[2] * self._scale_ref, f[3] * self._scale_ref])
