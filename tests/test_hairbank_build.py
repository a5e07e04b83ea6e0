"""The export side's hair bank commands (``avatarizer-export hairbank``): what
they refuse and what they never write (a review of session 75 reproduced
each case on the code before it)."""
from __future__ import annotations

import json

import numpy as np
import pytest

from avatarizer import hair as HR


def _members(n: int | None = None) -> dict:
    """``load_members``' dict made of the shipped bank's entries (one member
    photo each, every ray seen)."""
    from avatarizer_export import hairbank

    with np.load(hairbank.DATA / "hair_bank.npz") as z:
        a = {k: z[k] for k in z.files}
    n = n or len(a["geometry"])
    return dict(geo=a["geometry"][:n].astype(np.float64), family=a["family"][:n].copy(),
                seen=np.ones(n, bool), attrs=a["attributes"][:n].copy(), desc=a["descriptors"][:n].copy(),
                obs=np.ones(a["descriptors"][:n].shape, bool), keys=[str(k) for k in a["medoid_keys"][:n]],
                rows=np.arange(n))


def test_too_few_hairstyles_are_refused_not_shipped():
    """Below the bank's minimum of distinct entries the build refuses (it
    wrote a bank of 3 entries from one hairstyle, exit 0)."""
    from avatarizer_export import hairbank

    m = _members(40)
    with pytest.raises(ValueError, match=f"fewer than the {hairbank.MIN_ENTRIES} a bank holds"):
        hairbank.cluster_bank(m, log=lambda *a: None)
    arrays = hairbank.cluster_bank(m, log=lambda *a: None, min_entries=10)
    assert len(HR.HairBank(arrays, {})) >= 10


def test_a_ray_no_member_shows_gets_a_finite_spread():
    """A descriptor ray no member photo observes (tight crops) gave a NaN
    spread: a bank the SDK refuses."""
    from avatarizer_export import hairbank

    m = _members(60)
    m["obs"][:, 3] = False
    m["desc"][:, 3] = 0.0
    arrays = hairbank.cluster_bank(m, log=lambda *a: None, min_entries=10)
    assert np.isfinite(arrays["desc_scale"]).all() and (arrays["desc_scale"] > 0).all()
    seen = np.delete(np.arange(arrays["desc_scale"].shape[0]), 3)
    assert arrays["desc_scale"][3] == pytest.approx(np.median(arrays["desc_scale"][seen]))
    HR.HairBank(arrays, {})  # the SDK's checks pass


def _pairs_cache(root, aligned_meta: str, made_from: str | None, source) -> "object":
    from avatarizer_export.data import stage_key

    (root / "aligned").mkdir(parents=True)
    (root / "aligned" / "meta.json").write_text(aligned_meta)
    p = root / "pairs"
    p.mkdir()
    n = len(source)
    np.save(p / "crops128.npy", np.zeros((n, 2, 2, 3), np.uint8))
    np.save(p / "params.npy", np.zeros((n, 629), np.float32))
    np.save(p / "source.npy", np.asarray(source, np.int32))
    (p / "augment.json").write_text(json.dumps(["original"] * n))
    inputs = {"aligned": stage_key(root, "aligned") if made_from is None else made_from}
    (p / "meta.json").write_text(json.dumps({"inputs": inputs}))


def test_pairs_of_another_aligned_set_are_refused(tmp_path):
    """Pairs made from another aligned set index other photos: refused (the
    build ran and the tune died of a KeyError)."""
    from avatarizer_export import hairbank

    class Al:
        keys = ["ffhq128/a.png", "ffhq128/b.png", "ffhq128/c.png"]

    _pairs_cache(tmp_path / "ok", '{"v": 1}', None, [0, 2])
    params, source, augs = hairbank._pairs_of(tmp_path / "ok", Al)
    assert source.tolist() == [0, 2] and augs == ["original", "original"]
    _pairs_cache(tmp_path / "other", '{"v": 1}', "0123456789abcdef", [0, 2])
    with pytest.raises(ValueError, match="another aligned set"):
        hairbank._pairs_of(tmp_path / "other", Al)
    _pairs_cache(tmp_path / "beyond", '{"v": 1}', None, [0, 7])  # (rows past the aligned set's end)
    with pytest.raises(ValueError, match="another aligned set"):
        hairbank._pairs_of(tmp_path / "beyond", Al)


def test_build_writes_nothing_the_sdk_refuses_and_drops_other_pairs_tuning(tmp_path, monkeypatch):
    """A built bank the SDK refuses leaves the bank in place (it was written,
    then refused); a previous bank's tuning record of other pairs is not
    carried into a new bank."""
    from avatarizer_export import hairbank

    data = tmp_path / "data"
    data.mkdir()
    with np.load(hairbank.DATA / "hair_bank.npz") as z:
        shipped = {k: z[k] for k in z.files}
    hairbank.save_bank(shipped, {"tuning": {"best_by_iou": {"iou": 0.45}, "pairs": "other pairs"}}, data)
    before = {p.name: p.read_bytes() for p in data.iterdir()}
    _pairs_cache(tmp_path / "cache", '{"v": 1}', None, [0])
    m = _members(60)
    monkeypatch.setattr(hairbank, "load_members", lambda *a, **k: m)
    real = hairbank.cluster_bank

    def refused(mm, log=print):
        arrays = real(mm, log=log, min_entries=10)
        return {**arrays, "family": arrays["family"] + 99}  # indices the SDK refuses

    monkeypatch.setattr(hairbank, "cluster_bank", refused)
    with pytest.raises(ValueError, match="not one the SDK reads.*nothing was written"):
        hairbank.cmd_build(tmp_path / "cache", tmp_path, log=lambda *a: None, data=data)
    assert {p.name: p.read_bytes() for p in data.iterdir()} == before

    monkeypatch.setattr(hairbank, "cluster_bank", lambda mm, log=print: real(mm, log=log, min_entries=10))
    said = []
    bank = hairbank.cmd_build(tmp_path / "cache", tmp_path, log=said.append, data=data)
    info = json.loads((data / "hair_bank.json").read_text())
    assert "tuning" not in info and any("tuning record is of other pairs" in s for s in said)
    # the H whose predictions the entries' attributes are (a bank left from another H could not be told)
    from avatarizer.pipeline.config import attributes_entry
    from avatarizer.runtime import Manifest

    assert info["attributes_model"]["sha256"] == attributes_entry(Manifest.load(None)).sha256
    assert len(bank) == info["count"] < len(shipped["geometry"])
    # a record of these pairs stays
    from avatarizer_export.data import stage_key

    info["tuning"] = {"best_by_iou": {"iou": 0.5}, "pairs": stage_key(tmp_path / "cache", "pairs")}
    (data / "hair_bank.json").write_text(json.dumps(info))
    hairbank.cmd_build(tmp_path / "cache", tmp_path, log=lambda *a: None, data=data)
    assert json.loads((data / "hair_bank.json").read_text())["tuning"]["best_by_iou"] == {"iou": 0.5}


def test_evaluate_and_sheet_refuse_another_sets_predictions(tmp_path, monkeypatch):
    """``evaluate`` scored held-out photos with other photos' predictions
    (exit 0), and died of a ZeroDivisionError without a held-out loose crop."""
    from avatarizer_export import attributes as A
    from avatarizer_export import data as D
    from avatarizer_export import hairbank

    class Al:
        keys = ["utkface200/1_0_0_x.jpg", "utkface200/2_1_0_y.jpg"]
        pad = np.zeros(2)

    monkeypatch.setattr(D, "load_aligned", lambda cache: Al)
    monkeypatch.setattr(hairbank, "frame_shapes", lambda keys, shared, pad: [(128, 128)] * len(keys))
    monkeypatch.setattr(A, "load_predictions", lambda models=None: {"keys": ["ffhq128/other.png"]})
    for call in (hairbank.cmd_evaluate, hairbank.make_sheet):
        with pytest.raises(ValueError, match="predictions are for another aligned set"):
            call(tmp_path, tmp_path, log=lambda *a: None)
    monkeypatch.setattr(A, "load_predictions", lambda models=None: {"keys": list(Al.keys)})
    with pytest.raises(ValueError, match="no held-out loose crop"):
        hairbank.cmd_evaluate(tmp_path, tmp_path, log=lambda *a: None)


def test_the_sheets_artist_fits_are_reused_only_for_the_same_artist(tmp_path, monkeypatch):
    """``sheet`` reused ``evaluate``'s saved fits after the artist changed."""
    from avatarizer_export import data as D
    from avatarizer_export import hairbank

    monkeypatch.setattr(hairbank, "OUT", tmp_path / "out")
    (tmp_path / "aligned").mkdir()
    (tmp_path / "aligned" / "meta.json").write_text('{"v": 1}')
    rows, faces = np.array([3, 5]), np.random.default_rng(0).random((2, 629)).astype(np.float32)
    monkeypatch.setattr(D, "artist_key", lambda: {"source": "a", "detectors": "b"})
    hairbank._save_heldout_fits(tmp_path, rows, faces)
    np.testing.assert_array_equal(hairbank._heldout_fits(tmp_path, rows), faces)
    assert hairbank._heldout_fits(tmp_path, np.array([3, 6])) is None  # other photos
    monkeypatch.setattr(D, "artist_key", lambda: {"source": "a2", "detectors": "b"})  # the artist changed
    assert hairbank._heldout_fits(tmp_path, rows) is None
    monkeypatch.setattr(D, "artist_key", lambda: {"source": "a", "detectors": "b"})
    (tmp_path / "aligned" / "meta.json").write_text('{"v": 2}')  # another aligned set
    assert hairbank._heldout_fits(tmp_path, rows) is None
    (tmp_path / "out" / "heldout_artist.npz").write_bytes(b"cut")  # unreadable: fitted again
    assert hairbank._heldout_fits(tmp_path, rows) is None
