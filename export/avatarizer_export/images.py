"""Image helpers shared by the metrics and LPIPS (numpy only)."""
from __future__ import annotations

import numpy as np


def composite_white(image) -> np.ndarray:
    """uint8 ``...×H×W×3`` RGB or ``...×H×W×4`` straight-alpha RGBA → float32
    RGB in [0, 1], RGBA composited on white."""
    arr = np.asarray(image)
    if arr.dtype != np.uint8:
        raise ValueError(f"images must be uint8, got {arr.dtype}.")
    if arr.ndim < 3 or arr.shape[-1] not in (3, 4):
        raise ValueError(f"images must be H×W×3 or H×W×4 (optionally stacked), got shape {arr.shape}.")
    rgb = arr[..., :3].astype(np.float32) / 255.0
    if arr.shape[-1] == 4:
        alpha = arr[..., 3:].astype(np.float32) / 255.0
        rgb = rgb * alpha + (1.0 - alpha)
    return rgb
