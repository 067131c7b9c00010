"""Image parametrizations: what the optimizer changes, and how that becomes an image.

Every function returns ``(params, image_fn)``: ``params`` is the list of leaf tensors handed to
the optimizer, ``image_fn()`` builds the current images ``(N, 3, H, W)`` in ``[0, 1]`` from them
(differentiably). Initial values are drawn from the caller's ``torch.Generator`` (on the CPU, then
moved), so the training RNG is never touched and a seed gives the same start on every device.

- ``pixel_image``: one free value per pixel (Erhan 2009, Simonyan 2014). Nothing keeps it natural.
- ``fourier_image``: the spectrum is optimised, scaled by ``1 / f`` so every frequency band moves
  by about the same amount in image space; colours are decorrelated (Olah et al. 2017, Lucid).
- ``pyramid_image``: multi-scale octaves as one optimisation: a sum of pixel images at 1, 1/2,
  1/4... of the resolution, each upsampled (Laplacian-pyramid parametrization).
"""

from __future__ import annotations

import math
from typing import Callable, List, Optional, Tuple, Union

import torch
import torch.nn.functional as F

ImageParam = Tuple[List[torch.Tensor], Callable[[], torch.Tensor]]
"""``(params, image_fn)``: leaf tensors to optimise and a function building ``(N, 3, H, W)`` images in ``[0, 1]``."""

# Square root of the colour covariance of natural images (ImageNet, as measured for Lucid),
# columns scaled so that the largest has unit norm: decorrelated channels -> RGB.
_COLOR_SQRT = torch.tensor([[0.26, 0.09, 0.02], [0.27, 0.00, -0.05], [0.27, -0.09, 0.03]])
_COLOR_SQRT = _COLOR_SQRT / _COLOR_SQRT.norm(dim=0).max()

INITIAL_SD = 0.1
"""Default standard deviation of the initial parameters: images start as grey with about 2% noise.

Lucid's 0.01 (a nearly flat grey start) left every first-layer ReLU of the trained demo model off:
the gradient was exactly zero and nothing moved; 0.1 starts all of its classes moving.
"""

FOURIER_SCALE = 4.0
"""Divides the Fourier image before the sigmoid (Lucid's constant); larger = less saturated start."""


def own_generator(generator: Optional[torch.Generator], seed: int = 0) -> torch.Generator:
    """``generator``, or a fresh CPU generator seeded with ``seed`` (never the global RNG)."""
    return generator if generator is not None else torch.Generator().manual_seed(seed)


def _initial(
    shape: Tuple[int, ...], sd: float, generator: Optional[torch.Generator], device: torch.device
) -> torch.Tensor:
    """A leaf tensor of normal noise (standard deviation ``sd``) drawn on the CPU from ``generator``."""
    return (torch.randn(shape, generator=own_generator(generator)) * sd).to(device).requires_grad_(True)


Size = Union[int, Tuple[int, int]]
"""Image size: ``side`` for a square, or ``(height, width)``."""


def _check(n: int, size: Size, channels: int = 3) -> Tuple[int, int]:
    """``(height, width)`` of ``size`` once ``n``, the size and ``channels`` are valid."""
    height, width = (size, size) if isinstance(size, int) else tuple(size)
    if n < 1 or min(height, width) < 2 or channels < 1:
        raise ValueError(f"need n >= 1 images of size >= 2 pixels and channels >= 1, got n={n}, size={size}, "
                         f"channels={channels}")  # fmt: skip
    return height, width


def to_rgb(image: torch.Tensor, decorrelate: bool) -> torch.Tensor:
    """Unbounded ``(N, C, H, W)`` values to ``(0, 1)``: optional colour decorrelation (RGB only), then a sigmoid.

    Raises:
        ValueError: ``decorrelate`` for images that do not have 3 channels.

    Example:
        >>> to_rgb(torch.zeros(2, 3, 8, 8), decorrelate=True).unique()
        tensor([0.5000])
    """
    if decorrelate:
        if image.shape[1] != 3:
            raise ValueError(f"colour decorrelation needs 3 channels, got {image.shape[1]}: pass decorrelate=False")
        image = torch.einsum("nchw,dc->ndhw", image, _COLOR_SQRT.to(image))
    return torch.sigmoid(image)


def pixel_image(
    n: int,
    size: Size,
    *,
    channels: int = 3,
    generator: Optional[torch.Generator] = None,
    device: torch.device | str = "cpu",
    sd: float = INITIAL_SD,
    decorrelate: bool = False,
) -> ImageParam:
    """One free parameter per pixel and channel, squashed to ``[0, 1]`` by a sigmoid.

    Args:
        n: number of images (one per target of a batched objective).
        size: height and width in pixels (one number for a square, or ``(height, width)``).
        channels: image channels (colour decorrelation needs 3).
        generator: the random source of the initial noise (a CPU generator; ``None`` = seeded 0).
        device: where the parameters live.
        sd: standard deviation of the initial noise (pre-sigmoid), see ``INITIAL_SD``.
        decorrelate: mix channels through the natural-image colour basis before the sigmoid.

    Returns:
        ``(params, image_fn)``; ``image_fn()`` has shape ``(n, channels, height, width)``.

    Raises:
        ValueError: ``n < 1``, ``size < 2`` or ``channels < 1``.

    Example:
        >>> params, image_fn = pixel_image(2, 32, generator=torch.Generator().manual_seed(0))
        >>> params[0].shape, image_fn().shape
        (torch.Size([2, 3, 32, 32]), torch.Size([2, 3, 32, 32]))
    """
    height, width = _check(n, size, channels)
    pixels = _initial((n, channels, height, width), sd, generator, torch.device(device))
    return [pixels], lambda: to_rgb(pixels, decorrelate)


def image_param(images: torch.Tensor, eps: float = 1e-3) -> ImageParam:
    """Start from given images: one free parameter per pixel, the inverse sigmoid of ``images``.

    Args:
        images: ``(N, C, H, W)`` in ``[0, 1]`` (clamped to ``[eps, 1 - eps]`` first, where the
            sigmoid's gradient is not vanishing); a copy is optimised, never the caller's tensor.
        eps: the clamp margin.

    Returns:
        ``(params, image_fn)``; ``image_fn()`` returns ``images`` (to within the clamp) at the start.

    Example:
        >>> start = torch.rand(2, 1, 8, 8)
        >>> params, image_fn = image_param(start)
        >>> bool(torch.allclose(image_fn(), start.clamp(1e-3, 1 - 1e-3), atol=1e-5))
        True
    """
    logits = torch.logit(images.detach().float().clamp(eps, 1 - eps)).clone().requires_grad_(True)
    return [logits], lambda: torch.sigmoid(logits)


def _frequencies(height: int, width: int) -> torch.Tensor:
    """Radial frequency (cycles per pixel) of each coefficient of a real 2-D FFT of a ``height`` x ``width`` image."""
    fy = torch.fft.fftfreq(height)[:, None]
    fx = torch.fft.rfftfreq(width)[None, :]
    return torch.sqrt(fx * fx + fy * fy)


def fourier_image(
    n: int,
    size: Size,
    *,
    channels: int = 3,
    generator: Optional[torch.Generator] = None,
    device: torch.device | str = "cpu",
    sd: float = INITIAL_SD,
    decay_power: float = 1.0,
    decorrelate: bool = True,
) -> ImageParam:
    """Images parametrized by their spectrum, scaled by ``1 / f ** decay_power``, colours decorrelated.

    Natural images have a ``1 / f`` amplitude spectrum; scaling the parameters by it makes a
    gradient step change low and high frequencies alike in image space instead of favouring the
    high ones (which is why pixel-space optimisation produces noise).

    Args:
        n: number of images.
        size: height and width in pixels (one number for a square, or ``(height, width)``).
        channels: image channels (colour decorrelation needs 3).
        generator: the random source of the initial spectrum (a CPU generator; ``None`` = seeded 0).
        device: where the parameters live.
        sd: standard deviation of the initial spectral coefficients, see ``INITIAL_SD``.
        decay_power: exponent of the ``1 / f`` scaling (0 = white, 1 = natural images).
        decorrelate: mix channels through the natural-image colour basis.

    Returns:
        ``(params, image_fn)``; the parameter is the real view ``(n, channels, height, width // 2 + 1, 2)``
        of the spectrum, ``image_fn()`` has shape ``(n, channels, height, width)``.

    Raises:
        ValueError: ``n < 1``, ``size < 2``, ``channels < 1``, or ``decorrelate`` without 3 channels.

    Example:
        >>> params, image_fn = fourier_image(4, 64, generator=torch.Generator().manual_seed(0))
        >>> params[0].shape, image_fn().shape
        (torch.Size([4, 3, 64, 33, 2]), torch.Size([4, 3, 64, 64]))
    """
    height, width = _check(n, size, channels)
    if decorrelate and channels != 3:
        raise ValueError(f"colour decorrelation needs 3 channels, got {channels}: pass decorrelate=False")
    device = torch.device(device)
    freqs = _frequencies(height, width)
    scale = (1.0 / freqs.clamp_min(1.0 / max(height, width)) ** decay_power).to(device)[None, None, :, :, None]
    spectrum = _initial((n, channels, *freqs.shape, 2), sd, generator, device)

    def image_fn() -> torch.Tensor:
        coefficients = torch.view_as_complex((scale * spectrum).contiguous())
        image = torch.fft.irfft2(coefficients, s=(height, width), norm="ortho")
        return to_rgb(image / FOURIER_SCALE, decorrelate)

    return [spectrum], image_fn


def pyramid_image(
    n: int,
    size: Size,
    *,
    channels: int = 3,
    octaves: int = 4,
    generator: Optional[torch.Generator] = None,
    device: torch.device | str = "cpu",
    sd: float = INITIAL_SD,
    decorrelate: bool = True,
) -> ImageParam:
    """Multi-scale octaves in one optimisation: pixel images at ``size / 2**k``, upsampled and summed.

    A gradient step then moves coarse structure (the low-resolution levels, each shared by
    ``4**k`` pixels) as readily as fine detail, the effect that optimising octave by octave from
    small to large images has (Mordvintsev 2015, Øygard 2015).

    Args:
        n: number of images.
        size: height and width in pixels (one number for a square, or ``(height, width)``).
        channels: image channels (colour decorrelation needs 3).
        octaves: pyramid levels (1 = plain pixels); levels smaller than 2 pixels are dropped.
        generator: the random source of the initial noise (a CPU generator; ``None`` = seeded 0).
        device: where the parameters live.
        sd: standard deviation of the initial noise of every level, see ``INITIAL_SD``.
        decorrelate: mix channels through the natural-image colour basis.

    Returns:
        ``(params, image_fn)``, one parameter per level (finest first); ``image_fn()`` has shape
        ``(n, channels, height, width)``.

    Raises:
        ValueError: ``n < 1``, ``size < 2``, ``channels < 1``, ``octaves < 1``, or ``decorrelate``
            without 3 channels.

    Example:
        >>> params, image_fn = pyramid_image(1, 64, octaves=3, generator=torch.Generator().manual_seed(0))
        >>> [p.shape[-1] for p in params], image_fn().shape
        ([64, 32, 16], torch.Size([1, 3, 64, 64]))
    """
    height, width = _check(n, size, channels)
    if octaves < 1:
        raise ValueError(f"octaves must be >= 1, got {octaves}")
    device = torch.device(device)
    sides = [(math.ceil(height / 2**k), math.ceil(width / 2**k)) for k in range(octaves) if min(height, width) / 2**k >= 2]
    levels = [_initial((n, channels, *side), sd, generator, device) for side in sides]

    def image_fn() -> torch.Tensor:
        image = levels[-1]
        for level in reversed(levels[:-1]):  # coarse to fine: upsample what is there, add the finer level
            image = level + F.interpolate(image, size=level.shape[-2:], mode="bilinear", align_corners=False)
        return to_rgb(image, decorrelate)

    return levels, image_fn
