"""Fixtures for python/tests and for the doctests in python/slipstream."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent / "tests"))


@pytest.fixture(scope="session", autouse=True)
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Every test's caches go to one temporary directory."""
    d = tmp_path_factory.mktemp("slipstream-cache")
    os.environ["SLIPSTREAM_CACHE_DIR"] = str(d)
    return d


@pytest.fixture(scope="session")
def demo_dir(tmp_path_factory: pytest.TempPathFactory, cache_dir: Path) -> Path:
    """The dataset `slipstream demo` generates: 96 JPEG photographs with labels."""
    d = tmp_path_factory.mktemp("demo") / "dataset"
    subprocess.run(
        [sys.executable, "-m", "slipstream", "demo", "--dir", str(d), "--samples", "96"],
        check=True,
        capture_output=True,
    )
    return d


@pytest.fixture(scope="session")
def demo_dataset(demo_dir: Path):
    import slipstream

    return slipstream.SlipstreamDataset(demo_dir, progress=False)


@pytest.fixture(scope="session")
def full_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A dataset with every serializer (litdata.optimize), 12 samples."""
    import litdata_datasets

    return litdata_datasets.make("full", tmp_path_factory.mktemp("full") / "ds", 12)


@pytest.fixture(scope="session")
def flat_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """{image, label, caption, weight, keep} x 103 samples in Arrow chunks (litdata.optimize)."""
    import litdata_datasets

    return litdata_datasets.make("flat", tmp_path_factory.mktemp("flat") / "ds", 103)


@pytest.fixture(autouse=True)
def _doctest_names(doctest_namespace: dict, request: pytest.FixtureRequest) -> None:
    if isinstance(request.node, pytest.DoctestItem):
        doctest_namespace["demo_dir"] = request.getfixturevalue("demo_dir")
        doctest_namespace["cache_dir"] = request.getfixturevalue("cache_dir")
        doctest_namespace["demo_dataset"] = request.getfixturevalue("demo_dataset")
        import slipstream

        doctest_namespace["SlipstreamDataset"] = slipstream.SlipstreamDataset
        doctest_namespace["SlipstreamLoader"] = slipstream.SlipstreamLoader
