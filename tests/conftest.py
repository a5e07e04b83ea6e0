"""Shared test helpers: where ../shared is, a place for failure artefacts, a two-face frame."""
from __future__ import annotations

import contextlib
import copy
import os

# pytest-xdist: as many workers as cores (make test), each of them a process with torch's and the
# BLAS's own thread pools; two pools of two threads on two cores spin against each other (a small
# fit took 21 s beside another where it takes 4 s alone). Each worker gets its share of the cores,
# set before numpy and torch start their pools (a test that sets its own count still does).
if os.environ.get("PYTEST_XDIST_WORKER") and os.environ.get("PYTEST_XDIST_WORKER_COUNT", "").isdigit():
    _cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    _share = max(1, _cores // max(1, int(os.environ["PYTEST_XDIST_WORKER_COUNT"])))
    for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ.setdefault(_var, str(_share))

from pathlib import Path  # noqa: E402

import cv2  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
ARTEFACTS = ROOT / "out" / "test-failures"


def framed_cache(tmp_path: Path, n: int, m: int):
    """A tiny aligned cache for the tight framings' fitting tests: ``n``
    random ``ffhq128`` crops and ``m`` ``utkface200`` ones, each photo 60 px
    square in a frame padded by 20 (the crop's canonical [-1, 1] -> frame
    30..110, which runs past the photo, 20..80: those crop pixels take the
    photo's edge), the UTKFace photos written under ``tmp_path/shared`` (the
    sizes the framings read). Returns ``(shared, the cache)``."""
    from types import SimpleNamespace

    from PIL import Image

    rng = np.random.default_rng(0)
    crops = rng.integers(0, 256, (n + m, 128, 128, 3), dtype=np.uint8)
    keys = [f"ffhq128/{i:04d}.jpg" for i in range(n)] + [f"utkface200/{i}.jpg" for i in range(m)]
    transforms = np.tile(np.array([[40.0, 0, 70], [0, 40.0, 70]]), (n + m, 1, 1))
    shared = tmp_path / "shared"
    (shared / "data" / "faces" / "utkface200").mkdir(parents=True)
    for k in keys[n:]:
        Image.new("RGB", (60, 60)).save(shared / "data" / "faces" / k)
    return shared, SimpleNamespace(crops=crops, keys=keys, transforms=transforms, pad=np.full(n + m, 20))


class FakeRegionNetwork:
    """Stands in for a loaded region network (:class:`avatarizer.regionnet.RegionNetwork`):
    fixed ``readings`` (output -> probability) for every crop, its
    ``thresholds`` and ``gates`` as given, and the crops it was shown."""

    def __init__(self, readings: dict, thresholds: dict | None = None, gates: tuple | None = None):
        self.readings, self.thresholds, self.gates, self.shown = dict(readings), thresholds, gates, []

    def probabilities(self, crop) -> dict:
        self.shown.append(np.asarray(crop))
        return dict(self.readings)


def need_shared(*parts: str) -> Path:
    """Path inside ../shared, or skip the test with the reason."""
    path = SHARED.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"needs {path} (the ../shared folder beside the checkout)")
    return path


def _frozen(value):
    """``value`` made read-only for tests to share: dicts as mappings that
    cannot be changed, lists as tuples, arrays as read-only copies."""
    from types import MappingProxyType

    if isinstance(value, dict):
        return MappingProxyType({k: _frozen(v) for k, v in value.items()})
    if isinstance(value, (list, tuple)):
        return tuple(_frozen(v) for v in value)
    if isinstance(value, np.ndarray):  # (over read-only memory: setflags(write=True) cannot undo it)
        value = np.frombuffer(np.ascontiguousarray(value).tobytes(), value.dtype).reshape(value.shape)
    return value


class HeldOutFace:
    """What the held-out evaluations read of a photo's first face
    (``Avatarizer.run(...).faces[0]``), read-only: ``params`` (629,),
    ``attributes`` (the pipeline's decoded attributes, None without a
    regressor) and ``artist_age``."""

    __slots__ = ("params", "attributes", "artist_age")

    def __init__(self, face):
        object.__setattr__(self, "params", _frozen(np.asarray(face.params)))
        object.__setattr__(self, "attributes", _frozen(face.attributes))
        object.__setattr__(self, "artist_age", face.artist_age)

    def __setattr__(self, name, value):
        raise AttributeError("a shared held-out run is read-only")


class HeldOutRuns:
    """The pipeline's results for whole photos, computed once per
    (configuration, photo) in this test process and shared by the held-out
    evaluations that run the same configuration over overlapping photo sets
    (the ``heldout_runs`` fixture). A configuration is ``Avatarizer(**options)``
    in image mode, one photo at a time, the first face; one Avatarizer per
    configuration stays open until the session ends. Options at their
    default values name the same configuration as leaving them out
    (``estimator="auto"`` is ``Avatarizer()``). Only a test that runs the
    configuration as it ships shares it: one that patches the SDK or reads
    what a result does not keep runs its own Avatarizer. The tests that
    share a configuration carry the same ``xdist_group`` mark, so that
    ``--dist loadgroup`` runs them in one worker and each photo once:
    ``heldout_hybrid`` (``Avatarizer()``; a test that also runs the artist
    on a few dozen photos goes with it) and ``heldout_artist``
    (``estimator="artist"``), two groups so that no one worker carries
    both (each about 80 s on 2 cores, where the tests took 280 s apart).
    What is kept is small and read-only (about 11 KiB a photo): the
    parameters, the attributes and the artist's age (:class:`HeldOutFace`)
    and the :class:`avatarizer.Avatar` ``from_frame`` returns (each
    caller is handed a copy of it), no image or crop.
    ``computed`` and ``reused`` count the runs made and the ones shared."""

    def __init__(self):
        self._avatarizers: dict = {}
        self._done: dict = {}
        self.computed = self.reused = 0

    @staticmethod
    def _config(options: dict) -> tuple:
        from avatarizer import Options

        default = Options()
        if options.get("mode", "image") != "image":
            raise ValueError("held-out runs are image mode (a video stream's frames depend on the ones before)")
        missing = object()  # (an option Options has not: Avatarizer refuses it with its own TypeError)
        return tuple(sorted(((k, v) for k, v in options.items()
                             if type(v) is not type(getattr(default, k, missing)) or v != getattr(default, k)),
                            key=lambda kv: kv[0]))

    @staticmethod
    def _key(config: tuple) -> tuple:
        """A configuration as a dictionary key: each value by its type and repr (True is not 1, and a
        dict option is one)."""
        return tuple((k, type(v).__qualname__, repr(v)) for k, v in config)

    def avatarizer(self, **options):
        """The open ``Avatarizer(**options)`` this process shares (for its
        resolved settings: do not run photos through it here)."""
        from avatarizer import Avatarizer

        config = self._config(options)
        key = self._key(config)
        if key not in self._avatarizers:
            self._avatarizers[key] = Avatarizer(**dict(config))
        return self._avatarizers[key]

    def _get(self, path, options: dict) -> tuple:
        from avatarizer import load_image

        key = (self._key(self._config(options)), str(Path(path).resolve()))
        if key in self._done:
            self.reused += 1
            return self._done[key]
        av = self.avatarizer(**options)
        state = av.run(load_image(path))
        got = (None, None)
        if state.faces:
            avatar = av._avatar(state, 0)  # (what from_frame returns for this state; avatar() hands out copies)
            got = (HeldOutFace(state.faces[0]), avatar)
        self._done[key] = got
        self.computed += 1
        return got

    def run(self, path, **options) -> HeldOutFace | None:
        """``Avatarizer(**options).run(load_image(path)).faces[0]`` as
        :class:`HeldOutFace`, or None where no face was found."""
        return self._get(path, options)[0]

    def avatar(self, path, **options):
        """``Avatarizer(**options).from_image(path)``: a copy of the
        :class:`avatarizer.Avatar` computed once (each caller its own), or
        None where no face was found."""
        avatar = self._get(path, options)[1]
        return None if avatar is None else copy.deepcopy(avatar)  # (each test its own: nothing it does leaks)

    def close(self) -> None:
        for av in self._avatarizers.values():
            av.close()
        self._avatarizers.clear()
        self._done.clear()


@pytest.fixture(scope="session")
def heldout_runs():
    """This test process's :class:`HeldOutRuns` (closed at the session's end)."""
    runs = HeldOutRuns()
    yield runs
    runs.close()


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(config, items):
    """``--dist loadgroup`` on an xdist worker: a test marked
    ``xdist_group(name)`` gets ``@name`` after its node id, the suffix the
    controller groups by. pytest-xdist 3.8 writes it to ``item._nodeid``,
    which pytest 9.2 no longer reads (its node id is ``item._id``): nothing
    was grouped, silently (pytest-xdist issue #1386). Where xdist's own
    suffix took, nothing is done."""
    if not getattr(config.option, "loadgroup", False):  # (set on a worker under --dist loadgroup)
        return
    for item in items:
        names = sorted({str(m.args[0] if m.args else m.kwargs.get("name", "default"))
                        for m in item.iter_markers("xdist_group")})
        suffix = "@" + "_".join(names)
        if not names or item.nodeid.endswith(suffix):
            continue
        try:
            if hasattr(item, "_id"):  # (pytest 9.2: a structured id, its string form kept as parsed)
                item._id = type(item._id).parse(item.nodeid + suffix)
            else:
                item._nodeid = item.nodeid + suffix
        except (AttributeError, TypeError, ValueError):  # another pytest's internals: no grouping (slower,
            return                                       # the same tests)


def save_failure(name: str, image) -> Path:
    """Saves an image for a person to look at when a comparison fails."""
    from PIL import Image

    ARTEFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTEFACTS / f"{name}.png"
    Image.fromarray(image).save(path)
    return path


def two_face_canvas(astronaut: np.ndarray) -> np.ndarray:
    """The astronaut's head twice, 320 px and 200 px, on a grey 584×384 canvas."""
    head = astronaut[20:260, 110:350]
    canvas = np.full((384, 584, 3), 200, np.uint8)
    canvas[32:352, 32:352] = cv2.resize(head, (320, 320), interpolation=cv2.INTER_AREA)
    canvas[32:232, 352:552] = cv2.resize(head, (200, 200), interpolation=cv2.INTER_AREA)
    return canvas


def run_in_fork(fn) -> tuple[int, bytes]:
    """Runs ``fn()`` (returning bytes) in a child made by ``os.fork()`` and
    returns (the child's wait status, what ``fn`` returned; ``b"!"`` when it
    raised). The child leaves with ``os._exit``, without the parent's exit
    handlers."""
    import os

    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            out = fn()
        except BaseException:  # noqa: BLE001 (reported to the parent as b"!")
            out = b"!"
        os.write(w, out)
        os._exit(0)
    os.close(w)
    try:
        got = os.read(r, 256)
    finally:
        os.close(r)
        _, status = os.waitpid(pid, 0)
    return status, got


def luminance(rgb) -> np.ndarray:
    """Linear-light luminance (Rec. 709) of float sRGB colours ``rgb`` (last axis 3)."""
    from avatarizer.artist.photo import srgb_to_linear

    return srgb_to_linear(np.clip(np.asarray(rgb, np.float64), 0, 1)) @ np.array([0.2126, 0.7152, 0.0722])


def attribute_outputs(**extra) -> dict:
    """One batch row of the attribute model's four base outputs (hair colour,
    glasses, the binary flags, the regressed values), plus ``extra`` outputs
    (e.g. ``skin_tone=7.3``) as (1, 1) arrays."""
    out = {"hair_colour": np.full((1, 5), 0.2, np.float32), "glasses": np.array([[0.9, 0.05, 0.05]], np.float32),
           "binary": np.full((1, 5), 0.1, np.float32), "regress": np.array([[30, 0.5, 0.5, 0.2, 0.3]], np.float32)}
    out.update({k: np.array([[v]], np.float32) for k, v in extra.items()})
    return out


def attributes_models_copy(tmp_path: Path) -> Path:
    """``tmp_path / "models"``: a copy of the shipped attribute model H and a
    manifest listing it alone (for the export tools that rewrite it)."""
    import json
    import shutil

    from avatarizer_export import attributes as A

    folder = tmp_path / "models"
    folder.mkdir()
    shutil.copy(A.MODELS / A.SHIP_FILE, folder / A.SHIP_FILE)
    man = json.loads((A.MODELS / "manifest.json").read_text())
    man["models"] = {k: v for k, v in man["models"].items() if v.get("role") == "attributes"}
    (folder / "manifest.json").write_text(json.dumps(man))
    return folder


def shipped_h_without(folder: Path, output: str) -> list[str]:
    """Copies the shipped attribute model and its manifest entry into
    ``folder`` with its ``output`` head removed (a head tool must add it to a
    file without one); returns the names of the copy's outputs."""
    import json
    import shutil

    import onnx

    from avatarizer_export import attributes as A

    models = Path(__file__).resolve().parents[1] / "sdk" / "avatarizer" / "models"
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copy(models / A.SHIP_FILE, folder / A.SHIP_FILE)
    man = json.loads((models / "manifest.json").read_text())
    man["models"] = {k: v for k, v in man["models"].items() if v.get("role") == "attributes"}
    (folder / "manifest.json").write_text(json.dumps(man))
    m = onnx.load(str(folder / A.SHIP_FILE))
    A.strip_head(m, output)
    onnx.save(m, str(folder / A.SHIP_FILE))
    return [o.name for o in m.graph.output]


def fit_head_twice(tool, folder: Path, tmp_path: Path, others: list[str], x: np.ndarray, output: str,
                   report_stem: str | None = None):
    """Runs a head tool's ``fit`` twice on the copy in ``folder`` (a refit
    replaces the head) and checks what every head tool promises: the output
    appended once, every other output byte-identical on the images ``x``,
    a new version each time, manifest and report in step. Returns (the first
    report, the second, the new output's values on ``x``, the description)."""
    import json

    import onnxruntime as ort

    from avatarizer.runtime import sha256_file
    from avatarizer_export import attributes as A
    from avatarizer_export import formats

    old = ort.InferenceSession(str(folder / A.SHIP_FILE), providers=["CPUExecutionProvider"]).run(others, {"image": x})
    rep = tool.fit(cache=tmp_path, folder=folder, log=lambda *_: None)
    again = tool.fit(cache=tmp_path, folder=folder, log=lambda *_: None)
    sess = ort.InferenceSession(str(folder / A.SHIP_FILE), providers=["CPUExecutionProvider"])
    assert [o.name for o in sess.get_outputs()] == others + [output]
    new = sess.run(None, {"image": x})
    for a, b, name in zip(old, new, others):
        np.testing.assert_array_equal(a, b, err_msg=name)
    desc = json.loads(sess.get_modelmeta().custom_metadata_map[formats.METADATA_KEY])
    assert desc["version"] == again["version"] and rep["version"] != again["version"]
    assert [o["name"] for o in desc["outputs"]].count(output) == 1
    entry = json.loads((folder / "manifest.json").read_text())["models"][desc["name"]]
    assert entry["sha256"] == sha256_file(folder / A.SHIP_FILE) and entry["version"] == desc["version"]
    assert (A.RUN / f"{report_stem or output}_{desc['version']}.json").exists()
    return rep, again, new[-1][:, 0], desc


def damaged_region_files(spec, folder, damage: str, outputs: list, other: str) -> None:
    """Copies the shipped files of the region network ``spec`` into
    ``folder``, damaged as ``damage`` says: ``"not json"`` (its JSON
    unreadable), ``"checksum"`` (a byte added to its ONNX file),
    ``"format"`` (another format), ``"outputs"`` (the JSON naming
    ``outputs``), ``"graph"`` (the ONNX file ``other`` of the data folder
    under its name, its checksum named)."""
    import hashlib
    import json
    import shutil

    from avatarizer import regionnet as RN

    shutil.copy(RN.DATA / spec.json_name, folder / spec.json_name)
    shutil.copy(RN.DATA / spec.onnx_name, folder / spec.onnx_name)
    doc = json.loads((RN.DATA / spec.json_name).read_text())
    if damage == "not json":
        (folder / spec.json_name).write_text("{")
    elif damage == "checksum":
        (folder / spec.onnx_name).write_bytes((folder / spec.onnx_name).read_bytes() + b"\0")
    elif damage == "format":
        (folder / spec.json_name).write_text(json.dumps({**doc, "format": 99}))
    elif damage == "outputs":
        (folder / spec.json_name).write_text(json.dumps({**doc, "outputs": list(outputs)}))
    elif damage == "graph":
        data = (RN.DATA / other).read_bytes()
        (folder / spec.onnx_name).write_bytes(data)
        (folder / spec.json_name).write_text(json.dumps({**doc, "sha256": hashlib.sha256(data).hexdigest()}))
    else:
        raise ValueError(damage)


@contextlib.contextmanager
def artist_detectors_at(monkeypatch, path):
    """The artist's detectors (``artist.accessories.detectors``, cached) read
    afresh from ``path`` inside the block, the cache cleared before and after;
    yields the loader."""
    from avatarizer.artist import accessories as A

    monkeypatch.setattr(A, "_DETECTORS_PATH", Path(path))
    A.detectors.cache_clear()
    try:
        yield A.detectors
    finally:
        A.detectors.cache_clear()


def refused_with_warning(load, folder, match: str) -> None:
    """A region network's loader (``avatarizer.regionnet``: cached per
    folder) given ``folder`` returns None with a RuntimeWarning matching
    ``match``, read afresh (the cache cleared before and after)."""
    from avatarizer import regionnet as RN

    RN.clear_cache()
    try:
        with pytest.warns(RuntimeWarning, match=match):
            assert load(folder) is None
    finally:
        RN.clear_cache()


def turned_head(lm3: np.ndarray, yaw_deg: float, pitch_deg: float = 0.0) -> np.ndarray:
    """(478, 3) landmarks of the same head turned in 3D about its centre
    (yaw about the vertical axis, pitch a nod; orthographic camera)."""
    a, b = np.deg2rad(yaw_deg), np.deg2rad(pitch_deg)
    ry = np.array([[np.cos(a), 0, np.sin(a)], [0, 1, 0], [-np.sin(a), 0, np.cos(a)]])
    rx = np.array([[1, 0, 0], [0, np.cos(b), -np.sin(b)], [0, np.sin(b), np.cos(b)]])
    c = lm3.mean(0)
    return (lm3 - c) @ (ry @ rx).T + c


def warm_up(av, frame, t: float = 0.0, step: float = 33.3, max_frames: int = 200) -> float:
    """Video mode: frames of ``frame`` from stream time ``t`` until the
    tracker's identity is warm (the first frame's estimate computed inline,
    the others answered by the identity worker: waited for after each frame,
    so that every frame after the first adopts a new one; or computed by the
    frame itself where ``step`` is at least ``identity_every_ms``); returns the next
    frame's time, with no job left with the worker and the rest it would
    take after the last one waived (the next frame due by stream time hands
    it a job, as the first refresh did when the warm-up ran inline)."""
    stage = av._pipeline.by_name.get("identity")
    for _ in range(max_frames):
        assert av.from_frame(frame, timestamp_ms=t) is not None
        t += step
        if stage is not None:
            assert stage.wait_idle(60), "the identity worker hung"
        if av._pipeline.stream.tracker.warm:
            if stage is not None:
                stage._rest_until = 0.0
            return t
    raise AssertionError(f"the identity was not warm after {max_frames} frames")
