"""The ``feature_inversion`` view: ``log_feature_inversion`` inverts and writes, ``write_feature_inversion`` writes."""

from __future__ import annotations

from typing import Any, Optional, Sequence, Union

import torch
from torch import nn

from tb_viz_plugin.log.core import make_tag, write_panel
from tb_viz_plugin.methods.optvis.inversion import Inversion, invert
from tb_viz_plugin.render import feature_inversion as draw

KIND = "feature_inversion"


def inversion_tag(layers: Sequence[str], name: Optional[str] = None) -> str:
    """``feature_inversion/<layers joined by +>[/<name>]``.

    Example:
        >>> inversion_tag(["features.0", "features.8"])
        'feature_inversion/features.0+features.8'
    """
    return make_tag(KIND, "+".join(layers), name=name)


def write_feature_inversion(
    writer: Any, result: Inversion, step: int, *, captions: Optional[Sequence[str]] = None, name: Optional[str] = None
) -> str:
    """Write each probe image next to its reconstructions (tag ``feature_inversion/<layers>[/<name>]``).

    Args:
        writer: a ``torch.utils.tensorboard.SummaryWriter``.
        result: what ``methods.invert`` returned (CPU tensors).
        step: the global step to log at.
        captions: one per image (e.g. ``"#12 circle"``); default ``"image <i>"``.
        name: appended to the tag (tells two instances of the view apart).

    Returns:
        The tag written.

    Raises:
        ValueError: ``captions`` of another length than the images.
    """
    return write_panel(writer, inversion_tag(result.layers, name), KIND, draw.panel(result, captions), step)


def log_feature_inversion(
    writer: Any,
    model: nn.Module,
    images: torch.Tensor,
    step: int,
    *,
    layers: Union[str, Sequence[str]],
    captions: Optional[Sequence[str]] = None,
    steps: int = 200,
    mean: Optional[Sequence[float]] = None,
    std: Optional[Sequence[float]] = None,
    seed: int = 0,
    name: Optional[str] = None,
) -> str:
    """Reconstruct each image from each layer's features and log them (tag ``feature_inversion/<layers>[/<name>]``).

    Args:
        writer: a ``torch.utils.tensorboard.SummaryWriter``.
        model: the network; not modified.
        images: ``(N, C, H, W)`` model inputs, normalised with ``mean``/``std`` like the dataset's.
        step: the global step to log at.
        layers: the modules whose features are inverted (a name or a list).
        captions: one per image (e.g. ``"#12 circle"``); default ``"image <i>"``.
        steps: optimisation steps (every image x layer in one batch).
        mean: per-channel mean of the input normalisation (``None`` = inputs in [0, 1]).
        std: per-channel standard deviation of that normalisation.
        seed: seed of the starting noise (our own generator).
        name: appended to the tag (tells two instances of the view apart).

    Returns:
        The tag written.

    Raises:
        LayerNotFoundError: a layer that is not a module of ``model``.
        ValueError: ``captions`` of another length than ``images``, or see ``methods.invert``.

    Example:
        >>> import tempfile
        >>> from torch.utils.tensorboard import SummaryWriter
        >>> net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Conv2d(4, 4, 3))
        >>> with tempfile.TemporaryDirectory() as logdir, SummaryWriter(logdir) as writer:
        ...     log_feature_inversion(writer, net, torch.randn(2, 3, 16, 16), step=0, layers=["0", "2"], steps=2)
        'feature_inversion/0+2'
    """
    if captions is not None and len(captions) != len(images):
        raise ValueError(f"got {len(captions)} captions for {len(images)} images")
    result = invert(model, images, layers, steps=steps, mean=mean, std=std, seed=seed)
    return write_feature_inversion(writer, result, step, captions=captions, name=name)
