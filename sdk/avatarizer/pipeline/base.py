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

from typing import Iterable, Sequence

from .state import FrameState


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
    """Stages in order; :meth:`run` passes one frame through all of them."""

    def __init__(self, stages: Iterable[Stage]):
        self.stages = list(stages)
        self.by_name = {s.name: s for s in self.stages}

    def prepare(self, options) -> None:
        for s in self.stages:
            s.prepare(options)

    def run(self, state: FrameState, until: str | None = None) -> FrameState:
        """Runs every stage (through ``until``, inclusive, when given)."""
        for s in self.stages:
            s.run(state)
            if s.name == until:
                break
        return state

    def run_batch(self, states: Sequence[FrameState], until: str | None = None) -> Sequence[FrameState]:
        for s in self.stages:
            s.run_batch(states)
            if s.name == until:
                break
        return states

    def reset(self) -> None:
        """Every stage forgets its per-stream state (a new video stream)."""
        for s in self.stages:
            s.reset()

    def close(self) -> None:
        for s in reversed(self.stages):
            s.close()

    def __getitem__(self, name: str) -> Stage:
        return self.by_name[name]

    def __repr__(self) -> str:
        return f"Pipeline({' -> '.join(s.name for s in self.stages)})"
