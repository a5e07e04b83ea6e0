"""The age what ships reports and draws with: H's regression combined with
the artist's own estimate (avatarizer.hair.fuse_age): H reads children years
older than they are."""
from __future__ import annotations

import math

import numpy as np
import pytest

from avatarizer import Avatarizer, sample_photo
from avatarizer.hair import AGE_ARTIST_WEIGHT, AGE_RAMP, AGE_YOUNG_RAMP, AGE_YOUNG_WEIGHT, MASKED_AGE_BY, fuse_age


def test_an_adult_reading_is_the_geometric_mean_of_one_plus_years():
    h = AGE_YOUNG_RAMP[1] + 5.0
    a = fuse_age({"age": h}, 3.0)
    assert a["age"] == pytest.approx(math.sqrt((1.0 + h) * 4.0) - 1.0)  # between, nearer the child's
    assert a["age_model_read"] == h and a["age_by"] == "H x artist"
    assert fuse_age({"age": 40.0}, 40.0)["age"] == pytest.approx(40.0)


def test_a_young_reading_leans_on_the_artist():
    """H reads children years older than they are (a 10-year-old as 16-22): where H reads under
    AGE_YOUNG_RAMP the artist's estimate weighs AGE_YOUNG_WEIGHT, falling to AGE_ARTIST_WEIGHT across it."""
    y0, y1 = AGE_YOUNG_RAMP
    assert AGE_ARTIST_WEIGHT < AGE_YOUNG_WEIGHT < 1.0 and y1 <= AGE_RAMP[0]
    for h in (2.0, y0):
        want = math.expm1((1 - AGE_YOUNG_WEIGHT) * math.log1p(h) + AGE_YOUNG_WEIGHT * math.log1p(8.0))
        assert fuse_age({"age": h}, 8.0)["age"] == pytest.approx(want)
    w = 0.5 * (AGE_ARTIST_WEIGHT + AGE_YOUNG_WEIGHT)
    mid = 0.5 * (y0 + y1)
    assert fuse_age({"age": mid}, 8.0)["age"] == pytest.approx(math.expm1((1 - w) * math.log1p(mid) + w * math.log1p(8.0)))
    # no jump across the ramp (video refreshes): the age rises with H's reading
    ages = [fuse_age({"age": h}, 8.0)["age"] for h in np.linspace(y0 - 1, y1 + 1, 200)]
    assert np.all(np.diff(ages) > 0) and np.max(np.diff(ages)) < 0.5


def test_an_old_reading_is_h_s():
    """The artist regresses the old toward the middle: its weight falls to 0 over AGE_RAMP."""
    lo, hi = AGE_RAMP
    assert fuse_age({"age": hi}, 30.0)["age"] == pytest.approx(hi)
    assert fuse_age({"age": 80.0}, 30.0)["age"] == pytest.approx(80.0)
    assert fuse_age({"age": 150.0}, 250.0)["age"] == pytest.approx(100.0)  # (each clipped to 0-100 first)
    mid = fuse_age({"age": 0.5 * (lo + hi)}, 10.0)["age"]
    w = 0.5 * AGE_ARTIST_WEIGHT
    assert mid == pytest.approx(math.expm1((1 - w) * math.log1p(0.5 * (lo + hi)) + w * math.log1p(10.0)))
    # no jump across the ramp (video refreshes)
    ages = [fuse_age({"age": h}, 10.0)["age"] for h in np.linspace(lo - 1, hi + 1, 200)]
    assert np.all(np.diff(ages) > 0) and np.max(np.diff(ages)) < 0.5


@pytest.mark.parametrize("h, art", [(None, 30.0), (30.0, None), (float("nan"), 30.0), (30.0, float("inf")),
                                    (30.0, "thirty")])
def test_without_a_finite_pair_h_stands(h, art):
    a = fuse_age({"age": h}, art)
    assert "age_by" not in a and "age_model_read" not in a
    assert a["age"] is h


@pytest.fixture(scope="module")
def face():
    with Avatarizer() as av:
        if av.estimator == "artist":
            pytest.skip("the shipped models are not installed here")
        return av.run(sample_photo()).faces[0]


def test_what_ships_reports_the_combined_age(face):
    a = face.attributes
    assert a["age_by"] == "H x artist"
    h, art = a["age_model_read"], face.glasses_cues["age"]
    assert np.isfinite(art) and a["age"] == pytest.approx(fuse_age({"age": h}, art)["age"])
    assert min(h, art) - 1e-9 <= a["age"] <= max(h, art) + 1e-9


def test_an_age_the_app_sets_wins():
    with Avatarizer() as av:
        if av.estimator == "artist":
            pytest.skip("the shipped models are not installed here")
        got = av.from_frame(sample_photo(), attributes={"age": 71})
    assert got.attributes["age"]["value"] == 71.0


def test_no_child_head_by_an_age_read_under_a_face_mask(monkeypatch):
    """Masked adults read young (H and the artist alike): merge draws no child's head by that age, but
    does by an age the app set."""
    from types import SimpleNamespace

    from avatarizer import schema as S
    from avatarizer.pipeline import merge

    calls = []
    monkeypatch.setattr(merge, "child_head", lambda params, age: calls.append(age) or params)
    p = S.default()
    parts = dict(face_params=p[S.FACE], hair_params=p[S.HAIR], accessory_params=p[S.ACCESSORIES])
    merge.merge_face(SimpleNamespace(**parts, attributes={"age": 3.0, "age_by": "H x artist"}))
    assert calls == [3.0]
    merge.merge_face(SimpleNamespace(**parts, attributes={"age": 4.0, "age_by": MASKED_AGE_BY}))
    assert calls == [3.0]
    merge.merge_face(SimpleNamespace(**parts, attributes={"age": 5.0, "age_by": MASKED_AGE_BY,
                                                          "set_by_app": ["age"]}))
    assert calls == [3.0, 5.0]
    merge.merge_face(SimpleNamespace(**parts, attributes={"age": 6.0}), child=False)
    assert calls == [3.0, 5.0]
