"""``avatarizer-export ship``: the trained networks -> the model files the SDK
ships (``sdk/avatarizer/models/``) with their manifest.

* ``image_to_face``: E_s -> F -> D_t fused into one graph (one session, one
  call per frame: the three networks always run together at run time, and a
  fused graph lets ONNX Runtime optimise across their boundaries). Input
  ``crop`` N x 3 x 96 x 96 (RGB, the canonical crop resized from 128 px,
  (pixel/255 - 0.5)/0.5); output ``face`` N x 483 in normalised [-1, 1].
* fp32 is exported (to ``runs/export/``, a build artefact) and checked against
  PyTorch on real held-out crops (max |diff| <= 1e-4); fp16 and int8 (static QDQ, calibrated on real
  training crops) are written only if they pass the quality gate against
  fp32 on held-out crops: ``param_l1`` drift (at most :data:`PARAM_GATE`, 0.01)
  and ``render_lpips`` between the two avatars (at most :data:`LPIPS_GATE`, 0.005).
* The SDK loads the best passing precision of what is shipped (fp16, and
  int8 when it passes); ``models/manifest.json`` lists
  every file with sha256, size, precision and the gate report.
"""
from __future__ import annotations

import json
import sys
import shutil
from pathlib import Path

import numpy as np

from .onnx_util import staged
from .paths import ROOT, cache_dir
from .staging import unstaged
from .train import SHIPPED_MAPPER

MODELS = ROOT / "sdk" / "avatarizer" / "models"
# the fp32 reference graph stays a build artefact (10 MB): the SDK ships fp16
# (5 MB, same accuracy: ONNX Runtime on CPU computes it in fp32) and int8 when
# it passes the gate
BUILD = ROOT / "runs" / "export"
VERSION = "2.0.0"  # 2.0: trained on the frontal, exaggerated artist (pairs DATA_VERSION 2); 1.1: E_s fine-tuned with F
GATE_REPORT = "gate_report.json"
LPIPS_GATE = 0.005
PARAM_GATE = 0.01


def training_summary(cache: Path) -> dict:
    meta = json.loads((cache / "aligned" / "meta.json").read_text())
    pairs = json.loads((cache / "pairs" / "meta.json").read_text())
    avatars = json.loads((cache / "avatars" / "meta.json").read_text())
    return {
        "photos": meta["aligned"], "sources": list(meta["per_source"]),
        "paired_examples": pairs["pairs"], "paired_photos": pairs["train_photos"],
        "unpaired_avatars": avatars["n"], "split": "docs/split.md (held-out by file name)",
        "licence": "non-commercial (FFHQ CC BY-NC-SA 4.0, UTKFace research only): see docs/MODEL_CARD.md",
    }


def _crops(cache: Path, heldout: bool, n: int, seed: int) -> np.ndarray:
    from .data import is_heldout, load_aligned
    from .train import to_input

    al = load_aligned(cache)
    idx = np.array([i for i, k in enumerate(al.keys) if is_heldout(k) == heldout])
    idx = np.sort(np.random.default_rng(seed).choice(idx, min(n, len(idx)), replace=False))
    return to_input(np.asarray(al.crops[idx]), 96).numpy()


class _Ctx:
    """What every export step needs: the fused network, real crops, the gate."""

    def __init__(self, cache: Path, mapper: str = SHIPPED_MAPPER, allow_short: bool = False):
        from .train import load_image_to_face

        self.cache = cache
        self.mapper = mapper
        self.net, self.size = load_image_to_face(mapper, cache, check_data=True, allow_short=allow_short)
        self.held = _crops(cache, True, 64, 0)  # gate / check inputs: held-out photos
        self.calib = _crops(cache, False, 256, 1)  # calibration: training photos
        self.evals = [{"crop": self.held[i:i + 16]} for i in range(0, len(self.held), 16)]
        self._lp = None

    def avatars(self, face_norm):
        from avatarizer import render, schema

        base = np.tile(schema.default(), (len(face_norm), 1))
        base[:, schema.FACE] = schema.denormalize(np.clip(face_norm, -1, 1), schema.FACE)
        return np.stack([render(p, 256, background="white") for p in schema.clip(base)])

    def gate(self):
        from .lpips import LPIPS
        from .metrics import render_lpips

        if self._lp is None:
            self._lp = LPIPS.from_npz(net="alex")

        def lpips_drift(ref, cand):
            return float(np.mean(render_lpips(self.avatars(ref), self.avatars(cand), model=self._lp)))

        def param_drift(ref, cand):
            return float(np.abs(np.asarray(ref) - np.asarray(cand)).mean())

        return ({"param_l1": param_drift, "render_lpips": lpips_drift},
                {"param_l1": PARAM_GATE, "render_lpips": LPIPS_GATE})


ROLE = "image_to_face"


def export_fp32(ctx: _Ctx) -> dict:
    import torch

    from . import formats
    from .onnx_export import export_onnx

    meta = formats.make_metadata(
        name=formats.model_name(ROLE, "onnx-fp32"), version=VERSION, role=ROLE, precision="fp32",
        fmt="onnx-fp32", inputs=[formats.image_input("crop", ctx.size)], outputs=[formats.face_params_output("face")],
        training_data=training_summary(ctx.cache),
        method=f"E_s -> F -> D_t (cross-modal latent alignment; runs/{ctx.mapper})")
    BUILD.mkdir(parents=True, exist_ok=True)
    path = BUILD / formats.file_name(ROLE, "onnx-fp32")
    rep = export_onnx(ctx.net, torch.from_numpy(ctx.held[:2]), path, meta["name"], ["crop"], ["face"], meta,
                      check_inputs=[torch.from_numpy(e["crop"]) for e in ctx.evals], manifest_folder=BUILD)
    print(f"onnx: {path.name} written and checked against PyTorch on {len(ctx.held)} held-out crops: "
          f"max |diff| {rep.get('max_abs_diff')}")
    return {"passed": True, **{k: v for k, v in rep.items() if k in ("max_abs_diff", "size", "sha256")}}


def export_fp16(ctx: _Ctx, folder: Path) -> dict:
    from . import formats
    from .onnx_export import convert_fp16
    from .quantize import QualityGateError

    fns, th = ctx.gate()
    try:
        return convert_fp16(BUILD / formats.file_name(ROLE, "onnx-fp32"), folder / formats.file_name(ROLE, "onnx-fp16"),
                            name=formats.model_name(ROLE, "onnx-fp16"), check_inputs=ctx.evals, metric_fns=fns,
                            thresholds=th, manifest_folder=folder)
    except QualityGateError as exc:
        return {"passed": False, "error": str(exc)}


def export_int8(ctx: _Ctx, folder: Path) -> dict:
    from . import formats
    from .quantize import QualityGateError, quantize_gated

    import onnx

    fns, th = ctx.gate()
    fp32 = BUILD / formats.file_name(ROLE, "onnx-fp32")
    # D_t's three layers stay fp32: quantized they drift param_l1 0.014 and render
    # LPIPS 0.0050 (over the gate; 1.1.0, 2026-11-24). So does E_s's first
    # convolution, on the raw image: quantized, 2.0.0 drifts 0.043 / 0.032 however
    # the rest is quantized or calibrated; in fp32, 0.0054 / 0.0014 (docs/MODEL_CARD.md)
    graph = onnx.load(str(fp32)).graph
    inputs = {i.name for i in graph.input}
    keep_fp32 = [n.name for n in graph.node
                 if (n.name.startswith("/dec/") and n.op_type in ("Gemm", "MatMul"))
                 or (n.op_type == "Conv" and inputs & set(n.input))]
    try:
        return quantize_gated(fp32, folder / formats.file_name(ROLE, "onnx-int8"),
                              {"crop": ctx.calib}, ctx.evals, fns, th, name=formats.model_name(ROLE, "onnx-int8"),
                              manifest_folder=folder, nodes_to_exclude=keep_fp32)
    except QualityGateError as exc:
        return {"passed": False, "error": str(exc)}


def build_engines(ctx: _Ctx, folder: Path) -> dict:
    """TensorRT engines (fp16, int8) from the ONNX files; needs an NVIDIA GPU."""
    from . import formats
    from .quantize import QualityGateError
    from .tensorrt_build import build_engine

    out = {}
    for fmt, src in (("engine-fp16", "onnx-fp16"), ("engine-int8", "onnx-fp32")):
        formats.check_format(fmt, calibration={"crop": ctx.calib} if fmt == "engine-int8" else None)
        fns, th = ctx.gate()
        srcdir = BUILD if src == "onnx-fp32" else folder
        if not (srcdir / formats.file_name(ROLE, src)).is_file():  # (the fp16 file refused by the gate: the int8
            out[fmt] = {"passed": False,  # engine is still built; the missing file stopped the whole build)
                        "error": f"no {src} file to build it from ({srcdir / formats.file_name(ROLE, src)})"}
            continue
        try:
            out[fmt] = build_engine(srcdir / formats.file_name(ROLE, src), folder / formats.file_name(ROLE, fmt),
                                    fmt, name=formats.model_name(ROLE, fmt),
                                    calibration={"crop": ctx.calib} if fmt == "engine-int8" else None,
                                    check_inputs=ctx.evals, metric_fns=fns, thresholds=th, manifest_folder=folder,
                                    reference=BUILD / formats.file_name(ROLE, "onnx-fp32"))
        except QualityGateError as exc:  # (as fp16 and int8: reported refused, the other engine still built)
            out[fmt] = {"passed": False, "error": str(exc)}
    return out


def _summary(results: dict, folder: Path, fresh: bool = False):
    """Prints the gate's results and writes them into ``folder``'s gate
    report: over the report's entries for a re-export of the same network,
    in place of all of them with ``fresh`` (a new network: the entries of
    files it did not rebuild belonged to the previous one, dropped with them)."""
    for k, v in results.items():
        # (fp16's drift is under its gate's record: it printed "passed" with no numbers)
        m = v.get("metrics") or (v.get("gate") or {}).get("metrics") or {}
        print(f"{k}: {'passed' if v.get('passed', True) else 'REFUSED'} "
              + (", ".join(f"{a} drift {b:.5f}" for a, b in m.items()) if m else v.get("error", "")))
    for v in results.values():  # paths relative to the repository: the report is committed
        path = v.get("path")
        if isinstance(path, str) and Path(path).is_absolute():
            path = unstaged(Path(path))  # where the file is shipped, not where it was staged
            v["path"] = str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else path.name
    path = folder / GATE_REPORT
    old = json.loads(path.read_text()) if path.exists() and not fresh else {}
    old.update(results)
    with staged(path, "part") as tmp:
        tmp.write_text(json.dumps(old, indent=1, default=str) + "\n")


def built_mapper(fp32: Path) -> str | None:
    """The mapper run (``runs/<name>``) the fp32 file ``onnx`` built was
    exported from, as its description names it (None where it names none)."""
    import re

    import onnx

    from . import formats

    try:
        desc = formats.onnx_metadata(onnx.load(str(fp32), load_external_data=False))
    except ValueError:
        return None
    m = re.search(r"runs/([^)\s]+)\)", str(desc.get("method", "")))
    return m.group(1) if m else None


def _check_built(fp32: Path) -> None:
    """RuntimeError unless ``fp32`` is the file ``onnx`` wrote: its sha256 the one ``BUILD``'s
    manifest.json names. The int8 and fp16 gates compare a candidate with this same file, so a changed
    byte in its weights passed them and shipped (a review, session 64)."""
    from . import formats

    listed = BUILD / "manifest.json"
    try:
        want = json.loads(listed.read_text())["models"][formats.model_name(ROLE, "onnx-fp32")]["sha256"]
    except (OSError, ValueError, KeyError, TypeError):
        raise RuntimeError(f"{fp32}: {listed} does not name its checksum: run `avatarizer-export onnx` "
                           "again") from None
    if formats.sha256_file(fp32) != want:  # (the checksum the manifests use)
        raise RuntimeError(f"{fp32} changed since `avatarizer-export onnx` wrote it (its sha256 is not the one "
                           f"{listed} names): run `avatarizer-export onnx` again")


def _mapper_for(what: str, mapper: str | None) -> str:
    """The mapper an export step works with. ``quantize`` and ``tensorrt``
    build from the fp32 file ``onnx`` left in ``BUILD``: they take its mapper
    (None asked), and refuse another one asked (they quantized the file built
    before whatever ``--mapper`` said, and gated it on it); the others take
    the one asked, or the shipped one."""
    if what not in ("quantize", "tensorrt"):
        return mapper or SHIPPED_MAPPER
    from . import formats

    fp32 = BUILD / formats.file_name(ROLE, "onnx-fp32")
    if not fp32.is_file():
        raise RuntimeError(f"{what}: {fp32} is missing: `avatarizer-export onnx"
                           f"{' --mapper ' + mapper if mapper else ''}` builds it first")
    _check_built(fp32)
    built = built_mapper(fp32)
    if mapper is not None and built is not None and built != mapper:
        raise RuntimeError(f"{what}: {fp32} was exported from runs/{built}, not runs/{mapper}: run "
                           f"`avatarizer-export onnx --mapper {mapper}` first (or {what} without --mapper)")
    return mapper or built or SHIPPED_MAPPER


#: a shipped file's manifest field: the sha256 of the fp32 build (``BUILD``) it was made from
BUILT_FROM = "built_from"


def _built_sha() -> str | None:
    """The sha256 of ``BUILD``'s fp32 file (None where there is none)."""
    from . import formats

    fp32 = BUILD / formats.file_name(ROLE, "onnx-fp32")
    return formats.sha256_file(fp32) if fp32.is_file() else None


def _stamp_built_from(folder: Path, results: dict) -> None:
    """Records in ``folder``'s manifest, for each file this export wrote
    (``results``' passed formats but fp32, which stays in ``BUILD``), the
    fp32 build it was made from (:data:`BUILT_FROM`)."""
    from . import formats

    path = folder / formats.MANIFEST_NAME
    made = [formats.model_name(ROLE, f) for f, r in results.items() if f != "onnx-fp32" and r.get("passed", True)]
    if not made or not path.is_file():
        return
    sha = _built_sha()
    if sha is None:
        return
    doc = json.loads(path.read_text(encoding="utf-8"))
    for name in made:
        if isinstance(doc.get("models", {}).get(name), dict):
            doc["models"][name][BUILT_FROM] = sha
    with staged(path, "part") as tmp:
        tmp.write_text(json.dumps(doc, indent=2, sort_keys=True) + "\n", encoding="utf-8")


#: the formats each step that builds on ``BUILD``'s fp32 writes (the others it ships beside)
_WRITES = {"quantize": ("onnx-int8",), "tensorrt": ("engine-fp16", "engine-int8")}


def _check_same_network(folder: Path, what: str) -> None:
    """RuntimeError unless every file of the face network ``folder`` ships,
    besides those ``what`` rebuilds, was made from ``BUILD``'s fp32 (its
    :data:`BUILT_FROM`): an ``onnx`` that failed after writing the fp32 (the
    fp16 gate, Ctrl-C) left the folder as it was and the new network in
    ``BUILD``, and ``quantize`` then shipped the new network's int8 beside
    the old one's fp16 (a review, session 66)."""
    from . import formats

    path = folder / formats.MANIFEST_NAME
    if not path.is_file():
        return
    models = json.loads(path.read_text(encoding="utf-8")).get("models", {})
    keep = {formats.model_name(ROLE, f) for f in _WRITES[what]}
    sha = _built_sha()
    other = sorted(n for n, e in models.items() if isinstance(e, dict) and e.get("role") == ROLE
                   and n not in keep and e.get(BUILT_FROM) != sha)
    if other:
        unknown = [n for n in other if not models[n].get(BUILT_FROM)]
        why = (f"not recorded as made from {BUILD / formats.file_name(ROLE, 'onnx-fp32')} (no {BUILT_FROM} in the "
               "manifest: an export before the field)" if len(unknown) == len(other) else
               f"made from another build of the network than {BUILD / formats.file_name(ROLE, 'onnx-fp32')} "
               f"(the manifest's {BUILT_FROM})")
        raise RuntimeError(f"{what}: {folder} ships {', '.join(other)}, {why}: run `avatarizer-export onnx` (or "
                           "`ship`) first, which exports them together")


def export(what: str, cache: Path, mapper: str | None = None, folder: Path | None = None, *,
           allow_short: bool = False) -> dict:
    """``onnx`` (fp32 + fp16), ``quantize`` (int8), ``tensorrt`` (engines) or
    ``ship`` (all that this machine can) into ``folder`` (default
    ``sdk/avatarizer/models/``); returns the gate results per file. A missing
    toolchain raises, and so does ``quantize`` or ``ship`` leaving no file
    the SDK's default on the CPU loads (RuntimeError; the gate report is in
    ``runs/export/gate_report.json``).

    Every file is written into a staging copy of the folder
    (:mod:`~avatarizer_export.staging`), swapped in at the end, the manifest
    last: a failure or an interruption leaves the folder as it was. ``onnx``
    and ``ship`` export a new network: the role's entries they did not
    rebuild (the other precisions, TensorRT engines) belong to the previous
    one and are dropped, with the files the manifest listed for them; so is
    an entry of a format the gate refused. A network whose runs stopped
    short of a full run's steps is refused unless ``allow_short``
    (``--allow-short``)."""
    from . import formats
    from .staging import staged_folder

    if what not in ("onnx", "quantize", "tensorrt", "ship"):
        raise ValueError(f"unknown export {what!r}")
    if what == "tensorrt":
        # refuse before loading anything when there is no GPU
        formats.check_format("engine-fp16")
    mapper = _mapper_for(what, mapper)
    target = Path(folder) if folder is not None else MODELS
    target.mkdir(parents=True, exist_ok=True)
    _check_manifest_shape(target)
    if what in ("quantize", "tensorrt"):
        _check_same_network(target, what)
    ctx = _Ctx(Path(cache), mapper, allow_short)
    with staged_folder(target, extra=(GATE_REPORT,)) as stage:
        results = {}
        if what in ("onnx", "ship"):
            results["onnx-fp32"] = export_fp32(ctx)
            results["onnx-fp16"] = export_fp16(ctx, stage)
        if what in ("quantize", "ship"):
            results["onnx-int8"] = export_int8(ctx, stage)
        if what == "tensorrt":
            results.update(build_engines(ctx, stage))
        for fmt, res in results.items():
            if not res.get("passed", True) and formats.remove_from_manifest(formats.model_name(ROLE, fmt), stage):
                # the previous export's file of this format belongs to the previous network
                res["removed_previous"] = True
        if what == "onnx" and not results["onnx-fp16"].get("passed", True):
            # the one file onnx ships refused: the folder stays as it was (it dropped the previous network's
            # fp16 and int8 and shipped no face network with exit 0; a review, session 76)
            _summary(results, stage, fresh=True)
            _keep_gate_report(stage)
            raise RuntimeError(f"onnx: the quality gate refused the fp16 network ({results['onnx-fp16'].get('error')}"
                               f"; {BUILD / GATE_REPORT}): nothing shipped, {target} is unchanged")
        if what in ("onnx", "ship"):
            rebuilt = {formats.model_name(ROLE, f) for f, r in results.items() if r.get("passed", True)}
            dropped = drop_stale(stage, ROLE, rebuilt)
            if dropped:
                print(f"{what}: dropped the previous network's {', '.join(dropped)}")
        _stamp_built_from(stage, results)
        _summary(results, stage, fresh=what in ("onnx", "ship"))
        if what != "tensorrt":
            try:
                _check_cpu_default(stage, target)
            except RuntimeError:
                if what == "onnx":  # the previous network's int8 was dropped: quantize is the next step
                    print(f"onnx: {target} has no face network the SDK's default on the CPU loads (int8) until "
                          f"`avatarizer-export quantize` runs", file=sys.stderr)
                else:
                    _keep_gate_report(stage)
                    raise
    return results


def _keep_gate_report(stage: Path) -> None:
    """The staged gate report copied into ``BUILD`` before a refused export's staging copy is discarded."""
    BUILD.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(stage / GATE_REPORT, BUILD / GATE_REPORT)


def _check_manifest_shape(folder: Path) -> None:
    """RuntimeError naming ``folder``'s ``manifest.json`` when it is there but
    not JSON, or not an object with a ``models`` object (``[]`` or
    ``{"models": []}`` gave an AttributeError traceback, and a file that is
    not JSON numpy's words without the file's name; a review, session 76)."""
    from . import formats

    path = folder / formats.MANIFEST_NAME
    if not path.is_file():
        return
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise RuntimeError(f"{path}: not a JSON file ({exc}); restore it (git checkout) or remove it") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("models", {}), dict):
        raise RuntimeError(f"{path}: not a models manifest (an object whose \"models\" is an object of entries); "
                           "restore it (git checkout) or remove it")


def drop_stale(folder: Path, role: str, keep: set[str]) -> list[str]:
    """Drops ``folder``'s manifest entries of ``role`` not in ``keep`` (a
    network's files from before it was re-shipped), deleting the files the
    manifest listed for them (only those); returns their names."""
    from . import formats

    path = folder / formats.MANIFEST_NAME
    if not path.is_file():
        return []
    models = json.loads(path.read_text(encoding="utf-8")).get("models", {})
    stale = sorted(n for n, e in models.items() if isinstance(e, dict) and e.get("role") == role and n not in keep)
    return [n for n in stale if formats.remove_from_manifest(n, folder)]


def _check_cpu_default(folder: Path = MODELS, shipped: Path | None = None):
    """The SDK's default on the CPU (``precision="auto"``) must find a face
    network among the files in ``folder``: RuntimeError when the gate refused them
    all (fp32 stays a build artefact, so that is int8 refused)."""
    from avatarizer.models import Manifest, ModelError
    from avatarizer.pipeline.config import face_entries, precision_preferences

    try:
        face_entries(Manifest.load(folder, verify=False), ROLE, "onnxruntime", "auto", "cpu")
    except ModelError as exc:
        raise RuntimeError(f"not shipped to {shipped or folder}: nothing in it would run with the SDK's default "
                           f"on the CPU (precision {'/'.join(precision_preferences('auto', 'cpu'))}): the "
                           f"quality gate refused it ({BUILD / GATE_REPORT}); the folder is unchanged; "
                           f"{exc}") from None


def main_export(args) -> int:
    export(args.command, cache_dir(getattr(args, "cache", None)), getattr(args, "mapper", None),
           allow_short=bool(getattr(args, "allow_short", False)))
    return 0




def add_parser(sub):
    from .argtypes import run_name

    for name, text in (("onnx", "export E_s -> F -> D_t to ONNX fp32 (checked vs PyTorch) and gated fp16"),
                       ("quantize", "gated int8 static quantization (QDQ) calibrated on real crops"),
                       ("tensorrt", "TensorRT fp16/int8 engines (needs an NVIDIA GPU with CUDA)"),
                       ("ship", "onnx + quantize: every model file this machine can build, into sdk/avatarizer/models")):
        p = sub.add_parser(name, help=text)
        p.add_argument("--cache")
        p.add_argument("--mapper", default=None, type=run_name,
                       help=f"which mapper run to export (default {SHIPPED_MAPPER}; quantize and tensorrt: the one "
                            "`onnx` exported, and another is refused)")
        p.add_argument("--allow-short", action="store_true",
                       help="export a network whose trainings stopped short of a full run's steps (a trial run's "
                            "--steps-scale, or --steps; refused by default)")
        p.set_defaults(func=main_export)
