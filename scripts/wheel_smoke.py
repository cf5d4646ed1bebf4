#!/usr/bin/env python3
"""The installed wheel on a LitData dataset, as a user would first try it.

`write DIR` (with the project's venv: litdata and Pillow) writes a dataset of JPEGs with
litdata.optimize and, beside it, `expected.json` (each image's SHA-256 and label).
`check DIR --torch | --no-torch` (with the fresh venv the wheel went into) checks that no
build tool is on PATH, that torch is or is not importable as said, and reads the dataset back
through the raw loader and a CPU pipeline. scripts/check_wheel.sh runs both.
"""

import argparse
import hashlib
import importlib.util
import io
import json
import shutil
import sys
from pathlib import Path

SAMPLES = 40
BUILD_TOOLS = ("cargo", "rustc", "cc", "gcc", "clang", "cmake", "nasm")


def _row(item: tuple[bytes, int]) -> dict:
    return {"image": item[0], "label": item[1]}


def write(out: Path) -> None:
    import litdata
    import numpy as np
    from PIL import Image

    images = []
    for i in range(SAMPLES):
        rs = np.random.RandomState(i)
        size = (48 + 8 * (i % 5), 40 + 4 * (i % 3))
        pixels = (rs.rand(size[1], size[0], 3) * 255).astype(np.uint8)
        buf = io.BytesIO()
        Image.fromarray(pixels).save(buf, format="JPEG", quality=90)
        images.append(buf.getvalue())
    litdata.optimize(
        fn=_row,
        inputs=[(data, i % 7) for i, data in enumerate(images)],
        output_dir=str(out / "dataset"),
        chunk_bytes="64KB",
        num_workers=1,
        start_method="fork",
    )
    expected = [
        {"sha256": hashlib.sha256(d).hexdigest(), "label": i % 7} for i, d in enumerate(images)
    ]
    (out / "expected.json").write_text(json.dumps(expected))


def check(root: Path, with_torch: bool) -> None:
    found = {t: shutil.which(t) for t in BUILD_TOOLS if shutil.which(t)}
    assert not found, f"build tools on PATH: {found}"
    has_torch = importlib.util.find_spec("torch") is not None
    assert has_torch == with_torch, f"torch importable: {has_torch}, expected {with_torch}"

    import numpy as np
    import slipstream as ss

    expected = json.loads((root / "expected.json").read_text())
    ds = ss.SlipstreamDataset(str(root / "dataset"))
    assert len(ds) == len(expected), (len(ds), len(expected))
    for i, want in enumerate(expected):
        sample = ds[i]
        assert hashlib.sha256(sample["image"]).hexdigest() == want["sha256"], f"image {i}"
        assert sample["label"] == want["label"], f"label {i}"

    def epoch() -> list[dict]:
        loader = ss.SlipstreamLoader(
            ds,
            batch_size=16,
            shuffle=True,
            seed=3,
            pipelines={
                "image": [
                    ss.RandomResizedCrop(32),
                    ss.RandomHorizontalFlip(),
                    ss.Normalize(),
                ]
            },
        )
        return list(loader)

    raw = epoch()
    tensor_type = type(raw[0]["label"])
    first = [{k: np.asarray(v) for k, v in b.items()} for b in raw]
    batch = first[0]
    assert tensor_type.__module__.split(".")[0] == ("torch" if with_torch else "numpy"), tensor_type
    seen = np.concatenate([b["index"] for b in first])
    assert sorted(seen.tolist()) == list(range(len(expected))), seen
    for b in first:
        assert b["image"].shape[1:] == (3, 32, 32) and b["image"].dtype == np.float32
        assert np.isfinite(b["image"]).all()
        labels = [expected[int(i)]["label"] for i in b["index"]]
        assert b["label"].tolist() == labels
    # The same seed and epoch give the same batches, pixel for pixel.
    again = epoch()
    assert all(
        np.array_equal(a["image"], np.asarray(b["image"]))
        for a, b in zip(first, again, strict=True)
    )
    print(
        f"wheel smoke ({'with' if with_torch else 'without'} torch): slipstream "
        f"{ss.__version__}, {len(expected)} samples, batch {batch['image'].shape} "
        f"{tensor_type.__module__}.{tensor_type.__name__}: ok"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    w = sub.add_parser("write")
    w.add_argument("dir", type=Path)
    c = sub.add_parser("check")
    c.add_argument("dir", type=Path)
    group = c.add_mutually_exclusive_group(required=True)
    group.add_argument("--torch", dest="torch", action="store_true")
    group.add_argument("--no-torch", dest="torch", action="store_false")
    args = parser.parse_args()
    if args.command == "write":
        write(args.dir)
    else:
        check(args.dir, args.torch)


if __name__ == "__main__":
    sys.exit(main())
