"""MixUp, CutMix and RandomChoice: torchvision v2's results given the same draws, its lambda
distribution over 10,000 batches, soft labels with smoothing, and draws that depend only on
(seed, epoch, the batch's first sample)."""

from __future__ import annotations

import numpy as np
import pytest
import slipstream as ss
from slipstream.mixing import _generator

torch = pytest.importorskip("torch")
v2 = pytest.importorskip("torchvision.transforms.v2")

from test_augment import ks_statistic  # noqa: E402

N_CLASSES = 10


def batch(n: int = 6, seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed)
    return {
        "image": torch.randn(n, 3, 20, 28, generator=g),
        "label": torch.randint(N_CLASSES, (n,), generator=g),
        "index": torch.arange(40, 40 + n),
    }


class Fixed:
    """A distribution that always samples `value` (for torchvision's `_dist`)."""

    def __init__(self, value: float) -> None:
        self.value = value

    def sample(self, shape=()) -> torch.Tensor:
        return torch.tensor(self.value)


def test_mixup_is_torchvisions_with_the_same_lambda() -> None:
    b = batch()
    ours = ss.MixUp(0.4, num_classes=N_CLASSES)(dict(b), key=(7, 2))
    lam = _generator(7, 2, 40, "mixup").beta(0.4, 0.4)
    tv = v2.MixUp(alpha=0.4, num_classes=N_CLASSES)
    tv._dist = Fixed(lam)
    images, labels = tv(b["image"], b["label"])
    assert torch.equal(ours["image"], images)
    assert torch.equal(ours["label"], labels)


def test_cutmix_is_torchvisions_with_the_same_box(monkeypatch: pytest.MonkeyPatch) -> None:
    b = batch()
    ours = ss.CutMix(1.0, num_classes=N_CLASSES)(dict(b), key=(7, 2))
    rng = _generator(7, 2, 40, "cutmix")
    lam = rng.beta(1.0, 1.0)
    rx, ry = int(rng.random() * 28), int(rng.random() * 20)
    tv = v2.CutMix(alpha=1.0, num_classes=N_CLASSES)
    tv._dist = Fixed(lam)
    centres = iter([torch.tensor([rx]), torch.tensor([ry])])
    monkeypatch.setattr(torch, "randint", lambda *a, **k: next(centres))
    images, labels = tv(b["image"], b["label"])
    assert torch.equal(ours["image"], images)
    assert torch.allclose(ours["label"], labels)


def test_lambda_follows_torchvisions_beta() -> None:
    torch.manual_seed(0)  # a fixed sample of torchvision's draws: the test cannot flake
    for alpha in (0.2, 1.0):
        ours = [_generator(1, 0, i, "mixup").beta(alpha, alpha) for i in range(10_000)]
        theirs = v2.MixUp(alpha=alpha, num_classes=2)._dist.sample((10_000,)).numpy().ravel()
        assert ks_statistic(np.array(ours), theirs) < 0.03, alpha


def test_smoothing_and_soft_labels() -> None:
    b = batch(n=1)  # one sample: nothing to mix with, the labels only become soft
    out = ss.MixUp(1.0, num_classes=N_CLASSES, label_smoothing=0.1)(dict(b), key=(0, 0))
    target = int(b["label"][0])
    assert torch.equal(out["image"], b["image"])
    assert out["label"][0, target] == pytest.approx(0.9 + 0.01)
    assert out["label"].sum().item() == pytest.approx(1.0)
    assert sorted(set(out["label"][0].tolist()))[0] == pytest.approx(0.01)


def test_in_the_loader_every_batch_repeats_and_choices_mix(demo_dataset) -> None:
    mix = ss.RandomChoice([ss.MixUp(0.8, num_classes=N_CLASSES), ss.CutMix(1.0, num_classes=10)])
    stages = [ss.RandomResizedCrop(32), ss.Normalize()]

    def loader(threads: int, after: list) -> ss.SlipstreamLoader:
        return ss.SlipstreamLoader(
            demo_dataset,
            batch_size=8,
            seed=4,
            num_threads=threads,
            pipelines={"image": stages, "small": ss.Pipeline(stages, field="image", views=2)},
            after_batch_transforms=after,
        )

    mixed, again, plain = list(loader(1, [mix])), list(loader(2, [mix])), list(loader(1, []))
    chosen = []
    for a, b, p in zip(mixed, again, plain, strict=True):
        assert torch.equal(a["image"], b["image"]) and torch.equal(a["label"], b["label"])
        assert a["label"].shape == (8, N_CLASSES) and a["small"].shape == (8, 2, 3, 32, 32)
        assert torch.allclose(a["label"].sum(1), torch.ones(8))
        # The choice and the lambda the batch's key draws, applied to the unmixed batch.
        rng = _generator(4, 0, int(p["index"][0]), "choice")
        k = int(rng.choice(2, p=[0.5, 0.5]))
        expected = mix.transforms[k]._apply(dict(p), rng)
        for name in ("image", "small", "label"):
            assert torch.equal(a[name], expected[name]), name
        chosen.append(k)
    assert set(chosen) == {0, 1}
    one = loader(1, [mix]).load(mixed[2]["index"].tolist(), epoch=0)
    assert torch.equal(one["image"], mixed[2]["image"])


def test_wrong_uses_are_config_errors(demo_dataset) -> None:
    with pytest.raises(ss.ConfigError, match="num_classes"):
        ss.MixUp(0.2)
    with pytest.raises(ss.ConfigError, match="alpha"):
        ss.CutMix(0.0, num_classes=3)
    with pytest.raises(ss.ConfigError, match="MixUp and CutMix"):
        ss.RandomChoice([lambda b: b])
    uint8 = ss.SlipstreamLoader(
        demo_dataset,
        batch_size=4,
        seed=0,
        pipelines={"image": [ss.CenterCrop(16)]},
        after_batch_transforms=[ss.MixUp(1.0, num_classes=N_CLASSES)],
    )
    with pytest.raises(ss.ConfigError, match="Normalize"):
        next(iter(uint8))
    with pytest.raises(ss.ConfigError, match=r"\[0, 3\)"):
        ss.MixUp(1.0, num_classes=3)(batch(), key=(0, 0))
    with pytest.raises(ss.MigrationError, match="RandomChoice"):
        from slipstream.transforms import Mixup  # noqa: F401
