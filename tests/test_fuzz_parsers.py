"""Bounded fuzzing of the Python parsers (issue #15), a few seconds each.

Each target starts from a valid input, mutates it (bit flips, byte
insertions and deletions, truncation, splices of hostile tokens) with a fixed
seed for a fixed time, and requires the documented outcome: the parsed value
or the documented exception type, never any other exception or a hang.
``FUZZ_SECONDS`` (environment) changes the budget per target.
"""
from __future__ import annotations

import io
import json
import os
import random
import struct
import time

import numpy as np

from conftest import ROOT

SECONDS = float(os.environ.get("FUZZ_SECONDS", "2.0"))
MODELS = ROOT / "sdk" / "avatarizer" / "models"
TOKENS = [b"[" * 5000, b"{" * 5000, b"1e400", b"-1e400", b"NaN", b"Infinity", b"\x00", b"\xff\xfe",
          b"\"\\ud800\"", b"99999999999999999999999999", b"null", b"true", b"[]", b"{}", b"\"\"",
          b"\x80" * 11, b"\xff" * 8]


def _mutate(rng: random.Random, data: bytes) -> bytes:
    buf = bytearray(data)
    for _ in range(rng.randint(1, 6)):
        op = rng.randrange(6)
        at = rng.randrange(len(buf) + 1)
        if op == 0 and buf:
            i = rng.randrange(len(buf))
            buf[i] ^= 1 << rng.randrange(8)
        elif op == 1:
            buf[at:at] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 8)))
        elif op == 2 and buf:
            del buf[at:at + rng.randint(1, 16)]
        elif op == 3:
            buf[at:at] = rng.choice(TOKENS)
        elif op == 4:
            del buf[rng.randrange(len(buf) + 1):]
        elif buf:
            i = rng.randrange(len(buf))
            buf[i] = rng.choice(b"0123456789.-+eE[]{}\":,")
    return bytes(buf)


def _fuzz(seeds: list[bytes], target, allowed: tuple[type[BaseException], ...], seed: int = 15) -> int:
    rng = random.Random(seed)
    runs = 0
    t0 = time.perf_counter()
    for s in seeds:  # the seeds themselves must parse
        target(s)
    while time.perf_counter() - t0 < SECONDS:
        data = _mutate(rng, rng.choice(seeds))
        try:
            target(data)
        except allowed:
            pass
        except BaseException as exc:  # noqa: BLE001 - any other type is the bug being looked for
            raise AssertionError(f"{type(exc).__name__}: {exc!s:.200} for input {data[:200]!r}") from exc
        runs += 1
    assert runs > 20, runs
    return runs


def test_fuzz_avatar_json():
    from avatarizer import schema
    from avatarizer.api import Avatar, FaceInfo

    tf = np.array([[100.0, 0, 256], [0, 100.0, 256]])
    face = FaceInfo((10.0, 20.0, 300.0, 400.0), 1.0, 2.0, 3.0, tf, (512, 512), 0)
    seeds = [Avatar(schema.default(), face).to_json().encode(), Avatar(schema.sample(1, 4)[0]).to_json().encode()]
    _fuzz(seeds, Avatar.from_json, (ValueError,))


def test_fuzz_manifest(tmp_path):
    from avatarizer.errors import ModelError
    from avatarizer.models import Manifest

    doc = json.loads((MODELS / "manifest.json").read_text())
    name = "image_to_face-onnx-int8"
    entry = doc["models"][name]
    (tmp_path / entry["file"]).write_bytes((MODELS / entry["file"]).read_bytes())
    seed = json.dumps({"models": {name: entry}}).encode()
    path = tmp_path / "manifest.json"

    def load(data: bytes):
        path.write_bytes(data)
        Manifest.load(tmp_path)

    _fuzz([seed], load, (ModelError,))


def test_fuzz_onnx_metadata_and_engine_header(tmp_path):
    from avatarizer.models import (_onnx_metadata_from_file, pack_engine, read_engine_header,
                                   read_onnx_description)

    model = (MODELS / "image_to_face-int8.onnx").read_bytes()
    desc = read_onnx_description(model)
    # the top-level fields without the big graph: mutations land in the interesting part
    small = _small_onnx(model)
    read_onnx_description(small)
    path = tmp_path / "m.onnx"

    def both(data: bytes):
        read_onnx_description(data)
        path.write_bytes(data)
        with open(path, "rb") as f:
            _onnx_metadata_from_file(f)

    _fuzz([small], both, (ValueError,))
    _fuzz([pack_engine(desc, b"\x00" * 64)], read_engine_header, (ValueError,))


def _small_onnx(model: bytes) -> bytes:
    """A valid ModelProto with the same top-level fields but a tiny graph."""
    from avatarizer.models import _fields

    out = bytearray()
    for number, wire, value in _fields(memoryview(model)):
        if number == 7:
            value = memoryview(b"\x0a\x00")  # a graph with one empty node
        key = number << 3 | wire
        out += _varint(key)
        if wire == 0:
            out += _varint(value)
        elif wire == 2:
            out += _varint(len(value)) + bytes(value)
        else:
            out += bytes(value)
    return bytes(out)


def _varint(v: int) -> bytes:
    out = bytearray()
    while True:
        out.append((v & 0x7F) | (0x80 if v > 0x7F else 0))
        v >>= 7
        if not v:
            return bytes(out)


def test_fuzz_image_files(tmp_path):
    """Image headers through load_image (the header size check runs before decoding)."""
    from PIL import Image

    from avatarizer.imageio import load_image

    seeds = []
    rgb = (np.random.default_rng(0).random((40, 48, 3)) * 255).astype(np.uint8)
    for fmt in ("PNG", "JPEG", "BMP", "GIF", "TIFF", "WEBP"):
        b = io.BytesIO()
        Image.fromarray(rgb).save(b, format=fmt)
        seeds.append(b.getvalue())
    # a phone photo's EXIF: orientation 6 beside a broken tag (XPosition, a RATIONAL, as text)
    ifd = struct.pack("<HHHIHH", 2, 0x0112, 3, 1, 6, 0) + struct.pack("<HHI4s", 0x011F, 2, 4, b"abc")
    b = io.BytesIO()
    Image.fromarray(rgb).save(b, format="JPEG", exif=b"Exif\x00\x00II*\x00" + struct.pack("<I", 8) + ifd + bytes(4))
    seeds.append(b.getvalue())
    # formats whose mutations Pillow answered with other types (TypeError, NotImplementedError);
    # a progressive JPEG (its scans are counted before decoding)
    exif = Image.Exif()
    exif[0x0112] = 6
    for image, fmt, options in ((Image.fromarray(rgb[..., 0].astype(np.float32) / 255), "TIFF", {"exif": exif}),
                                (Image.fromarray(rgb), "DDS", {}),
                                (Image.fromarray(rgb), "JPEG", {"progressive": True})):
        b = io.BytesIO()
        image.save(b, format=fmt, **options)
        seeds.append(b.getvalue())
    path = tmp_path / "f.img"

    def load(data: bytes):
        path.write_bytes(data)
        load_image(path)

    _fuzz(seeds, load, (ValueError,))


def test_fuzz_parameter_vectors():
    """Random objects through schema.validate / clip and the render entry points."""
    import importlib

    from avatarizer import schema

    R = importlib.import_module("avatarizer.render")
    rng = random.Random(15)
    specials = [float("nan"), float("inf"), -float("inf"), 1e40, -1e40, 10 ** 400, True, None, "1", 1j, [], {}]
    t0 = time.perf_counter()
    runs = 0
    while time.perf_counter() - t0 < SECONDS:
        p = list(schema.default().astype(float))
        for _ in range(rng.randint(0, 4)):
            p[rng.randrange(len(p))] = rng.choice(specials + [rng.uniform(-5, 5)])
        if rng.random() < 0.1:
            p = p[: rng.randrange(len(p))]
        for call in (schema.validate, schema.clip, lambda v: R.render(v, 16), lambda v: R.to_svg(v, 16)):
            try:
                call(p)
            except ValueError:
                pass
            except BaseException as exc:  # noqa: BLE001
                raise AssertionError(f"{type(exc).__name__}: {exc!s:.200}") from exc
        runs += 1
    assert runs > 10
