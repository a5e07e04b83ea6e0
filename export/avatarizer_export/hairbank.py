"""The hairstyle bank: build, tune, evaluate, and the contact sheet.

``avatarizer-export hairbank [build|tune|evaluate|sheet|all]`` (default
``all``; needs ``cache/aligned``, ``cache/pairs`` and the attribute
regressor's predictions from ``avatarizer-export attributes``):

``build``     the artist's hair fits of the *training* photos (original rows
              of ``cache/pairs``; never a held-out photo) → normalised
              geometry (hair_back + hair_front points in the head frame,
              curl, layers) → k-means per hairstyle family (numpy, seed 0,
              k-means++), the medoid of each cluster kept (a real fitted
              hairstyle), near-duplicates merged, until at least 470 distinct
              entries remain (refused, nothing written, where they do not;
              pairs of another aligned set refused). Writes ``sdk/avatarizer/data/hair_bank.npz``
              and ``hair_bank.json`` (version, sha256, count, descriptor
              definition, coverage by family).
``tune``      mean hair-silhouette IoU of a grid of retrieval weights and k on
              400 *training* photos left out of a tuning bank; recorded in
              ``out/hair/tune.json`` and ``hair_bank.json`` (the defaults in
              ``avatarizer.hair`` were set from it, see ``docs/hair.md``).
``evaluate``  hair-silhouette IoU on the held-out photos for retrieval, the
              most common hairstyle, a random entry and the artist's own fit;
              search timing. Writes ``out/hair/eval.json``.
``sheet``     ``docs/hair_sheet.png``: 48 held-out photos and their avatars
              (the artist's fits ``evaluate`` saved, where made by the same
              artist from the same aligned set, ``out/hair/heldout_artist.npz``).

Photo-side definitions (shared with run time): :mod:`avatarizer.hair`.
"""
from __future__ import annotations

import hashlib
import json
import time
import zipfile
from pathlib import Path

import numpy as np

from avatarizer import hair as HR
from avatarizer import prior as P
from avatarizer import schema as S

from .onnx_util import staged
from .paths import ROOT, cache_dir, shared_dir

DATA = ROOT / "sdk" / "avatarizer" / "data"
OUT = ROOT / "out" / "hair"
MIN_ENTRIES = 470
SEED = 0
_FAMILY_IDX = {f: i for i, f in enumerate(HR.FAMILIES)}
_ARTIST_FAMILY = {i: f for i, f in enumerate(P.HAIRSTYLES)}
_BACK = S.FEATURES["hair_back"].points
_FRONT = S.FEATURES["hair_front"].points
_GEO_POS = {int(g): j for j, g in enumerate(HR.GEOMETRY_INDEX)}


# ------------------------------------------------------------------ members


def frame_shapes(keys: list[str], shared: Path, pad: np.ndarray) -> np.ndarray:
    """(N, 2) height, width of each (padded) source photo."""
    from PIL import Image

    out = np.zeros((len(keys), 2), np.int64)
    cache: dict = {}
    for i, k in enumerate(keys):
        folder = k.split("/", 1)[0]
        if folder in ("ffhq128", "ffhq128-labelled", "stylegan128") and folder in cache:
            h, w = cache[folder]
        else:
            with Image.open(shared / "data" / "faces" / k) as im:
                w, h = im.size
            if folder != "utkface200":
                cache[folder] = (h, w)
        out[i] = (h + 2 * pad[i], w + 2 * pad[i])
    return out


def valid_of(al, i: int, shapes: np.ndarray) -> np.ndarray:
    from .data import valid_mask

    return valid_mask(al.transforms[i], tuple(shapes[i]))


def descriptors(al, rows: np.ndarray, shapes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    d = np.zeros((len(rows), HR.N_RAYS + 1), np.float32)
    o = np.zeros((len(rows), HR.N_RAYS + 1), bool)
    for j, i in enumerate(rows):
        d[j], o[j] = HR.shape_descriptor(al.hair[i], al.landmarks[i], valid_of(al, i, shapes))
    return d, o


def family_of(p: np.ndarray, headwear: float, male: float) -> str:
    """Coverage family of one fitted hairstyle: the artist's family, refined
    into parted (asymmetric front hairline), tied up (a tight short
    silhouette on a woman: hair pulled back) and covered by headwear."""
    if headwear >= 0.5:
        return "headwear"
    fam = _ARTIST_FAMILY[int(round(p[S.index("hair_style.bank_id")]))]
    fam = {"side_part": "parted", "long_wavy": "long", "bun": "tied_up"}.get(fam, fam)
    cx, top, hw = HR.head_frame(p)
    fr = S.points(p, "hair_front").astype(np.float64)
    asym = abs(fr[1, 1] - fr[9, 1]) / hw + abs(fr[0, 0] - cx) / hw
    if fam in ("short", "medium", "long", "bob") and asym > 0.12:
        return "parted"
    if fam in ("short", "buzz") and male < 0.5:
        return "tied_up"
    return fam


def cluster_features(geo: np.ndarray) -> np.ndarray:
    """What k-means sees: the head-frame points of hair_back and hair_front,
    curl (×0.5) and layers (×0.5)."""
    cols = [_GEO_POS[i] for i in range(_BACK.start, _BACK.stop)] + \
           [_GEO_POS[i] for i in range(_FRONT.start, _FRONT.stop)]
    curl = geo[:, _GEO_POS[S.index("hair_style.curl")]]
    layers = geo[:, _GEO_POS[S.index("hair_style.layers")]]
    return np.concatenate([geo[:, cols], 0.5 * curl[:, None], 0.5 * layers[:, None]], 1).astype(np.float64)


def predicted_attributes(pred: dict, rows) -> np.ndarray:
    """The retrieval attributes the regressor H predicts for aligned photos
    ``rows``: the same space a query lives in (H's outputs), so entries and
    queries are compared like with like."""
    out = []
    for name in HR.RETRIEVAL_ATTRIBUTES:
        if name in HR.BINARY_ATTRIBUTES:
            out.append(pred["binary"][rows, HR.BINARY_ATTRIBUTES.index(name)])
        else:
            out.append(np.clip(pred["regress"][rows, HR.REGRESSED_ATTRIBUTES.index(name)], 0, 1))
    return np.stack(out, 1).astype(np.float32)


def load_members(cache: Path, shared: Path, exclude_keys: set | None = None, log=print,
                 models: Path | None = None) -> dict:
    """The training photos' hair fits with everything the bank needs (with
    the predictions of the H in ``models``, default the shipped one)."""
    from .data import is_heldout, load_aligned

    al = load_aligned(cache)
    params, source, augs = _pairs_of(cache, al)
    orig = np.flatnonzero([a == "original" for a in augs])
    rows = source[orig].astype(np.int64)
    keep = np.array([not is_heldout(al.keys[i]) for i in rows], bool)
    if not keep.all():  # (was an assert: a traceback, and nothing under python -O)
        raise ValueError(f"{Path(cache) / 'pairs'} holds {int((~keep).sum())} held-out photos: the bank is built "
                         "from training photos only (rebuild them: `avatarizer-export data pairs`)")
    if exclude_keys:
        keep &= np.array([al.keys[i] not in exclude_keys for i in rows])
    orig, rows = orig[keep], rows[keep]
    params = params[orig]
    shapes = frame_shapes(al.keys, shared, al.pad)
    t0 = time.time()
    desc, obs = descriptors(al, rows, shapes)
    log(f"hairbank: descriptors of {len(rows)} training photos in {time.time() - t0:.0f} s")
    pred = _predictions_of(al, models)
    headwear = pred["binary"][rows, HR.BINARY_ATTRIBUTES.index("headwear")]
    male = pred["binary"][rows, HR.BINARY_ATTRIBUTES.index("male")]
    attrs = predicted_attributes(pred, rows)
    artist_attrs = np.stack([HR.hair_attributes_from_params(p) for p in params])
    geo = np.stack([HR.hair_to_head_frame(p) for p in params])
    fam = np.array([_FAMILY_IDX[family_of(p, h, m)] for p, h, m in zip(params, headwear, male)])
    # the hair must be visible: most of the silhouette observed (drops UTKFace's tight crops)
    seen = obs[:, :HR.N_RAYS].mean(1) >= 0.5
    return dict(al=al, rows=rows, params=params, desc=desc, obs=obs, attrs=attrs, artist_attrs=artist_attrs,
                geo=geo, family=fam,
                seen=seen, shapes=shapes, keys=[al.keys[i] for i in rows])


def _pairs_of(cache: Path, al):
    """``cache/pairs``' parameters, aligned rows and augmentations, refused
    (``ValueError``) where they were made from another aligned set than
    ``al`` (their rows index it)."""
    from .data import load_pairs, stage_key

    _, params, source, augs = load_pairs(cache)
    meta = json.loads((Path(cache) / "pairs" / "meta.json").read_text())
    made_from = (meta.get("inputs") or {}).get("aligned") if isinstance(meta, dict) else None
    if made_from != stage_key(cache, "aligned") or (len(source) and int(source.max()) >= len(al.keys)):
        raise ValueError(f"{Path(cache) / 'pairs'} was made from another aligned set than {Path(cache) / 'aligned'}: "
                         "rebuild them (`avatarizer-export data pairs`)")
    return params, source, augs


def _predictions_of(al, models: Path | None = None) -> dict:
    """The predictions of the H in ``models`` for the aligned set ``al``,
    refused where they are another set's (their rows would be other photos)."""
    from .attributes import load_predictions

    pred = load_predictions(models)
    if list(pred["keys"]) != list(al.keys):
        raise ValueError("attribute predictions are for another aligned set: rerun `avatarizer-export attributes`")
    return pred


# ------------------------------------------------------------------ k-means


def kmeans(X: np.ndarray, k: int, seed: int = SEED, iters: int = 40) -> tuple[np.ndarray, np.ndarray]:
    """Lloyd's k-means with k-means++ seeding (numpy, deterministic by seed)."""
    rng = np.random.default_rng(seed)
    n = len(X)
    k = min(k, n)
    cent = np.empty((k, X.shape[1]))
    cent[0] = X[rng.integers(n)]
    d2 = ((X - cent[0]) ** 2).sum(1)
    for j in range(1, k):
        tot = d2.sum()
        i = int(rng.choice(n, p=d2 / tot)) if tot > 0 else int(rng.integers(n))
        cent[j] = X[i]
        d2 = np.minimum(d2, ((X - cent[j]) ** 2).sum(1))
    xx = (X ** 2).sum(1)[:, None]
    lab = np.zeros(n, np.int64)
    for it in range(iters):
        dist = xx - 2 * X @ cent.T + (cent ** 2).sum(1)[None]
        new = dist.argmin(1)
        if it and np.array_equal(new, lab):
            break
        lab = new
        for j in range(k):
            m = lab == j
            if m.any():
                cent[j] = X[m].mean(0)
            else:  # an empty cluster takes the worst-fitting point
                far = int(np.argmax(dist[np.arange(n), lab]))
                cent[j] = X[far]
                lab[far] = j
    return lab, cent


def _alloc(counts: dict, total: int) -> dict:
    """Clusters per family: proportional to sqrt(count), at least 6 (or all)."""
    s = {f: np.sqrt(c) for f, c in counts.items() if c}
    z = sum(s.values())
    return {f: int(min(counts[f], max(6, round(total * v / z)))) for f, v in s.items()}


def cluster_bank(m: dict, total: int = 560, dedup: float = 0.03, seed: int = SEED, log=print,
                 min_entries: int = MIN_ENTRIES) -> dict:
    """k-means per family, medoids, near-duplicate merging; grows ``total``
    until at least ``min_entries`` (:data:`MIN_ENTRIES`) distinct entries
    remain, and refuses (``ValueError``) a bank that stays below it (too few
    or too alike training photos: a bank a user did not ask for)."""
    use = np.flatnonzero(m["seen"])
    X_all = cluster_features(m["geo"])
    for attempt in range(6):
        counts = {f: int((m["family"][use] == _FAMILY_IDX[f]).sum()) for f in HR.FAMILIES}
        alloc = _alloc(counts, total)
        members: list[np.ndarray] = []
        medoids: list[int] = []
        for f, k in alloc.items():
            idx = use[m["family"][use] == _FAMILY_IDX[f]]
            X = X_all[idx]
            lab, cent = kmeans(X, k, seed=seed + _FAMILY_IDX[f])
            for j in range(cent.shape[0]):
                mem = idx[lab == j]
                if len(mem) == 0:
                    continue
                d = ((X_all[mem] - cent[j]) ** 2).sum(1)
                medoids.append(int(mem[np.lexsort((mem, d))[0]]))
                members.append(mem)
        # merge near-duplicates (same family, RMS point distance < dedup): biggest first
        order = np.argsort([-len(x) for x in members], kind="stable")
        kept: list[int] = []
        G = X_all[medoids]
        fam_of = m["family"][medoids]
        merged = {}
        for a in order:
            hit = None
            for b in kept:
                if fam_of[a] == fam_of[b] and np.sqrt(((G[a] - G[b]) ** 2).mean()) < dedup:
                    hit = b
                    break
            if hit is None:
                kept.append(int(a))
                merged[int(a)] = [members[a]]
            else:
                merged[hit].append(members[a])
        log(f"hairbank: {len(medoids)} clusters -> {len(kept)} distinct entries (k total {total})")
        if len(kept) >= min_entries:
            break
        total = int(total * 1.15)
    else:
        raise ValueError(f"hairbank: {len(kept)} distinct hairstyles from {len(use)} training photos whose hair "
                         f"is visible, fewer than the {min_entries} a bank holds after {attempt + 1} tries: nothing "
                         "was written (it needs more training photos: a larger aligned set, `avatarizer-export data "
                         "align`, then `data pairs`)")
    kept = sorted(kept, key=lambda a: (HR.FAMILIES.index(HR.FAMILIES[fam_of[a]]), -sum(len(x) for x in merged[a]), a))
    geo, attrs, desc, nmem, fam, keys = [], [], [], [], [], []
    for a in kept:
        mem = np.concatenate(merged[a])
        med = medoids[a]
        geo.append(m["geo"][med])
        attrs.append(np.nanmean(m["attrs"][mem], 0))
        d, o = m["desc"][mem], m["obs"][mem]
        cnt = o.sum(0)
        mean_obs = (d * o).sum(0) / np.maximum(cnt, 1)
        desc.append(np.where(cnt > 0, mean_obs, d.mean(0)))
        nmem.append(len(mem))
        fam.append(fam_of[a])
        keys.append(m["keys"][med])
    attrs = np.array(attrs, np.float32)
    desc = np.array(desc, np.float32)
    # spreads for the z-scores: over the member photos
    u = m["seen"]
    a_all = m["attrs"][u]
    attr_scale = np.maximum(_spread(a_all), 0.05).astype(np.float32)
    d_all = np.where(m["obs"][u], m["desc"][u], np.nan)
    desc_scale = np.maximum(_spread(d_all), 0.02).astype(np.float32)
    return dict(geometry=np.array(geo, np.float32), geometry_index=HR.GEOMETRY_INDEX.astype(np.int64),
                attributes=attrs, descriptors=desc, attr_scale=attr_scale, desc_scale=desc_scale,
                members=np.array(nmem, np.int64), family=np.array(fam, np.int64),
                families=np.array(HR.FAMILIES), medoid_keys=np.array(keys))


def _spread(x: np.ndarray) -> np.ndarray:
    """Per column standard deviation over the values that are there; a column
    with none (a descriptor ray no member photo shows) takes the median of the
    others (NaN made the bank one the SDK refuses, written before that was
    seen)."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # (all-NaN columns: handled below)
        s = np.nanstd(x, 0) if len(x) else np.full(x.shape[1:], np.nan)
    ok = np.isfinite(s)
    return np.where(ok, s, float(np.median(s[ok])) if ok.any() else 1.0)


def save_bank(arrays: dict, extra: dict, folder: Path = DATA) -> dict:
    """``hair_bank.npz`` and ``hair_bank.json``, each written whole or not at
    all (both only when both could be written); returns the json's dict."""
    folder.mkdir(parents=True, exist_ok=True)
    with staged(folder / "hair_bank.npz", "part") as npz, staged(folder / "hair_bank.json", "part") as js:
        info = _write_bank(arrays, extra, npz, js)
    return info


def _write_bank(arrays: dict, extra: dict, npz: Path, js: Path) -> dict:
    np.savez_compressed(npz, **arrays)
    sha = hashlib.sha256(npz.read_bytes()).hexdigest()
    fam = arrays["family"]
    info = {
        "format": HR.BANK_FORMAT,
        "version": "1.0.0",
        "sha256": sha,
        "count": int(len(arrays["geometry"])),
        "size_bytes": npz.stat().st_size,
        "schema_version": S.VERSION,
        "geometry": {"columns": "schema indices in geometry_index: the hair slice without colours",
                     "frame": "x' = (x - cx) / hw, y' = (y - top) / hw; widths / hw; cx, top, hw from the "
                              "face outline (avatarizer.hair.head_frame)"},
        "attributes": {"names": list(HR.RETRIEVAL_ATTRIBUTES),
                       "definition": "the attribute regressor H's predictions (avatarizer.hair."
                                     "decode_attributes) for each member photo, averaged over the entry's "
                                     "members; H's hair length/volume/curl/fringe heads are trained on "
                                     "avatarizer.hair.hair_attributes_from_params of the artist's fits"},
        "descriptor": {"names": list(HR.DESCRIPTOR_NAMES), "rays": HR.N_RAYS,
                       "ray_angles_deg": [round(float(a), 3) for a in HR.RAY_ANGLES_DEG],
                       "definition": "avatarizer.hair.shape_descriptor: outer radius of the hair mask along "
                                     "each ray from the head centre (cheek mid-point, 0.1 above the eye "
                                     "line), in head half-widths; last value: hairline height above the "
                                     "eye line; entry = per-ray mean over members where observed"},
        "coverage": {f: int((fam == i).sum()) for i, f in enumerate(HR.FAMILIES)},
        "members_total": int(arrays["members"].sum()),
    }
    info.update(extra)
    js.write_text(json.dumps(info, indent=1) + "\n")
    return info


# --------------------------------------------------------------- evaluation


def avatar_hair_mask(params: np.ndarray, size: int = 128) -> np.ndarray:
    """Pixels the hair layers change: rendered with ``hair_style.layers`` as
    set and with layers = 0 (headwear and glasses off in both), transparent
    background."""
    from avatarizer.render import render

    p = np.array(params, np.float32)
    p[S.index("headwear.type")] = 0
    p[S.index("glasses.type")] = 0
    a = render(p, size, background="transparent").astype(np.int16)
    q = p.copy()
    q[S.index("hair_style.layers")] = 0
    b = render(q, size, background="transparent").astype(np.int16)
    return np.abs(a - b).max(-1) > 24


def eval_region(lm: np.ndarray, valid: np.ndarray, size: int = 128) -> np.ndarray:
    """Where hair is compared: valid pixels outside the face oval, above the chin."""
    import cv2

    oval = lm[list(HR._FACE_OVAL)]
    m = np.zeros((size, size), np.uint8)
    cv2.fillPoly(m, [np.round(((oval + 1) * 0.5 * size - 0.5) * 16).astype(np.int32)], 1, cv2.LINE_8, 4)
    ys = (np.arange(size) + 0.5) * 2.0 / size - 1.0
    return valid & ~m.astype(bool) & (ys[:, None] < lm[152, 1])


def iou(a: np.ndarray, b: np.ndarray) -> float:
    u = (a | b).sum()
    return float((a & b).sum()) / float(u) if u else float("nan")


def artist_fits(al, rows, shapes) -> np.ndarray:
    """The auto-artist's avatar for photos not in the pairs (held-out)."""
    from avatarizer.artist import AutoArtist

    art = AutoArtist()
    out = np.zeros((len(rows), S.PARAM_COUNT), np.float32)
    for j, i in enumerate(rows):
        out[j] = art.fit_landmarks(al.landmarks[i], np.asarray(al.crops[i]), np.asarray(al.hair[i]) / 255.0,
                                   valid=valid_of(al, i, shapes), landmarks3d=al.landmarks3d[i])
    return out


def attrs_of(pred: dict, i: int) -> dict:
    return HR.decode_attributes({k: pred[k] for k in ("hair_colour", "glasses", "binary", "regress")}, i)


def _hair_rgb(p: np.ndarray) -> np.ndarray:
    i = S.index("hair_front.r")
    return p[i:i + 3]


#: hair length classes: bald (no front hair layer), then the back hair's
#: ``length`` attribute (``hair.hair_attributes_from_params``) below / above
#: 0.5 -- the artist's fits are bimodal there (held out: 404 of 594 at 0,
#: 181 at 0.8-1, 29 between)
LENGTH_CLASSES = ("bald", "short", "long")


def length_class(params: np.ndarray) -> int:
    """Index into :data:`LENGTH_CLASSES` of a drawn hairstyle: bald where it
    has no front hair layer, else long or short on the face's own scale
    (:func:`avatarizer.hair.drawn_length`, what the SDK reports of a drawn
    style; until session 39 the back hair's ``length`` attribute in the
    frame, which called short styles long on larger faces)."""
    a = HR.hair_attributes_from_params(params)
    return 0 if a[4] > 0.5 else 2 if HR.drawn_length(params) == "long" else 1


def iou_table(bank: HR.HairBank, al, rows, face_params, pred, shapes, weights: HR.RetrievalWeights,
              k: int | None = None, methods=("retrieval", "most_common", "random", "artist"),
              seed: int = SEED, gates=HR.GATES) -> dict:
    """Mean hair-silhouette IoU per method over ``rows`` (aligned indices),
    and per method the confusion of hair length classes (:data:`LENGTH_CLASSES`;
    rows: the artist's own fit of the photo's hair, columns: the method's)
    with the share of photos whose class is right."""
    retr = HR.HairRetriever(bank, weights, gates=gates) if k is None else \
        HR.HairRetriever(bank, weights, k=k, gates=gates)
    rng = np.random.default_rng(seed)
    rand = rng.integers(0, len(bank), len(rows))
    common = bank.most_common()
    scores = {m: [] for m in methods}
    conf = {m: np.zeros((len(LENGTH_CLASSES),) * 2, int) for m in methods}
    chosen = []
    for j, i in enumerate(rows):
        valid = valid_of(al, i, shapes)
        region = eval_region(al.landmarks[i], valid)
        photo = (np.asarray(al.hair[i]) >= 128) & region
        if photo.sum() < 30:
            chosen.append(-1)
            continue
        face = face_params[j]
        a = attrs_of(pred, i)
        for mth in methods:
            if mth == "artist":
                p = face
            else:
                if mth == "retrieval":
                    e = retr.query(a, al.hair[i], al.landmarks[i], valid=valid)
                    chosen.append(e)
                else:
                    e = common if mth == "most_common" else int(rand[j])
                p = HR.merge(face, bank.entry(e), _hair_rgb(face))
            scores[mth].append(iou(avatar_hair_mask(p) & region, photo))
            conf[mth][length_class(face), length_class(p)] += 1
    return {m: (float(np.nanmean(v)) if v else float("nan")) for m, v in scores.items()} | \
        {"n": len(scores[methods[0]]), "chosen": chosen,
         "length_classes": {m: {"confusion": c.tolist(), "right": round(float(np.trace(c)) / max(int(c.sum()), 1), 4)}
                            for m, c in conf.items()}}


def timing(bank: HR.HairBank, weights: HR.RetrievalWeights, al, rows, pred, shapes, reps: int = 2000) -> dict:
    """Microseconds per search (descriptor given) and per descriptor, one core."""
    retr = HR.HairRetriever(bank, weights)
    qs = []
    for i in rows[:50]:
        d, o = HR.shape_descriptor(al.hair[i], al.landmarks[i], valid_of(al, i, shapes))
        qs.append((attrs_of(pred, i), d, o))
    res = {}
    for k in (retr.k, 1):
        rk = HR.HairRetriever(bank, weights, k=k)
        for r in range(50):  # warm-up
            rk.query_descriptor(*qs[r % len(qs)])
        t = time.perf_counter()
        for r in range(reps):
            a, d, o = qs[r % len(qs)]
            rk.query_descriptor(a, d, o)
        res[f"search_us_k{k}"] = round((time.perf_counter() - t) / reps * 1e6, 1)
    t = time.perf_counter()
    for r in range(200):
        i = rows[r % 50]
        HR.shape_descriptor(al.hair[i], al.landmarks[i])
    desc = (time.perf_counter() - t) / 200 * 1e6
    return {**res, "descriptor_us": round(desc, 1), "entries": len(bank), "threads": 1,
            "code": "avatarizer.hair.HairRetriever.query_descriptor (numpy brute force over the bank)"}


# ---------------------------------------------------------------- commands


def _heldout_rows(al, folders=("ffhq128", "ffhq128-labelled", "stylegan128")) -> np.ndarray:
    from .data import is_heldout

    return np.array([i for i, k in enumerate(al.keys) if is_heldout(k) and k.split("/", 1)[0] in folders],
                    np.int64)


def _tune_keys(keys: list[str], n: int = 400) -> list[str]:
    """Training photos (loose crops) left out of the tuning bank, by SHA-1."""
    from .data import is_heldout

    cand = [k for k in keys if k.split("/", 1)[0] in ("ffhq128", "stylegan128") and not is_heldout(k)]
    cand.sort(key=lambda k: hashlib.sha1(("tune:" + k).encode()).hexdigest())
    return cand[:n]


def cmd_build(cache, shared, log=print, extra: dict | None = None, data: Path = DATA,
              models: Path | None = None) -> HR.HairBank:
    from .data import stage_key

    m = load_members(cache, shared, log=log, models=models)
    arrays = cluster_bank(m, log=log)
    try:  # the SDK's own checks, before anything is replaced (a bank it refuses was written, then refused)
        HR.HairBank(arrays, {})
    except HR.HairBankError as exc:
        raise ValueError(f"hairbank: the built bank is not one the SDK reads ({exc}): nothing was written") from None
    prev = {}
    js = Path(data) / "hair_bank.json"
    if js.exists():
        prev = {k: v for k, v in json.loads(js.read_text()).items() if k in ("retrieval_weights", "tuning")}
    tuned = prev.get("tuning")
    if isinstance(tuned, dict) and tuned.get("pairs") != stage_key(cache, "pairs"):
        # (a record of other pairs' tuning bank described another bank; `tune` records it again)
        prev.pop("tuning")
        log("hairbank: the previous bank's tuning record is of other pairs: left out (`avatarizer-export "
            "hairbank tune` records it for these)")
    from avatarizer.pipeline.config import attributes_entry
    from avatarizer.runtime import Manifest

    h = attributes_entry(Manifest.load(models))  # (whose predictions the entries' attributes are: a bank left
    # from another H could not be told; a review, session 75)
    made_with = {} if h is None else {"attributes_model": {"version": str(h.raw.get("version")), "sha256": h.sha256}}
    info = save_bank(arrays, {"members_eligible": int(m["seen"].sum()), "training_photos": len(m["rows"]),
                              "seed": SEED, "built_by": "avatarizer-export hairbank build", **made_with, **prev,
                              **(extra or {})}, folder=Path(data))
    log(f"hairbank: {info['count']} entries, {info['size_bytes'] / 1024:.0f} KiB, coverage {info['coverage']}")
    return HR.HairBank.load(Path(data) / "hair_bank.npz")


def cmd_tune(cache, shared, log=print, data: Path = DATA, models: Path | None = None) -> dict:
    from .data import load_aligned, stage_key

    al = load_aligned(cache)
    tune = set(_tune_keys(al.keys))
    m = load_members(cache, shared, exclude_keys=tune, log=log, models=models)
    arrays = cluster_bank(m, log=log)
    bank = HR.HairBank(arrays, {})
    pred = _predictions_of(al, models)
    # the tuning photos' own artist fits (their faces; in pairs)
    params, source, augs = _pairs_of(cache, al)
    orig = np.flatnonzero([a == "original" for a in augs])
    by_row = {int(source[o]): o for o in orig}
    rows = np.array([al.index()[k] for k in sorted(tune)], np.int64)
    lacking = [al.keys[i] for i in rows if int(i) not in by_row]
    if lacking:  # (a KeyError traceback)
        raise ValueError(f"hairbank tune: {len(lacking)} of its {len(rows)} tuning photos have no pair in "
                         f"{Path(cache) / 'pairs'} (e.g. {lacking[0]}): rebuild them (`avatarizer-export data pairs`)")
    faces = params[[by_row[int(i)] for i in rows]]
    shapes = m["shapes"]
    grid = [(1.0, 0.0), (1.0, 0.5), (1.0, 1.0), (1.0, 2.0), (1.0, 4.0), (1.0, 8.0), (0.0, 1.0)]
    res = []
    for wa, ws in grid:
        for k in (1, 5):
            w = HR.RetrievalWeights(attributes=wa, shape=ws)
            r = iou_table(bank, al, rows, faces, pred, shapes, w, k=k, methods=("retrieval",))
            res.append({"attributes": wa, "shape": ws, "k": k, "iou": round(r["retrieval"], 4), "n": r["n"]})
            log(f"  tune: attributes {wa:g} shape {ws:g} k {k}: IoU {r['retrieval']:.4f} (n={r['n']})")
    best = max(res, key=lambda r: (r["iou"], -r["k"]))
    out = {"grid": res, "best": best, "photos": len(rows),
           "note": "training photos left out of a tuning bank; choose by mean hair IoU"}
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "tune.json").write_text(json.dumps(out, indent=1))
    js = Path(data) / "hair_bank.json"
    if js.exists():  # recorded beside the bank (the json is not covered by the npz checksum)
        info = json.loads(js.read_text())
        w = HR.RetrievalWeights()
        info["tuning"] = {"best_by_iou": best, "photos": len(rows), "by": "avatarizer-export hairbank tune",
                          "pairs": stage_key(cache, "pairs"),
                          "grid": res,
                          "defaults": {"attributes": w.attributes, "shape": w.shape,
                                       "k": HR.HairRetriever(bank).k},
                          "defaults_in_code": "avatarizer.hair.RetrievalWeights / HairRetriever(k=...)"}
        with staged(js, "part") as tmp:
            tmp.write_text(json.dumps(info, indent=1) + "\n")
    log(f"hairbank: best weights {best}")
    return out


def cmd_evaluate(cache, shared, log=print, data: Path = DATA, models: Path | None = None) -> dict:
    from .data import load_aligned

    al = load_aligned(cache)
    bank = HR.HairBank.load(Path(data) / "hair_bank.npz")
    pred = _predictions_of(al, models)
    shapes = frame_shapes(al.keys, shared, al.pad)
    rows = _heldout_rows(al)
    if not len(rows):  # (a ZeroDivisionError in the timing)
        raise ValueError(f"hairbank evaluate: {Path(cache) / 'aligned'} holds no held-out loose crop (ffhq128, "
                         "ffhq128-labelled, stylegan128) to evaluate on")
    t0 = time.time()
    faces = artist_fits(al, rows, shapes)
    log(f"hairbank: artist fits of {len(rows)} held-out photos in {time.time() - t0:.0f} s")
    w = HR.RetrievalWeights()
    k_default = HR.HairRetriever(bank).k
    out = {"weights": {"attributes": w.attributes, "shape": w.shape}, "k": k_default}
    r = iou_table(bank, al, rows, faces, pred, shapes, w)
    out["heldout_loose_crops"] = {k: (round(v, 4) if isinstance(v, float) else v) for k, v in r.items()
                                  if k not in ("chosen", "length_classes")}
    out["hair_length_classes"] = {"classes": list(LENGTH_CLASSES),
                                  "reference": "the artist's fit of the photo's own hair mask",
                                  **r["length_classes"]}
    # attribute-only and shape-only retrieval on the same photos
    for name, ww in (("attributes_only", HR.RetrievalWeights(attributes=1.0, shape=0.0)),
                     ("shape_only", HR.RetrievalWeights(attributes=0.0, shape=1.0))):
        rr = iou_table(bank, al, rows, faces, pred, shapes, ww, methods=("retrieval",))
        out[f"heldout_loose_crops_{name}"] = round(rr["retrieval"], 4)
    rr = iou_table(bank, al, rows, faces, pred, shapes, w, k=1, methods=("retrieval",))
    out["heldout_loose_crops_k1"] = round(rr["retrieval"], 4)
    rr = iou_table(bank, al, rows, faces, pred, shapes, w, methods=("retrieval",), gates=None)
    out["heldout_loose_crops_no_gates"] = round(rr["retrieval"], 4)
    mc = bank.entry(bank.most_common())
    out["most_common_entry"] = {"index": mc.index, "family": mc.family, "members": mc.members}
    used = [c for c in r["chosen"] if c >= 0]
    out["distinct_entries_retrieved"] = int(len(set(used)))
    out["timing"] = timing(bank, w, al, rows, pred, shapes)
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "eval.json").write_text(json.dumps(out, indent=1))
    _save_heldout_fits(cache, rows, faces)
    log(json.dumps(out, indent=1))
    return out


def _fits_key(cache: Path, rows: np.ndarray) -> str:
    """What the held-out photos' artist fits depend on: the aligned set, the
    rows and the artist (its source and fitted files, ``data.artist_key``)."""
    from .data import artist_key, stage_key

    h = hashlib.sha256(json.dumps([stage_key(cache, "aligned"), artist_key()], sort_keys=True).encode())
    h.update(np.ascontiguousarray(rows, np.int64).tobytes())
    return h.hexdigest()[:16]


def _save_heldout_fits(cache: Path, rows: np.ndarray, faces: np.ndarray) -> None:
    """``out/hair/heldout_artist.npz``: ``evaluate``'s artist fits for the
    sheet, with the key they were made under (:func:`_fits_key`)."""
    OUT.mkdir(parents=True, exist_ok=True)
    with staged(OUT / "heldout_artist.npz", "part") as tmp:
        with open(tmp, "wb") as f:
            np.savez(f, rows=rows, faces=faces, key=np.array(_fits_key(cache, rows)))
    for old in ("heldout_artist.npy", "heldout_rows.npy"):  # (the unkeyed form before: reused stale)
        (OUT / old).unlink(missing_ok=True)


def _heldout_fits(cache: Path, rows: np.ndarray) -> np.ndarray | None:
    """The saved fits where they were made for these rows by this artist from
    this aligned set, else None (fitted again)."""
    path = OUT / "heldout_artist.npz"
    try:
        with np.load(path) as z:
            if str(z["key"]) == _fits_key(cache, rows) and np.array_equal(z["rows"], rows):
                return np.asarray(z["faces"])
    except (OSError, KeyError, ValueError, EOFError, zipfile.BadZipFile):  # absent or unreadable: fitted again
        pass
    return None


# ------------------------------------------------------------------ sheet

SHEET_GROUPS = (("long hair", 6), ("short hair", 6), ("curly hair", 5), ("no hair / bald", 5),
                ("reading glasses", 6), ("sunglasses", 5), ("beard", 6), ("headwear", 6), ("other", 3))


def _pick_sheet(al, rows, pred, faces, T) -> list[tuple[int, int, str]]:
    """(aligned row, index into rows, group) for 48 held-out photos that show
    each group; labelled photos' labels where there are any, else the
    regressor's predictions and the artist's fit (the caption is the reason
    a photo was picked, not a ground truth)."""

    idx = {int(i): j for j, i in enumerate(rows)}
    labelled = [int(i) for i in rows if not np.isnan(T["male"][i]) or T["glasses"][i] >= 0]
    lab_set = set(labelled)
    b = {k: pred["binary"][:, j] for j, k in enumerate(HR.BINARY_ATTRIBUTES)}
    r = {k: pred["regress"][:, j] for j, k in enumerate(HR.REGRESSED_ATTRIBUTES)}
    g = pred["glasses"].argmax(1)
    used: set = set()
    out = []

    def take(group, cands, n):
        got = 0
        for i in cands:
            if got >= n:
                break
            if i in used:
                continue
            used.add(i)
            out.append((i, idx[i], group))
            got += 1

    order = sorted(rows.tolist(), key=lambda i: hashlib.sha1(al.keys[i].encode()).hexdigest())
    lab = [i for i in order if i in lab_set]
    take("sunglasses", [i for i in lab if T["glasses"][i] == 2] + [i for i in order if g[i] == 2], 5)
    take("reading glasses", [i for i in lab if T["glasses"][i] == 1] + [i for i in order if g[i] == 1], 6)
    take("headwear", [i for i in lab if T["headwear"][i] == 1] + [i for i in order if b["headwear"][i] > 0.7], 6)
    take("beard", [i for i in lab if T["beard"][i] == 1] + [i for i in order if b["beard"][i] > 0.7], 6)
    take("no hair / bald", [i for i in lab if T["bald"][i] == 1]
         + [i for i in order if b["bald"][i] > 0.8 or faces[idx[i]][S.index("hair_style.layers")] < 1.5], 5)
    # curl: H does not learn it (docs/hair.md); the artist's fit of the photo says it
    take("curly hair", [i for i in order if faces[idx[i]][S.index("hair_style.curl")] > 0.25
                        or r["curl"][i] > 0.35], 5)
    take("long hair", [i for i in order if r["length"][i] > 0.6 and b["headwear"][i] < 0.3], 6)
    take("short hair", [i for i in order if r["length"][i] < 0.15 and b["bald"][i] < 0.3
                        and b["headwear"][i] < 0.3], 6)
    take("other", order, 48 - len(out))
    return out[:48]


def make_sheet(cache, shared, path: Path = ROOT / "docs" / "hair_sheet.png", log=print, data: Path = DATA,
               models: Path | None = None) -> Path:
    """48 held-out photos | avatar: the artist's face with hair from retrieval
    and accessories from the attribute regressor."""
    import cv2
    from PIL import Image, ImageDraw

    from avatarizer.render import render

    from .attributes import build_targets
    from .data import load_aligned

    al = load_aligned(cache)
    bank = HR.HairBank.load(Path(data) / "hair_bank.npz")
    retr = HR.HairRetriever(bank)
    pred = _predictions_of(al, models)
    shapes = frame_shapes(al.keys, shared, al.pad)
    rows = _heldout_rows(al)
    faces = _heldout_fits(cache, rows)
    if faces is None:
        faces = artist_fits(al, rows, shapes)
    T = build_targets(al.keys, shared, cache)
    picks = _pick_sheet(al, rows, pred, faces, T)
    tile = 160
    tiles = []
    for i, j, group in picks:
        valid = valid_of(al, i, shapes)
        a = attrs_of(pred, i)
        e = retr.query(a, al.hair[i], al.landmarks[i], valid=valid)
        crop = np.asarray(al.crops[i])
        hw_rgb = _headwear_rgb(crop, al.landmarks[i]) if a["headwear"] >= 0.5 else None
        if hw_rgb is not None:
            a["headwear_rgb"] = hw_rgb
        p = HR.merge(faces[j], bank.entry(e), _hair_rgb(faces[j]), a)
        av = render(p, tile, background="white")[..., :3]
        ph = cv2.resize(crop, (tile, tile), interpolation=cv2.INTER_AREA)
        pair = Image.fromarray(np.concatenate([ph, av], 1))
        d = ImageDraw.Draw(pair)
        txt = f"{group}: #{e} {bank.entry(e).family}"
        d.rectangle((0, tile - 13, 2 * tile, tile), fill=(0, 0, 0))
        d.text((3, tile - 12), txt[:48], fill=(255, 255, 255))
        tiles.append(np.asarray(pair))
    cols = 6
    while len(tiles) % cols:
        tiles.append(np.full_like(tiles[0], 255))
    grid = np.concatenate([np.concatenate(tiles[r * cols:(r + 1) * cols], 1) for r in range(len(tiles) // cols)], 0)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(grid).save(path, optimize=True)
    log(f"hairbank: wrote {path} ({len(picks)} held-out photos)")
    return path


def _headwear_rgb(crop: np.ndarray, lm: np.ndarray) -> np.ndarray | None:
    """The median colour above the forehead (where a hat is)."""
    size = crop.shape[0]
    g = (np.arange(size) + 0.5) * 2.0 / size - 1.0
    top = float(lm[10, 1])
    m = (np.abs(g[None, :] - lm[10, 0]) < 0.25) & (g[:, None] < top - 0.05) & (g[:, None] > top - 0.35)
    px = crop[m].astype(np.float32) / 255.0
    return np.median(px, 0) if len(px) >= 10 else None


def cmd_all(args) -> int:
    build_bank(cache_dir(args.cache), shared_dir(args.shared), args.stage)
    return 0


def build_bank(cache: Path, shared: Path, stage: str = "all", data: Path = DATA, models: Path | None = None) -> None:
    """The hairstyle bank: ``build``, ``tune``, ``evaluate``, ``sheet`` or ``all``,
    in ``data`` (the SDK's data folder, or ``make models``' staging copy of it),
    from the predictions of the H in ``models`` (default the shipped one;
    ``make models`` passes its staging copy, whose H's predictions are staged)."""
    stages = ["build", "tune", "evaluate", "sheet"] if stage == "all" else [stage]
    for st in stages:
        if st == "build":
            cmd_build(cache, shared, data=data, models=models)
        elif st == "tune":
            cmd_tune(cache, shared, data=data, models=models)
        elif st == "evaluate":
            cmd_evaluate(cache, shared, data=data, models=models)
        elif st == "sheet":
            make_sheet(cache, shared, data=data, models=models)
        else:
            raise ValueError(f"unknown hair bank stage {st!r}")


def add_parser(sub):
    p = sub.add_parser("hairbank", help="build the hairstyle bank, tune retrieval, evaluate hair IoU, "
                                        "draw docs/hair_sheet.png (docs/hair.md)")
    p.add_argument("stage", nargs="?", default="all", choices=["build", "tune", "evaluate", "sheet", "all"])
    p.add_argument("--cache")
    p.add_argument("--shared")
    p.set_defaults(func=cmd_all)
