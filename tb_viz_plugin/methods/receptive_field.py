"""Receptive fields: where a layer's units look in the input, measured for any architecture.

The field is measured by the gradient of one unit with respect to random inputs (no table of
layer types), so residual blocks, dilations and poolings of any kind are handled alike.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Dict, Optional, Sequence, Tuple

import torch
from torch import nn

from tb_viz_plugin.methods.hooks import layer_outputs
from tb_viz_plugin.methods.layers import model_device, model_dtype, preserved_training_flags


@dataclasses.dataclass(frozen=True)
class ReceptiveField:
    """Where the units of a feature map look in the input, in input pixels.

    The unit at feature-map position ``(i, j)`` depends on the input rows
    ``offset[0] + i * stride[0]`` up to that plus ``size[0]`` (exclusive), and likewise for columns.
    Rows of that box can lie outside the image (padding).

    Attributes:
        size: ``(height, width)`` of the region of input pixels with a nonzero gradient.
        stride: ``(rows, columns)`` the region moves per feature-map step (the layer's effective stride).
        offset: ``(row, column)`` of the region's top-left corner for the unit at ``(0, 0)``.
        complete: ``False`` when the region filled the largest input measured: ``size`` is a lower bound.
    """

    size: Tuple[int, int]
    stride: Tuple[int, int]
    offset: Tuple[int, int]
    complete: bool = True

    def describe(self) -> str:
        """E.g. ``"RF 20x20 px, stride 4"`` (``">= "`` before the size when it is a lower bound)."""
        bound = "" if self.complete else ">= "
        return f"RF {bound}{self.size[0]}x{self.size[1]} px, stride {self.stride[0]}"


@dataclasses.dataclass(frozen=True)
class LayerGeometry:
    """A layer's output for a given input size, and its receptive field.

    Attributes:
        channels: number of channels C of the feature maps.
        feature_size: ``(H', W')`` of the feature maps for ``image_size``.
        image_size: ``(H, W)`` of the input the sizes refer to.
        rf: the receptive field of the layer's units.
    """

    channels: int
    feature_size: Tuple[int, int]
    image_size: Tuple[int, int]
    rf: ReceptiveField

    @property
    def crop_size(self) -> Tuple[int, int]:
        """Size of the input crop shown for a unit: the receptive field, at most the whole image."""
        return min(self.rf.size[0], self.image_size[0]), min(self.rf.size[1], self.image_size[1])

    def crop_origins(self, positions: torch.Tensor) -> torch.Tensor:
        """Top-left input pixels ``(..., 2)`` of the crops of units at feature-map ``positions`` ``(..., 2)``.

        The receptive field, shifted into the image where it reaches past a border.
        """
        stride = torch.tensor(self.rf.stride, device=positions.device)
        offset = torch.tensor(self.rf.offset, device=positions.device)
        high = torch.tensor(
            [self.image_size[0] - self.crop_size[0], self.image_size[1] - self.crop_size[1]], device=positions.device
        )
        return torch.minimum((offset + positions * stride).clamp_min(0), high)


def _bounding_box(mask: torch.Tensor) -> Tuple[int, int, int, int]:
    """``(top, left, bottom, right)`` (bottom/right exclusive) of the True pixels of an ``(H, W)`` mask."""
    rows = mask.any(1).nonzero().flatten()
    cols = mask.any(0).nonzero().flatten()
    if rows.numel() == 0:
        raise RuntimeError("the unit's gradient is zero everywhere: cannot measure its receptive field")
    return int(rows[0]), int(cols[0]), int(rows[-1]) + 1, int(cols[-1]) + 1


def _gradient_boxes(
    model: nn.Module, layer: str, input_shape: Tuple[int, int, int], samples: int, generator: torch.Generator
) -> Tuple[Tuple[int, int, int, int], Tuple[int, int, int, int], Tuple[int, int], int]:
    """Boxes of nonzero input gradient for a central unit and its diagonal neighbour, the map size and C.

    Each box is the union over ``samples`` random inputs and all channels, so units that are
    inactive or max-pool paths not taken for one input do not shrink it.
    """
    x = torch.randn((2 * samples, *input_shape), generator=generator).to(device=model_device(model), dtype=model_dtype(model))
    x.requires_grad_(True)
    out = layer_outputs(model, x, [layer])[layer]
    height, width = out.shape[-2:]
    i, j = (height - 1) // 2, (width - 1) // 2
    score = out[:samples, :, i, j].sum() + out[samples:, :, min(i + 1, height - 1), min(j + 1, width - 1)].sum()
    (grad,) = torch.autograd.grad(score, x)
    mask = grad.detach().abs().sum(1) > 0
    centre, neighbour = _bounding_box(mask[:samples].any(0)), _bounding_box(mask[samples:].any(0))
    return centre, neighbour, (int(height), int(width)), int(out.shape[1])


def measure_layer(
    model: nn.Module,
    layer: str,
    input_shape: Sequence[int],
    *,
    max_size: Optional[int] = None,
    samples: int = 4,
    seed: int = 0,
) -> LayerGeometry:
    """Channels, feature-map size and receptive field of ``layer`` for inputs of ``input_shape``.

    The receptive field is measured, for any architecture, by the gradient of a central unit (all
    channels) with respect to random inputs: its nonzero box is the region, and the box's shift to
    the diagonal neighbour unit is the effective stride. When the region reaches every border of the
    input, the measurement is repeated on inputs twice as large, up to ``max_size`` pixels (by
    default twice the input's larger side: a field larger than that is reported as a lower bound,
    ``complete=False``; the crops shown are the whole image either way, and measuring a deep layer of
    a big network at 512 px would cost it ~64 passes of the input's size per doubling step).

    Runs with the model in eval mode (every submodule's flag restored after), out of inference mode,
    with gradients enabled; randomness comes from its own generator (``seed``), never the global
    RNG; parameter ``.grad`` is not touched (``torch.autograd.grad``).

    Args:
        model: the network; ``model(images)`` must run it.
        layer: the submodule name.
        input_shape: ``(C, H, W)`` of one input.
        max_size: largest input side used for the measurement (default ``2 * max(H, W)``).
        samples: random inputs per measured unit.
        seed: seed of the random inputs.

    Returns:
        The layer's geometry at ``input_shape``.

    Raises:
        ValueError: the layer's output is not ``(N, C, H, W)``.
        RuntimeError: the layer is not called by the forward pass, or its gradient is zero.

    Example:
        >>> net = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.MaxPool2d(2), nn.Conv2d(4, 4, 3, padding=1))
        >>> g = measure_layer(net, "2", (3, 32, 32))
        >>> g.rf.size, g.rf.stride, g.feature_size, g.channels
        ((8, 8), (2, 2), (16, 16), 4)
    """
    channels, height, width = (int(s) for s in input_shape)
    generator = torch.Generator().manual_seed(seed)
    size = (height, width)
    max_size = 2 * max(size) if max_size is None else max_size
    first: Optional[Tuple[Tuple[int, int], int]] = None
    with preserved_training_flags(model), torch.inference_mode(False), torch.enable_grad():
        while True:
            centre, neighbour, feature_size, out_channels = _gradient_boxes(
                model, layer, (channels, *size), samples, generator
            )
            first = first or (feature_size, out_channels)
            top, left, bottom, right = centre
            complete = top > 0 and left > 0 and bottom < size[0] and right < size[1]
            if complete or 2 * max(size) > max_size:
                break
            size = (2 * size[0], 2 * size[1])
    i, j = (feature_size[0] - 1) // 2, (feature_size[1] - 1) // 2
    if complete and feature_size[0] > 1 and feature_size[1] > 1:
        stride = (neighbour[0] - top, neighbour[1] - left)
    else:  # the box is clipped (or there is no neighbour): the size ratio is the stride
        stride = (max(1, round(size[0] / feature_size[0])), max(1, round(size[1] / feature_size[1])))
    rf = ReceptiveField(
        size=(bottom - top, right - left),
        stride=stride,
        offset=(top - i * stride[0], left - j * stride[1]),
        complete=complete,
    )
    return LayerGeometry(channels=first[1], feature_size=first[0], image_size=(height, width), rf=rf)


def receptive_field(model: nn.Module, layer: str, input_shape: Sequence[int]) -> ReceptiveField:
    """The receptive field of ``layer``'s units (see :func:`measure_layer`).

    Example:
        >>> net = nn.Sequential(nn.Conv2d(3, 4, 5, padding=2), nn.ReLU(), nn.Conv2d(4, 4, 3, padding=1))
        >>> receptive_field(net, "2", (3, 32, 32)).size
        (7, 7)
    """
    return measure_layer(model, layer, input_shape).rf



def compare_empirical(rf: ReceptiveField, sizes: torch.Tensor) -> Dict[str, Any]:
    """The mean empirical receptive-field size of a layer next to its theoretical one.

    Args:
        rf: the layer's (theoretical) receptive field.
        sizes: ``(..., 2)`` empirical ``(height, width)`` per map (e.g. ``TopKOcclusion.sizes``), NaN
            where a map has none; the mean is over the maps that have one.

    Returns:
        ``{"theoretical": [h, w], "empirical": [h, w] or None, "maps": n, "area_ratio": float or None,
        "text": "empirical RF 9.5x8.0 px (mean of 12 maps) vs RF 20x20 px"}``.

    Example:
        >>> compare_empirical(ReceptiveField((20, 20), (4, 4), (-8, -8)), torch.tensor([[10.0, 8.0], [6.0, float("nan")]]))["text"]
        'empirical RF 10.0x8.0 px (mean of 1 map) vs RF 20x20 px'
    """
    flat = sizes.detach().float().reshape(-1, 2).cpu()
    known = flat[~flat.isnan().any(1)]
    theoretical = [int(rf.size[0]), int(rf.size[1])]
    if not len(known):
        return {"theoretical": theoretical, "empirical": None, "maps": 0, "area_ratio": None,
                "text": f"no empirical RF (occluding never lowered a unit) vs {rf.describe().split(',')[0]}"}  # fmt: skip
    mean = [round(float(v), 2) for v in known.mean(0)]
    count = len(known)
    ratio = round(mean[0] * mean[1] / max(1, theoretical[0] * theoretical[1]), 4)
    bound = "" if rf.complete else ">= "
    text = (
        f"empirical RF {mean[0]:.1f}x{mean[1]:.1f} px (mean of {count} map{'s' if count != 1 else ''}) "
        f"vs RF {bound}{theoretical[0]}x{theoretical[1]} px"
    )
    return {"theoretical": theoretical, "empirical": mean, "maps": count, "area_ratio": ratio, "text": text}
