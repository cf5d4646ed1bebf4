#!/usr/bin/env bash
# Build, on a machine without a GPU, everything scripts/gpu-check.sh needs on a GPU machine that
# has no Rust and no network: the wheel of `make wheel` (with kernels: make sets
# SLIPSTREAM_REQUIRE_KERNELS=1, so a missing NVRTC is an error), both nvJPEG wheels (CUDA 13
# and 12) and the Rust
# GPU test and bench binaries (the GPU machines already have torch, torchvision, numpy, Pillow
# and pytest). Output in gpu-bundle/ (about 40 MB), which the device tool carries. Run through
# `make gpu-bundle`.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
BUNDLE=gpu-bundle
rm -rf "$BUNDLE"
mkdir -p "$BUNDLE/wheels" "$BUNDLE/bin"

# The wheel users install (`make wheel`: abi3, manylinux_2_28, kernels required); the GPU
# machines run Python 3.12.
cp dist/slipstream-*-manylinux_2_28_x86_64.whl "$BUNDLE/wheels/"

"$PY" -m pip download --quiet --dest "$BUNDLE/wheels" --only-binary=:all: \
    --python-version 3.12 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
    --no-deps nvidia-nvjpeg==13.0.4.44 nvidia-nvjpeg-cu12==12.4.0.76

# The binaries of tests/gpu.rs and benches/gpu.rs, found through cargo's JSON messages.
executable() {  # cargo subcommand and its target options; prints the executable's path
    SLIPSTREAM_REQUIRE_KERNELS=1 cargo "$@" --features cuda --no-run \
        --message-format=json 2>/dev/null |
        "$PY" -c 'import json, sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m["target"]["name"] == "gpu" and m.get("executable"):
        print(m["executable"])'
}
strip -o "$BUNDLE/bin/gpu-tests" "$(executable test --release --test gpu)"
strip -o "$BUNDLE/bin/gpu-bench" "$(executable bench --bench gpu)"
git rev-parse HEAD > "$BUNDLE/commit"
git status --porcelain --untracked-files=no | grep -q . && echo "(uncommitted changes)" >> "$BUNDLE/commit"
du -sh "$BUNDLE"
