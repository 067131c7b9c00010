"""Activations of probe images: which layers, which units, and their feature maps.

- :func:`activation_layers`: layer names for the activation views (default the first or last ``Conv2d``).
- :func:`check_units` / :func:`select_units`: which channels (units) of a layer to show.
- :func:`capture_activations`: the feature maps of layers for a batch, the pass stopped after the last.
- :func:`activation_maps`: all of it for the ``activation_maps`` view (:class:`FeatureMaps` per layer).

The receptive fields and the streamed top-k of the ``top_activations`` view live in
:mod:`~tb_viz_plugin.methods.receptive_field`, :mod:`~tb_viz_plugin.methods.top_k` and
:mod:`~tb_viz_plugin.methods.tracking`.
"""

from __future__ import annotations

import dataclasses
from typing import Dict, List, Optional, Sequence, Union

import torch
from torch import nn

from tb_viz_plugin.methods.hooks import layer_outputs
from tb_viz_plugin.methods.layers import conv2d_layer_names, preserved_training_flags, resolve_layers

Units = Optional[Union[int, Sequence[int]]]
"""Which channels (units) of a layer: a count or explicit indices; see each view for what a count picks."""

DEFAULT_UNITS = 16
"""Units shown per layer when none are given."""


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
    return {name: output.detach() for name, output in layer_outputs(model, images, layers).items()}


def select_units(maps: torch.Tensor, units: Union[int, Sequence[int]]) -> torch.Tensor:
    """Channel indices to show: the ``units`` most active (by mean over images and positions), or the given ones.

    Args:
        maps: feature maps ``(N, C, H, W)``.
        units: a count (most active first) or explicit indices (kept in the given order).

    Returns:
        A ``long`` tensor of indices on ``maps.device``.

    Raises:
        ValueError: a count below 1 or an index outside ``[0, C)``.

    Example:
        >>> maps = torch.zeros(1, 4, 2, 2); maps[:, 2] = 5; maps[:, 0] = 1
        >>> select_units(maps, 2).tolist(), select_units(maps, [3, 1]).tolist()
        ([2, 0], [3, 1])
    """
    total = maps.shape[1]
    if isinstance(units, int):
        if units < 1:
            raise ValueError(f"the number of units must be >= 1, got {units}")
        means = maps.detach().float().mean(dim=(0, 2, 3))
        return means.argsort(descending=True, stable=True)[: min(units, total)]
    return torch.as_tensor(check_units(units, total), dtype=torch.long, device=maps.device)


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



@dataclasses.dataclass(frozen=True)
class FeatureMaps:
    """The feature maps of the shown units of one layer, for a batch of images.

    Attributes:
        layer: the layer name.
        maps: ``(N, U, h, w)`` float32, the shown units only, in ``units`` order.
        units: the shown channel indices.
        channels: the layer's number of channels ``C``.
        chosen: ``True`` when the units were given, ``False`` when picked as the most active.
    """

    layer: str
    maps: torch.Tensor
    units: List[int]
    channels: int
    chosen: bool

    def cpu(self) -> "FeatureMaps":
        """The same maps detached on the CPU (what the writers take)."""
        return dataclasses.replace(self, maps=self.maps.detach().cpu())


def activation_maps(
    model: nn.Module, images: torch.Tensor, layers: Sequence[str], units: Union[int, Sequence[int]] = DEFAULT_UNITS
) -> Dict[str, FeatureMaps]:
    """The feature maps that ``images`` produce in ``layers``, for the units shown (the ``activation_maps`` view).

    One forward pass (eval mode, every submodule's flag restored after, no gradients), stopped after
    the last layer. By default the ``units`` most active channels (largest mean activation over all
    the images) are shown, the same ones for every image, most active first.

    Args:
        model: the network; ``model(images)`` runs it.
        images: ``(N, C, H, W)`` on the model's device.
        layers: submodule names whose outputs are ``(N, C, H, W)`` (see :func:`activation_layers`).
        units: how many channels (the most active) or which channel indices.

    Returns:
        Per layer, its :class:`FeatureMaps` (on the model's device).

    Raises:
        ValueError: a layer whose output is not ``(N, C, H, W)``, or bad ``units``.

    Example:
        >>> net = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU())
        >>> result = activation_maps(net, torch.randn(2, 3, 16, 16), ["1"], units=[7, 0])["1"]
        >>> tuple(result.maps.shape), result.units, result.channels, result.chosen
        ((2, 2, 16, 16), [7, 0], 8, True)
    """
    with preserved_training_flags(model), torch.no_grad():
        features = capture_activations(model, images, layers)
    results = {}
    for layer, maps in features.items():
        chosen = select_units(maps, units)
        results[layer] = FeatureMaps(
            layer=layer,
            maps=maps.index_select(1, chosen).float(),
            units=chosen.tolist(),
            channels=int(maps.shape[1]),
            chosen=not isinstance(units, int),
        )
    return results
