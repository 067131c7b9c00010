"""The ``deepdream`` view: ``log_deepdream`` dreams probe images, ``write_deepdream`` writes a dream."""

from __future__ import annotations

import dataclasses
from typing import Any, Optional, Sequence, Union

import torch
from torch import nn

from tb_viz_plugin.log.core import make_tag, write_panel
from tb_viz_plugin.methods.layers import one_layer
from tb_viz_plugin.methods.model_io import IO, TaskModel, as_io
from tb_viz_plugin.methods.optvis.deepdream import Dream, dream
from tb_viz_plugin.render import ToRGB, pixels_rgb
from tb_viz_plugin.render import deepdream as draw

KIND = "deepdream"


def shown_rgb(
    result: Dream,
    to_rgb: Optional[ToRGB] = None,
    mean: Optional[Sequence[float]] = None,
    std: Optional[Sequence[float]] = None,
) -> Dream:
    """``result`` with its originals and dreams as RGB for display (see ``render.pixels_rgb``)."""
    return dataclasses.replace(
        result,
        originals=pixels_rgb(result.originals, to_rgb, mean, std),
        dreams=pixels_rgb(result.dreams, to_rgb, mean, std),
    )


def write_deepdream(
    writer: Any, result: Dream, step: int, *, captions: Optional[Sequence[str]] = None, name: Optional[str] = None
) -> str:
    """Write each probe image next to its dream (tag ``deepdream/<layer>[/<name>]``).

    Args:
        writer: a ``torch.utils.tensorboard.SummaryWriter``.
        result: what ``methods.dream`` returned (CPU tensors).
        step: the global step to log at.
        captions: one per image (e.g. ``"#12 circle"``); default ``"image <i>"``.
        name: appended to the tag (tells two instances of the view apart).

    Returns:
        The tag written.

    Raises:
        ValueError: ``captions`` of another length than the images.
    """
    return write_panel(writer, make_tag(KIND, result.layer, name=name), KIND, draw.panel(result, captions), step)


def log_deepdream(
    writer: Any,
    model: nn.Module,
    images: torch.Tensor,
    step: int,
    *,
    layers: Union[str, Sequence[str]],
    captions: Optional[Sequence[str]] = None,
    octaves: int = 3,
    steps: int = 10,
    mean: Optional[Sequence[float]] = None,
    std: Optional[Sequence[float]] = None,
    seed: int = 0,
    name: Optional[str] = None,
    to_rgb: Optional[ToRGB] = None,
    io: IO = None,
) -> str:
    """DeepDream each image at the layer and log it next to its original (tag ``deepdream/<layer>[/<name>]``).

    Args:
        writer: a ``torch.utils.tensorboard.SummaryWriter``.
        model: the network; not modified.
        images: ``(N, C, H, W)`` model inputs, normalised with ``mean``/``std`` like the dataset's.
        step: the global step to log at.
        layers: the module whose activations are amplified (a name or a one-element list).
        captions: one per image (e.g. ``"#12 circle"``); default ``"image <i>"``.
        octaves: scales, smallest to full size.
        steps: gradient steps per octave.
        mean: per-channel mean of the input normalisation (``None`` = inputs in [0, 1]).
        std: per-channel standard deviation of that normalisation.
        seed: seed of the jitter (our own generator).
        name: appended to the tag (tells two instances of the view apart).
        to_rgb: model inputs -> RGB in ``[0, 1]`` for display (default ``io.to_rgb``, else 3
            channels as they are, one as grey, more as the first three).
        io: how the model takes inputs (``methods.model_io.ModelIO`` or a dict): a forward taking a
            batch, ``mean``/``std`` (when not given here), ``to_rgb``.

    Returns:
        The tag written.

    Raises:
        LayerNotFoundError: the layer is not a module of ``model``.
        ValueError: several layers, or ``captions`` of another length than ``images``.

    Example:
        >>> import tempfile
        >>> from torch.utils.tensorboard import SummaryWriter
        >>> net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU())
        >>> with tempfile.TemporaryDirectory() as logdir, SummaryWriter(logdir) as writer:
        ...     log_deepdream(writer, net, torch.randn(2, 3, 16, 16), step=0, layers="1", octaves=2, steps=2)
        'deepdream/1'
    """
    layer = one_layer(layers, "log_deepdream")
    if layer is None:
        raise ValueError("log_deepdream needs the layer to dream at: layers=<module name>")
    if captions is not None and len(captions) != len(images):
        raise ValueError(f"got {len(captions)} captions for {len(images)} images")
    io = as_io(io)
    mean, std, to_rgb = mean or io.mean, std or io.std, to_rgb or io.to_rgb
    with torch.inference_mode(False), torch.enable_grad():
        result = dream(TaskModel(model, io), images, layer, octaves=octaves, steps=steps, mean=mean, std=std, seed=seed)
    return write_deepdream(writer, shown_rgb(result, to_rgb, mean, std), step, captions=captions, name=name)
