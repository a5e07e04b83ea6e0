"""Export toolchain: ONNX export, fp16, int8 behind a quality gate, manifest, runtime sessions.

The trained networks (E_s, F, D_t, H) do not exist yet, so these tests use
STAND-IN MODULES: small, randomly initialised networks with the real inputs
and outputs (aligned crop N×3×S×S → 512 latent → 483 face parameters in
[-1, 1]; crop → attribute logits). They are test fixtures only: nothing
here is shipped, and their outputs mean nothing. ``benchmarks/onnx_cpu.py
--standin`` reuses :func:`build_standin_models`.
"""
from __future__ import annotations

import hashlib
import json
import re
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from avatarizer import schema  # noqa: E402
from avatarizer.errors import ModelError  # noqa: E402
from avatarizer.models import (  # noqa: E402
    ENGINE_MAGIC, MANIFEST_NAME, ROLES, Manifest, Session, pack_engine, read_engine_header,
    read_onnx_description, resolve_providers)
from avatarizer_export import formats, onnx_export, quantize  # noqa: E402

CROP = 128
LATENT = 512
FACE = schema.FACE.stop - schema.FACE.start          # 483
ATTRIBUTES = 14   # 6 binary + 5 hair colours + 2 genders + age: stand-in width only


# --------------------------------------------------------------------------------------
# TEST FIXTURES: stand-in networks (random weights, not trained, never shipped)
# --------------------------------------------------------------------------------------

def standin_encoder(width: int = 16) -> "torch.nn.Module":
    """Stand-in for E_s: a small CNN, crop (N×3×S×S) → z_s (N×512)."""
    nn = torch.nn
    return nn.Sequential(
        nn.Conv2d(3, width, 3, 2, 1), nn.BatchNorm2d(width), nn.ReLU(),
        nn.Conv2d(width, 2 * width, 3, 2, 1), nn.ReLU(),
        nn.Conv2d(2 * width, 4 * width, 3, 2, 1), nn.ReLU(),
        nn.Conv2d(4 * width, 4 * width, 3, 2, 1), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4 * width, LATENT))


def standin_mapper() -> "torch.nn.Module":
    """Stand-in for F: z_s (N×512) → z_m (N×512)."""
    nn = torch.nn
    return nn.Sequential(nn.Linear(LATENT, LATENT), nn.ReLU(), nn.Linear(LATENT, LATENT))


def standin_decoder() -> "torch.nn.Module":
    """Stand-in for D_t: z_m (N×512) → face parameters (N×483) in [-1, 1]."""
    nn = torch.nn
    return nn.Sequential(nn.Linear(LATENT, LATENT), nn.ReLU(), nn.Linear(LATENT, FACE), nn.Tanh())


def standin_attributes(width: int = 16) -> "torch.nn.Module":
    """Stand-in for H: crop → attribute logits (N×14)."""
    nn = torch.nn
    return nn.Sequential(
        nn.Conv2d(3, width, 3, 2, 1), nn.ReLU(), nn.Conv2d(width, 2 * width, 3, 2, 1), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(2 * width, ATTRIBUTES))


def standin_crops(n: int, seed: int, size: int = CROP) -> np.ndarray:
    """Crop-like inputs: smooth random images in the normalised [-1, 1] range."""
    rng = np.random.default_rng(seed)
    low = rng.uniform(-1, 1, (n, 3, size // 16, size // 16)).astype(np.float32)
    img = np.repeat(np.repeat(low, 16, axis=2), 16, axis=3)
    return np.clip(img + rng.normal(0, 0.1, img.shape).astype(np.float32), -1, 1)


def standin_metadata(role: str, inputs, outputs, precision: str = "fp32") -> dict:
    return formats.make_metadata(
        name=formats.model_name(role, f"onnx-{precision}"), role=role, version="0.0.0-standin",
        inputs=inputs, outputs=outputs,
        training_data={"stand_in": True, "note": "random weights: a test fixture, not a trained model"})


def build_standin_models(folder: Path, size: int = CROP, seed: int = 0) -> dict:
    """Exports the stand-in image→face network as onnx-fp32, -fp16 and -int8 into ``folder``
    (with its manifest); returns ``{"module", "reports", "eval"}``."""
    torch.manual_seed(seed)
    net = onnx_export.fuse(standin_encoder(), standin_mapper(), standin_decoder())
    calib, held_out = standin_crops(32, seed + 1, size), standin_crops(16, seed + 2, size)
    meta = standin_metadata("image_to_face", [formats.image_input("image", size)],
                            [formats.face_params_output()])
    reports = {"fp32": onnx_export.export_onnx(
        net, torch.from_numpy(held_out[:1]), folder / "image_to_face-fp32.onnx",
        meta["name"], ["image"], ["face_params"], meta,
        check_inputs=[held_out[:4], held_out[4:5]])}
    reports["fp16"] = onnx_export.convert_fp16(folder / "image_to_face-fp32.onnx",
                                               folder / "image_to_face-fp16.onnx",
                                               check_inputs=[held_out[:4]])
    reports["int8"] = quantize.quantize_gated(
        folder / "image_to_face-fp32.onnx", folder / "image_to_face-int8.onnx", calib,
        [held_out[:8], held_out[8:]], {"param_l1": quantize.param_l1}, {"param_l1": 0.05})
    return {"module": net, "reports": reports, "eval": held_out, "calibration": calib}


# --------------------------------------------------------------------------------------
# fixtures
# --------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    folder = tmp_path_factory.mktemp("models")
    built = build_standin_models(folder)
    built["folder"] = folder
    return built


def _copy(folder: Path, tmp_path: Path) -> Path:
    dst = tmp_path / "models"
    shutil.copytree(folder, dst)
    return dst


def _edit_manifest(folder: Path, fn) -> None:
    path = folder / MANIFEST_NAME
    doc = json.loads(path.read_text())
    fn(doc["models"])
    path.write_text(json.dumps(doc))


# --------------------------------------------------------------------------------------
# format table
# --------------------------------------------------------------------------------------

def test_format_table():
    assert list(formats.FORMATS) == ["onnx-fp32", "onnx-fp16", "onnx-int8", "engine-fp16", "engine-int8"]
    for name, f in formats.FORMATS.items():
        assert f.precision in ("fp32", "fp16", "int8")
        assert f.suffix == (".engine" if name.startswith("engine") else ".onnx")
        assert f.gpu == name.startswith("engine")
        assert f.needs_calibration == name.endswith("int8")
        assert "dynamic_batch" in f.options
    assert formats.check_format("onnx-fp32", dynamic_batch=False, opset=17).name == "onnx-fp32"
    assert formats.file_name("encoder", "onnx-int8") == "encoder-int8.onnx"
    assert formats.model_name("image_to_face", "engine-fp16") == "image_to_face-engine-fp16"


def test_unknown_format_says_did_you_mean():
    with pytest.raises(ValueError, match=r"did you mean 'onnx-fp16'"):
        formats.check_format("onnx-fp61")
    with pytest.raises(ValueError, match=r"did you mean 'engine-int8'"):
        formats.check_format("engine_int8")


def test_bad_options_are_refused_before_work():
    with pytest.raises(ValueError, match="does not take option 'calibration'"):
        formats.check_format("onnx-fp32", calibration=np.zeros((1, 3, 8, 8)))
    with pytest.raises(ValueError, match="did you mean 'dynamic_batch'"):
        formats.check_format("onnx-fp16", dynamic_batches=True)
    with pytest.raises(ValueError, match="bad opset=5"):
        formats.check_format("onnx-fp32", opset=5)
    with pytest.raises(ValueError, match="needs calibration"):
        formats.check_format("onnx-int8")
    with pytest.raises(ValueError, match="bad activation_type"):
        formats.check_format("onnx-int8", calibration=np.zeros((1, 3)), activation_type="uint4")


def test_engine_formats_need_cuda_here():
    from avatarizer.trt_backend import cuda_status, tensorrt_status

    ok, reason = cuda_status()
    if ok:
        trt_ok, trt_reason = tensorrt_status()
        if trt_ok:
            pytest.skip(f"this machine has a GPU ({reason}) and TensorRT {trt_reason}")
        with pytest.raises(RuntimeError, match="tensorrt Python package"):
            formats.check_format("engine-fp16")
        return
    assert reason
    for name, options in (("engine-fp16", {"max_batch": 16}),
                          ("engine-int8", {"calibration": np.zeros((1, 3, 8, 8))})):
        with pytest.raises(RuntimeError) as err:
            formats.check_format(name, **options)
        assert str(err.value).startswith("TensorRT engines need an NVIDIA GPU with CUDA; none found: ")
        assert reason in str(err.value)


# --------------------------------------------------------------------------------------
# fp32 export
# --------------------------------------------------------------------------------------

def test_fp32_export_passes_checker_and_matches_torch(exported):
    path = exported["folder"] / "image_to_face-fp32.onnx"
    onnx.checker.check_model(onnx.load(str(path)), full_check=True)
    report = exported["reports"]["fp32"]
    assert report["max_abs_diff"] <= 1e-4 and report["inputs"] == 3
    sess = Session(path, device="cpu")
    net = exported["module"]
    for batch in (standin_crops(2, 11), standin_crops(3, 12)):   # fresh inputs
        got = sess.run({"image": batch})["face_params"]
        with torch.no_grad():
            want = net(torch.from_numpy(batch)).numpy()
        assert np.max(np.abs(got - want)) <= 1e-4


def test_dynamic_batch_1_and_8(exported):
    sess = Session(exported["folder"] / "image_to_face-fp32.onnx", device="cpu")
    assert sess.inputs[0].shape == ("batch", 3, CROP, CROP)
    x = standin_crops(8, 21)
    out8 = sess.run({"image": x})["face_params"]
    out1 = sess.run({"image": x[:1]})["face_params"]
    assert out8.shape == (8, FACE) and out1.shape == (1, FACE)
    np.testing.assert_allclose(out1[0], out8[0], atol=1e-5)
    assert np.all(np.abs(out8) <= 1.0)


def test_fixed_batch_export(tmp_path):
    torch.manual_seed(3)
    dec = standin_decoder()
    meta = standin_metadata("mapper_decoder", [formats.tensor_spec("z_s")], [formats.face_params_output()])
    meta["outputs"][0].pop("shape")
    z = torch.randn(2, LATENT)
    onnx_export.export_onnx(dec, z, tmp_path / "md.onnx", meta["name"], ["z_s"], ["face_params"], meta,
                            dynamic_batch=False, check_inputs=[z])
    sess = Session(tmp_path / "md.onnx", device="cpu")
    assert sess.inputs[0].shape == (2, LATENT)
    with pytest.raises(ValueError, match=r"expects a float32 array of shape \(2, 512\)"):
        sess.run({"z_s": np.zeros((3, LATENT), np.float32)})


def test_export_refuses_when_onnx_disagrees_with_torch(tmp_path):
    class Branchy(torch.nn.Module):
        """Traced for one branch only: ONNX and PyTorch differ on the other."""

        def forward(self, x):
            if x.mean() > 0:
                return x * 2.0
            return x * 3.0

    meta = standin_metadata("mapper_decoder", [formats.tensor_spec("z_s")], [formats.tensor_spec("out")])
    pos = torch.ones(1, 4)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(onnx_export.ExportError, match=r"max \|diff\| = [0-9.]+ > atol 0.0001"):
            onnx_export.export_onnx(Branchy(), pos, tmp_path / "b.onnx", meta["name"], ["z_s"], ["out"],
                                    meta, check_inputs=[pos, -pos])
    assert not list(tmp_path.iterdir())  # nothing written, no temp files


def test_export_checks_metadata_against_graph(tmp_path):
    meta = standin_metadata("encoder", [formats.image_input("image", 64)], [formats.tensor_spec("z_s")])
    with pytest.raises(ValueError, match=r"shape \['batch', 3, 64, 64\]"):
        onnx_export.export_onnx(standin_encoder(), torch.zeros(1, 3, CROP, CROP), tmp_path / "e.onnx",
                                meta["name"], ["image"], ["z_s"], meta, check_inputs=[])
    with pytest.raises(ValueError, match="writes fp32"):
        onnx_export.export_onnx(standin_encoder(), torch.zeros(1, 3, CROP, CROP), tmp_path / "e.onnx",
                                meta["name"], ["image"], ["z_s"], dict(meta, precision="fp16"))
    assert not (tmp_path / "e.onnx").exists()


def test_every_role_exports_and_loads(tmp_path):
    torch.manual_seed(5)
    crops = standin_crops(3, 31)
    enc, mapper, dec, attr = standin_encoder(), standin_mapper(), standin_decoder(), standin_attributes()
    md = onnx_export.fuse(mapper, dec)
    jobs = [
        ("encoder", enc, crops, [formats.image_input("image")], ["image"], ["z_s"]),
        ("mapper_decoder", md, np.random.default_rng(0).normal(size=(3, LATENT)).astype(np.float32),
         [formats.tensor_spec("z_s", ["batch", LATENT])], ["z_s"], ["face_params"]),
        ("attributes", attr, crops, [formats.image_input("image")], ["image"], ["logits"]),
    ]
    for role, module, x, ins, in_names, out_names in jobs:
        outs = [formats.face_params_output()] if role == "mapper_decoder" else [formats.tensor_spec(out_names[0])]
        meta = standin_metadata(role, ins, outs)
        onnx_export.export_onnx(module, torch.from_numpy(x[:1]), tmp_path / formats.file_name(role, "onnx-fp32"),
                                meta["name"], in_names, out_names, meta, check_inputs=[x])
    manifest = Manifest.load(tmp_path)
    assert {manifest[n].role for n in manifest} == {"encoder", "mapper_decoder", "attributes"}
    z = manifest.session("encoder", device="cpu").run({"image": crops})["z_s"]
    params = manifest.session("mapper_decoder", device="cpu").run({"z_s": z})["face_params"]
    logits = manifest.session("attributes", device="cpu").run({"image": crops})["logits"]
    assert z.shape == (3, LATENT) and params.shape == (3, FACE) and logits.shape == (3, ATTRIBUTES)
    with torch.no_grad():
        fused = onnx_export.fuse(enc, mapper, dec)(torch.from_numpy(crops)).numpy()
    np.testing.assert_allclose(params, fused, atol=1e-4)   # the two-stage path = the fused graph


# --------------------------------------------------------------------------------------
# fp16, int8 and the quality gate
# --------------------------------------------------------------------------------------

def test_fp16_and_int8_files_load_and_run(exported):
    manifest = Manifest.load(exported["folder"])
    x = exported["eval"][:4]
    ref = manifest.session("image_to_face", precision="fp32", device="cpu").run({"image": x})["face_params"]
    for precision, tol in (("fp16", 1e-2), ("int8", 0.1)):
        entry = manifest.find("image_to_face", precision)
        sess = manifest.session(entry.name, device="cpu")
        assert sess.precision == precision and sess.inputs[0].dtype == np.float32
        out = sess.run({"image": x})["face_params"]
        assert out.shape == (4, FACE) and out.dtype == np.float32
        assert np.max(np.abs(out - ref)) < tol, precision
    int8 = onnx.load(str(exported["folder"] / "image_to_face-int8.onnx"))
    ops = {n.op_type for n in int8.graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops                       # QDQ format
    fp16 = onnx.load(str(exported["folder"] / "image_to_face-fp16.onnx"))
    assert any(t.data_type == onnx.TensorProto.FLOAT16 for t in fp16.graph.initializer)


def test_quality_gate_passes_permissive_threshold(exported):
    report = exported["reports"]["int8"]
    assert report["passed"] and report["failed"] == []
    assert 0 < report["metrics"]["param_l1"] <= 0.05
    entry = json.loads((exported["folder"] / MANIFEST_NAME).read_text())["models"]["image_to_face-onnx-int8"]
    assert entry["quality_gate"]["metrics"]["param_l1"] == pytest.approx(report["metrics"]["param_l1"])
    g = quantize.gate(exported["folder"] / "image_to_face-fp32.onnx",
                      exported["folder"] / "image_to_face-fp16.onnx", [exported["eval"][:4]],
                      {"param_l1": quantize.param_l1, "max_abs": quantize.max_abs},
                      {"param_l1": 0.01, "max_abs": 0.1})
    assert g["passed"] and g["inputs"] == 1


def test_quality_gate_refuses_impossible_threshold(exported, tmp_path):
    folder = _copy(exported["folder"], tmp_path)
    before = sorted(p.name for p in folder.iterdir())
    out = folder / "image_to_face-int8-strict.onnx"
    with pytest.raises(quantize.QualityGateError) as err:
        quantize.quantize_gated(folder / "image_to_face-fp32.onnx", out, exported["calibration"],
                                [exported["eval"]], {"param_l1": quantize.param_l1, "max_abs": quantize.max_abs},
                                {"param_l1": 1e-12, "max_abs": 10.0}, name="image_to_face-strict")
    msg = str(err.value)
    assert "refused by the quality gate" in msg and "param_l1 = " in msg and "> 1e-12" in msg
    assert "max_abs = " in msg  # the passing metric is reported too
    assert err.value.report["metrics"]["param_l1"] > 0 and err.value.report["failed"] == ["param_l1"]
    assert not out.exists()
    assert sorted(p.name for p in folder.iterdir()) == before         # no temp files left
    assert "image_to_face-strict" not in json.loads((folder / MANIFEST_NAME).read_text())["models"]


def test_calibration_reader_protocol():
    data = np.zeros((10, 3, 4, 4), np.float32)
    reader = quantize.ArrayCalibrationReader(data, "image", batch_size=4)
    sizes = []
    while (feed := reader.get_next()) is not None:
        assert list(feed) == ["image"]
        sizes.append(len(feed["image"]))
    assert sizes == [4, 4, 2] and reader.get_next() is None
    reader.rewind()
    assert len(reader.get_next()["image"]) == 4


# --------------------------------------------------------------------------------------
# metadata and manifest
# --------------------------------------------------------------------------------------

def test_metadata_in_file_and_manifest(exported):
    folder = exported["folder"]
    doc = json.loads((folder / MANIFEST_NAME).read_text())
    assert set(doc) == {"models"}
    for name, entry in doc["models"].items():
        path = folder / entry["file"]
        data = path.read_bytes()
        assert entry["sha256"] == hashlib.sha256(data).hexdigest() and entry["size"] == len(data)
        props = {p.key: p.value for p in onnx.load(str(path)).metadata_props}
        meta = json.loads(props["avatarizer"])
        assert meta == read_onnx_description(data)
        assert meta["name"] == name and meta["precision"] == entry["precision"]
        assert meta["schema_version"] == schema.VERSION == entry["schema_version"]
        assert meta["role"] == "image_to_face" and meta["version"] == "0.0.0-standin"
        assert meta["training_data"]["stand_in"] is True
        assert meta["created_by"].startswith("avatarizer_export ")
        image = meta["inputs"][0]
        assert image["shape"] == ["batch", 3, CROP, CROP] and image["dtype"] == "float32"
        norm = image["normalisation"]
        assert norm["colour_order"] == "RGB" and norm["mean"] == [0.5] * 3 and norm["std"] == [0.5] * 3
        assert norm["pixel_range"] == [0, 255]
        assert meta["outputs"][0]["shape"] == ["batch", FACE]
        assert entry["inputs"] == meta["inputs"] and entry["outputs"] == meta["outputs"]
    assert json.loads(onnx.load(str(folder / "image_to_face-int8.onnx")).metadata_props[-1].value)[
        "quantization"]["activation_type"] == "QInt8"


def test_engine_header_roundtrip():
    meta = {"name": "x", "precision": "fp16"}
    blob = pack_engine(meta, b"\x01\x02engine")
    assert blob.startswith(ENGINE_MAGIC)
    got, offset = read_engine_header(blob)
    assert got == meta and blob[offset:] == b"\x01\x02engine"
    with pytest.raises(ValueError, match="AVZENG1"):
        read_engine_header(b"plan-without-header" * 4)
    with pytest.raises(ValueError, match="truncated"):
        read_engine_header(blob[:20])


def test_manifest_accepts_good_folder_without_making_sessions(exported, monkeypatch):
    def no_sessions(*a, **k):
        raise AssertionError("Manifest.load must not create a session")

    monkeypatch.setattr(ort, "InferenceSession", no_sessions)
    manifest = Manifest.load(exported["folder"])
    assert sorted(manifest) == ["image_to_face-onnx-fp16", "image_to_face-onnx-fp32", "image_to_face-onnx-int8"]
    entry = manifest["image_to_face-onnx-int8"]
    assert entry.precision == "int8" and entry.kind == "onnx" and entry.description["name"] == entry.name


def _load_error(folder: Path) -> str:
    with pytest.raises(ModelError) as err:
        Manifest.load(folder)
    return str(err.value)


def test_manifest_refuses_truncated_file(exported, tmp_path):
    folder = _copy(exported["folder"], tmp_path)
    path = folder / "image_to_face-int8.onnx"
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    msg = _load_error(folder)
    assert "image_to_face-int8.onnx: size is" in msg and "truncated" in msg


def test_manifest_refuses_byte_flipped_file(exported, tmp_path):
    folder = _copy(exported["folder"], tmp_path)
    path = folder / "image_to_face-fp32.onnx"
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    msg = _load_error(folder)
    assert "image_to_face-fp32.onnx: sha256 is" in msg and "corrupt or modified" in msg


def test_manifest_refuses_missing_file(exported, tmp_path):
    folder = _copy(exported["folder"], tmp_path)
    (folder / "image_to_face-fp16.onnx").unlink()
    msg = _load_error(folder)
    assert "image_to_face-fp16.onnx: missing" in msg


def test_manifest_refuses_metadata_mismatch(exported, tmp_path):
    folder = _copy(exported["folder"], tmp_path)

    def swap(models):
        a, b = models["image_to_face-onnx-fp16"], models["image_to_face-onnx-int8"]
        a["precision"], b["precision"] = b["precision"], a["precision"]
        a.pop("format"), b.pop("format")

    _edit_manifest(folder, swap)
    msg = _load_error(folder)
    assert "image_to_face-fp16.onnx: embedded metadata says precision 'fp16', the manifest says 'int8'" in msg
    assert "image_to_face-int8.onnx: embedded metadata says precision 'int8', the manifest says 'fp16'" in msg


def test_manifest_refuses_non_onnx_file_with_correct_hash(exported, tmp_path):
    folder = _copy(exported["folder"], tmp_path)
    bogus = folder / "attributes-fp32.onnx"
    bogus.write_bytes(b"this is a text file, not an ONNX model\n" * 10)
    plain = folder / "encoder-fp32.onnx"   # real ONNX, but not exported by avatarizer_export
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(torch.nn.Linear(4, 2), (torch.zeros(1, 4),), str(plain), dynamo=False)

    def add(models):
        for path, role in ((bogus, "attributes"), (plain, "encoder")):
            data = path.read_bytes()
            models[f"{role}-onnx-fp32"] = {"file": path.name, "sha256": hashlib.sha256(data).hexdigest(),
                                           "size": len(data), "precision": "fp32", "role": role}

    _edit_manifest(folder, add)
    msg = _load_error(folder)
    assert "attributes-fp32.onnx: not an ONNX model" in msg
    assert "encoder-fp32.onnx: ONNX model has no 'avatarizer' metadata" in msg
    assert "2 of 5 model file(s) failed" in msg


def test_manifest_refuses_bad_engine_header_and_path_escape(exported, tmp_path):
    folder = _copy(exported["folder"], tmp_path)
    (folder / "x-fp16.engine").write_bytes(b"raw TensorRT plan" * 8)
    (tmp_path / "outside.onnx").write_bytes(b"x")

    def add(models):
        data = (folder / "x-fp16.engine").read_bytes()
        models["image_to_face-engine-fp16"] = {"file": "x-fp16.engine", "size": len(data), "precision": "fp16",
                                               "sha256": hashlib.sha256(data).hexdigest()}
        models["escape"] = {"file": "../outside.onnx", "size": 1, "precision": "fp32", "sha256": "0"}

    _edit_manifest(folder, add)
    msg = _load_error(folder)
    assert "x-fp16.engine: no b'AVZENG1\\x00' header" in msg
    assert "../outside.onnx: path leaves the models folder" in msg


def test_manifest_verifies_engine_headers_without_tensorrt(exported, tmp_path):
    folder = _copy(exported["folder"], tmp_path)
    src = read_onnx_description((folder / "image_to_face-fp32.onnx").read_bytes())
    meta = formats.derive_metadata(src, fmt="engine-fp16", tensorrt={"version": "test", "device": "none"})
    engine = folder / "image_to_face-fp16.engine"
    engine.write_bytes(pack_engine(meta, b"not a real engine: header checks only"))
    formats.add_to_manifest(engine, meta)
    manifest = Manifest.load(folder)
    entry = manifest["image_to_face-engine-fp16"]
    assert entry.kind == "engine" and entry.description["tensorrt"]["version"] == "test"
    assert manifest.find("image_to_face", "fp16", kind="engine") == entry
    from avatarizer.trt_backend import cuda_status

    if not cuda_status()[0]:
        with pytest.raises(RuntimeError, match="TensorRT needs an NVIDIA GPU with CUDA; none found"):
            manifest.session("image_to_face-engine-fp16")
    _edit_manifest(folder, lambda m: m["image_to_face-engine-fp16"].update(precision="int8",
                                                                           format="engine-int8"))
    msg = _load_error(folder)
    assert "image_to_face-fp16.engine: embedded metadata says precision 'fp16', the manifest says 'int8'" in msg


def test_manifest_missing_folder_is_a_model_error(tmp_path):
    with pytest.raises(ModelError, match="no model manifest"):
        Manifest.load(tmp_path)
    (tmp_path / MANIFEST_NAME).write_text("{not json")
    with pytest.raises(ModelError, match="unreadable manifest"):
        Manifest.load(tmp_path)


# --------------------------------------------------------------------------------------
# runtime sessions
# --------------------------------------------------------------------------------------

def test_role_registry():
    assert set(ROLES) == {"encoder", "mapper_decoder", "image_to_face", "attributes"}
    with pytest.raises(ValueError, match="did you mean 'encoder'"):
        formats.check_role("encodr")


def test_provider_resolution():
    assert resolve_providers("cpu") == ["CPUExecutionProvider"]
    everything = ["CPUExecutionProvider", "CUDAExecutionProvider", "TensorrtExecutionProvider"]
    gpu, none = (True, "1 CUDA device(s)"), (False, "the NVIDIA driver library (libcuda) could not be loaded")
    trt, no_trt = (True, "TensorRT libraries load"), (False, "libnvinfer.so.10: cannot open shared object file")
    assert resolve_providers("auto", everything, gpu, trt) == ["TensorrtExecutionProvider", "CUDAExecutionProvider",
                                                               "CPUExecutionProvider"]
    # onnxruntime-gpu lists the TensorRT EP without TensorRT installed (each session then prints an
    # "EP Error" banner and retries): 'auto' leaves it out; 'cuda' never takes it
    assert resolve_providers("auto", everything, gpu, no_trt) == ["CUDAExecutionProvider", "CPUExecutionProvider"]
    assert resolve_providers("auto", ["AzureExecutionProvider", "CPUExecutionProvider"]) == ["CPUExecutionProvider"]
    assert resolve_providers("cuda", everything, gpu) == ["CUDAExecutionProvider", "CPUExecutionProvider"]
    # onnxruntime-gpu on a machine without a usable GPU: the CPU, not 'cuda' with a quiet fall back
    assert resolve_providers("auto", everything, none) == ["CPUExecutionProvider"]
    with pytest.raises(RuntimeError, match="no usable GPU: the NVIDIA driver"):
        resolve_providers("cuda", everything, none)
    with pytest.raises(RuntimeError, match="no CUDAExecutionProvider"):
        resolve_providers("cuda", ["CPUExecutionProvider"])
    with pytest.raises(ValueError, match="device must be one of"):
        resolve_providers("gpu")


def test_session_providers_threads_and_input_checks(exported):
    path = exported["folder"] / "image_to_face-fp32.onnx"
    sess = Session(path)                                   # auto
    assert sess.providers[-1] == "CPUExecutionProvider"
    assert sess.intra_op_num_threads == 1 and sess.name == "image_to_face-onnx-fp32"
    override = Session(path, providers=["CPUExecutionProvider"], intra_op_num_threads=2)
    assert override.providers == ["CPUExecutionProvider"]
    assert Session(path, providers=[("CPUExecutionProvider", {})]).providers == ["CPUExecutionProvider"]
    # refused, not a banner and the CPU: a name onnxruntime lacks, none, a string (read letter by letter)
    for bad, says in ((["NoSuchProvider"], "not in this onnxruntime"), ([], "non-empty"),
                      ("CPUExecutionProvider", "non-empty list"), ([("CPUExecutionProvider",)], "(name, dict)")):
        with pytest.raises(ValueError, match=re.escape(says)):
            Session(path, providers=bad)
    if "CUDAExecutionProvider" not in ort.get_available_providers():
        with pytest.raises(RuntimeError, match="device='cuda'"):
            Session(path, device="cuda")
    good = exported["eval"][:1]
    with pytest.raises(ValueError, match=r"model 'image_to_face-onnx-fp32' input 'image' expects a float32 "
                                         r"array of shape \(batch, 3, 128, 128\); got float64"):
        sess.run({"image": good.astype(np.float64)})
    with pytest.raises(ValueError, match=r"shape \(batch, 3, 128, 128\); got shape \(1, 3, 64, 64\)"):
        sess.run({"image": np.zeros((1, 3, 64, 64), np.float32)})
    with pytest.raises(ValueError, match=r"shape \(batch, 3, 128, 128\); got shape \(3, 128, 128\)"):
        sess.run({"image": good[0]})
    with pytest.raises(ValueError, match=r"takes inputs \['image'\]; missing \['image'\], unknown \['img'\]"):
        sess.run({"img": good})
    crop = np.full((CROP, CROP, 3), 255, np.uint8)
    x = sess.preprocess(crop)
    assert x.shape == (1, 3, CROP, CROP) and x.dtype == np.float32 and np.allclose(x, 1.0)
    assert sess.run({"image": x})["face_params"].shape == (1, FACE)


def test_session_on_corrupt_file_is_a_model_error(tmp_path):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"\x08\x07garbage")
    with pytest.raises(ModelError, match="bad.onnx"):
        Session(bad, device="cpu")


def test_models_module_is_torch_free():
    import subprocess
    import sys

    code = ("import sys, avatarizer.models, avatarizer.trt_backend; "
            "bad = [m for m in ('torch', 'onnx', 'tensorrt') if m in sys.modules]; "
            "print(bad); sys.exit(1 if bad else 0)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


# --------------------------------------------------------------------------------------
# TensorRT (skipped without an NVIDIA GPU and tensorrt)
# --------------------------------------------------------------------------------------

def _need_tensorrt():
    from avatarizer.trt_backend import cuda_status, tensorrt_status

    ok, reason = cuda_status()
    if not ok:
        pytest.skip(f"TensorRT needs CUDA: {reason}")
    ok, reason = tensorrt_status()
    if not ok:
        pytest.skip(f"TensorRT needs the tensorrt package: {reason}")


def test_trt_session_checks_header_before_cuda(tmp_path):
    from avatarizer.trt_backend import TensorRTSession, cuda_status

    raw = tmp_path / "raw.engine"
    raw.write_bytes(b"\x00" * 64)
    with pytest.raises(ModelError, match="raw.engine: no b'AVZENG1"):
        TensorRTSession(raw)
    wrapped = tmp_path / "w.engine"
    wrapped.write_bytes(pack_engine({"name": "w", "precision": "fp16"}, b"\x00" * 64))
    with pytest.raises(ModelError, match="engine header says precision 'fp16', expected 'int8'"):
        TensorRTSession(wrapped, expected={"precision": "int8"})
    ok, reason = cuda_status()
    if ok:
        pytest.skip(f"has a GPU ({reason}): the no-CUDA message is not testable here")
    with pytest.raises(RuntimeError, match="TensorRT needs an NVIDIA GPU with CUDA; none found: "):
        TensorRTSession(wrapped)


@pytest.mark.slow
@pytest.mark.parametrize("fmt", ["engine-fp16", "engine-int8"])
def test_tensorrt_engine_build_and_run(exported, tmp_path, fmt):
    _need_tensorrt()
    import tensorrt as trt

    from avatarizer.trt_backend import TensorRTSession
    from avatarizer_export import tensorrt_build

    folder = _copy(exported["folder"], tmp_path)
    weak = hasattr(trt.BuilderFlag, "FP16")
    if fmt == "engine-fp16":
        src = folder / ("image_to_face-fp32.onnx" if weak else "image_to_face-fp16.onnx")
    elif weak:
        src = folder / "image_to_face-fp32.onnx"
    else:
        src = folder / "image_to_face-int8-sym.onnx"
        quantize.quantize_gated(folder / "image_to_face-fp32.onnx", src, exported["calibration"],
                                [exported["eval"]], {"param_l1": quantize.param_l1}, {"param_l1": 0.05},
                                name="image_to_face-onnx-int8-sym", symmetric_activations=True)
    out = folder / formats.file_name("image_to_face", fmt)
    report = tensorrt_build.build_engine(src, out, fmt, calibration=exported["calibration"],
                                         max_batch=16, check_inputs=[exported["eval"][:8]])
    assert out.read_bytes().startswith(ENGINE_MAGIC)
    assert max(report["max_abs_diff_vs_onnx"].values()) < (0.05 if fmt == "engine-fp16" else 0.2)
    manifest = Manifest.load(folder)
    entry = manifest[formats.model_name("image_to_face", fmt)]
    assert entry.kind == "engine" and entry.description["tensorrt"]["profile"]["max_batch"] == 16
    with TensorRTSession(entry.path, expected=entry.description) as sess:
        for n in (1, 8, 16):
            assert sess.run({"image": exported["eval"][:n]})["face_params"].shape == (n, FACE)
        with pytest.raises(ValueError, match="optimization profile"):
            sess.run({"image": standin_crops(17, 1)})


def test_a_refused_export_drops_the_previous_file_of_that_format(exported, tmp_path):
    """A model left from an earlier export (another network) must not ship
    beside the new one when the new candidate of its format is refused."""
    folder = _copy(exported["folder"], tmp_path)
    names = set(json.loads((folder / "manifest.json").read_text())["models"])
    victim = sorted(n for n in names if n.endswith("-fp32"))[0]
    entry = json.loads((folder / "manifest.json").read_text())["models"][victim]
    assert (folder / entry["file"]).is_file()
    (tmp_path / "outside.onnx").write_bytes(b"keep me")
    assert formats.remove_from_manifest(victim, folder) is True
    doc = json.loads((folder / "manifest.json").read_text())["models"]
    assert victim not in doc and set(doc) == names - {victim}
    assert not (folder / entry["file"]).exists()
    assert formats.remove_from_manifest(victim, folder) is False  # nothing left to drop
    Manifest.load(folder)  # what remains still verifies
    # an entry naming a file outside the folder is dropped without touching that file
    _edit_manifest(folder, lambda m: m.update(escape={"file": "../outside.onnx", "size": 7, "precision": "fp32",
                                                      "sha256": "0"}))
    assert formats.remove_from_manifest("escape", folder) is True
    assert (tmp_path / "outside.onnx").read_bytes() == b"keep me"


def _shipped_without_fp32(exported, tmp_path, monkeypatch) -> Path:
    """A copy of the exported models folder as shipped (fp32 a build
    artefact, not listed), made ship's target, with the fp32 and fp16
    exports faked as passing; returns the folder."""
    from avatarizer_export import ship

    models = _copy(exported["folder"], tmp_path)
    formats.remove_from_manifest(formats.model_name("image_to_face", "onnx-fp32"), models)
    monkeypatch.setattr(ship, "MODELS", models)
    monkeypatch.setattr(ship, "BUILD", tmp_path / "build")
    monkeypatch.setattr(ship, "_Ctx", lambda cache, mapper, allow_short=False: None)
    monkeypatch.setattr(ship, "export_fp32", lambda ctx: {"passed": True})
    monkeypatch.setattr(ship, "export_fp16", lambda ctx, folder: {"passed": True})
    return models


@pytest.mark.parametrize("int8_passes", [True, False])
def test_ship_fails_when_the_gate_leaves_nothing_for_the_cpu_default(exported, tmp_path, monkeypatch, capsys,
                                                                     int8_passes):
    """fp32 stays a build artefact and the SDK on the CPU (precision auto)
    loads fp32 or int8: with int8 refused, shipping fp16 alone fails the ship
    (it printed REFUSED and exited 0)."""
    from avatarizer_export import cli, ship

    models = _shipped_without_fp32(exported, tmp_path, monkeypatch)
    monkeypatch.setattr(ship, "export_int8", lambda ctx, folder: {"passed": True} if int8_passes else
                        {"passed": False, "error": "render_lpips drift 0.03 over 0.005"})
    before = _folder_bytes(models)
    rc = cli.main(["ship", "--cache", str(tmp_path)])
    err = capsys.readouterr().err
    if int8_passes:
        assert rc == 0 and not err
    else:
        assert rc == 1 and "would run with the SDK's default on the CPU (precision fp32/int8)" in err
        # nothing shipped: the folder is as it was (its int8 was not dropped), the report is in the build folder
        assert _folder_bytes(models) == before
        assert json.loads((tmp_path / "build" / "gate_report.json").read_text())["onnx-int8"]["passed"] is False
    assert not list(tmp_path.glob(".*staging*"))


def test_onnx_whose_fp16_the_gate_refuses_ships_nothing(exported, tmp_path, monkeypatch, capsys):
    """``onnx`` builds one file to ship, the fp16: refused by the gate, the
    folder stays as it was (the previous network's fp16 and int8 were
    dropped and no face network shipped, exit 0), exit 1 with one line, the
    gate's report in the build folder."""
    from avatarizer_export import cli, ship

    models = _shipped_without_fp32(exported, tmp_path, monkeypatch)
    monkeypatch.setattr(ship, "export_fp16", lambda ctx, folder: {"passed": False,
                                                                  "error": "render_lpips drift 0.03 over 0.005"})
    before = _folder_bytes(models)
    rc = cli.main(["onnx", "--cache", str(tmp_path)])
    err = capsys.readouterr().err
    assert rc == 1 and "refused the fp16 network" in err and "unchanged" in err and err.count("\n") == 1, err
    assert _folder_bytes(models) == before
    assert json.loads((tmp_path / "build" / "gate_report.json").read_text())["onnx-fp16"]["passed"] is False
    assert not list(tmp_path.glob(".*staging*"))


def test_onnx_alone_says_the_cpu_default_needs_quantize(exported, tmp_path, monkeypatch, capsys):
    """`avatarizer-export onnx` drops the previous network's int8 (it belongs
    to the old network) and fp32 stays a build artefact: it says that the
    SDK's CPU default loads nothing until `quantize` (it exited silently)."""
    from avatarizer_export import cli

    models = _shipped_without_fp32(exported, tmp_path, monkeypatch)
    rc = cli.main(["onnx", "--cache", str(tmp_path)])
    err = capsys.readouterr().err
    assert rc == 0 and "until `avatarizer-export quantize` runs" in err
    assert "image_to_face-onnx-int8" not in json.loads((models / MANIFEST_NAME).read_text())["models"]


def _folder_bytes(folder: Path) -> dict:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _fake_engine(folder: Path, name: str = "image_to_face-engine-fp16", file: str = "image_to_face-fp16.engine"):
    """A manifest entry of an earlier `avatarizer-export tensorrt` (its file listed, its bytes a stand-in)."""
    (folder / file).write_bytes(b"an engine of the previous network")
    fp16 = json.loads((folder / MANIFEST_NAME).read_text())["models"]["image_to_face-onnx-fp16"]
    _edit_manifest(folder, lambda m: m.update({name: {**fp16, "file": file, "format": "engine-fp16",
                                                      "size": 33, "sha256": "0" * 64}}))


def test_ship_interrupted_partway_leaves_the_models_folder_as_it_was(exported, tmp_path, monkeypatch):
    """The new fp16 written, then int8 cut short: the old fp16, int8, manifest
    and gate report stay (the CPU SDK must not run the old int8 beside a new fp16)."""
    from avatarizer_export import ship

    models = _copy(exported["folder"], tmp_path)
    (models / "gate_report.json").write_text("{}\n")
    monkeypatch.setattr(ship, "MODELS", models)
    monkeypatch.setattr(ship, "_Ctx", lambda cache, mapper, allow_short=False: None)
    monkeypatch.setattr(ship, "export_fp32", lambda ctx: {"passed": True})

    def new_fp16(ctx, folder):
        (folder / "image_to_face-fp16.onnx").write_bytes(b"the new network")
        return {"passed": True}

    def cut_short(ctx, folder):
        raise KeyboardInterrupt

    monkeypatch.setattr(ship, "export_fp16", new_fp16)
    monkeypatch.setattr(ship, "export_int8", cut_short)
    before = _folder_bytes(models)
    with pytest.raises(KeyboardInterrupt):
        ship.export("ship", tmp_path)
    assert _folder_bytes(models) == before
    assert not list(tmp_path.glob(".*staging*"))
    Manifest.load(models)


def test_ship_drops_the_previous_networks_engines_and_keeps_a_users_files(exported, tmp_path, monkeypatch):
    """Re-shipping the role's network drops its entries that were not rebuilt
    (TensorRT engines of the previous network) and the files they list;
    files the manifest does not list stay, byte for byte."""
    from avatarizer_export import ship

    models = _copy(exported["folder"], tmp_path)
    _fake_engine(models)
    (models / "gate_report.json").write_text(json.dumps({"engine-fp16": {"passed": True}, "onnx-int8": {"passed": True}}))
    (models / "notes.txt").write_bytes(b"a user's file")
    (models / "image_to_face-int8.engine").write_bytes(b"a user's engine, not listed")
    monkeypatch.setattr(ship, "MODELS", models)
    monkeypatch.setattr(ship, "BUILD", tmp_path / "build")
    monkeypatch.setattr(ship, "_Ctx", lambda cache, mapper, allow_short=False: None)
    monkeypatch.setattr(ship, "export_fp32", lambda ctx: {"passed": True})
    monkeypatch.setattr(ship, "export_fp16", lambda ctx, folder: {"passed": True})
    monkeypatch.setattr(ship, "export_int8", lambda ctx, folder: {"passed": True})
    ship.export("ship", tmp_path)
    names = set(json.loads((models / MANIFEST_NAME).read_text())["models"])
    assert "image_to_face-engine-fp16" not in names and not (models / "image_to_face-fp16.engine").exists()
    assert {"image_to_face-onnx-fp16", "image_to_face-onnx-int8"} <= names
    assert (models / "notes.txt").read_bytes() == b"a user's file"
    assert (models / "image_to_face-int8.engine").read_bytes() == b"a user's engine, not listed"
    # the gate report holds the new network's files alone (it kept the dropped engine's entry, "passed")
    assert set(json.loads((models / "gate_report.json").read_text())) == {"onnx-fp32", "onnx-fp16", "onnx-int8"}
    Manifest.load(models)
    assert not list(tmp_path.glob(".*staging*"))


def test_an_engine_the_gate_refuses_is_reported_and_the_other_built(tmp_path, monkeypatch):
    """build_engines: an engine over the quality gate is reported refused, as
    fp16 and int8 ONNX files are (QualityGateError ended the export)."""
    from types import SimpleNamespace

    from avatarizer_export import formats, ship, tensorrt_build
    from avatarizer_export.quantize import QualityGateError

    built, refs = [], {}

    def build_engine(src, dst, fmt, **kw):
        refs[fmt] = (src.name, kw["reference"])
        if fmt == "engine-fp16":
            raise QualityGateError({"failed": ["render_lpips"], "metrics": {"render_lpips": 0.02},
                                    "thresholds": {"render_lpips": 0.005}}, what=f"{fmt} engine {dst.name}")
        built.append(fmt)
        return {"passed": True}

    monkeypatch.setattr(formats, "check_format", lambda fmt, calibration=None: None)
    monkeypatch.setattr(tensorrt_build, "build_engine", build_engine)
    monkeypatch.setattr(ship, "BUILD", tmp_path / "build")
    (tmp_path / "build").mkdir()
    for folder, src in ((tmp_path / "build", "onnx-fp32"), (tmp_path, "onnx-fp16")):
        (folder / formats.file_name(ship.ROLE, src)).write_bytes(b"onnx")
    ctx = SimpleNamespace(calib=np.zeros((1, 3, 8, 8), np.float32), evals=[], gate=lambda: ({}, {}))
    out = ship.build_engines(ctx, tmp_path)
    assert out["engine-fp16"]["passed"] is False and "render_lpips" in out["engine-fp16"]["error"]
    assert out["engine-int8"] == {"passed": True} and built == ["engine-int8"]
    # both gated against fp32 (the fp16 engine, built from the fp16 file, was gated against that file: it
    # could drift from fp32 up to twice the limit and pass)
    fp32 = ship.BUILD / formats.file_name(ship.ROLE, "onnx-fp32")
    assert refs == {"engine-fp16": (formats.file_name(ship.ROLE, "onnx-fp16"), fp32),
                    "engine-int8": (formats.file_name(ship.ROLE, "onnx-fp32"), fp32)}
    # no fp16 file (the gate refused it): that engine is reported, the int8 one still built (the missing file
    # stopped the whole build)
    (tmp_path / formats.file_name(ship.ROLE, "onnx-fp16")).unlink()
    built.clear()
    out = ship.build_engines(ctx, tmp_path)
    assert out["engine-fp16"]["passed"] is False and "no onnx-fp16 file" in out["engine-fp16"]["error"]
    assert out["engine-int8"] == {"passed": True} and built == ["engine-int8"]


def test_staging_commit_refuses_to_overwrite_a_users_file_and_finishes_a_cut_short_commit(exported, tmp_path):
    from avatarizer_export import staging

    models = _copy(exported["folder"], tmp_path)
    (models / "mine.onnx").write_bytes(b"a user's file")
    before = _folder_bytes(models)
    stage = staging.begin(models)
    assert "mine.onnx" not in {p.name for p in stage.iterdir()}  # only what the manifest lists is copied
    (stage / "mine.onnx").write_bytes(b"ours")
    with pytest.raises(RuntimeError, match="mine.onnx there is not listed"):
        staging.commit(models)
    assert _folder_bytes(models) == before
    # a commit cut short after the marker (a file moved, the manifest not yet): the next begin finishes it
    (stage / "mine.onnx").unlink()
    (stage / "image_to_face-fp16.onnx").write_bytes(b"new")
    _edit_manifest(stage, lambda m: m.pop("image_to_face-onnx-int8"))
    (stage / staging.MARKER).write_text(json.dumps({"delete": ["image_to_face-int8.onnx"]}))
    os_replace = __import__("os").replace
    os_replace(stage / "image_to_face-fp16.onnx", models / "image_to_face-fp16.onnx")
    staging.begin(models)
    staging.discard(models)
    assert (models / "image_to_face-fp16.onnx").read_bytes() == b"new"
    assert "image_to_face-onnx-int8" not in json.loads((models / MANIFEST_NAME).read_text())["models"]
    assert not (models / "image_to_face-int8.onnx").exists() and (models / "mine.onnx").read_bytes() == b"a user's file"
    assert not staging.staging_path(models).exists()


@pytest.fixture
def fresh_caches():
    """The once-per-process answers asked afresh, and forgotten after the test
    (it fakes what they find)."""
    from avatarizer.runtime import onnx as O
    from avatarizer.runtime import tensorrt as RT

    caches = (RT.tensorrt_ep_status, O.preload_gpu_libraries)
    for c in caches:
        c.cache_clear()
    yield
    for c in caches:
        c.cache_clear()


def test_tensorrt_ep_status_is_asked_once_and_says_why(monkeypatch, fresh_caches):
    from avatarizer.runtime import tensorrt as RT

    loaded = []

    def fake_cdll(name):
        loaded.append(name)
        raise OSError(f"{name}: cannot open shared object file: No such file or directory")

    monkeypatch.setattr(RT.ctypes, "CDLL", fake_cdll)
    monkeypatch.setattr(RT, "tensorrt_status", lambda: (False, "not installed"))
    ok, why = RT.tensorrt_ep_status()
    assert not ok and "libnvinfer.so.10: cannot open" in why and "libnvonnxparser.so.10" in why
    assert RT.tensorrt_ep_status() == (ok, why) and len(loaded) == 2  # once per process
    # the tensorrt wheel loads its own copies: looked for again after importing it
    RT.tensorrt_ep_status.cache_clear()
    state = {"imported": False}
    monkeypatch.setattr(RT.ctypes, "CDLL", lambda name: None if state["imported"] else fake_cdll(name))

    def fake_status():
        state["imported"] = True
        return True, "10.13"

    monkeypatch.setattr(RT, "tensorrt_status", fake_status)
    assert RT.tensorrt_ep_status()[0]


def test_compare_outputs_gates_by_what_the_outputs_are():
    from types import SimpleNamespace

    from avatarizer.runtime import compare_outputs

    rng = np.random.default_rng(0)
    face = rng.uniform(-1, 1, (4, 483)).astype(np.float32)
    same = compare_outputs({"face": face}, {"face": face + 0.005})
    assert same["passed"] and same["metrics"] == {"param_l1": pytest.approx(0.005, rel=1e-3)}
    assert same["thresholds"] == {"param_l1": 0.01}
    moved = compare_outputs({"face": face}, {"face": face + 0.02})
    assert not moved["passed"] and moved["failed"] == ["param_l1"] and moved["max_abs"] == pytest.approx(0.02, rel=1e-3)
    # the manifest entry's own gate sets the threshold
    strict = SimpleNamespace(raw={"quality_gate": {"thresholds": {"param_l1": 0.001}}})
    assert compare_outputs({"face": face}, {"face": face + 0.005}, strict)["failed"] == ["param_l1"]
    # attributes: probabilities and age in years, one value far off is reported but not gated
    probs = {"hair_colour": np.full((4, 5), 0.2), "glasses": np.full((4, 3), 1 / 3), "binary": np.full((4, 5), 0.5),
             "regress": np.array([[30.0, .5, .5, .5, .5]] * 4)}
    cand = {k: v.copy() for k, v in probs.items()}
    cand["regress"][:, 0] += 0.9
    cand["binary"][0, 0] += 0.3
    got = compare_outputs(probs, cand)
    assert set(got["metrics"]) == {"prob_drift", "age_drift_years", "other_drift"} and got["passed"]
    assert got["max_abs"] == pytest.approx(0.9)
    cand["regress"][:, 0] += 0.2
    assert compare_outputs(probs, cand)["failed"] == ["age_drift_years"]
    # every output counts (review): skin tone (Monk 1..10), hair_long, the hair-shape columns
    entry = SimpleNamespace(raw={}, outputs=({"name": "skin_tone", "units": ["Monk 1..10"]},
                                             {"name": "regress", "units": ["years", "0..1", "0..1", "0..1", "0..1"]}))
    full = {**probs, "skin_tone": np.full((4, 1), 3.0), "hair_long": np.full((4, 1), 0.1)}
    for key, moved in (("skin_tone", np.full((4, 1), 8.0)), ("hair_long", np.full((4, 1), 0.9)),
                       ("regress", probs["regress"] + np.array([0, .5, .5, .5, .5]))):
        res = compare_outputs(full, {**full, key: moved}, entry)
        assert not res["passed"], (key, res)
    small = {**full, "skin_tone": np.full((4, 1), 3.1)}  # 0.1 of a Monk step: 0.011 of its span
    assert compare_outputs(full, small, entry)["metrics"]["other_drift"] == pytest.approx(0.1 / 9)
    assert compare_outputs({"regress": np.array([30.0, .5, .5, .5, .5]), "binary": np.full(5, .5)},
                           {"regress": np.array([30.5, .5, .5, .5, .5]), "binary": np.full(5, .5)})["passed"]
    with pytest.raises(ValueError, match="no outputs"):
        compare_outputs({}, {})
    with pytest.raises(ValueError, match="empty"):
        compare_outputs({"face": np.zeros((0, 483))}, {"face": np.zeros((0, 483))})
    # NaN fails; different outputs are refused
    nan = {"face": face.copy()}
    nan["face"][0, 0] = np.nan
    assert "finite" in compare_outputs({"face": face}, nan)["failed"]
    with pytest.raises(ValueError, match="different outputs"):
        compare_outputs({"face": face}, {"z": face})
    with pytest.raises(ValueError, match="shapes"):
        compare_outputs({"face": face}, {"face": face[:2]})


def test_gpu_libraries_are_preloaded_once_and_only_from_nvidia_packages(monkeypatch, fresh_caches):
    import importlib.util
    import sys
    import threading
    from types import SimpleNamespace

    from avatarizer.runtime import onnx as O

    calls, printed = [], []

    def preload_dlls(**kw):
        calls.append(kw)
        t = threading.Thread(target=lambda: printed.append(sys.stdout))  # another thread's stdout
        t.start()
        t.join()

    real_find = importlib.util.find_spec
    monkeypatch.setitem(sys.modules, "onnxruntime", SimpleNamespace(preload_dlls=preload_dlls, __version__="1.31"))
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: object() if name == "nvidia"
                        else real_find(name, *a))
    assert O.preload_gpu_libraries() == "" and O.preload_gpu_libraries() == ""
    assert calls == [{"cuda": True, "cudnn": True, "msvc": False}]  # once per process
    assert printed == [sys.stdout]  # nobody's stdout was swapped meanwhile
    # no NVIDIA pip packages: nothing to preload (the loader finds system libraries)
    O.preload_gpu_libraries.cache_clear()
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "nvidia"
                        else real_find(name, *a))
    assert "no NVIDIA pip packages" in O.preload_gpu_libraries() and len(calls) == 1
    O.preload_gpu_libraries.cache_clear()
    monkeypatch.setitem(sys.modules, "onnxruntime", SimpleNamespace(__version__="1.17.0"))
    assert "has no preload_dlls" in O.preload_gpu_libraries()


def test_sessions_keep_onnxruntime_warnings_to_themselves(exported):
    sess = Session(exported["folder"] / "image_to_face-fp32.onnx", device="cpu")
    assert sess._sess.get_session_options().log_severity_level == 3


def _fake_fp32_build(folder: Path) -> Path:
    """An Identity model as ``onnx`` would leave it in ``runs/export`` (its
    description naming runs/mapper_a), saved in ``folder``; its path."""
    from onnx import TensorProto, helper

    graph = helper.make_graph([helper.make_node("Identity", ["crop"], ["face"])], "g",
                              [helper.make_tensor_value_info("crop", TensorProto.FLOAT, [1])],
                              [helper.make_tensor_value_info("face", TensorProto.FLOAT, [1])])
    model = helper.make_model(graph)
    model.metadata_props.add(key=formats.METADATA_KEY, value=json.dumps(
        {"method": "E_s -> F -> D_t (cross-modal latent alignment; runs/mapper_a)"}))
    fp32 = folder / formats.file_name("image_to_face", "onnx-fp32")
    onnx.save(model, str(fp32))
    return fp32


def test_quantize_and_tensorrt_take_the_mapper_onnx_built(tmp_path, monkeypatch, capsys):
    """quantize / tensorrt build from the fp32 file `onnx` left in runs/export:
    they take its mapper, and refuse another --mapper (they quantized the old
    file whatever --mapper said); with no fp32 file they say to run onnx first."""
    from avatarizer_export import cli, formats, ship

    monkeypatch.setattr(ship, "BUILD", tmp_path / "build")
    monkeypatch.setattr(ship, "_Ctx", lambda cache, mapper, allow_short=False: pytest.fail("loaded a network"))
    with pytest.raises(RuntimeError, match="is missing: `avatarizer-export onnx --mapper m2` builds it first"):
        ship._mapper_for("quantize", "m2")
    assert cli.main(["quantize", "--cache", str(tmp_path)]) == 1
    assert "is missing" in capsys.readouterr().err
    (tmp_path / "build").mkdir()
    fp32 = _fake_fp32_build(tmp_path / "build")
    assert ship.built_mapper(fp32) == "mapper_a"
    # the file onnx wrote, as its manifest names it: without that entry, or with a changed byte, quantize and
    # tensorrt refuse it (the gates compare with the same file: a changed weight passed them and shipped)
    with pytest.raises(RuntimeError, match="does not name its checksum"):
        ship._mapper_for("quantize", None)
    name = formats.model_name("image_to_face", "onnx-fp32")
    (tmp_path / "build" / "manifest.json").write_text(json.dumps(
        {"models": {name: {"sha256": hashlib.sha256(fp32.read_bytes()).hexdigest()}}}))
    good = fp32.read_bytes()
    fp32.write_bytes(good[:-1] + bytes([good[-1] ^ 1]))
    with pytest.raises(RuntimeError, match="changed since `avatarizer-export onnx` wrote it"):
        ship._mapper_for("tensorrt", None)
    assert cli.main(["quantize", "--cache", str(tmp_path)]) == 1
    assert "changed since" in capsys.readouterr().err
    fp32.write_bytes(good)
    for what in ("quantize", "tensorrt"):
        assert ship._mapper_for(what, None) == "mapper_a"
        assert ship._mapper_for(what, "mapper_a") == "mapper_a"
        with pytest.raises(RuntimeError, match="exported from runs/mapper_a, not runs/mapper_b"):
            ship._mapper_for(what, "mapper_b")
    assert ship._mapper_for("onnx", None) == ship.SHIPPED_MAPPER and ship._mapper_for("ship", "m") == "m"
    assert cli.main(["quantize", "--mapper", "mapper_b", "--cache", str(tmp_path)]) == 1
    assert "not runs/mapper_b" in capsys.readouterr().err


def test_a_gated_fp16_without_fp32_io_is_fed_half_inputs(exported, tmp_path):
    """``convert_fp16(keep_io_types=False, metric_fns=..., thresholds=...)``:
    the gate fed the candidate float32 inputs, which it refuses (ONNX
    Runtime's InvalidArgument, every time; a review, session 66). The gate
    reports its samples (crops) beside its inputs (batches): 4 inputs were
    read as 4 crops where 64 were gated."""
    src = exported["folder"] / "image_to_face-fp32.onnx"
    out = tmp_path / "m" / "image_to_face-fp16.onnx"
    batches = [exported["eval"][:4], exported["eval"][4:8]]
    rep = onnx_export.convert_fp16(src, out, keep_io_types=False, check_inputs=batches,
                                   metric_fns={"param_l1": quantize.param_l1}, thresholds={"param_l1": 0.05},
                                   manifest_folder=tmp_path / "m")
    assert rep["gate"]["passed"] and rep["gate"]["inputs"] == 2 and rep["gate"]["samples"] == 8
    assert out.is_file()


def test_an_export_outside_its_manifest_folder_writes_nothing(exported, tmp_path):
    """``manifest_folder`` not holding the output: the file was moved into
    place, then the manifest refused it, and it stayed there unlisted."""
    src = exported["folder"] / "image_to_face-fp32.onnx"
    out = tmp_path / "a" / "m.onnx"
    with pytest.raises(ValueError, match="is not inside the models folder"):
        onnx_export.convert_fp16(src, out, manifest_folder=tmp_path / "b")
    with pytest.raises(ValueError, match="is not inside the models folder"):
        quantize.quantize_gated(src, out, exported["calibration"], [exported["eval"]],
                                {"param_l1": quantize.param_l1}, {"param_l1": 0.05}, manifest_folder=tmp_path / "b")
    with pytest.raises(ValueError, match="is not inside the models folder"):
        onnx_export.export_onnx(exported["module"], torch.from_numpy(exported["eval"][:1]), out, "m", ["image"],
                                ["face_params"], standin_metadata("image_to_face", [formats.image_input("image", CROP)],
                                                                  [formats.face_params_output()]) | {"name": "m"},
                                manifest_folder=tmp_path / "b")
    assert not out.exists() and (not (tmp_path / "a").exists() or not any((tmp_path / "a").iterdir()))


def test_quantize_refuses_to_ship_beside_another_networks_files(tmp_path, monkeypatch, capsys):
    """``onnx`` writes the fp32 build, then its fp16 gate (or Ctrl-C) failed:
    the models folder stayed as it was, the build held the new network, and
    ``quantize`` shipped the new network's int8 beside the old one's fp16 (a
    review, session 66). Each shipped file records the build it was made
    from (``built_from``); ``quantize`` and ``tensorrt`` refuse a folder
    whose other files were made from another build."""
    from avatarizer_export import ship

    build = tmp_path / "build"
    build.mkdir()
    monkeypatch.setattr(ship, "BUILD", build)
    fp32 = _fake_fp32_build(build)
    sha = hashlib.sha256(fp32.read_bytes()).hexdigest()
    (build / "manifest.json").write_text(json.dumps(
        {"models": {formats.model_name("image_to_face", "onnx-fp32"): {"sha256": sha}}}))
    models = tmp_path / "models"
    models.mkdir()
    fp16 = formats.model_name("image_to_face", "onnx-fp16")

    def ship_fp16(**extra):
        (models / "manifest.json").write_text(json.dumps({"models": {fp16: {
            "role": "image_to_face", "file": "image_to_face-fp16.onnx", "precision": "fp16", **extra}}}))

    class Stop(Exception):
        pass

    monkeypatch.setattr(ship, "_Ctx", lambda cache, mapper, allow_short=False: (_ for _ in ()).throw(Stop()))
    for extra in ({}, {"built_from": "0" * 64}):  # (an export before the field; another build)
        ship_fp16(**extra)
        for what in ("quantize", "tensorrt"):
            if what == "tensorrt":
                monkeypatch.setattr(formats, "check_format", lambda *a, **k: None)
            with pytest.raises(RuntimeError, match="not recorded as made from" if not extra else
                               "made from another build of the network"):
                ship.export(what, tmp_path, folder=models)
    ship_fp16(built_from=sha)
    with pytest.raises(Stop):  # (the check passed: the network is loaded next)
        ship.export("quantize", tmp_path, folder=models)
    # an export stamps what it wrote with the build it was made from
    results = {"onnx-fp32": {"passed": True}, "onnx-fp16": {"passed": True}, "onnx-int8": {"passed": False}}
    ship_fp16()
    ship._stamp_built_from(models, results)
    assert json.loads((models / "manifest.json").read_text())["models"][fp16]["built_from"] == sha


# --------------------------------------------------------------------------------------
# avatarizer-export's command line: one-line errors, Ctrl-C, what a smoke run may write


def _fake_shared(root: Path) -> Path:
    (root / "data").mkdir(parents=True)
    return root


def test_cli_a_models_folder_without_manifest_and_a_cut_npz_are_one_line_errors(tmp_path, monkeypatch, capsys):
    """``gender --models DIR`` with no manifest in DIR ended in an
    ``avatarizer.errors.ModelError`` traceback, and ``hairbank sheet`` with a
    cut ``runs/attributes/predictions.npz`` in a ``zipfile.BadZipFile`` one
    (review rv693): one line and exit status 1, like the other errors."""
    from avatarizer_export import attributes, cli, gender, hairbank

    shared = _fake_shared(tmp_path / "shared")
    # the real reader of the models folder, on one without a manifest
    monkeypatch.setattr(gender, "fit", lambda shared, cache, models=None, **kw:
                        gender.model_probabilities(models, None, np.arange(0)))
    try:
        rc = cli.main(["gender", "--models", str(tmp_path / "nomodels"), "--cache", str(tmp_path),
                       "--shared", str(shared)])
    except ModelError as exc:
        pytest.fail(f"a traceback: {exc!r}")
    err = capsys.readouterr().err
    assert rc == 1 and err.startswith("avatarizer-export gender: ") and err.count("\n") == 1, err
    # H's predictions cut short (or empty): the real reader, as `hairbank sheet` calls it
    run = tmp_path / "runs" / "attributes"
    run.mkdir(parents=True)
    monkeypatch.setattr(attributes, "RUN", run)
    monkeypatch.setattr(hairbank, "make_sheet", lambda cache, shared, data=None, models=None, **kw:
                        attributes.load_predictions(models))
    np.savez(tmp_path / "whole.npz", x=np.arange(1000))
    for cut in ((tmp_path / "whole.npz").read_bytes()[:100], b""):
        (run / "predictions.npz").write_bytes(cut)
        try:
            rc = cli.main(["hairbank", "sheet", "--cache", str(tmp_path), "--shared", str(shared)])
        except Exception as exc:  # noqa: BLE001 - what escaped is the failure
            pytest.fail(f"a traceback: {exc!r}")
        err = capsys.readouterr().err
        assert rc == 1 and err.startswith("avatarizer-export hairbank: ") and err.count("\n") == 1, err
        assert ".npz" in err


def test_cli_ctrl_c_while_the_stderr_filter_stops_is_one_line_and_130(tmp_path, monkeypatch, capsys):
    """Ctrl-C just after a command's work ended reached ``FILTER.stop()`` in
    ``main``'s ``finally``, outside its ``except KeyboardInterrupt``: a
    traceback (review rv693). It is the same one line and exit status 130,
    said once also when the command itself was interrupted too."""
    from avatarizer.logfilter import FILTER

    from avatarizer_export import cli, hairbank

    shared = _fake_shared(tmp_path / "shared")
    real_stop = FILTER.stop

    def stop(*a, **kw):
        real_stop(*a, **kw)
        raise KeyboardInterrupt

    monkeypatch.setattr(FILTER, "stop", stop)
    for work in (lambda *a, **kw: None, lambda *a, **kw: (_ for _ in ()).throw(KeyboardInterrupt())):
        monkeypatch.setattr(hairbank, "build_bank", work)
        try:
            rc = cli.main(["hairbank", "sheet", "--cache", str(tmp_path), "--shared", str(shared)])
        except KeyboardInterrupt:
            pytest.fail("Ctrl-C during FILTER.stop() escaped avatarizer-export's main: a traceback")
        err = capsys.readouterr().err
        assert rc == 130 and err == "avatarizer-export hairbank: interrupted\n", err
    assert not FILTER.active


def test_data_meanface_of_a_smoke_run_or_a_foreign_shared_folder_goes_to_the_cache(tmp_path, monkeypatch, capsys):
    """``data all --limit N``, ``data meanface`` on a cache aligned from part
    of the photos, or another ``--shared`` folder rewrote the SDK's committed
    ``sdk/avatarizer/data/mean_face.npz`` (review rv693). Like ``align``'s
    docs/split.md, the committed file is written only from all of the
    project's photos; otherwise the mean face goes to the cache, said in one line."""
    from avatarizer_export import data as D

    root = tmp_path / "checkout"
    project = tmp_path / "shared"  # the project's: ROOT.parent / "shared"
    faces = project / "data" / "faces" / D.SOURCES[0]
    faces.mkdir(parents=True)
    for i in range(3):
        (faces / f"{i}.jpg").write_bytes(b"x")
    foreign = tmp_path / "mine"
    (foreign / "data").mkdir(parents=True)
    monkeypatch.setattr(D, "ROOT", root)
    written = []
    monkeypatch.setattr(D, "build_mean_face", lambda cache, out=None: written.append(out))

    def aligned(cache: Path, keys: list[str]) -> Path:
        (cache / "aligned").mkdir(parents=True, exist_ok=True)
        names = hashlib.sha256("\n".join(keys).encode()).hexdigest()[:16]
        (cache / "aligned" / "meta.json").write_text(json.dumps({"inputs": len(keys), "names": names}))
        return cache

    every = D.list_faces(project)
    cases = [(project, aligned(tmp_path / "c1", every), None, False),  # the project's photos, all of them
             (project, aligned(tmp_path / "c2", every[:2]), 2, True),  # --limit 2
             (project, tmp_path / "c2", None, True),  # `data meanface` alone on that cache
             (foreign, aligned(tmp_path / "c3", []), None, True)]  # another --shared
    for shared, cache, limit, to_cache in cases:
        written.clear()
        D.build("meanface", shared, cache, limit=limit)
        out = capsys.readouterr().out
        if to_cache:
            assert written == [cache / "meanface" / "mean_face.npz"], (shared, cache, limit, written)
            assert out.count("\n") == 1 and "not written" in out and str(written[0]) in out, out
        else:
            assert written == [None] and not out  # (build_mean_face: the SDK's file)
    # docs/data.md says that `data all` runs it
    doc = (Path(__file__).resolve().parents[1] / "docs" / "data.md").read_text(encoding="utf-8")
    line = next(t for t in doc.splitlines() if t.startswith("avatarizer-export data all"))
    assert "meanface" in line, line


def test_hat_net_runs_without_the_shared_folder_its_help_calls_unused(tmp_path, monkeypatch, capsys):
    """``hat-net --help`` said ``--shared`` is unused, yet the command stopped
    without the shared folder (review rv693): it reads only the labels by eye
    and the cache, so it runs without one."""
    from avatarizer_export import cli, hatnet, paths

    monkeypatch.setenv("AVATARIZER_SHARED", str(tmp_path / "noshared"))
    monkeypatch.setattr(paths, "_SHARED", None)
    seen = []
    monkeypatch.setattr(hatnet, "fit_fusion", lambda shared, cache, quiet=False, **kw: seen.append(shared) or {})
    rc = cli.main(["hat-net", "--fusion", "--cache", str(tmp_path)])
    assert rc == 0 and seen == [None], capsys.readouterr().err
    help_text = " ".join(cli.build_parser()._subparsers._group_actions[0].choices["hat-net"].format_help().split())
    assert "unused" in help_text and "not needed" in help_text


def test_lpips_missing_weights_names_what_sets_the_shared_folder(tmp_path, monkeypatch):
    """``train`` has no ``--shared``, yet the LPIPS/VGG weights' error told the
    user to "pass the folder explicitly" (review rv693): it names
    ``$AVATARIZER_SHARED`` (and --shared where a command has it)."""
    from avatarizer_export import lpips, paths

    monkeypatch.setenv("AVATARIZER_SHARED", str(tmp_path / "noshared"))
    monkeypatch.setattr(paths, "_SHARED", None)
    with pytest.raises(FileNotFoundError) as info:
        lpips.weights_path(net="vgg")
    msg = str(info.value)
    assert "AVATARIZER_SHARED" in msg and "noshared" in msg and "explicitly" not in msg, msg


def test_model_card_lists_the_stages_make_models_runs_and_the_files_written_before_staging():
    """docs/MODEL_CARD.md's stage-by-stage list left out ``beard-grey-fusion``
    and named ``hairbank build`` for the bank's whole ``all`` (build, tune,
    evaluate, sheet), and said a failed run leaves every shipped folder as it
    was, though the steps before the staging write their files directly
    (review rv693)."""
    from avatarizer import facialhair, haircolour, skintone
    from avatarizer import landmarks as LM

    from avatarizer_export import detectors, hats

    root = Path(__file__).resolve().parents[1]
    card = " ".join((root / "docs" / "MODEL_CARD.md").read_text(encoding="utf-8").split())
    start = card.index("Commands: `make models`")
    text = card[start:card.index("H's predictions on every photo", start)]
    order = ["`data meanface`", "`skin-tone-net`", "`ship`", "`hat-net --fusion`", "`beard-grey-fusion`",
             "`report`"]
    assert [text.index(s) for s in order] == sorted(text.index(s) for s in order)
    assert "`hairbank build`" not in text and all(f"`{s}`" in text for s in ("build", "tune", "evaluate", "sheet"))
    assert "leaves the shipped folders as they were" not in text
    early = [LM._DATA.name, detectors.OUT.name, hats.OUT.name, "beard_grey_fusion.json", "hair_sheet.png"]
    for spec in (facialhair.SPEC, haircolour.SPEC, haircolour.SPEC_TIGHT, skintone.NETWORK):
        early.append(spec.onnx_name)
    missing = [name for name in early if name not in text]
    assert not missing, missing


def test_detectors_out_refuses_an_existing_file_without_overwrite(tmp_path, capsys, monkeypatch):
    """``detectors --out FILE`` replaced a file that was there without a word
    (eval and sheet refuse one without ``--overwrite``; helper-443, session
    69): one line, status 1, the file as it was; ``--only`` splices into the
    file it names, so it takes an existing one."""
    from avatarizer_export import cli
    from avatarizer_export import detectors as D

    mine = tmp_path / "mine.json"
    mine.write_text("my own notes")
    assert cli.main(["detectors", "--out", str(mine), "--shared", str(tmp_path / "nowhere")]) == 1
    assert capsys.readouterr().err.strip().endswith(f"{mine} exists: pass --overwrite to replace it")
    assert mine.read_text() == "my own notes"
    fitted = []
    monkeypatch.setattr(D, "fit", lambda shared, cache, **kw: fitted.append(kw))
    monkeypatch.setattr(D, "shared_dir", lambda s: tmp_path)
    labels = tmp_path / "data" / "faces" / "ffhq128-labelled" / "attributes.jsonl"
    labels.parent.mkdir(parents=True)
    labels.write_text("")
    assert cli.main(["detectors", "--out", str(mine), "--overwrite", "--cache", str(tmp_path / "c")]) == 0
    assert cli.main(["detectors", "--out", str(mine), "--only", "receding", "--cache", str(tmp_path / "c")]) == 0
    assert [kw["out"] for kw in fitted] == [mine, mine] and fitted[1]["only"] == ("receding",)


def test_the_worst_difference_keeps_a_nan_whatever_comes_before_or_after():
    """``max(diffs.get(k, 0.0), d)`` recorded a NaN output as no difference
    (0.0) in the manifest's verification field, or not, by order."""
    from avatarizer_export.onnx_util import worst_abs_diffs

    x = {"face": np.zeros(3)}
    nan, big = {"face": np.array([0.0, np.nan, 0.0])}, {"face": np.array([0.0, 0.5, 0.0])}
    for order in ([(x, nan), (x, big)], [(x, big), (x, nan)], [(x, nan)]):
        assert np.isnan(worst_abs_diffs(order)["face"])
    assert worst_abs_diffs([(x, big), (x, x)]) == {"face": 0.5} and worst_abs_diffs([]) == {}


def test_the_export_side_reads_h_as_the_hair_stage_does():
    """The fusions, the hats' threshold, the bank and the grey-hair prior
    are fitted on H's outputs: read once there, they were fitted on inputs
    the runtime no longer gives it (the crop and its mirror image,
    averaged; a review, session 73)."""
    from avatarizer import hair as HR
    from avatarizer import load_image
    from avatarizer.align import FaceAligner
    from avatarizer.imageio import SAMPLE_PHOTO
    from avatarizer.models import Manifest, Session
    from avatarizer.pipeline.hair import mirrored_mean

    from avatarizer_export.attributes import onnx_predictions
    from avatarizer_export.onnx_util import model_flag

    entry = Manifest.load().find("attributes", precision="int8")
    session = Session.from_entry(entry)
    with FaceAligner() as al:
        img = load_image(SAMPLE_PHOTO)
        crops = np.stack([al.align(img).crop(128), al.align(np.ascontiguousarray(img[:, ::-1])).crop(128)])
    for i in range(2):
        want = mirrored_mean(session, crops[i])
        got = onnx_predictions(entry.path, crops[i:i + 1])
        for k in want:
            np.testing.assert_allclose(got[k], want[k], atol=2e-4, err_msg=k)
        for flag in ("male", "headwear", "bald"):
            assert model_flag(session, crops, [i], flag)[0] == pytest.approx(
                HR.decode_attributes(want)[flag], abs=1e-5), flag


def test_a_stop_signal_ends_an_export_command_with_its_staged_files_removed(tmp_path, monkeypatch, capsys):
    """SIGTERM (or SIGHUP) ends ``avatarizer-export`` as Ctrl-C does: the
    staged files' clean-up runs, one line, 128 + the signal (SIGTERM ended
    the process at once and left a checkpoint's ``.part`` behind)."""
    import os
    import signal
    import time

    from avatarizer_export import cli, schemagen
    from avatarizer_export.onnx_util import staged

    out = tmp_path / "x.json"

    during = []

    def work(argv=None):
        try:
            with staged(out, "part") as tmp:
                tmp.write_text("half")
                os.kill(os.getpid(), signal.SIGTERM)
                time.sleep(5)  # (the handler raises here)
        finally:  # the clean-up: a second signal is ignored, not another exception cutting it short
            during.append(signal.getsignal(signal.SIGTERM))
        return 0

    monkeypatch.setattr(schemagen, "main", work)
    before = signal.getsignal(signal.SIGTERM)
    assert cli.main(["schema"]) == 128 + signal.SIGTERM
    assert "stopped by signal 15" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == [] and signal.getsignal(signal.SIGTERM) is before
    assert during == [signal.SIG_IGN]


def test_schema_rewrites_only_what_changed(capsys):
    """``avatarizer-export schema`` with nothing stale leaves the three files
    as they are (it rewrote them all in place, a cut write truncating the
    shipped schema.json)."""
    from avatarizer_export import schemagen

    files = (schemagen.JSON_PATH, schemagen.HEADER_PATH, schemagen.DOC_PATH)
    if schemagen.main(["--check"]) != 0:
        pytest.skip("the schema files are stale here")
    stamps = [(p.stat().st_mtime_ns, p.stat().st_ino) for p in files]
    assert schemagen.main([]) == 0
    assert [(p.stat().st_mtime_ns, p.stat().st_ino) for p in files] == stamps
    assert capsys.readouterr().out.count("unchanged") == 3


def test_run_names_of_other_commands_folders_and_blank_ones_are_refused():
    """``--name export`` trained into the folder ``onnx`` builds in; a blank name made ``runs/ /``."""
    import argparse

    from avatarizer_export.argtypes import run_name

    for bad in ("export", "attributes", " ", " a", "a "):
        with pytest.raises(argparse.ArgumentTypeError):
            run_name(bad)
    assert run_name("image_ae_b") == "image_ae_b"


@pytest.mark.parametrize("text", ["[]", '{"models": []}', "not json"])
def test_a_models_manifest_of_the_wrong_shape_is_one_line_naming_it(exported, tmp_path, monkeypatch, capsys, text):
    """``quantize`` / ``ship`` on a folder whose manifest.json is valid JSON
    of another shape (an AttributeError traceback) or not JSON (numpy's words
    without the file): one line naming the file, the folder unchanged."""
    from avatarizer_export import cli

    models = _shipped_without_fp32(exported, tmp_path, monkeypatch)
    (models / MANIFEST_NAME).write_text(text)
    before = _folder_bytes(models)
    assert cli.main(["ship", "--cache", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert f"{models / MANIFEST_NAME}: not a" in err and "Traceback" not in err and err.count("\n") == 1, err
    assert _folder_bytes(models) == before


def test_schema_keeps_a_rewritten_files_permissions(tmp_path, monkeypatch, capsys):
    """A stale file rewritten through a staged copy keeps its own mode (a 664
    docs/schema.md came back 644)."""
    from avatarizer_export import schemagen

    for name in ("JSON_PATH", "HEADER_PATH", "DOC_PATH"):
        f = tmp_path / getattr(schemagen, name).name
        f.write_text("stale")
        f.chmod(0o664)
        monkeypatch.setattr(schemagen, name, f)
    assert schemagen.main([]) == 0
    assert all((tmp_path / getattr(schemagen, n).name).stat().st_mode & 0o777 == 0o664
               for n in ("JSON_PATH", "HEADER_PATH", "DOC_PATH"))
    assert (tmp_path / schemagen.JSON_PATH.name).read_text() != "stale"

