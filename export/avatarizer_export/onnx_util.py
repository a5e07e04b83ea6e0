"""Running and staging ONNX files on the export side: feeds from tensors,
ONNX Runtime outputs on the CPU, their differences, and the staged write
(a temporary file beside the target, moved onto it only when every check
passed). Used by :mod:`~avatarizer_export.onnx_export` and
:mod:`~avatarizer_export.quantize`, which import it and not each other; the
staged write also by every step that writes a checkpoint, a cache's
``meta.json`` or a file the SDK ships."""
from __future__ import annotations

import contextlib
import os
import zipfile
import zlib
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np


def _as_tuple(x) -> tuple:
    return tuple(x) if isinstance(x, (tuple, list)) else (x,)


def _to_numpy_feed(names: Sequence[str], inputs) -> dict[str, np.ndarray]:
    if isinstance(inputs, Mapping):
        return {k: np.ascontiguousarray(_np(v)) for k, v in inputs.items()}
    vals = _as_tuple(inputs)
    if len(vals) != len(names):
        raise ValueError(f"got {len(vals)} input arrays for inputs {list(names)}")
    return {n: np.ascontiguousarray(_np(v)) for n, v in zip(names, vals)}


def feeds_as_inputs(model, feeds: Sequence[Mapping[str, np.ndarray]]) -> list[dict[str, np.ndarray]]:
    """``feeds`` with their float32 arrays cast to float16 for the inputs the
    ONNX ``model`` (a ModelProto or a path) takes as float16 (an fp16 file
    without fp32 I/O refuses float32 feeds), the rest as they are."""
    import onnx

    if not isinstance(model, onnx.ModelProto):
        model = onnx.load(str(model), load_external_data=False)
    half = {i.name for i in model.graph.input if i.type.tensor_type.elem_type == onnx.TensorProto.FLOAT16}
    return [{k: v.astype(np.float16) if k in half and v.dtype == np.float32 else v for k, v in f.items()}
            for f in feeds]


def _np(v) -> np.ndarray:
    if hasattr(v, "detach"):
        return v.detach().cpu().numpy()
    return np.asarray(v)


def max_abs_diff(a: Mapping[str, np.ndarray], b: Mapping[str, np.ndarray]) -> dict[str, float]:
    """Largest |a - b| per output name (inf on a shape mismatch, nan kept)."""
    out = {}
    for k in a:
        x, y = np.asarray(a[k], np.float64), np.asarray(b[k], np.float64)
        out[k] = float(np.max(np.abs(x - y))) if x.shape == y.shape and x.size else (
            0.0 if x.shape == y.shape else float("inf"))
    return out


def worst_abs_diffs(pairs) -> dict[str, float]:
    """:func:`max_abs_diff` over ``(a, b)`` pairs, output by output: the
    largest, NaN where any is NaN (``max(0.0, nan)`` is 0.0: a NaN output
    was recorded as no difference at all)."""
    out: dict[str, float] = {}
    for a, b in pairs:
        for k, d in max_abs_diff(a, b).items():
            prev = out.get(k)
            out[k] = d if prev is None or np.isnan(d) or d > prev else prev
    return out


def ort_outputs(path: str | os.PathLike, feeds: Sequence[Mapping[str, np.ndarray]],
                threads: int = 1) -> list[dict[str, np.ndarray]]:
    """Runs an ONNX file with ONNX Runtime on the CPU on each feed dict."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    sess = ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])
    names = [o.name for o in sess.get_outputs()]
    return [dict(zip(names, sess.run(names, dict(f)))) for f in feeds]


#: What ``np.load`` of an .npz raises for a file that is not one (a photo,
#: someone's array, an empty, truncated or corrupt file) or lacks a key read from it.
NPZ_UNREADABLE = (OSError, ValueError, KeyError, TypeError, AttributeError, EOFError, zipfile.BadZipFile,
                  zlib.error, NotImplementedError)


@contextlib.contextmanager
def staged(path: Path, tag: str, *, replace: bool = True):
    """A temporary file beside ``path``, moved onto ``path`` when the block
    succeeds and deleted when it raises, so a failed export, conversion or
    quality gate never leaves a half-written or refused model behind. With
    ``replace`` False a file (or link) that has the name by then is kept:
    FileExistsError (:func:`avatarizer.animation.link_new`)."""
    tmp = _tmp_path(path, tag)
    try:
        yield tmp
        if replace:
            os.replace(tmp, path)
        else:
            from avatarizer.animation import link_new

            link_new(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def write_json_staged(path: Path, doc) -> None:
    """``doc`` as indented JSON (and a final newline) at ``path``, written
    through :func:`staged`: never half a file."""
    import json

    with staged(Path(path), "part") as tmp:
        tmp.write_text(json.dumps(doc, indent=1) + "\n", encoding="utf-8")


def mirror_mean(run, crops: np.ndarray) -> dict:
    """``run`` (uint8 crops N x H x W x 3 -> {output: N x ...}) on ``crops``
    and on their mirror images, averaged output by output (float64): H read
    as the SDK's hair stage reads a face
    (:func:`avatarizer.pipeline.hair.mirrored_mean`; session 73)."""
    crops = np.asarray(crops)
    a, b = run(np.ascontiguousarray(crops)), run(np.ascontiguousarray(crops[:, :, ::-1]))
    return {k: (np.asarray(a[k], np.float64) + np.asarray(b[k], np.float64)) / 2 for k in a}


def model_flag(session, crops, index, name: str) -> np.ndarray:
    """The attribute model's probability of flag ``name`` (``"headwear"``,
    ``"male"``...; as the runtime decodes it, ``avatarizer.hair.decode_attributes``)
    for the crops ``index`` of an aligned cache, through ``session`` (an
    ``avatarizer.runtime.Session``: its own preprocessing, as the hair stage
    reads a face: the crop and its mirror image, averaged), 64 crops a call."""
    from avatarizer import hair as HR

    index = np.asarray(index)
    out = np.zeros(len(index))
    for j in range(0, len(index), 64):
        rows = index[j:j + 64]
        raw = mirror_mean(lambda x: session.run({session.input_names[0]: session.preprocess(x)}),
                          np.stack([np.asarray(crops[i]) for i in rows]))
        out[j:j + len(rows)] = [HR.decode_attributes(raw, r)[name] for r in range(len(rows))]
    return out


def _tmp_path(path: Path, tag: str) -> Path:
    return path.with_name(f".{path.stem}.{tag}.{os.getpid()}{path.suffix}")
