"""FilterGrid: the learned filters of conv layers, epoch by epoch."""

from __future__ import annotations

from typing import Optional, Sequence, Union

import pytorch_lightning as pl
from typing_extensions import override

from tb_viz_plugin.callbacks.base import VizCallback, check_layer_names, check_positive, misconfiguration
from tb_viz_plugin.log import log_filters
from tb_viz_plugin.methods import LayerNotFoundError, resolve_layers


class FilterGrid(VizCallback):
    """Log filter grids of ``Conv2d`` layers at the end of training epochs.

    The first layer (3 input channels) is drawn as RGB tiles; deeper layers as one row per filter
    and one tile per input channel. Logged at ``trainer.global_step`` so the step slider lines up
    with the training curves, under the tag ``filters/<layer>``. Reads weights only: no forward
    pass, no hooks, nothing about training changes.

    Args:
        layers: module names (``"features.0"``, ``"layer1.0.conv1"``); ``None`` = the first ``Conv2d``.
        every_n_epochs: log every n-th epoch.
        max_filters: at most this many filters are drawn per layer.
        max_channels: at most this many input channels per filter (deeper layers).
        log_initial: also log the weights at step 0, before the first update (fresh runs only).
        strict: re-raise errors instead of warning.

    Raises:
        MisconfigurationException: bad arguments (here), or at ``setup`` a layer name that is not a
            ``Conv2d`` of the model (the message lists the valid names).

    Example:
        >>> trainer = Trainer(logger=TensorBoardLogger("logs"),
        ...                   callbacks=[FilterGrid(layers=["features.0", "features.4"])])  # doctest: +SKIP
    """

    def __init__(
        self,
        layers: Optional[Union[str, Sequence[str]]] = None,
        every_n_epochs: int = 1,
        max_filters: int = 32,
        max_channels: int = 16,
        log_initial: bool = True,
        strict: bool = False,
    ) -> None:
        super().__init__(every_n_epochs=every_n_epochs, strict=strict)
        check_positive("FilterGrid", max_filters=max_filters, max_channels=max_channels)
        self.layers = check_layer_names("FilterGrid", layers)
        self.max_filters = max_filters
        self.max_channels = max_channels
        self.log_initial = log_initial
        self._resolved: list = []

    @property
    @override
    def state_key(self) -> str:
        return self._generate_state_key(layers=self.layers)

    @override
    def setup(self, trainer: "pl.Trainer", pl_module: "pl.LightningModule", stage: str) -> None:
        with misconfiguration("FilterGrid", LayerNotFoundError):
            self._resolved = resolve_layers(pl_module, self.layers)
        super().setup(trainer, pl_module, stage)

    @override
    def on_fit_start(self, trainer: "pl.Trainer", pl_module: "pl.LightningModule") -> None:
        if self.log_initial and trainer.global_step == 0:
            self._log(trainer, pl_module)

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
        self._run_safely(
            trainer,
            "logging filter grids",
            lambda: log_filters(
                writer,
                pl_module,
                trainer.global_step,
                self._resolved,
                max_filters=self.max_filters,
                max_channels=self.max_channels,
            ),
        )
