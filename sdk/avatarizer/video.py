"""Video mode: a stable identity, live expressions and a smooth head transform.

:class:`Tracker` turns per-frame estimates (the 629 raw parameters of one
face, as the image pipeline gives them, plus that face's landmarks and
transform) into an avatar that does not flicker:

* **Identity** (face shape, colours, hair, accessories): the element-wise
  median of the raw parameters over the first ``identity_frames`` estimates
  made on frames in which the head is roughly frontal (``|yaw|, |pitch| <=
  max_identity_pose``; any frame if none is; a frame that repeats an earlier
  frame's estimate, ``update(fresh=False)``, adds none: in video mode the
  identity networks answer a few frames apart, see
  :mod:`avatarizer.pipeline.identity`), then refreshed slowly: an exponential moving average
  with weight ``identity_refresh`` per frame (0.02: a time constant of ~50
  frames, 2 s at 25 fps). Categorical parameters (hair style id, glasses
  type, ...) follow the most frequent value of the last
  ``categorical_window`` frames instead of a median or an average (also
  while warming up: a median of two hairstyles' ids was a third's); where
  the caller says which estimate a frame repeats (``update(estimate=...)``:
  the video pipeline passes the hair retrieval's time, which every frame
  reuses for a second), of the last ``categorical_estimates`` estimates
  instead, one vote each, a tie keeping the value drawn (a frame window
  counted one retrieval held for seconds by a slow worker as many votes:
  one that read no glasses took them off ``d12`` for 4 s); the
  glasses the most frequent among the estimates of those frames that drew
  the headwear drawn (a hat or none), so that accessories no estimate drew
  together are not drawn together: sunglasses read bareheaded in most
  frames do not show under a hat that other frames read and under which
  every estimate took them off (image mode's rule,
  ``hair.sunglasses_under_hat``).
* **Expressions and pose**: the signals of :mod:`avatarizer.expressions`
  (eye openness, gaze, brows, mouth, smile, yaw, pitch), measured on every
  frame, normalised by their spans and smoothed with a One Euro filter
  (:mod:`avatarizer.filters`), then applied to the identity relative to the
  person's neutral signals: the median of the warm-up frames', then a running
  median (each frontal frame moves each signal ``neutral_refresh`` of its
  span toward the frame's, whatever the distance), so an expression held for
  seconds stays drawn. They were a moving average at ``identity_refresh``
  (2 s): a held smile faded within 2 s and left a frown after it, and blinks
  pulled the resting eye openness down 20-40%, drawing open eyes wide (a
  review, session 61). The eyes' neutral openness and the identity's lids are
  those of resting eyes: the warm-up reads each eye over its frames open at
  least ``EYE_REST_SHARE`` of its 90th percentile, and once warm an estimate
  whose eye is more closed than ``EYE_CLOSING_SHARE`` of the identity's
  leaves that eye's lids as they are (a wink in the warm-up, or a look down
  averaged into the identity, drew open eyes half shut; session 62). What
  the warm-up could not read is read with the first ``identity_frames``
  frontal frames once warm (as the warm-up reads its rows, so far meanwhile):
  the eyes' resting openness, from the warm-up's rows and those frames (eyes
  shut through the warm-up gave 0.02), and yaw and pitch when none of its
  frames was frontal (meanwhile at most
  ``max_identity_pose``; session 64). The mouth likewise: the warm-up's lips,
  jaw and mouth signals are those of its frames with the mouth at rest
  (``MOUTH_REST_GAP``), and once warm an estimate whose frame reads the mouth
  (``MOUTH_HELD_SHARE``) or a brow (``BROW_HELD_SHARE``) off its neutral
  leaves the identity's lips and jaw, or that brow's height, as they are: the
  expression draws them (averaged in, a grin widened the resting mouth by 30%
  and a held brow raise was drawn 48% higher than raised; session 64).
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

**Another person.** When somebody else takes the place without a gap (a cut
in a clip, a second person leaning in as the first leaves), the estimates'
colours (skin, eyes, lips, hair: the ``color`` parameters but the clothes',
normalised) stay further than ``switch_distance`` (mean |Δ|, default 0.06)
from the identity for ``switch_ms`` (default 600 ms) of frames with the face,
over at least two different estimates (frames between two answers of the
identity worker reuse the last one; with ``update(estimate=...)`` two
different estimates by that key: the hair retrieval, whose skin tone
moves the colours of every face estimate it is merged with for a second,
counts once; the pipeline asks for a new retrieval once an estimate is
that far, :attr:`Tracker.far`): the identity is then
estimated afresh (:attr:`Tracker.switches` counts it), instead of blending the
two people for seconds; while they are that far the identity is not
refreshed and they cast no categorical votes (an odd estimate of the same
person is not blended in either). The identity before a switch is kept for
``reset_ms``: two estimates nearer to it than to the new one (within
``switch_distance``) give it back as it was (:attr:`Tracker.returns`), so a
face hidden for a second by a hand reads as somebody else for that second
only (session 60, scratch ``occ.py``: a hand-coloured box over the upper
half of the face for 1 s on the 7 clips, inline: one switch each where
there were two, and the glasses drawn wrong for at most 0.28 s after it,
was 1.4-2.2 s); a cut back within 3 s is the same. On
7 talking-head clips (session 41, every 10th frame through image mode,
scratch ``/tmp/s41/swall.py``) a frame's estimate was at most 0.066 from its
own clip's median (p95 0.044) and 0.022-0.21 from the other six people's
(p5 0.032, median 0.080; session 15: 0.051, 0.045, 0.031, median 0.11);
people as alike as 0.03-0.05 are not told apart and blend as before. Since
the lips are relit with the skin (session 41, ``skintone.relight``: a dim
clip's lips no longer differ from a bright one's by the exposure alone) the
estimates of ``d10`` after a cut from ``d12`` lie 0.061-0.070 from ``d12``'s
identity (0.076-0.087 before), so the default went from 0.07 to 0.06; in
video mode the tracker's own estimates stay within 0.052 of their identity
over the 7 whole clips (``identity_worker="inline"``; ``d6``'s 1,008
frames; p99 0.048; 0.015-0.043 the others; scratch ``/tmp/s41/swown.py``):
a margin of 0.008 below the threshold and 0.001 above it, so a cut between
two people this alike can still be missed.

The tracker is not thread-safe on its own; :class:`avatarizer.api.Avatarizer`
serialises calls in video mode.
"""
from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass

import numpy as np

from . import expressions as X
from . import prior as P
from . import schema as S
from .checks import is_real
from .filters import OneEuroFilter, Smoothing

__all__ = ["TrackerOptions", "TrackedFrame", "Tracker", "decompose", "compose"]

#: Head yaw and pitch change more slowly than expressions and MediaPipe reads
#: them with a few degrees of noise: their filter's min_cutoff and beta are
#: scaled by these (chosen with benchmarks/stability.py).
POSE_CUTOFF_SCALE = 0.3
POSE_BETA_SCALE = 0.2

_CATEGORICAL = np.array([k in ("categorical", "flag") for k in S.KINDS])
_CAT_IDX = np.flatnonzero(_CATEGORICAL)
# (not the clothes': a shirt half in the frame or a hand in the crop's corner moves their colour, and a new
# person is told by the face and hair; the switch distance was measured without them, when the hybrid drew
# every avatar in the prior's blue top)
_COLOR_IDX = np.flatnonzero((np.array(S.KINDS) == "color") & (np.array(S.FEATURE_OF) != "clothes"))
_COLOR_SCALE = 2.0 / (S.HI[_COLOR_IDX] - S.LO[_COLOR_IDX]).astype(np.float64)  # as schema.normalize
_YAW, _PITCH = X.SIGNALS.index("yaw"), X.SIGNALS.index("pitch")
#: the glasses' and the headwear's columns among the categorical ones: the glasses drawn are the most
#: frequent among the window's rows with the headwear drawn (:meth:`Tracker._count_categorical`)
_GLASSES_COL = int(np.flatnonzero(_CAT_IDX == S.index("glasses.type"))[0])
_HEADWEAR_COL = int(np.flatnonzero(_CAT_IDX == S.index("headwear.type"))[0])


#: a gap longer than this between two frames with the face counts as the
#: face's absence (``Tracker.absent_ms``); shorter ones are the stream's frame
#: interval (at 5 fps 200 ms), not an absence, also where ``grace_ms`` or
#: ``reset_ms`` is shorter (``grace_ms=0``, no stale avatar, had restarted
#: the filters on every frame and ``reset_ms=30`` the identity)
FRAME_GAP_MS = 250.0


#: :attr:`TrackerOptions.neutral_refresh`'s default: 0.002 of a span a frame, 5% of it in a second at 25 fps
#: (a held smile moves the neutral face 0.05 of the smile's span in 1 s, was 40% of the way at the moving
#: average's 0.02; a wrong warm-up median is mended at that pace, a third of a span in 7 s)
NEUTRAL_REFRESH = 0.002

#: the resting eyes (the identity's lids and the neutral eye openness) are read from the frames whose eye
#: is open at least this share of its 90th percentile among the warm-up's: a blink, a wink or a look down
#: in the warm-up drew that eye half shut (d3's wink: its neutral 0.06 where open eyes read 0.32, for
#: the rest of the clip, and its lids the wink's)
EYE_REST_SHARE = 0.6
#: once warm, an estimate whose eye is open less than this share of the identity's leaves that eye's lids
#: as they are (a blink or a look down, which the expression draws from the landmarks): averaged in,
#: looks down closed the identity's lids to 0.005-0.014 and open eyes were drawn half shut, in 48% of
#: d3's open-eyed frames (the drawn opening is the identity's times the measured against the neutral)
EYE_CLOSING_SHARE = 0.85
#: once warm, an estimate whose frame reads a brow raised or lowered more than this share of the brow
#: signal's span off its neutral leaves that brow's height in the identity as it is: averaged in, a brow
#: raise held 4 s was drawn 48% higher than raised (the identity's raised brows and the expression on
#: them) and lingered 2 s after it (d6 with its brows raised in frames 100-219). The clips' brows move
#: 0.06-0.8 of the span (median) off the neutral; at 0.3 the hold fired in 60-78% of d3's, d10's and
#: d11's frames and kept a warm-up's frown: the drawn brows' mean distance to the fresh estimates' on
#: d3/d10/d11 was 0.019/0.015/0.016 at 0.3, 0.011/0.016/0.012 at 0.6, 0.008/0.024/0.016 with no hold
#: (session 64, a review)
BROW_HELD_SHARE = 0.6
#: once warm, an estimate whose frame reads the mouth open, wider or narrower, or its corners lifted or
#: lowered more than this share of the signal's span off its neutral leaves the identity's lips as they
#: are (and, open, its jaw: the face outline's, beard's and neck shadow's y): averaged in, d0's grins
#: (1.1-1.8 spans) widened the identity's mouth from 0.32 to 0.44 and drew the resting mouth after them
#: 30% wider than the person's, its lower lip pressed up (a pout)
MOUTH_HELD_SHARE = 0.5
_MOUTH_SIGNALS = np.array([X.SIGNALS.index(n) for n in ("mouth_open", "mouth_width", "smile")])
_LIPS = np.concatenate([np.arange(S.FEATURES[f].points.start, S.FEATURES[f].points.stop)
                        for f in ("lip_upper_outer", "lip_lower_outer", "lip_inner_upper", "lip_inner_lower")])
_MOUTH_PARAMS = np.concatenate([_LIPS, X._JAW_Y])  # (the lips, and what drops with the jaw)
#: (brow signal's index, its brow's y parameters) for each side
_BROWS = tuple((X.SIGNALS.index(f"brow_{s}"), X._y_slice(f"brow_{s}")) for s in "lr")
#: the parameters of each eye's lids and crease (image-left, image-right)
_EYE_LIDS = tuple(np.concatenate([X._LIDS_UP[s].ravel(), X._LIDS_LO[s].ravel(),
                                  X._pair("eye_{}_crease")[s].ravel()]) for s in (0, 1))


def _rest_rows(openings: np.ndarray) -> np.ndarray:
    """The rows whose eye opening is that of a resting eye (:data:`EYE_REST_SHARE`); all of
    them where none is open."""
    keep = openings >= EYE_REST_SHARE * float(np.percentile(openings, 90))
    return keep if keep.any() else np.ones(len(openings), bool)


#: the mouth at rest, in the warm-up: the rows (estimates, and frames' signals) whose inner lip gap is at
#: most this (canonical units: the teeth show above ``expressions.TEETH_GAP``, 0.03), or the quarter with
#: the smallest gaps where that is more; the mouth's parameters (lips, jaw) and neutral signals (open,
#: width, smile) are their median. d0's grin filled most of a warm-up: its median took the grin for the
#: resting mouth, and the closed mouth after it was drawn as the grin's lips pressed shut (a pout)
MOUTH_REST_GAP = 0.03


def _mouth_rest_rows(gaps: np.ndarray) -> np.ndarray:
    """The rows whose mouth is at rest (:data:`MOUTH_REST_GAP`)."""
    return gaps <= max(MOUTH_REST_GAP, float(np.percentile(gaps, 25)))


def _rest_median_signals(rows: list, only=None) -> np.ndarray:
    """The neutral signals of the rows: each signal's median, the eyes' over their resting rows and the
    mouth's over its (:data:`MOUTH_REST_GAP`). ``only``: those signals' alone (the others 0)."""
    sig = np.stack(rows)
    want = set(range(sig.shape[1]) if only is None else only)
    mouth = set(_MOUTH_SIGNALS.tolist())
    out = np.zeros(sig.shape[1])
    plain = sorted(want - {0, 1} - mouth)
    out[plain] = np.median(sig[:, plain], axis=0)
    if want & mouth:
        out[_MOUTH_SIGNALS] = np.median(sig[_mouth_rest_rows(sig[:, _MOUTH_SIGNALS[0]])][:, _MOUTH_SIGNALS], axis=0)
    for i in sorted(want & {0, 1}):  # eye_open_l, eye_open_r
        out[i] = np.median(sig[_rest_rows(sig[:, i]), i])
    return out


def _rest_median_params(rows: list) -> np.ndarray:
    """The median of the estimates, each eye's lids over the estimates that show it resting."""
    P = np.stack(rows)
    out = np.median(P, axis=0)
    for side, idx in enumerate(_EYE_LIDS):
        keep = _rest_rows(np.array([X._eye_opening64(r, side) for r in rows]))
        out[idx] = np.median(P[keep][:, idx], axis=0)
    keep = _mouth_rest_rows(np.array([X.inner_lip_gap(r) for r in rows]))
    out[_MOUTH_PARAMS] = np.median(P[keep][:, _MOUTH_PARAMS], axis=0)
    return out


@dataclass(frozen=True)
class TrackerOptions:
    """Options of the video tracker (see the module doc).

    Attributes:
        identity_frames: estimates (frames that found a new one) whose
            median is the identity (>= 1).
        identity_refresh: moving-average weight per frame afterwards, in
            [0, 1] (0 freezes the identity).
        neutral_refresh: how far each frontal frame moves each neutral
            signal toward its own reading once warm, in [0, 1] of the
            signal's span (:data:`avatarizer.expressions.SPANS`): a running
            median, so expressions held for seconds and blinks barely move
            it (0 freezes it at the warm-up frames' median).
        categorical_window: frames of history for categorical parameters.
        categorical_estimates: estimates whose categorical values vote
            where ``update`` is told which estimate a frame repeats
            (``estimate``; the video pipeline: one per hair retrieval); a
            tie keeps the value drawn.
        max_identity_pose: frames turned further than this (degrees) do not
            count toward the first identity estimate.
        grace_ms: how long the last avatar is kept when the face is lost.
        reset_ms: after this long without a face the identity is forgotten.
        expressions: apply live expressions (eyes, gaze, brows, mouth).
        pose: apply yaw and pitch as deformations.
        identity_lock: False turns the identity estimate off (every frame's
            raw parameters are used as the identity; for comparisons).
        identity_every_ms: once the identity is warm, the face and hair
            networks run at most this often (stream time), on a worker (see
            ``identity_worker``), and frames reuse their latest answer (no
            frame waits for them; ``avatarizer.pipeline.identity``; with
            ``identity_worker="inline"`` the due frame runs them). While it
            warms up, a person's first frame runs them inline, the worker
            gets a job as soon as it is free, and a frame that found no new
            estimate for this long computes one itself. 0 runs them inline
            on every frame.
        identity_duty: the most of one CPU core the identity worker may
            take once the identity is warm, in (0, 1]: after an answer that
            took ``d`` seconds of wall time it rests ``d * (1 /
            identity_duty - 1)`` seconds before the
            next (0.25: at least 3 × ``d``), so on a small CPU it does not
            compete with the frames for the cores (and the GIL) most of the
            time. 1 refreshes as soon as ``identity_every_ms`` allows. Not
            used with ``identity_worker="inline"`` (no worker).
        switch_distance: how far (mean |Δ| of the normalised colour
            parameters) the estimates must stay from the identity, for
            ``switch_ms``, to be taken for another person (the identity is
            then estimated afresh); ``None`` never does.
        switch_ms: how long they must stay that far.
        identity_worker: where the identity worker computes: ``"process"``
            (a child process of its own, so frames never wait for its GIL;
            ``avatarizer.pipeline.identity_worker``; it falls back to a
            thread where a process cannot start), ``"thread"`` (a thread
            of this process; no second copy of the networks in memory) or
            ``"inline"``: no worker; the frame that is due (every
            ``identity_every_ms`` of stream time) computes the refresh
            itself and waits for it, so the avatars depend on the frames
            alone, not on how fast the machine went through them: for
            video files (the CLI's ``video``, to an mp4 or an animation), where frames
            come faster than real time and a worker would answer only a few
            of them.
        worker_cpu: the CPU the identity worker process runs on
            (``identity_worker="process"``, Linux, at least 2 CPUs):
            ``"auto"``, the last this process may run on; a CPU number; or
            None, any. While it computes a job, the frames' thread and
            MediaPipe's graph threads keep off that CPU
            (:mod:`avatarizer.pipeline.cores`: the frames that overlapped a
            job were the slow tail); between jobs, and while a stream runs,
            nothing is pinned.
    """

    identity_frames: int = 15
    identity_refresh: float = 0.02
    categorical_window: int = 45
    categorical_estimates: int = 3
    max_identity_pose: float = 25.0
    grace_ms: float = 500.0
    reset_ms: float = 3000.0
    expressions: bool = True
    pose: bool = True
    identity_lock: bool = True
    identity_every_ms: float = 200.0
    identity_duty: float = 0.25
    switch_distance: float | None = 0.06
    switch_ms: float = 600.0
    identity_worker: str = "process"
    worker_cpu: int | str | None = "auto"
    neutral_refresh: float = NEUTRAL_REFRESH

    def __post_init__(self):
        if isinstance(self.identity_frames, bool) or not isinstance(self.identity_frames, int) \
                or self.identity_frames < 1:
            raise ValueError(f"identity_frames must be a positive integer, got {self.identity_frames!r}")
        if not is_real(self.identity_refresh) or not 0.0 <= float(self.identity_refresh) <= 1.0:
            raise ValueError(f"identity_refresh must be a number in [0, 1], got {self.identity_refresh!r}")
        if not is_real(self.neutral_refresh) or not 0.0 <= float(self.neutral_refresh) <= 1.0:
            raise ValueError(f"neutral_refresh must be a number in [0, 1], got {self.neutral_refresh!r}")
        for name in ("expressions", "pose", "identity_lock"):  # ("false" is a true value: never coerced)
            v = getattr(self, name)
            if not isinstance(v, (bool, np.bool_)):
                raise ValueError(f"{name} must be True or False, got {v!r}")
        for name in ("categorical_window", "categorical_estimates"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{name} must be a positive integer, got {v!r}")
        d = self.identity_duty
        if not is_real(d) or not (0.0 < d <= 1.0):
            raise ValueError(f"identity_duty must be a number in (0, 1], got {d!r}")
        # (a string: a 0-d array compared equal by broadcasting and was taken as the worker's kind)
        if not isinstance(self.identity_worker, str) or self.identity_worker not in ("process", "thread", "inline"):
            raise ValueError(f"identity_worker must be 'process', 'thread' or 'inline', got {self.identity_worker!r}")
        c = self.worker_cpu
        if not (c is None or (isinstance(c, str) and c == "auto") or (
                isinstance(c, (int, np.integer)) and not isinstance(c, (bool, np.bool_)) and 0 <= c < 1 << 16)):
            raise ValueError(f"worker_cpu must be 'auto', None or a CPU number >= 0, got {c!r:.40}")
        sd = self.switch_distance
        if sd is not None and (not is_real(sd) or not 0.0 < sd <= 2.0):
            raise ValueError(f"switch_distance must be None or a number in (0, 2], got {sd!r}")
        for name in ("grace_ms", "reset_ms", "max_identity_pose", "identity_every_ms", "switch_ms"):
            v = getattr(self, name)
            if not is_real(v) or not v >= 0:
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
    return np.array(_decompose(transform))


def _decompose(transform) -> list:
    """:func:`decompose` as a list of floats."""
    (a, _, tx), (b, _, ty) = np.asarray(transform, np.float64).tolist()
    return [math.log(max(math.hypot(a, b), 1e-9)), math.atan2(b, a), tx, ty]


def compose(v) -> np.ndarray:
    """Inverse of :func:`decompose`."""
    s = math.exp(v[0])
    c, n = s * math.cos(v[1]), s * math.sin(v[1])
    return np.array([[c, -n, v[2]], [n, c, v[3]]])


def _take(counts: dict, value) -> None:
    """One occurrence of ``value`` fewer in ``counts`` (the key gone at none)."""
    n = counts[value] - 1
    if n:
        counts[value] = n
    else:
        del counts[value]


def _colour_distance(colours: np.ndarray, identity: np.ndarray) -> float:
    """Mean |Δ| of an estimate's ``colours`` (its :data:`_COLOR_IDX`
    values) from an identity's, in normalised units (``switch_distance``'s)."""
    return float(np.mean(np.abs(colours - identity[_COLOR_IDX]) * _COLOR_SCALE))


def _newer(seen, last) -> bool:
    """Whether ``seen`` (an estimate's key, or its colours where no key is
    given) is a new estimate after ``last``: a later key (an older one, an
    answer that came back late, is none), or other colours; keyed and
    unkeyed frames of one tracker are different estimates."""
    if isinstance(seen, np.ndarray) or isinstance(last, np.ndarray):
        return not (isinstance(seen, np.ndarray) and isinstance(last, np.ndarray) and np.array_equal(seen, last))
    return last is None or seen > last


def _most_frequent(counts: dict, keep=None):
    """The most frequent value of ``counts``: on a tie ``keep`` where it is
    one of them, else the smallest."""
    top = max(counts.values())
    if keep is not None and counts.get(keep) == top:
        return keep
    return min(k for k, n in counts.items() if n == top)


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
        pose = [_YAW, _PITCH]
        # one filter for the normalised signals and the 4 transform values (they
        # are filtered at the same times and reset together): one call per frame
        cut, beta = np.ones(n + 4), np.ones(n + 4)
        cut[pose], beta[pose] = POSE_CUTOFF_SCALE, POSE_BETA_SCALE
        self._filter = OneEuroFilter(n + 4, smoothing, cut, beta) if smoothing else None
        #: how often another person was taken for the one tracked (the identity estimated afresh)
        self.switches = 0
        #: how often the person before a switch came back within ``reset_ms`` and got their identity back
        self.returns = 0
        self.reset()

    # ------------------------------------------------------------------ state
    def reset(self) -> None:
        """Forget everything (identity, neutral signals, filters, last output)."""
        self._buf_params: list[np.ndarray] = []
        self._buf_signals: list[np.ndarray] = []
        self._buf_frontal: list[bool] = []      # per estimate in _buf_params: frontal (by its own frame's pose)
        self._buf_sig_frontal: list[bool] = []  # per row of _buf_signals: its frame frontal
        self._cat_hist: deque = deque(maxlen=self.options.categorical_window)
        self._keyed = False  # the votes are per estimate (update's estimate), not per frame
        self._voted = None  # the estimate key of the last vote
        # per categorical parameter, how often each value occurs in _cat_hist, and
        # the most frequent (the smallest on a tie), kept up to date as rows come and go
        self._cat_counts: list[dict] = [{} for _ in _CAT_IDX]
        # per headwear value, how often each glasses value occurs with it in _cat_hist
        self._glasses_by_headwear: dict[float, dict] = {}
        self._cat_mode = np.zeros(len(_CAT_IDX))
        self.identity: np.ndarray | None = None
        self.neutral: np.ndarray | None = None
        # the neutral signals still to be read once warm (_set_neutral): {"signals": their indices, "rows":
        # the readings so far, "read": frames read since warm}, or empty
        self._unsure: dict = {}
        self.warm = False
        self._last: TrackedFrame | None = None
        self._last_seen_ms: float | None = None
        self._missed = False  # a frame without the face came since _last_seen_ms
        self._scale_ref: float | None = None
        self._prev_angle: float | None = None
        self._far_since_ms: float | None = None
        self._far_last = None  # the colours (or the estimate key) of the last estimate that far
        self._far_seen = 0  # how many different estimates that far since _far_since_ms
        self._gap_ms: float | None = None  # the time between the last two frames with the face
        # the identity before the last switch and the switch's time (kept reset_ms), and the estimates since
        # that were nearer to it than to the identity (_back_to_previous)
        self._previous: tuple | None = None
        self._back_last = None
        self._back_seen = 0
        self._reset_filters()

    _IDENTITY_STATE = ("_buf_params", "_buf_signals", "_buf_frontal", "_buf_sig_frontal", "_cat_hist", "_keyed",
                       "_voted", "_cat_counts", "_glasses_by_headwear", "_cat_mode", "identity", "neutral",
                       "_unsure", "warm")

    def _identity_state(self) -> dict:
        """A copy of everything the identity is made of (its median's
        estimates, the categorical window and counts, the neutral signals)."""
        import copy

        return {k: copy.deepcopy(getattr(self, k)) for k in self._IDENTITY_STATE}

    def _restore(self, state: dict) -> None:
        for k, v in state.items():
            setattr(self, k, v)
        self._far_since_ms, self._back_last, self._back_seen = None, None, 0

    @property
    def far(self) -> bool:
        """Whether the last estimate was ``switch_distance`` from the
        identity (another person, if the next ones stay that far for
        ``switch_ms``), or the last switch was less than ``reset_ms`` ago
        (the person before it may be back): the pipeline then asks for a
        new hair retrieval at the next refresh instead of reusing the last
        for a second."""
        return self._far_since_ms is not None or self._previous is not None

    @property
    def last_seen_ms(self) -> float | None:
        """The time of the last frame with the face (``update``), or None."""
        return self._last_seen_ms

    def absent_ms(self, timestamp_ms: float) -> float:
        """How long the face has been absent at ``timestamp_ms``: the time
        since the last frame with it where a frame without it came since,
        or where no frame came for more than :data:`FRAME_GAP_MS` (a camera
        that stalled, frames the app stopped sending); 0 between consecutive
        frames with the face closer than that (the stream's frame interval
        is not an absence, whatever ``grace_ms`` and ``reset_ms`` say), and
        before any."""
        if self._last_seen_ms is None:
            return 0.0
        gone = float(timestamp_ms) - self._last_seen_ms
        return gone if self._missed or gone > FRAME_GAP_MS else 0.0

    def _reset_filters(self) -> None:
        if self._filter is not None:
            self._filter.reset()
        self._prev_angle = None

    # ------------------------------------------------------------------ frames
    def update(self, raw_params, canonical, transform, timestamp_ms: float, yaw: float = 0.0,
               pitch: float = 0.0, fresh: bool = True, estimate_pose: tuple | None = None,
               estimate=None, landmarks=None) -> TrackedFrame:
        """One frame with a face.

        Args:
            raw_params: (629,) this frame's estimate.
            canonical: (478, 2) this frame's canonical landmarks.
            transform: (2, 3) canonical → frame pixels.
            timestamp_ms: the frame's time (increasing).
            yaw, pitch: head pose in degrees.
            fresh: False when ``raw_params`` is an estimate an earlier frame
                gave already (video mode reuses the identity networks' last
                answer between refreshes): while the identity warms up it
                counts neither toward its ``identity_frames`` estimates nor
                among the categorical values (nor do the frame's landmarks
                toward the neutral signals), unless none was collected yet.
            estimate_pose: (yaw, pitch) in degrees of the frame
                ``raw_params`` was estimated on, when that is another frame
                (the identity worker's): whether the estimate counts as
                frontal (``max_identity_pose``) is read from it; None: this
                frame's ``yaw`` and ``pitch``.
            estimate: a number that names the estimate the categorical
                values and colours come from, the same for every frame
                that repeats it and larger for a later one (the video
                pipeline's hair retrieval time): the categorical values
                then vote once per estimate (``categorical_estimates``; a
                key not above the last voted, an answer that came back
                late, votes no more) and another person takes two
                estimates by this key; None: every frame votes
                (``categorical_window``) and estimates differ by their
                colours.
            landmarks: the frame's (478, 3) landmarks with depth
                (``AlignedFace.landmarks``): the expression signals are read
                from the face seen from the front (:func:`avatarizer.expressions.measure`),
                so a nod or a turn does not read as a smile or a frown (the
                video pipeline passes them); None: from ``canonical``.
        """
        raw = np.asarray(raw_params)
        raw = raw.astype(np.float64) if raw.dtype == np.float32 and raw.shape == (S.PARAM_COUNT,) else \
            S.as_params(raw).astype(np.float64)  # (as_params checks and converts anything else)
        gone = self.absent_ms(timestamp_ms)
        if gone > self.options.grace_ms and self._gap_ms is not None and gone > 2.0 * self._gap_ms:
            # back after an absence with no frames in between (a camera that stalled: longer than the grace
            # period and than twice the stream's last interval, so a stream slower than 2 fps still tells
            # another person): as after frames without the face (miss), another person is judged over frames
            # with the face from here on
            self._far_since_ms = None
        switched = False
        if self._back_to_previous(raw, float(timestamp_ms), estimate):
            # the person before the last switch is back (a hand or a cup hid the face for a second, a cut
            # back): their identity as it was, not estimated afresh
            self._restore(self._previous[0])
            self._previous = None
            self.returns += 1
            if estimate is not None and self._keyed:
                self._voted = estimate  # (this frame's estimate is of the time between: it casts no vote)
        else:
            switched = self._another_person(raw, float(timestamp_ms), estimate)
        if switched:
            kept = self._identity_state()
            self.reset()  # somebody else: their identity afresh, no glide from the last one's place
            self._previous = (kept, float(timestamp_ms))
            self.switches += 1
        t = float(timestamp_ms) / 1000.0
        if self.absent_ms(timestamp_ms) > self.options.grace_ms:
            self._reset_filters()  # the face is back after a gap: no glide
        raw_sig = X.measure(canonical, yaw, pitch, landmarks=landmarks)
        self._update_identity(raw, raw_sig, seed=not switched, fresh=bool(fresh), estimate_pose=estimate_pose,
                              estimate=estimate)
        # expression signals, normalised, and the transform, filtered in one call
        w = self._transform_values(transform)
        if self._filter is not None:
            n = len(X.SIGNALS)
            f = self._filter(np.concatenate([raw_sig / X.SPANS, w]), t)
            sig = f[:n] * X.SPANS
            tf = self._compose_filtered(f[n:].tolist())
        else:
            sig = raw_sig.copy()
            tf = compose(w)
        o = self.options
        if o.expressions or o.pose:
            # X.apply without its checks and conversions (the identity is a valid float64 vector)
            p = self.identity.astype(np.float32)
            X._apply_into(p, sig.tolist(), self.neutral.tolist(), o.expressions, o.pose, X.MAX_POSE)
            params = S._clip_into(p)
        else:
            params = S.clip(self.identity)
        params = P.hair_over_the_skull(params)  # (the identity averaged skull and hair apart)
        out = TrackedFrame(params=params, transform=tf, signals=sig, raw_signals=raw_sig, stale=False,
                           warm=self.warm)
        self._last = out
        if self._last_seen_ms is not None:
            self._gap_ms = float(timestamp_ms) - self._last_seen_ms
        self._last_seen_ms = float(timestamp_ms)
        self._missed = False
        return out

    def miss(self, timestamp_ms: float) -> TrackedFrame | None:
        """A frame without a face: the last avatar (``stale=True``) within the
        grace period, else ``None``."""
        self._far_since_ms = None  # another person is judged over frames with the face, in a row
        if self._last is None or self._last_seen_ms is None:
            return None
        self._missed = True
        gone = self.absent_ms(timestamp_ms)
        if gone <= self.options.grace_ms:
            last = self._last
            return TrackedFrame(params=last.params, transform=last.transform, signals=last.signals,
                                raw_signals=last.raw_signals, stale=True, warm=last.warm)
        if gone > self.options.reset_ms:
            self.reset()
        return None

    # ------------------------------------------------------------------ internals
    def _another_person(self, raw: np.ndarray, ms: float, estimate=None) -> bool:
        """Whether ``raw`` has stayed ``switch_distance`` away from the warm
        identity for ``switch_ms`` over two estimates (told apart by their
        ``estimate`` key where given, else by their colours; see the module
        doc)."""
        o = self.options
        if not self.warm or not o.identity_lock or o.switch_distance is None or self.identity is None:
            return False
        colours = raw[_COLOR_IDX]
        d = _colour_distance(colours, self.identity)
        if not d > o.switch_distance:
            self._far_since_ms = None
            return False
        seen = colours if estimate is None else estimate
        if self._far_since_ms is None:
            self._far_since_ms, self._far_last, self._far_seen = ms, seen, 1
        elif _newer(seen, self._far_last):
            # a new estimate (in video mode frames reuse the identity worker's last answer
            # until the next arrives: one odd answer, however long it is reused, is not enough;
            # nor one hair retrieval, whose skin tone moves every face estimate merged with it)
            self._far_last, self._far_seen = seen, self._far_seen + 1
        return self._far_seen >= 2 and ms - self._far_since_ms >= o.switch_ms

    def _back_to_previous(self, raw: np.ndarray, ms: float, estimate=None) -> bool:
        """Whether the person before the last switch is back: within
        ``reset_ms`` of the switch, two different estimates (as for a
        switch: by ``estimate`` key, else by colours) within
        ``switch_distance`` of that person's identity and nearer to it than
        to the identity now (see the module doc)."""
        prev = self._previous
        if prev is None:
            return False
        o = self.options
        if ms - prev[1] > o.reset_ms or o.switch_distance is None or not o.identity_lock:
            self._previous, self._back_last, self._back_seen = None, None, 0
            return False
        colours = raw[_COLOR_IDX]
        d_prev = _colour_distance(colours, prev[0]["identity"])
        d_now = _colour_distance(colours, self.identity) if self.identity is not None else math.inf
        if not (d_prev <= o.switch_distance and d_prev < d_now):
            self._back_last, self._back_seen = None, 0
            return False
        seen = colours if estimate is None else estimate
        if self._back_seen == 0 or _newer(seen, self._back_last):
            self._back_last, self._back_seen = seen, self._back_seen + 1
        return self._back_seen >= 2

    def _update_identity(self, raw: np.ndarray, raw_sig: np.ndarray, seed: bool = True,
                         fresh: bool = True, estimate_pose: tuple | None = None, estimate=None) -> None:
        """``seed`` False: the frame that found another person. Its estimate
        was made with the last person's identity (their hairstyle, colours),
        so it is shown for this frame but neither starts the new person's
        warm-up nor counts among its categorical values (with it, the next
        frame's median of two rows mixed two hairstyles into a third).
        ``fresh`` False (see :meth:`update`): while warming up, the frame
        keeps the median of the estimates so far and adds no categorical
        values (a first estimate shown for the ~0.5 s a worker process takes
        to start outvoted every later one in the window once warm: glasses
        that only it had came back for 2-8 frames). ``estimate_pose``: the
        estimate is frontal or not by its own frame's pose (the identity's
        median and moving average); the neutral signals (their median and
        moving average) by this frame's. ``estimate``: see :meth:`update`."""
        o = self.options
        if not seed and o.identity_lock and not self.warm:
            self.identity = S.clip(raw).astype(np.float64)
            self.neutral = np.asarray(raw_sig, np.float64).copy()  # (the landmarks are the new person's)
            self._unsure = {}
            return
        m = o.max_identity_pose
        frame_frontal = abs(raw_sig[_YAW]) <= m and abs(raw_sig[_PITCH]) <= m
        if not o.identity_lock:
            self.identity = raw.copy()
            if len(self._buf_signals) < o.identity_frames:
                self._buf_signals.append(raw_sig)
                self._buf_sig_frontal.append(frame_frontal)
                self._set_neutral()
            elif self._unsure and frame_frontal:
                self._settle_neutral(raw_sig)
            self.warm = True
            return
        if self.warm and self._far_since_ms is not None:
            # maybe somebody else (or one odd reading): no vote (an occluded face's votes filled the window, and
            # the person back after it was drawn with the occlusion's glasses and hairstyle)
            pass
        elif estimate is not None and (not self._keyed or _newer(estimate, self._voted)):
            self._vote(S._whole_categorical(raw[_CAT_IDX]).tolist(), estimate)  # one vote per estimate
        if not self.warm and not fresh and self._buf_params:
            return  # an estimate counted already: the identity, neutral signals and categorical values stay
        if estimate is None and not (self.warm and self._far_since_ms is not None):
            self._count_categorical(S._whole_categorical(raw[_CAT_IDX]).tolist())  # (as clip and the renderer)
        frontal = frame_frontal if estimate_pose is None else \
            abs(float(estimate_pose[0])) <= m and abs(float(estimate_pose[1])) <= m
        if not self.warm:
            if frontal or not any(self._buf_frontal):
                if frontal and self._buf_params and not any(self._buf_frontal):
                    # the first frontal estimate: drop the turned ones collected so far
                    self._buf_params, self._buf_frontal = [], []
                self._buf_params.append(raw)
                self._buf_frontal.append(frontal)
            # the neutral signals are this frame's landmarks: the same by this frame's own pose
            if frame_frontal or not any(self._buf_sig_frontal):
                if frame_frontal and self._buf_signals and not any(self._buf_sig_frontal):
                    self._buf_signals, self._buf_sig_frontal = [], []
                self._buf_signals.append(raw_sig)
                self._buf_sig_frontal.append(frame_frontal)
            ident = _rest_median_params(self._buf_params)
            # categorical: the most frequent recent value, not a median (of an even count it averaged two
            # values: a third hairstyle's id between two, reading glasses between none and sunglasses)
            ident[_CAT_IDX] = self._cat_mode
            self.identity = S.clip(ident).astype(np.float64)
            self._set_neutral()
            if len(self._buf_params) >= o.identity_frames:
                self.warm = True
                self._buf_params, self._buf_signals, self._buf_frontal, self._buf_sig_frontal = [], [], [], []
            return
        a = float(o.identity_refresh)
        if a > 0 and self._far_since_ms is None:  # (not while it may be somebody else)
            if frontal:
                ident = (1.0 - a) * self.identity + a * raw
                ident[_CAT_IDX] = self._cat_mode  # categorical: the most frequent recent value
                for side, idx in enumerate(_EYE_LIDS):  # an eye that blinks or looks down: its lids stay
                    if X._eye_opening64(raw, side) < EYE_CLOSING_SHARE * X._eye_opening64(self.identity, side):
                        ident[idx] = self.identity[idx]
                for i, ys in _BROWS:  # a brow raised or lowered: its height stays (the expression draws it)
                    if abs(raw_sig[i] - self.neutral[i]) > BROW_HELD_SHARE * X.SPANS[i]:
                        ident[ys] = self.identity[ys]
                off = np.abs(np.asarray(raw_sig, np.float64)[_MOUTH_SIGNALS] - self.neutral[_MOUTH_SIGNALS])
                off /= X.SPANS[_MOUTH_SIGNALS]
                if off.max() > MOUTH_HELD_SHARE:  # a grin, a pout or an open mouth: the lips stay
                    ident[_LIPS] = self.identity[_LIPS]
                    if off[0] > MOUTH_HELD_SHARE:  # (mouth_open) and the jaw
                        ident[X._JAW_Y] = self.identity[X._JAW_Y]
                self.identity = ident
        if self._far_since_ms is not None or not frame_frontal:
            return
        if self._unsure:
            self._settle_neutral(raw_sig)
        b = float(o.neutral_refresh)
        if b > 0:
            # a running median of each signal (a step of b of its span toward the frame's): an expression
            # held for seconds, or blinks, move it little (a moving average faded a held smile in 2 s)
            step = b * X.SPANS * np.sign(np.asarray(raw_sig, np.float64) - self.neutral)
            if self._unsure:
                step[list(self._unsure["signals"])] = 0.0  # (still to be read)
            self.neutral = self.neutral + step

    def _set_neutral(self) -> None:
        """The neutral signals of the warm-up's rows, and which of them are read again from the first
        ``identity_frames`` frontal frames once warm (:meth:`_settle_neutral`): the eyes' (a warm-up
        whose eyes were shut, or looked down, gave a neutral openness of 0.02 and open eyes after it
        were drawn 40% wider for 24 s: its rows and those frames' together, the resting ones among
        them, give it), and where no row is frontal yaw and pitch, meanwhile at most
        ``max_identity_pose`` (a stream that started turned 60 degrees for its first 20 frames kept a
        neutral yaw of 36-53 degrees for 10 s: the face turned toward the camera was drawn turned 33-45
        degrees the other way)."""
        self.neutral = _rest_median_signals(self._buf_signals)
        if any(self._buf_sig_frontal):
            self._unsure = {"rows": [r for r, f in zip(self._buf_signals, self._buf_sig_frontal) if f],
                            "signals": (0, 1), "read": 0}
        else:
            m = float(self.options.max_identity_pose)
            for i in (_YAW, _PITCH):
                self.neutral[i] = min(max(self.neutral[i], -m), m)
            # (the expressions are read from the face seen from the front: a turned frame's count; the pose is
            # the frame's, and the eyes are read again)
            self._unsure = {"rows": [], "signals": (0, 1, _YAW, _PITCH), "read": 0}

    def _settle_neutral(self, raw_sig) -> None:
        """A frontal frame once warm: the neutral signals still to be read are those of its reading and
        the ones before it (the warm-up's frontal rows for the eyes), as the warm-up's are of its rows
        (:func:`_rest_median_signals`: the eyes' resting rows, the mouth's at rest), until
        ``identity_frames`` frames have been read."""
        u = self._unsure
        u["rows"].append(np.asarray(raw_sig, np.float64))
        u["read"] += 1
        idx = list(u["signals"])
        self.neutral[idx] = _rest_median_signals(u["rows"], idx)[idx]
        if u["read"] >= max(int(self.options.identity_frames), 1):
            self._unsure = {}

    def _vote(self, row: list, estimate) -> None:
        """One estimate's categorical values (``update(estimate=...)``): the
        window becomes the last ``categorical_estimates`` estimates' (votes
        of frames counted before without keys are dropped) and a tie keeps
        the value drawn."""
        if not self._keyed:
            self._keyed = True
            self._cat_hist = deque(maxlen=self.options.categorical_estimates)
            self._cat_counts = [{} for _ in _CAT_IDX]
            self._glasses_by_headwear = {}
        self._voted = estimate
        self._count_categorical(row)

    def _count_categorical(self, row: list) -> None:
        """Adds this frame's rounded categorical values to the window (the oldest
        row leaves a full one) and updates the counts and most frequent values
        of the columns that changed (the smallest of the most frequent on a
        tie, what ``np.unique(..., return_counts=True)`` and ``argmax`` give);
        the glasses' the most frequent among the rows whose headwear is the
        headwear's most frequent value (the module doc)."""
        hist = self._cat_hist
        old = hist[0] if len(hist) == hist.maxlen else None
        hist.append(row)
        if old == row:
            return  # the same values in and out: the counts are unchanged
        mode = self._cat_mode
        keep = self._keyed and len(hist) > 1  # (per estimate, a tie keeps the value drawn)
        drawn_glasses = mode[_GLASSES_COL]  # (before the loop below counts them over every headwear)
        for j, (counts, v) in enumerate(zip(self._cat_counts, row)):
            if old is not None:
                if old[j] == v:
                    continue
                _take(counts, old[j])
            counts[v] = counts.get(v, 0) + 1
            mode[j] = _most_frequent(counts, mode[j] if keep else None)
        g, h = _GLASSES_COL, _HEADWEAR_COL
        joint = self._glasses_by_headwear
        if old is not None:
            _take(joint[old[h]], old[g])
            if not joint[old[h]]:
                del joint[old[h]]
        under = joint.setdefault(row[h], {})
        under[row[g]] = under.get(row[g], 0) + 1
        mode[g] = _most_frequent(joint[mode[h]], drawn_glasses if keep else None)

    def _transform_values(self, transform) -> list:
        """The transform as [log scale, angle (unwrapped), tx, ty]; with the filter,
        the translation in units of the face size (one beta fits every resolution)."""
        v = _decompose(transform)
        if self._prev_angle is not None:  # unwrap the angle
            v[1] = self._prev_angle + (v[1] - self._prev_angle + math.pi) % (2 * math.pi) - math.pi
        self._prev_angle = v[1]
        if self._filter is None:
            return v
        if self._scale_ref is None or not self._filter.initialized:
            self._scale_ref = math.exp(v[0])
        return [v[0], v[1], v[2] / self._scale_ref, v[3] / self._scale_ref]

    def _compose_filtered(self, f: list) -> np.ndarray:
        return compose([f[0], f[1], f[2] * self._scale_ref, f[3] * self._scale_ref])
