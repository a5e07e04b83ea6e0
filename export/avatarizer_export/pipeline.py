"""``avatarizer-export all`` (what ``make models`` runs): every stage from the
shared photos to the model files the SDK ships, each resumable and cached.

1. data: align, pairs, avatars                      (cache/)
2. train: image AE, parameter AE, mapper F (full, the four ablations, 500 /
   1,000 / 4,000 paired photos), F + E_s fine-tuning (all and 500 photos;
   the shipped model), direct regression (all and 500)   (runs/)
3. attribute regressor H and the hairstyle bank      (docs/hair.md)
4. report: evaluation of all of them                  (docs/report/)
5. shipped models: export, quantize, manifest         (sdk/avatarizer/models/)

Stages whose output is current are skipped, so a second run is quick and an
interrupted run resumes where it stopped.
"""
from __future__ import annotations

import time
from types import SimpleNamespace

from .paths import cache_dir, shared_dir
from .train import DEFAULT_STEPS, FINETUNE_STEPS, SHIPPED_MAPPER
STAGES: dict[str, float] = {}  # stage -> seconds, printed at the end


def _timed(stage: str, fn, *a, **kw):
    t0 = time.time()
    out = fn(*a, **kw)
    STAGES[stage] = STAGES.get(stage, 0.0) + time.time() - t0
    print(f"all: {stage} took {(time.time() - t0) / 60:.1f} min (total so far {sum(STAGES.values()) / 60:.1f} min)",
          flush=True)
    return out


def _train(what: str, steps_scale: float, **kw):
    from .train import main_train

    base = FINETUNE_STEPS if kw.get("finetune") else DEFAULT_STEPS[what]
    args = SimpleNamespace(what=what, steps=int(base * steps_scale), batch=None, seed=0,
                           variant=kw.get("variant", "full"), pairs=kw.get("pairs", 0), name=kw.get("name"),
                           cache=None, finetune=kw.get("finetune"))
    _timed(f"train {what}", main_train, args)


def main_all(args) -> int:
    t0 = time.time()
    shared = shared_dir(args.shared)
    cache = cache_dir(args.cache)
    from . import data

    from .detectors import main_detectors

    def data_stage(stage):
        _timed(f"data {stage}", data.main_data, SimpleNamespace(
            stage=stage, shared=str(shared), cache=str(cache), workers=args.workers, limit=None, augment=1,
            avatars=100_000, force=False))

    data_stage("align")
    data_stage("meanface")  # the artist draws frontal faces onto this mean face
    # the artist's accessory detectors, before the pairs record its accessories
    _timed("detectors", main_detectors, SimpleNamespace(shared=str(shared), precision=0.9, out=None,
                                                         cache=str(cache), quiet=True))
    data_stage("pairs")
    data_stage("avatars")
    s = args.steps_scale
    _train("image-ae", s)
    _train("param-ae", s)
    _train("mapper", s)
    for variant in ("no_align", "no_mse", "no_cos", "no_w"):
        _train("mapper", s, variant=variant)
    for n in (500, 1000, 4000):
        _train("mapper", s, pairs=n)
    # our extension: E_s unfrozen after F converged (see docs/report); shipped
    _train("mapper", s, finetune="mapper_full")
    _train("mapper", s, pairs=500, finetune="mapper_full_500")
    _train("direct", s)
    _train("direct", s, pairs=500, name="direct_500")  # the data-scarce comparison
    # H on the frozen E_s, then the hairstyle bank (it stores H's predictions)
    from .attributes import run as train_attributes
    from .hairbank import cmd_all as build_hairbank

    _timed("attributes", train_attributes, cache=cache, shared=shared)
    _timed("hair bank", build_hairbank, SimpleNamespace(stage="all", cache=str(cache), shared=str(shared)))
    if not args.skip_report:
        from .report import main_report

        _timed("report", main_report, SimpleNamespace(shared=str(shared), utk=300))
    from .ship import main_ship  # a missing toolchain fails the run: it never skips shipping quietly

    _timed("ship", main_ship, SimpleNamespace(command="ship", cache=str(cache), mapper=SHIPPED_MAPPER))
    for stage, sec in STAGES.items():
        print(f"all: {stage:<16} {sec / 60:6.1f} min")
    print(f"all: done in {(time.time() - t0) / 60:.1f} min")
    return 0


def add_parser(sub):
    p = sub.add_parser("all", help="datasets, every training, the report and the shipped models (make models)")
    p.add_argument("--shared")
    p.add_argument("--cache")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--steps-scale", type=float, default=1.0, help="scale every training's step count")
    p.add_argument("--skip-report", action="store_true")
    p.set_defaults(func=main_all)
