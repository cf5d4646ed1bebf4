#!/usr/bin/env python3
"""GPU image pipeline: slipstream against torchvision on the same card and data, in one run.

Training transform on both paths, batch 256: decode + RandomResizedCrop(224, antialias) +
horizontal flip + normalize to float16, on photograph-like JPEGs of about 500x375
(`slipstream demo`'s landscapes, quality 85-95). Measured:

- baseline: ``torchvision.io.decode_jpeg(list, device="cuda")`` + torchvision v2 transforms
  per image on the GPU, stacked into the batch;
- slipstream ``device="cuda"``: decoder "auto" (hardware JPEG engine + CUDA backend),
  "cuda" (no hardware engine) and "cpu" (libjpeg-turbo on host threads), with
  ``num_threads`` host threads;
- the knobs with decoder "auto": 1 and 4 host threads, ``batches_ahead=1``;
- the cache encodings with decoder "auto": ``"jpeg"`` with max_side 256, and ``"yuv420"``
  (planes uploaded as they are and converted by the resample kernel, no decode);
- for each: images/s, CPU cores busy (process CPU time / wall time), p50/p99 of the time
  between batches at the consumer, GPU memory, and where each batch's time went
  (``loader.stats()``: host prepare / wait / submit, GPU decode / transform), which says what
  limits the loader.

Needs a CUDA GPU. Prints a table and ratios, writes JSON with machine information.

    python benches/python/gpu_pipeline.py [--images 4096] [--seconds 6] [--out DIR]
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable, Iterator

from bench_common import machine, photo_arguments, photos, save, torchvision_train


def measure(batches: Callable[[], Iterator[int]], seconds: float) -> dict[str, float]:
    """Images/s, CPU cores busy and batch intervals while consuming batches for `seconds`
    (after one warm-up batch series of a second)."""
    import torch

    def consume(limit: float) -> tuple[int, float, float, list[float]]:
        n, gaps = 0, []
        cpu0, t0 = time.process_time(), time.perf_counter()
        last = t0
        while time.perf_counter() - t0 < limit:
            for images in batches():
                now = time.perf_counter()
                gaps.append(now - last)
                last = now
                n += images
                if now - t0 >= limit:
                    break
        torch.cuda.synchronize()
        return n, time.perf_counter() - t0, time.process_time() - cpu0, gaps

    consume(1.0)
    n, wall, cpu, gaps = consume(seconds)
    gaps.sort()
    return {
        "images_per_s": n / wall,
        "cpu_cores_busy": cpu / wall,
        "batch_interval_p50_ms": 1e3 * gaps[len(gaps) // 2],
        "batch_interval_p99_ms": 1e3 * gaps[min(len(gaps) - 1, int(0.99 * len(gaps)))],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    photo_arguments(parser, images=4096, batch_size=256, seconds=6.0)
    parser.add_argument("--threads", type=int, default=2, help="slipstream host threads")
    args = parser.parse_args()

    import numpy as np
    import slipstream as ss
    import torch
    import torchvision
    from torchvision.io import decode_jpeg

    if not torch.cuda.is_available():
        sys.exit("gpu_pipeline.py needs a CUDA GPU")
    ds = photos(args.data, args.images)
    jpegs = [ds[i]["image"] for i in range(len(ds))]
    b = args.batch_size
    results: dict[str, dict[str, float]] = {}

    # Baseline: torchvision on the GPU, the bytes already in host memory.
    tv = torchvision_train()
    tensors = [torch.frombuffer(bytearray(j), dtype=torch.uint8) for j in jpegs]

    def torchvision_batches() -> Iterator[int]:
        for start in range(0, len(tensors) - b + 1, b):
            decoded = decode_jpeg(tensors[start : start + b], device="cuda")
            batch = torch.stack([tv(img) for img in decoded])
            yield batch.shape[0]

    torch.cuda.reset_peak_memory_stats()
    results["torchvision"] = measure(torchvision_batches, args.seconds)
    results["torchvision"]["gpu_memory_mb"] = torch.cuda.max_memory_allocated() / 1e6

    stages = [ss.RandomResizedCrop(224), ss.RandomHorizontalFlip(), ss.Normalize()]
    info = {}
    breakdown: dict[str, dict[str, float]] = {}
    configs = [(d, ds, {"decoder": d}) for d in ("auto", "cuda", "cpu")] + [
        ("auto_1_thread", ds, {"decoder": "auto", "num_threads": 1}),
        ("auto_4_threads", ds, {"decoder": "auto", "num_threads": 4}),
        ("auto_batches_ahead_1", ds, {"decoder": "auto", "batches_ahead": 1}),
        # Cache encodings: JPEGs pre-resized to 256 (nvJPEG), and planes (uploaded as they are,
        # converted by the kernel as it reads them).
        ("jpeg_256", ds.encoded("jpeg", max_side=256), {"decoder": "auto"}),
        ("yuv420", ds.encoded("yuv420"), {"decoder": "auto"}),
    ]
    for config, dataset, knobs in configs:
        loader = ss.SlipstreamLoader(
            dataset,
            batch_size=b,
            seed=0,
            drop_last=True,
            pipelines={"image": stages},
            dtype="float16",
            device="cuda",
            **{"num_threads": args.threads, **knobs},
        )

        def slipstream_batches(loader: ss.SlipstreamLoader = loader) -> Iterator[int]:
            for batch in loader:
                yield batch["image"].shape[0]

        name = f"slipstream_{config}"
        results[name] = measure(slipstream_batches, args.seconds)
        stats = loader.stats()
        results[name]["gpu_memory_mb"] = stats["gpu_memory_bytes"] / 1e6
        results[name]["decoded_hardware_share"] = stats["decoded_hardware"] / max(
            1, stats["images"]
        )
        host, gpu = max(1, stats["gpu_batches"]), max(1, stats["gpu_timed_batches"])
        host_keys = ("host_prepare_s", "host_wait_s", "host_submit_s")
        breakdown[name] = {
            **{k: 1e3 * stats[k] / host for k in host_keys},
            **{k: 1e3 * stats[k] / gpu for k in ("gpu_decode_s", "gpu_transform_s")},
        }
        info[config] = loader.device_info
        del loader

    base = results["torchvision"]["images_per_s"]
    ratios = {f"{k}_vs_torchvision": v["images_per_s"] / base for k, v in results.items()}
    out = {
        "benchmark": "gpu_pipeline",
        "images": len(ds),
        "mean_jpeg_kb": float(np.mean([len(j) for j in jpegs]) / 1e3),
        "batch_size": b,
        "slipstream_threads": args.threads,
        "results": results,
        "ratios": ratios,
        "ms_per_batch": breakdown,
        "device_info": info,
        "machine": {
            "gpu": torch.cuda.get_device_name(),
            **machine(
                slipstream=ss.__version__,
                torch=torch.__version__,
                torchvision=torchvision.__version__,
                cuda=str(torch.version.cuda),
            ),
        },
        "date": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }
    print(
        f"{out['machine']['gpu']}: {len(ds)} JPEGs, {out['mean_jpeg_kb']:.0f} KB mean, "
        f"batch {b}, RandomResizedCrop(224)+flip+normalize -> float16"
    )
    print(f"  {'':<22} {'images/s':>9} {'cores':>6} {'p50 ms':>7} {'p99 ms':>7} {'GPU MB':>7}")
    for name, r in results.items():
        print(
            f"  {name:<22} {r['images_per_s']:>9.0f} {r['cpu_cores_busy']:>6.2f} "
            f"{r['batch_interval_p50_ms']:>7.1f} {r['batch_interval_p99_ms']:>7.1f} "
            f"{r['gpu_memory_mb']:>7.0f}"
        )
    for name, value in ratios.items():
        print(f"  {name:<36} {value:>6.2f}x")
    print("  ms per batch: host prepare / wait / submit, GPU decode / transform")
    for name, ms in breakdown.items():
        print(f"  {name:<28} " + " ".join(f"{v:>6.1f}" for v in ms.values()))
    for decoder, text in info.items():
        print(f"  decoder={decoder}: {text}")
    save(args.out, "gpu_pipeline", out)


if __name__ == "__main__":
    main()
