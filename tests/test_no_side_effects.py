"""Callbacks never change training: bitwise-equal weights, untouched .grad, RNG, flags and hooks."""

import pytorch_lightning as pl
import torch

from tb_viz_plugin.callbacks import FilterGrid

from tests.helpers import guard_side_effects, hook_count, tiny_module, tiny_trainer


def _train(tmp_path, callbacks):
    pl.seed_everything(0)
    module = tiny_module()
    trainer = tiny_trainer(tmp_path, callbacks, max_epochs=3)
    trainer.fit(module)
    return module


def test_filter_grid_changes_nothing(tmp_path):
    violations: list = []
    baseline = _train(tmp_path / "without", [])
    callback = guard_side_effects(FilterGrid(layers=["net.0.0", "net.0.2"]), violations)
    with_viz = _train(tmp_path / "with", [callback])
    assert violations == []
    for (name, a), (_, b) in zip(baseline.state_dict().items(), with_viz.state_dict().items()):
        assert torch.equal(a, b), name
    assert hook_count(with_viz) == 0


def test_the_guard_catches_violations(tmp_path):
    class Careless(pl.Callback):
        def on_train_epoch_end(self, trainer, pl_module):
            torch.randn(1)
            pl_module.train()
            pl_module(torch.zeros(1, 3, 8, 8)).sum().backward()
            pl_module.net[1].register_forward_hook(lambda *a: None)

    violations: list = []
    module = tiny_module()
    module.net[0].eval()  # a frozen submodule that pl_module.train() wrongly flips
    tiny_trainer(tmp_path, [guard_side_effects(Careless(), violations)], max_epochs=1).fit(module)
    joined = " ".join(violations)
    for expected in (".grad", "global torch RNG", "training flags", "hooks"):
        assert expected in joined, violations
