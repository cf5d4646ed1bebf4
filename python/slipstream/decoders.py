"""Upstream slipstream's ``slipstream.decoders`` names: its decode stages, which here are
slipstream's fused pipeline stages (docs/MIGRATING.md)."""

from __future__ import annotations

from . import _upstream
from .transforms import (
    CenterCrop,
    DecodeCenterCrop,
    DecodeRandomResizedCrop,
    DecodeResizeCrop,
    RandomResizedCrop,
    ResizeCrop,
)

__getattr__ = _upstream.module_getattr(__name__)

__all__ = [
    "CenterCrop",
    "DecodeCenterCrop",
    "DecodeRandomResizedCrop",
    "DecodeResizeCrop",
    "RandomResizedCrop",
    "ResizeCrop",
]
