# `make demo` and `make test` work on a fresh clone: they create .venv, install what is
# needed, build in release mode, then run. Everything shares one target/ directory.

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
export PYO3_PYTHON := $(abspath $(PY))
# The features of the wheel (pyproject.toml), so tests and the CLI are the build users get.
FEATURES := cuda,s3
# make installs NVRTC (.nvrtc/) before building, so every build here compiles the kernels.
export SLIPSTREAM_REQUIRE_KERNELS := 1

.PHONY: demo test test-rust test-python test-wheel lint build wheel fixtures bench clean system-tools nvrtc gpu-bundle fuzz

# cmake and nasm build libjpeg-turbo (the turbojpeg-sys crate vendors its sources).
SYSTEM_TOOLS := cmake nasm
system-tools:
	@missing=""; for t in $(SYSTEM_TOOLS); do command -v $$t >/dev/null || missing="$$missing $$t"; done; \
	if [ -n "$$missing" ]; then \
		if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
			apt-get update -qq && apt-get install -y -qq $$missing; \
		else \
			echo "error: missing$$missing (needed to build libjpeg-turbo): sudo apt-get install$$missing"; exit 1; \
		fi; \
	fi

# uv installs the requirements: 52 s from an empty cache where pip took 156 s from a warm one
# (bytecode compiled by both). pip stays in the venv for .nvrtc/ and for scripts/check_wheel.sh,
# which installs the wheel as users do.
UV_VERSION := 0.13.9
$(VENV)/.installed: requirements-dev.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet uv==$(UV_VERSION)
	$(VENV)/bin/uv pip install --quiet --system-certs --compile-bytecode --python $(PY) \
		-r requirements-dev.txt
	touch $@

# NVRTC from PyPI, where build.rs finds it, for the `cuda` feature's kernels (no GPU needed):
# one release for the machine code, one for the PTX (see the two requirements files).
NVRTC_DIR := .nvrtc
$(NVRTC_DIR)/.installed: requirements-nvrtc-sass.txt requirements-nvrtc-ptx.txt $(VENV)/.installed
	rm -rf $(NVRTC_DIR)
	$(PY) -m pip install --quiet --no-deps --target $(NVRTC_DIR)/sass -r requirements-nvrtc-sass.txt
	$(PY) -m pip install --quiet --no-deps --target $(NVRTC_DIR)/ptx -r requirements-nvrtc-ptx.txt
	touch $@
nvrtc: $(NVRTC_DIR)/.installed

# The extension module (into python/slipstream, installed editable in .venv) and the
# `slipstream` binary.
build: $(VENV)/.installed $(NVRTC_DIR)/.installed system-tools
	$(VENV)/bin/maturin develop --release --quiet
	cargo build --release --features $(FEATURES) --bins --quiet

demo: build
	$(VENV)/bin/slipstream demo

test: lint test-rust test-python test-wheel

test-rust: $(VENV)/.installed $(NVRTC_DIR)/.installed system-tools
	cargo test --release --features $(FEATURES) --quiet

# On the wheel's extension module (scripts/use_wheel.py): the build users get, and no second
# release build of the crate for `maturin develop`.
test-python: wheel
	$(PY) scripts/use_wheel.py
	$(PY) -m mypy.stubtest slipstream._native  # _native.pyi against the built module
	$(PY) -m pytest -q

lint: $(VENV)/.installed $(NVRTC_DIR)/.installed system-tools
	cargo fmt --all -- --check
	cargo clippy --release --all-targets --all-features --quiet -- -D warnings
	cargo clippy --release --lib --quiet -- -D warnings  # the build without optional features
	$(VENV)/bin/ruff check python benches scripts examples
	$(VENV)/bin/ruff format --check python benches scripts examples
	$(PY) scripts/check_layers.py  # layers, loops, function and file sizes (docs/ARCHITECTURE.md)
	$(PY) scripts/check_one_build.py --features $(FEATURES)  # tests, binaries and wheel share dependencies

# The wheel users install, into dist/: abi3 (Python >= 3.10), manylinux_2_28 (zig links it
# against glibc 2.28, so it needs no newer system than that), libjpeg-turbo linked in; the CUDA
# driver, nvJPEG and torch are found at run time. Its target differs from the host's, so it is
# the one build here that compiles the dependencies a second time.
wheel: $(VENV)/.installed $(NVRTC_DIR)/.installed system-tools
	rm -rf dist
	PATH="$(abspath $(VENV))/bin:$$PATH" $(VENV)/bin/maturin build --release --zig \
		--compatibility manylinux_2_28 --quiet -o dist  # maturin finds zig through the venv's python

# The wheel installed into a fresh venv with no build tools on PATH (scripts/check_wheel.sh).
test-wheel: wheel
	scripts/check_wheel.sh

# Regenerate the committed LitData fixtures with the pinned litdata.
fixtures: $(VENV)/.installed
	$(PY) scripts/make_fixtures.py

bench: build
	cargo bench --bench gather
	cargo bench --bench pipeline
	$(PY) benches/python/raw_io.py
	$(PY) benches/python/cpu_pipeline.py
	$(PY) benches/python/s3_cold_start.py
	$(PY) benches/python/sources.py
	$(PY) benches/python/encodings.py
	$(PY) benches/python/soak.py

# Coverage-guided fuzzing of the targets in tests/fuzz_targets/ (which `make test` runs on a
# fixed set of mutated inputs) under libFuzzer, FUZZ_SECONDS or FUZZ_RUNS inputs each, whichever
# ends first (-1: no limit). Needs cargo-fuzz (installed here if missing) and a nightly
# toolchain. Corpora go to fuzz/corpus/, failing inputs to fuzz/artifacts/; each run ends with
# libFuzzer's execution count.
FUZZ_SECONDS ?= 600
FUZZ_RUNS ?= -1
FUZZ_TARGETS ?= chunk index cache_file image tar parquet beton
fuzz: system-tools
	command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
	cargo run --release --quiet --manifest-path fuzz/Cargo.toml --bin write_seeds -- fuzz/corpus
	for t in $(FUZZ_TARGETS); do \
		cargo +nightly fuzz run --sanitizer none $$t fuzz/corpus/$$t -- \
			-max_total_time=$(FUZZ_SECONDS) -runs=$(FUZZ_RUNS) -timeout=10 -rss_limit_mb=2048 \
			-print_final_stats=1 || exit 1; \
	done

# What scripts/gpu-check.sh needs on a GPU machine (wheel with kernels, the nvJPEG wheel, the
# Rust GPU test and benchmark binaries), built here without a GPU, into gpu-bundle/.
gpu-bundle: wheel
	scripts/build-gpu-bundle.sh

clean:
	rm -rf target $(VENV) $(NVRTC_DIR) gpu-bundle dist python/slipstream/_native*.so
