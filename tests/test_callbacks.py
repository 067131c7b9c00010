"""FilterGrid inside a real Trainer: layers, schedule, missing logger, failures, and no side effects."""

import warnings

import pytest
import torch
from pytorch_lightning.loggers import CSVLogger
from pytorch_lightning.utilities.exceptions import MisconfigurationException

from tb_viz_plugin.callbacks import FilterGrid
from tensorboard import context as tb_context

from tests.helpers import make_plugin, tiny_module, tiny_trainer

CTX = tb_context.RequestContext()


def _tags(tmp_path):
    plugin, _ = make_plugin(str(tmp_path))
    return plugin.tags_impl(CTX, "").get("tiny/v0", {})


def test_default_layer_is_first_conv_and_steps_follow_global_step(tmp_path):
    trainer = tiny_trainer(tmp_path, [FilterGrid(every_n_epochs=1)], max_epochs=3)
    trainer.fit(tiny_module())
    tags = _tags(tmp_path)
    assert list(tags) == ["filters/net.0.0"]
    # step 0 = the initial weights, then the global step after each epoch (2 batches per epoch)
    assert tags["filters/net.0.0"]["steps"] == [0, 2, 4, 6]
    plugin, _ = make_plugin(str(tmp_path))
    first = plugin.items_impl(CTX, "", "tiny/v0", "filters/net.0.0", 0)
    last = plugin.items_impl(CTX, "", "tiny/v0", "filters/net.0.0", 6)
    assert first["meta"]["layout"] == "rgb" and first["meta"]["weight_shape"] == [8, 3, 5, 5]
    assert first["meta"]["weight_max"] != last["meta"]["weight_max"]  # the weights did train


def test_named_layers_and_every_n_epochs(tmp_path):
    callback = FilterGrid(layers=["net.0.2", "net.0.0"], every_n_epochs=2, log_initial=False)
    trainer = tiny_trainer(tmp_path, [callback], max_epochs=4)
    trainer.fit(tiny_module())
    tags = _tags(tmp_path)
    assert sorted(tags) == ["filters/net.0.0", "filters/net.0.2"]
    assert tags["filters/net.0.2"]["steps"] == [4, 8]


def test_unknown_layer_fails_at_setup_listing_valid_names(tmp_path):
    trainer = tiny_trainer(tmp_path, [FilterGrid(layers=["features.0"])])
    with pytest.raises(MisconfigurationException, match=r"no module named 'features.0'.*'net.0.0', 'net.0.2'"):
        trainer.fit(tiny_module())
    trainer = tiny_trainer(tmp_path, [FilterGrid(layers="net.0.1")])
    with pytest.raises(MisconfigurationException, match=r"'net.0.1' is a ReLU, not a Conv2d"):
        trainer.fit(tiny_module())


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(every_n_epochs=0), "every_n_epochs"),
        (dict(every_n_epochs=1.5), "every_n_epochs"),
        (dict(max_filters=0), "max_filters"),
        (dict(layers=[]), "layers"),
        (dict(layers=[3]), "layers"),
    ],
)
def test_bad_arguments_fail_at_construction(kwargs, match):
    with pytest.raises(MisconfigurationException, match=match):
        FilterGrid(**kwargs)


@pytest.mark.parametrize("logger", [False, "csv"])
def test_no_tensorboard_logger_warns_once_and_trains(tmp_path, logger):
    if logger == "csv":
        logger = CSVLogger(str(tmp_path))
    trainer = tiny_trainer(tmp_path, [FilterGrid()], logger=logger, max_epochs=3)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        trainer.fit(tiny_module())
    ours = [w for w in caught if "no TensorBoardLogger" in str(w.message)]
    assert len(ours) == 1, [str(w.message) for w in caught]
    assert trainer.current_epoch == 3


def test_runtime_failure_warns_and_training_goes_on(tmp_path, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("renderer exploded")

    monkeypatch.setattr("tb_viz_plugin.render.filters.filter_grid", broken)
    trainer = tiny_trainer(tmp_path, [FilterGrid()])
    with pytest.warns(UserWarning, match="renderer exploded.*strict=True"):
        trainer.fit(tiny_module())
    assert trainer.current_epoch == 2

    trainer = tiny_trainer(tmp_path, [FilterGrid(strict=True)])
    with pytest.raises(RuntimeError, match="renderer exploded"):
        trainer.fit(tiny_module())


def test_state_key_identifies_the_instance():
    assert FilterGrid(layers=["a"]).state_key != FilterGrid(layers=["b"]).state_key


def test_names_relative_to_the_wrapped_network(tmp_path):
    """`features.0`-style names work when the LightningModule holds the net as an attribute."""
    trainer = tiny_trainer(tmp_path, [FilterGrid(layers=["0.2"], log_initial=False)], max_epochs=1)
    trainer.fit(tiny_module())
    assert list(_tags(tmp_path)) == ["filters/net.0.2"]
    from tb_viz_plugin.methods import LayerNotFoundError, resolve_layers
    from torch import nn

    twice = nn.ModuleDict({"a": nn.Sequential(nn.Conv2d(3, 3, 1)), "b": nn.Sequential(nn.Conv2d(3, 3, 1))})
    with pytest.raises(LayerNotFoundError, match=r"ambiguous: 'a.0', 'b.0'"):
        resolve_layers(twice, "0")


def test_works_with_the_unified_lightning_package(tmp_path):
    """`lightning.pytorch` is a separate class hierarchy; its Trainer and TensorBoardLogger work too."""
    L = pytest.importorskip("lightning.pytorch")
    from lightning.pytorch.loggers import TensorBoardLogger as UnifiedTensorBoardLogger

    from tests.helpers import tiny_net

    class Unified(L.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.net = tiny_net(0)

        def training_step(self, batch, batch_idx):
            x, y = batch
            return torch.nn.functional.cross_entropy(self.net(x), y)

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.1)

        def train_dataloader(self):
            g = torch.Generator().manual_seed(0)
            data = torch.utils.data.TensorDataset(torch.randn(8, 3, 16, 16, generator=g), torch.randint(0, 4, (8,), generator=g))
            return torch.utils.data.DataLoader(data, batch_size=4)

    trainer = L.Trainer(
        max_epochs=2, accelerator="cpu", logger=UnifiedTensorBoardLogger(str(tmp_path), name="tiny", version="v0"),
        callbacks=[FilterGrid(layers="0.2")], enable_progress_bar=False, enable_model_summary=False,
        enable_checkpointing=False,
    )
    trainer.fit(Unified())
    assert _tags(tmp_path)["filters/net.0.2"]["steps"] == [0, 2, 4]
