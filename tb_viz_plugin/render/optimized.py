"""Optimised images (activation maximization, DeepDream) as PNG-ready arrays."""

from __future__ import annotations

from typing import List

import numpy as np
import torch

from tb_viz_plugin.render import tile_grid, to_uint8


def image_arrays(images: torch.Tensor) -> List[np.ndarray]:
    """``(N, 3, H, W)`` images in ``[0, 1]`` to N ``uint8`` ``(H, W, 3)`` arrays.

    Example:
        >>> [a.shape for a in image_arrays(torch.rand(2, 3, 8, 6))]
        [(8, 6, 3), (8, 6, 3)]
    """
    return [to_uint8(image.detach().float().permute(1, 2, 0)) for image in images]


def side_by_side(originals: torch.Tensor, dreams: torch.Tensor, gap: int = 2) -> List[np.ndarray]:
    """Each original next to its dream: N ``uint8`` arrays ``(H + 2 * gap, 2 * W + 3 * gap, 3)``.

    Raises:
        ValueError: the two batches differ in shape.

    Example:
        >>> [a.shape for a in side_by_side(torch.rand(1, 3, 8, 8), torch.rand(1, 3, 8, 8))]
        [(12, 22, 3)]
    """
    if originals.shape != dreams.shape:
        raise ValueError(f"originals {tuple(originals.shape)} and dreams {tuple(dreams.shape)} differ in shape")
    pairs = torch.stack([originals, dreams], 1).detach().float().cpu().permute(0, 1, 3, 4, 2)  # (N, 2, H, W, 3)
    return [to_uint8(tile_grid(pair, ncols=2, gap=gap, row_gap=gap)) for pair in pairs]
