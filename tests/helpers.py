"""Shared test helpers: tiny models, tb-viz logdirs written with a real SummaryWriter, a WSGI client."""

from __future__ import annotations

import os
from typing import Dict, Iterable, Optional

import torch
from torch import nn
from torch.utils.tensorboard import SummaryWriter
from werkzeug import test as werkzeug_test
from werkzeug import wrappers

from tensorboard.backend import application
from tensorboard.backend.event_processing import data_provider, plugin_event_multiplexer
from tensorboard.plugins import base_plugin

from tb_viz_plugin import log_filters, summary
from tb_viz_plugin.plugin import TbVizPlugin

from tests.serving import (  # noqa: F401  (re-exported: the tests import them from here)
    open_plugin_page, open_tab, serve_runs, serve_tensorboard, wait_for_json, wait_images_loaded,
)


def tiny_net(seed: int = 0) -> nn.Module:
    """A small CNN with torchvision-like names: features.0 (RGB conv), features.2 (deeper conv)."""
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Sequential(
            nn.Conv2d(3, 8, 5, padding=2),
            nn.ReLU(),
            nn.Conv2d(8, 12, 3, padding=1),
            nn.ReLU(),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
        ),
        nn.Linear(12, 4),
    )


def write_filter_run(logdir: str, run: str, steps: Iterable[int], seed: int = 0) -> nn.Module:
    """Log filter grids of ``tiny_net`` at ``steps``, the weights drifting between steps."""
    net = tiny_net(seed)
    writer = SummaryWriter(os.path.join(logdir, run))
    generator = torch.Generator().manual_seed(seed)
    try:
        for step in steps:
            with torch.no_grad():
                for p in net.parameters():
                    p.add_(0.05 * torch.randn(p.shape, generator=generator))
            log_filters(writer, net, step, layers=["0.0", "0.2"])
            writer.add_scalar("loss", 1.0 / (1 + step), step)
    finally:
        writer.close()
    return net


def write_raw(logdir: str, run: str, tag: str, step: int, content: bytes, blobs: list) -> None:
    """Write a blob-sequence event with arbitrary plugin content and blobs (for format edge cases)."""
    from tensorboard.compat.proto import summary_pb2, types_pb2
    from tensorboard.util import tensor_util

    metadata = summary_pb2.SummaryMetadata(
        plugin_data=summary_pb2.SummaryMetadata.PluginData(plugin_name=summary.PLUGIN_NAME, content=content),
        data_class=summary_pb2.DATA_CLASS_BLOB_SEQUENCE,
    )
    tensor = tensor_util.make_tensor_proto(blobs, dtype=types_pb2.DT_STRING, shape=[len(blobs)])
    writer = SummaryWriter(os.path.join(logdir, run))
    writer._get_file_writer().add_summary(
        summary_pb2.Summary(value=[summary_pb2.Summary.Value(tag=tag, metadata=metadata, tensor=tensor)]), step
    )
    writer.close()


def make_plugin(logdir: str, samples_per_plugin: Optional[Dict[str, int]] = None):
    """A TbVizPlugin over ``logdir`` through TensorBoard's Python data provider, and a WSGI client."""
    samples = samples_per_plugin if samples_per_plugin is not None else {summary.PLUGIN_NAME: 0}
    guidance = {summary.PLUGIN_NAME: samples.get(summary.PLUGIN_NAME, 10)}
    multiplexer = plugin_event_multiplexer.EventMultiplexer(tensor_size_guidance=guidance)
    multiplexer.AddRunsFromDirectory(logdir)
    multiplexer.Reload()
    provider = data_provider.MultiplexerDataProvider(multiplexer, logdir)
    context = base_plugin.TBContext(logdir=logdir, data_provider=provider, sampling_hints=samples)
    plugin = TbVizPlugin(context)
    app = application.TensorBoardWSGI([plugin], data_provider=provider)
    return plugin, werkzeug_test.Client(app, wrappers.Response)


def tiny_module():
    """A LightningModule around ``tiny_net`` on fixed random data (Lightning's BoringModel idea)."""
    import pytorch_lightning as pl

    class TinyModule(pl.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.net = tiny_net(0)

        def forward(self, x):
            return self.net(x)

        def _loss(self, batch):
            x, y = batch
            return nn.functional.cross_entropy(self(x), y)

        def training_step(self, batch, batch_idx):
            loss = self._loss(batch)
            self.log("train_loss", loss)
            return loss

        def validation_step(self, batch, batch_idx):
            self.log("val_loss", self._loss(batch))

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.1, momentum=0.9)

        def _loader(self, seed):
            g = torch.Generator().manual_seed(seed)
            data = torch.utils.data.TensorDataset(torch.randn(32, 3, 16, 16, generator=g), torch.randint(0, 4, (32,), generator=g))
            return torch.utils.data.DataLoader(data, batch_size=8)

        def train_dataloader(self):
            return self._loader(1)

        def val_dataloader(self):
            return self._loader(2)

    return TinyModule()


def tiny_trainer(tmp_path, callbacks, logger=True, **kwargs):
    """A quiet CPU Trainer logging to ``tmp_path`` with a TensorBoardLogger (or ``logger``)."""
    import pytorch_lightning as pl
    from pytorch_lightning.loggers import TensorBoardLogger

    if logger is True:
        logger = TensorBoardLogger(str(tmp_path), name="tiny", version="v0")
    options = dict(
        default_root_dir=str(tmp_path), max_epochs=2, limit_train_batches=2, limit_val_batches=2,
        enable_progress_bar=False, enable_model_summary=False, enable_checkpointing=False,
        accelerator="cpu", devices=1, logger=logger, callbacks=callbacks, log_every_n_steps=1,
    )
    options.update(kwargs)
    return pl.Trainer(**options)


def guard_side_effects(callback, violations: list):
    """Wrap every Lightning hook of ``callback`` to record what it changed that it must not.

    After each hook call: parameter ``.grad`` (identity and values), every submodule's training
    flag, the global torch/numpy/python RNG states and the module's hooks must be as before.
    Violations are appended to ``violations`` as strings.
    """
    import random

    import numpy as np
    import pytorch_lightning as pl

    def snapshot(module):
        return {
            "grads": [(p.grad, None if p.grad is None else p.grad.clone()) for p in module.parameters()],
            "flags": [m.training for m in module.modules()],
            "torch_rng": torch.get_rng_state(),
            "np_rng": np.random.get_state()[1].copy(),
            "py_rng": random.getstate(),
            "hooks": hook_count(module),
        }

    def wrap(name, hook):
        def wrapped(trainer, pl_module, *args, **kwargs):
            before = snapshot(pl_module)
            result = hook(trainer, pl_module, *args, **kwargs)
            after = snapshot(pl_module)
            for (g0, v0), (g1, v1) in zip(before["grads"], after["grads"]):
                if g0 is not g1 or (v0 is not None and not torch.equal(v0, v1)):
                    violations.append(f"{name} changed a parameter .grad")
                    break
            if before["flags"] != after["flags"]:
                violations.append(f"{name} changed training flags")
            if not torch.equal(before["torch_rng"], after["torch_rng"]):
                violations.append(f"{name} consumed the global torch RNG")
            if not np.array_equal(before["np_rng"], after["np_rng"]) or before["py_rng"] != after["py_rng"]:
                violations.append(f"{name} consumed the numpy/python RNG")
            # hooks may be added only where a validation pass starts (and removed anywhere)
            if after["hooks"] > before["hooks"] and name not in ("on_validation_epoch_start", "on_validation_start"):
                violations.append(f"{name} left hooks behind: {before['hooks']} -> {after['hooks']}")
            return result

        return wrapped

    for name in dir(pl.Callback):
        if name.startswith("on_") or name in ("setup", "teardown"):
            if getattr(type(callback), name) is not getattr(pl.Callback, name):
                setattr(callback, name, wrap(name, getattr(callback, name)))
    return callback


def hook_count(module: nn.Module) -> int:
    """Forward/backward hooks registered on ``module`` and its submodules."""
    return sum(
        len(m._forward_hooks) + len(m._forward_pre_hooks) + len(m._backward_hooks)
        + len(getattr(m, "_backward_pre_hooks", {}))
        for m in module.modules()
    )
