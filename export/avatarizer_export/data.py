"""Datasets built from the real faces in ``../shared/data/faces``.

Stages (each cached under ``cache/``; a second run reuses what is there
when it was built from the same inputs, ``--force`` rebuilds), run by
``avatarizer-export data STAGE``:

``align``    every face photo -> MediaPipe landmarks, canonical 128 px crop,
             hair mask, pose; failures recorded with their reason.
``pairs``    (aligned crop, auto-artist parameters) for every *training*
             photo, plus augmented copies (warp / small rotation / scale /
             shift with the artist re-fitted to the moved landmarks,
             horizontal flips through ``schema.mirror``, colour jitter, blur,
             grayscale). Photometric changes touch the photo only.
``avatars``  100,000 unpaired avatar vectors from a prior fitted to the
             artist's outputs on the training photos.

Each stage's ``meta.json`` records its inputs (the photos' names, the
artist's source and data, the mean face, the identity of the stage it reads:
:func:`stage_key`) and is written last: a rebuild deletes it first, so a
stage cut short is never taken for a built one.

The held-out split is fixed by file name (:func:`is_heldout`) and written to
``docs/split.md``; held-out photos never enter ``pairs`` or ``avatars``.
Formats are documented in ``docs/data.md``.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .onnx_util import staged
from .paths import ROOT, cache_dir, shared_dir

CROP = 128
SOURCES = ("ffhq128", "ffhq128-labelled", "stylegan128", "utkface200")
DATA_VERSION = 2  # 2: 3D landmarks kept; the artist draws the frontal face
PRIOR_OVER = "pairs"  # the avatar prior's kernels: every pair's avatar (originals and augmented)


# ------------------------------------------------------------------ stages


def stage_key(cache: Path | None, stage: str) -> str:
    """The identity of a built data stage (``aligned``, ``pairs``,
    ``avatars``): the SHA-256 (16 hex digits) of its ``meta.json``, written
    last by every build with a token of its own (empty when the stage is not
    built)."""
    path = (cache or cache_dir()) / stage / "meta.json"
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16] if path.is_file() else ""


#: the SDK modules besides ``avatarizer/artist/`` whose code the artist's
#: drawing runs (its hair colour classes, the hairstyle and feature priors,
#: the landmark tables and mean face, the parameter layout, the hat's kind and place,
#: the skin's chroma band, the region networks it reads: the tight crops' hair length, the facial hair,
#: the hair colours, the skin tone; and what ``hair.py`` imports: the upper lids' landmark table, the
#: input checks, the gender's name)
ARTIST_MODULES = ("hair.py", "headwear.py", "prior.py", "landmarks.py", "schema.py", "skintone.py",
                  "regionnet.py", "hairlength.py", "facialhair.py", "haircolour.py", "proportions.py",
                  "checks.py", "gender.py")
#: the fields of ``artist_detectors.json``'s detectors the artist does not
#: read: reports, and the grey-hair age prior (the SDK's, with H's age)
_NOT_DRAWN_WITH = ("age_prior", "cv_recall", "cv_balanced_accuracy", "cv_gate_balanced_plain",
                   "cv_plain_as_sampled", "trained_on")


def artist_source_key() -> str:
    """The artist's source (``avatarizer/artist/*.py`` and
    :data:`ARTIST_MODULES`): SHA-256, 16 hex digits."""
    import avatarizer.artist as pkg

    sdk = Path(pkg.__file__).parent.parent
    h = hashlib.sha256()
    for p in sorted(Path(pkg.__file__).parent.glob("*.py")) + [sdk / m for m in ARTIST_MODULES]:
        h.update(p.read_bytes())
    return h.hexdigest()[:16]


#: the SDK modules whose code the alignment cache's crops, hair masks, landmarks and poses come from
ALIGN_MODULES = ("align.py", "landmarks.py", "imageio.py")


def aligner_key() -> str:
    """What the aligned cache depends on besides the photos: the SDK's
    alignment code (:data:`ALIGN_MODULES`) and MediaPipe's version (its
    models are in its wheel): SHA-256, 16 hex digits. A change of either
    aligns again (the cache was kept by the photos' names alone)."""
    import avatarizer

    sdk = Path(avatarizer.__file__).parent
    h = hashlib.sha256()
    for m in ALIGN_MODULES:
        h.update((sdk / m).read_bytes())
    try:
        from importlib.metadata import version

        h.update(version("mediapipe").encode())
    except Exception:  # (not installed: the aligner cannot run either; it says so itself)
        pass
    h.update(str(CROP).encode())
    return h.hexdigest()[:16]


def artist_key() -> dict:
    """What the auto-artist's parameters depend on: its source
    (:func:`artist_source_key`, the key of the detectors' cue caches too), its fitted detectors
    (``artist_detectors.json``'s detectors, without the fields it does not
    draw with: reports and the grey-hair age prior, which a refit after H
    changes; not the file's reports or time), the mean face (the
    arrays of ``mean_face.npz``, not the zip's time stamps) and the hat kind
    model (``headwear_kinds.json`` without its report and time): SHA-256, 16 hex
    digits each, empty when the file is absent."""
    from avatarizer import headwear as HW
    from avatarizer import landmarks as LM
    from avatarizer.artist import accessories

    det, mean, hats = Path(accessories._DETECTORS_PATH), Path(LM._DATA), Path(HW._DATA)
    h_det = h_mean = h_hats = ""
    if det.is_file():
        doc = json.loads(det.read_text(encoding="utf-8"))
        drawn = {name: {k: v for k, v in model.items() if k not in _NOT_DRAWN_WITH}
                 for name, model in doc.get("detectors", {}).items()}
        h_det = hashlib.sha256(json.dumps([doc.get("format"), drawn], sort_keys=True).encode()).hexdigest()[:16]
    if mean.is_file():
        mf, h = LM.MeanFace.load(mean), hashlib.sha256()
        for a in (mf.points, mf.mirror, mf.rigid):
            h.update(np.ascontiguousarray(a).tobytes())
        h_mean = h.hexdigest()[:16]
    if hats.is_file():
        try:  # everything the drawing reads: not the report or the time
            doc = json.loads(hats.read_text(encoding="utf-8"))
            drawn = {k: v for k, v in doc.items() if k not in ("report", "seconds")} if isinstance(doc, dict) else doc
        except (ValueError, RecursionError):
            drawn = "unreadable"
        h_hats = hashlib.sha256(json.dumps(drawn, sort_keys=True).encode()).hexdigest()[:16]
    return {"source": artist_source_key(), "detectors": h_det, "mean_face": h_mean, "hat_kinds": h_hats,
            "networks": artist_networks_key()}


def artist_networks_key() -> str:
    """The region networks the artist reads where their files are there (the
    tight crops' hair length, the facial hair, both hair colours, the skin
    tone; session 47): each JSON
    without its report and time (the ONNX file's SHA-256, the thresholds
    and gates are in it), SHA-256, 16 hex digits; a missing or unreadable
    file counts as such."""
    from avatarizer import facialhair, haircolour, hairlength, skintone
    from avatarizer import regionnet as RN

    h = hashlib.sha256()
    for spec in (hairlength.SPEC_TIGHT, facialhair.SPEC, haircolour.SPEC, haircolour.SPEC_TIGHT, skintone.NETWORK):
        path = RN.DATA / spec.json_name
        try:
            doc = json.loads(path.read_text(encoding="utf-8"))
            drawn = {k: v for k, v in doc.items() if k not in ("report", "seconds")} if isinstance(doc, dict) else doc
        except FileNotFoundError:
            drawn = "missing"
        except (OSError, ValueError, RecursionError):
            drawn = "unreadable"
        h.update(json.dumps([spec.json_name, drawn], sort_keys=True).encode())
    return h.hexdigest()[:16]


def _save(path: Path, array) -> None:
    """``np.save`` through a temporary file beside ``path`` moved onto it: a
    process reading the stage's previous arrays (``np.load(...,
    mmap_mode="r")``, as training does) keeps them whole; written in place,
    the file was truncated under its memory map (a crash with SIGBUS)."""
    with staged(path, "part") as tmp:
        with open(tmp, "wb") as f:  # (np.save would add .npy to the temporary name)
            np.save(f, array)


def _write_text(path: Path, text: str) -> None:
    """``path.write_text(text)`` through a temporary file moved onto it."""
    with staged(path, "part") as tmp:
        tmp.write_text(text)


def _write_meta(path: Path, meta: dict):
    """``meta.json``, the last file of a stage, written whole or not at all,
    with a token new to every build (so :func:`stage_key` tells builds apart)."""
    with staged(path, "part") as tmp:
        tmp.write_text(json.dumps({**meta, "build": os.urandom(8).hex()}, indent=1))


# ------------------------------------------------------------------ split


def is_heldout(key: str) -> bool:
    """Fixed held-out split by file name: 20% of the labelled FFHQ photos (for
    attribute evaluation) and 10% of every other folder, chosen by the SHA-1
    of ``folder/file``. Never trained on."""
    # (a file name that is not UTF-8 reaches here with surrogate escapes: its own bytes, not an error)
    h = int(hashlib.sha1(key.encode("utf-8", "surrogateescape")).hexdigest()[:8], 16)
    folder = key.split("/", 1)[0]
    return h % 5 == 0 if folder == "ffhq128-labelled" else h % 10 == 0


#: :func:`heldout_twins`: two photos are the same image when their 16x16 grey thumbnails, each
#: standardised, differ by at most this mean squared difference. UTKFace: byte-identical copies 0,
#: re-encoded ones 0.001-0.014, edited ones (a watermark, another crop) 0.029-0.058, the nearest
#: different people 0.060 and more; ffhq128, ffhq128-labelled and stylegan128: none under 0.075 (reviews,
#: session 72). 0.05 takes all but the last edited copy
TWIN_DISTANCE = 0.05
#: the image files :func:`heldout_twins` compares (``evaluate.IMG_EXT``'s)
_TWIN_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff")


def _thumbnails(paths) -> np.ndarray:
    """Standardised 16x16 grey thumbnails (N x 256); a row of NaN for a file
    that cannot be read (any error: Pillow's decompression-bomb refusal
    too) or a picture with no detail (a blank frame, a 16-bit image Pillow
    clips to white): those are twins of nothing."""
    import warnings

    from PIL import Image

    out = np.full((len(paths), 256), np.nan, np.float32)
    for i, p in enumerate(paths):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # (Pillow's decompression-bomb warning: refused below)
                with Image.open(p) as im:
                    im.draft("L", (64, 64))  # (a JPEG decoded at a fraction of its size)
                    x = np.asarray(im.convert("L").resize((16, 16), Image.BILINEAR), np.float32).ravel()
        except Exception:  # noqa: BLE001 - unreadable, however: no twin of anything
            continue
        if x.std() >= 1.0:
            out[i] = (x - x.mean()) / x.std()
    return out


_TWINS: dict[tuple[str, str], frozenset[str]] = {}


def heldout_twins(folder: str | os.PathLike, name: str) -> frozenset[str]:
    """The file names of ``folder`` (its photos keyed ``name/FILE`` by
    :func:`is_heldout`) that the split holds out but whose image a training
    photo of the same folder repeats under another name: byte for byte,
    re-encoded or edited (:data:`TWIN_DISTANCE`). UTKFace holds such copies:
    61 of its 997 held-out photos were trained on under another name, some
    named with another age or gender (a review, session 72). The split
    itself stays (what was trained on is what it says); evaluations of the
    held-out photos leave these out. Only the project's folders
    (:data:`SOURCES`: the ones it trains on) have any; others get none
    without a file read. Computed once per folder (a few seconds for
    UTKFace's 9,780 photos)."""
    if name not in SOURCES:
        return frozenset()
    folder = Path(folder)
    key = (str(folder.resolve()), name)
    if key not in _TWINS:
        files = sorted(p for p in folder.iterdir() if p.suffix.lower() in _TWIN_SUFFIXES and p.is_file())
        held = np.array([is_heldout(f"{name}/{p.name}") for p in files], bool)
        twins: set[str] = set()
        if held.any() and (~held).any():
            x = _thumbnails(files)
            h, t = x[held], x[~held]
            t = t[np.isfinite(t).all(1)]
            names = [p.name for p, k in zip(files, held) if k]
            if len(t):  # (mean squared differences of every held-out to every training thumbnail)
                d = ((h ** 2).sum(1)[:, None] + (t ** 2).sum(1)[None] - 2.0 * h @ t.T) / h.shape[1]
                near = np.nan_to_num(d, nan=np.inf).min(axis=1) <= TWIN_DISTANCE
                twins.update(n for n, k in zip(names, near) if k)
        _TWINS[key] = frozenset(twins)
    return _TWINS[key]


def sampled_keys(votes: Path | None = None) -> set[str]:
    """The photos of every committed label batch (``votes/*.json``,
    :mod:`avatarizer_export.eyelabels`) mined by a recorded sample (a
    batch's ``sample`` with photos in a stratum other than ``random``: the
    photos mined for what the pipeline read, and the random ones beside
    them). Their labels are not of photos as they come: thresholds chosen
    for precision leave them out (all of such a batch's photos, whatever it
    was mined for: the conservative choice). A batch drawn at random alone
    (its other strata empty: the gender batches) is of photos as they come.
    ValueError names a batch whose ``sample`` is not a list of strata with
    ``keys``."""
    out: set[str] = set()
    for path in sorted(Path(votes or EYE_LABELS / "votes").glob("*.json")):
        batch = json.loads(path.read_text(encoding="utf-8"))
        sample = batch.get("sample", ()) if isinstance(batch, dict) else ()
        if not isinstance(sample, (list, tuple)) or not all(
                isinstance(s, dict) and isinstance(s.get("keys"), list) for s in sample):
            raise ValueError(f"{path}: 'sample' must be a list of strata, each with its 'keys'")
        if any(s["keys"] and s.get("stratum") != "random" for s in sample):
            for stratum in sample:
                out.update(stratum["keys"])
    return out


def chooses_facial_hair_thresholds(key: str, mined=frozenset()) -> bool:
    """Whether a photo labelled by eye chooses a facial-hair drawing
    threshold (the facial-hair network's, the artist's beard and moustache
    detectors'): photos of people as they come, not UTKFace's (its men, a
    sample of men alone, have beards four times as often: precision holds
    there at lower thresholds; session 37) nor a mined batch's (``mined``:
    :func:`sampled_keys`, photos chosen for
    what the pipeline read). They still train."""
    return not key.startswith("utkface") and key not in mined


def list_faces(shared: Path) -> list[str]:
    keys = []
    for src in SOURCES:
        folder = shared / "data" / "faces" / src
        if not folder.is_dir():
            continue
        # (.jpeg too, as eval reads it: a photo.jpeg was skipped without a word)
        keys += [f"{src}/{p.name}" for p in sorted(folder.iterdir()) if p.suffix.lower() in (".jpg", ".jpeg", ".png")]
    return keys


# ----------------------------------------------------------------- labels


def utk_labels(name: str) -> dict | None:
    """UTKFace file names: AGE_GENDER_RACE_DATE.jpg.chip.jpg (gender 0 male, 1 female)."""
    parts = name.split("_")
    try:
        out = {"age": float(parts[0]), "gender": "male" if parts[1] == "0" else "female"}
    except (IndexError, ValueError):
        return None
    if len(parts) >= 4 and parts[2].isdigit():
        out["race"] = int(parts[2])
    return out


#: The project's own labels, by eye (docs/data.md): ``labels/*.jsonl``, one JSON
#: object per line, ``{"file": "FOLDER/NAME", "labellers": n, ...}`` with any of
#: ``beard``, ``moustache``, ``headwear`` (0/1), ``glasses`` (0 none, 1
#: clear, 2 sunglasses) and ``hair_colour`` (the index in
#: ``avatarizer.hair.HAIR_COLOURS``: black, brown, blond, red, gray).
EYE_LABELS = Path(__file__).resolve().parent / "labels"
EYE_LABEL_FIELDS = ("glasses", "headwear", "beard", "moustache", "hair_colour")


#: label files that only ``eval`` reads (:func:`hair_colour_by_eye`,
#: :func:`tight_crop_hair_lengths`) and the reports of networks never trained on them:
#: the hair colour of 420 UTKFace tight crops (session 17) and the hair length
#: of 528 held-out ones (session 46), where nothing was fitted on them, and the
#: eye colour of held-out loose portraits (session 53)
EVAL_ONLY_LABELS = ("utkface_hair_colour.jsonl", "utkface_hair_length.jsonl", "eye_colour_by_eye.jsonl")
#: label files that only the hair-colour network trains on (``avatarizer-export
#: hair-colour-net``, :func:`hair_colour_network_labels`) and ``eval`` reads: a
#: batch mined for red hair (session 43) tells each photo's colour but not how
#: common the colours are, so it stays out of every fit that reads their
#: prevalence (H's class frequencies, the hair colour priors by age and by skin
#: tone, the artist's hair-colour classifier and its gate); the network is
#: trained class-balanced
HAIR_COLOUR_NETWORK_ONLY_LABELS = ("stylegan128_hair_colour.jsonl",)
#: what :func:`eye_labels` (what training reads) leaves out
NOT_TRAINING_LABELS = EVAL_ONLY_LABELS + HAIR_COLOUR_NETWORK_ONLY_LABELS


def eye_labels(folder: Path | None = None) -> dict[str, dict]:
    """``{"FOLDER/NAME": {field: value, ...}}`` from the project's labels by eye
    (empty when there are none), what training reads: without
    :data:`EVAL_ONLY_LABELS` and :data:`HAIR_COLOUR_NETWORK_ONLY_LABELS`."""
    out: dict[str, dict] = {}
    for rec in _label_records(folder, skip=NOT_TRAINING_LABELS):
        got = {k: rec[k] for k in EYE_LABEL_FIELDS if k in rec}
        if got:  # records of other fields only (skin_tone_labels) are not H's
            out.setdefault(rec["file"], {}).update(got)
    return out


def _label_records(folder: Path | None = None, skip=()):
    """Every record of the label files by eye in ``folder`` (default
    :data:`EYE_LABELS`), file by file in name order, but those named in ``skip``."""
    folder = EYE_LABELS if folder is None else Path(folder)
    for path in sorted(p for p in folder.glob("*.jsonl") if p.name not in skip):
        for line in path.read_text(encoding="utf-8").splitlines():
            if line.strip():
                yield json.loads(line)


def _file_records(name: str, folder: Path | None = None) -> list[dict]:
    """The records of one label file by eye, ``name`` in ``folder`` (default
    :data:`EYE_LABELS`), in file order; empty without the file."""
    path = (EYE_LABELS if folder is None else Path(folder)) / name
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def gender_labels(folder: Path | None = None) -> dict[str, int]:
    """``{"FOLDER/NAME": 1 male, 0 female}`` of the labels by eye of gender
    (``gender_by_eye.jsonl``: random training and held-out loose portraits;
    a field no other reader reads; empty without the file)."""
    return {r["file"]: int(r["gender"] == "male") for r in _file_records("gender_by_eye.jsonl", folder)
            if r.get("gender") in ("male", "female")}


def hair_colour_by_eye(folder: Path | None = None) -> dict[str, int]:
    """``{"FOLDER/NAME": hair colour index}`` (``avatarizer.hair.HAIR_COLOURS``)
    of every photo a label file by eye gives one, :data:`EVAL_ONLY_LABELS`
    included (``ffhq128`` loose crops and UTKFace tight crops): what ``eval``
    scores the drawn hair colour against."""
    return _hair_colours(_label_records(folder))


def _hair_colours(records) -> dict[str, int]:
    """``{"FOLDER/NAME": hair colour index}`` of the label ``records`` that have one."""
    return {rec["file"]: rec["hair_colour"] for rec in records
            if isinstance(rec.get("hair_colour"), int) and rec["hair_colour"] >= 0}


def tight_crop_hair_colours(folder: Path | None = None) -> dict[str, int]:
    """``{"FOLDER/NAME": hair colour index}`` of UTKFace's tight chips
    labelled by eye (:data:`EVAL_ONLY_LABELS`; both splits: nothing is fitted
    on them), what the hair-colour networks' reports score; empty without the file."""
    return _hair_colours(_file_records("utkface_hair_colour.jsonl", folder))


def tight_crop_hair_lengths(folder: Path | None = None) -> dict[str, str]:
    """``{"FOLDER/NAME": label}`` of UTKFace's held-out tight chips labelled
    by eye for hair length (``utkface_hair_length.jsonl``,
    :data:`EVAL_ONLY_LABELS`: ``long`` where the hair hangs beside the face
    to the jaw line or lower, ``short``, ``tied``, ``bald``, ``covered``);
    empty without the file."""
    return {r["file"]: r["hair_length"] for r in _file_records("utkface_hair_length.jsonl", folder)
            if "hair_length" in r}


def hair_colour_network_labels(folder: Path | None = None) -> dict[str, int]:
    """``{"FOLDER/NAME": hair colour index}`` of :data:`HAIR_COLOUR_NETWORK_ONLY_LABELS`:
    what the hair-colour network trains on beside
    :func:`avatarizer_export.skintone.hair_colour_labels`."""
    return _hair_colours(rec for name in HAIR_COLOUR_NETWORK_ONLY_LABELS for rec in _file_records(name, folder))


def bald_labels(folder: Path | None = None) -> dict[str, dict]:
    """``{"FOLDER/NAME": {"bald": 0 or 1}}`` from the labels by eye of the top
    of the head (``scalp_by_eye.jsonl``: bald 1; receding and hair 0) and of
    hair length (``hair_length_by_eye.jsonl``: bald 1; long, short and tied
    0); covered heads are left out, and so are photos of
    ``ffhq128-labelled``, whose shared labels have a bald score of their own
    (the artist's bald detector, ``avatarizer-export detectors``)."""
    top = {**hair_length_labels(folder), **scalp_labels(folder)}  # (the top of the head's label wins)
    return {key: {"bald": int(v == "bald")} for key, v in top.items()
            if v != "covered" and not key.startswith("ffhq128-labelled/")}


def head_top_labels(folder: Path | None = None) -> dict[str, int]:
    """``{"FOLDER/NAME": 0 hair, 1 receding, 2 bald}`` from the labels by eye
    of the top of the head (``scalp_by_eye.jsonl``) and of hair length
    (``hair_length_by_eye.jsonl``: long, short and tied 0, bald 2; the top
    of the head's label wins), covered heads and ``ffhq128-labelled`` left
    out (as :func:`bald_labels`)."""
    top = {**hair_length_labels(folder), **scalp_labels(folder)}
    code = {"hair": 0, "long": 0, "short": 0, "tied": 0, "receding": 1, "bald": 2}
    return {key: code[v] for key, v in top.items() if v in code and not key.startswith("ffhq128-labelled/")}


def goatee_labels(folder: Path | None = None) -> dict[str, dict]:
    """``{"FOLDER/NAME": {"goatee": 0 or 1}}`` of the photos whose beard is
    labelled by eye (``beard_style_by_eye.jsonl``): a goatee 1 (the chin's
    hair, the jaw bare), a full beard or stubble 0 (hair on the jaw's sides
    too); a moustache alone, no facial hair or no agreed style is left out
    (the artist's goatee detector decides the shape of a beard it draws,
    ``avatarizer-export detectors``)."""
    return {rec["file"]: {"goatee": int(rec["beard_style"] == "goatee")} for rec in _label_records(folder)
            if rec.get("beard_style") in ("full", "goatee", "stubble")}


def beard_colour_labels(folder: Path | None = None) -> dict[str, dict]:
    """``{"FOLDER/NAME": {"beard_grey": 0 or 1}}`` of the photos whose facial
    hair's colour is labelled by eye (``beard_style_by_eye.jsonl``'s
    ``beard_colour``): grey (grey or white, salt and pepper too) 1, dark or
    brown 0; no agreed colour is left out (the artist's grey-beard
    detector: facial hair drawn as its grey strands or as the chin's darker
    hair, ``avatarizer-export detectors``)."""
    return {rec["file"]: {"beard_grey": int(rec["beard_colour"] == "grey")} for rec in _label_records(folder)
            if rec.get("beard_colour") in ("dark", "brown", "grey")}


def eye_colour_labels(folder: Path | None = None) -> dict[str, int]:
    """``{"FOLDER/NAME": 1 light, 0 dark}`` of the irises' colour labelled by
    eye (``eye_colour_by_eye.jsonl``: held-out loose portraits, for
    evaluation only; empty without the file)."""
    return {r["file"]: int(r["eye_colour"] == "light") for r in _file_records("eye_colour_by_eye.jsonl", folder)
            if r.get("eye_colour") in ("light", "dark")}


def scalp_labels(folder: Path | None = None) -> dict[str, str]:
    """``{"FOLDER/NAME": label}`` of the labels by eye of the top of the head
    (``scalp_by_eye.jsonl``: ``bald``, ``receding``, ``hair``, ``covered``)."""
    return {rec["file"]: rec["scalp"] for rec in _label_records(folder, skip=NOT_TRAINING_LABELS) if "scalp" in rec}


def skin_tone_labels(folder: Path | None = None) -> dict[str, float]:
    """``{"FOLDER/NAME": Monk step}`` of ``labels/skin_tone_by_eye.jsonl``: the
    skin tone in even daylight, judged by eye (1 lightest ... 10 darkest;
    the mean of two labellers at most one step apart, docs/data.md)."""
    return {r["file"]: float(r["skin_tone"]) for r in _file_records("skin_tone_by_eye.jsonl", folder)
            if "skin_tone" in r}


def glasses_shape_labels(folder: Path | None = None) -> dict[str, dict]:
    """``{"FOLDER/NAME": {field: value}}`` of ``labels/glasses_shape_by_eye.jsonl``:
    the lenses and frames of 240 photos of clear glasses judged by eye
    (session 41; each field only where both labellers, who could read the
    frame, agreed): ``lens_shape`` (``round``, ``soft``, ``angular``),
    ``lens_aspect`` (``flat``, ``medium``, ``tall``), ``lens_size``
    (``small``, ``medium``, ``large``), ``frame_colour`` (``black``,
    ``brown``, ``metal``, ``rimless``, ``red``, ``blue``, ``other``) and
    ``frame_thickness`` (``thin``, ``medium``, ``thick``). Not H's fields."""
    fields = ("lens_shape", "lens_aspect", "lens_size", "frame_colour", "frame_thickness")
    return {r["file"]: {k: r[k] for k in fields if k in r} for r in _file_records("glasses_shape_by_eye.jsonl", folder)}


def headwear_labels(folder: Path | None = None) -> dict[str, dict]:
    """``{"FOLDER/NAME": {"headwear": 0 or 1}}`` from every label by eye that
    says whether the head is covered: the hat kinds (``hat``: ``none`` 0,
    a cap, beanie, brimmed hat or other covering 1), then the accessories of
    ``ffhq128_by_eye.jsonl`` (``headwear``), then the top of the head
    (``covered`` 1, any other answer 0) and hair length (``covered`` 1,
    ``bald`` 0; not long or short hair, which may show under a hat); the
    first that has a photo wins. Photos of ``ffhq128-labelled`` are left out (their shared labels
    are the artist's headwear detector's own, ``avatarizer-export
    detectors``)."""
    recs = list(_label_records(folder, skip=NOT_TRAINING_LABELS))
    # (photo, covered) in the order of precedence; hair length: covered, or bald (long or short hair
    # may be seen under a hat: labellers gave it for 15 of 78 photos labelled with a hat)
    length = {k: v for k, v in hair_length_labels(folder).items() if v in ("covered", "bald")}
    answers = [(r["file"], int(r["hat"] != "none")) for r in recs if "hat" in r]
    answers += [(r["file"], int(r["headwear"])) for r in recs if r.get("headwear") in (0, 1)]
    answers += [(k, int(v == "covered")) for k, v in {**length, **scalp_labels(folder)}.items()]
    out: dict[str, dict] = {}
    for key, covered in answers:
        if not key.startswith("ffhq128-labelled/"):
            out.setdefault(key, {"headwear": covered})
    return out


def hair_length_labels(folder: Path | None = None) -> dict[str, str]:
    """``{"FOLDER/NAME": label}`` of ``labels/hair_length_by_eye.jsonl``: the
    hair's length as the photo shows it, judged by eye (``long``: to the chin
    or jaw line or lower; ``short``; ``bald``; ``tied``: pulled back;
    ``covered``: by headwear), where two labellers gave the same label
    (docs/data.md)."""
    return {r["file"]: r["hair_length"] for r in _file_records("hair_length_by_eye.jsonl", folder)
            if "hair_length" in r}


def ffhq_labels(shared: Path) -> dict[str, dict]:
    """``ffhq128-labelled/attributes.jsonl`` -> {file: faceAttributes (+faceRectangle)} for
    photos with a face entry."""
    path = shared / "data" / "faces" / "ffhq128-labelled" / "attributes.jsonl"
    out = {}
    if not path.exists():
        return out
    for line in path.read_text().splitlines():
        if not line.strip():
            continue
        rec = json.loads(line)
        faces = rec.get("faces") or []
        if faces:
            attrs = dict(faces[0]["faceAttributes"])
            attrs["faceRectangle"] = faces[0].get("faceRectangle")
            out[rec["file"]] = attrs
    return out


# ------------------------------------------------------------------ align


@dataclass
class Aligned:
    keys: list
    crops: np.ndarray  # (N, 128, 128, 3) uint8
    hair: np.ndarray  # (N, 128, 128) uint8, hair mask * 255
    landmarks: np.ndarray  # (N, 478, 2) float32 canonical
    landmarks3d: np.ndarray  # (N, 478, 3) float32 MediaPipe x, y, z (pixels of the padded frame)
    transforms: np.ndarray  # (N, 2, 3) float64 canonical -> frame pixels (of the padded frame)
    pose: np.ndarray  # (N, 3) roll, yaw, pitch
    pad: np.ndarray  # (N,) padding (px) added around the photo before alignment
    key: str = ""  # the aligned stage's stage_key when loaded from a cache (what features computed on it depend on)

    def index(self) -> dict[str, int]:
        return {k: i for i, k in enumerate(self.keys)}


_ALIGNER = None


def _load_rgb(path: Path) -> np.ndarray:
    from avatarizer.imageio import load_image

    return load_image(path)


def _pad(img: np.ndarray, pad: int) -> np.ndarray:
    import cv2

    return cv2.copyMakeBorder(img, pad, pad, pad, pad, cv2.BORDER_REPLICATE)


def _align_one(args):
    """Worker: one photo -> dict or failure reason. Tries the photo as it is,
    then with a replicated border (tight crops such as UTKFace put the face
    against the edge, where the detector misses it)."""
    global _ALIGNER
    key, path = args
    from avatarizer.align import AlignOptions, FaceAligner

    if _ALIGNER is None:
        _ALIGNER = FaceAligner(AlignOptions(mode="image", max_faces=2, segmentation=True))
    try:
        img = _load_rgb(Path(path))
    except (OSError, ValueError) as exc:
        return key, None, f"unreadable image: {exc}"
    faces, used_pad = [], 0
    for pad in (0, img.shape[0] // 4):
        frame = _pad(img, pad) if pad else img
        faces = _ALIGNER.detect(frame)
        if faces:
            used_pad = pad
            break
    if not faces:
        return key, None, "no face detected (also with a padded border)"
    f = faces[0]
    hair = f.hair_mask(CROP)
    out = dict(crop=np.ascontiguousarray(f.crop(CROP)),
               hair=(np.zeros((CROP, CROP), np.uint8) if hair is None else (hair * 255).astype(np.uint8)),
               landmarks=f.canonical.astype(np.float32), landmarks3d=f.landmarks.astype(np.float32),
               transform=f.transform.astype(np.float64),
               pose=np.array([f.roll, f.yaw, f.pitch], np.float32), pad=used_pad, faces=len(faces))
    return key, out, None


def photos_key(shared: Path, keys: list) -> str:
    """The photos' names and bytes (BLAKE2b, 16 hex digits): a photo
    replaced under its name is aligned again (the cache was keyed by the
    names alone and kept the old crops, and every stage after it)."""
    h = hashlib.blake2b(digest_size=8)
    for k in keys:
        data = (shared / "data" / "faces" / k).read_bytes()
        h.update(f"{k}\0{len(data)}\0".encode())
        h.update(data)
    return h.hexdigest()


def names_key(keys) -> str:
    """The alignment cache's key of its photos by name (``meta.json``'s
    ``names``): SHA-256 of the keys, one a line, 16 hex digits."""
    return hashlib.sha256("\n".join(keys).encode()).hexdigest()[:16]


def project_shared() -> Path:
    """The project's own shared folder (``../shared`` beside the checkout),
    resolved: what the committed split docs and mean face describe."""
    return (ROOT.parent / "shared").resolve()


def build_aligned(shared: Path, cache: Path, workers: int = 2, limit: int | None = None,
                  force: bool = False) -> Aligned:
    out_dir = cache / "aligned"
    meta_path = out_dir / "meta.json"
    keys_all = list_faces(shared)
    if limit:
        keys_all = keys_all[:limit]
    names = names_key(keys_all)  # the photos, by name
    contents = photos_key(shared, keys_all)  # ... and by content (0.5 s for 15,280 photos)
    aligner = aligner_key()
    if meta_path.exists() and not force:
        meta = json.loads(meta_path.read_text())
        if meta.get("version") == DATA_VERSION and meta.get("inputs") == len(keys_all) \
                and meta.get("names") == names and meta.get("contents") == contents \
                and meta.get("aligner") == aligner:
            print(f"align: reusing {out_dir} ({meta['aligned']} faces)")
            return load_aligned(cache)
    meta_path.unlink(missing_ok=True)  # until the new one is whole
    from tqdm import tqdm

    jobs = [(k, str(shared / "data" / "faces" / k)) for k in keys_all]
    results, failures = {}, []
    t0 = time.time()
    if workers > 1:
        import multiprocessing as mp

        ctx = mp.get_context("spawn")
        with ctx.Pool(workers) as pool:
            it = pool.imap(_align_one, jobs, chunksize=16)
            for key, res, why in tqdm(it, total=len(jobs), desc="align", unit="face"):
                (failures.append({"face": key, "reason": why}) if res is None else results.__setitem__(key, res))
    else:
        for job in tqdm(jobs, desc="align", unit="face"):
            key, res, why = _align_one(job)
            (failures.append({"face": key, "reason": why}) if res is None else results.__setitem__(key, res))
    keys = [k for k in keys_all if k in results]
    out_dir.mkdir(parents=True, exist_ok=True)
    if not keys:  # (np.stack's "need at least one array to stack", and no failures.json to say why)
        _write_text(out_dir / "failures.json", json.dumps(failures, indent=1))
        reasons = sorted({f["reason"] for f in failures})
        raise ValueError(f"align: none of the {len(keys_all)} photos under {shared / 'data' / 'faces'} aligned "
                         f"({'; '.join(reasons[:3]) or 'no photos'}; {out_dir / 'failures.json'})")
    _save(out_dir / "crops128.npy", np.stack([results[k]["crop"] for k in keys]))
    _save(out_dir / "hair128.npy", np.stack([results[k]["hair"] for k in keys]))
    _save(out_dir / "landmarks.npy", np.stack([results[k]["landmarks"] for k in keys]))
    _save(out_dir / "landmarks3d.npy", np.stack([results[k]["landmarks3d"] for k in keys]))
    _save(out_dir / "transforms.npy", np.stack([results[k]["transform"] for k in keys]))
    _save(out_dir / "pose.npy", np.stack([results[k]["pose"] for k in keys]))
    _save(out_dir / "pad.npy", np.array([results[k]["pad"] for k in keys], np.int32))
    _write_text(out_dir / "keys.json", json.dumps(keys))
    per_source = {}
    for k in keys_all:
        s = per_source.setdefault(k.split("/")[0], {"photos": 0, "aligned": 0, "padded": 0, "several_faces": 0})
        s["photos"] += 1
        if k in results:
            s["aligned"] += 1
            s["padded"] += int(results[k]["pad"] > 0)
            s["several_faces"] += int(results[k]["faces"] > 1)
    reasons = {}
    for f in failures:
        reasons[f["reason"]] = reasons.get(f["reason"], 0) + 1
    meta = dict(version=DATA_VERSION, inputs=len(keys_all), names=names, contents=contents, aligner=aligner,
                aligned=len(keys),
                failed=len(failures),
                reasons=reasons, per_source=per_source, seconds=round(time.time() - t0, 1), crop=CROP,
                workers=workers)
    _write_text(out_dir / "failures.json", json.dumps(failures, indent=1))
    _write_meta(meta_path, meta)
    print(f"align: {len(keys)} of {len(keys_all)} faces aligned in {meta['seconds']} s; failures: {reasons}")
    return load_aligned(cache)


def build_mean_face(cache: Path, out: Path | None = None):
    """The population mean face and landmark mirror table
    (``sdk/avatarizer/data/mean_face.npz``) from the training photos' 3D
    landmarks (see :mod:`avatarizer_export.meanface`)."""
    from avatarizer import landmarks as LM

    from . import meanface

    al = load_aligned(cache)
    train = [i for i, k in enumerate(al.keys) if not is_heldout(k)]
    t0 = time.time()
    mf = meanface.build(al.landmarks3d[train])
    path = out or LM._DATA
    with staged(Path(path), "part") as tmp:  # the SDK's data: whole or not at all
        mf.save(tmp)
    LM.mean_face.cache_clear()
    print(f"meanface: {len(train)} training faces, {len(mf.rigid)} rigid landmarks, "
          f"{int((mf.mirror == np.arange(len(mf.mirror))).sum())} on the mid-line, "
          f"{time.time() - t0:.1f} s -> {path}")
    return mf


def load_aligned(cache: Path | None = None, mmap: bool = True) -> Aligned:
    d = (cache or cache_dir()) / "aligned"
    if not (d / "meta.json").exists():
        raise FileNotFoundError(f"{d} has no aligned faces yet: run `avatarizer-export data align`")
    mode = "r" if mmap else None
    key = stage_key(cache, "aligned")
    return Aligned(key=key, keys=json.loads((d / "keys.json").read_text()),
                   crops=np.load(d / "crops128.npy", mmap_mode=mode),
                   hair=np.load(d / "hair128.npy", mmap_mode=mode),
                   landmarks=np.load(d / "landmarks.npy"), landmarks3d=np.load(d / "landmarks3d.npy"),
                   transforms=np.load(d / "transforms.npy"),
                   pose=np.load(d / "pose.npy"), pad=np.load(d / "pad.npy"))


# ------------------------------------------------------------ augmentation


def canonical_to_crop(size: int) -> np.ndarray:
    """2x3 affine: canonical [-1,1] -> crop pixel coordinates."""
    s = size / 2.0
    return np.array([[s, 0, s], [0, s, s]], np.float64)


def compose(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """a∘b for 2x3 affines (apply b first)."""
    A = np.vstack([a, [0, 0, 1]])
    B = np.vstack([b, [0, 0, 1]])
    return (A @ B)[:2]


def inv(a: np.ndarray) -> np.ndarray:
    return np.linalg.inv(np.vstack([a, [0, 0, 1]]))[:2]


def random_warp(rng: np.random.Generator, strength: float = 1.0) -> np.ndarray:
    """A small similarity in the canonical frame: rotation up to 10 deg, scale
    ±6%, shift ±0.05 (2.5% of the crop)."""
    ang = np.deg2rad(rng.uniform(-10, 10) * strength)
    sc = 1.0 + rng.uniform(-0.06, 0.06) * strength
    t = rng.uniform(-0.05, 0.05, 2) * strength
    c, s = math.cos(ang) * sc, math.sin(ang) * sc
    return np.array([[c, -s, t[0]], [s, c, t[1]]], np.float64)


def warp_crop(frame: np.ndarray, transform: np.ndarray, A: np.ndarray, size: int = CROP) -> np.ndarray:
    """Crop whose canonical frame is A applied to the photo's canonical frame:
    crop pixel p shows the frame point transform(A^-1(c(p)))."""
    import cv2

    pix_to_canon = inv(canonical_to_crop(size))
    m = compose(transform, compose(inv(A), pix_to_canon))  # crop pixel -> frame pixel
    return cv2.warpAffine(frame, m, (size, size), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                          borderMode=cv2.BORDER_REPLICATE)


def warp_mask(mask: np.ndarray, A: np.ndarray) -> np.ndarray:
    import cv2

    size = mask.shape[0]
    m = compose(canonical_to_crop(size), compose(A, inv(canonical_to_crop(size))))
    return cv2.warpAffine(mask, m, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)


def valid_mask(transform: np.ndarray, frame_shape, A: np.ndarray | None = None, size: int = CROP) -> np.ndarray:
    """Crop pixels that come from inside the photo (the rest is replicated border)."""
    t = transform if A is None else compose(transform, inv(A))
    c = (np.arange(size) + 0.5) * 2.0 / size - 1.0
    x = t[0, 0] * c[None, :] + t[0, 1] * c[:, None] + t[0, 2]
    y = t[1, 0] * c[None, :] + t[1, 1] * c[:, None] + t[1, 2]
    h, w = frame_shape[:2]
    return (x >= 0) & (x <= w) & (y >= 0) & (y <= h)


def apply_affine(points: np.ndarray, A: np.ndarray) -> np.ndarray:
    return points @ A[:, :2].T + A[:, 2]


def photometric(img: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, list[str]]:
    """The paper's photo-only augmentations: colour jitter, blur, grayscale."""
    import cv2

    ops = []
    x = img.astype(np.float32) / 255.0
    if rng.random() < 0.8:
        b = rng.uniform(0.8, 1.2)
        c = rng.uniform(0.8, 1.2)
        sat = rng.uniform(0.7, 1.3)
        mean = x.mean()
        x = (x - mean) * c + mean
        x = x * b
        gray = x.mean(-1, keepdims=True)
        x = gray + (x - gray) * sat
        x = x * (1 + rng.uniform(-0.04, 0.04, 3))  # white balance
        ops.append("jitter")
    if rng.random() < 0.3:
        s = rng.uniform(0.5, 1.5)
        x = cv2.GaussianBlur(x, (0, 0), s)
        ops.append("blur")
    if rng.random() < 0.1:
        x = np.repeat(x.mean(-1, keepdims=True), 3, -1)
        ops.append("gray")
    return (np.clip(x, 0, 1) * 255 + 0.5).astype(np.uint8), ops


# -------------------------------------------------------------------- pairs


def _pairs_worker(args):
    """One training photo -> list of (crop, params, augmentation description)."""
    key, path, transform, pad, lm, lm3d, hair, crop, n_aug, seed = args
    from avatarizer import landmarks as LM
    from avatarizer import schema
    from avatarizer.artist import AutoArtist

    global _ARTIST
    if _ARTIST is None:
        _ARTIST = AutoArtist()
    rng = np.random.default_rng(seed)
    out = []
    img = _load_rgb(Path(path))
    frame = _pad(img, int(pad)) if pad else img
    hair_f = hair.astype(np.float32) / 255.0
    # the drawn face is the photo's frontal face (head pose out in 3D); an
    # augmented copy shows the same person, so it gets the same geometry
    frontal = LM.frontalize(lm3d)
    base = _ARTIST.fit_landmarks(lm, crop, hair_f, valid=valid_mask(transform, frame.shape), frontal=frontal)
    out.append((crop, base, "original"))
    for _ in range(n_aug):
        A = random_warp(rng)
        aug_crop = warp_crop(frame, transform, A)
        aug_hair = warp_mask(hair_f, A)
        params = _ARTIST.fit_landmarks(apply_affine(lm, A).astype(np.float32), aug_crop, aug_hair,
                                       valid=valid_mask(transform, frame.shape, A), frontal=frontal)
        desc = ["warp"]
        if rng.random() < 0.5:
            aug_crop = np.ascontiguousarray(aug_crop[:, ::-1])
            params = schema.mirror(params)
            desc.append("flip")
        aug_crop, ops = photometric(aug_crop, rng)
        out.append((aug_crop, schema.clip(params), "+".join(desc + ops)))
    return key, out


_ARTIST = None


def check_photos_of_aligned(shared: Path, cache: Path) -> None:
    """ValueError unless ``shared``'s photos are the ones ``cache/aligned``
    was made from (by name and content, as its ``meta.json`` records them):
    the pairs warp each photo read from ``shared`` by the transform aligned
    from it, and another folder's photo under the same name was warped
    by the first person's transform, with no word (a review, session 75)."""
    meta = json.loads((cache / "aligned" / "meta.json").read_text())
    listed = list_faces(shared)
    keys = listed[: int(meta.get("inputs", 0))]
    same = names_key(keys) == meta.get("names")
    if same:
        try:
            same = photos_key(shared, keys) == meta.get("contents")
        except OSError:
            same = False
    if not same:  # (the record is of every photo listed, those that failed to align too: a sum, not per photo)
        raise ValueError(f"the photos in {shared} are not those {cache / 'aligned'} was made from (every photo "
                         f"listed counts, also those in its failures.json): run `avatarizer-export data align` "
                         f"with this --shared{' and --limit ' + str(len(keys)) if len(keys) < len(listed) else ''} "
                         "first")


def build_pairs(shared: Path, cache: Path, n_aug: int = 1, workers: int = 2, force: bool = False):
    out_dir = cache / "pairs"
    meta_path = out_dir / "meta.json"
    al = load_aligned(cache)
    check_photos_of_aligned(shared, cache)
    train = [i for i, k in enumerate(al.keys) if not is_heldout(k)]
    inputs = dict(aligned=stage_key(cache, "aligned"), artist=artist_key())
    if meta_path.exists() and not force:
        meta = json.loads(meta_path.read_text())
        if meta.get("version") == DATA_VERSION and meta.get("train_photos") == len(train) \
                and meta.get("augment_per_photo") == n_aug and meta.get("inputs") == inputs:
            print(f"pairs: reusing {out_dir} ({meta['pairs']} pairs)")
            return
    meta_path.unlink(missing_ok=True)  # until the new one is whole
    from tqdm import tqdm

    jobs = [(al.keys[i], str(shared / "data" / "faces" / al.keys[i]), al.transforms[i], al.pad[i],
             al.landmarks[i], al.landmarks3d[i], np.asarray(al.hair[i]), np.asarray(al.crops[i]), n_aug, 1000 + i)
            for i in train]
    total = len(jobs) * (1 + n_aug)
    out_dir.mkdir(parents=True, exist_ok=True)
    # written beside the stage's crops and moved onto them once whole (a reader's memory map of the old
    # ones stays valid; truncated in place it crashed with SIGBUS)
    crops_path = out_dir / "crops128.npy"
    crops_tmp = crops_path.with_name(f".crops128.part.{os.getpid()}.npy")
    crops = np.lib.format.open_memmap(crops_tmp, mode="w+", dtype=np.uint8, shape=(total, CROP, CROP, 3))
    params = np.zeros((total, 629), np.float32)
    source = np.zeros(total, np.int32)
    augs = []
    row = 0
    key_index = al.index()
    t0 = time.time()

    def consume(key, items):
        nonlocal row
        for c, p, d in items:
            crops[row] = c
            params[row] = p
            source[row] = key_index[key]
            augs.append(d)
            row += 1

    try:
        if workers > 1:
            import multiprocessing as mp

            with mp.get_context("spawn").Pool(workers) as pool:
                for key, items in tqdm(pool.imap(_pairs_worker, jobs, chunksize=16), total=len(jobs),
                                       desc="pairs", unit="photo"):
                    consume(key, items)
        else:
            for job in tqdm(jobs, desc="pairs", unit="photo"):
                consume(*_pairs_worker(job))
        crops.flush()
        os.replace(crops_tmp, crops_path)  # (the map, still open, now maps the stage's file)
    finally:
        crops_tmp.unlink(missing_ok=True)
    _save(out_dir / "params.npy", params[:row])
    _save(out_dir / "source.npy", source[:row])
    _write_text(out_dir / "augment.json", json.dumps(augs))
    meta = dict(version=DATA_VERSION, train_photos=len(train), augment_per_photo=n_aug, pairs=row,
                seconds=round(time.time() - t0, 1), inputs=inputs)
    _write_meta(meta_path, meta)
    print(f"pairs: {row} pairs from {len(train)} training photos in {meta['seconds']} s")


def load_pairs(cache: Path | None = None):
    d = (cache or cache_dir()) / "pairs"
    if not (d / "meta.json").exists():
        raise FileNotFoundError(f"{d} has no pairs yet: run `avatarizer-export data pairs`")
    return (np.load(d / "crops128.npy", mmap_mode="r"), np.load(d / "params.npy"),
            np.load(d / "source.npy"), json.loads((d / "augment.json").read_text()))


# ------------------------------------------------------------------ avatars


def fit_prior(face_params: np.ndarray, keep: float = 0.995) -> dict:
    """A Gaussian kernel prior over artist outputs (face slice, normalised
    space): PCA for the covariance shape, kernels at the real vectors."""
    from avatarizer import schema

    x = schema.normalize(face_params, schema.FACE)
    mean = x.mean(0)
    u, s, vt = np.linalg.svd(x - mean, full_matrices=False)
    var = s ** 2 / (len(x) - 1)
    k = int(np.searchsorted(np.cumsum(var) / var.sum(), keep) + 1)
    return dict(data=x.astype(np.float32), mean=mean.astype(np.float32), components=vt[:k].astype(np.float32),
                std=np.sqrt(var[:k]).astype(np.float32), k=k)


def sample_prior(prior: dict, n: int, rng: np.random.Generator, bandwidth: float = 0.5) -> np.ndarray:
    """Face slices (denormalised): a random real vector plus correlated noise
    of ``bandwidth`` times the population spread, per sample."""
    from avatarizer import schema

    idx = rng.integers(0, len(prior["data"]), n)
    z = rng.standard_normal((n, prior["k"])).astype(np.float32) * prior["std"] * bandwidth
    x = prior["data"][idx] + z @ prior["components"]
    return schema.denormalize(np.clip(x, -1, 1), schema.FACE)


def build_avatars(cache: Path, n: int = 100_000, seed: int = 0, force: bool = False):
    from avatarizer import schema

    out_dir = cache / "avatars"
    meta_path = out_dir / "meta.json"
    pairs = stage_key(cache, "pairs")
    if meta_path.exists() and not force:
        meta = json.loads(meta_path.read_text())
        if meta.get("version") == DATA_VERSION and meta.get("n") == n and meta.get("prior_over") == PRIOR_OVER \
                and meta.get("seed") == seed and meta.get("pairs") == pairs:
            print(f"avatars: reusing {out_dir} ({n} vectors)")
            return
    meta_path.unlink(missing_ok=True)  # until the new one is whole
    _, params, source, augs = load_pairs(cache)
    real = params[[i for i, a in enumerate(augs) if a == "original"]]
    if len(real) < 2:  # (numpy's "high <= 0" from the donors' draw, or a prior of one vector)
        raise ValueError(f"avatars: {cache / 'pairs'} holds {len(real)} training photo(s): the prior of avatars "
                         "needs training photos (a folder of held-out photos alone makes no pairs)")
    # the prior covers every pair's avatar, the warped and flipped ones too: a
    # prior over frontal originals only left D_t unable to reconstruct the
    # avatars of augmented pairs (MSE 0.018 vs 0.001), half of F's targets
    prior = fit_prior(params[:, schema.FACE])
    rng = np.random.default_rng(seed)
    out = np.empty((n, schema.PARAM_COUNT), np.float32)
    out[:, schema.FACE] = sample_prior(prior, n, rng)
    # hair and accessories: real artist outputs recombined with other faces, half
    # of them mirrored, plus a share from the procedural prior for variety
    donors = rng.integers(0, len(real), n)
    rest = slice(schema.FACE.stop, schema.PARAM_COUNT)
    out[:, rest] = real[donors][:, rest]
    flip = rng.random(n) < 0.5
    out[flip] = schema.mirror(out[flip])
    proc = rng.random(n) < 0.25
    out[proc, rest] = schema.sample(int(proc.sum()), seed=seed + 1)[:, rest]
    out = schema.clip(out)
    out_dir.mkdir(parents=True, exist_ok=True)
    _save(out_dir / "params.npy", out)
    with staged(out_dir / "prior.npz", "part") as tmp:
        with open(tmp, "wb") as f:
            np.savez(f, **{k: v for k, v in prior.items() if k != "data"})
    meta = dict(version=DATA_VERSION, n=n, seed=seed, prior_components=prior["k"], real_vectors=len(params),
                prior_over=PRIOR_OVER, bandwidth=0.5, pairs=pairs)
    _write_meta(meta_path, meta)
    print(f"avatars: {n} vectors from a {prior['k']}-component kernel prior over {len(params)} artist outputs")


def load_avatars(cache: Path | None = None) -> np.ndarray:
    d = (cache or cache_dir()) / "avatars"
    if not (d / "meta.json").exists():
        raise FileNotFoundError(f"{d} has no avatars yet: run `avatarizer-export data avatars`")
    return np.load(d / "params.npy", mmap_mode="r")


# ------------------------------------------------------------------- docs


def write_split_doc(shared: Path, cache: Path, path: Path = ROOT / "docs" / "split.md"):
    keys = list_faces(shared)
    held = [k for k in keys if is_heldout(k)]
    per = {}
    for k in keys:
        s = per.setdefault(k.split("/")[0], [0, 0])
        s[0] += 1
        s[1] += int(is_heldout(k))
    meta = json.loads((cache / "aligned" / "meta.json").read_text()) if (cache / "aligned" / "meta.json").exists() else None
    lines = ["# Held-out split", "",
             "Fixed by file name (`avatarizer_export.data.is_heldout`): a photo is held out when the SHA-1 "
             "of `folder/file` (first 8 hex digits as an integer) is divisible by 5 for `ffhq128-labelled` "
             "(20%, so attribute metrics have ~100 labelled photos) and by 10 for every other folder (10%). "
             "Held-out photos never enter the paired data, the avatar prior or any training set.", "",
             "| folder | photos | held out |", "| --- | --- | --- |"]
    for src, (n, h) in per.items():
        lines.append(f"| `{src}` | {n} | {h} |")
    lines.append(f"| all | {len(keys)} | {len(held)} |")
    if meta:
        lines += ["", "## Alignment", "",
                  f"{meta['aligned']} of {meta['inputs']} photos aligned ({meta['seconds']} s with "
                  f"{meta.get('workers', 2)} workers). "
                  "Failures by reason:", ""]
        lines += [f"- {why}: {n}" for why, n in meta["reasons"].items()] or ["- none"]
        lines += ["", "| folder | photos | aligned | needed a padded border | several faces |",
                  "| --- | --- | --- | --- | --- |"]
        for src, s in meta["per_source"].items():
            lines.append(f"| `{src}` | {s['photos']} | {s['aligned']} | {s['padded']} | {s['several_faces']} |")
    lines += ["", "The held-out file names are listed in `docs/heldout.txt`.", ""]
    _write_text(path, "\n".join(lines))
    _write_text(path.parent / "heldout.txt", "\n".join(held) + "\n")
    print(f"wrote {path} and {path.parent / 'heldout.txt'}")


def _mean_face_not_shipped(shared: Path, cache: Path, limit: int | None) -> str | None:
    """Why ``data meanface`` must not rewrite the SDK's committed
    ``mean_face.npz`` (a smoke run's photos, a ``--shared`` folder of one's
    own, or a cache aligned from only part of the project's photos), or
    None when it may: the file describes the project's training photos."""
    project = project_shared()
    if limit is not None:
        return "a --limit run"
    if Path(shared).resolve() != project:
        return f"{shared} is not the project's shared folder ({project})"
    meta_path = cache / "aligned" / "meta.json"
    if meta_path.exists():  # (without it, build_mean_face says to run `data align`)
        meta = json.loads(meta_path.read_text())
        keys = list_faces(shared)
        if meta.get("inputs") != len(keys) or meta.get("names") != names_key(keys):
            return f"{cache / 'aligned'} holds only some of the project's photos (a --limit run's)"
    return None


def build(stage: str, shared: Path, cache: Path, *, workers: int = 2, limit: int | None = None, augment: int = 1,
          avatars: int = 100_000, force: bool = False) -> None:
    """One data stage (``align``, ``meanface``, ``pairs``, ``avatars`` or ``all``), cached and resumable."""
    stages = ["align", "meanface", "pairs", "avatars"] if stage == "all" else [stage]
    for st in stages:
        if st == "align":
            build_aligned(shared, cache, workers=workers, limit=limit, force=force)
            project = project_shared()
            if limit is None and Path(shared).resolve() == project:
                # (a smoke run's 20 photos, or a --shared folder of one's own, rewrote the committed
                # docs/split.md and heldout.txt: they describe the project's photos)
                write_split_doc(shared, cache)
            elif limit is None:
                print(f"align: docs/split.md and docs/heldout.txt not written: {shared} is not the project's "
                      f"shared folder ({project}), whose split they describe")
        elif st == "meanface":
            why = _mean_face_not_shipped(shared, cache, limit)
            if why is None:
                build_mean_face(cache)
            else:  # (like docs/split.md above: the SDK's committed mean face is the project's photos')
                from avatarizer import landmarks as LM

                out = cache / "meanface" / "mean_face.npz"
                print(f"meanface: the SDK's {LM._DATA} not written ({why}): the mean face goes to {out}")
                out.parent.mkdir(parents=True, exist_ok=True)
                build_mean_face(cache, out)
        elif st == "pairs":
            build_pairs(shared, cache, n_aug=augment, workers=workers, force=force)
        elif st == "avatars":
            build_avatars(cache, n=avatars, force=force)
        else:
            raise ValueError(f"unknown data stage {st!r}")


def main_data(args) -> int:
    build(args.stage, shared_dir(args.shared), cache_dir(args.cache), workers=args.workers, limit=args.limit,
          augment=args.augment, avatars=args.avatars, force=args.force)
    return 0


def add_parser(sub):
    from .argtypes import count, positive_int

    p = sub.add_parser("data", help="build the datasets from ../shared (cached; see docs/data.md)")
    p.add_argument("stage", choices=["align", "meanface", "pairs", "avatars", "all"])
    p.add_argument("--shared", help="the shared folder (default ../shared)")
    p.add_argument("--cache", help="cache folder (default <repo>/cache)")
    p.add_argument("--workers", type=positive_int, default=min(2, os.cpu_count() or 1))
    p.add_argument("--limit", type=positive_int, help="only the first N photos (smoke runs)")
    p.add_argument("--augment", type=count, default=1, help="augmented copies per training photo")
    p.add_argument("--avatars", type=positive_int, default=100_000)
    p.add_argument("--force", action="store_true", help="rebuild even if the cache is current")
    p.set_defaults(func=main_data)
