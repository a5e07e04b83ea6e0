"""The models folder's ``manifest.json``: the model roles, and
:meth:`Manifest.load`, which verifies every listed file before any session
is made (see :mod:`avatarizer.runtime`)."""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Sequence

from ..checks import is_real
from ..errors import ModelError
from .files import (METADATA_FORMAT, _kind, external_data_refusal, normalisation_problem, onnx_external_data_file, read_description,
                    sha256_file, spec_list_problem)

#: Folder of the shipped models (``sdk/avatarizer/models``).
DEFAULT_FOLDER = Path(__file__).resolve().parent.parent / "models"
MANIFEST_NAME = "manifest.json"
_MAX_MANIFEST = 16 << 20
PRECISIONS = ("fp32", "fp16", "int8")


@dataclass(frozen=True)
class Role:
    """A job a network does in the pipeline (the manifest's ``role`` field)."""

    name: str
    stage: str
    description: str


#: The model roles, one registry for code and CLI (``choices=sorted(ROLES)``).
#: A manifest entry names its role; the SDK never guesses a role from shapes.
ROLES: dict[str, Role] = {
    r.name: r
    for r in (
        Role("encoder", "encode", "E_s: aligned RGB crop (N×3×S×S, normalised) → z_s (N×512)"),
        Role("mapper_decoder", "map_decode",
             "F then D_t: z_s (N×512) → face parameters (N×483, normalised [-1, 1])"),
        Role("image_to_face", "encode+map_decode",
             "E_s, F and D_t fused into one graph: aligned crop → face parameters"),
        Role("attributes", "hair", "H: aligned crop → attribute logits (glasses, hair colour, …)"),
    )
}


@dataclass(frozen=True)
class ModelEntry:
    """One verified manifest entry; ``description`` is what the file itself says."""

    name: str
    path: Path
    file: str
    sha256: str
    size: int
    precision: str
    format: str
    role: str | None
    inputs: tuple
    outputs: tuple
    description: dict = field(repr=False, default_factory=dict)
    raw: dict = field(repr=False, default_factory=dict)

    @property
    def kind(self) -> str:
        """``"onnx"`` or ``"engine"``."""
        return _kind(self.file, self.format)


class Manifest:
    """The verified ``manifest.json`` of a models folder; build it with :meth:`load`."""

    def __init__(self, folder: Path, entries: dict[str, ModelEntry]):
        self.folder = folder
        self.models = entries

    # -- loading ---------------------------------------------------------------------
    @classmethod
    def load(cls, folder: str | os.PathLike | None = None, *, verify: bool = True) -> "Manifest":
        """Reads ``folder/manifest.json`` and verifies every listed file.

        ``folder`` defaults to the package's ``models`` folder. With ``verify``
        (the default) each file's existence, size, sha256, file format and
        embedded description (name, precision, format, role, schema version,
        inputs' normalisation) are checked;
        ``verify=False`` checks that the files exist and that each entry
        lists its ``inputs`` and ``outputs`` (for tools that repair a folder). Raises :class:`ModelError` naming every bad file.
        """
        from .. import schema

        try:
            folder = Path(folder) if folder is not None else DEFAULT_FOLDER
            manifest_path = folder / MANIFEST_NAME
            present = manifest_path.is_file()
        except (OSError, TypeError, ValueError) as exc:  # NUL bytes, over-long names, not a path
            raise ModelError(f"{folder!r}: not a usable models folder: {exc}") from None
        if not present:
            if os.path.lexists(manifest_path):  # a folder, a device, a broken link
                raise ModelError(f"{manifest_path}: not a regular file (a model manifest is a JSON file)")
            raise ModelError(f"{manifest_path}: no model manifest (the trained models are not "
                             "installed in this folder; export them with avatarizer-export)")
        try:
            if manifest_path.resolve().parent != folder.resolve():  # (as the files it lists: a review, session 72)
                raise ModelError(f"{manifest_path}: a link to {manifest_path.resolve()}, outside the models folder "
                                 f"(the manifest and every file it lists are read from the folder only)")
            if manifest_path.stat().st_size > _MAX_MANIFEST:
                raise ModelError(f"{manifest_path}: {manifest_path.stat().st_size} bytes; a manifest is "
                                 f"at most {_MAX_MANIFEST}")
            doc = json.loads(manifest_path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:  # also UTF-8, JSON, and integers over Python's 4300 digits
            raise ModelError(f"{manifest_path}: unreadable manifest: {exc}") from None
        except RecursionError:
            raise ModelError(f"{manifest_path}: unreadable manifest: JSON nested too deeply") from None
        models = doc.get("models") if isinstance(doc, dict) else None
        if not isinstance(models, dict):
            raise ModelError(f"{manifest_path}: a manifest is {{\"models\": {{NAME: entry}}}}; "
                             "no \"models\" object found")
        root = folder.resolve()
        entries: dict[str, ModelEntry] = {}
        problems: list[tuple[str, str]] = []
        for name, raw in models.items():
            try:
                entries[name] = _verify_entry(root, name, raw, verify, schema.READS)
            except _EntryProblem as exc:
                problems.append((exc.file, exc.reason))
        if problems:
            lines = "\n".join(f"  {file}: {reason}" for file, reason in problems)
            err = ModelError(f"{manifest_path}: {len(problems)} of {len(models)} model file(s) "
                             f"failed verification:\n{lines}")
            err.problems = problems  # type: ignore[attr-defined]
            raise err
        return cls(folder, entries)

    # -- lookup ----------------------------------------------------------------------
    def __getitem__(self, name: str) -> ModelEntry:
        try:
            return self.models[name]
        except KeyError:
            raise KeyError(f"no model {name!r} in {self.folder / MANIFEST_NAME}; "
                           f"listed: {sorted(self.models)}") from None

    def __contains__(self, name: object) -> bool:
        return name in self.models

    def __iter__(self) -> Iterator[str]:
        return iter(self.models)

    def __len__(self) -> int:
        return len(self.models)

    def find(self, role: str, precision: str | Sequence[str] = ("fp32", "fp16", "int8"),
             kind: str = "onnx") -> ModelEntry:
        """The entry for ``role`` in the first available of ``precision`` (a name or a
        preference list) and of ``kind`` (``"onnx"`` or ``"engine"``)."""
        if role not in ROLES:
            raise ValueError(f"unknown model role {role!r}; roles: {sorted(ROLES)}")
        wanted = [precision] if isinstance(precision, str) else list(precision)
        for p in wanted:
            for entry in self.models.values():
                if entry.role == role and entry.precision == p and entry.kind == kind:
                    return entry
        have = sorted(f"{e.name} ({e.role}, {e.precision}, {e.kind})" for e in self.models.values())
        raise ModelError(f"{self.folder / MANIFEST_NAME}: no {kind} model for role {role!r} in "
                         f"precision {'/'.join(wanted)}; listed: {have}")

    def session(self, name_or_role: str, *, precision: str | Sequence[str] = ("fp32", "fp16", "int8"),
                **options: Any) -> Any:
        """A session for a manifest name, or for a role (the first ONNX entry of that
        role in ``precision`` order). ONNX files give an ONNX Runtime :class:`Session`
        (``options``: device, providers, intra_op_num_threads, ...); engine entries a
        :class:`avatarizer.runtime.TensorRTSession` (``options``: device_id,
        cuda_library), whose header must match the manifest. Either way the
        model's inputs and outputs must be the ones the manifest lists."""
        entry = self.models.get(name_or_role) or self.find(name_or_role, precision)
        if entry.kind == "engine":
            from .tensorrt import TensorRTSession  # lazy: tensorrt only where engines are used

            return TensorRTSession.from_entry(entry, **options)
        from .onnx import Session

        return Session.from_entry(entry, **options)


class _EntryProblem(Exception):
    def __init__(self, file: str, reason: str):
        super().__init__(f"{file}: {reason}")
        self.file, self.reason = file, reason


def _tensor_specs(file: str, raw: dict, key: str) -> tuple:
    specs = raw.get(key, ())
    if not isinstance(specs, list) and specs != ():
        raise _EntryProblem(file, f"manifest {key} must be a list of {{\"name\", \"shape\"}} objects")
    for spec in specs:
        if not isinstance(spec, dict) or not isinstance(spec.get("name"), str):
            raise _EntryProblem(file, f"manifest {key} entry {spec!r:.80} has no \"name\" string")
        shape = spec.get("shape")
        if shape is not None and (not isinstance(shape, list) or not all(
                (isinstance(d, int) and not isinstance(d, bool) and d >= 0) or isinstance(d, str) or d is None
                for d in shape)):
            raise _EntryProblem(file, f"manifest {key} {spec['name']!r} has a bad shape {shape!r:.80}")
    return tuple(specs)


def _require_io(file: str, name: str, inputs: tuple, outputs: tuple) -> None:
    """DESIGN: an entry lists its model's inputs and outputs (sessions are checked against them)."""
    for key, specs in (("inputs", inputs), ("outputs", outputs)):
        if not specs:
            raise _EntryProblem(file, f"manifest entry {name!r} lists no {key} (each entry names its "
                                      f"model's {key}: [{{\"name\", \"shape\", ...}}])")


def _compare_io(file: str, key: str, listed: tuple, embedded: Any) -> None:
    """The embedded description's ``inputs``/``outputs`` against the manifest's:
    a list of named specs, the same normalisation for every input both name
    (the runtime normalises crops with the embedded one), and a usable one."""
    problem = spec_list_problem(key, embedded)
    if problem:
        raise _EntryProblem(file, problem)
    own = {spec["name"]: spec for spec in embedded}
    for spec in listed:
        if spec["name"] in own and spec.get("normalisation") != own[spec["name"]].get("normalisation"):
            raise _EntryProblem(file, f"embedded description says {key[:-1]} {spec['name']!r} normalisation "
                                      f"{own[spec['name']].get('normalisation')!r:.120}, the manifest says "
                                      f"{spec.get('normalisation')!r:.120}")
        norm = spec.get("normalisation")
        problem = normalisation_problem(norm) if norm is not None else None
        if problem:
            raise _EntryProblem(file, f"{key[:-1]} {spec['name']!r} normalisation: {problem}")


def _verify_entry(root: Path, name: str, raw: Any, verify: bool, reads: tuple[str, ...]) -> ModelEntry:
    """``raw`` checked as manifest entry ``name`` (``reads``: the parameter
    schema versions this SDK reads, its own first: ``schema.READS``)."""
    label = raw.get("file", f"<entry {name}>") if isinstance(raw, dict) else f"<entry {name}>"
    label = label if isinstance(label, str) else f"<entry {name}>"
    if not isinstance(raw, dict):
        raise _EntryProblem(label, "manifest entry is not a JSON object")
    missing = [k for k in ("file", "sha256", "size", "precision") if k not in raw]
    if missing:
        raise _EntryProblem(label, f"manifest entry {name!r} lacks {', '.join(missing)}")
    file = raw["file"]
    if not isinstance(file, str) or not file or "\0" in file:
        raise _EntryProblem(label, f"manifest file {file!r:.80} is not a file name")
    if not isinstance(raw["size"], int) or isinstance(raw["size"], bool) or raw["size"] < 0:
        raise _EntryProblem(file, f"manifest size {raw['size']!r:.80} is not a byte count")
    sha = raw["sha256"]
    if not isinstance(sha, str):
        raise _EntryProblem(file, f"manifest sha256 {sha!r:.80} is not a hex string")
    precision = raw["precision"]
    if not isinstance(precision, str) or precision not in PRECISIONS:
        raise _EntryProblem(file, f"manifest precision {precision!r:.80} is not one of {PRECISIONS}")
    fmt = raw.get("format")
    if fmt is not None and not isinstance(fmt, str):
        raise _EntryProblem(file, f"manifest format {fmt!r:.80} is not a string")
    role = raw.get("role")
    if role is not None and (not isinstance(role, str) or role not in ROLES):
        raise _EntryProblem(file, f"unknown role {role!r:.80}; roles: {sorted(ROLES)}")
    gate = raw.get("quality_gate")
    thresholds = gate.get("thresholds") if isinstance(gate, dict) else None
    if gate is not None and (not isinstance(gate, dict) or not isinstance(thresholds, (dict, type(None))) or any(
            not is_real(v) or v < 0 for v in (thresholds or {}).values())):
        # (the runtime gate read them as they were: an infinite threshold passed any drift, a string or a list
        # raised ValueError / AttributeError; a review, session 64)
        raise _EntryProblem(file, f"manifest quality_gate {gate!r:.80} is not an object whose thresholds are "
                                  "finite numbers >= 0")
    inputs, outputs = _tensor_specs(file, raw, "inputs"), _tensor_specs(file, raw, "outputs")
    try:
        path = (root / file).resolve()
        if root not in path.parents:
            raise _EntryProblem(file, f"path leaves the models folder {root}")
        if not path.is_file():
            what = "is not a file" if path.exists() else "missing"
            raise _EntryProblem(file, f"{what} (expected at {path})")
        size = path.stat().st_size
    except (OSError, ValueError, RuntimeError) as exc:  # over-long names, symlink loops
        raise _EntryProblem(file, f"cannot be opened: {exc}") from None
    description: dict = {}
    if verify:
        if len(sha) != 64 or any(c not in "0123456789abcdefABCDEF" for c in sha):
            raise _EntryProblem(file, f"manifest sha256 {sha!r:.80} is not 64 hex digits")
        if size != int(raw["size"]):
            what = "truncated?" if size < int(raw["size"]) else "replaced or appended to?"
            raise _EntryProblem(file, f"size is {size} bytes, the manifest says {raw['size']} ({what})")
        try:
            digest = sha256_file(path)  # streamed: constant memory for any file size
        except OSError as exc:
            raise _EntryProblem(file, f"cannot be read: {exc}") from None
        if digest != sha.lower():
            raise _EntryProblem(file, f"sha256 is {digest}, the manifest says {sha} "
                                      "(corrupt or modified file)")
        kind = _kind(file, fmt)
        try:
            description = read_description(path, kind=kind)
        except OSError as exc:
            raise _EntryProblem(file, f"cannot be read: {exc}") from None
        except ValueError as exc:
            raise _EntryProblem(file, str(exc)) from None
        if kind == "onnx":
            try:
                external = onnx_external_data_file(path)
            except OSError as exc:
                raise _EntryProblem(file, f"cannot be read: {exc}") from None
            except ValueError as exc:
                raise _EntryProblem(file, str(exc)) from None
            if external:
                raise _EntryProblem(file, external_data_refusal(external))
        fmt_no = description.get("metadata_format", METADATA_FORMAT)
        if not isinstance(fmt_no, int) or isinstance(fmt_no, bool) or fmt_no > METADATA_FORMAT:
            raise _EntryProblem(file, f"embedded metadata format {fmt_no!r:.40}: this SDK reads format "
                                      f"{METADATA_FORMAT} or older (a newer avatarizer-export wrote it)")
        checks = [("name", name), ("precision", precision),
                  ("schema_version", raw.get("schema_version", reads[0]))]
        if raw.get("version") is not None:  # (what the runtime acts on: the attribute model's fusions and gates)
            checks.append(("version", raw["version"]))
        if fmt is not None:
            checks.append(("format", fmt))
        if role is not None:
            checks.append(("role", role))
        for key, want in checks:
            if description.get(key) != want:
                raise _EntryProblem(file, f"embedded metadata says {key} {description.get(key)!r:.80}, "
                                          f"the manifest says {want!r:.80}")
        _require_io(file, name, inputs, outputs)
        _compare_io(file, "inputs", inputs, description.get("inputs"))
        _compare_io(file, "outputs", outputs, description.get("outputs"))
        if description.get("schema_version") not in reads:
            raise _EntryProblem(file, f"exported for parameter schema "
                                      f"{description.get('schema_version')!r}; this SDK has schema "
                                      f"{reads[0]!r} and reads {', '.join(reads)} (re-export the model)")
    if not verify:
        _require_io(file, name, inputs, outputs)  # also without verify: sessions are checked against them
    return ModelEntry(name=name, path=path, file=file, sha256=sha.lower(), size=size,
                      precision=precision, format=fmt or f"{_kind(file, None)}-{precision}",
                      role=role, inputs=inputs, outputs=outputs, description=description, raw=dict(raw))
