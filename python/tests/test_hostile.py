"""Hostile input: images and chunks crafted to hide damage or to exhaust memory, and files that
are not files. Each test is named after the failure it pins; those that could abort or hang
the interpreter if they regressed run in a child process."""

from __future__ import annotations

import io
import os
import shutil
import struct
import subprocess
import sys
import textwrap
import zlib
from pathlib import Path

import litdata_datasets as m
import pytest
import slipstream as ss

FIXTURES = Path(__file__).resolve().parents[2] / "tests" / "fixtures" / "litdata"


def run_child(code: str, *, address_space: int | None = None) -> subprocess.CompletedProcess:
    """Run `code` in a fresh interpreter, optionally under an address-space limit (as cluster
    jobs run), and return what happened; a regression that hangs fails on the timeout."""
    prelude = ""
    if address_space is not None:
        prelude = (
            "import resource\n"
            f"resource.setrlimit(resource.RLIMIT_AS, ({address_space}, {address_space}))\n"
        )
    return subprocess.run(
        [sys.executable, "-c", prelude + textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=300,
    )


# -- 1. a JPEG cut short that still ends with an end-of-image marker ---------------------------


def cut_with_eoi(jpeg: bytes) -> bytes:
    return jpeg[: len(jpeg) // 2] + b"\xff\xd9"


def test_truncated_jpeg_ending_with_eoi_is_a_decode_error(demo_dataset) -> None:
    cut = cut_with_eoi(demo_dataset[0]["image"])
    with pytest.raises(ss.DecodeError, match="premature end of data segment"):
        ss.decode_image(cut)
    # Pillow's LOAD_TRUNCATED_IMAGES: the image, its missing rows grey.
    whole = ss.decode_image(demo_dataset[0]["image"])
    accepted = ss.decode_image(cut, load_truncated_images=True)
    assert accepted.shape == whole.shape
    rows = accepted.shape[0]
    assert (accepted[: rows // 8] == whole[: rows // 8]).all(), "the top rows decode as before"
    assert (accepted[-4:] == 128).all(), "the rows after the cut are grey"


def test_truncation_after_a_harmless_warning_is_still_a_decode_error(demo_dataset) -> None:
    """libjpeg warns about an unknown JFIF revision first; the cut further on must not hide
    behind it (TurboJPEG reports only a decode's first warning)."""
    jpeg = bytearray(demo_dataset[1]["image"])
    at = jpeg.index(b"JFIF\0")
    jpeg[at + 5] = 3
    assert ss.decode_image(bytes(jpeg)).shape[2] == 3, "the revision alone is harmless"
    with pytest.raises(ss.DecodeError, match="premature end of data segment"):
        ss.decode_image(cut_with_eoi(bytes(jpeg)))


def test_truncated_jpeg_ending_with_eoi_is_skipped_in_pipelines(
    demo_dataset, tmp_path: Path
) -> None:
    images = [demo_dataset[i]["image"] for i in range(8)]
    images[3] = cut_with_eoi(images[3])
    ds = ss.SlipstreamDataset(m.make_images(tmp_path / "ds", images), progress=False)
    # A view that needs rows from the lost half: a random crop inside the intact half decodes
    # only rows that are there (region decode), which is not an error.
    pipeline = {"image": [ss.CenterCrop(32, resize=32)]}
    with pytest.raises(ss.DecodeError, match=r"\(sample 3\).*premature end"):
        list(ss.SlipstreamLoader(ds, batch_size=4, shuffle=False, pipelines=pipeline))
    skipping = ss.SlipstreamLoader(
        ds, batch_size=4, shuffle=False, on_error="skip", pipelines=pipeline
    )
    assert 3 not in [i for b in skipping for i in b["index"].tolist()]
    assert skipping.stats()["replaced"] == 1
    keeping = ss.SlipstreamLoader(
        ds, batch_size=4, shuffle=False, pipelines=pipeline, load_truncated_images=True
    )
    assert [i for b in keeping for i in b["index"].tolist()] == list(range(8))


def test_a_header_that_does_not_parse_leaves_the_next_image_intact(
    demo_dataset, tmp_path: Path
) -> None:
    """libjpeg-turbo left a decompressor whose header read failed mid-header, and the next
    image on that thread then failed (or decoded at another size) too."""
    images = [demo_dataset[i]["image"] for i in range(6)]
    sos = images[0].index(b"\xff\xda")
    images[0] = images[0][: sos + 4]  # "Bogus marker length": the header read itself fails
    ds = ss.SlipstreamDataset(m.make_images(tmp_path / "ds", images), progress=False)
    pipeline = {"image": [ss.CenterCrop(64, resize=64)]}

    def crops(**kw) -> dict[int, bytes]:
        lo = ss.SlipstreamLoader(ds, batch_size=1, shuffle=False, num_threads=1, **kw)
        return {b["index"].item(): b["image"].numpy().tobytes() for b in lo}

    after_broken = crops(pipelines=pipeline, on_error="skip")  # 0 replaced by 1, on one thread
    alone = crops(pipelines=pipeline, indices=list(range(1, 6)))
    assert {k: v for k, v in after_broken.items() if k != 1} == {
        k: v for k, v in alone.items() if k != 1
    }
    assert after_broken[1] == alone[1]


# -- 2. decompression bombs -----------------------------------------------------------------


def claim_size(jpeg: bytes, width: int, height: int) -> bytes:
    """`jpeg` with its frame header claiming another size (the data stays as it is)."""
    at = 2
    while True:
        marker, length = jpeg[at + 1], struct.unpack(">H", jpeg[at + 2 : at + 4])[0]
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            return jpeg[: at + 5] + struct.pack(">HH", height, width) + jpeg[at + 9 :]
        at += 2 + length


def png_claiming(width: int, height: int) -> bytes:
    """A 1x1-pixel PNG's worth of data under a header claiming `width` x `height`."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(kind + data)
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    data = zlib.compress(b"\x00" + b"\x00" * 3)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", data) + chunk(b"IEND", b"")
    )


def webp_claiming(width: int, height: int) -> bytes:
    """A 1x1 lossless WebP under an extended header (VP8X) whose canvas claims `width` x
    `height`."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (1, 1)).save(buffer, "WEBP", lossless=True)
    canvas = (width - 1).to_bytes(3, "little") + (height - 1).to_bytes(3, "little")
    body = b"WEBP" + b"VP8X" + struct.pack("<I", 10) + bytes(4) + canvas + buffer.getvalue()[12:]
    return b"RIFF" + struct.pack("<I", len(body)) + body


def test_decompression_bomb_headers_are_refused_before_allocating(
    demo_dataset, tmp_path: Path
) -> None:
    jpeg_bomb = claim_size(demo_dataset[0]["image"], 65500, 65500)
    bombs = {
        "jpeg": jpeg_bomb,
        "png": png_claiming(60000, 60000),
        "webp": webp_claiming(60000, 60000),
    }
    for name, bomb in bombs.items():
        with pytest.raises(ss.DecodeError, match="max_image_pixels"):
            ss.decode_image(bomb)
        (tmp_path / name).write_bytes(bomb)
    # Under a 4 GiB address-space limit, even with the guard off, a bomb is an error (the
    # allocation fails), never an abort.
    child = run_child(
        f"""
        import slipstream as ss
        for name in ("jpeg", "png", "webp"):
            bomb = open({str(tmp_path)!r} + "/" + name, "rb").read()
            for limit in (ss.MAX_IMAGE_PIXELS, None):
                try:
                    ss.decode_image(bomb, max_image_pixels=limit)
                    print(name, limit, "decoded")
                except ss.DecodeError as e:
                    print(name, limit, "DecodeError:", e)
        """,
        address_space=4 << 30,
    )
    assert child.returncode == 0, child.stderr
    lines = child.stdout.splitlines()
    assert len(lines) == 6 and all("DecodeError" in line for line in lines), child.stdout
    for guarded, unguarded in zip(lines[::2], lines[1::2], strict=True):
        assert "max_image_pixels" in guarded and "memory" in unguarded, child.stdout


def test_decompression_bomb_in_a_dataset_follows_on_error(demo_dataset, tmp_path: Path) -> None:
    images = [demo_dataset[i]["image"] for i in range(6)]
    images[2] = claim_size(images[2], 65500, 65500)
    ds = ss.SlipstreamDataset(m.make_images(tmp_path / "ds", images), progress=False)
    pipeline = {"image": [ss.RandomResizedCrop(32)]}
    with pytest.raises(ss.DecodeError, match=r"\(sample 2\).*max_image_pixels"):
        list(ss.SlipstreamLoader(ds, batch_size=3, shuffle=False, pipelines=pipeline))
    skipping = ss.SlipstreamLoader(
        ds, batch_size=3, shuffle=False, on_error="skip", pipelines=pipeline
    )
    assert 2 not in [i for b in skipping for i in b["index"].tolist()]
    small = ss.SlipstreamLoader(
        ds,
        batch_size=3,
        shuffle=False,
        on_error="skip",
        pipelines=pipeline,
        max_image_pixels=1000,
    )
    with pytest.raises(ss.DecodeError, match="max_image_pixels=1000"):
        list(small)  # every image is too large: no replacement is found


# -- 3. a zstd chunk that expands far beyond what index.json declares --------------------------


def test_zstd_bomb_chunk_is_refused_within_the_declared_bound(tmp_path: Path) -> None:
    import zstd

    ds = tmp_path / "ds"
    shutil.copytree(FIXTURES / "full-zstd-chunk", ds)
    chunk = ds / "chunk-0-1.zstd.bin"
    # 64 frames of 16 MiB of zeros: a 1 GiB chunk in ~32 KB, where the index declares ~4 KB.
    frame = zstd.compress(b"\x00" * (16 << 20), 19)
    chunk.write_bytes(frame * 64)
    child = run_child(
        f"""
        import slipstream as ss
        try:
            ss.SlipstreamDataset({str(ds)!r}, cache_dir={str(tmp_path / "cache")!r},
                                 progress=False)
            print("built")
        except ss.FormatError as e:
            print("FormatError:", e)
        # The peak of this process alone (ru_maxrss would include the parent's, from before exec).
        peak = next(l for l in open("/proc/self/status") if l.startswith("VmHWM"))
        print(int(peak.split()[1]) // 1024, "MB")
        """,
        address_space=4 << 30,
    )
    assert child.returncode == 0, child.stderr
    refused, peak = child.stdout.splitlines()
    assert "chunk-0-1.zstd.bin" in refused and "decompresses to more than" in refused, refused
    # The bound is 4 x the declared size + 64 MiB: far below the gigabyte it would expand to.
    assert int(peak.split()[0]) < 512, peak


# -- 4. dataset files that are not regular files ---------------------------------------------


@pytest.mark.parametrize("name", ["chunk-0-1.bin", "index.json"])
def test_fifo_in_a_dataset_is_a_format_error_not_a_hang(tmp_path: Path, name: str) -> None:
    ds = tmp_path / "ds"
    shutil.copytree(FIXTURES / "full-plain", ds)
    (ds / name).unlink()
    os.mkfifo(ds / name)
    child = run_child(
        f"""
        import slipstream as ss
        try:
            ss.SlipstreamDataset({str(ds)!r}, cache_dir={str(tmp_path / "cache")!r},
                                 progress=False)
            print("opened")
        except ss.FormatError as e:
            print("FormatError:", e)
        """
    )
    assert child.returncode == 0, child.stderr
    assert "FormatError" in child.stdout and "not a regular file (a FIFO)" in child.stdout
    assert name in child.stdout, child.stdout


def test_bomb_helpers_make_valid_images() -> None:
    from PIL import Image

    assert Image.open(io.BytesIO(png_claiming(1, 1))).size == (1, 1)
    assert ss.decode_image(webp_claiming(1, 1)).shape == (1, 1, 3)
