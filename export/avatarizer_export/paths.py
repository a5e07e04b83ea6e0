"""Where the training side finds ``../shared`` and keeps its cache."""
from __future__ import annotations

import os
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
#: True when running from a source checkout (``pip install -e ./export``), the
#: way the training side is meant to be used; a plain install of the
#: ``avatarizer-export`` distribution keeps its cache under the user's cache
#: folder instead of inside site-packages.
IN_CHECKOUT = (ROOT / "export" / "pyproject.toml").is_file() and (ROOT / "sdk" / "avatarizer").is_dir()


def shared_dir(override: str | os.PathLike | None = None) -> Path:
    """The shared data folder: ``--shared``, ``$AVATARIZER_SHARED`` or ``../shared``."""
    path = Path(override or os.environ.get("AVATARIZER_SHARED") or ROOT.parent / "shared")
    if not (path / "data").is_dir():
        raise FileNotFoundError(
            f"the shared data folder {path} is missing (expected {path / 'data'}): the training side "
            "reads real faces from ../shared beside the checkout, or from --shared DIR")
    return path


def cache_dir(override: str | os.PathLike | None = None) -> Path:
    """Built datasets: ``--cache``, ``$AVATARIZER_CACHE`` or ``<repo>/cache`` (not committed; outside a
    checkout ``~/.cache/avatarizer-export``)."""
    default = ROOT / "cache" if IN_CHECKOUT else Path(
        os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "avatarizer-export"
    path = Path(override or os.environ.get("AVATARIZER_CACHE") or default)
    path.mkdir(parents=True, exist_ok=True)
    return path
