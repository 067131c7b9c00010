"""What callbacks that stream over the validation loop's own forward passes share.

:class:`ValidationStream` installs a subclass's tracker (hooks) at the start of a logged
validation epoch, hands it every batch of the first validation loader with the batch's sample ids,
and takes it down at the epoch end, on an exception and at teardown. Sample ids are dataset
indices when the loader's order is known (see :func:`dataset_order`), else positions in the
stream interleaved over DDP ranks.

Sized to the budget: the work of a streamed log is the number of validation batches it takes.
A log the schedule sizes down (a fit's first log, a last one that would not fit in full; see
``callbacks.schedule``) takes the first ``scale x batches`` batches of the epoch and removes its
hooks after them, so the rest of the epoch runs as without the callback.
"""

from __future__ import annotations

from typing import Any, Optional

import math

import pytorch_lightning as pl
import torch
from torch.utils.data import DistributedSampler, SequentialSampler
from typing_extensions import override

from tb_viz_plugin.callbacks.base import VizCallback
from tb_viz_plugin.callbacks.probes import first_val_loader
from tb_viz_plugin.methods.model_io import IO, split_batch


def dataset_order(trainer: "pl.Trainer") -> Optional[torch.Tensor]:
    """Dataset indices in the order this rank's first validation loader yields them, when knowable.

    Known (and computed without any RNG) for a ``SequentialSampler`` and an unshuffled
    ``DistributedSampler`` (what Lightning uses for validation under DDP); ``None`` otherwise.
    """
    sampler = getattr(first_val_loader(trainer), "sampler", None)
    if isinstance(sampler, SequentialSampler) or (isinstance(sampler, DistributedSampler) and not sampler.shuffle):
        return torch.tensor(list(sampler), dtype=torch.long)
    return None


class ValidationStream(VizCallback):
    """Base of callbacks fed by the validation loop's batches (subclasses: ``_start``, ``_feed``, ``_finish``).

    ``_start(trainer, pl_module)`` returns the tracker (an object with ``remove()`` and
    ``discard()``) at a logged epoch's start; ``_feed(trainer, tracker, batch, images, ids)`` takes
    each batch of the first loader; ``_finish(trainer, tracker)`` logs at the epoch end (hooks
    already removed). Failures warn once and stop the stream (``strict=True`` re-raises).
    """

    _what = "streaming"

    def __init__(
        self,
        every_n_epochs: Optional[int] = None,
        strict: bool = False,
        name: Optional[str] = None,
        budget: Optional[float] = 0.05,
        io: IO = None,
    ) -> None:
        super().__init__(every_n_epochs=every_n_epochs, strict=strict, name=name, budget=budget, io=io)
        self._tracker: Any = None
        self._order: Optional[torch.Tensor] = None
        self._streamed = 0
        self._batches_left: Optional[int] = None  # batches still taken this epoch (None: all)

    def _start(self, trainer: "pl.Trainer", pl_module: "pl.LightningModule") -> Any:
        raise NotImplementedError

    def _feed(self, trainer: "pl.Trainer", tracker: Any, batch: Any, images: torch.Tensor, ids: torch.Tensor) -> None:
        raise NotImplementedError

    def _finish(self, trainer: "pl.Trainer", tracker: Any) -> None:
        raise NotImplementedError

    @override
    def on_validation_epoch_start(self, trainer: "pl.Trainer", pl_module: "pl.LightningModule") -> None:
        self._stop()
        if self._should_log_epoch(trainer):
            self._run_safely(trainer, f"starting {self._what}", lambda: self._begin(trainer, pl_module))

    def _begin(self, trainer: "pl.Trainer", pl_module: "pl.LightningModule") -> None:
        self._order, self._streamed = dataset_order(trainer), 0
        self._batches_left = self._batch_limit(trainer)
        self._tracker = self._start(trainer, pl_module)

    def _batch_limit(self, trainer: "pl.Trainer") -> Optional[int]:
        """Batches of the first validation loader this log takes: all (``None``) or the budget's share of them."""
        counts = getattr(trainer, "num_val_batches", None) or [None]
        total = counts[0]
        if not isinstance(total, (int, float)) or not math.isfinite(total) or total < 1:
            return None  # an iterable loader of unknown length: every batch
        taken = self._work(int(total))
        return None if taken >= total else taken

    @override
    def on_validation_batch_end(
        self,
        trainer: "pl.Trainer",
        pl_module: "pl.LightningModule",
        outputs: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        if self._tracker is None:
            return
        if dataloader_idx != 0 or self._batches_left == 0:
            self._tracker.discard()  # only the first validation loader is streamed, up to the budget's batches
            return
        self._run_safely(trainer, self._what, lambda: self._take(trainer, batch))
        if self._batches_left is not None and self._tracker is not None:
            self._batches_left -= 1
            if self._batches_left == 0:
                self._tracker.remove()  # the rest of the epoch runs without hooks; results stay readable

    def _take(self, trainer: "pl.Trainer", batch: Any) -> None:
        try:
            images, _ = split_batch(batch, self.io)
            count = images.shape[0]
            if self._order is not None:
                ids = self._order[self._streamed : self._streamed + count]
            else:  # unknown order: the position in the rank's stream, interleaved over ranks
                ids = (torch.arange(self._streamed, self._streamed + count) * trainer.world_size) + trainer.global_rank
            self._feed(trainer, self._tracker, batch, images, ids.to(images.device))
            self._streamed += count
        except Exception:
            self._stop()  # one warning, not one per batch
            raise

    @override
    def on_validation_epoch_end(self, trainer: "pl.Trainer", pl_module: "pl.LightningModule") -> None:
        tracker, self._tracker = self._tracker, None
        if tracker is None:
            return
        tracker.remove()
        self._run_safely(trainer, f"logging {self._what}", lambda: self._finish(trainer, tracker))

    def _sample_ids_kind(self) -> str:
        """What the sample ids of the epoch were: ``"dataset index"`` or ``"stream position"``."""
        return "dataset index" if self._order is not None else "stream position"

    def _stop(self) -> None:
        """Remove the hooks and drop the running state (idempotent)."""
        tracker, self._tracker = self._tracker, None
        if tracker is not None:
            tracker.remove()

    @override
    def on_exception(self, trainer: "pl.Trainer", pl_module: "pl.LightningModule", exception: BaseException) -> None:
        super().on_exception(trainer, pl_module, exception)
        self._stop()

    @override
    def teardown(self, trainer: "pl.Trainer", pl_module: "pl.LightningModule", stage: str) -> None:
        super().teardown(trainer, pl_module, stage)
        self._stop()
