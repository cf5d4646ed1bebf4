"""The command line, through `python -m slipstream` and the `slipstream` console script."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path


def run(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [sys.executable, "-m", "slipstream", *args], capture_output=True, text=True, check=False
    )
    if check:
        assert result.returncode == 0, result.stderr
    return result


def test_help_lists_the_commands() -> None:
    out = run("--help").stdout
    for command in ("build", "inspect", "verify", "bench", "info", "demo"):
        assert command in out


def test_info_says_what_a_bug_report_needs(monkeypatch, tmp_path: Path) -> None:
    import slipstream

    monkeypatch.setenv("SLIPSTREAM_CACHE_DIR", str(tmp_path / "caches"))
    text = run("info").stdout
    facts = json.loads(run("info", "--json").stdout)
    assert facts == slipstream.info()
    assert facts["version"] == slipstream.__version__
    assert facts["cache_dir"] == str(tmp_path / "caches")
    assert facts["features"] == ["cuda", "s3", "python"]  # the wheel's (pyproject.toml)
    # The text holds the same facts, one per line.
    assert f"libjpeg-turbo   {facts['libjpeg_turbo']}" in text
    assert f"cache dir       {tmp_path / 'caches'}" in text
    if facts["cuda"]["driver"] is None:
        # No GPU here: the reason is given, not hidden.
        assert facts["cuda"]["problems"] and facts["cuda"]["problems"][0] in text
    else:
        for gpu in facts["cuda"]["gpus"]:
            assert f"compute capability {gpu['compute_capability']}" in text


def test_console_script() -> None:
    script = Path(sys.executable).parent / "slipstream"
    result = subprocess.run([str(script), "--version"], capture_output=True, text=True, check=True)
    assert result.stdout.startswith("slipstream ")


def test_build_inspect_verify(flat_dir: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    built = run("build", str(flat_dir), "--cache-dir", str(cache))
    path = built.stdout.strip()
    assert path.endswith(".slipcache") and Path(path).parent == cache
    assert "building cache" in built.stderr

    again = run("build", str(flat_dir), "--cache-dir", str(cache))
    assert again.stdout.strip() == path and "building" not in again.stderr

    text = run("inspect", path).stdout
    assert "samples   103" in text
    assert "image" in text and "images" in text and "24" in text
    assert "label" in text and "min 0, max 9, 10 distinct" in text
    header = json.loads(run("inspect", path, "--json").stdout)
    assert header["num_samples"] == 103

    assert run("verify", path).stdout.startswith("ok:")


def test_verify_fails_on_a_corrupt_cache(flat_dir: Path, tmp_path: Path) -> None:
    path = Path(run("build", str(flat_dir), "--cache-dir", str(tmp_path), "-q").stdout.strip())
    header = json.loads(run("inspect", str(path), "--json").stdout)
    data = header["data"]["offset"] + 100
    raw = bytearray(path.read_bytes())
    raw[data] ^= 0xFF
    path.write_bytes(bytes(raw))
    result = run("verify", str(path), check=False)
    assert result.returncode == 1
    assert "checksum mismatch" in result.stderr and "(sample 0)" in result.stderr


def test_errors_exit_nonzero_with_a_message(tmp_path: Path) -> None:
    result = run("build", str(tmp_path), check=False)
    assert result.returncode == 1
    assert result.stderr.startswith("error: ") and "index.json is missing" in result.stderr
    assert run("frobnicate", check=False).returncode == 2


def test_bench_prints_a_ratio(flat_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    result = run("bench", str(flat_dir), "--epochs", "2", "--batch-size", "16", "--json", str(out))
    assert "x memcpy" in result.stdout
    data = json.loads(out.read_text())
    assert data["samples_per_s"] > 0 and data["machine"]["cores"] >= 1


def test_demo(tmp_path: Path) -> None:
    result = run(
        "demo",
        "--dir",
        str(tmp_path / "demo"),
        "--samples",
        "40",
        "--cache-dir",
        str(tmp_path / "cache"),
    )
    assert "generated 40 photographs" in result.stdout
    assert "samples/s" in result.stdout and "images/s" in result.stdout
    picture = Path(result.stdout.split("de-normalized: ")[1].split()[0])
    assert picture.parent == tmp_path / "cache"
    assert picture.read_bytes().startswith(b"\x89PNG")
    rerun = run(
        "demo",
        "--dir",
        str(tmp_path / "demo"),
        "--samples",
        "40",
        "--cache-dir",
        str(tmp_path / "cache"),
    )
    assert "generated earlier" in rerun.stdout
    shutil.rmtree(tmp_path / "demo")
