"""Augmentation recipes as lists of stages: pass one to ``SlipstreamLoader(pipelines=...)``,
or read it and copy the stages you want to change.

Each function returns ``{output name: Pipeline}``. Self-supervised recipes give one output per
view when the views differ (``view_0``, ``view_1``, or ``global_0`` ...), and one output of
``[B, N, 3, H, W]`` for N alike views (``local``, ``crops``). Every view is drawn from the
loader's ``seed`` and (epoch, sample, view), on the CPU or the GPU alike. The dtype is the
loader's (``dtype="float16"`` for mixed precision).

Example:
    >>> import slipstream as ss
    >>> sorted(ss.presets.dino(local_views=6))
    ['global_0', 'global_1', 'local']
    >>> ss.presets.simclr()["views"].views
    2
"""

from __future__ import annotations

from typing import Any

from .augmentations import (
    ColorJitter,
    GaussianBlur,
    RandomApply,
    RandomErasing,
    RandomGrayscale,
    RandomSolarize,
)
from .transforms import (
    CenterCrop,
    Normalize,
    Pipeline,
    RandomHorizontalFlip,
    RandomResizedCrop,
)

Scale = tuple[float, float]


def _blur_kernel(size: int) -> int:
    """SimCLR's blur kernel: 10% of the view's side, made odd (23 for 224)."""
    k = max(3, int(0.1 * size))
    return k + 1 - k % 2


def _ssl_view(
    size: int,
    scale: Scale,
    *,
    jitter: tuple[float, float, float, float] = (0.4, 0.4, 0.2, 0.1),
    blur: float,
    solarize: float = 0.0,
    blur_kernel: int | None = None,
) -> list[Any]:
    """The BYOL/DINO view: crop, flip, colour jitter (p=0.8), grayscale (p=0.2), blur with
    probability ``blur``, solarize with probability ``solarize``, normalize."""
    kernel = blur_kernel or _blur_kernel(size)
    stages: list[Any] = [
        RandomResizedCrop(size, scale=scale),
        RandomHorizontalFlip(),
        RandomApply([ColorJitter(*jitter)], p=0.8),
        RandomGrayscale(p=0.2),
    ]
    if blur > 0:
        stages.append(RandomApply([GaussianBlur(kernel, sigma=(0.1, 2.0))], p=blur))
    if solarize > 0:
        stages.append(RandomSolarize(128, p=solarize))
    return [*stages, Normalize()]


def supervised_train(size: int = 224, style: str = "resnet") -> dict[str, Pipeline]:
    """ImageNet training. ``style="resnet"`` (torchvision's reference recipe):
    RandomResizedCrop, horizontal flip, normalize. ``style="timm"`` resizes bicubic and adds
    timm's ``ColorJitter(0.4, 0.4, 0.4)`` and, after normalizing, its random erasing
    (``RandomErasing(p=0.25, value="random")``, timm's per-pixel mode)
    (timm's RandAugment is not part of it; for its Mixup/CutMix, pass
    ``after_batch_transforms=[RandomChoice([MixUp(0.8, ...), CutMix(1.0, ...)])]``).

    Example:
        >>> [type(s).__name__ for s in supervised_train(style="timm")["image"].stages]
        ['RandomResizedCrop', 'RandomHorizontalFlip', 'ColorJitter', 'Normalize', 'RandomErasing']
    """
    interpolation = "bicubic" if style == "timm" else "bilinear"
    stages: list[Any] = [
        RandomResizedCrop(size, interpolation=interpolation),
        RandomHorizontalFlip(),
    ]
    if style == "timm":
        stages += [ColorJitter(0.4, 0.4, 0.4), Normalize(), RandomErasing(0.25, value="random")]
    elif style == "resnet":
        stages.append(Normalize())
    else:
        raise ValueError(f"style={style!r}: 'resnet' or 'timm'")
    return {"image": Pipeline(stages, field="image")}


def supervised_val(
    size: int = 224, crop_fraction: float = 0.875, interpolation: str = "bilinear"
) -> dict[str, Pipeline]:
    """ImageNet evaluation: the shorter side resized to ``size / crop_fraction`` (256 for 224;
    ``interpolation="bicubic"`` for timm's models), the central ``size`` square, normalize."""
    resize = round(size / crop_fraction)
    crop = CenterCrop(size, resize=resize, interpolation=interpolation)
    return {"image": Pipeline([crop, Normalize()], field="image")}


def simclr(size: int = 224, strength: float = 1.0) -> dict[str, Pipeline]:
    """SimCLR (Chen et al., 2020): two alike views, ``views`` ``[B, 2, 3, H, W]``; crop,
    flip, ColorJitter(0.8s, 0.8s, 0.8s, 0.2s) with p=0.8, grayscale p=0.2, blur (kernel 10%
    of the side) with p=0.5, normalize."""
    s = strength
    stages = [
        RandomResizedCrop(size),
        RandomHorizontalFlip(),
        RandomApply([ColorJitter(0.8 * s, 0.8 * s, 0.8 * s, 0.2 * s)], p=0.8),
        RandomGrayscale(p=0.2),
        RandomApply([GaussianBlur(_blur_kernel(size), sigma=(0.1, 2.0))], p=0.5),
        Normalize(),
    ]
    return {"views": Pipeline(stages, field="image", views=2)}


def byol(size: int = 224) -> dict[str, Pipeline]:
    """BYOL (Grill et al., 2020): two views that differ, ``view_0`` (blur always) and
    ``view_1`` (blur p=0.1, solarize p=0.2); both crop, flip, ColorJitter(0.4, 0.4, 0.2, 0.1)
    with p=0.8, grayscale p=0.2, normalize."""
    full = (0.08, 1.0)
    return {
        "view_0": Pipeline(_ssl_view(size, full, blur=1.0), field="image"),
        "view_1": Pipeline(_ssl_view(size, full, blur=0.1, solarize=0.2), field="image"),
    }


def dino(
    global_views: int = 2,
    local_views: int = 8,
    global_size: int = 224,
    local_size: int = 96,
    global_scale: Scale = (0.4, 1.0),
    local_scale: Scale = (0.05, 0.4),
) -> dict[str, Pipeline]:
    """DINO (Caron et al., 2021) multi-crop: global views ``global_0`` (blur always),
    ``global_1`` ... (blur p=0.1, solarize p=0.2) as BYOL's two, and ``local``
    ``[B, local_views, 3, 96, 96]`` (blur p=0.5)."""
    out = {
        f"global_{i}": Pipeline(
            _ssl_view(global_size, global_scale, blur=1.0)
            if i == 0
            else _ssl_view(global_size, global_scale, blur=0.1, solarize=0.2),
            field="image",
        )
        for i in range(global_views)
    }
    if local_views:
        stages = _ssl_view(local_size, local_scale, blur=0.5)
        out["local"] = Pipeline(stages, field="image", views=local_views)
    return out


def ipcl(
    num_crops: int = 5,
    size: int = 224,
    scale: Scale = (0.2, 1.0),
    ratio: Scale = (1.0, 1.0),
) -> dict[str, Pipeline]:
    """Upstream slipstream's ``ipcl``: ``crops`` ``[B, num_crops, 3, H, W]``, alike: crop
    (square by default), flip, ColorJitter(0.4, 0.4, 0.4, 0.1) with p=0.8, grayscale p=0.2,
    solarize p=0.2, blur (7 taps) with p=0.2, normalize. Upstream blurs after normalizing and
    with a bank of ten sigmas; here the blur comes before (stages act on 8-bit pixels) and its
    sigma is drawn from (0.1, 2.0)."""
    stages = [
        RandomResizedCrop(size, scale=scale, ratio=ratio),
        RandomHorizontalFlip(),
        RandomApply([ColorJitter(0.4, 0.4, 0.4, 0.1)], p=0.8),
        RandomGrayscale(p=0.2),
        RandomSolarize(128, p=0.2),
        RandomApply([GaussianBlur(7, sigma=(0.1, 2.0))], p=0.2),
        Normalize(),
    ]
    return {"crops": Pipeline(stages, field="image", views=num_crops)}


def multicrop(
    global_crops: int = 2,
    local_crops: int = 4,
    global_size: int = 224,
    local_size: int = 96,
    global_scale: Scale = (0.4, 1.0),
    local_scale: Scale = (0.05, 0.4),
) -> dict[str, Pipeline]:
    """Upstream slipstream's ``multicrop``: every crop flipped, ColorJitter(0.4, 0.4, 0.4,
    0.1) with p=0.8, grayscale p=0.2, blur (7 taps; upstream's 6 is even) with p=0.5,
    normalize; the global crops after the first also solarized with p=0.2. Outputs
    ``global_0``, ``global_1``, ... and ``local`` ``[B, local_crops, 3, H, W]``."""

    def view(size: int, scale: Scale, solarize: float) -> list[Any]:
        jitter = (0.4, 0.4, 0.4, 0.1)
        return _ssl_view(size, scale, jitter=jitter, blur=0.5, solarize=solarize, blur_kernel=7)

    out = {
        f"global_{i}": Pipeline(view(global_size, global_scale, 0.2 if i else 0.0), field="image")
        for i in range(global_crops)
    }
    if local_crops:
        out["local"] = Pipeline(
            view(local_size, local_scale, 0.0), field="image", views=local_crops
        )
    return out


__all__ = ["byol", "dino", "ipcl", "multicrop", "simclr", "supervised_train", "supervised_val"]
