"""Temporal filters for live video: the One Euro filter, vectorised.

The One Euro filter (Casiez, Roussel and Vogel, "1€ Filter: A Simple
Speed-based Low-pass Filter for Noisy Input in Interactive Systems", CHI
2012, https://gery.casiez.net/1euro/) is a first-order low-pass filter whose
cutoff frequency rises with the signal's speed: at rest it smooths hard
(little jitter), in fast motion it opens up (little lag). Per sample, with
``te`` the time since the previous sample in seconds::

    alpha(cutoff) = 1 / (1 + tau / te),   tau = 1 / (2 pi cutoff)
    dx     = lowpass(alpha(d_cutoff), (x - x_prev_filtered) / te)
    cutoff = min_cutoff + beta * |dx|
    x_hat  = lowpass(alpha(cutoff), x)

Two knobs matter (the paper's tuning procedure): set ``beta = 0`` and lower
``min_cutoff`` (Hz) until the signal at rest stops jittering, then raise
``beta`` until fast motion stops lagging. ``d_cutoff`` (the cutoff of the
speed estimate) is 1 Hz in the paper and in MediaPipe, and rarely needs
changing. ``beta`` is in units of 1/(value unit): it depends on the scale of
the values, which is why MediaPipe divides landmarks by the object's size
before filtering (its pose landmark graph uses ``min_cutoff 0.05``,
``beta 80``, ``derivate_cutoff 1`` on size-normalised coordinates) and why the
SDK filters *normalised* signals (each expression signal divided by its
typical span, see :mod:`avatarizer.expressions`).

:data:`DEFAULT_MIN_CUTOFF` and :data:`DEFAULT_BETA` are the SDK's defaults for
those normalised signals, chosen with ``benchmarks/stability.py`` on the seven
talking-face clips in ``../shared/data/video`` (150 frames each): against the
unfiltered tracker they halve the frame-to-frame change of the identity
parameters (0.0085 → 0.0040 mean |Δ| in normalised units, mostly head-pose
noise) and cut that of the expression parameters by a quarter (0.027 →
0.020), while mouth opening follows the raw landmark signal with a
cross-correlation lag of 0 frames on five clips and 1 frame on two (9.5 ms on
average). Lower ``min_cutoff`` or ``beta`` smooth more and lag more (beta 2:
about 27 ms).

:class:`OneEuroFilter` filters a whole vector at once (every element with
the same knobs, each with its own state), so one filter serves all the
parameters of an avatar.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .checks import is_real

__all__ = ["DEFAULT_MIN_CUTOFF", "DEFAULT_BETA", "DEFAULT_D_CUTOFF", "Smoothing", "OneEuroFilter"]

#: Cutoff frequency at rest, Hz (for signals normalised to a span of about 1).
DEFAULT_MIN_CUTOFF = 1.0
#: Speed coefficient, 1/(normalised unit); higher = less lag in fast motion.
DEFAULT_BETA = 4.0
#: Cutoff of the speed estimate, Hz (Casiez et al. and MediaPipe use 1 Hz).
DEFAULT_D_CUTOFF = 1.0


#: The largest cutoff (Hz) and beta :class:`Smoothing` takes.
MAX_KNOB = 1e6


@dataclass(frozen=True)
class Smoothing:
    """The One Euro filter's knobs (see the module doc).

    Attributes:
        min_cutoff: cutoff frequency at rest in Hz, > 0. Lower = steadier
            and laggier at rest.
        beta: speed coefficient, >= 0. Higher = less lag in fast motion.
        d_cutoff: cutoff of the speed estimate in Hz, > 0.
    """

    min_cutoff: float = DEFAULT_MIN_CUTOFF
    beta: float = DEFAULT_BETA
    d_cutoff: float = DEFAULT_D_CUTOFF

    def __post_init__(self):
        # (above MAX_KNOB the filter passes the signal through as it is; far above, its
        # arithmetic overflows)
        for name in ("min_cutoff", "d_cutoff"):
            v = getattr(self, name)
            if not is_real(v) or not 0 < v <= MAX_KNOB:
                raise ValueError(f"smoothing {name} must be a number of Hz in (0, {MAX_KNOB:g}], got {v!r}")
        if not is_real(self.beta) or not 0 <= self.beta <= MAX_KNOB:
            raise ValueError(f"smoothing beta must be a number in [0, {MAX_KNOB:g}], got {self.beta!r}")

    @classmethod
    def coerce(cls, value) -> "Smoothing | None":
        """``None``/``False`` (no smoothing), ``True`` (defaults), a
        :class:`Smoothing`, a ``(min_cutoff, beta[, d_cutoff])`` tuple or a
        dict of the fields."""
        if value is None or value is False:
            return None
        if value is True:
            return cls()
        if isinstance(value, cls):
            return value
        if isinstance(value, dict):
            unknown = sorted(set(value) - {"min_cutoff", "beta", "d_cutoff"})
            if unknown:
                raise ValueError(f"unknown smoothing field(s) {unknown}; use min_cutoff, beta, d_cutoff")
            return cls(**value)
        if isinstance(value, (tuple, list)) and len(value) in (2, 3):
            return cls(*value)
        raise ValueError("smoothing must be None, True, a Smoothing, a (min_cutoff, beta) tuple or a dict, "
                         f"got {value!r}")


def _alpha(cutoff, te: float):
    tau = 1.0 / (2.0 * math.pi * cutoff)
    return 1.0 / (1.0 + tau / te)


#: the largest speed (and step) the filter reads: finite input near the float range's end stays finite
_DX_LIMIT = 1e300


class OneEuroFilter:
    """One Euro filter over a vector of ``n`` values (float64 state).

    ``cutoff_scale`` and ``beta_scale`` (optional, one number per element,
    > 0 and >= 0) multiply ``min_cutoff`` and ``beta`` element by element, for
    signals that move more slowly than the rest (the tracker steadies head
    pose this way).

    ``__call__(x, t)`` takes the current values (shape ``(n,)``) and their time
    in **seconds** (strictly increasing; a repeated or earlier time returns the
    last output unchanged) and returns the filtered values. The first call
    returns ``x`` itself. :meth:`reset` forgets the state.

    >>> f = OneEuroFilter(2, Smoothing(min_cutoff=1.0, beta=0.0))
    >>> f(np.array([0.0, 1.0]), 0.0).tolist()
    [0.0, 1.0]
    >>> out = f(np.array([1.0, 1.0]), 1 / 30)
    >>> 0.0 < out[0] < 1.0 and out[1] == 1.0
    True
    """

    def __init__(self, n: int, smoothing: Smoothing | None = None, cutoff_scale=None, beta_scale=None):
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
            raise ValueError(f"n must be a positive integer, got {n!r}")
        self.n = int(n)
        self.smoothing = smoothing or Smoothing()
        self._min_cutoff = self.smoothing.min_cutoff * self._scale(cutoff_scale, "cutoff_scale", zero_ok=False)
        self._beta = self.smoothing.beta * self._scale(beta_scale, "beta_scale", zero_ok=True)
        self.reset()

    def _scale(self, value, name: str, zero_ok: bool) -> np.ndarray:
        scale = np.ones(self.n) if value is None else np.asarray(value, np.float64)
        if scale.shape not in ((), (self.n,)) or not (np.isfinite(scale).all()
                                                      and ((scale >= 0) if zero_ok else (scale > 0)).all()):
            # (a negative beta scale was taken: the filter then rang and diverged, a 0/1 input came out -20)
            raise ValueError(f"{name} must be one number or {self.n} numbers, each {'>=' if zero_ok else '>'} 0")
        return np.broadcast_to(scale, (self.n,)).copy()

    def reset(self) -> None:
        self._x: np.ndarray | None = None
        self._dx = np.zeros(self.n)
        self._t: float | None = None

    @property
    def initialized(self) -> bool:
        return self._x is not None

    def __call__(self, x, t: float) -> np.ndarray:
        x = np.asarray(x, np.float64)
        if x.shape != (self.n,):
            raise ValueError(f"expected {self.n} values, got shape {x.shape}")
        if not math.isfinite(t):
            raise ValueError(f"time must be finite, got {t}")
        if self._x is None:
            self._x, self._t = x.copy(), float(t)
            return x.copy()
        te = float(t) - self._t
        if te <= 0:
            return self._x.copy()
        s = self.smoothing
        finite = np.isfinite(x)
        unseen = ~np.isfinite(self._x)
        if unseen.any():  # a value missing so far (NaN in the first sample): its first finite one starts it
            self._x = np.where(unseen & finite, x, self._x)
            self._dx = np.where(unseen, 0.0, self._dx)
        # Non-finite inputs (a missing measurement) keep the previous value.
        x = np.where(finite, x, self._x)
        with np.errstate(over="ignore", invalid="ignore"):
            # (a jump near the float range's end overflowed to infinity, and the state stayed NaN after it)
            dx = np.clip((x - self._x) / te, -_DX_LIMIT, _DX_LIMIT)
        a_d = _alpha(s.d_cutoff, te)
        self._dx = self._dx + a_d * (dx - self._dx)
        cutoff = self._min_cutoff + self._beta * np.abs(self._dx)
        a = _alpha(cutoff, te)
        with np.errstate(over="ignore", invalid="ignore"):
            step = np.clip(x - self._x, -_DX_LIMIT, _DX_LIMIT)
        self._x = np.where(np.isfinite(self._x), self._x + a * step, self._x)
        self._t = float(t)
        return self._x.copy()
