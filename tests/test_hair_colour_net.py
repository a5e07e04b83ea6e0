"""The hair-colour network (``avatarizer.haircolour``): its files, its part
in the hybrid's hair colour (``hair.fuse_hair_colour``'s third expert) and
what it finds on held-out photos labelled by eye."""
from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pytest

from avatarizer import hair as HR
from avatarizer import haircolour as HC
from avatarizer import regionnet as RN
from avatarizer import schema as S
from conftest import FakeRegionNetwork, damaged_region_files, framed_cache, need_shared, refused_with_warning

SHIPPED = RN.DATA / HC.SPEC.json_name


def test_its_classes_are_the_hair_colours():
    assert HC.CLASSES == HR.HAIR_COLOURS and HC.SPEC.region == HC.SPEC_TIGHT.region == (0, RN.CROP, 0, RN.CROP)
    assert HC.SPEC_TIGHT.outputs == HC.SPEC.outputs and HC.SPEC_TIGHT.name != HC.SPEC.name


@pytest.mark.parametrize("tight", [False, True], ids=["portrait", "tight"])
def test_the_shipped_network_loads_and_reads_a_crop(tight):
    """Class probabilities that sum to 1, the same for a crop and its mirror
    image (averaged inside the graph); no thresholds (nothing is drawn at
    one); the tight crops' network records the framings it was shown, the
    other none."""
    spec, loader = (HC.SPEC_TIGHT, HC.load_tight) if tight else (HC.SPEC, HC.load)
    net = loader()
    assert net is not None and net.thresholds == {}
    doc = json.loads((RN.DATA / spec.json_name).read_text())
    assert doc["outputs"] == list(HC.CLASSES) and "thresholds" not in doc
    chips = doc["trained_on"].get("tight_chips")
    assert (chips is not None and 0 < chips["share"] < 1 and chips["framings"] > 0) if tight else chips is None
    crop = np.random.default_rng(0).integers(0, 256, (128, 128, 3), dtype=np.uint8)
    p = net.probabilities(crop)
    assert list(p) == list(HC.CLASSES) and sum(p.values()) == pytest.approx(1.0, abs=1e-4)
    q = net.probabilities(np.ascontiguousarray(crop[:, ::-1]))
    assert all(p[k] == pytest.approx(q[k], abs=1e-5) for k in p)
    with pytest.raises(ValueError, match="128x128x3"):
        net.probabilities(crop[:64])


@pytest.mark.parametrize("tight", [False, True], ids=["portrait", "tight"])
@pytest.mark.parametrize("damage", ["missing", "not json", "checksum", "format", "outputs", "graph"])
def test_unusable_files_fall_back_with_a_warning(tmp_path, damage, tight):
    spec, loader = (HC.SPEC_TIGHT, HC.load_tight) if tight else (HC.SPEC, HC.load)
    folder = tmp_path / "data"
    folder.mkdir()
    if damage == "missing":
        RN.clear_cache()
        assert loader(folder) is None  # (no files: no warning, the hair colour read as before)
        return
    # (graph: a hat network under its name: one output)
    damaged_region_files(spec, folder, damage, ["black", "brown"], "headwear_net.onnx")
    match = {"not json": "not used", "checksum": "SHA-256", "format": "format", "outputs": "outputs",
             "graph": "not used"}[damage]
    refused_with_warning(loader, folder, match)


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


def test_tempered_weighs_an_expert_less():
    p = {"black": 0.8, "brown": 0.2}
    assert HC.tempered(p, 1.0) == pytest.approx(p)
    assert HC.tempered(p, 0.0) == pytest.approx({"black": 0.5, "brown": 0.5})
    assert HC.tempered(p, 0.5) == pytest.approx({"black": 2 / 3, "brown": 1 / 3})
    low = HC.tempered({"black": 0.0, "brown": 1.0}, 0.5)
    assert 0.0 < low["black"] < 1e-3 and sum(low.values()) == pytest.approx(1.0)
    assert HC.tempered({"black": 0.0, "brown": 0.0}, 0.5) == pytest.approx({"black": 0.5, "brown": 0.5})
    assert 0.0 < HC.TIGHT_WEIGHT <= 1.0


def test_the_hybrid_reads_the_hair_colour_with_it(monkeypatch):
    """Through ``Avatarizer()`` (the hybrid): the hair colour is decided by
    H, the hair region and the network (``decided_by``), the network's own
    reading under ``hair_colour_network_read``; under a hat the hair
    region's reading is left out, the network's kept; on a tight crop the
    tight crops' network reads instead (``hair_colour_network``), and
    without its files none; without the network's files the attributes are
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
        assert state.faces[0].attributes["hair_colour_network"] == "portrait"
        portrait = state.faces[0].attributes["hair_colour_probs"]
    # (the weight is the tight crops' alone: a portrait's fusion is the same at any TIGHT_WEIGHT)
    monkeypatch.setattr(HC, "TIGHT_WEIGHT", 0.0)
    with Avatarizer() as av:
        assert av.run(photo).faces[0].attributes["hair_colour_probs"] == pytest.approx(portrait, abs=1e-9)
    monkeypatch.undo()
    # under a hat the hair region's reading (of the hat) is left out; the network's stays (a review)
    with Avatarizer(attributes={"headwear": True}) as av:
        assert av.from_frame(photo).attributes["hair_colour"]["decided_by"] == "H x hair-colour network"
    # a tight crop (a hair region under HAIR_CLASS_MIN_AREA of it): the tight crops' network reads it
    # (the other was fitted on loose portraits); without its files, no network
    monkeypatch.setattr(HR, "HAIR_CLASS_MIN_AREA", 1.0)
    with Avatarizer() as av:
        face = av.run(photo).faces[0]
        a = face.attributes
        assert a["hair_colour_network"] == "tight crop" and a["hair_colour_network_read"] != read
        assert a["hair_colour_network_read"] == pytest.approx(HC.load_tight().probabilities(face.aligned.crop(128)))
        assert a["hair_colour_source"] == "H x hair region x hair-colour network"
        fused = a["hair_colour_probs"]
    # it is fused at TIGHT_WEIGHT: at 0 its reading weighs nothing (the fusion of H and the hair region alone)
    monkeypatch.setattr(HC, "TIGHT_WEIGHT", 0.0)
    with Avatarizer() as av:
        unweighed = av.run(photo).faces[0].attributes["hair_colour_probs"]
    monkeypatch.setattr(HC, "load_tight", lambda folder=None: None)
    with Avatarizer() as av:
        state = av.run(photo)
        assert "hair_colour_network_read" not in state.faces[0].attributes
        assert state.faces[0].attributes["hair_colour_source"] == "H x hair region"
        alone = state.faces[0].attributes["hair_colour_probs"]
    assert unweighed == pytest.approx(alone, abs=1e-6) and fused != pytest.approx(alone, abs=1e-3)
    monkeypatch.undo()
    monkeypatch.setattr(HC, "load", lambda folder=None: None)
    monkeypatch.setattr(HC, "load_tight", lambda folder=None: None)
    with Avatarizer() as av:
        b = av.from_frame(photo)
        assert "decided_by" not in b.attributes["hair_colour"]
        assert "hair_colour_network_read" not in av.run(photo).faces[0].attributes


def test_the_fitting_routine_writes_a_network_the_sdk_loads(tmp_path, monkeypatch):
    """``avatarizer-export hair-colour-net`` on a tiny synthetic set (one
    epoch): the ONNX file and the JSON naming its checksum, which the SDK
    loads and runs; the same inputs give the same bytes; the tight crops'
    network only where the cache holds UTKFace training photos' framings
    (their transforms, the photos' sizes under ``shared``), fitted on crops
    shown through them; too few photos of a colour stop the run."""
    pytest.importorskip("torch")
    from types import SimpleNamespace

    from avatarizer_export import haircolournet as XC

    monkeypatch.setattr(XC, "EPOCHS", 1)
    n, m = 150, 6
    # (each photo 60 px square in a frame padded by 20: conftest.framed_cache)
    shared, framed = framed_cache(tmp_path, n, m)
    crops, keys = framed.crops, framed.keys
    labels = {k: i % 5 for i, k in enumerate(keys[:n])}
    monkeypatch.setattr("avatarizer_export.skintone.hair_colour_labels", lambda shared: labels)
    monkeypatch.setattr("avatarizer_export.data.is_heldout",
                        lambda k: k.startswith("ffhq128/") and int(k[8:12]) >= 125)
    grids = XC.tight_framings(shared, framed)
    assert grids.shape == (m, 128, 128, 2)
    # a crop pixel's grid point is its own canonical place, clamped to the photo's pixel centres
    c = (np.arange(128) + 0.5) / 64 - 1
    edge = (20.5 - 70) / 40, (79.5 - 70) / 40
    assert grids[0, 64, :, 0] == pytest.approx(np.clip(c, *edge), abs=1e-6)
    assert grids[0, :, 64, 1] == pytest.approx(np.clip(c, *edge), abs=1e-6)
    assert XC.tight_framings(None, framed) is None
    assert XC.tight_framings(shared, SimpleNamespace(crops=crops, keys=keys)) is None
    docs = []
    for run, aligned, where in (("a", framed, shared), ("b", framed, shared), ("c", framed, None)):
        monkeypatch.setattr("avatarizer_export.data.load_aligned", lambda cache, aligned=aligned: aligned)
        out = tmp_path / run
        out.mkdir()
        docs.append(XC.fit(where, tmp_path, data=out, quiet=True))
    (a, ta), (b, tb), (c_, tc) = ((d["hair_colour_net"], d["hair_colour_net_tight"]) for d in docs)
    assert a["sha256"] == b["sha256"] == c_["sha256"] and ta["sha256"] == tb["sha256"] != a["sha256"]
    assert tc is None and not (tmp_path / "c" / HC.SPEC_TIGHT.json_name).exists()
    assert a["trained_on"]["photos"] == 125 and a["report"]["held out, all"]["photos"] == 25
    assert "tight_chips" not in a["trained_on"] and ta["trained_on"]["tight_chips"]["framings"] == m
    RN.clear_cache()
    try:
        for loader in (HC.load, HC.load_tight):
            net = loader(tmp_path / "a")
            assert net is not None and sum(net.probabilities(crops[0]).values()) == pytest.approx(1.0, abs=1e-4)
    finally:
        RN.clear_cache()
    monkeypatch.setattr("avatarizer_export.skintone.hair_colour_labels",
                        lambda shared: {k: v for k, v in labels.items() if v != 3})
    with pytest.raises(SystemExit, match="too few"):
        XC.fit(None, tmp_path, data=tmp_path / "few", quiet=True)


@pytest.mark.slow
@pytest.mark.xdist_group("heldout_hybrid")
def test_the_hybrid_draws_held_out_hair_colours_labelled_by_eye(heldout_runs):
    """Held out, labelled by eye (``ffhq128``), through ``Avatarizer()``: the
    reported hair colour class (the one the drawing follows) has a balanced
    accuracy of at least 0.66 (0.693 measured when it shipped; ``eval``'s
    drawn class 0.688, 0.636 without the network), blond found in at least
    19 of the 29 blond heads (21; 15 without). Session 43's refit (more red
    heads): 0.692, blond 19 of 29, at that floor."""
    from avatarizer_export.data import eye_labels, is_heldout

    faces = need_shared("data", "faces")
    labels = {k: v["hair_colour"] for k, v in eye_labels().items()
              if k.startswith("ffhq128/") and is_heldout(k) and isinstance(v.get("hair_colour"), int)
              and v["hair_colour"] >= 0}
    got, want = [], []
    if heldout_runs.avatarizer().estimator != "hybrid":
        pytest.skip("the shipped models are not installed here")
    for k, y in sorted(labels.items()):
        a = heldout_runs.avatar(faces / k)  # (Avatarizer().from_image, shared with the other held-out tests)
        if a is not None:
            got.append(HR.HAIR_COLOURS.index(a.attributes["hair_colour"]["value"]))
            want.append(y)
    got, want = np.array(got), np.array(want)
    ba = np.mean([np.mean(got[want == c] == c) for c in range(5) if (want == c).any()])
    blond = HR.HAIR_COLOURS.index("blond")
    assert ba >= 0.66, ba
    assert int(((got == blond) & (want == blond)).sum()) >= 19 and int((want == blond).sum()) == 29


@pytest.mark.slow
@pytest.mark.xdist_group("heldout_hybrid")
def test_tight_crops_are_read_by_the_tight_crops_network(heldout_runs):
    """UTKFace's tight chips labelled by eye (``labels/utkface_hair_colour.jsonl``,
    never trained on; both splits): the tight crops' network reads nearly
    all of them (the hair region covers less than ``HAIR_CLASS_MIN_AREA``
    of the crop), the reported class has a balanced accuracy of at least
    0.68 (0.697 measured, fused at ``TIGHT_WEIGHT``; 0.714 at full weight,
    0.646 with no network there, session 31's gate; the loose portraits'
    network there drew 17 of 129 black-haired people brown), and black
    hair stays black (at least 80 of 129; 86 measured, 84 with no
    network)."""
    from avatarizer_export.data import tight_crop_hair_colours

    faces = need_shared("data", "faces", "utkface200")
    labels = tight_crop_hair_colours()
    got, want, used = [], [], 0
    if heldout_runs.avatarizer().estimator != "hybrid":
        pytest.skip("the shipped models are not installed here")
    for k, y in sorted(labels.items()):
        face = heldout_runs.run(faces.parent / k)  # (Avatarizer().run(...).faces[0], shared)
        if face is None:
            continue
        a = face.attributes
        used += a.get("hair_colour_network") == "tight crop"
        got.append(HR.HAIR_COLOURS.index(a["hair_colour"]))
        want.append(y)
    got, want = np.array(got), np.array(want)
    ba = np.mean([np.mean(got[want == c] == c) for c in range(5) if (want == c).any()])
    black = HR.HAIR_COLOURS.index("black")
    print(f"tight crops: {len(got)} read, network {used}, balanced accuracy {ba:.3f}, "
          f"black {int(((got == black) & (want == black)).sum())}/{int((want == black).sum())}")
    assert len(labels) == 312 and used >= 0.9 * len(got), used
    assert int((want == black).sum()) == 129 and int(((got == black) & (want == black)).sum()) >= 80
    assert ba >= 0.68, ba


def test_tight_framings_clamp_a_turned_face_to_its_photo(tmp_path, monkeypatch):
    """A photo 50 px wide and 70 tall (padded by 10) under a turned,
    unevenly scaled framing that runs past all four of its edges: each crop
    pixel's grid point is, pixel by pixel, the canonical place of its frame
    point moved to the nearest pixel centre inside the photo (what the
    aligner's replicated border shows there); and ``_augment`` at a share
    of 1 shows every crop through a grid."""
    pytest.importorskip("torch")
    import math
    from types import SimpleNamespace

    import torch
    from PIL import Image

    from avatarizer_export import haircolournet as XC

    (tmp_path / "data" / "faces" / "utkface200").mkdir(parents=True)
    Image.new("RGB", (50, 70)).save(tmp_path / "data" / "faces" / "utkface200" / "a.jpg")
    th, sx, sy, pad = 0.3, 34.0, 44.0, 10
    A = np.array([[sx * math.cos(th), -sy * math.sin(th)], [sx * math.sin(th), sy * math.cos(th)]])
    t = np.array([pad + 27.0, pad + 33.0])
    framed = SimpleNamespace(keys=["utkface200/a.jpg"], transforms=np.concatenate([A, t[:, None]], 1)[None],
                             pad=np.array([pad]))
    grid = XC.tight_framings(tmp_path, framed)[0]
    Ainv = np.linalg.inv(A)
    clamped = {"x<": 0, "x>": 0, "y<": 0, "y>": 0}
    for r in range(0, 128, 3):
        for q in range(0, 128, 3):
            cx, cy = (q + 0.5) / 64 - 1, (r + 0.5) / 64 - 1
            fx, fy = A[0, 0] * cx + A[0, 1] * cy + t[0], A[1, 0] * cx + A[1, 1] * cy + t[1]
            clamped["x<"] += fx < pad + 0.5
            clamped["x>"] += fx > pad + 50 - 0.5
            clamped["y<"] += fy < pad + 0.5
            clamped["y>"] += fy > pad + 70 - 0.5
            gx, gy = min(max(fx, pad + 0.5), pad + 49.5), min(max(fy, pad + 0.5), pad + 69.5)
            want = Ainv @ np.array([gx - t[0], gy - t[1]])
            assert grid[r, q] == pytest.approx(want, abs=1e-4), (r, q)
    assert min(clamped.values()) > 0, clamped  # every edge clamps some pixels
    # _augment: every crop through a grid (here one that shows the crop's centre everywhere)
    x = torch.rand(4, 3, 128, 128)
    monkeypatch.setattr(XC, "TIGHT_SHARE", 1.0)
    y = XC._augment(x, np.random.default_rng(0), torch.zeros(1, 128, 128, 2))
    flat = y.reshape(4, 3, -1)
    assert torch.allclose(flat, flat[..., :1].expand_as(flat), atol=1e-6)




def test_the_artist_reads_the_hair_colour_with_the_networks(monkeypatch):
    """The auto-artist (the ceiling the pairs come from) weighs the hair
    colour class with the hair-colour network as the hybrid does without H:
    the portraits' network on a portrait, the tight crops' network (tempered
    to TIGHT_WEIGHT) on a crop whose hair region is too small to read; a
    network sure of red draws red hair on the astronaut (brown-haired, read
    brown without it); off by the style's switch or without the files."""
    import skimage.data

    from avatarizer.align import FaceAligner
    from avatarizer.artist import ArtistStyle, AutoArtist
    from avatarizer.artist import hair as AH
    from avatarizer.schema import index

    image = skimage.data.astronaut()
    with FaceAligner() as al:
        face = al.align(image)
        assert face is not None and face.hair_mask(ArtistStyle().crop_size) is not None  # (made while open)
    rgb = [index(f"hair_front.{c}") for c in "rgb"]
    red = {c: (0.96 if c == "red" else 0.01) for c in HR.HAIR_COLOURS}

    def drawn(portrait, tight, **style):
        monkeypatch.setattr(HC, "load", lambda folder=None: portrait)
        monkeypatch.setattr(HC, "load_tight", lambda folder=None: tight)
        p = AutoArtist(ArtistStyle().replace(**style)).fit(face)
        return HR.hair_colour_class_of(p[rgb])

    without = drawn(None, None)
    assert without != "red"
    portrait, tight = FakeRegionNetwork(red), FakeRegionNetwork(red)
    assert drawn(portrait, tight) == "red"
    assert len(portrait.shown) == 1 and tight.shown == []
    assert portrait.shown[0].shape == (RN.CROP, RN.CROP, 3) and portrait.shown[0].dtype == np.uint8
    off = FakeRegionNetwork(red)
    assert drawn(off, off, hair_colour_network=False) == without and off.shown == []
    nan = FakeRegionNetwork({**red, "red": float("nan")})
    assert drawn(nan, nan) == without
    # a crop whose hair region is too small: the tight crops' network, tempered as the hybrid tempers it
    monkeypatch.setattr(HC, "load", lambda folder=None: portrait)
    monkeypatch.setattr(HC, "load_tight", lambda folder=None: tight)
    got = AH.hair_colour_network(ArtistStyle(), SimpleNamespace(size=192, network_crop=lambda: None), 10)
    assert got is not None and abs(got["red"] - HC.tempered(red, HC.TIGHT_WEIGHT)["red"]) < 1e-9
    assert len(tight.shown) == 1 and len(portrait.shown) == 1


@pytest.mark.xdist_group("heldout_artist")
def test_the_artist_draws_held_out_hair_colours_labelled_by_eye(heldout_runs):
    """UTKFace's tight chips labelled by eye (as above) and the held-out
    ``ffhq128`` portraits labelled by eye, through ``Avatarizer(estimator=
    "artist")``: the drawn class's balanced accuracy (session 47, with the
    networks; ``eval``'s held-out ``hair_colour_by_eye`` for the artist:
    UTKFace 0.484 -> 0.753, ffhq128 0.620 -> 0.680; here 0.716 and 0.683)."""
    from avatarizer_export.data import eye_labels, is_heldout, tight_crop_hair_colours

    faces = need_shared("data", "faces")
    if HC.load() is None or HC.load_tight() is None:
        pytest.skip("the hair-colour networks are not installed here")
    sets = {"utkface200": tight_crop_hair_colours(),
            "ffhq128": {k: v["hair_colour"] for k, v in eye_labels().items()
                        if k.startswith("ffhq128/") and is_heldout(k) and isinstance(v.get("hair_colour"), int)
                        and v["hair_colour"] >= 0}}
    scores = {}
    for name, labels in sets.items():
        got, want = [], []
        for k, y in sorted(labels.items()):
            a = heldout_runs.avatar(faces / k, estimator="artist")  # (Avatarizer(estimator="artist").from_image)
            if a is not None:
                got.append(HR.HAIR_COLOURS.index(HR.hair_colour_class_of(a.params[[
                    S.index(f"hair_front.{c}") for c in "rgb"]])))
                want.append(y)
        got, want = np.array(got), np.array(want)
        scores[name] = float(np.mean([np.mean(got[want == c] == c) for c in range(5) if (want == c).any()]))
    print(f"artist hair colour, balanced accuracy: {scores}")
    assert scores["utkface200"] >= 0.70 and scores["ffhq128"] >= 0.64, scores


def test_the_artist_weighs_grey_by_its_own_age_prior_with_the_network(monkeypatch):
    """With the network, grey is weighed as the artist weighed it without
    one: by its own age prior (``artist_gray_ratio``, capped at 1), carried
    by the fusion's first expert, never by H's prior and child gate (fitted
    on H's ages; the artist reads children's and masked adults' ages
    lower): the fusion gets no age."""
    import skimage.data

    from avatarizer.align import FaceAligner
    from avatarizer.artist import ArtistStyle, AutoArtist
    from avatarizer.artist import accessories as AC
    from avatarizer.artist import hair as AH

    for ratio in (0.15, 1.0):
        e = AH._age_expert(ratio)
        assert abs(sum(e.values()) - 1.0) < 1e-12
        assert abs(e["gray"] / e["black"] - ratio) < 1e-9 and e["black"] == e["brown"] == e["blond"] == e["red"]
    assert AH._age_expert(float("nan"))["gray"] == AH._age_expert(1.0)["gray"]
    with FaceAligner() as al:
        face = al.align(skimage.data.astronaut())
        assert face is not None and face.hair_mask(ArtistStyle().crop_size) is not None
    seen = []
    real = HR.hair_colour_of_class

    def spy(*a, **kw):
        seen.append(kw.get("model"))
        return real(*a, **kw)

    monkeypatch.setattr(HR, "hair_colour_of_class", spy)
    monkeypatch.setattr(AC, "age_estimate", lambda *a, **k: 12.0)
    monkeypatch.setattr(HC, "load", lambda folder=None: FakeRegionNetwork({c: 0.2 for c in HR.HAIR_COLOURS}))
    AutoArtist().fit(face)
    assert len(seen) == 1 and seen[0] is not None and seen[0][2] is None
    assert abs(seen[0][0]["gray"] / seen[0][0]["black"] - AC.artist_gray_ratio(12.0)) < 1e-9
