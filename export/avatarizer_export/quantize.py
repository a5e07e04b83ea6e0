"""int8 static quantization with ONNX Runtime, behind a quality gate.

Recipe (ONNX Runtime's own): ``quant_pre_process`` (shape inference and
graph optimisation) on the fp32 file, then ``quantize_static`` with
``QuantFormat.QDQ``, per-channel weights, ``weight_type=QInt8`` and
``activation_type=QInt8``, calibrated by :class:`ArrayCalibrationReader` over
real aligned crops.

Why signed int8 activations (S8S8) rather than QUInt8 (U8S8):

* it is ONNX Runtime's recommended first choice for the QDQ format; U8S8 on
  x86 CPUs without VNNI goes through ``VPMADDUBSW``, whose 16-bit
  intermediate sums can saturate and cost accuracy;
* it is the only activation type TensorRT accepts for Q/DQ graphs (signed,
  zero point 0 with ``symmetric_activations=True``), so the same recipe makes
  the source of an explicit-quantization int8 engine (TensorRT 11 has no
  calibrators any more);
* U8 stays available (``activation_type="quint8"``) for the gate to compare
  when a model's activations are strongly one-sided.

Post-training quantization can collapse a model without any error, so no
int8 file is written unless it passes :func:`gate`: the fp32 and candidate
models run on the same evaluation inputs and every metric function
``metric(fp32_out, candidate_out) -> float`` must be at most its threshold
(the real gate, :mod:`avatarizer_export.ship`: ``param_l1`` drift <= 0.01 and
render-LPIPS drift <= 0.005).
:func:`quantize_gated` deletes the candidate and raises
:class:`QualityGateError`, with the numbers, when any metric is over.
"""
from __future__ import annotations

import logging
import math
import os
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

import numpy as np

from . import formats
from .onnx_util import _tmp_path, _to_numpy_feed, feeds_as_inputs, ort_outputs, staged

log = logging.getLogger(__name__)

__all__ = ["QualityGateError", "ArrayCalibrationReader", "quantize_int8", "gate", "quantize_gated",
           "param_l1", "max_abs"]


class QualityGateError(RuntimeError):
    """A reduced-precision candidate was refused; ``report`` holds every metric and threshold."""

    def __init__(self, report: Mapping[str, Any], what: str = "int8 candidate"):
        self.report = dict(report)
        over = [f"{k} = {self.report['metrics'][k]:.6g} > {self.report['thresholds'][k]:g}"
                for k in self.report.get("failed", [])]
        passed = [f"{k} = {v:.6g} <= {self.report['thresholds'][k]:g}"
                  for k, v in self.report.get("metrics", {}).items() if k not in self.report.get("failed", [])]
        msg = f"{what} refused by the quality gate: {'; '.join(over)}"
        if passed:
            msg += f" (passed: {'; '.join(passed)})"
        n, rows = self.report.get("inputs", 0), self.report.get("samples")
        msg += f"; nothing written [{n} evaluation inputs" + (f", {rows} samples]" if rows is not None else "]")
        super().__init__(msg)


def _onnxruntime_calibration_base():
    from onnxruntime.quantization import CalibrationDataReader

    return CalibrationDataReader


class ArrayCalibrationReader(_onnxruntime_calibration_base()):
    """ONNX Runtime calibration reader over in-memory arrays.

    ``data``: one array N×… for a single-input model (``input_name`` names
    it), or a dict ``{input name: N×… array}``. ``get_next()`` returns the
    next ``{name: batch}`` feed of up to ``batch_size`` rows, then ``None``;
    :meth:`rewind` starts again (ORT may read the data more than once).
    """

    def __init__(self, data: np.ndarray | Mapping[str, np.ndarray], input_name: str | None = None,
                 batch_size: int = 8):
        if isinstance(data, Mapping):
            self.arrays = {k: np.ascontiguousarray(np.asarray(v, np.float32)) for k, v in data.items()}
        else:
            if input_name is None:
                raise ValueError("input_name is needed when calibration data is a single array")
            self.arrays = {input_name: np.ascontiguousarray(np.asarray(data, np.float32))}
        counts = {k: len(v) for k, v in self.arrays.items()}
        if len(set(counts.values())) != 1 or not next(iter(counts.values())):
            raise ValueError(f"calibration arrays need the same, non-zero number of rows; got {counts}")
        if batch_size < 1:
            raise ValueError("batch_size must be >= 1")
        self.count = next(iter(counts.values()))
        self.batch_size = batch_size
        self._pos = 0

    def get_next(self) -> dict[str, np.ndarray] | None:
        if self._pos >= self.count:
            return None
        sl = slice(self._pos, self._pos + self.batch_size)
        self._pos += self.batch_size
        return {k: v[sl] for k, v in self.arrays.items()}

    def rewind(self) -> None:
        self._pos = 0

    def __len__(self) -> int:
        return math.ceil(self.count / self.batch_size)


# -- metrics a gate can use ------------------------------------------------------------

def _single(x):
    if isinstance(x, Mapping):
        if len(x) != 1:
            raise ValueError(f"metric needs a single-output model, got outputs {list(x)}")
        return next(iter(x.values()))
    return x


def param_l1(fp32_out, cand_out) -> float:
    """Mean |candidate - fp32| (e.g. over the normalised face parameters)."""
    a, b = np.asarray(_single(fp32_out), np.float64), np.asarray(_single(cand_out), np.float64)
    return float(np.mean(np.abs(a - b)))


def max_abs(fp32_out, cand_out) -> float:
    """Largest |candidate - fp32|."""
    a, b = np.asarray(_single(fp32_out), np.float64), np.asarray(_single(cand_out), np.float64)
    return float(np.max(np.abs(a - b)))


# -- quantization -----------------------------------------------------------------------

def quantize_int8(fp32_path: str | os.PathLike, out_path: str | os.PathLike,
                  calibration: np.ndarray | Mapping[str, np.ndarray], *, name: str | None = None,
                  per_channel: bool = True, activation_type: str = "qint8",
                  symmetric_activations: bool = False, calibrate_method: str = "minmax",
                  batch_size: int = 8, nodes_to_exclude: Sequence[str] | None = None) -> dict:
    """Quantizes ``fp32_path`` to a QDQ int8 file at ``out_path`` (no gate, no manifest).

    Prefer :func:`quantize_gated`; this is its first half. Returns the new
    file's metadata.
    """
    import onnx
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    from avatarizer.runtime import read_onnx_description

    formats.check_format("onnx-int8", calibration=calibration, per_channel=per_channel,
                         activation_type=activation_type, symmetric_activations=symmetric_activations,
                         calibrate_method=calibrate_method)
    fp32_path, out_path = Path(fp32_path), Path(out_path)
    src_meta = read_onnx_description(fp32_path.read_bytes())
    if src_meta.get("precision") != "fp32":
        raise ValueError(f"{fp32_path}: int8 quantization needs an fp32 source, this is "
                         f"{src_meta.get('precision')}")
    src_model = onnx.load(str(fp32_path), load_external_data=False)
    input_names = [i.name for i in src_model.graph.input]
    if not isinstance(calibration, Mapping) and len(input_names) != 1:
        raise ValueError(f"model has inputs {input_names}; pass calibration as a dict")
    reader = ArrayCalibrationReader(calibration, input_names[0] if len(input_names) == 1 else None,
                                    batch_size=batch_size)
    act = {"qint8": QuantType.QInt8, "quint8": QuantType.QUInt8}[activation_type.lower()]
    method = {"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy,
              "percentile": CalibrationMethod.Percentile}[calibrate_method.lower()]
    pre = _tmp_path(out_path, "pre")
    out_path.parent.mkdir(parents=True, exist_ok=True)
    try:
        quant_pre_process(str(fp32_path), str(pre), skip_optimization=False)
        quantize_static(str(pre), str(out_path), reader, quant_format=QuantFormat.QDQ,
                        per_channel=per_channel, activation_type=act, weight_type=QuantType.QInt8,
                        calibrate_method=method, nodes_to_exclude=list(nodes_to_exclude or []),
                        extra_options={"ActivationSymmetric": bool(symmetric_activations),
                                       "WeightSymmetric": True})
    finally:
        if pre.exists():
            pre.unlink()
    quant = {"tool": "onnxruntime.quantization.quantize_static", "quant_format": "QDQ",
             "activation_type": "QInt8" if act == QuantType.QInt8 else "QUInt8",
             "weight_type": "QInt8", "per_channel": per_channel,
             "symmetric_activations": bool(symmetric_activations),
             "calibrate_method": calibrate_method.lower(), "calibration_inputs": reader.count}
    meta = formats.derive_metadata(src_meta, fmt="onnx-int8", name=name, quantization=quant)
    model = onnx.load(str(out_path))
    formats.set_onnx_metadata(model, meta)
    onnx.checker.check_model(model, full_check=True)
    onnx.save(model, str(out_path))
    return meta


def _run_all(path, feeds) -> list[dict[str, np.ndarray]]:
    return ort_outputs(path, feeds)


def _stack(outs: list[dict[str, np.ndarray]]):
    names = list(outs[0])
    stacked = {k: np.concatenate([o[k] for o in outs], axis=0) for k in names}
    return stacked[names[0]] if len(names) == 1 else stacked


def gate(fp32_path: str | os.PathLike, candidate_path: str | os.PathLike, eval_inputs: Iterable[Any],
         metric_fns: Mapping[str, Callable[[Any, Any], float]],
         thresholds: Mapping[str, float]) -> dict:
    """Compares a candidate with its fp32 reference on ``eval_inputs``.

    ``eval_inputs``: arrays/tensors (single-input models), tuples, or feed
    dicts. Each metric function gets ``(fp32_out, candidate_out)``: the
    outputs over all evaluation inputs concatenated along the batch axis, an
    array for a single-output model, else a dict name → array. Returns
    ``{"metrics", "thresholds", "failed", "passed", "inputs", "fp32",
    "candidate", "max_abs_diff"}``; a NaN metric fails. Every threshold needs
    a metric and vice versa.
    """
    import onnx

    if set(metric_fns) != set(thresholds):
        raise ValueError(f"metrics {sorted(metric_fns)} and thresholds {sorted(thresholds)} must name "
                         "the same keys")
    if not metric_fns:
        raise ValueError("a quality gate needs at least one metric")
    names = [i.name for i in onnx.load(str(fp32_path), load_external_data=False).graph.input]
    feeds = [_to_numpy_feed(names, x) for x in eval_inputs]
    if not feeds:
        raise ValueError("a quality gate needs evaluation inputs")
    # the candidate's inputs in its own types: an fp16 file without fp32 I/O (keep_io_types=False) refused
    # the float32 feeds (ONNX Runtime's InvalidArgument, from every gated convert_fp16 of that kind)
    ref = _stack(_run_all(fp32_path, feeds))
    cand = _stack(_run_all(candidate_path, feeds_as_inputs(candidate_path, feeds)))
    metrics = {k: float(fn(ref, cand)) for k, fn in metric_fns.items()}
    failed = [k for k, v in metrics.items() if not v <= float(thresholds[k])]
    refs = ref if isinstance(ref, Mapping) else {"out": ref}
    cands = cand if isinstance(cand, Mapping) else {"out": cand}
    worst = max(float(np.max(np.abs(np.asarray(refs[k], np.float64) - np.asarray(cands[k], np.float64))))
                for k in refs)
    # file names, not paths: reports end up in committed manifests
    # ("inputs": the feeds, batches of rows; "samples": their rows, the crops the card counts)
    samples = sum(int(np.shape(v)[0]) if np.ndim(v) else 1 for v in (next(iter(f.values())) for f in feeds))
    report = {"fp32": Path(fp32_path).name, "candidate": Path(candidate_path).name, "inputs": len(feeds),
              "samples": samples,
              "metrics": metrics, "thresholds": {k: float(v) for k, v in thresholds.items()},
              "failed": failed, "passed": not failed, "max_abs_diff": worst}
    log.info("quality gate %s: %s", "passed" if not failed else "FAILED", metrics)
    return report


def quantize_gated(fp32_path: str | os.PathLike, out_path: str | os.PathLike,
                   calibration: np.ndarray | Mapping[str, np.ndarray], eval_inputs: Iterable[Any],
                   metric_fns: Mapping[str, Callable[[Any, Any], float]],
                   thresholds: Mapping[str, float], *, name: str | None = None, manifest: bool = True,
                   manifest_folder: str | os.PathLike | None = None, **quant_options: Any) -> dict:
    """int8-quantizes ``fp32_path`` and writes ``out_path`` only if it passes :func:`gate`.

    ``quant_options`` go to :func:`quantize_int8` (``per_channel``,
    ``activation_type``, ``symmetric_activations``, ``calibrate_method``,
    ``batch_size``, ``nodes_to_exclude``). Evaluation inputs should be held
    out from the calibration inputs. On failure the candidate is deleted and
    :class:`QualityGateError` raised with the numbers; on success the file is
    moved into place and entered in the manifest with the gate report.
    Returns the gate report (plus ``path``, ``name``, ``size``, ``sha256``).
    """
    out_path = Path(out_path)
    eval_inputs = list(eval_inputs)
    if manifest:
        formats.manifest_relative(out_path, manifest_folder)  # (before anything is written)
    with staged(out_path, "int8") as tmp:
        meta = quantize_int8(fp32_path, tmp, calibration, name=name, **quant_options)
        report = gate(fp32_path, tmp, eval_inputs, metric_fns, thresholds)
        if not report["passed"]:
            raise QualityGateError(report, what=f"int8 candidate {out_path.name}")
    report = dict(report, candidate=out_path.name)
    report.update(path=str(out_path), name=meta["name"], size=out_path.stat().st_size)
    if manifest:
        gate_record = {k: report[k] for k in ("metrics", "thresholds", "passed", "inputs", "max_abs_diff")}
        report["sha256"] = formats.add_to_manifest(out_path, meta, folder=manifest_folder,
                                                   quality_gate=gate_record)["sha256"]
    return report
