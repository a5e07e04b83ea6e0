# Avatarizer: everything a fresh machine needs is installed from here.
#   make demo   runtime only: system build deps, .venv with the runtime package, the native renderer, the demo
#   make test   adds the test/training side (pytest, pycairo, CairoSVG, scikit-image, torch, avatarizer-export)
#   make dist-check   builds wheel + sdist in a clean clone and checks them in fresh venvs (.ci/run calls it)
SHELL := /bin/bash
# the first of these on PATH (MediaPipe 0.10.21 has wheels for 3.9-3.12; the project needs >= 3.10);
# `make demo PY=python3.X` picks another
PY ?= $(shell for p in python3.11 python3.12 python3.10 python3; do command -v $$p >/dev/null && { echo $$p; break; }; done)
VENV := .venv
VPY := $(VENV)/bin/python
RT_STAMP := $(VENV)/.runtime-stamp
DEV_STAMP := $(VENV)/.dev-stamp
SHARED ?= ../shared
# Debian/Ubuntu packages: what `make demo` needs (compiler, Python headers and
# venv, libcairo; libGL and GLib for the OpenCV that MediaPipe brings; ffmpeg, which `avatarizer video`
# writes browser-playable H.264 with the sound through), and what `make test` adds (valgrind runs the C example, git for dist-check's clean clone; chromium renders
# the animation tests' Lottie/SVG frames, with node/npm, tried when missing (sysdeps-test);
# xvfb + xauth give `avatarizer live` a virtual display in tests (xvfb-run -a), and
# libsm6/libice6/libxext6 are the X libraries OpenCV's Qt window needs, which a
# desktop has and a minimal image may not).
APT_DEMO := build-essential pkg-config libcairo2-dev python3 python3-dev python3-venv ca-certificates libgl1 libglib2.0-0 \
	ffmpeg
APT_TEST := valgrind git xz-utils patch xvfb xauth libsm6 libice6 libxext6
# what `make dist` adds to the demo's (a clean clone, the bundled cairo's sources unpacked and patched)
APT_DIST := git xz-utils patch

.PHONY: all demo test test-gpu native sysdeps sysdeps-test venv dev models clean valgrind bench-render profile-render example gallery \
	dist-check dist sanitize sanitize-deps webdeps bench-animation

all: native

# Installs only the missing packages, with sudo unless already root. A name that an installed
# package provides counts as installed (Ubuntu 24.04's libglib2.0-0t64 provides libglib2.0-0, which
# dpkg-query never reports installed: apt ran on every make).
define apt_install
	@if [ "$(SYSDEPS)" = 0 ]; then exit 0; fi; \
	provided=$$(dpkg-query -W -f='$${db:Status-Abbrev}|$${Provides}\n' 2>/dev/null | \
	  awk -F'|' '$$1 ~ /^ii/ && $$2 != "" {print $$2}' | tr ',' '\n' | sed 's/ *(.*//; s/^ *//; s/:any$$//'); \
	missing=$$(for p in $(1); do dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "ok installed" || \
	  grep -qxF -- "$$p" <<< "$$provided" || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	  if ! command -v apt-get >/dev/null; then \
	    echo "missing system packages: $$missing (no apt-get here: install their equivalents by hand, then run" \
	      "make with SYSDEPS=0, which skips this check)" >&2; exit 1; \
	  fi; \
	  if [ "$$(id -u)" != 0 ] && ! command -v sudo >/dev/null; then \
	    echo "missing system packages: $$missing (not root and no sudo here: install them as root," \
	      "apt-get install $$missing, or run make as root; SYSDEPS=0 skips this check)" >&2; exit 1; \
	  fi; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  echo "installing $$missing (apt)"; \
	  $$SUDO apt-get update -qq && \
	  $$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	fi
endef

sysdeps:
	$(call apt_install,$(APT_DEMO))

sysdeps-test: sysdeps
	$(call apt_install,$(APT_TEST))
	@# chromium, nodejs and npm: tried, not required (without them the browser tests skip with the reason;
	@# Ubuntu has no apt package chromium, only a snap, and the whole list failed there); not root, no sudo
	@# or no apt-get: said, and make goes on, where it stopped with "sudo: command not found"
	@if [ "$(SYSDEPS)" != 0 ]; then \
	  want=$$( { command -v chromium >/dev/null || echo chromium; }; \
	    { command -v node >/dev/null && command -v npm >/dev/null; } || echo nodejs npm ); \
	  if [ -n "$$want" ]; then \
	    if ! command -v apt-get >/dev/null || { [ "$$(id -u)" != 0 ] && ! command -v sudo >/dev/null; }; then \
	      echo "not installed: "$$want" (no apt-get, or not root and no sudo): the tests that play the" \
	        "animations and the H.264 output in a browser will skip" >&2; \
	    else \
	      SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	      echo "installing "$$want" (apt; the browser tests and the animation tests' pinned lottie-web)"; \
	      $$SUDO apt-get update -qq || true; \
	      for p in $$want; do \
	        $$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$p \
	          >/dev/null 2>&1 || echo "$$p could not be installed (apt): the browser tests will skip" >&2; \
	      done; \
	    fi; \
	  fi; \
	fi

# Runtime: the package and its wheels-only dependencies (no torch, no pycairo).
$(RT_STAMP): pyproject.toml setup.py | sysdeps
	@test -x $(VPY) || { \
	  if [ -z "$(PY)" ] || ! $(PY) -c 'import sys; sys.exit(not (3, 10) <= sys.version_info[:2] <= (3, 12))' 2>/dev/null; \
	  then echo "needs Python 3.10-3.12 (MediaPipe 0.10.21's wheels); found: $$($(or $(PY),python3) --version 2>/dev/null || echo no $(or $(PY),python3)). Install one (apt-get install python3.11 python3.11-venv python3.11-dev where the distribution has it; else a python.org or pyenv build) and pass PY=python3.X" >&2; exit 1; fi; \
	  $(PY) -m venv $(VENV); }
	@$(VPY) -c 'import sys; sys.exit(not (3, 10) <= sys.version_info[:2] <= (3, 12))' || { \
	  echo "the existing $(VENV) runs $$($(VPY) --version 2>&1); the project needs Python 3.10-3.12 (MediaPipe" \
	    "0.10.21's wheels): remove it (rm -rf $(VENV)) and run make again (PY=python3.X picks the Python)" >&2; exit 1; }
	@$(VPY) -m pip --version >/dev/null 2>&1 || $(VPY) -m ensurepip --upgrade >/dev/null  # (a venv made without pip)
	$(VPY) -m pip install -q --upgrade pip "setuptools>=77" wheel "cffi>=1.16"
	$(VPY) -m pip install -q -e . --no-build-isolation
	@touch $(RT_STAMP)

# Tests and training: the dev extra (pycairo compiles from source: pip builds
# it in isolation with meson-python from the index) and avatarizer-export.
$(DEV_STAMP): $(RT_STAMP) export/pyproject.toml | sysdeps-test
	$(VPY) -m pip install -q "torch==2.13.0"
	$(VPY) -m pip install -q "pycairo>=1.25"   # isolated build: pip fetches meson-python and ninja
	$(VPY) -m pip install -q -e ".[dev]" --no-build-isolation
	$(VPY) -m pip install -q -e ./export --no-build-isolation
	@touch $(DEV_STAMP)

venv: $(RT_STAMP)
dev: $(DEV_STAMP)

native: $(RT_STAMP) sdk/avatarizer/data/schema.json
	$(VPY) bindings/build_avz.py

# The C example program, built against the public header only.
example: sysdeps
	mkdir -p native/build
	$(CC) -O2 -Wall -Wextra -Werror -std=c11 -Inative native/example.c native/avz.c \
	  $$(pkg-config --cflags --libs cairo) -lm -pthread -o native/build/avz_example

valgrind: example sysdeps-test
	valgrind --error-exitcode=3 --leak-check=full --errors-for-leak-kinds=definite \
	  native/build/avz_example native/build/example

# Sanitizer builds of the C library (issue #15): ASan+UBSan on the example,
# the two-thread test and the API fuzzer (libFuzzer when clang is there, else
# the fuzzer's own driver), TSan on two renderers drawing on two threads.
# FUZZ_SECONDS bounds the fuzz run.
FUZZ_SECONDS ?= 20
SAN := native/build/san
SAN_CFLAGS := -g -O1 -std=c11 -Wall -Wextra -Werror -fno-omit-frame-pointer -Inative
SAN_LIBS = $$(pkg-config --cflags --libs cairo) -lm -pthread
ASAN := -fsanitize=address,undefined -fno-sanitize-recover=undefined

sanitize-deps: sysdeps
	@if [ "$(SYSDEPS)" != 0 ] && ! command -v clang >/dev/null; then \
	  echo "installing clang (apt; libFuzzer for make sanitize)"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && $$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq clang >/dev/null || true; \
	fi

sanitize: sanitize-deps
	mkdir -p $(SAN)
	$(CC) $(SAN_CFLAGS) $(ASAN) native/example.c native/avz.c $(SAN_LIBS) -o $(SAN)/example-asan
	$(CC) $(SAN_CFLAGS) $(ASAN) native/tests/threads.c native/avz.c $(SAN_LIBS) -o $(SAN)/threads-asan
	$(CC) $(SAN_CFLAGS) -fsanitize=thread native/tests/threads.c native/avz.c $(SAN_LIBS) -o $(SAN)/threads-tsan
	ASAN_OPTIONS=detect_leaks=1 $(SAN)/example-asan $(SAN)/example
	ASAN_OPTIONS=detect_leaks=1 $(SAN)/threads-asan
	for i in 1 2 3 4 5; do \
	  TSAN_OPTIONS="suppressions=native/tests/tsan.supp halt_on_error=1 exitcode=66" $(SAN)/threads-tsan || exit 1; \
	done
	@if command -v clang >/dev/null; then \
	  set -ex; clang $(SAN_CFLAGS) -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
	    native/tests/fuzz_api.c native/avz.c $(SAN_LIBS) -o $(SAN)/fuzz_api; \
	  rm -rf $(SAN)/corpus; mkdir -p $(SAN)/corpus; \
	  $(SAN)/fuzz_api -max_total_time=$(FUZZ_SECONDS) -seed=1 -rss_limit_mb=2048 -artifact_prefix=$(SAN)/ \
	    $(SAN)/corpus native/tests/corpus; \
	else \
	  set -ex; $(CC) $(SAN_CFLAGS) $(ASAN) -DAVZ_FUZZ_MAIN native/tests/fuzz_api.c native/avz.c $(SAN_LIBS) \
	    -o $(SAN)/fuzz_api; \
	  $(SAN)/fuzz_api $(FUZZ_SECONDS) 1 native/tests/corpus/*; \
	fi
	@echo "sanitize: ASan+UBSan (example, threads, fuzz) and TSan (two renderers, 5 runs) clean"

demo: native
	$(VENV)/bin/avatarizer demo -o out/demo --overwrite   # the demo's own folder: a second run replaces its files

# Pinned lottie-web and playwright-core (web/package-lock.json) into the
# ignored web/node_modules: the animation tests and the player page use them.
WEBSTAMP := web/node_modules/.stamp
$(WEBSTAMP): web/package.json web/package-lock.json | sysdeps-test
	cd web && npm ci --no-audit --no-fund --loglevel=error
	@touch $(WEBSTAMP)

webdeps: $(WEBSTAMP)

# pytest-xdist workers: one per core and one more on 1-2 cores (many tests wait on
# subprocesses, ffmpeg and the identity worker: on 2 cores 3 workers ran the suite in
# 9 min 34 s and 10 min 33 s, 2 workers in 10 min 26 s and 10 min 39 s, session 60: a
# small gain within the runs' spread), at most 4 and at most one per
# 2 GiB of available memory (each loads torch and the models);
# `--dist loadgroup`: the held-out evaluations that run one pipeline configuration over overlapping
# photo sets share one worker (`xdist_group`), so each photo runs once (tests/conftest.py, heldout_runs).
# `make test TEST_JOBS=0` runs the suite in one process, in file order (a name of
# its own: a JOBS exported for compilers is not taken; empty or not a number: 0).
TEST_JOBS ?= $(shell n=$$(nproc 2>/dev/null || echo 1); [ $$n -le 2 ] && n=$$((n + 1)); \
	m=$$(awk '/^MemAvailable:/ {print int($$2 / 2097152)}' /proc/meminfo 2>/dev/null); \
	[ -n "$$m" ] && [ $$m -lt $$n ] && n=$$(( m > 1 ? m : 1 )); echo $$(( n > 4 ? 4 : n )))
# The package's own modules compiled first: where PYTHONDONTWRITEBYTECODE is set (this machine's
# environment, and CI's) no import writes a .pyc, and each of the suite's hundreds of processes (xdist
# workers, CLI runs, identity workers) compiled avatarizer again (0.45 s of CPU each to import it, 0.3 s
# compiled; tests/test_cli_safety.py and test_api.py with 3 workers, two alternating runs: 58 and 64 s
# against 65 and 67 s; session 67).
# The pinned npm packages are tried, not required: where the npm registry cannot be reached, the tests
# that need them skip with the reason (make test stopped before pytest).
test: $(DEV_STAMP) native example
	@$(MAKE) --no-print-directory webdeps || echo "make test: warning: could not install the pinned npm packages" \
	  "(npm ci in web/: the npm registry out of reach, no npm, or the lock file refused?): the browser tests of" \
	  "the animations skip" >&2
	$(VPY) -m compileall -q sdk/avatarizer export/avatarizer_export >/dev/null
	$(VPY) -m pytest -q -ra --dist loadgroup -n $$(case "$(strip $(TEST_JOBS))" in ''|*[!0-9]*) echo 0;; *) echo $(strip $(TEST_JOBS));; esac)

# NVIDIA GPU (README "GPU"; needs onnxruntime-gpu in the venv): the GPU tests, then
# benchmarks/gpu.py's report (CUDA against the CPU on real photos; PHOTOS=DIR,
# default the bundled portrait). Fails, saying why, where no GPU is usable.
PHOTOS ?=
test-gpu: $(DEV_STAMP) native
	$(VPY) -m pytest -q -ra -m gpu tests/test_gpu.py
	$(VPY) benchmarks/gpu.py $(if $(PHOTOS),--photos $(PHOTOS))

bench-animation: $(DEV_STAMP) native
	$(VPY) benchmarks/animation.py

bench-render: $(DEV_STAMP) native
	$(VPY) benchmarks/render.py

# where one render spends its time (docs/render_profile.md); SCENES: N x 629
# float32, e.g. from `python benchmarks/render.py --dump-scenes scenes.f32`
SIZE ?= 256
REPS ?= 10
profile-render:
	@test -n "$(SCENES)" || { echo "make profile-render SCENES=FILE.f32 [SIZE=256] [REPS=10]"; exit 2; }
	mkdir -p native/build
	$(CC) -O2 -ftree-vectorize -Wall -Wextra -Werror -std=c11 -Inative native/tests/profile.c \
	  $$(pkg-config --cflags --libs cairo) -lm -pthread -o native/build/avz_profile
	native/build/avz_profile $(SCENES) $(SIZE) $(REPS)

gallery: native
	$(VPY) -m avatarizer.gallery docs/gallery.png --overwrite

models: $(DEV_STAMP) native
	$(VENV)/bin/avatarizer-export all --shared $(SHARED)

dist-check: sysdeps-test
	.ci/dist-check

# The same checks; leaves the manylinux wheel, the sdist and the avatarizer-export wheel in dist/.
dist: sysdeps
	$(call apt_install,$(APT_DIST))
	DIST_OUT=$(CURDIR)/dist .ci/dist-check

clean:
	rm -rf native/build bindings/_build sdk/avatarizer/_avz*.so build dist *.egg-info sdk/*.egg-info export/build export/*.egg-info
