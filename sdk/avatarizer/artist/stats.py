"""``np.percentile`` and ``np.median`` for the artist's small samples, same results, less overhead.

The artist takes ~40 medians and ~20 percentiles of a few dozen to a few
thousand values per face. NumPy's own functions are general (any axis,
methods, NaN handling, ``out=``) and spend ~30-140 µs a call on bookkeeping
around a ~5 µs partition, which made them a tenth of the artist's time.
These two cover the artist's use (linear percentiles, medians, one axis or
all): one ``np.partition`` at the order statistics needed (as NumPy does),
then the same arithmetic as NumPy 1.26 (``numpy/lib/function_base.py``:
``_quantile``, ``_lerp``, ``_median``), so results are bit-identical, dtype
included (checked against NumPy in ``tests/test_artist_speed.py``).
Anything else (empty input, NaNs, integer data) goes to NumPy itself.
"""
from __future__ import annotations

import math

import numpy as np

__all__ = ["mean", "median", "percentile"]


_F32, _F64 = np.dtype(np.float32), np.dtype(np.float64)


def _plain(a: np.ndarray, axis=None) -> bool:
    """Float data these functions take (others go to NumPy; an identity test
    on NumPy's native float dtypes: anything it misses goes to NumPy too)."""
    return a.size > 0 and (a.dtype is _F32 or a.dtype is _F64) and (axis is None or a.ndim > 0)


def _partition(a: np.ndarray, kth, axis: int = -1) -> np.ndarray:
    """``np.partition(a, kth, axis)``: what it does (a copy, partitioned in place) without its wrapper."""
    s = a.copy(order="K")
    s.partition(kth, axis=axis)
    return s


_NUMBER = (int, float)


def _quantiles(q) -> tuple[tuple, list]:
    """q / 100 as NumPy computes it: its shape (which shapes the result) and
    its values. A number or a list / tuple of numbers (the artist's calls)
    is divided in Python: the same correctly rounded float64 quotient as
    ``np.true_divide``, without building arrays."""
    if type(q) in _NUMBER:
        shape, vals = (), [q / 100]
    elif type(q) in (list, tuple) and all(type(v) in _NUMBER for v in q):
        shape, vals = (len(q),), [v / 100 for v in q]
    else:
        qf = np.asanyarray(np.true_divide(q, 100))
        shape, vals = qf.shape, qf.ravel().tolist()
    if not all(0 <= v <= 1 for v in vals):  # also False for NaN
        raise ValueError("Percentiles must be in the range [0, 100]")
    return shape, vals


def percentile(a, q, axis=None, keepdims: bool = False):
    """``np.percentile(a, q, axis=axis, keepdims=keepdims)`` (method "linear")."""
    a = np.asarray(a)
    if not _plain(a, axis) or (keepdims and axis is None):
        return np.percentile(a, q, axis=axis, keepdims=keepdims)
    qshape, vals = _quantiles(q)
    if axis is None:
        return _percentile_flat(a.ravel(), qshape, vals, q)
    return _percentile_axis(a, qshape, vals, q, axis, keepdims)


def _spots(n: int, vals: list) -> list:
    """(lower index, upper index, weight) of each quantile among n sorted
    values, as NumPy's _quantile / _get_indexes / _get_gamma compute them:
    the fractional position (n - 1) * q in float64, its two neighbours and
    the distance from the lower one."""
    out = []
    for v in vals:
        pos = (n - 1) * v
        if pos >= n - 1:  # NumPy takes the last value for both (and a weight of pos + 1)
            out.append((n - 1, n - 1, pos + 1.0))
        else:
            i = math.floor(pos)
            out.append((i, i + 1, pos - i))
    return out


def _lerp(lo, hi, t):
    """NumPy's _lerp: the difference in the data's dtype, the weight in
    float64; from the lower value below t = 0.5, from the upper one above."""
    diff = hi - lo
    return hi - diff * (1 - t) if t >= 0.5 else lo + diff * t


def _kth(spots, n: int) -> list:
    """The order statistics to put in place: those used, and the largest (a NaN would be there)."""
    return sorted({k for i, j, _ in spots for k in (i, j)} | {n - 1})


def _percentile_flat(x: np.ndarray, qshape: tuple, vals: list, q):
    n = len(x)
    spots = _spots(n, vals)
    s = _partition(x, _kth(spots, n))
    if math.isnan(s[-1]):  # NaNs sort last; NumPy's NaN rules apply
        return np.percentile(x, q)
    out = np.array([_lerp(s[i], s[j], np.float64(t)) for i, j, t in spots])
    return out[0] if qshape == () else out.reshape(qshape)


def _percentile_axis(a: np.ndarray, qshape: tuple, vals: list, q, axis: int, keepdims: bool):
    axis = int(axis) + a.ndim if int(axis) < 0 else int(axis)
    n = a.shape[axis]
    spots = _spots(n, vals)
    s = _partition(a, _kth(spots, n), axis=axis)
    before = (slice(None),) * axis

    def at(k):  # the k-th order statistic along the axis (kept as a length-1 axis with keepdims)
        return s[before + ((slice(k, k + 1),) if keepdims else (k,))]

    if np.isnan(at(n - 1)).any():
        return np.percentile(a, q, axis=axis, keepdims=keepdims)
    # the weight as a float64 array broadcast like NumPy's gamma (an array, so
    # float32 data is interpolated in float64 as there; 0-d for 1-D data)
    t_shape = (1,) * (a.ndim if keepdims else a.ndim - 1)
    rows = [_lerp(at(i), at(j), np.full(t_shape, t)) for i, j, t in spots]
    out = rows[0] if qshape == () else np.stack(rows).reshape(qshape + np.shape(rows[0]))
    return out[()] if isinstance(out, np.ndarray) and out.ndim == 0 else out


def mean(a, axis=None):
    """``np.mean(a, axis=axis)`` for one axis or all: NumPy 1.26's own steps
    (``_methods._mean``: the sum in the data's dtype, in float64 for bools
    and integers, then divided by the count there) without its wrappers
    (~4 µs a call; the artist takes ~50 means a face). Anything else (empty,
    float16, complex, subclasses) goes to NumPy."""
    arr = np.asanyarray(a)
    if type(arr) is not np.ndarray or arr.size == 0 or arr.dtype.kind not in "fbiu" or arr.dtype == np.float16:
        return np.mean(arr, axis=axis)
    ret = np.add.reduce(arr, axis=axis, dtype=np.float64 if arr.dtype.kind in "biu" else None)
    rcount = np.intp(arr.size if axis is None else arr.shape[axis])
    if isinstance(ret, np.ndarray):
        return np.true_divide(ret, rcount, out=ret, casting="unsafe", subok=False)
    return ret.dtype.type(ret / rcount)


def median(a, axis=None):
    """``np.median(a, axis=axis)``."""
    a = np.asarray(a)
    if not _plain(a, axis):
        return np.median(a, axis=axis)
    if axis is None:
        a, axis = a.ravel(), 0
    axis = int(axis) + a.ndim if int(axis) < 0 else int(axis)
    n = a.shape[axis]
    h = n // 2
    # the middle value(s) and the largest (a NaN would be there) put in place
    s = _partition(a, sorted({max(h - 1, 0), h, n - 1}), axis=axis)
    before = (slice(None),) * axis
    last = s[before + (n - 1,)]
    if math.isnan(last) if s.ndim == 1 else np.isnan(last).any():
        return np.median(a, axis=axis)
    # NumPy takes the mean of the middle value (odd n) or the two middle
    # values (even n) in the data's own dtype: (x + y) / 2, exact halving
    mid = s[before + (h,)]
    return mid if n % 2 else (s[before + (h - 1,)] + mid) / s.dtype.type(2)
