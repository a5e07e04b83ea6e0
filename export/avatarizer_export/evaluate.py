"""``avatarizer-export eval``: metrics of DESIGN.md on any folder of face photos.

    avatarizer-export eval --faces ../shared/data/faces/ffhq128 --heldout --methods artist,model,direct,nearest --json

Pseudo ground truth is the auto-artist's avatar for the un-augmented photo.
Methods predict the *face slice*; every method's avatar takes its hair and
accessory slices from the same pseudo ground truth, so the render metrics
compare faces (hair retrieval is evaluated separately). Renders are 256 px on
white. Identity top-1 is computed within consecutive groups of N photos (100
by default; the last group takes the remainder, so it holds N to 2N - 1
photos) and averaged; ``identity_n`` reports the largest group used (all the
photos when there are fewer than N).
"""
from __future__ import annotations

import json
import os
import re
import sys
from pathlib import Path

import numpy as np

from avatarizer import schema
from avatarizer.checks import one_line

from .argtypes import exaggeration as _exaggeration
from .argtypes import positive_int
from . import metrics as M
from .data import is_heldout



def image_extensions() -> tuple[str, ...]:
    """File name extensions of the photos ``eval`` takes: every format
    ``avatarizer.imageio.load_image`` reads, which is every format Pillow
    opens (JPEG, PNG, WebP, BMP, TIFF, GIF, ...), less Pillow's stub formats
    (HDF5, GRIB, BUFR, WMF: no decoder without a handler) and MPEG video."""
    from PIL import Image, ImageFile

    def reads(fmt: str) -> bool:
        factory = Image.OPEN.get(fmt, (None,))[0]
        return factory is not None and fmt != "MPEG" and not (
            isinstance(factory, type) and issubclass(factory, ImageFile.StubImageFile))

    return tuple(sorted(e for e, fmt in Image.registered_extensions().items() if reads(fmt)))


IMG_EXT = image_extensions()
#: photo formats that are not in IMG_EXT here (no Pillow plugin): left out with a warning
UNREAD_PHOTO_EXT = frozenset({".heic", ".heif", ".avif", ".jxl", ".cr2", ".cr3", ".nef", ".arw",
                              ".dng", ".raf", ".orf", ".rw2", ".psd"}) - frozenset(IMG_EXT)
MODEL_RUN = "mapper_full"  # the run behind method "model"


# ------------------------------------------------------------- predictors


class TorchPredictor:
    """Face-slice predictors from training runs (export side); ``nearest``
    reads the pairs of the data cache ``cache`` (default: cache_dir())."""

    def __init__(self, method: str, cache: Path | None = None):
        import torch

        from . import train as T

        self.method = method
        self.torch = torch
        if method == "direct" or method.startswith("direct:"):
            run = method.split(":", 1)[1] if ":" in method else "direct"
            mods, ck = T.load_modules(run, "direct")
            self.net = mods["net"]
            self.size = ck["config"]["net"]["image_size"]
            self.kind = "direct"
        elif method == "nearest":
            mods, ck = T.load_modules("image_ae", "image_ae")
            self.enc = mods["enc"]
            self.size = ck["config"]["net"]["image_size"]
            from .data import load_pairs

            _, params, source, augs = load_pairs(cache)
            orig = np.array([a == "original" for a in augs])
            z = T.pair_encodings(cache)["z_pairs"][orig]
            self.bank_z = z / np.linalg.norm(z, axis=1, keepdims=True)
            self.bank_y = params[orig][:, schema.FACE]
            self.kind = "nearest"
        elif method == "model" or (method.partition(":")[0] in ("model", "mapper") and method.partition(":")[2]):
            run = method.split(":", 1)[1] if ":" in method else MODEL_RUN
            self.net, self.size = T.load_image_to_face(run)
            self.kind = "model"
        else:  # (an unknown name was evaluated as the model run)
            raise ValueError(f"unknown training-run method {method!r} (model, direct, nearest, model:RUN, "
                             "mapper:RUN, direct:RUN)")

    def __call__(self, crops: np.ndarray) -> np.ndarray:
        from .train import to_input

        with self.torch.no_grad():
            x = to_input(crops, self.size)
            if self.kind == "direct":
                return schema.denormalize(self.net(x).numpy(), schema.FACE)
            if self.kind == "nearest":
                z = self.enc(x).numpy()
                z /= np.linalg.norm(z, axis=1, keepdims=True)
                return self.bank_y[np.argmax(z @ self.bank_z.T, axis=1)]
            return schema.denormalize(self.net(x).numpy(), schema.FACE)


SHIPPED_ESTIMATORS = ("hybrid", "model", "artist")
#: what ``eval`` reports per method (DESIGN.md), ``no_avatar`` and the
#: identity of the same avatars drawn without their hats added (with
#: ``hats_drawn``), and without hats or glasses (``_face_only``, with
#: ``glasses_drawn``); the artist itself has no pseudo ground truth to be
#: compared with
METRIC_KEYS = ("param_l1", "render_l1", "render_lpips", "identity_top1", "identity_top1_frontal",
               "identity_top1_symmetric", "identity_n", "render_detect_rate", "skin_delta_e", "hair_delta_e",
               "hair_iou", "no_avatar", "identity_top1_frontal_hatless", "identity_top1_symmetric_hatless",
               "hats_drawn", "identity_top1_frontal_face_only", "identity_top1_symmetric_face_only", "glasses_drawn")
ARTIST_KEYS = tuple(k for k in METRIC_KEYS if k not in ("param_l1", "render_l1", "render_lpips"))
#: the keys of :data:`METRIC_KEYS` that count (0, not null, with nothing to score)
COUNT_KEYS = ("identity_n", "no_avatar", "hats_drawn", "glasses_drawn")


def shipped_estimator(method: str) -> str:
    """``shipped`` → ``"auto"`` (what ``Avatarizer()`` runs); ``shipped:model`` etc. → that estimator."""
    est = method.split(":", 1)[1] if ":" in method else "auto"
    if est not in ("auto", *SHIPPED_ESTIMATORS):
        raise ValueError(f"{method!r}: the estimator after 'shipped:' must be one of {SHIPPED_ESTIMATORS}")
    return est


def shipped_params(files: list[Path], progress: bool = True, estimator: str = "auto",
                   attributes: list | None = None) -> np.ndarray:
    """What ships, all 629 parameters (face, the hair stage's hair and
    accessories, age lines): each photo through ``Avatarizer()`` (image mode,
    the shipped model files, the runtime's own alignment and preprocessing;
    ``estimator`` as ``Avatarizer(estimator=...)``). NaN rows where the SDK
    finds no face. A list ``attributes`` receives each photo's
    ``Avatar.attributes`` (None without a face or regressor)."""
    from tqdm import tqdm

    from avatarizer import Avatarizer
    from avatarizer.imageio import load_image

    out = np.full((len(files), schema.PARAM_COUNT), np.nan, np.float32)
    with Avatarizer(max_faces=1, estimator=estimator) as av:
        for i, f in enumerate(tqdm(files, desc=f"shipped ({av.estimator})", disable=not progress)):
            try:
                a = av.from_frame(load_image(f))
            except FileNotFoundError:  # (a photo gone since it was aligned: not "no face")
                raise
            except ValueError:
                a = None
            if a is not None:
                out[i] = a.params
            if attributes is not None:
                attributes.append(None if a is None else a.attributes)
    return out


# ------------------------------------------------------------ photo colours


def photo_skin(crop: np.ndarray, lm: np.ndarray) -> np.ndarray:
    """Median cheek colour of the photo, independent of the artist's sampling:
    two discs on the cheeks, between the eye line and the mouth."""
    s = crop.shape[0]
    ys, xs = np.mgrid[0:s, 0:s]
    c = (np.stack([xs, ys], -1) + 0.5) * 2 / s - 1
    out = []
    for cx in (-0.27, 0.27):
        m = ((c[..., 0] - cx) ** 2 + (c[..., 1] - 0.14) ** 2) < 0.06 ** 2
        out.append(crop[m])
    px = np.concatenate(out).astype(np.float32) / 255
    return np.median(px, 0)


def photo_hair(crop: np.ndarray, hair: np.ndarray | None) -> np.ndarray | None:
    """Median colour of the photo's hair region: the segmentation's
    person-minus-face mask above the eye line (below it the mask holds the
    neck and clothes)."""
    if hair is None:
        return None
    s = crop.shape[0]
    ys = (np.arange(s) + 0.5) * 2.0 / s - 1.0
    m = (hair > 0.5) & (ys[:, None] < -0.1)
    if m.sum() < 30:
        return None
    return np.median(crop[m].astype(np.float32) / 255, 0)


# ------------------------------------------------------------------- eval


def _folder_name(folder: Path) -> str:
    """The name the held-out split keys ``folder``'s photos by: the name as
    the path reads once ``.`` and ``..`` are taken out (``--faces .`` has
    the folder's own name, not ""), unless that is not one of the project's
    sources (:data:`avatarizer_export.data.SOURCES`) and a name along its
    chain of links is: training keys ``shared/data/faces/<source>`` by the
    source's name whatever the folder is a link to (data kept on another
    disk), and a link of another name to a source is that source."""
    from .data import SOURCES

    path = Path(os.path.normpath(Path(folder).absolute()))
    seen = set()
    names = [path.name]
    while path.is_symlink() and path not in seen and len(seen) < 40:  # (a loop of links ends)
        seen.add(path)
        path = Path(os.path.normpath(path.parent / os.readlink(path)))
        names.append(path.name)
    real = _real(folder)
    if real is not None:
        names.append(real.name)
    return next((n for n in names if n in SOURCES), names[0])


def list_photos(faces: Path, heldout: bool, limit: int | None, sample: int | None = None) -> list[Path]:
    """The photos of ``faces`` in name order (held-out ones only with ``heldout``):
    the first ``limit``, or ``sample`` of them drawn at random (seed 0, kept in
    name order; file names can sort by a label, as UTKFace's start with the age)."""
    entries = list(faces.iterdir())
    files = sorted(p for p in entries if p.suffix.lower() in IMG_EXT and not p.is_dir())  # (a folder "x.png": none)
    other = sorted({p.suffix.lower() for p in entries if p.suffix.lower() in UNREAD_PHOTO_EXT})
    if other:  # (an iPhone's .heic beside JPEGs was left out without a word)
        n = sum(p.suffix.lower() in UNREAD_PHOTO_EXT for p in entries)
        _warn(f"{faces}: left out {n} photo(s) of a kind Pillow here cannot read ({', '.join(other)}); "
              "convert them to JPEG or PNG")
    if not files and any(p.is_dir() for p in entries):
        _warn(f"{faces}: no photos in the folder itself, and its subfolders are not searched (give them to "
              "--faces, comma-separated)")
    if heldout:  # keyed by the folder's real name: "." or a link of another name is the same split
        from .data import heldout_twins

        from .data import SOURCES

        folder = _folder_name(faces)
        if folder not in SOURCES:
            # the split is of the project's own folders by their names: another folder's names were hashed
            # into an arbitrary tenth (a copy of ffhq128 under another name scored training photos as held
            # out; a review, session 77)
            if files:
                _warn(f"{faces}: --heldout keeps none of it: the project's split holds out photos of its own "
                      f"folders ({', '.join(SOURCES)}) by name, and this folder is none of them (photos of "
                      "your own were never trained on: leave --heldout out to grade them)")
            files = []
        kept = [p for p in files if is_heldout(f"{folder}/{p.name}")]
        # (not the held-out photos a training photo repeats under another name: UTKFace's copies)
        twins = heldout_twins(faces, folder) if kept else frozenset()
        kept = [p for p in kept if p.name not in twins]
        if files and not kept:  # (a user's own folder: "faces": 0 with no word; a review, session 68)
            _warn(f"{faces}: none of its {len(files)} photo(s) is in the project's held-out split (--heldout "
                  "keeps the photos the split holds out by name, a tenth of a folder: leave it out to grade a "
                  "folder of your own)")
        files = kept
    if sample and sample < len(files):
        keep = np.sort(np.random.default_rng(0).choice(len(files), sample, replace=False))
        files = [files[i] for i in keep]
    return files[:limit] if limit is not None else files  # (0 is none, not all)


def prepare(files: list[Path], progress: bool = True, exaggeration: float | None = None) -> dict:
    """Aligns every photo and runs the artist on it: crops, pseudo ground truth,
    landmarks, photo skin and hair colours (NaN where no hair) per aligned photo."""
    from tqdm import tqdm

    from avatarizer.align import AlignOptions, FaceAligner
    from avatarizer.artist import AutoArtist
    from avatarizer.imageio import load_image

    from avatarizer.artist import ArtistStyle

    artist = AutoArtist(ArtistStyle() if exaggeration is None else ArtistStyle(exaggeration=exaggeration))
    from .data import valid_mask
    from .hairbank import eval_region

    crops, gts, lms, lm3s, skins, hairs, names, paths = [], [], [], [], [], [], [], []
    hair_photo, hair_region = [], []
    unreadable, why = [], []  # (each with the reason load_image gave: "too large" is not "not an image")
    with FaceAligner(AlignOptions(mode="image", max_faces=1, segmentation=True)) as al:
        for f in tqdm(files, desc="align+artist", disable=not progress):
            try:
                image = load_image(f)
            except ValueError as exc:  # not an image Pillow can decode, empty, truncated, too small or huge
                unreadable.append(str(Path(f).absolute()))
                msg = str(exc)
                for name in {str(f), str(Path(f).absolute())}:  # (a line break in the name is not the message's
                    msg = msg.replace(name, one_line(name))     # end: the reason was cut at it; a review, session 77)
                why.append(msg.splitlines()[0] if msg else type(exc).__name__)
                continue
            try:
                face = al.align(image)
            except ValueError:
                face = None
            if face is None:
                continue
            crops.append(face.crop(128))
            gts.append(artist.fit(face))
            lms.append(face.canonical)
            lm3s.append(face.landmarks)
            skins.append(photo_skin(face.crop(128), face.canonical))
            h = photo_hair(face.crop(128), face.hair_mask(128))
            hairs.append(np.full(3, np.nan, np.float32) if h is None else h)
            # the hair silhouette as hairbank's IoU takes it: the segmentation's hair, compared
            # outside the face oval, above the chin, where the crop shows the photo
            hm = face.hair_mask(128)
            region = eval_region(face.canonical, valid_mask(face.transform, face.frame_shape), 128)
            hair_region.append(region)
            hair_photo.append((np.zeros((128, 128), bool) if hm is None else (hm * 255).astype(np.uint8) >= 128)
                              & region)
            names.append(f.name)
            paths.append(str(Path(f).absolute()))  # (a cache reused from another folder finds them again)
    return {"faces": len(files), "names": names, "paths": paths, "unreadable": unreadable, "unreadable_why": why,
            "crops": np.stack(crops) if crops else np.zeros((0, 128, 128, 3), np.uint8),
            "gts": np.stack(gts) if gts else np.zeros((0, schema.PARAM_COUNT), np.float32),
            "lms": np.stack(lms) if lms else np.zeros((0, 478, 2), np.float32),
            "lm3s": np.stack(lm3s) if lm3s else np.zeros((0, 478, 3), np.float32),
            "skins": np.stack(skins) if skins else np.zeros((0, 3), np.float32),
            "hairs": np.stack(hairs) if hairs else np.zeros((0, 3), np.float32),
            "hair_photo": np.stack(hair_photo) if hair_photo else np.zeros((0, 128, 128), bool),
            "hair_region": np.stack(hair_region) if hair_region else np.zeros((0, 128, 128), bool)}


#: the version of what :func:`prepare` keeps; a cache of another version is prepared anew
CACHE_VERSION = "v7"


def _real(f: Path) -> Path | None:
    """``f`` with every link followed (``Path.resolve``); None for a link
    loop (RuntimeError on Python 3.11) or a path the system refuses."""
    try:
        return Path(f).resolve()
    except (OSError, RuntimeError):
        return None


def unique_photos(files: list[Path]) -> tuple[list[Path], int]:
    """``files`` with each photo once, keeping the first: the same file
    reached twice (another spelling, a link: the same path with links
    followed) or a byte-identical copy (the same SHA-256 of a non-empty
    regular file; only files that share their size with another are read,
    a megabyte at a time) is left out, since a photo among its own copies
    ties with them and ties count against the avatar (identity 0). Entries
    that cannot be resolved or read, and anything not a regular file (a
    named pipe, a device: never opened here), stay (:func:`prepare` counts
    them unreadable). Returns (the photos, how many were left out)."""
    import stat

    from avatarizer.runtime.files import sha256_file  # (streamed, a megabyte at a time)

    paths: set[Path] = set()
    kept = []
    for f in files:
        real = _real(f)
        if real is not None:
            if real in paths:
                continue
            paths.add(real)
        try:
            st = os.stat(f)
            size = st.st_size if stat.S_ISREG(st.st_mode) else 0
        except OSError:
            size = 0
        kept.append((f, size))
    sizes: dict[int, int] = {}
    for _, size in kept:
        sizes[size] = sizes.get(size, 0) + 1

    def digest(f: Path) -> str | None:
        try:
            return sha256_file(f)
        except OSError:
            return None

    digests: set[str] = set()
    out = []
    for f, size in kept:
        if size and sizes[size] > 1:
            d = digest(f)
            if d is not None:
                if d in digests:
                    continue
                digests.add(d)
        out.append(f)
    return out, len(files) - len(out)


def cache_key(files: list[Path], exaggeration: float | None = None) -> str:
    """What a ``--prepared`` cache is keyed on: :data:`CACHE_VERSION`, the
    exaggeration, the auto-artist that drew the references (its source,
    fitted detectors and mean face: ``data.artist_key``), the aligner that
    made the crops, landmarks and hair masks (the SDK's alignment code and
    MediaPipe's version: ``data.aligner_key``; a change of it kept the old
    crops, a review), and per photo, in
    order, its path with every link
    followed, its size and its modification time (ns): other photos under
    the same names (another folder, a replaced or edited file) or another
    list mean a fresh preparation. Names are encoded as the system gives
    them (``os.fsencode``: a name that is not UTF-8 is its own bytes)."""
    import hashlib

    from .data import aligner_key, artist_key

    h = hashlib.sha256(f"{CACHE_VERSION} {exaggeration!r}\n".encode())
    h.update(json.dumps(artist_key(), sort_keys=True).encode() + b"\n")
    h.update(aligner_key().encode() + b"\n")
    for f in files:
        real = _real(f)
        try:
            st = os.stat(f)
            stamp = f"{st.st_size} {st.st_mtime_ns}"
        except OSError:  # missing, a link loop: prepare counts it unreadable
            stamp = "-"
        h.update(os.fsencode(real if real is not None else Path(f).absolute()) + b"\0" + stamp.encode() + b"\n")
    return h.hexdigest()[:16]


def prepared(files: list[Path], cache: Path | None, progress: bool = True, exaggeration: float | None = None) -> dict:
    """``prepare`` with its result kept in ``cache`` (an .npz, whatever its
    name), reused while :func:`cache_key` is the same; a cache made for
    other photos or settings is prepared anew and replaced (a line on
    stderr says so). A file that is not an eval cache is never written
    over (ValueError). The cache is written through a temporary file in
    its folder (made then, if missing), so it is never left half-written."""
    import tempfile

    from .onnx_util import NPZ_UNREADABLE

    if cache is None:
        return prepare(files, progress, exaggeration)
    key = cache_key(files, exaggeration)
    if cache.exists():
        try:
            with np.load(cache, allow_pickle=False) as z:
                lists = ("names", "paths", "unreadable", "unreadable_why")
                # (what every eval cache has held: "paths" and the unreadable lists came later, in v7)
                if not {"key", "faces", "names", "crops", "gts"} <= set(z.files) or z["key"].shape != () \
                        or not re.fullmatch(r"[0-9a-f]{16,64}", str(z["key"])):
                    # (someone's archive that only happens to have a "key" array was replaced)
                    raise ValueError("not the arrays an eval cache holds")
                stored = str(z["key"])
                if stored == key:
                    out = {k: z[k] for k in z.files if k not in ("key", "faces", *lists)}
                    out.update({k: [str(n) for n in z[k]] for k in lists if k in z.files}, faces=int(z["faces"]))
                    return out
        except NPZ_UNREADABLE as exc:
            # another file (a photo, someone's array, an empty or truncated one): never written over
            exc = exc if str(exc) else type(exc).__name__
            raise ValueError(f"--prepared {cache} is not an eval cache ({exc}); name a new file") from None
        print(f"avatarizer-export eval: --prepared {cache} was made for other photos (another list, or files "
              "changed since) or other settings: preparing them anew and replacing it", file=sys.stderr)
    out = prepare(files, progress, exaggeration)
    cache.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".avatarizer-", suffix=".npz", dir=cache.parent)
    try:
        with os.fdopen(fd, "wb") as fh:  # (np.savez would add .npz to any other name: the cache never found again)
            np.savez(fh, key=key, **{k: (np.array(v, dtype=str) if k in ("names", "paths", "unreadable", "unreadable_why")
                                     else v)
                                     for k, v in out.items()})
        mask = os.umask(0)
        os.umask(mask)
        os.chmod(tmp, 0o666 & ~mask)  # as a file opened for writing would be (mkstemp makes it 0600)
        os.replace(tmp, cache)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return out


def evaluate(files: list[Path], methods: list[str], labels: Path | dict | None = None, identity_n: int = 100,
             progress: bool = True, keep: dict | None = None, cache: Path | None = None,
             exaggeration: float | None = None, groups: bool = False, data_cache: Path | None = None,
             labels_home: Path | None = None, labels_beside: bool = False) -> dict:
    """Metrics for ``methods`` on the photos ``files``. When ``keep`` is a dict it
    receives the per-photo arrays (names, crops, pseudo ground truth, and each
    method's avatars) for figures. ``cache``: an .npz keeping the aligned
    photos and their pseudo ground truth between calls on the same files;
    ``data_cache``: the data cache folder the ``nearest`` method reads.
    ``groups``: also the metrics per age band, skin-tone group and glasses
    type (:func:`photo_groups`) under ``result["groups"]``. ``labels``: a
    labels file (ffhq128-labelled format) or :func:`read_labels` of one;
    ``labels_home``: the folder holding it (default: a file's own folder),
    see :func:`row_labels` for the photos it applies to. ``labels_beside``
    (``eval`` without ``--labels``): where ``labels`` is None, the
    ``attributes.jsonl`` beside the photos (:func:`labels_beside_rows`).
    A photo in ``files`` twice (or a byte-identical copy) is scored once
    (:func:`unique_photos`, with a warning); ``faces`` counts it once."""
    from tqdm import tqdm

    if labels is not None and not isinstance(labels, dict):
        labels_home = Path(labels).parent if labels_home is None else labels_home
        labels = read_labels(Path(labels))
    given = len(files)
    files, dropped = unique_photos(files)
    if dropped:
        _warn(f"left out {dropped} of {given} photo(s) already in the list (the same file reached twice, or a "
              "byte-identical copy): each photo is scored once")
    prep = prepared(files, cache, progress, exaggeration)
    names, crops, gts, lm3s, skins = prep["names"], prep["crops"], prep["gts"], prep["lm3s"], prep["skins"]
    # the aligned photos' own paths, row by row: several folders may hold the same file name
    paths = [Path(p) for p in prep["paths"]]
    hairs = [None if not np.isfinite(h).all() else h for h in prep["hairs"]]
    from_file = labels is not None
    if labels:
        labels = row_labels(paths, labels, labels_home)
    elif labels is None and labels_beside:
        labels = labels_beside_rows(paths)
    result = {"faces": prep["faces"], "unreadable": len(prep["unreadable"]), "aligned": len(names), "methods": {}}
    if prep["unreadable"]:
        bad, why = prep["unreadable"], prep["unreadable_why"]  # (both in every cache since v7)
        # (every one named, as README says: the first five alone left a truncated JPEG unnamed among six)
        _warn(f"skipped {len(bad)} of {prep['faces']} file(s) that could not be read as images: "
              + "; ".join(f"{one_line(b)} ({w})" for b, w in zip(bad, why)))
    if from_file and names and not (isinstance(labels, list) and any(t is not None for t in labels)):
        _warn(f"--labels matched none of the {len(names)} aligned photo(s) (it names bare file names of the "
              "folder holding it): no attribute is scored")
    if not len(names):
        # nothing to score: every metric null (DESIGN.md's keys), not a crash
        for method in methods:
            keys = ARTIST_KEYS if method == "artist" else METRIC_KEYS
            result["methods"][method] = {k: (0 if k in COUNT_KEYS else None) for k in keys}
        result["attributes"] = {}
        if keep is not None:
            keep.update(names=names, crops=crops, gts=gts)
        return result
    per_photo: dict[str, dict[str, np.ndarray]] = {}
    import avatarizer

    gt_imgs = np.stack([avatarizer.render(g, M.RENDER_SIZE, background="white") for g in gts]) if len(gts) else None
    lp = None
    shipped_attrs: dict[str, list] = {}
    with M.LandmarkProbe() as probe:
        for method in methods:
            if method == "artist":
                preds = gts
            else:
                preds = gts.copy()
                if method.split(":")[0] == "shipped":
                    # the whole avatar that ships: its face, hair and accessories
                    attrs: list = []
                    full = shipped_params(paths, progress, shipped_estimator(method),
                                          attributes=attrs)
                    shipped_attrs[method] = attrs
                    ok = np.isfinite(full).all(1)
                    preds[ok] = full[ok]
                else:  # a trained face model: its face slice with the artist's hair and accessories
                    face = TorchPredictor(method, data_cache)(crops) if len(crops) else np.zeros((0, 483), np.float32)
                    ok = np.isfinite(face).all(1)
                    preds[ok, schema.FACE] = face[ok]
                preds = schema.clip(preds)
                if not ok.all():
                    preds[~ok] = np.nan  # a photo the SDK finds no face in keeps no avatar
            imgs = np.stack([avatarizer.render(p, M.RENDER_SIZE, background="white") if np.isfinite(p).all()
                             else np.full((M.RENDER_SIZE, M.RENDER_SIZE, 4), 255, np.uint8) for p in preds])
            r3 = np.full((len(preds), 478, 3), np.nan, np.float32)
            for i, im in enumerate(tqdm(imgs, desc=f"{method}: probe", disable=not progress)):
                got = probe.landmarks3d(im) if np.isfinite(preds[i]).all() else None
                if got is not None:
                    r3[i] = got
            idv = M.identity_variants(lm3s, r3, n=identity_n)
            hits, n = idv["hits"]["identity_top1"], idv["identity_n"]
            # photos the method drew no avatar for (the SDK found no face) are misses for the
            # renders and identity, and left out of the means against the photo or the pseudo
            # ground truth (filled with it they scored as perfect); counted in no_avatar
            has = np.isfinite(preds).all(1)
            # the same avatars with no hat drawn (the hair as drawn): a crown down to the forehead hides
            # the brows' tops the landmark probe reads on the render, while it reads the photo's face
            # under the real hat (session 20: the shipped frontal identity 0.697 -> 0.670 with hats
            # placed where the photo shows them, 0.702 with the same avatars drawn without them)
            hat_type = schema.index("headwear.type")
            hatted = np.flatnonzero(has & (preds[:, hat_type] > 0.5))
            r3_bare = _reprobed(probe, r3, preds, hatted, [hat_type])
            idv_bare = M.identity_variants(lm3s, r3_bare, n=identity_n) if len(hatted) else idv
            # ... and with no glasses drawn either: the face alone. Drawn frames move the probe's eyes and brows
            # (session 41: lenses drawn the frames' size, the face bit-identical, 188 held-out ffhq128 photos'
            # frontal identity 0.649 -> 0.612; as before with the lenses narrow again 0.665, with the new width
            # and the old height 0.633)
            glasses_type = schema.index("glasses.type")
            glassed = np.flatnonzero(has & (preds[:, glasses_type] > 0.5))
            r3_face = _reprobed(probe, r3_bare, preds, glassed, [hat_type, glasses_type])
            idv_face = M.identity_variants(lm3s, r3_face, n=identity_n) if len(glassed) else idv_bare
            skin_de = np.full(len(preds), np.nan)
            if has.any():
                skin_de[has] = M.delta_e(skins[has], preds[has][:, [schema.index(f"face.{c}") for c in "rgb"]])
            few = n < 2  # among fewer than 2 photos every avatar is nearest to its own: no identity number
            out = {
                "identity_top1": idv["identity_top1"],
                "identity_top1_frontal": idv["identity_top1_frontal"],
                "identity_top1_symmetric": idv["identity_top1_symmetric"],
                "identity_n": n,
                # (beside DESIGN.md's keys: the frontal and symmetric identity of the same avatars drawn
                # without their hats, and how many were drawn with one)
                "identity_top1_frontal_hatless": idv_bare["identity_top1_frontal"],
                "identity_top1_symmetric_hatless": idv_bare["identity_top1_symmetric"],
                "hats_drawn": int(len(hatted)),
                # (and drawn without hats or glasses: the face's own likeness, and how many were drawn with glasses)
                "identity_top1_frontal_face_only": idv_face["identity_top1_frontal"],
                "identity_top1_symmetric_face_only": idv_face["identity_top1_symmetric"],
                "glasses_drawn": int(len(glassed)),
                "render_detect_rate": float(np.isfinite(r3[:, 0, 0]).mean()) if len(r3) else float("nan"),
                "skin_delta_e": float(np.mean(skin_de[has])) if has.any() else float("nan"),
                "no_avatar": int((~has).sum()),
            }
            if few:
                out["identity_note"] = "fewer than 2 photos with a face: identity top-1 needs at least 2"
            hv = [i for i, h in enumerate(hairs)
                  if h is not None and has[i] and preds[i, schema.index("hair_style.layers")] > 0]
            out["hair_delta_e"] = float("nan")  # null: no photo with hair and an avatar with hair
            if hv:
                hcol = preds[hv][:, [schema.index(f"hair_front.{c}") for c in "rgb"]]
                out["hair_delta_e"] = float(np.mean(M.delta_e(np.stack([hairs[i] for i in hv]), hcol)))
            ious = hair_ious(preds, prep["hair_photo"], prep["hair_region"])
            out["hair_iou"] = float(np.nanmean(ious)) if np.isfinite(ious).any() else float("nan")
            reads = hair_class_reads(names, paths, preds)
            if reads:
                out["hair_colour_reads"] = reads
            reads = hair_colour_by_eye_reads(names, paths, preds)
            if reads:
                out["hair_colour_by_eye"] = reads
            tone = skin_tone_reads(names, paths, preds)
            if tone:
                out["skin_tone_by_eye"] = tone
            length = hair_length_reads(names, paths, preds)  # photos without an avatar are not scored
            if length:
                out["hair_length_by_eye"] = length
            length = hair_length_reads(names, paths, preds, tight=True)
            if length:  # (beside DESIGN.md's keys: UTKFace's tight chips, labelled apart)
                out["hair_length_by_eye_tight"] = length
            # (beside DESIGN.md's keys: the top of the head drawn bald, receding or with hair against the labels by
            # eye; which hair drew it: hair_source_is_artist)
            tops = scalp_reads(names, paths, preds, artist_hair=hair_source_is_artist(method, shipped_attrs.get(method),
                                                                                     len(preds)))
            if tops:
                out["scalp_by_eye"] = tops
            eyes = eye_colour_reads(names, paths, preds)
            if eyes:  # (beside DESIGN.md's keys: the drawn irises against their colour labelled by eye)
                out["eye_colour_by_eye"] = eyes
            lenses = lens_aspect_reads(names, paths, preds)
            if lenses:  # (beside DESIGN.md's keys: the glasses' lenses against their aspect labelled by eye)
                out["lens_aspect_by_eye"] = lenses
            if labels and method in shipped_attrs:
                scores = shipped_attribute_metrics(names, shipped_attrs[method], labels)
                if scores:
                    out["attributes"] = scores
            if method in shipped_attrs:  # (beside DESIGN.md's keys: hats and facial hair against the labels by eye)
                acc = accessory_reads_by_eye(names, paths, preds, shipped_attrs[method])
                if acc:
                    out["accessories_by_eye"] = acc
                gender = gender_reads_by_eye(names, paths, preds, shipped_attrs[method])
                if gender:
                    out["gender_by_eye"] = gender
                beard = beard_colour_reads(names, paths, preds, shipped_attrs[method])
                if beard:
                    out["beard_colour_by_eye"] = beard
                # (beside DESIGN.md's keys: the age and gender reported against UTKFace's file names, held out)
                named = utkface_name_reads(names, paths, preds, shipped_attrs[method])
                out.update(named)
            if method != "artist":
                if lp is None:
                    from .lpips import LPIPS

                    try:
                        lp = LPIPS.from_npz(net="alex")
                    except FileNotFoundError:  # (said once, before the photos: main_eval's warning)
                        lp = False
                out["param_l1"] = float(M.param_l1(preds[has], gts[has])) if has.any() else float("nan")
                out["render_l1"] = float(np.mean([M.render_l1(a, b) for a, b in zip(imgs, gt_imgs)]))
                per_lpips = (np.asarray(M.render_lpips(imgs, gt_imgs, model=lp), np.float64) if lp is not False
                             else np.full(len(imgs), np.nan))
                out["render_lpips"] = float(np.mean(per_lpips))
                if keep is not None:
                    keep.setdefault("per_photo", {})[method] = {"render_lpips": per_lpips, "identity_hit": hits,
                                                                "identity_hit_frontal": idv["hits_frontal"]}
            result["methods"][method] = out
            per_photo[method] = {"identity_top1_frontal": idv["hits_frontal"].astype(np.float64),
                                 "identity_top1_symmetric": idv["hits"]["identity_top1_symmetric"].astype(np.float64),
                                 "skin_delta_e": skin_de}
            if few:
                for k in ("identity_top1_frontal", "identity_top1_symmetric"):
                    per_photo[method][k][:] = np.nan
            if method != "artist":
                per_photo[method]["render_lpips"] = per_lpips
            if keep is not None:
                keep.setdefault("preds", {})[method] = preds  # NaN rows: no avatar (the grid says so)
    if keep is not None:
        keep.update(names=names, crops=crops, gts=gts)
    result["attributes"] = attribute_metrics(names, crops, labels) if labels else {}
    if groups and len(names):
        g = photo_groups(paths, skins, labels if isinstance(labels, list) else None)
        result["groups"] = {m: group_metrics(per_photo[m], g) for m in per_photo}
    return result


#: the ``glasses`` groups: none, clear (reading) glasses, sunglasses
GLASSES_GROUPS = ("none", "clear", "sun")
AGE_BANDS = ((0, 13, "0-12"), (13, 30, "13-29"), (30, 50, "30-49"), (50, 70, "50-69"), (70, 200, "70+"))
#: Skin-tone groups by the individual typology angle (ITA, degrees) of the
#: photo's cheeks: light > 41 (Chardon's very light and light), 10-41
#: (intermediate, tan), < 10 (brown, dark).
ITA_GROUPS = ((41.0, 1e9, "light (ITA > 41)"), (10.0, 41.0, "medium (ITA 10-41)"), (-1e9, 10.0, "dark (ITA < 10)"))
_UTK = re.compile(r"^(\d{1,3})_[01]_\d_")


def ita(rgb: np.ndarray) -> np.ndarray:
    """Individual typology angle (degrees) of sRGB colours in [0, 1]: atan((L* − 50) / b*)."""
    from avatarizer.artist.photo import to_lab

    lab = to_lab(np.asarray(rgb, np.float64).reshape(-1, 3))
    return np.degrees(np.arctan2(lab[:, 0] - 50.0, np.maximum(lab[:, 2], 1e-6)))


def photo_groups(files: list[Path], skins: np.ndarray, given: list | None = None) -> dict[str, list[str | None]]:
    """Group labels per photo: ``age`` (from the labels given, ``eval
    --labels``: :func:`row_labels`, one targets dict or None per row; else an
    ``attributes.jsonl`` beside the photos, the ffhq128-labelled format; else
    a UTKFace file name ``AGE_G_R_...``), ``skin_tone`` (ITA of the photo's
    cheeks, measured) and ``glasses`` (the labels given, else
    ``attributes.jsonl``); None where unknown."""
    from .attributes import GLASSES_LABEL

    labels: dict[Path, dict] = {}
    out: dict[str, list] = {"age": [], "skin_tone": [], "glasses": []}
    for i, (f, t) in enumerate(zip(files, ita(skins))):
        f = Path(f)
        lab = labels.get(f.parent)
        if lab is None:
            lab = labels[f.parent] = _labels_beside(f.parent)
        a = dict(lab.get(f.name, {}))
        row = given[i] if given is not None and i < len(given) else None
        if row is not None:  # (--labels: its age and glasses were left out of the groups; a review, session 68)
            if age_band(row.get("age")) is not None:
                a["age"] = float(row["age"])
            g = row.get("glasses")
            if g in GLASSES_LABEL.values():  # (the targets' none / reading / sunglasses)
                a["glasses"] = GLASSES_GROUPS[g]
        age = a.get("age")
        m = _UTK.match(f.name)
        if age is None and m:
            age = float(m.group(1))
        out["age"].append(age_band(age))
        out["skin_tone"].append(next(b for lo, hi, b in ITA_GROUPS if lo <= t < hi) if np.isfinite(t) else None)
        out["glasses"].append(a.get("glasses"))
    return out


def age_band(age) -> str | None:
    """The :data:`AGE_BANDS` name of ``age`` (years), None for no age, one
    that is not a finite number, or one outside the bands (a labels file's
    -1 for unknown, a file name that only looks like UTKFace's: 250_0_1_...;
    ``--groups`` ended in a StopIteration traceback after the whole run)."""
    try:
        age = float(age)
    except (TypeError, ValueError, OverflowError):
        return None
    return next((b for lo, hi, b in AGE_BANDS if lo <= age < hi), None)


def _labels_beside(folder: Path) -> dict[str, dict]:
    """Per file name, the labels of an ``attributes.jsonl`` in ``folder``
    (ffhq128-labelled format): ``age``, ``glasses`` ("none", "clear", "sun"),
    ``hair_colour`` (index into ``hair.HAIR_COLOURS``, -1 unlabelled) and
    ``bald``; {} without the file."""
    from .attributes import GLASSES_LABEL, _ffhq_targets

    path = folder / "attributes.jsonl"
    if not path.is_file():
        return {}
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        _warn(f"skipped {path} (not a readable UTF-8 labels file: {exc})")
        return {}
    out, bad = {}, 0
    g = {name: GLASSES_GROUPS[kind] for name, kind in GLASSES_LABEL.items()} | {"SwimmingGoggles": "sun"}
    for line in text.splitlines():
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
            if isinstance(rec, dict) and rec.get("faces") == [] and isinstance(rec.get("file"), str):
                continue  # a photo the labeller found no face in
            fa = rec["faces"][0]["faceAttributes"]
            t = _ffhq_targets(fa)
            age = fa.get("age")
            out[str(rec["file"])] = {"age": float(age) if age is not None else None,
                                     "glasses": g.get(fa.get("glasses")) if isinstance(fa.get("glasses"), str)
                                     else None, "hair_colour": t["hair_colour"], "bald": t["bald"]}
        except (ValueError, KeyError, IndexError, TypeError, AttributeError):
            bad += 1
    if bad:
        _warn(f"skipped {bad} line(s) of {path} that are not records of the ffhq128-labelled format")
    return out


_WARNED: set[str] = set()


def _warn(msg: str) -> None:
    """One line on stderr, once per message in a process."""
    if msg not in _WARNED:
        _WARNED.add(msg)
        print(f"avatarizer-export eval: warning: {msg}", file=sys.stderr)


def hair_ious(params: np.ndarray, photo: np.ndarray, region: np.ndarray) -> np.ndarray:
    """Per photo, the hair-silhouette IoU of ``avatarizer-export hairbank
    evaluate`` (:func:`hairbank.iou` of the pixels the avatar's hair layers
    draw, :func:`hairbank.avatar_hair_mask`, against the photo's hair
    segmentation, both within the photo's :func:`hairbank.eval_region`, 128
    px). NaN where the method drew no avatar or the photo shows under 30
    hair pixels there (as hairbank leaves them out)."""
    from .hairbank import avatar_hair_mask, iou

    out = np.full(len(params), np.nan)
    for i, p in enumerate(params):
        if np.isfinite(p).all() and photo[i].sum() >= 30:
            out[i] = iou(avatar_hair_mask(p, 128) & region[i], photo[i])
    return out


def _paths_of(names: list[str], files) -> list[Path]:
    """Each row's photo path: ``files`` is either the list of paths, row by
    row (what :func:`evaluate` passes: names can repeat across folders), or a
    dict file name -> path (one folder)."""
    if isinstance(files, dict):
        return [Path(files[n]) for n in names]
    files = [Path(f) for f in files]
    if len(files) != len(names):
        raise ValueError(f"need one path per photo, got {len(files)} for {len(names)}.")
    return files


def hair_class_reads(names: list[str], files, params: np.ndarray) -> dict:
    """How the drawn hair colour reads (``hair.hair_colour_class_of``: its
    nearest palette colour) against the hair colour label of the photos that
    have one (an ``attributes.jsonl`` beside them, ffhq128-labelled format;
    bald and unlabelled hair left out): per class ``"k/n"`` and the balanced
    accuracy; {} when no photo is labelled."""
    from avatarizer import hair as HR

    labels: dict[Path, dict] = {}
    truth, read = [], []
    for i, (n, f) in enumerate(zip(names, _paths_of(names, files))):
        folder = f.parent
        if folder not in labels:
            labels[folder] = _labels_beside(folder)
        t = labels[folder].get(f.name)
        if t is None or t["hair_colour"] < 0 or t["bald"] == 1 or not np.isfinite(params[i]).all() \
                or params[i, schema.index("hair_style.layers")] <= 0:
            continue
        rgb = params[i, [schema.index(f"hair_front.{c}") for c in "rgb"]]
        truth.append(t["hair_colour"])
        read.append(HR.HAIR_COLOURS.index(HR.hair_colour_class_of(rgb)))
    return _class_reads(truth, read) if truth else {}


def _class_reads(truth, read) -> dict:
    """Per hair colour class of the labels ``truth``, ``"k/n"`` read as it
    (``read``: class indices), and the balanced accuracy."""
    from avatarizer import hair as HR

    truth, read = np.array(truth), np.array(read)
    out = {c: f"{int((read[truth == k] == k).sum())}/{int((truth == k).sum())}"
           for k, c in enumerate(HR.HAIR_COLOURS) if (truth == k).any()}
    out["balanced_accuracy"] = round(float(M.balanced_accuracy(truth, read)), 4)
    return out


def hair_colour_by_eye_reads(names, files, params: np.ndarray) -> dict:
    """How the drawn hair colour reads (as :func:`hair_class_reads`) against
    the hair colour labelled by eye (``data.hair_colour_by_eye``: ``ffhq128``
    loose crops, UTKFace tight crops), the held-out photos of ``names`` that
    have one and an avatar with hair; per folder: per class ``"k/n"`` and the
    balanced accuracy; {} when none."""
    from avatarizer import hair as HR

    from .data import hair_colour_by_eye

    names = list(names)
    files = _paths_of(names, files)
    rgb = [schema.index(f"hair_front.{c}") for c in "rgb"]
    by: dict[str, tuple[list, list]] = {}
    for i, t in _heldout_labelled(names, files, params, hair_colour_by_eye()):
        if params[i, schema.index("hair_style.layers")] <= 0:
            continue
        truth, read = by.setdefault(_folder_name(files[i].parent), ([], []))
        truth.append(t)
        read.append(HR.HAIR_COLOURS.index(HR.hair_colour_class_of(params[i, rgb])))
    return {folder: _class_reads(truth, read) for folder, (truth, read) in sorted(by.items())}


def _heldout_labelled(names, files, params: np.ndarray, labels: dict):
    """``(row, label)`` for each held-out photo of ``names`` that ``labels``
    (``"FOLDER/NAME"`` -> label, the project's labels by eye) has and that
    has an avatar (a finite row of ``params``)."""
    for i, key, _ in _heldout_rows(names, files, params, lambda key: key in labels):
        yield i, labels[key]


def _heldout_rows(names, files, params: np.ndarray, wanted=None):
    """``(row, "FOLDER/NAME" key, path)`` for each held-out photo of ``names``
    that has an avatar (a finite row of ``params``) and whose key ``wanted``
    accepts (every one without it)."""
    from .data import heldout_twins, is_heldout

    folders: dict[Path, str] = {}  # each folder's name resolved once, not once per photo
    twins: dict[Path, frozenset] = {}  # ... and its held-out photos trained on under another name, once needed
    for i, f in enumerate(_paths_of(names, files)):
        if f.parent not in folders:
            folders[f.parent] = _folder_name(f.parent)
        key = f"{folders[f.parent]}/{f.name}"
        if (wanted is None or wanted(key)) and is_heldout(key) and np.isfinite(params[i]).all():
            if f.parent not in twins:
                twins[f.parent] = heldout_twins(f.parent, folders[f.parent]) if f.parent.is_dir() else frozenset()
            if f.name not in twins[f.parent]:
                yield i, key, f


def skin_tone_reads(names, files, params: np.ndarray) -> dict:
    """The drawn skin against the skin tone labelled by eye
    (``labels/skin_tone_by_eye.jsonl``, the held-out photos of ``names``
    that have one; H's skin tone head trained on the others): |avatar L* - :func:`avatarizer.skintone.lightness_of_tone` of the
    label|, median and mean, and the share of avatars more than 10 and 15
    L* off (15 L* is about two Monk steps in the middle of the scale), in
    all and per group of the label (light, medium, dark)."""
    from avatarizer.artist.photo import to_lab
    from avatarizer.skintone import lightness_of_tone

    from .data import skin_tone_labels
    from .skintone import dl_summary

    rgb = [schema.index(f"face.{c}") for c in "rgb"]
    got = [(t, abs(float(to_lab(params[i, rgb].astype(np.float64))[0]) - float(lightness_of_tone(t))))
           for i, t in _heldout_labelled(names, files, params, skin_tone_labels())]
    if not got:
        return {}
    t, e = (np.array(v) for v in zip(*got))
    out = dl_summary(e)
    for name, sel in (("light (Monk <= 3)", t <= 3), ("medium (3.5-5.5)", (t > 3) & (t < 6)), ("dark (>= 6)", t >= 6)):
        if sel.any():
            out[name] = dl_summary(e[sel])
    return out


def hair_length_reads(names, files, params: np.ndarray, tight: bool = False) -> dict:
    """The drawn hair's length class (bald, short, long:
    ``hairbank.length_class``) against the hair length labelled by eye
    (``labels/hair_length_by_eye.jsonl``, loose portraits; ``tight``:
    ``labels/utkface_hair_length.jsonl``, UTKFace's tight chips, evaluation
    only; the held-out photos of ``names`` labelled bald, short, tied,
    counted as short, or long; H's hair length head and the tight crops'
    hair-length network trained on loose training photos; photos the method
    drew no avatar for, NaN rows, are left out): ``n``, the share ``right``,
    ``confusion`` (rows: the label, columns: drawn; bald, short, long),
    ``long_drawn_short`` and ``short_drawn_long`` as "k/n"."""
    from .data import hair_length_labels, tight_crop_hair_lengths
    from .hairbank import LENGTH_CLASSES, length_class

    target = {"bald": 0, "short": 1, "tied": 1, "long": 2}
    labels = {k: v for k, v in (tight_crop_hair_lengths() if tight else hair_length_labels()).items()
              if v in target}
    conf = np.zeros((len(LENGTH_CLASSES),) * 2, int)
    for i, label in _heldout_labelled(names, files, params, labels):
        conf[target[label], length_class(params[i])] += 1
    if not conf.sum():
        return {}
    return {"n": int(conf.sum()), "classes": list(LENGTH_CLASSES), "right": round(float(np.trace(conf) / conf.sum()), 4),
            "confusion": conf.tolist(), "long_drawn_short": f"{int(conf[2, :2].sum())}/{int(conf[2].sum())}",
            "short_drawn_long": f"{int(conf[1, 2])}/{int(conf[1].sum())}"}


#: the top of the head as labelled by eye (``labels/scalp_by_eye.jsonl``) and as drawn (:func:`drawn_top`)
TOP_CLASSES = ("bald", "receding", "hair")


def hair_source_is_artist(method: str, attributes: list | None, n: int) -> np.ndarray:
    """Per row of an eval method's parameters, whether the artist drew the
    hair (``hair_style.bank_id`` is then its family's index) rather than
    the hair bank's search (the bank entry's index): the artist's own rows
    and a trained face model's (the artist's hair beside the model's face)
    always; what ships (``shipped``, ``shipped:...``) where the photo's
    ``Avatar.attributes`` (``attributes``, one per row) is None: the hair
    stage keeps the artist's hair when it runs no search (the artist as
    the estimator, no attribute model in the manifest); by the method's
    name alone (``shipped:artist`` the artist's) where ``attributes`` is
    missing or not one per row."""
    if method.split(":")[0] != "shipped" or attributes is None or len(attributes) != n:
        return np.full(n, method.split(":")[0] != "shipped" or method == "shipped:artist", bool)
    return np.array([a is None for a in attributes], bool)


def drawn_top(p: np.ndarray, artist_hair: bool, bank=None) -> str:
    """The top of the head one avatar's parameters ``p`` draw: ``bald`` or
    ``receding`` for a style of those families (whatever is drawn over it:
    a hat over a bald style counts as bald), ``hair`` for any other, ``""``
    for an index that names no style. ``hair_style.bank_id`` is the
    artist's family (``hairbank._ARTIST_FAMILY``) where the artist drew the
    hair (``artist_hair``), else the hair bank entry's index (``bank``, the
    shipped one by default)."""
    from avatarizer import hair as HR

    from .hairbank import _ARTIST_FAMILY

    i = int(round(float(p[schema.index("hair_style.bank_id")])))
    if artist_hair:
        fam = _ARTIST_FAMILY.get(i, "")
    else:
        bank = HR.HairBank.load() if bank is None else bank
        fam = bank.entry(i).family if 0 <= i < len(bank) else ""
    return fam if fam in ("bald", "receding", "") else "hair"


def scalp_reads(names, files, params: np.ndarray, artist_hair, bank=None) -> dict:
    """The top of the head drawn (:func:`drawn_top`) against the top of the
    head labelled by eye (``labels/scalp_by_eye.jsonl``: bald, receding,
    hair; covered heads left out) on the held-out photos of ``names`` with
    an avatar: ``n``, ``classes`` (:data:`TOP_CLASSES`), ``confusion`` (rows:
    the label, columns: drawn), the share ``right``, and
    ``receding_drawn_receding``, ``hair_drawn_receding``, ``hair_drawn_bald``
    and ``bald_drawn_bald`` as "k/n"; ``unknown_style``, the rows whose
    style index names no style (a bank of another build), where there are
    any. ``artist_hair``: one bool for every row, or one per row
    (:func:`hair_source_is_artist`)."""
    from avatarizer import hair as HR

    from .data import scalp_labels

    labels = {k: v for k, v in scalp_labels().items() if v in TOP_CLASSES}
    by_artist = np.broadcast_to(np.asarray(artist_hair, bool), (len(params),))
    conf = np.zeros((len(TOP_CLASSES),) * 2, int)
    unknown = 0
    for i, label in _heldout_labelled(names, files, params, labels):
        if bank is None and not by_artist[i]:
            bank = HR.HairBank.load()
        top = drawn_top(params[i], bool(by_artist[i]), bank)
        if not top:
            unknown += 1
            continue
        conf[TOP_CLASSES.index(label), TOP_CLASSES.index(top)] += 1
    if not conf.sum():
        return {"unknown_style": unknown} if unknown else {}
    b, r, h = range(3)
    return {**({"unknown_style": unknown} if unknown else {}),
            "n": int(conf.sum()), "classes": list(TOP_CLASSES), "confusion": conf.tolist(),
            "right": round(float(np.trace(conf) / conf.sum()), 4),
            "receding_drawn_receding": f"{int(conf[r, r])}/{int(conf[r].sum())}",
            "hair_drawn_receding": f"{int(conf[h, r])}/{int(conf[h].sum())}",
            "hair_drawn_bald": f"{int(conf[h, b])}/{int(conf[h].sum())}",
            "bald_drawn_bald": f"{int(conf[b, b])}/{int(conf[b].sum())}"}


def lens_aspect_reads(names, files, params: np.ndarray) -> dict:
    """The drawn lenses' height over width (``glasses.lens_h / lens_w``)
    against their aspect labelled by eye (``labels/glasses_shape_by_eye.jsonl``,
    ``flat``, ``medium``, ``tall``), on the held-out photos of ``names`` the
    method drew glasses on: per label ``n`` and the drawn aspect's median
    (every lens was drawn 0.70 before session 41)."""
    from .data import glasses_shape_labels

    labels = {k: v["lens_aspect"] for k, v in glasses_shape_labels().items() if "lens_aspect" in v}
    kind, w, h = (schema.index(f"glasses.{n}") for n in ("type", "lens_w", "lens_h"))
    got: dict[str, list] = {}
    for i, label in _heldout_labelled(names, files, params, labels):
        if round(float(params[i, kind])) > 0 and params[i, w] > 0:
            got.setdefault(label, []).append(float(params[i, h] / params[i, w]))
    return {c: {"n": len(got[c]), "median_aspect": round(float(np.median(got[c])), 4)}
            for c in ("flat", "medium", "tall") if got.get(c)}


def accessory_reads_by_eye(names, files, params: np.ndarray, attributes: list) -> dict:
    """What the avatar shows of the headwear, the beard and the moustache
    (``Avatar.attributes``; a moustache drawn with its beard counts) against
    the labels by eye of the held-out photos of ``names`` (the shared
    labels miss at least 10 of the 95 held-out hats they call hatless):
    per attribute ``n``, ``found`` and ``invented`` as "k/n", the balanced
    accuracy and the expected calibration error of the probability of a
    yes (``Avatar.attributes[name]["probability"]`` of the value shown)."""
    from .attributes import expected_calibration_error
    from .data import eye_labels
    from .hatnet import hat_labels

    eye = eye_labels()
    sets = {"headwear": hat_labels(),  # (the hat network's labels: by eye only)
            "beard": {k: int(v["beard"]) for k, v in eye.items() if v.get("beard") in (0, 1)},
            "moustache": {k: int(v["moustache"]) for k, v in eye.items() if v.get("moustache") in (0, 1)}}
    out = {}
    for name, labels in sets.items():
        t, shown, prob = [], [], []
        for i, label in _heldout_labelled(names, files, params, labels):
            a = attributes[i]
            if a is None:
                continue
            e = a[name]
            on = bool(e["value"])  # (a moustache drawn with its beard is reported drawn: "drawn_with")
            t.append(int(label))
            shown.append(on)
            if e.get("probability") is None:  # (no probability: P(yes) is the value shown, 1 or 0; a "no"
                prob.append(float(on))  # was scored as P(yes) 1; a review, session 72)
            else:  # (the probability of the value shown)
                p = float(e["probability"])
                prob.append(p if on else 1.0 - p)
        if not t:
            continue
        t, shown, prob = np.array(t, bool), np.array(shown, bool), np.array(prob, np.float64)
        out[name] = {"n": int(len(t)), "found": f"{int((t & shown).sum())}/{int(t.sum())}",
                     "invented": f"{int((~t & shown).sum())}/{int((~t).sum())}",
                     "balanced_accuracy": round(float(M.balanced_accuracy(t.astype(int), shown.astype(int))), 4),
                     "ece": round(float(expected_calibration_error(prob, t.astype(float))), 4)}
    return out


def eye_colour_reads(names, files, params: np.ndarray) -> dict:
    """The drawn irises (``iris_l``'s colour in CIELAB) against their colour
    labelled by eye (``data.eye_colour_labels``: light, blue, grey or green,
    against dark, brown or black) on the held-out photos of ``names`` that
    have one and an avatar: ``n``, ``light`` and ``dark`` (how many), the
    median L* and b* of each, and two ROC AUCs: ``auc_lightness``, the
    probability that a light-eyed person's irises are drawn lighter (higher
    L*) than a dark-eyed person's, and ``auc_cool``, drawn cooler (lower b*,
    blue against yellow); 0.5: the drawing does not tell them apart; {}
    without such photos."""
    from avatarizer.artist.photo import to_lab

    from .data import eye_colour_labels
    from .metrics import roc_auc

    rgb = [schema.index(f"iris_l.{c}") for c in "rgb"]
    got = [(int(label), to_lab(params[i, rgb].astype(np.float64)))
           for i, label in _heldout_labelled(names, files, params, eye_colour_labels())]
    if not got:
        return {}
    y = np.array([g[0] for g in got], bool)
    lab = np.stack([g[1] for g in got])
    out = {"n": int(len(y)), "light": int(y.sum()), "dark": int((~y).sum())}
    for name, sel in (("light", y), ("dark", ~y)):
        if sel.any():
            out[f"median_L_{name}"] = round(float(np.median(lab[sel, 0])), 2)
            out[f"median_b_{name}"] = round(float(np.median(lab[sel, 2])), 2)
    if y.any() and (~y).any():
        out["auc_lightness"] = round(float(roc_auc(y, lab[:, 0])), 4)
        out["auc_cool"] = round(float(roc_auc(y, -lab[:, 2])), 4)
    return out


def beard_colour_reads(names, files, params: np.ndarray, attributes: list) -> dict:
    """The drawn facial hair's colour (the beard's where one is drawn, else
    the moustache's; read as its nearest palette colour,
    ``hair.hair_colour_class_of``) against its colour labelled by eye
    (``data.beard_colour_labels``: grey or white, or dark or brown) on the
    held-out photos of ``names`` with facial hair drawn: ``n``, ``grey``
    (drawn grey) and ``dark`` (drawn any other colour) right as "k/n", the
    balanced accuracy; {} without such photos."""
    from avatarizer import hair as HR

    from .data import beard_colour_labels

    t, p = [], []
    for i, label in _heldout_labelled(names, files, params, beard_colour_labels()):
        a = attributes[i]
        drawn = [f for f in ("beard", "moustache") if a is not None and (a.get(f) or {}).get("value")]
        if not drawn:
            continue
        rgb = params[i, [schema.index(f"{drawn[0]}.{c}") for c in "rgb"]]
        t.append(bool(label["beard_grey"]))
        p.append(HR.hair_colour_class_of(rgb) == "gray")
    return _two_class_reads(t, p, "grey", "dark")


def gender_reads_by_eye(names, files, params: np.ndarray, attributes: list) -> dict:
    """The gender reported (``Avatar.attributes["gender"]``) against the
    labels by eye of the held-out photos of ``names``
    (``labels/gender_by_eye.jsonl``): ``n``, ``male`` and ``female`` right
    as "k/n", the balanced accuracy; {} without labelled photos."""
    from .data import gender_labels

    t, p = [], []
    for i, label in _heldout_labelled(names, files, params, gender_labels()):
        a = attributes[i]
        if a is None or not a.get("gender"):
            continue
        t.append(bool(label))
        p.append(a["gender"]["value"] == "male")
    return _two_class_reads(t, p, "male", "female")


def utkface_name_reads(names, files, params: np.ndarray, attributes: list) -> dict:
    """The age and gender reported (``Avatar.attributes``) against the ones
    UTKFace's file names give (``AGE_GENDER_RACE_...``: gender 0 male, 1
    female), on the held-out photos of ``names`` with an avatar:
    ``age_by_name`` (``n``, ``mae`` and ``median_error`` in years, ``bias``
    the mean of reported minus named, and per :data:`AGE_BANDS` band its
    ``n``, ``mae`` and ``bias``; children under 13 reported 18 or older,
    ``children_read_adult``) and ``gender_by_name`` (as
    :func:`gender_reads_by_eye`, and the same for children under 13 and
    adults 18 and over); {} without such photos. An age or gender
    the app set is not the model's: every photo here is read with none."""
    ages, read_ages, male, read_male, male_age = [], [], [], [], []
    for i, _, f in _heldout_rows(names, files, params, lambda key: _UTK.match(key.rsplit("/", 1)[-1])):
        a = attributes[i] if i < len(attributes) else None
        if a is None:
            continue
        age, gender = float(_UTK.match(f.name).group(1)), f.name.split("_")[1]
        value = (a.get("age") or {}).get("value")
        if age_band(age) is not None and value is not None and np.isfinite(value):
            ages.append(age)
            read_ages.append(float(value))
        if gender in ("0", "1") and (a.get("gender") or {}).get("value") in ("male", "female"):
            male.append(gender == "0")
            read_male.append(a["gender"]["value"] == "male")
            male_age.append(age)
    out: dict = {}
    if ages:
        t, r = np.array(ages), np.array(read_ages)
        err = r - t
        bands = {}
        for lo, hi, band in AGE_BANDS:
            sel = (t >= lo) & (t < hi)
            if sel.any():
                bands[band] = {"n": int(sel.sum()), "mae": round(float(np.abs(err[sel]).mean()), 2),
                               "bias": round(float(err[sel].mean()), 2)}
        kids = t < 13
        out["age_by_name"] = {"n": int(len(t)), "mae": round(float(np.abs(err).mean()), 2),
                              "median_error": round(float(np.median(np.abs(err))), 2),
                              "bias": round(float(err.mean()), 2), "bands": bands,
                              "children_read_adult": f"{int((kids & (r >= 18)).sum())}/{int(kids.sum())}"}
    if male:
        out["gender_by_name"] = _two_class_reads(male, read_male, "male", "female")
        m, r, t = np.array(male), np.array(read_male), np.array(male_age)
        for name, sel in (("children (under 13)", t < 13), ("adults (18 and over)", t >= 18)):
            if sel.any():
                out["gender_by_name"][name] = _two_class_reads(list(m[sel]), list(r[sel]), "male", "female")
    return out


def _two_class_reads(truth: list, read: list, yes: str, no: str) -> dict:
    """``n``, ``yes`` and ``no`` right as "k/n" (the labels' true and false
    rows read as the same), the balanced accuracy; {} without rows."""
    if not truth:
        return {}
    t, p = np.array(truth, bool), np.array(read, bool)
    return {"n": int(len(t)), yes: f"{int((t & p).sum())}/{int(t.sum())}",
            no: f"{int((~t & ~p).sum())}/{int((~t).sum())}",
            "balanced_accuracy": round(float(M.balanced_accuracy(t.astype(int), p.astype(int))), 4)}


def group_metrics(per_photo: dict[str, np.ndarray], groups: dict[str, list]) -> dict:
    """Means of the per-photo metrics within each group (``n`` photos each)."""
    out: dict = {}
    for key, labels in groups.items():
        labels = np.array([x if x is not None else "" for x in labels])
        rows = {}
        for band in sorted(set(labels) - {""}):
            sel = labels == band
            # (a metric with no value in the group, no LPIPS weights: NaN, without numpy's empty-slice warning)
            rows[band] = {"n": int(sel.sum()), **{k: round(float(np.nanmean(v[sel])), 4) if np.isfinite(v[sel]).any()
                                                  else float("nan") for k, v in per_photo.items()}}
        if rows:
            out[key] = rows
    return out


def lit_cheek(crop: np.ndarray, lm: np.ndarray) -> tuple[np.ndarray, float]:
    """(the brighter cheek's median colour, the upper quartile of L* over
    both cheeks): the photo's skin as good light shows it. Discs of radius
    0.05 on the upper cheeks (canonical landmarks ``lm``)."""
    from avatarizer.artist.photo import to_lab
    from avatarizer.landmarks import side_index

    s = crop.shape[0]
    c = (np.stack(np.meshgrid(np.arange(s), np.arange(s)), -1) + 0.5) * 2 / s - 1
    px = []
    for side in (0, 1):
        ctr = sum(lm[side_index(k, side)] for k in ("cheekbone", "cheek", "cheek_in")) / 3.0
        px.append(crop[((c - ctr) ** 2).sum(-1) < 0.05 ** 2].astype(np.float32) / 255)
    meds = np.stack([np.median(p, 0) for p in px])
    uq = float(np.percentile(to_lab(np.concatenate(px))[:, 0], 75))
    return meds[int(np.argmax(to_lab(meds)[:, 0]))], uq


CLIP_EXT = (".mp4", ".mov", ".avi", ".mkv")


def clip_files(clips: Path) -> list[Path]:
    """The video clips of the folder ``clips`` that ``--clips`` reads, in name order."""
    from avatarizer.videoio import video_files

    return video_files(clips, CLIP_EXT)


def clip_metrics(clips: Path, methods: list[str], per_clip: int = 6, progress: bool = True) -> dict:
    """Skin under real (often uneven) light and cross-moment identity on
    talking-head clips (one person per clip), for ``artist`` and
    ``shipped``. ``per_clip`` frames evenly spaced in each clip.

    * ``skin_lit_dL_worst`` / ``skin_lit_dE_median``: avatar face colour
      against the photo's lit cheek (:func:`lit_cheek`), |ΔL*| worst and
      CIEDE2000 median over the frames.
    * ``cross_moment_top1``: the avatar from one moment against the frontal
      landmarks of the same people at every other moment: is the nearest
      of the P people's photos its own person? Averaged over all ordered
      pairs of moments. With few people (7 shared clips) it is indicative
      only."""
    import cv2
    from tqdm import tqdm

    import avatarizer
    from avatarizer import Avatarizer
    from avatarizer.align import AlignOptions, FaceAligner
    from avatarizer.artist import AutoArtist
    from avatarizer.artist.photo import to_lab
    from avatarizer.videoio import capture

    files = clip_files(Path(clips))
    frames: list[list] = []
    for f in files:
        cap = capture(f)
        n = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
        got = []
        for j in np.linspace(0, max(n - 1, 0), per_clip).astype(int):
            cap.set(cv2.CAP_PROP_POS_FRAMES, int(j))
            ok, fr = cap.read()
            if ok:
                got.append(cv2.cvtColor(fr, cv2.COLOR_BGR2RGB))
        cap.release()
        frames.append(got)
    unreadable = [f.name for f, got in zip(files, frames) if not got]
    if unreadable:  # (they counted as clips with no frame, without a word)
        print(f"eval: {len(unreadable)} of {len(files)} clips gave no frame (not read: "
              f"{', '.join(unreadable[:5])}{', ...' if len(unreadable) > 5 else ''})", file=sys.stderr)
    out: dict = {"clips": len(files), "frames_per_clip": per_clip, "unreadable_clips": unreadable}
    artist = AutoArtist()
    face_rgb = [schema.index(f"face.{c}") for c in "rgb"]
    with FaceAligner(AlignOptions(mode="image", max_faces=1, segmentation=True)) as al, M.LandmarkProbe() as probe:
        faces = [[al.align(fr) for fr in clip] for clip in frames]
        for method in methods:
            if method != "artist" and method.split(":")[0] != "shipped":
                continue
            av = Avatarizer(max_faces=1, estimator=shipped_estimator(method)) if method != "artist" else None
            dl, de = [], []
            photo3 = np.full((len(files), per_clip, 478, 3), np.nan)
            drew = np.zeros((len(files), per_clip), bool)  # an avatar at that moment
            rend3 = np.full((len(files), per_clip, 478, 3), np.nan)
            for c, clip in enumerate(tqdm(faces, desc=f"{method}: clips", disable=not progress)):
                for j, face in enumerate(clip):
                    if face is None:
                        continue
                    if method == "artist":
                        p = artist.fit(face)
                    else:
                        a = av.from_frame(frames[c][j])
                        if a is None:
                            continue
                        p = a.params
                    lit, _ = lit_cheek(face.crop(192), face.canonical.astype(np.float64))
                    dl.append(abs(float(to_lab(p[face_rgb])[0] - to_lab(lit)[0])))
                    de.append(float(M.delta_e(lit[None], p[face_rgb][None])[0]))
                    photo3[c, j] = face.landmarks
                    drew[c, j] = True
                    got = probe.landmarks3d(avatarizer.render(p, M.RENDER_SIZE, background="white"))
                    if got is not None:
                        rend3[c, j] = got
            if av is not None:
                av.close()
            pf = M.pose_free(photo3.reshape(-1, 478, 3)).reshape(len(files), per_clip, 478, 2)
            rf = M.pose_free(rend3.reshape(-1, 478, 3)).reshape(len(files), per_clip, 478, 2)
            top = cross_moment_top1(pf, rf, drew)
            if not np.isfinite(top):
                _warn(f"--clips: {method}: no two clips with a face and an avatar at the same moments: "
                      "cross_moment_top1 is null")
            out[method] = {"frames": len(dl), "skin_lit_dL_worst": float(np.max(dl)) if dl else float("nan"),
                           "skin_lit_dE_median": float(np.median(de)) if de else float("nan"),
                           "cross_moment_top1": top,
                           "people": int(drew.any(1).sum())}
    return out


def _reprobed(probe, r3: np.ndarray, preds: np.ndarray, rows, off) -> np.ndarray:
    """A copy of the landmarks ``r3`` read on the renders, with the rows
    ``rows`` read again on their avatars (``preds``) drawn with the
    parameters at indices ``off`` set to 0 (a hat or glasses taken off);
    NaN where the probe finds no face."""
    import avatarizer

    out = r3.copy()
    for i in rows:
        p = preds[i].copy()
        p[off] = 0.0
        got = probe.landmarks3d(avatarizer.render(p, M.RENDER_SIZE, background="white"))
        out[i] = np.nan if got is None else got
    return out


def cross_moment_top1(photo: np.ndarray, render: np.ndarray, drew: np.ndarray) -> float:
    """Mean over ordered pairs of moments (a, b), a != b, of identity top-1
    of the avatars at moment a among the photos at moment b, over the people
    (clips) with a face at b and an avatar at a (an avatar whose render shows
    no face is a miss); pairs with fewer than 2 such people are left out.
    ``photo``, ``render``: (people, moments, 478, 2) pose-free landmarks,
    NaN where none; ``drew``: (people, moments). NaN when no pair counts."""
    has_photo = np.isfinite(photo).all((2, 3))
    tops = []
    for a in range(photo.shape[1]):
        for b in range(photo.shape[1]):
            sel = has_photo[:, b] & drew[:, a]
            if a != b and sel.sum() > 1:
                tops.append(M.identity_top1(photo[sel, b], render[sel, a])["top1"])
    return float(np.mean(tops)) if tops else float("nan")


def labels_beside_rows(paths: list[Path]) -> list[dict | None] | None:
    """Each photo's targets from the ``attributes.jsonl`` in its own folder
    (:func:`read_labels`; ``eval`` without ``--labels``), None where it has
    none; None where no folder of the photos has a labels file. A file
    :func:`read_labels` refuses is skipped with a warning."""
    per: dict[Path, dict | None] = {}
    rows: list[dict | None] = []
    for p in paths:
        folder = Path(p).parent
        if folder not in per:
            path = folder / "attributes.jsonl"
            try:
                per[folder] = read_labels(path) if path.is_file() else None
            except ValueError as exc:
                _warn(f"skipped the labels beside the photos: {exc}")
                per[folder] = None
        lab = per[folder]
        rows.append(None if lab is None else lab.get(Path(p).name))
    return rows if any(v is not None for v in per.values()) else None


def row_labels(paths: list[Path], labels: dict[str, dict], home: Path | None = None) -> list[dict | None]:
    """Each photo's targets from a labels file (``labels``: :func:`read_labels`,
    keyed by bare file name), None where it has none. The labels belong to
    one folder: when ``home`` (the folder holding the file) is one of the
    photos' folders, only that folder's photos take them; otherwise a name
    found in several of the photos' folders is ambiguous and left out, with a
    warning (another folder's p.jpg is another person)."""
    folders = [_real(Path(p).parent) or Path(p).parent.absolute() for p in paths]
    home_real = _real(Path(home)) if home is not None else None
    if home_real is not None and home_real in folders:
        return [labels.get(Path(p).name) if d == home_real else None for p, d in zip(paths, folders)]
    seen: dict[str, set] = {}
    for p, d in zip(paths, folders):
        if Path(p).name in labels:
            seen.setdefault(Path(p).name, set()).add(d)
    ambiguous = {n for n, ds in seen.items() if len(ds) > 1}
    if ambiguous:
        _warn(f"--labels: left out {len(ambiguous)} file name(s) found in more than one --faces folder (the labels "
              "name files, not folders: put the labels file in the folder it labels): "
              + ", ".join(sorted(ambiguous)[:5]) + (", ..." if len(ambiguous) > 5 else ""))
    return [None if Path(p).name in ambiguous else labels.get(Path(p).name) for p in paths]


def _label_rows(names: list[str], labels: Path | dict | list) -> tuple[list[int], list[dict]]:
    """(indices of ``names`` with a face entry in the labels, their targets);
    ``labels`` a labels file, what :func:`read_labels` made of it (matched
    by file name), or :func:`row_labels` (one entry per row)."""
    if isinstance(labels, list):
        rows = [i for i, t in enumerate(labels) if t is not None]
        return rows, [labels[i] for i in rows]
    lab = labels if isinstance(labels, dict) else read_labels(Path(labels))
    rows = [i for i, n in enumerate(names) if n in lab]
    return rows, [lab[names[i]] for i in rows]


def _attribute_scores(t: list[dict], preds: list[dict]) -> dict:
    """Balanced accuracies, ECEs and age MAE of flat predictions (per photo:
    bools ``glasses``, ``sunglasses``, ``beard``, ``moustache``, ``headwear``,
    ``bald``, ``male``; ``hair_colour`` a name; ``age``; ``p_glasses`` and
    ``p_headwear`` probabilities) against the targets ``t``."""
    from avatarizer import hair as HR

    from .attributes import expected_calibration_error

    out = {}
    gl_t = np.array([x["glasses"] for x in t])
    ok = gl_t >= 0
    def two_classes(truth):  # (a balanced accuracy over one class is that class's recall alone: null; a
        # labels file of ten photos without sunglasses scored "sunglasses": 1.0, a review, session 77)
        return len(np.unique(truth)) >= 2

    for name, truth in (("glasses", gl_t > 0), ("sunglasses", gl_t == 2)):
        out[name] = M.balanced_accuracy(truth[ok].astype(int), np.array([int(p[name]) for p in preds])[ok]) \
            if two_classes(truth[ok]) else float("nan")
    kind = np.array([2 if p["sunglasses"] else 1 if p["glasses"] else 0 for p in preds])
    out["glasses_type"] = float(np.mean(kind[ok] == gl_t[ok])) if ok.any() else float("nan")
    def labelled(name):  # (the photos whose label of ``name`` is there: a missing field is not "no")
        truth = np.array([x[name] for x in t], np.float64)
        return truth, np.isfinite(truth)

    def balanced(truth, pred, ok):
        return M.balanced_accuracy(truth[ok].astype(int), pred[ok]) if two_classes(truth[ok]) else float("nan")

    for name in ("beard", "moustache", "headwear", "bald"):
        truth, has = labelled(name)
        out[name] = balanced(truth, np.array([int(p[name]) for p in preds]), has)
    # expected calibration error of P(glasses) and P(headwear)
    out["glasses_ece"] = expected_calibration_error(np.array([p["p_glasses"] for p in preds])[ok],
                                                    (gl_t[ok] > 0).astype(float)) if ok.any() else float("nan")
    truth, has = labelled("headwear")
    out["headwear_ece"] = expected_calibration_error(np.array([p["p_headwear"] for p in preds])[has],
                                                     truth[has]) if has.any() else float("nan")
    hc_t = np.array([x["hair_colour"] for x in t])
    hc_p = np.array([HR.HAIR_COLOURS.index(p["hair_colour"]) for p in preds])
    ok = hc_t >= 0
    out["hair_color"] = M.balanced_accuracy(hc_t[ok], hc_p[ok]) if two_classes(hc_t[ok]) else float("nan")
    truth, has = labelled("male")
    out["gender"] = balanced(truth, np.array([int(p["male"]) for p in preds]), has)
    ages = np.array([x["age"] for x in t])
    ok = np.isfinite(ages)
    out["age_mae"] = M.mae(ages[ok], np.array([p["age"] for p in preds])[ok])
    out["n"] = len(preds)
    return {k: (round(float(v), 4) if k != "n" else v) for k, v in out.items()}


def attribute_metrics(names: list[str], crops: np.ndarray, labels: Path) -> dict:
    """Balanced accuracy per attribute of the shipped attribute regressor H
    (``attributes`` model) alone against labels in the ffhq128-labelled
    format, at the decision thresholds the model file carries
    (``glasses_type``: the share of photos whose none / clear / sunglasses
    is right); ``age_mae`` in years; ``glasses_ece`` and ``headwear_ece``:
    expected calibration error of P(glasses) and P(headwear). Photos
    without a face entry in the labels are skipped."""
    from avatarizer import hair as HR
    from avatarizer.pipeline.hair import mirrored_mean
    from avatarizer.runtime import Manifest

    rows, t = _label_rows(names, labels)
    if not rows:
        return {}
    sess = Manifest.load().session("attributes")
    dec, draw = HR.model_thresholds(sess.description)
    preds = []
    for i in rows:  # (H on the crop and its mirror image, as the hair stage reads it; session 73)
        p = HR.decode_attributes(mirrored_mean(sess, np.asarray(crops[i])), decision=dec, draw=draw)
        preds.append({**{k: p["decided"][k] for k in HR.FLAGS}, "hair_colour": p["hair_colour"], "age": p["age"],
                      "p_glasses": p["glasses_any"], "p_headwear": p["headwear"]})
    return _attribute_scores(t, preds)


def shipped_attribute_metrics(names: list[str], attributes: list[dict | None], labels: Path) -> dict:
    """The same scores for what the SDK reports and draws
    (``Avatar.attributes`` of the shipped run: glasses fused with the
    artist's cues, the hair colour read from the hair region, the drawing
    thresholds); photos where it found no face or ran no regressor are
    left out."""
    rows, t = _label_rows(names, labels)
    keep = [(j, attributes[i]) for j, i in enumerate(rows) if attributes[i] is not None]
    if not keep:
        return {}
    preds = []
    for _, a in keep:
        g = a["glasses"]
        hw = a["headwear"]
        preds.append({"glasses": g["value"] != "none", "sunglasses": g["value"] == "sunglasses",
                      **{k: bool(a[k]["value"]) for k in ("beard", "moustache", "headwear", "bald")},
                      "male": a["gender"]["value"] == "male", "hair_colour": a["hair_colour"]["value"],
                      "age": a["age"]["value"], "p_glasses": 1.0 - g["probabilities"]["none"],
                      "p_headwear": hw["probability"] if hw["value"] else 1.0 - hw["probability"]})
    return _attribute_scores([t[j] for j, _ in keep], preds)


class UsageError(ValueError):
    """A bad argument value of ``eval`` (exit 2)."""


#: the methods ``eval --methods`` takes: fixed names, and the prefixes that name a training run
METHODS = ("shipped", *(f"shipped:{e}" for e in SHIPPED_ESTIMATORS), "artist", "model", "direct", "nearest")
RUN_PREFIXES = ("mapper", "model", "direct")
#: the training run each fixed training method loads
METHOD_RUNS = {"model": MODEL_RUN, "direct": "direct", "nearest": "image_ae"}


def check_methods(methods: list[str], runs: Path | None = None) -> None:
    """Raises :class:`UsageError` naming the valid methods for an unknown
    method name, and for a training-run method whose run is not in ``runs``
    (``<repo>/runs``, where ``make models`` writes them)."""
    if runs is None:
        from .paths import ROOT

        runs = ROOT / "runs"  # train.RUNS, without importing torch
    valid = ", ".join((*METHODS, *(f"{p}:RUN" for p in RUN_PREFIXES)))
    if not methods:
        raise UsageError(f"--methods names no method (valid: {valid})")
    for m in methods:
        head, _, run = m.partition(":")
        if m in METHODS:
            run = METHOD_RUNS.get(m, "")
        elif head not in RUN_PREFIXES or not run:
            raise UsageError(f"unknown method {m!r} (valid: {valid})")
        if run and not (runs / run / "ckpt.pt").is_file():
            raise UsageError(f"method {m!r} needs the training run {run!r}, which is not in {runs} "
                             f"(`make models` trains it; 'shipped' and 'artist' need no training run)")


def read_labels(path: Path) -> dict[str, dict]:
    """The targets (``attributes._ffhq_targets``) per ``"file"`` of a labels
    file in the ffhq128-labelled format; records without faces are left out.
    Raises ValueError naming the file and line for anything else."""
    from .attributes import _ffhq_targets

    try:
        text = Path(path).read_text(encoding="utf-8-sig")
    except UnicodeDecodeError:
        raise ValueError(f"{path}: not UTF-8 text (labels in the ffhq128-labelled JSON lines format)") from None
    except OSError as exc:
        raise ValueError(f"{path}: cannot read the labels: {exc.strerror or exc}") from None
    lab = {}
    for no, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
            if not isinstance(rec, dict) or not isinstance(rec.get("file"), str):
                raise ValueError('no "file" name')
            if rec.get("faces"):
                fa = rec["faces"][0]["faceAttributes"]
                if not isinstance(fa, dict):
                    raise ValueError('"faceAttributes" is not an object')
                g = fa.get("gender")
                if g is not None and (not isinstance(g, str) or g.lower() not in ("male", "female")):
                    raise ValueError(f'"gender" must be "male" or "female", got {g!r}')
                lab[rec["file"]] = _ffhq_targets(fa)
        except (ValueError, KeyError, IndexError, TypeError, AttributeError) as exc:
            what = f"missing {exc}" if isinstance(exc, KeyError) else str(exc).splitlines()[0][:120]
            raise ValueError(f"{path} line {no}: not a record of the ffhq128-labelled format ({what})") from None
    return lab


def _json_safe(obj):
    """``obj`` with every NaN or infinite float as None (JSON has no NaN:
    a metric that cannot be computed is null)."""
    if isinstance(obj, dict):
        return {k: _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_json_safe(v) for v in obj]
    if isinstance(obj, (float, np.floating)):
        return float(obj) if np.isfinite(obj) else None
    if isinstance(obj, np.integer):
        return int(obj)
    return obj


def _fail(msg: str, code: int) -> int:
    print(f"avatarizer-export eval: {msg}", file=sys.stderr)
    return code


def main_eval(args) -> int:
    """Exit status: 0 done, 1 error (an input that is missing, not the right
    kind of file or unreadable: one line on stderr), 2 usage (an argument
    value eval cannot take), all checked before any photo is read."""
    from avatarizer._files import is_special

    from avatarizer.checks import names_a_folder

    from .paths import not_a_folder

    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    try:
        check_methods(methods)
    except UsageError as exc:
        return _fail(str(exc), 2)
    # (as --methods: "a, b" is a and b; but a folder whose own name holds a comma is that folder: "Smith, John"
    # was read as "Smith" and " John", with no way to give it; a review, session 77)
    parts = _folder_list(args.faces)
    if any(not p for p in parts):
        return _fail(f"--faces {args.faces!r} has an empty entry (a comma-separated list of folders)", 2)
    out, prep = args.out, getattr(args, "prepared", None)
    for name, value in (("out", out), ("prepared", prep)):
        if value and names_a_folder(value):
            return _fail(f"--{name} {value!r:.200} names a folder (a path separator, '.' or '..' at its end): "
                         "give a file name", 2)
        if value and _real(Path(value)) is None:  # (Path.resolve raises on a link loop)
            return _fail(f"--{name} {value:.200}: a link loop or a path the system refuses", 2)
    if out and prep and Path(out).resolve() == Path(prep).resolve():
        return _fail(f"--out and --prepared name the same file {out} (the cache would be replaced by the JSON)", 2)
    # the same rule for both (nothing is made before every check passed: the cache is written at the end)
    for name, value in (("out", out), ("prepared", prep)):
        if value is None:
            continue
        if not value or Path(value).is_dir():
            return _fail(f"--{name} {value!r:.200} must name a file, not a folder", 2)
        if is_special(value):  # (also with --overwrite: a pipe another program reads, a device)
            return _fail(f"--{name} {value} is not a regular file (a named pipe, socket or device); "
                         "refusing to replace it", 2)
        if not Path(value).resolve().parent.is_dir():  # (where a link leads: said as that folder)
            return _fail(f"--{name} {value}: {not_a_folder(Path(value).resolve().parent)}", 2)
        if name == "out" and os.path.lexists(value) and not args.overwrite:  # (a link, dangling or not, too)
            return _fail(f"--out {value} exists: give --overwrite to replace it", 1)
    folders = [Path(p) for p in parts]
    for faces in folders:
        if not faces.is_dir():
            return _fail(f"{faces} is not a folder of face photos", 1)
    if args.clips and not Path(args.clips).is_dir():
        return _fail(f"{args.clips} is not a folder of video clips", 1)
    labels = None
    if args.labels is not None:
        if not args.labels or not Path(args.labels).is_file():
            return _fail(f"--labels {args.labels!r} is not a labels file (attributes.jsonl in the "
                         "ffhq128-labelled format)", 1)
        try:
            labels = read_labels(Path(args.labels))
        except ValueError as exc:
            return _fail(str(exc), 1)
    from .data import SOURCES

    trained = [str(f) for f in folders if _folder_name(f) in SOURCES]
    if not args.heldout and trained and (labels is not None or any((f / "attributes.jsonl").is_file()
                                                                    for f in folders)):
        # (the attribute scores against labels files count every labelled photo given: the project's own
        # folders hold training photos; a review, session 72)
        _warn(f"{', '.join(trained)}: the project's own photos, most of them trained on: without --heldout the "
              "scores against their labels (attributes, hair_colour_reads) count training photos too")
    files: list[Path] = []
    for faces in folders:
        files += list_photos(faces, args.heldout, args.limit, args.sample)
    # every file eval reads or could be pointed at: each folder's photos (also those --limit, --sample or
    # --heldout leave out), the labels beside them, the clips and --labels
    # (a link loop among the photos resolves to nothing here; prepare counts it unreadable)
    inputs = [*files, *(p for faces in folders for p in list_photos(faces, False, None)),
              *(faces / "attributes.jsonl" for faces in folders),
              *(clip_files(Path(args.clips)) if args.clips else []), *([Path(args.labels)] if args.labels else [])]
    given = {r for r in map(_real, inputs) if r is not None}
    for name in ("out", "prepared"):  # never written over a photo, a clip or a labels file being read
        value = getattr(args, name, None)
        if value and Path(value).resolve() in given:
            return _fail(f"--{name} {value} is one of the inputs (a photo, a clip or a labels file)", 1)
    if any(m != "artist" for m in methods):  # render_lpips: the weights, said after every argument's check (a usage
        # error is one line: it came after this warning without ../shared) and before hours of photos
        from .lpips import weights_path

        try:
            weights_path(None, "alex")
        except (FileNotFoundError, ValueError) as exc:  # (a user grading the SDK without ../shared: the rest)
            _warn(f"render_lpips is null: no LPIPS weights ({str(exc).splitlines()[0]} Set AVATARIZER_SHARED "
                  "to a folder holding weights/ to have it); every other metric is measured")
    res = evaluate(files, methods, labels=labels, labels_home=Path(args.labels).parent if args.labels else None,
                   identity_n=args.identity_n,
                   progress=not args.json, cache=Path(args.prepared) if getattr(args, "prepared", None) else None,
                   exaggeration=args.exaggeration, groups=args.groups, labels_beside=True)
    if args.clips:
        res["clips"] = clip_metrics(Path(args.clips), methods, progress=not args.json)
    text = json.dumps(_json_safe(res), indent=None if args.json else 1, allow_nan=False)
    if args.out:  # (first: a closed stdout, `| head`, lost the whole run's file too)
        from .onnx_util import staged

        try:  # (beside it, then moved: a failed write cut --overwrite's old file to half a JSON)
            # (without --overwrite, never a file that appeared there while the photos were evaluated)
            with staged(Path(args.out), "part", replace=args.overwrite) as tmp:
                tmp.write_text(text + "\n")
        except OSError as exc:
            print(text)
            return _fail(f"--out {args.out}: could not write the JSON: {exc.strerror or exc}", 1)
    print(text)
    return 0


def _folder_list(text: str) -> list[str]:
    """``--faces``' folders: comma-separated, each stripped ("a, b" is a and
    b, as ``--methods``), but commas that belong to a folder's own name
    kept: at each place the longest run of parts that is an existing
    folder ("Smith, John" could not be given, alone or in a list; a
    review, session 77)."""
    raw = text.split(",")
    out, i = [], 0
    while i < len(raw):
        j = next((j for j in range(len(raw), i + 1, -1) if Path(",".join(raw[i:j]).strip()).is_dir()), i + 1)
        out.append(",".join(raw[i:j]).strip())
        i = j
    return out


def _identity_n(text: str) -> int:
    import argparse

    v = positive_int(text)
    if v < 2:
        raise argparse.ArgumentTypeError(f"must be at least 2 (an avatar picked among 1 photo is always "
                                         f"right), got {text!r:.60}")
    return v


def add_parser(sub):
    p = sub.add_parser("eval", help="metrics on a folder of face photos (JSON)")
    p.add_argument("--faces", required=True, help="folder of face photos (or several, comma-separated)")
    p.add_argument("--groups", action="store_true",
                   help="also per age band, skin-tone group (ITA of the cheeks) and glasses type")
    p.add_argument("--labels", help="attributes.jsonl in the ffhq128-labelled format")
    p.add_argument("--methods", default="shipped,artist",
                   help="comma list of shipped (what Avatarizer() runs: the SDK's own model files, no training "
                        "runs needed), shipped:hybrid|model|artist (Avatarizer(estimator=...)), artist, and the "
                        "training runs model, direct, nearest, model:<run>, mapper:<run>, direct:<run>")
    subset = p.add_mutually_exclusive_group()  # (together they took the first N of a random M)
    subset.add_argument("--limit", type=positive_int, metavar="N",
                        help="only the first N photos of each folder (name order)")
    subset.add_argument("--sample", type=positive_int, metavar="N",
                        help="N photos of each folder drawn at random (seed 0): an unbiased subset")
    p.add_argument("--heldout", action="store_true", help="only the held-out split's photos of that folder, less those a training photo "
                        "repeats under another name (data.heldout_twins)")
    p.add_argument("--identity-n", type=_identity_n, default=100, metavar="N",
                   help="identity top-1 among consecutive groups of N photos, the last taking the remainder "
                        "(at least 2; default 100); identity_n reports the largest group")
    p.add_argument("--json", action="store_true", help="print one JSON object (no progress bars)")
    p.add_argument("--out", help="also write the JSON here (an existing file only with --overwrite)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out file")
    p.add_argument("--exaggeration", type=_exaggeration, default=None, metavar="K",
                   help="the artist's exaggeration for the pseudo ground truth, 0.5 to 2 (default: ArtistStyle's)")
    p.add_argument("--clips", metavar="DIR",
                   help="also measure skin under real light and cross-moment identity on the talking-head clips "
                        "in DIR (one person per clip; e.g. ../shared/data/video)")
    p.add_argument("--prepared", metavar="NPZ",
                   help="keep the aligned photos and pseudo ground truth here (in an existing folder), reused while "
                        "the photos (each file's real path, size and time), --exaggeration, the artist and the "
                        "aligner (the SDK's alignment code, MediaPipe's version) are the same, else prepared anew "
                        "and replaced")
    p.set_defaults(func=main_eval)
