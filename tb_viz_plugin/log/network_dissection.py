"""The ``network_dissection`` view: ``log_network_dissection`` streams batches, ``write_network_dissection`` writes results."""

from __future__ import annotations

from typing import Any, Iterable, List, Mapping, Optional, Sequence, Union

import torch
from torch import nn

from tb_viz_plugin.log.core import make_tag, write_panel
from tb_viz_plugin.methods.activations import activation_layers
from tb_viz_plugin.methods.dissection import Concepts, Dissection, dissect
from tb_viz_plugin.render import ToRGB
from tb_viz_plugin.render import network_dissection as draw
from tb_viz_plugin.render.network_dissection import MAX_UNITS, dissection_history

KIND = "network_dissection"

__all__ = ["KIND", "dissection_history", "log_network_dissection", "write_network_dissection"]


def write_network_dissection(
    writer: Any,
    results: Mapping[str, Dissection],
    step: int,
    *,
    to_rgb: Optional[ToRGB] = None,
    history: Optional[Mapping[str, Sequence[Mapping[str, Any]]]] = None,
    max_units: int = MAX_UNITS,
    name: Optional[str] = None,
) -> List[str]:
    """Write computed dissections (tags ``network_dissection/<layer>[/<name>]``).

    Args:
        writer: a ``torch.utils.tensorboard.SummaryWriter``.
        results: per layer, its :class:`~tb_viz_plugin.methods.Dissection` (``.cpu()``).
        step: the global step to log at.
        to_rgb: inputs -> RGB in ``[0, 1]`` for the top images; ``None`` = min-max per image.
        history: per layer, the earlier points ``{"step", "detectors", "concepts"}`` of the curves
            across epochs (see ``dissection_history``); this step's point is added.
        max_units: units with pictures per layer (highest IoU first); the table lists every unit.
        name: appended to every tag (tells two instances of the view apart).

    Returns:
        The tags written.

    Example:
        >>> import tempfile
        >>> from torch.utils.tensorboard import SummaryWriter
        >>> net = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU())
        >>> results = dissect(net, [torch.rand(4, 3, 16, 16)], "1", quantile=0.02, top_k=2)
        >>> with tempfile.TemporaryDirectory() as logdir, SummaryWriter(logdir) as writer:
        ...     write_network_dissection(writer, results, step=0)
        ['network_dissection/1']
    """
    history = history or {}
    return [
        write_panel(
            writer,
            make_tag(KIND, layer, name=name),
            KIND,
            draw.panel(result.cpu(), step, to_rgb=to_rgb, history=history.get(layer), max_units=max_units),
            step,
        )
        for layer, result in results.items()
    ]


def log_network_dissection(
    writer: Any,
    model: nn.Module,
    batches: Iterable[Union[torch.Tensor, Any]],
    step: int,
    layers: Optional[Union[str, Sequence[str]]] = None,
    *,
    concepts: Optional[Concepts] = None,
    names: Optional[Sequence[str]] = None,
    quantile: float = 0.005,
    iou_threshold: float = 0.04,
    top_k: int = 4,
    to_rgb: Optional[ToRGB] = None,
    name: Optional[str] = None,
) -> List[str]:
    """Dissect ``layers`` over ``batches`` (one streamed pass, see ``methods.dissect``) and log it.

    Args:
        writer: a ``torch.utils.tensorboard.SummaryWriter``.
        model: the network; ``model(images)`` runs it.
        batches: images ``(N, C, H, W)``, or ``(images, masks)`` with ``(N, K, H', W')`` bool masks.
        step: the global step to log at.
        layers: submodule names; ``None`` = the last ``Conv2d``.
        concepts: images -> masks with ``.names``, for batches without masks (default: colours of RGB in ``[0, 1]``).
        names: the concept names of the batches' masks.
        quantile, iou_threshold, top_k: see ``methods.dissect``.
        to_rgb: inputs -> RGB in ``[0, 1]`` for the pictures.
        name: appended to every tag.

    Returns:
        The tags written (``network_dissection/<layer>[/<name>]``).

    Raises:
        LayerNotFoundError: an unknown layer name (the message lists the valid names).
        ValueError: no batches, no concept names, or masks that do not match.

    Example:
        >>> import tempfile
        >>> from torch.utils.tensorboard import SummaryWriter
        >>> net = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 3))
        >>> with tempfile.TemporaryDirectory() as logdir, SummaryWriter(logdir) as writer:
        ...     log_network_dissection(writer, net, torch.rand(8, 3, 16, 16).split(4), step=0, quantile=0.02)
        ['network_dissection/2']
    """
    chosen = activation_layers(model, layers, deepest=True)
    results = dissect(model, batches, chosen, concepts, quantile, iou_threshold, names=names, top_k=top_k)
    return write_network_dissection(writer, results, step, to_rgb=to_rgb, name=name)
