#!/usr/bin/env python3
"""Cache build rate of each source format against `cp -r` of the same files, in one run.

The same photographs (`slipstream demo`'s, ~92 KB JPEGs) are written once in each format:
an ImageFolder tree (one folder per label), WebDataset tar shards (written by `tarfile`),
Hugging Face Parquet shards (`data/train-*.parquet`, written by pyarrow with `datasets`'
Image struct, 100-row row groups as `datasets` writes image datasets) and an FFCV .beton
(python/tests/beton_writer.py), plus the LitData original. Each is then copied with
`cp -r` and built into a slipstream cache (a fresh cache directory each time), both with
the files in the page cache; the ratio is the build's MB/s of source over cp's. Prints a
table; writes JSON with machine information.

    .venv/bin/python benches/python/sources.py [--images 2000] [--repeats 3]
"""

from __future__ import annotations

import argparse
import io
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path
from typing import Any

from bench_common import machine, photos, save

ROOT = Path(__file__).resolve().parents[2]


def size_of(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def write_formats(ds: Any, out: Path) -> dict[str, Path]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    sys.path.insert(0, str(ROOT / "python" / "tests"))
    import beton_writer as bw

    samples = [(ds[i]["image"], int(ds[i]["label"])) for i in range(len(ds))]
    folder = out / "imagefolder"
    for i, (image, label) in enumerate(samples):
        path = folder / f"class_{label:03d}" / f"img_{i:06d}.jpg"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(image)
    shards = out / "webdataset"
    shards.mkdir()
    per_shard = 500
    for s in range(0, len(samples), per_shard):
        with tarfile.open(shards / f"shard-{s // per_shard:06d}.tar", "w") as t:
            for i, (image, label) in enumerate(samples[s : s + per_shard], start=s):
                for ext, data in (("jpg", image), ("cls", str(label).encode())):
                    info = tarfile.TarInfo(f"img_{i:06d}.{ext}")
                    info.size = len(data)
                    t.addfile(info, io.BytesIO(data))
    hub = out / "parquet" / "data"
    hub.mkdir(parents=True)
    n_files = (len(samples) + per_shard - 1) // per_shard
    for f, s in enumerate(range(0, len(samples), per_shard)):
        rows = samples[s : s + per_shard]
        table = pa.table(
            {
                "image": [{"bytes": image, "path": None} for image, _ in rows],
                "label": pa.array([label for _, label in rows], pa.int64()),
            }
        )
        pq.write_table(table, hub / f"train-{f:05d}-of-{n_files:05d}.parquet", row_group_size=100)
    beton = out / "train.beton"
    fields = {"image": bw.RGBImageField(), "label": bw.IntField()}
    bw.write_beton(str(beton), fields, [(image, label) for image, label in samples])
    return {
        "litdata": Path(ds.header["source"]["path"]),
        "imagefolder": folder,
        "webdataset": shards,
        "parquet": out / "parquet",
        "beton": beton,
    }


def median_seconds(run: Any, repeats: int) -> float:
    run()  # warm-up: the source in the page cache
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        run()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--data", type=Path, default=ROOT / "target" / "bench-data")
    parser.add_argument("--out", type=Path, default=ROOT / "benches" / "results")
    args = parser.parse_args()

    import slipstream as ss

    ds = photos(args.data, args.images)
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(dir=args.data) as scratch_dir:
        scratch = Path(scratch_dir)
        sources = write_formats(ds, scratch / "sources")
        print(f"{args.images} photographs; MB/s of source read, median of {args.repeats}")
        print(
            f"{'format':12} {'source MB':>9} {'cache MB':>8} {'cp -r':>8} {'build':>8} {'ratio':>6}"
        )
        for name, source in sources.items():
            copy = scratch / "copy"
            caches = scratch / "caches"

            def cp(source: Path = source, copy: Path = copy) -> None:
                shutil.rmtree(copy, ignore_errors=True)
                subprocess.run(["cp", "-r", str(source), str(copy)], check=True)

            def build(source: Path = source, caches: Path = caches) -> None:
                shutil.rmtree(caches, ignore_errors=True)
                ss.SlipstreamDataset(source, cache_dir=caches, progress=False)

            source_mb = size_of(source) / 1e6
            cp_s = median_seconds(cp, args.repeats)
            build_s = median_seconds(build, args.repeats)
            cache_mb = size_of(caches) / 1e6
            ratio = cp_s / build_s
            results[name] = {
                "source_bytes": int(source_mb * 1e6),
                "cache_bytes": int(cache_mb * 1e6),
                "cp_seconds": cp_s,
                "build_seconds": build_s,
                "cp_mb_s": source_mb / cp_s,
                "build_mb_s": source_mb / build_s,
                "build_vs_cp": ratio,
            }
            print(
                f"{name:12} {source_mb:9.1f} {cache_mb:8.1f} {source_mb / cp_s:8.0f} "
                f"{source_mb / build_s:8.0f} {ratio:6.2f}"
            )
            shutil.rmtree(copy, ignore_errors=True)
    save(
        args.out,
        "sources",
        {
            "benchmark": "cache build rate per source format against cp -r",
            "images": args.images,
            "machine": machine(slipstream=ss.__version__),
            "results": results,
        },
    )


if __name__ == "__main__":
    main()
