"""How a user's model takes its inputs and gives its outputs: batches, logits, task and display.

Pure torch. A :class:`ModelIO` says where the inputs and labels are in a batch (or a dataset
sample), how to call the model, which part of its output holds the logits, which ``task`` the
outputs are for and how inputs are shown. :class:`TaskModel` turns any such model into the
``images (N, C, H, W) -> scores (N, K)`` network every tb-viz method expects, without copying it:
its submodules, parameters and names are the model's own, so layer names, hooks and devices work
unchanged.

Tasks and what a view explains for each:

- ``multiclass``: logits ``(N, K)``, softmax probabilities (never a second softmax when the
  outputs already are probabilities).
- ``multilabel``: logits ``(N, K)``, a sigmoid per label.
- ``binary``: one logit ``(N,)`` or ``(N, 1)``, shown as two classes (``not 1``/``1``) whose
  softmax is the sigmoid of the logit.
- ``regression``: ``(N,)`` or ``(N, D)`` values, shown as they are.
- ``segmentation``: ``(N, K, H, W)`` logits; class ``k``'s score is the sum of its logit over
  the pixels predicted as ``k`` (pytorch-grad-cam's semantic-segmentation target), over ``H * W``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Mapping, Optional, Sequence, Tuple, Union

import torch
from torch import nn
from torch.utils.data import default_collate

TASKS = ("multiclass", "multilabel", "binary", "regression", "segmentation")
INPUT_KEYS = ("image", "images", "input", "inputs", "x", "pixel_values", "img")
LABEL_KEYS = ("label", "labels", "target", "targets", "y", "mask", "masks")
LOGIT_KEYS = ("logits", "logit", "out", "output", "outputs", "scores", "pred", "preds")

Key = Union[str, int]
Splitter = Callable[[Any], Tuple[torch.Tensor, Optional[torch.Tensor]]]


@dataclass(frozen=True)
class ModelIO:
    """Where a model's inputs, labels and logits are, its task, and how its inputs are shown.

    Args:
        inputs: the key (dict batches) or position (tuple batches) of the inputs; or a callable
            ``batch -> (inputs, labels or None)``. ``None``: a bare tensor, the first tensor of a
            tuple, or the first of the keys ``image``, ``pixel_values``, ``input``, ``x``... of a dict.
        labels: the key or position of the labels; ``None``: the second element of a tuple, or
            ``label``, ``labels``, ``target``, ``y``... of a dict.
        logits: which part of the model's output holds the logits: a key (dict outputs), a
            position (tuple outputs) or a callable ``output -> tensor``. ``None``: a tensor, the
            first tensor of a tuple, the ``logits`` (``out``, ``output``...) key of a dict, or an
            object's ``.logits`` attribute.
        forward: how to run the model on inputs, ``forward(model, inputs) -> output``, for a
            ``forward`` that takes a whole batch (e.g. ``lambda m, x: m({"image": x})``).
        task: one of :data:`TASKS`; ``None`` = detected from the output's shape and the labels.
        to_rgb: model inputs ``(N, C, H, W)`` -> RGB ``(N, 3, H, W)`` in ``[0, 1]`` for display
            (needed for more than 3 channels); picklable (module-level) for DDP spawn.
        mean: per-channel mean the inputs are normalised with (as many numbers as channels).
        std: per-channel standard deviation of that normalisation.

    Raises:
        ValueError: an unknown task, a ``std`` <= 0 or ``mean``/``std`` of different lengths.

    Example:
        >>> io = ModelIO(inputs="pixel_values", labels="labels", logits="logits")
        >>> x, y = split_batch({"pixel_values": torch.zeros(2, 1, 8, 8), "labels": torch.tensor([0, 1])}, io)
        >>> tuple(x.shape), y.tolist()
        ((2, 1, 8, 8), [0, 1])
    """

    inputs: Optional[Union[Key, Splitter]] = None
    labels: Optional[Key] = None
    logits: Optional[Union[Key, Callable[[Any], torch.Tensor]]] = None
    forward: Optional[Callable[[nn.Module, torch.Tensor], Any]] = None
    task: Optional[str] = None
    to_rgb: Optional[Callable[[torch.Tensor], torch.Tensor]] = None
    mean: Optional[Sequence[float]] = None
    std: Optional[Sequence[float]] = None
    probabilities: bool = False
    """Whether the outputs already are probabilities (detected by :func:`detect`)."""

    def __post_init__(self) -> None:
        if self.task is not None and self.task not in TASKS:
            raise ValueError(f"task must be one of {TASKS} or None, got {self.task!r}")
        for name in ("mean", "std"):
            values = getattr(self, name)
            if values is not None:
                try:
                    floats = tuple(float(v) for v in values)
                except (TypeError, ValueError):
                    raise ValueError(f"{name} must be per-channel numbers, got {values!r}") from None
                if not floats or (name == "std" and min(floats) <= 0):
                    raise ValueError(f"{name} must be per-channel numbers (std > 0), got {values!r}")
                object.__setattr__(self, name, floats)
        if self.mean is not None and self.std is not None and len(self.mean) != len(self.std):
            raise ValueError(f"mean and std need one number per channel each, got {self.mean} and {self.std}")


IO = Union[None, ModelIO, Mapping[str, Any]]
"""What an ``io=`` argument takes: a :class:`ModelIO`, a dict of its fields, or ``None`` (the defaults)."""


def as_io(io: IO) -> ModelIO:
    """``io`` as a :class:`ModelIO` (``None`` = the defaults; a dict = its fields).

    Raises:
        ValueError: anything else, or a dict with unknown fields.

    Example:
        >>> as_io({"inputs": "pixel_values"}).inputs, as_io(None).task
        ('pixel_values', None)
    """
    if io is None:
        return ModelIO()
    if isinstance(io, ModelIO):
        return io
    if isinstance(io, Mapping):
        fields = {f.name for f in dataclasses.fields(ModelIO)}
        unknown = sorted(set(io) - fields)
        if unknown:
            raise ValueError(f"io has unknown fields {unknown}; valid fields: {sorted(fields)}")
        return ModelIO(**io)
    raise ValueError(f"io must be a ModelIO, a dict of its fields or None, got {type(io).__name__}")


def _pick(container: Any, key: Optional[Key], defaults: Sequence[str], position: int) -> Any:
    if isinstance(container, Mapping):
        if key is not None:
            if key not in container:
                raise KeyError(f"the batch has no key {key!r}; its keys: {sorted(map(str, container))}")
            return container[key]
        return next((container[k] for k in defaults if k in container), None)
    if isinstance(container, (tuple, list)):
        index = position if key is None else key
        if not isinstance(index, int):
            raise KeyError(f"the batch is a {type(container).__name__}; name the element by position, got {key!r}")
        return container[index] if -len(container) <= index < len(container) else None
    return container if position == 0 and key is None else None


def split_batch(batch: Any, io: Optional[ModelIO] = None) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
    """``(inputs, labels or None)`` of a batch (a tensor, a ``(x, y, ...)`` tuple, a dict).

    Raises:
        TypeError: no input tensor found (the message says how to name it).
        KeyError: a named key or position that the batch does not have.

    Example:
        >>> x, y = split_batch((torch.zeros(4, 3, 8, 8), torch.arange(4)))
        >>> tuple(x.shape), y.tolist(), split_batch(torch.zeros(2, 1, 4, 4))[1]
        ((4, 3, 8, 8), [0, 1, 2, 3], None)
    """
    io = io or ModelIO()
    if callable(io.inputs):
        inputs, labels = io.inputs(batch)
    else:
        inputs = _pick(batch, io.inputs, INPUT_KEYS, 0)
        labels = _pick(batch, io.labels, LABEL_KEYS, 1) if not isinstance(batch, torch.Tensor) else None
    if not isinstance(inputs, torch.Tensor):
        keys = f" (keys {sorted(map(str, batch))})" if isinstance(batch, Mapping) else ""
        raise TypeError(
            f"found no input tensor in a {type(batch).__name__} batch{keys}; name it with "
            "io=ModelIO(inputs='<key>', labels='<key>') or io=ModelIO(inputs=lambda batch: (images, labels))"
        )
    return inputs, labels if isinstance(labels, torch.Tensor) else None


def split_sample(sample: Any, io: Optional[ModelIO] = None) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
    """``(input (C, H, W), label or None)`` of one dataset sample, read as a batch of one.

    Example:
        >>> x, y = split_sample({"pixel_values": torch.zeros(1, 8, 8), "labels": 3})
        >>> tuple(x.shape), int(y)
        ((1, 8, 8), 3)
    """
    inputs, labels = split_batch(default_collate([sample]), io)
    return inputs[0], None if labels is None else labels[0]


def call_model(model: nn.Module, inputs: torch.Tensor, io: Optional[ModelIO] = None) -> Any:
    """The model's raw output for ``inputs`` (through ``io.forward`` when given)."""
    io = io or ModelIO()
    return io.forward(model, inputs) if io.forward is not None else model(inputs)


def pick_logits(output: Any, io: Optional[ModelIO] = None) -> torch.Tensor:
    """The logits in a model's output (see ``ModelIO.logits``).

    Raises:
        TypeError: no tensor found (the message says how to pick it).

    Example:
        >>> pick_logits((torch.ones(2, 5), torch.zeros(2, 3))).shape, pick_logits({"logits": torch.ones(2, 4)}).shape
        (torch.Size([2, 5]), torch.Size([2, 4]))
    """
    key = (io or ModelIO()).logits
    if callable(key):
        picked = key(output)
    elif isinstance(output, torch.Tensor):
        picked = output
    elif key is not None:
        picked = output[key] if isinstance(output, (Mapping, tuple, list)) else getattr(output, str(key), None)
    elif isinstance(output, Mapping):
        picked = next((output[k] for k in LOGIT_KEYS if k in output), None)
    elif isinstance(output, (tuple, list)):
        picked = next((v for v in output if isinstance(v, torch.Tensor)), None)
    else:
        picked = getattr(output, "logits", None)
    if not isinstance(picked, torch.Tensor):
        raise TypeError(
            f"found no logits tensor in the model's {type(output).__name__} output; pick it with "
            "io=ModelIO(logits='<key>' | <position> | lambda output: tensor)"
        )
    return picked


def _integral(values: torch.Tensor) -> bool:
    return not values.is_floating_point() or bool(torch.all(values == values.round()))


def detect_task(logits: torch.Tensor, labels: Optional[torch.Tensor] = None) -> str:
    """The task an output (and labels) are for: see :data:`TASKS`.

    ``(N, K, H, W)``: segmentation. One output per sample: binary when the labels are 0/1,
    else regression. ``(N, K)``: multilabel with multi-hot labels ``(N, K)``, regression with
    other float labels of that shape, else multiclass.

    Example:
        >>> detect_task(torch.zeros(4, 10)), detect_task(torch.zeros(4, 1), torch.tensor([0, 1, 1, 0]))
        ('multiclass', 'binary')
        >>> detect_task(torch.zeros(4, 3), torch.tensor([[0, 1, 1]] * 4)), detect_task(torch.zeros(4, 1), torch.rand(4))
        ('multilabel', 'regression')
    """
    if logits.dim() == 4:
        return "segmentation"
    width = 1 if logits.dim() == 1 else logits.shape[1]
    has_labels = isinstance(labels, torch.Tensor) and labels.numel() > 0
    zero_one = has_labels and _integral(labels) and bool(((labels == 0) | (labels == 1)).all())
    if width == 1:
        return "binary" if zero_one else "regression"
    if has_labels and labels.dim() == 2 and labels.shape[1] == width:
        return "multilabel" if zero_one else "regression"
    if has_labels and labels.is_floating_point() and not _integral(labels):
        return "regression"
    return "multiclass"


def looks_like_probabilities(logits: torch.Tensor) -> bool:
    """Whether ``(N, K)`` outputs are already probabilities (in ``[0, 1]``, rows summing to 1).

    Example:
        >>> looks_like_probabilities(torch.tensor([[0.2, 0.8]])), looks_like_probabilities(torch.tensor([[2.0, -1.0]]))
        (True, False)
    """
    values = logits.detach().float()
    if values.dim() != 2 or values.shape[1] < 2 or values.numel() == 0:
        return False
    return bool(values.min() >= 0 and values.max() <= 1 and torch.allclose(values.sum(1), torch.ones(1), atol=1e-3))


def detect(logits: torch.Tensor, labels: Optional[torch.Tensor], io: ModelIO) -> ModelIO:
    """``io`` with its ``task`` (detected unless given) and ``probabilities`` flag filled in from a probe output."""
    task = io.task or detect_task(logits, labels)
    probabilities = task == "multiclass" and looks_like_probabilities(logits)
    return dataclasses.replace(io, task=task, probabilities=probabilities)


def class_scores(logits: torch.Tensor, io: ModelIO) -> torch.Tensor:
    """The task's logits as ``(N, K)`` class scores whose softmax (multilabel: sigmoid) is what the model says.

    Multiclass probabilities become their log (softmax of it gives them back); a binary logit
    ``z`` becomes ``(-z/2, z/2)``; segmentation logits their masked sum per class over ``H * W``.
    """
    task = io.task or detect_task(logits)
    if task == "segmentation":
        if logits.dim() != 4:
            raise ValueError(f"segmentation outputs are (N, classes, H, W), got {tuple(logits.shape)}")
        mask = torch.zeros_like(logits).scatter_(1, logits.detach().argmax(1, keepdim=True), 1.0)
        return (logits * mask).flatten(2).sum(2) / (logits.shape[2] * logits.shape[3])
    if logits.dim() == 1:
        logits = logits[:, None]
    if logits.dim() != 2:
        raise ValueError(f"a {task} model's output must be (N, outputs), got {tuple(logits.shape)}; pick the logits with io=ModelIO(logits=...)")
    if task == "binary":
        z = logits[:, :1]
        return torch.cat([-z / 2, z / 2], 1)
    if task == "multiclass" and io.probabilities:
        return logits.clamp_min(1e-12).log()
    return logits


def scores(outputs: torch.Tensor, task: str) -> torch.Tensor:
    """What a :class:`TaskModel`'s outputs mean, ``(N, K)`` float32: softmax for multiclass,
    binary and segmentation, a sigmoid per label for multilabel, the values for regression.

    Example:
        >>> scores(torch.tensor([[0.0, 0.0]]), "multiclass").tolist(), scores(torch.tensor([[0.0, 0.0]]), "multilabel").tolist()
        ([[0.5, 0.5]], [[0.5, 0.5]])
    """
    outputs = outputs.float()
    if task == "multilabel":
        return outputs.sigmoid()
    if task == "regression":
        return outputs
    return outputs.softmax(1)


def labels_as_classes(labels: Optional[torch.Tensor], task: Optional[str]) -> Optional[torch.Tensor]:
    """``(N,)`` class indices from labels, when the task has them (multiclass, binary), else ``None``."""
    if labels is None or task not in (None, "multiclass", "binary"):
        return None
    labels = labels.reshape(len(labels), -1) if labels.dim() > 1 else labels
    if labels.dim() != 1 or not _integral(labels):
        return None
    return labels.long()


class TaskModel(nn.Module):
    """A model seen as ``inputs -> (N, K)`` class scores (:func:`class_scores`), sharing its modules.

    Not a copy: the submodules, parameters and buffers are the model's own (same names, same
    hooks), and ``train``/``eval`` reach the model itself too.

    Args:
        model: the user's network or LightningModule.
        io: how to call it and read its output (its ``task`` must be known, see :func:`detect`).
        convert: applied to the inputs first (e.g. a Trainer's ``precision_plugin.convert_input``,
            so that every input reaches a ``bf16-true`` or ``64-true`` model in its dtype).

    Example:
        >>> net = nn.Sequential(nn.Conv2d(1, 4, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 1))
        >>> wrapped = TaskModel(net, ModelIO(task="binary"))
        >>> wrapped(torch.zeros(2, 1, 8, 8)).shape, [name for name, _ in wrapped.named_modules()][1:3]
        (torch.Size([2, 2]), ['0', '1'])
    """

    def __init__(self, model: nn.Module, io: ModelIO, convert: Optional[Callable[[Any], Any]] = None) -> None:
        super().__init__()
        object.__setattr__(self, "inner", model)  # not a registered child: names stay the model's own
        object.__setattr__(self, "io", io)
        object.__setattr__(self, "convert", convert)
        self._modules = model._modules
        self._parameters = model._parameters
        self._buffers = model._buffers
        self.training = model.training

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        if self.convert is not None:
            inputs = self.convert(inputs)
        return class_scores(pick_logits(call_model(self.inner, inputs, self.io), self.io), self.io)

    def train(self, mode: bool = True) -> "TaskModel":
        self.inner.train(mode)
        self.training = mode
        return self

    def modules(self) -> Iterator[nn.Module]:
        """This wrapper, then the model and its submodules (so that flags are saved and restored for all)."""
        yield self
        yield from self.inner.modules()


def prepare(
    model: nn.Module, inputs: torch.Tensor, io: IO = None, labels: Optional[torch.Tensor] = None
) -> Tuple[TaskModel, ModelIO]:
    """``model`` as a :class:`TaskModel` and ``io`` with its task detected from one forward pass on ``inputs[:2]``.

    For the plain ``log_*`` functions; eval mode and no gradients inside, every flag restored after.

    Raises:
        ValueError: a bad ``io``.
        TypeError: no logits in the output (the message says how to pick them).

    Example:
        >>> net = nn.Sequential(nn.Conv2d(3, 2, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(2, 3))
        >>> wrapped, io = prepare(net, torch.zeros(4, 3, 8, 8), {"logits": 0})
        >>> io.task, wrapped(torch.zeros(1, 3, 8, 8)).shape
        ('multiclass', torch.Size([1, 3]))
    """
    io = as_io(io)
    flags = [(module, module.training) for module in model.modules()]
    try:
        model.eval()
        with torch.inference_mode(False), torch.no_grad():
            logits = pick_logits(call_model(model, inputs[:2].detach().clone(), io), io)
    finally:
        for module, flag in flags:
            module.training = flag
    resolved = detect(logits.float(), None if labels is None else labels[:2], io)
    return TaskModel(model, resolved), resolved
