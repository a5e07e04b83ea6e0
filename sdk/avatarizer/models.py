"""The earlier home of the model files and sessions, kept for code written
against it: every name is re-exported from :mod:`avatarizer.runtime`
(manifest, ONNX Runtime sessions, the embedded-description reader, the engine
header). New code imports from :mod:`avatarizer.runtime`."""
from __future__ import annotations

from .errors import ModelError  # noqa: F401  (was importable from here)
from .runtime.files import (ENGINE_MAGIC, METADATA_FORMAT, METADATA_KEY, _fields,  # noqa: F401
                            _onnx_metadata_from_file, _parse_description, _varint, onnx_metadata_props,
                            pack_engine, read_description, read_engine_header, read_onnx_description,
                            read_verified_bytes, sha256_file)
from .runtime.manifest import (DEFAULT_FOLDER, MANIFEST_NAME, PRECISIONS, ROLES, Manifest,  # noqa: F401
                               ModelEntry, Role)
from .runtime.onnx import (AUTO_ORDER, DEVICES, TRT_CACHE_DIR, Session, available_providers,  # noqa: F401
                           resolve_providers)
from .runtime.tensors import _TensorInfo, check_feed, check_io, normalise_images  # noqa: F401

__all__ = ["AUTO_ORDER", "DEFAULT_FOLDER", "DEVICES", "ENGINE_MAGIC", "MANIFEST_NAME", "METADATA_FORMAT",
           "METADATA_KEY", "PRECISIONS", "ROLES", "TRT_CACHE_DIR", "Manifest", "ModelEntry", "ModelError", "Role",
           "Session", "_TensorInfo", "_fields", "_onnx_metadata_from_file", "_parse_description", "_varint",
           "available_providers", "check_feed", "check_io", "normalise_images", "onnx_metadata_props",
           "pack_engine", "read_description", "read_engine_header", "read_onnx_description",
           "read_verified_bytes", "resolve_providers", "sha256_file"]
