"""Checks of the scalars callers pass (sizes, zooms, opacities, frame rates,
timestamps), in one place for the whole SDK."""
from __future__ import annotations

import math
import os
import re

import numpy as np

#: the largest timestamp (ms, either sign) a frame may have: 2**52 microseconds, about 142
#: years, within which a float64 of milliseconds tells times a microsecond apart (0.98 us at
#: the bound, twice that from 2**43 ms; at 1e20 ms the next frame 33 ms later was the same
#: number, refused as "not increasing"); Unix-epoch milliseconds (1.8e12 in 2026) are well
#: inside. ``align.check_timestamp`` and the
#: animation's ``time_ms`` lines refuse beyond it
MAX_TIMESTAMP_MS = 2.0 ** 52 / 1000.0


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


def holds_bool(value) -> bool:
    """Whether ``value``, a list or tuple (nested) rather than an array,
    holds a bool: NumPy turns [0.5, True] into numbers, so a bool among
    numbers was taken as 1.0 where a bool array is refused (a review,
    session 68). An array says so by its dtype; False for anything else."""
    if isinstance(value, np.ndarray) or not isinstance(value, (list, tuple)):
        return isinstance(value, np.ndarray) and value.dtype == np.bool_
    stack = [value]
    while stack:
        for v in stack.pop():
            if isinstance(v, (bool, np.bool_)):
                return True
            if isinstance(v, (list, tuple)):
                stack.append(v)
            elif isinstance(v, np.ndarray) and v.dtype == np.bool_:
                return True
    return False


def gate_pair_ok(hi: float | None, lo: float | None) -> bool:
    """Whether a length gate's (long, short) thresholds are each in (0, 1)
    or None, the short one not above the long one (H's pair,
    ``avatarizer.hair``, and a region network's ``gates``,
    ``avatarizer.regionnet``)."""
    return not any(v is not None and not 0.0 < v < 1.0 for v in (hi, lo)) \
        and not (hi is not None and lo is not None and lo > hi)


def int_arg(lo: int, hi: int | None = None, *, not_int: str = "not an integer: {text!r:.60}",
            out_of_range: str = "must be >= {lo}, not {v}"):
    """An argparse ``type=`` for the command-line tools (the CLI, the
    benchmarks, the export commands): a whole number from ``lo`` to ``hi``
    (None: no upper bound), else a usage error: ``not_int`` or
    ``out_of_range`` formatted with ``text`` (as given), ``v`` (the number)
    and ``lo``."""
    import argparse

    def check(text: str) -> int:
        try:
            v = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(not_int.format(text=text)) from None
        if v < lo or (hi is not None and v > hi):
            raise argparse.ArgumentTypeError(out_of_range.format(v=v, text=text, lo=lo))
        return v

    return check


def float_arg(ok, message: str = "expected a number, got {text!r:.60}"):
    """An argparse ``type=`` for the command-line tools: a finite number for
    which ``ok`` holds, else a usage error: ``message`` formatted with
    ``text`` (as given). The float twin of :func:`int_arg`."""
    import argparse

    def check(text: str) -> float:
        try:
            v = float(text)
        except ValueError:
            v = math.nan
        if not (math.isfinite(v) and ok(v)):
            raise argparse.ArgumentTypeError(message.format(text=text))
        return v

    return check


def clipped_logit(p: float, floor: float = 1e-4) -> float:
    """The logit of ``p`` clipped to [``floor``, 1 - ``floor``] (a fusion's
    input: a probability of 0 or 1 stays finite)."""
    p = min(max(float(p), floor), 1.0 - floor)
    return math.log(p / (1.0 - p))


def read_json_object(path, max_bytes: int) -> dict:
    """The JSON object in the file ``path`` (a fitted data file the SDK
    reads); ValueError for a file over ``max_bytes``, JSON nested too deep,
    or anything but an object; OSError as the file system raises it."""
    import json
    from pathlib import Path

    path = Path(path)
    if path.stat().st_size > max_bytes:
        raise ValueError(f"larger than {max_bytes} bytes")
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except RecursionError:
        raise ValueError("JSON nested too deep") from None
    if not isinstance(doc, dict):
        raise ValueError("not a JSON object")
    return doc


def names_a_folder(value) -> bool:
    """Whether an output path given as text names a folder: it ends with a
    path separator, or its last part is ``.`` or ``..``. ``Path()`` drops
    both (``x.png/`` and ``x.png/.`` are ``x.png`` to it), so such an output
    name wrote, or with ``--overwrite`` replaced, the file ``x.png`` (the
    CLIs' and the export commands' check; a review, session 77)."""
    value = os.fspath(value)
    seps = tuple(filter(None, (os.sep, os.altsep)))
    last = value.replace(os.altsep, os.sep) if os.altsep else value
    return value.endswith(seps) or last.rsplit(os.sep, 1)[-1] in (".", "..")


#: what ``str.splitlines`` breaks a line at
_LINE_BREAKS = re.compile("[\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029]")


def one_line(text: str) -> str:
    """``text`` on one line: a line break in it (a file name's: every one
    ``str.splitlines`` breaks at) shown escaped, ``\\n``, ``\\x0c``,
    ``\\u2028``, as the CLIs and ``eval`` show file names."""
    return _LINE_BREAKS.sub(lambda m: m.group().encode("unicode_escape").decode("ascii"), text)
