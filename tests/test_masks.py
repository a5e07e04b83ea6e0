"""A face mask over the lower face: the skin is read where it shows, and the
mask is not drawn as tinted lenses or a beard (avatarizer.artist.colour,
accessories, the hybrid's hair stage)."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from avatarizer import Avatarizer, sample_photo
from avatarizer import hair as HR
from avatarizer import schema as S
from avatarizer.artist import AutoArtist
from avatarizer.artist.accessories import MASK_CLEAR_PROB, MASK_SUN_TINT, tinted_under_mask
from avatarizer.artist.colour import COVER_DE, STAND_IN_CHROMA, lab_shows_skin, shows_skin
from avatarizer.artist.photo import from_lab, to_lab

SKIN = [S.index(f"face.{c}") for c in "rgb"]
#: a surgical mask's outline in MediaPipe's face mesh: the jaw, then across the nose's bridge below the eyes
MASK = [234, 93, 132, 58, 172, 136, 150, 149, 176, 148, 152, 377, 400, 378, 379, 365, 397, 288, 361, 323, 454,
        345, 348, 197, 119, 116]
COLOURS = {"blue": (170, 200, 230), "navy": (30, 40, 90), "royal": (70, 110, 200), "black": (25, 25, 28),
           "grey": (120, 120, 125), "dark grey": (60, 60, 65)}


def _masked(img: np.ndarray, landmarks: np.ndarray, colour) -> np.ndarray:
    out = img.copy()
    cv2.fillPoly(out, [np.asarray(landmarks)[MASK, :2].astype(np.int32)], colour)
    return out


def _labelled(name: str) -> np.ndarray:
    """A photo of ``ffhq128-labelled`` (``../shared``) at 512 px, as the masks were measured on."""
    from avatarizer import load_image

    from conftest import need_shared

    return cv2.resize(load_image(need_shared("data", "faces", "ffhq128-labelled", f"{name}.jpg")), (512, 512),
                      interpolation=cv2.INTER_CUBIC)


def _artist_cues(face) -> dict:
    """The cues ``AutoArtist.fit_geometry_skin`` leaves for an aligned face (``"cheeks_covered"``: a mask)."""
    cues: dict = {}
    AutoArtist().fit_geometry_skin(face.canonical, face.crop(192), landmarks3d=face.landmarks, glasses=True,
                                   cues=cues)
    return cues


@pytest.fixture(scope="module")
def photo():
    img = sample_photo()
    with Avatarizer(estimator="artist") as av:
        face = av.run(img).faces[0].aligned
    return img, face.landmarks


def test_what_shows_skin():
    for rgb in ((0.85, 0.65, 0.55), (0.45, 0.3, 0.22), (0.95, 0.85, 0.78)):  # light, dark, pale skin
        assert shows_skin(np.array(rgb))
    for rgb in ((0.1, 0.1, 0.11), (0.67, 0.78, 0.9), (0.92, 0.92, 0.92), (0.3, 0.6, 0.3)):  # masks, a green
        assert not shows_skin(np.array(rgb)), rgb
    assert not shows_skin(None)
    pale = to_lab(np.array([0.95, 0.88, 0.84]))  # chroma ~7: skin, but too faint to stand in for the cheeks
    assert lab_shows_skin(pale) and not lab_shows_skin(pale, STAND_IN_CHROMA)


@pytest.mark.parametrize("colour", sorted(COLOURS))
def test_the_artist_reads_the_skin_above_a_mask(photo, colour):
    img, lm = photo
    with Avatarizer(estimator="artist") as av:
        bare = av.run(img).faces[0]
        masked = av.run(_masked(img, lm, COLOURS[colour])).faces[0]
    assert _artist_cues(masked.aligned).get("cheeks_covered") is True
    got, want = to_lab(masked.params[SKIN]), to_lab(bare.params[SKIN])
    mask = to_lab(np.asarray(COLOURS[colour], np.float64) / 255.0)
    # the forehead's and the nose's skin, near the cheeks' (the mask's colour read as skin was 30-60 away)
    assert np.linalg.norm(got - want) < 12, (got, want)
    assert np.linalg.norm(got - want) < np.linalg.norm(mask - want) - 20
    assert masked.params[S.index("glasses.type")] == 0  # (the sample has no glasses)
    assert masked.params[S.index("beard.opacity")] == 0 and masked.params[S.index("moustache.w0")] == \
        bare.params[S.index("moustache.w0")]
    # an unmasked face is read from its cheeks, as before
    assert "cheeks_covered" not in _artist_cues(bare.aligned)


@pytest.mark.parametrize("colour", ["black", "grey", "dark grey"])
def test_the_hybrid_draws_no_sunglasses_or_beard_for_a_mask(photo, colour, monkeypatch):
    from avatarizer import regionnet as RN
    from avatarizer import skintone as ST

    img, lm = photo
    read = []  # the network's name each time the skin-tone network reads a crop
    real = RN.RegionNetwork.probabilities
    monkeypatch.setattr(RN.RegionNetwork, "probabilities",
                        lambda self, crop: (read.append(self.spec.name) if self.spec == ST.NETWORK else None)
                        or real(self, crop))
    gray_ages = []  # the age each hair-colour fusion weighs grey by
    fuse = HR.fuse_hair_colour
    monkeypatch.setattr(HR, "fuse_hair_colour", lambda *a, **kw: gray_ages.append(a[3] if len(a) > 3 else
                                                                                  kw.get("age")) or fuse(*a, **kw))
    with Avatarizer() as av:
        if av.estimator == "artist":
            pytest.skip("the shipped models are not installed here")
        bare = av.from_frame(img)
        assert read == ([ST.NETWORK.name] if av.estimator == "hybrid" else [])  # (the model estimator: H's)
        assert gray_ages and all(g is not None for g in gray_ages)  # the bare face's age weighs grey
        del gray_ages[:]
        st = av.run(_masked(img, lm, COLOURS[colour]))
        f = st.faces[0]
        a = av.from_frame(_masked(img, lm, COLOURS[colour]))
        assert len(read) <= 1  # the skin-tone network does not read a masked face (nor would its tone be used)
    assert "skin_tone_h" not in f.attributes and f.attributes["skin_tone_by"].startswith("not read")
    assert f.glasses_cues["cheeks_covered"] is True
    # no glasses of any kind (the sample wears none): a split between the kinds drew clear ones under the dark
    # grey mask, past the mask's rule (a review, session 74)
    assert a.attributes["glasses"]["value"] == "none", a.attributes["glasses"]
    assert not a.attributes["beard"]["value"] and not a.attributes["moustache"]["value"]
    # H's skin tone is of the mask: not used, not reported; the skin drawn is near the bare face's
    assert "skin_tone" not in a.attributes and "skin_tone" in bare.attributes
    # masked adults read young: H's age is reported, not combined with the artist's, and draws no child's head
    assert a.attributes["age"]["decided_by"] == HR.MASKED_AGE_BY
    assert bare.attributes["age"]["decided_by"] == "H x artist"
    assert gray_ages and all(g is None for g in gray_ages)  # ... nor the hair colour's grey (session 39)
    assert np.linalg.norm(to_lab(a.params[SKIN]) - to_lab(bare.params[SKIN])) < 15


@pytest.mark.parametrize("colour, kept, by", [("blue", True, None), ("royal", True, "split"),
                                              ("navy", True, "mask"), ("black", False, "mask")])
def test_clear_glasses_under_a_mask(colour, kept, by):
    """The fusion reads a mask's edge below the eyes as sunglasses (P(sun)
    0.88-1.0 on 69043's clear glasses; H's own 0.65-1.0) and the eyes are
    not tinted, so none are drawn as sunglasses; the artist's glasses
    network reads the rims, and where it is near certain of clear ones
    (``MASK_CLEAR_PROB``; P(clear) 1.0 under the navy mask) they
    stay clear: they were all dropped. Under the black one (P(clear) 0.86)
    they are not drawn: the mask's edge raises P(clear) on faces without
    glasses too (precision first). H 2.3.7 (its glasses head also trained
    under other light) is not fooled by the light blue mask: the fusion
    reads clear glasses there, without the mask's rule (``by``); under the
    royal blue one the fused mass splits between clear glasses and sunglasses,
    neither over its threshold, P(none) 0.003: the mask's rule decides, as
    for a fused "sunglasses" (``glasses.decide_kind``; they were lost, as
    under 3 of 8 colours)."""
    img = _labelled("69043")
    with Avatarizer() as av:
        if av.estimator == "artist":
            pytest.skip("the shipped models are not installed here")
        lm = av.run(img).faces[0].aligned.landmarks
        f = av.run(_masked(img, lm, COLOURS[colour])).faces[0]
    assert f.glasses_cues["cheeks_covered"] is True
    a = f.attributes
    assert round(float(f.params[S.index("glasses.type")])) == (1 if kept else 0)  # never sunglasses
    assert a["glasses_type"] == (1 if kept else 0)
    if by is None:  # read clear as they are, by the fusion at its thresholds
        from avatarizer.glasses import FUSION_BY

        assert a["glasses_by"] == FUSION_BY
        assert a["glasses_probs"]["reading"] > max(a["glasses_probs"]["none"], a["glasses_probs"]["sunglasses"])
        return
    if by == "split":  # sure of glasses, of neither kind: the mask's rule decides (the network near certain)
        import json

        from avatarizer.glasses import FUSION_PATH, GlassesFusion

        fusion = GlassesFusion.from_doc(json.loads(FUSION_PATH.read_text()))
        p = fusion.probabilities(f.glasses_cues["glasses_probs"], a["glasses_probs_model"])
        assert fusion.split(p), p
        assert a["glasses_probs"]["reading"] >= MASK_CLEAR_PROB  # (the network's, as the mask's rule reports)
        assert a["glasses_by"] == "a face mask: no sunglasses where the eyes are not tinted; clear glasses by the " \
                                  "artist's glasses network"
        return
    assert a["glasses_by"].startswith("a face mask: no sunglasses where the eyes are not tinted")
    if kept:  # what is reported says what decided: the network's probabilities, H's kept aside
        assert a["glasses_by"].endswith("clear glasses by the artist's glasses network")
        assert a["glasses_probs"]["reading"] >= MASK_CLEAR_PROB
        assert a["glasses_probs_model"]["sunglasses"] > 0.5


def test_the_network_decides_clear_glasses_under_a_mask_near_certainty():
    from avatarizer.artist.accessories import clear_under_mask, detectors

    assert detectors()["glasses"]["thresholds"]["clear"] < MASK_CLEAR_PROB < 1.0
    assert clear_under_mask(np.array([0.0, MASK_CLEAR_PROB, 0.0]))
    assert not clear_under_mask(np.array([0.1, MASK_CLEAR_PROB - 0.01, 0.0]))
    assert not clear_under_mask(None)


def test_sunglasses_under_a_mask_need_tinted_eyes():
    assert tinted_under_mask(np.array([0.1, 0.1, MASK_SUN_TINT - 0.05, 0.3, 0.3]))
    assert not tinted_under_mask(np.array([0.1, 0.1, MASK_SUN_TINT + 0.05, 0.3, 0.3]))
    assert not tinted_under_mask(None)


def test_the_hair_is_read_against_the_forehead_above_a_mask():
    """cheek_skin_lab: the forehead's skin where the cheeks' colour is a mask's
    (not skin, at least COVER_DE away); the cheeks' otherwise."""
    from avatarizer.landmarks import mean_face

    size = 128
    lm = mean_face().points[:, :2].astype(np.float64)
    skin = np.clip(from_lab(np.array([70.0, 15.0, 18.0])), 0, 1)
    crop = np.tile(skin, (size, size, 1))
    g = (np.arange(size) + 0.5) * 2.0 / size - 1.0
    eye_y = HR._eye_line(lm)
    below = g >= eye_y + HR.CHEEK_ROWS[0]
    masked = crop.copy()
    masked[below] = (0.1, 0.1, 0.11)
    got = HR.cheek_skin_lab(masked, lm, masked=True)
    assert np.linalg.norm(got - to_lab(skin)) < 1.5
    # without a mask found, the cheeks' colour whatever it is (a colour cast is not a mask)
    assert np.linalg.norm(HR.cheek_skin_lab(masked, lm) - to_lab(np.array([0.1, 0.1, 0.11]))) < 1.5
    assert np.linalg.norm(HR.cheek_skin_lab(crop, lm, masked=True) - to_lab(skin)) < 1.5  # (the same: no switch)
    grey = crop.copy()  # a colourless photo: the cheeks' grey stays (no forehead shows more skin)
    grey[:] = 0.6
    assert np.linalg.norm(HR.cheek_skin_lab(grey, lm, masked=True) - to_lab(np.array([0.6, 0.6, 0.6]))) < 1.0
    assert COVER_DE > 0


@pytest.mark.parametrize("gains", [(0.8, 0.92, 1.2), (0.85, 1.15, 0.85), (0.65, 0.85, 1.35), (1.2, 0.8, 1.2)])
@pytest.mark.parametrize("who", ["sample", "69081"])
def test_a_colour_cast_is_not_a_mask(photo, gains, who):
    """A bluish, greenish or magenta white balance moves the cheeks out of
    skin's colours, but the lips keep their own: not a mask (a first rule took
    up to 50 of 1,197 cast photos for masked ones, and drew 69081's light skin
    near black from her fringe)."""
    if who == "sample":
        img = photo[0]
    else:
        img = _labelled(who)
    cast = (np.clip(img / 255.0 * np.array(gains), 0, 1) * 255 + 0.5).astype(np.uint8)
    with Avatarizer(estimator="artist") as av:
        f = av.run(cast).faces[0]
    assert "cheeks_covered" not in _artist_cues(f.aligned)


@pytest.mark.parametrize("look", ["gain 1.5", "gain 2", "gain 2, white point 0.96", "lower face x2, knee 0.95"])
@pytest.mark.parametrize("who", ["sample", "69025", "69068"])
def test_a_blown_out_face_is_not_a_mask(photo, look, who):
    """Overexposed, the cheeks and pale lips look like a white mask's
    cloth: cheeks blown out by the light (``colour._blown``) are not read as
    one. A rule that left out only cheeks saturated to the sensor's white
    (session 28) took 69025 and 69068 for masked at a gain of 2, under a
    white point of 0.96 and with only the lower face brightened (a review:
    up to 141 of 500 photos), and drew their skin from a fringe."""
    if who == "sample":
        img = photo[0]
    else:
        img = _labelled(who)
    x = img / 255.0
    if look.startswith("gain"):
        x = np.clip(x * float(look.split()[1].rstrip(",")), 0, 1) * (0.96 if "white point" in look else 1.0)
    else:  # the lower face (below the eyes) brightened x2 (a sunlit lower face, the forehead in shade), soft knee
        with Avatarizer(estimator="artist") as av:
            lm = np.asarray(av.run(img).faces[0].aligned.landmarks, np.float64)
        y0 = lm[[33, 263, 133, 362], 1].mean() + 0.05 * np.ptp(lm[:468, 0])
        rows = np.arange(img.shape[0], dtype=np.float64)[:, None, None]
        x = x * (1 + 1.0 / (1 + np.exp(-(rows - y0) / (0.05 * np.ptp(lm[:468, 0])))))
        x = np.where(x < 0.7, x, 0.7 + 0.25 * (1 - np.exp(-np.maximum(x - 0.7, 0) / 0.25)))
    bright = (np.clip(x, 0, 1) * 255 + 0.5).astype(np.uint8)
    with Avatarizer(estimator="artist") as av:
        f = av.run(bright).faces[0]
    assert "cheeks_covered" not in _artist_cues(f.aligned)


def test_a_mask_of_a_skin_colour_is_drawn_as_skin(photo):
    """A red mask's colour can be skin's: not taken for a mask (documented)."""
    img, lm = photo
    with Avatarizer(estimator="artist") as av:
        f = av.run(_masked(img, lm, (180, 40, 50))).faces[0]
    assert "cheeks_covered" not in _artist_cues(f.aligned)


def test_a_mask_shaded_from_above_is_found(photo):
    """A light mask 20% darker at the mouth than at the cheeks (folds, light
    from above): its lightness is counted at CLOTH_L_WEIGHT (the plain
    distance found none of 35 such, a review)."""
    img, lm = photo
    out = img.astype(np.float64)
    m = np.zeros(img.shape[:2], np.uint8)
    cv2.fillPoly(m, [np.asarray(lm)[MASK, :2].astype(np.int32)], 1)
    ys = np.nonzero(m)[0]
    shade = 1.0 - 0.4 * (np.arange(img.shape[0])[:, None] - ys.mean()) / (ys.max() - ys.min())
    inside = m.astype(bool)
    out[inside] = np.array(COLOURS["blue"], np.float64)[None] * np.broadcast_to(shade, m.shape)[inside][:, None]
    shaded = np.clip(out, 0, 255).astype(np.uint8)
    with Avatarizer(estimator="artist") as av:
        f = av.run(shaded).faces[0]
    assert _artist_cues(f.aligned).get("cheeks_covered") is True


def test_a_split_under_a_mask_over_tinted_eyes_keeps_the_fusion_s_clear_glasses(monkeypatch):
    """Glasses sure of neither kind under a face mask go through the mask's
    rule only where the eyes do not look tinted, as a fused "sunglasses"
    does; over tinted eyes the fusion's clear glasses stay (they were
    dropped, reported as "no sunglasses where the eyes are not tinted";
    a review, session 74)."""
    import avatarizer.artist.accessories as ACC
    from avatarizer.glasses import SPLIT_BY

    img = _labelled("69043")
    with Avatarizer() as av:
        if av.estimator == "artist":
            pytest.skip("the shipped models are not installed here")
        lm = av.run(img).faces[0].aligned.landmarks
        masked = _masked(img, lm, COLOURS["royal"])  # (the fused mass split between the kinds: the test above)
        plain = av.run(masked).faces[0].attributes
        monkeypatch.setattr(ACC, "tinted_under_mask", lambda cues: True)
        tinted = av.run(masked).faces[0].attributes
    assert plain["glasses_by"].startswith("a face mask")
    assert tinted["glasses_type"] == 1 and tinted["glasses_by"] == SPLIT_BY
