"""Code written for upstream slipstream (harvard-visionlab/slipstream v0.4): its README's Quick
Start unchanged, its names, and an error that says what to use for each name slipstream lacks."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import slipstream as ss
from s3_server import MotoServer, upload_dir

torch = pytest.importorskip("torch")

# Upstream's README Quick Start, as users copy it.
QUICK_START = """
from slipstream import SlipstreamDataset, SlipstreamLoader
from slipstream import RandomResizedCrop, Normalize

dataset = SlipstreamDataset(
    remote_dir="s3://bucket/dataset/train/",
    decode_images=False,  # Let loader handle decoding
)
loader = SlipstreamLoader(
    dataset,
    batch_size=256,
    pipelines={
        'image': [
            RandomResizedCrop(224, device='cuda'),
            Normalize(),
        ],
    },
)
for batch in loader:
    images = batch['image']  # [B, 3, 224, 224] normalized tensor
    labels = batch['label']  # [B] tensor
"""


def run_quick_start(url: str, device: str = "cuda") -> dict:
    code = QUICK_START.replace("s3://bucket/dataset/train/", url)
    code = code.replace("device='cuda'", f"device='{device}'")
    scope: dict = {}
    exec(code, scope)
    return scope


def check_quick_start(url: str, expected: ss.SlipstreamDataset) -> None:
    if torch.cuda.is_available():
        scope = run_quick_start(url)
    else:
        with pytest.raises(ss.CudaError):
            run_quick_start(url)  # the verbatim code on a machine without a GPU
        scope = run_quick_start(url, device="cpu")
    images, labels, batch = scope["images"], scope["labels"], scope["batch"]
    n = len(expected)  # one batch: the demo dataset has fewer than 256 samples
    assert images.shape == (n, 3, 224, 224) and images.dtype == torch.float32
    assert -3 < float(images.min()) < 0 < float(images.max()) < 3  # normalized
    assert labels.dtype == torch.int64 and labels.device == images.device
    want = [expected[i]["label"] for i in batch["_indices"].tolist()]
    assert labels.cpu().tolist() == want


def test_quick_start_runs_on_a_local_dataset(demo_dir, tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("SLIPSTREAM_CACHE_DIR", str(tmp_path / "caches"))
    expected = ss.SlipstreamDataset(demo_dir, progress=False)
    check_quick_start(str(demo_dir), expected)


@pytest.mark.skipif(
    not Path(sys.executable).with_name("moto_server").exists(),
    reason="moto_server is not installed (make installs it)",
)
def test_quick_start_runs_on_s3(demo_dir, tmp_path, monkeypatch) -> None:
    server = MotoServer()
    try:
        client = server.client()
        client.create_bucket(Bucket="bucket")
        upload_dir(client, "bucket", "dataset/train/", demo_dir)
        # Credentials and endpoint as users set them for an S3-compatible store.
        for name, value in {
            "AWS_ENDPOINT_URL": server.url,
            "AWS_ACCESS_KEY_ID": "AKIDTEST",
            "AWS_SECRET_ACCESS_KEY": "secret",
            "AWS_REGION": "us-east-1",
            "SLIPSTREAM_CACHE_DIR": str(tmp_path / "caches"),
        }.items():
            monkeypatch.setenv(name, value)
        expected = ss.SlipstreamDataset(demo_dir, cache_dir=tmp_path / "local", progress=False)
        check_quick_start("s3://bucket/dataset/train/", expected)
        # LitData's spellings of the same options reach the same store.
        for name in ("AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
            monkeypatch.delenv(name)
        litdata_style = ss.SlipstreamDataset(
            "s3://bucket/dataset/train/",
            cache_dir=tmp_path / "litdata-style",
            progress=False,
            storage_options={
                "AWS_ACCESS_KEY_ID": "AKIDTEST",
                "AWS_SECRET_ACCESS_KEY": "secret",
                "S3_ENDPOINT_URL": server.url,
            },
        )
        assert litdata_style[5] == expected[5]
    finally:
        server.stop()


def test_dataset_takes_upstream_names(demo_dir, tmp_path) -> None:
    plain = ss.SlipstreamDataset(demo_dir, cache_dir=tmp_path, progress=False)
    for name in ("remote_dir", "local_dir", "input_dir"):
        ds = ss.SlipstreamDataset(cache_dir=tmp_path, verbose=False, **{name: demo_dir})
        assert ds.cache_path == plain.cache_path and ds[3] == plain[3]
    with pytest.raises(ss.ConfigError, match=r"not \['local_dir', 'path'\]"):
        ss.SlipstreamDataset(demo_dir, local_dir=demo_dir, cache_dir=tmp_path)
    pil = ss.SlipstreamDataset(demo_dir, cache_dir=tmp_path, decode_images=True)[0]["image"]
    array = ss.decode_image(plain[0]["image"])
    assert pil.size == (array.shape[1], array.shape[0]) and np.array_equal(np.asarray(pil), array)
    ds = ss.SlipstreamDataset(demo_dir, cache_dir=tmp_path, decode_images=True, to_pil=False)
    assert torch.equal(ds[0]["image"], torch.from_numpy(array).permute(2, 0, 1))
    assert ds[0]["label"] == plain[0]["label"]
    before = Path(plain.cache_path).stat().st_mtime_ns
    rebuilt = ss.SlipstreamDataset(demo_dir, cache_dir=tmp_path, force_rebuild=True, verbose=False)
    assert Path(rebuilt.cache_path).stat().st_mtime_ns != before
    with pytest.raises(ss.ConfigError, match=r"SlipstreamLoader\(pipelines=...\)"):
        ss.SlipstreamDataset(demo_dir, cache_dir=tmp_path, pipelines={"image": print})
    with pytest.raises(TypeError, match="colour"):
        ss.SlipstreamDataset(demo_dir, cache_dir=tmp_path, colour=1)


def test_loader_takes_upstream_options(demo_dataset) -> None:
    seen = []

    def count(batch: dict) -> dict:
        seen.append(len(batch["label"]))
        return {**batch, "counted": True}

    loader = ss.SlipstreamLoader(
        demo_dataset,
        batch_size=32,
        exclude_fields=["image"],
        after_batch_transforms=[count],
        image_field="image",
        image_format="jpeg",
        use_threading=False,
        verbose=False,
    )
    batches = list(loader)
    assert seen == [32, 32, 32] and all(b["counted"] for b in batches)
    assert sorted(batches[0]) == ["_indices", "counted", "index", "label"]
    assert torch.equal(batches[0]["_indices"], batches[0]["index"])
    yuv = ss.SlipstreamLoader(
        demo_dataset, batch_size=8, image_format="yuv420", pipelines={"image": [ss.CenterCrop(32)]}
    )
    assert yuv.dataset.fields[0].kind == "yuv420" and demo_dataset.fields[0].kind == "bytes"
    assert next(iter(yuv))["image"].shape == (8, 3, 32, 32)
    for options, message in [
        ({"image_format": "png"}, "upstream's are"),
        ({"remote_cache": "s3://x/"}, "SlipstreamDataset\\(..., remote_cache="),
        ({"exclude_fields": ["nope"]}, "lacks"),
        ({"exclude_fields": ["image"], "fields": ["label"]}, "not both"),
        ({"image_field": "label"}, "not an image field"),
        ({"after_batch_transforms": [3]}, "callables"),
    ]:
        with pytest.raises(ss.ConfigError, match=message):
            ss.SlipstreamLoader(demo_dataset, batch_size=8, **options)
    with pytest.raises(TypeError, match="bogus"):
        ss.SlipstreamLoader(demo_dataset, batch_size=8, bogus=1)


def test_stage_devices_choose_where_the_pipeline_runs(demo_dataset) -> None:
    on_cpu = ss.SlipstreamLoader(
        demo_dataset, batch_size=8, pipelines={"image": [ss.RandomResizedCrop(32, device="cpu")]}
    )
    assert on_cpu.device_info == "cpu"
    conflicts = [
        ({"image": [ss.RandomResizedCrop(32, device="cuda:0"), ss.Normalize(device="cpu")]}, {}),
        (
            {"a": [ss.CenterCrop(32, device="cuda:0")], "b": [ss.CenterCrop(32, device="cuda:1")]},
            {},
        ),
        ({"image": [ss.RandomResizedCrop(32, device="cuda")]}, {"device": "cpu"}),
    ]
    for pipelines, loader_options in conflicts:
        with pytest.raises(ss.ConfigError, match="device"):
            ss.SlipstreamLoader(demo_dataset, batch_size=8, pipelines=pipelines, **loader_options)
    if not torch.cuda.is_available():  # the stage's device is used: here, a clear CudaError
        with pytest.raises(ss.CudaError):
            ss.SlipstreamLoader(
                demo_dataset, batch_size=8, pipelines={"image": [ss.CenterCrop(32, device="cuda")]}
            )


def test_upstream_decode_stages_give_upstream_outputs(demo_dataset) -> None:
    def first(*stages, **options):
        loader = ss.SlipstreamLoader(
            demo_dataset, batch_size=8, seed=3, pipelines={"image": list(stages)}, **options
        )
        return next(iter(loader))["image"]

    ours = first(ss.CenterCrop(64))
    hwc = first(ss.DecodeCenterCrop(64))
    assert isinstance(hwc, np.ndarray) and hwc.shape == (8, 64, 64, 3) and hwc.dtype == np.uint8
    assert np.array_equal(hwc, ours.permute(0, 2, 3, 1).numpy())
    assert torch.equal(first(ss.DecodeCenterCrop(64, to_tensor=True, permute=True)), ours)
    resized = first(ss.CenterCrop(64, resize=80))
    assert np.array_equal(first(ss.DecodeResizeCrop(80, 64)), resized.permute(0, 2, 3, 1).numpy())
    assert torch.equal(first(ss.ResizeCrop(80, 64, to_tensor=True, permute=True)), resized)
    crop = first(ss.RandomResizedCrop(48))
    assert torch.equal(first(ss.DecodeRandomResizedCrop(48, to_tensor=True, permute=True)), crop)
    scaled = first(ss.DecodeRandomResizedCrop(48), ss.ToTorchImage("cpu", torch.float32))
    assert scaled.shape == (8, 3, 48, 48) and scaled.dtype == torch.float32
    assert torch.allclose(scaled, crop.float() / 255)
    half = first(
        ss.DecodeRandomResizedCrop(48), ss.ToTorchImage("cpu"), ss.Normalize(dtype=torch.float16)
    )
    assert half.dtype == torch.float16
    with pytest.raises(ss.ConfigError, match="dtypes"):
        first(ss.RandomResizedCrop(48), ss.ToTorchImage("cpu", "float16"), dtype="float32")
    with pytest.raises(ss.ConfigError, match=r"SlipstreamLoader\(seed=...\)"):
        ss.DecodeRandomResizedCrop(224, seed=7)
    with pytest.raises(ss.ConfigError, match=r"SlipstreamLoader\(num_threads=...\)"):
        ss.DecodeCenterCrop(224, num_threads=8)


def test_presets_of_upstream(demo_dataset) -> None:
    from slipstream.pipelines import supervised_train, supervised_val

    loader = ss.SlipstreamLoader(demo_dataset, batch_size=16, pipelines=supervised_train(64))
    images = next(iter(loader))["image"]
    assert images.shape == (16, 3, 64, 64) and images.dtype == torch.float16
    val = ss.SlipstreamLoader(
        demo_dataset,
        batch_size=16,
        shuffle=False,
        pipelines=supervised_val(64, dtype=torch.float32),
    )
    want = ss.SlipstreamLoader(
        demo_dataset,
        batch_size=16,
        shuffle=False,
        pipelines={"image": [ss.CenterCrop(64, resize=73), ss.Normalize()]},
    )
    assert torch.equal(next(iter(val))["image"], next(iter(want))["image"])
    with pytest.raises(ss.ConfigError, match=r"SlipstreamLoader\(seed=...\)"):
        supervised_train(224, seed=42)


def test_missing_upstream_names_say_what_to_use_instead() -> None:
    with pytest.raises(ss.MigrationError, match=r"MultiCropPipeline.*Pipeline\("):
        from slipstream import MultiCropPipeline  # noqa: F401
    with pytest.raises(ss.MigrationError, match="after_batch_transforms"):
        from slipstream.transforms import RandomBrightness  # noqa: F401
    with pytest.raises(ss.MigrationError, match=r"slipstream\.presets\.simclr\(\)"):
        from slipstream.pipelines import simclr  # noqa: F401
    with pytest.raises(ss.MigrationError, match="Pipeline"):
        from slipstream.decoders import DecodeMultiRandomResizedCrop  # noqa: F401
    with pytest.raises(ss.MigrationError, match=r"RandomSolarize\(threshold=128"):
        from slipstream.transforms import RandomSolarization  # noqa: F401
    with pytest.raises(ss.ConfigError, match=r"RandomApply\(\[ColorJitter"):
        from slipstream.transforms import ColorJitter

        ColorJitter(p=0.8, hue=0.1, saturation=0.4, value=0.4, contrast=0.4)
    # Only upstream's names: any other stays an AttributeError (hasattr, tools probing modules).
    assert not hasattr(ss, "no_such_name")
    with pytest.raises(ImportError):
        from slipstream import no_such_name  # noqa: F401


def test_normalize_on_the_255_scale_is_refused() -> None:
    with pytest.raises(ss.ConfigError, match="0-255"):
        ss.Normalize(mean=[0.485 * 255, 0.456 * 255, 0.406 * 255], std=[0.229 * 255] * 3)
    with pytest.raises(ss.ConfigError, match="positive"):
        ss.Normalize(std=(0.2, 0.0, 0.2))


def test_warmup_shutdown_and_show_batch(demo_dataset) -> None:
    matplotlib = pytest.importorskip("matplotlib")
    matplotlib.use("Agg")
    loader = ss.SlipstreamLoader(
        demo_dataset,
        batch_size=8,
        pipelines={
            "a": ss.Pipeline([ss.RandomResizedCrop(32), ss.Normalize()], field="image"),
            "b": ss.Pipeline([ss.RandomResizedCrop(32)], field="image", views=2),
        },
    )
    stats = loader.warmup_cache(verbose=False)
    assert stats["total_bytes"] == Path(demo_dataset.cache_path).stat().st_size
    batch = next(iter(loader))
    fig = ss.show_batch(
        batch, view_names=["a", "b"], n_cols=4, mean=ss.IMAGENET_MEAN, std=ss.IMAGENET_STD
    )
    assert len(fig.axes) == 2 * 4
    assert [ax.get_ylabel() for ax in fig.axes[::4]] == ["a", "b"]
    it = iter(loader)
    next(it)
    loader.shutdown()
    assert list(it) == []
    assert len(list(loader)) == len(loader)  # a new epoch starts again
