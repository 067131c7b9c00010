"""The ``activation_maps`` view: per probe image, the image followed by feature maps of it, on one grid.

Feature maps use the package's diverging colormap (white = 0, red > 0, blue < 0), each map scaled
by its own largest absolute value.
"""

from __future__ import annotations

import math
from typing import Dict, Mapping, Optional, Sequence

import numpy as np
import torch

from tb_viz_plugin.methods.activations import FeatureMaps
from tb_viz_plugin.render import GAP, Panel, ToRGB, diverging, input_rgb, label_tiles, png_item, resize, scale_for
from tb_viz_plugin.render import tile_grid, to_uint8

NORMALIZATION = "per map by max |a| (white = 0, red > 0, blue < 0)"


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
    scale = scale_for(height, width, min_tile)
    size = (height * scale, width * scale)
    maps = maps.detach().float().cpu()
    peak = maps.abs().flatten(1).max(1).values.clamp_min(1e-12)
    heat = diverging(resize(maps / peak[:, None, None], size))
    picture = resize(image.permute(2, 0, 1), size).permute(1, 2, 0)
    tiles = torch.cat([picture[None], heat])
    ncols = math.ceil(math.sqrt(len(tiles)))
    canvas = to_uint8(tile_grid(tiles, ncols, gap=GAP, row_gap=GAP))
    return label_tiles(canvas, size, ncols, ["", *labels])



def panels(
    images: torch.Tensor,
    results: Mapping[str, FeatureMaps],
    *,
    to_rgb: Optional[ToRGB] = None,
    captions: Optional[Sequence[str]] = None,
) -> Dict[str, Panel]:
    """The step of ``activation_maps/<layer>`` for each layer: one grid per probe image, and the meta.

    Args:
        images: ``(N, C, H, W)`` the probe images (model inputs, on the CPU).
        results: per layer, the shown units' maps (``methods.activation_maps``, on the CPU).
        to_rgb: inputs -> RGB in ``[0, 1]``; ``None`` = min-max per image.
        captions: one caption prefix per image (e.g. ``"val #12"``); default ``"image i"``.

    Raises:
        ValueError: ``captions`` of another length than ``images``.

    Example:
        >>> maps = FeatureMaps("conv", torch.rand(2, 3, 4, 4), [5, 0, 2], 8, chosen=True)
        >>> step = panels(torch.rand(2, 3, 8, 8), {"conv": maps}, captions=["a", "b"])["conv"]
        >>> step.items[1].caption, step.meta["feature_shape"]
        ('b: the image, then channels 5, 0, 2 (3 chosen of 8)', [8, 4, 4])
    """
    labels = list(captions) if captions is not None else [f"image {i}" for i in range(images.shape[0])]
    if len(labels) != images.shape[0]:
        raise ValueError(f"got {len(labels)} captions for {images.shape[0]} images")
    pictures = input_rgb(images, to_rgb)
    out = {}
    for layer, result in results.items():
        shown, units = result.maps.float().cpu(), result.units
        how = f"{len(units)} {'chosen' if result.chosen else 'most active'} of {result.channels}"
        items = [
            png_item(
                activation_grid(pictures[i], shown[i], [f"ch {u}" for u in units]),
                f"{labels[i]}: the image, then channels {', '.join(map(str, units))} ({how})",
                channels=units,
                peaks=[float(p) for p in shown[i].flatten(1).abs().max(1).values],
            )
            for i in range(len(shown))
        ]
        h, w = shown.shape[2:]
        meta = {
            "layer": layer,
            "feature_shape": [result.channels, int(h), int(w)],
            "channels_shown": len(units),
            "channels_total": result.channels,
            "selection": "given" if result.chosen else "most active (mean over the images)",
            "normalization": NORMALIZATION,
        }
        out[layer] = Panel(items, meta, f"Feature maps of {layer} ({result.channels} channels, {h}x{w})")
    return out
