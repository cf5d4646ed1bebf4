"""What the Python benchmarks share: the photograph dataset and the machine description."""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]


def photo_arguments(
    parser: argparse.ArgumentParser, images: int, batch_size: int, seconds: float
) -> None:
    """The options of the benchmarks that time batches of `photos`, with these defaults."""
    parser.add_argument("--images", type=int, default=images)
    parser.add_argument("--batch-size", type=int, default=batch_size)
    parser.add_argument("--seconds", type=float, default=seconds)
    parser.add_argument("--data", type=Path, default=ROOT / "target" / "bench-data")
    parser.add_argument("--out", type=Path, default=ROOT / "benches" / "results")


def torchvision_train() -> Any:
    """The baseline's training transform: torchvision v2's RandomResizedCrop(224) + flip +
    normalize to float16, what every pipeline benchmark asks of slipstream."""
    import slipstream as ss
    import torch
    from torchvision.transforms import v2

    return v2.Compose(
        [
            v2.RandomResizedCrop(224, antialias=True),
            v2.RandomHorizontalFlip(),
            v2.ToDtype(torch.float32, scale=True),
            v2.Normalize(ss.IMAGENET_MEAN, ss.IMAGENET_STD),
            v2.ToDtype(torch.float16),
        ]
    )


def photos(data: Path, images: int) -> Any:
    """`slipstream demo`'s photographs (~450x400 JPEGs of ~92 KB, quality 85-95) as a dataset,
    generated once under `data`."""
    import slipstream as ss

    source = data / f"photos-{images}"
    if not (source / "index.json").exists():
        command = [sys.executable, "-m", "slipstream", "demo", "--dir", str(source)]
        command += ["--samples", str(images), "--cache-dir", str(data / "cache")]
        subprocess.run(command, check=True, capture_output=True)
    return ss.SlipstreamDataset(source, cache_dir=data / "cache", progress=False)


def rate(run: Callable[[], int], seconds: float, repeats: int = 3) -> float:
    """Median over `repeats` timings of items/s, each timing at least `seconds` long; `run`
    does some work and says how many items. Waits for queued GPU work before each clock
    reading when torch has started CUDA."""
    import torch

    def sync() -> None:
        if torch.cuda.is_initialized():
            torch.cuda.synchronize()

    run()  # warm-up
    rates = []
    for _ in range(repeats):
        sync()
        n, t = 0, time.perf_counter()
        while time.perf_counter() - t < seconds:
            n += run()
        sync()
        rates.append(n / (time.perf_counter() - t))
    return statistics.median(rates)


def cpu_model() -> str:
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return "unknown"


def machine(**versions: str) -> dict[str, Any]:
    """CPU, cores, OS and the given library versions (plus Python's)."""
    return {
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "os": platform.platform(),
        "versions": {**versions, "python": platform.python_version()},
    }


def save(out_dir: Path, benchmark: str, results: dict[str, Any]) -> Path:
    """Write `results` as `out_dir/<benchmark>-<date-time>.json` and say where."""
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{benchmark}-{time.strftime('%Y%m%d-%H%M%S')}.json"
    path.write_text(json.dumps(results, indent=1) + "\n")
    print(f"wrote {path}")
    return path
