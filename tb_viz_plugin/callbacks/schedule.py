"""When a tb-viz callback logs: an explicit ``every_n_epochs``, or an overhead budget it keeps.

With a ``budget`` (the default, 5 %), a callback measures what its own work costs (its hooks on the
training thread and its jobs on the background writer) and the training time of the run so far
(wall time since ``on_train_start`` minus what every tb-viz callback of the Trainer spent on the
training thread). The budget is shared by the Trainer's budgeted tb-viz callbacks, an equal share
each: an epoch is logged when the callback's cost so far plus the cost of its last log still fits
its share of the training time. The first epoch of a fit and the last one (``max_epochs``,
``max_steps`` or a requested stop) are always logged. Under DDP rank 0 decides and broadcasts, so
that every rank runs the same collectives.

The chosen schedule is logged as scalars at each logged step: ``tb_viz/schedule/<callback>``
(epochs since the previous log) and ``tb_viz/overhead/<callback>`` (the callback's cost so far in
percent of the training time); the tab offers both among its curves.
"""

from __future__ import annotations

import time
import weakref
from typing import Any, Dict, List, Optional

import pytorch_lightning as pl
from pytorch_lightning.utilities.exceptions import MisconfigurationException


class _TrainerClock:
    """What all tb-viz callbacks of one Trainer share: the training-thread time they spent, their count."""

    def __init__(self) -> None:
        self.spent = 0.0
        self.members: "weakref.WeakSet[Any]" = weakref.WeakSet()
        self.names: Dict[int, str] = {}


_CLOCKS: "weakref.WeakKeyDictionary[Any, _TrainerClock]" = weakref.WeakKeyDictionary()


def check_schedule(owner: str, every_n_epochs: Optional[int], budget: Optional[float]) -> None:
    """Raise ``MisconfigurationException`` for an ``every_n_epochs`` that is not ``None`` or >= 1, or a budget not in (0, 1]."""
    if every_n_epochs is not None and (
        isinstance(every_n_epochs, bool) or not isinstance(every_n_epochs, int) or every_n_epochs < 1
    ):
        raise MisconfigurationException(
            f"{owner}: every_n_epochs must be None (the budget decides) or a positive integer, got {every_n_epochs!r}"
        )
    if budget is not None and (isinstance(budget, bool) or not isinstance(budget, (int, float)) or not 0 < budget <= 1):
        raise MisconfigurationException(
            f"{owner}: budget must be None or a fraction of the training time in (0, 1], got {budget!r}"
        )


class Schedule:
    """One callback's logging schedule: fixed (``every_n_epochs``), every epoch, or kept within ``budget``.

    Args:
        every_n_epochs: log at the end of every n-th epoch; ``None`` lets the budget decide.
        budget: the overhead allowed to the Trainer's budgeted tb-viz callbacks together, as a
            fraction of the training time (shared equally); ``None`` (with no ``every_n_epochs``)
            logs every epoch.

    Example:
        >>> Schedule(every_n_epochs=None, budget=0.05).describe()
        'budget 5% of training time'
        >>> Schedule(every_n_epochs=2, budget=0.05).describe()
        'every 2 epochs'
    """

    def __init__(self, every_n_epochs: Optional[int], budget: Optional[float]) -> None:
        self.every_n_epochs = every_n_epochs
        self.budget = None if every_n_epochs is not None or budget is None else float(budget)
        self.cost = 0.0  # seconds this callback spent in the current fit (training thread + worker)
        self.last_cost = 0.0  # seconds of its most recent logged epoch
        self.logged: List[int] = []  # epochs logged in this fit
        self._worker_costs: List[float] = []  # seconds of background jobs (appended by the worker)
        self._epoch_cost = 0.0
        self._decided: Dict[int, bool] = {}
        self._clock: Optional[_TrainerClock] = None
        self._start: Optional[float] = None
        self._first_epoch = 0

    def __getstate__(self) -> Dict[str, Any]:
        """Picklable (DDP spawn): the Trainer's clock stays behind; ``join`` at ``setup`` finds the new one."""
        state = dict(self.__dict__)
        state["_clock"] = None
        return state

    def describe(self) -> str:
        """The schedule in words."""
        if self.every_n_epochs is not None:
            return "every epoch" if self.every_n_epochs == 1 else f"every {self.every_n_epochs} epochs"
        if self.budget is None:
            return "every epoch"
        return f"budget {self.budget:.0%} of training time"

    # ------------------------------------------------------------------ bookkeeping

    def join(self, trainer: "pl.Trainer", owner: Any, label: str) -> str:
        """Register ``owner`` with ``trainer``'s clock; returns its unique label for the schedule scalars."""
        clock = _CLOCKS.setdefault(trainer, _TrainerClock())
        self._clock = clock
        if self.budget is not None:
            clock.members.add(owner)
        taken = {name for key, name in clock.names.items() if key != id(owner)}
        unique, n = label, 2
        while unique in taken:
            unique, n = f"{label}_{n}", n + 1
        clock.names[id(owner)] = unique
        return unique

    def start(self, trainer: "pl.Trainer") -> None:
        """Start the clock of a fit (``on_train_start``)."""
        self._start = time.perf_counter()
        self._first_epoch = trainer.current_epoch
        self.cost = self.last_cost = self._epoch_cost = 0.0
        self.logged, self._decided = [], {}
        if self._clock is not None:
            self._clock.spent = 0.0

    def add(self, seconds: float) -> None:
        """Count ``seconds`` of work on the training thread."""
        self._epoch_cost += seconds
        if self._clock is not None:
            self._clock.spent += seconds

    def add_background(self, seconds: float) -> None:
        """Count ``seconds`` of a background job (called from the worker thread)."""
        self._worker_costs.append(seconds)

    def _settle(self) -> None:
        """Move the epoch's cost and finished background jobs into the totals."""
        worker = 0.0
        while self._worker_costs:
            worker += self._worker_costs.pop()
        if self.logged:
            self.last_cost += self._epoch_cost + worker
        self.cost += self._epoch_cost + worker
        self._epoch_cost = 0.0

    def training_time(self) -> float:
        """Seconds of training in this fit so far (wall time minus tb-viz work on the training thread)."""
        if self._start is None:
            return 0.0
        spent = self._clock.spent if self._clock is not None else 0.0
        return max(time.perf_counter() - self._start - spent, 1e-9)

    def total_cost(self) -> float:
        """Seconds this callback spent in the current fit so far (training thread and background jobs done)."""
        self._settle()
        return self.cost

    def overhead(self) -> float:
        """This callback's cost so far as a fraction of the training time."""
        self._settle()
        return self.cost / self.training_time()

    # ------------------------------------------------------------------ the decision

    def should_log(self, trainer: "pl.Trainer") -> bool:
        """Whether this epoch is logged; decided once per epoch, the same on every rank."""
        if trainer.sanity_checking:
            return False
        epoch = trainer.current_epoch
        if epoch in self._decided:
            return self._decided[epoch]
        if self.every_n_epochs is not None:
            decision = (epoch + 1) % self.every_n_epochs == 0
        elif self.budget is None or self._start is None or trainer.state.fn != "fit":
            decision = True  # every epoch; also trainer.validate() outside fit
        else:
            decision = self._within_budget(trainer)
            if trainer.world_size > 1:
                decision = bool(trainer.strategy.broadcast(decision, src=0))
        self._decided[epoch] = decision
        if decision:
            self._settle()
            self.last_cost = 0.0
            self.logged.append(epoch)
        return decision

    def _within_budget(self, trainer: "pl.Trainer") -> bool:
        epoch = trainer.current_epoch
        if epoch == self._first_epoch or not self.logged or _is_last_epoch(trainer):
            return True
        self._settle()
        members = len(self._clock.members) if self._clock is not None else 1
        share = self.budget / max(members, 1)
        return self.cost + self.last_cost <= share * self.training_time()

    def log_scalars(self, writer: Optional[Any], label: str, step: int) -> None:
        """Write ``tb_viz/schedule/<label>`` (:meth:`interval`) and ``tb_viz/overhead/<label>`` (percent) at ``step``."""
        if writer is not None and hasattr(writer, "add_scalar"):
            writer.add_scalar(f"tb_viz/schedule/{label}", self.interval(), step)
            writer.add_scalar(f"tb_viz/overhead/{label}", 100.0 * self.overhead(), step)

    def interval(self) -> int:
        """Epochs between the last two logged epochs (1 for the first)."""
        return 1 if len(self.logged) < 2 else self.logged[-1] - self.logged[-2]


def _is_last_epoch(trainer: "pl.Trainer") -> bool:
    """True in the last epoch of the fit as far as known now: ``max_epochs``, ``max_steps`` or a stop request."""
    if trainer.should_stop:
        return True
    max_epochs = trainer.max_epochs
    if max_epochs is not None and max_epochs >= 0 and trainer.current_epoch >= max_epochs - 1:
        return True
    max_steps = trainer.max_steps
    if max_steps is not None and max_steps > 0:
        batches = trainer.num_training_batches
        per_epoch = batches if isinstance(batches, int) else 0
        per_epoch //= max(int(getattr(trainer, "accumulate_grad_batches", 1) or 1), 1)
        if trainer.global_step + per_epoch >= max_steps:
            return True
    return False
