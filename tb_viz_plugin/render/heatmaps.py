"""Attribution maps as 8-bit grey levels; colormaps and overlays are the browser's job.

Maps are stored as single-channel images normalised per map, and the raw range goes to the
manifest, so the viewer can pick colormap and opacity without baking them into the PNGs. The
images themselves are made displayable by :func:`tb_viz_plugin.render.activations.input_rgb`.
"""

from __future__ import annotations

from typing import List, Tuple

import numpy as np
import torch

SIGNED_NORMALIZATION = "signed maps: value / max|value| per map, 0 -> 128 (mid grey), +max -> 255, -max -> 1"
UNSIGNED_NORMALIZATION = "unsigned maps: min-max per map to 0..255"
_TINY = 1e-12


def map_levels(values: torch.Tensor, signed: bool) -> Tuple[np.ndarray, List[float], List[float]]:
    """Maps ``(N, H, W)`` to ``uint8`` grey levels, normalised per map, and each map's raw range.

    Unsigned maps: min-max to ``0..255``. Signed maps: ``value / max|value|`` so that 0 is level
    128 and the sign survives (``level = 128 + 127 * value / max|value|``). Non-finite values
    count as 0.

    Returns:
        ``(levels (N, H, W) uint8, raw minima, raw maxima)``.

    Example:
        >>> levels, low, high = map_levels(torch.tensor([[[-1.0, 0.0, 2.0]]]), signed=True)
        >>> levels.tolist(), low, high
        ([[[64, 128, 255]]], [-1.0], [2.0])
    """
    v = torch.nan_to_num(values.detach().float(), nan=0.0, posinf=0.0, neginf=0.0)
    flat = v.flatten(1)
    low, high = flat.amin(1), flat.amax(1)
    if signed:
        scale = torch.maximum(low.abs(), high.abs()).clamp_min(_TINY).view(-1, 1, 1)
        levels = (128 + 127 * v / scale).round().clamp(0, 255)
    else:
        levels = ((v - low.view(-1, 1, 1)) / (high - low).clamp_min(_TINY).view(-1, 1, 1) * 255).round()
    return levels.to(torch.uint8).cpu().numpy(), low.tolist(), high.tolist()
