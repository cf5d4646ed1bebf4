"""Self-supervised pretraining with multi-crop views, DINO-style: each image gives two global
views and several local ones, cropped and flipped independently by slipstream (the image is
decoded once for all of them); a student network sees every view, an EMA teacher the global
ones, and the student learns to match the teacher's output on the other views.

    python examples/ssl_multicrop.py --data /data/imagenet/train --local-views 6 --steps 100000

slipstream makes the views ([B, views, 3, H, W] per group, on the GPU with --device cuda); the
colour augmentations (brightness, contrast, saturation, grayscale) are drawn per sample here on
the batch, in torch. Without a GPU it runs on the CPU, which is how ``make test`` runs it on
tiny data for a few steps.
"""

from __future__ import annotations

import argparse
import copy
import math

import slipstream as ss
import torch
import torchvision
from torch import nn

MEAN = torch.tensor(ss.IMAGENET_MEAN).view(1, 3, 1, 1)
STD = torch.tensor(ss.IMAGENET_STD).view(1, 3, 1, 1)
LUMA = torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)


def views(args: argparse.Namespace) -> dict[str, ss.Pipeline]:
    """Two global views and ``--local-views`` local ones of each image, in [0, 1]."""

    def group(size: int, scale: tuple[float, float], n: int) -> ss.Pipeline:
        stages = [ss.RandomResizedCrop(size, scale=scale), ss.RandomHorizontalFlip()]
        return ss.Pipeline(stages, field="image", views=n)

    return {
        "global": group(args.global_size, (0.4, 1.0), 2),
        "local": group(args.local_size, (0.05, 0.4), args.local_views),
    }


def colour(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """Per-sample colour jitter (p=0.8: brightness, contrast, saturation 0.4) and grayscale
    (p=0.2) on uint8 views [N, 3, H, W]; returns normalized float32."""
    x = x.float() / 255
    n, dev = x.shape[0], x.device

    jitter = torch.rand(n, 1, 1, 1, generator=g) < 0.8  # all three, or none

    def draw(spread: float) -> torch.Tensor:
        factor = 1 + (torch.rand(n, 1, 1, 1, generator=g) * 2 - 1) * spread
        return torch.where(jitter, factor, torch.ones_like(factor)).to(dev)

    def gray(x: torch.Tensor) -> torch.Tensor:
        return (x * LUMA.to(dev)).sum(1, keepdim=True)

    x = (x * draw(0.4)).clamp(0, 1)
    mean = gray(x).mean((2, 3), keepdim=True)
    x = ((x - mean) * draw(0.4) + mean).clamp(0, 1)
    x = ((x - gray(x)) * draw(0.4) + gray(x)).clamp(0, 1)
    to_gray = (torch.rand(n, 1, 1, 1, generator=g) < 0.2).to(dev)
    x = torch.where(to_gray, gray(x).expand_as(x), x)
    return (x - MEAN.to(dev)) / STD.to(dev)


class Network(nn.Module):
    """A ResNet backbone and DINO's projection head (MLP, L2-normalised bottleneck,
    weight-normalised prototypes)."""

    def __init__(self, arch: str, out_dim: int) -> None:
        super().__init__()
        self.backbone = torchvision.models.get_model(arch)
        width = self.backbone.fc.in_features
        self.backbone.fc = nn.Identity()
        self.mlp = nn.Sequential(nn.Linear(width, 512), nn.GELU(), nn.Linear(512, 128))
        self.prototypes = nn.utils.parametrizations.weight_norm(nn.Linear(128, out_dim))

    def forward(self, crops: list[torch.Tensor]) -> torch.Tensor:
        # One backbone pass per resolution; the outputs of every view, concatenated.
        features = torch.cat([self.backbone(c) for c in crops])
        return self.prototypes(nn.functional.normalize(self.mlp(features), dim=-1))


def dino_loss(
    student: torch.Tensor, teacher: torch.Tensor, center: torch.Tensor, n_global: int
) -> torch.Tensor:
    """Cross-entropy between the teacher's sharpened, centred distribution on each global
    view and the student's on every other view."""
    targets = torch.softmax((teacher - center) / 0.04, dim=-1).chunk(n_global)
    logs = torch.log_softmax(student / 0.1, dim=-1).chunk(student.shape[0] // targets[0].shape[0])
    terms = [
        -(t * s).sum(-1).mean() for i, t in enumerate(targets) for j, s in enumerate(logs) if i != j
    ]
    return torch.stack(terms).mean()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--data", required=True, help="LitData dataset (path or s3://) with image")
    p.add_argument("--arch", default="resnet50", help="a torchvision.models ResNet")
    p.add_argument("--steps", type=int, default=100_000)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--global-size", type=int, default=224)
    p.add_argument("--local-size", type=int, default=96)
    p.add_argument("--local-views", type=int, default=6)
    p.add_argument("--out-dim", type=int, default=4096)
    p.add_argument("--lr", type=float, default=0.03)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()

    torch.manual_seed(args.seed)
    g = torch.Generator().manual_seed(args.seed)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    loader = ss.SlipstreamLoader(
        ss.SlipstreamDataset(args.data),
        batch_size=args.batch_size,
        seed=args.seed,
        drop_last=True,
        device=device if device.type == "cuda" else None,
        pipelines=views(args),
    )
    student = Network(args.arch, args.out_dim).to(device)
    teacher = copy.deepcopy(student).requires_grad_(False)
    center = torch.zeros(1, args.out_dim, device=device)
    optimizer = torch.optim.SGD(student.parameters(), lr=args.lr, momentum=0.9)

    step = 0
    while step < args.steps:
        for batch in loader:
            # [B, V, 3, H, W] → one [B·V, 3, H, W] batch per resolution, view-major.
            glob, local = (batch[k].transpose(0, 1).flatten(0, 1) for k in ("global", "local"))
            if step == 0:
                print(f"views: global {list(batch['global'].shape)}", end="")
                print(f", local {list(batch['local'].shape)}", flush=True)
            glob, local = colour(glob.to(device), g), colour(local.to(device), g)
            with torch.autocast(device.type, torch.bfloat16, enabled=device.type == "cuda"):
                out = student([glob, local]).float()
                with torch.no_grad():
                    target = teacher([glob]).float()
                loss = dino_loss(out, target, center, n_global=2)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            with torch.no_grad():
                momentum = 1 - 0.004 * (math.cos(math.pi * step / args.steps) + 1) / 2
                for t, s in zip(teacher.parameters(), student.parameters(), strict=True):
                    t.lerp_(s, 1 - momentum)
                center.lerp_(target.mean(0, keepdim=True), 0.1)
            step += 1
            print(f"step {step}: loss {loss.item():.4f}", flush=True)
            if step == args.steps:
                break


if __name__ == "__main__":
    main()
