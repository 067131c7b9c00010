"""FilterGrid: the learned filters of conv layers, epoch by epoch."""

from __future__ import annotations

from typing import Any, List, Optional, Sequence, Union

import pytorch_lightning as pl
from typing_extensions import override

from tb_viz_plugin.callbacks.base import VizCallback, check_layer_names, check_positive, misconfiguration
from tb_viz_plugin.log import make_tag, write_filters
from tb_viz_plugin.log.filters import KIND
from tb_viz_plugin.methods import LayerNotFoundError, filter_weights, resolve_layers


class FilterGrid(VizCallback):
    """Log filter grids of ``Conv2d`` layers at the end of training epochs.

    The first layer (3 input channels) is drawn as RGB tiles; deeper layers as one row per filter
    and one tile per input channel. Logged at ``trainer.global_step`` so the step slider lines up
    with the training curves, under the tag ``filters/<layer>[/<name>]``. Reads weights only: no
    forward pass, no hooks, nothing about training changes.

    Args:
        layers: module names (``"features.0"``, ``"layer1.0.conv1"``); ``None`` = the first ``Conv2d``.
        every_n_epochs: log every n-th epoch; ``None`` = the ``budget`` decides (always the first
            and the last epoch).
        budget: the overhead allowed to the Trainer's tb-viz callbacks together, as a fraction of
            the training time (see ``VizCallback``); ``None`` = every epoch.
        max_filters: at most this many filters are drawn per layer.
        max_channels: at most this many input channels per filter (deeper layers).
        log_initial: also log the weights at step 0, before the first update (fresh runs only: not
            when resuming from a checkpoint, whose weights are logged at its own step already).
        strict: re-raise errors instead of warning.
        name: appended to the tags, to tell this instance from another one on the same layers.

    Raises:
        MisconfigurationException: bad arguments (here), or at ``setup`` a layer name that is not a
            ``Conv2d`` of the model (the message lists the valid names).

    Example:
        >>> callback = FilterGrid(layers=["features.0", "features.4"], every_n_epochs=2)
        >>> callback.state_key
        "FilterGrid{'layers': ['features.0', 'features.4']}"
        >>> trainer = Trainer(logger=TensorBoardLogger("logs"), callbacks=[callback])  # doctest: +SKIP
    """

    def __init__(
        self,
        layers: Optional[Union[str, Sequence[str]]] = None,
        every_n_epochs: Optional[int] = None,
        max_filters: int = 32,
        max_channels: int = 16,
        log_initial: bool = True,
        strict: bool = False,
        name: Optional[str] = None,
        budget: Optional[float] = 0.05,
    ) -> None:
        super().__init__(every_n_epochs=every_n_epochs, strict=strict, name=name, budget=budget)
        self._needs_validation = False
        check_positive("FilterGrid", max_filters=max_filters, max_channels=max_channels)
        self.layers = check_layer_names("FilterGrid", layers)
        self.max_filters = max_filters
        self.max_channels = max_channels
        self.log_initial = log_initial
        self._resolved: List[str] = []

    @property
    @override
    def state_key(self) -> str:
        return self._key(layers=self.layers)

    @override
    def _planned_tags(self) -> List[str]:
        return [make_tag(KIND, layer, name=self.name) for layer in self._resolved]

    @override
    def setup(self, trainer: "pl.Trainer", pl_module: "pl.LightningModule", stage: str) -> None:
        with misconfiguration("FilterGrid", LayerNotFoundError):
            self._resolved = resolve_layers(pl_module, self.layers)
        super().setup(trainer, pl_module, stage)

    @override
    def on_fit_start(self, trainer: "pl.Trainer", pl_module: "pl.LightningModule") -> None:
        if self.log_initial and trainer.global_step == 0 and trainer.ckpt_path is None:
            self._log(trainer, pl_module)

    @override
    def on_train_start(self, trainer: "pl.Trainer", pl_module: "pl.LightningModule") -> None:
        """Start the schedule; no model check: the filters are read from the weights, the model is never run."""
        self._schedule.start(trainer)

    @override
    def on_validation_start(self, trainer: "pl.Trainer", pl_module: "pl.LightningModule") -> None:
        """No model check (see ``on_train_start``)."""

    @override
    def on_train_epoch_end(self, trainer: "pl.Trainer", pl_module: "pl.LightningModule") -> None:
        if self._should_log_epoch(trainer):
            self._log(trainer, pl_module)

    def _log(self, trainer: "pl.Trainer", pl_module: "pl.LightningModule") -> None:
        if not trainer.is_global_zero:
            return  # every rank holds the same weights; no collective is needed
        writer = self._writer(trainer)
        if writer is None:
            return
        self._run_safely(trainer, "logging filter grids", lambda: self._write(trainer, pl_module, writer))

    def _write(self, trainer: "pl.Trainer", pl_module: "pl.LightningModule", writer: Any) -> None:
        weights = {layer: filter_weights(pl_module, layer) for layer in self._resolved}  # CPU copies
        self._write_later(
            trainer, "logging filter grids", write_filters, writer, weights, trainer.global_step, max_filters=self.max_filters, max_channels=self.max_channels,
            name=self.name,
        )  # fmt: skip
