"""Stage 3, hair: hair and accessory parameters for each face.

With the shipped models (``estimator="model"``) this is the paper's path:
the attribute regressor H (role ``attributes``) describes the crop, the
photo's hair mask gives a silhouette descriptor, k-nearest-neighbour search
in the hairstyle bank picks the hair, and :func:`avatarizer.hair.merge`
fits it to the face with the photo's hair colour and draws glasses, facial
hair and headwear from the attributes (see ``docs/hair.md``).

With the auto-artist as the estimator (no shipped models) the artist's own
hair and accessory slices are used.

In video mode the retrieval is refreshed at most every
:data:`VIDEO_REFRESH_MS` per tracked face (hair is identity, and the
segmentation behind the hair mask costs about 5 ms); the video tracker
smooths identity further.
"""
from __future__ import annotations

import numpy as np

from .. import schema
from .base import Stage
from .state import FrameState

HAIR_DIM = schema.HAIR.stop - schema.HAIR.start
ACC_DIM = schema.ACCESSORIES.stop - schema.ACCESSORIES.start
VIDEO_REFRESH_MS = 1000.0
#: colour used when the photo shows no hair to sample (a bald head, a hat)
FALLBACK_HAIR_RGB = (0.25, 0.17, 0.11)


class HairStage(Stage):
    name = "hair"

    def prepare(self, options) -> None:
        from ..artist import ArtistStyle, AutoArtist

        super().prepare(options)
        style = ArtistStyle()
        if getattr(options, "crop_size", None) and options.estimator_resolved == "artist":
            style = style.replace(crop_size=int(options.crop_size))
        self.artist = AutoArtist(style)
        self.mode = "artist"
        self.reason = "the auto-artist estimates the face, so its hair fit is used"
        self.video = getattr(options, "mode", "image") == "video"
        self._cache: dict[int, tuple[float, np.ndarray, dict | None]] = {}  # face -> (time, params, attributes)
        if options.estimator_resolved in ("model", "hybrid"):
            from .. import hair as H
            from ..models import Manifest, Session

            manifest = Manifest.load(getattr(options, "models_dir", None))
            entries = [e for e in manifest.models.values() if e.role == "attributes" and e.kind == "onnx"]
            if entries:
                # the current model (int8) first when several are listed
                entries.sort(key=lambda e: (e.raw.get("version") or "", e.precision == "int8"), reverse=True)
                self.session = Session.from_entry(entries[0], device=options.device)
                self.decision, self.draw = H.model_thresholds(self.session.description)
                self.bank = H.HairBank.load()
                # the retrieval's family gates follow the model's drawing thresholds
                gates = tuple((name, self.draw.get(name, t), fams) for name, t, fams in H.GATES)
                self.retriever = H.HairRetriever(self.bank, gates=gates)
                self.mode = "retrieval"
                self.reason = (f"attribute regressor {entries[0].name!r} + KNN over {len(self.bank)} "
                               "bank hairstyles")
            else:
                self.reason = f"{manifest.folder} has no 'attributes' model: the auto-artist's hair is used"

    def reset(self) -> None:
        """A new stream: no hairstyle carries over from the previous person."""
        self._cache.clear()

    def _retrieve(self, face, face_slice: np.ndarray) -> tuple[np.ndarray, dict]:
        from .. import hair as H
        from ..artist import crop_valid_mask

        crop = face.crop(128)
        x = self.session.preprocess(crop[None])
        attrs = H.decode_attributes(self.session.run({self.session.input_names[0]: x}), decision=self.decision,
                                    draw=self.draw)
        mask = face.hair_mask(128)
        valid = crop_valid_mask(face, 128)
        idx = self.retriever.query(attrs, mask, face.canonical, valid=valid)
        # the photo's hair colour, drawn so that it reads as its likeliest class
        rgb = H.hair_colour(crop, mask, face.canonical, valid)[0] if mask is not None else None
        base = schema.default()
        base[schema.FACE] = face_slice
        full = H.merge(base, self.bank.entry(idx), FALLBACK_HAIR_RGB if rgb is None else rgb, attrs,
                       thresholds=self.draw)
        return full, attrs

    def run(self, state: FrameState) -> None:
        with state.timer(self.name):
            n = len(state.faces)
            if n == 0:
                state.hair_params = np.zeros((0, HAIR_DIM), np.float32)
                state.accessory_params = np.zeros((0, ACC_DIM), np.float32)
                state.attributes = []
                return
            attributes = [None] * n
            if self.mode == "retrieval":
                full = []
                now = state.timestamp_ms
                for i, f in enumerate(state.faces):
                    hit = self._cache.get(i) if self.video and now is not None else None
                    if hit is not None and 0 <= now - hit[0] < VIDEO_REFRESH_MS:
                        full.append(hit[1])
                        attributes[i] = hit[2]
                        continue
                    p, attributes[i] = self._retrieve(f, state.face_params[i])
                    if self.video and now is not None:
                        self._cache[i] = (now, p, attributes[i])
                    full.append(p)
            else:
                fits = state.artist_params
                if fits is None or len(fits) != n:
                    fits = [self.artist.fit(f) for f in state.faces]
                    state.artist_params = fits
                full = fits
            state.attributes = attributes
            state.hair_params = np.stack([p[schema.HAIR] for p in full]).astype(np.float32)
            state.accessory_params = np.stack([p[schema.ACCESSORIES] for p in full]).astype(np.float32)
