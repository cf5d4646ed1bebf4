#!/usr/bin/env python3
"""CPU image pipeline: slipstream against torchvision and Pillow, per core, in one run.

Training transform on every path: decode + RandomResizedCrop(224, antialias) + horizontal
flip + normalize to float16; photograph-like JPEGs of about 500x375 (`slipstream demo`'s
landscapes). Measured, each as images/s:

- (a) torchvision.io.decode_jpeg + torchvision v2 transforms, torch.set_num_threads(1);
- (b) Pillow decode + the same v2 transforms;
- (c) slipstream with reduced decode off, and (d) on (the default), one thread;
- slipstream on 2 threads (scaling from 1), centre-crop evaluation, other dtypes and layouts;
- the loader end to end (prefetch on) against the bare pipeline (`loader.load`).

Prints ratios and writes JSON with machine information to benches/results/.

    .venv/bin/python benches/python/cpu_pipeline.py [--images 600] [--seconds 3]
"""

from __future__ import annotations

import argparse
import io
import time
from collections.abc import Callable

from bench_common import machine, photo_arguments, photos, rate, save, torchvision_train


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    photo_arguments(parser, images=600, batch_size=64, seconds=3.0)
    args = parser.parse_args()

    import numpy as np
    import slipstream as ss
    import torch
    from PIL import Image
    from torchvision.io import decode_jpeg
    from torchvision.transforms import v2

    torch.set_num_threads(1)
    ds = photos(args.data, args.images)
    jpegs = [ds[i]["image"] for i in range(len(ds))]
    sizes = [ss.decode_image(j).shape[:2] for j in jpegs[:50]]
    b = args.batch_size

    tv = torchvision_train()
    tensors = [torch.frombuffer(bytearray(j), dtype=torch.uint8) for j in jpegs]
    cursor = {"i": 0}

    def take(n: int) -> list[int]:
        start = cursor["i"]
        cursor["i"] = (start + n) % len(jpegs)
        return [(start + k) % len(jpegs) for k in range(n)]

    def torchvision_batch() -> int:
        for i in take(b):
            tv(decode_jpeg(tensors[i]))
        return b

    def pillow_batch() -> int:
        for i in take(b):
            img = Image.open(io.BytesIO(jpegs[i])).convert("RGB")
            tv(v2.functional.pil_to_tensor(img))
        return b

    train = [ss.RandomResizedCrop(224), ss.RandomHorizontalFlip(), ss.Normalize()]
    evaluation = [ss.CenterCrop(224, resize=256), ss.Normalize()]

    def bare(threads: int, stages=train, **kw) -> Callable[[], int]:
        lo = ss.SlipstreamLoader(
            ds,
            batch_size=b,
            seed=0,
            num_threads=threads,
            pipelines={"image": stages},
            **{"dtype": "float16", **kw},
        )
        return lambda: len(lo.load(take(b))["index"])

    def loader_run(threads: int) -> Callable[[], int]:
        lo = ss.SlipstreamLoader(
            ds,
            batch_size=b,
            seed=0,
            num_threads=threads,
            pipelines={"image": train},
            dtype="float16",
        )
        state = {"it": iter(lo)}

        def step() -> int:
            try:
                return len(next(state["it"])["index"])
            except StopIteration:
                state["it"] = iter(lo)
                return len(next(state["it"])["index"])

        return step

    s = args.seconds
    results: dict[str, float] = {}
    results["torchvision_1_thread"] = rate(torchvision_batch, s)
    results["pillow_1_thread"] = rate(pillow_batch, s)
    results["slipstream_exact_1_thread"] = rate(bare(1, reduced_decode=False), s)
    results["slipstream_1_thread"] = rate(bare(1), s)
    results["slipstream_2_threads"] = rate(bare(2), s)
    results["slipstream_float32_1_thread"] = rate(bare(1, dtype="float32"), s)
    results["slipstream_uint8_1_thread"] = rate(bare(1, train[:2], dtype="uint8"), s)
    results["slipstream_channels_last_1_thread"] = rate(bare(1, memory_format="channels_last"), s)
    results["slipstream_center_crop_1_thread"] = rate(bare(1, evaluation), s)
    results["slipstream_center_crop_2_threads"] = rate(bare(2, evaluation), s)
    tv_eval = v2.Compose(
        [
            v2.Resize(256, antialias=True),
            v2.CenterCrop(224),
            v2.ToDtype(torch.float32, scale=True),
            v2.Normalize(ss.IMAGENET_MEAN, ss.IMAGENET_STD),
            v2.ToDtype(torch.float16),
        ]
    )

    def torchvision_eval() -> int:
        for i in take(b):
            tv_eval(decode_jpeg(tensors[i]))
        return b

    results["torchvision_center_crop_1_thread"] = rate(torchvision_eval, s)
    results["slipstream_loader_2_threads"] = rate(loader_run(2), s)

    r = results
    ratios = {
        "vs_torchvision": r["slipstream_1_thread"] / r["torchvision_1_thread"],
        "vs_pillow": r["slipstream_1_thread"] / r["pillow_1_thread"],
        "exact_vs_torchvision": r["slipstream_exact_1_thread"] / r["torchvision_1_thread"],
        "scaling_1_to_2_threads": r["slipstream_2_threads"] / r["slipstream_1_thread"],
        "center_crop_vs_torchvision": r["slipstream_center_crop_1_thread"]
        / r["torchvision_center_crop_1_thread"],
        "loader_vs_bare_pipeline": r["slipstream_loader_2_threads"] / r["slipstream_2_threads"],
    }
    import torchvision

    out = {
        "benchmark": "cpu_pipeline",
        "images": len(ds),
        "mean_jpeg_kb": float(np.mean([len(j) for j in jpegs]) / 1e3),
        "mean_size_hw": [
            float(np.mean([h for h, _ in sizes])),
            float(np.mean([w for _, w in sizes])),
        ],
        "batch_size": b,
        "images_per_s": results,
        "ratios": ratios,
        "machine": machine(
            slipstream=ss.__version__,
            torch=torch.__version__,
            torchvision=torchvision.__version__,
            pillow=Image.__version__,
        ),
        "date": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }
    print(
        f"{len(ds)} JPEGs, {out['mean_jpeg_kb']:.0f} KB mean, ~{out['mean_size_hw'][1]:.0f}x"
        f"{out['mean_size_hw'][0]:.0f}; batch {b}; images/s:"
    )
    for name, value in results.items():
        print(f"  {name:<36} {value:>8.0f}")
    for name, value in ratios.items():
        print(f"  {name:<36} {value:>8.2f}x")
    save(args.out, "cpu_pipeline", out)


if __name__ == "__main__":
    main()
