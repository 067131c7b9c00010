"""What every tb-viz callback shares: when to run, where to log, and failing without harm."""

from __future__ import annotations

import contextlib
import sys
import traceback
from typing import Any, Callable, Iterator, Optional

import pytorch_lightning as pl
import torch
from pytorch_lightning.loggers import TensorBoardLogger
from pytorch_lightning.utilities import rank_zero_warn
from pytorch_lightning.utilities.exceptions import MisconfigurationException
from typing_extensions import override

from tb_viz_plugin.methods import preserved_training_flags


def _tensorboard_logger_types() -> tuple:
    types = [TensorBoardLogger]
    unified = sys.modules.get("lightning.pytorch.loggers")  # only if the user already imported it
    if unified is not None and hasattr(unified, "TensorBoardLogger"):
        types.append(unified.TensorBoardLogger)
    return tuple(types)


class VizCallback(pl.Callback):
    """Base class: runs ``_visualize`` every ``every_n_epochs`` and logs through TensorBoard.

    Args:
        every_n_epochs: log at the end of every n-th training epoch (>= 1).
        strict: re-raise errors from the visualization instead of warning and going on.

    Raises:
        MisconfigurationException: ``every_n_epochs`` is not a positive integer.
    """

    def __init__(self, every_n_epochs: int = 1, strict: bool = False) -> None:
        super().__init__()
        if isinstance(every_n_epochs, bool) or not isinstance(every_n_epochs, int) or every_n_epochs < 1:
            raise MisconfigurationException(
                f"{type(self).__name__}: every_n_epochs must be a positive integer, got {every_n_epochs!r}"
            )
        self.every_n_epochs = every_n_epochs
        self.strict = bool(strict)
        self._no_logger_warned = False

    # --------------------------------------------------------------------------- helpers

    def _should_log_epoch(self, trainer: "pl.Trainer") -> bool:
        """True at the end of every n-th epoch, never during the sanity check."""
        return not trainer.sanity_checking and (trainer.current_epoch + 1) % self.every_n_epochs == 0

    def _writer(self, trainer: "pl.Trainer") -> Optional[Any]:
        """The ``SummaryWriter`` of the first TensorBoardLogger; warns once when there is none.

        On ranks other than 0 the logger's experiment is a dummy: callers log on rank 0 only.
        """
        for logger in trainer.loggers:
            if isinstance(logger, _tensorboard_logger_types()):
                return logger.experiment
        if not self._no_logger_warned:
            self._no_logger_warned = True
            rank_zero_warn(
                f"{type(self).__name__}: the Trainer has no TensorBoardLogger, so nothing will be "
                "logged. Pass `logger=TensorBoardLogger(save_dir)` to the Trainer.",
                category=UserWarning,
            )
        return None

    def _run_safely(self, trainer: "pl.Trainer", what: str, fn: Callable[[], Any]) -> None:
        """Run ``fn``; on error warn (or re-raise when ``strict``) so training goes on."""
        try:
            fn()
        except Exception as err:  # noqa: BLE001 - a visualization must never stop training
            if self.strict:
                raise
            detail = "".join(traceback.format_exception_only(type(err), err)).strip()
            rank_zero_warn(
                f"{type(self).__name__}: {what} failed at step {trainer.global_step} and was skipped "
                f"({detail}). Training goes on; pass strict=True to raise instead.",
                category=UserWarning,
            )

    @contextlib.contextmanager
    def _extra_pass(self, trainer: "pl.Trainer", pl_module: "pl.LightningModule", grad: bool = False) -> Iterator[None]:
        """Context for a visualization's own forward/backward passes.

        Eval mode with every submodule's flag restored after, out of inference mode (so it works
        under ``trainer.validate()``), gradients on only when asked, and the training precision
        (autocast) of the trainer. Create or clone input tensors inside the block.
        """
        with contextlib.ExitStack() as stack:
            stack.enter_context(preserved_training_flags(pl_module))
            stack.enter_context(torch.inference_mode(False))
            stack.enter_context(torch.enable_grad() if grad else torch.no_grad())
            stack.enter_context(trainer.precision_plugin.forward_context())
            yield

    @override
    def setup(self, trainer: "pl.Trainer", pl_module: "pl.LightningModule", stage: str) -> None:
        self._no_logger_warned = False
        self._writer(trainer)  # warn at setup rather than at the first epoch end
