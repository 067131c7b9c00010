"""The ``top_activations`` view: per unit, its top-k receptive-field patches side by side, best first.

Each patch shows the unit's upsampled activation outlined where it reaches half its maximum, and
its value drawn on it.
"""

from __future__ import annotations

import math
from typing import Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn.functional as F

from tb_viz_plugin.methods.top_k import UnitTopK
from tb_viz_plugin.render import BACKGROUND, GAP, Panel, ToRGB, input_rgb, label_tiles, png_item, resize, scale_for
from tb_viz_plugin.render import to_uint8

OUTLINE = (0.0, 1.0, 0.25)
"""Colour of the activation outline on patches (bright green)."""

SAMPLE_IDS = ("dataset index", "stream position")
"""What the sample ids of a top-k are: dataset indices (a known, unshuffled order) or positions in the stream."""


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
    scale = scale_for(height, width, min_tile)
    tile = (height * scale, width * scale)
    chunk = max(1, _ROWS_PIXELS // max(1, k * image_size[0] * image_size[1] * scale * scale))
    rows: List[np.ndarray] = []
    for start in range(0, count, chunk):
        part = slice(start, start + chunk)
        canvases = _patch_rows(crops[part], maps[part], origins[part], values[part], image_size, scale, level)
        rows += [label_tiles(canvas, tile, k, labels[start + i]) for i, canvas in enumerate(canvases)]
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
        tiles = resize(tiles.permute(0, 3, 1, 2).flatten(0, 1), (th, tw)).reshape(n, 3, th, tw).permute(0, 2, 3, 1)
    heat = resize(maps.float().cpu().flatten(0, 1), (image_size[0] * scale, image_size[1] * scale), mode="bilinear")
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
    tiles[~torch.isfinite(values)] = BACKGROUND
    canvas = torch.full((count, th + 2 * GAP, k * (tw + GAP) + GAP, 3), BACKGROUND)
    tiles = tiles.reshape(count, k, th, tw, 3)
    for j in range(k):
        x = GAP + j * (tw + GAP)
        canvas[:, GAP : GAP + th, x : x + tw] = tiles[:, j]
    return to_uint8(canvas)


def label_list(values: Sequence[float], template: str = "{:.3g}") -> List[Optional[str]]:
    """Format finite values with ``template``; ``None`` for empty (non-finite) entries."""
    return [template.format(v) if math.isfinite(v) else None for v in values]


def _finite(values: Iterable[float]) -> List[Optional[float]]:
    return [v if math.isfinite(v) else None for v in values]


def panels(
    results: Mapping[str, UnitTopK], *, to_rgb: Optional[ToRGB] = None, sample_ids: str = "stream position"
) -> Dict[str, Panel]:
    """The step of ``top_activations/<layer>`` for each layer: one gallery row per unit, and the meta.

    Args:
        results: per layer, its top-k (``UnitTopK.cpu()``).
        to_rgb: inputs -> RGB in ``[0, 1]``; ``None`` = min-max per patch.
        sample_ids: what the sample ids are, one of :data:`SAMPLE_IDS`, for the view.

    Raises:
        ValueError: an unknown ``sample_ids``.
    """
    if sample_ids not in SAMPLE_IDS:
        raise ValueError(f"sample_ids must be one of {SAMPLE_IDS}, got {sample_ids!r}")
    out = {}
    for layer, top in results.items():
        geometry = top.geometry
        count, k = top.values.shape
        crops = input_rgb(top.crops.flatten(0, 1), to_rgb).reshape(count, k, *geometry.crop_size, 3)
        origins = geometry.crop_origins(top.positions).cpu()
        values, ids, positions = top.values.cpu(), top.sample_ids.cpu(), top.positions.cpu()
        labels = [label_list(row_values) for row_values in values.tolist()]
        pictures = top_activation_rows(crops, top.maps, origins, values, geometry.image_size, labels)
        items = [
            png_item(
                picture,
                f"unit {unit}",
                unit=unit,
                values=_finite(values[row].tolist()),
                sample_ids=[i if i >= 0 else None for i in ids[row].tolist()],
                positions=positions[row].tolist(),
            )
            for row, (unit, picture) in enumerate(zip(top.units.tolist(), pictures))
        ]
        rf = geometry.rf
        meta = {
            "layer": layer,
            "k": k,
            "units_shown": count,
            "channels_total": geometry.channels,
            "rf": rf.describe(),
            "rf_size": list(rf.size),
            "rf_stride": list(rf.stride),
            "rf_complete": rf.complete,
            "crop_size": list(geometry.crop_size),
            "feature_size": list(geometry.feature_size),
            "image_size": list(geometry.image_size),
            "samples": top.samples,
            "sample_ids": sample_ids,
        }
        out[layer] = Panel(items, meta, f"Top-{k} patches of {count} units of {layer} ({rf.describe()})")
    return out
