"""Bilinear up-sampling of feature maps, dense or only where it can reach a level (network dissection's hot loop).

:func:`upsample` is ``F.interpolate(..., mode="bilinear", align_corners=False)`` written as two
separable weighted sums. :func:`pixels_at_or_above` computes the same values, bit for bit, only in
the blocks of output pixels whose four source values can reach a per-unit level: a bilinear value
is a convex combination of its four sources, so a block whose sources all lie below the level has
no pixel at or above it. In network dissection only the few percent of pixels above a unit's
lowest histogram edge count, so this skips most of the up-sampling.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Tuple

import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class Axis:
    """One axis of bilinear resampling: per output index, its two sources and their weights."""

    low: torch.Tensor  # (target,) long
    high: torch.Tensor
    w_low: torch.Tensor  # (target,) float32
    w_high: torch.Tensor
    members: torch.Tensor  # (source, most) output indices whose low source is each source index, -1 padded

    @staticmethod
    def make(source: int, target: int, device: torch.device) -> "Axis":
        position = ((torch.arange(target, device=device, dtype=torch.float64) + 0.5) * source / target - 0.5).clamp(min=0)
        low = position.floor().long().clamp(max=source - 1)
        frac = (position - low).float()
        counts = torch.bincount(low, minlength=source)
        most = int(counts.max())
        members = torch.full((source, most), -1, dtype=torch.long, device=device)
        rank = torch.arange(target, device=device) - torch.cumsum(counts, 0).sub(counts)[low]
        members[low, rank] = torch.arange(target, device=device)
        return Axis(low, (low + 1).clamp(max=source - 1), 1 - frac, frac, members)


def upsample(maps: torch.Tensor, size: Tuple[int, int]) -> torch.Tensor:
    """Bilinear up-sampling of ``(N, U, h, w)`` maps to ``size`` (``F.interpolate``'s, ``align_corners=False``).

    Example:
        >>> maps = torch.rand(2, 3, 5, 7)
        >>> torch.allclose(upsample(maps, (20, 28)), F.interpolate(maps, size=(20, 28), mode="bilinear"), atol=1e-6)
        True
    """
    maps = maps.float()
    rows, cols = Axis.make(maps.shape[2], size[0], maps.device), Axis.make(maps.shape[3], size[1], maps.device)
    a, b = maps[:, :, rows.low][..., cols.low], maps[:, :, rows.high][..., cols.low]
    c, d = maps[:, :, rows.low][..., cols.high], maps[:, :, rows.high][..., cols.high]
    wr0, wr1 = rows.w_low.view(-1, 1), rows.w_high.view(-1, 1)
    return _combine(a, b, c, d, wr0, wr1, cols.w_low, cols.w_high)


def _combine(a, b, c, d, wr0, wr1, wc0, wc1) -> torch.Tensor:  # noqa: ANN001 - tensors, broadcast alike
    """The one expression both paths evaluate (so that they agree bit for bit)."""
    return (a * wr0 + b * wr1) * wc0 + (c * wr0 + d * wr1) * wc1


def pixels_at_or_above(
    maps: torch.Tensor, size: Tuple[int, int], scale: torch.Tensor, level: torch.Tensor
) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(image, unit, pixel, value * scale)`` of every up-sampled pixel with ``value * scale >= level``.

    Args:
        maps: ``(N, U, h, w)`` feature maps (finite or ``-inf``).
        size: ``(H, W)`` the up-sampled size.
        scale: ``(U,)`` powers of two each unit's values are multiplied by (exactly).
        level: ``(U,)`` the level in scaled units.

    Returns:
        Four ``(E,)`` tensors: image index, unit index, pixel index ``y * W + x``, and the scaled
        value, equal bit for bit to ``upsample(maps, size)`` times ``scale`` at that pixel.
    """
    maps = maps.float()
    count, units, height, width = maps.shape
    rows, cols = Axis.make(height, size[0], maps.device), Axis.make(width, size[1], maps.device)
    padded = F.pad(maps, (0, 1, 0, 1), mode="replicate") if height > 1 or width > 1 else maps
    bound = F.max_pool2d(padded, 2, stride=1)[:, :, :height, :width] if height > 1 or width > 1 else maps
    scaled_bound = bound * scale.view(1, -1, 1, 1)
    margin = scaled_bound.abs() * 2**-16 + 2**-16  # rounding of the convex combination: never drop a block
    n, u, r, c = (scaled_bound + margin >= level.view(1, -1, 1, 1)).nonzero(as_tuple=True)
    ys, xs = rows.members[r], cols.members[c]  # (A, R), (A, C)
    y = ys[:, :, None].expand(-1, -1, xs.shape[1])
    x = xs[:, None, :].expand(-1, ys.shape[1], -1)
    valid = (y >= 0) & (x >= 0)
    y, x = y.clamp(min=0), x.clamp(min=0)
    n3, u3 = n.view(-1, 1, 1).expand_as(y), u.view(-1, 1, 1).expand_as(y)
    rl, rh, cl, ch = rows.low[y], rows.high[y], cols.low[x], cols.high[x]
    value = _combine(
        maps[n3, u3, rl, cl], maps[n3, u3, rh, cl], maps[n3, u3, rl, ch], maps[n3, u3, rh, ch],
        rows.w_low[y], rows.w_high[y], cols.w_low[x], cols.w_high[x],
    )  # fmt: skip
    value = value * scale[u3]
    keep = valid & (value >= level[u3])
    return n3[keep], u3[keep], (y * size[1] + x)[keep], value[keep]
