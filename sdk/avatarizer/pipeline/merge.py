"""Stage 4, merge: face + hair + accessories → 629 parameters (+ expressions in video mode).

In image mode this is a concatenation followed by :func:`avatarizer.schema.clip`
and, where the attribute regressor ran, :func:`avatarizer.hair.age_lines`
(nasolabial, under-eye and forehead lines from its age estimate).
In video mode the merged raw parameters of the tracked face (``face_index``) go
through the stream's :class:`avatarizer.video.Tracker` (``state.stream.tracker``;
steady identity, live expressions and pose, smoothed transform),
and a frame without a face asks it for the grace-period avatar. The result
is ``state.tracked`` (a :class:`~avatarizer.video.TrackedFrame` or ``None``).
"""
from __future__ import annotations

import numpy as np

from .. import schema
from ..hair import age_lines
from .base import Stage
from .state import FrameState


class MergeStage(Stage):
    name = "merge"

    def run(self, state: FrameState) -> None:
        with state.timer(self.name):
            for f in state.faces:
                f.params = schema.clip(np.concatenate([f.face_params, f.hair_params, f.accessory_params]))
                if f.attributes and f.attributes.get("age") is not None:
                    # age lines from the attribute regressor's age estimate
                    f.params = age_lines(f.params, f.attributes["age"])
            if state.stream is None:  # image mode
                return
            tracker = state.stream.tracker
            if state.faces:
                f = state.faces[0]
                a = f.aligned
                state.tracked = tracker.update(f.params, a.canonical, a.transform, state.timestamp_ms,
                                               yaw=a.yaw, pitch=a.pitch)
            else:
                state.tracked = tracker.miss(state.timestamp_ms)
