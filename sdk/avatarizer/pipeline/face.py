"""Stage 2, face (encode → map → decode): aligned face → the 483 face parameters.

Two interchangeable estimators implement :class:`FaceEstimator`:

* :class:`ArtistFaceEstimator` -- the auto-artist (:mod:`avatarizer.artist`)
  fitted to the landmarks and the crop. Works today, with no model files. Its
  whole fit (face, hair and accessories) runs here and is booked as
  ``encode``; the hair stage reuses it.
* :class:`ModelFaceEstimator` -- the shipped networks, through ONNX Runtime
  (or TensorRT engines). It reads ``sdk/avatarizer/models/manifest.json``
  (see :mod:`avatarizer.runtime`) and uses, in this order:

  1. a fused model of role ``"image_to_face"`` (E_s, F and D_t in one graph),
     booked as ``encode``; or
  2. a model of role ``"encoder"`` (booked as ``encode``) followed by one of
     role ``"mapper_decoder"`` (booked as ``map_decode``).

  Expected tensors (names are read from the model, so these are the
  documented defaults): input ``crop``, float32 N×3×S×S (S = 96 by default,
  whatever the model declares), RGB, normalised to [-1, 1] (``x / 127.5 - 1``)
  unless the model's embedded description gives another ``normalisation``;
  output ``face``, N×483 in the normalised [-1, 1] space, mapped back with
  ``schema.denormalize(out, schema.FACE)``. The crop is made as in training
  (``avatarizer_export``): the canonical crop at :data:`SOURCE_CROP` (128) px,
  resized to S by antialiased bilinear filtering (PyTorch's
  ``interpolate(..., mode="bilinear", antialias=True)``, reimplemented here in
  NumPy: :func:`resize_aa`). Without the manifest the estimator is
  unavailable, with that reason (:meth:`ModelFaceEstimator.availability`).

* :class:`HybridFaceEstimator` -- the shipped networks for the face's
  appearance (iris, brow and lid colours, shading, line weights), the
  artist's drawing of the landmarks for its geometry (outline, eyes, brows,
  nose, lips: the identity-carrying part,
  :func:`avatarizer.artist.core.geometry_mask`) and the artist's colour
  measurements (the skin on the lit upper cheek,
  :func:`avatarizer.artist.core.skin_mask`, and the lips,
  :func:`~avatarizer.artist.core.lip_mask`, where their colour reads as lips,
  :func:`avatarizer.artist.colour.lips_plausible`; the model's where the
  cheeks are not in the crop or the colour is not a lip's: tape, a grey
  microphone, a black-and-white photo). The landmarks exist
  anyway (alignment computes them); this pass is booked in ``map_decode``.
  The model's other points (its shading) follow the landmark geometry by
  the affine map between the two drawings; the artist's glasses decision is
  kept for the hair stage (``Face.artist_glasses``). It keeps the
  artist's likeness where the model regresses to the mean
  (``docs/report``), so it is what ``"auto"`` picks when the model ships.

``estimator="auto"`` takes the hybrid when the manifest exists and lists an
``image_to_face`` (or encoder + mapper_decoder) model, otherwise the artist,
and says which and why (:attr:`FaceStage.estimator_reason`). A manifest that
exists but fails verification is an error, never a silent fallback.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

import numpy as np

from .. import schema
from ..errors import ModelError
from .base import Stage, beside
from .state import FrameState

FACE_DIM = schema.FACE.stop - schema.FACE.start
#: Normalisation used when a model's description gives none: RGB in [-1, 1].
DEFAULT_NORMALISATION = {"scale": 2.0 / 255.0, "mean": (1.0, 1.0, 1.0), "std": (1.0, 1.0, 1.0),
                         "colour_order": "RGB"}
DEFAULT_INPUT_SIZE = 96
#: Side of the canonical crop the training crops were cut at before resizing.
SOURCE_CROP = 128


def _aa_weights(src: int, dst: int) -> np.ndarray:
    """(dst, src) weights of antialiased bilinear resizing (a triangle filter
    widened by the scale when shrinking; PyTorch/PIL convention,
    align_corners=False)."""
    scale = src / dst
    support = max(scale, 1.0)
    centre = (np.arange(dst) + 0.5) * scale
    x = np.arange(src) + 0.5
    w = np.clip(1.0 - np.abs(x[None, :] - centre[:, None]) / support, 0.0, None)
    return (w / w.sum(1, keepdims=True)).astype(np.float32)


def resize_aa(images: np.ndarray, size: int) -> np.ndarray:
    """N×H×H×C (or H×H×C) images → float32 N×size×size×C, antialiased bilinear."""
    x = np.asarray(images, np.float32)
    single = x.ndim == 3
    if single:
        x = x[None]
    if x.shape[1] == size and x.shape[2] == size:
        out = x
    else:
        wy = _aa_weights(x.shape[1], size)
        wx = _aa_weights(x.shape[2], size)
        out = np.einsum("ih,nhwc,jw->nijc", wy, x, wx, optimize=True)
    return out[0] if single else out


class FaceEstimator:
    """Aligned faces → face parameters.

    ``estimate(faces, state)`` takes the frame's
    :class:`~avatarizer.pipeline.state.Face` results and returns (n, 483)
    float32 in schema units; it may store full fits in each face's
    ``artist_params``, and books its time in ``state.timings`` (``encode``,
    ``map_decode``).
    """

    name = "estimator"
    #: The crop size the estimator reads (pixels).
    crop_size = 0
    providers: list = []
    precision = "fp32"

    def prepare(self, options) -> None:
        self.options = options

    def estimate(self, faces: Sequence, state: FrameState) -> np.ndarray:
        raise NotImplementedError

    def close(self) -> None:
        pass


def artist_style(options, crop_size: bool):
    """The artist's style for ``options``: its ``exaggeration`` and, with ``crop_size``, its crop size."""
    from ..artist import ArtistStyle

    style = ArtistStyle()
    if crop_size and getattr(options, "crop_size", None):
        style = style.replace(crop_size=int(options.crop_size))
    if getattr(options, "exaggeration", None) is not None:
        style = style.replace(exaggeration=float(options.exaggeration))
    return style


class ArtistFaceEstimator(FaceEstimator):
    """The auto-artist as the face estimator (NumPy/OpenCV on the CPU)."""

    name = "artist"
    providers: list = []
    precision = "fp32"

    def prepare(self, options) -> None:
        from ..artist import AutoArtist

        super().prepare(options)
        style = artist_style(options, crop_size=True)
        self.artist = AutoArtist(style)
        self.crop_size = int(style.crop_size)

    def fit(self, face) -> np.ndarray:
        return self.artist.fit(face)

    def estimate(self, faces, state: FrameState) -> np.ndarray:
        with state.timer("encode"):  # (with the artist's own age: no regressor gives one)
            fits = [self.artist.fit_with_age(f.aligned) for f in faces]
        for f, (fit, age) in zip(faces, fits):
            f.artist_params, f.artist_age = fit, age
        with state.timer("map_decode"):
            out = np.stack([p[schema.FACE] for p, _ in fits]) if fits else np.zeros((0, FACE_DIM), np.float32)
        return out.astype(np.float32)


from ..artist.core import exaggerate_params  # noqa: E402


class ModelFaceEstimator(FaceEstimator):
    """The shipped networks (see the module doc). ``folder`` overrides the models folder."""

    name = "model"
    ROLE = "image_to_face"

    def __init__(self, folder: str | Path | None = None):
        self.folder = Path(folder) if folder is not None else None
        self.sessions: list = []

    # ------------------------------------------------------------ availability
    @classmethod
    def availability(cls, folder: str | Path | None = None, manifest=None) -> tuple[bool, str]:
        """(True, what will be used) or (False, why not): from a loaded
        ``manifest`` when given (:func:`avatarizer.pipeline.config.resolve`
        loads it once), else from the folder's manifest JSON alone (cheap: no
        file is hashed)."""
        from ..runtime import DEFAULT_FOLDER, MANIFEST_NAME

        path = (Path(folder) if folder is not None else DEFAULT_FOLDER) / MANIFEST_NAME
        if manifest is not None:
            roles = {e.role for e in manifest.models.values()}
        else:
            if not path.is_file():
                return False, f"no shipped models ({path} not found; export them with avatarizer-export)"
            try:
                doc = json.loads(path.read_text(encoding="utf-8"))
                roles = {e.get("role") for e in doc.get("models", {}).values() if isinstance(e, dict)}
            except (OSError, ValueError, AttributeError) as exc:
                return True, f"{path} is unreadable ({exc}); loading it will fail"  # surface the error
        if cls.ROLE in roles:
            return True, f"shipped {cls.ROLE!r} model listed in {path}"
        if {"encoder", "mapper_decoder"} <= roles:
            return True, f"shipped 'encoder' and 'mapper_decoder' models listed in {path}"
        return False, (f"{path} lists no {cls.ROLE!r} model (nor an encoder + mapper_decoder pair); "
                       f"roles present: {sorted(r for r in roles if r)}")

    # ------------------------------------------------------------ prepare
    def prepare(self, options) -> None:
        """Opens the sessions of ``options.face_entries`` (chosen, with their
        precision, by :func:`avatarizer.pipeline.config.resolve`) with
        ``options.providers``."""
        super().prepare(options)
        from ..artist import ArtistStyle

        e = getattr(options, "exaggeration", None)
        self.exaggeration = 1.0 if e is None else float(e) / ArtistStyle().exaggeration
        entries = list(getattr(options, "face_entries", ()) or ())
        if not entries:
            raise ModelError(f"estimator={self.name!r} needs the face networks' manifest entries "
                             "(options from avatarizer.pipeline.config.resolve)")
        precisions = {e.precision for e in entries}
        self.precision = entries[0].precision if len(precisions) == 1 else "+".join(e.precision for e in entries)
        self.entries = entries
        self.sessions = [self._open(e, options) for e in entries]
        self.providers = list(getattr(self.sessions[0], "providers", ["TensorrtEngine"]))
        first = self.sessions[0]
        spec = first.inputs[0]
        size = spec.shape[2] if len(spec.shape) == 4 and isinstance(spec.shape[2], int) and spec.shape[2] > 0 \
            else DEFAULT_INPUT_SIZE
        if getattr(options, "crop_size", None) and int(options.crop_size) != size:
            raise ValueError(f"crop_size={options.crop_size} does not match the model {entries[0].name!r}, "
                             f"which reads {size}×{size} crops; leave crop_size unset")
        self.crop_size = int(size)
        self.input_dtype = spec.dtype if spec.dtype is not None else np.dtype(np.float32)
        self.batch_fixed = isinstance(spec.shape[0], int) and spec.shape[0] > 0
        self.normalisation = _normalisation(entries[0].description, spec.name)

    @staticmethod
    def _open(entry, options):
        if entry.kind == "engine":
            from ..runtime.tensorrt import TensorRTSession

            return TensorRTSession.from_entry(entry)
        from ..runtime import Session

        return Session.from_entry(entry, device=options.device, providers=options.providers or None)

    # ------------------------------------------------------------ run
    def _run(self, sess, x: np.ndarray) -> np.ndarray:
        name = sess.input_names[0]
        want = sess.inputs[0].dtype or np.dtype(np.float32)
        x = x.astype(want, copy=False)
        if self.batch_fixed and len(x) != sess.inputs[0].shape[0]:
            parts = [sess.run({name: x[i:i + 1]}) for i in range(len(x))]
            key = _output_name(sess)
            return np.concatenate([p[key] for p in parts])
        return sess.run({name: x})[_output_name(sess)]

    def _finite(self, i: int, y) -> np.ndarray:
        """``y``, a network's output; :class:`ModelError` when it holds NaN or
        infinity (a broken model file: no face estimate is made from it, and
        it is not bad input, so never a ``ValueError``)."""
        y = np.asarray(y)
        if not np.isfinite(y).all():
            bad = int(np.size(y) - np.isfinite(y).sum())
            raise ModelError(f"model {self.entries[i].name!r} ({self.entries[i].path}) returned {bad} "
                             f"non-finite value(s) (NaN or infinity) of {np.size(y)}: the model file is "
                             "broken (re-export it)")
        return y

    def estimate(self, faces, state: FrameState) -> np.ndarray:
        if not faces:
            return np.zeros((0, FACE_DIM), np.float32)
        from ..runtime import normalise_images

        with state.timer("encode"):
            crops = resize_aa(np.stack([f.aligned.crop(SOURCE_CROP) for f in faces]), self.crop_size)
            x = normalise_images(crops, self.normalisation)
            y = self._finite(0, self._run(self.sessions[0], x))
        with state.timer("map_decode"):
            if len(self.sessions) > 1:
                y = self._finite(1, self._run(self.sessions[1], np.asarray(y, np.float32)))
            y = np.asarray(y, np.float32).reshape(len(faces), -1)
            if y.shape[1] != FACE_DIM:
                raise ModelError(f"model {self.entries[-1].name!r} returned {y.shape[1]} values per face; "
                                 f"the face slice has {FACE_DIM}")
            out = schema.denormalize(np.clip(y, -1.0, 1.0), schema.FACE)
            if self.exaggeration != 1.0:  # relative to what the model learned
                full = np.tile(schema.default(), (len(out), 1))
                full[:, schema.FACE] = out
                out = exaggerate_params(full, self.exaggeration)[:, schema.FACE]
        return out

    def close(self) -> None:
        self.sessions = []


#: the ``glasses`` feature's parameters (a slice of the vector)
GLASSES = schema.FEATURES["glasses"].indices


class HybridFaceEstimator(ModelFaceEstimator):
    """Appearance from the shipped model, geometry from the landmarks (see the module doc)."""

    name = "hybrid"

    def prepare(self, options) -> None:
        from ..artist import AutoArtist
        from ..artist.core import geometry_mask, iris_mask, lip_mask, skin_mask

        super().prepare(options)
        style = artist_style(options, crop_size=False)  # options.crop_size is the model's; the artist reads its own
        self.artist = AutoArtist(style)
        self.geo_size = int(style.crop_size)
        mask = geometry_mask()[schema.FACE]
        kinds = np.array(schema.KINDS[schema.FACE])
        self._geo = np.flatnonzero(mask)
        # the colours the artist measures on the photo: the skin (and its derived colours) and the lips
        self._skin = np.flatnonzero(skin_mask()[schema.FACE])
        self._lips = np.flatnonzero(lip_mask()[schema.FACE])
        self._irises = np.flatnonzero(iris_mask()[schema.FACE])
        self._geo_x = np.flatnonzero(mask & (kinds == "x"))
        self._geo_y = np.flatnonzero(mask & (kinds == "y"))
        # the model's own points outside the geometry (shading): carried along
        other = ~mask
        self._other_x = np.flatnonzero(other & (kinds == "x"))
        self._other_y = np.flatnonzero(other & (kinds == "y"))
        if len(self._geo_x) != len(self._geo_y) or len(self._other_x) != len(self._other_y):
            raise ModelError("schema: x and y coordinates of the face geometry do not pair up")

    def geometry(self, face) -> tuple[np.ndarray, bool, np.ndarray, dict | None]:
        """((483,) the face slice the artist draws from ``face``'s landmarks:
        geometry and skin-derived colours, whether the skin was measured,
        (12,) the ``glasses`` feature the artist draws from the photo's cues,
        the evidence behind it (``accessories.glasses``'s ``cues``: the cue
        vector and a function drawing the glasses as clear ones; None
        without skin))."""
        from ..artist.photo import crop_valid_mask

        size = self.geo_size
        cues: dict = {}
        p, skin = self.artist.fit_geometry_skin(face.canonical, face.crop(size), valid=crop_valid_mask(face, size),
                                                landmarks3d=face.landmarks, glasses=True, cues=cues)
        return p[schema.FACE], skin is not None, p[GLASSES].copy(), (cues or None)

    def estimate(self, faces, state: FrameState) -> np.ndarray:
        if not faces:
            return super().estimate(faces, state)
        if state.stream is None:  # image mode: the network on a side thread while the artist fits the geometry
            probe = FrameState(image=state.image)  # its own timings: the two threads do not share a dict
            network = beside(super().estimate, faces, probe)
            try:
                with state.timer("map_decode"):
                    geos = [self.geometry(f.aligned) for f in faces]
            finally:
                out = network.result()
            for k, v in probe.timings.items():
                state.timings[k] = state.timings.get(k, 0.0) + v
        else:
            out = super().estimate(faces, state)
            with state.timer("map_decode"):
                geos = [self.geometry(f.aligned) for f in faces]
        with state.timer("map_decode"):
            for i, f in enumerate(faces):
                geo, has_skin, f.artist_glasses, f.glasses_cues = geos[i]
                row = out[i]
                if has_skin:  # the skin as measured on the lit cheek (else the model's)
                    row[self._skin] = geo[self._skin]
                if f.glasses_cues and f.glasses_cues.get("lips"):  # the lips' own colour (else the model's)
                    row[self._lips] = geo[self._lips]
                if f.glasses_cues and f.glasses_cues.get("iris"):  # the irises' own colour (the model's regress
                    row[self._irises] = geo[self._irises]  # to the mean: blue eyes were drawn brown)
                # the model's drawing → the landmarks' drawing: least-squares affine map
                src = np.stack([row[self._geo_x], row[self._geo_y]], 1).astype(np.float64)
                dst = np.stack([geo[self._geo_x], geo[self._geo_y]], 1).astype(np.float64)
                A, *_ = np.linalg.lstsq(np.c_[src, np.ones(len(src))], dst, rcond=None)
                pts = np.stack([row[self._other_x], row[self._other_y]], 1).astype(np.float64)
                moved = np.c_[pts, np.ones(len(pts))] @ A
                if np.isfinite(moved).all():
                    row[self._other_x], row[self._other_y] = moved[:, 0], moved[:, 1]
                row[self._geo] = geo[self._geo]
            out = np.clip(out, schema.LO[schema.FACE], schema.HI[schema.FACE]).astype(np.float32)
        return out


def _output_name(sess) -> str:
    names = list(sess.output_names)
    for pref in ("face", "face_params", "z_s", "z"):
        if pref in names:
            return pref
    return names[0]


def _normalisation(description: dict, input_name: str) -> dict:
    for spec in (description or {}).get("inputs", ()):
        if spec.get("name") == input_name and spec.get("normalisation"):
            return dict(spec["normalisation"])
    return dict(DEFAULT_NORMALISATION)


def resolve_estimator(options, manifest=None) -> tuple[FaceEstimator, str]:
    """(estimator, reason) for ``options.estimator`` ("auto", "hybrid", "model",
    "artist"); ``manifest``: the loaded one (None: read the folder's JSON)."""
    folder = getattr(options, "models_dir", None)
    choice = options.estimator
    if choice == "artist":
        return ArtistFaceEstimator(), "estimator='artist' was asked for"
    ok, why = ModelFaceEstimator.availability(folder, manifest)
    if choice in ("model", "hybrid"):
        if not ok:
            raise ModelError(f"estimator={choice!r} is unavailable: {why}")
        cls = ModelFaceEstimator if choice == "model" else HybridFaceEstimator
        return cls(folder), why
    if ok:
        return HybridFaceEstimator(folder), f"auto: {why}; geometry from the landmarks (hybrid)"
    return ArtistFaceEstimator(), f"auto: {why}, so the auto-artist estimates the face"


class FaceStage(Stage):
    """Fills ``state.face_params`` with the estimator chosen by ``options.estimator``."""

    name = "face"

    def __init__(self, estimator: FaceEstimator | None = None):
        self.estimator = estimator
        self.estimator_reason = "given"

    def prepare(self, options) -> None:
        super().prepare(options)
        if self.estimator is None:
            self.estimator, self.estimator_reason = resolve_estimator(options, getattr(options, "manifest", None))
        self.estimator.prepare(options)

    def run(self, state: FrameState) -> None:
        out = self.estimator.estimate(state.faces, state)
        for f, row in zip(state.faces, out):
            f.face_params = row

    def run_batch(self, states) -> None:
        faces = [f for s in states for f in s.faces]
        if not faces or isinstance(self.estimator, ArtistFaceEstimator) or len(states) == 1:
            return super().run_batch(states)
        probe = FrameState(image=states[0].image)
        out = self.estimator.estimate(faces, probe)  # one network call for the whole batch
        for f, row in zip(faces, out):
            f.face_params = row
        for s in states:
            for k, v in probe.timings.items():
                s.timings[k] = s.timings.get(k, 0.0) + v / len(states)

    def close(self) -> None:
        if self.estimator is not None:
            self.estimator.close()
