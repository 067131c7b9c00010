"""Network dissection (Bau et al. 2017): which units of a layer detect which pixel-labelled concepts.

Each unit's activation, thresholded at its top ``quantile`` over every position of the dataset and
upsampled to the masks' size, is scored as a segmentation of each concept by IoU (intersection and
union counted over the whole dataset); a unit whose best IoU reaches ``iou_threshold`` is a
*detector* of that concept. When masks are partial, a concept's union is counted only on the
images where its category is annotated (as NetDissect-Lite does).

Streamed in one pass with bounded memory: :class:`DissectionTracker` observes forward passes run
by someone else (the Lightning validation loop) and feeds per-layer
:class:`~tb_viz_plugin.methods.dissection_counts.DissectionCounts` (per-unit histograms with per-bin
concept counts, O(units x bins x concepts) memory, nothing kept per image), plus each unit's top
images (at most ``top_k`` per unit, down-sampled). :func:`dissect` runs the passes itself.

How close the streamed threshold is: it is a bin edge, the k-th largest activation of the unit
rounded down to its bin's lower edge (at most one bin width ``2**exponent`` below it), where k
(``fraction * positions``) is the count nearest to ``quantile * positions`` that a bin edge can cut
at. The bins cover the unit's range above the first batch's ``1 - 10 * quantile`` quantile (the
top 5% by default) up to its maximum, so with 256 bins one bin is at most 1/128 of that range (a
range that grows later doubles the bin width). On the demo (1,200 images, 128 units) the share of
activations at or above the streamed thresholds was 0.48%-0.52% for ``quantile=0.005``. The IoU
read off is exactly the IoU at that threshold (``>=``).

Counting a subset of the images (``NetworkDissection(num_samples=)``, :func:`sample_stride`):
the bound above holds for the subset; against the whole set its quantile adds sampling error.
On the demo (random weights, 128 units, 16x16 masks), 100 of the 1,200 validation images: the
share of all 1,200 images' activations at or above each unit's threshold had median 0.49% and
at most 0.85% (0.52% with all images, 0.71% with 300), best IoUs within 0.04 of the full set's
(median 0.006), 105 of 128 best labels the same (118 with 300), 28 detectors against 26.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Dict, Iterable, List, Optional, Sequence, Tuple, Union

import torch
import torch.nn.functional as F
from torch import nn

from tb_viz_plugin.methods.concepts import color_concepts, concept_names, stack_masks
from tb_viz_plugin.methods.dissection_counts import DissectionCounts, category_index
from tb_viz_plugin.methods.hooks import LayerHooks
from tb_viz_plugin.methods.layers import model_device, preserved_training_flags

Concepts = Callable[[torch.Tensor], torch.Tensor]
"""A concept source: images ``(N, C, H, W)`` -> bool masks ``(N, K, H', W')``, with ``.names`` (and ``.categories``)."""

TOP_IMAGE_SIZE = 64
"""Largest side of the top images kept per unit (down-sampled by area; the view shows them small)."""


@dataclasses.dataclass(frozen=True)
class TopImages:
    """Each unit's ``k`` images of highest maximum activation (rows = units, columns = rank).

    Attributes:
        values: ``(U, k)`` the unit's maximum on the image (``-inf`` where empty).
        sample_ids: ``(U, k)`` long (``-1`` where empty).
        images: ``(U, k, C, h, w)`` the inputs, down-sampled to at most :data:`TOP_IMAGE_SIZE`.
        maps: ``(U, k, h', w')`` the unit's feature map on the image.
    """

    values: torch.Tensor
    sample_ids: torch.Tensor
    images: torch.Tensor
    maps: torch.Tensor

    FIELDS = ("values", "sample_ids", "images", "maps")

    def cpu(self) -> "TopImages":
        return TopImages(*(getattr(self, f).detach().cpu() for f in self.FIELDS))


def _small(images: torch.Tensor) -> torch.Tensor:
    height, width = images.shape[2:]
    scale = TOP_IMAGE_SIZE / max(height, width)
    if scale >= 1:
        return images.float()
    size = (max(1, round(height * scale)), max(1, round(width * scale)))
    return F.interpolate(images.float(), size=size, mode="area")


def _best(values: torch.Tensor, ids: torch.Tensor, k: int) -> torch.Tensor:
    """``(U, k')`` columns of the best candidates per row: value descending, then lower id; a repeated id counts once."""
    order = ids.argsort(dim=1, stable=True)
    sorted_ids = ids.gather(1, order)
    repeated = torch.zeros_like(sorted_ids, dtype=torch.bool)
    repeated[:, 1:] = (sorted_ids[:, 1:] == sorted_ids[:, :-1]) & (sorted_ids[:, 1:] >= 0)
    keys = values.gather(1, order).nan_to_num(nan=-torch.inf).masked_fill(repeated | (sorted_ids < 0), -torch.inf)
    return order.gather(1, keys.argsort(dim=1, descending=True, stable=True)[:, :k])


def merge_top_images(parts: Sequence[TopImages], k: int) -> TopImages:
    """The top ``k`` per unit of several :class:`TopImages` (DDP ranks): by value, then lower id.

    A sample id present twice (DDP padding) counts once.
    """
    values = torch.cat([p.values for p in parts], dim=1)
    ids = torch.cat([p.sample_ids for p in parts], dim=1)
    best = _best(values, ids, k)
    rows = torch.arange(values.shape[0], device=values.device)[:, None]
    images = torch.cat([p.images for p in parts], dim=1)[rows, best]
    maps = torch.cat([p.maps for p in parts], dim=1)[rows, best]
    return TopImages(values[rows, best].masked_fill(ids[rows, best] < 0, -torch.inf), ids[rows, best], images, maps)


def update_top_images(
    current: Optional[TopImages], features: torch.Tensor, images: torch.Tensor, ids: torch.Tensor, k: int
) -> TopImages:
    """``current`` merged with one batch: ``features`` ``(N, U, h, w)``, ``images`` ``(N, C, H, W)``, ``ids`` ``(N,)``.

    Only the kept entries are copied (no ``units x batch`` copy of the images); once ``current``
    holds ``k`` entries per unit it is updated in place and its columns are slots, not ranks
    (a fresh entry takes the slot of the one it evicts): :func:`merge_top_images` ``([top], k)``
    puts them in rank order (:meth:`DissectionTracker.results` does).
    """
    count, units = features.shape[:2]
    peaks = features.float().amax(dim=(2, 3)).T  # (U, N)
    batch_ids = ids.to(features.device).long()[None].expand(units, -1)
    kept = 0 if current is None else current.values.shape[1]
    values = peaks if current is None else torch.cat([current.values, peaks], dim=1)
    all_ids = batch_ids if current is None else torch.cat([current.sample_ids, batch_ids], dim=1)
    best = _best(values, all_ids, k)
    rows = torch.arange(units, device=features.device)[:, None]
    sample = (best - kept).clamp(min=0)
    small = _small(images.detach().to(features.device))
    if current is None or best.shape[1] != kept:
        top_images, top_maps = small[sample], features.float()[sample, rows]
        if current is not None:
            old, fresh = best.clamp(max=kept - 1), best >= kept
            top_images = torch.where(fresh[..., None, None, None], top_images, current.images[rows, old])
            top_maps = torch.where(fresh[..., None, None], top_maps, current.maps[rows, old])
    else:  # in place, in slot order: each fresh entry takes an evicted entry's slot (no other copy)
        chosen = torch.zeros_like(values, dtype=torch.bool).scatter_(1, best, True)
        unit, slot = (~chosen[:, :kept]).nonzero(as_tuple=True)
        _, column = chosen[:, kept:].nonzero(as_tuple=True)  # as many per unit as evicted, in unit order
        top = current
        top.values[unit, slot], top.sample_ids[unit, slot] = peaks[unit, column], batch_ids[unit, column]
        top.images[unit, slot] = small[column]
        top.maps[unit, slot] = features.float()[column, unit]
        return top
    return TopImages(values[rows, best], all_ids[rows, best], top_images, top_maps)


@dataclasses.dataclass(frozen=True)
class Dissection:
    """The dissection of one layer.

    Attributes:
        layer: the layer name.
        names: the K concept names; ``categories``: the category of each.
        label: per unit, the name of its best concept, or ``None`` when its IoU is below ``iou_threshold``.
        iou: ``(U,)`` each unit's best IoU; ``iou_table``: ``(U, K)`` every IoU.
        threshold: ``(U,)`` float64 the activation threshold (a bin edge, see the module docstring).
        fraction: ``(U,)`` the share of the unit's activations at or above the threshold (about ``quantile``).
        quantile, iou_threshold: the settings; ``images``: images streamed; ``positions``: feature values per unit.
        top: each unit's top images (``None`` unless asked for).
    """

    layer: str
    names: List[str]
    categories: List[str]
    label: List[Optional[str]]
    iou: torch.Tensor
    iou_table: torch.Tensor
    threshold: torch.Tensor
    fraction: torch.Tensor
    quantile: float
    iou_threshold: float
    images: int
    positions: int
    top: Optional[TopImages] = None

    @property
    def detectors(self) -> List[int]:
        """The units whose best IoU reaches ``iou_threshold``."""
        return [unit for unit, name in enumerate(self.label) if name is not None]

    @property
    def concepts_covered(self) -> List[str]:
        """The distinct concepts that at least one unit detects, in concept order."""
        found = set(self.label) - {None}
        return [name for name in self.names if name in found]

    def cpu(self) -> "Dissection":
        tensors = {f: getattr(self, f).detach().cpu() for f in ("iou", "iou_table", "threshold", "fraction")}
        return dataclasses.replace(self, top=self.top.cpu() if self.top is not None else None, **tensors)


class DissectionTracker:
    """Hooks on layers that count each forward pass's feature maps against the batch's concept masks.

    Call the model on a batch, then :meth:`update` with the same batch's masks (and images and
    sample ids when top images are kept). Remove the hooks with :meth:`remove` (or use ``with``).

    Args:
        model: the network whose forward passes are observed.
        layers: layer names (outputs ``(N, C, H, W)``).
        names: the K concept names; ``categories``: their categories (default one, ``"concept"``).
        quantile: the top quantile of each unit's activations that is its segmentation.
        bins: histogram bins per unit.
        top_k: top images kept per unit (0 = none).

    Example:
        >>> net = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU())
        >>> with torch.no_grad(), DissectionTracker(net, ["1"], color_concepts.names, quantile=0.05) as tracker:
        ...     for _ in range(2):
        ...         images = torch.rand(4, 3, 8, 8)
        ...         _ = net(images)
        ...         tracker.update(color_concepts(images))
        >>> result = tracker.results(iou_threshold=0.04)["1"]
        >>> result.iou_table.shape, len(result.label), result.images
        (torch.Size([4, 11]), 4, 8)
    """

    def __init__(
        self,
        model: nn.Module,
        layers: Sequence[str],
        names: Sequence[str],
        categories: Optional[Sequence[str]] = None,
        *,
        quantile: float = 0.005,
        bins: int = 256,
        top_k: int = 0,
    ) -> None:
        if not 0 < quantile < 1:
            raise ValueError(f"quantile must be in (0, 1), got {quantile}")
        self.names = list(names)
        self.categories = list(categories) if categories is not None else ["concept"] * len(self.names)
        if len(self.categories) != len(self.names):
            raise ValueError(f"{len(self.names)} concept names but {len(self.categories)} categories")
        self.quantile, self.bins, self.top_k = quantile, bins, top_k
        self._category_index = category_index(self.categories)[1]
        self._device = model_device(model)
        self.counts: Dict[str, DissectionCounts] = {}
        self.top: Dict[str, Optional[TopImages]] = {name: None for name in layers}
        self._pending: Dict[str, torch.Tensor] = {}
        self._layers = list(layers)
        self._hooks = LayerHooks(model, self._layers, self._stash, feature_maps=True)

    def _stash(self, name: str, output: torch.Tensor) -> None:
        self._pending[name] = output.detach()

    def update(self, masks: torch.Tensor, images: Optional[torch.Tensor] = None, sample_ids: Optional[torch.Tensor] = None) -> None:
        """Count the feature maps of the last forward pass against ``masks`` ``(N, K, H, W)`` bool.

        ``images`` ``(N, C, H, W)`` and ``sample_ids`` ``(N,)`` are needed when ``top_k > 0``.

        Raises:
            RuntimeError: a layer was not called since the last update.
            ValueError: masks of another shape than the concepts and the forward pass saw.
        """
        try:
            missing = [name for name in self._layers if name not in self._pending]
            if missing:
                raise RuntimeError(f"no forward pass through {missing} since the last batch; the model must be called on the batch")
            if masks.dim() != 4 or masks.shape[1] != len(self.names):
                raise ValueError(f"masks must be (N, {len(self.names)}, H, W) for {len(self.names)} concepts, got {tuple(masks.shape)}")
            for name in self._layers:
                features = self._pending[name]
                if features.shape[0] != masks.shape[0]:
                    raise ValueError(f"layer {name!r} saw {features.shape[0]} images but the masks are of {masks.shape[0]}")
                counts = self.counts.get(name)
                if counts is None:
                    counts = DissectionCounts(
                        features.shape[1], len(self.names), self._category_index, self.bins, self.quantile, features.device
                    )
                    self.counts[name] = counts
                counts.update(features, masks)
                if self.top_k:
                    self._keep_top(name, features, images, sample_ids)
        finally:
            self._pending.clear()

    def _keep_top(self, name: str, features: torch.Tensor, images: Optional[torch.Tensor], ids: Optional[torch.Tensor]) -> None:
        if images is None or ids is None:
            raise ValueError("top_k > 0 needs the batch's images and sample ids in update()")
        self.top[name] = update_top_images(self.top[name], features, images, ids, self.top_k)

    def discard(self) -> None:
        """Forget the feature maps of forward passes since the last update (a batch not to count)."""
        self._pending.clear()

    def select(self, keep: torch.Tensor) -> None:
        """Keep only the images ``keep`` (``(N,)`` bool or indices) of the last forward pass for the next :meth:`update`."""
        self._pending = {name: features[keep.to(features.device)] for name, features in self._pending.items()}

    def results(self, iou_threshold: float = 0.04) -> Dict[str, Dissection]:
        """The dissection of every layer from the counts so far (layers never updated are left out)."""
        out = {}
        for name, counts in self.counts.items():
            threshold, table, fraction = counts.read()
            iou, best = table.max(dim=1) if len(self.names) else (torch.zeros(counts.units), None)
            top = self.top[name]
            ranked = merge_top_images([top], self.top_k) if top is not None else None
            label = [self.names[int(b)] if float(v) >= iou_threshold and float(v) > 0 else None for v, b in zip(iou, best)]
            out[name] = Dissection(
                name, self.names, self.categories, label, iou.float(), table.float(), threshold, fraction.float(),
                self.quantile, iou_threshold, counts.images, counts.positions, ranked,
            )  # fmt: skip
        return out

    def remove(self) -> None:
        """Remove the hooks (idempotent); the counts stay readable."""
        self._hooks.remove()
        self._pending.clear()

    def __enter__(self) -> "DissectionTracker":
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.remove()


def sample_stride(total: Optional[int], num_samples: Optional[int]) -> int:
    """The id stride that picks at most ``num_samples`` of ``total`` images evenly (ids ``0, s, 2s, ...``); 1 = all.

    Example:
        >>> sample_stride(1200, 300), sample_stride(1200, None), sample_stride(None, 300)
        (4, 1, 1)
    """
    if num_samples is None or not total or total <= num_samples:
        return 1
    return -(-total // num_samples)


Batch = Union[torch.Tensor, Tuple[torch.Tensor, torch.Tensor]]


def dissect(
    model: nn.Module,
    batches: Iterable[Batch],
    layers: Union[str, Sequence[str]],
    concepts: Optional[Concepts] = None,
    quantile: float = 0.005,
    iou_threshold: float = 0.04,
    *,
    names: Optional[Sequence[str]] = None,
    bins: int = 256,
    top_k: int = 0,
) -> Dict[str, Dissection]:
    """Dissect ``layers`` of ``model`` over ``batches`` in one streamed pass (see the module docstring).

    Args:
        model: the network; ``model(images)`` runs it (in eval mode, without gradients; its flags
            are restored after).
        batches: image tensors ``(N, C, H, W)`` on the model's device, or ``(images, masks)`` with
            ``masks`` a ``(N, K, H', W')`` bool tensor of K pixel-labelled concepts.
        layers: a layer name or names (outputs ``(N, C, H, W)``).
        concepts: images -> masks, used for batches without masks, with its names in ``.names``
            (and categories in ``.categories``); ``None`` = :data:`color_concepts` (RGB in ``[0, 1]``).
        quantile: the top quantile of each unit's activations that is its segmentation.
        iou_threshold: the IoU from which a unit is a detector of its best concept.
        names: the names of the masks' concepts (default ``concepts.names``).
        bins: histogram bins per unit (finer bins: a threshold nearer the exact quantile, more memory).
        top_k: top images kept per unit, for the view (0 = none).

    Returns:
        ``{layer: Dissection}``.

    Raises:
        ValueError: no batches, no concept names, masks that do not match, or a layer whose output
            is not ``(N, C, H, W)``.

    Example:
        >>> net = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU())
        >>> result = dissect(net, [torch.rand(4, 3, 16, 16) for _ in range(3)], "1", quantile=0.02)["1"]
        >>> result.iou.shape, result.iou_table.shape, result.names[:3], result.images
        (torch.Size([8]), torch.Size([8, 11]), ['black', 'blue', 'brown'], 12)
    """
    layer_names = [layers] if isinstance(layers, str) else list(layers)
    source = concepts if concepts is not None else color_concepts
    tracker: Optional[DissectionTracker] = None
    seen = 0
    try:
        with preserved_training_flags(model), torch.no_grad():
            model.eval()
            for batch in batches:
                images, masks = (batch, None) if isinstance(batch, torch.Tensor) else batch
                carried = masks is not None
                if masks is None:
                    masks = source(images)
                if tracker is None:
                    found, categories = concept_names(None if carried and concepts is None else source, names)
                    tracker = DissectionTracker(
                        model, layer_names, found, categories, quantile=quantile, bins=bins, top_k=top_k
                    )
                model(images)
                ids = torch.arange(seen, seen + images.shape[0], device=images.device)
                tracker.update(stack_masks([masks]), images, ids)
                seen += images.shape[0]
    finally:
        if tracker is not None:
            tracker.remove()
    if tracker is None:
        raise ValueError("dissect needs at least one batch")
    return tracker.results(iou_threshold)
