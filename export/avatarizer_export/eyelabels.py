"""``avatarizer-export labels``: the project's labels by eye (docs/data.md),
from contact sheets to the label files.

    avatarizer-export labels sheets --keys FILE --out DIR [--controls N]  # numbered sheets + layout.json
    avatarizer-export labels merge                    # votes/*.json -> labels/*.jsonl (what H trains on)
    avatarizer-export labels report [--shared DIR]    # agreement between labellers, controls vs shared labels

A *batch* (``labels/votes/NAME.json``) holds the sheets' layout (``sheets``:
per sheet the ``FOLDER/NAME`` key of each numbered cell, controls included)
and every labeller's answers per sheet: ``votes.accessories[labeller][sheet]``
lists cell indices per field (``beard``, ``moustache``, ``glasses``,
``sunglasses``, ``headwear``, ``unsure``) and ``votes.hair[labeller][sheet]``
per colour (``black`` ... ``gray``, ``none``, ``unsure``). Controls (photos of
``ffhq128-labelled``, which has the shared labels) are never written out.

Consensus (``rule``): ``record`` keeps a photo only when its labellers agree
on every field and none was unsure (the UTKFace batches); ``field`` keeps each
accessory field the labellers agree on, for photos nobody was unsure of, and
the hair colour where at least two labellers chose the same one of the five
colours; ``tone`` (the ``skin_tone`` batch: ``votes.skin_tone[labeller][sheet]``
maps each cell index to a Monk Skin Tone scale step 1-10, or null) keeps a
photo when its two labellers both answered and are at most one step apart,
as the mean of the two (every photo of that batch is a subject, none a
control); ``length`` (the ``hair_length`` batches:
``votes.hair_length[labeller][sheet]`` maps each cell index to ``long``,
``short``, ``bald``, ``tied``, ``covered`` or null) keeps a photo when its two
labellers gave the same label, not null. ``merge`` writes
``utkface_facial_hair.jsonl`` (the ``utkface_men`` and ``utkface_men_2`` batches),
``ffhq128_by_eye.jsonl`` (the two ``ffhq128`` batches),
``skin_tone_by_eye.jsonl`` (``skin_tone``, ``skin_tone_2``, ``skin_tone_3``, ``skin_tone_4``, ``skin_tone_5``),
``hair_length_by_eye.jsonl`` (``hair_length_train``,
``hair_length_heldout``), ``utkface_hair_colour.jsonl``
(``utkface_hair_colour``: tight crops, for evaluation only,
``data.EVAL_ONLY_LABELS``), ``utkface_glasses.jsonl`` (``utkface_glasses``:
glasses of 1,000 UTKFace photos aged 55 and over; ``utkface_glasses_2``: 1,089
younger ones, mostly those the shipped pipeline read as possibly wearing glasses) and ``scalp_by_eye.jsonl``
(``scalp``, rule ``scalp``: ``votes.scalp[labeller][sheet]`` maps each cell
index to ``bald``, ``receding``, ``hair``, ``covered`` or null, kept when the
two labellers agree, not null) and ``headwear_kind_by_eye.jsonl`` (``hats`` and
``hats_2``, rule ``hat``: ``votes.hat[labeller][sheet]`` maps each cell index to ``cap``,
``beanie``, ``brimmed``, ``other``, ``none`` or null, kept when the two agree,
not null; every photo is a subject) and ``beard_style_by_eye.jsonl``
(``beard_style`` and ``beard_colour``, rules of the same names, one sheet
layout: the 513 photos labelled by eye or in the shared labels as bearded
or moustached; per cell one of :data:`BEARD_STYLES` and one of
:data:`BEARD_COLOURS` or null, each field kept where the two labellers
agree); a test checks that the committed files are
exactly what ``merge`` makes. The batch ``hair_length_train_2`` (616 more training
photos) is committed but not merged: the head refitted with it was not
shipped (docs/hair.md, "Hair length"). A mined batch (``utkface_men_2``: the
photos the shipped pipeline drew a beard on or hesitated over, and some of
the rest at random) records how it was drawn: ``sample``, a list of strata,
each with the ``keys`` chosen, the ``population`` they were chosen from and
the ``rule`` that made the stratum (what an estimate at the population's
prevalence needs; :func:`avatarizer_export.data.sampled_keys`).
"""
from __future__ import annotations

import collections
import json
from pathlib import Path

import numpy as np

from . import data

HAIR = ("black", "brown", "blond", "red", "gray")
CONTROL_FOLDER = "ffhq128-labelled"
#: label file -> the batches it is made from
OUTPUTS = {"utkface_facial_hair.jsonl": ("utkface_men", "utkface_men_2"),
           "ffhq128_by_eye.jsonl": ("ffhq128_heldout", "ffhq128_train"),
           "skin_tone_by_eye.jsonl": ("skin_tone", "skin_tone_2", "skin_tone_3", "skin_tone_4", "skin_tone_5"),
           "hair_length_by_eye.jsonl": ("hair_length_train", "hair_length_heldout"),
           "utkface_hair_colour.jsonl": ("utkface_hair_colour",),
           "utkface_glasses.jsonl": ("utkface_glasses", "utkface_glasses_2"),
           "scalp_by_eye.jsonl": ("scalp",),
           "headwear_kind_by_eye.jsonl": ("hats", "hats_2"),
           "beard_style_by_eye.jsonl": ("beard_style", "beard_colour")}
HAIR_LENGTHS = ("long", "short", "bald", "tied", "covered")
#: the ``scalp`` batches' labels: the top of the head as the photo shows it
SCALP = ("bald", "receding", "hair", "covered")
#: the ``hats`` batch's labels: what is on the head (``headwear.type`` 1-3, or another
#: covering: a hood, a scarf, a helmet, a headband)
HATS = ("cap", "beanie", "brimmed", "other", "none")
#: the ``beard_style`` batch's labels: the facial hair as it is (``full``: the chin and the
#: jaw up toward the ears; ``goatee``: the chin, maybe with a moustache, the jaw bare;
#: ``stubble``: short growth over chin, jaw and lip, skin showing through; ``moustache``
#: alone; ``none``), and the ``beard_colour`` batch's (the same photos): dark (black, dark
#: brown), brown (mid or light brown, blond, red), grey (grey or white)
BEARD_STYLES = ("full", "goatee", "stubble", "moustache", "none")
BEARD_COLOURS = ("dark", "brown", "grey")
#: rules of one value per cell: rule -> (the kind of vote and the record's field, its labels,
#: whether the cells of CONTROL_FOLDER are controls: the hair length batches label its photos)
CELL_RULES = {"length": ("hair_length", HAIR_LENGTHS, False), "scalp": ("scalp", SCALP, True),
              "hat": ("hat", HATS, False), "beard_style": ("beard_style", BEARD_STYLES, False),
              "beard_colour": ("beard_colour", BEARD_COLOURS, False)}
ACCESSORY_FIELDS = ("glasses", "headwear", "beard", "moustache")


def votes_folder() -> Path:
    """The committed batches' folder (``votes`` under :data:`avatarizer_export.data.EYE_LABELS`,
    read when called: a test may point it elsewhere)."""
    return data.EYE_LABELS / "votes"


def load_batch(name: str, folder: Path | None = None) -> dict:
    return json.loads(((folder or votes_folder()) / f"{name}.json").read_text(encoding="utf-8"))


def _sheet_votes(batch: dict, kind: str):
    """(labeller, the sheet's cell keys, that labeller's answers on it) for
    every sheet a labeller answered, of one kind of vote."""
    for who, sheets in batch["votes"].get(kind, {}).items():
        for s, answers in sheets.items():
            yield who, batch["sheets"][int(s)], answers


def _accessory_answers(batch: dict) -> dict:
    """key -> labeller -> {field: value, "unsure": bool} (glasses 0/1/2)."""
    out: dict = collections.defaultdict(dict)
    for who, cells, lists in _sheet_votes(batch, "accessories"):
        sets = {k: set(v) for k, v in lists.items()}
        for j, key in enumerate(cells):
            ans = {"unsure": j in sets.get("unsure", ())}
            for f in ("beard", "moustache", "headwear"):
                if f in sets:
                    ans[f] = int(j in sets[f])
            if "glasses" in sets or "sunglasses" in sets:
                ans["glasses"] = 2 if j in sets.get("sunglasses", ()) else int(j in sets.get("glasses", ()))
            out[key][who] = ans
    return out


def _hair_answers(batch: dict) -> dict:
    """key -> labeller -> the colour list the cell is in."""
    out: dict = collections.defaultdict(dict)
    for who, cells, lists in _sheet_votes(batch, "hair"):
        for name, idx in lists.items():
            for j in idx:
                if 0 <= j < len(cells):
                    out[cells[j]][who] = name
    return out


def _cell_answers(batch: dict, kind: str) -> dict:
    """key -> labeller -> that labeller's value for the cell, of a kind of
    vote that maps each cell index to one value (``skin_tone``: a Monk step
    1-10; ``hair_length``: one of :data:`HAIR_LENGTHS`; None: cannot judge)."""
    out: dict = collections.defaultdict(dict)
    for who, cells, values in _sheet_votes(batch, kind):
        for j, v in values.items():
            out[cells[int(j)]][who] = v
    return out


def consensus(batch: dict) -> dict[str, dict]:
    """``{key: record}`` of one batch by its ``rule`` (module docstring)."""
    recs: dict[str, dict] = {}
    if batch["rule"] in CELL_RULES:
        kind, allowed, controls = CELL_RULES[batch["rule"]]
        for key, by in _cell_answers(batch, kind).items():
            v = list(by.values())
            if controls and key.startswith(CONTROL_FOLDER + "/"):
                continue
            if len(v) == 2 and v[0] == v[1] and v[0] in allowed:
                recs[key] = {"file": key, "labellers": 2, kind: v[0]}
        return recs
    if batch["rule"] == "tone":
        for key, by in _cell_answers(batch, "skin_tone").items():
            v = list(by.values())
            if len(v) == 2 and None not in v and abs(v[0] - v[1]) <= 1:
                recs[key] = {"file": key, "labellers": 2, "skin_tone": (v[0] + v[1]) / 2}
        return recs
    acc = _accessory_answers(batch)
    fields = [f for f in batch["fields"] if f in ACCESSORY_FIELDS]
    for key, by in acc.items():
        if key.startswith(CONTROL_FOLDER + "/"):
            continue
        answers = list(by.values())
        if any(a["unsure"] for a in answers):
            continue
        agreed = {f: answers[0][f] for f in fields
                  if all(f in a for a in answers) and len({a[f] for a in answers}) == 1}
        if batch["rule"] == "record" and len(agreed) < len(fields):
            continue
        if agreed:
            recs[key] = {"file": key, "labellers": len(answers), **agreed}
    if "hair_colour" in batch["fields"]:
        for key, by in _hair_answers(batch).items():
            if key.startswith(CONTROL_FOLDER + "/"):
                continue
            chosen = set(by.values())
            if len(by) >= 2 and len(chosen) == 1 and (c := chosen.pop()) in HAIR:
                recs.setdefault(key, {"file": key, "labellers": len(by)})["hair_colour"] = HAIR.index(c)
    return recs


def merge(votes: Path | None = None, out: Path | None = None) -> dict[str, int]:
    """Writes every label file of :data:`OUTPUTS` from its batches; returns
    the number of photos per file."""
    out = Path(out) if out else data.EYE_LABELS
    counts = {}
    for fname, batches in OUTPUTS.items():
        recs: dict[str, dict] = {}
        for b in batches:
            for key, r in consensus(load_batch(b, votes)).items():
                recs.setdefault(key, {}).update(r)
        lines = [json.dumps(recs[k], sort_keys=True) for k in sorted(recs)]
        (out / fname).write_text("\n".join(lines) + "\n", encoding="utf-8")
        counts[fname] = len(lines)
    return counts


def report(batch: dict, shared: Path | None = None) -> dict:
    """Agreement between labellers per field (photos with two or more
    labellers; an unsure photo counts as a disagreement), and, with the
    shared labels, each labeller's answers on the controls against them."""
    acc, hair = _accessory_answers(batch), _hair_answers(batch)
    agree: dict = collections.defaultdict(lambda: [0, 0])
    for key, by in acc.items():
        if key.startswith(CONTROL_FOLDER + "/") or len(by) < 2:
            continue
        answers = list(by.values())
        for f in batch["fields"]:
            if f in ACCESSORY_FIELDS and all(f in a for a in answers):
                agree[f][1] += 1
                agree[f][0] += len({a[f] for a in answers}) == 1 and not any(a["unsure"] for a in answers)
    for key, by in hair.items():
        if not key.startswith(CONTROL_FOLDER + "/") and len(by) >= 2:
            agree["hair_colour"][1] += 1
            agree["hair_colour"][0] += len(set(by.values())) == 1
    for key, by in _cell_answers(batch, "skin_tone").items():
        v = list(by.values())
        if len(v) >= 2:
            agree["skin_tone (same step)"][1] += 1
            agree["skin_tone (same step)"][0] += None not in v and len(set(v)) == 1
            agree["skin_tone (within one step)"][1] += 1
            agree["skin_tone (within one step)"][0] += None not in v and max(v) - min(v) <= 1
    for kind, _, controls in CELL_RULES.values():
        for key, by in _cell_answers(batch, kind).items():
            v = list(by.values())
            if len(v) >= 2 and not (controls and key.startswith(CONTROL_FOLDER + "/")):
                agree[f"{kind} (same label)"][1] += 1
                agree[f"{kind} (same label)"][0] += None not in v and len(set(v)) == 1
    out = {"agreement": {f: f"{a}/{n}" for f, (a, n) in agree.items()}}
    if shared is not None:
        from .detectors import labels_of

        path = Path(shared) / "data" / "faces" / CONTROL_FOLDER / "attributes.jsonl"
        if path.is_file():
            lab = labels_of(path)
            ctrl: dict = collections.Counter()
            for key, by in acc.items():
                name = key.split("/", 1)[1]
                if key.startswith(CONTROL_FOLDER + "/") and name in lab:
                    for a in by.values():
                        for f in ACCESSORY_FIELDS:
                            if f in a:
                                ctrl[f"{f}: shared {lab[name][f]}, by eye {a[f]}"] += 1
            for key, by in _cell_answers(batch, "scalp").items():  # the shared labels' bald (>= 0.5) against it
                name = key.split("/", 1)[1]
                if key.startswith(CONTROL_FOLDER + "/") and name in lab:
                    for v in by.values():
                        ctrl[f"scalp: shared bald {lab[name]['bald']}, by eye {v}"] += 1
            for key, by in hair.items():
                name = key.split("/", 1)[1]
                if key.startswith(CONTROL_FOLDER + "/") and name in lab:
                    shared_c = lab[name]["hair_colour"]
                    for c in by.values():
                        ctrl[f"hair_colour: shared {HAIR[shared_c] if shared_c >= 0 else 'none'}, by eye {c}"] += 1
            out["controls"] = dict(sorted(ctrl.items()))
    return out


def make_sheets(keys: list[str], faces: Path, out: Path, controls: list[str] = (), per_sheet: int = 44,
                seed: int = 0, cell: int = 150) -> dict:
    """Numbered contact sheets of ``keys`` (``FOLDER/NAME`` under ``faces``)
    with all of ``controls`` spread over them (as evenly as they go: the
    first sheets get one more where they do not divide), shuffled; writes ``sheetNN.png``
    (:func:`avatarizer.gallery.contact_sheet`, 8 photos a row, each with its
    index under it) and ``layout.json`` (the ``sheets`` of a batch) into
    ``out`` and returns the layout. (The committed batches were labelled on
    sheets of the same layout with the index in each photo's corner.)"""
    import cv2
    from PIL import Image

    from avatarizer.gallery import contact_sheet

    rng = np.random.default_rng(seed)
    keys = [keys[i] for i in rng.permutation(len(keys))]
    n_sheets = max(1, -(-len(keys) // per_sheet))
    ctrl = np.array_split(np.arange(len(controls)), n_sheets)
    sheets = []
    for s in range(n_sheets):
        cells = keys[s * per_sheet:(s + 1) * per_sheet] + [controls[i] for i in ctrl[s]]
        sheets.append([cells[i] for i in rng.permutation(len(cells))])
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    for s, cells in enumerate(sheets):
        tiles = []
        for key in cells:
            img = cv2.imread(str(Path(faces) / key))
            if img is None:
                raise FileNotFoundError(f"{Path(faces) / key} is not a readable image")
            tiles.append(cv2.cvtColor(cv2.resize(img, (cell, cell), interpolation=cv2.INTER_AREA), cv2.COLOR_BGR2RGB))
        # 8 a row, each photo's index under it
        Image.fromarray(contact_sheet(tiles, cols=8, labels=[str(j) for j in range(len(cells))])).save(
            out / f"sheet{s:02d}.png")
    (out / "layout.json").write_text(json.dumps({"sheets": sheets}), encoding="utf-8")
    return {"sheets": sheets}


def main_labels(args) -> int:
    if args.what == "merge":
        print(json.dumps(merge()))
    elif args.what == "report":
        from .paths import shared_dir

        try:
            shared = shared_dir(args.shared)
        except FileNotFoundError:
            shared = None
        for p in sorted(votes_folder().glob("*.json")):
            print(p.stem, json.dumps(report(load_batch(p.stem), shared)))
    else:
        from .paths import shared_dir

        if not args.keys or not args.out:
            raise SystemExit("labels sheets needs --keys FILE (one FOLDER/NAME a line) and --out DIR")
        keys = [k.strip() for k in Path(args.keys).read_text().splitlines() if k.strip()]
        ctrl = []
        if args.controls:
            lab_dir = shared_dir(args.shared) / "data" / "faces" / CONTROL_FOLDER
            names = sorted(p.name for p in lab_dir.glob("*.jpg"))
            from .data import is_heldout

            names = [n for n in names if not is_heldout(f"{CONTROL_FOLDER}/{n}")]
            pick = np.random.default_rng(1).permutation(len(names))[:args.controls]
            ctrl = [f"{CONTROL_FOLDER}/{names[i]}" for i in pick]
        lay = make_sheets(keys, shared_dir(args.shared) / "data" / "faces", Path(args.out), ctrl)
        print(f"wrote {len(lay['sheets'])} sheets and layout.json to {args.out}")
    return 0


def add_parser(sub):
    from .argtypes import count

    p = sub.add_parser("labels", help="the project's labels by eye: contact sheets, consensus, report "
                                      "(docs/data.md)")
    p.add_argument("what", choices=("sheets", "merge", "report"))
    p.add_argument("--keys", help="sheets: a file of FOLDER/NAME keys under ../shared/data/faces, one a line")
    p.add_argument("--out", help="sheets: the folder for sheetNN.png and layout.json")
    p.add_argument("--controls", type=count, default=0,
                   help="sheets: this many training photos of ffhq128-labelled spread over the sheets")
    p.add_argument("--shared")
    p.set_defaults(func=main_labels)
