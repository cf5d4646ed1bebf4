"""Random access to a dataset (LitData, ImageFolder, WebDataset, Parquet, FFCV) through
slipstream's cache."""

from __future__ import annotations

import copy
import json
import operator
import os
from dataclasses import dataclass
from typing import Any

import numpy as np

from . import _native, _progress, _upstream
from ._tensors import torch_available, torch_distributed


@dataclass(frozen=True)
class Field:
    """One field of a dataset's samples.

    ``kind`` is one of ``int``, ``float``, ``bool``, ``bytes``, ``str``, ``pil``, ``array``,
    ``yuv420`` (decode-free images, ``encoding="yuv420"``);
    ``litdata_format`` is the LitData serializer the values were written with. For arrays,
    ``dtype`` and (when every sample has the same one) ``shape``; ``images`` is true when every
    value is an encoded or PIL image whose height and width are known.
    """

    name: str
    kind: str
    litdata_format: str
    dtype: str | None = None
    shape: tuple[int, ...] | None = None
    images: bool = False


def _pil_value(mode: str, width: int, height: int, pixels: bytes) -> Any:
    try:
        from PIL import Image
    except ImportError:
        channels = {"L": 1, "P": 1, "RGB": 3, "RGBA": 4, "CMYK": 4, "LA": 2}.get(mode)
        if channels is None:
            return pixels
        shape = (height, width) if channels == 1 else (height, width, channels)
        return np.frombuffer(pixels, dtype=np.uint8).reshape(shape).copy()
    return Image.frombytes(mode, (width, height), pixels)


def _rgb_value(mode: str, width: int, height: int, pixels: bytes, *, as_tensor: bool) -> Any:
    """A decode-free image (converted to RGB by the native side) as a PIL image, or as the
    tensor ``decode_images=True, to_pil=False`` asks for."""
    if as_tensor:
        hwc = np.frombuffer(pixels, dtype=np.uint8).reshape(height, width, 3).copy()
        if torch_available():
            import torch

            return torch.from_numpy(hwc).permute(2, 0, 1).contiguous()
        return hwc
    return _pil_value(mode, width, height, pixels)


def _array_value(field: dict[str, Any], shape: list[int], data: bytearray) -> Any:
    dtype = field["dtype"]
    if field.get("framework") == "torch" and torch_available():
        import torch

        if not data:
            return torch.empty(shape, dtype=getattr(torch, dtype))
        return torch.frombuffer(data, dtype=getattr(torch, dtype)).reshape(shape)
    return np.frombuffer(data, dtype=np.dtype(dtype)).reshape(shape)


def _several_ranks() -> bool:
    """Whether this process is one of several ranks of a job (``torch.distributed``, else
    torchrun's ``WORLD_SIZE``)."""
    dist = torch_distributed()
    if dist is not None:
        return bool(dist.get_world_size() > 1)
    return int(os.environ.get("WORLD_SIZE") or 1) > 1


def _decoded(data: bytes, to_pil: bool) -> Any:
    from .transforms import decode_image

    pixels = decode_image(data, to_pil=to_pil)
    if to_pil:
        return pixels
    if torch_available():
        import torch

        return torch.from_numpy(pixels).permute(2, 0, 1).contiguous()
    return pixels


class SlipstreamDataset:
    """A dataset read through slipstream's cache: a LitData dataset (the output of
    ``litdata.optimize``), an ImageFolder tree (``root/<class>/<image>``, as torchvision's
    ``ImageFolder`` reads it), WebDataset tar shards, Hugging Face Parquet shards or an FFCV
    ``.beton`` file.

    The first use of a dataset builds its cache (once per machine; concurrent processes wait
    for one builder); later uses map it. ``ds[i]`` returns sample ``i`` with the values LitData
    stored: ``bytes`` for byte and image fields, ``int``, ``float``, ``bool``, ``str``, numpy
    arrays (torch tensors for LitData ``tensor`` fields when torch is installed) and PIL images
    for ``pil`` fields. Samples come back as dicts (tuples or lists when the dataset's samples
    were tuples or lists).

    Args:
        path: the dataset: a directory (holding ``index.json``, class folders, ``.tar`` or
            ``.parquet`` shards), a ``.tar``, ``.parquet`` or ``.beton``/``.ffcv`` file, a pattern
            naming shards (``/data/train-*.parquet``), a ``.slipcache`` file, or any of these
            on S3 (``s3://bucket/prefix/``, ``s3://bucket/prefix/train.beton``): the dataset
            is downloaded (parallel ranged GETs, retried, resumed, skipping files already
            mirrored) into the cache directory when its cache is built, and not downloaded
            again while it is unchanged.
        cache_dir: where caches live; default ``$SLIPSTREAM_CACHE_DIR``, else
            ``~/.cache/slipstream``.
        rebuild: build the cache again even if an up-to-date one exists.
        progress: show the progress of building and downloading: a bar on a terminal, a line
            every few seconds in a log file (a SLURM job's), a tqdm bar in Jupyter (lines
            without tqdm); ``False`` shows nothing.
        storage_options: for ``s3://``: the keys LitData users pass (``endpoint_url``,
            ``region_name``, ``aws_access_key_id``, ``aws_secret_access_key``,
            ``aws_session_token``, ``profile``, ``anon``; also in LitData's and s5cmd's
            spellings: ``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``,
            ``AWS_SESSION_TOKEN``, ``S3_ENDPOINT_URL``, ``AWS_NO_SIGN_REQUEST``,
            ``AWS_REGION``, ``AWS_PROFILE``, and a botocore ``config`` with
            ``signature_version=UNSIGNED`` or ``retries``) and ``concurrency``,
            ``part_bytes``, ``max_attempts``, ``read_timeout``. Without keys, credentials come
            from the usual AWS chain (environment, profile, SSO, instance role);
            ``AWS_ENDPOINT_URL`` selects an S3-compatible store. With ``remote_cache`` they
            reach the shared store too.
        remote_cache: ``s3://bucket/prefix/`` where caches are shared across machines: when
            no local cache matches, the one built from the same version of the dataset is
            downloaded from there (every sample's checksum verified) instead of building;
            after a build, the cache is uploaded (its manifest last, so a half-finished upload
            is never used). Ranks on one machine download once. ``slipstream sync push|pull``
            does the same by hand.
        remote_dir, local_dir, input_dir: upstream slipstream's names for ``path`` (give one).
        decode_images: ``ds[i]`` decodes image fields (as :func:`slipstream.decode_image`
            does): to PIL images (``to_pil=True``, the default) or to uint8 tensors
            ``[3, H, W]`` (``to_pil=False``; numpy ``[H, W, 3]`` without torch).
        to_pil: see ``decode_images``.
        upstream_options: upstream slipstream's and LitData's other options where they mean
            something here: ``force_rebuild`` (= ``rebuild``), ``verbose`` (= ``progress``),
            ``session_options`` (LitData's, joined to ``storage_options``),
            ``profile="wasabi"``, ``max_cache_size`` (nothing to limit: one cache file); the
            rest raise an error that says what to use instead (docs/MIGRATING.md).
        fingerprint: how a local dataset is known unchanged since its cache was built:
            ``"mtime"`` (default: each file's size and modification time, free) or
            ``"content"`` (a hash of every file's bytes, read at disk speed on each open: for
            files rewritten in place with their modification times kept). A dataset on S3 is
            recognised by its objects' ETags either way.
        format: ``"auto"`` (default: a directory with ``index.json`` is LitData's; ``.tar``
            files WebDataset shards; ``.parquet`` files (also in a ``data/`` folder, as the
            Hugging Face hub lays them out) Parquet shards; a ``.beton`` or ``.ffcv`` file FFCV's; a
            directory with subdirectories an ImageFolder tree), ``"litdata"``,
            ``"imagefolder"``, ``"webdataset"``, ``"parquet"`` or ``"beton"``. An
            ImageFolder's samples are ``image`` (the file's bytes), ``label`` and ``path``
            (``<root's name>/<class>/<file>``), numbered and ordered exactly as
            ``torchvision.datasets.ImageFolder`` does (``classes`` names the labels); its
            images must be JPEG, PNG or WebP files (others are an error naming them). WebDataset
            samples are grouped by key as ``webdataset`` groups them: ``__key__``, then one
            field per extension (``jpg``, ``cls``, ...), integers for ``cls``-like
            extensions, text for ``txt``/``json``, the member's bytes otherwise; every
            sample must have the first sample's fields. Parquet columns keep their names:
            ``datasets``' Image feature as the embedded image's bytes, integers (ClassLabel),
            floats, booleans, strings, binary (other types are an error). FFCV fields keep
            theirs: ints, floats, bytes, JSON as text, arrays, and images as JPEG bytes (raw
            ones as PNG when a field mixes both, as a ``pil`` field when all are raw).
        encoding: how the cache stores image fields (docs/FORMAT.md): ``"original"``
            (default: the source's bytes), ``"jpeg"`` (every image decoded and re-encoded as
            a baseline 4:2:0 JPEG at ``quality``, scaled down to fit ``max_side``: FFCV's
            ``max_resolution`` and ``jpeg_quality``) or ``"yuv420"`` (upstream's
            ``image_format="yuv420"``: the JPEG's own YUV 4:2:0 planes, kept raw, so reading
            needs no decoding; 1.5 bytes per pixel, 2-3x the size of typical JPEGs at full
            size, optionally scaled to ``max_side``). Raw ``pil`` image fields (RGB, RGBA, L)
            are encoded too. Each encoding is a cache file of its own beside the original
            cache (which is built first and kept), rebuilt when the dataset changes;
            ``ds[i]`` returns a yuv420 image as a PIL RGB image. With ``device="cuda"`` the
            planes are converted to RGB on the loader's host threads, then resampled on the
            GPU.
        max_side: with ``encoding="jpeg"`` or ``"yuv420"``: images whose longer side
            exceeds it are scaled down (antialiased bilinear) so that it equals it.
        quality: with ``encoding="jpeg"``: the JPEG quality, 1 to 100 (default 90).
        stream: for a LitData dataset on S3 whose cache is not built yet: ``True`` returns at
            once and builds the cache while the chunks download, in the order a loader's
            epoch reads them, so that with ``order="quasi_random"`` the first batch comes after
            a few chunks instead of after the whole dataset; a sample read before its chunk
            arrived waits for it, and a failed download is raised by that read (``verify()``
            waits for every chunk). ``False`` downloads and builds the whole cache before
            returning. The default (``None``) streams unless this process is one of several
            ranks: the other ranks of a machine wait for the whole download anyway, and a rank
            that went ahead would wait in its first collective instead, where it could time
            out. Datasets with array or PIL fields, other encodings than
            ``"original"``, ``remote_cache`` and a cache another process is building are
            always built first. See docs/TUNING.md.

    Example:
        >>> ds = SlipstreamDataset(demo_dir, cache_dir=cache_dir, progress=False)
        >>> len(ds)
        96
        >>> sorted(ds[0])
        ['image', 'label']
        >>> ds[-1]["image"][:2]
        b'\\xff\\xd8'
        >>> [f.name for f in ds.fields]
        ['image', 'label']
    """

    def __init__(
        self,
        path: str | os.PathLike[str] | None = None,
        cache_dir: str | os.PathLike[str] | None = None,
        *,
        rebuild: bool = False,
        progress: bool = True,
        storage_options: dict[str, Any] | None = None,
        remote_cache: str | None = None,
        fingerprint: str = "mtime",
        format: str = "auto",
        encoding: str = "original",
        max_side: int | None = None,
        quality: int | None = None,
        stream: bool | None = None,
        remote_dir: str | os.PathLike[str] | None = None,
        local_dir: str | os.PathLike[str] | None = None,
        input_dir: str | os.PathLike[str] | None = None,
        decode_images: bool = False,
        to_pil: bool = True,
        **upstream_options: Any,
    ) -> None:
        source = _upstream.dataset_source(path, remote_dir, local_dir, input_dir)
        upstream = _upstream.dataset_options(upstream_options)
        options = _upstream.storage_options(
            {**(storage_options or {}), **upstream.pop("extra_storage_options")}
        )
        self._open_args: dict[str, Any] = {
            "path": os.fspath(source),
            "cache_dir": None if cache_dir is None else os.fspath(cache_dir),
            "progress": upstream.get("progress", progress),
            "storage_options": options,
            "remote_cache": remote_cache,
            "fingerprint": fingerprint,
            "format": format,
            "encoding": encoding,
            "max_side": max_side,
            "quality": quality,
            "stream": not _several_ranks() if stream is None else bool(stream),
        }
        self._decode_images = bool(decode_images)
        self._to_pil = bool(to_pil)
        if self._open_args["progress"]:
            _progress.install()
        self._reopen(rebuild=upstream.get("rebuild", rebuild))

    def _reopen(self, *, rebuild: bool) -> None:
        """Open (or, with ``rebuild``, build again) the cache."""
        a = self._open_args
        self._native = _native.Dataset(
            a["path"],
            a["cache_dir"],
            rebuild,
            a["progress"],
            storage_options=a["storage_options"],
            remote_cache=a["remote_cache"],
            fingerprint=a["fingerprint"],
            format=a["format"],
            encoding=a["encoding"],
            max_side=a["max_side"],
            quality=a["quality"],
            stream=a["stream"],
        )
        self._header: dict[str, Any] = json.loads(self._native.header_json())
        self._raw_fields: list[dict[str, Any]] = self._header["fields"]
        self._fields = tuple(
            Field(
                name=f["name"],
                kind=f["kind"],
                litdata_format=f["litdata_format"],
                dtype=f.get("dtype"),
                shape=tuple(f["fixed_shape"]) if f.get("fixed_shape") is not None else None,
                images=bool(f.get("images")),
            )
            for f in self._raw_fields
        )
        self._layout: str = self._header["layout"]

    def encoded(
        self, encoding: str, *, max_side: int | None = None, quality: int | None = None
    ) -> SlipstreamDataset:
        """This dataset with its images in ``encoding`` (see the class's ``encoding``): a new
        dataset reading that encoding's cache, which is built on first use.

        Example:
            >>> yuv = demo_dataset.encoded("yuv420", max_side=64)
            >>> yuv.fields[0].kind, max(yuv[0]["image"].size)
            ('yuv420', 64)
        """
        other = copy.copy(self)
        other._open_args = {
            **self._open_args,
            "encoding": encoding,
            "max_side": max_side,
            "quality": quality,
        }
        other._reopen(rebuild=False)
        return other

    def __len__(self) -> int:
        return len(self._native)

    def __getitem__(self, index: int) -> Any:
        i = operator.index(index)
        n = len(self)
        if i < 0:
            i += n
        if not 0 <= i < n:
            from .errors import SampleIndexError

            raise SampleIndexError(
                f"sample index {index} is out of range for a dataset of {n} samples"
            )
        values = []
        for field, raw in zip(self._raw_fields, self._native.sample(i), strict=True):
            if field["kind"] == "pil":
                raw = _pil_value(*raw)
            elif field["kind"] == "yuv420" and isinstance(raw, tuple):
                raw = _rgb_value(*raw, as_tensor=self._decode_images and not self._to_pil)
            elif field["kind"] == "yuv420":  # not decodable when the cache was built
                raw = _decoded(raw, self._to_pil) if self._decode_images else raw
            elif field["kind"] == "array":
                raw = _array_value(field, *raw)
            elif self._decode_images and field.get("images") and isinstance(raw, bytes):
                raw = _decoded(raw, self._to_pil)
            values.append(raw)
        if self._layout == "dict":
            return {f.name: v for f, v in zip(self._fields, values, strict=True)}
        if self._layout == "tuple":
            return tuple(values)
        if self._layout == "list":
            return values
        return values[0]

    @property
    def fields(self) -> tuple[Field, ...]:
        """The schema: one :class:`Field` per value of a sample, in order."""
        return self._fields

    @property
    def classes(self) -> list[str] | None:
        """An ImageFolder's class names in label order (torchvision's ``classes``);
        ``None`` for other formats.

        Example:
            >>> demo_dataset.classes is None
            True
        """
        classes = (self._header["source"].get("config") or {}).get("classes")
        if self._header["source"]["kind"] != "imagefolder" or classes is None:
            return None
        return list(classes)

    @property
    def cache_path(self) -> str:
        """The cache file this dataset reads.

        Example:
            >>> demo_dataset.cache_path.endswith(".slipcache")
            True
        """
        return os.fspath(self._native.cache_path)

    @property
    def header(self) -> dict[str, Any]:
        """The cache header (docs/FORMAT.md): table offsets for ``numpy.memmap``, the source.
        While a dataset on S3 streams in, the header of the file being written (its
        ``cache_path`` appears once every chunk has arrived).

        Example:
            >>> import numpy as np
            >>> label = demo_dataset.header["fields"][1]
            >>> labels = np.memmap(demo_dataset.cache_path, dtype="<i8", mode="r",
            ...                    offset=label["values"]["offset"], shape=(len(demo_dataset),))
            >>> int(labels[5]) == demo_dataset[5]["label"]
            True
        """
        return self._header

    def verify(self) -> None:
        """Check every sample against its checksum; raises :class:`ChecksumError` if one fails.

        Example:
            >>> demo_dataset.verify()
        """
        self._native.verify()

    def __repr__(self) -> str:
        fields = ", ".join(f"{f.name}: {f.kind}" for f in self._fields)
        return f"SlipstreamDataset({len(self)} samples, {{{fields}}}, cache={self.cache_path!r})"
