#!/usr/bin/env python3
"""Cache encodings on the CPU: images/s per core for "original", "jpeg" and "yuv420" caches
against torchvision on the original files, with each cache's size, in one run.

Training transform on every path: RandomResizedCrop(224, antialias) + horizontal flip +
normalize to float16, one thread; photograph-like JPEGs of about 450x400 (`slipstream demo`'s).
Measured, each as images/s:

- torchvision.io.decode_jpeg + torchvision v2 transforms on the original JPEGs
  (torch.set_num_threads(1)): the baseline;
- slipstream on the original cache (reduced decode on, the default);
- slipstream on `encoding="jpeg"` with max_side 256 (quality 90);
- slipstream on `encoding="yuv420"` at full size and with max_side 256.

Prints ratios against torchvision and the cache sizes, and writes JSON with machine
information to benches/results/.

    .venv/bin/python benches/python/encodings.py [--images 600] [--seconds 3]
"""

from __future__ import annotations

import argparse
import os
import time

from bench_common import machine, photo_arguments, photos, rate, save, torchvision_train


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    photo_arguments(parser, images=600, batch_size=64, seconds=3.0)
    args = parser.parse_args()

    import slipstream as ss
    import torch
    import torchvision
    from torchvision.io import decode_jpeg

    torch.set_num_threads(1)
    original = photos(args.data, args.images)
    b = args.batch_size
    caches = {
        "original": original,
        "jpeg_256": original.encoded("jpeg", max_side=256, quality=90),
        "yuv420": original.encoded("yuv420"),
        "yuv420_256": original.encoded("yuv420", max_side=256),
    }
    cursor = {"i": 0}

    def take(n: int) -> list[int]:
        start = cursor["i"]
        cursor["i"] = (start + n) % len(original)
        return [(start + k) % len(original) for k in range(n)]

    tv = torchvision_train()
    jpegs = [original[i]["image"] for i in range(len(original))]
    tensors = [torch.frombuffer(bytearray(j), dtype=torch.uint8) for j in jpegs]

    def torchvision_batch() -> int:
        for i in take(b):
            tv(decode_jpeg(tensors[i]))
        return b

    train = [ss.RandomResizedCrop(224), ss.RandomHorizontalFlip(), ss.Normalize()]

    def slipstream_batch(ds: ss.SlipstreamDataset):
        lo = ss.SlipstreamLoader(
            ds, batch_size=b, seed=0, num_threads=1, pipelines={"image": train}, dtype="float16"
        )
        return lambda: len(lo.load(take(b))["index"])

    results = {"torchvision_original": rate(torchvision_batch, args.seconds)}
    for name, ds in caches.items():
        results[f"slipstream_{name}"] = rate(slipstream_batch(ds), args.seconds)
    ratios = {
        f"{name}_vs_torchvision": results[f"slipstream_{name}"] / results["torchvision_original"]
        for name in caches
    }
    sizes_mb = {name: os.path.getsize(ds.cache_path) / 1e6 for name, ds in caches.items()}
    out = {
        "benchmark": "encodings",
        "images": len(original),
        "mean_jpeg_kb": sum(map(len, jpegs)) / len(jpegs) / 1e3,
        "batch_size": b,
        "images_per_s_1_thread": results,
        "ratios": ratios,
        "cache_mb": sizes_mb,
        "machine": machine(
            slipstream=ss.__version__, torch=torch.__version__, torchvision=torchvision.__version__
        ),
        "date": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }
    print(f"{len(original)} JPEGs, {out['mean_jpeg_kb']:.0f} KB mean; batch {b}; 1 thread:")
    for name, value in results.items():
        print(f"  {name:<28} {value:>8.0f} images/s")
    for name in caches:
        print(
            f"  {name:<28} {ratios[f'{name}_vs_torchvision']:>8.2f}x torchvision,"
            f" cache {sizes_mb[name]:.1f} MB"
        )
    save(args.out, "encodings", out)


if __name__ == "__main__":
    main()
