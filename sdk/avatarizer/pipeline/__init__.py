"""The runtime pipeline, one stage per file (the insightface pattern).

Each stage is a small class with ``prepare(options)`` (once) and
``run(frame_state)`` (per frame), filling one shared :class:`FrameState`::

    align  → face (encode, map_decode) → hair → merge → render
    align.py  face.py                    hair.py merge.py render.py

Per face the stages fill one :class:`Face` result; per video stream, one
:class:`StreamState`. :func:`build` makes the pipeline for resolved options
(:func:`resolve`, in :mod:`~avatarizer.pipeline.config`);
:class:`avatarizer.api.Avatarizer` is the friendly layer on top.
"""
from __future__ import annotations

from .align import AlignStage
from .base import Pipeline, Stage
from .face import ArtistFaceEstimator, FaceEstimator, FaceStage, ModelFaceEstimator, resolve_estimator
from .hair import HairStage
from .merge import MergeStage
from .render import RenderStage
from .config import Resolved, resolve
from .state import Face, FrameState, StreamState

#: Stage names in order; ``encode`` and ``map_decode`` are timings of the face stage.
STAGES = ("align", "face", "hair", "merge", "render")
TIMINGS = ("align", "encode", "map_decode", "hair", "merge", "render")


def build(options, *, render_size: int = 256, render_background=None) -> Pipeline:
    """The pipeline that runs for ``options`` (an :class:`avatarizer.api.Options`,
    or an already :class:`Resolved` one), prepared.

    Options are resolved once (:func:`avatarizer.pipeline.config.resolve`:
    estimator, manifest, device, providers, precision); the result is on
    ``pipe.resolved`` and the face estimator on ``pipe.estimator``. Stages:
    ``align → face → hair → merge → render``; in video mode with the identity
    lock and ``identity_every_ms > 0`` the face and hair stages run inside
    :class:`~avatarizer.pipeline.identity.IdentityStage` (``align → identity →
    merge → render``; ``pipe["face"]`` and ``pipe["hair"]`` still name them),
    and the pipeline carries the stream's :class:`StreamState`. The render
    stage draws only frames that ask for it (``FrameState.render_size``).
    This is what :class:`avatarizer.api.Avatarizer` runs, and through it the
    CLI and ``bench``.
    """
    from .config import Resolved, resolve

    if isinstance(options, Resolved):
        from .face import resolve_estimator

        resolved = options
        estimator, _ = resolve_estimator(resolved, resolved.manifest)
    else:
        options.validate()
        resolved, estimator = resolve(options, render_size=render_size, render_background=render_background)
    face = FaceStage(estimator)
    face.estimator_reason = resolved.estimator_reason
    hair = HairStage()
    tr = resolved.tracker
    video = resolved.mode == "video"
    if video and tr.identity_lock and tr.identity_every_ms > 0:
        from .identity import IdentityStage

        middle = [IdentityStage(face, hair)]
    else:
        middle = [face, hair]
    stream = StreamState(tr, resolved.smoothing) if video else None
    pipe = Pipeline([AlignStage(), *middle, MergeStage(), RenderStage()], stream)
    pipe.by_name.update(face=face, hair=hair)
    pipe.resolved, pipe.estimator = resolved, estimator
    try:
        pipe.prepare(resolved)
    except BaseException:
        pipe.close()
        raise
    return pipe


__all__ = ["AlignStage", "ArtistFaceEstimator", "Face", "FaceEstimator", "FaceStage", "FrameState", "HairStage",
           "MergeStage", "ModelFaceEstimator", "Pipeline", "RenderStage", "Resolved", "Stage", "StreamState",
           "STAGES", "TIMINGS", "build", "resolve", "resolve_estimator"]
