"""``avatarizer-export labels``: the project's labels by eye (docs/data.md),
from contact sheets to the label files.

    avatarizer-export labels mine (--keys FILE | --folders A,B) --read R --band LO,HI --out DIR
        [--split train|heldout] [--unlabelled] [--drawn] [--random N] [--seed S]  # keys.txt + sample.json
    avatarizer-export labels sheets --keys FILE --out DIR [--controls N] [--sample sample.json]
                                                      # numbered sheets + layout.json
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
``hair_length_heldout``), ``utkface_hair_length.jsonl`` (``utkface_hair_length``, session 46: 528
held-out UTKFace tight chips, for evaluation only, ``data.EVAL_ONLY_LABELS``), ``utkface_hair_colour.jsonl``
(``utkface_hair_colour``: tight crops, for evaluation only,
``data.EVAL_ONLY_LABELS``), ``stylegan128_hair_colour.jsonl``
(``stylegan_hair_colour``, session 43: ``stylegan128`` photos mined for
red hair, for the hair-colour network's training alone), ``utkface_glasses.jsonl`` (``utkface_glasses``:
glasses of 1,000 UTKFace photos aged 55 and over; ``utkface_glasses_2``: 1,089
younger ones, mostly those the shipped pipeline read as possibly wearing glasses) and ``scalp_by_eye.jsonl``
(``scalp``, ``scalp_heldout`` and ``scalp_2``, rule ``scalp``: ``votes.scalp[labeller][sheet]`` maps each cell
index to ``bald``, ``receding``, ``hair``, ``covered`` or null, kept when the
two labellers agree, not null) and ``headwear_kind_by_eye.jsonl`` (``hats`` and
``hats_2``, rule ``hat``: ``votes.hat[labeller][sheet]`` maps each cell index to ``cap``,
``beanie``, ``brimmed``, ``other``, ``none`` or null, kept when the two agree,
not null; every photo is a subject) and ``beard_style_by_eye.jsonl``
(``beard_style`` and ``beard_colour``, rules of the same names, one sheet
layout: the 513 photos labelled by eye or in the shared labels as bearded
or moustached; per cell one of :data:`BEARD_STYLES` and one of
:data:`BEARD_COLOURS` or null, each field kept where the two labellers
agree) and ``gender_by_eye.jsonl`` (``gender_heldout`` and
``gender_train``, rule ``gender``: ``votes.gender[labeller][sheet]`` maps
each cell index to ``male``, ``female`` or null, kept when the two agree;
random held-out and training loose portraits of ``ffhq128`` and
``stylegan128``, chosen by ``labels mine``: the gender fusion's
evaluation and its loose training rows) and ``headwear_cover_by_eye.jsonl``
(``covers``, rule ``cover``: ``votes.cover[labeller][sheet]`` maps each cell
index to one of :data:`COVERS`, kept when the two agree; the labels a head
scarf detector would fit on: 28 scarves) and ``eye_colour_by_eye.jsonl``
(``eye_colour_heldout``, rule ``eye_colour``: ``votes.eye_colour[labeller][sheet]``
maps each cell index to one of :data:`EYE_COLOURS` or null, kept when the two
agree; the held-out loose portraits of ``ffhq128``, ``ffhq128-labelled`` and
``stylegan128``, for evaluation only: ``eval``'s ``eye_colour_by_eye``); a test checks that the committed files are
exactly what ``merge`` makes. The batch ``hair_length_train_2`` (616 more training
photos) is committed but not merged: the head refitted with it was not
shipped (docs/hair.md, "Hair length"); nor is ``scalp_heldout_loose`` (session 50: the
same 490 held-out portraits as ``scalp_heldout``, labelled first with a wording that
made a mild M-shaped hairline ``receding``: 54 receding where ``scalp_heldout``, worded as
the training batch ``scalp`` was read, has 22; docs/data.md). A mined batch (``utkface_men_2``: the
photos the shipped pipeline drew a beard on or hesitated over, and some of
the rest at random) records how it was drawn: ``sample``, a list of strata,
each with the ``keys`` chosen, the ``population`` they were chosen from and
the ``rule`` that made the stratum (what an estimate at the population's
prevalence needs; :func:`avatarizer_export.data.sampled_keys`). ``labels
mine`` makes such a selection and its record: it runs ``Avatarizer()`` over
the photos given, keeps those whose reading (:func:`reading`: a probability
of the public attributes, or the age or skin tone) lies in a band, or whose
avatar shows it, and some of the others at random with a seed; ``labels
sheets --sample`` writes the record into ``layout.json``, whence the batch.
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
           "utkface_hair_length.jsonl": ("utkface_hair_length",),
           "utkface_glasses.jsonl": ("utkface_glasses", "utkface_glasses_2"),
           "scalp_by_eye.jsonl": ("scalp", "scalp_heldout", "scalp_2"),
           "headwear_kind_by_eye.jsonl": ("hats", "hats_2"),
           "beard_style_by_eye.jsonl": ("beard_style", "beard_colour"),
           "gender_by_eye.jsonl": ("gender_heldout", "gender_train"),
           "headwear_cover_by_eye.jsonl": ("covers",),
           "stylegan128_hair_colour.jsonl": ("stylegan_hair_colour",),
           "eye_colour_by_eye.jsonl": ("eye_colour_heldout",)}
HAIR_LENGTHS = ("long", "short", "bald", "tied", "covered")
#: the ``scalp`` batches' labels: the top of the head as the photo shows it
SCALP = ("bald", "receding", "hair", "covered")
#: the ``hats`` batch's labels: what is on the head (``headwear.type`` 1-3, or another
#: covering: a hood, a scarf, a helmet, a headband; the ``covers`` batch tells the scarves,
#: ``headwear.type`` 4, among them)
HATS = ("cap", "beanie", "brimmed", "other", "none")
#: the ``beard_style`` batch's labels: the facial hair as it is (``full``: the chin and the
#: jaw up toward the ears; ``goatee``: the chin, maybe with a moustache, the jaw bare;
#: ``stubble``: short growth over chin, jaw and lip, skin showing through; ``moustache``
#: alone; ``none``), and the ``beard_colour`` batch's (the same photos): dark (black, dark
#: brown), brown (mid or light brown, blond, red), grey (grey or white)
BEARD_STYLES = ("full", "goatee", "stubble", "moustache", "none")
#: the ``gender_heldout`` batch's labels: the person's gender as they present (null: cannot tell)
GENDERS = ("male", "female")
BEARD_COLOURS = ("dark", "brown", "grey")
#: the ``covers`` batch's labels (session 42: the ``hats`` batches' 224 ``other`` coverings and
#: beanies, looked at again): ``scarf`` wraps down both sides of the face over the ears and the
#: hair beside the cheeks (a hijab or headscarf, a hood worn up, a balaclava, a keffiyeh, a hat
#: with ear flaps; ``headwear.type`` 4), ``turban`` cloth wrapped over the top of the head only
#: (a turban, a head wrap, a bandana), ``other`` anything else
COVERS = ("scarf", "turban", "other")
#: the ``eye_colour_heldout`` batch's labels (session 53): the irises ``light`` (blue, grey,
#: green, clearly light hazel) or ``dark`` (brown, dark brown, black, dark hazel); null: cannot
#: tell (closed, glare, sunglasses, too small, a colour cast over everything)
EYE_COLOURS = ("light", "dark")
#: rules of one value per cell: rule -> (the kind of vote and the record's field, its labels,
#: whether the cells of CONTROL_FOLDER are controls: the hair length batches label its photos)
CELL_RULES = {"length": ("hair_length", HAIR_LENGTHS, False), "scalp": ("scalp", SCALP, True),
              "hat": ("hat", HATS, False), "beard_style": ("beard_style", BEARD_STYLES, False),
              "beard_colour": ("beard_colour", BEARD_COLOURS, False), "gender": ("gender", GENDERS, True),
              "cover": ("cover", COVERS, False), "eye_colour": ("eye_colour", EYE_COLOURS, False)}
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
            from .data import ffhq_labels

            genders = {n: a.get("gender") for n, a in ffhq_labels(Path(shared)).items()}
            for key, by in _cell_answers(batch, "gender").items():  # the shared labels' gender against it
                name = key.split("/", 1)[1]
                if key.startswith(CONTROL_FOLDER + "/") and name in genders:
                    for v in by.values():
                        ctrl[f"gender: shared {genders[name]}, by eye {v}"] += 1
            for key, by in hair.items():
                name = key.split("/", 1)[1]
                if key.startswith(CONTROL_FOLDER + "/") and name in lab:
                    shared_c = lab[name]["hair_colour"]
                    for c in by.values():
                        ctrl[f"hair_colour: shared {HAIR[shared_c] if shared_c >= 0 else 'none'}, by eye {c}"] += 1
            out["controls"] = dict(sorted(ctrl.items()))
    return out


def make_sheets(keys: list[str], faces: Path, out: Path, controls: list[str] = (), per_sheet: int = 44,
                seed: int = 0, cell: int = 150, sample: list | None = None, overwrite: bool = False) -> dict:
    """Numbered contact sheets of ``keys`` (``FOLDER/NAME`` under ``faces``)
    with all of ``controls`` spread over them (as evenly as they go: the
    first sheets get one more where they do not divide), shuffled; writes ``sheetNN.png``
    (:func:`avatarizer.gallery.contact_sheet`, 8 photos a row, each with its
    index under it) and ``layout.json`` (the ``sheets`` of a batch) into
    ``out`` and returns the layout, with ``sample`` (how the keys were
    chosen: :func:`mine`'s) when given. (The committed batches were labelled on
    sheets of the same layout with the index in each photo's corner.)
    Every photo is read before anything is written; a folder that holds a
    batch already (``layout.json``, ``sheetNN.png``: what the labellers'
    indices refer to) is refused unless ``overwrite``."""
    import cv2
    from PIL import Image

    from avatarizer.gallery import contact_sheet

    if not keys:
        raise ValueError("no photos to put on sheets: the keys file is empty")
    # a photo listed twice was put on the sheets twice, and the consensus kept one copy's answers without a word
    keys = list(dict.fromkeys(keys))
    controls = [c for c in dict.fromkeys(controls) if c not in set(keys)]
    out = Path(out)
    held = ([out / "layout.json"] if (out / "layout.json").exists() else []) + sorted(out.glob("sheet*.png"))
    if held and not overwrite:  # (a second run replaced a batch's layout with another shuffle, without a word)
        raise FileExistsError(f"{out} holds a batch already ({held[0].name}); pass --overwrite to replace it")
    rng = np.random.default_rng(seed)
    keys = [keys[i] for i in rng.permutation(len(keys))]
    n_sheets = max(1, -(-len(keys) // per_sheet))
    ctrl = np.array_split(np.arange(len(controls)), n_sheets)
    sheets = []
    for s in range(n_sheets):
        cells = keys[s * per_sheet:(s + 1) * per_sheet] + [controls[i] for i in ctrl[s]]
        sheets.append([cells[i] for i in rng.permutation(len(cells))])
    pictures = []  # every sheet's tiles, read before anything is written (a bad key left sheets and no layout)
    for cells in sheets:
        tiles = []
        for key in cells:
            img = cv2.imread(str(Path(faces) / key))
            if img is None:
                raise FileNotFoundError(f"{Path(faces) / key} is not a readable image")
            tiles.append(cv2.cvtColor(cv2.resize(img, (cell, cell), interpolation=cv2.INTER_AREA), cv2.COLOR_BGR2RGB))
        pictures.append(tiles)
    out.mkdir(parents=True, exist_ok=True)
    for s, (cells, tiles) in enumerate(zip(sheets, pictures)):
        # 8 a row, each photo's index under it
        Image.fromarray(contact_sheet(tiles, cols=8, labels=[str(j) for j in range(len(cells))])).save(
            out / f"sheet{s:02d}.png")
    import re

    for old in held:  # (an earlier batch's sheets past this one's: a labeller answering one broke the consensus)
        # (only its own sheets, sheetNN.png: a sheet*.png of the user's, a marked-up copy, is theirs)
        if re.fullmatch(r"sheet\d{2,}\.png", old.name) and \
                old.name not in {f"sheet{s:02d}.png" for s in range(n_sheets)}:
            old.unlink(missing_ok=True)
    layout = {"sheets": sheets, **({"sample": sample} if sample is not None else {})}
    (out / "layout.json").write_text(json.dumps(layout), encoding="utf-8")
    return layout


#: what ``labels mine --read`` may read, beside ``NAME:CLASS`` of the class attributes
#: (:func:`reading`): yes/no attributes (the probability of yes), glasses (of any), and values
MINE_FLAGS = ("beard", "moustache", "headwear", "bald")
MINE_VALUES = ("age", "skin_tone")
MINE_CLASSES = {"glasses": ("none", "reading", "sunglasses"),
                "hair_colour": ("black", "brown", "blond", "red", "gray"),
                "gender": ("male", "female"), "hair_length": ("long", "short")}


def check_read(read: str) -> str:
    """``read`` if :func:`reading` can read it, else ValueError listing what it can."""
    name, sep, cls = str(read).partition(":")
    ok = (not sep and name in (*MINE_FLAGS, *MINE_VALUES, "glasses")) \
        or (bool(sep) and name in MINE_CLASSES and cls in MINE_CLASSES[name])
    if not ok:
        classes = ", ".join(f"{n}:{c}" for n, cs in MINE_CLASSES.items() for c in cs)
        raise ValueError(f"cannot read {read!r}: choose one of {', '.join(MINE_FLAGS + MINE_VALUES)}, "
                         f"glasses (any kind), or {classes}")
    return read


def reading(attributes, read: str) -> float | None:
    """The number ``labels mine`` picks a photo by, from an avatar's public
    attributes (``Avatar.attributes``): for ``beard``, ``moustache``,
    ``headwear`` and ``bald`` the probability of yes; ``glasses`` the
    probability of any glasses (1 - P(none)); ``NAME:CLASS`` of ``glasses``,
    ``hair_colour``, ``gender`` or ``hair_length`` that class's probability
    (of the two-class ones, 1 - the other's); ``age`` and ``skin_tone`` the
    value. None where the avatar has none (no regressor, a tight crop's
    hair length). It is the probability the avatar reports: a moustache
    drawn with its beard reports the larger of the two (``drawn_with``), and
    glasses the artist's cues added report H's probabilities."""
    name, _, cls = check_read(read).partition(":")
    a = (attributes or {}).get(name)
    if not isinstance(a, dict) or a.get("value") is None:
        return None
    if name in MINE_VALUES:
        return float(a["value"])
    p = a.get("probability")
    if name in MINE_FLAGS:
        return None if p is None else float(p) if a["value"] else 1.0 - float(p)
    probs = a.get("probabilities")
    if isinstance(probs, dict):
        if not cls:  # glasses of any kind
            return 1.0 - float(probs["none"]) if "none" in probs else None
        return float(probs[cls]) if cls in probs else None
    if p is None or len(MINE_CLASSES[name]) != 2 or not cls:
        return None  # (without ``probabilities`` only a two-class attribute's other class is known)
    return float(p) if a["value"] == cls else 1.0 - float(p)


def drawn(attributes, read: str) -> bool:
    """Whether the avatar's reported value is what ``read`` reads (a yes/no
    attribute's value yes, glasses of any kind or of the class, the class
    reported: in image mode the hair length is H's reading, not the
    hairstyle drawn); never for ``age`` and ``skin_tone``."""
    name, _, cls = check_read(read).partition(":")
    a = (attributes or {}).get(name)
    if not isinstance(a, dict) or name in MINE_VALUES:
        return False
    if name in MINE_FLAGS:
        return bool(a.get("value"))
    return a.get("value") == cls if cls else a.get("value") not in (None, "none")


def sdk_key() -> str:
    """SHA-256 (16 hex digits) of the SDK as it runs: its Python sources,
    data files and model files (what a mined batch was read with)."""
    import hashlib

    import avatarizer

    root = Path(avatarizer.__file__).parent
    h = hashlib.sha256()
    for p in sorted(root.rglob("*")):
        if p.is_file() and "__pycache__" not in p.parts and (p.suffix in (".py", ".json", ".onnx", ".npz")):
            h.update(str(p.relative_to(root)).encode() + b"\0" + p.read_bytes())
    return h.hexdigest()[:16]


def mine(keys: list[str], faces: Path, read: str, band: tuple[float, float] | None, *, with_drawn: bool = False,
         random: int = 0, seed: int = 0, pool: str = "", read_photo=None, progress: bool = False
         ) -> tuple[list[str], list[dict]]:
    """Photos to label, chosen by what the shipped pipeline reads on them:
    every key of ``keys`` (``FOLDER/NAME`` under ``faces``) whose
    :func:`reading` of ``read`` lies in ``band`` (inclusive), or, with
    ``with_drawn``, whose reported value it is (:func:`drawn`; ``band``
    None: those alone): the *mined* stratum; then ``random`` of the others
    (photos without a face or a reading among them) drawn with
    ``numpy.random.default_rng(seed)``. ``read_photo(path)`` returns the
    public attributes (default: ``Avatarizer(device="cpu")``'s, None without
    a face: the CPU's int8 models, whatever the machine; the rule names the
    SDK's files and the library versions). Returns (the chosen keys:
    the mined, then the random, each in key order; the batch's ``sample``:
    a stratum each, with its ``rule``, the ``population`` it was drawn from
    and its ``keys``, as :func:`avatarizer_export.data.sampled_keys`
    reads it; ``pool`` says in words where ``keys`` came from). Deterministic
    for the same keys, models and seed."""
    name = check_read(read).partition(":")[0]
    if band is None and not with_drawn:
        raise ValueError("mine needs a band, or with_drawn")
    if with_drawn and name in MINE_VALUES:
        raise ValueError(f"{read} is a value: nothing is drawn by it; give a band")
    lo, hi = (float(band[0]), float(band[1])) if band is not None else (np.inf, -np.inf)
    if band is not None and not lo <= hi:
        raise ValueError(f"band must be LO,HI with LO <= HI, got {band}")
    keys = sorted(dict.fromkeys(keys))
    where = "through the reader given"
    if read_photo is None:
        import mediapipe
        import onnxruntime

        from avatarizer import Avatarizer, load_image

        av = Avatarizer(device="cpu")
        where = (f"through Avatarizer(device='cpu') (SDK files {sdk_key()}, precision {av.precision}, "
                 f"onnxruntime {onnxruntime.__version__}, mediapipe {mediapipe.__version__})")

        def read_photo(path):
            got = av.from_frame(load_image(path))
            return None if got is None else got.attributes

    mined, rest, unread = [], [], 0
    for i, key in enumerate(keys):
        attrs = read_photo(Path(faces) / key)
        r = reading(attrs, read)
        unread += r is None
        (mined if (r is not None and lo <= r <= hi) or (with_drawn and drawn(attrs, read)) else rest).append(key)
        if progress and (i + 1) % 100 == 0:
            print(f"labels mine: {i + 1}/{len(keys)} read, {len(mined)} mined", flush=True)
    pick = sorted(rest[j] for j in np.random.default_rng(seed).permutation(len(rest))[:random]) if random else []
    what = " or ".join(([f"{read} in [{lo:g}, {hi:g}]"] if band is not None else [])
                       + ([f"{read} reported" if band is None else "reported"] if with_drawn else []))
    sample = [{"stratum": "mined", "rule": f"{what}, {where}" + (f", of {pool}" if pool else ""),
               "population": len(keys), "unread": unread, "keys": mined}]
    if random:
        sample.append({"stratum": "random", "rule": f"{len(pick)} of the {len(rest)} others at random "
                                                    f"(numpy.random.default_rng({seed}))",
                       "population": len(rest), "keys": pick})
    return mined + pick, sample


def _read_sample(path: Path, keys: list[str]) -> list:
    """``labels mine``'s ``sample.json`` at ``path``, checked: a list of
    strata, each with its ``keys``, whose keys are exactly ``keys`` (else
    SystemExit saying what is wrong)."""
    try:
        sample = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise SystemExit(f"labels sheets: cannot read {path}: {exc}") from None
    if not isinstance(sample, list) or not all(isinstance(st, dict) and isinstance(st.get("keys"), list)
                                               for st in sample):
        raise SystemExit(f"labels sheets: {path} is not labels mine's sample.json (a list of strata with 'keys')")
    recorded = [k for st in sample for k in st["keys"]]
    if sorted(recorded) != sorted(dict.fromkeys(keys)):
        raise SystemExit(f"labels sheets: {path} records {len(recorded)} photos and the keys are {len(set(keys))} "
                         "others or more: the sample must record exactly the photos put on the sheets")
    return sample


def _main_mine(args) -> int:
    """``labels mine``: writes ``keys.txt`` and ``sample.json`` into ``--out``
    (a new folder, or one without those files: nothing is overwritten)."""
    from .data import SOURCES, is_heldout
    from .paths import shared_dir

    if not args.read or not (args.band or args.drawn) or not args.out or bool(args.keys) == bool(args.folders):
        raise SystemExit("labels mine needs --read, --band LO,HI or --drawn, --out DIR and either --keys FILE "
                         "or --folders")
    band = None
    try:
        name = check_read(args.read).partition(":")[0]
        if args.band:
            band = tuple(float(v) for v in args.band.split(","))
            if len(band) != 2 or not all(np.isfinite(band)) or band[0] > band[1]:
                raise ValueError(f"--band must be LO,HI with LO <= HI, got {args.band!r}")
        if args.drawn and name in MINE_VALUES:
            raise ValueError(f"--drawn: {args.read} is a value, nothing is drawn by it")
    except ValueError as exc:
        raise SystemExit(f"labels mine: {exc}") from None
    out = Path(args.out)
    for fname in ("keys.txt", "sample.json"):
        if (out / fname).exists():
            raise SystemExit(f"labels mine: {out / fname} exists; choose a new --out folder")
    faces = shared_dir(args.shared) / "data" / "faces"
    if args.keys:
        try:
            lines = Path(args.keys).read_text(encoding="utf-8").splitlines()
        except (OSError, ValueError) as exc:
            raise SystemExit(f"labels mine: cannot read {args.keys}: {exc}") from None
        keys = list(dict.fromkeys(k.strip() for k in lines if k.strip()))
        missing = [k for k in keys if not (faces / k).is_file()]
        if missing:
            raise SystemExit(f"labels mine: {len(missing)} keys of {args.keys} are not photos under {faces} "
                             f"(the first: {missing[0]!r})")
        pool = f"the {len(keys)} keys of {Path(args.keys).name}"
    else:
        folders = list(dict.fromkeys(f.strip() for f in args.folders.split(",") if f.strip()))
        unknown = [f for f in folders if f not in SOURCES or not (faces / f).is_dir()]
        if unknown:
            raise SystemExit(f"labels mine: no such folders under {faces}: {unknown} (the project's: {SOURCES})")
        keys = [f"{f}/{p.name}" for f in folders for p in sorted((faces / f).iterdir())
                if p.suffix.lower() in (".jpg", ".jpeg", ".png")]
        pool = "the photos of " + ", ".join(folders)
    if args.split != "all":
        keys = [k for k in keys if is_heldout(k) == (args.split == "heldout")]
        pool += f" ({'held out' if args.split == 'heldout' else 'training'} only)"
    if args.unlabelled:
        held = set()
        for p in sorted(votes_folder().glob("*.json")):
            held.update(k for sheet in load_batch(p.stem).get("sheets", ()) for k in sheet)
        keys = [k for k in keys if k not in held]
        pool += ", none a committed batch holds"
    out.mkdir(parents=True, exist_ok=True)  # (before the run: a folder that cannot be made fails now)
    chosen, sample = mine(keys, faces, args.read, band, with_drawn=args.drawn, random=args.random,
                          seed=args.seed, pool=pool, progress=True)
    (out / "keys.txt").write_text("".join(k + "\n" for k in chosen), encoding="utf-8")
    (out / "sample.json").write_text(json.dumps(sample, indent=1), encoding="utf-8")
    print(json.dumps({"chosen": len(chosen), **{st["stratum"]: len(st["keys"]) for st in sample},
                      "population": len(keys), "without_a_reading": sample[0]["unread"], "out": str(out)}))
    return 0


def main_labels(args) -> int:
    if args.what == "merge":
        print(json.dumps(merge()))
    elif args.what == "mine":
        return _main_mine(args)
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
        sample = _read_sample(Path(args.sample), keys) if args.sample else None
        lay = make_sheets(keys, shared_dir(args.shared) / "data" / "faces", Path(args.out), ctrl, sample=sample,
                          overwrite=args.overwrite)
        print(f"wrote {len(lay['sheets'])} sheets and layout.json to {args.out}")
    return 0


def add_parser(sub):
    from .argtypes import count

    p = sub.add_parser("labels", help="the project's labels by eye: contact sheets, consensus, report "
                                      "(docs/data.md)")
    p.add_argument("what", choices=("sheets", "merge", "report", "mine"))
    p.add_argument("--keys", help="sheets: a file of FOLDER/NAME keys under ../shared/data/faces, one a line; "
                                  "mine: the photos to choose from (or --folders)")
    p.add_argument("--out", help="sheets: the folder for sheetNN.png and layout.json; mine: the folder for "
                                 "keys.txt (the chosen photos) and sample.json (how; for sheets --sample)")
    p.add_argument("--sample", help="sheets: mine's sample.json, written into layout.json (the batch's 'sample')")
    p.add_argument("--folders", help="mine: the photos of these folders under ../shared/data/faces "
                                     "(comma-separated), instead of --keys")
    p.add_argument("--split", choices=("all", "train", "heldout"), default="all",
                   help="mine: only the training or held-out photos (data.is_heldout)")
    p.add_argument("--unlabelled", action="store_true",
                   help="mine: leave out photos any committed batch already holds")
    p.add_argument("--read", help="mine: what to read on each photo's avatar (eyelabels.reading): "
                                  "beard, moustache, headwear, bald, glasses, age, skin_tone, or NAME:CLASS")
    p.add_argument("--band", help="mine: LO,HI: photos whose reading is in it are mined")
    p.add_argument("--drawn", action="store_true", help="mine: photos whose reported value it is are mined "
                                                        "too (or alone, without --band)")
    p.add_argument("--random", type=count, default=0, help="mine: this many of the other photos at random")
    p.add_argument("--seed", type=int, default=0, help="mine: the random photos' seed")
    p.add_argument("--controls", type=count, default=0,
                   help="sheets: this many training photos of ffhq128-labelled spread over the sheets")
    p.add_argument("--overwrite", action="store_true",
                   help="sheets: replace the batch (sheetNN.png, layout.json) the --out folder holds")
    p.add_argument("--shared")
    p.set_defaults(func=main_labels)
