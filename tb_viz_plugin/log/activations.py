"""``log_activation_maps`` and ``log_top_activations``: activations from data, for plain PyTorch.

``ActivationMaps`` and ``TopActivations`` call the same functions (``log_unit_top_k`` writes a top-k
that the callback streamed and gathered itself).
"""

from __future__ import annotations

import math
from typing import Any, Iterable, List, Mapping, Optional, Sequence, Union

import torch
from torch import nn

from tb_viz_plugin import render
from tb_viz_plugin.log.core import log_items
from tb_viz_plugin.methods import activations as methods
from tb_viz_plugin.methods.layers import preserved_training_flags
from tb_viz_plugin.render import activations as draw

LayerNames = Optional[Union[str, Sequence[str]]]


def log_activation_maps(
    writer: Any,
    model: nn.Module,
    images: torch.Tensor,
    step: int,
    layers: LayerNames = None,
    *,
    channels: Union[int, Sequence[int]] = 16,
    to_rgb: Optional[draw.ToRGB] = None,
    names: Optional[Sequence[str]] = None,
) -> List[str]:
    """Log the feature maps that ``images`` produce in ``layers`` (tags ``activation_maps/<layer>``).

    One grid per image per layer: the image, then one tile per shown channel. By default the
    ``channels`` most active channels (largest mean activation over all the images) are shown, the
    same ones for every image, most active first; the caption names them.

    Args:
        writer: a ``torch.utils.tensorboard.SummaryWriter``.
        model: the network; ``model(images)`` runs it (eval mode, no gradients, flags restored after).
        images: ``(N, C, H, W)`` probe inputs on the model's device.
        step: the global step to log at.
        layers: submodule names; ``None`` = the first ``Conv2d``.
        channels: how many channels (the most active) or which channel indices.
        to_rgb: inputs ``(N, C, H, W)`` -> RGB ``(N, 3, H, W)`` in ``[0, 1]``; ``None`` = min-max per image.
        names: one caption prefix per image (e.g. ``"val #12"``); default ``"image i"``.

    Returns:
        The tags written.

    Raises:
        LayerNotFoundError: an unknown layer name (the message lists the valid names).
        ValueError: a layer whose output is not ``(N, C, H, W)``, or bad ``channels``.

    Example:
        >>> log_activation_maps(writer, model, images[:4], step=epoch, layers=["conv1", "layer1"])  # doctest: +SKIP
        ['activation_maps/conv1', 'activation_maps/layer1']
    """
    layers = methods.activation_layers(model, layers)
    names = list(names) if names is not None else [f"image {i}" for i in range(images.shape[0])]
    with preserved_training_flags(model), torch.no_grad():
        features = methods.capture_activations(model, images, layers)
    pictures = draw.input_rgb(images, to_rgb)
    tags = []
    for layer, maps in features.items():
        chosen = methods.select_channels(maps, channels)
        shown = maps.index_select(1, chosen).float().cpu()
        indices = chosen.tolist()
        how = f"{len(indices)} most active" if isinstance(channels, int) else f"{len(indices)} chosen"
        items = [
            render.png_item(
                draw.activation_grid(pictures[i], shown[i], [f"ch {c}" for c in indices]),
                f"{names[i]}: the image, then channels {', '.join(map(str, indices))} ({how} of {maps.shape[1]})",
                channels=indices,
                peaks=[float(p) for p in shown[i].flatten(1).abs().max(1).values],
            )
            for i in range(len(shown))
        ]
        tag = f"activation_maps/{layer}"
        log_items(
            writer,
            tag,
            "activation_maps",
            items,
            step,
            meta={
                "layer": layer,
                "feature_shape": list(maps.shape[1:]),
                "channels_shown": len(indices),
                "channels_total": int(maps.shape[1]),
                "selection": "most active (mean over the images)" if isinstance(channels, int) else "given",
                "normalization": "per map by max |a| (white = 0, red > 0, blue < 0)",
            },
            description=f"Feature maps of {layer} ({maps.shape[1]} channels, {maps.shape[2]}x{maps.shape[3]})",
        )
        tags.append(tag)
    return tags


def _finite(values: Iterable[float]) -> List[Optional[float]]:
    return [v if math.isfinite(v) else None for v in values]


def log_unit_top_k(
    writer: Any,
    results: Mapping[str, methods.UnitTopK],
    step: int,
    *,
    to_rgb: Optional[draw.ToRGB] = None,
    sample_ids: str = "stream position",
) -> List[str]:
    """Log computed top-k results (tags ``top_activations/<layer>``): one gallery row per unit.

    Args:
        writer: a ``torch.utils.tensorboard.SummaryWriter``.
        results: per layer, its :class:`~tb_viz_plugin.methods.activations.UnitTopK`.
        step: the global step to log at.
        to_rgb: inputs -> RGB in ``[0, 1]`` (see :func:`log_activation_maps`).
        sample_ids: what the sample ids are (``"dataset index"`` or ``"stream position"``), for the view.

    Returns:
        The tags written.
    """
    tags = []
    for layer, top in results.items():
        geometry = top.geometry
        count, k = top.values.shape
        crops = draw.input_rgb(top.crops.flatten(0, 1), to_rgb).reshape(count, k, *geometry.crop_size, 3)
        origins = geometry.crop_origins(top.positions).cpu()
        values, ids, positions = top.values.cpu(), top.sample_ids.cpu(), top.positions.cpu()
        labels = [draw.label_list(row_values) for row_values in values.tolist()]
        pictures = draw.top_activation_rows(crops, top.maps, origins, values, geometry.image_size, labels)
        items = []
        for row, (unit, picture) in enumerate(zip(top.units.tolist(), pictures)):
            row_values = values[row].tolist()
            items.append(
                render.png_item(
                    picture,
                    f"unit {unit}",
                    unit=unit,
                    values=_finite(row_values),
                    sample_ids=[i if i >= 0 else None for i in ids[row].tolist()],
                    positions=positions[row].tolist(),
                )
            )
        rf = geometry.rf
        tag = f"top_activations/{layer}"
        log_items(
            writer,
            tag,
            "top_activations",
            items,
            step,
            meta={
                "layer": layer,
                "k": k,
                "units_shown": count,
                "channels_total": geometry.channels,
                "rf": rf.describe(),
                "rf_size": list(rf.size),
                "rf_stride": list(rf.stride),
                "rf_complete": rf.complete,
                "crop_size": list(geometry.crop_size),
                "feature_size": list(geometry.feature_size),
                "image_size": list(geometry.image_size),
                "samples": top.samples,
                "sample_ids": sample_ids,
            },
            description=f"Top-{k} patches of {count} units of {layer} ({rf.describe()})",
        )
        tags.append(tag)
    return tags


def log_top_activations(
    writer: Any,
    model: nn.Module,
    batches: Iterable[torch.Tensor],
    step: int,
    layers: LayerNames = None,
    *,
    units: methods.Units = None,
    k: int = 9,
    to_rgb: Optional[draw.ToRGB] = None,
) -> List[str]:
    """Stream ``batches`` through ``model`` and log each unit's k strongest receptive-field patches.

    One pass over the data, forward hooks removed after; see
    :func:`~tb_viz_plugin.methods.activations.top_activations` for the method. Sample ids are
    positions in the stream: dataset indices for an unshuffled loader.

    Args:
        writer: a ``torch.utils.tensorboard.SummaryWriter``.
        model: the network; ``model(images)`` runs it.
        batches: ``(N, C, H, W)`` input tensors on the model's device.
        step: the global step to log at.
        layers: submodule names; ``None`` = the last ``Conv2d``.
        units: ``None`` (the first 16 channels), a count, or channel indices.
        k: patches per unit.
        to_rgb: inputs -> RGB in ``[0, 1]``; ``None`` = min-max per patch.

    Returns:
        The tags written (``top_activations/<layer>``).

    Raises:
        LayerNotFoundError: an unknown layer name (the message lists the valid names).
        ValueError: no batches, bad ``units``, or a layer whose output is not ``(N, C, H, W)``.

    Example:
        >>> log_top_activations(writer, model, (x.to(device) for x, _ in val_loader), step=epoch,
        ...                     layers=["layer3", "layer4"], units=8, k=9)  # doctest: +SKIP
        ['top_activations/layer3', 'top_activations/layer4']
    """
    layers = methods.activation_layers(model, layers, deepest=True)
    results = methods.top_activations(model, batches, layers, units=units, k=k)
    return log_unit_top_k(writer, results, step, to_rgb=to_rgb)
