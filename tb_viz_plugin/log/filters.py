"""``log_filters``: filter grids of conv layers, for plain PyTorch (``FilterGrid`` calls it too)."""

from __future__ import annotations

from typing import Any, List, Optional, Sequence, Union

from torch import nn

from tb_viz_plugin import render
from tb_viz_plugin.log.core import log_items
from tb_viz_plugin.methods import filter_weights, resolve_layers


def log_filters(
    writer: Any,
    model: nn.Module,
    step: int,
    layers: Optional[Union[str, Sequence[str]]] = None,
    *,
    max_filters: int = 32,
    max_channels: int = 16,
) -> List[str]:
    """Log filter grids of ``Conv2d`` layers of ``model`` at ``step`` (tags ``filters/<layer>``).

    Args:
        writer: a ``torch.utils.tensorboard.SummaryWriter``.
        model: the network; only its weights are read (no forward pass, nothing changed).
        step: the global step to log at (use the same step as your scalars).
        layers: module names such as ``"features.0"``; ``None`` = the first ``Conv2d``.
        max_filters: at most this many filters (rows) are drawn.
        max_channels: at most this many input channels per filter (deeper layers).

    Returns:
        The tags written.

    Raises:
        LayerNotFoundError: an unknown layer name (the message lists the Conv2d layers).

    Example:
        >>> from torch.utils.tensorboard import SummaryWriter  # doctest: +SKIP
        >>> writer = SummaryWriter("runs/exp1")  # doctest: +SKIP
        >>> log_filters(writer, model, step=epoch, layers=["conv1", "layer1.0.conv1"])  # doctest: +SKIP
    """
    tags = []
    for name in resolve_layers(model, layers):
        weights = filter_weights(model, name)
        image, meta = render.filter_grid(weights, max_filters=max_filters, max_channels=max_channels)
        out_ch, in_ch, kh, kw = meta["weight_shape"]
        if meta["layout"] == "rgb":
            caption = f"{meta['filters_shown']} of {out_ch} filters as RGB, {kh}x{kw}, min-max per filter"
        else:
            caption = (
                f"{meta['filters_shown']} of {out_ch} filters (rows) x {meta['channels_shown']} of {in_ch} "
                f"input channels, {kh}x{kw}; blue < 0 < red, scaled per filter"
            )
        tag = f"filters/{name}"
        log_items(
            writer,
            tag,
            "filters",
            [render.png_item(image, caption)],
            step,
            meta={"layer": name, **meta},
            description=f"Filters of {name} (Conv2d {in_ch}->{out_ch}, {kh}x{kw})",
        )
        tags.append(tag)
    return tags
