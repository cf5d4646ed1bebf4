"""``device="cuda"`` from Python.

Everywhere: device parsing and a clear :class:`slipstream.CudaError` when there is no GPU.
On a GPU (``scripts/gpu-check.sh``): CUDA tensors through DLPack, the stream protocol under a
consumer stream, crops identical to the CPU pipeline's, torchvision parity, held batches, and
no growth of memory or threads over many epochs. Tolerances (uint8 scale, per image): against
the CPU pipeline, which decodes with libjpeg-turbo, mean ≤ 1.5 (nvJPEG's IDCT and chroma
upsampling differ slightly); against torchvision on torchvision-decoded pixels, mean ≤ 2.0.
"""

from __future__ import annotations

import gc
import os
import threading

import pytest
import slipstream as ss
from slipstream._cuda import parse_device, point_at_nvjpeg

torch = pytest.importorskip("torch")

GPU = torch.cuda.is_available()
needs_gpu = pytest.mark.skipif(not GPU, reason="needs a CUDA GPU (scripts/gpu-check.sh)")

CPU_MEAN_ABS = 1.5
TORCHVISION_MEAN_ABS = 2.0


def gpu_loader(ds: ss.SlipstreamDataset, stages: list, **kw) -> ss.SlipstreamLoader:
    kw.setdefault("seed", 5)
    kw.setdefault("shuffle", False)
    return ss.SlipstreamLoader(ds, batch_size=16, pipelines={"image": stages}, **kw)


def test_device_strings() -> None:
    assert parse_device(None) is None
    assert parse_device("cpu") is None
    assert parse_device("cuda:3") == 3
    assert parse_device(torch.device("cuda", 2)) == 2
    assert parse_device(torch.device("cpu")) is None
    for bad in ("gpu", "cuda:x", -1, True):
        with pytest.raises(ss.ConfigError):
            parse_device(bad)


def test_default_device_follows_local_rank(monkeypatch: pytest.MonkeyPatch) -> None:
    if GPU:
        assert parse_device("cuda") == torch.cuda.current_device()
    else:
        monkeypatch.setenv("LOCAL_RANK", "3")
        assert parse_device("cuda") == 3


def test_both_nvjpeg_wheels_are_found_for_the_native_loader(
    monkeypatch: pytest.MonkeyPatch, tmp_path
) -> None:
    # As pip lays out nvidia-nvjpeg (CUDA 13) and nvidia-nvjpeg-cu12, in two site directories.
    cu13 = tmp_path / "a" / "nvidia" / "cu13" / "lib" / "libnvjpeg.so.13"
    cu12 = tmp_path / "b" / "nvidia" / "nvjpeg" / "lib" / "libnvjpeg.so.12"
    for lib in (cu13, cu12):
        lib.parent.mkdir(parents=True)
        lib.write_bytes(b"")
    monkeypatch.setattr("sys.path", [str(tmp_path / "b"), str(tmp_path / "a"), str(tmp_path)])
    monkeypatch.delenv("SLIPSTREAM_NVJPEG_WHEELS", raising=False)
    point_at_nvjpeg()
    assert os.environ["SLIPSTREAM_NVJPEG_WHEELS"] == f"{cu13}{os.pathsep}{cu12}"
    monkeypatch.setattr("sys.path", [str(tmp_path)])
    point_at_nvjpeg()
    assert os.environ["SLIPSTREAM_NVJPEG_WHEELS"] == ""


def test_cuda_needs_pipelines_and_torch_output(demo_dataset) -> None:
    with pytest.raises(ss.ConfigError, match="numpy"):
        gpu_loader(demo_dataset, [ss.CenterCrop(224)], device="cuda", output="numpy")
    with pytest.raises(ss.ConfigError, match="pipelines"):
        ss.SlipstreamLoader(demo_dataset, batch_size=4, device="cuda")


@pytest.mark.skipif(GPU, reason="this machine has a GPU")
def test_pin_memory_needs_a_gpu_and_cpu_outputs(demo_dataset) -> None:
    with pytest.raises(ss.ConfigError, match="CUDA GPU"):
        gpu_loader(demo_dataset, [ss.CenterCrop(64)], pin_memory=True)
    with pytest.raises(ss.ConfigError, match="CPU outputs"):
        gpu_loader(demo_dataset, [ss.CenterCrop(64)], pin_memory=True, device="cuda")


@pytest.mark.skipif(GPU, reason="this machine has a GPU")
def test_no_gpu_is_a_clear_error(demo_dataset) -> None:
    with pytest.raises(ss.CudaError) as e:
        gpu_loader(demo_dataset, [ss.RandomResizedCrop(224)], device="cuda")
    message = str(e.value)
    assert "CUDA" in message and "device=" in message, message


# -- on a GPU ---------------------------------------------------------------------------------


@needs_gpu
def test_batches_are_cuda_tensors(demo_dataset) -> None:
    lo = gpu_loader(
        demo_dataset,
        [ss.RandomResizedCrop(224), ss.RandomHorizontalFlip(), ss.Normalize()],
        device="cuda",
        dtype="float16",
        memory_format="channels_last",
    )
    assert lo.device_info.startswith("cuda:0"), lo.device_info
    batches = iter(lo)
    batch = next(batches)
    image = batch["image"]
    assert image.device.type == "cuda" and image.dtype == torch.float16
    assert image.shape == (16, 3, 224, 224)
    assert image.is_contiguous(memory_format=torch.channels_last)
    for key in ("label", "index", "_indices"):
        assert batch[key].device == image.device, key
    assert torch.isfinite(image).all()
    stats = lo.stats()
    assert stats["images"] >= 16 and stats["decoded_cpu"] == 0, stats
    assert stats["decoded_hardware"] + stats["decoded_cuda"] >= 16, stats
    assert stats["gpu_memory_bytes"] > 0
    for _ in batches:  # the rest of the epoch: every batch but the last has completed on the GPU
        pass
    stats = lo.stats()
    assert stats["gpu_batches"] >= 6 and stats["gpu_timed_batches"] >= stats["gpu_batches"] - 1
    assert stats["host_prepare_s"] > 0 and stats["host_submit_s"] > 0, stats
    assert stats["gpu_decode_s"] > 0 and stats["gpu_transform_s"] > 0, stats


SIMCLR = [
    ss.RandomResizedCrop(224),
    ss.RandomHorizontalFlip(),
    ss.RandomApply([ss.ColorJitter(0.4, 0.4, 0.4, 0.1)], p=0.8),
    ss.RandomGrayscale(p=0.2),
    ss.RandomApply([ss.GaussianBlur(23, sigma=(0.1, 2.0))], p=0.5),
    ss.RandomSolarize(128, p=0.2),
    ss.RandomErasing(p=0.5, value=(0, 128, 255)),
]


@needs_gpu
@pytest.mark.parametrize(
    ("stages", "tolerance"),
    [
        ([ss.RandomResizedCrop(224), ss.RandomHorizontalFlip()], CPU_MEAN_ABS),
        ([ss.CenterCrop(224, 256)], CPU_MEAN_ABS),
        ([ss.RandomResizedCrop(224, interpolation="bicubic")], CPU_MEAN_ABS),
        # The same random steps on pixels that differ by the decoders' rounding, which a
        # contrast or brightness above 1 widens.
        (SIMCLR, 2.0),
    ],
    ids=["crop_flip", "center", "bicubic", "simclr_erasing"],
)
def test_same_crops_and_flips_as_the_cpu_pipeline(
    demo_dataset, stages: list, tolerance: float
) -> None:
    gpu = gpu_loader(demo_dataset, stages, device="cuda")
    cpu = gpu_loader(demo_dataset, stages, reduced_decode=False)
    worst = 0.0
    for g, c in zip(gpu, cpu, strict=True):
        assert torch.equal(g["index"].cpu(), c["index"])
        diff = (g["image"].cpu().int() - c["image"].int()).abs().float()
        per_image = diff.flatten(1).mean(1)
        worst = max(worst, per_image.max().item())
        assert per_image.max() <= tolerance, per_image.tolist()
    print(f"GPU vs CPU pipeline, {len(stages)} stages: worst per-image mean {worst:.3f}")


@needs_gpu
def test_yuv420_cache_matches_the_cpu_pipeline(demo_dataset) -> None:
    # The planes go to the GPU as they are and the kernel converts each pixel it reads; the
    # CPU converts the crop's window, then resizes it. The conversion is the same arithmetic,
    # so they differ as the kernel and the CPU pipeline do on RGB.
    yuv = demo_dataset.encoded("yuv420")
    stages = [ss.RandomResizedCrop(224), ss.RandomHorizontalFlip()]
    gpu = gpu_loader(yuv, stages, device="cuda")
    cpu = gpu_loader(yuv, stages)
    for g, c in zip(gpu, cpu, strict=True):
        assert torch.equal(g["index"].cpu(), c["index"])
        diff = (g["image"].cpu().int() - c["image"].int()).abs()
        assert diff.max() <= 2 and diff.float().mean() < 0.3, (diff.max(), diff.float().mean())
    stats = gpu.stats()
    # Planes are read on the host (and uploaded), never decoded.
    assert stats["decoded_cpu"] == stats["images"] > 0, stats


@needs_gpu
@pytest.mark.parametrize(("size", "antialias"), [(224, True), (64, False)])
def test_random_resized_crop_matches_torchvision(demo_dataset, size: int, antialias: bool) -> None:
    from torchvision.io import decode_jpeg
    from torchvision.transforms.v2 import functional as F

    crop, flip = ss.RandomResizedCrop(size, antialias=antialias), ss.RandomHorizontalFlip()
    lo = gpu_loader(demo_dataset, [crop, flip], device="cuda")
    worst = 0.0
    for batch in lo:
        images = batch["image"].cpu()
        for k, i in enumerate(batch["index"].tolist()):
            data = torch.frombuffer(bytearray(demo_dataset[i]["image"]), dtype=torch.uint8)
            img = decode_jpeg(data)
            top, left, h, w = crop.get_params(*img.shape[1:], seed=5, epoch=0, index=i)
            ref = F.resized_crop(img, top, left, h, w, [size, size], antialias=antialias)
            if flip.get_params(seed=5, epoch=0, index=i):
                ref = F.horizontal_flip(ref)
            mean = (images[k].int() - ref.int()).abs().float().mean().item()
            worst = max(worst, mean)
            assert mean <= TORCHVISION_MEAN_ABS, f"sample {i}: {mean:.3f}"
    what = f"resized_crop ({size}, antialias={antialias})"
    print(f"GPU vs torchvision {what}: worst per-image mean {worst:.3f}")


@needs_gpu
def test_stream_protocol_under_a_consumer_stream(demo_dataset) -> None:
    """Tensors taken on a busy side stream are read only after slipstream's kernels, and
    their memory is not reused while that stream may still read it."""
    lo = gpu_loader(demo_dataset, [ss.RandomResizedCrop(224)], device="cuda", batches_ahead=2)
    side = torch.cuda.Stream()
    sums = []
    with torch.cuda.stream(side):
        for batch in lo:
            torch.cuda._sleep(2_000_000)  # keep the consumer stream busy
            image = batch["image"]  # from_dlpack on `side`: waits for our event
            sums.append((batch["index"].clone(), image.float().sum((1, 2, 3))))
            del image, batch  # freed while `side` still has queued work
    torch.cuda.synchronize()
    for index, total in sums:
        again = lo.load(index.tolist(), epoch=0)["image"]
        torch.cuda.synchronize()
        assert torch.equal(total, again.float().sum((1, 2, 3)).to(total.device))


@needs_gpu
def test_numeric_fields_arrive_on_the_gpu_in_stream_order(demo_dataset) -> None:
    gpu = gpu_loader(demo_dataset, [ss.CenterCrop(64)], device="cuda", batches_ahead=2)
    cpu = gpu_loader(demo_dataset, [ss.CenterCrop(64)])
    side = torch.cuda.Stream()
    with torch.cuda.stream(side):
        for g, c in zip(list(gpu) + list(gpu), list(cpu) + list(cpu), strict=True):
            torch.cuda._sleep(1_000_000)  # a busy consumer stream: the copies must wait
            for key in ("index", "_indices", "label"):
                assert g[key].device == torch.device("cuda", 0), key
                assert torch.equal(g[key].cpu(), c[key]), key


@needs_gpu
def test_pin_memory_pins_cpu_outputs(demo_dataset) -> None:
    pinned = gpu_loader(demo_dataset, [ss.CenterCrop(64)], pin_memory=True)
    plain = gpu_loader(demo_dataset, [ss.CenterCrop(64)])
    for p, q in zip(pinned, plain, strict=True):
        for key in ("image", "label", "index"):
            assert p[key].is_pinned() and torch.equal(p[key], q[key]), key
        on_gpu = p["image"].cuda(non_blocking=True)
        assert torch.equal(on_gpu.cpu(), q["image"])
    it = iter(pinned)
    next(it)
    it.close()  # stopped mid-epoch: the pinning thread ends
    assert not [t for t in threading.enumerate() if t.name == "slipstream-pin-memory"]


@needs_gpu
def test_held_batches_keep_their_values(demo_dataset) -> None:
    lo = gpu_loader(demo_dataset, [ss.RandomResizedCrop(96)], device="cuda", batches_ahead=2)
    held = list(lo) + list(lo)
    for n, batch in enumerate(held):
        again = lo.load(batch["index"].tolist(), epoch=0 if n < len(held) // 2 else 1)
        assert torch.equal(batch["image"], again["image"]), f"batch {n}"


@needs_gpu
def test_no_growth_over_many_epochs(demo_dataset) -> None:
    lo = gpu_loader(demo_dataset, [ss.RandomResizedCrop(224), ss.Normalize()], device="cuda")
    threads = threading.active_count()
    readings = []
    for epoch in range(40):
        lo.set_epoch(epoch)
        for batch in lo:
            batch["image"].float().mean()
        gc.collect()
        torch.cuda.synchronize()
        free, _ = torch.cuda.mem_get_info()
        readings.append((free, lo.stats()["gpu_memory_bytes"], _rss()))
    assert readings[-1][1] <= readings[2][1], readings
    assert readings[-1][0] >= readings[2][0] - (64 << 20), readings
    assert readings[-1][2] <= readings[2][2] + (64 << 20), readings
    assert threading.active_count() == threads


def _rss() -> int:
    with open(f"/proc/{os.getpid()}/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


@needs_gpu
def test_mixing_runs_on_the_gpu_batch(demo_dataset) -> None:
    mix = ss.RandomChoice([ss.MixUp(0.8, num_classes=1000), ss.CutMix(1.0, num_classes=1000)])
    stages = [ss.RandomResizedCrop(64), ss.Normalize()]
    plain = gpu_loader(demo_dataset, stages, device="cuda")
    mixed = gpu_loader(demo_dataset, stages, device="cuda", after_batch_transforms=[mix])
    for p, m in zip(plain, mixed, strict=True):
        assert m["image"].is_cuda and m["label"].is_cuda and m["label"].shape == (16, 1000)
        host = {k: v.cpu() if isinstance(v, torch.Tensor) else v for k, v in p.items()}
        on_cpu = mix(host, key=(plain.seed, 0))
        assert torch.allclose(m["image"].cpu(), on_cpu["image"], atol=1e-6)
        assert torch.allclose(m["label"].cpu(), on_cpu["label"])
