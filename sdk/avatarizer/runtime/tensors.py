"""Tensors in and out of a session: ONNX Runtime dtypes, the checks of a feed
against a model's inputs, of a model's inputs and outputs against its
manifest entry, and the image normalisation a description asks for."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np

from ..errors import ModelError
from .files import normalisation_problem, spec_list_problem

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


@dataclass(frozen=True)
class _TensorInfo:
    name: str
    shape: tuple
    dtype: np.dtype | None
    type_name: str

    def fits(self, shape, least: int = 0) -> bool:
        """Whether an array of ``shape`` has this tensor's rank and fixed
        dimensions, and at least ``least`` along each dynamic one (a model's
        input and output: :func:`check_feed`, ``Session.run``)."""
        return len(shape) == len(self.shape) and all(
            (d == s) if isinstance(d, int) and d >= 0 else s >= least for d, s in zip(self.shape, shape))

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
        # (e.describe() only for the messages: not formatted on every call)
        if e.dtype is not None and arr.dtype != e.dtype:
            raise ValueError(f"model {model!r} input {e.name!r} expects a {e.describe()}; got {arr.dtype.name} "
                             f"of shape {arr.shape} (convert with .astype(np.{e.dtype.name}))")
        if not e.fits(arr.shape, least=1):
            raise ValueError(f"model {model!r} input {e.name!r} expects a {e.describe()}; got shape {arr.shape}")
        feed[e.name] = np.ascontiguousarray(arr)
    return feed


def check_io(entry, inputs: Sequence["_TensorInfo"], outputs: Sequence["_TensorInfo"]) -> None:
    """Compares the manifest's ``inputs``/``outputs`` (names, order, shapes,
    dtypes) with what the loaded model declares; :class:`ModelError` on any
    difference, and when the manifest lists none. A fixed dimension must
    match exactly; a named one (``"batch"``) must be dynamic in the model."""
    for key, listed, actual in (("inputs", entry.inputs, inputs), ("outputs", entry.outputs, outputs)):
        if not listed:
            raise ModelError(f"{entry.path}: the manifest lists no {key} for model {entry.name!r}; "
                             f"the model has {[t.name for t in actual]}")
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


def check_description_io(entry) -> None:
    """Compares the ``inputs``/``outputs`` of the entry's embedded description
    with the manifest's (names, order, shapes, dtypes); :class:`ModelError` on
    any difference. Run with :func:`check_io` when a session is made, so that
    manifest, embedded description and model all agree (:meth:`Manifest.load`
    already compared the normalisation)."""
    description = entry.description or {}
    for key, listed in (("inputs", entry.inputs), ("outputs", entry.outputs)):
        own = description.get(key)
        problem = spec_list_problem(key, own)
        if problem:
            raise ModelError(f"{entry.path}: {problem}")
        want, have = [spec.get("name") for spec in listed], [spec.get("name") for spec in own]
        if want != have:
            raise ModelError(f"{entry.path}: the embedded description lists {key} {have!r:.120}, the "
                             f"manifest says {want!r:.120}")
        for spec, mine in zip(listed, own):
            for field in ("shape", "dtype"):
                if spec.get(field) != mine.get(field):
                    raise ModelError(f"{entry.path}: the embedded description says {key[:-1]} {spec['name']!r} "
                                     f"{field} {mine.get(field)!r:.80}, the manifest says {spec.get(field)!r:.80}")


def _input_spec(description: Mapping[str, Any], name: str) -> dict:
    specs = description.get("inputs", ())
    problem = spec_list_problem("inputs", specs)
    if problem:
        raise ModelError(f"model {description.get('name')!r}: {problem}")
    for spec in specs:
        if isinstance(spec, Mapping) and spec.get("name") == name:
            norm = spec.get("normalisation")
            problem = normalisation_problem(norm) if norm is not None else None
            if problem:
                raise ModelError(f"model {description.get('name')!r}: embedded description field "
                                 f"inputs[{name!r}].normalisation: {problem}")
            return dict(spec)
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
