"""The population mean face and the landmark mirror table
(``sdk/avatarizer/data/mean_face.npz``, see :mod:`avatarizer.landmarks`).

Built from the 3D landmarks of the aligned *training* photos (never the
held-out ones): generalised Procrustes analysis in 3D on the rigid
landmarks, the mean put into the canonical frame, the mirror partner of
every landmark found by matching the mean to its own reflection (an
optimal one-to-one assignment), and the mean symmetrised with it.

    avatarizer-export data meanface
"""
from __future__ import annotations

import numpy as np

from avatarizer import landmarks as LM

#: Landmarks whose mean position is below this canonical y (the mouth,
#: chin and jaw), the brows and the irises move with expressions: the pose
#: fit leaves them out.
_RIGID_MAX_Y = 0.22


def mirror_table(points: np.ndarray) -> np.ndarray:
    """(478,) partner of each landmark of a roughly frontal, centred mean
    shape: an optimal one-to-one matching of the shape to its reflection
    x → −x (mesh and irises matched separately), made an involution."""
    from scipy.optimize import linear_sum_assignment

    p = np.asarray(points, np.float64)
    out = np.arange(LM.NUM_LANDMARKS)
    for idx in (np.arange(468), np.arange(468, 478)):
        a = p[idx]
        b = a * np.array([-1.0, 1.0, 1.0])[: a.shape[1]]
        cost = np.linalg.norm(a[:, None] - b[None], axis=-1)
        rows, cols = linear_sum_assignment(cost)
        out[idx[rows]] = idx[cols]
    # keep only mutual pairs; anything else is its own partner
    bad = out[out] != np.arange(len(out))
    out[bad] = np.flatnonzero(bad)
    return out


def build(landmarks3d: np.ndarray, iterations: int = 4) -> LM.MeanFace:
    """A :class:`avatarizer.landmarks.MeanFace` from (N, 478, 3) MediaPipe
    landmarks (frame pixels, x, y, z)."""
    lms = np.asarray(landmarks3d, np.float64)
    if lms.ndim != 3 or lms.shape[1:] != (LM.NUM_LANDMARKS, 3) or len(lms) < 10:
        raise ValueError(f"need (N >= 10, 478, 3) landmarks, got {lms.shape}")
    # start: each face put into the canonical frame in 2D, z scaled alike
    def canon3(x):
        xy = LM.to_canonical(x)
        s = np.linalg.norm(xy[33] - xy[263]) / max(np.linalg.norm(x[33, :2] - x[263, :2]), 1e-9)
        z = (x[:, 2] - x[:, 2].mean()) * s
        return np.concatenate([xy, z[:, None]], 1)

    ref = np.median(np.stack([canon3(x) for x in lms]), 0)
    rigid = np.arange(468)
    mirror = np.arange(LM.NUM_LANDMARKS)
    for it in range(iterations):
        aligned = []
        for x in lms:
            s, R, t = LM.umeyama(x[rigid], ref[rigid])
            aligned.append(x @ (s * R).T + t)
        mean = np.median(np.stack(aligned), 0)
        # back into the canonical frame (2D similarity on x, y; z scaled and centred alike)
        xy = LM.to_canonical(mean)
        s, R, t = LM.umeyama(mean[:, :2], xy)
        z = (mean[:, 2] - mean[:, 2].mean()) * s
        mean = np.concatenate([xy, z[:, None]], 1)
        mirror = mirror_table(mean)
        refl = mean[mirror] * np.array([-1.0, 1.0, 1.0])
        ref = 0.5 * (mean + refl)
        brows = set(LM.LANDMARK_INDICES["right_eyebrow"]) | set(LM.LANDMARK_INDICES["left_eyebrow"])
        lips = set(LM.LANDMARK_INDICES["lips_outer"]) | set(LM.LANDMARK_INDICES["lips_inner"])
        rigid = np.array([i for i in range(468) if ref[i, 1] < _RIGID_MAX_Y and i not in brows and i not in lips])
    return LM.MeanFace(ref, mirror, rigid)
