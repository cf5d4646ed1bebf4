"""Batch-level mixing: torchvision v2's ``MixUp``, ``CutMix`` and ``RandomChoice`` between
them, for ``SlipstreamLoader(after_batch_transforms=[...])``.

They run on each finished batch, on whichever device its tensors are (on a GPU, on the current
stream, which waits for the loader's): the images of every pipeline output are mixed with the
batch rolled by one, as torchvision does, and the label field becomes soft labels
``[B, num_classes]`` (float32), optionally smoothed first. Each batch's draws come from the
loader's seed, the epoch and the batch's first sample index, so a batch gets the same mix
whatever the thread count, on resume and from ``loader.load``.

Example:
    >>> import slipstream as ss
    >>> mix = ss.RandomChoice([ss.MixUp(0.8, num_classes=10), ss.CutMix(1.0, num_classes=10)])
    >>> loader = ss.SlipstreamLoader(demo_dataset, batch_size=8, seed=0,
    ...                              pipelines={"image": [ss.CenterCrop(32), ss.Normalize()]},
    ...                              after_batch_transforms=[mix])
    >>> batch = next(iter(loader))
    >>> tuple(batch["label"].shape), float(batch["label"].sum(1).mean())
    ((8, 10), 1.0)
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .errors import ConfigError


def _generator(seed: int, epoch: int, first_index: int, purpose: str) -> np.random.Generator:
    """A stream for one batch: keyed by the loader's seed, the epoch and the batch's first
    sample (unique within an epoch on every rank)."""
    text = f"{purpose}:{seed}:{epoch}:{first_index}".encode()
    return np.random.Generator(np.random.PCG64(int.from_bytes(hashlib.sha256(text).digest())))


def _batch_generator(
    batch: dict[str, Any], key: tuple[int, int], purpose: str
) -> np.random.Generator:
    """`_generator` of a batch from the loader's (seed, epoch)."""
    first = int(batch["index"][0]) if len(batch["index"]) else 0
    return _generator(*key, first, purpose)


def _check(alpha: float, num_classes: int, label_smoothing: float) -> None:
    if not alpha > 0:
        raise ConfigError(f"alpha must be positive, not {alpha}")
    if int(num_classes) < 1:
        raise ConfigError(f"num_classes must be at least 1, not {num_classes}")
    if not 0.0 <= label_smoothing < 1.0:
        raise ConfigError(f"label_smoothing must be in [0, 1), not {label_smoothing}")


def _soft_labels(labels: Any, num_classes: int, smoothing: float) -> Any:
    """One-hot float32 labels, smoothed as timm does (``smoothing / num_classes`` off the
    target, the rest on it)."""
    import torch

    if labels.dim() != 1 or labels.is_floating_point():
        raise ConfigError(
            f"the label field must be integer class indices [B], not {labels.dtype} "
            f"{tuple(labels.shape)} (a batch mixed twice?)"
        )
    if labels.numel() and (labels.min() < 0 or labels.max() >= num_classes):
        raise ConfigError(f"labels must lie in [0, {num_classes}) for num_classes={num_classes}")
    off = smoothing / num_classes
    out = torch.full((labels.shape[0], num_classes), off, device=labels.device)
    return out.scatter_(1, labels.long()[:, None], 1.0 - smoothing + off)


@dataclass(frozen=True)
class _Mixing:
    alpha: float = 1.0
    num_classes: int | None = None
    labels: str = "label"
    """The label field (integer class indices)."""
    images: Sequence[str] | None = None
    """The outputs to mix; ``None``: every pipeline output (every floating tensor with the
    batch's size first and at least three more dimensions)."""
    label_smoothing: float = 0.0
    p: float = field(default=1.0, kw_only=True)
    """torchvision's MixUp/CutMix always apply; below 1, a batch is left as it is with
    probability ``1 - p`` (its labels still become soft)."""

    _purpose = "mix"

    def __post_init__(self) -> None:
        if self.num_classes is None:
            raise ConfigError(f"{type(self).__name__} needs num_classes (for the soft labels)")
        _check(self.alpha, self.num_classes, self.label_smoothing)
        if not 0.0 <= self.p <= 1.0:
            raise ConfigError(f"p={self.p} is not in [0, 1]")

    def _image_keys(self, batch: dict[str, Any]) -> list[str]:
        import torch

        if self.images is not None:
            return list(self.images)
        n = batch[self.labels].shape[0]
        return [
            k
            for k, v in batch.items()
            if isinstance(v, torch.Tensor) and v.dim() >= 4 and v.shape[0] == n and k != self.labels
        ]

    def __call__(self, batch: dict[str, Any], *, key: tuple[int, int]) -> dict[str, Any]:
        return self._apply(batch, _batch_generator(batch, key, self._purpose))

    def _apply(self, batch: dict[str, Any], rng: np.random.Generator) -> dict[str, Any]:
        assert self.num_classes is not None
        labels = _soft_labels(batch[self.labels], self.num_classes, self.label_smoothing)
        lam = float(rng.beta(self.alpha, self.alpha))
        apply = self.p >= 1.0 or rng.random() < self.p
        out = dict(batch)
        keys = self._image_keys(batch)
        for k in keys:
            if not batch[k].is_floating_point():
                raise ConfigError(
                    f"{type(self).__name__} mixes float images; '{k}' is {batch[k].dtype}: add "
                    "Normalize() or dtype='float32' to its pipeline"
                )
        if apply and batch[self.labels].shape[0] > 1:
            lam = self._mix_images(out, keys, lam, rng)
            labels = labels.roll(1, 0).mul_(1.0 - lam).add_(labels.mul(lam))
        out[self.labels] = labels
        return out

    def _mix_images(
        self, out: dict[str, Any], keys: list[str], lam: float, rng: np.random.Generator
    ) -> float:
        raise NotImplementedError


@dataclass(frozen=True)
class MixUp(_Mixing):
    """torchvision v2's ``MixUp(alpha=1.0, num_classes)``: with ``lam ~ Beta(alpha, alpha)``
    drawn per batch, images become ``lam * x + (1 - lam) * x.roll(1, 0)`` and labels the same
    mix of their one-hot vectors."""

    _purpose = "mixup"

    def _mix_images(
        self, out: dict[str, Any], keys: list[str], lam: float, rng: np.random.Generator
    ) -> float:
        for k in keys:
            x = out[k]
            out[k] = x.roll(1, 0).mul_(1.0 - lam).add_(x.mul(lam))
        return lam


@dataclass(frozen=True)
class CutMix(_Mixing):
    """torchvision v2's ``CutMix(alpha=1.0, num_classes)``: with ``lam ~ Beta(alpha,
    alpha)``, a box of about ``1 - lam`` of the image (centre uniform, clipped at the edges)
    is pasted from the batch rolled by one; labels mix by the box's actual share. Every
    output mixed gets the same box (in its own size's proportions when sizes differ)."""

    _purpose = "cutmix"

    def _mix_images(
        self, out: dict[str, Any], keys: list[str], lam: float, rng: np.random.Generator
    ) -> float:
        r = 0.5 * math.sqrt(1.0 - lam)
        cx, cy = float(rng.random()), float(rng.random())
        share = lam
        for i, k in enumerate(keys):
            x = out[k]
            h, w = x.shape[-2:]
            x1, y1, x2, y2 = self.box(h, w, r, int(cx * w), int(cy * h))
            mixed = x.clone()
            mixed[..., y1:y2, x1:x2] = x.roll(1, 0)[..., y1:y2, x1:x2]
            out[k] = mixed
            if i == 0:
                share = 1.0 - (x2 - x1) * (y2 - y1) / (w * h)
        return share

    @staticmethod
    def box(h: int, w: int, r: float, rx: int, ry: int) -> tuple[int, int, int, int]:
        """torchvision's box: half sides ``int(r * W)``, ``int(r * H)`` around the centre
        (``rx``, ``ry``), clipped to the image; ``(x1, y1, x2, y2)``."""
        half_w, half_h = int(r * w), int(r * h)
        return max(rx - half_w, 0), max(ry - half_h, 0), min(rx + half_w, w), min(ry + half_h, h)


@dataclass(frozen=True)
class RandomChoice:
    """torchvision v2's ``RandomChoice(transforms, p=None)`` for batch transforms: one of
    ``transforms`` per batch (with probabilities ``p``, default equal)."""

    transforms: Sequence[Any]
    p: Sequence[float] | None = None

    def __post_init__(self) -> None:
        if not self.transforms or not all(isinstance(t, _Mixing) for t in self.transforms):
            raise ConfigError("RandomChoice holds MixUp and CutMix transforms")
        if self.p is not None and (len(self.p) != len(self.transforms) or min(self.p) < 0):
            raise ConfigError(f"p needs one non-negative weight per transform, not {self.p}")

    def __call__(self, batch: dict[str, Any], *, key: tuple[int, int]) -> dict[str, Any]:
        rng = _batch_generator(batch, key, "choice")
        weights = np.asarray(self.p if self.p is not None else [1.0] * len(self.transforms))
        chosen = self.transforms[int(rng.choice(len(self.transforms), p=weights / weights.sum()))]
        return chosen._apply(batch, rng)


KEYED = (MixUp, CutMix, RandomChoice)
"""Batch transforms the loader calls with ``key=(seed, epoch)``."""
