"""What a run's event files already hold, and a ``SummaryWriter`` that writes only what is new.

Backfill (``tb-viz backfill``) writes beside a run's existing event files. To be re-runnable, it
must never write a ``(tag, step)`` that is already there: :func:`logged_steps` reads the run's
event files (TensorBoard's own event file loader, no TensorFlow), and :class:`SkipLoggedWriter`
drops every summary value whose ``(tag, step)`` is logged, and opens its event file only when
something new is written (a backfill with nothing to do leaves the directory as it was).
"""

from __future__ import annotations

import glob
import os
from typing import Any, Dict, Optional, Set, Tuple

from tensorboard.backend.event_processing.event_file_loader import EventFileLoader
from torch.utils.tensorboard import SummaryWriter

EVENT_FILE_GLOB = "events.out.tfevents.*"
"""Event files of one run: directly in the run's directory (sub-directories are other runs)."""

Logged = Dict[str, Set[int]]
"""``tag -> steps`` already in a run's event files."""


def logged_steps(run_dir: str) -> Logged:
    """``tag -> set of steps`` of every summary value in the event files directly in ``run_dir``.

    Example:
        >>> import tempfile
        >>> with tempfile.TemporaryDirectory() as run:
        ...     writer = SummaryWriter(run)
        ...     writer.add_scalar("loss", 1.0, 7); writer.add_scalar("loss", 0.5, 9); writer.close()
        ...     {tag: sorted(steps) for tag, steps in logged_steps(run).items()}
        {'loss': [7, 9]}
    """
    logged: Logged = {}
    for path in sorted(glob.glob(os.path.join(glob.escape(str(run_dir)), EVENT_FILE_GLOB))):
        for event in EventFileLoader(path).Load():
            if event.HasField("summary"):
                for value in event.summary.value:
                    logged.setdefault(value.tag, set()).add(int(event.step))
    return logged


class _SkippingFileWriter:
    """Stands in for the ``FileWriter`` of a :class:`SkipLoggedWriter`: filters, then opens the real one."""

    def __init__(self, owner: "SkipLoggedWriter") -> None:
        self._owner = owner

    def get_logdir(self) -> str:
        return self._owner.log_dir

    def add_summary(self, summary: Any, global_step: Optional[int] = None, walltime: Optional[float] = None) -> None:
        """Write the values of ``summary`` whose ``(tag, global_step)`` is not logged yet."""
        step = 0 if global_step is None else int(global_step)
        new = [value for value in summary.value if self._owner.note(value.tag, step)]
        if not new:
            return
        if len(new) < len(summary.value):
            del summary.value[:]
            summary.value.extend(new)
        self._owner.real_file_writer().add_summary(summary, global_step, walltime)

    def __getattr__(self, name: str) -> Any:  # add_event, flush, close...: the real writer's
        return getattr(self._owner.real_file_writer(), name)


class SkipLoggedWriter(SummaryWriter):
    """A ``SummaryWriter`` on ``log_dir`` that never writes a ``(tag, step)`` already logged there.

    Every summary goes through ``_get_file_writer().add_summary`` (``add_scalar``, ``add_image``...
    and tb-viz's ``write_summary``), where values already in ``logged`` are dropped (counted in
    ``skipped``) and the others written (counted in ``written``, and added to ``logged``).
    ``add_embedding`` of a logged ``(tag, step)`` is skipped too. The event file is created at the
    first value actually written.

    Args:
        log_dir: the run's directory.
        logged: ``tag -> steps`` already there (:func:`logged_steps`); updated in place.

    Example:
        >>> import tempfile
        >>> with tempfile.TemporaryDirectory() as run:
        ...     writer = SkipLoggedWriter(run, {"loss": {7}})
        ...     writer.add_scalar("loss", 1.0, 7); writer.add_scalar("loss", 0.5, 9); writer.close()
        ...     sorted(writer.written), sorted(writer.skipped), logged_steps(run)
        ([('loss', 9)], [('loss', 7)], {'loss': {9}})
    """

    def __init__(self, log_dir: str, logged: Optional[Logged] = None) -> None:
        self.logged: Logged = {} if logged is None else logged
        self.written: Set[Tuple[str, int]] = set()
        self.skipped: Set[Tuple[str, int]] = set()
        self._stand_in = _SkippingFileWriter(self)
        super().__init__(log_dir=str(log_dir))  # its _get_file_writer() call opens nothing

    def note(self, tag: str, step: int) -> bool:
        """Record ``(tag, step)`` as about to be written; False (and counted as skipped) if already logged."""
        if step in self.logged.get(tag, ()):
            if (tag, step) not in self.written:
                self.skipped.add((tag, step))
                return False
            return True  # a second value of a tag written in this session (e.g. several images)
        self.logged.setdefault(tag, set()).add(step)
        self.written.add((tag, step))
        return True

    def real_file_writer(self) -> Any:
        """The actual ``FileWriter`` (creates the event file on first use)."""
        return super()._get_file_writer()

    def _get_file_writer(self) -> Any:
        return self._stand_in

    def add_embedding(self, mat: Any, metadata: Any = None, label_img: Any = None, global_step: Optional[int] = None,
                      tag: str = "default", metadata_header: Any = None) -> None:  # fmt: skip
        """``SummaryWriter.add_embedding``, skipped when ``(tag, global_step)`` is already logged."""
        step = 0 if global_step is None else int(global_step)
        if step in self.logged.get(tag, ()) and (tag, step) not in self.written:
            self.skipped.add((tag, step))
            return
        super().add_embedding(mat, metadata, label_img, global_step, tag, metadata_header)

    def flush(self) -> None:
        if self.file_writer is not None:
            super().flush()

    def close(self) -> None:
        if self.file_writer is not None:
            super().close()
