"""The ``deepdream`` view: each probe image next to its dream, captioned with the layer's energy before and after."""

from __future__ import annotations

from typing import List, Optional, Sequence

import numpy as np
import torch

from tb_viz_plugin.methods.optvis.deepdream import Dream
from tb_viz_plugin.render import Panel, png_item, tile_grid, to_uint8

LAYOUT = "original | dream"


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


def panel(result: Dream, captions: Optional[Sequence[str]] = None) -> Panel:
    """The step of ``deepdream/<layer>``: one item per probe image (original left, dream right).

    Args:
        result: what ``methods.dream`` returned.
        captions: one per image (e.g. ``"#12 circle"``); default ``"image <i>"``.

    Raises:
        ValueError: ``captions`` of another length than the images.

    Example:
        >>> dream = Dream("conv", torch.rand(1, 3, 8, 8), torch.rand(1, 3, 8, 8), torch.tensor([1.0]),
        ...               torch.tensor([2.0]), octaves=2, steps=3)
        >>> panel(dream, ["#7"]).items[0].caption
        '#7: energy 1 → 2'
    """
    n = len(result.originals)
    labels = list(captions) if captions is not None else [f"image {i}" for i in range(n)]
    if len(labels) != n:
        raise ValueError(f"got {len(labels)} captions for {n} images")
    before, after = result.energy_before.tolist(), result.energy_after.tolist()
    items = [
        png_item(array, f"{labels[i]}: energy {before[i]:.3g} → {after[i]:.3g}", energy_before=before[i],
                 energy_after=after[i])  # fmt: skip
        for i, array in enumerate(side_by_side(result.originals, result.dreams))
    ]
    meta = {"layer": result.layer, "octaves": result.octaves, "steps_per_octave": result.steps, "layout": LAYOUT}
    return Panel(items, meta, f"DeepDream at {result.layer}: each probe image (left) and its dream (right)")
