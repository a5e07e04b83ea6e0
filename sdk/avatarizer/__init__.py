"""Avatarizer: parametric vector avatars from portrait photos and live video.

    from avatarizer import Avatarizer
    avatar = Avatarizer().from_frame(frame)     # H x W x 3 uint8 RGB; None if no face
    avatar.render(size=512); avatar.to_svg()
"""
from __future__ import annotations

from typing import TYPE_CHECKING

__version__ = "0.1.0"

from .errors import AvatarizerError, ModelError, NativeError  # noqa: E402

#: the package's own data file that would not load (a broken install: ``schema.json`` corrupt), or None:
#: the package still imports, so that ``avatarizer --version`` and every command say so in one line (it
#: was a traceback at the import, before the CLI could catch it; a review, session 71); what needs the
#: schema raises the :class:`ModelError` where it is used
_BROKEN: ModelError | None = None
try:
    from . import prior as _prior  # noqa: E402
    from . import schema  # noqa: E402
    from .render import render, to_pdf, to_svg  # noqa: E402
    from .schema import PARAM_COUNT  # noqa: E402

    schema.sample = _prior.sample  # schema.sample(n, seed): see avatarizer.prior (schema does not import it)
except ModelError as _exc:
    _BROKEN = _exc

__all__ = ["Avatarizer", "Avatar", "Options", "schema", "PARAM_COUNT", "render", "to_svg", "to_pdf",
           "AvatarizerError", "ModelError", "NativeError", "load_image", "sample_photo", "__version__"]

_LAZY = {"Avatarizer": "api", "Avatar": "api", "Options": "api",
         "load_image": "imageio", "sample_photo": "imageio"}

if TYPE_CHECKING:  # type checkers see the real classes; at run time they load lazily (below)
    from .api import Avatar, Avatarizer, Options
    from .imageio import load_image, sample_photo


def __getattr__(name):
    if _BROKEN is not None and name in ("schema", "render", "to_svg", "to_pdf", "PARAM_COUNT", *_LAZY):
        raise ModelError(str(_BROKEN)) from None  # (a new one each time: raising the stored one grew its traceback)
    # the API pulls in MediaPipe and ONNX Runtime: import it on first use only,
    # so `avatarizer --version` and the renderer stay light
    if name in _LAZY:
        from importlib import import_module

        value = getattr(import_module(f".{_LAZY[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'avatarizer' has no attribute {name!r}")
