"""``avatarizer-export hat-net``: fit the hat network (``avatarizer.headwear.NETWORK``).

Hats drawn as hair were the avatars' most visible attribute misses (a
black fedora became long black hair, 69371): H's headwear head, linear over
features distilled from ImageNet and fitted on the 29 hats of the shared
labels' training photos, runs low on new photos (held out by eye
`Avatarizer()` drew 34 of 53 hats with it, at its threshold of 0.326,
session 29). This network reads
the top of the head only: rows 0-64 of the aligned 128-px crop (the crop
the hair stage reads), averaged 2x2 inside the graph, a small CNN
(:mod:`avatarizer_export.regionnet`) with one sigmoid output, P(headwear).

Data (the training split of :func:`avatarizer_export.data.is_heldout` only),
labels by eye only: every label that says whether the head is covered
(:func:`avatarizer_export.data.headwear_labels`: hat kinds, the accessories
of ``ffhq128``, the top of the head, hair length) and the hat kinds of
``ffhq128-labelled`` (``labels/headwear_kind_by_eye.jsonl``). The shared
labels are not used: they miss at least 10 of the 95 held-out hats they
call hatless (docs/MODEL_CARD.md, H 2.3.5). The drawing threshold out of
fold as for the facial-hair network, at :data:`PRECISION` 0.95 (H's hats'
precision: an invented hat is worse than a missed one).

    avatarizer-export hat-net [--shared ../shared] [--cache cache]
    # writes sdk/avatarizer/data/headwear_net.onnx and headwear_net.json
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from .data import EYE_LABELS, headwear_labels, is_heldout, load_aligned
from .rethreshold import PRECISION as RT_PRECISION

#: the block is averaged 2x2 before the first convolution (hats are large; a quarter of the cost)
POOL = 2
#: the drawing threshold's out-of-fold precision: H's hats' (``rethreshold.PRECISION``), not the other
#: accessories' 0.9: an invented hat is worse than a missed one (at 0.9, held out by eye: 41 of 53 hats
#: drawn with 6 of 170 invented, among them a girl's pigtails and a woman's hair; H alone 34 with 3)
PRECISION = RT_PRECISION["headwear"]


def hat_labels(labels: Path | None = None) -> dict[str, int]:
    """``{"FOLDER/NAME": 0 or 1}``: every label by eye of a covered head
    (:func:`avatarizer_export.data.headwear_labels`), then the hat kinds
    of ``ffhq128-labelled``, which it leaves out (the artist's detector
    reads their shared labels)."""
    lab = {k: int(v["headwear"]) for k, v in headwear_labels(labels).items()}
    kinds = Path(labels or EYE_LABELS) / "headwear_kind_by_eye.jsonl"
    if kinds.is_file():
        for line in kinds.read_text(encoding="utf-8").splitlines():
            if line.strip():
                rec = json.loads(line)
                if isinstance(rec.get("hat"), str):
                    lab.setdefault(rec["file"], int(rec["hat"] != "none"))
    return lab


def training_rows(aligned, labels: Path | None = None) -> dict:
    """The rows of the aligned cache with a label by eye for a covered head
    (:func:`hat_labels`): ``keys``, ``y`` (N x 1), ``labelled`` (all),
    ``held`` and ``index``."""
    lab = hat_labels(labels)
    pos = {k: i for i, k in enumerate(aligned.keys)}
    keys = [k for k in sorted(lab) if k in pos]
    return {"keys": keys, "y": np.array([[lab[k]] for k in keys], np.float32).reshape(-1, 1),
            "labelled": np.ones(len(keys), bool), "held": np.array([is_heldout(k) for k in keys], bool),
            "index": np.array([pos[k] for k in keys], np.int64)}


def fit(shared: Path, cache: Path, *, data: Path | None = None, quiet: bool = False) -> dict:
    """Fits the network (:func:`avatarizer_export.regionnet.fit_task`),
    writes ``headwear_net.onnx`` and ``headwear_net.json`` into ``data``
    (default the SDK's data folder) and returns the JSON document.
    ``shared`` is unused (labels by eye only), for the pipeline's one signature."""
    from avatarizer import headwear as HW
    from avatarizer import regionnet as RN

    from .regionnet import fit_task

    al = load_aligned(cache)
    rows = training_rows(al)
    y, tr = rows["y"], ~rows["held"]
    labelled_set = np.array([k.startswith("ffhq128-labelled/") for k in rows["keys"]])
    return fit_task(HW.NETWORK, al.crops, rows, data=data, quiet=quiet, pool=POOL, input_name="head_top",
                    held_groups=(("held out, labelled by eye", np.ones(len(y), bool)),
                                 ("held out, ffhq128-labelled (hat kinds by eye)", labelled_set)),
                    trained_on={"hats": int(y[tr].sum()), "pool": POOL}, clear=RN.clear_cache, precision=PRECISION)


def add_parser(sub):
    from .regionnet import add_fit_parser

    add_fit_parser(sub, "hat-net", "fit the hat network (headwear) on the photos labelled by eye", fit,
                   shared_help="the shared data folder (default ../shared; unused: labels by eye)")
