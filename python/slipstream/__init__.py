"""slipstream: fast loading of LitData datasets for PyTorch.

>>> import slipstream as ss
>>> ds = ss.SlipstreamDataset("path/to/litdata/dataset")          # doctest: +SKIP
>>> loader = ss.SlipstreamLoader(ds, batch_size=256, seed=0)      # doctest: +SKIP
>>> for batch in loader:                                          # doctest: +SKIP
...     images, labels = batch["image"], batch["label"]
"""

import json as _json
import os as _os
from typing import Any as _Any

from . import _native, _upstream, presets
from ._cuda import point_at_nvjpeg as _point_at_nvjpeg
from .augmentations import (
    ColorJitter,
    GaussianBlur,
    Grayscale,
    RandomApply,
    RandomErasing,
    RandomGrayscale,
    RandomSolarize,
)
from .dataset import Field, SlipstreamDataset
from .errors import (
    CacheError,
    ChecksumError,
    ConfigError,
    CudaError,
    DecodeError,
    FormatError,
    MigrationError,
    SampleIndexError,
    SlipstreamError,
    SlipstreamIOError,
    UnsupportedError,
)
from .loader import RaggedBatch, SlipstreamLoader
from .mixing import CutMix, MixUp, RandomChoice
from .transforms import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    MAX_IMAGE_PIXELS,
    CenterCrop,
    DecodeCenterCrop,
    DecodeRandomResizedCrop,
    DecodeResizeCrop,
    Normalize,
    Pipeline,
    RandomHorizontalFlip,
    RandomResizedCrop,
    ResizeCrop,
    ToTorchImage,
    decode_image,
)
from .vis import show_batch

__version__: str = _native.__version__


def info() -> dict[str, _Any]:
    """What this build holds and what it finds on this machine: version, features, CPU and
    SIMD level, libjpeg-turbo version, embedded kernel architectures, CUDA driver version, each
    GPU (compute capability, memory, hardware JPEG engines), where nvJPEG was loaded from, the
    cache directory, and why anything is missing. ``slipstream info`` prints the same as text,
    for bug reports.

    Example:
        >>> facts = info()
        >>> facts["version"] == __version__, sorted(facts["cpu"])
        (True, ['arch', 'cores', 'simd'])
    """
    _point_at_nvjpeg()
    return _json.loads(_native.info_json())


# rayon's threads do not survive fork(); a forked child (a DataLoader worker, say) copies
# without them instead of waiting on threads that do not exist.
if hasattr(_os, "register_at_fork"):
    _os.register_at_fork(after_in_child=_native.after_fork_in_child)

# Upstream slipstream's names that slipstream lacks: an error that says what to use instead.
__getattr__ = _upstream.module_getattr(__name__)

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "MAX_IMAGE_PIXELS",
    "CacheError",
    "CenterCrop",
    "ChecksumError",
    "ColorJitter",
    "ConfigError",
    "CudaError",
    "CutMix",
    "DecodeCenterCrop",
    "DecodeError",
    "DecodeRandomResizedCrop",
    "DecodeResizeCrop",
    "Field",
    "FormatError",
    "GaussianBlur",
    "Grayscale",
    "MigrationError",
    "MixUp",
    "Normalize",
    "Pipeline",
    "RaggedBatch",
    "RandomApply",
    "RandomChoice",
    "RandomErasing",
    "RandomGrayscale",
    "RandomHorizontalFlip",
    "RandomResizedCrop",
    "RandomSolarize",
    "ResizeCrop",
    "SampleIndexError",
    "SlipstreamDataset",
    "SlipstreamError",
    "SlipstreamIOError",
    "SlipstreamLoader",
    "ToTorchImage",
    "UnsupportedError",
    "__version__",
    "decode_image",
    "info",
    "presets",
    "show_batch",
]
