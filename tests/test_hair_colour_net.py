"""The hair-colour network (``avatarizer.haircolour``): its files, its part
in the hybrid's hair colour (``hair.fuse_hair_colour``'s third expert) and
what it finds on held-out photos labelled by eye."""
from __future__ import annotations

import json

import numpy as np
import pytest

from avatarizer import hair as HR
from avatarizer import haircolour as HC
from avatarizer import regionnet as RN
from conftest import damaged_region_files, need_shared, refused_with_warning

SHIPPED = RN.DATA / HC.SPEC.json_name


def test_its_classes_are_the_hair_colours():
    assert HC.CLASSES == HR.HAIR_COLOURS and HC.SPEC.region == (0, RN.CROP, 0, RN.CROP)


def test_the_shipped_network_loads_and_reads_a_crop():
    """Class probabilities that sum to 1, the same for a crop and its mirror
    image (averaged inside the graph); no thresholds (nothing is drawn at one)."""
    net = HC.load()
    assert net is not None and net.thresholds == {}
    doc = json.loads(SHIPPED.read_text())
    assert doc["outputs"] == list(HC.CLASSES) and "thresholds" not in doc
    crop = np.random.default_rng(0).integers(0, 256, (128, 128, 3), dtype=np.uint8)
    p = net.probabilities(crop)
    assert list(p) == list(HC.CLASSES) and sum(p.values()) == pytest.approx(1.0, abs=1e-4)
    q = net.probabilities(np.ascontiguousarray(crop[:, ::-1]))
    assert all(p[k] == pytest.approx(q[k], abs=1e-5) for k in p)
    with pytest.raises(ValueError, match="128x128x3"):
        net.probabilities(crop[:64])


@pytest.mark.parametrize("damage", ["missing", "not json", "checksum", "format", "outputs", "graph"])
def test_unusable_files_fall_back_with_a_warning(tmp_path, damage):
    folder = tmp_path / "data"
    folder.mkdir()
    if damage == "missing":
        RN.clear_cache()
        assert HC.load(folder) is None  # (no files: no warning, the hair colour read as before)
        return
    # (graph: a hat network under its name: one output)
    damaged_region_files(HC.SPEC, folder, damage, ["black", "brown"], "headwear_net.onnx")
    match = {"not json": "not used", "checksum": "SHA-256", "format": "format", "outputs": "outputs",
             "graph": "not used"}[damage]
    refused_with_warning(HC.load, folder, match)


def test_the_network_is_a_third_expert_of_the_fusion():
    """``fuse_hair_colour(network=...)`` multiplies the network's
    probabilities in (a mapping or a sequence); without it, as before."""
    h = {"black": 0.4, "brown": 0.4, "blond": 0.1, "red": 0.05, "gray": 0.05}
    region = {"black": 0.3, "brown": 0.3, "blond": 0.3, "red": 0.05, "gray": 0.05}
    before = HR.fuse_hair_colour(h, region)
    net = {"black": 0.05, "brown": 0.1, "blond": 0.8, "red": 0.03, "gray": 0.02}
    after = HR.fuse_hair_colour(h, region, network=net)
    assert max(before, key=before.get) in ("black", "brown") and max(after, key=after.get) == "blond"
    want = np.array([h[c] * region[c] * net[c] for c in HR.HAIR_COLOURS])
    assert [after[c] for c in HR.HAIR_COLOURS] == pytest.approx((want / want.sum()).tolist())
    assert HR.fuse_hair_colour(h, region, network=[net[c] for c in HR.HAIR_COLOURS]) == pytest.approx(after)
    alone = HR.model_hair_colour(h, network=net)
    assert max(alone, key=alone.get) == "blond"


def test_the_hybrid_reads_the_hair_colour_with_it(monkeypatch):
    """Through ``Avatarizer()`` (the hybrid): the hair colour is decided by
    H, the hair region and the network (``decided_by``), the network's own
    reading under ``hair_colour_network_read``; under a hat the hair
    region's reading is left out, the network's kept; on a tight crop the
    network is not used; without the network's files the attributes are
    those of before (no such keys)."""
    from avatarizer import Avatarizer
    from avatarizer.imageio import sample_photo

    photo = sample_photo()
    with Avatarizer() as av:
        if av.estimator != "hybrid":
            pytest.skip("the shipped models are not installed here")
        a = av.from_frame(photo)
        assert a is not None
        hc = a.attributes["hair_colour"]
        assert hc["decided_by"].endswith("x hair-colour network") and set(hc["probabilities"]) == set(HC.CLASSES)
        state = av.run(photo)
        read = state.faces[0].attributes["hair_colour_network_read"]
        assert set(read) == set(HC.CLASSES) and sum(read.values()) == pytest.approx(1.0, abs=1e-4)
        # under a hat the hair region's reading (of the hat) is left out; the network's stays (a review)
    with Avatarizer(attributes={"headwear": True}) as av:
        assert av.from_frame(photo).attributes["hair_colour"]["decided_by"] == "H x hair-colour network"
    # a tight crop (a hair region under HAIR_CLASS_MIN_AREA of it): not the network's (fitted on loose portraits)
    monkeypatch.setattr(HR, "HAIR_CLASS_MIN_AREA", 1.0)
    with Avatarizer() as av:
        state = av.run(photo)
        assert "hair_colour_network_read" not in state.faces[0].attributes
        assert state.faces[0].attributes["hair_colour_source"] == "H x hair region"
    monkeypatch.undo()
    monkeypatch.setattr(HC, "load", lambda folder=None: None)
    with Avatarizer() as av:
        b = av.from_frame(photo)
        assert "decided_by" not in b.attributes["hair_colour"]
        assert "hair_colour_network_read" not in av.run(photo).faces[0].attributes


def test_the_fitting_routine_writes_a_network_the_sdk_loads(tmp_path, monkeypatch):
    """``avatarizer-export hair-colour-net`` on a tiny synthetic set (one
    epoch): the ONNX file and the JSON naming its checksum, which the SDK
    loads and runs; the same inputs give the same bytes; too few photos of a
    colour stop the run."""
    pytest.importorskip("torch")
    from types import SimpleNamespace

    from avatarizer_export import haircolournet as XC

    monkeypatch.setattr(XC, "EPOCHS", 1)
    rng = np.random.default_rng(0)
    n = 150
    crops = rng.integers(0, 256, (n, 128, 128, 3), dtype=np.uint8)
    keys = [f"ffhq128/{i:04d}.jpg" for i in range(n)]
    labels = {k: i % 5 for i, k in enumerate(keys)}
    monkeypatch.setattr("avatarizer_export.data.load_aligned", lambda cache: SimpleNamespace(crops=crops, keys=keys))
    monkeypatch.setattr("avatarizer_export.skintone.hair_colour_labels", lambda shared: labels)
    monkeypatch.setattr("avatarizer_export.data.is_heldout", lambda k: int(k[8:12]) >= 125)
    docs = []
    for run in ("a", "b"):
        out = tmp_path / run
        out.mkdir()
        docs.append(XC.fit(None, tmp_path, data=out, quiet=True))
    assert docs[0]["sha256"] == docs[1]["sha256"]
    assert docs[0]["trained_on"]["photos"] == 125 and docs[0]["report"]["held out, all"]["photos"] == 25
    RN.clear_cache()
    try:
        net = HC.load(tmp_path / "a")
        assert net is not None and sum(net.probabilities(crops[0]).values()) == pytest.approx(1.0, abs=1e-4)
    finally:
        RN.clear_cache()
    monkeypatch.setattr("avatarizer_export.skintone.hair_colour_labels",
                        lambda shared: {k: v for k, v in labels.items() if v != 3})
    with pytest.raises(SystemExit, match="too few"):
        XC.fit(None, tmp_path, data=tmp_path / "few", quiet=True)


@pytest.mark.slow
def test_the_hybrid_draws_held_out_hair_colours_labelled_by_eye():
    """Held out, labelled by eye (``ffhq128``), through ``Avatarizer()``: the
    reported hair colour class (the one the drawing follows) has a balanced
    accuracy of at least 0.66 (0.693 measured when it shipped; ``eval``'s
    drawn class 0.688, 0.636 without the network), blond found in at least
    19 of the 29 blond heads (21; 15 without). Session 43's refit (more red
    heads): 0.692, blond 19 of 29, at that floor."""
    from avatarizer import Avatarizer
    from avatarizer.imageio import load_image
    from avatarizer_export.data import eye_labels, is_heldout

    faces = need_shared("data", "faces")
    labels = {k: v["hair_colour"] for k, v in eye_labels().items()
              if k.startswith("ffhq128/") and is_heldout(k) and isinstance(v.get("hair_colour"), int)
              and v["hair_colour"] >= 0}
    got, want = [], []
    with Avatarizer() as av:
        if av.estimator != "hybrid":
            pytest.skip("the shipped models are not installed here")
        for k, y in sorted(labels.items()):
            a = av.from_frame(load_image(faces / k))
            if a is not None:
                got.append(HR.HAIR_COLOURS.index(a.attributes["hair_colour"]["value"]))
                want.append(y)
    got, want = np.array(got), np.array(want)
    ba = np.mean([np.mean(got[want == c] == c) for c in range(5) if (want == c).any()])
    blond = HR.HAIR_COLOURS.index("blond")
    assert ba >= 0.66, ba
    assert int(((got == blond) & (want == blond)).sum()) >= 19 and int((want == blond).sum()) == 29


@pytest.mark.slow
def test_tight_crops_keep_their_hair_colour_without_the_network():
    """UTKFace's tight chips labelled by eye (``labels/utkface_hair_colour.jsonl``,
    never trained on): the network is not used there (the hair region
    covers less than ``HAIR_CLASS_MIN_AREA`` of the crop), and black hair
    stays black: with it, 17 of 129 black-haired people were drawn brown
    and a Black baby blond (85 of 129 black found without, 68 with)."""
    from avatarizer import Avatarizer
    from avatarizer.imageio import load_image
    from avatarizer_export.data import EYE_LABELS

    faces = need_shared("data", "faces", "utkface200")
    rows = [json.loads(line) for line in (EYE_LABELS / "utkface_hair_colour.jsonl").read_text().splitlines()]
    labels = {r["file"]: r["hair_colour"] for r in rows if isinstance(r.get("hair_colour"), int) and r["hair_colour"] >= 0}
    black, found, used = 0, 0, 0
    with Avatarizer() as av:
        if av.estimator != "hybrid":
            pytest.skip("the shipped models are not installed here")
        for k, y in sorted(labels.items()):
            state = av.run(load_image(faces.parent / k))
            if not state.faces:
                continue
            a = state.faces[0].attributes
            used += "hair_colour_network_read" in a
            if y == 0:
                black += 1
                found += a["hair_colour"] == "black"
    assert black == 129 and found >= 80, (found, black)
    assert used <= 0.1 * len(labels), used
