"""The checkpoints a backfill replays: found by a glob, each with its step, epoch, run directory and model.

A run trained with Lightning keeps its checkpoints in ``<run>/checkpoints/*.ckpt`` beside its event
files (``ModelCheckpoint`` with a ``TensorBoardLogger``), so the run directory of a checkpoint is
found from that layout. Plain PyTorch state dicts carry no step: ``--step-from`` reads it from the
file name (and :class:`PlainModule` hands their net to the callbacks). Also here: ``MODULE:NAME``
resolution with errors that say what is wrong.
"""

from __future__ import annotations

import dataclasses
import difflib
import glob
import importlib
import os
import re
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple

import pytorch_lightning as pl
import torch
from torch import nn
from typing_extensions import override

from tb_viz_plugin.event_steps import EVENT_FILE_GLOB


class BackfillError(Exception):
    """A user mistake (a bad ``MODULE:NAME``, an empty glob, a checkpoint of another class...); the message says which."""


@dataclasses.dataclass(frozen=True)
class Checkpoint:
    """One checkpoint file and where and when its visualizations go.

    Attributes:
        path: the file.
        step: the global step it was saved at (the step its views are logged at).
        epoch: its epoch (``trainer.current_epoch`` while it was saved).
        run_dir: the log directory its views are written into.
    """

    path: Path
    step: int
    epoch: int
    run_dir: Path


_EXAMPLE = {"--module": "MyModule", "--model": "build_net", "--data": "val_loader", "--callbacks": "my_callbacks"}
"""An example NAME per option, for the error message."""


def resolve(spec: str, option: str) -> Any:
    """The object ``MODULE:NAME`` names (``NAME`` may be dotted), importing ``MODULE``.

    Raises:
        BackfillError: no ``:``, a module that cannot be found or fails to import, or a missing
            name (the message lists close matches). ``option`` (e.g. ``"--data"``) prefixes it.

    Example:
        >>> resolve("os.path:join", "--data") is os.path.join
        True
        >>> resolve("os.path:jion", "--data")
        Traceback (most recent call last):
        ...
        tb_viz_plugin.checkpoints.BackfillError: --data 'os.path:jion': module 'os.path' has no attribute 'jion' (did you mean: join?)
    """
    module_name, sep, name = spec.partition(":")
    if not sep or not module_name or not name:
        raise BackfillError(f"{option} {spec!r}: expected MODULE:NAME, e.g. {option} my_project.train:{_EXAMPLE.get(option, 'NAME')}")
    try:
        target: Any = importlib.import_module(module_name)
    except ModuleNotFoundError as err:
        if err.name is not None and (module_name == err.name or module_name.startswith(err.name + ".")):
            raise BackfillError(
                f"{option} {spec!r}: no module named {err.name!r} (the current directory and PYTHONPATH are searched)"
            ) from err
        raise BackfillError(f"{option} {spec!r}: importing {module_name!r} failed: {err}") from err
    except Exception as err:  # noqa: BLE001 - the user's module failed at import: say so, with the cause
        raise BackfillError(f"{option} {spec!r}: importing {module_name!r} failed: {type(err).__name__}: {err}") from err
    owner = module_name
    for part in name.split("."):
        if not hasattr(target, part):
            close = difflib.get_close_matches(part, [n for n in dir(target) if not n.startswith("_")], n=3)
            hint = f" (did you mean: {', '.join(close)}?)" if close else ""
            raise BackfillError(f"{option} {spec!r}: module {owner!r} has no attribute {part!r}{hint}")
        target, owner = getattr(target, part), f"{owner}.{part}"
    return target


def load_file(path: Path) -> Dict[str, Any]:
    """The checkpoint's contents on the CPU (tensors memory-mapped where the format allows).

    Tries ``weights_only=True`` first; a Lightning checkpoint with richer hyperparameters is
    unpickled in full, as ``load_from_checkpoint`` would do anyway.

    Raises:
        BackfillError: the file is not a ``torch.save`` file.
    """
    try:
        try:
            payload = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        except RuntimeError as err:
            if "mmap" not in str(err):
                raise
            payload = torch.load(path, map_location="cpu", weights_only=True)  # the legacy format
    except Exception as first:  # noqa: BLE001 - retried in full below; reported if that fails too
        try:
            payload = torch.load(path, map_location="cpu", weights_only=False)
        except Exception as err:  # noqa: BLE001
            raise BackfillError(f"{path}: not a checkpoint torch.load can read ({type(err).__name__}: {err})") from first
    if not isinstance(payload, dict):
        raise BackfillError(f"{path}: expected a checkpoint dict, got {type(payload).__name__}")
    return payload


def run_dir_of(path: Path) -> Path:
    """The log directory a checkpoint belongs to: ``<run>`` for ``<run>/checkpoints/x.ckpt``,
    else the checkpoint's own folder when it holds event files.

    Raises:
        BackfillError: neither; the message asks for ``--logdir``.
    """
    folder = path.parent
    if folder.name == "checkpoints":
        return folder.parent
    if glob.glob(os.path.join(glob.escape(str(folder)), EVENT_FILE_GLOB)):
        return folder
    raise BackfillError(
        f"cannot tell the log directory of {path}: it is not in a Lightning run's checkpoints/ folder "
        "and its folder holds no TensorBoard event file; pass --logdir DIR"
    )


def step_from_name(name: str, pattern: str) -> Tuple[int, Optional[int]]:
    """``(step, epoch or None)`` read from a file name by a regex: its group ``step`` (else its first
    group, else the whole match), and its group ``epoch`` when it has one.

    Raises:
        BackfillError: an invalid regex, no match, or a match that is not an integer.

    Example:
        >>> step_from_name("net-step=1200.pt", r"step=(\\d+)"), step_from_name("e3_s90.pt", r"e(?P<epoch>\\d+)_s(?P<step>\\d+)")
        ((1200, None), (90, 3))
    """
    try:
        regex = re.compile(pattern)
    except re.error as err:
        raise BackfillError(f"--step-from {pattern!r} is not a valid regular expression: {err}") from err
    match = regex.search(name)
    if match is None:
        raise BackfillError(f"--step-from {pattern!r} does not match the file name {name!r}")
    text = match.group("step") if "step" in regex.groupindex else match.group(1) if regex.groups else match.group(0)
    epoch = match.group("epoch") if "epoch" in regex.groupindex else None
    try:
        return int(text), None if epoch is None else int(epoch)
    except (TypeError, ValueError) as err:
        raise BackfillError(f"--step-from {pattern!r} found {text!r} in {name!r}, which is not an integer step") from err


def _step_and_epoch(path: Path, payload: Dict[str, Any], step_from: Optional[str]) -> Tuple[int, Optional[int]]:
    if step_from is not None:
        step, epoch = step_from_name(path.name, step_from)
        return step, epoch if epoch is not None else _int_or_none(payload.get("epoch"))
    step = _int_or_none(payload.get("global_step", payload.get("step")))
    if step is None:
        raise BackfillError(
            f"{path} does not say its global step (no 'global_step' entry); pass --step-from REGEX to read "
            "it from the file name, e.g. --step-from 'step=(\\d+)'"
        )
    return step, _int_or_none(payload.get("epoch"))


def _int_or_none(value: Any) -> Optional[int]:
    try:
        return None if value is None or isinstance(value, bool) else int(value)
    except (TypeError, ValueError):
        return None


def find_checkpoints(
    pattern: str, logdir: Optional[str] = None, step_from: Optional[str] = None
) -> Tuple[List[Checkpoint], List[Path]]:
    """The checkpoints ``pattern`` matches (``**`` recurses), by run and in global-step order.

    Each checkpoint's epoch is its saved ``epoch`` (else its position among its run's checkpoints).
    Of several files at one step of one run (``final.ckpt`` beside the last epoch's), the first by
    name is kept.

    Returns:
        ``(checkpoints, duplicates)``: runs sorted by directory, each run's checkpoints by step; and
        the files left out as duplicates.

    Raises:
        BackfillError: the glob matches no file, a file is not a checkpoint, or its step or run
            directory cannot be told (see :func:`run_dir_of`, :func:`step_from_name`).
    """
    paths = sorted(Path(p).resolve() for p in set(glob.glob(os.path.expanduser(pattern), recursive=True)))
    paths = [p for p in paths if p.is_file()]
    if not paths:
        raise BackfillError(
            f"--checkpoints {pattern!r} matches no file. Quote the pattern so that the shell leaves it to "
            "tb-viz, and use '**' to search sub-directories, e.g. --checkpoints 'logs/**/*.ckpt'"
        )
    found: List[Tuple[Path, int, Path, Optional[int]]] = []
    for path in paths:
        step, epoch = _step_and_epoch(path, load_file(path), step_from)
        run_dir = Path(logdir).resolve() if logdir is not None else run_dir_of(path)
        found.append((run_dir, step, path, epoch))
    found.sort(key=lambda item: (str(item[0]), item[1], str(item[2])))
    checkpoints: List[Checkpoint] = []
    duplicates: List[Path] = []
    for run_dir, step, path, epoch in found:
        same_run = [c for c in checkpoints if c.run_dir == run_dir]
        if same_run and same_run[-1].step == step:
            duplicates.append(path)
            continue
        checkpoints.append(Checkpoint(path, step, len(same_run) if epoch is None else epoch, run_dir))
    return checkpoints, duplicates


class PlainModule(pl.LightningModule):
    """A plain ``torch.nn.Module`` as a LightningModule (``self.model``), for the callbacks.

    ``validation_step`` runs the model on the batch's input (the batch itself, its first element, or
    its ``image``/``pixel_values``/... entry). Layer names are the net's (``"layer4"`` finds
    ``"model.layer4"``).
    """

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    @override
    def forward(self, x: torch.Tensor) -> Any:
        return self.model(x)

    @override
    def validation_step(self, batch: Any, batch_idx: int) -> None:
        self(_batch_input(batch))


def _batch_input(batch: Any) -> Any:
    if isinstance(batch, (list, tuple)) and batch:
        return batch[0]
    if isinstance(batch, dict):
        for key in ("image", "images", "pixel_values", "input", "inputs", "x"):
            if key in batch:
                return batch[key]
        return next(v for v in batch.values() if isinstance(v, torch.Tensor))
    return batch


def module_loader(module: Optional[str], model: Optional[str]) -> Callable[[Checkpoint], pl.LightningModule]:
    """A function restoring the model of one checkpoint (``--module`` class or ``--model`` builder)."""
    if (module is None) == (model is None):
        raise BackfillError("pass exactly one of --module MODULE:CLASS (Lightning) and --model MODULE:FUNCTION (plain PyTorch)")
    if module is not None:
        cls = resolve(module, "--module")
        if not (isinstance(cls, type) and hasattr(cls, "load_from_checkpoint") and issubclass(cls, nn.Module)):
            raise BackfillError(
                f"--module {module!r} is not a LightningModule class; for a function building a plain "
                "torch.nn.Module pass --model MODULE:FUNCTION"
            )

        def load_lightning(checkpoint: Checkpoint) -> pl.LightningModule:
            if "state_dict" not in load_file(checkpoint.path):
                raise BackfillError(
                    f"{checkpoint.path} is not a Lightning checkpoint (no 'state_dict' entry); for a plain "
                    "PyTorch state dict pass --model MODULE:FUNCTION instead of --module"
                )
            try:
                return cls.load_from_checkpoint(checkpoint.path, map_location="cpu")
            except (RuntimeError, TypeError, KeyError, ValueError) as err:
                raise BackfillError(
                    f"{checkpoint.path} is not a checkpoint of {cls.__module__}.{cls.__qualname__}: {_first_lines(err)}"
                ) from err

        return load_lightning
    build = resolve(model, "--model")
    if not callable(build):
        raise BackfillError(f"--model {model!r} is not a function returning a torch.nn.Module")

    def load_plain(checkpoint: Checkpoint) -> pl.LightningModule:
        net = build()
        if not isinstance(net, nn.Module):
            raise BackfillError(f"--model {model!r} returned {type(net).__name__}, not a torch.nn.Module")
        payload = load_file(checkpoint.path)
        state = next((payload[k] for k in ("state_dict", "model_state_dict", "model") if isinstance(payload.get(k), dict)),
                     payload)  # fmt: skip
        try:
            net.load_state_dict(state)
        except (RuntimeError, TypeError, KeyError) as err:
            raise BackfillError(f"{checkpoint.path} does not fit the model {model!r} builds: {_first_lines(err)}") from err
        return PlainModule(net)

    return load_plain


def _first_lines(err: BaseException, lines: int = 3, width: int = 400) -> str:
    text = " ".join(str(err).strip().splitlines()[:lines])
    return text if len(text) <= width else text[: width - 3] + "..."
