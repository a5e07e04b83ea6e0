"""Stage 5, render: parameters → RGBA images with the native Cairo renderer.

The API renders lazily (``Avatar.render``); this stage is what ``bench`` and
batch tools time: every merged avatar of the frame (or the tracked one in video
mode) at ``options.render_size`` pixels, on ``options.render_background``.
"""
from __future__ import annotations

from ..render import render
from .base import Stage
from .state import FrameState


class RenderStage(Stage):
    name = "render"

    def prepare(self, options) -> None:
        super().prepare(options)
        self.size = int(getattr(options, "render_size", 256) or 256)
        self.background = getattr(options, "render_background", None)

    def run(self, state: FrameState) -> None:
        with state.timer(self.name):
            if state.tracked is not None:
                todo = [state.tracked.params]
            else:
                todo = list(state.params) if state.params is not None else []
            state.images = [render(p, self.size, background=self.background) for p in todo]
