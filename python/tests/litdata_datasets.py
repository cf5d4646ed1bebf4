"""LitData datasets made with the real ``litdata.optimize``, and the values they must hold.

Each *kind* is a function from a sample number to the sample written; ``expected_sample``
gives what a reader must return for it. Used by the Python tests and by
scripts/make_fixtures.py (the committed fixtures under tests/fixtures/litdata/).

``make(...)`` runs ``optimize`` in a subprocess, so that ``pyarrow=False`` can hide pyarrow
from LitData (which then writes classic chunks instead of Arrow "slim" chunks).
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent


def _jpeg_bytes(i: int, size: tuple[int, int] = (24, 16)) -> bytes:
    from PIL import Image

    rs = np.random.RandomState(i)
    pixels = (rs.rand(size[1], size[0], 3) * 255).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="JPEG", quality=90)
    return buf.getvalue()


def _pil_image(i: int) -> Any:
    from PIL import Image

    rs = np.random.RandomState(1000 + i)
    mode = "RGB" if i % 3 else "L"
    shape = (5, 7, 3) if mode == "RGB" else (5, 7)
    return Image.fromarray(rs.randint(0, 255, shape).astype(np.uint8), mode=mode)


def full_sample(i: int, jpeg_dir: str) -> dict[str, Any]:
    """Every serializer slipstream reads, in one flat dict."""
    import torch
    from PIL import Image

    return {
        "jpeg": Image.open(os.path.join(jpeg_dir, f"{i}.jpg")),
        "pil": _pil_image(i),
        "raw": bytes(range(i % 7)) * (i + 1),
        "label": i * 3 - 5,
        "score": i / 7,
        "flag": i % 2 == 0,
        "name": f"sample-{i}-é",
        "np2d": np.arange(6, dtype=np.float32).reshape(2, 3) * i,
        "np1d": np.arange(i + 1, dtype=np.int16),
        "t2d": torch.arange(6, dtype=torch.int64).reshape(3, 2) + i,
        "t1d": torch.arange(3, dtype=torch.float64) * i,
    }


def flat_sample(i: int) -> dict[str, Any]:
    """Only JSON-like leaves: LitData writes these as Arrow "slim" chunks when pyarrow exists."""
    return {
        "image": _jpeg_bytes(i),
        "label": i % 10,
        "caption": f"a picture number {i}",
        "weight": 0.5 + i,
        "keep": i % 3 != 0,
    }


def text_sample(i: int) -> dict[str, Any]:
    """Compressible text: with compression, Arrow IPC buffers are zstd-compressed."""
    return {"text": " ".join(f"word{j % 13}" for j in range(40 + i)), "label": i}


def tuple_sample(i: int) -> tuple[bytes, int]:
    return (_jpeg_bytes(i), i)


KINDS = ("full", "flat", "text", "tuple")


def sample(kind: str, i: int, jpeg_dir: str = "") -> Any:
    if kind == "full":
        return full_sample(i, jpeg_dir)
    if kind == "flat":
        return flat_sample(i)
    if kind == "text":
        return text_sample(i)
    if kind == "tuple":
        return tuple_sample(i)
    raise ValueError(kind)


def expected_sample(kind: str, i: int) -> Any:
    """What slipstream's ``ds[i]`` must equal (PIL images as (mode, size, bytes))."""
    if kind == "full":
        with tempfile.TemporaryDirectory() as d:
            Path(d, f"{i}.jpg").write_bytes(_jpeg_bytes(i))
            s = full_sample(i, d)
            s["jpeg"] = _jpeg_bytes(i)
        s["pil"] = (s["pil"].mode, s["pil"].size, s["pil"].tobytes())
        return s
    return sample(kind, i)


def _optimize_fn(item: tuple[str, int, str]) -> Any:
    kind, i, jpeg_dir = item
    return sample(kind, i, jpeg_dir)


def _optimize(kind: str, out: str, n: int, compression: str | None, level: str | None) -> None:
    import litdata

    jpeg_dir = tempfile.mkdtemp()
    for i in range(n):
        Path(jpeg_dir, f"{i}.jpg").write_bytes(_jpeg_bytes(i))
    kwargs: dict[str, Any] = {}
    if compression:
        kwargs["compression"] = compression
        if level:
            kwargs["compression_level"] = level
    litdata.optimize(
        fn=_optimize_fn,
        inputs=[(kind, i, jpeg_dir) for i in range(n)],
        output_dir=out,
        chunk_bytes="4KB",
        num_workers=1,
        start_method="fork",
        **kwargs,
    )


def _hide_pyarrow() -> None:
    """Make LitData believe pyarrow is not installed (must run before litdata is imported)."""
    sys.modules["pyarrow"] = None  # type: ignore[assignment]
    import litdata  # noqa: F401

    for name, module in list(sys.modules.items()):
        if name.startswith("litdata") and hasattr(module, "_PYARROW_AVAILABLE"):
            module._PYARROW_AVAILABLE = False  # type: ignore[attr-defined]


def make(
    kind: str,
    out: str | os.PathLike[str],
    n: int = 8,
    compression: str | None = None,
    level: str | None = None,
    pyarrow: bool = True,
) -> Path:
    """Write a dataset of ``n`` samples of ``kind`` to ``out`` with ``litdata.optimize``."""
    out = Path(out)
    args = json.dumps([kind, str(out), n, compression, level, pyarrow])
    code = (
        "import json, sys; sys.path.insert(0, sys.argv[2]); import litdata_datasets as m; "
        "kind, out, n, c, l, pa = json.loads(sys.argv[1]); "
        "(None if pa else m._hide_pyarrow()); m._optimize(kind, out, n, c, l)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code, args, str(HERE)],
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0 or not (out / "index.json").exists():
        raise RuntimeError(f"litdata.optimize failed:\n{result.stdout}\n{result.stderr}")
    return out


def _image_row(item: tuple[bytes, int]) -> dict[str, Any]:
    return {"image": item[0], "label": item[1]}


def make_images(out: str | os.PathLike[str], images: list[bytes]) -> Path:
    """A dataset {"image": bytes, "label": i} of these encoded images (litdata.optimize)."""
    import litdata

    out = Path(out)
    litdata.optimize(
        fn=_image_row,
        inputs=[(data, i) for i, data in enumerate(images)],
        output_dir=str(out),
        chunk_bytes="1MB",
        num_workers=1,
        start_method="fork",
    )
    return out


def variants(photo: bytes) -> dict[str, bytes]:
    """One photograph encoded the ways ImageNet-like datasets hold images."""
    from PIL import Image

    image = Image.open(io.BytesIO(photo)).convert("RGB")

    def save(img: Any, fmt: str = "JPEG", **kw: Any) -> bytes:
        buf = io.BytesIO()
        img.save(buf, format=fmt, **kw)
        return buf.getvalue()

    rgba = image.copy()
    rgba.putalpha(200)
    return {
        "baseline": photo,
        "q75_444": save(image, quality=75, subsampling=0),
        "q95_422": save(image, quality=95, subsampling=1),
        "progressive": save(image, quality=90, progressive=True),
        "grayscale": save(image.convert("L"), quality=90),
        "cmyk": save(image.convert("CMYK"), quality=90),
        "png": save(image, "PNG"),
        "png_rgba": save(rgba, "PNG"),
        "png_gray": save(image.convert("L"), "PNG"),
        "webp": save(image, "WEBP", quality=80),
        "webp_lossless": save(image, "WEBP", lossless=True),
        "webp_rgba": save(rgba, "WEBP", quality=90),
    }
