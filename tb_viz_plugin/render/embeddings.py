"""The ``embeddings`` view: the 2-D map and its samples' thumbnails, as one sprite sheet.

The Projector reads one sprite image per embedding: square thumbnails on a grid of
``ceil(sqrt(N))`` columns, row by row, at most 8192 x 8192 pixels. The same layout serves the
tb-viz scatter view, which crops a sample's thumbnail out of the sprite on hover.
"""

from __future__ import annotations

import collections
import hashlib
import math
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn.functional as F

from tb_viz_plugin.methods.embeddings import EmbeddingMap
from tb_viz_plugin import summary
from tb_viz_plugin.render import Panel, ToRGB, encode_png, input_rgb, tile_grid, to_uint8

SPRITE_MAX_PX = 8192
"""The Projector's limit on the sprite's width and height."""
THUMB_MAX_PX = 48
"""Largest thumbnail side; smaller when many samples must fit in ``SPRITE_MAX_PX``."""
_DECIMALS = 4


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


_PNG_CACHE: "collections.OrderedDict[str, bytes]" = collections.OrderedDict()


def sprite_png(thumbs: torch.Tensor, columns: int) -> bytes:
    """The PNG of the square sprite (``columns`` x ``columns`` cells, grey past the last thumbnail).

    The same sprite comes back every epoch of a run (its samples are fixed): the encoding of the
    last few sprites is reused.

    Example:
        >>> png = sprite_png(torch.rand(5, 3, 8, 8), columns=3)
        >>> png[:4], sprite_png(torch.zeros(5, 3, 8, 8), 3) == sprite_png(torch.zeros(5, 3, 8, 8), 3)
        (b'\\x89PNG', True)
    """
    n = len(thumbs)
    grey = torch.full((columns * columns - n, *thumbs.shape[1:]), 0.5, dtype=thumbs.dtype)
    pixels = sprite(torch.cat([thumbs, grey]) if len(grey) else thumbs, columns)
    key = hashlib.sha256(pixels.tobytes()).hexdigest() + str(pixels.shape)
    if key not in _PNG_CACHE:
        _PNG_CACHE[key] = encode_png(pixels)
        while len(_PNG_CACHE) > 4:
            _PNG_CACHE.popitem(last=False)
    _PNG_CACHE.move_to_end(key)
    return _PNG_CACHE[key]


def sample_thumbnails(images: torch.Tensor, to_rgb: Optional[ToRGB] = None) -> Tuple[torch.Tensor, int]:
    """The square thumbnails of N samples at the sprite's size, and the sprite's column count.

    Args:
        images: ``(N, C, H, W)`` model inputs (any size; e.g. already shrunk to ``THUMB_MAX_PX``).
        to_rgb: inputs -> RGB in ``[0, 1]``; ``None`` = each image stretched to its own min-max range.

    Returns:
        ``(thumbs (N, 3, s, s) in [0, 1], columns)``.

    Example:
        >>> thumbs, columns = sample_thumbnails(torch.rand(5, 3, 64, 40))
        >>> tuple(thumbs.shape), columns
        ((5, 3, 48, 48), 3)
    """
    rgb = input_rgb(images, to_rgb).permute(0, 3, 1, 2)
    size, columns = sprite_layout(len(rgb), min(THUMB_MAX_PX, max(rgb.shape[-2:])))
    return thumbnails(rgb, size), columns


def _rounded(points: torch.Tensor) -> List[List[float]]:
    return [[round(float(x), _DECIMALS), round(float(y), _DECIMALS)] for x, y in points.tolist()]


def panel(
    embedding: EmbeddingMap,
    *,
    labels: Optional[torch.Tensor] = None,
    predicted: Optional[torch.Tensor] = None,
    thumbs: Optional[Tuple[torch.Tensor, int]] = None,
    class_names: Optional[Sequence[str]] = None,
    indices: Optional[Sequence[int]] = None,
    projector: bool = False,
) -> Panel:
    """The step of an ``embeddings`` tag: the map, labels and quality in the meta, the sprite as its one item.

    Args:
        embedding: the features and their map (``methods.embed``).
        labels: ``(N,)`` true classes.
        predicted: ``(N,)`` predicted classes.
        thumbs: :func:`sample_thumbnails` of the samples, or ``None`` for no sprite.
        class_names: names of the class indices.
        indices: an id per sample (e.g. dataset indices); default ``0..N-1``.
        projector: whether the full features also go to the Projector (said in the description).

    Raises:
        ValueError: labels, predicted, thumbnails or indices of another length than the features.
    """
    n, dim = embedding.features.shape
    for name, value in (("labels", labels), ("predicted", predicted)):
        if value is not None and tuple(value.shape) != (n,):
            raise ValueError(f"{name} must have shape ({n},), got {tuple(value.shape)}")
    if thumbs is not None and len(thumbs[0]) != n:
        raise ValueError(f"{len(thumbs[0])} thumbnails for {n} samples")
    if indices is not None and len(indices) != n:
        raise ValueError(f"{len(indices)} indices for {n} samples")
    meta: Dict[str, Any] = {
        "method": embedding.method,
        "num_samples": n,
        "feature_dim": dim,
        "aligned": embedding.aligned,
        "indices": list(range(n)) if indices is None else [int(i) for i in indices],
        "points": _rounded(embedding.points),
    }
    if embedding.explained_variance is not None:
        meta["explained_variance"] = [round(float(r), _DECIMALS) for r in embedding.explained_variance]
    if labels is not None:
        meta["labels"] = labels.detach().cpu().long().tolist()
    if embedding.quality is not None:
        meta["quality"] = dict(embedding.quality)
    if predicted is not None:
        meta["predicted"] = predicted.detach().cpu().long().tolist()
    if class_names is not None:
        meta["class_names"] = [str(name) for name in class_names]
    items = []
    if thumbs is not None:
        images, columns = thumbs
        caption = f"thumbnails of the {n} samples ({images.shape[-1]} px, {columns} per row)"
        side = columns * int(images.shape[-1])
        extra = {"width": side, "height": side, "tile": int(images.shape[-1]), "columns": columns}
        items.append(summary.Item(data=sprite_png(images, columns), caption=caption, extra=extra, static=True))
    description = f"{n} samples, {dim}-d features, 2-D map by {'PCA' if embedding.method == 'pca' else 't-SNE'}" + (
        " (full features in the Projector tab)" if projector else ""
    )
    return Panel(items, meta, description)
