"""A background worker per ``SummaryWriter``: rendering, PNG encoding and summary writing off the training thread.

Jobs run in the order they were submitted, one at a time, on one daemon thread per writer. They
are handed CPU copies only (:func:`to_host`): no job touches the model, a parameter or a device.
:meth:`BackgroundWriter.drain` waits until every job submitted so far has run and flushes the
writer, so that a log directory is complete when it returns; a job's failure is kept and
reported (once per job) on the thread that calls :meth:`BackgroundWriter.failures`.
"""

from __future__ import annotations

import dataclasses
import os
import queue
import sys
import threading
import time
import weakref
from typing import Any, Callable, List, Optional, Tuple

import torch

_IDLE_SECONDS = 2.0  # an idle worker thread ends; the next job starts a new one

Failure = Tuple[Any, str, BaseException]
"""``(owner, what, error)`` of a job that raised."""


def to_host(value: Any) -> Any:
    """``value`` with every tensor inside it (dicts, lists, tuples, dataclasses) replaced by a CPU copy.

    A copy even for CPU tensors: training may change a parameter in place while a job reads it.

    Example:
        >>> weight = torch.ones(2)
        >>> copy = to_host({"w": weight})["w"]
        >>> weight.add_(1); copy.tolist()
        tensor([2., 2.])
        [1.0, 1.0]
    """
    if isinstance(value, torch.Tensor):
        return value.detach().to("cpu", copy=True)
    if isinstance(value, dict):
        return type(value)((k, to_host(v)) for k, v in value.items())
    if isinstance(value, tuple) and hasattr(value, "_fields"):
        return type(value)(*(to_host(v) for v in value))
    if isinstance(value, (list, tuple)):
        return type(value)(to_host(v) for v in value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        fields = {f.name: to_host(getattr(value, f.name)) for f in dataclasses.fields(value) if f.init}
        return dataclasses.replace(value, **fields)
    return value


class BackgroundWriter:
    """Runs jobs that write through ``writer`` on one worker thread, in order.

    Use :func:`background_writer` to get the one of a writer.

    Args:
        writer: a ``torch.utils.tensorboard.SummaryWriter``.

    Example:
        >>> import tempfile
        >>> from torch.utils.tensorboard import SummaryWriter
        >>> with tempfile.TemporaryDirectory() as logdir, SummaryWriter(logdir) as writer:
        ...     worker = background_writer(writer)
        ...     worker.submit(None, "a scalar", writer.add_scalar, "x", 1.0, 0)
        ...     worker.drain(); worker.failures()
        []
    """

    def __init__(self, writer: Any) -> None:
        self._writer = weakref.ref(writer)
        self._queue: "queue.Queue[tuple]" = queue.Queue()
        self._failures: List[Failure] = []
        self._thread: Optional[threading.Thread] = None
        self._lock = threading.Lock()

    def submit(
        self,
        owner: Any,
        what: str,
        fn: Callable[..., Any],
        *args: Any,
        on_done: Optional[Callable[[float], None]] = None,
        **kwargs: Any,
    ) -> None:
        """Run ``fn(*args, **kwargs)`` on the worker (after every job submitted before it).

        Tensors in ``args`` and ``kwargs`` are copied to the CPU here, on the calling thread.

        Args:
            owner: who submitted it (handed back with a failure).
            what: what the job does, for the failure's message.
            fn: the job.
            on_done: called on the worker with the job's CPU seconds (also when it failed).
        """
        job = (owner, what, fn, to_host(args), to_host(kwargs), on_done)
        with self._lock:
            self._queue.put(job)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="tb-viz-writer", daemon=True)
                self._thread.start()

    def _run(self) -> None:
        _yield_to_training()
        while True:
            try:
                job = self._queue.get(timeout=_IDLE_SECONDS)
            except queue.Empty:
                with self._lock:  # submit() puts under the lock: no job is left behind
                    if self._queue.empty():
                        self._thread = None
                        return
                continue
            try:
                owner, what, fn, args, kwargs, on_done = job
                started = time.thread_time()
                try:
                    fn(*args, **kwargs)
                except Exception as err:  # noqa: BLE001 - reported on the training thread
                    with self._lock:
                        self._failures.append((owner, what, err))
                finally:
                    if on_done is not None:
                        on_done(time.thread_time() - started)
            finally:
                self._queue.task_done()

    def drain(self) -> None:
        """Wait until every job submitted so far has run, then flush the writer to disk."""
        self._queue.join()
        writer = self._writer()
        if writer is not None and hasattr(writer, "flush"):
            writer.flush()

    def failures(self, owner: Any = None) -> List[Failure]:
        """Take the failures recorded so far (those of ``owner`` only, when given)."""
        with self._lock:
            taken = [f for f in self._failures if owner is None or f[0] is owner]
            self._failures = [f for f in self._failures if not (owner is None or f[0] is owner)]
        return taken


def _yield_to_training() -> None:
    """Keep the writer thread out of training's way: one intra-op thread, and (Linux) the lowest CPU priority.

    ``torch.set_num_threads(1)`` here sets this thread's own OpenMP team size (a per-thread
    setting; the training thread keeps its threads): the writer's tensor work (rendering) runs on
    the writer thread itself instead of a second team of worker threads competing with
    training's, and its cost is all in the writer thread's CPU time that the budget counts. Its
    scheduling policy ``SCHED_IDLE`` (else nice 19) lets it run in the gaps (data loading, the
    optimizer's Python) and be preempted at once when a training thread wakes up: a training
    thread that waits for a core stalls its whole OpenMP team at the next barrier. Where not
    permitted, the priority stays.
    """
    torch.set_num_threads(1)
    native_id = getattr(threading, "get_native_id", None)
    if not sys.platform.startswith("linux") or native_id is None:
        return
    try:  # per thread on Linux: 0 is the calling thread
        os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
        return
    except (AttributeError, OSError):
        pass
    try:
        os.setpriority(os.PRIO_PROCESS, native_id(), 19)
    except (AttributeError, OSError):
        pass


_WORKERS: "weakref.WeakKeyDictionary[Any, BackgroundWriter]" = weakref.WeakKeyDictionary()
_WORKERS_LOCK = threading.Lock()


def background_writer(writer: Any) -> BackgroundWriter:
    """The :class:`BackgroundWriter` of ``writer`` (one per writer, created on first use)."""
    with _WORKERS_LOCK:
        worker = _WORKERS.get(writer)
        if worker is None:
            worker = _WORKERS[writer] = BackgroundWriter(writer)
        return worker
