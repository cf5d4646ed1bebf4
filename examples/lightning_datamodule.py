"""Train a torchvision ResNet with PyTorch Lightning, fed by slipstream through a
LightningDataModule.

The loaders are built inside the ``*_dataloader`` hooks: Lightning calls them after it has
started the processes and set up torch.distributed, so each loader takes its rank and world
size from there and reads its own share of every epoch. ``SlipstreamLoader`` has
``state_dict``/``load_state_dict``, so Lightning stores the loader's position in its
checkpoints by itself and a run restarted from a mid-epoch checkpoint continues with the batch
after the last one trained on.

    python examples/lightning_datamodule.py --data /data/imagenet/train \\
        --val-data /data/imagenet/val --devices 8 --epochs 90 --ckpt-dir ckpts

Rerunning the same command resumes from ``ckpt-dir/last.ckpt``. Without a GPU it trains on
the CPU, which is how ``make test`` runs it on tiny data.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import lightning as L
import slipstream as ss
import torch
import torchvision
from lightning.pytorch.callbacks import ModelCheckpoint


class SlipstreamDataModule(L.LightningDataModule):
    def __init__(
        self, data: str, val_data: str | None, batch_size: int, image_size: int, seed: int
    ) -> None:
        super().__init__()
        self.data, self.val_data = data, val_data
        self.batch_size, self.image_size, self.seed = batch_size, image_size, seed

    def _loader(self, path: str, train: bool) -> ss.SlipstreamLoader:
        trainer = self.trainer
        on_gpu = isinstance(trainer.accelerator, L.pytorch.accelerators.CUDAAccelerator)
        size = self.image_size
        if train:
            stages = [ss.RandomResizedCrop(size), ss.RandomHorizontalFlip(), ss.Normalize()]
        else:
            stages = [ss.CenterCrop(size, resize=round(size / 0.875)), ss.Normalize()]
        return ss.SlipstreamLoader(
            ss.SlipstreamDataset(path, progress=trainer.is_global_zero),
            batch_size=self.batch_size,
            shuffle=train,
            drop_last=train,
            seed=self.seed,
            rank=trainer.global_rank,
            world_size=trainer.world_size,
            # The GPU this process trains on: Lightning has chosen it by now.
            device=trainer.strategy.root_device if on_gpu else None,
            memory_format="channels_last",
            pipelines={"image": stages},
        )

    def train_dataloader(self) -> ss.SlipstreamLoader:
        return self._loader(self.data, train=True)

    def val_dataloader(self) -> ss.SlipstreamLoader:
        return self._loader(self.val_data, train=False)


class Classifier(L.LightningModule):
    def __init__(self, arch: str, num_classes: int, lr: float, seen: Path | None) -> None:
        super().__init__()
        self.save_hyperparameters(ignore=["seen"])
        self.model = torchvision.models.get_model(arch, num_classes=num_classes)
        self.model = self.model.to(memory_format=torch.channels_last)
        self.seen = seen

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        loss = torch.nn.functional.cross_entropy(self.model(batch["image"]), batch["label"])
        self.log("train_loss", loss, prog_bar=True)
        if self.seen:
            with open(self.seen, "a") as f:
                record = {"rank": self.global_rank, "epoch": self.current_epoch}
                f.write(json.dumps({**record, "samples": batch["index"].tolist()}) + "\n")
        return loss

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        logits = self.model(batch["image"])
        accuracy = (logits.argmax(1) == batch["label"]).float().mean()
        self.log("val_top1", accuracy, sync_dist=True, batch_size=len(logits))

    def configure_optimizers(self) -> torch.optim.Optimizer:
        lr = self.hparams.lr * self.trainer.world_size
        return torch.optim.SGD(self.parameters(), lr=lr, momentum=0.9, weight_decay=5e-5)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--data", required=True, help="LitData dataset (path or s3://): image, label")
    p.add_argument("--val-data", help="validation dataset, evaluated after each epoch")
    p.add_argument("--arch", default="resnet50", help="a torchvision.models name")
    p.add_argument("--num-classes", type=int, default=1000)
    p.add_argument("--epochs", type=int, default=90)
    p.add_argument("--batch-size", type=int, default=256, help="per process")
    p.add_argument("--image-size", type=int, default=224)
    p.add_argument("--lr", type=float, default=0.1, help="per process")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--devices", default="auto", help="Lightning's devices= (GPUs per node)")
    p.add_argument("--ckpt-dir", type=Path, default=Path("checkpoints"))
    p.add_argument("--save-every", type=int, default=1000, help="steps between checkpoints")
    p.add_argument("--max-steps", type=int, default=-1, help="stop early (a time limit's stand-in)")
    p.add_argument("--seen", type=Path, help="append each step's sample indices (JSON lines)")
    args = p.parse_args()

    L.seed_everything(args.seed)
    on_gpu = torch.cuda.is_available()
    last = args.ckpt_dir / "last.ckpt"
    trainer = L.Trainer(
        max_epochs=args.epochs,
        max_steps=args.max_steps,
        devices=args.devices,
        precision="bf16-mixed" if on_gpu else "32-true",
        callbacks=[
            ModelCheckpoint(args.ckpt_dir, every_n_train_steps=args.save_every, save_last=True)
        ],
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        limit_val_batches=1.0 if args.val_data else 0,
    )
    data = SlipstreamDataModule(
        args.data, args.val_data, args.batch_size, args.image_size, args.seed
    )
    model = Classifier(args.arch, args.num_classes, args.lr, args.seen)
    trainer.fit(model, data, ckpt_path=last if last.exists() else None)


if __name__ == "__main__":
    main()
