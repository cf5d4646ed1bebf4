"""Image pipeline stages: torchvision's training and evaluation transforms, run fused in Rust.

A pipeline is a list of stages applied to one image field:

- one geometry stage first: :class:`RandomResizedCrop` (training) or :class:`CenterCrop`
  (evaluation, optionally after resizing the shorter side);
- optionally :class:`RandomHorizontalFlip` and :class:`Normalize`.

``SlipstreamLoader(..., pipelines={"image": [RandomResizedCrop(224),
RandomHorizontalFlip(), Normalize()]})`` then yields ``batch["image"]`` as a ``[B, 3, 224, 224]``
tensor. :class:`Pipeline` names the source field and asks for several views of each image.
Every random choice depends only on (seed, epoch, sample index, view): ``get_params`` shows it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from . import _native
from .errors import ConfigError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def _size(size: int | Sequence[int]) -> tuple[int, int]:
    if isinstance(size, int):
        return (size, size)
    h, w = (int(s) for s in size)
    return (h, w)


@dataclass(frozen=True)
class RandomResizedCrop:
    """torchvision's ``RandomResizedCrop(size, scale, ratio, antialias=True)``.

    A crop with area ``scale`` times the image's and aspect ratio log-uniform in ``ratio``
    (ten tries, then the central crop), resized to ``size`` with antialiased bilinear
    filtering.

    Example:
        >>> crop = RandomResizedCrop(224)
        >>> crop.get_params(375, 500, seed=0, epoch=0, index=7)
        (2, 75, 370, 425)
    """

    size: int | Sequence[int]
    scale: tuple[float, float] = (0.08, 1.0)
    ratio: tuple[float, float] = (3 / 4, 4 / 3)

    def get_params(
        self, height: int, width: int, *, seed: int, epoch: int, index: int, view: int = 0
    ) -> tuple[int, int, int, int]:
        """``(top, left, height, width)`` of the crop slipstream takes for this view."""
        return _native.random_resized_crop_params(
            seed, epoch, index, view, height, width, tuple(self.scale), tuple(self.ratio)
        )

    def _geometry(self) -> dict[str, Any]:
        h, w = _size(self.size)
        return {
            "kind": "random_resized_crop",
            "height": h,
            "width": w,
            "scale": [float(s) for s in self.scale],
            "ratio": [float(r) for r in self.ratio],
        }


@dataclass(frozen=True)
class CenterCrop:
    """torchvision's ``Resize(resize)`` (shorter side, antialiased) then ``CenterCrop(size)``.

    ``CenterCrop(224, resize=256)`` is the standard ImageNet evaluation transform.
    """

    size: int | Sequence[int]
    resize: int | None = None

    def _geometry(self) -> dict[str, Any]:
        h, w = _size(self.size)
        return {"kind": "center_crop", "height": h, "width": w, "resize": self.resize}


@dataclass(frozen=True)
class RandomHorizontalFlip:
    """Flip left-right with probability ``p``.

    Example:
        >>> RandomHorizontalFlip().get_params(seed=0, epoch=0, index=3)
        True
    """

    p: float = 0.5

    def get_params(self, *, seed: int, epoch: int, index: int, view: int = 0) -> bool:
        """Whether slipstream flips this view."""
        return _native.flip_param(seed, epoch, index, view, float(self.p))


@dataclass(frozen=True)
class Normalize:
    """Scale to [0, 1], then ``(x - mean) / std`` per channel (torchvision's ``ToDtype(...,
    scale=True)`` then ``Normalize(mean, std)``)."""

    mean: Sequence[float] = IMAGENET_MEAN
    std: Sequence[float] = IMAGENET_STD


@dataclass(frozen=True)
class Pipeline:
    """Stages for one output, read from ``field`` (default: the output's own name), with
    ``views`` independent random views of each image (the output is then
    ``[B, views, 3, H, W]``). Several outputs may read one field; the image is decoded once.

    Example:
        >>> dino = {"global": Pipeline([RandomResizedCrop(224, scale=(0.4, 1.0))],
        ...                            field="image", views=2),
        ...         "local": Pipeline([RandomResizedCrop(96, scale=(0.05, 0.4))],
        ...                           field="image", views=6)}
    """

    stages: Sequence[Any]
    field: str | None = None
    views: int = 1


def pipeline_spec(
    name: str,
    pipeline: Pipeline | Sequence[Any],
    *,
    dtype: str | None,
    memory_format: str,
    reduced_decode: bool,
) -> dict[str, Any]:
    """The JSON object the native loader takes for one pipeline."""
    if not isinstance(pipeline, Pipeline):
        pipeline = Pipeline(list(pipeline))
    stages = list(pipeline.stages)
    if not stages or not isinstance(stages[0], RandomResizedCrop | CenterCrop):
        raise ConfigError(
            f"pipeline '{name}' must start with RandomResizedCrop or CenterCrop (every image "
            "of a batch needs the same size)"
        )
    flip = 0.0
    normalize = None
    for stage in stages[1:]:
        if isinstance(stage, RandomHorizontalFlip) and flip == 0.0:
            flip = float(stage.p)
        elif isinstance(stage, Normalize) and normalize is None:
            mean, std = [float(m) for m in stage.mean], [float(s) for s in stage.std]
            if len(mean) != 3 or len(std) != 3:
                raise ConfigError(f"pipeline '{name}': Normalize needs 3 means and 3 stds")
            if not all(math.isfinite(v) for v in mean + std):
                raise ConfigError(f"pipeline '{name}': Normalize values must be finite")
            normalize = [mean, std]
        else:
            raise ConfigError(
                f"pipeline '{name}': {stage!r} is not supported here (after the geometry "
                "stage: at most one RandomHorizontalFlip and one Normalize)"
            )
    if dtype is None:
        dtype = "float32" if normalize is not None else "uint8"
    return {
        "name": name,
        "field": pipeline.field or name,
        "views": int(pipeline.views),
        "geometry": stages[0]._geometry(),
        "flip": flip,
        "normalize": normalize,
        "dtype": dtype,
        "memory_format": memory_format,
        "reduced_decode": bool(reduced_decode),
    }


MAX_IMAGE_PIXELS: int = _native.MAX_IMAGE_PIXELS
"""The default ``max_image_pixels``: twice Pillow's ``Image.MAX_IMAGE_PIXELS``, where Pillow
raises its ``DecompressionBombError``."""


def decode_image(
    data: bytes,
    max_image_pixels: int | None = MAX_IMAGE_PIXELS,
    load_truncated_images: bool = False,
) -> Any:
    """Decode a JPEG or PNG to a ``uint8`` numpy array ``[H, W, 3]`` (RGB), with the decoder
    the CPU pipeline uses (libjpeg-turbo; grayscale and CMYK come out as RGB). Raises
    :class:`DecodeError` for a damaged image, a JPEG cut short (unless
    ``load_truncated_images``) or one larger than ``max_image_pixels`` (``None``: any size),
    as :class:`SlipstreamLoader` treats them.

    Example:
        >>> decode_image(demo_dataset[0]["image"]).shape
        (500, 375, 3)
        >>> from slipstream import DecodeError
        >>> try:
        ...     decode_image(demo_dataset[0]["image"], max_image_pixels=1000)
        ... except DecodeError as e:
        ...     print(str(e)[:48])
        the image claims 375x500 = 187500 pixels, more t
    """
    import numpy

    height, width, rgb = _native.decode_image(
        data,
        max_image_pixels=None if max_image_pixels is None else int(max_image_pixels),
        load_truncated_images=bool(load_truncated_images),
    )
    return numpy.frombuffer(rgb, dtype=numpy.uint8).reshape(height, width, 3).copy()
