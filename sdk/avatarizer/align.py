"""Face alignment: MediaPipe face mesh landmarks → canonical face crop.

The first stage of the runtime pipeline. :class:`FaceAligner` runs
MediaPipe's bundled legacy *Face Mesh* solution (``refine_landmarks=True``:
468 mesh points plus 10 iris points = 478) on a frame, fits a similarity
transform that puts the eyes and the mouth at fixed places, and returns one
:class:`AlignedFace` per face, from which the canonical crop, a person mask
(MediaPipe's bundled *Selfie Segmentation*) and a rough hair mask are taken
lazily. Both models ship inside the ``mediapipe`` wheel; nothing is
downloaded.

Canonical face frame (a contract shared with the encoder, the renderer and
evaluation): a square whose coordinates run from -1 to 1 on both axes, x to
the right, y down; (-1, -1) is the crop's top-left corner and (1, 1) its
bottom-right corner. A canonical point ``c`` lies at continuous crop pixel
coordinates ``p = (c + 1) / 2 * S`` for an ``S``-pixel crop (pixel centres at
``i + 0.5``). Landmark pixel coordinates in the frame use the same
continuous convention. :data:`CANONICAL_TARGETS` holds the three anchor
positions.

Example::

    from avatarizer.align import FaceAligner

    with FaceAligner() as aligner:
        face = aligner.align(frame)              # H×W×3 uint8 RGB
        if face is not None:
            crop = face.crop(256)                # 256×256×3 uint8
            print(face.roll, face.yaw, face.pitch)

    with FaceAligner(mode="video", max_faces=1) as aligner:
        for t_ms, frame in frames:               # strictly increasing t_ms
            face = aligner.align(frame, timestamp_ms=t_ms)

Notes on MediaPipe 0.10.21's legacy solutions, as measured here:

* Landmark naming is the *subject's*: ``right_eye`` (33/133, iris centre
  468) is the eye that appears on the image's left in an unmirrored,
  upright photo. Anchors are therefore chosen by geometry, not by index.
* In video mode MediaPipe runs the face detector on every frame for as long
  as fewer than ``max_faces`` faces are tracked, so tracking only saves time
  when ``max_faces`` equals the number of faces in view (use
  ``max_faces=1`` for a live single-person feed).
* The face detector is MediaPipe's short-range model (128×128 input, the
  whole frame letterboxed into it): faces whose landmarks span less than
  roughly 10-14% of the frame's longer side are not found; crop around the
  subject first. Upside-down faces (≈180°) come back with a distorted mesh
  read as upright (roll about 0: 40 ffhq portraits turned 180°, median
  reported roll 1.7°), so nothing here can tell; turn them upright first.
  Rolls up to ±90° are read (the same portraits turned 30/45/60/90°: median
  reported roll within 0.5° of the turn); in image mode a face tilted over
  :data:`UPRIGHT_RETRY_ROLL` is read again from the photo turned a quarter
  turn toward upright (40 portraits turned a quarter turn by ``np.rot90``:
  roll more than 10° off in 2 and 4 of 40, was 4 and 6; hair colour,
  glasses or gender unlike the upright photo's in 4 and 5, was 10 and 12).
* The solution graphs are not re-entrant; :class:`FaceAligner` serialises
  calls with a lock. Use one aligner per thread for parallelism.
* MediaPipe's C++ logging writes a few harmless warnings to stderr when a
  graph starts (``inference_feedback_manager``,
  ``landmark_projection_calculator`` about NORM_RECT) through Abseil
  logging, which no environment variable of ``mediapipe==0.10.21`` silences;
  the ``avatarizer`` command line filters them out of its stderr
  (:mod:`avatarizer.logfilter`), the library leaves the process's file
  descriptors alone.
"""

from __future__ import annotations

import dataclasses
import math
import os
import sys
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import cv2
import numpy as np

from .checks import MAX_TIMESTAMP_MS, is_real
from .imageio import to_rgb_uint8

__all__ = [
    "EXPOSURE_DIM",
    "MAX_OUTSIDE",
    "exposure_gain",
    "CANONICAL_TARGETS",
    "CANONICAL_TARGET_NAMES",
    "LANDMARK_INDICES",
    "EYE_CORNERS",
    "MOUTH_CORNERS",
    "NUM_LANDMARKS",
    "AlignOptions",
    "AlignedFace",
    "FaceAligner",
    "anchor_points",
    "MAX_TIMESTAMP_MS",
    "check_timestamp",
    "estimate_similarity",
    "invert_affine",
]

from .landmarks import (  # noqa: E402  (the tables live in one place)
    CANONICAL_TARGET_NAMES,
    CANONICAL_TARGETS,
    CHIN_BOTTOM,
    EYE_CORNERS,
    LANDMARK_INDICES,
    MOUTH_CORNERS,
    NUM_LANDMARKS,
)

_MODES = ("image", "video")
# Landmarks for the head-pose estimates: forehead top and chin on the
# midline.
_FOREHEAD, _CHIN = 10, CHIN_BOTTOM
# What the forehead→chin depth angle reads for a face with zero pitch:
# fitted (least squares, slope 0.97, r = 0.87) against the reference head
# pose of the 496 detected faces of ../shared/data/faces/ffhq128-labelled,
# and subtracted so that a level face reads ≈ 0.
_PITCH_OFFSET_DEG = -4.3
#: image mode: when no face is found, the photo is searched once more with a
#: replicated border of max(height, width) // PAD_RETRY_DIVISOR pixels
PAD_RETRY_DIVISOR = 4


#: image mode: when no face is found even with the border, faces the
#: full-range detector finds (MediaPipe's ``face_detection_full_range_sparse``,
#: in the wheel), on the whole photo and on overlapping squares of it
#: (:func:`_detection_tiles`), are looked for again in a square of
#: SMALL_FACE_CONTEXT times the box's larger side around each, at
#: SMALL_FACE_CROP pixels: FaceMesh's own detector is short-range and missed
#: a portrait pasted into a 900×512 canvas (a face 28% of the width)
SMALL_FACE_CONTEXT = 2.2
SMALL_FACE_CROP = 384
#: the smallest half-side square the detector is run on (:func:`_detection_tiles`:
#: a photo of 1,200 pixels or more on its shorter side; a 1920×1080 photo with no
#: face took 197 ms more with them, 45 without)
SMALL_FACE_MIN_TILE = 600
#: ...and below that, the half-side squares are searched too (down to 64
#: pixels) when the coarser passes found a face smaller than this fraction
#: of the photo's shorter side: a group photo whose faces are small. Faces
#: 5-7% of a 800-1150 px photo's width were missed 1 time in 3 without it
#: (189 of 288 found, 287 with it); a photo with no face, or one large face
#: alone, costs what it did (each square is a ~6 ms detector call)
SMALL_FACE_FINE_HINT = 0.15


#: image mode: a face whose roll is over this many degrees is looked for again
#: in the photo turned toward upright (:meth:`FaceAligner._upright_fits`; at
#: 30-45° a quarter turn leaves it as far from upright, and no retry of 36
#: faces tilted 35-44° was kept, at twice the detection time)
UPRIGHT_RETRY_ROLL = 45.0

#: most faces a frame is searched for (``AlignOptions.max_faces``, ``Avatarizer(max_faces=)``)
MAX_FACES = 64

#: image mode: FaceMesh looks for at least this many faces, and the largest
#: ``max_faces`` are kept: with one, the detector's likeliest detection is the
#: only one meshed, and in a close-up it can be a spurious small "face" (an
#: 86-year-old's eye, a UTKFace chip: the face box 39 px wide for 159), where
#: with two the real face is found too and, the larger, comes first; FaceMesh
#: keeps the detector's likeliest faces, not the largest, so with 2 (or the
#: CLI's 4) a group photo's largest face could be left out (a grid of six
#: faces: the avatar of the third largest; a review, session 33). Each face
#: detected beyond the first costs a FaceMesh run (~2.5 ms): nothing more
#: on a portrait, 52 instead of 37 ms on that grid. With 8, a photo of 17
#: faces whose largest (a little blurred) was not among the detector's 8
#: likeliest drew the second largest (a review, session 59): every face is
#: meshed now, up to :data:`MAX_FACES` (that photo 240 -> 267 ms; a
#: portrait and a grid of ten cost the same)
IMAGE_MESH_FACES = MAX_FACES



def box_area(box) -> float:
    """The area of a face's ``box`` (x0, y0, x1, y1), in square pixels: what
    faces are ranked by (largest first)."""
    x0, y0, x1, y1 = box
    return max(0.0, float(x1) - float(x0)) * max(0.0, float(y1) - float(y0))

@dataclass
class AlignOptions:
    """Options of :class:`FaceAligner`.

    Attributes:
        mode: ``"image"`` treats every frame as unrelated (face detection on
            every call, MediaPipe's ``static_image_mode=True``); ``"video"``
            tracks faces from frame to frame (``static_image_mode=False``)
            and requires strictly increasing ``timestamp_ms``.
        max_faces: most faces returned per frame (an eye of a larger face
            found as a face is not one, :func:`_without_contained`; in image
            mode the largest of the faces searched for: at least :data:`IMAGE_MESH_FACES`,
            the detector's likeliest, so that a spurious detection it scores
            higher cannot take the only place). In video mode keep it at the number of faces
            expected: while fewer are tracked, MediaPipe runs the detector
            on every frame.
        min_detection_confidence: face detector score threshold in [0, 1]
            (FaceMesh's, and in image mode the full-range detector's that
            looks for small faces where FaceMesh finds none).
        min_tracking_confidence: landmark presence threshold in [0, 1]; below
            it a tracked face is dropped and re-detected (video mode).
        segmentation: whether :meth:`AlignedFace.segmentation` and
            :meth:`AlignedFace.hair_mask` are available (they then run the
            selfie segmentation model, lazily, once per frame).
        prefetch_segmentation: image mode with ``segmentation``: start the
            frame's selfie segmentation on a background thread while the
            landmarks run, instead of on the first :meth:`AlignedFace.hair_mask`
            call. On two or more cores the mask is then ready at no wall
            time when it is used; when it is not (no face found, or only the
            landmarks wanted) the segmentation was wasted work (about 6-9 ms
            of one core). The SDK's pipeline turns it on in image mode, where
            every found face's hair needs the mask. Video mode ignores it.
        auto_exposure: brighten the crops of a clearly underexposed frame
            (:func:`exposure_gain`: its brightest 1% darker than
            :data:`EXPOSURE_DIM`), so that skin, hair and accessories read
            as in better light. A frame with anything bright in it (almost
            every photo, whatever the skin) is left as it is.
        restart_after_ms: video mode: a frame more than this after the
            last one by its timestamp (frames sent again after a pause, a
            camera that stopped sending; ``Avatarizer.stream`` without
            timestamps goes on at its ``fps`` and sees no gap) starts
            MediaPipe's tracking afresh, as a frame of
            another size does: tracked on from where the face was before the
            gap, another person's first frame found no face or a stale box,
            and their identity was read from it. ``math.inf``: never. The
            SDK's pipeline passes its tracker's ``reset_ms``, after which
            the track starts afresh too (at least ``video.FRAME_GAP_MS``:
            a frame interval is not a gap).
    """

    mode: str = "image"
    max_faces: int = 4
    min_detection_confidence: float = 0.5
    min_tracking_confidence: float = 0.5
    segmentation: bool = True
    prefetch_segmentation: bool = False
    auto_exposure: bool = True
    restart_after_ms: float = 3000.0

    def validate(self) -> None:
        """Raise ``ValueError`` with a plain sentence if an option is invalid."""
        if self.mode not in _MODES:
            raise ValueError(f"mode must be 'image' or 'video', got {self.mode!r}.")
        if isinstance(self.max_faces, bool) or not isinstance(self.max_faces, int) \
                or not 1 <= self.max_faces <= MAX_FACES:  # (MediaPipe raised OverflowError from 2**31)
            raise ValueError(f"max_faces must be an integer in 1..{MAX_FACES}, got {self.max_faces!r}.")
        for name in ("min_detection_confidence", "min_tracking_confidence"):
            value = getattr(self, name)
            if not is_real(value) or not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be a number in [0, 1], got {value!r}.")
        for name in ("segmentation", "prefetch_segmentation", "auto_exposure"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{name} must be True or False, got {getattr(self, name)!r}.")
        if not (is_real(self.restart_after_ms) or self.restart_after_ms == math.inf) or not self.restart_after_ms > 0:
            raise ValueError(f"restart_after_ms must be a positive number of milliseconds (math.inf: never), "
                             f"got {self.restart_after_ms!r:.40}.")


_mediapipe_started = False  # this process has made a MediaPipe graph
_forked_after_mediapipe = False  # ...and this is a child forked from it


def _note_fork_in_child() -> None:
    global _forked_after_mediapipe
    _forked_after_mediapipe = _forked_after_mediapipe or _mediapipe_started


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_note_fork_in_child)


def face_mesh_graph(options: "AlignOptions") -> Any:
    """The FaceMesh graph the align stage runs for ``options``: its mode, its
    face search (image mode: ``max_faces``, at least :data:`IMAGE_MESH_FACES`),
    refined landmarks, its confidences (also the benchmarks' landmarks-only
    baseline: ``avatarizer bench``, ``benchmarks/attributes.py``)."""
    from mediapipe.python.solutions import face_mesh  # heavy import, only when used

    image = options.mode == "image"
    return mediapipe_graph(lambda: face_mesh.FaceMesh(
        static_image_mode=image,
        max_num_faces=max(options.max_faces, IMAGE_MESH_FACES) if image else options.max_faces,
        refine_landmarks=True,
        min_detection_confidence=float(options.min_detection_confidence),
        min_tracking_confidence=float(options.min_tracking_confidence),
    ))


def mediapipe_graph(make: Any) -> Any:
    """``make()`` (a MediaPipe solution: face mesh, selfie segmentation), or
    ``RuntimeError`` in a process forked from one where MediaPipe already
    ran: there a new graph aborts the process (mediapipe 0.10.21: "malloc():
    unaligned tcache chunk detected") and one made before the fork never
    answers. The SDK's every MediaPipe graph is made through this."""
    global _mediapipe_started
    if _forked_after_mediapipe:
        raise RuntimeError(FORKED_MESSAGE)
    graph = make()
    _mediapipe_started = True
    _drop_import_frames()
    return graph


def _drop_import_frames() -> None:
    """mediapipe 0.10.21 keeps the error of its optional ``sounddevice`` import
    (``audio_record.sd_error``: no PortAudio here) with its traceback, whose
    frames reach back through the import to the code that imported MediaPipe
    first: an ``Avatarizer.__init__``, which kept that Avatarizer (its graphs,
    sessions and worker thread) alive for good once dropped. The traceback is
    let go; the error stays."""
    mod = sys.modules.get("mediapipe.tasks.python.audio.core.audio_record")
    err = getattr(mod, "sd_error", None)
    if isinstance(err, BaseException):
        err.__traceback__ = None


FORKED_MESSAGE = ("MediaPipe cannot run in a process forked from one where it already ran (it aborts or "
                  "hangs there): start worker processes with multiprocessing's 'spawn' or 'forkserver' "
                  "method, or make every Avatarizer inside the workers before any runs in the parent.")


#: A face with more of its mesh than this outside the frame
#: (:attr:`AlignedFace.outside_fraction`) is cut by the frame's edge: its crop's
#: replicated border reads as a hat and darker hair. The SDK then draws no hat
#: on it and, in video mode, hands it to no identity refresh. (Of 260 dataset
#: portraits none had more than 0.036 outside.)
MAX_OUTSIDE = 0.1
#: A frame whose 99th-percentile luminance (sRGB, 0-1) is below this is
#: underexposed. Of 6,390 portraits in ../shared/data/faces (FFHQ, UTKFace),
#: one is (0.349, a dim blurred photo); dark skin in a dark room still shows
#: teeth, eyes or a highlight above it (the darkest such photos: 0.45-0.55).
EXPOSURE_DIM = 0.35
#: ...and this is the 99th percentile it is brought to, reached in full at
#: :data:`EXPOSURE_DARK` and below (in between, the gain grows gradually).
EXPOSURE_TARGET = 0.7
EXPOSURE_DARK = 0.2
EXPOSURE_MAX_GAIN = 6.0


def exposure_gain(image: np.ndarray) -> float:
    """The gain that :attr:`AlignOptions.auto_exposure` applies to the crops
    of ``image`` (``H×W×3`` uint8 RGB): 1.0 unless its brightest 1% is darker
    than :data:`EXPOSURE_DIM`; then what brings that 99th percentile to
    between :data:`EXPOSURE_DIM` and :data:`EXPOSURE_TARGET` (the darker the
    frame, the nearer the target), at most :data:`EXPOSURE_MAX_GAIN`; 1.0 for
    a black frame. Read from an even subsample of about 16k pixels."""
    h, w = image.shape[:2]
    step = max(1, int(np.sqrt(h * w / 16384.0)))
    small = np.ascontiguousarray(image[::step, ::step])
    lum = cv2.cvtColor(small, cv2.COLOR_RGB2GRAY)  # Rec. 601 luma, 0-255
    counts = np.cumsum(cv2.calcHist([lum], [0], None, [256], [0, 256]).ravel())
    p99 = float(np.searchsorted(counts, 0.99 * counts[-1])) / 255.0
    if p99 >= EXPOSURE_DIM or p99 < 2.0 / 255.0:
        return 1.0
    t = min(1.0, (EXPOSURE_DIM - p99) / (EXPOSURE_DIM - EXPOSURE_DARK))
    return float(min(EXPOSURE_MAX_GAIN, (EXPOSURE_DIM + t * (EXPOSURE_TARGET - EXPOSURE_DIM)) / p99))


class _FrameContext:
    """What the faces found in one detect() call share: the RGB frame (a
    reference, not a copy), the aligner and the person mask: computed on
    first use, or already under way on the aligner's segmentation thread
    (``pending``, :attr:`AlignOptions.prefetch_segmentation`)."""

    __slots__ = ("image", "aligner", "_mask", "_lock", "_pending", "_gain")

    def __init__(self, image: np.ndarray, aligner: FaceAligner | None, pending: Future | None = None):
        self.image = image
        self.aligner = aligner
        self._mask: np.ndarray | None = None
        self._lock = threading.Lock()
        self._pending = pending
        self._gain: float | None = None

    @property
    def gain(self) -> float:
        """:func:`exposure_gain` of the frame (1.0 when the aligner's
        ``auto_exposure`` is off), computed on first use."""
        if self._gain is None:
            on = self.aligner is None or getattr(self.aligner.options, "auto_exposure", True)
            self._gain = exposure_gain(self.image) if on else 1.0
        return self._gain

    @property
    def segmentation_enabled(self) -> bool:
        return self.aligner is not None and self.aligner.options.segmentation

    def person_mask(self) -> np.ndarray:
        with self._lock:
            if self._mask is None:
                pending, self._pending = self._pending, None
                if pending is not None and not pending.cancelled():
                    self._mask = pending.result()  # its exception (a closed aligner) as _segment's
                else:
                    self._mask = self.aligner._segment(self.image)
            return self._mask


@dataclass(eq=False)
class AlignedFace:
    """One face found in a frame, with its alignment to the canonical frame.

    Attributes:
        landmarks: ``(478, 3)`` float32: x, y in frame pixels (continuous
            coordinates, pixel centres at ``i + 0.5``), z in MediaPipe's
            relative depth scaled by the frame width (smaller is closer to the
            camera; roughly the same unit as x).
        canonical: ``(478, 2)`` float32: the landmarks' x, y in the canonical
            frame.
        transform: ``(2, 3)`` float64 affine map canonical → frame pixels.
        inverse: ``(2, 3)`` float64 affine map frame pixels → canonical.
        box: ``(x0, y0, x1, y1)`` bounding box of the landmarks in frame
            pixels.
        frame_shape: ``(height, width)`` of the frame.

    :meth:`crop`, :meth:`segmentation` and :meth:`hair_mask` are computed on
    first use and cached per size; they return read-only arrays (``.copy()``
    them to write). A face keeps a reference to the frame it was found in,
    not a copy: do not modify that frame in place before you are done with
    the face's crops.
    """

    landmarks: np.ndarray
    canonical: np.ndarray
    transform: np.ndarray
    inverse: np.ndarray
    box: tuple[float, float, float, float]
    frame_shape: tuple[int, int]
    _context: _FrameContext | None = field(default=None, init=False, repr=False)
    _cache: dict = field(default_factory=dict, init=False, repr=False)

    def __repr__(self) -> str:
        x0, y0, x1, y1 = self.box
        return (
            f"AlignedFace(box=({x0:.1f}, {y0:.1f}, {x1:.1f}, {y1:.1f}), "
            f"frame_shape={self.frame_shape}, roll={self.roll:.1f}, "
            f"yaw={self.yaw:.1f}, pitch={self.pitch:.1f})"
        )

    @classmethod
    def from_landmarks(
        cls, landmarks: np.ndarray, frame_shape: tuple[int, int], image: np.ndarray | None = None
    ) -> AlignedFace:
        """Align a face from landmarks already in frame pixels.

        Args:
            landmarks: ``(478, 2)`` or ``(478, 3)`` landmark coordinates in
                frame pixels (for example from a render, or stored); a
                missing z column is filled with zeros (yaw and pitch then
                read 0).
            frame_shape: ``(height, width)`` of the frame.
            image: optionally the frame itself as ``H×W×3`` uint8 RGB, which
                enables :meth:`crop` (not segmentation).
        """
        landmarks = np.asarray(landmarks, dtype=np.float32)
        if landmarks.ndim != 2 or landmarks.shape[0] != NUM_LANDMARKS or landmarks.shape[1] not in (2, 3):
            raise ValueError(
                f"landmarks must have shape ({NUM_LANDMARKS}, 2) or ({NUM_LANDMARKS}, 3), "
                f"got {landmarks.shape}."
            )
        if landmarks.shape[1] == 2:
            landmarks = np.concatenate([landmarks, np.zeros((NUM_LANDMARKS, 1), np.float32)], axis=1)
        height, width = (int(v) for v in frame_shape[:2])
        context = None
        if image is not None:
            image = to_rgb_uint8(image)
            if image.shape[:2] != (height, width):
                raise ValueError(
                    f"image has shape {image.shape[:2]} but frame_shape is {(height, width)}."
                )
            context = _FrameContext(image, None)
        return _build_face(landmarks, (height, width), context)

    @property
    def outside_fraction(self) -> float:
        """The share of the 468 face-mesh landmarks outside the frame (0 for a
        face wholly in it): MediaPipe extrapolates a face cut by the frame's
        edge, and the crop's replicated border then shows streaks (of 260
        dataset portraits, none had more than 0.036 outside)."""
        h, w = self.frame_shape
        xy = self.landmarks[:468, :2]
        return float(np.mean((xy[:, 0] < 0) | (xy[:, 0] > w) | (xy[:, 1] < 0) | (xy[:, 1] > h)))

    # -- derived images ---------------------------------------------------

    def crop(self, size: int = 128) -> np.ndarray:
        """The ``size``×``size``×3 uint8 RGB canonical crop (bilinear,
        borders replicated; brightened by the frame's :func:`exposure_gain`
        when :attr:`AlignOptions.auto_exposure` is on and the frame is
        clearly underexposed), read-only, cached per size."""
        size = _check_crop_size(size)
        key = ("crop", size)
        out = self._cache.get(key)
        if out is None:
            frame = self._frame()
            out = cv2.warpAffine(
                frame.image,
                self._crop_to_frame_indices(size),
                (size, size),
                flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                borderMode=cv2.BORDER_REPLICATE,
            )
            if frame.gain != 1.0:  # an underexposed frame (AlignOptions.auto_exposure)
                out = cv2.convertScaleAbs(out, alpha=frame.gain)
            out.setflags(write=False)
            self._cache[key] = out
        return out

    def segmentation(self, size: int = 128) -> np.ndarray | None:
        """The person mask warped into the canonical crop.

        Returns a ``size``×``size`` float32 array in [0, 1] (1 = person),
        read-only and cached per size, or ``None`` when the aligner was
        created with ``segmentation=False``. The first call for a frame runs
        MediaPipe's selfie segmentation (general model, 256×256 input) on the
        whole frame; every face of that frame shares the result. Borders are
        replicated, like :meth:`crop`.

        Raises:
            RuntimeError: if the aligner has been closed before the mask of
                this frame was computed.
        """
        size = _check_crop_size(size)
        context = self._frame()
        if not context.segmentation_enabled:
            return None
        key = ("segmentation", size)
        out = self._cache.get(key)
        if out is None:
            out = cv2.warpAffine(
                context.person_mask(),
                self._crop_to_frame_indices(size),
                (size, size),
                flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                borderMode=cv2.BORDER_REPLICATE,
            )
            np.clip(out, 0.0, 1.0, out=out)
            out.setflags(write=False)
            self._cache[key] = out
        return out

    def hair_mask(self, size: int = 128) -> np.ndarray | None:
        """A rough hair / head-top mask in the canonical crop.

        The person mask (:meth:`segmentation`) with the filled face-oval
        polygon (``LANDMARK_INDICES["face_oval"]``) set to zero: float32 in
        [0, 1], ``size``×``size``, read-only, cached per size, or ``None``
        when segmentation is disabled.

        Limits: it is "person but not face", not a hair segmentation. It
        also contains the ears, neck, shoulders, clothing, hats, hands and
        anything else the selfie model counts as person, and the scalp of
        bald heads; the oval's top edge (landmark 10) sits near the
        hairline, so fringes that cover the forehead are cut away and a high
        forehead leaks in; a beard inside the oval is excluded. The selfie
        model sees the frame at 256×256, so for small faces the mask edge is
        blurry. Good for a hair colour sample or a coarse silhouette, not
        for hair style classification on its own.
        """
        person = self.segmentation(size)
        if person is None:
            return None
        key = ("hair", size)
        out = self._cache.get(key)
        if out is None:
            oval = self.canonical[list(LANDMARK_INDICES["face_oval"])].astype(np.float64)
            # Canonical → continuous crop pixels → cv2 pixel-centre indices,
            # with 4 fractional bits for sub-pixel polygon edges.
            points = ((oval + 1.0) * 0.5 * size - 0.5) * 16.0
            face = np.zeros((size, size), np.uint8)
            cv2.fillPoly(face, [np.round(points).astype(np.int32)], 1, lineType=cv2.LINE_8, shift=4)
            out = person * (1.0 - face.astype(np.float32))
            out.setflags(write=False)
            self._cache[key] = out
        return out

    # -- head pose ----------------------------------------------------------

    @property
    def roll(self) -> float:
        """In-plane rotation in degrees from the eye line, in (-180, 180].

        Positive when the face is turned clockwise on screen (the eye on the
        image's right is lower). Exact up to landmark noise.
        """
        return _roll_of(self.landmarks)

    @property
    def yaw(self) -> float:
        """Left-right head turn in degrees; positive when the nose points
        towards the image's right.

        Rough: taken from MediaPipe's relative landmark depth along the eye
        line (``atan2(Δz, |Δxy|)`` between the two eye centres), which the
        model infers from a single image. Against the reference head pose of
        the 496 faces of ``ffhq128-labelled``: r = 0.97, mean absolute error
        3°, 90th percentile 6.4°, about 10° beyond ±45°.
        """
        return self._pose()[0]

    @property
    def pitch(self) -> float:
        """Up-down head tilt in degrees; positive when the face looks up.

        Rough: from the depth difference between forehead (10) and chin (152)
        along the face's vertical axis, corrected by the offset a level
        face reads. Noisier than :attr:`yaw` (r = 0.87, mean absolute error
        3.7°, 90th percentile 7°, same reference set): face shape varies
        from person to person (a receding chin reads as looking up) and
        opening the mouth moves the chin.
        """
        return self._pose()[1]

    # -- internals ----------------------------------------------------------

    def _pose(self) -> tuple[float, float]:
        pose = self._cache.get("pose")
        if pose is None:
            pose = _yaw_pitch(self.landmarks)
            self._cache["pose"] = pose
        return pose

    def _frame(self) -> _FrameContext:
        if self._context is None:
            raise RuntimeError(
                "This AlignedFace has no frame attached; create it with FaceAligner.detect() "
                "or pass image= to AlignedFace.from_landmarks()."
            )
        return self._context

    def _crop_to_frame_indices(self, size: int) -> np.ndarray:
        """(2, 3) map from crop pixel indices to frame pixel indices, for
        ``cv2.warpAffine(..., WARP_INVERSE_MAP)`` (whose pixel i is centred
        at i, while continuous coordinates put it at i + 0.5)."""
        # crop index u → canonical c = (u + 0.5) * 2 / S - 1 → frame x = T c → index x - 0.5
        linear = self.transform[:, :2] * (2.0 / size)
        offset = self.transform[:, :2] @ np.full(2, 1.0 / size - 1.0) + self.transform[:, 2] - 0.5
        return np.concatenate([linear, offset[:, None]], axis=1)


class Found(NamedTuple):
    """What :meth:`FaceAligner.find` found in one frame, for
    :meth:`FaceAligner.faces_found`: the RGB frame, MediaPipe's landmark
    lists (None: no face), the replicated border they were found with (px;
    image mode's retry) and the segmentation mask being prefetched (or None)."""

    image: np.ndarray
    landmarks: list | None
    pad: int
    pending: Future | None


class FaceAligner:
    """Finds faces with MediaPipe Face Mesh and aligns them to the canonical frame.

    Usable as a context manager; :meth:`close` releases the MediaPipe graphs
    and any later call raises ``RuntimeError``. Options come from an
    :class:`AlignOptions` and/or keyword overrides::

        FaceAligner(mode="video", max_faces=1, segmentation=False)

    Calls are serialised by an internal lock (the MediaPipe graphs are not
    re-entrant), so sharing one aligner between threads is safe but runs
    one frame at a time; for parallel throughput create one per thread.
    """

    def __init__(self, options: AlignOptions | None = None, **overrides: Any):
        if options is not None and not isinstance(options, AlignOptions):
            raise ValueError(f"options must be an AlignOptions, got {type(options).__name__}.")
        unknown = sorted(set(overrides) - {f.name for f in dataclasses.fields(AlignOptions)})
        if unknown:
            raise ValueError(f"Unknown option(s) {', '.join(unknown)}; see AlignOptions.")
        self.options = dataclasses.replace(options or AlignOptions(), **overrides)
        self.options.validate()

        self._mesh = self._new_mesh()
        self._segmenter = None  # created on first use
        self._detector = None  # image mode's full-range face detector (_small_faces), on first use
        self._lock = threading.RLock()  # the face mesh graph and the stream's clock
        self._seg_lock = threading.Lock()  # the segmentation graph (runs beside the mesh when prefetched)
        self._seg_owner: int | None = None  # the thread inside _segment (holding _seg_lock), if any
        self._seg_thread: ThreadPoolExecutor | None = None  # prefetch_segmentation's one thread
        self._last_timestamp_ms: float | None = None
        self._graph_ms: float | None = None  # the time of the last frame the graph saw (video: restart_after_ms)
        self._last_shape: tuple[int, int] | None = None  # video mode: the last frame's (height, width)
        self._closed = False

    # -- public API ---------------------------------------------------------

    def detect(
        self, frame: Any, timestamp_ms: float | None = None, color_order: str = "rgb"
    ) -> list[AlignedFace]:
        """Find and align every face in ``frame``.

        Args:
            frame: image as accepted by :func:`avatarizer.imageio.to_rgb_uint8`
                (normally ``H×W×3`` uint8).
            timestamp_ms: the frame's time in milliseconds; required and
                strictly increasing in video mode, not allowed in image mode.
                (MediaPipe's legacy graphs keep their own 30 fps clock; the
                value is checked so that callers feed frames in order.)
            color_order: ``"rgb"`` or ``"bgr"`` (OpenCV frames).

        Returns:
            The faces, largest landmark bounding box first; ``[]`` if none.
            In image mode a photo where none is found is searched once more
            with a replicated border (a face that fills a tight portrait
            crop escapes the detector otherwise), then for small faces
            (:meth:`_small_faces`: the full-range detector, at
            ``min_detection_confidence`` too, over the photo and squares of
            it) (:meth:`align` and ``Avatarizer`` search so also where
            fewer faces were found than they take: see :meth:`faces_found`'s
            ``want``); the landmarks are always in the frame's own pixels.

        Raises:
            ValueError: bad image, or a timestamp that does not fit the mode.
            RuntimeError: the aligner is closed.
        """
        return self.faces_found(self.find(frame, timestamp_ms, color_order))

    def find(self, frame: Any, timestamp_ms: float | None = None, color_order: str = "rgb") -> Found:
        """The first half of :meth:`detect` (same arguments and errors):
        the frame checked against the clock and MediaPipe's landmarks found
        (MediaPipe's graph runs with the GIL released), nothing else. Pass
        what it returns to :meth:`faces_found`, on any thread, once: a video
        stream (``Avatarizer.stream``) finds the next frame's landmarks on
        its read-ahead thread and builds the faces (the poses, the aligning
        transforms: ~0.2 ms of Python) on the consuming thread, so that the
        read-ahead thread, the stream's slowest, does the landmarks alone."""
        self._check_open()
        image = to_rgb_uint8(frame, color_order)
        height, width = image.shape[:2]
        pending = None
        if self.options.mode == "image" and self.options.segmentation and self.options.prefetch_segmentation:
            pending = self._prefetch_segmentation(image)
        with self._lock:
            self._check_open()
            self._accept_timestamp(timestamp_ms)
            if self.options.mode == "video":
                seen = self._graph_ms  # (not the clock, which a stream's read-ahead may rewind, to None too)
                if self._last_shape not in (None, (height, width)) or (
                        seen is not None and self._last_timestamp_ms - seen > self.options.restart_after_ms):
                    # another frame size, or a gap (restart_after_ms): MediaPipe would look for the face where
                    # it was tracked, in the old frame's proportions or before the gap, and miss it on this
                    # frame, or find it in a stale box
                    old, self._mesh = self._mesh, self._new_mesh()
                    old.close()
                self._last_shape = (height, width)
                self._graph_ms = self._last_timestamp_ms
            found = _face_landmarks(self._mesh, image)
        pad = 0
        if not found and self.options.mode == "image":
            # A face that fills the photo (a tight portrait crop) escapes
            # MediaPipe's detector; a replicated border (as the training
            # alignment adds, export's data.align) gives it room. The
            # landmarks are mapped back to the photo's own pixels, and the
            # crops replicate the same border.
            pad = max(height, width) // PAD_RETRY_DIVISOR
            padded = cv2.copyMakeBorder(image, pad, pad, pad, pad, cv2.BORDER_REPLICATE)
            with self._lock:
                self._check_open()
                found = _face_landmarks(self._mesh, padded)
        return Found(image, found, pad, pending)

    def faces_found(self, found: Found, want: int | None = None, small_faces: bool = True) -> list[AlignedFace]:
        """The second half of :meth:`detect`: the faces of what :meth:`find`
        found, largest first; ``[]`` if none (in image mode after the search
        for small faces). ``want``: how many faces the caller takes (at most
        ``max_faces``); in image mode, where FaceMesh found fewer, the
        small-face search runs too and adds the faces it finds that FaceMesh
        did not: beside a larger face, FaceMesh missed a 92 px portrait it
        finds alone (or with a third face), and ``--face 1`` said there was
        no second face; and where FaceMesh found two faces or more, whatever
        ``want`` is (face K is then the K-th largest for every ``want``).
        None (:meth:`detect`): the search only where FaceMesh found none or
        several (it costs ~10 ms on a 512 px photo).
        ``Avatarizer`` passes ``face_index + 1``, or ``max_faces`` for
        :meth:`~avatarizer.Avatarizer.faces`. ``small_faces`` False: no
        such search (FaceMesh's faces alone: video mode's identity worker
        finds a tracked face again, which FaceMesh fits, and the search cost
        ~40 ms more with two people in view)."""
        self._check_open()
        image, found, pad, pending = found
        height, width = image.shape[:2]
        points = []
        for item in found or ():  # (None: FaceMesh found none)
            landmarks = _landmark_array(item, width + 2 * pad, height + 2 * pad)
            if pad:  # back to the photo's own pixels
                landmarks -= np.array([pad, pad, 0], np.float32)
            points.append(landmarks)
        wanted = 1 if want is None else min(want, self.options.max_faces)
        # (a frame where FaceMesh found two faces or more is searched too, whatever the call takes: FaceMesh
        # can miss a large face beside smaller ones, and with the search run only for fewer faces than asked,
        # face_index=1 was a face of 12,444 px² where faces()[1] was one of 16,731, and max_faces=2 left the
        # largest out; a review, session 65)
        if self.options.mode == "image" and small_faces and (len(points) < wanted or 2 <= len(points) < MAX_FACES):
            points += [p for p in self._small_faces(image) if not any(_same_face(p, q) for q in points)]
        if not points:
            if pending is not None:
                pending.cancel()  # not started yet: never runs; running: its mask is dropped
            return []
        if self.options.mode == "image":  # (a face tilted far: read again from the photo turned upright)
            points = self._upright_fits(image, points)
        context = _FrameContext(image, self, pending)
        faces = [_build_face(landmarks, (height, width), context) for landmarks in points]
        faces.sort(key=lambda f: box_area(f.box), reverse=True)
        return _without_contained(faces)[: self.options.max_faces]

    def _upright_fits(self, image: np.ndarray, points: list) -> list:
        """Image mode: each face tilted more than :data:`UPRIGHT_RETRY_ROLL`
        is looked for again in the photo turned a quarter (or half) turn
        toward upright, and that fit, mapped back, replaces the first where
        it is the more upright in its own frame. FaceMesh fits a face far
        from upright worse: of 40 portraits turned a quarter turn, 4-6 came
        back with the roll more than 10° off (up to 150°) and the hair
        colour, glasses or gender of another person (a read-only review,
        helper-376). One more FaceMesh call, only for such photos."""
        turns = {}
        for i, lm in enumerate(points):
            r = _roll_of(lm)
            if abs(r) > UPRIGHT_RETRY_ROLL:
                turns.setdefault(2 if abs(r) > 135 else (1 if r > 0 else -1), []).append((i, abs(r)))
        if not turns:
            return points
        points = list(points)
        height, width = image.shape[:2]
        for k, todo in turns.items():
            turned = np.ascontiguousarray(np.rot90(image, k))
            with self._lock:
                self._check_open()
                found = _face_landmarks(self._mesh, turned)
            fits = []
            for item in found or ():
                lm = _landmark_array(item, turned.shape[1], turned.shape[0])
                fits.append((abs(_roll_of(lm)), _unturn(lm, k, height, width)))
            for i, tilt in todo:
                box = _box_of(points[i])
                best = None
                for own, lm in fits:  # the same face: its centre inside the first fit's box, the more upright
                    cx, cy = _box_centre(_box_of(lm))
                    if box[0] <= cx <= box[2] and box[1] <= cy <= box[3] and own < tilt \
                            and (best is None or own < best[0]):
                        best = (own, lm)
                if best is not None:
                    points[i] = best[1]
        return points

    def align(
        self,
        frame: Any,
        timestamp_ms: float | None = None,
        color_order: str = "rgb",
        face_index: int = 0,
    ) -> AlignedFace | None:
        """The ``face_index``-th largest face (the largest by default), or
        ``None`` if there are not that many faces. Same arguments as
        :meth:`detect`."""
        if isinstance(face_index, bool) or not isinstance(face_index, int) or face_index < 0:
            raise ValueError(f"face_index must be a non-negative integer, got {face_index!r}.")
        faces = self.faces_found(self.find(frame, timestamp_ms, color_order), face_index + 1)
        return faces[face_index] if face_index < len(faces) else None

    def reset(self) -> None:
        """Start a new stream: a fresh MediaPipe graph (no tracked face carries
        over) and timestamps may start again from any value."""
        with self._lock:
            self._check_open()
            old, self._mesh = self._mesh, self._new_mesh()
            self._last_timestamp_ms = self._graph_ms = None
            self._last_shape = None
        old.close()

    def _small_faces(self, image: np.ndarray) -> list[np.ndarray]:
        """Image mode, where FaceMesh found no face (or fewer than the call
        takes: :meth:`faces_found`'s ``want``): the (478, 3) frame-pixel
        landmarks of each face the full-range detector finds (at most
        ``max_faces`` and :data:`IMAGE_MESH_FACES`, the likeliest first;
        :meth:`detect` keeps the largest), each from FaceMesh run on a
        square of :data:`SMALL_FACE_CONTEXT` times its box around it, resized
        to :data:`SMALL_FACE_CROP` pixels (a replicated border where the
        square leaves the photo). A face found twice (overlapping boxes) is
        kept once."""
        height, width = image.shape[:2]
        with self._lock:
            self._check_open()
            if self._detector is None:  # (made once; each tile is a call of its own below)
                from mediapipe.python.solutions import face_detection

                conf = float(self.options.min_detection_confidence)
                self._detector = mediapipe_graph(lambda: face_detection.FaceDetection(
                    model_selection=1, min_detection_confidence=conf))
        found = []  # (score, centre x, centre y, side) in the photo's pixels

        def search(tiles) -> None:
            for x0, y0, side in tiles:
                tile = np.ascontiguousarray(image[y0:y0 + side, x0:x0 + side])
                with self._lock:
                    self._check_open()
                    detections = self._detector.process(tile).detections or []
                th, tw = tile.shape[:2]
                for d in detections:
                    b = d.location_data.relative_bounding_box
                    x, y, w, h = b.xmin * tw, b.ymin * th, b.width * tw, b.height * th
                    if w > 1 and h > 1 and np.isfinite([x, y, w, h]).all():
                        found.append((float(d.score[0]), x0 + x + w / 2, y0 + y + h / 2, max(w, h)))

        coarse = _detection_tiles(width, height)
        search(coarse)
        if any(size < SMALL_FACE_FINE_HINT * min(width, height) for *_, size in found):
            # small faces seen: a group photo, where more may hide below what the coarse squares resolve
            search([t for t in _detection_tiles(width, height, fine=True) if t not in coarse])
        boxes = []  # the likeliest first; a box over one kept already (a tile's overlap) is the same face
        for score, cx, cy, size in sorted(found, reverse=True):
            if not any(_one_place(cx, cy, size, bx, by, bs) for bx, by, bs in boxes):
                boxes.append((cx, cy, size))
        boxes = boxes[: self._image_search_faces()]  # (detect keeps the largest max_faces)
        out: list[np.ndarray] = []
        for cx, cy, size in boxes:
            side = max(8, int(round(SMALL_FACE_CONTEXT * size)))
            x0, y0 = int(round(cx - side / 2)), int(round(cy - side / 2))
            # the part of the square inside the photo, its overhang replicated (not the whole photo padded)
            inside = image[max(0, y0):min(height, y0 + side), max(0, x0):min(width, x0 + side)]
            if inside.size == 0:
                continue
            crop = cv2.copyMakeBorder(inside, max(0, -y0), max(0, y0 + side - height), max(0, -x0),
                                      max(0, x0 + side - width), cv2.BORDER_REPLICATE)
            scale = SMALL_FACE_CROP / side
            crop = np.ascontiguousarray(cv2.resize(crop, (SMALL_FACE_CROP, SMALL_FACE_CROP),
                                                   interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_CUBIC))
            with self._lock:
                self._check_open()
                meshes = _face_landmarks(self._mesh, crop)
            if not meshes:
                continue
            # the face nearest the square's centre (a neighbour may show at its edge)
            lms = [_landmark_array(item, SMALL_FACE_CROP, SMALL_FACE_CROP) for item in meshes]
            lm = min(lms, key=lambda a: float(np.hypot(*(a[:, :2].mean(0) - SMALL_FACE_CROP / 2))))
            lm = lm / np.float32(scale) + np.array([x0, y0, 0], np.float32)
            centre, extent = lm[:, :2].mean(0), float(np.ptp(lm[:, 0]))
            if any(np.hypot(*(centre - o[:, :2].mean(0))) < 0.5 * extent for o in out):
                continue
            out.append(lm.astype(np.float32))
        return out

    def _image_search_faces(self) -> int:
        """How many faces image mode searches for (FaceMesh, the small-face
        search): ``max_faces``, at least :data:`IMAGE_MESH_FACES`."""
        return max(self.options.max_faces, IMAGE_MESH_FACES)

    def _new_mesh(self):
        return face_mesh_graph(self.options)

    def __copy__(self):
        # a copy shared the graphs: closing it left the original a MediaPipe ValueError
        raise TypeError("A FaceAligner cannot be copied or pickled; create another with the same options "
                        "(FaceAligner(al.options)), one in each process.")

    def __deepcopy__(self, memo):  # (it failed on the locks, with an obscure message)
        self.__copy__()

    def __reduce__(self):  # (pickle: it failed on the graphs' locks, with an obscure message)
        self.__copy__()

    def close(self) -> None:
        """Release the MediaPipe graphs (after a segmentation under way has
        finished). Calling it again does nothing."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            if _forked_after_mediapipe:
                # a forked child: MediaPipe's graph threads did not survive the
                # fork, and closing the graph would wait for them forever
                self._mesh = self._segmenter = self._seg_thread = self._detector = None
                return
            self._mesh.close()
            self._mesh = None
            if self._detector is not None:
                self._detector.close()
                self._detector = None
            thread, self._seg_thread = self._seg_thread, None
        if thread is not None:
            thread.shutdown(wait=False, cancel_futures=True)
        if self._seg_owner == threading.get_ident():
            # closed from inside _segment on this thread (an aligner dropped in a reference cycle is
            # finalized by whichever thread the garbage collector runs on): waiting for the lock
            # would wait for itself; _segment lets go of the graph when its call is done
            return
        with self._seg_lock:  # waits for a segmentation in progress
            self._close_segmenter()

    def _close_segmenter(self) -> None:
        if self._segmenter is not None:
            self._segmenter.close()
            self._segmenter = None

    def rewind_clock(self, timestamp_ms: float | None) -> None:
        """Video mode: the next frame need only be later than ``timestamp_ms``
        (None: any time). MediaPipe's tracking is kept (its graph keeps its
        own clock); for frames that were read ahead and never used."""
        with self._lock:
            self._last_timestamp_ms = None if timestamp_ms is None else float(timestamp_ms)

    @property
    def closed(self) -> bool:
        return self._closed

    def __enter__(self) -> FaceAligner:
        self._check_open()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        return f"FaceAligner({self.options}, {state})"

    # -- internals ----------------------------------------------------------

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError("This FaceAligner is closed; create a new one.")
        if _forked_after_mediapipe:
            raise RuntimeError(FORKED_MESSAGE)

    def _accept_timestamp(self, timestamp_ms: float | None) -> None:
        if self.options.mode == "image":
            if timestamp_ms is not None:
                raise ValueError(
                    "timestamp_ms is only used in video mode; create the aligner with "
                    "mode='video' to track faces over time."
                )
            return
        if timestamp_ms is None:
            raise ValueError(
                "In video mode detect() needs timestamp_ms, the frame's time in "
                "milliseconds, strictly increasing from call to call."
            )
        self._last_timestamp_ms = check_timestamp(timestamp_ms, self._last_timestamp_ms)

    def _prefetch_segmentation(self, image: np.ndarray) -> Future | None:
        """Starts :meth:`_segment` of ``image`` on the aligner's segmentation
        thread (made on first use); None once the aligner is closed."""
        with self._lock:
            if self._closed:
                return None
            if self._seg_thread is None:
                self._seg_thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="avatarizer-segmentation")
            try:
                return self._seg_thread.submit(self._segment, image)
            except RuntimeError:  # interpreter shutting down: segment on demand instead
                return None

    def _segment(self, image: np.ndarray) -> np.ndarray:
        """Full-frame person mask (H×W float32, read-only view owned by MediaPipe)."""
        with self._seg_lock:
            self._seg_owner = threading.get_ident()
            try:
                self._check_open()
                if self._segmenter is None:
                    from mediapipe.python.solutions import selfie_segmentation

                    self._segmenter = mediapipe_graph(
                        lambda: selfie_segmentation.SelfieSegmentation(model_selection=0))
                mask = self._segmenter.process(image).segmentation_mask
                if self._closed:  # closed on this thread meanwhile (close): the graph goes now
                    mask = np.array(mask)  # (a copy: the graph's own buffer goes with it)
                    self._close_segmenter()
                return mask
            finally:
                self._seg_owner = None


def _detection_tiles(width: int, height: int, fine: bool = False) -> list[tuple[int, int, int]]:
    """(x0, y0, side) of the squares :meth:`FaceAligner._small_faces` runs the
    face detector on: the whole photo, then squares of its shorter side
    (unless it is square) and, from :data:`SMALL_FACE_MIN_TILE` up (with
    ``fine``, from 64 pixels up), of half of it, overlapping by half (a
    detector sees the photo downscaled to 192 pixels: a face 5% of a
    3000×2000 photo's width was 10 pixels there)."""
    tiles = [(0, 0, max(width, height))]  # (the whole photo: a square past its edges is cut to it)
    short = min(width, height)
    least = 64 if fine else SMALL_FACE_MIN_TILE
    for side in (short, short // 2):
        if side < 64 or (side == short and width == height) or (side < short and side < least):
            continue  # (squares of the shorter side: a wide or tall photo's; of half of it: a big photo's)
        # overlapping by half, at most 64 along a side: a strip longer than that is left to the whole
        step = max(1, side // 2, -(-(max(width, height) - side) // 63))
        if step > side:
            continue
        xs = sorted({*range(0, max(1, width - side + 1), step), max(0, width - side)})
        ys = sorted({*range(0, max(1, height - side + 1), step), max(0, height - side)})
        tiles += [(x, y, side) for y in ys for x in xs]
    return tiles


#: a face whose landmark box lies at least this much (of its own area) inside
#: a larger face's box, around one of its irises, is a spurious detection of
#: that face's eye, not a face (:func:`_without_contained`)
CONTAINED = 0.8
_IRIS_CENTRES = (468, 473)


def _one_place(ax: float, ay: float, a_size: float, bx: float, by: float, b_size: float) -> bool:
    """Whether two faces found (centres and sizes) are one face found twice:
    their centres less than half the larger one's size apart."""
    return bool(np.hypot(ax - bx, ay - by) < 0.5 * max(a_size, b_size))


def _same_face(a: np.ndarray, b: np.ndarray) -> bool:
    """:func:`_one_place` for two faces' (N, 3) landmarks."""
    (ax, ay), (bx, by) = a[:, :2].mean(0), b[:, :2].mean(0)
    return _one_place(ax, ay, max(np.ptp(a[:, 0]), np.ptp(a[:, 1])), bx, by, max(np.ptp(b[:, 0]), np.ptp(b[:, 1])))


def _without_contained(faces: list) -> list:
    """``faces`` (largest first) without those that are an eye of a larger
    one: a box at least :data:`CONTAINED` inside the larger face's box and
    around one of its iris centres. MediaPipe found an eye of an elderly
    close-up as a second face (9 "faces" on 8 of the 33 dataset photos where
    FaceMesh finds two or more; 96-100% inside, each around an iris), and
    every-face calls drew an avatar of it; real second people overlap at
    most 31% there. A separate face over a larger one (a poster behind a
    person) is kept unless it covers that face's eye (a review: the box
    test alone dropped 294 of 504 such composites, with the iris 126). In
    both modes (:meth:`FaceAligner.detect`)."""
    kept: list = []
    for f in faces:
        if not any(_is_an_eye_of(f, k) for k in kept):
            kept.append(f)
    return kept


def _is_an_eye_of(f, k) -> bool:
    """Whether face ``f``'s box lies at least :data:`CONTAINED` inside face
    ``k``'s and around one of ``k``'s iris centres."""
    x0, y0, x1, y1 = f.box
    area = max((x1 - x0) * (y1 - y0), 1e-9)
    inside = max(0.0, min(x1, k.box[2]) - max(x0, k.box[0])) * max(0.0, min(y1, k.box[3]) - max(y0, k.box[1]))
    irises = np.asarray(k.landmarks, np.float64)[list(_IRIS_CENTRES), :2]
    around = ((irises[:, 0] >= x0) & (irises[:, 0] <= x1) & (irises[:, 1] >= y0) & (irises[:, 1] <= y1)).any()
    return inside >= CONTAINED * area and bool(around)


def _face_landmarks(mesh: Any, image: np.ndarray) -> list | None:
    """``mesh.process(image).multi_face_landmarks`` for a MediaPipe
    ``FaceMesh`` (a legacy ``SolutionBase``): the same steps (packet at the
    next simulated 30 fps timestamp, wait until the graph is idle, the output
    packet's landmark lists), without ``process()``'s per-call
    ``collections.namedtuple`` class (built with ``exec``: about 0.17 ms,
    holding the GIL, on every frame). The landmark lists come as their
    serialized bytes (what ``process()`` parses into protobuf messages and
    :func:`_landmark_array` would serialize again), which
    :func:`_landmark_array` takes as they are. Falls back to ``process()``
    when the solution's internals are not the ones of mediapipe 0.10.21."""
    try:
        from mediapipe.python._framework_bindings import _packet_getter
        from mediapipe.python.solution_base import PacketDataType

        graph, outputs = mesh._graph, mesh._graph_outputs
        ((name, kind),) = mesh._input_stream_type_info.items()
        ((out_name, out_kind),) = mesh._output_stream_type_info.items()
        make = mesh._make_packet
        serialized = _packet_getter._get_serialized_proto_list
        if out_kind != PacketDataType.PROTO_LIST:
            raise ValueError(out_kind)
    except (AttributeError, ValueError, ImportError):
        return mesh.process(image).multi_face_landmarks
    if graph is None:
        raise ValueError("_graph is None in SolutionBase")  # as process() says
    if image.shape[2] != 3:
        raise ValueError("Input image must contain three channel rgb data.")
    outputs.clear()
    mesh._simulated_timestamp += 33333
    graph.add_packet_to_input_stream(stream=name, packet=make(kind, image).at(mesh._simulated_timestamp))
    graph.wait_until_idle()
    packet = outputs.get(out_name)
    if packet is None or packet.is_empty():  # no output: no face (process() gives None too)
        return None
    return list(serialized(packet))


def check_timestamp(timestamp_ms: Any, last: float | None = None) -> float:
    """A video frame's time as a float: ``ValueError`` unless it is a finite
    number of milliseconds (not a bool) within ±:data:`MAX_TIMESTAMP_MS` and,
    given the ``last`` one, later than it. The one check of timestamps, for
    the aligner, the pipeline's stream clock and the API."""
    if not is_real(timestamp_ms):  # (not a bool, a complex number, a timedelta64, NaN or inf)
        raise ValueError(f"timestamp_ms must be a finite number of milliseconds, got {timestamp_ms!r}.")
    t = float(timestamp_ms)
    if abs(t) > MAX_TIMESTAMP_MS:
        raise ValueError(f"timestamp_ms must be within ±{MAX_TIMESTAMP_MS:.4g} ms (about 142 years; within it a "
                         f"float tells frames a microsecond apart), got {t!r}.")
    if last is not None and t <= last:
        raise ValueError(f"timestamp_ms must be strictly increasing in video mode: got {t!r} after {last!r}.")
    return t


# -- geometry -----------------------------------------------------------------


_sum = np.add.reduce


def estimate_similarity(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Least-squares similarity transform (rotation, uniform scale,
    translation; no reflection) mapping ``src`` points onto ``dst`` points.

    Umeyama (1991): minimises ``sum |s R src_i + t - dst_i|^2``.

    Args:
        src, dst: ``(N, 2)`` point arrays, ``N >= 2``.

    Returns:
        ``(2, 3)`` float64 matrix ``[s R | t]``.

    Raises:
        ValueError: mismatched shapes or all ``src`` points identical.
    """
    src = np.asarray(src, dtype=np.float64)
    dst = np.asarray(dst, dtype=np.float64)
    if src.ndim != 2 or src.shape[1] != 2 or src.shape != dst.shape or src.shape[0] < 2:
        raise ValueError(
            f"src and dst must both have shape (N, 2) with N >= 2, got {src.shape} and {dst.shape}."
        )
    if src.shape[0] == 3:  # the alignment's anchors, on every frame: in floats
        m = _similarity3(src.tolist(), dst.tolist())
        if m is None:
            raise ValueError("Cannot fit a similarity transform: all source points coincide.")
        return m
    # ufunc reductions: what .mean() and .sum() compute, without their Python
    # wrappers
    n = src.shape[0]
    src_mean = _sum(src, 0) / n
    dst_mean = _sum(dst, 0) / n
    src_c = src - src_mean
    dst_c = dst - dst_mean
    src_var = float(_sum(src_c * src_c, None))
    if not src_var > 0.0:
        raise ValueError("Cannot fit a similarity transform: all source points coincide.")
    # Umeyama's solution in its closed 2-D form (the SVD of a 2×2 covariance,
    # reflection excluded): s·cos θ and s·sin θ are the centred dot and cross
    # sums over the source variance.
    a = float(_sum(src_c * dst_c, None)) / src_var
    b = float(_sum(src_c[:, 0] * dst_c[:, 1] - src_c[:, 1] * dst_c[:, 0], None)) / src_var
    linear = np.array([[a, -b], [b, a]])
    translation = dst_mean - linear @ src_mean
    return np.concatenate([linear, translation[:, None]], axis=1)


def _similarity3(src, dst) -> np.ndarray | None:
    """:func:`estimate_similarity` for three points (sequences of three (x, y)
    floats), in plain float arithmetic: the same numbers as numpy's reductions
    give (numpy sums fewer than 8 values left to right), and numpy's
    ``dst_mean - linear @ src_mean`` for the translation. ``None`` when the
    source points coincide. :mod:`avatarizer.expressions` fits its avatar's
    anchors with it too."""
    (s0x, s0y), (s1x, s1y), (s2x, s2y) = src
    (d0x, d0y), (d1x, d1y), (d2x, d2y) = dst
    msx, msy = (s0x + s1x + s2x) / 3, (s0y + s1y + s2y) / 3
    mdx, mdy = (d0x + d1x + d2x) / 3, (d0y + d1y + d2y) / 3
    a0x, a0y, a1x, a1y, a2x, a2y = s0x - msx, s0y - msy, s1x - msx, s1y - msy, s2x - msx, s2y - msy
    b0x, b0y, b1x, b1y, b2x, b2y = d0x - mdx, d0y - mdy, d1x - mdx, d1y - mdy, d2x - mdx, d2y - mdy
    var = a0x * a0x + a0y * a0y + a1x * a1x + a1y * a1y + a2x * a2x + a2y * a2y
    if not var > 0.0:
        return None
    # Umeyama's solution in its closed 2-D form (the SVD of a 2×2 covariance,
    # reflection excluded): s·cos θ and s·sin θ are the centred dot and cross
    # sums over the source variance.
    a = (a0x * b0x + a0y * b0y + a1x * b1x + a1y * b1y + a2x * b2x + a2y * b2y) / var
    b = ((a0x * b0y - a0y * b0x) + (a1x * b1y - a1y * b1x) + (a2x * b2y - a2y * b2x)) / var
    t = np.array([mdx, mdy]) - np.array([[a, -b], [b, a]]) @ np.array([msx, msy])
    tx, ty = t.tolist()
    return np.array([[a, -b, tx], [b, a, ty]])


def invert_affine(matrix: np.ndarray) -> np.ndarray:
    """Inverse of a ``(2, 3)`` affine matrix, as ``(2, 3)`` float64."""
    matrix = np.asarray(matrix, dtype=np.float64)
    (a, b), (c, d) = matrix[:, :2]
    det = a * d - b * c
    if det == 0.0 or not math.isfinite(det):
        raise ValueError("The affine matrix is singular and has no inverse.")
    # Closed form in scalars: np.linalg.inv on a 2×2 costs ~1 ms here when
    # OpenBLAS threads compete with MediaPipe's, and even the 2×2 @ 2 product
    # of the translation took 0.27 ms a video frame (BLAS again)
    tx, ty = float(matrix[0, 2]), float(matrix[1, 2])
    ia, ib, ic, id_ = d / det, -b / det, -c / det, a / det
    return np.array([[ia, ib, -(ia * tx + ib * ty)], [ic, id_, -(ic * tx + id_ * ty)]])


def anchor_points(landmarks: np.ndarray) -> np.ndarray:
    """The alignment anchors of one face, ``(3, 2)`` float64, in the order
    of :data:`CANONICAL_TARGETS`: image-left eye centre, image-right eye
    centre, mouth centre.

    Eye centres are the midpoints of :data:`EYE_CORNERS`, the mouth centre
    the midpoint of :data:`MOUTH_CORNERS`. Which eye is "image-left" is
    decided per face from geometry, not from MediaPipe's index names: it is
    the eye that lies on the left once the face is turned upright (mouth
    below the eyes), i.e. the eye with the smaller x for any roll within
    ±90°, and the choice that keeps the eyes-mouth triangle's orientation
    for upside-down faces, so the fit never needs a reflection. Mirrored
    and rotated inputs are therefore handled alike.
    """
    return np.array(_anchor_rows(landmarks, 2))


#: the landmarks the anchors are the midpoints of: eye a, eye b, mouth (two each)
_ANCHOR_LANDMARKS = np.array([*EYE_CORNERS[0], *EYE_CORNERS[1], *MOUTH_CORNERS])


def _anchor_rows(landmarks: np.ndarray, columns: int) -> list:
    """Anchors as in :func:`anchor_points`, as three lists of ``columns`` floats
    (x, y or x, y, z; x, y decide the eye order), from the six landmarks they
    need (float64 arithmetic on floats, as numpy's)."""
    (a0, a1, b0, b1, m0, m1) = np.asarray(landmarks)[_ANCHOR_LANDMARKS, :columns].astype(np.float64).tolist()
    eye_a = [(u + v) * 0.5 for u, v in zip(a0, a1)]
    eye_b = [(u + v) * 0.5 for u, v in zip(b0, b1)]
    mouth = [(u + v) * 0.5 for u, v in zip(m0, m1)]
    # With y down, (right - left) × (mouth - left) > 0 for an upright face.
    across = (eye_b[0] - eye_a[0], eye_b[1] - eye_a[1])
    down = (mouth[0] - eye_a[0], mouth[1] - eye_a[1])
    if across[0] * down[1] - across[1] * down[0] >= 0.0:
        return [eye_a, eye_b, mouth]
    return [eye_b, eye_a, mouth]


def _build_face(
    landmarks: np.ndarray, frame_shape: tuple[int, int], context: _FrameContext | None
) -> AlignedFace:
    inverse = _similarity3(_anchor_rows(landmarks, 2), _CANONICAL_TARGET_ROWS)
    if inverse is None:
        raise ValueError("Cannot fit a similarity transform: all source points coincide.")
    transform = invert_affine(inverse)
    xy = landmarks[:, :2]
    canonical = (xy @ inverse[:, :2].T + inverse[:, 2]).astype(np.float32)
    x0, y0, x1, y1 = _box_of(landmarks)
    face = AlignedFace(
        landmarks=landmarks,
        canonical=canonical,
        transform=transform,
        inverse=inverse,
        box=(x0, y0, x1, y1),
        frame_shape=frame_shape,
    )
    face._context = context
    return face


_CANONICAL_TARGET_ROWS = np.asarray(CANONICAL_TARGETS, np.float64).tolist()
_CHIN_FOREHEAD = np.array([_CHIN, _FOREHEAD])


def _yaw_pitch(landmarks: np.ndarray) -> tuple[float, float]:
    """Rough (yaw, pitch) in degrees from the 3-D landmarks; see AlignedFace."""
    left, right, _ = _anchor_rows(landmarks, 3)
    ax, ay, az = right[0] - left[0], right[1] - left[1], right[2] - left[2]  # image-left → right eye, 3-D
    yaw = math.degrees(math.atan2(az, math.hypot(ax, ay)))

    # Face vertical axis: forehead → chin, made orthogonal to the eye line
    # in the image plane so that roll does not leak into pitch.
    (cx, cy, cz), (fx, fy, fz) = np.asarray(landmarks)[_CHIN_FOREHEAD].astype(np.float64).tolist()
    dx, dy, dz = cx - fx, cy - fy, cz - fz
    n = max(math.sqrt(ax * ax + ay * ay), 1e-9)  # what np.linalg.norm gives for two values
    ux, uy = ax / n, ay / n
    along = dx * ux + dy * uy
    ox, oy = dx - along * ux, dy - along * uy
    # Chin closer to the camera than the forehead (smaller z) ⇒ looking up.
    pitch = math.degrees(math.atan2(-dz, math.sqrt(ox * ox + oy * oy))) - _PITCH_OFFSET_DEG
    return yaw, pitch


# -- MediaPipe output ---------------------------------------------------------

# A NormalizedLandmark with exactly x, y, z set serialises to 17 bytes:
# 0x0A 0x0F (field 1, length 15) then 0x0D x(4) 0x15 y(4) 0x1D z(4).
_RECORD = 17
_RECORD_TAGS = {0: 0x0A, 1: 0x0F, 2: 0x0D, 7: 0x15, 12: 0x1D}
# every record's byte at each tag column, as data[column::_RECORD] reads them
_TAG_RUNS = [(column, bytes([tag]) * NUM_LANDMARKS) for column, tag in _RECORD_TAGS.items()]


def _roll_of(landmarks: np.ndarray) -> float:
    """:attr:`AlignedFace.roll` of a landmark array (degrees)."""
    eyes = anchor_points(landmarks)
    dx, dy = eyes[1] - eyes[0]
    return math.degrees(math.atan2(dy, dx))


def _box_of(landmarks: np.ndarray) -> tuple[float, float, float, float]:
    """The landmarks' bounding box ``(x0, y0, x1, y1)`` in pixels (:attr:`AlignedFace.box`)."""
    xy = landmarks[:, :2]
    x0, y0 = np.minimum.reduce(xy, 0).tolist()
    x1, y1 = np.maximum.reduce(xy, 0).tolist()
    return x0, y0, x1, y1


def _box_centre(box) -> tuple[float, float]:
    return 0.5 * (box[0] + box[2]), 0.5 * (box[1] + box[3])


def _unturn(landmarks: np.ndarray, k: int, height: int, width: int) -> np.ndarray:
    """Landmarks found in ``np.rot90(image, k)`` (k = 1, -1 or 2) in the
    pixels of ``image`` (``height`` x ``width``); depth as it is (pixels)."""
    out = landmarks.copy()
    x, y = landmarks[:, 0], landmarks[:, 1]
    if k == 1:      # np.rot90 turns counter-clockwise: turned (x', y') was (W - y', x')
        out[:, 0], out[:, 1] = width - y, x
    elif k == -1:   # clockwise: (y', H - x')
        out[:, 0], out[:, 1] = y, height - x
    else:           # a half turn: (W - x', H - y')
        out[:, 0], out[:, 1] = width - x, height - y
    return out


def _landmark_array(landmark_list: Any, width: int, height: int) -> np.ndarray:
    """(478, 3) float32 frame-pixel landmarks from a NormalizedLandmarkList
    (or its serialized bytes, as :func:`_face_landmarks` gives them).

    Decodes the serialised protobuf with numpy when it has the expected fixed
    layout (478 records of exactly x, y, z, their tags checked with byte
    slices): the floats are read through a strided view of the bytes (x at
    byte 3 of each record, y 5 bytes later, z 5 more) and scaled in one
    product, about 10× faster than iterating the 478 Python objects; it falls
    back to plain iteration otherwise.
    """
    if isinstance(landmark_list, bytes):
        data, landmark_list = landmark_list, None
    else:
        data = landmark_list.SerializeToString()
    scale = np.array([width, height, width], dtype=np.float32)
    if len(data) == NUM_LANDMARKS * _RECORD and all(data[c::_RECORD] == run for c, run in _TAG_RUNS):
        xyz = np.ndarray((NUM_LANDMARKS, 3), "<f4", data, 3, (_RECORD, 5))  # a read-only view
        return (xyz * scale).astype(np.float32, copy=False)
    if landmark_list is None:
        from mediapipe.framework.formats import landmark_pb2

        landmark_list = landmark_pb2.NormalizedLandmarkList.FromString(data)
    count = len(landmark_list.landmark)
    if count != NUM_LANDMARKS:
        raise RuntimeError(
            f"MediaPipe returned {count} landmarks per face, expected {NUM_LANDMARKS} "
            "(refine_landmarks=True); is the installed mediapipe 0.10.21?"
        )
    xyz = np.array([(p.x, p.y, p.z) for p in landmark_list.landmark], dtype=np.float32)
    xyz *= scale
    return xyz


def _check_crop_size(size: Any) -> int:
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or not 8 <= size <= 4096:
        raise ValueError(f"size must be an integer number of pixels in [8, 4096], got {size!r}.")
    return int(size)
