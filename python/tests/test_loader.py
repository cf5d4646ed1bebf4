"""SlipstreamLoader: batch contents, DLPack, sampling, distribution, resume, threads."""

from __future__ import annotations

import gc
import itertools
import os
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import slipstream
import torch
from slipstream import SlipstreamDataset, SlipstreamLoader


@pytest.fixture(scope="module")
def flat(flat_dir: Path) -> SlipstreamDataset:
    return SlipstreamDataset(flat_dir, progress=False)


@pytest.fixture(scope="module")
def full(full_dir: Path) -> SlipstreamDataset:
    return SlipstreamDataset(full_dir, progress=False)


def prefetch_threads() -> int:
    count = 0
    for task in os.listdir("/proc/self/task"):
        try:
            with open(f"/proc/self/task/{task}/comm") as f:
                count += f.read().startswith("slipstream-pref")
        except FileNotFoundError:
            pass
    return count


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def order(loader: SlipstreamLoader) -> list[int]:
    return [i for batch in loader for i in batch["index"].tolist()]


# -- batch contents ---------------------------------------------------------------------------


def test_batch_holds_the_samples_it_names(flat: SlipstreamDataset) -> None:
    loader = SlipstreamLoader(flat, batch_size=10, seed=3)
    batch = next(iter(loader))
    assert sorted(batch) == ["_indices", "caption", "image", "index", "keep", "label", "weight"]
    index = batch["index"]
    assert isinstance(index, torch.Tensor) and index.dtype == torch.int64 and index.shape == (10,)
    assert batch["label"].dtype == torch.int64
    assert batch["weight"].dtype == torch.float64
    assert batch["keep"].dtype == torch.bool
    images = batch["image"]
    assert isinstance(images, slipstream.RaggedBatch) and len(images) == 10
    assert images.data.dtype == torch.uint8 and images.offsets.shape == (11,)
    for k, i in enumerate(index.tolist()):
        sample = flat[i]
        assert images[k] == sample["image"]
        assert (
            bytes(images.data[images.offsets[k] : images.offsets[k + 1]].numpy()) == sample["image"]
        )
        assert batch["label"][k] == sample["label"]
        assert batch["weight"][k] == sample["weight"]
        assert bool(batch["keep"][k]) == sample["keep"]
        assert batch["caption"][k] == sample["caption"]
        assert (images.heights[k], images.widths[k]) == (16, 24)
    assert images[-1] == images[9] and images[2:4] == [images[2], images[3]]
    with pytest.raises(IndexError):
        images[10]


def test_numpy_output(flat: SlipstreamDataset) -> None:
    batch = next(iter(SlipstreamLoader(flat, batch_size=4, seed=0, output="numpy")))
    assert isinstance(batch["index"], np.ndarray) and batch["index"].dtype == np.int64
    assert isinstance(batch["image"].data, np.ndarray)
    with pytest.raises(slipstream.ConfigError):
        SlipstreamLoader(flat, batch_size=4, output="jax")


def test_arrays_pil_and_strings(full: SlipstreamDataset) -> None:
    loader = SlipstreamLoader(full, batch_size=5, seed=1, drop_last=True)
    for batch in loader:
        idx = batch["index"].tolist()
        assert batch["np2d"].shape == (5, 2, 3) and batch["np2d"].dtype == torch.float32
        assert batch["t2d"].shape == (5, 3, 2) and batch["t2d"].dtype == torch.int64
        ragged = batch["np1d"]  # one dtype, varying shape: bytes plus offsets
        pil = batch["pil"]
        for k, i in enumerate(idx):
            s = full[i]
            assert np.array_equal(batch["np2d"][k].numpy(), s["np2d"])
            assert torch.equal(batch["t2d"][k], s["t2d"])
            assert np.frombuffer(ragged[k], dtype=np.int16).tolist() == s["np1d"].tolist()
            assert pil[k] == s["pil"].tobytes() and pil.modes[k] == s["pil"].mode
            assert (pil.heights[k], pil.widths[k]) == (s["pil"].height, s["pil"].width)
            assert batch["name"][k] == s["name"]


def test_fields_selection(flat: SlipstreamDataset) -> None:
    batch = next(iter(SlipstreamLoader(flat, batch_size=4, fields=["label"])))
    assert sorted(batch) == ["_indices", "index", "label"]
    with pytest.raises(slipstream.ConfigError, match="no field named 'nope'"):
        SlipstreamLoader(flat, batch_size=4, fields=["nope"])


def test_dlpack_is_versioned_and_zero_copy(flat: SlipstreamDataset) -> None:
    native = flat._native
    raw = next(
        slipstream._native.Loader(
            native,
            8,
            seed=0,
            order="random",
            drop_last=False,
            indices=None,
            rank=0,
            world_size=1,
            batches_ahead=1,
            fields=None,
            num_threads=0,
            pipelines_json="[]",
            on_error="raise",
        ).iter(0, 0)
    )
    labels = raw["label"]
    capsule = labels.__dlpack__(max_version=(1, 0))
    assert "dltensor_versioned" in repr(capsule)
    assert "dltensor" in repr(labels.__dlpack__())
    assert labels.__dlpack_device__() == (1, 0)
    as_torch = torch.from_dlpack(labels)
    as_numpy = np.from_dlpack(labels)
    assert as_torch.data_ptr() == as_numpy.ctypes.data, "both views share slipstream's memory"
    assert as_torch.data_ptr() % 256 == 0
    data = raw["image"].data
    assert torch.from_dlpack(data).data_ptr() == np.from_dlpack(data).ctypes.data
    # The memory outlives every Python object but the consumer's view.
    del raw, labels, data
    gc.collect()
    assert as_numpy.tolist() == as_torch.tolist()


# -- held batches and threads -----------------------------------------------------------------


def test_list_of_batches_keeps_every_batch(flat: SlipstreamDataset) -> None:
    loader = SlipstreamLoader(flat, batch_size=8, seed=5, batches_ahead=2)
    batches = list(loader) + list(loader)
    assert len(batches) == 2 * 13
    for batch in batches:
        for k, i in enumerate(batch["index"].tolist()):
            assert batch["image"][k] == flat[i]["image"]
            assert batch["label"][k] == i % 10


def test_breaking_out_ends_the_thread(flat: SlipstreamDataset) -> None:
    loader = SlipstreamLoader(flat, batch_size=4, seed=0)
    for _ in loader:
        break
    gc.collect()
    assert prefetch_threads() == 0


def test_exception_in_consumer_ends_the_thread(flat: SlipstreamDataset) -> None:
    loader = SlipstreamLoader(flat, batch_size=4, seed=0)
    with pytest.raises(ZeroDivisionError):
        for _ in loader:
            1 / 0  # noqa: B018
    gc.collect()
    assert prefetch_threads() == 0


def test_deleting_the_loader_mid_epoch(flat: SlipstreamDataset) -> None:
    loader = SlipstreamLoader(flat, batch_size=4, seed=0)
    it = iter(loader)
    kept = next(it)
    del loader, it
    gc.collect()
    assert prefetch_threads() == 0
    assert kept["image"][0] == flat[int(kept["index"][0])]["image"]


def test_200_iterators_leak_no_threads_or_memory(flat: SlipstreamDataset) -> None:
    loader = SlipstreamLoader(flat, batch_size=16, seed=0)
    for _ in range(20):
        next(iter(loader))
    gc.collect()
    before = rss_bytes()
    for n in range(200):
        it = iter(loader)
        next(it)
        if n % 2:
            next(it)
        del it
    gc.collect()
    assert prefetch_threads() == 0
    assert rss_bytes() - before < 20 * 2**20


# -- sampling ---------------------------------------------------------------------------------


def test_order_depends_only_on_seed_and_epoch(flat: SlipstreamDataset) -> None:
    a = SlipstreamLoader(flat, batch_size=10, seed=7)
    b = SlipstreamLoader(flat, batch_size=33, seed=7, batches_ahead=1, num_threads=1)
    first, second = order(a), order(a)
    assert sorted(first) == list(range(103))
    assert first != second, "each iter() starts the next epoch"
    assert order(b) == first and order(b) == second
    a.set_epoch(0)
    assert order(a) == first
    assert order(SlipstreamLoader(flat, batch_size=10, seed=8)) != first


def test_pin_ahead_keeps_order_raises_and_stops() -> None:
    from slipstream._tensors import pin_ahead

    class Pinnable:
        def __init__(self, n: int) -> None:
            self.n = n

        def pin_memory(self) -> tuple[str, int]:
            return ("pinned", self.n)

    out = list(pin_ahead(({"x": Pinnable(i), "n": i} for i in range(5)), lambda v: v))
    assert out == [{"x": ("pinned", i), "n": i} for i in range(5)]

    def failing() -> Iterator[dict]:
        yield {"x": Pinnable(0)}
        raise slipstream.ConfigError("broken")

    it = pin_ahead(failing(), lambda v: v)
    assert next(it) == {"x": ("pinned", 0)}
    with pytest.raises(slipstream.ConfigError, match="broken"):
        next(it)
    it = pin_ahead(({"x": Pinnable(i)} for i in itertools.count()), lambda v: v)
    next(it)
    it.close()  # the consumer stops early: the thread ends
    assert not [t for t in threading.enumerate() if t.name == "slipstream-pin-memory"]


def test_an_unused_iterator_takes_no_epoch(flat: SlipstreamDataset) -> None:
    loader = SlipstreamLoader(flat, batch_size=10, seed=7)
    iter(loader)  # made and dropped, as Lightning does to check a loader
    assert order(loader) == [i for batch in loader.batch_indices(0) for i in batch]
    assert loader.state_dict()["epoch"] == 1


def test_shuffle_false_is_index_order(flat: SlipstreamDataset) -> None:
    assert order(SlipstreamLoader(flat, batch_size=10, shuffle=False)) == list(range(103))


def test_seed_none_draws_a_seed(flat: SlipstreamDataset) -> None:
    a, b = SlipstreamLoader(flat, batch_size=4), SlipstreamLoader(flat, batch_size=4)
    assert a.seed != b.seed
    assert order(SlipstreamLoader(flat, batch_size=4, seed=a.seed)) == order(a)


@pytest.mark.parametrize("drop_last", [False, True])
def test_len_is_exact(flat: SlipstreamDataset, drop_last: bool) -> None:
    for batch_size in (1, 10, 103, 200):
        loader = SlipstreamLoader(flat, batch_size=batch_size, seed=0, drop_last=drop_last)
        batches = list(loader)
        assert len(batches) == len(loader)
        sizes = [len(b["index"]) for b in batches]
        if drop_last:
            assert len(loader) == 103 // batch_size and all(s == batch_size for s in sizes)
        else:
            assert len(loader) == -(-103 // batch_size) and sum(sizes) == 103


def test_indices_restrict_the_samples(flat: SlipstreamDataset) -> None:
    subset = [3, 99, 50, 7, 12]
    loader = SlipstreamLoader(flat, batch_size=2, seed=0, indices=subset)
    assert len(loader) == 3 and sorted(order(loader)) == sorted(subset)
    with pytest.raises(slipstream.ConfigError, match="indices contains 103"):
        SlipstreamLoader(flat, batch_size=2, indices=[103])


@pytest.mark.parametrize("order_name", ["random", "quasi_random"])
@pytest.mark.parametrize(("world", "drop_last"), [(3, False), (3, True), (4, False), (5, True)])
def test_distributed_like_distributed_sampler(
    flat: SlipstreamDataset, order_name: str, world: int, drop_last: bool
) -> None:
    per_rank = 103 // world if drop_last else -(-103 // world)
    seen: list[int] = []
    for rank in range(world):
        loader = SlipstreamLoader(
            flat,
            batch_size=4,
            seed=2,
            rank=rank,
            world_size=world,
            drop_last=drop_last,
            order=order_name,
        )
        samples = [i for indices in loader.batch_indices(0) for i in indices]
        assert len(samples) == (per_rank // 4 * 4 if drop_last else per_rank)
        seen += samples
        assert order(loader) == samples
    if drop_last:
        assert len(seen) == len(set(seen)), "no sample twice when dropping"
    else:
        assert set(seen) == set(range(103)), "every sample at least once"
        assert len(seen) == per_rank * world, "padded by wrap-around"


def test_rank_from_the_environment(
    flat: SlipstreamDataset, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "2")
    loader = SlipstreamLoader(flat, batch_size=4, seed=0)
    assert (loader.rank, loader.world_size) == (1, 2)
    explicit = SlipstreamLoader(flat, batch_size=4, seed=0, rank=1, world_size=2)
    assert order(loader) == order(explicit)
    assert SlipstreamLoader(flat, batch_size=4, seed=0, distributed=False).world_size == 1
    with pytest.raises(slipstream.ConfigError, match="needs a seed every rank agrees on"):
        SlipstreamLoader(flat, batch_size=4)
    monkeypatch.setenv("TORCHELASTIC_RUN_ID", "job-42")
    r0 = SlipstreamLoader(flat, batch_size=4, rank=0, world_size=2)
    r1 = SlipstreamLoader(flat, batch_size=4, rank=1, world_size=2)
    assert r0.seed == r1.seed, "ranks of one job agree on the drawn seed"


def test_distributed_needs_a_rank(flat: SlipstreamDataset, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RANK", raising=False)
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    with pytest.raises(slipstream.ConfigError, match="distributed=True"):
        SlipstreamLoader(flat, batch_size=4, distributed=True)
    with pytest.raises(slipstream.ConfigError, match=r"not in 0\.\.world_size"):
        SlipstreamLoader(flat, batch_size=4, rank=2, world_size=2)
    with pytest.raises(slipstream.ConfigError, match="both rank= and world_size="):
        SlipstreamLoader(flat, batch_size=4, rank=0)


def test_rank_and_seed_from_torch_distributed(
    flat: SlipstreamDataset, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import torch.distributed as dist

    monkeypatch.delenv("RANK", raising=False)
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    dist.init_process_group("gloo", init_method=f"file://{tmp_path}/pg", rank=0, world_size=1)
    try:
        loader = SlipstreamLoader(flat, batch_size=4)
        assert (loader.rank, loader.world_size) == (0, 1)
        assert isinstance(loader.seed, int)
    finally:
        dist.destroy_process_group()


def test_quasi_random_is_a_shuffle(flat: SlipstreamDataset) -> None:
    loader = SlipstreamLoader(flat, batch_size=8, seed=1, order="quasi_random")
    first = order(loader)
    assert sorted(first) == list(range(103)) and first != list(range(103))
    assert order(loader) != first
    with pytest.raises(slipstream.ConfigError, match="order must be"):
        SlipstreamLoader(flat, batch_size=8, order="sorted")


# -- resume -----------------------------------------------------------------------------------


def test_state_dict_resumes_on_the_next_batch(flat: SlipstreamDataset) -> None:
    loader = SlipstreamLoader(flat, batch_size=10, seed=4)
    next(iter(loader))  # epoch 0
    it = iter(loader)  # epoch 1
    seen = [next(it)["index"].tolist() for _ in range(4)]
    state = loader.state_dict()
    assert (state["epoch"], state["batches_done"]) == (1, 4)
    rest = [b["index"].tolist() for b in it]

    resumed = SlipstreamLoader(flat, batch_size=10)  # its own seed, replaced by the state's
    resumed.load_state_dict(state)
    resumed.set_epoch(1)  # a training loop calling set_epoch(epoch) keeps the position
    assert [b["index"].tolist() for b in resumed] == rest
    assert resumed.state_dict()["epoch"] == 2
    full = SlipstreamLoader(flat, batch_size=10, seed=4)
    full.set_epoch(1)
    assert [b["index"].tolist() for b in full] == seen + rest


def test_state_after_a_full_epoch_points_at_the_next(flat: SlipstreamDataset) -> None:
    loader = SlipstreamLoader(flat, batch_size=50, seed=0)
    list(loader)
    assert (loader.state_dict()["epoch"], loader.state_dict()["batches_done"]) == (1, 0)
    with pytest.raises(slipstream.ConfigError, match="batch_size=50"):
        SlipstreamLoader(flat, batch_size=10).load_state_dict(loader.state_dict())


# -- arguments and fork -----------------------------------------------------------------------


def test_bad_arguments(flat: SlipstreamDataset) -> None:
    with pytest.raises(slipstream.ConfigError, match="batch_size"):
        SlipstreamLoader(flat, batch_size=0)
    with pytest.raises(slipstream.ConfigError, match="batches_ahead"):
        SlipstreamLoader(flat, batch_size=4, batches_ahead=0)
    with pytest.raises(slipstream.ConfigError, match="must start with RandomResizedCrop"):
        SlipstreamLoader(flat, batch_size=4, pipelines={"image": ["crop"]})
    with pytest.raises(slipstream.ConfigError, match="SlipstreamDataset"):
        SlipstreamLoader([1, 2, 3], batch_size=4)  # type: ignore[arg-type]
    with pytest.raises(ValueError):  # ConfigError is also a ValueError
        SlipstreamLoader(flat, batch_size=-1)


def test_works_in_a_forked_child(flat: SlipstreamDataset) -> None:
    loader = SlipstreamLoader(flat, batch_size=16, seed=9, output="numpy")
    expected = order(loader)
    started = iter(loader)
    next(started)
    loader.set_epoch(0)
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: new iterators work, the parent's does not hang
        status = 0
        try:
            if order(loader) != expected:
                status = 1
            try:
                next(started)
                status = 2
            except slipstream.ConfigError:
                pass
        except BaseException:
            status = 3
        os.write(write, bytes([status]))
        os._exit(0)
    os.waitpid(pid, 0)
    assert os.read(read, 1) == b"\x00"
