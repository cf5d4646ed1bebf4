"""Self-supervised pretraining with multi-crop views, DINO-style: each image gives two global
views and several local ones; a student network sees every view, an EMA teacher the global
ones, and the student learns to match the teacher's output on the other views.

    python examples/ssl_multicrop.py --data /data/imagenet/train --local-views 6 --steps 100000

slipstream makes every view with DINO's augmentations (``slipstream.presets.dino``: crop, flip,
colour jitter, grayscale, blur, solarize, normalize, each drawn per sample and view), decoding
each image once for all of them, on the GPU when there is one. Without a GPU it runs on the
CPU, which is how ``make test`` runs it on tiny data for a few steps.
"""

from __future__ import annotations

import argparse
import copy
import math

import slipstream as ss
import torch
import torchvision
from torch import nn


def views(args: argparse.Namespace) -> dict[str, ss.Pipeline]:
    """DINO's views: ``global_0`` and ``global_1`` [B, 3, H, W] (their blur and solarize
    probabilities differ), ``local`` [B, N, 3, h, w]."""
    return ss.presets.dino(
        global_views=2,
        local_views=args.local_views,
        global_size=args.global_size,
        local_size=args.local_size,
    )


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
            # One [V·B, 3, H, W] batch per resolution, view-major.
            glob = torch.cat([batch["global_0"], batch["global_1"]]).to(device)
            local = batch["local"].transpose(0, 1).flatten(0, 1).to(device)
            if step == 0:
                shapes = {k: list(batch[k].shape) for k in ("global_0", "global_1", "local")}
                print("views:", ", ".join(f"{k} {v}" for k, v in shapes.items()), flush=True)
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
