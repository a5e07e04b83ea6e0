"""The scripts in benchmarks/: nonsense arguments and unusable inputs end in one line
on stderr and a non-zero status (2: usage, 1: the run cannot be done), never a traceback."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest
from conftest import ROOT

BENCH = ROOT / "benchmarks"


def _script(name: str, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "sdk"), os.environ.get("PYTHONPATH", "")]),
           "GLOG_minloglevel": "2"}
    return subprocess.run([sys.executable, str(BENCH / name), *args], capture_output=True, text=True,
                          timeout=timeout, env=env, cwd=ROOT)


def _error_lines(res: subprocess.CompletedProcess, prog: str) -> list[str]:
    assert "Traceback" not in res.stderr, res.stderr
    return [line for line in res.stderr.splitlines() if line.startswith(f"{prog}: error:")]


def test_e2e_bad_frames_is_a_usage_error_in_one_line():
    res = _script("e2e.py", "--frames", "0")
    assert res.returncode == 2  # (argparse's: the count is checked as it is parsed)
    assert _error_lines(res, "e2e.py") == ["e2e.py: error: argument --frames: must be >= 1, not 0"], res.stderr


def test_bench_main_missing_video_is_one_line(tmp_path, capsys):
    from avatarizer.bench import main

    assert main(["--video", str(tmp_path / "no.mp4"), "--frames", "1"], prog="e2e.py") == 1
    err = capsys.readouterr().err
    assert f"e2e.py: error: no such video file or folder: {tmp_path / 'no.mp4'}" in err.splitlines(), err
    assert "Traceback" not in err


def test_an_empty_video_path_is_refused_not_the_working_folder(capsys):
    """``--video ''`` is ``Path('')``, the working folder: ``bench`` timed
    whatever clips sat there (helper-441) and ``video_frame.py`` took the
    shared clips."""
    from avatarizer.bench import main, video_source

    with pytest.raises(ValueError, match="empty"):
        video_source("")
    assert main(["--video", "", "--frames", "1"], prog="bench") == 1
    assert "bench: error: the video path is empty" in capsys.readouterr().err
    res = _script("video_frame.py", "--video", "", "--frames", "1")
    assert res.returncode == 1 and "Traceback" not in res.stderr, res.stderr
    assert "video_frame.py: error: the video path is empty" in res.stderr


@pytest.mark.parametrize("script", ["overlay.py", "attributes.py", "render.py"])
def test_a_missing_video_is_one_line(script, tmp_path):
    """The benchmarks that time ``avatarizer bench``'s frames take ``--video``
    as it does (its frames' source line names the option); a path that is
    not there ends in one line and status 1."""
    missing = tmp_path / "no.mp4"
    res = _script(script, "--video", str(missing), "--frames", "2")
    assert res.returncode == 1
    assert _error_lines(res, script) == [f"{script}: error: no such video file or folder: {missing}"], res.stderr


def test_render_reads_the_video_before_the_photos(tmp_path):
    """``benchmarks/render.py`` reads ``--video`` before it runs its photos
    through ``Avatarizer``: a missing clip is its one line at once (a folder
    of photos it cannot read is not reached)."""
    faces = tmp_path / "faces"
    faces.mkdir()
    (faces / "x.jpg").write_bytes(b"not a jpeg")  # read first, this would fail with another error
    missing = tmp_path / "no.mp4"
    res = _script("render.py", "--faces", str(faces), "--video", str(missing), "--frames", "2")
    assert res.returncode == 1
    assert _error_lines(res, "render.py") == [f"render.py: error: no such video file or folder: {missing}"], res.stderr


def test_stream_decode_refuses_a_clip_shorter_than_frames():
    """Decoded in the loop, a clip is not looped: with fewer frames than --frames the
    runs would stop short and the undelivered frames count as time 0 (fps 0.0)."""
    from conftest import need_shared

    clip = need_shared("data", "video", "d0.mp4")  # 78 frames
    res = _script("stream.py", "--decode", "--video", str(clip), "--frames", "90", "--warmup", "10",
                  "--repeats", "1")
    assert res.returncode == 2
    assert _error_lines(res, "stream.py") == [f"stream.py: error: --decode: {clip} has only 78 frames, "
                                              "fewer than --frames 90"], res.stderr


def test_onnx_cpu_without_fp32_prints_no_ratio():
    """The shipped models are fp16 and int8 only: "vs fp32" is n/a (null in the JSON), not 1.00."""
    import json

    from avatarizer.models import DEFAULT_FOLDER, Manifest

    try:
        Manifest.load(DEFAULT_FOLDER).find("image_to_face", "fp32")
        has_fp32 = True
    except Exception:
        has_fp32 = False
    if has_fp32:
        pytest.skip("this models folder has an fp32 image_to_face model")
    res = _script("onnx_cpu.py", "--runs", "2", "--warmup", "0", "--batches", "1")
    assert res.returncode == 0, res.stderr
    rows = [line.split() for line in res.stdout.splitlines() if line.startswith(("fp16", "int8"))]
    assert rows and all(r[-1] == "n/a" for r in rows), res.stdout
    res = _script("onnx_cpu.py", "--runs", "2", "--warmup", "0", "--batches", "1", "--json")
    ratios = json.loads(res.stdout)["p50_ratio_vs_fp32"]
    assert ratios and all(v == {"1": None} for v in ratios.values()), ratios
    # ... and int8 against fp16, the shipped pair, from the same round robin
    vs_fp16 = json.loads(res.stdout)["p50_ratio_int8_vs_fp16"]
    assert set(vs_fp16) == {"1"} and vs_fp16["1"] > 0, vs_fp16
    # a batch size given twice is timed once (both runs went into one row: n twice --runs; a review, session 75)
    res = _script("onnx_cpu.py", "--runs", "2", "--warmup", "0", "--batches", "1", "1", "--json")
    rows = json.loads(res.stdout)["results"]
    assert all(len(r) == 1 and r["1"]["n"] == 2 for r in rows.values()), rows


@pytest.mark.parametrize("script, args, message", [
    ("onnx_cpu.py", ["--runs", "0"], "argument --runs: must be >= 1, not 0"),
    ("render.py", ["--sizes", "abc"], "argument --sizes: not an integer: 'abc'"),
    ("render.py", ["--repeats", "0"], "argument --repeats: must be >= 1, not 0"),
    ("animation.py", ["--repeats", "0"], "argument --repeats: must be >= 1, not 0"),
])
def test_nonsense_counts_are_usage_errors(script, args, message):
    res = _script(script, *args)
    assert res.returncode == 2
    assert _error_lines(res, script) == [f"{script}: error: {message}"], res.stderr


def test_animation_unknown_clip_is_a_usage_error():
    from conftest import need_shared

    need_shared("data", "video")
    res = _script("animation.py", "--clips", "nope")
    assert res.returncode == 2
    lines = _error_lines(res, "animation.py")
    assert len(lines) == 1 and "--clips: no 30 fps clip of >= 300 frames named nope" in lines[0], res.stderr


def test_framing_bad_arguments_and_folders_are_one_line(tmp_path):
    res = _script("framing.py", "--photos", "0")
    assert res.returncode == 2 and _error_lines(res, "framing.py") == [
        "framing.py: error: argument --photos: must be >= 1, not 0"], res.stderr
    res = _script("framing.py", str(tmp_path / "none"))
    assert res.returncode == 1 and _error_lines(res, "framing.py") == [
        f"framing.py: error: {tmp_path / 'none'} is not a folder of photos"], res.stderr
    res = _script("framing.py", str(tmp_path))
    assert res.returncode == 1 and _error_lines(res, "framing.py") == [
        f"framing.py: error: no .jpg or .png photos in {tmp_path}"], res.stderr


@pytest.mark.parametrize("script, args, status, message", [
    ("artist.py", ["--faces", "0"], 2, "argument --faces: must be >= 1, not 0"),
    ("artist.py", ["--warmup", "-5"], 2, "argument --warmup: must be >= 0, not -5"),
    ("attributes.py", ["--frames", "0"], 2, "argument --frames: must be >= 1, not 0"),
    ("render_threads.py", ["--sizes", "abc"], 2, "argument --sizes: expected comma-separated whole numbers"),
    ("render_threads.py", ["--video", "/nonexistent/no.mp4"], 1, "no such video file or folder"),
    ("video_frame.py", ["--video", "/nonexistent/no.mp4"], 1, "no such video file or folder"),
    ("stability.py", ["/nonexistent/no.mp4"], 2, "not a video file: /nonexistent/no.mp4"),
    ("stability.py", ["--frames", "0"], 2, "argument --frames: must be >= 1, not 0"),
    ("gpu.py", ["--device", "cpu", "--photos", "/nonexistent"], 2, "--photos /nonexistent: not a folder"),
])
def test_more_scripts_end_bad_arguments_in_one_line(script, args, status, message):
    """These ended in a traceback (IndexError, KeyError, ValueError, FileNotFoundError), some after
    minutes of work (gpu.py's report was lost after the whole run on a lent GPU)."""
    res = _script(script, *args)
    lines = _error_lines(res, script)
    assert res.returncode == status and len(lines) == 1 and message in lines[0], res.stderr


def test_gpu_out_is_checked_before_any_measurement(tmp_path):
    taken = tmp_path / "report.json"
    taken.write_text("mine")
    for out, message in ((taken, "already exists"), (tmp_path / "no" / "r.json", "its folder does not exist")):
        res = _script("gpu.py", "--device", "cpu", "--out", str(out))
        lines = _error_lines(res, "gpu.py")
        assert res.returncode == 2 and len(lines) == 1 and message in lines[0], res.stderr
    assert taken.read_text() == "mine"


def test_render_baseline_that_cannot_load_is_one_line(tmp_path):
    bad = tmp_path / "_avz.so"
    bad.write_bytes(b"not an extension")
    for path in (tmp_path / "missing.so", bad):
        res = _script("render.py", "--baseline", str(path), "--scenes", "sampled")
        assert res.returncode == 1 and "Traceback" not in res.stderr
        assert f"--baseline {path}: not a loadable extension module" in res.stderr, res.stderr


def test_render_refuses_a_faces_folder_that_is_not_there(tmp_path):
    """``benchmarks/render.py --faces DIR`` with no such folder left the
    photos out without a word and timed clip frames only (status 0)."""
    missing = tmp_path / "nowhere"
    res = _script("render.py", "--faces", str(missing), "--photos", "5", "--frames", "2", "--repeats", "2",
                  "--no-slow", "--sizes", "64", "--json")
    assert res.returncode == 1
    assert _error_lines(res, "render.py") == [f"render.py: error: --faces {missing} is no folder of .jpg photos "
                                              "(--photos 0 for clip frames only)"], res.stderr


def test_gpu_json_is_the_json_alone():
    """``gpu.py --json`` printed its plain summary after the JSON object (a
    read-only review, helper-420: ``json.load`` failed with "Extra data"),
    also where no GPU answers (here, or on a GPU machine whatever it finds)."""
    import json

    res = _script("gpu.py", "--json", "--calls", "2", "--warmup", "1", "--frames", "1", timeout=300)
    assert "Traceback" not in res.stderr, res.stderr
    doc = json.loads(res.stdout)  # (the whole of stdout)
    assert isinstance(doc, dict) and "environment" in doc


def test_onnx_cpu_standin_without_torch_is_one_line(tmp_path):
    """``--standin`` without torch: pytest's ``Skipped`` (a BaseException)
    came through as a traceback, exit 1 (helper-420); now one line naming
    the extras, exit 2."""
    code = ("import runpy, sys\n"
            "sys.modules['torch'] = None\n"
            f"sys.argv = ['onnx_cpu.py', '--standin', '--runs', '2']\n"
            f"runpy.run_path({str(BENCH / 'onnx_cpu.py')!r}, run_name='__main__')\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "sdk"), os.environ.get("PYTHONPATH", "")])}
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env, cwd=ROOT)
    assert res.returncode == 2 and "Traceback" not in res.stderr, res.stderr
    assert res.stderr.strip().splitlines() == ["onnx_cpu.py: --standin needs torch (pip install -e '.[export,dev]')"]


def test_stability_json_has_null_where_too_few_frames_give_no_measure():
    """``stability.py --json`` printed ``NaN`` (not JSON) for the jitter and
    mouth lag of runs too short to measure them (helper-420)."""
    import importlib.util
    import json

    spec = importlib.util.spec_from_file_location("_avz_stability", BENCH / "stability.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    out = mod._nan_as_null({"a": float("nan"), "b": [1.0, float("inf"), {"c": -float("inf")}], "d": 2, "e": "x"})
    assert out == {"a": None, "b": [1.0, None, {"c": None}], "d": 2, "e": "x"}
    json.dumps(out, allow_nan=False)


@pytest.mark.skipif(not (ROOT.parent / "shared" / "data" / "video" / "d3.mp4").is_file(),
                    reason="needs ../shared/data/video/d3.mp4 (the shared clips)")
def test_video_frame_runs_on_a_shared_clip():
    """``video_frame.py`` timed the identity stage's ``_compute`` through a
    wrapper of one argument: since the stage passes ``as_photo`` (a72c311)
    every run ended in a TypeError at the first frame. A short real run."""
    import json

    clip = ROOT.parent / "shared" / "data" / "video" / "d3.mp4"
    res = _script("video_frame.py", "--frames", "12", "--warmup", "2", "--video", str(clip), "--json", timeout=300)
    assert res.returncode == 0 and "Traceback" not in res.stderr, res.stderr[-2000:]
    out = json.loads(res.stdout)
    assert out["frames"] == 12
    for part in ("mediapipe", "merge", "render", "end_to_end", "landmarks_only"):
        row = out["parts"][part]
        assert row["n"] == 12 and 0 < row["p50_ms"] <= row["p95_ms"] <= row["max_ms"], (part, row)


@pytest.mark.parametrize("script, args, line", [
    ("render.py", ("--sizes", "16385"), "render.py: error: argument --sizes: sizes must be in 1..16384, got 16385"),
    ("render.py", ("--seed", "-1"), "render.py: error: argument --seed: expected a seed from 0 to 2**64 - 1, got -1"),
    ("onnx_cpu.py", ("--threads", "100000"), "onnx_cpu.py: error: argument --threads: expected 0..256 threads, "
                                             "got 100000"),
])
def test_a_size_seed_or_thread_count_out_of_range_is_a_usage_error(script, args, line):
    """A size over the renderer's ended in its traceback (or a 37 GiB
    allocation) after the avatars were built; seed -1 in schema.sample's
    traceback; 100,000 ONNX Runtime threads hung (a review, session 77)."""
    res = _script(script, *args)
    assert res.returncode == 2 and _error_lines(res, script) == [line], res.stderr


def test_a_broken_extra_attribute_model_is_one_line_before_any_frame(tmp_path):
    bad = tmp_path / "bad.onnx"
    bad.write_text("not a model")
    res = _script("attributes.py", "--model", str(bad), "--frames", "1", "--warmup", "0")
    lines = _error_lines(res, "attributes.py")
    assert res.returncode == 1 and len(lines) == 1 and str(bad) in lines[0], res.stderr
    assert "frames:" not in res.stdout  # (refused before the frames were read)


def test_align_loops_its_frames_to_the_count_asked(monkeypatch, tmp_path):
    """align.py read the clips once: more frames than they hold came back
    fewer, reported as asked (a review, session 77)."""
    import importlib.util

    import numpy as np

    spec = importlib.util.spec_from_file_location("_avz_align_bench", BENCH / "align.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    monkeypatch.setattr(mod, "_distinct_frames", lambda n, sq: ([np.zeros((4, 4, 3), np.uint8)] * min(n, 3), "x"))
    frames, source = mod.load_frames(7)
    assert len(frames) == 7 and "looped to 7" in source
