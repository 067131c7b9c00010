"""Learned weights: the filters of convolution layers."""

from __future__ import annotations

import torch
from torch import nn

from tb_viz_plugin.methods.layers import resolve_layers


def filter_weights(model: nn.Module, layer: str) -> torch.Tensor:
    """The filters of the ``Conv2d`` named ``layer`` as a detached float32 CPU copy.

    Returns:
        Tensor of shape ``(out_channels, in_channels // groups, kH, kW)``.

    Raises:
        LayerNotFoundError: ``layer`` is not a ``Conv2d`` of ``model`` (the message lists them).

    Example:
        >>> from torch import nn
        >>> filter_weights(nn.Sequential(nn.Conv2d(3, 8, 5)), "0").shape
        torch.Size([8, 3, 5, 5])
    """
    (name,) = resolve_layers(model, layer)
    weight = model.get_submodule(name).weight
    return weight.detach().to(device="cpu", dtype=torch.float32, copy=True)
