"""SlipstreamDataset: indexing, schema, the cache file as documented, reuse and rebuild."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import litdata_datasets as m
import numpy as np
import PIL.Image
import pytest
import slipstream
import torch


def test_len_and_indexing(flat_dir: Path) -> None:
    ds = slipstream.SlipstreamDataset(flat_dir, progress=False)
    assert len(ds) == 103
    assert ds[0] == m.expected_sample("flat", 0)
    assert ds[-1] == m.expected_sample("flat", 102)
    assert ds[-103] == ds[0]
    assert ds[np.int64(5)]["label"] == 5
    for bad in (103, -104, 10**12):
        with pytest.raises(IndexError, match="out of range"):
            ds[bad]
    with pytest.raises(slipstream.SampleIndexError):
        ds[103]
    with pytest.raises(TypeError):
        ds["0"]  # type: ignore[index]


def test_values_have_litdata_types(full_dir: Path) -> None:
    ds = slipstream.SlipstreamDataset(full_dir, progress=False)
    s = ds[4]
    assert isinstance(s["jpeg"], bytes) and s["jpeg"][:2] == b"\xff\xd8"
    assert isinstance(s["pil"], PIL.Image.Image)
    assert isinstance(s["label"], int) and isinstance(s["score"], float)
    assert isinstance(s["flag"], bool) and isinstance(s["name"], str)
    assert isinstance(s["np2d"], np.ndarray) and s["np2d"].flags.writeable
    assert isinstance(s["t2d"], torch.Tensor) and s["t2d"].shape == (3, 2)
    s["np2d"][0, 0] = 99  # a fresh array, like LitData's
    assert ds[4]["np2d"][0, 0] == 0


def test_fields_and_repr(full_dir: Path) -> None:
    ds = slipstream.SlipstreamDataset(full_dir, progress=False)
    assert [f.name for f in ds.fields] == list(m.expected_sample("full", 0))
    assert "12 samples" in repr(ds) and "jpeg: bytes" in repr(ds)


def test_tables_readable_with_numpy_memmap(flat_dir: Path) -> None:
    """docs/FORMAT.md: per-field tables are plain arrays at offsets given in the header."""
    ds = slipstream.SlipstreamDataset(flat_dir, progress=False)
    header = ds.header
    n = header["num_samples"]
    fields = {f["name"]: f for f in header["fields"]}
    labels = np.memmap(
        ds.cache_path, dtype="<i8", mode="r", offset=fields["label"]["values"]["offset"], shape=(n,)
    )
    assert labels.tolist() == [i % 10 for i in range(n)]
    record = np.dtype(
        [("offset", "<u8"), ("size", "<u4"), ("crc32c", "<u4"), ("height", "<u4"), ("width", "<u4")]
    )
    records = np.memmap(
        ds.cache_path,
        dtype=record,
        mode="r",
        offset=fields["image"]["records"]["offset"],
        shape=(n,),
    )
    with open(ds.cache_path, "rb") as f:
        f.seek(int(records[7]["offset"]))
        assert f.read(int(records[7]["size"])) == ds[7]["image"]
    assert (records["height"] == 16).all() and (records["width"] == 24).all()
    assert (records["offset"] % header["sample_alignment"] == 0).all()


def test_cache_reused_then_rebuilt_when_the_source_changes(tmp_path: Path, cache_dir: Path) -> None:
    src = m.make("flat", tmp_path / "ds", 6)
    first = slipstream.SlipstreamDataset(src, progress=False)
    built = os.stat(first.cache_path)
    again = slipstream.SlipstreamDataset(src, progress=False)
    assert again.cache_path == first.cache_path
    assert os.stat(again.cache_path).st_ino == built.st_ino, "reused, not rebuilt"

    # Replace the dataset by one with other contents: the cache must not be reused.
    shutil.rmtree(src)
    m.make("text", src, 6)
    changed = slipstream.SlipstreamDataset(src, progress=False)
    assert changed.cache_path == first.cache_path
    assert os.stat(changed.cache_path).st_ino != built.st_ino
    assert changed[0] == m.expected_sample("text", 0)
    # The dataset opened earlier keeps reading its own (old) cache file.
    assert first[0] == m.expected_sample("flat", 0)


def test_explicit_cache_dir_and_cache_file(flat_dir: Path, tmp_path: Path) -> None:
    ds = slipstream.SlipstreamDataset(flat_dir, cache_dir=tmp_path, progress=False)
    assert Path(ds.cache_path).parent == tmp_path
    direct = slipstream.SlipstreamDataset(ds.cache_path)
    assert direct[3] == ds[3]


def test_verify(flat_dir: Path) -> None:
    slipstream.SlipstreamDataset(flat_dir, progress=False).verify()


def test_other_remote_schemes_are_refused_clearly(tmp_path: Path) -> None:
    with pytest.raises(slipstream.UnsupportedError, match="gs://"):
        slipstream.SlipstreamDataset("gs://bucket/prefix/", cache_dir=tmp_path)


def test_s3_without_credentials_says_so(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for var in [v for v in os.environ if v.startswith("AWS_")]:
        monkeypatch.delenv(var)
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    with pytest.raises(slipstream.SlipstreamIOError, match="no usable AWS credentials"):
        slipstream.SlipstreamDataset(
            "s3://bucket/prefix/",
            cache_dir=tmp_path,
            storage_options={"endpoint_url": "http://127.0.0.1:9", "max_attempts": 1},
        )


def test_concurrent_processes_build_once(tmp_path: Path) -> None:
    """Several ranks on one node opening a new dataset: one builds, the others wait, all reuse."""
    import subprocess
    import sys

    src = m.make("flat", tmp_path / "ds", 40)
    code = (
        "import os, sys, slipstream; "
        "ds = slipstream.SlipstreamDataset(sys.argv[1], cache_dir=sys.argv[2]); "
        "print(os.stat(ds.cache_path).st_ino, len(ds))"
    )
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", code, str(src), str(tmp_path / "cache")],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(4)
    ]
    results = [p.communicate() for p in procs]
    assert all(p.returncode == 0 for p in procs), results
    assert len({out for out, _ in results}) == 1, "every process maps the same file"
    assert sum("building cache" in err for _, err in results) == 1, "built once"


def test_content_fingerprint_notices_a_chunk_rewritten_in_place(tmp_path: Path) -> None:
    """A chunk rewritten with the same size and its modification time put back: the default
    fingerprint (size, mtime) cannot tell, `fingerprint="content"` can."""

    src = m.make("flat", tmp_path / "ds", 40)
    cache = tmp_path / "cache"
    by_mtime = slipstream.SlipstreamDataset(src, cache_dir=cache, progress=False)
    by_content = slipstream.SlipstreamDataset(
        src, cache_dir=cache / "content", progress=False, fingerprint="content"
    )
    first_caption = by_mtime[0]["caption"]
    chunk = next(p for p in sorted(src.glob("chunk-*.bin")))
    stat = chunk.stat()
    data = chunk.read_bytes()
    at = data.index(first_caption.encode())
    chunk.write_bytes(data[:at] + first_caption.upper().encode() + data[at + len(first_caption) :])
    os.utime(chunk, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    again = slipstream.SlipstreamDataset(src, cache_dir=cache, progress=False)
    assert again.cache_path == by_mtime.cache_path and again[0]["caption"] == first_caption
    rebuilt = slipstream.SlipstreamDataset(
        src, cache_dir=cache / "content", progress=False, fingerprint="content"
    )
    assert rebuilt[0]["caption"] == first_caption.upper(), "the rewrite is noticed"
    assert by_content[0]["caption"] == first_caption, "an open cache stays as it was"
    with pytest.raises(slipstream.ConfigError, match="fingerprint must be"):
        slipstream.SlipstreamDataset(src, cache_dir=cache, fingerprint="size")


def build_in_subprocess(demo_dir: Path, cache: Path, *, progress: bool, jupyter: bool) -> str:
    """stderr of a process that builds a cache: a pipe, as a SLURM job's log file is; with
    ``jupyter``, an ipykernel-like process whose fd 2 the user does not see."""
    code = (
        "import sys, types\n"
        + ("sys.modules['ipykernel'] = types.ModuleType('ipykernel')\n" if jupyter else "")
        + "import slipstream\n"
        + f"slipstream.SlipstreamDataset({str(demo_dir)!r}, cache_dir={str(cache)!r}, "
        + f"progress={progress})\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )
    return result.stderr


def test_progress_reaches_logs_and_notebooks(demo_dir: Path, tmp_path: Path) -> None:
    log = build_in_subprocess(demo_dir, tmp_path / "a", progress=True, jupyter=False)
    assert "slipstream: building cache: 0 of" in log and "slipstream: building cache: 100% (" in log
    assert "slipstream: built " in log
    notebook = build_in_subprocess(demo_dir, tmp_path / "b", progress=True, jupyter=True)
    assert "slipstream: building cache:" in notebook and "100%" in notebook  # tqdm's bar
    assert "slipstream: built " in notebook
    quiet = build_in_subprocess(demo_dir, tmp_path / "c", progress=False, jupyter=True)
    assert "slipstream" not in quiet


def test_progress_lines_without_tqdm(capsys, monkeypatch: pytest.MonkeyPatch) -> None:
    from slipstream import _progress

    # No periodic line however slow the machine: only the first and the last are checked.
    monkeypatch.setattr(_progress, "LINE_EVERY_S", float("inf"))
    report = _progress.Reporter(use_tqdm=False)
    report("start", 7, "downloading s3://b/x/", 0, 2_000_000)
    report("advance", 7, "", 1_000_000, 0)  # within the line interval: no line
    report("finish", 7, "", 0, 0)
    report("line", 0, "slipstream: built it", 0, 0)
    lines = capsys.readouterr().err.splitlines()
    assert lines[0].startswith("slipstream: downloading s3://b/x/: 0% (0.0 of 2.0 MB")
    assert lines[1].startswith("slipstream: downloading s3://b/x/: 50% (1.0 of 2.0 MB")
    assert lines[2] == "slipstream: built it" and len(lines) == 3
