"""What the stages fill: one :class:`Face` per face (insightface's ``Face``),
one :class:`FrameState` per frame, and one :class:`StreamState` per video
stream (everything a stream remembers between frames, with one ``reset()``)."""
from __future__ import annotations

import math
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .. import schema


@dataclass(eq=False)
class Face:
    """One face of a frame and everything the stages found out about it.

    ==================  ========  ===========================================
    field               stage     content
    ==================  ========  ===========================================
    aligned             align     the :class:`avatarizer.align.AlignedFace`
                                  (landmarks, transform, box, pose, crops)
    face_params         face      (483,) float32: the face slice
    artist_params       face      (629,) the auto-artist's whole fit, when the
                                  artist estimated the face (its hair is used)
    artist_age          face      the artist's own age estimate (years, or
                                  None: a face mask, no regressor), where
                                  the artist alone estimates (no regressor
                                  ran: merge draws age lines and a child's
                                  head by it)
    artist_glasses      face      (12,) the ``glasses`` feature the artist
                                  draws from the photo's own cues (hybrid
                                  estimator), or None
    glasses_cues        face      the evidence behind it (a dict: the
                                  artist's cue vector ``glasses``, its
                                  glasses network's probabilities
                                  ``glasses_probs`` (or None), which the
                                  fusion reads, ``glasses_shape``, a
                                  function drawing them as clear glasses
                                  (given the kind to be drawn: 2, sunglasses,
                                  reads no lens rims),
                                  ``beard``, a function measuring the
                                  beard network's (probability,
                                  threshold), ``goatee``, the goatee
                                  detector's (the shape of a drawn
                                  beard), ``bald``, the bald
                                  detector's, and ``lips``, True where
                                  the lips' colours are the photo's),
                                  or None; in video only on frames that
                                  ran the face stage
    hair_params         hair      (80,) float32: the hair slice
    accessory_params    hair      (66,) float32: the accessories slice
    attributes          hair      the attribute regressor's decoded output
                                  (:func:`avatarizer.hair.decode_attributes`),
                                  or None where no regressor ran
    hair_ms             hair      video mode: the stream time of the hair
                                  retrieval drawn (a frame reusing it has
                                  its time; the tracker counts one estimate
                                  per retrieval), or None
    params              merge     (629,) float32, valid (schema.clip)
    ==================  ========  ===========================================

    The aligned face's geometry reads through: ``face.box``, ``face.transform``,
    ``face.yaw``, ``face.crop(128)``.
    """

    aligned: Any
    face_params: np.ndarray | None = None
    artist_params: np.ndarray | None = None
    artist_age: float | None = None
    artist_glasses: np.ndarray | None = None
    glasses_cues: dict | None = None
    hair_params: np.ndarray | None = None
    accessory_params: np.ndarray | None = None
    attributes: dict | None = None
    hair_ms: float | None = None
    params: np.ndarray | None = None

    #: the fields the identity networks (face and hair stages) fill
    IDENTITY = ("face_params", "artist_params", "artist_age", "artist_glasses", "glasses_cues", "hair_params", "accessory_params",
                "attributes", "hair_ms")

    def __getattr__(self, name: str):
        if name == "aligned" or name.startswith("__"):
            raise AttributeError(name)
        return getattr(self.aligned, name)

    def identity(self) -> dict:
        """The identity networks' part of this face (what video mode reuses
        between refreshes); its arrays are made read-only (frames share them)."""
        out = {k: getattr(self, k) for k in self.IDENTITY}
        for v in out.values():
            if isinstance(v, np.ndarray):
                v.setflags(write=False)
        return out


def _stack(faces, name: str, width: int) -> np.ndarray | None:
    """(n, width) rows of every face's ``name``; (0, width) without faces, None before a stage filled them."""
    rows = [getattr(f, name) for f in faces]
    if not rows:
        return np.zeros((0, width), np.float32)
    if any(r is None for r in rows):
        return None
    return np.stack(rows)


@dataclass
class FrameState:
    """Everything known about one frame as it goes through the pipeline.

    ==============  ========  ===============================================
    field           stage     content
    ==============  ========  ===============================================
    image           (input)   H×W×3 uint8 RGB (validated; never modified)
    timestamp_ms    (input)   the frame's time in video mode, else None
    face_index      (input)   which face (largest first); None = all faces
    render_size     (input)   draw the avatars at this size (the render
                              stage; None: not drawn, the API draws lazily)
    settings        (input)   attributes the app set, drawn instead of the
                              regressor's decision (checked and merged:
                              :func:`avatarizer.hair.merged_settings`, where a
                              ``headwear_kind`` is headwear)
    generation      identity  video mode, the identity worker's copy of a
                              frame: the stream's generation it was asked
                              in (None: the stream's current one)
    faces           align+    list of :class:`Face`, one result per face
    all_faces       align     every AlignedFace found, largest first
    tracked         merge     video mode: the tracker's output for face 0
                              (:class:`avatarizer.video.TrackedFrame`) or None
    images          render    list of H×W×4 uint8 RGBA renders
    timings         all       stage name → milliseconds spent on this frame
    stream          pipeline  video mode: the :class:`StreamState`
    info            stages    notes between stages: ``identity_due`` (the
                              identity stage hands this frame's job over
                              when the frame is done), ``identity_fresh``
                              False (the face reuses an answer an earlier
                              frame used: no new estimate for the tracker),
                              ``identity_pose`` (the (yaw, pitch) of the
                              frame the identity answer was computed on)
    ==============  ========  ===============================================

    ``params``, ``face_params`` (and the other slices) stack the faces' own
    (for tools and tests: each call a new array, a copy; writing into it
    changes no face).
    """

    image: np.ndarray
    timestamp_ms: float | None = None
    face_index: int | None = 0
    render_size: int | None = None
    settings: dict = field(default_factory=dict)
    generation: int | None = None
    faces: list = field(default_factory=list)
    all_faces: list = field(default_factory=list)
    tracked: Any = None
    images: list | None = None
    timings: dict = field(default_factory=dict)
    info: dict = field(default_factory=dict)
    stream: Any = None

    @property
    def params(self) -> np.ndarray | None:
        return _stack(self.faces, "params", schema.PARAM_COUNT)

    @property
    def face_params(self) -> np.ndarray | None:
        return _stack(self.faces, "face_params", schema.FACE.stop - schema.FACE.start)

    @property
    def hair_params(self) -> np.ndarray | None:
        return _stack(self.faces, "hair_params", schema.HAIR.stop - schema.HAIR.start)

    @property
    def accessory_params(self) -> np.ndarray | None:
        return _stack(self.faces, "accessory_params", schema.ACCESSORIES.stop - schema.ACCESSORIES.start)

    @property
    def attributes(self) -> list:
        return [f.attributes for f in self.faces]

    @contextmanager
    def timer(self, name: str):
        """Adds the time spent inside the ``with`` block to ``timings[name]`` (ms)."""
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.timings[name] = self.timings.get(name, 0.0) + (time.perf_counter() - t0) * 1e3


class StreamState:
    """Everything one video stream remembers between frames, in one place.

    Attributes:
        tracker: the :class:`avatarizer.video.Tracker` (identity estimate,
            expression and pose filters, the grace period).
        last_timestamp_ms: the stream's clock (timestamps must increase).
        identity: the identity networks' latest answer for the tracked face
            (:meth:`Face.identity`), or None; ``identity_asked_ms`` when it was
            asked for (stream time); ``identity_used`` the answer the last
            frame used (a frame that finds another one is the first to use
            a new estimate: the tracker's warm-up counts only those) and
            ``identity_used_ms`` that first frame's time;
            ``identity_frame_ms`` the time of the frame the answer was
            computed on (an answer for an earlier frame than that one's,
            from a late worker, is not adopted); ``identity_pose``
            the (yaw, pitch) of the frame the answer was computed on (the
            worker's, or the frame that computed it inline).
        hair: per face index, ``(time ms, full parameters, attributes,
            generation, (shown, recent families (a gate's marked ``*``), (beard shown, beard pending),
            (gender shown, gender pending), recent readings))`` of
            the last hair retrieval (the hair stage refreshes it at most every
            :data:`avatarizer.pipeline.hair.VIDEO_REFRESH_MS`; the style kept
            steady between refreshes by :func:`avatarizer.hair.steady_style`,
            the beard's shape by :func:`avatarizer.hair.steady_beard_style`, the
            reported gender by :func:`avatarizer.hair.steady_gender`, the age,
            skin tone and clothes' colour by :func:`avatarizer.hair.steady_readings`).
        merged: the merge stage's last merge of the identity's arrays
            (``((face, hair, accessories, attributes, age), params)``), reused
            while they are the same objects.
        last_face: the :class:`avatarizer.api.FaceInfo` of the last frame that
            had a face, and ``last_attributes`` its attributes (a stale avatar
            repeats them); ``last_fresh``: ``(face, transform, params,
            face_index)`` of a frame with the face that ``Avatarizer.run`` gave
            no avatar for yet (the next stale avatar reads its place and
            attributes from it).
        generation: bumped by :meth:`reset`, :meth:`new_track` and
            :meth:`another_person`; answers
            computed for an earlier generation (a refresh still running) are
            dropped.

    :meth:`reset` forgets all of it; the pipeline's ``reset()`` also gives
    the aligner a fresh MediaPipe graph (its face tracking). :meth:`continue_track`
    starts a new track (:meth:`new_track`: all of it but the clock) when the
    frame cannot continue the last one: another ``face_index``, another frame
    size, other attributes set by the app, or a face absent (no frames at
    all, or frames without it) for longer than the tracker's ``reset_ms``, in
    case somebody else sat down.
    """

    def __init__(self, tracker_options, smoothing):
        from ..video import Tracker

        self.tracker = Tracker(tracker_options, smoothing)
        self.lock = threading.RLock()  # the identity fields: the identity worker writes them too
        self.generation = 0
        self.reset()

    def reset(self) -> None:
        with self.lock:
            self._reset()

    def new_track(self) -> None:
        """Forgets the tracked face (identity, filters, hair, the last face)
        but keeps the stream's clock."""
        with self.lock:
            t = self.last_timestamp_ms
            self._reset()
            self.last_timestamp_ms = t

    def another_person(self) -> None:
        """The tracker took the face for another person's (``Tracker.switches``,
        after it reset itself): the last person's identity answers, hairstyle,
        beard shape and reported gender (and a refresh still computing for them: the
        generation moves on) are forgotten, so the next frames estimate the
        new person's afresh. The tracker, the clock and the last face stay.
        (Their hairstyle stayed 4 s after a cut from ``d3`` to ``d10``: the
        stream's style kept counting the last person's readings.)"""
        with self.lock:
            self._previous_hair = self.hair.get(0)
            self._forget_identity()

    def person_back(self) -> None:
        """The tracker gave the person before the last switch their identity
        back (``Tracker.returns``): the answers for the one between are
        forgotten as :meth:`another_person` does, and the hair retrieval kept
        from before the switch (its style, beard shape and gender memory) is
        the stream's again, refreshed at the next frame (the hairstyle was
        picked afresh: another one for 1.3-5.8 s after a hand passed)."""
        with self.lock:
            kept, self._previous_hair = self._previous_hair, None
            self._forget_identity()
            if kept is not None:
                self.hair[0] = (-math.inf, kept[1], kept[2], self.generation) + tuple(kept[4:])

    def retrieve_again(self, hair_ms: float) -> None:
        """The next identity refresh retrieves the hair again (the hair
        retrieved at ``hair_ms`` is not reused for the rest of its
        second; its style stays the stream's): the tracker saw an estimate
        far from the identity (:attr:`avatarizer.video.Tracker.far`) and
        needs a second retrieval to tell another person from one odd
        reading."""
        with self.lock:
            hit = self.hair.get(0)
            if hit is not None and hit[0] == hair_ms:
                self.hair[0] = (-math.inf,) + tuple(hit[1:])

    def _forget_identity(self) -> None:
        self.identity: dict | None = None
        self.identity_asked_ms: float | None = None
        self.identity_used: dict | None = None
        self.identity_used_ms: float | None = None
        self.identity_frame_ms: float | None = None
        self.identity_pose: tuple | None = None
        self.hair: dict[int, tuple] = {}
        self.merged: tuple | None = None
        self.generation += 1

    def _reset(self) -> None:
        self.tracker.reset()
        self.last_timestamp_ms: float | None = None
        self.track: tuple | None = None  # (face_index, frame height, width, settings) of the tracked frames
        self.track_box: tuple | None = None  # the tracked face's last box (the align stage keeps to it)
        self._previous_hair: tuple | None = None  # the hair entry before the last switch (person_back)
        self.last_face = None
        self.last_attributes: dict | None = None
        self.last_fresh: tuple | None = None
        self._forget_identity()

    def continue_track(self, timestamp_ms: float, face_index: int | None, shape: tuple,
                       settings: dict | None = None, has_face: bool = True) -> None:
        """Before a frame's identity and tracking (on the thread that runs
        them, after its time was accepted and its landmarks found, which a
        stream does ahead of time): :meth:`new_track` if the frame cannot
        continue the track (see the class doc). Other attributes set by the
        app (``settings``) start a new track too, on the first frame with a
        face (``has_face``; until then the last avatar stays for the grace
        period): the avatar shows them from that frame on, not once the
        identity window has forgotten the old ones."""
        t = float(timestamp_ms)
        given = tuple(sorted((settings or {}).items()))
        if not has_face and self.track is not None:
            given = self.track[3]
        track = (face_index, int(shape[0]), int(shape[1]), given)
        seen = self.tracker.last_seen_ms
        o = self.tracker.options
        # (a frame without the face keeps the last avatar for the grace period, also where it is longer than
        # reset_ms, as Tracker.miss does; a frame with the face after reset_ms starts afresh)
        forget_ms = o.reset_ms if has_face else max(o.reset_ms, o.grace_ms)
        if (self.track is not None and track != self.track) \
                or (seen is not None and self.tracker.absent_ms(t) > forget_ms) \
                or (seen is None and self.identity is not None):  # the tracker forgot the face (Tracker.miss)
            self.new_track()
        self.track = track

    def track_box_for(self, timestamp_ms: float, face_index: int | None, shape: tuple) -> tuple | None:
        """The tracked face's last box (:attr:`track_box`) where a frame of
        ``face_index`` and ``shape`` at ``timestamp_ms`` continues the track,
        as :meth:`continue_track` will judge it after the align stage; None
        where it starts a new one (another ``face_index`` or frame size, the
        face gone longer than ``reset_ms``): the align stage kept to the last
        index's box, and another ``face_index`` got that index's face on its
        first frame, its identity started from it (a review, session 77)."""
        if self.track is None or self.track[:3] != (face_index, int(shape[0]), int(shape[1])):
            return None
        seen = self.tracker.last_seen_ms
        if seen is None or self.tracker.absent_ms(float(timestamp_ms)) > self.tracker.options.reset_ms:
            return None
        return self.track_box

    def accept(self, timestamp_ms: float) -> float:
        """The frame's time on the stream's clock; ``ValueError`` unless it is a
        finite number later than the last (:func:`avatarizer.align.check_timestamp`)."""
        from ..align import check_timestamp

        with self.lock:  # (a stream's read-ahead thread accepts frames while its consumer may rewind the clock)
            t = check_timestamp(timestamp_ms, self.last_timestamp_ms)
            self.last_timestamp_ms = t
        return t

    def __repr__(self) -> str:
        return (f"StreamState(t={self.last_timestamp_ms}, warm={self.tracker.warm}, "
                f"identity={'yes' if self.identity else 'no'}, generation={self.generation})")
