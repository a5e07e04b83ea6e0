"""Small helpers for the files the SDK writes."""
from __future__ import annotations

import os
import threading

_UMASK_LOCK = threading.Lock()


def current_umask() -> int:
    """The process's file-mode creation mask, read without changing it where
    the OS tells it (Linux: ``/proc/self/status``). Elsewhere ``os.umask`` is
    the only way to read it, which sets it for a moment: done under a lock, so
    two threads reading it at once cannot leave the process's mask at 0 (each
    setting 0 and the second restoring the first one's 0), a mask every later
    file of the app would have been created with."""
    try:
        with open("/proc/self/status", "rb") as f:
            for line in f:
                if line.startswith(b"Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    with _UMASK_LOCK:
        mask = os.umask(0o077)  # (the strictest usual mask for the moment, not 0)
        os.umask(mask)
    return mask
