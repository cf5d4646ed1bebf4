#!/usr/bin/env python3
"""Regenerate tests/fixtures/litdata/: small datasets written by the real litdata.optimize.

The Rust tests read these (so they run without Python); each directory holds the dataset and
`expected.json`, the values every sample must have. Run from the repository root with the
project's venv: `.venv/bin/python scripts/make_fixtures.py`.
"""

import json
import shutil
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "python" / "tests"))

import litdata_datasets as m  # noqa: E402

# name: (kind, compression, compression_level, pyarrow)
FIXTURES = {
    "full-plain": ("full", None, None, True),
    "full-zstd-chunk": ("full", "zstd", "chunk", True),
    "full-zstd-batch": ("full", "zstd", "batch", True),
    "full-zstd-sample": ("full", "zstd", "sample", True),
    "flat-arrow": ("flat", None, None, True),
    "text-arrow-zstd": ("text", "zstd", None, True),
    "flat-nopyarrow-batch": ("flat", "zstd", "batch", False),
    "tuple-plain": ("tuple", None, None, True),
}
SAMPLES = 8


def encode(value):
    """JSON for one expected value; bytes as hex."""
    import torch

    if isinstance(value, (bytes, bytearray)):
        return {"bytes": value.hex()}
    if isinstance(value, tuple) and len(value) == 3 and isinstance(value[1], tuple):
        mode, (width, height), pixels = value
        return {"pil": {"mode": mode, "width": width, "height": height, "pixels": pixels.hex()}}
    if isinstance(value, torch.Tensor):
        value = value.numpy()
    if isinstance(value, np.ndarray):
        return {
            "array": {
                "dtype": str(value.dtype),
                "shape": list(value.shape),
                "data": np.ascontiguousarray(value)
                .astype(value.dtype.newbyteorder("<"))
                .tobytes()
                .hex(),
            }
        }
    if isinstance(value, bool):
        return {"bool": value}
    if isinstance(value, int):
        return {"int": value}
    if isinstance(value, float):
        return {"float": value}
    if isinstance(value, str):
        return {"str": value}
    raise TypeError(type(value))


def main() -> None:
    out_root = ROOT / "tests" / "fixtures" / "litdata"
    shutil.rmtree(out_root, ignore_errors=True)
    for name, (kind, compression, level, pyarrow) in FIXTURES.items():
        out = out_root / name
        m.make(kind, out, SAMPLES, compression, level, pyarrow)
        samples = []
        for i in range(SAMPLES):
            s = m.expected_sample(kind, i)
            values = list(s.values()) if isinstance(s, dict) else list(s)
            samples.append([encode(v) for v in values])
        names = list(m.expected_sample(kind, 0)) if kind != "tuple" else ["0", "1"]
        expected = {"kind": kind, "fields": names, "samples": samples}
        (out / "expected.json").write_text(json.dumps(expected, indent=1) + "\n")
        print(name, sum(f.stat().st_size for f in out.iterdir()), "bytes")


if __name__ == "__main__":
    main()
