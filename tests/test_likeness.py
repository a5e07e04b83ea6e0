"""Likeness: head pose taken out in 3D, the mean face, exaggeration, skin
from the lit side, the artist's fitted detectors and the identity metrics."""
from __future__ import annotations

import json
import subprocess
import sys

from pathlib import Path

import numpy as np
import pytest
import skimage.data

from avatarizer import landmarks as LM
from avatarizer import schema as S
from avatarizer.artist import ArtistStyle, AutoArtist, crop_valid_mask, exaggerate_params, mean_avatar
from avatarizer.artist.photo import from_lab, to_lab
from conftest import turned_head

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"


@pytest.fixture(scope="module")
def astronaut():
    from avatarizer.align import FaceAligner

    with FaceAligner() as al:
        face = al.align(skimage.data.astronaut())
        assert face is not None
        yield face


# ------------------------------------------------------------------ mean face


def test_mean_face_is_frontal_symmetric_and_its_mirror_table_an_involution():
    m = LM.mean_face()
    assert m.points.shape == (478, 3) and np.isfinite(m.points).all()
    assert np.array_equal(m.mirror[m.mirror], np.arange(478))
    for a, b in ((33, 263), (133, 362), (61, 291), (234, 454), (70, 300), (468, 473)):
        assert m.mirror[a] == b
    for mid in (1, 10, 152, 0, 17):
        assert m.mirror[mid] == mid
    refl = m.points[m.mirror] * np.array([-1.0, 1.0, 1.0])
    assert np.abs(refl - m.points).max() < 1e-5  # symmetric
    c = LM.to_canonical(m.points)
    assert np.allclose(c[[33, 133]].mean(0), (-0.25, -0.1), atol=0.02)
    assert len(m.rigid) > 100 and not set(m.rigid) & set(LM.LANDMARK_INDICES["lips_outer"])


def test_frontalize_takes_head_turns_out(astronaut):
    lm3 = astronaut.landmarks.astype(np.float64)
    base = LM.frontalize(lm3)
    for yaw, pitch in ((25, 0), (-30, 10), (0, -15)):
        turned = turned_head(lm3, yaw, pitch)
        # the 2D canonical shape changes a lot with the turn ...
        assert np.abs(LM.to_canonical(turned) - LM.to_canonical(lm3)).max() > 0.05
        # ... the frontal one does not
        assert np.abs(LM.frontalize(turned) - base).max() < 1e-6
    # anchors at the canonical targets
    assert np.allclose(base[[33, 133]].mean(0), (-0.25, -0.1), atol=0.03)
    assert np.allclose(base[[61, 291]].mean(0), (0.0, 0.4), atol=0.03)
    with pytest.raises(ValueError):
        LM.frontalize(np.zeros((10, 3)))
    with pytest.raises(ValueError):
        LM.frontalize(np.full((478, 3), np.nan))


def _frontal_reference(lm: np.ndarray) -> np.ndarray:
    """The frontal face by its definition: the rigid landmarks' similarity onto
    the mean face (umeyama, all 478 points moved), then the canonical frame."""
    if lm.shape[1] == 2 or not lm[:, 2].any():
        return LM.to_canonical(lm)
    m = LM.mean_face()
    s, R, t = LM.umeyama(lm[m.rigid], m.points[m.rigid])
    return LM.to_canonical(lm @ (s * R).T + t)


def test_frontal_points_are_frontalize_at_those_landmarks(astronaut):
    lm3 = astronaut.landmarks.astype(np.float64)
    idx = [0, 13, 14, 61, 291, 33, 133, 362, 263, 105, 334, 468, 473]
    for yaw, pitch in ((0, 0), (25, 0), (-30, 10), (0, -15), (170, 0)):
        turned = turned_head(lm3, yaw, pitch)
        ref = _frontal_reference(turned)
        np.testing.assert_allclose(LM.frontal_points(turned, idx), ref[idx], rtol=0, atol=1e-9)
        np.testing.assert_allclose(LM.frontalize(turned), ref, rtol=0, atol=1e-9)
        np.testing.assert_allclose(LM.frontal_points(turned[:, :2], idx), _frontal_reference(turned[:, :2])[idx],
                                   rtol=0, atol=1e-9)
    flat = lm3.copy()
    flat[:, 2] = 0.0  # no depth: only the 2D alignment, as frontalize
    np.testing.assert_allclose(LM.frontal_points(flat, idx), LM.to_canonical(flat)[idx], rtol=0, atol=1e-9)
    for bad in (np.zeros((10, 3)), np.full((478, 3), np.nan), np.zeros(478), np.zeros((478, 3))):
        with pytest.raises(ValueError):
            LM.frontal_points(bad, idx)
    # indices as frontalize(...)[indices] takes them: a mask, a tuple, negative ones; not floats or 2-D
    full = LM.frontalize(lm3)
    mask = np.zeros(478, bool)
    mask[[61, 291]] = True
    np.testing.assert_allclose(LM.frontal_points(lm3, mask), full[mask], rtol=0, atol=1e-9)
    np.testing.assert_allclose(LM.frontal_points(lm3, (61, -1)), full[[61, -1]], rtol=0, atol=1e-9)
    with pytest.raises(IndexError):
        LM.frontal_points(lm3, [61.9])
    with pytest.raises(ValueError):
        LM.frontal_points(lm3, [[61, 291]])
    # any scale: the same canonical points, no overflow
    for scale in (1e-155, 1e154):
        np.testing.assert_allclose(LM.frontal_points(lm3 * scale, idx), LM.frontal_points(lm3, idx),
                                   rtol=0, atol=1e-9)


def test_the_canonical_frame_of_a_face_rolled_past_90_degrees_is_the_upright_ones(astronaut):
    """Landmarks without depth, the face rolled in the image plane by up to
    180 degrees: the canonical landmarks (and the expression signals read
    from them) are the upright face's, since a roll is a similarity. The
    eyes' order along x took a roll past 90 degrees for a mirror image and
    swapped the eyes: the canonical face came out squashed (mouth_width read
    0.08 where upright 0.34). A mirrored face still has its eyes swapped."""
    from avatarizer import expressions as X

    flat = astronaut.landmarks.astype(np.float64)[:, :2]
    c = flat.mean(0)
    upright = LM.to_canonical(flat)
    signals = X.measure(None, landmarks=flat)
    for deg in (60, 91, 120, 180, -135):
        a = np.deg2rad(deg)
        rot = (flat - c) @ np.array([[np.cos(a), np.sin(a)], [-np.sin(a), np.cos(a)]]) + c
        np.testing.assert_allclose(LM.to_canonical(rot), upright, rtol=0, atol=1e-9)
        np.testing.assert_allclose(LM.frontal_points(rot, [0, 61, 291, 468]), upright[[0, 61, 291, 468]],
                                   rtol=0, atol=1e-9)
        np.testing.assert_allclose(X.measure(None, landmarks=rot), signals, rtol=0, atol=1e-9)
    mirrored = flat * np.array([-1.0, 1.0])
    np.testing.assert_allclose(LM.to_canonical(mirrored), upright * np.array([-1.0, 1.0]), rtol=0, atol=1e-9)


def test_exaggerate_and_symmetrize():
    m = LM.mean_face().points[:, :2]
    face = LM.to_canonical(m + np.random.default_rng(0).normal(0, 0.01, m.shape))
    assert np.allclose(LM.exaggerate(face, 1.0), face)
    d1 = np.abs(face - m)[:468].mean()
    d2 = np.abs(LM.exaggerate(face, 1.5) - m)[:468].mean()
    assert 1.3 < d2 / d1 < 1.7
    s = LM.symmetrize(face)
    mir = s[LM.mean_face().mirror] * np.array([-1.0, 1.0])
    assert np.abs(mir - s).max() < 1e-9
    batch = LM.symmetrize(np.stack([face, face]))
    assert np.allclose(batch[0], s) and np.allclose(batch[1], s)


# ----------------------------------------------------------------- the artist


def test_artist_draws_the_frontal_face(astronaut):
    """A turned head gives the same drawn geometry as the frontal one."""
    art = AutoArtist()
    size = art.style.crop_size
    args = (astronaut.canonical, astronaut.crop(size), astronaut.hair_mask(size))
    kw = dict(valid=crop_valid_mask(astronaut, size))
    a = art.fit_landmarks(*args, landmarks3d=astronaut.landmarks, **kw)
    b = art.fit_landmarks(*args, landmarks3d=turned_head(astronaut.landmarks.astype(np.float64), 25), **kw)
    for feat in ("face", "eye_l_upper", "eye_r_upper", "nose_base", "lip_upper_outer", "lip_lower_outer"):
        assert np.abs(S.points(a, feat) - S.points(b, feat)).max() < 1e-4, feat
    # without depth (or with frontal=False) the face is drawn as the crop shows it
    c = AutoArtist(ArtistStyle(frontal=False)).fit_landmarks(*args, landmarks3d=astronaut.landmarks, **kw)
    d = art.fit_landmarks(*args, **kw)
    assert np.array_equal(c, d)
    S.validate(a)
    S.validate(b)


def test_exaggeration_style_and_validation(astronaut):
    size = 192
    args = (astronaut.canonical, astronaut.crop(size), astronaut.hair_mask(size))
    out = {}
    for k in (1.0, 1.25, 1.75):
        out[k] = AutoArtist(ArtistStyle(exaggeration=k)).fit_landmarks(*args, landmarks3d=astronaut.landmarks)
    m = mean_avatar()
    xy = np.isin(np.array(S.KINDS[S.FACE]), ("x", "y"))
    dev = {k: np.abs(v[S.FACE][xy] - m[xy]).mean() for k, v in out.items()}
    assert dev[1.0] < dev[1.25] < dev[1.75]
    for bad in (0.1, 3.0, float("nan"), True, "1.2"):
        with pytest.raises(ValueError):
            ArtistStyle(exaggeration=bad)


def test_exaggerate_params():
    p = S.sample(4, seed=2)
    assert np.array_equal(exaggerate_params(p, 1.0), p.astype(np.float32))
    q = exaggerate_params(p, 1.4)
    assert q.shape == p.shape and np.array_equal(q[:, S.FACE.stop:], p[:, S.FACE.stop:])
    S.validate(q[0])
    m = mean_avatar()
    xy = np.isin(np.array(S.KINDS[S.FACE]), ("x", "y"))
    assert np.abs(q[:, S.FACE][:, xy] - m[xy]).mean() > np.abs(p[:, S.FACE][:, xy] - m[xy]).mean()
    for bad in (0.0, float("inf"), 9.0):
        with pytest.raises(ValueError):
            exaggerate_params(p, bad)
    with pytest.raises(ValueError):
        exaggerate_params(np.zeros(10), 1.2)


def test_skin_from_the_lit_side(astronaut):
    """Darkening one side of the face (side light) must not darken the skin:
    it follows the cheek that is still lit."""
    sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parents[1] / "export"))
    from avatarizer_export.evaluate import lit_cheek

    art = AutoArtist(ArtistStyle(skin_tone_network=False))  # (the measured skin: the tone band comes after)
    size = art.style.crop_size
    shaded = astronaut.crop(size).astype(np.float64)
    shaded[:, : size // 2] *= 0.55  # the image-left half in shadow
    shaded = shaded.astype(np.uint8)
    side = art.fit_landmarks(astronaut.canonical, shaded, None, landmarks3d=astronaut.landmarks)
    rgb = [S.index(f"face.{c}") for c in "rgb"]
    lit, _ = lit_cheek(shaded, astronaut.canonical.astype(np.float64))
    l_lit, l_side = to_lab(lit)[0], to_lab(side[rgb])[0]
    assert abs(l_lit - l_side) < 3.5, (l_lit, l_side)
    # the test does make side light: the shadowed cheek is far darker
    discs = [astronaut.canonical[list(q)].mean(0) for q in ((101, 205, 36), (330, 425, 266))]
    px = (np.stack(np.meshgrid(np.arange(size), np.arange(size)), -1) + 0.5) * 2 / size - 1
    shadow = np.median(shaded[((px - discs[0]) ** 2).sum(-1) < 0.05 ** 2] / 255.0, 0)
    assert to_lab(shadow)[0] < l_lit - 10, (to_lab(shadow)[0], l_lit)


def test_fitted_detectors_file():
    from avatarizer.artist import accessories as A

    doc = json.loads(A._DETECTORS_PATH.read_text())
    assert "training photos" in doc["fitted_on"]
    det = A.detectors()
    assert "glasses" in det
    g = det["glasses"]
    # glasses, beard and moustache are small networks (avatarizer-export detectors' MLP_TASKS)
    for name, k in (("glasses", 3), ("beard", 2), ("moustache", 2)):
        m = det[name]
        assert m["kind"] == "mlp" and len(m["members"]) >= 1
        for W1, b1, W2, b2 in m["members"]:
            assert W1.shape == (len(b1), len(m["mean"])) and W2.shape == (k, len(b1))
        p = A.probabilities(m, np.asarray(m["mean"]))
        assert p.shape == (k,) and abs(p.sum() - 1) < 1e-9
    assert 0 < g["thresholds"]["clear"] <= 1 and 0 < g["thresholds"]["sun"] <= 1
    assert 0 < det["beard"]["thresholds"]["yes"] < 1 and 0 < det["moustache"]["thresholds"]["yes"] < 1
    # the hair-colour detector's input length, as the loader checks it, is what the hair module computes
    from avatarizer.hair import hair_colour_features

    assert len(hair_colour_features(np.full((4, 3), 0.5))) == A.HAIR_COLOUR_FEATURES == len(det["hair_colour"]["mean"])


def test_network_detectors_match_torch_and_refuse_bad_weights(tmp_path, monkeypatch):
    """``fit_mlp``'s ensemble as the SDK reads it: the NumPy forward pass is
    the mean of the members' softmaxes as torch computes them (eval mode,
    no dropout); it learns a separable task; a detectors file whose member
    shapes do not fit together, or of an unknown kind, loses that detector
    only (the others still load)."""
    import json
    import sys
    from pathlib import Path

    import torch

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "export"))
    from avatarizer.artist import accessories as A
    from avatarizer_export.detectors import fit_mlp, predict

    rng = np.random.default_rng(3)
    x = rng.normal(size=(400, 10))
    y = (x[:, 0] * x[:, 1] > 0).astype(int) + (x[:, 2] > 1.2)  # not linearly separable; 3 classes
    m = fit_mlp(x, y, 3, hidden=16, members=3, epochs=200)
    p = predict(m, x)
    assert p.shape == (400, 3) and np.allclose(p.sum(1), 1)
    assert np.mean(p.argmax(1) == y) > 0.85
    z = torch.tensor((x - np.asarray(m["mean"])) / np.asarray(m["scale"]))
    want = np.mean([torch.softmax(torch.relu(z @ torch.tensor(mem["W1"], dtype=torch.float64).T + torch.tensor(mem["b1"], dtype=torch.float64))
                                  @ torch.tensor(mem["W2"], dtype=torch.float64).T + torch.tensor(mem["b2"], dtype=torch.float64), 1).numpy()
                    for mem in m["members"]], 0)
    assert np.abs(p - want).max() < 1e-9
    assert np.abs(A.probabilities(m, x[7]) - want[7]).max() < 1e-9  # one vector

    good = {**json.loads(json.dumps(m)), "thresholds": {"clear": 0.3, "sun": 0.5}}
    bad = json.loads(json.dumps(good))
    bad["members"][1]["W2"] = bad["members"][1]["W2"][:2]  # two classes' rows in a three-class ensemble
    nan = json.loads(json.dumps(good))
    nan["members"][0]["W1"][0][0] = float("nan")
    two = {"mean": [0.0] * 3, "scale": [1.0] * 3, "W": [[0.0] * 3] * 2, "b": [0.0, 1.0], "thresholds": {"yes": 0.5}}
    # the hat detector's 17 cues and 2 components of its 256-value pixel block (accessories.hat_inputs)
    hat = {"mean": [0.0] * 19, "scale": [1.0] * 19, "W": [[0.0] * 19] * 2, "b": [0.0, 1.0], "thresholds": {"yes": 0.5},
           "pixels": {"mean": [0.0] * 256, "scale": [1.0] * 256, "basis": [[0.0, 0.0]] * 256}}
    # the hair colour's 22 colour statistics (hair.hair_colour_features), 5 classes, a grey-hair age prior
    n = A.HAIR_COLOUR_FEATURES
    hc = {"mean": [0.0] * n, "scale": [1.0] * n, "W": [[0.0] * n] * 5, "b": [0.0] * 5, "min_prob": 0.4,
          "age_prior": {"bins": [15.0, 25.0], "gray": [0.1, 1.0, 2.0]}}
    na = A.AGE_FEATURES
    age = {"kind": "ridge", "mean": [0.0] * na, "scale": [1.0] * na, "w": [0.0] * na, "b": 3.0}
    path = tmp_path / "artist_detectors.json"
    monkeypatch.setattr(A, "_DETECTORS_PATH", path)
    cases = [  # (the file, the detectors the SDK keeps)
        ({"detectors": {"glasses": good, "headwear": hat, "hair_colour": hc}}, ["glasses", "hair_colour", "headwear"]),
        # as many inputs as the code computes (a broadcast error at every photo), an age prior that fits
        ({"detectors": {"headwear": {**hat, "mean": [0.0] * 18, "scale": [1.0] * 18, "W": [[0.0] * 18] * 2}}}, []),
        # (a file of session 21 or before: 14 colour statistics, no skin)
        ({"detectors": {"hair_colour": {**hc, "mean": [0.0] * 14, "scale": [1.0] * 14, "W": [[0.0] * 14] * 5}}},
         []),
        *[({"detectors": {"hair_colour": {**hc, "age_prior": prior}}}, []) for prior in (
            {"bins": [15.0, 25.0], "gray": []}, {"bins": "young", "gray": [1.0]}, [1, 2],
            {"bins": [15.0, 25.0], "gray": [0.1, 1.0]}, {"bins": [15.0, 25.0], "gray": [0.1, -1.0, 2.0]},
            {"bins": [15.0, 25.0], "gray": [0.1, float("nan"), 2.0]}, {"bins": [25.0, 15.0], "gray": [0.1, 1.0, 2.0]},
            {"bins": [15.0, 25.0], "gray": ["0.1", 1.0, 2.0]})],
        ({"detectors": {"glasses": bad, "beard": {**two, "kind": "forest"}, "headwear": hat}}, ["headwear"]),
        ({"detectors": {"glasses": nan, "moustache": {**two, "b": [[0.0, 1.0]]}}}, []),  # NaN weight, 2-D bias
        ({"detectors": {"glasses": {**good, "thresholds": {"clear": "abc", "sun": 0.5}},
                        "beard": {k: v for k, v in two.items() if k != "thresholds"},
                        "moustache": {**two, "thresholds": {"yes": float("nan")}}}}, []),
        ({"detectors": {"glasses": two, "beard": good}}, []),  # two classes for glasses, three for a beard
        ({"detectors": {"hair_colour": {**hc, "min_prob": 2.0}, "headwear": {**hat, "thresholds": {"yes": 1.5}}}},
         []),
        ([1, 2], []), ({"detectors": [1, 2]}, []), ({"detectors": {"beard": [1]}}, []),
        # the bald detector: two classes, its threshold and the bare-top band's floor below it
        ({"detectors": {"bald": {**two, "thresholds": {"yes": 0.7, "bare_top": 0.3}}}}, ["bald"]),
        *[({"detectors": {"bald": b}}, []) for b in (
            {**two, "W": [[0.0] * 3] * 3, "b": [0.0] * 3}, {**two, "thresholds": {"yes": 1.5}},
            {k: v for k, v in two.items() if k != "thresholds"}, {**two, "thresholds": {"yes": 0.5, "bare_top": 0.6}},
            {**two, "thresholds": {"yes": 0.5, "bare_top": float("nan")}})],
        # the artist's age regressor: as many weights as age_vector's values, a finite intercept
        ({"detectors": {"age": age}}, ["age"]),
        *[({"detectors": {"age": a}}, []) for a in (
            {**age, "w": age["w"][:-1]}, {**age, "b": float("nan")}, {**age, "kind": "logistic"},
            {**age, "kind": "logistic", "W": [[0.0] * na], "b": [0.0]},  # valid, but not what age_estimate reads
            {**age, "mean": age["mean"][:-1], "scale": age["scale"][:-1], "w": age["w"][:-1]})],
    ]
    try:
        for doc, kept in cases:
            path.write_text(json.dumps(doc))
            A.detectors.cache_clear()
            assert sorted(A.detectors()) == kept, doc
        # a kept age prior is what hair.age_gray_ratio reads
        from avatarizer.hair import age_gray_ratio

        path.write_text(json.dumps({"detectors": {"hair_colour": hc}}))
        A.detectors.cache_clear()
        assert [age_gray_ratio(a) for a in (20, 60)] == [1.0, 2.0]
        # its first band, where it starts past GRAY_MIN_AGE; under GRAY_MIN_AGE no grey at all
        path.write_text(json.dumps({"detectors": {"hair_colour": {
            **hc, "age_prior": {**hc["age_prior"], "bins": [20.0, 30.0]}}}}))
        A.detectors.cache_clear()
        assert [age_gray_ratio(a) for a in (10, 16, 25, 60)] == [0.0, 0.1, 1.0, 2.0]
        path.write_text("{not json")
        A.detectors.cache_clear()
        assert A.detectors() == {}
    finally:
        A.detectors.cache_clear()


# ------------------------------------------------------------------- the SDK


def test_avatarizer_exaggeration_option():
    from avatarizer import Avatarizer

    img = skimage.data.astronaut()
    with Avatarizer(estimator="artist", exaggeration=1.0) as a, Avatarizer(estimator="artist", exaggeration=1.6) as b:
        pa, pb = a.from_frame(img).params, b.from_frame(img).params
    m = mean_avatar()
    xy = np.isin(np.array(S.KINDS[S.FACE]), ("x", "y"))
    assert np.abs(pb[S.FACE][xy] - m[xy]).mean() > np.abs(pa[S.FACE][xy] - m[xy]).mean()
    for bad in (0.2, 5, float("nan"), "x", True, 10 ** 400):  # (an int beyond a float: was an OverflowError)
        with pytest.raises(ValueError):
            Avatarizer(estimator="artist", exaggeration=bad)


def test_a_damaged_or_missing_mean_face_file_is_a_model_error(tmp_path):
    """The shipped mean face cut in half, replaced by other bytes, or gone:
    ``ModelError`` naming the file (was zipfile's BadZipFile, numpy's bare
    ValueError, a plain FileNotFoundError, and an unclosed file)."""
    import warnings

    from avatarizer.errors import ModelError

    data = LM._DATA.read_bytes()
    for name, content in (("cut.npz", data[: len(data) // 2]), ("junk.npz", b"\x93NUMPY" + bytes(200)),
                          ("missing.npz", None)):
        path = tmp_path / name
        if content is not None:
            path.write_bytes(content)
        with warnings.catch_warnings():
            warnings.simplefilter("error", ResourceWarning)
            with pytest.raises(ModelError, match=name):
                LM.MeanFace.load(path)
    assert LM.MeanFace.load(LM._DATA).points.shape == (478, 3)


def test_cli_refuses_a_bad_exaggeration(tmp_path):
    out = tmp_path / "a.png"
    res = subprocess.run([sys.executable, "-m", "avatarizer.cli", "image", "in.jpg", "-o", str(out),
                          "--exaggeration", "nan"], capture_output=True, text=True)
    assert res.returncode == 2 and "exaggeration" in res.stderr
    assert not out.exists()


# ------------------------------------------------------------------- metrics


def test_identity_variants():
    sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parents[1] / "export"))
    from avatarizer_export import metrics as M

    rng = np.random.default_rng(0)
    m = LM.mean_face().points * 100 + 200
    faces = np.stack([turned_head(m + rng.normal(0, 1.5, m.shape), rng.uniform(-20, 20)) for _ in range(20)])
    # renders: the same people with their heads turned another way
    renders = np.stack([turned_head(f, rng.uniform(-25, 25), rng.uniform(-10, 10)) for f in faces])
    out = M.identity_variants(faces, renders, n=20)
    assert out["identity_top1_frontal"] == 1.0 and out["identity_top1_symmetric"] >= 0.9
    assert out["identity_top1"] < out["identity_top1_frontal"]  # pose left in confuses the 2D measure
    shuffled = M.identity_variants(faces, renders[::-1].copy(), n=20)
    assert shuffled["identity_top1_frontal"] < 0.3
    nan = renders.copy()
    nan[0] = np.nan
    assert M.identity_variants(faces, nan, n=20)["hits_frontal"][0] == False  # noqa: E712


def test_skin_locus_takes_colour_casts_out():
    from avatarizer.artist.colour import skin_locus

    st = ArtistStyle()
    h_lo, h_hi = st.skin_hue
    for cast in ((0.86, 0.77, 0.87), (0.55, 0.62, 0.50), (0.5, 0.5, 0.5), (0.2, 0.2, 0.2)):
        out = skin_locus(st, np.array(cast))
        L0, L1 = to_lab(np.array(cast))[0], to_lab(out)[0]
        lab = to_lab(out)
        hue = np.degrees(np.arctan2(lab[2], lab[1]))
        assert abs(L0 - L1) < 1.0, (cast, out)
        assert h_lo - 0.5 <= hue <= h_hi + 0.5, (cast, out, hue)
        assert np.hypot(lab[1], lab[2]) >= st.skin_chroma[0] - 0.5
    # a cool white balance on typical skin was drawn pink (hue clipped to 20 deg with the cast's chroma)
    for gain in ((0.8, 0.9, 1.2), (0.7, 0.85, 1.35)):
        cast = np.clip(np.array([0.87, 0.68, 0.58]) * gain, 0, 1)
        lab = to_lab(skin_locus(st, cast))
        hue = np.degrees(np.arctan2(lab[2], lab[1]))
        assert 30 <= hue <= 60 and np.hypot(lab[1], lab[2]) <= 20, (gain, hue, lab)
    # skin within the locus is left as it is
    for skin in ((0.87, 0.68, 0.58), (0.45, 0.30, 0.22), (0.95, 0.80, 0.72)):
        np.testing.assert_allclose(skin_locus(st, np.array(skin)), skin, atol=2e-3)


def test_hair_colour_classifier_file():
    from avatarizer import hair as H
    from avatarizer.artist import accessories as A
    from avatarizer.artist.photo import to_lab

    doc = json.loads(A._DETECTORS_PATH.read_text())
    m = A.detectors()["hair_colour"]
    assert m["classes"] == list(H.HAIR_COLOURS)
    assert np.asarray(m["W"]).shape == (5, len(m["mean"])) == (5, 22)
    assert 0.0 < m["min_prob"] < 1.0 and H.hair_colour_gate() == m["min_prob"]
    rep = doc["heldout"]["hair_colour"]
    assert rep["photos"] > 50 and 0.0 <= rep["drawn_reads_as_label"]["balanced_drawn"] <= 1.0
    # a golden patch beside light skin reads blond, a near-black one black
    # (the classifier reads the hair against the cheeks' colour, session 22)
    rng = np.random.default_rng(0)
    golden = np.clip(np.array([0.80, 0.66, 0.40]) + rng.normal(0, 0.05, (200, 3)), 0, 1)
    black = np.clip(np.array([0.07, 0.06, 0.06]) + rng.normal(0, 0.02, (200, 3)), 0, 1)
    skin = to_lab(np.array([0.85, 0.68, 0.58]))
    for px, want in ((golden, "blond"), (black, "black")):
        p = H.hair_colour_probs(px, skin)
        assert abs(sum(p.values()) - 1) < 1e-9 and max(p, key=p.get) == want, p
    assert H.hair_colour_probs(golden[:5], skin) is None  # too few pixels
    assert H.hair_colour_probs(golden) is None  # no skin to read it against
    assert H.hair_colour_probs(golden, np.array([np.nan, 0.0, 0.0])) is None
    assert H.region_classifier_reads(skin) and not H.region_classifier_reads(None)
    # without a skin reading the region's classifier reads nothing: with H's reading the colour is
    # drawn in H's class (as the avatar then reports it, source "H"), without it as sampled
    brown = np.clip(np.array([0.30, 0.20, 0.12]) + rng.normal(0, 0.02, (400, 3)), 0, 1)
    h_grey = ({"black": 0.01, "brown": 0.02, "blond": 0.02, "red": 0.01, "gray": 0.94}, None, 80.0)
    drawn, probs = H.hair_colour_of_class(brown.mean(0), brown, 1000, skin_lab=None, model=h_grey)
    assert probs == H.model_hair_colour(*h_grey) and H.hair_colour_class_of(drawn) == "gray"
    # (at any probability: H's weak reading of black is drawn black, not the sampled brown)
    weak = ({"black": 0.24, "brown": 0.2, "blond": 0.2, "red": 0.16, "gray": 0.2}, None)
    drawn, probs = H.hair_colour_of_class(brown.mean(0), brown, 1000, model=weak)
    assert max(probs, key=probs.get) == "black" == H.hair_colour_class_of(drawn)
    drawn, probs = H.hair_colour_of_class(brown.mean(0), brown, 1000)
    assert probs is None and np.allclose(drawn, H.natural_hair_colour(brown.mean(0)))
    with pytest.raises(TypeError):  # (skin_lab and model by keyword only: a model passed 4th is refused)
        H.hair_colour_of_class(brown.mean(0), brown, 1000, h_grey)


def test_without_a_skin_reading_what_ships_draws_the_hair_colour_it_reports(monkeypatch):
    """Where the cheeks give no skin reading the hair region's classifier
    reads nothing: the hair stage then draws and reports H's class (source
    "H"), not the sampled colour beside H's class (4 of 5 photos disagreed
    before, reviewer)."""
    import skimage.data

    from avatarizer import Avatarizer
    from avatarizer import hair as H

    reported = []
    real_read = H.read_hair_colour

    def read(attributes, probs, source="hair region"):
        reported.append(source)
        return real_read(attributes, probs, source)

    monkeypatch.setattr(H, "cheek_skin_lab", lambda *a, **k: None)
    monkeypatch.setattr(H, "read_hair_colour", read)
    monkeypatch.setattr("avatarizer.haircolour.load", lambda folder=None: None)  # (H's reading alone here)
    monkeypatch.setattr("avatarizer.haircolour.load_tight", lambda folder=None: None)
    photos = [skimage.data.astronaut()]
    folder = SHARED / "data" / "faces" / "ffhq128"
    if folder.is_dir():
        from avatarizer.imageio import load_image

        photos += [load_image(folder / f"ffhq-{i:04d}.jpg") for i in (1005, 1010, 1013)]
    rgb = [S.index(f"hair_front.{c}") for c in "rgb"]
    checked = 0
    with Avatarizer() as av:
        for img in photos:
            avatar = av.from_frame(img)
            if avatar.params[S.index("hair_style.layers")] <= 0 or avatar.params[S.index("headwear.type")] > 0:
                continue
            checked += 1
            assert H.hair_colour_class_of(avatar.params[rgb]) == avatar.attributes["hair_colour"]["value"]
    assert checked >= 1 and reported and set(reported) == {"H"}


def test_cheek_skin_lab_reads_the_cheeks_inside_the_photo():
    """The skin the hair is read against: the face oval's median between
    0.05 and 0.35 below the eye line; the whole oval's when those rows are
    outside the photo; None when the oval is."""
    from avatarizer import hair as H
    from avatarizer.artist.photo import to_lab

    lm = LM.mean_face().points[:, :2].astype(np.float64)
    size = 128
    g = (np.arange(size) + 0.5) * 2 / size - 1
    eye_y = float(lm[[*LM.EYE_ENDS[0], *LM.EYE_ENDS[1]], 1].mean())
    crop = np.zeros((size, size, 3), np.uint8)
    crop[:] = (40, 90, 200)  # background and forehead: blue
    cheeks = (g >= eye_y + H.CHEEK_ROWS[0]) & (g < eye_y + H.CHEEK_ROWS[1])
    crop[cheeks] = (200, 150, 120)  # the cheek rows, across the whole crop: skin
    got = H.cheek_skin_lab(crop, lm)
    np.testing.assert_allclose(got, to_lab(np.array([200, 150, 120]) / 255.0), atol=0.5)
    assert np.allclose(H.cheek_skin_lab(crop.astype(np.float32) / 255, lm), got, atol=0.5)  # float crops alike
    # the cheek rows outside the photo: the rest of the oval (here blue)
    valid = np.ones((size, size), bool)
    valid[cheeks] = False
    np.testing.assert_allclose(H.cheek_skin_lab(crop, lm, valid), to_lab(np.array([40, 90, 200]) / 255.0), atol=0.5)
    assert H.cheek_skin_lab(crop, lm, np.zeros((size, size), bool)) is None


def test_drawn_hair_colour_moves_the_least_way_into_the_class():
    from avatarizer import hair as H
    from avatarizer.artist.photo import to_lab

    dark_blond = np.array([0.55, 0.45, 0.30])  # how blond hair photographs: reads light brown
    assert H.hair_colour_class_of(dark_blond) == "brown"
    sure = {"black": 0.05, "brown": 0.15, "blond": 0.7, "red": 0.05, "gray": 0.05}
    out = H.drawn_hair_colour(dark_blond, sure, min_prob=0.5)
    assert H.hair_colour_class_of(out) == "blond"
    # the least way: nearer the photo's colour than the palette's blond is
    palette = np.array(__import__("avatarizer.prior", fromlist=["HAIR_COLORS"]).HAIR_COLORS["blond"])
    d_out = np.linalg.norm(to_lab(out) - to_lab(dark_blond))
    assert 0 < d_out < np.linalg.norm(to_lab(palette) - to_lab(dark_blond))
    # unsure, no classifier, or already reading as the class: as sampled
    np.testing.assert_allclose(H.drawn_hair_colour(dark_blond, sure, min_prob=0.8), dark_blond, atol=1e-6)
    np.testing.assert_allclose(H.drawn_hair_colour(dark_blond, None), dark_blond, atol=1e-6)
    brown = {"black": 0.05, "brown": 0.8, "blond": 0.05, "red": 0.05, "gray": 0.05}
    np.testing.assert_allclose(H.drawn_hair_colour(dark_blond, brown), dark_blond, atol=1e-6)


def test_brown_hair_is_not_drawn_a_grey_looking_taupe():
    """Brown (blond, red) hair is drawn with at least the palette's dark
    brown's chroma where it is light enough to show it
    (:data:`hair.HAIR_MIN_CHROMA`): a taupe the region's median gave where a
    green background mixed in (L* 37, chroma 5) read as brown, nearer the
    browns than the palette's grey, but looked grey (a toddler's and boys'
    hair, reported brown; a read-only review, session 70). A dark neutral
    (near-black) and grey hair are drawn as they are."""
    from avatarizer import hair as H
    from avatarizer.artist.photo import to_lab

    taupe = np.array([0.38, 0.335, 0.33])
    lab = to_lab(taupe)
    assert lab[0] > H.HAIR_MIN_LIGHT_L and np.hypot(lab[1], lab[2]) < 6 and H.hair_colour_class_of(taupe) == "brown"
    brown = {"black": 0.02, "brown": 0.9, "blond": 0.05, "red": 0.01, "gray": 0.02}
    out = H.drawn_hair_colour(taupe, brown, min_prob=0.3)
    got = to_lab(out.astype(np.float64))
    assert H.hair_colour_class_of(out) == "brown" and np.hypot(got[1], got[2]) >= H.HAIR_MIN_CHROMA - 0.2, got
    assert np.linalg.norm(got - lab) < 12  # the least way, not the palette's brown
    # a bluish neutral (a blue background mixed in): the floor holds wherever the way goes (toward the
    # nearest palette brown it crossed L* 30 first and stopped a neutral grey; toward the darkest brown it
    # reached the floor at L* 15), and the lightness stays near the photo's
    for bluish in (np.array([0.33, 0.35, 0.40]), np.array([0.36, 0.36, 0.42])):
        lab = to_lab(bluish)
        assert lab[0] > H.HAIR_MIN_LIGHT_L and H.hair_colour_class_of(bluish) != "black"
        got = to_lab(H.drawn_hair_colour(bluish, brown, min_prob=0.3).astype(np.float64))
        assert np.hypot(got[1], got[2]) >= H.HAIR_MIN_CHROMA - 0.2 and abs(got[0] - lab[0]) < 8, (lab, got)
    dark = np.array([0.2, 0.19, 0.19])  # L* 20: near-black whatever its chroma
    np.testing.assert_allclose(H.drawn_hair_colour(dark, {**brown, "brown": 0.5, "black": 0.42}), dark, atol=1e-6)
    grey = np.array([0.62, 0.62, 0.63])
    np.testing.assert_allclose(H.drawn_hair_colour(grey, {"gray": 0.9, "brown": 0.1}), grey, atol=1e-6)


def test_logistic_fit_converges():
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "export"))
    from avatarizer_export.detectors import fit_logistic, predict

    rng = np.random.default_rng(1)
    x = rng.normal(size=(300, 6))
    x[:, 1] = x[:, 0] + 0.01 * rng.normal(size=300)  # nearly collinear columns (hair percentiles are)
    y = np.argmax(x[:, :3] @ rng.normal(size=(3, 3)) + 0.5 * rng.normal(size=(300, 3)), 1)
    m = fit_logistic(x, y, 3, l2=1.0)
    # at the optimum the penalised gradient vanishes
    z = np.concatenate([(x - np.asarray(m["mean"])) / np.asarray(m["scale"]), np.ones((300, 1))], 1)
    w = np.concatenate([np.asarray(m["W"]), np.asarray(m["b"])[:, None]], 1)
    p = predict(m, x)
    cw = np.array([300 / (3 * (y == c).sum()) for c in range(3)])[y]
    reg = np.r_[np.ones(6), 0.0]
    grad = ((p - np.eye(3)[y]) * cw[:, None]).T @ z + reg * w
    assert np.abs(grad[1:]).max() < 1e-4, np.abs(grad[1:]).max()
    assert np.mean(p.argmax(1) == y) > 0.8


def test_a_threshold_keeps_its_precision_in_every_group():
    """``precision_threshold(..., groups=)``: the lowest threshold at which
    every group (a crop size) keeps the precision with 3 finds, as a brute
    force over the candidates finds it; the larger of the groups' own
    thresholds can miss the precision in one of them (precision is not
    monotone in the threshold)."""
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "export"))
    from avatarizer_export.detectors import precision_threshold

    def brute(p, t, g, prec):
        for c in np.unique(p):
            m = p >= c
            if all(t[m & (g == k)].sum() >= max(3, prec * (m & (g == k)).sum()) and (m & (g == k)).any()
                   for k in np.unique(g)):
                return float(c)
        return 1.0

    rng = np.random.default_rng(5)
    larger_misses = 0
    for _ in range(300):
        n = int(rng.integers(10, 120))
        p = np.round(rng.random(n), 2)
        t = (rng.random(n) < p).astype(float)
        g = rng.random(n) < 0.5
        prec = float(rng.choice([0.6, 0.8, 0.9]))
        th = precision_threshold(p, t, prec, groups=g)
        assert th == brute(p, t, g, prec)
        own = max(precision_threshold(p[g == k], t[g == k], prec) for k in (False, True))
        m = (p >= own) & g
        larger_misses += own < 1.0 and m.any() and t[m].sum() < prec * m.sum()
    assert larger_misses > 0  # why the groups are scanned together


def test_hybrid_draws_the_glasses_the_artist_finds():
    """H misses most clear glasses; the hybrid also draws the artist's own
    glasses decision (frame, tint, transparency cues) where H draws none."""
    import sys
    from pathlib import Path

    from PIL import Image

    from avatarizer import Avatarizer
    from avatarizer.align import FaceAligner
    from avatarizer.artist import crop_valid_mask

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from conftest import need_shared

    path = need_shared("data", "faces", "ffhq128-labelled", "69043.jpg")  # clear glasses (labelled)
    photo = np.asarray(Image.open(path).convert("RGB"))
    art = AutoArtist()
    with FaceAligner() as al:
        face = al.align(photo)
    size = art.style.crop_size
    kw = dict(valid=crop_valid_mask(face, size), landmarks3d=face.landmarks)
    plain, _ = art.fit_geometry_skin(face.canonical, face.crop(size), **kw)
    withg, _ = art.fit_geometry_skin(face.canonical, face.crop(size), glasses=True, **kw)
    t = S.index("glasses.type")
    assert plain[t] == 0 and withg[t] == 1
    np.testing.assert_array_equal(np.delete(plain, np.flatnonzero([n.startswith("glasses.") for n in S.NAMES])),
                                  np.delete(withg, np.flatnonzero([n.startswith("glasses.") for n in S.NAMES])))
    with Avatarizer() as av:
        if av.estimator != "hybrid":
            pytest.skip(f"estimator {av.estimator!r}")
        a = av.from_frame(photo)
    assert a.params[t] == 1


def test_a_blown_out_cheek_does_not_whiten_the_skin():
    """A flash hotspot or sunlit cheek (all channels near white) is not skin
    colour: the brighter-cheek rule must not pick it, and a photo that is
    blown out everywhere keeps its own (pale) reading."""
    from avatarizer.artist import ArtistStyle
    from avatarizer.artist import colour as C

    rng = np.random.default_rng(0)
    skin = np.array([0.82, 0.62, 0.52])
    white = np.array([0.99, 0.97, 0.95])

    class Stub:
        def __init__(self, left, right):
            self.px = {0: left, 1: right}

        def region_pixels(self, *polys, discs=(), **_):  # (the lips and the mouth: skin's colour here)
            if discs:
                return self.px[discs[0]]
            return np.tile(skin, (40, 1))

    def patch(c, n=120):
        return np.clip(c + rng.normal(0, 0.01, (n, 3)), 0, 1)

    st = ArtistStyle()
    lm = np.zeros((478, 2))
    got = C.skin_colour(st, Stub(patch(white), patch(skin)), lm, [0, 1])
    np.testing.assert_allclose(got, skin, atol=0.03)  # the blown cheek left out
    half = np.concatenate([patch(white, 80), patch(skin * 1.05, 40)])
    got = C.skin_colour(st, Stub(half, patch(skin)), lm, [0, 1])
    assert np.abs(got - skin).max() < 0.08  # its unclipped rim still counts, nothing near white
    got = C.skin_colour(st, Stub(patch(white), patch(white)), lm, [0, 1])
    np.testing.assert_allclose(got, white, atol=0.03)  # all blown: as photographed


def test_gray_age_prior_from_predictions(tmp_path):
    from avatarizer_export import detectors as D

    rng = np.random.default_rng(0)
    n = 400
    age = rng.uniform(5, 80, n)
    gray = (age > 50) & (rng.random(n) < 0.6)
    names = [f"ffhq128/{i}.jpg" for i in range(n)]
    colours = np.where(gray, 4, 1)
    np.savez(tmp_path / "p.npz", keys=np.array(names), regress=np.stack([age] + [np.zeros(n)] * 4, 1))
    prior = D.gray_age_prior(names, colours, np.zeros(n, bool), predictions=tmp_path / "p.npz")
    assert prior["bins"] == list(D.AGE_BANDS) and len(prior["gray"]) == len(D.AGE_BANDS) + 1
    assert prior["gray"][0] < 0.2 < 2.0 < prior["gray"][-1] and sum(prior["photos"]) == n
    assert D.gray_age_prior(names, colours, np.zeros(n, bool), predictions=tmp_path / "missing.npz") is None


# ------------------------------------------------------------------ beards


def _painted_beard(face, size=192, seed=0):
    """The astronaut's crop, and the same crop with a rough white beard
    painted from below the lower lip to the chin."""
    from avatarizer.artist.photo import pixel_centres

    crop = face.crop(size).copy()
    lm = face.canonical[:, :2].astype(np.float64)
    c = pixel_centres(size)
    gx, gy = c[None, :], c[:, None]
    chin, lip = lm[LM.CHIN_BOTTOM], lm[LM.LOWER_LIP_BOTTOM]
    region = (np.abs(gx - chin[0]) < 0.27) & (gy > lip[1] + 0.03) & (gy < chin[1] + 0.02)
    rng = np.random.default_rng(seed)
    grey = np.clip(215 + rng.normal(0, 25, (size, size)), 0, 255)
    painted = crop.copy()
    painted[region] = np.repeat(grey[region][:, None], 3, 1).astype(np.uint8)
    return crop, painted, lm, region


def test_beard_grid_reads_a_white_beard(astronaut):
    """The grid's cells below the mouth see a white beard (greyer and rougher
    than the cheeks, not darker); the cells it does not reach are unchanged."""
    from avatarizer.artist import accessories as A
    from avatarizer.artist.photo import make_photo

    st = ArtistStyle()
    crop, painted, lm, _ = _painted_beard(astronaut)
    valid = crop_valid_mask(astronaut, 192)
    nx, ny = A.BEARD_GRID
    cues = [np.reshape(A.facial_hair_features(st, lm, {}, make_photo(st, c, None, valid))["grid"], (ny, nx, 4))
            for c in (crop, painted)]
    before, after = cues
    mid = nx // 2
    assert after[-1, mid, 1] > before[-1, mid, 1] + 0.3  # chroma lost
    assert after[-1, mid, 2] > before[-1, mid, 2] + 0.3  # rougher
    assert after[-1, mid, 0] < before[-1, mid, 0]  # lighter, not darker
    np.testing.assert_allclose(after[0], before[0])  # beside the nose: not painted
    vec = A.beard_vector(A.facial_hair_features(st, lm, {}, make_photo(st, crop, None, valid)))
    assert vec.shape == (12 + 4 * nx * ny,) and np.isfinite(vec).all()


def test_the_beard_fan_reaches_the_jaws_sides(astronaut):
    """The fan's cells follow the lower face out to its outline: dark hair
    painted on the chin alone darkens its middle column and leaves the
    outer one beside the mouth as it was; painted on the jaw's sides too,
    the outer column darkens on both sides (its minimum over the sides), also
    where one side is outside the frame; the goatee detector's input is the
    beard's cues and the fan's."""
    from avatarizer.artist import accessories as A
    from avatarizer.artist.photo import make_photo, pixel_centres

    st = ArtistStyle()
    size = 192
    crop = astronaut.crop(size)
    lm = astronaut.canonical[:, :2].astype(np.float64)
    valid = crop_valid_mask(astronaut, size)
    c = pixel_centres(size)
    gx, gy = np.broadcast_arrays(c[None, :], c[:, None])
    mid = 0.5 * (lm[LM.CHIN_BOTTOM, 0] + lm[LM.NOSE_BOTTOM, 0])
    mouth_y = 0.5 * (lm[LM.MOUTH_CORNERS[0], 1] + lm[LM.MOUTH_CORNERS[1], 1])
    half_mouth = 0.5 * abs(lm[LM.MOUTH_CORNERS[1], 0] - lm[LM.MOUTH_CORNERS[0], 0])
    below = (gy > mouth_y + 0.02) & (gy < lm[LM.CHIN_BOTTOM, 1])
    chin = below & (np.abs(gx - mid) < 0.6 * half_mouth)
    rng = np.random.default_rng(0)

    def painted(region):
        out = crop.copy()
        out[region] = np.clip(40 + rng.normal(0, 12, (int(region.sum()), 1)), 0, 255).astype(np.uint8)
        return out

    def fan(img, valid=valid):
        f = A.facial_hair_features(st, lm, {}, make_photo(st, img, None, valid))
        assert len(f["fan"]) == 2 * 4 * A.FAN_ROWS * (len(A.FAN_COLUMNS) - 1)
        assert A.goatee_vector(f).shape == (len(A.beard_vector(f)) + len(f["fan"]),)
        ncol = len(A.FAN_COLUMNS) - 1
        # (mean over the sides, min over the sides) x (rows, columns, cues)
        return np.reshape(f["fan"], (2, A.FAN_ROWS, ncol, 4))

    bare, goatee, full = fan(crop), fan(painted(chin)), fan(painted(below))
    # the darkness cue (0) of the bottom row: the middle column sees the chin's hair
    assert goatee[0, -1, 0, 0] > bare[0, -1, 0, 0] + 0.5
    # the outer column beside the mouth does not (nothing painted there; at the
    # chin's height the face narrows and every column meets the chin) ...
    np.testing.assert_allclose(goatee[:, :2, -1], bare[:, :2, -1], atol=1e-9)
    # ... but sees hair on the jaw's sides, on both sides (the minimum rises)
    assert full[1, -1, -1, 0] > bare[1, -1, -1, 0] + 0.5
    assert full[1, 1, -1, 0] > bare[1, 1, -1, 0] + 0.5
    # the face cut by the frame beside the beard (the image-left half of the lower face outside
    # it): the side it shows stands for both, so the jaw's hair is not read as bare skin (the
    # cells' zeros had turned cut full beards into goatees)
    cut = valid & ~((gx < mid) & (gy > lm[LM.NOSE_BOTTOM, 1]))
    half = fan(painted(below), cut)
    np.testing.assert_allclose(half[0], half[1])  # mean over the sides = min: one side's cues
    assert half[1, 1, -1, 0] > bare[1, 1, -1, 0] + 0.5 and half[1, -1, -1, 0] > bare[1, -1, -1, 0] + 0.5


def test_a_detector_of_other_cues_leaves_the_rule_in_charge(astronaut, monkeypatch):
    """A detectors file fitted on another cue vector (an older artist's) is
    not applied to this one's cues: the hand-set rule decides."""
    from avatarizer.artist import accessories as A

    old = {"mean": [0.0] * 12, "scale": [1.0] * 12, "W": [[0.0] * 12, [0.0] * 12], "b": [0.0, 9.0],
           "thresholds": {"yes": 0.5}}
    monkeypatch.setattr(A, "detectors", lambda: {"beard": old, "moustache": old})
    # (the facial-hair network, where its files are there, decides in place of both: off here)
    _, g = AutoArtist(ArtistStyle(facial_hair_network=False))._fit(
        astronaut.canonical, astronaut.crop(192), None, crop_valid_mask(astronaut, 192), astronaut.landmarks)
    assert g["beard_prob"] == (None, None) and "facial_hair_by" not in g
    assert g["beard_score"][0] < 0  # the rule: no beard on the astronaut


def test_a_painted_white_beard_rises_above_the_bare_chin_and_the_rule_misses_it(astronaut):
    """A white beard is not darker than the cheeks: the hand-set rule (the
    regions' darkness, texture and chroma) misses a painted one; the fitted
    detector over the lower face's grid of cues reads it far above the bare
    chin (it does not draw these flat painted strokes: real white beards,
    :func:`test_the_artist_finds_most_held_out_white_beards`)."""
    from avatarizer.artist import accessories as A

    det = A.detectors()
    assert "beard" in det and len(det["beard"]["mean"]) == 12 + 4 * int(np.prod(A.BEARD_GRID))
    crop, painted, _, _ = _painted_beard(astronaut)
    probs, rules = [], []
    for c in (crop, painted):
        _, g = AutoArtist(ArtistStyle())._fit(astronaut.canonical, c, None, crop_valid_mask(astronaut, 192),
                                              astronaut.landmarks)
        probs.append(g["beard_prob"][0])
        rules.append(A.rule_scores(A.beard_vector(g["beard_features"]))[0])
    # the painted beard (flat grey strokes, unlike a real one's texture) is not
    # drawn by the network detector, but it rises far above the bare chin;
    # real white beards: test_the_artist_finds_most_held_out_white_beards
    assert probs[0] < 0.01 and probs[1] > 100 * probs[0], probs
    assert rules[0] < 0 and rules[1] < 0, rules


def test_geometry_skin_gives_the_facial_hair_readings(astronaut):
    """The hybrid's geometry fit hands over the beard detector's
    (probability, threshold) with the glasses cues, and the goatee
    detector's: the same readings the full artist fit decides with."""
    from avatarizer.artist import accessories as A

    valid = crop_valid_mask(astronaut, 192)
    for crop in (astronaut.crop(192), _painted_beard(astronaut)[1]):
        cues: dict = {}
        AutoArtist().fit_geometry_skin(astronaut.canonical, crop, valid=valid, landmarks3d=astronaut.landmarks,
                                       glasses=True, cues=cues)
        assert {"glasses", "glasses_shape", "beard"} <= set(cues) and callable(cues["beard"])
        prob, th = cues["beard"]()  # measured when asked
        assert cues["beard"]() == (prob, th)
        assert 0.0 <= prob <= 1.0 and th == A.detectors()["beard"]["thresholds"]["yes"]
        # the reading the full artist fit draws from
        _, g = AutoArtist()._fit(astronaut.canonical, crop, None, valid, astronaut.landmarks, None)
        assert prob == pytest.approx(g["beard_prob"][0], abs=1e-12)
        assert prob < th  # no beard on the astronaut, and the painted grey strokes are not one either
        # the goatee detector's reading (the shape of a drawn beard) from the same cues
        assert callable(cues["goatee"]) and cues["goatee"]() == A.goatee_evidence(g["beard_features"])


@pytest.mark.skipif(not (SHARED / "data" / "faces" / "utkface200").is_dir(), reason="needs ../shared/data/faces")
@pytest.mark.xdist_group("heldout_hybrid")
def test_the_artist_finds_most_held_out_white_beards(heldout_runs):
    """The held-out UTKFace men of 55 and over whom both labellers saw with a
    beard (``labels/utkface_facial_hair.jsonl``; white and grey beards,
    which the hand-set rule and the logistic detector mostly missed: 4 of 15
    for the logistic one): the artist draws most of them (since session 47
    by the facial-hair network where its files are there, else its
    detector), what ships twice as many as H alone did, and neither a beard
    on the held-out women of 55 and over."""
    import sys

    sys.path.insert(0, str(ROOT / "export"))
    from avatarizer_export.data import eye_labels, is_heldout

    labels = eye_labels()
    old = [k for k, v in labels.items() if k.startswith("utkface200/") and v.get("beard") == 1 and is_heldout(k)
           and int(k.split("/")[-1].split("_")[0]) >= 55]
    women = sorted(p.name for p in (SHARED / "data" / "faces" / "utkface200").glob("*.jpg")  # AGE_GENDER_RACE_...
                   if p.name.split("_")[1] == "1" and int(p.name.split("_")[0]) >= 55
                   and is_heldout(f"utkface200/{p.name}"))[:40]
    assert len(old) >= 10 and len(women) >= 20

    def beard(key, **options):  # (Avatarizer(**options).from_image, shared with the other held-out tests)
        a = heldout_runs.avatar(SHARED / "data" / "faces" / key, **options)
        return a is not None and float(a.params[S.index("beard.opacity")]) > 0

    found = sum(beard(k, estimator="artist") for k in old)
    invented = sum(beard(f"utkface200/{n}", estimator="artist") for n in women)
    assert found >= 0.6 * len(old), (found, len(old))
    assert invented <= 1, invented
    # what ships (the hybrid: H's beard, or the artist's detector where H missed it): 8 of 15, H alone 4
    found = sum(beard(k) for k in old)
    invented = sum(beard(f"utkface200/{n}") for n in women)
    assert found >= 0.5 * len(old), (found, len(old))
    assert invented <= 1, invented


@pytest.mark.skipif(not (SHARED / "data" / "faces" / "utkface200").is_dir(), reason="needs ../shared/data/faces")
@pytest.mark.xdist_group("heldout_hybrid")
def test_held_out_goatees_are_told_from_full_beards(heldout_runs):
    """On the held-out photos whose beard style is labelled by eye
    (``labels/beard_style_by_eye.jsonl``: 20 goatees, 58 full beards or
    stubble): the goatee detector finds about half the goatees and calls
    few full beards one (session 21: 10 of 20, 5 of 58 at the artist's crop
    size); a beard the artist or what ships draws on a goatee is drawn as
    one where the detector finds it, and few full beards are drawn as
    goatees (1 of 8 drawn goatees, 2 of 33 drawn full beards or stubble;
    out of fold among the training photos with a drawn beard 71 of 121 and
    20 of 359: the held-out drawn goatees are too few to ask for more)."""
    import sys

    sys.path.insert(0, str(ROOT / "export"))
    from avatarizer_export.data import goatee_labels, is_heldout

    from avatarizer.align import AlignOptions, FaceAligner
    from avatarizer.artist import accessories as A
    from avatarizer.imageio import load_image

    labels = {k: v["goatee"] for k, v in goatee_labels().items() if is_heldout(k)}
    assert sum(labels.values()) >= 15 and len(labels) - sum(labels.values()) >= 40
    art = AutoArtist(ArtistStyle())
    found = invented = 0
    with FaceAligner(AlignOptions(mode="image", max_faces=1, segmentation=True)) as al:
        for key, goatee in labels.items():
            face = al.align(load_image(SHARED / "data" / "faces" / key))
            _, g = art._fit(face.canonical, face.crop(192), face.hair_mask(192), crop_valid_mask(face, 192),
                            face.landmarks)
            on = A.is_goatee(A.goatee_evidence(g["beard_features"]))
            found += on and goatee
            invented += on and not goatee
    positives = sum(labels.values())
    assert found >= 0.45 * positives and invented <= 0.1 * (len(labels) - positives), (found, invented)

    def shape(a):  # the drawn beard: none, or narrower than the jaw (a goatee) or along it
        if a is None or a.params[S.index("beard.opacity")] <= 0:
            return None
        return "goatee" if np.ptp(S.points(a.params, "beard")[:, 0]) < 0.6 else "full"

    for estimator in ("artist", "auto"):  # (Avatarizer(estimator=...).from_image, shared)
        shapes = {k: shape(heldout_runs.avatar(SHARED / "data" / "faces" / k, estimator=estimator)) for k in labels}
        on_goatees = [shapes[k] for k, v in labels.items() if v and shapes[k]]
        on_full = [shapes[k] for k, v in labels.items() if not v and shapes[k]]
        assert on_goatees.count("goatee") >= 1 and len(on_full) >= 15, (estimator, on_goatees, on_full)
        assert on_full.count("goatee") <= 0.15 * len(on_full), (estimator, on_full)


@pytest.mark.skipif(not (SHARED / "data" / "faces" / "utkface200").is_dir(), reason="needs ../shared/data/faces")
@pytest.mark.xdist_group("heldout_hybrid")
def test_held_out_grey_beards_are_drawn_grey(heldout_runs):
    """On the held-out photos whose facial hair's colour is labelled by eye
    (``labels/beard_style_by_eye.jsonl``) and that what ships draws facial
    hair on, the drawn colour (read as its nearest palette colour) is grey
    for most grey and white beards and moustaches, and rarely for dark and
    brown ones (session 40: 29 of 38 and 3 of 43 with the grey-beard
    detector; 17 of 38 and 2 of 43 with the hand-set rule it replaced;
    session 43: 31 of 38 and 4 of 43, grey facial hair lifted with a dim
    photo's skin and drawn grey only where ``hair.grey_beard_plausible``;
    session 53: 35 of 38 and 6 of 43, the detector weighed with the hair's
    colour, ``avatarizer.beardgrey``: balanced accuracy 0.861 -> 0.891; session 61: 34 of 38 and 5 of 43,
    0.889, the fusion refitted after a tight crop's hair region was weighed less in the hair colour)."""
    import sys

    sys.path.insert(0, str(ROOT / "export"))
    from avatarizer_export.data import beard_colour_labels, is_heldout

    from avatarizer import hair as HR

    labels = {k: v["beard_grey"] for k, v in beard_colour_labels().items() if is_heldout(k)}
    grey = {True: [], False: []}
    for key, label in labels.items():
        a = heldout_runs.avatar(SHARED / "data" / "faces" / key)  # (Avatarizer().from_image, shared)
        drawn = [f for f in ("beard", "moustache") if a is not None and a.attributes[f]["value"]]
        if drawn:
            rgb = a.params[[S.index(f"{drawn[0]}.{c}") for c in "rgb"]]
            grey[bool(label)].append(HR.hair_colour_class_of(rgb) == "gray")
    assert len(grey[True]) >= 30 and len(grey[False]) >= 30, {k: len(v) for k, v in grey.items()}
    right = 0.5 * (np.mean(grey[True]) + 1.0 - np.mean(grey[False]))
    assert np.mean(grey[True]) >= 0.89 and np.mean(grey[False]) <= 0.16 and right >= 0.88, \
        {k: sum(v) for k, v in grey.items()}


@pytest.mark.skipif(not (SHARED / "data" / "faces" / "ffhq128-labelled").is_dir(), reason="needs ../shared/data/faces")
@pytest.mark.xdist_group("heldout_hybrid")
def test_held_out_lips_keep_their_contrast_against_the_relit_skin(heldout_runs):
    """Where what ships moves the skin into its tone's band (more than 5 L*
    from the artist's reading at the photo's exposure), the lips keep the
    artist's lip-to-skin light ratio (session 41, these folders: 123 such
    photos, |log ratio error| median 0.42 and 90th percentile 1.05 with the
    lips left as measured, 0.017 and 0.076 relit by ``skintone.relight``).
    What ships is ``Avatarizer()``'s run shared with the other held-out
    evaluations (290 of these 292 photos are theirs); the artist fits the
    same face, found again by an image-mode aligner (the same landmarks)."""
    import sys

    sys.path.insert(0, str(ROOT / "export"))
    from avatarizer_export.data import is_heldout

    from avatarizer.align import FaceAligner
    from avatarizer.artist import AutoArtist
    from avatarizer.artist.photo import to_lab
    from avatarizer.imageio import load_image
    from conftest import luminance

    skin, lip = [S.index(f"face.{c}") for c in "rgb"], [S.index(f"lip_lower_outer.{c}") for c in "rgb"]

    errors = []
    artist = AutoArtist(ArtistStyle(skin_tone_network=False))  # (its reading at the photo's exposure)
    with FaceAligner(mode="image", max_faces=1) as aligner:
        for folder in ("ffhq128", "ffhq128-labelled"):
            for path in sorted((SHARED / "data" / "faces" / folder).glob("*.jpg")):
                if not is_heldout(f"{folder}/{path.name}"):
                    continue
                f = heldout_runs.run(path)  # (Avatarizer().run(...).faces[0], shared)
                if f is None:
                    continue
                shipped, p = f.params, artist.fit(aligner.align(load_image(path)))
                if abs(to_lab(shipped[skin])[0] - to_lab(p[skin])[0]) > 5:
                    errors.append(np.log(luminance(shipped[lip]) / luminance(shipped[skin]))
                                  - np.log(luminance(p[lip]) / luminance(p[skin])))
    errors = np.abs(errors)
    assert len(errors) >= 40, len(errors)
    assert np.median(errors) < 0.1 and np.percentile(errors, 90) < 0.2, (np.median(errors), np.percentile(errors, 90))


def test_the_age_prior_is_kept_without_predictions(tmp_path):
    """A refit without H's predictions (a fresh clone before its first H)
    keeps the grey-hair age prior of the file it replaces."""
    from avatarizer.artist import accessories as A
    from avatarizer_export import detectors as D

    shipped = json.loads(A._DETECTORS_PATH.read_text())["detectors"]["hair_colour"]["age_prior"]
    assert D._previous_age_prior(A._DETECTORS_PATH) == shipped
    assert len(shipped["gray"]) == len(D.AGE_BANDS) + 1
    for text in ("", "{}", '{"detectors": {"hair_colour": {}}}', "[1]"):
        (tmp_path / "d.json").write_text(text)
        assert D._previous_age_prior(tmp_path / "d.json") is None
    assert D._previous_age_prior(tmp_path / "missing.json") is None


@pytest.mark.parametrize("prob", [0.51, 0.99])
def test_a_fitted_beard_is_as_opaque_as_the_detector_is_sure(astronaut, monkeypatch, prob):
    """Opacity 0.7 at the drawing threshold up to 0.95 when sure (at 0.5 a
    white beard over the skin drew as a pink shadow)."""
    from avatarizer.artist import accessories as A

    n = 12 + 4 * int(np.prod(A.BEARD_GRID))
    det = {"mean": [0.0] * n, "scale": [1.0] * n, "W": [[0.0] * n, [0.0] * n],
           "b": [0.0, float(np.log(prob / (1 - prob)))], "thresholds": {"yes": 0.5}}
    monkeypatch.setattr(A, "detectors", lambda: {"beard": det})
    # (the detector's own path: the facial-hair network, where its files are there, decides in its place)
    p, _ = AutoArtist(ArtistStyle(facial_hair_network=False))._fit(
        astronaut.canonical, astronaut.crop(192), None, crop_valid_mask(astronaut, 192), astronaut.landmarks)
    want = 0.7 + 0.25 * (prob - 0.5) / 0.5
    assert abs(float(p[S.index("beard.opacity")]) - want) < 1e-4


@pytest.mark.parametrize("network", [False, True], ids=["no network", "hair-colour network"])
@pytest.mark.parametrize("known", [True, False])
def test_hair_whose_colour_could_not_be_read_takes_the_beards(astronaut, monkeypatch, known, network):
    """Where the hair's colour cannot be read (no hair region: a tight crop,
    a bright background), a drawn beard's colour is the person's hair
    colour, not the default dark brown; hair read from the photo keeps its
    own; so does hair whose class the hair-colour network read (session 47)."""
    from avatarizer.artist import accessories as A
    from avatarizer.artist import core, photo as PH

    n = 12 + 4 * int(np.prod(A.BEARD_GRID))
    sure = {"mean": [0.0] * n, "scale": [1.0] * n, "W": [[0.0] * n, [0.0] * n], "b": [0.0, 9.0],
            "thresholds": {"yes": 0.5}}
    monkeypatch.setattr(A, "detectors", lambda: {"beard": sure})
    real_hair = core.hair.hair

    def hair(st, p, lm, g, photo, col):
        real_hair(st, p, lm, g, photo, col)
        g["hair_known"] = known

    monkeypatch.setattr(core.hair, "hair", hair)
    _, painted, _, _ = _painted_beard(astronaut)
    # (the sure detector draws the beard, the network would not; with the hair-colour network, its class
    # stands where the hair region is not read)
    st = ArtistStyle(facial_hair_network=False, hair_colour_network=network)
    p, g = AutoArtist(st)._fit(astronaut.canonical, painted, None, crop_valid_mask(astronaut, 192), astronaut.landmarks)
    front = p[[S.index(f"hair_front.{c}") for c in "rgb"]]
    assert g["beard_rgb"] is not None and to_lab(np.asarray(g["beard_rgb"], np.float64))[0] > 75
    beardlike = np.abs(front - PH.gain(st, g["beard_rgb"])).max() < 1e-5
    if network and g.get("hair_colour_network") is None:
        pytest.skip("the hair-colour networks are not installed here")
    assert beardlike == (not known and not network)


# ------------------------------------------------------------------ glasses


def test_glasses_grid_sees_frames_where_they_are(astronaut):
    """Dark rims painted round the astronaut's eyes: the grid's cells on the
    eyes' row get darker and edgier; the artist's detector reads the seven
    cues and the grid, and a detectors file of the seven cues alone still
    applies to them."""
    import cv2

    from avatarizer.artist import accessories as A
    from avatarizer.artist.photo import make_photo, to_px

    st = ArtistStyle()
    crop = astronaut.crop(192)
    lm = astronaut.canonical[:, :2].astype(np.float64)
    framed = crop.copy()
    for s in (0, 1):
        c = to_px(0.5 * (lm[LM.side_index("eye_outer", s)] + lm[LM.side_index("eye_inner", s)]), 192)
        w = abs(lm[LM.side_index("eye_outer", s)][0] - lm[LM.side_index("eye_inner", s)][0]) * 192 / 2
        cv2.ellipse(framed, (int(c[0]), int(c[1])), (int(0.75 * w), int(0.5 * w)), 0, 0, 360, (20, 20, 20), 3)
    valid = crop_valid_mask(astronaut, 192)
    skin_lab = to_lab(np.array([0.8, 0.6, 0.5]))
    nx, ny = A.GLASSES_GRID
    before, after = (np.reshape(A.glasses_grid(lm, make_photo(st, c, None, valid), skin_lab, 0.1), (ny, nx, 6))
                     for c in (crop, framed))
    row = ny // 2 if ny % 2 else ny // 2 - 1  # the eyes' row
    assert (after[row, :, 3] - before[row, :, 3]).max() > 0.1  # dark pixels
    assert (after[row, :, 4:] - before[row, :, 4:]).max() > 0.1  # edges
    _, g = AutoArtist(st)._fit(astronaut.canonical, framed, None, valid, astronaut.landmarks)
    assert A.glasses_detector_vector(g).shape == (7 + 6 * nx * ny,)
    det = A.detectors()["glasses"]
    assert len(det["mean"]) == 7 + 6 * nx * ny


@pytest.mark.parametrize("aspect", [0.55, 0.95])
def test_the_lenses_height_is_read_from_their_rims(astronaut, aspect, monkeypatch):
    """Rounded-box rims of a known height over width painted round the
    astronaut's eyes: the fitted lenses give that aspect back, the drawn
    glasses take it (their width from the eye: artist.accessories.LENS_HALF_WIDTH),
    and with no rim to fit the drawn height falls back to LENS_ASPECT."""
    import cv2

    from avatarizer.artist import accessories as A
    from avatarizer.artist.photo import make_photo, to_px

    st = ArtistStyle()
    crop = astronaut.crop(192)
    lm = astronaut.canonical[:, :2].astype(np.float64)
    framed = crop.copy()
    for s in (0, 1):
        outer, inner = lm[LM.side_index("eye_outer", s)], lm[LM.side_index("eye_inner", s)]
        c, e = 0.5 * (outer + inner), 0.5 * float(np.linalg.norm(outer - inner))
        a, b = 1.8 * e, 1.8 * e * aspect
        r = 0.3 * b
        t = np.linspace(0, 2 * np.pi, 400)
        # a rounded box's outline: the corners' quarter circles joined
        qx, qy = np.sign(np.cos(t)) * (a - r) + r * np.cos(t), np.sign(np.sin(t)) * (b - r) + r * np.sin(t)
        pts = to_px(c + np.stack([qx, qy], 1), 192)
        cv2.polylines(framed, [np.round(pts).astype(np.int32)], True, (25, 20, 20), 2)
    valid = crop_valid_mask(astronaut, 192)
    photo = make_photo(st, framed, None, valid)
    assert A.lens_aspect(photo, lm) == pytest.approx(aspect, abs=0.1)
    fits = [A.lens_fit(photo, lm, s) for s in (0, 1)]
    assert all(f is not None and f["rms"] < A.LENS_FIT_RMS and f["a"] == pytest.approx(1.8, abs=0.2) for f in fits)
    p = S.default()
    g = {"eye_l": {"center": lm[LM.side_index("eye_outer", 0)]}, "eye_r": {"center": lm[LM.side_index("eye_outer", 1)]}}
    A._glasses_shape(st, p, lm, g, photo, 0.2)
    w, h = p[S.index("glasses.lens_w")], p[S.index("glasses.lens_h")]
    e = 0.25 * sum(np.linalg.norm(lm[LM.side_index("eye_outer", s)] - lm[LM.side_index("eye_inner", s)]) for s in (0, 1))
    assert h / w == pytest.approx(aspect, abs=0.1)  # (a tall lens drawn smaller where the schema's height ends)
    assert w == pytest.approx(min(A.LENS_HALF_WIDTH * e, A.LENS_W_RANGE[1], A.LENS_H_RANGE[1] / (h / w)), rel=0.02)
    # the drawn face lies elsewhere (a head turn's frontalised face; here shifted and 10% larger): the rims are
    # read on the photo's own landmarks, the lens drawn round the drawn eyes, as wide against them
    geo = (lm - lm.mean(0)) * 1.1 + lm.mean(0) + (0.03, -0.02)
    q = S.default()
    A._glasses_shape(st, q, lm, {**g, "geo": geo}, photo, 0.2)
    assert q[S.index("glasses.lens_h")] / q[S.index("glasses.lens_w")] == pytest.approx(h / w, abs=0.01)
    assert q[S.index("glasses.lens_w")] == pytest.approx(min(1.1 * w, A.LENS_W_RANGE[1],
                                                             A.LENS_H_RANGE[1] / (h / w)), rel=0.02)
    # sunglasses: no rim read, the median aspect; clear glasses whose tint cue reads low: read as ever
    q = S.default()
    A._glasses_shape(st, q, lm, {k: v for k, v in g.items() if k != "lens_aspect"}, photo, 0.2, sunglasses=True)
    assert q[S.index("glasses.lens_h")] / q[S.index("glasses.lens_w")] == pytest.approx(A.LENS_ASPECT, rel=0.01)
    q = S.default()
    A._glasses_shape(st, q, lm, {"eye_l": g["eye_l"], "eye_r": g["eye_r"],
                                 "glasses_score": (0.2, 0.2, A.MASK_SUN_TINT - 0.05)}, photo, 0.2)
    assert q[S.index("glasses.lens_h")] / q[S.index("glasses.lens_w")] == pytest.approx(h / w, abs=0.01)
    # the hybrid asks the artist's cues for the shape of the kind it will draw
    cues: dict = {}
    AutoArtist(st).fit_geometry_skin(astronaut.canonical, framed, valid=valid, landmarks3d=astronaut.landmarks,
                                     glasses=True, cues=cues)
    for kind, want in ((2, A.LENS_ASPECT), (1, h / w)):
        drawn = cues["glasses_shape"](kind)
        at = {n: S.index(f"glasses.{n}") - A.GLASSES.start for n in ("lens_w", "lens_h")}
        assert drawn[at["lens_h"]] / drawn[at["lens_w"]] == pytest.approx(want, abs=0.1 if kind == 1 else 0.01)
    monkeypatch.setattr(A, "lens_aspect", lambda photo, lm: None)  # no rim fitted: the median aspect
    g.pop("lens_aspect")  # (measured once a face)
    A._glasses_shape(st, p, lm, g, photo, 0.2)
    assert p[S.index("glasses.lens_h")] / p[S.index("glasses.lens_w")] == pytest.approx(A.LENS_ASPECT, rel=0.01)


@pytest.mark.skipif(not (SHARED / "data" / "faces" / "utkface200").is_dir(), reason="needs ../shared/data/faces")
def test_held_out_lenses_labelled_flat_and_tall_are_drawn_so():
    """On the held-out photos whose lenses two labellers by eye called flat,
    medium or tall (``labels/glasses_shape_by_eye.jsonl``), the lenses'
    fitted height over width (``accessories.lens_aspect``) follows the
    label (session 41: medians 0.67 flat (22 of 22 fitted), 0.74 medium
    (58 of 58), 0.89 tall (8 of 8); every lens had been drawn 0.70)."""
    import sys

    sys.path.insert(0, str(ROOT / "export"))
    from avatarizer_export.data import glasses_shape_labels, is_heldout

    from avatarizer.align import AlignOptions, FaceAligner
    from avatarizer.artist import accessories as A
    from avatarizer.imageio import load_image

    labels = {k: v["lens_aspect"] for k, v in glasses_shape_labels().items() if is_heldout(k) and "lens_aspect" in v}
    got: dict[str, list] = {"flat": [], "medium": [], "tall": []}
    art, seen = AutoArtist(), {}

    def keep(st, p, lm, g, photo, bridge, sunglasses=False):  # the photo and its landmarks the glasses are read on
        seen["args"] = (photo, np.asarray(lm, np.float64))

    with FaceAligner(AlignOptions(mode="image", max_faces=1, segmentation=True)) as al, \
            pytest.MonkeyPatch.context() as mp:
        mp.setattr(A, "_glasses_shape", keep)
        for key, label in labels.items():
            face = al.align(load_image(SHARED / "data" / "faces" / key))
            cues: dict = {}
            art.fit_geometry_skin(face.canonical, face.crop(192), valid=crop_valid_mask(face, 192),
                                  landmarks3d=face.landmarks, glasses=True, cues=cues)
            cues["glasses_shape"]()
            got[label].append(A.lens_aspect(*seen["args"]))
    fitted = {k: [x for x in v if x is not None] for k, v in got.items()}
    assert len(fitted["flat"]) >= 18 and len(fitted["tall"]) >= 6 and len(fitted["medium"]) >= 50, \
        {k: len(v) for k, v in fitted.items()}
    med = {k: float(np.median(v)) for k, v in fitted.items()}
    assert med["flat"] + 0.04 < med["medium"] < 0.8 < med["tall"] and med["flat"] < 0.7, med


def test_eval_scores_the_lenses_against_their_aspect_labelled_by_eye(tmp_path):
    """``eval``'s ``lens_aspect_by_eye``: the drawn lenses' height over width
    of held-out photos labelled flat, medium or tall, per label; photos drawn
    without glasses and training photos are not scored."""
    import sys

    sys.path.insert(0, str(ROOT / "export"))
    from avatarizer_export.data import glasses_shape_labels, is_heldout
    from avatarizer_export.evaluate import lens_aspect_reads

    labels = {k: v["lens_aspect"] for k, v in glasses_shape_labels().items() if "lens_aspect" in v}
    held = {c: sorted(k for k, x in labels.items() if x == c and is_heldout(k)) for c in ("flat", "medium", "tall")}
    train = sorted(k for k, x in labels.items() if x == "tall" and not is_heldout(k))[0]
    keys = [held["flat"][0], held["flat"][1], held["medium"][0], held["tall"][0], held["tall"][1], train]
    aspects = [0.5, 0.6, 0.75, 0.9, 0.9, 0.3]
    params = np.stack([S.default()] * len(keys))
    for row, a in zip(params, aspects):
        row[S.index("glasses.type")], row[S.index("glasses.lens_w")] = 1, 0.18
        row[S.index("glasses.lens_h")] = a * 0.18
    params[4, S.index("glasses.type")] = 0  # (no glasses drawn: not scored)
    names = [k.split("/", 1)[1] for k in keys]
    files = {n: tmp_path / k.split("/", 1)[0] / n for n, k in zip(names, keys)}
    got = lens_aspect_reads(names, files, params)
    assert {c: v["n"] for c, v in got.items()} == {"flat": 2, "medium": 1, "tall": 1}
    assert got["flat"]["median_aspect"] == pytest.approx(0.55, abs=1e-3)
    assert got["tall"]["median_aspect"] == pytest.approx(0.9, abs=1e-3)


def test_a_glasses_detector_of_the_seven_cues_still_decides(astronaut, monkeypatch):
    from avatarizer.artist import accessories as A

    sure_sun = {"mean": [0.0] * 7, "scale": [1.0] * 7, "W": [[0.0] * 7] * 3, "b": [0.0, 0.0, 9.0],
                "thresholds": {"clear": 0.5, "sun": 0.5}}
    monkeypatch.setattr(A, "detectors", lambda: {"glasses": sure_sun})
    p, g = AutoArtist(ArtistStyle())._fit(astronaut.canonical, astronaut.crop(192), None,
                                          crop_valid_mask(astronaut, 192), astronaut.landmarks)
    assert len(g["glasses_prob"]) == 3 and int(p[S.index("glasses.type")]) == 2


def _synthetic_detector_inputs(tmp_path, monkeypatch, n: int = 240, n_eye: int = 40):
    """A shared folder whose ffhq128-labelled ``attributes.jsonl`` labels
    ``n`` photos, labels by eye of ``n_eye`` more, and the cue caches of
    ``avatarizer-export detectors`` already holding their (synthetic,
    label-dependent) cue vectors under the current artist's key, so
    ``detectors.fit`` runs end to end without measuring a photo. Returns
    (shared, cache, the keys of the photos with a hair colour, their colours)."""
    from avatarizer.artist import accessories as A
    from avatarizer_export import data
    from avatarizer_export import detectors as D

    rng = np.random.default_rng(0)
    shared, cache, labels_by_eye = tmp_path / "shared", tmp_path / "cache", tmp_path / "labels"
    faces = shared / "data" / "faces" / "ffhq128-labelled"
    faces.mkdir(parents=True), cache.mkdir(), labels_by_eye.mkdir()
    monkeypatch.setattr(data, "EYE_LABELS", labels_by_eye)
    rgb = {0: (0.1, 0.08, 0.07), 1: (0.35, 0.22, 0.13), 2: (0.75, 0.6, 0.4), 3: (0.6, 0.25, 0.12), 4: (0.7, 0.7, 0.7)}
    glasses_names = ("NoGlasses", "ReadingGlasses", "Sunglasses")

    def photo(i, beard=None):
        lab = {"glasses": int(rng.choice(3, p=(0.6, 0.25, 0.15))), "beard": int(rng.random() < 0.3),
               "moustache": int(rng.random() < 0.3), "headwear": int(rng.random() < 0.2),
               "hair_colour": int(i % 5), "bald": int(rng.random() < 0.2)}
        if beard is not None:  # (after the draw: the same random numbers for every photo either way)
            lab["beard"] = beard
        goatee = int(rng.random() < 0.4)  # (a bearded photo's style, labelled by eye: goatee or full)
        cues = {"glasses": rng.normal(0, 1, 115) + 3.0 * np.r_[np.eye(3)[lab["glasses"]].repeat(5), np.zeros(100)],
                "beard": rng.normal(0, 1, 48) + 6.0 * np.r_[lab["beard"], lab["moustache"], np.zeros(46)],
                # the goatee detector's: the beard's cues and the fan's (the jaw's sides bare)
                "goatee": rng.normal(0, 1, 120) + 6.0 * np.r_[lab["beard"], lab["moustache"], np.zeros(70),
                                                              goatee * np.ones(4), np.zeros(44)],
                # (the bald detector reads the headwear cues too: a skin-coloured top, on other cues)
                "headwear": rng.normal(0, 1, 6) + 3.0 * lab["headwear"] * np.r_[1, 1, 1, 0, 0, 0]
                + 6.0 * lab["bald"] * np.r_[0, 0, 0, 1, 1, 1],
                # the hat detector's: the headwear cues, the hat's shape cues, the pixel block
                "hat": rng.normal(0, 1, 17 + 256) + 3.0 * lab["headwear"] * np.r_[1, 1, 1, np.zeros(14), np.ones(256)],
                # (14 colour statistics and 8 against the skin: the first 8 again, no more draws from rng)
                "hair": np.resize(rng.normal(0, 1, 14) + 3.0 * np.eye(14)[lab["hair_colour"]], A.HAIR_COLOUR_FEATURES),
                "hair_rgb": np.clip(np.array(rgb[lab["hair_colour"]]) + rng.normal(0, 0.02, 3), 0, 1),
                # the age regressor's input (fitted on UTKFace, which this folder has not: not fitted;
                # no draws from rng, so that the other cues' random streams stay as they were)
                "age": np.full(A.AGE_FEATURES, 0.1 * i),
                # the receding detector's (the top of the head; no draws from rng either)
                "receding": np.sin(np.arange(1.0, 7.0) * (i + 1.0))}
        # the grey-beard detector's: a bearded photo's colour by eye, every third grey (no draws from rng)
        grey = bool(lab["beard"]) and i % 3 == 0
        cues["beard_colour"] = np.r_[3.0 * grey, np.sin(np.arange(1, A.BEARD_COLOUR_CUES) * (i + 1.0))]
        if lab["beard"]:
            lab["beard_style"] = "goatee" if goatee else "full"
            lab["beard_colour"] = "grey" if grey else "dark"
        return lab, cues

    fields = D._fields()  # the sized cues at both crop sizes (the smaller's a little noisier)
    small = D._suffixes()[1]
    _photo = photo

    def photo(i, beard=None):  # noqa: F811
        lab, c = _photo(i, beard)
        return lab, {**c, **{f + small: c[f] + rng.normal(0, 0.3, len(c[f])) for f in D.SIZED
                             if f not in ("age", "beard_colour")},
                     "age" + small: c["age"], "beard_colour" + small: c["beard_colour"] + 0.1}

    names, cues, records = [f"{i:05d}.png" for i in range(n)], {f: [] for f in fields}, []
    colour_keys, colours = [], []
    for name in names:
        lab, c = photo(len(records))
        records.append({"file": name, "faces": [{"faceAttributes": {
            "glasses": glasses_names[lab["glasses"]],
            "hair": {"hairColor": [{"color": D.HAIR_COLOURS[lab["hair_colour"]], "confidence": 0.9}],
                     "bald": float(lab["bald"]), "invisible": False},
            "facialHair": {"beard": float(lab["beard"]), "moustache": float(lab["moustache"])},
            "accessories": [{"type": "headwear", "confidence": 1.0}] if lab["headwear"] else []}}]})
        for f in fields:
            cues[f].append(c[f])
        colour_keys.append(f"ffhq128-labelled/{name}")
        colours.append(lab["hair_colour"])
    (faces / "attributes.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    np.savez(cache / "detector_cues.npz", key=D._labelled_cache_key(faces, names), names=np.array(names),
             **{f: np.array(v, np.float64) for f, v in cues.items()})
    eye_keys, eye_cues, eye_records = [f"ffhq128/e{i:04d}.png" for i in range(n_eye)], {f: [] for f in fields}, []
    for j, key in enumerate(eye_keys):
        # every other one bearded, with a style (goatee or full): the goatee detector trains on these
        # alone and reports on the held out, e0038 among them (drawn at 30%, too few to fit it, or none
        # held out, in some random streams: the test then failed for want of data, not of a fault);
        # the rest drawn, so that beards by eye have negatives too
        lab, c = photo(len(records) + len(eye_records), beard=1 if j % 2 == 0 else None)
        eye_records.append({"file": key, **lab})
        for f in fields:
            eye_cues[f].append(c[f])
        colour_keys.append(key)
        colours.append(lab["hair_colour"])
    (labels_by_eye / "by_eye.jsonl").write_text("".join(json.dumps(r) + "\n" for r in eye_records))
    np.savez(cache / "detector_cues_eye.npz", key=D._cache_key(), names=np.array(eye_keys),
             missing=np.array([], dtype=str), **{f: np.array(v, np.float64) for f, v in eye_cues.items()})
    return shared, cache, colour_keys, np.array(colours)


def test_the_glasses_fusion_trains_on_the_networks_out_of_fold_probabilities(tmp_path, monkeypatch):
    """``detectors --fusion``: the artist network's part of each training
    photo's input is its out-of-fold probability, which ``detectors`` wrote
    beside its cue caches for that very network (the network's
    probabilities on its own training photos are too sure: fused with H
    they invented glasses); without them, or for another network, it
    refuses with a message; the file it writes is format 2, which the SDK
    reads."""
    from avatarizer.artist import accessories as A
    from avatarizer.glasses import GlassesFusion
    from avatarizer_export import detectors as D

    monkeypatch.setattr(D, "MLP_MEMBERS", 2)
    monkeypatch.setattr(D, "MLP_EPOCHS", 50)
    shared, cache, _, _ = _synthetic_detector_inputs(tmp_path, monkeypatch)
    monkeypatch.setattr(D, "features", lambda *a, **kw: pytest.fail("measured cues the cache holds"))
    det_file, fusion_file = tmp_path / "artist_detectors.json", tmp_path / "glasses_fusion.json"
    det_file.write_text(_sdk_detectors_text())
    monkeypatch.setattr(D, "OUT", det_file)
    rng = np.random.default_rng(1)

    order = {}

    def inputs(folder, keys, progress=True, models=None):  # the runtime's (network's, H's) log probabilities
        x = np.log(rng.dirichlet(np.ones(3), (len(keys), 2)).reshape(len(keys), 6))
        x[:, 3] = -1.0 - np.arange(len(keys)) * 1e-3  # a mark per photo in H's part: which row is which
        order.update(keys=list(keys))
        return x, np.ones(len(keys), bool), {"name": "attributes-onnx-int8", "version": "9.9.9", "sha256": "ab" * 32}

    monkeypatch.setattr(D, "fusion_inputs", inputs)
    with pytest.raises(RuntimeError, match="out-of-fold"):
        D.fit_glasses_fusion(shared, cache, out=fusion_file, quiet=True)  # no detectors fit yet
    D.fit(shared, cache, out=det_file, quiet=True)
    network = A.detector_key(json.loads(det_file.read_text())["detectors"]["glasses"])
    oof = D._glasses_oof(cache, network)
    fits = []
    real = D.fit_logistic
    monkeypatch.setattr(D, "fit_logistic", lambda x, y, k, l2=1.0: fits.append(x) or real(x, y, k, l2=l2))
    asked = []  # the precisions the thresholds are chosen for: clear glasses', sunglasses' (session 74)
    real_th = D.glasses_thresholds
    monkeypatch.setattr(D, "glasses_thresholds", lambda p, y, precision, groups=None, sun_precision=None: asked.append(
        (precision, sun_precision)) or real_th(p, y, precision, groups, sun_precision=sun_precision))
    doc = D.fit_glasses_fusion(shared, cache, out=fusion_file, quiet=True)
    assert doc["format"] == 2 and "out of fold" in doc["fitted_on"]
    assert asked and set(asked) == {(D.FUSION_PRECISION, D.FUSION_SUN_PRECISION)}
    assert (doc["precision_target"], doc["sun_precision_target"]) == (D.FUSION_PRECISION, D.FUSION_SUN_PRECISION)
    assert 0.0 <= doc["thresholds"]["any"] <= 1.0
    full = max((x for x in fits if x.shape[1] == 6), key=len)  # the model's own fit: every training photo
    assert len(full) == len(oof)
    for row in full:  # each row's network part is that very photo's out-of-fold probability
        key = order["keys"][int(round((-1.0 - row[3]) / 1e-3))]
        assert np.allclose(row[:3], np.log(np.clip(oof[key], 1e-4, 1.0))), key
    fusion = GlassesFusion.from_doc(json.loads(fusion_file.read_text()))
    assert fusion.W.shape == (3, 6) and fusion.artist_network == network
    assert fusion.any_glasses == doc["thresholds"]["any"]
    # the detectors refitted to another network: the out-of-fold file no longer fits it
    other = json.loads(det_file.read_text())
    other["detectors"]["glasses"]["mean"][0] += 1.0
    det_file.write_text(json.dumps(other))
    with pytest.raises(RuntimeError, match="another glasses network"):
        D.fit_glasses_fusion(shared, cache, out=fusion_file, quiet=True)
    # no glasses network at all: nothing fitted, nothing written, said once
    del other["detectors"]["glasses"]
    det_file.write_text(json.dumps(other))
    fusion_file.unlink()
    assert D.fit_glasses_fusion(shared, cache, out=fusion_file, quiet=True) == {} and not fusion_file.exists()


def _sdk_detectors_text() -> str:
    """The SDK's detectors file as text (a detectors run keeps its age prior)."""
    from avatarizer.artist import accessories as A

    return A._DETECTORS_PATH.read_text()


def _strict_json(text: str):
    """The document, refusing NaN and Infinity (not JSON: other readers refuse them)."""
    def refuse(token):
        raise ValueError(f"{token} in the detectors file")

    return json.loads(text, parse_constant=refuse)


@pytest.mark.parametrize("predictions", [False, True])
def test_detectors_fit_without_h_predictions_keeps_the_age_prior(tmp_path, monkeypatch, capsys, predictions):
    """``avatarizer-export detectors`` end to end (labels, cue caches, every
    detector's fit, the hair-colour classifier, the file written), the
    photos' cues given: without H's predictions (a fresh clone before its
    first H) the hair-colour classifier keeps the grey-hair age prior of the
    file it replaces, says so in one line, and the file is otherwise whole
    and read by the SDK; with them, the prior is fitted from H's ages."""
    from avatarizer import hair as HR
    from avatarizer.artist import accessories as A
    from avatarizer_export import attributes
    from avatarizer_export import detectors as D
    from avatarizer_export.data import beard_colour_labels, goatee_labels

    monkeypatch.setattr(D, "MLP_MEMBERS", 2)  # the networks smaller and shorter trained: the plumbing is tested
    monkeypatch.setattr(D, "MLP_EPOCHS", 50)
    shared, cache, keys, colours = _synthetic_detector_inputs(tmp_path, monkeypatch)
    out = tmp_path / "artist_detectors.json"
    old = json.loads(A._DETECTORS_PATH.read_text())  # the file it replaces (its prior not the SDK's own)
    previous = {**old["detectors"]["hair_colour"]["age_prior"], "gray": [0.1, 0.2, 0.5, 1.5, 3.0, 6.0]}
    old["detectors"]["hair_colour"]["age_prior"] = previous
    out.write_text(json.dumps(old))
    monkeypatch.setattr(attributes, "RUN", tmp_path / "run")
    if predictions:  # H's ages: the grey-haired photos old, the others young
        attributes.RUN.mkdir()
        age = np.where(colours == D.HAIR_COLOURS.index("gray"), 70.0, 20.0)
        np.savez(attributes.predictions_path(), keys=np.array(keys),
                 regress=np.stack([age] + [np.zeros(len(keys))] * 4, 1))
    else:
        assert not attributes.predictions_path().exists()
    monkeypatch.setattr(D, "features", lambda *a, **kw: pytest.fail("measured cues the cache holds"))
    capsys.readouterr()
    doc = D.fit(shared, cache, out=out, quiet=True)
    err = capsys.readouterr().err
    written = _strict_json(out.read_text())
    assert written == json.loads(json.dumps(doc))
    prior = written["detectors"]["hair_colour"]["age_prior"]
    kept = f"no H predictions ({attributes.predictions_path()}); the grey-hair age prior is kept from {out}"
    if predictions:
        assert prior != previous and kept not in err
        assert prior["gray"][-1] > 1.5 > 0.5 > prior["gray"][1]  # grey: old heads
    else:
        assert prior == previous and err.count(kept) == 1
    # otherwise a whole file: the photos it was fitted on, a model per detector, the held-out reports
    training = sum(not D.is_heldout(k) for k in keys if k.startswith("ffhq128-labelled/"))
    assert written["format"] == 1 and written["fitted_on"].startswith(f"{training} training photos of ffhq128-labelled")
    assert "labelled by eye" in written["fitted_on"]
    assert "fitted_on_bald" not in written  # (no labels by eye of the top of the head here)
    det = written["detectors"]
    assert set(det) | set(written.get("not_reliable", [])) == {"glasses", "beard", "moustache", "headwear",
                                                               "hair_colour", "bald", "goatee", "beard_grey",
                                                               "receding"}
    assert {"glasses", "beard", "hair_colour", "bald", "headwear"} <= set(det)
    # the goatee: only the bearded photos labelled by eye with a style train it (no shared label has one)
    styled = sum(not D.is_heldout(k) for k in goatee_labels())
    assert styled >= 5 and written["fitted_on_goatee"] == (f"{styled} training photos labelled by eye "
                                                            "for the beard's style")
    assert len(det["goatee"]["mean"]) == 120 and det["goatee"]["thresholds"]["yes"] < 1.0 and "W" in det["goatee"]
    assert written["precision_targets"]["goatee"] == D.GOATEE_PRECISION
    assert written["heldout_eye_labels"]["goatee"]["photos"] == sum(D.is_heldout(k) for k in goatee_labels())
    # the grey beard: the facial hair's colours labelled by eye alone train it
    coloured = sum(not D.is_heldout(k) for k in beard_colour_labels())
    assert coloured >= 5 and written["fitted_on_beard_grey"] == (f"{coloured} training photos labelled by eye "
                                                                  "for the facial hair's colour")
    assert len(det["beard_grey"]["mean"]) == A.BEARD_COLOUR_CUES and det["beard_grey"]["thresholds"]["yes"] < 1.0
    assert written["precision_targets"]["beard_grey"] == D.BEARD_GREY_PRECISION
    assert written["fitted_on_headwear"].endswith("labelled by eye for a covered head "
                                                  "(hat kinds, accessories, the top of the head, hair length)")
    # the hat detector's projection travels in the file: the SDK reads it as the toolchain predicts with it
    folder, _, names = D._labelled(shared, "the test")
    hat = D._read_cache(cache / "detector_cues.npz", D._labelled_cache_key(folder, names))["hat"][:20]
    sdk_det = A._checked(json.loads(json.dumps(det["headwear"])), "headwear")
    assert np.allclose(D.predict(det["headwear"], hat), A.probabilities(sdk_det, A.hat_inputs(hat, sdk_det)))
    for name, model in det.items():
        if name in D.MLP_TASKS:  # small networks: members of one hidden layer
            assert model["kind"] == "mlp" and len(model["members"]) == 2
            k = len(model["members"][0]["b2"])
            for mem in model["members"]:
                assert np.asarray(mem["W1"]).shape == (len(mem["b1"]), len(model["mean"]))
                assert np.asarray(mem["W2"]).shape == (k, len(mem["b1"]))
        else:
            k = len(model["b"])
            assert np.asarray(model["W"]).shape == (k, len(model["mean"])) == (k, len(model["scale"]))
        assert all(0 < t <= 1 for t in model.get("thresholds", {}).values())
    assert det["hair_colour"]["classes"] == list(D.HAIR_COLOURS) and det["hair_colour"]["min_prob"] in D.HAIR_MIN_PROB
    assert {"glasses", "beard", "hair_colour"} <= set(written["heldout"]) and written["heldout_eye_labels"]
    # the same held-out photos at the toolchain's crop size too
    small = D._suffixes()[1]
    assert {"glasses", "beard"} <= set(written[f"heldout{small}"]) and written[f"heldout_eye_labels{small}"]
    # the SDK reads it: its detectors, and the prior where the hair colour is fused
    monkeypatch.setattr(A, "_DETECTORS_PATH", out)
    A.detectors.cache_clear()
    try:
        assert set(A.detectors()) == set(det)
        p = A.probabilities(A.detectors()["glasses"], np.zeros(115))
        assert p.shape == (3,) and abs(p.sum() - 1) < 1e-9
        assert HR.age_gray_ratio(70.0) == prior["gray"][-1] and HR.age_gray_ratio(20.0) == prior["gray"][1]
    finally:
        monkeypatch.undo()
        A.detectors.cache_clear()


def test_one_detector_refitted_alone_leaves_the_rest_as_shipped(tmp_path, monkeypatch, capsys):
    """``avatarizer-export detectors --only beard``: the beard detector and
    its entries (held-out reports at both sizes, the hand rule beside it,
    what it was fitted on, its precision target) come from the new fit;
    every other detector, the hair colour, the age and the other reports
    stay as the file had them; a wrong name, a missing file or another
    precision target stop the run before any fit."""
    from avatarizer.artist import accessories as A
    from avatarizer_export import detectors as D

    monkeypatch.setattr(D, "MLP_MEMBERS", 2)
    monkeypatch.setattr(D, "MLP_EPOCHS", 50)
    shared, cache, _, _ = _synthetic_detector_inputs(tmp_path, monkeypatch)
    out = tmp_path / "artist_detectors.json"
    shipped = A._DETECTORS_PATH.read_text()
    out.write_text(shipped)
    old = json.loads(shipped)
    monkeypatch.setattr(D, "fit_mlp", _count_calls(D.fit_mlp, calls := []))
    doc = D.fit(shared, cache, out=out, quiet=True, only=("beard",))
    written = _strict_json(out.read_text())
    assert written == json.loads(json.dumps(doc))
    assert calls == [2] * 6  # the beard's network and its 5 folds' alone (the glasses' have 3 classes)
    assert written["detectors"]["beard"] != old["detectors"]["beard"]
    assert written["refitted_alone"]["beard"] == doc["refitted_alone"]["beard"] > 0
    assert {k: v for k, v in written["refitted_alone"].items() if k != "beard"} == {
        k: v for k, v in old.get("refitted_alone", {}).items() if k != "beard"}
    assert "labelled by eye" in written["fitted_on_beard"] and written["fitted_on"] == old["fitted_on"]
    small = D._suffixes()[1]
    changed = set()
    for part in ("detectors", "heldout", "heldout_eye_labels", f"heldout{small}", f"heldout_eye_labels{small}"):
        for key in set(old[part]) | set(written[part]):
            if old[part].get(key) != written[part].get(key):
                changed.add(key)
    assert changed <= {"beard", "beard_hand_rule"} and "beard" in changed
    rest = {k: v for k, v in written.items() if k not in ("detectors", "heldout", "heldout_eye_labels",
                                                          f"heldout{small}", f"heldout_eye_labels{small}",
                                                          "fitted_on_beard", "refitted_alone")}
    assert rest == {k: v for k, v in old.items() if k in rest} and set(old) - set(rest) <= {
        "detectors", "heldout", "heldout_eye_labels", f"heldout{small}", f"heldout_eye_labels{small}",
        "fitted_on_beard", "refitted_alone"}
    # refused before fitting
    for kw, why in (({"only": ("bear",)}, "unknown detector"), ({"only": ("beard",), "precision": 0.8}, "precision"),
                    ({"only": ("beard",), "out": tmp_path / "none.json"}, "does not exist")):
        calls.clear()
        with pytest.raises(SystemExit, match=why):
            D.fit(shared, cache, **{"out": out, **kw}, quiet=True)
        assert not calls
    from avatarizer_export.cli import build_parser

    args = build_parser().parse_args(["detectors", "--only", "beard", "--only", "moustache", "--only", "beard"])
    assert args.only == ["beard", "moustache", "beard"]
    with pytest.raises(SystemExit):
        build_parser().parse_args(["detectors", "--only", "hair_colour"])


def test_the_beards_thresholds_are_not_chosen_on_utkface_men(monkeypatch):
    """``detectors.chooses_thresholds``: UTKFace's photos and a mined
    batch's train the beard and moustache detectors but do not choose their
    thresholds; every photo chooses the others'."""
    from avatarizer_export import data
    from avatarizer_export import detectors as D

    monkeypatch.setattr(data, "sampled_keys", lambda: {"ffhq128/mined.jpg"})
    keys = ["ffhq128-labelled/1.png", "utkface200/40_0_1_x.jpg", "ffhq128/a.jpg", "utkface_old/70_0_0_y.jpg",
            "ffhq128/mined.jpg"]
    for task in D.TASKS:
        want = [True, False, True, False, False] if task in ("beard", "moustache") else [True] * 5
        assert D.chooses_thresholds(task, keys).tolist() == want, task
    assert D.chooses_thresholds("beard", []).shape == (0,)


def test_a_detector_without_labelled_training_photos_is_left_out(tmp_path, monkeypatch, capsys):
    """A task with no labelled training photo (here no facial hair's colour
    by eye) is not fitted: it is named ``not_reliable`` and the SDK keeps
    its hand-set rule, instead of the fit raising on nothing to fit."""
    from avatarizer.artist import accessories as A
    from avatarizer_export import data
    from avatarizer_export import detectors as D

    shared, cache, _, _ = _synthetic_detector_inputs(tmp_path, monkeypatch)
    monkeypatch.setattr(data, "beard_colour_labels", lambda folder=None: {})
    monkeypatch.setattr(D, "features", lambda *a, **kw: pytest.fail("measured cues the cache holds"))
    out = tmp_path / "artist_detectors.json"
    out.write_text(_sdk_detectors_text())
    capsys.readouterr()
    doc = D.fit(shared, cache, out=out, quiet=True, only=["beard_grey"])
    assert "beard_grey" not in doc["detectors"] and "beard_grey" in doc["not_reliable"]
    assert "beard_grey: no labelled training photo" in capsys.readouterr().err
    written = json.loads(out.read_text())
    assert written == json.loads(json.dumps(doc)) and set(written["detectors"]) == set(A.detectors()) - {"beard_grey"}


def test_splice_takes_every_entry_of_the_refitted_detectors():
    """``detectors.splice`` on a hand-made pair: the refitted detector's
    model, reports (at both sizes, its hand rule), precision target,
    reliability and (bald) bare-top band come from the new fit, removed
    where the new fit has none; the others' stay."""
    from avatarizer_export import detectors as D

    s = D._suffixes()[1]
    old = {"format": 1, "fitted_on": "old", "precision_target": 0.9, "seconds": 10.0,
           "detectors": {"beard": "B0", "bald": "L0", "glasses": "G0"},
           "heldout": {"beard": "hb0", "beard_hand_rule": "hr0", "bald": "hl0", "glasses": "hg0"},
           "heldout_eye_labels": {"beard": "eb0", "glasses": "eg0"}, f"heldout{s}": {"beard": "sb0"},
           f"heldout_eye_labels{s}": {"beard": "seb0", "bald": "sel0"},
           "precision_targets": {"beard": 0.8}, "bare_top_band": {"floor": 0.2}, "not_reliable": ["goatee"]}
    new = {"fitted_on": "new", "precision_target": 0.9, "seconds": 3.0, "detectors": {"bald": "L1"},
           "heldout": {"bald": "hl1"}, "heldout_eye_labels": {"beard": "eb1"}, f"heldout{s}": {},
           f"heldout_eye_labels{s}": {}, "not_reliable": ["beard"], "fitted_on_bald": "new bald"}
    got = D.splice(old, new, ("beard", "bald"))
    assert got["detectors"] == {"glasses": "G0", "bald": "L1"}
    assert got["heldout"] == {"bald": "hl1", "glasses": "hg0"}
    assert got["heldout_eye_labels"] == {"beard": "eb1", "glasses": "eg0"}
    assert got[f"heldout{s}"] == {} and got[f"heldout_eye_labels{s}"] == {}
    assert "precision_targets" not in got and "bare_top_band" not in got
    assert got["not_reliable"] == ["goatee", "beard"]
    assert got["fitted_on"] == "old" and got["fitted_on_beard"] == "new" and got["fitted_on_bald"] == "new bald"
    assert got["refitted_alone"] == {"beard": 3.0, "bald": 3.0} and got["seconds"] == 10.0
    assert old["detectors"] == {"beard": "B0", "bald": "L0", "glasses": "G0"}  # (a copy: the old one as it was)
    # and back: a detector reliable again leaves the list, the list empty leaves the file
    again = D.splice({**got, "not_reliable": ["beard"]}, {**new, "detectors": {"beard": "B2"}, "not_reliable": []},
                     ("beard",))
    assert again["detectors"]["beard"] == "B2" and "not_reliable" not in again
    with pytest.raises(ValueError, match="precision"):
        D.splice(old, {**new, "precision_target": 0.8}, ("beard",))


def _count_calls(real, calls: list):
    def f(x, y, k, *a, **kw):
        calls.append(k)
        return real(x, y, k, *a, **kw)
    return f


def test_a_threshold_judges_equal_probabilities_together():
    """``precision_threshold``: the lowest threshold whose precision reaches
    the target with 3 finds, as a brute force over the candidate values
    finds it, with and without ties (a threshold draws every row of its
    value: a run of equal probabilities holding a negative is judged with
    it, whatever the rows' order); one group is the same as none."""
    sys.path.insert(0, str(ROOT / "export"))
    from avatarizer_export.detectors import precision_threshold

    def brute(p, t, prec):
        for c in np.unique(p):
            m = p >= c
            if t[m].sum() >= 3 and t[m].sum() >= prec * m.sum():
                return float(c)
        return 1.0

    rng = np.random.default_rng(7)
    for i in range(300):
        n = int(rng.integers(10, 150))
        p = rng.random(n) if i % 2 else np.round(rng.random(n), 2)  # (every other one with ties)
        t = (rng.random(n) < p).astype(float)
        prec = float(rng.choice([0.6, 0.8, 0.9]))
        assert precision_threshold(p, t, prec) == brute(p, t, prec)
        assert precision_threshold(p, t, prec, groups=np.zeros(n)) == precision_threshold(p, t, prec)
    p, t = np.array([0.9, 0.9, 0.9, 0.5, 0.5]), np.array([1.0, 1, 1, 1, 0])
    assert precision_threshold(p, t, 0.9) == precision_threshold(p[::-1].copy(), t[::-1].copy(), 0.9) == 0.9


def test_exposure_gain_only_for_clearly_underexposed_frames():
    from avatarizer.align import EXPOSURE_DIM, exposure_gain
    from avatarizer.imageio import sample_photo

    photo = sample_photo()
    assert exposure_gain(photo) == 1.0
    assert exposure_gain(np.zeros((64, 64, 3), np.uint8)) == 1.0  # black: nothing to bring up
    gains = [exposure_gain((photo * k).astype(np.uint8)) for k in (0.5, 0.36, 0.3, 0.2, 0.1)]
    assert gains[0] == 1.0 and all(a <= b for a, b in zip(gains, gains[1:])) and 1.0 < gains[-1] <= 6.0
    # gradual at the threshold: just under it, the gain is near 1
    flat = np.full((32, 32, 3), int(EXPOSURE_DIM * 255) - 1, np.uint8)
    assert 1.0 < exposure_gain(flat) < 1.1


def test_auto_exposure_brightens_the_crops_of_a_dim_frame_only_when_on():
    from avatarizer.align import AlignOptions, FaceAligner
    from avatarizer.imageio import sample_photo

    with pytest.raises(ValueError, match="auto_exposure must be True or False"):
        AlignOptions(auto_exposure="yes").validate()
    dim = (sample_photo() * 0.15).astype(np.uint8)
    means = {}
    for on in (True, False):
        with FaceAligner(max_faces=1, segmentation=False, auto_exposure=on) as al:
            faces = al.detect(dim)
        assert faces
        means[on] = float(faces[0].crop(128).mean())
    assert means[True] > 3.0 * means[False]


def test_a_very_dim_frame_draws_the_hair_and_age_of_the_lit_one():
    """At 15% exposure (a dark room) the avatar was a black-haired child with
    sunglasses (review, session 15); the crops are now read as if lit."""
    from avatarizer import Avatarizer
    from avatarizer.artist.photo import to_lab
    from avatarizer.imageio import sample_photo

    photo = sample_photo()
    with Avatarizer() as av:
        lit, dim = av.from_frame(photo), av.from_frame((photo * 0.15).astype(np.uint8))
    assert lit is not None and dim is not None
    for key in ("hair_colour", "glasses"):
        assert dim.attributes[key]["value"] == lit.attributes[key]["value"], key
    assert abs(dim.attributes["age"]["value"] - lit.attributes["age"]["value"]) < 10
    hair = [np.array([a["hair_front." + c] for c in "rgb"], np.float64) for a in (lit, dim)]
    assert np.linalg.norm(to_lab(hair[0]) - to_lab(hair[1])) < 10


def test_a_turned_head_is_not_drawn_winking():
    """At 48-54 degrees of yaw MediaPipe read one eye's lids half-closed over a
    high iris (drawn as a drowsy wink, whichever way the head turned); the
    less open eye now takes the other's shape from FAR_EYE_TURN on."""
    from avatarizer import prior as P
    from avatarizer.align import FaceAligner
    from avatarizer.artist import AutoArtist
    from avatarizer.artist.geometry import FAR_EYE_TURN, even_eyes
    from avatarizer.imageio import load_image
    from conftest import need_shared

    def ratio(p, sd):
        up, lo = P.pts(p, f"eye_{sd}_upper"), P.pts(p, f"eye_{sd}_lower")
        return float(np.abs(up[1:-1, 1].mean() - lo[1:-1, 1].mean()) / np.linalg.norm(up[-1] - up[0]))

    art = AutoArtist()
    folder = need_shared("data", "faces", "ffhq128-labelled")
    with FaceAligner(max_faces=1) as al:
        for name in ("69053", "69412"):  # turned right, turned left
            f = al.detect(load_image(folder / f"{name}.jpg"))[0]
            assert abs(f.yaw) > 45
            p = art.fit(f)
            opening = sorted([ratio(p, "l"), ratio(p, "r")])
            assert opening[0] > 0.8 * opening[1], (name, opening)
    # a frontal face is left as measured
    p = S.default().copy()
    g = {"turn": 0.5 * FAR_EYE_TURN[0], "eye_l": {"opening": 0.01}, "eye_r": {"opening": 0.05}}
    before = p.copy()
    even_eyes(p, g)
    np.testing.assert_array_equal(p, before)


@pytest.mark.parametrize("hat", [False, True])
def test_without_a_hair_region_the_drawn_hair_colour_is_the_one_reported(monkeypatch, hat):
    """No hair region read (no person mask, a crop that ends at the
    hairline), with or without a hat drawn: the hair is drawn in the class
    ``avatar.attributes`` reports, H's reading weighed by its training
    frequencies and the age as with a region. White-haired 85- to
    92-year-olds reported grey were drawn dark brown (H's raw likeliest
    class, which its training frequencies favour); under a hat the raw
    class was reported."""
    import skimage.data

    from avatarizer import Avatarizer
    from avatarizer import hair as H

    real = H.decode_attributes

    def decode(*a, **kw):  # H reads an old person with hair most likely brown before the balancing
        out = real(*a, **kw)
        out["hair_colour_probs"] = {"black": 0.2, "brown": 0.4, "blond": 0.05, "red": 0.05, "gray": 0.3}
        out["age"] = 85.0
        return out

    monkeypatch.setattr(H, "decode_attributes", decode)
    monkeypatch.setattr(H, "hair_region_reading", lambda *a, **kw: None)
    monkeypatch.setattr("avatarizer.haircolour.load", lambda folder=None: None)  # (H's reading alone here)
    monkeypatch.setattr("avatarizer.haircolour.load_tight", lambda folder=None: None)
    if hat:  # no hair beside the face under it either
        monkeypatch.setattr(H, "headwear_colours", lambda *a, **kw: ((0.8, 0.1, 0.1), None))
    with Avatarizer(attributes={"headwear": True} if hat else None) as av:
        avatar = av.from_frame(skimage.data.astronaut())
    assert (avatar["headwear.type"] > 0) == hat
    assert avatar.attributes["hair_colour"]["value"] == "gray"
    drawn = avatar.params[[S.index(f"hair_front.{c}") for c in "rgb"]]
    assert H.hair_colour_class_of(drawn) == "gray"


def test_a_colour_cast_does_not_colour_the_hair():
    """Hair keeps a natural hue: a cool cast (blue light, a blue background
    in the hair region) is drawn near neutral at its lightness; natural
    colours (the palette, browns, red, blond, a warm black) are left as they
    are."""
    from avatarizer import hair as H
    from avatarizer import prior as P

    for name, rgb in P.HAIR_COLORS.items():
        np.testing.assert_allclose(H.natural_hair_colour(rgb), rgb, atol=1e-6, err_msg=name)
    warm = (0.30, 0.16, 0.08)  # a saturated auburn: natural
    np.testing.assert_allclose(H.natural_hair_colour(warm), warm, atol=1e-6)
    for cast in ((0.12, 0.10, 0.35), (0.30, 0.12, 0.40), (0.10, 0.30, 0.20)):  # navy, purple, green
        out = H.natural_hair_colour(cast)
        lab, before = to_lab(np.asarray(out, np.float64)), to_lab(np.asarray(cast, np.float64))
        assert np.hypot(lab[1], lab[2]) <= H.HAIR_COOL_CHROMA + 0.3
        assert abs(lab[0] - before[0]) < 1.0  # its lightness kept


def test_the_drawn_hair_has_a_natural_colour(monkeypatch):
    """Both estimators read the photo's hair colour through the natural hue
    before moving it into its class: a purple sample is drawn near neutral,
    and (the hybrid) in the class ``avatar.attributes`` reports."""
    import skimage.data

    from avatarizer import Avatarizer
    from avatarizer import hair as H

    real = H.hair_colour_of_class
    calls = []

    def purple(raw, px, crop_pixels, *, skin_lab=None, model=None, gray_ratio=None):
        calls.append(1)
        return real(np.array([0.30, 0.12, 0.40], np.float32), px, crop_pixels, skin_lab=skin_lab, model=model,
                    gray_ratio=gray_ratio)

    monkeypatch.setattr(H, "hair_colour_of_class", purple)
    for est in ("hybrid", "artist"):
        with Avatarizer(estimator=est) as av:
            avatar = av.from_frame(skimage.data.astronaut())
        rgb = np.asarray(avatar.params[[S.index(f"hair_front.{c}") for c in "rgb"]], np.float64)
        lab = to_lab(rgb)
        hue = np.degrees(np.arctan2(lab[2], lab[1]))
        assert np.hypot(lab[1], lab[2]) <= H.HAIR_COOL_CHROMA + 0.3 or \
            H.HAIR_HUE_RANGE[0] <= hue <= H.HAIR_HUE_RANGE[1], (est, lab)
        if est == "hybrid":
            assert H.hair_colour_class_of(rgb) == avatar.attributes["hair_colour"]["value"]
    assert len(calls) == 2


def test_a_cast_sample_is_drawn_in_the_class_it_is_read_as():
    """The cast is taken out before the class is read into the colour, so the
    drawn colour reads as the class reported (capping after the move turned
    black drawn hair brown and brown grey on some 1,000 of 6,000 casts)."""
    from avatarizer import hair as H

    rng = np.random.default_rng(0)
    gate = H.hair_colour_gate()
    checked = 0
    skin = to_lab(np.array([0.80, 0.62, 0.52]))  # the cheeks the classifier reads the hair against
    for _ in range(300):
        L, c, h = rng.uniform(5, 60), rng.uniform(7, 30), np.radians(rng.uniform(120, 340))
        cast = np.clip(from_lab(np.array([L, c * np.cos(h), c * np.sin(h)])), 0, 1)
        px = np.clip(cast + rng.normal(0, 0.02, (200, 3)), 0, 1).astype(np.float32)
        model = ({"black": 0.3, "brown": 0.3, "blond": 0.1, "red": 0.1, "gray": 0.2}, None)
        drawn, probs = H.hair_colour_of_class(cast, px, 10_000, skin_lab=skin, model=model)
        if probs is None or max(probs.values()) < gate:
            continue
        checked += 1
        assert H.hair_colour_class_of(drawn) == max(probs, key=probs.get), (cast, probs)
        lab = to_lab(np.asarray(drawn, np.float64))
        hue = np.degrees(np.arctan2(lab[2], lab[1]))
        assert np.hypot(lab[1], lab[2]) <= H.HAIR_COOL_CHROMA + 0.3 or H.HAIR_HUE_RANGE[0] <= hue <= H.HAIR_HUE_RANGE[1]
    assert checked > 100


@pytest.mark.skipif(not (SHARED / "data" / "faces" / "ffhq128").is_dir(), reason="needs ../shared/data/faces")
@pytest.mark.xdist_group("heldout_hybrid")
def test_held_out_bald_heads_are_drawn_bald_and_no_hair_is_taken_away(heldout_runs):
    """The held-out photos labelled by eye for the top of the head and for
    hair length (``data.bald_labels``): H drew none of the bald heads bald
    (its P(bald) stays under its drawing threshold); with the artist's bald
    detector what ships draws some of them (3 of 10, session 18) and at most
    one of every third held-out photo with hair bald (over all 439 of them,
    session 73: 3 drawn bald with H read once, 2 with H reading the crop and
    its mirror image, which draws one of the every-third ones bald)."""
    import sys

    sys.path.insert(0, str(ROOT / "export"))
    from avatarizer_export.data import bald_labels, is_heldout

    labels = {k: v["bald"] for k, v in bald_labels().items() if is_heldout(k)}
    bald = sorted(k for k, v in labels.items() if v)
    hair = sorted(k for k, v in labels.items() if not v)[::3]  # every third: a minute of photos
    assert len(bald) >= 8 and len(hair) >= 100

    def drawn_bald(key):
        a = heldout_runs.avatar(SHARED / "data" / "faces" / key)  # (Avatarizer().from_image, shared)
        return a is not None and a.attributes["bald"]["value"]

    found = [k for k in bald if drawn_bald(k)]
    invented = [k for k in hair if drawn_bald(k)]
    assert len(found) >= 2, found
    assert len(invented) <= 1, invented


@pytest.mark.skipif(not (SHARED / "data" / "faces" / "ffhq128").is_dir(), reason="needs ../shared/data/faces")
@pytest.mark.xdist_group("heldout_artist")
def test_the_artist_draws_held_out_bald_heads_bare_on_top(heldout_runs):
    """The held-out photos labelled bald by eye for hair length: below the
    bald detector's threshold the artist drew most of them a cap of hair
    (a skin-coloured buzz cut or short cut; 3 of 14 bald, session 23);
    with its bare-top band (``thresholds["bare_top"]``) it draws 8 bald
    (hair at the sides only), none of the 509 labelled short, long or tied.
    (Bounds with a margin: the band's floor is refitted with the detectors;
    at 0.3 it drew 9 and one white-haired man labelled short.)"""
    sys.path.insert(0, str(ROOT / "export"))
    from avatarizer_export.data import hair_length_labels, is_heldout

    from avatarizer import prior as P

    labels = {k: v for k, v in hair_length_labels().items() if is_heldout(k) and v in ("bald", "short", "tied", "long")}
    bald = sorted(k for k, v in labels.items() if v == "bald")
    hair = sorted(k for k, v in labels.items() if v != "bald")
    assert len(bald) >= 10 and len(hair) >= 400
    bank_id = S.index("hair_style.bank_id")

    def bare(key):
        a = heldout_runs.avatar(SHARED / "data" / "faces" / key, estimator="artist")  # (from_image, shared)
        return a is not None and P.HAIRSTYLES[int(round(float(a.params[bank_id])))] == "bald"

    found = [k for k in bald if bare(k)]
    invented = [k for k in hair if bare(k)]
    assert len(found) >= 7, found
    assert len(invented) <= 2, invented


@pytest.mark.skipif(not (SHARED / "data" / "faces" / "ffhq128").is_dir(), reason="needs ../shared/data/faces")
@pytest.mark.xdist_group("heldout_hybrid")
def test_held_out_hats_are_drawn_of_their_kind_where_they_sit(heldout_runs):
    """The held-out hats labelled by eye for their kind
    (``labels/headwear_kind_by_eye.jsonl``): every hat was drawn as a beanie
    perched on the skull (right for 6 of the 21 the pipeline draws, session
    19); with the kind model what ships draws the right kind for 15 of them,
    a brim on one hat without one (a visor), and the band where the hat's
    sits in the photo (on the forehead, below the old perch)."""
    sys.path.insert(0, str(ROOT / "export"))
    from avatarizer_export.data import is_heldout
    from avatarizer_export.hats import kind_labels

    from avatarizer import headwear as HW
    from avatarizer import prior as P

    labels = {k: HW.MODEL_KINDS[v] for k, v in kind_labels().items() if is_heldout(k)}
    assert len(labels) >= 40
    right = beanie = drawn = 0
    brims_invented, lower = [], 0
    for key, kind in sorted(labels.items()):
        a = heldout_runs.avatar(SHARED / "data" / "faces" / key)  # (Avatarizer().from_image, shared)
        if a is None or not a.attributes["headwear"]["value"]:
            continue
        p = np.array(a.params, np.float64)
        got = HW.KINDS[int(round(p[S.index("headwear.type")]))]
        assert a.attributes["headwear"]["kind"] == got
        if got == "brimmed" and kind != "brimmed":
            brims_invented.append(key)
        perched = p.copy()
        HW.place(perched, None, HW.KINDS.index(got))
        lower += P.hat_crown(p)[2] > P.hat_crown(perched)[2]
        if kind == "other":  # no right kind to draw (a scarf, a hood, a helmet)
            continue
        drawn += 1
        right += got == kind
        beanie += kind == "beanie"
    assert drawn >= 15
    assert right >= 0.6 * drawn and right >= beanie + 5, (right, beanie, drawn)
    assert len(brims_invented) <= 2, brims_invented
    assert lower >= 0.7 * drawn, (lower, drawn)


@pytest.mark.skipif(not (SHARED / "data" / "faces" / "ffhq128").is_dir(), reason="needs ../shared/data/faces")
@pytest.mark.xdist_group("heldout_artist")
def test_the_artist_alone_draws_held_out_hats_and_invents_none(heldout_runs):
    """The artist drew no hat at all (its detector over the hair region's six
    cues kept no precision: left out as not reliable). Over the hat's shape
    cues and a coarse picture of the mask and edges above the brows
    (``accessories.hat_vector``), fitted on the labels by eye of covered
    heads, it finds 15 of the 40 held-out hats labelled by eye and invents
    none among the 168 held-out uncovered heads (session 20, all of them;
    nor among 272 more held-out photos labelled for long, short or tied
    hair); here the hats and the first 120 uncovered heads."""
    sys.path.insert(0, str(ROOT / "export"))
    from avatarizer_export.data import headwear_labels, is_heldout

    labels = {k: v["headwear"] for k, v in headwear_labels().items() if is_heldout(k)}
    hats = sorted(k for k, v in labels.items() if v)
    bare = sorted(k for k, v in labels.items() if not v)[:120]
    assert len(hats) >= 30 and len(bare) == 120
    drawn = {}
    for key in hats + bare:
        a = heldout_runs.avatar(SHARED / "data" / "faces" / key, estimator="artist")  # (from_image, shared)
        if a is not None:
            drawn[key] = a.params[S.index("headwear.type")] > 0
    found = [k for k in hats if drawn.get(k)]
    invented = [k for k in bare if drawn.get(k)]
    assert len(found) >= 11, found
    assert not invented, invented
