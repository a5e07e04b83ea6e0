"""PyTorch → ONNX export (fp32), verified, and fp16 conversion.

Works with any ``torch.nn.Module`` that maps tensors to a tensor (or a tuple
of tensors): the encoder E_s, the mapper F with the decoder D_t, the attribute
regressor H, or a fused image → face-parameters graph built with :func:`fuse`.

:func:`export_onnx` writes the file only when it passes, in this order:

1. ``torch.onnx.export`` with the TorchScript exporter (``dynamo=False``: the
   torch.export-based exporter needs ``onnxscript``, which the export
   environment does not install), batch axis symbolic (``"batch"``) when
   ``dynamic_batch``;
2. the avatarizer description in ``metadata_props`` (shapes filled in or
   checked against the graph);
3. ``onnx.checker.check_model(full_check=True)``;
4. ONNX Runtime (CPU) against PyTorch on the given real inputs, plus the
   same inputs at another batch size when the batch is dynamic: the largest
   absolute difference must be at most ``atol`` (1e-4), or
   :class:`ExportError` says by how much it missed.

Then the file is moved into place and entered in the ``manifest.json`` beside
it. :func:`convert_fp16` makes the fp16 file from an fp32 one with
``onnxruntime.transformers.float16.convert_float_to_float16(keep_io_types=True)``
(it ships with onnxruntime; ``onnxconverter-common`` is not needed), float32
inputs and outputs kept, and can put it behind the same quality gate as int8.

Example::

    import torch
    from avatarizer_export import formats, onnx_export

    net = onnx_export.fuse(encoder, mapper, decoder)          # crop → face params
    meta = formats.make_metadata(
        name="image_to_face-onnx-fp32", role="image_to_face", version="1.0.0",
        inputs=[formats.image_input("image", 128)], outputs=[formats.face_params_output()],
        training_data={"faces": "ffhq128 train split", "pairs": 100000})
    onnx_export.export_onnx(net, torch.zeros(1, 3, 128, 128), "models/image_to_face-fp32.onnx",
                            "image_to_face-onnx-fp32", ["image"], ["face_params"], meta,
                            check_inputs=real_crops[:8])
"""
from __future__ import annotations

import contextlib
import logging
import os
import warnings
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from . import formats
from .onnx_util import _as_tuple, _to_numpy_feed, feeds_as_inputs, max_abs_diff, ort_outputs, staged, worst_abs_diffs

log = logging.getLogger(__name__)

__all__ = ["ExportError", "export_onnx", "fuse", "convert_fp16", "ort_outputs", "max_abs_diff"]


class ExportError(RuntimeError):
    """An exported file failed a check; ``report`` holds the numbers."""

    def __init__(self, message: str, report: Mapping[str, Any] | None = None):
        super().__init__(message)
        self.report = dict(report or {})


def fuse(*modules):
    """``torch.nn.Sequential(*modules)`` in eval mode: e.g. ``fuse(E_s, F, D_t)`` is one
    image → face-parameters graph, exported and shipped as role ``image_to_face``."""
    import torch

    if not modules:
        raise ValueError("fuse() needs at least one module")
    return torch.nn.Sequential(*modules).eval()


def _dims_of(value_info) -> list:
    dims = []
    for d in value_info.type.tensor_type.shape.dim:
        dims.append(d.dim_value if d.HasField("dim_value") else (d.dim_param or "?"))
    return dims


_ONNX_DTYPE = {1: "float32", 10: "float16", 11: "float64", 7: "int64", 6: "int32", 3: "int8", 2: "uint8",
               9: "bool"}


def _fill_specs(kind: str, specs: Sequence[Mapping[str, Any]], graph_values) -> list[dict]:
    """Checks the metadata's tensor specs against the graph; fills missing shapes/dtypes."""
    by_name = {v.name: v for v in graph_values}
    if [s["name"] for s in specs] != [v.name for v in graph_values]:
        raise ValueError(f"metadata {kind} {[s['name'] for s in specs]} do not match the graph's "
                         f"{[v.name for v in graph_values]}")
    out = []
    for spec in specs:
        v = by_name[spec["name"]]
        dims = _dims_of(v)
        dtype = _ONNX_DTYPE.get(v.type.tensor_type.elem_type, str(v.type.tensor_type.elem_type))
        spec = dict(spec)
        if "shape" not in spec:
            spec["shape"] = dims
        else:
            want = list(spec["shape"])
            ok = len(want) == len(dims) and all(
                not isinstance(w, int) or not isinstance(d, int) or w == d for w, d in zip(want, dims))
            if not ok:
                raise ValueError(f"metadata says {kind[:-1]} {spec['name']!r} has shape {want}; the "
                                 f"exported graph has {dims}")
            spec["shape"] = dims  # the graph's: fixed sizes agree, symbolic names from it
        if spec.get("dtype", dtype) != dtype:
            raise ValueError(f"metadata says {kind[:-1]} {spec['name']!r} is {spec['dtype']}; the "
                             f"graph has {dtype}")
        spec["dtype"] = dtype
        out.append(spec)
    return out


@contextlib.contextmanager
def _eval_mode(module):
    was_training = module.training
    module.eval()
    try:
        yield module
    finally:
        module.train(was_training)


def export_onnx(module, example_input, path: str | os.PathLike, name: str,
                input_names: Sequence[str], output_names: Sequence[str],
                metadata: Mapping[str, Any], opset: int = 17, dynamic_batch: bool = True, *,
                check_inputs: Sequence[Any] | None = None, atol: float = 1e-4,
                manifest: bool = True, manifest_folder: str | os.PathLike | None = None) -> dict:
    """Exports ``module`` to an fp32 ONNX file at ``path`` and verifies it (see the module doc).

    ``example_input``: a tensor or a tuple of tensors (one per input name).
    ``metadata``: from :func:`avatarizer_export.formats.make_metadata`; its
    ``name`` must equal ``name`` and its precision be fp32; input/output
    shapes left out are filled in from the graph. ``check_inputs``: real
    inputs (each a tensor, tuple or dict) that ORT and PyTorch must agree on
    within ``atol``; without them the example input is used, which proves
    less (a warning says so). Returns a report dict; raises
    :class:`ExportError` (nothing written) when a check fails.
    """
    import onnx
    import torch

    formats.check_format("onnx-fp32", dynamic_batch=dynamic_batch, opset=opset)
    path = Path(path)
    if metadata.get("name", name) != name:
        raise ValueError(f"metadata name {metadata.get('name')!r} differs from name {name!r}")
    if metadata.get("precision", "fp32") != "fp32" or metadata.get("format", "onnx-fp32") != "onnx-fp32":
        raise ValueError(f"export_onnx writes fp32 (format onnx-fp32); metadata says "
                         f"{metadata.get('precision')!r}/{metadata.get('format')!r}: convert "
                         "afterwards with convert_fp16() or quantize.quantize_gated()")
    lacking = [k for k in ("version", "schema_version", "metadata_format") if k not in metadata]
    if lacking:
        raise ValueError(f"metadata lacks {', '.join(lacking)}: build it with "
                         "avatarizer_export.formats.make_metadata()")
    example = tuple(t if isinstance(t, torch.Tensor) else torch.as_tensor(np.asarray(t))
                    for t in _as_tuple(example_input))
    if len(example) != len(input_names):
        raise ValueError(f"{len(example)} example tensors for {len(input_names)} input names")
    if check_inputs is None:
        warnings.warn("export_onnx: no check_inputs given; comparing ORT with PyTorch on the example "
                      "input only (pass real crops)", stacklevel=2)
        check_inputs = [example]
    if manifest:
        formats.manifest_relative(path, manifest_folder)  # (before anything is written)
    path.parent.mkdir(parents=True, exist_ok=True)
    dynamic_axes = ({n: {0: "batch"} for n in list(input_names) + list(output_names)}
                    if dynamic_batch else None)
    with staged(path, "export") as tmp:
        with _eval_mode(module), torch.no_grad(), warnings.catch_warnings():
            warnings.filterwarnings("ignore", category=DeprecationWarning)
            warnings.filterwarnings("ignore", message=".*legacy TorchScript-based ONNX export.*")
            torch.onnx.export(module, example, str(tmp), dynamo=False, input_names=list(input_names),
                              output_names=list(output_names), opset_version=opset,
                              dynamic_axes=dynamic_axes, do_constant_folding=True,
                              external_data=False)
        model = onnx.load(str(tmp))
        meta = dict(metadata)
        meta.update(name=name, precision="fp32", format="onnx-fp32", opset=opset,
                    dynamic_batch=dynamic_batch)
        meta["inputs"] = _fill_specs("inputs", meta.get("inputs") or
                                     [formats.tensor_spec(n) for n in input_names], model.graph.input)
        meta["outputs"] = _fill_specs("outputs", meta.get("outputs") or
                                      [formats.tensor_spec(n) for n in output_names], model.graph.output)
        formats.set_onnx_metadata(model, meta)
        onnx.checker.check_model(model, full_check=True)
        onnx.save(model, str(tmp))
        report = _compare_with_torch(module, tmp, input_names, check_inputs, atol, dynamic_batch, name)
    report.update(path=str(path), name=name, size=path.stat().st_size)
    if manifest:
        entry = formats.add_to_manifest(path, meta, folder=manifest_folder,
                                        verification={"ort_vs_torch_max_abs_diff": report["max_abs_diff"],
                                                      "atol": atol, "inputs": report["inputs"]})
        report["sha256"] = entry["sha256"]
    log.info("exported %s: max |ORT - torch| = %.3g over %d inputs", path, report["max_abs_diff"],
             report["inputs"])
    return report


def _compare_with_torch(module, onnx_path: Path, input_names, check_inputs, atol: float,
                        dynamic_batch: bool, name: str) -> dict:
    import torch

    feeds = [_to_numpy_feed(input_names, x) for x in check_inputs]
    if dynamic_batch and feeds:
        # Same inputs at another batch size: proves the batch axis really is dynamic.
        first = feeds[0]
        b = next(iter(first.values())).shape[0]
        reps = 3 if b != 3 else 2
        feeds.append({k: np.concatenate([v] * reps, axis=0) for k, v in first.items()})
    ort_outs = ort_outputs(onnx_path, feeds)
    pairs = []
    with _eval_mode(module), torch.no_grad():
        for feed, got in zip(feeds, ort_outs):
            ref = _as_tuple(module(*[torch.from_numpy(feed[n]) for n in input_names]))
            pairs.append((dict(zip(got.keys(), (r.detach().cpu().numpy() for r in ref))), got))
    per_output = worst_abs_diffs(pairs)
    worst = float("nan") if any(np.isnan(v) for v in per_output.values()) else max(per_output.values(), default=0.0)
    report = {"max_abs_diff": worst, "per_output": per_output, "inputs": len(feeds), "atol": atol}
    if not worst <= atol:
        raise ExportError(f"{name}: ONNX Runtime and PyTorch disagree: max |diff| = {worst:.3g} > "
                          f"atol {atol:g} (per output: "
                          f"{', '.join(f'{k}={v:.3g}' for k, v in per_output.items())}) over "
                          f"{len(feeds)} inputs", report)
    return report


def _subgraph_inputs(node) -> set[str]:
    """Names a node's subgraphs (If/Loop/Scan bodies) read from the enclosing graph."""
    names: set[str] = set()
    for attr in node.attribute:
        graphs = list(attr.graphs) + ([attr.g] if attr.HasField("g") else [])
        for g in graphs:
            local = {i.name for i in g.input} | {i.name for i in g.initializer}
            for n in g.node:
                local.update(n.output)
            for n in g.node:
                names.update(x for x in n.input if x and x not in local)
                names.update(x for x in _subgraph_inputs(n) if x not in local)
    return names


def _toposort(graph) -> None:
    """Sorts ``graph.node`` topologically in place (stable: keeps the given order where free)."""
    nodes = list(graph.node)
    producer = {out: i for i, n in enumerate(nodes) for out in n.output if out}
    deps = []
    for n in nodes:
        needed = {x for x in n.input if x} | _subgraph_inputs(n)
        deps.append({producer[x] for x in needed if x in producer})
    order, done, visiting = [], set(), set()

    def visit(i: int) -> None:
        stack = [(i, iter(sorted(deps[i])))]
        visiting.add(i)
        while stack:
            j, it = stack[-1]
            nxt = next((d for d in it if d not in done), None)
            if nxt is None:
                stack.pop()
                visiting.discard(j)
                done.add(j)
                order.append(j)
            elif nxt in visiting:
                raise ValueError("graph has a cycle; cannot sort it")
            else:
                visiting.add(nxt)
                stack.append((nxt, iter(sorted(deps[nxt]))))

    for i in range(len(nodes)):
        if i not in done:
            visit(i)
    del graph.node[:]
    graph.node.extend(nodes[i] for i in order)


def convert_fp16(src: str | os.PathLike, dst: str | os.PathLike, *, name: str | None = None,
                 check_inputs: Sequence[Any] | None = None, keep_io_types: bool = True,
                 op_block_list: Sequence[str] | None = None,
                 metric_fns: Mapping[str, Callable[[Any, Any], float]] | None = None,
                 thresholds: Mapping[str, float] | None = None, manifest: bool = True,
                 manifest_folder: str | os.PathLike | None = None) -> dict:
    """fp32 ONNX file → fp16 ONNX file (float32 I/O with ``keep_io_types``).

    Uses ``onnxruntime.transformers.float16.convert_float_to_float16``. The
    result must pass ``onnx.checker`` and load in ONNX Runtime; with
    ``check_inputs`` the report holds the max |fp16 - fp32| per output, and
    with ``metric_fns``/``thresholds`` it goes through
    :func:`avatarizer_export.quantize.gate` and is refused
    (:class:`~avatarizer_export.quantize.QualityGateError`, nothing written)
    when a metric is over its threshold.
    """
    import onnx
    from onnxruntime.transformers.float16 import convert_float_to_float16

    from avatarizer.runtime import read_onnx_description

    formats.check_format("onnx-fp16", keep_io_types=keep_io_types)
    src, dst = Path(src), Path(dst)
    if manifest:
        formats.manifest_relative(dst, manifest_folder)  # (before anything is written)
    src_meta = read_onnx_description(src.read_bytes())
    if src_meta.get("precision") != "fp32":
        raise ValueError(f"{src}: convert_fp16 needs an fp32 source, this is {src_meta.get('precision')}")
    meta = formats.derive_metadata(src_meta, fmt="onnx-fp16", name=name, keep_io_types=keep_io_types)
    model = onnx.load(str(src))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model16 = convert_float_to_float16(model, keep_io_types=keep_io_types,
                                           op_block_list=list(op_block_list) if op_block_list else None)
    if not keep_io_types:
        for spec in meta["inputs"] + meta["outputs"]:
            if spec.get("dtype") == "float32":
                spec["dtype"] = "float16"
    _toposort(model16.graph)  # the converter appends its I/O Cast nodes at the end
    formats.set_onnx_metadata(model16, meta)
    onnx.checker.check_model(model16, full_check=True)
    dst.parent.mkdir(parents=True, exist_ok=True)
    extra: dict[str, Any] = {}
    with staged(dst, "fp16") as tmp:
        onnx.save(model16, str(tmp))
        report: dict[str, Any] = {"path": str(dst), "name": meta["name"]}
        if check_inputs is not None:
            names = [i.name for i in model.graph.input]
            feeds = [_to_numpy_feed(names, x) for x in check_inputs]
            a, b = ort_outputs(src, feeds), ort_outputs(tmp, feeds_as_inputs(model16, feeds))
            diffs = worst_abs_diffs(zip(a, b))
            report["max_abs_diff_vs_fp32"] = diffs
            extra["verification"] = {"max_abs_diff_vs_fp32": diffs, "inputs": len(feeds)}
        else:
            ort_outputs(tmp, [])  # at least prove that it loads
        if metric_fns is not None or thresholds is not None:
            from .quantize import QualityGateError, gate

            if check_inputs is None:
                raise ValueError("a quality gate needs check_inputs (the evaluation inputs)")
            g = dict(gate(src, tmp, check_inputs, metric_fns or {}, thresholds or {}), candidate=dst.name)
            report["gate"] = g
            extra["quality_gate"] = g
            if not g["passed"]:
                raise QualityGateError(g, what=f"fp16 candidate {dst.name}")
    report["size"] = dst.stat().st_size
    if manifest:
        report["sha256"] = formats.add_to_manifest(dst, meta, folder=manifest_folder, **extra)["sha256"]
    return report
