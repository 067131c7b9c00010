"""DeepDream (Mordvintsev et al. 2015): boost whatever a layer already sees in a real image.

The lecture's recipe: forward the image to a layer, use the layer's activations as the gradient
there (the gradient of ``energy(layer)`` = half the mean squared activation), back-propagate to
the image, normalise the gradient, take a step; shift the image randomly before each step
(jitter) and work from a small to the full resolution (octaves), carrying the detail added at
each scale up to the next. :func:`dream` does it for model inputs, as the ``deepdream`` view
computes it (the energy before and after included).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from tb_viz_plugin.methods.layers import resolve_layers
from tb_viz_plugin.methods.optvis.objectives import energy
from tb_viz_plugin.methods.optvis.optimize import Rendered, evaluate, from_model_input, scoring
from tb_viz_plugin.methods.optvis.param import own_generator


def normalize_gradient(grad: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Scale each image's gradient to a mean absolute value of 1 (step sizes then mean pixels).

    Example:
        >>> normalize_gradient(torch.tensor([[1.0, -3.0], [0.1, 0.1]])).abs().mean(1)
        tensor([1., 1.])
    """
    scale = grad.abs().flatten(1).mean(1).clamp_min(eps)
    return grad / scale.view(-1, *[1] * (grad.dim() - 1))


def octave_sizes(height: int, width: int, octaves: int, octave_scale: float) -> List[Tuple[int, int]]:
    """``(h, w)`` of each octave, smallest first, the last one ``(height, width)``.

    Example:
        >>> octave_sizes(64, 64, 3, 2.0)
        [(16, 16), (32, 32), (64, 64)]
    """
    return [
        (max(1, round(height / octave_scale**k)), max(1, round(width / octave_scale**k)))
        for k in reversed(range(octaves))
    ]


def deepdream(
    model: nn.Module,
    images: torch.Tensor,
    layer: str,
    *,
    octaves: int = 3,
    octave_scale: float = 1.4,
    steps: int = 10,
    step_size: float = 0.01,
    jitter: int = 4,
    mean: Optional[Sequence[float]] = None,
    std: Optional[Sequence[float]] = None,
    generator: Optional[torch.Generator] = None,
) -> Rendered:
    """Dream on ``images``: amplify the features that ``layer`` detects in them.

    Args:
        model: any ``nn.Module`` taking normalised images; not modified.
        images: ``(N, 3, H, W)`` in ``[0, 1]`` (undo the dataset normalisation first).
        layer: module name, e.g. ``"features.8"`` or ``"layer3"``.
        octaves: number of scales, each ``octave_scale`` times larger, the last the full size.
        octave_scale: size ratio between octaves.
        steps: gradient steps per octave.
        step_size: mean absolute change per step, in ``[0, 1]`` pixel units (gradient normalised).
        jitter: random shift of up to this many pixels (each direction) before each step, undone after.
        mean: per-channel mean the model's inputs were normalised with (``None`` = inputs in [0, 1]).
        std: per-channel standard deviation of that normalisation.
        generator: source of the shifts; ``None`` = a fresh CPU generator seeded 0.

    Returns:
        ``Rendered(images (N, 3, H, W) in [0, 1], values (N,))``; values are the layer's energy
        (half its mean squared activation) on the dreams.

    Raises:
        ValueError: ``octaves``/``steps`` < 1 or ``octave_scale`` <= 0.
        LayerNotFoundError: ``layer`` is not a module of ``model``.

    Example:
        >>> import torchvision
        >>> net = torchvision.models.resnet18().eval()
        >>> deepdream(net, torch.rand(1, 3, 64, 64), "layer2", steps=2).images.shape
        torch.Size([1, 3, 64, 64])
    """
    if octaves < 1 or steps < 1 or octave_scale <= 0:
        raise ValueError(f"need octaves >= 1, steps >= 1, octave_scale > 0; got {octaves}, {steps}, {octave_scale}")
    generator = own_generator(generator)
    objective = energy(layer)
    with scoring(model, objective, mean, std, truncate=True) as score:
        original = images.detach().clone()
        detail = torch.zeros_like(original)
        for size in octave_sizes(*original.shape[-2:], octaves, octave_scale):
            base = F.interpolate(original, size=size, mode="bilinear", align_corners=False, antialias=True)
            dream = base + F.interpolate(detail, size=size, mode="bilinear", align_corners=False)
            for _ in range(steps):
                dream = dream.detach().requires_grad_(True)
                dy, dx = torch.randint(-jitter, jitter + 1, (2,), generator=generator).tolist()
                shifted = torch.roll(dream, shifts=(dy, dx), dims=(2, 3))
                (grad,) = torch.autograd.grad(score(dream, shifted).sum(), dream)
                dream = (dream + step_size * normalize_gradient(grad)).clamp(0, 1)
            detail = dream.detach() - base
        dream = dream.detach()
        with torch.no_grad():
            values = score(dream, dream).float().cpu()
    return Rendered(images=dream, values=values)


@dataclass(frozen=True)
class Dream:
    """What :func:`dream` returns: each probe image, its dream, and the layer's energy on both.

    Attributes:
        layer: the layer's full module name.
        originals: ``(N, 3, H, W)`` the images in ``[0, 1]`` (un-normalised), on the CPU.
        dreams: ``(N, 3, H, W)`` in ``[0, 1]``, on the CPU.
        energy_before: ``(N,)`` half the mean squared activation of the layer on the originals.
        energy_after: ``(N,)`` the same on the dreams.
        octaves: scales used.
        steps: gradient steps per octave.
    """

    layer: str
    originals: torch.Tensor
    dreams: torch.Tensor
    energy_before: torch.Tensor
    energy_after: torch.Tensor
    octaves: int
    steps: int


def dream(
    model: nn.Module,
    inputs: torch.Tensor,
    layer: str,
    *,
    octaves: int = 3,
    steps: int = 10,
    mean: Optional[Sequence[float]] = None,
    std: Optional[Sequence[float]] = None,
    seed: int = 0,
) -> Dream:
    """DeepDream model inputs (normalised like the dataset's) at ``layer``, with the energy before and after.

    Args:
        model: the network; not modified.
        inputs: ``(N, C, H, W)`` model inputs, normalised with ``mean``/``std`` (inference tensors are fine).
        layer: module name whose activations are amplified (a unique ending of a full name is fine).
        octaves: scales, smallest to full size.
        steps: gradient steps per octave.
        mean: per-channel mean of the input normalisation (``None`` = inputs in [0, 1]).
        std: per-channel standard deviation of that normalisation.
        seed: seed of the jitter (our own generator).

    Returns:
        A :class:`Dream` on the CPU.

    Raises:
        LayerNotFoundError: ``layer`` is not a module of ``model``.

    Example:
        >>> net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU())
        >>> result = dream(net, torch.randn(2, 3, 16, 16), "1", octaves=2, steps=2)
        >>> tuple(result.dreams.shape), bool((result.energy_after > result.energy_before).all())
        ((2, 3, 16, 16), True)
    """
    (path,) = resolve_layers(model, layer, accept=lambda module: True, what="module")
    with torch.inference_mode(False):
        originals = from_model_input(inputs.detach().clone(), mean, std)  # a normal tensor, even from inference mode
    before = evaluate(model, energy(path), originals, mean=mean, std=std, truncate=True)
    generator = torch.Generator().manual_seed(seed)
    result = deepdream(model, originals, path, octaves=octaves, steps=steps, mean=mean, std=std, generator=generator)
    return Dream(path, originals.detach().cpu(), result.images.cpu(), before, result.values, octaves, steps)
