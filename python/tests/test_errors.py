"""Bad input raises a SlipstreamError subclass naming the file and sample (Rust tests cover
every defect; these check that each kind arrives in Python as the right class)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import litdata_datasets as m
import pytest
import slipstream


@pytest.fixture
def dataset(tmp_path: Path, flat_dir: Path) -> Path:
    d = tmp_path / "ds"
    shutil.copytree(flat_dir, d)
    return d


def edit_index(d: Path, edit) -> None:
    index = json.loads((d / "index.json").read_text())
    edit(index)
    (d / "index.json").write_text(json.dumps(index))


def test_truncated_chunk(dataset: Path) -> None:
    chunk = dataset / "chunk-0-1.bin"
    chunk.write_bytes(chunk.read_bytes()[:-40])
    with pytest.raises(slipstream.FormatError, match=r"chunk-0-1\.bin") as e:
        slipstream.SlipstreamDataset(dataset, progress=False)
    assert isinstance(e.value, slipstream.SlipstreamError)


def test_corrupt_index(dataset: Path) -> None:
    (dataset / "index.json").write_text("{")
    with pytest.raises(slipstream.FormatError, match=r"index\.json"):
        slipstream.SlipstreamDataset(dataset, progress=False)


def test_missing_index(tmp_path: Path) -> None:
    with pytest.raises(slipstream.FormatError, match=r"index\.json is missing"):
        slipstream.SlipstreamDataset(tmp_path, progress=False)


def test_missing_directory(tmp_path: Path) -> None:
    with pytest.raises(slipstream.SlipstreamIOError, match="No such file") as e:
        slipstream.SlipstreamDataset(tmp_path / "nope", progress=False)
    assert isinstance(e.value, OSError)


def test_missing_chunk(dataset: Path) -> None:
    (dataset / "chunk-0-0.bin").unlink()
    with pytest.raises(slipstream.FormatError, match=r"chunk-0-0\.bin.*missing"):
        slipstream.SlipstreamDataset(dataset, progress=False)


def test_chunk_outside_the_dataset(dataset: Path) -> None:
    edit_index(dataset, lambda i: i["chunks"][0].update(filename="../../etc/passwd"))
    with pytest.raises(slipstream.FormatError, match="outside the dataset directory"):
        slipstream.SlipstreamDataset(dataset, progress=False)


def test_unknown_serializer(dataset: Path) -> None:
    edit_index(dataset, lambda i: i["config"]["data_format"].__setitem__(0, "video"))
    with pytest.raises(slipstream.UnsupportedError, match=r"field 'image'.*video"):
        slipstream.SlipstreamDataset(dataset, progress=False)


def test_empty_dataset(dataset: Path) -> None:
    edit_index(dataset, lambda i: i.update(chunks=[]))
    with pytest.raises(slipstream.FormatError, match="empty"):
        slipstream.SlipstreamDataset(dataset, progress=False)


def test_json_leaves_are_refused_with_advice(tmp_path: Path) -> None:
    import litdata

    def fn(i: int) -> dict:
        return {"image": b"x" * 10, "labels": [i, i + 1]}

    litdata.optimize(
        fn=fn,
        inputs=list(range(4)),
        output_dir=str(tmp_path / "ds"),
        chunk_bytes="1MB",
        num_workers=1,
        start_method="fork",
    )
    with pytest.raises(slipstream.UnsupportedError, match="'labels'") as e:
        slipstream.SlipstreamDataset(tmp_path / "ds", progress=False)
    assert "Store the value as one of those" in str(e.value)


def test_checksum_failure(tmp_path: Path) -> None:
    src = m.make("flat", tmp_path / "ds", 6)
    ds = slipstream.SlipstreamDataset(src, cache_dir=tmp_path / "cache", progress=False)
    record_offset = ds.header["fields"][0]["records"]["offset"] + 24 * 4
    with open(ds.cache_path, "r+b") as f:
        f.seek(record_offset)
        data_offset = int.from_bytes(f.read(8), "little")
        f.seek(data_offset + 5)
        byte = f.read(1)
        f.seek(data_offset + 5)
        f.write(bytes([byte[0] ^ 1]))
    damaged = slipstream.SlipstreamDataset(ds.cache_path)
    with pytest.raises(slipstream.ChecksumError, match=r"\(sample 4\).*'image'") as e:
        damaged.verify()
    assert isinstance(e.value, slipstream.CacheError)
    # Reading the damaged sample raises too, rather than returning wrong bytes.
    assert damaged[3]["image"] == m.expected_sample("flat", 3)["image"]
    with pytest.raises(slipstream.ChecksumError, match=r"\(sample 4\)"):
        damaged[4]
    with pytest.raises(slipstream.ChecksumError, match=r"\(sample 4\)"):
        list(slipstream.SlipstreamLoader(damaged, batch_size=2, shuffle=False))
    # Opening the dataset (not the file) notices the damage only when it is read; a rebuild
    # (slipstream build --rebuild) repairs it.
    repaired = slipstream.SlipstreamDataset(src, cache_dir=tmp_path / "cache", rebuild=True)
    assert repaired[4] == m.expected_sample("flat", 4)
