"""``avatarizer-export skin-tone``: adds (or refits) the ``skin_tone`` output
of the shipped attribute regressor H: the skin tone in even daylight on the
Monk Skin Tone scale (1-10), from the labels by eye
(``labels/skin_tone_by_eye.jsonl``, docs/data.md), on H's own int8 features.

Rows: every labelled training photo's crop, its mirror image and
:data:`N_PHOTOMETRIC` photometric variants (:func:`photometric`: exposure
×0.35-2.6 in linear light with clipping, white balance ±18% per channel, a
camera-curve gamma) with the label unchanged, so that the head learns the
tone, not the exposure. Held-out photos (the fixed split) are scored as they
are and under two photometric variants each.

The head is a ridge regression on the whitened principal components of the
standardised features (the other heads' input), samples weighted so that
each Monk step counts alike, the number of components and the L2 weight
chosen by 5-fold CV grouped by photo (balanced MAE), then de-attenuated
(:func:`deattenuation`: the training rows' out-of-fold estimates regressed
on their labels, undone, so that no step is drawn lighter or darker on
average: dark skin was drawn too light); it is appended to the
graph as one Gemm (output ``skin_tone``, ``(batch, 1)``), every other output
left byte for byte (checked). The report (``runs/attributes/skin_tone_<version>.json``)
has the held-out MAE in steps and, through :func:`avatarizer.skintone.skin_by_tone`
(what the SDK draws), the avatar's L* against the label's and against the
measured skin alone, for the runtime's margin, and for each margin tried
on the training photos' out-of-fold estimates how often the avatar lands
more than 15 L* off the label and how far the photo's own skin is moved
(what :data:`avatarizer.skintone.MARGIN` was chosen from until session 32;
since then from the skin-tone network's, :mod:`avatarizer_export.skintonenet`), and ``anchor_L``
(:data:`avatarizer.skintone.ANCHOR_L`, from training photos only); the
file's description keeps them. The file's checksum changes, so run
``avatarizer-export detectors --fusion`` and ``hat-net --fusion`` after it
(as after ``attributes --refit``).
"""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from .attributes import (MODELS, add_head_tool, append_head, check_added_head, head_features, open_for_head,
                         pca_basis, save_added_head, to_input128)
from .paths import cache_dir, optional_shared_dir

N_PHOTOMETRIC = 4
K_GRID = (128, 256, 384)
LAMBDA_GRID = (0.001, 0.003, 0.01, 0.03, 0.1, 0.3)
MARGINS = (4.0, 6.0, 8.0, 10.0, 12.0)
OUTPUT = "skin_tone"


def photometric(crop: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The crop as another exposure and white balance would show it (module docstring)."""
    from avatarizer.artist.photo import linear_to_srgb, srgb_to_linear

    x = srgb_to_linear(crop.astype(np.float32) / 255.0)
    gain = np.exp(rng.uniform(np.log(0.35), np.log(2.6)))
    wb = np.exp(rng.uniform(-0.18, 0.18, 3))
    x = np.clip(x * gain * wb / wb.mean(), 0, 1)
    if rng.random() < 0.5:
        x = x ** np.exp(rng.uniform(-0.25, 0.25))
    return np.clip(linear_to_srgb(x) * 255 + 0.5, 0, 255).astype(np.uint8)


def _rows(al, labels: dict, seed: int = 0):
    """(keys, variant, crops): variant 0 the photo, 1 its mirror, 2.. the
    training photometric variants, 100.. the held-out ones. Each photo's
    variants come from a generator of its own (seeded by its key), so that
    no photo's presence changes another's."""
    import hashlib

    from .data import is_heldout

    keys, variant, crops = [], [], []
    for i, k in enumerate(al.keys):
        if k not in labels:
            continue
        rng = np.random.default_rng([seed, int(hashlib.sha1(k.encode()).hexdigest()[:8], 16)])
        c = np.asarray(al.crops[i])
        held = is_heldout(k)
        extra = ([(1, np.ascontiguousarray(c[:, ::-1]))]
                 + [(2 + v, photometric(c if v % 2 == 0 else c[:, ::-1], rng)) for v in range(N_PHOTOMETRIC)]
                 if not held else [(100 + v, photometric(c, rng)) for v in range(2)])
        for v, x in [(0, c), *extra]:
            keys.append(k)
            variant.append(v)
            crops.append(x)
    return np.array(keys), np.array(variant), crops


def _ridge(Z, y, w, lam):
    zm, ym = (w[:, None] * Z).sum(0) / w.sum(), (w * y).sum() / w.sum()
    Zc = Z - zm
    A = (Zc * w[:, None]).T @ Zc + lam * w.sum() * np.eye(Z.shape[1])
    beta = np.linalg.solve(A, (Zc * w[:, None]).T @ (y - ym))
    return beta, float(ym - zm @ beta)


def _step(y):
    """Monk steps rounded half up (2.5 -> 3) and pooled into 2..8 (1, 9 and 10 are rare)."""
    return np.clip(np.floor(np.asarray(y) + 0.5), 2, 8).astype(int)


def _step_weights(y, train) -> np.ndarray:
    """Each row's weight so that every Monk step of the ``train`` rows counts
    alike: 1 / the number of training rows at its step (:func:`_step`)."""
    step = _step(y)
    count = np.bincount(step[train], minlength=11).astype(np.float64)
    return 1.0 / np.maximum(count[step], 1.0)


def _balanced_mae(pred, y) -> float:
    step = _step(y)
    return float(np.mean([np.abs(pred - y)[step == s].mean() for s in np.unique(step)]))


def fit_head(X: np.ndarray, y: np.ndarray, photo: np.ndarray, train: np.ndarray, seed: int = 0, log=print):
    """(W (features,), b, k, lambda, out-of-fold predictions of the training
    rows): the CV-chosen balanced ridge regression of ``y`` on ``X``'s
    whitened principal components (module docstring)."""
    weight = _step_weights(y, train)
    V, sc = pca_basis(X[train], q=max(K_GRID))
    V = V / sc
    Z = X @ V
    uniq = np.unique(photo[train])
    fold_of = dict(zip(uniq, np.random.default_rng(seed).integers(0, 5, len(uniq))))
    fold = np.array([fold_of.get(p, -1) for p in photo])
    best = None
    for k in K_GRID:
        for lam in LAMBDA_GRID:
            oof = np.full(len(y), np.nan)
            for f in range(5):
                a, b = train & (fold != f), train & (fold == f)
                beta, c = _ridge(Z[a, :k], y[a], weight[a], lam)
                oof[b] = Z[b, :k] @ beta + c
            score = _balanced_mae(oof[train], y[train])
            if best is None or score < best[0]:
                best = (score, k, lam, oof)
    score, k, lam, oof = best
    log(f"skin tone: CV balanced MAE {score:.3f} steps at k={k}, lambda={lam}")
    beta, c = _ridge(Z[train, :k], y[train], weight[train], lam)
    return (V[:, :k] @ beta).astype(np.float32), np.float32(c), k, lam, oof


def deattenuation(oof: np.ndarray, y: np.ndarray, train: np.ndarray) -> tuple[float, float]:
    """(intercept, slope) of the training rows' out-of-fold estimates
    regressed on their labels, each Monk step weighted alike: the ridge's
    estimates regress toward the middle of the scale (out of fold, +0.8
    steps at step 2, -0.9 at step 8: dark skin drawn lighter, light skin
    darker), and ``(estimate - intercept) / slope`` undoes that on average
    at every step (the head is refitted so, :func:`fit`)."""
    w = np.sqrt(_step_weights(y, train)[train])
    A = np.stack([np.ones(int(train.sum())), y[train]], 1) * w[:, None]
    intercept, slope = np.linalg.lstsq(A, oof[train] * w, rcond=None)[0]
    if not (np.isfinite(slope) and 0.2 <= slope <= 1.5):
        raise ValueError(f"skin tone: out-of-fold estimates against labels have slope {slope:.3f}: "
                         "not a head to de-attenuate")
    return float(intercept), float(slope)


def step_bias(pred: np.ndarray, y: np.ndarray) -> dict:
    """Mean estimate - label per Monk step (rounded and pooled as :func:`_step`)."""
    step = _step(y)
    return {str(int(k)): round(float((pred - y)[step == k].mean()), 3) for k in np.unique(step)}


def _avatar_error(measured_rgb: np.ndarray, tone_pred: np.ndarray, label: np.ndarray, margin: float | None):
    """(|avatar L* - the label's L*|, |avatar L* - measured L*|) per photo,
    the avatar drawn from the measured skin alone (``margin`` None) or
    through ``skin_by_tone`` with that margin."""
    from avatarizer.artist.photo import to_lab
    from avatarizer.skintone import lightness_of_tone, skin_by_tone

    to_label, moved = [], []
    for rgb, t, y in zip(measured_rgb, tone_pred, label):
        drawn = rgb if margin is None else skin_by_tone(rgb, float(t), margin)
        L = float(to_lab(drawn)[0])
        to_label.append(abs(L - float(lightness_of_tone(y))))
        moved.append(abs(L - float(to_lab(rgb)[0])))
    return np.array(to_label), np.array(moved)


def _margin_row(errors) -> dict:
    to_label, moved = errors
    return {"over_15_vs_label": round(float((to_label > 15).mean()), 4),
            "median_dL_vs_label": round(float(np.median(to_label)), 2),
            "moved_median": round(float(np.median(moved)), 2), "moved_over_6": round(float((moved > 6).mean()), 4)}


def dl_summary(err: np.ndarray) -> dict:
    """|ΔL*| per photo summarised: n, median, mean, share over 10 and over 15 L*."""
    return {"n": int(len(err)), "median_dL": round(float(np.median(err)), 2), "mean_dL": round(float(err.mean()), 2),
            "over_10": round(float((err > 10).mean()), 4), "over_15": round(float((err > 15).mean()), 4)}


#: Monk bands of H's skin tone estimate over which the hair colour prior is taken
TONE_BANDS = (3.25, 5.25)
#: each band's colour shares are smoothed toward the overall ones by this many photos
TONE_PRIOR_SMOOTHING = 10.0


def hair_colour_labels(shared: Path | None) -> dict[str, int]:
    """``{"FOLDER/NAME": hair colour index}`` (``avatarizer.hair.HAIR_COLOURS``):
    the shared labels of ``ffhq128-labelled`` (bald and unknown hair left
    out; none without ``shared``) and the labels by eye, which win where
    both have one."""
    from .data import eye_labels
    from .detectors import labels_of

    out = {}
    path = None if shared is None else Path(shared) / "data" / "faces" / "ffhq128-labelled" / "attributes.jsonl"
    if path is not None and path.is_file():
        out = {f"ffhq128-labelled/{n}": int(v["hair_colour"]) for n, v in labels_of(path).items()
               if v["hair_colour"] >= 0}
    out.update({k: int(v["hair_colour"]) for k, v in eye_labels().items()
                if isinstance(v.get("hair_colour"), int) and v["hair_colour"] >= 0})
    return out


def hair_tone_prior(colours: np.ndarray, tones: np.ndarray) -> dict | None:
    """P(hair colour | band of H's skin tone estimate) / P(hair colour) over
    training photos (``colours`` their labelled indices, ``tones`` H's
    estimates of them), each band's shares smoothed toward the overall ones
    by :data:`TONE_PRIOR_SMOOTHING` photos: what the SDK weighs the hair
    colour classes by (``avatarizer.hair.tone_colour_ratios``). Against H's
    own estimates, not the labelled tones, so that the estimate's errors are
    in the prior (a tanned blond estimated darker). None with fewer than
    100 photos."""
    from avatarizer.hair import HAIR_COLOURS

    y, t = np.asarray(colours, np.int64), np.asarray(tones, np.float64)
    if len(y) < 100:
        return None
    k = len(HAIR_COLOURS)
    band = np.searchsorted(np.asarray(TONE_BANDS), t, side="right")
    overall = np.bincount(y, minlength=k) / len(y)
    ratios, counts = [], []
    for b in range(len(TONE_BANDS) + 1):
        m = band == b
        share = (np.bincount(y[m], minlength=k) + TONE_PRIOR_SMOOTHING * overall) / (m.sum() + TONE_PRIOR_SMOOTHING)
        # (a class no photo has: no evidence either way, ratio 1, not 0)
        ratios.append([round(float(v), 4) for v in np.where(overall > 0, share / np.maximum(overall, 1e-9), 1.0)])
        counts.append(int(m.sum()))
    return {"bins": list(TONE_BANDS), "classes": list(HAIR_COLOURS), "ratios": ratios, "photos": counts,
            "against": "H's own skin tone estimates of the training photos labelled for hair colour"}


#: the batches of skin tones by eye labelled after H's skin-tone head, ``ANCHOR_L`` and
#: ``WELL_LIT_SKIN_LAB`` were fitted (session 35, docs/data.md): only the skin-tone network
#: (:mod:`avatarizer_export.skintonenet`) reads them, so that ``make models`` refits H's head on
#: the labels it shipped with and reports the constants the runtime holds
#: (``tests/test_skintone.py`` compares them); refitting H on them is a change of its own
NETWORK_ONLY_BATCHES = ("skin_tone_4", "skin_tone_5")


def h_labels() -> dict[str, float]:
    """The skin tones by eye H's head is fitted on: those of
    :func:`avatarizer_export.data.skin_tone_labels` but the photos of
    :data:`NETWORK_ONLY_BATCHES`."""
    from . import data
    from .eyelabels import load_batch

    later = {key for b in NETWORK_ONLY_BATCHES for sheet in load_batch(b)["sheets"] for key in sheet}
    return {k: v for k, v in data.skin_tone_labels().items() if k not in later}


def fit(cache: Path | None = None, folder: Path = MODELS, version: str | None = None, log=print,
        shared: Path | None = None) -> dict:
    """Fits the head, writes it into ``folder``'s H file and its manifest
    entry, and returns the report (module docstring)."""
    from .data import is_heldout, load_aligned

    t0 = time.time()
    # (the shared labels join the hair colour prior's, where ../shared or --shared is there)
    where = optional_shared_dir(shared, log, "skin tone: the hair colour prior by skin tone is fitted on the "
                                             "labels by eye only")
    labels = h_labels()
    if not labels:
        raise SystemExit("no skin tone labels (labels/skin_tone_by_eye.jsonl): run `avatarizer-export labels merge`")
    al = load_aligned(cache_dir(cache))
    path, model, desc, others, feat, sess, opts = open_for_head(folder, OUTPUT)
    keys, variant, crops = _rows(al, labels)
    X = head_features(sess, feat, crops, desc="skin tone features")
    held = np.array([is_heldout(k) for k in keys])
    y = np.array([labels[k] for k in keys])
    W, b, k, lam, oof = fit_head(X, y, keys, ~held, log=log)
    raw = (X @ W + b).astype(np.float64)
    intercept, slope = deattenuation(oof, y, ~held)
    log(f"skin tone: de-attenuated, (estimate - {intercept:.3f}) / {slope:.3f}")
    W, b = (W / slope).astype(np.float32), np.float32((b - intercept) / slope)
    oof_raw, oof = oof, (oof - intercept) / slope
    pred = (X @ W + b).astype(np.float64)
    # the hair colour classes by skin tone, against this head's estimates of the training photos with a hair colour
    hc = hair_colour_labels(where)
    rows = [i for i, key in enumerate(al.keys) if key in hc and not is_heldout(key)]
    tone_prior = None
    if rows:
        est = head_features(sess, feat, [np.asarray(al.crops[i]) for i in rows], desc="hair colour photos") @ W + b
        tone_prior = hair_tone_prior([hc[al.keys[i]] for i in rows], est)
    append_head(model, feat, OUTPUT, W, b)  # one Gemm on the standardised features
    # every other output unchanged, and the Gemm gives what the fit predicts
    orig = np.flatnonzero(held & (variant == 0))
    check_added_head(path, model, others, opts, to_input128(np.stack([crops[i] for i in orig])).numpy(), OUTPUT,
                     pred[orig], "skin tone")
    # what the SDK draws: the artist's measured skin moved into the band around the estimate
    idx = {key: i for i, key in enumerate(al.keys)}
    first = np.flatnonzero(variant == 0)
    # measured once without the chroma band (what WELL_LIT_SKIN_LAB and WELL_LIT_CHROMA are read from), the
    # band then applied as the artist's last step does (ArtistStyle.skin_chroma_lit)
    from avatarizer.artist import ArtistStyle
    from avatarizer.skintone import chroma_in_good_light

    style = ArtistStyle()
    by_row = measured_skin(al, [idx[keys[j]] for j in first], style=style.replace(skin_chroma_lit=None))
    unbanded = {j: by_row[idx[keys[j]]] for j in first if idx[keys[j]] in by_row}
    measured = {j: np.clip(chroma_in_good_light(c, style.skin_chroma_lit), 0.0, 1.0) for j, c in unbanded.items()}
    rows_train = np.array([j for j in first if not held[j] and j in measured])
    rows_held = np.array([j for j in first if held[j] and j in measured])
    if not len(rows_train) or not len(rows_held):
        raise ValueError("skin tone: the artist measured no skin on the training or on the held-out photos")
    rgb_t, rgb_h = np.stack([measured[j] for j in rows_train]), np.stack([measured[j] for j in rows_held])
    unbanded_t = np.stack([unbanded[j] for j in rows_train])
    from avatarizer.artist.photo import to_lab
    from avatarizer.skintone import MARGIN

    # avatarizer.skintone.ANCHOR_L: the measured skin of the training photos both labellers called step 2
    two = [j for j in rows_train if y[j] == 2.0]
    anchor = round(float(np.median([to_lab(measured[j])[0] for j in two])), 1) if two else None

    margins = {("measured" if m is None else str(m)): _margin_row(_avatar_error(rgb_t, oof[rows_train], y[rows_train], m))
               for m in (None, *MARGINS)}
    steps = lambda rows: {"n": int(len(rows)), "mae_steps": round(float(np.abs(pred[rows] - y[rows]).mean()), 3),
                          "off_2_steps": round(float((np.abs(pred[rows] - y[rows]) >= 2).mean()), 4)}
    report = {
        "labels": len(labels), "train_photos": int(len(np.unique(keys[~held]))),
        "held_out_photos": int(len(orig)), "k": k, "lambda": lam,
        "heldout": steps(orig), "heldout_exposure_variants": steps(np.flatnonzero(held & (variant >= 100))),
        "deattenuation": {"intercept": round(intercept, 4), "slope": round(slope, 4),
                          "bias_by_step_oof": {"before": step_bias(oof_raw[~held], y[~held]),
                                               "after": step_bias(oof[~held], y[~held])},
                          "bias_by_step_heldout": {"before": step_bias(raw[orig], y[orig]),
                                                   "after": step_bias(pred[orig], y[orig])},
                          "heldout_before": {"mae_steps": round(float(np.abs(raw[orig] - y[orig]).mean()), 3)}},
        "oof_by_margin": margins, "margin": MARGIN, "anchor_L": anchor, "anchor_photos": len(two),
        "well_lit_skin_lab": well_lit_skin_lab(unbanded_t, y[rows_train]),
        "well_lit_chroma": well_lit_chroma(unbanded_t, y[rows_train]),
        "avatar_vs_label_heldout": {"measured_skin": dl_summary(_avatar_error(rgb_h, pred[rows_held], y[rows_held],
                                                                              None)[0]),
                                    "skin_by_tone": dl_summary(_avatar_error(rgb_h, pred[rows_held], y[rows_held],
                                                                           MARGIN)[0])},
    }
    # description, version, manifest (the int8 network's gate is carried from the source)
    report["hair_colour_by_tone"] = tone_prior
    record = {"scale": "Monk Skin Tone scale, 1 lightest .. 10 darkest, in even daylight",
              **({"hair_colour_by_tone": tone_prior} if tone_prior is not None else {}),
              "labels": "labels/skin_tone_by_eye.jsonl (by eye, docs/data.md)",
              **{key: report[key] for key in ("train_photos", "k", "lambda", "heldout", "heldout_exposure_variants",
                                              "deattenuation",
                                              "anchor_L", "anchor_photos", "well_lit_skin_lab", "well_lit_chroma",
                                              "margin",
                                              "oof_by_margin",
                                              "avatar_vs_label_heldout")}}
    return save_added_head(model, desc, path, folder, OUTPUT, "Monk 1..10", record,
                           "labels by eye for skin tone (avatarizer_export/labels/skin_tone_by_eye.jsonl, docs/data.md)",
                           version, report, t0, log)


def measured_skin(al, rows, style=None, progress: bool = True) -> dict[int, np.ndarray]:
    """``{row: sRGB in [0, 1]}``: the artist's measured skin (what the SDK
    then moves by :func:`avatarizer.skintone.skin_by_tone`) of the aligned
    photos ``rows`` of ``al`` (indices of ``al.keys``); photos where it
    measures none are left out. ``style``: the artist's
    :class:`~avatarizer.artist.ArtistStyle` (default the SDK's);
    ``progress``: a progress bar."""
    from tqdm import tqdm

    from avatarizer.artist import AutoArtist

    artist, out = AutoArtist(style), {}
    for i in tqdm(rows, desc="measured skin", unit="photo", disable=not progress):
        _, skin = artist.fit_geometry_skin(al.landmarks[i], np.asarray(al.crops[i]), landmarks3d=al.landmarks3d[i])
        if skin is not None:
            out[i] = skin
    return out


#: :func:`well_lit_skin_lab`'s lightness bins: centres, half width, fewest photos
WELL_LIT_CENTRES = tuple(float(c) for c in range(40, 95, 5))
WELL_LIT_HALF = 5.0
WELL_LIT_MIN_PHOTOS = 20
#: a photo is "exposed as labelled" when its measured L* is within this of its label's lightness (the
#: band :data:`avatarizer.skintone.WELL_LIT_SKIN_LAB` was measured with, session 18; the drawing's own
#: band, :data:`avatarizer.skintone.MARGIN`, has been narrower since)
WELL_LIT_MARGIN = 8.0


def well_lit_skin_lab(rgb: np.ndarray, tone: np.ndarray, margin: float | None = None) -> list[list[float]]:
    """``[[L*, a*, b*], ...]``: the median a* and b* of measured skin
    ``rgb`` ((n, 3) sRGB in [0, 1]) by lightness, over the photos whose
    measured L* is within ``margin`` (default
    :data:`WELL_LIT_MARGIN`) of the lightness of their labelled
    Monk step ``tone`` (photos the camera exposed as the labellers saw the
    skin: the colour of skin in good light at each lightness), in bins
    :data:`WELL_LIT_CENTRES` ± :data:`WELL_LIT_HALF` with at least
    :data:`WELL_LIT_MIN_PHOTOS` photos (:data:`avatarizer.skintone.WELL_LIT_SKIN_LAB`)."""
    from avatarizer.artist.photo import to_lab
    from avatarizer.skintone import lightness_of_tone

    lab = np.array([to_lab(np.asarray(c, np.float64)) for c in rgb]).reshape(-1, 3)
    tone = np.asarray(tone, np.float64).reshape(-1)
    well = np.abs(lab[:, 0] - lightness_of_tone(tone)) <= (WELL_LIT_MARGIN if margin is None else margin)
    out = []
    for c in WELL_LIT_CENTRES:
        s = well & (np.abs(lab[:, 0] - c) <= WELL_LIT_HALF)
        if s.sum() >= WELL_LIT_MIN_PHOTOS:
            out.append([c, round(float(np.median(lab[s, 1])), 1), round(float(np.median(lab[s, 2])), 1)])
    return out


#: :func:`well_lit_chroma`'s percentiles: the central 95% of photos exposed as labelled
WELL_LIT_CHROMA_PERCENTILES = (2.5, 97.5)


def well_lit_chroma(rgb: np.ndarray, tone: np.ndarray, margin: float | None = None) -> list[float]:
    """``[lowest, highest]``: the :data:`WELL_LIT_CHROMA_PERCENTILES` of the
    CIELAB chroma of measured skin ``rgb`` ((n, 3) sRGB in [0, 1], measured
    without the band itself: ``ArtistStyle.skin_chroma_lit`` None) as a
    fraction of the chroma of skin in good light at its lightness
    (:func:`avatarizer.skintone.well_lit_ab`), over the photos whose measured L* is within
    ``margin`` (default :data:`WELL_LIT_MARGIN`) of the lightness of their
    labelled Monk step ``tone`` (:data:`avatarizer.skintone.WELL_LIT_CHROMA`);
    [] without such photos."""
    from avatarizer.artist.photo import to_lab
    from avatarizer.skintone import lightness_of_tone, well_lit_ab

    lab = np.array([to_lab(np.asarray(c, np.float64)) for c in rgb]).reshape(-1, 3)
    tone = np.asarray(tone, np.float64).reshape(-1)
    well = np.abs(lab[:, 0] - lightness_of_tone(tone)) <= (WELL_LIT_MARGIN if margin is None else margin)
    if not well.any():
        return []
    lit = np.array([np.hypot(*well_lit_ab(L)) for L in lab[well, 0]])
    ratio = np.hypot(lab[well, 1], lab[well, 2]) / np.maximum(lit, 1e-9)
    return [round(float(v), 2) for v in np.percentile(ratio, WELL_LIT_CHROMA_PERCENTILES)]


def add_parser(sub):
    add_head_tool(sub, "skin-tone", "add or refit H's skin tone output from the labels by eye", fit,
                  shared="the shared folder (default $AVATARIZER_SHARED or ../shared): its ffhq128-labelled hair "
                         "colours join the labels by eye in the hair colour prior by skin tone")
