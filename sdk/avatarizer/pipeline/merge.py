"""Stage 4, merge: face + hair + accessories → 629 parameters (+ expressions in video mode).

In image mode this is a concatenation followed by :func:`avatarizer.schema.clip`
and, where the attribute regressor ran, its skin tone
(:func:`avatarizer.skintone.skin_by_tone`: the skin's L* kept within
``skintone.MARGIN`` of the lightness of the skin tone estimate (the
skin-tone network's in the hybrid, H's otherwise), or at the lightness
of a tone the app set: :func:`~avatarizer.skintone.skin_of_set_tone`; a*
and b* move toward those of skin in good light as far as L* moves),
with the colours :func:`avatarizer.prior.set_skin_colours` derives from the skin, and the lips
relit as the skin was (:func:`avatarizer.skintone.relight`; grey facial hair,
``attributes["beard_grey"]``, by the skin's change of exposure alone, never
darkened, and not with a tone the app set); the upper
lids and a buzz cut's colour keep the measured skin's) and
:func:`avatarizer.hair.age_lines` (nasolabial, under-eye and forehead lines
from its age estimate) and :func:`avatarizer.proportions.child_head` (a
child's head drawn taller above the brows, by that age; not with
``Options.child_head`` False); where no regressor runs
(``estimator="artist"``) both by the artist's own age estimate
(``Face.artist_age``, :func:`face_age`).
In video mode the merged raw parameters of the tracked face (``face_index``) go
through the stream's :class:`avatarizer.video.Tracker` (``state.stream.tracker``;
steady identity, live expressions and pose, smoothed transform),
and a frame without a face asks it for the grace-period avatar. The result
is ``state.tracked`` (a :class:`~avatarizer.video.TrackedFrame` or ``None``).

Between two answers of the identity networks a video frame reuses the same
face, hair and accessory arrays (read-only, ``StreamState.identity``), so
their merge is remembered on the stream (``StreamState.merged``) and done
again only when one of them, or the age, changes.
"""
from __future__ import annotations

import numpy as np

from .. import schema
from ..hair import age_lines, trusted_age
from ..proportions import child_face, child_head
from ..artist.colour import draw_in_tone, tone_indices
from .base import Stage
from .state import FrameState

#: (4, 3) the lips' colours (``artist.colour.LIP_FEATURES``), relit with the skin, and (2, 3) the beard's
#: and the moustache's colours: grey facial hair is lifted with the skin (:func:`avatarizer.artist.colour.draw_in_tone`)
_, LIP_RGB, FACIAL_HAIR_RGB, _IRIS_RGB = tone_indices()


def merge_face(f, child: bool = True) -> np.ndarray:
    """The (629,) valid parameters of one :class:`~avatarizer.pipeline.state.Face`
    (``child``: a child's head drawn taller, ``Options.child_head``)."""
    params = schema.clip(np.concatenate([f.face_params, f.hair_params, f.accessory_params]))
    tone = f.attributes.get("skin_tone") if f.attributes else None
    if tone is not None:  # the skin's lightness within the skin tone's band (avatarizer.skintone)
        # (the lips relit with it; grey facial hair lifted with a dim photo's skin, not with a tone the app
        # set, which says the skin's colour, not the photo's light)
        draw_in_tone(params, tone, set_by_app="skin_tone" in f.attributes.get("set_by_app", ()),
                     grey_facial_hair=bool(f.attributes.get("beard_grey")))
    a = f.attributes or {}
    age = face_age(f)
    if age is not None:  # age lines and a child's taller head from the age estimate (or the app's age)
        params = age_lines(params, age)
        # (not by an age read under a face mask: masked adults read as children, hair.trusted_age)
        if child and (trusted_age(a) if f.attributes else age) is not None:
            params = child_face(child_head(params, age), age)  # (the taller skull, then the face's features)
    return params


def face_age(f):
    """The age a face is drawn by: the attributes' (H's with the artist's,
    or the app's), or where no regressor ran (``estimator="artist"``) the
    artist's own estimate (``Face.artist_age``: None under a face mask)."""
    return f.attributes.get("age") if f.attributes else getattr(f, "artist_age", None)


class MergeStage(Stage):
    name = "merge"
    child = True  # (Options.child_head, set by prepare)

    def prepare(self, options) -> None:
        super().prepare(options)
        self.child = bool(options.child_head)

    def run(self, state: FrameState) -> None:
        with state.timer(self.name):
            stream = state.stream
            if stream is None:  # image mode
                for f in state.faces:
                    f.params = merge_face(f, self.child)
                return
            if not state.faces:
                state.tracked = stream.tracker.miss(state.timestamp_ms)
                return
            f = state.faces[0]
            parts = (f.face_params, f.hair_params, f.accessory_params, f.attributes, face_age(f))
            memo = stream.merged
            if memo is not None and all(a is b for a, b in zip(memo[0][:4], parts[:4])) and memo[0][4] == parts[4]:
                f.params = memo[1]
            else:
                f.params = merge_face(f, self.child)
                f.params.setflags(write=False)
                # only arrays nobody writes to are remembered (the identity stage's answers)
                frozen = all(not a.flags.writeable for a in parts[:3])
                stream.merged = (parts, f.params) if frozen else None
            a = f.aligned
            tracker = stream.tracker
            switches, returns = tracker.switches, tracker.returns
            # the estimate this frame repeats, for the tracker's categorical votes and another person's
            # evidence: the hair retrieval (its accessories, hair colour and skin tone are held for a second,
            # whatever face estimates come meanwhile); None (the artist's own hair): every frame votes
            estimate = f.hair_ms
            state.tracked = tracker.update(f.params, a.canonical, a.transform, state.timestamp_ms,
                                           yaw=a.yaw, pitch=a.pitch,
                                           fresh=state.info.get("identity_fresh", True),
                                           estimate_pose=state.info.get("identity_pose"), estimate=estimate,
                                           landmarks=a.landmarks)
            if tracker.switches != switches:  # another person: theirs afresh (the tracker reset itself)
                stream.another_person()
            elif tracker.returns != returns:  # the one before back: theirs as it was, their hair's memory too
                stream.person_back()
            elif tracker.far and f.hair_ms is not None:
                stream.retrieve_again(f.hair_ms)  # maybe another person: the next refresh retrieves their hair
