"""Model files: the manifest that lists them, its verification, and ONNX Runtime sessions.

The SDK's networks ship as files in ``sdk/avatarizer/models/`` beside a
``manifest.json``::

    {"models": {"image_to_face-onnx-fp32": {
        "file": "image_to_face-fp32.onnx", "sha256": "…", "size": 123456,
        "precision": "fp32", "format": "onnx-fp32", "role": "image_to_face",
        "version": "0.1.0", "schema_version": "1.0.0",
        "inputs": [{"name": "image", "shape": ["batch", 3, 128, 128], …}],
        "outputs": [{"name": "face_params", "shape": ["batch", 483], …}]}}}

File names are relative to that folder. Every model file also carries the same
description inside itself (the ``avatarizer`` entry of the ONNX
``metadata_props``, or the ``AVZENG1`` header in front of a TensorRT engine),
written by ``avatarizer_export``.

:meth:`Manifest.load` checks every listed file *before* any session is made:
it exists, has the listed size and sha256, is what its format says (an ONNX
protobuf or an ``AVZENG1`` engine), and its embedded description agrees with
the manifest on name, precision and parameter-schema version, and that schema
version is the installed :data:`avatarizer.schema.VERSION`. Anything wrong is
one :class:`~avatarizer.errors.ModelError` that names each file and what is
wrong with it.

:class:`Session` wraps one ONNX Runtime ``InferenceSession`` (the rembg
pattern): execution providers are resolved once from a ``device`` option,
visible as :attr:`Session.providers` and overridable with ``providers=``;
inputs are checked against the model before ONNX Runtime sees them.

Example::

    from avatarizer.models import Manifest

    manifest = Manifest.load()                       # verifies every file
    encoder = manifest.session("encoder", device="cpu")
    z = encoder.run({"image": encoder.preprocess(crop)})["z_s"]

This module imports only the standard library, numpy and onnxruntime (no
torch, no onnx): it is the runtime side.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

import numpy as np

from .errors import ModelError

log = logging.getLogger(__name__)

#: Folder of the shipped models (``sdk/avatarizer/models``).
DEFAULT_FOLDER = Path(__file__).resolve().with_name("models")
MANIFEST_NAME = "manifest.json"
#: Key of the JSON description in an ONNX model's ``metadata_props``.
METADATA_KEY = "avatarizer"
#: Version of the embedded description's own layout.
METADATA_FORMAT = 1
#: Magic bytes that start a TensorRT engine file written by avatarizer_export:
#: ``MAGIC``, then the JSON length as uint32 little-endian, then the JSON
#: description (UTF-8), then the serialized engine.
ENGINE_MAGIC = b"AVZENG1\0"
_ENGINE_HEADER = struct.Struct("<8sI")
_MAX_HEADER_JSON = 1 << 20
_MAX_MANIFEST = 16 << 20
PRECISIONS = ("fp32", "fp16", "int8")


@dataclass(frozen=True)
class Role:
    """A job a network does in the pipeline (the manifest's ``role`` field)."""

    name: str
    stage: str
    description: str


#: The model roles, one registry for code and CLI (``choices=sorted(ROLES)``).
#: A manifest entry names its role; the SDK never guesses a role from shapes.
ROLES: dict[str, Role] = {
    r.name: r
    for r in (
        Role("encoder", "encode", "E_s: aligned RGB crop (N×3×S×S, normalised) → z_s (N×512)"),
        Role("mapper_decoder", "map_decode",
             "F then D_t: z_s (N×512) → face parameters (N×483, normalised [-1, 1])"),
        Role("image_to_face", "encode+map_decode",
             "E_s, F and D_t fused into one graph: aligned crop → face parameters"),
        Role("attributes", "hair", "H: aligned crop → attribute logits (glasses, hair colour, …)"),
    )
}

_ORT_DTYPES = {
    "tensor(float)": np.dtype(np.float32),
    "tensor(float16)": np.dtype(np.float16),
    "tensor(double)": np.dtype(np.float64),
    "tensor(int64)": np.dtype(np.int64),
    "tensor(int32)": np.dtype(np.int32),
    "tensor(int8)": np.dtype(np.int8),
    "tensor(uint8)": np.dtype(np.uint8),
    "tensor(bool)": np.dtype(np.bool_),
}


# --------------------------------------------------------------------------------------
# Reading the description embedded in a model file (no onnx, no tensorrt needed)
# --------------------------------------------------------------------------------------

class _NotProtobuf(ValueError):
    pass


def _varint(buf: memoryview, pos: int) -> tuple[int, int]:
    value = 0
    shift = 0
    while True:
        if pos >= len(buf):
            raise _NotProtobuf("truncated varint")
        b = buf[pos]
        pos += 1
        value |= (b & 0x7F) << shift
        if not b & 0x80:
            return value, pos
        shift += 7
        if shift > 63:
            raise _NotProtobuf("varint longer than 10 bytes")


def _fields(buf: memoryview) -> Iterator[tuple[int, int, Any]]:
    """(field number, wire type, value) of one protobuf message; raises _NotProtobuf."""
    pos = 0
    end = len(buf)
    while pos < end:
        key, pos = _varint(buf, pos)
        number, wire = key >> 3, key & 7
        if number == 0:
            raise _NotProtobuf("field number 0")
        if wire == 0:
            value, pos = _varint(buf, pos)
        elif wire == 1:
            if pos + 8 > end:
                raise _NotProtobuf("truncated fixed64")
            value, pos = buf[pos:pos + 8], pos + 8
        elif wire == 2:
            length, pos = _varint(buf, pos)
            if pos + length > end:
                raise _NotProtobuf(f"field {number} runs {pos + length - end} bytes past the end")
            value, pos = buf[pos:pos + length], pos + length
        elif wire == 5:
            if pos + 4 > end:
                raise _NotProtobuf("truncated fixed32")
            value, pos = buf[pos:pos + 4], pos + 4
        else:
            raise _NotProtobuf(f"wire type {wire} (groups or garbage)")
        yield number, wire, value


def onnx_metadata_props(data: bytes | memoryview) -> dict[str, str]:
    """``metadata_props`` of a serialized ONNX ``ModelProto``, read without onnx.

    Walks only the top level of the protobuf (the graph is skipped as one
    length-delimited field), so it costs little even for large models. Raises
    ``ValueError`` when ``data`` is not an ONNX model (no ``ir_version`` or no
    ``graph``, or not a well-formed protobuf).
    """
    buf = memoryview(data)
    props: dict[str, str] = {}
    seen: set[int] = set()
    try:
        for number, wire, value in _fields(buf):
            # ModelProto: 1 ir_version (varint), 7 graph, 8 opset_import, 14 metadata_props.
            expected = {1: 0, 2: 2, 3: 2, 4: 2, 5: 0, 6: 2, 7: 2, 8: 2, 14: 2}.get(number)
            if expected is not None and wire != expected:
                raise _NotProtobuf(f"field {number} has wire type {wire}, ModelProto says {expected}")
            seen.add(number)
            if number == 14:
                key = val = ""
                for n2, w2, v2 in _fields(value):
                    if w2 == 2 and n2 in (1, 2):
                        text = bytes(v2).decode("utf-8")
                        if n2 == 1:
                            key = text
                        else:
                            val = text
                props[key] = val
    except (_NotProtobuf, UnicodeDecodeError) as exc:
        raise ValueError(f"not an ONNX model (not a valid protobuf: {exc})") from None
    missing = [name for num, name in ((1, "ir_version"), (7, "graph")) if num not in seen]
    if missing:
        raise ValueError(f"not an ONNX model (no {' and no '.join(missing)} field)")
    return props


def read_onnx_description(data: bytes | memoryview) -> dict:
    """The avatarizer JSON description embedded in a serialized ONNX model.

    Raises ``ValueError`` (with the reason) when the file is not ONNX or has no
    valid description.
    """
    props = onnx_metadata_props(data)
    if METADATA_KEY not in props:
        raise ValueError(f"ONNX model has no {METADATA_KEY!r} metadata_props entry "
                         f"(not exported by avatarizer_export?); keys: {sorted(props)}")
    return _parse_description(props[METADATA_KEY])


def _parse_description(text: str | bytes) -> dict:
    try:
        meta = json.loads(text)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(f"embedded description is not valid JSON: {exc}") from None
    except RecursionError:
        raise ValueError("embedded description is not usable JSON (nested too deeply)") from None
    if not isinstance(meta, dict):
        raise ValueError("embedded description is not a JSON object")
    return meta


def pack_engine(description: Mapping[str, Any], engine: bytes | memoryview) -> bytes:
    """``AVZENG1`` header (magic, uint32 LE JSON length, JSON) followed by ``engine``."""
    text = json.dumps(dict(description), sort_keys=True, separators=(",", ":")).encode("utf-8")
    if len(text) > _MAX_HEADER_JSON:
        raise ValueError(f"engine description is {len(text)} bytes; the limit is {_MAX_HEADER_JSON}")
    return _ENGINE_HEADER.pack(ENGINE_MAGIC, len(text)) + text + bytes(engine)


def read_engine_header(data: bytes | memoryview) -> tuple[dict, int]:
    """(description, offset of the serialized engine) of an ``AVZENG1`` engine file.

    Raises ``ValueError`` with the reason when the header is missing or broken
    (for example a raw TensorRT plan without our header).
    """
    buf = memoryview(data)
    if len(buf) < _ENGINE_HEADER.size:
        raise ValueError(f"too short for an engine header ({len(buf)} bytes)")
    magic, length = _ENGINE_HEADER.unpack_from(buf, 0)
    if magic != ENGINE_MAGIC:
        raise ValueError(f"no {ENGINE_MAGIC!r} header (starts with {bytes(magic)!r}); "
                         "not an engine written by avatarizer_export.tensorrt_build")
    start = _ENGINE_HEADER.size
    if length > _MAX_HEADER_JSON or start + length > len(buf):
        raise ValueError(f"engine header claims {length} bytes of JSON; the file has "
                         f"{len(buf) - start} after the magic (truncated or corrupt)")
    if start + length == len(buf):
        raise ValueError("engine header is not followed by any engine bytes (truncated)")
    return _parse_description(bytes(buf[start:start + length])), start + length


def read_description(path: str | os.PathLike, data: bytes | None = None, kind: str | None = None) -> dict:
    """The embedded description of a model file (ONNX or AVZENG1 engine), by
    its suffix (or ``kind``: ``"onnx"`` / ``"engine"``).

    Without ``data`` only the parts that hold the description are read from
    disk (the engine header; the top level of the ONNX protobuf, skipping the
    graph and the weights), so a large file costs little memory.
    """
    path = Path(path)
    kind = kind or _kind(path.name, None)
    if data is not None:
        return read_engine_header(data)[0] if kind == "engine" else read_onnx_description(data)
    with open(path, "rb") as f:
        if kind == "engine":
            head = f.read(_ENGINE_HEADER.size)
            if len(head) == _ENGINE_HEADER.size:
                magic, length = _ENGINE_HEADER.unpack_from(head, 0)
                if magic == ENGINE_MAGIC and length <= _MAX_HEADER_JSON:
                    head += f.read(length + 1)  # one engine byte: "not followed by any engine bytes"
            return read_engine_header(head)[0]
        return _parse_description(_onnx_metadata_from_file(f))


def _file_varint(f) -> int | None:
    value = shift = 0
    while True:
        b = f.read(1)
        if not b:
            if shift == 0:
                return None  # clean end of the message
            raise _NotProtobuf("truncated varint")
        value |= (b[0] & 0x7F) << shift
        if not b[0] & 0x80:
            return value
        shift += 7
        if shift > 63:
            raise _NotProtobuf("varint longer than 10 bytes")


def _onnx_metadata_from_file(f) -> str:
    """The avatarizer entry of an ONNX file's ``metadata_props``, walking the
    top-level fields with seeks (the graph is never read)."""
    size = os.fstat(f.fileno()).st_size
    props: dict[str, str] = {}
    seen: set[int] = set()
    try:
        while True:
            key = _file_varint(f)
            if key is None:
                break
            number, wire = key >> 3, key & 7
            if number == 0:
                raise _NotProtobuf("field number 0")
            expected = {1: 0, 2: 2, 3: 2, 4: 2, 5: 0, 6: 2, 7: 2, 8: 2, 14: 2}.get(number)
            if expected is not None and wire != expected:
                raise _NotProtobuf(f"field {number} has wire type {wire}, ModelProto says {expected}")
            seen.add(number)
            if wire == 0:
                if _file_varint(f) is None:
                    raise _NotProtobuf("truncated varint")
            elif wire in (1, 5):
                step = 8 if wire == 1 else 4
                if f.tell() + step > size:
                    raise _NotProtobuf("truncated fixed field")
                f.seek(step, os.SEEK_CUR)
            elif wire == 2:
                length = _file_varint(f)
                if length is None or f.tell() + length > size:
                    raise _NotProtobuf(f"field {number} runs past the end of the file")
                if number == 14:
                    if length > 4 * _MAX_HEADER_JSON:
                        raise _NotProtobuf(f"a metadata_props entry of {length} bytes")
                    k = v = ""
                    for n2, w2, v2 in _fields(memoryview(f.read(length))):
                        if w2 == 2 and n2 in (1, 2):
                            text = bytes(v2).decode("utf-8")
                            k, v = (text, v) if n2 == 1 else (k, text)
                    props[k] = v
                else:
                    f.seek(length, os.SEEK_CUR)
            else:
                raise _NotProtobuf(f"wire type {wire} (groups or garbage)")
    except (_NotProtobuf, UnicodeDecodeError) as exc:
        raise ValueError(f"not an ONNX model (not a valid protobuf: {exc})") from None
    missing = [name for num, name in ((1, "ir_version"), (7, "graph")) if num not in seen]
    if missing:
        raise ValueError(f"not an ONNX model (no {' and no '.join(missing)} field)")
    if METADATA_KEY not in props:
        raise ValueError(f"ONNX model has no {METADATA_KEY!r} metadata_props entry "
                         f"(not exported by avatarizer_export?); keys: {sorted(props)}")
    return props[METADATA_KEY]


def read_verified_bytes(path: str | os.PathLike, sha256: str) -> bytes:
    """The bytes of a model file, read once and checked against ``sha256``:
    what is handed to the runtime is exactly what was hashed (a file swapped
    or edited after :meth:`Manifest.load` is refused with :class:`ModelError`)."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ModelError(f"{path}: cannot be read: {exc.strerror or exc}") from None
    digest = hashlib.sha256(data).hexdigest()
    if digest != str(sha256).lower():
        raise ModelError(f"{path}: changed since it was verified (sha256 is now {digest}, the manifest "
                         f"says {sha256}); reload the manifest, or reinstall the model files")
    return data


def _kind(file: str, fmt: str | None) -> str:
    if fmt:
        return "engine" if fmt.startswith("engine") else "onnx"
    return "engine" if file.endswith((".engine", ".plan", ".trt")) else "onnx"


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """sha256 of a file, streamed in ``chunk``-byte blocks (constant memory)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


# --------------------------------------------------------------------------------------
# Manifest
# --------------------------------------------------------------------------------------

@dataclass(frozen=True)
class ModelEntry:
    """One verified manifest entry; ``description`` is what the file itself says."""

    name: str
    path: Path
    file: str
    sha256: str
    size: int
    precision: str
    format: str
    role: str | None
    inputs: tuple
    outputs: tuple
    description: dict = field(repr=False, default_factory=dict)
    raw: dict = field(repr=False, default_factory=dict)

    @property
    def kind(self) -> str:
        """``"onnx"`` or ``"engine"``."""
        return _kind(self.file, self.format)


class Manifest:
    """The verified ``manifest.json`` of a models folder; build it with :meth:`load`."""

    def __init__(self, folder: Path, entries: dict[str, ModelEntry]):
        self.folder = folder
        self.models = entries

    # -- loading ---------------------------------------------------------------------
    @classmethod
    def load(cls, folder: str | os.PathLike | None = None, *, verify: bool = True) -> "Manifest":
        """Reads ``folder/manifest.json`` and verifies every listed file.

        ``folder`` defaults to the package's ``models`` folder. With ``verify``
        (the default) each file's existence, size, sha256, file format and
        embedded description (name, precision, schema version) are checked;
        ``verify=False`` checks only that the files exist (for tools that
        repair a folder). Raises :class:`ModelError` naming every bad file.
        """
        from . import schema

        try:
            folder = Path(folder) if folder is not None else DEFAULT_FOLDER
            manifest_path = folder / MANIFEST_NAME
            present = manifest_path.is_file()
        except (OSError, TypeError, ValueError) as exc:  # NUL bytes, over-long names, not a path
            raise ModelError(f"{folder!r}: not a usable models folder: {exc}") from None
        if not present:
            raise ModelError(f"{manifest_path}: no model manifest (the trained models are not "
                             "installed in this folder; export them with avatarizer-export)")
        try:
            if manifest_path.stat().st_size > _MAX_MANIFEST:
                raise ModelError(f"{manifest_path}: {manifest_path.stat().st_size} bytes; a manifest is "
                                 f"at most {_MAX_MANIFEST}")
            doc = json.loads(manifest_path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ModelError(f"{manifest_path}: unreadable manifest: {exc}") from None
        except RecursionError:
            raise ModelError(f"{manifest_path}: unreadable manifest: JSON nested too deeply") from None
        models = doc.get("models") if isinstance(doc, dict) else None
        if not isinstance(models, dict):
            raise ModelError(f"{manifest_path}: a manifest is {{\"models\": {{NAME: entry}}}}; "
                             "no \"models\" object found")
        root = folder.resolve()
        entries: dict[str, ModelEntry] = {}
        problems: list[tuple[str, str]] = []
        for name, raw in models.items():
            try:
                entries[name] = _verify_entry(root, name, raw, schema.VERSION, verify)
            except _EntryProblem as exc:
                problems.append((exc.file, exc.reason))
        if problems:
            lines = "\n".join(f"  {file}: {reason}" for file, reason in problems)
            err = ModelError(f"{manifest_path}: {len(problems)} of {len(models)} model file(s) "
                             f"failed verification:\n{lines}")
            err.problems = problems  # type: ignore[attr-defined]
            raise err
        return cls(folder, entries)

    # -- lookup ----------------------------------------------------------------------
    def __getitem__(self, name: str) -> ModelEntry:
        try:
            return self.models[name]
        except KeyError:
            raise KeyError(f"no model {name!r} in {self.folder / MANIFEST_NAME}; "
                           f"listed: {sorted(self.models)}") from None

    def __contains__(self, name: object) -> bool:
        return name in self.models

    def __iter__(self) -> Iterator[str]:
        return iter(self.models)

    def __len__(self) -> int:
        return len(self.models)

    def find(self, role: str, precision: str | Sequence[str] = ("fp32", "fp16", "int8"),
             kind: str = "onnx") -> ModelEntry:
        """The entry for ``role`` in the first available of ``precision`` (a name or a
        preference list) and of ``kind`` (``"onnx"`` or ``"engine"``)."""
        if role not in ROLES:
            raise ValueError(f"unknown model role {role!r}; roles: {sorted(ROLES)}")
        wanted = [precision] if isinstance(precision, str) else list(precision)
        for p in wanted:
            for entry in self.models.values():
                if entry.role == role and entry.precision == p and entry.kind == kind:
                    return entry
        have = sorted(f"{e.name} ({e.role}, {e.precision}, {e.kind})" for e in self.models.values())
        raise ModelError(f"{self.folder / MANIFEST_NAME}: no {kind} model for role {role!r} in "
                         f"precision {'/'.join(wanted)}; listed: {have}")

    def session(self, name_or_role: str, *, precision: str | Sequence[str] = ("fp32", "fp16", "int8"),
                **options: Any) -> "Session":
        """A session for a manifest name, or for a role (the first ONNX entry of that
        role in ``precision`` order). ONNX files give an ONNX Runtime :class:`Session`
        (``options``: device, providers, intra_op_num_threads, ...); engine entries a
        :class:`avatarizer.trt_backend.TensorRTSession` (``options``: device_id,
        cuda_library), whose header must match the manifest."""
        entry = self.models.get(name_or_role) or self.find(name_or_role, precision)
        if entry.kind == "engine":
            from .trt_backend import TensorRTSession  # lazy: tensorrt only where engines are used

            return TensorRTSession(entry.path, name=entry.name, expected=entry.description,
                                   sha256=entry.sha256, **options)
        return Session.from_entry(entry, **options)


class _EntryProblem(Exception):
    def __init__(self, file: str, reason: str):
        super().__init__(f"{file}: {reason}")
        self.file, self.reason = file, reason


def _tensor_specs(file: str, raw: dict, key: str) -> tuple:
    specs = raw.get(key, ())
    if not isinstance(specs, list) and specs != ():
        raise _EntryProblem(file, f"manifest {key} must be a list of {{\"name\", \"shape\"}} objects")
    for spec in specs:
        if not isinstance(spec, dict) or not isinstance(spec.get("name"), str):
            raise _EntryProblem(file, f"manifest {key} entry {spec!r:.80} has no \"name\" string")
        shape = spec.get("shape")
        if shape is not None and (not isinstance(shape, list) or not all(
                (isinstance(d, int) and not isinstance(d, bool) and d >= 0) or isinstance(d, str) or d is None
                for d in shape)):
            raise _EntryProblem(file, f"manifest {key} {spec['name']!r} has a bad shape {shape!r:.80}")
    return tuple(specs)


def _verify_entry(root: Path, name: str, raw: Any, schema_version: str, verify: bool) -> ModelEntry:
    label = raw.get("file", f"<entry {name}>") if isinstance(raw, dict) else f"<entry {name}>"
    label = label if isinstance(label, str) else f"<entry {name}>"
    if not isinstance(raw, dict):
        raise _EntryProblem(label, "manifest entry is not a JSON object")
    missing = [k for k in ("file", "sha256", "size", "precision") if k not in raw]
    if missing:
        raise _EntryProblem(label, f"manifest entry {name!r} lacks {', '.join(missing)}")
    file = raw["file"]
    if not isinstance(file, str) or not file or "\0" in file:
        raise _EntryProblem(label, f"manifest file {file!r:.80} is not a file name")
    if not isinstance(raw["size"], int) or isinstance(raw["size"], bool) or raw["size"] < 0:
        raise _EntryProblem(file, f"manifest size {raw['size']!r:.80} is not a byte count")
    sha = raw["sha256"]
    if not isinstance(sha, str):
        raise _EntryProblem(file, f"manifest sha256 {sha!r:.80} is not a hex string")
    precision = raw["precision"]
    if not isinstance(precision, str) or precision not in PRECISIONS:
        raise _EntryProblem(file, f"manifest precision {precision!r:.80} is not one of {PRECISIONS}")
    fmt = raw.get("format")
    if fmt is not None and not isinstance(fmt, str):
        raise _EntryProblem(file, f"manifest format {fmt!r:.80} is not a string")
    role = raw.get("role")
    if role is not None and (not isinstance(role, str) or role not in ROLES):
        raise _EntryProblem(file, f"unknown role {role!r:.80}; roles: {sorted(ROLES)}")
    inputs, outputs = _tensor_specs(file, raw, "inputs"), _tensor_specs(file, raw, "outputs")
    try:
        path = (root / file).resolve()
        if root not in path.parents:
            raise _EntryProblem(file, f"path leaves the models folder {root}")
        if not path.is_file():
            what = "is not a file" if path.exists() else "missing"
            raise _EntryProblem(file, f"{what} (expected at {path})")
        size = path.stat().st_size
    except (OSError, ValueError, RuntimeError) as exc:  # over-long names, symlink loops
        raise _EntryProblem(file, f"cannot be opened: {exc}") from None
    description: dict = {}
    if verify:
        if len(sha) != 64 or any(c not in "0123456789abcdefABCDEF" for c in sha):
            raise _EntryProblem(file, f"manifest sha256 {sha!r:.80} is not 64 hex digits")
        if size != int(raw["size"]):
            what = "truncated?" if size < int(raw["size"]) else "replaced or appended to?"
            raise _EntryProblem(file, f"size is {size} bytes, the manifest says {raw['size']} ({what})")
        try:
            digest = sha256_file(path)  # streamed: constant memory for any file size
        except OSError as exc:
            raise _EntryProblem(file, f"cannot be read: {exc}") from None
        if digest != sha.lower():
            raise _EntryProblem(file, f"sha256 is {digest}, the manifest says {sha} "
                                      "(corrupt or modified file)")
        kind = _kind(file, fmt)
        try:
            description = read_description(path, kind=kind)
        except OSError as exc:
            raise _EntryProblem(file, f"cannot be read: {exc}") from None
        except ValueError as exc:
            raise _EntryProblem(file, str(exc)) from None
        checks = [("name", name), ("precision", precision),
                  ("schema_version", raw.get("schema_version", schema_version))]
        if fmt is not None:
            checks.append(("format", fmt))
        if role is not None:
            checks.append(("role", role))
        for key, want in checks:
            if description.get(key) != want:
                raise _EntryProblem(file, f"embedded metadata says {key} {description.get(key)!r:.80}, "
                                          f"the manifest says {want!r:.80}")
        if description.get("schema_version") != schema_version:
            raise _EntryProblem(file, f"exported for parameter schema "
                                      f"{description.get('schema_version')!r}; this SDK has schema "
                                      f"{schema_version!r} (re-export the model)")
    return ModelEntry(name=name, path=path, file=file, sha256=sha.lower(), size=size,
                      precision=precision, format=fmt or f"{_kind(file, None)}-{precision}",
                      role=role, inputs=inputs, outputs=outputs, description=description, raw=dict(raw))


def check_io(entry: ModelEntry, inputs: Sequence["_TensorInfo"], outputs: Sequence["_TensorInfo"]) -> None:
    """Compares the manifest's ``inputs``/``outputs`` (names, order, shapes,
    dtypes) with what the loaded model declares; :class:`ModelError` on any
    difference. A fixed dimension must match exactly; a named one (``"batch"``)
    must be dynamic in the model."""
    for key, listed, actual in (("inputs", entry.inputs, inputs), ("outputs", entry.outputs, outputs)):
        if not listed:
            continue
        want = [spec["name"] for spec in listed]
        have = [t.name for t in actual]
        if want != have:
            raise ModelError(f"{entry.path}: the manifest lists {key} {want}, the model has {have}")
        for spec, t in zip(listed, actual):
            shape = spec.get("shape")
            if shape is not None:
                ok = len(shape) == len(t.shape) and all(
                    (d == m) if isinstance(d, int) else not (isinstance(m, int) and m >= 0)
                    for d, m in zip(shape, t.shape))
                if not ok:
                    raise ModelError(f"{entry.path}: {key[:-1]} {t.name!r} has shape {list(t.shape)} in the "
                                     f"model, the manifest says {shape}")
            dtype = spec.get("dtype")
            if isinstance(dtype, str) and t.dtype is not None and np.dtype(t.dtype).name != dtype:
                raise ModelError(f"{entry.path}: {key[:-1]} {t.name!r} is {np.dtype(t.dtype).name} in the "
                                 f"model, the manifest says {dtype}")


# --------------------------------------------------------------------------------------
# Providers and sessions
# --------------------------------------------------------------------------------------

DEVICES = ("auto", "cpu", "cuda")
#: ``device="auto"`` takes the first of these that this onnxruntime build offers.
AUTO_ORDER = ("TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider")


def available_providers() -> list[str]:
    import onnxruntime as ort

    return list(ort.get_available_providers())


def resolve_providers(device: str = "auto", available: Sequence[str] | None = None) -> list[str]:
    """Execution providers for ``device``, resolved once.

    * ``"cpu"``: ``["CPUExecutionProvider"]``.
    * ``"cuda"``: CUDA, then CPU for any operator CUDA lacks; a ``RuntimeError``
      when this onnxruntime has no CUDA provider (install ``avatarizer[gpu]``).
    * ``"auto"``: TensorRT EP > CUDA EP > CPU, all that this onnxruntime offers,
      in that order. Note that the TensorRT EP compiles an engine the first
      time a session is made (seconds to minutes; cached, see
      :data:`TRT_CACHE_DIR`).
    """
    if device not in DEVICES:
        raise ValueError(f"device must be one of {DEVICES}, not {device!r}")
    available = list(available) if available is not None else available_providers()
    if device == "cpu":
        return ["CPUExecutionProvider"]
    if device == "cuda":
        if "CUDAExecutionProvider" not in available:
            raise RuntimeError(_no_cuda_message(available))
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]
    chosen = [p for p in AUTO_ORDER if p in available]
    return chosen if chosen and chosen[-1] == "CPUExecutionProvider" else chosen + ["CPUExecutionProvider"]


def _no_cuda_message(available: Sequence[str]) -> str:
    try:
        from importlib.metadata import version

        dist = next(d for d in ("onnxruntime-gpu", "onnxruntime") if _has_dist(d))
        which = f"{dist} {version(dist)}"
    except Exception:  # pragma: no cover - metadata missing
        which = "this onnxruntime"
    return (f"device='cuda' was asked for, but {which} has no CUDAExecutionProvider "
            f"(available: {list(available)}); install the GPU build with "
            "pip install 'avatarizer[gpu]' (onnxruntime-gpu) on a machine with an NVIDIA GPU, "
            "or use device='cpu'")


def _has_dist(name: str) -> bool:
    from importlib.metadata import PackageNotFoundError, version

    try:
        version(name)
        return True
    except PackageNotFoundError:
        return False


#: Where the TensorRT execution provider caches its engines (``AVATARIZER_CACHE``
#: overrides the parent folder).
TRT_CACHE_DIR = Path(os.environ.get("AVATARIZER_CACHE", Path.home() / ".cache" / "avatarizer")) / "ort-trt"


def _provider_entries(providers: Sequence[Any]) -> tuple[list[str], list[dict]]:
    names, options = [], []
    for p in providers:
        if isinstance(p, (tuple, list)):
            names.append(str(p[0]))
            options.append(dict(p[1]))
        else:
            names.append(str(p))
            options.append({})
    for i, n in enumerate(names):
        if n == "TensorrtExecutionProvider" and not options[i]:
            # ORT's TensorRT EP takes boolean options as the strings "True"/"False".
            try:
                TRT_CACHE_DIR.mkdir(parents=True, exist_ok=True)
                options[i] = {"trt_engine_cache_enable": "True", "trt_engine_cache_path": str(TRT_CACHE_DIR)}
            except OSError:
                pass  # no writable cache: the EP builds its engine at every start
    return names, options


class Session:
    """One ONNX Runtime model, ready to run.

    ``device`` is ``"auto"``, ``"cpu"`` or ``"cuda"`` (see
    :func:`resolve_providers`); ``providers`` (names, or ``(name, options)``
    pairs) overrides it. :attr:`providers` lists what ONNX Runtime actually
    uses; a ``"cuda"`` request that ONNX Runtime quietly served with the CPU
    (for example CUDA libraries missing) raises ``RuntimeError`` instead of
    running slowly without a word.

    ``intra_op_num_threads`` defaults to 1: the SDK runs one session per
    worker thread (as OpenSeeFace does) and each real-time stage is small, so
    one thread per session gives the steadiest latency and leaves cores for the
    other stages and threads. Pass 0 to let ONNX Runtime use every core (best
    for one big batch on an otherwise idle machine).
    """

    def __init__(self, path: str | os.PathLike, *, name: str | None = None, device: str = "auto",
                 providers: Sequence[Any] | None = None, intra_op_num_threads: int = 1,
                 inter_op_num_threads: int = 1, description: Mapping[str, Any] | None = None,
                 optimization: str = "all", model_bytes: bytes | None = None):
        import onnxruntime as ort

        self.path = Path(path)
        if description is None and model_bytes is not None:
            try:
                description = read_onnx_description(model_bytes)
            except ValueError:
                description = {}
        if description is None:
            try:
                description = read_description(self.path)
            except (OSError, ValueError):
                description = {}
        self.description = dict(description)
        self.name = name or self.description.get("name") or self.path.stem
        if intra_op_num_threads < 0 or inter_op_num_threads < 0:
            raise ValueError("thread counts must be >= 0 (0 lets ONNX Runtime choose)")
        self.device = device
        requested = list(providers) if providers is not None else resolve_providers(device)
        names, options = _provider_entries(requested)
        self.requested_providers = names
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = intra_op_num_threads
        opts.inter_op_num_threads = inter_op_num_threads
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        levels = {"all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
                  "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
                  "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
                  "none": ort.GraphOptimizationLevel.ORT_DISABLE_ALL}
        if optimization not in levels:
            raise ValueError(f"optimization must be one of {sorted(levels)}, not {optimization!r}")
        opts.graph_optimization_level = levels[optimization]
        self.intra_op_num_threads = intra_op_num_threads
        try:
            source = model_bytes if model_bytes is not None else str(self.path)
            self._sess = ort.InferenceSession(source, sess_options=opts, providers=names,
                                              provider_options=options)
        except Exception as exc:  # onnxruntime raises its own Fail/InvalidGraph/... types
            raise ModelError(f"{self.path}: ONNX Runtime could not load model {self.name!r}: "
                             f"{exc}") from exc
        self.providers: list[str] = list(self._sess.get_providers())
        if device == "cuda" and providers is None and "CUDAExecutionProvider" not in self.providers:
            raise RuntimeError(f"model {self.name!r}: device='cuda' was asked for, but ONNX Runtime "
                               f"fell back to {self.providers} (CUDA/cuDNN libraries missing or no "
                               "GPU visible?)")
        if device == "auto" and providers is None:
            log.info("model %s: device='auto' uses %s (order: TensorRT EP > CUDA EP > CPU)",
                     self.name, self.providers)
        self.inputs = [_TensorInfo(i.name, tuple(i.shape), _ORT_DTYPES.get(i.type), i.type)
                       for i in self._sess.get_inputs()]
        self.outputs = [_TensorInfo(o.name, tuple(o.shape), _ORT_DTYPES.get(o.type), o.type)
                        for o in self._sess.get_outputs()]
        self.input_names = [i.name for i in self.inputs]
        self.output_names = [o.name for o in self.outputs]

    @classmethod
    def from_entry(cls, entry: ModelEntry, **options: Any) -> "Session":
        """A session on exactly the bytes the manifest verified: the file is read
        once, hashed again and handed to ONNX Runtime from memory (a file
        swapped after :meth:`Manifest.load` is refused with
        :class:`ModelError`); the model's inputs and outputs must be the ones
        the manifest lists."""
        data = read_verified_bytes(entry.path, entry.sha256)
        sess = cls(entry.path, name=entry.name, description=entry.description, model_bytes=data, **options)
        check_io(entry, sess.inputs, sess.outputs)
        return sess

    @property
    def precision(self) -> str | None:
        return self.description.get("precision")

    def run(self, inputs: Mapping[str, Any]) -> dict[str, np.ndarray]:
        """Runs the model on a dict of arrays; returns a dict of output arrays.

        Every model input must be given, with the model's dtype and a shape
        that matches its fixed dimensions; otherwise ``ValueError`` names the
        model and the expected shape.
        """
        feed = check_feed(self.name, self.inputs, inputs)
        outs = self._sess.run(self.output_names, feed)
        return dict(zip(self.output_names, outs))

    __call__ = run

    def preprocess(self, images: np.ndarray, input_name: str | None = None) -> np.ndarray:
        """uint8 RGB crop(s) (H×W×3 or N×H×W×3) → the normalised N×3×H×W float32 input,
        following the ``normalisation`` in the model's embedded description."""
        spec = _input_spec(self.description, input_name or self.input_names[0])
        return normalise_images(images, spec.get("normalisation") or {})

    def __repr__(self) -> str:
        return (f"Session({self.name!r}, precision={self.precision!r}, providers={self.providers}, "
                f"inputs={[(i.name, i.shape) for i in self.inputs]})")


def _input_spec(description: Mapping[str, Any], name: str) -> dict:
    for spec in description.get("inputs", ()):
        if spec.get("name") == name:
            return spec
    raise ValueError(f"model has no described input {name!r}")


def normalise_images(images: np.ndarray, norm: Mapping[str, Any]) -> np.ndarray:
    """uint8 RGB H×W×3 / N×H×W×3 → float32 N×3×H×W with ``(x * scale - mean) / std``.

    ``norm`` is a description's ``normalisation`` (``scale``, ``mean``,
    ``std``, ``colour_order``); defaults: scale 1/255, mean 0, std 1, RGB.
    """
    images = np.asarray(images)
    if images.ndim == 3:
        images = images[None]
    if images.ndim != 4 or images.shape[-1] != 3:
        raise ValueError(f"expected H×W×3 or N×H×W×3 RGB images, got shape {images.shape}")
    x = images.astype(np.float32) * np.float32(norm.get("scale", 1.0 / 255.0))
    if norm.get("colour_order", "RGB") == "BGR":
        x = x[..., ::-1]
    mean = np.asarray(norm.get("mean", (0.0, 0.0, 0.0)), np.float32)
    std = np.asarray(norm.get("std", (1.0, 1.0, 1.0)), np.float32)
    x = (x - mean) / std
    return np.ascontiguousarray(x.transpose(0, 3, 1, 2))


@dataclass(frozen=True)
class _TensorInfo:
    name: str
    shape: tuple
    dtype: np.dtype | None
    type_name: str

    def describe(self) -> str:
        dims = ", ".join(str(d) if isinstance(d, int) and d >= 0 else (d or "?") for d in self.shape)
        kind = self.dtype.name if self.dtype is not None else self.type_name
        return f"{kind} array of shape ({dims})"


def check_feed(model: str, expected: Sequence[_TensorInfo], inputs: Mapping[str, Any]) -> dict:
    """Checks ``inputs`` against ``expected`` (names, dtypes, fixed dimensions).

    Returns the feed with C-contiguous arrays; raises ``ValueError`` naming the
    model, the input and the expected shape.
    """
    if not isinstance(inputs, Mapping):
        raise ValueError(f"model {model!r}: run() takes a dict of input arrays "
                         f"{{{', '.join(repr(e.name) for e in expected)}}}, not {type(inputs).__name__}")
    names = [e.name for e in expected]
    missing = [n for n in names if n not in inputs]
    extra = [n for n in inputs if n not in names]
    if missing or extra:
        raise ValueError(f"model {model!r} takes inputs {names}; missing {missing}, unknown {extra}")
    feed = {}
    for e in expected:
        arr = np.asarray(inputs[e.name])
        want = e.describe()
        if e.dtype is not None and arr.dtype != e.dtype:
            raise ValueError(f"model {model!r} input {e.name!r} expects a {want}; got {arr.dtype.name} "
                             f"of shape {arr.shape} (convert with .astype(np.{e.dtype.name}))")
        ok = arr.ndim == len(e.shape) and all(
            (d == s) if isinstance(d, int) and d >= 0 else s >= 1 for d, s in zip(e.shape, arr.shape))
        if not ok:
            raise ValueError(f"model {model!r} input {e.name!r} expects a {want}; got shape {arr.shape}")
        feed[e.name] = np.ascontiguousarray(arr)
    return feed
