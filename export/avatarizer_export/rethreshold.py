"""``avatarizer-export rethreshold``: chooses a flag's drawing threshold of
the shipped attribute regressor H again, on photos labelled by eye that its
head never trained on.

Why: H's headwear head is fitted on the shared labels' training photos
(29 hats among 394) and its thresholds were chosen on its outputs for them;
the student network distilled from it fits those photos almost perfectly
(ROC AUC 0.991 there, 0.88-0.90 on photos it never saw), so on new photos
its P(headwear) runs low and the drawing threshold (0.508) was far stricter
than its precision target: it drew 79 of the 219 hats among the 1,801
training photos of ``ffhq128`` labelled by eye for headwear (docs/data.md),
and 1 on the 1,582 without one (precision 0.99 where 0.9 was asked). No
head of H was fitted on those labels (``attributes.H_EYE_FIELDS``), so they
are an honest set to choose the drawing threshold on: the lowest whose
precision there reaches :data:`PRECISION` (the procedure of
``attributes.flag_thresholds``, without its floor of 0.5: these are H's
own, uncalibrated probabilities). A hat H missed is drawn as hair in the
hat's colour. ``avatar.attributes`` reports the drawing decision as the
value (``hair.public_attributes``), with H's probability, which for hats
is not calibrated on such photos: a hat can be reported drawn at 0.33. The
balanced decision threshold (what ``eval`` scores) stays: chosen the same
way (best balanced accuracy, 0.06 against 0.09) it scored lower on both
held-out label sets (0.886 -> 0.877 by eye, 0.815 -> 0.799 shared).

Only the file's description changes (its ``draw_thresholds``,
``heldout_metrics`` and a ``rethreshold`` record): the
network and every output stay byte for byte, so the hair bank (H's
predictions of its members) stays valid; the checksum changes, so refit
the glasses and hat fusions after it (``make models`` runs this after H's
heads, before the hair bank and the fusions). The held-out metrics already in the
description keep their threshold-free numbers (balanced accuracy at the
decision threshold, ECE); only what is drawn is measured again (``drawn``,
``drawn_wrong``, ``draw_recall``; left out where the labels to measure it
are not there), and the photos labelled by eye add their own entry. Only
flags with labels by eye H was not trained on
(:data:`RETHRESHOLDABLE`). The report
(``runs/attributes/rethreshold_<version>_<sha256 12>.json``, named by the file it made
too: a trial run's H of the same version, or another ``--models`` folder's, never
writes over the shipped one's report) has, before and after, the
held-out photos of both label sets (the shared labels' and those labelled
by eye): balanced accuracy at the decision threshold, photos drawn, drawn
without the label, the recall of drawing, the expected calibration error.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from avatarizer import hair as HR

from .attributes import (DRAW_PRECISION, DRAW_PRECISION_FALLBACKS, H_EYE_FIELDS, MODELS, RUN, SHIP_FILE, _ffhq_targets,
                         flag_metrics, next_patch, onnx_predictions, save_head_change)
from .paths import cache_dir, optional_shared_dir

#: binary flags of H that have labels by eye H was not trained on
RETHRESHOLDABLE = tuple(f for f in ("headwear",) if f not in H_EYE_FIELDS)
#: the precision a flag's drawing threshold needs on the photos labelled by
#: eye: above ``attributes.DRAW_PRECISION`` (0.9) for hats. On the 1,801
#: training photos, H 2.3.4's threshold for 0.9 (0.242) drew 111 of their
#: 219 hats and 12 on photos without one, the one for 0.95 (0.326) 101 and
#: 5 (its own 0.508: 79 and 1): the last 10 hats cost 7 invented ones, and
#: an invented hat is worse than a missed one.
PRECISION = {"headwear": 0.95}


def draw_threshold(p: np.ndarray, y: np.ndarray, precision: float, min_hits: int = 3) -> tuple[float | None, dict]:
    """The lowest threshold at which the precision among ``p`` >= it reaches
    ``precision`` (at least ``min_hits`` photos drawn), else the same for the
    lower targets of ``attributes.DRAW_PRECISION`` and its fallbacks; None when none
    is reached. As ``attributes.precision_threshold``, without its floor of
    0.5 (these are H's own probabilities) and cut halfway to the next lower
    probability, so that rounding never moves a photo across it. With the
    precision and recall there."""
    p, y = np.asarray(p, np.float64), np.asarray(y, np.float64)
    order = np.argsort(-p, kind="stable")
    ps, ys = p[order], y[order]
    n = np.arange(1, len(ps) + 1)
    prec = np.cumsum(ys) / n
    distinct = np.r_[ps[1:] < ps[:-1], True]  # only cut between distinct probabilities
    t, target = None, precision
    for target in (precision, *(f for f in (DRAW_PRECISION, *DRAW_PRECISION_FALLBACKS) if f < precision)):
        ok = (n >= min_hits) & (prec >= target) & distinct
        if ok.any():
            j = np.flatnonzero(ok)[-1]
            t = float(ps[j]) if j + 1 == len(ps) else float(0.5 * (ps[j] + ps[j + 1]))
            if j + 1 < len(ps) and ps[j + 1] < round(t, 6) <= ps[j]:
                t = round(t, 6)
            break
    m = p >= t if t is not None else np.zeros(len(p), bool)
    return t, {"target": target, "precision": round(float(y[m].mean()), 3) if m.any() else None,
               "recall": round(float(m[y > 0].mean()), 3) if (y > 0).any() else None,
               "positives": int(y.sum()), "photos": int(len(y))}


def rethreshold(names=RETHRESHOLDABLE, cache: Path | None = None, shared: Path | None = None,
                version: str | None = None, folder: Path = MODELS, log=print) -> dict:
    """Chooses the drawing thresholds of the flags ``names`` of ``folder``'s H file
    again (the module's doc), writes them into its description and returns
    the report. ``shared``: for the held-out report on the shared labels too
    (left out, and said, without it)."""
    import onnx

    from . import formats
    from .data import eye_labels, ffhq_labels, is_heldout, load_aligned

    names = tuple(dict.fromkeys(names))  # (a flag named twice was rethresholded twice: a wrong "draw_from")
    bad = [n for n in names if n not in RETHRESHOLDABLE]
    if bad or not names:
        raise ValueError(f"rethreshold: flags from {RETHRESHOLDABLE}, got {list(names)}")
    t0 = time.time()
    al = load_aligned(cache_dir(cache))
    where = {k: i for i, k in enumerate(al.keys)}
    elab = eye_labels()
    shared = optional_shared_dir(shared, log, "rethreshold: the held-out report is of the photos labelled by eye only")
    shared_labels = {} if shared is None else ffhq_labels(shared)
    path = Path(folder) / SHIP_FILE
    model = onnx.load(str(path))
    old_desc = formats.onnx_metadata(model)
    missing = [k for k in ("decision_thresholds", "draw_thresholds") if k not in old_desc]
    if missing:  # (another role's file under H's name: a KeyError traceback)
        raise ValueError(f"{path} is not the attribute regressor H (its description has no {', '.join(missing)}; "
                         f"role {old_desc.get('role')!r})")
    desc = json.loads(json.dumps(old_desc))
    decision, draw = dict(desc["decision_thresholds"]), dict(desc["draw_thresholds"])
    report: dict = {"flags": list(names), "from": f"{SHIP_FILE} {old_desc.get('version')}",
                    "precision_target": {n: PRECISION.get(n, DRAW_PRECISION) for n in names},
                    "heldout_before": {}, "heldout_after": {}, "thresholds": {}}
    for name in names:
        j = HR.BINARY_ATTRIBUTES.index(name)
        # the photos labelled by eye for this flag (its head never trained on them), in the aligned cache
        keys = sorted(k for k, v in elab.items() if name in v and k in where and not k.startswith("ffhq128-labelled/"))
        y = np.array([int(elab[k][name]) for k in keys])
        train = np.array([not is_heldout(k) for k in keys], bool)
        if train.sum() < 50 or y[train].sum() < 10:
            raise ValueError(f"rethreshold {name}: {int(train.sum())} training photos labelled by eye with "
                             f"{int(y[train].sum())} positive: too few to choose thresholds on")
        p = onnx_predictions(path, al.crops[[where[k] for k in keys]])["binary"][:, j].astype(np.float64)
        dec_t = decision.get(name, 0.5)
        draw_t, at = draw_threshold(p[train], y[train].astype(float), PRECISION.get(name, DRAW_PRECISION))
        if draw_t is None:  # no threshold reaches even the lowest target: the file's own stays, said
            log(f"rethreshold {name}: no drawing threshold reaches a precision of "
                f"{DRAW_PRECISION_FALLBACKS[-1]} on these photos; {draw.get(name)} stays")
            draw_t = draw.get(name, 0.5)
        log(f"rethreshold {name}: on {int(train.sum())} photos labelled by eye ({int(y[train].sum())} positive): "
            f"drawing {draw.get(name)} -> {draw_t} ({at})")
        report["thresholds"][name] = {"decision": dec_t, "draw_from": draw.get(name), "draw_to": draw_t,
                                      "draw_at": at,
                                      "train_photos": int(train.sum()), "train_positives": int(y[train].sum()),
                                      "labels": "labels by eye (avatarizer_export/labels/*.jsonl, docs/data.md)"}
        sets = [("eye_labels", p[~train], y[~train])]
        if shared_labels:
            sk = [f"ffhq128-labelled/{n}" for n in sorted(shared_labels) if is_heldout(f"ffhq128-labelled/{n}")
                  and f"ffhq128-labelled/{n}" in where]
            sy = np.array([_ffhq_targets(shared_labels[k.split("/", 1)[1]])[name] for k in sk], np.float64)
            ok = np.isfinite(sy)
            if ok.any():  # (a cache without the labelled folder's held-out photos: "need at least one array")
                sp = onnx_predictions(path, al.crops[[where[k] for k, o in zip(sk, ok) if o]])["binary"][:, j]
                sets.append(("shared", sp.astype(np.float64), sy[ok].astype(int)))
        for label_set, pp, yy in sets:
            if not len(yy):
                continue
            key = name if label_set == "shared" else f"{name}_{label_set}"
            report["heldout_before"][key] = flag_metrics(pp, yy, decision.get(name, 0.5), draw.get(name, 0.5))
            report["heldout_after"][key] = flag_metrics(pp, yy, dec_t, draw_t)
        draw[name] = draw_t
    from_version = str(desc.get("version", "0.0.0"))
    desc.update(draw_thresholds=draw, created_by=formats.created_by(),
                version=version or next_patch(from_version))
    metrics = dict(desc.get("heldout_metrics") or {})
    draw_keys = ("drawn", "drawn_wrong", "draw_recall")
    for name in names:
        for key in (name, f"{name}_eye_labels"):
            old = dict(metrics.get(key) or {})
            new = report["heldout_after"].get(key)
            if new is None:  # not measured again: its drawing numbers were of the old threshold
                if old:
                    metrics[key] = {k: v for k, v in old.items() if k not in draw_keys}
            elif old:  # its threshold-free numbers as they were, what is drawn measured again
                metrics[key] = {**old, **{k: new[k] for k in draw_keys}}
            else:
                metrics[key] = new
    desc["heldout_metrics"] = metrics
    desc["rethreshold"] = {**(desc.get("rethreshold") or {}),
                           **{n: {**report["thresholds"][n], "from": f"{SHIP_FILE} {from_version}",
                                  "to": desc["version"]} for n in names}}
    entry = save_head_change(model, desc, path, folder, from_version,
                             f"labels by eye for the thresholds of {', '.join(names)} "
                             "(avatarizer_export/labels, docs/data.md)")
    report.update(version=desc["version"], sha256=entry["sha256"], seconds=round(time.time() - t0, 1))
    RUN.mkdir(parents=True, exist_ok=True)
    (RUN / report_name(desc["version"], entry["sha256"])).write_text(json.dumps(report, indent=1))
    log(json.dumps(report, indent=1))
    log("rethreshold: the file's checksum changed; refit the glasses and hat fusions (`avatarizer-export "
        "detectors --fusion`, `avatarizer-export hat-net --fusion`) next (its outputs are unchanged: the hair bank "
        "stays valid)")
    return report


def report_name(version: str, sha256: str) -> str:
    """The report's file name in ``runs/attributes``: by the version and the
    checksum of the file it wrote."""
    return f"rethreshold_{version}_{sha256[:12]}.json"


def main_rethreshold(args) -> int:
    names = tuple(n.strip() for n in args.flags.split(",") if n.strip())
    if not names or any(n not in RETHRESHOLDABLE for n in names):
        raise SystemExit(f"--flags takes flags from {RETHRESHOLDABLE}, got {args.flags!r}")
    rethreshold(names, cache=args.cache, shared=args.shared, version=args.version,
                folder=Path(args.models) if args.models else MODELS)
    return 0


def add_parser(sub):
    from .attributes import _version_arg

    p = sub.add_parser("rethreshold", help="choose a flag's drawing threshold of the shipped attribute regressor H "
                                           "again, on photos labelled by eye it never trained on (docs/MODEL_CARD.md)")
    p.add_argument("--flags", default=",".join(RETHRESHOLDABLE), help=f"flags (of {RETHRESHOLDABLE})")
    p.add_argument("--cache")
    p.add_argument("--shared", help="for the held-out report on the shared labels too")
    p.add_argument("--models", help="the models folder (default: the SDK's)")
    p.add_argument("--version", type=_version_arg, help="the new file's version (default: the source's patch + 1)")
    p.set_defaults(func=main_rethreshold)
