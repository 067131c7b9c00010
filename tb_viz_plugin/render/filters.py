"""The ``filters`` view: conv filters ``(out, in, kH, kW)`` as one image per layer."""

from __future__ import annotations

import math
from typing import Any, Dict, Tuple

import numpy as np
import torch

from tb_viz_plugin.render import Panel, diverging, png_item, tile_grid, to_uint8, upscale


def filter_grid(
    weights: torch.Tensor,
    *,
    max_filters: int = 32,
    max_channels: int = 16,
    rgb: bool | None = None,
    min_tile: int = 24,
) -> Tuple[np.ndarray, Dict[str, Any]]:
    """Render conv filters ``(out, in, kH, kW)`` as one image.

    Two layouts:

    - ``rgb`` (default when ``in == 3``): each filter is one colour tile, the three input
      channels read as R, G, B, min-max normalised per filter; up to ``max_filters`` filters on a
      near-square grid.
    - per channel (deeper layers): one row per filter (up to ``max_filters``), one tile per input
      channel (up to ``max_channels``), on a diverging colormap scaled per filter by its largest
      absolute weight (white = 0, red = positive, blue = negative), so rows are comparable within
      a filter and zero always looks the same.

    The first filters/channels are drawn (not a data-dependent choice), so the same filters are
    shown at every step. Tiles are upscaled (nearest) to at least ``min_tile`` pixels.

    Returns:
        ``(image, meta)``: a ``uint8`` ``(H, W, 3)`` array and a JSON-ready description
        (layout, counts shown/total, value range, scale).

    Example:
        >>> img, meta = filter_grid(torch.randn(16, 3, 5, 5))
        >>> img.shape, meta["layout"]
        ((110, 110, 3), 'rgb')
    """
    if weights.dim() != 4:
        raise ValueError(f"expected conv weights of shape (out, in, kH, kW), got {tuple(weights.shape)}")
    if max_filters < 1 or max_channels < 1:
        raise ValueError(f"max_filters and max_channels must be >= 1, got {max_filters}, {max_channels}")
    weights = weights.detach().float().cpu()
    out_ch, in_ch, kh, kw = weights.shape
    if rgb is None:
        rgb = in_ch == 3
    if rgb and in_ch != 3:
        raise ValueError(f"rgb=True needs 3 input channels, the filters have {in_ch}")
    shown = weights[:max_filters]
    meta: Dict[str, Any] = {
        "weight_shape": [out_ch, in_ch, kh, kw],
        "filters_shown": int(shown.shape[0]),
        "filters_total": int(out_ch),
        "weight_min": float(weights.min()),
        "weight_max": float(weights.max()),
    }
    if rgb:
        flat = shown.flatten(1)
        lo, hi = flat.min(1).values, flat.max(1).values
        norm = (shown - lo[:, None, None, None]) / (hi - lo).clamp_min(1e-12)[:, None, None, None]
        tiles, scale = upscale(norm.permute(0, 2, 3, 1), min_tile)
        ncols = math.ceil(math.sqrt(len(tiles)))
        image = tile_grid(tiles, ncols, gap=2, row_gap=2)
        meta.update(layout="rgb", channels_shown=3, channels_total=3, normalization="min-max per filter")
    else:
        shown = shown[:, :max_channels]
        peak = shown.flatten(1).abs().max(1).values.clamp_min(1e-12)
        colours = diverging(shown / peak[:, None, None, None])  # (F, C, kh, kw, 3)
        f, c = colours.shape[:2]
        tiles, scale = upscale(colours.reshape(f * c, kh, kw, 3), min_tile)
        image = tile_grid(tiles, ncols=c, gap=1, row_gap=3)
        meta.update(
            layout="per_channel",
            channels_shown=int(c),
            channels_total=int(in_ch),
            normalization="diverging, scaled per filter by max |w| (white = 0, red > 0, blue < 0)",
        )
    meta["scale"] = scale
    return to_uint8(image), meta


def panel(layer: str, weights: torch.Tensor, *, max_filters: int = 32, max_channels: int = 16) -> Panel:
    """The step of ``filters/<layer>``: the grid of :func:`filter_grid`, captioned, and its meta.

    Args:
        layer: the layer's module name.
        weights: ``(out, in, kH, kW)`` filters (a CPU copy, see ``methods.filter_weights``).
        max_filters: at most this many filters (rows) are drawn.
        max_channels: at most this many input channels per filter (deeper layers).

    Example:
        >>> step = panel("conv1", torch.randn(8, 3, 5, 5))
        >>> step.meta["layer"], step.meta["layout"], step.items[0].caption
        ('conv1', 'rgb', '8 of 8 filters as RGB, 5x5, min-max per filter')
    """
    image, meta = filter_grid(weights, max_filters=max_filters, max_channels=max_channels)
    out_ch, in_ch, kh, kw = meta["weight_shape"]
    if meta["layout"] == "rgb":
        caption = f"{meta['filters_shown']} of {out_ch} filters as RGB, {kh}x{kw}, min-max per filter"
    else:
        caption = (
            f"{meta['filters_shown']} of {out_ch} filters (rows) x {meta['channels_shown']} of {in_ch} "
            f"input channels, {kh}x{kw}; blue < 0 < red, scaled per filter"
        )
    return Panel(
        items=[png_item(image, caption)],
        meta={"layer": layer, **meta},
        description=f"Filters of {layer} (Conv2d {in_ch}->{out_ch}, {kh}x{kw})",
    )
