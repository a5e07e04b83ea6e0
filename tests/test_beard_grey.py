"""The hybrid's grey-beard fusion (avatarizer.beardgrey): its file's checks,
its probability, its use by the hair stage (a grey-haired man's stubble
drawn grey where the detector alone drew it brown), and its fit
(avatarizer-export beard-grey-fusion) on rows given to it."""
from __future__ import annotations

import json
import math
import os
import warnings

import numpy as np
import pytest

os.environ.setdefault("GLOG_minloglevel", "2")

from avatarizer import beardgrey as BG  # noqa: E402
from conftest import need_shared  # noqa: E402

GOOD = {"format": 1, "w": [0.9, 0.25], "c": -0.4, "threshold": 0.34, "attributes_sha256": "h",
        "detector": "d", "hair_colour_sha256": "n"}


def test_fusion_file_is_checked():
    f = BG.BeardGreyFusion(dict(GOOD))
    assert f.w == (0.9, 0.25) and f.c == -0.4 and f.threshold == 0.34
    bad = [{"format": 2}, {"format": True}, {"w": [1.0]}, {"w": "ab"}, {"w": [1.0, "x"]}, {"w": [1.0, True]},
           {"c": float("nan")}, {"w": [float("inf"), 0.0]}, {"w": [2e3, 0.0]}, {"threshold": 0.0},
           {"threshold": 1.0}, {"threshold": None}, {"w": [10 ** 400, 0.0]}, {"threshold": 10 ** 400},
           {"c": -10 ** 400}]  # (whole numbers too large for a float: OverflowError crashed Avatarizer())
    for change in bad:
        with pytest.raises(ValueError):
            BG.BeardGreyFusion({**GOOD, **change})
    for key in ("w", "c", "threshold", "attributes_sha256", "detector", "hair_colour_sha256"):
        with pytest.raises(ValueError, match="not a beard grey fusion file"):
            BG.BeardGreyFusion({k: v for k, v in GOOD.items() if k != key})


def test_fusion_loads_only_with_the_files_it_was_fitted_with(tmp_path):
    shas = ("h", "d", "n")
    assert BG.BeardGreyFusion.load(*shas, folder=tmp_path) is None  # no file
    path = tmp_path / BG.NAME
    path.write_text(json.dumps(GOOD))
    assert isinstance(BG.BeardGreyFusion.load(*shas, folder=tmp_path), BG.BeardGreyFusion)
    for other in (("x", "d", "n"), ("h", "x", "n"), ("h", "d", "x"), (None, "d", "n"), ("h", None, "n"),
                  ("h", "d", None)):
        assert BG.BeardGreyFusion.load(*other, folder=tmp_path) is None, other
    # the tight crops' hair-colour network too, where the file names it (most rows are tight crops: a refit of
    # that network alone left the fusion in use on other readings; a review, session 75); an older file without
    # the key is not checked for it
    path.write_text(json.dumps({**GOOD, "hair_colour_tight_sha256": "t"}))
    assert isinstance(BG.BeardGreyFusion.load(*shas, folder=tmp_path, hair_colour_tight_sha256="t"), BG.BeardGreyFusion)
    for tight in ("x", None):
        assert BG.BeardGreyFusion.load(*shas, folder=tmp_path, hair_colour_tight_sha256=tight) is None, tight
    path.write_text(json.dumps({**GOOD, "hair_colour_tight_sha256": None}))  # fitted without a tight network
    assert BG.BeardGreyFusion.load(*shas, folder=tmp_path) is not None
    assert BG.BeardGreyFusion.load(*shas, folder=tmp_path, hair_colour_tight_sha256="t") is None
    path.write_text(json.dumps(GOOD))
    assert BG.BeardGreyFusion.load(*shas, folder=tmp_path, hair_colour_tight_sha256="anything") is not None
    path.write_text(json.dumps({**GOOD, "hair_colour_tight_sha256": 3}))
    with pytest.warns(RuntimeWarning, match="detector alone"):
        assert BG.BeardGreyFusion.load(*shas, folder=tmp_path, hair_colour_tight_sha256="t") is None
    for text in ("{", "[1, 2]", json.dumps({**GOOD, "threshold": 2}), "[" * 100_000, json.dumps({**GOOD, "c": 10 ** 400}),
                 json.dumps({**GOOD, "pad": "x" * BG.MAX_BYTES})):
        path.write_text(text)
        with pytest.warns(RuntimeWarning, match="detector alone"):
            assert BG.BeardGreyFusion.load(*shas, folder=tmp_path) is None


def test_probability_and_decision():
    f = BG.BeardGreyFusion(dict(GOOD))
    z = 0.9 * math.log(0.5 / 0.5) + 0.25 * math.log(0.99 / 0.01) - 0.4
    assert f.probability(0.5, 0.99) == pytest.approx(1 / (1 + math.exp(-z)))
    # more grey in either reading, more likely grey
    ps = [f.probability(d, h) for d in (0.1, 0.3, 0.6) for h in (0.01, 0.5, 0.999)]
    assert all(a < b for a, b in zip(ps[:3], ps[3:6])) and all(a < b for a, b in zip(ps[3:6], ps[6:]))
    assert ps[0] < ps[1] < ps[2]
    assert f.grey(0.5, 0.999) and not f.grey(0.1, 0.01)
    for bad in ((float("nan"), 0.5), (0.5, float("inf"))):
        assert math.isnan(f.probability(*bad)) and not f.grey(*bad)
    assert 0.0 < f.probability(0.0, 0.0) < f.probability(1.0, 1.0) < 1.0  # (logits of clipped probabilities)


def test_detector_decision_can_be_replaced(monkeypatch):
    """``facial_hair_colour(decide=...)``: the function decides grey where the
    detector reads the pixels (it is given the detector's probability), in
    place of the detector's own threshold."""
    from avatarizer.artist import accessories as A
    from test_hair import _mouth_face

    size = 128
    skin = np.array([0.8, 0.6, 0.5])
    crop, lm, g = _mouth_face(skin, size)
    chin = (np.abs(g[None, :]) < 0.3) & (g[:, None] > 0.45)
    v = np.random.default_rng(0).uniform(0.5, 0.97, (size, size))
    crop[chin] = np.stack([v, v * 0.99, v * 0.98], -1)[chin]  # pale strands of low chroma on the chin
    u8 = (crop * 255).astype(np.uint8)
    monkeypatch.setattr(A, "beard_grey_evidence", lambda c: (0.4, 0.5))  # under the detector's threshold
    assert A.facial_hair_colour(u8, lm, skin)[1:] == (False, 0.4)
    seen = []
    for want in (True, False):
        _, got, p = A.facial_hair_colour(u8, lm, skin, decide=lambda q, w=want: seen.append(q) or w)
        assert got is want and p == 0.4
    assert seen == [0.4, 0.4]


def test_facial_hair_drawn_grey_is_light_and_dark_facial_hair_is_not_pale(monkeypatch):
    """Facial hair the detector calls grey whose lit strands are darker than
    ``BEARD_GREY_MIN_L`` is drawn and reported dark (a black goatee called
    grey was drawn dark and reported grey), and dark facial hair of little
    chroma is drawn at most ``BEARD_DARK_MAX_L`` light (stubble's pixels,
    partly skin, drew a brown beard a pale mauve, grey to the eye); a
    ginger beard keeps its light (a read-only review, session 70)."""
    from avatarizer.artist import accessories as A
    from avatarizer.artist.photo import to_lab
    from test_hair import _mouth_face

    size = 128
    skin = np.array([0.8, 0.6, 0.5])
    crop, lm, g = _mouth_face(skin, size)
    chin = (np.abs(g[None, :]) < 0.3) & (g[:, None] > 0.45)
    rng = np.random.default_rng(0)
    monkeypatch.setattr(A, "beard_grey_evidence", lambda c: (0.9, 0.5))  # called grey
    for lo, hi, grey in ((0.05, 0.2, False), (0.6, 0.95, True)):  # black strands, then white ones
        v = rng.uniform(lo, hi, (size, size))
        crop[chin] = np.stack([v, v * 0.99, v * 0.98], -1)[chin]
        rgb, got, _ = A.facial_hair_colour((crop * 255).astype(np.uint8), lm, skin)
        assert got is grey and bool(to_lab(rgb.astype(np.float64))[0] >= A.BEARD_GREY_MIN_L) is grey, (lo, rgb)
    monkeypatch.setattr(A, "beard_grey_evidence", lambda c: (0.1, 0.5))  # dark
    for base, capped in (((0.55, 0.5, 0.5), True), ((0.85, 0.45, 0.2), False)):  # a pale mauve; ginger
        crop[chin] = np.clip(np.asarray(base) + rng.normal(0, 0.01, (size, size, 1)), 0, 1)[chin]
        rgb, got, _ = A.facial_hair_colour((crop * 255).astype(np.uint8), lm, skin)
        light = to_lab(rgb.astype(np.float64))[0]
        assert got is False and bool(light <= A.BEARD_DARK_MAX_L + 0.5) is capped, (base, light)


@pytest.fixture(scope="module")
def hybrid():
    from avatarizer import Avatarizer

    with Avatarizer() as az:
        if az.estimator != "hybrid":
            pytest.skip(f"the hybrid does not run here ({az.estimator_reason})")
        yield az


def test_the_shipped_fusion_is_the_one_the_hybrid_reads(hybrid):
    """The data folder's file names the H, detector and hair-colour network
    that ship (else the SDK would drop it and the detector decide alone)."""
    stage = next(s for s in hybrid._pipeline.stages if s.name == "hair")
    assert isinstance(stage.beard_grey, BG.BeardGreyFusion)
    doc = json.loads((BG.DATA / BG.NAME).read_text())
    assert stage.hair_colour_tight is not None and doc["hair_colour_tight_sha256"] == stage.hair_colour_tight.sha256
    assert doc["report"]["held out"]["fusion"]["balanced_accuracy"] > \
        doc["report"]["held out"]["detector alone"]["balanced_accuracy"]


def test_a_grey_haired_mans_stubble_is_drawn_grey(hybrid, monkeypatch):
    """ffhq128-labelled/69494 (held out): grey hair, grey stubble (labelled
    by eye). The detector alone reads the stubble at 0.51, under its
    threshold (the skin between the strands): drawn brown; with the hair's
    colour, grey, and the public attributes say why."""
    from avatarizer.imageio import load_image

    img = load_image(need_shared("data", "faces", "ffhq128-labelled", "69494.jpg"))
    a = hybrid.run(img).faces[0].attributes
    assert a["drawn"]["beard"] and a["beard_grey"] is True and a["beard_grey_by"] == BG.BY
    assert a["beard_grey_detector_read"] < 0.575 <= a["beard_grey_probability"]  # (the detector's threshold)
    public = hybrid.from_frame(img).attributes["beard"]
    assert public["colour"] == "grey" and public["colour_decided_by"] == BG.BY
    # the plausibility gate draws it dark: the fusion is not named as what decided (a review)
    from avatarizer import hair as HR

    with monkeypatch.context() as m:
        m.setattr(HR, "grey_beard_plausible", lambda a, p=None: False)
        a = hybrid.run(img).faces[0].attributes
        assert a["beard_grey"] is False and "beard_grey_by" not in a
        assert "colour_decided_by" not in hybrid.from_frame(img).attributes["beard"]
    stage = next(s for s in hybrid._pipeline.stages if s.name == "hair")
    monkeypatch.setattr(stage, "beard_grey", None)  # the detector alone, as before the fusion
    a = hybrid.run(img).faces[0].attributes
    assert a["beard_grey"] is False and "beard_grey_by" not in a and "beard_grey_probability" not in a
    assert "colour_decided_by" not in hybrid.from_frame(img).attributes["beard"]


def test_fit_writes_a_file_the_sdk_reads(tmp_path):
    """The toolchain's fit on rows given to it: the logistic model, the
    threshold chosen out of fold, the report, and a file that loads with
    the checksums the rows name (and with no others)."""
    from avatarizer_export import beardgrey as fit_module

    rng = np.random.default_rng(0)
    n = 400
    y = rng.random(n) < 0.4
    p_det = np.clip(np.where(y, rng.beta(4, 3, n), rng.beta(2, 5, n)), 0.001, 0.999)
    p_hair = np.clip(np.where(y, rng.beta(5, 1, n), rng.beta(1, 4, n)), 0.001, 0.999)
    held = rng.random(n) < 0.2
    rows = {"keys": np.array([f"x/{i}.jpg" for i in range(n)]), "y": y, "held": held, "tight": rng.random(n) < 0.5,
            "p_detector": p_det, "p_hair": p_hair, "attributes_sha256": "h", "detector": "d",
            "hair_colour_sha256": "n", "hair_colour_tight_sha256": "t"}
    doc = fit_module.fit(None, data=tmp_path, quiet=True, rows=rows)
    assert doc["hair_colour_tight_sha256"] == "t"
    assert BG.BeardGreyFusion.load("h", "d", "n", folder=tmp_path, hair_colour_tight_sha256="t2") is None
    f = BG.BeardGreyFusion.load("h", "d", "n", folder=tmp_path, hair_colour_tight_sha256="t")
    assert f is not None and f.threshold == doc["threshold"] and doc["threshold"] in fit_module.THRESHOLDS
    assert f.w[0] > 0 and f.w[1] > 0  # both readings say grey
    rep = doc["report"]
    assert rep["out of fold (training photos)"]["fusion"]["n"] == int((~held).sum())
    assert rep["held out"]["fusion"]["n"] == int(held.sum())
    assert rep["held out"]["fusion"]["balanced_accuracy"] > 0.75  # (the two readings separate the classes)
    assert BG.BeardGreyFusion.load("h", "d", "other", folder=tmp_path) is None
    again = tmp_path / "again"
    again.mkdir()
    assert fit_module.fit(None, data=again, quiet=True, rows=rows) == doc  # deterministic
    few = {**rows, "y": np.zeros(n, bool)}
    with pytest.raises(SystemExit, match="too few"):
        fit_module.fit(None, data=tmp_path, quiet=True, rows=few)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert BG.BeardGreyFusion.load("h", "d", "n", folder=tmp_path,
                                       hair_colour_tight_sha256="t") is not None  # (the failed fit left it)
