"""cffi API-mode build of the native renderer (native/avz.c against native/avz.h).

``python bindings/build_avz.py`` compiles ``avatarizer._avz`` in place into
``sdk/avatarizer/`` (what ``make native`` does after a C change); ``pip
install`` (wheel or editable) reaches the same builder through ``setup.py``'s
``cffi_modules``.
"""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from cffi import FFI

ROOT = Path(__file__).resolve().parents[1]
NATIVE = ROOT / "native"


def _cdef_from_header() -> str:
    """The declarations cffi needs, taken from the public header itself."""
    text = (NATIVE / "avz.h").read_text()
    text = re.sub(r"/\*.*?\*/", "", text, flags=re.S)
    body = text.split('extern "C" {', 1)[1].split("#ifdef __cplusplus", 1)[0]
    body = "\n".join(l for l in body.splitlines() if not l.strip().startswith("#"))
    defines = "\n".join(f"#define {m} ..." for m in re.findall(r"#define (AVZ_[A-Z_]+) \d+", text))
    return defines + "\n" + body


def _pkg_config(flag: str) -> list[str]:
    """``pkg-config FLAG cairo``; ``$AVZ_CAIRO_PREFIX`` (a cairo installed under
    that prefix, as ``.ci/build-cairo`` makes for the release wheel) comes first."""
    env = dict(os.environ)
    prefix = os.environ.get("AVZ_CAIRO_PREFIX")
    if prefix:
        pc = str(Path(prefix) / "lib" / "pkgconfig")
        if not Path(pc, "cairo.pc").is_file():
            sys.exit(f"AVZ_CAIRO_PREFIX={prefix} holds no lib/pkgconfig/cairo.pc")
        env["PKG_CONFIG_PATH"] = os.pathsep.join(filter(None, [pc, env.get("PKG_CONFIG_PATH")]))
    try:
        out = subprocess.run(["pkg-config", flag, "cairo"], check=True, capture_output=True, text=True,
                             env=env).stdout
    except (OSError, subprocess.CalledProcessError):
        sys.exit("pkg-config cannot find cairo: install libcairo2-dev (apt; in a clone of the repository "
                 "`make sysdeps` does) and pkg-config")
    return out.split()


#: the cairo this build links, as a file the extension depends on: ``$AVZ_CAIRO_PREFIX`` resolved, or
#: nothing (the system's); rewritten only when that changes, so a change rebuilds the extension
#: (setuptools reused ./build's extension, linked against the other cairo: a wheel built after one
#: with the prefix kept its RUNPATH, and the reverse kept the system's cairo; a review, session 72)
CAIRO_STAMP = ROOT / "bindings" / "_build" / "cairo_prefix.txt"


def _cairo_stamp() -> Path:
    prefix = os.environ.get("AVZ_CAIRO_PREFIX")
    want = str(Path(prefix).resolve()) if prefix else ""
    if not CAIRO_STAMP.is_file() or CAIRO_STAMP.read_text(encoding="utf-8") != want:
        CAIRO_STAMP.parent.mkdir(parents=True, exist_ok=True)
        CAIRO_STAMP.write_text(want, encoding="utf-8")
    return CAIRO_STAMP


def make_builder(relative: bool = True) -> FFI:
    """setuptools wants source paths relative to the project root (where
    setup.py runs); a direct compile needs absolute ones."""
    path = (lambda p: os.path.relpath(p, ROOT)) if relative else str
    cflags = _pkg_config("--cflags")
    ffi = FFI()
    ffi.cdef(_cdef_from_header())
    ffi.set_source(
        "avatarizer._avz",
        '#include "avz.h"',
        sources=[path(NATIVE / "avz.c")],
        include_dirs=[path(NATIVE)] + [f[2:] for f in cflags if f.startswith("-I")],
        library_dirs=[f[2:] for f in _pkg_config("--libs-only-L") if f.startswith("-L")],
        libraries=["cairo", "m", "pthread"],
        # a change to the headers alone rebuilds it (setuptools reused ./build's object: a regenerated
        # avz_schema.h shipped a renderer built against the old parameter layout), and so does another cairo
        depends=[path(NATIVE / "avz.h"), path(NATIVE / "avz_schema.h"), path(_cairo_stamp())],
        # the cairo of $AVZ_CAIRO_PREFIX at run time too, not only at link time (the system's was loaded)
        runtime_library_dirs=[str(Path(os.environ["AVZ_CAIRO_PREFIX"]).resolve() / "lib")]
        if os.environ.get("AVZ_CAIRO_PREFIX") else [],
        # -ftree-vectorize: GCC's -O2 leaves the pixel loops (un-premultiply) scalar
        extra_compile_args=["-O2", "-ftree-vectorize", "-std=c11", "-Wall", "-Wno-unused-function"],
    )
    return ffi


ffibuilder = make_builder(relative=True)

if __name__ == "__main__":
    build = ROOT / "bindings" / "_build"
    build.mkdir(exist_ok=True)
    lib = make_builder(relative=False).compile(tmpdir=str(build), verbose=False)
    target = ROOT / "sdk" / "avatarizer" / Path(lib).name
    for stale in target.parent.glob("_avz*.so"):
        stale.unlink()
    Path(lib).replace(target)
    print(f"built {target.relative_to(ROOT)}")
