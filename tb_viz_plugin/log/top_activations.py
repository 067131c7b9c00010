"""The ``top_activations`` view: ``log_top_activations`` streams batches, ``write_top_activations`` writes a top-k."""

from __future__ import annotations

from typing import Any, Iterable, List, Mapping, Optional, Sequence, Union

import torch
from torch import nn

from tb_viz_plugin.log.core import make_tag, write_panel
from tb_viz_plugin.methods.activations import Units, activation_layers
from tb_viz_plugin.methods.top_k import UnitTopK
from tb_viz_plugin.methods.tracking import top_activations
from tb_viz_plugin.render import ToRGB
from tb_viz_plugin.render import top_activations as draw

KIND = "top_activations"


def write_top_activations(
    writer: Any,
    results: Mapping[str, UnitTopK],
    step: int,
    *,
    to_rgb: Optional[ToRGB] = None,
    sample_ids: str = "stream position",
    name: Optional[str] = None,
) -> List[str]:
    """Write computed top-k results (tags ``top_activations/<layer>[/<name>]``): one gallery row per unit.

    Args:
        writer: a ``torch.utils.tensorboard.SummaryWriter``.
        results: per layer, its :class:`~tb_viz_plugin.methods.top_k.UnitTopK` (``.cpu()``).
        step: the global step to log at.
        to_rgb: inputs -> RGB in ``[0, 1]``; ``None`` = min-max per patch.
        sample_ids: what the sample ids are (``"dataset index"`` or ``"stream position"``), for the view.
        name: appended to every tag (tells two instances of the view apart).

    Returns:
        The tags written.

    Raises:
        ValueError: an unknown ``sample_ids``.

    Example:
        >>> import tempfile
        >>> from torch.utils.tensorboard import SummaryWriter
        >>> net = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU())
        >>> results = {name: top.cpu() for name, top in top_activations(net, [torch.randn(8, 3, 12, 12)], ["1"], k=3).items()}
        >>> with tempfile.TemporaryDirectory() as logdir, SummaryWriter(logdir) as writer:
        ...     write_top_activations(writer, results, step=0, sample_ids="dataset index")
        ['top_activations/1']
    """
    panels = draw.panels(results, to_rgb=to_rgb, sample_ids=sample_ids)
    return [write_panel(writer, make_tag(KIND, layer, name=name), KIND, panel, step) for layer, panel in panels.items()]


def log_top_activations(
    writer: Any,
    model: nn.Module,
    batches: Iterable[torch.Tensor],
    step: int,
    layers: Optional[Union[str, Sequence[str]]] = None,
    *,
    units: Units = None,
    k: int = 9,
    to_rgb: Optional[ToRGB] = None,
    name: Optional[str] = None,
) -> List[str]:
    """Stream ``batches`` through ``model`` and log each unit's k strongest receptive-field patches.

    One pass over the data, forward hooks removed after; see ``methods.top_activations`` for the
    method. Sample ids are positions in the stream: dataset indices for an unshuffled loader.

    Args:
        writer: a ``torch.utils.tensorboard.SummaryWriter``.
        model: the network; ``model(images)`` runs it.
        batches: ``(N, C, H, W)`` input tensors on the model's device.
        step: the global step to log at.
        layers: submodule names; ``None`` = the last ``Conv2d``.
        units: ``None`` (the first 16 channels), a count (the first n), or channel indices.
        k: patches per unit.
        to_rgb: inputs -> RGB in ``[0, 1]``; ``None`` = min-max per patch.
        name: appended to every tag (tells two instances of the view apart).

    Returns:
        The tags written (``top_activations/<layer>[/<name>]``).

    Raises:
        LayerNotFoundError: an unknown layer name (the message lists the valid names).
        ValueError: no batches, bad ``units``, or a layer whose output is not ``(N, C, H, W)``.

    Example:
        >>> import tempfile
        >>> from torch.utils.tensorboard import SummaryWriter
        >>> net = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 3))
        >>> with tempfile.TemporaryDirectory() as logdir, SummaryWriter(logdir) as writer:
        ...     log_top_activations(writer, net, torch.randn(20, 3, 12, 12).split(8), step=0, units=4, k=5)
        ['top_activations/2']
    """
    results = top_activations(model, batches, activation_layers(model, layers, deepest=True), units=units, k=k)
    cpu = {layer: top.cpu() for layer, top in results.items()}
    return write_top_activations(writer, cpu, step, to_rgb=to_rgb, name=name)
