"""Forward hooks on named layers: the one way every method captures what a layer computes.

:class:`LayerHooks` hands each forward call's output of a named layer (or its first positional
input) to a function, or keeps the last one of each layer in ``tensors``; ``remove()`` (also on
leaving its ``with`` block, and when registering fails half-way) takes every hook off again.
:func:`layer_outputs` runs a forward pass only as far as the last layer it needs. Activations,
top-k, attributions, embeddings and optimisation objectives all capture through these two.
"""

from __future__ import annotations

import functools
from typing import Any, Callable, Dict, List, Optional, Sequence

import torch
from torch import nn
from torch.utils.hooks import RemovableHandle

CAPTURES = ("output", "input")
"""What a hook hands on: the layer's ``output``, or the first positional ``input`` it receives."""


class StopForward(Exception):
    """Raised by a hook function to end a forward pass once it has what it needs (see :func:`layer_outputs`)."""


def check_feature_maps(name: str, value: Any, what: str = "output") -> torch.Tensor:
    """``value`` when it is an ``(N, C, H, W)`` tensor.

    Raises:
        ValueError: anything else, naming the layer and what to choose instead.

    Example:
        >>> check_feature_maps("fc", torch.zeros(2, 3))
        Traceback (most recent call last):
        ...
        ValueError: the output of layer 'fc' is (2, 3), not a feature map: views of layer outputs need (N, C, H, W) feature maps, so choose a convolution, activation or pooling layer (or a block ending in one)
    """
    if not isinstance(value, torch.Tensor) or value.dim() != 4:
        got = tuple(value.shape) if isinstance(value, torch.Tensor) else type(value).__name__
        raise ValueError(
            f"the {what} of layer {name!r} is {got}, not a feature map: views of layer outputs need (N, C, H, W) "
            "feature maps, so choose a convolution, activation or pooling layer (or a block ending in one)"
        )
    return value


class LayerHooks:
    """Forward hooks on named layers of ``model``; all removed by :meth:`remove` or on leaving ``with``.

    Args:
        model: the network.
        layers: submodule names (``model.get_submodule`` names; ``""`` is the model itself).
        fn: called as ``fn(name, value)`` at every forward call of each layer; ``None`` keeps the
            last value of each layer in :attr:`tensors` instead.
        capture: ``"output"`` (a forward hook) or ``"input"`` (a forward pre-hook on the first
            positional input).
        feature_maps: check that every value is an ``(N, C, H, W)`` tensor (``ValueError`` otherwise).
        clone: hand the rest of the forward pass a clone of each captured output, so that in-place
            operations running later (``nn.ReLU(inplace=True)``, ``out += identity``) cannot change
            the value captured, and gradients taken with respect to it are those of the layer.

    Values are passed as produced (not detached); without ``clone`` the hooks change nothing.

    Raises:
        ValueError: an unknown ``capture``; during a forward pass, a value that is not a feature map
            when ``feature_maps`` is set.

    Example:
        >>> net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(inplace=True))
        >>> with LayerHooks(net, ["0"], clone=True) as hooks:
        ...     _ = net(torch.randn(2, 3, 8, 8))
        >>> hooks.tensors["0"].shape, bool((hooks.tensors["0"] < 0).any()), len(net[0]._forward_hooks)
        (torch.Size([2, 4, 6, 6]), True, 0)
    """

    def __init__(
        self,
        model: nn.Module,
        layers: Sequence[str],
        fn: Optional[Callable[[str, Any], None]] = None,
        *,
        capture: str = "output",
        feature_maps: bool = False,
        clone: bool = False,
    ) -> None:
        if capture not in CAPTURES:
            raise ValueError(f"capture must be one of {CAPTURES}, got {capture!r}")
        self.tensors: Dict[str, Any] = {}
        self._fn = fn if fn is not None else self.tensors.__setitem__
        self._capture = capture
        self._feature_maps = feature_maps
        self._clone = clone
        self._handles: List[RemovableHandle] = []
        try:
            for name in layers:
                module = model.get_submodule(name)
                if capture == "output":
                    self._handles.append(module.register_forward_hook(functools.partial(self._on_output, name)))
                else:
                    self._handles.append(module.register_forward_pre_hook(functools.partial(self._on_input, name)))
        except BaseException:
            self.remove()
            raise

    def _take(self, name: str, value: Any) -> None:
        if self._feature_maps:
            check_feature_maps(name, value, self._capture)
        self._fn(name, value)

    def _on_output(self, name: str, module: nn.Module, args: Any, output: Any) -> Any:
        self._take(name, output)
        return output.clone() if self._clone and isinstance(output, torch.Tensor) else None

    def _on_input(self, name: str, module: nn.Module, args: Any) -> None:
        self._take(name, args[0] if args else None)

    def remove(self) -> None:
        """Remove every hook (idempotent); :attr:`tensors` stays readable."""
        for handle in self._handles:
            handle.remove()
        self._handles.clear()

    def __enter__(self) -> "LayerHooks":
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.remove()


def layer_outputs(
    model: nn.Module, images: torch.Tensor, layers: Sequence[str], *, feature_maps: bool = True
) -> Dict[str, torch.Tensor]:
    """Outputs (not detached) of ``layers`` for ``model(images)``, first call of each; the pass stops after the last.

    Runs in the caller's grad mode and module modes.

    Raises:
        ValueError: with ``feature_maps``, a layer whose output is not ``(N, C, H, W)``.
        RuntimeError: a layer that the forward pass never calls.

    Example:
        >>> class Boom(nn.Module):
        ...     def forward(self, x):
        ...         raise AssertionError("never reached")
        >>> net = nn.Sequential(nn.Conv2d(3, 4, 3), Boom())
        >>> {k: tuple(v.shape) for k, v in layer_outputs(net, torch.zeros(1, 3, 8, 8), ["0"]).items()}
        {'0': (1, 4, 6, 6)}
    """
    wanted = list(dict.fromkeys(layers))
    captured: Dict[str, torch.Tensor] = {}

    def keep(name: str, output: torch.Tensor) -> None:
        captured.setdefault(name, output)
        if len(captured) == len(wanted):
            raise StopForward

    with LayerHooks(model, wanted, keep, feature_maps=feature_maps):
        try:
            model(images)
        except StopForward:
            pass
    missing = [name for name in wanted if name not in captured]
    if missing:
        raise RuntimeError(f"the forward pass of {type(model).__name__} never called the layers {missing}")
    return {name: captured[name] for name in wanted}
