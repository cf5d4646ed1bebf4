#!/usr/bin/env python3
"""Regenerate tests/fixtures/litdata/: small datasets written by the real litdata.optimize,
and tests/fixtures/sources/: one small file of each other format, written by its real writer.

The Rust tests read these (so they run without Python); each litdata directory holds the
dataset and `expected.json`, the values every sample must have. The sources are the fuzz
targets' seeds (tests/fuzz_targets/): WebDataset shards by Python's tarfile (pax and GNU),
Hugging Face Parquet by `datasets` (snappy, as the hub's) and by pyarrow (zstd), an FFCV
.beton by python/tests/beton_writer.py (FFCV's layout; ffcv does not install here), and lossy
WebP images by Pillow (libwebp). Run from
the repository root with the project's venv: `.venv/bin/python scripts/make_fixtures.py`.
"""

import io
import json
import shutil
import sys
import tarfile
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


def tiny_image(seed: int, fmt: str = "JPEG") -> bytes:
    from PIL import Image

    pixels = np.random.default_rng(seed).integers(0, 256, (10, 12, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format=fmt)
    return buffer.getvalue()


def write_tar(path: Path, tar_format: int) -> None:
    """Three samples as WebDataset's TarWriter lays them out, and a directory entry."""
    with tarfile.open(path, "w", format=tar_format) as t:
        for n in range(3):
            key = f"d/{'long_' * 25 if n == 1 else ''}k{n}"
            members = {"jpg": tiny_image(n), "cls": f"{n}\n".encode(), "json": b'{"n": 1}'}
            for ext, data in members.items():
                info = tarfile.TarInfo(f"{key}.{ext}")
                info.size = len(data)
                t.addfile(info, io.BytesIO(data))
        info = tarfile.TarInfo("d")
        info.type = tarfile.DIRTYPE
        t.addfile(info)


def write_sources(out: Path) -> None:
    import beton_writer as bw
    import datasets as hf
    import pyarrow as pa
    import pyarrow.parquet as pq
    from PIL import Image

    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    write_tar(out / "pax.tar", tarfile.PAX_FORMAT)
    write_tar(out / "gnu.tar", tarfile.GNU_FORMAT)
    rows = {
        "image": [{"bytes": tiny_image(k), "path": f"img_{k}.jpg"} for k in range(3)],
        "label": [0, 2, 1],
        "caption": ["a", "bb ü", ""],
        "score": [0.5, 1.0, -2.0],
    }
    features = hf.Features(
        {
            "image": hf.Image(),
            "label": hf.ClassLabel(names=["cat", "dog", "eel"]),
            "caption": hf.Value("string"),
            "score": hf.Value("float32"),
        }
    )
    hf.Dataset.from_dict(rows, features=features).to_parquet(str(out / "hub.parquet"))
    table = pa.table({"image": rows["image"], "label": rows["label"], "flag": [True, False, True]})
    pq.write_table(table, out / "zstd.parquet", compression="zstd", row_group_size=2)
    fields = {
        "label": bw.IntField(),
        "score": bw.FloatField(),
        "blob": bw.BytesField(),
        "image": bw.RGBImageField(),
        "emb": bw.NDArrayField(np.float32, (2,)),
    }
    rng = np.random.default_rng(3)
    samples = [
        (
            k - 1,
            k / 4,
            bytes(range(k * 3)),
            rng.integers(0, 256, (6, 5, 3), dtype=np.uint8) if k == 1 else tiny_image(k),
            np.array([k, -k], dtype=np.float32),
        )
        for k in range(3)
    ]
    bw.write_beton(str(out / "mixed.beton"), fields, samples, page_size=1024, check_page_size=False)
    (out / "lossy.webp").write_bytes(tiny_image(4, "WEBP"))
    with_alpha = Image.open(io.BytesIO(tiny_image(5, "PNG"))).convert("RGBA")
    with_alpha.putalpha(99)
    buffer = io.BytesIO()
    with_alpha.save(buffer, "WEBP", quality=90)
    (out / "alpha.webp").write_bytes(buffer.getvalue())
    for f in sorted(out.iterdir()):
        print(f.name, f.stat().st_size, "bytes")


def main() -> None:
    write_sources(ROOT / "tests" / "fixtures" / "sources")
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
