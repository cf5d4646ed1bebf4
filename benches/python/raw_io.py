#!/usr/bin/env python3
"""Raw batch loading: slipstream against memcpy and LitData's StreamingDataLoader.

One dataset of ~100 KB JPEGs (written by litdata.optimize as {"image": bytes, "label": int}),
read while it is in the page cache. In one run this measures:

- slipstream: shuffled raw batches (bytes + labels), all cores, samples/s and GB/s;
- memcpy: one thread copying the same number of bytes, batch by batch (numpy.copyto);
- LitData's StreamingDataLoader over the same dataset, with 0 and 2 workers;
- the cache build rate against `cp -r` of the source.

It prints the ratios and writes JSON with machine information to benches/results/.

    .venv/bin/python benches/python/raw_io.py [--samples 3000] [--rounds 7] [--epochs 5]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import platform
import shutil
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np
from bench_common import save

ROOT = Path(__file__).resolve().parents[2]


def jpeg(i: int) -> bytes:
    """A 500x375 JPEG of ~100 KB (smooth pattern plus strong grain, quality 90)."""
    from PIL import Image

    rs = np.random.RandomState(i)
    h, w = (375, 500) if i % 3 else (500, 375)
    y, x = np.mgrid[0:h, 0:w]
    base = np.stack(
        [
            128 + 60 * np.sin(x / (20 + i % 7 * 3) + c) + 40 * np.cos(y / (15 + c * 5))
            for c in range(3)
        ],
        -1,
    )
    pixels = np.clip(base + rs.randn(h, w, 3) * 20, 0, 255).astype(np.uint8)
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, format="JPEG", quality=90)
    return out.getvalue()


def sample(i: int) -> dict:
    return {"image": jpeg(i), "label": i % 1000}


def make_dataset(path: Path, n: int) -> Path:
    if (path / "index.json").exists():
        return path
    import litdata

    tmp = path.with_name(path.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    litdata.optimize(
        fn=sample,
        inputs=list(range(n)),
        output_dir=str(tmp),
        chunk_bytes="64MB",
        num_workers=os.cpu_count() or 1,
        start_method="fork",
    )
    tmp.rename(path)
    return path


def read_all(path: Path) -> None:
    """Pull every file into the page cache."""
    for f in path.rglob("*"):
        if f.is_file():
            with open(f, "rb") as handle:
                while handle.read(1 << 24):
                    pass


def bench_loader_and_memcpy(
    ds, batch_size: int, rounds: int, epochs: int
) -> tuple[dict, dict, list]:
    """Alternate `epochs` slipstream epochs and a memcpy of the same bytes, `rounds` times, so
    that both see the same machine conditions; report medians."""
    import slipstream

    loader = slipstream.SlipstreamLoader(ds, batch_size=batch_size, seed=0, output="numpy")
    for _ in loader:  # warm-up epoch
        pass
    epoch_s, epoch_bytes, memcpy_s = [], 0, []
    for _ in range(rounds):
        nbytes = 0
        t = time.perf_counter()
        for _ in range(epochs):
            for batch in loader:
                nbytes += batch["image"].data.nbytes + batch["label"].nbytes
        epoch_s.append((time.perf_counter() - t) / epochs)
        epoch_bytes = nbytes // epochs
        per_batch = epoch_bytes // len(loader)
        src = np.ones(per_batch, dtype=np.uint8)
        dst = np.empty_like(src)
        np.copyto(dst, src)
        t = time.perf_counter()
        for _ in range(epochs * len(loader)):
            np.copyto(dst, src)
        memcpy_s.append((time.perf_counter() - t) / epochs)
    ratios = [m / e for e, m in zip(epoch_s, memcpy_s, strict=True)]
    epoch = statistics.median(epoch_s)
    ours = {
        "samples_per_s": len(ds) / epoch,
        "gb_per_s": epoch_bytes / epoch / 1e9,
        "bytes_per_epoch": epoch_bytes,
        "rounds": rounds,
        "epochs_per_round": epochs,
        "threads": os.cpu_count(),
    }
    memcpy = {"gb_per_s": epoch_bytes / statistics.median(memcpy_s) / 1e9, "threads": 1}
    return ours, memcpy, ratios


def bench_litdata(path: Path, batch_size: int, workers: int, seconds_budget: float) -> dict:
    import litdata

    with tempfile.TemporaryDirectory() as cache:
        ds = litdata.StreamingDataset(str(path), shuffle=True, seed=0, cache_dir=cache)
        loader = litdata.StreamingDataLoader(ds, batch_size=batch_size, num_workers=workers)
        samples = 0
        t = time.perf_counter()
        while time.perf_counter() - t < seconds_budget:  # whole epochs, at least one
            for batch in loader:
                samples += len(batch["label"])
        seconds = time.perf_counter() - t
    return {"samples_per_s": samples / seconds, "workers": workers, "samples": samples}


def bench_build(path: Path, cache_dir: Path, repeats: int = 3) -> dict:
    """Median of `repeats` fresh builds and of `cp -r` copies (each starting from a synced,
    empty destination)."""
    source_bytes = sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
    builds, cps, cp_syncs = [], [], []
    for _ in range(repeats):
        shutil.rmtree(cache_dir, ignore_errors=True)
        subprocess.run(["sync"], check=True)
        builds.append(timed_build(path, cache_dir))
        with tempfile.TemporaryDirectory(dir=cache_dir) as d:
            subprocess.run(["sync"], check=True)
            t = time.perf_counter()
            subprocess.run(["cp", "-r", str(path), f"{d}/copy"], check=True)
            cps.append(time.perf_counter() - t)
            subprocess.run(["sync", "-f", f"{d}/copy"], check=True)
            cp_syncs.append(time.perf_counter() - t)
    mb = source_bytes / 1e6
    return {
        "source_mb": mb,
        "build_mb_per_s": mb / statistics.median(builds),
        "cp_mb_per_s": mb / statistics.median(cps),
        "cp_sync_mb_per_s": mb / statistics.median(cp_syncs),
        "repeats": repeats,
    }


def timed_build(path: Path, cache_dir: Path) -> float:
    """Seconds to build the cache, as a first SlipstreamDataset(...) does."""
    import slipstream

    t = time.perf_counter()
    slipstream.SlipstreamDataset(path, cache_dir=cache_dir, rebuild=True, progress=False)
    return time.perf_counter() - t


def machine() -> dict:
    import slipstream

    cpu = "unknown"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    versions = {
        "slipstream": slipstream.__version__,
        "python": platform.python_version(),
        "numpy": np.__version__,
    }
    for name in ("litdata", "torch"):
        with contextlib.suppress(ImportError):
            versions[name] = __import__(name).__version__
    return {"cpu": cpu, "cores": os.cpu_count(), "os": platform.platform(), "versions": versions}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--samples", type=int, default=3000)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--rounds", type=int, default=7, help="timings of loader and memcpy")
    parser.add_argument("--epochs", type=int, default=5, help="epochs per round")
    parser.add_argument("--litdata-seconds", type=float, default=15.0)
    parser.add_argument("--data", type=Path, default=ROOT / "target" / "bench-data")
    parser.add_argument("--out", type=Path, default=ROOT / "benches" / "results")
    args = parser.parse_args()

    import slipstream

    path = make_dataset(args.data / f"raw_io-{args.samples}", args.samples)
    cache_dir = args.data / "cache"
    read_all(path)
    build = bench_build(path, cache_dir)
    ds = slipstream.SlipstreamDataset(path, cache_dir=cache_dir, progress=False)
    read_all(Path(ds.cache_path).parent)

    ours, memcpy, round_ratios = bench_loader_and_memcpy(
        ds, args.batch_size, args.rounds, args.epochs
    )
    lit0 = bench_litdata(path, args.batch_size, 0, args.litdata_seconds)
    lit2 = bench_litdata(path, args.batch_size, 2, args.litdata_seconds)

    mean_kb = ours["bytes_per_epoch"] / len(ds) / 1e3
    results = {
        "benchmark": "raw_io",
        "dataset": {"samples": len(ds), "mean_sample_kb": mean_kb, "source_mb": build["source_mb"]},
        "batch_size": args.batch_size,
        "slipstream": ours,
        "memcpy_one_thread": memcpy,
        "litdata_0_workers": lit0,
        "litdata_2_workers": lit2,
        "build": build,
        "ratios": {
            "slipstream_vs_memcpy": statistics.median(round_ratios),
            "slipstream_vs_memcpy_per_round": round_ratios,
            "slipstream_vs_litdata_0": ours["samples_per_s"] / lit0["samples_per_s"],
            "slipstream_vs_litdata_2": ours["samples_per_s"] / lit2["samples_per_s"],
            "build_vs_cp": build["build_mb_per_s"] / build["cp_mb_per_s"],
            "build_vs_cp_sync": build["build_mb_per_s"] / build["cp_sync_mb_per_s"],
        },
        "machine": machine(),
        "date": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }
    r = results["ratios"]
    print(f"dataset      {len(ds)} samples, {mean_kb:.0f} KB mean, {build['source_mb']:.0f} MB")
    print(
        f"slipstream   {ours['samples_per_s']:>10.0f} samples/s  {ours['gb_per_s']:.2f} GB/s "
        f"({ours['threads']} threads)"
    )
    print(
        f"memcpy       {'':>10}            {memcpy['gb_per_s']:.2f} GB/s (1 thread)"
        f"   -> slipstream {r['slipstream_vs_memcpy']:.2f}x"
    )
    print(
        f"litdata w=0  {lit0['samples_per_s']:>10.0f} samples/s"
        f"                  -> slipstream {r['slipstream_vs_litdata_0']:.0f}x"
    )
    print(
        f"litdata w=2  {lit2['samples_per_s']:>10.0f} samples/s"
        f"                  -> slipstream {r['slipstream_vs_litdata_2']:.0f}x"
    )
    print(
        f"build        {build['build_mb_per_s']:>10.0f} MB/s"
        f"   cp -r {build['cp_mb_per_s']:.0f} MB/s"
        f"   cp -r + sync {build['cp_sync_mb_per_s']:.0f} MB/s"
        f"   -> {r['build_vs_cp']:.2f}x / {r['build_vs_cp_sync']:.2f}x"
    )
    save(args.out, "raw_io", results)


if __name__ == "__main__":
    main()
