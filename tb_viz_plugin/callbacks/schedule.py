"""When a tb-viz callback logs: an explicit ``every_n_epochs``, or an overhead budget it keeps.

With a ``budget`` (the default, 5 %), a callback measures what its own work costs (its hooks on the
training thread and its jobs on the background writer) and the training time of the run so far
(wall time since ``on_train_start`` minus what every tb-viz callback of the Trainer spent on the
training thread). The budget is shared by the Trainer's budgeted tb-viz callbacks, an equal share
each: an epoch is logged when the callback's cost so far plus the cost of its last log still fits
its share of the training time. The first epoch of a fit and the last one (``max_epochs``,
``max_steps`` or a requested stop) are logged, with one exception that keeps the set within its
budget in short fits: when ``max_epochs`` gives the fit's length, the first epoch's logs stop once
the set has spent ``FIRST_LOGS_SHARE`` (half) of its budget for the whole fit (estimated from the
first epoch) for the callbacks that size their work (``_sizes_work``: the heavy views; the cheap
ones always log the first epoch); a callback left out logs first when the set has room again, at
the latest at the last epoch; and a heavy view that has logged in this fit skips the last epoch
when even its least log would take the set over its budget for the fit. So every view logs at
least once per fit, and a long fit (where a log is small against the budget) logs the first and
the last epoch of every view. Another epoch is also logged only if it leaves the set room for its last logs. Under
DDP rank 0 decides and broadcasts, so that every rank runs the same collectives.

Forced logs are sized to the budget. A callback whose work is a count (optimisation steps of
activation maximization, DeepDream, inversion and style; validation batches streamed by
TopActivations; images counted by NetworkDissection; probe images explained by AttributionMaps)
asks :meth:`Schedule.work` how many to run; the schedule answers with a *work scale* in
[1/64, 1]. The first log of a fit runs at ``PROBE_SCALE`` (1/64 of the work: its cost per unit of
work is not known yet); the last one runs at the fraction of a full log that still fits the
callback's share (at least ``MIN_SCALE``); every other logged epoch runs in full, and is logged
only when a full log (estimated from the last log's cost divided by its scale) fits the share so
far and, when ``max_epochs`` gives the fit's length, the share of the whole fit with the least
cost of the forced last log kept back. Callbacks whose work does not scale (FilterGrid,
ActivationMaps, Embeddings: cheap, one pass over fixed images or the kept samples) ignore the
scale and are budgeted on their measured cost.

The measured work is planned into ``PLANNED_SHARE`` (70 %) of the budget: the rest is left for
what the callbacks cannot measure, mostly training slowed down while the writer thread renders
on a core training uses (it yields at once, but training's thread team may wait for it at the next
barrier), and the wait for the writer's last jobs at the end of the fit. In the benchmarks those
added 30-50 % to the measured cost (``BENCHMARKS.md``).

The chosen schedule is logged as scalars at each logged step: ``tb_viz/schedule/<callback>``
(epochs since the previous log), ``tb_viz/overhead/<callback>`` (the callback's cost so far in
percent of the training time) and ``tb_viz/work/<callback>`` (the work scale of that log in
percent, 100 = full work); the tab offers them among its curves.
"""

from __future__ import annotations

import time
import weakref
from typing import Any, Dict, List, Optional, Tuple

import pytorch_lightning as pl
from pytorch_lightning.utilities.exceptions import MisconfigurationException


class _TrainerClock:
    """What all tb-viz callbacks of one Trainer share: the training-thread time they spent, their count."""

    def __init__(self) -> None:
        self.spent = 0.0
        self.members: "weakref.WeakSet[Any]" = weakref.WeakSet()
        self.names: Dict[int, str] = {}


PROBE_SCALE = 0.015625  # work scale of a fit's first budgeted log (its cost per unit of work is unknown)
MIN_SCALE = 0.015625  # the least work scale of a forced log
FIRST_LOGS_SHARE = 0.5  # the part of the set's budget for the whole fit that the fit's first logs may use
PLANNED_SHARE = 0.7  # the part of the budget planned for the measured work; the rest covers what is not measured

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
        self.scales: List[float] = []  # the work scale each of those logs used (1 = full work)
        self._worker_costs: List[float] = []  # seconds of background jobs (appended by the worker)
        self._epoch_cost = 0.0
        self._decided: Dict[int, bool] = {}
        self._clock: Optional[_TrainerClock] = None
        self._start: Optional[float] = None
        self._first_epoch = 0
        self.scale = 1.0  # work scale offered to the current log (see work())
        self._used_scale = 1.0  # work scale the most recent log used (1 when it did not call work())
        self._scaled = False  # whether the callback sizes its logs (called work()): its last log can shrink
        self.sizes_work = False  # the owner's ``_sizes_work``: a heavy view whose first log may wait (see _within_budget)
        self._work_scalar: Optional[Tuple[Any, str, int]] = None  # (writer, label, step): work() writes the scale used

    def __getstate__(self) -> Dict[str, Any]:
        """Picklable (DDP spawn): the Trainer's clock stays behind; ``join`` at ``setup`` finds the new one."""
        state = dict(self.__dict__)
        state["_clock"] = None
        state["_work_scalar"] = None
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
        self.sizes_work = bool(getattr(owner, "_sizes_work", False))
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
        self.logged, self.scales, self._decided = [], [], {}
        self.scale = self._used_scale = 1.0
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

    def work(self, n: int, least: int = 1) -> int:
        """How much of ``n`` units of work (steps) to run in the current log: ``n`` scaled, at least ``least`` (and 1).

        Calling it marks the log as scaled, so that its measured cost counts as that fraction of a
        full log in the next decisions.
        """
        used = min(n, max(1, least, int(round(n * self.scale))))
        self._used_scale = used / max(n, 1)
        self._scaled = True
        if self.scales:
            self.scales[-1] = self._used_scale
        self._write_work_scalar(self._used_scale)
        return used

    def full_cost(self) -> Optional[float]:
        """Estimated seconds of a full (unscaled) log: the last log's cost over its scale; ``None`` before one."""
        if not self.logged:
            return None
        self._settle()
        return self.last_cost / self._used_scale

    # ------------------------------------------------------------------ the decision

    def should_log(self, trainer: "pl.Trainer") -> bool:
        """Whether this epoch is logged; decided once per epoch, the same on every rank."""
        if trainer.sanity_checking:
            return False
        epoch = trainer.current_epoch
        if epoch in self._decided:
            return self._decided[epoch]
        self.flush_work_scalar()  # the previous log's
        self.scale = 1.0
        if self.every_n_epochs is not None:
            decision = (epoch + 1) % self.every_n_epochs == 0
        elif self.budget is None or self._start is None or trainer.state.fn != "fit":
            decision = True  # every epoch; also trainer.validate() outside fit
        else:
            decision = self._within_budget(trainer)
            if trainer.world_size > 1:
                decision, self.scale = _broadcast_decision(trainer, bool(decision), float(self.scale))
        self._decided[epoch] = decision
        if decision:
            self._settle()
            self.last_cost = 0.0
            self._used_scale = 1.0
            self.logged.append(epoch)
            self.scales.append(1.0)
        return decision

    def _within_budget(self, trainer: "pl.Trainer") -> bool:
        members = len(self._clock.members) if self._clock is not None else 1
        planned = self.budget * PLANNED_SHARE
        share = planned / max(members, 1)
        full = self.full_cost()
        expected = self.expected_training_time(trainer)
        never, last = not self.logged, _is_last_epoch(trainer)
        pool = None if expected is None else planned * expected  # the whole set's seconds over the fit
        set_cost, set_reserve = self._set_costs()
        if never and not last and self.sizes_work and pool is not None and set_cost > FIRST_LOGS_SHARE * pool:
            self.scale = PROBE_SCALE
            return False  # the set's first logs used their part of the fit's budget: first log later (at the latest, the last)
        if never and not last and trainer.current_epoch != self._first_epoch:
            self.scale = PROBE_SCALE
            return True  # a first log left out at the fit's first epoch, now that the set has room
        if last and not never and self.sizes_work and pool is not None and full is not None:
            if set_cost + self.last_cost > pool:  # its least log: about its previous one (a fit's first is the smallest)
                self.scale = MIN_SCALE
                return False  # a heavy view that logged already: its last log would take the set over its budget
        decision, self.scale = budget_decision(
            first=never,
            last=last,
            cost=self.total_cost(),
            full_cost=full,
            allowed=share * self.training_time(),
            allowed_by_end=None if expected is None else share * expected,
            reserve=0.0 if full is None else full * (MIN_SCALE if self._scaled else 1.0),
        )
        if decision and not never and not last and pool is not None and full is not None:
            decision = set_cost + full + set_reserve <= pool  # another log must leave the set room for its last logs
        return decision

    def _set_costs(self) -> Tuple[float, float]:
        """``(cost so far, cost of the most recent logs)`` summed over the Trainer's budgeted callbacks."""
        schedules = [getattr(m, "_schedule", None) for m in (self._clock.members if self._clock is not None else [])]
        schedules = [schedule for schedule in schedules if isinstance(schedule, Schedule)] or [self]
        return sum(schedule.total_cost() for schedule in schedules), sum(schedule.last_cost for schedule in schedules)

    def expected_training_time(self, trainer: "pl.Trainer") -> Optional[float]:
        """Seconds of training the whole fit will take, from the epochs so far and ``max_epochs``; ``None`` if unknown."""
        max_epochs = trainer.max_epochs
        if max_epochs is None or max_epochs < 0 or self._start is None:
            return None
        done = trainer.current_epoch - self._first_epoch + 1  # validation runs at the end of the epoch's training
        left = max_epochs - self._first_epoch
        if done < 1 or left < done:
            return None
        return self.training_time() * left / done

    def log_scalars(self, writer: Optional[Any], label: str, step: int) -> None:
        """Write ``tb_viz/schedule/<label>`` (:meth:`interval`) and ``tb_viz/overhead/<label>`` (percent) at ``step``."""
        if writer is not None and hasattr(writer, "add_scalar"):
            writer.add_scalar(f"tb_viz/schedule/{label}", self.interval(), step)
            writer.add_scalar(f"tb_viz/overhead/{label}", 100.0 * self.overhead(), step)
            if self.budget is not None:
                self._work_scalar = (writer, label, step)  # written by work() or flush_work_scalar()

    def flush_work_scalar(self) -> None:
        """Write the pending ``tb_viz/work`` scalar of a log that did not ask :meth:`work`: all its work (100)."""
        self._write_work_scalar(1.0)

    def _write_work_scalar(self, scale: float) -> None:
        if self._work_scalar is not None:
            writer, label, step = self._work_scalar
            self._work_scalar = None
            writer.add_scalar(f"tb_viz/work/{label}", 100.0 * scale, step)

    def interval(self) -> int:
        """Epochs between the last two logged epochs (1 for the first)."""
        return 1 if len(self.logged) < 2 else self.logged[-1] - self.logged[-2]


def budget_decision(
    first: bool,
    last: bool,
    cost: float,
    full_cost: Optional[float],
    allowed: float,
    allowed_by_end: Optional[float] = None,
    reserve: float = 0.0,
) -> "tuple[bool, float]":
    """Whether a budgeted callback logs this epoch, and the work scale of that log.

    Args:
        first: the fit's first epoch (or nothing logged yet): always logged, at ``PROBE_SCALE``.
        last: the fit's last epoch: always logged, at the fraction of a full log that still fits
            (``allowed - cost`` over ``full_cost``), clamped to [``MIN_SCALE``, 1].
        cost: seconds the callback spent so far in this fit.
        full_cost: estimated seconds of one full log (``None`` when none was measured yet).
        allowed: seconds the callback's share of the training time allows so far.
        allowed_by_end: seconds its share allows over the whole fit, when the fit's length is
            known (``max_epochs``): another epoch is logged only if, with ``reserve`` (what the
            forced last log will cost at least) kept back, it fits that too.
        reserve: seconds to keep for the forced last log.

    Returns:
        ``(log, scale)``; any other epoch is logged in full when a full log still fits (so far,
        and by the end with the last log's reserve).

    Example:
        >>> budget_decision(first=True, last=False, cost=0.0, full_cost=None, allowed=0.1)
        (True, 0.015625)
        >>> budget_decision(first=False, last=True, cost=1.0, full_cost=4.0, allowed=3.0)
        (True, 0.5)
    """
    if first:
        return True, PROBE_SCALE
    full = full_cost if full_cost is not None and full_cost > 0 else None
    if last:
        if full is None:
            return True, 1.0
        return True, min(1.0, max(MIN_SCALE, (allowed - cost) / full))
    if full is None:
        return True, 1.0
    fits_by_end = allowed_by_end is None or cost + full + reserve <= allowed_by_end
    return (cost + full <= allowed and fits_by_end), 1.0


def _broadcast_decision(trainer: "pl.Trainer", decision: bool, scale: float) -> Tuple[bool, float]:
    """Rank 0's ``(decision, scale)`` on every rank: one plain tensor broadcast (every rank calls it).

    A plain ``torch.distributed.broadcast`` of a tensor rather than Lightning's object broadcast
    (pickles through ``broadcast_object_list``), as ``callbacks.distributed`` gathers.
    """
    import torch
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()):
        return trainer.strategy.broadcast((decision, scale), src=0)
    values = torch.tensor([float(decision), scale], dtype=torch.float64, device=trainer.strategy.root_device)
    dist.broadcast(values, src=0)
    return bool(values[0].item() > 0.5), float(values[1].item())


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
