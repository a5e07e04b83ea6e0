"""Contact sheets of held-out photos beside their avatars.

    avatarizer-export sheet artist      # docs/artist_sheet.png: 48 held-out photos | auto-artist avatars
    avatarizer-export sheet attributes  # docs/attributes_sheet.png: 48 held-out labelled photos | SDK
                                        # avatars, with labels and drawn accessories
    avatarizer-export sheet shipped     # docs/shipped_sheet.png: 48 held-out photos | artist | what
                                        # Avatarizer() draws (hybrid) | the paper's model alone
    avatarizer-export sheet skin-tone   # docs/skin_tone_sheet.png: the 24 held-out photos labelled for skin
                                        # tone whose avatar's skin moved most from the artist's (measured)
    avatarizer-export sheet corrected   # docs/corrected_sheet.png: the attributes sheet's photos whose avatar
                                        # draws an accessory wrong | Avatarizer() | with the labels set

Each writes ``--out`` (default: the docs/ file named) and ``attributes`` a
``.json`` beside it. An existing output, the PNG or that JSON, is replaced
only with ``--overwrite`` (``sheet artist --overwrite`` regenerates
docs/artist_sheet.png), and never when it is an input (a file under
``--shared``, the aligned faces in the cache, the labels by eye): exit 1,
one line; ``--out`` naming a folder or in a missing folder is a usage error
(exit 2); all checked before any work, as ``eval --out``. Each file is
written beside its name and moved onto it: never half a file, a link at
the name replaced itself (never the file it points to; a link to nothing
counts as an existing output), and without ``--overwrite`` a file that
appeared at the name during the run is kept (exit 1).

Photos are chosen from the held-out split to cover children, the elderly,
glasses, beards, dark and light skin, open mouths and head turns (labels:
UTKFace file names, ffhq128-labelled attributes, head pose and mouth opening
from the landmarks), then filled up with the rest in name order.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from .data import ffhq_labels, is_heldout, load_aligned, utk_labels
from .paths import ROOT, cache_dir, not_a_folder, shared_dir


def pick_heldout(shared: Path, cache: Path, n: int = 48) -> list[int]:
    al = load_aligned(cache)
    labels = ffhq_labels(shared)
    held = [i for i, k in enumerate(al.keys) if is_heldout(k)]
    lm = al.landmarks
    mouth_open = (lm[:, 14, 1] - lm[:, 13, 1])  # inner lips apart, canonical units
    groups: dict[str, list[int]] = {g: [] for g in
                                    ("child", "elderly", "glasses", "beard", "dark", "light", "open_mouth", "turn",
                                     "synthetic")}
    for i in held:
        src, name = al.keys[i].split("/", 1)
        u = utk_labels(name) if src == "utkface200" else None
        f = labels.get(name) if src == "ffhq128-labelled" else None
        age = (u or {}).get("age") or (f or {}).get("age")
        if age is not None and age < 12:
            groups["child"].append(i)
        if age is not None and age >= 65:
            groups["elderly"].append(i)
        if f and f.get("glasses") in ("ReadingGlasses", "Sunglasses"):
            groups["glasses"].append(i)
        if f and max(f["facialHair"]["beard"], f["facialHair"]["moustache"]) >= 0.5:
            groups["beard"].append(i)
        if u and u.get("race") == 1:
            groups["dark"].append(i)
        if u and u.get("race") == 0 and (age or 30) > 15:
            groups["light"].append(i)
        if mouth_open[i] > 0.05:
            groups["open_mouth"].append(i)
        if abs(al.pose[i, 1]) > 25:
            groups["turn"].append(i)
        if src == "stylegan128":
            groups["synthetic"].append(i)
    quota = {"child": 6, "elderly": 6, "glasses": 7, "beard": 6, "dark": 6, "light": 4, "open_mouth": 5,
             "turn": 5, "synthetic": 3}
    chosen: list[int] = []
    rng = np.random.default_rng(0)
    for g, q in quota.items():
        cand = [i for i in groups[g] if i not in chosen]
        take = rng.choice(cand, min(q, len(cand)), replace=False) if cand else []
        chosen += [int(i) for i in take]
    rest = [i for i in held if i not in chosen]
    chosen += rest[: max(0, n - len(chosen))]
    return chosen[:n]


def _artist_rows(shared: Path, cache: Path, n: int, size: int):
    """(key, photo RGB, [photo tile, artist tile]) for the held-out people of :func:`pick_heldout`."""
    from PIL import Image

    from avatarizer import render
    from avatarizer.artist import AutoArtist

    from .data import _load_rgb, _pad, valid_mask

    al = load_aligned(cache)
    art = AutoArtist()
    for i in pick_heldout(shared, cache, n):
        key = al.keys[i]
        img = _load_rgb(shared / "data" / "faces" / key)
        frame = _pad(img, int(al.pad[i])) if al.pad[i] else img
        crop = np.asarray(al.crops[i])
        p = art.fit_landmarks(al.landmarks[i], crop, np.asarray(al.hair[i]) / 255.0,
                              valid=valid_mask(al.transforms[i], frame.shape), landmarks3d=al.landmarks3d[i])
        yield key, img, [np.asarray(Image.fromarray(crop).resize((size, size))), render(p, size, background="white")]


def _write_png(sheet: np.ndarray, out: Path, replace: bool) -> None:
    """``sheet`` as a PNG beside ``out``, then moved onto the name
    (:func:`onnx_util.staged`): never half a file, a link at the name
    replaced itself (not the file it points to), and without ``replace``
    (no ``--overwrite``) never a file or link that appeared there during
    the run (FileExistsError)."""
    from PIL import Image

    from .onnx_util import staged

    out.parent.mkdir(parents=True, exist_ok=True)
    with staged(out, "part", replace=replace) as tmp:
        Image.fromarray(sheet).save(tmp, format="PNG", optimize=True)


def _write_pair(sheet: np.ndarray, summary: dict, out: Path, replace: bool) -> None:
    """The sheet ``out`` and its counts (``summary`` as JSON beside it),
    staged together and moved onto their names at the end; without
    ``replace``, neither where either name is taken just before the moves
    (FileExistsError): moved one by one, a JSON that appeared after the PNG
    was moved left a new sheet beside another run's counts. (A name taken
    between the two moves, microseconds apart, still leaves the first one
    moved: two files cannot be moved at once.)"""
    import json

    from PIL import Image

    from .onnx_util import staged

    side = out.with_suffix(".json")
    out.parent.mkdir(parents=True, exist_ok=True)
    with staged(out, "part", replace=replace) as png, staged(side, "part", replace=replace) as js:
        Image.fromarray(sheet).save(png, format="PNG", optimize=True)
        js.write_text(json.dumps(summary, indent=1))
        taken = [f for f in (out, side) if os.path.lexists(f)]
        if taken and not replace:
            raise FileExistsError(f"{taken[0]} already exists (it appeared while the sheet was made)")


def _save_sheet(tiles, labels, out: Path, replace: bool = True) -> Path:
    from avatarizer.gallery import contact_sheet

    _write_png(contact_sheet(tiles, cols=12, labels=labels), out, replace)
    print(f"wrote {out}")
    return out


def artist_sheet(shared: Path, cache: Path, out: Path, n: int = 48, size: int = 128, replace: bool = True):
    tiles, labels = [], []
    for key, _img, pair in _artist_rows(shared, cache, n, size):
        tiles += pair
        labels += [key.split("/", 1)[1][:16], "artist"]
    return _save_sheet(tiles, labels, out, replace)


def shipped_sheet(shared: Path, cache: Path, out: Path, n: int = 48, size: int = 128, replace: bool = True):
    """The same people as the artist sheet, each as photo | auto-artist |
    ``Avatarizer()`` (the default estimator, from the photo file) |
    ``Avatarizer(estimator="model")``: whole avatars as users get them."""
    from avatarizer import Avatarizer

    tiles, labels = [], []
    blank = np.full((size, size, 3), 255, np.uint8)
    with Avatarizer(max_faces=1) as av, Avatarizer(max_faces=1, estimator="model") as model:
        for key, img, pair in _artist_rows(shared, cache, n, size):
            tiles += pair
            for a in (av, model):
                got = a.from_frame(img)
                tiles.append(got.render(size, background="white") if got is not None else blank)
            labels += [key.split("/", 1)[1][:16], "artist", av.estimator, model.estimator]
    return _save_sheet(tiles, labels, out, replace)


def skin_tone_sheet(shared: Path, out: Path, n: int = 24, pool: int = 160, size: int = 128,
                    replace: bool = True) -> Path:
    """The held-out photos labelled by eye for skin tone (``pool`` of them,
    a fixed random draw) whose shipped avatar's skin differs most from the
    auto-artist's (the skin as measured on the photo): photo | artist |
    ``Avatarizer()``, labelled with the Monk step by eye and the estimate
    drawn ("net": the skin-tone network's, the hybrid's; "H": H's)."""
    from PIL import Image

    from avatarizer import Avatarizer, render, schema
    from avatarizer.artist import AutoArtist
    from avatarizer.artist.photo import to_lab
    from avatarizer.hair import public_attributes
    from avatarizer.imageio import load_image

    from .data import skin_tone_labels

    tones = {k: t for k, t in skin_tone_labels().items() if is_heldout(k)}
    keys = sorted(tones)
    keys = [keys[i] for i in np.random.default_rng(3).permutation(len(keys))[:pool]]
    rgb = [schema.index(f"face.{c}") for c in "rgb"]
    rows = []
    artist = AutoArtist()
    with Avatarizer(max_faces=1) as av:
        for k in keys:
            img = load_image(shared / "data" / "faces" / k)
            state = av.run(img)  # the SDK's avatar and the aligned face it was made from
            if not state.faces:
                continue
            f = state.faces[0]
            drawn = artist.fit(f.aligned)
            dl = abs(float(to_lab(f.params[rgb].astype(np.float64))[0] - to_lab(drawn[rgb].astype(np.float64))[0]))
            rows.append((dl, k, img, drawn, f))
    rows.sort(key=lambda r: -r[0])
    tiles, labels = [], []
    for _, k, img, drawn, f in rows[:n]:
        tiles += [np.asarray(Image.fromarray(img).resize((size, size))), render(drawn, size, background="white"),
                  render(f.params, size, background="white")]
        tone = public_attributes(f.attributes).get("skin_tone") if f.attributes else None  # as Avatar.attributes
        labels += [f"{k.split('/', 1)[1][:10]} eye {tones[k]:g}", "artist (measured)",
                   f"{'net' if tone.get('decided_by') else 'H'} tone {tone['value']:.1f}" if tone
                   else "no skin tone (H < 2.3.1)"]
    return _save_sheet(tiles, labels, out, replace)


#: where each sheet goes without --out
DEFAULT_OUT = {"artist": "artist_sheet.png", "attributes": "attributes_sheet.png", "shipped": "shipped_sheet.png",
               "skin-tone": "skin_tone_sheet.png", "corrected": "corrected_sheet.png"}


def outputs(what: str, out: Path) -> list[Path]:
    """The files ``sheet WHAT --out OUT`` writes: the PNG, and for
    ``attributes`` the JSON of its counts beside it."""
    return [out, out.with_suffix(".json")] if what == "attributes" else [out]


def _fail(msg: str, code: int) -> int:
    import sys

    print(f"avatarizer-export sheet: {msg}", file=sys.stderr)
    return code


def main_sheet(args) -> int:
    """Exit status: 0 done, 1 error (an existing output without
    ``--overwrite``, an output that is an input), 2 usage (``--out`` naming
    a folder or in a missing folder); checked before any work."""
    from .data import EYE_LABELS

    from avatarizer.checks import names_a_folder

    if args.out is not None and (not args.out or Path(args.out).is_dir() or names_a_folder(args.out)):
        return _fail(f"--out {args.out!r:.200} must name a file, not a folder", 2)
    out = Path(args.out) if args.out else ROOT / "docs" / DEFAULT_OUT[args.what]
    if out.suffix.lower() != ".png":  # (Pillow refused any other name only after all the work)
        return _fail(f"--out {out}: a sheet is a PNG: name a .png file", 2)
    if not out.resolve().parent.is_dir():
        return _fail(f"--out {out}: {not_a_folder(out.parent)}", 2)
    shared = shared_dir(args.shared)
    cache = cache_dir(args.cache)
    inputs = [shared.resolve(), (cache / "aligned").resolve(), EYE_LABELS.resolve()]
    for f in outputs(args.what, out):
        # (the name itself too, not only what a link there points to: the sheet replaces a link, so a link
        # inside an input folder had a PNG written into that folder; a review, session 71)
        under = next((d for real in (f.resolve(), f.parent.resolve() / f.name) for d in inputs
                      if real == d or d in real.parents), None)
        if under is not None:
            return _fail(f"{f} is one of the inputs (under {under}): name another --out", 1)
        if os.path.lexists(f) and not args.overwrite:  # (a link too, even one to nothing)
            return _fail(f"{f} exists: give --overwrite to replace it", 1)
        if os.path.lexists(f) and not (f.is_symlink() or f.is_file()):  # (a folder, a pipe, a device)
            return _fail(f"{f} is not a file: name another --out", 1)
    replace = bool(args.overwrite)
    try:
        if args.what == "shipped":
            shipped_sheet(shared, cache, out, n=args.n, replace=replace)
        elif args.what == "artist":
            artist_sheet(shared, cache, out, n=args.n, replace=replace)
        elif args.what == "attributes":
            attributes_sheet(shared, cache, out, n=args.n, replace=replace)
        elif args.what == "skin-tone":
            skin_tone_sheet(shared, out, n=min(args.n, 24), replace=replace)
        elif args.what == "corrected":
            corrected_sheet(shared, cache, out, n=args.n, replace=replace)
    except FileExistsError as exc:  # (a file that appeared at the name during the run: kept)
        return _fail(f"{exc}: kept; give --overwrite to replace it", 1)
    return 0


def add_parser(sub):
    from .argtypes import positive_int

    p = sub.add_parser("sheet", help="contact sheets of held-out photos and their avatars")
    p.add_argument("what", choices=["artist", "attributes", "shipped", "skin-tone", "corrected"])
    p.add_argument("-n", type=positive_int, default=48)
    p.add_argument("--out", help="the PNG (default: docs/<what>_sheet.png); an existing one only with --overwrite")
    p.add_argument("--overwrite", action="store_true",
                   help="replace an existing output (the PNG, and the .json beside it of 'attributes')")
    p.add_argument("--shared")
    p.add_argument("--cache")
    p.set_defaults(func=main_sheet)


def pick_accessories(shared: Path, cache: Path, n: int = 48) -> list[int]:
    """Held-out labelled photos chosen to include every pair of glasses,
    sunglasses, hat, beard and bald head there is (up to a quota), then
    photos with none of them, in name order."""
    from .attributes import _ffhq_targets

    al = load_aligned(cache)
    labels = ffhq_labels(shared)
    held = [i for i, k in enumerate(al.keys) if is_heldout(k) and k.startswith("ffhq128-labelled/")
            and k.split("/", 1)[1] in labels]
    t = {i: _ffhq_targets(labels[al.keys[i].split("/", 1)[1]]) for i in held}
    quota = (("sunglasses", lambda x: x["glasses"] == 2, 8), ("glasses", lambda x: x["glasses"] == 1, 10),
             ("headwear", lambda x: x["headwear"] > 0, 9), ("beard", lambda x: x["beard"] > 0, 9),
             ("bald", lambda x: x["bald"] > 0, 5))
    chosen: list[int] = []
    for _, test, q in quota:
        chosen += [i for i in held if test(t[i]) and i not in chosen][:q]
    plain = [i for i in held if i not in chosen and not any(test(t[i]) for _, test, _ in quota)]
    chosen += plain[: max(0, n - len(chosen))]
    return chosen[:n]


def sheet_truth(key: str, shared_targets: dict, eye: dict, hats: dict) -> dict:
    """What the attributes sheet counts a photo's avatar against: the shared
    labels (``shared_targets``, ``attributes._ffhq_targets``), each replaced
    by the project's label by eye where one exists (the labels ``eval``'s
    ``accessories_by_eye`` scores hats and beards against, and glasses by
    eye, which training reads): glasses and the beard from ``eye``
    (``data.eye_labels``), the headwear from ``hats`` (``hatnet.hat_labels``:
    the shared labels call at least 10 of the 95 held-out hats hatless, a
    cap and a mortarboard on this sheet among them)."""
    g = (eye.get(key) or {}).get("glasses", shared_targets["glasses"])
    beard = (eye.get(key) or {}).get("beard", shared_targets["beard"])
    return {"glasses": g == 1, "sunglasses": g == 2, "headwear": hats.get(key, shared_targets["headwear"]) > 0,
            "beard": beard > 0}


def attributes_sheet(shared: Path, cache: Path, out: Path, n: int = 48, size: int = 128, replace: bool = True) -> dict:
    """Held-out photos (:func:`pick_accessories`) through the SDK's
    ``Avatarizer().from_frame`` (shipped models): photo | avatar, labelled
    with the photo's labels (``L:``; by eye where the project has them:
    :func:`sheet_truth`) and what the avatar draws (``A:``):
    g = glasses, S = sunglasses, H = headwear, B = beard, m = moustache.
    Returns (and writes beside the PNG as JSON) the counts of accessories
    drawn without a label (invented) and labelled but not drawn (missed)."""
    from PIL import Image

    from avatarizer import Avatarizer, schema
    from avatarizer.gallery import contact_sheet

    from .attributes import _ffhq_targets
    from .data import _load_rgb, eye_labels
    from .hatnet import hat_labels

    al = load_aligned(cache)
    labels = ffhq_labels(shared)
    eye, hats = eye_labels(), hat_labels()
    tiles, texts = [], []
    invented = {"glasses": 0, "sunglasses": 0, "headwear": 0, "beard": 0}
    missed = dict(invented)
    rows = []
    with Avatarizer() as av:
        for i in pick_accessories(shared, cache, n):
            key = al.keys[i]
            img = _load_rgb(shared / "data" / "faces" / key)
            truth = sheet_truth(key, _ffhq_targets(labels[key.split("/", 1)[1]]), eye, hats)
            avatar = av.from_frame(img)
            a = avatar.attributes if avatar is not None else None
            drawn = {"glasses": False, "sunglasses": False, "headwear": False, "beard": False}
            if a is not None:
                # glasses as drawn (the hybrid adds the artist's where H draws none); the rest as H decided
                gtype = int(round(float(avatar.params[schema.index("glasses.type")])))
                drawn = {"glasses": gtype == 1, "sunglasses": gtype == 2,
                         "headwear": a["headwear"]["value"], "beard": a["beard"]["value"]}
            for k in invented:
                # a pair of glasses drawn as the other kind is neither invented nor missed glasses
                any_t = truth["glasses"] or truth["sunglasses"]
                any_d = drawn["glasses"] or drawn["sunglasses"]
                if k in ("glasses", "sunglasses"):
                    invented[k] += int(drawn[k] and not truth[k] and not (k == "glasses" and any_t))
                    missed[k] += int(truth[k] and not drawn[k] and not (k == "glasses" and any_d))
                else:
                    invented[k] += int(drawn[k] and not truth[k])
                    missed[k] += int(truth[k] and not drawn[k])
            code = lambda d: "".join(c for k, c in (("glasses", "g"), ("sunglasses", "S"), ("headwear", "H"),
                                                    ("beard", "B")) if d[k]) or "-"
            tiles.append(np.asarray(Image.fromarray(np.asarray(al.crops[i])).resize((size, size))))
            tiles.append(avatar.render(size, background="white") if avatar is not None
                         else np.full((size, size, 3), 255, np.uint8))
            texts += [f"L:{code(truth)} {key.split('/', 1)[1][:5]}",
                      f"A:{code(drawn)}" + (f" {a['gender']['value'][0]}{a['age']['value']:.0f}" if a else " none")]
            rows.append({"photo": key, "labels": truth, "drawn": drawn,  # age and skin tone are regressed
                         "probabilities": None if a is None else {k: a[k]["probability"] for k in a
                                                                  if k not in ("age", "skin_tone")}})
    sheet = contact_sheet(tiles, cols=12, labels=texts)
    summary = {"photos": len(rows), "invented": invented, "missed": missed,
               "labelled": {k: int(sum(r["labels"][k] for r in rows)) for k in invented}, "rows": rows}
    _write_pair(sheet, summary, out, replace)
    print(f"wrote {out}: invented {invented}, missed {missed}")
    return summary


def corrected_sheet(shared: Path, cache: Path, out: Path, n: int = 48, size: int = 128, replace: bool = True) -> int:
    """Of the photos of :func:`attributes_sheet` (:func:`pick_accessories`),
    those whose avatar draws glasses, headwear or a beard unlike the labels:
    photo | ``Avatarizer().from_frame`` | the same with the labels set as an
    app would (``attributes={"glasses", "headwear", "beard"}``, from the
    photo's labels). Returns how many rows it drew."""
    from PIL import Image

    from avatarizer import Avatarizer, schema
    from avatarizer.hair import GLASSES
    from avatarizer.gallery import contact_sheet

    from .attributes import _ffhq_targets
    from .data import _load_rgb

    al = load_aligned(cache)
    labels = ffhq_labels(shared)
    tiles, texts = [], []
    with Avatarizer() as av:
        for i in pick_accessories(shared, cache, n):
            key = al.keys[i]
            img = _load_rgb(shared / "data" / "faces" / key)
            t = _ffhq_targets(labels[key.split("/", 1)[1]])
            want = {"glasses": GLASSES[int(t["glasses"])] if t["glasses"] >= 0 else None,
                    "headwear": bool(t["headwear"] > 0), "beard": bool(t["beard"] > 0)}
            avatar = av.from_frame(img)
            if avatar is None or avatar.attributes is None:
                continue
            kind = GLASSES[int(round(float(avatar.params[schema.index("glasses.type")])))]
            drawn = {"glasses": kind, "headwear": avatar.attributes["headwear"]["value"],
                     "beard": avatar.attributes["beard"]["value"]}
            wrong = [k for k, v in want.items() if v is not None and drawn[k] != v]
            if not wrong:
                continue
            fixed = av.from_frame(img, attributes=want)
            tiles += [np.asarray(Image.fromarray(np.asarray(al.crops[i])).resize((size, size))),
                      avatar.render(size, background="white"), fixed.render(size, background="white")]
            texts += [key.split("/", 1)[1][:9], "Avatarizer()",
                      "set " + ",".join(f"{k}={'yes' if want[k] is True else 'no' if want[k] is False else want[k]}"
                                        for k in wrong)]
    if not tiles:
        print("no photo with an accessory drawn wrong: nothing to show")
        return 0
    _write_png(contact_sheet(tiles, cols=9, labels=texts), out, replace)
    print(f"wrote {out}: {len(tiles) // 3} photos whose avatar drew an accessory unlike the labels")
    return len(tiles) // 3
