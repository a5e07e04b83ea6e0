"""TensorRT engines (fp16, int8) from the exported ONNX files.

Needs an NVIDIA GPU, the ``tensorrt`` Python package (>= 10) and a CUDA
buffer library (see :mod:`avatarizer.runtime.tensorrt`); :func:`build_engine`
checks all of that through :func:`avatarizer_export.formats.check_format`
before doing any work, and says what is missing.

How each engine is built, by source file and TensorRT version:

===========  ===============  =====================================================
format       ONNX source      network and precision
===========  ===============  =====================================================
engine-fp16  onnx-fp32        TensorRT 10: weakly typed + ``BuilderFlag.FP16``
engine-fp16  onnx-fp16        strongly typed (precision from the graph); the only
                              way in TensorRT >= 11, which removed the FP16 flag
engine-int8  onnx-fp32        TensorRT 10: ``BuilderFlag.INT8`` (+ FP16 for layers
                              without int8 kernels) with an
                              ``IInt8EntropyCalibrator2`` over the calibration crops
engine-int8  onnx-int8 (QDQ)  strongly typed, explicit quantization; the source
                              must be quantized with ``symmetric_activations=True``
                              (TensorRT wants zero-point 0); the only way in >= 11
===========  ===============  =====================================================

Every network is explicit-batch (the only mode in TensorRT 10) with one
optimization profile: batch ``min_batch..max_batch`` (default 1..16, tuned
for ``opt_batch``, default 1 for real time). The engine file is the
``AVZENG1`` header (the same JSON description as the ONNX files, plus the
TensorRT version, the GPU and the profile) followed by the serialized engine;
it is entered in the ``manifest.json`` beside it. With ``check_inputs`` the
new engine runs against ONNX Runtime on the source file and the differences
go into the report (and through a quality gate when ``metric_fns`` and
``thresholds`` are given).
"""
from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from avatarizer.runtime import pack_engine, read_onnx_description

from . import formats
from .onnx_util import _to_numpy_feed, ort_outputs, staged, worst_abs_diffs

log = logging.getLogger(__name__)

__all__ = ["build_engine", "make_entropy_calibrator"]


def make_entropy_calibrator(trt, cuda, data: Mapping[str, np.ndarray], batch_size: int,
                            cache_path: str | os.PathLike | None = None):
    """An ``IInt8EntropyCalibrator2`` that feeds ``data`` (input name → N×… float32)
    to TensorRT in batches of ``batch_size``, through device buffers from
    ``cuda`` (an :func:`avatarizer.runtime.tensorrt.cuda_buffer_library`)."""

    class _EntropyCalibrator(trt.IInt8EntropyCalibrator2):
        def __init__(self):
            trt.IInt8EntropyCalibrator2.__init__(self)
            self.data = {k: np.ascontiguousarray(v, np.float32) for k, v in data.items()}
            self.count = len(next(iter(self.data.values())))
            self.batch = min(batch_size, self.count)
            self.pos = 0
            self.buffers = {k: cuda.alloc(v[: self.batch].nbytes) for k, v in self.data.items()}
            self.cache_path = Path(cache_path) if cache_path else None

        def get_batch_size(self) -> int:
            return self.batch

        def get_batch(self, names, *args) -> list[int] | None:
            if self.pos + self.batch > self.count:  # TensorRT wants full batches
                return None
            sl = slice(self.pos, self.pos + self.batch)
            self.pos += self.batch
            for k in names:
                cuda.htod(self.buffers[k], np.ascontiguousarray(self.data[k][sl]))
            cuda.sync()
            return [cuda.ptr(self.buffers[k]) for k in names]

        def read_calibration_cache(self):
            if self.cache_path is not None and self.cache_path.is_file():
                return self.cache_path.read_bytes()
            return None

        def write_calibration_cache(self, cache) -> None:
            if self.cache_path is not None:
                self.cache_path.write_bytes(bytes(cache))

        def free(self) -> None:
            for b in self.buffers.values():
                cuda.free(b)
            self.buffers = {}

    return _EntropyCalibrator()


def _calibration_dict(calibration, input_names: Sequence[str]) -> dict[str, np.ndarray]:
    if isinstance(calibration, Mapping):
        data = {k: np.asarray(v, np.float32) for k, v in calibration.items()}
    else:
        if len(input_names) != 1:
            raise ValueError(f"model has inputs {list(input_names)}; pass calibration as a dict")
        data = {input_names[0]: np.asarray(calibration, np.float32)}
    if sorted(data) != sorted(input_names):
        raise ValueError(f"calibration covers {sorted(data)}, the model takes {list(input_names)}")
    return data


def build_engine(onnx_path: str | os.PathLike, engine_path: str | os.PathLike,
                 fmt: str = "engine-fp16", *, name: str | None = None, calibration: Any = None,
                 dynamic_batch: bool = True, min_batch: int = 1, opt_batch: int = 1,
                 max_batch: int = 16, workspace_gb: float = 4,
                 calibration_cache: str | os.PathLike | None = None,
                 check_inputs: Sequence[Any] | None = None,
                 metric_fns: Mapping[str, Callable[[Any, Any], float]] | None = None,
                 thresholds: Mapping[str, float] | None = None, manifest: bool = True,
                 manifest_folder: str | os.PathLike | None = None, device_id: int = 0,
                 cuda_library: str = "auto", reference: str | os.PathLike | None = None) -> dict:
    """Builds a TensorRT engine from an avatarizer ONNX file (see the module doc).

    ``calibration``: aligned crops (N×3×S×S float32, normalised like the
    model's input) or a dict per input; required for ``engine-int8``
    (entropy calibration from an fp32 source); in every other case they are
    only the default ``check_inputs``. Returns a report dict; raises
    ``RuntimeError`` (no GPU, no TensorRT, build failure) or
    ``ValueError`` (a source/format combination that cannot work).
    ``reference``: the ONNX file the quality gate measures the engine
    against (default the source; an fp16 engine built from the fp16 file is
    gated against the fp32 one, as the fp16 file itself was: against its
    own source it could drift up to twice the limit from fp32 and pass).
    """
    row = formats.FORMATS.get(fmt)
    # fp16 engines take no calibration; crops given anyway serve as the default check inputs.
    cal = {"calibration": calibration} if row is None or "calibration" in row.options else {}
    formats.check_format(fmt, dynamic_batch=dynamic_batch, min_batch=min_batch, opt_batch=opt_batch,
                         max_batch=max_batch, workspace_gb=workspace_gb, **cal)
    if manifest:
        formats.manifest_relative(engine_path, manifest_folder)  # (before anything is built)
    import tensorrt as trt

    from avatarizer.runtime.tensorrt import TensorRTSession, cuda_buffer_library, gpu_info

    onnx_path, engine_path = Path(onnx_path), Path(engine_path)
    src_meta = read_onnx_description(onnx_path.read_bytes())
    src_precision = src_meta.get("precision")
    target = formats.FORMATS[fmt].precision
    trt_major = int(str(trt.__version__).split(".")[0])
    weak_flags = hasattr(trt.BuilderFlag, "FP16") and hasattr(trt.BuilderFlag, "INT8")
    if src_precision == target:
        typing = "strong"
        if target == "int8":
            q = src_meta.get("quantization", {})
            if not q.get("symmetric_activations"):
                raise ValueError(f"{onnx_path}: TensorRT needs Q/DQ activations with zero-point 0; "
                                 "re-quantize with quantize_gated(..., symmetric_activations=True)")
    elif src_precision == "fp32":
        typing = "weak"
        if not weak_flags:
            raise RuntimeError(
                f"TensorRT {trt.__version__} has no weak typing (BuilderFlag.FP16/INT8 and the int8 "
                f"calibrators were removed in TensorRT 11): build {fmt} from the "
                f"{'onnx-fp16 file (convert_fp16)' if target == 'fp16' else 'onnx-int8 file (quantize_gated with symmetric_activations=True)'}")
    else:
        raise ValueError(f"cannot build {fmt} from a {src_precision} ONNX file; use the fp32 file or "
                         f"the {target} one")

    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    flags = 0
    if typing == "strong" and trt_major < 11:
        flags = 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise RuntimeError(f"{onnx_path}: the TensorRT ONNX parser failed: {errors}")

    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_gb * (1 << 30)))
    if not dynamic_batch:
        min_batch = max_batch = opt_batch
    profile = builder.create_optimization_profile()
    input_names = []
    for i in range(network.num_inputs):
        tensor = network.get_input(i)
        shape = list(tensor.shape)
        input_names.append(tensor.name)
        if any(d < 0 for d in shape[1:]):
            raise ValueError(f"{onnx_path}: input {tensor.name!r} has dynamic dimensions besides the "
                             f"batch ({shape}); export with fixed crop size")
        if shape[0] >= 0 and (min_batch, max_batch) != (shape[0], shape[0]):
            if dynamic_batch:
                raise ValueError(f"{onnx_path}: input {tensor.name!r} has a fixed batch of {shape[0]}; "
                                 "export with dynamic_batch=True for a batch profile")
            min_batch = opt_batch = max_batch = shape[0]
        rest = shape[1:]
        profile.set_shape(tensor.name, [min_batch] + rest, [opt_batch] + rest, [max_batch] + rest)
    config.add_optimization_profile(profile)

    calibrator = cuda = None
    if typing == "weak":
        config.set_flag(trt.BuilderFlag.FP16)  # int8 too: fp16 fallback for layers without int8 kernels
        if target == "int8":
            config.set_flag(trt.BuilderFlag.INT8)
            cuda = cuda_buffer_library(device_id, cuda_library)
            calibrator = make_entropy_calibrator(trt, cuda, _calibration_dict(calibration, input_names),
                                                 batch_size=min(max_batch, 8),
                                                 cache_path=calibration_cache)
            config.int8_calibrator = calibrator
            config.set_calibration_profile(profile)
    try:
        serialized = builder.build_serialized_network(network, config)
    finally:
        if calibrator is not None:
            calibrator.free()
        if cuda is not None:
            cuda.close()
    if serialized is None:
        raise RuntimeError(f"TensorRT {trt.__version__} failed to build {fmt} from {onnx_path} "
                           "(see the TensorRT log above)")

    info = gpu_info(device_id)
    meta = formats.derive_metadata(src_meta, fmt=fmt, name=name, tensorrt={
        "version": str(trt.__version__), **info, "typing": typing,
        "profile": {"min_batch": min_batch, "opt_batch": opt_batch, "max_batch": max_batch},
        "source": src_meta.get("name"), "source_file": onnx_path.name,
        "source_sha256": formats.sha256_file(onnx_path),
        "calibration": ("IInt8EntropyCalibrator2" if calibrator is not None else
                        "Q/DQ from source" if target == "int8" else None)})
    engine_path.parent.mkdir(parents=True, exist_ok=True)
    report: dict[str, Any] = {"path": str(engine_path), "name": meta["name"], "typing": typing,
                              "tensorrt": str(trt.__version__), **info}
    extra: dict[str, Any] = {}
    with staged(engine_path, "engine") as tmp:
        tmp.write_bytes(pack_engine(meta, serialized))
        if check_inputs is None and calibration is not None:
            data = _calibration_dict(calibration, input_names)
            n = min(len(next(iter(data.values()))), max_batch)
            check_inputs = [{k: v[:n] for k, v in data.items()}]
        if check_inputs is not None:
            feeds = [_to_numpy_feed(input_names, x) for x in check_inputs]
            ref = ort_outputs(onnx_path, feeds)
            with TensorRTSession(tmp, device_id=device_id, cuda_library=cuda_library) as sess:
                got = [sess.run(f) for f in feeds]
            diffs = worst_abs_diffs(zip(ref, got))
            report["max_abs_diff_vs_onnx"] = diffs
            extra["verification"] = {"max_abs_diff_vs_onnx": diffs, "inputs": len(feeds),
                                     "reference": onnx_path.name}
            if metric_fns is not None or thresholds is not None:
                from .quantize import QualityGateError, _stack

                metric_fns, thresholds = dict(metric_fns or {}), dict(thresholds or {})
                if set(metric_fns) != set(thresholds) or not metric_fns:
                    raise ValueError("metric_fns and thresholds must name the same, non-empty keys")
                gate_ref = onnx_path if reference is None else Path(reference)
                a = _stack(ref if gate_ref == onnx_path else ort_outputs(gate_ref, feeds))
                b = _stack(got)
                metrics = {k: float(fn(a, b)) for k, fn in metric_fns.items()}
                failed = [k for k, v in metrics.items() if not v <= thresholds[k]]
                g = {"metrics": metrics, "thresholds": thresholds, "failed": failed,
                     "passed": not failed, "inputs": len(feeds), "reference": gate_ref.name}
                report["gate"] = extra["quality_gate"] = g
                if failed:
                    raise QualityGateError(g, what=f"{fmt} engine {engine_path.name}")
    report["size"] = engine_path.stat().st_size
    if manifest:
        report["sha256"] = formats.add_to_manifest(engine_path, meta, folder=manifest_folder,
                                                   **extra)["sha256"]
    log.info("built %s (%s typing, TensorRT %s) → %s", fmt, typing, trt.__version__, engine_path)
    return report
