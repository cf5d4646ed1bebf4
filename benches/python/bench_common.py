"""What the Python benchmarks share: the photograph dataset and the machine description."""

from __future__ import annotations

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
