"""TopActivations under DDP (2 CPU processes, gloo): the logged top-k equals the single-process one.

Everything the spawned processes unpickle is defined at module top level; what only the test
process needs (reading the logs back) is imported inside the functions, so that the spawned
processes, which import this module, start faster.
"""

import io

import pytest
import pytorch_lightning as pl
import torch
from pytorch_lightning.loggers import TensorBoardLogger
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from tb_viz_plugin.callbacks import TopActivations
from tests.ddp_exit import LeaveProcessGroup

LAYERS = ["net.1", "net.3"]
N_VAL = 27  # odd: the DistributedSampler pads rank 1's shard with sample 0 again


class SmallConvNet(pl.LightningModule):
    """Two conv layers on 12x12 inputs; validation only."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.net = nn.Sequential(nn.Conv2d(3, 6, 3, padding=1), nn.ReLU(), nn.Conv2d(6, 6, 3, stride=2), nn.ReLU())

    def forward(self, x):
        return self.net(x)

    def validation_step(self, batch, batch_idx):
        self(batch[0])

    def val_dataloader(self):
        g = torch.Generator().manual_seed(5)
        data = TensorDataset(torch.randn(N_VAL, 3, 12, 12, generator=g), torch.zeros(N_VAL, dtype=torch.long))
        return DataLoader(data, batch_size=4)


def _validate(logdir, **trainer_kwargs):
    trainer = pl.Trainer(
        logger=TensorBoardLogger(str(logdir), name="run", version="v0"),
        callbacks=[TopActivations(layers=LAYERS, units=[0, 3, 5], k=5, strict=True), LeaveProcessGroup()],
        enable_progress_bar=False, enable_model_summary=False, enable_checkpointing=False, **trainer_kwargs,
    )
    trainer.validate(SmallConvNet())


def _pixels(png: bytes):
    import numpy as np
    from PIL import Image

    return np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))


def _logged(logdir, layer):
    from tensorboard import context

    from tests.helpers import make_plugin

    plugin, client = make_plugin(str(logdir))
    answer = plugin.items_impl(context.RequestContext(), "", "run/v0", f"top_activations/{layer}", 0)
    for item in answer["items"]:
        item["png"] = client.get("/data/plugin/tb_viz/" + item.pop("url")).data
    return answer


@pytest.mark.slow  # two spawned processes
@pytest.mark.timeout(240)
def test_ddp_top_k_equals_single_process(tmp_path):
    _validate(tmp_path / "ddp", accelerator="cpu", devices=2, strategy="ddp_spawn")
    _validate(tmp_path / "single", accelerator="cpu", devices=1)
    for layer in LAYERS:
        ddp, single = _logged(tmp_path / "ddp", layer), _logged(tmp_path / "single", layer)
        assert ddp["meta"]["samples"] == N_VAL + 1 and single["meta"]["samples"] == N_VAL  # the padded repeat
        assert {**ddp["meta"], "samples": N_VAL} == single["meta"]
        assert ddp["meta"]["sample_ids"] == "dataset index"
        for a, b in zip(ddp["items"], single["items"]):
            assert (a["unit"], a["sample_ids"], a["positions"]) == (b["unit"], b["sample_ids"], b["positions"])
            assert a["values"] == pytest.approx(b["values"], rel=1e-5)  # other batches: last-bit differences
            assert len(set(a["sample_ids"])) == 5  # the repeated sample counted once
            # the gathered crops are the right ones (a value label or outline pixel may differ in the last bit)
            assert (_pixels(a["png"]) != _pixels(b["png"])).any(-1).mean() < 0.02
