"""Video mode: the identity networks off the critical path (issue #16).

Who is in front of the camera changes slowly (the tracker keeps a moving
average of it), so in video mode the face stage (E_s → F → D_t, or the
auto-artist) and the hair stage (attribute regressor, segmentation,
retrieval) need not run for every frame. :class:`IdentityStage` wraps the two:

* until the tracker's identity is warm (the median of the first
  ``TrackerOptions.identity_frames`` estimates) they run inline, every frame;
* afterwards every frame reuses the latest answer, and at most every
  ``TrackerOptions.identity_every_ms`` (stream time) a copy of the frame's
  face is handed to one worker thread, which runs them; the answer is adopted
  by the first frame after it arrives. No frame waits for the worker.

The worker works on a copy of the frame (the caller may reuse its buffer) and
segments with its own MediaPipe graph (so it never holds the aligner's lock
while the next frame's landmarks are due). ``reset()`` forgets the answer and
discards one still being computed; ``close()`` stops the worker.
"""
from __future__ import annotations

import copy
import threading

import numpy as np

from .base import Stage
from .state import FrameState

_FIELDS = ("face_params", "hair_params", "accessory_params", "attributes", "artist_params")


class _OwnSegmenter:
    """Stands in for the aligner in a copied frame context: same options, its
    own selfie-segmentation graph (used by the worker thread only)."""

    def __init__(self, aligner):
        self.options = aligner.options
        self._graph = None

    def _segment(self, image: np.ndarray) -> np.ndarray:
        if self._graph is None:
            from mediapipe.python.solutions import selfie_segmentation

            self._graph = selfie_segmentation.SelfieSegmentation(model_selection=0)
        return self._graph.process(image).segmentation_mask

    def close(self) -> None:
        if self._graph is not None:
            self._graph.close()
            self._graph = None


class IdentityStage(Stage):
    """The face and hair stages, inline while the identity warms up, then on a worker."""

    name = "identity"

    def __init__(self, face: Stage, hair: Stage, merge: Stage):
        self.face, self.hair, self.merge = face, hair, merge
        self._compute_lock = threading.Lock()   # the networks: one user at a time
        self._cond = threading.Condition()      # everything below
        self._result: dict | None = None
        self._gen = 0                           # bumped by reset(): older answers are dropped
        self._job = None
        self._busy = False
        self._asked_ms: float | None = None
        self._thread: threading.Thread | None = None
        self._closed = False
        self._segmenter = None
        self.answers = 0                        # answers adopted from the worker (for tests and bench)
        self.last_error: BaseException | None = None

    def prepare(self, options) -> None:
        super().prepare(options)
        self.every_ms = float(options.tracker.identity_every_ms)
        self.face.prepare(options)
        self.hair.prepare(options)

    # -- per frame
    def run(self, state: FrameState) -> None:
        if not state.faces:  # empty slices: no network, so no lock (the worker may be busy)
            self.face.run(state)
            self.hair.run(state)
            return
        tracker = getattr(self.merge, "tracker", None)
        with self._cond:
            res = self._result
            due = not self._busy and (self._asked_ms is None or
                                      not 0 <= state.timestamp_ms - self._asked_ms < self.every_ms)
        if res is None or tracker is None or not tracker.warm:
            self._compute(state)
            with self._cond:
                self._result = {k: getattr(state, k) for k in _FIELDS}
                self._asked_ms = state.timestamp_ms
            return
        for k, v in res.items():
            setattr(state, k, v)
        if due:
            self._submit(state)

    def _compute(self, state: FrameState) -> None:
        with self._compute_lock:
            self.face.run(state)
            self.hair.run(state)

    def _submit(self, state: FrameState) -> None:
        from ..align import _FrameContext

        face = state.faces[0]
        ctx = face._context
        if self._segmenter is None and ctx is not None and ctx.aligner is not None:
            self._segmenter = _OwnSegmenter(ctx.aligner)
        mine = copy.copy(face)
        mine._cache = {}
        mine._context = None if ctx is None else _FrameContext(ctx.image.copy(), self._segmenter)
        job = FrameState(image=mine._context.image if ctx is not None else state.image,
                         timestamp_ms=state.timestamp_ms, face_index=state.face_index,
                         faces=[mine], all_faces=[mine])
        with self._cond:
            if self._closed:
                return
            self._job = (self._gen, job)
            self._busy = True
            self._asked_ms = state.timestamp_ms
            if self._thread is None:
                self._thread = threading.Thread(target=self._work, name="avatarizer-identity", daemon=True)
                self._thread.start()
            self._cond.notify_all()

    def _work(self) -> None:
        while True:
            with self._cond:
                while self._job is None and not self._closed:
                    self._cond.wait()
                if self._closed:
                    return
                gen, job = self._job
                self._job = None
            try:
                self._compute(job)
                out, err = {k: getattr(job, k) for k in _FIELDS}, None
            except BaseException as exc:  # kept; the identity stays as it was
                out, err = None, exc
            with self._cond:
                self._busy = False
                self.last_error = err
                if out is not None and gen == self._gen:
                    self._result = out
                    self.answers += 1
                self._cond.notify_all()

    def wait_idle(self, timeout: float | None = None) -> bool:
        """Blocks until no answer is being computed (tests, benchmarks)."""
        with self._cond:
            return self._cond.wait_for(lambda: not self._busy, timeout)

    # -- lifecycle
    def reset(self) -> None:
        with self._cond:
            self._gen += 1
            self._result = None
            self._asked_ms = None
            self._job = None
        with self._compute_lock:  # a refresh in flight finishes first (its answer is dropped)
            self.face.reset()
            self.hair.reset()

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._job = None
            self._cond.notify_all()
            thread = self._thread
        if thread is not None:
            thread.join()
        with self._compute_lock:
            self.hair.close()
            self.face.close()
            if self._segmenter is not None:
                self._segmenter.close()
