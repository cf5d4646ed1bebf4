# Type stubs of the extension module built from src/python.rs and src/tensor/dlpack.rs.
# `make test` checks them against the built module (mypy's stubtest): they cannot go stale.
from collections.abc import Callable, Iterator
from typing import Any, final

__all__ = [
    "MAX_IMAGE_PIXELS",
    "BatchIterator",
    "Dataset",
    "Loader",
    "Ragged",
    "Tensor",
    "__version__",
    "after_fork_in_child",
    "cli_main",
    "decode_image",
    "erasing_params",
    "flip_param",
    "info_json",
    "photometric_params",
    "random_resized_crop_params",
    "set_progress_reporter",
]
__version__: str
MAX_IMAGE_PIXELS: int

@final
class Tensor:
    @property
    def shape(self) -> list[int]: ...
    @property
    def dtype(self) -> str: ...
    def __dlpack__(
        self,
        stream: Any = None,
        *,
        max_version: tuple[int, int] | None = None,
        dl_device: tuple[int, int] | None = None,
        copy: bool | None = None,
    ) -> Any: ...
    def __dlpack_device__(self) -> tuple[int, int]: ...
    def synchronize(self) -> None: ...

@final
class Ragged:
    def __len__(self) -> int: ...
    @property
    def data(self) -> Tensor: ...
    @property
    def offsets(self) -> Tensor: ...
    @property
    def heights(self) -> Tensor | None: ...
    @property
    def widths(self) -> Tensor | None: ...
    @property
    def modes(self) -> list[str] | None: ...
    @property
    def dtype(self) -> str | None: ...
    @property
    def shapes(self) -> list[list[int]] | None: ...
    def item(self, i: int) -> bytes: ...

@final
class Dataset:
    def __new__(
        cls,
        path: str,
        cache_dir: str | None = None,
        rebuild: bool = False,
        progress: bool = True,
        threads: int = 0,
        storage_options: list[tuple[str, str]] = ...,
        remote_cache: str | None = None,
        fingerprint: str = "mtime",
        format: str = "auto",
        encoding: str = "original",
        max_side: int | None = None,
        quality: int | None = None,
        stream: bool = True,
    ) -> Dataset: ...
    def __len__(self) -> int: ...
    @property
    def cache_path(self) -> str: ...
    def header_json(self) -> str: ...
    def sample(self, index: int) -> list[Any]: ...
    def verify(self) -> None: ...

@final
class BatchIterator(Iterator[dict[str, Any]]):
    def __next__(self) -> dict[str, Any]: ...
    def close(self) -> None: ...

@final
class Loader:
    def __new__(
        cls,
        dataset: Dataset,
        batch_size: int,
        *,
        seed: int,
        order: str,
        drop_last: bool,
        indices: list[int] | None,
        rank: int,
        world_size: int,
        batches_ahead: int,
        fields: list[str] | None,
        num_threads: int,
        pipelines_json: str,
        on_error: str,
        device: int | None = None,
        decoder: str = "auto",
        shuffle: bool = True,
        max_image_pixels: int | None = ...,
        load_truncated_images: bool = False,
    ) -> Loader: ...
    def __len__(self) -> int: ...
    def iter(self, epoch: int, start: int) -> BatchIterator: ...
    def plan(self, epoch: int) -> list[list[int]]: ...
    def stats(self) -> dict[str, int | float]: ...
    def device_info(self) -> str: ...
    def load(self, epoch: int, samples: list[int]) -> dict[str, Any]: ...

def cli_main(argv: list[str]) -> int: ...
def info_json() -> str: ...
def random_resized_crop_params(
    seed: int,
    epoch: int,
    sample: int,
    view: int,
    height: int,
    width: int,
    scale: tuple[float, float],
    ratio: tuple[float, float],
) -> tuple[int, int, int, int]: ...
def flip_param(seed: int, epoch: int, sample: int, view: int, p: float) -> bool: ...
def photometric_params(
    stages_json: str, seed: int, epoch: int, sample: int, view: int
) -> list[tuple[str, float | None]]: ...
def erasing_params(
    erasing_json: str, seed: int, epoch: int, sample: int, view: int, height: int, width: int
) -> tuple[int, int, int, int] | None: ...
def decode_image(
    data: bytes, max_image_pixels: int | None = ..., load_truncated_images: bool = False
) -> tuple[int, int, bytes]: ...
def after_fork_in_child() -> None: ...
def set_progress_reporter(reporter: Callable[[str, int, str, int, int], None] | None) -> None: ...
