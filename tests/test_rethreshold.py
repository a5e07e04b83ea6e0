"""``avatarizer-export rethreshold``: H's headwear drawing threshold chosen on
photos labelled by eye its head never trained on (export/avatarizer_export/rethreshold.py)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from avatarizer import hair as HR

ROOT = Path(__file__).resolve().parents[1]
MODELS = ROOT / "sdk" / "avatarizer" / "models"


def test_draw_threshold_reaches_the_precision_below_one_half():
    """H's own probabilities run low on new photos: the threshold is the
    lowest whose precision reaches the target, wherever it falls (the
    attribute tool's floor of 0.5 is for its calibrated outputs)."""
    from avatarizer_export.rethreshold import draw_threshold

    rng = np.random.default_rng(0)
    y = np.r_[np.ones(60), np.zeros(600)]
    p = np.r_[rng.uniform(0.2, 0.45, 60), rng.uniform(0.0, 0.25, 600)]  # hats 0.2-0.45, the rest below 0.25
    t, at = draw_threshold(p, y, 0.95)
    assert t < 0.5
    drawn = p >= t
    assert y[drawn].mean() >= 0.95 and at["precision"] == round(float(y[drawn].mean()), 3)
    # the lowest such threshold: one step lower (the next probability down) falls short of the precision
    below = p[p < t].max()
    assert y[p >= below].mean() < 0.95
    assert at["recall"] == round(float(drawn[y == 1].mean()), 3) and at["positives"] == 60
    # the cut lies halfway to the next lower probability: no photo sits on it
    assert below < t < p[drawn].min()
    # a target that is not reached: the next lower one (attributes.DRAW_PRECISION_FALLBACKS), else None
    noisy = np.r_[np.ones(10), np.zeros(10)]
    t2, at2 = draw_threshold(np.r_[np.linspace(0.9, 0.5, 10), np.linspace(0.89, 0.49, 10)], noisy, 0.95)
    assert at2["target"] < 0.95 and (t2 is None) == (at2["precision"] is None)
    assert draw_threshold(np.linspace(0, 1, 20), np.r_[np.ones(10), np.zeros(10)], 0.95) == (
        None, {"target": 0.7, "precision": None, "recall": 0.0, "positives": 10, "photos": 20})


def test_rethreshold_changes_only_the_drawing_threshold(tmp_path, monkeypatch):
    """On a copy of the shipped H, with stand-in photos whose headwear label
    follows H's own probability: the drawing threshold moves to where the
    training photos' precision reaches the target; the network, every output,
    the decision thresholds and the other flags' thresholds stay; the SDK
    reads the new threshold; manifest, description and report agree."""
    import onnxruntime as ort

    from avatarizer.runtime import sha256_file
    from avatarizer_export import attributes as A
    from avatarizer_export import formats
    from avatarizer_export import rethreshold as R
    from avatarizer_export.data import is_heldout

    from conftest import attributes_models_copy

    folder = attributes_models_copy(tmp_path)

    n = 240
    rng = np.random.default_rng(1)
    level = rng.uniform(20, 235, n)
    crops = np.clip(level[:, None, None, None] + rng.normal(0, 30, (n, 128, 128, 3)), 0, 255).astype(np.uint8)
    x = A.to_input128(crops).numpy()
    sess = ort.InferenceSession(str(folder / A.SHIP_FILE), providers=["CPUExecutionProvider"])
    names = [o.name for o in sess.get_outputs()]
    before = dict(zip(names, sess.run(names, {"image": x})))
    # H's P(headwear) as the SDK reads it (the crop and its mirror image, averaged; session 73)
    p = A.onnx_predictions(folder / A.SHIP_FILE, crops)["binary"][:, HR.BINARY_ATTRIBUTES.index("headwear")]
    p = p.astype(np.float64)
    keys = [f"ffhq128/ffhq-{i:04d}.jpg" for i in range(n)]
    hat = p >= np.quantile(p, 0.8)  # the top fifth "wear a hat"
    labels = {k: {"headwear": int(h)} for k, h in zip(keys, hat)}
    labels["ffhq128-labelled/69000.jpg"] = {"headwear": 1}  # shared-labelled photos are never used

    class Aligned:
        pass

    Aligned.keys, Aligned.crops = keys, crops
    monkeypatch.setattr("avatarizer_export.data.load_aligned", lambda cache: Aligned)
    monkeypatch.setattr("avatarizer_export.data.eye_labels", lambda: labels)

    def no_shared(override=None):
        raise FileNotFoundError("no shared folder")

    monkeypatch.setattr("avatarizer_export.paths.shared_dir", no_shared)
    monkeypatch.setattr(R, "RUN", tmp_path / "run")
    old_desc = json.loads(sess.get_modelmeta().custom_metadata_map[formats.METADATA_KEY])
    said = []
    # a flag named twice is rethresholded once (twice, its record said it came from the first new threshold)
    rep = R.rethreshold(("headwear", "headwear"), cache=tmp_path, folder=folder, log=said.append)
    assert any("no shared folder" in str(s) for s in said)  # said, and the report is of the labels by eye only

    sess = ort.InferenceSession(str(folder / A.SHIP_FILE), providers=["CPUExecutionProvider"])
    after = dict(zip(names, sess.run(names, {"image": x})))
    for k in names:
        np.testing.assert_array_equal(before[k], after[k], err_msg=k)
    desc = json.loads(sess.get_modelmeta().custom_metadata_map[formats.METADATA_KEY])
    train = np.array([not is_heldout(k) for k in keys])
    t = desc["draw_thresholds"]["headwear"]
    assert t == rep["thresholds"]["headwear"]["draw_to"] == R.draw_threshold(p[train], hat[train].astype(float),
                                                                               R.PRECISION["headwear"])[0]
    assert hat[train][p[train] >= t].mean() >= R.PRECISION["headwear"]
    assert t != old_desc["draw_thresholds"]["headwear"]
    assert desc["decision_thresholds"] == old_desc["decision_thresholds"]
    assert {k: v for k, v in desc["draw_thresholds"].items() if k != "headwear"} == {
        k: v for k, v in old_desc["draw_thresholds"].items() if k != "headwear"}
    assert desc["rethreshold"]["headwear"]["train_photos"] == int(train.sum())
    assert rep["flags"] == ["headwear"]
    assert rep["thresholds"]["headwear"]["draw_from"] == desc["rethreshold"]["headwear"]["draw_from"] \
        == old_desc["draw_thresholds"]["headwear"]
    assert rep["heldout_after"]["headwear_eye_labels"]["n"] == int((~train).sum())
    assert "headwear" not in rep["heldout_after"]  # (no shared labels)
    # the shared labels' entry keeps its threshold-free numbers; its drawing ones were of the old threshold
    old_m, new_m = old_desc["heldout_metrics"]["headwear"], desc["heldout_metrics"]["headwear"]
    assert {k: v for k, v in old_m.items() if k not in ("drawn", "drawn_wrong", "draw_recall")} == new_m
    # the photos labelled by eye: what is drawn measured again, the rest as the file had it (if it had it)
    draw_keys = ("drawn", "drawn_wrong", "draw_recall")
    eye_new, eye_rep = desc["heldout_metrics"]["headwear_eye_labels"], rep["heldout_after"]["headwear_eye_labels"]
    eye_old = old_desc["heldout_metrics"].get("headwear_eye_labels") or eye_rep
    assert eye_new == {**eye_old, **{k: eye_rep[k] for k in draw_keys}}
    # what the SDK reads
    assert HR.model_thresholds(desc)[1]["headwear"] == pytest.approx(t)
    entry = json.loads((folder / "manifest.json").read_text())["models"][desc["name"]]
    assert entry["sha256"] == sha256_file(folder / A.SHIP_FILE) and entry["version"] == desc["version"]
    assert desc["version"] == A.next_patch(old_desc["version"])
    # the report is named by the file it wrote too (a trial run's H of the same version wrote over the
    # shipped one's report)
    saved = json.loads((tmp_path / "run" / R.report_name(desc["version"], entry["sha256"])).read_text())
    assert saved["sha256"] == entry["sha256"] and saved["version"] == desc["version"]
    assert [p.name for p in (tmp_path / "run").iterdir()] == [R.report_name(desc["version"], entry["sha256"])]


def test_only_flags_never_trained_on_their_labels_by_eye():
    from avatarizer_export import attributes as A
    from avatarizer_export import rethreshold as R

    assert R.RETHRESHOLDABLE == ("headwear",)
    assert not set(R.RETHRESHOLDABLE) & set(A.H_EYE_FIELDS)
    with pytest.raises(ValueError, match="flags from"):
        R.rethreshold(("beard",))


def test_the_shipped_headwear_threshold_is_the_tools():
    """The shipped H's drawing threshold for hats is the one this tool chose
    (recorded in its description), at the precision it names."""
    import onnx

    from avatarizer_export import attributes as A
    from avatarizer_export import formats
    from avatarizer_export.rethreshold import PRECISION

    m = onnx.load(str(MODELS / A.SHIP_FILE), load_external_data=False)
    desc = json.loads(next(p.value for p in m.metadata_props if p.key == formats.METADATA_KEY))
    rec = desc["rethreshold"]["headwear"]
    assert desc["draw_thresholds"]["headwear"] == rec["draw_to"]
    assert rec["draw_at"]["target"] == PRECISION["headwear"] <= rec["draw_at"]["precision"]
