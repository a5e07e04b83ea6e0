"""The runtime's model files and sessions, one module each (the rembg ``sessions/`` shape):

* :mod:`~avatarizer.runtime.files` -- the description embedded in a model file
  (a protobuf reader for ONNX ``metadata_props``, the ``AVZENG1`` engine
  header) and checksums;
* :mod:`~avatarizer.runtime.manifest` -- ``manifest.json``, the model roles and
  :class:`Manifest` (verification);
* :mod:`~avatarizer.runtime.tensors` -- feed and input/output checks, image normalisation;
* :mod:`~avatarizer.runtime.onnx` -- execution providers and ONNX Runtime :class:`Session`;
* :mod:`~avatarizer.runtime.tensorrt` -- :class:`TensorRTSession` for prebuilt engines.

They import in that order and never the other way (no import circles);
``avatarizer.models`` and ``avatarizer.trt_backend`` re-export their names
for code written against the earlier layout.

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
protobuf or an ``AVZENG1`` engine, with no weights in side files), and its
embedded description agrees with the manifest on name, precision, format,
role, parameter-schema version and the normalisation of each input (a
usable one: numbers), and that schema version is the installed
:data:`avatarizer.schema.VERSION`. Anything wrong is
one :class:`~avatarizer.errors.ModelError` that names each file and what is
wrong with it.

A session made from a manifest entry (ONNX or engine) also checks that the
model's inputs and outputs, and those of its embedded description, are the
ones the manifest lists (names, order, shapes, dtypes).

:class:`Session` wraps one ONNX Runtime ``InferenceSession`` (the rembg
pattern): execution providers are resolved once from a ``device`` option,
visible as :attr:`Session.providers` and overridable with ``providers=``;
inputs are checked against the model before ONNX Runtime sees them.

Example::

    from avatarizer.runtime import Manifest

    manifest = Manifest.load()                       # verifies every file
    encoder = manifest.session("encoder", device="cpu")
    z = encoder.run({"image": encoder.preprocess(crop)})["z_s"]

This module imports only the standard library, numpy and onnxruntime (no
torch, no onnx): it is the runtime side.
"""
from __future__ import annotations

from .files import (ENGINE_MAGIC, METADATA_FORMAT, METADATA_KEY, onnx_external_data, onnx_metadata_props, pack_engine,
                    read_description, read_engine_header, read_onnx_description, read_verified_bytes,
                    sha256_file)
from .gate import compare_outputs
from .manifest import DEFAULT_FOLDER, MANIFEST_NAME, PRECISIONS, ROLES, Manifest, ModelEntry, Role
from .onnx import (AUTO_ORDER, DEVICES, TRT_CACHE_DIR, Session, available_providers, preload_gpu_libraries,
                   resolve_providers)
from .tensors import check_feed, check_io, normalise_images

_TENSORRT = ("TensorRTSession", "cuda_status", "gpu_info", "tensorrt_status", "tensorrt_ep_status",
             "cuda_buffer_library")


def __getattr__(name: str):
    """The TensorRT names load on first use (:mod:`avatarizer.runtime.tensorrt`)."""
    if name in _TENSORRT:
        from . import tensorrt

        return getattr(tensorrt, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["AUTO_ORDER", "DEFAULT_FOLDER", "DEVICES", "ENGINE_MAGIC", "MANIFEST_NAME", "METADATA_FORMAT",
           "METADATA_KEY", "PRECISIONS", "ROLES", "TRT_CACHE_DIR", "Manifest", "ModelEntry", "Role", "Session",
           "available_providers", "check_feed", "check_io", "compare_outputs", "normalise_images", "onnx_external_data", "onnx_metadata_props",
           "pack_engine", "preload_gpu_libraries", "read_description", "read_engine_header", "read_onnx_description",
           "read_verified_bytes", "resolve_providers", "sha256_file", *_TENSORRT]
