"""The ``activation_maximization`` view: ``log_activation_maximization`` optimises images, ``write_...`` writes them.

Tags: ``activation_maximization/output`` for the class logits, ``activation_maximization/<layer>``
for units of a layer; each item's caption names the target and its final objective value.
"""

from __future__ import annotations

import dataclasses
from typing import Any, List, Mapping, Optional, Sequence, Tuple, Union

import torch
from torch import nn

from tb_viz_plugin.methods.layers import model_device
from tb_viz_plugin.methods.model_io import IO, as_io, prepare
from tb_viz_plugin.log.core import make_tag, write_panel
from tb_viz_plugin.methods.optvis.maximize import Maximization, activation_maximization
from tb_viz_plugin.render import ToRGB, pixels_rgb
from tb_viz_plugin.render import activation_maximization as draw

KIND = "activation_maximization"


def shown_rgb(
    result: Maximization,
    to_rgb: Optional[ToRGB] = None,
    mean: Optional[Sequence[float]] = None,
    std: Optional[Sequence[float]] = None,
) -> Maximization:
    """``result`` with its images as RGB for display (see ``render.pixels_rgb``); 3-channel results unchanged."""
    groups = [dataclasses.replace(g, images=pixels_rgb(g.images, to_rgb, mean, std)) for g in result.groups]
    return dataclasses.replace(result, groups=groups)


def write_activation_maximization(writer: Any, result: Maximization, step: int, *, name: Optional[str] = None) -> List[str]:
    """Write optimised images (tags ``activation_maximization/<output or layer>[/<name>]``), one tag per group.

    Args:
        writer: a ``torch.utils.tensorboard.SummaryWriter``.
        result: what ``methods.activation_maximization`` returned (its images are on the CPU).
        step: the global step to log at.
        name: appended to every tag (tells two instances of the view apart).

    Returns:
        The tags written.
    """
    panels = draw.panels(result)
    return [write_panel(writer, make_tag(KIND, what, name=name), KIND, panel, step) for what, panel in panels.items()]


def log_activation_maximization(
    writer: Any,
    model: nn.Module,
    step: int,
    *,
    classes: Optional[Sequence[int]] = None,
    class_names: Optional[Sequence[str]] = None,
    units: Optional[Mapping[str, Sequence[int]]] = None,
    steps: int = 64,
    size: Union[int, Tuple[int, int]] = 64,
    param: str = "pyramid",
    mean: Optional[Sequence[float]] = None,
    std: Optional[Sequence[float]] = None,
    seed: int = 0,
    name: Optional[str] = None,
    channels: int = 3,
    to_rgb: Optional[ToRGB] = None,
    io: IO = None,
) -> List[str]:
    """Render the image each class (and each listed unit) wants to see, and log them at ``step``.

    All targets are optimised together as one batch (one image per target), from the same seeded
    start at every call so that steps compare (see ``methods.activation_maximization``).

    Args:
        writer: a ``torch.utils.tensorboard.SummaryWriter``.
        model: the network, taking images normalised with ``mean``/``std``; not modified.
        step: the global step to log at.
        classes: output indices to maximise (the pre-softmax logit); ``None`` = every output
            (at most ``MAX_CLASSES``); ``[]`` = none.
        class_names: names of the outputs, for captions.
        units: ``{layer name: [channel, ...]}``: maximise each channel's mean activation.
        steps: optimisation steps.
        size: image side or ``(height, width)`` (the training images' for a fixed-size head).
        param: ``"pyramid"`` (multi-scale octaves), ``"fourier"`` (1/f spectrum) or ``"pixel"``.
        mean: per-channel mean of the model's input normalisation (``None`` = inputs in [0, 1]).
        std: per-channel standard deviation of that normalisation.
        seed: seed of the initial images and the random transforms (our own generator).
        name: appended to every tag (tells two instances of the view apart).
        channels: the model's input channels (the images have as many).
        to_rgb: model inputs -> RGB in ``[0, 1]`` for display (needed to choose how more than 3
            channels are shown; default ``io.to_rgb``, else grey for 1, the first three for more).
        io: how the model takes inputs and gives outputs (``methods.model_io.ModelIO`` or a dict):
            the logits of a dict/tuple output, the task (what a class score is), ``mean``/``std``.

    Returns:
        The tags written.

    Raises:
        ValueError: no targets, an unknown ``param``, or too many outputs for ``classes=None``.
        LayerNotFoundError: a layer name that is not a module of ``model``.
        IndexError: a class or unit index out of range.

    Example:
        >>> import tempfile
        >>> from torch.utils.tensorboard import SummaryWriter
        >>> net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten())
        >>> with tempfile.TemporaryDirectory() as logdir, SummaryWriter(logdir) as writer:
        ...     log_activation_maximization(writer, net, step=0, class_names=["a", "b", "c", "d"],
        ...                                 units={"0": [0, 1]}, steps=2, size=16)
        ['activation_maximization/output', 'activation_maximization/0']
    """
    io = as_io(io)
    mean, std, to_rgb = mean or io.mean, std or io.std, to_rgb or io.to_rgb
    grey = torch.full((1, channels, *((size, size) if isinstance(size, int) else size)), 0.5, device=model_device(model))
    wrapped, _ = prepare(model, grey, io)
    with torch.inference_mode(False), torch.enable_grad():
        result = activation_maximization(
            wrapped, classes=classes, class_names=class_names, units=units, steps=steps, size=size, param=param,
            mean=mean, std=std, seed=seed, channels=channels,
        )  # fmt: skip
    return write_activation_maximization(writer, shown_rgb(result, to_rgb, mean, std), step, name=name)
