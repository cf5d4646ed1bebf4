#!/usr/bin/env bash
# The wheel in dist/ as a user gets it: `auditwheel show` must call it manylinux_2_28; then it
# is installed into a fresh venv and run with a PATH that holds only that venv (no Rust, cargo,
# C compiler, cmake or nasm): `slipstream info`, `slipstream demo`, and scripts/wheel_smoke.py
# on a dataset that litdata writes here, first without torch, then with torch (the project
# venv's, put on the fresh venv's path rather than installed a second time). Prints the install
# and demo times.
set -euo pipefail
cd "$(dirname "$0")/.."
DEV_PY=$PWD/.venv/bin/python

wheels=(dist/slipstream-*.whl)
[ ${#wheels[@]} = 1 ] || { echo "error: expected one wheel in dist/, found: ${wheels[*]}"; exit 1; }
wheel=$PWD/${wheels[0]}
case $(basename "$wheel") in
  *-cp310-abi3-manylinux_2_28_x86_64.whl) ;;
  *) echo "error: $(basename "$wheel") is not a cp310-abi3 manylinux_2_28 x86_64 wheel"; exit 1 ;;
esac
audit=$(.venv/bin/auditwheel show "$wheel" | tr -s ' \n' '  ')
grep -q 'is consistent with the following platform tag: "manylinux_2_28_x86_64"' <<<"$audit" \
  || { echo "$audit"; echo "error: auditwheel does not accept the wheel as manylinux_2_28"; exit 1; }
echo "wheel: $(basename "$wheel"), $(du -k "$wheel" | cut -f1) KiB; auditwheel: manylinux_2_28_x86_64"

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
base_python=$("$DEV_PY" -c 'import sys; print(sys._base_executable)')
"$base_python" -m venv "$work/venv"
start=$(date +%s.%N)
"$work/venv/bin/python" -m pip install --quiet --disable-pip-version-check "$wheel"
installed=$(date +%s.%N)

# Only the fresh venv on PATH, a home and cache of its own.
mkdir "$work/home"
run() {
  env -i HOME="$work/home" PATH="$work/venv/bin" SLIPSTREAM_CACHE_DIR="$work/cache" \
    LANG=C.UTF-8 "$@"
}
run slipstream info | tee "$work/info.log"
grep -q "^libjpeg-turbo   [0-9]" "$work/info.log" || { echo "error: slipstream info"; exit 1; }
(cd "$work" && run slipstream demo) | tee "$work/demo.log"
demo_done=$(date +%s.%N)
grep -q . "$work/demo.log" || { echo "error: slipstream demo printed nothing"; exit 1; }

"$DEV_PY" scripts/wheel_smoke.py write "$work/data"
run "$work/venv/bin/python" scripts/wheel_smoke.py check "$work/data" --no-torch
dev_site=$("$DEV_PY" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
fresh_site=$(run "$work/venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
# A path entry (not a site directory): the project venv's own .pth files, among them the
# editable slipstream, are not read, so `import slipstream` still finds the wheel's.
echo "$dev_site" >"$fresh_site/dev-venv-torch.pth"
run "$work/venv/bin/python" scripts/wheel_smoke.py check "$work/data" --torch
echo "install: $(awk "BEGIN{printf \"%.1f\", $installed - $start}") s; install to demo output: $(awk "BEGIN{printf \"%.1f\", $demo_done - $start}") s"
