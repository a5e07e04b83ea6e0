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


_SHARED: Path | None = None  # the shared folder the running command resolved (shared_dir)


def shared_dir(override: str | os.PathLike | None = None) -> Path:
    """The shared data folder: ``--shared``, ``$AVATARIZER_SHARED`` or
    ``../shared``; remembered for :func:`weights_dir`."""
    global _SHARED
    path = Path(override or os.environ.get("AVATARIZER_SHARED") or ROOT.parent / "shared")
    if not (path / "data").is_dir():
        raise FileNotFoundError(
            f"the shared data folder {path} is missing (expected {path / 'data'}): the training side "
            "reads real faces from ../shared beside the checkout, or from --shared DIR")
    _SHARED = path
    return path


def weights_dir() -> Path:
    """``weights/`` of the shared folder: of the one :func:`shared_dir` last
    resolved (a command's ``--shared``) where it has one, else of
    ``$AVATARIZER_SHARED`` or ``../shared``."""
    if _SHARED is not None and (_SHARED / "weights").is_dir():
        return _SHARED / "weights"
    return Path(os.environ.get("AVATARIZER_SHARED") or ROOT.parent / "shared") / "weights"


def optional_shared_dir(override: str | os.PathLike | None, log, without: str) -> Path | None:
    """:func:`shared_dir` for a step that can do without it: None where there
    is none, after ``log``-ging ``without`` (what the step then does) with the
    places looked at; a folder asked for (``override``) and missing raises at
    once (not after the step's minutes)."""
    try:
        return shared_dir(override)
    except FileNotFoundError:
        if override is not None:
            raise
        head, _, rest = without.partition(": ")
        log(f"{head}: no shared folder (../shared, $AVATARIZER_SHARED, --shared): {rest}")
        return None


def cache_dir(override: str | os.PathLike | None = None) -> Path:
    """Built datasets: ``--cache``, ``$AVATARIZER_CACHE`` or ``<repo>/cache`` (not committed; outside a
    checkout ``~/.cache/avatarizer-export``)."""
    default = ROOT / "cache" if IN_CHECKOUT else Path(
        os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "avatarizer-export"
    path = Path(override or os.environ.get("AVATARIZER_CACHE") or default)
    path.mkdir(parents=True, exist_ok=True)
    return path


def not_a_folder(folder: Path) -> str:
    """Why ``folder`` cannot hold an output: it does not exist, or it is not a folder (a file on the way:
    "does not exist" was said of a file, a review, session 64)."""
    return f"the folder {folder} does not exist" if not folder.exists() and not folder.is_symlink() else \
        f"{folder} is not a folder"

