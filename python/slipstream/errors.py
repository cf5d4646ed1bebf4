"""Exceptions raised by slipstream.

Every error slipstream raises is a :class:`SlipstreamError`; the subclasses say what went
wrong, and several also derive from the built-in exception users would expect
(``OSError``, ``ValueError``, ``IndexError``), so either can be caught.
"""


class SlipstreamError(Exception):
    """Base class of every slipstream error."""


class FormatError(SlipstreamError):
    """The source dataset is malformed: ``index.json``, a chunk file, an item."""


class UnsupportedError(FormatError):
    """The source dataset uses something slipstream does not read; the message says what to do."""


class CacheError(SlipstreamError):
    """A slipstream cache file is malformed (rebuild it with ``slipstream build --rebuild``)."""


class ChecksumError(CacheError):
    """A sample's bytes in the cache no longer match their checksum."""


class DecodeError(SlipstreamError):
    """An image that does not decode (corrupt, truncated, or not a JPEG, PNG or WebP)."""


class CudaError(SlipstreamError):
    """The GPU path cannot run (no driver, no device, built without CUDA) or CUDA/nvJPEG failed."""


class SlipstreamIOError(SlipstreamError, OSError):
    """An operating-system error on a named file."""


class ConfigError(SlipstreamError, ValueError):
    """An argument that cannot work (bad option, bad rank, unknown field)."""


class SampleIndexError(SlipstreamError, IndexError):
    """A sample index outside the dataset."""


class MigrationError(SlipstreamError, ImportError):
    """A name of upstream slipstream (harvard-visionlab/slipstream) that this one does not
    have; the message says what to use instead (docs/MIGRATING.md)."""


__all__ = [
    "CacheError",
    "ChecksumError",
    "ConfigError",
    "CudaError",
    "DecodeError",
    "FormatError",
    "MigrationError",
    "SampleIndexError",
    "SlipstreamError",
    "SlipstreamIOError",
    "UnsupportedError",
]
