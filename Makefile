# `make demo` and `make test` work on a fresh clone: they create .venv, install what is
# needed, build in release mode, then run. Everything shares one target/ directory.

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
export PYO3_PYTHON := $(abspath $(PY))

.PHONY: demo test test-rust test-python lint build fixtures bench clean

$(VENV)/.installed: requirements-dev.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements-dev.txt
	touch $@

# The extension module (into python/slipstream, installed editable in .venv) and the
# `slipstream` binary.
build: $(VENV)/.installed
	$(VENV)/bin/maturin develop --release --quiet
	cargo build --release --bins --quiet

demo: build
	$(VENV)/bin/slipstream demo

test: lint test-rust test-python

test-rust: $(VENV)/.installed
	cargo test --release --quiet

test-python: build
	$(PY) -m pytest -q

lint: $(VENV)/.installed
	cargo fmt --all -- --check
	cargo clippy --release --all-targets --all-features --quiet -- -D warnings
	$(VENV)/bin/ruff check python benches scripts
	$(VENV)/bin/ruff format --check python benches scripts

# Regenerate the committed LitData fixtures with the pinned litdata.
fixtures: $(VENV)/.installed
	$(PY) scripts/make_fixtures.py

bench: build
	cargo bench --bench gather
	$(PY) benches/python/raw_io.py

clean:
	rm -rf target $(VENV) python/slipstream/_native*.so
