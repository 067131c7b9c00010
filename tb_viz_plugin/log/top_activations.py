"""The ``top_activations`` view: ``log_top_activations`` streams batches, ``write_top_activations`` writes a top-k."""

from __future__ import annotations

from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence, Union

import torch
from torch import nn

from tb_viz_plugin.log.core import make_tag, write_panel
from tb_viz_plugin.methods.activations import Units, activation_layers
from tb_viz_plugin.methods.attribution.unit_occlusion import TopKOcclusion, top_k_occlusion
from tb_viz_plugin.methods.model_display import display
from tb_viz_plugin.methods.model_io import IO, TaskModel, as_io, split_batch
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
    occlusion: Optional[Mapping[str, TopKOcclusion]] = None,
    name: Optional[str] = None,
) -> List[str]:
    """Write computed top-k results (tags ``top_activations/<layer>[/<name>]``): one gallery row per unit.

    With ``occlusion`` (per layer, ``methods.top_k_occlusion`` of its top-k) each unit's row gets
    an overlay of its discrepancy maps and the layer's meta its mean empirical receptive field.

    Args:
        writer: a ``torch.utils.tensorboard.SummaryWriter``.
        results: per layer, its :class:`~tb_viz_plugin.methods.top_k.UnitTopK` (``.cpu()``).
        step: the global step to log at.
        to_rgb: inputs -> RGB in ``[0, 1]``; ``None`` = min-max per patch.
        sample_ids: what the sample ids are (``"dataset index"`` or ``"stream position"``), for the view.
        occlusion: per layer, the unit occlusion of its top-k (``TopKOcclusion``).
        name: appended to every tag (tells two instances of the view apart).
        io: how the model takes inputs (``methods.model_io.ModelIO`` or a dict of its fields):
            ``batches`` may then be whole batches (tuples, dicts with the named keys) and a
            ``forward`` taking a batch is called through it; also how inputs are shown.

    Returns:
        The tags written.

    Raises:
        ValueError: an unknown ``sample_ids``, occlusion maps that do not fit their top-k.

    Example:
        >>> import tempfile
        >>> from torch.utils.tensorboard import SummaryWriter
        >>> net = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU())
        >>> results = {name: top.cpu() for name, top in top_activations(net, [torch.randn(8, 3, 12, 12)], ["1"], k=3).items()}
        >>> with tempfile.TemporaryDirectory() as logdir, SummaryWriter(logdir) as writer:
        ...     write_top_activations(writer, results, step=0, sample_ids="dataset index")
        ['top_activations/1']
    """
    panels = draw.panels(results, to_rgb=to_rgb, sample_ids=sample_ids, occlusion=occlusion)
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
    unit_occlusion: Union[bool, Mapping[str, Any]] = False,
    name: Optional[str] = None,
    io: IO = None,
) -> List[str]:
    """Stream ``batches`` through ``model`` and log each unit's k strongest receptive-field patches.

    One pass over the data, forward hooks removed after; see ``methods.top_activations`` for the
    method. Sample ids are positions in the stream: dataset indices for an unshuffled loader.
    ``unit_occlusion`` adds each patch's discrepancy map (``methods.top_k_occlusion``; a mapping
    gives its options: ``k``, ``window``, ``stride``, ``baseline``, ``threshold``).

    Args:
        writer: a ``torch.utils.tensorboard.SummaryWriter``.
        model: the network; ``model(images)`` runs it.
        batches: ``(N, C, H, W)`` input tensors on the model's device.
        step: the global step to log at.
        layers: submodule names; ``None`` = the last ``Conv2d``.
        units: ``None`` (the first 16 channels), a count (the first n), or channel indices.
        k: patches per unit.
        to_rgb: inputs -> RGB in ``[0, 1]``; ``None`` = min-max per patch.
        unit_occlusion: ``True`` or options of ``methods.top_k_occlusion``: the empirical receptive fields.
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
    options = check_occlusion_options(unit_occlusion)
    io = as_io(io)
    inputs = (batch if isinstance(batch, torch.Tensor) else split_batch(batch, io)[0] for batch in batches)
    runner = model if io.forward is None else TaskModel(model, io)
    results = top_activations(runner, inputs, activation_layers(model, layers, deepest=True), units=units, k=k)
    occluded = None
    if options is not None:
        occluded = {layer: top_k_occlusion(runner, top, **options) for layer, top in results.items()}
    cpu = {layer: top.cpu() for layer, top in results.items()}
    return write_top_activations(writer, cpu, step, to_rgb=display(io, to_rgb), occlusion=occluded, name=name)


OCCLUSION_OPTIONS = ("k", "window", "stride", "baseline", "threshold", "max_memory_mb")
"""Options of ``unit_occlusion=`` (those of ``methods.top_k_occlusion``)."""


def check_occlusion_options(unit_occlusion: Union[bool, Mapping[str, Any]]) -> Optional[Dict[str, Any]]:
    """``None`` (off), or the options of ``methods.top_k_occlusion`` that ``unit_occlusion=`` asks for.

    Raises:
        ValueError: neither a bool nor a mapping, or an unknown option (the message names the known ones).

    Example:
        >>> check_occlusion_options(False), check_occlusion_options(True), check_occlusion_options({"k": 3})
        (None, {}, {'k': 3})
    """
    if isinstance(unit_occlusion, bool):
        return {} if unit_occlusion else None
    if not isinstance(unit_occlusion, Mapping):
        raise ValueError(f"unit_occlusion must be a bool or a mapping of options, got {unit_occlusion!r}")
    unknown = sorted(set(unit_occlusion) - set(OCCLUSION_OPTIONS))
    if unknown:
        raise ValueError(f"unknown unit_occlusion options {unknown}; the options are {list(OCCLUSION_OPTIONS)}")
    return dict(unit_occlusion)
