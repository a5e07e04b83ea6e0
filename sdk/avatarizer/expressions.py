"""Live expressions and head pose: landmark signals → deformations of an identity avatar.

In video mode the avatar's *identity* (face shape, colours, hair, accessories)
is held steady by :class:`avatarizer.video.Tracker`, and what moves from frame
to frame is measured here, from the landmarks of the current frame with
the head pose taken out (the face as seen from the front, in the canonical
frame: :func:`avatarizer.landmarks.frontal_points` of
:attr:`avatarizer.align.AlignedFace.landmarks`; or the canonical landmarks as
they are, :attr:`~avatarizer.align.AlignedFace.canonical`), as a handful of
scalar *signals* (:data:`SIGNALS`), then applied to the identity avatar as
parametric deformations by :func:`apply`, the head's turn among them:

==============  ==========================================  ===================================
signal          measured from                               applied to the avatar as
==============  ==========================================  ===================================
eye_open_l/_r   lid gap / eye width (3 lid pairs per eye)   lids closing toward the lower lid
                                                            (blinks, squints, wide eyes)
gaze_x, gaze_y  iris centre minus eye centre, / eye width   both irises shifted (eye direction)
brow_l, brow_r  eye centre y minus brow y, / eye distance   brows (and creases) raised/lowered
mouth_open      inner lip gap (3 pairs), canonical units    lower lip and chin dropped, teeth
mouth_width     mouth corner distance                       lips widened/narrowed about centre
smile           lip centre y minus corner y                 mouth corners lifted
yaw, pitch      :attr:`AlignedFace.yaw` / ``.pitch`` (deg)  features shifted over a head-shaped
                                                            depth model, far side foreshortened
==============  ==========================================  ===================================

Eyes, gaze, brows, width, smile and pose are applied *relative* to the
person's neutral values (``neutral``, the tracker's running median of the same
signals), so a person with naturally narrow eyes is not drawn squinting.
The mouth is absolute: :func:`apply` first closes the identity's mouth (its
own lip gap, whatever it was while the identity was estimated), then opens
it by the measured gap. Head roll is not a deformation: it is carried by the
face transform (``Avatar.overlay`` / ``Avatar.render(roll=True)``).

Everything ends in :func:`avatarizer.schema.clip`, so the result is always a
valid parameter vector. Side naming follows the schema and the auto-artist:
``_l`` is the image's left (MediaPipe's "right" eye, landmarks 33/133/468).

The signal vector is a float64 array in the order of :data:`SIGNALS`;
:data:`SPANS` are their typical ranges, used to normalise them before the
One Euro filter (:mod:`avatarizer.filters`).
"""
from __future__ import annotations

import math
from functools import lru_cache

import numpy as np

from . import landmarks as L
from . import schema as S
from .align import _similarity3

__all__ = ["SIGNALS", "SPANS", "measure", "apply", "signal", "close_mouth", "pose_deform",
           "inner_lip_gap", "eye_opening"]

SIGNALS: tuple[str, ...] = ("eye_open_l", "eye_open_r", "gaze_x", "gaze_y", "brow_l", "brow_r",
                            "mouth_open", "mouth_width", "smile", "yaw", "pitch")
_I = {n: i for i, n in enumerate(SIGNALS)}
#: Typical span of each signal (what "1" means to the One Euro filter).
SPANS = np.array([0.3, 0.3, 0.3, 0.3, 0.1, 0.1, 0.15, 0.1, 0.05, 30.0, 30.0])

# ---------------------------------------------------------------- landmarks
# (image-left, image-right) = (MediaPipe right, MediaPipe left); the tables
# live in avatarizer.landmarks
_EYE_CORNERS = L.EYE_ENDS
_LID_PAIRS = L.LID_PAIRS
_IRIS = L.IRIS_CENTRES
_BROW = L.SIDES["brow_up"]
_LIP_PAIRS = L.INNER_LIP_PAIRS
_MOUTH_CORNERS = L.MOUTH_CORNERS
_LIP_MID = L.LIP_MIDDLES  # outer upper / lower lip centre

#: Head yaw and pitch are applied up to this many degrees (either way).
MAX_POSE = 45.0
#: The mouth is drawn at most this much narrower or wider than the identity's (the measured width over the
#: neutral one): the clips' widths reach 0.48 (an O) and 1.47-1.58 of their neutral (grins: d0, d9, d10);
#: at (0.7, 1.35) a grin was drawn a quarter narrower than the person's (session 64)
WIDTH_RATIO = (0.5, 1.6)
# Teeth show when the inner lip gap (canonical units) exceeds this.
TEETH_GAP = 0.03
# The jaw drops by this fraction of the lip gap.
JAW_FOLLOW = 0.55


def signal(signals, name: str) -> float:
    """One named value of a signal vector."""
    return float(np.asarray(signals)[_I[name]])


def measure(canonical, yaw: float = 0.0, pitch: float = 0.0, *, landmarks=None) -> np.ndarray:
    """The expression signals (:data:`SIGNALS`) of one face.

    Args:
        canonical: (478, 2) (or (478, 3)) landmarks in the canonical frame.
        yaw, pitch: head pose in degrees (``AlignedFace.yaw``/``.pitch``).
        landmarks: optional (478, 3) landmarks with their depth
            (``AlignedFace.landmarks``): the signals are then read from the
            face seen from the front (:func:`avatarizer.landmarks.frontal_points`,
            the artist's pose-free fit), not from ``canonical``, so that a nod
            or a turn does not read as a smile, a frown or raised brows (the
            mouth's corners lie behind its middle, the brows in front of the
            eyes). Video mode passes them.

    Returns:
        float64 array of ``len(SIGNALS)`` values.
    """
    if landmarks is not None:
        return _signals(L.frontal_points(landmarks, _MEASURED), yaw, pitch)
    lm = np.asarray(canonical)
    if lm.ndim != 2 or lm.shape[0] < 478 or lm.shape[1] < 2:
        raise ValueError(f"canonical landmarks must have shape (478, 2), got {lm.shape}")
    # only the landmarks the signals read (index tables below), then as float64
    pts = lm[_MEASURED, :2].astype(np.float64)
    if not np.isfinite(pts).all():
        raise ValueError("canonical landmarks contain NaN or infinity")
    return _signals(pts, yaw, pitch)


def _signals(pts: np.ndarray, yaw: float, pitch: float) -> np.ndarray:
    """:func:`measure` of the (len(_MEASURED), 2) float64 points it reads."""
    # every linear quantity at once (one product with a precomputed matrix), then scalars
    (ax0, ay0, ax1, ay1, cx0, cy0, cx1, cy1, gap0, gap1, ix0, iy0, ix1, iy1, by0, by1, lip,
     max_, may, mbx, mby, mid) = (_M_LINEAR @ pts.ravel()).tolist()
    w0 = max(math.sqrt(ax0 * ax0 + ay0 * ay0), 1e-6)
    w1 = max(math.sqrt(ax1 * ax1 + ay1 * ay1), 1e-6)
    eye_dist = max(math.hypot(cx1 - cx0, cy1 - cy0), 1e-6)
    return np.array([
        max(gap0, 0.0) / w0, max(gap1, 0.0) / w1,
        ((ix0 - cx0) / w0 + (ix1 - cx1) / w1) / 2, ((iy0 - cy0) / w0 + (iy1 - cy1) / w1) / 2,
        (cy0 - by0) / eye_dist, (cy1 - by1) / eye_dist,
        max(lip, 0.0),
        math.hypot(mbx - max_, mby - may),
        mid - 0.5 * (may + mby),
        float(yaw), float(pitch)])


def _measure_tables():
    """Positions, in the list of landmarks :func:`measure` reads, of each group it uses."""
    used = sorted({*np.ravel(_EYE_CORNERS), *np.ravel(_LID_PAIRS), *_IRIS, *np.ravel(_BROW),
                   *np.ravel(_LIP_PAIRS), *_MOUTH_CORNERS, *_LIP_MID})
    at = {j: i for i, j in enumerate(used)}
    pos = lambda t: np.vectorize(at.get)(np.array(t))  # noqa: E731
    return (np.array(used), pos(_EYE_CORNERS), pos(_LID_PAIRS), pos(_IRIS), pos(_BROW), pos(_LIP_PAIRS),
            pos(_MOUTH_CORNERS), pos(_LIP_MID))


_MEASURED, _M_CORNERS, _M_LIDS, _M_IRIS, _M_BROW, _M_LIPS, _M_MOUTH, _M_MID = _measure_tables()


def _linear_map() -> np.ndarray:
    """(22, 2 * len(_MEASURED)) weights of the linear quantities :func:`measure`
    reads from the flattened (x, y) of its landmarks, in the order it unpacks
    them: eye corner differences (x, y per eye), eye centres, mean lid gaps,
    irises, mean brow heights, the mean inner lip gap, the mouth corners and
    the mean outer lip middle height."""
    rows = []

    def row(terms):  # [(position, coordinate 0/1, weight)]
        r = np.zeros(2 * len(_MEASURED))
        for j, c, w in terms:
            r[2 * int(j) + c] += w
        rows.append(r)

    for e in (0, 1):
        a, b = _M_CORNERS[e]
        row([(b, 0, 1.0), (a, 0, -1.0)])
        row([(b, 1, 1.0), (a, 1, -1.0)])
    for e in (0, 1):
        a, b = _M_CORNERS[e]
        row([(a, 0, 0.5), (b, 0, 0.5)])
        row([(a, 1, 0.5), (b, 1, 0.5)])
    for e in (0, 1):
        n = len(_M_LIDS[e])
        row([t for up, lo in _M_LIDS[e] for t in ((lo, 1, 1.0 / n), (up, 1, -1.0 / n))])
    for e in (0, 1):
        row([(_M_IRIS[e], 0, 1.0)])
        row([(_M_IRIS[e], 1, 1.0)])
    for e in (0, 1):
        row([(j, 1, 1.0 / len(_M_BROW[e])) for j in _M_BROW[e]])
    row([t for up, lo in _M_LIPS for t in ((lo, 1, 1.0 / len(_M_LIPS)), (up, 1, -1.0 / len(_M_LIPS)))])
    for j in _M_MOUTH:
        row([(j, 0, 1.0)])
        row([(j, 1, 1.0)])
    row([(_M_MID[0], 1, 0.5), (_M_MID[1], 1, 0.5)])
    out = np.array(rows)
    out.setflags(write=False)
    return out


_M_LINEAR = _linear_map()
assert SIGNALS[:11] == ("eye_open_l", "eye_open_r", "gaze_x", "gaze_y", "brow_l", "brow_r", "mouth_open",
                        "mouth_width", "smile", "yaw", "pitch")  # the slots measure() fills


# ---------------------------------------------------------------- helpers on params
def _mean(v: np.ndarray) -> float:
    """``float(v.mean())`` of a 1-D float32 array (the float32 sum over the
    length, rounded to float32, as ndarray.mean computes it) without
    ndarray.mean's Python wrapper; these run several times per video frame."""
    return float(np.float32(float(np.add.reduce(v)) / v.shape[0]))


def _mid_ys(feature: str) -> slice:
    """The y coordinates of points 1..3 of a feature's points (a strided slice of the parameters)."""
    f = S.FEATURES[feature]
    return slice(f.offset + 3, f.offset + 8, 2)


def inner_lip_gap(params) -> float:
    """The avatar's mouth opening: mean gap between the inner lips' middle points."""
    p = np.asarray(params, np.float32)
    return _mean(p[_LI_MID] - p[_UI_MID])


def eye_opening(params, side: str) -> float:
    """The avatar's eye opening (``side`` "l" or "r"): lower minus upper lid, middle points."""
    p = np.asarray(params, np.float32)
    up, lo = _LID_MID_Y["lr".index(side)]
    return float(_mean(p[lo] - p[up]))


def _eye_opening64(p: np.ndarray, side: int) -> float:
    """:func:`eye_opening` of a float64 parameter vector, ``side`` 0 (image-left) or 1, in
    float64 without a copy (the video tracker's, a few times a frame)."""
    up, lo = _LID_MID_Y[side]
    return float(np.add.reduce(p[lo] - p[up])) / 3.0


@lru_cache(maxsize=None)
def _bump(n: int) -> np.ndarray:
    """0 at both ends, 1 in the middle, over n points along a lip (read-only, cached)."""
    b = np.sin(np.linspace(0.0, np.pi, n))
    b.setflags(write=False)
    return b


def _y_slice(feature: str) -> slice:
    """The y coordinates of a feature's points, as a strided slice (a view, no gather)."""
    f = S.FEATURES[feature]
    return slice(f.offset + 1, f.points.stop, 2)


def _ys(*features: str) -> np.ndarray:
    """Parameter indices of the y coordinates of the points of ``features``, in order."""
    return np.concatenate([np.arange(S.FEATURES[f].offset + 1, S.FEATURES[f].points.stop, 2) for f in features])


def _xys(*features: str) -> np.ndarray:
    """Parameter indices of the interleaved (x, y) coordinates of ``features``, in order."""
    return np.concatenate([np.arange(S.FEATURES[f].points.start, S.FEATURES[f].points.stop) for f in features])


_MOUTH = ("lip_upper_outer", "lip_lower_outer", "lip_inner_upper", "lip_inner_lower")
# Index tables, built once. A single feature's x or y coordinates are a strided
# slice of the parameters (a view: no gather, no scatter); several features'
# are index arrays.
_UO_Y, _FACE_Y = _y_slice("lip_upper_outer"), _y_slice("face")
_LI_MID, _UI_MID = _mid_ys("lip_inner_lower"), _mid_ys("lip_inner_upper")
_JAW_Y = _ys("face", "beard", "neck_shadow")  # what drops with the jaw
_UI_XY, _LI_XY = S.FEATURES["lip_inner_upper"].points, S.FEATURES["lip_inner_lower"].points
_MOUTH_Y = _ys(*_MOUTH)
_MOUTH_X = _MOUTH_Y - 1
_LOWER_Y = _ys("lip_inner_lower", "lip_lower_outer")
_HI_LOWER = S.HI[_LOWER_Y]
_TEETH = S.index("teeth.show")
_N_LI, _N_LO, _N_UI = (S.FEATURES[f].npoints for f in ("lip_inner_lower", "lip_lower_outer", "lip_inner_upper"))
_LI_BUMP, _LO_BUMP, _UI_BUMP = _bump(_N_LI), _bump(_N_LO), _bump(_N_UI)
_LI_NORM = 1.1 * float(_LI_BUMP[1:-1].mean())
_LIPS_Y = _ys("lip_inner_lower", "lip_lower_outer", "lip_inner_upper")  # what _open_by moves
_LOWER_BUMP, _N_LOWER = np.concatenate([_LI_BUMP, _LO_BUMP]), _N_LI + _N_LO


def close_mouth(params) -> np.ndarray:
    """The same avatar with its lips together (lower lip and jaw raised by the gap)."""
    p = np.array(params, np.float32, copy=True)
    _close_mouth(p)
    return p


def _close_mouth(p: np.ndarray) -> None:
    """:func:`close_mouth`, in place on a (629,) float32 array."""
    gap = _mean(p[_LI_MID] - p[_UI_MID])  # inner_lip_gap(p)
    if gap > 0:
        _open_by(p, -gap)
    mid = 0.5 * (p[_UI_XY] + p[_LI_XY])
    p[_UI_XY] = mid
    p[_LI_XY] = mid
    p[_TEETH] = 0.0


def _open_by(p: np.ndarray, d: float) -> None:
    """Opens the mouth by ``d`` (canonical units; negative closes), in place: the
    avatar's :func:`inner_lip_gap` grows by exactly ``d`` (the lower lip drops by
    10/11 of it, the upper lip lifts by 1/11), and the jaw drops by
    ``JAW_FOLLOW * d``."""
    k = d / _LI_NORM  # the gap is measured over the middle points
    # the lower lips drop by k times their bump, the upper inner lip lifts by a
    # tenth of that (p - x is p + (-x), exactly): one gather, add, scatter
    inc = np.empty(len(_LIPS_Y))
    np.multiply(_LOWER_BUMP, k, out=inc[:_N_LOWER])
    np.multiply(_UI_BUMP, -(0.1 * k), out=inc[_N_LOWER:])
    p[_LIPS_Y] += inc
    # the jaw: outline, beard and their shadow below the mouth, weighted toward the chin
    mouth_y = _mean(p[_UO_Y])
    chin_y = float(np.maximum.reduce(p[_FACE_Y]))
    span = max(chin_y - mouth_y, 1e-3)
    q = p[_JAW_Y]
    w = (q - mouth_y) / span  # float32; clipped to [0, 1] in place (np.clip's wrapper costs more)
    np.maximum(w, 0.0, out=w)
    np.minimum(w, 1.0, out=w)
    p[_JAW_Y] = q + JAW_FOLLOW * d * w


def _mouth_points():
    return _MOUTH


# ---------------------------------------------------------------- head pose
# A head-shaped depth model in the canonical frame (eyes at y = -0.1, mouth at 0.4):
# an ellipsoid for the front of the face plus extra depth for the nose and lips.
_ELLIPSOID = (0.72, 1.05, 0.05, 0.5)  # semi-axis x, semi-axis y, centre y, depth
_EXTRA_DEPTH = {"nose_base": 0.22, "nostril_l": 0.17, "nostril_r": 0.17, "nose_bridge": 0.14,
                "nose_shadow": 0.10, "nose_highlight": 0.16, "lip_upper_outer": 0.06,
                "lip_lower_outer": 0.05, "lip_inner_upper": 0.05, "lip_inner_lower": 0.05,
                "moustache": 0.07}
# Silhouette features: their depth is 0 (they only foreshorten). The face outline
# is a silhouette at its sides but its chin and forehead are in front: its depth
# falls from _OUTLINE_DEPTH on the midline to 0 at |x| = _ELLIPSOID[0].
_SILHOUETTE = {"ear_l", "ear_r", "hair_back"}
_OUTLINE_DEPTH = 0.3
# The body does not turn with the head.
_BODY = {"neck", "neck_shadow", "clothes"}
_POINT_FEATURES = [f for f in S.FEATURES.values() if f.npoints > 0 and f.name not in _BODY]
_CENTRES = ("iris_l", "iris_r", "blush_l", "blush_r")  # features with (cx, cy)


def _depth(xy: np.ndarray, feature: str) -> np.ndarray:
    a, b, yc, d = _ELLIPSOID
    if feature in _SILHOUETTE:
        return np.zeros(len(xy))
    if feature == "face":
        return _OUTLINE_DEPTH * np.sqrt(np.clip(1.0 - (xy[:, 0] / a) ** 2, 0.0, None))
    u = 1.0 - (xy[:, 0] / a) ** 2 - ((xy[:, 1] - yc) / b) ** 2
    return d * np.sqrt(np.clip(u, 0.0, None)) + _EXTRA_DEPTH.get(feature, 0.0)


_EYE_ENDS = np.array([[S.FEATURES[f"eye_{s}_upper"].points.start + j for j in (0, 1)] +
                      [S.FEATURES[f"eye_{s}_upper"].points.stop - 2 + j for j in (0, 1)] for s in "lr"])
_LIP_ENDS = np.array([S.FEATURES["lip_upper_outer"].points.start + j for j in (0, 1)] +
                     [S.FEATURES["lip_upper_outer"].points.stop - 2 + j for j in (0, 1)])


_ANCHOR_ENDS = np.concatenate([_EYE_ENDS, _LIP_ENDS[None]])


def _similarity(src, dst) -> np.ndarray:
    """Least-squares similarity src → dst, (2, 3), for three points (sequences of
    three (x, y) floats): the alignment's fit (Umeyama's, closed 2-D form, never
    a reflection); the identity when the source points coincide."""
    m = _similarity3(src, dst)
    return np.array([[1.0, 0, 0], [0, 1.0, 0]]) if m is None else m


def _point_tables():
    """x/y indices of every turned point, its depth model and extra depth."""
    px, py, kind, extra = [], [], [], []
    for f in _POINT_FEATURES:
        for i in range(f.npoints):
            px.append(f.offset + 2 * i)
            py.append(f.offset + 2 * i + 1)
            kind.append(0 if f.name in _SILHOUETTE else 1 if f.name == "face" else 2)
            extra.append(_EXTRA_DEPTH.get(f.name, 0.0))
    for name in _CENTRES:
        i = S.index(f"{name}.cx")
        px.append(i)
        py.append(i + 1)
        kind.append(0 if name in _SILHOUETTE else 2)
        extra.append(_EXTRA_DEPTH.get(name, 0.0))
    order = np.argsort(kind, kind="stable")  # silhouettes, then the outline, then the inner points
    return np.array(px)[order], np.array(py)[order], np.array(kind)[order], np.array(extra)[order]


_PX, _PY, _KIND, _EXTRA = _point_tables()
_PXY = np.stack([_PX, _PY], 1).ravel()  # interleaved (x, y) of every turned point: one gather
# the points of each depth model are consecutive: slices, not index arrays
_OUTLINE = slice(int(np.searchsorted(_KIND, 1)), int(np.searchsorted(_KIND, 2)))
_INNER = slice(_OUTLINE.stop, len(_KIND))
_INNER_EXTRA = _EXTRA[_INNER]


def _depths(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """:func:`_depth` for all points of :func:`_point_tables` at once (their x and
    y as two contiguous float64 arrays: arithmetic on strided views costs more).
    The outline and the inner points in one pass: the outline's y term is 0,
    its scale :data:`_OUTLINE_DEPTH` and its extra depth 0 (``1 - x² - 0`` and
    ``s + 0`` change nothing)."""
    a, b, yc, _ = _ELLIPSOID
    z = np.zeros(len(x))  # silhouettes: 0
    xs = x[_SHAPED] / a
    ys = (y[_SHAPED] - yc) / b
    yy = ys * ys
    yy[:_N_OUTLINE] = 0.0
    r = 1.0 - xs * xs - yy
    np.maximum(r, 0.0, out=r)
    z[_SHAPED] = _DEPTH_SCALE * np.sqrt(r) + _SHAPED_EXTRA
    return z


_SHAPED = slice(_OUTLINE.start, _INNER.stop)  # the outline, then the inner points
_N_OUTLINE = _OUTLINE.stop - _OUTLINE.start
_DEPTH_SCALE = np.r_[np.full(_N_OUTLINE, _OUTLINE_DEPTH), np.full(_INNER.stop - _INNER.start, _ELLIPSOID[3])]
_SHAPED_EXTRA = np.r_[np.zeros(_N_OUTLINE), _INNER_EXTRA]


assert len(np.unique(_PXY)) == len(_PXY)  # every turned coordinate once: a gather and a scatter are inverse
# where the anchors' coordinates are in the gathered _PXY values (the turned points include them)
_ANCHOR_AT = np.searchsorted(_PXY, _ANCHOR_ENDS.ravel(), sorter=np.argsort(_PXY))
_ANCHOR_AT = np.argsort(_PXY)[_ANCHOR_AT]
assert (_PXY[_ANCHOR_AT] == _ANCHOR_ENDS.ravel()).all()
# per anchor (x, y): where its first and its second end are in the gathered values
_ANCHOR_A, _ANCHOR_B = _ANCHOR_AT.reshape(3, 2, 2)[:, 0].ravel(), _ANCHOR_AT.reshape(3, 2, 2)[:, 1].ravel()
_ANCHOR_ENDS_A, _ANCHOR_ENDS_B = _PXY[_ANCHOR_A], _PXY[_ANCHOR_B]  # the same, as parameter indices


def pose_deform(params, yaw: float, pitch: float) -> np.ndarray:
    """Turns the drawn head by ``yaw`` and ``pitch`` degrees (not clipped).

    Every point of the face is lifted onto :data:`_ELLIPSOID` (plus extra depth
    for the nose and lips; the ears and the back hair are silhouettes of depth
    0, the face outline has depth only around the chin and forehead), rotated
    in 3-D and projected back; then the eyes and mouth are brought back to
    where they were by a similarity fit, as the alignment stage does for a
    real turned face. The result: inner features shift toward the turn
    relative to the outline, the far side of the face narrows, and the nose
    moves most. The neck, its shadow and the clothes (the body) stay put.
    """
    p = np.array(params, np.float32, copy=True)
    _turn(p, float(yaw), float(pitch))
    return p


def _gathered_anchors(g: np.ndarray, a: np.ndarray, b: np.ndarray) -> list:
    """The eye centres and the mouth centre (the middles of the upper lids' and
    of the outer upper lip's ends) as three (x, y) floats: the float32 sum of
    the two ends, ``g[a]`` and ``g[b]``, halved (``g``: the parameters with
    ``_ANCHOR_ENDS_A/B``, or the turned coordinates in the order of ``_PXY``
    with ``_ANCHOR_A/B``)."""
    x0, y0, x1, y1, x2, y2 = (0.5 * (g[a] + g[b])).tolist()
    return [(x0, y0), (x1, y1), (x2, y2)]


def _turn(p: np.ndarray, yaw: float, pitch: float) -> None:
    """:func:`pose_deform`, in place on a (629,) float32 array: the turned
    points' x and y gathered apart (contiguous arithmetic), one scatter; the
    anchors read from the parameters before the turn and from the turned
    values after it (no scatter and gather in between)."""
    if abs(yaw) < 1e-3 and abs(pitch) < 1e-3:
        return
    ty, tp = math.radians(yaw), math.radians(pitch)
    cy_, sy_, cp_, sp_ = math.cos(ty), math.sin(ty), math.cos(tp), math.sin(tp)
    before = _gathered_anchors(p, _ANCHOR_ENDS_A, _ANCHOR_ENDS_B)
    x, y = p[_PX].astype(np.float64), p[_PY].astype(np.float64)
    z = _depths(x, y)
    turned = np.empty((len(x), 2))
    turned[:, 0] = x * cy_ + z * sy_          # yaw: about the vertical axis, nose toward +x
    z1 = z * cy_ - x * sy_
    turned[:, 1] = y * cp_ - z1 * sp_         # pitch: looking up moves the front up (y down)
    g = turned.astype(np.float32)             # what the parameters hold once turned
    m = _similarity(_gathered_anchors(g.ravel(), _ANCHOR_A, _ANCHOR_B), before)
    # (a matrix product, as before: numpy's matmul rounds differently from x * a + y * b)
    xy = g.astype(np.float64) @ m[:, :2].T + m[:, 2]
    p[_PXY] = xy.ravel()


# ---------------------------------------------------------------- apply
def apply(identity, signals, neutral=None, *, expressions: bool = True, pose: bool = True,
          max_pose: float = MAX_POSE) -> np.ndarray:
    """The identity avatar with the measured expression and head pose.

    Args:
        identity: (629,) parameters of the person at rest.
        signals: current signals (:func:`measure`, possibly filtered).
        neutral: the person's neutral signals (same layout); defaults to
            ``signals`` themselves for everything but the mouth (so only the
            mouth opening is applied).
        expressions: apply eyes, gaze, brows and mouth.
        pose: apply yaw and pitch (relative to ``neutral``), each clamped to
            ``±max_pose`` degrees.

    Returns:
        (629,) float32, passed through :func:`avatarizer.schema.clip`.
    """
    sig = np.asarray(signals, np.float64)
    neu = sig if neutral is None else np.asarray(neutral, np.float64)
    if sig.shape != (len(SIGNALS),) or neu.shape != (len(SIGNALS),):
        raise ValueError(f"signals must have {len(SIGNALS)} values ({', '.join(SIGNALS)})")
    p = S.as_params(identity)  # a new float32 array
    _apply_into(p, sig.tolist(), neu.tolist(), expressions, pose, max_pose)
    return S.clip(p)


def _apply_into(p: np.ndarray, sig: list, neu: list, expressions: bool, pose: bool, max_pose: float) -> None:
    """:func:`apply` before the final clip, in place on a (629,) float32 array, with
    the signals as lists of floats (the video tracker's path: no checks, no copies)."""
    if expressions:
        _close_mouth(p)
        _apply_mouth(p, sig, neu)
        _apply_eyes_brows(p, sig, neu)
    if pose:
        yaw = min(max(sig[9] - neu[9], -max_pose), max_pose)
        pitch = min(max(sig[10] - neu[10], -max_pose), max_pose)
        _turn(p, yaw, pitch)


_N_UO = S.FEATURES["lip_upper_outer"].npoints


def _apply_mouth(p, sig, neu):
    gap = min(max(sig[6], 0.0), 0.35)                                  # mouth_open
    ratio = min(max(sig[7] / max(neu[7], 1e-6), WIDTH_RATIO[0]), WIDTH_RATIO[1])  # mouth_width
    lift = min(max(sig[8] - neu[8], -0.05), 0.06)                      # smile
    # width and smile, about the mouth centre (x and y gathered apart: contiguous arithmetic)
    x = p[_MOUTH_X]
    x0, x1 = x[0], x[_N_UO - 1]  # the outer upper lip's ends (float32)
    cx = 0.5 * (x0 + x1)
    half = max(0.5 * abs(x1 - x0), 1e-3)
    dx = x - cx
    rel = np.abs(dx / half)  # 0 .. 1 along the mouth (its clip at 0 does nothing)
    np.minimum(rel, 1, out=rel)
    p[_MOUTH_X] = cx + dx * ratio
    p[_MOUTH_Y] -= lift * rel ** 2
    if gap > 1e-4:
        _open_by(p, gap)
        _fit_mouth_in_range(p)
    p[_TEETH] = 1.0 if gap > TEETH_GAP else 0.0


def _fit_mouth_in_range(p) -> None:
    """A wide-open mouth can push the lower lip below its schema range; then the
    whole mouth moves up by the overflow (as far as the upper lip's range
    allows), so that clipping does not eat the opening."""
    over = max(0.0, float(np.maximum.reduce(p[_LOWER_Y] - _HI_LOWER)))
    if over <= 0:
        return
    room = float(np.min(p[_MOUTH_Y] - S.LO[_MOUTH_Y]))
    shift = min(over + 1e-4, max(room, 0.0))
    p[_MOUTH_Y] -= shift


_IRIS_C = {sd: S.index(f"iris_{sd}.cx") for sd in "lr"}  # cx, and cy right after it


def _pair(feature: str) -> np.ndarray:
    """(2, n, 2) parameter indices of a left/right feature's points (``{}`` is the side)."""
    return np.stack([_xys(feature.format(sd)).reshape(-1, 2) for sd in "lr"])


_LIDS_UP, _LIDS_LO = _pair("eye_{}_upper"), _pair("eye_{}_lower")  # (side, point, xy)
#: each eye's (upper, lower) lid middle points' y (what :func:`eye_opening` reads)
_LID_MID_Y = tuple((_LIDS_UP[s][1:4, 1].copy(), _LIDS_LO[s][1:4, 1].copy()) for s in (0, 1))
_CREASES_Y = _pair("eye_{}_crease")[..., 1]
_IRIS_XY = np.array([[_IRIS_C[sd], _IRIS_C[sd] + 1] for sd in "lr"])  # (side, xy)
_EYE_EXTRA = np.concatenate([_CREASES_Y.ravel(), _IRIS_XY.ravel()])  # one gather, one scatter
_N_CREASES = _CREASES_Y.size
_BROWS_Y = (_y_slice("brow_l"), _y_slice("brow_r"))
_F32_03 = np.float32(0.3)


def _apply_eyes_brows(p, sig, neu):
    """Both eyes at once: lids opened/closed about a pivot near the lower lid,
    creases and irises following, irises shifted by the gaze; then the brows
    (and creases) raised or lowered, by the brow signals times the distance
    between the shifted irises."""
    up, lo = p[_LIDS_UP], p[_LIDS_LO]                      # (2 sides, points, xy) float32, contiguous
    e = (up[:, -1] - up[:, 0]).astype(np.float64)
    eye_w = np.hypot(e[:, 0], e[:, 1])
    # eye_open_l / _r relative to neutral; below ~15% of it the lids meet
    # (MediaPipe rarely reads a full 0)
    k = [min(max((min(max(sig[i] / max(neu[i], 1e-3), 0.0), 1.4) - 0.15) / 0.85, 0.0), 1.4) for i in (0, 1)]
    k = np.array(k, np.float32)[:, None, None]
    pivot = lo + _F32_03 * (up - lo)
    new_up = pivot + k * (up - pivot)
    dy = np.add.reduce((new_up - up)[:, 1:4, 1], 1) / 3      # (2,) float32, the means of the middle points
    p[_LIDS_LO] = pivot + k * (lo - pivot)
    p[_LIDS_UP] = new_up
    dy64 = dy.astype(np.float64)
    extra = p[_EYE_EXTRA]                                  # creases' y, then the irises' (x, y)
    creases, iris = extra[:_N_CREASES].reshape(2, -1), extra[_N_CREASES:].reshape(2, 2)  # views
    creases += (0.6 * dy64)[:, None]
    gx = min(max(sig[2] - neu[2], -0.3), 0.3)   # gaze_x
    gy = min(max(sig[3] - neu[3], -0.2), 0.2)   # gaze_y
    # the iris sinks a little with a closing lid (it is clipped to the opening anyway)
    iris[:, 1] += 0.3 * dy64
    iris[:, 0] += gx * eye_w
    iris[:, 1] += gy * eye_w
    # brows
    (lx, ly), (rx, ry) = iris.tolist()
    eye_dist = math.hypot(float(np.float32(rx) - np.float32(lx)), float(np.float32(ry) - np.float32(ly))) or 0.5
    for j, brow in ((0, _BROWS_Y[0]), (1, _BROWS_Y[1])):
        d = min(max(sig[4 + j] - neu[4 + j], -0.12), 0.15) * eye_dist   # brow_l / _r
        p[brow] -= d
        creases[j] -= 0.25 * d
    p[_EYE_EXTRA] = extra
