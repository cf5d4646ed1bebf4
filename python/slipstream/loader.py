"""Batches from a :class:`SlipstreamDataset`: sampling, distribution, prefetch."""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import sys
import time
from collections.abc import Iterator, Sequence
from typing import Any, overload

from . import _native, _upstream, mixing
from ._cuda import parse_device, point_at_nvjpeg
from ._tensors import (
    Converter,
    check_pin_memory,
    converter,
    pin_ahead,
    torch_available,
    torch_distributed,
)
from .dataset import SlipstreamDataset
from .errors import ConfigError
from .transforms import MAX_IMAGE_PIXELS, PipelineSpec, pipeline_spec


class RaggedBatch(Sequence[bytes]):
    """Variable-length values of a batch (encoded images, bytes), without copying them apart.

    ``data`` is a uint8 tensor of every sample's bytes back to back; sample ``i`` is
    ``data[offsets[i]:offsets[i + 1]]``, and ``batch[i]`` returns it as ``bytes``. For image
    fields, ``heights`` and ``widths`` give each image's size (read from its header); for PIL
    fields ``modes`` gives each image's mode. Tensors are torch tensors or numpy arrays like
    the rest of the batch.

    Example:
        >>> loader = SlipstreamLoader(demo_dataset, batch_size=4, seed=0, output="numpy")
        >>> images = next(iter(loader))["image"]
        >>> len(images), images.offsets.shape
        (4, (5,))
        >>> images[0][:2] == b'\\xff\\xd8' and len(images[0]) == int(images.offsets[1])
        True
    """

    __slots__ = ("_native", "data", "heights", "modes", "offsets", "widths")

    def __init__(self, native: Any, convert: Converter) -> None:
        self._native = native
        self.data = convert(native.data)
        self.offsets = convert(native.offsets)
        self.heights = None if native.heights is None else convert(native.heights)
        self.widths = None if native.widths is None else convert(native.widths)
        self.modes: list[str] | None = native.modes

    def __len__(self) -> int:
        return len(self._native)

    @overload
    def __getitem__(self, index: int) -> bytes: ...
    @overload
    def __getitem__(self, index: slice) -> list[bytes]: ...
    def __getitem__(self, index: int | slice) -> bytes | list[bytes]:
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        n = len(self)
        i = index + n if index < 0 else index
        if not 0 <= i < n:
            raise IndexError(f"index {index} out of range for a batch of {n}")
        return self._native.item(i)

    def __repr__(self) -> str:
        return f"RaggedBatch({len(self)} values, {len(self.data)} bytes)"


def _resolve_rank(
    distributed: bool | None, rank: int | None, world_size: int | None
) -> tuple[int, int]:
    if distributed is False:
        return 0, 1
    if rank is not None or world_size is not None:
        if rank is None or world_size is None:
            raise ConfigError("pass both rank= and world_size=, or neither")
        if not 0 <= int(rank) < int(world_size):
            raise ConfigError(f"rank {rank} is not in 0..world_size={world_size}")
        return int(rank), int(world_size)
    dist = torch_distributed()
    if dist is not None:
        return dist.get_rank(), dist.get_world_size()
    if "RANK" in os.environ and "WORLD_SIZE" in os.environ:
        return int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    if distributed:
        raise ConfigError(
            "distributed=True but no rank is known: pass rank= and world_size=, "
            "initialise torch.distributed, or set RANK and WORLD_SIZE"
        )
    return 0, 1


def _resolve_seed(seed: int | None, world_size: int) -> int:
    """An explicit seed, or one drawn once and shared by every rank."""
    if seed is not None:
        return int(seed) & (2**64 - 1)
    if world_size == 1:
        return secrets.randbits(63)
    dist = torch_distributed()
    if dist is not None:
        box = [secrets.randbits(63) if dist.get_rank() == 0 else None]
        dist.broadcast_object_list(box, src=0)
        return int(box[0])
    for var in ("TORCHELASTIC_RUN_ID", "SLURM_JOB_ID"):
        job = os.environ.get(var)
        if job and job != "none":
            return int.from_bytes(hashlib.sha256(f"{var}={job}".encode()).digest()[:8], "little")
    raise ConfigError(
        "seed=None on several ranks needs a seed every rank agrees on: pass seed=, or "
        "initialise torch.distributed before creating the loader"
    )


def _field_selection(
    dataset: SlipstreamDataset, fields: Sequence[str] | None, exclude: Sequence[str] | None
) -> list[str] | None:
    """The fields to load: ``fields``, or every field but ``exclude``, or all (``None``)."""
    if exclude is None:
        return None if fields is None else list(fields)
    if fields is not None:
        raise ConfigError("pass fields= or exclude_fields=, not both")
    names = [f.name for f in dataset.fields]
    unknown = [n for n in exclude if n not in names]
    if unknown:
        raise ConfigError(
            f"exclude_fields names {unknown}, which the dataset lacks (it has {names})"
        )
    return [n for n in names if n not in exclude]


def _pipeline_device(device: Any, specs: dict[str, PipelineSpec]) -> int | None:
    """Where the pipelines run: the loader's ``device=`` and the stages' must agree."""
    named = {s.device for s in specs.values() if s.device is not None}
    loader = parse_device(device)
    if not named:
        return loader
    if len(named) > 1:
        raise ConfigError(
            f"the pipelines' stages name different devices ({sorted(map(str, named))}): "
            "slipstream runs every pipeline of a loader on one device"
        )
    stage = named.pop()
    ordinal = None if stage == "cpu" else int(stage)
    if device is not None and loader != ordinal:
        raise ConfigError(
            f"the loader's device={device!r} and its stages' device "
            f"({'cpu' if ordinal is None else f'cuda:{ordinal}'}) differ: in slipstream one "
            "device holds the pipelines' outputs and the batch, so give one of them"
        )
    return ordinal


class SlipstreamLoader:
    """Batches of a :class:`SlipstreamDataset`, prepared ahead on background threads.

    Each batch is a dict: ``"index"`` (int64 [B], the dataset index of each sample; also as
    ``"_indices"``, upstream slipstream's name, which a field called ``index`` leaves), then one
    entry per field: scalars as tensors [B] (``int`` → int64, ``float`` → float64, ``bool``),
    arrays of one shape as tensors [B, ...], ``str`` fields as lists, and byte/image fields as
    a :class:`RaggedBatch`. Tensors are torch tensors when torch is importable, numpy arrays
    otherwise or with ``output="numpy"``; both share slipstream's memory (DLPack, no copy) and
    stay valid as long as you hold them.

    The order is a pure function of ``(seed, epoch)``. Each iteration starts the next epoch
    (at its first batch: an iterator left unused takes none) unless :meth:`set_epoch` chose
    one. With several ranks (``rank``/``world_size``, else
    ``torch.distributed``, else ``RANK``/``WORLD_SIZE``), every sample is seen once per epoch
    across ranks, like ``torch.utils.data.DistributedSampler``: padded by wrap-around to a
    multiple of the world size, or cut to one with ``drop_last``, which also drops an
    incomplete last batch.

    Args:
        dataset: the dataset.
        batch_size: samples per batch.
        shuffle: random order each epoch; ``False`` keeps index order.
        seed: the shuffle seed; ``None`` draws one (shared across ranks).
        drop_last: drop the incomplete last batch (and cut the sample list to a multiple of
            the world size).
        indices: load only these samples.
        distributed, rank, world_size: see above; ``distributed=False`` ignores the
            environment.
        batches_ahead: batches prepared ahead of the consumer.
        pipelines: image pipelines, ``{output name: [stages]}`` or ``{name: Pipeline(...)}``
            (see :mod:`slipstream.transforms`): each turns an image field into a tensor
            ``[B, 3, H, W]`` (``[B, views, 3, H, W]`` with several views). The fields they
            read are not also loaded raw.
        order: ``"random"``, or ``"quasi_random"`` for datasets larger than RAM: shuffled
            pages of the cache (a LitData dataset's chunks), samples shuffled within a window
            of pages, so each rank reads a bounded set of pages at a time; a LitData dataset
            on S3 then streams in, its chunks fetched in the order the epoch reads them, and
            the first batch comes after a few chunks instead of the whole download.
        fields: names of the fields to load (default: all).
        exclude_fields: names of fields not to load (upstream slipstream's option; the
            opposite of ``fields``).
        num_threads: threads copying batches (default: one per core).
        output: ``"auto"``, ``"torch"`` or ``"numpy"``.
        dtype: pipeline output type: ``"uint8"``, ``"float16"``, ``"bfloat16"`` or
            ``"float32"``; default float32 with Normalize, uint8 without.
        memory_format: ``"contiguous"`` (NCHW) or ``"channels_last"`` (NHWC in memory,
            as ``torch.channels_last``).
        reduced_decode: decode JPEGs at 1/2, 1/4 or 1/8 resolution (libjpeg's DCT-domain
            scaling) when every crop of the image is at least 2, 4 or 8 times the output;
            ``False`` resizes every crop from full-resolution pixels, as torchvision does.
            Either way only the rows and MCU columns the crops need are decoded (exactly).
        on_error: ``"raise"`` a :class:`DecodeError` for an image that does not decode, or
            ``"skip"`` it: the sample is replaced by another, chosen deterministically,
            and counted in :meth:`stats`.
        max_image_pixels: images with more pixels (width x height, read from the header
            before anything is allocated) are broken images, as ``on_error`` says: a guard
            against decompression bombs, by default where Pillow's raises an error (twice
            its ``Image.MAX_IMAGE_PIXELS``, 179 megapixels). ``None`` accepts any size.
        load_truncated_images: decode JPEGs that end early, their missing rows grey, as
            Pillow's ``ImageFile.LOAD_TRUNCATED_IMAGES`` does; by default they are broken
            images like any other corrupt JPEG.
        device: where pipelines run (a stage's ``device=`` says the same; the two must
            agree): ``"cpu"`` (default), or ``"cuda"``/``"cuda:N"``/a
            ``torch.device``: JPEGs decoded by nvJPEG (the GPU's hardware engine where it has
            one) and transformed by slipstream's CUDA kernels, with the same crops and flips
            as on the CPU; pipeline outputs, the index and every numeric field are then CUDA
            tensors, in the loader's stream order (strings and variable-length values stay on
            the host). ``"cuda"`` is torch's current device, else ``LOCAL_RANK``, else 0. Raises
            :class:`CudaError` when there is no usable GPU.
        decoder: who decodes JPEGs for ``device="cuda"``: ``"auto"`` (nvJPEG: the GPU's
            hardware JPEG engine on A100/H100/H200 for the images it takes, nvJPEG's CUDA
            backend for the rest, the CPU for what nvJPEG cannot decode), ``"cuda"`` (no
            hardware engine) or ``"cpu"`` (libjpeg-turbo on the host threads; the GPU only
            transforms).
        pin_memory: with CPU outputs, copy each batch's tensors into page-locked memory on a
            thread, one batch ahead (as torch's DataLoader does), so that
            ``.cuda(non_blocking=True)`` overlaps with the GPU's work. Needs a CUDA GPU.
        after_batch_transforms: functions ``batch -> batch`` run in order on every finished
            batch dict: :class:`MixUp`, :class:`CutMix`, :class:`RandomChoice` (drawn from
            ``seed``), or your own for what slipstream has no stage for (a torchvision v2
            transform); they run in the consuming thread, after the batch left the prefetch
            queue (on a GPU, on the current stream, which waits for the loader's), after
            each pipeline's own ``Pipeline(after_batch=[...])`` functions.
        upstream_options: upstream slipstream's other loader options, accepted where they
            mean the same here (``force_rebuild``, ``verbose``, ``image_field``,
            ``image_format`` (``"yuv420"``: the dataset's yuv420 encoding),
            ``use_threading``, ``presync_s3``, ``presync_s3_workers``); the rest raise an
            error that says what to use instead (docs/MIGRATING.md).

    Example:
        >>> loader = SlipstreamLoader(demo_dataset, batch_size=32, seed=0, output="numpy")
        >>> len(loader)
        3
        >>> batch = next(iter(loader))
        >>> sorted(batch)
        ['_indices', 'image', 'index', 'label']
        >>> batch["label"].dtype, batch["index"].shape
        (dtype('int64'), (32,))
    """

    def __init__(
        self,
        dataset: SlipstreamDataset,
        batch_size: int,
        shuffle: bool = True,
        seed: int | None = None,
        drop_last: bool = False,
        indices: Sequence[int] | None = None,
        distributed: bool | None = None,
        rank: int | None = None,
        world_size: int | None = None,
        batches_ahead: int = 3,
        pipelines: dict[str, Any] | None = None,
        order: str = "random",
        *,
        fields: Sequence[str] | None = None,
        num_threads: int | None = None,
        output: str = "auto",
        dtype: str | None = None,
        memory_format: str = "contiguous",
        reduced_decode: bool = True,
        on_error: str = "raise",
        max_image_pixels: int | None = MAX_IMAGE_PIXELS,
        load_truncated_images: bool = False,
        device: Any = None,
        decoder: str = "auto",
        pin_memory: bool = False,
        exclude_fields: Sequence[str] | None = None,
        after_batch_transforms: Sequence[Any] | None = None,
        **upstream_options: Any,
    ) -> None:
        if not isinstance(dataset, SlipstreamDataset):
            raise ConfigError(f"dataset must be a SlipstreamDataset, not {type(dataset).__name__}")
        if isinstance(batch_size, bool) or int(batch_size) < 1:
            raise ConfigError(f"batch_size must be a positive integer, not {batch_size!r}")
        self.dataset = dataset
        self.batch_size = int(batch_size)
        self.shuffle = bool(shuffle)
        self.drop_last = bool(drop_last)
        self.order = order
        self.rank, self.world_size = _resolve_rank(distributed, rank, world_size)
        self.seed = _resolve_seed(seed, self.world_size)
        self._indices = None if indices is None else [int(i) for i in indices]
        self._batches_ahead = int(batches_ahead)
        upstream = _upstream.loader_options(dataset, upstream_options)
        if upstream["force_rebuild"]:
            dataset._reopen(rebuild=True)
        if upstream["encoding"]:
            self.dataset = dataset = dataset.encoded(upstream["encoding"])
        self._verbose = upstream["verbose"]
        self._fields = _field_selection(dataset, fields, exclude_fields)
        self._num_threads = 0 if num_threads is None else int(num_threads)
        specs = {
            name: pipeline_spec(
                name,
                p,
                dtype=dtype,
                memory_format=memory_format,
                reduced_decode=reduced_decode,
            )
            for name, p in (pipelines or {}).items()
        }
        self._pipelines = [spec.native for spec in specs.values()]
        self._finish = {name: s for name, s in specs.items() if s.finishes}
        self._after_batch = list(after_batch_transforms or [])
        for f in self._after_batch:
            if not callable(f):
                raise ConfigError(f"after_batch_transforms must be callables, not {f!r}")
        self._on_error = on_error
        self._max_image_pixels = None if max_image_pixels is None else int(max_image_pixels)
        self._load_truncated_images = bool(load_truncated_images)
        self._device = _pipeline_device(device, specs)
        self._decoder = decoder
        if self._device is not None:
            if not self._pipelines:
                raise ConfigError(
                    "device='cuda' runs image pipelines on the GPU (and brings each batch's "
                    "numeric fields there), and this loader has no pipelines"
                )
            if output == "numpy" or (output == "auto" and not torch_available()):
                raise ConfigError(
                    "CUDA outputs are torch tensors: install torch and use output='torch' "
                    "(numpy arrays cannot hold GPU memory)"
                )
            point_at_nvjpeg()
        self._pin_memory = bool(pin_memory)
        if self._pin_memory:
            check_pin_memory(output, self._device)
        self._convert = converter(output)
        self._native = self._make_native()
        self._next_epoch = 0
        self._resume: tuple[int, int] | None = None
        self._active: list[int] | None = None
        self._running: list[Any] = []  # the epochs' native iterators, for shutdown()

    def _make_native(self) -> Any:
        return _native.Loader(
            self.dataset._native,
            self.batch_size,
            seed=self.seed,
            order=self.order,
            shuffle=self.shuffle,
            drop_last=self.drop_last,
            indices=self._indices,
            rank=self.rank,
            world_size=self.world_size,
            batches_ahead=self._batches_ahead,
            fields=self._fields,
            num_threads=self._num_threads,
            pipelines_json=json.dumps(self._pipelines),
            on_error=self._on_error,
            max_image_pixels=self._max_image_pixels,
            load_truncated_images=self._load_truncated_images,
            device=self._device,
            decoder=self._decoder,
        )

    def __len__(self) -> int:
        """Batches per epoch on this rank."""
        return len(self._native)

    def set_epoch(self, epoch: int) -> None:
        """Make the next ``iter()`` run ``epoch``.

        Example:
            >>> loader = SlipstreamLoader(demo_dataset, batch_size=32, seed=0, output="numpy")
            >>> loader.set_epoch(5)
            >>> first = next(iter(loader))["index"].tolist()
            >>> first == loader.batch_indices(5)[0]
            True
        """
        self._next_epoch = int(epoch)
        if self._resume is not None and self._resume[0] != epoch:
            self._resume = None

    def batch_indices(self, epoch: int) -> list[list[int]]:
        """The dataset indices of every batch of ``epoch`` on this rank, in order.

        Example:
            >>> loader = SlipstreamLoader(demo_dataset, batch_size=40, seed=1, output="numpy")
            >>> [len(b) for b in loader.batch_indices(0)]
            [40, 40, 16]
        """
        return self._native.plan(int(epoch))

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return self._run()

    def _run(self) -> Iterator[dict[str, Any]]:
        # A generator: the epoch is taken when the first batch is asked for, so an iterator
        # made and dropped unused (Lightning makes one to check the loader) takes none.
        epoch = self._next_epoch
        start = 0
        if self._resume is not None and self._resume[0] == epoch:
            start = self._resume[1]
        self._resume = None
        self._next_epoch = epoch + 1
        native = self._native.iter(epoch, start)
        self._running.append(native)
        active = [epoch, start]
        self._active = active
        batches = pin_ahead(native, self._value) if self._pin_memory else native
        try:
            for raw in batches:
                active[1] = raw.pop("__position__") + 1
                yield self._batch(raw, epoch)
            if self._active is active:
                self._active = None
        finally:
            if batches is not native:
                batches.close()  # stops the pinning thread
            native.close()
            self._running.remove(native)

    def _value(self, v: Any) -> Any:
        if isinstance(v, _native.Tensor):
            return self._convert(v)
        if isinstance(v, _native.Ragged):
            return RaggedBatch(v, self._convert)
        return v

    def load(self, indices: Sequence[int], epoch: int = 0) -> dict[str, Any]:
        """One batch of exactly these samples, made now on this thread (no prefetch), with the
        random choices of ``epoch``: the same values the loader yields for them.

        Example:
            >>> loader = SlipstreamLoader(demo_dataset, batch_size=32, seed=0, output="numpy")
            >>> first = next(iter(loader))
            >>> again = loader.load(first["index"].tolist(), epoch=0)
            >>> bool((again["label"] == first["label"]).all())
            True
        """
        raw = self._native.load(int(epoch), [int(i) for i in indices])
        raw.pop("__position__")
        return self._batch(raw, int(epoch))

    def _batch(self, raw: dict[str, Any], epoch: int) -> dict[str, Any]:
        batch = {name: self._value(v) for name, v in raw.items()}
        for name, spec in self._finish.items():
            batch[name] = spec.finish(batch[name])
        for f in self._after_batch:
            keyed = isinstance(f, mixing.KEYED)  # draws from (seed, epoch, first index)
            batch = f(batch, key=(self.seed, epoch)) if keyed else f(batch)
        return batch

    def stats(self) -> dict[str, int | float]:
        """Counters since the loader was made: images decoded by pipelines, and samples
        replaced because their image did not decode (``on_error="skip"``). On a GPU also
        the images each decoder took (``decoded_hardware``: the JPEG engine,
        ``decoded_cuda``: nvJPEG's CUDA backend, ``decoded_cpu``: the fallback for what
        nvJPEG cannot decode), ``gpu_memory_bytes``, the device memory the loader holds, and
        where the time of its ``gpu_batches`` went, in seconds summed over batches: on the
        prefetch thread ``host_prepare_s`` (headers, gathering into pinned memory, choosing
        decoders), ``host_wait_s`` (waiting for the GPU), ``host_submit_s`` (nvJPEG calls,
        CPU fallback, kernel launches); on the GPU, over ``gpu_timed_batches`` completed
        batches, ``gpu_decode_s`` and ``gpu_transform_s``. The largest term is what limits
        the loader (docs/TUNING.md).

        Example:
            >>> SlipstreamLoader(demo_dataset, batch_size=8).stats()
            {'images': 0, 'replaced': 0}
        """
        return dict(self._native.stats())

    @property
    def device_info(self) -> str:
        """Where the pipelines run, in words: ``"cpu"``, or the GPU and its decoders.

        Example:
            >>> SlipstreamLoader(demo_dataset, batch_size=8).device_info
            'cpu'
        """
        return str(self._native.device_info())

    def state_dict(self) -> dict[str, Any]:
        """Where the loader is: restoring it resumes on the batch after the last one yielded.

        Example:
            >>> loader = SlipstreamLoader(demo_dataset, batch_size=32, seed=0, output="numpy")
            >>> it = iter(loader); first = next(it)
            >>> state = loader.state_dict()
            >>> state["epoch"], state["batches_done"]
            (0, 1)
            >>> again = SlipstreamLoader(demo_dataset, batch_size=32, output="numpy")
            >>> again.load_state_dict(state)
            >>> bool((next(iter(again))["index"] == next(it)["index"]).all())
            True
        """
        if self._active is not None:
            epoch, done = self._active
        else:
            epoch, done = self._next_epoch, 0
        if self._resume is not None:
            epoch, done = self._resume
        return {
            "epoch": epoch,
            "batches_done": done,
            "seed": self.seed,
            "batch_size": self.batch_size,
            "rank": self.rank,
            "world_size": self.world_size,
            "num_samples": len(self.dataset),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Resume from :meth:`state_dict`: the next ``iter()`` continues that epoch."""
        for key in ("batch_size", "world_size", "num_samples"):
            mine = len(self.dataset) if key == "num_samples" else getattr(self, key)
            if key in state and state[key] != mine:
                raise ConfigError(
                    f"the state was saved with {key}={state[key]}, this loader has {mine}"
                )
        if int(state["seed"]) != self.seed:
            self.seed = int(state["seed"])
            self._native = self._make_native()
        self._active = None
        self._next_epoch = int(state["epoch"])
        self._resume = (int(state["epoch"]), int(state["batches_done"]))

    def warmup_cache(self, verbose: bool | None = None) -> dict[str, Any]:
        """Read the cache file once from end to end, so that the first epoch finds it in the
        page cache (upstream slipstream's method; nothing is decoded). Returns
        ``elapsed_sec``, ``total_bytes``, ``throughput_mb_s``, ``cache_dir`` and
        ``num_files``; ``verbose`` (default: the loader's) prints that.

        Example:
            >>> stats = SlipstreamLoader(demo_dataset, batch_size=8).warmup_cache(verbose=False)
            >>> stats["num_files"], stats["total_bytes"] == os.path.getsize(demo_dataset.cache_path)
            (1, True)
        """
        path = self.dataset.cache_path
        start = time.perf_counter()
        total = 0
        chunk = bytearray(16 << 20)
        with open(path, "rb", buffering=0) as f:
            if hasattr(os, "posix_fadvise"):
                os.posix_fadvise(f.fileno(), 0, 0, os.POSIX_FADV_SEQUENTIAL)
            while n := f.readinto(chunk):
                total += n
        elapsed = time.perf_counter() - start
        stats = {
            "elapsed_sec": elapsed,
            "total_bytes": total,
            "throughput_mb_s": total / 1e6 / elapsed if elapsed > 0 else float("inf"),
            "cache_dir": os.path.dirname(path),
            "num_files": 1,
        }
        if self._verbose if verbose is None else verbose:
            print(
                f"slipstream: read {total / 1e6:.0f} MB of {path} in {elapsed:.1f} s "
                f"({stats['throughput_mb_s']:.0f} MB/s)",
                file=sys.stderr,
            )
        return stats

    def shutdown(self) -> None:
        """Stop preparing batches now (an epoch in progress ends; a new ``iter()`` starts
        again). Upstream slipstream's method; dropping the loader does the same."""
        for native in list(self._running):
            native.close()

    def __repr__(self) -> str:
        return (
            f"SlipstreamLoader(batch_size={self.batch_size}, batches={len(self)}, "
            f"rank={self.rank}/{self.world_size}, seed={self.seed})"
        )
