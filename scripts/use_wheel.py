#!/usr/bin/env python3
"""Make this venv run the wheel in dist/, so that `make test` tests the compiled module users
install and builds the crate once for it (no second release build for `maturin develop`).

The wheel is installed (its package, console script and metadata, for subprocesses and the
`slipstream` command), and its extension module is also copied into python/slipstream/, where
`maturin develop` would put its own: pytest imports the package from the source tree
(python/conftest.py puts python/ first on sys.path), so both copies must hold the same build.
"""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    wheels = sorted((ROOT / "dist").glob("slipstream-*.whl"))
    if len(wheels) != 1:
        raise SystemExit(f"expected one wheel in dist/, found {[w.name for w in wheels]}")
    wheel = wheels[0]
    install = [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--force-reinstall"]
    subprocess.run([*install, str(wheel)], check=True)
    with zipfile.ZipFile(wheel) as archive:
        modules = [n for n in archive.namelist() if n.startswith("slipstream/_native")]
        modules = [n for n in modules if n.endswith(".so")]
        if not modules:
            raise SystemExit(f"{wheel.name} holds no slipstream/_native*.so")
        for name in modules:
            (ROOT / "python" / name).write_bytes(archive.read(name))
    print(f"installed {wheel.name}; {', '.join(modules)} copied into python/")


if __name__ == "__main__":
    main()
