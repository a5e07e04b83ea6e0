"""The artist's speed-ups change no result: its percentile / median stand-ins
give NumPy's values bit for bit, and per-face work is never reused across faces."""
from __future__ import annotations

import numpy as np
import pytest

from avatarizer.artist import stats


def _same(got, want):
    got, want = np.asarray(got), np.asarray(want)
    assert got.dtype == want.dtype, (got.dtype, want.dtype)
    assert got.shape == want.shape, (got.shape, want.shape)
    assert np.array_equal(got, want, equal_nan=True), (got, want)


def _samples(rng):
    """Random arrays of the sizes and kinds the artist takes statistics of:
    odd and even lengths, ties (quantised pixels), float32 and float64."""
    for n in (1, 2, 3, 4, 5, 8, 9, 31, 35, 100, 257, 1000):
        for dtype in (np.float32, np.float64):
            yield rng.random(n).astype(dtype)
            yield (rng.integers(0, 256, n) / 255.0).astype(dtype)  # ties
            yield rng.normal(50, 20, (n, 3)).astype(dtype)
            yield rng.random((5, n)).astype(dtype)  # the brows' profiles: percentiles along axis 1


@pytest.mark.parametrize("q", [0, 10, 15, 20, 30, 35, 50, 60, 70, 75, 85, 90, 100, 33.3,
                               [20, 80], [35.0, 90.0], [10, 75], (15, 85), [0, 50, 100]])
def test_percentile_is_numpys(q):
    rng = np.random.default_rng(0)
    for x in _samples(rng):
        _same(stats.percentile(x, q), np.percentile(x, q))
        for ax in range(-x.ndim, x.ndim):
            _same(stats.percentile(x, q, axis=ax), np.percentile(x, q, axis=ax))
            _same(stats.percentile(x, q, axis=ax, keepdims=True), np.percentile(x, q, axis=ax, keepdims=True))


@pytest.mark.parametrize("ours, numpys, seed", [(stats.median, np.median, 1), (stats.mean, np.mean, 2)])
def test_median_and_mean_are_numpys(ours, numpys, seed):
    rng = np.random.default_rng(seed)
    for x in _samples(rng):
        _same(ours(x), numpys(x))
        for ax in range(-x.ndim, x.ndim):
            _same(ours(x, axis=ax), numpys(x, axis=ax))


def test_mean_of_other_inputs_is_numpys():
    rng = np.random.default_rng(2)
    for x in (rng.random((7, 5)) > 0.5, rng.integers(0, 9, (4, 3)), [0.1, 0.2, 0.4], [np.ones(3), np.zeros(3)],
              np.float32(0.5), np.ones(4, np.float16), np.ones((3, 4))[:, ::2]):
        _same(stats.mean(x), np.mean(x))
        _same(stats.mean(x, axis=0) if np.ndim(x) else stats.mean(x), np.mean(x, axis=0) if np.ndim(x) else np.mean(x))


def test_edge_cases_follow_numpy():
    x = np.array([0.3, np.nan, 0.1], np.float32)
    with np.errstate(all="ignore"):
        _same(stats.median(x), np.median(x))
        _same(stats.percentile(x, 50), np.percentile(x, 50))
    inf = np.array([0.3, np.inf, 0.1, -np.inf, 0.2], np.float32)
    with np.errstate(all="ignore"):
        for q in (0, 10, 50, 90, 100, [25, 75]):
            _same(stats.percentile(inf, q), np.percentile(inf, q))
        _same(stats.median(inf), np.median(inf))
    one = np.float64(0.5)
    _same(stats.median(one), np.median(one))
    _same(stats.percentile(one, 30), np.percentile(one, 30))
    ints = np.array([3, 1, 2, 8])
    _same(stats.median(ints), np.median(ints))
    _same(stats.percentile(ints, [20, 80]), np.percentile(ints, [20, 80]))
    with pytest.raises(ValueError):
        stats.percentile(np.ones(5), 101)
    with pytest.raises(ValueError):
        stats.percentile(np.ones(5), [-1, 50])


def test_norm_is_numpys():
    """``photo.norm`` (three channels added elementwise) gives ``np.linalg.norm``
    over the last axis bit for bit: colours, CIELAB images, points, keepdims."""
    from avatarizer.artist.photo import norm

    rng = np.random.default_rng(5)
    for dtype in (np.float32, np.float64):
        for shape in ((3,), (1, 3), (7, 3), (1000, 3), (48, 48, 3), (2, 5, 3), (9, 2), (4,), (6, 4)):
            for scale in (1e-3, 1.0, 40.0, 1e4):
                x = (rng.standard_normal(shape) * scale).astype(dtype)
                for keepdims in (False, True):
                    _same(norm(x, keepdims=keepdims), np.linalg.norm(x, axis=-1, keepdims=keepdims))
    # other types take NumPy's reduction (float16 is added in float32 there, small integers in a wider type:
    # added elementwise, uint8 [10, 10, 10] overflowed)
    for x in (np.full((4, 3), 10, np.uint8), np.array([[100, -100, 100]], np.int8), rng.random((50, 3)).astype(np.float16),
              np.array([[True, False, True]])):
        _same(norm(x), np.sqrt(np.add.reduce(x * x, axis=-1)))


def test_clothes_black_level_is_the_channels_maximum():
    """``clothes_rgb`` leaves out the pure black pixels (every channel at most
    BLACK_LEVEL) as the channels' maximum over the last axis did: a pixel with
    one channel lit stays, an all-dark one goes."""
    from avatarizer.artist.accessories import _clothes_box, clothes_rgb
    from avatarizer.headwear import BLACK_LEVEL

    size = 64
    box = _clothes_box(size)
    rgb = np.full((size, size, 3), 0.5, np.float32)
    ys, xs = np.nonzero(box)
    # half the box pure black, a quarter dark with one channel just over the level: those stay
    half = len(ys) // 2
    rgb[ys[:half], xs[:half]] = BLACK_LEVEL / 255.0
    lit = slice(half, half + len(ys) // 4)
    rgb[ys[lit], xs[lit]] = (BLACK_LEVEL / 255.0, (BLACK_LEVEL + 1) / 255.0, 0.0)
    skin_lab, hair = np.array([70.0, 15.0, 20.0]), np.array([0.85, 0.75, 0.45])
    got = clothes_rgb(rgb, None, None, skin_lab, hair)
    # what the maximum over the channels keeps: the lit quarter and the grey rest, not the black half
    keep = box & (rgb.max(axis=2) > (BLACK_LEVEL + 0.5) / 255.0)
    assert np.count_nonzero(keep) == len(ys) - half
    from avatarizer.artist.photo import masked, to_lab
    from avatarizer.artist.stats import median

    px = masked(rgb, keep)
    lab = to_lab(px)
    far = (np.linalg.norm(lab - skin_lab, axis=-1) > 15) & (np.linalg.norm(lab - to_lab(hair), axis=-1) > 15)
    _same(got, median(px[far], 0))


@pytest.fixture(scope="module")
def two_faces():
    """The astronaut and her mirror image: two different faces, aligned."""
    import skimage.data

    from avatarizer.align import FaceAligner
    from avatarizer.artist import crop_valid_mask

    img = skimage.data.astronaut()
    out = []
    with FaceAligner() as al:
        for im in (img, np.ascontiguousarray(img[:, ::-1])):  # the photo and its left-right mirror
            f = al.align(im)
            assert f is not None
            out.append((f.canonical, f.crop(192), f.hair_mask(192), crop_valid_mask(f, 192), f.landmarks))
    return out


def test_nothing_carries_over_between_faces(two_faces):
    """The tables made once at import (landmark index arrays, Bezier weights,
    sample positions) hold no per-face state: one artist fitting A, B, A, B
    gives each face the answer a fresh artist gives it, and A != B."""
    from avatarizer.artist import AutoArtist

    def fits(art, face):
        c, crop, hair, valid, lm3 = face
        return (art.fit_landmarks(c, crop, hair, valid=valid, landmarks3d=lm3),
                art.fit_geometry_skin(c, crop, valid=valid, landmarks3d=lm3, glasses=True, cues={})[0])

    fresh = [fits(AutoArtist(), f) for f in two_faces]
    art = AutoArtist()
    for _ in range(2):
        for face, want in zip(two_faces, fresh):
            got = fits(art, face)
            assert all(np.array_equal(g, w) for g, w in zip(got, want))
    assert not np.array_equal(fresh[0][0], fresh[1][0])
    assert not np.array_equal(fresh[0][1], fresh[1][1])
