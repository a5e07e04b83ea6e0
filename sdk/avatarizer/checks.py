"""Checks of the scalars callers pass (sizes, zooms, opacities, frame rates,
timestamps), in one place for the whole SDK."""
from __future__ import annotations

import math

import numpy as np


def is_real(v) -> bool:
    """A finite real number: an int, a float or a NumPy integer or float
    scalar; not a bool, a string, a complex number or an ``np.timedelta64``
    (which NumPy counts as an integer)."""
    if isinstance(v, (bool, np.bool_, np.timedelta64)) or not isinstance(v, (int, float, np.integer, np.floating)):
        return False
    try:
        return math.isfinite(float(v))
    except OverflowError:  # an int too large for a float
        return False
