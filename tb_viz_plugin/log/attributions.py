"""The ``attributions`` view: ``log_attributions`` computes maps, ``write_attributions`` writes an ``Attribution``."""

from __future__ import annotations

from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import torch
from torch import nn

from tb_viz_plugin.log.core import make_tag, write_panel
from tb_viz_plugin.methods.attribution import DEFAULT_METHODS, Attribution, Faithfulness, Targets, attribute
from tb_viz_plugin.methods.attribution import faithfulness_scores
from tb_viz_plugin.methods.model_io import IO, labels_as_classes, prepare
from tb_viz_plugin.methods.model_display import display, task_class_names
from tb_viz_plugin.render import ToRGB
from tb_viz_plugin.render import attributions as draw

KIND = "attributions"
NO_LAYER = "input"
"""The layer part of the tag when no method reads a layer (the maps are those of the input)."""


def attribution_tag(layers: Sequence[str], target: str, name: Optional[str] = None) -> str:
    """``attributions/<layers>/<target>[/<name>]``: the CAM layers (``+``-joined; ``input`` when none), then the target.

    Example:
        >>> attribution_tag(["layer4"], "predicted"), attribution_tag([], "label"), attribution_tag(["a", "b"], "class_3")
        ('attributions/layer4/predicted', 'attributions/input/label', 'attributions/a+b/class_3')
    """
    return make_tag(KIND, "+".join(layers) or NO_LAYER, target, name=name)


SCALARS = "tb_viz/faithfulness"
"""Prefix of the faithfulness scalars (ordinary TensorBoard scalars, curves beside the loss)."""


def faithfulness_tags(columns: Sequence[Tuple[str, Optional[str]]], name: Optional[str] = None) -> List[str]:
    """The scalar tags of :func:`write_faithfulness`, in its order: per column then the random map, deletion then insertion.

    ``tb_viz/faithfulness/<method>/<score>[/<name>]``; ``<method>@<layer>`` when a method has maps at
    more than one layer; ``random`` for the baseline.

    Example:
        >>> faithfulness_tags([("grad_cam", "layer4"), ("saliency", None)])[:2], faithfulness_tags([("saliency", None)], "b")[-1]
        (['tb_viz/faithfulness/grad_cam/deletion', 'tb_viz/faithfulness/grad_cam/insertion'], 'tb_viz/faithfulness/random/insertion/b')
    """
    methods = [method for method, _ in columns]
    keys = [f"{m}@{layer}" if methods.count(m) > 1 and layer else m for m, layer in columns] + ["random"]
    suffix = "" if name is None else f"/{name}"
    return [f"{SCALARS}/{key}/{score}{suffix}" for key in keys for score in ("deletion", "insertion")]


def write_faithfulness(writer: Any, faithfulness: Faithfulness, step: int, *, name: Optional[str] = None) -> List[str]:
    """Write the mean deletion and insertion AUC of every method (and of a random map) as TensorBoard scalars.

    Args:
        writer: a ``torch.utils.tensorboard.SummaryWriter``.
        faithfulness: what ``methods.faithfulness_scores`` returned.
        step: the global step.
        name: appended to every tag (see :func:`faithfulness_tags`).

    Returns:
        The scalar tags written.
    """
    tags = faithfulness_tags(faithfulness.columns, name)
    pairs = [*zip(faithfulness.deletion, faithfulness.insertion), (faithfulness.random_deletion, faithfulness.random_insertion)]
    values = [float(scores.float().mean()) for pair in pairs for scores in pair]
    for tag, value in zip(tags, values):
        writer.add_scalar(tag, value, step)
    return tags


def write_attributions(
    writer: Any,
    attribution: Attribution,
    images: torch.Tensor,
    step: int,
    *,
    labels: Optional[torch.Tensor] = None,
    class_names: Optional[Sequence[str]] = None,
    to_rgb: Optional[ToRGB] = None,
    indices: Optional[Sequence[int]] = None,
    faithfulness: Optional[Faithfulness] = None,
    name: Optional[str] = None,
) -> str:
    """Write the maps of ``methods.attribute`` and their images (tag :func:`attribution_tag`).

    One step holds, per image (a row of the view), the image itself as RGB and one single-channel
    PNG per map (a column per method and layer), normalised per map; the raw range of every map,
    whether it is signed, and per image the true, predicted and explained class with their
    probabilities go to the manifest. Colormap, opacity and overlay are chosen in the browser.

    Args:
        writer: a ``torch.utils.tensorboard.SummaryWriter``.
        attribution: what ``attribute(model, images, methods, ...)`` returned (``Attribution.cpu()``).
        images: the ``(N, C, H, W)`` images the maps explain (model inputs, CPU).
        step: the global step to log at.
        labels: ``(N,)`` true classes, shown in captions when given.
        class_names: names of the classes (index -> name); default ``"class 3"``.
        to_rgb: inputs ``(N, C, H, W)`` -> RGB ``(N, 3, H, W)`` in ``[0, 1]`` for display (e.g.
            un-normalising); default min-max per image.
        indices: dataset indices of the images, shown in captions; default 0..N-1.
        faithfulness: ``methods.faithfulness_scores`` of these maps: shown per column in the view
            and written as scalars too (:func:`write_faithfulness`).
        name: appended to the tag (tells two instances of the view apart).

    Returns:
        The tag written.

    Raises:
        ValueError: ``images``, ``labels`` or ``indices`` do not match the maps' batch size, or
            ``faithfulness`` scores other maps.

    Example:
        >>> import tempfile
        >>> from torch.utils.tensorboard import SummaryWriter
        >>> net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 2))
        >>> images = torch.randn(2, 3, 16, 16)
        >>> result = attribute(net, images, ["grad_cam", "saliency"]).cpu()
        >>> with tempfile.TemporaryDirectory() as logdir, SummaryWriter(logdir) as writer:
        ...     write_attributions(writer, result, images, step=0, class_names=["cat", "dog"])
        'attributions/1/predicted'
    """
    panel = draw.panel(
        attribution, images, labels=labels, class_names=class_names, to_rgb=to_rgb, indices=indices, faithfulness=faithfulness
    )
    tag = write_panel(writer, attribution_tag(attribution.layers, attribution.target, name), KIND, panel, step)
    if faithfulness is not None:
        write_faithfulness(writer, faithfulness, step, name=name)
    return tag


def log_attributions(
    writer: Any,
    model: nn.Module,
    images: torch.Tensor,
    step: int,
    *,
    methods: Union[str, Sequence[str]] = DEFAULT_METHODS,
    targets: Targets = "predicted",
    layers: Optional[Union[str, Sequence[str]]] = None,
    options: Optional[Mapping[str, Mapping[str, Any]]] = None,
    labels: Optional[torch.Tensor] = None,
    class_names: Optional[Sequence[str]] = None,
    to_rgb: Optional[ToRGB] = None,
    indices: Optional[Sequence[int]] = None,
    faithfulness: Union[bool, Mapping[str, Any]] = False,
    name: Optional[str] = None,
    io: IO = None,
) -> str:
    """Compute attribution maps of ``images`` (``methods.attribute``) and write them (see :func:`write_attributions`).

    Args:
        writer: a ``torch.utils.tensorboard.SummaryWriter``.
        model: a classifier ``(N, C, H, W) -> (N, K)``; eval mode inside, every flag restored after.
        images: ``(N, C, H, W)`` on the model's device.
        step: the global step to log at.
        methods: names from ``methods.ATTRIBUTION_METHODS``; default ``DEFAULT_METHODS``.
        targets: the class explained per image: ``"predicted"``, an int, ``(N,)`` indices or a callable.
        layers: module name(s) for the CAM-family methods; default the last feature map before pooling.
        options: per-method options, e.g. ``{"occlusion": {"window": 16}}``.
        labels: ``(N,)`` true classes, shown in captions when given.
        class_names: names of the classes; default ``"class 3"``.
        to_rgb: inputs -> RGB in ``[0, 1]``; default min-max per image.
        indices: dataset indices of the images; default 0..N-1.
        faithfulness: ``True`` or options of ``methods.faithfulness_scores`` (``steps``, ``seed``,
            ``max_memory_mb``): deletion / insertion scores per method, also as scalars.
        name: appended to the tag (tells two instances of the view apart).
        io: how the model takes inputs and gives outputs (``methods.model_io.ModelIO`` or a dict of
            its fields): the logits of a dict/tuple output, a forward taking a batch, the task
            (detected from the output and ``labels`` unless given), how inputs are shown.

    Returns:
        The tag written, ``attributions/<layers>/<target>[/<name>]``.

    Raises:
        ValueError, LayerNotFoundError, CamHeadError: see ``methods.attribute``.

    Example:
        >>> import tempfile
        >>> from torch.utils.tensorboard import SummaryWriter
        >>> net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 2))
        >>> with tempfile.TemporaryDirectory() as logdir, SummaryWriter(logdir) as writer:
        ...     log_attributions(writer, net, torch.randn(2, 3, 16, 16), step=0, methods=["grad_cam", "occlusion"])
        'attributions/1/predicted'
    """
    scoring = check_faithfulness_options(faithfulness)
    wrapped, resolved = prepare(model, images, io, labels)
    result = attribute(wrapped, images, methods, targets, layers, options, task=resolved.task or "multiclass")
    scores = None if scoring is None else faithfulness_scores(wrapped, images, result, **scoring).cpu()
    result = result.cpu()
    classes = labels_as_classes(None if labels is None else labels.detach().cpu(), resolved.task)
    names = task_class_names(resolved.task, result.probabilities.shape[1], class_names)
    return write_attributions(
        writer, result, images.detach().cpu(), step, labels=classes, class_names=names,
        to_rgb=display(resolved, to_rgb), indices=indices, faithfulness=scores, name=name,
    )  # fmt: skip


FAITHFULNESS_OPTIONS = ("steps", "seed", "max_memory_mb")
"""Options of ``faithfulness=`` (those of ``methods.faithfulness_scores``)."""


def check_faithfulness_options(faithfulness: Union[bool, Mapping[str, Any]]) -> Optional[Dict[str, Any]]:
    """``None`` (off) or the options of ``methods.faithfulness_scores`` that ``faithfulness=`` asks for.

    Raises:
        ValueError: neither a bool nor a mapping, an unknown option, or ``steps`` not a positive int.

    Example:
        >>> check_faithfulness_options(False), check_faithfulness_options(True), check_faithfulness_options({"steps": 8})
        (None, {}, {'steps': 8})
    """
    if isinstance(faithfulness, bool):
        return {} if faithfulness else None
    if not isinstance(faithfulness, Mapping):
        raise ValueError(f"faithfulness must be a bool or a mapping of options, got {faithfulness!r}")
    unknown = sorted(set(faithfulness) - set(FAITHFULNESS_OPTIONS))
    if unknown:
        raise ValueError(f"unknown faithfulness options {unknown}; the options are {list(FAITHFULNESS_OPTIONS)}")
    steps = faithfulness.get("steps", 16)
    if not isinstance(steps, int) or isinstance(steps, bool) or steps < 1:
        raise ValueError(f"faithfulness steps must be a positive int, got {steps!r}")
    return dict(faithfulness)
