"""Tensors to images: grids, colormaps and PNG encoding.

Everything returns ``uint8`` arrays of shape ``(H, W, 3)`` (or PNG bytes); no logging here. Views
of later kinds add their own modules in this package (``render/<area>.py``).
"""

from __future__ import annotations

import io
import math
from typing import Any, Dict, Tuple

import numpy as np
import torch
from PIL import Image

from tb_viz_plugin import summary

# Diverging colormap (ColorBrewer RdBu, reversed): negative = blue, zero = near white, positive = red.
_DIVERGING = torch.tensor(
    [[33, 102, 172], [146, 197, 222], [247, 247, 247], [244, 165, 130], [178, 24, 43]], dtype=torch.float32
) / 255.0
_BACKGROUND = 0.2  # grey between tiles


def diverging(values: torch.Tensor) -> torch.Tensor:
    """Map values in ``[-1, 1]`` to RGB in ``[0, 1]``; output shape ``values.shape + (3,)``."""
    anchors = _DIVERGING.to(values.device)
    pos = (values.clamp(-1, 1) + 1) * (len(anchors) - 1) / 2
    low = pos.floor().long().clamp(max=len(anchors) - 2)
    frac = (pos - low).unsqueeze(-1)
    return anchors[low] * (1 - frac) + anchors[low + 1] * frac


def to_uint8(image: torch.Tensor) -> np.ndarray:
    """``(H, W, 3)`` floats in ``[0, 1]`` to a ``uint8`` numpy array."""
    return (image.clamp(0, 1) * 255 + 0.5).to(torch.uint8).cpu().numpy()


def encode_png(image: np.ndarray) -> bytes:
    """Encode a ``uint8`` ``(H, W)`` or ``(H, W, 3)`` array as PNG."""
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG", optimize=False, compress_level=6)
    return buffer.getvalue()


def png_item(image: np.ndarray, caption: str = "", **extra: Any) -> summary.Item:
    """A summary item holding ``image`` as PNG, with its size and ``extra`` in the manifest."""
    return summary.Item(
        data=encode_png(image),
        caption=caption,
        extra={"width": int(image.shape[1]), "height": int(image.shape[0]), **extra},
    )


def tile_grid(tiles: torch.Tensor, ncols: int, gap: int = 1, row_gap: int = 1) -> torch.Tensor:
    """Lay ``(N, h, w, 3)`` tiles out on a grid of ``ncols`` columns with background-coloured gaps."""
    n, h, w, _ = tiles.shape
    nrows = max(1, math.ceil(n / ncols))
    canvas = torch.full(
        (nrows * h + (nrows + 1) * row_gap, ncols * w + (ncols + 1) * gap, 3), _BACKGROUND, dtype=tiles.dtype
    )
    for i in range(n):
        r, c = divmod(i, ncols)
        y, x = row_gap + r * (h + row_gap), gap + c * (w + gap)
        canvas[y : y + h, x : x + w] = tiles[i]
    return canvas


def _upscale(tiles: torch.Tensor, min_tile: int) -> Tuple[torch.Tensor, int]:
    """Nearest-neighbour upscale of ``(N, h, w, 3)`` tiles so that the smaller side is >= ``min_tile``."""
    scale = max(1, math.ceil(min_tile / min(tiles.shape[1], tiles.shape[2])))
    return tiles.repeat_interleave(scale, dim=1).repeat_interleave(scale, dim=2), scale


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
        tiles, scale = _upscale(norm.permute(0, 2, 3, 1), min_tile)
        ncols = math.ceil(math.sqrt(len(tiles)))
        image = tile_grid(tiles, ncols, gap=2, row_gap=2)
        meta.update(layout="rgb", channels_shown=3, channels_total=3, normalization="min-max per filter")
    else:
        shown = shown[:, :max_channels]
        peak = shown.flatten(1).abs().max(1).values.clamp_min(1e-12)
        colours = diverging(shown / peak[:, None, None, None])  # (F, C, kh, kw, 3)
        f, c = colours.shape[:2]
        tiles, scale = _upscale(colours.reshape(f * c, kh, kw, 3), min_tile)
        image = tile_grid(tiles, ncols=c, gap=1, row_gap=3)
        meta.update(
            layout="per_channel",
            channels_shown=int(c),
            channels_total=int(in_ch),
            normalization="diverging, scaled per filter by max |w| (white = 0, red > 0, blue < 0)",
        )
    meta["scale"] = scale
    return to_uint8(image), meta
