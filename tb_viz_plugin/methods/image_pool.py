"""Input images kept once per sample, shared by the top-k entries of every unit that holds the sample."""

from __future__ import annotations

from typing import Dict, Iterable, List, Optional, Sequence

import torch

from tb_viz_plugin.methods.receptive_field import LayerGeometry

EMPTY_ID = -1
"""The sample id of an empty top-k entry (fewer samples seen than k)."""


class ImagePool:
    """Input images kept once per sample id, shared by every unit (and layer) whose top-k holds the sample.

    Deep layers see most of the image, so their crops are nearly whole images, and one sample is
    often in the top-k of many units: keeping its image once copies one image per new sample
    instead of one crop per new entry. The owner drops the images no entry refers to any more
    (:meth:`keep`), so the pool holds at most one image per current top-k entry. Images live in
    rows of one storage tensor (grown by doubling up to ``capacity``, freed rows reused): no
    allocation per image.

    Args:
        capacity: the most images the owner can need at once (the number of top-k entries that
            share the pool); growth stops there unless more rows are needed right then.
    """

    def __init__(self, capacity: Optional[int] = None) -> None:
        self.capacity = capacity
        self._rows: Dict[int, int] = {}  # sample id -> row of the storage
        self._free: List[int] = []
        self._storage: Optional[torch.Tensor] = None

    def __len__(self) -> int:
        return len(self._rows)

    def add(self, ids: torch.Tensor, images: torch.Tensor, rows: torch.Tensor) -> None:
        """Keep ``images[rows[i]]`` ``(C, H, W)`` under ``ids[i]`` (ids already present are skipped)."""
        new: Dict[int, int] = {}
        for sample, row in zip(ids.tolist(), rows.tolist()):
            if sample not in self._rows:
                new.setdefault(sample, row)
        if not new:
            return
        self._reserve(len(new), images)
        slots = [self._free.pop() for _ in new]
        images = images.detach()
        if images.device.type == "cpu" and self._storage.device.type == "cpu":
            for slot, row in zip(slots, new.values()):  # one copy per image (a gather then a scatter copies twice)
                self._storage[slot].copy_(images[row])
        else:  # accelerators: two kernels rather than one launch per image
            device = self._storage.device
            source = images.index_select(0, torch.tensor(list(new.values()), device=images.device))
            self._storage.index_copy_(0, torch.tensor(slots, device=device), source.to(device, self._storage.dtype))
        self._rows.update(zip(new, slots))

    def _reserve(self, count: int, images: torch.Tensor) -> None:
        if len(self._free) >= count:
            return
        old = 0 if self._storage is None else self._storage.shape[0]
        needed = old + count - len(self._free)
        size = max(2 * old, needed, 16)
        if self.capacity is not None:
            size = max(min(size, self.capacity), needed)
        storage = torch.empty((size, *images.shape[1:]), dtype=torch.float32, device=images.device)
        if self._storage is not None:
            storage[:old] = self._storage
        self._storage = storage
        self._free.extend(range(size - 1, old - 1, -1))

    def clear(self) -> None:
        """Drop every image but keep the storage: a pool reused for the next stream allocates nothing."""
        self._free.extend(self._rows.values())
        self._rows.clear()

    def keep(self, ids: Iterable[int]) -> None:
        """Drop (free the rows of) every image whose id is not in ``ids``."""
        wanted = set(ids)
        for sample in [sample for sample in self._rows if sample not in wanted]:
            self._free.append(self._rows.pop(sample))

    def stack(self, ids: torch.Tensor, shape: Sequence[int], device: torch.device) -> torch.Tensor:
        """``(M, C, H, W)`` images of ``ids`` ``(M,)``; zeros where an id is empty (``-1``)."""
        wanted = ids.tolist()
        if wanted and EMPTY_ID not in wanted:  # the usual case: one gather, no zero-filled buffer
            slots = torch.tensor([self._rows[sample] for sample in wanted], device=self._storage.device)
            return self._storage.index_select(0, slots).to(device)
        out = torch.zeros((len(ids), *shape), device=device)
        rows = [(row, self._rows[sample]) for row, sample in enumerate(wanted) if sample != EMPTY_ID]
        if rows:
            index = torch.tensor([row for row, _ in rows], device=device)
            slots = torch.tensor([slot for _, slot in rows], device=self._storage.device)
            out.index_copy_(0, index, self._storage.index_select(0, slots).to(device))
        return out


def pooled(geometry: LayerGeometry) -> bool:
    """Whether a layer's crops are kept as whole images in an :class:`ImagePool`.

    Yes when the crop is at least half the image: the image costs at most twice the crop, and it
    is shared by every unit whose top-k holds the sample. Small receptive fields keep their crops.
    """
    crop, image = geometry.crop_size, geometry.image_size
    return 2 * crop[0] * crop[1] >= image[0] * image[1]
