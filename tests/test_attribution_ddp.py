"""AttributionMaps under DDP (2 CPU processes, gloo): rank 0 alone computes, nothing hangs, same maps as 1 process.

Everything the spawned processes unpickle is defined at module top level.
"""

import pytest
import pytorch_lightning as pl
import torch
from pytorch_lightning.loggers import TensorBoardLogger
from tensorboard import context as tb_context
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from tb_viz_plugin.callbacks import AttributionMaps
from tests.ddp_exit import LeaveProcessGroup

from tests.helpers import make_plugin

CTX = tb_context.RequestContext()


class SmallClassifier(pl.LightningModule):
    """Conv, ReLU, global pooling, linear on 12x12 inputs; validation only."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.net = nn.Sequential(nn.Conv2d(3, 6, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(6, 3))

    def forward(self, x):
        return self.net(x)

    def validation_step(self, batch, batch_idx):
        self(batch[0])

    def val_dataloader(self):
        g = torch.Generator().manual_seed(5)
        return DataLoader(TensorDataset(torch.randn(9, 3, 12, 12, generator=g), torch.randint(0, 3, (9,), generator=g)), batch_size=4)


def _validate(logdir, **trainer_kwargs):
    callback = AttributionMaps(methods=["cam", "grad_cam", "occlusion"], num_images=3, options={"occlusion": {"window": 6}}, strict=True)
    trainer = pl.Trainer(
        logger=TensorBoardLogger(str(logdir), name="run", version="v0"), callbacks=[callback, LeaveProcessGroup()],
        enable_progress_bar=False, enable_model_summary=False, enable_checkpointing=False, **trainer_kwargs,
    )  # fmt: skip
    trainer.validate(SmallClassifier(), verbose=False)


@pytest.mark.slow  # two spawned processes
@pytest.mark.timeout(240)
def test_ddp_logs_the_single_process_maps(tmp_path):
    _validate(tmp_path / "ddp", accelerator="cpu", devices=2, strategy="ddp_spawn")
    _validate(tmp_path / "single", accelerator="cpu", devices=1)
    answers = [make_plugin(str(tmp_path / run))[0].items_impl(CTX, "", "run/v0", "attributions/net.1/predicted", 0) for run in ("ddp", "single")]
    assert answers[0]["meta"] == answers[1]["meta"]  # same probes, classes, probabilities, layers
    strip = [[{k: v for k, v in item.items() if k != "url"} for item in answer["items"]] for answer in answers]
    assert strip[0] == strip[1]  # same raw ranges per map
