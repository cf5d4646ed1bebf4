"""Upstream slipstream (harvard-visionlab/slipstream, v0.4) names: the options that mean the
same here, translated, and the names that have no equivalent, each with what to use instead.
docs/MIGRATING.md is the reader's version of these tables; keep the two in step."""

from __future__ import annotations

from typing import Any

from .errors import ConfigError, MigrationError

_AFTER_BATCH = (
    "after_batch_transforms=[f] on SlipstreamLoader, with f a torch function of the batch"
)
_VIEWS = (
    "several outputs reading one field, e.g. pipelines={'view_0': Pipeline([...], "
    "field='image'), 'view_1': Pipeline([...], field='image')}, or Pipeline(..., views=N)"
)

_YUV = (
    "every stage reads a yuv420 cache (SlipstreamDataset(..., encoding='yuv420'), or "
    "SlipstreamLoader(..., image_format='yuv420')) and outputs RGB: "
)

# Module-level names of upstream slipstream with no counterpart here → what to use instead.
MISSING: dict[str, str] = {
    "DecodeDirectRandomResizedCrop": "RandomResizedCrop (torchvision's ten-try sampling)",
    "DirectRandomResizedCrop": "RandomResizedCrop (torchvision's ten-try sampling)",
    "DecodeRandomResizeShortCropLong": "CenterCrop(size, resize=...) or RandomResizedCrop",
    "RandomResizeShortCropLong": "CenterCrop(size, resize=...) or RandomResizedCrop",
    "DecodeMultiRandomResizeShortCropLong": _VIEWS,
    "MultiRandomResizeShortCropLong": _VIEWS,
    "DecodeOnly": "no pipeline (the field arrives as a RaggedBatch of encoded images) and "
    "slipstream.decode_image",
    "DecodeYUVFullRes": _YUV + "no pipeline, and ds[i] (RGB images)",
    "DecodeYUVPlanes": _YUV + "no pipeline, and the raw planes in the field's RaggedBatch",
    "DecodeYUVCenterCrop": _YUV + "DecodeCenterCrop",
    "DecodeYUVRandomResizedCrop": _YUV + "DecodeRandomResizedCrop",
    "DecodeYUVResizeCrop": _YUV + "DecodeResizeCrop",
    "DecodeMultiRandomResizedCrop": _VIEWS,
    "MultiRandomResizedCrop": _VIEWS,
    "DecodeUniformMultiRandomResizedCrop": "Pipeline([RandomResizedCrop(...)], views=N)",
    "MultiCropRandomResizedCrop": "Pipeline([RandomResizedCrop(...)], views=N)",
    "DecodeMultiResizeCropEmbed": _AFTER_BATCH,
    "MultiCropPipeline": _VIEWS,
    "NamedCopies": _VIEWS,
    "BatchTransform": "a list of slipstream stages, or " + _AFTER_BATCH,
    "Compose": "a plain list of stages: pipelines={'image': [stage, stage, ...]}",
    "ToDevice": "device= on the loader or on a stage",
    "RandomBackgroundBlend": _AFTER_BATCH,
    "RandomEmbed": _AFTER_BATCH,
    "OptimizedCache": "SlipstreamDataset (its cache_path is the cache file; "
    "`slipstream inspect` and `slipstream verify` show and check it)",
    "write_index": "the loader's batch_indices(epoch), or numpy.memmap of a field (docs/FORMAT.md)",
    "show_rgba": "show_batch",
    "compute_normalization_stats": "Normalize() (ImageNet's mean and std) or your own values "
    "on the [0, 1] scale",
    "sync_s3_dataset": "SlipstreamDataset('s3://...'), which downloads in parallel itself",
    "list_collate_fn": "SlipstreamLoader (it batches every field itself)",
    "is_image_bytes": "slipstream.decode_image (raises DecodeError on anything but an image)",
    "is_hf_image_dict": "SlipstreamDataset (it reads LitData datasets)",
    "ensure_lightning_symlink_on_cluster": "SLIPSTREAM_CACHE_DIR or cache_dir= for where "
    "caches live",
    "get_default_cache_dir": "SlipstreamDataset(...).cache_path (or SLIPSTREAM_CACHE_DIR)",
    "get_cache_base": "SlipstreamDataset(...).cache_path (or SLIPSTREAM_CACHE_DIR)",
    "get_cache_path": "SlipstreamDataset(...).cache_path",
    "CPUDecoder": "SlipstreamLoader(..., device='cpu') or slipstream.decode_image",
    "GPUDecoder": "SlipstreamLoader(..., device='cuda')",
    "GPUDecoderFallback": "SlipstreamLoader(..., device='cuda', decoder='auto')",
    "get_decoder": "SlipstreamLoader(..., device=..., decoder=...)",
    "check_turbojpeg_available": "slipstream.info() (libjpeg-turbo is built in)",
    "check_gpu_decoder_available": "slipstream.info()",
    "FFCVFileDataset": "SlipstreamDataset('train.ffcv') (FFCV files are read directly)",
    "FFCVFilePrefetchingDataLoader": "SlipstreamLoader",
    "FFCVFileReader": "SlipstreamDataset('train.ffcv') (FFCV files are read directly)",
    "SlipstreamImageFolder": "SlipstreamDataset(root) (an ImageFolder tree: image, label and "
    "path fields, classes numbered as torchvision's; the index is the batch's index)",
    "open_imagefolder": "SlipstreamDataset(root or s3://prefix/) on the extracted tree (a .tar "
    "file is read as WebDataset shards)",
    "StreamingReader": "SlipstreamDataset",
    "CropParams": "RandomResizedCrop(...).get_params(height, width, seed=, epoch=, index=)",
    "align_to_mcu": "nothing: slipstream decodes exactly the rows and MCUs a crop needs",
    "generate_random_crop_params": "RandomResizedCrop(...).get_params(...)",
    "generate_center_crop_params": "CenterCrop",
    "estimate_rejection_fallback_rate": "RandomResizedCrop(...).get_params over your image sizes",
}

MISSING.update(
    {
        "RandomGaussianBlur": "RandomApply([GaussianBlur(kernel_size, sigma=sigma_range)], p) "
        "(torchvision's names; sigma drawn continuously, not from upstream's bank of 10)",
        "RandomSolarization": "RandomSolarize(threshold=128, p) (torchvision's name; the "
        "threshold on the 0-255 scale)",
        "Mixup": "after_batch_transforms=[RandomChoice([MixUp(mixup_alpha, num_classes=N), "
        "CutMix(cutmix_alpha, num_classes=N)])] (torchvision's: one lambda and one choice per "
        "batch, mixed with the batch rolled by one; upstream's draws per sample and pairs "
        "sample i with B-1-i)",
        "mixup_target": "MixUp/CutMix(num_classes=N, label_smoothing=...), which write the "
        "soft labels themselves",
    }
)

# Upstream's augmentation stages: not in slipstream yet; torch code can run after each batch.
for _name in [
    "MultiSample",
    "ToNumpy",
    "ToChannelsFirst",
    "ToChannelsLast",
    "ToFloat",
    "ToFloatDiv",
    "NormalizeLGN",
    "ToGrayscale",
    "ToGrayscaleTorch",
    "RandomBrightness",
    "RandomContrast",
    "RandomColorJitter",
    "RandomColorJitterHSV",
    "RandomColorJitterYIQ",
    "RandomRotate",
    "RandomZoom",
    "RandomRotateObject",
    "RandomPatchShuffle",
    "CircularMask",
    "FixedOpticalDistortion",
    "one_hot",
    "SRGBToLMS",
    "LMSToParvo",
    "LMSToMagno",
    "LMSToKonio",
    "RGBToLGN",
    "RGBToMagno",
    "BatchAugment",
]:
    MISSING.setdefault(_name, f"not in slipstream yet: {_AFTER_BATCH}")


def missing(module: str, name: str) -> MigrationError:
    """The error for ``from <module> import <name>`` of an upstream name slipstream lacks."""
    return MigrationError(
        f"{module}.{name} is upstream slipstream's; this slipstream has no {name}. Use "
        f"{MISSING[name]} (docs/MIGRATING.md)"
    )


def module_getattr(module: str, names: dict[str, str] | None = None) -> Any:
    """A module ``__getattr__`` that explains upstream names and stays an AttributeError for
    every other name (so ``hasattr`` and tools that probe modules behave)."""
    table = MISSING if names is None else names

    def __getattr__(name: str) -> Any:
        if name in table:
            raise missing(module, name) if names is None else MigrationError(table[name])
        raise AttributeError(f"module {module!r} has no attribute {name!r}")

    return __getattr__


def loader_options(dataset: Any, options: dict[str, Any]) -> dict[str, Any]:
    """Upstream's SlipstreamLoader options: ``force_rebuild``, ``verbose`` and the encoding
    ``image_format`` asks for returned, the ones that change nothing here checked, the rest
    refused with what to use instead."""
    out = {
        "force_rebuild": bool(options.pop("force_rebuild", False)),
        "verbose": bool(options.pop("verbose", True)),
    }
    image_field = options.pop("image_field", None)
    if image_field is not None:
        images = [f.name for f in dataset.fields if f.images]
        if image_field not in images:
            raise ConfigError(f"image_field={image_field!r} is not an image field ({images})")
    image_format = options.pop("image_format", "jpeg")
    if image_format not in ("jpeg", "yuv420"):
        raise ConfigError(f'image_format={image_format!r}: upstream\'s are "jpeg" and "yuv420"')
    out["encoding"] = "yuv420" if image_format == "yuv420" else None
    # Prefetching on a thread and downloading s3:// datasets whole are what slipstream always
    # does, so these change nothing.
    for name in ("use_threading", "presync_s3", "presync_s3_workers"):
        options.pop(name, None)
    refused = {
        "presync_s3_endpoint_url": "SlipstreamDataset(..., storage_options={'endpoint_url': ...})",
        "remote_cache": "SlipstreamDataset(..., remote_cache='s3://...')",
        "remote_cache_endpoint_url": "SlipstreamDataset(..., storage_options="
        "{'endpoint_url': ...}), which also reaches remote_cache",
    }
    for name, instead in refused.items():
        if options.pop(name, None) is not None:
            raise ConfigError(
                f"SlipstreamLoader({name}=...): the dataset owns its cache here; pass {instead}"
            )
    if options:
        raise TypeError(f"SlipstreamLoader got unexpected keyword arguments {sorted(options)}")
    return out


# LitData's and s5cmd's spellings of S3 options (storage_options, session_options) → ours.
_STORAGE_NAMES = {
    "AWS_ACCESS_KEY_ID": "aws_access_key_id",
    "AWS_SECRET_ACCESS_KEY": "aws_secret_access_key",
    "AWS_SESSION_TOKEN": "aws_session_token",
    "S3_ENDPOINT_URL": "endpoint_url",
    "AWS_ENDPOINT_URL": "endpoint_url",
    "AWS_REGION": "region_name",
    "AWS_DEFAULT_REGION": "region_name",
    "AWS_PROFILE": "profile",
    "profile_name": "profile",
}


def storage_options(options: dict[str, Any] | None) -> list[tuple[str, str]]:
    """``storage_options`` in boto3's, LitData's or s5cmd's names, as the native layer's.

    Example:
        >>> storage_options({"AWS_NO_SIGN_REQUEST": "yes", "S3_ENDPOINT_URL": "http://s3:9000"})
        [('anon', 'true'), ('endpoint_url', 'http://s3:9000')]
    """
    out: dict[str, str] = {}
    for key, value in (options or {}).items():
        key = str(key)
        if key == "AWS_NO_SIGN_REQUEST":
            out["anon"] = "true" if str(value).lower() in ("yes", "true", "1") else "false"
        elif key == "config":  # a botocore.config.Config, as LitData's README shows
            out.update(_botocore_config(value))
        else:
            out[_STORAGE_NAMES.get(key, key)] = str(value)
    return list(out.items())


def _botocore_config(config: Any) -> dict[str, str]:
    out = {}
    if str(getattr(config, "signature_version", "")).upper() == "UNSIGNED":
        out["anon"] = "true"
    attempts = (getattr(config, "retries", None) or {}).get("max_attempts")
    if attempts is not None:
        out["max_attempts"] = str(attempts)
    if getattr(config, "read_timeout", None) is not None:
        out["read_timeout"] = str(config.read_timeout)
    return out


def dataset_source(path: Any, remote_dir: Any, local_dir: Any, input_dir: Any) -> Any:
    """The one source among ``path`` and upstream's ``remote_dir``/``local_dir``/``input_dir``."""
    given = {
        k: v
        for k, v in (
            ("path", path),
            ("remote_dir", remote_dir),
            ("local_dir", local_dir),
            ("input_dir", input_dir),
        )
        if v is not None
    }
    if len(given) != 1:
        raise ConfigError(
            "give the dataset as one of path (or upstream's remote_dir, local_dir, input_dir), "
            f"not {sorted(given) or 'none'}"
        )
    return next(iter(given.values()))


def dataset_options(options: dict[str, Any]) -> dict[str, Any]:
    """Upstream's and LitData's other SlipstreamDataset options: ``rebuild`` (``force_rebuild``),
    ``progress`` (``verbose``), extra ``storage_options`` (``profile="wasabi"``,
    ``session_options``), the rest refused with what to use instead."""
    out: dict[str, Any] = {}
    if "force_rebuild" in options:
        out["rebuild"] = bool(options.pop("force_rebuild"))
    if "verbose" in options:
        out["progress"] = bool(options.pop("verbose"))
    extra: dict[str, Any] = dict(options.pop("session_options", None) or {})
    profile = options.pop("profile", None)
    if profile == "wasabi":  # upstream's one named profile: public Wasabi buckets
        extra.update({"endpoint_url": "https://s3.wasabisys.com", "anon": "true"})
    elif profile is not None:
        raise ConfigError(
            f"profile={profile!r}: use storage_options={{'profile': ...}} for an AWS profile"
        )
    out["extra_storage_options"] = extra
    options.pop("max_cache_size", None)  # LitData's chunk cache; slipstream keeps one file
    refused = {
        "pipelines": "SlipstreamLoader(pipelines=...) (a dataset returns stored values)",
        "expected_version": "fingerprint='content' (a changed dataset is rebuilt, never mixed)",
    }
    for name, instead in refused.items():
        if options.pop(name, None) is not None:
            raise ConfigError(f"SlipstreamDataset({name}=...): use {instead}")
    if options:
        raise TypeError(f"SlipstreamDataset got unexpected keyword arguments {sorted(options)}")
    return out
