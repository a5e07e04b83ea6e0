"""The skin-tone network (``avatarizer.skintone.NETWORK``): its files, its
place in the hybrid's skin tone (in place of H's head; H's kept for the
hair colour prior) and what it reads on held-out photos labelled by eye."""
from __future__ import annotations

import json

import numpy as np
import pytest

from avatarizer import hair as HR
from avatarizer import regionnet as RN
from avatarizer import skintone as ST
from conftest import damaged_region_files, need_shared, refused_with_warning

SHIPPED = RN.DATA / ST.NETWORK.json_name


def test_the_shipped_network_loads_and_reads_a_crop():
    """One output in [0, 1] (the Monk step scaled), the same for a crop and
    its mirror image (averaged inside the graph); no thresholds."""
    net = ST.load_network()
    assert net is not None and net.thresholds == {}
    doc = json.loads(SHIPPED.read_text())
    assert doc["outputs"] == ["skin_tone"] and "thresholds" not in doc and doc["region"] == [16, 112, 16, 112]
    # the runtime's band width is the one chosen on this network's out-of-fold estimates, and reported at
    oof = doc["report"]["out of fold (training photos)"]
    assert oof["margin_chosen"] == ST.MARGIN == oof["margin_shipped"]
    crop = np.random.default_rng(0).integers(0, 256, (128, 128, 3), dtype=np.uint8)
    p = net.probabilities(crop)
    assert list(p) == ["skin_tone"] and 0.0 <= p["skin_tone"] <= 1.0
    assert net.probabilities(np.ascontiguousarray(crop[:, ::-1]))["skin_tone"] == pytest.approx(p["skin_tone"],
                                                                                                abs=1e-5)
    assert 1.0 <= ST.tone_of_network(p) <= 10.0
    with pytest.raises(ValueError, match="128x128x3"):
        net.probabilities(crop[:64])


def test_tone_of_network_maps_the_output_onto_the_monk_scale():
    assert ST.tone_of_network({"skin_tone": 0.0}) == 1.0 and ST.tone_of_network({"skin_tone": 1.0}) == 10.0
    assert ST.tone_of_network({"skin_tone": 0.5}) == pytest.approx(5.5)
    assert ST.tone_of_network({"skin_tone": 1.7}) == 10.0 and ST.tone_of_network({"skin_tone": -3}) == 1.0


@pytest.mark.parametrize("damage", ["missing", "not json", "checksum", "format", "outputs", "graph"])
def test_unusable_files_fall_back_with_a_warning(tmp_path, damage):
    folder = tmp_path / "data"
    folder.mkdir()
    if damage == "missing":
        RN.clear_cache()
        assert ST.load_network(folder) is None  # (no files: no warning, H's skin tone as before)
        return
    # (graph: the hair colour's network under its name: another block, five outputs)
    damaged_region_files(ST.NETWORK, folder, damage, ["age"], "hair_colour_net.onnx")
    match = {"not json": "not used", "checksum": "SHA-256", "format": "format", "outputs": "outputs",
             "graph": "not a skin-tone network"}[damage]
    refused_with_warning(ST.load_network, folder, match)


def test_the_hybrid_reads_the_skin_tone_with_it(monkeypatch):
    """Through ``Avatarizer()`` (the hybrid): the skin tone reported and
    drawn is the network's (``decided_by``), H's is kept under
    ``skin_tone_h`` and weighs the hair colour classes (their prior was
    fitted against H's estimates); a tone the app set wins; without the
    network's files the skin tone is H's (no ``decided_by``)."""
    from avatarizer import Avatarizer
    from avatarizer.imageio import sample_photo

    photo = sample_photo()
    seen = []
    ratios = HR.tone_colour_ratios
    monkeypatch.setattr(HR, "tone_colour_ratios", lambda tone, prior: seen.append(tone) or ratios(tone, prior))
    with Avatarizer() as av:
        if av.estimator != "hybrid":
            pytest.skip("the shipped models are not installed here")
        state = av.run(photo)
        a = state.faces[0].attributes
        want = ST.tone_of_network(ST.load_network().probabilities(state.faces[0].crop(128)))
        assert a["skin_tone"] == pytest.approx(want) and a["skin_tone_by"] == ST.BY_NETWORK
        assert a["skin_tone_h"] is not None and seen[-1] == a["skin_tone_h"]
        public = av.from_frame(photo).attributes["skin_tone"]
        assert public == {"value": round(want, 2), "probability": None, "decided_by": "skin-tone network"}
        set_ = av.from_frame(photo, attributes={"skin_tone": 8}).attributes["skin_tone"]
        assert set_["value"] == 8 and "decided_by" not in set_
        # what the model read beside the app's value is the network's (its decided_by with it)
        assert set_["model"]["value"] == round(want, 2) and set_["model"]["decided_by"] == ST.BY_NETWORK
        from avatarizer.cli import _attribute_lines

        assert f"  skin_tone: {round(want, 2):.1f} (Monk scale 1-10) (from the skin-tone network)" in \
            _attribute_lines(av.from_frame(photo).attributes).splitlines()
    monkeypatch.setattr(ST, "load_network", lambda folder=None: None)
    with Avatarizer() as av:
        a = av.run(photo).faces[0].attributes
        assert "skin_tone_h" not in a and "skin_tone_by" not in a and seen[-1] == a["skin_tone"]
        assert "decided_by" not in av.from_frame(photo).attributes["skin_tone"]


def test_the_fitting_routine_writes_a_network_the_sdk_loads(tmp_path, monkeypatch):
    """``avatarizer-export skin-tone-net`` on a tiny synthetic set (one
    epoch, two folds): the ONNX file and the JSON naming its checksum,
    which the SDK loads and runs; the same inputs give the same bytes; the
    report's band widths; too few dark photos stop the run."""
    pytest.importorskip("torch")
    from types import SimpleNamespace

    from avatarizer_export import skintonenet as XT

    monkeypatch.setattr(XT, "EPOCHS", 1)
    monkeypatch.setattr(XT, "FOLDS", 2)
    # (one epoch learns nothing to de-attenuate: the slope's own check refuses that, so it is given here)
    seen = []
    monkeypatch.setattr("avatarizer_export.skintone.deattenuation",
                        lambda oof, y, train: seen.append((len(oof), len(y), int(train.sum()))) or (0.5, 0.9))
    rng = np.random.default_rng(0)
    n = 150
    labels_y = 1.0 + (np.arange(n) % 19) / 2.0  # 1 .. 10 in half steps
    # lighter crops for lighter labels, noise on top
    crops = np.clip(240 - 20 * labels_y[:, None, None, None] + rng.normal(0, 20, (n, 128, 128, 3)), 0, 255)
    crops = crops.astype(np.uint8)
    keys = [f"ffhq128/{i:04d}.jpg" for i in range(n)]
    labels = dict(zip(keys, labels_y.tolist()))
    monkeypatch.setattr("avatarizer_export.data.load_aligned", lambda cache: SimpleNamespace(crops=crops, keys=keys))
    monkeypatch.setattr("avatarizer_export.data.skin_tone_labels", lambda: labels)
    monkeypatch.setattr("avatarizer_export.data.is_heldout", lambda k: int(k[8:12]) >= 125)
    skin = {i: np.clip(np.array([0.9, 0.7, 0.6]) - 0.06 * labels_y[i], 0, 1) for i in range(n)}
    bars = []

    def measured(al, rows, progress=True):
        bars.append(progress)
        return {int(i): skin[int(i)] for i in rows}

    monkeypatch.setattr("avatarizer_export.skintone.measured_skin", measured)
    docs = []
    for run in ("a", "b"):
        out = tmp_path / run
        out.mkdir()
        docs.append(XT.fit(None, tmp_path, data=out, quiet=True))
    assert docs[0]["sha256"] == docs[1]["sha256"]
    assert bars and not any(bars)  # --quiet: no progress bars (the measured skin's printed all the same)
    rep = docs[0]["report"]
    assert docs[0]["trained_on"]["photos"] == 125 and rep["held out, all"]["photos"] == 25
    oof = rep["out of fold (training photos)"]
    assert set(oof["margins"]) == {str(m) for m in XT.MARGINS} and oof["margin_shipped"] == ST.MARGIN
    assert oof["deattenuation"] == {"intercept": 0.5, "slope": 0.9} and seen[0] == (125, 125, 125)
    assert "at the shipped margin" in rep["held out, all"]
    RN.clear_cache()
    try:
        net = ST.load_network(tmp_path / "a")
        assert net is not None and 0.0 <= net.probabilities(crops[0])["skin_tone"] <= 1.0
    finally:
        RN.clear_cache()
    monkeypatch.setattr("avatarizer_export.data.skin_tone_labels", lambda: {k: min(v, 5.0) for k, v in labels.items()})
    with pytest.raises(SystemExit, match="too few"):
        XT.fit(None, tmp_path, data=tmp_path / "few", quiet=True)


def test_widest_margin_keeps_every_group_under_the_limit():
    """The widest band whose every skin-tone group stays at or under MAX_OFF
    (a group without photos ignored), else within TOLERANCE of the best band's worst group."""
    from avatarizer_export import skintonenet as XT

    g = [name for name, _, _ in XT.GROUPS]
    rows = {"4.0": {g[0]: 0.01, g[1]: 0.02, g[2]: 0.03}, "6.0": {g[0]: 0.02, g[1]: 0.03, g[2]: 0.05},
            "8.0": {g[0]: 0.02, g[1]: 0.03, g[2]: 0.09}, "10.0": {g[0]: 0.01, g[1]: None, g[2]: 0.2}}
    assert XT.widest_margin(rows) == 6.0
    # none under MAX_OFF: the widest within TOLERANCE of the lowest worst group
    over = {"4.0": {g[0]: 0.01, g[1]: 0.02, g[2]: 0.051}, "6.0": {g[0]: 0.01, g[1]: 0.02, g[2]: 0.055},
            "8.0": {g[0]: 0.01, g[1]: 0.02, g[2]: 0.077}, "10.0": {g[0]: 0.01, g[1]: 0.02, g[2]: 0.097}}
    assert XT.widest_margin(over) == 6.0 and XT.widest_margin({}) is None
    # a band under MAX_OFF: the tolerance does not widen it past the limit
    under = {"4.0": {g[0]: 0.01, g[1]: 0.02, g[2]: 0.045}, "6.0": {g[0]: 0.01, g[1]: 0.02, g[2]: 0.054}}
    assert XT.widest_margin(under) == 4.0
    # a share exactly a point above the lowest (rounded to 4 places) is within the tolerance
    edge = {"4.0": {g[0]: 0.0, g[1]: 0.0, g[2]: 0.0527}, "6.0": {g[0]: 0.0, g[1]: 0.0, g[2]: 0.0627}}
    assert XT.widest_margin(edge) == 6.0


@pytest.mark.slow
@pytest.mark.xdist_group("heldout_hybrid")
def test_held_out_skin_is_drawn_near_its_labelled_lightness(heldout_runs):
    """Held out, labelled by eye (``ffhq128``, ``ffhq128-labelled``), through
    ``Avatarizer()``: the avatar's skin L* is more than 15 off the labelled
    step's lightness for at most 5% of people and 3% of those labelled
    lighter than Monk 6, median |dL*| at most 6.2 (with H's skin tone
    head, ``eval``'s ``skin_tone_by_eye``: 5.9%, 4.2%, 6.96; with the
    network 4.1%, 1.9%, 5.59; with session 35's, fitted on 4,266 labels,
    at 5 L*: 3.1%, 1.5%, 5.00). The 27 labelled Monk 6 or darker are not
    bounded here: 6 of them were drawn that far off with H's, 7 with the
    first network's, 5 with session 35's (out of fold on the training
    photos, 13% -> 5.5% -> 5.0%)."""
    from avatarizer import schema as S
    from avatarizer.artist.photo import to_lab
    from avatarizer_export.data import is_heldout, skin_tone_labels

    faces = need_shared("data", "faces")
    labels = {k: v for k, v in skin_tone_labels().items()
              if k.split("/")[0] in ("ffhq128", "ffhq128-labelled") and is_heldout(k)}
    rgb = [S.index(f"face.{c}") for c in "rgb"]
    dl, dark = [], []
    if heldout_runs.avatarizer().estimator != "hybrid":
        pytest.skip("the shipped models are not installed here")
    for k, y in sorted(labels.items()):
        a = heldout_runs.avatar(faces / k)  # (Avatarizer().from_image, shared with the other held-out tests)
        if a is None:
            continue
        dl.append(abs(float(to_lab(np.asarray(a.params[rgb], np.float64))[0]) - float(ST.lightness_of_tone(y))))
        dark.append(y >= 6)
    dl, dark = np.array(dl), np.array(dark)
    assert len(dl) >= 280 and dark.sum() >= 25
    off = dl > 15
    assert off.mean() <= 0.05 and off[~dark].mean() <= 0.03 and np.median(dl) <= 6.2, \
        (off.mean(), off[~dark].mean(), np.median(dl))
