"""slipstream.presets: every recipe builds a loader whose batches have the documented outputs,
shapes and normalization, on real photographs."""

from __future__ import annotations

import pytest
import slipstream as ss

torch = pytest.importorskip("torch")


@pytest.mark.parametrize(
    ("preset", "shapes"),
    [
        (ss.presets.supervised_train(64), {"image": (4, 3, 64, 64)}),
        (ss.presets.supervised_train(64, style="timm"), {"image": (4, 3, 64, 64)}),
        (ss.presets.supervised_val(64), {"image": (4, 3, 64, 64)}),
        (ss.presets.simclr(64), {"views": (4, 2, 3, 64, 64)}),
        (ss.presets.byol(64), {"view_0": (4, 3, 64, 64), "view_1": (4, 3, 64, 64)}),
        (
            ss.presets.dino(local_views=3, global_size=64, local_size=32),
            {"global_0": (4, 3, 64, 64), "global_1": (4, 3, 64, 64), "local": (4, 3, 3, 32, 32)},
        ),
        (ss.presets.ipcl(num_crops=3, size=48), {"crops": (4, 3, 3, 48, 48)}),
        (
            ss.presets.multicrop(local_crops=2, global_size=64, local_size=32),
            {"global_0": (4, 3, 64, 64), "global_1": (4, 3, 64, 64), "local": (4, 2, 3, 32, 32)},
        ),
    ],
    ids=["resnet", "timm", "val", "simclr", "byol", "dino", "ipcl", "multicrop"],
)
def test_presets_give_their_documented_outputs(demo_dataset, preset: dict, shapes: dict) -> None:
    loader = ss.SlipstreamLoader(demo_dataset, batch_size=4, seed=1, pipelines=preset)
    batch = next(iter(loader))
    assert {k: tuple(batch[k].shape) for k in shapes} == shapes
    for name in shapes:
        x = batch[name].float()
        # Normalized with ImageNet's statistics: centred near 0, spread near 1.
        assert x.dtype == torch.float32 and -1.0 < x.mean() < 1.0 and 0.3 < x.std() < 2.0, name
    # The same batch again: every random choice comes from the seed.
    again = next(iter(ss.SlipstreamLoader(demo_dataset, batch_size=4, seed=1, pipelines=preset)))
    for name in shapes:
        assert torch.equal(batch[name], again[name]), name


def test_asymmetric_views_differ_as_documented() -> None:
    byol = ss.presets.byol()
    blur = [type(s).__name__ for s in byol["view_0"].stages]
    assert "RandomSolarize" not in blur
    assert "RandomSolarize" in [type(s).__name__ for s in byol["view_1"].stages]
    assert ss.presets.simclr(224)["views"].stages[4].transforms[0].kernel_size == 23
    with pytest.raises(ValueError, match="resnet"):
        ss.presets.supervised_train(style="vit")
