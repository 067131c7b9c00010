"""What attribution methods need from a forward pass besides layer tensors: module calls and ReLU gradients.

Layer tensors are captured by :class:`~tb_viz_plugin.methods.hooks.LayerHooks`, module calls are
traced through it too (:func:`trace_modules`); :class:`GuidedReLU` changes the backward pass of
ReLU calls while its context is active. No hook outlives the computation that needed it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, List, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import nn
from torch.overrides import TorchFunctionMode

from tb_viz_plugin.methods.hooks import LayerHooks

_RELUS = frozenset({F.relu, F.relu_, torch.relu, torch.relu_, torch.Tensor.relu, torch.Tensor.relu_})


class GuidedReLU(TorchFunctionMode):
    """Guided backpropagation through every ReLU of a forward pass run inside this context.

    Catches ReLU *calls* rather than modules, so ``nn.ReLU`` (``inplace=True`` included, as in
    torchvision models) and functional ``F.relu`` / ``torch.relu`` / ``x.relu()`` are all guided.
    Each ReLU output gets a gradient hook; while ``enabled`` is True the hook keeps only the
    positive part of the incoming gradient (the ReLU's own backward then masks negative inputs),
    otherwise gradients pass unchanged. So one forward serves plain and guided backward passes.
    Other activations (``ReLU6``, ``LeakyReLU``, ``GELU``) are not changed.

    Example:
        >>> net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(inplace=True), nn.Flatten(), nn.Linear(144, 2))
        >>> x = torch.randn(1, 3, 8, 8, requires_grad=True)
        >>> with GuidedReLU() as guide:
        ...     score = net(x)[0, 0]
        >>> guide.relu_calls
        1
        >>> guide.enabled = True
        >>> torch.autograd.grad(score, x)[0].shape
        torch.Size([1, 3, 8, 8])
    """

    def __init__(self) -> None:
        super().__init__()
        self.enabled = False
        self.relu_calls = 0

    def __torch_function__(self, func: Any, types: Any, args: Tuple[Any, ...] = (), kwargs: Optional[dict] = None) -> Any:
        output = func(*args, **(kwargs or {}))
        if func in _RELUS and isinstance(output, torch.Tensor) and output.requires_grad:
            output.register_hook(self._guide)
            self.relu_calls += 1
        return output

    def _guide(self, grad: torch.Tensor) -> Optional[torch.Tensor]:
        return grad.clamp_min(0) if self.enabled else None


def is_leaf(module: nn.Module) -> bool:
    """True for a module without children (a layer rather than a container)."""
    return next(module.children(), None) is None


@dataclass(frozen=True)
class ModuleCall:
    """One module call of a traced forward pass (its output as the module returned it)."""

    name: str
    module: nn.Module
    output: Any


def trace_modules(model: nn.Module, images: torch.Tensor) -> Tuple[List[ModuleCall], Any]:
    """Run ``model(images)`` without gradients and record every module call in completion order.

    A container completes after its children, so the list reads like the forward pass from the
    inputs to the output. Used on one image to find the default layer and the CAM head.

    Returns:
        ``(calls, output)``.

    Example:
        >>> net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU())
        >>> calls, out = trace_modules(net, torch.randn(1, 3, 8, 8))
        >>> [c.name for c in calls], out.shape
        (['0', '1', ''], torch.Size([1, 4, 6, 6]))
    """
    modules = dict(model.named_modules())
    calls: List[ModuleCall] = []

    def record(name: str, output: Any) -> None:
        calls.append(ModuleCall(name, modules[name], output))

    with LayerHooks(model, list(modules), record), torch.no_grad():
        output = model(images)
    return calls, output
