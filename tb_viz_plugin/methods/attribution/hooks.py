"""What a forward pass computes, captured without changing it: layer tensors, module calls, ReLU gradients.

Every hook lives in an object with ``release()`` (also called on leaving its ``with`` block), so no
hook outlives the computation that needed it.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import nn
from torch.overrides import TorchFunctionMode
from torch.utils.hooks import RemovableHandle


class LayerCapture:
    """Keeps the output (or the input) of named modules during forward passes.

    The rest of the forward pass receives a clone of a captured output, so in-place operations
    that run later (``nn.ReLU(inplace=True)``, ``out += identity``) modify the clone and not the
    tensor kept here: activations and the gradients taken with respect to them are those of the
    layer itself. A module called several times keeps its last call.

    Args:
        model: the network.
        names: module names as in ``model.named_modules()``.
        capture: ``"output"`` (a forward hook; gradients can be taken with respect to it) or
            ``"input"`` (a forward pre-hook on the first positional input, detached).

    Raises:
        ValueError: (during the forward) a captured tensor is not 4-D ``(N, C, H, W)``.

    Example:
        >>> net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(inplace=True))
        >>> with LayerCapture(net, ["0"]) as capture:
        ...     _ = net(torch.randn(2, 3, 8, 8))
        >>> capture.tensors["0"].shape, bool((capture.tensors["0"] < 0).any())
        (torch.Size([2, 4, 6, 6]), True)
    """

    def __init__(self, model: nn.Module, names: Sequence[str], capture: str = "output") -> None:
        if capture not in ("output", "input"):
            raise ValueError(f"capture must be 'output' or 'input', got {capture!r}")
        self.tensors: Dict[str, torch.Tensor] = {}
        self._handles: List[RemovableHandle] = []
        for name in names:
            module = model.get_submodule(name)
            if capture == "output":
                self._handles.append(module.register_forward_hook(functools.partial(self._keep_output, name)))
            else:
                self._handles.append(module.register_forward_pre_hook(functools.partial(self._keep_input, name)))

    @staticmethod
    def _check(name: str, tensor: Any, what: str) -> torch.Tensor:
        if not isinstance(tensor, torch.Tensor) or tensor.dim() != 4:
            shape = tuple(tensor.shape) if isinstance(tensor, torch.Tensor) else type(tensor).__name__
            raise ValueError(
                f"the {what} of layer {name!r} is {shape}, not a feature map (N, C, H, W); "
                "choose a convolutional layer or block (the default is the last one before pooling)"
            )
        return tensor

    def _keep_output(self, name: str, module: nn.Module, inputs: Tuple[Any, ...], output: Any) -> torch.Tensor:
        self.tensors[name] = self._check(name, output, "output")
        return output.clone()  # what the rest of the forward pass sees (and may modify in place)

    def _keep_input(self, name: str, module: nn.Module, inputs: Tuple[Any, ...]) -> None:
        self.tensors[name] = self._check(name, inputs[0] if inputs else None, "input").detach().clone()

    def release(self) -> None:
        """Remove every hook (idempotent); the captured tensors stay readable."""
        for handle in self._handles:
            handle.remove()
        self._handles.clear()

    def __enter__(self) -> "LayerCapture":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.release()


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
    """One module call of a traced forward pass (inputs and output as the module saw them)."""

    name: str
    module: nn.Module
    inputs: Tuple[Any, ...]
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
    calls: List[ModuleCall] = []

    def record(name: str, module: nn.Module, inputs: Tuple[Any, ...], output: Any) -> None:
        calls.append(ModuleCall(name, module, inputs, output))

    handles = [module.register_forward_hook(functools.partial(record, name)) for name, module in model.named_modules()]
    try:
        with torch.no_grad():
            output = model(images)
    finally:
        for handle in handles:
            handle.remove()
    return calls, output
