"""Excitation backprop and its contrastive variant c-MWP (Zhang et al. 2016 / IJCV 2018), pure torch.

A top-down signal ``P`` starts as a one-hot at the target logit and is passed down as a
probabilistic winner-take-all: through a linear layer ``y = W x + b`` it goes to the inputs in
proportion to their positive contributions, ``P(x) = x * W+^T (P(y) / (W+ x))`` with
``W+ = max(W, 0)`` and the bias ignored; the map at a layer is that signal summed over channels.
The rules are recorded by :class:`ExcitationRules`, a ``TorchFunctionMode`` scoped to one forward
pass that wraps each rule-bearing call in an ``autograd.Function`` (the user's modules, weights
and ReLU flags are never touched, other models in the process are not affected):

- convolutions and ``F.linear``: the rule above (inputs clamped at 0: the probabilistic reading
  needs non-negative activations, which ReLU networks have everywhere but at the image);
- average pooling (fixed, adaptive, ``Tensor.mean``): the same rule with the pooling's positive weights;
- batch norm: the signal passes unchanged; the sign of its scale is folded into the linear layer
  that feeds it (a channel with a negative scale is excited through that layer's negative
  weights, as in the network with batch norm folded into the convolution); a batch norm fed by
  anything else passes the signal only where its scale is positive;
- residual sums ``a + b`` of two activations (also ``+=``): the signal is split in proportion to
  each branch's share of the sum, ``P(a) = a / (a + b) * P``, TorchRay's ``update_resnet`` rule;
- everything else keeps its ordinary backward: ReLU and max pooling pass the signal to their
  active inputs / the argmax, as the method prescribes; reshapes, dropout (eval) and
  concatenation route it unchanged; other activations (SiLU, GELU) scale it by their derivative.

c-MWP subtracts the map of the "dual" (the classifier's weights negated) from the target's and
keeps the positive part. Every rule is linear in the signal, so subtracting at an intermediate
contrast layer (as TorchRay does) equals subtracting at the classifier's input: one backward pass
computes the contrastive signal, whatever contrast layer one would name.
"""

from __future__ import annotations

import contextlib
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import nn
from torch.overrides import TorchFunctionMode

from tb_viz_plugin.methods.attribution.cams import upsample
from tb_viz_plugin.methods.hooks import LayerHooks
from tb_viz_plugin.methods.attribution.targets import Targets

EXCITATION_METHODS = ("excitation_backprop", "contrastive_excitation_backprop")
"""The method names served by :func:`excitation_maps`."""

_WEIGHTED = frozenset({torch.conv1d, torch.conv2d, torch.conv3d, F.linear})
_POOLS = frozenset({
    F.avg_pool1d, F.avg_pool2d, F.avg_pool3d, F.adaptive_avg_pool1d, F.adaptive_avg_pool2d, F.adaptive_avg_pool3d,
    torch._C._nn.adaptive_avg_pool2d, torch._C._nn.adaptive_avg_pool3d, torch.mean, torch.Tensor.mean,
})  # fmt: skip
_SUMS = frozenset({torch.add, torch.Tensor.add, torch.Tensor.__add__, torch.Tensor.__radd__})
_INPLACE_SUMS = frozenset({torch.Tensor.add_, torch.Tensor.__iadd__})
_LOW_PRECISION = (torch.float16, torch.bfloat16)


def _excite(op: Callable[..., torch.Tensor], x: torch.Tensor, weight: Optional[torch.Tensor], signal: torch.Tensor) -> torch.Tensor:
    """``x+ * J^T (signal / op(x+))`` for a linear ``op`` with non-negative weights (``J`` its Jacobian)."""
    dtype = torch.float32 if x.dtype in _LOW_PRECISION else x.dtype
    with torch.enable_grad(), torch.autocast(x.device.type, enabled=False):  # the caller's autocast may be on
        positive = x.detach().to(dtype).clamp_min(0).requires_grad_(True)
        args = (positive,) if weight is None else (positive, weight.detach().to(dtype))
        total = op(*args)
        total_ = total.detach()
        ratio = torch.where(total_ > 0, signal.to(dtype) / total_, torch.zeros((), dtype=dtype, device=total_.device))
        (back,) = torch.autograd.grad(total, positive, ratio)
    return (positive.detach() * back).to(x.dtype)


class _LinearRule(torch.autograd.Function):
    """A convolution, linear layer or average pooling whose backward applies the excitation rule."""

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: Any, rules: "ExcitationRules", op: Callable[..., torch.Tensor], x: torch.Tensor,
        weight: Optional[torch.Tensor], bias: Optional[torch.Tensor],
    ) -> torch.Tensor:  # fmt: skip
        ctx.rules, ctx.op, ctx.index = rules, op, rules.weighted_calls if weight is not None else None
        ctx.excitation_weighted = weight is not None
        ctx.out_channels = weight.shape[0] if weight is not None else 0
        ctx.channel_sign = None  # set by a batch norm that this layer feeds
        ctx.save_for_backward(x, weight)
        if weight is None:
            return op(x)
        rules.weighted_calls += 1
        return op(x, weight, bias)

    @staticmethod
    def backward(ctx: Any, signal: torch.Tensor) -> Tuple[Optional[torch.Tensor], ...]:  # type: ignore[override]
        x, weight = ctx.saved_tensors
        if weight is None:
            return None, None, _excite(ctx.op, x, None, signal), None, None
        if ctx.channel_sign is not None:
            weight = weight * ctx.channel_sign.view(-1, *([1] * (weight.dim() - 1)))

        def linear(v: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
            return ctx.op(v, w, None)

        passed = _excite(linear, x, weight.clamp_min(0), signal)
        if ctx.rules.contrastive and ctx.index == ctx.rules.weighted_calls - 1:  # the classifier: minus the dual
            passed = passed - _excite(linear, x, (-weight).clamp_min(0), signal)
        return None, None, passed, None, None


class _NormRule(torch.autograd.Function):
    """A batch norm passing the signal unchanged (``gate`` None) or only where its scale is positive."""

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: Any, op: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, gate: Optional[torch.Tensor]
    ) -> torch.Tensor:
        ctx.gate = gate
        return op(x)

    @staticmethod
    def backward(ctx: Any, signal: torch.Tensor) -> Tuple[Optional[torch.Tensor], ...]:  # type: ignore[override]
        passed = signal if ctx.gate is None else signal * ctx.gate.view(1, -1, *([1] * (signal.dim() - 2))).to(signal.dtype)
        return None, passed, None


def _shares(a: torch.Tensor, b: torch.Tensor, total: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    nonzero = total != 0
    safe = torch.where(nonzero, total, torch.ones_like(total))
    return torch.where(nonzero, a / safe, 0), torch.where(nonzero, b / safe, 0)


class _SumRule(torch.autograd.Function):
    """``a + b`` splitting the signal in proportion to each branch's share of the sum."""

    @staticmethod
    def forward(ctx: Any, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        total = a + b
        ctx.save_for_backward(*_shares(a, b, total))
        return total

    @staticmethod
    def backward(ctx: Any, signal: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:  # type: ignore[override]
        share_a, share_b = ctx.saved_tensors
        return signal * share_a, signal * share_b


class _InplaceSumRule(torch.autograd.Function):
    """``a += b`` (as ``out += identity`` in torchvision's ResNet blocks) with the rule of :class:`_SumRule`."""

    @staticmethod
    def forward(ctx: Any, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        ctx.save_for_backward(*_shares(a, b, a + b))
        a.add_(b)
        ctx.mark_dirty(a)
        return a

    backward = staticmethod(_SumRule.backward)


def _producer(tensor: torch.Tensor) -> Any:
    """The :class:`_LinearRule` node of a convolution / linear layer that computed ``tensor`` (through clones)."""
    node = tensor.grad_fn
    while node is not None and type(node).__name__ == "CloneBackward0":  # a cloning LayerHooks in between
        node = node.next_functions[0][0]
    return node if getattr(node, "excitation_weighted", False) else None


def _split(args: Tuple[Any, ...], kwargs: Dict[str, Any], names: Sequence[str]) -> Tuple[List[Any], Tuple[Any, ...], Dict[str, Any]]:
    """The leading arguments ``names`` (positional or by keyword; None when absent), the other args, the other kwargs."""
    rest = dict(kwargs)
    leading = [args[i] if i < len(args) else rest.pop(name, None) for i, name in enumerate(names)]
    return leading, tuple(args[len(names):]), rest


def _differentiable(tensor: Any) -> bool:
    return isinstance(tensor, torch.Tensor) and tensor.is_floating_point() and tensor.requires_grad


class ExcitationRules(TorchFunctionMode):
    """Excitation-backprop rules for the backward of every forward pass run inside this context.

    The forward values are unchanged; a backward (``torch.autograd.grad`` from the logits with a
    one-hot ``grad_outputs``) then gives the top-down excitation signal instead of the gradient.
    Set ``contrastive = True`` before a backward to get the contrastive signal (target minus dual at
    the classifier, the last convolution / linear layer of the pass); one forward serves both.

    Attributes:
        contrastive: whether the next backward subtracts the dual's signal at the classifier.
        weighted_calls: convolutions and linear layers recorded so far.

    Example:
        >>> _ = torch.manual_seed(0)
        >>> net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 2))
        >>> x = torch.rand(1, 3, 8, 8, requires_grad=True)
        >>> with ExcitationRules() as rules:
        ...     features = net[1](net[0](x))
        ...     logits = net[4](net[3](net[2](features)))
        >>> (signal,) = torch.autograd.grad(logits, features, torch.tensor([[1.0, 0.0]]))
        >>> rules.weighted_calls, round(signal.sum().item(), 4)  # the signal is conserved
        (2, 1.0)
    """

    def __init__(self) -> None:
        super().__init__()
        self.contrastive = False
        self.weighted_calls = 0

    def __torch_function__(self, func: Any, types: Any, args: Tuple[Any, ...] = (), kwargs: Optional[dict] = None) -> Any:
        kwargs = kwargs or {}
        if func in _WEIGHTED:
            (x, weight, bias), rest, extra = _split(args, kwargs, ("input", "weight", "bias"))
            if _differentiable(x) and isinstance(weight, torch.Tensor):
                return _LinearRule.apply(self, lambda v, w, b: func(v, w, b, *rest, **extra), x, weight, bias)
        elif func in _POOLS:
            (x,), rest, extra = _split(args, kwargs, ("input",))
            if _differentiable(x):
                return _LinearRule.apply(self, lambda v: func(v, *rest, **extra), x, None, None)
        elif func is F.batch_norm:
            return self._batch_norm(args, kwargs)
        elif func in _SUMS or func in _INPLACE_SUMS:
            a, b = (args + (None, None))[:2]
            if (
                len(args) == 2 and not kwargs and _differentiable(a) and _differentiable(b)
                and a.grad_fn is not None and b.grad_fn is not None and a.shape == b.shape and a.dtype == b.dtype
            ):  # fmt: skip
                return (_InplaceSumRule if func in _INPLACE_SUMS else _SumRule).apply(a, b)
        return func(*args, **kwargs)

    def _batch_norm(self, args: Tuple[Any, ...], kwargs: Dict[str, Any]) -> Any:
        (x, _, _, weight), _, _ = _split(args, kwargs, ("input", "running_mean", "running_var", "weight"))
        if not _differentiable(x):
            return F.batch_norm(*args, **kwargs)
        _, rest, extra = _split(args, kwargs, ("input",))
        gate = None
        if weight is not None:
            sign = torch.sign(weight.detach())
            producer = _producer(x)
            if producer is not None and producer.out_channels == sign.numel():
                if not bool((sign > 0).all()):  # fold the scale's sign into the layer below (a no-op when positive)
                    producer.channel_sign = sign
            else:
                gate = sign > 0
        return _NormRule.apply(lambda v: F.batch_norm(v, *rest, **extra), x, gate)


def excitation_signals(
    model: nn.Module, images: torch.Tensor, targets: torch.Tensor, layers: Sequence[str], methods: Sequence[str]
) -> Dict[Tuple[str, str], torch.Tensor]:
    """The excitation signals of ``layers`` summed over channels, at each layer's resolution, signed.

    One forward pass inside :class:`ExcitationRules` and one backward per method, all layers at
    once. The signal of excitation backprop sums to 1 per image at any layer that every path from
    the input to the logits crosses (the rules conserve it); the contrastive one sums to 0.

    Args:
        model: the network (callers set eval mode and enable gradients).
        images: ``(N, C, H, W)``.
        targets: ``(N,)`` class indices.
        layers: module names whose outputs are feature maps ``(N, K, h, w)``.
        methods: names from :data:`EXCITATION_METHODS`.

    Returns:
        ``{(method, layer): (N, h, w)}`` float32.

    Raises:
        ValueError: the output is not ``(N, classes)``, the forward ran no convolution or linear
            layer, a layer did not run or the logits do not depend on it.

    Example:
        >>> _ = torch.manual_seed(0)  # a net whose classes both see positive evidence
        >>> net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 2))
        >>> signals = excitation_signals(net, torch.rand(2, 3, 8, 8), torch.tensor([0, 1]), ["1"], ["excitation_backprop"])
        >>> signals["excitation_backprop", "1"].sum((1, 2)).round(decimals=4).tolist()
        [1.0, 1.0]
    """
    unknown = [m for m in methods if m not in EXCITATION_METHODS]
    if unknown:
        raise ValueError(f"unknown excitation method(s) {unknown}; valid: {', '.join(EXCITATION_METHODS)}")
    with contextlib.ExitStack() as stack:
        capture = stack.enter_context(LayerHooks(model, layers, feature_maps=True, clone=True))
        rules = stack.enter_context(ExcitationRules())
        stack.enter_context(torch.autocast(images.device.type, enabled=False))
        x = images.detach().requires_grad_(True)
        logits = model(x)
    if not isinstance(logits, torch.Tensor) or logits.dim() != 2:
        shape = tuple(logits.shape) if isinstance(logits, torch.Tensor) else type(logits).__name__
        raise ValueError(f"excitation backprop needs a classifier output of shape (N, classes), got {shape}")
    if not rules.weighted_calls:
        raise ValueError(f"the forward pass of {type(model).__name__} ran no convolution or linear layer to excite through")
    missing = [name for name in layers if name not in capture.tensors]
    if missing:
        raise ValueError(f"layer(s) {missing} did not run during the forward pass of {type(model).__name__}")
    top = torch.zeros_like(logits).scatter_(1, targets[:, None], 1.0)
    wrt = [capture.tensors[name] for name in layers]
    signals: Dict[Tuple[str, str], torch.Tensor] = {}
    for position, method in enumerate(methods):
        rules.contrastive = method == "contrastive_excitation_backprop"
        grads = torch.autograd.grad(logits, wrt, top, retain_graph=position < len(methods) - 1, allow_unused=True)
        unused = [name for name, grad in zip(layers, grads) if grad is None]
        if unused:
            raise ValueError(f"the class scores do not depend on layer(s) {unused}")
        signals.update({(method, name): grad.detach().float().sum(1) for name, grad in zip(layers, grads)})
    return signals


def excitation_maps(
    model: nn.Module, images: torch.Tensor, targets: torch.Tensor, layers: Sequence[str], methods: Sequence[str]
) -> Dict[Tuple[str, str], torch.Tensor]:
    """Excitation-backprop and c-MWP maps at the input's resolution (see :func:`excitation_signals`).

    Excitation backprop's map is the channel sum of the signal; c-MWP's is its positive part (as
    TorchRay's). Both are upsampled bilinearly, as the CAM maps are.

    Returns:
        ``{(method, layer): (N, H, W)}`` float32.

    Example:
        >>> net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 2))
        >>> maps = excitation_maps(net, torch.rand(2, 3, 8, 8), torch.tensor([0, 1]), ["1"], EXCITATION_METHODS)
        >>> maps["contrastive_excitation_backprop", "1"].shape, bool(maps["contrastive_excitation_backprop", "1"].min() >= 0)
        (torch.Size([2, 8, 8]), True)
    """
    size = (images.shape[-2], images.shape[-1])
    signals = excitation_signals(model, images, targets, layers, methods)
    return {
        key: upsample(signal.clamp_min(0) if key[0] == "contrastive_excitation_backprop" else signal, size)
        for key, signal in signals.items()
    }


def excitation_backprop(
    model: nn.Module, images: torch.Tensor, targets: Targets = "predicted", layer: Optional[str] = None
) -> torch.Tensor:
    """Excitation backprop (marginal winning probability) at ``layer`` (default: the Grad-CAM layer).

    Returns:
        ``(N, H, W)`` float32, bilinearly upsampled to the input size.

    Raises:
        LayerNotFoundError: an unknown layer name.
        ValueError: see :func:`excitation_signals`.

    Example:
        >>> import torchvision  # doctest: +SKIP
        >>> excitation_backprop(torchvision.models.vgg11(), torch.rand(2, 3, 64, 64), layer="features.10").shape  # doctest: +SKIP
        torch.Size([2, 64, 64])
    """
    from tb_viz_plugin.methods.attribution.core import attribute  # core imports this module

    return attribute(model, images, "excitation_backprop", targets, layer).maps[0].values


def contrastive_excitation_backprop(
    model: nn.Module, images: torch.Tensor, targets: Targets = "predicted", layer: Optional[str] = None
) -> torch.Tensor:
    """c-MWP (contrastive excitation backprop) at ``layer``; arguments and result as :func:`excitation_backprop`.

    Non-negative: the positive part of the target's map minus the dual's.

    Example:
        >>> import torchvision  # doctest: +SKIP
        >>> net = torchvision.models.resnet18()  # doctest: +SKIP
        >>> contrastive_excitation_backprop(net, torch.rand(1, 3, 64, 64), layer="layer3").shape  # doctest: +SKIP
        torch.Size([1, 64, 64])
    """
    from tb_viz_plugin.methods.attribution.core import attribute  # core imports this module

    return attribute(model, images, "contrastive_excitation_backprop", targets, layer).maps[0].values
