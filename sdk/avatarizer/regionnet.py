"""Small networks over one block of the aligned crop (``data/*.onnx``).

Some accessories are decided better by a network that sees only where they
are than by the attribute regressor H over the whole face: the beard and
the moustache under the nose (:mod:`avatarizer.facialhair`), a hat on top
of the head (:mod:`avatarizer.headwear`'s network); the hair colour class
by one over the whole crop (:mod:`avatarizer.haircolour`), the skin tone by
one over the face's centre (:data:`avatarizer.skintone.NETWORK`). Each is a small CNN
over a fixed block of the aligned 128-px crop (the crop H and the hair
stage read), with one sigmoid output per attribute (the hair colour's: a
softmax over its classes; the skin tone's: the Monk step scaled to [0, 1];
neither drawn at a threshold, :attr:`Spec.thresholds` False), the crop's and its
mirror image's averaged inside the graph, fitted by ``avatarizer-export``
and shipped as ``data/<name>.onnx`` beside ``data/<name>.json`` (its
SHA-256, the block, the drawing and decision thresholds, the report).
:func:`load` returns None when the files are missing, and also, with a
warning, when they are there but unusable (a checksum, a format, another
block, a graph of other shapes or types): the caller then decides as it
did without the network.
"""
from __future__ import annotations

import functools
import hashlib
import json
import os
import threading
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

import numpy as np

__all__ = ["Spec", "RegionNetwork", "load", "clear_cache", "unit_number", "DATA", "CROP", "FORMAT"]

DATA = Path(__file__).resolve().with_name("data")
FORMAT = 1
#: the aligned crop's size the networks read
CROP = 128
#: larger than this many bytes, a network's JSON file is not read (a corrupt or crafted file)
MAX_JSON = 1 << 20


@dataclass(frozen=True)
class Spec:
    """One network: its ``name`` (the files ``<name>.onnx`` and
    ``<name>.json``), the ``region`` of the crop it reads (rows r0-r1,
    columns c0-c1), its ``outputs`` and what the warning says falls back."""

    name: str
    region: tuple[int, int, int, int]
    outputs: tuple[str, ...]
    fallback: str = "the attribute model decides"
    title: str = ""  # what messages call it ("facial-hair", "hat"); default the name
    # False: no output is drawn at a threshold (class probabilities, a softmax; or a value in [0, 1])
    thresholds: bool = True
    # True: the JSON names a gate pair for its one output (``gates``: ``long`` and ``short``, each a number in
    # [0, 1] or null), :attr:`RegionNetwork.gates`
    gates: bool = False

    @property
    def called(self) -> str:
        return self.title or self.name.replace("_", " ")

    @property
    def onnx_name(self) -> str:
        return f"{self.name}.onnx"

    @property
    def json_name(self) -> str:
        return f"{self.name}.json"

    @property
    def input_hw(self) -> tuple[int, int]:
        return self.region[1] - self.region[0], self.region[3] - self.region[2]

    def block(self, crop: np.ndarray) -> np.ndarray:
        """The block (uint8, H x W x 3) of an aligned 128-px RGB crop; ValueError for another shape."""
        c = np.asarray(crop)
        if c.shape != (CROP, CROP, 3):
            raise ValueError(f"the {self.called} network reads an aligned {CROP}x{CROP}x3 crop, got shape {c.shape}")
        r0, r1, c0, c1 = self.region
        return c[r0:r1, c0:c1]


def unit_number(v, what: str) -> float:
    """``v`` (a threshold read from a JSON file) as a float in [0, 1];
    ValueError naming ``what`` for a bool, a string, a number outside, or an
    integer too large for a float (a crafted file)."""
    try:
        ok = not isinstance(v, bool) and isinstance(v, (int, float)) and 0.0 <= float(v) <= 1.0
    except OverflowError:
        ok = False
    if not ok:
        raise ValueError(f"{what} is not a number in [0, 1]")
    return float(v)


class RegionNetwork:
    """A loaded network and its thresholds (``thresholds[name]["draw"]``:
    drawn at or above, for precision; ``["decision"]``: the best balanced
    accuracy)."""

    def __init__(self, spec: Spec, session, thresholds: Mapping[str, Mapping[str, float]], sha256: str,
                 gates: tuple[float | None, float | None] | None = None):
        self.spec = spec
        self.session = session
        self.thresholds = {n: {"draw": float(thresholds[n]["draw"]), "decision": float(thresholds[n]["decision"])}
                           for n in spec.outputs} if spec.thresholds else {}
        self.sha256 = sha256
        #: (at or above: one side, at or below: the other; None: no gate there) of a spec with ``gates``
        self.gates = gates

    @classmethod
    def from_files(cls, spec: Spec, json_path: Path, onnx_path: Path | None = None) -> "RegionNetwork":
        """ValueError when the files are not a valid pair (format, thresholds,
        checksum, the graph's input and output); OSError when unreadable."""
        from .checks import gate_pair_ok
        from .errors import ModelError
        from .runtime import Session

        json_path = Path(json_path)
        if json_path.stat().st_size > MAX_JSON:
            raise ValueError(f"{json_path}: larger than {MAX_JSON} bytes")
        doc = json.loads(json_path.read_text(encoding="utf-8"))
        if not isinstance(doc, dict) or doc.get("format") != FORMAT or isinstance(doc.get("format"), bool):
            raise ValueError(f"{json_path}: format {doc.get('format') if isinstance(doc, dict) else None!r:.40}, "
                             f"this SDK reads {FORMAT}")
        region = doc.get("region")
        if not isinstance(region, list) or region != list(spec.region) or doc.get("crop") != CROP:
            raise ValueError(f"{json_path}: a network of another block of the crop")
        th = doc.get("thresholds")
        if spec.thresholds:
            try:
                for n in spec.outputs:
                    for k in ("draw", "decision"):
                        unit_number(th[n][k], f"{json_path}: threshold {n}.{k}")
            except (KeyError, TypeError):
                raise ValueError(f"{json_path}: no thresholds for {', '.join(spec.outputs)}") from None
        elif doc.get("outputs") != list(spec.outputs):
            raise ValueError(f"{json_path}: outputs {doc.get('outputs')!r:.80}, not {list(spec.outputs)}")
        gates = None
        if spec.gates:
            g = doc.get("gates")
            if not isinstance(g, dict) or "long" not in g or "short" not in g:
                raise ValueError(f"{json_path}: no gates (long, short)")
            gates = tuple(None if g[k] is None else unit_number(g[k], f"{json_path}: gate {k}")
                          for k in ("long", "short"))
            if not gate_pair_ok(*gates):
                raise ValueError(f"{json_path}: gates {gates}: each must lie inside (0, 1), short not above long")
        sha = doc.get("sha256")
        onnx_path = Path(onnx_path) if onnx_path is not None else json_path.with_name(spec.onnx_name)
        data = onnx_path.read_bytes()
        if not isinstance(sha, str) or hashlib.sha256(data).hexdigest() != sha.lower():
            raise ValueError(f"{onnx_path}: its SHA-256 is not the one {json_path.name} names")
        sha = sha.lower()  # (as the fusions that name this network compare it)
        try:
            sess = Session(onnx_path, name=spec.name, description={}, model_bytes=data, device="cpu",
                           providers=["CPUExecutionProvider"])
        except ModelError as exc:
            raise ValueError(str(exc)) from None
        if (len(sess.inputs) != 1 or len(sess.outputs) != 1 or tuple(sess.inputs[0].shape[1:]) != (3, *spec.input_hw)
                or tuple(sess.outputs[0].shape[1:]) != (len(spec.outputs),)
                or sess.inputs[0].dtype != np.float32 or sess.outputs[0].dtype != np.float32):
            raise ValueError(f"{onnx_path}: not a {spec.called} network (inputs {[i.shape for i in sess.inputs]}, "
                             f"outputs {[o.shape for o in sess.outputs]})")
        return cls(spec, sess, th, sha, gates)

    def probabilities(self, crop: np.ndarray) -> dict[str, float]:
        """``{output: p}`` for an aligned 128-px RGB crop (uint8)."""
        x = self.spec.block(crop).astype(np.float32).transpose(2, 0, 1)[None] / 255.0
        out = self.session.run({self.session.input_names[0]: x})
        p = np.asarray(out[self.session.output_names[0]], np.float64).reshape(-1)
        if not (np.isfinite(p).all() and (p >= -PROBABILITY_SLACK).all() and (p <= 1.0 + PROBABILITY_SLACK).all()):
            from .errors import ModelError

            # (clipped, NaN went through: NaN in Avatar.attributes, and hair_colour read "black")
            raise ModelError(f"the {self.spec.called} network returned {np.round(p, 4).tolist()}, not probabilities "
                             "in [0, 1]: its model file is broken")
        return {n: float(np.clip(v, 0.0, 1.0)) for n, v in zip(self.spec.outputs, p)}


#: how far outside [0, 1] a region network's output may be (rounding) before it is a broken model
PROBABILITY_SLACK = 1e-3

_LOCK = threading.Lock()


def _load(spec: Spec, folder: str) -> RegionNetwork | None:
    with _LOCK:  # one session (and one warning) however many threads build an Avatarizer at once
        return _load_once(spec, folder)


@functools.lru_cache(maxsize=8)
def _load_once(spec: Spec, folder: str) -> RegionNetwork | None:
    path = Path(folder) / spec.json_name
    if not os.path.lexists(path):  # (missing: the fallback, without a word; anything else there that is not a
        return None  # readable file, a folder too, is said, as for the .onnx file)
    try:
        return RegionNetwork.from_files(spec, path)
    except (OSError, ValueError, TypeError, RecursionError) as exc:
        warnings.warn(f"the {spec.called} network is not used ({exc}); {spec.fallback}",
                      RuntimeWarning, stacklevel=4)
        return None


def load(spec: Spec, folder: str | Path | None = None) -> RegionNetwork | None:
    """The network of ``spec`` in ``folder`` (default the SDK's data folder),
    loaded once; None when its files are missing or unusable (a warning says why)."""
    return _load(spec, str(Path(folder) if folder is not None else DATA))


def clear_cache() -> None:
    """Forgets the loaded networks (after ``avatarizer-export`` rewrote one)."""
    with _LOCK:
        _load_once.cache_clear()
