"""Where the training side finds ``../shared`` and keeps its cache."""
from __future__ import annotations

import os
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def shared_dir(override: str | os.PathLike | None = None) -> Path:
    """The shared data folder: ``--shared``, ``$AVATARIZER_SHARED`` or ``../shared``."""
    path = Path(override or os.environ.get("AVATARIZER_SHARED") or ROOT.parent / "shared")
    if not (path / "data").is_dir():
        raise FileNotFoundError(
            f"the shared data folder {path} is missing (expected {path / 'data'}): the training side "
            "reads real faces from ../shared beside the checkout, or from --shared DIR")
    return path


def cache_dir(override: str | os.PathLike | None = None) -> Path:
    """Built datasets: ``--cache``, ``$AVATARIZER_CACHE`` or ``<repo>/cache`` (not committed)."""
    path = Path(override or os.environ.get("AVATARIZER_CACHE") or ROOT / "cache")
    path.mkdir(parents=True, exist_ok=True)
    return path
