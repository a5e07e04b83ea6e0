"""Training: image autoencoder, parameter autoencoder, mapper F (with the
paper's ablations and paired-data-size study) and the direct-regression
baseline. Small enough to read in one sitting.

Every run lives in ``runs/<name>/`` with ``ckpt.pt`` (config, inputs,
weights, optimiser, scheduler, step, loss history, RNG state: a run can be
resumed and a model rebuilt from the checkpoint alone) and ``loss.png``. A run
resumes only when its config and its inputs (the data it reads, the
checkpoints of the runs it builds on) are those of its checkpoint; otherwise
it starts over, saying why.

    avatarizer-export train image-ae  [--steps N]
    avatarizer-export train param-ae
    avatarizer-export train mapper    [--variant full|no_align|no_mse|no_cos|no_w] [--pairs N]
    avatarizer-export train direct
"""
from __future__ import annotations

import math
import sys
import time
from dataclasses import MISSING, asdict, dataclass, field, fields
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as Fn
from torch import nn

from . import nets
from .nets import NetConfig
from .paths import ROOT, cache_dir

RUNS = ROOT / "runs"
SHIPPED_MAPPER = "mapper_full_ft"  # the mapper run behind the shipped image_to_face model (E_s fine-tuned)


@dataclass
class TrainConfig:
    name: str
    kind: str  # image_ae | param_ae | mapper | direct
    steps: int = 2000
    batch: int = 24
    lr: float = 2e-4
    betas: tuple = (0.5, 0.99)
    epoch_steps: int = 250  # ReduceLROnPlateau is stepped on validation loss every epoch_steps
    seed: int = 0
    perceptual: float = 0.1  # image AE: L1 + perceptual * VGG16 feature L1
    perceptual_size: int = 48
    variant: str = "full"  # mapper: full | no_align | no_mse | no_cos | no_w
    pairs: int = 0  # mapper: number of paired training photos (0 = all)
    w_weight: float = 10.0
    rec_weight: float = 1.0  # mapper: weight of L_rec (the paper: 1)
    # mapper: weight of the identity-carrying geometry (the artist's geometry_mask: outline, eyes, brows,
    # nose, lips) against the rest of the face slice inside L_rec, mean weight kept at 1 (the paper: 1)
    geo_weight: float = 1.0
    image_ae: str = "image_ae"  # mapper: run of the frozen E_s
    param_ae: str = "param_ae"  # mapper: run of the frozen E_t / D_t
    finetune: str = ""  # mapper: a trained mapper run to continue with E_s unfrozen (our extension)
    init_encoder: str = ""  # direct: start the encoder from this image AE run's E_s (a control)
    net: dict = field(default_factory=lambda: NetConfig().to_dict())
    threads: int = 2


# ------------------------------------------------------------------ helpers


def seed_all(seed: int):
    torch.manual_seed(seed)
    np.random.seed(seed)


def to_input(crops_uint8: np.ndarray, size: int) -> torch.Tensor:
    """N x 128 x 128 x 3 uint8 -> N x 3 x size x size in [-1, 1]."""
    x = torch.from_numpy(np.ascontiguousarray(crops_uint8)).permute(0, 3, 1, 2).float() / 127.5 - 1.0
    if x.shape[-1] != size:
        x = Fn.interpolate(x, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    return x


def augment_images(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """The paper's image augmentations: flips, small rotations, blur, grayscale."""
    n = x.shape[0]
    flip = torch.rand(n, generator=g) < 0.5
    x = torch.where(flip[:, None, None, None], x.flip(-1), x)
    ang = (torch.rand(n, generator=g) - 0.5) * math.radians(20)
    sc = 1 + (torch.rand(n, generator=g) - 0.5) * 0.1
    cos, sin = torch.cos(ang) / sc, torch.sin(ang) / sc
    theta = torch.stack([torch.stack([cos, -sin, torch.zeros(n)], 1), torch.stack([sin, cos, torch.zeros(n)], 1)], 1)
    grid = Fn.affine_grid(theta, list(x.shape), align_corners=False)
    x = Fn.grid_sample(x, grid, padding_mode="border", align_corners=False)
    blur = torch.rand(n, generator=g) < 0.3
    if blur.any():
        k = torch.tensor([1.0, 4.0, 6.0, 4.0, 1.0])
        k = (k[:, None] * k[None, :]) / 256.0
        kb = k.expand(3, 1, 5, 5)
        xb = Fn.conv2d(Fn.pad(x[blur], (2, 2, 2, 2), mode="replicate"), kb, groups=3)
        x = x.clone()
        x[blur] = xb
    gray = torch.rand(n, generator=g) < 0.1
    if gray.any():
        x = x.clone()
        x[gray] = x[gray].mean(1, keepdim=True).expand(-1, 3, -1, -1)
    return x


def ckpt_sha256(name: str) -> str:
    """The SHA-256 (16 hex digits) of run ``name``'s checkpoint."""
    from avatarizer.models import sha256_file

    return sha256_file(RUNS / name / "ckpt.pt")[:16]


#: the data stages (``cache/<stage>/``) and the upstream runs (TrainConfig
#: fields naming them) each kind of run reads
DATA_STAGES = {"image_ae": ("aligned",), "param_ae": ("pairs", "avatars"), "mapper": ("pairs",),
               "direct": ("pairs",)}
UPSTREAM_RUNS = {"mapper": ("image_ae", "param_ae", "finetune"), "direct": ("init_encoder",)}


def run_inputs(cfg: TrainConfig, cache: Path | None = None) -> dict:
    """What a run's result depends on besides its config: the identity of
    each data stage it reads (:func:`~avatarizer_export.data.stage_key`) and
    the SHA-256 of each upstream run's checkpoint (E_s, E_t / D_t, the mapper
    it fine-tunes, the encoder it starts from)."""
    from . import data

    out = {f"data {st}": data.stage_key(cache, st) for st in DATA_STAGES.get(cfg.kind, ())}
    for f in UPSTREAM_RUNS.get(cfg.kind, ()):
        if getattr(cfg, f):
            out[f"run {f}"] = ckpt_sha256(getattr(cfg, f))
    return out


class Run:
    """Checkpointing, history and the loss plot of one training run;
    ``inputs`` (:func:`run_inputs`) is kept in the checkpoint."""

    def __init__(self, cfg: TrainConfig, modules: dict, opt, sched, inputs: dict | None = None):
        self.cfg, self.modules, self.opt, self.sched = cfg, modules, opt, sched
        self.inputs = dict(inputs or {})
        self.dir = RUNS / cfg.name
        try:
            self.dir.mkdir(parents=True, exist_ok=True)
        except (FileExistsError, NotADirectoryError):  # (a file there: "[Errno 17] File exists", said of nothing)
            from .paths import not_a_folder

            raise RuntimeError(f"the run's folder: {not_a_folder(self.dir)}") from None
        self.step, self.history = 0, []
        self.t0 = time.time()
        self.seconds = 0.0
        self._gens: dict = {}  # name -> the run's random generators (track)
        self._saved_gens: dict = {}  # their states in the checkpoint resumed from

    @property
    def ckpt(self) -> Path:
        return self.dir / "ckpt.pt"

    def resume(self) -> bool:
        if not self.ckpt.exists():
            return False
        ck = read_ckpt(self.ckpt, CKPT_KEYS + RESUME_KEYS)
        # the step budget may change between runs (extend or cut a run); nothing else may
        free = ("steps", "threads")
        # a field added since the checkpoint was written counts as its default
        old = {**{f.name: f.default for f in fields(TrainConfig) if f.default is not MISSING}, **ck["config"]}
        same = {k: v for k, v in old.items() if k not in free} == \
            {k: v for k, v in asdict(self.cfg).items() if k not in free}
        if not same:
            print(f"{self.cfg.name}: config changed, starting over")
            return False
        if ck.get("inputs") != self.inputs:
            was = ck.get("inputs")
            why = "not recorded in its checkpoint" if was is None else ", ".join(
                k for k in sorted(set(was) | set(self.inputs)) if was.get(k) != self.inputs.get(k))
            print(f"{self.cfg.name}: inputs changed ({why}), starting over")
            return False
        for k, m in self.modules.items():
            m.load_state_dict(ck["state"][k])
        self.opt.load_state_dict(ck["optim"])
        self.sched.load_state_dict(ck["sched"])
        self.step, self.history, self.seconds = ck["step"], ck["history"], ck.get("seconds", 0.0)
        torch.set_rng_state(ck["rng"])
        self._saved_gens = ck.get("gens") or {}
        print(f"{self.cfg.name}: resumed at step {self.step}")
        return True

    def track(self, **gens):
        """The run's own random generators (numpy and torch generators,
        by name), returned as given: their states are saved
        with every checkpoint and, on a resumed run, set to the states saved
        (a resumed run re-seeded them from seed + step and trained to other
        weights than an uninterrupted one: up to 0.09 apart after 6 steps)."""
        for name, gen in gens.items():
            st = self._saved_gens.get(name)
            if st is not None:
                if isinstance(gen, torch.Generator):
                    gen.set_state(st)
                else:
                    gen.bit_generator.state = st
        self._gens.update(gens)
        return tuple(gens.values()) if len(gens) > 1 else next(iter(gens.values()))

    def _gen_states(self) -> dict:
        return {name: (gen.get_state() if isinstance(gen, torch.Generator) else gen.bit_generator.state)
                for name, gen in self._gens.items()}

    def save(self):
        """``ckpt.pt``, written whole or not at all (a save cut short leaves the last one)."""
        from .onnx_util import staged

        with staged(self.ckpt, "part") as tmp:
            torch.save(dict(config=asdict(self.cfg), inputs=self.inputs,
                            state={k: m.state_dict() for k, m in self.modules.items()},
                            optim=self.opt.state_dict(), sched=self.sched.state_dict(), step=self.step,
                            history=self.history, rng=torch.get_rng_state(), gens=self._gen_states(),
                            seconds=self.seconds + time.time() - self.t0), tmp)

    def log(self, **vals):
        self.history.append(dict(step=self.step, lr=self.opt.param_groups[0]["lr"], **vals))

    def plot(self):
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        keys = sorted({k for h in self.history for k in h} - {"step", "lr"})
        fig, ax = plt.subplots(figsize=(6, 3.5))
        for k in keys:
            pts = [(h["step"], h[k]) for h in self.history if k in h]
            if pts:
                ax.plot(*zip(*pts), label=k)
        ax.set_yscale("log")
        ax.set_xlabel("step")
        ax.set_title(self.cfg.name)
        ax.legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(self.dir / "loss.png", dpi=90)
        plt.close(fig)


def _first_line(exc: BaseException) -> str:
    """An error's first line, at most 200 characters ("" for none): what the checkpoint errors quote."""
    text = str(exc).strip()
    return text.splitlines()[0][:200] if text else ""


#: what every checkpoint of :class:`Trainer.save` holds (a resume reads the rest: :data:`RESUME_KEYS`)
CKPT_KEYS = ("config", "state", "step")
RESUME_KEYS = ("optim", "sched", "history", "rng")


def read_ckpt(path: Path, need: tuple = CKPT_KEYS) -> dict:
    """A checkpoint; RuntimeError naming the file when it is there but cannot
    be read (cut short by a save before saves were atomic, a damaged disk),
    or is not one of this toolchain's (not a dict with ``need`` and a
    ``config`` dict). Read with ``weights_only``: tensors, numbers, strings
    and containers only (a crafted pickle ran code when loaded; another
    object gave a KeyError or TypeError traceback; a review, session 76)."""
    try:
        ck = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise
    except Exception as exc:  # noqa: BLE001 (whatever the unpickler raises on a file that is not ours)
        raise RuntimeError(f"{path}: not a readable checkpoint ({_first_line(exc) or type(exc).__name__}); "
                           "delete it to train the run again") from None
    missing = [k for k in need if not isinstance(ck, dict) or k not in ck]
    if missing or not isinstance(ck.get("config"), dict) or not isinstance(ck.get("state"), dict):
        raise RuntimeError(f"{path}: not a checkpoint of avatarizer-export train (" + (
            f"no {', '.join(missing)}" if missing else "its config or state is not a mapping")
            + "); delete it to train the run again")
    return ck


def load_run(name: str) -> dict:
    return read_ckpt(RUNS / name / "ckpt.pt")


def build(kind: str, net_cfg: dict):
    cfg = NetConfig(**net_cfg)
    return {
        "image_ae": lambda: {"enc": nets.ImageEncoder(cfg), "dec": nets.ImageDecoder(cfg)},
        "param_ae": lambda: {"enc": nets.ParamEncoder(cfg), "dec": nets.ParamDecoder(cfg)},
        "mapper": lambda: {"mapper": nets.Mapper(cfg)},
        "mapper_ft": lambda: {"mapper": nets.Mapper(cfg), "enc": nets.ImageEncoder(cfg)},
        "direct": lambda: {"net": nets.DirectRegressor(cfg)},
    }[kind]()


def load_modules(name: str, kind: str | tuple | None = None) -> tuple[dict, dict]:
    """Rebuilds a run's modules from its checkpoint alone (eval mode).
    ``kind``: the kind(s) of run the caller reads (``"mapper"``,
    ``"image_ae"``, ...): another kind's run is a RuntimeError saying so (a
    KeyError traceback: ``onnx --mapper image_ae``), as is a checkpoint whose
    config or weights are not a run's (:func:`build`'s)."""
    path = RUNS / name / "ckpt.pt"
    ck = load_run(name)
    cfg = ck["config"]
    got = cfg.get("kind")
    kinds = (kind,) if isinstance(kind, str) else tuple(kind or ())
    if kinds and got not in kinds:
        raise RuntimeError(f"{path}: a {got} run, not a {' or '.join(kinds)} run: give a run of that kind")
    try:
        mods = build("mapper_ft" if got == "mapper" and cfg.get("finetune") else got, cfg["net"])
        for k, m in mods.items():
            m.load_state_dict(ck["state"][k])
            m.eval()
    except (KeyError, TypeError, ValueError, RuntimeError) as exc:
        raise RuntimeError(f"{path}: not a checkpoint this version can rebuild ({type(exc).__name__}: "
                           f"{_first_line(exc) or '-'}); train the run again") from None
    return mods, ck


def _check_data(name: str, ck: dict, cache: Path | None) -> None:
    """ValueError when run ``name`` (checkpoint ``ck``) was trained on another
    build of a data stage than the one in ``cache`` now (or recorded none)."""
    from . import data

    was = ck.get("inputs")
    stages = DATA_STAGES.get(ck["config"]["kind"], ())
    changed = [st for st in stages if was is None or was.get(f"data {st}") != data.stage_key(cache, st)]
    if changed:
        where = cache if cache is not None else "the cache"
        raise ValueError(f"{name}: trained on another build of {', '.join(changed)} than the one in {where} now"
                         f"{' (its checkpoint records none)' if was is None else ''}: train it again "
                         "(make models), or ship with the cache it was trained on")


def _check_full(name: str, ck: dict) -> None:
    """ValueError when run ``name`` (checkpoint ``ck``) stopped short of the
    steps a full run of its kind takes (:data:`DEFAULT_STEPS`,
    :data:`FINETUNE_STEPS`): a trial run's ``--steps-scale`` or ``--steps``."""
    cfg = ck["config"]
    full = FINETUNE_STEPS if cfg.get("finetune") else DEFAULT_STEPS.get(str(cfg["kind"]).replace("_", "-"))
    if full is not None and int(ck.get("step", 0)) < full:
        raise ValueError(f"{name}: trained {int(ck.get('step', 0))} of the {full} steps a full run takes (a trial "
                         "run's --steps-scale, or --steps): train it fully (make models) before shipping it, or "
                         "ship it anyway with --allow-short")


def load_image_to_face(mapper: str = "mapper_full", cache: Path | None = None, *, check_data: bool = False,
                       allow_short: bool = True) -> tuple[nets.ImageToFace, int]:
    """crop -> face slice of a mapper run, with the E_s and D_t it was trained
    against (a fine-tuned run carries its own E_s). Returns (net, crop size).
    ValueError when the run of E_s or D_t was retrained since (its checkpoint
    is not the one the mapper's checkpoint records); with ``check_data``
    (shipping: the model's metadata describes ``cache``'s data) also when the
    mapper, its D_t or its E_s was trained on another build of the data
    stages in ``cache`` (default: the project's) than the one there now;
    without ``allow_short`` also when one of them stopped short of a full
    run's steps (:func:`_check_full`)."""
    mp, ck = load_modules(mapper, "mapper")
    cfg = ck["config"]
    for field_ in ("param_ae",) if "enc" in mp else ("param_ae", "image_ae"):
        was = (ck.get("inputs") or {}).get(f"run {field_}")
        run = cfg.get(field_, field_)
        if was is not None and was != ckpt_sha256(run):
            raise ValueError(f"{mapper}: trained against another checkpoint of {RUNS / run / 'ckpt.pt'} "
                             f"than the one there now: train the mapper again")
    pae, pck = load_modules(cfg.get("param_ae", "param_ae"), "param_ae")
    if "enc" in mp:  # fine-tuned: its E_s was built from its own net config
        enc, size = mp["enc"], cfg["net"]["image_size"]
        used = [(mapper, ck), (cfg.get("param_ae", "param_ae"), pck)]
    else:
        img, ick = load_modules(cfg.get("image_ae", "image_ae"), "image_ae")
        enc, size = img["enc"], ick["config"]["net"]["image_size"]
        used = [(mapper, ck), (cfg.get("param_ae", "param_ae"), pck), (cfg.get("image_ae", "image_ae"), ick)]
    if check_data:  # (ship ran a network trained on rebuilt data without a word; a review, session 73)
        for name, run_ck in used:
            _check_data(name, run_ck, cache)
    if not allow_short:  # (a trial run's short checkpoints stay in runs/: ship shipped them; a review)
        for name, run_ck in used:
            _check_full(name, run_ck)
    return nets.ImageToFace(enc, mp["mapper"], pae["dec"]).eval(), size


def _loop(run: Run, step_fn, val_fn, total_steps: int):
    from tqdm import tqdm

    bar = tqdm(total=total_steps, initial=run.step, desc=run.cfg.name, unit="step")
    acc = {}
    while run.step < total_steps:
        losses = step_fn()
        for k, v in losses.items():
            if not np.isfinite(v):  # (a NaN run was saved as done, its checkpoint full of NaN)
                raise ValueError(f"{run.cfg.name}: the loss {k} is {v} at step {run.step + 1}; nothing saved "
                                 "since the last epoch")
            acc.setdefault(k, []).append(v)
        run.step += 1
        bar.update(1)
        if run.step % run.cfg.epoch_steps == 0 or run.step == total_steps:
            val = val_fn()
            run.sched.step(val)
            run.log(**{k: float(np.mean(v)) for k, v in acc.items()}, val=val)
            bar.set_postfix(loss=f"{np.mean(acc[next(iter(acc))]):.4f}", val=f"{val:.4f}",
                            lr=f"{run.opt.param_groups[0]['lr']:.1e}")
            acc = {}
            run.save()
            run.plot()
    bar.close()


def _setup(cfg: TrainConfig, modules: dict, params=None, cache: Path | None = None):
    seed_all(cfg.seed)
    torch.set_num_threads(cfg.threads)
    ps = params if params is not None else [p for m in modules.values() for p in m.parameters()]
    opt = torch.optim.Adam(ps, lr=cfg.lr, betas=tuple(cfg.betas))
    sched = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, factor=0.5, patience=1)
    run = Run(cfg, modules, opt, sched, run_inputs(cfg, cache))
    run.resume()
    return run


def split_indices(keys: list[str]) -> tuple[np.ndarray, np.ndarray]:
    from .data import is_heldout

    held = np.array([is_heldout(k) for k in keys])
    return np.flatnonzero(~held), np.flatnonzero(held)


# ----------------------------------------------------------- image AE


def image_ae_rows(keys: list[str], n_val: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """The image AE's training rows and the validation rows its learning-rate
    schedule (halved on a plateau) reads: ``n_val`` training photos drawn at
    random (seed 1, at most 5% of them), left out of its training. Held-out
    photos are in neither (they were the validation set before session 55,
    so the held-out evaluation's photos steered 2.0.0's E_s schedule:
    docs/MODEL_CARD.md)."""
    train_idx, _ = split_indices(keys)
    k = min(n_val, max(1, len(train_idx) // 20))
    val = np.sort(np.random.default_rng(1).choice(train_idx, k, replace=False))
    return np.setdiff1d(train_idx, val), val


def train_image_ae(cfg: TrainConfig, cache: Path | None = None):
    from .data import load_aligned
    from .lpips import vgg16_features

    al = load_aligned(cache)
    train_idx, val_idx = image_ae_rows(al.keys)
    if len(train_idx) < cfg.batch:  # (numpy's "Cannot take a larger sample than population", after the folder)
        raise ValueError(f"{len(train_idx)} training photos, under a batch of {cfg.batch}: a smaller --batch")
    crops = np.asarray(al.crops)
    seed_all(cfg.seed)  # (the initial weights by the seed, not by what ran before in the process)
    mods = build("image_ae", cfg.net)
    size = cfg.net["image_size"]
    vgg = vgg16_features()
    vgg.slices = vgg.slices[:2]  # relu1_2, relu2_2: cheap enough for CPU training
    run = _setup(cfg, mods, cache=cache)
    g, rng = run.track(g=torch.Generator().manual_seed(cfg.seed + run.step),
                       rng=np.random.default_rng(cfg.seed + run.step))
    val_x = to_input(crops[val_idx], size)

    def step():
        for m in mods.values():
            m.train()
        idx = rng.choice(train_idx, cfg.batch, replace=False)
        x = augment_images(to_input(crops[idx], size), g)
        y = mods["dec"](mods["enc"](x))
        l1 = (y - x).abs().mean()
        ps = cfg.perceptual_size
        fy = vgg(Fn.interpolate(y, size=(ps, ps), mode="bilinear", align_corners=False))
        with torch.no_grad():
            fx = vgg(Fn.interpolate(x, size=(ps, ps), mode="bilinear", align_corners=False))
        perc = sum((a - b).abs().mean() for a, b in zip(fy, fx))
        loss = l1 + cfg.perceptual * perc
        run.opt.zero_grad(set_to_none=True)
        loss.backward()
        run.opt.step()
        return {"l1": l1.item(), "perceptual": perc.item()}

    def val():
        for m in mods.values():
            m.eval()
        with torch.no_grad():
            return float((mods["dec"](mods["enc"](val_x)) - val_x).abs().mean())

    _loop(run, step, val, cfg.steps)
    return mods


# ----------------------------------------------------------- param AE


def train_param_ae(cfg: TrainConfig, cache: Path | None = None):
    from avatarizer import schema

    from .data import load_avatars, load_pairs

    av = np.asarray(load_avatars(cache))
    y_all = torch.from_numpy(schema.normalize(av[:, schema.FACE], schema.FACE))
    _, pparams, psource, _ = load_pairs(cache)
    val_y = torch.from_numpy(schema.normalize(pparams[:2048, schema.FACE], schema.FACE))
    seed_all(cfg.seed)  # (the initial weights by the seed, not by what ran before in the process)
    mods = build("param_ae", cfg.net)
    run = _setup(cfg, mods, cache=cache)
    rng = run.track(rng=np.random.default_rng(cfg.seed + run.step))

    def step():
        for m in mods.values():
            m.train()
        y = y_all[rng.integers(0, len(y_all), cfg.batch)]
        loss = ((mods["dec"](mods["enc"](y)) - y) ** 2).mean()
        run.opt.zero_grad(set_to_none=True)
        loss.backward()
        run.opt.step()
        return {"mse": loss.item()}

    def val():
        for m in mods.values():
            m.eval()
        with torch.no_grad():
            return float(((mods["dec"](mods["enc"](val_y)) - val_y) ** 2).mean())

    _loop(run, step, val, cfg.steps)
    return mods


# ------------------------------------------------------------- encodings


def encode(enc: nn.Module, crops: np.ndarray, size: int, batch: int = 256) -> np.ndarray:
    enc.eval()
    out = []
    with torch.no_grad():
        for i in range(0, len(crops), batch):
            out.append(enc(to_input(np.asarray(crops[i:i + batch]), size)).numpy())
    return np.concatenate(out) if out else np.zeros((0, nets.LATENT), np.float32)


def pair_encodings(cache: Path | None = None, image_ae: str = "image_ae") -> dict:
    """z_s of every pair under the frozen E_s (cached in the run folder, for
    that checkpoint of E_s and that build of the pairs)."""
    from . import data
    from .onnx_util import staged

    path = RUNS / image_ae / "encodings.npz"
    key = f"{ckpt_sha256(image_ae)} {data.stage_key(cache, 'pairs')}"
    if path.exists():
        with np.load(path) as z:
            if "key" in z and str(z["key"]) == key:
                return {"z_pairs": z["z_pairs"]}
    mods, ck = load_modules(image_ae, "image_ae")
    size = ck["config"]["net"]["image_size"]
    crops = data.load_pairs(cache)[0]
    z_pairs = encode(mods["enc"], crops, size)
    with staged(path, "part") as tmp:
        np.savez(tmp, key=key, z_pairs=z_pairs)
    return dict(z_pairs=z_pairs)


# ---------------------------------------------------------------- mapper


def pair_subset(source: np.ndarray, n_photos: int, seed: int = 0) -> np.ndarray:
    """Rows of the pairs whose source photo is among ``n_photos`` photos drawn
    once (0 = all); the same draw for every variant so runs are comparable."""
    photos = np.unique(source)
    if n_photos and n_photos < len(photos):
        photos = np.random.default_rng(seed).choice(photos, n_photos, replace=False)
    return np.flatnonzero(np.isin(source, photos))


#: photos a paired run keeps for its plateau schedule, at least (5% of them where that is more)
MIN_VAL_PHOTOS = 8


def train_val_rows(source: np.ndarray, n_photos: int, batch: int) -> tuple[np.ndarray, np.ndarray]:
    """(training rows, validation rows) of the pairs of :func:`pair_subset`'s
    ``n_photos`` photos: 5% of the photos, at least :data:`MIN_VAL_PHOTOS`,
    validate; ValueError where that leaves fewer training rows than a
    ``batch`` (``--pairs 5`` raised numpy's "Cannot take a larger sample than
    population", ``--pairs 8`` "a cannot be empty", after the run's folder
    was made)."""
    rows = pair_subset(source, n_photos)
    photos = np.unique(source[rows])
    n_val = max(MIN_VAL_PHOTOS, len(photos) // 20)
    tr_rows = np.zeros(0, np.int64)
    if len(photos) > n_val:
        vphotos = np.random.default_rng(1).choice(photos, n_val, replace=False)
        val_rows = rows[np.isin(source[rows], vphotos)]
        tr_rows = rows[~np.isin(source[rows], vphotos)]
    if len(tr_rows) < batch:
        per = len(rows) / max(len(photos), 1)
        need = n_val + max(1, math.ceil(batch / max(per, 1e-9)))
        raise ValueError(f"{len(photos)} paired photos ({'--pairs ' + str(n_photos) if n_photos else 'all'}) leave "
                         f"{len(tr_rows)} training rows, under a batch of {batch}: {n_val} photos validate; "
                         f"--pairs {need} or more (or a smaller --batch)")
    return tr_rows, val_rows


def train_mapper(cfg: TrainConfig, cache: Path | None = None):
    """F on the pairs with E_s and D_t frozen (the paper). With ``cfg.finetune``
    naming a trained mapper run, continues from that run's F with E_s unfrozen
    too, on the crops, under the same loss (our extension; see docs/report)."""
    from avatarizer import schema

    from .data import load_pairs

    crops, params, source, _ = load_pairs(cache)
    pae, _ = load_modules(cfg.param_ae, "param_ae")
    et, dt = pae["enc"], pae["dec"]
    for p in list(et.parameters()) + list(dt.parameters()):
        p.requires_grad_(False)
    y = torch.from_numpy(schema.normalize(params[:, schema.FACE], schema.FACE))
    with torch.no_grad():
        zt = et(y)
    rec_w = None
    if cfg.geo_weight != 1.0:
        from avatarizer.artist.core import geometry_mask

        w = np.where(geometry_mask()[schema.FACE], cfg.geo_weight, 1.0)
        rec_w = torch.from_numpy((w / w.mean()).astype(np.float32))
    # 5% of the chosen photos for the plateau schedule (never the held-out split)
    tr_rows, val_rows = train_val_rows(source, cfg.pairs, cfg.batch)
    ft = bool(cfg.finetune)
    seed_all(cfg.seed)  # (the initial weights by the seed, not by what ran before in the process)
    mods = build("mapper_ft" if ft else "mapper", cfg.net)
    F = mods["mapper"]
    if ft:
        src, _ = load_modules(cfg.finetune, "mapper")
        F.load_state_dict(src["mapper"].state_dict())
        img, _ = load_modules(cfg.image_ae, "image_ae")
        mods["enc"].load_state_dict(img["enc"].state_dict())
        enc, size = mods["enc"], cfg.net["image_size"]
        crops = np.asarray(crops)
        val_rows = val_rows[:512]
        val_x = to_input(crops[val_rows], size)
    else:
        zs = torch.from_numpy(pair_encodings(cache, cfg.image_ae)["z_pairs"])
        if cfg.variant != "no_w":  # start F's last layer where L_w pulls it
            F.last.load_state_dict(et.last.state_dict())
    run = _setup(cfg, mods, cache=cache)
    rng = run.track(rng=np.random.default_rng(cfg.seed + run.step))
    use_mse = cfg.variant not in ("no_align", "no_mse")
    use_cos = cfg.variant not in ("no_align", "no_cos")
    use_w = cfg.variant not in ("no_align", "no_w")

    def step():
        for m in mods.values():
            m.train()
        idx = np.sort(rng.choice(tr_rows, cfg.batch, replace=False))
        z = enc(to_input(crops[idx], size)) if ft else zs[idx]
        zm = F(z)
        err = (dt(zm) - y[idx]) ** 2
        rec = (err * rec_w).mean() if rec_w is not None else err.mean()
        cm = nets.cross_modal(zm, zt[idx], use_mse, use_cos) if (use_mse or use_cos) else zm.new_zeros(())
        lw = nets.weight_alignment(F, et) if use_w else zm.new_zeros(())
        loss = cfg.rec_weight * rec + cm + cfg.w_weight * lw
        run.opt.zero_grad(set_to_none=True)
        loss.backward()
        run.opt.step()
        return {"rec": rec.item(), "cm": cm.item(), "w": lw.item()}

    vidx = torch.from_numpy(val_rows)

    def val():
        for m in mods.values():
            m.eval()
        with torch.no_grad():
            z = enc(val_x) if ft else zs[vidx]
            return float(((dt(F(z)) - y[vidx]) ** 2).mean())

    _loop(run, step, val, cfg.steps)
    return mods


# ---------------------------------------------------------------- direct


def train_direct(cfg: TrainConfig, cache: Path | None = None):
    from avatarizer import schema

    from .data import load_pairs

    crops, params, source, _ = load_pairs(cache)
    crops = np.asarray(crops)
    y = torch.from_numpy(schema.normalize(params[:, schema.FACE], schema.FACE))
    tr_rows, val_rows = train_val_rows(source, cfg.pairs, cfg.batch)
    val_rows = val_rows[:512]
    seed_all(cfg.seed)  # (the initial weights by the seed, not by what ran before in the process)
    mods = build("direct", cfg.net)
    net = mods["net"]
    size = cfg.net["image_size"]
    if cfg.init_encoder:
        net.encoder.load_state_dict(load_modules(cfg.init_encoder, "image_ae")[0]["enc"].state_dict())
    run = _setup(cfg, mods, cache=cache)
    rng = run.track(rng=np.random.default_rng(cfg.seed + run.step))
    val_x = to_input(crops[val_rows], size)

    def step():
        net.train()
        idx = np.sort(rng.choice(tr_rows, cfg.batch, replace=False))
        loss = ((net(to_input(crops[idx], size)) - y[idx]) ** 2).mean()
        run.opt.zero_grad(set_to_none=True)
        loss.backward()
        run.opt.step()
        return {"mse": loss.item()}

    def val():
        net.eval()
        with torch.no_grad():
            return float(((net(val_x) - y[val_rows]) ** 2).mean())

    _loop(run, step, val, cfg.steps)
    return mods


# ------------------------------------------------------------------- CLI

DEFAULT_STEPS = {"image-ae": 1500, "param-ae": 8000, "mapper": 4000, "direct": 2000}
# MLPs gain nothing from a second thread, and spinning OpenMP threads of
# parallel jobs on 2 cores slow everything down
THREADS = {"image-ae": 2, "param-ae": 1, "mapper": 1, "direct": 2}
FINETUNE_STEPS = 2000  # E_s + F on the crops: the direct baseline's budget
BATCH = {"image-ae": 24, "param-ae": 24, "mapper": 48, "direct": 48}  # paper: 24 unpaired, 48 paired


#: the options of :func:`train` beyond the step budget, at their defaults
OPTION_DEFAULTS = {"pairs": 0, "variant": "full", "finetune": "", "init_encoder": "", "image_ae": "image_ae",
                   "param_ae": "param_ae", "rec_weight": 1.0, "geo_weight": 1.0}
#: which of them each network reads (another one, given, is refused: it was stored in the run's config, so the
#: run was retrained from scratch with no change, and every mapper trained on it refused to export)
APPLIES = {"image_ae": frozenset(), "param_ae": frozenset(),
           "mapper": frozenset({"pairs", "variant", "finetune", "image_ae", "param_ae", "rec_weight", "geo_weight"}),
           "direct": frozenset({"pairs", "init_encoder"})}


def check_options(what: str, **options) -> None:
    """ValueError naming the options given (not at their
    :data:`OPTION_DEFAULTS`) that network ``what`` does not read
    (:data:`APPLIES`)."""
    kind = what.replace("-", "_")
    flag = lambda k: "--" + k.replace("_", "-")  # noqa: E731
    stray = [k for k, v in options.items() if v != OPTION_DEFAULTS[k] and k not in APPLIES[kind]]
    if stray:
        raise ValueError(f"{what} takes no {', '.join(map(flag, stray))}"
                         + (f" (it takes {', '.join(map(flag, sorted(APPLIES[kind])))})" if APPLIES[kind] else ""))


def default_run_name(kind: str, *, variant: str = "full", pairs: int = 0, finetune: str = "",
                     init_encoder: str = "", rec_weight: float = 1.0, geo_weight: float = 1.0,
                     image_ae: str = "image_ae", param_ae: str = "param_ae", seed: int = 0,
                     batch: int | None = None) -> str:
    """The run a network trains into without ``--name``: one name per set of
    options that change what it learns, so no option replaces another run
    (``direct --pairs 500`` trained into ``runs/direct``, the full-data
    baseline; ``mapper --finetune mapper_no_w`` into ``runs/mapper_full_ft``,
    the shipped mapper; ``mapper --geo-weight 2`` into ``runs/mapper_full``,
    which it wiped: "config changed, starting over"). A mapper fine-tuned
    from its own variant's run is ``<that run>_ft`` (``mapper_full_ft``,
    ``mapper_full_500_ft``); a mapper's loss weights and autoencoders other
    than the defaults are named in it (``mapper_full_geo2``,
    ``mapper_full_ae-image_ae_b``); so are a seed other than 0 and a batch
    other than the network's (``image_ae_seed1``, ``param_ae_batch64``: with
    ``--seed 1`` the image autoencoder every mapper reads was trained over
    in ``runs/image_ae``, a review, session 76)."""
    runs = (f"_seed{int(seed)}" if int(seed) != 0 else "") \
        + (f"_batch{int(batch)}" if batch is not None and int(batch) != BATCH[kind.replace("_", "-")] else "")
    if kind in ("image_ae", "param_ae"):
        return kind + runs
    if kind == "direct":
        return "direct" + (f"_{pairs}" if pairs else "") + (f"_from_{init_encoder}" if init_encoder else "") + runs
    base = f"mapper_{variant}" + (f"_{pairs}" if pairs else "")
    default = OPTION_DEFAULTS  # (the options' defaults, as check_options reads them)
    own = (f"_rec{float(rec_weight):g}" if float(rec_weight) != default["rec_weight"] else "") \
        + (f"_geo{float(geo_weight):g}" if float(geo_weight) != default["geo_weight"] else "") \
        + (f"_ae-{image_ae}" if image_ae != default["image_ae"] else "") \
        + (f"_pae-{param_ae}" if param_ae != default["param_ae"] else "") + runs
    if not finetune:
        return base + own
    return f"{base}{own}_ft" if finetune == base + own else f"{base}{own}_ft_from_{finetune}"


def train(what: str, cache: Path, *, steps: int | None = None, batch: int | None = None, seed: int = 0,
          variant: str = "full", pairs: int = 0, name: str | None = None, finetune: str = "",
          threads: int | None = None, rec_weight: float = 1.0, geo_weight: float = 1.0, image_ae: str = "image_ae",
          param_ae: str = "param_ae", init_encoder: str = "", steps_scale: float = 1.0) -> str:
    """Trains one network (``image-ae``, ``param-ae``, ``mapper`` or
    ``direct``) into ``runs/<name>/`` (resumable); returns the run's name.
    ``finetune=RUN`` unfreezes E_s on top of the converged mapper ``RUN``."""
    if what not in DEFAULT_STEPS:
        raise ValueError(f"what must be one of {sorted(DEFAULT_STEPS)}, got {what!r}")
    kind = what.replace("-", "_")
    ft = finetune or ""
    check_options(what, pairs=pairs, variant=variant, finetune=ft, init_encoder=init_encoder, image_ae=image_ae,
                  param_ae=param_ae, rec_weight=rec_weight, geo_weight=geo_weight)
    name = name or default_run_name(kind, variant=variant, pairs=pairs, finetune=ft, init_encoder=init_encoder,
                                    rec_weight=rec_weight, geo_weight=geo_weight, image_ae=image_ae,
                                    param_ae=param_ae, seed=seed, batch=batch)
    # (None: the default; a 0 passed for one started a full run, a negative count said "done" with no checkpoint)
    steps = max(1, int((FINETUNE_STEPS if ft else DEFAULT_STEPS[what]) * steps_scale)) if steps is None else steps
    threads = (2 if ft else THREADS[what]) if threads is None else threads
    batch = BATCH[what] if batch is None else batch
    for label, v in (("steps", steps), ("batch", batch), ("threads", threads)):
        if v < 1:
            raise ValueError(f"{label} must be at least 1, got {v}")
    cfg = TrainConfig(name=name, kind=kind, steps=steps, batch=batch, seed=seed,
                      variant=variant, pairs=pairs, threads=threads, rec_weight=rec_weight, geo_weight=geo_weight,
                      finetune=ft,
                      image_ae=image_ae, param_ae=param_ae, init_encoder=init_encoder)
    fn = {"image_ae": train_image_ae, "param_ae": train_param_ae, "mapper": train_mapper,
          "direct": train_direct}[kind]
    fn(cfg, Path(cache))
    print(f"{name}: done; checkpoint {RUNS / name / 'ckpt.pt'}, curve {RUNS / name / 'loss.png'}")
    return name


def main_train(args) -> int:
    options = dict(pairs=args.pairs, variant=args.variant, finetune=getattr(args, "finetune", None) or "",
                   init_encoder=getattr(args, "init_encoder", None) or "",
                   image_ae=getattr(args, "image_ae", None) or "image_ae",
                   param_ae=getattr(args, "param_ae", None) or "param_ae",
                   rec_weight=getattr(args, "rec_weight", 1.0), geo_weight=getattr(args, "geo_weight", 1.0))
    try:  # (a usage error: exit 2, as argparse's; before the cache folder is made)
        check_options(args.what, **options)
    except ValueError as exc:
        print(f"avatarizer-export train: error: {exc}", file=sys.stderr)
        return 2
    train(args.what, cache_dir(args.cache), steps=args.steps, batch=args.batch, seed=args.seed, name=args.name,
          threads=getattr(args, "threads", None), **options)
    return 0


def add_parser(sub):
    from .argtypes import count, positive_int, run_name, seed, weight

    p = sub.add_parser("train", help="train one network (resumable; runs/<name>/)")
    p.add_argument("what", choices=["image-ae", "param-ae", "mapper", "direct"])
    p.add_argument("--steps", type=positive_int)
    p.add_argument("--batch", type=positive_int)
    p.add_argument("--seed", type=seed, default=0)
    p.add_argument("--variant", default="full", choices=["full", "no_align", "no_mse", "no_cos", "no_w"])
    p.add_argument("--pairs", type=count, default=0, help="paired training photos to use (0 = all)")
    p.add_argument("--name", type=run_name)
    p.add_argument("--cache")
    p.add_argument("--threads", type=positive_int, help="torch threads (default: 2 for CNNs, 1 for MLPs)")
    p.add_argument("--rec-weight", type=weight, default=1.0, help="mapper: weight of L_rec (paper: 1)")
    p.add_argument("--geo-weight", type=weight, default=1.0,
                   help="mapper: weight of the face geometry (outline, eyes, brows, nose, lips) in L_rec, "
                        "relative to the rest of the face slice (paper: 1)")
    p.add_argument("--image-ae", type=run_name, help="mapper: run of the frozen E_s (default image_ae)")
    p.add_argument("--param-ae", type=run_name, help="mapper: run of E_t / D_t (default param_ae)")
    p.add_argument("--finetune", type=run_name, metavar="RUN",
                   help="mapper: continue trained mapper RUN with E_s unfrozen (extension, not the paper)")
    p.add_argument("--init-encoder", type=run_name, metavar="RUN",
                   help="direct: start the encoder from image AE RUN's E_s (control for pretraining)")
    p.set_defaults(func=main_train)
