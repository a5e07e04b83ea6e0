"""avatarizer._files: the process's umask read without leaving it changed."""
import os
import threading

import pytest

from avatarizer import _files


@pytest.fixture
def mask_027():
    old = os.umask(0o027)
    try:
        yield 0o027
    finally:
        os.umask(old)


def test_current_umask_is_the_process_mask(mask_027):
    assert _files.current_umask() == mask_027


def test_current_umask_from_threads_leaves_the_mask(mask_027):
    # many threads at once: the mask is the same afterwards (setting 0 to read it and restoring
    # another thread's 0 left the process's mask at 0)
    seen = []

    def read():
        for _ in range(200):
            seen.append(_files.current_umask())

    threads = [threading.Thread(target=read) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert set(seen) == {mask_027}
    assert _files.current_umask() == mask_027


def test_current_umask_without_proc(monkeypatch, mask_027):
    # where /proc cannot be read, os.umask under the lock: the right mask, left as it was
    real_open = open

    def no_proc(path, *a, **k):
        if str(path).startswith("/proc/"):
            raise FileNotFoundError(path)
        return real_open(path, *a, **k)

    monkeypatch.setattr("builtins.open", no_proc)
    assert _files.current_umask() == mask_027
    seen = []
    threads = [threading.Thread(target=lambda: seen.extend(_files.current_umask() for _ in range(200)))
               for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert set(seen) == {mask_027}
    monkeypatch.undo()
    assert _files.current_umask() == mask_027
