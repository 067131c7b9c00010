"""The ``neural_style`` view: ``log_neural_style`` synthesises and stylizes, ``write_neural_style`` writes the results."""

from __future__ import annotations

from typing import Any, Optional, Sequence, Union

import torch
from torch import nn

from tb_viz_plugin.log.core import make_tag, write_panel
from tb_viz_plugin.methods.optvis.style import STYLE_WEIGHT, Stylized, Texture, style_transfer, texture
from tb_viz_plugin.render import neural_style as draw

KIND = "neural_style"


def write_neural_style(
    writer: Any,
    stylized: Stylized,
    step: int,
    *,
    texture: Optional[Texture] = None,
    captions: Optional[Sequence[str]] = None,
    name: Optional[str] = None,
) -> str:
    """Write each content image, its style, the style's texture and the result (``neural_style/<content layer>``).

    Args:
        writer: a ``torch.utils.tensorboard.SummaryWriter``.
        stylized: what ``methods.style_transfer`` returned (CPU tensors).
        step: the global step to log at.
        texture: what ``methods.texture`` returned for the style images (``None`` = no texture column).
        captions: one per content image; default ``"image <i>"``.
        name: appended to the tag (tells two instances of the view apart).

    Returns:
        The tag written.

    Raises:
        ValueError: ``captions`` or textures of another length than the images.
    """
    tag = make_tag(KIND, stylized.content_layer, name=name)
    return write_panel(writer, tag, KIND, draw.panel(stylized, texture, captions), step)


def log_neural_style(
    writer: Any,
    model: nn.Module,
    content: torch.Tensor,
    step: int,
    *,
    content_layer: str,
    style_layers: Union[str, Sequence[str]],
    style: Optional[torch.Tensor] = None,
    captions: Optional[Sequence[str]] = None,
    steps: int = 200,
    style_weight: float = STYLE_WEIGHT,
    mean: Optional[Sequence[float]] = None,
    std: Optional[Sequence[float]] = None,
    seed: int = 0,
    name: Optional[str] = None,
) -> str:
    """Texture of each style image and each content image in that style, logged next to the sources.

    Args:
        writer: a ``torch.utils.tensorboard.SummaryWriter``.
        model: the network; not modified.
        content: ``(N, C, H, W)`` model inputs, normalised with ``mean``/``std`` like the dataset's.
        step: the global step to log at.
        content_layer: the layer whose raw features are kept.
        style_layers: the layers whose Gram matrices are matched (a name or a list).
        style: ``(N or 1, C, H, W)`` model inputs; ``None`` = the content images shifted by one
            (image ``i`` in the style of image ``i + 1``).
        captions: one per content image; default ``"image <i>"``.
        steps: optimisation steps of each of the two batches (textures, stylized images).
        style_weight: weight of the style loss against the content loss.
        mean: per-channel mean of the input normalisation (``None`` = inputs in [0, 1]).
        std: per-channel standard deviation of that normalisation.
        seed: seed of the textures' starting noise.
        name: appended to the tag (tells two instances of the view apart).

    Returns:
        The tag written.

    Raises:
        LayerNotFoundError: a layer that is not a module of ``model``.
        ValueError: ``captions`` of another length than ``content``, or see ``methods.style_transfer``.

    Example:
        >>> import tempfile
        >>> from torch.utils.tensorboard import SummaryWriter
        >>> net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Conv2d(4, 4, 3))
        >>> with tempfile.TemporaryDirectory() as logdir, SummaryWriter(logdir) as writer:
        ...     log_neural_style(writer, net, torch.randn(2, 3, 16, 16), 0, content_layer="2", style_layers="1", steps=2)
        'neural_style/2'
    """
    if captions is not None and len(captions) != len(content):
        raise ValueError(f"got {len(captions)} captions for {len(content)} images")
    style = content.roll(-1, 0) if style is None else style
    stylized = style_transfer(model, content, style, content_layer, style_layers, steps=steps,
                              style_weight=style_weight, mean=mean, std=std)  # fmt: skip
    textures = texture(model, style.expand_as(content), style_layers, steps=steps, mean=mean, std=std, seed=seed)
    return write_neural_style(writer, stylized, step, texture=textures, captions=captions, name=name)
