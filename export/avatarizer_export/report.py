"""``avatarizer-export report``: the evaluation report under ``docs/report/``.

Evaluates, on the held-out photos of ffhq128, ffhq128-labelled and
stylegan128 (and a slice of utkface200), the full model against direct
regression, nearest-neighbour retrieval and the auto-artist, the paper's
Table 3 ablation and the paired-data-size study (each of their rows also
paired against its reference run, "full" / all paired photos, with a paired
bootstrap 95% interval over photos); writes ``docs/report/results.json``
(the paired comparisons under ``paired``), the tables in ``docs/report/
README.md`` and figures (loss curves, a photo | artist | full model | direct
grid of 24 faces).
"""
from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import numpy as np

from .argtypes import count
from .evaluate import evaluate, list_photos
from .onnx_util import staged
from .paths import ROOT, cache_dir, shared_dir
from .train import RUNS, SHIPPED_MAPPER

OUT = ROOT / "docs" / "report"
ABLATIONS = [("without alignment losses", "mapper:mapper_no_align"), ("without the MSE term", "mapper:mapper_no_mse"),
             ("without the cosine term", "mapper:mapper_no_cos"), ("without weight alignment", "mapper:mapper_no_w"),
             ("full", "model")]
SIZES = [500, 1000, 4000]
ABLATION_REF, SIZE_REF = "model", "model"  # the runs each ablation / data-size row is paired against
SHIPPED = f"mapper:{SHIPPED_MAPPER}"
LOSS_RUNS = ("image_ae", "param_ae", "mapper_full", "mapper_full_ft", "direct")  # their loss.png go in the report
PER_PHOTO = {"render_lpips": "render_lpips", "identity_top1": "identity_hit"}  # metric -> per-photo values


def _paired(per: dict, a: str, b: str) -> dict:
    """Paired bootstrap of A − B for each metric of PER_PHOTO (per-photo values of ``evaluate(keep=)``),
    with the per-photo means the difference is taken between (``mean_a``, ``mean_b``: for identity the
    per-photo hit rate, not the group-averaged ``identity_top1``) and whether the interval excludes zero."""
    from .metrics import paired_bootstrap

    out = {}
    for key, src in PER_PHOTO.items():
        x, y = np.asarray(per[a][src], np.float64), np.asarray(per[b][src], np.float64)
        d = paired_bootstrap(x, y)
        d.update(mean_a=float(x.mean()), mean_b=float(y.mean()), excludes_zero=not d["lo"] <= 0.0 <= d["hi"])
        out[key] = d
    return out


def _verdict(d: dict, better: str) -> str:
    """How A compares with B from the paired interval of A − B: a tie where it includes zero, else the
    sign of the paired difference decides (``better``: "lower" or "higher")."""
    if d["lo"] <= 0.0 <= d["hi"]:  # the interval holds zero: no winner either way
        return "ties with (the interval includes zero)"
    return "beats" if (d["diff"] < 0 if better == "lower" else d["diff"] > 0) else "does NOT beat"


def _size_rows(M: dict) -> list[tuple[str, str]]:
    """(label, method) of the paired-data size table, smallest first; "all paired photos" is SIZE_REF."""
    rows = [(f"{n} paired photos", f"mapper:mapper_full_{n}") for n in SIZES if f"mapper:mapper_full_{n}" in M]
    rows.append(("all paired photos", SIZE_REF))
    if "direct:direct_500" in M:
        rows.append(("direct regression, 500 paired photos", "direct:direct_500"))
    return rows


def _against(per: dict, rows: list[tuple[str, str]], ref: str) -> list[dict]:
    """Each row's paired difference against the reference run (row − ``ref``, 95% paired bootstrap
    interval over photos; see ``_paired``) for the rows with per-photo values, the reference left out;
    ``identity_hit`` is the per-photo hit rate (its ``mean_a`` / ``mean_b``), not the group-averaged
    identity_top1 of the tables."""
    if ref not in per:
        return []
    out = []
    for label, m in rows:
        if m != ref and m in per:
            d = _paired(per, m, ref)
            out.append({"label": label, "method": m, "render_lpips": d["render_lpips"],
                        "identity_hit": d["identity_top1"]})
    return out


def _against_table(rows: list[tuple[str, str]], ref: str, ref_label: str, paired: list[dict]) -> str:
    """The paired table of an ablation / size study: per-photo means and each row's difference against
    ``ref`` with its 95% interval, marked "tie" where the interval includes zero, else "better" / "worse"."""
    by = {e["method"]: e for e in paired}

    def cell(d, better):
        mark = {"beats": "better", "does NOT beat": "worse"}.get(_verdict(d, better), "tie (includes 0)")
        return f"{d['diff']:+.4f} [{d['lo']:+.4f}, {d['hi']:+.4f}] {mark}"

    out = []
    for label, m in rows:
        if m in by:
            e = by[m]
            out.append([label, fmt(e["render_lpips"]["mean_a"]), cell(e["render_lpips"], "lower"),
                        fmt(e["identity_hit"]["mean_a"]), cell(e["identity_hit"], "higher")])
        elif m == ref and paired:
            e = paired[0]
            out.append([f"{label} (reference)", fmt(e["render_lpips"]["mean_b"]), "—",
                        fmt(e["identity_hit"]["mean_b"]), "—"])
    return _table(out, ["method", "render LPIPS ↓", f"Δ render LPIPS vs {ref_label}, 95% CI",
                        "identity hit rate (per photo) ↑", f"Δ identity hit rate vs {ref_label}, 95% CI"])


# the Findings' comparisons of the full model with the baselines: (A, B, label of A, label of B)
FINDINGS = [(SHIPPED, "direct", "The full model with E_s fine-tuned (shipped)", "direct regression"),
            (SHIPPED, "nearest", "The full model with E_s fine-tuned (shipped)", "nearest-neighbour retrieval"),
            ("model", "direct", "The paper's full model (E_s frozen)", "direct regression"),
            ("model", "nearest", "The paper's full model (E_s frozen)", "nearest-neighbour retrieval"),
            ("mapper:mapper_full_500_ft", "direct:direct_500", "With 500 paired photos the fine-tuned full model",
             "direct regression trained on the same 500"),
            ("mapper:mapper_full_500", "direct:direct_500", "With 500 paired photos the paper's full model",
             "direct regression trained on the same 500")]


def paired_results(M: dict, per: dict | None) -> dict:
    """The report's paired comparisons for ``results.json`` (``paired``): the Findings' pairs
    (``baselines``), and every ablation / data-size row against its reference run, each metric as
    ``_paired`` gives it (diff, lo, hi, n, mean_a, mean_b, excludes_zero; ``identity_hit``: per photo)."""
    per = per or {}
    base = []
    for a, b, _, _ in FINDINGS:
        if a in per and b in per:
            d = _paired(per, a, b)
            base.append({"a": a, "b": b, "render_lpips": d["render_lpips"], "identity_hit": d["identity_top1"]})
    return {"baselines": base,
            "ablation": {"reference": ABLATION_REF, "rows": _against(per, ABLATIONS, ABLATION_REF)},
            "size": {"reference": SIZE_REF, "rows": _against(per, _size_rows(M), SIZE_REF)}}


# what we tried to make the model beat direct regression: (label, method, lever);
# rows appear when their run exists (the controls are not part of `make models`,
# their commands are in docs/report/investigation.md)
SWEEP = [("paper's model: E_s frozen (image AE 1,500 steps)", "model", "baseline"),
         ("L_rec weighted 10× (E_s frozen)", "mapper:mapper_full_rec10", "loss weights"),
         ("image AE trained 2,500 steps instead of 1,500 (E_s frozen)", "mapper:mapper_full_aelong", "E_s training / capacity"),
         ("E_s fine-tuned with F after F converged (shipped)", SHIPPED, "extension"),
         ("E_s fine-tuned, no alignment losses", "mapper:mapper_no_align_ft", "control"),
         ("direct regression from the pretrained E_s", "direct:direct_pretrained", "control"),
         ("direct regression from scratch", "direct", "baseline"),
         ("500 photos: E_s fine-tuned with F", "mapper:mapper_full_500_ft", "extension"),
         ("500 photos: E_s frozen", "mapper:mapper_full_500", "baseline"),
         ("500 photos: direct regression", "direct:direct_500", "baseline")]


def prep_cache(utk: int, cache: Path | None = None) -> Path:
    """Where the aligned held-out photos and their pseudo ground truth are kept."""
    return cache_dir(cache) / "eval" / f"heldout_utk{utk}_sampled.npz"


def heldout_files(shared: Path, utk: int = 300) -> list[Path]:
    faces = shared / "data" / "faces"
    files = []
    for src in ("ffhq128", "ffhq128-labelled", "stylegan128"):
        files += list_photos(faces / src, True, None)
    # drawn at random (seed 0): UTKFace's names start with the age, so the first 300 by name were
    # ages 1-24 alone
    files += list_photos(faces / "utkface200", True, None, sample=utk) if utk else []
    return files


def _grid(keep: dict, methods: list[str], n: int = 24, path: Path = OUT / "grid.png"):
    from avatarizer import render
    from avatarizer.gallery import contact_sheet

    idx = np.linspace(0, len(keep["names"]) - 1, n).astype(int)
    tiles, labels = [], []
    for i in idx:
        tiles.append(np.asarray(keep["crops"][i]))
        labels.append(keep["names"][i][:14])
        for m in methods:
            name = {SHIPPED: "shipped (ft)", "model": "paper (frozen)"}.get(m, m.split(":")[-1])
            params = keep["preds"][m][i]
            if np.isfinite(params).all():
                tiles.append(render(params, 128, background="white"))
            else:  # the method drew no avatar (the SDK found no face): a blank tile, not another's avatar
                tiles.append(np.full((128, 128, 3), 255, np.uint8))
                name += ": no face"
            labels.append(name)
    # two faces side by side per row: the sheet stays viewable at 24 faces
    sheet = contact_sheet(tiles, cols=2 * (len(methods) + 1), labels=labels)
    from PIL import Image

    Image.fromarray(sheet).save(path, optimize=True)
    return path


def _table(rows, cols):
    out = ["| " + " | ".join(cols) + " |", "|" + " --- |" * len(cols)]
    for r in rows:
        out.append("| " + " | ".join(r) + " |")
    return "\n".join(out)


def fmt(v, nd=3):
    return "n/a" if v is None or (isinstance(v, float) and np.isnan(v)) else f"{v:.{nd}f}"


def _findings(M: dict, per: dict | None = None) -> list[str]:
    """Plain sentences: where the full model beats a baseline and where it does
    not, with a paired bootstrap 95% interval of the difference over photos
    (identity: per-photo hit rate) when per-photo values are given; then the
    verdict comes from the interval (a tie where it includes zero, else the
    sign of the paired difference), and identity shows the per-photo hit rates
    the difference is taken between beside the group-averaged identity_top1."""
    out = []
    per = per or {}

    def cmp(a, b, label_a, label_b):
        if a not in M or b not in M:
            return
        ds = _paired(per, a, b) if a in per and b in per else {}
        for key, better in (("render_lpips", "lower"), ("identity_top1", "higher")):
            x, y = M[a].get(key), M[b].get(key)
            if x is None or y is None:
                continue
            if key in ds:
                d = ds[key]
                ci = f"paired difference {d['diff']:+.4f}, 95% CI [{d['lo']:+.4f}, {d['hi']:+.4f}]"
                if key == "identity_top1" and "mean_a" in d:  # the means the paired difference is taken between
                    ci = (f"per-photo hit rate {d['mean_a']:.3f} vs {d['mean_b']:.3f}, {ci}; "
                          f"group-averaged identity_top1 {x:.3f} vs {y:.3f}")
                else:
                    ci = f"{x:.3f} vs {y:.3f}; {ci}"
                out.append(f"- {label_a} {_verdict(d, better)} {label_b} on {key} ({ci}).")
                continue
            wins = x < y if better == "lower" else x > y
            out.append(f"- {label_a} {'beats' if wins else 'does NOT beat'} {label_b} on {key} ({x:.3f} vs {y:.3f}).")

    for a, b, label_a, label_b in FINDINGS:
        cmp(a, b, label_a, label_b)
    for label, m in ABLATIONS:  # Table 3: each variant against the full model
        if m != ABLATION_REF:
            cmp(m, ABLATION_REF, f"Table 3: the paper's model {label}", "the full model (E_s frozen)")
    for label, m in _size_rows(M):  # data size: each row against the model on all paired photos
        if m != SIZE_REF:
            name = "direct regression" if m.startswith("direct") else "the paper's model (E_s frozen)"
            cmp(m, SIZE_REF, f"Data size: {name} on {label.split(', ')[-1]}",
                "the paper's model on all paired photos")
    return out


def compare(pairs: list[tuple[str, str]], shared: Path, utk: int = 300, cache: Path | None = None) -> list[dict]:
    """Paired bootstrap differences (A − B, 95% CI over photos) of render LPIPS
    and identity hit rate for method pairs on the report's held-out photos,
    without rewriting the report. ``identity_hit`` holds the per-photo hit
    rates the difference is taken between (``mean_a``, ``mean_b``);
    ``identity_top1`` is the group-averaged number of each, as in the tables."""
    methods = list(dict.fromkeys(m for p in pairs for m in p))
    keep = {}
    res = evaluate(heldout_files(shared, utk=utk), methods, keep=keep, cache=prep_cache(utk, cache), progress=False,
                   data_cache=cache_dir(cache))
    out = []
    for a, b in pairs:
        d = _paired(keep["per_photo"], a, b)
        out.append({"a": a, "b": b, "render_lpips": d["render_lpips"], "identity_hit": d["identity_top1"],
                    "identity_top1": [res["methods"][a]["identity_top1"], res["methods"][b]["identity_top1"]]})
    return out


def main_report(args) -> int:
    if getattr(args, "compare", None):
        import sys

        from .evaluate import UsageError, check_methods

        pairs = [tuple(p.strip() for p in p.split("/")) for p in args.compare.split(",")]
        if any(len(p) != 2 or not all(p) for p in pairs):
            print("avatarizer-export report: --compare: give pairs as A/B,C/D (methods as in eval --methods)",
                  file=sys.stderr)
            return 2
        methods = list(dict.fromkeys(m for p in pairs for m in p))
        if "artist" in methods:  # the pseudo ground truth: no render LPIPS or identity per photo against itself
            print("avatarizer-export report: --compare: 'artist' is the pseudo ground truth every method is "
                  "measured against, not a method to compare", file=sys.stderr)
            return 2
        try:
            check_methods(methods, runs=RUNS)
        except UsageError as exc:
            print(f"avatarizer-export report: --compare: {exc}", file=sys.stderr)
            return 2
        shared = shared_dir(args.shared)
        print(json.dumps(compare(pairs, shared, args.utk, getattr(args, "cache", None)), indent=1))
        return 0
    shared = shared_dir(args.shared)
    from .evaluate import UsageError

    try:
        write_report(shared, utk=args.utk, cache=getattr(args, "cache", None))
    except UsageError as exc:
        import sys

        print(f"avatarizer-export report: {exc}", file=sys.stderr)
        return 2
    return 0


def write_report(shared: Path, utk: int = 300, cache: Path | None = None) -> dict:
    """Evaluates every training run on the held-out photos and writes ``docs/report/``; returns the results.

    What it cannot do without is checked before any photo is read or
    ``docs/report/`` is touched (it failed after minutes of aligning): the
    training runs of the model and the direct baseline (:class:`UsageError`)
    and the LPIPS weights (``FileNotFoundError``)."""
    from .evaluate import check_methods
    from .lpips import weights_path

    methods = ["artist", "model", "direct", "nearest"] + [m for _, m in ABLATIONS if m != "model"]
    methods += [f"mapper:mapper_full_{n}" for n in SIZES if (RUNS / f"mapper_full_{n}" / "ckpt.pt").exists()]
    methods += ["direct:direct_500"] if (RUNS / "direct_500" / "ckpt.pt").exists() else []
    methods += [m for _, m, _ in SWEEP if m not in methods]
    methods = [m for m in methods if m in ("artist", "model", "direct", "nearest")
               or (RUNS / m.split(":", 1)[1] / "ckpt.pt").exists()]
    check_methods(methods, runs=RUNS)
    weights_path(None, "alex")
    files = heldout_files(shared, utk=utk)
    OUT.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    keep = {}
    res = evaluate(files, methods, keep=keep, identity_n=100, cache=prep_cache(utk, cache), data_cache=cache_dir(cache))
    res["seconds"] = round(time.time() - t0, 1)
    res["photos"] = [str(f.relative_to(shared)) for f in files]
    res["paired"] = paired_results(res["methods"], keep.get("per_photo"))
    with staged(OUT / "results.json", "part") as tmp:  # (never half a file: a run cut short kept the old one)
        tmp.write_text(json.dumps({k: v for k, v in res.items() if k != "photos"}, indent=1))
    _grid(keep, [m for m in ("artist", SHIPPED, "model", "direct") if m in keep["preds"]])
    for run in LOSS_RUNS:
        src = RUNS / run / "loss.png"
        if src.exists():
            shutil.copy(src, OUT / f"loss_{run}.png")
    M = res["methods"]
    cols = ["method", "render LPIPS ↓", "render L1 ↓", "param L1 ↓", "identity top-1 ↑", "render detect rate",
            "skin ΔE ↓", "hair ΔE ↓"]

    def row(label, m):
        r = M.get(m, {})
        return [label, fmt(r.get("render_lpips")), fmt(r.get("render_l1")), fmt(r.get("param_l1")),
                fmt(r.get("identity_top1")), fmt(r.get("render_detect_rate")), fmt(r.get("skin_delta_e"), 2),
                fmt(r.get("hair_delta_e"), 2)]

    main_rows = [row("auto-artist (ceiling, pseudo ground truth)", "artist")]
    if SHIPPED in M:
        main_rows.append(row("full model, E_s fine-tuned after F (shipped)", SHIPPED))
    main_rows += [row("full model, paper (E_s → F → D_t, E_s frozen)", "model"),
                  row("direct regression", "direct"), row("nearest neighbour in E_s space", "nearest")]
    sweep_rows = [[lever] + row(label, m) for label, m, lever in SWEEP if m in M]
    abl_rows = [row(label, m) for label, m in ABLATIONS if m in M]
    size_rows = [row(label, m) for label, m in _size_rows(M)]
    paired_note = ("Paired against {ref} (Δ = row − {ref}, the mean over photos, with its paired bootstrap 95% "
                   "interval over photos; `results.json` `paired.{key}`): \"tie\" where the interval includes zero, "
                   "else \"better\" / \"worse\" for the row. Identity here is the per-photo hit rate (the share "
                   "of avatars whose own photo is strictly nearest), which the paired difference is taken "
                   "between; the table above gives identity top-1 averaged over the groups of 100, which weights "
                   "each photo of the last, larger group less.")
    abl, size = res["paired"]["ablation"]["rows"], res["paired"]["size"]["rows"]
    abl_paired = [paired_note.format(ref="full", key="ablation"), "",
                  _against_table(ABLATIONS, ABLATION_REF, "full", abl), ""] if abl else []
    size_paired = [paired_note.format(ref="all paired photos", key="size"), "",
                   _against_table(_size_rows(M), SIZE_REF, "all paired photos", size), ""] if size else []
    text = [
        "# Evaluation report", "",
        f"Held-out photos: {res['faces']} ({res['aligned']} aligned) from ffhq128, ffhq128-labelled, stylegan128 "
        f"and {utk} held-out utkface200 photos drawn at random (seed 0; split: `docs/split.md`). "
        "Pseudo ground truth is the "
        "auto-artist's avatar of the un-augmented photo; every method's avatar takes hair and accessories from it, "
        "so render metrics compare faces. Renders 256 px on white; LPIPS AlexNet v0.1 (checked against the "
        "reference triplet in `tests/test_metrics.py`). Identity top-1 within consecutive groups of 100 photos, "
        f"the last taking the remainder (the largest: {M['artist']['identity_n']} photos).", "",
        f"Produced by `avatarizer-export report` in {res['seconds']} s.", "",
        "## Full model against baselines", "", _table(main_rows, cols), "",
        "## Ablation (paper's Table 3)", "", _table(abl_rows, cols), "", *abl_paired,
        "## Paired-data size", "", _table(size_rows, cols), "", *size_paired,
        "## What moved the numbers", "",
        "Runs trained to find out why the paper's model loses to direct regression here (the story and the "
        "commands: `docs/report/investigation.md`).", "",
        _table(sweep_rows, ["lever"] + cols), "",
        "## Findings", "", *_findings(M, keep.get("per_photo")), "",
        "## Figures", "", "![grid: photo | artist | shipped (E_s fine-tuned) | paper (E_s frozen) | direct](grid.png)",
        "",
    ]
    for run in LOSS_RUNS:
        if (OUT / f"loss_{run}.png").exists():
            text.append(f"![{run} loss](loss_{run}.png)")
    with staged(OUT / "README.md", "part") as tmp:
        tmp.write_text("\n".join(text) + "\n")
    print(f"wrote {OUT / 'README.md'} and results.json ({res['seconds']} s)")
    return res


def add_parser(sub):
    p = sub.add_parser("report", help="evaluate all methods and ablations on the held-out split (docs/report/)")
    p.add_argument("--shared")
    p.add_argument("--utk", type=count, default=300, metavar="N",
                   help="held-out utkface200 photos to include (0: none; default 300)")
    p.add_argument("--cache", help="cache folder (default <repo>/cache): the prepared held-out photos are kept there")
    p.add_argument("--compare", metavar="A/B,...",
                   help="only print paired bootstrap differences A − B (95%% CI over photos) for these method pairs")
    p.set_defaults(func=main_report)
