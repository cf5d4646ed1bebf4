"""Turning native tensors into torch tensors or numpy arrays (zero copy, through DLPack)."""

from __future__ import annotations

import importlib.util
import queue
import sys
import threading
from collections.abc import Callable, Iterator
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


def check_pin_memory(output: str, device: Any) -> None:
    """``pin_memory=True`` needs torch outputs on the host and a CUDA GPU torch can use."""
    if device is not None:
        raise ConfigError(
            "pin_memory=True is for CPU outputs; with device= the batches are on the GPU already"
        )
    if output == "numpy" or not torch_available():
        raise ConfigError("pin_memory=True makes torch tensors: install torch, output='torch'")
    import torch

    if not torch.cuda.is_available():
        raise ConfigError(
            "pin_memory=True needs a CUDA GPU that torch can use (page-locked memory is CUDA's); "
            "torch.cuda.is_available() is False here"
        )


_END = object()


def pin_ahead(batches: Iterator[dict[str, Any]], value: Converter) -> Iterator[dict[str, Any]]:
    """``batches`` with their values converted by ``value`` and every tensor copied into
    page-locked memory by a thread, one batch ahead, as torch's DataLoader pins: so
    ``.cuda(non_blocking=True)`` overlaps with the GPU's work. The copy goes through torch's
    pinned-memory allocator, which keeps the memory until copies queued from it are done."""
    ready: queue.Queue[Any] = queue.Queue(maxsize=1)
    stop = threading.Event()

    def put(item: Any) -> bool:
        while not stop.is_set():
            try:
                ready.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def pin(v: Any) -> Any:
        v = value(v)
        return v.pin_memory() if hasattr(v, "pin_memory") else v

    def work() -> None:
        try:
            for raw in batches:
                if not put({k: pin(v) for k, v in raw.items()}):
                    return
            put(_END)
        except BaseException as e:  # handed to the consumer, raised there
            put(e)

    thread = threading.Thread(target=work, name="slipstream-pin-memory", daemon=True)
    thread.start()
    try:
        while (item := ready.get()) is not _END:
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        thread.join()


def torch_distributed() -> Any:
    """``torch.distributed`` if torch is loaded and a process group is initialised."""
    torch = sys.modules.get("torch")
    if torch is None:
        return None
    dist = torch.distributed
    if dist.is_available() and dist.is_initialized():
        return dist
    return None
