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

import threading
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Callable, Iterable, Sequence

from .state import FrameState, StreamState

_side_lock = threading.Lock()
_side_pool: ThreadPoolExecutor | None = None
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
    first use."""
    global _side_pool
    if _side_pool is None:
        with _side_lock:
            if _side_pool is None:
                _side_pool = ThreadPoolExecutor(max_workers=SIDE_THREADS, thread_name_prefix="avatarizer-side")
    return _side_pool.submit(fn, *args)


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

    def reset(self) -> None:
        """Forget per-stream state (video mode): the next frame starts a new stream."""

    def close(self) -> None:
        """Release what :meth:`prepare` acquired. Calling it twice does nothing."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class Pipeline:
    """Stages in order, and in video mode the stream's state.

    :meth:`run` passes one frame through the stages (or a part of them:
    ``until`` a stage, inclusive, or ``after`` one, which is how
    :meth:`avatarizer.api.Avatarizer.stream` overlaps the landmarks of the next
    frame with the rest of this one). In video mode every frame gets the
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
        self.stream = stream
        self.resolved = None
        self.estimator = None

    def prepare(self, options) -> None:
        for s in self.stages:
            s.prepare(options)

    def _begin(self, state: FrameState) -> None:
        if self.stream is not None:
            self.stream.accept(state.timestamp_ms)
            state.stream = self.stream

    def run(self, state: FrameState, until: str | None = None, after: str | None = None) -> FrameState:
        """Runs the stages (through ``until``, inclusive, when given; from the
        one following ``after``, when given: the frame was begun already)."""
        stages = self.stages
        if after is None:
            self._begin(state)
        else:
            stages = stages[[s.name for s in stages].index(after) + 1:]
        for s in stages:
            s.run(state)
            if s.name == until:
                break
        return state

    def run_batch(self, states: Sequence[FrameState], until: str | None = None) -> Sequence[FrameState]:
        for state in states:
            self._begin(state)
        for s in self.stages:
            s.run_batch(states)
            if s.name == until:
                break
        return states

    def reset(self) -> None:
        """A new video stream: the stream's state is forgotten
        (:meth:`StreamState.reset`; an identity answer still being computed
        will not be adopted), then every stage lets go of the old stream (the
        aligner starts a fresh MediaPipe graph, a refresh in flight finishes)."""
        if self.stream is not None:
            self.stream.reset()
        for s in self.stages:
            s.reset()

    def close(self) -> None:
        for s in reversed(self.stages):
            s.close()

    def __getitem__(self, name: str) -> Stage:
        return self.by_name[name]

    def __repr__(self) -> str:
        return f"Pipeline({' -> '.join(s.name for s in self.stages)})"
