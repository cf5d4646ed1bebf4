#!/usr/bin/env python3
"""Cold start from S3: slipstream against `aws s3 sync` + a local build, in one run.

A dataset of `slipstream demo` photographs (≥ 200 MB) is uploaded to an S3 server on loopback
(moto_server, as in the tests). Measured, each from an empty local directory:

- ``aws s3 sync`` of the prefix (awscli from PyPI, installed into target/bench-tools on first
  use), then ``slipstream build`` of the synced directory: download time and total;
- slipstream from ``s3://``: time to a usable cache, and to the first batch of a loader;
- the same with other ``concurrency`` and ``part_bytes`` (the download knobs);
- caches shared through S3 (``remote_cache=``): the first machine builds and uploads, the next
  downloads the cache (and verifies every checksum) instead of the dataset;
- LitData's ``StreamingDataset("s3://...")``: time to its first sample, where it works.

Floor asked for: slipstream's time to a usable cache <= 1.2x the ``aws s3 sync`` time alone.
Prints the table and the ratio, writes JSON with machine information to benches/results/.

    .venv/bin/python benches/python/s3_cold_start.py [--images 3200]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
import venv
from pathlib import Path

from bench_common import machine, photos, save

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "python" / "tests"))

from s3_server import MotoServer, upload_dir  # noqa: E402


def awscli(tools: Path) -> Path:
    """The `aws` command of awscli in its own venv (its botocore pin clashes with moto's)."""
    exe = tools / "awscli" / "bin" / "aws"
    if not exe.exists():
        venv.create(tools / "awscli", with_pip=True)
        pip = tools / "awscli" / "bin" / "pip"
        subprocess.run([str(pip), "install", "--quiet", "awscli"], check=True)
    return exe


def timed(run) -> tuple[float, object]:
    t = time.perf_counter()
    out = run()
    return time.perf_counter() - t, out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--images", type=int, default=3200)
    parser.add_argument("--data", type=Path, default=ROOT / "target" / "bench-data")
    parser.add_argument("--out", type=Path, default=ROOT / "benches" / "results")
    args = parser.parse_args()

    import slipstream as ss

    ds = photos(args.data, args.images)
    source = args.data / f"photos-{args.images}"  # where photos() generated them
    size = sum(p.stat().st_size for p in source.iterdir() if p.is_file())
    aws = awscli(ROOT / "target" / "bench-tools")
    server = MotoServer()
    results: dict[str, float | str] = {}
    try:
        client = server.client()
        client.create_bucket(Bucket="bench")
        upload_dir(client, "bench", "photos/", source)
        url = "s3://bench/photos/"
        env = {
            **os.environ,
            "AWS_ACCESS_KEY_ID": "bench",
            "AWS_SECRET_ACCESS_KEY": "bench",
            "AWS_DEFAULT_REGION": "us-east-1",
        }
        storage = {
            "endpoint_url": server.url,
            "aws_access_key_id": "bench",
            "aws_secret_access_key": "bench",
        }
        with tempfile.TemporaryDirectory() as scratch:
            scratch = Path(scratch)
            sync = [str(aws), "s3", "sync", url, str(scratch / "synced")]
            sync += ["--endpoint-url", server.url, "--only-show-errors"]
            results["aws_s3_sync_s"], _ = timed(lambda: subprocess.run(sync, env=env, check=True))
            build = [sys.executable, "-m", "slipstream", "build", str(scratch / "synced")]
            build += ["--cache-dir", str(scratch / "c1"), "--quiet"]
            results["local_build_after_sync_s"], _ = timed(
                lambda: subprocess.run(build, check=True)
            )
            results["aws_sync_plus_build_s"] = (
                results["aws_s3_sync_s"] + results["local_build_after_sync_s"]
            )
            # Uploading a built cache: `aws s3 cp` of the file against `slipstream sync push`.
            built = subprocess.run(build, check=True, capture_output=True, text=True)
            cache_file = built.stdout.strip()
            cp = [str(aws), "s3", "cp", cache_file, "s3://bench/cp-baseline/cache.slipcache"]
            cp += ["--endpoint-url", server.url, "--only-show-errors"]
            results["aws_s3_cp_cache_s"], _ = timed(lambda: subprocess.run(cp, env=env, check=1))
            push = [sys.executable, "-m", "slipstream", "sync", "push", str(scratch / "synced")]
            push += ["--remote-cache", "s3://bench/pushed/", "--endpoint-url", server.url]
            push += ["--cache-dir", str(scratch / "c1"), "--quiet"]
            results["slipstream_push_s"], _ = timed(lambda: subprocess.run(push, env=env, check=1))

            def cold_open(cache: str, knobs=None, **kw) -> tuple[float, ss.SlipstreamDataset]:
                options = {**storage, **(knobs or {})}
                return timed(
                    lambda: ss.SlipstreamDataset(
                        url,
                        cache_dir=scratch / cache,
                        progress=False,
                        storage_options=options,
                        stream=False,  # the whole cache, as `aws s3 sync` + build gives
                        **kw,
                    )
                )

            results["slipstream_usable_cache_s"], remote = cold_open("c2")
            loader = ss.SlipstreamLoader(remote, batch_size=256, seed=0, output="numpy")
            first, _ = timed(lambda: next(iter(loader)))
            results["slipstream_first_batch_s"] = results["slipstream_usable_cache_s"] + first
            shared = "s3://bench/caches/"
            results["slipstream_build_and_share_s"], _ = cold_open("a", remote_cache=shared)
            results["slipstream_from_shared_cache_s"], _ = cold_open("b", remote_cache=shared)
            # The server slows as it fills, so each knob is timed right after the defaults
            # and compared with that pair's default run.
            for name, knobs in KNOBS.items():
                results[f"paired_default_before_{name}_s"], _ = cold_open(f"default-{name}")
                results[f"slipstream_usable_cache_{name}_s"], _ = cold_open(name, knobs)
            results["litdata_first_sample_s"] = litdata_first_sample(url, server.url, scratch)
    finally:
        server.stop()

    sync_s = results["aws_s3_sync_s"]
    ratio = results["slipstream_usable_cache_s"] / sync_s
    ratios = {
        "slipstream_usable_cache_vs_aws_sync": ratio,
        "from_shared_cache_vs_aws_sync": results["slipstream_from_shared_cache_s"] / sync_s,
        "build_and_share_vs_build": results["slipstream_build_and_share_s"]
        / results["slipstream_usable_cache_s"],
        "push_vs_aws_s3_cp": results["slipstream_push_s"] / results["aws_s3_cp_cache_s"],
        **{
            f"{name}_vs_defaults": results[f"slipstream_usable_cache_{name}_s"]
            / results[f"paired_default_before_{name}_s"]
            for name in KNOBS
        },
    }
    out = {
        "benchmark": "s3_cold_start",
        "images": len(ds),
        "dataset_mb": size / 1e6,
        "server": "moto_server on loopback",
        "seconds": results,
        "knobs": KNOBS,
        "ratios": ratios,
        "machine": machine(slipstream=ss.__version__),
        "date": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }
    print(f"{len(ds)} photographs, {size / 1e6:.0f} MB, from moto_server on loopback:")
    for name, value in results.items():
        shown = f"{value:>8.2f} s" if isinstance(value, float) else f"  {value}"
        print(f"  {name:<30} {shown}")
    print(f"  slipstream usable cache / aws s3 sync: {ratio:.2f}x (floor: <= 1.2x)")
    for name, value in list(ratios.items())[1:]:
        print(f"  {name:<40} {value:.2f}x")
    save(args.out, "s3_cold_start", out)


# The download knobs against their defaults (concurrency 32, part_bytes 16 MiB).
KNOBS = {
    "concurrency_4": {"concurrency": 4},
    "concurrency_64": {"concurrency": 64},
    "part_bytes_4mib": {"part_bytes": 4 << 20},
    "part_bytes_64mib": {"part_bytes": 64 << 20},
}


def litdata_first_sample(url: str, endpoint: str, scratch: Path) -> float | str:
    """Seconds to LitData's first sample from S3, or why it did not run."""
    code = (
        "import sys, time; t = time.perf_counter(); "
        "from litdata import StreamingDataset; "
        "ds = StreamingDataset(sys.argv[1], cache_dir=sys.argv[2], "
        "storage_options={'endpoint_url': sys.argv[3]}); ds[0]; "
        "print(time.perf_counter() - t)"
    )
    env = {
        **os.environ,
        "AWS_ACCESS_KEY_ID": "bench",
        "AWS_SECRET_ACCESS_KEY": "bench",
        "AWS_DEFAULT_REGION": "us-east-1",
    }
    cache = scratch / "litdata-cache"
    result = subprocess.run(
        [sys.executable, "-c", code, url, str(cache), endpoint],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
        check=False,
    )
    shutil.rmtree(cache, ignore_errors=True)
    if result.returncode != 0:
        last = (result.stderr.strip().splitlines() or ["no output"])[-1]
        return f"failed: {last[:160]}"
    return float(result.stdout.strip().splitlines()[-1])


if __name__ == "__main__":
    main()
