"""Activations as images: feature-map grids and top-k receptive-field patch rows.

Inputs are tensors (feature maps, crops, values); outputs ``uint8`` ``(H, W, 3)`` arrays. Feature maps
use the package's diverging colormap (white = 0, red > 0, blue < 0), each map scaled by its own
largest absolute value; patches show the unit's upsampled activation outlined and its value.
"""

from __future__ import annotations

import functools
import math
from typing import Callable, List, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw, ImageFont

from tb_viz_plugin.render import _BACKGROUND, diverging, tile_grid, to_uint8

ToRGB = Callable[[torch.Tensor], torch.Tensor]
"""Maps model inputs ``(N, C, H, W)`` to displayable RGB ``(N, 3, H, W)`` in ``[0, 1]`` (e.g. un-normalising)."""

OUTLINE = (0.0, 1.0, 0.25)
"""Colour of the activation outline on patches (bright green)."""

_GAP = 2


def input_rgb(images: torch.Tensor, to_rgb: Optional[ToRGB] = None) -> torch.Tensor:
    """Model inputs as displayable images ``(N, H, W, 3)`` in ``[0, 1]`` on the CPU.

    Args:
        images: ``(N, C, H, W)`` inputs (crops included).
        to_rgb: maps inputs to ``(N, 3, H, W)`` in ``[0, 1]``; ``None`` = min-max scaling of each image
            (over all its channels), with one channel shown as grey.

    Raises:
        ValueError: ``to_rgb`` is ``None`` and the inputs have neither 1 nor 3 channels, or ``to_rgb``
            returns another shape.

    Example:
        >>> input_rgb(torch.randn(2, 1, 8, 8)).shape
        torch.Size([2, 8, 8, 3])
    """
    images = images.detach()
    if to_rgb is not None:
        rgb = to_rgb(images)
        if rgb.dim() != 4 or rgb.shape[1] != 3 or rgb.shape[0] != images.shape[0] or rgb.shape[2:] != images.shape[2:]:
            raise ValueError(f"to_rgb must return (N, 3, H, W) for inputs {tuple(images.shape)}, got {tuple(rgb.shape)}")
    else:
        if images.shape[1] not in (1, 3):
            raise ValueError(f"inputs with {images.shape[1]} channels need a to_rgb function to be shown")
        flat = images.float().flatten(1)
        low, high = flat.min(1).values, flat.max(1).values
        rgb = (images.float() - low[:, None, None, None]) / (high - low).clamp_min(1e-12)[:, None, None, None]
        rgb = rgb.expand(-1, 3, -1, -1)
    return rgb.float().clamp(0, 1).permute(0, 2, 3, 1).cpu()


def _scale_for(height: int, width: int, min_tile: int) -> int:
    return max(1, math.ceil(min_tile / max(1, min(height, width))))


def _resize(x: torch.Tensor, size: Tuple[int, int], mode: str = "nearest") -> torch.Tensor:
    """``(N, h, w)`` -> ``(N, *size)``."""
    kwargs = {} if mode == "nearest" else {"align_corners": False}
    return F.interpolate(x[:, None].float(), size=size, mode=mode, **kwargs)[:, 0]


@functools.lru_cache(maxsize=8)
def _font(size: int) -> ImageFont.ImageFont:
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1: the fixed bitmap font
        return ImageFont.load_default()


def _label_tiles(canvas: np.ndarray, tile: Tuple[int, int], ncols: int, labels: Sequence[Optional[str]]) -> np.ndarray:
    """Draw ``labels[i]`` (white on a dark box) in the top-left corner of tile ``i`` of a ``tile_grid``."""
    image = Image.fromarray(canvas)
    draw = ImageDraw.Draw(image)
    font = _font(max(9, min(14, tile[0] // 6)))
    for i, text in enumerate(labels):
        if not text:
            continue
        row, col = divmod(i, ncols)
        x, y = _GAP + col * (tile[1] + _GAP), _GAP + row * (tile[0] + _GAP)
        left, top, right, bottom = draw.textbbox((x + 2, y + 1), text, font=font)
        draw.rectangle((x, y, right + 2, bottom + 2), fill=(0, 0, 0))
        draw.text((x + 2, y + 1), text, fill=(255, 255, 255), font=font)
    return np.asarray(image)


def activation_grid(
    image: torch.Tensor, maps: torch.Tensor, labels: Sequence[str] = (), *, min_tile: int = 64
) -> np.ndarray:
    """One probe image followed by feature maps of it, on a near-square grid.

    Maps are enlarged (nearest) to the image size so positions line up, and coloured with the
    diverging colormap scaled per map by its largest absolute value (white = 0, red > 0, blue < 0).

    Args:
        image: ``(H, W, 3)`` in ``[0, 1]`` (see :func:`input_rgb`).
        maps: ``(C', h, w)`` feature maps of the image.
        labels: drawn on the map tiles (e.g. channel numbers), one per map.
        min_tile: tiles are enlarged (nearest) so their smaller side is at least this.

    Returns:
        ``uint8`` ``(H', W', 3)``.

    Example:
        >>> activation_grid(torch.rand(16, 16, 3), torch.randn(8, 4, 4), min_tile=32).shape
        (104, 104, 3)
    """
    height, width = image.shape[:2]
    scale = _scale_for(height, width, min_tile)
    size = (height * scale, width * scale)
    maps = maps.detach().float().cpu()
    peak = maps.abs().flatten(1).max(1).values.clamp_min(1e-12)
    heat = diverging(_resize(maps / peak[:, None, None], size))
    picture = _resize(image.permute(2, 0, 1), size).permute(1, 2, 0)
    tiles = torch.cat([picture[None], heat])
    ncols = math.ceil(math.sqrt(len(tiles)))
    canvas = to_uint8(tile_grid(tiles, ncols, gap=_GAP, row_gap=_GAP))
    return _label_tiles(canvas, size, ncols, ["", *labels])


def _outline(mask: torch.Tensor, width: int) -> torch.Tensor:
    """Border pixels (``width`` thick, inside) of the True regions of ``(N, h, w)`` masks."""
    inside = -F.max_pool2d(-mask[:, None].float(), 2 * width + 1, stride=1, padding=width)[:, 0]
    return mask & (inside < 0.5)


def top_activation_row(
    crops: torch.Tensor,
    maps: torch.Tensor,
    origins: torch.Tensor,
    values: torch.Tensor,
    image_size: Tuple[int, int],
    labels: Sequence[Optional[str]],
    *,
    level: float = 0.5,
    min_tile: int = 64,
) -> np.ndarray:
    """One unit's top-k patches side by side, best first, each with the activation outlined and labelled.

    Each patch is the receptive-field crop of the input. The unit's feature map on that sample is
    upsampled (bilinear) to the input size, cut at the crop's position, and the region where it
    reaches ``level`` times the unit's maximum is outlined. Empty entries are left grey.

    Args:
        crops: ``(k, h, w, 3)`` in ``[0, 1]`` (see :func:`input_rgb`).
        maps: ``(k, H', W')`` the unit's feature maps.
        origins: ``(k, 2)`` top-left input pixel of each crop.
        values: ``(k,)`` the unit's maximum on each sample (``-inf`` = empty entry).
        image_size: ``(H, W)`` of the inputs.
        labels: text drawn on each patch (e.g. the value), ``None`` for none.
        level: outline threshold as a fraction of the maximum.
        min_tile: patches are enlarged (nearest) so their smaller side is at least this.

    Returns:
        ``uint8`` array of one row of ``k`` tiles.

    Example:
        >>> row = top_activation_row(torch.rand(3, 10, 10, 3), torch.rand(3, 8, 8), torch.zeros(3, 2, dtype=torch.long),
        ...                          torch.ones(3), (32, 32), ["1.0", "0.9", None], min_tile=40)
        >>> row.shape
        (44, 128, 3)
    """
    return top_activation_rows(
        crops[None], maps[None], origins[None], values[None], image_size, [labels], level=level, min_tile=min_tile
    )[0]


_ROWS_PIXELS = 1 << 22
"""Upsampled activation pixels rendered at once by :func:`top_activation_rows` (bounds its memory)."""


def top_activation_rows(
    crops: torch.Tensor,
    maps: torch.Tensor,
    origins: torch.Tensor,
    values: torch.Tensor,
    image_size: Tuple[int, int],
    labels: Sequence[Sequence[Optional[str]]],
    *,
    level: float = 0.5,
    min_tile: int = 64,
) -> List[np.ndarray]:
    """:func:`top_activation_row` for U units at once (the tensor work batched over units).

    Args:
        crops: ``(U, k, h, w, 3)``; maps ``(U, k, H', W')``; origins ``(U, k, 2)``; values ``(U, k)``.
        labels: per unit, per patch.

    Returns:
        U ``uint8`` arrays, one row of ``k`` tiles each.
    """
    count, k, height, width = crops.shape[:4]
    scale = _scale_for(height, width, min_tile)
    tile = (height * scale, width * scale)
    chunk = max(1, _ROWS_PIXELS // max(1, k * image_size[0] * image_size[1] * scale * scale))
    rows: List[np.ndarray] = []
    for start in range(0, count, chunk):
        part = slice(start, start + chunk)
        canvases = _patch_rows(crops[part], maps[part], origins[part], values[part], image_size, scale, level)
        rows += [_label_tiles(canvas, tile, k, labels[start + i]) for i, canvas in enumerate(canvases)]
    return rows


def _patch_rows(
    crops: torch.Tensor,
    maps: torch.Tensor,
    origins: torch.Tensor,
    values: torch.Tensor,
    image_size: Tuple[int, int],
    scale: int,
    level: float,
) -> np.ndarray:
    """The unlabelled rows ``(U, H_row, W_row, 3)`` ``uint8`` of :func:`top_activation_rows`."""
    count, k, height, width = crops.shape[:4]
    n, (th, tw) = count * k, (height * scale, width * scale)
    tiles = crops.float().cpu().flatten(0, 1)
    if scale > 1:
        tiles = _resize(tiles.permute(0, 3, 1, 2).flatten(0, 1), (th, tw)).reshape(n, 3, th, tw).permute(0, 2, 3, 1)
    heat = _resize(maps.float().cpu().flatten(0, 1), (image_size[0] * scale, image_size[1] * scale), mode="bilinear")
    values = values.float().cpu().flatten()
    if heat.shape[1:] == (th, tw):
        windows = heat  # the crops are the whole image
    else:
        origins = origins.cpu().long().flatten(0, 1) * scale
        rows = origins[:, 0, None] + torch.arange(th)  # (n, th) input rows of each crop
        cols = origins[:, 1, None] + torch.arange(tw)
        windows = heat[torch.arange(n)[:, None, None], rows[:, :, None], cols[:, None, :]]  # (n, th, tw)
    masks = (windows >= level * values[:, None, None]) & (values > 0)[:, None, None]
    edges = _outline(masks, max(1, th // 64))
    tiles = torch.where(edges[..., None], torch.tensor(OUTLINE), tiles)
    tiles[~torch.isfinite(values)] = _BACKGROUND
    canvas = torch.full((count, th + 2 * _GAP, k * (tw + _GAP) + _GAP, 3), _BACKGROUND)
    tiles = tiles.reshape(count, k, th, tw, 3)
    for j in range(k):
        x = _GAP + j * (tw + _GAP)
        canvas[:, _GAP : _GAP + th, x : x + tw] = tiles[:, j]
    return to_uint8(canvas)


def label_list(values: Sequence[float], template: str = "{:.3g}") -> List[Optional[str]]:
    """Format finite values with ``template``; ``None`` for empty (non-finite) entries."""
    return [template.format(v) if math.isfinite(v) else None for v in values]
