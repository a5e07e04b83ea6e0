"""MediaPipe face-mesh landmarks in one place: index tables, the mirror
partner of every landmark, the population mean face, and head pose taken
out in 3D ("frontalisation").

Everything in the SDK that names a landmark index reads it from here
(:mod:`avatarizer.align`, the artist, the evaluation's identity metrics).

Frontalisation. MediaPipe's 478 landmarks carry depth (z, in about the
unit of x). :func:`frontalize` fits a 3D similarity (rotation, scale,
translation; Umeyama's least squares) from the face's *rigid* landmarks
(forehead, temples, eyes, nose, upper cheeks: points that expressions move
little) onto the frontal mean face :data:`MEAN_FACE`, applies it to all
points and returns their x, y in the canonical frame (eye centres at
(±0.25, −0.10), mouth centre at (0, 0.40)). A turned or tilted head then
reads as the same face seen from the front; the face's own asymmetries
and expression stay.

The mean face and the mirror table are data (``data/mean_face.npz``),
computed by ``avatarizer-export data meanface`` from the training photos
(generalised Procrustes in 3D, then symmetrised), so no photo is needed at
run time.
"""
from __future__ import annotations

import math
from functools import lru_cache
from pathlib import Path

import numpy as np

__all__ = [
    "NUM_LANDMARKS",
    "CANONICAL_TARGETS",
    "CANONICAL_TARGET_NAMES",
    "EYE_CORNERS",
    "MOUTH_CORNERS",
    "LANDMARK_INDICES",
    "FACE_OVAL",
    "MeanFace",
    "mean_face",
    "umeyama",
    "frontalize",
    "frontal_points",
    "to_canonical",
    "exaggerate",
    "symmetrize",
]

#: Number of landmarks per face (468 mesh points + 2 × 5 iris points).
NUM_LANDMARKS = 478

#: Names of the rows of :data:`CANONICAL_TARGETS`, in order.
CANONICAL_TARGET_NAMES = ("eye_image_left", "eye_image_right", "mouth_centre")

#: Canonical positions (x, y) of the alignment anchors, shape (3, 2), read-only:
#: the eye on the image's left, the eye on the image's right, the mouth centre.
CANONICAL_TARGETS = np.array([[-0.25, -0.10], [0.25, -0.10], [0.0, 0.40]], dtype=np.float64)
CANONICAL_TARGETS.setflags(write=False)

#: Outer and inner corner landmarks of each eye, in MediaPipe's (subject's)
#: naming: ((33, 133) right eye, (362, 263) left eye). An eye centre is the
#: midpoint of its two corners.
EYE_CORNERS = ((33, 133), (362, 263))
#: Left and right mouth corner landmarks; the mouth centre is their midpoint.
MOUTH_CORNERS = (61, 291)

#: Standard MediaPipe face mesh landmark groups, derived from the connection
#: sets in ``mediapipe.solutions.face_mesh_connections`` (``FACEMESH_*``).
#: "left"/"right" follow MediaPipe and mean the *subject's* left/right, so
#: ``right_eye`` is on the image's left in an unmirrored photo. Closed
#: contours (``face_oval``, the eyes, the lips) are listed in polygon order;
#: each eyebrow is its upper edge followed by its lower edge reversed (an
#: outline); ``nose`` is the ridge (168 → 2) followed by the loop around the
#: tip and nostrils; each iris is its centre followed by its 4 contour points.
LANDMARK_INDICES: dict[str, tuple[int, ...]] = {
    "face_oval": (
        10, 338, 297, 332, 284, 251, 389, 356, 454, 323, 361, 288, 397, 365,
        379, 378, 400, 377, 152, 148, 176, 149, 150, 136, 172, 58, 132, 93,
        234, 127, 162, 21, 54, 103, 67, 109,
    ),
    "right_eye": (33, 7, 163, 144, 145, 153, 154, 155, 133, 173, 157, 158, 159, 160, 161, 246),
    "left_eye": (362, 382, 381, 380, 374, 373, 390, 249, 263, 466, 388, 387, 386, 385, 384, 398),
    "right_eyebrow": (70, 63, 105, 66, 107, 55, 65, 52, 53, 46),
    "left_eyebrow": (300, 293, 334, 296, 336, 285, 295, 282, 283, 276),
    "lips_outer": (
        61, 146, 91, 181, 84, 17, 314, 405, 321, 375, 291, 409, 270, 269, 267, 0, 37, 39, 40, 185,
    ),
    "lips_inner": (
        78, 95, 88, 178, 87, 14, 317, 402, 318, 324, 308, 415, 310, 311, 312, 13, 82, 81, 80, 191,
    ),
    "nose": (
        168, 6, 197, 195, 5, 4, 1, 19, 94, 2,
        97, 98, 64, 48, 115, 220, 45, 275, 440, 344, 278, 294, 327, 326,
    ),
    "right_iris": (468, 469, 470, 471, 472),
    "left_iris": (473, 474, 475, 476, 477),
}
FACE_OVAL = LANDMARK_INDICES["face_oval"]
#: the face's outline below the ears per side (image-left, image-right): from
#: the ear's level (234, 454) down to the chin's bottom (152), from FACE_OVAL
LOWER_OUTLINE = (FACE_OVAL[18:29][::-1], FACE_OVAL[8:19])

_DATA = Path(__file__).resolve().with_name("data") / "mean_face.npz"


class MeanFace:
    """The population mean face (``points``: (478, 3) float64, frontal,
    mirror-symmetric, x/y in canonical units, z in the same unit), the
    mirror partner of every landmark (``mirror``: (478,) int64, an
    involution) and the rigid landmarks the pose fit uses (``rigid``)."""

    def __init__(self, points, mirror, rigid):
        self.points = np.asarray(points, np.float64)
        self.mirror = np.asarray(mirror, np.int64)
        self.rigid = np.asarray(rigid, np.int64)
        if self.points.shape != (NUM_LANDMARKS, 3) or self.mirror.shape != (NUM_LANDMARKS,):
            raise ValueError("mean face data has the wrong shape")
        if not np.array_equal(self.mirror[self.mirror], np.arange(NUM_LANDMARKS)):
            raise ValueError("the landmark mirror table is not an involution")
        for a in (self.points, self.mirror, self.rigid):
            a.setflags(write=False)

    @classmethod
    def load(cls, path: Path | str = _DATA) -> "MeanFace":
        """``ModelError`` (:mod:`avatarizer.errors`) naming the file where it is missing or cannot be
        read as a mean face (a cut or damaged file raised zipfile's BadZipFile, numpy's ValueError)."""
        try:
            with open(path, "rb") as f, np.load(f, allow_pickle=False) as z:  # (closed on any error)
                return cls(z["points"], z["mirror"], z["rigid"])
        except Exception as exc:  # noqa: BLE001 - whatever np.load raises on the bytes
            from .errors import ModelError

            raise ModelError(f"{path}: not a readable mean face file ({type(exc).__name__}: {exc}); reinstall "
                             "the package") from None

    def save(self, path: Path | str = _DATA) -> None:
        np.savez(path, points=self.points.astype(np.float32), mirror=self.mirror, rigid=self.rigid)


@lru_cache(maxsize=1)
def mean_face() -> MeanFace:
    """The shipped :class:`MeanFace` (loaded once)."""
    return MeanFace.load()


def umeyama(src: np.ndarray, dst: np.ndarray, scale: bool = True):
    """Least-squares similarity ``dst ≈ s · R @ src + t`` (Umeyama 1991) for
    (N, d) point sets, d = 2 or 3. Returns ``(s, R, t)``; R is a proper
    rotation (no reflection)."""
    src = np.asarray(src, np.float64)
    dst = np.asarray(dst, np.float64)
    mu_s, mu_d = src.mean(0), dst.mean(0)
    a, b = src - mu_s, dst - mu_d
    cov = b.T @ a / len(src)
    U, D, Vt = np.linalg.svd(cov)
    E = np.eye(src.shape[1])
    if np.linalg.det(U) * np.linalg.det(Vt) < 0:
        E[-1, -1] = -1.0
    R = U @ E @ Vt
    var = (a ** 2).sum() / len(src)
    s = float((D * np.diag(E)).sum() / var) if scale and var > 0 else 1.0
    return s, R, mu_d - s * R @ mu_s


def _mirrored(eye0: complex, eye1: complex, mouth: complex) -> bool:
    """Whether the eye centres (MediaPipe's right eye, then its left) and the mouth centre are the mirror
    image of :data:`CANONICAL_TARGETS`' triangle (the eyes in the other order around it), so that the
    eyes change places before a similarity, which cannot mirror, is fitted. A face rolled past 90 degrees
    is not mirrored: the eyes' order along x (the test before session 64) swapped its eyes, and its
    canonical landmarks came out squashed (mouth_width read 0.08 where upright 0.34)."""
    return ((eye1 - eye0).conjugate() * (mouth - eye0)).imag < 0.0


def to_canonical(points: np.ndarray) -> np.ndarray:
    """(478, 2) x, y of ``points`` (478, ≥2) mapped by the 2D similarity
    that puts the eye centres and the mouth centre at
    :data:`CANONICAL_TARGETS` (the alignment's canonical frame)."""
    xy = np.asarray(points, np.float64)[:, :2]
    (a0, a1), (b0, b1) = EYE_CORNERS
    eyes = np.stack([(xy[a0] + xy[a1]) * 0.5, (xy[b0] + xy[b1]) * 0.5])
    mouth = (xy[MOUTH_CORNERS[0]] + xy[MOUTH_CORNERS[1]]) * 0.5
    if _mirrored(complex(*eyes[0]), complex(*eyes[1]), complex(*mouth)):
        eyes = eyes[::-1]
    anchors = np.concatenate([eyes, [mouth]])
    s, R, t = umeyama(anchors, CANONICAL_TARGETS)
    return xy @ (s * R).T + t


def frontalize(landmarks: np.ndarray, mean: MeanFace | None = None) -> np.ndarray:
    """Head pose taken out: (478, 2) canonical x, y of the face seen from the
    front. ``landmarks``: (478, 3) MediaPipe x, y, z (frame pixels, as
    :attr:`avatarizer.align.AlignedFace.landmarks`). A (478, 2) input has no
    depth, so only the 2D alignment is done. (:func:`frontal_points` at
    every landmark.)"""
    return frontal_points(landmarks, _ROWS, mean)


@lru_cache(maxsize=4)
def _frontal_tables(mean: MeanFace) -> tuple[np.ndarray, np.ndarray]:
    """(3, 478) weights whose product with a face's (478, 3) landmarks is the
    cross-covariance of its rigid landmarks with the centred mean face's (a
    centred side makes the face's own centring unnecessary), and the rigid
    landmarks' indices."""
    m = mean.points[mean.rigid]
    w = np.zeros((3, NUM_LANDMARKS))
    w[:, mean.rigid] = (m - m.mean(0)).T
    w.setflags(write=False)
    return w, mean.rigid


def frontal_points(landmarks: np.ndarray, indices, mean: MeanFace | None = None) -> np.ndarray:
    """``frontalize(landmarks)[indices]`` without the other landmarks: (len(indices), 2)
    float64 canonical x, y of those landmarks of the face seen from the front (video
    mode's expression signals read a few): the rotation of the rigid landmarks onto
    the mean face (Umeyama's, :func:`umeyama`), then the canonical frame of the rotated
    eye and mouth centres (:func:`to_canonical`'s). ``landmarks`` as in
    :func:`frontalize`; ``indices``: a 1-D sequence of landmark indices or a (478,)
    bool mask (``ValueError`` otherwise, ``IndexError`` for one out of range). A face
    whose eye and mouth centres coincide is a ``ValueError``."""
    lm = np.asarray(landmarks, np.float64)
    if lm.ndim != 2 or lm.shape[0] != NUM_LANDMARKS or lm.shape[1] not in (2, 3):
        raise ValueError(f"landmarks must have shape ({NUM_LANDMARKS}, 3), got {lm.shape}")
    idx = _ROWS[np.asarray(indices)]  # (numpy's indexing: masks, negative indices, as frontalize(...)[indices])
    if idx.ndim != 1:
        raise ValueError(f"indices must be one-dimensional, got shape {idx.shape}")
    if not np.isfinite(lm).all():
        raise ValueError("landmarks contain NaN or infinity")
    anchors = lm[_ANCHOR_ROWS]
    if lm.shape[1] == 3 and lm[:, 2].any():
        w, _ = _frontal_tables(mean or mean_face())
        U, _, Vt = np.linalg.svd(w @ lm)  # rotation of the face onto the mean face (Umeyama; its
        R = U @ Vt  # scale and translation do not matter: the canonical frame below takes them out)
        (a, b, c), (d, e, f), (g, h, i) = R.tolist()
        if a * (e * i - f * h) - b * (d * i - f * g) + c * (d * h - e * g) < 0:  # a reflection
            U[:, -1] *= -1.0
            R = U @ Vt
        xy = lm[idx] @ R[:2].T
        anchors = (anchors @ R[:2].T).tolist()
    else:
        xy = lm[idx, :2]
        anchors = anchors[:, :2].tolist()
    # the 2D similarity (least squares, as umeyama's) taking the eye and mouth centres to
    # CANONICAL_TARGETS, in complex numbers (three points: Python's are the quicker)
    p = [complex(x, y) for x, y in anchors]
    z = [(p[0] + p[1]) * 0.5, (p[2] + p[3]) * 0.5, (p[4] + p[5]) * 0.5]
    if _mirrored(*z):
        z[0], z[1] = z[1], z[0]
    zm = (z[0] + z[1] + z[2]) / 3.0
    spread = max(abs(zk - zm) for zk in z)  # (the sums below in units of it: no overflow at any scale)
    if not (math.isfinite(spread) and spread > 0.0):
        raise ValueError("landmarks are degenerate: the eye and mouth centres coincide")
    zn = [(zk - zm) / spread for zk in z]
    a = sum(zk.conjugate() * (tk - _TARGET_MEAN) for zk, tk in zip(zn, _TARGETS_C)) \
        / sum(abs(zk) ** 2 for zk in zn) / spread
    t = _TARGET_MEAN - a * zm
    out = np.empty((len(idx), 2))
    out[:, 0] = xy[:, 0] * a.real - xy[:, 1] * a.imag + t.real
    out[:, 1] = xy[:, 0] * a.imag + xy[:, 1] * a.real + t.imag
    return out


_ROWS = np.arange(NUM_LANDMARKS)
_ROWS.setflags(write=False)
_ANCHOR_ROWS = np.array([*EYE_CORNERS[0], *EYE_CORNERS[1], *MOUTH_CORNERS])
_TARGETS_C = [complex(x, y) for x, y in CANONICAL_TARGETS.tolist()]
_TARGET_MEAN = sum(_TARGETS_C) / len(_TARGETS_C)


def exaggerate(canonical: np.ndarray, amount: float, mean: MeanFace | None = None) -> np.ndarray:
    """A caricature: each landmark's deviation from the mean face scaled by
    ``amount`` (1 = as measured). The irises move with their eye (their
    size and position inside the eye are kept), and the result is put back
    into the canonical frame."""
    c = np.asarray(canonical, np.float64)[:, :2]
    if amount == 1.0:
        return c.copy()
    m = (mean or mean_face()).points[:, :2]
    out = m + amount * (c - m)
    for eye, iris in (("right_eye", "right_iris"), ("left_eye", "left_iris")):
        e = list(LANDMARK_INDICES[eye])
        shift = out[e].mean(0) - c[e].mean(0)
        out[list(LANDMARK_INDICES[iris])] = c[list(LANDMARK_INDICES[iris])] + shift
    return to_canonical(out)


def symmetrize(canonical: np.ndarray, mean: MeanFace | None = None) -> np.ndarray:
    """The face averaged with its own mirror image (x → −x, every landmark
    swapped with its partner): only proportions remain."""
    c = np.asarray(canonical, np.float64)
    mir = c[..., (mean or mean_face()).mirror, :].copy()
    mir[..., 0] *= -1.0
    return 0.5 * (c + mir)


# ------------------------------------------------------------ artist tables
# Image-left side (MediaPipe's "right") and the mirror partner on the image's
# right. Checked against the mirrored median face of 592 photos (< 0.012).
SIDES = {
    # eye, inner corner → outer corner
    "eye_up": ((133, 173, 157, 158, 159, 160, 161, 246, 33), (362, 398, 384, 385, 386, 387, 388, 466, 263)),
    "eye_lo": ((133, 155, 154, 153, 145, 144, 163, 7, 33), (362, 382, 381, 380, 374, 373, 390, 249, 263)),
    "crease": ((190, 56, 28, 27, 29, 30, 247), (414, 286, 258, 257, 259, 260, 467)),
    # brows, inner → outer (upper and lower edge of MediaPipe's brow band)
    "brow_up": ((107, 66, 105, 63, 70), (336, 296, 334, 293, 300)),
    "brow_lo": ((55, 65, 52, 53, 46), (285, 295, 282, 283, 276)),
    "iris": ((468, 469, 470, 471, 472), (473, 474, 475, 476, 477)),
}
# single landmarks, (image-left, image-right)
PAIR = {
    "ala_out": (64, 294), "ala_bot": (98, 327), "nostril_in": (97, 326), "bridge_top": (122, 351),
    "bridge_mid": (3, 248), "bridge_side": (236, 456), "ala_top": (134, 363), "ala_crease": (129, 358),
    "ala_up": (49, 279), "cheek": (205, 425), "cheek_out": (50, 280), "cheek_in": (36, 266),
    "cheekbone": (101, 330), "cheek_hi": (117, 346), "jowl": (187, 411), "jowl_lo": (207, 427),
    "mouth_side": (212, 432), "forehead_in": (108, 337), "forehead_mid": (69, 299),
    "forehead_out": (104, 333), "mouth_corner": (61, 291), "eye_outer": (33, 263), "eye_inner": (133, 362),
    "jaw": (172, 397), "chin_side": (149, 378), "temple": (162, 389), "cheek_outline": (234, 454),
}
#: the nose's bottom (where it meets the upper lip), the lower lip's lowest
#: point on the centre line, the upper lip's highest and the chin's
NOSE_BOTTOM = 2
LOWER_LIP_BOTTOM = 17
UPPER_LIP_TOP = 0
CHIN_BOTTOM = 152
LIP_UO = (61, 40, 37, 0, 267, 270, 291)
LIP_LO = (61, 181, 17, 405, 291)
LIP_UI = (78, 81, 13, 311, 308)
LIP_LI = (78, 178, 14, 402, 308)
LIPS_OUTER = (61, 146, 91, 181, 84, 17, 314, 405, 321, 375, 291, 409, 270, 269, 267, 0, 37, 39, 40, 185)
LIPS_INNER = (78, 95, 88, 178, 87, 14, 317, 402, 318, 324, 308, 415, 310, 311, 312, 13, 82, 81, 80, 191)
BROW_OUTLINE = ((70, 63, 105, 66, 107, 55, 65, 52, 53, 46), (300, 293, 334, 296, 336, 285, 295, 282, 283, 276))
CHEEK_PATCH = ((117, 118, 101, 36, 205, 187, 123), (346, 347, 330, 266, 425, 411, 352))
FOREHEAD_PATCH = (108, 151, 337, 336, 9, 107)
NOSE_PATCH = (6, 351, 412, 399, 5, 174, 188, 122)


# ------------------------------------------------------------ expression tables
# (image-left, image-right), from the tables above, in the order the video
# expressions (avatarizer.expressions) average them.
#: eye corners per side: (outer, inner)
EYE_ENDS = tuple((PAIR["eye_outer"][s], PAIR["eye_inner"][s]) for s in (0, 1))
#: upper/lower lid pairs per side, the middle three of each lid (centre first)
LID_PAIRS = tuple(tuple((SIDES["eye_up"][s][i], SIDES["eye_lo"][s][i]) for i in (4, 3, 5)) for s in (0, 1))
#: iris centres
IRIS_CENTRES = (SIDES["iris"][0][0], SIDES["iris"][1][0])
#: upper/lower inner lip pairs: the centre and one each side of it
INNER_LIP_PAIRS = ((13, 14), (82, 87), (312, 317))
#: outer upper and lower lip centres
LIP_MIDDLES = (LIP_UO[3], LOWER_LIP_BOTTOM)


def side_index(name: str, side: int):
    """Landmark indices of a sided group; side 0 = image-left, 1 = image-right."""
    return SIDES[name][side] if name in SIDES else PAIR[name][side]
