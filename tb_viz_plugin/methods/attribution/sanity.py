"""Do the maps explain the model? The model-randomisation check (Adebayo et al. 2018) and the pointing game.

- :func:`model_randomisation`: re-initialise the model's layers from the top down (cascading, on a
  copy) and measure how similar each method's maps stay; a map that survives randomising the
  layers it should depend on does not explain the model.
- :func:`pointing_game` (Zhang et al. 2016): does each map's maximum fall on the object?
- :func:`spearman`: per-image rank correlation of two batches of maps (ties share their mean rank).
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import torch
import torch.nn.functional as F
from torch import nn

from tb_viz_plugin.methods.attribution.core import attribute
from tb_viz_plugin.methods.attribution.hooks import trace_modules
from tb_viz_plugin.methods.attribution.targets import Targets
from tb_viz_plugin.methods.layers import preserved_training_flags, resolve_layers

_NORMS = (nn.modules.batchnorm._NormBase, nn.GroupNorm, nn.LayerNorm)


def _ranks(values: torch.Tensor) -> torch.Tensor:
    """Ranks along the last dimension of ``(N, M)`` values (float64), ties sharing their mean rank."""
    ordered, order = values.sort(dim=1)
    ranks = torch.empty(values.shape, dtype=torch.float64, device=values.device)
    for row, (sorted_row, row_order) in enumerate(zip(ordered, order)):
        _, inverse, counts = torch.unique_consecutive(sorted_row, return_inverse=True, return_counts=True)
        ends = counts.cumsum(0)
        ranks[row, row_order] = ((ends - counts + ends - 1).double() / 2)[inverse]
    return ranks


def spearman(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Per-image Spearman rank correlation of two ``(N, H, W)`` batches of maps.

    Returns:
        ``(N,)`` float64; NaN for an image whose map is constant in ``a`` or ``b``.

    Raises:
        ValueError: the batches differ in shape.

    Example:
        >>> a = torch.tensor([[[1.0, 2.0], [3.0, 4.0]]])
        >>> round(spearman(a, a ** 3).item(), 6), round(spearman(a, -a).item(), 6)
        (1.0, -1.0)
    """
    if a.shape != b.shape:
        raise ValueError(f"maps must have the same shape, got {tuple(a.shape)} and {tuple(b.shape)}")
    ra, rb = _ranks(a.detach().flatten(1)), _ranks(b.detach().flatten(1))
    ra, rb = ra - ra.mean(1, keepdim=True), rb - rb.mean(1, keepdim=True)
    return (ra * rb).sum(1) / (ra.norm(dim=1) * rb.norm(dim=1))


def pointing_game(maps: torch.Tensor, masks: torch.Tensor, tolerance: int = 0) -> torch.Tensor:
    """Whether each map's maximum lies on its object (within ``tolerance`` pixels of the mask).

    Zhang et al. (2016) count a hit within 15 pixels of the object at 224 pixels; the hit rate
    is ``pointing_game(...).float().mean()``. Ties: the first maximum in row-major order.

    Args:
        maps: ``(N, H, W)`` attribution maps.
        masks: ``(N, H, W)`` object masks (bool or 0/1).
        tolerance: how far from the mask a maximum still counts, in pixels (a square neighbourhood).

    Returns:
        ``(N,)`` bool.

    Raises:
        ValueError: maps and masks differ in shape, or a negative tolerance.

    Example:
        >>> masks = torch.zeros(2, 4, 4, dtype=torch.bool); masks[:, 0, 0] = True
        >>> maps = torch.zeros(2, 4, 4); maps[0, 0, 0] = 1.0; maps[1, 0, 2] = 1.0
        >>> pointing_game(maps, masks).tolist(), pointing_game(maps, masks, tolerance=2).tolist()
        ([True, False], [True, True])
    """
    if maps.shape != masks.shape or maps.dim() != 3:
        raise ValueError(f"maps and masks must both be (N, H, W), got {tuple(maps.shape)} and {tuple(masks.shape)}")
    if tolerance < 0:
        raise ValueError(f"tolerance must be >= 0, got {tolerance}")
    region = masks.to(device=maps.device, dtype=torch.float32)
    if tolerance:
        region = F.max_pool2d(region[:, None], 2 * tolerance + 1, stride=1, padding=tolerance)[:, 0]
    peak = maps.detach().flatten(1).argmax(1, keepdim=True)
    return region.flatten(1).gather(1, peak).squeeze(1) > 0


def _reinitialise(module: nn.Module, generator: torch.Generator) -> None:
    """PyTorch's default initialisation of ``module``'s own parameters, drawn from ``generator``.

    Weights with 2+ dimensions: uniform in ``+-1/sqrt(fan_in)`` (``kaiming_uniform_(a=sqrt(5))``,
    the default of conv and linear layers); biases likewise with the weight's fan-in; normalisation
    layers: weight 1, bias 0, running statistics reset.
    """
    if hasattr(module, "reset_running_stats"):
        module.reset_running_stats()
    weight = getattr(module, "weight", None)
    fan_in = weight[0].numel() if isinstance(weight, torch.Tensor) and weight.dim() >= 2 else None
    with torch.no_grad():
        for name, parameter in module.named_parameters(recurse=False):
            if isinstance(module, _NORMS):
                parameter.fill_(1.0 if name == "weight" else 0.0)
                continue
            fan = parameter[0].numel() if parameter.dim() >= 2 else fan_in or parameter.numel()
            bound = 1 / math.sqrt(fan)
            draw = torch.rand(parameter.shape, generator=generator, dtype=torch.float64) * 2 - 1
            parameter.copy_((draw * bound).to(parameter.dtype))


def _parametrised_modules(model: nn.Module, images: torch.Tensor) -> List[str]:
    """Names of the modules with parameters of their own, the last to run first."""
    calls, _ = trace_modules(model, images[:1])
    names = [call.name for call in calls if next(call.module.parameters(recurse=False), None) is not None]
    return list(reversed(list(dict.fromkeys(names))))


@dataclass(frozen=True)
class RandomisationCheck:
    """What :func:`model_randomisation` returns.

    Attributes:
        stages: the module re-initialised at each stage; stage ``s`` has ``stages[:s + 1]`` randomised.
        correlations: ``(method, layer)`` -> ``(stages, N)`` float64 Spearman correlation of each
            image's map after each stage with its map on the original model.
    """

    stages: List[str]
    correlations: Dict[Tuple[str, Optional[str]], torch.Tensor]

    def mean(self, method: str, layer: Optional[str] = None) -> torch.Tensor:
        """``(stages,)``: the mean correlation over images (NaN-skipping) of ``method`` (at ``layer``; default its first).

        Raises:
            KeyError: that method (and layer) was not computed.
        """
        for (name, at), values in self.correlations.items():
            if name == method and (layer is None or at == layer):
                return values.nanmean(1)
        raise KeyError(f"no correlations for {method!r} at layer {layer!r}; computed: {list(self.correlations)}")


def model_randomisation(
    model: nn.Module,
    images: torch.Tensor,
    methods: Union[str, Sequence[str]] = ("grad_cam",),
    *,
    modules: Optional[Sequence[str]] = None,
    targets: Targets = "predicted",
    layers: Optional[Union[str, Sequence[str]]] = None,
    options: Optional[Mapping[str, Mapping[str, Any]]] = None,
    seed: int = 0,
) -> RandomisationCheck:
    """Cascading model randomisation (Adebayo et al. 2018, "Sanity checks for saliency maps").

    On a deep copy of ``model`` (the model itself is not changed), the ``modules`` are
    re-initialised one after another, top first and cumulatively; after each one the maps of
    ``methods`` are computed again for the same targets (those of the original model) and
    compared with the original maps by Spearman rank correlation. A faithful method's maps
    decorrelate as the layers they depend on are randomised.

    Args:
        model: the network (a plain ``nn.Module``; it is deep-copied once).
        images: ``(N, C, H, W)``.
        methods: attribution method names, as for ``attribute``.
        modules: module names to re-initialise, in order (top first); default every module with
            parameters of its own, the last to run first (the full cascade).
        targets: as for ``attribute``; resolved on the original model and kept for every stage.
        layers: the layers of the layer methods, as for ``attribute``.
        options: per-method options, as for ``attribute``.
        seed: seed of this function's own generator for the new weights (the global RNG is not used).

    Returns:
        A :class:`RandomisationCheck`: ``correlations[method, layer]`` is ``(stages, N)``.

    Raises:
        LayerNotFoundError: an unknown module name.
        ValueError: what ``attribute`` raises for the methods, targets or layers.

    Example:
        >>> net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Conv2d(4, 4, 3), nn.ReLU(),
        ...                     nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 2))
        >>> check = model_randomisation(net, torch.rand(2, 3, 12, 12), "grad_cam", layers="2")
        >>> check.stages, check.correlations["grad_cam", "2"].shape
        (['6', '2', '0'], torch.Size([3, 2]))
    """
    before = attribute(model, images, methods, targets, layers, options)
    with preserved_training_flags(model), torch.no_grad():
        order = list(modules) if modules is not None else _parametrised_modules(model, images.detach())
    stages = resolve_layers(model, order, accept=lambda module: True, what="module") if order else []
    generator = torch.Generator().manual_seed(int(seed))
    copied = copy.deepcopy(model)
    correlations: Dict[Tuple[str, Optional[str]], List[torch.Tensor]] = {(m.method, m.layer): [] for m in before.maps}
    for name in stages:
        for submodule in copied.get_submodule(name).modules():
            _reinitialise(submodule, generator)
        after = attribute(copied, images, methods, before.targets, before.layers or None, options)
        for entry in before.maps:
            correlations[entry.method, entry.layer].append(spearman(entry.values, after.get(entry.method, entry.layer)))
    empty = torch.empty(0, len(images), dtype=torch.float64)
    return RandomisationCheck(
        stages=stages, correlations={key: torch.stack(values) if values else empty for key, values in correlations.items()}
    )
