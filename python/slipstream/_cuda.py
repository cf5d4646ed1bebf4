"""Choosing the GPU for ``device="cuda"`` and finding nvJPEG, before the native loader opens it."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

from .errors import ConfigError


def parse_device(device: Any) -> int | None:
    """``None``/``"cpu"`` → ``None``; ``"cuda"``, ``"cuda:N"``, a ``torch.device`` or an int
    → a GPU ordinal. Plain ``"cuda"`` means torch's current device when torch is loaded, else
    ``LOCAL_RANK``, else 0.

    Example:
        >>> parse_device("cpu") is None, parse_device("cuda:1"), parse_device(2)
        (True, 1, 2)
    """
    if device is None:
        return None
    if isinstance(device, bool):
        raise ConfigError(f"device must be 'cpu', 'cuda' or 'cuda:N', not {device!r}")
    if isinstance(device, int):
        if device < 0:
            raise ConfigError(f"device ordinal must be >= 0, not {device}")
        return device
    kind = getattr(device, "type", None)
    if kind is not None:  # a torch.device
        if kind == "cpu":
            return None
        if kind != "cuda":
            raise ConfigError(f"device must be a CPU or CUDA device, not {device!r}")
        return device.index if device.index is not None else _default_ordinal()
    text = str(device).strip().lower()
    if text == "cpu":
        return None
    if text == "cuda":
        return _default_ordinal()
    if text.startswith("cuda:") and text[5:].isdigit():
        return int(text[5:])
    raise ConfigError(f"device must be 'cpu', 'cuda' or 'cuda:N', not {device!r}")


def _default_ordinal() -> int:
    torch = sys.modules.get("torch")
    if torch is not None:
        try:
            if torch.cuda.is_available():
                return int(torch.cuda.current_device())
        except Exception:  # a broken CUDA setup: the native loader says what is wrong
            pass
    local_rank = os.environ.get("LOCAL_RANK", "")
    return int(local_rank) if local_rank.isdigit() else 0


# Where the nvJPEG wheels put the library: `nvidia-nvjpeg` (CUDA 13), `nvidia-nvjpeg-cu12`.
_NVJPEG_WHEEL_FILES = ("nvidia/cu13/lib/libnvjpeg.so.13", "nvidia/nvjpeg/lib/libnvjpeg.so.12")


def point_at_nvjpeg() -> None:
    """Tell the native loader where the nvJPEG wheels installed here keep their libraries; it
    picks the one that suits the driver (``SLIPSTREAM_NVJPEG``, when set, is tried first)."""
    found = [
        str(Path(entry or ".") / file)
        for file in _NVJPEG_WHEEL_FILES
        for entry in sys.path
        if (Path(entry or ".") / file).is_file()
    ]
    os.environ["SLIPSTREAM_NVJPEG_WHEELS"] = os.pathsep.join(dict.fromkeys(found))
