"""Activations from data: feature maps, receptive fields, and the streamed top-k of each unit.

- :class:`LayerHooks` and :func:`capture_activations`: forward hooks on named layers, always removed.
- :func:`receptive_field` / :func:`measure_layer`: where a unit looks in the input, measured for any
  architecture by the gradient of one unit with respect to the input (no table of layer types).
- :class:`RunningTopK` and :class:`TopActivationTracker`: for each chosen unit (channel) of a layer,
  the k samples whose maximum spatial activation is highest, merged batch by batch on the model's
  device. Memory is O(layers x units x k), whatever the number of samples: only the current top-k's
  input crops are kept (for receptive fields of at least half the image, the whole images, once per
  sample, shared by all units and layers: an :class:`ImagePool`). :func:`merge_top_k` merges
  shards (DDP ranks) into the result one process would give: ranks are ordered by value
  (descending), then sample id (ascending).
- :func:`top_activations`: the same over an iterable of image batches, for plain PyTorch.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
from typing import Any, Callable, Dict, Iterable, List, Optional, Sequence, Tuple, Union

import torch
from torch import nn

from tb_viz_plugin.methods.layers import conv2d_layer_names, preserved_training_flags, resolve_layers

Units = Optional[Union[int, Sequence[int]]]
"""Which channels of a layer: ``None`` (the first 16), ``n`` (the first n) or explicit indices."""

DEFAULT_UNITS = 16
_EMPTY_ID = -1


class _StopForward(Exception):
    """Raised by a hook to end a forward pass once every wanted layer has produced its output."""


def _feature_maps(name: str, output: Any) -> torch.Tensor:
    if not isinstance(output, torch.Tensor) or output.dim() != 4:
        got = tuple(output.shape) if isinstance(output, torch.Tensor) else type(output).__name__
        raise ValueError(
            f"layer {name!r} outputs {got}; activation views need (N, C, H, W) feature maps, "
            "so choose a convolution, activation or pooling layer (or a block ending in one)"
        )
    return output


class LayerHooks:
    """Forward hooks that call ``fn(name, output)`` for named layers; removed by ``remove()`` or ``with``.

    ``output`` is checked to be an ``(N, C, H, W)`` tensor (``ValueError`` otherwise); it is passed as
    produced (not detached), and the hooks never change it.

    Args:
        model: the network.
        layers: names of submodules of ``model`` (``model.get_submodule`` names).
        fn: called after each forward call of each layer.

    Example:
        >>> net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU())
        >>> seen = {}
        >>> with LayerHooks(net, ["0"], lambda name, out: seen.update({name: tuple(out.shape)})):
        ...     _ = net(torch.zeros(2, 3, 8, 8))
        >>> seen, sum(len(m._forward_hooks) for m in net.modules())
        ({'0': (2, 4, 6, 6)}, 0)
    """

    def __init__(self, model: nn.Module, layers: Sequence[str], fn: Callable[[str, torch.Tensor], None]) -> None:
        self._handles: List[Any] = []
        try:
            for name in layers:
                hook = functools.partial(self._call, fn, name)
                self._handles.append(model.get_submodule(name).register_forward_hook(hook))
        except BaseException:
            self.remove()
            raise

    @staticmethod
    def _call(fn: Callable[[str, torch.Tensor], None], name: str, module: nn.Module, args: Any, output: Any) -> None:
        fn(name, _feature_maps(name, output))

    def remove(self) -> None:
        """Remove every hook (idempotent)."""
        for handle in self._handles:
            handle.remove()
        self._handles.clear()

    def __enter__(self) -> "LayerHooks":
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.remove()


def _layer_outputs(model: nn.Module, images: torch.Tensor, layers: Sequence[str]) -> Dict[str, torch.Tensor]:
    """Outputs (not detached) of ``layers`` for ``model(images)``, stopping the pass after the last of them."""
    wanted = list(dict.fromkeys(layers))
    captured: Dict[str, torch.Tensor] = {}

    def keep(name: str, output: torch.Tensor) -> None:
        captured.setdefault(name, output)
        if len(captured) == len(wanted):
            raise _StopForward

    with LayerHooks(model, wanted, keep):
        try:
            model(images)
        except _StopForward:
            pass
    missing = [name for name in wanted if name not in captured]
    if missing:
        raise RuntimeError(f"the forward pass of {type(model).__name__} never called the layers {missing}")
    return {name: captured[name] for name in wanted}


def activation_layers(model: nn.Module, names: Optional[Union[str, Sequence[str]]], *, deepest: bool = False) -> List[str]:
    """Check layer names for activation views; ``None`` = the first (``deepest``: the last) ``Conv2d``.

    Any submodule is accepted: that its output is ``(N, C, H, W)`` is checked when it runs.

    Raises:
        LayerNotFoundError: a name that is not a submodule (the message lists the valid names).

    Example:
        >>> net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Conv2d(4, 4, 3))
        >>> activation_layers(net, None), activation_layers(net, None, deepest=True), activation_layers(net, "1")
        (['0'], ['2'], ['1'])
    """
    convs = conv2d_layer_names(model)
    default = convs[-1:] if deepest else convs[:1]
    return resolve_layers(model, names, accept=lambda module: True, what="layer", default=lambda valid: default)


def capture_activations(model: nn.Module, images: torch.Tensor, layers: Sequence[str]) -> Dict[str, torch.Tensor]:
    """The feature maps of ``layers`` for ``model(images)``, detached (first call of each layer).

    Runs in the caller's grad mode and module modes; the pass stops once every layer has run.

    Raises:
        ValueError: a layer whose output is not ``(N, C, H, W)``.
        RuntimeError: a layer that the forward pass never calls.

    Example:
        >>> net = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2))
        >>> {k: tuple(v.shape) for k, v in capture_activations(net, torch.zeros(2, 3, 16, 16), ["1", "2"]).items()}
        {'1': (2, 8, 16, 16), '2': (2, 8, 8, 8)}
    """
    return {name: output.detach() for name, output in _layer_outputs(model, images, layers).items()}


def select_channels(maps: torch.Tensor, channels: Union[int, Sequence[int]]) -> torch.Tensor:
    """Channel indices to show: the ``channels`` most active (by mean over images and positions), or the given ones.

    Args:
        maps: feature maps ``(N, C, H, W)``.
        channels: a count (most active first) or explicit indices (kept in the given order).

    Returns:
        A ``long`` tensor of indices on ``maps.device``.

    Raises:
        ValueError: a count below 1 or an index outside ``[0, C)``.

    Example:
        >>> maps = torch.zeros(1, 4, 2, 2); maps[:, 2] = 5; maps[:, 0] = 1
        >>> select_channels(maps, 2).tolist(), select_channels(maps, [3, 1]).tolist()
        ([2, 0], [3, 1])
    """
    total = maps.shape[1]
    if isinstance(channels, int):
        if channels < 1:
            raise ValueError(f"the number of channels must be >= 1, got {channels}")
        means = maps.detach().float().mean(dim=(0, 2, 3))
        return means.argsort(descending=True, stable=True)[: min(channels, total)]
    return torch.as_tensor(check_units(channels, total), dtype=torch.long, device=maps.device)


def check_units(units: Units, channels: int) -> List[int]:
    """Resolve a ``units`` choice against a layer with ``channels`` channels.

    Raises:
        ValueError: a count below 1, no indices, or an index outside ``[0, channels)``.

    Example:
        >>> check_units(None, 64)[-1], check_units(4, 3), check_units([5, 2], 8)
        (15, [0, 1, 2], [5, 2])
    """
    if units is None or isinstance(units, int):
        count = DEFAULT_UNITS if units is None else units
        if count < 1:
            raise ValueError(f"the number of units must be >= 1, got {count}")
        return list(range(min(count, channels)))
    chosen = [int(u) for u in units]
    if not chosen or min(chosen) < 0 or max(chosen) >= channels:
        raise ValueError(f"unit indices must be a non-empty list in [0, {channels}) for this layer, got {chosen}")
    return chosen


# --------------------------------------------------------------------------- receptive fields


@dataclasses.dataclass(frozen=True)
class ReceptiveField:
    """Where the units of a feature map look in the input, in input pixels.

    The unit at feature-map position ``(i, j)`` depends on the input rows
    ``offset[0] + i * stride[0]`` up to that plus ``size[0]`` (exclusive), and likewise for columns.
    Rows of that box can lie outside the image (padding).

    Attributes:
        size: ``(height, width)`` of the region of input pixels with a nonzero gradient.
        stride: ``(rows, columns)`` the region moves per feature-map step (the layer's effective stride).
        offset: ``(row, column)`` of the region's top-left corner for the unit at ``(0, 0)``.
        complete: ``False`` when the region filled the largest input measured: ``size`` is a lower bound.
    """

    size: Tuple[int, int]
    stride: Tuple[int, int]
    offset: Tuple[int, int]
    complete: bool = True

    def describe(self) -> str:
        """E.g. ``"RF 20x20 px, stride 4"`` (``">= "`` before the size when it is a lower bound)."""
        bound = "" if self.complete else ">= "
        return f"RF {bound}{self.size[0]}x{self.size[1]} px, stride {self.stride[0]}"


@dataclasses.dataclass(frozen=True)
class LayerGeometry:
    """A layer's output for a given input size, and its receptive field.

    Attributes:
        channels: number of channels C of the feature maps.
        feature_size: ``(H', W')`` of the feature maps for ``image_size``.
        image_size: ``(H, W)`` of the input the sizes refer to.
        rf: the receptive field of the layer's units.
    """

    channels: int
    feature_size: Tuple[int, int]
    image_size: Tuple[int, int]
    rf: ReceptiveField

    @property
    def crop_size(self) -> Tuple[int, int]:
        """Size of the input crop shown for a unit: the receptive field, at most the whole image."""
        return min(self.rf.size[0], self.image_size[0]), min(self.rf.size[1], self.image_size[1])

    def crop_origins(self, positions: torch.Tensor) -> torch.Tensor:
        """Top-left input pixels ``(..., 2)`` of the crops of units at feature-map ``positions`` ``(..., 2)``.

        The receptive field, shifted into the image where it reaches past a border.
        """
        stride = torch.tensor(self.rf.stride, device=positions.device)
        offset = torch.tensor(self.rf.offset, device=positions.device)
        high = torch.tensor(
            [self.image_size[0] - self.crop_size[0], self.image_size[1] - self.crop_size[1]], device=positions.device
        )
        return torch.minimum((offset + positions * stride).clamp_min(0), high)


def _bounding_box(mask: torch.Tensor) -> Tuple[int, int, int, int]:
    """``(top, left, bottom, right)`` (bottom/right exclusive) of the True pixels of an ``(H, W)`` mask."""
    rows = mask.any(1).nonzero().flatten()
    cols = mask.any(0).nonzero().flatten()
    if rows.numel() == 0:
        raise RuntimeError("the unit's gradient is zero everywhere: cannot measure its receptive field")
    return int(rows[0]), int(cols[0]), int(rows[-1]) + 1, int(cols[-1]) + 1


def _gradient_boxes(
    model: nn.Module, layer: str, input_shape: Tuple[int, int, int], samples: int, generator: torch.Generator
) -> Tuple[Tuple[int, int, int, int], Tuple[int, int, int, int], Tuple[int, int], int]:
    """Boxes of nonzero input gradient for a central unit and its diagonal neighbour, the map size and C.

    Each box is the union over ``samples`` random inputs and all channels, so units that are
    inactive or max-pool paths not taken for one input do not shrink it.
    """
    param = next(itertools.chain(model.parameters(), model.buffers()), None)
    device = param.device if param is not None else torch.device("cpu")
    dtype = param.dtype if param is not None and param.is_floating_point() else torch.float32
    x = torch.randn((2 * samples, *input_shape), generator=generator).to(device=device, dtype=dtype)
    x.requires_grad_(True)
    out = _layer_outputs(model, x, [layer])[layer]
    height, width = out.shape[-2:]
    i, j = (height - 1) // 2, (width - 1) // 2
    score = out[:samples, :, i, j].sum() + out[samples:, :, min(i + 1, height - 1), min(j + 1, width - 1)].sum()
    (grad,) = torch.autograd.grad(score, x)
    mask = grad.detach().abs().sum(1) > 0
    centre, neighbour = _bounding_box(mask[:samples].any(0)), _bounding_box(mask[samples:].any(0))
    return centre, neighbour, (int(height), int(width)), int(out.shape[1])


def measure_layer(
    model: nn.Module, layer: str, input_shape: Sequence[int], *, max_size: int = 512, samples: int = 4, seed: int = 0
) -> LayerGeometry:
    """Channels, feature-map size and receptive field of ``layer`` for inputs of ``input_shape``.

    The receptive field is measured, for any architecture, by the gradient of a central unit (all
    channels) with respect to random inputs: its nonzero box is the region, and the box's shift to
    the diagonal neighbour unit is the effective stride. When the region reaches every border of the
    input, the measurement is repeated on inputs twice as large, up to ``max_size`` pixels.

    Runs with the model in eval mode (every submodule's flag restored after), out of inference mode,
    with gradients enabled; randomness comes from its own generator (``seed``), never the global
    RNG; parameter ``.grad`` is not touched (``torch.autograd.grad``).

    Args:
        model: the network; ``model(images)`` must run it.
        layer: the submodule name.
        input_shape: ``(C, H, W)`` of one input.
        max_size: largest input side used for the measurement.
        samples: random inputs per measured unit.
        seed: seed of the random inputs.

    Returns:
        The layer's geometry at ``input_shape``.

    Raises:
        ValueError: the layer's output is not ``(N, C, H, W)``.
        RuntimeError: the layer is not called by the forward pass, or its gradient is zero.

    Example:
        >>> net = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.MaxPool2d(2), nn.Conv2d(4, 4, 3, padding=1))
        >>> g = measure_layer(net, "2", (3, 32, 32))
        >>> g.rf.size, g.rf.stride, g.feature_size, g.channels
        ((8, 8), (2, 2), (16, 16), 4)
    """
    channels, height, width = (int(s) for s in input_shape)
    generator = torch.Generator().manual_seed(seed)
    size = (height, width)
    first: Optional[Tuple[Tuple[int, int], int]] = None
    with preserved_training_flags(model), torch.inference_mode(False), torch.enable_grad():
        while True:
            centre, neighbour, feature_size, out_channels = _gradient_boxes(
                model, layer, (channels, *size), samples, generator
            )
            first = first or (feature_size, out_channels)
            top, left, bottom, right = centre
            complete = top > 0 and left > 0 and bottom < size[0] and right < size[1]
            if complete or 2 * max(size) > max_size:
                break
            size = (2 * size[0], 2 * size[1])
    i, j = (feature_size[0] - 1) // 2, (feature_size[1] - 1) // 2
    if complete and feature_size[0] > 1 and feature_size[1] > 1:
        stride = (neighbour[0] - top, neighbour[1] - left)
    else:  # the box is clipped (or there is no neighbour): the size ratio is the stride
        stride = (max(1, round(size[0] / feature_size[0])), max(1, round(size[1] / feature_size[1])))
    rf = ReceptiveField(
        size=(bottom - top, right - left),
        stride=stride,
        offset=(top - i * stride[0], left - j * stride[1]),
        complete=complete,
    )
    return LayerGeometry(channels=first[1], feature_size=first[0], image_size=(height, width), rf=rf)


def receptive_field(model: nn.Module, layer: str, input_shape: Sequence[int]) -> ReceptiveField:
    """The receptive field of ``layer``'s units (see :func:`measure_layer`).

    Example:
        >>> net = nn.Sequential(nn.Conv2d(3, 4, 5, padding=2), nn.ReLU(), nn.Conv2d(4, 4, 3, padding=1))
        >>> receptive_field(net, "2", (3, 32, 32)).size
        (7, 7)
    """
    return measure_layer(model, layer, input_shape).rf


# --------------------------------------------------------------------------- streamed top-k


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
        device = self._storage.device
        source = images.detach().index_select(0, torch.tensor(list(new.values()), device=images.device))
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

    def keep(self, ids: Iterable[int]) -> None:
        """Drop (free the rows of) every image whose id is not in ``ids``."""
        wanted = set(ids)
        for sample in [sample for sample in self._rows if sample not in wanted]:
            self._free.append(self._rows.pop(sample))

    def stack(self, ids: torch.Tensor, shape: Sequence[int], device: torch.device) -> torch.Tensor:
        """``(M, C, H, W)`` images of ``ids`` ``(M,)``; zeros where an id is empty (``-1``)."""
        out = torch.zeros((len(ids), *shape), device=device)
        rows = [(row, self._rows[sample]) for row, sample in enumerate(ids.tolist()) if sample != _EMPTY_ID]
        if rows:
            index = torch.tensor([row for row, _ in rows], device=device)
            slots = torch.tensor([slot for _, slot in rows], device=self._storage.device)
            out.index_copy_(0, index, self._storage.index_select(0, slots).to(device))
        return out


def _pooled(geometry: "LayerGeometry") -> bool:
    """Whether a layer's crops are kept as whole images in an :class:`ImagePool`.

    Yes when the crop is at least half the image: the image costs at most twice the crop, and it
    is shared by every unit whose top-k holds the sample. Small receptive fields keep their crops.
    """
    crop, image = geometry.crop_size, geometry.image_size
    return 2 * crop[0] * crop[1] >= image[0] * image[1]


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
        self.values = torch.full((count, k), -torch.inf, device=device)
        self.sample_ids = torch.full((count, k), _EMPTY_ID, dtype=torch.long, device=device)
        self.positions = torch.zeros((count, k, 2), dtype=torch.long, device=device)
        self.samples = 0
        self._slots = torch.arange(k, device=device).repeat(count, 1)
        self._in_channels = in_channels
        self._pool = (pool if pool is not None else ImagePool(count * k)) if _pooled(geometry) else None
        self._owns_pool = pool is None
        crop_shape = (0, 0) if self._pool is not None else geometry.crop_size
        self._crops = torch.zeros((count, k, in_channels, *crop_shape), device=device)
        self._maps = torch.zeros((count, k, *geometry.feature_size), device=device)

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
        self.sample_ids = torch.where(valid, candidate_ids.gather(1, columns), _EMPTY_ID)
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
        return [sample for sample in ids if sample != _EMPTY_ID]

    def result(self) -> UnitTopK:
        """The current top-k, entries in rank order."""
        count, k = self._slots.shape
        flat = (self._slots + k * torch.arange(count, device=self._slots.device)[:, None]).flatten()
        if self._pool is None:
            crops = self._crops.flatten(0, 1).index_select(0, flat).unflatten(0, (count, k))
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
            maps=self._maps.flatten(0, 1).index_select(0, flat).unflatten(0, (count, k)),
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
        sample_ids=torch.where(valid, pick(stacked["sample_ids"]), _EMPTY_ID),
        positions=pick(stacked["positions"]),
        crops=pick(stacked["crops"]),
        maps=pick(stacked["maps"]),
        samples=sum(p.samples for p in parts),
    )


def _channel_selector(units: torch.Tensor) -> Union[slice, torch.Tensor]:
    """A slice for a run of consecutive channels (the default, the first n: a view, not a copy), else the indices."""
    first, last = int(units[0]), int(units[-1])
    return slice(first, last + 1) if units.tolist() == list(range(first, last + 1)) else units


class TopActivationTracker:
    """Hooks on layers that feed each forward pass's feature maps into per-layer :class:`RunningTopK`.

    Call the model on a batch, then :meth:`update` with the same batch's images and sample ids. The
    hooks keep only the chosen units' maps of the last forward call, until ``update``. Remove the hooks
    with :meth:`remove` (or use ``with``), also when an error interrupts the stream.

    Args:
        model: the network whose forward passes are observed.
        layers: per layer name, its geometry for the streamed inputs.
        units: per layer name, the channel indices to track.
        k: entries per unit.
        in_channels: channels of the input images.

    Example:
        >>> net = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU())
        >>> geometry = {"1": measure_layer(net, "1", (3, 8, 8))}
        >>> with torch.no_grad(), TopActivationTracker(net, geometry, {"1": [0, 2]}, k=3, in_channels=3) as t:
        ...     for start in (0, 4):
        ...         x = torch.randn(4, 3, 8, 8)
        ...         _ = net(x)
        ...         t.update(x, torch.arange(start, start + 4))
        >>> t.results()["1"].values.shape
        torch.Size([2, 3])
    """

    def __init__(
        self,
        model: nn.Module,
        layers: Dict[str, LayerGeometry],
        units: Dict[str, Sequence[int]],
        k: int,
        in_channels: int,
    ) -> None:
        param = next(itertools.chain(model.parameters(), model.buffers()), None)
        device = param.device if param is not None else torch.device("cpu")
        pooled = [name for name, geometry in layers.items() if _pooled(geometry)]
        self._pool = ImagePool(sum(len(units[name]) for name in pooled) * k)
        self._topk = {
            name: RunningTopK(name, units[name], k, geometry, in_channels, device, pool=self._pool)
            for name, geometry in layers.items()
        }
        self._select = {name: _channel_selector(topk.units) for name, topk in self._topk.items()}
        self._pending: Dict[str, torch.Tensor] = {}
        self._hooks = LayerHooks(model, list(layers), self._stash)

    def _stash(self, name: str, output: torch.Tensor) -> None:
        select = self._select[name]
        output = output.detach()
        self._pending[name] = output[:, select] if isinstance(select, slice) else output.index_select(1, select)

    def update(self, images: torch.Tensor, sample_ids: torch.Tensor) -> None:
        """Merge the feature maps of the last forward pass with this batch's ``images`` ``(N, C, H, W)``.

        Raises:
            RuntimeError: a layer was not called since the last update.
            ValueError: the forward pass saw another number of samples than ``images`` holds.
        """
        try:
            missing = [name for name in self._topk if name not in self._pending]
            if missing:
                raise RuntimeError(f"no forward pass through {missing} since the last batch; the model must be called on the batch")
            for name, topk in self._topk.items():
                topk.update(self._pending[name], images, sample_ids)
            if len(self._pool):
                self._pool.keep(itertools.chain.from_iterable(topk.referenced() for topk in self._topk.values()))
        finally:
            self._pending.clear()

    def discard(self) -> None:
        """Forget the feature maps of forward passes since the last update (a batch not to count)."""
        self._pending.clear()

    def results(self) -> Dict[str, UnitTopK]:
        """The current top-k of every layer."""
        return {name: topk.result() for name, topk in self._topk.items()}

    def remove(self) -> None:
        """Remove the hooks (idempotent); the results stay readable."""
        self._hooks.remove()
        self._pending.clear()

    def __enter__(self) -> "TopActivationTracker":
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.remove()


def top_activations(
    model: nn.Module, batches: Iterable[torch.Tensor], layers: Sequence[str], *, units: Units = None, k: int = 9
) -> Dict[str, UnitTopK]:
    """Stream image batches through ``model`` and keep, per layer and unit, the k strongest samples.

    Eval mode (flags restored after), no gradients; one forward pass per batch; hooks removed after,
    also on errors. Sample ids are positions in the stream (dataset indices for an unshuffled loader).

    Args:
        model: the network; ``model(images)`` runs it.
        batches: ``(N, C, H, W)`` tensors on the model's device, e.g. ``(x.to(dev) for x, _ in loader)``.
        layers: submodule names whose outputs are ``(N, C, H, W)``.
        units: which channels (see :data:`Units`): ``None`` = the first 16.
        k: samples kept per unit.

    Returns:
        Per layer, its :class:`UnitTopK`.

    Raises:
        ValueError: no batches, a bad ``units`` choice, or a layer without ``(N, C, H, W)`` output.

    Example:
        >>> net = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU())
        >>> top = top_activations(net, torch.randn(40, 3, 16, 16).split(8), ["1"], units=4, k=5)
        >>> top["1"].values.shape, top["1"].crops.shape, top["1"].samples
        (torch.Size([4, 5]), torch.Size([4, 5, 3, 3, 3]), 40)
    """
    iterator = iter(batches)
    first = next(iterator, None)
    if first is None:
        raise ValueError("top_activations needs at least one batch")
    geometry = {name: measure_layer(model, name, first.shape[1:]) for name in layers}
    chosen = {name: check_units(units, g.channels) for name, g in geometry.items()}
    seen = 0
    with preserved_training_flags(model), torch.no_grad():
        with TopActivationTracker(model, geometry, chosen, k, in_channels=first.shape[1]) as tracker:
            for images in itertools.chain([first], iterator):
                model(images)
                tracker.update(images, torch.arange(seen, seen + images.shape[0], device=images.device))
                seen += images.shape[0]
    return tracker.results()
