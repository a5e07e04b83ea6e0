"""``avatarizer-export all`` (what ``make models`` runs): every stage from the
shared photos to the model files the SDK ships, each resumable and cached.

1. data: align, pairs, avatars                      (cache/)
2. train: image AE, parameter AE, mapper F (full, the four ablations, 500 /
   1,000 / 4,000 paired photos), F + E_s fine-tuning (all and 500 photos;
   the shipped model), direct regression (all and 500)   (runs/)
3. attribute regressor H, its heads (with a gender fusion fitted before the
   hair length's, whose gates per gender read it) and the hairstyle bank
   (docs/hair.md)
4. shipped models: export, quantize, manifest, the glasses fusion, the hat
   network and its fusion with H, the gender fusion
5. one commit swaps them into sdk/avatarizer/models/ and sdk/avatarizer/data/
6. the grey-beard fusion, fitted through the SDK as committed (its data folder)
7. report: evaluation of all of them (what is shipped) (docs/report/)

The data stages (step 1) and the trainings of step 2 whose output is
current are skipped, and an interrupted training resumes from its last
checkpoint (with the generators' states: it ends with the weights an
uninterrupted run has). The networks of steps 3, 4 and 6 (H and its heads,
the bank, the fusions, the hat, facial-hair, hair-colour, hair-length and
skin-tone networks) are fitted again on every run, and ``--steps-scale``
scales the step-2 trainings only. A run with ``--steps-scale`` below 1 is a
trial: its under-trained face network and everything staged after it (H,
the bank, the fusions) are staged and checked like any other run's, then
discarded, with no report, unless ``--ship-short`` (it replaced the shipped
models, passing the quality gate, which measures the quantized files' drift
from their own fp32 network, not how well that network was trained). Step
1's files (the mean face, the artist's detectors and hat kinds, the
facial-hair, hair-colour and skin-tone networks: fitted to their own full
lengths) are written in place before the staging, as in every run.

Steps 3 and 4 write into staging copies of the two shipped folders
(:mod:`~avatarizer_export.staging`, ``sdk/avatarizer/.models.staging`` and
``.data.staging``), and step 5 swaps them in at once, the manifest last: a
step that fails and a run that is interrupted leave the shipped folders as
they were (never a new H beside a glasses or hat fusion fitted with the old
one, a new hat network beside its old fusion, nor a new face network's fp16
beside the old one's int8).
"""
from __future__ import annotations

import contextlib
import time
from pathlib import Path

from .paths import cache_dir, shared_dir
from .train import SHIPPED_MAPPER

STAGES: dict[str, float] = {}  # stage -> seconds, printed at the end


def _timed(stage: str, fn, *a, **kw):
    """Runs one step; an exception fails the whole run (nothing is skipped quietly)."""
    t0 = time.time()
    out = fn(*a, **kw)
    STAGES[stage] = STAGES.get(stage, 0.0) + time.time() - t0
    print(f"all: {stage} took {(time.time() - t0) / 60:.1f} min (total so far {sum(STAGES.values()) / 60:.1f} min)",
          flush=True)
    return out


#: the data files ``make models`` rewrites (staged with the models; the hat network with its fusion with H,
#: so that a run stopped between them never leaves a new network beside an old fusion, which the SDK drops)
DATA_FILES = ("hair_bank.npz", "hair_bank.json", "glasses_fusion.json", "headwear_net.onnx", "headwear_net.json",
              "headwear_fusion.json", "gender_fusion.json", "hair_length_net_tight.onnx",
              "hair_length_net_tight.json")


def shipped_folders() -> list[tuple[Path, tuple[str, ...]]]:
    """The folders ``make models`` stages and commits together, each with
    the files it rewrites that the manifest does not list: the data folder,
    then the models folder (its manifest is the last file a commit moves)."""
    from . import hairbank, ship

    return [(hairbank.DATA, DATA_FILES), (ship.MODELS, (ship.GATE_REPORT,))]


def run_all(shared: Path, cache: Path, *, workers: int = 2, steps_scale: float = 1.0,
            report: bool = True, ship_short: bool = False) -> dict[str, float]:
    """Every step from the shared photos to the shipped model files; returns
    the seconds per step. Each step is a typed function of its module.
    ``steps_scale`` below 1 without ``ship_short``: a trial run, whose staged
    files are discarded at the end (no report; step 1's files are written in
    place as in every run)."""
    from . import (beardgrey, data, detectors, facialhair, gender, haircolournet, hairbank, hairlength, hairlengthnet,
                   hatnet, hats, rethreshold, ship, skintone, skintonenet, staging, train)
    from .attributes import run as train_attributes

    def data_step(stage: str):
        _timed(f"data {stage}", data.build, stage, shared, cache, workers=workers)

    def train_step(what: str, **kw):
        _timed(f"train {what}", train.train, what, cache, steps_scale=steps_scale, **kw)

    for folder, _ in shipped_folders():  # another run shipping into them: said now, not after hours of training
        staging.check_free(folder)
    data_step("align")
    hatnet.check_labels(cache)  # (its network is fitted after H ships, hours later: its labels are checked now)
    data_step("meanface")  # the artist draws frontal faces onto this mean face
    # the artist's accessory detectors, before the pairs record its accessories
    _timed("detectors", detectors.fit, shared, cache, precision=0.9)  # with its progress bars: minutes
    _timed("hat kinds", hats.fit, shared)  # which hat the artist and the hybrid draw (labels by eye)
    # the hybrid's beard and moustache: a network over the lower face of the aligned crops (~10 minutes)
    _timed("facial hair", facialhair.fit, shared, cache, quiet=False)
    # the hybrid's hair colour class: a third reading beside H's and the hair region's, a network for
    # portraits and one for tight crops (~3-4 minutes)
    _timed("hair colour", haircolournet.fit, shared, cache, quiet=False)
    # the hybrid's skin tone: a network over the face's centre, in place of H's head (~8-9 minutes)
    _timed("skin tone network", skintonenet.fit, shared, cache, quiet=False)
    data_step("pairs")
    data_step("avatars")
    train_step("image-ae")
    train_step("param-ae")
    train_step("mapper")
    for variant in ("no_align", "no_mse", "no_cos", "no_w"):
        train_step("mapper", variant=variant)
    for n in (500, 1000, 4000):
        train_step("mapper", pairs=n)
    # our extension: E_s unfrozen after F converged (see docs/report); shipped
    train_step("mapper", finetune="mapper_full")
    train_step("mapper", pairs=500, finetune="mapper_full_500")
    train_step("direct")
    train_step("direct", pairs=500, name="direct_500")  # the data-scarce comparison
    # what ships: into staging copies of the two folders, swapped in together at the end
    shipped = shipped_folders()  # the models last: the manifest
    begun = []  # (each staging copy holds its folder's lock until committed or discarded)
    try:
        for folder, extra in shipped:
            begun.append(staging.begin(folder, extra))
        data_dir, models = begun
        # H on its own backbone, then the hairstyle bank (it stores H's predictions)
        _timed("attributes", train_attributes, cache=cache, shared=shared, folder=models)
        # its heads from the labels by eye: skin tone in daylight and long hair (the retrieval's length gate)
        _timed("skin tone", skintone.fit, cache=cache, folder=models, shared=shared)
        # (its gates per reported gender read the gender as the SDK will: a fusion fitted with this H)
        _timed("gender fusion for the hair length", gender.fit, shared, cache, models=models, data=data_dir,
               quiet=False)
        _timed("hair length", hairlength.fit, cache=cache, folder=models, data=data_dir)
        # tight crops' long or short hair: a network taught by the labels by eye and the staged H's hair_long on
        # loose portraits, shown as tight chips (~12 minutes)
        _timed("tight-crop hair length", hairlengthnet.fit, shared, cache, data=data_dir, models=models, quiet=False)
        # the hats' drawing threshold, on the photos labelled by eye its head never trained on
        if rethreshold.RETHRESHOLDABLE:
            _timed("headwear threshold", rethreshold.rethreshold, cache=cache, shared=shared, folder=models)
        _timed("hair bank", hairbank.build_bank, cache, shared, data=data_dir, models=models)  # the staged H's
        # a missing toolchain fails the run: it never skips shipping quietly
        _timed("ship", ship.export, "ship", cache, SHIPPED_MAPPER, folder=models, allow_short=steps_scale < 1)
        # the hybrid's glasses decision: the staged H's outputs fused with the artist's glasses network
        _timed("glasses fusion", detectors.fit_glasses_fusion, shared, cache, models=models,
               out=data_dir / "glasses_fusion.json")
        # the hybrid's hats: the hat network (labels by eye), then its fusion with the staged H, staged together
        _timed("hat network", hatnet.fit, shared, cache, data=data_dir, quiet=False)
        _timed("hat fusion", hatnet.fit_fusion, shared, cache, models=models, data=data_dir, quiet=False)
        # the reported gender: the staged H's P(male) with the face's frontal landmarks (~1 minute; again:
        # the hair length and the hats' threshold gave H a new checksum)
        _timed("gender fusion", gender.fit, shared, cache, models=models, data=data_dir, quiet=False)
    except BaseException:
        for (folder, _), _copy in zip(shipped, begun):  # only the copies this run made, each whatever the other did
            with contextlib.suppress(Exception):
                staging.discard(folder)
        raise
    if steps_scale < 1 and not ship_short:
        for folder, _ in shipped:
            staging.discard(folder)
        print(f"all: a trial run (--steps-scale {steps_scale:g}): every step ran; the staged files (the face network, "
              "H, the bank, the fusions) were checked, then discarded, no report (--ship-short ships an under-trained "
              "face network); step 1's files were written in place, as in every run", flush=True)
        return dict(STAGES)
    _timed("commit", staging.commit_all, shipped)
    # the hybrid's grey-beard decision: fitted through the SDK as committed (its detector, H and hair-colour
    # network), into its data folder; a run stopped before it leaves the old file, which names the old files
    # and is then not used (the detector alone decides)
    _timed("beard grey fusion", beardgrey.fit, shared, data=hairbank.DATA, quiet=False)
    if report:  # of what is shipped now
        from .report import write_report

        _timed("report", write_report, shared, utk=300, cache=cache)
    return dict(STAGES)


def main_all(args) -> int:
    t0 = time.time()
    stages = run_all(shared_dir(args.shared), cache_dir(args.cache), workers=args.workers,
                     steps_scale=args.steps_scale, report=not args.skip_report, ship_short=args.ship_short)
    for stage, sec in stages.items():
        print(f"all: {stage:<16} {sec / 60:6.1f} min")
    print(f"all: done in {(time.time() - t0) / 60:.1f} min")
    return 0


def add_parser(sub):
    from .argtypes import positive_int, steps_scale

    p = sub.add_parser("all", help="datasets, every training, the report and the shipped models (make models)")
    p.add_argument("--shared")
    p.add_argument("--cache")
    p.add_argument("--workers", type=positive_int, default=2)
    p.add_argument("--steps-scale", type=steps_scale, default=1.0, help="scale the step counts of step 2's trainings (the autoencoders, the mappers, direct "
                   "regression); the networks of steps 3-6 train to their own lengths")
    p.add_argument("--skip-report", action="store_true")
    p.add_argument("--ship-short", action="store_true",
                   help="with --steps-scale below 1: ship what the run staged (by default such a trial run discards "
                        "its staged files: its face network is under-trained; step 1's files are written in place "
                        "in every run)")
    p.set_defaults(func=main_all)
