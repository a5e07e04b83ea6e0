# Avatarizer: everything a fresh machine needs is installed from here.
SHELL := /bin/bash
PY ?= python3.11
VENV := .venv
VPY := $(VENV)/bin/python
STAMP := $(VENV)/.deps-stamp
SHARED ?= ../shared

.PHONY: all demo test native sysdeps venv models clean valgrind bench-render example gallery sanitize sanitize-deps \
	webdeps bench-animation

all: native

sysdeps:
	@if ! pkg-config --exists cairo 2>/dev/null; then \
	  echo "installing libcairo2-dev (apt)"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && $$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq libcairo2-dev pkg-config >/dev/null; \
	fi
	@if ! command -v ffmpeg >/dev/null; then \
	  echo "installing ffmpeg (apt; copies the sound track in avatarizer video)"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && $$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq ffmpeg >/dev/null || true; \
	fi
	@if ! command -v chromium >/dev/null || ! command -v npm >/dev/null; then \
	  echo "installing chromium, nodejs and npm (apt; the animation tests render Lottie/SVG frames in headless Chromium)"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && $$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium nodejs npm >/dev/null || true; \
	fi
	@if ! command -v valgrind >/dev/null; then \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && $$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq valgrind >/dev/null || true; \
	fi

$(STAMP): pyproject.toml | sysdeps
	@test -x $(VPY) || $(PY) -m venv $(VENV)
	$(VPY) -m pip install -q --upgrade pip setuptools wheel
	$(VPY) -m pip install -q "torch==2.13.0"
	$(VPY) -m pip install -q -e ".[export,dev]" --no-build-isolation
	@touch $(STAMP)

venv: $(STAMP)

native: $(STAMP) sdk/avatarizer/data/schema.json
	$(VPY) bindings/build_avz.py

# The C example program, built against the public header only.
example: sysdeps
	mkdir -p native/build
	$(CC) -O2 -Wall -Wextra -Werror -std=c11 -Inative native/example.c native/avz.c \
	  $$(pkg-config --cflags --libs cairo) -lm -pthread -o native/build/avz_example

valgrind: example
	valgrind --error-exitcode=3 --leak-check=full --errors-for-leak-kinds=definite \
	  native/build/avz_example native/build/example.png

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
	@if ! command -v clang >/dev/null; then \
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
	$(VENV)/bin/avatarizer demo

# Pinned lottie-web and playwright-core (web/package-lock.json) into the
# ignored web/node_modules: the animation tests and the player page use them.
WEBSTAMP := web/node_modules/.stamp
$(WEBSTAMP): web/package.json web/package-lock.json | sysdeps
	cd web && npm ci --no-audit --no-fund --loglevel=error
	@touch $(WEBSTAMP)

webdeps: $(WEBSTAMP)

test: native example webdeps
	$(VPY) -m pytest -q -ra

bench-animation: native
	$(VPY) benchmarks/animation.py

bench-render: native
	$(VPY) benchmarks/render.py

gallery: native
	$(VPY) -m avatarizer.gallery docs/gallery.png

models: native
	$(VENV)/bin/avatarizer-export all --shared $(SHARED)

clean:
	rm -rf native/build bindings/_build sdk/avatarizer/_avz*.so build *.egg-info
