"""The streamed top-k of a layer's units: the k samples whose maximum activation is highest.

For each chosen unit (channel) of a layer, :class:`RunningTopK` merges batch by batch, on the
model's device, the samples whose maximum spatial activation of the unit is highest. Memory is
O(units x k) whatever the number of samples: only the current top-k's input crops are kept (for
receptive fields of at least half the image, the whole images, once per sample, in an
:class:`~tb_viz_plugin.methods.image_pool.ImagePool`). :func:`merge_top_k` merges shards (DDP
ranks) into the result one process would give: ranks are ordered by value (descending), then
sample id (ascending).
"""

from __future__ import annotations

import dataclasses
from typing import List, Optional, Sequence, Tuple

import torch

from tb_viz_plugin.methods.image_pool import EMPTY_ID, ImagePool, pooled
from tb_viz_plugin.methods.receptive_field import LayerGeometry, ReceptiveField  # noqa: F401 - ReceptiveField: the examples


@dataclasses.dataclass(frozen=True)
class UnitTopK:
    """The top-k samples of the chosen units of one layer (rows = units, columns = rank).

    Attributes:
        layer: the layer name.
        units: ``(U,)`` channel indices.
        values: ``(U, k)`` float32 maximum activation of the unit on the sample (``-inf`` where empty).
        sample_ids: ``(U, k)`` long sample ids (``-1`` where empty; fewer than k samples seen).
        positions: ``(U, k, 2)`` long ``(row, column)`` of the maximum in the feature map.
        crops: ``(U, k, C, h, w)`` float32 input inside the crop window (``geometry.crop_origins``).
        maps: ``(U, k, H', W')`` float32 the unit's whole feature map on the sample.
        samples: number of samples streamed.
        geometry: the layer's geometry (receptive field, sizes).
    """

    layer: str
    units: torch.Tensor
    values: torch.Tensor
    sample_ids: torch.Tensor
    positions: torch.Tensor
    crops: torch.Tensor
    maps: torch.Tensor
    samples: int
    geometry: LayerGeometry

    SHARDED = ("values", "sample_ids", "positions", "crops", "maps")
    """Fields that differ between shards (the rest is the same on every rank)."""

    @property
    def k(self) -> int:
        return int(self.values.shape[1])

    def cpu(self) -> "UnitTopK":
        """The same result with every tensor detached on the CPU (what the writers take)."""
        moved = {f: getattr(self, f).detach().cpu() for f in ("units", *self.SHARDED)}
        return dataclasses.replace(self, **moved)


def _rank(values: torch.Tensor, ids: torch.Tensor, k: int) -> Tuple[torch.Tensor, torch.Tensor]:
    """Per row, the columns of the k best candidates: value descending, then id ascending.

    A sample id seen twice counts once (DDP pads shards with repeated samples); empty candidates
    (id ``-1``) and NaN come last. Returns ``(columns (U, k), valid (U, k) bool)``.
    """
    by_id = ids.argsort(dim=1, stable=True)
    sorted_ids = ids.gather(1, by_id)
    repeated = torch.zeros_like(sorted_ids, dtype=torch.bool)
    repeated[:, 1:] = sorted_ids[:, 1:] == sorted_ids[:, :-1]
    keys = values.gather(1, by_id).nan_to_num(nan=-torch.inf)
    keys = keys.masked_fill(repeated | (sorted_ids < 0), -torch.inf)
    best = keys.argsort(dim=1, descending=True, stable=True)[:, :k]
    return by_id.gather(1, best), keys.gather(1, best) > -torch.inf



class RunningTopK:
    """The running top-k of one layer's chosen units, updated batch by batch on the device.

    Crops of small receptive fields live in per-unit storage slots: an entry keeps its slot while
    it stays in the top-k, and a new entry takes the slot of the one it evicts, so each batch
    copies only its new entries' crops. Crops of at least half the image are cut at
    :meth:`result` from whole images kept once per sample in an :class:`ImagePool` (shared with
    the other layers when one is given).

    Args:
        layer: the layer name (carried into the result).
        units: channel indices of the units.
        k: entries per unit.
        geometry: the layer's geometry for the inputs that will be streamed.
        in_channels: channels of the input images.
        device: where the state lives (the model's device).
        pool: a shared :class:`ImagePool`; its owner calls ``pool.keep(...)`` with the
            :meth:`referenced` ids of every top-k that shares it. ``None`` = a private pool, pruned here.

    Example:
        >>> g = LayerGeometry(2, (4, 4), (8, 8), ReceptiveField((3, 3), (2, 2), (-1, -1)))
        >>> topk = RunningTopK("conv", [0, 1], k=2, geometry=g, in_channels=3, device=torch.device("cpu"))
        >>> topk.update(torch.rand(5, 2, 4, 4), torch.rand(5, 3, 8, 8), torch.arange(5))
        >>> topk.result().crops.shape
        torch.Size([2, 2, 3, 3, 3])
    """

    def __init__(
        self,
        layer: str,
        units: Sequence[int],
        k: int,
        geometry: LayerGeometry,
        in_channels: int,
        device: torch.device,
        pool: Optional[ImagePool] = None,
    ) -> None:
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        count = len(units)
        self.layer = layer
        self.geometry = geometry
        self.units = torch.as_tensor(list(units), dtype=torch.long, device=device)
        self._k = k
        self._in_channels = in_channels
        self._pool = (pool if pool is not None else ImagePool(count * k)) if pooled(geometry) else None
        self._owns_pool = pool is None
        crop_shape = (0, 0) if self._pool is not None else geometry.crop_size
        self._crops = torch.empty((count, k, in_channels, *crop_shape), device=device)  # read only where filled
        self._maps = torch.empty((count, k, *geometry.feature_size), device=device)
        self.reset()

    def reset(self) -> None:
        """Forget every sample (a new stream); the crop and map storage is kept, not cleared.

        Storage of empty entries is never read: :meth:`result` gives zeros there.
        """
        count, k, device = len(self.units), self._k, self.units.device
        self.values = torch.full((count, k), -torch.inf, device=device)
        self.sample_ids = torch.full((count, k), EMPTY_ID, dtype=torch.long, device=device)
        self.positions = torch.zeros((count, k, 2), dtype=torch.long, device=device)
        self.samples = 0
        self._slots = torch.arange(k, device=device).repeat(count, 1)
        if self._pool is not None and self._owns_pool:
            self._pool.clear()

    def update(self, maps: torch.Tensor, images: torch.Tensor, sample_ids: torch.Tensor) -> None:
        """Merge one batch.

        Args:
            maps: ``(N, U, H', W')`` the chosen units' feature maps for the batch.
            images: ``(N, C, H, W)`` the batch's inputs (crops are cut from them).
            sample_ids: ``(N,)`` ids of the samples (unique per sample; ties are broken by them).

        Raises:
            ValueError: sizes that do not match the geometry or each other.
        """
        n, count = maps.shape[:2]
        if images.shape[0] != n or sample_ids.shape[0] != n or count != len(self.units):
            raise ValueError(
                f"{self.layer}: {n} feature maps of {count} units for {images.shape[0]} images and "
                f"{sample_ids.shape[0]} ids (expected {len(self.units)} units)"
            )
        if tuple(maps.shape[2:]) != self.geometry.feature_size or tuple(images.shape[2:]) != self.geometry.image_size:
            raise ValueError(
                f"{self.layer}: inputs {tuple(images.shape[2:])} / maps {tuple(maps.shape[2:])} differ from the "
                f"measured {self.geometry.image_size} / {self.geometry.feature_size}; all inputs must share one size"
            )
        maps = maps.detach().float()
        width = maps.shape[3]
        batch_values, flat = maps.flatten(2).max(dim=2)  # (N, U): first maximum on ties
        self.samples += n
        if not bool((batch_values.T >= self.values[:, -1:]).any()):
            return  # nothing reaches any unit's k-th value (the usual case once the top-k has settled)
        k = self.values.shape[1]
        ids = sample_ids.to(self.sample_ids.device, torch.long)
        values = torch.cat([self.values, batch_values.T], 1)  # (U, k + N) candidates
        candidate_ids = torch.cat([self.sample_ids, ids.expand(count, n)], 1)
        columns, valid = _rank(values, candidate_ids, k)
        batch_positions = torch.stack([flat // width, flat % width], dim=-1).transpose(0, 1)  # (U, N, 2)
        new = columns >= k
        old_columns = columns.clamp(max=k - 1)
        self.values = values.gather(1, columns).masked_fill(~valid, -torch.inf)
        self.sample_ids = torch.where(valid, candidate_ids.gather(1, columns), EMPTY_ID)
        self.positions = torch.cat([self.positions, batch_positions], 1).gather(1, columns[..., None].expand(-1, -1, 2))
        # Slots: kept entries keep theirs; new entries take the slots of the evicted ones, in order.
        kept = torch.zeros((count, k + n), dtype=torch.bool, device=columns.device).scatter_(1, columns, True)[:, :k]
        freed = self._slots.gather(1, kept.to(torch.int8).argsort(dim=1, stable=True))
        new_order = (~new).to(torch.int8).argsort(dim=1, stable=True).argsort(dim=1)
        self._slots = torch.where(new, freed.gather(1, new_order), self._slots.gather(1, old_columns))
        unit, rank = new.nonzero(as_tuple=True)
        if unit.numel():
            sample = columns[unit, rank] - k
            slot = self._slots[unit, rank]
            origins = self.geometry.crop_origins(self.positions[unit, rank])
            entry = unit * k + slot  # index_copy_ into the flattened slots: cheaper than a 2-index put
            self._maps.view(-1, *self._maps.shape[2:]).index_copy_(0, entry, maps[sample, unit])
            if self._pool is None:
                crops = _cut(images, sample, origins, self.geometry.crop_size).to(self._crops.dtype)
                self._crops.view(-1, *self._crops.shape[2:]).index_copy_(0, entry, crops)
            else:
                rows = sample.unique()
                self._pool.add(ids.index_select(0, rows), images, rows)
                if self._owns_pool:
                    self._pool.keep(self.referenced())

    def referenced(self) -> List[int]:
        """Sample ids held in the top-k (what a shared :class:`ImagePool` must keep for this layer)."""
        if self._pool is None:
            return []
        ids = self.sample_ids.unique().tolist()
        return [sample for sample in ids if sample != EMPTY_ID]

    def result(self) -> UnitTopK:
        """The current top-k, entries in rank order."""
        count, k = self._slots.shape
        flat = (self._slots + k * torch.arange(count, device=self._slots.device)[:, None]).flatten()
        empty = self.sample_ids == EMPTY_ID
        any_empty = bool(empty.any())  # fewer samples than k: their storage was never written
        maps = self._maps.flatten(0, 1).index_select(0, flat).unflatten(0, (count, k))
        if any_empty:
            maps = maps.masked_fill(empty[..., None, None], 0.0)
        if self._pool is None:
            crops = self._crops.flatten(0, 1).index_select(0, flat).unflatten(0, (count, k))
            if any_empty:
                crops = crops.masked_fill(empty[..., None, None, None], 0.0)
        else:
            images = self._pool.stack(self.sample_ids.flatten(), (self._in_channels, *self.geometry.image_size),
                                      self.values.device)  # fmt: skip
            if self.geometry.crop_size != self.geometry.image_size:
                origins = self.geometry.crop_origins(self.positions.flatten(0, 1))
                images = _cut(images, torch.arange(count * k, device=images.device), origins, self.geometry.crop_size)
            crops = images.unflatten(0, (count, k))
        return UnitTopK(
            layer=self.layer,
            units=self.units,
            values=self.values,
            sample_ids=self.sample_ids,
            positions=self.positions,
            crops=crops,
            maps=maps,
            samples=self.samples,
            geometry=self.geometry,
        )


def _cut(images: torch.Tensor, sample: torch.Tensor, origins: torch.Tensor, size: Tuple[int, int]) -> torch.Tensor:
    """Crops ``(M, C, h, w)`` of ``images[sample]`` with top-left corners ``origins`` ``(M, 2)``."""
    picked = images.index_select(0, sample)  # (M, C, H, W)
    if tuple(picked.shape[2:]) == tuple(size):
        return picked  # the receptive field covers the whole image
    m, channels, _, width = picked.shape
    rows = origins[:, 0, None] + torch.arange(size[0], device=origins.device)  # (M, h)
    cols = origins[:, 1, None] + torch.arange(size[1], device=origins.device)  # (M, w)
    picked = picked.gather(2, rows[:, None, :, None].expand(m, channels, size[0], width))
    return picked.gather(3, cols[:, None, None, :].expand(m, channels, size[0], size[1]))


def merge_top_k(parts: Sequence[UnitTopK]) -> UnitTopK:
    """Merge the top-k of shards (e.g. DDP ranks) of one layer into one, as if one process streamed all.

    Raises:
        ValueError: no parts, or parts of different layers, units or k.

    Example:
        >>> g = LayerGeometry(1, (1, 1), (1, 1), ReceptiveField((1, 1), (1, 1), (0, 0)))
        >>> def shard(ids):  # one unit whose activation on sample i is i
        ...     topk = RunningTopK("conv", [0], 2, g, 1, torch.device("cpu"))
        ...     topk.update(ids.float().view(-1, 1, 1, 1), torch.zeros(len(ids), 1, 1, 1), ids)
        ...     return topk.result()
        >>> merge_top_k([shard(torch.tensor([0, 2, 4])), shard(torch.tensor([1, 3, 4]))]).sample_ids.tolist()
        [[4, 3]]
    """
    if not parts:
        raise ValueError("nothing to merge")
    first = parts[0]
    if any(p.layer != first.layer or p.k != first.k or not torch.equal(p.units, first.units) for p in parts):
        raise ValueError("can only merge top-k results of the same layer, units and k")
    stacked = {name: torch.cat([getattr(p, name) for p in parts], dim=1) for name in UnitTopK.SHARDED}
    columns, valid = _rank(stacked["values"], stacked["sample_ids"], first.k)

    def pick(tensor: torch.Tensor) -> torch.Tensor:
        index = columns.reshape(*columns.shape, *([1] * (tensor.dim() - 2))).expand(-1, -1, *tensor.shape[2:])
        return tensor.gather(1, index)

    return dataclasses.replace(
        first,
        values=pick(stacked["values"]).masked_fill(~valid, -torch.inf),
        sample_ids=torch.where(valid, pick(stacked["sample_ids"]), EMPTY_ID),
        positions=pick(stacked["positions"]),
        crops=pick(stacked["crops"]),
        maps=pick(stacked["maps"]),
        samples=sum(p.samples for p in parts),
    )

