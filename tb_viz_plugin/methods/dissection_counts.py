"""Network dissection's counts, streamed: per-unit histograms with per-bin concept intersections.

:class:`DissectionCounts` keeps, for one layer, everything network dissection needs to read each
unit's top-quantile threshold and its IoU with every concept at the end of one pass, without
keeping any activation: memory is O(units x bins x concepts), whatever the size of the dataset.

Per unit it holds a histogram of the layer's activations at feature resolution (for the threshold)
and, per bin and concept, the number of mask pixels where the upsampled activation falls in the
bin and the concept is present (the intersection), and the number of upsampled pixels in the bin
on the images where the concept's category is annotated (the activation's part of the union).
With the threshold at a bin edge every count above it is a sum of whole bins, so the IoU read off
equals the IoU of the exact computation at that threshold.

Bins are exact: bin edges are integer multiples of a power of two, ``cell * 2**exponent``, so a
value's bin is ``floor(value / 2**exponent)`` (exact in floating point), and two histograms of
different widths merge exactly at the coarser width (DDP ranks, a range that grows). Bin 0 holds
everything below the lowest edge. The lowest edge is set from the first batch, at its
``1 - min(0.25, 10 * quantile)`` quantile, well below the top quantile (just above it when
many values equal it, as ReLU zeros do); the range grows (bins merge
pairwise) when a later batch reaches above the top edge.
"""

from __future__ import annotations

import math
from typing import List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F

_CHUNK_ELEMENTS = 1 << 22
"""Upsampled activation values binned at once (bounds the memory of one update)."""

_FIRST_SAMPLE = 1 << 16
"""Feature values per unit of the first batch used to place the lowest bin edge."""


def _cells(values: torch.Tensor, exponent: torch.Tensor, low: torch.Tensor, bins: int) -> torch.Tensor:
    """Bin indices ``(N, U, ...)`` of ``values`` ``(N, U, ...)``: 0 below ``low``, else ``cell - low + 1``.

    ``exponent`` and ``low`` are ``(U,)``: unit u's edges are ``(low[u] + j) * 2**exponent[u]``.
    NaN goes to bin 0. Values are assumed below the top edge (see :meth:`DissectionCounts.update`).
    """
    shape = (1, -1) + (1,) * (values.dim() - 2)
    scaled = torch.ldexp(values.float(), -exponent.view(shape).to(torch.float32)).floor()
    scaled = scaled.nan_to_num(nan=-math.inf).clamp(min=-1.0, max=float(2**62))
    offset = scaled.long() - low.view(shape) + 1
    return offset.clamp(min=0, max=bins)


def _remap(counts: torch.Tensor, low: torch.Tensor, exponent: torch.Tensor, new_low: torch.Tensor,
           new_exponent: torch.Tensor) -> torch.Tensor:
    """``counts`` ``(U, B + 1, ...)`` re-binned to coarser edges (``new_exponent >= exponent``); exact.

    Old bin ``i >= 1`` is the cell ``low + i - 1``; at the coarser width it lies in the cell
    ``floor(cell / 2**(new_exponent - exponent))``: in bin 0 when that cell is below ``new_low``.
    The caller makes sure the top old bin fits (``new_low + B - 1`` covers it).
    """
    bins = counts.shape[1] - 1
    cells = low[:, None] + torch.arange(bins, device=counts.device)[None]
    coarse = _floor_div(cells, (new_exponent - exponent)[:, None])
    index = (coarse - new_low[:, None] + 1).clamp(min=0)
    index = torch.cat([torch.zeros_like(index[:, :1]), index], dim=1)
    if int(index.max()) > bins:
        raise RuntimeError("network dissection: a histogram range did not fit its bins (a bug)")
    index = index.view(index.shape + (1,) * (counts.dim() - 2)).expand_as(counts)
    return torch.zeros_like(counts).scatter_add_(1, index, counts)


def _bilinear_matrix(source: int, target: int, device: torch.device) -> torch.Tensor:
    """``(target, source)`` weights of 1-D bilinear resampling (``align_corners=False``, as ``F.interpolate``)."""
    position = ((torch.arange(target, device=device, dtype=torch.float64) + 0.5) * source / target - 0.5).clamp(min=0)
    low = position.floor().long().clamp(max=source - 1)
    high = (low + 1).clamp(max=source - 1)
    frac = (position - low).float()
    weights = torch.zeros(target, source, device=device)
    rows = torch.arange(target, device=device)
    weights.index_put_((rows, low), 1 - frac, accumulate=True)
    weights.index_put_((rows, high), frac, accumulate=True)
    return weights


def upsample(maps: torch.Tensor, size: Tuple[int, int]) -> torch.Tensor:
    """Bilinear up-sampling of ``(N, U, h, w)`` maps to ``size`` (``F.interpolate``'s, ``align_corners=False``).

    Two small matrix products (separable weights), several times faster on CPU than
    ``F.interpolate``; equal to it up to float rounding.

    Example:
        >>> maps = torch.rand(2, 3, 5, 7)
        >>> torch.allclose(upsample(maps, (20, 28)), F.interpolate(maps, size=(20, 28), mode="bilinear"), atol=1e-6)
        True
    """
    rows = _bilinear_matrix(maps.shape[2], size[0], maps.device)
    cols = _bilinear_matrix(maps.shape[3], size[1], maps.device)
    return torch.matmul(torch.matmul(rows, maps.float().contiguous()), cols.T)


def _floor_div(cells: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    """``floor(cells / 2**shift)`` (integers)."""
    return torch.div(cells, 2 ** shift.long(), rounding_mode="floor")


def _ceil_div(cells: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    """``ceil(cells / 2**shift)`` (integers)."""
    return -_floor_div(-cells, shift)


def fitting_range(low: torch.Tensor, exponent: torch.Tensor, top: torch.Tensor, bins: int) -> Tuple[torch.Tensor, torch.Tensor]:
    """``(new_low, new_exponent)``: the finest coarsening of the edges (``low``, ``exponent``) whose bins reach ``top``.

    ``top`` ``(U,)`` is the value that must fall below the top edge. Units that fit keep their edges;
    the others double their width until ``top`` fits, and their lowest edge moves up to the next
    multiple of the new width (what was below it goes to bin 0, exactly).
    """
    new_low, new_exponent = low.clone(), exponent.clone()
    while True:
        need = torch.ldexp(top.float(), -new_exponent.float()).floor().nan_to_num(nan=0.0)
        grow = need >= (new_low + bins).float()
        if not bool(grow.any()):
            return new_low, new_exponent
        new_exponent = torch.where(grow, new_exponent + 1, new_exponent)
        new_low = torch.where(grow, _ceil_div(new_low, torch.ones_like(new_low)), new_low)


class DissectionCounts:
    """The streamed histograms and concept counts of one layer (see the module docstring).

    Args:
        units: channels of the layer.
        concepts: number of concepts K.
        categories: ``(K,)`` category index of each concept (the partial-mask rule: a concept's
            union is counted only on images where some concept of its category is present).
        bins: histogram bins per unit (even, >= 4); the threshold is within one bin of the exact
            quantile.
        quantile: the top quantile the threshold is read at (places the lowest edge).
        device: where the counts live (the activations' device).

    Example:
        >>> counts = DissectionCounts(units=2, concepts=1, categories=torch.zeros(1, dtype=torch.long), quantile=0.125)
        >>> features = torch.arange(32.0).view(1, 2, 4, 4)
        >>> masks = torch.zeros(1, 1, 8, 8, dtype=torch.bool); masks[..., 6:, 6:] = True
        >>> counts.update(features, masks)
        >>> threshold, iou, fraction = counts.read()
        >>> threshold.tolist(), [round(v, 3) for v in iou[:, 0].tolist()]
        ([14.0, 30.0], [0.6, 0.6])
    """

    def __init__(
        self,
        units: int,
        concepts: int,
        categories: torch.Tensor,
        bins: int = 256,
        quantile: float = 0.005,
        device: Optional[torch.device] = None,
    ) -> None:
        if bins < 4 or bins % 2:
            raise ValueError(f"bins must be an even number >= 4, got {bins}")
        if not 0 < quantile < 1:
            raise ValueError(f"quantile must be in (0, 1), got {quantile}")
        self.units, self.concepts, self.bins, self.quantile = units, concepts, bins, quantile
        self.categories = categories.to(device=device, dtype=torch.long)
        long = dict(dtype=torch.long, device=device)
        self.low = torch.zeros(units, **long)  # lowest edge, in cells of 2**exponent
        self.exponent = torch.zeros(units, **long)
        self.features = torch.zeros(units, bins + 1, **long)  # feature-resolution histogram
        self.intersection = torch.zeros(units, bins + 1, concepts, **long)
        self.area = torch.zeros(units, bins + 1, concepts, **long)  # upsampled pixels on annotated images
        self.mask_area = torch.zeros(concepts, **long)
        self.positions = 0  # feature values per unit
        self.images = 0
        self.started = False

    # ------------------------------------------------------------------ streaming

    def _start(self, features: torch.Tensor) -> None:
        """Place the edges from the first batch: lowest edge far below the top quantile, top edge above the max."""
        flat = features.transpose(0, 1).flatten(1).float()
        if flat.shape[1] > _FIRST_SAMPLE:
            flat = flat[:, :: math.ceil(flat.shape[1] / _FIRST_SAMPLE)]
        flat = flat.nan_to_num(nan=0.0, posinf=torch.finfo(torch.float32).max, neginf=torch.finfo(torch.float32).min)
        level = 1.0 - min(0.25, 10 * self.quantile)
        low = flat.kthvalue(max(1, min(flat.shape[1], int(level * flat.shape[1]))), dim=1).values
        high = flat.max(dim=1).values
        magnitude = torch.maximum(low.abs(), high.abs())
        span = torch.maximum(high - low, torch.maximum(magnitude * 1e-6, torch.full_like(high, 1e-12)))
        exponent = torch.ceil(torch.log2(span / (self.bins - 1))).long()
        self.exponent = exponent.to(self.exponent.device)
        cells = torch.floor(torch.ldexp(low, -exponent.float())).long()
        atom = (flat == low[:, None]).float().mean(dim=1) > 0.01  # many equal values (ReLU zeros): below the lowest edge
        self.low = (cells + atom.long()).to(self.low.device)
        self.started = True

    def _fit(self, top: torch.Tensor) -> None:
        """Coarsen the units whose bins do not reach ``top`` ``(U,)``."""
        low, exponent = fitting_range(self.low, self.exponent, top, self.bins)
        changed = (low != self.low) | (exponent != self.exponent)
        if bool(changed.any()):
            sel = changed.nonzero()[:, 0]
            for name in ("features", "intersection", "area"):
                tensor = getattr(self, name)
                tensor[sel] = _remap(tensor[sel], self.low[sel], self.exponent[sel], low[sel], exponent[sel])
            self.low, self.exponent = low, exponent

    def annotated(self, masks: torch.Tensor) -> torch.Tensor:
        """``(N, K)`` bool: the images where each concept's category is annotated (has any mask pixel)."""
        present = masks.flatten(2).any(dim=2)  # (N, K)
        categories = int(self.categories.max()) + 1 if self.concepts else 0
        per_category = torch.zeros(masks.shape[0], categories, dtype=torch.long, device=masks.device)
        per_category.index_add_(1, self.categories.to(masks.device), present.long())
        return per_category[:, self.categories.to(masks.device)] > 0

    def _label_maps(self, masks: torch.Tensor) -> List[Tuple[torch.Tensor, torch.Tensor]]:
        """Masks as label maps: per group of concepts that never overlap, ``(concept indices, (N*H*W,) label or -1)``.

        A category whose concepts never share a pixel (colours, one object per pixel) is one
        group; otherwise each of its concepts is a group of its own.
        """
        groups: List[Tuple[torch.Tensor, torch.Tensor]] = []
        for category in self.categories.unique().tolist():
            members = (self.categories == category).nonzero()[:, 0].to(masks.device)
            sub = masks.index_select(1, members)  # (N, k, H, W)
            if members.numel() == 1 or bool((sub.sum(dim=1) <= 1).all()):
                label = torch.where(sub.any(dim=1), sub.float().argmax(dim=1), torch.full_like(sub[:, 0], -1, dtype=torch.long))
                groups.append((members, label.flatten()))
            else:
                groups += [(members[i : i + 1], torch.where(sub[:, i], 0, -1).flatten()) for i in range(members.numel())]
        return groups

    def update(self, features: torch.Tensor, masks: torch.Tensor) -> None:
        """Count one batch: ``features`` ``(N, U, h, w)``, ``masks`` ``(N, K, H, W)`` bool (the same images).

        Raises:
            ValueError: shapes that do not match the counts or each other.
        """
        if features.dim() != 4 or features.shape[1] != self.units:
            raise ValueError(f"features must be (N, {self.units}, h, w), got {tuple(features.shape)}")
        if masks.dim() != 4 or masks.shape[:2] != (features.shape[0], self.concepts):
            raise ValueError(f"masks must be ({features.shape[0]}, {self.concepts}, H, W), got {tuple(masks.shape)}")
        features = features.detach().float().nan_to_num(nan=-math.inf, posinf=torch.finfo(torch.float32).max)
        masks = masks.to(device=features.device, dtype=torch.bool)
        if not self.started:
            self._start(features)
        self._fit(features.amax(dim=(0, 2, 3)))
        count, units = features.shape[:2]
        size = masks.shape[2:]
        bins = self.bins + 1
        unit_ids = torch.arange(units, device=features.device)
        cells = _cells(features, self.exponent, self.low, self.bins)
        self.features += torch.bincount((unit_ids.view(1, -1, 1, 1) * bins + cells).flatten(), minlength=units * bins).view(units, bins)
        annotated = self.annotated(masks)  # (N, K)
        everywhere = bool(annotated.all())
        pixels = size[0] * size[1]
        labels = self._label_maps(masks)  # per group of exclusive concepts: (concepts, (N * H * W) label or -1)
        chunk = max(1, _CHUNK_ELEMENTS // max(1, count * pixels))
        for start in range(0, units, chunk):
            part = slice(start, min(units, start + chunk))
            width = part.stop - part.start
            up = upsample(features[:, part], size)
            # Only values at or above the lowest edge count (bin 0 never lies above a threshold):
            # a few percent of the pixels, found densely, then counted sparsely.
            scaled = torch.ldexp(up, -self.exponent[part].view(1, -1, 1, 1).float()).view(count, width, pixels)
            del up
            where = (scaled >= self.low[part].view(1, -1, 1).float()).view(-1).nonzero()[:, 0]
            scaled = scaled.view(-1)
            image, rest = where // (width * pixels), where % (width * pixels)
            unit, pixel = rest // pixels, rest % pixels
            cell = scaled[where].floor().clamp(max=float(2**62)).long() - self.low[part][unit] + 1
            del scaled
            index = unit * bins + cell.clamp(min=0, max=self.bins)
            # Added in place, entry by entry: the cost follows the entries counted, not the table's
            # size (units x bins x concepts, which a dense bincount per batch would allocate).
            if everywhere:
                self.area[part].view(width * bins, -1).index_add_(0, index, torch.ones_like(index).view(-1, 1).expand(-1, self.concepts))
            else:
                self.area[part].view(width * bins, -1).index_add_(0, index, annotated[image].long())
            at = image * pixels + pixel  # the entries' pixels in the label maps
            inter = self.intersection[part].view(-1)
            for concepts, label in labels:
                found = label[at]
                hit = found >= 0
                codes = index[hit] * self.concepts + concepts[found[hit]]
                inter.index_add_(0, codes, torch.ones_like(codes))
        self.mask_area += masks.sum(dim=(0, 2, 3))
        self.positions += count * features.shape[2] * features.shape[3]
        self.images += count

    # ------------------------------------------------------------------ merging and reading

    def state(self) -> dict:
        """The counts as named tensors (what DDP ranks exchange; see :meth:`merge`)."""
        return {
            "low": self.low, "exponent": self.exponent, "features": self.features,
            "intersection": self.intersection, "area": self.area, "mask_area": self.mask_area,
            "totals": torch.tensor([self.positions, self.images, int(self.started)], device=self.low.device),
        }  # fmt: skip

    def merge(self, states: Sequence[dict]) -> None:
        """Replace the counts by the sum of ``states`` (one per rank, from :meth:`state`), exactly.

        Every state is re-binned to the coarsest width among them and the highest lowest edge,
        widened further where the merged range needs it; the counts then add bin by bin.
        """
        started = [s for s in states if int(s["totals"][2])]
        self.positions = sum(int(s["totals"][0]) for s in states)
        self.images = sum(int(s["totals"][1]) for s in states)
        self.mask_area = sum(s["mask_area"] for s in states)
        if not started:
            return
        exponent = torch.stack([s["exponent"] for s in started]).amax(dim=0)
        low = torch.stack([_ceil_div(s["low"], exponent - s["exponent"]) for s in started]).amax(dim=0)
        while True:  # widen until every state's top bin lies in the merged range
            tops = torch.stack([_floor_div(s["low"] + self.bins - 1, exponent - s["exponent"]) for s in started])
            grow = tops.amax(dim=0) > low + self.bins - 1
            if not bool(grow.any()):
                break
            exponent = torch.where(grow, exponent + 1, exponent)
            low = torch.where(grow, _ceil_div(low, torch.ones_like(low)), low)
        for name in ("features", "intersection", "area"):
            setattr(self, name, sum(_remap(s[name], s["low"], s["exponent"], low, exponent) for s in started))
        self.low, self.exponent, self.started = low, exponent, True

    def edges(self) -> torch.Tensor:
        """``(U, B + 1)`` float64 bin edges: bin ``i >= 1`` holds values in ``[edges[i - 1], edges[i])``."""
        cells = (self.low[:, None] + torch.arange(self.bins + 1, device=self.low.device)[None]).double()
        return torch.ldexp(cells, self.exponent[:, None].double())

    def read(self, quantile: Optional[float] = None) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(threshold (U,) float64, iou (U, K) float64, fraction (U,))`` at the top ``quantile``.

        The threshold is the bin edge whose count of feature values at or above it is nearest to
        ``quantile * positions`` (the highest such edge); ``fraction`` is that count's share of the positions (the exact
        quantile lies between the edges on either side of the threshold). The IoU is that of the
        upsampled activation ``>= threshold`` with each concept's masks, the union counted on the
        images where the concept's category is annotated.
        """
        quantile = self.quantile if quantile is None else quantile
        if not self.started or not self.positions:
            zeros = torch.zeros(self.units, dtype=torch.float64, device=self.low.device)
            return zeros, torch.zeros(self.units, self.concepts, dtype=torch.float64, device=zeros.device), zeros
        above = self.features[:, 1:].flip(1).cumsum(1).flip(1)  # (U, B): count >= edge j
        above = torch.cat([above, torch.zeros_like(above[:, :1])], dim=1)  # edge B: nothing
        target = quantile * self.positions
        distance = (above.double() - target).abs()
        edge = self.bins - distance.flip(1).argmin(dim=1)  # the highest of equally near edges
        threshold = self.edges().gather(1, edge[:, None])[:, 0]
        fraction = above.gather(1, edge[:, None])[:, 0].double() / self.positions

        def above_edge(counts: torch.Tensor) -> torch.Tensor:
            suffix = counts[:, 1:].flip(1).cumsum(1).flip(1)  # (U, B, K): bins >= j + 1
            suffix = torch.cat([suffix, torch.zeros_like(suffix[:, :1])], dim=1)
            return suffix.gather(1, edge.view(-1, 1, 1).expand(-1, 1, counts.shape[2]))[:, 0]

        inter, area = above_edge(self.intersection).double(), above_edge(self.area).double()
        union = area + self.mask_area.double()[None] - inter
        iou = torch.where(union > 0, inter / union.clamp(min=1), torch.zeros_like(union))
        return threshold, iou, fraction

    def memory_bytes(self) -> int:
        """Bytes held by the counts (independent of the number of images streamed)."""
        return sum(t.numel() * t.element_size() for t in (self.features, self.intersection, self.area, self.low, self.exponent))


def category_index(categories: Sequence[str]) -> Tuple[List[str], torch.Tensor]:
    """``(distinct categories in first-seen order, (K,) index of each concept's category)``.

    Example:
        >>> category_index(["color", "color", "shape"])
        (['color', 'shape'], tensor([0, 0, 1]))
    """
    order = list(dict.fromkeys(categories))
    return order, torch.tensor([order.index(c) for c in categories], dtype=torch.long)
