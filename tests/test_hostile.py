"""Hostile input to the Python API (issue #15): every case gets the documented
exception (``ValueError`` for bad input, ``ModelError`` for bad model files,
``RuntimeError`` for use after close) or a documented ``None``, never another
type, a hang or a huge allocation."""
from __future__ import annotations

import os
import struct
import subprocess
import sys
import textwrap
import zlib
from pathlib import Path

import numpy as np
import pytest

from conftest import ROOT


def _png_declaring(path: Path, w: int, h: int) -> Path:
    """A small, valid PNG of w x h black pixels (deflate squeezes it to ~0.3% of its size)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    z = zlib.compressobj(9)
    row = b"\x00" * (1 + 3 * w)
    idat = b"".join(z.compress(row) for _ in range(h)) + z.flush()
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
                     + chunk(b"IDAT", idat) + chunk(b"IEND", b""))
    return path


# ---------------------------------------------------------------- defect 3: decompression bombs
def test_decompression_bomb_is_refused_from_the_header(tmp_path):
    """A 13000x13000 PNG is refused with ValueError before decoding: peak memory
    grows by < 100 MB (decoding it would take ~500 MB as RGB)."""
    bomb = _png_declaring(tmp_path / "bomb.png", 13000, 13000)
    assert bomb.stat().st_size < 1_000_000
    code = textwrap.dedent(f"""
        import resource, sys
        from avatarizer.imageio import load_image
        from avatarizer.api import Avatarizer
        av = Avatarizer(estimator="artist")
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        for call in (load_image, av.from_image):
            try:
                call({str(bomb)!r})
            except ValueError as exc:
                assert "13000" in str(exc), exc
            else:
                sys.exit("no ValueError from " + call.__name__)
        grew = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
        print(f"peak growth {{grew:.1f}} MB")
        assert grew < 100, grew
    """)
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                         env=dict(os.environ, GLOG_minloglevel="2"))
    assert res.returncode == 0, res.stdout + res.stderr[-3000:]


def test_load_image_refuses_pipes_and_odd_paths(tmp_path):
    from avatarizer.imageio import load_image

    fifo = tmp_path / "pipe.png"
    os.mkfifo(fifo)
    with pytest.raises(ValueError, match="not a regular file"):
        load_image(fifo)  # would block forever in open()
    with pytest.raises(ValueError):
        load_image(str(tmp_path / "nul\0byte.png"))
    with pytest.raises(ValueError):
        load_image(tmp_path / ("x" * 5000))
    with pytest.raises(FileNotFoundError):
        load_image(tmp_path / "missing.png")
    (tmp_path / "trunc.png").write_bytes(_png_declaring(tmp_path / "ok.png", 64, 64).read_bytes()[:60])
    with pytest.raises(ValueError):
        load_image(tmp_path / "trunc.png")
