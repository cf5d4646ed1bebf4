#!/usr/bin/env python3
"""Soak: many epochs of a small dataset through the raw loader and the CPU pipeline, with
batches held for a while and dropped, sampling the process's resident memory and threads.

A loader that leaks grows with the epochs; one that does not levels off after its first few
(buffer pools and allocator arenas warm up). For each phase this reports RSS and threads after
the warm-up epochs and at the end, and the growth per 100 epochs over the second half (a
least-squares slope). It is a benchmark, not a test: it takes minutes, and its figures are for
a person to read. Results go to benches/results/soak-*.json.

    .venv/bin/python benches/python/soak.py [--epochs 1000] [--images 64] [--batch 16]
"""

from __future__ import annotations

import argparse
import gc
import os
import tempfile
import time
from pathlib import Path

from bench_common import machine, photos, save

ROOT = Path(__file__).resolve().parents[2]


def rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS"):
                return int(line.split()[1]) / 1024
    return 0.0


def threads() -> int:
    return len(os.listdir("/proc/self/task"))


def slope_per_100(points: list[tuple[int, float]]) -> float:
    """Least-squares growth per 100 epochs of (epoch, value) points."""
    n = len(points)
    mx = sum(e for e, _ in points) / n
    my = sum(v for _, v in points) / n
    var = sum((e - mx) ** 2 for e, _ in points)
    cov = sum((e - mx) * (v - my) for e, v in points)
    return 100 * cov / var if var else 0.0


def soak(name: str, loader, epochs: int, hold: int) -> dict:
    """`epochs` passes; every batch is kept until `hold` newer ones arrive, then dropped, and
    every 8th epoch's last batches are kept until the next such epoch."""
    samples, kept, started = [], [], time.perf_counter()
    warm = max(10, epochs // 20)
    for epoch in range(epochs):
        loader.set_epoch(epoch)
        held = []
        for batch in loader:
            held.append(batch)
            if len(held) > hold:
                held.pop(0)
        if epoch % 8 == 0:
            kept = held  # outlives the next epochs
        del held
        if epoch % 5 == 0 or epoch == epochs - 1:
            gc.collect()
            samples.append((epoch, rss_mb(), threads()))
    seconds = time.perf_counter() - started
    del kept
    after_warmup = next(s for s in samples if s[0] >= warm)
    second_half = [s for s in samples if s[0] >= epochs // 2]
    result = {
        "epochs": epochs,
        "seconds": round(seconds, 1),
        "rss_mb_after_warmup": round(after_warmup[1], 1),
        "rss_mb_end": round(samples[-1][1], 1),
        "rss_mb_growth_per_100_epochs_second_half": round(
            slope_per_100([(e, r) for e, r, _ in second_half]), 3
        ),
        "threads_after_warmup": after_warmup[2],
        "threads_end": samples[-1][2],
        "threads_max": max(t for _, _, t in samples),
        "samples": samples,
    }
    print(
        f"{name:<13} {epochs} epochs in {seconds:.0f} s: RSS {result['rss_mb_after_warmup']:.1f}"
        f" MB after {warm} epochs, {result['rss_mb_end']:.1f} MB at the end "
        f"({result['rss_mb_growth_per_100_epochs_second_half']:+.2f} MB per 100 epochs over "
        f"the second half); threads {result['threads_after_warmup']} -> "
        f"{result['threads_end']} (max {result['threads_max']})"
    )
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=1000)
    parser.add_argument("--images", type=int, default=64)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--hold", type=int, default=2, help="batches held before dropping")
    parser.add_argument("--data", type=Path, default=Path(tempfile.gettempdir()) / "ss-soak")
    args = parser.parse_args()

    import slipstream as ss

    ds = photos(args.data, args.images)
    raw = ss.SlipstreamLoader(ds, batch_size=args.batch, seed=0, output="numpy")
    pipeline = ss.SlipstreamLoader(
        ds,
        batch_size=args.batch,
        seed=0,
        output="numpy",
        dtype="float16",
        pipelines={"image": [ss.RandomResizedCrop(112), ss.RandomHorizontalFlip(), ss.Normalize()]},
    )
    print(f"{args.images} photographs, batch {args.batch}, {os.cpu_count()} cores")
    results = {
        "benchmark": "soak",
        "machine": machine(slipstream=ss.__version__),
        "images": args.images,
        "batch_size": args.batch,
        "hold": args.hold,
        "raw": soak("raw loader", raw, args.epochs, args.hold),
        "cpu_pipeline": soak("CPU pipeline", pipeline, args.epochs, args.hold),
    }
    save(ROOT / "benches" / "results", "soak", results)


if __name__ == "__main__":
    main()
