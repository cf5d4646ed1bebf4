"""The cache's encodings (docs/FORMAT.md): `jpeg` re-encodes images scaled to fit `max_side`,
`yuv420` keeps a JPEG's own planes so reading needs no decoding. Each is its own cache file,
built from the original cache, with every non-image value copied as it is."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path

import litdata_datasets as m
import numpy as np
import pytest
import slipstream as ss
import torch
from PIL import Image
from torchvision.transforms import v2


def fitted(width: int, height: int, side: int) -> tuple[int, int]:
    scale = side / max(width, height)
    return (
        (max(1, round(width * scale)), max(1, round(height * scale)))
        if max(width, height) > side
        else (width, height)
    )


def diff(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.abs(a.astype(np.int16) - b.astype(np.int16))


@pytest.fixture(scope="module")
def copy_of_demo(demo_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The demo dataset in a folder of its own, which tests may modify."""
    out = tmp_path_factory.mktemp("encodings") / "demo"
    out.mkdir()
    for f in demo_dir.iterdir():
        (out / f.name).write_bytes(f.read_bytes())
    return out


def test_jpeg_encoding_fits_max_side(copy_of_demo: Path) -> None:
    original = ss.SlipstreamDataset(copy_of_demo, progress=False)
    ds = ss.SlipstreamDataset(
        copy_of_demo, encoding="jpeg", max_side=200, quality=90, progress=False
    )
    assert ds.cache_path.endswith(".jpeg-q90-200.slipcache")
    assert Path(ds.cache_path).parent == Path(original.cache_path).parent
    assert ds.header["encoding"] == {"name": "jpeg", "max_side": 200, "quality": 90}
    assert "encoding" not in original.header
    assert ds.header["source"]["fingerprint"] != original.header["source"]["fingerprint"]
    assert len(ds) == len(original) and ds.fields[0].kind == "bytes"
    for i in range(0, len(ds), 7):
        src = Image.open(io.BytesIO(original[i]["image"])).convert("RGB")
        ours = Image.open(io.BytesIO(ds[i]["image"]))
        assert ours.format == "JPEG" and ours.mode == "RGB"
        assert ours.size == fitted(*src.size, 200)
        assert ds[i]["label"] == original[i]["label"]
        # What Pillow makes of it: its antialiased bilinear resize, saved at quality 90.
        buffer = io.BytesIO()
        src.resize(ours.size, Image.BILINEAR).save(buffer, "JPEG", quality=90)
        ref = Image.open(buffer)
        assert diff(np.asarray(ours), np.asarray(ref)).mean() < 1.5, i
        assert abs(len(ds[i]["image"]) / len(buffer.getvalue()) - 1) < 0.05, i
    ds.verify()


def test_yuv420_holds_the_jpegs_own_planes(copy_of_demo: Path) -> None:
    original = ss.SlipstreamDataset(copy_of_demo, progress=False)
    ds = ss.SlipstreamDataset(copy_of_demo, encoding="yuv420", progress=False)
    assert ds.cache_path.endswith(".yuv420.slipcache")
    assert ds.fields[0].kind == "yuv420" and ds.fields[0].images
    header = ds.header["fields"][0]
    records = np.memmap(
        ds.cache_path,
        np.dtype([("offset", "<u8"), ("size", "<u4"), ("crc", "<u4"), ("h", "<u4"), ("w", "<u4")]),
        "r",
        offset=header["records"]["offset"],
        shape=(len(ds),),
    )
    data = np.memmap(ds.cache_path, np.uint8, "r")
    for i in range(0, len(ds), 5):
        jpeg = original[i]["image"]
        pil = Image.open(io.BytesIO(jpeg))
        w, h = pil.size
        r = records[i]
        cw, ch = (w + 1) // 2, (h + 1) // 2
        assert (int(r["w"]), int(r["h"])) == (w, h) and int(r["size"]) == 6 * cw * ch
        # The luma plane is the JPEG's, byte for byte (Pillow decodes it without conversion).
        pil.draft("YCbCr", pil.size)
        luma = data[int(r["offset"]) : int(r["offset"]) + 4 * cw * ch].reshape(2 * ch, 2 * cw)
        assert np.array_equal(luma[:h, :w], np.asarray(pil)[..., 0])
        # RGB as libjpeg decodes it, up to the rounding of its upsampled chroma.
        rgb = np.asarray(ds[i]["image"])
        assert rgb.shape == (h, w, 3)
        assert diff(rgb, ss.decode_image(jpeg)).max() <= 2
    assert ds[3]["label"] == original[3]["label"]
    tensor = ss.SlipstreamDataset(
        copy_of_demo, encoding="yuv420", decode_images=True, to_pil=False, progress=False
    )[3]["image"]
    assert tensor.shape == (3, *np.asarray(ds[3]["image"]).shape[:2])
    ratio = ds.header["fields"][0]["total_bytes"] / original.header["fields"][0]["total_bytes"]
    assert 1.0 < ratio < 4.0, ratio


def pipeline_outputs(ds: ss.SlipstreamDataset, **kw) -> torch.Tensor:
    loader = ss.SlipstreamLoader(
        ds,
        batch_size=32,
        shuffle=False,
        seed=3,
        pipelines={"image": [ss.RandomResizedCrop(160), ss.RandomHorizontalFlip()]},
        **kw,
    )
    return torch.cat([b["image"] for b in loader])


def test_yuv420_pipelines_equal_the_original_ones(copy_of_demo: Path) -> None:
    original = ss.SlipstreamDataset(copy_of_demo, progress=False)
    yuv = ss.SlipstreamDataset(copy_of_demo, encoding="yuv420", progress=False)
    ref = pipeline_outputs(original, reduced_decode=False).numpy()
    ours = pipeline_outputs(yuv).numpy()
    assert ours.shape == ref.shape == (96, 3, 160, 160)
    d = diff(ours, ref)
    assert d.mean() < 0.5 and d.max() <= 3, (d.mean(), d.max())
    # The same crops, against torchvision on the planes' own RGB.
    for i in (0, 17, 95):
        rgb = torch.from_numpy(np.asarray(yuv[i]["image"]).copy()).permute(2, 0, 1)
        size = rgb.shape[1:]
        top, left, h, w = ss.RandomResizedCrop(160).get_params(*size, seed=3, epoch=0, index=i)
        crop = v2.functional.resized_crop(rgb, top, left, h, w, [160, 160], antialias=True)
        flipped = ss.RandomHorizontalFlip().get_params(seed=3, epoch=0, index=i)
        if flipped:
            crop = crop.flip(-1)
        assert diff(ours[i], crop.numpy()).mean() < 1.0


def test_encodings_of_every_kind_of_field(full_dir: Path, tmp_path: Path) -> None:
    original = ss.SlipstreamDataset(full_dir, cache_dir=tmp_path, progress=False)
    ds = ss.SlipstreamDataset(full_dir, cache_dir=tmp_path, encoding="yuv420", progress=False)
    kinds = {f.name: f.kind for f in ds.fields}
    assert kinds["jpeg"] == kinds["pil"] == "yuv420"
    for i in range(len(ds)):
        a, b = original[i], ds[i]
        for name, kind in kinds.items():
            if kind == "yuv420":
                continue
            if isinstance(a[name], (np.ndarray, torch.Tensor)):
                assert (a[name] == b[name]).all() and a[name].dtype == b[name].dtype
            else:
                assert a[name] == b[name], name
        # A raw PIL image: grey ones exactly; colour ones (noise, whose chroma 4:2:0 cannot
        # keep) with their luma.
        ref = np.asarray(a["pil"].convert("RGB"))
        ours = np.asarray(b["pil"])
        if a["pil"].mode == "L":
            assert np.array_equal(ours, ref)
        luma = np.array([0.299, 0.587, 0.114])
        assert np.abs(ours @ luma - ref @ luma).mean() < 2
    ds.verify()


def test_encodings_are_reused_and_follow_their_source(copy_of_demo: Path, tmp_path: Path) -> None:
    first = ss.SlipstreamDataset(
        copy_of_demo, cache_dir=tmp_path, encoding="yuv420", max_side=64, progress=False
    )
    built = os.stat(first.cache_path).st_mtime_ns
    again = ss.SlipstreamDataset(
        copy_of_demo, cache_dir=tmp_path, encoding="yuv420", max_side=64, progress=False
    )
    assert os.stat(again.cache_path).st_mtime_ns == built
    assert max(np.asarray(again[0]["image"]).shape) == 64
    # A changed source: the original cache and the encoding are both rebuilt.
    chunk = next(copy_of_demo.glob("*.bin"))
    os.utime(chunk, ns=(built + 10**9, built + 10**9))
    changed = ss.SlipstreamDataset(
        copy_of_demo, cache_dir=tmp_path, encoding="yuv420", max_side=64, progress=False
    )
    assert changed.header["source"]["fingerprint"] != first.header["source"]["fingerprint"]
    assert os.stat(changed.cache_path).st_mtime_ns != built


def test_encoding_errors(demo_dir: Path, tmp_path: Path) -> None:
    for kw, says in [
        ({"encoding": "webp"}, "unknown encoding"),
        ({"encoding": "yuv420", "quality": 90}, "not compressed"),
        ({"max_side": 100}, "re-encode images"),
        ({"encoding": "jpeg", "quality": 0}, "1..100"),
    ]:
        with pytest.raises(ss.ConfigError, match=says):
            ss.SlipstreamDataset(demo_dir, cache_dir=tmp_path, progress=False, **kw)
    text = m.make("text", tmp_path / "text", 4)
    with pytest.raises(ss.ConfigError, match="no field holds images"):
        ss.SlipstreamDataset(text, cache_dir=tmp_path, encoding="jpeg", progress=False)
    yuv = ss.SlipstreamDataset(demo_dir, cache_dir=tmp_path, encoding="yuv420", progress=False)
    with pytest.raises(ss.ConfigError, match="already an encoded cache"):
        ss.SlipstreamDataset(yuv.cache_path, encoding="jpeg", progress=False)


@pytest.mark.parametrize("encoding", ["jpeg", "yuv420"])
def test_an_image_that_does_not_decode_fails_at_load_time_as_in_the_original(
    tmp_path: Path, capfd: pytest.CaptureFixture, encoding: str
) -> None:
    tree = tmp_path / "tree"
    (tree / "a").mkdir(parents=True)
    for i in range(6):
        buffer = io.BytesIO()
        Image.fromarray(np.full((40, 50, 3), 40 * i, np.uint8)).save(buffer, "JPEG")
        (tree / "a" / f"{i}.jpg").write_bytes(buffer.getvalue())
    cut = (tree / "a" / "2.jpg").read_bytes()[:200]  # no scan: nothing to decode
    (tree / "a" / "2.jpg").write_bytes(cut)
    ds = ss.SlipstreamDataset(tree, cache_dir=tmp_path / "cache", progress=False)
    encoded = ds.encoded(encoding)
    said = capfd.readouterr().err
    assert "1 image(s) could not be decoded" in said and "sample 2, field 'image'" in said
    assert encoded[2]["image"] == cut  # the original's bytes, kept
    encoded.verify()
    stages = [ss.CenterCrop(32)]
    skip = ss.SlipstreamLoader(encoded, batch_size=6, pipelines={"image": stages}, on_error="skip")
    (batch,) = list(skip)
    assert skip.stats()["replaced"] == 1 and batch["image"].shape == (6, 3, 32, 32)
    raising = ss.SlipstreamLoader(encoded, batch_size=6, pipelines={"image": stages})
    with pytest.raises(ss.DecodeError, match="sample 2"):
        list(raising)


def test_cli_builds_an_encoding(demo_dir: Path, tmp_path: Path) -> None:
    cmd = [sys.executable, "-m", "slipstream", "build", str(demo_dir), "--cache-dir", str(tmp_path)]
    out = subprocess.run(
        [*cmd, "--encoding", "jpeg", "--max-side", "96", "--quality", "80", "-q"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    assert out.endswith(".jpeg-q80-96.slipcache") and Path(out).is_file()
    inspect = subprocess.run(
        [sys.executable, "-m", "slipstream", "inspect", out], check=True, capture_output=True
    )
    assert b"bytes" in inspect.stdout
    bad = subprocess.run([*cmd, "--encoding", "yuv420", "--quality", "80"], capture_output=True)
    assert bad.returncode == 1 and b"not compressed" in bad.stderr


def test_webp_images_take_every_encoding(demo_dataset: ss.SlipstreamDataset, tmp_path) -> None:
    """WebP, decoded whole on the CPU, is re-encoded like any image: the yuv420 planes hold
    what Pillow decodes (to 4:2:0's precision), the JPEG fits max_side."""
    webps = []
    for i in range(4):
        photo = Image.open(io.BytesIO(demo_dataset[i]["image"]))
        buffer = io.BytesIO()
        photo.save(buffer, "WEBP", quality=80)
        webps.append(buffer.getvalue())
    source = m.make_images(tmp_path / "webp", webps)
    yuv = ss.SlipstreamDataset(source, encoding="yuv420", progress=False)
    small = ss.SlipstreamDataset(source, encoding="jpeg", max_side=100, progress=False)
    for i, data in enumerate(webps):
        pil = Image.open(io.BytesIO(data)).convert("RGB")
        assert diff(np.asarray(yuv[i]["image"]), np.asarray(pil)).mean() < 2.0, i
        assert Image.open(io.BytesIO(small[i]["image"])).size == fitted(*pil.size, 100)
