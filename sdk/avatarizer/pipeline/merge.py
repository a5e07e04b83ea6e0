"""Stage 4, merge: face + hair + accessories → 629 parameters (+ expressions in video mode).

In image mode this is a concatenation followed by :func:`avatarizer.schema.clip`.
In video mode the stage owns the :class:`avatarizer.video.Tracker` of the
stream: the merged raw parameters of the tracked face (``face_index``) go
through it (steady identity, live expressions and pose, smoothed transform),
and a frame without a face asks it for the grace-period avatar. The result
is ``state.tracked`` (a :class:`~avatarizer.video.TrackedFrame` or ``None``).
"""
from __future__ import annotations

import numpy as np

from .. import schema
from ..filters import Smoothing
from ..video import Tracker
from .base import Stage
from .state import FrameState


class MergeStage(Stage):
    name = "merge"

    def prepare(self, options) -> None:
        super().prepare(options)
        self.tracker = Tracker(options.tracker, Smoothing.coerce(options.smoothing)) \
            if options.mode == "video" else None

    def run(self, state: FrameState) -> None:
        with state.timer(self.name):
            n = len(state.faces)
            if n:
                raw = np.concatenate([state.face_params, state.hair_params, state.accessory_params], axis=1)
                state.params = schema.clip(raw)
            else:
                state.params = np.zeros((0, schema.PARAM_COUNT), np.float32)
            if self.tracker is None:
                return
            if n:
                f = state.faces[0]
                state.tracked = self.tracker.update(state.params[0], f.canonical, f.transform,
                                                    state.timestamp_ms, yaw=f.yaw, pitch=f.pitch)
            else:
                state.tracked = self.tracker.miss(state.timestamp_ms)

    def reset(self) -> None:
        if self.tracker is not None:
            self.tracker.reset()
