"""The ``activation_maps`` view: ``log_activation_maps`` runs the model, ``write_activation_maps`` writes its maps."""

from __future__ import annotations

from typing import Any, List, Mapping, Optional, Sequence, Union

import torch
from torch import nn

from tb_viz_plugin.methods.model_io import IO, TaskModel, as_io
from tb_viz_plugin.methods.model_display import display
from tb_viz_plugin.log.core import make_tag, write_panel
from tb_viz_plugin.methods.activations import DEFAULT_UNITS, FeatureMaps, activation_layers, activation_maps
from tb_viz_plugin.render import ToRGB
from tb_viz_plugin.render import activation_maps as draw

KIND = "activation_maps"


def write_activation_maps(
    writer: Any,
    images: torch.Tensor,
    results: Mapping[str, FeatureMaps],
    step: int,
    *,
    to_rgb: Optional[ToRGB] = None,
    captions: Optional[Sequence[str]] = None,
    name: Optional[str] = None,
) -> List[str]:
    """Write the feature maps of probe images (tags ``activation_maps/<layer>[/<name>]``).

    One grid per image per layer: the image, then one tile per shown unit; the caption names them.

    Args:
        writer: a ``torch.utils.tensorboard.SummaryWriter``.
        images: ``(N, C, H, W)`` the probe images (model inputs, CPU).
        results: per layer, what ``methods.activation_maps`` returned (``FeatureMaps.cpu()``).
        step: the global step to log at.
        to_rgb: inputs ``(N, C, H, W)`` -> RGB ``(N, 3, H, W)`` in ``[0, 1]``; ``None`` = min-max per image.
        captions: one caption prefix per image (e.g. ``"val #12"``); default ``"image i"``.
        name: appended to every tag (tells two instances of the view apart).

    Returns:
        The tags written.

    Raises:
        ValueError: ``captions`` of another length than ``images``.
    """
    panels = draw.panels(images, results, to_rgb=to_rgb, captions=captions)
    return [write_panel(writer, make_tag(KIND, layer, name=name), KIND, panel, step) for layer, panel in panels.items()]


def log_activation_maps(
    writer: Any,
    model: nn.Module,
    images: torch.Tensor,
    step: int,
    layers: Optional[Union[str, Sequence[str]]] = None,
    *,
    units: Union[int, Sequence[int]] = DEFAULT_UNITS,
    to_rgb: Optional[ToRGB] = None,
    captions: Optional[Sequence[str]] = None,
    name: Optional[str] = None,
    io: IO = None,
) -> List[str]:
    """Log the feature maps that ``images`` produce in ``layers`` (tags ``activation_maps/<layer>[/<name>]``).

    By default the ``units`` most active channels (largest mean activation over all the images) are
    shown, the same ones for every image, most active first (see ``methods.activation_maps``).

    Args:
        writer: a ``torch.utils.tensorboard.SummaryWriter``.
        model: the network; ``model(images)`` runs it (eval mode, no gradients, flags restored after).
        images: ``(N, C, H, W)`` probe inputs on the model's device.
        step: the global step to log at.
        layers: submodule names; ``None`` = the first ``Conv2d``.
        units: how many channels (the most active) or which channel indices.
        to_rgb: inputs ``(N, C, H, W)`` -> RGB ``(N, 3, H, W)`` in ``[0, 1]``; ``None`` = min-max per image.
        captions: one caption prefix per image (e.g. ``"val #12"``); default ``"image i"``.
        io: how the model takes inputs (``methods.model_io.ModelIO`` or a dict): a forward taking a
            batch, how inputs are shown (``to_rgb`` or ``mean``/``std``).
        name: appended to every tag (tells two instances of the view apart).

    Returns:
        The tags written.

    Raises:
        LayerNotFoundError: an unknown layer name (the message lists the valid names).
        ValueError: a layer whose output is not ``(N, C, H, W)``, or bad ``units``.

    Example:
        >>> import tempfile
        >>> from torch.utils.tensorboard import SummaryWriter
        >>> net = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2))
        >>> with tempfile.TemporaryDirectory() as logdir, SummaryWriter(logdir) as writer:
        ...     log_activation_maps(writer, net, torch.randn(2, 3, 16, 16), step=0, layers=["1", "2"], units=4)
        ['activation_maps/1', 'activation_maps/2']
    """
    io = as_io(io)
    results = activation_maps(TaskModel(model, io), images, activation_layers(model, layers), units)
    cpu = {layer: result.cpu() for layer, result in results.items()}
    return write_activation_maps(writer, images.detach().cpu(), cpu, step, to_rgb=display(io, to_rgb), captions=captions,
                                 name=name)  # fmt: skip
