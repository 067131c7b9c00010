"""Small CNN for the shapes demo, and the LightningModule that trains it.

Layer names read like torchvision's: ``features.0`` is the first (5x5, RGB) conv, ``features`` ends
in the last conv block, whose output goes straight through global average pooling (``pool``) into
the linear ``classifier`` -- the layout class activation maps (CAM) need.
"""

from __future__ import annotations

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torch import nn

from tb_viz_plugin.demo.data import CLASS_NAMES

FIRST_CONV = "features.0"
"""Name of the first conv (RGB input, 5x5 kernels): its filters are directly viewable as images."""
DEEP_CONV = "features.4"
"""Name of the second conv (3x3 kernels)."""
CAM_LAYER = "features"
"""Name of the module whose output feeds global average pooling -> ``classifier``."""


def _block(in_channels: int, out_channels: int, kernel_size: int = 3, pool: bool = True) -> list[nn.Module]:
    """Conv -> BatchNorm -> ReLU (-> 2x2 max-pool)."""
    layers: list[nn.Module] = [
        nn.Conv2d(in_channels, out_channels, kernel_size, padding=kernel_size // 2, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(),
    ]
    return [*layers, nn.MaxPool2d(2)] if pool else layers


class ShapesCNN(nn.Module):
    """Four conv blocks (width w, 2w, 4w, 8w; 64x64 input -> 8x8 maps), GAP, linear classifier.

    ``features`` indices: 0 conv5x5(3->w), 4 conv3x3(w->2w), 8 conv3x3(2w->4w), 12 conv3x3(4w->8w);
    each conv is followed by BatchNorm and ReLU, the first three by a max-pool.
    """

    def __init__(self, num_classes: int = len(CLASS_NAMES), width: int = 16) -> None:
        super().__init__()
        self.features = nn.Sequential(
            *_block(3, width, kernel_size=5),
            *_block(width, 2 * width),
            *_block(2 * width, 4 * width),
            *_block(4 * width, 8 * width, pool=False),
        )
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(8 * width, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Normalised images (N, 3, H, W) -> logits (N, num_classes)."""
        return self.classifier(self.pool(self.features(x)).flatten(1))


class ShapesModule(pl.LightningModule):
    """Trains ``ShapesCNN`` (as ``self.model``) with cross-entropy, AdamW and a one-cycle LR schedule.

    Logs ``train_loss`` every step and the epoch-level ``val_loss`` and ``val_acc``. Training uses
    no randomness of its own (no dropout, no augmentation), so the weights depend only on the seed
    of the model initialisation and the order of the batches.
    """

    def __init__(
        self, lr: float = 8e-3, weight_decay: float = 1e-4, num_classes: int = len(CLASS_NAMES), width: int = 16
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.model = ShapesCNN(num_classes, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits of ``self.model``; the input goes in as channels-last, ~1.2x faster on CPU.

        Activations (and so hooked feature maps) are then channels-last strided; the weights are not.
        """
        return self.model(x.contiguous(memory_format=torch.channels_last))

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        images, labels = batch
        loss = F.cross_entropy(self(images), labels)
        self.log("train_loss", loss, on_step=True, on_epoch=False)
        return loss

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        images, labels = batch
        logits = self(images)
        self.log("val_loss", F.cross_entropy(logits, labels), on_step=False, on_epoch=True)
        self.log("val_acc", (logits.argmax(1) == labels).float().mean(), on_step=False, on_epoch=True)

    def configure_optimizers(self) -> dict:
        optimizer = torch.optim.AdamW(self.parameters(), lr=self.hparams.lr, weight_decay=self.hparams.weight_decay)
        schedule = torch.optim.lr_scheduler.OneCycleLR(
            optimizer, max_lr=self.hparams.lr, total_steps=int(self.trainer.estimated_stepping_batches)
        )
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": schedule, "interval": "step"}}
