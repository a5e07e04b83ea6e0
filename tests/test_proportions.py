"""A child's head drawn taller above the brows (avatarizer.proportions)."""
import numpy as np
import pytest

from avatarizer import schema as S
from avatarizer.headwear import MIN_CROWN
from avatarizer.prior import crown_lift
from avatarizer.proportions import (CRANIUM_BY_AGE, FRAME_TOP, STRETCHED, child_face, child_head, child_weight,
                                    cranium_scale)

TOP, CHIN = S.index("face.y7"), S.index("face.y0")
LIDS = [S.index(n) for n in S.NAMES if n.split(".")[0] in ("eye_l_upper", "eye_r_upper") and S.KINDS[S.index(n)] == "y"]
BROWS = [S.index(n) for n in S.NAMES if n.split(".")[0] in ("brow_l", "brow_r") and S.KINDS[S.index(n)] == "y"]


YS = np.array([S.index(n) for n in S.NAMES if n.split(".")[0] in STRETCHED and S.KINDS[S.index(n)] == "y"])


def _eye(p):
    return float(np.mean(p[LIDS]))


def _small_head(f):
    """The default avatar with its head above the brows ``f`` as tall (room
    under the picture's top edge for a child's taller head)."""
    p = S.default().copy()
    brow = float(p[BROWS].min())
    p[YS] = np.where(p[YS] < brow, brow - f * (brow - p[YS]), p[YS])
    return S.clip(p)


def test_cranium_scale_by_age():
    assert cranium_scale(0.5) == pytest.approx(CRANIUM_BY_AGE[0][1])
    assert cranium_scale(-4.0) == pytest.approx(CRANIUM_BY_AGE[0][1])  # H reads some babies below 0
    assert cranium_scale(18) == 1.0 and cranium_scale(45.0) == 1.0
    ages = np.linspace(0, 20, 81)
    s = [cranium_scale(a) for a in ages]
    assert all(a >= b for a, b in zip(s, s[1:])) and s[0] > 1.14
    for bad in (None, float("nan"), float("inf"), "five", [1, 2]):
        assert cranium_scale(bad) == 1.0


def test_an_adult_head_is_not_changed():
    p = S.sample(1, seed=3)[0]
    for age in (18.0, 40.0, None, float("nan")):
        np.testing.assert_array_equal(child_head(p, age), S.clip(p))


def test_a_child_head_is_taller_above_the_brows_only():
    p = _small_head(0.7)
    q = child_head(p, 1.0)
    S.validate(q)
    eye, brow = _eye(p), float(p[BROWS].min())
    # the skull top lies cranium_scale times as far above the eye line
    assert (eye - q[TOP]) / (eye - p[TOP]) == pytest.approx(cranium_scale(1.0), rel=1e-4)
    # what is not a height above the brows of the stretched features does not move
    above = YS[p[YS] < brow]
    moved = np.flatnonzero(q != S.clip(p))
    assert set(moved) <= set(above) and len(above) > 10
    assert np.all(q[above] < p[above])  # all of them rise
    assert q[CHIN] == p[CHIN] and _eye(q) == pytest.approx(eye)
    # the hair is stretched with the skull: it still reaches as far over it, scaled alike
    k = (brow - q[TOP]) / (brow - p[TOP])
    hair_top = min(S.points(p, "hair_back")[:, 1].min(), S.points(p, "hair_front")[:, 1].min())
    new_top = min(S.points(q, "hair_back")[:, 1].min(), S.points(q, "hair_front")[:, 1].min())
    assert brow - new_top == pytest.approx(k * (brow - hair_top), rel=1e-4)
    # younger, taller
    tops = [child_head(p, a)[TOP] for a in (1, 5, 9, 14, 30)]
    assert all(a < b for a, b in zip(tops, tops[1:-1])) and tops[-1] == p[TOP]


def _hat_top(v, kind):
    return v[TOP] - 0.06 - v[S.index("headwear.crown")] * crown_lift(kind)  # (avz.c's ytop)


def test_a_childs_hat_stays_where_it_was_placed():
    from avatarizer.prior import hat_crown

    p = _small_head(0.7)
    p[S.index("headwear.type")] = 3  # a brimmed hat
    band, crown = S.index("headwear.band_y"), S.index("headwear.crown")
    p[band], p[crown] = -0.45, 0.5
    q = child_head(p, 2.0)
    assert q[TOP] < p[TOP]  # the skull under it is taller
    assert q[band] == p[band] and _hat_top(q, 3) == pytest.approx(_hat_top(p, 3), abs=1e-6)
    assert q[crown] < p[crown] and q[S.index("headwear.type")] == 3
    # no hair rises over the crown (tucked under it again)
    cx, half, b, ytop = hat_crown(q)
    for name in ("hair_back", "hair_front", "hair_strand0", "hair_strand1"):
        assert S.points(q, name)[:, 1].min() >= ytop - 1e-6, name


def test_a_low_hat_rises_as_far_as_the_skull_needs():
    p = _small_head(0.7)
    p[S.index("headwear.type")] = 1  # a cap on the skull: the lowest crown
    p[S.index("headwear.crown")] = MIN_CROWN
    q = child_head(p, 1.0)
    assert q[S.index("headwear.crown")] == pytest.approx(MIN_CROWN)
    assert p[TOP] - _hat_top(p, 1) == pytest.approx(q[TOP] - _hat_top(q, 1), abs=1e-6)  # over the skull as before
    assert _hat_top(q, 1) < _hat_top(p, 1)


def test_a_hats_lowest_top_stops_the_stretch_at_the_edge():
    from avatarizer.prior import hair_under_the_hat

    p = _small_head(0.7)
    p[S.index("headwear.type")] = 1
    p[S.index("headwear.crown")] = MIN_CROWN
    p[TOP] = -0.85  # a skull high enough that the whole stretch would take the hat past the edge
    hair_under_the_hat(p)  # (as the hat was placed) the hat's lowest top, not the hair, is the highest point
    lowest_top = lambda v: v[TOP] - 0.06 - MIN_CROWN * crown_lift(1)  # noqa: E731
    assert lowest_top(p) < p[YS].min()
    q = child_head(p, 1.0)
    assert lowest_top(q) == pytest.approx(FRAME_TOP, abs=1e-5)  # stopped there
    assert (_eye(q) - q[TOP]) / (_eye(p) - p[TOP]) < cranium_scale(1.0)
    high = p.copy()
    high[TOP] = S.LO[TOP]  # its hat's lowest top already above the edge: nothing moves
    assert lowest_top(high) < FRAME_TOP
    np.testing.assert_array_equal(child_head(high, 1.0), S.clip(high))


def test_child_head_takes_any_input():
    p = _small_head(0.7)
    for bad in (np.nan, np.inf, 7.0):
        r = p.copy()
        r[S.index("headwear.type")] = bad
        S.validate(child_head(r, 1.0))
    r = p.copy()
    r[YS[0]] = np.nan  # one stretched height not a number: the frame stop still holds
    q = child_head(r, 1.0)
    S.validate(q)
    assert q[YS].min() >= FRAME_TOP - 1e-6
    assert cranium_scale(True) == 1.0 and cranium_scale(np.bool_(True)) == 1.0


def test_a_child_head_stops_at_the_pictures_top_edge():
    p = _small_head(0.9)
    q = child_head(p, 1.0)
    assert q[TOP] < p[TOP] and q[YS].min() == pytest.approx(FRAME_TOP, abs=1e-6)  # stopped there
    assert (_eye(q) - q[TOP]) / (_eye(p) - p[TOP]) < cranium_scale(1.0)
    high = S.default().copy()  # its hair already reaches -1: nothing may rise
    assert high[YS].min() < FRAME_TOP
    np.testing.assert_array_equal(child_head(high, 1.0), S.clip(high))


def test_a_skull_not_above_the_brows_is_left_alone():
    p = S.default().copy()
    p[BROWS] = p[TOP] + 0.01  # (brows all but on the skull top: nothing to stretch)
    np.testing.assert_array_equal(child_head(p, 1.0), S.clip(p))


def test_merge_draws_a_childs_head_from_the_age():
    from avatarizer.hair import age_lines
    from avatarizer.pipeline.merge import merge_face

    p = S.sample(1, seed=5)[0]

    class F:
        face_params, hair_params, accessory_params = p[S.FACE], p[S.HAIR], p[S.ACCESSORIES]
        attributes = {"age": 2.0}

    child = merge_face(F)
    F.attributes = {"age": 40.0}
    adult = merge_face(F)
    assert child[TOP] < adult[TOP]
    np.testing.assert_array_equal(child, child_face(child_head(age_lines(S.clip(p), 2.0), 2.0), 2.0))
    np.testing.assert_array_equal(adult, age_lines(S.clip(p), 40.0))
    F.attributes = {"age": 2.0}
    np.testing.assert_array_equal(merge_face(F, child=False), age_lines(S.clip(p), 2.0))  # Options.child_head


def test_the_artist_alone_draws_by_its_own_age():
    """``estimator="artist"`` has no regressor: merge draws the age lines
    and a child's head by the artist's own age (``Face.artist_age``); an
    age in the attributes (the regressor's, or the app's) wins; none where
    the artist gave none (a face mask)."""
    from avatarizer.hair import age_lines
    from avatarizer.pipeline.merge import face_age, merge_face

    p = S.sample(1, seed=5)[0]

    class F:
        face_params, hair_params, accessory_params = p[S.FACE], p[S.HAIR], p[S.ACCESSORIES]
        attributes, artist_age = None, 3.0

    np.testing.assert_array_equal(merge_face(F), child_face(child_head(age_lines(S.clip(p), 3.0), 3.0), 3.0))
    assert merge_face(F)[TOP] < S.clip(p)[TOP]
    np.testing.assert_array_equal(merge_face(F, child=False), age_lines(S.clip(p), 3.0))
    F.artist_age = 70.0
    assert face_age(F) == 70.0
    np.testing.assert_array_equal(merge_face(F), age_lines(S.clip(p), 70.0))
    F.attributes = {"age": 40.0}  # (a regressor ran: its age, not the artist's)
    assert face_age(F) == 40.0
    np.testing.assert_array_equal(merge_face(F), age_lines(S.clip(p), 40.0))
    F.attributes, F.artist_age = None, None
    assert face_age(F) is None
    np.testing.assert_array_equal(merge_face(F), S.clip(p))


def test_fit_with_age_is_fit_and_says_no_age_under_a_face_mask(monkeypatch):
    from avatarizer.align import FaceAligner
    from avatarizer.artist import AutoArtist
    from avatarizer.artist import accessories as A
    from avatarizer.imageio import sample_photo

    with FaceAligner() as al:
        face = al.align(sample_photo())
    artist = AutoArtist()
    params, age = artist.fit_with_age(face)
    np.testing.assert_array_equal(params, artist.fit(face))
    assert age == A.age_estimate(face.canonical, face.crop(int(artist.style.crop_size))) and 15 < age < 70
    real = artist._fit

    def masked(*a, **kw):
        p, g = real(*a, **kw)
        return p, {**g, "cheeks_covered": True}

    monkeypatch.setattr(artist, "_fit", masked)
    assert artist.fit_with_age(face)[1] is None


@pytest.mark.parametrize("mode", [pytest.param("image", marks=pytest.mark.xdist_group("heldout_artist")), "video"])
def test_the_artist_alone_draws_held_out_children_taller(mode, heldout_runs):
    """Held-out UTKFace photos through ``Avatarizer(estimator="artist")``
    (both modes: video carries the artist's age with the identity): most
    children under 10 get a taller head (more than 3%: 70 of 79 in session
    37, the hybrid 63 of 79), few adults of 20 and over (1 of 250, the
    hybrid's 1 of 250)."""
    import os
    import sys

    from conftest import ROOT, need_shared

    from avatarizer import Avatarizer, load_image

    folder = need_shared("data", "faces", "utkface200")
    sys.path.insert(0, str(ROOT / "export"))
    from avatarizer_export.data import is_heldout

    names = sorted(n for n in os.listdir(folder) if n.endswith(".jpg") and is_heldout(f"utkface200/{n}"))
    rng = np.random.default_rng(37)
    kids = list(rng.permutation([n for n in names if int(n.split("_")[0]) < 10]))[:24]
    adults = list(rng.permutation([n for n in names if int(n.split("_")[0]) >= 20]))[:48]
    assert len(kids) == 24 and len(adults) == 48

    def read(n):
        """(the artist's age, how much higher the skull top is drawn than at adult proportions)"""
        if mode == "image":  # (Avatarizer(...).run(...).faces[0] and .from_image, shared with the other tests)
            r = heldout_runs.run(folder / n, estimator="artist")
            b = heldout_runs.avatar(folder / n, estimator="artist", child_head=False)
            if b is None or r is None:
                return None
            return r.artist_age, float(b.params[TOP] - r.params[TOP])
        img = load_image(folder / n)
        with Avatarizer(estimator="artist", mode=mode) as av:
            r = av.run(img, timestamp_ms=0.0)
            # video: a later frame reuses the identity's answer: the age comes with it, and its merge draws by it
            r2 = av.run(img, timestamp_ms=40.0)
        with Avatarizer(estimator="artist", child_head=False) as flat:
            b = flat.from_frame(img)
        if b is None or not r.faces or not r2.faces:
            return None
        assert r2.faces[0].artist_age == r.faces[0].artist_age
        return r.faces[0].artist_age, float(b.params[TOP] - r2.faces[0].params[TOP])

    kid = [x for x in map(read, kids) if x is not None and x[0] is not None]
    assert len(kid) >= 20
    taller = [cranium_scale(age) > 1.03 for age, _ in kid]
    assert np.mean(taller) >= 0.7, kid
    assert all(lift > 0 for (_, lift), t in zip(kid, taller) if t), kid  # drawn so
    if mode == "image":
        grown = [x for x in map(read, adults) if x is not None and x[0] is not None]
        assert len(grown) >= 40
        assert sum(cranium_scale(age) > 1.03 for age, _ in grown) <= 2, grown


def test_child_weight_by_age():
    assert child_weight(0.5) == child_weight(2.0) == 1.0 and child_weight(7.0) == pytest.approx(0.5)
    assert child_weight(12.0) == child_weight(40.0) == 0.0
    for bad in (None, True, float("nan"), float("inf"), "3"):
        assert child_weight(bad) == 0.0


def test_a_young_childs_face_has_a_childs_features():
    """Every child was drawn with an adult's eyes, nose, lined lids,
    cheek folds and a long neck under the taller skull (a review's contact
    sheet, 24 of 24): at 1 year the eyes are larger about the iris centre,
    the nose smaller about its base, the lips nearer the skin's colour, the
    lids and brows thinner, the folds gone and the neck shorter; the places
    the landmarks gave stay; from 12 years nothing changes."""
    from avatarizer import proportions as P

    p = S.sample(1, seed=7)[0].copy()
    for f in P.CHILD_NO_LINES:
        p[S.index(f"{f}.w1")] = 0.004
    p = S.clip(p)
    q = child_face(p, 1.0)
    assert q.dtype == np.float32 and np.array_equal(S.clip(q), q)
    for side in "lr":
        r = S.index(f"iris_{side}.radius")
        assert q[r] == pytest.approx(min(p[r] * (1 + P.CHILD_EYES), S.HI[r]), rel=1e-5)
        cx, cy = S.index(f"iris_{side}.cx"), S.index(f"iris_{side}.cy")
        assert (q[cx], q[cy]) == (p[cx], p[cy])
        x0 = S.index(f"eye_{side}_upper.x0")
        assert abs(q[x0] - q[cx]) > abs(p[x0] - p[cx])  # (the lid's corner further from the iris centre)
    nb = [S.index(f"nose_base.x{i}") for i in (0, 4)]
    assert abs(q[nb[1]] - q[nb[0]]) == pytest.approx((1 - P.CHILD_NOSE) * abs(p[nb[1]] - p[nb[0]]), rel=1e-4)
    lip, skin = [S.index(f"lip_upper_outer.{c}") for c in "rgb"], [S.index(f"face.{c}") for c in "rgb"]
    assert np.abs(q[lip] - q[skin]).sum() < np.abs(p[lip] - p[skin]).sum()
    assert all(q[S.index(f"{f}.w1")] == 0 for f in P.CHILD_NO_LINES)
    assert q[S.index("brow_l.w1")] < p[S.index("brow_l.w1")]
    neckline, chin = S.index("clothes.y2"), S.index("face.y0")
    assert q[neckline] - q[chin] < p[neckline] - p[chin]
    for k in ("face.x3", "face.y3", "lip_upper_outer.x0"):
        assert q[S.index(k)] == pytest.approx(p[S.index(k)], abs=1e-6), k
    for axis in "xy":  # (the nose base's middle stays)
        idx = [S.index(f"nose_base.{axis}{i}") for i in range(5)]
        assert q[idx].mean() == pytest.approx(p[idx].mean(), abs=1e-6)
    older = child_face(p, 7.0)
    assert 0 < np.abs(older - p).max() < np.abs(q - p).max()
    for age in (12.0, 40.0, None):
        np.testing.assert_array_equal(child_face(p, age), p)


@pytest.mark.slow
@pytest.mark.xdist_group("heldout_hybrid")
def test_held_out_older_women_get_age_lines(heldout_runs):
    """UTKFace women aged 60 and over (by their file names) that training
    never saw: H reads them younger than men of their age (median 43 at
    60-69), and from a ramp of 50 to 65 years 32% got age lines half as wide
    as the full ones or wider (52% any); from 45 to 58, 51% (a read-only
    review, session 67). The nasolabial folds are what is counted."""
    import re

    from avatarizer import hair as HR
    from avatarizer_export.data import is_heldout
    from conftest import need_shared

    folder = need_shared("data", "faces", "utkface200")
    photos = [p for p in sorted(folder.iterdir()) if is_heldout(f"utkface200/{p.name}")
              and (m := re.match(r"^(\d{1,3})_1_", p.name)) and int(m.group(1)) >= 60]
    assert len(photos) >= 60
    if heldout_runs.avatarizer().estimator != "hybrid":
        pytest.skip("the shipped models are not installed here")
    half = 0.5 * HR.AGE_LINE_WIDTHS["nasolabial_l"]
    widths = [min(f.params[S.index("nasolabial_l.w1")], f.params[S.index("nasolabial_r.w1")])
              for f in map(heldout_runs.run, photos) if f is not None]
    assert len(widths) >= 0.9 * len(photos)
    lined = np.mean(np.asarray(widths) >= half - 1e-6)
    assert lined >= 0.45, (lined, len(widths))
