"""Nothing a user gives is lost (issue #15): the CLI battery.

Every command runs in a folder of user files (inputs named like temporary
files, decoys beside the output); every file in the folder is checksummed
before and after, and the only change allowed is the one output the command
was asked to write. Interrupts (SIGTERM mid-run, Ctrl-C during the final mux)
must leave the folder exactly as it was.
"""
from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image
from skimage import data as skdata

from conftest import need_shared

CLI = [sys.executable, "-m", "avatarizer.cli"]
ENV = dict(os.environ, GLOG_minloglevel="2", TF_CPP_MIN_LOG_LEVEL="2")


def _snapshot(folder: Path) -> dict[str, str]:
    """sha256 of every file under ``folder`` (hidden ones included), by relative path."""
    out = {}
    for p in sorted(folder.rglob("*")):
        if p.is_file() and not p.is_symlink():
            out[str(p.relative_to(folder))] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def _changes(before: dict, after: dict) -> tuple[set, set, set]:
    lost = set(before) - set(after)
    changed = {k for k in set(before) & set(after) if before[k] != after[k]}
    new = set(after) - set(before)
    return lost, changed, new


def _main(*argv) -> int:
    from avatarizer.cli import main

    return main([str(a) for a in argv])


def _expect(folder: Path, before: dict, *, new: set[str] = frozenset(), replaced: set[str] = frozenset()):
    lost, changed, created = _changes(before, _snapshot(folder))
    assert not lost, f"files lost: {sorted(lost)}"
    assert changed == set(replaced), f"files changed: {sorted(changed)}"
    assert created == set(new), f"unexpected new files: {sorted(created - set(new))}, missing {sorted(set(new) - created)}"


@pytest.fixture(scope="module")
def photo_bytes(tmp_path_factory) -> bytes:
    path = tmp_path_factory.mktemp("photo") / "a.png"
    Image.fromarray(skdata.astronaut()).resize((256, 256)).save(path)
    return path.read_bytes()


@pytest.fixture(scope="module")
def clip_bytes(tmp_path_factory) -> bytes:
    """12 frames of a shared clip at 256x256 (a small, fast input)."""
    src = need_shared("data", "video", "d0.mp4")
    path = tmp_path_factory.mktemp("clip") / "c.mp4"
    cap = cv2.VideoCapture(str(src))
    w = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 25.0, (256, 256))
    for _ in range(12):
        ok, f = cap.read()
        assert ok
        w.write(cv2.resize(f, (256, 256)))
    w.release()
    cap.release()
    return path.read_bytes()


def _user_folder(tmp_path: Path, files: dict[str, bytes]) -> Path:
    folder = tmp_path / "user"
    folder.mkdir()
    for name, data in files.items():
        (folder / name).write_bytes(data)
    return folder


# ---------------------------------------------------------------- defects 1 and 2
@pytest.mark.parametrize("name", ["photo.png.partial", ".avatarizer-x.png", "photo.png"])
def test_image_input_named_like_a_temporary_file_survives(tmp_path, photo_bytes, name, capsys):
    out = "photo.png" if name != "photo.png" else "photo_avatar.png"
    folder = _user_folder(tmp_path, {name: photo_bytes, "notes.txt": b"keep me"})
    before = _snapshot(folder)
    assert _main("image", folder / name, "-o", folder / out, "--size", "64") == 0, capsys.readouterr().err
    _expect(folder, before, new={out})


@pytest.mark.parametrize("name", ["clip.partial.mp4", "clip.muxed.partial.mp4"])
def test_video_input_named_like_a_temporary_file_survives(tmp_path, clip_bytes, name, capsys):
    folder = _user_folder(tmp_path, {name: clip_bytes})
    before = _snapshot(folder)
    assert _main("video", folder / name, "-o", folder / "clip.mp4") == 0, capsys.readouterr().err
    _expect(folder, before, new={"clip.mp4"})


def test_user_files_beside_the_output_are_never_touched(tmp_path, photo_bytes, clip_bytes, capsys):
    decoys = {n: f"user data {n}".encode() for n in (
        "out.png.partial", "out.partial.mp4", "out.muxed.partial.mp4", "out.svg.partial", "out.pdf.partial",
        ".avatarizer-out.mp4", "out.mp4.tmp")}
    folder = _user_folder(tmp_path, {"in.png": photo_bytes, "in.mp4": clip_bytes, **decoys})
    for out in ("out.png", "out.svg", "out.pdf"):
        before = _snapshot(folder)
        assert _main("image", folder / "in.png", "-o", folder / out, "--size", "64") == 0, capsys.readouterr()
        _expect(folder, before, new={out})
    before = _snapshot(folder)
    assert _main("video", folder / "in.mp4", "-o", folder / "out.mp4") == 0, capsys.readouterr()
    _expect(folder, before, new={"out.mp4"})


def test_overwrite_is_the_only_way_to_replace(tmp_path, photo_bytes, clip_bytes, capsys):
    folder = _user_folder(tmp_path, {"in.png": photo_bytes, "in.mp4": clip_bytes, "out.png": b"mine",
                                     "out.mp4": b"mine too"})
    before = _snapshot(folder)
    assert _main("image", folder / "in.png", "-o", folder / "out.png") == 1
    assert _main("video", folder / "in.mp4", "-o", folder / "out.mp4") == 1
    assert capsys.readouterr().err.count("--overwrite") == 2
    # the input is never the output, not even with --overwrite, not through a link
    os.link(folder / "in.png", folder / "hard.png")
    before = _snapshot(folder)
    assert _main("image", folder / "in.png", "-o", folder / "in.png", "--overwrite") == 1
    assert _main("image", folder / "in.png", "-o", folder / "hard.png", "--overwrite") == 1
    assert _main("video", folder / "in.mp4", "-o", folder / "in.mp4", "--overwrite") == 1
    _expect(folder, before)
    assert _main("image", folder / "in.png", "-o", folder / "out.png", "--overwrite", "--size", "64") == 0
    _expect(folder, before, replaced={"out.png"})


def test_overwrite_keeps_the_replaced_files_permissions(tmp_path, photo_bytes):
    """An output kept private (0600) became readable by everyone (0644)
    once written again with --overwrite: the new file takes the replaced
    file's permissions (CLI outputs, and the animation and text writers);
    a new output gets the usual mode."""
    from avatarizer.animation import write_text_atomic

    photo = tmp_path / "in.png"
    photo.write_bytes(photo_bytes)
    out, text = tmp_path / "out.png", tmp_path / "notes.json"
    for path, mode in ((out, 0o600), (text, 0o640)):
        path.write_bytes(b"mine")
        path.chmod(mode)
    assert _main("image", photo, "-o", out, "--overwrite", "--size", "64") == 0
    write_text_atomic(text, "{}", overwrite=True)
    assert (stat.S_IMODE(out.stat().st_mode), stat.S_IMODE(text.stat().st_mode)) == (0o600, 0o640)
    assert out.read_bytes() != b"mine" and text.read_text() == "{}"
    new = tmp_path / "new.png"
    assert _main("image", photo, "-o", new, "--size", "64") == 0
    umask = os.umask(0o022)
    os.umask(umask)
    assert stat.S_IMODE(new.stat().st_mode) == 0o666 & ~umask


def test_an_output_that_appears_meanwhile_is_not_replaced(tmp_path, monkeypatch):
    """Without --overwrite the final step is os.link, which fails on an existing name."""
    from avatarizer import cli

    out = tmp_path / "o.png"
    tmp = cli._temp_beside(out, ".png")
    tmp.write_bytes(b"new")
    out.write_bytes(b"appeared meanwhile")
    with pytest.raises(cli.CLIError, match="appeared"):
        cli._commit(tmp, out, overwrite=False)
    cli._cleanup_temps()
    assert out.read_bytes() == b"appeared meanwhile" and not tmp.exists()


def test_outputs_moved_together_are_moved_all_or_none(tmp_path, monkeypatch):
    """``video -o OUT.mp4 --params OUT.jsonl``: when the second output
    appears between the two moves, the first is taken back (it is this
    run's: nothing was there), so the message that nothing was written is
    true; what appeared is left alone."""
    from avatarizer import cli

    a, b = tmp_path / "o.mp4", tmp_path / "o.jsonl"
    ta, tb = cli._temp_beside(a, ".mp4"), cli._temp_beside(b, ".jsonl")
    ta.write_bytes(b"video")
    tb.write_bytes(b"params")
    real = cli._place

    def place(tmp, out, overwrite):
        if out == b:
            b.write_bytes(b"appeared between the moves")
        real(tmp, out, overwrite)

    monkeypatch.setattr(cli, "_place", place)
    with pytest.raises(cli.CLIError, match="o.jsonl appeared.*nothing was written"):
        cli._commit_all([(ta, a), (tb, b)], overwrite=False)
    cli._cleanup_temps()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["o.jsonl"]
    assert b.read_bytes() == b"appeared between the moves"


# ---------------------------------------------------------------- defect 8: no raw tracebacks
def test_cli_errors_are_one_line_not_tracebacks(tmp_path, photo_bytes, clip_bytes, capsys):
    folder = _user_folder(tmp_path, {"in.png": photo_bytes, "in.mp4": clip_bytes, "afile": b"x"})
    before = _snapshot(folder)
    cases = [
        ("image", folder / "in.png", "-o", folder / "afile" / "out.png"),  # output under a regular file
        ("video", folder / "in.mp4", "-o", folder / "afile" / "out.mp4"),
        ("image", folder, "-o", folder / "o.png"),  # a folder as input
        ("image", folder / "missing.png", "-o", folder / "o.png"),
    ]
    for argv in cases:
        assert _main(*argv) == 1, argv
        err = capsys.readouterr().err
        assert "Traceback" not in err and err.strip().count("\n") == 0 and "error:" in err, (argv, err)
    for bad in ("inf", "nan"):  # bad values are usage errors (exit 2)
        with pytest.raises(SystemExit) as exc:
            _main("video", folder / "in.mp4", "-o", folder / "o.mp4", "--max-seconds", bad)
        assert exc.value.code == 2 and "--max-seconds" in capsys.readouterr().err
    _expect(folder, before)


# ---------------------------------------------------------------- library log lines off stderr (review, session 15)
#: The environment of a user who asked for nothing: the libraries' own log settings unset.
_PLAIN = {k: v for k, v in ENV.items() if k not in ("AVATARIZER_LIBRARY_LOGS", "OPENCV_LOG_LEVEL")}

_LIVE_WITHOUT_A_WINDOW = """
import sys
import avatarizer.live
avatarizer.live.display_problem = lambda *a, **k: None  # (no window is reached: the camera does not open)
from avatarizer.cli import main
sys.exit(main(["live", sys.argv[1]]))
"""


def test_opencv_log_lines_are_kept_off_stderr():
    """``live`` on a camera that is not there said its one line after
    OpenCV's own ``[ WARN:0@0.19] global cap_v4l.cpp:913 ...`` and
    ``[ERROR:0@0.19] global obsensor_uvc_stream_channel.cpp:158
    getStreamChannelGroup Camera index out of range``."""
    index = next((i for i in range(9, 64) if not os.path.exists(f"/dev/video{i}")), None)
    if index is None:  # pragma: no cover
        pytest.skip("every camera index has a device")
    argv = [sys.executable, "-c", _LIVE_WITHOUT_A_WINDOW, str(index)]
    proc = subprocess.run(argv, capture_output=True, text=True, env=_PLAIN, timeout=120)
    assert proc.returncode == 1
    assert proc.stderr.splitlines() == [f"avatarizer live: error: could not open camera {index} (no such camera, "
                                        "or it is in use)"], proc.stderr
    shown = subprocess.run(argv, capture_output=True, text=True, env=dict(_PLAIN, AVATARIZER_LIBRARY_LOGS="1"),
                           timeout=120)
    if "global " not in shown.stderr:  # pragma: no cover - an OpenCV build that says nothing here
        pytest.skip("this OpenCV logs nothing for a missing camera")
    assert shown.returncode == 1 and shown.stderr.strip().splitlines()[-1].startswith("avatarizer live: error:")


def test_a_library_warning_is_kept_off_stderr(tmp_path):
    """A JPEG whose EXIF block is cut short: Pillow warns ``UserWarning:
    Corrupt EXIF data`` (with its source line) while the orientation is read;
    the command succeeded and printed that on stderr."""
    photo = tmp_path / "cut_exif.jpg"
    Image.fromarray(skdata.astronaut()).resize((256, 256)).save(
        photo, exif=b"Exif\x00\x00II*\x00\x08\x00\x00\x00\x05\x00\x12\x01\x03")
    with pytest.warns(UserWarning, match="Corrupt EXIF"):
        Image.open(photo).getexif()
    proc = subprocess.run(CLI + ["image", str(photo), "-o", str(tmp_path / "o.png"), "--estimator", "artist"],
                          capture_output=True, text=True, env=_PLAIN, timeout=300)
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr
    assert proc.stdout.strip() == f"wrote {tmp_path / 'o.png'}"


def test_warnings_during_a_command_go_to_logging_and_avatarizers_own_are_one_line(capsys, caplog, monkeypatch):
    import logging
    import warnings

    import avatarizer
    from avatarizer.logfilter import QuietLibraries

    monkeypatch.delenv("AVATARIZER_LIBRARY_LOGS", raising=False)
    ours = os.path.join(os.path.dirname(avatarizer.__file__), "imageio.py")
    theirs = os.path.join(os.path.dirname(Image.__file__), "TiffImagePlugin.py")
    quiet = QuietLibraries()
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        before = warnings.showwarning
        quiet.start("avatarizer image")
        try:
            with caplog.at_level(logging.WARNING, logger="py.warnings"):
                warnings.warn_explicit("Corrupt EXIF data.  Expecting 12 bytes", UserWarning, theirs, 982)
                warnings.warn_explicit("a thing\n  the SDK says", UserWarning, ours, 1)
        finally:
            quiet.stop()
        assert warnings.showwarning is before
    err = capsys.readouterr().err
    assert err == "avatarizer image: warning: a thing the SDK says\n"
    assert [r.name for r in caplog.records] == ["py.warnings"] and "Corrupt EXIF" in caplog.records[0].getMessage()


def test_bench_cuda_without_cuda_is_one_line(capsys):
    import onnxruntime as ort

    if "CUDAExecutionProvider" in ort.get_available_providers():
        pytest.skip("this onnxruntime has CUDA")
    assert _main("bench", "--device", "cuda", "--frames", "1", "--warmup", "0") == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err and "error: device='cuda'" in err


def test_bench_fp32_says_what_ships_and_how_to_build_it_in_one_line(capsys):
    """The package ships int8 and fp16 ONNX files only; --precision fp32
    said only that no fp32 model was listed."""
    assert _main("bench", "--precision", "fp32", "--frames", "1", "--warmup", "0") == 1
    err = capsys.readouterr().err.strip().splitlines()
    last = err[-1]
    assert last.startswith("avatarizer bench: error:") and "Traceback" not in "".join(err), err
    assert "ships int8 and fp16 ONNX files, no fp32" in last and "make models" in last and "runs/export" in last


def test_tensorrt_without_engines_says_how_to_build_them():
    """(On a machine with a GPU, ``--backend tensorrt`` gets this far.)"""
    from avatarizer.errors import ModelError
    from avatarizer.pipeline.config import face_entries
    from avatarizer.runtime import DEFAULT_FOLDER, Manifest

    manifest = Manifest.load(DEFAULT_FOLDER, verify=False)
    if any(e.kind == "engine" for e in manifest.models.values()):  # pragma: no cover
        pytest.skip("this checkout has TensorRT engines")
    with pytest.raises(ModelError) as exc:
        face_entries(manifest, "image_to_face", "tensorrt", "auto", "cuda")
    text = str(exc.value)
    assert "\n" not in text and "no TensorRT engines: `avatarizer-export tensorrt` builds them" in text


def test_read_only_output_folder_as_a_normal_user(tmp_path, photo_bytes):
    """Run as ``nobody`` when the tests run as root (root may write anywhere)."""
    import tempfile

    # outside tmp_path (0700, which 'nobody' cannot enter); a new name each run, never one made
    # from the pid, which repeats (a container's pid namespace) and may be left by a killed run
    folder = Path(tempfile.mkdtemp(prefix="avz-ro-"))
    try:
        (folder / "in.png").write_bytes(photo_bytes)
        ro = folder / "ro"
        ro.mkdir()
        (ro / "keep.txt").write_text("mine")
        folder.chmod(0o755)
        ro.chmod(0o555)
        preexec = None
        if os.geteuid() == 0:
            import pwd

            try:
                uid = pwd.getpwnam("nobody").pw_uid
            except KeyError:
                pytest.skip("no user 'nobody' to drop root to")
            preexec = lambda: os.setuid(uid)  # noqa: E731
        before = _snapshot(folder)
        try:
            res = subprocess.run(CLI + ["image", str(folder / "in.png"), "-o", str(ro / "out.png")],
                                 capture_output=True, text=True, timeout=300, env=ENV, preexec_fn=preexec)
        except PermissionError as exc:
            pytest.skip(f"'nobody' cannot run this Python ({exc}); see the in-process test below")
        assert res.returncode == 1, res.stderr[-2000:]
        assert "Traceback" not in res.stderr and "permission denied" in res.stderr.lower()
        assert _snapshot(folder) == before
    finally:
        for p in (folder / "ro", folder):
            p.chmod(0o755)
        shutil.rmtree(folder, ignore_errors=True)


def test_unwritable_output_folder_in_process(tmp_path, photo_bytes, monkeypatch, capsys):
    """The same refusal when the folder check passes but creating the file fails
    (what a read-only folder does to a normal user; root passes os.access)."""
    import tempfile

    def refuse(*a, **k):
        raise PermissionError(13, "Permission denied", k.get("dir"))

    folder = _user_folder(tmp_path, {"in.png": photo_bytes})
    before = _snapshot(folder)
    monkeypatch.setattr(tempfile, "mkstemp", refuse)
    assert _main("image", folder / "in.png", "-o", folder / "out.png", "--size", "64") == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err and "Permission denied" in err and err.strip().count("\n") == 0
    _expect(folder, before)


# ---------------------------------------------------------------- defect 10: named pipes
@pytest.mark.parametrize("command,out", [("image", "o.png"), ("video", "o.mp4"), ("animate", "o.json")])
def test_named_pipe_input_is_refused_not_waited_on(tmp_path, command, out):
    fifo = tmp_path / {"image": "in.png", "video": "in.mp4", "animate": "in.jsonl"}[command]
    os.mkfifo(fifo)
    argv = [command, "--params", str(fifo)] if command == "animate" else [command, str(fifo)]
    res = subprocess.run(CLI + argv + ["-o", str(tmp_path / out)], capture_output=True,
                         text=True, timeout=120, env=ENV)
    assert res.returncode == 1 and "not a regular file" in res.stderr, res.stderr[-2000:]
    assert stat.S_ISFIFO(fifo.stat().st_mode) and not (tmp_path / out).exists()


# ---------------------------------------------------------------- defect 9: interrupts
def _wait_for(pred, timeout: float) -> bool:
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if pred():
            return True
        time.sleep(0.05)
    return False


def test_sigterm_mid_run_leaves_nothing_behind(tmp_path):
    # the longest clip (1,008 frames): the 78 frames of d0 were sometimes all
    # done within the half second below, and the run ended before the signal
    clip = need_shared("data", "video", "d6.mp4")
    folder = _user_folder(tmp_path, {"in.mp4": clip.read_bytes(), "out.partial.mp4": b"decoy"})
    before = _snapshot(folder)
    proc = subprocess.Popen(CLI + ["video", str(folder / "in.mp4"), "-o", str(folder / "out.mp4")],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV)
    try:
        # a temporary file appears once frames are being written
        assert _wait_for(lambda: any(p.name.startswith(".avatarizer-") for p in folder.iterdir()), 120)
        time.sleep(0.5)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 128 + signal.SIGTERM, err[-2000:]
    assert "Traceback" not in err
    _expect(folder, before)


def test_ctrl_c_while_the_encoder_hangs_leaves_nothing_behind(tmp_path, clip_bytes):
    """A stand-in ffmpeg that starts writing its output, then hangs without
    reading its input: the frames back up and Ctrl-C lands in a blocked write."""
    bindir = tmp_path / "bin"
    bindir.mkdir()
    fake = bindir / "ffmpeg"
    # (the output comes last, as a file: URL)
    fake.write_text('#!/bin/sh\nfor last; do :; done\necho partial > "${last#file:}"\nexec sleep 60\n')
    fake.chmod(0o755)
    folder = _user_folder(tmp_path, {"in.mp4": clip_bytes, "out.muxed.partial.mp4": b"decoy"})
    before = _snapshot(folder)
    env = dict(ENV, PATH=f"{bindir}{os.pathsep}{ENV.get('PATH', '')}")
    # Ctrl-C's default action, even when the suite itself runs with SIGINT ignored (a background job of
    # a non-interactive shell, nohup): children inherit an ignored signal and Python keeps it ignored
    proc = subprocess.Popen(CLI + ["video", str(folder / "in.mp4"), "-o", str(folder / "out.mp4")],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        def started():
            temps = [p for p in folder.iterdir() if p.name.startswith(".avatarizer-")]
            return len(temps) == 1 and temps[0].read_bytes() == b"partial\n"
        assert _wait_for(started, 120), "the encoder never started"
        time.sleep(1.0)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 130, err[-2000:]
    _expect(folder, before)


_CTRL_C_IN_IMPORT = """
import argparse, sys
from avatarizer import cli

def probe(args):
    import ctrl_c_while_loading  # Ctrl-C arrives while this module loads
    if CHECK:
        cli._check_stop()
    print("not stopped")
    return 0

def parser():
    ap = argparse.ArgumentParser(prog="avatarizer")
    sub = ap.add_subparsers(dest="command")
    sub.add_parser("probe").set_defaults(func=probe)
    return ap

CHECK = sys.argv[1:] == ["check"]  # else the command never checks again after the import
cli.build_parser = parser
sys.exit(cli.main(["probe"]))
"""


@pytest.mark.parametrize("check", ["check", "no-check"])
def test_ctrl_c_inside_an_import_exits_130_with_one_line(tmp_path, check):
    """Ctrl-C while the models' libraries load (an encoder is started before
    them): Python's KeyboardInterrupt escaping code made from source text there
    (a dataclass being made) made CPython end the process by SIGINT (status -2,
    not 130) whatever main returned; inside MediaPipe's import it became
    "ImportError: initialization failed" (status 1 and a traceback)."""
    (tmp_path / "ctrl_c_while_loading.py").write_text(
        "import os, signal\n"
        "exec('os.kill(os.getpid(), signal.SIGINT)\\nfor _ in range(10000): pass')\n")
    (tmp_path / "ctrl_c_probe.py").write_text(_CTRL_C_IN_IMPORT)
    env = dict(ENV, PYTHONPATH=os.pathsep.join([str(tmp_path), ENV.get("PYTHONPATH", "")]))
    # run with -m, as the CLI is (python -c would exit through SystemExit before CPython's check)
    proc = subprocess.run([sys.executable, "-m", "ctrl_c_probe", check], capture_output=True, text=True, env=env,
                          timeout=120, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    assert proc.returncode == 130, proc.stderr[-2000:]
    assert proc.stderr.strip().splitlines()[-1] == "avatarizer probe: interrupted"
    assert "Traceback" not in proc.stderr
    # checked: stops there; never checked again in the command: stops once it returns (it returned 0 before)
    assert ("not stopped" in proc.stdout) == (check == "no-check")


def test_an_encoder_that_fails_is_one_line_and_leaves_nothing(tmp_path, clip_bytes, capsys, monkeypatch):
    bindir = tmp_path / "bin"
    bindir.mkdir()
    fake = bindir / "ffmpeg"
    fake.write_text('#!/bin/sh\necho "Unknown encoder libx264" >&2\nexit 1\n')
    fake.chmod(0o755)
    folder = _user_folder(tmp_path, {"in.mp4": clip_bytes})
    before = _snapshot(folder)
    monkeypatch.setenv("PATH", f"{bindir}{os.pathsep}{os.environ.get('PATH', '')}")
    assert _main("video", folder / "in.mp4", "-o", folder / "out.mp4") == 1
    err = capsys.readouterr().err
    assert "Unknown encoder libx264" in err.strip().splitlines()[-1] and "Traceback" not in err
    _expect(folder, before)


# ---------------------------------------------------------------- defect 13: truncated video
def test_truncated_video_says_so_and_exits_3(tmp_path, clip_bytes, capsys):
    if not shutil.which("ffmpeg"):
        pytest.skip("ffmpeg is not installed (make sysdeps)")
    src = tmp_path / "src.mp4"
    src.write_bytes(clip_bytes)
    fast = tmp_path / "fast.mp4"  # index first, so a cut file still opens and announces 12 frames
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-i", str(src), "-c", "copy", "-movflags", "+faststart",
                    str(fast)], check=True)
    data = fast.read_bytes()
    folder = _user_folder(tmp_path, {"cut.mp4": data[: len(data) // 2], "whole.mp4": data})
    before = _snapshot(folder)
    assert _main("video", folder / "cut.mp4", "-o", folder / "cut_out.mp4") == 3
    err = capsys.readouterr().err
    assert "of the 12 frames" in err and "truncated" in err
    _expect(folder, before, new={"cut_out.mp4"})
    assert _main("video", folder / "whole.mp4", "-o", folder / "whole_out.mp4") == 0
    assert "truncated" not in capsys.readouterr().err


def test_render_samples_needs_overwrite_and_failed_runs_leave_no_folders(tmp_path, capsys):
    folder = _user_folder(tmp_path, {"g.png": b"my picture", "blank.png": b""})
    Image.fromarray(np.zeros((64, 64, 3), np.uint8)).save(folder / "blank.png")
    before = _snapshot(folder)
    assert _main("render-samples", "-n", "2", "--size", "32", "-o", folder / "g.png") == 1
    assert "--overwrite" in capsys.readouterr().err
    _expect(folder, before)
    assert _main("render-samples", "-n", "2", "--size", "32", "-o", folder / "g.png", "--overwrite") == 0
    _expect(folder, before, replaced={"g.png"})
    # a run that fails removes the folders it made for its output (only those, only when empty)
    before = _snapshot(folder)
    assert _main("image", folder / "blank.png", "-o", folder / "new" / "sub" / "o.png") == 1
    assert "no face" in capsys.readouterr().err
    assert not (folder / "new").exists()
    _expect(folder, before)
    assert _main("render-samples", "-n", "1", "--size", "32", "-o", folder / "made" / "g.png") == 0
    assert (folder / "made" / "g.png").is_file()


@pytest.mark.parametrize("via", ["dotdot", "link"])
def test_a_failed_run_removes_only_the_folders_it_made(tmp_path, monkeypatch, via, capsys):
    """``-o newsub/../keepme/x.png``: the path as typed names ``keepme``
    through a folder that does not exist yet, so ``keepme`` looked missing
    before the run made ``newsub``; a failed run removed the user's empty
    ``keepme``. Only the folders the run itself made go (``newsub``; through
    a link, the one made where the link points)."""
    folder = _user_folder(tmp_path, {"bad.png": b"hello"})
    (folder / "keepme").mkdir()
    for sub in ("inner", "keep"):
        (folder / "elsewhere" / sub).mkdir(parents=True)
    monkeypatch.chdir(folder)
    if via == "dotdot":
        out = "newsub/../keepme/x.png"
    else:  # link/.. is elsewhere (the OS follows the link first), not the folder the link is in
        os.symlink("elsewhere/inner", "link")
        out = "link/../newsub/../keep/x.png"
    assert _main("image", "bad.png", "-o", out) == 1
    assert "Traceback" not in capsys.readouterr().err
    assert sorted(p.name for p in folder.iterdir()) == sorted(["bad.png", "keepme", "elsewhere"]
                                                             + (["link"] if via == "link" else []))
    assert sorted(p.name for p in (folder / "elsewhere").iterdir()) == ["inner", "keep"]


def test_a_stop_signal_inside_an_import_waits_for_the_next_check():
    """A SIGTERM whose exception would be raised inside an import is kept
    (libraries print and drop it there, or turn it into an ImportError) and
    raised at the next check (models loaded, every frame)."""
    import sys
    from types import SimpleNamespace

    from avatarizer import cli

    def frame(filename, back=None):
        return SimpleNamespace(f_code=SimpleNamespace(co_filename=filename), f_back=back)

    cli._STOP.clear()
    try:
        cli._on_signal(signal.SIGTERM, frame("/x/protobuf/descriptor_pool.py",
                                             frame("<frozen importlib._bootstrap>", frame("/x/cli.py"))))
        assert cli._STOP == [signal.SIGTERM]
        with pytest.raises(cli._Signalled) as got:
            cli._check_stop()
        assert got.value.signum == signal.SIGTERM
        cli._STOP.clear()
        cli._check_stop()  # nothing pending: no-op
        with pytest.raises(cli._Signalled):  # anywhere else: at once
            cli._on_signal(signal.SIGHUP, sys._getframe())
    finally:
        cli._STOP.clear()


# ---------------------------------------------------------------- demo: the same rules as the other commands
def test_demo_never_replaces_files_without_overwrite_nor_writes_through_links(tmp_path, capsys):
    outside = tmp_path / "outside.png"
    outside.write_bytes(b"not the demo's")
    folder = _user_folder(tmp_path, {"default.svg": b"<svg>mine</svg>", "notes.txt": b"keep"})
    (folder / "default.png").symlink_to(outside)
    before = _snapshot(folder)
    assert _main("demo", "-o", folder) == 1
    err = capsys.readouterr().err
    assert "already exists" in err and "--overwrite" in err and "Traceback" not in err
    _expect(folder, before)
    assert outside.read_bytes() == b"not the demo's"
    # with --overwrite the files are replaced, a link by a file: never written through
    assert _main("demo", "-o", folder, "--overwrite") == 0, capsys.readouterr().err
    assert outside.read_bytes() == b"not the demo's"
    assert not (folder / "default.png").is_symlink()
    assert Image.open(folder / "default.png").size == (512, 512)
    assert (folder / "notes.txt").read_bytes() == b"keep"
    assert not [p.name for p in folder.iterdir() if p.name.startswith(".")]


def test_demo_writes_all_six_files_or_none(tmp_path, monkeypatch, capsys):
    """An interrupted demo (SIGTERM after 1.6 s) left gallery.png and the
    default face behind, each moved into place as it was made, and the next
    run without --overwrite refused: the six are moved together at the end."""
    from avatarizer import cli

    folder = tmp_path / "demo"
    for stop in (KeyboardInterrupt, None):  # (a stop signal while the portrait is done; no face found)
        def fail(temps, stop=stop):
            if stop is not None:
                raise stop
            return None

        monkeypatch.setattr(cli, "_demo_photo", fail)
        if stop is None:
            assert _main("demo", "-o", folder) == 1
        else:
            with pytest.raises(KeyboardInterrupt):
                cli._demo(cli.build_parser().parse_args(["demo", "-o", str(folder)]))
        assert not folder.exists() or not list(folder.iterdir()), list(folder.iterdir())
    monkeypatch.undo()
    assert _main("demo", "-o", folder) == 0, capsys.readouterr().err
    assert sorted(p.name for p in folder.iterdir()) == sorted(cli._DEMO_FILES)


def test_a_missing_system_library_is_one_line_naming_the_packages(tmp_path, monkeypatch, capsys):
    """OpenCV's import on a machine without libGL (a minimal image): the CLI
    printed cv2's ImportError as a traceback (a review, session 72); it is one
    line naming the library and the packages. Another ImportError is not
    hidden."""
    from avatarizer import cli

    def no_gl(temps):
        raise ImportError("libGL.so.1: cannot open shared object file: No such file or directory")

    monkeypatch.setattr(cli, "_demo_photo", no_gl)
    assert _main("demo", "-o", tmp_path / "d") == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err and "libGL.so.1" in err and "libgl1 libglib2.0-0" in err, err

    def no_cairo(temps):  # (another library: named, without OpenCV's packages)
        raise ImportError("libcairo.so.2: cannot open shared object file: No such file or directory")

    monkeypatch.setattr(cli, "_demo_photo", no_cairo)
    assert _main("demo", "-o", tmp_path / "d") == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "libcairo.so.2" in err and "libgl1" not in err, err

    def other(temps):
        raise ImportError("No module named 'something_else'")

    monkeypatch.setattr(cli, "_demo_photo", other)
    with pytest.raises(ImportError, match="something_else"):
        _main("demo", "-o", tmp_path / "d")


# ---------------------------------------------------------------- stdout's reader gone (QA, session 25)
@pytest.mark.skipif(not hasattr(signal, "SIGPIPE"), reason="no SIGPIPE on this platform")
def test_a_closed_stdout_ends_quietly_with_the_output_written(tmp_path, photo_bytes):
    """``avatarizer image ... --attributes | true``: the reader is gone before
    the attributes are printed. The command ends as a tool killed by SIGPIPE
    reports (141), says nothing (it said "error: Broken pipe" and exited 1),
    and the PNG it wrote stays. stdout is a pipe, so block-buffered: the
    error comes at the flush (it came at the exit's flush, status 120, with
    the buffered lines still unwritten when the command returned)."""
    (tmp_path / "in.png").write_bytes(photo_bytes)
    out = tmp_path / "out.png"
    r, w = os.pipe()
    os.close(r)  # no reader at all: the first write to stdout fails
    try:
        proc = subprocess.run([sys.executable, "-c", "import sys; from avatarizer.cli import main; sys.exit(main())",
                               "image", str(tmp_path / "in.png"), "-o", str(out), "--attributes"],
                              stdout=w, stderr=subprocess.PIPE, timeout=300,
                              env={k: v for k, v in ENV.items() if k != "PYTHONUNBUFFERED"})  # (a user's: buffered)
    finally:
        os.close(w)
    err = proc.stderr.decode(errors="replace")
    assert proc.returncode == 128 + signal.SIGPIPE, (proc.returncode, err)
    assert "Broken pipe" not in err and "Traceback" not in err, err
    assert out.is_file() and out.stat().st_size > 1000


def test_a_command_started_with_stdout_closed_works(tmp_path, photo_bytes):
    """``avatarizer image in.png -o out.png >&-``: Python starts with
    ``sys.stdout`` None; the PNG was written, then the flush after the
    command raised AttributeError with a traceback (exit 1)."""
    (tmp_path / "in.png").write_bytes(photo_bytes)
    out = tmp_path / "out.png"
    proc = subprocess.run(["sh", "-c", f'"{sys.executable}" -m avatarizer.cli image in.png -o out.png --attributes >&-'],
                          cwd=tmp_path, stderr=subprocess.PIPE, timeout=300, env=ENV)
    err = proc.stderr.decode(errors="replace")
    assert proc.returncode == 0 and "Traceback" not in err, (proc.returncode, err)
    assert out.is_file() and out.stat().st_size > 1000


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no named pipes on this platform")
def test_overwrite_never_replaces_a_named_pipe_at_the_output(tmp_path, photo_bytes, clip_bytes, capsys):
    """``--overwrite`` replaces files, not a named pipe (or a device node)
    that holds the output's name: another program may be reading the pipe
    (QA, session 25: it was unlinked and a file put in its place)."""
    (tmp_path / "in.png").write_bytes(photo_bytes)
    (tmp_path / "in.mp4").write_bytes(clip_bytes)
    for argv in (("image", tmp_path / "in.png", "-o", tmp_path / "o.png"),
                 ("video", tmp_path / "in.mp4", "-o", tmp_path / "o.mp4"),
                 ("video", tmp_path / "in.mp4", "-o", tmp_path / "v.mp4", "--params", tmp_path / "p.jsonl")):
        fifo = argv[-1]
        os.mkfifo(fifo)
        assert _main(*argv, "--overwrite") == 1, argv
        err = capsys.readouterr().err
        assert "not a regular file" in err and "Traceback" not in err, err
        assert stat.S_ISFIFO(os.lstat(fifo).st_mode), argv
    assert not (tmp_path / "v.mp4").exists()  # the outputs go together or not at all


def test_a_sheet_too_wide_for_its_format_is_refused_before_drawing(tmp_path, capsys, monkeypatch):
    """``render-samples -n 97 --size 975 -o x.webp``: under the pixel limit,
    but wider than WebP's 16383 pixels a side: every avatar was drawn, then
    the encoder refused ("encoding error 5"). A usage error now, first; the
    same sheet as a .png is not refused for it."""
    import avatarizer.gallery as G

    drawn = []
    monkeypatch.setattr(G, "gallery", lambda *a, **k: drawn.append(1))
    assert _main("render-samples", "-n", "97", "--size", "975", "-o", tmp_path / "x.webp") == 2
    err = capsys.readouterr().err
    assert "16383 pixels a side" in err and ".png" in err and drawn == []
    w, h = G.sheet_size(97, 975)
    assert max(w, h) > 16383 and w * h <= G.MAX_SHEET_PIXELS  # (the case: only the format's limit refuses it)
    assert not (tmp_path / "x.webp").exists()


def test_an_error_naming_a_file_with_a_line_break_is_one_line(tmp_path, capsys, monkeypatch):
    """``avatarizer image $'x\\ny.jpg'``: the error named the file as it is and
    came out on two lines; the line break is shown escaped."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "x\ny.jpg").write_bytes(b"garbage")
    assert _main("image", "x\ny.jpg", "-o", tmp_path / "o.png") == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "x\\ny.jpg" in err, err


def test_an_output_name_ending_in_a_separator_is_refused(tmp_path, capsys):
    """`-o dir.png/` wrote a file dir.png (Path() drops the slash)."""
    from avatarizer.cli import main

    photo = tmp_path / "p.png"
    from PIL import Image

    from avatarizer.imageio import sample_photo

    Image.fromarray(sample_photo()).save(photo)
    assert main(["image", str(photo), "-o", str(tmp_path / "dir.png") + os.sep]) == 2
    assert "ends with a path separator" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["p.png"]
    # `-o old.png/.` (a folder to the system, old.png to Path()) replaced old.png with --overwrite
    (tmp_path / "old.png").write_bytes(b"keep")
    for tail in (".", ".."):
        assert main(["image", str(photo), "-o", str(tmp_path / "old.png") + os.sep + tail, "--overwrite"]) == 2
        assert "a '.' or '..' part" in capsys.readouterr().err
    assert (tmp_path / "old.png").read_bytes() == b"keep"


@pytest.mark.skipif(not os.path.isdir("/proc/self"), reason="needs /proc (a folder nobody can write a file into)")
def test_an_unwritable_output_folder_is_refused_before_any_work(tmp_path, photo_bytes, capsys, monkeypatch):
    """``os.access`` says yes to root on /proc or a read-only mount: ``image``
    (and ``video``, over a whole clip) ran the models before the write
    failed; a file is tried in the output's folder first."""
    from avatarizer import api

    src = tmp_path / "a.png"
    src.write_bytes(photo_bytes)

    def no_model(*a, **k):
        raise AssertionError("the models were loaded for an output that cannot be written")

    monkeypatch.setattr(api, "Avatarizer", no_model)
    assert _main("image", src, "-o", "/proc/avz-out.png") == 1
    err = capsys.readouterr().err
    assert "cannot write /proc/avz-out.png" in err and "Traceback" not in err, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.png"]


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full (a device whose writes fail)")
def test_stdout_that_cannot_be_written_says_so_and_the_output_stays(tmp_path):
    """stdout on a full disk (``> /dev/full``): the command said only "No
    space left on device" (exit 1), read as the output's own write failing,
    the output written (helper-450). Now it says stdout could not be
    written; the file is in place; exit 1. Buffered or not."""
    photo = tmp_path / "in.png"
    Image.fromarray(skdata.astronaut()).resize((256, 256)).save(photo)
    for unbuffered in ("1", ""):
        out = tmp_path / f"o{unbuffered}.png"
        env = dict(_PLAIN, PYTHONUNBUFFERED=unbuffered) if unbuffered else \
            {k: v for k, v in _PLAIN.items() if k != "PYTHONUNBUFFERED"}
        with open("/dev/full", "w") as full:
            proc = subprocess.run(CLI + ["image", str(photo), "-o", str(out), "--estimator", "artist"],
                                  stdout=full, stderr=subprocess.PIPE, text=True, env=env, timeout=300)
        assert proc.returncode == 1 and out.is_file(), proc.stderr
        assert proc.stderr.strip() == ("avatarizer image: error: its messages could not be written to stdout "
                                       "(No space left on device); what it wrote before that is in place"), proc.stderr


def test_an_output_folder_that_is_a_link_loop_says_so(tmp_path, capsys):
    """An output under a link that loops: "Too many levels of symbolic
    links", as the input side says of one (it said "Not a directory";
    helper-450); a file where a folder belongs says that."""
    from avatarizer.cli import main

    photo = tmp_path / "in.png"
    Image.fromarray(skdata.astronaut()).resize((128, 128)).save(photo)
    (tmp_path / "loopA").symlink_to(tmp_path / "loopB")
    (tmp_path / "loopB").symlink_to(tmp_path / "loopA")
    (tmp_path / "afile").write_text("x")
    for folder, says in (("loopA", f"cannot create the folder {tmp_path / 'loopA'}: Too many levels of symbolic links"),
                         ("afile", f"cannot write {tmp_path / 'afile' / 'x.png'}: {tmp_path / 'afile'} is a file, "
                                   "not a folder")):
        capsys.readouterr()
        assert main(["image", str(photo), "-o", str(tmp_path / folder / "x.png"), "--estimator", "artist"]) == 1
        err = capsys.readouterr().err.strip()
        assert err == f"avatarizer image: error: {says}", err


def test_a_corrupt_installed_schema_is_one_line_from_every_command(tmp_path):
    """A broken install (``data/schema.json`` cut short): every command,
    ``--version`` too, died with a traceback at the import, before the CLI
    could catch the ModelError (a review, session 71). Now ``--version``
    works, every other command says it in one line (exit 1), and the API
    raises the ModelError where the schema is used."""
    import avatarizer

    pkg = tmp_path / "avatarizer"
    shutil.copytree(Path(avatarizer.__file__).parent, pkg, ignore=shutil.ignore_patterns("models", "__pycache__"))
    schema = pkg / "data" / "schema.json"
    schema.write_bytes(schema.read_bytes()[:1000])
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    run = "import sys; from avatarizer.cli import main; sys.exit(main(sys.argv[1:]))"

    def cli(*argv):
        res = subprocess.run([sys.executable, "-c", run, *argv], capture_output=True, text=True, env=env,
                             cwd=tmp_path, timeout=120)
        return res.returncode, res.stdout, res.stderr

    rc, out, err = cli("--version")
    assert rc == 0 and out.startswith("avatarizer ") and not err, (rc, err)
    for argv in (["image", "x.jpg"], ["demo", "-o", str(tmp_path / "d")], ["render-samples", "-o", "s.png"]):
        rc, out, err = cli(*argv)
        assert rc == 1 and "schema.json" in err and "reinstall" in err and err.count("\n") == 1, (argv, rc, err)
        assert "Traceback" not in err
    res = subprocess.run([sys.executable, "-c", "import avatarizer; avatarizer.Avatarizer"], capture_output=True,
                         text=True, env=env, cwd=tmp_path, timeout=120)
    assert res.returncode == 1 and "ModelError" in res.stderr and "schema.json" in res.stderr


def test_with_stderr_closed_nothing_goes_to_stdout(tmp_path):
    """Started with stderr closed (``2>&-``), the one-line errors and
    argparse's usage went to stdout (``print(file=None)`` writes there); they
    go nowhere, and the exit status says what happened."""
    def run(*args):
        return subprocess.run([sys.executable, "-m", "avatarizer.cli", *map(str, args)], stdout=subprocess.PIPE,
                              preexec_fn=lambda: os.close(2), cwd=tmp_path, timeout=120,
                              env=dict(os.environ, GLOG_minloglevel="2"))

    missing = run("image", tmp_path / "missing.png", "-o", tmp_path / "o.png")
    usage = run("render-samples", "-n", "0")
    assert (missing.returncode, usage.returncode) == (1, 2)
    assert missing.stdout == b"" and usage.stdout == b"", (missing.stdout, usage.stdout)


def test_a_line_break_in_an_output_name_is_shown_escaped_on_success_too(tmp_path, capsys):
    """The "wrote" line shows a line break in the file's name escaped, as the
    error lines do (it was printed as it is: one line became two)."""
    from avatarizer import cli

    out = tmp_path / "a\nb.png"
    assert cli.main(["render-samples", "-n", "1", "--size", "32", "-o", str(out)]) == 0
    said = capsys.readouterr().out
    assert out.is_file() and said.count("\n") == 1 and "a\\nb.png" in said, said



def test_a_user_given_name_is_quoted_short_in_an_error(tmp_path, capsys):
    """A 100,000-character name in `-o`, `--params` or a number's place was
    quoted whole: a 100 KB error line (a review, session 77)."""
    from avatarizer.cli import main

    long = "y" * 100_000
    for argv in (["image", "p.jpg", "-o", str(tmp_path / f"x.{long}")],
                 ["image", "p.jpg", "-o", str(tmp_path / long) + "/."],
                 ["video", "v.mp4", "-o", str(tmp_path / "v.mp4"), "--params", str(tmp_path / f"{long}.txt")],
                 ["image", "p.jpg", "-o", str(tmp_path / "a.png"), "--size", long]):
        with pytest.raises(SystemExit) if argv[-2] == "--size" else contextlib.nullcontext():
            main(argv)
        err = capsys.readouterr().err
        assert err and max(len(line) for line in err.splitlines()) < 600, (argv[:3], len(err))
