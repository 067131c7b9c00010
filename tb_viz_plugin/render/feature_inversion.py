"""The ``feature_inversion`` view: one row per probe image, the original then its reconstruction from each layer."""

from __future__ import annotations

from typing import List, Optional, Sequence

import numpy as np
import torch

from tb_viz_plugin.methods.optvis.inversion import Inversion
from tb_viz_plugin.render import GAP, Panel, png_item, tile_grid, to_uint8


def as_rgb(images: torch.Tensor) -> torch.Tensor:
    """``(..., C, H, W)`` images in ``[0, 1]`` as ``(..., H, W, 3)``: RGB as is, other channel counts as grey (their mean).

    Example:
        >>> as_rgb(torch.rand(2, 5, 4, 6)).shape
        torch.Size([2, 4, 6, 3])
    """
    images = images.detach().float().cpu()
    if images.shape[-3] != 3:
        images = images.mean(-3, keepdim=True).expand(*images.shape[:-3], 3, *images.shape[-2:])
    return images.movedim(-3, -1)


def image_rows(columns: Sequence[torch.Tensor], gap: int = GAP) -> List[np.ndarray]:
    """One ``uint8`` row per image: ``columns`` (each ``(N, C, H, W)`` in ``[0, 1]``) side by side.

    Raises:
        ValueError: columns of other shapes.

    Example:
        >>> [a.shape for a in image_rows([torch.rand(2, 1, 8, 8)] * 3)]
        [(12, 32, 3), (12, 32, 3)]
    """
    if len({tuple(column.shape) for column in columns}) != 1:
        raise ValueError(f"columns differ in shape: {[tuple(c.shape) for c in columns]}")
    rows = torch.stack([as_rgb(column) for column in columns], 1)  # (N, K, H, W, 3)
    return [to_uint8(tile_grid(row, ncols=len(columns), gap=gap, row_gap=gap)) for row in rows]


def row_labels(captions: Optional[Sequence[str]], n: int) -> List[str]:
    """``captions`` (checked) or ``"image <i>"``.

    Raises:
        ValueError: ``captions`` of another length than ``n``.
    """
    labels = list(captions) if captions is not None else [f"image {i}" for i in range(n)]
    if len(labels) != n:
        raise ValueError(f"got {len(labels)} captions for {n} images")
    return labels


def panel(result: Inversion, captions: Optional[Sequence[str]] = None) -> Panel:
    """The step of ``feature_inversion/<layers>``: one item per probe image (original, then one reconstruction per layer).

    Args:
        result: what ``methods.invert`` returned.
        captions: one per image (e.g. ``"#12 circle"``); default ``"image <i>"``.

    Raises:
        ValueError: ``captions`` of another length than the images.

    Example:
        >>> inv = Inversion(["conv1", "conv2"], torch.rand(1, 3, 8, 8), torch.rand(1, 2, 3, 8, 8),
        ...                 torch.tensor([[0.01, 0.1]]), torch.tensor([[0.02, 0.2]]), 10, "pyramid", 0.5)
        >>> panel(inv, ["#7"]).items[0].caption
        '#7: feature distance 0.01 · 0.1'
    """
    labels = row_labels(captions, len(result.originals))
    columns = [result.originals, *result.reconstructions.unbind(1)]
    items = []
    for i, array in enumerate(image_rows(columns)):
        distances, errors = result.distances[i].tolist(), result.pixel_errors[i].tolist()
        text = " · ".join(f"{d:.2g}" for d in distances)
        items.append(png_item(array, f"{labels[i]}: feature distance {text}", distances=distances,
                              pixel_errors=errors))  # fmt: skip
    meta = {
        "layers": list(result.layers),
        "columns": ["original", *result.layers],
        "layout": " | ".join(["original", *result.layers]),
        "steps": result.steps,
        "param": result.param,
        "images": len(result.originals),
        "seconds": round(result.seconds, 3),
    }
    description = (f"Feature inversion: each probe image (left) and the images reconstructed from its features at "
                   f"{', '.join(result.layers)} (relative feature distance in the caption)")  # fmt: skip
    return Panel(items, meta, description)
