"""Avatarizer: parametric vector avatars from portrait photos and live video."""
from __future__ import annotations

__version__ = "0.1.0"

from . import schema  # noqa: E402
from .schema import PARAM_COUNT  # noqa: E402
from .render import render, to_svg, to_pdf  # noqa: E402
from .errors import AvatarizerError, NativeError  # noqa: E402

__all__ = ["schema", "PARAM_COUNT", "render", "to_svg", "to_pdf", "AvatarizerError", "NativeError",
           "__version__"]
