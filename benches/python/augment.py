#!/usr/bin/env python3
"""Self-supervised augmentation pipelines: slipstream against torchvision v2 applied per
sample, in one run, on the CPU (per core) or on the GPU.

Pipelines, on photograph-like JPEGs of about 500x375 (`slipstream demo`'s landscapes):

- SimCLR, two views at 224 of each image: RandomResizedCrop + flip + RandomApply(ColorJitter(
  0.4, 0.4, 0.4, 0.1), p=0.8) + RandomGrayscale(0.2) + RandomApply(GaussianBlur(23), p=0.5)
  + RandomSolarize(128, p=0.2) + normalize, float16;
- one view of RandomResizedCrop + flip + normalize (the rate the SimCLR pipeline is compared
  with: its decode is shared between the views);
- DINO, 2 global views at 224 and 10 local views at 96 with the same photometric stages.

torchvision: each image decoded (``decode_jpeg``), then the v2 transforms per view, as a
Dataset's ``__getitem__`` does; on the GPU the decode is batched on the card and the
transforms run per view on the card. Prints images/s (an image is all of its views) and
ratios; writes JSON with machine information.

    .venv/bin/python benches/python/augment.py [--device cpu|cuda] [--images 600]
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from bench_common import machine, photos, rate, save

ROOT = Path(__file__).resolve().parents[2]


def slipstream_stages(ss: Any, size: int, scale: tuple[float, float]) -> list[Any]:
    return [
        ss.RandomResizedCrop(size, scale=scale),
        ss.RandomHorizontalFlip(),
        ss.RandomApply([ss.ColorJitter(0.4, 0.4, 0.4, 0.1)], p=0.8),
        ss.RandomGrayscale(p=0.2),
        ss.RandomApply([ss.GaussianBlur(23, sigma=(0.1, 2.0))], p=0.5),
        ss.RandomSolarize(128, p=0.2),
        ss.Normalize(),
    ]


def torchvision_stages(size: int, scale: tuple[float, float]) -> Any:
    import slipstream as ss
    import torch
    from torchvision.transforms import v2

    return v2.Compose(
        [
            v2.RandomResizedCrop(size, scale=scale, antialias=True),
            v2.RandomHorizontalFlip(),
            v2.RandomApply([v2.ColorJitter(0.4, 0.4, 0.4, 0.1)], p=0.8),
            v2.RandomGrayscale(p=0.2),
            v2.RandomApply([v2.GaussianBlur(23, sigma=(0.1, 2.0))], p=0.5),
            v2.RandomSolarize(128, p=0.2),
            v2.ToDtype(torch.float32, scale=True),
            v2.Normalize(ss.IMAGENET_MEAN, ss.IMAGENET_STD),
            v2.ToDtype(torch.float16),
        ]
    )


GLOBAL, LOCAL = (0.4, 1.0), (0.05, 0.4)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--images", type=int, default=600)
    parser.add_argument("--batch-size", type=int, default=None, help="64 (cpu), 256 (cuda)")
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--data", type=Path, default=ROOT / "target" / "bench-data")
    parser.add_argument("--out", type=Path, default=ROOT / "benches" / "results")
    args = parser.parse_args()

    import slipstream as ss
    import torch
    import torchvision
    from PIL import Image
    from torchvision.io import decode_jpeg

    gpu = args.device == "cuda"
    if gpu and not torch.cuda.is_available():
        raise SystemExit("--device cuda needs a CUDA GPU")
    torch.set_num_threads(1)
    b = args.batch_size or (256 if gpu else 64)
    ds = photos(args.data, args.images)
    jpegs = [ds[i]["image"] for i in range(len(ds))]
    tensors = [torch.frombuffer(bytearray(j), dtype=torch.uint8) for j in jpegs]
    cursor = {"i": 0}

    def take(n: int) -> list[int]:
        start = cursor["i"]
        cursor["i"] = (start + n) % len(jpegs)
        return [(start + k) % len(jpegs) for k in range(n)]

    def torchvision_run(groups: list[tuple[Any, int]]) -> Callable[[], int]:
        """Per image: decode, then every view of every group through its transforms."""

        def run() -> int:
            chosen = [tensors[i] for i in take(b)]
            images = decode_jpeg(chosen, device="cuda") if gpu else map(decode_jpeg, chosen)
            outs: list[list[Any]] = [[] for _ in groups]
            for img in images:
                for out, (transform, views) in zip(outs, groups, strict=True):
                    out.extend(transform(img) for _ in range(views))
            for out in outs:
                torch.stack(out)
            return b

        return run

    def slipstream_run(pipelines: dict[str, Any]) -> Callable[[], int]:
        loader = ss.SlipstreamLoader(
            ds,
            batch_size=b,
            seed=0,
            drop_last=True,
            num_threads=2 if gpu else 1,
            pipelines=pipelines,
            dtype="float16",
            device="cuda" if gpu else None,
        )
        if not gpu:  # the bare pipeline on one core, as benches/python/cpu_pipeline.py
            return lambda: len(loader.load(take(b))["index"])
        state: dict[str, Iterator[Any]] = {"it": iter(loader)}

        def step() -> int:
            try:
                return len(next(state["it"])["index"])
            except StopIteration:
                state["it"] = iter(loader)
                return len(next(state["it"])["index"])

        return step

    def pipeline(size: int, scale: tuple[float, float], views: int) -> Any:
        return ss.Pipeline(slipstream_stages(ss, size, scale), field="image", views=views)

    s = args.seconds
    simclr_tv = torchvision_stages(224, (0.08, 1.0))
    plain = [ss.RandomResizedCrop(224), ss.RandomHorizontalFlip(), ss.Normalize()]
    dino = {"global": pipeline(224, GLOBAL, 2), "local": pipeline(96, LOCAL, 10)}
    dino_tv = [(torchvision_stages(224, GLOBAL), 2), (torchvision_stages(96, LOCAL), 10)]
    r: dict[str, float] = {}
    r["torchvision_simclr"] = rate(torchvision_run([(simclr_tv, 2)]), s)
    r["slipstream_simclr"] = rate(slipstream_run({"image": pipeline(224, (0.08, 1.0), 2)}), s)
    r["slipstream_one_view_rrc"] = rate(slipstream_run({"image": plain}), s)
    r["torchvision_dino"] = rate(torchvision_run(dino_tv), s)
    r["slipstream_dino"] = rate(slipstream_run(dino), s)
    ratios = {
        "simclr_vs_torchvision": r["slipstream_simclr"] / r["torchvision_simclr"],
        "dino_vs_torchvision": r["slipstream_dino"] / r["torchvision_dino"],
        "simclr_vs_one_view_rrc": r["slipstream_simclr"] / r["slipstream_one_view_rrc"],
    }
    where = torch.cuda.get_device_name() if gpu else "CPU, 1 thread each"
    out = {
        "benchmark": f"augment_{args.device}",
        "images": len(ds),
        "batch_size": b,
        "images_per_s": r,
        "views_per_s": {
            **{k: v * 2 for k, v in r.items() if "simclr" in k},
            **{k: v * 12 for k, v in r.items() if "dino" in k},
            "slipstream_one_view_rrc": r["slipstream_one_view_rrc"],
        },
        "ratios": ratios,
        "machine": {
            "device": where,
            **machine(
                slipstream=ss.__version__,
                torch=torch.__version__,
                torchvision=torchvision.__version__,
                pillow=Image.__version__,
            ),
        },
        "date": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }
    print(f"{where}: {len(ds)} JPEGs, batch {b}; images/s (an image is all its views):")
    for name, value in r.items():
        print(f"  {name:<28} {value:>8.0f}")
    for name, value in ratios.items():
        print(f"  {name:<28} {value:>8.2f}x")
    save(args.out, f"augment_{args.device}", out)


if __name__ == "__main__":
    main()
