"""A performance (a sequence of parameter vectors) as a vector animation:
Lottie (Bodymovin JSON) and animated SVG (SMIL), from the very scene the
native renderer draws.

    from avatarizer.animation import Animation
    anim = Animation(size=512, fps=30)
    for params in frames:                 # float32 (629,) each
        anim.add(params)
    anim.write("out.json")                # or "out.svg"; anim.to_lottie() -> dict, anim.to_svg() -> str

How it works. Each frame's scene is built by the native code (the single
source of geometry: Catmull-Rom Beziers, tapered strokes as filled outlines,
composites, clip groups) and read back as items and a path stream. Items are
matched to *tracks* across frames: the scene is parsed into a tree (clip
groups hold their children) and aligned with the tracks seen so far by item
signature (kind + path command codes), so an item that appears or disappears
(teeth, brow hairs, lashes) becomes a track that is hidden on some frames
while the drawing order stays the scene's order on every frame. A frame
whose layout (item kinds and path ranges, verified command by command) was
seen before reuses that layout's parse, so the per-frame cost is one native
scene build and a few numpy gathers.

Every track is a path (one or more sub-paths of cubic Bezier vertices with
in/out tangents, the form Lottie uses), a colour with opacity and, for
strokes, a width. The tolerance (output pixels, per axis; default 1/256 of
the shorter side) is shared out: coordinates are whole quanta of at most
tolerance/4 (rounding <= tolerance/8, written in a layer / viewBox scaled by
the quantum); of the rest, a fifth goes to path simplification (fewer
vertices, the same on every frame, each merged span refitted by least
squares and checked on every frame) and four fifths to keyframe reduction (a
one-pass swinging-door fit: a keyframe only where linear interpolation would
leave the tolerance band). A track that never moves has no keyframes at all,
and colours, opacities and widths that do not change are static values
(``color_tolerance`` in 1/255). Lottie and SMIL interpolate linearly between
keyframes (a value that changes one frame after its key is held until then:
Lottie's hold keyframes, SVG's discrete mode or a repeated value), so every
frame of the export is within the tolerance of the native scene.

The quantum is never finer than 1/64 px, so under 1/16 px it is more than
tolerance/4, and under 1/128 px (tolerance 0 included) its rounding alone
(1/128 px) exceeds the tolerance: nothing is left for the reduction, so
every vertex is kept and a keyframe on every frame except runs that are
exactly linear (keyframe times still strictly increase), and the export is
within 1/128 px of the scene. Colours are written to 3 decimals in Lottie
(0.13/255) and, from those, in 8 bits in SVG (0.63/255 in all): the
reduction leaves 0.63/255 of ``color_tolerance`` to that rounding (SVG's
colours strayed 1.36/255 at the default 1.0), so a ``color_tolerance`` of
0.63 or under keeps every colour change and SVG's colours are then within
0.63/255.
"""
from __future__ import annotations

import collections
import difflib
import hashlib
import itertools
import json
import math
import os
import re
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from . import native
from ._files import new_file_mode
from .checks import MAX_TIMESTAMP_MS, is_real
from .schema import FLOAT32_MAX, PARAM_COUNT, validate, validate_version

FORMATS = {".json": "lottie", ".lottie.json": "lottie", ".svg": "svg"}
TOLERANCE_FRACTION = 1 / 256   # default keyframe tolerance: this much of the shorter output side
DEFAULT_COLOR_TOLERANCE = 1.0  # in 1/255 of a colour channel
#: the most a written colour is rounded by, in 1/255: SVG's 8-bit colours (0.5) of values already rounded
#: to Lottie's 3 decimals (0.1275)
COLOUR_ROUNDING = 0.5 + 0.1275
# 20 minutes at 30 fps: about 1.1 GB of recorded geometry; exporting it peaks at about 1.8 GB
# (resident, measured on a smooth 109-track performance at 512 px: ~0.05 MB a frame). A real
# performance (clip d6's video --params played back and forth, 512 px, written to a file) peaked at
# 225 MB for 2,400 frames and 329 MB for 4,800 (~0.043 MB a frame: ~1.7 GB at this limit); before the
# Lottie file was written group by group (its whole dict and text in memory) 335 and 601 MB
MAX_FRAMES = 36_000
#: Most lines :func:`read_params_jsonl` takes from a file whose lines carry
#: times: they are resampled to the animation's rate, which may take fewer
#: (20 minutes at 120 fps; about 0.36 GB of parameters)
MAX_STAMPED_LINES = 4 * MAX_FRAMES
#: The slowest and the fastest frame rates an animation may have (a frame a
#: thousand seconds; SMIL and Lottie need finite positive times)
MIN_FPS, MAX_FPS = 0.001, 1000.0
_SERIES_BLOCK = 256            # frames of a recorded segment copied at a time into the tracks' series
_EXPORT_FLOATS = 10_000_000    # numbers of the tracks' frames exported at a time (40 MB in float32)
_SIMPLIFY_SHARE = 0.2         # of the tolerance spent on fewer vertices, the rest on fewer keyframes
_SIMPLIFY_SAMPLE = 16          # frames that choose the vertices of a simplified path


# ---------------------------------------------------------------- scene parse


@dataclass
class _Layout:
    """One frame layout: which item is which track, and where its numbers are."""
    key: bytes
    op_pos: np.ndarray          # positions of every command code in the path stream
    op_val: np.ndarray          # the codes themselves (verified on reuse)
    vidx: np.ndarray            # per vertex: index of x in the path stream
    iidx: np.ndarray            # per vertex: in-tangent control (x) index or -1
    oidx: np.ndarray            # per vertex: out-tangent control (x) index or -1
    draw: np.ndarray            # item indices that carry a path (fill, stroke, clip push)
    vslices: list               # per drawn item: (first vertex, end vertex)
    tracks: list                # per drawn item: track id
    frames: list = field(default_factory=list)


@dataclass
class _Track:
    id: int
    kind: int                   # native.ITEM_*
    shape: tuple                # ((closed, n_vertices), ...) per sub-path
    sig: bytes
    children: list | None = None  # clip groups: child tracks, in drawing order


def _parse_path(path: np.ndarray, a: int, b: int):
    """A path range -> (command codes, sub-paths [(closed, [(v, i, o), ...])])."""
    ops, subs, cur = [], [], None
    i = a
    while i < b:
        op = int(path[i])
        ops.append(op)
        if op == native.OP_MOVE:
            cur = [False, [[i + 1, -1, -1]]]
            subs.append(cur)
            i += 3
        elif op in (native.OP_LINE, native.OP_CURVE):
            if cur is None:  # a segment with no current point starts a sub-path there
                cur = [False, []]
                subs.append(cur)
            if op == native.OP_LINE:
                cur[1].append([i + 1, -1, -1])
                i += 3
            else:
                if cur[1]:
                    cur[1][-1][2] = i + 1
                cur[1].append([i + 5, i + 3, -1])
                i += 7
        elif op == native.OP_CLOSE:
            if cur is not None:
                cur[0] = True
                cur = None  # cairo: after close the next segment starts a new sub-path
            i += 1
        else:
            raise ValueError(f"unknown path command {op} in the native scene")
    return ops, [(closed, verts) for closed, verts in subs if verts]


class _Recorder:
    """Turns scenes into tracks and per-frame numbers (see the module doc)."""

    def __init__(self, scale: float, ox: float, oy: float):
        self.scale, self.ox, self.oy = scale, ox, oy
        self.tracks: list[_Track] = []
        self.root: list[_Track] = []
        self.layouts: dict[bytes, list[_Layout]] = {}
        self.segments: list[tuple[_Layout, list[int], list[np.ndarray], list[np.ndarray]]] = []
        self.n = 0
        self._builder = native.SceneBuilder()

    # -- per frame
    def add(self, params: np.ndarray) -> None:
        items, path = self._builder.build(params)
        lay = self._layout(items, path)
        P = path.astype(np.float64)
        V = np.stack([P[lay.vidx], P[lay.vidx + 1]], 1)
        has_i, has_o = lay.iidx >= 0, lay.oidx >= 0
        I = np.where(has_i[:, None], np.stack([P[lay.iidx], P[lay.iidx + 1]], 1), V)
        O = np.where(has_o[:, None], np.stack([P[lay.oidx], P[lay.oidx + 1]], 1), V)
        off = np.array([self.ox, self.oy])
        geo = (np.concatenate([V, I, O], 1) * self.scale + np.tile(off, 3)).astype(np.float32)  # absolute, px
        d = items[lay.draw]
        style = np.concatenate([d["rgba"].astype(np.float64), d["width"][:, None].astype(np.float64) * self.scale], 1)
        if self.segments and self.segments[-1][0] is lay and self.segments[-1][1][-1] == self.n - 1:
            seg = self.segments[-1]
        else:
            seg = (lay, [], [], [])
            self.segments.append(seg)
        seg[1].append(self.n)
        seg[2].append(geo)
        seg[3].append(style)
        self.n += 1

    def _layout(self, items: np.ndarray, path: np.ndarray) -> _Layout:
        key = (items["kind"].tobytes() + items["path_begin"].tobytes() + items["path_end"].tobytes()
               + len(path).to_bytes(8, "little"))
        for lay in self.layouts.get(key, ()):
            if np.array_equal(path[lay.op_pos], lay.op_val):
                return lay
        lay = self._new_layout(key, items, path)
        self.layouts.setdefault(key, []).append(lay)
        return lay

    def _new_layout(self, key, items, path) -> _Layout:
        # parse every item, build the frame's tree (clip groups hold children)
        parsed = []
        op_pos: list[int] = []
        for k, it in enumerate(items):
            a, b = int(it["path_begin"]), int(it["path_end"])
            i = a
            while i < b:  # command positions (for the reuse check)
                op_pos.append(i)
                i += {native.OP_MOVE: 3, native.OP_LINE: 3, native.OP_CURVE: 7}.get(int(path[i]), 1)
            ops, subs = _parse_path(path, a, b)
            shape = tuple((c, len(v)) for c, v in subs)
            sig = bytes([int(it["kind"])]) + bytes(ops)
            parsed.append((int(it["kind"]), sig, shape, subs))
        frame_root: list = []
        stack = [frame_root]
        for k, (kind, sig, shape, subs) in enumerate(parsed):
            if kind == native.ITEM_CLIP_POP:
                if len(stack) > 1:
                    stack.pop()
                continue
            if kind == native.ITEM_CLIP_PUSH:
                node = (k, sig, shape, [])
                stack[-1].append(node)
                stack.append(node[3])
            else:
                stack[-1].append((k, sig, shape, None))
        item_track: dict[int, int] = {}
        self._align(self.root, frame_root, item_track)
        draw = sorted(item_track)
        vidx, iidx, oidx, vslices, tracks = [], [], [], [], []
        for k in draw:
            first = len(vidx)
            for closed, verts in parsed[k][3]:
                for v, i, o in verts:
                    vidx.append(v)
                    iidx.append(i)
                    oidx.append(o)
            vslices.append((first, len(vidx)))
            tracks.append(item_track[k])
        op_pos_a = np.array(op_pos, np.int64)
        return _Layout(key, op_pos_a, path[op_pos_a].copy(), np.array(vidx, np.int64), np.array(iidx, np.int64),
                       np.array(oidx, np.int64), np.array(draw, np.int64), vslices, tracks)

    def _align(self, known: list, nodes: list, item_track: dict) -> None:
        """Matches this frame's nodes to known tracks in order; inserts new tracks."""
        sm = difflib.SequenceMatcher(None, [t.sig for t in known], [n[1] for n in nodes], autojunk=False)
        merged: list[_Track] = []
        for tag, a1, a2, b1, b2 in sm.get_opcodes():
            if tag == "equal":
                for t, node in zip(known[a1:a2], nodes[b1:b2]):
                    item_track[node[0]] = t.id
                    if node[3] is not None:
                        self._align(t.children, node[3], item_track)
                    merged.append(t)
                continue
            merged.extend(known[a1:a2])  # tracks absent on this frame stay, hidden
            for node in nodes[b1:b2]:
                k, sig, shape, children = node
                t = _Track(len(self.tracks), sig[0], shape, sig, [] if children is not None else None)
                self.tracks.append(t)
                item_track[k] = t.id
                if children is not None:
                    self._align(t.children, children, item_track)
                merged.append(t)
        known[:] = merged

    # -- per track time series
    def series(self, tids=None):
        """track id -> (present[T] bool, geo[T, n_vertices, 6], style[T, 5]),
        for the tracks ``tids`` (default: all). The exporter asks for a few
        tracks at a time: every track's frames at once were as much memory
        again as the recording (more: absent frames are filled)."""
        T = self.n
        out = {}
        for tid in range(len(self.tracks)) if tids is None else tids:
            nv = sum(n for _, n in self.tracks[tid].shape)
            out[tid] = (np.zeros(T, bool), np.zeros((T, nv, 6), np.float32), np.zeros((T, 5)))
        for lay, frames, geos, styles in self.segments:
            wanted = [(j, tid) for j, tid in enumerate(lay.tracks) if tid in out]
            if not wanted:
                continue
            # the frames' vertices from the first wanted track's to the last's, a block of
            # frames at a time (a whole segment stacked was one more copy of the recording)
            lo = min(lay.vslices[j][0] for j, _ in wanted)
            hi = max(lay.vslices[j][1] for j, _ in wanted)
            for s in range(0, len(frames), _SERIES_BLOCK):
                fr = np.array(frames[s:s + _SERIES_BLOCK])
                G = np.stack([g[lo:hi] for g in geos[s:s + _SERIES_BLOCK]])
                S = np.stack(styles[s:s + _SERIES_BLOCK])
                for j, tid in wanted:
                    a, b = lay.vslices[j]
                    pres, geo, sty = out[tid]
                    pres[fr] = True
                    geo[fr] = G[:, a - lo:b - lo]
                    sty[fr] = S[:, j]
        for tid, (pres, geo, sty) in out.items():
            _fill_absent(pres, geo)
            _fill_absent(pres, sty)
            sty[~pres, 3] = 0.0  # hidden
        return out


def _fill_absent(present: np.ndarray, x: np.ndarray) -> None:
    """Absent frames take the nearest earlier present value (later for a leading gap)."""
    if present.all() or not present.any():
        return
    idx = np.where(present, np.arange(len(present)), -1)
    idx = np.maximum.accumulate(idx)
    first = int(np.argmax(present))
    idx[idx < 0] = first
    x[:] = x[idx]


def _held_into_gaps(keys: np.ndarray, vals: np.ndarray, present: np.ndarray) -> tuple:
    """Keys (frames) and values of a shown-and-hidden track's series with its value held from a key on
    a shown frame into the hidden frame after it (a key there), and, where the line to the next key
    passes shown frames after the gap, a key on the first of them on that line. Lottie and SMIL tween
    between keys: a shape hidden on frame k + 1 between keys on k and k + 2 was drawn moving toward
    k + 2's shape through the whole of frame k, while still shown (the opacity's keys are held)."""
    T = len(present)
    if len(keys) < 2 or present.all():
        return keys, vals
    cur, nxt = keys[:-1], keys[1:]
    gap = (nxt - cur >= 2) & present[cur] & ~present[np.minimum(cur + 1, T - 1)]
    at = np.flatnonzero(gap)
    if not len(at):
        return keys, vals
    later = np.where(present, np.arange(T), T)
    next_shown = np.minimum.accumulate(later[::-1])[::-1]  # the first shown frame at or after each frame
    t0, t1 = cur[at], nxt[at]
    q = next_shown[t0 + 2]
    on_line = q < t1
    q, qa = q[on_line], at[on_line]
    u = ((q - cur[qa]) / (nxt[qa] - cur[qa]))[:, None]
    add_k = np.concatenate([t0 + 1, q]).astype(keys.dtype)
    add_v = np.concatenate([vals[at], vals[qa] + (vals[qa + 1] - vals[qa]) * u]).astype(vals.dtype)
    k = np.concatenate([keys, add_k])
    order = np.argsort(k, kind="stable")
    return k[order], np.concatenate([vals, add_v])[order]


# ------------------------------------------------------------ keyframe reduction


_STEPS: dict[int, tuple] = {}


def _steps(w: int):
    """(1/d, 1/d) columns for d = 1..w frames after a keyframe (cached)."""
    st = _STEPS.get(w)
    if st is None:
        inv = 1.0 / np.arange(1, w + 1, dtype=np.float64)[:, None]
        st = _STEPS[w] = (inv, inv)
    return st


def reduce_keyframes(x: np.ndarray, tol: float, care: np.ndarray | None = None):
    """Keyframes for a series ``x`` (T x D): returns (frame indices, values
    K x D) such that linear interpolation between the keyframes is within
    ``tol`` of ``x`` in every column on every frame where ``care`` is true.

    One pass, like the swinging-door compressors of process historians: from
    each keyframe, the slopes that keep every later frame inside its +-tol band
    form an interval per column; the segment grows while every interval is
    non-empty, and ends with the middle slope. Keyframe values are therefore
    not the samples themselves but anywhere within their band, which allows
    much longer segments on noisy tracks. A series that stays within tol of one
    value keeps a single keyframe (frame 0). ``tol`` 0 keeps every frame where
    the series is not exactly linear; a negative ``tol`` counts as 0, so the
    keyframe indices always strictly increase."""
    tol = max(0.0, float(tol))  # (a negative band would end a segment on its own first frame: a key twice)
    T = len(x)
    x = np.asarray(x, np.float64).reshape(T, -1)
    cared = np.ones(T, bool) if care is None else np.asarray(care, bool)
    if not cared.any():
        return np.arange(1), x[:1].copy()
    xs = x[cared]
    lo_all, hi_all = xs.min(0), xs.max(0)
    if float((hi_all - lo_all).max()) <= 2 * tol:
        return np.arange(1), ((lo_all + hi_all) / 2)[None]
    first = int(np.argmax(cared))
    keys, vals = [0], [x[first].copy()]
    i, v, window = 0, x[first].copy(), 8
    all_cared = bool(cared.all())
    while i < T - 1:
        w = min(window, T - 1 - i)
        while True:  # the frames after i, a window at a time (doubled until the segment ends)
            inv, band = _steps(w)
            rel = (x[i + 1:i + w + 1] - v) * inv
            if all_cared:
                lo = np.maximum.accumulate(rel - band * tol, 0)
                hi = np.minimum.accumulate(rel + band * tol, 0)
            else:
                c = cared[i + 1:i + w + 1, None]
                lo = np.maximum.accumulate(np.where(c, rel - band * tol, -np.inf), 0)
                hi = np.minimum.accumulate(np.where(c, rel + band * tol, np.inf), 0)
            bad = np.flatnonzero((lo > hi).any(1))
            if bad.size:
                # frame i + 1 + f cannot be reached: end at the last frame before it that counts
                # (a key on a frame that does not count would be extrapolated, and the next segment's
                # slopes from it, without bound: a shape shown on a third of 600 frames reached 1e18)
                f = int(bad[0])
                j = i + f if all_cared else i + 1 + int(np.flatnonzero(cared[i + 1:i + f + 1])[-1])
                lo, hi = lo[f - 1], hi[f - 1]
                break
            if i + w == T - 1:
                j, lo, hi = T - 1, lo[-1], hi[-1]
                break
            w = min(2 * w, T - 1 - i)
        if j == T - 1 and not all_cared:  # the last segment ends on its last frame that counts, then holds
            left = np.flatnonzero(cared[i + 1:])
            if left.size:
                jc = i + 1 + int(left[-1])
                v = v + _mid(lo, hi) * (jc - i)
                keys.append(jc)
                vals.append(v)
                i = jc
            if i < T - 1:
                keys.append(T - 1)
                vals.append(v.copy())
            break
        m = _mid(lo, hi)
        v = v + m * (j - i)
        keys.append(j)
        vals.append(v)
        window = max(4, 2 * (j - i))
        i = j
    return np.array(keys), np.stack(vals)


def _mid(lo, hi):
    """The middle slope of each column's band (0 where a column had no constraint)."""
    fin = np.isfinite(lo) & np.isfinite(hi)
    return np.where(fin, (np.where(fin, lo, 0.0) + np.where(fin, hi, 0.0)) / 2, 0.0)


def reduce_keyframes_many(xs, tol: float, cares=None, *, max_floats: int = 20_000_000):
    """:func:`reduce_keyframes` for many series of the same length at once
    (the same results, bit for bit): one pass over the frames advances every
    series' segment together, so the cost per frame is a few array operations
    however many tracks there are. ``cares``: None or one mask (or None) per
    series. Series are batched to at most ``max_floats`` numbers at a time."""
    tol = max(0.0, float(tol))  # as reduce_keyframes: never a key twice
    out: list = [None] * len(xs)
    todo = []
    for n, x in enumerate(xs):
        T = len(x)
        # kept as given (float32 from the recorder where nothing is simplified): a batch is
        # made float64 when it is reduced, not every series at once (a copy of them all)
        x = np.asarray(x)
        x = (x if x.dtype.kind == "f" else x.astype(np.float64)).reshape(T, -1)
        care = None if cares is None else cares[n]
        cared = np.ones(T, bool) if care is None else np.asarray(care, bool)
        if not cared.any():
            out[n] = (np.arange(1), x[:1].astype(np.float64))
            continue
        xs_ = x[cared]
        # (min and max of float32 numbers widened to float64 are those of the widened numbers)
        lo_all, hi_all = xs_.min(0).astype(np.float64), xs_.max(0).astype(np.float64)
        if float((hi_all - lo_all).max()) <= 2 * tol:
            out[n] = (np.arange(1), ((lo_all + hi_all) / 2)[None])
            continue
        todo.append((n, x, cared))
    chunk, size = [], 0
    for item in todo:
        if chunk and (size + item[1].size > max_floats or len(item[1]) != len(chunk[0][1])):
            _reduce_batch(chunk, tol, out)
            chunk, size = [], 0
        chunk.append(item)
        size += item[1].size
    if chunk:
        _reduce_batch(chunk, tol, out)
    return out


def _reduce_batch(items, tol, out) -> None:
    T = len(items[0][1])
    X = np.concatenate([x for _, x, _ in items], 1, dtype=np.float64)
    widths = np.array([x.shape[1] for _, x, _ in items])
    starts = np.concatenate([[0], np.cumsum(widths)[:-1]])
    G, C = len(items), X.shape[1]
    col = np.repeat(np.arange(G), widths)
    CARE = np.stack([c for _, _, c in items], 1)
    first = CARE.argmax(0)
    v = X[first[col], np.arange(C)]
    i_g = np.zeros(G, np.int64)
    last = np.zeros(G, np.int64)  # each series' last frame that counts, since its segment began
    lo, hi = np.full(C, -np.inf), np.full(C, np.inf)
    keys = [[0] for _ in range(G)]
    vals = [[v[a:a + w].copy()] for a, w in zip(starts, widths)]
    for k in range(1, T):
        inv = 1.0 / (k - i_g)[col]
        c = CARE[k][col]
        rel = (X[k] - v) * inv
        band = inv * tol
        nlo = np.where(c, np.maximum(lo, rel - band), lo)
        nhi = np.where(c, np.minimum(hi, rel + band), hi)
        bad = nlo > nhi
        if bad.any():
            gs = np.flatnonzero(np.logical_or.reduceat(bad, starts))
            bc = np.zeros(G, bool)
            bc[gs] = True
            bc = bc[col]
            m = _mid(lo, hi)
            # ends at its last frame that counts (k - 1 where every frame does; reduce_keyframes)
            v = np.where(bc, v + m * (last - i_g)[col], v)
            i_g[gs] = last[gs]
            for g in gs.tolist():
                keys[g].append(int(last[g]))
                vals[g].append(v[starts[g]:starts[g] + widths[g]].copy())
            inv1 = 1.0 / (k - i_g)[col]
            rel1 = (X[k] - v) * inv1
            nlo = np.where(bc, np.where(c, rel1 - inv1 * tol, -np.inf), nlo)
            nhi = np.where(bc, np.where(c, rel1 + inv1 * tol, np.inf), nhi)
        lo, hi = nlo, nhi
        last[CARE[k]] = k
    m = _mid(lo, hi)
    end = v + m * (last - i_g)[col]
    for g, (n, _, _) in enumerate(items):
        if last[g] > i_g[g]:  # the last segment ends on its last frame that counts
            keys[g].append(int(last[g]))
            vals[g].append(end[starts[g]:starts[g] + widths[g]].copy())
        if keys[g][-1] < T - 1:  # then holds to the end
            keys[g].append(T - 1)
            vals[g].append(vals[g][-1].copy())
        out[n] = (np.array(keys[g]), np.stack(vals[g]))


# ------------------------------------------------------------ path simplification

_FIT_T = np.array([0.2, 0.4, 0.6, 0.8])[None, None, :, None]
_FIT_FLOATS = 1 << 20  # numbers per array of a block of frames in _Fitter (8 MB in float64)


class _Fitter:
    """Samples of a sub-path's segments, precomputed once, so that fitting one
    cubic over any span of segments is a few array operations on all frames.
    Both run over blocks of frames of at most ``_FIT_FLOATS`` numbers per
    array (one block for all but long animations): each frame's numbers are
    its own, so the results are the same, and the dozen frames x samples
    float64 arrays of one fit stay small (over all frames at once they were
    ~1 GB for a 38-vertex outline at MAX_FRAMES)."""

    def __init__(self, sub: np.ndarray):
        self.sub = sub
        T, n, _ = sub.shape
        k = _FIT_T.shape[2] + 1
        M = (n - 1) * k + 1
        self.F = F = np.empty((T, M, 2), np.result_type(sub, _FIT_T))  # vertex, samples, vertex, ..., last
        self.C = C = np.empty((T, M), F.dtype)                            # chord length from the first vertex
        self.k = k
        step = max(1, _FIT_FLOATS // (2 * M))
        for t0 in range(0, T, step):
            s = sub[t0:t0 + step]
            p0, p1, p2, p3 = s[:, :-1, None, 0:2], s[:, :-1, None, 4:6], s[:, 1:, None, 2:4], s[:, 1:, None, 0:2]
            t = _FIT_T
            u = 1 - t
            smp = u ** 3 * p0 + 3 * u * u * t * p1 + 3 * u * t * t * p2 + t ** 3 * p3       # t, n-1, 4, 2
            body = np.concatenate([s[:, :-1, None, 0:2], smp], 2).reshape(len(s), (n - 1) * k, 2)
            Fs = F[t0:t0 + step]
            Fs[:] = np.concatenate([body, s[:, -1:, 0:2]], 1)
            C[t0:t0 + step, 0] = 0.0
            C[t0:t0 + step, 1:] = np.cumsum(np.linalg.norm(np.diff(Fs, axis=1), axis=2), 1)

    def fit(self, a: int, b: int):
        """(out control at a, in control at b, max distance to the samples) of
        one cubic from vertex a to b that keeps the end points and tangent
        directions; tangent lengths by least squares, chord-length parameters."""
        T = len(self.sub)
        step = max(1, _FIT_FLOATS // (self.k * (b - a) + 1))
        if step >= T:
            return self._fit(a, b, slice(None))
        outs, err = [], 0.0
        for t0 in range(0, T, step):
            o, i, e = self._fit(a, b, slice(t0, t0 + step))
            if o is None:
                return None, None, np.inf
            outs.append((o, i))
            err = max(err, e)
        return np.concatenate([o for o, _ in outs]), np.concatenate([i for _, i in outs]), err

    def _fit(self, a: int, b: int, rows: slice):
        """:meth:`fit` on the frames ``rows``."""
        g, k = self.sub[rows], self.k
        A, B = g[:, a, 0:2], g[:, b, 0:2]
        d1, d2 = g[:, a, 4:6] - A, g[:, b, 2:4] - B
        Q = self.F[rows, k * a + 1:k * b]                            # T, K, 2
        C = self.C[rows, k * a:k * b + 1]
        u = (C[:, 1:-1] - C[:, :1]) / np.maximum(C[:, -1:] - C[:, :1], 1e-12)
        v = 1 - u
        b1, b2 = 3 * v * v * u, 3 * v * u * u
        wa, wb = v ** 3 + b1, b2 + u ** 3
        # residual of the straight part, per axis (T, K)
        rx = Q[..., 0] - wa * A[:, None, 0] - wb * B[:, None, 0]
        ry = Q[..., 1] - wa * A[:, None, 1] - wb * B[:, None, 1]
        d1x, d1y, d2x, d2y = d1[:, None, 0], d1[:, None, 1], d2[:, None, 0], d2[:, None, 1]
        m11 = (b1 * b1).sum(1) * (d1[:, 0] ** 2 + d1[:, 1] ** 2)
        m22 = (b2 * b2).sum(1) * (d2[:, 0] ** 2 + d2[:, 1] ** 2)
        m12 = (b1 * b2).sum(1) * (d1[:, 0] * d2[:, 0] + d1[:, 1] * d2[:, 1])
        r1 = (b1 * (rx * d1x + ry * d1y)).sum(1)
        r2 = (b2 * (rx * d2x + ry * d2y)).sum(1)
        det = m11 * m22 - m12 * m12
        ok = det > 1e-12 * np.maximum(m11 * m22, 1e-300)
        safe = np.where(ok, det, 1.0)
        al = np.where(ok, (r1 * m22 - r2 * m12) / safe, 0.0)
        be = np.where(ok, (r2 * m11 - r1 * m12) / safe, 0.0)
        if not (ok.all() and (al > 0).all() and (be > 0).all()):
            return None, None, np.inf
        ex = rx - al[:, None] * b1 * d1x - be[:, None] * b2 * d2x
        ey = ry - al[:, None] * b1 * d1y - be[:, None] * b2 * d2y
        err = float(np.sqrt((ex * ex + ey * ey).max()))
        return A + al[:, None] * d1, B + be[:, None] * d2, err


def simplify_track(g: np.ndarray, shape, tol: float):
    """Fewer Bezier vertices for a track (g: T x n x 6 absolute: vertex, in and
    out controls) within ``tol`` pixels of every frame's curve; the same
    vertices are kept on every frame (so the keyframes still interpolate).
    Sub-path ends are kept. The vertices are chosen on a sample of the frames,
    then every span is fitted and checked on all frames (shortened if needed).
    A frame that repeats the one before it (a recording's pauses, lines far
    apart drawn at a fixed rate, where a frame is held until the next) is
    fitted with it: each frame's fit is its own, so only the sample that
    chooses the vertices sees fewer frames (`animate` of 5 lines half an hour
    apart at 1 fps, 9,000 frames: 15 s, 9.6 of them here; now 5.6 s).
    Returns (g', shape')."""
    if tol <= 0:
        return g, shape
    T = len(g)
    if T > 1:
        new = np.ones(T, bool)  # a frame unlike the one before it
        new[1:] = (g[1:] != g[:-1]).reshape(T - 1, -1).any(1)
        if not new.all():
            g2, shape2 = simplify_track(g[new], shape, tol)
            return g2[np.cumsum(new) - 1], shape2
    step = max(1, T // _SIMPLIFY_SAMPLE)
    outs, new_shape, start = [], [], 0
    for closed, n in shape:
        sub = np.array(g[:, start:start + n], np.float64)
        start += n
        if n <= 2:
            outs.append(sub)
            new_shape.append((closed, n))
            continue
        full = _Fitter(sub)
        # spans grown forward on a sample of the frames (all of them when there are few: shrinking each
        # span from the sub-path's end one vertex at a time cost 0.2-0.7 s for a single avatar)
        probe = _Fitter(sub[::step]) if step > 1 else full
        keep = [0]
        a = 0
        while a < n - 1:
            b = a + 1
            if probe is not None:
                while b + 1 <= n - 1 and probe.fit(a, b + 1)[2] <= tol:
                    b += 1
            else:
                b = n - 1
            fitted = None
            while b >= a + 2:
                o, i, err = full.fit(a, b)
                if err <= tol:
                    fitted = (o, i)
                    break
                b -= 1
                if probe is not None:
                    continue
            if fitted is None:
                b = a + 1
            else:
                sub[:, a, 4:6], sub[:, b, 2:4] = fitted
            a = b
            keep.append(a)
        outs.append(sub[:, keep])
        new_shape.append((closed, len(keep)))
    return np.concatenate(outs, 1), tuple(new_shape)


# ----------------------------------------------------------------- the exporter


class Animation:
    """Collects frames and writes them as Lottie JSON or animated SVG.

    ``size`` / ``width`` / ``height``: output size in pixels (the canonical
    frame's [-1, 1] square is fitted, centred, as in :func:`avatarizer.render`).
    ``fps``: frames per second of the added frames. ``tolerance``: how far
    (output pixels) any vertex or Bezier control point of the export may be
    from the native scene on any frame (default: 1/256 of the shorter side,
    2 px at 512; 0 allowed, but coordinates are rounded to 1/64 px at the
    finest, so the export is within max(tolerance, 1/128) px of the scene);
    ``color_tolerance`` the same for colour channels, in 1/255.
    ``background``: None (transparent), 'white', '#rrggbb' or an RGB tuple.
    """

    def __init__(self, size: int = 512, *, width: int | None = None, height: int | None = None,
                 fps: float = 30.0, tolerance: float | None = None,
                 color_tolerance: float = DEFAULT_COLOR_TOLERANCE, background=None):
        from .render import _background, _size

        self.width, self.height = _size(size, width, height)
        if tolerance is None:
            tolerance = TOLERANCE_FRACTION * min(self.width, self.height)
        if not is_real(fps) or not MIN_FPS <= fps <= MAX_FPS:
            raise ValueError(f"fps must be a number in [{MIN_FPS:g}, {MAX_FPS:g}], got {fps!r}")
        for name, v in (("tolerance", tolerance), ("color_tolerance", color_tolerance)):
            if not is_real(v) or not 0 <= v <= 64:
                raise ValueError(f"{name} must be a number in [0, 64], got {v!r}")
        self.fps = float(fps)
        self.tolerance = float(tolerance)
        self.color_tolerance = float(color_tolerance)
        bg = _background(background)
        self.background = None if bg is None or bg[3] == 0 else bg
        s = 0.5 * min(self.width, self.height)
        self._rec = _Recorder(s, 0.5 * self.width, 0.5 * self.height)
        self._cache = None
        # coordinates are written as whole numbers of a quantum (1/q px, q a
        # power of two, at most a quarter of the tolerance) in a layer scaled by 1/q
        self._q = float(2 ** min(6, max(0, math.ceil(math.log2(4.0 / max(self.tolerance, 1e-3))))))

    def __len__(self) -> int:
        return self._rec.n

    @property
    def error_bound(self) -> float:
        """How far (output pixels, per axis) the export may be from the scene:
        the tolerance, or half the finest coordinate quantum (1/128 px) when the
        tolerance is below it (0 included: rounding alone may go that far)."""
        return max(self.tolerance, 0.5 / self._q)

    def add(self, params) -> None:
        """Appends one frame (629 parameters; ``ValueError`` names a bad one)."""
        if self._rec.n >= MAX_FRAMES:
            raise ValueError(f"an animation holds at most {MAX_FRAMES} frames")
        self._rec.add(validate(params))
        self._cache = None

    def extend(self, frames) -> "Animation":
        for p in frames:
            self.add(p)
        return self

    # -- reduced tracks
    def _reduced(self):
        if self._cache is not None:
            return self._cache
        if self._rec.n == 0:
            raise ValueError("the animation has no frames (add at least one parameter vector)")
        q = self._q
        # error budget per axis: rounding to the quantum (<= tol / 8), then the
        # rest split between fewer vertices and fewer keyframes; none left under
        # half the finest quantum (1/128 px): every vertex, and every key but
        # exactly linear runs, kept
        budget = max(0.0, self.tolerance - 0.5 / q)
        out = {}
        self._shapes = {}
        tids = [t.id for t in self._rec.tracks]
        press, stys, nvs, geo_r = [], [], [], []
        # a few tracks at a time (_EXPORT_FLOATS numbers of their frames): their series,
        # simplified and reduced, then dropped, so what the export holds past the recording
        # is mostly its output (all tracks at once, in float32 and again in float64, peaked
        # at ~5x the recording: ~0.145 MB a frame, ~5 GB at MAX_FRAMES; now ~1.8 GB)
        chunks, size = [[]], 0
        for t in self._rec.tracks:
            if chunks[-1] and size >= _EXPORT_FLOATS:
                chunks.append([])
                size = 0
            chunks[-1].append(t.id)
            size += 6 * self._rec.n * sum(n for _, n in t.shape)
        for chunk in chunks:
            series, flats = self._rec.series(chunk), []
            for tid in chunk:
                pres, geo, sty = series.pop(tid)
                geo, self._shapes[tid] = simplify_track(geo, self._rec.tracks[tid].shape,
                                                        budget * _SIMPLIFY_SHARE)
                flats.append(geo.reshape(len(geo), -1))
                nvs.append(flats[-1].shape[1] // 6)
                press.append(pres)
                stys.append(sty)
            geo_r += reduce_keyframes_many(flats, budget * (1 - _SIMPLIFY_SHARE), press[len(geo_r):])
        # (the values written are rounded: Lottie's to 3 decimals, SVG's colours to 8 bits, the coarser)
        ctol = max(0.0, (self.color_tolerance - COLOUR_ROUNDING) / 255.0)
        col_r = reduce_keyframes_many([s_[:, :3] for s_ in stys], ctol)
        op_r = reduce_keyframes_many([s_[:, 3:4] for s_ in stys], ctol)
        w_r = reduce_keyframes_many([s_[:, 4:] for s_ in stys], budget, press)
        for n, tid in enumerate(tids):
            gkeys, gv = _held_into_gaps(*geo_r[n], press[n])
            w_r[n] = _held_into_gaps(*w_r[n], press[n])
            geo_r[n] = None  # (each track's float series dropped as it is converted: not all of them kept twice)
            nv = nvs[n]
            # whole quanta: |x| <= a few times 8192 px * 128 fits int32 (half of int64's memory: a noisy 20-minute
            # performance keeps a keyframe a frame)
            gvals = np.rint(gv * q).astype(np.int32).reshape(len(gkeys), nv, 6)
            del gv
            if (gvals == gvals[:1]).all():
                gkeys, gvals = gkeys[:1], gvals[:1]
            gvals[..., 2:4] -= gvals[..., 0:2]  # tangents relative to their vertex (Lottie's form)
            gvals[..., 4:6] -= gvals[..., 0:2]
            ckeys, cvals = _static_or(*col_r[n], lambda v: np.round(np.clip(v, 0, 1), 3))
            okeys, ovals = _static_or(*op_r[n], lambda v: np.round(np.clip(v[:, 0], 0, 1), 3))
            wkeys, wvals = _static_or(*w_r[n], lambda v: np.round(np.maximum(v[:, 0], 0) * q, 1))
            out[tid] = (gkeys, gvals, ckeys, cvals, wkeys, wvals, okeys, ovals)
        self._cache = out
        return out

    def stats(self) -> dict:
        """Frames, tracks and keyframes kept (geometry, colour) after reduction."""
        red = self._reduced()
        return {"frames": self._rec.n, "tracks": len(red),
                "geometry_keyframes": int(sum(len(v[0]) for v in red.values() if len(v[0]) > 1)),
                "color_keyframes": int(sum(len(v[2]) for v in red.values() if len(v[2]) > 1)),
                "static_tracks": int(sum(len(v[0]) == 1 and len(v[2]) == 1 and len(v[4]) == 1 and len(v[6]) == 1
                                         for v in red.values()))}

    def _runs(self):
        """Drawing order flattened to runs of leaf tracks that share one clip stack."""
        runs: list[tuple[tuple, list]] = []

        def walk(nodes, clips):
            cur: list = []
            for t in nodes:
                if t.children is None:
                    cur.append(t)
                    continue
                if cur:
                    runs.append((clips, cur))
                    cur = []
                walk(t.children, clips + (t,))
            if cur:
                runs.append((clips, cur))

        walk(self._rec.root, ())
        return runs

    # ------------------------------------------------------------------ Lottie
    def to_lottie(self) -> dict:
        """The animation as a Lottie (Bodymovin 5) document."""
        doc = self._lottie_head()
        for layer, groups in self._lottie_layers():
            layer["shapes"] = list(groups)
            doc["layers"].append(layer)
        return doc

    def _lottie_head(self) -> dict:
        """The document without its layers (``"layers": []``)."""
        T = self._rec.n
        return {"v": "5.7.4", "fr": self.fps, "ip": 0, "op": T, "w": self.width, "h": self.height,
                "nm": "avatarizer", "ddd": 0, "assets": [], "layers": [],
                "meta": {"g": "avatarizer", "tolerance_px": self.tolerance,
                         "color_tolerance": self.color_tolerance}}

    def _lottie_layers(self):
        """Each layer in document order (Lottie draws the first on top), as
        (the layer with ``"shapes": []``, an iterator of its shape groups
        made one at a time): a long export never holds the whole document."""
        red = self._reduced()
        T = self._rec.n
        runs = self._runs()
        n = len(runs) + (self.background is not None)
        for i, (clips, tracks) in enumerate(reversed(runs)):
            layer = {"ddd": 0, "ty": 4, "nm": f"run {len(runs) - 1 - i}", "sr": 1, "ao": 0, "ip": 0, "op": T,
                     "st": 0, "bm": 0, "ks": _layer_ks(100 / self._q), "shapes": []}
            if clips:
                layer["hasMask"] = True
                # the outermost clip's sub-paths are added; nested clips intersect
                # (exact for the single-contour clips the scene uses)
                layer["masksProperties"] = [
                    {"inv": False, "mode": "a" if k == 0 else "i", "nm": f"clip {c.id}",
                     "pt": _lottie_path_prop(red[c.id][0], sub, closed), "o": {"a": 0, "k": 100},
                     "x": {"a": 0, "k": 0}}
                    for k, c in enumerate(clips) for closed, sub in _subpaths(self._shapes[c.id], red[c.id][1])]
            layer["ind"] = i + 1
            # Lottie: the first group is on top
            yield layer, (self._lottie_group(t, red[t.id]) for t in reversed(tracks))
        if self.background is not None:
            r, g, b, a = self.background
            yield {"ddd": 0, "ty": 4, "nm": "background", "sr": 1, "ao": 0, "ip": 0, "op": T, "st": 0,
                   "bm": 0, "ks": _layer_ks(), "shapes": [], "ind": n}, iter([{"ty": "gr", "nm": "background", "it": [
                       {"ty": "rc", "d": 1, "p": {"a": 0, "k": [self.width / 2, self.height / 2]},
                        "s": {"a": 0, "k": [self.width, self.height]}, "r": {"a": 0, "k": 0}},
                       {"ty": "fl", "c": {"a": 0, "k": [r, g, b, 1]}, "o": {"a": 0, "k": a * 100},
                        "r": 1}, _group_tr()]}])

    def _lottie_chunks(self):
        """The Lottie JSON text in pieces (:meth:`to_lottie_json` joined):
        each shape group serialised alone, as it is made."""
        def dumps(obj) -> str:
            return _compact(json.dumps(obj, separators=(",", ":")))

        head, tail = dumps(self._lottie_head()).split('"layers":[]', 1)
        yield head + '"layers":['
        for i, (layer, groups) in enumerate(self._lottie_layers()):
            before, after = dumps(layer).split('"shapes":[]', 1)
            yield ("," if i else "") + before + '"shapes":['
            for k, group in enumerate(groups):
                yield ("," if k else "") + dumps(group)
            yield "]" + after
        yield "]" + tail

    def to_lottie_json(self) -> str:
        return "".join(self._lottie_chunks())

    def _lottie_group(self, t: _Track, red) -> dict:
        gkeys, gvals, ckeys, cvals, wkeys, wvals, okeys, ovals = red
        items = [{"ty": "sh", "nm": f"path {s}", "ks": _lottie_path_prop(gkeys, sub, closed)}
                 for s, (closed, sub) in enumerate(_subpaths(self._shapes[t.id], gvals))]
        color = _lottie_prop(ckeys, cvals, lambda v: [*v, 1])
        opacity = _lottie_prop(okeys, ovals * 100, lambda v: round(v, 1))
        if t.kind == native.ITEM_STROKE:
            items.append({"ty": "st", "c": color, "o": opacity,
                          "w": _lottie_prop(wkeys, wvals[:, None], lambda v: float(v[0])),
                          "lc": 2, "lj": 2, "ml": 4, "bm": 0})
        else:
            items.append({"ty": "fl", "c": color, "o": opacity, "r": 1, "bm": 0})
        items.append(_group_tr())
        return {"ty": "gr", "nm": f"track {t.id}", "it": items}

    # ------------------------------------------------------------------ SVG
    def to_svg(self) -> str:
        """The animation as an SVG document animated with SMIL (loops)."""
        return "".join(self._svg_pieces())

    def _svg_digest(self, red) -> str:
        """What names the document's clip paths: a hash of all that the
        document is made of (its size, rate, background, every track's
        reduced keys and values and its shape), so the same picture gives the
        same document and two animations inlined in one page never share an
        id (:func:`avatarizer.native.unique_svg_ids` hashed the whole text,
        which kept the document in memory twice)."""
        h = hashlib.sha1(repr((self.width, self.height, self.fps, self.background, self._rec.n, self._q)).encode())
        for tid in sorted(red):
            h.update(repr((tid, self._rec.tracks[tid].kind, self._shapes.get(tid))).encode())
            for arr in red[tid]:
                a = np.ascontiguousarray(arr)
                h.update(repr((a.dtype.str, a.shape)).encode())
                h.update(a.tobytes())
        return h.hexdigest()[:12]

    def _svg_pieces(self):
        """:meth:`to_svg`'s text, element by element (never the whole document
        in memory: 4,800 frames peaked at 704 MB, Lottie's at 456)."""
        red = self._reduced()
        T = self._rec.n
        dur = _clock_value(T / self.fps)
        w, h = self.width, self.height
        q = self._q  # coordinates in whole quanta of 1/q px
        digest = self._svg_digest(red)
        yield _compact(f'<svg xmlns="http://www.w3.org/2000/svg" xmlns:xlink="http://www.w3.org/1999/xlink" '
                       f'width="{w}" height="{h}" '
                       f'viewBox="0 0 {round(w * q)} {round(h * q)}">') + "\n"  # (exact: :g kept 6 digits)
        if self.background is not None:
            r, g, b, a = self.background
            yield _compact(f'<rect width="{round(w * q)}" height="{round(h * q)}" fill="{_hex((r, g, b))}"'
                           + (f' fill-opacity="{a:.4g}"' if a < 1 else "") + "/>") + "\n"

        def anim(attr, keys, values):
            if all(keys[i + 1] - keys[i] == 1 or values[i + 1] == values[i] for i in range(len(keys) - 1)):
                # nothing tweened: every change one frame after the key before it (a slideshow, a
                # track that changes each frame), each value held to the next change, which
                # "discrete" says once per change (linear wrote every held value twice)
                keep = [i for i in range(len(keys)) if i == 0 or values[i] != values[i - 1]]
                # each change HOLD_EPS of a frame early, as linear mode's hold ends: a key at k / T, rounded,
                # fell after a browser's seek to the frame's own time (f / fps): the frame before was shown
                kt = ";".join("0" if keys[i] == 0 else f"{(keys[i] - HOLD_EPS) / T:.9g}" for i in keep)
                return (f'<animate attributeName="{attr}" dur="{dur}" repeatCount="indefinite" '
                        f'calcMode="discrete" keyTimes="{kt}" values="{";".join(values[i] for i in keep)}"/>')
            kt, vs = [], []
            for i, k in enumerate(keys):
                kt.append(k / T)
                vs.append(values[i])
                if i + 1 < len(keys) and keys[i + 1] - k == 1 and values[i + 1] != values[i]:
                    # a frame's own value to the next frame: held
                    kt.append((keys[i + 1] - HOLD_EPS) / T)
                    vs.append(values[i])
            kt.append(1)
            vs.append(values[-1])
            # a key inside a stretch of one value (its neighbours' value: a hold that a change
            # one frame later ends) changes nothing
            keep = [j for j in range(len(vs)) if j in (0, len(vs) - 1) or not (vs[j - 1] == vs[j] == vs[j + 1])]
            kt = ";".join(f"{kt[j]:.9g}" for j in keep)
            vs = ";".join(vs[j] for j in keep)
            return (f'<animate attributeName="{attr}" dur="{dur}" repeatCount="indefinite" '
                    f'calcMode="linear" keyTimes="{kt}" values="{vs}"/>')

        # a path another track draws too (the face's outline as its fill, its clip and its stroke: 10% of
        # a clip's SVG) is defined once, its keys with it, and each track uses it
        def geometry(tid):
            h = hashlib.sha1(repr((self._shapes[tid], len(red[tid][0]))).encode())
            for arr in red[tid][:2]:
                h.update(np.ascontiguousarray(arr).tobytes())
            return h.digest()

        geo = {tid: geometry(tid) for tid in red}
        uses = collections.Counter(geo.values())
        defined: dict = {}

        def path_el(t) -> tuple[str, str]:
            """(what defines its geometry first, where it is shared; the element)."""
            gkeys, gvals, ckeys, cvals, wkeys, wvals, okeys, ovals = red[t.id]
            pre, kids = "", []
            shared = uses[geo[t.id]] > 1
            gid = defined.get(geo[t.id]) if shared else None
            if gid is None:  # (the geometry written here: its own, or the first of a shared one)
                ds = [_svg_d(v, self._shapes[t.id]) for v in gvals]
                moving = [anim("d", gkeys, ds)] if len(gkeys) > 1 else []
            if shared:
                if gid is None:
                    gid = defined[geo[t.id]] = f"avz{digest}-g{len(defined)}"
                    pre = (f'<defs><path id="{gid}" d="{ds[0]}">{moving[0]}</path></defs>' if moving
                           else f'<defs><path id="{gid}" d="{ds[0]}"/></defs>')
                tag, attrs = "use", f'xlink:href="#{gid}"'  # (SVG 1.1's, as cairo's still SVGs: read everywhere)
            else:
                kids = moving
                tag, attrs = "path", f'd="{ds[0]}"'
            if t.kind in (native.ITEM_FILL, native.ITEM_STROKE):
                paint = "stroke" if t.kind == native.ITEM_STROKE else "fill"
                cols = [_hex(c) for c in cvals]
                ops = [f"{o:.4g}" for o in ovals]
                attrs += f' {paint}="{cols[0]}" {paint}-opacity="{ops[0]}"'
                if len(ckeys) > 1:
                    kids.append(anim(paint, ckeys, cols))
                if len(okeys) > 1:
                    kids.append(anim(f"{paint}-opacity", okeys, ops))
                if t.kind == native.ITEM_STROKE:
                    attrs += f' fill="none" stroke-width="{wvals[0]:g}" stroke-linecap="round" stroke-linejoin="round"'
                    if len(wkeys) > 1:
                        kids.append(anim("stroke-width", wkeys, [f"{v:g}" for v in wvals]))
            return pre, f"<{tag} {attrs}>" + "".join(kids) + f"</{tag}>" if kids else f"<{tag} {attrs}/>"

        clips = itertools.count()  # (clip ids numbered in document order, named after its content:
        # two animations inlined in one page kept each other's "c1")

        def walk(nodes):
            for t in nodes:
                pre, el = path_el(t)
                if t.children is None:
                    yield _compact(pre + el) + "\n"
                else:
                    cid = f"avz{digest}-{next(clips)}"
                    yield _compact(f'{pre}<clipPath id="{cid}">{el}</clipPath><g clip-path="url(#{cid})">') + "\n"
                    yield from walk(t.children)
                    yield "</g>\n"

        yield from walk(self._rec.root)
        yield "</svg>\n"

    # ------------------------------------------------------------------ files
    def text_for(self, path) -> str:
        """What a file named ``path`` holds: Lottie JSON for .json, animated
        SVG for .svg (``ValueError`` otherwise, :func:`output_format`)."""
        return self.to_lottie_json() if output_format(path) == "lottie" else self.to_svg()

    def write(self, path, *, overwrite: bool = False) -> Path:
        """Writes ``path`` (.json: Lottie, .svg: animated SVG) through a
        temporary file in the same folder, moved into place when complete;
        an existing ``path`` (also one that appears meanwhile, or a dangling
        symlink) is ``FileExistsError`` unless ``overwrite``
        (:func:`write_text_atomic`); a folder, a named pipe, socket or
        device there is ``ValueError``, also with ``overwrite``."""
        output_format(path)  # (a path of a format it writes: ValueError before anything else)
        path = Path(path)
        refuse_target(path, overwrite)  # (before the reduction: at the frame limit it takes minutes)
        return write_text_atomic(path, self.pieces_for(path), overwrite=overwrite)

    def pieces_for(self, path):
        """:meth:`text_for` as an iterable of str pieces, to be written as
        they come: Lottie is made group by group, never the whole document
        in memory (a 1,200-frame jittery performance: its dict and text took
        more memory than the export's own data); SVG element by element."""
        lottie = output_format(path) == "lottie"
        self._reduced()  # (its errors, no frames, now: before a file or folder is made for the pieces)
        return self._lottie_chunks() if lottie else self._svg_pieces()


def output_format(path) -> str:
    """'lottie' for .json, 'svg' for .svg; ``ValueError`` otherwise (also
    for what is not a path: a 0-d array or a number was a TypeError out of
    ``Path``)."""
    if not isinstance(path, (str, os.PathLike)):
        raise ValueError(f"Expected an output file path (str or os.PathLike), got {type(path).__name__}.")
    name = Path(path).name.lower()
    for suffix, fmt in FORMATS.items():
        if name.endswith(suffix):
            return fmt
    raise ValueError(f"unknown animation output type {Path(path).suffix or '(none)'!r}: use .json (Lottie) or "
                     ".svg (animated SVG)")


def _clock_value(seconds: float) -> str:
    """A SMIL clock value: seconds in fixed point, to the microsecond (SMIL
    allows no exponent: ``:g`` wrote 3e+06s for a long, slow animation)."""
    text = f"{seconds:.6f}".rstrip("0").rstrip(".")
    return f"{text if text not in ('', '0') else '0.000001'}s"


def refuse_target(path: Path, overwrite: bool) -> None:
    """``ValueError`` where ``path`` is a directory, a named pipe, socket
    or device (never replaced, also with ``overwrite``: as the CLI's
    outputs, :func:`avatarizer._files.is_special`) or a folder above it is
    a file, ``FileExistsError`` where something is there (a dangling symlink
    too) and not ``overwrite``."""
    from ._files import is_special

    if path.is_dir():
        raise ValueError(f"{path} is a directory")
    if is_special(path):  # (with overwrite, a pipe another program reads was replaced by a file)
        raise ValueError(f"{path} is not a regular file (a named pipe, socket or device); refusing to replace it")
    for up in path.parents:  # (mkdir then raised FileExistsError, also with overwrite=True)
        if up.exists():
            if not up.is_dir():
                raise ValueError(f"{up} is a file, not a folder: {path} cannot be written")
            break
    if not overwrite and (path.exists() or path.is_symlink()):
        raise FileExistsError(f"{path} already exists")


def write_text_atomic(path, text, *, overwrite: bool = False) -> Path:
    """Writes ``text`` (a str, or an iterable of str pieces written as they
    come) to a temporary file beside ``path``, then moves it into
    place (never leaves a half-written file). Without ``overwrite`` nothing
    at ``path`` is ever replaced, not even a file that appears while the text
    is written or a symlink whose target does not exist (``exists()`` is
    False for it): the file is linked into place with ``os.link``, which
    fails on any existing name (``FileExistsError``), where a check followed
    by a rename would replace what appeared in between."""
    path = Path(path)
    refuse_target(path, overwrite)
    path.parent.mkdir(parents=True, exist_ok=True)
    from .videoio import temp_prefix

    fd, tmp = tempfile.mkstemp(prefix=temp_prefix(path), suffix=".partial", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            if isinstance(text, str):
                f.write(text)
            else:
                for piece in text:
                    f.write(piece)
        os.chmod(tmp, new_file_mode(path))  # mkstemp makes 0600: that of the file it replaces, else the usual
        if overwrite:
            os.replace(tmp, path)
        else:
            link_new(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def link_new(tmp, path: Path) -> None:
    """Gives the finished temporary file ``tmp`` the name ``path`` only if no
    file (nor link) has it, then drops the temporary name. On a file system
    without hard links (``os.link`` fails otherwise) it checks, then
    renames: the best that file system allows. (The CLI's outputs are
    moved into place by it too.)"""
    try:
        os.link(tmp, path)
    except FileExistsError:
        raise FileExistsError(f"{path} already exists (it appeared while the file was written)") from None
    except OSError:
        if path.exists() or path.is_symlink():
            raise FileExistsError(f"{path} already exists (it appeared while the file was written)") from None
        os.replace(tmp, path)
        return
    os.unlink(tmp)


# ------------------------------------------------------------------ helpers


# (each a new object wherever a document holds one: an app that edits the dict ``to_lottie`` returned
# changed every later export of the process and every layer of the same document, which shared them)
def _layer_ks(scale: float = 100) -> dict:
    """A layer's static transform (``scale`` percent in x and y)."""
    return {"o": {"a": 0, "k": 100}, "r": {"a": 0, "k": 0}, "p": {"a": 0, "k": [0, 0, 0]},
            "a": {"a": 0, "k": [0, 0, 0]}, "s": {"a": 0, "k": [scale, scale, 100]}}


def _group_tr() -> dict:
    """A shape group's identity transform."""
    return {"ty": "tr", "p": {"a": 0, "k": [0, 0]}, "a": {"a": 0, "k": [0, 0]}, "s": {"a": 0, "k": [100, 100]},
            "r": {"a": 0, "k": 0}, "o": {"a": 0, "k": 100}, "sk": {"a": 0, "k": 0}, "sa": {"a": 0, "k": 0}}


#: SVG: a value held from one frame to the next changes this many frames
#: before the next one (SMIL has no hold within a linear animation)
HOLD_EPS = 1e-3


def _keyframe(t, value, hold: bool = False) -> dict:
    """A keyframe at frame ``t`` with linear easing to the next, or held to
    it (``hold``: the next keyframe is the next frame; a tween between two
    frames shows neither: at 1 fps the two avatars were blended for a whole
    second, a shape that appears faded in over a frame)."""
    if hold:
        return {"t": int(t), "s": value, "h": 1}
    return {"t": int(t), "s": value, "o": {"x": 0, "y": 0}, "i": {"x": 1, "y": 1}}


def _keyframes(keys, values) -> list:
    """Keyframes at ``keys`` (frames) of ``values``: held where the next one
    is the next frame, linear otherwise; the last holds its value."""
    k = [_keyframe(t, v, hold=i + 1 < len(keys) and keys[i + 1] - t == 1)
         for i, (t, v) in enumerate(zip(keys, values))]
    k[-1] = {"t": int(keys[-1]), "s": values[-1]}  # the last keyframe only holds its value
    return k
_NUM = re.compile(r"(?<=[\d])\.0(?=[,\]\}\s\"; ])")


def _compact(text: str) -> str:
    """12.0 -> 12 (valid JSON/SVG, a fifth smaller)."""
    return _NUM.sub("", text)


def _static_or(keys, vals, fmt):
    """(keys, formatted values), or just the first when nothing changes."""
    vals = fmt(vals)
    if (vals == vals[:1]).all():
        return keys[:1], vals[:1]
    return keys, vals


def _lottie_prop(keys, vals, fmt):
    vals = vals.tolist()
    if len(keys) == 1:
        return {"a": 0, "k": fmt(vals[0])}
    return {"a": 1, "k": _keyframes(keys, [_as_list(fmt(v)) for v in vals])}


def _as_list(v):
    return v if isinstance(v, list) else [v]


def _lottie_path(rows: list, closed: bool) -> dict:
    """Vertices [[x, y, in-dx, in-dy, out-dx, out-dy], ...] -> a Lottie path."""
    return {"c": closed, "v": [r[0:2] for r in rows], "i": [r[2:4] for r in rows], "o": [r[4:6] for r in rows]}


def _lottie_path_prop(keys, vals, closed):
    closed = bool(closed)
    rows = vals.tolist()
    if len(keys) == 1:
        return {"a": 0, "k": _lottie_path(rows[0], closed)}
    return {"a": 1, "k": _keyframes(keys, [[_lottie_path(v, closed)] for v in rows])}


def _subpaths(shape, vals):
    """(closed, vals[:, vertices of the sub-path]) for each sub-path of a track."""
    start = 0
    for closed, n in shape:
        yield closed, vals[:, start:start + n]
        start += n


def _svg_d(v: np.ndarray, shape) -> str:
    """Vertices (n, 6: x, y, in and out tangents relative) of every sub-path ->
    SVG path data with one absolute cubic per segment (the same command list on
    every keyframe, as SMIL needs to interpolate)."""
    a = v.copy()
    a[:, 2:4] += a[:, 0:2]
    a[:, 4:6] += a[:, 0:2]
    rows = a.tolist()
    parts = []
    start = 0
    for closed, n in shape:
        s = rows[start:start + n]
        start += n
        parts.append("M%d %d" % (s[0][0], s[0][1]))
        for j in range(1, n):
            p, c = s[j - 1], s[j]
            parts.append("C%d %d %d %d %d %d" % (p[4], p[5], c[2], c[3], c[0], c[1]))
        if closed:
            parts.append("Z")
    return "".join(parts)


def _hex(rgb) -> str:
    return "#" + "".join(f"{int(round(min(max(c, 0.0), 1.0) * 255)):02x}" for c in rgb)


# ----------------------------------------------------------------- player page

LOTTIE_WEB_VERSION = "5.13.0"  # keep in step with web/package.json
_LOTTIE_CDN = f"https://cdn.jsdelivr.net/npm/lottie-web@{LOTTIE_WEB_VERSION}/build/player/lottie.min.js"


def _local_lottie_web() -> Path | None:
    """The pinned lottie-web of a source checkout (``make webdeps``), if there."""
    p = Path(__file__).resolve().parents[2] / "web" / "node_modules" / "lottie-web" / "build" / "player" / "lottie.min.js"
    return p if p.is_file() else None


def player_html(animation_path, video_path=None, html_path=None, *, inline_player: bool | None = None,
                video_start: float = 0.0) -> str:
    """A small self-contained page that plays a Lottie export with lottie-web,
    next to its source video (kept in step with the video's clock when there
    is one). The animation is embedded; the video is linked relative to the
    page. lottie-web is embedded from the checkout's pinned copy when present
    (``inline_player``), else loaded from jsDelivr at the pinned version.

    ``video_start``: seconds on the video's clock (its ``currentTime``) of the
    animation's frame 0, e.g. the start offset of a video that starts after
    its sound (``avatarizer video`` passes its first frame's time). The page
    shows the frame for ``currentTime - video_start``, and frame 0 before
    it."""
    animation_path = Path(animation_path)
    _check_video_start(video_start)
    text = animation_path.read_text(encoding="utf-8-sig")
    w, h = _lottie_size(text, animation_path)  # (the parsed document is dropped here: the page embeds the text)
    return _player_page(text, animation_path, w, h, video_path, html_path, inline_player=inline_player,
                        video_start=video_start)


def _check_video_start(video_start) -> None:
    if not is_real(video_start) or not 0 <= video_start < 1e6:
        raise ValueError(f"video_start must be a number of seconds in [0, 1e6), got {video_start!r}")


def _lottie_size(text: str, animation_path: Path) -> tuple[int, int]:
    """The width and height of the Lottie document ``text``; ValueError where
    it is not JSON or not an object with a whole "w" and "h"."""
    try:
        doc = json.loads(text)  # (not JSON: ValueError)
    except RecursionError:
        raise ValueError(f"{animation_path} is not a Lottie animation (nested deeper than JSON is read)") from None
    try:
        return int(doc["w"]), int(doc["h"])
    except (TypeError, KeyError, ValueError, OverflowError):
        raise ValueError(f"{animation_path} is not a Lottie animation (an object with a width \"w\" and a "
                         f"height \"h\")") from None


def _player_page(text: str, animation_path: Path, w: int, h: int, video_path=None, html_path=None, *,
                 inline_player: bool | None = None, video_start: float = 0.0) -> str:
    """:func:`player_html`'s page for the Lottie document ``text`` (JSON, of
    size ``w`` x ``h``: checked by the caller, or written by this package),
    which it embeds as :func:`_script_text` escapes it. ``avatarizer video
    --player`` calls it with the size of the animation it has just written:
    parsing the file again to check it took ~16 bytes a byte of it (a 61 MB
    export's page peaked at 1.35 GB, 3x the export's; a review, session 72)."""
    import html as _html

    _check_video_start(video_start)
    data = _script_text(text)
    base = Path(html_path).resolve().parent if html_path else animation_path.resolve().parent
    local = _local_lottie_web() if inline_player in (None, True) else None
    if inline_player and local is None:
        raise ValueError("no local lottie-web (run `make webdeps` in a source checkout)")
    script = (f"<script>{local.read_text(encoding='utf-8')}</script>" if local is not None
              else f'<script src="{_LOTTIE_CDN}"></script>')
    video = ""
    if video_path is not None:
        from urllib.parse import quote

        rel = os.path.relpath(Path(video_path).resolve(), base)
        # a URL, not a file name: '#', '?', '%' (and any byte of a name that is not UTF-8) percent-encoded
        url = quote(os.fsencode(Path(rel).as_posix()), safe="/")
        video = (f'<figure><video id="video" src="{_html.escape(url)}" controls muted playsinline '
                 f'width="{w}"></video><figcaption>source video</figcaption></figure>')
    name = _html.escape(os.fsencode(animation_path.name).decode("utf-8", "replace"))
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{name} - avatarizer</title>
<style>body{{font:14px system-ui,sans-serif;margin:16px;background:#f4f4f4}}main{{display:flex;gap:16px;flex-wrap:wrap}}
figure{{margin:0}}#anim{{width:{w}px;height:{h}px;background:#fff}}video{{background:#000;max-height:{h}px}}</style>
</head><body><h1>{name}</h1><main>{video}<figure><div id="anim"></div><figcaption>vector avatar (Lottie, lottie-web
{LOTTIE_WEB_VERSION}) <button id="play">play / pause</button></figcaption></figure></main>
{script}
<script>
const data = {data};
const anim = lottie.loadAnimation({{container: document.getElementById('anim'), renderer: 'svg', loop: true,
  autoplay: false, animationData: data}});
const video = document.getElementById('video');
if (video) {{
  // the video is the clock: the avatar shows the frame of the video's current time, less the
  // time of the animation's frame 0 on that clock (a video that starts after its sound); frame 0 before it
  const start = {float(video_start)!r};
  const follow = () => {{
    anim.goToAndStop(Math.min(Math.max(0, (video.currentTime - start) * data.fr), data.op - 1), true);
    requestAnimationFrame(follow); }};
  anim.addEventListener('DOMLoaded', follow);
  document.getElementById('play').onclick = () => video.paused ? video.play() : video.pause();
}} else {{
  document.getElementById('play').onclick = () => anim.isPaused ? anim.play() : anim.pause();
  anim.play();
}}
</script></body></html>
"""


#: The characters of JSON text written as \\uXXXX escapes inside <script>: <, > and & ("</script" ends
#: the element, "<!--" changes how the rest is parsed) and every non-ASCII one (U+2028 and U+2029 among
#: them: line ends in older JavaScript)
_SCRIPT_UNSAFE = re.compile("[<>&\u0080-\U0010ffff]")


def _script_escape(m: re.Match) -> str:
    c = ord(m.group())
    if c > 0xFFFF:  # (a UTF-16 surrogate pair, as JSON writes one)
        c -= 0x10000
        return "\\u%04x\\u%04x" % (0xD800 + (c >> 10), 0xDC00 + (c & 0x3FF))
    return "\\u%04x" % c


def _script_text(text: str) -> str:
    """The JSON text ``text`` as a JavaScript expression safe inside a
    <script> element: :data:`_SCRIPT_UNSAFE`'s characters written as
    \\uXXXX escapes, which in JSON text only strings hold, so the value is
    the same and no string ends or opens an element. The page embeds a file
    the user names (possibly someone else's): its text as it was let a
    string holding "</script>" run as the page's script. (A file read as
    UTF-8 holds no lone surrogate.)"""
    return _SCRIPT_UNSAFE.sub(_script_escape, text)


# ----------------------------------------------------------------- convenience


#: the longest line :func:`read_params_jsonl` reads, in characters: a frame's
#: line is 8-20 KB (629 numbers, or 629 names and numbers); a line with no
#: end would otherwise be read whole into memory (a 2 GB one took 4 GB)
MAX_LINE_CHARS = 1 << 20


def _jsonl_lines(f, path):
    """``(number, line)`` of a text file opened as UTF-8, each at most
    :data:`MAX_LINE_CHARS` long (``ValueError`` naming the file and line for
    a longer one, and for bytes that are not UTF-8)."""
    n = 0
    while True:
        try:
            line = f.readline(MAX_LINE_CHARS + 1)
        except UnicodeDecodeError as exc:
            raise ValueError(f"{path}: not UTF-8 text (at or after line {n + 1}: {exc.reason})") from None
        if not line:
            return
        n += 1
        if len(line) - line.endswith("\n") > MAX_LINE_CHARS:  # (its end of line not counted)
            raise ValueError(f"{path}, line {n}: longer than {MAX_LINE_CHARS} characters (a frame's line "
                             "is 8-20 KB): not a parameters file")
        yield n, line


def read_params_jsonl(path, times_ms: list | None = None, durations_ms: list | None = None) -> list[np.ndarray]:
    """One frame per line: a JSON list of 629 numbers, or an object with
    ``"params"`` (a list, or a name -> value object as in ``Avatar.to_json``),
    as ``avatarizer video --params`` writes. A frame without an avatar
    (``"params": null``, or a bare ``null`` line) shows the avatar of the
    frame before it (the first avatar for frames before the first one), so
    the frames keep their times; a file without any avatar is refused.
    Blank lines are skipped; a bad line (also a number too large for a
    float, a ``time_ms`` that is not a finite number, an object of another
    ``schema_version`` or with unknown parameter names) raises
    ``ValueError`` naming it. The file is read line by line and refused as
    soon as it holds more than ``MAX_FRAMES`` frames (lines stamped with
    times, which are resampled: ``MAX_STAMPED_LINES``).
    ``times_ms``: a list that gets each frame's ``"time_ms"`` (None where a
    file stamps no line); the frames are then placed by those times, so a
    file that stamps some lines and not others, or a stamp not after the
    one before it (a line repeated, lines out of order), raises
    ``ValueError`` naming the line. ``durations_ms``: a list that gets each
    frame's ``"duration_ms"`` (how long it is shown; None where a line has
    none), a finite number >= 0 where given."""
    from .schema import NAMES, READS, VERSION

    frames: list = []
    stamped = last = None  # whether the first frame line had a time, and the latest time
    with open(path, encoding="utf-8-sig") as f:  # (a byte-order mark, as Windows editors write, skipped)
        for n, line in _jsonl_lines(f, path):
            if not line.strip():
                continue
            most = MAX_STAMPED_LINES if stamped else MAX_FRAMES  # (stamped lines are resampled: maybe fewer frames)
            if len(frames) >= most:
                raise ValueError(f"{path} holds more than {most} " + (
                    "stamped lines" if stamped else f"frames (an animation holds at most {MAX_FRAMES})"))
            try:
                doc = json.loads(line.rstrip("\r\n"))  # (the line's end off: the decoder's "line 2" contradicted n)
            except json.JSONDecodeError as exc:
                raise ValueError(f"{path}, line {n}: not JSON ({exc.msg} at column {exc.colno})") from None
            except (ValueError, RecursionError) as exc:
                raise ValueError(f"{path}, line {n}: not JSON ({exc})") from None
            version = VERSION  # (a bare list: this SDK's)
            if times_ms is not None:
                t = doc.get("time_ms") if isinstance(doc, dict) else None
                if t is not None and not is_real(t):  # (a string or NaN was taken for no stamp: the timing lost)
                    raise ValueError(f"{path}, line {n}: time_ms must be a finite number of milliseconds, "
                                     f"got {t!r:.40}")
                t = None if t is None else float(t)  # (10**400 raised OverflowError: is_real refuses it)
                if stamped is None:
                    stamped = t is not None
                elif stamped != (t is not None):
                    raise ValueError(f"{path}, line {n}: " + ("no \"time_ms\" (a finite number), where the lines "
                                                                "before have one"
                                                                if stamped else "a \"time_ms\", where the lines "
                                                                "before have none") + ": stamp every line or none")
                if t is not None and abs(t) > MAX_TIMESTAMP_MS:
                    raise ValueError(f"{path}, line {n}: time_ms {t:g} is beyond ±{MAX_TIMESTAMP_MS:.4g} ms (about 142 "
                                     "years; within it a float tells frames a microsecond apart)")
                if t is not None and last is not None and not t > last:
                    raise ValueError(f"{path}, line {n}: time_ms {t:g} is not after the line before's ({last:g}): "
                                     "stamped lines must be in time order, each once")
                last = t if t is not None else last
                times_ms.append(t)
            if durations_ms is not None:
                d = doc.get("duration_ms") if isinstance(doc, dict) else None
                if d is not None and not (is_real(d) and 0 <= d <= MAX_TIMESTAMP_MS):
                    raise ValueError(f"{path}, line {n}: duration_ms must be a finite number of milliseconds "
                                     f">= 0, got {d!r:.40}")
                durations_ms.append(None if d is None else float(d))
            if isinstance(doc, dict):
                version = doc.get("schema_version", VERSION)  # (video --params writes none: this SDK's)
                if isinstance(version, bool) or not isinstance(version, str) or version not in READS:
                    raise ValueError(f"{path}, line {n}: parameters of schema {version!r:.40}; this SDK reads "
                                     f"{', '.join(READS)} (they do not carry over between other versions)")
                doc = doc.get("params", ...)  # (an object without "params" is refused below)
                if isinstance(doc, dict):
                    missing = [k for k in NAMES if k not in doc]
                    unknown = sorted(set(doc) - set(NAMES))
                    if missing or unknown:
                        raise ValueError(f"{path}, line {n}: the parameters do not match schema {VERSION}: "
                                         f"{len(unknown)} unknown {[u[:40] for u in unknown[:3]]}, "
                                         f"{len(missing)} missing "
                                         f"{missing[:3]}")
                    doc = [doc[k] for k in NAMES]
            if doc is None:  # a frame without an avatar
                frames.append(frames[-1] if frames else None)
                continue
            if not isinstance(doc, list) or len(doc) != PARAM_COUNT \
                    or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in doc):
                raise ValueError(f"{path}, line {n}: expected a list of {PARAM_COUNT} numbers (or an object "
                                 "with \"params\")")
            try:
                wide = np.array(doc, np.float64)
            except (OverflowError, TypeError) as exc:  # an integer beyond any float (10**400)
                raise ValueError(f"{path}, line {n}: a number is out of range ({exc})") from None
            # a finite number beyond a 32-bit float (1e39) became infinity, with numpy's overflow warning, and
            # was refused as "inf" though the file holds no infinity (a review, session 65)
            big = np.flatnonzero(np.isfinite(wide) & (np.abs(wide) > FLOAT32_MAX))
            if big.size:
                raise ValueError(f"{path}, line {n}: a number is out of range (parameter {big[0]} "
                                 f"({NAMES[big[0]]}) is {wide[big[0]]:g}, beyond a 32-bit float)")
            try:
                params = validate_version(wide.astype(np.float32), version)
            except ValueError as exc:
                raise ValueError(f"{path}, line {n}: {exc}") from None
            if frames and frames[-1] is None:  # frames before the first avatar show it
                frames = [params if p is None else p for p in frames]
            frames.append(params)
    if not frames:
        raise ValueError(f"{path} holds no frames")
    if frames[-1] is None:
        raise ValueError(f"{path} holds no frame with an avatar (every \"params\" is null)")
    return frames


def export(frames, path, *, size: int = 512, fps: float = 30.0, tolerance: float | None = None,
           background=None, overwrite: bool = False) -> Path:
    """Writes a parameter sequence as Lottie (.json) or animated SVG (.svg)."""
    output_format(path)
    refuse_target(Path(path), overwrite)  # (before the frames are recorded)
    anim = Animation(size, fps=fps, tolerance=tolerance, background=background)
    anim.extend(frames)
    return anim.write(path, overwrite=overwrite)
