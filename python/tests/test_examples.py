"""The examples in examples/, run as users run them, on the demo dataset and the CPU."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
import slipstream as ss

pytest.importorskip("torchvision")
EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def run(args: list[str], env_cache: Path, timeout: int = 600) -> str:
    env = {**os.environ, "SLIPSTREAM_CACHE_DIR": str(env_cache), "OMP_NUM_THREADS": "1"}
    result = subprocess.run(
        [sys.executable, *args], capture_output=True, text=True, env=env, timeout=timeout
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result.stdout


def seen(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def train_args(demo_dir: Path, tmp_path: Path, *extra: str) -> list[str]:
    return [
        str(EXAMPLES / "train_imagenet.py"),
        "--data",
        str(demo_dir),
        "--arch",
        "resnet18",
        "--image-size",
        "32",
        "--batch-size",
        "8",
        "--epochs",
        "1",
        "--seen",
        str(tmp_path / "seen.jsonl"),
        *extra,
    ]


def test_train_imagenet_under_torchrun_ddp(demo_dir: Path, tmp_path: Path) -> None:
    torchrun = ["-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    run(torchrun + train_args(demo_dir, tmp_path), tmp_path / "caches")
    steps = seen(tmp_path / "seen.jsonl")
    by_rank = {r: [i for s in steps if s["rank"] == r for i in s["samples"]] for r in (0, 1)}
    # 96 samples, 2 ranks, batches of 8: each rank trains on its own 48, together on all 96.
    assert len(by_rank[0]) == len(by_rank[1]) == 48
    assert not set(by_rank[0]) & set(by_rank[1])
    assert sorted(by_rank[0] + by_rank[1]) == list(range(96))


def test_train_imagenet_resumes_mid_epoch(demo_dir: Path, tmp_path: Path) -> None:
    checkpoint = ["--checkpoint", str(tmp_path / "ckpt.pt")]
    run([*train_args(demo_dir, tmp_path, *checkpoint), "--max-steps", "5"], tmp_path / "c")
    assert len(seen(tmp_path / "seen.jsonl")) == 5
    out = run(train_args(demo_dir, tmp_path, *checkpoint), tmp_path / "c")
    assert "resumed at step 5 (epoch 0)" in out
    samples = Counter(i for s in seen(tmp_path / "seen.jsonl") for i in s["samples"])
    assert sorted(samples) == list(range(96)) and set(samples.values()) == {1}


def test_lightning_fits_two_epochs_and_resumes_mid_epoch(
    demo_dir: Path, demo_dataset, tmp_path: Path
) -> None:
    pytest.importorskip("lightning")
    args = [
        str(EXAMPLES / "lightning_datamodule.py"),
        *("--data", str(demo_dir), "--arch", "resnet18", "--image-size", "32"),
        *("--batch-size", "8", "--epochs", "2", "--save-every", "5"),
        *("--ckpt-dir", str(tmp_path / "ckpt"), "--seen", str(tmp_path / "seen.jsonl")),
    ]
    run([*args, "--max-steps", "5"], tmp_path / "c")  # stopped mid-epoch, after step 5
    assert len(seen(tmp_path / "seen.jsonl")) == 5
    run(args, tmp_path / "c")  # the same command again: resumes from last.ckpt
    steps = seen(tmp_path / "seen.jsonl")
    # Exactly the batches of an uninterrupted run: epoch 0 continued after its 5th batch.
    plan = ss.SlipstreamLoader(demo_dataset, batch_size=8, seed=0, drop_last=True)
    expected = [(e, b) for e in (0, 1) for b in plan.batch_indices(e)]
    assert [(s["epoch"], s["samples"]) for s in steps] == expected


def test_ssl_multicrop_trains_on_global_and_local_views(demo_dir: Path, tmp_path: Path) -> None:
    args = [
        str(EXAMPLES / "ssl_multicrop.py"),
        *("--data", str(demo_dir), "--arch", "resnet18", "--steps", "3"),
        *("--batch-size", "8", "--global-size", "32", "--local-size", "16"),
        *("--local-views", "4", "--out-dim", "64"),
    ]
    out = run(args, tmp_path / "c").splitlines()
    globals_ = "global_0 [8, 3, 32, 32], global_1 [8, 3, 32, 32]"
    assert out[0] == f"views: {globals_}, local [8, 4, 3, 16, 16]"
    losses = [float(line.split("loss ")[1]) for line in out[1:]]
    assert len(losses) == 3 and all(math.isfinite(x) and x > 0 for x in losses)
