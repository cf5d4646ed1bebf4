"""Sources other than LitData, against the reference readers: an ImageFolder tree made here
against torchvision's ImageFolder (same classes, labels and order, every byte the file's)."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import slipstream as ss
from PIL import Image

tv_datasets = pytest.importorskip("torchvision.datasets")


def image_bytes(seed: int, fmt: str = "JPEG", size: tuple[int, int] = (40, 32)) -> bytes:
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format=fmt)
    return buffer.getvalue()


def write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    return make_tree(tmp_path / "train")


def make_tree(root: Path, link: bool = True) -> Path:
    """Classes whose order, nesting, names and extensions exercise torchvision's rules."""
    files = [
        "n02/b.jpg",
        "n02/a.JPEG",  # extensions compare lower-cased
        "n02/sub/z.png",
        "n02/sub-x/y.jpg",  # "sub-x" sorts before "sub/..." as os.walk paths do
        "n02/sub/deeper/q.jpg",
        "n01/c.jpeg",
        "n01/B.jpg",  # capitals sort first
        "N10/x.Png",
        "N10/w.webp",
        ".hidden/h.jpg",  # torchvision counts hidden folders as classes too
    ]
    for k, name in enumerate(files):
        fmt = {"png": "PNG", "webp": "WEBP"}.get(name.lower().rsplit(".")[-1], "JPEG")
        write(root / name, image_bytes(k, fmt))
    write(root / "n01" / "notes.txt", b"not an image")  # skipped: not an image extension
    write(root / "README", b"a file at the top is not a class")
    if link:
        (root / "linked").symlink_to(root / "n01")  # a linked class folder is followed
    return root


def test_image_folder_is_torchvisions(tree: Path, tmp_path: Path) -> None:
    reference = tv_datasets.ImageFolder(str(tree))
    ds = ss.SlipstreamDataset(tree, cache_dir=tmp_path / "cache", progress=False)
    assert ds.classes == reference.classes
    assert len(ds) == len(reference.samples) == 12
    assert [f.name for f in ds.fields] == ["image", "label", "path"]
    assert ds.fields[0].images
    for i, (path, label) in enumerate(reference.samples):
        sample = ds[i]
        assert sample["label"] == label
        assert sample["image"] == Path(path).read_bytes()
        assert sample["path"] == "train/" + os.path.relpath(path, tree)
    assert ds.header["source"]["kind"] == "imagefolder"
    explicit = ss.SlipstreamDataset(
        tree, cache_dir=tmp_path / "cache", progress=False, format="imagefolder"
    )
    assert explicit.cache_path == ds.cache_path


def test_image_folder_feeds_the_loader(tree: Path, tmp_path: Path) -> None:
    reference = tv_datasets.ImageFolder(str(tree))
    ds = ss.SlipstreamDataset(tree, cache_dir=tmp_path / "cache", progress=False)
    loader = ss.SlipstreamLoader(
        ds,
        batch_size=5,
        seed=1,
        output="numpy",
        pipelines={"image": [ss.RandomResizedCrop(24), ss.Normalize()]},
    )
    seen = []
    for batch in loader:
        assert batch["image"].shape[1:] == (3, 24, 24)
        for i, label, path in zip(batch["index"], batch["label"], batch["path"], strict=True):
            assert label == reference.samples[i][1]
            assert path.endswith(Path(reference.samples[i][0]).name)
            seen.append(int(i))
    assert sorted(seen) == list(range(len(ds)))


def test_a_changed_file_rebuilds_the_cache(tree: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    ds = ss.SlipstreamDataset(tree, cache_dir=cache, progress=False)
    first = ds[0]["image"]
    target = tree / ds[0]["path"].split("/", 1)[1]
    write(target, image_bytes(99))
    os.utime(target, ns=(1, 1))
    again = ss.SlipstreamDataset(tree, cache_dir=cache, progress=False)
    assert again[0]["image"] == target.read_bytes() != first
    write(tree / "n01" / "new.jpg", image_bytes(100))  # in n01 and its link, "linked"
    assert len(ss.SlipstreamDataset(tree, cache_dir=cache, progress=False)) == len(ds) + 2


@pytest.mark.parametrize(
    "damage, named, message",
    [
        (lambda root: (root / "empty").mkdir(), "empty", "no image file"),
        (lambda root: write(root / "n01" / "bad.jpg", b"garbage"), "bad.jpg", "not a JPEG"),
        (
            lambda root: write(root / "n01" / "x.bmp", image_bytes(5, "BMP")),
            "x.bmp",
            "not a JPEG, PNG or WebP",
        ),
        (lambda root: os.mkfifo(root / "n01" / "pipe.jpg"), "pipe.jpg", "FIFO"),
        (lambda root: (root / "n01" / "c.jpeg").write_bytes(b""), "c.jpeg", "not a JPEG"),
    ],
)
def test_bad_trees_name_the_file(tree: Path, tmp_path: Path, damage, named, message) -> None:
    damage(tree)
    with pytest.raises(ss.SlipstreamError, match=message) as caught:
        ss.SlipstreamDataset(tree, cache_dir=tmp_path / "cache", progress=False)
    assert named in str(caught.value)


def test_format_is_checked(tree: Path, tmp_path: Path) -> None:
    with pytest.raises(ss.SlipstreamError, match="format must be"):
        ss.SlipstreamDataset(tree, cache_dir=tmp_path / "c", progress=False, format="bogus")
    with pytest.raises(ss.SlipstreamError, match=r"index\.json is missing"):
        ss.SlipstreamDataset(tree, cache_dir=tmp_path / "c", progress=False, format="litdata")
    with pytest.raises(ss.SlipstreamError, match="no class folders"):
        ss.SlipstreamDataset(
            tree / "n01", cache_dir=tmp_path / "c", progress=False, format="imagefolder"
        )


def test_cli_builds_an_image_folder(tree: Path, tmp_path: Path) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "slipstream", "build", str(tree), "--cache-dir", str(tmp_path)],
        capture_output=True,
        text=True,
        check=True,
    )
    cache = out.stdout.strip().splitlines()[-1]
    assert len(ss.SlipstreamDataset(cache, progress=False)) == 12


# -- WebDataset tar shards ------------------------------------------------------------------


def write_shards(root: Path, shards: int = 3, per_shard: int = 4, fmt=None) -> list[dict]:
    """Shards written by Python's tarfile as WebDataset's TarWriter lays them out; returns
    the samples as WebDataset's reader groups them."""
    import tarfile

    root.mkdir(parents=True, exist_ok=True)
    samples = []
    for s in range(shards):
        with tarfile.open(root / f"shard-{s:06d}.tar", "w", format=fmt or tarfile.PAX_FORMAT) as t:
            for k in range(per_shard):
                n = s * per_shard + k
                key = f"n{n % 3:02d}/" + ("long_" * 30 if n % 2 else "") + f"img_{n}"
                sample = {
                    "__key__": key,
                    "jpg": image_bytes(n),
                    "cls": n % 3,
                    "json": f'{{"n": {n}, "name": "é{n}"}}',
                    "seg.png": image_bytes(1000 + n, "PNG", (8, 8)),
                }
                for ext, value in list(sample.items())[1:]:
                    data = (
                        value
                        if isinstance(value, bytes)
                        else str(value).encode() + (b"\n" if ext == "cls" else b"")
                    )
                    info = tarfile.TarInfo(f"{key}.{ext.upper() if ext == 'jpg' else ext}")
                    info.size = len(data)
                    t.addfile(info, io.BytesIO(data))
                samples.append(sample)
            info = tarfile.TarInfo("n00")  # a directory entry, skipped
            info.type = tarfile.DIRTYPE
            t.addfile(info)
    return samples


@pytest.mark.parametrize("fmt", ["pax", "gnu"])
def test_webdataset_shards_byte_exact(tmp_path: Path, fmt: str) -> None:
    import tarfile

    tar_format = {"pax": tarfile.PAX_FORMAT, "gnu": tarfile.GNU_FORMAT}[fmt]
    samples = write_shards(tmp_path / "shards", fmt=tar_format)
    ds = ss.SlipstreamDataset(tmp_path / "shards", cache_dir=tmp_path / "cache", progress=False)
    assert ds.header["source"]["kind"] == "webdataset"
    assert [f.name for f in ds.fields] == ["__key__", "jpg", "cls", "json", "seg.png"]
    assert [f.kind for f in ds.fields] == ["str", "bytes", "int", "str", "bytes"]
    assert len(ds) == len(samples) == 12
    for i, sample in enumerate(samples):
        assert ds[i] == sample
    one = ss.SlipstreamDataset(
        tmp_path / "shards" / "shard-000001.tar", cache_dir=tmp_path / "cache", progress=False
    )
    assert [one[i] for i in range(len(one))] == samples[4:8]


def test_webdataset_feeds_the_loader(tmp_path: Path) -> None:
    samples = write_shards(tmp_path / "shards")
    ds = ss.SlipstreamDataset(tmp_path / "shards", cache_dir=tmp_path / "cache", progress=False)
    loader = ss.SlipstreamLoader(
        ds,
        batch_size=6,
        seed=0,
        output="numpy",
        pipelines={"image": ss.Pipeline([ss.CenterCrop(16)], field="jpg")},
    )
    for batch in loader:
        assert batch["image"].shape == (6, 3, 16, 16)
        for i, cls, key in zip(batch["index"], batch["cls"], batch["__key__"], strict=True):
            assert (cls, key) == (samples[i]["cls"], samples[i]["__key__"])


def damage_truncate(root: Path) -> None:
    shard = root / "shard-000001.tar"
    shard.write_bytes(shard.read_bytes()[:3000])


def damage_header(root: Path) -> None:
    shard = root / "shard-000002.tar"
    data = bytearray(shard.read_bytes())
    data[0:4] = b"XXXX"
    shard.write_bytes(bytes(data))


def damage_gzip(root: Path) -> None:
    import gzip

    shard = root / "shard-000000.tar"
    shard.write_bytes(gzip.compress(shard.read_bytes()))


def damage_missing_field(root: Path) -> None:
    import tarfile

    with tarfile.open(root / "shard-000003.tar", "w") as t:
        info = tarfile.TarInfo("odd.jpg")
        info.size = 3
        t.addfile(info, io.BytesIO(b"abc"))


def damage_label(root: Path) -> None:
    import tarfile

    with tarfile.open(root / "shard-000003.tar", "w") as t:
        for ext, data in [("jpg", image_bytes(1)), ("cls", b"seven"), ("json", b"{}")]:
            info = tarfile.TarInfo(f"odd.{ext}")
            info.size = len(data)
            t.addfile(info, io.BytesIO(data))
        info = tarfile.TarInfo("odd.seg.png")
        info.size = 1
        t.addfile(info, io.BytesIO(b"x"))


@pytest.mark.parametrize(
    "damage, named, message",
    [
        (damage_truncate, "shard-000001.tar", "truncated"),
        (damage_header, "shard-000002.tar", "not a tar file"),
        (damage_gzip, "shard-000000.tar", "gzip"),
        (damage_missing_field, "shard-000003.tar", "lacks cls, json, seg.png"),
        (damage_label, "shard-000003.tar", '"seven", not an integer'),
    ],
)
def test_bad_shards_name_the_file(tmp_path: Path, damage, named, message) -> None:
    write_shards(tmp_path / "shards")
    damage(tmp_path / "shards")
    with pytest.raises(ss.SlipstreamError, match=message) as caught:
        ss.SlipstreamDataset(tmp_path / "shards", cache_dir=tmp_path / "cache", progress=False)
    assert named in str(caught.value)


# -- Hugging Face Parquet shards ------------------------------------------------------------


def write_hub_dataset(root: Path, rows: int = 10) -> Path:
    """A dataset as `datasets` writes it and the hub lays it out: data/<split>-i-of-n.parquet,
    images embedded (the Image feature's {bytes, path} struct), a ClassLabel and scalars."""
    hf = pytest.importorskip("datasets")
    features = hf.Features(
        {
            "image": hf.Image(),
            "label": hf.ClassLabel(names=["cat", "dog", "eel"]),
            "caption": hf.Value("string"),
            "score": hf.Value("float32"),
            "flag": hf.Value("bool"),
        }
    )
    for split, n, shards in [("train", rows, 2), ("validation", 3, 1)]:
        table = hf.Dataset.from_dict(
            {
                "image": [{"bytes": image_bytes(k), "path": f"img_{k}.jpg"} for k in range(n)],
                "label": [k % 3 for k in range(n)],
                "caption": [f"a photo, number {k} ü" for k in range(n)],
                "score": [k / 3 for k in range(n)],
                "flag": [k % 2 == 0 for k in range(n)],
            },
            features=features,
        )
        for i in range(shards):
            out = root / "data" / f"{split}-{i:05d}-of-{shards:05d}.parquet"
            out.parent.mkdir(parents=True, exist_ok=True)
            table.shard(num_shards=shards, index=i, contiguous=True).to_parquet(str(out))
    return root


def test_hub_parquet_byte_exact(tmp_path: Path) -> None:
    hf = pytest.importorskip("datasets")
    root = write_hub_dataset(tmp_path / "hub")
    with pytest.raises(ss.SlipstreamError, match="holds the splits train, validation"):
        ss.SlipstreamDataset(root, cache_dir=tmp_path / "cache", progress=False)
    pattern = root / "data" / "train-*.parquet"
    ds = ss.SlipstreamDataset(pattern, cache_dir=tmp_path / "cache", progress=False)
    reference = hf.Dataset.from_parquet(
        sorted(map(str, (root / "data").glob("train-*")))
    ).cast_column("image", hf.Image(decode=False))
    assert ds.header["source"]["kind"] == "parquet"
    assert [(f.name, f.kind) for f in ds.fields] == [
        ("image", "bytes"),
        ("label", "int"),
        ("caption", "str"),
        ("score", "float"),
        ("flag", "bool"),
    ]
    assert ds.fields[0].images
    assert len(ds) == len(reference) == 10
    for i in range(len(ds)):
        ours, theirs = ds[i], reference[i]
        assert ours["image"] == theirs["image"]["bytes"]
        assert {k: ours[k] for k in ("label", "caption", "score", "flag")} == {
            k: theirs[k] for k in ("label", "caption", "score", "flag")
        }
    validation = ss.SlipstreamDataset(
        root / "data" / "validation-00000-of-00001.parquet",
        cache_dir=tmp_path / "cache",
        progress=False,
    )
    assert len(validation) == 3
    loader = ss.SlipstreamLoader(
        ds, batch_size=4, output="numpy", pipelines={"image": [ss.CenterCrop(16)]}
    )
    batch = next(iter(loader))
    assert batch["image"].shape == (4, 3, 16, 16)
    assert [reference[int(i)]["label"] for i in batch["index"]] == batch["label"].tolist()


def parquet_with(path: Path, compression: str = "snappy", **columns) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table(columns), path, compression=compression)


@pytest.mark.parametrize("codec", ["gzip", "zstd", "lz4", "none"])
def test_parquet_codecs_read_byte_exact(tmp_path: Path, codec: str) -> None:
    images = [image_bytes(k) for k in range(5)]
    parquet_with(
        tmp_path / "pq" / "a.parquet",
        codec,
        image=[{"bytes": b, "path": f"{k}.jpg"} for k, b in enumerate(images)],
        label=list(range(5)),
    )
    ds = ss.SlipstreamDataset(tmp_path / "pq", cache_dir=tmp_path / "cache", progress=False)
    assert [ds[k]["image"] for k in range(5)] == images
    assert [ds[k]["label"] for k in range(5)] == list(range(5))


@pytest.mark.parametrize(
    "damage, named, message",
    [
        (
            lambda d: parquet_with(d / "b.parquet", boxes=[[1, 2], [3]], label=[0, 1]),
            "b.parquet",
            "differ from the first file",
        ),
        (
            lambda d: parquet_with(d / "0.parquet", boxes=[[1, 2], [3]], label=[0, 1]),
            "0.parquet",
            "column 'boxes' has type List",
        ),
        (
            lambda d: (d / "a.parquet").write_bytes((d / "a.parquet").read_bytes()[:300]),
            "a.parquet",
            "not a readable Parquet file",
        ),
        (
            lambda d: parquet_with(
                d / "b.parquet",
                image=[{"bytes": None, "path": "x.jpg"}, {"bytes": image_bytes(1), "path": None}],
                label=[0, 1],
            ),
            "b.parquet (sample 2)",
            "without embedded bytes",
        ),
        (
            lambda d: parquet_with(
                d / "b.parquet",
                image=[{"bytes": image_bytes(1), "path": "p"}] * 2,
                label=[0, None],
            ),
            "b.parquet (sample 3)",
            "null",
        ),
        (
            lambda d: parquet_with(
                d / "b.parquet", "brotli", image=[{"bytes": b"x", "path": "p"}], label=[0]
            ),
            "b.parquet",
            "compressed with BROTLI",
        ),
    ],
)
def test_bad_parquet_names_the_file(tmp_path: Path, damage, named, message) -> None:
    root = tmp_path / "pq"
    parquet_with(
        root / "a.parquet",
        image=[{"bytes": image_bytes(k), "path": f"{k}.jpg"} for k in range(2)],
        label=[0, 1],
    )
    damage(root)
    with pytest.raises(ss.SlipstreamError, match=message) as caught:
        ss.SlipstreamDataset(root, cache_dir=tmp_path / "cache", progress=False)
    assert named in str(caught.value)


# -- FFCV .beton ----------------------------------------------------------------------------


def beton_samples(n: int, raw_every: int) -> list[tuple]:
    """Samples of every FFCV field type; images raw (an array) every `raw_every`th sample,
    otherwise a real JPEG."""
    rng = np.random.default_rng(7)
    samples = []
    for i in range(n):
        pixels = rng.integers(0, 256, (12 + i, 10, 3), dtype=np.uint8)
        image = pixels if raw_every and i % raw_every == 0 else image_bytes(i)
        blob = rng.integers(0, 256, 5 * i, dtype=np.uint8)
        emb = rng.random((2, 3), dtype=np.float32)
        samples.append((i - 3, i / 7, blob, {"i": i, "s": f"é{i}"}, image, emb))
    return samples


def write_beton_file(path: Path, samples: list[tuple]) -> None:
    import beton_writer as bw

    fields = {
        "label": bw.IntField(),
        "score": bw.FloatField(),
        "blob": bw.BytesField(),
        "meta": bw.JSONField(),
        "image": bw.RGBImageField(),
        "emb": bw.NDArrayField(np.float32, (2, 3)),
    }
    bw.write_beton(str(path), fields, samples, page_size=4096, check_page_size=False)


@pytest.mark.parametrize("raw_every", [0, 1, 3])  # all JPEG, all raw, mixed
def test_beton_byte_exact(tmp_path: Path, raw_every: int) -> None:
    import json

    import beton_writer as bw

    path = tmp_path / ("train.ffcv" if raw_every == 3 else "train.beton")  # both names are FFCV's
    samples = beton_samples(9, raw_every)
    write_beton_file(path, samples)
    names, reference = bw.read_beton(str(path))
    ds = ss.SlipstreamDataset(path, cache_dir=tmp_path / "cache", progress=False)
    assert ds.header["source"]["kind"] == "beton"
    assert [f.name for f in ds.fields] == names
    image_kind = "pil" if raw_every == 1 else "bytes"
    assert [f.kind for f in ds.fields] == ["int", "float", "bytes", "str", image_kind, "array"]
    assert len(ds) == len(reference) == 9
    for i, (label, score, blob, meta, (mode, image), emb) in enumerate(reference):
        ours = ds[i]
        assert (ours["label"], ours["score"], ours["blob"]) == (label, score, blob)
        assert json.loads(ours["meta"]) == meta
        assert np.array_equal(ours["emb"], emb) and ours["emb"].dtype == np.float32
        if mode == "jpg":
            assert ours["image"] == image
        elif image_kind == "pil":
            assert np.array_equal(np.asarray(ours["image"]), image)
        else:  # raw samples of a mixed field: stored losslessly as PNG
            assert np.array_equal(ss.decode_image(ours["image"]), image)
    if image_kind == "bytes":
        loader = ss.SlipstreamLoader(
            ds, batch_size=3, output="numpy", pipelines={"image": [ss.CenterCrop(8)]}
        )
        assert next(iter(loader))["image"].shape == (3, 3, 8, 8)


def corrupt(path: Path, at: int, data: bytes) -> None:
    raw = bytearray(path.read_bytes())
    raw[at : at + len(data)] = data
    path.write_bytes(bytes(raw))


@pytest.mark.parametrize(
    "damage, message",
    [
        (lambda p: p.write_bytes(p.read_bytes()[:20]), "too short"),
        (lambda p: corrupt(p, 0, (3).to_bytes(2, "little")), "version 3"),
        (lambda p: corrupt(p, 24, bytes([9])), "type id 9"),
        (lambda p: corrupt(p, 16, (1 << 40).to_bytes(8, "little")), "allocation table"),
        (lambda p: corrupt(p, 8, (1 << 30).to_bytes(8, "little")), "do not fit"),
        (lambda p: p.write_bytes(p.read_bytes()[:-30]), "allocation table"),
    ],
)
def test_bad_beton_names_the_file(tmp_path: Path, damage, message) -> None:
    path = tmp_path / "bad.beton"
    write_beton_file(path, beton_samples(4, 2))
    damage(path)
    with pytest.raises(ss.SlipstreamError, match=message) as caught:
        ss.SlipstreamDataset(path, cache_dir=tmp_path / "cache", progress=False)
    assert "bad.beton" in str(caught.value)
