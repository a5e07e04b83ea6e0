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

import copy
import functools

import numpy as np

from .. import schema
from ..align import MAX_OUTSIDE
from ..beardgrey import BY as BEARD_GREY_BY
from ..beardgrey import BeardGreyFusion
from .base import Stage, beside
from .face import GLASSES
from .state import FrameState

HAIR_DIM = schema.HAIR.stop - schema.HAIR.start
ACC_DIM = schema.ACCESSORIES.stop - schema.ACCESSORIES.start
VIDEO_REFRESH_MS = 1000.0
SKIN_RGB = [schema.index(f"face.{c}") for c in "rgb"]
SKIN_SLICE = [i - schema.FACE.start for i in SKIN_RGB]  # the same within the face slice


#: H's outputs that hold probabilities (in [0, 1]) and the other ones it always has (the optional heads,
#: ``skin_tone`` and ``hair_long``, read a value that is not finite as none: hair.decode_attributes)
_PROBABILITY_OUTPUTS, _OTHER_OUTPUTS = ("hair_colour", "glasses", "binary"), ("regress",)


def _check_attribute_outputs(outputs, session) -> None:
    """:class:`~avatarizer.errors.ModelError` when the attribute model's
    outputs hold NaN or infinity, or probabilities outside [0, 1]: a broken
    model file (its NaN was reported as the probabilities of every
    attribute, and outputs a million times too large drew a bald head),
    never bad input."""
    from ..errors import ModelError

    for name in _PROBABILITY_OUTPUTS + _OTHER_OUTPUTS:
        y = np.asarray(outputs[name])
        bad = int(y.size - np.isfinite(y).sum())
        if bad:
            raise ModelError(f"model {session.name!r} ({session.path}) returned {bad} non-finite value(s) (NaN or "
                             f"infinity) in {name!r}: the model file is broken (re-export it)")
        if name in _PROBABILITY_OUTPUTS and y.size and not (-1e-3 <= float(y.min()) and float(y.max()) <= 1.0 + 1e-3):
            raise ModelError(f"model {session.name!r} ({session.path}) returned probabilities outside [0, 1] in "
                             f"{name!r} ({float(y.min()):.4g} .. {float(y.max()):.4g}): the model file is broken "
                             "(re-export it)")


def achromatic(crop: np.ndarray) -> bool:
    """Whether an RGB uint8 crop (H x W x 3) is a black-and-white photo:
    at least :data:`GREY_PHOTO_SHARE` of its pixels, averaged over 3 x 3
    (a scan's or a sensor's noise), with their channels within
    :data:`GREY_PHOTO_SPREAD` levels of each other; False for anything else."""
    import cv2

    c = np.asarray(crop)
    if c.ndim != 3 or c.shape[-1] != 3 or c.dtype != np.uint8 or min(c.shape[:2]) < 3:
        return False
    c = cv2.blur(np.ascontiguousarray(c), (3, 3)).astype(np.int16)
    spread = c.max(axis=-1) - c.min(axis=-1)
    return float(np.mean(spread <= GREY_PHOTO_SPREAD)) >= GREY_PHOTO_SHARE


def mirrored_mean(session, crop: np.ndarray) -> dict:
    """H's outputs for one aligned crop (H x W x 3 uint8): the mean of its
    reading of the crop and of the crop's mirror image (one call, a batch
    of two), as the region networks average theirs inside their graphs.
    Every output of H is a left-right symmetric attribute; read once, a
    mirrored photo (a front camera's selfie) was another person: of 100
    held-out labelled portraits and their mirror images, 14 changed the
    reported gender, 12 the hair length, 11 the hair colour class; 8, 6 and
    3 read so (session 73)."""
    name = session.input_names[0]
    info = (getattr(session, "inputs", None) or [None])[0]
    batch = (getattr(info, "shape", None) or (None,))[0]
    if not (isinstance(batch, (int, np.integer)) and batch < 2):
        try:
            out = session.run({name: session.preprocess(np.stack([crop, crop[:, ::-1]]))})
            return {k: np.asarray(v, np.float32).mean(axis=0, keepdims=True) for k, v in out.items()}
        except ValueError:  # (a TensorRT engine whose batch profile stops at one: two calls, below)
            pass
    # a model of a fixed batch of one: two calls
    runs = [session.run({name: session.preprocess(np.ascontiguousarray(c)[None])}) for c in (crop, crop[:, ::-1])]
    return {k: np.mean([np.asarray(r[k], np.float32) for r in runs], axis=0) for k in runs[0]}


#: :func:`achromatic`: a pixel's channels this close (levels of 255) are grey, and a crop this share of grey
#: pixels is a black-and-white photo. H reads the lenses of clear glasses in one as tinted: of 250 training
#: and held-out photos with clear glasses made grey, 15 were drawn with sunglasses (in colour 1), where the
#: artist's network, which reads the eyes through the lenses, ranked clear first (a read-only review,
#: session 70). There sunglasses are drawn only where it ranks them first, else clear glasses: clear glasses
#: drawn so 224 -> 235 of 250, sunglasses 73 -> 71 of 74, no glasses 250 of 250 (the colour photos alike)
GREY_PHOTO_SPREAD = 3
GREY_PHOTO_SHARE = 0.98
GREY_PHOTO_GLASSES_BY = "fusion; a black-and-white photo: sunglasses only as the artist's network reads them"
#: ... and of glasses under a face mask (its edge reads as tinted lenses)
MASK_GLASSES_BY = "a face mask: no sunglasses where the eyes are not tinted"


class HairStage(Stage):
    name = "hair"
    fusion = None  # the glasses decision (avatarizer.glasses.GlassesFusion), hybrid only
    facial_hair = None  # the beard and moustache decision (avatarizer.facialhair), hybrid only
    hat_network = None  # the hat decision (avatarizer.headwear.NETWORK), hybrid only
    hat_fusion = None  # ... with H's (avatarizer.headwear.HatFusion), when fitted with this H and network
    hair_colour = None  # the hair colour class's third reading (avatarizer.haircolour), hybrid only
    hair_colour_tight = None  # the same reading on a tight crop (haircolour.load_tight), hybrid only
    hair_length_tight = None  # long or short hair on a tight crop (avatarizer.hairlength), hybrid only
    skin_tone = None  # the skin tone (avatarizer.skintone.NETWORK), hybrid only
    gender = None  # the gender from H and the face's shape (avatarizer.gender.GenderFusion), with this H
    beard_grey = None  # grey facial hair from its pixels and the hair's colour (avatarizer.beardgrey), hybrid only

    def prepare(self, options) -> None:
        from ..artist import ArtistStyle, AutoArtist

        super().prepare(options)
        style = ArtistStyle()
        if getattr(options, "crop_size", None) and options.estimator_resolved == "artist":
            style = style.replace(crop_size=int(options.crop_size))
        self.artist = AutoArtist(style)
        self.mode = "artist"
        self.reason = "the auto-artist estimates the face, so its hair fit is used"
        entry = getattr(options, "attributes_entry", None)
        if options.estimator_resolved in ("model", "hybrid"):
            if entry is not None:
                from .. import hair as H
                from ..runtime import Session

                self.session = Session.from_entry(entry, device=options.device,
                                                  providers=options.providers or None)
                self.decision, self.draw = H.model_thresholds(self.session.description)
                self.bank = H.HairBank.load()
                # the retrieval's family gates follow the model's drawing thresholds; long or short hair
                # by H's hair_long (labels by eye), where the model has it (and each reported gender's own
                # pair, where the model has both and the pair for all)
                self.retriever = H.HairRetriever.for_model(self.bank, self.session.description)
                self.mode = "retrieval"
                # the gender: H's P(male) with the face's frontal landmarks, when fitted with this H
                from ..gender import GenderFusion

                self.gender = GenderFusion.load(entry.sha256)
                # glasses: H fused with the artist's glasses network, when fitted with this H and this network
                from ..artist.accessories import loaded_detector_key
                from ..glasses import GlassesFusion

                self.fusion = (GlassesFusion.load(entry.raw.get("version"), sha256=entry.sha256,
                                                  artist_network=loaded_detector_key("glasses"))
                               if options.estimator_resolved == "hybrid" else None)
                if options.estimator_resolved == "hybrid":  # beards and moustaches, hats: from their blocks
                    from .. import headwear as HW
                    from ..facialhair import load as load_facial_hair

                    from ..haircolour import load as load_hair_colour
                    from ..haircolour import load_tight as load_tight_hair_colour
                    from ..hairlength import load_tight as load_tight_hair_length
                    from ..skintone import load_network as load_skin_tone

                    self.facial_hair = load_facial_hair()
                    self.hat_network = HW.load_network()
                    if self.hat_network is not None:
                        self.hat_fusion = HW.HatFusion.load(entry.sha256, self.hat_network.sha256)
                    self.hair_colour = load_hair_colour()
                    self.hair_colour_tight = load_tight_hair_colour()
                    self.hair_length_tight = load_tight_hair_length()
                    self.skin_tone = load_skin_tone()
                    # grey facial hair: the grey-beard detector with the hair's colour, when fitted with these
                    from ..artist.accessories import loaded_detector_key as detector_key

                    self.beard_grey = BeardGreyFusion.load(
                        entry.sha256, detector_key("beard_grey"),
                        None if self.hair_colour is None else self.hair_colour.sha256,
                        hair_colour_tight_sha256=None if self.hair_colour_tight is None
                        else self.hair_colour_tight.sha256)
                nets = [n for n, net in (("facial-hair", self.facial_hair), ("hat", self.hat_network),
                                         ("hair-colour", self.hair_colour),
                                         ("tight-crop hair-colour", self.hair_colour_tight),
                                         ("tight-crop hair-length", self.hair_length_tight),
                                         ("skin-tone", self.skin_tone)) if net]
                named = ", ".join(nets[:-1]) + " and " + nets[-1] if len(nets) > 1 else "".join(nets)
                self.reason = (f"attribute regressor {entry.name!r} + KNN over {len(self.bank)} "
                               "bank hairstyles" + (f" + the {named} networks" if nets else "")
                               + (" (the hat's fused with the regressor)" if self.hat_fusion is not None else "")
                               + ("; the gender with the face's shape" if self.gender is not None else ""))
            else:
                folder = getattr(options.manifest, "folder", options.models_dir)
                self.reason = f"{folder} has no 'attributes' model: the auto-artist's hair is used"

    def _retrieve(self, face, face_slice: np.ndarray, artist_glasses: np.ndarray | None = None,
                  glasses_cues: dict | None = None, overlap: bool = False,
                  settings: dict | None = None, style: tuple | None = None) -> tuple[np.ndarray, dict, tuple]:
        """(the full vector, the attributes, the stream's ``(shown, recent families,
        (beard shown, beard pending), (gender shown, gender pending), readings)``
        hairstyle, beard shape, reported gender and recent readings): ``style`` is the
        stream's so far (video; None: none, the style retrieved and the beard
        and gender read are drawn and reported), kept steady by
        :func:`hair.steady_style`, :func:`hair.steady_beard_style`,
        :func:`hair.steady_gender` and :func:`hair.steady_readings` (the age,
        the skin tone, the clothes' colour; in the same memory the receding
        detector's readings, :func:`hair.add_artist_receding`)."""
        from .. import hair as H
        from .. import headwear as HW
        from .. import skintone as ST
        from ..artist import crop_valid_mask
        from ..artist.accessories import facial_hair_colour

        # a face mask over the cheeks and mouth (the artist's finding: colour.skin_colour)
        masked = glasses_cues is not None and bool(glasses_cues.get("cheeks_covered"))
        crop = face.crop(128)

        def networks():  # H, and in the hybrid the hat, facial-hair (none under a face mask), hair-colour and
            # skin-tone (none under a face mask) networks
            return (mirrored_mean(self.session, crop),
                    None if self.hat_network is None else self.hat_network.probabilities(crop),
                    None if self.facial_hair is None or masked else self.facial_hair.probabilities(crop),
                    None if self.hair_colour is None else self.hair_colour.probabilities(crop),
                    None if self.skin_tone is None or masked else self.skin_tone.probabilities(crop))

        # image mode: the networks run on a side thread while this one reads the photo's hair
        network = beside(networks) if overlap else None
        try:
            mask = face.hair_mask(128)
            valid = crop_valid_mask(face, 128)
            reading = H.hair_region_reading(crop, mask, face.canonical, valid, masked=masked) \
                if mask is not None else None
        finally:
            ran = network.result() if network is not None else None
        outputs, hat_probs, facial_hair_probs, colour_net, tone_net = ran if ran is not None else networks()
        _check_attribute_outputs(outputs, self.session)
        attrs = H.decode_attributes(outputs, decision=self.decision, draw=self.draw)
        if self.gender is not None and not masked:  # the gender with the face's own proportions (pose-free
            # landmarks; not under a face mask, where MediaPipe guesses the jaw and lips: H's reading stands)
            from ..gender import fuse as fuse_gender

            fuse_gender(attrs, self.gender, face.landmarks)
        # the hair colour classes are weighed by H's skin tone (their prior was fitted against its estimates)
        tone_h = None if masked else attrs.get("skin_tone")
        if tone_net is not None:  # the skin tone from the face's centre (H's read dark skin too light)
            attrs["skin_tone_h"] = tone_h  # (the network is not read under a face mask)
            attrs["skin_tone"], attrs["skin_tone_by"] = ST.tone_of_network(tone_net), ST.BY_NETWORK
        if hat_probs is not None:  # the hat from the top of the head's own network (hybrid)
            H.add_hat_network(attrs, hat_probs["headwear"], self.hat_network.thresholds, fusion=self.hat_fusion)
        if masked and attrs.get("skin_tone") is not None:
            # H reads the skin tone from the whole face: under a face mask, the mask's (a black one read
            # 6-7 on light skin); the skin drawn is the forehead's and the nose's as measured (not reported)
            attrs["skin_tone"] = None
            attrs["skin_tone_by"] = "not read: the cheeks are covered (a face mask)"
        if masked:
            # both H and the artist read a masked adult's age young (under a blue mask the median adult reads
            # 12-15): H's is reported, and neither a child's head (merge) nor the artist's bald age gate uses it
            attrs["age_by"] = H.MASKED_AGE_BY
        elif glasses_cues is not None:  # H's age with the artist's (H reads children years older)
            H.fuse_age(attrs, glasses_cues.get("age"))
        # a stream's age and skin tone: the median of its last refreshes' readings (before anything reads them)
        steady = None if style is None else H.steady_readings(attrs, style[4])[0]
        if not H.sides_observed(valid, face.canonical):
            # a tight crop: too little beside the face for H's reading (not reported, no length gate); the tight
            # crops' own network reads it where shipped (hybrid), gated at its own pair
            attrs["hair_long"] = None
            p_long = None if self.hair_length_tight is None else \
                self.hair_length_tight.probabilities(crop)["hair_long"]
            if p_long is not None and np.isfinite(p_long):  # (a non-finite reading: none, as H's decode does)
                attrs["hair_long"] = p_long
                attrs["hair_long_by"] = H.TIGHT_LENGTH_BY
                attrs["hair_long_gate"] = self.hair_length_tight.gates
                # (a bonnet or a blanket beside a baby's head read as long hair; an age the app set wins)
                H.baby_hair_short(attrs, age=(settings or {}).get("age"))
        settings = settings or {}
        # the hat the model's own decision draws (without the app's), the rules below included: where the
        # app sets headwear they do not run, and the clothes are read as without settings (read_under_hat)
        cut_face = face.outside_fraction > MAX_OUTSIDE
        black = bool(attrs["drawn"]["headwear"]) and not cut_face and HW.black_top(crop) >= HW.BLACK_TOP_SHARE
        model_hat = bool(attrs["drawn"]["headwear"]) and not cut_face and not black
        cut = cut_face and "headwear" not in settings
        if cut and attrs["drawn"]["headwear"]:
            # a face cut by the frame's edge: its crop's replicated border reads as a hat (the sample
            # portrait cut 40% at the side: a beanie at 0.76); the model's reading is reported, not drawn
            attrs["drawn"]["headwear"] = False
            attrs["headwear_by"] = "not drawn: the face is cut by the frame's edge"
        elif black and "headwear" not in settings:
            # the top of the head pure black (black padding of a rotated or letterboxed photo, a clipped
            # backdrop): nothing to read a hat from; the networks read the black as a beanie
            attrs["drawn"]["headwear"] = False
            attrs["headwear_by"] = HW.BLACK_TOP_BY
        # what the model reads: the photo's hair colour, drawn so that it reads as the class H and the
        # hair region's classifier agree on (fuse_hair_colour), and the glasses kind H and the artist's
        # cues decide together (hybrid)
        # (grey weighed by the model's age, not one the app set: the hair colour stays the model's reading,
        # a black-haired person set to 90 was drawn grey)
        net_kind = "portrait"
        if reading is None or H.too_little_hair(len(reading[1]), reading[2]):
            # a tight crop (the hair region under HAIR_CLASS_MIN_AREA of it, or none read): the network fitted
            # on loose portraits drew 17 of 129 black-haired people on UTKFace's chips brown and a Black baby
            # blond from the forehead's pixels (session 31); the one fitted with tight framings reads it
            # (session 45), or, without its files, none
            colour_net = None if self.hair_colour_tight is None else self.hair_colour_tight.probabilities(crop)
            net_kind = "tight crop"
        net_read = colour_net  # (reported as read; on a tight crop fused at haircolour.TIGHT_WEIGHT)
        if colour_net is not None and net_kind == "tight crop":
            from ..haircolour import TIGHT_WEIGHT, tempered

            colour_net = tempered(colour_net, TIGHT_WEIGHT)
        # (and, in the hybrid, the hair-colour network's reading of the whole crop: a third expert)
        # (grey weighed by the model's age, never the app's, nor one read under a face mask: masked adults
        # read 12-15; blond and red read as black or brown where the skin-tone network reads dark skin)
        as_dark = H.light_hair_as_dark(attrs)
        # (and where the photo shows no hair: the crown out of the frame and what the hair region holds of it
        # the temples' skin, which every reader took for blond or red on babies' chips)
        unseen = mask is not None and not as_dark and H.hair_unseen(
            *((reading[1], reading[2], reading[3]) if reading is not None else ((), crop.shape[0] ** 2, None)),
            face.canonical, valid, crop.shape[0])
        if unseen:
            as_dark = H.LIGHT_HAIR
        model = (attrs["hair_colour_probs"], self.decision.get("hair_colour_priors"), H.model_age(attrs),
                 H.tone_colour_ratios(tone_h, self.decision.get("hair_colour_tone_prior")),
                 colour_net, as_dark)
        net_by = ("" if colour_net is None else " x hair-colour network") + (
            H.UNSEEN_BY if unseen else " x skin tone" if as_dark else "")
        if colour_net is not None:
            attrs["hair_colour_network_read"] = {k: float(v) for k, v in net_read.items()}
            attrs["hair_colour_network"] = net_kind
        rgb, colour_probs, skin = None, None, None
        if reading is not None:
            raw, px, crop_pixels, skin = reading
            rgb, colour_probs = H.hair_colour_of_class(raw, px, crop_pixels, skin_lab=skin, model=model)
            if unseen and colour_probs is not None:  # (the pixels are skin: the class's colour, not theirs
                # moved the least way into it, a skin-pale brown)
                rgb = H.class_hair_colour(colour_probs)
        if colour_probs is not None:  # report the colour class the drawing follows
            H.read_hair_colour(attrs, colour_probs,
                               source=("H x hair region" if H.region_classifier_reads(skin) else "H") + net_by)
        elif attrs["hair_colour_probs"]:  # no hair region read: H's reading weighed alike, reported and drawn
            H.read_hair_colour(attrs, H.model_hair_colour(*model), source="H" + net_by)
        fused, split = None, False
        under_hat = bool(settings.get("headwear", attrs["drawn"]["headwear"]))
        artist_probs = None if glasses_cues is None else glasses_cues.get("glasses_probs")
        if self.fusion is not None and artist_probs is not None and np.isfinite(artist_probs).all():
            from ..glasses import apply_decision

            fused, probs = self.fusion.decide(artist_probs, attrs["glasses_probs"])
            grey_photo = fused == 2 and achromatic(crop) and int(np.argmax(artist_probs)) != 2
            # (a black-and-white photo: sunglasses only where the artist's network reads them, else glasses all
            # the same, the fusion read some; but under a hat, whose brim's shade reads as tinted lenses, clear
            # ones only where likelier than none, as hair.sunglasses_under_hat decides on a colour photo: the
            # grey rule ran first and drew clear glasses on bare eyes under hard hats; a review, session 72)
            grey_hat = grey_photo and under_hat and "glasses" not in settings
            if grey_photo:
                fused = 1 if not grey_hat or float(probs[1]) > float(probs[0]) else 0
            # glasses sure of neither kind (glasses.decide_kind): clear ones, but under a face mask the mask's rule
            # below decides them as it does a fused "sunglasses" (its edge reads as tinted lenses: the split drew
            # clear glasses on 5 of 80 masked faces without any; a review, session 74)
            split = fused == 1 and self.fusion.split(probs)
            apply_decision(attrs, fused, probs)
            if grey_hat:
                attrs["glasses_by"] = H.UNDER_HAT_BY
            elif grey_photo:
                attrs["glasses_by"] = GREY_PHOTO_GLASSES_BY
            elif split:
                from ..glasses import SPLIT_BY

                attrs["glasses_by"] = SPLIT_BY
            elif fused != self.fusion.kind_at_thresholds(probs):  # (reported: the probabilities said otherwise)
                attrs["glasses_by"] = "fusion, kept only as the artist's cues or the model rank it"
            else:
                from ..glasses import FUSION_BY

                attrs["glasses_by"] = FUSION_BY
        if masked:
            # a face mask: H and the glasses network read its dark edge below the eyes as tinted lenses, and
            # a dark mask as a beard; sunglasses only where the eyes look tinted, no beard (what the app set
            # still wins: its settings are applied below)
            from ..artist.accessories import clear_under_mask, tinted_under_mask

            if (attrs["glasses_type"] == 2 or split) and not tinted_under_mask(glasses_cues.get("glasses")):
                # clear glasses where the fusion's clear probability clears its threshold, or where the
                # artist's glasses network (which reads the eyes' rims, H the whole crop) is near certain
                # of clear ones (MASK_CLEAR_PROB): H reads the mask's edge as sunglasses with certainty,
                # and the fusion followed it
                by_fusion = fused is not None and float(probs[1]) >= self.fusion.clear
                by_network = fused is not None and not by_fusion and clear_under_mask(artist_probs)
                if by_network:  # reported with the network's probabilities (H's stay under glasses_probs_model)
                    H.add_artist_glasses(attrs, 1, artist_probs)
                else:
                    H.decide_glasses(attrs, 1 if by_fusion else 0)
                attrs["glasses_by"] = MASK_GLASSES_BY + (
                    "; clear glasses by the artist's glasses network" if by_network else "")
                if fused is not None:
                    fused = int(by_fusion or by_network)
            for k in ("beard", "moustache"):
                if attrs["drawn"][k]:
                    attrs["drawn"][k] = False
                    attrs[f"{k}_by"] = "not drawn: a face mask covers the lower face"
        if attrs["glasses_type"] == 2 and "glasses" not in settings:
            # a hat's brim shades the eyes: sunglasses under it only where they are near certain (not where
            # the app sets the glasses: what the model read is reported beside them as it read it)
            H.sunglasses_under_hat(attrs, under_hat)
            if fused is not None:
                fused = attrs["glasses_type"]
        if facial_hair_probs is not None:
            # beard and moustache from the lower face's own network, in place of H's heads and the
            # artist's detector (also where the app sets them: what the model read is reported beside
            # the set value; none under a face mask: decided above)
            H.add_facial_hair(attrs, facial_hair_probs, self.facial_hair.thresholds, age=settings.get("age"))
            # ... and the hair's length and the gender read with it (bearded men's short hair read long)
            H.read_with_facial_hair(attrs)
        elif glasses_cues is not None and "beard" not in settings:
            # a beard H missed that the artist's facial-hair detector finds (not measured when the app set it)
            H.add_artist_beard(attrs, glasses_cues.get("beard"), age=settings.get("age"))
        # a stream's reported gender changes only when two refreshes in a row read it (a P(male) near the
        # threshold flipped it between refreshes); the artist's bald detector and the hairstyle search read
        # the one reported (neither draws a bald head on a face reported female)
        gender = (None, None) if style is None else H.steady_gender(attrs, *style[3])
        if glasses_cues is not None and "bald" not in settings and "hair_length" not in settings:
            # a bald head H missed that the artist's bald detector finds over the hair region's cues
            # (not where the app set the hair's length: a bald style is neither)
            # (its bare-top band in image mode only: in a stream a head near the band's floor came and went)
            H.add_artist_bald(attrs, glasses_cues.get("bald"), face.hair_mask,
                              hat=settings.get("headwear", attrs["drawn"]["headwear"]), bare_top=style is None,
                              age=settings.get("age"))
        # a receding hairline the artist's receding detector reads (H has no receding output: 1 of 186 heads
        # labelled receding by eye was drawn receding); not where the app set a bald head or long hair (a
        # short length or bald=False agree with it); in a stream by the median of its latest readings, with a
        # margin either side of the threshold (one reading near it flipped the style between refreshes)
        receding = False
        if glasses_cues is not None and settings.get("bald") is not True and settings.get("hair_length") != "long":
            receding, memory = H.add_artist_receding(
                attrs, glasses_cues.get("receding"), face.hair_mask,
                hat=settings.get("headwear", attrs["drawn"]["headwear"]), age=settings.get("age"),
                recent=steady, stream=style is not None)
            steady = memory  # (None in image mode, as steady is there)
        # the photo's hair colour as sampled, without a colour cast (before any class is read into it)
        hair_rgb = None if reading is None else H.natural_hair_colour(reading[0])
        # a hat is decided (by H or the app) before the hair colour is: under it the hair region is the hat

        def read_under_hat(attrs, hair_rgb, scarf):
            """The hat of its kind where the photo shows it (the person mask above the
            forehead), its colour and the hair's beside the face, read into ``attrs``:
            (hat_shape, hair_rgb, rgb)."""
            hat_shape = HW.shape_cues(crop, mask, face.canonical, valid)
            HW.read_kind(attrs, hat_shape)
            # the hat in its colour, the hair in the colour beside the face
            hat, hair_rgb = H.headwear_colours(crop, mask, face.canonical, valid, skin_rgb=face_slice[SKIN_SLICE])
            if hat is not None:
                attrs["headwear_rgb"] = hat
            if scarf:  # the cloth over the crown and beside the face
                cloth = H.scarf_colour(crop, mask, face.canonical, valid, skin_rgb=face_slice[SKIN_SLICE])
                if cloth is not None:
                    attrs["headwear_rgb"] = cloth
                hair_rgb = None  # what shows beside the face is the cloth: the hair (and a beard's
                # fallback colour) is the class H reads
            if hair_rgb is not None:
                hair_rgb = H.natural_hair_colour(hair_rgb)
            # the hair region's class reading was of the hat: H's reading weighed alike stands (also as
            # what the model read beside a colour the app set), and without hair beside the face the
            # hair is drawn in it
            if str(attrs.get("hair_colour_source", "")).startswith("H x hair region"):
                attrs["hair_colour_probs"] = attrs.pop("hair_colour_probs_model")
                H.read_hair_colour(attrs, H.model_hair_colour(*model), source="H" + net_by)
            # ... and not as the hat's colour: a red hat over hair beside the face of another class read red
            moved = H.not_the_hats_colour(attrs["hair_colour_probs"], hat, hair_rgb)
            if moved is not None:
                H.read_hair_colour(attrs, moved, source=str(attrs.get("hair_colour_source", "H")) + H.HAT_COLOUR_BY)
            # the colour beside the face drawn so that it reads as the class reported (as where no hair
            # region is read: H's reading alone, at any probability); as sampled, 17 of 44 hats' hair read
            # another class than the one reported (a grey head's brown side hair)
            # (no hair beside the face: the class's colour, the palette's grey for grey hair)
            rgb = H.class_hair_colour(attrs["hair_colour_probs"], sampled=hair_rgb)
            return hat_shape, hair_rgb, rgb

        hat_shape = None
        model_hat = model_hat and mask is not None
        wants_hat = under_hat and mask is not None
        scarf = wants_hat and settings.get("headwear_kind") == "scarf"
        # the hair's colour as the photo shows it by the model's own reading, whatever the app sets: the
        # clothes' reading leaves it out (with the app's hat, its scarf or its hair colour, hair over the
        # shoulders was read as the clothes: 18 of 40 portraits' clothes changed with headwear=True set)
        photo_rgb = None
        if (wants_hat, scarf) != (model_hat, False):
            if model_hat:
                mine = copy.deepcopy(attrs)
                photo_rgb = read_under_hat(mine, hair_rgb, False)[2]
            else:
                mine, photo_rgb = attrs, rgb
            if photo_rgb is None:
                photo_rgb = H.class_hair_colour(mine["hair_colour_probs"])
        if wants_hat:
            hat_shape, hair_rgb, rgb = read_under_hat(attrs, hair_rgb, scarf)
        read_kind = fused  # the glasses kind the model read (before the app's): the photo's lenses are tinted
        if rgb is None:  # no hair region read (no person mask, a tight crop): the class H reports, not a fixed brown
            rgb = H.class_hair_colour(attrs["hair_colour_probs"])
        if photo_rgb is None:  # (the model's own hat decision: the colour as read, before a class the app sets)
            photo_rgb = rgb
        if settings:  # what the app set wins (Options.attributes, from_frame(attributes=...)); the model's stays
            H.apply_settings(attrs, settings)
            if "hair_colour" in settings:  # the photo's hair colour (beside a hat) moved into the class set
                rgb = H.class_hair_colour({settings["hair_colour"]: 1.0}, apart=H.HAIR_SET_APART, sampled=hair_rgb)
            if "glasses" in settings:  # drawn in the artist's shape where it measured one
                fused = attrs["glasses_type"] if glasses_cues is not None else None
        if glasses_cues is not None:  # a drawn beard's shape (H, the artist's detector or the app drew it)
            H.read_beard_style(attrs, glasses_cues.get("goatee"))
        # a stream's beard shape changes only when two refreshes in a row read it
        beard_shape = (None, None) if style is None else H.steady_beard_style(attrs, *style[2])
        query = H.hat_query(H.bald_query(attrs))
        base = schema.default()
        base[schema.FACE] = face_slice
        # (a child or a woman: a bald or receding style only through a bald gate, not the silhouette alone;
        # long and short styles as they come out on this face, whose head frame places them)
        idx = self.retriever.query(query, mask, face.canonical, valid=valid,
                                   gate_only=H.silhouette_bald_unlikely(query), face=base)
        if receding and self.retriever.families[idx] not in ("bald", "receding", "headwear") \
                and not self.bank.drawn_long(base)[idx]:
            # the nearest receding style (every one is short: not in place of long hair the search found)
            near = self.retriever.query_family("receding", query, mask, face.canonical, valid=valid)
            if near is not None:
                idx = near
        if style is not None:  # a stream: the style shown changes to a family found most lately (or a gate's)
            idx, recent = H.steady_style(self.retriever.families, *style[:2], idx,
                                         self.retriever.gated_families(query))
        else:
            recent = None
        if (self.retriever.families[idx] == "bald" and not attrs["drawn"]["bald"] and "bald" not in settings
                and not settings.get("headwear", attrs["drawn"]["headwear"])):
            # the silhouette's search drew a wholly bald head H did not decide (P(bald) over the bald style's
            # floor): reported as drawn (69030 was drawn bald and reported "bald: no (p 0.85)"; 6 of 900 loose
            # portraits: a review, session 65); the probability stays H's
            attrs["drawn"]["bald"] = True
            attrs["bald_by"] = H.DRAWN_STYLE_BY
        if attrs["drawn"]["beard"] or attrs["drawn"]["moustache"]:  # the beard's own colour (white ones too)
            decide = None
            p_hair = (attrs.get("hair_colour_probs") or {}).get("gray")
            if self.beard_grey is not None and p_hair is not None and np.isfinite(p_hair):
                # the beard's pixels weighed with the hair's colour (stubble shows the skin and reads brown)
                decide = functools.partial(self.beard_grey.grey, p_grey_hair=float(p_hair))
            beard, grey, p_grey = facial_hair_colour(crop, face.canonical, base[SKIN_RGB], valid, decide=decide)
            gated = grey and not H.grey_beard_plausible(attrs, p_grey)  # (a young man's dark beard in dim light)
            if gated:
                beard, grey, _ = facial_hair_colour(crop, face.canonical, base[SKIN_RGB], valid, grey=False)
            if beard is not None:
                attrs["beard_rgb"] = beard * 0.9
                attrs["beard_grey"] = grey  # (drawn as its lit strands: merge relights them with the skin)
                if p_grey is not None:  # what the detector read (beside what decided: the fusion's, where it did)
                    attrs["beard_grey_detector_read"] = float(p_grey)
                if decide is not None and p_grey is not None:  # (decide ran: the detector read the pixels)
                    attrs["beard_grey_probability"] = self.beard_grey.probability(p_grey, float(p_hair))
                    # named where the fusion's decision is what is drawn (not the plausibility gate's dark, nor
                    # dark for want of grey strands)
                    if not gated and grey == decide(p_grey):
                        attrs["beard_grey_by"] = BEARD_GREY_BY
        # the clothes in their colour (the bottom corners of the crop, beside the neck, as the artist reads
        # them): every hybrid avatar wore the prior's blue top, a black jacket, a pink or a green one alike
        # (a read-only review, session 66)
        from ..artist.accessories import clothes_rgb
        from ..artist.photo import float_rgb, to_lab

        worn = None if mask is None else clothes_rgb(  # (no person mask: the corners may be the background)
            float_rgb(crop), mask, valid, to_lab(np.asarray(base[SKIN_RGB], np.float64)), photo_rgb)
        if style is not None:  # a stream: a refresh that reads no clothes keeps the last reading's colour
            steady, worn = H.steady_readings({}, steady, clothes_rgb=worn)
        if worn is not None:  # (plain floats: the attributes are compared and sent between processes)
            attrs["clothes_rgb"] = [float(v) for v in worn]
        # (a hat the hat network decided, or not drawn on a face cut by the edge: merge follows attrs["drawn"])
        full = H.merge(base, self.bank.entry(idx), rgb, attrs, thresholds=self.draw, hat_shape=hat_shape)
        if fused:  # drawn with the artist's frame colour and lens sizes
            from ..artist.accessories import set_glasses_kind

            drawn = glasses_cues["glasses_shape"](fused)
            # sunglasses in their lenses' colour where the model read sunglasses; set by the app on eyes it read
            # bare or behind clear glasses, the built-in dark lenses (the eyes' box is skin and eye: the set
            # sunglasses of 7 of 40 bare-eyed photos were drawn lighter than L* 50, pink at 0.7 opacity on one;
            # a review, session 65)
            set_glasses_kind(drawn, fused, glasses_cues.get("lens_rgb") if read_kind == 2 else None)
            full[GLASSES] = drawn
        elif (fused is None and "glasses" not in settings and artist_glasses is not None
                and not attrs["glasses_type"] and artist_glasses[0] >= 0.5
                and (artist_glasses[0] < 1.5 or not under_hat
                     or H.sure_under_hat(None if artist_probs is None else artist_probs[2]))):
            # (glasses.type: 1 clear, 2 sunglasses; under a hat the artist's sunglasses only where its
            # network is as sure as the hat rule asks: its tint cue reads the brim's shadow too)
            # H missed glasses the artist's frame, tint and transparency cues find (no fusion: a
            # missing or unreadable glasses_fusion.json, an H it was not fitted with): reported as drawn
            full[GLASSES] = artist_glasses
            H.add_artist_glasses(attrs, artist_glasses[0], artist_probs)
        return full, attrs, (idx, recent, beard_shape, gender, steady)

    def run(self, state: FrameState) -> None:
        from .. import hair as H

        with state.timer(self.name):
            # video: the stream's cache of retrievals (hair is identity), of this track only: an
            # identity worker's job asked before a new track neither reads nor writes the new one's
            stream = state.stream
            cache = stream.hair if stream is not None and state.timestamp_ms is not None else None
            gen = None if cache is None else stream.generation if state.generation is None else state.generation
            now = state.timestamp_ms
            for i, f in enumerate(state.faces):
                attributes = None
                if self.mode == "retrieval":
                    hit = cache.get(i) if cache is not None else None
                    if hit is not None and hit[3] == gen and 0 <= now - hit[0] < VIDEO_REFRESH_MS:
                        # the hair retrieved for an earlier frame, moved onto this frame's head
                        full, attributes = H.onto_face(hit[1], f.face_params), hit[2]
                        f.hair_ms = hit[0]
                    else:
                        # this track's style so far (a stream's): kept unless another family outnumbers it
                        style = None if cache is None else hit[4] if hit is not None and hit[3] == gen \
                            else (None, None, (None, None), (None, None), None)
                        full, attributes, style = self._retrieve(f.aligned, f.face_params, f.artist_glasses,
                                                                 f.glasses_cues, overlap=stream is None,
                                                                 settings=state.settings, style=style)
                        if cache is not None and gen == stream.generation and not (
                                hit is not None and hit[3] == gen and hit[0] > now):
                            # (not over a later frame's retrieval: a late worker's job for an earlier frame)
                            cache[i] = (now, full, attributes, gen, style)
                        f.hair_ms = None if cache is None else now
                else:
                    if f.artist_params is None:  # (with the artist's own age: no regressor gives one)
                        f.artist_params, f.artist_age = self.artist.fit_with_age(f.aligned)
                    full = f.artist_params
                f.attributes = attributes
                f.hair_params = np.asarray(full[schema.HAIR], np.float32)
                f.accessory_params = np.asarray(full[schema.ACCESSORIES], np.float32)

