"""End-to-end latency of the runtime pipeline: the same as ``avatarizer bench``.

Usage::

    python benchmarks/e2e.py [--json] [--frames N] [--mode video|image] [--device cpu|cuda|auto]

See :mod:`avatarizer.bench` for what is timed and the JSON schema.
"""
from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if importlib.util.find_spec("avatarizer") is None:  # not installed: use the checkout
    sys.path.insert(0, str(ROOT / "sdk"))

from avatarizer.bench import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main(prog="e2e.py"))
