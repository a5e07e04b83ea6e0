"""Stage 5, render: parameters → RGBA images with the native Cairo renderer.

Part of every pipeline, it draws only the frames that ask for it
(``state.render_size``, e.g. ``Avatarizer.run(frame, t, render_size=256)``,
which is how ``bench`` times it); the API's avatars draw lazily
(``Avatar.render``). It draws every merged avatar of the frame (the tracked
one in video mode) on ``options.render_background``.
"""
from __future__ import annotations

from ..render import render
from .base import Stage
from .state import FrameState


class RenderStage(Stage):
    name = "render"

    def prepare(self, options) -> None:
        super().prepare(options)
        self.background = getattr(options, "render_background", None)

    def run(self, state: FrameState) -> None:
        if state.render_size is None:  # the API draws lazily (Avatar.render)
            return
        with state.timer(self.name):
            if state.stream is not None:  # video: the tracked avatar (or none)
                todo = [state.tracked.params] if state.tracked is not None else []
            else:
                todo = [f.params for f in state.faces]
            state.images = [render(p, state.render_size, background=self.background) for p in todo]
