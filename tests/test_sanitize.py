"""The C library under the sanitizers (issue #15), in the normal test run.

``make sanitize`` is the long form (libFuzzer, more runs); these are the
bounded versions: a two-thread render under ThreadSanitizer and a few seconds
of API fuzzing under AddressSanitizer + UndefinedBehaviorSanitizer.
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess

import pytest

from conftest import ROOT

NATIVE = ROOT / "native"


def _cc() -> str:
    cc = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")
    if not cc:
        pytest.skip("no C compiler (make sysdeps installs one with libcairo2-dev)")
    return cc


def _build(tmp_path, name: str, sources: list[str], flags: list[str]) -> str:
    cairo = subprocess.run(["pkg-config", "--cflags", "--libs", "cairo"], capture_output=True, text=True)
    if cairo.returncode != 0:
        pytest.skip("pkg-config cannot find cairo (make sysdeps)")
    exe = str(tmp_path / name)
    cmd = [_cc(), "-g", "-O1", "-std=c11", "-Wall", "-Wextra", "-Werror", "-fno-omit-frame-pointer",
           f"-I{NATIVE}", *flags, *sources, *cairo.stdout.split(), "-lm", "-pthread", "-o", exe]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    return exe


def test_two_renderers_on_two_threads_are_tsan_clean(tmp_path):
    """Defect 11: the un-premultiply table was filled lazily by whichever thread
    drew first; two renderers drawing at once raced on it (TSan: 5 of 5 runs).
    One of the two draws in bands on its own helper threads (C API 1.2)."""
    exe = _build(tmp_path, "threads-tsan", [str(NATIVE / "tests" / "threads.c"), str(NATIVE / "avz.c")],
                 ["-fsanitize=thread"])
    env = dict(os.environ, TSAN_OPTIONS=f"suppressions={NATIVE / 'tests' / 'tsan.supp'} halt_on_error=1 "
                                        "exitcode=66")
    for _ in range(3):
        res = subprocess.run([exe], capture_output=True, text=True, timeout=120, env=env)
        assert res.returncode == 0, res.stderr[-4000:]
        assert "the same" in res.stdout


def test_c_api_fuzz_bounded_asan_ubsan(tmp_path):
    """A few seconds of the API fuzzer (native/tests/fuzz_api.c) under ASan and
    UBSan: NaN/inf/out-of-range parameters, wrong counts, bad sizes, strides,
    transforms, zoom and formats must come back as status codes."""
    exe = _build(tmp_path, "fuzz_api", [str(NATIVE / "tests" / "fuzz_api.c"), str(NATIVE / "avz.c")],
                 ["-DAVZ_FUZZ_MAIN", "-fsanitize=address,undefined", "-fno-sanitize-recover=undefined"])
    corpus = sorted(str(p) for p in (NATIVE / "tests" / "corpus").iterdir())
    assert corpus
    env = dict(os.environ, ASAN_OPTIONS="detect_leaks=1:abort_on_error=0", UBSAN_OPTIONS="print_stacktrace=1")
    res = subprocess.run([exe, "4", "1", *corpus], capture_output=True, text=True, timeout=120, env=env)
    assert res.returncode == 0, (res.stdout + res.stderr)[-4000:]
    m = re.search(r"(\d+) inputs in [\d.]+ s \((\d+) drew an avatar\), no crash", res.stdout)
    assert m, res.stdout
    runs, drew = int(m.group(1)), int(m.group(2))
    assert runs > 500 and drew > 20, res.stdout  # the fuzzer reached the drawing code


def test_rows_any_legal_stride_apart_asan_ubsan(tmp_path):
    """avz_render with rows up to INT_MAX bytes apart (native/tests/far_rows.c,
    lazily backed mappings): cairo's and pixman's int y * stride wrapped past
    2**31 and the rows beyond were written out of bounds (SIGSEGV at stride
    2**30, 9 rows); every row must now be drawn as a tight render draws it."""
    exe = _build(tmp_path, "far_rows", [str(NATIVE / "tests" / "far_rows.c"), str(NATIVE / "avz.c")],
                 ["-fsanitize=address,undefined", "-fno-sanitize-recover=undefined"])
    env = dict(os.environ, ASAN_OPTIONS="detect_leaks=1:abort_on_error=0", UBSAN_OPTIONS="print_stacktrace=1")
    res = subprocess.run([exe], capture_output=True, text=True, timeout=300, env=env)
    if res.returncode == 3:  # (the system would not map the sparse buffers: nothing was checked)
        pytest.skip("could not map the sparse test buffers here: " + res.stdout.strip()[-300:])
    assert res.returncode == 0, (res.stdout + res.stderr)[-4000:]
    assert "every row drawn" in res.stdout, res.stdout
