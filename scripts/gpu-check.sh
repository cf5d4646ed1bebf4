#!/usr/bin/env bash
# Everything the GPU path needs checked, in one command on a GPU machine without Rust or
# network (a few minutes on an H100/H200): install the bundle `make gpu-bundle` built, record
# `slipstream info`, run the Rust GPU tests (kernel vs its CPU twin, nvJPEG vs the CPU
# pipeline, held batches, memory, broken images) with nvJPEG 13, again with nvJPEG 12 (the
# nvidia-nvjpeg-cu12 wheel CUDA 12 drivers get) and again with the kernels' PTX compiled by the
# driver (CUDA_FORCE_PTX_JIT=1), the Python GPU tests (DLPack and the stream protocol,
# torchvision parity, the photometric stages against the CPU pipeline, no leaks; upstream's
# Quick Start on device='cuda') with each nvJPEG, the GPU benchmarks (benches/gpu.rs: nvJPEG's
# bare decode against the loader; benches/python/gpu_pipeline.py and augment.py: against
# torchvision); then print a short table. Logs and results go to $OUT (eight files:
# summary.txt, rust-gpu-tests.log, pytest-gpu.log, cargo-bench-gpu.log, bench.log and the
# three benchmarks' JSON; the install log joins the summary when the install fails).
#
#   make gpu-bundle                      # here, no GPU needed
#   OUT=/tmp/out scripts/gpu-check.sh    # there (the device tool sets OUT)
#
# The machine's python3 must have torch, torchvision, numpy, Pillow and pytest; our wheels go
# to a directory of their own on PYTHONPATH (a venv would hide the machine's torch when its
# python3 is itself a venv's).
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-gpu-check-out}
mkdir -p "$OUT"
BUNDLE=gpu-bundle
SITE=/tmp/slipstream-site
test -d "$BUNDLE/wheels" || { echo "no $BUNDLE/: run 'make gpu-bundle' first" >&2; exit 2; }

step() { printf '%-28s %s\n' "$1" "$2" | tee -a "$OUT/summary.txt"; }
: > "$OUT/summary.txt"
step "GPU" "$(nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>&1)"
step "bundle commit" "$(tr '\n' ' ' < "$BUNDLE/commit")"
step "CPU cores" "$(nproc)"

rm -rf "$SITE"
python3 -m pip install --no-index --no-deps --no-compile --target "$SITE" "$BUNDLE"/wheels/*.whl \
    > /tmp/install.log 2>&1 || { step "install" "FAILED:"; tee -a "$OUT/summary.txt" < /tmp/install.log; exit 1; }
export PYTHONPATH=$SITE PYTHONUNBUFFERED=1
# Both wheels' nvJPEG, as the Python package finds them (the Rust binaries below are not Python):
# the loader takes 13 on a CUDA 13 driver; SLIPSTREAM_NVJPEG=$NVJPEG12 makes it take 12.
NVJPEG13=$SITE/nvidia/cu13/lib/libnvjpeg.so.13 NVJPEG12=$SITE/nvidia/nvjpeg/lib/libnvjpeg.so.12
export SLIPSTREAM_NVJPEG_WHEELS=$NVJPEG13:$NVJPEG12
for f in $NVJPEG13 $NVJPEG12; do test -f "$f" || { step "install" "no $f"; exit 1; }; done
step "python" "$(python3 -c 'import sys, torch, torchvision, slipstream
print(sys.version.split()[0], "torch", torch.__version__, "torchvision", torchvision.__version__,
      "slipstream", slipstream.__version__, "cuda", torch.cuda.is_available())' 2>&1 | tail -1)"
# What the wheel finds on this machine (driver, GPUs, JPEG engines, nvJPEG, kernels): into the summary.
python3 -m slipstream info 2>&1 | sed 's/^/    /' | tee -a "$OUT/summary.txt"
SLIPSTREAM_NVJPEG=$NVJPEG12 python3 -m slipstream info 2>&1 | grep -i nvjpeg |
    sed 's/^/    with SLIPSTREAM_NVJPEG=nvJPEG 12: /' | tee -a "$OUT/summary.txt"
# The tests import the package from python/ (conftest): give it the wheel's native module.
cp "$SITE"/slipstream/_native*.so python/slipstream/

status=0
run_step() {  # name, seconds, log, command...
    local name=$1 limit=$2 log=$3 t0=$SECONDS rc
    shift 3
    timeout "$limit" "$@" > "$OUT/$log" 2>&1
    rc=$?
    [ $rc = 0 ] || status=1
    RESULT="exit $rc, $((SECONDS - t0)) s"
    [ $rc = 124 ] && RESULT="TIMED OUT after $limit s"
}

run_step "Rust GPU tests" 150 rust-gpu-tests.log "$BUNDLE/bin/gpu-tests" --test-threads 1 --nocapture
step "Rust GPU tests" "$RESULT: $(grep -E '^test result' "$OUT/rust-gpu-tests.log" | tail -1)"
grep -E 'kernel vs twin|worst per-image|region vs whole|device memory after|FAILED|panicked' \
    "$OUT/rust-gpu-tests.log" | head -30 | sed 's/^/    /' | tee -a "$OUT/summary.txt"

# The same tests with nvJPEG 12 and with the kernels' PTX through the driver's compiler (what
# GPUs newer than the machine code get); their logs join the first one's (eight files come back).
again() {  # title, env assignment
    run_step "$1" 150 rust-again.log env "$2" "$BUNDLE/bin/gpu-tests" --test-threads 1 --nocapture
    step "$1" "$RESULT: $(grep -E '^test result' "$OUT/rust-again.log" | tail -1)"
    grep -E 'kernel vs twin|worst per-image|FAILED|panicked' "$OUT/rust-again.log" | head -8 |
        sed 's/^/    /' | tee -a "$OUT/summary.txt"
    { echo "=== $2"; cat "$OUT/rust-again.log"; } >> "$OUT/rust-gpu-tests.log"
    rm -f "$OUT/rust-again.log"
}
again "Rust GPU tests, nvJPEG 12" "SLIPSTREAM_NVJPEG=$NVJPEG12"
again "Rust GPU tests, PTX JIT" "CUDA_FORCE_PTX_JIT=1"

run_step "Python GPU tests" 150 pytest-gpu.log python3 -m pytest -q -s -p no:cacheprovider \
    -o addopts= python/tests/test_gpu.py python/tests/test_upstream.py
step "Python GPU tests" "$RESULT: $(tail -1 "$OUT/pytest-gpu.log")"
grep -E 'GPU vs torchvision|GPU vs CPU pipeline|^FAILED|^E ' "$OUT/pytest-gpu.log" | head -20 | sed 's/^/    /' |
    tee -a "$OUT/summary.txt"
run_step "Python GPU tests, nvJPEG 12" 150 pytest-again.log env SLIPSTREAM_NVJPEG="$NVJPEG12" \
    python3 -m pytest -q -s -p no:cacheprovider -o addopts= python/tests/test_gpu.py
step "Python GPU tests, nvJPEG 12" "$RESULT: $(tail -1 "$OUT/pytest-again.log")"
grep -E 'GPU vs torchvision|^FAILED|^E ' "$OUT/pytest-again.log" | head -8 | sed 's/^/    /' |
    tee -a "$OUT/summary.txt"
{ echo "=== SLIPSTREAM_NVJPEG=$NVJPEG12"; cat "$OUT/pytest-again.log"; } >> "$OUT/pytest-gpu.log"
rm -f "$OUT/pytest-again.log"

run_step "cargo bench (gpu)" 120 cargo-bench-gpu.log env SLIPSTREAM_BENCH_OUT="$OUT" \
    SLIPSTREAM_BENCH_DATA=/tmp/slipstream-bench-rs "$BUNDLE/bin/gpu-bench"
step "cargo bench (gpu)" "$RESULT"
grep -v '^wrote' "$OUT/cargo-bench-gpu.log" | tail -24 | sed 's/^/    /' | tee -a "$OUT/summary.txt"

run_step "GPU benchmark" 180 bench.log python3 benches/python/gpu_pipeline.py --out "$OUT" \
    --data /tmp/slipstream-bench
step "GPU benchmark" "$RESULT"
grep -v '^wrote' "$OUT/bench.log" | tail -30 | sed 's/^/    /' | tee -a "$OUT/summary.txt"

# SimCLR two views and DINO 2+10 views against torchvision per sample on the GPU; its log
# joins bench.log.
run_step "augmentation benchmark" 180 bench-again.log python3 benches/python/augment.py \
    --device cuda --images 4096 --seconds 2 --out "$OUT" --data /tmp/slipstream-bench
step "augmentation benchmark" "$RESULT"
grep -v '^wrote' "$OUT/bench-again.log" | tail -12 | sed 's/^/    /' | tee -a "$OUT/summary.txt"
{ echo "=== benches/python/augment.py --device cuda"; cat "$OUT/bench-again.log"; } >> "$OUT/bench.log"
rm -f "$OUT/bench-again.log"
exit $status
