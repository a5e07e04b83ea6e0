"""Model-file handling found wanting by a review: what the runtime accepts
from a models folder (manifest entries, embedded descriptions, the ONNX
files themselves) and what it refuses with ModelError. Every test copies the
shipped models folder to tmp_path and swaps in tiny ONNX models built with
onnx.helper."""
from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
from onnx import TensorProto as TP  # noqa: E402
from onnx import helper as oh  # noqa: E402
from onnx import numpy_helper as nh  # noqa: E402

from avatarizer.errors import ModelError  # noqa: E402
from conftest import artist_detectors_at  # noqa: E402
from avatarizer.runtime import Manifest, Session  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
MODELS = ROOT / "sdk" / "avatarizer" / "models"
FACE = "image_to_face-onnx-int8"
ATTR = "attributes-onnx-int8"

pytestmark = pytest.mark.skipif(not (MODELS / "manifest.json").exists(), reason="shipped models not installed")


def _description(file: str) -> dict:
    from avatarizer.runtime import read_description

    return read_description(MODELS / file)


def _folder(tmp_path: Path, keep=(FACE, ATTR)) -> Path:
    """A copy of the shipped models folder listing only ``keep``."""
    folder = tmp_path / "models"
    shutil.copytree(MODELS, folder)
    man = json.loads((folder / "manifest.json").read_text())
    man["models"] = {k: v for k, v in man["models"].items() if k in keep}
    (folder / "manifest.json").write_text(json.dumps(man))
    return folder


def _edit(folder: Path, fn) -> None:
    path = folder / "manifest.json"
    man = json.loads(path.read_text())
    fn(man["models"])
    path.write_text(json.dumps(man))


def _face_model(W=None, *, desc=None, in_name="crop", out_name="face", size=96, initializers=None,
                nodes=None) -> onnx.ModelProto:
    """A tiny image_to_face stand-in: the crop's channel means times W (3×483)."""
    W = np.zeros((3, 483), np.float32) if W is None else np.asarray(W, np.float32)
    g = oh.make_graph(
        nodes or [oh.make_node("ReduceMean", [in_name], ["m"], axes=[2, 3], keepdims=0),
                  oh.make_node("MatMul", ["m", "W"], [out_name])],
        "g", [oh.make_tensor_value_info(in_name, TP.FLOAT, ["batch", 3, size, size])],
        [oh.make_tensor_value_info(out_name, TP.FLOAT, ["batch", 483])],
        initializers if initializers is not None else [nh.from_array(W, "W")])
    m = oh.make_model(g, opset_imports=[oh.make_opsetid("", 17)])
    m.ir_version = 8
    oh.set_model_props(m, {"avatarizer": json.dumps(desc or _description("image_to_face-int8.onnx"))})
    return m


def _install(folder: Path, model, name: str = FACE, **entry_changes) -> bytes:
    """Writes ``model`` (ModelProto or bytes) as the file of entry ``name`` and
    lists its size and sha256 in the manifest."""
    data = model if isinstance(model, bytes) else model.SerializeToString()
    man = json.loads((folder / "manifest.json").read_text())
    entry = man["models"][name]
    (folder / entry["file"]).write_bytes(data)
    entry.update(sha256=hashlib.sha256(data).hexdigest(), size=len(data))
    entry.update(entry_changes)
    (folder / "manifest.json").write_text(json.dumps(man))
    return data


def _load_error(folder: Path) -> str:
    with pytest.raises(ModelError) as info:
        Manifest.load(folder)
    return str(info.value)


# --------------------------------------------------------------------------------------
# 1. ONNX external data: weights in a side file are never hashed, so they are refused
# --------------------------------------------------------------------------------------

def _external(tensor, location: str, length: int):
    tensor.ClearField("raw_data")
    tensor.data_location = TP.EXTERNAL
    tensor.external_data.add(key="location", value=location)
    tensor.external_data.add(key="length", value=str(length))
    return tensor


def test_external_data_initializer_is_refused(tmp_path, monkeypatch):
    folder = _folder(tmp_path, keep=(FACE,))
    W = _external(nh.from_array(np.zeros((3, 483), np.float32), "W"), "w.bin", 3 * 483 * 4)
    data = _install(folder, _face_model(initializers=[W]))
    np.zeros((3, 483), np.float32).tofile(folder / "w.bin")
    msg = _load_error(folder)
    assert "image_to_face-int8.onnx" in msg and "external data" in msg and "'W' in 'w.bin'" in msg
    # a side file in the current directory is never used either: a session from these bytes is refused
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    np.full((3, 483), 7, np.float32).tofile(elsewhere / "w.bin")
    monkeypatch.chdir(elsewhere)
    with pytest.raises(ModelError, match="external data"):
        Session(folder / "image_to_face-int8.onnx", device="cpu", model_bytes=data)


def test_external_data_in_a_subgraph_or_constant_is_refused(tmp_path):
    """Tensors hide in node attributes (Constant) and in subgraphs (If branches)."""
    folder = _folder(tmp_path, keep=(FACE,))
    t = _external(nh.from_array(np.zeros((3, 483), np.float32), "Wc"), "sub/c.bin", 3 * 483 * 4)
    then_g = oh.make_graph([oh.make_node("Constant", [], ["Wt"], value=t)], "then", [],
                           [oh.make_tensor_value_info("Wt", TP.FLOAT, [3, 483])])
    else_g = oh.make_graph([oh.make_node("Constant", [], ["We"], value=nh.from_array(
        np.zeros((3, 483), np.float32), "We0"))], "else", [], [oh.make_tensor_value_info("We", TP.FLOAT, [3, 483])])
    nodes = [oh.make_node("ReduceMean", ["crop"], ["m"], axes=[2, 3], keepdims=0),
             oh.make_node("If", ["cond"], ["W"], then_branch=then_g, else_branch=else_g),
             oh.make_node("MatMul", ["m", "W"], ["face"])]
    cond = nh.from_array(np.array(True), "cond")
    _install(folder, _face_model(nodes=nodes, initializers=[cond]))
    msg = _load_error(folder)
    assert "external data" in msg and "'Wc' in 'sub/c.bin'" in msg


def test_a_file_of_countless_top_level_fields_is_refused_at_once(tmp_path):
    """A crafted "model" of millions of one-byte protobuf fields is refused
    after ``MAX_TOP_FIELDS`` of them (a review: 10 MB took 5.4 s to walk,
    field by field, a gigabyte would take minutes); the shipped models have
    at most a few dozen and read as before."""
    import time

    from avatarizer.runtime import files as F
    from avatarizer.runtime import read_description

    path = tmp_path / "crafted.onnx"
    path.write_bytes(bytes([0x08, 0x07]) + bytes([0x28, 0x01]) * 5_000_000)  # ir_version, then model_version x5M
    t0 = time.monotonic()
    with pytest.raises((ValueError, ModelError), match=f"more than {F.MAX_TOP_FIELDS} top-level fields"):
        read_description(path)
    assert time.monotonic() - t0 < 1.0
    for file in ("image_to_face-int8.onnx", "attributes-int8.onnx"):
        assert isinstance(_description(file), dict)


def test_the_external_data_walk_holds_one_message_per_level(tmp_path):
    """The walk of a model's messages held every message it had yet to read:
    a crafted graph of 4 million empty nodes (12 MB) took 1.1 GB and 7 s to
    load a manifest (a review, session 72). It holds one per level of nesting,
    at most ``MAX_NESTING`` (protobuf's own parsers' limit), and still finds a
    tensor's external data after 200,000 empty nodes and inside subgraphs."""
    import tracemalloc

    from avatarizer.runtime import files as F

    def varint(n: int) -> bytes:
        out = b""
        while True:
            out += bytes([(n & 0x7F) | (0x80 if n > 0x7F else 0)])
            n >>= 7
            if not n:
                return out

    def field(number: int, payload: bytes) -> bytes:  # a length-delimited protobuf field
        return varint(number << 3 | 2) + varint(len(payload)) + payload

    ext = field(8, b"W") + field(13, field(1, b"location") + field(2, b"w.bin"))  # a tensor's name, external data
    graph = field(1, b"") * 200_000 + field(5, ext)  # 200,000 empty nodes, then an initializer
    model = bytes([0x08, 0x07]) + field(7, graph)
    tracemalloc.start()
    try:
        assert F.onnx_external_data(model) == ["'W' in 'w.bin'"]
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 2_000_000, peak  # (the old walk: ~50 MB here)
    # a tensor in an If's subgraph, ten levels down, is found; nesting past MAX_NESTING is refused
    nested = field(5, ext)
    for _ in range(3):
        nested = field(1, field(5, field(6, nested)))  # graph > node > attribute > graph ...
    assert F.onnx_external_data(bytes([0x08, 0x07]) + field(7, nested)) == ["'W' in 'w.bin'"]
    # in training_info (which inference never reads) a tensor this reader cannot parse is skipped, not the rest
    # of its graph (the walk's first depth-first version dropped the external tensor after it; a review)
    training = field(20, field(1, field(5, b"\x08\xff") + field(5, ext)))
    assert F.onnx_external_data(bytes([0x08, 0x07]) + field(7, b"") + training) == ["'W' in 'w.bin'"]
    deep = field(5, ext)
    for _ in range(F.MAX_NESTING // 3 + 1):
        deep = field(1, field(5, field(6, deep)))
    with pytest.raises(ValueError, match="nested deeper"):
        F.onnx_external_data(bytes([0x08, 0x07]) + field(7, deep))


def test_self_contained_models_are_not_flagged():
    from avatarizer.runtime import onnx_external_data

    for file in ("image_to_face-int8.onnx", "image_to_face-fp16.onnx", "attributes-int8.onnx"):
        assert onnx_external_data((MODELS / file).read_bytes()) == []
    with pytest.raises(ValueError, match="not an ONNX model"):
        onnx_external_data(b"\x3a\xff\xff\xff\x0f")


# --------------------------------------------------------------------------------------
# 2. a manifest entry must list its inputs and outputs
# --------------------------------------------------------------------------------------

@pytest.mark.parametrize("key", ["inputs", "outputs"])
@pytest.mark.parametrize("how", ["missing", "empty"])
def test_entry_without_inputs_or_outputs_is_refused(tmp_path, key, how):
    folder = _folder(tmp_path)
    _edit(folder, lambda m: m[ATTR].pop(key) if how == "missing" else m[ATTR].update({key: []}))
    msg = _load_error(folder)
    assert "attributes-int8.onnx" in msg and f"lists no {key}" in msg


@pytest.mark.parametrize("gate", [{"thresholds": {"param_l1": float("inf")}}, {"thresholds": {"param_l1": "abc"}},
                                  {"thresholds": {"param_l1": -0.1}}, [1, 2], {"thresholds": [1]}])
def test_a_quality_gate_that_is_not_thresholds_is_refused(tmp_path, gate):
    """A manifest's ``quality_gate`` must be an object whose thresholds are
    finite numbers >= 0: the runtime gate took an infinite threshold (any
    drift passed) and raised ValueError or AttributeError on a string or a
    list (a review, session 64)."""
    folder = _folder(tmp_path)
    path = folder / "manifest.json"
    man = json.loads(path.read_text())
    man["models"][FACE]["quality_gate"] = gate
    path.write_text(json.dumps(man).replace("Infinity", "1e999"))
    assert "quality_gate" in _load_error(folder)


def test_mismatched_model_with_unlisted_outputs_never_reaches_from_frame(tmp_path):
    """The review's case: an attribute model with one output and a manifest
    entry without outputs crashed in from_frame (KeyError 'glasses')."""
    from avatarizer.runtime import check_io

    folder = _folder(tmp_path)
    entry = Manifest.load(folder)[ATTR]
    sess = Session.from_entry(entry, device="cpu")
    bare = type(entry)(**{**entry.__dict__, "outputs": ()})
    with pytest.raises(ModelError, match="lists no outputs"):
        check_io(bare, sess.inputs, sess.outputs)


# --------------------------------------------------------------------------------------
# 6. the embedded description must agree with the manifest on inputs and outputs
#    (3. and be usable: inputs a list of specs, a normalisation of numbers)
# --------------------------------------------------------------------------------------

def _face_desc(**io_changes) -> dict:
    desc = _description("image_to_face-int8.onnx")
    for key, fn in io_changes.items():
        desc[key] = fn(json.loads(json.dumps(desc[key])))
    return desc


def _with_input(**fields):
    return lambda specs: [dict(specs[0], **fields)] + specs[1:]


@pytest.mark.parametrize("change, says", [
    ({"inputs": _with_input(normalisation={"mean": [0, 0, 0], "std": [1, 1, 1], "scale": 1.0})},
     "input 'crop' normalisation"),
])
def test_embedded_inputs_outputs_must_agree_with_the_manifest(tmp_path, change, says):
    """The review's p11: embedded normalisation mean 0 / std 1 while the
    manifest says 0.5 loaded, and the runtime used the embedded values."""
    folder = _folder(tmp_path, keep=(FACE,))
    _install(folder, _face_model(desc=_face_desc(**change)))
    msg = _load_error(folder)
    assert "image_to_face-int8.onnx: embedded description" in msg and says in msg


@pytest.mark.parametrize("value", ["x", None, [5], [{"shape": [1]}], {"name": "crop"}])
def test_embedded_inputs_that_are_not_a_list_of_specs_are_a_model_error(tmp_path, value):
    folder = _folder(tmp_path, keep=(FACE,))
    desc = _description("image_to_face-int8.onnx")
    if value is None:
        del desc["inputs"]
    else:
        desc["inputs"] = value
    _install(folder, _face_model(desc=desc))
    assert "embedded description field inputs" in _load_error(folder)


@pytest.mark.parametrize("norm, says", [
    ({"mean": "abc"}, "mean 'abc'"), ({"std": [0.5, 0, 0.5]}, "has a zero"), ({"std": [1, 1]}, "std [1, 1]"),
    ({"scale": -1}, "scale -1"), ({"scale": True}, "scale True"), ({"colour_order": "GRB"}, "colour_order"),
    ("abc", "not an object"), ({"mean": 10 ** 400}, "mean 1000"),
    # numbers that pass as numbers but not as a normalisation in float32 (a review's: the network
    # was fed infinities, or every pixel alike, and the avatar came back without a word)
    ({"std": [1e-46] * 3}, "map pixel values 0 and 255"), ({"std": [1e-40] * 3}, "map pixel values 0 and 255"),
    ({"scale": 1e-30}, "map pixel values 0 and 255"), ({"mean": [1e20] * 3}, "map pixel values 0 and 255"),
])
def test_unusable_normalisation_is_a_model_error(tmp_path, norm, says):
    """Manifest and embedded description agree, but on nothing usable."""
    folder = _folder(tmp_path, keep=(FACE,))
    new = norm if not isinstance(norm, dict) else dict(
        _description("image_to_face-int8.onnx")["inputs"][0]["normalisation"], **norm)
    _install(folder, _face_model(desc=_face_desc(inputs=_with_input(normalisation=new))))
    _edit(folder, lambda m: m[FACE]["inputs"][0].update(normalisation=new))
    msg = _load_error(folder)
    assert "input 'crop' normalisation" in msg and says in msg


def test_session_preprocess_refuses_an_unusable_description():
    """A Session made straight from a file (no manifest) reads its own description."""
    from avatarizer.runtime.tensors import _input_spec

    with pytest.raises(ModelError, match="field inputs"):
        _input_spec({"name": "m", "inputs": "x"}, "crop")
    with pytest.raises(ModelError, match="normalisation: mean"):
        _input_spec({"name": "m", "inputs": [{"name": "crop", "normalisation": {"mean": "abc"}}]}, "crop")
    assert _input_spec({"inputs": [{"name": "crop"}]}, "crop") == {"name": "crop"}


# --------------------------------------------------------------------------------------
# 3. odd values in an attribute model's embedded description are ModelError naming the field
# --------------------------------------------------------------------------------------

@pytest.mark.parametrize("change, field", [
    ({"decision_thresholds": "abc"}, "decision_thresholds"),
    ({"decision_thresholds": {"beard": "high"}}, "decision_thresholds['beard']"),
    ({"draw_thresholds": {"glasses": 2.0}}, "draw_thresholds['glasses']"),
    ({"draw_thresholds": {"glasses": float("nan")}}, "draw_thresholds['glasses']"),
    ({"decision_thresholds": {"male": True}}, "decision_thresholds['male']"),
    ({"hair_colour_priors": {"black": 1}}, "hair_colour_priors"),
    ({"hair_colour_priors": [0.2] * 5}, "hair_colour_priors"),
    ({"hair_colour_priors": dict.fromkeys(("black", "brown", "blond", "red", "gray"), -1)},
     "hair_colour_priors['black']"),
    ({"hair_colour_priors": dict.fromkeys(("black", "brown", "blond", "red", "gray"), float("inf"))},
     "hair_colour_priors['black']"),
])
def test_odd_thresholds_and_priors_are_a_model_error(change, field):
    from avatarizer.hair import model_thresholds

    desc = dict(_description("attributes-int8.onnx"), **change)
    with pytest.raises(ModelError, match=f"embedded description field {field}".replace("[", r"\[")
                       .replace("]", r"\]")):
        model_thresholds(desc)


def test_shipped_thresholds_are_unchanged():
    from avatarizer.hair import FLAGS, HAIR_COLOURS, model_thresholds

    desc = _description("attributes-int8.onnx")
    dec, draw = model_thresholds(desc)
    tone = dec.pop("hair_colour_tone_prior")  # (the skin tone record's hair colour prior, H 2.3.4 on)
    assert tone["ratios"].tolist() == desc["skin_tone"]["hair_colour_by_tone"]["ratios"]
    assert dec == {**{k: float(desc["decision_thresholds"].get(k, 0.5)) for k in FLAGS},
                   "hair_colour_priors": [float(desc["hair_colour_priors"][c]) for c in HAIR_COLOURS]}
    assert draw == {k: float(desc["draw_thresholds"].get(k, 0.5)) for k in FLAGS}
    assert model_thresholds(None) == ({k: 0.5 for k in FLAGS}, {k: 0.5 for k in FLAGS})


def test_odd_priors_refuse_the_avatarizer_not_its_first_frame(tmp_path):
    """The review's p5: a partial hair_colour_priors was a KeyError while
    building the Avatarizer; now a ModelError naming the field."""
    from avatarizer import Avatarizer

    folder = _folder(tmp_path)
    m = onnx.load(str(MODELS / "attributes-int8.onnx"))
    desc = dict(_description("attributes-int8.onnx"), hair_colour_priors={"black": 1})
    for p in m.metadata_props:
        if p.key == "avatarizer":
            p.value = json.dumps(desc)
    _install(folder, m, ATTR)
    with pytest.raises(ModelError, match="hair_colour_priors"):
        Avatarizer(models_dir=folder, device="cpu", estimator="model", precision="int8")


# --------------------------------------------------------------------------------------
# 4. the newest attribute model is chosen by numeric version
# --------------------------------------------------------------------------------------

def _two_attribute_entries(tmp_path, v_old, v_new, precision_new="int8"):
    folder = _folder(tmp_path, keep=(ATTR,))

    def add(models):
        models[ATTR]["version"] = v_old
        other = dict(models[ATTR], version=v_new)
        shutil.copy(folder / models[ATTR]["file"], folder / "attributes-b.onnx")
        other["file"] = "attributes-b.onnx"
        models["attributes-b"] = other

    _edit(folder, add)
    # the embedded name and version must match the manifest's (the version only where it gives one)
    for name, file, version in ((ATTR, None, v_old), ("attributes-b", "attributes-b.onnx", v_new)):
        path = folder / (file or json.loads((folder / "manifest.json").read_text())["models"][ATTR]["file"])
        m = onnx.load(str(path))
        for p in m.metadata_props:
            if p.key == "avatarizer":
                meta = dict(json.loads(p.value), name=name)
                if version is not None:
                    meta["version"] = version
                p.value = json.dumps(meta)
        _install(folder, m, name)
    return Manifest.load(folder)


@pytest.mark.parametrize("old, new", [("2.3.2", "10.0.0"), ("2.3.2", 10), (2, "2.3.2"), (None, "0.1"),
                                      ("9.9.9", "10")])
def test_newest_attribute_model_by_numeric_version(tmp_path, old, new):
    from avatarizer.pipeline.config import attributes_entry

    assert attributes_entry(_two_attribute_entries(tmp_path, old, new)).name == "attributes-b"


def test_a_version_or_metadata_format_the_file_does_not_have_is_a_model_error(tmp_path):
    """The manifest's version is what the runtime acts on (the attribute
    model's glasses fusion and gates follow it), so a file whose embedded
    version disagrees, or whose metadata a newer exporter wrote, is refused
    naming the file (both loaded before)."""
    folder = _folder(tmp_path, keep=(ATTR,))
    shipped = json.loads((folder / "manifest.json").read_text())["models"][ATTR]["version"]
    _edit(folder, lambda models: models[ATTR].update(version="99.0.0"))
    assert f"embedded metadata says version '{shipped}', the manifest says '99.0.0'" in _load_error(folder)
    folder = _folder(tmp_path / "fmt", keep=(ATTR,))
    file = json.loads((folder / "manifest.json").read_text())["models"][ATTR]["file"]
    m = onnx.load(str(folder / file))
    for p in m.metadata_props:
        if p.key == "avatarizer":
            p.value = json.dumps(dict(json.loads(p.value), metadata_format=99))
    _install(folder, m, ATTR)
    err = _load_error(folder)
    assert file in err and "metadata format 99" in err, err


@pytest.mark.parametrize("bad", ["abc", "2.3.2-rc1", 2.5, True, "", "1..2", -1, "٣"])
def test_a_version_that_is_not_one_is_a_model_error(tmp_path, bad):
    from avatarizer.pipeline.config import attributes_entry

    with pytest.raises(ModelError, match="is not a version"):
        attributes_entry(_two_attribute_entries(tmp_path, "2.3.2", bad))


def test_equal_versions_prefer_int8():
    from types import SimpleNamespace

    from avatarizer.pipeline.config import attributes_entry, model_version

    def e(name, version, precision):
        return SimpleNamespace(name=name, role="attributes", kind="onnx", precision=precision, path=Path(name),
                               raw={"version": version})

    man = SimpleNamespace(models={"a": e("a", "2.0", "fp32"), "b": e("b", 2, "int8")})
    assert model_version(man.models["a"]) == model_version(man.models["b"]) == (2,)
    assert attributes_entry(man).name == "b"


# --------------------------------------------------------------------------------------
# 5. a face model that returns NaN or infinity is a ModelError, never a ValueError
# --------------------------------------------------------------------------------------

@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_non_finite_face_model_output_is_a_model_error(tmp_path, bad):
    """The review's p4: NaN from the model was a LinAlgError (a ValueError,
    the documented type for bad input) in the hybrid estimator, which the
    eval tool counted as "no face"."""
    from avatarizer import Avatarizer, sample_photo

    folder = _folder(tmp_path, keep=(FACE,))
    W = np.zeros((3, 483), np.float32)
    W[:, 5] = bad
    _install(folder, _face_model(W))
    photo = sample_photo()  # the bundled portrait: the same input on every machine (CI's checkout is elsewhere)
    for estimator in ("hybrid", "model"):
        with Avatarizer(models_dir=folder, device="cpu", estimator=estimator, precision="int8", max_faces=1) as a:
            with pytest.raises(ModelError, match="non-finite") as info:
                a.from_frame(photo)
            assert not isinstance(info.value, ValueError)
            assert FACE in str(info.value)


@pytest.mark.parametrize("scale", [np.nan, 1e6, -50.0])
def test_broken_attribute_model_output_is_a_model_error(tmp_path, scale):
    """The attribute model's outputs scaled by NaN (every output), by a
    million or by -50 (probabilities outside [0, 1]): a ModelError naming the
    model, not NaN probabilities reported for every attribute or a bald
    head drawn at P 998261 (a read-only review, session 53)."""
    import onnx
    from onnx import helper, numpy_helper

    from avatarizer import Avatarizer, sample_photo

    folder = _folder(tmp_path)
    file = json.loads((folder / "manifest.json").read_text())["models"][ATTR]["file"]
    m = onnx.load(str(folder / file))
    g = m.graph
    for out in g.output:  # each output times the scale
        for n in g.node:
            n.output[:] = [o + "_raw" if o == out.name else o for o in n.output]
        g.initializer.append(numpy_helper.from_array(np.array([scale], np.float32), out.name + "_scale"))
        g.node.append(helper.make_node("Mul", [out.name + "_raw", out.name + "_scale"], [out.name]))
    _install(folder, m, ATTR)
    with Avatarizer(models_dir=folder, device="cpu", estimator="hybrid", max_faces=1) as a:
        with pytest.raises(ModelError, match="non-finite" if np.isnan(scale) else r"outside \[0, 1\]") as info:
            a.from_frame(sample_photo())
        assert not isinstance(info.value, ValueError) and ATTR in str(info.value)


# --------------------------------------------------------------------------------------
# 7. a manifest Python cannot parse (an integer over 4300 digits) is a ModelError
# --------------------------------------------------------------------------------------

@pytest.mark.parametrize("where", ["size", "other"])
def test_manifest_with_a_huge_integer_is_a_model_error(tmp_path, where):
    folder = _folder(tmp_path, keep=(FACE,))
    text = (folder / "manifest.json").read_text()
    huge = "9" * 5000
    text = text.replace('"size": ', f'"size": {huge}, "was": ', 1) if where == "size" \
        else text.replace('{"models"', f'{{"x": {huge}, "models"', 1)
    (folder / "manifest.json").write_text(text)
    assert "unreadable manifest" in _load_error(folder)


def test_embedded_description_with_a_huge_integer_is_a_model_error(tmp_path):
    folder = _folder(tmp_path, keep=(FACE,))
    m = _face_model()
    for p in m.metadata_props:
        if p.key == "avatarizer":
            p.value = p.value[:-1] + ', "x": ' + "9" * 5000 + "}"
    _install(folder, m)
    assert "image_to_face-int8.onnx" in _load_error(folder)


# --------------------------------------------------------------------------------------
# 8. session options of the wrong type are a ValueError (bad options), not a TypeError
# --------------------------------------------------------------------------------------

@pytest.mark.parametrize("option", ["intra_op_num_threads", "inter_op_num_threads"])
@pytest.mark.parametrize("value", ["2", 2.0, None, True, -1, 2 ** 31, [1]])
def test_thread_counts_of_the_wrong_type_are_a_value_error(option, value):
    manifest = Manifest.load()
    with pytest.raises(ValueError, match=f"{option} must be an integer"):
        manifest.session(FACE, device="cpu", **{option: value})


def test_thread_counts_accept_numpy_integers():
    sess = Manifest.load().session(FACE, device="cpu", intra_op_num_threads=np.int64(2),
                                   inter_op_num_threads=np.uint8(1))
    assert sess.intra_op_num_threads == 2 and type(sess.intra_op_num_threads) is int


# --------------------------------------------------------------------------------------
# 9. TensorRT engine sessions are checked against the manifest's inputs/outputs too
#    (no GPU here: a stub tensorrt module and buffer library stand in)
# --------------------------------------------------------------------------------------

class _StubTrt:
    """The parts of the tensorrt module TensorRTSession's constructor uses; the
    engine declares ``io``: [(name, shape, is_input)], float32."""
    __version__ = "10.0-stub"

    class Logger:
        WARNING = 2

        def __init__(self, level):
            pass

    class TensorIOMode:
        INPUT, OUTPUT = "INPUT", "OUTPUT"

    class DataType:
        FLOAT = "DataType.FLOAT"

    def __init__(self, io):
        stub = self

        class Engine:
            num_io_tensors = len(io)

            def get_tensor_name(self, i):
                return io[i][0]

            def get_tensor_shape(self, name):
                return next(shape for n, shape, _ in io if n == name)

            def get_tensor_dtype(self, name):
                return stub.DataType.FLOAT

            def get_tensor_mode(self, name):
                inp = next(i for n, _, i in io if n == name)
                return stub.TensorIOMode.INPUT if inp else stub.TensorIOMode.OUTPUT

            def get_tensor_profile_shape(self, name, profile):
                shape = list(self.get_tensor_shape(name))
                return [1 if d < 0 else d for d in shape], shape, [16 if d < 0 else d for d in shape]

            def create_execution_context(self):
                return object()

        class Runtime:
            def __init__(self, logger):
                pass

            def deserialize_cuda_engine(self, data):
                return Engine()

        self.Runtime = Runtime

    @staticmethod
    def nptype(dtype):
        return np.float32


def _engine_folder(tmp_path: Path) -> tuple[Path, str]:
    from avatarizer.runtime import pack_engine

    folder = _folder(tmp_path, keep=(FACE,))
    name = "image_to_face-engine-fp16"
    desc = dict(_description("image_to_face-int8.onnx"), name=name, precision="fp16", format="engine-fp16")
    data = pack_engine(desc, b"stub engine bytes")
    (folder / "x-fp16.engine").write_bytes(data)

    def add(models):
        models[name] = dict(models[FACE], file="x-fp16.engine", precision="fp16", format="engine-fp16",
                            sha256=hashlib.sha256(data).hexdigest(), size=len(data))

    _edit(folder, add)
    return folder, name


@pytest.mark.parametrize("io, ok", [
    ([("crop", (-1, 3, 96, 96), True), ("face", (-1, 483), False)], True),
    ([("crop", (-1, 3, 128, 128), True), ("face", (-1, 483), False)], False),
    ([("image", (-1, 3, 96, 96), True), ("face", (-1, 483), False)], False),
    ([("crop", (-1, 3, 96, 96), True), ("face", (-1, 482), False)], False),
    ([("crop", (-1, 3, 96, 96), True), ("face", (-1, 483), False), ("extra", (-1, 1), False)], False),
])
def test_engine_sessions_are_checked_against_the_manifest(tmp_path, monkeypatch, io, ok):
    from types import SimpleNamespace

    from avatarizer.runtime import tensorrt as RT

    folder, name = _engine_folder(tmp_path)
    monkeypatch.setattr(RT, "require_tensorrt", lambda *a, **k: _StubTrt(io))
    monkeypatch.setattr(RT, "cuda_buffer_library", lambda *a, **k: SimpleNamespace(library="stub"))
    manifest = Manifest.load(folder)
    if ok:
        sess = manifest.session(name)
        assert sess.input_names == ["crop"] and sess.output_names == ["face"]
    else:
        with pytest.raises(ModelError, match="x-fp16.engine"):
            manifest.session(name)
        from avatarizer.pipeline.face import ModelFaceEstimator

        with pytest.raises(ModelError, match="x-fp16.engine"):  # backend="tensorrt" opens engines here
            ModelFaceEstimator._open(manifest[name], None)


# --------------------------------------------------------------------------------------
# 6 (continued). names, shapes and dtypes of the embedded description: checked when the
# session is made, so that manifest, description and model all agree
# --------------------------------------------------------------------------------------

@pytest.mark.parametrize("change, says", [
    ({"inputs": _with_input(shape=["batch", 3, 128, 128])}, "input 'crop' shape"),
    ({"inputs": _with_input(dtype="float16")}, "input 'crop' dtype"),
    ({"inputs": _with_input(name="image")}, "lists inputs ['image']"),
    ({"outputs": lambda specs: specs + [dict(specs[0], name="extra")]}, "lists outputs ['face', 'extra']"),
    ({"outputs": lambda specs: [dict(specs[0], shape=["batch", 482])]}, "output 'face' shape"),
])
def test_embedded_names_shapes_dtypes_must_agree_with_the_manifest(tmp_path, change, says):
    """The review's p11 also changed the embedded shape (128 against the manifest's 96)."""
    from avatarizer import Avatarizer

    folder = _folder(tmp_path, keep=(FACE,))
    _install(folder, _face_model(desc=_face_desc(**change)))
    entry = Manifest.load(folder)[FACE]
    with pytest.raises(ModelError, match="image_to_face-int8.onnx: the embedded description") as info:
        Session.from_entry(entry, device="cpu")
    assert says in str(info.value)
    with pytest.raises(ModelError, match="embedded description"):
        Avatarizer(models_dir=folder, device="cpu", estimator="model", precision="int8")


def test_engine_description_is_checked_too(tmp_path, monkeypatch):
    from types import SimpleNamespace

    from avatarizer.runtime import pack_engine
    from avatarizer.runtime import tensorrt as RT

    folder, name = _engine_folder(tmp_path)
    desc = _face_desc(outputs=lambda specs: [dict(specs[0], shape=["batch", 482])])
    data = pack_engine(dict(desc, name=name, precision="fp16", format="engine-fp16"), b"stub engine bytes")
    (folder / "x-fp16.engine").write_bytes(data)
    _edit(folder, lambda m: m[name].update(sha256=hashlib.sha256(data).hexdigest(), size=len(data)))
    io = [("crop", (-1, 3, 96, 96), True), ("face", (-1, 483), False)]
    monkeypatch.setattr(RT, "require_tensorrt", lambda *a, **k: _StubTrt(io))
    monkeypatch.setattr(RT, "cuda_buffer_library", lambda *a, **k: SimpleNamespace(library="stub"))
    with pytest.raises(ModelError, match="output 'face' shape"):
        Manifest.load(folder).session(name)


def test_the_export_tools_write_only_versions_the_sdk_reads():
    import argparse

    from avatarizer_export.attributes import _version_arg

    assert _version_arg("2.4.0") == "2.4.0"
    for bad in ("2.4.0-rc1", "abc", ""):
        with pytest.raises(argparse.ArgumentTypeError, match="not a version"):
            _version_arg(bad)
    # a version the next refit cannot count on: "1.0" was written, and the refit after it failed after its work
    for bad in ("1.0", "3", "1.2.3.4"):
        with pytest.raises(argparse.ArgumentTypeError, match="MAJOR.MINOR.PATCH"):
            _version_arg(bad)


def test_a_head_refit_reads_the_manifest_before_it_replaces_the_model(tmp_path):
    """save_head_change replaced the model file, then found no manifest (or
    no entry for it): the folder's manifest no longer matched its model."""
    import onnx
    from onnx import TensorProto, helper

    from avatarizer_export.attributes import next_patch, save_head_change

    graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])])
    path = tmp_path / "attributes-int8.onnx"
    onnx.save(helper.make_model(graph), str(path))
    before = path.read_bytes()
    for manifest in (None, '{"models": {}}'):
        if manifest is not None:
            (tmp_path / "manifest.json").write_text(manifest)
        with pytest.raises(ValueError, match="nothing was written"):
            save_head_change(onnx.load(str(path)), {"name": "attributes-onnx-int8", "version": "2.3.8"}, path,
                             tmp_path, "2.3.7", "note")
        assert path.read_bytes() == before
    assert next_patch("2.3.7") == "2.3.8"
    with pytest.raises(ValueError, match="MAJOR.MINOR.PATCH"):
        next_patch("1.0")


@pytest.mark.parametrize("version, ok", [("1.0.0", True), (None, True), ("0.9.0", False), ("2.0.0", False)])
def test_models_of_an_earlier_schema_that_reads_alike_still_load(tmp_path, version, ok):
    """Schema 1.1.0 only added ``headwear.type`` 4 and 5 (a head scarf, a turban), outside
    the face slice the models predict, so a model exported for 1.0.0 (the
    shipped ones) loads, as one for the schema itself (``None``: this SDK's
    version); one for any other version is refused naming the file and the
    versions read."""
    from avatarizer import schema

    assert schema.READS == (schema.VERSION, "1.0.0")
    version = schema.VERSION if version is None else version
    folder = _folder(tmp_path, keep=(FACE,))
    desc = dict(_description("image_to_face-int8.onnx"), schema_version=version)
    file = json.loads((folder / "manifest.json").read_text())["models"][FACE]["file"]
    _install(folder, _face_model(desc=desc), schema_version=version)
    if ok:
        assert Manifest.load(folder).models[FACE].description["schema_version"] == version
    else:
        err = _load_error(folder)
        assert file in err and f"exported for parameter schema '{version}'" in err
        assert f"reads {', '.join(schema.READS)}" in err, err


def test_a_damaged_fitted_data_file_is_said_not_silently_dropped(tmp_path, monkeypatch):
    """A cut ``artist_detectors.json`` (or ``glasses_fusion.json``, or
    ``headwear_kinds.json``) was dropped without a word, and the avatars
    changed: sunglasses drawn on bare eyes, ages halved (a review, session
    66). Each is refused with a RuntimeWarning naming the file, as the other
    fitted files are; a missing file is still the documented silent
    fallback, and the shipped ones load without a warning."""
    import warnings

    from avatarizer import glasses as G
    from avatarizer import headwear as HW
    from avatarizer.artist import accessories as A

    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        A.detectors.cache_clear()
        try:
            assert A.detectors()  # (the shipped file, whole)
        finally:
            A.detectors.cache_clear()
        assert HW._model(str(HW._DATA)) is not None
    for src in (A._DETECTORS_PATH, G.FUSION_PATH, HW._DATA):
        text = Path(src).read_text()
        cut = tmp_path / Path(src).name
        cut.write_text(text[: len(text) // 2])
    dets = tmp_path / A._DETECTORS_PATH.name
    with artist_detectors_at(monkeypatch, dets) as detectors:
        with pytest.warns(RuntimeWarning, match="artist_detectors.json is not used"):
            assert detectors() == {}
    # one detector whose weights do not fit: left out, said
    whole = json.loads((Path(__file__).resolve().parents[1] / "sdk" / "avatarizer" / "data" /
                        "artist_detectors.json").read_text())
    name = sorted(whole["detectors"])[0]
    whole["detectors"][name] = {"kind": "logistic", "w": [1.0, 2.0], "b": "x"}
    dets.write_text(json.dumps(whole))
    with artist_detectors_at(monkeypatch, dets) as detectors:
        with pytest.warns(RuntimeWarning, match=f"its '{name}' detector is not used"):
            assert name not in detectors() and len(detectors()) == len(whole["detectors"]) - 1
    with pytest.warns(RuntimeWarning, match="glasses_fusion.json is not used"):
        assert G.GlassesFusion.load("2.3.6", tmp_path / G.FUSION_PATH.name, artist_network="x") is None
    with pytest.warns(RuntimeWarning, match="is not used"):
        assert HW._model(str(tmp_path / Path(HW._DATA).name)) is None
    HW._model.cache_clear()
    with warnings.catch_warnings():  # (missing: the documented fallback, silent)
        warnings.simplefilter("error", RuntimeWarning)
        assert G.GlassesFusion.load("2.3.6", tmp_path / "none.json", artist_network="x") is None
        assert HW._model(str(tmp_path / "none.json")) is None


def test_a_damaged_schema_file_is_a_model_error_naming_it(tmp_path):
    """``data/schema.json`` cut short: ``import avatarizer`` (and so every
    command, ``--version`` too) ended in json's JSONDecodeError, not an SDK
    error (a review, session 66). It is a ModelError naming the file and
    saying to reinstall, as a damaged mean face file's is, raised where the
    schema is used (since session 71 the package itself imports, so that
    the CLI can say it in one line: tests/test_cli_safety.py), each time a
    new one (the stored one, raised again, grew its traceback)."""
    import subprocess
    import sys

    pkg = Path(__file__).resolve().parents[1] / "sdk" / "avatarizer"
    copy = tmp_path / "avatarizer"
    shutil.copytree(pkg, copy, ignore=shutil.ignore_patterns("models", "__pycache__", "*.onnx"))
    schema = copy / "data" / "schema.json"
    schema.write_text(schema.read_text()[:1000])
    code = ("import avatarizer, traceback\nfor _ in range(3):\n    try:\n        avatarizer.render\n"
            "    except avatarizer.ModelError as e:\n        print(len(traceback.format_tb(e.__traceback__)))\n"
            "avatarizer.schema\n")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=tmp_path, env={"PYTHONPATH": str(tmp_path), "PATH": "/usr/bin:/bin"}, timeout=120)
    last = res.stderr.strip().splitlines()[-1]
    assert res.returncode != 0 and last.startswith("avatarizer.errors.ModelError"), res.stderr[-800:]
    assert "schema.json: not a readable parameter schema" in last and "reinstall" in last
    assert len(set(res.stdout.split())) == 1, res.stdout  # (the same traceback each time)


def test_the_runtime_imports_without_a_home_directory(tmp_path, monkeypatch):
    """A container's user without a passwd entry or HOME: ``import
    avatarizer.runtime`` (every ``Avatarizer()`` with models) raised "Could
    not determine home directory", also with ``AVATARIZER_CACHE`` set (the
    home was asked for first; a review, session 72). The engine cache is
    ``AVATARIZER_CACHE``'s, else the home's, else a folder in the temporary
    folder."""
    import os
    import subprocess
    import sys

    no_home = ("import pathlib\n"
               "def home(cls): raise RuntimeError('Could not determine home directory.')\n"
               "pathlib.Path.home = classmethod(home)\n"
               "import avatarizer.runtime as R\n"
               "print(R.TRT_CACHE_DIR)\n")
    for cache in (None, str(tmp_path / "c")):
        env = {k: v for k, v in os.environ.items() if k not in ("HOME", "AVATARIZER_CACHE")}
        if cache:
            env["AVATARIZER_CACHE"] = cache
        r = subprocess.run([sys.executable, "-c", no_home], env=env, capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, r.stderr[-2000:]
        got = Path(r.stdout.strip().splitlines()[-1])
        import tempfile

        want = Path(cache) if cache else Path(tempfile.gettempdir()) / f"avatarizer-cache-{os.getuid()}"
        assert got == want / "ort-trt", got
    from avatarizer.runtime import onnx as O

    monkeypatch.setenv("AVATARIZER_CACHE", str(tmp_path / "c"))
    assert O._cache_parent() == tmp_path / "c"


def test_a_model_failing_or_returning_other_shapes_at_run_time_is_a_model_error(tmp_path):
    """What a model file declares is checked when it loads; what it returns
    was not: an attribute model declaring 5 hair colours and returning 2
    failed deep in the decoding (a broadcasting error, an IndexError) or drew
    what was left, a region network returning fewer values raised KeyError,
    and ONNX Runtime's own errors while running (an index out of range)
    reached the app as its exception types (a review, session 72). Both are
    :class:`ModelError` naming the model."""
    x = oh.make_tensor_value_info("x", TP.FLOAT, ["batch", 3, 4, 4])
    mean = oh.make_node("ReduceMean", ["x"], ["m"], axes=[2, 3], keepdims=0)
    # (the slice's end comes from the data, so no shape inference knows the output is 2 wide: declared 3)
    ends = [oh.make_node("ReduceMax", ["x"], ["mx"], keepdims=0), oh.make_node("Mul", ["mx", "zero"], ["z"]),
            oh.make_node("Add", ["z", "two"], ["e"]), oh.make_node("Cast", ["e"], ["ei"], to=TP.INT64),
            oh.make_node("Reshape", ["ei", "one_d"], ["end"])]
    cases = {
        "narrow": ([mean, *ends, oh.make_node("Slice", ["m", "start", "end", "axis"], ["y"])],
                   [nh.from_array(np.float32(0), "zero"), nh.from_array(np.float32(2), "two"),
                    nh.from_array(np.array([1], np.int64), "one_d"), nh.from_array(np.array([0], np.int64), "start"),
                    nh.from_array(np.array([1], np.int64), "axis")], ["batch", 3]),
        # (its node named like an allocation: still a broken file, not out of memory; a review, session 72)
        "gather": ([mean, oh.make_node("Gather", ["m", "idx"], ["y"], axis=1, name="reallocate_buf")],
                   [nh.from_array(np.array([100000], np.int64), "idx")], ["batch", 1]),
    }
    # an output of unknown rank (a reshape to a shape read at run time: ONNX Runtime lists its shape as ()) and
    # one too large to allocate (not the file's fault: MemoryError)
    cases["unknown_rank"] = ([mean, oh.make_node("Reshape", ["m", "to"], ["y"])],
                             [nh.from_array(np.array([3, 1], np.int64), "to")], None)
    cases["huge"] = ([oh.make_node("ConstantOfShape", ["big"], ["y"], value=nh.from_array(np.ones(1, np.float32)))],
                     [nh.from_array(np.array([1 << 45], np.int64), "big")], ["n"])
    for name, (nodes, inits, shape) in cases.items():
        g = oh.make_graph(nodes, "g", [x], [oh.make_tensor_value_info("y", TP.FLOAT, shape)], inits)
        m = oh.make_model(g, opset_imports=[oh.make_opsetid("", 17)])
        m.ir_version = 8
        path = tmp_path / f"{name}.onnx"
        path.write_bytes(m.SerializeToString())
        sess = Session(path, name=name)
        feed = {"x": np.ones((1, 3, 4, 4), np.float32)}
        if name == "unknown_rank":  # (it ran before, and runs: a valid model, refused for a while; a review)
            assert sess.run(feed)["y"].shape == (3, 1)
            continue
        if name == "huge":
            with pytest.raises(MemoryError, match="model 'huge' ran out of memory"):
                sess.run(feed)
            continue
        with pytest.raises(ModelError, match=f"model '{name}'.*" + ("returned 'y' of shape \\(1, 2\\) where it "
                                                                    "declares float32 array of shape \\(batch, 3\\)"
                                                                    if name == "narrow" else "failed while running")):
            sess.run(feed)


def test_a_manifest_linked_from_outside_the_folder_is_refused(tmp_path):
    """Every file the manifest lists must lie in the models folder, links
    included; the manifest itself was read through a link to anywhere (a
    review, session 72)."""
    folder = _folder(tmp_path)
    outside = tmp_path / "elsewhere.json"
    (folder / "manifest.json").rename(outside)
    (folder / "manifest.json").symlink_to(outside)
    msg = _load_error(folder)
    assert "outside the models folder" in msg and "manifest.json" in msg, msg
    inside = folder / "real_manifest.json"  # (a link within the folder is the folder's own file)
    inside.write_bytes(outside.read_bytes())
    (folder / "manifest.json").unlink()
    (folder / "manifest.json").symlink_to(inside.name)
    assert Manifest.load(folder)[FACE].name == FACE


def test_the_engine_cache_in_the_temporary_folder_is_this_users_alone(tmp_path, monkeypatch):
    """Without a home, the TensorRT engine cache falls back to a folder of a
    predictable name in the temporary folder: one another user made first
    (world-writable, or theirs, or a link of that name) was used, and ONNX
    Runtime would read their engines (reviews, session 72). It is used only
    where it is a folder, not a link, this user owns and no one else may
    write to; this user's own, too open, is closed. A folder elsewhere (the
    home's, one the user named) is the user's to choose."""
    import os

    from avatarizer.runtime import onnx as O

    monkeypatch.setattr(O.tempfile, "gettempdir", lambda: str(tmp_path))
    mine = tmp_path / f"avatarizer-cache-{os.getuid()}"
    mine.mkdir()
    mine.chmod(0o777)
    assert O._private_cache(mine / "ort-trt") and (mine.stat().st_mode & 0o777) == 0o700
    mine.rmdir()
    (tmp_path / "target").mkdir()
    (tmp_path / "target").chmod(0o775)
    mine.symlink_to(tmp_path / "target")  # (a link of the name, planted: refused, its target's mode left alone)
    assert not O._private_cache(mine / "ort-trt") and ((tmp_path / "target").stat().st_mode & 0o777) == 0o775
    mine.unlink()
    if os.getuid() == 0:  # (as root: a folder another user owns)
        mine.mkdir()
        os.chown(mine, 65534, 65534)
        assert not O._private_cache(mine / "ort-trt")
    assert O._private_cache(tmp_path / "home" / ".cache" / "avatarizer" / "ort-trt")
    assert O._private_cache(tmp_path / "named" / "avatarizer-cache-9" / "ort-trt")  # (not in the temp folder)
