"""Train a torchvision ResNet on an ImageNet-style LitData dataset with slipstream: one process
per GPU under torchrun (DDP), AMP (bfloat16), channels_last, and checkpoints that hold the
loader's position, so a restarted job continues mid-epoch with the same batches.

    torchrun --nproc_per_node=8 examples/train_imagenet.py --data /data/imagenet/train \\
        --val-data /data/imagenet/val --arch resnet50 --epochs 90 --checkpoint ckpt.pt

Rerunning the same command after an interruption resumes from ``--checkpoint``. Without a GPU
it runs on the CPU (gloo), which is how ``make test`` runs it on tiny data.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import slipstream as ss
import torch
import torch.distributed as dist
import torchvision


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument(
        "--data", required=True, help="LitData dataset (path or s3://) with image, label"
    )
    p.add_argument("--val-data", help="validation dataset (evaluated after each epoch)")
    p.add_argument("--arch", default="resnet50", help="a torchvision.models name")
    p.add_argument("--num-classes", type=int, default=1000)
    p.add_argument("--epochs", type=int, default=90)
    p.add_argument("--batch-size", type=int, default=256, help="per process")
    p.add_argument("--image-size", type=int, default=224)
    p.add_argument("--lr", type=float, default=0.1, help="for a total batch of 256")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--checkpoint", type=Path, help="saved every --save-every steps and at epoch ends"
    )
    p.add_argument("--save-every", type=int, default=1000)
    p.add_argument(
        "--max-steps", type=int, help="stop after this many steps (a time limit's stand-in)"
    )
    p.add_argument(
        "--seen", type=Path, help="append the sample indices each step trained on (JSON lines)"
    )
    return p.parse_args()


def setup() -> tuple[int, int, torch.device]:
    """torchrun's rank and world size; one GPU per process, or the CPU (gloo)."""
    rank, world = int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))
    if torch.cuda.is_available():
        local = int(os.environ.get("LOCAL_RANK", 0))
        torch.cuda.set_device(local)
        device = torch.device("cuda", local)
    else:
        device = torch.device("cpu")
    if world > 1:
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return rank, world, device


def main() -> None:
    args = parse_args()
    rank, world, device = setup()
    torch.manual_seed(args.seed)
    on_gpu = device.type == "cuda"
    train = ss.SlipstreamLoader(
        ss.SlipstreamDataset(args.data, progress=rank == 0),
        batch_size=args.batch_size,
        seed=args.seed,
        drop_last=True,
        device=device if on_gpu else None,
        dtype="bfloat16" if on_gpu else "float32",
        memory_format="channels_last",
        pipelines={
            "image": [
                ss.RandomResizedCrop(args.image_size),
                ss.RandomHorizontalFlip(),
                ss.Normalize(),
            ]
        },
    )
    val = None
    if args.val_data:
        val = ss.SlipstreamLoader(
            ss.SlipstreamDataset(args.val_data, progress=rank == 0),
            batch_size=args.batch_size,
            shuffle=False,
            device=device if on_gpu else None,
            memory_format="channels_last",
            pipelines={
                "image": [
                    ss.CenterCrop(args.image_size, resize=round(args.image_size / 0.875)),
                    ss.Normalize(),
                ]
            },
        )

    model = torchvision.models.get_model(args.arch, num_classes=args.num_classes)
    model = model.to(device, memory_format=torch.channels_last)
    lr = args.lr * args.batch_size * world / 256
    optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, weight_decay=5e-5)
    steps_per_epoch = len(train)
    schedule = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=lr, total_steps=args.epochs * steps_per_epoch, pct_start=0.05
    )
    ddp = torch.nn.parallel.DistributedDataParallel(model) if world > 1 else model

    step = 0
    if args.checkpoint and args.checkpoint.exists():
        state = torch.load(args.checkpoint, map_location=device, weights_only=False)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        schedule.load_state_dict(state["schedule"])
        train.load_state_dict(state["loaders"][rank])  # each rank resumes its own position
        step = state["step"]
        if rank == 0:
            print(f"resumed at step {step} (epoch {state['loaders'][0]['epoch']})", flush=True)

    def save() -> None:
        states = [None] * world
        if world > 1:
            dist.all_gather_object(states, train.state_dict())
        else:
            states = [train.state_dict()]
        if rank == 0 and args.checkpoint:
            state = {
                "model": model.state_dict(),
                "optimizer": optimizer.state_dict(),
                "schedule": schedule.state_dict(),
                "loaders": states,
                "step": step,
            }
            torch.save(state, f"{args.checkpoint}.tmp")
            os.replace(f"{args.checkpoint}.tmp", args.checkpoint)

    start_epoch = train.state_dict()["epoch"]
    for epoch in range(start_epoch, args.epochs):
        train.set_epoch(epoch)  # keeps a resumed position within this epoch
        ddp.train()
        started = time.perf_counter()
        for batch in train:
            images = batch["image"].to(device, non_blocking=True)
            labels = batch["label"].to(device, non_blocking=True)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=on_gpu):
                loss = torch.nn.functional.cross_entropy(ddp(images), labels)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            step += 1
            if args.seen:
                with open(args.seen, "a") as f:
                    f.write(
                        json.dumps(
                            {"rank": rank, "epoch": epoch, "samples": batch["index"].tolist()}
                        )
                        + "\n"
                    )
            if args.checkpoint and step % args.save_every == 0:
                save()
            if args.max_steps and step >= args.max_steps:
                save()
                return
        if rank == 0:
            rate = len(train) * args.batch_size * world / (time.perf_counter() - started)
            print(f"epoch {epoch}: loss {loss.item():.3f}, {rate:.0f} images/s", flush=True)
        if val is not None:
            evaluate(ddp, val, device, on_gpu, rank, world)
        save()
    if world > 1:
        dist.destroy_process_group()


@torch.no_grad()
def evaluate(model, loader, device, on_gpu, rank, world) -> None:
    model.eval()
    correct = torch.zeros(2, device=device)
    for batch in loader:
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=on_gpu):
            logits = model(batch["image"].to(device))
        labels = batch["label"].to(device)
        correct += torch.stack(
            [(logits.argmax(1) == labels).sum(), torch.tensor(len(labels), device=device)]
        )
    if world > 1:
        dist.all_reduce(correct)
    if rank == 0:
        print(f"val top-1 {100 * correct[0].item() / correct[1].item():.2f}%", flush=True)


if __name__ == "__main__":
    main()
