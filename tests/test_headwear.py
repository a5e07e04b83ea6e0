"""The hat's kind and placement (avatarizer.headwear): synthetic hats on the
mean face, the drawing in the avatar vector, the reported kind, and a
missing or broken model file. (Through real photos: test_likeness.py.)"""
import json

import numpy as np
import pytest

from avatarizer import hair as H
from avatarizer import headwear as HW
from avatarizer import landmarks as L
from avatarizer import prior as P
from avatarizer import schema as S

SIZE = 128
SKIN = np.array([224, 172, 140], np.uint8)
HAT = np.array([40, 60, 150], np.uint8)


def _grid():
    return (np.arange(SIZE) + 0.5) * 2.0 / SIZE - 1.0


def _photo(band_above: float, half_width: float, brim_half: float | None = None):
    """(crop, person mask, landmarks) of the mean face under a synthetic hat:
    skin on the face and the forehead, the hat from the crop's top down to
    ``band_above`` canonical units above landmark 10, ``half_width`` times
    the head's half-width, a brim ``brim_half`` wide at its band."""
    lm = L.mean_face().points[:, :2].copy()
    g = _grid()
    gx, gy = g[None, :], g[:, None]
    cx = 0.5 * (lm[234, 0] + lm[454, 0])
    hw = 0.5 * abs(lm[454, 0] - lm[234, 0])
    band = lm[10, 1] - band_above
    crop = np.full((SIZE, SIZE, 3), 235, np.uint8)  # a pale background
    head = np.hypot((gx - cx) / (hw * 1.05), (gy - lm[10, 1] - 0.5) / 1.15) < 1.0
    crop[head] = SKIN
    hat = (gy < band) & (np.abs(gx - cx) < half_width * hw)
    if brim_half is not None:
        hat |= (gy < band) & (gy > band - 0.08) & (np.abs(gx - cx) < brim_half * hw)
    crop[hat] = HAT
    mask = (hat | head).astype(np.float32)
    return crop, mask, lm


def test_the_band_and_widths_are_read_from_the_mask():
    crop, mask, lm = _photo(0.10, 1.05)
    s = HW.shape_cues(crop, mask, lm)
    fh = lm[L.CHIN_BOTTOM, 1] - lm[10, 1]
    assert s["band_y"] == pytest.approx(lm[10, 1] - 0.10, abs=0.04)
    assert s["cues"]["band"] == pytest.approx(0.10 / fh, abs=0.04)
    assert 0.95 <= s["cues"]["w_band"] <= 1.15 and s["cues"]["w_max"] < 1.2
    assert s["cues"]["top_cut"]  # the hat runs off the crop's top
    wide, wmask, _ = _photo(0.10, 1.05, brim_half=1.9)
    b = HW.shape_cues(wide, wmask, lm)
    assert b["cues"]["w_max"] > 1.7 > s["cues"]["w_max"]


def test_a_lower_hat_is_measured_lower():
    bands = [HW.shape_cues(*_photo(a, 1.05))["band_y"] for a in (0.2, 0.1, 0.0)]
    assert bands[0] < bands[1] < bands[2]


def test_nothing_above_the_forehead_is_no_measurement():
    crop, mask, lm = _photo(0.1, 1.05)
    assert HW.shape_cues(crop, np.zeros_like(mask), lm) is None
    with pytest.raises(ValueError):
        HW.shape_cues(crop, mask[:, :100], lm)


def _avatar():
    p = S.default().astype(np.float64)
    p[S.index("hair_style.layers")] = 2
    return p


def test_place_without_a_shape_is_the_old_beanie():
    p = _avatar()
    HW.place(p, None, HW.DEFAULT_KIND)
    face = S.points(p, "face")
    hw = 0.5 * abs(face[5, 0] - face[9, 0])
    assert p[S.index("headwear.type")] == 2
    assert p[S.index("headwear.band_y")] == pytest.approx(face[7, 1] + 0.62 * hw, abs=1e-5)
    assert p[S.index("headwear.crown")] == pytest.approx(0.2)
    assert p[S.index("headwear.width")] == pytest.approx(1.1)


def test_place_follows_the_photo_and_tucks_the_hair_under():
    low, high = (HW.shape_cues(*_photo(a, 1.05)) for a in (0.0, 0.25))
    bands = []
    for s in (low, high):
        p = _avatar()
        HW.place(p, s, 2)
        bands.append(float(p[S.index("headwear.band_y")]))
        cx, half, band, ytop = P.hat_crown(p)
        for name in ("hair_back", "hair_front"):  # no hair rises over the crown
            pts = S.points(p, name)
            assert (pts[:, 1] >= ytop - 1e-6).all()
        lo, hi = S.LO[S.index("headwear.band_y")], S.HI[S.index("headwear.band_y")]
        assert lo <= bands[-1] <= hi
    assert bands[0] > bands[1]  # the lower hat in the photo is drawn lower
    brimmed = HW.shape_cues(*_photo(0.1, 1.05, brim_half=2.0))
    p = _avatar()
    HW.place(p, brimmed, 3)
    assert p[S.index("headwear.type")] == 3 and p[S.index("headwear.brim")] > 0.2


def test_kind_without_a_model_file_is_a_beanie(tmp_path):
    s = HW.shape_cues(*_photo(0.1, 1.05))
    missing = tmp_path / "none.json"
    assert HW.kind_probabilities(s, missing) is None and HW.kind_of(s, missing) == HW.DEFAULT_KIND
    broken = tmp_path / "broken.json"
    broken.write_text(json.dumps({"cues": ["x"], "kinds": list(HW.MODEL_KINDS)}))
    with pytest.warns(RuntimeWarning, match="broken.json is not used"):  # (there but unusable: said)
        assert HW.kind_probabilities(s, broken) is None
    attrs = {}
    HW.read_kind(attrs, s, missing)
    assert attrs == {}


def _model_doc(w_max_weight: float, thresholds: dict) -> dict:
    """A model that reads only the widest point's width: brimmed as it grows."""
    n = len(HW.CUES) + 1
    w = np.zeros((n, len(HW.MODEL_KINDS)))
    w[1 + HW.CUES.index("w_max"), 2] = w_max_weight
    npx = 2 * HW.PIXEL_GRID[0] * HW.PIXEL_GRID[1]
    return {"cues": list(HW.CUES), "kinds": list(HW.MODEL_KINDS), "pixel_mean": [0.0] * npx,
            "pixel_scale": [1.0] * npx, "pixel_basis": np.zeros((npx, 1)).tolist(), "mean": [0.0] * n,
            "scale": [1.0] * n, "w": w.tolist(), "b": [0.0, 3.0, -5.0, -9.0], "thresholds": thresholds}


def test_a_fitted_model_decides_with_its_margins_and_is_reported(tmp_path):
    """The kind drawn and reported in Avatar.attributes' headwear entry; a
    brimmed hat only above its threshold, else the beanie."""
    path = tmp_path / "kinds.json"
    path.write_text(json.dumps(_model_doc(5.0, {"cap": 0.6, "brimmed": 0.5})))
    narrow = HW.shape_cues(*_photo(0.1, 1.05))
    wide = HW.shape_cues(*_photo(0.1, 1.05, brim_half=2.0))
    assert HW.kind_of(narrow, path) == 2 and HW.kind_of(wide, path) == 3
    attrs = {}
    HW.read_kind(attrs, wide, path)
    assert attrs["headwear_type"] == 3 and sum(attrs["headwear_kind_probs"].values()) == pytest.approx(1.0)
    strict = tmp_path / "strict.json"
    strict.write_text(json.dumps(_model_doc(5.0, {"cap": 0.6, "brimmed": 0.99})))
    assert HW.kind_probabilities(wide, strict)[2] < 0.99 and HW.kind_of(wide, strict) == HW.DEFAULT_KIND
    assert HW.decide(np.array([0.7, 0.2, 0.1]), {"cap": 0.6, "brimmed": 0.5}) == 1
    assert HW.decide(np.array([0.5, 0.4, 0.1]), {"cap": 0.6, "brimmed": 0.5}) == HW.DEFAULT_KIND


def test_a_model_file_of_another_layout_is_not_read(tmp_path):
    wide = HW.shape_cues(*_photo(0.1, 1.05, brim_half=2.0))
    doc = _model_doc(5.0, {"cap": 0.6, "brimmed": 0.5})
    for broken in ({**doc, "w": doc["w"][:-1]}, {**doc, "pixel_basis": [[0.0]]},
                   {k: v for k, v in doc.items() if k != "thresholds"}, {**doc, "thresholds": None}):
        path = tmp_path / f"m{len(list(tmp_path.iterdir()))}.json"
        path.write_text(json.dumps(broken))
        with pytest.warns(RuntimeWarning, match="is not used"):
            assert HW.kind_probabilities(wide, path) is None and HW.kind_of(wide, path) == HW.DEFAULT_KIND
    path = tmp_path / "garbage.json"
    path.write_bytes(b"\xff{not json")
    with pytest.warns(RuntimeWarning, match="garbage.json is not used"):
        assert HW.kind_probabilities(wide, path) is None


def test_the_shipped_model_reads_its_own_format():
    doc = json.loads(HW._DATA.read_text())
    assert tuple(doc["cues"]) == HW.CUES and tuple(doc["kinds"]) == HW.MODEL_KINDS
    assert HW.kind_probabilities(HW.shape_cues(*_photo(0.1, 1.05))) is not None


def test_public_attributes_report_the_kind_only_of_a_drawn_hat():
    probs = {"cap": 0.1, "beanie": 0.2, "brimmed": 0.6, "other": 0.1}
    a = {"glasses_probs": {"none": 1.0, "reading": 0.0, "sunglasses": 0.0}, "glasses_type": 0,
         "drawn": {"beard": False, "moustache": False, "headwear": True, "bald": False},
         "decided": {"male": True}, "beard": 0.0, "moustache": 0.0, "headwear": 0.9, "bald": 0.0, "male": 0.9,
         "hair_colour": "brown", "hair_colour_probs": {"brown": 1.0}, "age": 30.0,
         "headwear_type": 3, "headwear_kind_probs": probs}
    out = H.public_attributes(a)
    assert out["headwear"]["kind"] == "brimmed" and out["headwear"]["kind_probabilities"] == probs
    p = S.default()
    p[S.index("headwear.type")] = 1  # video: a cap kept from earlier refreshes
    assert H.attributes_as_drawn(out, p)["headwear"]["kind"] == "cap"
    p[S.index("headwear.type")] = 0
    gone = H.attributes_as_drawn(H.public_attributes(a), p)["headwear"]
    assert gone["value"] is False and "kind" not in gone
    a["drawn"]["headwear"] = False
    assert "kind" not in H.public_attributes(a)["headwear"]


def test_hostile_landmarks_and_masks_give_none_or_a_hat_never_an_error():
    crop, mask, lm = _photo(0.1, 1.05)
    assert HW.shape_cues(crop, mask, np.full_like(lm, np.nan)) is None
    assert HW.shape_cues(crop, mask, lm[:100]) is None
    for odd in (lm + (0.0, 1.2), lm - (0.0, 1.5), np.zeros_like(lm), lm * 5.0):  # brows off the crop, one point
        s = HW.shape_cues(crop, mask, odd)
        if s is not None:
            p = _avatar()
            HW.place(p, s, HW.kind_of(s))
            assert np.isfinite(p).all() and (S.clip(p) == p.astype(np.float32)).all()
    for m in (np.ones((64, 64), bool), np.full((128, 128), 255, np.uint8), np.ones((200, 200), np.float32)):
        assert HW.shape_cues(crop, m, lm) is not None
    assert HW.shape_cues(crop, mask, lm, valid=np.ones((64, 64), bool)) is not None  # resampled as the mask
    with pytest.raises(ValueError):
        HW.shape_cues(crop, mask, lm, valid=np.ones((64, 32), bool))


def test_brows_below_the_crop_with_a_hat_everywhere_is_measured_not_an_index_error():
    """(Reviewer's case: every row above the brows not skin, the brows past
    the crop's last row: the band search began at the last row and read past it.)"""
    lm = L.mean_face().points[:, :2] + (0.0, 1.4)
    crop = np.zeros((SIZE, SIZE, 3), np.uint8)
    crop[...] = HAT
    s = HW.shape_cues(crop, np.ones((SIZE, SIZE), np.float32), lm, skin_rgb=(0.9, 0.6, 0.5))
    assert s is not None and np.isfinite(HW.cue_vector(s)).all()


@pytest.mark.parametrize("text", ["[]", "null", "3", "[" * 100000 + "]" * 100000])
def test_a_model_file_that_is_not_an_object_is_not_read(tmp_path, text):
    path = tmp_path / "kinds.json"
    path.write_text(text)
    wide = HW.shape_cues(*_photo(0.1, 1.05, brim_half=2.0))
    assert HW.kind_probabilities(wide, path) is None and HW.kind_of(wide, path) == HW.DEFAULT_KIND


def test_a_model_with_nan_weights_reports_no_probabilities(tmp_path):
    doc = _model_doc(5.0, {"cap": 0.6, "brimmed": 0.5})
    doc["b"] = [None, 0.0, 0.0, 0.0]
    path = tmp_path / "kinds.json"
    path.write_text(json.dumps(doc))
    wide = HW.shape_cues(*_photo(0.1, 1.05, brim_half=2.0))
    attrs = {}
    HW.read_kind(attrs, wide, path)
    assert HW.kind_probabilities(wide, path) is None and attrs == {}


def test_a_hat_kept_by_the_tracker_reports_the_kind_it_draws():
    """Video: the refresh drew no hat, the tracker keeps the earlier one:
    the attributes say a hat of the kind drawn."""
    public = {"headwear": {"value": False, "probability": 0.7}}
    p = S.default()
    p[S.index("headwear.type")] = 3
    h = H.attributes_as_drawn(public, p)["headwear"]
    assert h["value"] is True and h["kind"] == "brimmed" and h["decided_by"] == "kept from earlier refreshes"


# ----------------------------------------------------- the artist's hat detector


def _hat_detector(q: int = 3, threshold: float = 0.5, bias: float = 0.0) -> dict:
    """A tiny logistic hat detector over :func:`accessories.hat_inputs`: it says hat when the
    first pixel component (the standardised pixel block summed) is large."""
    from avatarizer.artist import accessories as A

    n = A.HAT_CUES + q
    w = np.zeros(n)
    w[A.HAT_CUES] = 1.0
    basis = np.zeros((HW.PIXEL_COUNT, q))
    basis[:, 0] = 1.0 / HW.PIXEL_COUNT
    return {"mean": [0.0] * n, "scale": [1.0] * n, "W": [[0.0] * n, w.tolist()], "b": [0.0, bias],
            "thresholds": {"yes": threshold},
            "pixels": {"mean": [0.0] * HW.PIXEL_COUNT, "scale": [1.0] * HW.PIXEL_COUNT, "basis": basis.tolist()}}


def test_the_artist_reads_the_hat_at_128_px_whatever_its_crop_size():
    """``accessories.hat_shape``: the crop area-resampled to 128 px, the mask
    and the valid pixels as ``shape_cues`` resamples them: a 192-px crop of
    the same synthetic hat reads as its 128-px crop does."""
    import cv2

    from avatarizer.artist import ArtistStyle
    from avatarizer.artist import accessories as A
    from avatarizer.artist.photo import make_photo

    crop, mask, lm = _photo(0.10, 1.05)
    big = cv2.resize(crop, (192, 192), interpolation=cv2.INTER_NEAREST)
    big_mask = cv2.resize(mask, (192, 192), interpolation=cv2.INTER_NEAREST)
    at128 = A.hat_shape(make_photo(ArtistStyle(), crop, mask, None), lm)
    at192 = A.hat_shape(make_photo(ArtistStyle(), big, big_mask, None), lm)
    assert at192["pixels"].shape == at128["pixels"].shape == (HW.PIXEL_COUNT,)
    assert at192["band_y"] == pytest.approx(at128["band_y"], abs=2.5 / 128)
    for k in ("top", "band", "w_band", "w_max"):
        assert at192["cues"][k] == pytest.approx(at128["cues"][k], abs=0.05), k
    assert np.abs(at192["pixels"] - at128["pixels"]).mean() < 0.05
    assert A.hat_shape(make_photo(ArtistStyle(), crop, None, None), lm) is None  # no person mask


def test_the_hat_detector_reads_the_cues_and_the_projected_pixel_block():
    from avatarizer.artist import accessories as A

    crop, mask, lm = _photo(0.10, 1.05)
    shape = HW.shape_cues(crop, mask, lm)
    g = {"hair_stats": {"top_tex": 0.1, "top_skin": 0.2}}
    x = A.hat_vector(g, shape)
    assert x.shape == (A.HAT_CUES + HW.PIXEL_COUNT,) and np.isfinite(x).all()
    assert A.HAT_CUES == len(A.headwear_vector({})) + len(HW.CUES) + 1
    assert x[A.HAT_CUES - 1] == 0.0 and np.array_equal(x[A.HAT_CUES:], shape["pixels"])
    none = A.hat_vector(g, None)  # nothing above the forehead: zeros and the flag
    assert none[A.HAT_CUES - 1] == 1.0 and not none[6:A.HAT_CUES - 1].any() and not none[A.HAT_CUES:].any()
    det = A._checked(_hat_detector(), "headwear")
    z = A.hat_inputs(x, det)
    assert z.shape == (A.HAT_CUES + 3,)
    assert z[A.HAT_CUES] == pytest.approx(shape["pixels"].mean())
    assert A.hat_inputs(np.stack([x, none]), det).shape == (2, A.HAT_CUES + 3)  # rows too
    assert A.probabilities(det, z)[1] > A.probabilities(det, A.hat_inputs(none, det))[1]
    far = x.copy()
    far[A.HAT_CUES:] = 1e6  # a cell far outside the training photos' spread: clipped, not extrapolated
    assert A.hat_inputs(far, det)[A.HAT_CUES] == pytest.approx(A.HAT_PIXEL_CLIP)


@pytest.mark.parametrize("broken", ["no pixels", "short basis", "zero scale", "nan mean", "wrong inputs"])
def test_a_hat_detector_whose_projection_does_not_fit_is_left_out(tmp_path, monkeypatch, broken):
    from avatarizer.artist import accessories as A

    det = _hat_detector()
    if broken == "no pixels":
        del det["pixels"]
    elif broken == "short basis":
        det["pixels"]["basis"] = det["pixels"]["basis"][:-1]
    elif broken == "zero scale":
        det["pixels"]["scale"][5] = 0.0
    elif broken == "nan mean":
        det["pixels"]["mean"][0] = float("nan")
    else:  # fitted on more components than its basis gives
        det["mean"].append(0.0)
        det["scale"].append(1.0)
        det["W"] = [r + [0.0] for r in det["W"]]
    path = tmp_path / "artist_detectors.json"
    path.write_text(json.dumps({"detectors": {"headwear": det}}))
    monkeypatch.setattr(A, "_DETECTORS_PATH", path)
    A.detectors.cache_clear()
    try:
        with pytest.warns(RuntimeWarning, match="its 'headwear' detector is not used"):
            assert "headwear" not in A.detectors()
        path.write_text(json.dumps({"detectors": {"headwear": _hat_detector()}}))
        A.detectors.cache_clear()
        assert "headwear" in A.detectors()
    finally:
        A.detectors.cache_clear()


def test_the_artist_draws_the_hat_its_detector_finds_where_the_photo_shows_it(tmp_path, monkeypatch):
    """The artist's headwear step: measured with or without a detector (the
    toolchain's cue tables read it), drawn only past the detector's
    threshold, of the kind and at the band the photo shows."""
    from avatarizer.artist import accessories as A
    from avatarizer.artist import core
    from avatarizer.artist.photo import make_photo

    crop, mask, lm = _photo(0.10, 1.05)
    from avatarizer.artist import ArtistStyle

    photo = make_photo(ArtistStyle(), crop, mask, None)
    path = tmp_path / "artist_detectors.json"
    monkeypatch.setattr(A, "_DETECTORS_PATH", path)

    def run(doc):
        path.write_text(json.dumps(doc))
        A.detectors.cache_clear()
        p, g = _avatar(), {"hair_stats": {"region_rgb": (0.1, 0.2, 0.5)}}
        A.headwear(None, p, lm, g, photo, {})
        return p, g

    try:
        p, g = run({"detectors": {}})
        assert p[S.index("headwear.type")] == 0 and g["hat_vector"].shape == (A.HAT_CUES + HW.PIXEL_COUNT,)
        assert g["headwear_shape"] is not None and "headwear_prob" not in g
        p, g = run({"detectors": {"headwear": _hat_detector(threshold=0.999)}})
        assert p[S.index("headwear.type")] == 0 and 0.0 < g["headwear_prob"] < 0.999
        p, g = run({"detectors": {"headwear": _hat_detector(threshold=0.5, bias=50.0)}})
        assert p[S.index("headwear.type")] == HW.DEFAULT_KIND or p[S.index("headwear.type")] in (1, 3)
        assert g["headwear_prob"] > 0.5
        # then in the hat's own colour (its crown, as the hybrid reads it), not the hair region's given one
        assert np.allclose([p[S.index(f"headwear.{c}")] for c in "rgb"], (0.1, 0.2, 0.5), atol=0.01)
        core.hat_colour(p, photo, lm, SKIN / 255.0)
        hat_rgb = [p[S.index(f"headwear.{c}")] for c in "rgb"]
        assert np.allclose(hat_rgb, HAT / 255.0, atol=0.02), hat_rgb
        bare = _avatar()
        core.hat_colour(bare, photo, lm)  # no hat drawn: nothing to colour
        assert np.array_equal(bare, _avatar())
        placed = _avatar()
        HW.place(placed, g["headwear_shape"], int(p[S.index("headwear.type")]))
        assert np.array_equal(P.hat_crown(p), P.hat_crown(placed))  # where the photo's hat sits
        assert g["headwear_shape"]["band_y"] == pytest.approx(lm[10, 1] - 0.10, abs=0.04)
        p, g = run({"detectors": {"headwear": {**_hat_detector(), "b": [0.0, float("nan")]}}})
        assert p[S.index("headwear.type")] == 0  # (a NaN probability is no hat)
    finally:
        A.detectors.cache_clear()


def test_black_top_reads_the_share_of_pure_black_above_the_brows():
    crop = np.full((128, 128, 3), 120, np.uint8)
    assert HW.black_top(crop) == 0.0
    x0, y0, x1, y1 = (int(round((v + 1.0) * 0.5 * 128)) for v in HW.BLACK_TOP_BOX)
    crop[:y0 + (y1 - y0) // 2] = 0  # the box's upper half black (a padded top)
    assert HW.black_top(crop) == pytest.approx(0.5, abs=0.03)
    crop[:y0 + (y1 - y0) // 2] = HW.BLACK_LEVEL + 1  # near black is not pure black (a dark hat's texture)
    assert HW.black_top(crop) == 0.0
    crop[y1:] = 0  # below the box: not read
    assert HW.black_top(crop) == 0.0
    assert HW.black_top(np.zeros((256, 256, 3), np.uint8)) == 1.0


def test_no_hat_is_read_from_a_black_padded_top():
    """Of the 14 hats drawn on the 997 held-out UTKFace chips, 7 were
    invented, all under the black padding of a rotated chip (28_0_0, a man
    with brown hair, and 75_0_0, a bald old man, drawn beanies at 0.97 and
    0.998); where the box above the brows is ``BLACK_TOP_SHARE`` pure black,
    no hat is drawn (``decided_by`` says why), the real hats (3_0_3's and
    72_0_1's, no black there) stay, and a hat the app sets is drawn."""
    from conftest import need_shared

    from avatarizer import Avatarizer
    from avatarizer.imageio import load_image

    folder = need_shared("data", "faces", "utkface200")
    with Avatarizer() as av:
        if av.estimator == "artist":
            pytest.skip("the shipped models are not installed here")
        for name in ("28_0_0_20170103225936561", "75_0_0_20170111201623183"):
            photo = load_image(folder / f"{name}.jpg.chip.jpg")
            a = av.from_frame(photo)
            hw = a.attributes["headwear"]
            assert hw["value"] is False and hw["decided_by"] == HW.BLACK_TOP_BY, (name, hw)
            assert int(round(float(a["headwear.type"]))) == 0
            assert H.HairBank.load().entry(int(round(float(a["hair_style.bank_id"])))).family != "headwear"
            set_ = av.from_frame(photo, attributes={"headwear": True})
            assert int(round(float(set_["headwear.type"]))) > 0
        for name in ("3_0_3_20161220145539630", "72_0_1_20170111210712990"):
            a = av.from_frame(load_image(folder / f"{name}.jpg.chip.jpg"))
            assert a.attributes["headwear"]["value"] is True, name


def test_a_hat_cut_by_the_frame_is_read_above_the_brows():
    """A photo cut at the forehead (a close-up, UTKFace's chips): the hat
    pulled down to the brows shows only below the forehead's top (landmark
    10), where the hat's colour was read, so it was drawn in the default
    navy (16 of the 29 hats drawn on a quarter of UTKFace's chips: a black
    beanie, red, blue and white hats). Now the mask above the brows is read
    there, skin left out; a hat whose crown shows is read from it as before."""
    from avatarizer import hair as HR
    from avatarizer import landmarks as LM

    lm = np.asarray(LM.mean_face().points)[:, :2]
    size = 128
    g = (np.arange(size) + 0.5) * 2.0 / size - 1.0
    gy = np.repeat(g[:, None], size, 1)
    skin, red, blue = np.array([0.85, 0.65, 0.55]), np.array([0.8, 0.1, 0.1]), np.array([0.1, 0.2, 0.8])
    crop = np.tile(skin, (size, size, 1))
    crop[gy < lm[10, 1] - 0.02] = blue  # the crown
    brows = lm[HR.BROW_TOPS, 1].min()
    crop[(gy >= lm[10, 1] - 0.02) & (gy < brows - HR.HAT_BAND_ABOVE_BROWS)] = red  # pulled down to the brows
    mask = np.ones((size, size), np.float32)
    crop8 = (crop * 255).round().astype(np.uint8)
    hat, _ = HR.headwear_colours(crop8, mask, lm, None, skin_rgb=skin)
    assert np.abs(hat - blue).max() < 0.02, hat  # the crown shows: read there
    cut = gy > lm[10, 1] + 0.05  # the photo ends below the forehead's top
    hat, _ = HR.headwear_colours(crop8, mask, lm, cut, skin_rgb=skin)
    assert hat is not None and np.abs(hat - red).max() < 0.02, hat
    bare = np.where(gy[..., None] < lm[10, 1] + 0.05, crop, skin)  # no hat in the band: skin only
    hat, _ = HR.headwear_colours((bare * 255).round().astype(np.uint8), mask, lm, cut, skin_rgb=skin)
    assert hat is None
    # a bare forehead in shade, just past the skin's distance: the skin in other light, not a hat (a
    # review, session 68: read as a hat's colour, a skin-coloured hat drawn)
    shade = skin * 0.72  # (20 from the skin: past SKIN_DE, within twice it)
    band = (gy >= lm[10, 1] - 0.02) & (gy < brows - HR.HAT_BAND_ABOVE_BROWS)
    shaded = np.where(band[..., None], shade, bare)
    hat, _ = HR.headwear_colours((shaded * 255).round().astype(np.uint8), mask, lm, cut, skin_rgb=skin)
    assert hat is None
