"""The one result object every stage fills (insightface's ``Face``, per frame)."""
from __future__ import annotations

import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass
class FrameState:
    """Everything known about one frame as it goes through the pipeline.

    Stages read what earlier stages wrote and add their own part:

    ==============  ========  ===============================================
    field           stage     content
    ==============  ========  ===============================================
    image           (input)   H×W×3 uint8 RGB (validated; never modified)
    timestamp_ms    (input)   the frame's time in video mode, else None
    face_index      (input)   which face (largest first); None = all faces
    faces           align     list of :class:`avatarizer.align.AlignedFace`
    all_faces       align     every face found, largest first
    face_params     face      (n, 483) float32: the face slice per face
    artist_params   face/hair (n, 629) full auto-artist fits, when one ran
    hair_params     hair      (n, 80) float32: the hair slice
    accessory_params hair     (n, 66) float32: the accessories slice
    attributes      hair      per face: the attribute regressor's decoded
                              output (:func:`avatarizer.hair.decode_attributes`),
                              or None where no regressor ran (auto-artist)
    params          merge     (n, 629) float32, valid (schema.clip)
    tracked         merge     video mode: the tracker's output for face 0
                              (:class:`avatarizer.video.TrackedFrame`) or None
    images          render    list of H×W×4 uint8 RGBA renders
    timings         all       stage name → milliseconds spent on this frame
    ==============  ========  ===============================================
    """

    image: np.ndarray
    timestamp_ms: float | None = None
    face_index: int | None = 0
    faces: list = field(default_factory=list)
    all_faces: list = field(default_factory=list)
    face_params: np.ndarray | None = None
    artist_params: list | None = None
    hair_params: np.ndarray | None = None
    accessory_params: np.ndarray | None = None
    attributes: list | None = None
    params: np.ndarray | None = None
    tracked: Any = None
    images: list | None = None
    timings: dict = field(default_factory=dict)
    info: dict = field(default_factory=dict)

    @contextmanager
    def timer(self, name: str):
        """Adds the time spent inside the ``with`` block to ``timings[name]`` (ms)."""
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.timings[name] = self.timings.get(name, 0.0) + (time.perf_counter() - t0) * 1e3
