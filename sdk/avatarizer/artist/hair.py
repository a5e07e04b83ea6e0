"""Hair: colour, hairstyle family and contours from the photo's hair region."""
from __future__ import annotations

import cv2
import numpy as np

from .. import prior as P
from .. import schema as S
from ..landmarks import (
    FACE_OVAL,
)
from . import accessories
from .geometry import symmetrise
from .photo import (
    clamp,
    Photo,
    cr_closed,
    gain,
    masked,
    norm,
    pixel_centres,
    poly_mask,
    robust_median,
    sample_at,
    to_lab,
)
from .stats import mean, median, percentile


_FACE_OVAL = np.array(FACE_OVAL)


class CentralRng:
    """Stands in for a numpy Generator in the prior's helpers: every draw is
    the distribution's centre, so hairstyle templates are deterministic."""

    def __init__(self, choice=None):
        self._choice = choice

    def normal(self, loc=0.0, scale=1.0, size=None):
        return loc if size is None else np.full(size, loc)

    def uniform(self, low=0.0, high=1.0, size=None):
        v = 0.5 * (low + high)
        return v if size is None else np.full(size, v)

    def random(self, size=None):
        return 0.5 if size is None else np.full(size, 0.5)

    def choice(self, a, p=None):
        return self._choice if self._choice is not None else a[0]



def hair_maps(st, lm, g, photo: Photo, col) -> dict:
    """Hair measurements on a 64-px copy of the crop: colour, the hair
    evidence map and the regions the style decision looks at."""
    n = 64
    small = cv2.resize(photo.rgb, (n, n), interpolation=cv2.INTER_AREA)
    valid = cv2.resize(photo.validf, (n, n), interpolation=cv2.INTER_AREA) > 0.75
    c = pixel_centres(n)
    gx, gy = c[None, :], c[:, None]
    near_head = np.hypot((gx - g["centre_x"]) / 1.1, (gy - g["eye_y"] + 0.1) / 1.2) < 1.0
    if photo.hair is not None:
        seg = cv2.resize(photo.hair, (n, n), interpolation=cv2.INTER_AREA) > 0.5
        # the selfie mask is soft and a little too big: trust its inside
        person = cv2.erode(seg.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)
    else:
        person = np.hypot((gx - g["centre_x"]) / 0.8, (gy - g["eye_y"] + 0.1) / 0.95) < 1.0
    oval = poly_mask(n, lm[_FACE_OVAL])
    head = poly_mask(n, cr_closed(g["face"], 6))
    brow_y = float(min(g["brow_l"]["centre"][:, 1].min(), g["brow_r"]["centre"][:, 1].min()))
    lab = to_lab(small)
    w = np.array([0.5, 1.0, 1.0], np.float32)
    lab_skin = col["skin_lab"]
    d_skin = norm((lab - lab_skin) * w)
    # skin-coloured: the skin's hue and chroma at about its lightness (a bald
    # scalp is often lighter or darker than the cheeks, hair rarely has skin's chroma)
    skinlike = np.hypot(lab[..., 1] - lab_skin[1], lab[..., 2] - lab_skin[2]) / 13.0 \
        + np.abs(lab[..., 0] - lab_skin[0]) / 40.0 < 1.0
    hair = np.array(P.HAIR_COLORS["dark_brown"], np.float32)
    hair_known = False
    # hair colour, first from the band just above the forehead (hair, or a bald scalp)
    y10 = float(lm[10, 1])
    band = (person | oval) & valid & (np.abs(gx - g["centre_x"]) < 0.25) & (gy > y10 - 0.45) & (gy < y10 - 0.12)
    # hair colour from inside the segmentation's hair region (the person above
    # the brows, outside the face oval), never by contrast with the skin: blond
    # and red hair are often close to skin colours. A bald scalp gives skin
    # here; the hairstyle decision then draws no hair. (Known first: the
    # band's colour below is only measured when this one does not replace it.)
    region = person & valid & ~oval & near_head & (gy < brow_y - 0.05)
    from_region = photo.hair is not None and np.count_nonzero(region) >= 12
    top_skin, top_tex = None, 1.0
    if np.count_nonzero(band) >= 10:
        sk_b = skinlike[band]
        top_skin = float(mean(sk_b))
        big = cv2.resize(band.astype(np.uint8), (photo.size, photo.size), interpolation=cv2.INTER_NEAREST)
        top_tex = photo.texture(big.astype(bool))
        if top_skin < 0.6 and not from_region:
            # the farther half from the skin colour: not the skin/hair transition
            cand = masked(small, band)[~sk_b]
            dc = d_skin[band][~sk_b]
            hair = robust_median(cand[dc >= median(dc)], 10, 90)
            hair_known = True
    if from_region:
        hair = robust_median(masked(small, region), 10, 90)
        hair_known = True
    if not hair_known:
        # else two clusters (skin, hair) over the head ring above the eyes
        region = person & valid & ~oval & near_head & (gy < g["eye_y"] + 0.05)
        if top_skin is not None:
            region &= ~band
        px, lpx, ds = masked(small, region), masked(lab, region), d_skin[region]
        if len(px) >= 12:
            far = ds >= max(10.0, float(percentile(ds, 60)))
            if np.count_nonzero(far) < 6:
                far = ds >= percentile(ds, 60)
            hc = median(lpx[far], 0)
            is_h = far
            for _ in range(3):
                dh = norm((lpx - hc) * w)
                is_h = dh < ds
                if np.count_nonzero(is_h) < 6:
                    break
                hc = median(lpx[is_h], 0)
            sel = px[is_h] if np.count_nonzero(is_h) >= 6 else px[far]
            hair = robust_median(sel, 10, 90)
            hair_known = True
    lab_hair = to_lab(hair)
    d_hair = norm((lab - lab_hair) * w)
    hair_skinlike = np.hypot(lab_hair[1] - lab_skin[1], lab_hair[2] - lab_skin[2]) / 13.0 \
        + abs(lab_hair[0] - lab_skin[0]) / 40.0 < 1.0
    # skin-coloured pixels are hair only when the hair itself is skin-coloured
    # (blond, red), and then only when clearly nearer the hair than the skin
    is_hair = (d_hair < d_skin) & (d_hair < 32.0) & ~skinlike if not hair_skinlike else \
        (d_hair < 0.7 * d_skin) & (d_hair < 25.0)
    evidence = person & valid & is_hair & near_head
    fringe = oval & valid & (d_hair < 0.8 * d_skin) & (d_hair < 25.0) & (gy < brow_y - 0.03) \
        & (gy > lm[10, 1] - 0.05)
    hairmap = (evidence & ~oval) | fringe
    # keep only hair that touches the head (drops dark background the soft mask let in)
    count, labels = cv2.connectedComponents(hairmap.astype(np.uint8), connectivity=8)
    if count > 2:
        ring = cv2.dilate(oval.astype(np.uint8), np.ones((7, 7), np.uint8)).astype(bool) | fringe
        keep = np.zeros(count, bool)
        keep[np.unique(labels[ring & hairmap])] = True
        keep[0] = False
        hairmap = keep[labels]
    skull_all = head & ~oval & (gy < brow_y - 0.05)
    skull_valid = float(np.count_nonzero(skull_all & valid)) / max(float(np.count_nonzero(skull_all)), 1.0)
    # the mid-line, from the top of the person down to the brows: hair, then skin
    ys = gy[:, 0]
    cols = np.abs(gx[0] - g["centre_x"]) < 0.15
    if not cols.any():  # the mid-line is off the crop (degenerate landmarks)
        cols[np.argmin(np.abs(gx[0] - g["centre_x"]))] = True
    colv = mean(valid[:, cols], 1) > 0.6
    pf = mean((person | oval)[:, cols], 1) > 0.5
    hair_r = mean(is_hair[:, cols], 1) > 0.5
    skin_r = mean(skinlike[:, cols], 1) > 0.5
    above = ys < brow_y - 0.03
    rows = np.flatnonzero(pf & colv & above)
    top_y, hairline, top_hair, top_known = None, None, 0, False
    if len(rows) >= 3:
        r0 = int(rows[0])
        top_y = float(ys[r0])
        top_known = r0 > 0 and colv[r0 - 1]  # the head's top is inside the photo
        hairline = float(brow_y)
        seen = 0
        for r in range(r0, int(rows[-1]) + 1):
            if hair_r[r]:
                seen += 1
            elif skin_r[r] and seen:
                hairline = float(ys[r]) - 0.5 * (ys[1] - ys[0])
                break
        top_hair = seen
    # cues for the headwear detector: a hat's fabric is flat and uniform where hair has strands
    stats = {"top_tex": float(top_tex), "top_skin": 0.5 if top_skin is None else float(top_skin)}
    if np.count_nonzero(region) >= 12:
        big = cv2.resize(region.astype(np.uint8), (photo.size, photo.size),
                         interpolation=cv2.INTER_NEAREST).astype(bool)
        region_rgb = median(masked(small, region), 0)
        rlab = to_lab(region_rgb)
        hp = photo.highpass[big & photo.valid]
        stats.update(region_dl=float(rlab[0] - lab_skin[0]), region_chroma=float(np.hypot(rlab[1], rlab[2])),
                     region_tex=photo.texture(big),
                     top_flat=float(mean(hp < 0.01)) if len(hp) else 0.0,
                     region_rgb=region_rgb)
    g["hair_stats"] = stats
    g["receding_cues"] = receding_cues(gx, gy, valid, hairmap, g["centre_x"], brow_y, top_skin, len(rows),
                                       top_hair, hairline)
    # the hair beside the face: its colour is drawn under a hat (core), and
    # only measured then (side_rgb)
    side = person & valid & ~oval & (np.abs(gx - g["centre_x"]) > g["half_w"] * 0.85) \
        & (gy > g["eye_y"] - 0.05) & (gy < g["eye_y"] + 0.35)
    g["hair_side_px"] = masked(small, side) if np.count_nonzero(side) >= 8 else None
    return dict(n=n, gx=gx, gy=gy, valid=valid, person=person, oval=oval, head=head, brow_y=brow_y,
                hairmap=hairmap, skull_valid=skull_valid, hair=hair, hair_known=hair_known, small=small,
                fringe=fringe, top_y=top_y, top_known=top_known, hairline=hairline, top_hair=top_hair,
                mid_rows=len(rows), top_skin=top_skin, top_tex=top_tex)


#: boxes of the head's top whose share of hair the receding detector reads (:func:`receding_cues`): (the
#: distance from the mid-line, inner and outer, then the height above the brows' top, low and high; canonical
#: units): the mid-line, the temples (where a hairline recedes first) and the crown above them
RECEDING_BOXES = ((0.0, 0.15, 0.2, 0.6), (0.25, 0.5, 0.2, 0.6), (0.0, 0.5, 0.6, 0.9))
#: the length of :func:`receding_cues` (the toolchain's detectors module reads it)
RECEDING_CUES = 6


def receding_cues(gx, gy, valid, hairmap, cx: float, brow_y: float, top_skin, mid_rows: int, top_hair: int,
                  hairline) -> np.ndarray:
    """(6,) what tells a receding hairline from a full one on the 64-px maps
    of :func:`hair_maps`: the share of the band above the forehead that is
    skin-coloured (``top_skin``, NaN where unmeasured), the hair rows on the
    mid-line above the brows (``top_hair``), the hair's share of each of
    :data:`RECEDING_BOXES` inside the photo (NaN where fewer than 4 of its
    pixels are), and the forehead's height on the mid-line from the brows'
    top to the hairline (0 where the mid-line shows no hair-then-skin
    change, a bare top as a fringe to the brows; NaN where fewer than 3 of
    its rows are in the photo: the detector was fitted so). The receding
    detector (``avatarizer-export detectors``, task ``receding``) reads them;
    on the heads labelled by eye (186 receding) the artist drew 4 receding
    and the hybrid 1 (session 69)."""
    out = [np.nan if top_skin is None else float(top_skin), float(top_hair) if mid_rows >= 3 else np.nan]
    dx = np.abs(gx - cx)
    for x0, x1, y0, y1 in RECEDING_BOXES:
        box = (dx >= x0) & (dx < x1) & (gy >= brow_y - y1) & (gy < brow_y - y0) & valid
        n = np.count_nonzero(box)
        out.append(float(np.count_nonzero(box & hairmap)) / n if n >= 4 else np.nan)
    out.append(np.nan if hairline is None else float(brow_y - hairline))
    return np.array(out, np.float64)


def side_rgb(px: np.ndarray) -> np.ndarray:
    """The colour of the hair beside the face (``g["hair_side_px"]`` of :func:`hair_maps`)."""
    return robust_median(px, 10, 90)


def silhouette_measured(hm) -> bool:
    """Whether the silhouette of :func:`hair_maps` ``hm`` can be measured: at
    least 30% of the skull's region inside the photo and the hair's colour
    known. Without it :func:`hair_style` measures no length or volume and
    :func:`refine_hair` does not run."""
    return hm["skull_valid"] >= 0.3 and hm["hair_known"]


def hair_style(st, lm, g, hm, photo: Photo) -> tuple[str, float, dict]:
    """A hairstyle family of the prior from simple silhouette measurements."""
    gx, gy, H, valid = hm["gx"], hm["gy"], hm["hairmap"], hm["valid"]
    cx, hw = g["centre_x"], g["half_w"]
    info: dict = {}
    if not silhouette_measured(hm):
        return ("short" if hm["hair_known"] or hm["skull_valid"] < 0.3 else "bald"), 0.0, info
    # length: how far down the hair reaches beside the face and neck
    side = (np.abs(gx - cx) > hw * 0.8) & (np.abs(gx - cx) < hw + 0.3) & ~hm["oval"]
    frac = (H & side).sum(1) / np.maximum((side & valid).sum(1), 1)
    okrow = (side & valid).sum(1) >= 3
    ys = gy[:, 0]
    bottom = g["eye_y"]
    # the row walk on Python lists (NumPy compares and adds these float32 /
    # float64 scalars in float64 too; bottom keeps the row's own scalar)
    ys_l, frac_l, ok_l = ys.tolist(), frac.tolist(), okrow.tolist()
    for r in range(hm["n"]):
        if ys_l[r] < g["eye_y"]:
            continue
        if ok_l[r] and frac_l[r] > 0.22:
            bottom = ys[r]
        elif ok_l[r] and ys_l[r] > bottom + 0.07:
            break
    runs_off = bottom >= ys[okrow].max() - 0.05 if okrow.any() else False
    # volume: hair above the skull top and beside the temples
    col_c = np.abs(gx[0] - cx) < 0.12
    if not col_c.any():
        col_c[np.argmin(np.abs(gx[0] - cx))] = True
    top_rows = mean(H[:, col_c], 1) > 0.4
    hair_top = float(ys[np.flatnonzero(top_rows)[0]]) if top_rows.any() else g["top"]
    vol_top = g["top"] - hair_top
    temple = (np.abs(gy - (g["eye_y"] - 0.25)) < 0.08)
    wide = []
    for sgn in (-1, 1):
        band = temple & ((gx - cx) * sgn > 0)
        cols = np.flatnonzero((H & band).any(0))
        if len(cols):
            xs = np.abs(gx[0, cols] - cx)
            wide.append(float(xs.max()) - hw)
    vol_side = float(median(wide)) if wide else 0.0
    # fringe: hair over the forehead inside the face oval
    fore = hm["oval"] & (gy < hm["brow_y"] - 0.03) & (gy > lm[10, 1] - 0.05) & (np.abs(gx - cx) < 0.3) & valid
    fringe = float(np.count_nonzero(hm["fringe"] & fore)) / max(float(np.count_nonzero(fore)), 1.0)
    # texture: curly hair is full of small bright/dark alternations
    tex = hair_texture(photo, hm)
    info.update(bottom=bottom, runs_off=bool(runs_off), vol_top=vol_top, vol_side=vol_side, fringe=fringe,
                tex=tex)
    curly = tex > 0.085 and max(vol_top, vol_side) > 0.2
    volume = clamp(0.5 + 4.0 * max(vol_top, vol_side), 0.4, 2.0)
    info.update(top_hair=hm["top_hair"], hairline=hm["hairline"] if hm["hairline"] is not None else 0.0)
    bald = accessories.bald_evidence(g)  # the fitted detector where there is one, else the hand-set rule
    if bald is not None and bald[0] >= bald[1]:
        style = "bald"
    elif reads_receding(hm):  # (the hand-set rule: bald without a fitted detector, with one receding)
        style = "bald" if bald is None and hm["top_hair"] <= 1 else "receding"
    elif in_bare_top_band(hm, bald):
        style = "bald"
    elif curly and max(vol_top, vol_side) > 0.16 and bottom < 0.45:
        style = "afro"
    elif bottom > 0.62 or runs_off and bottom > 0.4:
        style = "curly" if curly else ("long" if bottom > 0.8 or runs_off else "medium")
    elif bottom > 0.35:
        style = "curly" if curly else "bob"
    elif fringe > 0.45:
        style = "fringe"
    elif max(vol_top, vol_side) < 0.02:
        style = "buzz"
    else:
        style = "short"
    return style, volume, info


#: the family drawn in place of a short one where the tight crops' hair-length
#: network reads the hair long (:func:`network_hair_long`): the silhouette
#: cannot see hair hanging below a crop that ends beside the cheeks and under
#: the chin (UTKFace's chips: the artist drew all 289 long-haired held-out
#: people labelled by eye short, session 47), and on loose portraits it misses
#: hair that hangs beside the face outside the band it measures, or behind the
#: shoulders (57 of 219 held-out long-haired people drawn short, session 48).
#: Bald and receding tops keep theirs (the bald detector's evidence), as do
#: the long families.
LONG_FAMILY = {"short": "long", "fringe": "long", "buzz": "long", "afro": "curly"}
#: ... drawn with at least this volume where the silhouette measured none (the silhouette's volume without
#: measured extra hair: on UTKFace's chips it reads too little of the skull and gives 0, a thin top)
TIGHT_LONG_VOLUME = 0.5


def network_hair_long(st, lm, photo: Photo) -> tuple[float, float, bool] | None:
    """(P(long hair), its long gate, whether the crop is tight) of the tight
    crops' hair-length network (:mod:`avatarizer.hairlength`, the one the
    hybrid reads on tight crops; it reads loose portraits as they are too:
    held-out AUC 0.979 against H's 0.959, ``docs/hair.md``) on the aligned
    crop seen at 128 px. A tight crop (:func:`avatarizer.hair.sides_observed`
    false) is read with ``st.tight_hair_length``, a loose portrait with
    ``st.loose_hair_length``; None where its switch is off, without the
    network's files (or a long gate), or for a reading that is not finite."""
    from .. import hair as HR
    from .. import hairlength

    if not (st.tight_hair_length or st.loose_hair_length):
        return None
    tight = not HR.sides_observed(photo.valid, lm)
    if not (st.tight_hair_length if tight else st.loose_hair_length):
        return None
    net = hairlength.load_tight()
    if net is None or net.gates is None or net.gates[0] is None:
        return None
    p = net.probabilities(photo.network_crop())["hair_long"]
    return (float(p), float(net.gates[0]), tight) if np.isfinite(p) else None


def _age_expert(gray_ratio: float) -> dict:
    """A hair-colour reading that tells nothing but how likely grey is at the
    artist's age (``gray_ratio``, :func:`accessories.artist_gray_ratio`):
    the first expert of :func:`avatarizer.hair.fuse_hair_colour` where the
    artist reads the hair-colour network (H's in the hybrid)."""
    from .. import hair as HR

    return dict(HR.gray_weighted(dict.fromkeys(HR.HAIR_COLOURS, 1.0 / len(HR.HAIR_COLOURS)), gray_ratio))


def hair_colour_network(st, photo: Photo, region_pixels: int) -> dict | None:
    """The hair-colour network's class probabilities on the crop as the
    region networks read it (:mod:`avatarizer.haircolour`, the networks the
    hybrid reads): the portraits' where the hair region covers at least
    :data:`avatarizer.hair.HAIR_CLASS_MIN_AREA` of the crop
    (``region_pixels`` of ``photo``'s), else the tight crops' network,
    tempered to :data:`avatarizer.haircolour.TIGHT_WEIGHT` as the hybrid
    weighs it; None with ``st.hair_colour_network`` off, without the
    network's files, or for a reading that is not finite."""
    if not st.hair_colour_network:
        return None
    from .. import hair as HR
    from .. import haircolour as HC

    tight = HR.too_little_hair(region_pixels, photo.size ** 2)
    net = HC.load_tight() if tight else HC.load()
    if net is None:
        return None
    probs = net.probabilities(photo.network_crop())
    if not all(np.isfinite(v) for v in probs.values()):
        return None
    return HC.tempered(probs, HC.TIGHT_WEIGHT) if tight else probs


def reads_receding(hm) -> bool:
    """Whether the hand-set rule reads a receding hairline (with a fitted
    bald detector): the top of the head skin-coloured and smooth above the
    forehead, or no hair on the mid-line above the brows."""
    if hm["top_skin"] is not None:
        return hm["top_skin"] >= 0.7 and hm["top_tex"] < 0.01
    return hm["top_hair"] <= 1 and hm["mid_rows"] >= 3


def in_bare_top_band(hm, bald) -> bool:
    """Whether a head short of the bald detector's threshold (``bald``: its
    (probability, threshold), or None) is drawn with its top bare: its
    probability reaches the bare-top band's floor
    (:func:`accessories.bare_top_threshold`: most heads this likely bald are
    bald or receding, out of fold) and the hand-set rule reads no receding
    hairline (:func:`reads_receding`; white hair combed back over the top was
    drawn bald before that rule). Bald men with a fringe of hair were drawn a
    skin-coloured cap."""
    if bald is None or bald[0] >= bald[1]:
        return False
    bare = accessories.bare_top_threshold()
    return bare is not None and bald[0] >= bare and not reads_receding(hm)


def hair_texture(photo: Photo, hm) -> float:
    """Relative high-frequency luminance energy inside the hair region."""
    H = cv2.resize(hm["hairmap"].astype(np.uint8), (photo.size, photo.size), interpolation=cv2.INTER_NEAREST)
    H = cv2.erode(H, np.ones((5, 5), np.uint8)).astype(bool)
    if np.count_nonzero(H) < 50:
        return 0.0
    y = photo.luma
    hp = photo.highpass
    e = float(np.sqrt(mean(hp[H] ** 2)))
    return e / (float(mean(y[H])) + 0.08)


def hair(st, p, lm, g, photo: Photo, col):
    from .. import hair as HR  # (here: avatarizer.hair imports the artist)

    hm = hair_maps(st, lm, g, photo, col)
    hair = gain(st, hm["hair"])
    known = photo.hair is not None and hm["hair_known"]
    px = masked(photo.rgb, HR.hair_region(photo.size, photo.hair, lm, photo.valid)) if known \
        else np.zeros((0, 3), np.float32)
    # the hair-colour network's reading, where its files are there: the class drawn is the region's
    # classifier's, the network's and the age's together, as the hybrid's is without H
    net = hair_colour_network(st, photo, len(px))
    if known or net is not None:
        # drawn so that it reads as its likeliest class (blond hair photographs
        # darker than it looks), from the hair region the SDK's hair stage samples
        # (without a colour cast: hair_colour_of_class takes it out first)
        # grey hair is rare on young faces: weighed by the artist's own age estimate (it has no H)
        g["age"] = accessories.age_estimate(lm, photo.resized(accessories.AGE_TEXTURE_SIZE))
        gray_ratio = accessories.artist_gray_ratio(None if g.get("cheeks_covered") else g["age"])
        # (the fusion's first expert, H's in the hybrid: a reading that tells nothing but the artist's own
        # age prior for grey, capped at 1, as without the network; H's prior and its child gate were fitted
        # on H's ages, and a masked adult reads as a child)
        skin_lab = HR.cheek_skin_lab(photo.rgb, lm, photo.valid, masked=bool(g.get("cheeks_covered"))) \
            if known else None
        # (blond and red read as black or brown where the photo shows no hair: the crown out of the frame and
        # what the hair region holds of it the temples' skin, as the hybrid reads it)
        g["hair_unseen"] = photo.hair is not None and HR.hair_unseen(px, photo.size ** 2, skin_lab, lm,
                                                                     photo.valid, photo.size)
        model = None if net is None else (_age_expert(gray_ratio), None, None, None, net,
                                          HR.LIGHT_HAIR if g["hair_unseen"] else ())
        g["hair_colour_network"] = net is not None
        hair, g["hair_colour_probs"] = HR.hair_colour_of_class(
            hair, px, photo.size ** 2, skin_lab=skin_lab, gray_ratio=gray_ratio, model=model)
        if g["hair_unseen"] and g["hair_colour_probs"]:  # (the pixels are skin: the class's colour)
            hair = HR.class_hair_colour(g["hair_colour_probs"])
    else:
        hair = HR.natural_hair_colour(hair)  # without a colour cast
    hair = np.asarray(hair, np.float64)
    col["hair"] = hair
    g["hair_known"] = hm["hair_known"]
    fam, volume, info = hair_style(st, lm, g, hm, photo)
    if fam in LONG_FAMILY:
        read = network_hair_long(st, lm, photo)
        if read is not None:
            info["network_long"], info["network_tight"] = read[0], read[2]
            # (a baby's tight crop stays short, as the hybrid draws it: HR.baby_hair_short)
            baby = read[2] and not g.get("cheeks_covered") and HR.is_baby(g.get("age"))
            if read[0] >= read[1] and baby:
                info["length_by"] = HR.BABY_SHORT_BY
            elif read[0] >= read[1]:
                fam = LONG_FAMILY[fam]
                if read[2] or not silhouette_measured(hm):
                    # a tight crop, or a loose one whose silhouette measured no volume (hair_style); else the
                    # silhouette's measured volume stands
                    volume = max(volume, TIGHT_LONG_VOLUME)
                info["length_by"] = HR.TIGHT_LENGTH_BY
    part = part_side(hm, g)
    back, front, curl, layers = P.hairstyle_contours(p, fam, CentralRng(choice=part),
                                                     volume=volume * st.hair_volume)
    back = back.astype(np.float64)
    front = front.astype(np.float64)
    if silhouette_measured(hm) and fam != "bald":
        # (a bald top is no hair outline: the scalp, coloured like the hair sampled above the brows,
        # was pulled into the hair and drawn as a cap)
        back, front = refine_hair(st, back, front, hm, g)
    if fam in ("curly", "afro", "long_wavy"):
        curl = clamp(curl * (0.5 + 0.5 * min(info.get("tex", 0.0) / 0.2, 1.5)), 0, 1)
    if fam == "bald":
        # hair at the sides of the head? otherwise nothing is drawn
        side = hm["hairmap"] & ~hm["oval"] & (np.abs(hm["gx"] - g["centre_x"]) > g["half_w"] * 0.85) \
            & (hm["gy"] < g["eye_y"] + 0.25) & (hm["gy"] > g["eye_y"] - 0.35)
        layers = 1.0 if np.count_nonzero(side) >= 6 else 0.0
    g["hair_family"], g["hair_info"] = fam, info
    P.put(p, "hair_back", back)
    P.put(p, "hair_front", front)
    symmetrise(p, S.SLICES["hair"], st.hair_symmetry)
    p[S.index("hair_style.curl")] = curl
    p[S.index("hair_style.layers")] = layers
    p[S.index("hair_style.bank_id")] = P.HAIRSTYLES.index(fam)
    p[S.index("hair_style.part_x")] = float(P.pts(p, "hair_front")[0, 0]) if fam == "side_part" else 0.0
    P.set_hair_rgb(p, hair)
    has = layers > 1 and fam not in ("buzz", "bald", "receding")
    fr = P.pts(p, "hair_front")
    top = float(fr[:, 1].min())
    # strand 0 on the parting side, strand 1 opposite (mirror-consistent)
    for i, sgn in ((0, part), (1, -part)):
        hl = np.array([(sgn * 0.05, top + 0.1), (sgn * 0.22, top + 0.16), (sgn * 0.36, top + 0.3)])
        hl[:, 0] += g["centre_x"]
        P.put(p, f"hair_strand{i}", hl)
        p[S.index(f"hair_strand{i}.w0")] = 0.004 if has else 0.0
        p[S.index(f"hair_strand{i}.w1")] = 0.016 if has else 0.0


def part_side(hm, g) -> int:
    """-1 when the forehead's image-left half shows less hair (a parting there), else +1."""
    f = hm["fringe"]
    gx = hm["gx"]
    d = float(np.count_nonzero(f & (gx > g["centre_x"]))) - float(np.count_nonzero(f & (gx < g["centre_x"])))
    return -1 if d > 0 else 1


_RAY_R = np.linspace(0.3, 1.7, 57)  # radii sampled along each ray


def refine_hair(st, back, front, hm, g):
    """Pulls the template's back contour onto the hair outline along rays
    from the head centre, and the front's hairline onto the photo's."""
    back = back.copy()
    front = front.copy()
    c = np.array([g["centre_x"], g["eye_y"] - 0.1])
    H = hm["hairmap"].astype(np.float32)
    V = hm["valid"].astype(np.float32)
    rs = _RAY_R
    ks = np.arange(2, 11)  # 0, 1 and 11 lie behind the shoulders: keep the template
    d = back[ks] - c
    r0 = norm(d)
    u = d / np.maximum(r0, 1e-6)[:, None]
    pts = c + rs[None, :, None] * u[:, None, :]  # (9, R, 2)
    inside = (np.abs(pts) < 0.985).all(-1)
    h = (sample_at(H, pts) > 0.5) & inside
    v = (sample_at(V, pts) > 0.5) & inside
    h &= v
    for i, k in enumerate(ks):
        if not h[i].any():
            continue
        # the outermost hair sample that is connected to the head (gaps up to 3 samples)
        idx = np.flatnonzero(h[i]).tolist()  # Python ints: the walk below costs less
        start = idx[0]
        last = start
        for j in idx[1:]:
            if j - last > 3:
                break
            last = j
        if rs[start] > r0[i] + 0.1:
            continue
        r_meas = rs[last]
        if last + 1 < len(rs) and not v[i, last + 1]:
            r_meas = max(r_meas, r0[i])  # runs off the photo: at least this big
        back[k] = c + (r0[i] + st.hair_fit * (r_meas - r0[i])) * u[i]
    # the hairline at the centre, measured on the mid-line
    if hm["hairline"] is not None and hm["top_hair"] >= 2:
        dy = hm["hairline"] - front[0, 1]
        front[0, 1] += st.hair_fit * dy
        for k in (1, len(front) - 1):
            front[k, 1] += st.hair_fit * dy * 0.8
        for k in (2, len(front) - 2):
            front[k, 1] += st.hair_fit * dy * 0.4
    # the front's crown follows the back's
    m = len(front) // 2
    front[m, 1] = min(front[m, 1], back[6, 1] + 0.03)
    return back, front
