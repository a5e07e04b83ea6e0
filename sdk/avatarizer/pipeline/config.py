"""Options → what runs, decided in one place: :func:`resolve`.

Every ``"auto"`` of :class:`avatarizer.api.Options` is resolved here, once per
pipeline, into a frozen :class:`Resolved` that the stages read (they decide
nothing themselves):

* the face **estimator** (``"hybrid"``, ``"model"`` or ``"artist"``) and why;
* the **manifest**, loaded and verified once (every file hashed once), or
  ``None`` when no network runs;
* the **model files** each network stage opens (the face chain and the
  attribute regressor), chosen in the **precision** order of the device;
* the **device** and the ONNX Runtime **providers**, resolved once and handed
  to every session;
* the mode's face count, smoothing and tracker options.

:func:`avatarizer.pipeline.build` then makes the stages for a
:class:`Resolved`; the API, the CLI and ``bench`` all go through the two.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import ModelError
from ..filters import Smoothing


@dataclass(frozen=True)
class Resolved:
    """Options after "auto" is resolved: what the stages see."""

    backend: str
    device: str
    device_resolved: str
    precision: str
    crop_size: int | None
    smoothing: Smoothing | None
    mode: str
    max_faces: int
    estimator: str
    estimator_resolved: str
    color_order: str
    tracker: Any
    models_dir: Any
    estimator_reason: str = ""
    #: ONNX Runtime execution providers every session gets (``()`` when no network runs)
    providers: tuple = ()
    #: the verified :class:`avatarizer.runtime.Manifest` (``None`` for the auto-artist)
    manifest: Any = None
    #: the manifest entries of the face networks, in the order they run (``()`` for the artist)
    face_entries: tuple = ()
    #: the attribute regressor's entry, or ``None`` (the artist's hair is used then)
    attributes_entry: Any = None
    render_size: int = 256
    render_background: Any = None
    exaggeration: float | None = None
    #: a child's head drawn taller above the brows (the merge stage; ``Options.child_head``)
    child_head: bool = True

    @property
    def precision_resolved(self) -> str:
        """The face networks' precision ("fp32" for the artist; "int8+fp32" for a mixed chain)."""
        if not self.face_entries:
            return "fp32"
        precisions = [e.precision for e in self.face_entries]
        return precisions[0] if len(set(precisions)) == 1 else "+".join(precisions)


def precision_preferences(precision: str, device: str) -> tuple[str, ...]:
    """``precision="auto"``: fp16 then fp32 on a GPU, fp32 then int8 on the CPU;
    an explicit precision is that one only (no silent downgrade)."""
    if precision != "auto":
        return (precision,)
    return ("fp16", "fp32") if device == "cuda" else ("fp32", "int8")


def face_entries(manifest, role: str, backend: str, precision: str, device: str) -> tuple:
    """The manifest entries of the face networks: a fused ``role`` model, or
    an encoder then a mapper_decoder; ``ModelError`` when neither is there."""
    kind = "engine" if backend == "tensorrt" else "onnx"
    prefs = precision_preferences(precision, device)
    roles = [e.role for e in manifest.models.values() if e.kind == kind]
    if role in roles:
        chain = [role]
    elif "encoder" in roles and "mapper_decoder" in roles:
        chain = ["encoder", "mapper_decoder"]
    else:
        raise ModelError(f"{manifest.folder}: no {kind} model for role {role!r} "
                         f"(backend={backend!r}); listed roles: {sorted(set(filter(None, roles)))}"
                         + _how_to_build(manifest, kind, prefs))
    try:
        return tuple(manifest.find(r, prefs, kind=kind) for r in chain)
    except ModelError as exc:
        raise ModelError(f"{exc}{_how_to_build(manifest, kind, prefs)}") from None


def _how_to_build(manifest, kind: str, wanted) -> str:
    """For the package's own models folder, what :func:`face_entries` did not
    find and how it is made: it ships int8 and fp16 ONNX files only (fp32 is a
    build artefact, TensorRT engines are built for a GPU). "" for an app's
    ``models_dir`` (its owner knows what is in it)."""
    from ..runtime import DEFAULT_FOLDER

    try:
        if Path(manifest.folder).resolve() != DEFAULT_FOLDER.resolve():
            return ""
    except (OSError, TypeError):
        return ""
    have = " and ".join(sorted({e.precision for e in manifest.models.values() if e.kind == "onnx"}, reverse=True))
    if kind == "engine":
        return (f". The package ships {have} ONNX files and no TensorRT engines: `avatarizer-export tensorrt` "
                "builds them into its models folder on a machine with an NVIDIA GPU, after `make models`; "
                "or use backend='onnxruntime'")
    if "fp32" in wanted:
        return (f". The package ships {have} ONNX files, no fp32: fp32 is a build artefact that `make models` "
                "(`avatarizer-export ship`) writes to runs/export/ with its own manifest.json "
                "(Avatarizer(models_dir='runs/export', precision='fp32') loads it); or use precision='auto'")
    return ""


def parse_version(v) -> tuple:
    """A model ``version`` as numbers for comparing: ``"2.3.2"`` → ``(2, 3,
    2)``, ``10`` → ``(10,)`` (trailing zeros dropped: ``"2.0"`` equals ``2``);
    None → ``()``, older than any. ``ValueError`` for anything else
    (``"2.3.2-rc1"``, ``"abc"``, ``2.5``, ``true``): what the export tools
    accept for ``--version`` too."""
    if v is None:
        parts: list = []
    elif isinstance(v, int) and not isinstance(v, bool) and v >= 0:
        parts = [v]
    elif isinstance(v, str) and v and len(v) <= 64 and all(p.isascii() and p.isdigit() for p in v.split(".")):
        parts = [int(p) for p in v.split(".")]
    else:
        raise ValueError(f"{v!r:.80} is not a version (dotted non-negative integers, such as \"2.3.2\")")
    while parts and parts[-1] == 0:
        parts.pop()
    return tuple(parts)


def model_version(entry) -> tuple:
    """A manifest entry's ``version`` by :func:`parse_version`; :class:`ModelError`
    naming the entry when it is not a version."""
    try:
        return parse_version(entry.raw.get("version"))
    except ValueError as exc:
        raise ModelError(f"{entry.path}: manifest version of {entry.name!r}: {exc}") from None


def attributes_entry(manifest):
    """The attribute regressor's ONNX entry (the newest by :func:`model_version`;
    int8 first among equals), or None."""
    entries = [e for e in manifest.models.values() if e.role == "attributes" and e.kind == "onnx"]
    if not entries:
        return None
    entries.sort(key=lambda e: (model_version(e), e.precision == "int8"), reverse=True)
    return entries[0]


def resolve(options, *, render_size: int = 256, render_background: Any = None):
    """``(Resolved, estimator)`` for a validated :class:`avatarizer.api.Options`.

    Raises ``ValueError`` for contradictory options, ``RuntimeError`` for a
    device that is not there, :class:`ModelError` for missing or bad model files.
    """
    from .face import resolve_estimator

    o = options
    manifest = None
    if o.estimator != "artist":
        manifest = _load_manifest(o.models_dir)
    else:
        _check_models_dir(o.models_dir)  # (unused by the artist, but a typo all the same)
    estimator, reason = resolve_estimator(o, manifest)
    providers: tuple = ()
    entries: tuple = ()
    attrs = None
    if estimator.name == "artist":
        if o.backend == "tensorrt":
            raise ValueError("backend='tensorrt' runs the shipped TensorRT engines, but the face "
                             f"estimator is the auto-artist ({reason}); use backend='onnxruntime'.")
        if o.device == "cuda":
            raise RuntimeError("device='cuda' was asked for, but no network runs: the face estimator is "
                               f"the auto-artist ({reason}), which runs on the CPU; use device='auto' "
                               "or 'cpu'.")
        if o.precision not in ("auto", "fp32"):
            raise ValueError(f"precision={o.precision!r} applies to the shipped models, but the face "
                             f"estimator is the auto-artist ({reason}), which computes in float32/64.")
        device = "cpu"
        manifest = None  # the artist's hair is used with the artist's face
    else:
        if o.backend == "tensorrt":
            if o.device == "cpu":
                raise ValueError("backend='tensorrt' needs an NVIDIA GPU; device='cpu' contradicts it.")
            from ..runtime.tensorrt import cuda_status

            ok, why = cuda_status()
            if not ok:  # (before the engines are looked for: no engine ships for a machine without a GPU)
                raise RuntimeError(f"backend='tensorrt' needs an NVIDIA GPU with CUDA; none found: {why}")
            device = "cuda"
        else:
            from ..runtime import resolve_providers

            providers = tuple(resolve_providers(o.device))  # RuntimeError for 'cuda' without CUDA
            device = "cuda" if providers[0] != "CPUExecutionProvider" else "cpu"
        entries = face_entries(manifest, estimator.ROLE, o.backend, o.precision, device)
        attrs = attributes_entry(manifest)
    max_faces = o.max_faces or (1 if o.mode == "video" else 4)
    resolved = Resolved(
        backend=o.backend, device=o.device, device_resolved=device, precision=o.precision,
        crop_size=o.crop_size, smoothing=Smoothing.coerce(o.smoothing), mode=o.mode, max_faces=int(max_faces),
        estimator=o.estimator, estimator_resolved=estimator.name, color_order=o.color_order,
        tracker=o.tracker, models_dir=o.models_dir, estimator_reason=reason, providers=providers,
        manifest=manifest, face_entries=entries, attributes_entry=attrs, render_size=int(render_size),
        render_background=render_background,
        exaggeration=None if o.exaggeration is None else float(o.exaggeration), child_head=bool(o.child_head))
    return resolved, estimator


def _check_models_dir(folder) -> None:
    """:class:`ModelError` when the app named a ``models_dir`` that is not a folder."""
    if folder is not None and not Path(folder).is_dir():
        raise ModelError(f"models_dir {str(folder)!r:.200} is not a folder (it does not exist, or is a file)")


def _load_manifest(folder):
    """The verified manifest of ``folder`` (the package's by default), or None
    when there is none; a manifest that exists but fails verification, or a
    ``folder`` that is not a folder, raises :class:`ModelError` (never a
    silent fallback to the artist)."""
    import os

    from ..runtime import DEFAULT_FOLDER, MANIFEST_NAME, Manifest

    try:
        path = (Path(folder) if folder is not None else DEFAULT_FOLDER) / MANIFEST_NAME
        present = os.path.lexists(path)  # (a folder, a device or a broken link there: Manifest.load refuses it)
        missing = folder is not None and not path.parent.is_dir()
    except (OSError, TypeError, ValueError):
        present, missing = True, False  # let Manifest.load say what is wrong with the folder
    if missing:  # a folder the app named that is not there (a typo, a file): not a quiet fall back to the artist
        _check_models_dir(folder)
    if not present:
        return None
    return Manifest.load(folder)
