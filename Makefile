# Avatarizer: everything a fresh machine needs is installed from here.
#   make demo   runtime only: system build deps, .venv with the runtime package, the native renderer, the demo
#   make test   adds the test/training side (pytest, pycairo, CairoSVG, scikit-image, torch, avatarizer-export)
#   make dist-check   builds wheel + sdist in a clean clone and checks them in fresh venvs (.ci/run calls it)
SHELL := /bin/bash
PY ?= python3.11
VENV := .venv
VPY := $(VENV)/bin/python
RT_STAMP := $(VENV)/.runtime-stamp
DEV_STAMP := $(VENV)/.dev-stamp
SHARED ?= ../shared
# Debian/Ubuntu packages: what `make demo` needs (compiler, Python headers and
# venv, libcairo; libGL and GLib for the OpenCV that MediaPipe brings), and what `make test` adds (ffmpeg copies sound tracks,
# valgrind runs the C example, git for dist-check's clean clone).
APT_DEMO := build-essential pkg-config libcairo2-dev python3 python3-dev python3-venv ca-certificates libgl1 libglib2.0-0
APT_TEST := ffmpeg valgrind git xz-utils patch

.PHONY: all demo test native sysdeps sysdeps-test venv dev models clean valgrind bench-render example gallery dist-check dist

all: native

# Installs only the missing packages, with sudo unless already root.
define apt_install
	@missing=$$(for p in $(1); do dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "ok installed" || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	  if ! command -v apt-get >/dev/null; then \
	    echo "missing system packages: $$missing (no apt-get here: install their equivalents by hand)" >&2; exit 1; \
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

# Runtime: the package and its wheels-only dependencies (no torch, no pycairo).
$(RT_STAMP): pyproject.toml setup.py | sysdeps
	@test -x $(VPY) || $(PY) -m venv $(VENV)
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
	  $$(pkg-config --cflags --libs cairo) -lm -o native/build/avz_example

valgrind: example sysdeps-test
	valgrind --error-exitcode=3 --leak-check=full --errors-for-leak-kinds=definite \
	  native/build/avz_example native/build/example.png

demo: native
	$(VENV)/bin/avatarizer demo

test: $(DEV_STAMP) native example
	$(VPY) -m pytest -q -ra

bench-render: $(DEV_STAMP) native
	$(VPY) benchmarks/render.py

gallery: native
	$(VPY) -m avatarizer.gallery docs/gallery.png

models: $(DEV_STAMP) native
	$(VENV)/bin/avatarizer-export all --shared $(SHARED)

dist-check: sysdeps-test
	.ci/dist-check

# The same checks; leaves the manylinux wheel, the sdist and the avatarizer-export wheel in dist/.
dist: sysdeps-test
	DIST_OUT=$(CURDIR)/dist .ci/dist-check

clean:
	rm -rf native/build bindings/_build sdk/avatarizer/_avz*.so build dist *.egg-info export/build export/*.egg-info
