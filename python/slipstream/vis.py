"""A look at a batch: :func:`show_batch` draws its images in a grid (matplotlib)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from .errors import ConfigError


def _images(x: Any, mean: Any, std: Any) -> list[np.ndarray]:
    """A batch of images (torch or numpy; [B, 3, H, W], [B, H, W, 3] or with a views axis) as
    float [H, W, 3] arrays in [0, 1], one list per view."""
    if hasattr(x, "detach"):
        x = x.detach().float().cpu().numpy()
    x = np.asarray(x)
    if x.ndim == 5:  # [B, views, 3, H, W]: the views one after another
        x = x.transpose(1, 0, 2, 3, 4).reshape(-1, *x.shape[2:])
    if x.ndim != 4:
        raise ConfigError(f"show_batch needs images [B, 3, H, W] or [B, H, W, 3], not {x.shape}")
    if x.shape[1] in (1, 3) and x.shape[-1] not in (1, 3):
        x = x.transpose(0, 2, 3, 1)
    scaled = x.astype(np.float32) / 255 if x.dtype == np.uint8 else x.astype(np.float32)
    if mean is not None and std is not None:
        scaled = scaled * np.asarray(std, np.float32) + np.asarray(mean, np.float32)
    return list(np.clip(scaled, 0, 1))


def show_batch(
    batch: Any,
    view_names: Sequence[str] | None = None,
    n_cols: int = 8,
    suptitle: str | None = None,
    row_labels: Sequence[str] | None = None,
    col_labels: Sequence[str] | None = None,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
) -> Any:
    """Draw the first ``n_cols`` images of a batch, one row per view: ``batch`` is a tensor
    or array of images, a list of them (one row each), or a batch dict with ``view_names``
    (default: its ``"image"``). With ``mean`` and ``std`` (e.g. ``IMAGENET_MEAN``,
    ``IMAGENET_STD``), normalized images are shown as they were before :class:`Normalize`.
    Upstream slipstream's function; returns the matplotlib figure (also shown).

    Example:
        >>> import matplotlib; matplotlib.use("Agg")
        >>> from slipstream import CenterCrop, SlipstreamLoader
        >>> crops = {"image": [CenterCrop(64)]}
        >>> loader = SlipstreamLoader(demo_dataset, batch_size=4, pipelines=crops)
        >>> figure = show_batch(next(iter(loader)))
        >>> len(figure.axes)
        4
    """
    import matplotlib.pyplot as plt

    if isinstance(batch, dict):
        names = list(view_names) if view_names is not None else ["image"]
        missing = [n for n in names if n not in batch]
        if missing:
            raise ConfigError(f"show_batch: the batch has no {missing} (it has {sorted(batch)})")
        rows = [_images(batch[n], mean, std) for n in names]
        row_labels = names if row_labels is None else row_labels
    elif isinstance(batch, list | tuple):
        rows = [_images(b, mean, std) for b in batch]
    else:
        rows = [_images(batch, mean, std)]
    cols = max(1, min(int(n_cols), max(len(r) for r in rows)))
    fig, axes = plt.subplots(len(rows), cols, figsize=(2 * cols, 2 * len(rows)), squeeze=False)
    for r, images in enumerate(rows):
        for c in range(cols):
            ax = axes[r][c]
            ax.set_xticks([])
            ax.set_yticks([])
            if c < len(images):
                ax.imshow(images[c])
            if c == 0 and row_labels is not None and r < len(row_labels):
                ax.set_ylabel(str(row_labels[r]))
            if r == 0 and col_labels is not None and c < len(col_labels):
                ax.set_title(str(col_labels[c]))
    if suptitle:
        fig.suptitle(suptitle)
    fig.tight_layout()
    plt.show()
    return fig
