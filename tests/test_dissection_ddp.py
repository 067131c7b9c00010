"""NetworkDissection under DDP (2 CPU processes, gloo): the summed counts give the exact IoU; labels as one process.

Everything the spawned processes unpickle is defined at module top level.
"""

import pytest
import pytorch_lightning as pl
import torch
from pytorch_lightning.loggers import TensorBoardLogger
from torch.utils.data import DataLoader, TensorDataset

from tb_viz_plugin.callbacks import NetworkDissection
from tests.ddp_exit import LeaveProcessGroup

from tests.test_top_activations_ddp import SmallConvNet as TopKNet

N_VAL = 28  # 14 per rank: no padded repeats, so both runs count the same pixels


class SmallConvNet(TopKNet):
    """TopActivations' DDP test network, on 28 images in [0, 1] (colours to find)."""

    def val_dataloader(self):
        return DataLoader(TensorDataset(_images(), torch.zeros(N_VAL, dtype=torch.long)), batch_size=4)


def _images():
    return torch.rand(N_VAL, 3, 12, 12, generator=torch.Generator().manual_seed(5))


def _validate(logdir, **trainer_kwargs):
    trainer = pl.Trainer(
        logger=TensorBoardLogger(str(logdir), name="run", version="v0"),
        callbacks=[NetworkDissection(layers=["net.1", "net.3"], quantile=0.02, top_k=3, strict=True), LeaveProcessGroup()],
        enable_progress_bar=False, enable_model_summary=False, enable_checkpointing=False, **trainer_kwargs,
    )
    trainer.validate(SmallConvNet())


def _meta(logdir, layer):
    from tensorboard import context

    from tests.helpers import make_plugin

    plugin, _ = make_plugin(str(logdir))
    return plugin.items_impl(context.RequestContext(), "", "run/v0", f"network_dissection/{layer}", 0)


@pytest.mark.slow  # two spawned processes
@pytest.mark.timeout(240)
def test_ddp_counts_sum_to_the_exact_iou(tmp_path):
    from tb_viz_plugin.methods import color_concepts

    from tests.test_dissection_methods import exact_iou

    _validate(tmp_path / "ddp", accelerator="cpu", devices=2, strategy="ddp_spawn")
    _validate(tmp_path / "single", accelerator="cpu", devices=1)
    model = SmallConvNet().eval()
    images = _images()
    masks = color_concepts(images)
    with torch.no_grad():
        features = {"net.1": model.net[:2](images), "net.3": model.net(images)}
    for layer in ("net.1", "net.3"):
        ddp, single = _meta(tmp_path / "ddp", layer), _meta(tmp_path / "single", layer)
        assert ddp["meta"]["images"] == single["meta"]["images"] == N_VAL
        threshold = torch.tensor([u["threshold"] for u in ddp["meta"]["units"]], dtype=torch.float64)
        exact = exact_iou(features[layer], masks, torch.zeros(11, dtype=torch.long), threshold)
        assert [u["iou"] for u in ddp["meta"]["units"]] == pytest.approx(exact.max(1).values.tolist(), abs=1e-6)
        assert [u["label"] for u in ddp["meta"]["units"]] == [u["label"] for u in single["meta"]["units"]]
        assert [u["iou"] for u in ddp["meta"]["units"]] == pytest.approx([u["iou"] for u in single["meta"]["units"]], abs=0.02)
        tops = [{item["unit"]: item["sample_ids"] for item in run["items"]} for run in (ddp, single)]
        assert tops[0] == tops[1]  # the gathered top images are the same samples
