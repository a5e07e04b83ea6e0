"""The runtime API: :class:`Avatarizer` turns photos and video frames into :class:`Avatar` objects.

::

    from avatarizer import Avatarizer

    av = Avatarizer()                              # image mode, CPU, shipped models or the auto-artist
    avatar = av.from_frame(frame)                  # H×W×3 uint8 RGB; None if no face
    avatar.params                                  # float32 (629,), read-only
    avatar["iris_l.radius"]                        # named access; avatar.named is a schema.Params
    avatar.render(size=512)                        # H×W×4 uint8 RGBA
    avatar.to_svg()                                # str
    avatar.overlay(frame)                          # the avatar drawn over the face (a new frame)

    with Avatarizer(mode="video") as live:         # stable identity, live expressions, smoothing
        for t_ms, frame in camera:                 # strictly increasing t_ms
            avatar = live.from_frame(frame, timestamp_ms=t_ms)
            shown = avatar.overlay(frame) if avatar else frame

    with Avatarizer(mode="video") as live:         # the same, the next frame's landmarks found on a
        for i, avatar in live.stream(frames, timestamps_ms):   # worker while this one is drawn
            shown = avatar.overlay(frames[i]) if avatar else frames[i]

Everything is configured by one :class:`Options` dataclass (or keyword
overrides of it). What was resolved from ``"auto"`` is visible on the
object: :attr:`Avatarizer.estimator` (and :attr:`~Avatarizer.estimator_reason`),
:attr:`~Avatarizer.providers`, :attr:`~Avatarizer.precision`,
:attr:`~Avatarizer.device`.

Input frames follow :func:`avatarizer.imageio.to_rgb_uint8`: RGB by default
(``color_order="bgr"`` for OpenCV frames), uint8 or floats in [0, 1], at
least 32 and at most 8192 pixels a side; anything else (wrong dtype or shape,
NaN, empty or huge frames) raises ``ValueError`` with a plain sentence.
Nothing the caller passes in is modified.

Thread safety: an :class:`Avatarizer` may be shared between threads. In image
mode every thread gets its own MediaPipe graph (created on its first call), so
calls run in parallel and give exactly what serial calls give; in video mode
calls are serialised (one stream has one state), and while a :meth:`Avatarizer.stream`
is being iterated other video calls raise ``RuntimeError``.
"""
from __future__ import annotations

import atexit
import contextlib
import dataclasses
import json
import math
import os
import sys
import threading
import time
import weakref
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Mapping, Sequence

import numpy as np

from . import schema
from .filters import Smoothing
from .hair import attributes_as_drawn, check_settings, hair_length_as_drawn, merged_settings
from .align import MAX_FACES, check_timestamp
from .checks import is_real
from .imageio import COLOR_ORDERS, load_image, to_rgb_uint8
from .video import TrackerOptions

__all__ = ["Options", "Avatarizer", "Avatar", "FaceInfo", "AVATAR_JSON_FORMAT"]

BACKENDS = ("onnxruntime", "tensorrt")
DEVICES = ("auto", "cpu", "cuda")
PRECISIONS = ("auto", "fp32", "fp16", "int8")
ESTIMATORS = ("auto", "hybrid", "model", "artist")
MODES = ("image", "video")
AVATAR_JSON_FORMAT = "avatarizer.avatar"


@dataclass
class Options:
    """Options of :class:`Avatarizer` (all have defaults; ``Avatarizer()`` just works).

    Attributes:
        backend: ``"onnxruntime"`` (default) or ``"tensorrt"`` (prebuilt
            TensorRT engines from the manifest; NVIDIA GPU only).
        device: ``"auto"`` (TensorRT EP > CUDA > CPU, whatever this
            onnxruntime offers), ``"cpu"`` or ``"cuda"`` (an error when CUDA
            is not there: never a silent CPU fallback).
        precision: ``"auto"`` (fp16 then fp32 on a GPU, fp32 then int8 on the
            CPU, among the shipped files), or exactly ``"fp32"``, ``"fp16"``,
            ``"int8"``.
        crop_size: side of the aligned crop the estimator reads; ``None`` =
            the estimator's own (the model's input size; 192 for the artist).
        smoothing: video mode's One Euro filter on expressions and the head
            transform: a :class:`avatarizer.filters.Smoothing`, a
            ``(min_cutoff, beta)`` tuple, or ``None`` for no filtering.
        mode: ``"image"`` (every frame on its own) or ``"video"`` (tracking,
            stable identity, live expressions; needs increasing timestamps).
        max_faces: most faces found per frame; ``None`` = 4 in image mode,
            1 in video mode (MediaPipe keeps detecting while fewer are tracked).
        estimator: ``"auto"`` (``"hybrid"`` when the shipped model's files
            exist, else the auto-artist), ``"hybrid"`` (the model's
            appearance, the face geometry drawn from the landmarks),
            ``"model"`` (the paper's network alone) or ``"artist"``.
        color_order: ``"rgb"`` (default) or ``"bgr"`` (OpenCV frames).
        tracker: video mode's :class:`avatarizer.video.TrackerOptions`
            (identity window and refresh, grace period, expressions, pose).
        models_dir: folder with ``manifest.json``; ``None`` = the package's.
        exaggeration: the likeness control, from faithful (1.0) to
            caricature (up to 2.0): each face's deviation from the population
            mean face is scaled by it. ``None`` = the artist's default (1.25,
            chosen where identity peaks; ``docs/artist.md``), which the
            shipped model was trained on.
        attributes: what the app knows about the person, drawn instead of
            what the attribute regressor decides (a user's correction):
            ``{"glasses": "none" | "reading" | "sunglasses", "beard": bool,
            "moustache": bool, "headwear": bool, "bald": bool, "hair_colour":
            "black" | "brown" | "blond" | "red" | "gray", "hair_length":
            "long" | "short", "age": years 0-100, "skin_tone": Monk step
            1-10, "headwear_kind": "cap" | "beanie" | "brimmed" |
            "scarf" | "turban"}``, any subset (``None`` values: the
            regressor decides; an option's ``headwear_kind`` is taken back
            by a call's ``headwear_kind: None`` or ``headwear: False``, not
            by ``headwear: None``). A ``headwear_kind`` draws headwear of that
            kind (a scarf: a headscarf, hijab or hood over the hair and
            ears, framing the face; a turban: a wrapped dome over the
            crown), in the photo's colours and where the photo shows it.
            For every frame and face; ``from_frame(..., attributes=...)``
            adds to it per call. ``Avatar.attributes`` reports a set value
            with probability 1 and ``"source": "app"``. Needs the attribute
            regressor (the shipped models; not ``estimator="artist"``).
        child_head: draw a child's head taller above the brows, by its age
            (H's estimate combined with the artist's, ``hair.fuse_age``, not
            one read under a face mask, or an ``"age"`` the app set), as children's heads
            are (:func:`avatarizer.proportions.child_head`; default True),
            and under 12 years with a child's face (larger eyes, a smaller
            nose, untinted lips, thinner lids and brows, no folds, a shorter
            neck: :func:`avatarizer.proportions.child_face`);
            False keeps every head at the adult proportions. Where no
            regressor runs (``estimator="artist"``) the artist's own age
            estimate draws it, and the age lines
            (:meth:`avatarizer.artist.AutoArtist.fit_with_age`; none where
            the artist finds the cheeks covered, a face mask: a white mask
            can be missed).
    """

    backend: str = "onnxruntime"
    device: str = "auto"
    precision: str = "auto"
    crop_size: int | None = None
    smoothing: Any = field(default_factory=Smoothing)
    mode: str = "image"
    max_faces: int | None = None
    estimator: str = "auto"
    color_order: str = "rgb"
    tracker: TrackerOptions = field(default_factory=TrackerOptions)
    models_dir: str | Path | None = None
    exaggeration: float | None = None
    attributes: Mapping[str, Any] | None = None
    child_head: bool = True

    def validate(self) -> None:
        """Raises ``ValueError`` with a plain sentence for any bad option."""
        for name, allowed in (("backend", BACKENDS), ("device", DEVICES), ("precision", PRECISIONS),
                              ("mode", MODES), ("estimator", ESTIMATORS), ("color_order", COLOR_ORDERS)):
            v = getattr(self, name)
            # (a string: a 0-d array compared equal by broadcasting, was accepted and failed later, or named
            # another option: mode=np.array("video") -> "prefetch_segmentation must be True or False")
            if not isinstance(v, str) or v not in allowed:
                raise ValueError(f"{name} must be one of {', '.join(repr(a) for a in allowed)}; got {v!r}.")
        if self.crop_size is not None and (isinstance(self.crop_size, bool) or not isinstance(
                self.crop_size, (int, np.integer)) or not 32 <= self.crop_size <= 1024):
            raise ValueError(f"crop_size must be None or an integer in [32, 1024], got {self.crop_size!r}.")
        if self.max_faces is not None and (isinstance(self.max_faces, bool) or not isinstance(
                self.max_faces, (int, np.integer)) or not 1 <= self.max_faces <= MAX_FACES):
            raise ValueError(f"max_faces must be None or an integer in 1..{MAX_FACES}, got {self.max_faces!r}.")
        if self.models_dir is not None and (not isinstance(self.models_dir, (str, os.PathLike))
                                            or not os.fspath(self.models_dir)):
            # ("" would be the working folder: an unset setting, not a choice)
            raise ValueError(f"models_dir must be None or a folder path, got {self.models_dir!r:.60}.")
        e = self.exaggeration
        if e is not None and (isinstance(e, bool) or not is_real(e) or not 0.5 <= float(e) <= 2.0):
            raise ValueError(f"exaggeration must be None or a number in [0.5, 2], got {e!r}.")
        check_settings(self.attributes)
        if not isinstance(self.child_head, (bool, np.bool_)):
            raise ValueError(f"child_head must be True or False, got {self.child_head!r:.40}.")
        Smoothing.coerce(self.smoothing)
        if not isinstance(self.tracker, TrackerOptions):
            raise ValueError(f"tracker must be a TrackerOptions, got {type(self.tracker).__name__}.")


class _ReadOnlyDict(dict):
    """``av.options.attributes``: the settings as the Avatarizer normalised
    them, read-only (``TypeError`` on a change through its methods), a plain
    dict in ``copy``, ``copy.deepcopy`` and pickles; ``dataclasses.asdict``
    and ``astuple`` keep it read-only (they remake its type). A
    ``mappingproxy`` made those four fail (a review, session 76)."""

    __slots__ = ("_filled",)

    def __init__(self, *args, **kwargs):
        if getattr(self, "_filled", False):  # (__init__ again refilled it)
            self._read_only()
        super().__init__(*args, **kwargs)
        self._filled = True

    def _read_only(self, *args, **kwargs):
        raise TypeError("an Avatarizer's attribute settings are read-only: make a new Avatarizer")

    __setitem__ = __delitem__ = clear = pop = popitem = setdefault = update = __ior__ = _read_only

    def __copy__(self):
        return dict(self)

    def __deepcopy__(self, memo):
        import copy

        return {copy.deepcopy(k, memo): copy.deepcopy(v, memo) for k, v in self.items()}

    def __reduce__(self):
        return dict, (dict(self),)


#: the options objects Avatarizers were made with, by id (sealed: :class:`_Made`); a registry, not a flag in
#: the object, so ``vars(av.options)`` shows the options alone and ``dataclasses.replace`` makes an open one
_SEALED: "weakref.WeakValueDictionary[int, Options]" = weakref.WeakValueDictionary()
_MADE_CLASSES: dict = {}  # an options class -> its made counterpart (_made_class)


class _Made:
    """Mixed into the class of the options an :class:`Avatarizer` was made
    with (``av.options``, :func:`_made_options`): its pipeline was built from
    them once, so setting one afterwards is an ``AttributeError``
    (``color_order`` was read again on every call and the rest never:
    changing the colour order took effect, the exaggeration or the
    attributes silently did not; a review, session 76). Equal to, and shown
    as, the options they are (an app's subclass of :class:`Options` too);
    copies and pickles are of that class, open to change, as are
    ``dataclasses.replace(av.options, ...)``'s."""

    _base: type = Options

    def __setattr__(self, name, value):
        if _SEALED.get(id(self)) is self:
            raise AttributeError(f"an Avatarizer's options are the ones it was made with; {name} cannot be set "
                                 "afterwards: make a new Avatarizer (Avatarizer(options=dataclasses.replace("
                                 f"av.options, {name}=...)))")
        super().__setattr__(name, value)

    def __delattr__(self, name):
        if _SEALED.get(id(self)) is self:
            raise AttributeError(f"an Avatarizer's options are the ones it was made with; {name} cannot be "
                                 "deleted")
        super().__delattr__(name)

    def __eq__(self, other):
        base = type(self)._base
        if not isinstance(other, base):
            return NotImplemented
        return all(getattr(self, f.name) == getattr(other, f.name) for f in dataclasses.fields(base))

    def __reduce_ex__(self, protocol):
        # copies and pickles are of the options' own class, open to change, with the state its own
        # __getstate__ gives; the attributes a plain dict again
        import copyreg

        rv = super().__reduce_ex__(protocol)
        if not (isinstance(rv, tuple) and rv and rv[0] in (copyreg.__newobj__, copyreg._reconstructor)):
            return rv  # (the class's own __reduce__)
        state = rv[2] if len(rv) > 2 else None
        if isinstance(state, dict):
            state = {k: dict(v) if isinstance(v, _ReadOnlyDict) else v for k, v in state.items()}
        return _options_of, (type(self)._base, state)


def _options_of(cls: type, state) -> Options:
    """An options object of ``cls`` holding ``state`` (:meth:`_Made.__reduce_ex__`), set as pickle sets
    it (``__setstate__`` where the class has one), no ``__init__`` run."""
    obj = cls.__new__(cls)
    if state is not None:
        if hasattr(obj, "__setstate__"):
            obj.__setstate__(state)
        else:
            obj.__dict__.update(state)
    return obj


def _made_class(base: type) -> type:
    """``base`` (Options or an app's subclass of it) with :class:`_Made` mixed in, shown by its name, hashed
    as ``base`` hashes (Options' dataclass: not at all; an app's subclass may define its own)."""
    cls = _MADE_CLASSES.get(base)
    if cls is None:
        cls = _MADE_CLASSES[base] = type(base.__name__, (_Made, base), {
            "_base": base, "__qualname__": base.__qualname__, "__module__": base.__module__,
            "__hash__": base.__hash__})
    return cls


def _made_options(options: Options) -> Options:
    """A sealed copy of ``options`` (:class:`_Made`); an app's subclass that
    keeps fields in slots (``@dataclass(slots=True)``, ``__slots__``) is
    copied as it is, unsealed (its fields are not in a ``__dict__``)."""
    base = type(options)._base if isinstance(options, _Made) else type(options)
    if any("__slots__" in vars(c) for c in base.__mro__ if c is not object):
        import copy

        return copy.copy(options)
    cls = _made_class(base)
    made = cls.__new__(cls)
    made.__dict__.update(vars(options))
    _SEALED[id(made)] = made
    return made


#: why ``attributes`` cannot be set (the pipeline's hair stage says what it uses instead)
_NO_SETTINGS = ("attributes can only be set with the attribute regressor (the shipped models, estimator "
                "'hybrid' or 'model'); here {}.")


# --------------------------------------------------------------------------- Avatar
@dataclass(frozen=True)
class FaceInfo:
    """Where the avatar's face was in its frame.

    Attributes:
        box: ``(x0, y0, x1, y1)`` landmark bounding box in frame pixels.
        roll, yaw, pitch: head pose in degrees (see :class:`avatarizer.align.AlignedFace`).
        transform: (2, 3) canonical face frame → frame pixels (smoothed in
            video mode); ``render(..., transform=...)`` draws with it.
        frame_shape: ``(height, width)`` of the frame.
        index: rank of the face by size in its frame (0 = largest).

    Made by the SDK, or by an app (``Avatar(params, FaceInfo(...))``):
    ``ValueError`` names the first bad field (as :meth:`from_dict`); the
    numbers are kept as floats and ints, the transform as a read-only
    float64 copy.
    """

    box: tuple
    roll: float
    yaw: float
    pitch: float
    transform: np.ndarray
    frame_shape: tuple
    index: int = 0

    def __post_init__(self):
        # (checked here, not only in from_dict: a FaceInfo an app made with a NaN roll or a 3x3 transform
        # failed later, a TypeError out of overlay() or repr(), or JSON from_json refused)
        from .imageio import MAX_SIDE, MIN_SIDE
        from .native import _transform as renderer_transform

        def numbers(key, shape):
            v = getattr(self, key)
            if isinstance(v, np.ndarray):
                ok = v.dtype.kind in "iuf"
            else:
                # (rows: sequences, or arrays of at least one dimension: a 0-d array is a number, and
                # iterating it was a TypeError out of FaceInfo(box=(np.array(1.0), ...)))
                def row(r):
                    return isinstance(r, (list, tuple)) or (isinstance(r, np.ndarray) and r.ndim >= 1)

                rows = v if isinstance(v, (list, tuple)) and all(row(r) for r in v) else [v]
                ok = all(row(r) and all(is_real(x) for x in r) for r in rows)
            try:
                arr = np.array(v, dtype=np.float64) if ok else None
            except (TypeError, ValueError, OverflowError):
                arr = None
            if arr is None or arr.shape != shape or not np.isfinite(arr).all():
                raise ValueError(f"face.{key} must be {'×'.join(map(str, shape)) or 'one'} finite number(s), "
                                 f"got {v!r:.80}")
            return arr

        box = numbers("box", (4,))
        if not (box[0] <= box[2] and box[1] <= box[3]):
            raise ValueError(f"face.box must be (x0, y0, x1, y1) with x0 <= x1 and y0 <= y1, got {box.tolist()}")
        for key in ("roll", "yaw", "pitch"):
            v = getattr(self, key)
            if not is_real(v) or abs(float(v)) > 360.0:
                raise ValueError(f"face.{key} must be a finite angle in degrees, got {v!r:.80}")
            object.__setattr__(self, key, float(v))
        try:  # (the renderer's own bounds and invertibility: beyond them overlay() met NaN, a useless error)
            tf = renderer_transform(numbers("transform", (2, 3)))
        except ValueError as exc:
            raise ValueError(str(exc) if str(exc).startswith("face.") else f"face.{exc}") from None
        shape = self.frame_shape
        if not isinstance(shape, (list, tuple)) or len(shape) != 2 or not all(
                isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_))
                and MIN_SIDE <= v <= MAX_SIDE for v in shape):
            # (from MIN_SIDE: a frame smaller than any the SDK reads could never be overlaid)
            raise ValueError(f"face.frame_shape must be [height, width], whole numbers in {MIN_SIDE}..{MAX_SIDE}, "
                             f"got {shape!r:.80}")
        index = self.index
        if isinstance(index, (bool, np.bool_)) or not isinstance(index, (int, np.integer)) \
                or not 0 <= index < 1 << 16:
            raise ValueError(f"face.index must be a non-negative whole number, got {index!r:.80}")
        object.__setattr__(self, "box", tuple(box.tolist()))
        object.__setattr__(self, "transform", _read_only(tf))
        object.__setattr__(self, "frame_shape", (int(shape[0]), int(shape[1])))
        object.__setattr__(self, "index", int(index))

    @classmethod
    def _trusted(cls, box: tuple, roll: float, yaw: float, pitch: float, transform: np.ndarray,
                 frame_shape: tuple, index: int) -> "FaceInfo":
        """One the SDK made from a face it found (floats, ints and a read-only
        float64 transform already): not checked again (40 µs a video frame)."""
        self = object.__new__(cls)
        for k, v in zip(("box", "roll", "yaw", "pitch", "transform", "frame_shape", "index"),
                        (box, roll, yaw, pitch, transform, frame_shape, index)):
            object.__setattr__(self, k, v)
        return self

    def __reduce__(self):  # (through the constructor: an unpickled transform was writable and unchecked)
        return (FaceInfo, (self.box, self.roll, self.yaw, self.pitch, self.transform, self.frame_shape, self.index))

    # (the generated comparison compared the transforms as arrays: "truth value of an array is ambiguous",
    # and hashing one raised TypeError: unhashable numpy array)
    def __eq__(self, other) -> bool:
        if not isinstance(other, FaceInfo):
            return NotImplemented
        return (tuple(self.box) == tuple(other.box) and (self.roll, self.yaw, self.pitch, self.index)
                == (other.roll, other.yaw, other.pitch, other.index)
                and tuple(self.frame_shape) == tuple(other.frame_shape)
                and np.array_equal(np.asarray(self.transform, np.float64), np.asarray(other.transform, np.float64)))

    def __hash__(self) -> int:  # (values, not bytes: 0.0 and -0.0 are equal, so they hash alike)
        return hash((tuple(self.box), self.roll, self.yaw, self.pitch, tuple(self.frame_shape), self.index,
                     tuple(np.asarray(self.transform, np.float64).ravel().tolist())))

    def to_dict(self) -> dict:
        return {"box": [float(v) for v in self.box], "roll": float(self.roll), "yaw": float(self.yaw),
                "pitch": float(self.pitch), "transform": np.asarray(self.transform, float).tolist(),
                "frame_shape": [int(v) for v in self.frame_shape], "index": int(self.index)}

    @classmethod
    def from_dict(cls, d: dict) -> "FaceInfo":
        """The inverse of :meth:`to_dict`; ``ValueError`` names the first bad field."""
        if not isinstance(d, dict):
            raise ValueError(f"face must be an object, got {type(d).__name__}")
        missing = [k for k in ("box", "roll", "yaw", "pitch", "transform", "frame_shape") if k not in d]
        if missing:
            raise ValueError(f"face lacks {', '.join(missing)}")

        shape = d["frame_shape"]
        if not isinstance(shape, list):  # (the values: checked by the constructor)
            raise ValueError(f"face.frame_shape must be [height, width], got {shape!r:.80}")
        return cls(d["box"], d["roll"], d["yaw"], d["pitch"], d["transform"], tuple(shape), d.get("index", 0))


def _fresh(state) -> tuple | None:
    """``(face, transform, params, face_index)`` of a video frame with the
    face (the tracker's output on it), what its avatar's place and attributes
    are made of (``StreamState.last_fresh``); None for a frame without it."""
    tr = state.tracked
    return (state.faces[0], tr.transform, tr.params, state.face_index or 0) if state.faces and tr is not None \
        else None


def _own_copy(value):
    """``value`` with every dict and list in it copied (what ``Avatar.attributes``
    holds: dicts of numbers and strings; 4x faster than ``copy.deepcopy``)."""
    if isinstance(value, dict):
        return {k: _own_copy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_own_copy(v) for v in value]
    return value


def _public_attributes(face) -> dict | None:
    """``Avatar.attributes`` of a pipeline :class:`~avatarizer.pipeline.state.Face` (None without a regressor)."""
    attrs = getattr(face, "attributes", None)
    if attrs is None:
        return None
    from .hair import public_attributes

    return public_attributes(attrs)


class Avatar:
    """One avatar: 629 parameters, drawable at any size, plus where its face was.

    Attributes:
        params: float32 (629,), read-only (``avatar.params.copy()`` to edit, or
            :attr:`named`).
        face: :class:`FaceInfo` or ``None`` (avatars loaded from JSON without it).
        stale: True when video mode repeated an earlier avatar because the
            face was lost on this frame (within the grace period).
        expression: video mode: the (smoothed) expression signals by name
            (:data:`avatarizer.expressions.SIGNALS`); ``None`` in image mode.
        attributes: what the attribute regressor H (and, in the hybrid,
            the facial-hair, hat, hair-colour and skin-tone networks) saw in the photo, or
            ``None`` (no regressor: auto-artist estimator, or loaded from
            JSON): ``{"glasses", "beard", "moustache", "headwear", "bald",
            "hair_colour", "gender", "age"}`` plus ``"skin_tone"`` and
            ``"hair_length"`` where the model has them (``"hair_length"``
            also on a tight crop in the hybrid, read by the tight crops'
            hair-length network), each ``{"value",
            "probability"}`` (the calibrated probability of that value; age
            and skin tone are regressed, their probability ``None``), with
            ``probabilities`` of every class for glasses and hair colour.
            For glasses, beard, moustache, headwear and bald the value is
            what the avatar shows (drawn only when the probability clears a
            threshold chosen for precision); so is the hair length's (the
            hairstyle drawn: where the model read the other, its probability
            of the value shown and ``"decided_by": "the hairstyle drawn"``; a
            wholly bald style the hairstyle search drew where the model did
            not decide bald is reported bald, its probability the model's,
            with the same ``decided_by``). An attribute the app set
            (``Options.attributes``) has that value, probability 1 (``None``
            for age and skin tone) and ``"source": "app"``. See
            :func:`avatarizer.hair.public_attributes`.
    """

    __slots__ = ("_params", "face", "stale", "expression", "color_order", "attributes")

    def __reduce__(self):  # (through the constructor: pickle and deepcopy left the params writable, unchecked)
        return (_avatar, (self._params, self.face, self.stale, self.expression, self.color_order, self.attributes))

    def __init__(self, params, face: FaceInfo | None = None, *, stale: bool = False,
                 expression: dict | None = None, color_order: str = "rgb", attributes: dict | None = None):
        self._params = _read_only(schema.validate(params).copy())
        self.face = face
        self.stale = bool(stale)
        self.expression = expression
        self.color_order = color_order
        self.attributes = attributes

    def __setattr__(self, name, value):
        # ``face`` and ``color_order`` checked when set too, as the constructor checks them: set afterwards
        # they skipped it (a dict face made to_json(), overlay() and repr() raise AttributeError; "BGR"
        # wrote a JSON from_json refuses: a review, session 65)
        if name == "face" and value is not None and not isinstance(value, FaceInfo):
            raise ValueError(f"face must be a FaceInfo or None, got {type(value).__name__}")
        if name == "color_order" and (not isinstance(value, str) or value not in COLOR_ORDERS):
            raise ValueError(f"color_order must be one of {', '.join(COLOR_ORDERS)}, got {value!r:.40}")
        object.__setattr__(self, name, value)

    # -- parameters
    @property
    def params(self) -> np.ndarray:
        return self._params

    @property
    def named(self) -> schema.Params:
        """A writable :class:`avatarizer.schema.Params` copy (``.to_dict()``, ``.feature(...)``)."""
        return schema.Params(self._params)

    def __getitem__(self, name: str) -> float:
        return float(self._params[schema.index(name)])

    def __repr__(self) -> str:
        where = ""
        if self.face is not None:
            x0, y0, x1, y1 = self.face.box
            where = f", face box=({x0:.0f}, {y0:.0f}, {x1:.0f}, {y1:.0f}) roll={self.face.roll:.1f}"
        return f"Avatar({schema.PARAM_COUNT} params{where}{', stale' if self.stale else ''})"

    # -- drawing
    def render(self, size: int = 512, background=None, *, width: int | None = None, height: int | None = None,
               roll: bool = False, antialias: str = "best", threads="auto") -> np.ndarray:
        """H×W×4 uint8 RGBA (see :func:`avatarizer.render`, also for
        ``antialias`` and ``threads``). ``roll=True`` tilts the drawing by the
        head roll of its frame."""
        from .render import _size, render

        if not isinstance(roll, (bool, np.bool_)):  # ("no" would read as True)
            raise ValueError(f"roll must be True or False, got {roll!r:.40}")
        if not roll or self.face is None:
            return render(self._params, size, width=width, height=height, background=background,
                          antialias=antialias, threads=threads)
        w, h = _size(size, width, height)
        t = self.face.transform
        # the roll from the canonical y axis (the head's up): equal to decompose's angle for the SDK's own
        # transforms, and upright for a mirrored one (an app's selfie view), which decompose read as 180 degrees
        angle = math.atan2(-float(t[0, 1]), float(t[1, 1]))
        s = 0.5 * min(w, h)
        m = np.array([[s * math.cos(angle), -s * math.sin(angle), 0.5 * w],
                      [s * math.sin(angle), s * math.cos(angle), 0.5 * h]])
        return render(self._params, width=w, height=h, background=background, transform=m, antialias=antialias,
                      threads=threads)

    def to_svg(self, size: float = 512, background=None) -> str:
        """The avatar as an SVG document (a string); ``size`` in points, 1..16384."""
        from .render import to_svg

        return to_svg(self._params, size, background=background)

    def to_lottie(self, size: int = 512, background=None) -> dict:
        """The avatar as a one-frame Lottie (Bodymovin JSON) document (a dict;
        ``json.dumps`` it). Animations: :class:`avatarizer.animation.Animation`."""
        from .animation import Animation

        anim = Animation(size, fps=30, background=background)
        anim.add(self._params)
        return anim.to_lottie()

    def to_pdf(self, size: float = 512, background=None) -> bytes:
        """The avatar as a one-page PDF (bytes); ``size`` in points, 1..14400
        (:func:`avatarizer.render.to_pdf`)."""
        from .render import to_pdf

        return to_pdf(self._params, size, background=background)

    def overlay(self, frame, opacity: float = 1.0, *, color_order: str | None = None,
                antialias: str = "best", threads="auto") -> np.ndarray:
        """The avatar drawn over its face in ``frame`` (following the face's
        position, scale and roll), alpha-blended with ``opacity`` in [0, 1].

        ``frame`` is the frame the avatar came from (same height and width),
        in ``color_order`` (default: the Avatarizer's, normally RGB). Returns a
        new H×W×3 uint8 frame in the same colour order; the input is never
        modified. ``antialias``: 'best' (default) or 'fast' (4x4 edge
        coverage, as ``render(antialias="fast")``: ~20% faster on one thread,
        for a live preview; faint sub-pixel lines come out a little coarser;
        always drawn on the calling thread, so "best" on two threads can be
        quicker on large boxes).
        ``threads``: as for :func:`avatarizer.render` (``"auto"``: the
        avatar's box drawn and blended in bands on 2 threads when it has 384²
        pixels or more, two CPUs are free to this process and no stream is
        running; 1 keeps it on the calling thread).
        """
        from .native import renderer, resolve_threads

        if self.face is None:
            raise ValueError("this avatar has no face position (loaded without one); use render() instead")
        if not is_real(opacity) or not 0.0 <= float(opacity) <= 1.0:
            raise ValueError(f"opacity must be a number in [0, 1], got {opacity!r}")
        if not isinstance(antialias, str) or antialias not in ("best", "fast"):
            raise ValueError(f"antialias must be 'best' or 'fast', got {antialias!r:.40}")
        resolve_threads(threads, 0)  # refuses a bad value before anything else (0 px: no CPU count asked)
        order = self.color_order if color_order is None else color_order  # ('' or 0: refused, not the default)
        # A uint8 H×W×3 array is validated and composited in the caller's own
        # channel order (the avatar's colours are swapped instead of the frame:
        # two full-frame copies fewer); anything else is converted to RGB first.
        direct = isinstance(frame, np.ndarray) and frame.dtype == np.uint8 and frame.ndim == 3 \
            and frame.shape[2] == 3
        if not isinstance(order, str) or order not in COLOR_ORDERS:
            to_rgb_uint8(frame, order)  # raises the documented ValueError
        img = to_rgb_uint8(frame, "rgb" if direct else order)
        swap = direct and order == "bgr"
        h, w = img.shape[:2]
        if (h, w) != tuple(self.face.frame_shape):
            raise ValueError(f"the frame is {w}×{h} pixels but this avatar's face was found in a "
                             f"{self.face.frame_shape[1]}×{self.face.frame_shape[0]} frame")
        # never draw into the caller's memory (a view of it: np.memmap, a subclass, a slice)
        out = img.copy() if _shares(img, frame) else img

        def done(o):
            return o if direct else _to_order(o, order)

        if opacity == 0.0:
            return done(out)
        tf = np.asarray(self.face.transform, np.float64)
        # about the box the avatar covers (canonical [-1.1, 1.1]², in plain
        # floats: a few numpy calls here cost ~0.1 ms right after a render),
        # for the choice of threads
        (a, c, e), (b, d, f) = tf.tolist()
        xs = [a * u + c * v + e for u in (-1.1, 1.1) for v in (-1.1, 1.1)]
        ys = [b * u + d * v + f for u in (-1.1, 1.1) for v in (-1.1, 1.1)]
        area = max(min(max(xs), w) - max(min(xs), 0), 0) * max(min(max(ys), h) - max(min(ys), 0), 0)
        # the native renderer draws only the box of what the avatar draws
        # (hair above the head included; it finds the box itself), at the
        # frame's scale, and blends it straight into `out` (in the caller's
        # channel order, with the opacity and the fade of the bottom edge:
        # shoulders end at canonical y = 1.1): no RGBA image, no blend in numpy
        r = renderer()
        r.threads = resolve_threads(threads, int(area))
        r.overlay_into(self._params, out, tf, box=(0, 0, w, h), opacity=float(opacity),
                       order="bgr" if swap else "rgb", fade=(_OVERLAY_BOTTOM, _OVERLAY_FADE), antialias=antialias)
        return done(out)

    # -- serialisation
    def to_json(self, *, indent: int | None = None) -> str:
        """JSON text: format tag, schema version, every parameter by name, the
        face metadata and the channel order :meth:`overlay` takes frames in
        (``color_order``: a BGR app's avatar read back overlaid red for blue).
        ``indent``: None (one line) or spaces per level, 0-16."""
        if indent is not None and (isinstance(indent, (bool, np.bool_)) or not isinstance(indent, (int, np.integer))
                                   or not 0 <= indent <= 16):
            raise ValueError(f"indent must be None or a whole number of spaces in 0..16, got {indent!r:.40}")
        indent = None if indent is None else int(indent)
        doc = {"format": AVATAR_JSON_FORMAT, "schema_version": schema.VERSION,
               "params": {n: float(v) for n, v in zip(schema.NAMES, self._params)}}
        if self.face is not None:
            doc["face"] = self.face.to_dict()
        doc["color_order"] = self.color_order
        return json.dumps(doc, indent=indent)

    @classmethod
    def from_json(cls, text: str | bytes) -> "Avatar":
        """The inverse of :meth:`to_json`. Refuses (``ValueError``) JSON of
        another parameter-schema version, unknown or missing parameters, and
        non-finite or out-of-range values."""
        try:
            doc = json.loads(text)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"not avatar JSON: {exc}") from None
        except RecursionError:
            raise ValueError("not avatar JSON: nested too deeply") from None
        if not isinstance(doc, dict) or doc.get("format") != AVATAR_JSON_FORMAT:
            raise ValueError(f"not avatar JSON (expected an object with \"format\": \"{AVATAR_JSON_FORMAT}\")")
        version = doc.get("schema_version")
        if isinstance(version, bool) or not isinstance(version, str) or version not in schema.READS:
            raise ValueError(f"this avatar was saved with parameter schema {version!r:.40}, but this SDK "
                             f"uses schema {schema.VERSION!r} and reads {', '.join(schema.READS)}; the "
                             "parameters do not carry over between other versions (re-create the avatar "
                             "from its photo)")
        params = doc.get("params")
        if not isinstance(params, dict):
            raise ValueError("avatar JSON has no \"params\" object")
        unknown = sorted(set(params) - set(schema.NAMES))
        missing = [n for n in schema.NAMES if n not in params]
        if unknown or missing:
            raise ValueError(f"avatar JSON does not match schema {schema.VERSION}: "
                             f"{len(unknown)} unknown parameter(s) {[f'{n:.40}' for n in unknown[:5]]}, "
                             f"{len(missing)} missing {missing[:5]}")  # (a 20 MB name was quoted whole)
        values = []
        for n in schema.NAMES:
            v = params[n]
            if isinstance(v, bool) or not isinstance(v, (int, float)):
                raise ValueError(f"parameter {n!r} must be a number, got {v!r:.80}")
            try:
                f = float(v)
            except OverflowError:  # an integer beyond float range
                raise ValueError(f"parameter {n!r} is out of range ({str(v)[:20]}...)") from None
            if math.isfinite(f) and abs(f) > schema.FLOAT32_MAX:  # (it became inf in float32, with a numpy warning)
                raise ValueError(f"parameter {n!r} is out of range ({f:g})")
            values.append(f)
        face = doc.get("face")
        face = FaceInfo.from_dict(face) if face is not None else None
        order = doc.get("color_order", "rgb")  # (JSON written before it was kept: RGB, the default)
        if not isinstance(order, str) or order not in COLOR_ORDERS:
            raise ValueError(f"avatar JSON's color_order must be one of {', '.join(COLOR_ORDERS)}, got {order!r:.40}")
        return cls(schema.validate_version(np.array(values, np.float32), version), face, color_order=order)


_OVERLAY_BOTTOM = 1.1  # canonical y where the overlaid drawing ends
_OVERLAY_FADE = 0.2    # over this canonical distance


def _shares(converted: np.ndarray, frame) -> bool:
    """Whether ``converted`` (what :func:`to_rgb_uint8` made of ``frame``) is
    ``frame`` or a view of its memory (an ``np.memmap``, a subclass, a slice),
    so that writing to it or keeping it would reach the caller's buffer."""
    return converted is frame or (isinstance(frame, np.ndarray) and np.may_share_memory(converted, frame))


def _to_order(rgb: np.ndarray, order: str) -> np.ndarray:
    return np.ascontiguousarray(rgb[..., ::-1]) if order == "bgr" else rgb


# --------------------------------------------------------------------------- Avatarizer

def _frame_iter(frames, caller: str):
    """An iterator over ``frames`` (a sequence or an N×H×W×C array); ValueError for one frame or a non-iterable."""
    if isinstance(frames, np.ndarray) and frames.ndim == 3:
        raise ValueError(f"{caller}() takes a sequence of frames (or an N×H×W×C array); for one frame "
                         "use from_frame().")
    try:
        return iter(frames)
    except TypeError:
        raise ValueError(f"{caller}() takes an iterable of frames, got {type(frames).__name__}") from None


def _resolved_setting(name: str, doc: str) -> property:
    """A read-only attribute of :class:`Avatarizer` for one of its resolved
    settings (``providers`` a new list each time)."""
    if name == "providers":
        return property(lambda self: list(self._resolved[name]), doc=doc)
    return property(lambda self: self._resolved[name], doc=doc)


class Avatarizer:
    """Portraits and video frames → :class:`Avatar` (see the module doc).

    ``Avatarizer(options=None, **overrides)``: an :class:`Options` and/or
    keyword overrides of its fields, e.g. ``Avatarizer(mode="video",
    smoothing=(1.0, 2.0))``.

    Resolved settings (read-only attributes): :attr:`mode`,
    :attr:`estimator` (``"hybrid"``, ``"model"`` or ``"artist"``) and
    :attr:`estimator_reason`, :attr:`providers` (ONNX Runtime execution
    providers in use; ``[]`` when no network runs), :attr:`precision`,
    :attr:`device` (``"cpu"`` or ``"cuda"``), :attr:`backend`; and
    :attr:`options`, the options it was made with (setting one of them is an
    ``AttributeError``: make a new Avatarizer).
    """

    def __init__(self, options: Options | None = None, **overrides: Any):
        if options is not None and not isinstance(options, Options):
            raise ValueError(f"options must be an avatarizer.Options, got {type(options).__name__}.")
        names = {f.name for f in dataclasses.fields(Options)}
        unknown = sorted(set(overrides) - names)
        if unknown:
            raise ValueError(f"unknown option(s) {', '.join(unknown)}; the options are {', '.join(sorted(names))}.")
        opts = dataclasses.replace(options or Options(), **overrides)
        opts.validate()
        self._settings = check_settings(opts.attributes)  # what the app set, normalised
        self._drawn_settings = merged_settings(self._settings)  # ... and what it implies (a kind is headwear)
        if opts.attributes is not None:  # a read-only copy: the caller's dict may change later
            opts = dataclasses.replace(opts, attributes=_ReadOnlyDict(self._settings))
        self._options = _made_options(opts)  # (read-only: the pipeline below is built from them once)
        self._color_order = opts.color_order  # (each call's frames read in it, as the pipeline was built)
        self._lock = threading.RLock()  # serialises video-mode calls (one stream, one state)
        self._streaming = False  # a stream() is being iterated (video mode): other calls are refused
        self._stream_stop: Callable[[], None] | None = None  # stops that stream's worker (close())
        # that worker and its flag "inside the source's next()" (joined at the interpreter's exit)
        self._stream_worker: tuple[threading.Thread, list] | None = None
        # a stream's worker left inside its source's next() (on_wait ended the stream), and a weak reference to
        # that source: a stream of the same source waits for it (two threads in one generator: ValueError)
        self._orphan: tuple | None = None
        # guards _closed, _active and _callers; reentrant: close() from a signal handler that interrupted
        # this thread while it held the lock
        self._calls = threading.Condition(threading.RLock())
        self._active = 0  # calls in flight: close() waits for them
        self._callers: dict[int, int] = {}  # the threads those calls run on, and how many each
        self._release_pending = False  # close() came from inside a call: the last call to end releases
        self._closed = False
        self._inherited = False  # made in the parent of this forked process (see _after_fork_in_child)
        self._pipeline = None
        self._build()
        _instances.add(self)

    @property
    def options(self) -> Options:
        """The options this Avatarizer was made with (read-only: its pipeline
        was built from them; ``dataclasses.replace(av.options, ...)`` for a new one)."""
        return self._options

    # -- construction
    def _build(self) -> None:
        from .pipeline import build

        pipe = build(self.options)  # options resolved once: pipe.resolved
        r = pipe.resolved
        self._pipeline = pipe
        self._can_set = getattr(pipe["hair"], "mode", None) == "retrieval"
        if self._settings and not self._can_set:
            pipe.close()
            raise ValueError(_NO_SETTINGS.format(pipe["hair"].reason))
        # an Avatarizer dropped without close() still lets go of its MediaPipe
        # graphs, sessions and worker thread when it is garbage-collected
        self._release = weakref.finalize(self, _close_collected, pipe)
        self._release.atexit = False  # not at interpreter exit: the process is ending anyway
        # the resolved settings: read-only (mode and max_faces set afterwards made the calls refuse what
        # they were built for, or fail inside a stream; a review, session 71)
        self._resolved = {"estimator": r.estimator_resolved, "estimator_reason": r.estimator_reason,
                          "providers": tuple(pipe.estimator.providers), "precision": pipe.estimator.precision,
                          "device": r.device_resolved, "backend": r.backend, "mode": r.mode,
                          "max_faces": r.max_faces}

    estimator = _resolved_setting("estimator", "``\"hybrid\"``, ``\"model\"`` or ``\"artist\"``: what estimates the face.")
    estimator_reason = _resolved_setting("estimator_reason", "Why :attr:`estimator` is what it is.")
    providers = _resolved_setting("providers", "ONNX Runtime execution providers in use (a new list each time; "
                                               "``[]`` when no network runs).")
    precision = _resolved_setting("precision", "The face model's precision in use.")
    device = _resolved_setting("device", "``\"cpu\"`` or ``\"cuda\"``.")
    backend = _resolved_setting("backend", "The inference backend of the networks: ``\"onnxruntime\"`` or "
                                           "``\"tensorrt\"``.")
    mode = _resolved_setting("mode", "``\"image\"`` or ``\"video\"``.")
    max_faces = _resolved_setting("max_faces", "The most faces found in a frame.")

    @property
    def identity_worker(self) -> str | None:
        """Video mode: where the identity networks' refreshes compute:
        ``"process"`` (``TrackerOptions.identity_worker``'s default),
        ``"thread"``, ``"inline"`` (no worker: the due frames compute them),
        or ``"thread (no worker process: <why>)"`` once a process
        could not be had; None in image mode, without refreshes
        (``identity_every_ms=0``, ``identity_lock=False``) or after close()."""
        pipe = self._pipeline
        stage = None if pipe is None else pipe.by_name.get("identity")
        return None if stage is None else stage.worker

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        return (f"Avatarizer(mode={self.mode!r}, estimator={self.estimator!r}, device={self.device!r}, "
                f"providers={self.providers}, precision={self.precision!r}, {state})")

    # -- lifecycle
    def __copy__(self):
        # a copy shared the graphs, sessions and stream state: closing it closed the original's
        raise TypeError("An Avatarizer cannot be copied or pickled; create another with the same options "
                        "(Avatarizer(options=av.options)), one in each process.")

    def __deepcopy__(self, memo):  # (it failed on the locks, with an obscure message)
        self.__copy__()

    def __reduce__(self):  # (pickle, e.g. one handed to a process pool: "cannot pickle '_thread.RLock' object")
        self.__copy__()

    def close(self) -> None:
        """Release the MediaPipe graphs and model sessions. Calling it again does nothing.

        Safe while other threads are calling: calls already running finish
        normally (close waits for them); calls that start afterwards raise
        ``RuntimeError``. Called from inside a call of its own thread (a
        signal handler's clean shutdown) it returns at once, and the
        pipeline is let go of when the last running call ends."""
        with self._calls:
            if self._closed:
                return
            self._closed = True
            stop_stream = self._stream_stop
            if stop_stream is not None:  # a stream being iterated: its worker stops reading frames
                stop_stream()
            self._pipeline = None
            if threading.get_ident() in self._callers:
                # called from inside a call of this very thread (a signal handler that interrupted it):
                # waiting would wait for itself, forever; the last call to end releases the pipeline
                self._release_pending = True
                return
            while self._active:
                self._calls.wait()
        self._release_now()  # pipe.close(), once

    def _release_now(self) -> None:
        """The pipeline closed on this thread, once (not by the garbage
        collector's finalizer: :func:`_close_collected`)."""
        got = self._release.detach()
        if got is not None:
            got[2][0].close()

    @property
    def closed(self) -> bool:
        return self._closed

    def __enter__(self) -> "Avatarizer":
        self._check_open()
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _check_open(self):
        pipe = self._pipeline
        if self._inherited and not self._closed:
            from .align import FORKED_MESSAGE

            raise RuntimeError(f"This Avatarizer was made in the parent of this forked process; {FORKED_MESSAGE}")
        if self._closed or pipe is None:
            raise RuntimeError("This Avatarizer is closed; create a new one.")
        return pipe

    def _forked(self) -> None:
        """In a forked child: this object is its parent's. A call running
        in another thread at the fork left its locks held and its count up,
        and no thread of the parent's runs here: the locks and counts start
        afresh (close() waited forever for a call that would never end, a
        call for the lock it held), calls are refused (RuntimeError), and
        close() lets the pipeline be (closing it could wait on a lock or a
        graph thread of the parent's)."""
        self._lock = threading.RLock()
        self._calls = threading.Condition(threading.RLock())
        self._active, self._streaming, self._stream_stop, self._orphan = 0, False, None, None
        self._stream_worker = None
        self._callers, self._release_pending = {}, False
        self._inherited = True
        self._release.detach()
        self._parent_pipeline, self._pipeline = self._pipeline, None  # (kept: not torn down here)

    @contextlib.contextmanager
    def _using(self):
        """The pipeline for one call; close() waits until the call is done."""
        counted, me = False, threading.get_ident()
        try:
            with self._calls:
                # (the interpreter is exiting: a thread that was running when it began starts no call; looked
                # at under the lock the exit's wait for the calls in flight takes after setting it)
                _refuse_at_exit()
                pipe = self._check_open()
                self._active += 1
                self._callers[me] = self._callers.get(me, 0) + 1
                counted = True
            yield pipe
        finally:
            if counted:  # (an interrupt between the count and the call's end still gives it back)
                release = False
                with self._calls:
                    self._active -= 1
                    if self._callers[me] > 1:
                        self._callers[me] -= 1
                    else:
                        del self._callers[me]
                    if not self._active:
                        self._calls.notify_all()
                        release, self._release_pending = self._release_pending, False
                if release:  # (close() came from inside a call: done now that the last one ended)
                    self._release_now()

    def reset(self) -> None:
        """Video mode: start a new stream. The tracked identity, filters,
        cached hairstyle and face tracking are forgotten, and timestamps may
        start again from any value (for example 0)."""
        with self._lock, self._using() as pipe:
            self._check_not_streaming("reset()")
            pipe.reset()

    def _check_not_streaming(self, what: str) -> None:
        if self._streaming:
            raise RuntimeError(f"{what} cannot run while a stream() of this Avatarizer is being iterated "
                               "(one video stream, one state); finish or close() the stream first (a stream "
                               "generator kept in a variable runs on after a break: it.close() or del it).")

    # -- the work
    def run(self, frame, timestamp_ms: float | None = None, face_index: int | None = 0, *,
            render_size: int | None = None, attributes: Mapping[str, Any] | None = None):
        """Lower level: runs the pipeline on one frame and returns its
        :class:`avatarizer.pipeline.FrameState` (one
        :class:`~avatarizer.pipeline.state.Face` result per face in
        ``faces``, the tracker's output in ``tracked``, per-stage timings in
        ms). ``face_index=None`` processes every face (image mode).
        ``render_size``: the render stage also draws the avatar(s) at this size
        (``state.images``, RGBA), as ``bench`` times it. ``attributes``: as
        :meth:`from_frame`'s."""
        from .pipeline import FrameState

        self._check_open()
        image = to_rgb_uint8(frame, self._color_order)
        self._check_call(timestamp_ms, face_index)
        if render_size is not None and (isinstance(render_size, bool) or not isinstance(
                render_size, (int, np.integer)) or not 1 <= render_size <= 8192):
            raise ValueError(f"render_size must be None or a whole number of pixels in 1..8192, got {render_size!r}.")
        state = FrameState(image=image, timestamp_ms=None if timestamp_ms is None else float(timestamp_ms),
                           face_index=face_index, render_size=None if render_size is None else int(render_size),
                           settings=self._settings_for(attributes))
        if self.mode == "video":
            with self._lock, self._using() as pipe:
                self._check_not_streaming("from_frame()/run()")
                pipe.run(state)
                if state.tracked is not None and not state.tracked.stale:  # (a reference: read only if a stale
                    # avatar follows with no avatar made of this frame, e.g. after run() alone)
                    state.stream.last_fresh = _fresh(state)
        else:
            with self._using() as pipe:
                pipe.run(state)
        return state

    def _settings_for(self, attributes) -> dict:
        """The attributes set for one call: the options' with the call's on top
        (a ``None`` value takes an option's setting back)."""
        if attributes is None:
            return self._drawn_settings
        call = check_settings(attributes)  # names checked, None values left out
        if call and not self._can_set:
            raise ValueError(_NO_SETTINGS.format(self._pipeline["hair"].reason))
        return merged_settings(self._settings, {**{k: None for k, v in attributes.items() if v is None}, **call})

    def _check_call(self, timestamp_ms, face_index) -> None:
        if face_index is not None and (isinstance(face_index, bool) or not isinstance(face_index, (int, np.integer))
                                       or face_index < 0):
            raise ValueError(f"face_index must be a non-negative integer, got {face_index!r}.")
        if face_index is not None and face_index >= self.max_faces:  # a face that is never found: not "no face"
            raise ValueError(f"face_index {int(face_index)} is never found: this Avatarizer finds at most "
                             f"max_faces={self.max_faces} faces per frame (the largest first); create it with "
                             f"max_faces={int(face_index) + 1} or more.")
        if self.mode == "video":
            if timestamp_ms is None:
                raise ValueError("In video mode from_frame() needs timestamp_ms, the frame's time in "
                                 "milliseconds, strictly increasing from call to call.")
            check_timestamp(timestamp_ms)  # a finite number (the stream's clock checks the order)
            if face_index is None:
                raise ValueError("video mode tracks one face: give face_index (0 = the largest).")
        elif timestamp_ms is not None:
            raise ValueError("timestamp_ms is only used in video mode; create the Avatarizer with "
                             "mode='video' to track a face over time.")

    def from_frame(self, frame, timestamp_ms: float | None = None, face_index: int = 0, *,
                   attributes: Mapping[str, Any] | None = None) -> Avatar | None:
        """The avatar of one face in ``frame`` (``face_index`` 0 = the largest),
        or ``None`` when there is no such face (``ValueError`` for a
        ``face_index`` of ``max_faces`` or more: that face is never found).

        Video mode needs ``timestamp_ms`` (strictly increasing; ``ValueError``
        otherwise); its avatar has a steady identity and live expressions, and
        a frame without a face repeats the last avatar (``stale=True``) for the
        grace period (``tracker.grace_ms``, 0.5 s) before returning ``None``.
        With the default ``max_faces`` (1 in video mode) the face is the one
        MediaPipe tracks (the first it found, whatever its size, until it is
        lost); with more, the face that continues the tracked one keeps its
        rank while it and the face of that rank are within 1.3 times each
        other's area (:data:`avatarizer.pipeline.align.STICKY_AREA`); another
        ``face_index`` is ranked afresh from its first frame.

        ``attributes``: what the app knows about this person, drawn instead
        of the regressor's decision, on top of ``Options.attributes`` (same
        names and values; ``None`` for a name takes an option's setting back),
        e.g. ``{"glasses": "none", "skin_tone": 6}``. In video mode a frame
        with other settings than the last starts a new track (the identity
        is estimated again from that frame on).
        """
        if self.mode == "video":
            with self._lock:  # the avatar is built from the stream's state
                return self._avatar(self.run(frame, timestamp_ms, face_index, attributes=attributes), 0)
        return self._avatar(self.run(frame, timestamp_ms, face_index, attributes=attributes), 0)

    def _avatar(self, state, i: int) -> Avatar | None:
        from .expressions import SIGNALS

        order = self._color_order
        if self.mode == "video":
            tr = state.tracked
            if tr is None:
                return None
            stream = state.stream
            # (a stale avatar after run() alone: that frame's place and attributes)
            fresh = _fresh(state) or stream.last_fresh
            stream.last_fresh = None
            if fresh is not None:
                f, transform, params, index = fresh
                stream.last_face = _face_info(f.aligned, transform, index)
                # the glasses and hat the tracker draws (kept between refreshes), as drawn
                attributes = attributes_as_drawn(_public_attributes(f), params)
                stream.last_attributes = _own_copy(attributes)
            if not state.faces:  # stale: the last face's place and attributes, from the stream (each avatar its
                # own copy: an app editing one avatar's attributes changed every stale avatar's and the last fresh
                # one's)
                attributes = _own_copy(stream.last_attributes)
            expression = {n: float(v) for n, v in zip(SIGNALS, tr.signals)}
            return Avatar(tr.params, stream.last_face, stale=tr.stale, expression=expression, color_order=order,
                          attributes=attributes)
        if i >= len(state.faces):
            return None
        idx = state.face_index if state.face_index is not None else i
        f = state.faces[i]
        # (the hair length of the hairstyle drawn, as in video mode: the gates are not H's 0.5)
        return Avatar(f.params, _face_info(f.aligned, f.aligned.transform, idx), color_order=order,
                      attributes=hair_length_as_drawn(_public_attributes(f), f.params))

    def from_image(self, path: str | Path, face_index: int = 0, *,
                   attributes: Mapping[str, Any] | None = None) -> Avatar | None:
        """The avatar of the largest face (or ``face_index``) in an image file
        (EXIF orientation applied); ``None`` if there is no face. Image mode
        only. ``attributes``: as :meth:`from_frame`'s."""
        if self.mode != "image":
            raise ValueError("from_image() is for photos; this Avatarizer is in video mode. "
                             "Create one with mode='image'.")
        image = load_image(path)  # RGB whatever color_order says: files are decoded here
        if self._color_order == "bgr":
            image = np.ascontiguousarray(image[..., ::-1])
        return self.from_frame(image, face_index=face_index, attributes=attributes)

    def from_frames(self, frames: Iterable, timestamps_ms: Sequence[float] | None = None,
                    face_index: int = 0) -> list[Avatar | None]:
        """Avatars of many frames, in order (``None`` where a frame has no face).

        Image mode runs the face estimator on all frames in one batch. Video
        mode needs ``timestamps_ms`` (one per frame, increasing) and is the same
        as calling :meth:`from_frame` on each. Every frame and timestamp is
        checked before the first frame is run: a bad one (a wrong shape or
        dtype, a timestamp out of order or not after the stream's last)
        raises ``ValueError`` with the stream as it was, not after the
        frames before it moved the tracker on.
        """
        from .align import check_timestamp
        from .pipeline import FrameState

        frames = list(_frame_iter(frames, "from_frames"))
        if self.mode == "video":
            try:
                timestamps_ms = None if timestamps_ms is None else list(timestamps_ms)
            except TypeError:
                timestamps_ms = None
            if timestamps_ms is None or len(timestamps_ms) != len(frames):
                raise ValueError("In video mode from_frames() needs timestamps_ms, one per frame.")
            with self._lock:  # (one stream: no other call moves its clock between the checks and the run)
                pipe = self._check_open()
                self._check_not_streaming("from_frames()")  # (the streaming error, not a timestamp's)
                last = pipe.stream.last_timestamp_ms if pipe.stream is not None else None
                self._check_call(0.0, face_index)  # (the face index; each stamp below, named by its place)
                for i, t in enumerate(timestamps_ms):
                    try:
                        last = check_timestamp(t, last)
                    except ValueError as exc:
                        raise ValueError(f"timestamps_ms[{i}]: {exc}") from None
                for i, f in enumerate(frames):  # each checked before any is run (from_frame converts it again)
                    try:
                        to_rgb_uint8(f, self._color_order)
                    except ValueError as exc:
                        raise ValueError(f"frames[{i}]: {exc}") from None
                return [self.from_frame(f, t, face_index) for f, t in zip(frames, timestamps_ms)]
        if timestamps_ms is not None:
            raise ValueError("timestamps_ms is only used in video mode.")
        self._check_call(None, face_index)
        self._check_open()
        images = []
        for i, f in enumerate(frames):  # all validated first, the bad one named (as in video mode)
            try:
                images.append(to_rgb_uint8(f, self._color_order))
            except ValueError as exc:
                raise ValueError(f"frames[{i}]: {exc}") from None
        states = [FrameState(image=im, face_index=face_index, settings=self._drawn_settings) for im in images]
        if not states:
            return []
        with self._using() as pipe:
            pipe.run_batch(states)
        return [self._avatar(s, 0) for s in states]

    def stream(self, frames: Iterable, timestamps_ms: Iterable[float] | None = None, face_index: int = 0,
               *, fps: float = 30.0, prefetch: int = 1,
               on_wait: Callable[[], Any] | None = None) -> Iterator[tuple[int, Avatar | None]]:
        """Video mode: the avatars of a sequence of frames, as an iterator of
        ``(frame_index, Avatar | None)`` in frame order, with the work of
        consecutive frames overlapped.

        One worker thread takes the frames from ``frames`` (so decoding a
        source in a generator overlaps too), converts them and finds their
        landmarks (MediaPipe, which releases the GIL; only that: the faces'
        poses and aligning transforms are built on the consuming thread,
        ``FaceAligner.find`` / ``faces_found``), up to ``prefetch``
        frames ahead of the consumer (1 by default; a frame is taken from the
        source only when it may start at once, so a camera's frames are read
        as late as possible, and each frame of read-ahead adds a frame of
        latency when frames come faster than they are processed); the consuming thread runs the rest of the pipeline
        (identity, tracking, merge) and gets each avatar while the next
        frames' landmarks are being found, so its own work (``overlay``,
        ``render``, encoding) runs beside them. The avatars are those of a
        :meth:`from_frame` loop over the same frames and timestamps (exactly,
        with ``TrackerOptions(identity_every_ms=0)`` or
        ``identity_worker="inline"``; otherwise the identity
        networks' answers are adopted by whichever frame comes after they
        arrive, in a stream as in a loop, so the identity may differ slightly).

        ``timestamps_ms``: one per frame, strictly increasing (sized ones of
        another length than sized frames are refused first; an iterator is
        read one stamp per frame, never past the frames' end, as ``zip``
        reads it, and one that runs out first is a ``ValueError``); ``None``
        stamps frame ``i`` at ``i * 1000 / fps`` after the last frame this
        Avatarizer saw (from 0 when new or after :meth:`reset`), so streams
        and calls may follow one another. Frames are read ahead: a
        source that reuses one buffer must yield copies (a frame that is
        already H×W×3 uint8 in the right order is copied here). Stopping
        early (``break`` out of a loop over ``stream(...)`` itself,
        ``close()`` on the iterator, an exception in the loop; a generator
        kept in a variable is not closed by a ``break``: ``it.close()``,
        ``del it`` or ``contextlib.closing``) stops the worker and waits for
        it: no thread is left running
        (it first finishes the frame it is on, including a ``next()`` on the
        source); frames read ahead and never handed out give their time back,
        so a loop or stream may go on with the first frame not received (from a
        sequence, indexed again; an iterator has given up to ``prefetch`` such
        frames, which are lost: a next stream on it starts after them), but
        MediaPipe's landmark tracking has already seen them, so the avatars
        from there are close to an unbroken loop's, not the same (within
        about 0.007 on a test clip; a threshold flag such as ``teeth.show``
        may flip). Errors from the source, a bad frame (``ValueError``) or a
        bad timestamp are raised at that frame's place, after the frames
        before it. While a stream is being iterated, :meth:`from_frame`,
        :meth:`run`, :meth:`reset` and a second :meth:`stream` raise
        ``RuntimeError``; :meth:`close` from another thread ends it, and the
        loop over it then raises the ``RuntimeError`` of a closed
        Avatarizer (once the worker has finished its frame; a source whose
        ``next()`` blocks is not waited for: the worker stops when the read
        returns). The worker
        holds the source weakly between frames, so a stream dropped
        without being closed, whose source refers back to what holds it (a
        camera object with the Avatarizer, its stream and the generator
        feeding it), is collected with it.

        ``on_wait``: called on the consuming thread about every 50 ms while
        no frame is ready (a camera that stalls, a slow source), so a window
        keeps answering its events (a preview's quit key, ``cv2.waitKey``);
        a true return ends the stream as the source's end would, without
        waiting for a ``next()`` on the source that has not returned (the
        worker stops when it does).
        """
        if self.mode != "video":
            self._check_open()  # (closed: the RuntimeError any call on a closed Avatarizer raises, first)
            raise ValueError("stream() is for video: create the Avatarizer with mode='video' "
                             "(image mode: from_frames() batches frames instead).")
        self._check_call(0.0, face_index)
        if not is_real(fps) or not 0.001 <= float(fps) <= 1000:  # (1e-300 made frame 1's time 1e+303 ms)
            raise ValueError(f"fps must be a number in [0.001, 1000], got {fps!r}.")
        if isinstance(prefetch, bool) or not isinstance(prefetch, (int, np.integer)) or not 1 <= prefetch <= 64:
            raise ValueError(f"prefetch must be an integer in 1..64, got {prefetch!r}.")
        if on_wait is not None and not callable(on_wait):
            raise ValueError(f"on_wait must be callable or None, got {type(on_wait).__name__}.")
        ts_it = None
        if timestamps_ms is not None:
            try:  # (a 0-d array has __len__ and raises TypeError: refused by iter() below)
                counts = (len(frames), len(timestamps_ms)) \
                    if hasattr(frames, "__len__") and hasattr(timestamps_ms, "__len__") else None
            except TypeError:
                counts = None
            if counts is not None and counts[0] != counts[1]:
                raise ValueError(f"stream() got {counts[0]} frames but {counts[1]} timestamps; "
                                 "give one per frame.")
            try:
                ts_it = iter(timestamps_ms)
            except TypeError:
                raise ValueError("timestamps_ms must be an iterable of numbers (ms), one per frame.") from None
        it = _frame_iter(frames, "stream")
        self._check_open()
        return self._stream(_StreamSource(it, ts_it), int(face_index), float(fps), int(prefetch), on_wait)

    def _stream(self, source: "_StreamSource", face_index: int, fps: float, prefetch: int, on_wait=None):
        import queue

        from .pipeline import FrameState

        # (a thread running when the interpreter's exit began starts no stream: its worker, a new thread,
        # ran MediaPipe's landmarks after the exit's wait for calls in flight; a review, session 71)
        _refuse_at_exit()
        with self._lock:
            self._check_not_streaming("stream()")
            self._streaming = True
        worker = stopper = None
        try:  # everything from here gives the stream back in the finally, an interrupt included
            with self._lock:
                last = self._check_open().stream.last_timestamp_ms
            start = 0.0 if last is None else last + 1000.0 / fps
            q: queue.Queue = queue.Queue()
            # a frame is taken from the source only when one of ``prefetch`` slots
            # is free (freed as the consumer takes a frame): a camera's frame is
            # read as late as possible, and at most ``prefetch`` frames wait
            slots = threading.Semaphore(prefetch)
            stop = threading.Event()
            end = object()
            order = self._color_order

            def slot() -> bool:
                while not stop.is_set():
                    if slots.acquire(timeout=0.05):
                        return not stop.is_set()
                return False

            # the worker holds the source weakly, between frames: an app whose source refers back to what
            # holds the stream (a camera object with the Avatarizer, the stream and a frames() method) made
            # a cycle the worker thread, a root, kept alive for good, Avatarizer, worker process and all
            orphan = self._orphan
            if orphan is not None and orphan[0].is_alive() and orphan[1]() is source.frames:
                orphan[0].join()  # (the last stream of this very source left its worker in a read: it ends after it)
            held = weakref.ref(source)
            stamped = source.stamps is not None
            reading = [False]  # the worker is inside the source's next()
            abandoned = [False]  # on_wait ended the stream, or an exception: a read in progress is not waited for

            def work() -> None:
                i = 0
                try:
                    while slot():
                        src = held()
                        if src is None:  # (the stream was let go of: its generator's end stops us too)
                            break
                        reading[0] = True  # (set before stop is looked at: the generator's end sees one or the
                        if stop.is_set():  # other, so it never waits for a read that a close() let run on)
                            reading[0] = False
                            break
                        try:
                            frame = next(src.frames)
                        except StopIteration:
                            break
                        finally:
                            reading[0] = False
                        if stop.is_set():  # (the stream ended while the source was read: its clock is given back)
                            break
                        if not stamped:
                            t = start + i * 1000.0 / fps
                        else:
                            try:
                                t = next(src.stamps)
                            except StopIteration:
                                raise ValueError(f"timestamps_ms ran out at frame {i}: give one per frame."
                                                 ) from None
                        del src
                        self._check_call(t, face_index)
                        image = to_rgb_uint8(frame, order)
                        if _shares(image, frame):  # read ahead: never keep a buffer the caller may reuse
                            image = image.copy()
                        state = FrameState(image=image, timestamp_ms=float(t), face_index=face_index,
                                           settings=self._drawn_settings)
                        with self._using() as pipe:
                            pipe.ahead(state)  # the stream's clock, then the landmarks alone
                        q.put((i, state, None))
                        i += 1
                    q.put((i, None, end))
                except BaseException as exc:  # raised in the consumer, at this frame's place
                    q.put((i, None, exc))

            from . import native

            released, counted, release_lock = [], [], threading.Lock()

            def stop_worker() -> None:
                """Stops the worker and gives the stream's count back, once (the
                generator's end, or close() while the generator is still held)."""
                stop.set()
                with release_lock:  # its own lock: close() calls this holding the calls' lock
                    if released:
                        return
                    released.append(True)
                    if counted:
                        native.stream_started(-1)

            stopper = stop_worker
            with release_lock:  # (counted only if not stopped already: close() may come between these lines)
                if not released:
                    native.stream_started(+1)  # threads="auto" renders stay on the consumer's thread meanwhile
                    counted.append(True)
            self._stream_stop = stopper
            consumed = last  # the time of the last frame the consumer got (the clock before the stream: none yet)
            worker = threading.Thread(target=work, name="avatarizer-stream", daemon=True)
            self._stream_worker = (worker, reading)
            worker.start()
            while True:
                try:
                    i, state, extra = q.get(timeout=0.05)
                except queue.Empty:  # (a source that has not answered yet: close() from another thread
                    if stop.is_set():  # must not leave this loop waiting for it)
                        self._check_open()  # (closed: RuntimeError, as any call after close())
                        return
                    if on_wait is not None and on_wait():
                        abandoned[0] = True
                        return
                    continue
                slots.release()
                if state is None:
                    if extra is end:
                        if stop.is_set():  # stopped by close() from another thread, not the source's end
                            self._check_open()
                        return
                    raise extra
                with self._lock, self._using() as pipe:
                    pipe.run(state, begun=True)
                    avatar = self._avatar(state, 0)
                consumed = state.timestamp_ms
                yield i, avatar
        except BaseException as exc:
            # Ctrl-C, a signal's exception or on_wait raising while the source's next() blocks (a camera that
            # stopped sending): out now, not when the read returns (it reached the app 5 s later, or never
            # for a source that blocks for good; a review, session 64). The consumer's own end of the loop
            # (GeneratorExit: break, close()) still waits for the read: the same source may be streamed again
            if worker is not None and not isinstance(exc, GeneratorExit):
                abandoned[0] = True
            raise
        finally:
            try:
                if stopper is not None:
                    stop.set()
                # (the generator may be finalized on the worker itself: a garbage collection run while
                # the source was read; there is nothing to wait for then, and the worker stops once back)
                # closed from another thread while the source's next() blocks (a camera that stopped
                # sending): the consumer gets the closed error now, not when the read returns; the worker
                # stops by itself once back (stop is set) without touching the clock. A stream merely
                # ended by the consumer still waits for the read (the same source may be streamed again)
                if sys.is_finalizing():
                    # the generator collected as the interpreter ends (a script that ends holding it): the
                    # worker was stopped and waited for at exit (_stop_streams_at_exit); a daemon thread still
                    # running now is frozen where it stands, perhaps holding the aligner's lock: neither
                    # joined nor the clock given back (the process hung, or aborted; a review, session 70)
                    pass
                elif (worker is not None and worker.is_alive() and worker is not threading.current_thread()
                        and not ((self._closed or abandoned[0]) and reading[0])):
                    worker.join()
                elif worker is not None and worker.is_alive() and worker is not threading.current_thread():
                    try:
                        self._orphan = (worker, weakref.ref(source.frames))
                    except TypeError:  # (an iterator without weak references: a list's, which never blocks)
                        self._orphan = None
                # frames read ahead and never handed out give their time back: the
                # next call (or stream) may start with the first frame not consumed
                pipe = self._pipeline
                if (worker is not None and pipe is not None and pipe.stream is not None and not sys.is_finalizing()
                        and pipe.stream.last_timestamp_ms != consumed):
                    pipe.rewind_clock(consumed)
            finally:  # given back even if the join is interrupted (Ctrl-C)
                self._stream_stop, self._stream_worker, self._streaming = None, None, False
                if stopper is not None:
                    stopper()

    def faces(self, frame) -> list[Avatar]:
        """Avatars of every face in ``frame`` (up to ``max_faces``), largest first. Image mode only."""
        if self.mode != "image":
            raise ValueError("faces() works in image mode; in video mode one face is tracked "
                             "(from_frame with face_index).")
        state = self.run(frame, None, None)
        return [self._avatar(state, i) for i in range(len(state.faces))]


class _StreamSource:
    """A stream's frames and timestamps (iterators), held strongly by its
    generator alone; its worker thread holds them weakly between frames."""

    __slots__ = ("frames", "stamps", "__weakref__")

    def __init__(self, frames, stamps):
        self.frames, self.stamps = frames, stamps


_instances: "weakref.WeakSet[Avatarizer]" = weakref.WeakSet()  # every open Avatarizer of this process


#: the threads closing collected Avatarizers' pipelines (:func:`_close_collected`) that have not ended
_closing: set = set()
#: the most the interpreter's exit waits for them (:func:`_join_closing`), seconds
CLOSE_AT_EXIT_S = 30.0


def _close_collected(pipe) -> None:
    """The finalizer of an Avatarizer dropped without ``close()``: its
    pipeline is closed on a thread of its own. The garbage collector runs it
    on whichever thread allocates, which may hold a lock the closing needs
    (the core split's, around its /proc reads; the BLAS limit's, which the
    identity worker being joined waits for): closed there, the process hung
    for good (a review, session 63). The thread is a daemon, waited for at
    the interpreter's exit (:func:`_join_closing`): ended by the exit inside
    MediaPipe's graph close, it aborted the process (``Avatarizer().estimator``
    as a script's last line: exit 134 in 8 of 8 runs, a review, session 64).
    (No lock here: the finalizer may run while this thread holds one.)"""
    def close() -> None:
        try:
            pipe.close()
        finally:
            _closing.discard(threading.current_thread())

    thread = threading.Thread(target=close, name="avatarizer-close", daemon=True)
    _closing.add(thread)
    try:
        thread.start()
    except RuntimeError:  # (no thread to be had: closed here, as before)
        _closing.discard(thread)
        pipe.close()


def _join_closing() -> None:
    """At the interpreter's exit (atexit: before daemon threads are stopped), waits up to
    :data:`CLOSE_AT_EXIT_S` in all for the pipelines being closed (:func:`_close_collected`)."""
    deadline = time.monotonic() + CLOSE_AT_EXIT_S
    while _closing and time.monotonic() < deadline:
        try:
            pending = list(_closing)
        except RuntimeError:  # (changed size while copied: again)
            continue
        for thread in pending:
            try:
                thread.join(max(0.0, deadline - time.monotonic()))
            except RuntimeError:  # (not started yet: its finalizer is starting it)
                time.sleep(0.01)
                continue
            _closing.discard(thread)


atexit.register(_join_closing)

#: the most the interpreter's exit waits for the streams' workers (:func:`_stop_streams_at_exit`), seconds
STREAM_STOP_AT_EXIT_S = 10.0
#: ... and for a worker inside its source's read (:func:`_stop_streams_at_exit`), seconds
STREAM_READ_GRACE_S = 1.0


def _stop_streams_at_exit() -> None:
    """At the interpreter's exit (atexit: before daemon threads are
    stopped), stops the worker of every stream still held (a script that
    ends with a started ``stream()`` generator in a variable), then waits up
    to :data:`STREAM_STOP_AT_EXIT_S` in all for them: a worker stopped by
    the exit inside MediaPipe's landmarks kept the aligner's lock, and the
    generator's end, run later as the interpreter tears down, waited for it
    for good, or the process aborted (7 of 27 runs; a review, session 70).
    A worker inside its source's read is waited for
    :data:`STREAM_READ_GRACE_S` at most: a camera that stopped sending never
    returns (the exit took 10 s longer with one), while a source that does
    native work of its own (MediaPipe, OpenCV) for each frame aborted the
    process when not waited for (3 of 12 runs)."""
    global _exit_threads
    held = []
    for av in list(_instances):
        stop, worker = av._stream_stop, av._stream_worker
        if stop is None or worker is None:
            continue
        try:
            stop()  # (every stream first: they wind down together)
            held.append(worker)
        except Exception:  # (at exit: never in the way of the others)
            pass
    start = time.monotonic()
    deadline, grace = start + STREAM_STOP_AT_EXIT_S, start + STREAM_READ_GRACE_S
    for thread, reading in held:
        while (thread is not threading.current_thread() and thread.is_alive()
               and time.monotonic() < (grace if reading[0] else deadline)):
            thread.join(0.05)
    # from here the threads running now (an app's daemon threads) start no call (_EXIT_REFUSAL), and the
    # calls they are inside end first: a thread the interpreter's end stopped inside MediaPipe's landmarks
    # aborted the process (exit 134, 14 of 22 runs; a review, session 71)
    me = threading.get_ident()
    _exit_threads = frozenset(t for t in threading.enumerate() if t.ident != me)
    for av in list(_instances):
        with av._calls:
            while av._active - av._callers.get(me, 0) > 0 and time.monotonic() < deadline:
                av._calls.wait(0.05)
    # ... and a video stream's identity worker thread takes no new job and ends the one in flight
    for av in list(_instances):
        pipe = av._pipeline
        stage = None if pipe is None else pipe.by_name.get("identity")
        if stage is not None:
            try:
                stage.stop_at_exit(deadline)
            except Exception:  # (at exit: never in the way of the others)
                pass


#: the threads running when the interpreter's exit began, but the exiting one, once
#: :func:`_stop_streams_at_exit` ran (None before): a call one of those threads starts then raises ``SystemExit(_EXIT_REFUSAL)``, which ends the thread quietly (Python's threads end on it
#: without a traceback) and lets go of every lock it holds on the way out (waiting there for the process's
#: end, it kept them, and an exit handler that ran later hung on one: the video lock, an app's own; a
#: review, session 71). The exiting thread's own calls, and those of threads started after (an exit
#: handler's, a stream it reads), run as ever.
_exit_threads: frozenset | None = None
_EXIT_REFUSAL = "avatarizer: the interpreter is exiting; a thread running when it began starts no call"


def _refuse_at_exit() -> None:
    """``SystemExit(_EXIT_REFUSAL)`` on a thread that was running when the
    interpreter's exit began (:data:`_exit_threads`), else nothing."""
    threads = _exit_threads
    if threads is not None and threading.current_thread() in threads:
        raise SystemExit(_EXIT_REFUSAL)


atexit.register(_stop_streams_at_exit)  # (registered after _join_closing: atexit runs it first)


def _after_fork_in_child() -> None:
    for av in list(_instances):
        av._forked()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def _avatar(params, face, stale, expression, color_order, attributes) -> "Avatar":
    """An unpickled :class:`Avatar` (``Avatar.__reduce__``)."""
    return Avatar(params, face, stale=stale, expression=expression, color_order=color_order, attributes=attributes)


def _read_only(a: np.ndarray) -> np.ndarray:
    """A copy of ``a`` whose memory is an immutable ``bytes`` object: a
    read-only array that owns its memory is made writable again by
    ``setflags(write=True)`` (and a view of one through its ``.base``),
    which let NaN parameters or a singular transform past every check
    (``to_json`` wrote a NaN its own ``from_json`` refused; reviews); this
    one, and its base, refuse it. (629 or 6 numbers: the copy costs nothing.)"""
    a = np.ascontiguousarray(a)
    return np.frombuffer(a.tobytes(), a.dtype).reshape(a.shape)


def _face_info(face, transform, index: int) -> FaceInfo:
    tf = _read_only(np.array(transform, np.float64))
    return FaceInfo._trusted(tuple(float(v) for v in face.box), float(face.roll), float(face.yaw), float(face.pitch),
                             tf, tuple(int(v) for v in face.frame_shape), int(index))

