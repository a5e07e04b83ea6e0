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
  by the first frame after it arrives. No frame waits for the worker. A face
  cut by the frame's edge (:data:`MAX_OUTSIDE`) is not handed over.
* the worker takes at most ``TrackerOptions.identity_duty`` of one core: after
  an answer that took ``d`` seconds (wall clock) no job is handed to it for
  ``d * (1 / identity_duty - 1)`` seconds. Its work is mostly Python and
  numpy holding the GIL, so every frame that overlaps it waits for the GIL
  and shares the cores; on a 2-core machine with the default 200 ms and a
  stream faster than real time (``bench``) it was busy on about 40% of the
  frames, and those made the slow tail (issue #16).
* on Linux the worker thread runs :data:`WORKER_NICENESS` nice levels below
  the rest of the process (:func:`lower_thread_priority`), so when it and a
  frame both want a core the frame gets it; what the worker creates (its
  MediaPipe segmentation graph's threads) inherits that. On a current kernel
  (6.18, EEVDF: a thread that wakes waits for the running one's time slice
  whatever their nice values) this barely shows: on 2 cores the frames that
  overlap a job stay the slow tail (session 23, ``bench`` 6 runs each:
  median p99/p50 2.04 niced 19, no better than 10; the landmarks-only
  baseline in the same loop 2.46, against 1.72 with no pipeline beside
  it). Linux's idle policy (``SCHED_IDLE``) for the worker cut that to
  1.56 (landmarks 1.42),
  but was not adopted: an idle thread is starved when other processes keep
  the CPU busy, and one starved while it holds the GIL stalls every thread
  of the process (4 busy processes on 2 cores: a 13 ms job took 2.2 s, a
  frame 2.7 s, a ``reset()`` 4.1 s; closing a segmentation graph made at
  idle priority stalled other threads 0.13-0.37 s). A worker process would
  take the GIL out of it.

The networks run with numpy's BLAS limited to one thread (threadpoolctl,
:func:`one_blas_thread`): the artist's image resizes are matrix products
large enough for OpenBLAS to use its thread pool, whose threads then
busy-wait for about 60 ms of CPU after each call, taking the core the
frames need. (ONNX Runtime sessions already run on the calling thread:
``intra_op_num_threads=1``, no pool, nothing spins.)

The worker works on a copy of the frame (the caller may reuse its buffer) and
segments with its own MediaPipe graph (so it never holds the aligner's lock
while the next frame's landmarks are due). The answer and when it was asked
for belong to the stream (:class:`~avatarizer.pipeline.state.StreamState`:
``identity``, ``identity_asked_ms``); the stage owns only the worker.
``reset()`` discards a job not yet started and waits for one being computed
(its answer is dropped: the stream's generation changed); ``close()`` stops
the worker.
"""
from __future__ import annotations

import copy
import os
import sys
import threading
import time

import numpy as np

from ..align import MAX_OUTSIDE  # a face cut by the frame's edge is not handed to the worker
from .base import Stage, one_blas_thread
from .state import Face, FrameState

#: How much lower than the rest of the process the identity worker thread runs
#: (Linux nice levels, capped at 19; what it creates, such as its MediaPipe
#: segmentation graph's threads, inherits it). On a small CPU the frames' thread
#: and MediaPipe's then get the cores first, and a frame that overlaps the
#: worker is barely slower (issue #16).
WORKER_NICENESS = 10


def lower_thread_priority(by: int) -> bool:
    """Lowers the calling thread's scheduling priority by ``by`` nice levels
    (capped at 19), on Linux only, where a thread has its own nice value
    (``setpriority`` on its thread id). Returns whether it did; elsewhere, or
    when the system refuses, it does nothing."""
    if not sys.platform.startswith("linux"):  # elsewhere PRIO_PROCESS with a thread id names a process
        return False
    try:
        tid = threading.get_native_id()
        os.setpriority(os.PRIO_PROCESS, tid, min(19, os.getpriority(os.PRIO_PROCESS, tid) + int(by)))
    except (OSError, AttributeError):
        return False
    return True


class _OwnSegmenter:
    """Stands in for the aligner in a copied frame context: same options, its
    own selfie-segmentation graph (used by the worker thread only)."""

    def __init__(self, aligner):
        self.options = aligner.options
        self._graph = None

    def _segment(self, image: np.ndarray) -> np.ndarray:
        if self._graph is None:
            from mediapipe.python.solutions import selfie_segmentation

            from ..align import mediapipe_graph

            self._graph = mediapipe_graph(lambda: selfie_segmentation.SelfieSegmentation(model_selection=0))
        return self._graph.process(image).segmentation_mask

    def close(self) -> None:
        if self._graph is not None:
            self._graph.close()
            self._graph = None


class IdentityStage(Stage):
    """The face and hair stages, inline while the identity warms up, then on a worker."""

    name = "identity"

    def __init__(self, face: Stage, hair: Stage):
        self.face, self.hair = face, hair
        self._compute_lock = threading.Lock()   # the networks: one user at a time
        self._cond = threading.Condition()      # the worker's fields below (the stream's: stream.lock)
        self._job = None
        self._busy = False
        self._thread: threading.Thread | None = None
        self._closed = False
        self._close_here = False                # close() ran on the worker thread: it closes the networks
        self._segmenter = None
        self._rest_until = 0.0                  # perf_counter time before which no job is handed over
        self.answers = 0                        # answers adopted from the worker (for tests and bench)
        self.last_error: BaseException | None = None

    def prepare(self, options) -> None:
        super().prepare(options)
        self.every_ms = float(options.tracker.identity_every_ms)
        self.rest_factor = 1.0 / float(options.tracker.identity_duty) - 1.0
        self.face.prepare(options)
        self.hair.prepare(options)

    # -- per frame
    def run(self, state: FrameState) -> None:
        if not state.faces:  # nothing to estimate: no network, so no lock (the worker may be busy)
            return
        stream = state.stream
        with stream.lock:
            res = stream.identity
            asked = stream.identity_asked_ms
        with self._cond:
            due = not self._busy and (asked is None or not 0 <= state.timestamp_ms - asked < self.every_ms) \
                and time.perf_counter() >= self._rest_until
        if res is None or not stream.tracker.warm:
            self._compute(state)
            with stream.lock:
                stream.identity = state.faces[0].identity()
                stream.identity_asked_ms = state.timestamp_ms
            return
        for k, v in res.items():
            setattr(state.faces[0], k, v)
        if due and state.faces[0].aligned.outside_fraction <= MAX_OUTSIDE:
            self._submit(state)

    def _compute(self, state: FrameState) -> None:
        with self._compute_lock, one_blas_thread():
            self.face.run(state)
            self.hair.run(state)

    def _submit(self, state: FrameState) -> None:
        from ..align import _FrameContext

        face = state.faces[0].aligned
        ctx = face._context
        if self._segmenter is None and ctx is not None and ctx.aligner is not None:
            self._segmenter = _OwnSegmenter(ctx.aligner)
        mine = copy.copy(face)
        mine._cache = {}
        mine._context = None if ctx is None else _FrameContext(ctx.image.copy(), self._segmenter)
        with state.stream.lock:
            gen = state.stream.generation
            state.stream.identity_asked_ms = state.timestamp_ms
        job = FrameState(image=mine._context.image if ctx is not None else state.image,
                         timestamp_ms=state.timestamp_ms, face_index=state.face_index, settings=state.settings,
                         generation=gen, faces=[Face(mine)], all_faces=[mine], stream=state.stream)
        with self._cond:
            if self._closed:
                return
            self._job = (gen, job)
            self._busy = True
            if self._thread is None:
                self._thread = threading.Thread(target=self._work, name="avatarizer-identity", daemon=True)
                self._thread.start()
            self._cond.notify_all()

    def _work(self) -> None:
        lower_thread_priority(WORKER_NICENESS)
        while True:
            with self._cond:
                while self._job is None and not self._closed:
                    self._cond.wait()
                if self._closed:
                    closing = self._close_here
                    break
                gen, job = self._job
                self._job = None
            t0 = time.perf_counter()
            try:
                self._compute(job)
                out, err = job.faces[0].identity(), None
            except BaseException as exc:  # kept; the identity stays as it was
                out, err = None, exc
            done = time.perf_counter()
            stream = job.stream
            with stream.lock:  # adopted only by the stream it was asked for (not after a reset)
                adopted = out is not None and gen == stream.generation
                if adopted:
                    stream.identity = out
            with self._cond:
                self._busy = False
                self._rest_until = done + (done - t0) * self.rest_factor
                self.last_error = err
                self.answers += adopted
                self._cond.notify_all()
        if closing:  # close() ran on this thread (see close): the networks are let go of here
            self._close_networks()

    def wait_idle(self, timeout: float | None = None) -> bool:
        """Blocks until no answer is being computed (tests, benchmarks)."""
        with self._cond:
            return self._cond.wait_for(lambda: not self._busy, timeout)

    # -- lifecycle
    def reset(self) -> None:
        """Drops a job not yet started and waits for one being computed (the
        pipeline has reset the stream first: its new generation drops that answer)."""
        with self._cond:
            if self._job is not None:  # not started: it never will be
                self._job = None
                self._busy = False
            self._cond.wait_for(lambda: not self._busy)

    def close(self) -> None:
        """Stops the worker and lets go of the networks. Called on the worker
        thread itself (an Avatarizer dropped in a reference cycle is
        finalized by whichever thread the garbage collector runs on, and the
        worker allocates most while it computes, holding the networks' lock)
        it only marks the stage closed: the worker lets go of the networks
        when it is back in its loop (closing them there deadlocked the worker
        on its own lock, and the graphs and sessions were never let go of)."""
        with self._cond:
            self._closed = True
            self._job = None
            thread = self._thread
            here = thread is threading.current_thread()
            self._close_here = self._close_here or here  # (sticky: the worker reads it when back in its loop)
            self._cond.notify_all()
        if here:
            return
        if thread is not None:
            thread.join()
        if not self._close_here:  # (else the worker let go of them: closed on it first)
            self._close_networks()

    def _close_networks(self) -> None:
        with self._compute_lock:
            self.hair.close()
            self.face.close()
            if self._segmenter is not None:
                self._segmenter.close()
