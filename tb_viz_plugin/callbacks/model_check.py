"""The model check every tb-viz callback shares: one probe forward before training, mistakes named early.

Before the first training step (at ``on_train_start``, or at ``on_validation_start`` under
``trainer.validate()`` and the sanity check, when the dataloaders exist) one forward pass on two
validation samples tells what the model takes and gives: the input channels and size, the task
(detected from the output and the labels, see :mod:`tb_viz_plugin.methods.model_io`), whether the
forward pass runs a ReLU, and each module's output shape. It runs once per Trainer and ``io``
however many callbacks ask; each callback then refuses what cannot work with a
``MisconfigurationException`` naming the fix, or drops (with one warning) a default that cannot
apply. The Trainer settings that disable logging are said here too, once.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Tuple

import pytorch_lightning as pl
import torch
from torch import nn
from pytorch_lightning.utilities import rank_zero_warn
from pytorch_lightning.utilities.exceptions import MisconfigurationException

from tb_viz_plugin.callbacks.probes import first_val_loader
from tb_viz_plugin.methods import preserved_training_flags
from tb_viz_plugin.methods.attribution.hooks import GuidedReLU, ModuleCall
from tb_viz_plugin.methods.hooks import LayerHooks
from tb_viz_plugin.methods import model_display
from tb_viz_plugin.methods.model_io import ModelIO, call_model, labels_as_classes, class_scores, detect, pick_logits, split_batch

_PROBE_SAMPLES = 2


@dataclass
class ModelInfo:
    """What the probe forward found.

    Attributes:
        io: the callback's ``ModelIO`` with ``task`` and ``probabilities`` filled in.
        channels: input channels; ``size``: input ``(H, W)``.
        outputs: the number of class scores (``TaskModel`` outputs).
        has_labels: whether the samples carry labels.
        relu: whether the forward pass calls a ReLU (guided methods need one).
        shapes: output shape of every module that returned a tensor, by name.
        calls: the module calls in completion order (outputs as meta tensors), for default layers.
        head: the ``nn.Linear`` whose output is the logits (``None`` when none is).
        dataset_size: the validation set's length (``None`` when unknown or no validation set).
    """

    io: ModelIO
    channels: int
    size: Tuple[int, int]
    outputs: int
    has_labels: bool
    relu: bool
    shapes: Dict[str, Tuple[int, ...]] = field(default_factory=dict)
    calls: List[ModuleCall] = field(default_factory=list)
    dataset_size: Optional[int] = None
    head: Optional[str] = None

    def feature_map(self, owner: str, layer: str) -> None:
        """Raise ``MisconfigurationException`` unless ``layer`` outputs an ``(N, C, H, W)`` feature map."""
        shape = self.shapes.get(layer)
        if shape is None:
            raise MisconfigurationException(f"{owner}: the layer {layer!r} did not run in the model's forward pass")
        if len(shape) != 4:
            maps = [name for name, s in self.shapes.items() if name and len(s) == 4]
            raise MisconfigurationException(
                f"{owner}: the layer {layer!r} outputs {shape}, not a feature map (N, C, H, W); give a layer "
                f"before the flatten/pooling, e.g. one of {maps[-6:]}"
            )


_CACHE: "weakref.WeakKeyDictionary[Any, Dict[Any, ModelInfo]]" = weakref.WeakKeyDictionary()
_SAID: "weakref.WeakKeyDictionary[Any, set]" = weakref.WeakKeyDictionary()


def convs_that_ran(pl_module: nn.Module, info: "ModelInfo") -> List[str]:
    """The ``Conv2d`` names of ``pl_module`` whose output the probe forward saw, in definition order.

    Default layers come from these: the last ``Conv2d`` defined may not run in eval mode
    (GoogLeNet's auxiliary heads).
    """
    return [name for name, module in pl_module.named_modules() if isinstance(module, nn.Conv2d) and name in info.shapes]


def say_once(trainer: "pl.Trainer", key: str, message: str) -> None:
    """Warn ``message`` once per Trainer (``key`` tells messages apart), whatever the number of callbacks."""
    said = _SAID.setdefault(trainer, set())
    if key not in said:
        said.add(key)
        rank_zero_warn(message, category=UserWarning)


def _samples(trainer: "pl.Trainer") -> Tuple[Any, Optional[int]]:
    """A collated batch of the first validation samples (else training samples) and the validation set's size."""
    val = getattr(first_val_loader(trainer), "dataset", None)
    dataset = val
    if dataset is None:
        loader = getattr(trainer, "train_dataloader", None)
        dataset = getattr(loader, "dataset", None)
    if dataset is None or not hasattr(dataset, "__getitem__") or not hasattr(dataset, "__len__") or len(dataset) == 0:
        raise MisconfigurationException(
            "tb-viz callbacks need a map-style validation (or training) dataset to look at the model's inputs"
        )
    count = min(_PROBE_SAMPLES, len(dataset))
    batch = torch.utils.data.default_collate([dataset[i] for i in range(count)])
    return batch, (len(val) if val is not None else None)


def probe_model(trainer: "pl.Trainer", pl_module: "pl.LightningModule", io: ModelIO) -> ModelInfo:
    """Run (once per Trainer and ``io``) the probe forward; see the module docstring.

    Raises:
        MisconfigurationException: no dataset, no input tensor in the samples, a forward pass that
            fails on the inputs alone (the message says the callbacks call ``pl_module(inputs)`` and
            how to pass another forward), or no logits in the output.
    """
    cache = _CACHE.setdefault(trainer, {})
    if io in cache:
        return cache[io]
    batch, dataset_size = _samples(trainer)
    try:
        inputs, labels = split_batch(batch, io)
    except (TypeError, KeyError) as err:
        raise MisconfigurationException(f"tb-viz: {err}") from err
    if inputs.dim() != 4:
        raise MisconfigurationException(
            f"tb-viz callbacks show images (N, C, H, W); the samples' inputs are {tuple(inputs.shape)} per batch. "
            "Name the image input with io=ModelIO(inputs=...)"
        )
    modules = dict(pl_module.named_modules())
    calls: List[ModuleCall] = []

    linear_outputs: Dict[str, torch.Tensor] = {}

    def record(name: str, output: Any) -> None:
        if isinstance(output, torch.Tensor):
            calls.append(ModuleCall(name, modules[name], torch.empty(output.shape, device="meta")))
            if isinstance(modules[name], nn.Linear):
                linear_outputs[name] = output

    with preserved_training_flags(pl_module), torch.inference_mode(False), torch.enable_grad():
        x = trainer.precision_plugin.convert_input(inputs.to(pl_module.device)).detach().clone().requires_grad_(True)
        try:
            with LayerHooks(pl_module, [n for n in modules if n], record), GuidedReLU() as guide:
                with trainer.precision_plugin.forward_context():
                    output = call_model(pl_module, x, io)
        except Exception as err:  # noqa: BLE001 - reported as the configuration error it is
            raise MisconfigurationException(
                f"tb-viz: the model's forward failed on the inputs alone ({type(err).__name__}: {err}). The callbacks "
                f"call `pl_module(inputs)` with inputs {tuple(inputs.shape)}; if your forward takes a whole batch, "
                "pass io=ModelIO(forward=lambda module, inputs: module(<batch built from inputs>)), and name the "
                "inputs with io=ModelIO(inputs=...)"
            ) from err
    try:
        logits = pick_logits(output, io)
    except (TypeError, KeyError, IndexError) as err:
        raise MisconfigurationException(f"tb-viz: {err}") from err
    resolved = detect(logits.detach().float(), labels, io)
    try:
        width = class_scores(logits.detach().float(), resolved).shape[1]
    except ValueError as err:
        raise MisconfigurationException(f"tb-viz: {err}") from err
    info = ModelInfo(
        io=resolved,
        channels=int(inputs.shape[1]),
        size=(int(inputs.shape[2]), int(inputs.shape[3])),
        outputs=int(width),
        has_labels=labels is not None,
        relu=guide.relu_calls > 0,
        shapes={call.name: tuple(call.output.shape) for call in calls},
        calls=calls,
        dataset_size=dataset_size,
        head=next((name for name, value in linear_outputs.items() if value is logits), None),
    )
    cache[io] = info
    return info


def task_class_names(info: ModelInfo, names: Optional[List[str]]) -> Optional[List[str]]:
    """Caption names of the task's class scores (see ``methods.model_display.task_class_names``)."""
    return model_display.task_class_names(info.io.task, info.outputs, names)


def caption_labels(labels: Optional[torch.Tensor], info: ModelInfo) -> Optional[List[int]]:
    """Probe labels as class indices for captions, when the task has them (``None`` otherwise)."""
    classes = labels_as_classes(labels, info.io.task)
    return None if classes is None else classes.tolist()


def check_channels(trainer: "pl.Trainer", owner: str, info: ModelInfo, mean: Any, std: Any, to_rgb: Any) -> None:
    """Refuse ``mean``/``std`` of another length than the input channels; say once that >3 channels need ``to_rgb``.

    Raises:
        MisconfigurationException: a ``mean`` or ``std`` with a number count other than the channels.
    """
    for name, values in (("mean", mean), ("std", std)):
        if values is not None and len(values) != info.channels:
            raise MisconfigurationException(
                f"{owner}: {name} has {len(values)} numbers but the model's inputs have {info.channels} channels; "
                f"give one number per channel"
            )
    if info.channels > 3 and to_rgb is None:
        say_once(
            trainer,
            "channels",
            f"tb-viz: the inputs have {info.channels} channels; the first three are shown as RGB. Pass "
            "io=ModelIO(to_rgb=<inputs (N, C, H, W) -> RGB (N, 3, H, W) in [0, 1]>) to choose how they are shown",
        )


def never_logs(trainer: "pl.Trainer", owner: str, every_n_epochs: Optional[int], needs_validation: bool) -> None:
    """Say once at the start which Trainer settings keep ``owner`` from ever logging."""
    if trainer.fast_dev_run:
        say_once(
            trainer,
            "fast_dev_run",
            "tb-viz: fast_dev_run replaces the loggers with a dummy logger, so the tb-viz callbacks log nothing "
            "in this run; run without fast_dev_run (e.g. limit_train_batches/limit_val_batches) to see them",
        )
        return
    max_epochs = trainer.max_epochs
    if every_n_epochs is not None and max_epochs is not None and max_epochs > 0 and every_n_epochs > max_epochs:
        rank_zero_warn(
            f"{owner}: every_n_epochs={every_n_epochs} > max_epochs={max_epochs}, so it never logs in this run",
            category=UserWarning,
        )
    if needs_validation and trainer.limit_val_batches == 0:
        rank_zero_warn(
            f"{owner}: limit_val_batches=0 disables validation, and it logs at validation epoch ends, so it never logs",
            category=UserWarning,
        )
