"""Export formats, the metadata written into every model file, and the manifest.

One table, :data:`FORMATS`, says for each export format its file suffix,
precision, whether it needs an NVIDIA GPU, and which options it takes.
:func:`check_format` validates a request against it *before* any work starts
(Ultralytics' exporter table, without its silent downgrades: a format that
cannot be produced here is an error, never a different format).

=============  ========  =========  ====  ===========  ==========================================
format         suffix    precision  GPU   calibration  options
=============  ========  =========  ====  ===========  ==========================================
onnx-fp32      .onnx     fp32       no    no           dynamic_batch, opset
onnx-fp16      .onnx     fp16       no    no           dynamic_batch, opset, keep_io_types
onnx-int8      .onnx     int8       no    required     dynamic_batch, opset, calibration,
                                                       per_channel, activation_type,
                                                       symmetric_activations, calibrate_method
engine-fp16    .engine   fp16       yes   no           dynamic_batch, min_batch, opt_batch,
                                                       max_batch, workspace_gb
engine-int8    .engine   int8       yes   required     the engine options and calibration
=============  ========  =========  ====  ===========  ==========================================

Every exported file carries the same JSON description (:func:`make_metadata`):
in ONNX files as the ``avatarizer`` entry of ``metadata_props``; in TensorRT
engines as the ``AVZENG1`` header (:func:`avatarizer.runtime.pack_engine`).
:func:`add_to_manifest` records the file, its sha256 and size in the
``manifest.json`` beside it, which ``avatarizer.runtime.Manifest.load``
verifies before use.
"""
from __future__ import annotations

import difflib
import json
import os
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version as _dist_version
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from avatarizer.runtime import MANIFEST_NAME, METADATA_FORMAT, METADATA_KEY, PRECISIONS, ROLES

__all__ = [
    "Format", "FORMATS", "check_format", "make_metadata", "image_input", "tensor_spec",
    "face_params_output", "add_to_manifest", "model_name", "file_name", "set_onnx_metadata",
    "sha256_file", "created_by",
]


@dataclass(frozen=True)
class Option:
    """An option a format accepts: a check and a one-line description."""

    check: Callable[[Any], bool]
    description: str
    required: bool = False


def _is_bool(v: Any) -> bool:
    return isinstance(v, bool)


def _int_in(lo: int, hi: int) -> Callable[[Any], bool]:
    return lambda v: isinstance(v, int) and not isinstance(v, bool) and lo <= v <= hi


def _one_of(*choices: str) -> Callable[[Any], bool]:
    return lambda v: isinstance(v, str) and v.lower() in choices


def _calibration(v: Any) -> bool:
    if v is None:
        return False
    try:
        return len(v) > 0
    except TypeError:
        return True  # an iterator or a reader: checked when used


_COMMON_ONNX = {
    "dynamic_batch": Option(_is_bool, "True: batch axis symbolic ('batch'); False: fixed to the example's"),
    "opset": Option(_int_in(13, 23), "ONNX opset, 13..23 (QDQ per-channel needs >= 13); default 17"),
}
_COMMON_ENGINE = {
    "dynamic_batch": Option(_is_bool, "True: optimization profile min_batch..max_batch; False: fixed"),
    "min_batch": Option(_int_in(1, 1024), "smallest batch of the optimization profile (default 1)"),
    "opt_batch": Option(_int_in(1, 1024), "batch TensorRT tunes for (default 1: real-time)"),
    "max_batch": Option(_int_in(1, 1024), "largest batch of the optimization profile (default 16)"),
    "workspace_gb": Option(lambda v: isinstance(v, (int, float)) and 0 < v <= 1024,
                           "builder workspace limit in GiB (default 4)"),
}
_CALIBRATION = Option(_calibration, "calibration inputs (aligned crops, N×3×S×S float32 normalised) "
                                    "or a dict of them", required=True)


@dataclass(frozen=True)
class Format:
    """One row of the export table."""

    name: str
    suffix: str
    container: str          # "onnx" or "engine"
    precision: str          # "fp32", "fp16", "int8"
    gpu: bool               # needs an NVIDIA GPU with CUDA to be produced
    options: Mapping[str, Option] = field(default_factory=dict)
    description: str = ""

    @property
    def needs_calibration(self) -> bool:
        return any(o.required for o in self.options.values())


FORMATS: dict[str, Format] = {
    f.name: f
    for f in (
        Format("onnx-fp32", ".onnx", "onnx", "fp32", False, dict(_COMMON_ONNX),
               "reference graph from torch.onnx.export, checked against PyTorch"),
        Format("onnx-fp16", ".onnx", "onnx", "fp16", False,
               {**_COMMON_ONNX, "keep_io_types": Option(_is_bool, "keep float32 inputs/outputs "
                                                                 "(default True)")},
               "fp32 graph converted with onnxruntime.transformers.float16, float32 I/O"),
        Format("onnx-int8", ".onnx", "onnx", "int8", False,
               {**_COMMON_ONNX, "calibration": _CALIBRATION,
                "per_channel": Option(_is_bool, "per-channel weight scales (default True)"),
                "activation_type": Option(_one_of("qint8", "quint8"),
                                          "activation type, 'qint8' (default) or 'quint8'"),
                "symmetric_activations": Option(_is_bool, "zero-point 0 activations (needed by "
                                                          "TensorRT; default False)"),
                "calibrate_method": Option(_one_of("minmax", "entropy", "percentile"),
                                           "ORT calibration method (default 'minmax')")},
               "static QDQ quantization with ONNX Runtime, behind a quality gate"),
        Format("engine-fp16", ".engine", "engine", "fp16", True, dict(_COMMON_ENGINE),
               "TensorRT engine, fp16, AVZENG1 header"),
        Format("engine-int8", ".engine", "engine", "int8", True,
               {**_COMMON_ENGINE, "calibration": _CALIBRATION},
               "TensorRT engine, int8 (entropy calibration, or a QDQ ONNX source), AVZENG1 header"),
    )
}


def check_format(name: str, **options: Any) -> Format:
    """Validates a format name and its options; returns the :class:`Format`.

    * unknown format: ``ValueError`` with "did you mean ...?";
    * an option the format does not take, or a bad value: ``ValueError``
      listing what it takes;
    * a required option missing (``calibration`` for int8): ``ValueError``;
    * an engine format on a machine without a usable NVIDIA GPU, or without
      the ``tensorrt`` package: ``RuntimeError`` with the reason.

    Options whose value is ``None`` count as not given.
    """
    if name not in FORMATS:
        close = difflib.get_close_matches(str(name), list(FORMATS), n=2, cutoff=0.4)
        hint = f"; did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
        raise ValueError(f"unknown export format {name!r}{hint} (formats: {', '.join(FORMATS)})")
    fmt = FORMATS[name]
    given = {k: v for k, v in options.items() if v is not None}
    for key, value in given.items():
        if key not in fmt.options:
            close = difflib.get_close_matches(key, list(fmt.options), n=1, cutoff=0.6)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ValueError(f"format {name!r} does not take option {key!r}{hint}; it takes: "
                             f"{', '.join(sorted(fmt.options))}")
        if not fmt.options[key].check(value):
            raise ValueError(f"format {name!r}: bad {key}={value!r}: {fmt.options[key].description}")
    missing = [k for k, o in fmt.options.items() if o.required and k not in given]
    if missing:
        raise ValueError(f"format {name!r} needs {', '.join(missing)}: "
                         + "; ".join(fmt.options[k].description for k in missing))
    if {"min_batch", "opt_batch", "max_batch"} & set(given):
        lo, opt, hi = given.get("min_batch", 1), given.get("opt_batch", 1), given.get("max_batch", 16)
        opt = max(opt, lo) if "opt_batch" not in given else opt
        if not lo <= opt <= hi:
            raise ValueError(f"format {name!r}: need min_batch <= opt_batch <= max_batch, got "
                             f"{lo} <= {opt} <= {hi}")
    if fmt.gpu:
        from avatarizer.runtime.tensorrt import require_tensorrt

        require_tensorrt("TensorRT engines need")
    return fmt


def model_name(role: str, fmt: str) -> str:
    """Conventional manifest name: ``"image_to_face-onnx-int8"``."""
    check_role(role)
    return f"{role}-{FORMATS[fmt].name if fmt in FORMATS else check_format(fmt).name}"


def file_name(role: str, fmt: str) -> str:
    """Conventional file name: ``"image_to_face-int8.onnx"``, ``"encoder-fp16.engine"``."""
    check_role(role)
    f = FORMATS.get(fmt) or check_format(fmt)
    return f"{role}-{f.precision}{f.suffix}"


def check_role(role: str | None) -> None:
    if role is not None and role not in ROLES:
        close = difflib.get_close_matches(str(role), list(ROLES), n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise ValueError(f"unknown model role {role!r}{hint} (roles: {', '.join(ROLES)})")


# --------------------------------------------------------------------------------------
# Metadata
# --------------------------------------------------------------------------------------

def _pkg_version(dist: str) -> str | None:
    try:
        return _dist_version(dist)
    except PackageNotFoundError:
        return None


def created_by() -> str:
    """``"avatarizer_export 0.1.0 (torch …, onnx …, onnxruntime …)"``."""
    from avatarizer import __version__

    parts = [f"{d} {v}" for d in ("torch", "onnx", "onnxruntime", "tensorrt")
             if (v := _pkg_version(d)) is not None]
    return f"avatarizer_export {__version__} ({', '.join(parts)})"


def tensor_spec(name: str, shape: Sequence[int | str] | None = None, dtype: str = "float32",
                **extra: Any) -> dict:
    """Description of one tensor; ``shape`` may hold ``"batch"`` for the dynamic axis
    (``None``: filled in from the exported graph)."""
    spec: dict[str, Any] = {"name": name, "dtype": dtype}
    if shape is not None:
        spec["shape"] = list(shape)
    spec.update(extra)
    return spec


def image_input(name: str = "image", size: int = 128, *, mean: Sequence[float] = (0.5, 0.5, 0.5),
                std: Sequence[float] = (0.5, 0.5, 0.5), scale: float = 1.0 / 255.0) -> dict:
    """Description of an aligned-crop input: N×3×S×S float32, RGB, ``x = (pixel*scale - mean)/std``.

    The defaults map uint8 pixels to [-1, 1]; pass the training normalisation
    (e.g. ImageNet's mean/std) when it differs.
    """
    if len(mean) != 3 or len(std) != 3 or any(s <= 0 for s in std):
        raise ValueError("mean and std need 3 values (R, G, B), std > 0")
    lo = [(0.0 * scale - m) / s for m, s in zip(mean, std)]
    hi = [(255.0 * scale - m) / s for m, s in zip(mean, std)]
    return tensor_spec(name, ["batch", 3, size, size], "float32", layout="NCHW",
                       normalisation={"colour_order": "RGB", "pixel_range": [0, 255],
                                      "scale": scale, "mean": [float(m) for m in mean],
                                      "std": [float(s) for s in std],
                                      "value_range": [[round(a, 6) for a in lo], [round(b, 6) for b in hi]],
                                      "formula": "(pixel * scale - mean) / std, per RGB channel"},
                       alignment="avatarizer.align canonical crop")


def face_params_output(name: str = "face_params") -> dict:
    """Description of the face slice of the avatar vector, normalised to [-1, 1]."""
    from avatarizer import schema

    n = schema.FACE.stop - schema.FACE.start
    return tensor_spec(name, ["batch", n], "float32", space="normalised [-1, 1]",
                       schema_slice="face", schema_range=[schema.FACE.start, schema.FACE.stop],
                       denormalise="avatarizer.schema.denormalize(values, avatarizer.schema.FACE)")


def make_metadata(*, name: str, version: str, inputs: Sequence[Mapping[str, Any]],
                  outputs: Sequence[Mapping[str, Any]], role: str | None = None,
                  precision: str = "fp32", fmt: str | None = None,
                  training_data: Mapping[str, Any] | None = None, **extra: Any) -> dict:
    """The JSON description written into every exported file and the manifest.

    ``training_data`` is a summary passed in by the trainer (data sets,
    counts, split, licence); ``extra`` keys are kept as given (they must be
    JSON-serialisable).
    """
    from avatarizer import schema

    check_role(role)
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, not {precision!r}")
    if fmt is not None:
        f = check_format(fmt) if FORMATS.get(fmt) is None else FORMATS[fmt]
        if f.precision != precision:
            raise ValueError(f"format {fmt!r} is {f.precision}, metadata says {precision}")
    for kind, specs in (("inputs", inputs), ("outputs", outputs)):
        if not specs or any("name" not in s for s in specs):
            raise ValueError(f"metadata {kind} must be a non-empty list of specs with a 'name'")
    meta = {
        "metadata_format": METADATA_FORMAT,
        "name": name,
        "role": role,
        "version": version,
        "precision": precision,
        "format": fmt or f"onnx-{precision}",
        "schema_version": schema.VERSION,
        "param_count": schema.PARAM_COUNT,
        "inputs": [dict(s) for s in inputs],
        "outputs": [dict(s) for s in outputs],
        "training_data": dict(training_data or {}),
        "created_by": created_by(),
    }
    meta.update(extra)
    json.dumps(meta)  # fail early on anything that is not JSON
    return meta


def derive_metadata(meta: Mapping[str, Any], *, fmt: str, name: str | None = None,
                    **extra: Any) -> dict:
    """Copy of ``meta`` for another format (precision, format, name, created_by updated)."""
    f = FORMATS[fmt]
    out = json.loads(json.dumps(dict(meta)))
    out.update(precision=f.precision, format=fmt, created_by=created_by())
    out["name"] = name or derived_name(meta.get("name", "model"), meta.get("role"), fmt)
    out.update(extra)
    return out


def derived_name(src_name: str, role: str | None, fmt: str) -> str:
    if role:
        return model_name(role, fmt)
    for f in FORMATS:
        if src_name.endswith("-" + f):
            return src_name[: -len(f)] + fmt
    return f"{src_name}-{fmt}"


def set_onnx_metadata(model, meta: Mapping[str, Any]) -> None:
    """Writes ``meta`` as JSON into ``model.metadata_props['avatarizer']`` (replacing it)."""
    keep = [p for p in model.metadata_props if p.key != METADATA_KEY]
    del model.metadata_props[:]
    for p in keep:
        model.metadata_props.add(key=p.key, value=p.value)
    model.metadata_props.add(key=METADATA_KEY, value=json.dumps(dict(meta), sort_keys=True))
    model.doc_string = (f"avatarizer model {meta.get('name')!r} ({meta.get('role')}, "
                        f"{meta.get('precision')}); description in metadata_props[{METADATA_KEY!r}]")


def onnx_metadata(model) -> dict:
    """The description :func:`set_onnx_metadata` wrote into ``model``
    (``ValueError`` where it has none, or not a JSON object)."""
    text = next((p.value for p in model.metadata_props if p.key == METADATA_KEY), None)
    if text is None:
        raise ValueError(f"the model has no metadata_props[{METADATA_KEY!r}]")
    desc = json.loads(text)
    if not isinstance(desc, dict):
        raise ValueError(f"metadata_props[{METADATA_KEY!r}] is not a JSON object")
    return desc


from avatarizer.runtime import sha256_file  # noqa: E402  (one checksum for export and runtime)


def manifest_relative(path: str | os.PathLike, folder: str | os.PathLike | None = None) -> str:
    """``path`` relative to the models ``folder`` whose manifest lists it
    (default: the file's own folder), as the manifest's ``file`` names it;
    ValueError where it is not inside it. The export steps ask this before
    they write anything: asked only when entering the manifest, the model
    was already moved into place, left there unlisted."""
    path = Path(path).resolve()
    folder = Path(folder).resolve() if folder is not None else path.parent
    try:
        return path.relative_to(folder).as_posix()
    except ValueError:
        raise ValueError(f"{path} is not inside the models folder {folder}") from None


def add_to_manifest(path: str | os.PathLike, meta: Mapping[str, Any], *,
                    folder: str | os.PathLike | None = None, **extra: Any) -> dict:
    """Adds (or replaces) the entry for the model file ``path`` in ``folder/manifest.json``.

    ``folder`` defaults to the file's own folder; the entry's ``file`` is
    relative to it. The entry holds the file's sha256 and size and the
    description's name, role, version, precision, format, schema version,
    inputs and outputs, plus ``extra`` (e.g. a quality-gate report). The
    manifest is written atomically. Returns the entry.
    """
    path = Path(path).resolve()
    folder = Path(folder).resolve() if folder is not None else path.parent
    rel = manifest_relative(path, folder)
    entry = {
        "file": rel,
        "sha256": sha256_file(path),
        "size": path.stat().st_size,
        "precision": meta["precision"],
        "format": meta["format"],
        "role": meta.get("role"),
        "version": meta.get("version"),
        "schema_version": meta["schema_version"],
        "inputs": meta.get("inputs", []),
        "outputs": meta.get("outputs", []),
        "created_by": meta.get("created_by"),
    }
    if meta.get("training_data"):
        entry["training_data"] = meta["training_data"]
    entry.update(extra)
    manifest_path = folder / MANIFEST_NAME
    doc: dict = {"models": {}}
    if manifest_path.exists():
        doc = json.loads(manifest_path.read_text(encoding="utf-8"))
        doc.setdefault("models", {})
    doc["models"][meta["name"]] = entry
    tmp = manifest_path.with_name(f".{MANIFEST_NAME}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(doc, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    os.replace(tmp, manifest_path)
    return entry


def remove_from_manifest(name: str, folder: str | os.PathLike) -> bool:
    """Drops the entry ``name`` from ``folder/manifest.json`` and deletes its
    file (a model left over from an earlier export that the new one did not
    replace must not ship beside it). Only a file the entry lists, inside
    ``folder``, that no other entry lists is deleted. Returns whether there
    was one."""
    folder = Path(folder).resolve()
    manifest_path = folder / MANIFEST_NAME
    if not manifest_path.exists():
        return False
    doc = json.loads(manifest_path.read_text(encoding="utf-8"))
    entry = doc.get("models", {}).pop(name, None)
    if entry is None:
        return False
    f = (folder / str(entry.get("file", ""))).resolve()
    still_listed = {(folder / str(e.get("file", ""))).resolve() for e in doc["models"].values() if isinstance(e, dict)}
    if f.is_file() and f.parent == folder and f not in still_listed:
        f.unlink()
    tmp = manifest_path.with_name(f".{MANIFEST_NAME}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(doc, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    os.replace(tmp, manifest_path)
    return True
