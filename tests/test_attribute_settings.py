"""Attributes the app sets (``Options.attributes``, ``from_frame(..., attributes=...)``):
drawn instead of the attribute regressor's decision, reported as the app's."""
from __future__ import annotations

import threading

import numpy as np
import pytest

from avatarizer import Avatarizer, sample_photo
from avatarizer import hair as HR
from avatarizer import schema as S
from avatarizer.artist.photo import to_lab
from avatarizer.hair import SETTABLE, apply_settings, check_settings, hair_colour_class_of
from avatarizer.skintone import LIT_AB_DL, lightness_of_tone, skin_of_set_tone, well_lit_ab
from avatarizer.video import TrackerOptions

SKIN = [S.index(f"face.{c}") for c in "rgb"]
HAIR = [S.index(f"hair_front.{c}") for c in "rgb"]


@pytest.fixture(scope="module")
def photo():
    return sample_photo()


@pytest.fixture(scope="module")
def av():
    with Avatarizer() as a:
        if a.estimator == "artist":
            pytest.skip("the shipped models are not installed here (the attribute regressor is needed)")
        yield a


def _skin_L(params) -> float:
    return float(to_lab(np.asarray(params[SKIN], np.float64))[0])


# ------------------------------------------------------------------ checking
@pytest.mark.parametrize("bad, match", [
    ({"glasses": "monocle"}, "glasses.*one of 'none', 'reading', 'sunglasses'"),
    ({"beard": 1}, "beard.*True or False"),
    ({"beard": "yes"}, "beard.*True or False"),
    ({"age": True}, "age.*number from 0 to 100"),
    ({"age": 130}, "age.*number from 0 to 100"),
    ({"age": 10 ** 400}, "age.*number from 0 to 100"),  # (float() of it overflows)
    ({"age": np.timedelta64(30)}, "age.*number from 0 to 100"),  # (NumPy counts it an integer)
    ({"skin_tone": float("nan")}, "skin_tone.*number from 1 to 10"),
    ({"skin_tone": "6"}, "skin_tone.*number from 1 to 10"),
    ({"gender": "female"}, "unknown attribute 'gender'.*glasses, beard"),
    ({"headwear_kind": "hood"}, "headwear_kind.*one of 'cap', 'beanie', 'brimmed', 'scarf'"),
    ({"headwear_kind": "scarf", "headwear": False}, "headwear_kind 'scarf' asks for headwear"),
    ({"bald": True, "hair_length": "long"}, "hair_length 'long' asks for long hair that bald=True leaves out"),
    ({3: True}, "unknown attribute 3"),
    (["glasses", "none"], "mapping"),
])
def test_settings_are_checked_with_a_plain_sentence(bad, match):
    with pytest.raises(ValueError, match=match):
        check_settings(bad)
    with pytest.raises(ValueError, match=match):  # at construction, before any model loads
        Avatarizer(attributes=bad, estimator="artist")


def test_settings_are_normalised_and_none_leaves_the_decision_to_the_regressor():
    got = check_settings({"beard": np.bool_(True), "age": np.int64(70), "glasses": "none", "headwear": None})
    assert got == {"beard": True, "age": 70.0, "glasses": "none"}
    assert type(got["beard"]) is bool and type(got["age"]) is float
    assert str(check_settings({"age": -0.0})["age"]) == "0.0"  # (not "-0 years" in --attributes)
    assert check_settings(None) == {} and check_settings({}) == {}
    assert set(SETTABLE) == {"glasses", "beard", "moustache", "headwear", "bald", "hair_colour", "hair_length",
                             "age", "skin_tone", "headwear_kind"}


def test_the_command_lines_set_takes_names_in_any_case_and_grey():
    """``--set`` read yes/no in any case but refused READING, Cap or Long;
    names are taken in any case too, and the hair colour's grey as gray."""
    import argparse

    from avatarizer.cli import _setting

    for text, want in (("glasses=READING", ("glasses", "reading")), ("headwear_kind=Cap", ("headwear_kind", "cap")),
                       ("hair_length=Long", ("hair_length", "long")), ("hair_colour=grey", ("hair_colour", "gray")),
                       ("hair_colour=GREY", ("hair_colour", "gray")), ("bald=YES", ("bald", True))):
        assert _setting(text) == want, text
    with pytest.raises(argparse.ArgumentTypeError):
        _setting("glasses=monocle")


def test_apply_settings_keeps_the_regressors_values_beside():
    a = {"glasses": "reading", "glasses_type": 1, "beard": 0.2, "hair_long": 0.3, "age": 30.0,
         "drawn": {"glasses": True, "sunglasses": False, "beard": False},
         "decided": {"glasses": True, "sunglasses": False, "beard": False}}
    apply_settings(a, {"glasses": "none", "beard": True, "hair_length": "long", "age": 71.0})
    assert (a["glasses"], a["glasses_type"], a["drawn"]["glasses"], a["glasses_model"]) == ("none", 0, False, "reading")
    assert (a["beard"], a["drawn"]["beard"], a["decided"]["beard"], a["beard_model"]) == (1.0, True, True, 0.2)
    assert (a["hair_long"], a["hair_long_model"], a["age"], a["age_model"]) == (1.0, 0.3, 71.0, 30.0)
    assert a["set_by_app"] == ["age", "beard", "glasses", "hair_length"]


def test_a_set_skin_tone_has_its_lightness_and_moves_toward_skin_in_good_light_as_far_as_the_lightness_moves():
    pink = np.array([0.93, 0.78, 0.76])  # a pale, pink measured skin
    for tone in (1.0, 4.5, 8.0, 10.0):
        got = to_lab(skin_of_set_tone(pink, tone))
        assert abs(got[0] - float(lightness_of_tone(tone))) < 0.5
    # lightness near the measured: mostly the photo's undertone (here 5.5 L*: 22% of the way)
    measured = to_lab(pink)
    L2 = float(lightness_of_tone(2.0))
    w = abs(measured[0] - L2) / LIT_AB_DL
    near = to_lab(skin_of_set_tone(pink, 2.0))
    assert 0.1 < w < 0.4 and np.allclose(near[1:], (1 - w) * measured[1:] + w * well_lit_ab(L2), atol=0.3)
    far = to_lab(skin_of_set_tone(pink, 7.0))  # 35 L* darker: skin in good light there, not a dull mauve
    assert np.allclose(far[1:], well_lit_ab(far[0]), atol=1.5)
    # the darkest steps are brown, not ash grey (the Monk swatches' own a*, b* drew them (35, 1.5, 3.5))
    for tone in (9.0, 10.0):
        _, a, b = to_lab(skin_of_set_tone(pink, tone))
        assert np.hypot(a, b) > 15 and 30 < np.degrees(np.arctan2(b, a)) < 65
    assert np.array_equal(skin_of_set_tone(np.array([np.nan, 0.5, 0.5]), 3.0), [np.nan, 0.5, 0.5], equal_nan=True)
    assert np.allclose(skin_of_set_tone(pink, np.array([7.0])), skin_of_set_tone(pink, 7.0))


# ------------------------------------------------------------------ image mode
def test_nothing_set_draws_as_before_and_a_setting_does_not_outlive_its_call(av, photo):
    base = av.from_frame(photo)
    assert np.array_equal(av.from_frame(photo, attributes={}).params, base.params)
    assert np.array_equal(av.from_frame(photo, attributes={"beard": None}).params, base.params)
    assert not np.array_equal(av.from_frame(photo, attributes={"glasses": "sunglasses"}).params, base.params)
    again = av.from_frame(photo)
    assert np.array_equal(again.params, base.params) and again.attributes == base.attributes
    assert all("source" not in v for v in base.attributes.values())


def test_a_setting_that_confirms_the_models_decision_draws_the_same_hairstyle(av):
    """An app that sets a hat or "not bald" where the model drew just that
    gets the same avatar: the retrieval keeps the model's own scores in its
    distance (a set 1.0 / 0.0 there, where the bank holds H's scores, turned
    long hair short under a confirmed hat and long hair into a bob)."""
    from conftest import need_shared

    folder = need_shared("data", "faces", "ffhq128")
    for name, flag in (("ffhq-0259.jpg", "headwear"), ("ffhq-0469.jpg", "headwear"),
                       ("ffhq-0027.jpg", "bald"), ("ffhq-0043.jpg", "bald")):
        own = av.from_image(folder / name)
        value = own.attributes[flag]["value"]
        confirmed = av.from_image(folder / name, attributes={flag: value})
        assert confirmed.attributes[flag]["source"] == "app", name
        assert np.array_equal(confirmed.params, own.params), (name, flag, value)
    # set otherwise than the model drew it, the setting is drawn (the hat's family gate)
    other = av.from_image(folder / "ffhq-0027.jpg", attributes={"headwear": True})
    assert other.params[S.index("headwear.type")] > 0


@pytest.mark.parametrize("kind, code", [("none", 0), ("reading", 1), ("sunglasses", 2)])
def test_glasses_as_set(av, photo, kind, code):
    a = av.from_frame(photo, attributes={"glasses": kind})
    assert int(a.params[S.index("glasses.type")]) == code
    g = a.attributes["glasses"]
    assert g["value"] == kind and g["probability"] == 1.0 and g["source"] == "app"
    assert set(g["probabilities"]) == {"none", "reading", "sunglasses"}  # the model's, as it read the photo


def test_facial_hair_and_headwear_as_set(av, photo):
    beard = av.from_frame(photo, attributes={"beard": True})
    assert beard.params[S.index("beard.opacity")] > 0.5 and beard.attributes["beard"]["value"] is True
    assert beard.params[S.index("moustache.w0")] > 0  # a beard is drawn with its moustache
    must = av.from_frame(photo, attributes={"moustache": True, "beard": False})
    assert must.params[S.index("beard.opacity")] == 0 and must.params[S.index("moustache.w0")] > 0
    # a set moustache is drawn as set, also beside a beard; a beard's moustache is reported as drawn
    no_must = av.from_frame(photo, attributes={"beard": True, "moustache": False})
    assert no_must.params[S.index("beard.opacity")] > 0.5 and no_must.params[S.index("moustache.w0")] == 0
    assert no_must.attributes["moustache"]["value"] is False
    assert beard.attributes["moustache"]["value"] is True and "source" not in beard.attributes["moustache"]
    hat = av.from_frame(photo, attributes={"headwear": True})
    assert hat.params[S.index("headwear.type")] > 0 and hat.attributes["headwear"]["source"] == "app"
    bare = av.from_frame(photo, attributes={"headwear": False, "beard": False, "moustache": False})
    assert bare.params[S.index("headwear.type")] == 0 and bare.params[S.index("beard.opacity")] == 0


def test_a_head_scarf_as_set_in_the_cloths_colour(av):
    """``headwear_kind`` draws headwear of that kind (a headscarf or a hood:
    ``headwear.type`` 4, which the kind model does not decide), reported
    as the headwear's ``kind`` with ``kind_source`` "app" (no separate
    attribute), in the cloth's colour over the crown and beside the face:
    not a purple hood's pink band on top, not a ghutra's black cord."""
    from conftest import need_shared

    from avatarizer.hair import merged_settings
    from avatarizer.headwear import KINDS

    assert SETTABLE["headwear_kind"] == KINDS[1:]
    # a kind is headwear, also over an option's headwear=False; headwear=False takes a kind back
    scarf = {"headwear_kind": "scarf"}
    assert check_settings(scarf) == scarf and merged_settings(scarf) == {**scarf, "headwear": True}
    assert merged_settings(scarf, {"headwear_kind": None}) == {}
    assert merged_settings(scarf, {"headwear": None}) == {**scarf, "headwear": True}
    assert merged_settings(scarf, {"headwear": False}) == {"headwear": False}
    # no bald style is long: the call's setting takes the option's other one back
    assert merged_settings({"bald": True}, {"hair_length": "long"}) == {"hair_length": "long"}
    assert merged_settings({"hair_length": "long"}, {"bald": True}) == {"bald": True}
    assert merged_settings({"bald": True}, {"hair_length": "short"}) == {"bald": True, "hair_length": "short"}
    assert check_settings({"bald": True, "hair_length": "short"}) == {"bald": True, "hair_length": "short"}
    assert merged_settings({"headwear": False}, {"headwear_kind": "cap"}) == {"headwear_kind": "cap", "headwear": True}
    assert merged_settings({"beard": True, "age": 30.0}, {"age": None}) == {"beard": True}
    HAT = [S.index(f"headwear.{c}") for c in "rgb"]
    faces = ("data", "faces", "ffhq128")
    hood = av.from_image(need_shared(*faces, "ffhq-1290.jpg"), attributes={"headwear_kind": "scarf"})
    ghutra = av.from_image(need_shared(*faces, "ffhq-0914.jpg"), attributes={"headwear_kind": "scarf"})
    for a in (hood, ghutra):
        assert a.params[S.index("headwear.type")] == 4
        h = a.attributes["headwear"]
        assert h["value"] is True and h["kind"] == "scarf" and h["kind_source"] == "app" and h["source"] == "app"
        # the kind model's reading (it never reads a scarf) is the model's, beside H's P(headwear)
        assert "headwear_kind" not in a.attributes and "kind_probabilities" not in h
        assert h["model"]["kind"] in ("cap", "beanie", "brimmed") and set(h["model"]["kind_probabilities"]) == \
            {"cap", "beanie", "brimmed", "other"}
        # no hair is drawn under it: the hair length reported is H's, not "as drawn"
        assert a.attributes["hair_length"].get("decided_by") != "the hairstyle drawn"
    # set as an option, the kind can be taken back per call, and headwear=False takes it back too
    with Avatarizer(attributes=scarf) as opt:
        assert dict(opt.options.attributes) == scarf  # what the app set, not what it implies
        img = need_shared(*faces, "ffhq-1290.jpg")
        assert opt.from_image(img).params[S.index("headwear.type")] == 4
        assert opt.from_image(img, attributes={"headwear": False}).params[S.index("headwear.type")] == 0
        back = opt.from_image(img, attributes={"headwear_kind": None})
        assert back.params[S.index("headwear.type")] in (1, 2, 3) and "kind_source" not in back.attributes["headwear"]
    purple = hood.params[HAT].astype(float)
    assert purple[2] > purple[1] + 0.15 and purple[0] > purple[1], purple  # purple, not the pink band's red
    white = ghutra.params[HAT].astype(float)
    assert white.min() > 0.6, white  # the white cloth, not the black cord on top
    # the kind as the app set it also for a cap the model would read (and a hat the app did not set)
    cap = av.from_image(need_shared(*faces, "ffhq-1290.jpg"), attributes={"headwear_kind": "cap"})
    assert cap.params[S.index("headwear.type")] == 1 and cap.attributes["headwear"]["kind"] == "cap"
    # a turban (5): its cloth's colour, the hair hidden (H's length reported, not the drawn style's)
    turban = av.from_image(need_shared(*faces, "ffhq-0744.jpg"), attributes={"headwear_kind": "turban"})
    assert turban.params[S.index("headwear.type")] == 5 and turban.attributes["headwear"]["kind"] == "turban"
    red = turban.params[HAT].astype(float)
    assert red[0] > red[1] + 0.3 and red[0] > red[2] + 0.3, red  # his red turban
    # under it H's hair length stands where the style drawn without it reads the other length (ffhq-0075:
    # a man, H's P(long) 0.93, a short style under a beanie; since session 66 a length H is sure of holds
    # under a hat: ffhq-1290's beanie is drawn over long hair, as H reads it)
    long_hood = av.from_image(need_shared(*faces, "ffhq-0075.jpg"), attributes={"headwear_kind": "turban"})
    plain = av.from_image(need_shared(*faces, "ffhq-0075.jpg"), attributes={"headwear_kind": "beanie"})
    assert plain.attributes["hair_length"].get("decided_by") == "the hairstyle drawn"  # (what is guarded)
    assert long_hood.attributes["hair_length"]["value"] != plain.attributes["hair_length"]["value"]
    assert long_hood.attributes["hair_length"].get("decided_by") != "the hairstyle drawn"


def test_a_hat_in_its_own_colour_over_the_hair_beside_the_face(av):
    """A hat is drawn in the photo's hat colour, and the hair in the colour
    beside the face: the hair region above the brows is the hat, which was
    drawn a navy beanie (whatever the hat) over hair of the hat's colour (a
    white hard hat: grey hair). Headwear set, so that H's decision is not
    what is tested."""
    from conftest import need_shared

    HAT = [S.index(f"headwear.{c}") for c in "rgb"]
    white = av.from_image(need_shared("data", "faces", "ffhq128-labelled", "69161.jpg"), attributes={"headwear": True})
    red = av.from_image(need_shared("data", "faces", "ffhq128-labelled", "69203.jpg"), attributes={"headwear": True})
    hat_w, hat_r = white.params[HAT].astype(float), red.params[HAT].astype(float)
    assert hat_w.min() > 0.6, hat_w  # a white hard hat
    assert hat_r[0] > hat_r[1] + 0.2 and hat_r[0] > hat_r[2] + 0.2, hat_r  # a red helmet
    hair_w = to_lab(white.params[HAIR].astype(np.float64))
    # not the hat's white. His dark brown hair shows only at the temples and its class is split (grey 0.37,
    # blond 0.37, brown 0.25): with H reading the crop alone it was drawn grey (L* 44), with its mirror image
    # too (session 73) blond (L* 62): lighter, further from his dark brown (a likeness loss on this photo,
    # both wrong); this checks what the code promises, the colour beside the face moved into the class and
    # never the hat's (the old check, 25 L* darker than the hat, held for the grey only)
    assert np.linalg.norm(hair_w - to_lab(hat_w)) > 25, (hair_w, hat_w)


def test_a_hair_colour_set_under_a_hat_is_the_hair_beside_the_face_in_that_class(av):
    """Under a hat the hair region is the hat: a set hair colour moves the
    hair beside the face into the class (it moved the hat's colour: a blue
    hat's, over dark hair, was drawn a blue-grey "black"), and what the
    model read is H's own class, not the hat's."""
    from conftest import need_shared

    from avatarizer.hair import HAIR_SET_APART, drawn_hair_colour

    path = need_shared("data", "faces", "ffhq128-labelled", "69076.jpg")  # a blue cap over dark hair
    own = av.from_image(path)
    assert own.attributes["headwear"]["value"] is True
    read = own.attributes["hair_colour"]
    for colour in ("black", "blond"):
        a = av.from_image(path, attributes={"hair_colour": colour})
        # (the model's own drawing is the same hair moved into the class it reports: from it, the set
        # class's colour lies within a few thousandths of the one moved from the hair as sampled)
        want = drawn_hair_colour(own.params[HAIR].astype(np.float64), {colour: 1.0}, apart=HAIR_SET_APART)
        assert np.allclose(a.params[HAIR], want, atol=0.02), (colour, a.params[HAIR], want)
        assert hair_colour_class_of(a.params[HAIR]) == colour
        got = a.attributes["hair_colour"]
        assert got["value"] == colour and got["model"]["value"] == read["value"]
        assert got["probabilities"] == read["probabilities"]


def test_a_hair_colour_set_reads_as_its_class_to_the_eye(av):
    """Black hair set brown was moved the least way into the class: L* 10-13,
    a neutral near-black (the palette's dark brown lies ΔE 15 from its
    black; 16 of 41 black-haired photos changed by less than ΔE 6, a
    read-only review, helper-416). A set class is drawn at least
    ``HAIR_SET_APART`` from every other class's palette colours: black hair
    set brown is a brown, set red or blond far from black, and hair already
    in the class set (brown set brown) keeps its own colour."""
    from conftest import need_shared

    from avatarizer.artist.colour import to_lab
    from avatarizer.hair import HAIR_SET_APART, _palette_lab

    pal, classes = _palette_lab()
    folder = need_shared("data", "faces", "ffhq128-labelled")
    for name in ("69000.jpg", "69013.jpg"):
        own = av.from_image(folder / name)
        assert own.attributes["hair_colour"]["value"] == "black"
        mine = to_lab(own.params[HAIR].astype(np.float64))
        for colour in ("brown", "red", "blond"):
            got = to_lab(av.from_image(folder / name, attributes={"hair_colour": colour}).params[HAIR].astype(np.float64))
            assert np.linalg.norm(pal[classes != colour] - got, axis=1).min() >= HAIR_SET_APART - 0.5, (name, colour, got)
            assert np.linalg.norm(got - mine) >= 10.0, (name, colour, got, mine)
            if colour == "brown":
                assert got[0] >= 18.0 and got[2] >= 5.0, got  # (lighter than black, warm)
    brown = av.from_image(folder / "69002.jpg")  # brown hair, drawn ΔE 28.6 from the other classes
    assert brown.attributes["hair_colour"]["value"] == "brown"
    assert np.linalg.norm(pal[classes != "brown"] - to_lab(brown.params[HAIR].astype(np.float64)),
                          axis=1).min() >= HAIR_SET_APART
    kept = av.from_image(folder / "69002.jpg", attributes={"hair_colour": "brown"})
    np.testing.assert_allclose(kept.params[HAIR], brown.params[HAIR], atol=0.02)


@pytest.mark.parametrize("colour", ["black", "brown", "blond", "red", "gray"])
def test_hair_colour_as_set(av, photo, colour):
    a = av.from_frame(photo, attributes={"hair_colour": colour})
    assert hair_colour_class_of(a.params[HAIR]) == colour
    assert a.attributes["hair_colour"]["value"] == colour and a.attributes["hair_colour"]["source"] == "app"


def test_a_hair_colour_set_leaves_the_clothes_as_read(av, photo):
    # the clothes' reading leaves out the photo's own hair colour, not the class set (the sample's
    # clothes were read a light grey with black set: its dark hair counted as clothes)
    clothes = [S.index(f"clothes.{c}") for c in "rgb"]
    read = av.from_frame(photo).params[clothes]
    for colour in ("black", "brown", "blond", "red", "gray"):
        a = av.from_frame(photo, attributes={"hair_colour": colour})
        np.testing.assert_array_equal(a.params[clothes], read, err_msg=colour)


@pytest.mark.parametrize("name, black_top", [("69027.jpg", False), ("69036.jpg", False), ("69025.jpg", False),
                                             ("69025.jpg", True), ("69003.jpg", True)])
def test_the_clothes_are_read_the_same_whatever_headwear_the_app_sets(av, name, black_top):
    # the clothes' reading leaves out the hair as the model's own reading sees it: with a hat or a scarf set,
    # the colour read beside the face (or the class's) was left out instead, and hair over the shoulders
    # was read as the clothes (69027's dark top drawn teal with headwear=True; 18 of 40 portraits changed;
    # a review, session 77). 69025 wears a hat the model reads: taken away, the same clothes too.
    from conftest import need_shared

    from avatarizer.imageio import load_image

    img = load_image(need_shared("data", "faces", "ffhq128-labelled") / name)
    if black_top:  # (the model's hat un-drawn by its own rule, which a set headwear skips: as without settings)
        img = img.copy()
        img[: img.shape[0] // 5] = 0
    clothes = [S.index(f"clothes.{c}") for c in "rgb"]
    plain = av.from_frame(img)
    assert not black_top or plain.attributes["headwear"]["decided_by"].startswith("not drawn")
    read = plain.params[clothes]
    for setting in ({"headwear": True}, {"headwear": False}, {"headwear_kind": "scarf"}, {"headwear_kind": "cap"},
                    {"hair_colour": "black"}, {"headwear_kind": "scarf", "hair_colour": "red"}):
        np.testing.assert_array_equal(av.from_frame(img, attributes=setting).params[clothes], read,
                                      err_msg=str(setting))


def test_hair_length_as_set(av, photo):
    from avatarizer.hair import HairBank

    bank = HairBank.load()
    long_ = av.from_frame(photo, attributes={"hair_length": "long"})
    short = av.from_frame(photo, attributes={"hair_length": "short"})
    # long and short as drawn on this face (hair.drawn_length; the search takes this face's classes)
    assert HR.drawn_length(long_.params) == "long" and HR.drawn_length(short.params) == "short"
    got = dict(long_.attributes["hair_length"])
    assert got.pop("model")["value"] in ("long", "short")
    assert got == {"value": "long", "probability": 1.0, "source": "app"}
    for length in ("long", "short"):  # under a hat too (the hat-shaped styles have both lengths)
        hat = av.from_frame(photo, attributes={"hair_length": length, "headwear": True})
        i = int(hat.params[S.index("hair_style.bank_id")])
        assert bank.entry(i).family == "headwear" and HR.drawn_length(hat.params) == length


def test_bald_as_set_is_a_bald_style(av, photo):
    """bald=True draws a style of the bald family (no front hair layer), not
    a receding one; bald=False neither."""
    from avatarizer.hair import HairBank

    bank = HairBank.load()
    for setting, families in ((True, {"bald"}), (False, set(bank.families) - {"bald", "receding"})):
        a = av.from_frame(photo, attributes={"bald": setting})
        assert bank.entry(int(a.params[S.index("hair_style.bank_id")])).family in families
        assert a.attributes["bald"]["value"] is setting and a.attributes["bald"]["source"] == "app"


def test_a_bald_head_set_under_a_hat_shows_no_hair_below_it(av, photo):
    """bald=True with a hat (headwear, or a kind) draws a short hat-shaped
    style: the hat's gate fires first, and its styles with hair hanging
    halfway to the chin were drawn on a head reported bald (a review, session 63)."""
    from avatarizer.hair import HairBank

    bank = HairBank.load()
    for extra in ({"headwear": True}, {"headwear_kind": "cap"}):
        a = av.from_frame(photo, attributes={"bald": True, **extra})
        assert bank.entry(int(a.params[S.index("hair_style.bank_id")])).family == "headwear"
        assert HR.drawn_length(a.params) == "short" and a.params[S.index("hair_style.layers")] < 1.5  # no fringe
        assert a.attributes["bald"]["value"] is True and a.attributes["headwear"]["value"] is True


def test_a_long_length_set_is_drawn_where_the_model_reads_a_bald_head(av, photo, monkeypatch):
    """Where H reads a bald head (its bald output forced to 0.9 here) and the
    app sets long hair, long hair is drawn and the bald flag is reported not
    drawn, saying why: the bald gate (no bald style is long) drew a short bald
    head reported long (a review, session 63). Without the setting it is drawn bald."""
    orig = HR.decode_attributes

    def bald_read(outputs, *a, **k):
        outputs = dict(outputs)
        b = np.array(outputs["binary"], np.float32, copy=True)
        b[:, HR.BINARY_ATTRIBUTES.index("bald")] = 0.9
        outputs["binary"] = b
        return orig(outputs, *a, **k)

    monkeypatch.setattr(HR, "decode_attributes", bald_read)
    bald = av.from_frame(photo)
    assert HR.drawn_length(bald.params) == "short" and bald.attributes["bald"]["value"] is True
    long_ = av.from_frame(photo, attributes={"hair_length": "long"})
    assert HR.drawn_length(long_.params) == "long"
    assert long_.attributes["hair_length"]["value"] == "long"
    assert long_.attributes["bald"]["value"] is False
    assert long_.attributes["bald"]["decided_by"] == HR.LONG_NOT_BALD_BY


def test_skin_tone_and_age_as_set(av, photo):
    dark = av.from_frame(photo, attributes={"skin_tone": 8})
    assert abs(_skin_L(dark.params) - float(lightness_of_tone(8))) < 0.5
    got = dict(dark.attributes["skin_tone"])
    assert got.pop("model")["probability"] is None
    assert got == {"value": 8.0, "probability": None, "source": "app"}
    light = av.from_frame(photo, attributes={"skin_tone": 2})
    assert abs(_skin_L(light.params) - float(lightness_of_tone(2))) < 0.5
    old, young = (av.from_frame(photo, attributes={"age": a}) for a in (80, 20))
    assert old.attributes["age"]["value"] == 80.0 and old.attributes["age"]["source"] == "app"
    assert old.params[S.index("nasolabial_l.w0")] > young.params[S.index("nasolabial_l.w0")]


def test_options_attributes_hold_for_every_call_and_a_call_adds_to_them_or_takes_them_back(photo):
    with Avatarizer(attributes={"glasses": "sunglasses", "beard": True}) as av:
        if av.estimator == "artist":
            pytest.skip("the shipped models are not installed here")
        a = av.from_frame(photo)
        assert int(a.params[S.index("glasses.type")]) == 2 and a.params[S.index("beard.opacity")] > 0
        b = av.from_frame(photo, attributes={"glasses": "reading", "beard": None})
        assert int(b.params[S.index("glasses.type")]) == 1 and "source" not in b.attributes["beard"]
        batch = av.from_frames([photo, photo])
        assert all(int(x.params[S.index("glasses.type")]) == 2 for x in batch)
        with pytest.raises(ValueError, match="glasses"):
            av.from_frame(photo, attributes={"glasses": "goggles"})


def test_the_artist_alone_cannot_take_settings(photo):
    with pytest.raises(ValueError, match="attribute regressor"):
        Avatarizer(estimator="artist", attributes={"glasses": "none"})
    with Avatarizer(estimator="artist") as av:
        assert av.from_frame(photo, attributes={}) is not None
        assert av.from_frame(photo, attributes={"beard": None}) is not None
        with pytest.raises(ValueError, match="attribute regressor"):
            av.from_frame(photo, attributes={"glasses": "none"})


# ------------------------------------------------------------------ video mode
def test_video_a_change_of_settings_shows_from_that_frame(photo):
    with Avatarizer(mode="video", tracker=TrackerOptions(identity_frames=3)) as av:
        if av.estimator == "artist":
            pytest.skip("the shipped models are not installed here")
        stream = av._pipeline.stream
        kinds, gens = [], []
        for i in range(12):
            setting = {"glasses": "sunglasses"} if 5 <= i < 9 else None
            a = av.from_frame(photo, timestamp_ms=i * 40.0, attributes=setting)
            kinds.append(int(a.params[S.index("glasses.type")]))
            gens.append(stream.generation)
        base = kinds[0]
        assert base != 2 and kinds[5:9] == [2] * 4 and kinds[9:] == [base] * 3 and set(kinds[:5]) == {base}
        assert gens[5] == gens[4] + 1 and gens[9] == gens[8] + 1 and gens[5] == gens[8]  # new tracks


def test_video_an_identity_job_asked_before_a_new_track_does_not_feed_it(photo, monkeypatch):
    """A refresh of the identity networks still running when a new track
    starts (another person, another face_index, other settings) stored its
    hair and attributes in the new track's cache, and the new track's first
    frame took them: here the glasses the app had just set were not drawn."""
    opts = TrackerOptions(identity_frames=2, identity_every_ms=1.0, identity_duty=1.0,
                          identity_worker="thread")  # (the face stage patched here is this process's)
    with Avatarizer(mode="video", tracker=opts) as av:
        if av.estimator == "artist":
            pytest.skip("the shipped models are not installed here")
        pipe = av._pipeline
        stage, face, stream = pipe.stages[1], pipe["face"], pipe.stream
        gate, entered = threading.Event(), threading.Event()
        gate.set()
        real_run, real_new_track = face.run, stream.new_track

        def run(state):  # the worker's job waits until the new track has begun
            if threading.current_thread().name == "avatarizer-identity":
                entered.set()
                assert gate.wait(30)
            return real_run(state)

        def new_track():
            real_new_track()
            gate.set()

        monkeypatch.setattr(face, "run", run)
        monkeypatch.setattr(stream, "new_track", new_track)
        t = 0.0
        for _ in range(4):
            av.from_frame(photo, timestamp_ms=t)
            t += 40.0
        assert stage.wait_idle(30)
        gate.clear()
        entered.clear()
        av.from_frame(photo, timestamp_ms=t)  # hands a job to the worker, which starts it and waits
        t += 40.0
        assert entered.wait(30)
        for _ in range(3):  # the new track's first frame, and the ones after the stale job has ended
            a = av.from_frame(photo, timestamp_ms=t, attributes={"glasses": "sunglasses"})
            t += 40.0
            assert int(a.params[S.index("glasses.type")]) == 2
            assert a.attributes["glasses"]["source"] == "app"
            assert stage.wait_idle(30)


# ------------------------------------------------------------------ command line
def test_cli_set_draws_what_was_set_and_refuses_what_cannot_be(tmp_path, photo, capsys, av):
    from PIL import Image

    from avatarizer.cli import main

    src = tmp_path / "me.png"
    Image.fromarray(photo).save(src)
    assert main(["image", str(src), "-o", str(tmp_path / "plain.png")]) == 0
    assert main(["image", str(src), "-o", str(tmp_path / "set.png"), "--set", "glasses=sunglasses",
                 "--set", "beard=yes", "--set", "skin_tone=7.5"]) == 0
    want = av.from_frame(photo, attributes={"glasses": "sunglasses", "beard": True, "skin_tone": 7.5})
    got = np.asarray(Image.open(tmp_path / "set.png"))
    assert np.array_equal(got, want.render(512, background="white"))
    assert not np.array_equal(got, np.asarray(Image.open(tmp_path / "plain.png")))
    capsys.readouterr()
    assert main(["image", str(src), "-o", str(tmp_path / "scarf.png"), "--set", "headwear_kind=scarf"]) == 0
    scarf = av.from_frame(photo, attributes={"headwear_kind": "scarf"})
    assert scarf.params[S.index("headwear.type")] == 4
    assert np.array_equal(np.asarray(Image.open(tmp_path / "scarf.png")), scarf.render(512, background="white"))
    for bad in ("beard=maybe", "gender=male", "age=old", "glasses", "skin_tone=11", "headwear_kind=hood"):
        with pytest.raises(SystemExit) as e:
            main(["image", str(src), "-o", str(tmp_path / "x.svg"), "--set", bad])
        assert e.value.code == 2 and "--set" in capsys.readouterr().err
    # two that conflict are a usage error too (exit 2, before any work; was 1 from the SDK's ValueError)
    out = ["image", str(src), "-o", str(tmp_path / "x.svg")]
    for first, second in (("bald=yes", "hair_length=long"), ("headwear=no", "headwear_kind=cap")):
        assert main(out + ["--set", first, "--set", second]) == 2
        err = capsys.readouterr().err
        assert f"--set: {second.split('=')[0]} '{second.split('=')[1]}'" in err and first in err, err
    assert not (tmp_path / "x.svg").exists()
    # a later --set of a name replaces the earlier one: no conflict left
    assert main(out + ["--set", "bald=yes", "--set", "hair_length=long", "--set", "bald=no"]) == 0


def test_cli_image_attributes_prints_what_was_read_and_what_was_set(tmp_path, photo, capsys, av):
    from PIL import Image

    from avatarizer.cli import main

    src = tmp_path / "me.png"
    Image.fromarray(photo).save(src)
    assert main(["image", str(src), "-o", str(tmp_path / "a.png"), "--attributes", "--set", "beard=yes"]) == 0
    out = capsys.readouterr().out.splitlines()
    read = av.from_frame(photo).attributes
    assert out[0] == f"wrote {tmp_path / 'a.png'}" and "--set NAME=VALUE" in out[1]
    b = read["beard"]  # what the model read beside what was set (the model's own beard reading)
    assert f"  beard: yes (set; the model read {'yes' if b['value'] else 'no'}, p {b['probability']:.2f})" in out
    assert "  moustache: yes (drawn with the beard)" in out  # not "p 1.00": neither read nor set
    g = read["glasses"]
    assert f"  glasses: {g['value']} (p {g['probability']:.2f})" in out
    assert f"  age: {read['age']['value']:.0f} years" in out
    assert any(line.startswith("  gender: ") and "read only" in line for line in out)
    assert main(["image", str(src), "-o", str(tmp_path / "b.png"), "--estimator", "artist", "--attributes"]) == 0
    assert "attributes: none" in capsys.readouterr().out
    # before any model loads
    assert main(["image", str(src), "-o", str(tmp_path / "c.png"), "--estimator", "artist", "--set", "beard=yes"]) == 2
    assert "--set needs the attribute model" in capsys.readouterr().err and not (tmp_path / "c.png").exists()


def test_a_set_attribute_keeps_what_the_model_read_beside_it(av, photo):
    base = av.from_frame(photo).attributes
    got = av.from_frame(photo, attributes={"beard": not base["beard"]["value"], "hair_colour": "red",
                                           "glasses": "sunglasses", "age": 70, "skin_tone": 9,
                                           "hair_length": "long"}).attributes
    for name in ("beard", "hair_colour", "glasses", "age", "skin_tone", "hair_length"):
        if name in base:
            want = {"value": base[name]["value"], "probability": base[name]["probability"]}
            if name in ("beard", "skin_tone") and "decided_by" in base[name]:
                # a detector's reading (the facial-hair network, the skin-tone network) says so
                want["decided_by"] = base[name]["decided_by"]
            if name == "hair_length" and base[name].get("decided_by") == "the hairstyle drawn":
                # unset, the length drawn where H read the other; beside a set length, H's reading
                want = {"value": "short" if base[name]["value"] == "long" else "long",
                        "probability": pytest.approx(1.0 - base[name]["probability"])}
            assert got[name]["model"] == want, name
    # the model's class probabilities as it read the photo (the fused readings), not H's raw ones
    assert got["hair_colour"]["probabilities"] == base["hair_colour"]["probabilities"]
    assert got["glasses"]["probabilities"] == base["glasses"]["probabilities"]
    assert "model" not in got["gender"] and "source" not in got["gender"]


def test_a_set_age_draws_age_lines_only(av):
    """The age an app sets is not the hair colour's age prior: the drawn hair
    colour stays the model's reading (a black-haired person set to 90 was drawn grey).
    The hairstyle stays too; a child's is only stretched with the taller skull
    (avatarizer.proportions)."""
    from avatarizer import load_image
    from avatarizer.proportions import child_head

    from conftest import need_shared

    img = load_image(need_shared("data", "faces", "ffhq128-labelled", "69030.jpg"))
    base = av.from_frame(img)
    assert base.attributes["age"]["value"] >= 18  # (H's estimate: an adult's head as drawn)
    hair = [S.index(n) for n in S.NAMES if n.split(".")[0] in ("hair_back", "hair_front", "hair_strand0",
                                                                "hair_strand1")]
    hair_colour = [S.index(f"hair_back.{c}") for c in "rgb"]
    for age in (5, 90):
        a = av.from_frame(img, attributes={"age": age})
        np.testing.assert_array_equal(a.params[hair], child_head(base.params, age)[hair], err_msg=str(age))
        np.testing.assert_array_equal(a.params[hair_colour], base.params[hair_colour], err_msg=str(age))
        assert a.attributes["hair_colour"] == base.attributes["hair_colour"]


def test_child_head_false_keeps_adult_proportions(av):
    """``Avatarizer(child_head=False)``: a child's age draws its age lines
    (none) but not the taller head; the default draws it; the option is
    checked."""
    from avatarizer import load_image
    from avatarizer.proportions import STRETCHED, child_head

    from conftest import need_shared

    img = load_image(need_shared("data", "faces", "ffhq128-labelled", "69030.jpg"))
    ys = [S.index(n) for n in S.NAMES if n.split(".")[0] in STRETCHED and S.KINDS[S.index(n)] == "y"]
    tall = av.from_frame(img, attributes={"age": 2}).params
    adult = av.from_frame(img, attributes={"age": 30}).params
    with Avatarizer(child_head=False) as flat:
        kept = flat.from_frame(img, attributes={"age": 2}).params
        assert flat.options.child_head is False
    top = S.index("face.y7")  # the skull's top
    # the default: taller above the brows, by proportions.child_head (how much depends on the hair drawn, whose
    # top stops the stretch at the picture's edge: 0.03 to 0.10 here as H reads this photo's hair)
    assert tall[top] < kept[top]
    np.testing.assert_allclose(tall[ys], child_head(kept, 2)[ys], atol=1e-6)
    np.testing.assert_allclose(kept[ys], adult[ys], atol=1e-6)  # not stretched: as an adult's
    for bad in ("no", 0, None):
        with pytest.raises(ValueError, match="child_head"):
            Avatarizer(child_head=bad)


def test_options_attributes_are_a_read_only_copy():
    mine = {"glasses": "sunglasses"}
    with Avatarizer(attributes=mine) as av:
        if av.estimator == "artist":
            pytest.skip("the shipped models are not installed here")
        mine["glasses"] = "not a kind"
        assert av.options.attributes == {"glasses": "sunglasses"}
        with pytest.raises(TypeError):
            av.options.attributes["beard"] = True
        av.options.validate()
        # a mappingproxy made dataclasses.asdict / astuple / deepcopy fail: they work, copies are plain dicts
        import copy
        import dataclasses

        assert dataclasses.asdict(av.options)["attributes"] == {"glasses": "sunglasses"}
        assert {"glasses": "sunglasses"} in dataclasses.astuple(av.options)
        deep = copy.deepcopy(av.options)
        assert type(deep.attributes) is dict and type(copy.copy(av.options.attributes)) is dict
        deep.attributes["beard"] = True
        assert av.options.attributes == {"glasses": "sunglasses"}
        with pytest.raises(TypeError):  # (filled again through __init__: refused too)
            av.options.attributes.__init__(beard=False)
        assert av.options.attributes == {"glasses": "sunglasses"}


def test_video_a_change_of_settings_on_a_frame_without_a_face_keeps_the_last_avatar(photo):
    with Avatarizer(mode="video", tracker=TrackerOptions(identity_frames=3)) as av:
        if av.estimator == "artist":
            pytest.skip("the shipped models are not installed here")
        for i in range(6):
            av.from_frame(photo, timestamp_ms=i * 40.0)
        gen = av._pipeline.stream.generation
        blank = np.zeros_like(photo)
        stale = av.from_frame(blank, timestamp_ms=240.0, attributes={"glasses": "sunglasses"})
        assert stale is not None and stale.stale and av._pipeline.stream.generation == gen
        back = av.from_frame(photo, timestamp_ms=280.0, attributes={"glasses": "sunglasses"})
        assert int(back.params[S.index("glasses.type")]) == 2 and av._pipeline.stream.generation == gen + 1


@pytest.mark.parametrize("hat_network", [False, True])
def test_a_face_cut_by_the_frame_edge_gets_no_hat_from_its_replicated_border(monkeypatch, hat_network):
    """The sample portrait cut 40% at the left (23% of its mesh outside the
    frame) was drawn with a beanie (H's headwear 0.76): the crop's replicated
    border reads as a hat. The model's reading is reported, not drawn; an
    app's setting still is. The hat network (hybrid, session 29) does not
    read a hat there; H alone (without its files) does, and the rule holds."""
    from avatarizer import Avatarizer
    from avatarizer import headwear as HW
    from avatarizer.align import MAX_OUTSIDE, FaceAligner
    from avatarizer.imageio import sample_photo

    if not hat_network:
        monkeypatch.setattr(HW, "load_network", lambda folder=None: None)
    photo = sample_photo()
    cut = np.ascontiguousarray(photo[:, int(0.4 * photo.shape[1]):])
    with FaceAligner(max_faces=1, segmentation=False) as al:
        assert al.align(cut).outside_fraction > MAX_OUTSIDE
    with Avatarizer() as av:
        a = av.from_frame(cut)
        assert a is not None and a["headwear.type"] == 0
        hw = a.attributes["headwear"]
        reason = "not drawn: the face is cut by the frame's edge"
        # (hair.HAT_FUSION_BY where the fusion with H is shipped, HAT_NETWORK_BY where only the network is)
        net_by = "hat network x H" if av._pipeline.by_name["hair"].hat_fusion is not None else "hat network"
        assert hw["value"] is False and hw.get("decided_by") in ((reason, net_by) if hat_network else (reason,))
        if hw.get("decided_by") == reason:  # ``image --attributes`` says why (it printed "no (p 0.04)" alone)
            from avatarizer.cli import _attribute_lines

            assert f"  headwear: no ({reason}; the model's p {hw['probability']:.2f})" \
                in _attribute_lines(a.attributes).splitlines()
        whole = av.from_frame(photo)
        assert whole.attributes["headwear"].get("decided_by") in (None, net_by)  # (not the cut)
        hat = av.from_frame(cut, attributes={"headwear": True})
        assert hat["headwear.type"] > 0 and hat.attributes["headwear"]["source"] == "app"


def test_cli_no_child_head_reaches_the_option(tmp_path, monkeypatch):
    """``--no-child-head`` (image, video, live) is ``Avatarizer(child_head=False)``."""
    from PIL import Image

    from avatarizer import api, cli

    seen = []

    class Spy(api.Avatarizer):
        def __init__(self, *args, **kwargs):
            seen.append(kwargs.get("child_head"))
            super().__init__(*args, **kwargs)

    monkeypatch.setattr(api, "Avatarizer", Spy)
    photo = tmp_path / "p.png"
    Image.fromarray(sample_photo()).save(photo)
    assert cli.main(["image", str(photo), "-o", str(tmp_path / "a.png"), "--no-child-head"]) == 0
    assert cli.main(["image", str(photo), "-o", str(tmp_path / "b.png")]) == 0
    assert seen == [False, True]
    parser = cli.build_parser()
    for argv in (["video", "in.mp4", "-o", "o.mp4"], ["live", "0"]):
        assert parser.parse_args(argv + ["--no-child-head"]).child_head is False
        assert parser.parse_args(argv).child_head is True


def test_a_hat_drawn_without_a_kind_reading_reports_the_default_kind(av, tmp_path, capsys):
    """A hat the app set on a photo cut above the brows (its shape cannot be
    measured, so no kind is read) was drawn as the default beanie but
    reported without a "kind" (and --attributes printed no headwear_kind)."""
    from PIL import Image

    from avatarizer.cli import main
    from avatarizer.headwear import DEFAULT_KIND, KINDS

    cut = np.ascontiguousarray(sample_photo()[90:])
    a = av.from_frame(cut, attributes={"headwear": True})
    h = a.attributes["headwear"]
    assert round(a["headwear.type"]) == DEFAULT_KIND
    assert h["value"] is True and h["kind"] == KINDS[DEFAULT_KIND] and h["kind_source"] == "default", h
    src = tmp_path / "cut.png"
    Image.fromarray(cut).save(src)
    capsys.readouterr()
    assert main(["image", str(src), "-o", str(tmp_path / "o.svg"), "--set", "headwear=yes", "--attributes"]) == 0
    assert f"headwear_kind: {KINDS[DEFAULT_KIND]}" in capsys.readouterr().out


def test_grey_hair_set_under_a_scarf_is_the_palettes_grey(av, photo):
    """Grey hair set by the app where no hair shows beside the face (a
    scarf covers it): the palette's grey, as grey hair with nothing to
    sample is drawn (``hair.class_hair_colour``); the fallback brown moved
    into grey was a dark taupe, L* 44.6 (a review, session 67). The brown
    class set so keeps the fallback brown moved into it."""
    from avatarizer import prior as P

    front = [S.index(f"hair_front.{c}") for c in "rgb"]
    grey = av.from_frame(photo, attributes={"headwear_kind": "scarf", "hair_colour": "gray"})
    np.testing.assert_allclose(np.asarray(grey.params)[front], P.HAIR_COLORS["gray"], atol=1e-6)
    brown = av.from_frame(photo, attributes={"headwear_kind": "scarf", "hair_colour": "brown"})
    want = HR.drawn_hair_colour(HR.FALLBACK_HAIR_RGB, {"brown": 1.0}, apart=HR.HAIR_SET_APART)
    np.testing.assert_allclose(np.asarray(brown.params)[front], want, atol=1e-6)
    assert HR.class_hair_colour({"brown": 1.0}, apart=HR.HAIR_SET_APART).tolist() == want.tolist()
