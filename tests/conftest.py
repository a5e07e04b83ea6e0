"""Shared test helpers: where ../shared is, and a place for failure artefacts."""
from __future__ import annotations

from pathlib import Path

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
