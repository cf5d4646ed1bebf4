#!/usr/bin/env python3
"""Time to the first batch from s3:// while the dataset downloads, in one run.

A LitData dataset of >= 1 GB (`slipstream demo` photographs, repeated, in 64 MB chunks as
`litdata.optimize` writes by default) is uploaded to an S3 server on loopback (moto_server, as
in the tests). Each run starts from an empty cache directory and times, from opening the
dataset, the first batch of a loader (raw fields, batch 256) and the whole first epoch:

- ``quasi_random``: the cache streams in, chunks fetched in the order the epoch reads them;
- ``quasi_random_c8``: the same with ``concurrency=8`` (a quarter of the bytes in flight);
- ``random`` (the default order): the cache streams in too, but a batch of 256 random samples
  needs nearly every chunk;
- ``whole`` (``stream=False``): the whole download and build, then the loader.

Prints the table and the ratios (quasi_random's first batch against the other two), and the
disk used (the mirrored chunks plus the cache); writes JSON with machine information to
benches/results/.

    .venv/bin/python benches/python/s3_streaming.py [--gb 1.2] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

from bench_common import machine, photos, save

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "python" / "tests"))

from s3_server import MotoServer, upload_dir  # noqa: E402

CHUNK_BYTES = 64 << 20  # litdata.optimize's default chunk_bytes


def write_litdata(out: Path, images: list[bytes], labels: list[int], gb: float) -> Path:
    """A LitData dataset (fields image: jpeg, label: int) of the photographs repeated until
    it holds `gb` GB, in the uncompressed chunk layout `litdata.optimize` writes."""
    if (out / "index.json").exists():
        return out
    partial = out.with_suffix(".partial")
    partial.mkdir(parents=True, exist_ok=True)
    chunks, items, pending, total, i = [], [], 0, 0, 0

    def flush() -> None:
        nonlocal items, pending
        header = 4 + 4 * (len(items) + 1)
        offsets, at = [], header
        for item in items:
            offsets.append(at)
            at += len(item)
        offsets.append(at)
        name = f"chunk-0-{len(chunks)}.bin"
        with open(partial / name, "wb") as f:
            f.write(len(items).to_bytes(4, "little"))
            f.write(b"".join(o.to_bytes(4, "little") for o in offsets))
            f.write(b"".join(items))
        chunks.append({"chunk_bytes": at, "chunk_size": len(items), "dim": None, "filename": name})
        items, pending = [], 0

    while total < gb * 1e9:
        image, label = images[i % len(images)], labels[i % len(images)]
        leaves = [image, label.to_bytes(8, "little", signed=True)]
        item = b"".join(len(leaf).to_bytes(4, "little") for leaf in leaves) + b"".join(leaves)
        if items and pending + len(item) > CHUNK_BYTES:
            flush()
        items.append(item)
        pending += len(item)
        total += len(item)
        i += 1
    flush()
    leaf = {"type": None, "context": None, "children_spec": []}
    spec = [
        1,
        {"type": "builtins.dict", "context": '["image", "label"]', "children_spec": [leaf, leaf]},
    ]
    config = {
        "chunk_bytes": CHUNK_BYTES,
        "chunk_size": None,
        "compression": None,
        "compression_batch_size": None,
        "compression_level": None,
        "data_format": ["jpeg", "int"],
        "data_spec": json.dumps(spec),
        "encryption": None,
        "ipc_compression": None,
        "item_loader": "PyTreeLoader",
        "types": {"image": "pil", "label": "int"},
    }
    index = {"chunks": chunks, "config": config, "updated_at": f"{time.time():.7f}"}
    (partial / "index.json").write_text(json.dumps(index))
    partial.rename(out)
    return out


def first_batch_and_epoch(url: str, storage: dict, cache: Path, order: str, stream: bool):
    """Seconds from opening the dataset to the loader's first batch, and to its epoch's end."""
    import slipstream as ss

    t = time.perf_counter()
    ds = ss.SlipstreamDataset(
        url, cache_dir=cache, progress=False, storage_options=storage, stream=stream
    )
    loader = ss.SlipstreamLoader(ds, batch_size=256, order=order, seed=0, output="numpy")
    it = iter(loader)
    next(it)
    first = time.perf_counter() - t
    for _ in it:
        pass
    epoch = time.perf_counter() - t
    # A streamed build writes its header just after the last chunk: let it finish before the
    # directory is removed.
    while not Path(ds.cache_path).exists():
        time.sleep(0.01)
    return first, epoch


def disk_bytes(d: Path) -> int:
    return sum(p.stat().st_size for p in d.rglob("*") if p.is_file())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--gb", type=float, default=1.2)
    parser.add_argument("--images", type=int, default=2000, help="distinct photographs")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--data", type=Path, default=ROOT / "target" / "bench-data")
    parser.add_argument("--out", type=Path, default=ROOT / "benches" / "results")
    args = parser.parse_args()

    import slipstream as ss

    base = photos(args.data, args.images)
    samples = [base[i] for i in range(len(base))]
    source = write_litdata(
        args.data / f"stream-{args.gb}gb",
        [s["image"] for s in samples],
        [s["label"] for s in samples],
        args.gb,
    )
    index = json.loads((source / "index.json").read_text())
    size = sum(c["chunk_bytes"] for c in index["chunks"])
    n = sum(c["chunk_size"] for c in index["chunks"])
    server = MotoServer()
    modes = {
        "quasi_random": ("quasi_random", True, {}),
        "quasi_random_c8": ("quasi_random", True, {"concurrency": 8}),
        "random": ("random", True, {}),
        "whole": ("quasi_random", False, {}),
    }
    seconds: dict[str, list[tuple[float, float]]] = {m: [] for m in modes}
    disk = {}
    try:
        client = server.client()
        client.create_bucket(Bucket="bench")
        upload_dir(client, "bench", "stream/", source)
        url = "s3://bench/stream/"
        storage = {
            "endpoint_url": server.url,
            "aws_access_key_id": "bench",
            "aws_secret_access_key": "bench",
        }
        # The server's first pass over its objects is slower than later ones: one untimed.
        with tempfile.TemporaryDirectory(dir=args.data) as scratch:
            first_batch_and_epoch(url, storage, Path(scratch), "random", False)
        for r in range(args.repeats):
            for mode, (order, stream, knobs) in modes.items():
                with tempfile.TemporaryDirectory(dir=args.data) as scratch:
                    cache = Path(scratch)
                    options = {**storage, **knobs}
                    seconds[mode].append(first_batch_and_epoch(url, options, cache, order, stream))
                    if r == 0:
                        disk[mode] = disk_bytes(cache)
    finally:
        server.stop()

    first = {m: statistics.median(s[0] for s in runs) for m, runs in seconds.items()}
    epoch = {m: statistics.median(s[1] for s in runs) for m, runs in seconds.items()}
    ratios = {
        "quasi_random_first_batch_vs_random": first["quasi_random"] / first["random"],
        "quasi_random_first_batch_vs_whole": first["quasi_random"] / first["whole"],
        "quasi_random_epoch_vs_whole": epoch["quasi_random"] / epoch["whole"],
        "quasi_random_c8_first_batch_vs_whole": first["quasi_random_c8"] / first["whole"],
        "quasi_random_c8_epoch_vs_whole": epoch["quasi_random_c8"] / epoch["whole"],
    }
    print(
        f"{n} samples, {size / 1e9:.2f} GB in {len(index['chunks'])} chunks of 64 MB, "
        f"from moto_server on loopback (median of {args.repeats}):"
    )
    print(f"  {'mode':<14} {'first batch':>12} {'epoch':>9} {'disk':>9}")
    for m in modes:
        print(f"  {m:<14} {first[m]:>10.2f} s {epoch[m]:>7.2f} s {disk[m] / 1e9:>6.2f} GB")
    for name, value in ratios.items():
        print(f"  {name:<40} {value:.3f}x")
    save(
        args.out,
        "s3_streaming",
        {
            "benchmark": "s3_streaming",
            "samples": n,
            "dataset_bytes": size,
            "chunks": len(index["chunks"]),
            "server": "moto_server on loopback",
            "batch_size": 256,
            "seconds": {m: [list(s) for s in runs] for m, runs in seconds.items()},
            "first_batch_s": first,
            "epoch_s": epoch,
            "disk_bytes": disk,
            "ratios": ratios,
            "machine": machine(slipstream=ss.__version__),
            "date": time.strftime("%Y-%m-%dT%H:%M:%S"),
        },
    )


if __name__ == "__main__":
    main()
