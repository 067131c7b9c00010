"""Backfill: replay tb-viz callbacks on a run's checkpoints, each at its own global step, into the run.

For every checkpoint (in global-step order) the model is restored and one ``trainer.validate`` runs
with the callbacks, the Trainer's epoch and global step set to the checkpoint's, and a
``TensorBoardLogger`` on the run's own log directory: the callbacks log exactly what they log in
training (their ``on_validation_*`` hooks run as in a validation epoch; their ``on_train_epoch_end``
is called right after, as in training), at the checkpoint's step, beside the existing event files.
That validation logs no metric and no hyperparameter (the run's curves stay as they are), every
callback logs every checkpoint (``every_n_epochs`` is set to 1), and a ``(tag, step)`` already in
the run is never written again (:class:`~tb_viz_plugin.event_steps.SkipLoggedWriter`), so an
interrupted backfill can simply be run again.

Example:
    >>> from tb_viz_plugin.backfill import backfill
    >>> report = backfill("logs/**/*.ckpt", data="my_project.data:val_loader",
    ...                   module="my_project.model:MyModule")  # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import dataclasses
import inspect
import logging
import time
import warnings
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, Set, Tuple

import pytorch_lightning as pl
from pytorch_lightning.loggers import TensorBoardLogger
from typing_extensions import override

from tb_viz_plugin.checkpoints import BackfillError, Checkpoint, PlainModule, find_checkpoints, module_loader, resolve
from tb_viz_plugin.event_steps import SkipLoggedWriter, logged_steps
from tb_viz_plugin.summary import BLOBS_KIND

__all__ = ["BackfillError", "CheckpointResult", "PlainModule", "backfill", "default_callbacks"]


def default_callbacks() -> List[pl.Callback]:
    """One of every tb-viz callback that needs no argument, at its defaults (today: all of them).

    Example:
        >>> names = [type(callback).__name__ for callback in default_callbacks()]
        >>> "FilterGrid" in names, "AttributionMaps" in names, "NetworkDissection" in names
        (True, True, True)
    """
    from tb_viz_plugin import callbacks as package

    built: List[pl.Callback] = []
    for name in package.__all__:
        cls = getattr(package, name)
        if cls in (package.VizCallback, package.RankZeroCallback) or not issubclass(cls, package.VizCallback):
            continue
        required = [p for p in inspect.signature(cls).parameters.values()
                    if p.default is p.empty and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]  # fmt: skip
        if not required:
            built.append(cls())
    return built


@dataclasses.dataclass
class CheckpointResult:
    """What the backfill did with one checkpoint.

    Attributes:
        checkpoint: the checkpoint.
        status: ``"backfilled"``, or ``"already logged"`` (every tag the run's first backfilled
            checkpoint produced is at this step already: nothing ran).
        written: ``(tag, step)`` pairs written.
        skipped: ``(tag, step)`` pairs computed but already in the run, so not written again.
        seconds: wall time, restoring the model included.
        stages: seconds per stage (validation batches, each callback).
    """

    checkpoint: Checkpoint
    status: str
    written: List[Tuple[str, int]] = dataclasses.field(default_factory=list)
    skipped: List[Tuple[str, int]] = dataclasses.field(default_factory=list)
    seconds: float = 0.0
    stages: Dict[str, float] = dataclasses.field(default_factory=dict)


class _Progress:
    """A tqdm bar over the checkpoints whose postfix names the current stage; times the stages."""

    def __init__(self, total: int, enabled: bool) -> None:
        from tqdm.auto import tqdm

        self.bar = tqdm(total=total, unit="ckpt", desc="backfill", disable=not enabled, dynamic_ncols=True)
        self.stages: Dict[str, float] = {}
        self._stage: Optional[str] = None
        self._since = time.perf_counter()
        self.prefix = ""

    def stage(self, name: Optional[str], shown: Optional[str] = None) -> None:
        """Start timing stage ``name`` (``None``: stop); the bar shows ``shown`` (default: ``name``)."""
        now = time.perf_counter()
        if self._stage is not None:
            self.stages[self._stage] = self.stages.get(self._stage, 0.0) + now - self._since
        self._stage, self._since = name, now
        if name is not None:
            self.bar.set_postfix_str(f"{self.prefix}: {shown or name}", refresh=True)

    def write(self, line: str) -> None:
        self.bar.write(line)


class _Stage(pl.Callback):
    """Placed before a callback: marks its ``on_validation_epoch_end`` as the current stage."""

    def __init__(self, progress: _Progress, name: str, first: bool = False) -> None:
        self.progress, self.name, self.first = progress, name, first

    @override
    def on_validation_batch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any,
                                  batch_idx: int, dataloader_idx: int = 0) -> None:  # fmt: skip
        if self.first:
            total = trainer.num_val_batches[dataloader_idx] if trainer.num_val_batches else "?"
            self.progress.stage("validation batches", f"validation batch {batch_idx + 1}/{total}")

    @override
    def on_validation_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.progress.stage(self.name)


class _EpochEnd(pl.Callback):
    """Last in the list: after every ``on_validation_epoch_end``, each callback's ``on_train_epoch_end``."""

    def __init__(self, progress: _Progress, callbacks: Sequence[Tuple[str, pl.Callback]]) -> None:
        self.progress, self.callbacks = progress, list(callbacks)

    @override
    def on_validation_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        for name, callback in self.callbacks:
            if type(callback).on_train_epoch_end is not pl.Callback.on_train_epoch_end:
                self.progress.stage(name)
                callback.on_train_epoch_end(trainer, pl_module)
        self.progress.stage("writing")


class _RunLogger(TensorBoardLogger):
    """The run's own directory, written through a :class:`SkipLoggedWriter`; no metrics, no hyperparameters."""

    def __init__(self, run_dir: Path) -> None:
        super().__init__(save_dir=str(run_dir), name="", version="", default_hp_metric=False)
        self.run_dir = run_dir
        self.writer = SkipLoggedWriter(str(run_dir), logged_steps(str(run_dir)))

    @property
    @override
    def log_dir(self) -> str:
        return str(self.run_dir)

    @property
    @override
    def experiment(self) -> SkipLoggedWriter:
        return self.writer

    @override
    def log_metrics(self, metrics: Any, step: Optional[int] = None) -> None:
        """Nothing: the run's curves stay as they are."""

    @override
    def log_hyperparams(self, params: Any, metrics: Any = None) -> None:
        """Nothing: the run keeps its own ``hparams.yaml``."""

    @override
    def save(self) -> None:
        self.writer.flush()

    @override
    def finalize(self, status: str) -> None:
        self.writer.flush()


def _trainer_args(device: str) -> Dict[str, Any]:
    if device == "auto":
        return {"accelerator": "auto", "devices": 1}
    kind, _, index = device.partition(":")
    kind = {"cuda": "gpu"}.get(kind, kind)
    if kind not in ("cpu", "gpu", "mps", "tpu") or (index and not index.isdigit()):
        raise BackfillError(f"--device {device!r}: expected auto, cpu, cuda, cuda:N or mps")
    return {"accelerator": kind, "devices": [int(index)] if index else 1}


@contextlib.contextmanager
def _quiet_lightning() -> Iterator[None]:
    """Lightning's start-up lines (GPU available..., LOCAL_RANK...) are noise here: warnings only."""
    loggers = [logging.getLogger(name) for name in ("pytorch_lightning", "lightning.pytorch", "lightning.fabric")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.WARNING)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*does not have many workers.*")
            warnings.filterwarnings("ignore", message=".*`log_every_n_steps`.*")
            warnings.filterwarnings("ignore", message=".*LeafSpec.*")  # Lightning's own use of torch's pytree
            yield
    finally:
        for logger, level in zip(loggers, levels):
            logger.setLevel(level)


def _data(spec: str) -> Dict[str, Any]:
    """``validate`` keyword arguments for ``--data``: a LightningDataModule (class or instance) or dataloader(s)."""
    target = resolve(spec, "--data")
    if isinstance(target, type) and hasattr(target, "val_dataloader"):
        return {"datamodule": target()}
    if not callable(target):
        raise BackfillError(f"--data {spec!r} is neither a function returning the validation DataLoader nor a LightningDataModule class")
    loaders = target()
    if hasattr(loaders, "val_dataloader") and hasattr(loaders, "setup"):
        return {"datamodule": loaders}
    if loaders is None:
        raise BackfillError(f"--data {spec!r} returned None; it must return the validation DataLoader")
    return {"dataloaders": loaders}


def _callbacks(spec: Optional[str], strict: bool) -> List[pl.Callback]:
    from tb_viz_plugin.callbacks import VizCallback

    if spec is None:
        callbacks = default_callbacks()
    else:
        factory = resolve(spec, "--callbacks")
        made = factory() if callable(factory) else factory
        if isinstance(made, pl.Callback):
            callbacks = [made]
        else:
            try:
                callbacks = list(made or [])
            except TypeError:
                callbacks = [made]
        bad = [type(c).__name__ for c in callbacks if not isinstance(c, pl.Callback)]
        if bad or not callbacks:
            raise BackfillError(f"--callbacks {spec!r} must return a non-empty list of Lightning callbacks, got {bad or 'none'}")
    for callback in callbacks:
        if isinstance(callback, VizCallback):
            callback.every_n_epochs = 1  # backfill logs every checkpoint (the budget is for training)
            callback.strict = callback.strict or strict
    return callbacks


def _views(pairs: Set[Tuple[str, int]]) -> List[Tuple[str, int]]:
    """The ``(tag, step)`` pairs of views, sorted: not the ``blobs/<tag>`` stores of static images."""
    return sorted(pair for pair in pairs if not pair[0].startswith(f"{BLOBS_KIND}/"))


def _label(callback: pl.Callback) -> str:
    name = getattr(callback, "name", None)
    return type(callback).__name__ + (f"[{name}]" if isinstance(name, str) else "")


def _trainer_class(module: pl.LightningModule) -> type:
    """``pytorch_lightning.Trainer``, or ``lightning.pytorch.Trainer`` for that package's modules."""
    import sys

    unified = sys.modules.get("lightning.pytorch")
    if unified is not None and isinstance(module, unified.LightningModule) and not isinstance(module, pl.LightningModule):
        return unified.Trainer
    return pl.Trainer


def _set_position(trainer: pl.Trainer, checkpoint: Checkpoint) -> None:
    """Make ``trainer.current_epoch`` and ``trainer.global_step`` the checkpoint's (the fit loop's progress counters)."""
    trainer.fit_loop.epoch_progress.current.completed = checkpoint.epoch
    epoch_loop = trainer.fit_loop.epoch_loop
    epoch_loop.automatic_optimization.optim_progress.optimizer.step.total.completed = checkpoint.step
    epoch_loop.manual_optimization.optim_step_progress.total.completed = checkpoint.step


def backfill(
    checkpoints: str,
    data: str,
    module: Optional[str] = None,
    model: Optional[str] = None,
    callbacks: Optional[str] = None,
    logdir: Optional[str] = None,
    device: str = "auto",
    step_from: Optional[str] = None,
    limit_val_batches: Optional[int] = None,
    strict: bool = False,
    progress: bool = True,
) -> List[CheckpointResult]:
    """Replay the callbacks on every checkpoint ``checkpoints`` matches; see the module docstring.

    Args:
        checkpoints: a glob (``**`` recurses) of checkpoint files.
        data: ``MODULE:FUNCTION`` returning the validation DataLoader(s), or ``MODULE:CLASS`` of a
            LightningDataModule (built with no argument).
        module: ``MODULE:CLASS`` of the LightningModule (restored with ``load_from_checkpoint``).
        model: instead of ``module``: ``MODULE:FUNCTION`` building a plain ``torch.nn.Module`` whose
            state dict each checkpoint holds (alone, or under ``state_dict``/``model_state_dict``/``model``).
        callbacks: ``MODULE:FUNCTION`` returning the callbacks (default: :func:`default_callbacks`);
            called once per run.
        logdir: write here instead of each checkpoint's run directory.
        device: ``auto``, ``cpu``, ``cuda``, ``cuda:N`` or ``mps``.
        step_from: a regex read on each file name for its step (see ``checkpoints.step_from_name``).
        limit_val_batches: validate on this many batches only (as the run's ``limit_val_batches``).
        strict: a callback's failure stops the backfill instead of a warning.
        progress: show the progress bar (on stderr).

    Returns:
        One :class:`CheckpointResult` per checkpoint, in the order they were replayed.

    Raises:
        BackfillError: a user mistake; its message says which and how to fix it.
    """
    trainer_args = _trainer_args(device)
    load_module = module_loader(module, model)
    found, duplicates = find_checkpoints(checkpoints, logdir=logdir, step_from=step_from)
    data_args = _data(data)
    bar = _Progress(len(found), progress)
    for path in duplicates:
        bar.write(f"skipping {path}: another checkpoint of its run has the same step")
    results: List[CheckpointResult] = []
    runs: Dict[Path, List[Checkpoint]] = {}
    for checkpoint in found:
        runs.setdefault(checkpoint.run_dir, []).append(checkpoint)
    try:
        with _quiet_lightning():
            for run_dir, run in runs.items():
                results += _backfill_run(run_dir, run, load_module, data_args, callbacks, strict, trainer_args,
                                         limit_val_batches, bar, len(results))  # fmt: skip
    finally:
        bar.bar.close()
    return results


def _backfill_run(
    run_dir: Path, run: List[Checkpoint], load_module: Callable[[Checkpoint], pl.LightningModule],
    data_args: Dict[str, Any], callbacks_spec: Optional[str], strict: bool, trainer_args: Dict[str, Any],
    limit_val_batches: Optional[int], bar: _Progress, done: int,
) -> List[CheckpointResult]:  # fmt: skip
    """One run directory: one logger and Trainer, one ``validate`` per checkpoint in step order."""
    user_callbacks = _callbacks(callbacks_spec, strict)
    labelled = [(_label(c), c) for c in user_callbacks]
    chain: List[pl.Callback] = []
    for i, (label, callback) in enumerate(labelled):
        chain += [_Stage(bar, label, first=i == 0), callback]
    logger = _RunLogger(run_dir)
    expected: Optional[set] = None  # the tags the first backfilled checkpoint produced
    results: List[CheckpointResult] = []
    trainer = None
    try:
        for i, checkpoint in enumerate(run):
            start = time.perf_counter()
            bar.prefix = f"{done + i + 1}/{bar.bar.total} step {checkpoint.step}"
            at_step = {tag for tag, steps in logger.writer.logged.items() if checkpoint.step in steps}
            if expected and expected <= at_step:
                results.append(CheckpointResult(checkpoint, "already logged", seconds=time.perf_counter() - start))
                bar.write(f"{checkpoint.path.name}: step {checkpoint.step} already logged")
                bar.bar.update(1)
                continue
            bar.stage("restoring the model")
            pl_module = load_module(checkpoint)
            if trainer is None:
                trainer = _trainer_class(pl_module)(
                    logger=logger, callbacks=[*chain, _EpochEnd(bar, labelled)], enable_progress_bar=False,
                    enable_model_summary=False, enable_checkpointing=False, limit_val_batches=limit_val_batches,
                    **trainer_args,
                )  # fmt: skip
            written, skipped = set(logger.writer.written), set(logger.writer.skipped)
            bar.stages = {}
            _set_position(trainer, checkpoint)
            trainer.validate(pl_module, verbose=False, **data_args)
            bar.stage(None)
            logger.writer.flush()
            result = CheckpointResult(
                checkpoint, "backfilled", _views(logger.writer.written - written),
                _views(logger.writer.skipped - skipped), time.perf_counter() - start, dict(bar.stages),
            )  # fmt: skip
            if expected is None:
                expected = {tag for tag, _ in result.written + result.skipped}
            results.append(result)
            bar.write(f"{checkpoint.path.name}: step {checkpoint.step} epoch {checkpoint.epoch}: "
                      f"{len(result.written)} tags written, {len(result.skipped)} already there, {result.seconds:.1f} s")  # fmt: skip
            bar.bar.update(1)
    finally:
        logger.writer.close()
    return results
