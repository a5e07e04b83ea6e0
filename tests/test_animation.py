"""Animated vector avatars: Lottie JSON and animated SVG from the native scene.

The browser tests render exported frames in headless Chromium (Debian's
``chromium``, driven by the pinned playwright-core; Lottie through the pinned
lottie-web) and compare them with the native renderer; ``make test`` installs
both (``make webdeps``). Without them those tests skip with the reason.
"""
from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from avatarizer import render, schema
from avatarizer.animation import (HOLD_EPS, Animation, read_params_jsonl, reduce_keyframes,
                                  reduce_keyframes_many, simplify_track)

from conftest import ROOT, need_shared, save_failure

WEB = ROOT / "web"
SIZE = 256
MAX_MEAN_DIFF = 3.0  # /255, the target at 256 px


def _performance(n=30, seed=0):
    """A synthetic performance that exercises the track matching: two sampled
    avatars blended (categorical parameters switch half way: hair layers,
    glasses, headwear, teeth), plus a mouth that opens and shuts."""
    a, b = schema.sample(2, seed=seed)
    cat = np.array([k in ("categorical", "flag") for k in schema.KINDS])
    frames = []
    for k in range(n):
        t = k / (n - 1)
        p = (1 - t) * a + t * b
        p[cat] = (a if t < 0.5 else b)[cat]
        p[schema.index("teeth.show")] = 1.0 if (k // 4) % 2 else 0.0
        frames.append(schema.clip(p.astype(np.float32)))
    return frames


def _lottie_keyframe_value(prop, t):
    """Linear interpolation of a Lottie property at frame t (as lottie-web does
    with the linear easing the exporter writes)."""
    if not prop["a"]:
        return prop["k"]
    ks = prop["k"]
    if t <= ks[0]["t"]:
        return ks[0]["s"]
    for k0, k1 in zip(ks, ks[1:]):
        if k0["t"] <= t <= k1["t"]:
            u = (t - k0["t"]) / (k1["t"] - k0["t"])
            return _lerp(k0["s"], k1["s"], u)
    return ks[-1]["s"]


def _lerp(a, b, u):
    if isinstance(a, dict):
        return {k: (_lerp(a[k], b[k], u) if k != "c" else a[k]) for k in a}
    if isinstance(a, list):
        return [_lerp(x, y, u) for x, y in zip(a, b)]
    return a + (b - a) * u


# ------------------------------------------------------------------ structure


def test_lottie_document_structure_and_static_parts():
    frames = _performance(24)
    anim = Animation(SIZE, fps=24).extend(frames)
    doc = json.loads(anim.to_lottie_json())
    assert (doc["w"], doc["h"], doc["fr"], doc["ip"], doc["op"]) == (SIZE, SIZE, 24, 0, 24)
    assert doc["layers"] and all(layer["ty"] == 4 and layer["op"] == 24 for layer in doc["layers"])
    masked = [layer for layer in doc["layers"] if layer.get("hasMask")]
    assert masked, "clip groups (eyes, mouth, face shading) must become masked layers"
    n_paths = 0
    for layer in doc["layers"]:
        for g in layer["shapes"]:
            assert g["ty"] == "gr" and g["it"][-1]["ty"] == "tr"
            paint = g["it"][-2]
            assert paint["ty"] in ("fl", "st")
            for sh in g["it"][:-2]:
                assert sh["ty"] == "sh"
                n_paths += 1
                ks = sh["ks"]
                shapes = [ks["k"]] if not ks["a"] else [k["s"][0] for k in ks["k"]]
                sizes = {(len(s["v"]), len(s["i"]), len(s["o"])) for s in shapes}
                assert len(sizes) == 1, "every keyframe of a path needs the same vertex count"
                if ks["a"]:
                    ts = [k["t"] for k in ks["k"]]
                    assert ts == sorted(set(ts)) and ts[0] == 0 and ts[-1] <= 23
    assert n_paths > 50


def test_still_avatar_is_all_static_and_expression_only_moves_the_face():
    p = schema.sample(1, seed=5)[0]
    doc = Animation(SIZE).extend([p]).to_lottie()
    text = json.dumps(doc)
    assert '"a": 1' not in text and doc["op"] == 1
    # only the mouth opens: hair, ears, clothes, eyes keep static paths; no colour changes
    frames = []
    for k in range(20):
        q = p.copy()
        for name in ("lip_inner_lower.y2", "lip_lower_outer.y2"):
            i = schema.index(name)
            q[i] = np.clip(q[i] + 0.004 * k, schema.LO[i], schema.HI[i])
        frames.append(q)
    anim = Animation(SIZE).extend(frames)
    st = anim.stats()
    assert st["color_keyframes"] == 0
    doc = anim.to_lottie()
    moving = sum(sh["ks"]["a"] for layer in doc["layers"] for g in layer["shapes"] for sh in g["it"]
                 if sh["ty"] == "sh")
    assert 0 < moving <= 12, moving  # lips, mouth interior, lip outlines; not the whole face


def test_avatar_to_lottie_still(tmp_path):
    from avatarizer.api import Avatar

    p = schema.sample(1, seed=2)[0]
    doc = Avatar(p).to_lottie(128, background="white")
    assert doc["w"] == 128 and doc["op"] == 1 and doc["layers"][-1]["nm"] == "background"
    assert json.loads(json.dumps(doc)) == doc


def test_exported_keyframes_stay_within_tolerance_of_the_scene():
    """Interpolating the written keyframes reproduces every frame's scene within
    the tolerance: checked on tracks the exporter does not simplify (straight
    outline polygons are checked by vertex), by comparing the Lottie paths at
    every frame with the vertices recorded from the native scene."""
    frames = _performance(30, seed=4)
    tol = 1.0
    anim = Animation(SIZE, tolerance=tol).extend(frames)
    doc = anim.to_lottie()
    q = 1.0 / (doc["layers"][0]["ks"]["s"]["k"][0] / 100)
    red = anim._reduced()
    series = anim._rec.series()
    checked = 0
    for tid, (pres, geo, sty) in series.items():
        shape = anim._shapes[tid]
        if shape != anim._rec.tracks[tid].shape:
            continue  # simplified: checked by test_simplify_track_within_tolerance
        gkeys, gvals = red[tid][0], red[tid][1]
        for t in range(len(frames)):
            if not pres[t]:
                continue
            j = np.searchsorted(gkeys, t, side="right") - 1
            if j + 1 < len(gkeys):
                u = (t - gkeys[j]) / (gkeys[j + 1] - gkeys[j])
                v = gvals[j] * (1 - u) + gvals[j + 1] * u
            else:
                v = gvals[j]
            got = v[:, 0:2] / q
            want = geo[t, :, 0:2]
            assert np.abs(got - want).max() <= tol + 1e-6, (tid, t)
            checked += 1
    assert checked > 100


def _keyframe_times(doc):
    """The "t" lists of every animated property of a Lottie document."""
    if isinstance(doc, dict):
        if doc.get("a") == 1 and isinstance(doc.get("k"), list):
            yield [k["t"] for k in doc["k"]]
        for v in doc.values():
            yield from _keyframe_times(v)
    elif isinstance(doc, list):
        for v in doc:
            yield from _keyframe_times(v)


def _geometry_per_frame(anim):
    """Each unsimplified track's vertices (px) on every frame where it shows, as
    the written keyframes interpolate them."""
    red, series, q = anim._reduced(), anim._rec.series(), anim._q
    out = {}
    for tid, (pres, geo, _) in series.items():
        if anim._shapes[tid] != anim._rec.tracks[tid].shape:
            continue
        keys, vals = red[tid][0], red[tid][1][..., 0:2] / q
        got = np.stack([np.stack([np.interp(np.arange(len(pres)), keys, vals[:, i, d]) for d in range(2)], 1)
                        for i in range(vals.shape[1])], 1)
        out[tid] = (pres, got, geo[..., 0:2])
    return out


@pytest.mark.parametrize("tol", [0.0, 1e-4])
def test_tolerance_under_the_finest_quantum_keeps_keyframe_times_increasing(tol):
    """A tolerance under half the finest quantum (1/128 px; 0 is allowed) left a
    negative budget: every animated path (and colour, with color_tolerance 0)
    began with two keyframes at t=0. Now the times strictly increase in both
    formats, and the picture is the scene's within half a quantum, the same as
    at tolerance 0.01 within that tolerance."""
    import re

    frames = _performance(12, seed=1)
    anim = Animation(128, tolerance=tol, color_tolerance=0).extend(frames)
    assert anim._q == 64
    times = list(_keyframe_times(anim.to_lottie()))
    assert len(times) > 100 and all(np.all(np.diff(t) > 0) for t in times)
    kts = re.findall(r'keyTimes="([^"]*)"', anim.to_svg())
    assert len(kts) > 100 and all(np.all(np.diff([float(x) for x in kt.split(";")]) > 0) for kt in kts)
    ref = _geometry_per_frame(Animation(128, tolerance=0.01, color_tolerance=0).extend(frames))
    mine = _geometry_per_frame(anim)
    assert len(mine) == len(anim._reduced())  # nothing simplified below the quantum
    compared = 0
    for tid, (pres, got, scene) in mine.items():
        assert np.abs(got - scene)[pres].max() <= 0.5 / 64 + 1e-9, tid
        if tid in ref:
            assert np.abs(got - ref[tid][1])[pres].max() <= 0.5 / 64 + 0.01 + 1e-9, tid
            compared += 1
    assert compared > 30


def test_reduce_keyframes_error_bound_and_static():
    rng = np.random.default_rng(0)
    t = np.linspace(0, 4 * np.pi, 300)[:, None]
    x = np.concatenate([np.sin(t) * 40, np.cos(0.5 * t) * 30], 1) + rng.normal(0, 0.2, (300, 2))

    def interp(keys, vals):
        return np.stack([np.interp(np.arange(300), keys, vals[:, d]) for d in range(vals.shape[1])], 1)

    counts = []
    for tol in (0.25, 1.0, 3.0):
        keys, vals = reduce_keyframes(x, tol)
        assert keys[0] == 0 and keys[-1] == 299 and np.all(np.diff(keys) > 0) and vals.shape == (len(keys), 2)
        assert np.abs(interp(keys, vals) - x).max() <= tol + 1e-9
        counts.append(len(keys))
    assert counts[0] > counts[1] > counts[2] and counts[0] < 150
    keys, vals = reduce_keyframes(np.full((50, 3), 2.0) + rng.uniform(-0.1, 0.1, (50, 3)), 0.1)
    assert list(keys) == [0] and np.allclose(vals, 2.0, atol=0.1)
    # frames that do not matter (a hidden shape) do not force keyframes, nor count
    care = np.ones(300, bool)
    care[100:200] = False
    y = x.copy()
    y[100:200] += 1000
    keys, vals = reduce_keyframes(y, 1.0, care)
    assert np.abs(interp(keys, vals) - y)[care].max() <= 1.0 + 1e-9
    assert len(keys) <= len(reduce_keyframes(x, 1.0)[0])
    # a step is kept exactly enough: no frame outside the band
    step = np.r_[np.zeros(10), np.full(10, 50.0)][:, None]
    keys, vals = reduce_keyframes(step, 0.5)
    assert np.abs(np.interp(np.arange(20), keys, vals[:, 0]) - step[:, 0]).max() <= 0.5 + 1e-9


def test_reduce_keyframes_many_equals_one_by_one():
    rng = np.random.default_rng(3)
    T = 120
    xs, cares = [], []
    for n in range(12):
        d = int(rng.integers(1, 9))
        walk = np.cumsum(rng.normal(0, 0.6 + n * 0.2, (T, d)), 0)
        if n % 4 == 3:
            walk = np.full((T, d), 5.0) + rng.uniform(-0.1, 0.1, (T, d))  # static
        xs.append(walk)
        care = rng.uniform(size=T) > 0.2 if n % 3 == 0 else None
        cares.append(care)
    for tol in (0.3, 1.5, 0.0, -1.0):  # (a negative tolerance counts as 0: never a key twice)
        many = reduce_keyframes_many(xs, tol, cares, max_floats=300)  # several batches
        for x, care, (keys, vals) in zip(xs, cares, many):
            k1, v1 = reduce_keyframes(x, tol, care)
            assert np.array_equal(keys, k1) and np.array_equal(vals, v1)
            assert np.all(np.diff(keys) > 0)


@pytest.mark.parametrize("T", [600, 1000])
def test_keys_of_a_shape_that_comes_and_goes_stay_near_its_values(T):
    """A vertex jittering +-5 px and shown on a third of the frames: segments
    ended on hidden frames were extrapolated, and the next segment's slopes
    from there, without bound (key values 2e5 after 100 frames, 4e9 after
    1,000; Lottie and SVG files held INT64_MIN). Keys now lie on frames that
    count (or hold the last value), within the band of the values."""
    rng = np.random.default_rng(7)
    x = 100.0 + rng.uniform(-5, 5, (T, 2))
    care = rng.uniform(size=T) < 0.3
    care[0] = False  # hidden at the start and at the end, too
    care[-3:] = False
    many = reduce_keyframes_many([x, x[:, :1]], 1.0, [care, care])
    for (keys, vals), xx in zip(many, (x, x[:, :1])):
        k1, v1 = reduce_keyframes(xx, 1.0, care)
        assert np.array_equal(keys, k1) and np.array_equal(vals, v1)
        assert keys[0] == 0 and keys[-1] == T - 1 and np.all(np.diff(keys) > 0)
        assert np.all(np.abs(vals - 100.0) <= 6.0), float(np.abs(vals - 100.0).max())
        interp = np.stack([np.interp(np.arange(T), keys, vals[:, d]) for d in range(vals.shape[1])], 1)
        assert np.all(np.abs(interp - xx)[care] <= 1.0 + 1e-9)


def _sample_curve(v, n=16):
    """Points along the cubic segments of an open vertex chain (n per segment)."""
    t = np.linspace(0, 1, n)[:, None]
    u = 1 - t
    out = []
    for a, b in zip(v[:-1], v[1:]):
        p0, p1, p2, p3 = a[0:2], a[4:6], b[2:4], b[0:2]
        out.append(u ** 3 * p0 + 3 * u * u * t * p1 + 3 * u * t * t * p2 + t ** 3 * p3)
    return np.concatenate(out)


def _to_polyline(pts, line):
    """Distance of each point to a polyline (segments between consecutive points)."""
    a, b = line[:-1], line[1:]
    ab = b - a
    L = np.maximum((ab ** 2).sum(1), 1e-12)
    u = np.clip(((pts[:, None] - a[None]) * ab[None]).sum(-1) / L[None], 0, 1)
    near = a[None] + u[..., None] * ab[None]
    return np.sqrt(((pts[:, None] - near) ** 2).sum(-1)).min(1)


def test_export_memory_stays_near_the_recording(monkeypatch):
    """Exporting held every track's frames at once (float32, then float64
    simplified, then a float64 batch) and fitted each outline's curves on all
    frames at once: ~0.145 MB a frame at its peak, ~5 GB at MAX_FRAMES, for
    ~0.03 MB a frame recorded. Tracks are now exported a few at a time
    (``_EXPORT_FLOATS`` numbers of frames) and curves fitted on blocks of
    frames (``_FIT_FLOATS``), both made small here as a long animation makes
    them: the peak past the recording is a fraction of it, and the document
    is the same, bit for bit."""
    import tracemalloc

    from avatarizer import animation

    S = np.asarray(schema.sample(8, seed=3), np.float32)
    anim = Animation(256)
    for k in range(480):  # a smooth performance: interpolated between samples
        f = (k % 60) / 60
        anim.add(S[k // 60 % 7] * (1 - f) + S[k // 60 % 7 + 1] * f)
    recorded = sum(a.nbytes for seg in anim._rec.segments for part in seg[2:] for a in part)
    whole = anim.to_lottie_json()
    anim._cache = None
    monkeypatch.setattr(animation, "_EXPORT_FLOATS", 100_000, raising=False)
    monkeypatch.setattr(animation, "_FIT_FLOATS", 20_000, raising=False)
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        parts = anim.to_lottie_json()
        peak = tracemalloc.get_traced_memory()[1] - before
    finally:
        tracemalloc.stop()
    assert parts == whole
    assert peak < 0.6 * recorded, (peak / 1e6, recorded / 1e6)


def test_simplify_track_within_tolerance():
    anim = Animation(512).extend(_performance(12, seed=7))
    series = anim._rec.series()
    fewer = 0
    for tid, (pres, geo, sty) in series.items():
        shape = anim._rec.tracks[tid].shape
        if len(shape) != 1 or shape[0][1] < 8:
            continue
        for tol in (0.5, 2.0):
            g2, shape2 = simplify_track(geo, shape, tol)
            assert g2.shape[1] == shape2[0][1] <= shape[0][1]
            fewer += g2.shape[1] < geo.shape[1]
            for t in range(0, len(geo), 3):
                orig = _sample_curve(geo[t], 32)
                simp = _sample_curve(g2[t], 32)
                # every original point lies near the simplified curve and back
                d1 = _to_polyline(orig, simp).max()
                d2 = _to_polyline(simp, orig).max()
                assert max(d1, d2) <= tol * 1.1 + 0.05, (tid, tol, t, d1, d2)
    assert fewer > 10


def test_simplify_track_fits_a_held_frame_with_the_one_it_repeats(monkeypatch):
    """Held frames (each frame of a performance shown three times, and a
    pause) are fitted once with the frame they repeat (the fits see 8
    frames, not 44: 9,000 held frames took 15 s): the result is the held
    performance's own frames' fit, frame for frame, within tolerance."""
    import avatarizer.animation as A

    seen = []
    real = A._Fitter.__init__
    monkeypatch.setattr(A._Fitter, "__init__", lambda self, sub: (seen.append(len(sub)), real(self, sub))[1])
    frames = _performance(8, seed=3)
    held = [p for p in frames for _ in range(3)] + [frames[-1]] * 20
    plain, slow = Animation(512).extend(frames), Animation(512).extend(held)
    a, b = plain._rec.series(), slow._rec.series()
    which = [i for i in range(len(frames)) for _ in range(3)] + [len(frames) - 1] * 20
    checked = 0
    for tid, (_, geo, _) in a.items():
        shape = plain._rec.tracks[tid].shape
        if len(shape) != 1 or shape[0][1] < 8:
            continue
        g_held = b[tid][1]
        np.testing.assert_array_equal(g_held, geo[which])
        g2, shape2 = simplify_track(g_held, shape, 2.0)
        assert g2.shape == (len(held), shape2[0][1], 6)
        for t in range(len(held)):
            if t and which[t] == which[t - 1]:  # (a held frame: its fit is the one before it)
                np.testing.assert_array_equal(g2[t], g2[t - 1])
                continue
            d = _to_polyline(_sample_curve(g_held[t], 32), _sample_curve(g2[t], 32)).max()
            assert d <= 2.0 * 1.1 + 0.05, (tid, t, d)
        checked += 1
    assert checked > 5 and seen and max(seen) <= len(frames), sorted(set(seen))


def test_bad_input_raises_value_error(tmp_path):
    anim = Animation(SIZE)
    with pytest.raises(ValueError, match="no frames"):
        anim.to_lottie()
    with pytest.raises(ValueError):
        anim.add(np.zeros(10, np.float32))
    p = schema.default()
    bad = p.copy()
    bad[3] = np.nan
    with pytest.raises(ValueError):
        anim.add(bad)
    for kw in ({"fps": 0}, {"fps": float("nan")}, {"tolerance": -1}, {"size": 0}, {"background": "mauve"}):
        with pytest.raises(ValueError):
            Animation(**kw)
    anim.add(p)
    with pytest.raises(ValueError, match="json"):
        anim.write(tmp_path / "x.gif")
    out = tmp_path / "keep.json"
    out.write_text("precious")
    with pytest.raises(FileExistsError):
        anim.write(out)
    assert out.read_text() == "precious" and sorted(x.name for x in tmp_path.iterdir()) == ["keep.json"]
    anim.write(out, overwrite=True)
    assert json.loads(out.read_text())["op"] == 1


def test_write_never_replaces_a_file_that_appears_or_a_dangling_link(tmp_path, monkeypatch):
    """``write(path)`` without ``overwrite`` checked ``path.exists()`` and
    later ``os.replace``d: a file made in between (another process) was
    replaced, and so was a dangling symlink (``exists()`` is False). The
    finished file is now linked into place (``os.link`` fails on any
    existing name) and a link of any kind counts as existing."""
    import os
    import tempfile

    from avatarizer import animation

    anim = Animation(SIZE)
    anim.add(schema.default())
    out = tmp_path / "race.json"
    real = tempfile.mkstemp

    def other_writer_meanwhile(*a, **k):
        out.write_text("theirs")
        return real(*a, **k)

    monkeypatch.setattr(animation.tempfile, "mkstemp", other_writer_meanwhile)
    with pytest.raises(FileExistsError, match="race.json"):
        anim.write(out)
    assert out.read_text() == "theirs"
    assert sorted(x.name for x in tmp_path.iterdir()) == ["race.json"]  # no temporary file left
    monkeypatch.setattr(animation.tempfile, "mkstemp", real)

    link = tmp_path / "link.svg"
    os.symlink(tmp_path / "not-yet.svg", link)
    with pytest.raises(FileExistsError, match="link.svg"):
        anim.write(link)
    assert link.is_symlink() and not (tmp_path / "not-yet.svg").exists()
    anim.write(link, overwrite=True)  # asked: the link itself is replaced
    assert not link.is_symlink() and link.read_text().startswith("<svg")
    assert sorted(x.name for x in tmp_path.iterdir()) == ["link.svg", "race.json"]


def test_player_page_embeds_a_foreign_lottie_file_as_data_only(tmp_path):
    """player_html embedded the animation file's text as it was inside
    <script>: a string holding "</script>" ended the element and the rest ran
    as the page's script (a foreign Lottie file could inject one). The
    document is now embedded as JSON with <, >, & and every non-ASCII
    character (U+2028 and U+2029 too) escaped, so it reads back the same and
    no string can end or open an element; text that is not JSON is a
    ValueError."""
    import re

    from avatarizer.animation import player_html

    anim = Animation(64)
    anim.add(schema.default())
    doc = anim.to_lottie()
    doc["nm"] = "clip</script><script>alert('injected')</script><!-- & \u2028\u2029 é"
    src = tmp_path / "foreign.json"
    src.write_text(json.dumps(doc, ensure_ascii=False), encoding="utf-8")
    page = player_html(src, inline_player=False)
    assert page.count("<script") == 2 and page.count("</script>") == 2  # lottie-web and the page's own
    m = re.search(r"^const data = (.*);$", page, re.M)
    assert m and not set(m.group(1)) & set("<>&\u2028\u2029é")
    assert json.loads(m.group(1)) == doc
    page.encode("utf-8")
    for text in ("{not json", "[1, 2]", '{"w": "x", "h": 1}', '{"fr": 30}', "",
                 '{"w": 10, "h": 10, "x": ' + "[" * 5000 + "]" * 5000 + "}"):  # (nested deeper than json reads)
        src.write_text(text, encoding="utf-8")
        with pytest.raises(ValueError):
            player_html(src, inline_player=False)


def test_the_video_commands_player_page_embeds_the_file_without_parsing_it(tmp_path):
    """``avatarizer video --player`` built its page by parsing the Lottie
    file it had just written and writing it out again: ~15 bytes of memory
    a byte of file (a 61 MB export's page peaked at 1.35 GB, 3x the export;
    a review, session 72). The page (``_player_page``, given the size the
    command knows) embeds the file's text, escaped, in about its own size
    again; the value read back is the document."""
    import re
    import tracemalloc

    from avatarizer.animation import _player_page

    src = tmp_path / "a.json"
    Animation(128).extend(list(schema.sample(60, seed=1))).write(src)
    text = src.read_text(encoding="utf-8")
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        page = _player_page(text, src, 128, 128, inline_player=False)
        peak = tracemalloc.get_traced_memory()[1] - before
    finally:
        tracemalloc.stop()
    assert peak < 3 * len(text), (peak, len(text))
    m = re.search(r"^const data = (.*);$", page, re.M)
    assert m and json.loads(m.group(1)) == json.loads(text)


def test_read_params_jsonl_formats_and_errors(tmp_path):
    from avatarizer.api import Avatar

    p = schema.sample(2, seed=1)
    f = tmp_path / "in.jsonl"
    f.write_text(json.dumps(p[0].tolist()) + "\n\n" + json.dumps({"params": p[1].tolist()}) + "\n"
                 + Avatar(p[0]).to_json() + "\n")
    got = read_params_jsonl(f)
    assert len(got) == 3 and np.allclose(got[1], p[1]) and np.allclose(got[2], p[0], atol=1e-6)
    for text, what in (("[1, 2]\n", "line 1"), ("not json\n", "line 1"),
                       (json.dumps(p[0].tolist()) + "\n" + json.dumps([float("nan")] * 629) + "\n", "line 2"),
                       ("", "no frames")):
        f.write_text(text)
        with pytest.raises(ValueError, match=what):
            read_params_jsonl(f)
    # a line cut short: the column in that line (the decoder said "line 2" of its own, the line's end: helper-450)
    line = json.dumps(p[0].tolist())
    f.write_text(line + "\n" + line + "\n" + line[:200] + "\n" + line + "\n")
    with pytest.raises(ValueError, match=r"line 3: not JSON \(Expecting ',' delimiter at column 201\)$"):
        read_params_jsonl(f)
    # a time that is no finite number is refused (10**400 raised OverflowError; a string or NaN was taken
    # for no time), naming its line (the frames are placed by their times)
    f.write_text("".join(json.dumps({"time_ms": t, "params": p[0].tolist()}) + "\n" for t in (0, 10 ** 400, 66.7)))
    times = []
    with pytest.raises(ValueError, match="line 2: time_ms must be a finite number"):
        read_params_jsonl(f, times)
    f.write_text("".join(json.dumps({"time_ms": t, "params": p[0].tolist()}) + "\n" for t in (0, None, 66.7)))
    with pytest.raises(ValueError, match="line 2: no \"time_ms\""):  # (a null: no stamp, among stamped lines)
        read_params_jsonl(f, [])
    assert len(read_params_jsonl(f)) == 3  # (the times not asked for: not checked)
    # a repeated line, lines out of order, a stamp after unstamped lines: refused naming the line (a
    # repeated line made the CLI drop every time and draw one frame a line, at another length, exit 0)
    line = lambda t: (json.dumps(p[0].tolist()) if t is None else json.dumps({"time_ms": t, "params": p[0].tolist()}))
    for stamps, where in (((0, 40, 40, 80), "line 3: time_ms 40 is not after"), ((0, 80, 40), "line 3"),
                          ((None, None, 80), "line 3: a \"time_ms\", where the lines before have none"),
                          ((1e20, 1e20 + 33.3), "line 1: time_ms 1e\\+20 is beyond"),  # (no float tells them apart)
                          ((0, -1e16), "line 2: time_ms -1e\\+16 is beyond")):
        f.write_text("".join(line(t) + "\n" for t in stamps))
        with pytest.raises(ValueError, match=where):
            read_params_jsonl(f, [])
    f.write_text("".join(line(t) + "\n" for t in (0, 40.5, 1000)))
    times = []
    assert len(read_params_jsonl(f, times)) == 3 and times == [0.0, 40.5, 1000.0]
    # how long each line is shown (video --params writes it): read where asked for, and checked
    stamp = lambda t, d: json.dumps({"time_ms": t, "duration_ms": d, "params": p[0].tolist()}) + "\n"
    f.write_text(stamp(0, 40) + stamp(40, 2000) + json.dumps({"time_ms": 2040, "params": p[0].tolist()}) + "\n")
    durations = []
    assert len(read_params_jsonl(f, [], durations)) == 3 and durations == [40.0, 2000.0, None]
    for bad in (-1, "40", float("nan"), 10 ** 400):
        f.write_text(stamp(0, 40) + stamp(40, bad))
        with pytest.raises(ValueError, match="line 2: duration_ms must be"):
            read_params_jsonl(f, [], [])



def test_read_params_jsonl_refuses_an_endless_line_and_bytes_that_are_not_text(tmp_path, monkeypatch):
    """A line longer than MAX_LINE_CHARS is refused once that much is read
    (a 2 GB line with no end took 4 GB before its "not JSON"); a line of
    exactly the limit is read; bytes that are not UTF-8 are refused naming
    the file (QA, session 25)."""
    import avatarizer.animation as A

    p = schema.sample(1, seed=2)[0]
    good = json.dumps(p.tolist())
    monkeypatch.setattr(A, "MAX_LINE_CHARS", len(good))
    f = tmp_path / "in.jsonl"
    f.write_text(good + "\n" + good)  # the limit exactly, with and without its end of line
    assert len(read_params_jsonl(f)) == 2
    f.write_text(good + "\n" + good + " \n")
    with pytest.raises(ValueError, match="line 2: longer than"):
        read_params_jsonl(f)
    f.write_bytes(b"\xff\xfe[1, 2]\n")
    with pytest.raises(ValueError, match=r"in.jsonl: not UTF-8 text"):
        read_params_jsonl(f)


def test_cli_animate_and_refusals(tmp_path, capsys):
    from avatarizer.cli import main

    frames = _performance(10)
    src = tmp_path / "perf.jsonl"
    src.write_text("".join(json.dumps(f.tolist()) + "\n" for f in frames))
    out = tmp_path / "a.json"
    assert main(["animate", "--params", str(src), "-o", str(out), "--fps", "12", "--size", "128"]) == 0
    doc = json.loads(out.read_text())
    assert (doc["op"], doc["fr"], doc["w"]) == (10, 12, 128)
    assert "10 frames" in capsys.readouterr().out
    svg = tmp_path / "a.svg"
    assert main(["animate", "--params", str(src), "-o", str(svg), "--background", "white"]) == 0
    assert svg.read_text().startswith("<svg") and "<animate" in svg.read_text()
    stamp = out.stat().st_mtime_ns
    assert main(["animate", "--params", str(src), "-o", str(out)]) == 1
    assert "--overwrite" in capsys.readouterr().err and out.stat().st_mtime_ns == stamp
    assert main(["animate", "--params", str(src), "-o", str(tmp_path / "a.gif")]) == 2  # a usage error
    assert main(["animate", "--params", str(src), "-o", str(src), "--overwrite"]) == 2  # (.jsonl: not an output type)
    same = tmp_path / "same.json"  # lines in a file named like an output
    same.write_text(src.read_text())
    assert main(["animate", "--params", str(same), "-o", str(same), "--overwrite"]) == 1
    assert "is the input file" in capsys.readouterr().err
    assert src.read_text().count("\n") == 10 and same.read_text() == src.read_text()  # never overwritten
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps(frames[0].tolist()) + "\n[0, 1]\n")
    assert main(["animate", "--params", str(bad), "-o", str(tmp_path / "b.json")]) == 1
    assert "line 2" in capsys.readouterr().err
    assert not (tmp_path / "b.json").exists()
    assert not [x for x in tmp_path.iterdir() if x.name.endswith(".partial")]


def test_cli_video_to_animated_svg_resampled(tmp_path, capsys):
    from avatarizer.cli import main

    clip = need_shared("data", "video", "d0.mp4")  # 25 fps
    out = tmp_path / "v.svg"
    args = ["video", str(clip), "-o", str(out), "--max-seconds", "0.8", "--fps", "10", "--size", "128"]
    assert main(args) == 0
    text = out.read_text()
    # 20 input frames at 25 fps -> 8 frames at 10 fps, 0.8 s of SMIL
    assert 'dur="0.8s"' in text and 'width="128"' in text and "<animate" in text
    assert "8 frames at 10 fps" in capsys.readouterr().out
    stamp = out.stat().st_mtime_ns
    assert main(args) == 1 and out.stat().st_mtime_ns == stamp
    assert "--overwrite" in capsys.readouterr().err
    assert main(["video", str(clip), "-o", str(tmp_path / "p.svg"), "--player"]) == 2
    assert "--player" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:  # a bad value is a usage error (exit 2)
        main(["video", str(clip), "-o", str(tmp_path / "p.json"), "--fps", "0"])
    assert exc.value.code == 2
    assert not (tmp_path / "p.svg").exists() and not (tmp_path / "p.json").exists()
    assert sorted(x.name for x in tmp_path.iterdir()) == ["v.svg"]


# ------------------------------------------------------------------ browsers


def _need_browser():
    if shutil.which("node") is None:
        pytest.skip("needs node (apt install nodejs; `make webdeps` installs it)")
    if not Path("/usr/bin/chromium").exists() and shutil.which("chromium") is None:
        pytest.skip("needs chromium (apt install chromium; `make sysdeps` installs it)")
    for mod in ("lottie-web", "playwright-core"):
        if not (WEB / "node_modules" / mod).is_dir():
            pytest.skip(f"needs web/node_modules/{mod} (run `make webdeps`)")


def _browser_frames(kind, path, out_dir, fps, frames):
    res = subprocess.run(["node", str(WEB / "render_frames.js"), kind, str(path), str(out_dir), str(SIZE),
                          str(fps)] + [str(f) for f in frames], capture_output=True, text=True, timeout=180)
    assert res.returncode == 0, res.stderr[-2000:]
    from PIL import Image

    return {f: np.asarray(Image.open(out_dir / f"frame_{f}.png").convert("RGB")) for f in frames}


def _compare(name, params, shots, frames):
    diffs = []
    for f in frames:
        nat = render(params[f], SIZE, background="white")[..., :3]
        got = shots[f]
        assert got.shape == nat.shape
        d = np.abs(got.astype(np.int16) - nat.astype(np.int16))
        diffs.append(float(d.mean()))
        if d.mean() > MAX_MEAN_DIFF:
            save_failure(f"{name}_frame{f}", np.concatenate([nat, got, np.clip(d * 4, 0, 255).astype(np.uint8)], 1))
    print(name, "mean |diff| per frame (/255):", [round(x, 3) for x in diffs])
    assert max(diffs) <= MAX_MEAN_DIFF, diffs
    return diffs


def _check_both_formats(tmp_path, name, params, fps, frames):
    anim = Animation(SIZE, fps=fps).extend(params)
    lottie, svg = tmp_path / f"{name}.json", tmp_path / f"{name}.svg"
    anim.write(lottie)
    anim.write(svg)
    d_l = _compare(f"{name}_lottie", params, _browser_frames("lottie", lottie, tmp_path / "l", fps, frames), frames)
    d_s = _compare(f"{name}_svg", params, _browser_frames("svg", svg, tmp_path / "s", fps, frames), frames)
    return d_l, d_s


def test_browser_frames_match_native_synthetic(tmp_path):
    """Appearing/disappearing shapes, hair and accessory changes, teeth: every
    sampled frame as lottie-web and Chromium's SMIL draw it vs the native renderer."""
    _need_browser()
    params = _performance(30, seed=0)
    frames = [0, 5, 9, 14, 15, 21, 29]
    _check_both_formats(tmp_path, "synthetic", params, 30, frames)


def test_a_slideshow_shows_each_frame_at_its_own_time_in_the_browsers(tmp_path):
    """A different avatar on every frame at 30 fps: every track steps
    (``calcMode="discrete"`` in the SVG). Its keyTimes at k / T, rounded,
    fell after the browser's seek to the frame's own time f / fps, so
    Chromium showed the frame before on 17 of 24 frames (a review, session
    68); each change is written a thousandth of a frame early now."""
    _need_browser()
    params = list(schema.sample(8, seed=21))
    _check_both_formats(tmp_path, "slides30", params, 30, list(range(8)))


def test_browser_frames_match_native_real_performance(tmp_path):
    """A real performance: the pipeline in video mode on a shared clip."""
    _need_browser()
    clip = need_shared("data", "video", "d0.mp4")
    import cv2

    from avatarizer import Avatarizer

    cap = cv2.VideoCapture(str(clip))
    fps = cap.get(cv2.CAP_PROP_FPS) or 25.0
    params = []
    with Avatarizer(mode="video", color_order="bgr") as av:
        while len(params) < 60:
            ok, frame = cap.read()
            if not ok:
                break
            a = av.from_frame(frame, timestamp_ms=len(params) * 1000.0 / fps)
            assert a is not None
            params.append(a.params)
    cap.release()
    assert len(params) == 60
    frames = [0, 11, 23, 37, 48, 59]
    d_l, d_s = _check_both_formats(tmp_path, "d0", params, fps, frames)
    assert np.mean(d_l) <= 1.5 and np.mean(d_s) <= 1.5  # in practice well under the 3/255 bound


def test_player_page_follows_the_video(tmp_path):
    """``video --player``: the page loads without errors and the avatar shows
    the frame of the video's current time; on a video that starts 0.5 s after
    its sound, the frame of that time less 0.5 s (frame 0 is the video's
    first frame), and frame 0 before the video starts."""
    _need_browser()
    if shutil.which("ffmpeg") is None:
        pytest.skip("needs ffmpeg (make sysdeps)")
    src = need_shared("data", "video", "d0.mp4")
    from avatarizer.cli import main

    clip = tmp_path / "off.mp4"  # a tone from 0, the video from 0.5 s
    subprocess.run(["ffmpeg", "-v", "error", "-nostdin", "-f", "lavfi", "-i", "sine=frequency=440:duration=3",
                    "-itsoffset", "0.5", "-i", str(src), "-map", "0:a", "-map", "1:v", "-c:v", "copy",
                    "-c:a", "aac", "-shortest", str(clip)], check=True)
    out = tmp_path / "perf.json"
    jl = tmp_path / "perf.jsonl"
    assert main(["video", str(clip), "-o", str(out), "--max-seconds", "1.2", "--player", "--params", str(jl)]) == 0
    doc = json.loads(out.read_text())
    lines = [json.loads(x) for x in jl.read_text().splitlines()]
    assert doc["op"] == 30 and len(lines) == 30 and lines[0]["time_ms"] == pytest.approx(500, abs=1)
    html = tmp_path / "perf.html"
    assert "const start = 0.5;" in html.read_text()
    script = tmp_path / "check.js"
    script.write_text(f"""
const {{ chromium }} = require({json.dumps(str(WEB / 'node_modules' / 'playwright-core'))});
(async () => {{
  const b = await chromium.launch({{ executablePath: '/usr/bin/chromium',
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
           '--disable-component-update', '--disable-sync'] }});
  const p = await b.newPage();
  const errors = [];
  p.on('pageerror', (e) => errors.push(e.message));
  await p.goto('file://{html}');
  await p.waitForFunction(() => typeof anim !== "undefined" && anim.isLoaded);
  const seek = (t) => p.evaluate((t) => new Promise((ok) => {{
    const v = document.getElementById('video');
    const go = () => {{ v.addEventListener('seeked', () => setTimeout(() => ok([v.duration, anim.currentFrame]), 300),
                                           {{ once: true }});
                       v.currentTime = t; }};
    if (v.readyState >= 1) go(); else v.addEventListener('loadedmetadata', go, {{ once: true }});
  }}), t);
  const [dur, before] = await seek(0.2);
  await seek(1.3);
  // (the player follows the video's time on its own clock: on a loaded machine 300 ms after
  // 'seeked' was not always enough, session 23; a player that never follows still fails below)
  await p.waitForFunction(() => anim.currentFrame > 0, null, {{ timeout: 5000 }}).catch(() => {{}});
  const frame = await p.evaluate(() => anim.currentFrame);
  console.log(JSON.stringify({{ errors, before, frame, dur }}));
  await b.close();
}})().catch((e) => {{ console.error(e); process.exit(1); }});
""")
    res = subprocess.run(["node", str(script)], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr[-2000:]
    got = json.loads(res.stdout.strip().splitlines()[-1])
    assert got["errors"] == [] and got["dur"] > 1
    assert got["before"] == 0, got  # before the video's first frame: the first avatar frame
    assert abs(got["frame"] - (1.3 - 0.5) * doc["fr"]) <= 1.0, got  # not 1.3 * fr (0.5 s ahead)


@pytest.mark.parametrize("name", ["a" * 250 + ".json", "\u00e9" * 125 + ".svg"])
def test_write_takes_a_name_near_the_file_systems_limit(tmp_path, name):
    """A valid 255-byte name: its temporary file ``.{name}.XXXX.partial``
    was longer than the limit (OSError ENAMETOOLONG)."""
    from avatarizer import schema

    out = Animation(64).extend(schema.sample(3, seed=1)).write(tmp_path / name)
    assert out.name == name and out.stat().st_size > 1000
    assert [p.name for p in tmp_path.iterdir()] == [name]  # no temporary file left


def test_editing_a_lottie_document_changes_no_other_document():
    """``to_lottie`` returns a dict an app may edit: its layers' transforms,
    group transforms and keyframe easings are its own objects (they were
    module constants, so fading one group faded every group of every later
    export in the process)."""
    from avatarizer import schema as S
    from avatarizer.animation import Animation

    def doc(seed):
        a = Animation(size=64)
        for s in (seed, seed + 1):
            a.add(S.sample(1, seed=s)[0])
        return a.to_lottie()

    before = json.dumps(doc(2), sort_keys=True)
    d = doc(1)
    d["layers"][0]["ks"]["o"]["k"] = 0
    for layer in d["layers"]:
        for group in layer["shapes"]:
            group["it"][-1]["o"]["k"] = 0
            for item in group["it"]:
                for prop in item.values():
                    if isinstance(prop, dict) and prop.get("a") == 1:
                        for kf in prop["k"][:-1]:
                            kf.get("o", kf)["x"] = 0.5  # (a held keyframe has no easing)
    assert json.dumps(doc(2), sort_keys=True) == before
    seen = set()  # no object shared between two places of one document either
    for layer in d["layers"]:
        assert id(layer["ks"]) not in seen
        seen.add(id(layer["ks"]))
        for group in layer["shapes"]:
            assert id(group["it"][-1]) not in seen
            seen.add(id(group["it"][-1]))


def test_animate_places_fast_stamped_lines_by_their_time(tmp_path, capsys):
    """Lines stamped less than a millisecond apart (more than 1000 a
    second) were taken as unstamped, one frame each, also with ``--fps``:
    100 lines over 50 ms at --fps 30 made 100 frames (3.3 s). They are
    placed by their times now; without --fps at 1000 fps, the most an
    animation takes."""
    from avatarizer.cli import main

    frames = _performance(100)
    src = tmp_path / "fast.jsonl"
    src.write_text("".join(json.dumps({"time_ms": 0.5 * i, "params": f.tolist()}) + "\n"
                           for i, f in enumerate(frames)))
    out = tmp_path / "a.json"
    assert main(["animate", "--params", str(src), "-o", str(out), "--fps", "30", "--size", "64"]) == 0, \
        capsys.readouterr().err
    doc = json.loads(out.read_text())
    assert (doc["fr"], doc["op"]) == (30, 2)  # 50 ms at 30 fps (the last line shown for its 0.5 ms)
    assert main(["animate", "--params", str(src), "-o", str(out), "--size", "64", "--overwrite"]) == 0
    doc = json.loads(out.read_text())
    assert (doc["fr"], doc["op"]) == (1000, 50)


def test_svg_viewbox_exact_at_large_sizes():
    """The animated SVG's viewBox (and background) is in whole quanta written
    exactly: ':g' kept 6 digits, so 16000 px x 64 quanta read 1.024e+06 and the
    drawing was scaled by its rounding."""
    import re

    anim = Animation(width=16000, height=64, tolerance=0.01, background="white")
    anim.add(schema.default())
    assert anim._q == 64
    svg = anim.to_svg()
    assert re.search(r'viewBox="0 0 1024000 4096"', svg), svg[:300]
    assert '<rect width="1024000" height="4096"' in svg


def test_params_and_lottie_files_with_a_byte_order_mark(tmp_path):
    """A UTF-8 byte-order mark (Windows editors, PowerShell's Out-File) is
    skipped: a parameters file and a Lottie file with one were refused as not JSON."""
    from avatarizer.animation import player_html

    p = schema.sample(2, seed=3)
    f = tmp_path / "bom.jsonl"
    f.write_bytes(b"\xef\xbb\xbf" + "".join(json.dumps(v.tolist()) + "\n" for v in p).encode())
    got = read_params_jsonl(f)
    assert len(got) == 2 and np.allclose(got[0], p[0]) and np.allclose(got[1], p[1])
    anim = Animation(64)
    anim.add(schema.default())
    src = tmp_path / "bom.json"
    src.write_bytes(b"\xef\xbb\xbf" + json.dumps(anim.to_lottie()).encode())
    assert "const data = " in player_html(src, inline_player=False)


def test_between_two_frames_the_browsers_show_the_earlier_one(tmp_path):
    """A 1 fps slideshow of two different avatars: lottie-web and Chromium's
    SMIL blended them for the whole second between the frames (both
    formats tweened linearly between keyframes one frame apart, which the
    native renderer, the mp4 and the source never show). Such keyframes
    are held now."""
    from avatarizer import schema as S

    params = [S.sample(1, seed=3)[0], S.sample(1, seed=4)[0], S.sample(1, seed=4)[0]]
    anim = Animation(SIZE, fps=1).extend(params)
    doc = anim.to_lottie()
    held = [kf for layer in doc["layers"] for g in layer["shapes"] for item in g["it"] for prop in item.values()
            if isinstance(prop, dict) and prop.get("a") == 1 for kf in prop["k"] if kf.get("h") == 1]
    assert held, "no held keyframe"
    _need_browser()
    lottie, svg = tmp_path / "a.json", tmp_path / "a.svg"
    anim.write(lottie)
    anim.write(svg)
    for kind, path in (("lottie", lottie), ("svg", svg)):
        shots = _browser_frames(kind, path, tmp_path / kind, 1, ["0.5", "0.9", "1"])
        first = render(params[0], SIZE, background="white")[..., :3].astype(np.int16)
        second = render(params[1], SIZE, background="white")[..., :3].astype(np.int16)
        for f in ("0.5", "0.9"):
            d = float(np.abs(shots[f].astype(np.int16) - first).mean())
            assert d <= MAX_MEAN_DIFF, (kind, f, d)
        assert float(np.abs(shots["1"].astype(np.int16) - second).mean()) <= MAX_MEAN_DIFF, kind


def test_a_lottie_file_is_written_as_it_is_made(tmp_path, monkeypatch):
    """Writing a Lottie file built the whole document as a dict, then its
    text, then a compacted copy (a 4,800-frame performance peaked at 601 MB,
    ~12 times the JSON's size): it is written group by group now, the same
    bytes as ``to_lottie_json``."""
    from avatarizer import schema as S
    from avatarizer.animation import Animation

    anim = Animation(128, fps=10, background="white").extend([S.sample(1, seed=s)[0] for s in range(4)])
    want = anim.to_lottie_json()
    assert json.loads(want) == anim.to_lottie()
    monkeypatch.setattr(Animation, "to_lottie", lambda self: pytest.fail("the whole document was built"))
    monkeypatch.setattr(Animation, "to_lottie_json", lambda self: pytest.fail("the whole text was built"))
    anim.write(tmp_path / "a.json")
    assert (tmp_path / "a.json").read_text() == want
    pieces = list(anim.pieces_for(tmp_path / "b.json"))
    assert len(pieces) > 10 and "".join(pieces) == want


def test_a_short_export_grows_its_spans_forward(monkeypatch):
    """Under 32 frames each Bezier span was found by shrinking it from the
    sub-path's end one vertex at a time, every try fitted on every frame
    (a single avatar's Lottie took 0.2-0.7 s, more than a 32-frame one):
    spans now grow forward, about one fit per vertex."""
    from avatarizer import schema as S
    from avatarizer import animation as A

    calls = [0]
    real = A._Fitter.fit

    def fit(self, a, b):
        calls[0] += 1
        return real(self, a, b)

    monkeypatch.setattr(A._Fitter, "fit", fit)
    for seed in (7, 8):
        anim = A.Animation(512).extend([S.sample(1, seed=seed)[0]])
        calls[0] = 0
        anim.to_lottie()
        vertices = sum(n for t in anim._rec.tracks for _, n in t.shape)
        assert calls[0] < 1.5 * vertices, (calls[0], vertices)


def test_an_empty_animation_makes_no_folder_for_its_file(tmp_path):
    from avatarizer.animation import Animation

    for name in ("x/a.json", "y/a.svg"):
        with pytest.raises(ValueError, match="no frames"):
            Animation(64).write(tmp_path / name)
    assert list(tmp_path.iterdir()) == []


def test_a_path_that_is_not_one_is_a_value_error(tmp_path):
    """``Animation.write`` and ``animation.export`` of a 0-d array or a number
    as the path: a TypeError out of ``Path`` (helper-447); now the
    ValueError bad input gets, as ``from_image`` says of an image path."""
    from avatarizer import animation as AN
    from avatarizer.animation import Animation

    anim = Animation(64).extend(_performance(2))
    for bad in (np.array(str(tmp_path / "a.json")), 7, None):
        with pytest.raises(ValueError, match="output file path"):
            anim.write(bad)
        with pytest.raises(ValueError, match="output file path"):
            AN.export(_performance(2), bad)
    assert list(tmp_path.iterdir()) == []


def test_an_existing_file_is_refused_before_any_work(tmp_path, monkeypatch):
    """``write()`` and ``export()`` without ``overwrite`` refuse a path that
    exists before reducing or recording (the ``FileExistsError`` came after
    the whole reduction: minutes at the frame limit); the file is intact."""
    from avatarizer import animation as AN

    frames = _performance(6)
    anim = Animation(128).extend(frames)

    def no_work(*a, **k):
        raise AssertionError("worked before refusing")

    for name in ("keep.json", "keep.svg"):
        out = tmp_path / name
        out.write_text("precious")
        with monkeypatch.context() as m:
            m.setattr(Animation, "_reduced", no_work)
            m.setattr(Animation, "to_svg", no_work)
            m.setattr(Animation, "extend", no_work)
            with pytest.raises(FileExistsError):
                anim.write(out)
            with pytest.raises(FileExistsError):
                AN.export(frames, out, size=128)
        assert out.read_text() == "precious"
    (tmp_path / "dir.json").mkdir()
    with pytest.raises(ValueError, match="directory"), monkeypatch.context() as m:
        m.setattr(Animation, "extend", no_work)
        AN.export(frames, tmp_path / "dir.json", size=128)
    assert anim.write(tmp_path / "keep.json", overwrite=True).stat().st_size > 100


def test_a_track_that_only_blinks_is_not_counted_static():
    """``stats()["static_tracks"]``: a shape that appears and disappears
    (its opacity keyed) is animated, as one that moves (the teeth toggled
    over six frames were counted static)."""
    from avatarizer import native

    p = schema.clip(native.default_params())
    q = p.copy()
    q[schema.index("teeth.show")] = 1.0 - p[schema.index("teeth.show")]
    anim = Animation(128).extend([p, p, q, q, p, p])
    red = anim._reduced()
    blinking = [t for t, v in red.items() if len(v[6]) > 1]
    assert blinking
    st = anim.stats()
    assert st["static_tracks"] == sum(len(v[0]) == 1 and len(v[2]) == 1 and len(v[4]) == 1 and len(v[6]) == 1
                                      for v in red.values())
    assert st["static_tracks"] <= st["tracks"] - len(blinking)


def test_a_shape_hidden_for_a_frame_does_not_move_while_shown():
    """Teeth shown on frames 0 and 2 (the head turned on frame 2), hidden on
    frame 1: all through frame 0 they are drawn as on frame 0. Their path
    had keyframes on frames 0 and 2 only, and Lottie and SMIL tweened it
    toward frame 2's teeth through the whole of frame 0 while still shown
    (the opacity's keyframes are held); also over a longer gap. (Every
    shown frame within the tolerance of the scene: the test above.)"""
    from avatarizer import expressions as X
    from avatarizer import native

    p = schema.clip(native.default_params())
    shown = p.copy()
    shown[schema.index("teeth.show")] = 1.0
    hidden = shown.copy()
    hidden[schema.index("teeth.show")] = 0.0
    turned = [schema.clip(X.pose_deform(shown, a, 0.0)) for a in (25.0, 30.0, 35.0)]
    for frames in ([shown, hidden, turned[0], turned[0]], [shown, hidden, hidden, *turned]):
        anim = Animation(128).extend(frames)
        red = anim._reduced()
        T = len(frames)
        checked = 0
        for gkeys, gvals, _, _, wkeys, wvals, okeys, ovals in red.values():
            if len(okeys) < 2:
                continue
            op = np.interp(np.arange(T), okeys, ovals)  # (held keys are one frame apart: exact at frames)
            if not (op[0] > 0 and op[1] == 0):
                continue
            for keys, vals in ((gkeys, gvals), (wkeys, wvals)):
                if len(keys) < 2:
                    continue
                vals = np.asarray(vals, np.float64).reshape(len(keys), -1)
                i = int(np.searchsorted(keys, 0.5)) - 1  # the key before t = 0.5, and the writer's rule
                held = keys[i + 1] - keys[i] == 1
                u = (0.5 - keys[i]) / (keys[i + 1] - keys[i])
                mid = vals[i] if held else vals[i] + u * (vals[i + 1] - vals[i])
                np.testing.assert_array_equal(mid, vals[0])
                checked += 1
        assert checked, "no shape shown, hidden, shown"


@pytest.mark.parametrize("tol", [1.0, 2.5])
def test_svg_colours_stay_within_the_colour_tolerance(tol):
    """Each frame's colour as an SVG player interpolates the 8-bit colours
    ``to_svg`` writes stays within ``color_tolerance`` of the scene's (the
    reduction spent the whole budget and SVG's rounding went 0.36/255
    over); Lottie's 3-decimal values too."""
    frames = _performance(40, seed=3)
    colours = [i for i, n in enumerate(schema.NAMES) if n.endswith((".r", ".g", ".b"))]
    # (colours that drift along a curve, off 0 and 1: the reduction spends its budget; a key fitted past
    # the range is clipped to it, which the budget does not cover: a separate edge, left)
    for k, p in enumerate(frames):
        p[colours] = np.clip(p[colours], 0.05, 0.95) + 0.02 * np.sin(k / 3.0 + np.arange(len(colours)))
    anim = Animation(128, color_tolerance=tol).extend(frames)
    red, series, n = anim._reduced(), anim._rec.series(), len(anim)
    worst_svg = worst_lottie = 0.0
    for tid, (present, _, style) in series.items():
        keys, vals = red[tid][2], red[tid][3]
        written = np.round(np.clip(vals, 0, 1) * 255)  # (what _hex writes)
        for c in range(3):
            if len(keys) > 1:
                svg, lottie = np.interp(np.arange(n), keys, written[:, c]), np.interp(np.arange(n), keys, vals[:, c])
            else:
                svg, lottie = np.full(n, written[0, c]), np.full(n, vals[0, c])
            truth = style[:, c] * 255
            worst_svg = max(worst_svg, float(np.abs(svg - truth)[present].max(initial=0)))
            worst_lottie = max(worst_lottie, float(np.abs(lottie * 255 - truth)[present].max(initial=0)))
    assert worst_svg <= tol + 1e-6 and worst_lottie <= tol + 1e-6, (worst_svg, worst_lottie)


def test_an_animated_svg_is_written_piece_by_piece(tmp_path):
    """``write("x.svg")`` writes the document element by element, never the
    whole text in memory (4,800 frames peaked at 704 MB, Lottie's 456): the
    pieces' largest is a small part of the document, their text is
    ``to_svg()``'s, and the clip ids are named after the content (the same
    animation gives the same document, another one other ids)."""
    import re

    frames = _performance(60, seed=4)
    anim = Animation(128).extend(frames)
    pieces = list(anim.pieces_for(tmp_path / "a.svg"))
    whole = "".join(pieces)
    assert whole == anim.to_svg() == Animation(128).extend(frames).to_svg()
    assert len(pieces) > 20 and max(map(len, pieces)) < 0.25 * len(whole)
    ids = re.findall(r'id="([^"]+)"', whole)
    assert ids and len(set(ids)) == len(ids)
    assert all(f'url(#{i})' in whole or f'href="#{i}"' in whole for i in ids)
    other = re.findall(r'id="([^"]+)"', Animation(128).extend(_performance(60, seed=5)).to_svg())
    assert not set(ids) & set(other)
    out = anim.write(tmp_path / "a.svg")
    assert out.read_text(encoding="utf-8") == whole


def test_a_path_under_a_file_is_refused_with_a_value_error(tmp_path):
    """A folder above the output that is a file: ValueError saying so, also
    with overwrite=True (mkdir raised FileExistsError, which the docs say
    overwrite=True answers; a review, session 63). Nothing is written."""
    from avatarizer.animation import write_text_atomic

    (tmp_path / "afile").write_text("keep")
    for overwrite in (False, True):
        with pytest.raises(ValueError, match="is a file, not a folder"):
            write_text_atomic(tmp_path / "afile" / "sub" / "out.json", "{}", overwrite=overwrite)
    assert (tmp_path / "afile").read_text() == "keep" and sorted(p.name for p in tmp_path.iterdir()) == ["afile"]


def test_a_named_pipe_is_never_replaced_also_with_overwrite(tmp_path):
    """``Animation.write(path, overwrite=True)`` (and ``export``) on a named
    pipe: ValueError, the pipe left as it is (it was replaced by a regular
    file, which the CLI refuses; a review, session 71)."""
    import os
    import stat

    from avatarizer import schema
    from avatarizer.animation import Animation, export

    pipe = tmp_path / "out.json"
    os.mkfifo(pipe)
    anim = Animation(size=64, fps=30)
    anim.add(schema.sample(1, seed=0)[0])
    for overwrite in (True, False):
        with pytest.raises(ValueError, match="not a regular file"):
            anim.write(pipe, overwrite=overwrite)
        with pytest.raises(ValueError, match="not a regular file"):
            export([schema.sample(1, seed=0)[0]], pipe, overwrite=overwrite)
    assert stat.S_ISFIFO(os.lstat(pipe).st_mode) and sorted(p.name for p in tmp_path.iterdir()) == ["out.json"]


def test_svg_tracks_that_only_step_are_written_discrete():
    """A track whose every change comes one frame after the key before it (a
    slideshow; a repeated frame in between) is written with
    ``calcMode="discrete"``, each value once: linear mode held a value by
    writing it twice (just before the next key), 47% of a 1 fps
    slideshow's SVG. What the browsers show (the earlier frame until the
    next) is checked in Chromium by
    test_between_two_frames_the_browsers_show_the_earlier_one; here the
    encoding: keyTimes from 0, increasing, one per value, no value repeated
    next to itself, and a linear track never holds a value it could have
    stepped."""
    import re

    a, b, c = schema.sample(3, seed=11)
    anim = Animation(SIZE, fps=1).extend([a, b, b, c])
    svg = anim.to_svg()
    found = re.findall(r'<animate attributeName="[\w-]+" dur="4s" repeatCount="indefinite" '
                       r'calcMode="(\w+)" keyTimes="([^"]*)" values="([^"]*)"/>', svg)
    assert len(found) == svg.count("<animate ") > 10
    modes = [m for m, _, _ in found]
    # every track steps; 27 of 126 stay linear: a shape hidden on some frames is tweened there
    assert modes.count("discrete") >= 0.75 * len(modes), modes
    svg2 = Animation(SIZE).extend(_performance(30, seed=2)).to_svg()
    moving = re.findall(r'calcMode="(\w+)" keyTimes="([^"]*)" values="([^"]*)"', svg2)
    assert [m for m, _, _ in moving].count("linear") > 10  # a performance that moves is tweened
    for slideshow, (mode, kt, vs) in [(True, f) for f in found] + [(False, f) for f in moving]:
        times, values = [float(x) for x in kt.split(";")], vs.split(";")
        assert times[0] == 0 and np.all(np.diff(times) > 0) and len(times) == len(values)
        if mode == "discrete":
            assert all(x != y for x, y in zip(values, values[1:]))  # each value once
            if slideshow:
                # frames 0, 1 and 3 (frame 2 repeats frame 1), each change HOLD_EPS of a frame early (a key at
                # k / T, rounded, fell after a browser's seek to the frame's time: the one before was shown)
                assert set(times) <= {0, (1 - HOLD_EPS) / 4, (3 - HOLD_EPS) / 4}
        else:  # a value is written twice only to hold it before a change, never three times
            assert times[-1] == 1 and all(not (x == y == z) for x, y, z in zip(values, values[1:], values[2:]))


def test_a_path_two_tracks_draw_is_written_once_in_an_svg():
    """The face's outline is a fill, a clip and a stroke of one path: an SVG
    wrote it (its keys and values) three times, 10% of d6's first 10 s. Now
    a geometry drawn by more than one track is defined once and each track
    uses it (Chromium draws such documents as the native renderer does:
    test_browser_frames_match_native_synthetic); every use names a path
    defined before it, and no ``d`` is written twice."""
    import re
    import xml.dom.minidom

    svg = Animation(SIZE).extend(_performance(30, seed=2)).to_svg()
    xml.dom.minidom.parseString(svg)
    defined = re.findall(r'<defs><path id="([^"]+)"', svg)
    used = re.findall(r'<use xlink:href="#([^"]+)"', svg)
    assert defined and len(used) >= 2 * len(defined) and set(used) == set(defined)
    assert all(svg.index(f'id="{d}"') < svg.index(f'href="#{d}"') for d in defined)
    ds = re.findall(r' d="([^"]+)"', svg)
    assert len(ds) == len(set(ds))
    anims = re.findall(r'<animate attributeName="d"[^>]*/>', svg)
    assert len(anims) == len(set(anims))


def test_an_unknown_parameter_name_is_quoted_short(tmp_path):
    """``animate --params``: an unknown name was quoted whole (a 900 KB
    error line from one 900 KB name; a review, session 77); cut at 40
    characters, as ``Avatar.from_json`` cuts them."""
    from avatarizer import schema as S
    from avatarizer.animation import read_params_jsonl

    doc = {n: float(v) for n, v in zip(S.NAMES, S.default())}
    doc["x" * 100_000] = 0.0
    path = tmp_path / "p.jsonl"
    path.write_text(json.dumps({"params": doc}) + "\n")
    with pytest.raises(ValueError) as exc:
        read_params_jsonl(path)
    assert len(str(exc.value)) < 400 and "1 unknown" in str(exc.value)
