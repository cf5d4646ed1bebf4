"""Upstream slipstream's presets (``slipstream.pipelines``), as slipstream stages: each returns
``{"image": [stages]}`` for ``SlipstreamLoader(pipelines=...)``.

``supervised_train`` adds the random horizontal flip upstream's leaves out (every ImageNet
recipe flips). Upstream's self-supervised presets return per-view lists of upstream stages;
slipstream's are in :mod:`slipstream.presets` (``simclr``, ``byol``, ``dino``, ``ipcl``,
``multicrop``, with one output per kind of view): the names here raise an error that says so.
"""

from __future__ import annotations

from typing import Any

from . import _upstream
from .transforms import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    CenterCrop,
    Normalize,
    RandomHorizontalFlip,
    RandomResizedCrop,
    ToTorchImage,
)
from .transforms import _upstream_options as _check_upstream_options

_SSL = {
    "simclr": "slipstream.presets.simclr() (both views in batch['views'], [B, 2, 3, H, W])",
    "simclr_symmetric": "slipstream.presets.simclr()",
    "simclr_standard": "slipstream.presets.simclr()",
    "ipcl": "slipstream.presets.ipcl() (the crops in batch['crops'], [B, N, 3, H, W])",
    "multicrop": "slipstream.presets.multicrop() (batch['global_0'], ..., batch['local'])",
    "lejepa": "slipstream.presets.multicrop() (batch['global_0'], ..., batch['local'])",
}
__getattr__ = _upstream.module_getattr(
    __name__,
    {
        name: f"slipstream.pipelines.{name}: its views come as separate outputs here; use "
        f"pipelines={instead}"
        for name, instead in _SSL.items()
    },
)


def _tail(device: Any, dtype: Any, normalize: bool) -> list[Any]:
    stages: list[Any] = [ToTorchImage(device, dtype)]
    if normalize:
        stages.append(Normalize(IMAGENET_MEAN, IMAGENET_STD))
    return stages


def supervised_train(
    size: int = 224,
    seed: None = None,
    device: Any = None,
    dtype: Any = "float16",
    normalize: bool = True,
    num_threads: int = 0,
) -> dict[str, list[Any]]:
    """ImageNet training: RandomResizedCrop(size), a random horizontal flip, then ``dtype``
    (upstream's default float16) in [0, 1], normalized with ImageNet's mean and std.
    ``device=None`` leaves the choice to the loader. Seeds come from the loader's ``seed``.

    Example:
        >>> [type(s).__name__ for s in supervised_train(224)["image"]]
        ['RandomResizedCrop', 'RandomHorizontalFlip', 'ToTorchImage', 'Normalize']
    """
    _check_upstream_options(RandomResizedCrop(size), seed=seed, num_threads=num_threads)
    return {
        "image": [
            RandomResizedCrop(size, device=device),
            RandomHorizontalFlip(),
            *_tail(device, dtype, normalize),
        ]
    }


def supervised_val(
    size: int = 224,
    device: Any = None,
    dtype: Any = "float16",
    normalize: bool = True,
    num_threads: int = 0,
) -> dict[str, list[Any]]:
    """ImageNet evaluation: the shorter side resized to 256 (``size / 0.875``, which is 256
    for 224), the central ``size`` square, then as :func:`supervised_train`.

    Example:
        >>> crop = supervised_val(224)["image"][0]
        >>> crop.size, crop.resize
        (224, 256)
    """
    _check_upstream_options(CenterCrop(size), num_threads=num_threads)
    resize = round(size / 0.875)
    return {
        "image": [CenterCrop(size, resize=resize, device=device), *_tail(device, dtype, normalize)]
    }


def make_train_pipeline(
    size: int = 224,
    scale: tuple[float, float] = (0.08, 1.0),
    ratio: tuple[float, float] = (3 / 4, 4 / 3),
    normalize: bool = True,
    mean: Any = IMAGENET_MEAN,
    std: Any = IMAGENET_STD,
    num_threads: int = 0,
    seed: None = None,
    dtype: Any = "float16",
) -> list[Any]:
    """Upstream's older training preset, a list of stages: ``pipelines={"image":
    make_train_pipeline()}`` (no flip, as upstream's)."""
    _check_upstream_options(RandomResizedCrop(size), seed=seed, num_threads=num_threads)
    stages: list[Any] = [RandomResizedCrop(size, scale, ratio), ToTorchImage("cpu", dtype)]
    return stages + ([Normalize(mean, std)] if normalize else [])


def make_val_pipeline(
    size: int = 224,
    normalize: bool = True,
    mean: Any = IMAGENET_MEAN,
    std: Any = IMAGENET_STD,
    num_threads: int = 0,
    dtype: Any = "float16",
) -> list[Any]:
    """Upstream's older evaluation preset: the central ``size`` square, on the CPU."""
    _check_upstream_options(CenterCrop(size), num_threads=num_threads)
    stages: list[Any] = [CenterCrop(size), ToTorchImage("cpu", dtype)]
    return stages + ([Normalize(mean, std)] if normalize else [])


__all__ = ["make_train_pipeline", "make_val_pipeline", "supervised_train", "supervised_val"]
