"""How a view shows a model's inputs and names its outputs, by its ``ModelIO`` (see ``methods.model_io``)."""

from __future__ import annotations

from typing import Callable, Optional, Sequence

import torch

from tb_viz_plugin.methods.model_io import ModelIO


class Unnormalize:
    """Display of inputs normalised with ``mean``/``std``: ``x * std + mean`` clamped to ``[0, 1]`` as RGB.

    One channel is shown as grey, more than three as the first three. Picklable (for DDP spawn).

    Example:
        >>> Unnormalize([0.5], [0.5])(torch.zeros(1, 1, 2, 2)).shape
        torch.Size([1, 3, 2, 2])
    """

    def __init__(self, mean: Optional[Sequence[float]], std: Optional[Sequence[float]]) -> None:
        self.mean = None if mean is None else tuple(mean)
        self.std = None if std is None else tuple(std)

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        images = images.detach().float()
        channels = images.shape[1]
        mean = torch.tensor(self.mean or (0.0,) * channels).view(1, -1, 1, 1)
        std = torch.tensor(self.std or (1.0,) * channels).view(1, -1, 1, 1)
        shown = (images * std.to(images) + mean.to(images)).clamp(0, 1)
        if channels < 3:
            return shown[:, :1].expand(-1, 3, -1, -1)
        return shown[:, :3]


def display(io: ModelIO, to_rgb: Optional[Callable[[torch.Tensor], torch.Tensor]] = None) -> Optional[Callable]:
    """How a view shows inputs: ``to_rgb`` (a view's own), ``io.to_rgb``, un-normalising with ``io.mean``/``io.std``,
    else ``None`` (min-max per image)."""
    if to_rgb is not None or io.to_rgb is not None:
        return to_rgb or io.to_rgb
    if io.mean is not None or io.std is not None:
        return Unnormalize(io.mean, io.std)
    return None


def task_class_names(task: Optional[str], outputs: int, names: Optional[Sequence[str]]) -> Optional[list]:
    """Names of a task's class scores for captions: binary ``not <name>``/``<name>``, regression ``value``.

    Example:
        >>> task_class_names("binary", 2, None), task_class_names("regression", 1, None), task_class_names("multiclass", 2, ["a", "b"])
        (['negative', 'positive'], ['value'], ['a', 'b'])
    """
    if task == "binary":
        if names is not None and len(names) == 2:
            return list(names)
        positive = names[0] if names is not None and len(names) == 1 else None
        return [f"not {positive}", str(positive)] if positive else ["negative", "positive"]
    if task == "regression" and (names is None or len(names) != outputs):
        return ["value"] if outputs == 1 else [f"value {i}" for i in range(outputs)]
    return None if names is None else list(names)
