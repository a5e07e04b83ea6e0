"""The command line keeps MediaPipe's start-up log lines and FFmpeg's
decoder lines off stderr (avatarizer.logfilter), and passes everything else on."""
from __future__ import annotations

import os
import subprocess
import sys
import tempfile

from avatarizer.logfilter import NOISE, StderrFilter
from conftest import ROOT

W = (b"W0000 00:00:1795939107.896234   32450 inference_feedback_manager.cc:114] Feedback manager requires a "
     b"model with a single signature inference. Disabling support for feedback tensors.\n")
I = b"I0000 00:00:1752489631.572373  129295 gl_context_egl.cc:85] Successfully initialized EGL. Major : 1\n"
BANNERS = (b"INFO: Created TensorFlow Lite XNNPACK delegate for CPU.\n"
           b"WARNING: All log messages before absl::InitializeLog() is called are written to STDERR\n")
E = b"E0000 00:00:1752489631.572373  129295 calculator_graph.cc:887] a real error\n"
FFMPEG = (b"[h264 @ 0x555e41c98f80] Invalid NAL unit size (-1 > 4053).\n"
          b"[mov,mp4,m4a,3gp,3g2,mj2 @ 0x558101988740] moov atom not found\n"
          b"Truncating packet of size 10944837 to 28700\n"  # (a damaged file: FFmpeg writes it unprefixed)
          b"TIFFFillStrip: Read error on strip 0; got 266075 bytes, expected 532150.\n"  # (libtiff in Pillow)
          b"ZIPDecode: Not enough data at scanline 0 (short 1234 bytes).\n")


def _through_filter(*writes: bytes) -> bytes:
    """What reaches file descriptor 2 (a temporary file here) when ``writes``
    are written to it, one os.write each, while the filter is on."""
    with tempfile.TemporaryFile() as sink:
        saved = os.dup(2)
        os.dup2(sink.fileno(), 2)
        try:
            f = StderrFilter()
            assert f.start() and f.active
            for w in writes:
                os.write(2, w)
            f.stop()
            assert not f.active
        finally:
            os.dup2(saved, 2)
            os.close(saved)
        sink.seek(0)
        return sink.read()


def test_mediapipe_lines_are_dropped_and_the_rest_passes():
    got = _through_filter(BANNERS, W, FFMPEG, b"avatarizer image: error: something\n", I, E, W[:10], W[10:],
                          b"[####----] 5/10 frames\r", b"[########] 10/10 frames\n", b"no newline at the end")
    assert got == (b"avatarizer image: error: something\n" + E + b"[####----] 5/10 frames\r"
                   b"[########] 10/10 frames\nno newline at the end")


def test_a_partial_line_that_may_become_noise_is_held_then_judged_whole():
    assert _through_filter(b"W", b"0000 00:00:1.5 1 a.cc:1] x\n", b"WARN", b"ING: real\n", b"I", b"\n") == \
        b"WARNING: real\nI\n"
    assert NOISE.match(W.rstrip()) and NOISE.match(I.rstrip()) and not NOISE.match(E.rstrip())
    assert _through_filter(b"Trunc", b"ating packet of size 5 to 3\n", b"Truncat", b"ed output\n") == \
        b"Truncated output\n"
    for kept in (b"TIFF: a word\n", b"ZIP: archive\n", b"Tiffany: hello\n"):  # (not libtiff's function names)
        assert not NOISE.match(kept.rstrip()), kept


def test_stop_without_start_and_twice_is_harmless():
    f = StderrFilter()
    f.stop()
    assert _through_filter(b"x\n") == b"x\n"
    with tempfile.TemporaryFile() as sink:
        saved = os.dup(2)
        os.dup2(sink.fileno(), 2)
        try:
            g = StderrFilter()
            assert g.start() and g.start()  # (a second start: the same filter)
            os.write(2, W + b"y\n")
            g.stop()
            g.stop()
            os.write(2, b"z\n")  # the real stderr again
        finally:
            os.dup2(saved, 2)
            os.close(saved)
        sink.seek(0)
        assert sink.read() == b"y\nz\n"


def test_what_was_written_before_a_crash_still_arrives():
    """The command dies with the filter on (an abort after a fatal line, an
    os._exit after an error message): the filter process drains the pipe,
    so the lines reach the real stderr (an in-process thread lost them)."""
    for end in ("os.abort()", "os._exit(3)"):
        code = ("import os; from avatarizer.logfilter import FILTER; assert FILTER.start(); "
                f"os.write(2, {W!r} + b'F0000 00:00:1.5 1 graph.cc:1] Check failed: the end\\n'); "
                f"import sys; print('avatarizer x: error: last words', file=sys.stderr, flush=True); {end}")
        res = subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=60,
                             env=dict(os.environ, PYTHONPATH=str(ROOT / "sdk")))
        assert res.returncode != 0
        assert b"Check failed: the end" in res.stderr and b"last words" in res.stderr, (end, res.stderr)
        assert b"Feedback manager" not in res.stderr


def test_the_command_line_prints_no_mediapipe_lines(tmp_path):
    """A real run: `avatarizer image` on the bundled portrait writes one line
    on stdout and nothing on stderr (MediaPipe wrote half a dozen lines
    there); with AVATARIZER_LIBRARY_LOGS=1 they are shown."""
    from avatarizer.imageio import SAMPLE_PHOTO as photo

    def run(**env):
        return subprocess.run([sys.executable, "-m", "avatarizer.cli", "image", str(photo), "-o",
                               str(tmp_path / "a.png"), "--overwrite"], capture_output=True, timeout=300,
                              env=dict(os.environ, PYTHONPATH=str(ROOT / "sdk"), **env), cwd=tmp_path)

    quiet = run()
    assert quiet.returncode == 0, quiet.stderr[-2000:]
    assert quiet.stderr == b"" and quiet.stdout.startswith(b"wrote ")
    loud = run(AVATARIZER_LIBRARY_LOGS="1")
    assert loud.returncode == 0
    lines = loud.stderr.splitlines()
    # MediaPipe 0.10.21 writes them (the filter is what kept them away), and they are all it wrote
    assert lines and all(NOISE.match(line) for line in lines), loud.stderr[-2000:]
