"""Photometric augmentations and erasing: torchvision v2's names, parameters and semantics,
every random parameter drawn per sample and view.

They go in a pipeline after the geometry stage and before :class:`Normalize` (or
:class:`ToTorchImage`), and act on the view's 8-bit pixels exactly as torchvision's functional
operations act on a uint8 image (each operation's result truncated to 0-255 as torchvision's
are; the order of :class:`ColorJitter`'s four operations drawn per view, as torchvision draws
it per call). :class:`RandomErasing` may come before or after :class:`Normalize`; after it, its
``value`` is in the normalized units, as in torchvision's recipes.

Every random choice comes from the loader's ``seed`` and (epoch, sample index, view): a
stage's draws depend on its kind and on how many stages of that kind come before it in the
pipeline, not on the other stages, the batch, the thread count or the device. ``get_params``
shows them.

Example:
    >>> import slipstream as ss
    >>> simclr = [ss.RandomResizedCrop(224), ss.RandomHorizontalFlip(),
    ...           ss.RandomApply([ss.ColorJitter(0.4, 0.4, 0.4, 0.1)], p=0.8),
    ...           ss.RandomGrayscale(p=0.2), ss.GaussianBlur(23, sigma=(0.1, 2.0)),
    ...           ss.Normalize()]
    >>> ss.ColorJitter(brightness=0.4).get_params(seed=0, epoch=0, index=3)
    [('brightness', 0.830...)]
"""

from __future__ import annotations

import json
import numbers
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from . import _native
from .errors import ConfigError


def _range(
    value: float | Sequence[float] | None,
    name: str,
    center: float = 1.0,
    bound: tuple[float, float] = (0.0, float("inf")),
    clip_first_on_zero: bool = True,
) -> tuple[float, float] | None:
    """torchvision ColorJitter's ``_check_input``: a number x is ``[center - x, center + x]``,
    a pair is the range itself; ``None`` when the operation is off."""
    if value is None:
        return None
    if isinstance(value, numbers.Number):
        x = float(value)  # type: ignore[arg-type]
        if x < 0:
            raise ConfigError(f"ColorJitter {name}={value}: a single number must not be negative")
        lo, hi = center - x, center + x
        if clip_first_on_zero:
            lo = max(lo, 0.0)
    elif isinstance(value, Sequence) and len(value) == 2:
        lo, hi = (float(v) for v in value)
    else:
        raise ConfigError(f"ColorJitter {name}={value!r}: a number or a (min, max) pair")
    if not bound[0] <= lo <= hi <= bound[1]:
        raise ConfigError(
            f"ColorJitter {name} values must be increasing and within {bound}, not {(lo, hi)}"
        )
    return None if lo == hi == center else (lo, hi)


def _probability(name: str, p: float) -> float:
    p = float(p)
    if not 0.0 <= p <= 1.0:
        raise ConfigError(f"{name}: p={p} is not in [0, 1]")
    return p


def _upstream_seed(stage: Any) -> None:
    if stage.seed is not None:
        raise ConfigError(
            f"{type(stage).__name__}(seed={stage.seed!r}): slipstream draws every random choice "
            "from the loader's seed and (epoch, sample, view): pass SlipstreamLoader(seed=...)"
        )


def _draws(stages: list[dict[str, Any]], seed: int, epoch: int, index: int, view: int) -> list:
    return _native.photometric_params(json.dumps(stages), seed, epoch, index, view)


@dataclass(frozen=True)
class ColorJitter:
    """torchvision's ``ColorJitter(brightness, contrast, saturation, hue)``: the four
    operations in a random order, each factor drawn uniformly in its range (a number x is the
    range ``[max(0, 1 - x), 1 + x]``, or ``[-x, x]`` for hue, which must lie in [-0.5, 0.5]).

    Example:
        >>> ColorJitter(0.4, 0.4).get_params(seed=0, epoch=0, index=3)
        [('brightness', 0.830...), ('contrast', 0.809...)]
    """

    brightness: float | Sequence[float] | None = None
    contrast: float | Sequence[float] | None = None
    saturation: float | Sequence[float] | None = None
    hue: float | Sequence[float] | None = None
    p: None = field(default=None, kw_only=True)
    """Upstream slipstream's ``ColorJitter(p, hue, saturation, value, contrast)``: a
    :class:`ConfigError` that says how to write it here."""
    value: None = field(default=None, kw_only=True)
    seed: None = field(default=None, kw_only=True)
    """Upstream slipstream's per-stage seed: only ``None`` (the loader's ``seed`` seeds every
    stage)."""
    device: Any = field(default=None, kw_only=True)
    """Where the pipeline runs (``"cpu"``, ``"cuda"``, ``"cuda:N"``); ``None``: the loader's."""

    def __post_init__(self) -> None:
        if self.p is not None or self.value is not None:
            raise ConfigError(
                "ColorJitter takes torchvision's (brightness, contrast, saturation, hue); for "
                "upstream slipstream's ColorJitter(p=, value=, ...) write RandomApply("
                "[ColorJitter(brightness=value, contrast=..., saturation=..., hue=...)], p=p)"
            )
        _upstream_seed(self)
        self._native()

    def _native(self) -> dict[str, Any]:
        return {
            "kind": "color_jitter",
            "brightness": _range(self.brightness, "brightness"),
            "contrast": _range(self.contrast, "contrast"),
            "saturation": _range(self.saturation, "saturation"),
            "hue": _range(self.hue, "hue", center=0.0, bound=(-0.5, 0.5), clip_first_on_zero=False),
        }

    def get_params(
        self, *, seed: int, epoch: int, index: int, view: int = 0
    ) -> list[tuple[str, float]]:
        """The operations this view undergoes, in order, with their factors (as the first
        ColorJitter of a pipeline)."""
        return _draws([self._native()], seed, epoch, index, view)


@dataclass(frozen=True)
class RandomGrayscale:
    """torchvision's ``RandomGrayscale(p)``: with probability ``p``, the three channels
    become ``0.2989 R + 0.587 G + 0.114 B``."""

    p: float = 0.1
    seed: None = field(default=None, kw_only=True)
    """Upstream slipstream's per-stage seed: only ``None`` (the loader's ``seed`` seeds every
    stage)."""
    device: Any = field(default=None, kw_only=True)
    """Where the pipeline runs (``"cpu"``, ``"cuda"``, ``"cuda:N"``); ``None``: the loader's."""

    def __post_init__(self) -> None:
        _upstream_seed(self)
        _probability("RandomGrayscale", self.p)

    def _native(self) -> dict[str, Any]:
        return {"kind": "grayscale", "p": float(self.p)}

    def get_params(self, *, seed: int, epoch: int, index: int, view: int = 0) -> bool:
        """Whether this view becomes grey (as the first RandomGrayscale of a pipeline)."""
        return bool(_draws([self._native()], seed, epoch, index, view))


@dataclass(frozen=True)
class Grayscale:
    """torchvision's ``Grayscale(num_output_channels=3)``: every view grey (three equal
    channels; the output keeps three)."""

    num_output_channels: int = 3
    device: Any = field(default=None, kw_only=True)
    """Where the pipeline runs (``"cpu"``, ``"cuda"``, ``"cuda:N"``); ``None``: the loader's."""

    def __post_init__(self) -> None:
        if self.num_output_channels != 3:
            raise ConfigError(
                "Grayscale(num_output_channels=1): pipelines output three channels; take one "
                "with batch['image'][:, :1]"
            )

    def _native(self) -> dict[str, Any]:
        return {"kind": "grayscale", "p": 1.0}


@dataclass(frozen=True)
class GaussianBlur:
    """torchvision's ``GaussianBlur(kernel_size, sigma=(0.1, 2.0))``: a Gaussian of
    ``kernel_size`` taps (odd; a number or (x, y)) with sigma drawn uniformly in ``sigma`` (a
    number: that sigma), reflection at the borders, rounded back to 8 bits. Wrap it in
    :class:`RandomApply` for a probability."""

    kernel_size: int | Sequence[int]
    sigma: float | Sequence[float] = (0.1, 2.0)
    device: Any = field(default=None, kw_only=True)
    """Where the pipeline runs (``"cpu"``, ``"cuda"``, ``"cuda:N"``); ``None``: the loader's."""

    def __post_init__(self) -> None:
        self._native()

    def _native(self) -> dict[str, Any]:
        ks = self.kernel_size
        kx, ky = (ks, ks) if isinstance(ks, numbers.Integral) else (int(k) for k in ks)
        if kx <= 0 or ky <= 0 or kx % 2 == 0 or ky % 2 == 0:
            raise ConfigError(f"GaussianBlur kernel_size must be odd and positive, not {ks}")
        s = self.sigma
        lo, hi = (float(s), float(s)) if isinstance(s, numbers.Number) else (float(v) for v in s)  # type: ignore[arg-type]
        if not 0.0 < lo <= hi:
            raise ConfigError(f"GaussianBlur sigma must be positive and increasing, not {s}")
        return {"kind": "gaussian_blur", "kernel": [int(kx), int(ky)], "sigma": [lo, hi]}

    def get_params(self, *, seed: int, epoch: int, index: int, view: int = 0) -> float:
        """The sigma of this view's blur (as the first GaussianBlur of a pipeline)."""
        ((_, sigma),) = _draws([self._native()], seed, epoch, index, view)
        return sigma


@dataclass(frozen=True)
class RandomSolarize:
    """torchvision's ``RandomSolarize(threshold, p=0.5)``: with probability ``p``, pixel
    values at or above ``threshold`` become ``255 - value``. The threshold is on the 0-255
    scale of 8-bit pixels (torchvision's on uint8 images: 128 for half the range); a
    threshold below 1 is a :class:`ConfigError`, since it would invert every pixel but black.
    """

    threshold: float
    p: float = 0.5
    seed: None = field(default=None, kw_only=True)
    """Upstream slipstream's per-stage seed: only ``None`` (the loader's ``seed`` seeds every
    stage)."""
    device: Any = field(default=None, kw_only=True)
    """Where the pipeline runs (``"cpu"``, ``"cuda"``, ``"cuda:N"``); ``None``: the loader's."""

    def __post_init__(self) -> None:
        _upstream_seed(self)
        _probability("RandomSolarize", self.p)
        t = float(self.threshold)
        if 0 < t < 1:
            raise ConfigError(
                f"RandomSolarize(threshold={self.threshold}): the threshold is on the 0-255 "
                f"scale of 8-bit pixels; write threshold={round(t * 255)} for {t} of the range"
            )
        if not 0 <= t <= 255:
            raise ConfigError(f"RandomSolarize threshold {t} is not in [0, 255]")

    def _native(self) -> dict[str, Any]:
        return {"kind": "solarize", "threshold": float(self.threshold), "p": float(self.p)}

    def get_params(self, *, seed: int, epoch: int, index: int, view: int = 0) -> bool:
        """Whether this view is solarized (as the first RandomSolarize of a pipeline)."""
        return bool(_draws([self._native()], seed, epoch, index, view))


@dataclass(frozen=True)
class RandomApply:
    """torchvision's ``RandomApply(transforms, p=0.5)``: all of ``transforms`` (photometric
    stages) with probability ``p``, else none."""

    transforms: Sequence[Any]
    p: float = 0.5
    device: Any = field(default=None, kw_only=True)
    """Where the pipeline runs (``"cpu"``, ``"cuda"``, ``"cuda:N"``); ``None``: the loader's."""

    def __post_init__(self) -> None:
        _probability("RandomApply", self.p)
        for t in self.transforms:
            if not hasattr(t, "_native") or isinstance(t, RandomErasing):
                raise ConfigError(
                    f"RandomApply holds photometric stages (ColorJitter, RandomGrayscale, "
                    f"Grayscale, GaussianBlur, RandomSolarize, RandomApply), not {t!r}"
                )

    def _native(self) -> dict[str, Any]:
        return {
            "kind": "apply",
            "p": float(self.p),
            "stages": [t._native() for t in self.transforms],
        }

    def get_params(
        self, *, seed: int, epoch: int, index: int, view: int = 0
    ) -> list[tuple[str, float | None]]:
        """The operations this view undergoes (none when not applied)."""
        return _draws([self._native()], seed, epoch, index, view)


@dataclass(frozen=True)
class RandomErasing:
    """torchvision's ``RandomErasing(p=0.5, scale=(0.02, 0.33), ratio=(0.3, 3.3), value=0)``:
    with probability ``p``, a rectangle of area ``scale`` times the view's and aspect ratio
    (height / width) log-uniform in ``ratio`` (ten tries) is set to ``value`` (a number or
    one per channel). After :class:`Normalize`, the value is in normalized units (0: the
    mean); before it, a 0-255 pixel value. ``value="random"`` (after :class:`Normalize`)
    fills the rectangle with standard normal noise per element, as torchvision does, drawn
    from the view's key like every other choice."""

    p: float = 0.5
    scale: Sequence[float] = (0.02, 0.33)
    ratio: Sequence[float] = (0.3, 3.3)
    value: float | Sequence[float] = 0.0
    inplace: bool = False
    device: Any = field(default=None, kw_only=True)

    def __post_init__(self) -> None:
        _probability("RandomErasing", self.p)
        self._native(output_units=True, before_flip=False)

    def _native(self, *, output_units: bool, before_flip: bool) -> dict[str, Any]:
        random = isinstance(self.value, str)
        if random and (self.value != "random" or not output_units):
            raise ConfigError(
                f"RandomErasing(value={self.value!r}): 'random' noise is in the normalized "
                "units, so put the stage after Normalize (or give a number, one per channel)"
            )
        value = (
            [0.0] * 3
            if random
            else (
                [float(self.value)] * 3
                if isinstance(self.value, numbers.Number)
                else [float(v) for v in self.value]  # type: ignore[union-attr]
            )
        )
        if len(value) == 1:
            value *= 3
        if len(value) != 3:
            raise ConfigError(f"RandomErasing value must be one number or 3, not {self.value}")
        scale, ratio = [float(s) for s in self.scale], [float(r) for r in self.ratio]
        if not 0 <= scale[0] <= scale[1] <= 1:
            raise ConfigError(f"RandomErasing scale must be increasing within [0, 1]: {scale}")
        if not 0 < ratio[0] <= ratio[1]:
            raise ConfigError(f"RandomErasing ratio must be positive and increasing: {ratio}")
        return {
            "p": float(self.p),
            "scale": scale,
            "ratio": ratio,
            "value": value,
            "random": random,
            "output_units": output_units,
            "before_flip": before_flip,
        }

    def get_params(
        self, height: int, width: int, *, seed: int, epoch: int, index: int, view: int = 0
    ) -> tuple[int, int, int, int] | None:
        """``(top, left, height, width)`` of the erased rectangle of this view (in output
        pixels, before any flip that comes after the stage), or ``None``."""
        native = self._native(output_units=True, before_flip=False)
        return _native.erasing_params(json.dumps(native), seed, epoch, index, view, height, width)


PHOTOMETRIC = (ColorJitter, RandomGrayscale, Grayscale, GaussianBlur, RandomSolarize, RandomApply)
"""The stages that act on a view's 8-bit pixels."""
