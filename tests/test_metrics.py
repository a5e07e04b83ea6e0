"""Tests of the evaluation metrics (avatarizer_export.metrics) and of LPIPS
(avatarizer_export.lpips).

LPIPS is checked against the reference triplet in
``../shared/weights/lpips_check`` (numbers from the LPIPS reference
repository); those tests skip when ``../shared`` is not beside the checkout.
The landmark probe runs MediaPipe for real on rendered avatars.
"""
from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
for _pkg, _dir in (("avatarizer", "sdk"), ("avatarizer_export", "export")):
    if importlib.util.find_spec(_pkg) is None:  # not installed: use the checkout
        sys.path.insert(0, str(ROOT / _dir))
os.environ.setdefault("GLOG_minloglevel", "2")

from avatarizer import schema  # noqa: E402
from avatarizer.align import CANONICAL_TARGETS, LANDMARK_INDICES, NUM_LANDMARKS, anchor_points  # noqa: E402
from avatarizer_export import metrics  # noqa: E402

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
WEIGHTS = SHARED / "weights"
CHECK = WEIGHTS / "lpips_check"

# LPIPS v0.1 of the reference triplet (README of ../shared/weights).
REFERENCE = {"alex": (0.722, 0.138), "vgg": (0.569, 0.422)}


def _need_weights(net: str = "alex") -> Path:
    from avatarizer_export.lpips import NETS

    path = WEIGHTS / NETS[net][0]
    if not path.is_file():
        pytest.skip(f"needs {path} (the ../shared folder beside the checkout)")
    return path


@pytest.fixture(scope="module")
def alex():
    _need_weights("alex")
    from avatarizer_export.lpips import LPIPS

    return LPIPS.from_npz(WEIGHTS, net="alex")


def _load_png(name: str) -> np.ndarray:
    from PIL import Image

    path = CHECK / name
    if not path.is_file():
        pytest.skip(f"needs {path} (the ../shared folder beside the checkout)")
    return np.asarray(Image.open(path).convert("RGB"))


def _random_images(n: int, size: int = 64, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    # Smooth-ish images (blocky noise) so that features are not pure noise.
    small = rng.integers(0, 256, (n, size // 8, size // 8, 3), dtype=np.uint8)
    return np.repeat(np.repeat(small, 8, axis=1), 8, axis=2)


# -- LPIPS ---------------------------------------------------------------------


@pytest.mark.shared
@pytest.mark.parametrize("net", ["alex", "vgg"])
def test_lpips_reference_triplet(net):
    _need_weights(net)
    from avatarizer_export.lpips import LPIPS, lpips_images

    ref, p0, p1 = (_load_png(f"ex_{n}.png") for n in ("ref", "p0", "p1"))
    model = LPIPS.from_npz(WEIGHTS, net=net)
    d = lpips_images(np.stack([ref, ref]), np.stack([p0, p1]), model)
    assert d.shape == (2,)
    np.testing.assert_allclose(d, REFERENCE[net], atol=0.002)
    # The module API on [-1, 1] tensors (img / 127.5 - 1) agrees.
    import torch

    to_t = lambda im: torch.from_numpy(im.transpose(2, 0, 1)[None].astype(np.float32) / 127.5 - 1.0)  # noqa: E731
    with torch.no_grad():
        assert float(model(to_t(ref), to_t(p0))[0]) == pytest.approx(REFERENCE[net][0], abs=0.002)


@pytest.mark.shared
def test_lpips_zero_symmetric_batched(alex):
    from avatarizer_export.lpips import lpips_images

    a, b = _random_images(3, seed=1), _random_images(3, seed=2)
    assert np.abs(lpips_images(a, a, alex)).max() < 1e-6
    ab, ba = lpips_images(a, b, alex), lpips_images(b, a, alex)
    np.testing.assert_allclose(ab, ba, rtol=1e-5, atol=1e-6)
    assert (ab > 0.01).all()
    single = [lpips_images(a[i], b[i], alex) for i in range(3)]
    assert isinstance(single[0], float)
    np.testing.assert_allclose(ab, single, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(lpips_images(list(a), list(b), alex, batch_size=2), ab, rtol=1e-4, atol=1e-6)


@pytest.mark.shared
def test_lpips_rgba_composited_on_white(alex):
    from avatarizer_export.lpips import lpips_images

    clear = np.zeros((64, 64, 4), np.uint8)  # fully transparent black
    white = np.full((64, 64, 3), 255, np.uint8)
    assert lpips_images(clear, white, alex) < 1e-6
    assert metrics.render_lpips(clear, white, alex) < 1e-6


@pytest.mark.shared
def test_vgg16_features_frozen_taps():
    _need_weights("vgg")
    import torch
    from avatarizer_export.lpips import vgg16_features

    net = vgg16_features(WEIGHTS)
    net.train()  # stays frozen
    assert not net.training and not any(p.requires_grad for p in net.parameters())
    x = torch.zeros(1, 3, 32, 32, requires_grad=True)
    taps = net(x)
    assert [t.shape[1] for t in taps] == [64, 128, 256, 512, 512]
    assert [t.shape[-1] for t in taps] == [32, 16, 8, 4, 2]
    sum(t.mean() for t in taps).backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()


def test_lpips_missing_weights_folder(tmp_path):
    from avatarizer_export.lpips import LPIPS, vgg16_features

    missing = tmp_path / "no-such-weights"
    with pytest.raises(FileNotFoundError, match="no-such-weights.*shared"):
        LPIPS.from_npz(missing, net="alex")
    with pytest.raises(FileNotFoundError, match="vgg16_lpips.npz"):
        vgg16_features(tmp_path)
    with pytest.raises(ValueError, match="net must be"):
        LPIPS.from_npz(tmp_path, net="squeeze")


# -- images and parameters --------------------------------------------------------


def test_render_l1():
    white = np.full((8, 8, 3), 255, np.uint8)
    black = np.zeros((8, 8, 3), np.uint8)
    clear = np.zeros((8, 8, 4), np.uint8)
    half = np.concatenate([black, np.full((8, 8, 1), 255, np.uint8)], axis=-1)
    assert metrics.render_l1(white, white) == 0.0
    assert metrics.render_l1(white, black) == pytest.approx(1.0)
    assert metrics.render_l1(clear, white) == 0.0  # RGBA composited on white
    assert metrics.render_l1(half, white) == pytest.approx(1.0)
    batch = metrics.render_l1(np.stack([white, black]), np.stack([white, white]))
    np.testing.assert_allclose(batch, [0.0, 1.0])
    with pytest.raises(ValueError):
        metrics.render_l1(white, white[:4])


def test_param_l1():
    p = schema.sample(4, seed=3)
    q = schema.sample(4, seed=4)
    assert metrics.param_l1(p, p) == 0.0
    d = metrics.param_l1(p, q)
    assert d > 0.0
    # Same value from the face slice alone, and per sample.
    assert metrics.param_l1(p[:, schema.FACE], q[:, schema.FACE]) == pytest.approx(d)
    per = metrics.param_l1(p, q, per_sample=True)
    assert per.shape == (4,) and per.mean() == pytest.approx(d)
    # Full range apart on one parameter = 2 in normalised space.
    lo, hi = schema.default(), schema.default()
    i = schema.FACE.start
    lo[i], hi[i] = schema.LO[i], schema.HI[i]
    width = schema.FACE.stop - schema.FACE.start
    assert metrics.param_l1(lo, hi) == pytest.approx(2.0 / width)
    # Differences outside the slice do not count.
    other = schema.default()
    other[schema.HAIR.start] = schema.HI[schema.HAIR.start]
    assert metrics.param_l1(schema.default(), other) == 0.0


# -- colour ---------------------------------------------------------------------

# Sharma, Wu & Dalal (2005), CIEDE2000 test data: (Lab 1, Lab 2, ΔE00).
SHARMA = [
    ((50.0, 2.6772, -79.7751), (50.0, 0.0, -82.7485), 2.0425),
    ((50.0, 0.0, 0.0), (50.0, -1.0, 2.0), 2.3669),
    ((50.0, 2.5, 0.0), (73.0, 25.0, -18.0), 27.1492),
    ((50.0, 2.5, 0.0), (61.0, -5.0, 29.0), 22.8977),
    ((50.0, 2.5, 0.0), (56.0, -27.0, -3.0), 31.9030),
    ((50.0, 2.5, 0.0), (58.0, 24.0, 15.0), 19.4535),
]


def test_delta_e_lab_sharma():
    a = np.array([p[0] for p in SHARMA])
    b = np.array([p[1] for p in SHARMA])
    np.testing.assert_allclose(metrics.delta_e_lab(a, b), [p[2] for p in SHARMA], atol=1e-4)
    np.testing.assert_allclose(metrics.delta_e_lab(b, a), [p[2] for p in SHARMA], atol=1e-4)


def test_delta_e_rgb():
    from skimage.color import lab2rgb

    assert metrics.delta_e([0.3, 0.5, 0.7], [0.3, 0.5, 0.7]) == pytest.approx(0.0, abs=1e-9)
    assert metrics.delta_e([0, 0, 0], [1, 1, 1]) == pytest.approx(100.0, abs=1e-3)
    # In-gamut Sharma pairs through sRGB give the published values.
    for lab1, lab2, expected in SHARMA[2:]:
        rgb1, rgb2 = lab2rgb(np.array(lab1)), lab2rgb(np.array(lab2))
        assert metrics.delta_e(rgb1, rgb2) == pytest.approx(expected, abs=1e-3)
    # Vectorised, broadcast, uint8 accepted.
    rng = np.random.default_rng(0)
    x, y = rng.random((4, 5, 3)), rng.random((4, 5, 3))
    d = metrics.delta_e(x, y)
    assert d.shape == (4, 5) and (d > 0).all()
    assert metrics.delta_e(x[1, 2], y[1, 2]) == pytest.approx(d[1, 2])
    assert metrics.delta_e(x, y[0, 0]).shape == (4, 5)
    assert metrics.delta_e(np.array([255, 0, 0], np.uint8), [1.0, 0.0, 0.0]) == pytest.approx(0.0, abs=1e-9)
    with pytest.raises(ValueError):
        metrics.delta_e([2.0, 0, 0], [0, 0, 0])


# -- identity -------------------------------------------------------------------


def _synthetic_faces(n: int, seed: int = 0, spread: float = 0.05) -> np.ndarray:
    rng = np.random.default_rng(seed)
    base = rng.uniform(-0.8, 0.8, (NUM_LANDMARKS, 2))
    return (base + rng.normal(0.0, spread, (n, NUM_LANDMARKS, 2))).astype(np.float32)


def test_identity_indices():
    idx = metrics.identity_indices()
    for g in ("right_eye", "left_eye", "right_eyebrow", "left_eyebrow", "nose", "lips_outer", "face_oval"):
        assert set(LANDMARK_INDICES[g]) <= set(idx.tolist())
    assert not set(LANDMARK_INDICES["right_iris"]) & set(idx.tolist())
    with pytest.raises(ValueError, match="unknown landmark group"):
        metrics.identity_indices(["ears"])


def test_identity_top1_perfect_and_shuffled():
    photos = _synthetic_faces(30)
    rng = np.random.default_rng(1)
    renders = photos + rng.normal(0.0, 0.005, photos.shape).astype(np.float32)  # small render error
    r = metrics.identity_top1(photos, renders)
    assert r == {"top1": 1.0, "top1_of_detected": 1.0, "n": 30, "detected": 30, "detect_rate": 1.0}
    perm = rng.permutation(30)
    while (perm == np.arange(30)).any():
        perm = rng.permutation(30)
    shuffled = metrics.identity_top1(photos, renders[perm])
    assert shuffled["top1"] == 0.0
    # Unrelated faces: chance level (1/30).
    unrelated = metrics.identity_topk(photos, _synthetic_faces(30, seed=5), k=(1, 5))
    assert unrelated["top1"] <= 0.2 and unrelated["top5"] <= 0.5
    assert metrics.identity_topk(photos, renders[perm], k=30)["top30"] == 1.0


def test_identity_undetected_are_misses():
    photos = _synthetic_faces(10)
    renders = photos.copy()
    renders[[2, 7]] = np.nan  # the landmark model found no face on two renders
    r = metrics.identity_top1(photos, renders)
    assert r["n"] == 10 and r["detected"] == 8
    assert r["detect_rate"] == pytest.approx(0.8)
    assert r["top1"] == pytest.approx(0.8)
    assert r["top1_of_detected"] == pytest.approx(1.0)
    ranks = metrics.identity_ranks(photos, renders)
    assert ranks[2] == -1 and ranks[7] == -1 and (np.delete(ranks, [2, 7]) == 0).all()
    # A photo without landmarks: its avatar misses, and it is nobody's candidate.
    photos_nan = photos.copy()
    photos_nan[0] = np.nan
    r = metrics.identity_top1(photos_nan, photos)
    assert r["top1"] == pytest.approx(0.9) and r["detected"] == 10
    with pytest.raises(ValueError):
        metrics.identity_top1(photos, renders[:5])


def test_identity_ties_count_against():
    photos = _synthetic_faces(3)
    photos[1] = photos[0]  # two identical photos: avatar 0 is not uniquely nearest
    r = metrics.identity_top1(photos, photos)
    assert r["top1"] == pytest.approx(1 / 3)


# -- attributes -------------------------------------------------------------------


def test_balanced_accuracy():
    # Binary: recall 3/4 for class 0 and 1/2 for class 1 → 0.625.
    assert metrics.balanced_accuracy([0, 0, 0, 0, 1, 1], [0, 0, 0, 1, 1, 0]) == pytest.approx(0.625)
    # Multiclass with string labels: recalls 1/2, 1, 2/3.
    t = ["a", "a", "b", "b", "c", "c", "c"]
    p = ["a", "b", "b", "b", "c", "a", "c"]
    assert metrics.balanced_accuracy(t, p) == pytest.approx((0.5 + 1.0 + 2 / 3) / 3)
    # Always predicting the majority class is 0.5 however unbalanced.
    assert metrics.balanced_accuracy([0] * 9 + [1], [0] * 10) == pytest.approx(0.5)
    assert metrics.balanced_accuracy([1, 2, 3], [1, 2, 3]) == 1.0
    with pytest.raises(ValueError):
        metrics.balanced_accuracy([0, 1], [0])


def test_mae():
    assert metrics.mae([20, 30, 40], [25, 30, 30]) == pytest.approx(5.0)
    assert metrics.mae([1.5], [1.5]) == 0.0


# -- landmark probe on renders -------------------------------------------------------


@pytest.fixture(scope="module")
def probe():
    with metrics.LandmarkProbe() as p:
        yield p


def test_probe_finds_default_avatar(probe):
    import avatarizer

    image = avatarizer.render(schema.default(), 256, background="white")
    lm = probe(image)
    if lm is None:
        from conftest import save_failure

        path = save_failure("metrics_probe_default", image)
        pytest.fail(f"MediaPipe found no face on the default avatar render (saved to {path}); "
                    "identity_top1 cannot work until renders look like faces to it.")
    assert lm.shape == (NUM_LANDMARKS, 2) and lm.dtype == np.float32
    # Canonical frame: the eye and mouth anchors land on their targets.
    np.testing.assert_allclose(anchor_points(lm), CANONICAL_TARGETS, atol=0.02)
    np.testing.assert_allclose(probe.from_params(schema.default()), lm, atol=1e-5)


def test_probe_on_sampled_avatars(probe):
    lms = probe.batch(schema.sample(10, seed=0))
    assert lms.shape == (10, NUM_LANDMARKS, 2)
    detected = np.isfinite(lms).all(axis=(1, 2))
    assert detected.mean() >= 0.8, f"MediaPipe found faces on only {detected.sum()}/10 sampled avatars"
    # Renders of different avatars are told apart by their own landmarks.
    r = metrics.identity_top1(lms, lms)
    assert r["detect_rate"] == detected.mean() and r["top1_of_detected"] == 1.0


def test_probe_no_face(probe):
    assert probe(np.full((256, 256, 3), 255, np.uint8)) is None
    lms = probe.batch([np.full((256, 256, 4), 0, np.uint8)])
    assert np.isnan(lms).all()


def test_paired_bootstrap_interval():
    rng = np.random.default_rng(3)
    b = rng.random(400)
    a = b - 0.05 + rng.normal(0, 0.01, 400)  # a is lower by 0.05 on every photo
    d = metrics.paired_bootstrap(a, b)
    assert d["n"] == 400 and d["lo"] < d["diff"] < d["hi"] < 0
    assert d["diff"] == pytest.approx(-0.05, abs=0.003)
    same = metrics.paired_bootstrap(b, b)
    assert same["diff"] == same["lo"] == same["hi"] == 0.0
    with pytest.raises(ValueError):
        metrics.paired_bootstrap(a, b[:-1])
