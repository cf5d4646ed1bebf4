"""Sources other than LitData on S3 (ImageFolder trees, WebDataset shards, Hugging Face
Parquet, FFCV .beton), against moto_server on loopback as in test_s3.py."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import slipstream as ss
from s3_server import MotoServer, proxy
from test_s3 import open_s3, same_samples


@pytest.fixture(scope="module")
def server():
    s = MotoServer()
    yield s
    s.stop()


def upload_tree(client, bucket: str, prefix: str, directory: Path) -> None:
    for path in sorted(directory.rglob("*")):
        if path.is_file():
            client.upload_file(str(path), bucket, prefix + path.relative_to(directory).as_posix())


def test_other_formats_on_s3_equal_the_local_ones(server, tmp_path) -> None:
    from test_sources import (
        beton_samples,
        make_tree,
        write_beton_file,
        write_hub_dataset,
        write_shards,
    )

    local = tmp_path / "local"
    make_tree(local / "folder", link=False)
    write_shards(local / "shards")
    write_hub_dataset(local / "hub")
    (local / "beton").mkdir()
    write_beton_file(local / "beton" / "train.beton", beton_samples(6, 3))
    client = server.client()
    client.create_bucket(Bucket="formats")
    for name in ("folder", "shards", "hub", "beton"):
        upload_tree(client, "formats", f"{name}/", local / name)
    cases = [
        ("folder/", local / "folder"),
        ("shards/", local / "shards"),
        ("shards/shard-000001.tar", local / "shards" / "shard-000001.tar"),
        ("hub/data/train-*.parquet", local / "hub" / "data" / "train-*.parquet"),
        ("beton/train.beton", local / "beton" / "train.beton"),
    ]
    for name, path in cases:
        ours = open_s3(f"s3://formats/{name}", server.url, tmp_path / "cache")
        theirs = ss.SlipstreamDataset(path, cache_dir=tmp_path / "lc", progress=False)
        same_samples(ours, theirs)
        assert ours.header["source"]["kind"] == theirs.header["source"]["kind"]
    with proxy(server) as p:
        again = open_s3("s3://formats/folder/", p.url, tmp_path / "cache")
        assert len(again) == 10
        assert not p.requests(lambda r: r.startswith("GET") and ".jpg" in r.lower())
    with pytest.raises(ss.SlipstreamError, match="holds the splits train, validation"):
        open_s3("s3://formats/hub/", server.url, tmp_path / "cache")


def test_a_tree_of_more_files_than_the_process_may_open_downloads(server, tmp_path) -> None:
    import resource

    from test_sources import image_bytes

    n = 400
    client = server.client()
    client.create_bucket(Bucket="many")
    images = [image_bytes(i % 7) for i in range(n)]
    for i, data in enumerate(images):
        client.put_object(Bucket="many", Key=f"tree/c{i % 3}/{i:04d}.jpg", Body=data)
    # Fewer descriptors left than two per object (a partial file and its log): the download
    # must not start every object at once.
    already = len(os.listdir("/proc/self/fd"))
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(already + 200, hard), hard))
    try:
        ds = open_s3("s3://many/tree/", server.url, tmp_path, storage={"concurrency": 4})
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    assert len(ds) == n
    for i in range(0, n, 37):
        sample = ds[i]
        k = int(sample["path"][-8:-4])
        assert sample["path"] == f"tree/c{k % 3}/{k:04d}.jpg"
        assert bytes(sample["image"]) == images[k]
