"""Streaming the top-k over a model's own forward passes: hooks feeding :class:`~tb_viz_plugin.methods.top_k.RunningTopK`.

:class:`TopActivationTracker` observes forward passes someone else runs (the Lightning validation
loop); :func:`top_activations` runs them itself over an iterable of batches, for plain PyTorch.
"""

from __future__ import annotations

import itertools
from typing import Any, Dict, Iterable, Sequence, Union

import torch
from torch import nn

from tb_viz_plugin.methods.activations import Units, check_units
from tb_viz_plugin.methods.hooks import LayerHooks
from tb_viz_plugin.methods.image_pool import ImagePool, pooled
from tb_viz_plugin.methods.layers import model_device, preserved_training_flags
from tb_viz_plugin.methods.receptive_field import LayerGeometry, measure_layer
from tb_viz_plugin.methods.top_k import RunningTopK, UnitTopK


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
        device = model_device(model)
        shared = [name for name, geometry in layers.items() if pooled(geometry)]
        self._pool = ImagePool(sum(len(units[name]) for name in shared) * k)
        self._topk = {
            name: RunningTopK(name, units[name], k, geometry, in_channels, device, pool=self._pool)
            for name, geometry in layers.items()
        }
        self._select = {name: _channel_selector(topk.units) for name, topk in self._topk.items()}
        self._pending: Dict[str, torch.Tensor] = {}
        self._hooks = LayerHooks(model, list(layers), self._stash, feature_maps=True)

    def restart(self, model: nn.Module) -> None:
        """Start a new stream on ``model`` with the same layers, units, k and device, reusing the storage.

        The last stream's results are dropped and the hooks installed again (:meth:`remove` first).
        A stream per validation epoch this way allocates (and page-faults) its crops, maps and
        images once per fit instead of once per epoch.
        """
        self.remove()
        self._pool.clear()
        for topk in self._topk.values():
            topk.reset()
        self._hooks = LayerHooks(model, list(self._topk), self._stash, feature_maps=True)

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
