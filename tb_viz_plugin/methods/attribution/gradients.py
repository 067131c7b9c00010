"""Gradients with respect to the input: saliency, SmoothGrad, integrated gradients, guided backprop.

The single-pass methods (saliency, guided backprop) are computed by the shared pass of
:func:`~tb_viz_plugin.methods.attribution.core.attribute`; this module holds the reduction they
share and the multi-pass methods. Targets here are already resolved class indices ``(N,)``.
"""

from __future__ import annotations

from typing import Union

import numpy as np
import torch
from torch import nn


def max_abs_over_channels(gradients: torch.Tensor) -> torch.Tensor:
    """``(N, C, H, W)`` input gradients to ``(N, H, W)`` maps: the largest ``|gradient|`` over channels.

    The reduction of Simonyan et al. (2014) for saliency maps.

    Example:
        >>> max_abs_over_channels(torch.tensor([[[[-3.0]], [[2.0]]]]))
        tensor([[[3.]]])
    """
    return gradients.detach().float().abs().amax(1)


def input_gradients(model: nn.Module, inputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """The gradient of each image's target logit with respect to the image, ``(N, C, H, W)``.

    Uses ``torch.autograd.grad`` (parameter ``.grad`` is never written). Call with gradients enabled.

    Example:
        >>> net = nn.Sequential(nn.Flatten(), nn.Linear(12, 3))
        >>> input_gradients(net, torch.randn(2, 3, 2, 2), torch.tensor([0, 2])).shape
        torch.Size([2, 3, 2, 2])
    """
    inputs = inputs.detach().requires_grad_(True)
    logits = model(inputs)
    (grad,) = torch.autograd.grad(logits.gather(1, targets[:, None]).sum(), inputs)
    return grad


def smooth_grad_maps(
    model: nn.Module,
    images: torch.Tensor,
    targets: torch.Tensor,
    *,
    samples: int = 16,
    noise: float = 0.15,
    seed: int = 0,
) -> torch.Tensor:
    """SmoothGrad (Smilkov et al. 2017): saliency averaged over noisy copies of each image.

    Args:
        model: the network, in the mode it should be explained in (callers set eval mode).
        images: ``(N, C, H, W)``.
        targets: ``(N,)`` class indices.
        samples: noisy copies per image (one forward+backward of the batch each).
        noise: noise standard deviation as a fraction of each image's value range (max - min).
        seed: seed of this function's own ``torch.Generator`` (the global RNG is never used).

    Returns:
        ``(N, H, W)`` float32: the mean ``|gradient|`` over samples, maximum over channels.

    Raises:
        ValueError: ``samples < 1`` or ``noise < 0``.

    Example:
        >>> net = nn.Sequential(nn.Conv2d(3, 2, 3), nn.ReLU(), nn.Flatten(), nn.Linear(72, 3))
        >>> smooth_grad_maps(net, torch.randn(2, 3, 8, 8), torch.tensor([0, 1]), samples=4).shape
        torch.Size([2, 8, 8])
    """
    if samples < 1 or noise < 0:
        raise ValueError(f"smooth_grad needs samples >= 1 and noise >= 0, got samples={samples}, noise={noise}")
    generator = torch.Generator(device=images.device).manual_seed(int(seed))
    flat = images.detach().flatten(1)
    sigma = (noise * (flat.amax(1) - flat.amin(1))).view(-1, 1, 1, 1)
    total = torch.zeros(images.shape, dtype=torch.float32, device=images.device)
    for _ in range(samples):
        jitter = torch.randn(images.shape, generator=generator, device=images.device, dtype=images.dtype)
        total += input_gradients(model, images + sigma * jitter, targets).float().abs()
    return (total / samples).amax(1)


def integrated_gradients_maps(
    model: nn.Module,
    images: torch.Tensor,
    targets: torch.Tensor,
    *,
    steps: int = 32,
    baseline: Union[float, torch.Tensor] = 0.0,
) -> torch.Tensor:
    """Integrated gradients (Sundararajan et al. 2017), Gauss-Legendre quadrature along the straight path.

    ``(x - b) * integral_0^1 d score(b + a (x - b)) / dx da``, summed over channels. With enough
    steps the map sums to ``score(x) - score(b)`` (completeness).

    Args:
        model: the network (callers set eval mode).
        images: ``(N, C, H, W)``.
        targets: ``(N,)`` class indices.
        steps: quadrature points (one forward+backward of the batch each).
        baseline: the path's start, a number or a tensor broadcastable to the images; 0 is the
            dataset mean for normalised inputs.

    Returns:
        ``(N, H, W)`` float32, signed.

    Raises:
        ValueError: ``steps < 1``.

    Example:
        >>> net = nn.Sequential(nn.Flatten(), nn.Linear(12, 3))
        >>> x = torch.randn(1, 3, 2, 2)
        >>> ig = integrated_gradients_maps(net, x, torch.tensor([1]), steps=4)
        >>> torch.allclose(ig.sum(), net(x)[0, 1] - net(torch.zeros_like(x))[0, 1], atol=1e-5)
        True
    """
    if steps < 1:
        raise ValueError(f"integrated_gradients needs steps >= 1, got {steps}")
    nodes, weights = np.polynomial.legendre.leggauss(steps)
    start = torch.as_tensor(baseline, dtype=images.dtype, device=images.device).expand_as(images)
    delta = images.detach() - start
    total = torch.zeros(images.shape, dtype=torch.float32, device=images.device)
    for node, weight in zip(nodes, weights):
        alpha = float(node + 1) / 2
        total += float(weight) / 2 * input_gradients(model, start + alpha * delta, targets).float()
    return (delta.float() * total).sum(1)
