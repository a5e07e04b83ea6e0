"""Shared test helpers: where ../shared is, a place for failure artefacts, a two-face frame."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
ARTEFACTS = ROOT / "out" / "test-failures"


def need_shared(*parts: str) -> Path:
    """Path inside ../shared, or skip the test with the reason."""
    path = SHARED.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"needs {path} (the ../shared folder beside the checkout)")
    return path


def save_failure(name: str, image) -> Path:
    """Saves an image for a person to look at when a comparison fails."""
    from PIL import Image

    ARTEFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTEFACTS / f"{name}.png"
    Image.fromarray(image).save(path)
    return path


def two_face_canvas(astronaut: np.ndarray) -> np.ndarray:
    """The astronaut's head twice, 320 px and 200 px, on a grey 584×384 canvas."""
    head = astronaut[20:260, 110:350]
    canvas = np.full((384, 584, 3), 200, np.uint8)
    canvas[32:352, 32:352] = cv2.resize(head, (320, 320), interpolation=cv2.INTER_AREA)
    canvas[32:232, 352:552] = cv2.resize(head, (200, 200), interpolation=cv2.INTER_AREA)
    return canvas


def run_in_fork(fn) -> tuple[int, bytes]:
    """Runs ``fn()`` (returning bytes) in a child made by ``os.fork()`` and
    returns (the child's wait status, what ``fn`` returned; ``b"!"`` when it
    raised). The child leaves with ``os._exit``, without the parent's exit
    handlers."""
    import os

    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            out = fn()
        except BaseException:  # noqa: BLE001 (reported to the parent as b"!")
            out = b"!"
        os.write(w, out)
        os._exit(0)
    os.close(w)
    try:
        got = os.read(r, 256)
    finally:
        os.close(r)
        _, status = os.waitpid(pid, 0)
    return status, got
