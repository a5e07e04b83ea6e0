"""argparse value types the export commands share: a bad value is a usage
error (exit 2, one line), never a quiet full run or a traceback."""
from __future__ import annotations

import argparse
import math

from avatarizer.checks import int_arg

#: a whole number >= 1 / >= 0 (the SDK's checker, shared with the benchmarks)
positive_int = int_arg(1)
count = int_arg(0)

def precision(text: str) -> float:
    """A precision target in (0, 1]."""
    try:
        v = float(text)
    except ValueError:
        v = math.nan
    if not 0.0 < v <= 1.0:
        raise argparse.ArgumentTypeError(f"must be a precision in (0, 1], got {text!r}")
    return v


def exaggeration(text: str) -> float:
    """The artist's exaggeration: a number in [0.5, 2] (``ArtistStyle``'s range)."""
    try:
        v = float(text)
    except ValueError:
        v = math.nan
    if not 0.5 <= v <= 2.0:  # (NaN fails every comparison)
        raise argparse.ArgumentTypeError(f"must be a number from 0.5 to 2, got {text!r}")
    return v
