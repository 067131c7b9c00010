"""Which class each image is explained for: the predicted class, a fixed class, given indices, a callable."""

from __future__ import annotations

from typing import Callable, Sequence, Union

import torch

Targets = Union[str, int, Sequence[int], torch.Tensor, Callable[[torch.Tensor], torch.Tensor]]
"""``"predicted"`` (the argmax of the logits), a class index for every image, one index per image
(a sequence or a ``(N,)`` tensor, e.g. the true labels), or a callable ``logits (N, K) -> (N,)``."""


def check_targets(targets: Targets) -> None:
    """Check the form of ``targets`` before any forward pass (values are checked by ``resolve_targets``).

    Raises:
        ValueError: ``targets`` is none of the accepted forms.

    Example:
        >>> check_targets("predicted"); check_targets(3); check_targets([0, 2])
    """
    if isinstance(targets, str):
        if targets != "predicted":
            raise ValueError(f"targets must be 'predicted', a class index, per-image indices or a callable, got {targets!r}")
    elif isinstance(targets, bool) or (not isinstance(targets, (int, Sequence, torch.Tensor)) and not callable(targets)):
        raise ValueError(
            "targets must be 'predicted', a class index, per-image indices or a callable logits -> indices, "
            f"got {type(targets).__name__}"
        )


def describe_targets(targets: Targets) -> str:
    """A short name of how the targets are chosen (used in tags and captions).

    Example:
        >>> describe_targets("predicted"), describe_targets(3), describe_targets([1, 2])
        ('predicted', 'class_3', 'given')
    """
    if isinstance(targets, str):
        return targets
    if isinstance(targets, int):
        return f"class_{targets}"
    if callable(targets) and not isinstance(targets, torch.Tensor):
        return getattr(targets, "__name__", type(targets).__name__)
    return "given"


def resolve_targets(targets: Targets, logits: torch.Tensor) -> torch.Tensor:
    """The class index to explain for each image.

    Args:
        targets: see :data:`Targets`.
        logits: the model's output ``(N, K)`` for the images.

    Returns:
        A ``(N,)`` int64 tensor on ``logits.device``, every value in ``[0, K)``.

    Raises:
        ValueError: a wrong form, a wrong number of indices, or an index outside ``[0, K)``.

    Example:
        >>> resolve_targets("predicted", torch.tensor([[0.1, 2.0], [3.0, 0.0]])).tolist()
        [1, 0]
    """
    check_targets(targets)
    if logits.dim() != 2:
        raise ValueError(f"attributions need a classifier output of shape (N, classes), got {tuple(logits.shape)}")
    n, classes = logits.shape
    if isinstance(targets, str):
        chosen = logits.argmax(1)
    elif isinstance(targets, int):
        chosen = torch.full((n,), targets, dtype=torch.long, device=logits.device)
    elif callable(targets) and not isinstance(targets, torch.Tensor):
        chosen = torch.as_tensor(targets(logits.detach()), device=logits.device)
    else:
        chosen = torch.as_tensor(targets, device=logits.device)
    if chosen.shape != (n,) or chosen.is_floating_point() or chosen.is_complex():
        raise ValueError(f"targets must give one integer class index per image ({n}), got shape {tuple(chosen.shape)}")
    chosen = chosen.to(torch.long, copy=True)  # a normal tensor, even from inference-mode labels
    if n and (chosen.min() < 0 or chosen.max() >= classes):
        raise ValueError(f"target class indices must lie in [0, {classes}), got {chosen.tolist()}")
    return chosen
