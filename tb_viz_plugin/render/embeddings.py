"""Thumbnails of embedded samples and their sprite sheet (the layout TensorBoard's Projector uses).

The Projector reads one sprite image per embedding: square thumbnails on a grid of
``ceil(sqrt(N))`` columns, row by row, at most 8192 x 8192 pixels. The same layout serves the
tb-viz scatter view, which crops a sample's thumbnail out of the sprite on hover.
"""

from __future__ import annotations

import math
from typing import Tuple

import numpy as np
import torch
import torch.nn.functional as F

from tb_viz_plugin.render import tile_grid, to_uint8

SPRITE_MAX_PX = 8192
"""The Projector's limit on the sprite's width and height."""
THUMB_MAX_PX = 48
"""Largest thumbnail side; smaller when many samples must fit in ``SPRITE_MAX_PX``."""


def sprite_layout(n: int, max_thumb: int = THUMB_MAX_PX, max_px: int = SPRITE_MAX_PX) -> Tuple[int, int]:
    """Thumbnail side and column count of the sprite of ``n`` samples, within ``max_px``.

    Args:
        n: number of samples (>= 1).
        max_thumb: the largest thumbnail side wanted.
        max_px: the largest sprite side allowed.

    Returns:
        ``(thumb, columns)`` with ``columns = ceil(sqrt(n))`` and ``thumb * columns <= max_px``.

    Raises:
        ValueError: ``n < 1``, or so many samples that a thumbnail would be under one pixel.

    Example:
        >>> sprite_layout(300), sprite_layout(10_000), sprite_layout(100_000)
        ((48, 18), (48, 100), (25, 317))
    """
    if n < 1:
        raise ValueError(f"need at least one sample, got {n}")
    columns = math.ceil(math.sqrt(n))
    thumb = min(max_thumb, max_px // columns)
    if thumb < 1:
        raise ValueError(f"{n} thumbnails cannot fit a sprite of {max_px} x {max_px} pixels")
    return thumb, columns


def thumbnails(images: torch.Tensor, size: int) -> torch.Tensor:
    """Square thumbnails: pad to a square (centred, mid-grey), then resize with antialiasing.

    Args:
        images: ``(N, 3, H, W)`` in ``[0, 1]``.
        size: the thumbnail side in pixels.

    Returns:
        ``(N, 3, size, size)`` float32 in ``[0, 1]``.

    Example:
        >>> thumbnails(torch.rand(5, 3, 64, 40), 32).shape
        torch.Size([5, 3, 32, 32])
    """
    _, _, h, w = images.shape
    side = max(h, w)
    top, left = (side - h) // 2, (side - w) // 2
    square = F.pad(images.float(), (left, side - w - left, top, side - h - top), value=0.5)
    if side != size:
        square = F.interpolate(square, size=(size, size), mode="bilinear", antialias=side > size, align_corners=False)
    return square.clamp(0, 1)


def sprite(thumbs: torch.Tensor, columns: int) -> np.ndarray:
    """Lay ``(N, 3, s, s)`` thumbnails out row by row on ``columns`` columns, without gaps.

    Returns:
        ``uint8`` ``(rows * s, columns * s, 3)``; cells past the last thumbnail are grey.

    Example:
        >>> sprite(torch.rand(5, 3, 8, 8), columns=3).shape
        (16, 24, 3)
    """
    return to_uint8(tile_grid(thumbs.permute(0, 2, 3, 1).cpu(), columns, gap=0, row_gap=0))
