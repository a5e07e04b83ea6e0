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

Fused with H (:func:`fit_fusion`, ``--fusion``; a ``make models`` step
after H ships, as the glasses fusion): the network reads the top of the head
only, H the whole face, and they miss different hats. A logistic model over
the two logits (:class:`avatarizer.headwear.HatFusion`), every row alike
(its probability keeps the hats' frequency), on the labelled training
photos: the network's part its out-of-fold probabilities (``fit`` keeps
them in the cache, :data:`OOF_FILE`), H's its own outputs, which are out of
sample there but for the 51 of ``ffhq128-labelled`` (H's headwear head never
trained on labels by eye, ``attributes.H_EYE_FIELDS``, but on those photos'
shared labels; left out in session 30, the fit hardly moved: threshold
0.762, and held out it found 37 of 53 hats, 4 invented); the L2 weight by 5-fold out-of-fold log
loss, the drawing threshold at :data:`PRECISION` out of fold, the decision
threshold for the best balanced accuracy there. The SDK uses it only with
the H file and the network it names (their SHA-256).

    avatarizer-export hat-net [--cache cache]
    # writes sdk/avatarizer/data/headwear_net.onnx and headwear_net.json
    avatarizer-export hat-net --fusion [--cache cache]
    # writes sdk/avatarizer/data/headwear_fusion.json (the shipped H, the network beside it)
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from . import data
from .data import headwear_labels, is_heldout, load_aligned
from .rethreshold import PRECISION as RT_PRECISION

#: the block is averaged 2x2 before the first convolution (hats are large; a quarter of the cost)
POOL = 2
#: the drawing threshold's out-of-fold precision: H's hats' (``rethreshold.PRECISION``), not the other
#: accessories' 0.9: an invented hat is worse than a missed one (session 30, at 0.9, held out by eye: 41 of 53 hats
#: drawn with 6 of 170 invented, among them a girl's pigtails and a woman's hair; H alone 34 with 3)
PRECISION = RT_PRECISION["headwear"]


#: the network's out-of-fold probabilities on its training photos (in the cache folder; :func:`fit_fusion` reads them)
OOF_FILE = "headwear_net_oof.npz"
#: L2 weights tried for the fusion (5-fold out-of-fold log loss on the training photos)
FUSION_L2 = (0.1, 1.0, 10.0)


def hat_labels(labels: Path | None = None) -> dict[str, int]:
    """``{"FOLDER/NAME": 0 or 1}``: every label by eye of a covered head
    (:func:`avatarizer_export.data.headwear_labels`), then the hat kinds
    of ``ffhq128-labelled``, which it leaves out (the artist's detector
    reads their shared labels)."""
    lab = {k: int(v["headwear"]) for k, v in headwear_labels(labels).items()}
    kinds = Path(labels or data.EYE_LABELS) / "headwear_kind_by_eye.jsonl"
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
                    trained_on={"hats": int(y[tr].sum()), "pool": POOL}, clear=RN.clear_cache, precision=PRECISION,
                    oof_out=Path(cache) / OOF_FILE)


def check_labels(cache: Path) -> int:
    """The hats among the training photos :func:`fit` will read (raises
    SystemExit as ``fit`` would, with fewer than ``regionnet.MIN_POSITIVES``):
    ``make models`` asks once the photos are aligned, since the network is
    fitted only after H ships, hours later."""
    from .regionnet import MIN_POSITIVES, threshold_positives

    hats = int(threshold_positives(training_rows(load_aligned(Path(cache))))[0])
    if hats < MIN_POSITIVES:
        raise SystemExit(f"hat network: {hats} hats labelled by eye among the aligned training photos "
                         f"(at least {MIN_POSITIVES} needed): label more, or align the photos they label")
    return hats


def _model_headwear(session, crops, index: np.ndarray) -> np.ndarray:
    """H's P(headwear) (as the runtime decodes it) of the cache's crops ``index``."""
    from .onnx_util import model_flag

    return model_flag(session, crops, index, "headwear")


def fusion_fit(x: np.ndarray, y: np.ndarray, precision: float = PRECISION) -> dict:
    """The fusion of the features ``x`` (n x 2, :func:`avatarizer.headwear.fusion_features`
    of the network's out-of-fold probability and H's) for the labels ``y``
    (0/1): ``model`` (a logistic model, every row alike), ``l2`` (of
    :data:`FUSION_L2`, by 5-fold out-of-fold log loss), ``thresholds``
    (``draw``: the lowest with out-of-fold ``precision``; ``decision``: the
    best balanced accuracy there), ``oof`` (its out-of-fold P(headwear))
    and the losses."""
    from .attributes import _best_ba_threshold
    from .detectors import fit_logistic, oof, precision_threshold

    y = np.asarray(y).astype(int)

    def fit(x_, y_, k, l2):
        return fit_logistic(x_, y_, k, l2=l2, balanced=False)

    probs = {l2: oof(x, y, 2, fit=lambda a, b, k, l2=l2: fit(a, b, k, l2))[:, 1] for l2 in FUSION_L2}
    losses = {l2: float(-np.mean(np.log(np.clip(np.where(y > 0, p, 1 - p), 1e-9, 1)))) for l2, p in probs.items()}
    l2 = min(losses, key=losses.get)
    p = probs[l2]
    th = {"draw": precision_threshold(p, (y > 0).astype(float), precision), "decision": _best_ba_threshold(p, y > 0)}
    return {"model": fit(x, y, 2, l2), "l2": l2, "thresholds": th, "oof": p, "losses": losses}


def fit_fusion(shared: Path, cache: Path, *, models: Path | None = None, data: Path | None = None,
               quiet: bool = False) -> dict:
    """Fits the fusion of the hat network in ``data`` (default the SDK's data
    folder) with the H of ``models`` (default the SDK's; ``make models``
    passes its staging copies) and writes ``headwear_fusion.json`` beside the
    network; returns the document. ``shared`` is unused (labels by eye only).
    RuntimeError without the network, its out-of-fold probabilities
    (``fit`` with the same ``cache``) or an H."""
    import time

    from avatarizer import hair as HR
    from avatarizer import headwear as HW
    from avatarizer import regionnet as RN
    from avatarizer.pipeline.config import attributes_entry
    from avatarizer.runtime import Manifest, Session

    from .onnx_util import write_json_staged
    from .regionnet import DATA, read_oof, scores

    t0 = time.time()
    data = Path(data or DATA)
    net = RN.RegionNetwork.from_files(HW.NETWORK, data / HW.NETWORK.json_name) \
        if (data / HW.NETWORK.json_name).is_file() else None
    if net is None:
        raise RuntimeError(f"hat fusion: no hat network in {data} (run `avatarizer-export hat-net` first)")
    entry = attributes_entry(Manifest.load(models))
    if entry is None:
        raise RuntimeError("hat fusion: no attribute model (role 'attributes') to fuse the network with")
    al = load_aligned(cache)
    rows = training_rows(al)
    keys, y, held, index = rows["keys"], rows["y"][:, 0] > 0, rows["held"], rows["index"]
    oof_probs = read_oof(Path(cache) / OOF_FILE, net.sha256, labels=dict(zip(keys, rows["y"])))
    session = Session.from_entry(entry, device="cpu", providers=["CPUExecutionProvider"])
    draw = HR.model_thresholds(session.description)[1]
    tr = np.flatnonzero(~held & np.array([k in oof_probs for k in keys]))
    if len(tr) < (~held).sum():
        raise RuntimeError(f"hat fusion: {int((~held).sum()) - len(tr)} training photos have no out-of-fold "
                           f"probability of the network: fit it again with the same cache")
    hv = np.flatnonzero(held)
    p_model = _model_headwear(session, al.crops, index)
    p_net = np.zeros(len(keys))
    p_net[tr] = [oof_probs[keys[i]][0] for i in tr]
    p_net[hv] = [net.probabilities(np.asarray(al.crops[index[i]]))["headwear"] for i in hv]
    x = np.stack([HW.fusion_features(a, b) for a, b in zip(p_net, p_model)])
    fused = fusion_fit(x[tr], y[tr])
    th = fused["thresholds"]
    from .detectors import predict

    report = {"out of fold (labelled training photos)": {
        "fused": scores(fused["oof"], y[tr], th["draw"]),
        "the network alone (its own threshold)": scores(p_net[tr], y[tr], net.thresholds["headwear"]["draw"])}}
    if len(hv):
        ph = predict(fused["model"], x[hv])[:, 1]
        report["held out, labelled by eye"] = {
            "fused": scores(ph, y[hv], th["draw"]),
            "the network alone (its own threshold)": scores(p_net[hv], y[hv], net.thresholds["headwear"]["draw"]),
            "H alone (its drawing threshold)": scores(p_model[hv], y[hv], float(draw["headwear"]))}
    doc = {"format": HW.FUSION_FORMAT, "features": "logit(P network), logit(P H), each clipped to [1e-4, 1 - 1e-4]",
           "attributes_sha256": entry.sha256, "attributes_version": entry.raw.get("version"),
           "network_sha256": net.sha256, "model": {k: np.asarray(v).tolist() for k, v in fused["model"].items()},
           "l2": fused["l2"], "oof_log_loss": {f"{k:g}": round(v, 4) for k, v in fused["losses"].items()},
           "thresholds": th, "precision_target": PRECISION,
           "fitted_on": f"{len(tr)} training photos labelled by eye (the network's out-of-fold probabilities, "
                        f"H's outputs: its headwear head never trained on labels by eye, only on the shared "
                        f"labels of the ffhq128-labelled photos among them)",
           "report": report, "seconds": round(time.time() - t0, 1)}
    out = data / HW.FUSION_NAME
    write_json_staged(out, doc)
    if not quiet:
        print(json.dumps(report, indent=1))
        print(f"wrote {out} ({time.time() - t0:.0f} s)")
    return doc


def _fit_or_fuse(shared: Path, cache: Path, *, quiet: bool = False, fusion: bool = False) -> dict:
    if fusion:
        return fit_fusion(shared, cache, quiet=quiet)
    doc = fit(shared, cache, quiet=quiet)
    from avatarizer import headwear as HW

    from .regionnet import DATA

    try:
        fused = json.loads((DATA / HW.FUSION_NAME).read_text(encoding="utf-8")).get("network_sha256")
    except (OSError, ValueError, AttributeError):
        fused = None
    if fused != doc["sha256"]:  # (a refit on the same machine reproduces the network: nothing to say)
        import sys

        what = ("is of another network and the SDK will not use it" if fused is not None
                else "is missing or unreadable: the network alone decides hats")
        print(f"hat-net: the fusion with H ({HW.FUSION_NAME}) {what}: run `avatarizer-export hat-net --fusion` next",
              file=sys.stderr)
    return doc


def add_parser(sub):
    from .regionnet import add_fit_parser

    p = add_fit_parser(sub, "hat-net", "fit the hat network (headwear) on the photos labelled by eye, or (--fusion) "
                       "its fusion with the shipped attribute model", _fit_or_fuse,
                       shared_help="unused, and not needed: hat-net reads the labels by eye "
                                   "(export/avatarizer_export/labels), the --cache folder and the SDK's files, "
                                   "nothing of the shared folder",
                       extra=("fusion",), uses_shared=False)
    p.add_argument("--fusion", action="store_true",
                   help="fit the fusion of the network beside the SDK with the shipped attribute model H "
                        "(after the network and H: headwear_fusion.json)")
