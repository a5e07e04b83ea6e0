"""The stage protocol and the runner (the insightface ``FaceAnalysis`` pattern).

Every stage is a small class with two steps: :meth:`Stage.prepare` once, for
the resolved options (device, precision, mode, ...), and :meth:`Stage.run` per
frame, reading and filling one shared :class:`FrameState`. :meth:`run_batch`
runs several frames at once (the default loops; the face stage batches its
network call). A stage records its own time in ``state.timings`` under the
names the ``bench`` command reports (``align``, ``encode``, ``map_decode``,
``hair``, ``merge``, ``render``).
"""
from __future__ import annotations

import os
import sys
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager, nullcontext
from typing import Callable, Iterable, Sequence

from .state import FrameState, StreamState

_blas_lock = threading.Lock()
_blas_users = 0
_blas_limit = None  # threadpoolctl's limit while someone holds it
_blas_controller = None  # threadpoolctl's view of the loaded BLAS libraries
_blas_modules = 0  # len(sys.modules) when that view was taken: an import since may have loaded another BLAS


@contextmanager
def one_blas_thread():
    """A context in which numpy's BLAS (OpenBLAS) uses one thread. The
    artist's and the face model's image resizes are matrix products large
    enough for OpenBLAS to use its thread pool, whose threads then
    busy-wait for milliseconds after each call, on the core the pipeline's
    other thread needs (image mode on a loaded 2-core machine: 57-73 ms of
    CPU per frame with OpenBLAS's two threads against 41-50 ms with one).

    The limit is process-wide (threadpoolctl sets OpenBLAS's thread count),
    so it is counted: the first context to enter sets it, the last to leave
    restores what was there, however the contexts of several threads (image
    frames, video identity workers) interleave."""
    global _blas_users, _blas_limit, _blas_controller, _blas_modules
    with _blas_lock:
        if _blas_users == 0:
            if _blas_controller is None or len(sys.modules) != _blas_modules:
                # (found again after imports: a BLAS loaded later, e.g. by another
                # package, was left at its own thread count)
                from threadpoolctl import ThreadpoolController

                _blas_controller = ThreadpoolController()
                _blas_modules = len(sys.modules)
            _release_blas_control()
            _blas_limit = _blas_controller.limit(limits=1, user_api="blas")
        _blas_users += 1
    try:
        yield
    finally:
        with _blas_lock:
            _blas_users -= 1
            if _blas_users == 0:
                limit, _blas_limit = _blas_limit, None
                _release_blas_control()
                limit.restore_original_limits()
                _release_blas_control()


def _release_blas_control() -> None:
    """threadpoolctl (3.8+) lets only one thread, the first to set a limit,
    change OpenBLAS's shared pool until that thread's ``with`` block ends;
    the limit here is set and restored by whichever thread comes first and
    last, under ``_blas_lock``, so the control is handed over explicitly."""
    try:
        from threadpoolctl import OpenBLASController
    except ImportError:  # older threadpoolctl: any thread may set the limits
        return
    clear = getattr(OpenBLASController, "clear_controlling_thread", None)
    if clear is not None:
        clear(force=True)


_side_lock = threading.Lock()
_side_pool: ThreadPoolExecutor | None = None
_side_pid = 0  # the process that made the pool (a forked child makes its own)


def _after_fork_in_child() -> None:
    """A forked child has none of the parent's threads: no frame holds the
    BLAS limit there and no lock is held (one held at the fork would never
    be released)."""
    global _blas_lock, _blas_users, _blas_limit, _side_lock
    _blas_lock, _blas_users, _blas_limit, _side_lock = threading.Lock(), 0, None, threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
#: threads of :func:`beside`'s pool: network calls (ONNX Runtime releases the
#: GIL) that run while the calling thread does the stage's Python work
SIDE_THREADS = 2


def beside(fn: Callable, *args) -> Future:
    """Runs ``fn(*args)`` on the pipeline's side threads and returns its
    future: a stage starts a network call there (ONNX Runtime, one intra-op
    thread, releases the GIL) and does its own Python work meanwhile on the
    calling thread, so an image-mode frame uses a second core. Used in image
    mode only; a video stream's identity work already runs off the frame's
    thread. The pool is shared by every pipeline of the process and made on
    first use, and again in a process forked after that (the parent's
    threads do not exist there: its pool would never run the call). As the
    interpreter exits (its pools take no more work) the call runs on the
    calling thread: a frame in flight then still ends with its avatar."""
    global _side_pool, _side_pid
    if _side_pool is None or _side_pid != os.getpid():
        with _side_lock:
            if _side_pool is None or _side_pid != os.getpid():
                _side_pool = ThreadPoolExecutor(max_workers=SIDE_THREADS, thread_name_prefix="avatarizer-side")
                _side_pid = os.getpid()
    try:
        return _side_pool.submit(fn, *args)
    except RuntimeError:  # ("cannot schedule new futures after interpreter shutdown": an app thread's call in
        # flight at the exit, which the exit waits for, ended in that error; a review, session 71)
        done: Future = Future()
        try:
            done.set_result(fn(*args))
        except BaseException as exc:  # (raised where the caller asks for the result, as the pool's would be)
            done.set_exception(exc)
        return done


class Stage:
    """Base class of the pipeline stages."""

    #: Name of the stage (and of its timing entry).
    name = "stage"

    def prepare(self, options) -> None:
        """Get ready for ``options`` (an :class:`avatarizer.api.Options`, resolved)."""
        self.options = options

    def run(self, state: FrameState) -> None:
        raise NotImplementedError

    def run_batch(self, states: Sequence[FrameState]) -> None:
        for s in states:
            self.run(s)

    def ahead(self, state: FrameState) -> None:
        """What of :meth:`run` may be done early, on another thread, for a
        frame whose predecessors are still in later stages
        (:meth:`Pipeline.ahead`; the align stage finds the landmarks). The
        stage's :meth:`run` then does the rest. Nothing by default."""

    def frame_done(self, state: FrameState) -> None:
        """The frame went through the last stage (its avatar drawn when it
        asked for that): what a stage held back until then (the identity
        stage hands its job over here, so that the job runs beside the idle
        time before the next frame, not beside this frame's merge and render)."""

    def rewind_clock(self, timestamp_ms: float | None) -> None:
        """Video mode: the next frame need only be later than ``timestamp_ms``
        (stages with a clock of their own: the aligner)."""

    def reset(self) -> None:
        """Forget per-stream state (video mode): the next frame starts a new stream."""

    def close(self) -> None:
        """Release what :meth:`prepare` acquired. Calling it twice does nothing."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class Pipeline:
    """Stages in order, and in video mode the stream's state.

    :meth:`run` passes one frame through the stages (or through ``until`` a
    stage, inclusive); :meth:`ahead` does the stages' early parts (the
    landmarks) and ``run(state, begun=True)`` the rest, which is how
    :meth:`avatarizer.api.Avatarizer.stream` overlaps the landmarks of the
    next frame with the rest of this one. In video mode every frame gets the
    pipeline's :class:`~avatarizer.pipeline.state.StreamState` and is checked
    against its clock when it starts.

    Attributes:
        stages: the stages, in order; ``pipe["merge"]`` by name.
        stream: the :class:`~avatarizer.pipeline.state.StreamState` (video
            mode) or None.
        resolved: the :class:`~avatarizer.pipeline.config.Resolved` options it
            was built for (set by :func:`avatarizer.pipeline.build`).
    """

    def __init__(self, stages: Iterable[Stage], stream: StreamState | None = None):
        self.stages = list(stages)
        self.by_name = {s.name: s for s in self.stages}
        # video mode: the first stage after the landmarks decides whether a frame continues the track
        names = [s.name for s in self.stages]
        after_align = names.index("align") + 1 if "align" in names else 0
        self._tracked_from = self.stages[after_align] if after_align < len(self.stages) else None
        self.stream = stream
        self.resolved = None
        self.estimator = None
        self.cores = None  # video mode's CoreSplit (the identity stage's: cores.py), if any

    def prepare(self, options) -> None:
        for s in self.stages:
            s.prepare(options)
        self.cores = getattr(self.by_name.get("identity"), "cores", None)

    def _begin(self, state: FrameState) -> None:
        if self.stream is not None:
            self.stream.accept(state.timestamp_ms)
            state.stream = self.stream

    def run(self, state: FrameState, until: str | None = None, begun: bool = False) -> FrameState:
        """Runs the stages (through ``until``, inclusive, when given;
        ``begun``: the frame was begun by :meth:`ahead`)."""
        stages = self.stages
        if not begun:
            self._begin(state)
        # image mode runs its networks beside its Python (:func:`beside`): keep OpenBLAS off that core
        last = None
        # (video mode: off the identity worker's core while it computes; cores.py)
        with one_blas_thread() if self.stream is None else nullcontext(), \
                self.cores.frame() if self.cores is not None else nullcontext():
            for s in stages:
                if s is self._tracked_from and self.stream is not None:
                    # here, not in _begin: a stream finds landmarks frames ahead, but
                    # whether a frame continues the track depends on the frames before it
                    self.stream.continue_track(state.timestamp_ms, state.face_index, state.image.shape,
                                               state.settings, bool(state.faces))
                s.run(state)
                last = s
                if s.name == until:
                    break
        self._done(last, (state,))
        return state

    def ahead(self, state: FrameState) -> FrameState:
        """Begins a frame (the stream's clock) and does each stage's early
        part (:meth:`Stage.ahead`: the landmarks) while the frames before it
        are still in the later stages; :meth:`run` with ``begun=True`` does
        the rest, in frame order. How :meth:`avatarizer.api.Avatarizer.stream`
        overlaps the landmarks of the next frame with the rest of this one."""
        self._begin(state)
        for s in self.stages:
            s.ahead(state)
        return state

    def run_batch(self, states: Sequence[FrameState], until: str | None = None) -> Sequence[FrameState]:
        for state in states:
            self._begin(state)
        last = None
        with one_blas_thread() if self.stream is None else nullcontext():
            for s in self.stages:
                s.run_batch(states)
                last = s
                if s.name == until:
                    break
        self._done(last, states)
        return states

    def _done(self, last, states) -> None:
        """Tells every stage (:meth:`Stage.frame_done`) that ``states`` are
        done when they went through the last stage (``last``: the last stage
        run; a frame run only part of the way is not done)."""
        if last is not None and last is self.stages[-1]:
            for state in states:
                for s in self.stages:
                    s.frame_done(state)

    def reset(self) -> None:
        """A new video stream: the stream's state is forgotten
        (:meth:`StreamState.reset`; an identity answer still being computed
        will not be adopted), then every stage lets go of the old stream (the
        aligner starts a fresh MediaPipe graph, a refresh in flight finishes)."""
        if self.stream is not None:
            self.stream.reset()
        for s in self.stages:
            s.reset()

    def rewind_clock(self, timestamp_ms: float | None) -> None:
        """Video mode: the next frame need only be later than ``timestamp_ms``
        (None: any time), on the stream's clock and the aligner's. For frames
        a stream read ahead and never handed out (``Avatarizer.stream``)."""
        if self.stream is not None:
            with self.stream.lock:
                self.stream.last_timestamp_ms = timestamp_ms
        for s in self.stages:
            s.rewind_clock(timestamp_ms)

    def close(self) -> None:
        for s in reversed(self.stages):
            s.close()

    def __getitem__(self, name: str) -> Stage:
        return self.by_name[name]

    def __repr__(self) -> str:
        return f"Pipeline({' -> '.join(s.name for s in self.stages)})"
