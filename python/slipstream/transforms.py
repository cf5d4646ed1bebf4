"""Image pipeline stages: torchvision's training and evaluation transforms, run fused in Rust.

A pipeline is a list of stages applied to one image field:

- one geometry stage first: :class:`RandomResizedCrop` (training) or :class:`CenterCrop`
  (evaluation, optionally after resizing the shorter side);
- optionally :class:`RandomHorizontalFlip`, :class:`ToTorchImage` and :class:`Normalize`.

``SlipstreamLoader(..., pipelines={"image": [RandomResizedCrop(224),
RandomHorizontalFlip(), Normalize()]})`` then yields ``batch["image"]`` as a ``[B, 3, 224, 224]``
tensor. :class:`Pipeline` names the source field and asks for several views of each image.
Every random choice depends only on (seed, epoch, sample index, view): ``get_params`` shows it.
A stage's ``device=`` ("cpu", "cuda", "cuda:N") says where its pipeline runs, like the
loader's ``device=``. Upstream slipstream's stage names (``DecodeRandomResizedCrop``,
``DecodeCenterCrop``, ``DecodeResizeCrop``/``ResizeCrop``, ``ToTorchImage``) map onto these
(docs/MIGRATING.md).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from . import _native, _upstream
from ._cuda import parse_device
from .augmentations import PHOTOMETRIC, RandomErasing
from .augmentations import ColorJitter as ColorJitter  # upstream's import path
from .augmentations import GaussianBlur as GaussianBlur
from .augmentations import Grayscale as Grayscale
from .augmentations import RandomApply as RandomApply
from .augmentations import RandomGrayscale as RandomGrayscale
from .augmentations import RandomSolarize as RandomSolarize
from .errors import ConfigError

# Upstream slipstream's other transforms: an error that says what to use instead.
__getattr__ = _upstream.module_getattr(__name__)

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def _size(size: int | Sequence[int]) -> tuple[int, int]:
    if isinstance(size, int):
        return (size, size)
    h, w = (int(s) for s in size)
    return (h, w)


def _filter(interpolation: Any, antialias: bool) -> str:
    """The resize filter's name for the native pipeline: ``"bilinear"`` or ``"bicubic"``
    (strings or torchvision's ``InterpolationMode``); ``antialias`` must be a bool."""
    name = str(getattr(interpolation, "value", interpolation)).lower()
    if name not in ("bilinear", "bicubic"):
        raise ConfigError(
            f"interpolation={interpolation!r}: slipstream resizes with 'bilinear' or 'bicubic'"
        )
    if not isinstance(antialias, bool):
        raise ConfigError(f"antialias={antialias!r}: True (the default) or False")
    return name


@dataclass(frozen=True)
class RandomResizedCrop:
    """torchvision's ``RandomResizedCrop(size, scale, ratio, interpolation, antialias=True)``.

    A crop with area ``scale`` times the image's and aspect ratio log-uniform in ``ratio``
    (ten tries, then the central crop), resized to ``size`` with ``interpolation``:
    ``"bilinear"`` (default) or ``"bicubic"`` (or torchvision's ``InterpolationMode``),
    antialiased unless ``antialias=False`` (then as torch's ``interpolate``, a = -0.75 for
    bicubic, and the decode is never DCT-reduced).

    Example:
        >>> crop = RandomResizedCrop(224)
        >>> crop.get_params(375, 500, seed=0, epoch=0, index=7)
        (2, 75, 370, 425)
    """

    size: int | Sequence[int]
    scale: tuple[float, float] = (0.08, 1.0)
    ratio: tuple[float, float] = (3 / 4, 4 / 3)
    interpolation: Any = "bilinear"
    antialias: bool = True
    device: Any = field(default=None, kw_only=True)
    """Where the pipeline runs (``"cpu"``, ``"cuda"``, ``"cuda:N"``); ``None``: the loader's."""

    def __post_init__(self) -> None:
        _filter(self.interpolation, self.antialias)

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
    """torchvision's ``Resize(resize, interpolation, antialias=True)`` (shorter side) then
    ``CenterCrop(size)``; ``interpolation`` as :class:`RandomResizedCrop`'s.

    ``CenterCrop(224, resize=256)`` is the standard ImageNet evaluation transform (timm's
    evaluation: ``interpolation="bicubic"``).
    """

    size: int | Sequence[int]
    resize: int | None = None
    interpolation: Any = "bilinear"
    antialias: bool = True
    device: Any = field(default=None, kw_only=True)
    """Where the pipeline runs (``"cpu"``, ``"cuda"``, ``"cuda:N"``); ``None``: the loader's."""

    def __post_init__(self) -> None:
        _filter(self.interpolation, self.antialias)

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
    seed: None = None
    """Upstream slipstream's per-stage seed: only ``None`` (``SlipstreamLoader(seed=)`` seeds
    every stage)."""
    device: Any = field(default=None, kw_only=True)
    """Where the pipeline runs (``"cpu"``, ``"cuda"``, ``"cuda:N"``); ``None``: the loader's."""

    def __post_init__(self) -> None:
        _upstream_options(self, seed=self.seed)

    def get_params(self, *, seed: int, epoch: int, index: int, view: int = 0) -> bool:
        """Whether slipstream flips this view."""
        return _native.flip_param(seed, epoch, index, view, float(self.p))


@dataclass(frozen=True)
class Normalize:
    """Scale to [0, 1], then ``(x - mean) / std`` per channel (torchvision's ``ToDtype(...,
    scale=True)`` then ``Normalize(mean, std)``), so ``mean`` and ``std`` are on the [0, 1]
    scale, as torchvision's: values on the 0-255 scale are a :class:`ConfigError`. ``dtype``
    (a torch dtype or its name) is the output's; ``inplace`` is accepted for upstream
    slipstream's signature (slipstream writes each batch once, in place).

    Example:
        >>> try:
        ...     Normalize(mean=(123.7, 116.3, 103.5), std=(58.4, 57.1, 57.4))
        ... except ConfigError as e:
        ...     print(str(e).split("values: ")[1])
        mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225) here
    """

    mean: Sequence[float] = IMAGENET_MEAN
    std: Sequence[float] = IMAGENET_STD
    inplace: bool = True
    dtype: Any = None
    device: Any = field(default=None, kw_only=True)
    """Where the pipeline runs (``"cpu"``, ``"cuda"``, ``"cuda:N"``); ``None``: the loader's."""

    def __post_init__(self) -> None:
        mean, std = [float(m) for m in self.mean], [float(s) for s in self.std]
        if len(mean) != 3 or len(std) != 3:
            raise ConfigError("Normalize needs 3 means and 3 stds")
        if not all(math.isfinite(v) for v in mean + std):
            raise ConfigError("Normalize values must be finite")
        # Images scaled to [0, 1] have means in [0, 1] and standard deviations of at most 0.5.
        if max(mean) > 1 or max(std) > 1:
            scaled = ", ".join(f"{m / 255:.3g}" for m in mean)
            spread = ", ".join(f"{s / 255:.3g}" for s in std)
            raise ConfigError(
                "Normalize takes the mean and std of images scaled to [0, 1] (as torchvision's "
                f"does), not 0-255 values: mean=({scaled}), std=({spread}) here"
            )
        if min(std) <= 0:
            raise ConfigError(f"Normalize: every std must be positive, not {tuple(std)}")


@dataclass(frozen=True)
class ToTorchImage:
    """Upstream slipstream's conversion stage: the pipeline's output becomes a float tensor in
    [0, 1] of ``dtype`` (a torch dtype or its name; default float32, or the loader's
    ``dtype``) on ``device``. In slipstream the output is
    always a tensor; this stage only sets where the pipeline runs and the output dtype.

    Example:
        >>> ToTorchImage("cpu", "torch.float16").dtype
        'float16'
    """

    device: Any = None
    dtype: Any = None
    from_numpy: bool = True

    def __post_init__(self) -> None:
        object.__setattr__(self, "dtype", _dtype_name(self.dtype))


def _dtype_name(dtype: Any) -> str | None:
    """``torch.float16``, ``"float16"`` or ``"torch.float16"`` → ``"float16"``."""
    if dtype is None:
        return None
    name = str(dtype).removeprefix("torch.")
    if name not in ("uint8", "float16", "bfloat16", "float32"):
        raise ConfigError(f"output dtype must be uint8, float16, bfloat16 or float32, not {dtype}")
    return name


def _upstream_options(stage: Any, *, seed: Any = None, num_threads: int = 0) -> None:
    """Upstream slipstream's per-stage ``seed`` and ``num_threads`` have a loader-wide
    equivalent here; only their defaults are accepted on a stage."""
    name = type(stage).__name__
    if seed is not None:
        raise ConfigError(
            f"{name}(seed={seed!r}): slipstream draws every random choice from the loader's "
            "seed and (epoch, sample, view), the same on any batch size, thread count or "
            "device: pass SlipstreamLoader(seed=...) instead"
        )
    if num_threads:
        raise ConfigError(
            f"{name}(num_threads={num_threads!r}): decoding threads are the loader's: pass "
            "SlipstreamLoader(num_threads=...) instead"
        )


@dataclass(frozen=True)
class DecodeRandomResizedCrop:
    """Upstream slipstream's ``DecodeRandomResizedCrop``: :class:`RandomResizedCrop` with
    upstream's signature. Alone in a pipeline its output is upstream's: uint8 ``[B, H, W, 3]``
    as a numpy array (``to_tensor=True``: a tensor; ``permute=True``: ``[B, 3, H, W]``);
    followed by :class:`ToTorchImage` or :class:`Normalize`, a ``[B, 3, H, W]`` tensor.

    Example:
        >>> DecodeRandomResizedCrop(224).get_params(375, 500, seed=0, epoch=0, index=7)
        (2, 75, 370, 425)
    """

    size: int | Sequence[int] = 224
    scale: tuple[float, float] = (0.08, 1.0)
    ratio: tuple[float, float] = (3 / 4, 4 / 3)
    num_threads: int = 0
    seed: None = None
    to_tensor: bool = False
    permute: bool = False
    device: Any = field(default=None, kw_only=True)

    def __post_init__(self) -> None:
        _upstream_options(self, seed=self.seed, num_threads=self.num_threads)

    def _crop(self) -> RandomResizedCrop:
        return RandomResizedCrop(self.size, self.scale, self.ratio)

    def get_params(
        self, height: int, width: int, *, seed: int, epoch: int, index: int, view: int = 0
    ) -> tuple[int, int, int, int]:
        """``(top, left, height, width)`` of the crop slipstream takes for this view."""
        return self._crop().get_params(
            height, width, seed=seed, epoch=epoch, index=index, view=view
        )

    def _geometry(self) -> dict[str, Any]:
        return self._crop()._geometry()


@dataclass(frozen=True)
class DecodeCenterCrop:
    """Upstream slipstream's ``DecodeCenterCrop(size)``: the central ``size`` x ``size`` pixels
    (:class:`CenterCrop`; upstream's output options as :class:`DecodeRandomResizedCrop`'s).
    An image smaller than ``size`` is padded with zeros, as torchvision pads; upstream
    scaled it up instead."""

    size: int | Sequence[int] = 224
    num_threads: int = 0
    to_tensor: bool = False
    permute: bool = False
    device: Any = field(default=None, kw_only=True)

    def __post_init__(self) -> None:
        _upstream_options(self, num_threads=self.num_threads)

    def _geometry(self) -> dict[str, Any]:
        return CenterCrop(self.size)._geometry()


@dataclass(frozen=True)
class DecodeResizeCrop:
    """Upstream slipstream's ``DecodeResizeCrop(resize_size, crop_size)`` (also ``ResizeCrop``):
    the shorter side resized to ``resize_size``, then the central ``crop_size`` square, which
    is ``CenterCrop(crop_size, resize=resize_size)`` (upstream's output options as
    :class:`DecodeRandomResizedCrop`'s)."""

    resize_size: int = 256
    crop_size: int | Sequence[int] = 224
    num_threads: int = 0
    to_tensor: bool = False
    permute: bool = False
    device: Any = field(default=None, kw_only=True)

    def __post_init__(self) -> None:
        _upstream_options(self, num_threads=self.num_threads)

    def _geometry(self) -> dict[str, Any]:
        return CenterCrop(self.crop_size, resize=int(self.resize_size))._geometry()


ResizeCrop = DecodeResizeCrop
"""Upstream slipstream's older name of :class:`DecodeResizeCrop`."""

_UPSTREAM_DECODE_STAGES = (DecodeRandomResizedCrop, DecodeCenterCrop, DecodeResizeCrop)


@dataclass(frozen=True)
class Pipeline:
    """Stages for one output, read from ``field`` (default: the output's own name), with
    ``views`` independent random views of each image (the output is then
    ``[B, views, 3, H, W]``). Several outputs may read one field; the image is decoded once.
    ``after_batch``: functions ``tensor -> tensor`` run in order on the finished output of
    each batch, for what slipstream has no stage for (a torchvision v2 transform, your own
    torch code); they run in the consuming thread when the batch is taken from the loader
    (on a GPU, on the current stream, which waits for the loader's kernels first).

    Example:
        >>> dino = {"global": Pipeline([RandomResizedCrop(224, scale=(0.4, 1.0))],
        ...                            field="image", views=2),
        ...         "local": Pipeline([RandomResizedCrop(96, scale=(0.05, 0.4))],
        ...                           field="image", views=6)}
    """

    stages: Sequence[Any]
    field: str | None = None
    views: int = 1
    after_batch: Sequence[Callable[[Any], Any]] = ()

    def get_params(
        self, height: int, width: int, *, seed: int, epoch: int, index: int, view: int = 0
    ) -> dict[str, Any]:
        """Every random choice of one view of an image of ``height`` x ``width``: ``crop``
        (``(top, left, height, width)`` for RandomResizedCrop, else ``None``), ``flip``,
        ``photometric`` (the operations applied, in order, with their parameters) and
        ``erase`` (the erased rectangle in output pixels, before a later flip, or ``None``).
        ``view`` counts the views of all outputs that read the same field, in the order of
        the loader's ``pipelines``."""
        spec = pipeline_spec(
            "pipeline", self, dtype=None, memory_format="contiguous", reduced_decode=False
        ).native
        geometry = spec["geometry"]
        crop = None
        if geometry["kind"] == "random_resized_crop":
            crop = _native.random_resized_crop_params(
                seed,
                epoch,
                index,
                view,
                height,
                width,
                tuple(geometry["scale"]),
                tuple(geometry["ratio"]),
            )
        erase = None
        if spec["erasing"] is not None:
            out_h, out_w = geometry["height"], geometry["width"]
            erase = _native.erasing_params(
                json.dumps(spec["erasing"]), seed, epoch, index, view, out_h, out_w
            )
        return {
            "crop": crop,
            "flip": _native.flip_param(seed, epoch, index, view, spec["flip"]),
            "photometric": _native.photometric_params(
                json.dumps(spec["photometric"]), seed, epoch, index, view
            ),
            "erase": erase,
        }


@dataclass(frozen=True)
class PipelineSpec:
    """One pipeline as the loader needs it: the JSON object for the native loader, the device
    its stages ask for (``None``: none does; ``"cpu"`` or a GPU ordinal), and, for upstream's
    decode stages used alone, the layout upstream gave their output."""

    native: dict[str, Any]
    device: int | str | None
    channels_last: bool = False
    numpy: bool = False
    after_batch: tuple[Callable[[Any], Any], ...] = ()

    @property
    def finishes(self) -> bool:
        """Whether :meth:`finish` changes the loader's output."""
        return self.channels_last or self.numpy or bool(self.after_batch)

    def finish(self, images: Any) -> Any:
        """The output as the user gets it: upstream's decode stages alone give
        ``[B, H, W, 3]`` (a view of the channels-last output, no copy), numpy unless they
        asked for a tensor; then the pipeline's ``after_batch`` functions."""
        if self.channels_last and hasattr(images, "movedim"):
            images = images.movedim(-3, -1)
        elif self.channels_last:
            import numpy

            images = numpy.moveaxis(images, -3, -1)
        if self.numpy and hasattr(images, "numpy") and getattr(images, "is_cuda", False) is False:
            images = images.numpy()
        for f in self.after_batch:
            images = f(images)
        return images


def pipeline_spec(
    name: str,
    pipeline: Pipeline | Sequence[Any],
    *,
    dtype: str | None,
    memory_format: str,
    reduced_decode: bool,
) -> PipelineSpec:
    """Check one pipeline's stages and say what the loader makes of them."""
    if not isinstance(pipeline, Pipeline):
        pipeline = Pipeline(list(pipeline))
    stages = list(pipeline.stages)
    if not stages or not hasattr(stages[0], "_geometry"):
        raise ConfigError(
            f"pipeline '{name}' must start with RandomResizedCrop or CenterCrop (every image "
            "of a batch needs the same size)"
        )
    flip = 0.0
    flip_at = None
    normalize = None
    to_tensor = None
    photometric: list[dict[str, Any]] = []
    erasing = None
    for at, stage in enumerate(stages[1:]):
        converted = normalize is not None or to_tensor is not None
        if isinstance(stage, RandomHorizontalFlip) and flip_at is None:
            flip, flip_at = float(stage.p), at
        elif isinstance(stage, PHOTOMETRIC):
            if converted:
                raise ConfigError(
                    f"pipeline '{name}': {type(stage).__name__} must come before Normalize and "
                    "ToTorchImage (colour operations act on the 8-bit pixels, as torchvision's "
                    "do on uint8 images)"
                )
            photometric.append(stage._native())
        elif isinstance(stage, RandomErasing) and erasing is None:
            erasing = (stage, converted, flip_at is None)
        elif isinstance(stage, Normalize) and normalize is None:
            normalize = stage
        elif isinstance(stage, ToTorchImage) and to_tensor is None:
            to_tensor = stage
        elif callable(stage) and not type(stage).__module__.startswith("slipstream"):
            raise ConfigError(
                f"pipeline '{name}': {stage!r} is not a slipstream stage; to run your own "
                f"function on each finished batch, write Pipeline([...], after_batch=[f])"
            )
        else:
            raise ConfigError(
                f"pipeline '{name}': {stage!r} is not supported here (after the geometry "
                "stage: at most one RandomHorizontalFlip, RandomErasing, ToTorchImage and "
                "Normalize, and photometric stages before Normalize)"
            )
    device = _stage_device(name, stages)
    stage_dtypes = {
        d for d in (_dtype_name(getattr(s, "dtype", None)) for s in stages[1:]) if d is not None
    }
    if dtype is not None:
        stage_dtypes.add(_dtype_name(dtype))
    if len(stage_dtypes) > 1:
        raise ConfigError(
            f"pipeline '{name}': its stages and the loader ask for dtypes {sorted(stage_dtypes)}"
        )
    out_dtype = stage_dtypes.pop() if stage_dtypes else None
    if out_dtype is None:
        out_dtype = "float32" if normalize is not None or to_tensor is not None else "uint8"
    # Upstream's decode stages alone give uint8 [B, H, W, 3], numpy unless to_tensor.
    first = stages[0]
    upstream_layout = (
        isinstance(first, _UPSTREAM_DECODE_STAGES) and normalize is None and to_tensor is None
    )
    channels_last = upstream_layout and not first.permute
    native = {
        "name": name,
        "field": pipeline.field or name,
        "views": int(pipeline.views),
        "geometry": first._geometry(),
        "filter": _filter(
            getattr(first, "interpolation", "bilinear"), getattr(first, "antialias", True)
        ),
        "antialias": getattr(first, "antialias", True),
        "flip": flip,
        "photometric": photometric,
        "erasing": None
        if erasing is None
        else erasing[0]._native(output_units=erasing[1], before_flip=erasing[2]),
        "normalize": None
        if normalize is None
        else [[float(m) for m in normalize.mean], [float(s) for s in normalize.std]],
        "dtype": out_dtype,
        "memory_format": "channels_last" if channels_last else memory_format,
        "reduced_decode": bool(reduced_decode),
    }
    return PipelineSpec(
        native,
        device,
        channels_last=channels_last,
        numpy=upstream_layout and not first.to_tensor,
        after_batch=_after_batch(name, pipeline.after_batch),
    )


def _after_batch(name: str, functions: Sequence[Any]) -> tuple[Callable[[Any], Any], ...]:
    if callable(functions) or isinstance(functions, (str, bytes)):
        raise ConfigError(f"pipeline '{name}': after_batch must be a list of callables")
    for f in functions:
        if not callable(f):
            raise ConfigError(f"pipeline '{name}': after_batch must be callables, not {f!r}")
    return tuple(functions)


def _stage_device(name: str, stages: Sequence[Any]) -> int | str | None:
    """The one device the stages of a pipeline name (``"cpu"`` or a GPU ordinal), if any."""
    named = {}
    for stage in stages:
        device = getattr(stage, "device", None)
        if device is not None:
            ordinal = parse_device(device)
            named[ordinal if ordinal is not None else "cpu"] = (
                f"{type(stage).__name__}(device={device!r})"
            )
    if len(named) > 1:
        raise ConfigError(
            f"pipeline '{name}': its stages name different devices: {', '.join(named.values())}"
        )
    return next(iter(named), None)


MAX_IMAGE_PIXELS: int = _native.MAX_IMAGE_PIXELS
"""The default ``max_image_pixels``: twice Pillow's ``Image.MAX_IMAGE_PIXELS``, where Pillow
raises its ``DecompressionBombError``."""


def decode_image(
    data: bytes,
    max_image_pixels: int | None = MAX_IMAGE_PIXELS,
    load_truncated_images: bool = False,
    to_pil: bool = False,
) -> Any:
    """Decode a JPEG, PNG or WebP to a ``uint8`` numpy array ``[H, W, 3]`` (RGB; a PIL image with
    ``to_pil=True``; upstream slipstream's gave a torch ``[3, H, W]``), with the decoder
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
    pixels = numpy.frombuffer(rgb, dtype=numpy.uint8).reshape(height, width, 3).copy()
    if to_pil:
        from PIL import Image

        return Image.fromarray(pixels)
    return pixels
