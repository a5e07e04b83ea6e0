"""The hat network (``avatarizer.headwear.NETWORK``, ``avatarizer.regionnet``):
its files, its decision in the hybrid (``hair.add_hat_network``,
``hat_query``, ``merge``) and the hats it finds on held-out photos."""
from __future__ import annotations

import json

import numpy as np
import pytest

from avatarizer import hair as HR
from avatarizer import headwear as HW
from avatarizer import regionnet as RN
from avatarizer import schema as S
from conftest import need_shared

DRAW = {"headwear": 0.326}
TH = {"headwear": {"draw": 0.8, "decision": 0.4}}


def _outputs(headwear=0.1):
    return {"hair_colour": np.array([[0.1, 0.6, 0.1, 0.1, 0.1]], np.float32),
            "glasses": np.array([[0.9, 0.05, 0.05]], np.float32),
            "binary": np.array([[0.1, 0.1, 0.1, headwear, 0.9]], np.float32),
            "regress": np.array([[41.0, 0.2, 0.3, 0.1, 0.4]], np.float32)}


def _hat_drawn(a) -> bool:
    bank = HR.HairBank.load()
    p = HR.merge(S.sample(1, seed=2)[0], bank.entry(0), (0.2, 0.1, 0.1), a, thresholds=DRAW)
    return float(p[S.index("headwear.type")]) > 0.5


def test_the_networks_hat_replaces_hs_both_ways_and_the_query_follows_the_hat_drawn():
    # H missed it (P 0.1): the network draws it; the retrieval is asked for a hat, as if the app set one
    a = HR.add_hat_network(HR.decode_attributes(_outputs(0.1), draw=DRAW), 0.95, TH)
    assert a["drawn"]["headwear"] and a["headwear_by"] == HR.HAT_NETWORK_BY and _hat_drawn(a)
    assert a["headwear_model_read"] == pytest.approx(0.1) and HR.hat_query(a)["headwear"] == 1.0
    pub = HR.public_attributes(a)["headwear"]
    assert pub == {"value": True, "probability": pytest.approx(0.95), "decided_by": HR.HAT_NETWORK_BY}
    # H drew one (P 0.7) the network does not: none drawn, the query says none
    a = HR.add_hat_network(HR.decode_attributes(_outputs(0.7), draw=DRAW), 0.2, TH)
    assert not a["drawn"]["headwear"] and not _hat_drawn(a) and HR.hat_query(a)["headwear"] == 0.0
    # both agree: the query keeps H's own score (the bank's entries hold H's scores)
    a = HR.add_hat_network(HR.decode_attributes(_outputs(0.7), draw=DRAW), 0.9, TH)
    assert _hat_drawn(a) and HR.hat_query(a)["headwear"] == pytest.approx(0.7)
    a = HR.add_hat_network(HR.decode_attributes(_outputs(0.05), draw=DRAW), 0.5, TH)
    assert not _hat_drawn(a) and a["decided"]["headwear"] and HR.hat_query(a)["headwear"] == pytest.approx(0.05)
    # without the network the query is the attributes as they are
    plain = HR.decode_attributes(_outputs(0.7), draw=DRAW)
    assert HR.hat_query(plain) is plain


def test_what_the_app_sets_wins_and_the_model_reading_is_the_networks():
    a = HR.apply_settings(HR.add_hat_network(HR.decode_attributes(_outputs(0.1), draw=DRAW), 0.95, TH),
                          {"headwear": False})
    assert not _hat_drawn(a) and HR.hat_query(a) is a
    pub = HR.public_attributes(a)["headwear"]
    assert pub["value"] is False and pub["source"] == "app"
    assert pub["model"] == {"value": True, "probability": pytest.approx(0.95), "decided_by": HR.HAT_NETWORK_BY}
    a = HR.apply_settings(HR.add_hat_network(HR.decode_attributes(_outputs(0.7), draw=DRAW), 0.1, TH),
                          {"headwear": True})
    assert _hat_drawn(a) and HR.public_attributes(a)["headwear"]["model"]["value"] is False
    # a face cut by the frame's edge un-draws the network's hat (the pipeline's rule): merge follows
    a = HR.add_hat_network(HR.decode_attributes(_outputs(0.1), draw=DRAW), 0.95, TH)
    a["drawn"]["headwear"] = False
    a["headwear_by"] = "not drawn: the face is cut by the frame's edge"
    assert not _hat_drawn(a) and HR.hat_query(a)["headwear"] == pytest.approx(0.1)


def test_the_cli_says_which_hats_the_network_found():
    from avatarizer.cli import _attribute_lines

    a = HR.add_hat_network(HR.decode_attributes(_outputs(0.1), draw=DRAW), 0.95, TH)
    assert "  headwear: yes (p 0.95, from the hat network)" in _attribute_lines(HR.public_attributes(a)).splitlines()


def test_the_shipped_hat_network_loads_and_reads_a_crop(tmp_path):
    net = HW.load_network()
    assert net is not None, "sdk/avatarizer/data/headwear_net.json and .onnx are missing or unusable"
    doc = json.loads((RN.DATA / HW.NETWORK.json_name).read_text())
    # H's hats' precision (an invented hat is worse than a missed one), not the other accessories' 0.9
    assert doc["precision_target"] == 0.95 and 0.0 < net.thresholds["headwear"]["draw"] < 1.0
    r = doc["report"]["out of fold (labelled training photos)"]["headwear"]
    assert r["precision"] >= 0.95 and r["recall"] > 0.5, r
    crop = np.random.default_rng(0).integers(0, 256, (128, 128, 3), dtype=np.uint8)
    p = net.probabilities(crop)
    assert set(p) == {"headwear"} and 0.0 <= p["headwear"] <= 1.0
    assert abs(net.probabilities(np.ascontiguousarray(crop[:, ::-1]))["headwear"] - p["headwear"]) < 1e-5
    # another block's file is refused with a warning (one loader for both networks)
    import shutil

    for name in (HW.NETWORK.json_name, HW.NETWORK.onnx_name):
        shutil.copy(RN.DATA / name, tmp_path / name)
    (tmp_path / HW.NETWORK.json_name).write_text(json.dumps({**doc, "region": [56, 120, 24, 104]}))
    RN.clear_cache()
    try:
        with pytest.warns(RuntimeWarning, match="hat network is not used"):
            assert HW.load_network(tmp_path) is None
    finally:
        RN.clear_cache()


def _held_out_hats(av, lab, faces) -> tuple[int, int, int, int]:
    """(hats found, hats, hats invented, bare heads) of ``av`` on the photos ``lab`` labels."""
    from avatarizer import load_image

    found = hats = invented = bare = 0
    for k, hat in sorted(lab.items()):
        r = av.run(load_image(faces / k))
        if not r.faces:
            continue
        shown = bool(r.faces[0].attributes["drawn"]["headwear"])
        found, hats = found + (hat and shown), hats + hat
        invented, bare = invented + (not hat and shown), bare + (not hat)
    return found, hats, invented, bare


@pytest.mark.slow
def test_the_hybrid_finds_more_held_out_hats(monkeypatch):
    """Held-out photos labelled by eye for a covered head
    (``data.headwear_labels`` and the hat kinds of ``ffhq128-labelled``):
    ``Avatarizer()`` drew 34 of 53 hats (3 of 170 invented) with H alone,
    36 (3) with the hat network (session 29; the model card's numbers),
    69371's fedora and 69405's bearskin among them."""
    from avatarizer_export.data import EYE_LABELS, headwear_labels, is_heldout

    from avatarizer import Avatarizer

    faces = need_shared("data", "faces")
    lab = {k: v["headwear"] for k, v in headwear_labels().items() if is_heldout(k)}
    for line in (EYE_LABELS / "headwear_kind_by_eye.jsonl").read_text().splitlines():
        rec = json.loads(line)
        if is_heldout(rec["file"]):
            lab.setdefault(rec["file"], int(rec["hat"] != "none"))
    with Avatarizer() as av:
        if av.estimator != "hybrid":
            pytest.skip("the shipped models are not installed here")
        found, hats, invented, bare = _held_out_hats(av, lab, faces)
        for k in ("ffhq128-labelled/69371.jpg", "ffhq128-labelled/69405.jpg"):
            from avatarizer import load_image

            a = av.run(load_image(faces / k)).faces[0].attributes
            assert a["drawn"]["headwear"] and a["headwear_by"] == HR.HAT_NETWORK_BY, k
    monkeypatch.setattr(HW, "load_network", lambda folder=None: None)  # H alone, as before the network
    with Avatarizer() as av:
        h_found, h_hats, h_invented, _ = _held_out_hats(av, lab, faces)
    assert hats == h_hats >= 45 and bare >= 150
    # (36 and 3 against 34 and 3 here; with a photo's margin for another machine's arithmetic)
    assert found >= h_found and invented <= h_invented + 1, (found, h_found, invented, h_invented, hats)
    assert found >= 0.65 * hats and invented <= 4, (found, hats, invented, bare)


def test_without_the_network_a_cut_face_gets_no_hat_shaped_hairstyle():
    """Without the hat network (``estimator="model"``, or no files) a face
    cut by the frame's edge is drawn no hat, and its query no longer asks
    for one: H's 0.76 on the cut sample portrait picked a hairstyle of the
    hat family, drawn without the hat (a review)."""
    a = HR.decode_attributes(_outputs(0.76), draw=DRAW)
    assert HR.hat_query(a)["headwear"] == pytest.approx(0.76)  # (H's own, where nothing un-drew it)
    a["drawn"]["headwear"] = False
    a["headwear_by"] = "not drawn: the face is cut by the frame's edge"
    assert HR.hat_query(a)["headwear"] == 0.0 and not _hat_drawn(a)
    assert HR.hat_query(HR.apply_settings(a, {"headwear": True}))["headwear"] == 1.0  # the app's


def test_eval_scores_hats_and_facial_hair_against_the_labels_by_eye(tmp_path):
    """``accessories_by_eye``: what the avatar shows against the labels by
    eye of the held-out photos (a moustache drawn with its beard counts;
    the probability of a yes for the ECE); photos without an avatar or
    attributes, or without a label, or not held out, are left out."""
    from avatarizer_export.data import eye_labels, is_heldout
    from avatarizer_export.evaluate import accessory_reads_by_eye
    from avatarizer_export.hatnet import hat_labels

    hats = hat_labels()
    eye = eye_labels()
    keys = [k for k in sorted(hats) if is_heldout(k) and k.startswith("ffhq128/")
            and eye.get(k, {}).get("beard") in (0, 1) and eye[k].get("moustache") in (0, 1)]
    hat = [k for k in keys if hats[k]][:2]
    bare = [k for k in keys if not hats[k]][:3]
    assert len(hat) == 2 and len(bare) == 3
    rows = hat + bare
    files = [tmp_path / "ffhq128" / k.split("/", 1)[1] for k in rows]

    def attrs(hw: bool, p: float):
        return {"headwear": {"value": hw, "probability": p}, "beard": {"value": True, "probability": 0.9},
                "moustache": {"value": True, "probability": 0.9, "drawn_with": "beard"}}

    # the first hat found (P 0.9), the second missed (P(no) 0.8); one bare head drawn with a hat (0.6)
    at = [attrs(True, 0.9), attrs(False, 0.8), attrs(True, 0.6), attrs(False, 0.95), None]
    params = np.zeros((5, 3))
    out = accessory_reads_by_eye([f.name for f in files], files, params, at)
    h = out["headwear"]
    assert h["n"] == 4 and h["found"] == "1/2" and h["invented"] == "1/2"
    assert h["balanced_accuracy"] == pytest.approx(0.5)
    params[0] = np.nan  # no avatar: left out
    assert accessory_reads_by_eye([f.name for f in files], files, params, at)["headwear"]["n"] == 3
    beards = sum(eye[k]["beard"] for k in rows[:4])
    assert out["beard"]["found"] == f"{beards}/{beards}"  # every face here is drawn with a beard
    assert accessory_reads_by_eye([], [], np.zeros((0, 3)), []) == {}


def test_the_fitting_routine_writes_a_network_the_sdk_loads_and_is_deterministic(tmp_path, monkeypatch):
    """``avatarizer_export.regionnet.fit_task`` on a tiny synthetic set (one
    epoch): the ONNX file and the JSON that names its checksum, which
    ``avatarizer.regionnet`` loads and runs; the same inputs give the same
    bytes (make models reproduces the shipped files on one machine)."""
    pytest.importorskip("torch")
    from avatarizer_export import regionnet as XR

    monkeypatch.setattr(XR, "EPOCHS", 1)
    rng = np.random.default_rng(0)
    n = 90
    crops = rng.integers(0, 256, (n, 128, 128, 3), dtype=np.uint8)
    y = (np.arange(n) % 3 == 0).astype(np.float32)[:, None]
    crops[y[:, 0] > 0, :64] //= 4  # a dark "hat" on the positives
    rows = {"y": y, "labelled": np.ones(n, bool), "held": np.arange(n) >= 75, "index": np.arange(n)}
    docs = []
    for run in ("a", "b"):
        out = tmp_path / run
        out.mkdir()
        docs.append(XR.fit_task(HW.NETWORK, crops, rows, data=out, quiet=True, pool=2, input_name="head_top",
                                held_groups=(("held out", np.ones(n, bool)),), precision=0.95))
    assert docs[0]["sha256"] == docs[1]["sha256"] and docs[0]["thresholds"] == docs[1]["thresholds"]
    assert (tmp_path / "a" / HW.NETWORK.onnx_name).read_bytes() == (tmp_path / "b" / HW.NETWORK.onnx_name).read_bytes()
    assert docs[0]["precision_target"] == 0.95 and set(docs[0]["report"]) == {
        "out of fold (labelled training photos)", "held out"}
    RN.clear_cache()
    try:
        net = HW.load_network(tmp_path / "a")
        assert net is not None and 0.0 <= net.probabilities(crops[0])["headwear"] <= 1.0
    finally:
        RN.clear_cache()


def test_the_hat_labels_are_by_eye_only_and_the_rows_follow_the_cache():
    """``hatnet.hat_labels``: every label by eye of a covered head, the hat
    kinds of ``ffhq128-labelled`` among them (``data.headwear_labels`` leaves
    that folder out), no shared label; ``training_rows`` keeps the photos
    the aligned cache has, in key order, all labelled, split by is_heldout."""
    from types import SimpleNamespace

    from avatarizer_export.data import headwear_labels, is_heldout
    from avatarizer_export.hatnet import EYE_LABELS, hat_labels, training_rows

    lab = hat_labels()
    assert set(lab.values()) == {0, 1} and set(headwear_labels()) <= set(lab)
    kinds = [json.loads(line) for line in (EYE_LABELS / "headwear_kind_by_eye.jsonl").read_text().splitlines()
             if line.strip()]
    labelled = {r["file"]: int(r["hat"] != "none") for r in kinds if r["file"].startswith("ffhq128-labelled/")}
    assert labelled and all(lab[k] == v for k, v in labelled.items())
    assert {k.split("/")[0] for k in lab} >= {"ffhq128", "ffhq128-labelled"}
    some = sorted(lab)[:40]
    cache = SimpleNamespace(keys=["not/labelled.jpg", *reversed(some)])
    rows = training_rows(cache)
    assert rows["keys"] == some and rows["labelled"].all()
    assert rows["y"].shape == (40, 1) and [int(v) for v in rows["y"][:, 0]] == [lab[k] for k in some]
    assert [cache.keys[i] for i in rows["index"]] == some
    assert rows["held"].tolist() == [is_heldout(k) for k in some]
