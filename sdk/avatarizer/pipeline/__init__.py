"""The runtime pipeline, one stage per file (the insightface pattern).

Each stage is a small class with ``prepare(options)`` (once) and
``run(frame_state)`` (per frame), filling one shared :class:`FrameState`::

    align  → face (encode, map_decode) → hair → merge → render
    align.py  face.py                    hair.py merge.py render.py

:func:`build` makes the default pipeline; :class:`avatarizer.api.Avatarizer`
is the friendly layer on top.
"""
from __future__ import annotations

from .align import AlignStage
from .base import Pipeline, Stage
from .face import ArtistFaceEstimator, FaceEstimator, FaceStage, ModelFaceEstimator, resolve_estimator
from .hair import HairStage
from .merge import MergeStage
from .render import RenderStage
from .state import FrameState

#: Stage names in order; ``encode`` and ``map_decode`` are timings of the face stage.
STAGES = ("align", "face", "hair", "merge", "render")
TIMINGS = ("align", "encode", "map_decode", "hair", "merge", "render")


def build(render: bool = False) -> Pipeline:
    """The default stages (without ``render`` unless asked: the API renders lazily)."""
    stages = [AlignStage(), FaceStage(), HairStage(), MergeStage()]
    if render:
        stages.append(RenderStage())
    return Pipeline(stages)


__all__ = ["AlignStage", "ArtistFaceEstimator", "FaceEstimator", "FaceStage", "FrameState", "HairStage",
           "MergeStage", "ModelFaceEstimator", "Pipeline", "RenderStage", "Stage", "STAGES", "TIMINGS",
           "build", "resolve_estimator"]
