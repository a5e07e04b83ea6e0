"""Beard and moustache from the lower face: the facial-hair network.

The attribute regressor H sees the whole aligned crop through features
distilled from ImageNet and misses light beards (red, grey, white) and
stubble; the auto-artist's detector over hand-measured cues misses the same.
This small CNN reads only the lower face: the :data:`REGION` block of the
aligned 128-px crop (the crop H and the hair stage read), and gives
P(beard) and P(moustache), the crop's and its mirror image's averaged
inside the graph. ``avatarizer-export facial-hair`` fits it (on the labels
by eye, the shared labels and UTKFace women and children by their file
names; thresholds out of fold for precision 0.9) and writes
``data/facial_hair.onnx`` and ``data/facial_hair.json`` (the file's
SHA-256, the thresholds, the report). The hybrid estimator decides the
beard and the moustache with it (:func:`avatarizer.hair.add_facial_hair`);
without the files, or with files that do not match (a checksum, a format),
it falls back to H and the artist's detector, with a warning for files
that are there but unusable.
"""
from __future__ import annotations

import functools
import hashlib
import json
import threading
import warnings
from pathlib import Path
from typing import Mapping

import numpy as np

__all__ = ["FacialHairNetwork", "REGION", "CROP", "INPUT_HW", "OUTPUTS", "region", "load", "clear_cache"]

DATA = Path(__file__).resolve().with_name("data")
ONNX_NAME, JSON_NAME = "facial_hair.onnx", "facial_hair.json"
FORMAT = 1
#: the aligned crop's size and the lower face's block of it: rows 56-120, columns 24-104
#: (under the nose's tip to below the chin, the jaw's corners included)
CROP = 128
REGION = (56, 120, 24, 104)
INPUT_HW = (REGION[1] - REGION[0], REGION[3] - REGION[2])
OUTPUTS = ("beard", "moustache")
#: larger than this many bytes, the JSON file is not read (a corrupt or crafted file)
_MAX_JSON = 1 << 20


def region(crop: np.ndarray) -> np.ndarray:
    """The lower face's block (64 x 80 x 3, uint8) of an aligned 128-px RGB crop."""
    c = np.asarray(crop)
    if c.shape != (CROP, CROP, 3):
        raise ValueError(f"the facial-hair network reads an aligned {CROP}x{CROP}x3 crop, got shape {c.shape}")
    r0, r1, c0, c1 = REGION
    return c[r0:r1, c0:c1]


class FacialHairNetwork:
    """The network and its thresholds (``thresholds[name]["draw"]``: drawn
    at or above, for precision; ``["decision"]``: the best balanced accuracy)."""

    def __init__(self, session, thresholds: Mapping[str, Mapping[str, float]], sha256: str):
        self.session = session
        self.thresholds = {n: {"draw": float(thresholds[n]["draw"]), "decision": float(thresholds[n]["decision"])}
                           for n in OUTPUTS}
        self.sha256 = sha256

    @classmethod
    def from_files(cls, json_path: Path, onnx_path: Path | None = None) -> "FacialHairNetwork":
        """ValueError when the files are not a valid pair (format, thresholds,
        checksum, the graph's input and output); OSError when unreadable."""
        from .runtime import Session

        json_path = Path(json_path)
        if json_path.stat().st_size > _MAX_JSON:
            raise ValueError(f"{json_path}: larger than {_MAX_JSON} bytes")
        doc = json.loads(json_path.read_text(encoding="utf-8"))
        if not isinstance(doc, dict) or doc.get("format") != FORMAT or isinstance(doc.get("format"), bool):
            raise ValueError(f"{json_path}: format {doc.get('format') if isinstance(doc, dict) else None!r:.40}, "
                             f"this SDK reads {FORMAT}")
        region_ = doc.get("region")
        if not isinstance(region_, list) or region_ != list(REGION) or doc.get("crop") != CROP:
            raise ValueError(f"{json_path}: a network of another region of the crop")
        th = doc.get("thresholds")
        try:
            for n in OUTPUTS:
                for k in ("draw", "decision"):
                    v = th[n][k]
                    if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0.0 <= float(v) <= 1.0:
                        raise ValueError(f"{json_path}: threshold {n}.{k} is not a number in [0, 1]")
        except (KeyError, TypeError):
            raise ValueError(f"{json_path}: no thresholds for {', '.join(OUTPUTS)}") from None
        sha = doc.get("sha256")
        onnx_path = Path(onnx_path) if onnx_path is not None else json_path.with_name(str(doc.get("onnx", ONNX_NAME)))
        data = onnx_path.read_bytes()
        if not isinstance(sha, str) or hashlib.sha256(data).hexdigest() != sha:
            raise ValueError(f"{onnx_path}: its SHA-256 is not the one {json_path.name} names")
        from .errors import ModelError

        try:
            sess = Session(onnx_path, name="facial_hair", description={}, model_bytes=data, device="cpu",
                           providers=["CPUExecutionProvider"])
        except ModelError as exc:
            raise ValueError(str(exc)) from None
        if (len(sess.inputs) != 1 or len(sess.outputs) != 1 or tuple(sess.inputs[0].shape[1:]) != (3, *INPUT_HW)
                or tuple(sess.outputs[0].shape[1:]) != (len(OUTPUTS),)
                or sess.inputs[0].dtype != np.float32 or sess.outputs[0].dtype != np.float32):
            raise ValueError(f"{onnx_path}: not a facial-hair network (inputs {[i.shape for i in sess.inputs]}, "
                             f"outputs {[o.shape for o in sess.outputs]})")
        return cls(sess, th, sha)

    def probabilities(self, crop: np.ndarray) -> dict[str, float]:
        """``{"beard": p, "moustache": p}`` for an aligned 128-px RGB crop (uint8)."""
        x = region(crop).astype(np.float32).transpose(2, 0, 1)[None] / 255.0
        out = self.session.run({self.session.input_names[0]: x})
        p = np.asarray(out[self.session.output_names[0]], np.float64).reshape(-1)
        return {n: float(np.clip(v, 0.0, 1.0)) for n, v in zip(OUTPUTS, p)}


_LOCK = threading.Lock()


def _load(folder: str) -> FacialHairNetwork | None:
    with _LOCK:  # one session (and one warning) however many threads build an Avatarizer at once
        return _load_once(folder)


@functools.lru_cache(maxsize=1)
def _load_once(folder: str) -> FacialHairNetwork | None:
    path = Path(folder) / JSON_NAME
    if not path.is_file():
        return None
    try:
        return FacialHairNetwork.from_files(path)
    except (OSError, ValueError, TypeError, RecursionError) as exc:
        warnings.warn(f"the facial-hair network is not used ({exc}); beards and moustaches are decided by "
                      "the attribute model and the artist's detector", RuntimeWarning, stacklevel=3)
        return None


def load(folder: str | Path | None = None) -> FacialHairNetwork | None:
    """The network in ``folder`` (default the SDK's data folder), loaded once;
    None when its files are missing or unusable (a warning says why)."""
    return _load(str(Path(folder) if folder is not None else DATA))


def clear_cache() -> None:
    """Forgets the loaded network (after ``avatarizer-export facial-hair`` rewrote it)."""
    with _LOCK:
        _load_once.cache_clear()
