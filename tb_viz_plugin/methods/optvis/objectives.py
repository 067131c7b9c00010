"""Objectives: what an optimised image should excite, as one score per image to maximise.

An ``Objective`` maps the captured activations to a ``(N,)`` tensor. The activations are a
mapping from module names (``"features.8"``, ``"layer4.1.conv2"``) to that module's output, plus
``INPUT`` (the image in ``[0, 1]`` before any transform) and ``OUTPUT`` (the model's output).
Objectives add, subtract and scale like numbers, so regularizers are just negative terms::

    class_logit(3) - 0.05 * total_variation()

``batched`` renders many targets in one optimisation: image ``i`` is scored by objective ``i``.
"""

from __future__ import annotations

from typing import Callable, Dict, FrozenSet, Iterable, Iterator, Mapping, Optional, Sequence, Tuple, Union

import torch

INPUT = "input"
"""Key of the image in ``[0, 1]`` (before transforms and normalisation) in the activations."""
OUTPUT = "output"
"""Key of the model's output (e.g. the logits ``(N, classes)``) in the activations."""

Activations = Mapping[str, torch.Tensor]
"""Module name (or ``INPUT`` / ``OUTPUT``) -> tensor whose first dimension is the image index."""


class Objective:
    """A score per image to maximise: ``objective(activations) -> (N,)``.

    Args:
        fn: computes the scores from the activations.
        name: shown in captions (e.g. ``"logit 3"``).
        layers: module names whose outputs ``fn`` reads (``INPUT``/``OUTPUT`` need no hook).
        batch_size: the number of images it is made for (``batched``), ``None`` = any.

    Example:
        >>> obj = class_logit(1) - 0.1 * l2()
        >>> obj.name, obj({OUTPUT: torch.tensor([[0.0, 2.0]]), INPUT: torch.ones(1, 3, 2, 2)})
        ('logit 1 - 0.1*l2', tensor([1.9750]))
    """

    def __init__(
        self,
        fn: Callable[[Activations], torch.Tensor],
        name: str,
        layers: Iterable[str] = (),
        batch_size: Optional[int] = None,
    ) -> None:
        self._fn = fn
        self.name = name
        self.layers: FrozenSet[str] = frozenset(layers) - {INPUT, OUTPUT}
        self.batch_size = batch_size

    def __call__(self, activations: Activations) -> torch.Tensor:
        return self._fn(activations)

    def __repr__(self) -> str:
        return f"Objective({self.name!r})"

    def _combine(self, other: "Objective", fn: Callable[[Activations], torch.Tensor], name: str) -> "Objective":
        if None not in (self.batch_size, other.batch_size) and self.batch_size != other.batch_size:
            raise ValueError(f"cannot combine objectives for {self.batch_size} and {other.batch_size} images")
        return Objective(fn, name, self.layers | other.layers, self.batch_size or other.batch_size)

    def _term(self) -> str:
        """The name, parenthesised when it is a sum (for products and negations)."""
        return f"({self.name})" if " " in self.name else self.name

    def __add__(self, other: Union["Objective", float]) -> "Objective":
        if isinstance(other, Objective):
            return self._combine(other, lambda acts: self(acts) + other(acts), f"{self.name} + {other.name}")
        return Objective(lambda acts: self(acts) + other, f"{self.name} + {other:g}", self.layers, self.batch_size)

    def __radd__(self, other: float) -> "Objective":
        return self if other == 0 else self + other  # 0 + obj: what sum() starts with

    def __sub__(self, other: Union["Objective", float]) -> "Objective":
        if isinstance(other, Objective):
            return self._combine(other, lambda acts: self(acts) - other(acts), f"{self.name} - {other._term()}")
        return self + (-other)

    def __mul__(self, factor: float) -> "Objective":
        if isinstance(factor, bool) or not isinstance(factor, (int, float)):
            raise TypeError(f"objectives scale by numbers only, got {type(factor).__name__}")
        return Objective(lambda acts: factor * self(acts), f"{factor:g}*{self._term()}", self.layers, self.batch_size)

    __rmul__ = __mul__

    def __neg__(self) -> "Objective":
        return Objective(lambda acts: -self(acts), f"-{self._term()}", self.layers, self.batch_size)


class _OneImage(Mapping[str, torch.Tensor]):
    """Image ``index``'s part of each activation, split only when first read.

    ``splits`` is shared by all images: one ``split`` per activation has one backward (a
    concatenation), where one slice per image would each fill and copy a full-size gradient.
    """

    def __init__(self, activations: Activations, splits: Dict[str, Tuple[torch.Tensor, ...]], index: int) -> None:
        self._activations = activations
        self._splits = splits
        self._index = index

    def __getitem__(self, key: str) -> torch.Tensor:
        if key not in self._splits:
            self._splits[key] = self._activations[key].split(1)
        return self._splits[key][self._index]

    def __iter__(self) -> Iterator[str]:
        return iter(self._activations)

    def __len__(self) -> int:
        return len(self._activations)


def _unit(activations: Activations, layer: str, unit: int) -> torch.Tensor:
    """The ``unit``-th channel of ``layer``'s output, ``(N, ...)``, with a clear error when out of range."""
    value = activations[layer]
    if value.dim() < 2 or not 0 <= unit < value.shape[1]:
        where = "the model's output" if layer == OUTPUT else f"the output of {layer!r}"
        raise IndexError(f"{where} has shape {tuple(value.shape)}; index {unit} is out of range")
    return value[:, unit]


def class_logit(index: int, name: Optional[str] = None) -> Objective:
    """The model's output ``index`` (a class logit: maximise it before the softmax, not the probability).

    Args:
        index: the class index in the output.
        name: caption (e.g. the class name); default ``"logit <index>"``.

    Example:
        >>> class_logit(2)({OUTPUT: torch.tensor([[0.0, 1.0, 5.0]])})
        tensor([5.])
    """
    return Objective(lambda acts: _unit(acts, OUTPUT, index).float(), name or f"logit {index}")


def channel(layer: str, unit: int) -> Objective:
    """The mean activation of channel ``unit`` of ``layer`` over all positions.

    Example:
        >>> channel("conv", 1)({"conv": torch.arange(8.0).view(1, 2, 2, 2)})
        tensor([5.5000])
    """
    return Objective(lambda acts: _unit(acts, layer, unit).flatten(1).float().mean(1), f"{layer}:{unit}", [layer])


def neuron(layer: str, unit: int) -> Objective:
    """The activation of channel ``unit`` of ``layer`` at the centre position (``H // 2, W // 2``).

    Example:
        >>> neuron("conv", 0)({"conv": torch.arange(9.0).view(1, 1, 3, 3)})
        tensor([4.])
    """

    def fn(acts: Activations) -> torch.Tensor:
        value = _unit(acts, layer, unit).float()
        return value[:, value.shape[1] // 2, value.shape[2] // 2] if value.dim() == 3 else value.flatten(1).mean(1)

    return Objective(fn, f"{layer}:{unit} centre", [layer])


def energy(layer: str) -> Objective:
    """Half the mean squared activation of ``layer``: its gradient is the activation itself (DeepDream).

    Example:
        >>> energy("conv")({"conv": torch.full((1, 2, 2, 2), 2.0)})
        tensor([2.])
    """
    return Objective(lambda acts: 0.5 * acts[layer].float().pow(2).flatten(1).mean(1), f"{layer} energy", [layer])


def l2(weight: float = 1.0) -> Objective:
    """``weight`` times the mean squared distance of the image from grey (L2 decay as a penalty: subtract it).

    Example:
        >>> l2()({INPUT: torch.ones(1, 3, 2, 2)})
        tensor([0.2500])
    """
    name = "l2" if weight == 1 else f"{weight:g}*l2"
    return Objective(lambda acts: weight * (acts[INPUT] - 0.5).pow(2).flatten(1).mean(1), name)


def total_variation(weight: float = 1.0) -> Objective:
    """``weight`` times the mean absolute difference of neighbouring pixels (a penalty: subtract it).

    Example:
        >>> total_variation()({INPUT: torch.tensor([[[[0.0, 1.0], [0.0, 1.0]]]])})
        tensor([0.5000])
    """

    def fn(acts: Activations) -> torch.Tensor:
        image = acts[INPUT]
        dy = (image[..., 1:, :] - image[..., :-1, :]).abs().flatten(1).mean(1)
        dx = (image[..., :, 1:] - image[..., :, :-1]).abs().flatten(1).mean(1)
        return weight * (dx + dy) / 2

    return Objective(fn, "tv" if weight == 1 else f"{weight:g}*tv")


def batched(objectives: Sequence[Objective]) -> Objective:
    """One objective per image: image ``i`` is scored by ``objectives[i]`` (N targets, one optimisation).

    Args:
        objectives: one per image, in image order.

    Returns:
        An objective for exactly ``len(objectives)`` images (its ``batch_size``).

    Raises:
        ValueError: no objectives.

    Example:
        >>> obj = batched([class_logit(0), class_logit(1)])
        >>> obj({OUTPUT: torch.tensor([[1.0, 2.0], [3.0, 4.0]])})
        tensor([1., 4.])
    """
    objectives = list(objectives)
    if not objectives:
        raise ValueError("batched() needs at least one objective")

    def fn(acts: Activations) -> torch.Tensor:
        splits: Dict[str, Tuple[torch.Tensor, ...]] = {}
        return torch.cat([objective(_OneImage(acts, splits, i)) for i, objective in enumerate(objectives)])

    return Objective(
        fn,
        "[" + ", ".join(o.name for o in objectives) + "]",
        frozenset().union(*(o.layers for o in objectives)),
        batch_size=len(objectives),
    )
