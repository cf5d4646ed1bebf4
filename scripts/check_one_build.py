#!/usr/bin/env python3
"""Check that `make test`'s three release builds share one build of every dependency.

`cargo test`, `cargo build --bins` and maturin's wheel build the same dependencies, but Cargo
rebuilds a crate, and every crate above it, when the features turned on for it differ between
builds: dev-dependencies and the `python` feature's crates can turn features on in crates the
others share (Cargo.toml aligns them). This asks `cargo tree` for the features of every package
in each build and fails when a package two builds share has different features in them.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from collections import defaultdict


def builds_for(features: str) -> dict[str, list[str]]:
    """`cargo tree` arguments for each build, given the Makefile's FEATURES (maturin adds
    `python`, pyproject.toml)."""
    return {
        "cargo test": ["--features", features, "-e", "normal,build,dev"],
        "cargo build --bins": ["--features", features, "-e", "normal,build"],
        "maturin": ["--features", f"python,{features}", "-e", "normal,build"],
    }


def features(args: list[str]) -> dict[str, set[str]]:
    """Package (name and version) -> the feature sets it is built with in one build."""
    out = subprocess.run(
        ["cargo", "tree", "--quiet", "--prefix", "none", "--format", "{p}|{f}", *args],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    found: dict[str, set[str]] = defaultdict(set)
    for line in out.splitlines():
        package, _, flags = line.partition("|")
        name = " ".join(package.split()[:2])  # drop "(path)", "(proc-macro)", "(*)"
        if not name.startswith("slipstream "):
            found[name].add(flags.split(" (*)")[0].strip())
    return found


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--features", required=True, help="the Makefile's FEATURES")
    args = parser.parse_args()
    builds = {name: features(a) for name, a in builds_for(args.features).items()}
    problems = []
    names = list(builds)
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            for package in sorted(builds[a].keys() & builds[b].keys()):
                if builds[a][package] != builds[b][package]:
                    problems.append(
                        f"  {package}: [{' / '.join(sorted(builds[a][package]))}] in {a}, "
                        f"[{' / '.join(sorted(builds[b][package]))}] in {b}"
                    )
    shared = set.intersection(*(set(b) for b in builds.values()))
    print(
        f"one build of each dependency: {len(shared)} packages in all three builds, "
        f"{len(problems)} built with different features"
    )
    for p in problems:
        print(p)
    if problems:
        print("turn those features on for every build in Cargo.toml (see the note there)")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
