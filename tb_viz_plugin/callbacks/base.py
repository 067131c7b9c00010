"""What every tb-viz callback shares: when to run, where to log, and failing without harm."""

from __future__ import annotations

import contextlib
import sys
import traceback
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, Union

import pytorch_lightning as pl
import torch
from pytorch_lightning.loggers import TensorBoardLogger
from pytorch_lightning.utilities import rank_zero_warn
from pytorch_lightning.utilities.exceptions import MisconfigurationException
from typing_extensions import override

from tb_viz_plugin.callbacks.probes import ProbeImages, validation_dataset
from tb_viz_plugin.methods import preserved_training_flags


def all_gather(tensor: torch.Tensor, world_size: int) -> torch.Tensor:
    """``(world_size, *tensor.shape)``: every rank's ``tensor``; a collective, every rank must call it.

    A plain ``torch.distributed.all_gather`` (same shape on every rank). ``LightningModule.all_gather``
    goes through the autograd-aware ``torch.distributed.nn`` version; with it, a spawned gloo rank
    sometimes aborted at exit after ``trainer.validate()`` ("terminate called without an active
    exception", 5 of 39 runs of the DDP test; none of 40 with this one).
    """
    import torch.distributed as dist

    parts = [torch.empty_like(tensor) for _ in range(world_size)]
    dist.all_gather(parts, tensor.contiguous())
    return torch.stack(parts)


# ------------------------------------------------------------------ argument checks shared by the callbacks


@contextlib.contextmanager
def misconfiguration(owner: str, *errors: type) -> Iterator[None]:
    """Re-raise ``errors`` (default ``ValueError``) as ``MisconfigurationException`` naming ``owner``.

    Lightning reports a ``MisconfigurationException`` raised in ``__init__`` or ``setup`` as the
    user's configuration error; the original error stays chained.
    """
    try:
        yield
    except (errors or (ValueError,)) as err:
        raise MisconfigurationException(f"{owner}: {err}") from err


def check_positive(owner: str, **values: Any) -> None:
    """Raise ``MisconfigurationException`` for any value that is not a positive integer."""
    for name, value in values.items():
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise MisconfigurationException(f"{owner}: {name} must be a positive integer, got {value!r}")


def check_layer_names(owner: str, layers: Optional[Union[str, Sequence[str]]]) -> Optional[Union[str, list]]:
    """``layers`` as given (``None``, a name, or a non-empty list of names).

    Raises:
        MisconfigurationException: anything else, naming ``owner``.
    """
    if layers is None or isinstance(layers, str):
        return layers
    names = list(layers)
    if not names or not all(isinstance(n, str) for n in names):
        raise MisconfigurationException(
            f"{owner}: layers must be None, a module name or a non-empty list of names, got {layers!r}"
        )
    return names


def check_normalization(
    owner: str, mean: Optional[Sequence[float]], std: Optional[Sequence[float]]
) -> Dict[str, Optional[List[float]]]:
    """``{"mean": [...], "std": [...]}`` as float lists (or ``None``), checked.

    Raises:
        MisconfigurationException: not three numbers each, or a standard deviation <= 0.
    """
    checked: Dict[str, Optional[List[float]]] = {}
    for name, values in (("mean", mean), ("std", std)):
        if values is None:
            checked[name] = None
            continue
        try:
            floats = [float(v) for v in values]
        except (TypeError, ValueError):
            floats = []
        if len(floats) != 3 or (name == "std" and min(floats) <= 0):
            raise MisconfigurationException(
                f"{owner}: {name} must be None or 3 per-channel numbers (std > 0), got {values!r}"
            )
        checked[name] = floats
    return checked


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
        check_positive(type(self).__name__, every_n_epochs=every_n_epochs)
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


class RankZeroCallback(VizCallback):
    """Base of the callbacks that render on rank 0 alone at the end of logged validation epochs.

    What they run on is local to rank 0 (probe images, images they generate, the weights, which are
    the same on every rank), so no collective is involved and the other ranks do nothing.
    Subclasses implement ``_log(trainer, pl_module, writer)`` and describe it in ``_what`` (for the
    warning when it fails). With ``num_images`` the callback has probe images (``self._probes``,
    kept in its state dict so a resumed run explains the same images).

    Raises:
        MisconfigurationException: ``num_images`` not positive, or bad ``indices``.
    """

    _what = "visualization"

    def __init__(
        self,
        every_n_epochs: int = 1,
        strict: bool = False,
        num_images: Optional[int] = None,
        indices: Optional[Sequence[int]] = None,
    ) -> None:
        super().__init__(every_n_epochs=every_n_epochs, strict=strict)
        self._probes: Optional[ProbeImages] = None
        if num_images is not None:
            check_positive(type(self).__name__, num_images=num_images)
            with misconfiguration(type(self).__name__):
                self._probes = ProbeImages(num_images, indices)

    def _log(self, trainer: "pl.Trainer", pl_module: "pl.LightningModule", writer: Any) -> None:
        raise NotImplementedError

    def _load_probes(self, trainer: "pl.Trainer", pl_module: "pl.LightningModule") -> Any:
        """``(images, labels or None, dataset indices)`` of the probe images, on the module's device."""
        return self._probes.load(validation_dataset(trainer), pl_module.device)

    @override
    def on_validation_epoch_end(self, trainer: "pl.Trainer", pl_module: "pl.LightningModule") -> None:
        if not self._should_log_epoch(trainer) or not trainer.is_global_zero:
            return
        writer = self._writer(trainer)
        if writer is not None:
            self._run_safely(trainer, self._what, lambda: self._log(trainer, pl_module, writer))

    @override
    def state_dict(self) -> Dict[str, Any]:
        return {} if self._probes is None else {"probes": self._probes.state_dict()}

    @override
    def load_state_dict(self, state_dict: Dict[str, Any]) -> None:
        if self._probes is not None:
            self._probes.load_state_dict(state_dict.get("probes", {}))
