"""Stage 3, hair: hair and accessory parameters for each face.

For now the auto-artist's hair, facial-hair, glasses, headwear and clothes
slices (:data:`avatarizer.schema.HAIR` and :data:`~avatarizer.schema.ACCESSORIES`).
When the face stage already ran the artist (``estimator="artist"``) its fit is
reused and this stage only copies slices; with the model estimator the artist
runs here. A retrieval stage (attributes → KNN in the hair bank) will replace
it behind the same ``run``.
"""
from __future__ import annotations

import numpy as np

from .. import schema
from .base import Stage
from .state import FrameState

HAIR_DIM = schema.HAIR.stop - schema.HAIR.start
ACC_DIM = schema.ACCESSORIES.stop - schema.ACCESSORIES.start


class HairStage(Stage):
    name = "hair"

    def prepare(self, options) -> None:
        from ..artist import ArtistStyle, AutoArtist

        super().prepare(options)
        style = ArtistStyle()
        if getattr(options, "crop_size", None) and options.estimator_resolved == "artist":
            style = style.replace(crop_size=int(options.crop_size))
        self.artist = AutoArtist(style)

    def run(self, state: FrameState) -> None:
        with state.timer(self.name):
            n = len(state.faces)
            fits = state.artist_params
            if fits is None or len(fits) != n:
                fits = [self.artist.fit(f) for f in state.faces]
                state.artist_params = fits
            if n:
                state.hair_params = np.stack([p[schema.HAIR] for p in fits]).astype(np.float32)
                state.accessory_params = np.stack([p[schema.ACCESSORIES] for p in fits]).astype(np.float32)
            else:
                state.hair_params = np.zeros((0, HAIR_DIM), np.float32)
                state.accessory_params = np.zeros((0, ACC_DIM), np.float32)
