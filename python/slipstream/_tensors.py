"""Turning native tensors into torch tensors or numpy arrays (zero copy, through DLPack)."""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Callable
from typing import Any

from .errors import ConfigError

Converter = Callable[[Any], Any]


def torch_available() -> bool:
    """Whether torch can be imported (without importing it when it is not loaded yet)."""
    return "torch" in sys.modules or importlib.util.find_spec("torch") is not None


def converter(output: str) -> Converter:
    """``from_dlpack`` of the requested library: ``"auto"`` (torch when importable), ``"torch"``
    or ``"numpy"``."""
    if output == "auto":
        output = "torch" if torch_available() else "numpy"
    if output == "torch":
        try:
            import torch
        except ImportError as e:
            raise ConfigError("output='torch' but torch is not installed") from e
        return torch.from_dlpack
    if output == "numpy":
        import numpy

        return numpy.from_dlpack
    raise ConfigError(f"output must be 'auto', 'torch' or 'numpy', not {output!r}")
