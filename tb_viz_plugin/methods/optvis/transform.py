"""Transformation robustness: small random, differentiable image transforms applied before each step.

An image that only excites a unit at one exact pixel alignment is an adversarial pattern, not a
feature; shifting, scaling and rotating it a little at every step keeps only what survives all
of them (Mordvintsev et al. 2015, Olah et al. 2017). Every transform is a closure
``t(images, generator) -> images`` on ``(N, C, H, W)`` tensors that draws its randomness from the
``torch.Generator`` it is given (a CPU generator; never the global RNG). ``compose`` chains them.
Output sizes may differ from input sizes: the models visualised here end in global pooling.
"""

from __future__ import annotations

import math
from typing import Callable, List, Sequence

import torch
import torch.nn.functional as F

Transform = Callable[[torch.Tensor, torch.Generator], torch.Tensor]
"""``t(images (N, C, H, W), generator) -> images``; differentiable in ``images``."""


def _uniform(generator: torch.Generator, low: float, high: float, count: int = 1) -> torch.Tensor:
    """``count`` floats uniform in ``[low, high]`` drawn on the CPU from ``generator``."""
    return low + (high - low) * torch.rand(count, generator=generator)


def pad(width: int, value: float = 0.5) -> Transform:
    """Pad every side by ``width`` pixels of constant ``value`` (so jitter and rotation do not crop content).

    Example:
        >>> pad(4)(torch.zeros(1, 3, 8, 8), torch.Generator()).shape
        torch.Size([1, 3, 16, 16])
    """

    def transform(images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        return F.pad(images, [width] * 4, mode="constant", value=value)

    return transform


def jitter(pixels: int) -> Transform:
    """Crop a random window ``pixels`` smaller in each dimension: a random shift of 0..``pixels``.

    One shift for the whole batch (a view, no interpolation).

    Example:
        >>> jitter(4)(torch.zeros(2, 3, 16, 16), torch.Generator()).shape
        torch.Size([2, 3, 12, 12])
    """
    if pixels < 1:
        raise ValueError(f"jitter needs pixels >= 1, got {pixels}")

    def transform(images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        dy, dx = torch.randint(0, pixels + 1, (2,), generator=generator).tolist()
        height, width = images.shape[-2:]
        return images[..., dy : height - pixels + dy, dx : width - pixels + dx]

    return transform


def random_scale(low: float = 0.9, high: float = 1.1) -> Transform:
    """Resize by a factor uniform in ``[low, high]`` (bilinear; one factor for the whole batch).

    Example:
        >>> random_scale(2.0, 2.0)(torch.zeros(1, 3, 8, 8), torch.Generator()).shape
        torch.Size([1, 3, 16, 16])
    """
    if not 0 < low <= high:
        raise ValueError(f"random_scale needs 0 < low <= high, got {low}, {high}")

    def transform(images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        factor = float(_uniform(generator, low, high))
        height, width = images.shape[-2:]
        size = (max(1, round(height * factor)), max(1, round(width * factor)))
        return F.interpolate(images, size=size, mode="bilinear", align_corners=False)

    return transform


def random_rotate(degrees: float = 10.0) -> Transform:
    """Rotate each image about its centre by its own angle uniform in ``[-degrees, degrees]``.

    Bilinear sampling; pixels from outside repeat the border.

    Example:
        >>> x = torch.rand(2, 3, 8, 8)
        >>> torch.allclose(random_rotate(0.0)(x, torch.Generator()), x, atol=1e-6)
        True
    """

    def transform(images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        angles = _uniform(generator, -degrees, degrees, images.shape[0]) * (math.pi / 180)
        cos, sin, zero = angles.cos(), angles.sin(), torch.zeros_like(angles)
        theta = torch.stack([torch.stack([cos, -sin, zero], 1), torch.stack([sin, cos, zero], 1)], 1)
        grid = F.affine_grid(theta.to(images), list(images.shape), align_corners=False)
        return F.grid_sample(images, grid, mode="bilinear", padding_mode="border", align_corners=False)

    return transform


def resize(size: int) -> Transform:
    """Resize to ``size`` x ``size`` (bilinear): render small, feed a model the size it expects.

    Example:
        >>> resize(224)(torch.zeros(1, 3, 128, 128), torch.Generator()).shape
        torch.Size([1, 3, 224, 224])
    """

    def transform(images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        return F.interpolate(images, size=(size, size), mode="bilinear", align_corners=False)

    return transform


def compose(transforms: Sequence[Transform]) -> Transform:
    """Apply ``transforms`` in order, each with the same generator.

    Example:
        >>> compose([pad(2), jitter(4)])(torch.zeros(1, 3, 8, 8), torch.Generator()).shape
        torch.Size([1, 3, 8, 8])
    """
    chain = list(transforms)

    def transform(images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        for step in chain:
            images = step(images, generator)
        return images

    return transform


def default_transforms(size: int) -> List[Transform]:
    """The default robustness chain for ``size``-pixel images (Lucid's, scaled to the image size).

    Pad by ``size / 16``, jitter by ``size / 16``, scale by 0.95..1.05, rotate by up to 10 degrees,
    jitter by ``size / 32`` (at 128 px: pad 8, jitter 8, jitter 4).

    Example:
        >>> len(default_transforms(64))
        5
    """
    coarse, fine = max(1, size // 16), max(1, size // 32)
    return [pad(coarse), jitter(coarse), random_scale(0.95, 1.05), random_rotate(10.0), jitter(fine)]


def gaussian_blur(images: torch.Tensor, sigma: float) -> torch.Tensor:
    """Blur ``(N, C, H, W)`` images with a Gaussian of ``sigma`` pixels (separable, reflect padding).

    Used for periodic blurring (Yosinski 2015): every few steps the pixels are smoothed in place.

    Example:
        >>> gaussian_blur(torch.ones(1, 3, 8, 8), 1.0).allclose(torch.ones(1, 3, 8, 8))
        True
    """
    radius = max(1, math.ceil(3 * sigma))
    offsets = torch.arange(-radius, radius + 1, dtype=images.dtype, device=images.device)
    kernel = torch.exp(-0.5 * (offsets / sigma) ** 2)
    kernel = kernel / kernel.sum()
    channels = images.shape[1]
    images = F.pad(images, [radius] * 4, mode="reflect")
    images = F.conv2d(images, kernel.view(1, 1, 1, -1).expand(channels, 1, 1, -1), groups=channels)
    return F.conv2d(images, kernel.view(1, 1, -1, 1).expand(channels, 1, -1, 1), groups=channels)
