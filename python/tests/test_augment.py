"""Photometric stages and erasing on the CPU against torchvision v2, on realistic photographs.

The views use an identity geometry (a CenterCrop the size of the image, stored as PNG so the
decoded pixels are exact), so each output is the stage applied to the decoded image and can
be compared with torchvision's functional operation given the parameters slipstream drew
(`get_params`). Tolerances are stated per test, on the uint8 scale.
"""

from __future__ import annotations

import io

import litdata_datasets as m
import numpy as np
import pytest
import slipstream as ss
import torch
from PIL import Image
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as F

SIZE = 192


@pytest.fixture(scope="module")
def squares(demo_dataset: ss.SlipstreamDataset, tmp_path_factory: pytest.TempPathFactory):
    """Eight demo photographs cut to SIZE x SIZE, stored losslessly, and their pixels."""
    images, pixels = [], []
    for i in range(8):
        rgb = ss.decode_image(demo_dataset[i]["image"])[:SIZE, :SIZE]
        buffer = io.BytesIO()
        Image.fromarray(rgb).save(buffer, format="PNG")
        images.append(buffer.getvalue())
        pixels.append(torch.from_numpy(rgb.copy()).permute(2, 0, 1))
    out = m.make_images(tmp_path_factory.mktemp("squares") / "ds", images)
    return ss.SlipstreamDataset(out, progress=False), torch.stack(pixels)


def run(ds: ss.SlipstreamDataset, stages: list, seed: int = 3) -> torch.Tensor:
    loader = ss.SlipstreamLoader(
        ds,
        batch_size=8,
        shuffle=False,
        seed=seed,
        pipelines={"image": [ss.CenterCrop(SIZE), *stages]},
    )
    return next(iter(loader))["image"]


def replay(image: torch.Tensor, ops: list) -> torch.Tensor:
    """torchvision's functional operations with slipstream's drawn parameters."""
    for name, value in ops:
        if name == "brightness":
            image = F.adjust_brightness(image, value)
        elif name == "contrast":
            image = F.adjust_contrast(image, value)
        elif name == "saturation":
            image = F.adjust_saturation(image, value)
        elif name == "hue":
            image = F.adjust_hue(image, value)
        elif name == "grayscale":
            image = F.rgb_to_grayscale(image, num_output_channels=3)
        elif name == "solarize":
            image = F.solarize(image, value)
        elif name == "gaussian_blur":
            image = F.gaussian_blur(image, [23, 23], [value, value])
        else:
            raise AssertionError(name)
    return image


def differences(ours: torch.Tensor, ref: torch.Tensor) -> tuple[float, int]:
    d = (ours.int() - ref.int()).abs()
    return float(d.float().mean()), int(d.max())


@pytest.mark.parametrize(
    ("stage", "mean_abs", "max_abs"),
    [
        (ss.ColorJitter(brightness=(0.6, 0.6)), 0.0, 0),
        (ss.ColorJitter(brightness=(1.45, 1.45)), 0.0, 0),
        (ss.ColorJitter(contrast=(0.5, 0.5)), 0.01, 1),
        (ss.ColorJitter(contrast=(1.6, 1.6)), 0.01, 1),
        (ss.ColorJitter(saturation=(0.0, 0.0)), 0.01, 1),
        (ss.ColorJitter(saturation=(1.7, 1.7)), 0.01, 1),
        (ss.ColorJitter(hue=(-0.4, -0.4)), 0.01, 1),
        (ss.ColorJitter(hue=(0.25, 0.25)), 0.01, 1),
        (ss.RandomGrayscale(p=1.0), 0.01, 1),
        (ss.RandomSolarize(128, p=1.0), 0.0, 0),
        (ss.GaussianBlur(23, sigma=(0.4, 0.4)), 0.01, 1),
        (ss.GaussianBlur(23, sigma=(2.0, 2.0)), 0.01, 1),
    ],
)
def test_each_operation_matches_torchvision(squares, stage, mean_abs, max_abs) -> None:
    ds, pixels = squares
    ours = run(ds, [stage])
    for i in range(len(pixels)):
        ops = stage.get_params(seed=3, epoch=0, index=i) if hasattr(stage, "get_params") else []
        ops = ops if isinstance(ops, list) else [("grayscale", None)] if ops else []
        if isinstance(stage, ss.GaussianBlur):
            ops = [("gaussian_blur", stage.get_params(seed=3, epoch=0, index=i))]
        if isinstance(stage, ss.RandomSolarize):
            ops = [("solarize", 128.0)]
        mean, worst = differences(ours[i], replay(pixels[i], ops))
        assert mean <= mean_abs and worst <= max_abs, f"{stage} image {i}: {mean:.4f} {worst}"


def test_simclr_chain_matches_torchvision_with_the_drawn_parameters(squares) -> None:
    """Random order and factors per view, replayed through torchvision: the chain compounds
    the one-level rounding differences of single operations (a value one level apart before
    a contrast of 1.4 and a brightness of 1.4 is two or three apart after), so: mean <= 0.05,
    at most 0.1% of values more than one level apart, none more than 4."""
    ds, pixels = squares
    pipeline = [
        ss.RandomApply([ss.ColorJitter(0.4, 0.4, 0.4, 0.1)], p=0.8),
        ss.RandomGrayscale(p=0.2),
        ss.RandomApply([ss.GaussianBlur(23)], p=0.5),
        ss.RandomSolarize(128, p=0.2),
    ]
    for seed in range(3):
        ours = run(ds, pipeline, seed=seed)
        for i in range(len(pixels)):
            ops = ss.Pipeline([ss.CenterCrop(SIZE), *pipeline]).get_params(
                SIZE, SIZE, seed=seed, epoch=0, index=i
            )["photometric"]
            ref = replay(pixels[i], ops)
            mean, worst = differences(ours[i], ref)
            far = float(((ours[i].int() - ref.int()).abs() > 1).float().mean())
            assert mean <= 0.05 and far <= 0.001 and worst <= 4, (
                f"seed {seed} image {i} {ops}: {mean} {far} {worst}"
            )


def test_erasing_after_normalize_is_torchvisions(squares) -> None:
    ds, pixels = squares
    erase = ss.RandomErasing(p=1.0, value=0.0)
    stages = [ss.RandomHorizontalFlip(), ss.Normalize(), erase]
    ours = run(ds, stages, seed=1)
    pipeline = ss.Pipeline([ss.CenterCrop(SIZE), *stages])
    for i in range(len(pixels)):
        drawn = pipeline.get_params(SIZE, SIZE, seed=1, epoch=0, index=i)
        image = pixels[i].flip(-1) if drawn["flip"] else pixels[i]
        ref = F.normalize(
            F.to_dtype(image, torch.float32, scale=True), ss.IMAGENET_MEAN, ss.IMAGENET_STD
        )
        assert drawn["erase"] is not None
        top, left, h, w = drawn["erase"]
        ref = F.erase(ref, top, left, h, w, torch.tensor([0.0])[:, None, None])
        assert torch.allclose(ours[i], ref, atol=1e-6), i
        assert (ours[i][:, top : top + h, left : left + w] == 0).all()


def test_random_erasing_fills_the_box_with_standard_normal_noise(squares) -> None:
    """torchvision's value="random": every erased element N(0, 1) in normalized units, the
    rest of the view as without the stage; the noise belongs to the view (the same in every
    run, different between views) and moves with the box when the view is flipped after it."""
    ds, pixels = squares
    erase = ss.RandomErasing(p=1.0, value="random")
    plain = run(ds, [ss.Normalize()], seed=2)
    flip = ss.RandomHorizontalFlip(p=1.0)
    for before_flip in (False, True):
        # Erased before the flip, the box and its noise are mirrored with the view.
        stages = [ss.Normalize(), erase, flip] if before_flip else [flip, ss.Normalize(), erase]
        ours = run(ds, stages, seed=2)
        assert torch.equal(ours, run(ds, stages, seed=2))
        noise = []
        for i in range(len(pixels)):
            top, left, h, w = ss.Pipeline([ss.CenterCrop(SIZE), *stages]).get_params(
                SIZE, SIZE, seed=2, epoch=0, index=i
            )["erase"]
            inside = torch.zeros(SIZE, SIZE, dtype=torch.bool)
            inside[top : top + h, left : left + w] = True
            if before_flip:
                inside = inside.flip(-1)
            assert torch.equal(ours[i][:, ~inside], plain[i].flip(-1)[:, ~inside])
            noise.append(ours[i][:, inside].flatten())
        z = torch.cat(noise).numpy()
        assert abs(z.mean()) < 0.02 and abs(z.std() - 1) < 0.02, (z.mean(), z.std())
        assert ks_statistic(z, np.random.default_rng(0).standard_normal(len(z))) < 0.01
        assert not torch.equal(noise[0][:50], noise[1][:50])


def ks_statistic(a, b) -> float:
    a, b = np.sort(a), np.sort(b)
    grid = np.concatenate([a, b])
    cdf = lambda x: np.searchsorted(x, grid, side="right") / len(x)  # noqa: E731
    return float(np.max(np.abs(cdf(a) - cdf(b))))


def test_parameters_follow_torchvisions_sampling() -> None:
    """10,000 draws each against torchvision's own make_params: the order of ColorJitter's
    operations is uniform over the 24 permutations, each factor uniform in its range, the
    erasing boxes distributed as torchvision's (KS statistic < 0.03, well above the 0.019
    critical value at 1% for two samples of 10,000)."""
    n = 10_000
    jitter = ss.ColorJitter(0.4, 0.4, 0.4, 0.1)
    draws = [jitter.get_params(seed=9, epoch=0, index=i) for i in range(n)]
    orders = [tuple(name for name, _ in d) for d in draws]
    counts = np.array([orders.count(o) for o in set(orders)])
    assert len(counts) == 24
    expected = n / 24
    assert ((counts - expected) ** 2 / expected).sum() < 49.7  # chi-square, 23 dof, p = 0.001
    torch.manual_seed(0)
    tv = v2.ColorJitter(0.4, 0.4, 0.4, 0.1)
    theirs = [tv.make_params([]) for _ in range(n)]
    for name, key in [("brightness", "brightness_factor"), ("hue", "hue_factor")]:
        ours = [dict(d)[name] for d in draws]
        assert ks_statistic(ours, [t[key] for t in theirs]) < 0.03, name

    image = torch.zeros(3, 224, 224)
    erasing = ss.RandomErasing(p=1.0)
    ours = [erasing.get_params(224, 224, seed=2, epoch=0, index=i) for i in range(n)]
    tv_erase = v2.RandomErasing(p=1.0)
    theirs = [tv_erase.make_params([image]) for _ in range(n)]
    for k, key in enumerate("ijhw"):
        a = [o[k] for o in ours if o is not None]
        b = [t[key] for t in theirs if t["v"] is not None]
        assert ks_statistic(a, b) < 0.03, key

    grey = ss.RandomGrayscale(p=0.2)
    share = sum(grey.get_params(seed=4, epoch=0, index=i) for i in range(n)) / n
    assert 0.185 < share < 0.215, share


def test_draws_are_per_sample_view_and_epoch() -> None:
    jitter = ss.ColorJitter(0.4, 0.4, 0.4, 0.1)
    a = jitter.get_params(seed=1, epoch=0, index=5)
    assert a == jitter.get_params(seed=1, epoch=0, index=5)
    assert a != jitter.get_params(seed=1, epoch=0, index=5, view=1)
    assert a != jitter.get_params(seed=1, epoch=1, index=5)


def test_outputs_do_not_depend_on_batch_size_or_threads(squares) -> None:
    ds, _ = squares
    stages = [ss.RandomApply([ss.ColorJitter(0.4, 0.4, 0.4, 0.1)], p=0.8), ss.GaussianBlur(9)]

    def images(**kw) -> torch.Tensor:
        loader = ss.SlipstreamLoader(
            ds, shuffle=False, seed=7, pipelines={"image": [ss.CenterCrop(SIZE), *stages]}, **kw
        )
        return torch.cat([b["image"] for b in loader])

    assert torch.equal(images(batch_size=8), images(batch_size=3, num_threads=1))


def test_misplaced_or_wrong_stages_are_config_errors(squares) -> None:
    ds, _ = squares
    with pytest.raises(ss.ConfigError, match="before Normalize"):
        run(ds, [ss.Normalize(), ss.RandomGrayscale(0.5)])
    with pytest.raises(ss.ConfigError, match="0-255"):
        ss.RandomSolarize(0.5)
    with pytest.raises(ss.ConfigError, match="odd"):
        ss.GaussianBlur(4)
    with pytest.raises(ss.ConfigError, match="RandomApply"):
        ss.ColorJitter(p=0.8, value=0.4)
    with pytest.raises(ss.ConfigError, match="hue"):
        ss.ColorJitter(hue=0.7)
    with pytest.raises(ss.ConfigError, match="after Normalize"):
        run(ds, [ss.RandomErasing(value="random"), ss.Normalize()])
    with pytest.raises(ss.ConfigError, match="noise"):
        ss.RandomErasing(value="noise")
