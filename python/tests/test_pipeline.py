"""The CPU image pipeline against torchvision and Pillow, on realistic photographs.

The photographs are `slipstream demo`'s (landscapes at ImageNet sizes, 300-500 px on the short
side, JPEG quality 85-95, 4:2:0), plus each re-encoded the other ways datasets hold images
(4:4:4, 4:2:2, progressive, grayscale, CMYK, PNG, WebP). Tolerances are stated per test.
"""

from __future__ import annotations

import io
import math
from pathlib import Path

import litdata_datasets as m
import numpy as np
import pytest
import slipstream as ss
import torch
from PIL import Image
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as F

# Per image, on the uint8 scale, against torchvision on the same decoded pixels.
MEAN_ABS = 1.0
MAX_ABS = 8


@pytest.fixture(scope="module")
def photos(demo_dataset: ss.SlipstreamDataset) -> list[bytes]:
    return [demo_dataset[i]["image"] for i in range(len(demo_dataset))]


@pytest.fixture(scope="module")
def variants_dataset(
    photos: list[bytes], tmp_path_factory: pytest.TempPathFactory
) -> tuple[ss.SlipstreamDataset, list[str]]:
    names, images = [], []
    for photo in photos[:6]:
        for name, data in m.variants(photo).items():
            names.append(name)
            images.append(data)
    out = m.make_images(tmp_path_factory.mktemp("variants") / "ds", images)
    return ss.SlipstreamDataset(out, progress=False), names


def tv_image(data: bytes) -> torch.Tensor:
    """slipstream's decode (bit-exact with Pillow, see below) as a CHW uint8 tensor."""
    return torch.from_numpy(ss.decode_image(data)).permute(2, 0, 1)


def assert_close(ours: torch.Tensor, ref: torch.Tensor, what: str) -> None:
    diff = (ours.int() - ref.int()).abs()
    assert diff.float().mean() <= MEAN_ABS and diff.max() <= MAX_ABS, (
        f"{what}: mean {diff.float().mean():.3f} max {diff.max()}"
    )


def loader(ds: ss.SlipstreamDataset, pipeline: list, **kw) -> ss.SlipstreamLoader:
    kw.setdefault("seed", 5)
    return ss.SlipstreamLoader(
        ds, batch_size=16, shuffle=False, pipelines={"image": pipeline}, **kw
    )


# -- decode -----------------------------------------------------------------------------------


def test_decode_is_pillows(variants_dataset) -> None:
    """Same library, same settings: every variant decodes to exactly Pillow's pixels."""
    ds, names = variants_dataset
    for i, name in enumerate(names):
        data = ds[i]["image"]
        pil = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))
        ours = ss.decode_image(data)
        assert ours.shape == pil.shape, name
        assert np.array_equal(ours, pil), f"{name}: max diff {np.abs(ours.astype(int) - pil).max()}"


def test_decode_errors_are_decode_errors(photos: list[bytes]) -> None:
    with pytest.raises(ss.DecodeError, match="Premature end"):
        ss.decode_image(photos[0][: len(photos[0]) // 2])
    with pytest.raises(ss.DecodeError, match="not a JPEG, PNG or WebP"):
        ss.decode_image(b"GIF89a" + bytes(100))
    webp = m.variants(photos[0])["webp"]
    with pytest.raises(ss.DecodeError, match="WebP"):
        ss.decode_image(webp[: len(webp) // 2])


# -- crop parameters --------------------------------------------------------------------------


def ks_statistic(a: list[float], b: list[float]) -> float:
    """Two-sample Kolmogorov-Smirnov statistic."""
    a, b = np.sort(a), np.sort(b)
    grid = np.concatenate([a, b])
    return float(
        np.max(
            np.abs(
                np.searchsorted(a, grid, side="right") / len(a)
                - np.searchsorted(b, grid, side="right") / len(b)
            )
        )
    )


@pytest.mark.parametrize(
    ("height", "width", "scale", "ratio"),
    [
        (375, 500, (0.08, 1.0), (3 / 4, 4 / 3)),
        (500, 333, (0.08, 1.0), (3 / 4, 4 / 3)),
        (256, 256, (0.4, 1.0), (3 / 4, 4 / 3)),
        # A strip: most tries fail and the fallback central crop is common.
        (60, 600, (0.3, 1.0), (3 / 4, 4 / 3)),
    ],
)
def test_crop_parameters_follow_torchvisions_distribution(height, width, scale, ratio) -> None:
    n = 4000
    crop = ss.RandomResizedCrop(224, scale=scale, ratio=ratio)
    ours = [crop.get_params(height, width, seed=11, epoch=0, index=i) for i in range(n)]
    torch.manual_seed(0)
    image = torch.zeros(3, height, width, dtype=torch.uint8)
    theirs = [v2.RandomResizedCrop.get_params(image, scale=scale, ratio=ratio) for _ in range(n)]

    def features(params):
        top, left, h, w = np.array(params, dtype=float).T
        return {
            "area": h * w / (height * width),
            "log aspect": np.log(w / h),
            "top": (top + 0.5) / (height - h + 1),
            "left": (left + 0.5) / (width - w + 1),
        }

    fo, ft = features(ours), features(theirs)
    # KS critical value at alpha = 0.001 for two samples of 4000 is 0.044.
    for name in fo:
        assert ks_statistic(fo[name], ft[name]) < 0.044, name
    # How often the crop spans the whole width (the fallback, on the strip).
    o = np.mean([p[3] == width and p[1] == 0 for p in ours])
    t = np.mean([p[3] == width and p[1] == 0 for p in theirs])
    assert abs(o - t) < 4 * math.sqrt(max(t, 0.01) / n) + 0.01, (o, t)


def test_crop_parameters_are_reproducible() -> None:
    crop = ss.RandomResizedCrop(224)
    a = crop.get_params(375, 500, seed=3, epoch=2, index=41, view=1)
    assert a == crop.get_params(375, 500, seed=3, epoch=2, index=41, view=1)
    assert a != crop.get_params(375, 500, seed=3, epoch=2, index=41, view=0)
    assert a != crop.get_params(375, 500, seed=3, epoch=3, index=41, view=1)


# -- pixels against torchvision ---------------------------------------------------------------


@pytest.mark.parametrize("reduced", [False, True])
@pytest.mark.parametrize("interpolation", ["bilinear", "bicubic"])
@pytest.mark.parametrize("antialias", [True, False])
def test_random_resized_crop_matches_torchvision(
    variants_dataset, reduced: bool, interpolation: str, antialias: bool
) -> None:
    """With reduced decode off the resize reads full-resolution pixels, like torchvision; on
    these ImageNet-sized photos no crop is 2x the output, so reduced decode changes nothing.
    Without antialiasing, at 64 px, most crops are downscaled several times over."""
    ds, names = variants_dataset
    size = 224 if antialias else 64
    crop = ss.RandomResizedCrop(size, interpolation=interpolation, antialias=antialias)
    mode = v2.InterpolationMode(interpolation)
    lo = loader(ds, [crop], reduced_decode=reduced)
    for batch in lo:
        for k, i in enumerate(batch["index"].tolist()):
            data = ds[i]["image"]
            img = tv_image(data)
            top, left, h, w = crop.get_params(*img.shape[1:], seed=5, epoch=0, index=i)
            ref = F.resized_crop(img, top, left, h, w, [size, size], mode, antialias=antialias)
            assert_close(batch["image"][k], ref, f"sample {i} ({names[i]})")


def test_reduced_decode_on_large_photographs(photos: list[bytes], tmp_path: Path) -> None:
    """Photographs of ~1500x1100 px: DCT-domain downscaling applies whenever a crop is at least
    twice the output. Documented bound against torchvision: mean |diff| <= 2.0 per image,
    max <= 64 (aliasing of fine detail differs between the DCT and the bilinear filter)."""
    big = []
    for photo in photos[:24]:
        img = Image.open(io.BytesIO(photo)).convert("RGB")
        img = img.resize((img.width * 3, img.height * 3), Image.Resampling.BICUBIC)
        grain = np.random.RandomState(len(big)).normal(0, 6, (img.height, img.width, 3))
        pixels = np.clip(np.asarray(img, dtype=float) + grain, 0, 255).astype(np.uint8)
        buf = io.BytesIO()
        Image.fromarray(pixels).save(buf, format="JPEG", quality=90)
        big.append(buf.getvalue())
    ds = ss.SlipstreamDataset(m.make_images(tmp_path / "big", big), progress=False)
    crop = ss.RandomResizedCrop(224)
    exact = next(iter(loader(ds, [crop], reduced_decode=False)))["image"]
    reduced = next(iter(loader(ds, [crop], reduced_decode=True)))["image"]
    means = []
    for k in range(16):
        img = tv_image(big[k])
        top, left, h, w = crop.get_params(*img.shape[1:], seed=5, epoch=0, index=k)
        ref = F.resized_crop(img, top, left, h, w, [224, 224], antialias=True)
        assert_close(exact[k], ref, f"exact {k}")
        diff = (reduced[k].int() - ref.int()).abs()
        means.append(float(diff.float().mean()))
        assert diff.float().mean() <= 2.0 and diff.max() <= 64, (k, means[-1], int(diff.max()))
    assert max(means) > 0, "reduced decode was used for some crop"


@pytest.mark.parametrize("interpolation", ["bilinear", "bicubic"])
@pytest.mark.parametrize("antialias", [True, False])
def test_center_crop_matches_torchvision(
    variants_dataset, interpolation: str, antialias: bool
) -> None:
    ds, names = variants_dataset
    mode = v2.InterpolationMode(interpolation)
    # Without antialiasing, shrunk past 3x, where the filter's support matters.
    resize, size = (256, 224) if antialias else (128, 112)
    ref_tf = v2.Compose([v2.Resize(resize, mode, antialias=antialias), v2.CenterCrop(size)])
    for reduced in (False, True):
        stage = ss.CenterCrop(size, resize=resize, interpolation=mode, antialias=antialias)
        lo = loader(ds, [stage], reduced_decode=reduced)
        for batch in lo:
            for k, i in enumerate(batch["index"].tolist()):
                ref = ref_tf(tv_image(ds[i]["image"]))
                # A reduced decode (never without antialiasing) smooths before the filter.
                tol = 2.0 if reduced and antialias else 1.0
                diff = (batch["image"][k].int() - ref.int()).abs()
                assert diff.float().mean() <= tol and diff.max() <= 64, (names[i], reduced)


def test_center_crop_pads_small_images(photos: list[bytes], tmp_path: Path) -> None:
    small = Image.open(io.BytesIO(photos[0])).convert("RGB").resize((150, 100))
    buf = io.BytesIO()
    small.save(buf, format="PNG")
    ds = ss.SlipstreamDataset(m.make_images(tmp_path / "small", [buf.getvalue()]), progress=False)
    ours = next(iter(loader(ds, [ss.CenterCrop(224)])))["image"][0]
    ref = v2.CenterCrop(224)(tv_image(buf.getvalue()))
    assert torch.equal(ours, ref)


# -- flip, normalize, dtypes, layouts ----------------------------------------------------------


def test_flip_and_normalize_are_exact(variants_dataset) -> None:
    ds, _ = variants_dataset
    crop = ss.RandomResizedCrop(160)
    plain = next(iter(loader(ds, [crop])))["image"]
    flipped = next(iter(loader(ds, [crop, ss.RandomHorizontalFlip(p=1.0)])))["image"]
    assert torch.equal(flipped, plain.flip(-1))
    half = next(iter(loader(ds, [crop, ss.RandomHorizontalFlip(p=0.5)])))["image"]
    flip = ss.RandomHorizontalFlip(p=0.5)
    for k in range(16):
        expect = plain[k].flip(-1) if flip.get_params(seed=5, epoch=0, index=k) else plain[k]
        assert torch.equal(half[k], expect)

    norm = ss.Normalize(mean=(0.4, 0.5, 0.6), std=(0.2, 0.25, 0.3))
    normalized = next(iter(loader(ds, [crop, norm])))["image"]
    ref = v2.Normalize(norm.mean, norm.std)(v2.ToDtype(torch.float32, scale=True)(plain))
    assert normalized.dtype == torch.float32
    assert torch.equal(normalized, ref), "same float32 operations as torchvision"


@pytest.mark.parametrize("dtype", ["float16", "bfloat16", "float32", "uint8"])
@pytest.mark.parametrize("memory_format", ["contiguous", "channels_last"])
def test_dtypes_and_memory_formats(variants_dataset, dtype: str, memory_format: str) -> None:
    ds, _ = variants_dataset
    stages = [ss.RandomResizedCrop(96), ss.RandomHorizontalFlip()]
    if dtype != "uint8":
        stages.append(ss.Normalize())
    ref = next(iter(loader(ds, stages, dtype="float32" if dtype != "uint8" else "uint8")))
    out = next(iter(loader(ds, stages, dtype=dtype, memory_format=memory_format)))["image"]
    assert out.shape == (16, 3, 96, 96) and out.dtype == getattr(torch, dtype)
    if memory_format == "channels_last":
        assert out.is_contiguous(memory_format=torch.channels_last)
        assert not out.is_contiguous()
    else:
        assert out.is_contiguous()
    assert torch.equal(out, ref["image"].to(getattr(torch, dtype)))


def test_unsupported_interpolation_is_a_config_error() -> None:
    with pytest.raises(ss.ConfigError, match="'bilinear' or 'bicubic'"):
        ss.RandomResizedCrop(224, interpolation=v2.InterpolationMode.NEAREST)
    with pytest.raises(ss.ConfigError, match=r"True \(the default\) or False"):
        ss.CenterCrop(224, resize=256, antialias="no")


def test_uint8_with_normalize_is_refused(variants_dataset) -> None:
    ds, _ = variants_dataset
    with pytest.raises(ss.ConfigError, match="Normalize needs a float dtype"):
        loader(ds, [ss.RandomResizedCrop(96), ss.Normalize()], dtype="uint8")
    with pytest.raises(ss.ConfigError, match="must start with"):
        loader(ds, [ss.Normalize()])
    with pytest.raises(ss.ConfigError, match="which the dataset does not have"):
        ss.SlipstreamLoader(ds, batch_size=4, pipelines={"img": [ss.RandomResizedCrop(8)]})
    with pytest.raises(ss.ConfigError, match="Int values, not images"):
        ss.SlipstreamLoader(ds, batch_size=4, pipelines={"label": [ss.RandomResizedCrop(8)]})


# -- views, determinism, resume ------------------------------------------------------------------


def test_several_views_decoded_once(variants_dataset) -> None:
    ds, _ = variants_dataset
    global_crop = ss.RandomResizedCrop(64, scale=(0.4, 1.0))
    local_crop = ss.RandomResizedCrop(32, scale=(0.05, 0.4))
    lo = ss.SlipstreamLoader(
        ds,
        batch_size=8,
        shuffle=False,
        seed=2,
        reduced_decode=False,
        pipelines={
            "global": ss.Pipeline([global_crop], field="image", views=2),
            "local": ss.Pipeline([local_crop, ss.RandomHorizontalFlip()], field="image", views=3),
        },
    )
    batch = next(iter(lo))
    assert sorted(batch) == ["_indices", "global", "index", "label", "local"]
    assert batch["global"].shape == (8, 2, 3, 64, 64)
    assert batch["local"].shape == (8, 3, 3, 32, 32)
    flip = ss.RandomHorizontalFlip()
    for k, i in enumerate(batch["index"].tolist()):
        img = tv_image(ds[i]["image"])
        for v in range(2):
            top, left, h, w = global_crop.get_params(
                *img.shape[1:], seed=2, epoch=0, index=i, view=v
            )
            ref = F.resized_crop(img, top, left, h, w, [64, 64], antialias=True)
            assert_close(batch["global"][k, v], ref, f"global view {v}")
        for v in range(3):
            view = 2 + v  # views are numbered across the pipelines of a field
            top, left, h, w = local_crop.get_params(
                *img.shape[1:], seed=2, epoch=0, index=i, view=view
            )
            ref = F.resized_crop(img, top, left, h, w, [32, 32], antialias=True)
            if flip.get_params(seed=2, epoch=0, index=i, view=view):
                ref = ref.flip(-1)
            assert_close(batch["local"][k, v], ref, f"local view {v}")
    assert not torch.equal(batch["global"][:, 0], batch["global"][:, 1])


def test_after_batch_runs_torch_functions_on_the_finished_output(variants_dataset) -> None:
    ds, _ = variants_dataset
    stages = [ss.RandomResizedCrop(40), ss.RandomHorizontalFlip(), ss.Normalize()]
    seen = []

    def mix(batch: dict) -> dict:  # loader-wide: sees the pipeline's after_batch result
        seen.append(batch["image"].clone())
        return batch

    def loader(pipeline) -> ss.SlipstreamLoader:
        return ss.SlipstreamLoader(
            ds,
            batch_size=8,
            seed=5,
            pipelines={"image": pipeline},
            after_batch_transforms=[mix],
        )

    plain = list(loader(stages))
    flipped = list(
        loader(
            ss.Pipeline(
                stages,
                after_batch=[v2.RandomVerticalFlip(p=1.0), lambda x: x.to(torch.bfloat16)],
            )
        )
    )
    assert len(plain) == len(flipped) > 1
    for a, b in zip(plain, flipped, strict=True):
        assert b["image"].dtype == torch.bfloat16
        assert torch.equal(b["image"], a["image"].flip(-2).to(torch.bfloat16))
        assert torch.equal(a["index"], b["index"])
    assert torch.equal(seen[-1], flipped[-1]["image"])
    again = loader(ss.Pipeline(stages, after_batch=[lambda x: x * 0]))
    assert not again.load([0, 1], epoch=0)["image"].any()  # load() finishes batches too


def test_after_batch_must_be_callables(variants_dataset) -> None:
    ds, _ = variants_dataset
    crop = ss.CenterCrop(32)
    for bad in ([3], lambda x: x, "flip"):
        with pytest.raises(ss.ConfigError, match="after_batch must be"):
            ss.SlipstreamLoader(
                ds, batch_size=4, pipelines={"image": ss.Pipeline([crop], after_batch=bad)}
            )
    with pytest.raises(ss.ConfigError, match=r"Pipeline\(\[\.\.\.\], after_batch=\[f\]\)"):
        ss.SlipstreamLoader(
            ds, batch_size=4, pipelines={"image": [crop, v2.RandomVerticalFlip(p=1.0)]}
        )


def test_same_crops_for_any_threads_batch_size_and_resume(variants_dataset) -> None:
    ds, _ = variants_dataset
    stages = [ss.RandomResizedCrop(48), ss.RandomHorizontalFlip(), ss.Normalize()]

    def by_index(lo: ss.SlipstreamLoader, epoch: int) -> dict[int, torch.Tensor]:
        lo.set_epoch(epoch)
        return {i: b["image"][k] for b in lo for k, i in enumerate(b["index"].tolist())}

    base = {"pipelines": {"image": stages}, "seed": 9}
    a = by_index(ss.SlipstreamLoader(ds, batch_size=4, num_threads=1, **base), 3)
    b = by_index(ss.SlipstreamLoader(ds, batch_size=13, num_threads=2, batches_ahead=1, **base), 3)
    assert a.keys() == b.keys()
    assert all(torch.equal(a[i], b[i]) for i in a)
    other_epoch = by_index(ss.SlipstreamLoader(ds, batch_size=4, **base), 4)
    assert not all(torch.equal(a[i], other_epoch[i]) for i in a)

    lo = ss.SlipstreamLoader(ds, batch_size=4, **base)
    lo.set_epoch(3)
    it = iter(lo)
    next(it), next(it)
    resumed = ss.SlipstreamLoader(ds, batch_size=4, **base)
    resumed.load_state_dict(lo.state_dict())
    for batch in resumed:
        for k, i in enumerate(batch["index"].tolist()):
            assert torch.equal(batch["image"][k], a[i])


def test_held_batches_keep_their_values(variants_dataset) -> None:
    ds, _ = variants_dataset
    lo = loader(ds, [ss.RandomResizedCrop(40), ss.Normalize()], batches_ahead=1)
    batches = list(lo) + list(lo)
    for epoch, batch in enumerate(batches):
        again = lo.load(batch["index"].tolist(), epoch=epoch // len(lo))
        assert torch.equal(batch["image"], again["image"])


# -- broken images ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def with_broken(
    photos: list[bytes], tmp_path_factory: pytest.TempPathFactory
) -> ss.SlipstreamDataset:
    images = list(photos[:12])
    images[5] = images[5][: len(images[5]) // 3]  # truncated JPEG
    images[9] = b"this is not an image at all"
    out = m.make_images(tmp_path_factory.mktemp("broken") / "ds", images)
    return ss.SlipstreamDataset(out, progress=False)


def test_broken_image_raises_naming_the_sample(with_broken: ss.SlipstreamDataset) -> None:
    lo = loader(with_broken, [ss.RandomResizedCrop(32)])
    with pytest.raises(
        ss.DecodeError, match=r"\(sample 5\): field 'image': JPEG data: Premature end"
    ):
        list(lo)
    assert "ds" in str(with_broken.header["source"]["path"])


def test_broken_images_can_be_skipped(with_broken: ss.SlipstreamDataset) -> None:
    lo = ss.SlipstreamLoader(
        with_broken,
        batch_size=4,
        shuffle=False,
        seed=1,
        on_error="skip",
        pipelines={"image": [ss.RandomResizedCrop(32)]},
    )
    batches = list(lo)
    indices = [i for b in batches for i in b["index"].tolist()]
    labels = [i for b in batches for i in b["label"].tolist()]
    assert len(indices) == 12 and 5 not in indices and 9 not in indices
    assert labels == indices, "a replacement brings its own label"
    assert lo.stats() == {"images": 12, "replaced": 2}
    again = ss.SlipstreamLoader(
        with_broken,
        batch_size=6,
        shuffle=False,
        seed=1,
        on_error="skip",
        pipelines={"image": [ss.RandomResizedCrop(32)]},
    )
    assert [i for b in again for i in b["index"].tolist()] == indices, "deterministic"
