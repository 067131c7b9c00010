"""The ``filters`` view: ``log_filters`` reads a model's conv weights, ``write_filters`` writes given ones."""

from __future__ import annotations

from typing import Any, List, Mapping, Optional, Sequence, Union

import torch
from torch import nn

from tb_viz_plugin.log.core import make_tag, write_panel
from tb_viz_plugin.methods import filter_weights, resolve_layers
from tb_viz_plugin.render import filters as draw

KIND = "filters"


def write_filters(
    writer: Any,
    weights: Mapping[str, torch.Tensor],
    step: int,
    *,
    max_filters: int = 32,
    max_channels: int = 16,
    name: Optional[str] = None,
) -> List[str]:
    """Write filter grids of given conv weights at ``step`` (tags ``filters/<layer>[/<name>]``).

    Args:
        writer: a ``torch.utils.tensorboard.SummaryWriter``.
        weights: per layer name, its ``(out, in, kH, kW)`` filters (CPU tensors).
        step: the global step to log at (use the same step as your scalars).
        max_filters: at most this many filters (rows) are drawn.
        max_channels: at most this many input channels per filter (deeper layers).
        name: appended to every tag (tells two instances of the view apart).

    Returns:
        The tags written.

    Example:
        >>> import tempfile
        >>> from torch.utils.tensorboard import SummaryWriter
        >>> with tempfile.TemporaryDirectory() as logdir, SummaryWriter(logdir) as writer:
        ...     write_filters(writer, {"conv1": torch.randn(8, 3, 5, 5)}, step=0)
        ['filters/conv1']
    """
    tags = []
    for layer, values in weights.items():
        panel = draw.panel(layer, values, max_filters=max_filters, max_channels=max_channels)
        tags.append(write_panel(writer, make_tag(KIND, layer, name=name), KIND, panel, step))
    return tags


def log_filters(
    writer: Any,
    model: nn.Module,
    step: int,
    layers: Optional[Union[str, Sequence[str]]] = None,
    *,
    max_filters: int = 32,
    max_channels: int = 16,
    name: Optional[str] = None,
) -> List[str]:
    """Log filter grids of ``Conv2d`` layers of ``model`` at ``step`` (tags ``filters/<layer>[/<name>]``).

    Args:
        writer: a ``torch.utils.tensorboard.SummaryWriter``.
        model: the network; only its weights are read (no forward pass, nothing changed).
        step: the global step to log at (use the same step as your scalars).
        layers: module names such as ``"features.0"``; ``None`` = the first ``Conv2d``.
        max_filters: at most this many filters (rows) are drawn.
        max_channels: at most this many input channels per filter (deeper layers).
        name: appended to every tag (tells two instances of the view apart).

    Returns:
        The tags written.

    Raises:
        LayerNotFoundError: an unknown layer name (the message lists the Conv2d layers).

    Example:
        >>> import tempfile
        >>> from torch.utils.tensorboard import SummaryWriter
        >>> net = nn.Sequential(nn.Conv2d(3, 8, 5), nn.ReLU(), nn.Conv2d(8, 16, 3))
        >>> with tempfile.TemporaryDirectory() as logdir, SummaryWriter(logdir) as writer:
        ...     log_filters(writer, net, step=0, layers=["0", "2"])
        ['filters/0', 'filters/2']
    """
    weights = {layer: filter_weights(model, layer) for layer in resolve_layers(model, layers)}
    return write_filters(writer, weights, step, max_filters=max_filters, max_channels=max_channels, name=name)
