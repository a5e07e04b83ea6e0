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


def int_at_least(lo: int):
    """An argparse ``type=`` for the command-line tools (benchmarks, the
    export commands): a whole number >= ``lo``, else a usage error naming it."""
    import argparse

    def check(text: str) -> int:
        try:
            n = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
        if n < lo:
            raise argparse.ArgumentTypeError(f"must be >= {lo}, not {n}")
        return n

    return check
