"""slipstream: fast loading of LitData datasets for PyTorch.

>>> import slipstream as ss
>>> ds = ss.SlipstreamDataset("path/to/litdata/dataset")          # doctest: +SKIP
>>> loader = ss.SlipstreamLoader(ds, batch_size=256, seed=0)      # doctest: +SKIP
>>> for batch in loader:                                          # doctest: +SKIP
...     images, labels = batch["image"], batch["label"]
"""

import os as _os

from . import _native
from .dataset import Field, SlipstreamDataset
from .errors import (
    CacheError,
    ChecksumError,
    ConfigError,
    CudaError,
    DecodeError,
    FormatError,
    SampleIndexError,
    SlipstreamError,
    SlipstreamIOError,
    UnsupportedError,
)
from .loader import RaggedBatch, SlipstreamLoader
from .transforms import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    MAX_IMAGE_PIXELS,
    CenterCrop,
    Normalize,
    Pipeline,
    RandomHorizontalFlip,
    RandomResizedCrop,
    decode_image,
)

__version__: str = _native.__version__

# rayon's threads do not survive fork(); a forked child (a DataLoader worker, say) copies
# without them instead of waiting on threads that do not exist.
if hasattr(_os, "register_at_fork"):
    _os.register_at_fork(after_in_child=_native.after_fork_in_child)

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "MAX_IMAGE_PIXELS",
    "CacheError",
    "CenterCrop",
    "ChecksumError",
    "ConfigError",
    "CudaError",
    "DecodeError",
    "Field",
    "FormatError",
    "Normalize",
    "Pipeline",
    "RaggedBatch",
    "RandomHorizontalFlip",
    "RandomResizedCrop",
    "SampleIndexError",
    "SlipstreamDataset",
    "SlipstreamError",
    "SlipstreamIOError",
    "SlipstreamLoader",
    "UnsupportedError",
    "__version__",
    "decode_image",
]
