#!/usr/bin/env bash
# Everything the GPU path needs checked, in one command on a GPU machine without Rust or
# network (about 3 minutes on an H100): install the bundle `make gpu-bundle` built, run the Rust
# GPU tests (kernel vs its CPU twin, nvJPEG vs the CPU pipeline, held batches, memory, broken
# images), the Python GPU tests (DLPack and the stream protocol, torchvision parity, no leaks),
# and the GPU benchmark; then print a short table. Logs and results go to $OUT.
#
#   make gpu-bundle                      # here, no GPU needed
#   OUT=/tmp/out scripts/gpu-check.sh    # there (the device tool sets OUT)
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-gpu-check-out}
mkdir -p "$OUT"
BUNDLE=gpu-bundle
PYTHON=$(command -v python3 || command -v python)
test -d "$BUNDLE/wheels" || { echo "no $BUNDLE/: run 'make gpu-bundle' first" >&2; exit 2; }

step() { printf '%-34s %s\n' "$1" "$2" | tee -a "$OUT/summary.txt"; }
: > "$OUT/summary.txt"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader > "$OUT/gpu.txt" 2>&1
step "GPU" "$(cat "$OUT/gpu.txt")"
step "bundle commit" "$(tr '\n' ' ' < "$BUNDLE/commit")"

# A venv that sees the machine's torch and torchvision, with our wheels installed offline.
"$PYTHON" -m venv --system-site-packages /tmp/slipstream-venv
# shellcheck disable=SC1091
. /tmp/slipstream-venv/bin/activate
pip install --no-index --find-links "$BUNDLE/wheels" slipstream nvidia-nvjpeg pytest \
    > "$OUT/install.log" 2>&1 || { step "install" "FAILED (install.log)"; exit 1; }
# The tests import the package from python/ (conftest): give it the wheel's native module.
native=$(python -c 'import importlib.util as u, pathlib as p
print(next(p.Path(u.find_spec("slipstream").origin).parent.glob("_native*.so")))')
cp "$native" python/slipstream/
export SLIPSTREAM_NVJPEG
SLIPSTREAM_NVJPEG=$(python -c 'import nvidia, pathlib; print(next(pathlib.Path(p) / "cu13/lib/libnvjpeg.so.13" for p in nvidia.__path__ if (pathlib.Path(p) / "cu13/lib/libnvjpeg.so.13").exists()))')

status=0
timeout 240 "$BUNDLE/bin/gpu-tests" --test-threads 1 --nocapture > "$OUT/rust-gpu-tests.log" 2>&1
rc=$?; [ $rc = 0 ] || status=1
step "Rust GPU tests" "$(grep -E '^test result' "$OUT/rust-gpu-tests.log" || echo "exit $rc") "
grep -E 'kernel vs twin|worst per-image|device memory after' "$OUT/rust-gpu-tests.log" | sed 's/^/    /' | tee -a "$OUT/summary.txt"

timeout 300 python -m pytest -q -s -p no:cacheprovider python/tests/test_gpu.py \
    > "$OUT/pytest-gpu.log" 2>&1
rc=$?; [ $rc = 0 ] || status=1
step "Python GPU tests" "$(tail -1 "$OUT/pytest-gpu.log")"
grep -E 'GPU vs torchvision' "$OUT/pytest-gpu.log" | sed 's/^/    /' | tee -a "$OUT/summary.txt"

timeout 240 python benches/python/gpu_pipeline.py --out "$OUT" --data /tmp/slipstream-bench \
    > "$OUT/bench.log" 2>&1
rc=$?; [ $rc = 0 ] || status=1
step "GPU benchmark" "exit $rc"
sed 's/^/    /' "$OUT/bench.log" | tail -14 | tee -a "$OUT/summary.txt"
exit $status
