"""What every tb-viz callback shares: when to run, where to log, which tags it owns, failing without harm."""

from __future__ import annotations

import contextlib
import sys
import time
import traceback
import weakref
from typing import Any, Callable, Dict, Iterable, Iterator, List, Optional, Sequence

import pytorch_lightning as pl
import torch
from pytorch_lightning.loggers import TensorBoardLogger
from pytorch_lightning.utilities import rank_zero_warn
from pytorch_lightning.utilities.exceptions import MisconfigurationException
from typing_extensions import override

from tb_viz_plugin import fast_crc
from tb_viz_plugin.callbacks.checks import (  # noqa: F401 - re-exported: the callbacks import them from here
    check_layer_names, check_name, check_normalization, check_positive, class_names_for, misconfiguration,
    resolve_activation_layers,
)
from tb_viz_plugin.callbacks.model_check import ModelInfo, never_logs, probe_model
from tb_viz_plugin.callbacks.probes import ProbeImages, validation_dataset
from tb_viz_plugin.callbacks.schedule import Schedule, check_schedule
from tb_viz_plugin.log.background import background_writer
from tb_viz_plugin.methods import preserved_training_flags
from tb_viz_plugin.methods.model_io import IO, ModelIO, TaskModel, as_io


# ------------------------------------------------------------------ tags: one owner each

_TAG_OWNERS: "weakref.WeakKeyDictionary[Any, Dict[str, VizCallback]]" = weakref.WeakKeyDictionary()


def claim_tags(trainer: "pl.Trainer", callback: "VizCallback", tags: Iterable[str]) -> None:
    """Record that ``callback`` writes ``tags`` in ``trainer``'s run: two callbacks never share a tag.

    Raises:
        MisconfigurationException: another callback of the trainer writes one of the tags; the
            message names both and the fix (a ``name=`` for one of them).
    """
    owners = _TAG_OWNERS.setdefault(trainer, {})
    for tag in tags:
        owner = owners.setdefault(tag, callback)
        if owner is not callback:
            raise MisconfigurationException(
                f"{callback.state_key} and {owner.state_key} would both write the tag {tag!r}; pass "
                f"name='...' to one of them (it is appended to its tags: '{tag}/<name>')"
            )


def _tensorboard_logger_types() -> tuple:
    types = [TensorBoardLogger]
    unified = sys.modules.get("lightning.pytorch.loggers")  # only if the user already imported it
    if unified is not None and hasattr(unified, "TensorBoardLogger"):
        types.append(unified.TensorBoardLogger)
    return tuple(types)


def _tensorboard_writer(trainer: "pl.Trainer") -> Optional[Any]:
    """The experiment (``SummaryWriter`` on rank 0) of the Trainer's first TensorBoardLogger, or ``None``."""
    for logger in trainer.loggers:
        if isinstance(logger, _tensorboard_logger_types()):
            return logger.experiment
    return None


class VizCallback(pl.Callback):
    """Base class: decides when to log (a budget or ``every_n_epochs``) and logs through TensorBoard.

    Every tag a callback writes is ``<kind>/<what>[/<name>]`` (see ``tb_viz_plugin.log.make_tag``):
    ``<what>`` holds what tells two instances apart (layer, target...). At ``setup`` each callback
    claims its tags in the Trainer, and a second callback wanting one of them fails with a
    ``MisconfigurationException`` naming both: give one of them a ``name``.

    When to log (see :mod:`tb_viz_plugin.callbacks.schedule`): with ``every_n_epochs`` at the end
    of every n-th epoch; otherwise within ``budget``: the callback measures its own cost and logs
    an epoch when that still fits its share of the training time, and the first and the last
    epoch of a fit, their work sized to the budget (:meth:`_work`; in a short fit the heavy views
    may log only once, see the schedule module; scalars
    ``tb_viz/schedule/<callback>``, ``tb_viz/overhead/<callback>`` and ``tb_viz/work/<callback>``
    show the choice). Rendering, PNG encoding and writing run on a background worker per writer
    (:mod:`tb_viz_plugin.log.background`), handed CPU copies; it is drained at the end of the fit
    and on exceptions, so the event files are complete when ``fit`` returns.

    Args:
        every_n_epochs: log at the end of every n-th training epoch (>= 1); ``None`` = the budget decides.
        strict: re-raise errors from the visualization instead of warning and going on (and write
            on the training thread, so that they surface where they happen).
        name: appended to every tag of this callback (and to its ``state_key``), so that two
            instances with the same layers but other settings can run side by side.
        budget: the overhead allowed to the Trainer's budgeted tb-viz callbacks together, as a
            fraction of the training time, shared equally; ``None`` = every epoch. Ignored when
            ``every_n_epochs`` is given.
        io: how the model takes inputs and gives outputs (a :class:`~tb_viz_plugin.methods.model_io.ModelIO`
            or a dict of its fields): batch keys, the logits, the task, how inputs are shown.

    Raises:
        MisconfigurationException: ``every_n_epochs`` is not ``None`` or a positive integer, a
            ``budget`` outside (0, 1], a bad ``name`` or ``io``; before the first step, what the
            model check finds (see ``callbacks.model_check``).
    """

    _needs_validation = True
    """Whether the callback logs at validation epoch ends (``limit_val_batches=0`` disables it)."""

    def __init__(
        self,
        every_n_epochs: Optional[int] = None,
        strict: bool = False,
        name: Optional[str] = None,
        budget: Optional[float] = 0.05,
        io: IO = None,
    ) -> None:
        super().__init__()
        check_schedule(type(self).__name__, every_n_epochs, budget)
        self.budget = budget
        self.every_n_epochs = every_n_epochs  # (a property: also sets the schedule)
        self.strict = bool(strict)
        self.name = check_name(type(self).__name__, name)
        with misconfiguration(type(self).__name__):
            self.io: ModelIO = as_io(io)
        self._no_logger_warned = False
        self._info: Optional[ModelInfo] = None
        self._schedule_label = type(self).__name__ if name is None else f"{type(self).__name__}/{name}"

    @property
    def every_n_epochs(self) -> Optional[int]:
        """The explicit schedule (log every n-th epoch), or ``None`` when the ``budget`` decides; settable."""
        return self._every_n_epochs

    @every_n_epochs.setter
    def every_n_epochs(self, value: Optional[int]) -> None:
        check_schedule(type(self).__name__, value, self.budget)
        self._every_n_epochs = value
        self._schedule = Schedule(value, self.budget)

    def _key(self, **settings: Any) -> str:
        """The ``state_key`` of these settings (and the ``name``, when given)."""
        return self._generate_state_key(**settings, **({} if self.name is None else {"name": self.name}))

    def _planned_tags(self) -> List[str]:
        """The tags this callback will write, as far as known at ``setup`` (subclasses say)."""
        return []

    # --------------------------------------------------------------------------- helpers

    def _should_log_epoch(self, trainer: "pl.Trainer") -> bool:
        """Whether this epoch is logged (the schedule; never the sanity check), the same on every rank.

        Decided once per epoch; when it is, rank 0 logs the schedule scalars.
        """
        known = trainer.current_epoch in self._schedule._decided
        decision = self._schedule.should_log(trainer)
        if decision and not known and trainer.is_global_zero and trainer.state.fn == "fit":
            self._schedule.log_scalars(self._writer(trainer), self._schedule_label, trainer.global_step)
        return decision

    def _work(self, n: int, least: int = 1) -> int:
        """How many of ``n`` steps this log runs: all, or fewer when the budget sizes a forced log down.

        See :meth:`tb_viz_plugin.callbacks.schedule.Schedule.work`; with ``every_n_epochs`` or
        ``budget=None`` it is always ``n``.
        """
        return self._schedule.work(n, least)

    def _write_later(self, trainer: "pl.Trainer", what: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
        """Run ``fn(*args, **kwargs)`` (a ``write_*`` function) on the writer's background worker.

        Tensors in the arguments are copied to the CPU now; a failure warns later (at the next
        hook of this callback that logs, or at the end of the fit). With ``strict`` it runs here.
        """
        writer = self._writer(trainer)
        if self.strict or writer is None:
            fn(*args, **kwargs)
            return
        background_writer(writer).submit(self, what, fn, *args, on_done=self._schedule.add_background, **kwargs)

    def _report_failures(self, trainer: "pl.Trainer", drain: bool = False) -> None:
        """Warn about this callback's failed background writes (rank 0); ``drain``: wait for all of them first."""
        writer = _tensorboard_writer(trainer) if trainer.is_global_zero else None
        if writer is not None:
            if drain:
                background_writer(writer).drain()  # and flush: the event files are complete
            for _, what, err in background_writer(writer).failures(self):
                self._warn_failure(trainer, what, err)

    def _warn_failure(self, trainer: "pl.Trainer", what: str, err: BaseException) -> None:
        detail = "".join(traceback.format_exception_only(type(err), err)).strip()
        rank_zero_warn(
            f"{type(self).__name__}: {what} failed at step {trainer.global_step} and was skipped "
            f"({detail}). Training goes on; pass strict=True to raise instead.",
            category=UserWarning,
        )

    def _writer(self, trainer: "pl.Trainer") -> Optional[Any]:
        """The ``SummaryWriter`` of the first TensorBoardLogger; warns once when there is none.

        On ranks other than 0 the logger's experiment is a dummy: callers log on rank 0 only.
        """
        writer = _tensorboard_writer(trainer)
        if writer is not None:
            return writer
        if trainer.fast_dev_run:
            never_logs(trainer, type(self).__name__, self.every_n_epochs, self._needs_validation)
            return None
        if not self._no_logger_warned:
            self._no_logger_warned = True
            rank_zero_warn(
                f"{type(self).__name__}: the Trainer has no TensorBoardLogger, so nothing will be "
                "logged. Pass `logger=TensorBoardLogger(save_dir)` to the Trainer.",
                category=UserWarning,
            )
        return None

    def _run_safely(self, trainer: "pl.Trainer", what: str, fn: Callable[[], Any]) -> None:
        """Run ``fn`` (its time counts as this callback's cost); on error warn (or re-raise when ``strict``)."""
        started = time.perf_counter()
        try:
            fn()
        except Exception as err:  # noqa: BLE001 - a visualization must never stop training
            if self.strict:
                raise
            self._warn_failure(trainer, what, err)
        finally:
            self._schedule.add(time.perf_counter() - started)
        self._report_failures(trainer)

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
        """Claim the planned tags and warn (once) when there is no TensorBoard logger; subclasses call it last."""
        claim_tags(trainer, self, self._planned_tags())
        self._schedule_label = self._schedule.join(trainer, self, self._schedule_label)
        self._no_logger_warned = False
        self._info = None
        if stage == "fit":
            never_logs(trainer, type(self).__name__, self.every_n_epochs, self._needs_validation)
        self._writer(trainer)  # warn at setup rather than at the first epoch end
        fast_crc.install()  # every record of the run's event file checksummed in C (see tb_viz_plugin.fast_crc)

    # --------------------------------------------------------------------------- the model check

    def _check_model(self, trainer: "pl.Trainer", pl_module: "pl.LightningModule", info: ModelInfo) -> None:
        """Refuse (``MisconfigurationException``) or adapt to what the probe forward found; subclasses extend."""

    def _model_info(self, trainer: "pl.Trainer", pl_module: "pl.LightningModule") -> ModelInfo:
        """The shared model check's result (run on first use, then this callback's own checks)."""
        if self._info is None:
            info = probe_model(trainer, pl_module, self.io)
            self._check_model(trainer, pl_module, info)
            self._info = info
        return self._info

    def _task_model(self, trainer: "pl.Trainer", pl_module: "pl.LightningModule") -> TaskModel:
        """``pl_module`` as ``inputs -> (N, K)`` class scores (same modules), as the methods take it."""
        io = self._model_info(trainer, pl_module).io
        return TaskModel(pl_module, io, convert=trainer.precision_plugin.convert_input)

    @override
    def on_train_start(self, trainer: "pl.Trainer", pl_module: "pl.LightningModule") -> None:
        self._schedule.start(trainer)
        if not trainer.fast_dev_run:
            self._model_info(trainer, pl_module)

    @override
    def on_validation_start(self, trainer: "pl.Trainer", pl_module: "pl.LightningModule") -> None:
        if not trainer.fast_dev_run:
            self._model_info(trainer, pl_module)

    @override
    def on_fit_end(self, trainer: "pl.Trainer", pl_module: "pl.LightningModule") -> None:
        self._schedule.flush_work_scalar()
        self._report_failures(trainer, drain=True)

    @override
    def on_exception(self, trainer: "pl.Trainer", pl_module: "pl.LightningModule", exception: BaseException) -> None:
        self._report_failures(trainer, drain=True)

    @override
    def teardown(self, trainer: "pl.Trainer", pl_module: "pl.LightningModule", stage: str) -> None:
        self._schedule.flush_work_scalar()
        self._report_failures(trainer, drain=True)


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
        every_n_epochs: Optional[int] = None,
        strict: bool = False,
        num_images: Optional[int] = None,
        indices: Optional[Sequence[int]] = None,
        name: Optional[str] = None,
        budget: Optional[float] = 0.05,
        io: IO = None,
    ) -> None:
        super().__init__(every_n_epochs=every_n_epochs, strict=strict, name=name, budget=budget, io=io)
        self._probes: Optional[ProbeImages] = None
        self._probe_choice = list(indices) if indices is not None else num_images  # part of the state key
        if num_images is not None:
            check_positive(type(self).__name__, num_images=num_images)
            with misconfiguration(type(self).__name__):
                self._probes = ProbeImages(num_images, indices)

    @override
    def _key(self, **settings: Any) -> str:
        """The ``state_key``: the settings, the probe choice (``num_images`` or ``indices``) and the ``name``."""
        return super()._key(**settings, **({} if self._probes is None else {"probes": self._probe_choice}))

    def _log(self, trainer: "pl.Trainer", pl_module: "pl.LightningModule", writer: Any) -> None:
        raise NotImplementedError

    def _load_probes(self, trainer: "pl.Trainer", pl_module: "pl.LightningModule") -> Any:
        """``(images, labels or None, dataset indices)`` of the probe images, on the module's device."""
        return self._probes.load(validation_dataset(trainer), pl_module.device, self._model_info(trainer, pl_module).io)

    @override
    def _check_model(self, trainer: "pl.Trainer", pl_module: "pl.LightningModule", info: ModelInfo) -> None:
        indices = None if self._probes is None else self._probes.indices
        if indices and info.dataset_size is not None and max(indices) >= info.dataset_size:
            raise MisconfigurationException(
                f"{type(self).__name__}: probe index {max(indices)} is past the validation set of "
                f"{info.dataset_size} samples; give indices below {info.dataset_size}"
            )
        super()._check_model(trainer, pl_module, info)

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
