"""Training code (export side) on tiny synthetic data: losses, resumable
checkpoints, the mapper with E_s frozen and fine-tuned, direct regression
from a pretrained encoder, and the held-out cache of ``evaluate``. Seconds,
not minutes: networks a few channels wide, a handful of steps."""
from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
for _dir in ("sdk", "export"):
    if str(ROOT / _dir) not in sys.path:
        sys.path.insert(0, str(ROOT / _dir))

torch = pytest.importorskip("torch", reason="torch (the export extra) is not installed")

from avatarizer import schema  # noqa: E402
from avatarizer_export import data as D  # noqa: E402
from avatarizer_export import nets  # noqa: E402
from avatarizer_export import train as T  # noqa: E402

NET = nets.NetConfig(image_size=32, width=4, stages=4, bottleneck=4, latent=16, t_hidden=32).to_dict()


@pytest.fixture
def fake(tmp_path, monkeypatch):
    """runs/ in tmp; 24 pairs from 12 photos, 64 unpaired avatars, 16 aligned photos."""
    rng = np.random.default_rng(0)
    n = 24
    crops = rng.integers(0, 256, (n, 128, 128, 3), dtype=np.uint8)
    params = schema.sample(n, seed=1)
    source = np.repeat(np.arange(n // 2), 2)
    augs = ["original", "warp"] * (n // 2)
    monkeypatch.setattr(T, "RUNS", tmp_path / "runs")
    monkeypatch.setattr(D, "load_pairs", lambda cache=None: (crops, params, source, augs))
    monkeypatch.setattr(D, "load_avatars", lambda cache=None: schema.sample(64, seed=2))
    keys = [f"ffhq128-labelled/{i:05d}.png" for i in range(16)]
    assert 0 < sum(map(D.is_heldout, keys)) < 12
    monkeypatch.setattr(D, "load_aligned", lambda cache=None: SimpleNamespace(keys=keys, crops=crops[:16]))

    class TinyVGG(torch.nn.Module):  # the perceptual loss' interface without ../shared weights
        def __init__(self):
            super().__init__()
            self.slices = [torch.nn.Conv2d(3, 2, 3, padding=1), torch.nn.Conv2d(2, 2, 3, padding=1)]

        def forward(self, x):
            out = []
            for s in self.slices:
                x = s(x)
                out.append(x)
            return out

    from avatarizer_export import lpips

    monkeypatch.setattr(lpips, "vgg16_features", TinyVGG)
    stages = {"aligned": "a1", "pairs": "p1", "avatars": "v1"}  # the data stages' identities (data.stage_key)
    monkeypatch.setattr(D, "stage_key", lambda cache, stage: stages[stage])
    return SimpleNamespace(crops=crops, params=params, source=source, augs=augs, runs=tmp_path / "runs",
                           stages=stages)


def cfg(name, kind, steps=4, **kw):
    return T.TrainConfig(name=name, kind=kind, steps=steps, batch=4, epoch_steps=2, threads=1, net=dict(NET), **kw)


def test_cross_modal_and_weight_alignment_losses():
    z = torch.randn(5, 16)
    assert float(nets.cross_modal(z, z)) == pytest.approx(0.0, abs=1e-6)
    # MSE and cosine terms each count: a scaled copy has cosine 1 but a nonzero MSE
    assert float(nets.cross_modal(2 * z, z, use_mse=False)) == pytest.approx(0.0, abs=1e-6)
    assert float(nets.cross_modal(2 * z, z, use_cos=False)) == pytest.approx(float((z ** 2).mean()), rel=1e-5)
    assert float(nets.cross_modal(-z, z, use_mse=False)) == pytest.approx(2.0, abs=1e-5)
    cfg_ = nets.NetConfig(**NET)
    F, et = nets.Mapper(cfg_), nets.ParamEncoder(cfg_)
    assert F.last.weight.shape == et.last.weight.shape
    F.last.load_state_dict(et.last.state_dict())
    assert float(nets.weight_alignment(F, et).detach()) == 0.0
    with torch.no_grad():
        F.last.bias += 0.5
    assert float(nets.weight_alignment(F, et).detach()) == pytest.approx(0.25 * 16, rel=1e-5)


def test_runs_resume_and_restart_on_config_change(fake):
    T.train_param_ae(cfg("pae", "param_ae", steps=4))
    ck = T.load_run("pae")
    assert ck["step"] == 4 and ck["config"]["net"] == NET and (fake.runs / "pae" / "loss.png").exists()
    # more steps: resumes at 4 with the same history
    T.train_param_ae(cfg("pae", "param_ae", steps=6))
    ck2 = T.load_run("pae")
    assert ck2["step"] == 6 and ck2["history"][:2] == ck["history"][:2]
    # a changed hyperparameter starts over
    T.train_param_ae(cfg("pae", "param_ae", steps=2, lr=1e-3))
    assert T.load_run("pae")["step"] == 2
    # a checkpoint from before a config field existed resumes when the field keeps its default
    path = fake.runs / "pae" / "ckpt.pt"
    ck = torch.load(path, weights_only=False)
    del ck["config"]["geo_weight"]
    torch.save(ck, path)
    T.train_param_ae(cfg("pae", "param_ae", steps=3, lr=1e-3))
    assert T.load_run("pae")["step"] == 3


def test_runs_start_over_when_their_inputs_change(fake, capsys):
    """A finished run is reused only for the data and upstream checkpoints it
    was trained on: rebuilt avatars, or a retrained E_s, start it over."""
    T.train_param_ae(cfg("pae", "param_ae", steps=2))
    T.train_param_ae(cfg("pae", "param_ae", steps=2))
    assert "resumed at step 2" in capsys.readouterr().out
    fake.stages["avatars"] = "v2"  # the avatars were rebuilt
    T.train_param_ae(cfg("pae", "param_ae", steps=2))
    assert "pae: inputs changed (data avatars), starting over" in capsys.readouterr().out
    assert T.load_run("pae")["inputs"] == {"data pairs": "p1", "data avatars": "v2"}
    T.train_image_ae(cfg("img", "image_ae", steps=2))
    T.train_mapper(cfg("map", "mapper", steps=2, image_ae="img", param_ae="pae"))
    T.train_mapper(cfg("map", "mapper", steps=2, image_ae="img", param_ae="pae"))
    assert "map: resumed at step 2" in capsys.readouterr().out
    T.train_image_ae(cfg("img", "image_ae", steps=4))  # E_s trained on: another checkpoint
    with pytest.raises(ValueError, match="train the mapper again"):
        T.load_image_to_face("map")  # F was fitted to the old E_s
    T.train_mapper(cfg("map", "mapper", steps=2, image_ae="img", param_ae="pae"))
    assert "map: inputs changed (run image_ae), starting over" in capsys.readouterr().out
    T.load_image_to_face("map")
    # a checkpoint written before inputs were recorded: nothing says it is current
    path = fake.runs / "pae" / "ckpt.pt"
    ck = torch.load(path, weights_only=False)
    del ck["inputs"]
    torch.save(ck, path)
    T.train_param_ae(cfg("pae", "param_ae", steps=2))
    assert "pae: inputs changed (not recorded in its checkpoint), starting over" in capsys.readouterr().out


def test_shipping_refuses_a_network_trained_on_other_data(fake, tmp_path):
    """``ship`` on its own (not after training, as ``make models`` runs it)
    shipped a mapper trained on pairs since rebuilt, its metadata counting
    the new pairs: it refuses (training itself starts over, above)."""
    T.train_image_ae(cfg("img", "image_ae", steps=2))
    T.train_param_ae(cfg("pae", "param_ae", steps=2))
    T.train_mapper(cfg("map", "mapper", steps=2, image_ae="img", param_ae="pae"))
    T.train_mapper(cfg("map_ft", "mapper", steps=2, image_ae="img", param_ae="pae", finetune="map"))
    for run in ("map", "map_ft"):
        T.load_image_to_face(run, check_data=True)
    # runs stopped short of a full run's steps (a trial run's checkpoints stay in runs/): refused unless allowed
    for run, full in (("map", T.DEFAULT_STEPS["mapper"]), ("map_ft", T.FINETUNE_STEPS)):
        with pytest.raises(ValueError, match=f"{run}: trained 2 of the {full} steps .*--allow-short"):
            T.load_image_to_face(run, check_data=True, allow_short=False)
    for stage, old, new, refused in (("pairs", "p1", "p2", "map: .*pairs"), ("avatars", "v1", "v2", "pae: .*avatars"),
                                     ("aligned", "a1", "a2", "img: .*aligned")):
        fake.stages[stage] = new
        with pytest.raises(ValueError, match=f"{refused} than the one in the cache now: train it again"):
            T.load_image_to_face("map", check_data=True)
        if stage == "aligned":  # the fine-tuned run carries its own E_s: the image AE's data is not its
            T.load_image_to_face("map_ft", check_data=True)
        else:
            with pytest.raises(ValueError, match="train it again"):
                T.load_image_to_face("map_ft", check_data=True)
        T.load_image_to_face("map")  # (evaluation of a training run: not checked)
        fake.stages[stage] = old
    # the metadata's count of unpaired avatars is the cache's, not a constant
    import json

    from avatarizer_export import ship
    for stage, meta in (("aligned", {"aligned": 10, "per_source": {"a": 10}}),
                        ("pairs", {"pairs": 30, "train_photos": 8}), ("avatars", {"n": 5000})):
        (tmp_path / stage).mkdir()
        (tmp_path / stage / "meta.json").write_text(json.dumps(meta))
    assert ship.training_summary(tmp_path)["unpaired_avatars"] == 5000


def test_pair_encodings_follow_the_pairs_and_the_encoder(fake, monkeypatch):
    T.train_image_ae(cfg("img", "image_ae", steps=2))
    assert T.pair_encodings(image_ae="img")["z_pairs"].shape == (24, 16)
    # the pairs rebuilt with fewer rows: encoded again, not the old 24
    fake.stages["pairs"] = "p2"
    monkeypatch.setattr(D, "load_pairs", lambda cache=None: (fake.crops[:12], fake.params[:12], fake.source[:12],
                                                             fake.augs[:12]))
    z = T.pair_encodings(image_ae="img")["z_pairs"]
    assert z.shape == (12, 16) and T.pair_encodings(image_ae="img")["z_pairs"].shape == (12, 16)
    # E_s trained on: encoded again under the new weights
    T.train_image_ae(cfg("img", "image_ae", steps=4))
    mods, _ = T.load_modules("img")
    z2 = T.pair_encodings(image_ae="img")["z_pairs"]
    assert not np.array_equal(z, z2) and np.allclose(z2, T.encode(mods["enc"], fake.crops[:12], 32), atol=1e-6)


def test_geometry_weight_reweights_the_reconstruction_loss(fake):
    T.train_image_ae(cfg("img", "image_ae", steps=2))
    T.train_param_ae(cfg("pae", "param_ae", steps=2))
    T.train_mapper(cfg("m1", "mapper", steps=3, image_ae="img", param_ae="pae"))
    T.train_mapper(cfg("m4", "mapper", steps=3, image_ae="img", param_ae="pae", geo_weight=4.0))
    a, b = T.load_run("m1"), T.load_run("m4")
    assert a["config"]["geo_weight"] == 1.0 and b["config"]["geo_weight"] == 4.0
    # same seed and batches: only the weighting of L_rec differs, so the runs part ways
    ra = [h["rec"] for h in a["history"] if "rec" in h]
    rb = [h["rec"] for h in b["history"] if "rec" in h]
    assert ra and rb and ra != rb


def test_mapper_frozen_then_fine_tuned(fake):
    T.train_image_ae(cfg("img", "image_ae"))
    T.train_param_ae(cfg("pae", "param_ae"))
    T.train_mapper(cfg("map", "mapper", image_ae="img", param_ae="pae"))
    T.train_mapper(cfg("map_ft", "mapper", image_ae="img", param_ae="pae", finetune="map"))
    frozen, size = T.load_image_to_face("map")
    tuned, _ = T.load_image_to_face("map_ft")
    assert size == 32
    img, _ = T.load_modules("img")
    pae, _ = T.load_modules("pae")
    # the frozen run uses the image AE's E_s and the parameter AE's D_t unchanged
    for a, b in zip(frozen.enc.state_dict().values(), img["enc"].state_dict().values()):
        assert torch.equal(a, b)
    for a, b in zip(tuned.dec.state_dict().values(), pae["dec"].state_dict().values()):
        assert torch.equal(a, b)
    # the fine-tuned run carries its own, changed E_s
    changed = [not torch.equal(a, b) for a, b in zip(tuned.enc.state_dict().values(), img["enc"].state_dict().values())]
    assert any(changed)
    x = T.to_input(fake.crops[:3], size)
    with torch.no_grad():
        y = tuned(x)
    assert y.shape == (3, 483) and torch.isfinite(y).all() and float(y.abs().max()) <= 1.0
    assert not torch.allclose(y, frozen(x))


def test_fine_tune_refuses_a_missing_mapper_run(fake):
    T.train_image_ae(cfg("img", "image_ae", steps=2))
    T.train_param_ae(cfg("pae", "param_ae", steps=2))
    with pytest.raises(FileNotFoundError):
        T.train_mapper(cfg("ft", "mapper", image_ae="img", param_ae="pae", finetune="no_such_run"))


def test_direct_from_pretrained_encoder(fake, monkeypatch):
    T.train_image_ae(cfg("img", "image_ae", steps=2))
    img, _ = T.load_modules("img")
    seen = {}
    orig = T._setup

    def spy(c, mods, params=None, **kw):  # the encoder's weights when training starts
        seen["enc"] = {k: v.clone() for k, v in mods["net"].encoder.state_dict().items()}
        return orig(c, mods, params, **kw)

    monkeypatch.setattr(T, "_setup", spy)
    T.train_direct(cfg("dir", "direct", steps=2, init_encoder="img"))
    for k, v in img["enc"].state_dict().items():
        assert torch.equal(seen["enc"][k], v)
    assert T.load_run("dir")["config"]["init_encoder"] == "img"


def test_evaluate_keeps_prepared_photos_per_file_list(tmp_path, monkeypatch):
    from avatarizer_export import evaluate as E

    calls = []

    def fake_prepare(files, progress=True, exaggeration=None):
        calls.append(list(files))
        n = len(files)
        return {"faces": n, "names": [f.name for f in files],
                "crops": np.zeros((n, 128, 128, 3), np.uint8), "gts": np.zeros((n, schema.PARAM_COUNT), np.float32),
                "lms": np.zeros((n, 478, 2), np.float32), "lm3s": np.zeros((n, 478, 3), np.float32),
                "skins": np.zeros((n, 3), np.float32),
                "hairs": np.full((n, 3), np.nan, np.float32)}

    monkeypatch.setattr(E, "prepare", fake_prepare)
    cache = tmp_path / "eval" / "held.npz"
    a = [tmp_path / "a.png", tmp_path / "b.png"]
    first = E.prepared(a, cache, progress=False)
    again = E.prepared(a, cache, progress=False)
    assert len(calls) == 1 and again["names"] == ["a.png", "b.png"] and again["faces"] == 2
    assert np.isnan(again["hairs"]).all() and again["gts"].shape == first["gts"].shape
    E.prepared(a[:1], cache, progress=False)  # another file list: prepared anew
    assert len(calls) == 2


@pytest.mark.parametrize("size", [96, 112, 128])
def test_training_and_runtime_preprocessing_give_the_same_network_input(size):
    """What E_s saw in training (``train.to_input``) is what the SDK feeds the
    shipped graph (``resize_aa`` + the manifest's normalisation)."""
    import skimage.data
    from avatarizer.align import FaceAligner
    from avatarizer.models import Manifest, normalise_images
    from avatarizer.pipeline.face import SOURCE_CROP, resize_aa, _normalisation
    from avatarizer_export.train import to_input

    with FaceAligner() as al:
        real = al.align(skimage.data.astronaut()).crop(SOURCE_CROP)
    rng = np.random.default_rng(0)
    crops = np.stack([real, rng.integers(0, 256, (SOURCE_CROP, SOURCE_CROP, 3), dtype=np.uint8)])
    entry = next(e for e in Manifest.load().models.values() if e.role == "image_to_face")
    norm = _normalisation(entry.description, entry.description["inputs"][0]["name"])  # what the SDK reads
    runtime = normalise_images(resize_aa(crops, size), norm)
    train = to_input(crops, size).numpy()
    assert runtime.shape == train.shape == (2, 3, size, size)
    assert np.abs(runtime - train).max() < 2e-3


def test_make_models_runs_typed_steps_with_one_cache_and_fails_on_a_failing_step(tmp_path, monkeypatch, capsys):
    """``avatarizer-export all``: every step gets the same --cache (a namespace
    faked in code once dropped it for training), in order, and an exception
    in any step (shipping included) fails the run instead of being skipped."""
    from avatarizer_export import (attributes, beardgrey, detectors, facialhair, gender, haircolournet, hairbank,
                                   hairlength, hairlengthnet, hatnet, hats, pipeline, report, rethreshold, ship,
                                   skintone, skintonenet)

    calls: list = []
    shared, cache = tmp_path / "shared", tmp_path / "cache"
    monkeypatch.setattr(ship, "MODELS", tmp_path / "sdk" / "models")  # (staged and committed: not the SDK's)
    monkeypatch.setattr(hairbank, "DATA", tmp_path / "sdk" / "data")

    def rec(name):
        return lambda *a, **kw: calls.append((name, a, kw))

    monkeypatch.setattr(D, "build", rec("data"))
    monkeypatch.setattr(detectors, "fit", rec("detectors"))
    monkeypatch.setattr(hats, "fit", rec("hat kinds"))
    monkeypatch.setattr(facialhair, "fit", rec("facial hair"))
    monkeypatch.setattr(haircolournet, "fit", rec("hair colour"))
    monkeypatch.setattr(skintonenet, "fit", rec("skin tone network"))
    monkeypatch.setattr(hatnet, "fit", rec("hat network"))
    monkeypatch.setattr(hatnet, "check_labels", rec("hat labels"))
    monkeypatch.setattr(T, "train", rec("train"))
    monkeypatch.setattr(attributes, "run", rec("attributes"))
    monkeypatch.setattr(skintone, "fit", rec("skin tone"))
    monkeypatch.setattr(hairlength, "fit", rec("hair length"))
    monkeypatch.setattr(hairlengthnet, "fit", rec("tight-crop hair length"))
    monkeypatch.setattr(rethreshold, "rethreshold", rec("headwear threshold"))
    monkeypatch.setattr(hairbank, "build_bank", rec("hairbank"))
    monkeypatch.setattr(report, "write_report", rec("report"))
    monkeypatch.setattr(ship, "export", rec("ship"))
    monkeypatch.setattr(detectors, "fit_glasses_fusion", rec("fusion"))
    monkeypatch.setattr(hatnet, "fit_fusion", rec("hat fusion"))
    monkeypatch.setattr(gender, "fit", rec("gender fusion"))
    monkeypatch.setattr(beardgrey, "fit", rec("beard grey fusion"))
    pipeline.STAGES.clear()
    stages = pipeline.run_all(shared, cache, steps_scale=0.5, ship_short=True)
    names = [c[0] for c in calls]
    # the hat network's labels checked once the photos are aligned (it is fitted hours later); the artist's,
    # before the pairs; the facial-hair, hair-colour and skin-tone networks with them
    assert names[:10] == ["data", "hat labels", "data", "detectors", "hat kinds", "facial hair", "hair colour",
                          "skin tone network", "data", "data"]
    assert [c[1][0] for c in calls if c[0] == "data"] == ["align", "meanface", "pairs", "avatars"]
    # the glasses and hat fusions read the staged H: after shipping; the report what is shipped: after the commit
    # H's heads from the labels by eye are added to the file H's training wrote
    # the hat network and its fusion with the staged H, staged together after it
    # the gender fusion with the staged H, into the staged data folder: before the hair length (whose gates per
    # gender read the gender through it) and again at the end (the hair length gave H a new checksum)
    # the tight crops' hair-length network is taught by the staged H's hair_long: after its head
    assert names.count("train") == 14 and names[-14:] == ["attributes", "skin tone", "gender fusion", "hair length",
                                                          "tight-crop hair length", "headwear threshold",
                                                          "hairbank", "ship", "fusion", "hat network", "hat fusion",
                                                          "gender fusion", "beard grey fusion", "report"]
    hat_net, hat_fusion, gender_fusion, hair_length, tight_length = (
        next(kw for name, _, kw in calls if name == n)
        for n in ("hat network", "hat fusion", "gender fusion", "hair length", "tight-crop hair length"))
    assert tight_length["models"] == hair_length["folder"] and tight_length["data"] == hair_length["data"]
    last_gender_fusion = [kw for name, _, kw in calls if name == "gender fusion"][-1]
    attrs = next(kw for name, _, kw in calls if name == "attributes")
    assert hat_fusion["models"] == gender_fusion["models"] == attrs["folder"] != ship.MODELS  # the staged H
    assert last_gender_fusion == gender_fusion and hair_length["folder"] == attrs["folder"]
    assert hat_fusion["data"] == hat_net["data"] == gender_fusion["data"] == hair_length["data"] \
        != tmp_path / "sdk" / "data"
    # the grey-beard fusion through the SDK as committed: into its data folder, after the commit
    beard = next(kw for name, _, kw in calls if name == "beard grey fusion")
    assert beard["data"] == tmp_path / "sdk" / "data" and not beard.get("quiet")
    for name, a, kw in calls:  # one cache folder everywhere (the hat kind fit and the grey-beard fusion keep none)
        assert cache in (*a, kw.get("cache")) or (name in ("hat kinds", "beard grey fusion") and a == (shared,)), \
            (name, a, kw)
    trains = [c for c in calls if c[0] == "train"]
    assert all(kw["steps_scale"] == 0.5 for _, _, kw in trains)
    # the long steps show their progress bars (they ran quiet for minutes)
    assert all(not kw.get("quiet") for name, _, kw in calls
               if name in ("detectors", "fusion", "facial hair", "hair colour", "skin tone network", "hat network",
                           "hat fusion", "gender fusion", "tight-crop hair length"))
    assert ("mapper", {"finetune": "mapper_full"}) in [(a[0], {k: v for k, v in kw.items() if k == "finetune"})
                                                       for _, a, kw in trains]
    assert ship.export.__name__ == "<lambda>" and calls[-7][1][0] == "ship"
    assert set(stages) >= {"data align", "train mapper", "ship"}

    # a trial run (fewer steps, no --ship-short): everything staged and checked, then discarded; nothing shipped,
    # no report (its under-trained face network replaced the shipped one: the quality gate measures drift only)
    def staged_ship(what, cache_, mapper, folder, allow_short=False):
        assert allow_short  # (a trial run's face network is short: staged and checked all the same)
        calls.append(("ship", (what,), {}))
        (Path(folder) / "image_to_face.onnx").write_bytes(b"under-trained")

    monkeypatch.setattr(ship, "export", staged_ship)
    before = _tree(tmp_path / "sdk")
    calls.clear()
    pipeline.run_all(shared, cache, steps_scale=0.5)
    names = [c[0] for c in calls]
    assert "ship" in names and "gender fusion" in names and "report" not in names and "beard grey fusion" not in names
    assert _tree(tmp_path / "sdk") == before and "then discarded" in capsys.readouterr().out
    calls.clear()
    pipeline.run_all(shared, cache, steps_scale=0.5, ship_short=True, report=False)
    assert (ship.MODELS / "image_to_face.onnx").read_bytes() == b"under-trained"

    # too few hat labels: the run stops at once, not after the trainings
    calls.clear()

    def too_few(cache_):
        raise SystemExit("hat network: 3 hats labelled by eye")

    monkeypatch.setattr(hatnet, "check_labels", too_few)
    with pytest.raises(SystemExit, match="3 hats"):
        pipeline.run_all(shared, cache, report=False)
    assert [c[0] for c in calls] == ["data"]  # (align only)
    monkeypatch.setattr(hatnet, "check_labels", rec("hat labels"))

    def boom(*a, **kw):
        raise RuntimeError("no toolchain")

    monkeypatch.setattr(ship, "export", boom)
    with pytest.raises(RuntimeError, match="no toolchain"):
        pipeline.run_all(shared, cache, report=False)


def _tree(folder):
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("fail_at", ["attributes", "tight-crop hair length", "hair bank", "ship", "glasses fusion",
                                     "hat network", "hat fusion", "gender fusion", "busy", None])
def test_make_models_ships_everything_at_once_or_nothing(tmp_path, monkeypatch, fail_at):
    """``make models``' shipping steps write into staging copies of the models
    and data folders, swapped in together at the end: a step that fails (or
    a run cut short) leaves both folders byte for byte as they were (a new H
    beside the old glasses fusion made the SDK drop the fusion silently);
    a run that succeeds ships what every step wrote, and files the manifest
    does not list are never touched. ``busy``: another run ships into the
    models folder: this one stops before its first step (it learnt it only
    once its trainings were done), leaving no copy or lock behind."""
    from avatarizer_export import (attributes, beardgrey, detectors, facialhair, gender, haircolournet, hairbank,
                                   hairlength, hairlengthnet, hatnet, hats, pipeline, report, rethreshold, ship,
                                   skintone, skintonenet, staging)

    models, data = tmp_path / "sdk" / "models", tmp_path / "sdk" / "data"
    models.mkdir(parents=True), data.mkdir()
    monkeypatch.setattr(ship, "MODELS", models)
    monkeypatch.setattr(hairbank, "DATA", data)
    (models / "attributes-int8.onnx").write_bytes(b"old H")
    (models / "image_to_face-fp16.onnx").write_bytes(b"old F")
    (models / "image_to_face-fp16.engine").write_bytes(b"old F's engine")
    (models / "notes.txt").write_bytes(b"a user's file")
    (models / "manifest.json").write_text(json.dumps({"models": {
        "attributes-onnx-int8": {"file": "attributes-int8.onnx", "role": "attributes", "version": "1"},
        "image_to_face-onnx-fp16": {"file": "image_to_face-fp16.onnx", "role": "image_to_face"},
        "image_to_face-engine-fp16": {"file": "image_to_face-fp16.engine", "role": "image_to_face"}}}))
    (data / "glasses_fusion.json").write_text(json.dumps({"attributes_version": "1"}))
    (data / "hair_bank.npz").write_bytes(b"old bank")
    for name, text in (("headwear_net.onnx", "old hat network"), ("headwear_net.json", "old hat network's"),
                       ("headwear_fusion.json", "old hat fusion"), ("gender_fusion.json", "old gender fusion"),
                       ("hair_length_net_tight.json", "old tight-crop length network")):
        (data / name).write_text(text)
    before = {"models": _tree(models), "data": _tree(data)}
    seen = {}

    def step(name, fn):
        def run(*a, **kw):
            if name == fail_at:
                raise KeyboardInterrupt  # cut short after the earlier steps wrote
            seen[name] = kw
            fn(*a, **kw)
        return run

    def write_h(**kw):
        folder = kw["folder"]
        (folder / "attributes-int8.onnx").write_bytes(b"new H")
        doc = json.loads((folder / "manifest.json").read_text())
        doc["models"]["attributes-onnx-int8"]["version"] = "2"
        (folder / "manifest.json").write_text(json.dumps(doc))

    def write_f(what, cache, mapper, folder, allow_short=False):
        (folder / "image_to_face-fp16.onnx").write_bytes(b"new F")
        ship.drop_stale(folder, "image_to_face", {"image_to_face-onnx-fp16"})

    nothing = lambda *a, **kw: None  # noqa: E731
    monkeypatch.setattr(D, "build", nothing)
    monkeypatch.setattr(T, "train", nothing)
    monkeypatch.setattr(detectors, "fit", nothing)
    monkeypatch.setattr(hats, "fit", nothing)
    monkeypatch.setattr(facialhair, "fit", nothing)
    monkeypatch.setattr(haircolournet, "fit", nothing)
    monkeypatch.setattr(skintonenet, "fit", nothing)

    def write_hat_network(shared, cache, data, quiet):
        (data / "headwear_net.onnx").write_text("new hat network")
        (data / "headwear_net.json").write_text("new hat network's")

    def write_hat_fusion(shared, cache, models, data, quiet):
        assert (data / "headwear_net.onnx").read_text() == "new hat network"  # the network just staged
        (data / "headwear_fusion.json").write_text(json.dumps({"attributes": (models / "attributes-int8.onnx")
                                                               .read_text()}))

    monkeypatch.setattr(hatnet, "fit", step("hat network", write_hat_network))
    monkeypatch.setattr(hatnet, "check_labels", nothing)
    monkeypatch.setattr(attributes, "run", step("attributes", write_h))
    monkeypatch.setattr(skintone, "fit", step("skin tone", nothing))
    monkeypatch.setattr(hairlength, "fit", step("hair length", nothing))
    monkeypatch.setattr(hairlengthnet, "fit", step("tight-crop hair length", lambda shared, cache, data, models, quiet: (
        data / "hair_length_net_tight.json").write_text("new tight-crop length network")))
    monkeypatch.setattr(rethreshold, "rethreshold", step("headwear threshold", nothing))
    monkeypatch.setattr(hairbank, "build_bank", step("hair bank", lambda c, s, data, models: (
        data / "hair_bank.npz").write_bytes(b"new bank")))
    monkeypatch.setattr(ship, "export", step("ship", write_f))
    monkeypatch.setattr(detectors, "fit_glasses_fusion", step("glasses fusion", lambda s, c, models, out: (
        out.write_text(json.dumps({"attributes_version": json.loads((models / "manifest.json").read_text())
                                   ["models"]["attributes-onnx-int8"]["version"]})))))
    monkeypatch.setattr(hatnet, "fit_fusion", step("hat fusion", write_hat_fusion))
    monkeypatch.setattr(gender, "fit", step("gender fusion", lambda shared, cache, models, data, quiet: (
        data / "gender_fusion.json").write_text(json.dumps({"attributes": (models / "attributes-int8.onnx")
                                                            .read_text()}))))
    monkeypatch.setattr(beardgrey, "fit", step("beard grey fusion", lambda shared, data, quiet: (
        data / "beard_grey_fusion.json").write_text(json.dumps({"attributes": (models / "attributes-int8.onnx")
                                                                .read_text()}))))
    monkeypatch.setattr(report, "write_report", step("report", lambda *a, **kw: seen.update(
        report_sees=(models / "attributes-int8.onnx").read_bytes())))
    pipeline.STAGES.clear()
    if fail_at == "busy":
        other = _holder(models, "lock")
        try:
            with pytest.raises(staging.Busy):
                pipeline.run_all(tmp_path / "shared", tmp_path / "cache")
            assert not seen and not pipeline.STAGES  # (before its first step, not after hours of training)
            assert {"models": _tree(models), "data": _tree(data)} == before
            assert not staging.staging_path(data).exists() and not staging.lock_path(data).exists()
        finally:
            other.kill()
            other.wait()
        return
    if fail_at:
        with pytest.raises(KeyboardInterrupt):
            pipeline.run_all(tmp_path / "shared", tmp_path / "cache")
        assert {"models": _tree(models), "data": _tree(data)} == before
    else:
        pipeline.run_all(tmp_path / "shared", tmp_path / "cache")
        assert seen["attributes"]["folder"] != models and seen["hair bank"]["data"] != data  # staged
        assert seen["hair bank"]["models"] == seen["attributes"]["folder"]  # the staged H's predictions
        assert (models / "attributes-int8.onnx").read_bytes() == b"new H"
        assert (models / "image_to_face-fp16.onnx").read_bytes() == b"new F"
        assert not (models / "image_to_face-fp16.engine").exists()  # the previous network's
        assert (models / "notes.txt").read_bytes() == b"a user's file"
        assert json.loads((data / "glasses_fusion.json").read_text()) == {"attributes_version": "2"}
        assert json.loads((data / "headwear_fusion.json").read_text()) == {"attributes": "new H"}  # the staged H
        assert json.loads((data / "gender_fusion.json").read_text()) == {"attributes": "new H"}  # ... shipped with it
        assert (data / "headwear_net.onnx").read_text() == "new hat network"  # shipped with its fusion
        assert (data / "hair_bank.npz").read_bytes() == b"new bank"
        assert (data / "hair_length_net_tight.json").read_text() == "new tight-crop length network"
        assert seen["report_sees"] == b"new H"  # the report evaluates what is shipped
        # the grey-beard fusion: fitted through the SDK as committed (the new H), into its data folder
        assert seen["beard grey fusion"]["data"] == data
        assert json.loads((data / "beard_grey_fusion.json").read_text()) == {"attributes": "new H"}
    assert [p.name for p in (tmp_path / "sdk").iterdir()] in (["models", "data"], ["data", "models"])


def _cut_short_commit(tmp_path, monkeypatch, cut_at):
    """``make models``' two folders staged with new files and committed with
    ``staging.commit_all`` cut short where ``cut_at(stage, target)`` raises
    (``_finish`` of a folder); returns (models, data)."""
    from avatarizer_export import hairbank, pipeline, ship, staging

    models, data = tmp_path / "sdk" / "models", tmp_path / "sdk" / "data"
    models.mkdir(parents=True), data.mkdir()
    monkeypatch.setattr(ship, "MODELS", models)
    monkeypatch.setattr(hairbank, "DATA", data)
    (models / "attributes-int8.onnx").write_bytes(b"old H")
    (models / "manifest.json").write_text(json.dumps({"models": {
        "attributes-onnx-int8": {"file": "attributes-int8.onnx", "role": "attributes", "version": "1"}}}))
    (data / "glasses_fusion.json").write_text(json.dumps({"attributes_version": "1"}))
    shipped = [(data, pipeline.DATA_FILES), (models, (ship.GATE_REPORT,))]  # as make models commits them
    data_stage, models_stage = (staging.begin(folder, extra) for folder, extra in shipped)
    (data_stage / "glasses_fusion.json").write_text(json.dumps({"attributes_version": "2"}))
    (models_stage / "attributes-int8.onnx").write_bytes(b"new H")
    real = staging._finish

    def finish(stage, target):
        cut_at(stage, target)
        return real(stage, target)

    monkeypatch.setattr(staging, "_finish", finish)
    with pytest.raises(KeyboardInterrupt):
        staging.commit_all(shipped)
    monkeypatch.setattr(staging, "_finish", real)
    return models, data


def test_a_commit_cut_short_between_folders_is_finished_by_the_next_command(tmp_path, monkeypatch, capsys):
    """``make models``' commit cut short after the data folder, before the
    models folder: the next ``avatarizer-export`` command (any: this one
    fails at once) finishes it before it reads the folders, and says so in
    one line; with nothing to finish it does nothing and says nothing. (It
    was finished only by the next run that staged the models folder: until
    then the new glasses fusion sat beside the old H.)"""
    from avatarizer_export import cli, staging

    def cut_at(stage, target):
        if target.name == "models":
            raise KeyboardInterrupt

    models, data = _cut_short_commit(tmp_path, monkeypatch, cut_at)
    assert json.loads((data / "glasses_fusion.json").read_text()) == {"attributes_version": "2"}
    assert (models / "attributes-int8.onnx").read_bytes() == b"old H"
    capsys.readouterr()
    argv = ["detectors", "--shared", str(tmp_path / "no shared folder")]
    assert cli.main(argv) == 1  # (no labels: fails after the recovery)
    err = capsys.readouterr().err
    assert (models / "attributes-int8.onnx").read_bytes() == b"new H"
    assert not staging.staging_path(models).exists() and not staging.staging_path(data).exists()
    assert [line for line in err.splitlines() if "cut short" in line] == [
        f"staging: finished the commit an earlier run cut short (into {models})"]
    assert cli.main(argv) == 1
    assert "cut short" not in capsys.readouterr().err
    assert staging.recover([models, data]) == []


def test_a_commit_cut_short_is_finished_after_the_checkout_moved(tmp_path, monkeypatch):
    """The commit markers name the folders relative to their copy: cut
    short between the folders, then the checkout moved (renamed), the next
    run still finishes it (absolute paths in the markers named the old place:
    the commit counted as undecided and the new data stayed beside the old H)."""
    from avatarizer_export import staging

    def cut_at(stage, target):
        if target.name == "models":
            raise KeyboardInterrupt

    models, data = _cut_short_commit(tmp_path, monkeypatch, cut_at)
    moved = tmp_path / "moved"
    (tmp_path / "sdk").rename(moved)
    models, data = moved / "models", moved / "data"
    assert (models / "attributes-int8.onnx").read_bytes() == b"old H"
    assert staging.recover([models, data], log=lambda msg: None) == [models]
    assert (models / "attributes-int8.onnx").read_bytes() == b"new H"
    assert json.loads((data / "glasses_fusion.json").read_text()) == {"attributes_version": "2"}
    assert not staging.staging_path(models).exists()


def test_a_commit_cut_short_before_it_was_decided_ships_nothing(tmp_path, monkeypatch, capsys):
    """``make models``' commit cut short after the data folder's marker was
    written, before the models folder's: the commit was never decided, so
    neither the next command nor the next run ships its data half (the new
    glasses fusion beside the old H); the next run discards both copies.
    (The data folder was committed alone.) Cut short once every marker is
    written, the next run's first folder to stage finishes both, in order."""
    from avatarizer_export import cli, pipeline, staging

    real = staging._write_json

    def cut_at_the_models_marker(path, doc):
        if path.parent.name == ".models.staging" and path.name == staging.MARKER:
            raise KeyboardInterrupt
        real(path, doc)

    monkeypatch.setattr(staging, "_write_json", cut_at_the_models_marker)
    models, data = _cut_short_commit(tmp_path, monkeypatch, lambda stage, target: None)
    monkeypatch.setattr(staging, "_write_json", real)
    before = {"models": _tree(models), "data": _tree(data)}
    assert (staging.staging_path(data) / staging.MARKER).is_file()
    assert cli.main(["detectors", "--shared", str(tmp_path / "no shared folder")]) == 1
    assert "cut short" not in capsys.readouterr().err
    assert {"models": _tree(models), "data": _tree(data)} == before
    for folder, extra in pipeline.shipped_folders():  # the next make models
        staging.begin(folder, extra)
        staging.discard(folder)
    assert {"models": _tree(models), "data": _tree(data)} == before
    assert sorted(p.name for p in models.parent.iterdir()) == ["data", "models"]

    def cut_before_any_folder(stage, target):
        raise KeyboardInterrupt

    monkeypatch.undo()
    models, data = _cut_short_commit(tmp_path / "again", monkeypatch, cut_before_any_folder)
    staging.begin(models)  # (the models folder first): the data folder's half is finished too, first
    staging.discard(models)
    assert json.loads((data / "glasses_fusion.json").read_text()) == {"attributes_version": "2"}
    assert (models / "attributes-int8.onnx").read_bytes() == b"new H"
    assert not staging.staging_path(data).exists()


@pytest.fixture
def tiny_aligned(tmp_path, monkeypatch):
    """cache/aligned of 12 photos, with the alignment and the artist faked:
    ``calls`` counts the photos aligned and the photos drawn."""
    keys = [f"ffhq128/{i:05d}.png" for i in range(12)]
    calls = SimpleNamespace(align=0, pairs=0, fail_at=None)
    artist = {"source": "s1", "detectors": "d1", "mean_face": "m1"}

    def align_one(job):
        calls.align += 1
        z = np.zeros
        # (each alignment's crop its own: a rebuilt stage holds other pixels)
        return job[0], dict(crop=np.full((128, 128, 3), calls.align % 256, np.uint8), hair=z((128, 128), np.uint8),
                            landmarks=z((478, 2), np.float32), landmarks3d=z((478, 3), np.float32),
                            transform=z((2, 3)), pose=z(3, np.float32), pad=0, faces=1), None

    def pairs_worker(job):
        calls.pairs += 1
        if calls.fail_at == calls.pairs:
            raise KeyboardInterrupt  # the build cut short
        return job[0], [(job[7], schema.sample(1, seed=job[-1])[0], "original")]

    def list_faces(shared):  # (the photos' files: the stage is keyed by their bytes too)
        for k in keys:
            f = shared / "data" / "faces" / k
            if not f.exists():
                f.parent.mkdir(parents=True, exist_ok=True)
                f.write_bytes(k.encode())
        return list(keys)

    monkeypatch.setattr(D, "list_faces", list_faces)
    monkeypatch.setattr(D, "_align_one", align_one)
    monkeypatch.setattr(D, "_pairs_worker", pairs_worker)
    monkeypatch.setattr(D, "artist_key", lambda: dict(artist))
    cache = tmp_path / "cache"
    D.build_aligned(tmp_path, cache, workers=1)
    return SimpleNamespace(cache=cache, keys=keys, calls=calls, artist=artist, shared=tmp_path,
                           monkeypatch=monkeypatch)


def test_data_stages_are_rebuilt_when_their_inputs_change(tiny_aligned, capsys):
    t = tiny_aligned
    cache, calls = t.cache, t.calls
    D.build_aligned(t.shared, cache, workers=1)
    assert calls.align == 12 and "align: reusing" in capsys.readouterr().out
    t.keys[3] = "ffhq128/other.png"  # as many photos, not the same ones
    D.build_aligned(t.shared, cache, workers=1)
    assert calls.align == 24
    # the aligner's code (or MediaPipe) changed: the same photos aligned again (they were kept)
    key = D.aligner_key()
    t.monkeypatch.setattr(D, "aligner_key", lambda: key + "x")
    D.build_aligned(t.shared, cache, workers=1)
    assert calls.align == 36
    D.build_aligned(t.shared, cache, workers=1)
    assert calls.align == 36 and "align: reusing" in capsys.readouterr().out
    # a photo replaced under its name: aligned again (the names alone kept the old crops)
    key = D.stage_key(cache, "aligned")
    (t.shared / "data" / "faces" / t.keys[5]).write_bytes(b"another photo")
    D.build_aligned(t.shared, cache, workers=1)
    assert calls.align == 48 and "align: reusing" not in capsys.readouterr().out
    assert D.stage_key(cache, "aligned") != key
    D.build_aligned(t.shared, cache, workers=1)
    assert calls.align == 48 and "align: reusing" in capsys.readouterr().out
    D.build_pairs(t.shared, cache, workers=1)
    D.build_avatars(cache, n=40)
    built = calls.pairs
    D.build_pairs(t.shared, cache, workers=1)
    D.build_avatars(cache, n=40)
    out = capsys.readouterr().out
    assert calls.pairs == built and "pairs: reusing" in out and "avatars: reusing" in out
    # the artist changed (source, detectors or mean face): same counts, other avatars
    t.artist["mean_face"] = "m2"
    D.build_pairs(t.shared, cache, workers=1)
    assert calls.pairs == 2 * built
    key = D.stage_key(cache, "avatars")
    D.build_avatars(cache, n=40)  # over the new pairs
    assert "avatars: reusing" not in capsys.readouterr().out and D.stage_key(cache, "avatars") != key
    # the photos aligned again: the pairs follow
    D.build_aligned(t.shared, cache, workers=1, force=True)
    D.build_pairs(t.shared, cache, workers=1)
    assert calls.pairs == 3 * built
    # photos other than those aligned (a replaced one, not aligned again): refused, not warped by the first
    # photo's transform (a review, session 75); nothing rebuilt
    (t.shared / "data" / "faces" / t.keys[2]).write_bytes(b"yet another photo")
    with pytest.raises(ValueError, match="not those .* was made from"):
        D.build_pairs(t.shared, cache, workers=1, force=True)
    assert calls.pairs == 3 * built


def test_align_with_no_photo_aligned_says_so(tiny_aligned):
    """No photo aligned ended in numpy's "need at least one array to stack",
    and no failures.json said why (a review, session 75)."""
    t = tiny_aligned
    t.monkeypatch.setattr(D, "_align_one", lambda job: (job[0], None, "no face found"))
    with pytest.raises(ValueError, match="none of the 12 photos .* aligned .*no face found"):
        D.build_aligned(t.shared, t.cache, workers=1, force=True)
    assert len(json.loads((t.cache / "aligned" / "failures.json").read_text())) == 12
    assert not (t.cache / "aligned" / "meta.json").exists()  # (nothing to reuse)


def test_avatars_of_no_training_photo_say_so(tiny_aligned):
    """Held-out photos alone make 0 pairs, and the avatars' stage then died
    of numpy's "high <= 0" (a review, session 75)."""
    t = tiny_aligned
    t.monkeypatch.setattr(D, "is_heldout", lambda key: True)
    D.build_pairs(t.shared, t.cache, workers=1, force=True)
    with pytest.raises(ValueError, match="holds 0 training photo"):
        D.build_avatars(t.cache, n=40)


def test_a_data_stage_cut_short_is_never_reused(tiny_aligned):
    t = tiny_aligned
    D.build_pairs(t.shared, t.cache, workers=1)
    t.calls.fail_at = t.calls.pairs + 3
    with pytest.raises(KeyboardInterrupt):
        D.build_pairs(t.shared, t.cache, workers=1, force=True)
    with pytest.raises(FileNotFoundError, match="no pairs yet"):
        D.load_pairs(t.cache)
    n = t.calls.pairs
    D.build_pairs(t.shared, t.cache, workers=1)  # built again, not reused
    assert t.calls.pairs > n and len(D.load_pairs(t.cache)[1]) == t.calls.pairs - n


def test_a_rebuilt_stage_leaves_a_readers_memory_maps_whole(tiny_aligned):
    """Training reads the crops memory-mapped; a stage rebuilt meanwhile
    wrote its arrays in place, truncating the file under the map (reading it
    then crashes the reader with SIGBUS). Each file is now written beside
    and moved onto the old one: the reader keeps the old arrays whole, and
    no temporary file is left."""
    t = tiny_aligned
    D.build_pairs(t.shared, t.cache, workers=1)
    crops, params, _, _ = D.load_pairs(t.cache)
    aligned = D.load_aligned(t.cache)
    before = (np.array(crops), np.array(aligned.crops))
    t.artist["mean_face"] = "m3"  # the pairs built again
    D.build_aligned(t.shared, t.cache, workers=1, force=True)
    D.build_pairs(t.shared, t.cache, workers=1)
    assert np.array_equal(np.asarray(crops), before[0]) and np.array_equal(np.asarray(aligned.crops), before[1])
    assert not np.array_equal(np.asarray(D.load_aligned(t.cache).crops), before[1])  # (the new build's differ)
    assert not np.array_equal(np.asarray(D.load_pairs(t.cache)[0]), before[0])
    for stage in ("aligned", "pairs"):
        assert not [p.name for p in (t.cache / stage).iterdir() if ".part." in p.name]


def test_artist_key_follows_the_mean_face_contents(tmp_path, monkeypatch):
    from avatarizer import landmarks as LM

    key = D.artist_key()
    assert key == D.artist_key() and all(key.values())
    mf = LM.MeanFace.load()
    path = tmp_path / "mean_face.npz"
    mf.save(path)
    monkeypatch.setattr(LM, "_DATA", path)
    assert D.artist_key() == key  # saved again: the same arrays
    LM.MeanFace(mf.points * 1.01, mf.mirror, mf.rigid).save(path)
    assert D.artist_key()["mean_face"] != key["mean_face"]


def test_artist_key_follows_what_the_artist_draws_with(tmp_path, monkeypatch):
    """The detectors' models change the key; their reports and the grey-hair
    age prior (which a refit after H rewrites; the artist does not read it)
    do not: a resumed make models would otherwise rebuild the pairs and
    retrain everything."""
    import json

    from avatarizer.artist import accessories

    doc = json.loads(accessories._DETECTORS_PATH.read_text())
    path = tmp_path / "artist_detectors.json"
    monkeypatch.setattr(accessories, "_DETECTORS_PATH", path)

    def key(d):
        path.write_text(json.dumps(d))
        return D.artist_key()["detectors"]

    base = key(doc)
    other = json.loads(json.dumps(doc))
    other["detectors"]["hair_colour"]["age_prior"]["gray"][0] += 0.5
    other["heldout"] = {}
    other["seconds"] = 1.0
    other["detectors"]["glasses"]["cv_recall"] = 0.1
    assert key(other) == base
    other["detectors"]["glasses"]["thresholds"]["clear"] += 0.01
    assert key(other) != base


def test_artist_source_key_follows_the_modules_the_artist_draws_with(tmp_path, monkeypatch):
    import shutil

    import avatarizer.artist as pkg

    sdk = Path(pkg.__file__).parent.parent
    copy = tmp_path / "avatarizer"
    shutil.copytree(sdk / "artist", copy / "artist", ignore=shutil.ignore_patterns("__pycache__"))
    for m in D.ARTIST_MODULES:
        shutil.copy(sdk / m, copy / m)
    monkeypatch.setattr(pkg, "__file__", str(copy / "artist" / "__init__.py"))
    base = D.artist_source_key()
    for m in ("prior.py", "landmarks.py"):
        (copy / m).write_text((copy / m).read_text() + "\n# changed\n")
        assert D.artist_source_key() != base
        base = D.artist_source_key()


def test_checkpoints_are_written_whole_and_a_damaged_one_is_named(fake, monkeypatch):
    T.train_param_ae(cfg("pae", "param_ae", steps=2))
    path = fake.runs / "pae" / "ckpt.pt"
    good = path.read_bytes()
    real = torch.save

    def killed(obj, f):  # the save cut short half-way
        real(obj, f)
        Path(f).write_bytes(Path(f).read_bytes()[:100])
        raise KeyboardInterrupt

    monkeypatch.setattr(torch, "save", killed)
    with pytest.raises(KeyboardInterrupt):
        T.train_param_ae(cfg("pae", "param_ae", steps=4))
    monkeypatch.setattr(torch, "save", real)
    assert path.read_bytes() == good and sorted(p.name for p in path.parent.iterdir()) == ["ckpt.pt", "loss.png"]
    assert T.load_run("pae")["step"] == 2
    path.write_bytes(good[: len(good) // 2])  # cut short by a save before they were atomic
    with pytest.raises(RuntimeError, match=f"{path}: not a readable checkpoint"):
        T.load_run("pae")
    with pytest.raises(RuntimeError, match=f"{path}: not a readable checkpoint"):
        T.train_param_ae(cfg("pae", "param_ae", steps=4))
    with pytest.raises(FileNotFoundError):
        T.load_run("no_such_run")


def test_a_checkpoint_that_is_not_a_runs_is_one_line_and_never_run(fake, tmp_path):
    """A ``ckpt.pt`` that loads but is not a run's (a list, a dict without a
    config, another kind of run, a pickle naming a class) is a RuntimeError
    naming the file (KeyError, TypeError and ModuleNotFoundError tracebacks
    before), and is read with ``weights_only``: a crafted pickle ran code."""
    import pickle

    T.train_param_ae(cfg("pae", "param_ae", steps=2))
    run = fake.runs / "odd"
    run.mkdir()
    path = run / "ckpt.pt"
    flag = tmp_path / "ran"

    class Boom:
        def __reduce__(self):
            return (flag.write_text, ("code ran",))

    for obj in ([1, 2, 3], {"weights": 1}, {"config": 1, "state": {}, "step": 0}, Boom()):
        if isinstance(obj, Boom):
            path.write_bytes(pickle.dumps({"config": obj}, protocol=2))
        else:
            torch.save(obj, path)
        with pytest.raises(RuntimeError, match=f"{path}: not a"):
            T.load_run("odd")
        with pytest.raises(RuntimeError, match=f"{path}: not a"):
            T.train_param_ae(cfg("odd", "param_ae", steps=2))
    assert not flag.exists()
    # a run of another kind where a mapper is read: said, not a KeyError
    with pytest.raises(RuntimeError, match="a param_ae run, not a mapper run"):
        T.load_image_to_face("pae")
    # a checkpoint without what a resume reads
    ck = torch.load(fake.runs / "pae" / "ckpt.pt", weights_only=True)
    del ck["optim"]
    torch.save(ck, path)
    with pytest.raises(RuntimeError, match="no optim"):
        T.train_param_ae(cfg("odd", "param_ae", steps=3))


def test_default_run_names_carry_a_seed_and_batch_of_their_own():
    """``train image-ae --seed 1`` trained over ``runs/image_ae``, the encoder
    every mapper reads ("config changed, starting over"): a seed other than 0
    and a batch other than the network's are in the default name."""
    assert T.default_run_name("image_ae") == "image_ae" == T.default_run_name("image_ae", seed=0, batch=24)
    assert T.default_run_name("image_ae", seed=1) == "image_ae_seed1"
    assert T.default_run_name("param_ae", batch=64) == "param_ae_batch64"
    assert T.default_run_name("mapper", seed=2) == "mapper_full_seed2"
    assert T.default_run_name("mapper", batch=48, finetune="mapper_full") == "mapper_full_ft"
    assert T.default_run_name("direct", pairs=500, seed=3) == "direct_500_seed3"


def test_the_hair_bank_is_written_whole(tmp_path):
    from avatarizer import hair as HR
    from avatarizer_export import hairbank

    with np.load(hairbank.DATA / "hair_bank.npz") as z:
        arrays = {k: z[k] for k in z.files}
    hairbank.save_bank(arrays, {"note": "first"}, tmp_path)
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    assert sorted(before) == ["hair_bank.json", "hair_bank.npz"]
    with pytest.raises(TypeError):  # the json cannot be written: neither file changes
        hairbank.save_bank({**arrays, "geometry": arrays["geometry"][:3]}, {"note": object()}, tmp_path)
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before
    assert len(HR.HairBank.load(tmp_path / "hair_bank.npz").geometry) == len(arrays["geometry"])


def test_nearest_and_lpips_read_the_folders_given(fake, tmp_path, monkeypatch):
    """``nearest`` reads the pairs of the data cache given (report's --cache),
    and the LPIPS / VGG weights come from the shared folder given (--shared)."""
    from avatarizer_export import evaluate as E
    from avatarizer_export import lpips, paths

    T.train_image_ae(cfg("image_ae", "image_ae", steps=2))
    seen = []
    monkeypatch.setattr(D, "load_pairs", lambda cache=None: seen.append(cache) or (
        fake.crops, fake.params, fake.source, fake.augs))
    cache = tmp_path / "my_cache"
    E.TorchPredictor("nearest", cache)
    assert seen == [cache, cache]  # the pairs' rows, and their encodings
    shared = tmp_path / "my_shared"
    (shared / "data").mkdir(parents=True)
    (shared / "weights").mkdir()
    monkeypatch.setattr(paths, "_SHARED", None)
    assert paths.shared_dir(shared) == shared
    with pytest.raises(FileNotFoundError, match="my_shared"):
        lpips.weights_path(net="alex")


_HOLDER = """
import sys
from pathlib import Path
from avatarizer_export import staging
folder = Path(sys.argv[1])
if sys.argv[2] == "stage":  # a run shipping into the folder: its copy, a new file, then the commit
    stage = staging.begin(folder)
    (stage / "attributes-int8.onnx").write_bytes(b"new H")
else:  # only the lock (a run committing now)
    assert staging._lock(folder)
print("ready", flush=True)
sys.stdin.readline()
if sys.argv[2] == "stage":
    staging.commit(folder)
print("done", flush=True)
"""


def _holder(folder, what):
    """A second process holding ``folder``'s staging lock (``what``:
    "stage" begins a copy and commits it when told, "lock" only holds the
    lock); returns the process once it holds it."""
    import os
    import subprocess

    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "sdk"), str(ROOT / "export")])}
    proc = subprocess.Popen([sys.executable, "-c", _HOLDER, str(folder), what], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True, env=env)
    assert proc.stdout.readline().strip() == "ready"
    return proc


def test_a_second_run_cannot_discard_the_staging_copy_of_a_run_in_progress(tmp_path):
    """Two ``avatarizer-export`` runs shipping into one folder: the second
    stops at once (``staging.Busy``, one line from the CLI) and the first
    run's staging copy and its commit are untouched (the second run's
    ``begin`` discarded the first's copy: its commit then failed, or shipped
    what the second had staged). Once the first has committed, its lock
    file is gone and a run can stage again."""
    from avatarizer_export import staging

    models = tmp_path / "sdk" / "models"
    models.mkdir(parents=True)
    (models / "attributes-int8.onnx").write_bytes(b"old H")
    (models / "manifest.json").write_text(json.dumps({"models": {
        "attributes-onnx-int8": {"file": "attributes-int8.onnx", "role": "attributes", "version": "1"}}}))
    first = _holder(models, "stage")
    try:
        stage = staging.staging_path(models)
        staged = _tree(stage)
        assert staged["attributes-int8.onnx"] == b"new H"
        with pytest.raises(staging.Busy, match="another avatarizer-export run is shipping into it"):
            staging.begin(models)
        with pytest.raises(staging.Busy):
            staging.discard(models)
        assert _tree(stage) == staged and (models / "attributes-int8.onnx").read_bytes() == b"old H"
        first.stdin.write("\n")
        first.stdin.flush()
        assert first.stdout.readline().strip() == "done"
        assert first.wait(30) == 0
    finally:
        first.kill()
        first.wait()
    assert (models / "attributes-int8.onnx").read_bytes() == b"new H"
    assert not stage.exists() and not staging.lock_path(models).exists()
    staging.begin(models)
    staging.discard(models)
    assert sorted(p.name for p in models.parent.iterdir()) == ["models"]


def test_recover_leaves_a_commit_another_run_is_making_alone(tmp_path, monkeypatch, capsys):
    """A commit marker in a folder whose lock another process holds is that
    run's commit in progress, not one cut short: the next command leaves it
    alone (finishing it beside the run moved the files under it). Once that
    process is gone (killed: the system drops its lock, its lock file stays),
    the commit counts as cut short and is finished."""
    from avatarizer_export import staging

    def cut_at(stage, target):
        if target.name == "models":
            raise KeyboardInterrupt

    models, data = _cut_short_commit(tmp_path, monkeypatch, cut_at)
    before = {"models": _tree(models), "data": _tree(data)}
    other = _holder(models, "lock")
    try:
        assert staging.recover([models, data], log=lambda msg: None) == []
        assert {"models": _tree(models), "data": _tree(data)} == before
    finally:
        other.kill()
        other.wait()
    assert staging.lock_path(models).exists()  # (left by the killed process; no longer locked)
    assert staging.recover([models, data], log=lambda msg: None) == [models]
    assert (models / "attributes-int8.onnx").read_bytes() == b"new H"
    assert not staging.lock_path(models).exists()


def test_a_decided_commit_is_kept_while_another_run_holds_its_other_folder(tmp_path, monkeypatch):
    """``make models``' commit cut short after the data folder (decided),
    while another process holds the data folder's lock: a run that stages
    the models folder stops (``Busy``) instead of discarding the models half
    (the data folder then kept the new glasses fusion beside the old H for
    good); once the other process is gone, the commit is finished."""
    from avatarizer_export import staging

    def cut_at(stage, target):
        if target.name == "models":
            raise KeyboardInterrupt

    models, data = _cut_short_commit(tmp_path, monkeypatch, cut_at)
    other = _holder(data, "lock")
    try:
        assert staging.recover([models, data], log=lambda msg: None) == []
        with pytest.raises(staging.Busy, match="cut short"):
            staging.begin(models)  # e.g. `avatarizer-export ship` run alone meanwhile
        assert (staging.staging_path(models) / staging.MARKER).is_file()
        assert (staging.staging_path(models) / "attributes-int8.onnx").read_bytes() == b"new H"
    finally:
        other.kill()
        other.wait()
    assert staging.recover([models, data], log=lambda msg: None) == [models]
    assert (models / "attributes-int8.onnx").read_bytes() == b"new H"
    assert json.loads((data / "glasses_fusion.json").read_text()) == {"attributes_version": "2"}


def test_artist_key_follows_the_region_networks_the_artist_reads(tmp_path, monkeypatch):
    """The tight crops' hair-length network and the facial-hair network
    decide some of the artist's drawing (session 47): a refit (another ONNX
    file's checksum, other thresholds or gates) changes the key and so
    rebuilds the pairs; a new report or time does not; a missing file is a
    key of its own."""
    import json
    import shutil

    from avatarizer import facialhair, haircolour, hairlength, skintone
    from avatarizer import regionnet as RN

    specs = (hairlength.SPEC_TIGHT, facialhair.SPEC, haircolour.SPEC, haircolour.SPEC_TIGHT, skintone.NETWORK)
    for spec in specs:
        if not (RN.DATA / spec.json_name).is_file():
            pytest.skip("the region networks are not installed here")
        shutil.copy(RN.DATA / spec.json_name, tmp_path / spec.json_name)
    monkeypatch.setattr(RN, "DATA", tmp_path)
    base = D.artist_key()["networks"]
    path = tmp_path / facialhair.SPEC.json_name
    doc = json.loads(path.read_text())
    path.write_text(json.dumps({**doc, "report": {"other": 1}, "seconds": 1.0}))
    assert D.artist_key()["networks"] == base
    doc["thresholds"]["beard"]["draw"] = 0.5
    path.write_text(json.dumps(doc))
    assert D.artist_key()["networks"] != base
    for spec in specs:  # each of the five: another ONNX file (its checksum in the JSON) is another key
        p = tmp_path / spec.json_name
        before = D.artist_key()["networks"]
        d = json.loads(p.read_text())
        p.write_text(json.dumps({**d, "sha256": "0" * 64}))
        assert D.artist_key()["networks"] != before, spec.json_name
    for spec in specs:
        (tmp_path / spec.json_name).unlink()
    missing = D.artist_key()["networks"]
    assert missing != base and missing == D.artist_key()["networks"]


def test_the_aligner_key_follows_the_alignment_code(tmp_path, monkeypatch):
    """The aligned cache's key reads the SDK's alignment modules: another
    align.py gives another key."""
    import shutil

    import avatarizer

    sdk = Path(avatarizer.__file__).parent
    fake = tmp_path / "avatarizer"
    fake.mkdir()
    for m in D.ALIGN_MODULES:
        shutil.copyfile(sdk / m, fake / m)
    monkeypatch.setattr(avatarizer, "__file__", str(fake / "__init__.py"))
    key = D.aligner_key()
    assert key == D.aligner_key() and len(key) == 16
    with open(fake / "align.py", "a") as f:
        f.write("\n# changed\n")
    assert D.aligner_key() != key


def test_the_image_ae_validates_on_training_photos_it_leaves_out():
    """E_s's learning-rate schedule reads a validation set of training photos
    left out of its training, never held-out photos (it read the held-out
    ones, which the evaluation then measured on)."""
    keys = [f"ffhq128/{i:05d}.png" for i in range(6000)]
    tr, val = T.image_ae_rows(keys)
    held = {i for i, k in enumerate(keys) if D.is_heldout(k)}
    assert len(val) == 256 and not set(val) & held and not set(tr) & held and not set(tr) & set(val)
    assert len(tr) + len(val) + len(held) == len(keys)
    assert np.array_equal(T.image_ae_rows(keys)[1], val)  # (seeded)
    tr, val = T.image_ae_rows(keys[:30])
    assert len(val) >= 1 and not set(val) & set(tr) and len(tr) > 0


@pytest.mark.parametrize("argv", [
    ["train", "image-ae", "--steps", "0"], ["train", "image-ae", "--batch", "0"],
    ["train", "image-ae", "--steps", "-1"], ["train", "mapper", "--pairs", "-2"],
    ["train", "direct", "--threads", "0"], ["data", "align", "--workers", "0"],
    ["data", "avatars", "--avatars", "0"], ["data", "pairs", "--augment", "-1"],
    ["all", "--steps-scale", "0"], ["all", "--workers", "0"], ["attributes", "--distil-steps", "0"],
    # a run's name with a path in it wrote the checkpoint and plot outside runs/, over the user's files;
    # NaN or infinite loss weights trained to a NaN checkpoint saved as done; a negative seed failed late
    ["train", "param-ae", "--name", "/tmp/elsewhere"], ["train", "param-ae", "--name", "../up"],
    ["train", "param-ae", "--name", ""], ["train", "mapper", "--image-ae", "a/b"], ["onnx", "--mapper", ".."],
    ["train", "mapper", "--rec-weight", "nan"], ["train", "mapper", "--geo-weight", "inf"],
    ["train", "mapper", "--rec-weight", "-1"], ["train", "image-ae", "--seed", "-1"],
])
def test_export_counts_are_checked_as_they_are_parsed(argv, capsys):
    """``train --steps 0`` (or ``--batch 0``) was taken for "the default" and
    started a full training (1 h 40 min); ``--steps -1`` said "done" with no
    checkpoint; other counts were plain integers: each is a usage error. So
    are run names with a path in them, loss weights that are not finite
    numbers >= 0 and seeds outside 0..2**32-1 (a review, session 64)."""
    from avatarizer_export.cli import main

    with pytest.raises(SystemExit) as exc:
        main(argv)
    err = capsys.readouterr().err
    assert exc.value.code == 2 and "error: argument" in err and "Traceback" not in err, err


def test_a_loss_that_is_not_finite_stops_the_run_before_it_is_saved():
    """A step whose loss is NaN or infinite (from a NaN weight given in
    Python, or a diverging run) stops training with a ValueError naming the
    run, the loss and the step; the run is not saved after it (a mapper run
    with a NaN weight was written as done, 1,632 NaN in its checkpoint)."""
    from types import SimpleNamespace

    from avatarizer_export import train as T

    for bad in (float("nan"), float("inf")):
        saved = []
        run = SimpleNamespace(step=0, cfg=SimpleNamespace(name="mapper_x", epoch_steps=2),
                              sched=SimpleNamespace(step=lambda v: None), opt=SimpleNamespace(param_groups=[{"lr": 1}]),
                              log=lambda **kw: None, save=lambda: saved.append(run.step), plot=lambda: None)
        losses = iter([{"rec": 0.5}, {"rec": 0.4}, {"rec": bad}])
        with pytest.raises(ValueError, match="mapper_x: the loss rec is .* at step 3"):
            T._loop(run, lambda: next(losses), lambda: 0.1, 10)
        assert saved == [2]  # (the epoch before it only)


def test_train_refuses_counts_below_one_from_python():
    from avatarizer_export.train import train

    for kw in ({"steps": 0}, {"batch": 0}, {"threads": -1}):
        with pytest.raises(ValueError, match="must be at least 1"):
            train("image-ae", "/nonexistent-cache", **kw)


def test_a_smoke_run_of_data_align_leaves_the_committed_split_doc_alone(monkeypatch, tmp_path):
    """``data align --limit 20`` rewrote docs/split.md and docs/heldout.txt
    with "20 of 20 photos aligned (... with 2 workers)"; only a full run
    of the project's shared folder writes them, with the workers it used
    (``--shared`` of 20 photos of one's own rewrote them too)."""
    from avatarizer_export import data

    written = []
    monkeypatch.setattr(data, "build_aligned", lambda *a, **k: None)
    monkeypatch.setattr(data, "write_split_doc", lambda shared, cache: written.append(cache))
    project = tmp_path / "shared"  # (the project's ../shared: ROOT.parent / "shared")
    project.mkdir()
    monkeypatch.setattr(data, "ROOT", tmp_path / "checkout")
    data.build("align", project, tmp_path, limit=20)
    assert written == []
    data.build("align", project, tmp_path)
    assert written == [tmp_path]
    # another folder of photos (--shared of one's own): the docs describe the project's split
    data.build("align", tmp_path, tmp_path)
    assert written == [tmp_path]


def test_a_cut_onnx_file_is_one_line_from_the_export_cli(tmp_path, monkeypatch, capsys):
    """A cut ONNX file raised protobuf's DecodeError out of avatarizer-export
    as a traceback: one line, exit 1."""
    import argparse

    import onnx

    from avatarizer_export import cli

    cut = tmp_path / "attributes-int8.onnx"
    cut.write_bytes(b"\x08\x07\x12\x04" + b"\xff" * 50)

    class Args:
        command = "rethreshold"

        @staticmethod
        def func(args):
            return onnx.load(str(cut))

    monkeypatch.setattr(argparse.ArgumentParser, "parse_args", lambda self, argv=None: Args())
    assert cli.main([]) == 1
    err = capsys.readouterr().err
    assert "not a readable model" in err and "Traceback" not in err and len(err.strip().splitlines()) == 1, err


@pytest.mark.parametrize("kind,train", [("param_ae", "train_param_ae"), ("image_ae", "train_image_ae")])
def test_a_resumed_run_trains_the_weights_an_uninterrupted_one_does(fake, kind, train):
    """The checkpoint holds the run's own generators' states (the batches'
    numpy generator, the augmentation's torch generator): a run resumed at
    step 2 re-seeded them from seed + step and trained other weights than
    one that ran the 6 steps at once (up to 0.09 apart, a review)."""
    fn = getattr(T, train)
    fn(cfg("whole", kind, steps=6))
    fn(cfg("cut", kind, steps=2))
    ck = T.load_run("cut")
    assert ck["step"] == 2 and ck["gens"]  # (the states are in the checkpoint)
    fn(cfg("cut", kind, steps=6))
    a, b = T.load_run("whole"), T.load_run("cut")
    assert a["step"] == b["step"] == 6
    for m in a["state"]:
        for k, v in a["state"][m].items():
            assert torch.equal(v, b["state"][m][k]), (m, k)


def test_default_run_names_keep_runs_with_other_options_apart():
    """Without ``--name``, ``direct --pairs 500`` trained into ``runs/direct``
    (the full-data baseline ``eval direct`` reads) and ``mapper --finetune
    mapper_no_w`` into ``runs/mapper_full_ft`` (the shipped mapper), each
    wiping the run there (a review, session 66)."""
    name = T.default_run_name
    assert name("image_ae") == "image_ae" and name("param_ae") == "param_ae"
    assert name("direct") == "direct" and name("direct", pairs=500) == "direct_500"
    assert name("direct", init_encoder="image_ae") == "direct_from_image_ae"
    assert name("mapper") == "mapper_full" and name("mapper", variant="no_w", pairs=500) == "mapper_no_w_500"
    # the recipes' fine-tuned runs keep their names (make models, the report)
    assert name("mapper", finetune="mapper_full") == T.SHIPPED_MAPPER == "mapper_full_ft"
    assert name("mapper", pairs=500, finetune="mapper_full_500") == "mapper_full_500_ft"
    assert name("mapper", variant="no_align", finetune="mapper_no_align") == "mapper_no_align_ft"
    other = name("mapper", finetune="mapper_no_w")
    assert other not in (T.SHIPPED_MAPPER, "mapper_no_w_ft") and other.startswith("mapper_full_ft")
    # a mapper's loss weights and autoencoders (--geo-weight 2 trained into runs/mapper_full, wiping it:
    # helper-443, session 69); at their defaults the names above stay
    assert name("mapper", geo_weight=2.0) == "mapper_full_geo2"
    assert name("mapper", rec_weight=0.5, pairs=500) == "mapper_full_500_rec0.5"
    assert name("mapper", image_ae="image_ae_b", param_ae="pa2") == "mapper_full_ae-image_ae_b_pae-pa2"
    assert name("mapper", geo_weight=2.0, finetune="mapper_full_geo2") == "mapper_full_geo2_ft"
    assert name("mapper", rec_weight=1.0, geo_weight=1.0, image_ae="image_ae", param_ae="param_ae") == "mapper_full"
    names = {name("mapper"), name("mapper", geo_weight=2.0), name("mapper", rec_weight=2.0),
             name("mapper", image_ae="x"), name("mapper", param_ae="x")}
    assert len(names) == 5


def test_options_a_network_does_not_read_are_refused(tmp_path, capsys):
    """``train param-ae --pairs 5 --variant no_w`` was accepted, ignored, and
    stored in the run's config: param_ae retrained from scratch ("config
    changed, starting over"), and every mapper trained on it refused to
    export. Now a usage error (exit 2), before anything is loaded."""
    from avatarizer_export import cli

    with pytest.raises(ValueError, match="param-ae takes no --pairs, --variant"):
        T.train("param-ae", tmp_path, pairs=5, variant="no_w")
    with pytest.raises(ValueError, match=r"direct takes no --finetune \(it takes --init-encoder, --pairs\)"):
        T.train("direct", tmp_path, finetune="mapper_full")
    with pytest.raises(ValueError, match="mapper takes no --init-encoder"):
        T.check_options("mapper", init_encoder="image_ae")
    T.check_options("image-ae", pairs=0, variant="full")  # (at their defaults: nothing given)
    T.check_options("mapper", pairs=5, variant="no_w", finetune="mapper_no_w", rec_weight=0.5)
    assert cli.main(["train", "image-ae", "--cache", str(tmp_path), "--pairs", "5"]) == 2
    err = capsys.readouterr().err
    assert "image-ae takes no --pairs" in err and "Traceback" not in err
    assert not (T.RUNS / "image_ae_5").exists()


def test_too_few_pairs_for_a_batch_is_a_clear_error():
    """``--pairs`` 1-7 raised numpy's "Cannot take a larger sample than
    population" (8 photos validate), ``--pairs 8`` "a cannot be empty" after
    the run's folder was made; fewer training rows than a batch too. Now a
    ValueError that names the least ``--pairs`` that trains."""
    source = np.repeat(np.arange(100), 2)  # 100 photos, two pairs each
    for n in (1, 5, 8, 9):
        with pytest.raises(ValueError, match=r"under a batch of 4: 8 photos validate; --pairs 10 or more"):
            T.train_val_rows(source, n, 4)
    tr, val = T.train_val_rows(source, 12, 4)
    assert len(tr) == 8 and len(val) == 16 and not set(source[tr]) & set(source[val])
    tr, val = T.train_val_rows(source, 0, 48)  # all: 8 of 100 photos validate
    assert len(val) == 16 and len(tr) == 184
    with pytest.raises(ValueError, match="--pairs 32 or more"):
        T.train_val_rows(source, 20, 48)


def test_a_run_folder_that_is_a_file_and_a_batch_over_the_photos_are_said(fake):
    """A file where the run's folder goes was "[Errno 17] File exists"; a
    batch over the image autoencoder's training photos numpy's "Cannot take
    a larger sample than population"."""
    (fake.runs).mkdir(parents=True, exist_ok=True)
    (fake.runs / "afile").write_text("mine")
    with pytest.raises(RuntimeError, match="is not a folder"):
        T.train_param_ae(cfg("afile", "param_ae", steps=1))
    assert (fake.runs / "afile").read_text() == "mine"
    with pytest.raises(ValueError, match="under a batch of 100000"):
        T.train_image_ae(dataclasses.replace(cfg("img_big", "image_ae", steps=1), batch=100000))

