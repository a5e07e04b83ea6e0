"""Exceptions raised by the SDK."""
from __future__ import annotations


class AvatarizerError(Exception):
    """Base class of the SDK's own errors."""


class NativeError(AvatarizerError, ValueError):
    """The native renderer refused a call; ``status`` is its avz_status name."""

    def __init__(self, status: str, message: str):
        super().__init__(f"{message} [{status}]")
        self.status = status


class ModelError(AvatarizerError):
    """A model file is missing, corrupt or does not match its manifest."""


class MissingFileError(FileNotFoundError, ValueError):
    """An input file does not exist. Both a ``FileNotFoundError`` (the Python
    convention) and a ``ValueError`` (the SDK's one type for bad input)."""
