"""The ``top_activations`` view: per unit, its top-k receptive-field patches side by side, best first.

Each patch shows the unit's upsampled activation outlined where it reaches half its maximum; its
value goes to the manifest and the browser draws it (no text burned into the pixels). With unit
occlusion, a transparent overlay per unit, laid out like its patches, shows each patch's
discrepancy map (the empirical receptive field); the view toggles it.
"""

from __future__ import annotations

import math
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn.functional as F

from tb_viz_plugin import summary
from tb_viz_plugin.methods.attribution.unit_occlusion import TopKOcclusion
from tb_viz_plugin.methods.receptive_field import compare_empirical
from tb_viz_plugin.methods.top_k import UnitTopK
from tb_viz_plugin.render import BACKGROUND, GAP, Panel, ToRGB, input_rgb, png_item, resize, scale_for
from tb_viz_plugin.render import to_uint8

OUTLINE = (0.0, 1.0, 0.25)
"""Colour of the activation outline on patches (bright green)."""

SAMPLE_IDS = ("dataset index", "stream position")
"""What the sample ids of a top-k are: dataset indices (a known, unshuffled order) or positions in the stream."""


def _outline(mask: torch.Tensor, width: int) -> torch.Tensor:
    """Border pixels (``width`` thick, inside) of the True regions of ``(N, h, w)`` masks."""
    inside = -F.max_pool2d(-mask[:, None].float(), 2 * width + 1, stride=1, padding=width)[:, 0]
    return mask & (inside < 0.5)


def tile_size(crop_size: Tuple[int, int], min_tile: int = 64) -> Tuple[int, int]:
    """``(height, width)`` of one patch in a row image: the crop enlarged (nearest) to at least ``min_tile``.

    Patch ``j`` of a row starts at ``(GAP, GAP + j * (width + GAP))``; the view places its value
    labels and the occlusion overlay from this (``meta.tile``, ``meta.gap``).

    Example:
        >>> tile_size((10, 10), 40)
        (40, 40)
    """
    scale = scale_for(crop_size[0], crop_size[1], min_tile)
    return crop_size[0] * scale, crop_size[1] * scale


def top_activation_row(
    crops: torch.Tensor,
    maps: torch.Tensor,
    origins: torch.Tensor,
    values: torch.Tensor,
    image_size: Tuple[int, int],
    *,
    level: float = 0.5,
    min_tile: int = 64,
) -> np.ndarray:
    """One unit's top-k patches side by side, best first, each with the activation outlined.

    Each patch is the receptive-field crop of the input. The unit's feature map on that sample is
    upsampled (bilinear) to the input size, cut at the crop's position, and the region where it
    reaches ``level`` times the unit's maximum is outlined. Empty entries are left grey. The values
    are not drawn: they go to the manifest and the browser draws them.

    Args:
        crops: ``(k, h, w, 3)`` in ``[0, 1]`` (see :func:`input_rgb`).
        maps: ``(k, H', W')`` the unit's feature maps.
        origins: ``(k, 2)`` top-left input pixel of each crop.
        values: ``(k,)`` the unit's maximum on each sample (``-inf`` = empty entry).
        image_size: ``(H, W)`` of the inputs.
        level: outline threshold as a fraction of the maximum.
        min_tile: patches are enlarged (nearest) so their smaller side is at least this.

    Returns:
        ``uint8`` array of one row of ``k`` tiles.

    Example:
        >>> row = top_activation_row(torch.rand(3, 10, 10, 3), torch.rand(3, 8, 8), torch.zeros(3, 2, dtype=torch.long),
        ...                          torch.ones(3), (32, 32), min_tile=40)
        >>> row.shape
        (44, 128, 3)
    """
    return top_activation_rows(crops[None], maps[None], origins[None], values[None], image_size, level=level, min_tile=min_tile)[0]


_ROWS_PIXELS = 1 << 22
"""Upsampled activation pixels rendered at once by :func:`top_activation_rows` (bounds its memory)."""


def top_activation_rows(
    crops: torch.Tensor,
    maps: torch.Tensor,
    origins: torch.Tensor,
    values: torch.Tensor,
    image_size: Tuple[int, int],
    *,
    level: float = 0.5,
    min_tile: int = 64,
) -> List[np.ndarray]:
    """:func:`top_activation_row` for U units at once (the tensor work batched over units).

    Args:
        crops: ``(U, k, h, w, 3)``; maps ``(U, k, H', W')``; origins ``(U, k, 2)``; values ``(U, k)``.

    Returns:
        U ``uint8`` arrays, one row of ``k`` tiles each.
    """
    count, k, height, width = crops.shape[:4]
    scale = scale_for(height, width, min_tile)
    chunk = max(1, _ROWS_PIXELS // max(1, k * image_size[0] * image_size[1] * scale * scale))
    rows: List[np.ndarray] = []
    for start in range(0, count, chunk):
        part = slice(start, start + chunk)
        rows += list(_patch_rows(crops[part], maps[part], origins[part], values[part], image_size, scale, level))
    return rows


def _layout(tiles: torch.Tensor, background: Sequence[float]) -> torch.Tensor:
    """``(U, k, th, tw, C)`` tiles side by side per unit, ``GAP`` pixels of ``background`` between them."""
    count, k, th, tw, channels = tiles.shape
    canvas = torch.tensor(list(background), dtype=tiles.dtype).expand(count, th + 2 * GAP, k * (tw + GAP) + GAP, channels).clone()
    for j in range(k):
        x = GAP + j * (tw + GAP)
        canvas[:, GAP : GAP + th, x : x + tw] = tiles[:, j]
    return canvas


def occlusion_rows(maps: torch.Tensor, k: Optional[int] = None, *, level: float = 0.5, min_tile: int = 64) -> np.ndarray:
    """Unit occlusion overlays, laid out like :func:`top_activation_rows`: ``(U, H_row, W_row, 4)`` RGBA ``uint8``.

    Each of the first tiles is one discrepancy map over its crop, normalised by its positive
    maximum, as a spotlight: a dark veil where occluding does not lower the unit, clearing as the
    drop grows, and the region at ``level`` times the maximum (the empirical receptive field)
    outlined in white. Tiles past ``maps``' ranks (up to ``k``) are transparent.

    Args:
        maps: ``(U, k', h, w)`` discrepancy maps (``TopKOcclusion.maps``).
        k: tiles per row (the top-k's k, at least ``k'``); default ``k'``.
        level: the outline's fraction of each map's maximum.
        min_tile: as for :func:`top_activation_rows` (the same tile size for the same crops).

    Example:
        >>> occlusion_rows(torch.rand(2, 2, 10, 10), k=3, min_tile=40).shape
        (2, 44, 128, 4)
    """
    count, occluded, height, width = maps.shape
    k = occluded if k is None else k
    tile = tile_size((height, width), min_tile)
    flat = maps.detach().float().cpu().flatten(0, 1)
    peak = flat.flatten(1).amax(1)
    t = (flat / peak.clamp_min(1e-12)[:, None, None]).clamp(0, 1) * (peak > 0)[:, None, None]
    t = resize(t, tile, mode="bilinear").clamp(0, 1)
    edges = _outline(t >= level, max(1, tile[0] // 64)) & (peak > 0)[:, None, None]
    rgba = torch.zeros(*t.shape, 4)
    rgba[..., 3] = 0.78 * (1 - t) ** 1.5
    rgba = torch.where(edges[..., None], torch.tensor([1.0, 1.0, 1.0, 1.0]), rgba)
    rows = torch.zeros(count, k, *tile, 4)
    rows[:, :occluded] = rgba.reshape(count, occluded, *tile, 4)
    return to_uint8(_layout(rows, (0.0, 0.0, 0.0, 0.0)))


def _patch_rows(
    crops: torch.Tensor,
    maps: torch.Tensor,
    origins: torch.Tensor,
    values: torch.Tensor,
    image_size: Tuple[int, int],
    scale: int,
    level: float,
) -> np.ndarray:
    """The rows ``(U, H_row, W_row, 3)`` ``uint8`` of :func:`top_activation_rows`."""
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
    return to_uint8(_layout(tiles.reshape(count, k, th, tw, 3), (BACKGROUND,) * 3))


def _finite(values: Iterable[float]) -> List[Optional[float]]:
    return [v if math.isfinite(v) else None for v in values]


def _round(values: Iterable[float]) -> List[Optional[float]]:
    return [round(v, 2) if math.isfinite(v) else None for v in values]


def _occlusion_items(layer: str, top: UnitTopK, occlusion: TopKOcclusion) -> Tuple[List[summary.Item], Dict[str, Any]]:
    """The overlay items (one per unit, ``role: "occlusion"``) and the ``occlusion`` meta of one layer."""
    count, k = occlusion.maps.shape[:2]
    if count != top.values.shape[0] or k > top.values.shape[1] or tuple(occlusion.maps.shape[2:]) != top.geometry.crop_size:
        raise ValueError(
            f"{layer}: occlusion maps {tuple(occlusion.maps.shape)} do not fit the top-k "
            f"({top.values.shape[0]} units, k = {top.values.shape[1]}, crops {top.geometry.crop_size})"
        )
    maps, sizes = occlusion.maps.float().cpu(), occlusion.sizes.float().cpu()
    overlays = occlusion_rows(maps, top.values.shape[1])  # ranks not occluded: transparent
    peaks = maps.flatten(2).amax(2)
    rest = [None] * (top.values.shape[1] - k)  # ranks not occluded
    items = [
        png_item(
            overlay,
            f"unit {unit}: unit occlusion",
            role="occlusion",
            unit=unit,
            empirical_rf=[None if size.isnan().any() else _round(size.tolist()) for size in sizes[row]] + rest,
            drops=_round(peaks[row].tolist()) + rest,
        )
        for row, (unit, overlay) in enumerate(zip(top.units.tolist(), overlays))
    ]
    meta = {"k": k, "window": list(occlusion.window), "stride": list(occlusion.stride), "threshold": occlusion.threshold,
            **compare_empirical(top.geometry.rf, sizes)}  # fmt: skip
    return items, meta


def panels(
    results: Mapping[str, UnitTopK],
    *,
    to_rgb: Optional[ToRGB] = None,
    sample_ids: str = "stream position",
    occlusion: Optional[Mapping[str, TopKOcclusion]] = None,
) -> Dict[str, Panel]:
    """The step of ``top_activations/<layer>`` for each layer: one gallery row per unit, and the meta.

    Per unit one item with ``role: "patches"`` (the row of patches; the values go to the manifest,
    the browser draws them) and, for layers in ``occlusion``, one ``role: "occlusion"`` overlay
    laid out like it (:func:`occlusion_rows`) with each entry's empirical receptive field.

    Args:
        results: per layer, its top-k (``UnitTopK.cpu()``).
        to_rgb: inputs -> RGB in ``[0, 1]``; ``None`` = min-max per patch.
        sample_ids: what the sample ids are, one of :data:`SAMPLE_IDS`, for the view.
        occlusion: per layer, ``methods.top_k_occlusion`` of its top-k (CPU or not).

    Raises:
        ValueError: an unknown ``sample_ids``, or occlusion maps that do not fit their top-k.
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
        pictures = top_activation_rows(crops, top.maps, origins, values, geometry.image_size)
        items = [
            png_item(
                picture,
                f"unit {unit}",
                role="patches",
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
            "tile": list(tile_size(geometry.crop_size)),
            "gap": GAP,
        }
        description = f"Top-{k} patches of {count} units of {layer} ({rf.describe()})"
        if occlusion is not None and layer in occlusion:
            overlays, meta["occlusion"] = _occlusion_items(layer, top, occlusion[layer])
            items += overlays
            description += f"; {meta['occlusion']['text']}"
        out[layer] = Panel(items, meta, description)
    return out
