"""Model files on disk: the description embedded in an ONNX file (a small
protobuf reader: no onnx needed), the ``AVZENG1`` TensorRT engine header, and
checksums. Standard library and numpy only."""
from __future__ import annotations

import hashlib
import json
import os
import struct
from pathlib import Path
from typing import Any, Iterator, Mapping

import numpy as np

from ..checks import is_real
from ..errors import ModelError

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


# Which fields of which ONNX message hold messages that can hold tensors
# (onnx.proto): every TensorProto of a model is reached through these, also in
# subgraphs (If/Loop/Scan attributes), functions and training graphs.
_ONNX_CHILDREN = {
    "model": {7: "graph", 20: "training", 25: "function"},
    "training": {1: "graph", 2: "graph"},
    "graph": {1: "node", 5: "tensor", 15: "sparse"},
    "node": {5: "attribute"},
    "function": {7: "node", 11: "attribute"},
    "attribute": {5: "tensor", 6: "graph", 10: "tensor", 11: "graph", 22: "sparse", 23: "sparse"},
    "sparse": {1: "tensor", 2: "tensor"},
}
_TENSOR_NAME, _TENSOR_EXTERNAL_DATA, _TENSOR_DATA_LOCATION, _EXTERNAL = 8, 13, 14, 1


#: the deepest nesting of messages :func:`onnx_external_data` walks: protobuf's own parsers' default
#: recursion limit (ONNX Runtime reads no deeper model)
MAX_NESTING = 100


def onnx_external_data(data: bytes | memoryview) -> list[str]:
    """The tensors of a serialized ONNX model whose data is stored outside it
    (ONNX "external data": ``data_location = EXTERNAL`` or ``external_data``
    entries), as ``"'name' in 'location'"``; empty for a self-contained model.

    Walks every graph, subgraph (node attributes), function and training
    graph without onnx and without recursion, depth first: it holds one
    message's place per level of nesting (the walk that held every message
    it had yet to read took ~90-125 bytes of memory a byte of a crafted file of
    millions of empty nodes; a review, session 72), at most
    :data:`MAX_NESTING`. Raises ``ValueError`` when ``data`` is not a
    well-formed protobuf along the way, or nests deeper; only inside
    ``training_info`` (which inference never reads) is a part this reader
    cannot parse skipped.
    """
    found: list[str] = []
    # each level: (its kind, the rest of its fields, whether a part it cannot parse is an error)
    stack: list[tuple[str, Iterator, bool]] = [("model", _fields(memoryview(data)), True)]
    while stack:
        kind, fields, strict = stack[-1]
        children = _ONNX_CHILDREN[kind]
        try:
            for number, wire, value in fields:
                child = children.get(number)
                if child is None or wire != 2:
                    continue
                if child == "tensor":
                    try:
                        external = _external_tensor(value)
                    except _NotProtobuf:
                        if strict:
                            raise
                        continue  # (one tensor of a training message this reader cannot parse: the next)
                    if external is not None:
                        found.append(external)
                    continue
                if len(stack) >= MAX_NESTING:
                    raise ValueError(f"not an ONNX model this reader accepts: messages nested deeper than "
                                     f"{MAX_NESTING} levels")
                stack.append((child, _fields(value), strict and child != "training"))
                break  # (the child first; this message's fields go on after it)
            else:
                stack.pop()
        except _NotProtobuf as exc:
            if strict:
                raise ValueError(f"not an ONNX model (not a valid protobuf: {exc})") from None
            stack.pop()  # (the rest of a training message this reader cannot parse)
    return found


def _external_tensor(buf: memoryview) -> str | None:
    """``"'name' in 'location'"`` for a TensorProto whose data is stored outside the model, else None."""
    name, location, external = "?", "?", False
    for number, wire, value in _fields(buf):
        if number == _TENSOR_NAME and wire == 2:
            name = bytes(value).decode("utf-8", "replace")
        elif number == _TENSOR_EXTERNAL_DATA and wire == 2:
            external = True
            key = val = ""
            for n2, w2, v2 in _fields(value):
                if w2 == 2 and n2 in (1, 2):
                    text = bytes(v2).decode("utf-8", "replace")
                    key, val = (text, val) if n2 == 1 else (key, text)
            if key == "location":
                location = val
        elif number == _TENSOR_DATA_LOCATION and wire == 0 and value == _EXTERNAL:
            external = True
    return f"{name!r} in {location!r}" if external else None


def external_data_refusal(external: list[str]) -> str:
    """Why a model with external data (see :func:`onnx_external_data`) is refused."""
    more = f" and {len(external) - 3} more" if len(external) > 3 else ""
    return (f"stores weights outside the file (ONNX external data: tensor {', '.join(external[:3])}{more}); "
            "refused: a session is made only from the bytes the manifest verified, and ONNX Runtime "
            "would read those side files unverified (from the current directory). Re-export with the "
            "weights inside the .onnx file")


def onnx_external_data_file(path: str | os.PathLike) -> list[str]:
    """:func:`onnx_external_data` of a file, memory-mapped (not read into memory)."""
    import mmap

    with open(path, "rb") as f:
        if os.fstat(f.fileno()).st_size == 0:
            return onnx_external_data(b"")
        mm = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
    try:
        return onnx_external_data(mm)
    finally:
        try:
            mm.close()
        except BufferError:  # a view still alive somewhere: the garbage collector closes it
            pass


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


def _real(v: Any) -> bool:
    """A finite real number that float32 holds (bools and huge integers are not)."""
    return is_real(v) and abs(v) < 1e30


def spec_list_problem(key: str, value: Any) -> str | None:
    """What is wrong with a description's ``inputs`` / ``outputs`` (``key``)
    ``value``, or None when it is a list of ``{"name": str, ...}`` objects."""
    if isinstance(value, (list, tuple)) and all(isinstance(s, dict) and isinstance(s.get("name"), str)
                                                for s in value):
        return None
    return f"embedded description field {key} is {value!r:.80}, not a list of {{\"name\", \"shape\", ...}} objects"


def normalisation_problem(norm: Any) -> str | None:
    """What is wrong with a description's ``normalisation`` (see
    :func:`normalise_images`), or None when it is usable: ``scale`` a positive
    real number, ``mean``/``std`` a real number or three (``std`` non-zero),
    ``colour_order`` ``"RGB"`` or ``"BGR"``."""
    if not isinstance(norm, Mapping):
        return f"{norm!r:.80} is not an object"
    if "scale" in norm and not (_real(norm["scale"]) and norm["scale"] > 0):
        return f"scale {norm['scale']!r:.80} is not a positive number"
    for key in ("mean", "std"):
        if key not in norm:
            continue
        v = norm[key]
        values = v if isinstance(v, list) else [v]
        if not (len(values) == (3 if isinstance(v, list) else 1) and all(_real(x) for x in values)):
            return f"{key} {v!r:.80} is not a number or a list of 3 numbers"
        if key == "std" and any(x == 0 for x in values):
            return f"std {v!r:.80} has a zero"
    if norm.get("colour_order", "RGB") not in ("RGB", "BGR"):
        return f"colour_order {norm.get('colour_order')!r:.80} is not 'RGB' or 'BGR'"
    # what the network is given (tensors.normalise_images, in float32) for pixels 0 and 255: finite,
    # within NORMALISED_LIMIT and apart (a std that is 0 or subnormal in float32, or a scale that
    # makes every pixel alike, passed the checks above and fed the network infinities or a constant)
    with np.errstate(all="ignore"):
        scale = np.float32(norm.get("scale", 1.0 / 255.0))
        mean = np.asarray(norm.get("mean", 0.0), np.float32)
        std = np.asarray(norm.get("std", 1.0), np.float32)
        ends = (np.array([0.0, 255.0], np.float32)[:, None] * scale - mean) / std
    if not (np.isfinite(ends).all() and np.abs(ends).max() <= NORMALISED_LIMIT
            and np.abs(ends[1] - ends[0]).min() >= 1.0 / NORMALISED_LIMIT):
        return (f"scale {norm.get('scale')!r:.40}, mean {norm.get('mean')!r:.60} and std {norm.get('std')!r:.60} "
                f"map pixel values 0 and 255 to {ends.tolist()!r:.120} (not finite, beyond {NORMALISED_LIMIT:g} "
                "or alike)")
    return None


#: :func:`normalisation_problem`: the 8-bit range must map to numbers within this far from 0, at least
#: its inverse apart (a network's input of a million, or every pixel alike, is no usable normalisation)
NORMALISED_LIMIT = 1e6


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


#: the most top-level fields an ONNX file's walk reads (a model has a few dozen: its version, opsets,
#: producer, graph, metadata and functions; a crafted file of 10 MB of one-byte fields took 5.4 s, its
#: varints read byte by byte)
MAX_TOP_FIELDS = 10_000


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
        for _ in range(MAX_TOP_FIELDS + 1):
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
        else:
            raise _NotProtobuf(f"more than {MAX_TOP_FIELDS} top-level fields")
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
