"""Tensors to images: what every view's drawing shares (colormap, grids, labels, PNG encoding).

Everything here returns ``uint8`` arrays of shape ``(H, W, 3)`` (or PNG bytes, or summary items);
nothing writes. One module per view, named by its kind (``render/<kind>.py``), turns a step's
results (CPU tensors) into a :class:`Panel`: the encoded images with their manifest entries, the
step's meta and the tag's description.
"""

from __future__ import annotations

import functools
import io
import math
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw, ImageFont

from tb_viz_plugin import summary

ToRGB = Callable[[torch.Tensor], torch.Tensor]
"""Maps model inputs ``(N, C, H, W)`` to displayable RGB ``(N, 3, H, W)`` in ``[0, 1]`` (e.g. un-normalising)."""

# Diverging colormap (ColorBrewer RdBu, reversed): negative = blue, zero = near white, positive = red.
_DIVERGING = torch.tensor(
    [[33, 102, 172], [146, 197, 222], [247, 247, 247], [244, 165, 130], [178, 24, 43]], dtype=torch.float32
) / 255.0
BACKGROUND = 0.2
"""Grey level between tiles (and of empty tiles)."""

GAP = 2
"""Pixels between the tiles of activation grids and patch rows."""


@dataclass(frozen=True)
class Panel:
    """One step of one tag, ready to write: items (images with manifest entries), step meta, tag description."""

    items: List[summary.Item]
    meta: Dict[str, Any]
    description: str


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


PNG_COMPRESS_LEVEL = 1
"""zlib level of every PNG: 1 encodes ~3x faster than PIL's default 6 for ~15% more bytes (encoding
was most of the background writer's time; see BENCHMARKS.md, issue 12)."""


def encode_png(image: np.ndarray) -> bytes:
    """Encode a ``uint8`` ``(H, W)`` or ``(H, W, 3)`` array as PNG (zlib level :data:`PNG_COMPRESS_LEVEL`)."""
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG", optimize=False, compress_level=PNG_COMPRESS_LEVEL)
    return buffer.getvalue()


def png_item(image: np.ndarray, caption: str = "", static: bool = False, **extra: Any) -> summary.Item:
    """A summary item holding ``image`` as PNG, with its size and ``extra`` in the manifest.

    ``static``: the same picture is expected at every step (stored once, see ``summary.Item``).
    """
    return summary.Item(
        data=encode_png(image),
        caption=caption,
        extra={"width": int(image.shape[1]), "height": int(image.shape[0]), **extra},
        static=static,
    )


def tile_grid(tiles: torch.Tensor, ncols: int, gap: int = 1, row_gap: int = 1) -> torch.Tensor:
    """Lay ``(N, h, w, 3)`` tiles out on a grid of ``ncols`` columns with background-coloured gaps."""
    n, h, w, _ = tiles.shape
    nrows = max(1, math.ceil(n / ncols))
    canvas = torch.full(
        (nrows * h + (nrows + 1) * row_gap, ncols * w + (ncols + 1) * gap, 3), BACKGROUND, dtype=tiles.dtype
    )
    for i in range(n):
        r, c = divmod(i, ncols)
        y, x = row_gap + r * (h + row_gap), gap + c * (w + gap)
        canvas[y : y + h, x : x + w] = tiles[i]
    return canvas


def upscale(tiles: torch.Tensor, min_tile: int) -> Tuple[torch.Tensor, int]:
    """Nearest-neighbour upscale of ``(N, h, w, 3)`` tiles so that the smaller side is >= ``min_tile``."""
    scale = max(1, math.ceil(min_tile / min(tiles.shape[1], tiles.shape[2])))
    return tiles.repeat_interleave(scale, dim=1).repeat_interleave(scale, dim=2), scale



def pixels_rgb(
    images: torch.Tensor,
    to_rgb: Optional[ToRGB] = None,
    mean: Optional[Sequence[float]] = None,
    std: Optional[Sequence[float]] = None,
) -> torch.Tensor:
    """Images in ``[0, 1]`` of any channel count (generated, un-normalised) as RGB ``(N, 3, H, W)``.

    With ``to_rgb`` (which takes model inputs), the images are normalised with ``mean``/``std``
    first; without, three channels are shown as they are, fewer as grey (the first), more as
    the first three.

    Example:
        >>> pixels_rgb(torch.rand(2, 1, 4, 4)).shape, pixels_rgb(torch.rand(2, 5, 4, 4)).shape
        (torch.Size([2, 3, 4, 4]), torch.Size([2, 3, 4, 4]))
    """
    if to_rgb is not None:
        channels = images.shape[1]
        shift = torch.tensor(mean if mean is not None else [0.0] * channels).view(1, -1, 1, 1).to(images)
        scale = torch.tensor(std if std is not None else [1.0] * channels).view(1, -1, 1, 1).to(images)
        return to_rgb((images - shift) / scale).float().clamp(0, 1)
    if images.shape[1] == 3:
        return images
    return images[:, :1].expand(-1, 3, -1, -1) if images.shape[1] < 3 else images[:, :3]


def input_rgb(images: torch.Tensor, to_rgb: Optional[ToRGB] = None) -> torch.Tensor:
    """Model inputs as displayable images ``(N, H, W, 3)`` in ``[0, 1]`` on the CPU.

    Args:
        images: ``(N, C, H, W)`` inputs (crops included).
        to_rgb: maps inputs to ``(N, 3, H, W)`` in ``[0, 1]``; ``None`` = min-max scaling of each image
            (over all its channels), with one channel shown as grey, two as the first in grey, more
            than three as the first three.

    Raises:
        ValueError: ``to_rgb`` returns another shape.

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
            images = images[:, :3] if images.shape[1] > 3 else images[:, :1]
        flat = images.float().flatten(1)
        low, high = flat.min(1).values, flat.max(1).values
        rgb = (images.float() - low[:, None, None, None]) / (high - low).clamp_min(1e-12)[:, None, None, None]
        rgb = rgb.expand(-1, 3, -1, -1)
    return rgb.float().clamp(0, 1).permute(0, 2, 3, 1).cpu()


def scale_for(height: int, width: int, min_tile: int) -> int:
    """The integer upscale that brings the smaller side of ``height`` x ``width`` to at least ``min_tile``."""
    return max(1, math.ceil(min_tile / max(1, min(height, width))))


def resize(x: torch.Tensor, size: Tuple[int, int], mode: str = "nearest") -> torch.Tensor:
    """``(N, h, w)`` -> ``(N, *size)``."""
    kwargs = {} if mode == "nearest" else {"align_corners": False}
    return F.interpolate(x[:, None].float(), size=size, mode=mode, **kwargs)[:, 0]


@functools.lru_cache(maxsize=8)
def font(size: int) -> ImageFont.ImageFont:
    """Pillow's default font at ``size`` pixels (the fixed bitmap font on Pillow < 10.1)."""
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1: the fixed bitmap font
        return ImageFont.load_default()


def label_tiles(canvas: np.ndarray, tile: Tuple[int, int], ncols: int, labels: Sequence[Optional[str]]) -> np.ndarray:
    """Draw ``labels[i]`` (white on a dark box) in the top-left corner of tile ``i`` of a ``tile_grid``."""
    image = Image.fromarray(canvas)
    draw = ImageDraw.Draw(image)
    face = font(max(9, min(14, tile[0] // 6)))
    for i, text in enumerate(labels):
        if not text:
            continue
        row, col = divmod(i, ncols)
        x, y = GAP + col * (tile[1] + GAP), GAP + row * (tile[0] + GAP)
        left, top, right, bottom = draw.textbbox((x + 2, y + 1), text, font=face)
        draw.rectangle((x, y, right + 2, bottom + 2), fill=(0, 0, 0))
        draw.text((x + 2, y + 1), text, fill=(255, 255, 255), font=face)
    return np.asarray(image)

