"""Regression tests for the video and animation commands of the CLI
(reviewer's report: --params with an mp4, sound shorter than the picture,
odd file names, rotation metadata, temporary files on interrupts, ...)."""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import cv2
import numpy as np
import pytest

from conftest import need_shared

ENV = dict(os.environ, GLOG_minloglevel="2", TF_CPP_MIN_LOG_LEVEL="2")


def _need_ffmpeg():
    if not (shutil.which("ffmpeg") and shutil.which("ffprobe")):
        pytest.skip("ffmpeg/ffprobe are not installed (make sysdeps)")


def _ffmpeg(*args) -> None:
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-nostdin", *map(str, args)], check=True)


def _ffprobe(path, entries: str, stream: str = "v:0") -> list[str]:
    res = subprocess.run(["ffprobe", "-v", "error", "-select_streams", stream, "-show_entries", entries,
                          "-of", "csv=p=0", f"file:{Path(path).resolve()}"], capture_output=True, text=True)
    return [x for x in res.stdout.split() if x]


def _main(*argv) -> int:
    from avatarizer.cli import main

    return main([str(a) for a in argv])


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith(".") or p.name.endswith(".partial"))


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    """1 s of shared clip d11 at 256x256, H.264 + AAC (25 fps, a face throughout)."""
    _need_ffmpeg()
    src = need_shared("data", "video", "d11.mp4")
    path = tmp_path_factory.mktemp("clip") / "c.mp4"
    _ffmpeg("-i", src, "-t", "1", "-vf", "scale=256:256", "-c:v", "libx264", "-preset", "veryfast",
            "-c:a", "aac", path)
    return path


# ---------------------------------------------------------------- 1: --params with an mp4
def test_params_beside_an_mp4_is_written(tmp_path, clip, capsys):
    out, jl = tmp_path / "o.mp4", tmp_path / "o.jsonl"
    assert _main("video", clip, "-o", out, "--params", jl) == 0, capsys.readouterr().err
    lines = [json.loads(x) for x in jl.read_text().splitlines()]
    assert len(lines) == 25 and out.stat().st_size > 0 and all(len(d["params"]) == 629 for d in lines)
    assert f"wrote {jl}" in capsys.readouterr().out
    assert _leftovers(tmp_path) == []
    # and animate reads back what video wrote
    assert _main("animate", "--params", jl, "-o", tmp_path / "a.json") == 0
    assert json.loads((tmp_path / "a.json").read_text())["op"] == 25


# ---------------------------------------------------------------- 10: temporary files on interrupts
@pytest.mark.parametrize("where", ["lottie", "player"])
def test_interrupt_while_finishing_an_animation_leaves_nothing(tmp_path, clip, monkeypatch, where, capsys):
    import avatarizer.animation as animation

    def stop(*a, **k):
        raise KeyboardInterrupt

    def stop_midway(*a, **k):  # (the Lottie text is written as it is made: stopped halfway through)
        yield '{"v":'
        raise KeyboardInterrupt

    monkeypatch.setattr(animation.Animation if where == "lottie" else animation,
                        "_lottie_chunks" if where == "lottie" else "_player_page",
                        stop_midway if where == "lottie" else stop)
    folder = tmp_path / "f"
    folder.mkdir()
    args = ["video", clip, "-o", folder / "a.json", "--params", folder / "a.jsonl"]
    assert _main(*args, *(["--player"] if where == "player" else [])) == 130
    left = sorted(p.name for p in folder.iterdir())
    # (the animation is moved into place with its player page and parameters, all or none: stopped while the
    # page was made, a.json was left written)
    assert left == [], left


def _appears_when(monkeypatch, owner, name: str, path, text: str = "theirs") -> None:
    """Makes ``path`` appear (a user's file) when ``owner.name`` is called."""
    real = getattr(owner, name)

    def appear(self, *a, **kw):
        path.write_text(text)
        return real(self, *a, **kw)

    monkeypatch.setattr(owner, name, appear)


def test_output_that_appears_while_finishing_leaves_no_temporary_files(tmp_path, clip, monkeypatch, capsys):
    import avatarizer.animation as animation

    folder = tmp_path / "f"
    folder.mkdir()
    _appears_when(monkeypatch, animation.Animation, "_lottie_chunks", folder / "a.json")
    assert _main("video", clip, "-o", folder / "a.json", "--params", folder / "a.jsonl") == 1
    assert "appeared" in capsys.readouterr().err
    assert sorted(p.name for p in folder.iterdir()) == ["a.json"]
    assert (folder / "a.json").read_text() == "theirs"


def test_a_params_file_that_appears_meanwhile_keeps_the_video_back_too(tmp_path, clip, monkeypatch, capsys):
    """``video -o OUT.mp4 --params OUT.jsonl`` moves both into place or
    neither: the jsonl appearing while the command ran left OUT.mp4 written
    under a message that said nothing was."""
    from avatarizer import videoio

    folder = tmp_path / "f"
    folder.mkdir()
    _appears_when(monkeypatch, videoio.H264Writer, "close", folder / "o.jsonl")
    assert _main("video", clip, "-o", folder / "o.mp4", "--params", folder / "o.jsonl", "--max-seconds", "0.2") == 1
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert "o.jsonl appeared" in err and "nothing was written" in err, err
    assert sorted(p.name for p in folder.iterdir()) == ["o.jsonl"]
    assert (folder / "o.jsonl").read_text() == "theirs"


@pytest.mark.parametrize("appears", ["a.jsonl", "a.html"])
def test_an_animation_its_page_and_params_are_moved_in_together(tmp_path, clip, monkeypatch, capsys, appears):
    """``video -o OUT.json --player --params P.jsonl`` moves its three outputs
    into place all or none, as OUT.mp4 and its parameters are: a parameters
    file or player page that appeared while the command ran left the
    animation written (moved in first) behind the error."""
    import avatarizer.animation as animation

    folder = tmp_path / "f"
    folder.mkdir()
    _appears_when(monkeypatch, animation.Animation, "_lottie_chunks", folder / appears)
    assert _main("video", clip, "-o", folder / "a.json", "--player", "--params", folder / "a.jsonl",
                 "--max-seconds", "0.2") == 1
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert f"{appears} appeared" in err and "nothing was written" in err, err
    assert sorted(p.name for p in folder.iterdir()) == [appears]
    assert (folder / appears).read_text() == "theirs"


def test_an_animation_with_its_page_and_params_is_written_whole(tmp_path, clip, capsys):
    """The three outputs all land, each complete (the page embeds the animation written)."""
    folder = tmp_path / "f"
    folder.mkdir()
    assert _main("video", clip, "-o", folder / "a.json", "--player", "--params", folder / "a.jsonl",
                 "--max-seconds", "0.2") == 0, capsys.readouterr().err
    out = capsys.readouterr().out
    assert all(f"wrote {folder / n}" in out for n in ("a.json", "a.html", "a.jsonl")), out
    assert sorted(p.name for p in folder.iterdir()) == ["a.html", "a.json", "a.jsonl"]
    doc = (folder / "a.json").read_text()
    assert json.loads(doc)["op"] > 0 and doc in (folder / "a.html").read_text()
    assert len((folder / "a.jsonl").read_text().splitlines()) > 0


# ---------------------------------------------------------------- 5: numbers beyond any float
def _line(params) -> str:
    return json.dumps([float(v) for v in params]) + "\n"


@pytest.mark.parametrize("bad", ["10**400", "-10**400", "deep", "1e39", "-3.5e38"])
def test_animate_refuses_unreadable_numbers_in_one_line(tmp_path, bad, capsys):
    from avatarizer import schema

    good = _line(schema.default())
    if bad == "deep":
        line = "[" * 100_000 + "]" * 100_000 + "\n"
    else:
        line = good.replace("[", "[" + str(eval(bad)) + ", ", 1).replace(", " + good[1:].split(",")[0], "", 1)
    src = tmp_path / "in.jsonl"
    src.write_text(good + line)
    assert _main("animate", "--params", src, "-o", tmp_path / "a.json") == 1
    err = capsys.readouterr().err
    assert "line 2" in err and "Traceback" not in err and err.count("\n") == 1, err
    assert not (tmp_path / "a.json").exists()
    if bad in ("1e39", "-3.5e38"):  # finite, beyond a 32-bit float: said so (it read "is inf", after a warning)
        assert "beyond a 32-bit float" in err and "inf" not in err and "warning" not in err, err


def test_read_params_jsonl_stops_at_the_frame_limit(tmp_path, monkeypatch):
    import avatarizer.animation as animation
    from avatarizer import schema

    monkeypatch.setattr(animation, "MAX_FRAMES", 3)
    monkeypatch.setattr(animation, "MAX_STAMPED_LINES", 12)
    src = tmp_path / "in.jsonl"
    src.write_text(_line(schema.default()) * 4 + "not json: never read\n")
    with pytest.raises(ValueError, match="more than 3 frames"):
        animation.read_params_jsonl(src)
    # lines with times are resampled (maybe to fewer frames): refused by the line count only past its own limit
    p = [round(float(v), 6) for v in schema.default()]
    stamped = "".join(json.dumps({"time_ms": 10.0 * i, "params": p}) + "\n" for i in range(12))
    src.write_text(stamped)
    assert len(animation.read_params_jsonl(src, [])) == 12
    src.write_text(stamped + json.dumps({"time_ms": 500.0, "params": p}) + "\n")
    with pytest.raises(ValueError, match="more than 12 stamped lines"):
        animation.read_params_jsonl(src, [])


@pytest.mark.parametrize("case", ["string time", "nan time", "other schema", "unknown name", "1.0.0 scarf"])
def test_animate_refuses_a_line_it_would_misread(tmp_path, case, capsys):
    """A time_ms that is a string or NaN was taken for no stamp (4 lines
    0.85 s apart came out 0.13 s long at 30 fps), a line of another
    schema_version or with an unknown parameter name was read all the same
    (``Avatar.from_json`` refuses both): one error line naming the line."""
    from avatarizer import schema

    names = dict(zip(schema.NAMES, (round(float(v), 6) for v in schema.default())))
    lines = [{"time_ms": t, "params": dict(names)} for t in (0, 100, 600, 850)]
    if case == "string time":
        lines[2]["time_ms"] = "600"
    elif case == "nan time":
        lines[2]["time_ms"] = float("nan")
    elif case == "other schema":
        lines[2]["schema_version"] = "9.9.9"
    elif case == "1.0.0 scarf":  # (1.0.0 had no headwear.type 4: its range as saved)
        lines[2]["schema_version"] = "1.0.0"
        lines[2]["params"]["headwear.type"] = 4
    else:
        lines[2]["params"]["mouth.opne"] = 0.5
    src = tmp_path / "p.jsonl"
    src.write_text("".join(json.dumps(d) + "\n" for d in lines))
    assert _main("animate", "--params", src, "-o", tmp_path / "a.json") == 1
    err = capsys.readouterr().err
    assert "line 3" in err and "Traceback" not in err and err.count("\n") == 1, err
    lines[2] = {"time_ms": 600, "schema_version": schema.VERSION, "params": dict(names)}  # this SDK's: read
    src.write_text("".join(json.dumps(d) + "\n" for d in lines))
    assert _main("animate", "--params", src, "-o", tmp_path / "a.json") == 0


def test_animate_lines_far_apart_and_slow_rates(tmp_path, capsys):
    """Lines half an hour apart: their rate (0.00056 fps) was rounded to 0
    and animate ended in a ZeroDivisionError traceback; now the slowest
    animation rate (a frame each 1000 s), or --fps. Rates under that are
    refused, and a long, slow SVG's duration is a SMIL clock value (no
    exponent: 3e+06s before; 1e-320 fps wrote infs)."""
    from avatarizer import schema
    from avatarizer.animation import MIN_FPS, Animation

    p = schema.sample(5, seed=1)
    src = tmp_path / "p.jsonl"
    src.write_text("".join(json.dumps({"time_ms": 1_800_000.0 * i, "params": [round(float(v), 6) for v in p[i]]})
                           + "\n" for i in range(5)))
    assert _main("animate", "--params", src, "-o", tmp_path / "a.json") == 0, capsys.readouterr().err
    doc = json.loads((tmp_path / "a.json").read_text())
    assert doc["fr"] == MIN_FPS and doc["op"] == 9  # 7200 s and the last line (its 1800 s), a frame each 1000 s
    assert _main("animate", "--params", src, "-o", tmp_path / "b.json", "--fps", "1") == 0
    assert json.loads((tmp_path / "b.json").read_text())["op"] == 9000
    for fps in ("1e-320", "0.0009"):
        with pytest.raises(SystemExit) as exit:
            _main("animate", "--params", src, "-o", tmp_path / "c.svg", "--fps", fps)
        assert exit.value.code == 2 and "[0.001, 1000]" in capsys.readouterr().err
    assert _main("animate", "--params", src, "-o", tmp_path / "c.svg") == 0
    svg = (tmp_path / "c.svg").read_text()
    assert 'dur="9000s"' in svg and "e+" not in svg.split("<animate", 1)[1].split(">", 1)[0]
    with pytest.raises(ValueError, match="fps must be"):
        Animation(64, fps=MIN_FPS / 2)


# ---------------------------------------------------------------- 2: sound shorter than the picture
def test_sound_that_ends_before_the_picture_keeps_the_whole_video(tmp_path, capsys):
    _need_ffmpeg()
    src = need_shared("data", "video", "d11.mp4")
    short = tmp_path / "shortaud.mp4"  # 2 s of picture, 1 s of sound
    _ffmpeg("-t", "2", "-i", src, "-t", "1", "-i", src, "-map", "0:v", "-map", "1:a", "-vf", "scale=256:256",
            "-c:v", "libx264", "-preset", "veryfast", "-c:a", "aac", short)
    out = tmp_path / "o.mp4"
    assert _main("video", short, "-o", out) == 0, capsys.readouterr().err
    assert _ffprobe(out, "stream=nb_frames") == ["50"]
    assert 0.8 < float(_ffprobe(out, "stream=duration", "a:0")[0]) < 1.2  # the sound as far as it goes
    # and a sound track longer than the picture is cut at the picture's end
    long = tmp_path / "longaud.mp4"
    _ffmpeg("-t", "1", "-i", src, "-t", "2", "-i", src, "-map", "0:v", "-map", "1:a", "-vf", "scale=256:256",
            "-c:v", "libx264", "-preset", "veryfast", "-c:a", "aac", long)
    out = tmp_path / "o2.mp4"
    assert _main("video", long, "-o", out) == 0, capsys.readouterr().err
    assert _ffprobe(out, "stream=nb_frames") == ["25"]
    assert float(_ffprobe(out, "stream=duration", "a:0")[0]) < 1.2


def test_the_sound_of_max_seconds_lasts_the_whole_frames_kept():
    """Whole frames, those less than --max-seconds after the first, at least
    one (a 1e-8 s run keeps one frame; the sound was cut to nothing)."""
    from avatarizer.cli import _frames_length

    for secs, rate, frames in ((1e-8, 30.0, 1), (1.1, 1.0, 2), (0.3, 30.0, 9), (1.0, 25.0, 25), (0.5, 25.0, 13),
                               (1.0, 30000 / 1001, 30), (0.0015, 1000.0, 2)):
        assert _frames_length(secs, rate) == pytest.approx(frames / rate), (secs, rate)


def test_max_seconds_cuts_the_sound_where_the_picture_ends(tmp_path, clip, capsys):
    """``--max-seconds`` keeps the frames less than that after the first,
    the last shown a whole frame: the sound goes on to there. At 1 fps and
    1.1 s the picture lasts 2 s; the sound was cut at 1.1 s, the second
    frame shown 0.9 s in silence."""
    from avatarizer.imageio import SAMPLE_PHOTO

    slow = tmp_path / "slow.mp4"  # a portrait, 3 s at 1 fps, sound all along
    _ffmpeg("-loop", "1", "-i", SAMPLE_PHOTO, "-f", "lavfi", "-i", "sine=frequency=440:duration=3",
            "-vf", "scale=256:256", "-r", "1", "-t", "3", "-c:v", "libx264", "-pix_fmt", "yuv420p", "-c:a", "aac",
            slow)
    out = tmp_path / "o.mp4"
    assert _main("video", slow, "-o", out, "--max-seconds", "1.1") == 0, capsys.readouterr().err
    assert _ffprobe(out, "stream=nb_frames") == ["2"]
    assert "2 frames (2.00 s of video" in capsys.readouterr().out
    picture = float(_ffprobe(out, "stream=duration")[0])
    sound = float(_ffprobe(out, "stream=duration", "a:0")[0])
    assert abs(picture - 2.0) < 0.05 and abs(sound - picture) < 0.1, (picture, sound)
    # at 25 fps and 0.5 s: 13 frames (the 13th at 0.48 s), 0.52 s, the sound to there
    out = tmp_path / "o25.mp4"
    assert _main("video", clip, "-o", out, "--max-seconds", "0.5") == 0, capsys.readouterr().err
    assert _ffprobe(out, "stream=nb_frames") == ["13"]
    assert "13 frames (0.52 s of video" in capsys.readouterr().out  # (it said "0.5 s")
    assert abs(float(_ffprobe(out, "stream=duration", "a:0")[0]) - 0.52) < 0.03
    one = tmp_path / "o1.mp4"  # one frame: "1 frame (0.04 s", not "1 frames (0.0 s"
    assert _main("video", clip, "-o", one, "--max-seconds", "0.01") == 0, capsys.readouterr().err
    assert "1 frame (0.04 s of video" in capsys.readouterr().out


# ---------------------------------------------------------------- 12: names ffmpeg would misread
def test_a_name_starting_with_a_dash_keeps_its_sound(tmp_path, clip, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    shutil.copy(clip, tmp_path / "-dash.mp4")
    assert _main("video", "./-dash.mp4", "-o", "o.mp4") == 0, capsys.readouterr().err
    assert "audio copied" in capsys.readouterr().out
    assert _ffprobe(tmp_path / "o.mp4", "stream=codec_name", "a:0") == ["aac"]


def test_ffprobe_missing_says_so(tmp_path, clip, monkeypatch, capsys):
    bindir = tmp_path / "bin"
    bindir.mkdir()
    (bindir / "ffmpeg").symlink_to(shutil.which("ffmpeg"))
    monkeypatch.setenv("PATH", str(bindir))
    assert _main("video", clip, "-o", tmp_path / "o.mp4") == 0, capsys.readouterr().err
    out = capsys.readouterr().out
    assert "ffprobe not found" in out and "no sound track" not in out


def test_a_relative_name_with_a_colon_is_a_file_not_a_protocol(tmp_path, clip, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    shutil.copy(clip, tmp_path / "clip:1.mp4")
    assert _main("video", "clip:1.mp4", "-o", "o.mp4") == 0, capsys.readouterr().err
    assert _ffprobe(tmp_path / "o.mp4", "stream=codec_name", "a:0") == ["aac"]
    assert _main("video", "clip:1.mp4", "-o", "o.json") == 0, capsys.readouterr().err


@pytest.mark.skipif(sys.platform != "linux", reason="the file is opened by its /proc/self/fd link")
def test_a_name_with_a_percent_sign_is_that_file_not_a_pattern(tmp_path, clip, monkeypatch, capsys):
    """OpenCV and FFmpeg read ``p%d.jpg`` as an image sequence: ``video``
    made a clip of ``p0.jpg``.. beside the (garbage) file named, exit 0. The
    file named is what is read: refused here; a real clip so named works."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "p%d.jpg").write_bytes(b"garbage\n")
    photo = Path(__file__).resolve().parents[1] / "sdk" / "avatarizer" / "data" / "astronaut.jpg"
    for i in range(3):
        shutil.copy(photo, tmp_path / f"p{i}.jpg")
    assert _main("video", "p%d.jpg", "-o", "seq.mp4") == 1
    assert "p%d.jpg" in capsys.readouterr().err and not (tmp_path / "seq.mp4").exists()
    from avatarizer.videoio import capture

    cap = capture(tmp_path / "p%d.jpg")
    assert not cap.isOpened() or not cap.read()[0]
    shutil.copy(clip, tmp_path / "c%03d.mp4")
    assert _main("video", "c%03d.mp4", "-o", "o.mp4") == 0, capsys.readouterr().err
    assert _ffprobe(tmp_path / "o.mp4", "stream=nb_frames") == ["25"]


# ---------------------------------------------------------------- 3: a name that is not UTF-8
@pytest.mark.skipif(sys.platform != "linux", reason="a non-UTF-8 file name needs a Linux file system")
def test_a_name_that_is_not_utf8_works(tmp_path, clip):
    name = os.fsdecode(b"\xff.mp4")  # '\udcff.mp4'
    shutil.copy(clip, tmp_path / name)
    res = subprocess.run([sys.executable, "-m", "avatarizer.cli", "video", name, "-o", "u.mp4"], cwd=tmp_path,
                         capture_output=True, text=True, env=ENV, timeout=300)
    assert res.returncode == 0, (res.returncode, res.stderr[-2000:])
    assert _ffprobe(tmp_path / "u.mp4", "stream=nb_frames") == ["25"]


@pytest.mark.skipif(sys.platform != "linux", reason="a non-UTF-8 file name and a named pipe need Linux")
def test_clip_folders_of_bench_and_eval_take_odd_names_and_skip_pipes(tmp_path, clip):
    """``bench --video DIR`` and ``eval --clips DIR`` crashed OpenCV (SIGSEGV)
    on a clip whose name is not UTF-8, and waited forever on a named pipe
    called ``*.mp4`` in the folder: the clip is read, the pipe left out (a
    child process, so that a crash fails this test rather than the run)."""
    folder = tmp_path / "d"
    folder.mkdir()
    shutil.copy(clip, folder / os.fsdecode(b"\xff.mp4"))
    os.mkfifo(folder / "pipe.mp4")
    code = ("import sys; from avatarizer import bench; from avatarizer_export.evaluate import clip_files\n"
            "frames, where = bench.bench_frames(4, size=64, video=sys.argv[1])\n"
            "assert len(frames) == 4 and frames[0].shape == (64, 64, 3), where\n"
            "files = clip_files(sys.argv[1])\n"
            "assert [f.name for f in files] == ['\\udcff.mp4'], files\n"
            "from avatarizer.videoio import capture\n"
            "assert capture(files[0]).read()[0]\n"
            "print('ok')\n")
    res = subprocess.run([sys.executable, "-c", code, str(folder)], capture_output=True, text=True, env=ENV,
                         timeout=120)
    assert res.returncode == 0 and res.stdout.strip() == "ok", (res.returncode, res.stderr[-2000:])


def test_bench_holds_a_bounded_number_of_distinct_frames(tmp_path, clip, monkeypatch):
    """``bench --frames`` (up to 100,000) read every frame into memory (79 GB
    at the maximum): at most ``MAX_DISTINCT_FRAMES`` are held, the rest are
    the same arrays again (the clip or the built-in motion loops)."""
    from avatarizer import bench

    monkeypatch.setattr(bench, "MAX_DISTINCT_FRAMES", 7)
    frames, where = bench.bench_frames(30, size=32, video=clip)
    assert len(frames) == 30 and len({id(f) for f in frames}) == 7 and "looped from 7" in where
    assert frames[7] is frames[0] and frames[29] is frames[29 % 7]
    built = bench.builtin_frames(20, size=32)
    assert len(built) == 20 and len({id(f) for f in built}) == 7
    few, _ = bench.bench_frames(5, size=32, video=clip)
    assert len({id(f) for f in few}) == 5


def _grey_clip(path: Path, seconds: float = 1.0) -> Path:
    """A clip with no face: 25 fps of plain grey at 256x256."""
    _ffmpeg("-f", "lavfi", "-i", f"color=c=gray:s=256x256:r=25:d={seconds}", "-c:v", "libx264", "-preset",
            "veryfast", "-pix_fmt", "yuv420p", path)
    return path


def test_bench_starts_a_new_stream_at_each_clip_and_times_no_new_persons_start_up(tmp_path, clip, monkeypatch):
    """``bench --video DIR`` read the clips one after another as one stream:
    a clip's start-up (the new person's networks inline) ran in the timed
    frames, and a start-up that spanned a cut drew the first clip's person
    over the second's face (a review). At every cut the stream starts anew
    (``Avatarizer.reset``, as an app does for a new source), and the frames
    until the new identity is warm are left out of the timing (``left_out``)."""
    import functools

    import avatarizer.api as api
    from avatarizer import bench, video

    folder = tmp_path / "clips"
    folder.mkdir()
    for name in ("a.mp4", "b.mp4"):
        shutil.copy(clip, folder / name)
    frames, where, cuts = bench.bench_clips(60, size=32, video=folder)
    assert len(frames) == 60 and cuts == [25, 50] and "a.mp4, b.mp4" in where  # b starts, then a again
    assert bench.bench_clips(10, size=32)[2] == []  # the built-in frames: one person
    # one clip looping is the same person again: no cut (a reset there kept a clip shorter than the
    # identity's start-up from ever being timed, a review)
    assert bench.bench_clips(60, size=32, video=folder / "a.mp4")[2] == []
    cuts = bench.bench_clips(10_000, size=32, video=folder)[2]  # (every cut the loop below may reach)

    monkeypatch.setattr(video, "TrackerOptions", functools.partial(video.TrackerOptions, identity_frames=3,
                                                                   identity_worker="thread"))
    calls, resets = [0], []
    real = api.Avatarizer

    class Counted(real):
        def run(self, *a, **k):
            calls[0] += 1
            return super().run(*a, **k)

        def reset(self):
            resets.append(calls[0])
            return super().reset()

    monkeypatch.setattr(api, "Avatarizer", Counted)
    alone_at, alone_ran, real_alone = [], [], bench._alone

    def alone(av, *a, **k):  # (the loop again without the baseline: where it starts, how many frames it runs)
        alone_at.append(calls[0])
        out = real_alone(av, *a, **k)
        alone_ran.append(calls[0] - alone_at[0])
        return out

    monkeypatch.setattr(bench, "_alone", alone)
    res = bench.run(frames=30, warmup=0, video=folder)
    # the loop resets at each cut it reaches (before the frame there: after that many run() calls); the loop
    # again without the baseline at its start and at each cut it reaches; the stream phase once more at its start
    main = [r for r in resets if r < alone_at[0]]
    assert main == [c for c in cuts if c < alone_at[0]] and main, (resets, cuts, alone_at)
    again = [r - alone_at[0] for r in resets[len(main):-1]]
    assert again == [0] + [c for c in cuts if c < alone_ran[0]], (resets, cuts, alone_at, alone_ran)
    assert res["end_to_end_alone"]["n"] == 30
    assert res["left_out"]["rewarm"] >= 1 and res["left_out"]["no_face"] == 0, res["left_out"]
    assert res["end_to_end"]["n"] == 30 and res["stages"]["encode"]["n"] == 0  # no network in a timed frame
    assert res["end_to_end"]["max_frame_source"] >= res["startup"]["frames"]


def test_bench_leaves_out_frames_without_a_face_and_refuses_when_none_has_one(tmp_path, clip):
    """Frames without a face (the pipeline's cheap path) were timed and
    flattered every number, and a clip with no face at all gave exit 0 and
    a ratio (a review): they are left out and counted, and with no face in
    any frame after the warm-up nothing is timed: an error."""
    from avatarizer import bench

    folder = tmp_path / "mixed"
    folder.mkdir()
    shutil.copy(clip, folder / "a.mp4")
    _grey_clip(folder / "b.mp4")
    res = bench.run(frames=30, warmup=0, mode="image", video=folder)
    assert res["end_to_end"]["n"] == 30 and res["left_out"] == {"no_face": 25, "rewarm": 0}, res["left_out"]
    assert res["stages"]["encode"]["p50_ms"] > 0  # image mode: every timed frame ran the face network
    grey = tmp_path / "grey"
    grey.mkdir()
    _grey_clip(grey / "g.mp4")
    with pytest.raises(ValueError, match="none of the .* frames after the warm-up showed a face"):
        bench.run(frames=3, warmup=1, mode="image", video=grey)


def test_bench_baseline_is_the_align_stages_own_mesh_and_call(monkeypatch):
    """The baseline called MediaPipe's ``process()`` (per-call overhead the
    align stage does not pay: ``vs_landmarks`` read 6-9% low) and, in image
    mode, searched for fewer faces than the align stage (4 against
    ``IMAGE_MESH_FACES``, a review): the same FaceMesh settings, called as
    the align stage calls it."""
    from mediapipe.python.solutions import face_mesh

    from avatarizer import bench
    from avatarizer.align import IMAGE_MESH_FACES

    made, processed = [], []
    real = face_mesh.FaceMesh

    class Recorded(real):
        def __init__(self, **kw):
            made.append(kw)
            super().__init__(**kw)

        def process(self, image):
            processed.append(1)
            return super().process(image)

    monkeypatch.setattr(face_mesh, "FaceMesh", Recorded)
    bench.run(frames=2, warmup=0, mode="image")
    assert len(made) >= 2 and not processed  # the align stage's graph and the baseline's: neither through process()
    assert {m["max_num_faces"] for m in made} == {IMAGE_MESH_FACES}, made
    assert len({tuple(sorted(m.items())) for m in made}) == 1, made  # the very same settings


@pytest.mark.parametrize("out", ["m.mp4", "m.json"])
def test_an_intact_mkv_whose_sound_outlasts_the_picture_is_not_called_truncated(tmp_path, clip, out, capsys):
    """MKV has no frame count of its own: OpenCV's is the file's duration
    (the sound's 3 s) times the rate, and an intact 2 s picture was reported
    as "ended after 50 of the 75 frames its header announces", exit 3."""
    mkv = tmp_path / "av.mkv"
    _ffmpeg("-i", clip, "-f", "lavfi", "-i", "sine=duration=3", "-map", "0:v", "-map", "1:a", "-c:v", "libx264",
            "-c:a", "libopus", "-t", "3", mkv)
    assert _main("video", mkv, "-o", tmp_path / out) == 0
    assert "truncated" not in capsys.readouterr().err


@pytest.mark.parametrize("ffmpeg_on_path", [True, False])
def test_the_reported_size_is_the_files_for_odd_sizes(tmp_path, clip, monkeypatch, capsys, ffmpeg_on_path):
    """A 201x155 input: H.264 pads it to 202x156, the fallback MPEG-4 writer
    (no ffmpeg) drops a row and column (200x154); both said 201x155."""
    odd = tmp_path / "odd.mp4"
    _ffmpeg("-i", clip, "-vf", "scale=201:155,setsar=1", "-c:v", "mpeg4", odd)
    if not ffmpeg_on_path:
        from avatarizer import videoio

        monkeypatch.setattr(videoio, "available", lambda: False)
    out = tmp_path / "o.mp4"
    assert _main("video", odd, "-o", out) == 0
    cap = cv2.VideoCapture(str(out))
    ok, frame = cap.read()
    cap.release()
    assert ok
    w, h = frame.shape[1], frame.shape[0]
    assert (w, h) == ((202, 156) if ffmpeg_on_path else (200, 154))
    assert f"{w}x{h}, overlay" in capsys.readouterr().out


# ---------------------------------------------------------------- 11: truncated input, animation output
@pytest.mark.parametrize("out", ["t.json", "t.svg"])
def test_truncated_input_to_an_animation_warns_and_exits_3(tmp_path, clip, out, capsys):
    fast = tmp_path / "fast.mp4"  # index first, so a cut file still opens and announces 25 frames
    _ffmpeg("-i", clip, "-c", "copy", "-movflags", "+faststart", fast)
    data = fast.read_bytes()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: len(data) // 2])
    assert _main("video", cut, "-o", tmp_path / out) == 3
    err = capsys.readouterr().err
    assert "of the 25 frames" in err and "truncated" in err
    assert (tmp_path / out).stat().st_size > 0


# ---------------------------------------------------------------- 16: messages and exit codes
@pytest.mark.parametrize("argv", [
    ["video", "IN", "-o", "t.mp4", "--size", "20"],
    ["video", "IN", "-o", "t.mp4", "--size", "9000"],
    ["video", "IN", "-o", "t.mp4", "--max-seconds", "-1"],
    ["video", "IN", "-o", "t.mp4", "--max-seconds", "nan"],
    ["video", "IN", "-o", "t.json", "--fps", "-1"],
    ["video", "IN", "-o", "t.json", "--fps", "inf"],
    ["video", "IN", "-o", "t.json", "--tolerance", "-1"],
    ["animate", "--params", "IN", "-o", "t.json", "--tolerance", "nan"],
    ["live", "IN", "--max-seconds", "0"],
    # beyond any frame count (an OverflowError traceback): at most 10**7 s, as the sound's length is read
    ["video", "IN", "-o", "t.mp4", "--max-seconds", "1e308"],
    ["video", "IN", "-o", "t.json", "--max-seconds", "1e308"],
    ["live", "IN", "--max-seconds", "1e308"],
    ["render-samples", "-o", "g.png", "--seed", "-5"],
    # options the output type would not use (they were silently ignored)
    ["video", "IN", "-o", "t.mp4", "--player"],
    ["video", "IN", "-o", "t.mp4", "--fps", "10"],
    ["video", "IN", "-o", "t.mp4", "--tolerance", "1"],
    ["video", "IN", "-o", "t.mp4", "--background", "white"],
    ["video", "IN", "-o", "t.json", "--layout", "side-by-side"],
    ["video", "IN", "-o", "t.svg", "--player"],
    ["video", "IN", "-o", "t.svg", "--set", "glasses=monocle"],
    # ... also when given with the value that is their default for the other output type (were ignored)
    ["video", "IN", "-o", "t.mp4", "--background", "transparent"],
    ["video", "IN", "-o", "t.json", "--layout", "overlay"],
    ["video", "IN", "-o", "t.svg", "--layout", "overlay"],
])
def test_bad_values_are_usage_errors(tmp_path, clip, argv, capsys):
    argv = [str(clip) if a == "IN" else str(tmp_path / a) if "." in a and a[0] != "-" else a for a in argv]
    try:
        status = _main(*argv)
    except SystemExit as exc:  # argparse
        status = exc.code
    assert status == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and err.strip().splitlines()[-1].startswith(f"avatarizer {argv[0]}: error:")
    assert "1e308" not in argv or "--max-seconds" in err, err  # (live: not only for want of a display)
    assert sorted(p.name for p in tmp_path.iterdir()) == []


@pytest.mark.parametrize("argv,needle", [
    # an output type the command does not write (were exit 1)
    (["image", "MISSING", "-o", "x.gif"], "'.gif'"),
    (["video", "MISSING", "-o", "x.mov"], "'x.mov'"),
    (["render-samples", "-o", "x.svg"], "'.svg'"),
    (["animate", "--params", "MISSING", "-o", "x.mp4"], "'.mp4'"),
    (["video", "MISSING", "-o", "x.mp4", "--params", "x.mp4"], "--params"),
    (["live", "MISSING", "--screenshot", "x.jpg"], "--screenshot"),
    # a background the renderer does not know (was exit 1, after the models loaded)
    (["image", "MISSING", "-o", "x.png", "--background", "pink"], "--background"),
    (["image", "MISSING", "-o", "x.png", "--background", "#12345"], "--background"),
    (["video", "MISSING", "-o", "x.json", "--background", "pink"], "--background"),
    (["animate", "--params", "MISSING", "-o", "x.svg", "--background", "pink"], "--background"),
])
def test_bad_output_types_and_backgrounds_are_usage_errors_before_any_work(tmp_path, argv, needle, capsys):
    """Exit 2 with one argparse-style line, checked before the input is
    looked at (MISSING does not exist: that would be exit 1)."""
    argv = [str(tmp_path / a) if a == "MISSING" or "." in a and a[0] != "-" else a for a in argv]
    try:
        status = _main(*argv)
    except SystemExit as exc:  # argparse
        status = exc.code
    err = capsys.readouterr().err
    assert status == 2, err
    last = err.strip().splitlines()[-1]
    assert "Traceback" not in err and last.startswith(f"avatarizer {argv[0]}: error:") and needle in last, err
    assert "tuple" not in err  # (the renderer's message offers an RGB(A) tuple, which a command line cannot give)
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_background_takes_the_hex_forms_a_command_line_can_give():
    from avatarizer.cli import build_parser
    from avatarizer.render import render
    from avatarizer.schema import default

    parse = lambda cmd, value: build_parser().parse_args([*cmd, "--background", value]).background  # noqa: E731
    image, anim = ["image", "a.jpg", "-o", "b.png"], ["animate", "--params", "a.jsonl", "-o", "b.json"]
    for value, want in (("#abc", "#aabbcc"), ("#ABCD", "#aabbccdd"), ("#A0B1C2", "#a0b1c2"),
                        ("#a0b1c2e3", "#a0b1c2e3"), ("White", "white"), ("transparent", "transparent")):
        assert parse(image, value) == want and parse(anim, value) == want
    assert tuple(render(default(), 16, background=parse(image, "#abc"))[0, 0]) == (0xaa, 0xbb, 0xcc, 255)


@pytest.mark.parametrize("command", ["animate", "video"])
def test_tolerance_0_says_what_holds_not_0_px(tmp_path, clip, command, capsys):
    """Coordinates are whole steps of 1/64 px at the finest, so under 1/128 px
    (0 included) the export is within 1/128 px, not the tolerance asked for:
    the summary said "path keyframes within 0 px"."""
    from avatarizer import schema

    out = tmp_path / "par.svg"
    if command == "animate":
        lines = tmp_path / "p.jsonl"
        lines.write_text("".join(_line(p) for p in schema.sample(3, seed=1)))
        argv = ["animate", "--params", lines, "-o", out]
    else:
        argv = ["video", clip, "-o", out, "--max-seconds", "0.1"]
    assert _main(*argv, "--tolerance", "0") == 0, capsys.readouterr().err
    said = capsys.readouterr().out
    assert "within 0 px" not in said and "path keyframes within 1/128 px (the finest coordinate step" in said, said
    assert _main(*argv, "--tolerance", "0.5", "--overwrite") == 0
    assert "path keyframes within 0.5 px at 512x512" in capsys.readouterr().out


def test_a_video_too_small_says_so_not_size(tmp_path, capsys):
    _need_ffmpeg()
    tiny = tmp_path / "tiny.mp4"
    _ffmpeg("-t", "0.2", "-i", need_shared("data", "video", "d11.mp4"), "-vf", "scale=16:16", "-an", tiny)
    assert _main("video", tiny, "-o", tmp_path / "o.mp4") == 1
    err = capsys.readouterr().err
    assert "too small" in err and "16x16" in err and "--size None" not in err
    # --size does not help (the landmarks run on the frames as they are), and no hint says it would;
    # an animation is refused the same way, before any model loads
    for out, size in (("o.mp4", "512"), ("o.json", "512")):
        assert _main("video", tiny, "-o", tmp_path / out, "--size", size) == 1
        err = capsys.readouterr().err.strip().splitlines()[-1]
        assert "too small" in err and "16x16" in err and "--size" not in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tiny.mp4"]


def test_a_song_with_cover_art_is_not_a_video(tmp_path, capsys):
    """Sound with an attached picture (a song's cover art: the usual .m4a or
    .mp3) is refused as holding no video, as sound alone is; OpenCV decodes
    the picture as a one-frame video, and 2 s of sound became a 33 ms mp4
    with exit 0 (a read-only review). A video beside its cover art still
    converts."""
    _need_ffmpeg()
    from avatarizer.imageio import SAMPLE_PHOTO
    from avatarizer.videoio import pictures_only

    song, film = tmp_path / "song.m4a", tmp_path / "film.mp4"
    _ffmpeg("-f", "lavfi", "-i", "sine=frequency=440:duration=2", "-i", SAMPLE_PHOTO,
            "-map", "0:a", "-map", "1:v", "-c:a", "aac", "-c:v", "mjpeg", "-disposition:v:0", "attached_pic", song)
    _ffmpeg("-f", "lavfi", "-i", "testsrc=size=64x64:rate=5:duration=1", "-c:v", "libx264", film)
    assert pictures_only(song) and not pictures_only(film)
    for out in ("o.mp4", "o.json"):
        assert _main("video", song, "-o", tmp_path / out) == 1
        err = capsys.readouterr().err.strip().splitlines()[-1]
        assert "holds no video" in err and "cover" in err, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["film.mp4", "song.m4a"]


def test_max_seconds_under_one_frame_takes_one_frame(tmp_path, clip, capsys):
    assert _main("video", clip, "-o", tmp_path / "o.mp4", "--max-seconds", "0.01") == 0, capsys.readouterr().err
    assert _ffprobe(tmp_path / "o.mp4", "stream=nb_frames") == ["1"]


# ---------------------------------------------------------------- 14: render-samples' sheet size
def test_render_samples_bounds_the_sheet_and_fits_columns_to_n(tmp_path, capsys):
    from PIL import Image

    assert _main("render-samples", "-n", "1", "--size", "16384", "-o", tmp_path / "g.png") == 2
    err = capsys.readouterr().err
    assert "16392x16392" in err and "Traceback" not in err and not list(tmp_path.iterdir())
    assert _main("render-samples", "-n", "2", "--size", "32", "-o", tmp_path / "g.png") == 0
    assert Image.open(tmp_path / "g.png").size == (2 * 36 + 4, 36 + 4)


def test_out_of_memory_is_one_line(tmp_path, monkeypatch, capsys):
    import avatarizer.gallery as gallery

    def boom(*a, **k):
        raise MemoryError

    monkeypatch.setattr(gallery, "render", boom)
    assert _main("render-samples", "-n", "2", "--size", "32", "-o", tmp_path / "g.png") == 1
    err = capsys.readouterr().err
    assert err.strip() == "avatarizer render-samples: error: out of memory"
    assert not list(tmp_path.iterdir())


# ---------------------------------------------------------------- 15: the player page links the video by URL
@pytest.mark.parametrize("video,src", [("take#1.mp4", "take%231.mp4"), ("a?b%20 c.mp4", "a%3Fb%2520%20c.mp4"),
                                       ("sub/é&.mp4", "sub/%C3%A9%26.mp4"),
                                       (os.fsdecode(b"\xff.mp4"), "%FF.mp4")])
def test_player_page_links_the_video_as_a_url(tmp_path, video, src):
    from avatarizer import schema
    from avatarizer.animation import Animation, player_html

    anim = tmp_path / "a.json"
    Animation(64).extend([schema.default()]).write(anim)
    page = player_html(anim, tmp_path / video, tmp_path / "a.html", inline_player=False)
    assert f'<video id="video" src="{src}"' in page
    page.encode("utf-8")  # writable as UTF-8


def test_player_page_of_a_video_that_starts_after_its_sound_carries_the_offset(tmp_path, clip, capsys):
    """The page draws the frame for currentTime less the video's start (its first
    frame's time, as --params' time_ms), frame 0 before it; the browser check is
    test_animation.test_player_page_follows_the_video."""
    from avatarizer import schema
    from avatarizer.animation import Animation, player_html

    off = tmp_path / "off.mp4"
    _ffmpeg("-f", "lavfi", "-i", "sine=duration=2", "-itsoffset", "0.5", "-i", clip, "-map", "0:a", "-map", "1:v",
            "-c:v", "copy", "-c:a", "aac", "-shortest", off)
    assert _ffprobe(off, "stream=start_time") == ["0.500000"]
    out, jl = tmp_path / "o.json", tmp_path / "o.jsonl"
    assert _main("video", off, "-o", out, "--player", "--params", jl, "--max-seconds", "0.2") == 0, \
        capsys.readouterr().err
    assert json.loads(jl.read_text().splitlines()[0])["time_ms"] == pytest.approx(500)
    page = (tmp_path / "o.html").read_text()
    assert "const start = 0.5;" in page and "Math.max(0, (video.currentTime - start) * data.fr)" in page
    anim = tmp_path / "a.json"
    Animation(64).extend([schema.default()]).write(anim)
    assert "const start = 0.0;" in player_html(anim, clip, inline_player=False)
    for bad in (-1, float("nan"), float("inf"), "0.5"):
        with pytest.raises(ValueError, match="video_start"):
            player_html(anim, clip, inline_player=False, video_start=bad)


# ---------------------------------------------------------------- 13: 16-bit and 32-bit grayscale images
def test_high_bit_depth_grayscale_is_scaled_not_clipped(tmp_path, capsys):
    from PIL import Image
    from skimage import data as skdata

    from avatarizer.imageio import load_image, to_rgb_uint8

    gray = np.asarray(Image.fromarray(skdata.astronaut()).convert("L").resize((256, 256)))
    Image.fromarray(gray).save(tmp_path / "g8.png")
    Image.fromarray(gray.astype(np.uint16) * 257).save(tmp_path / "g16.png")
    want = load_image(tmp_path / "g8.png")
    got = load_image(tmp_path / "g16.png")
    assert Image.open(tmp_path / "g16.png").mode.startswith("I")
    assert np.abs(got.astype(int) - want).max() <= 1
    for im in (Image.fromarray(gray.astype(np.int32) * 257, "I"), Image.fromarray(gray.astype(np.float32) / 255, "F"),
               Image.fromarray(gray.astype(np.int32), "I")):
        assert np.abs(to_rgb_uint8(im).astype(int) - want).max() <= 1, im.mode
    assert _main("image", tmp_path / "g16.png", "-o", tmp_path / "a.png", "--size", "64") == 0, \
        capsys.readouterr().err


# ---------------------------------------------------------------- 8: --params has one line per frame
@pytest.mark.parametrize("out", ["o.mp4", "o.json"])
def test_params_has_one_line_per_frame_and_animate_reads_it(tmp_path, clip, out, capsys):
    late = tmp_path / "late.mp4"  # the first 0.4 s (10 frames) black: no face there
    _ffmpeg("-i", clip, "-vf", "drawbox=enable='lt(t,0.4)':color=black:t=fill", "-c:v", "libx264",
            "-preset", "veryfast", "-c:a", "copy", late)
    jl = tmp_path / "p.jsonl"
    assert _main("video", late, "-o", tmp_path / out, "--params", jl) == 0, capsys.readouterr().err
    lines = [json.loads(x) for x in jl.read_text().splitlines()]
    assert [d["frame"] for d in lines] == list(range(25))
    assert [d["time_ms"] for d in lines] == pytest.approx([40.0 * i for i in range(25)])
    assert all(d["params"] is None and not d["face"] for d in lines[:9])
    assert all(d["face"] and len(d["params"]) == 629 for d in lines[12:])
    anim = tmp_path / "back.json"
    assert _main("animate", "--params", jl, "-o", anim) == 0, capsys.readouterr().err
    doc = json.loads(anim.read_text())
    assert (doc["op"], doc["fr"]) == (25, 25)  # every frame, at the video's rate


def test_a_params_line_reads_back_as_the_avatar_it_was_written_from(tmp_path, capsys):
    """``video --params`` writes each float32 parameter as the shortest
    decimal that reads back as the same float32: rounded to 6 places, a
    value at a rounding edge read back another, and ``animate --params``
    differed from ``video -o OUT.json`` (a colour 0.376 against 0.377); and
    a file of one stamped line is drawn for its ``duration_ms`` (a one-frame
    25 fps video's 40 ms line was drawn 1/30 s; a review, session 70)."""
    from types import SimpleNamespace

    from avatarizer import schema
    from avatarizer.animation import read_params_jsonl
    from avatarizer.cli import params_line

    p = schema.sample(1, seed=5)[0].astype(np.float32)
    p[schema.index("face.r")] = np.float32(0.3764705955982208)  # (a sRGB level: 0.376470 or 0.376471 at 6 places)
    p[schema.index("hair_front.r")] = np.nextafter(np.float32(0.5), np.float32(1))
    avatar = SimpleNamespace(params=p, stale=False)
    src = tmp_path / "one.jsonl"
    src.write_text(params_line(avatar, 0, 0.0, 40.0) + "\n")
    got = read_params_jsonl(src)
    assert len(got) == 1 and np.array_equal(np.asarray(got[0], np.float32), p)
    anim = tmp_path / "one.json"
    assert _main("animate", "--params", src, "-o", anim) == 0, capsys.readouterr().err
    doc = json.loads(anim.read_text())
    assert (doc["op"], doc["fr"]) == (1, 25)  # one frame of 40 ms


def test_read_params_jsonl_holds_the_avatar_over_frames_without_one(tmp_path):
    from avatarizer import schema
    from avatarizer.animation import read_params_jsonl

    a, b = schema.sample(2, seed=3)
    src = tmp_path / "p.jsonl"
    rows = [None, {"params": None}, a.tolist(), {"frame": 3, "params": None}, {"params": b.tolist()}, None]
    src.write_text("".join(json.dumps(r) + "\n" for r in rows))
    got = read_params_jsonl(src)
    assert len(got) == 6
    for g, want in zip(got, [a, a, a, a, b, b]):
        assert np.allclose(g, want, atol=1e-6)
    src.write_text("null\n" + json.dumps({"params": None}) + "\n")
    with pytest.raises(ValueError, match="no frame with an avatar"):
        read_params_jsonl(src)
    src.write_text(json.dumps({"frame": 0}) + "\n")
    with pytest.raises(ValueError, match="line 1"):
        read_params_jsonl(src)


# ---------------------------------------------------------------- 6: phone videos with a rotation
@pytest.fixture(scope="module")
def phone(clip, tmp_path_factory) -> tuple[Path, np.ndarray]:
    """``clip`` at 320x240 stored sideways (240x320) with a 90 degree rotation
    in the file, as phones write it; and its first frame as players show it."""
    folder = tmp_path_factory.mktemp("phone")
    wide, side, rot = folder / "wide.mp4", folder / "side.mp4", folder / "phone.mp4"
    _ffmpeg("-i", clip, "-vf", "scale=320:240,setsar=1", "-c:v", "libx264", "-preset", "veryfast", "-c:a", "copy",
            wide)  # (square pixels: scale alone keeps the 1:1 picture with 3:4 pixels)
    _ffmpeg("-i", wide, "-vf", "transpose=1", "-c:v", "libx264", "-preset", "veryfast", "-c:a", "copy", side)
    _ffmpeg("-i", side, "-c", "copy", "-metadata:s:v:0", "rotate=90", rot)
    raw = subprocess.run(["ffmpeg", "-v", "error", "-i", str(rot), "-frames:v", "1", "-f", "rawvideo",
                          "-pix_fmt", "bgr24", "-"], capture_output=True, check=True).stdout
    shown = np.frombuffer(raw, np.uint8)
    assert shown.size == 320 * 240 * 3, "this ffmpeg did not apply the rotation it wrote"
    return rot, shown.reshape(240, 320, 3)


def _first_frame(path: Path) -> np.ndarray:
    import cv2

    cap = cv2.VideoCapture(str(path))
    ok, frame = cap.read()
    cap.release()
    assert ok
    return frame


@pytest.mark.parametrize("auto", [True, False])
def test_a_phone_video_comes_out_upright(tmp_path, phone, auto, monkeypatch, capsys):
    import cv2

    rot, shown = phone
    if not auto:  # an OpenCV build that reads the rotation but cannot apply it: the CLI turns the frames
        real = cv2.VideoCapture

        class NoAuto:
            def __init__(self, *a):
                self.cap = real(*a)

            def set(self, prop, value):
                return False if prop == cv2.CAP_PROP_ORIENTATION_AUTO else self.cap.set(prop, value)

            def __getattr__(self, name):
                return getattr(self.cap, name)

        monkeypatch.setattr(cv2, "VideoCapture", NoAuto)
    out = tmp_path / "o.mp4"
    assert _main("video", rot, "-o", out, "--layout", "side-by-side") == 0, capsys.readouterr().err
    frame = _first_frame(out)
    assert frame.shape == (240, 640, 3)  # two 320x240 panels: upright, not 240x320
    assert np.abs(frame[:, :320].astype(int) - shown).mean() < 8
    assert _ffprobe(out, "stream_side_data=rotation") == []  # no rotation left for a player to apply twice


@pytest.mark.parametrize("turned", [False, True])
def test_non_square_pixels_come_out_as_players_show_them(tmp_path, clip, turned, capsys):
    """A clip stored 240x240 with 4:3 pixels (shown 320x240; anamorphic
    video, and one of the shared clips, d9, has 15:16 pixels) is written at
    320x240 with square pixels, picture as ffmpeg shows it; with a quarter
    turn in the file too, upright at 240x320."""
    import cv2

    src = tmp_path / "anamorphic.mp4"
    _ffmpeg("-i", clip, "-t", "0.5", "-vf", "scale=240:240,setsar=4/3", "-c:v", "libx264", "-preset", "veryfast",
            "-an", src)
    if turned:
        rot = tmp_path / "turned.mp4"
        _ffmpeg("-i", src, "-c", "copy", "-metadata:s:v:0", "rotate=90", rot)
        src = rot
    raw = subprocess.run(["ffmpeg", "-v", "error", "-i", str(src), "-frames:v", "1", "-vf", "scale='if(gt(sar,1),iw*sar,iw)':'if(gt(sar,1),ih,ih/sar)',setsar=1",
                          "-f", "rawvideo", "-pix_fmt", "bgr24", "-"], capture_output=True, check=True).stdout
    shape = (320, 240, 3) if turned else (240, 320, 3)
    shown = np.frombuffer(raw, np.uint8).reshape(shape)
    out = tmp_path / "o.mp4"
    assert _main("video", src, "-o", out, "--layout", "side-by-side") == 0, capsys.readouterr().err
    frame = _first_frame(out)
    assert frame.shape == (shape[0], 2 * shape[1], 3)
    frame = frame[:, :shape[1]]  # the photo's panel
    assert _ffprobe(out, "stream=sample_aspect_ratio") in ([], ["1:1"], ["N/A"])
    assert np.abs(cv2.GaussianBlur(frame, (5, 5), 0).astype(int)
                  - cv2.GaussianBlur(shown, (5, 5), 0).astype(int)).mean() < 8


# ---------------------------------------------------------------- 7: timing (variable frame rate, start offset)
def _frames(path: Path, size=(256, 256), fps: int | None = None) -> np.ndarray:
    """Every frame of ``path`` as ffmpeg decodes it (at ``fps``: ffmpeg's own constant-rate conversion)."""
    cmd = ["ffmpeg", "-v", "error", "-i", str(path)] + (["-vf", f"fps={fps}"] if fps else []) + [
        "-f", "rawvideo", "-pix_fmt", "gray", "-"]
    raw = subprocess.run(cmd, capture_output=True, check=True).stdout
    return np.frombuffer(raw, np.uint8).reshape(-1, size[1], size[0]).astype(np.int16)


@pytest.fixture(scope="module")
def counter(tmp_path_factory) -> Path:
    """2 s of ffmpeg's test picture (a frame counter and moving patterns; no face) at 25 fps, with a tone."""
    _need_ffmpeg()
    path = tmp_path_factory.mktemp("counter") / "src.mp4"
    _ffmpeg("-f", "lavfi", "-i", "testsrc=size=256x256:rate=25:duration=2", "-f", "lavfi", "-i", "sine=duration=2",
            "-c:v", "libx264", "-preset", "veryfast", "-c:a", "aac", path)
    return path


def test_a_variable_frame_rate_video_keeps_its_timing(tmp_path, counter, capsys):
    vfr = tmp_path / "vfr.mp4"  # 25 fps for 1 s, then 5 fps
    _ffmpeg("-i", counter, "-vf", r"select='lt(t\,1)+not(mod(n\,5))'", "-fps_mode", "vfr", "-c:v", "libx264",
            "-preset", "veryfast", "-c:a", "copy", vfr)
    out = tmp_path / "o.mp4"
    assert _main("video", vfr, "-o", out) == 0, capsys.readouterr().err
    got, want = _frames(out), _frames(vfr, fps=25)  # what a player shows at each 1/25 s
    assert abs(len(got) - len(want)) <= 1, (len(got), len(want))
    n = min(len(got), len(want))
    diff = [float(np.abs(got[k] - want[k]).mean()) for k in range(n)]
    assert max(diff) < 6, [round(d, 1) for d in diff]
    # the sound lasts as long as the picture: this file's header ends its video at 1.52 s, before its
    # last frame (1.8 s), and the sound was cut there (1.53 s of it under a 1.84 s picture)
    assert float(_ffprobe(vfr, "stream=duration")[0]) < 1.6
    picture = float(_ffprobe(out, "stream=duration")[0])
    assert picture > 1.8 and float(_ffprobe(out, "stream=duration", "a:0")[0]) == pytest.approx(picture, abs=0.05)


def test_an_animation_of_a_variable_frame_rate_video_keeps_its_frames(tmp_path, capsys):
    """``video -o OUT.json`` without ``--fps`` takes the rate every frame time
    fits (25 fps here), as the mp4 output does, not OpenCV's average rate
    (under 20 fps), which resampled the dense first half and dropped frames."""
    vfr = tmp_path / "vfr.mp4"  # 2 s of a face: 25 fps for 1 s, then 5 fps
    _ffmpeg("-i", need_shared("data", "video", "d11.mp4"), "-t", "2", "-vf",
            r"scale=256:256,select='lt(t\,1)+not(mod(n\,5))'", "-fps_mode", "vfr", "-c:v", "libx264",
            "-preset", "veryfast", "-an", vfr)
    cap = cv2.VideoCapture(str(vfr))
    average = cap.get(cv2.CAP_PROP_FPS)
    cap.release()
    assert average < 20  # (the rate OpenCV reports)
    assert _main("video", vfr, "-o", tmp_path / "a.json") == 0, capsys.readouterr().err
    assert json.loads((tmp_path / "a.json").read_text())["fr"] == pytest.approx(25)
    assert "at 25 fps" in capsys.readouterr().out


def test_an_animation_of_a_video_whose_base_rate_is_over_60_keeps_every_frame(tmp_path, capsys):
    """A clip of 1 s at 24 fps then 1 s at 30 fps has a base rate of 120
    (over ``MAX_FITTED_FPS``): ``video -o OUT.json`` wrote it at the average
    rate, 27.2 fps, and two of its frames were never shown, while
    ``animate`` on the same run's ``--params`` kept every line at 30 fps (a
    read-only review, helper-418). The video's frames' own times decide the
    rate, as ``animate`` decides it from the lines': 30 fps both ways, the
    same frame count; an mp4 output is written at it too."""
    vfr = tmp_path / "vfr.mp4"
    _ffmpeg("-i", need_shared("data", "video", "d0.mp4"), "-filter_complex",
            "[0:v]trim=0:1,setpts=PTS-STARTPTS,fps=24,scale=192:192[a];"
            "[0:v]trim=1:2,setpts=PTS-STARTPTS,fps=30,scale=192:192[b];[a][b]concat=n=2:v=1:a=0[v]",
            "-map", "[v]", "-fps_mode", "vfr", "-c:v", "libx264", "-preset", "veryfast", "-pix_fmt", "yuv420p",
            "-video_track_timescale", "600", vfr)
    base = Fraction(_ffprobe(vfr, "stream=r_frame_rate")[0])
    assert base > 60, base  # (the header's base rate: the case where the average was taken)
    assert _main("video", vfr, "-o", tmp_path / "a.json", "--params", tmp_path / "a.jsonl") == 0, \
        capsys.readouterr().err
    first = capsys.readouterr().out
    assert _main("animate", "--params", tmp_path / "a.jsonl", "-o", tmp_path / "b.json") == 0, \
        capsys.readouterr().err
    a, b = (json.loads((tmp_path / n).read_text()) for n in ("a.json", "b.json"))
    assert a["fr"] == pytest.approx(30) and b["fr"] == pytest.approx(30), (a["fr"], b["fr"], first)
    assert a["op"] == b["op"]
    lines = (tmp_path / "a.jsonl").read_text().splitlines()
    assert a["op"] >= len(lines)  # (every line has a frame of its own at 30 fps)
    # the mp4 output too: written at the frames' own rate (the average, 27.2 fps, dropped frames), the rate
    # read from the packets' times (videoio._fitted_base_rate)
    from avatarizer import videoio

    assert videoio.probe(vfr).output_rate() == "30/1"
    assert _main("video", vfr, "-o", tmp_path / "o.mp4") == 0, capsys.readouterr().err
    assert _ffprobe(tmp_path / "o.mp4", "stream=r_frame_rate") == ["30/1"]
    assert int(_ffprobe(tmp_path / "o.mp4", "stream=nb_frames")[0]) == a["op"]


def test_a_fitted_rate_is_exact_in_the_streams_own_ticks(tmp_path):
    """The closest pair of a variable-rate video's packets, read as whole
    ticks of its time base (``videoio.gap_rate``): 24 fps then 59.94 fps at
    1/60000 s is 60000/1001 (the times as floats, and a 0.1% whole-number
    rule, made it 60: one frame in 1001 shown twice, the sound drifting from
    the picture); a 1 ms time base's gaps of 33 and 34 ms are 30 fps."""
    from fractions import Fraction

    from avatarizer import videoio

    vfr = tmp_path / "vfr.mp4"
    _ffmpeg("-f", "lavfi", "-i", "testsrc2=size=96x96:rate=60000/1001:duration=2", "-filter_complex",
            "[0:v]split[x][y];[x]trim=0:1,setpts=PTS-STARTPTS,fps=24[a];"
            "[y]trim=1:2,setpts=PTS-STARTPTS,fps=60000/1001[b];[a][b]concat=n=2:v=1:a=0[v]",
            "-map", "[v]", "-fps_mode", "vfr", "-c:v", "libx264", "-preset", "veryfast", "-pix_fmt", "yuv420p",
            "-video_track_timescale", "60000", vfr)
    probe = videoio.probe(vfr)
    assert Fraction(probe.base_rate) > 60 or Fraction(_ffprobe(vfr, "stream=r_frame_rate")[0]) > 60
    assert probe.output_rate() == "60000/1001"
    assert videoio.gap_rate(33, Fraction(1, 1000)) == 30
    assert videoio.gap_rate(25, Fraction(1, 600)) == 24
    assert videoio.gap_rate(1001, Fraction(1, 24000)) == Fraction(24000, 1001)
    assert videoio.gap_rate(5000, Fraction(1, 1000)) == Fraction(1, 5)
    assert videoio.gap_rate(0, Fraction(1, 1000)) is None


def test_a_variable_rate_header_bounds_neither_the_sound_nor_the_frames():
    from avatarizer.videoio import Probe

    cfr = Probe(rate="25/1", base_rate="25/1", duration=2.0, file_duration=3.0)
    vfr = Probe(rate="375/19", base_rate="25/1", duration=1.52, file_duration=2.0)
    assert not cfr.variable_rate and vfr.variable_rate
    assert cfr.sound_limit(0.5) == pytest.approx(2.5)  # the video's start on the file's clock, then its length
    assert cfr.video_end(0.5) == pytest.approx(2.5)
    # variable rate: all of the sound (cut to the frames written), frames up to the file's length
    assert vfr.sound_limit(0.0) is None and vfr.video_end(0.0) == pytest.approx(2.0)
    assert Probe(rate="25/1").sound_limit(0.0) is None and Probe(rate="25/1").video_end(0.0) is None
    assert not Probe(rate="bad", base_rate="25/1").variable_rate


def test_sound_that_starts_late_still_ends_with_the_picture(tmp_path, counter, capsys):
    """A variable-frame-rate video whose sound starts 0.5 s in: the sound
    written is cut where the picture ends, measured from where it starts (its
    length alone was taken for its end: 0.5 s of sound past the picture)."""
    sound = tmp_path / "s.m4a"  # 1.5 s: shorter than the picture, but it ends after it (at 2 s)
    _ffmpeg("-f", "lavfi", "-i", "sine=duration=1.5", "-c:a", "aac", sound)
    vfr = tmp_path / "vfr.mp4"  # 25 fps for 1 s, then 5 fps (1.84 s); the sound from 0.5 s
    _ffmpeg("-i", counter, "-itsoffset", "0.5", "-i", sound, "-map", "0:v", "-map", "1:a", "-vf",
            r"select='lt(t\,1)+not(mod(n\,5))'", "-fps_mode", "vfr", "-c:v", "libx264", "-preset", "veryfast",
            "-c:a", "copy", vfr)
    out = tmp_path / "o.mp4"
    assert _main("video", vfr, "-o", out) == 0, capsys.readouterr().err
    picture = float(_ffprobe(out, "stream=duration")[0])
    start, length = (float(v) for v in _ffprobe(out, "stream=start_time,duration", "a:0")[0].split(","))
    assert start > 0.3 and start + length == pytest.approx(picture, abs=0.05), (start, length, picture)


def test_a_sparse_variable_rate_tail_keeps_its_frames_and_sound(tmp_path, counter, capsys):
    """25 fps for 1 s, then a frame a second: the header ends the video well
    before its last frame (review: 6.1 s announced, the last frame at 8 s),
    and the last frames were taken for broken times and the sound cut short."""
    long_ = tmp_path / "long.mp4"
    _ffmpeg("-f", "lavfi", "-i", "testsrc=size=256x256:rate=25:duration=6", "-f", "lavfi", "-i",
            "sine=duration=6", "-c:v", "libx264", "-preset", "veryfast", "-c:a", "aac", long_)
    vfr = tmp_path / "vfr.mp4"
    _ffmpeg("-i", long_, "-vf", r"select='lt(t\,1)+not(mod(n\,25))'", "-fps_mode", "vfr", "-c:v", "libx264",
            "-preset", "veryfast", "-c:a", "copy", vfr)
    assert float(_ffprobe(vfr, "stream=duration")[0]) < 4.5  # (the header's video length)
    out = tmp_path / "o.mp4"
    assert _main("video", vfr, "-o", out) == 0, capsys.readouterr().err
    picture = float(_ffprobe(out, "stream=duration")[0])
    assert picture > 5.0  # the last frame at 5 s kept its time
    assert float(_ffprobe(out, "stream=duration", "a:0")[0]) == pytest.approx(picture, abs=0.05)


@pytest.mark.parametrize("out", ["o.mp4", "o.json"])
def test_max_seconds_of_a_variable_frame_rate_video_counts_its_times(tmp_path, clip, out, capsys):
    """``--max-seconds`` is time on the video's clock, not a frame count at
    OpenCV's frame rate (the average of a variable-rate file): 0.6 s of a
    clip that is 25 fps up to 0.6 s and thinner after (20 fps on average)
    is its first 15 frames, not 0.6 * 20 = 12 of them (0.48 s)."""
    vfr = tmp_path / "vfr.mp4"  # frames 15..19 (0.6 s to 0.8 s) dropped
    _ffmpeg("-i", clip, "-vf", r"select='not(between(n\,15\,19))'", "-fps_mode", "vfr", "-c:v", "libx264",
            "-preset", "veryfast", "-c:a", "copy", vfr)
    jl = tmp_path / "p.jsonl"
    assert _main("video", vfr, "-o", tmp_path / out, "--max-seconds", "0.6", "--params", jl,
                 *(["--fps", "25"] if out == "o.json" else [])) == 0, capsys.readouterr().err
    times = [json.loads(x)["time_ms"] for x in jl.read_text().splitlines()]
    assert len(times) == 15 and times[-1] < 600, times
    if out == "o.mp4":
        assert _ffprobe(tmp_path / out, "stream=nb_frames") == ["15"]
        assert float(_ffprobe(tmp_path / out, "stream=duration", "a:0")[0]) == pytest.approx(0.6, abs=0.05)
    else:
        assert json.loads((tmp_path / out).read_text())["op"] == 15


def test_animate_follows_the_lines_times(tmp_path, capsys):
    from avatarizer import schema

    p = schema.sample(4, seed=2)
    src = tmp_path / "p.jsonl"  # a variable rate: 40 ms apart, then 120 ms
    src.write_text("".join(json.dumps({"frame": i, "time_ms": t, "face": True, "params": p[i].tolist()}) + "\n"
                           for i, t in enumerate([0, 40, 80, 200])))
    assert _main("animate", "--params", src, "-o", tmp_path / "a.json", "--fps", "25") == 0
    assert json.loads((tmp_path / "a.json").read_text())["op"] == 6  # 0.2 s + the last line's frame (1/25 s)
    # default: the rate at which every line has a frame of its own (25 fps: 40 ms apart), not the average
    # (15 fps: a 30 fps run beside a 10 fps one was resampled at their average and lost frames)
    assert _main("animate", "--params", src, "-o", tmp_path / "b.json") == 0
    assert json.loads((tmp_path / "b.json").read_text())["fr"] == 25


def test_animate_rate_gives_every_stamped_line_a_frame():
    """``animate``'s default rate (``cli._rate_of``): a variable rate's lines
    each get a frame (1000 over the shortest gap, as ``video -o OUT.json``
    writes such a video) up to 60 fps, else the average; whole rates come out
    whole though the stamps are rounded to microseconds (29.9999949 before);
    unstamped or unordered lines: None."""
    from avatarizer.cli import _rate_of

    thirty = [round(i * 1000 / 30, 3) for i in range(31)]
    assert _rate_of(thirty) == 30.0
    vfr = thirty[:20] + [thirty[19] + 800 + 100 * i for i in range(16)]  # 30 fps, a gap, 10 fps
    assert _rate_of(vfr) == 30.0
    ntsc = [round(i * 1001 / 30, 3) for i in range(31)]
    assert _rate_of(ntsc) == 30000 / 1001
    # 59.94 fps beside a slower run: 60000/1001 (the 0.1% whole-number rule read it as 60, its bound)
    ntsc60 = [round(i * 1001 / 60, 3) for i in range(40)] + [1000 + round(i * 1001 / 60, 3) + 200 * i
                                                             for i in range(10)]
    assert _rate_of(ntsc60) == 60000 / 1001
    assert _rate_of([0, 1, 500, 1000]) == pytest.approx(3.0)  # (a 1 ms pair: the average, not 1000 fps)
    assert _rate_of([0, None, 80]) is None and _rate_of([0, 80, 40]) is None and _rate_of([0]) is None
    # a gap too small for a finite rate: the average (round() of an infinite rate raised OverflowError)
    assert _rate_of([0, 5e-324, 1000]) == pytest.approx(2.0)


def test_animate_rate_of_whole_millisecond_stamps_and_a_short_last_line(tmp_path, capsys):
    """Stamps in whole milliseconds (another tool's 30 fps: 0, 33, 67, 100)
    are read in their own ticks: 30 fps, each line one frame (1000/33 =
    30.303 fps held 3 lines of 300 two frames); a last line shown for less
    than the gaps before it (a GIF's 40 ms last frame) gets a frame of its
    own (resampled at 10 fps it was never shown); lines the rate cannot
    keep apart (over 1000 a second: time_ms written in seconds) are said."""
    from avatarizer import schema
    from avatarizer.cli import _rate_of, _resampled

    for fps in (30, 24, 25, 60):
        ms = [round(i * 1000 / fps) for i in range(300)]
        assert _rate_of(ms) == fps, fps
        assert len(_resampled(list(range(300)), [t / 1000 for t in ms], 1 / fps, fps)) == 300
    assert _rate_of([round(i * 1001 / 30) for i in range(300)]) == 30000 / 1001
    assert _rate_of([0, 100, 200], 40) == 25.0 and _rate_of([0, 100, 200]) == 10.0
    p = schema.sample(10, seed=2)
    src = tmp_path / "g.jsonl"
    src.write_text("".join(json.dumps({"time_ms": t, "duration_ms": d, "params": [float(v) for v in p[i]]}) + "\n"
                           for i, (t, d) in enumerate([(0, 100), (100, 100), (200, 40)])))
    assert _main("animate", "--params", src, "-o", tmp_path / "g.json") == 0
    doc = json.loads((tmp_path / "g.json").read_text())
    assert doc["fr"] == 25 and doc["op"] == 6  # 0.24 s: 3 frames, 2, and the last line's 1
    assert "warning" not in capsys.readouterr().err
    src.write_text("".join(json.dumps({"time_ms": 0.04 * i, "params": [float(v) for v in p[i]]}) + "\n"
                           for i in range(10)))
    assert _main("animate", "--params", src, "-o", tmp_path / "s.json") == 0
    assert "warning: 9 of 10 lines are not shown" in capsys.readouterr().err
    # at 3 fps, lines at 0, 100 and 600 ms (the last for 200 ms): 0.8 s is 2 frames; the second line shares the
    # first's, the third is nearest frame 2, past the end: each said for what it is (both were "less than a
    # frame apart"; a review, session 72)
    src.write_text("".join(json.dumps({"time_ms": t, "duration_ms": d, "params": [float(v) for v in p[i]]}) + "\n"
                           for i, (t, d) in enumerate([(0, 100), (100, 500), (600, 200)])))
    assert _main("animate", "--params", src, "-o", tmp_path / "l.json", "--fps", "3") == 0
    err = capsys.readouterr().err
    assert "warning: 1 of 3 lines are not shown: they come less than a frame apart at 3 fps" in err, err
    assert "warning: 1 of 3 lines are not shown: they come after the animation's last frame (2 frames" in err, err
    # a last line under 1/60 s after 20 ms gaps: the lines' own 50 fps (their average, 43 fps, lost 2 of 7);
    # a last line ending half a frame after its own: a frame of its own (the rate's check and the frame count
    # rounded halves apart, and the last line was never shown)
    for t, last, want in (([0, 20, 40, 60, 80, 120, 140], 10, 50.0), ([0, 100, 200], 50, 10.0),
                          ([0, 40, 80, 120], 20, 50.0)):
        rate = _rate_of(t, last)
        assert rate == want, (t, last, rate)
        shown = _resampled(list(range(len(t))), [x / 1000 for x in t], last / 1000, rate)
        assert sorted(set(shown)) == list(range(len(t))), (t, last, shown)
    # a null line (no face: the avatar before it held) has a frame of its own: nothing is said
    src.write_text("".join(json.dumps({"time_ms": 100.0 * i, "params": None if i in (1, 2) else
                                       [float(v) for v in p[i]]}) + "\n" for i in range(4)))
    assert _main("animate", "--params", src, "-o", tmp_path / "n.json") == 0
    assert json.loads((tmp_path / "n.json").read_text())["op"] == 4 and "warning" not in capsys.readouterr().err


@pytest.mark.parametrize("command", ["animate", "video"])
def test_frames_beyond_an_animations_limit_are_refused_before_any_is_made(tmp_path, clip, command, monkeypatch,
                                                                          capsys):
    """Two lines 10**10 ms apart at ``--fps 1000`` made 2e10 frames (a hang,
    then out of memory) before the animation's frame limit was asked: the
    count is worked out from the times and refused first, for ``animate``
    and for ``video -o OUT.json``. (Here the limit is lowered to 100 so the
    old way ran out quickly: it made the frames and added 100 of them.)"""
    import avatarizer.animation as animation
    from avatarizer import schema

    monkeypatch.setattr(animation, "MAX_FRAMES", 100)
    added = []
    real_add = animation.Animation.add
    monkeypatch.setattr(animation.Animation, "add", lambda self, p: (added.append(1), real_add(self, p)))
    if command == "animate":  # 60 s at 1000 fps
        src = tmp_path / "p.jsonl"
        p = [round(float(v), 6) for v in schema.default()]
        src.write_text("".join(json.dumps({"time_ms": t, "params": p}) + "\n" for t in (0, 60_000)))
        argv = ["animate", "--params", src]
    else:  # 1 s of video at 1000 fps
        argv = ["video", clip]
    assert _main(*argv, "-o", tmp_path / "a.json", "--fps", "1000") == 1
    err = capsys.readouterr().err  # (video: the progress line before it)
    line = err.strip().splitlines()[-1]
    assert "Traceback" not in err and "at most 100 frames" in line and "--fps" in line, err
    assert added == [] and not (tmp_path / "a.json").exists()
    if command == "video":  # refused by the header's length before a frame is read (it came after the walk)
        assert "by its header" in line and "frames" not in err.replace(line, ""), err
    # far beyond any float's frame count: refused as fast
    from avatarizer import cli

    with pytest.raises(cli.CLIError, match="at most 100 frames"):
        cli._resampled(["a", "b"], [0.0, 1e300], 1e300, 1000.0)


def test_an_animation_refused_after_the_walk_keeps_the_finished_params(tmp_path, clip, monkeypatch, capsys):
    """A video whose header's length at ``--fps`` is within
    ``LENGTH_MARGIN`` of the frame limit is walked whole, then refused on
    its frames' own times: the finished ``--params`` file was deleted with
    the error (a 20-minute clip's hour of work lost; a review, session 72).
    It is kept, the error says where, and ``animate`` makes the animation
    from it at a rate that fits."""
    import avatarizer.animation as animation

    monkeypatch.setattr(animation, "MAX_FRAMES", 980)  # the 1 s clip at 1000 fps: 1000 frames, within 5% of it
    out, params = tmp_path / "a.json", tmp_path / "p.jsonl"
    assert _main("video", clip, "-o", out, "--fps", "1000", "--params", params) == 1
    line = capsys.readouterr().err.strip().splitlines()[-1]
    assert "at most 980 frames" in line and str(params) in line and "animate --params" in line, line
    assert not out.exists() and _leftovers(tmp_path) == []
    lines = params.read_text().splitlines()
    assert len(lines) == 25 and all(json.loads(x)["params"] is not None for x in lines)
    assert _main("animate", "--params", params, "-o", out, "--fps", "900") == 0, capsys.readouterr().err
    assert json.loads(out.read_text())["op"] == 900


def test_a_long_sound_track_does_not_make_a_video_too_long_to_animate(tmp_path, clip, monkeypatch, capsys):
    """The early refusal reads the video stream's own length: OpenCV's frame
    count of an MKV (no count of its own) is the whole file's length at the
    frame rate, its 60 s sound track included, and a 1 s clip that fits was
    refused before a frame was read (a review, session 33)."""
    import avatarizer.animation as animation

    monkeypatch.setattr(animation, "MAX_FRAMES", 2000)  # 1 s at 1000 fps fits; 60 s would not
    mkv = tmp_path / "long_sound.mkv"
    _ffmpeg("-i", clip, "-f", "lavfi", "-t", "60", "-i", "anullsrc=r=8000:cl=mono", "-map", "0:v", "-map", "1:a",
            "-c:v", "copy", "-c:a", "libopus", mkv)
    assert cv2.VideoCapture(str(mkv)).get(cv2.CAP_PROP_FRAME_COUNT) > 1000  # (OpenCV's count: the sound's length)
    assert _main("video", mkv, "-o", tmp_path / "a.json", "--fps", "1000") == 0, capsys.readouterr().err
    assert json.loads((tmp_path / "a.json").read_text())["op"] == 1000


def test_an_animation_keeps_every_frame_of_a_clip_timed_to_the_millisecond():
    """``_resampled`` (``video -o OUT.json|OUT.svg``, ``animate --params``):
    a 30 fps clip's frames at whole milliseconds (0, 33, 67, 100: a WebM's
    clock, ``--params`` lines) land a third of a millisecond after their
    output frames; each frame was shown at its own output frame's exact
    time only, so every third was dropped and the one before shown twice.
    Each frame is now placed at the output frame nearest its time, as the
    video writer places them; resampling down keeps the frames on the
    output's times; 29.97 fps into 30 drops none in two seconds."""
    from avatarizer import cli

    ms30 = [round(k * 1000 / 30) / 1000 for k in range(60)]
    assert cli._resampled(list(range(60)), ms30, 1 / 30, 30.0) == list(range(60))
    assert cli._resampled(list(range(60)), ms30, 1 / 30, 10.0) == list(range(0, 60, 3))
    assert cli._resampled(list(range(4)), [0.0, 0.1, 0.2, 0.3], 0.1, 30.0) == [0, 0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 3]
    ntsc = [round(k * 1000 / 29.97) / 1000 for k in range(60)]
    assert cli._resampled(list(range(60)), ntsc, 1 / 29.97, 30.0) == list(range(60))
    # two items nearest one output frame: the one nearer its time
    assert cli._resampled(["a", "b", "c", "d"], [0.0, 0.49, 0.52, 1.0], 0.5, 2.0) == ["a", "b", "d"]
    assert cli._resampled(["a", "b", "c", "d"], [0.0, 0.46, 0.51, 1.0], 0.5, 2.0) == ["a", "c", "d"]


def test_a_video_that_starts_after_its_sound_keeps_the_offset(tmp_path, counter, capsys):
    v1, a15, off = tmp_path / "v1.mp4", tmp_path / "a.m4a", tmp_path / "off.mp4"
    _ffmpeg("-t", "1", "-i", counter, "-an", "-c:v", "libx264", "-preset", "veryfast", v1)
    _ffmpeg("-f", "lavfi", "-i", "sine=duration=1.5", "-c:a", "aac", a15)
    _ffmpeg("-itsoffset", "0.5", "-i", v1, "-i", a15, "-map", "0:v", "-map", "1:a", "-c", "copy", off)
    assert _ffprobe(off, "stream=start_time") == ["0.500000"]
    out = tmp_path / "o.mp4"
    assert _main("video", off, "-o", out) == 0, capsys.readouterr().err
    got = _frames(out)
    assert len(got) == 12 + 25  # the first frame shown from 0 until the video starts (0.5 s), then 25
    assert all(np.abs(got[k] - got[12]).mean() < 1 for k in range(12))
    assert np.abs(got[11] - got[36]).mean() > 3  # (the picture moves once the video starts)
    assert float(_ffprobe(out, "stream=duration")[0]) == pytest.approx(1.48, abs=0.05)
    assert float(_ffprobe(out, "stream=start_time", "a:0")[0]) == pytest.approx(0.0, abs=0.03)


def test_constant_rate_places_a_half_frame_offset_without_dropping_frames():
    """Frames of a video that starts half a frame after its sound (times
    k + 0.5 frames, with float noise either way) go to consecutive output
    frames, each once: rounding each time alone dropped every other one
    and doubled its neighbour."""
    from avatarizer.cli import _ConstantRate

    written = []
    rate = 25.0
    out = _ConstantRate(written.append, rate)
    rng = np.random.default_rng(0)
    for k in range(50):
        out.add(k, (k + 0.5) / rate + rng.uniform(-1e-9, 1e-9))
    out.finish()
    # the first frame from the sound's start (half a frame rounds either way), then each frame once
    assert written in (list(range(50)), [0] + list(range(50)))


def test_the_last_frame_of_a_gif_lasts_as_long_as_it_says(tmp_path, capsys):
    """An animated GIF's frames last what each says (here 1 s, 0.5 s, 1 s:
    written at 2 fps): its last frame was written for one output frame, so
    the mp4 lasted 2.0 s instead of 2.5 s (of a GIF of 1 s frames written
    at its 100 fps base rate, 1.01 s of 2 s), and an animation of it ended
    as early. Both now hold it to the GIF's end."""
    _need_ffmpeg()
    from PIL import Image

    from avatarizer.imageio import sample_photo

    face = Image.fromarray(sample_photo()).resize((256, 256))
    frames = [face, face.transpose(Image.Transpose.FLIP_LEFT_RIGHT), face]
    gif = tmp_path / "a.gif"
    frames[0].save(gif, save_all=True, append_images=frames[1:], duration=[1000, 500, 1000])
    out = tmp_path / "o.mp4"
    assert _main("video", gif, "-o", out) == 0, capsys.readouterr().err
    assert float(_ffprobe(out, "stream=duration")[0]) == pytest.approx(2.5, abs=0.02)
    # the summary tells the output's frames from the input's ("5 frames ... a face in 3" read as 2 without one)
    said = capsys.readouterr().out
    assert re.search(r": 5 frames \(2\.50 s of video.*a face in [1-3] of 3 input frames, [0-9.]+ input frames/s ", said), said
    assert _main("video", gif, "-o", tmp_path / "a.json") == 0, capsys.readouterr().err
    doc = json.loads((tmp_path / "a.json").read_text())
    assert (doc["op"] - doc["ip"]) / doc["fr"] == pytest.approx(2.5, abs=0.02)
    # --max-seconds 1.8: the hold stops there (one 0.5 s output frame at 1.5 s; it ran to the GIF's 2.5 s)
    assert _main("video", gif, "-o", out, "--max-seconds", "1.8", "--overwrite") == 0, capsys.readouterr().err
    assert float(_ffprobe(out, "stream=duration")[0]) == pytest.approx(2.0, abs=0.02)
    assert _main("video", gif, "-o", tmp_path / "a.json", "--max-seconds", "1.8", "--overwrite") == 0
    doc = json.loads((tmp_path / "a.json").read_text())
    assert (doc["op"] - doc["ip"]) / doc["fr"] == pytest.approx(2.0, abs=0.02)
    # cut in its last frame (2 of the 3 frames decode): the last decoded frame is not held to the header's end
    data = gif.read_bytes()
    third = [i for i in range(len(data) - 1) if data[i:i + 2] == b"\x21\xf9"][2]  # its graphic control block
    cut = tmp_path / "cut.gif"
    cut.write_bytes(data[: third + (len(data) - third) // 2])
    assert _main("video", cut, "-o", out, "--overwrite") in (0, 3)
    assert float(_ffprobe(out, "stream=duration")[0]) == pytest.approx(1.5, abs=0.02)  # (one 2 fps frame: not 2.5)


def test_progress_is_redrawn_on_a_terminal_and_plain_lines_elsewhere():
    """Progress went to stderr as carriage-return redraws also where stderr
    is a log file or a pipe (hundreds of redraws on one line of the log):
    there it is a line now and then and one at the end; a terminal keeps
    the bar redrawn in place."""
    import io
    import time

    from avatarizer import cli

    class Terminal(io.StringIO):
        def isatty(self):
            return True

    log, term = io.StringIO(), Terminal()
    t0 = time.perf_counter()
    for done in range(5, 101, 5):
        cli._progress(done, 100, t0, log)
        cli._progress(done, 100, t0, term)
    cli._progress_end(log)
    cli._progress_end(term)
    lines = log.getvalue().splitlines()
    assert "\r" not in log.getvalue() and len(lines) == 2, lines  # the first and the last (well within 10 s)
    assert lines[0].startswith("[#") and "5/100 frames" in lines[0] and "100/100 frames" in lines[1]
    assert term.getvalue().count("\r") == 20 and term.getvalue().endswith("\n")
    # a run that never reaches its total (a cut file): its last count is the end's line
    log = io.StringIO()
    t0 = time.perf_counter()
    for done in range(5, 51, 5):
        cli._progress(done, 100, t0, log)
    cli._progress_end(log)
    lines = log.getvalue().splitlines()
    assert len(lines) == 2 and "5/100" in lines[0] and "50/100" in lines[1], lines


def test_every_frame_of_a_gif_is_kept_at_a_rate_its_times_fit(tmp_path, capsys):
    """ffprobe gave a GIF of 100, 500, 250 and 2000 ms frames 4 fps as the
    rate every frame time fits: its second frame was never shown in an
    animation of it (frames 0, 0, 2, 3, ...). The rate comes from the
    frames' durations, as FFmpeg times them (under 20 ms: 100 ms)."""
    from PIL import Image

    from avatarizer import videoio
    from avatarizer.imageio import sample_photo

    face = Image.fromarray(sample_photo()).resize((256, 256))
    frames = [face, face.transpose(Image.Transpose.FLIP_LEFT_RIGHT), face.rotate(5), face.rotate(-5)]
    gif = tmp_path / "g.gif"
    frames[0].save(gif, save_all=True, append_images=frames[1:], duration=[100, 500, 250, 2000])
    info = videoio.probe(gif)
    assert (info.rate, info.video_frames, info.stream_duration) == ("20/1", 4, 2.85)
    params = tmp_path / "g.jsonl"
    assert _main("video", gif, "-o", tmp_path / "g.json", "--params", params) == 0, capsys.readouterr().err
    doc = json.loads((tmp_path / "g.json").read_text())
    assert doc["fr"] == 20 and doc["op"] - doc["ip"] == 57  # 2.85 s
    lines = [json.loads(line) for line in params.read_text().splitlines()]
    assert [d["time_ms"] for d in lines] == [0.0, 100.0, 600.0, 850.0]
    # each line says how long its frame is shown, the last as the output holds it: animate keeps the
    # GIF's 2.85 s (the last line lasted one frame of the lines' rate: 1.0 s in all)
    assert [d["duration_ms"] for d in lines] == [100.0, 500.0, 250.0, 2000.0]
    assert _main("animate", "--params", params, "-o", tmp_path / "a.json") == 0
    doc = json.loads((tmp_path / "a.json").read_text())
    assert (doc["op"] - doc["ip"]) / doc["fr"] == pytest.approx(2.85, abs=1 / doc["fr"])
    frames[0].save(gif, save_all=True, append_images=frames[1:], duration=[10, 500, 0, 20])
    assert videoio.probe(gif).rate == "50/1" and videoio.probe(gif).stream_duration == pytest.approx(0.72)
    # a GIF made from 30 fps video stores 30, 30 and 40 ms: its common step (10 ms) wrote it at 100 fps;
    # the lowest whole rate up to 60 at which no two frames share an output frame is 30
    from fractions import Fraction

    assert videoio.image_rate([30, 30, 40] * 10) == 30 and videoio.image_rate([1000, 500, 1000]) == 2
    assert videoio.image_rate([10] * 5) == 100 and videoio.image_rate([33, 33, 34] * 5) == 30
    assert isinstance(videoio.image_rate([40] * 3), Fraction)


@pytest.mark.parametrize("fmt", ["PNG", "WEBP"])
def test_an_animated_png_or_webp_keeps_its_frames_times(tmp_path, fmt, capsys):
    """OpenCV's FFmpeg gave an animated PNG's frames broken times (2 s of
    APNG became 0.1 s of video) and could not decode an animated WebP at
    all; both are read by Pillow, each frame as long as the file says."""
    from PIL import Image

    from avatarizer import videoio
    from avatarizer.imageio import sample_photo

    face = Image.fromarray(sample_photo()).resize((256, 256))
    frames = [face, face.transpose(Image.Transpose.FLIP_LEFT_RIGHT), face.rotate(5)]
    src = tmp_path / f"a.{fmt.lower()}"
    frames[0].save(src, format=fmt, save_all=True, append_images=frames[1:], duration=[1000, 500, 1000],
                   lossless=True)
    info = videoio.probe(src)
    assert (info.rate, info.video_frames, info.stream_duration) == ("2/1", 3, 2.5)
    cap = videoio.capture(src)
    got = []
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        got.append((cap.get(cv2.CAP_PROP_POS_MSEC), frame))
    cap.release()
    assert [t for t, _ in got] == [0.0, 1000.0, 1500.0]
    assert np.array_equal(got[1][1][:, :, ::-1], np.asarray(frames[1]))  # (BGR, as OpenCV's frames)
    assert _main("video", src, "-o", tmp_path / "a.json") == 0, capsys.readouterr().err
    doc = json.loads((tmp_path / "a.json").read_text())
    assert doc["fr"] == 2 and (doc["op"] - doc["ip"]) / doc["fr"] == pytest.approx(2.5)
    if shutil.which("ffmpeg") and shutil.which("ffprobe"):
        out = tmp_path / "o.mp4"
        assert _main("video", src, "-o", out) == 0, capsys.readouterr().err
        assert float(_ffprobe(out, "stream=duration")[0]) == pytest.approx(2.5, abs=0.02)
    # a still PNG is no animation: left to OpenCV, as before
    face.save(tmp_path / "still.png")
    assert videoio.animated_image(tmp_path / "still.png") is None


def _apng(width, height, frames):
    """An animated PNG (RGB) of ``width``×``height`` whose frames are ``(w, h, rows)``: a frame of w×h
    whose image data holds ``rows`` rows (all of them: h); the first frame is the default image."""
    import struct
    import zlib

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    out = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
    out += chunk(b"acTL", struct.pack(">II", len(frames), 0))
    seq = 0
    for n, (w, h, rows) in enumerate(frames):
        out += chunk(b"fcTL", struct.pack(">IIIIIHHBB", seq, w, h, 0, 0, 1, 10, 0, 0))
        seq += 1
        data = zlib.compress((b"\0" + b"\x80" * (w * 3)) * rows)
        if n == 0:
            out += chunk(b"IDAT", data)
        else:
            out += chunk(b"fdAT", struct.pack(">I", seq) + data)
            seq += 1
    return out + chunk(b"IEND", b"")


def test_an_animated_png_is_checked_as_a_photo_is_before_its_frames_are_decoded(tmp_path, capsys):
    """An animated PNG that ``load_image`` would refuse from its header or
    its data (a size over ``MAX_SIDE``; a frame whose data holds a few of
    its rows; a frame outside the image) is refused by ``video`` before
    any frame is decoded, the file named: its frames went to Pillow
    unchecked (a 511-byte file declaring 12000×12000 took 1.5 GB before the
    size was refused, one whose 8000×8000 frames held 4 rows each was
    written as a video of grey frames, exit 0). A whole one plays."""
    from avatarizer import videoio

    cases = {"huge.png": _apng(12000, 12000, [(12000, 12000, 4)] * 2),
             "short_first.png": _apng(256, 256, [(256, 256, 4), (256, 256, 256)]),
             "short_second.png": _apng(256, 256, [(256, 256, 256), (256, 256, 4)]),
             "outside.png": _apng(256, 256, [(256, 256, 256), (300, 256, 256)])}
    whole = _apng(256, 256, [(256, 256, 256), (256, 256, 256)])
    at = whole.index(b"fdAT") + 12  # (a byte of the second frame's data: its CRC no longer matches)
    cases["crc.png"] = whole[:at] + bytes([whole[at] ^ 0xFF]) + whole[at + 1:]
    for name, data in cases.items():
        src = tmp_path / name
        src.write_bytes(data)
        with pytest.raises(ValueError, match=name):
            videoio.animated_image(src)
        with pytest.raises(OSError, match=name):
            videoio.capture(src)
        assert _main("video", src, "-o", tmp_path / f"{name}.json") == 1
        err = capsys.readouterr().err
        assert name in err and "Traceback" not in err, err
        assert not (tmp_path / f"{name}.json").exists()
    whole = tmp_path / "whole.png"
    whole.write_bytes(_apng(256, 256, [(256, 256, 256), (128, 128, 128)]))
    im, durations = videoio.animated_image(whole)
    im.close()
    assert durations == [100.0, 100.0]  # (1/10 s each)


def test_the_last_frame_is_held_to_the_streams_own_end_only():
    """``Probe.last_shown``: the stream's own duration decides (not the
    file's, which a longer sound track sets), between one frame and
    ``MAX_LAST_FRAME_S`` (at most that); else one frame."""
    from avatarizer.cli import _ConstantRate
    from avatarizer.videoio import MAX_LAST_FRAME_S, Probe

    step = 0.04
    assert Probe(stream_duration=2.0).last_shown(0.0, 1.0, step) == pytest.approx(1.0)
    assert Probe(stream_duration=2.0).last_shown(0.5, 1.0, step) == pytest.approx(1.5)  # (its start offset)
    assert Probe(stream_duration=1.02).last_shown(0.0, 1.0, step) == step  # (under a frame)
    assert Probe(stream_duration=MAX_LAST_FRAME_S + 2).last_shown(0.0, 1.0, step) == MAX_LAST_FRAME_S  # (at most)
    assert Probe(duration=9.0, file_duration=9.0).last_shown(0.0, 1.0, step) == step  # (only the file's)
    # never under one step: a GIF of 655.35 s frames (the format's longest delay) lost its last frame in an
    # animation (capped at 10 s, shorter than half an output frame; a review, session 71)
    assert Probe(stream_duration=4 * 655.36).last_shown(0.0, 3 * 655.35, 655.35) == 655.35
    written = []
    out = _ConstantRate(written.append, 10.0)
    out.add("a", 0.0)
    out.add("b", 0.2)
    out.finish(1.0)
    assert written == ["a", "a"] + ["b"] * 10
    written.clear()  # (no length known, or --max-seconds stopped the walk: one frame)
    out = _ConstantRate(written.append, 10.0)
    out.add("a", 0.0)
    out.add("b", 0.2)
    out.finish(None)
    assert written == ["a", "a", "b"]


class _FakeCap:
    def __init__(self, times_ms):
        self.times, self.i = list(times_ms), -1

    def read(self):
        self.i += 1

    def get(self, prop):
        return self.times[self.i]


def test_clock_keeps_a_long_pause_and_refuses_wild_times():
    """A 12 s pause without frames in a variable-frame-rate video keeps its
    timing when the file is that long (the clock took every time after it
    for a broken one and ran 12 s early), and a time beyond the video's
    length is still wild (one frame interval after the last)."""
    from avatarizer.cli import MAX_FRAME_GAP_S, _Clock

    times = [0, 40, 80, 14_000, 14_040, 9e9, 14_120]
    cap = _FakeCap(times)
    clock = _Clock(cap, 25.0, 0.0, end=16.0)
    got = []
    for _ in times:
        cap.read()
        got.append(round(clock.time(), 3))
    assert got == [0.0, 0.04, 0.08, 14.0, 14.04, 14.08, 14.12]
    cap = _FakeCap(times)
    clock = _Clock(cap, 25.0, 0.0)  # length unknown: a gap over MAX_FRAME_GAP_S is a broken time
    assert 14.0 > MAX_FRAME_GAP_S
    for _ in range(4):
        cap.read()
        t = clock.time()
    assert round(t, 3) == 0.12


def test_size_beyond_what_h264_holds_is_a_usage_error(tmp_path, capsys):
    """--size 8192 on a 3:2 clip makes 8192x5462 frames, beyond H.264's
    largest level (139,264 macroblocks): exit 2 before any model loads, no
    output; 5888 on the same clip fits."""
    from avatarizer import videoio

    _need_ffmpeg()
    clip = tmp_path / "wide.mp4"
    _ffmpeg("-f", "lavfi", "-i", "testsrc=size=384x256:rate=25", "-t", "0.2", clip)
    out = tmp_path / "out.mp4"
    assert _main("video", clip, "-o", out, "--size", 8192) == 2
    assert "macroblocks" in capsys.readouterr().err and not out.exists()
    assert videoio.macroblocks(8192, 5462) > videoio.MAX_MACROBLOCKS >= videoio.macroblocks(5888, 3926)
    assert videoio.macroblocks(8192, 4352) == videoio.MAX_MACROBLOCKS


def test_a_file_cut_without_reencoding_is_not_reported_truncated(tmp_path, counter, capsys):
    """``ffmpeg -ss 0.5 -c copy`` (and a phone's or an editor's trim) keeps the
    frames before the cut, which the file's edit list skips: the header's
    nb_frames (50) counts them, the stream's own duration (1.5 s) does not.
    The whole cut (37-38 frames) was reported as truncated, exit status 3
    (a read-only review, helper-374); it is whole: exit 0, no warning."""
    from avatarizer.videoio import probe

    cut = tmp_path / "cut.mp4"
    _ffmpeg("-ss", "0.5", "-i", counter, "-c", "copy", cut)
    assert _ffprobe(cut, "stream=nb_frames") == ["50"]  # (the premise: the header counts the skipped frames)
    assert probe(cut).video_frames == 37
    out = tmp_path / "o.mp4"
    assert _main("video", cut, "-o", out) == 0
    err = capsys.readouterr().err
    assert "truncated" not in err
    assert abs(float(_ffprobe(out, "stream=duration")[0]) - 1.5) < 0.1


def test_a_still_image_is_refused_as_a_video(tmp_path, capsys):
    """A photo given to ``video`` was read by OpenCV as a one-frame video and
    written as a 40 ms clip, exit 0; it is refused in one line naming the
    ``image`` command (an animated GIF stays a video: other tests)."""
    from PIL import Image

    from avatarizer.imageio import sample_photo

    for name in ("p.jpg", "p.png", "p.gif"):  # (a GIF of one frame, too: FFmpeg read it as a 0.1 s video)
        src = tmp_path / name
        Image.fromarray(sample_photo()).save(src)
        assert _main("video", src, "-o", tmp_path / "o.mp4") == 1
        err = capsys.readouterr().err
        assert "is a still image" in err and "avatarizer image" in err and err.count("\n") == 1
        assert not (tmp_path / "o.mp4").exists()
        # live, as video (it showed the photo as a one-frame video, exit 0)
        assert _main("live", src, "--frames", "2") == 1
        err = capsys.readouterr().err
        assert "is a still image" in err and err.count("\n") == 1
    # a camera's MPO (the photo and a preview) and a TIFF of two pages: still pictures too (each was written
    # as a one-frame 40 ms video, exit 0; a review, session 71); ``image`` draws the first
    photo = Image.fromarray(sample_photo())
    photo.save(tmp_path / "m.jpg", format="MPO", save_all=True, append_images=[photo.resize((64, 64))])
    photo.save(tmp_path / "t.tif", save_all=True, append_images=[photo.rotate(10)])
    for name, kind in (("m.jpg", "MPO"), ("t.tif", "TIFF")):
        assert _main("video", tmp_path / name, "-o", tmp_path / "o.json") == 1
        err = capsys.readouterr().err
        assert f"is a still image ({kind})" in err and "avatarizer image" in err and err.count("\n") == 1, err
        assert not (tmp_path / "o.json").exists()
        assert _main("image", tmp_path / name, "-o", tmp_path / f"{name}.svg") == 0
        assert (tmp_path / f"{name}.svg").stat().st_size > 1000
        capsys.readouterr()
    # ... but the still formats are named (videoio.STILL_FORMATS): an animated AVIF stays an animation, also
    # without ffprobe (taken for a still as "not an animated format", a review)
    from PIL import features

    from avatarizer import videoio

    if features.check("avif"):
        frames = [Image.new("RGB", (64, 64), c) for c in ("red", "blue", "green")]
        frames[0].save(tmp_path / "a.avif", save_all=True, append_images=frames[1:], duration=100)
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(videoio.shutil, "which", lambda name: None)
            assert videoio.still_image(tmp_path / "a.avif") is None
            assert videoio.still_image(tmp_path / "m.jpg") == "MPO"
    # with ffprobe too: an MPO under another name (FFmpeg: a stream of two JPEG pictures), an icon's sizes
    (tmp_path / "m.bin").write_bytes((tmp_path / "m.jpg").read_bytes())
    photo.save(tmp_path / "i.ico", sizes=[(16, 16), (32, 32), (64, 64)])
    assert videoio.still_image(tmp_path / "m.bin") == "MPO" and videoio.still_image(tmp_path / "i.ico") == "ICO"


def test_a_video_wider_than_the_largest_side_is_refused_naming_the_file(tmp_path, capsys):
    """Frames over ``MAX_SIDE`` (an animated GIF 8200 pixels wide, which
    OpenCV decodes) are refused in one line that names the file; the
    pipeline's refusal of the frame as an array named no file."""
    from PIL import Image

    from avatarizer.imageio import MAX_SIDE

    src = tmp_path / "wide.gif"
    frames = [Image.new("RGB", (MAX_SIDE + 8, 40), c) for c in ("red", "blue")]
    frames[0].save(src, save_all=True, append_images=frames[1:], duration=100)
    assert _main("video", src, "-o", tmp_path / "o.json") == 1
    err = capsys.readouterr().err
    assert "wide.gif" in err and f"more than {MAX_SIDE}" in err and err.count("\n") == 1, err


def test_video_streams_pillow_opens_as_one_picture_are_not_still_images(tmp_path, counter):
    """A raw MJPEG stream (an IP camera's dump) opens in Pillow as one JPEG and
    an MPEG-2 elementary stream as "MPEG": both are videos (helper-377); a
    JPEG photo is a still."""
    from PIL import Image

    from avatarizer.imageio import sample_photo
    from avatarizer.videoio import still_image

    mjpeg, m2v, photo = tmp_path / "cam.mjpeg", tmp_path / "es.m2v", tmp_path / "p.jpg"
    _ffmpeg("-i", counter, "-an", "-c:v", "mjpeg", "-f", "mjpeg", mjpeg)
    _ffmpeg("-i", counter, "-an", "-c:v", "mpeg2video", "-f", "mpeg2video", m2v)
    Image.fromarray(sample_photo()).save(photo)
    assert still_image(mjpeg) is None and still_image(m2v) is None
    assert still_image(photo) == "JPEG"


def test_the_default_sound_track_is_kept_and_the_others_said(tmp_path, capsys):
    """A film with a dub and the original: the first sound track was kept
    whatever the file marks as default, and the others dropped silently."""
    _need_ffmpeg()
    src = need_shared("data", "video", "d11.mp4")
    two = tmp_path / "two.mp4"
    _ffmpeg("-t", "1", "-i", src, "-f", "lavfi", "-t", "1", "-i", "anullsrc=r=22050:cl=mono",
            "-map", "0:v", "-map", "1:a", "-map", "0:a", "-vf", "scale=256:256", "-c:v", "libx264",
            "-preset", "veryfast", "-c:a", "aac", "-ar:a:0", "22050", "-ar:a:1", "44100",
            "-disposition:a:0", "0", "-disposition:a:1", "default", two)
    assert _ffprobe(two, "stream=sample_rate", "a") == ["22050", "44100"]
    out = tmp_path / "o.mp4"
    assert _main("video", two, "-o", out) == 0, capsys.readouterr().err
    assert "track 2 of 2 (the input's default)" in capsys.readouterr().out
    assert _ffprobe(out, "stream=sample_rate", "a") == ["44100"]


def test_animate_one_stamped_line_lasts_its_duration(tmp_path, capsys):
    """One line with ``time_ms`` 0 and ``duration_ms`` 2000 (a still from
    ``video --params``): the animation was one frame, 1/30 s; it lasts 2 s."""
    from avatarizer import schema

    src = tmp_path / "one.jsonl"
    src.write_text(json.dumps({"time_ms": 0.0, "duration_ms": 2000.0,
                               "params": [float(v) for v in schema.default()]}) + "\n")
    assert _main("animate", "--params", src, "-o", tmp_path / "a.json") == 0, capsys.readouterr().err
    doc = json.loads((tmp_path / "a.json").read_text())
    assert doc["fr"] == 30 and doc["op"] - doc["ip"] == 60
    assert _main("animate", "--params", src, "-o", tmp_path / "b.json", "--fps", "10") == 0
    doc = json.loads((tmp_path / "b.json").read_text())
    assert doc["fr"] == 10 and doc["op"] - doc["ip"] == 20


def test_with_no_sound_track_marked_default_the_first_is_kept_and_said(tmp_path, capsys):
    _need_ffmpeg()
    src = need_shared("data", "video", "d11.mp4")
    two = tmp_path / "two.mkv"
    _ffmpeg("-t", "1", "-i", src, "-map", "0:v", "-map", "0:a", "-map", "0:a", "-vf", "scale=256:256",
            "-c:v", "libx264", "-preset", "veryfast", "-c:a", "aac", "-disposition:a:0", "0",
            "-disposition:a:1", "0", two)
    assert _main("video", two, "-o", tmp_path / "o.mp4") == 0, capsys.readouterr().err
    assert "track 1 of 2 (the first: none is marked default)" in capsys.readouterr().out


def _damaged_clip(tmp_path: Path) -> tuple[Path, int]:
    """3 s of clip d0 re-encoded (H.264, no sound), 4,000 bytes in its
    middle overwritten with noise: a damaged packet mid-file."""
    _need_ffmpeg()
    src = need_shared("data", "video", "d0.mp4")
    whole = tmp_path / "whole.mp4"
    _ffmpeg("-i", src, "-t", "6", "-c:v", "libx264", "-preset", "veryfast", "-an", whole)
    data = bytearray(whole.read_bytes())
    at = len(data) // 2
    data[at:at + 4000] = np.random.default_rng(0).integers(0, 256, 4000, dtype=np.uint8).tobytes()
    bad = tmp_path / "damaged.mp4"
    bad.write_bytes(bytes(data))
    return bad, int(_ffprobe(whole, "stream=nb_frames")[0])


def test_a_damaged_packet_mid_file_does_not_end_the_video(tmp_path, capsys):
    """One damaged packet ended the walk there (12 of 78 frames written):
    decoding goes on after it, the frames before the damage shown in its
    place, with a warning and exit status 3."""
    bad, frames = _damaged_clip(tmp_path)
    out = tmp_path / "o.mp4"
    assert _main("video", bad, "-o", out) == 3
    err = capsys.readouterr().err
    assert "could not be decoded (a damaged file)" in err and "ended after" not in err, err[-800:]
    assert int(_ffprobe(out, "stream=nb_frames")[0]) >= frames - 2


def test_a_truncated_files_last_failed_read_is_no_lost_frame(tmp_path, capsys):
    """A file cut short with its index at the front (``+faststart``): a
    read fails on the partial packet and the decoder then gives the frame
    it held. The 45 frames decoded, 40 ms apart, were reported as "ended
    after 46" with "1 frame(s) could not be decoded ... the frame before
    each is shown in its place", which did not happen (a review): frames
    lost are the failed reads that the decoded frames' times skip."""
    _need_ffmpeg()
    src = need_shared("data", "video", "d0.mp4")
    whole = tmp_path / "fs.mp4"
    _ffmpeg("-i", src, "-t", "3.2", "-c", "copy", "-an", "-movflags", "+faststart", whole)
    data = whole.read_bytes()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: int(len(data) * 0.6)])
    out, jl = tmp_path / "o.mp4", tmp_path / "o.jsonl"
    assert _main("video", cut, "-o", out, "--params", jl) == 3
    err = capsys.readouterr().err
    lines = [json.loads(x) for x in jl.read_text().splitlines()]
    times = np.diff([x["time_ms"] for x in lines])
    assert len(lines) > 10 and np.allclose(times, times[0], atol=1.0), times  # (no frame is missing between)
    assert "could not be decoded" not in err, err[-600:]
    assert f"ended after {len(lines)} of the" in err, err[-600:]


def test_frames_lost_are_the_failed_reads_the_times_skip():
    """``videoio.lost_frames`` (``video`` and ``live`` alike): no more than the
    failed reads, none where the decoded frames' times are unbroken, as many
    as the times skip otherwise."""
    from avatarizer.videoio import lost_frames

    assert lost_frames(0, 0.0, 1.76, 0.04, 45) == 0
    assert lost_frames(1, 0.0, 1.76, 0.04, 45) == 0  # 45 frames, 40 ms apart: none missing
    assert lost_frames(4, 0.0, 3.08, 0.04, 74) == 4  # 78 frames' span, 74 decoded
    assert lost_frames(2, 0.0, 3.08, 0.04, 74) == 2  # (at most the failed reads: a variable rate's pause)
    assert lost_frames(3, None, None, 0.04, 0) == 3  # (no times: as read)


def test_a_params_file_that_cannot_be_written_is_named(tmp_path, clip, monkeypatch, capsys):
    """A full disk while writing --params said "No space left on device"
    with no file name (the temporary file was the one written)."""
    import errno

    from avatarizer import cli

    real = cli.params_line
    calls = [0]

    def full(*a, **k):
        calls[0] += 1
        if calls[0] > 3:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(*a, **k)

    monkeypatch.setattr(cli, "params_line", full)
    out, jl = tmp_path / "o.mp4", tmp_path / "o.jsonl"
    assert _main("video", clip, "-o", out, "--params", jl, "--max-seconds", "0.5") == 1
    err = capsys.readouterr().err
    assert f"could not write {jl}: No space left on device" in err, err[-500:]
    assert _leftovers(tmp_path) == [] and not out.exists() and not jl.exists()


def test_an_animated_png_of_fractional_delays_keeps_every_frame():
    """A 60 fps APNG (``ffmpeg -f apng``) stores 16.667 ms delays: their
    common step in whole ms (17) gave 58.8 fps and two of 120 frames fell on
    one output frame and were lost; 24 fps's 41.667 ms the same (238 of 240
    kept). Fractional delays take the lowest whole rate their times fit (a
    review, session 66)."""
    import numpy as np

    from avatarizer import videoio

    for fps, n in ((60, 120), (24, 240), (30, 30)):
        durations = [1000 / fps] * n
        rate = videoio.image_rate(durations)
        assert rate == fps, (fps, rate)
        starts = np.concatenate([[0.0], np.cumsum(durations[:-1])]) / 1000.0
        assert len(np.unique(np.round(starts * float(rate)))) == n


def test_a_16_bit_grey_animated_png_is_read_as_a_still_one_is(tmp_path):
    """Pillow's 16-bit grey (``I;16``) frames of an animated PNG were read
    with ``convert("RGB")``, which clips at 255: almost white frames, no
    face found. They are scaled to 8 bits, as a still 16-bit PNG is."""
    import numpy as np
    from PIL import Image

    from avatarizer import videoio
    from avatarizer.imageio import sample_photo

    grey = np.asarray(Image.fromarray(sample_photo()).convert("L").resize((96, 96)), np.uint16) * 257
    frames = [Image.fromarray(grey), Image.fromarray(grey[:, ::-1].copy())]
    assert frames[0].mode.startswith("I;16")
    path = tmp_path / "g16.png"
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=[100, 100])
    im = Image.open(path)
    assert getattr(im, "n_frames", 1) == 2
    cap = videoio.ImageFrames(im, [100.0, 100.0])
    ok, frame = cap.read()
    cap.release()
    assert ok and abs(float(frame.mean()) - float(grey.mean()) / 257) < 2, frame.mean()


def test_a_slideshow_is_written_at_the_rate_its_slides_fit(tmp_path):
    """ffmpeg's slideshow recipe (the concat demuxer, 4 s a photo) says a
    base rate of 1/4 fps and an average of 0.291 (the header's duration
    short of the last hold): the average was taken, and the slides changed
    at 0, 3.4, 6.9, 10.3, 17.2 s (a review, session 66). An average over
    1% above the base rate has the frames' own times decide: 1/4."""
    from avatarizer import videoio

    for i in range(4):
        _ffmpeg("-f", "lavfi", "-i", f"color=c=0x{40 * i + 20:02x}4060:s=64x64:d=0.04", "-frames:v", "1",
                tmp_path / f"s{i}.png")
    (tmp_path / "list.txt").write_text("".join(f"file 's{i}.png'\nduration 4\n" for i in range(4))
                                       + "file 's3.png'\n")
    slides = tmp_path / "slides.mp4"
    _ffmpeg("-f", "concat", "-i", tmp_path / "list.txt", "-fps_mode", "vfr", "-pix_fmt", "yuv420p",
            "-c:v", "libx264", slides)
    base, avg = _ffprobe(slides, "stream=r_frame_rate,avg_frame_rate")[0].split(",")
    assert base == "1/4" and Fraction(avg) > Fraction(1, 4) * Fraction(101, 100), (base, avg)
    info = videoio.probe(slides)
    assert info.output_rate() == "1/4" and info.fitted


@pytest.mark.parametrize("jitter", ["0.012*sin(N*2.3)", "0.01*sin(N*1.3)"])
def test_a_recording_without_an_average_rate_is_not_written_at_its_time_base(tmp_path, jitter):
    """A browser's recording (MediaRecorder's WebM: millisecond times, no
    frame duration, no length) says a base rate of 1000 (its time base) and
    no average: it was written at 1000 fps, each frame about 40 times. The
    frames' own times decide (``videoio._fitted_base_rate``): jittered 25 fps
    frames are written at the lowest whole rate at which none is lost (at
    +-10 ms the closest pair's whole rate, 35, put two on one output frame:
    a review, session 66)."""
    import numpy as np

    from avatarizer import videoio

    src = tmp_path / "v.webm"
    _ffmpeg("-f", "lavfi", "-i", "testsrc2=size=96x96:rate=25:duration=2", "-vf",
            f"settb=1/1000,setpts='floor((N/25+{jitter})*1000)'", "-fps_mode", "passthrough",
            "-enc_time_base", "1/1000", "-c:v", "libvpx", "-deadline", "realtime", "-f", "webm", "-live", "1",
            tmp_path / "t.webm")
    data = (tmp_path / "t.webm").read_bytes()
    i = data.find(b"\x23\xe3\x83")  # DefaultDuration -> an unknown element, as a browser leaves it out
    assert i > 0
    src.write_bytes(data[:i] + b"\x23\xe3\x84" + data[i + 3:])
    base, avg = _ffprobe(src, "stream=r_frame_rate,avg_frame_rate")[0].split(",")
    assert base == "1000/1" and avg == "0/0", (base, avg)
    info = videoio.probe(src)
    rate = Fraction(info.output_rate())
    assert 25 <= rate <= 60 and info.fitted, rate
    n = np.arange(50)
    amp, k = (0.012, 2.3) if "2.3" in jitter else (0.01, 1.3)
    times = np.floor((n / 25 + amp * np.sin(n * k)) * 1000) / 1000
    assert len(np.unique(np.round(times * float(rate)))) == 50  # (no two frames on one output frame)


@pytest.mark.parametrize("output", ["o.mp4", "o.json"])
def test_a_damaged_first_packet_does_not_refuse_the_file(tmp_path, capsys, output):
    """4,000 bytes of noise at the start of the video data: OpenCV fails
    the first read and decodes the rest (ffmpeg and ``live`` show 53
    frames), but ``video`` read the first frame once and refused the file
    as "not a video file" (a review, session 66). The start is read past
    damage as the rest is: the frames decoded are written, with the
    damage warning and exit status 3."""
    _need_ffmpeg()
    clean = tmp_path / "clean.mp4"
    _ffmpeg("-i", need_shared("data", "video", "d0.mp4"), "-vf", "scale=256:256", "-c:v", "libx264", "-g", "25",
            "-an", "-movflags", "+faststart", clean)
    data = bytearray(clean.read_bytes())
    i = data.find(b"mdat") + 8
    data[i:i + 4000] = np.random.default_rng(1).integers(0, 256, 4000, dtype=np.uint8).tobytes()
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(bytes(data))
    cap = cv2.VideoCapture(str(bad))
    reads = [cap.read()[0] for _ in range(3)]
    cap.release()
    assert reads[0] is False and reads[1] is True  # (the case: the first read fails, the next ones decode)
    assert _main("video", bad, "-o", tmp_path / output) == 3
    err = capsys.readouterr().err
    assert "could not be decoded (a damaged file)" in err and "could not decode" not in err, err[-800:]
    assert (tmp_path / output).stat().st_size > 0
