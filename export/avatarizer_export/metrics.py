"""Evaluation metrics (``avatarizer-export eval``), as defined in DESIGN.md
("Metrics"). numpy and scikit-image only; torch is imported lazily, through
:mod:`avatarizer_export.lpips`, by :func:`render_lpips` alone.

* :func:`param_l1` -- mean |ŷ − y| over a slice (the face by default) in the
  normalised [-1, 1] parameter space.
* :func:`render_l1` -- mean absolute pixel difference in [0, 1] of two renders.
* :func:`render_lpips` -- LPIPS (AlexNet, v0.1 heads) of two renders.
* :func:`identity_top1` / :func:`identity_topk` -- does an avatar's render
  land nearest to its own photo in landmark space? (:class:`LandmarkProbe`
  finds the render's landmarks.)
* :func:`delta_e` -- CIEDE2000 between sRGB colours.
* :func:`balanced_accuracy`, :func:`mae`, :func:`roc_auc` -- attribute prediction.

Renders for metrics are 256×256 on white (:data:`RENDER_SIZE`); RGBA images
are composited on white wherever images are compared.
"""
from __future__ import annotations

from typing import Any, Iterable, Sequence

import numpy as np

from avatarizer import schema
from avatarizer.align import LANDMARK_INDICES, NUM_LANDMARKS

from .images import composite_white  # noqa: F401  (part of this module's API)

__all__ = [
    "RENDER_SIZE",
    "IDENTITY_GROUPS",
    "composite_white",
    "param_l1",
    "render_l1",
    "render_lpips",
    "delta_e",
    "delta_e_lab",
    "identity_indices",
    "identity_distances",
    "identity_ranks",
    "identity_top1",
    "identity_variants",
    "pose_free",
    "symmetric",
    "identity_topk",
    "balanced_accuracy",
    "mae",
    "roc_auc",
    "LandmarkProbe",
]

#: Side of the square renders that metrics compare (on a white background).
RENDER_SIZE = 256

#: Landmark groups of :data:`avatarizer.align.LANDMARK_INDICES` used for the
#: identity distance: eyes, brows, nose, lips and the jaw / face oval (the
#: irises are left out: they move with gaze, not identity).
IDENTITY_GROUPS: tuple[str, ...] = (
    "right_eye", "left_eye", "right_eyebrow", "left_eyebrow", "nose", "lips_outer", "lips_inner",
    "face_oval",
)


# -- images -------------------------------------------------------------------


def render_l1(img_a, img_b):
    """Mean absolute pixel difference in [0, 1] of two uint8 RGB(A) renders
    (RGBA composited on white; RGB and RGBA may be mixed).

    Single H×W×C images give a float; N×H×W×C stacks give an (N,) float64
    array, one value per pair.
    """
    a, b = composite_white(img_a), composite_white(img_b)
    if a.shape != b.shape:
        raise ValueError(f"image shapes differ: {np.shape(img_a)} vs {np.shape(img_b)}.")
    d = np.abs(a.astype(np.float64) - b).mean(axis=(-3, -2, -1))
    return float(d) if d.ndim == 0 else d


def render_lpips(img_a, img_b, model=None, weights=None):
    """LPIPS (AlexNet, v0.1) of two uint8 renders or stacks of renders.

    ``model``: an :class:`avatarizer_export.lpips.LPIPS`; when omitted one is
    loaded from ``weights`` (a folder or file; default ``../shared/weights``).
    Load the model once and pass it in when calling this repeatedly.
    """
    from . import lpips

    if model is None:
        model = lpips.LPIPS.from_npz(weights, net="alex")
    return lpips.lpips_images(img_a, img_b, model)


# -- parameters ---------------------------------------------------------------


def param_l1(pred, target, sl: slice = schema.FACE, per_sample: bool = False):
    """Mean |ŷ − y| over the slice ``sl`` (default :data:`avatarizer.schema.FACE`)
    in the normalised [-1, 1] space of :func:`avatarizer.schema.normalize`.

    ``pred`` and ``target``: ``(..., 629)`` full vectors, or ``(..., width)``
    arrays already cut to ``sl``. Returns a float, or with ``per_sample``
    the mean over the last axis only.
    """
    start, stop, step = sl.indices(schema.PARAM_COUNT)
    width = len(range(start, stop, step))

    def cut(x, name):
        x = np.asarray(x, np.float32)
        if x.shape[-1] == schema.PARAM_COUNT and width != schema.PARAM_COUNT:
            return x[..., sl]
        if x.shape[-1] != width:
            raise ValueError(f"{name} must have {schema.PARAM_COUNT} or {width} values in the last axis, "
                             f"got shape {x.shape}.")
        return x

    p = schema.normalize(cut(pred, "pred"), sl)
    t = schema.normalize(cut(target, "target"), sl)
    if p.shape != t.shape:
        raise ValueError(f"pred and target shapes differ: {p.shape} vs {t.shape}.")
    d = np.abs(p.astype(np.float64) - t)
    return d.mean(axis=-1) if per_sample else float(d.mean())


# -- colour -------------------------------------------------------------------


def delta_e_lab(lab_a, lab_b) -> np.ndarray:
    """CIEDE2000 between CIELAB colours, ``(..., 3)`` each (broadcast)."""
    from skimage.color import deltaE_ciede2000

    a, b = np.broadcast_arrays(np.asarray(lab_a, np.float64), np.asarray(lab_b, np.float64))
    if a.shape[-1:] != (3,):
        raise ValueError(f"Lab colours must have 3 values in the last axis, got shape {a.shape}.")
    return deltaE_ciede2000(a, b, channel_axis=-1)


def delta_e(rgb_a, rgb_b):
    """CIEDE2000 colour difference between sRGB colours.

    ``rgb_a``, ``rgb_b``: ``(..., 3)`` floats in [0, 1] (uint8 is read as
    0-255), broadcast against each other; converted with
    ``skimage.color.rgb2lab`` (D65). Returns a float for single colours and
    an array of shape ``(...)`` otherwise.
    """
    from skimage.color import rgb2lab

    def lab(x):
        x = np.asarray(x)
        x = x / 255.0 if x.dtype == np.uint8 else x.astype(np.float64)
        if x.shape[-1:] != (3,):
            raise ValueError(f"RGB colours must have 3 values in the last axis, got shape {x.shape}.")
        if np.nanmin(x, initial=0.0) < 0.0 or np.nanmax(x, initial=1.0) > 1.0:
            raise ValueError("RGB float colours must lie in [0, 1].")
        flat = x.reshape(-1, 1, 3)  # rgb2lab wants an image-like array
        return rgb2lab(flat, channel_axis=-1).reshape(x.shape)

    d = delta_e_lab(lab(rgb_a), lab(rgb_b))
    return float(d) if np.ndim(d) == 0 else d


# -- identity -----------------------------------------------------------------


def identity_indices(groups: Iterable[str] = IDENTITY_GROUPS) -> np.ndarray:
    """Sorted, unique landmark indices of the named :data:`LANDMARK_INDICES` groups."""
    groups = (groups,) if isinstance(groups, str) else tuple(groups)
    unknown = [g for g in groups if g not in LANDMARK_INDICES]
    if unknown or not groups:
        raise ValueError(f"unknown landmark group(s) {unknown}; choose from {sorted(LANDMARK_INDICES)}.")
    return np.unique(np.concatenate([np.asarray(LANDMARK_INDICES[g]) for g in groups]))


def _landmarks(x, name: str) -> np.ndarray:
    arr = np.asarray(x, np.float64)
    if arr.ndim != 3 or arr.shape[1] != NUM_LANDMARKS or arr.shape[2] not in (2, 3):
        raise ValueError(f"{name} must have shape (N, {NUM_LANDMARKS}, 2), got {arr.shape}.")
    return arr[..., :2]


def identity_distances(photo_landmarks, render_landmarks, groups: Iterable[str] = IDENTITY_GROUPS) -> np.ndarray:
    """(N_renders, N_photos) matrix of mean Euclidean landmark distances over
    the ``groups`` landmarks (canonical frame). Rows or columns of faces
    without landmarks (any NaN among the used points) are NaN."""
    idx = identity_indices(groups)
    photos = _landmarks(photo_landmarks, "photo_landmarks")[:, idx]
    renders = _landmarks(render_landmarks, "render_landmarks")[:, idx]
    out = np.empty((len(renders), len(photos)))
    for i, r in enumerate(renders):  # row by row: (P, K, 2) at a time
        out[i] = np.sqrt(((photos - r) ** 2).sum(-1)).mean(-1)
    return out


def identity_ranks(photo_landmarks, render_landmarks, groups: Iterable[str] = IDENTITY_GROUPS) -> np.ndarray:
    """For avatar ``i``, how many other photos are at least as close to its
    render as its own photo ``i`` (0 = its own photo is strictly nearest).
    -1 where the render has no landmarks or its own photo has none (a miss).
    Photos without landmarks are never candidates. Ties count against the
    avatar."""
    photos = _landmarks(photo_landmarks, "photo_landmarks")
    renders = _landmarks(render_landmarks, "render_landmarks")
    if len(photos) != len(renders):
        raise ValueError(f"need one photo per avatar, got {len(photos)} photos and {len(renders)} renders.")
    d = identity_distances(photos, renders, groups)
    n = len(renders)
    ranks = np.full(n, -1, np.int64)
    for i in range(n):
        own = d[i, i]
        if not np.isfinite(own):
            continue
        others = np.delete(d[i], i)
        ranks[i] = int(np.sum(others[np.isfinite(others)] <= own))
    return ranks


def _detected(render_landmarks, groups) -> np.ndarray:
    r = _landmarks(render_landmarks, "render_landmarks")[:, identity_indices(groups)]
    return np.isfinite(r).all(axis=(1, 2))


def identity_topk(photo_landmarks, render_landmarks, k: int | Sequence[int] = (1, 5),
                  groups: Iterable[str] = IDENTITY_GROUPS) -> dict[str, Any]:
    """Top-k identity retrieval of avatars among their N photos.

    ``photo_landmarks``, ``render_landmarks``: ``(N, 478, 2)`` canonical-frame
    landmarks, row ``i`` of both from the same person; NaN rows where the
    landmark model found no face. Avatar ``i`` is a hit at ``k`` when fewer
    than ``k`` other photos are at least as close to its render as photo
    ``i`` (mean Euclidean distance over :func:`identity_indices` of
    ``groups``).

    **Undetected renders count as misses** in ``top{k}`` (whose denominator
    is N); ``top{k}_of_detected`` divides by the ``detected`` renders only.
    Returns ``{"top{k}": …, "top{k}_of_detected": …, "n": N, "detected": d,
    "detect_rate": d / N}`` for every requested ``k``.
    """
    ks = (k,) if isinstance(k, (int, np.integer)) else tuple(k)
    if not ks or any(int(v) < 1 for v in ks):
        raise ValueError(f"k must be a positive integer or a sequence of them, got {k!r}.")
    ranks = identity_ranks(photo_landmarks, render_landmarks, groups)
    n = len(ranks)
    detected = int(_detected(render_landmarks, groups).sum())
    out: dict[str, Any] = {}
    for v in ks:
        hits = int(((ranks >= 0) & (ranks < int(v))).sum())
        out[f"top{int(v)}"] = hits / n if n else float("nan")
        out[f"top{int(v)}_of_detected"] = hits / detected if detected else float("nan")
    out.update(n=n, detected=detected, detect_rate=detected / n if n else float("nan"))
    return out


def pose_free(landmarks3d) -> np.ndarray:
    """(N, 478, 2) frontal canonical landmarks from (N, 478, 3) MediaPipe
    x, y, z (frame pixels): head pose taken out by a 3D similarity fit onto
    the frontal mean face (:func:`avatarizer.landmarks.frontalize`). Rows
    with NaN stay NaN."""
    from avatarizer import landmarks as LM

    arr = np.asarray(landmarks3d, np.float64)
    if arr.ndim != 3 or arr.shape[1] != NUM_LANDMARKS or arr.shape[2] != 3:
        raise ValueError(f"landmarks3d must have shape (N, {NUM_LANDMARKS}, 3), got {arr.shape}.")
    out = np.full(arr.shape[:2] + (2,), np.nan)
    for i, x in enumerate(arr):
        if np.isfinite(x).all():
            out[i] = LM.frontalize(x)
    return out


def symmetric(canonical) -> np.ndarray:
    """Each (frontal) shape averaged with its own mirror image (landmark
    partners swapped, x negated), so only proportions count."""
    from avatarizer import landmarks as LM

    return LM.symmetrize(np.asarray(canonical, np.float64))


def identity_variants(photo3d, render3d, n: int = 100,
                      groups: Iterable[str] = IDENTITY_GROUPS) -> dict[str, Any]:
    """DESIGN.md's three identity numbers from 3D landmarks (NaN rows where
    no face was found), in consecutive groups of ``n`` (the last group takes
    the remainder, so it holds ``n`` to ``2n - 1`` photos; fewer than ``n``
    photos are one group), averaged: ``identity_top1`` (canonical 2D, pose
    in), ``identity_top1_frontal`` (pose out in 3D),
    ``identity_top1_symmetric`` (frontal shapes averaged with their mirror),
    plus ``identity_n`` (the size of the largest group: the most photos an
    avatar was picked among; 0 without photos),
    ``hits`` (per view, per avatar: its own photo strictly nearest) and
    ``hits_frontal`` (the frontal view's), for paired comparisons. With
    fewer than 2 photos (``identity_n`` < 2) every avatar is trivially
    nearest to its own photo: the three numbers are NaN (no number)."""
    from avatarizer import landmarks as LM

    p3, r3 = np.asarray(photo3d, np.float64), np.asarray(render3d, np.float64)
    if p3.shape != r3.shape:
        raise ValueError(f"need one photo per avatar, got {p3.shape} and {r3.shape}.")
    canon = lambda a: np.stack([LM.to_canonical(x) if np.isfinite(x).all() else np.full((len(x), 2), np.nan)
                                for x in a]) if len(a) else np.zeros((0, NUM_LANDMARKS, 2))  # noqa: E731
    views = {"identity_top1": (canon(p3), canon(r3))}
    pf, rf = pose_free(p3), pose_free(r3)
    views["identity_top1_frontal"] = (pf, rf)
    views["identity_top1_symmetric"] = (symmetric(pf), symmetric(rf))
    m = len(p3)
    n = min(int(n), m)
    bounds = [(a, a + n if a + 2 * n <= m else m) for a in range(0, m - n + 1, n)] if n else []
    # what was used, not what was asked: the last group holds up to 2n - 1 photos
    out: dict[str, Any] = {"identity_n": max((b - a for a, b in bounds), default=0)}
    out["hits"] = {}
    for key, (ph, rd) in views.items():
        hits = np.zeros(m, bool)
        for a, b in bounds:
            hits[a:b] = identity_ranks(ph[a:b], rd[a:b], groups) == 0  # misses (-1) are not hits
        groups_top1 = [hits[a:b].mean() for a, b in bounds]
        out[key] = float(np.mean(groups_top1)) if groups_top1 and n >= 2 else float("nan")
        out["hits"][key] = hits
    out["hits_frontal"] = out["hits"]["identity_top1_frontal"]
    return out


def identity_top1(photo_landmarks, render_landmarks, groups: Iterable[str] = IDENTITY_GROUPS) -> dict[str, Any]:
    """Fraction of avatars whose render is nearest to their own photo.

    See :func:`identity_topk` (``k=1``); undetected renders are misses.
    Returns ``{"top1", "n", "detected", "detect_rate", "top1_of_detected"}``.
    """
    return identity_topk(photo_landmarks, render_landmarks, k=1, groups=groups)


def paired_bootstrap(a, b, n_boot: int = 2000, seed: int = 0, ci: float = 0.95) -> dict[str, float]:
    """Mean of ``a - b`` over paired per-photo values (two methods on the same
    photos) with a bootstrap confidence interval over photos."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if a.shape != b.shape or a.ndim != 1 or a.size == 0:
        raise ValueError(f"need two equal-length 1-D arrays, got {a.shape} and {b.shape}.")
    d = a - b
    idx = np.random.default_rng(seed).integers(0, d.size, (n_boot, d.size))
    means = d[idx].mean(1)
    lo, hi = np.quantile(means, [(1 - ci) / 2, 1 - (1 - ci) / 2])
    return {"diff": float(d.mean()), "lo": float(lo), "hi": float(hi), "n": int(d.size)}


# -- attributes ---------------------------------------------------------------


def balanced_accuracy(y_true, y_pred) -> float:
    """Mean per-class recall over the classes present in ``y_true`` (binary
    or multiclass; labels of any comparable type). NaN if ``y_true`` is empty."""
    t, p = np.asarray(y_true), np.asarray(y_pred)
    if t.shape != p.shape or t.ndim != 1:
        raise ValueError(f"y_true and y_pred must be 1-D and of equal length, got {t.shape} and {p.shape}.")
    if t.size == 0:
        return float("nan")
    recalls = [float(np.mean(p[t == c] == c)) for c in np.unique(t)]
    return float(np.mean(recalls))


def roc_auc(pos, score) -> float | None:
    """ROC AUC of ``score`` for the boolean ``pos`` (the Mann-Whitney
    statistic; tied scores share their mean rank, ``scipy.stats.rankdata``),
    or None without both classes."""
    from scipy.stats import rankdata

    pos, score = np.asarray(pos, bool), np.asarray(score, np.float64)
    n1, n0 = int(pos.sum()), int((~pos).sum())
    if not n1 or not n0:
        return None
    return float((rankdata(score)[pos].sum() - n1 * (n1 + 1) / 2) / (n1 * n0))


def mae(y_true, y_pred) -> float:
    """Mean absolute error (e.g. of age in years)."""
    t, p = np.asarray(y_true, np.float64), np.asarray(y_pred, np.float64)
    if t.shape != p.shape:
        raise ValueError(f"y_true and y_pred shapes differ: {t.shape} vs {p.shape}.")
    return float(np.abs(t - p).mean()) if t.size else float("nan")


# -- landmark probe -------------------------------------------------------------


class LandmarkProbe:
    """Runs the runtime's landmark model on a rendered avatar.

    Wraps :class:`avatarizer.align.FaceAligner` with
    ``AlignOptions(mode="image", segmentation=False, max_faces=1)``, the same
    MediaPipe face mesh that aligns photos, so photo and render landmarks are
    comparable in the canonical frame. Use as a context manager or call
    :meth:`close`.

    >>> with LandmarkProbe() as probe:                        # doctest: +SKIP
    ...     lm = probe.from_params(avatarizer.schema.default())  # (478, 2) or None
    """

    def __init__(self, size: int = RENDER_SIZE):
        from avatarizer.align import AlignOptions, FaceAligner

        self.size = int(size)
        self._aligner = FaceAligner(AlignOptions(mode="image", segmentation=False, max_faces=1))

    def render(self, params) -> np.ndarray:
        """The avatar as the metrics see it: ``size``×``size`` RGBA on white."""
        import avatarizer

        return avatarizer.render(params, self.size, background="white")

    def __call__(self, image) -> np.ndarray | None:
        """Canonical ``(478, 2)`` float32 landmarks of the face in a uint8
        RGB(A) image (RGBA composited on white), or ``None`` if none is found."""
        arr = np.asarray(image)
        if arr.ndim == 3 and arr.shape[-1] == 4:
            arr = np.round(composite_white(arr) * 255.0).astype(np.uint8)
        face = self._aligner.align(arr)
        return None if face is None else np.asarray(face.canonical, np.float32)

    detect = __call__

    def landmarks3d(self, image) -> np.ndarray | None:
        """``(478, 3)`` float32 MediaPipe x, y, z (frame pixels) of the face
        in a uint8 RGB(A) image, or ``None`` if none is found (for the
        pose-free identity, :func:`pose_free`)."""
        arr = np.asarray(image)
        if arr.ndim == 3 and arr.shape[-1] == 4:
            arr = np.round(composite_white(arr) * 255.0).astype(np.uint8)
        face = self._aligner.align(arr)
        return None if face is None else np.asarray(face.landmarks, np.float32)

    def from_params(self, params) -> np.ndarray | None:
        """Renders ``params`` (256 px on white by default) and probes it."""
        return self(self.render(params))

    def batch(self, images_or_params) -> np.ndarray:
        """``(N, 478, 2)`` float32 canonical landmarks, NaN rows where no
        face was found. Accepts uint8 images (N×H×W×C or a list) or parameter
        vectors (N×629 float), which are rendered first."""
        items = images_or_params
        out = np.full((len(items), NUM_LANDMARKS, 2), np.nan, np.float32)
        for i, item in enumerate(items):
            is_params = np.ndim(item) == 1 and np.shape(item)[0] == schema.PARAM_COUNT
            lm = self.from_params(item) if is_params else self(item)
            if lm is not None:
                out[i] = lm
        return out

    def close(self) -> None:
        self._aligner.close()

    def __enter__(self) -> "LandmarkProbe":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
