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


def new_file_mode(replacing) -> int:
    """The permission bits for a new file that takes the name ``replacing``:
    those of the regular file it replaces (an output kept private, 0600,
    stays so when written again with ``--overwrite``; it became 0644), else
    the usual ``0666`` less the umask. Set-id bits are never carried over."""
    import stat

    try:
        st = os.stat(replacing)
        if stat.S_ISREG(st.st_mode):
            return st.st_mode & 0o777
    except (OSError, ValueError):
        pass
    return 0o666 & ~current_umask()


def is_special(path) -> bool:
    """Whether ``path`` is held by something that is not a file, a link or a
    folder (a named pipe, socket or device, by ``lstat``: a link is itself):
    an output name never replaced, also with overwrite (replacing a pipe
    another program reads, or a device node). False where nothing is there."""
    import stat

    try:
        mode = os.lstat(path).st_mode
    except (OSError, ValueError):
        return False
    return not (stat.S_ISREG(mode) or stat.S_ISLNK(mode) or stat.S_ISDIR(mode))
