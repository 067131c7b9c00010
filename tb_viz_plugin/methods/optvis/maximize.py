"""Activation maximization as the view computes it: which objectives, one batched optimisation, timing.

:func:`activation_maximization` turns ``classes`` (output indices) and ``units`` (channels per
layer) into one objective per image, renders them all as one batch from the same seeded start
(so that steps compare), and groups the results by what they maximise: the class logits
(``"output"``) or the units of one layer (the layer's name).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import torch
from torch import nn

from tb_viz_plugin.methods.classes import class_name
from tb_viz_plugin.methods.layers import model_device, preserved_training_flags, resolve_layers
from tb_viz_plugin.methods.optvis import objectives
from tb_viz_plugin.methods.optvis.optimize import render, to_model_input
from tb_viz_plugin.methods.optvis.param import ImageParam, fourier_image, pixel_image, pyramid_image

OUTPUT = objectives.OUTPUT
"""The group of the class logits (the model's output); other groups are named by their layer."""
MAX_CLASSES = 64
"""``classes=None`` renders every output of the model, refused above this many (pass ``classes``)."""
PARAMETRIZATIONS = {"pyramid": pyramid_image, "fourier": fourier_image, "pixel": pixel_image}
"""Names accepted by ``param=``: multi-scale octaves, Fourier 1/f, raw pixels (colours decorrelated but for pixels).

The default is ``"pyramid"``: with the callback's small budget (64 steps) on the demo model it
raised every class logit well above real images of the class, where ``"fourier"`` (Lucid's
choice for 512 steps) left some classes on the flat start of their curve."""


@dataclass(frozen=True)
class TargetGroup:
    """The optimised images of one group of targets: the class logits, or the units of one layer.

    Attributes:
        what: :data:`OUTPUT` for class logits, else the layer's module name.
        objective: what each image maximises, in words.
        labels: per image, what it maximises (``"cat · logit"``, ``"unit 3 · mean"``).
        targets: per image, the objective's own name.
        images: ``(M, 3, size, size)`` in ``[0, 1]``, on the CPU.
        values: ``(M,)`` the objective of each final image.
    """

    what: str
    objective: str
    labels: List[str]
    targets: List[str]
    images: torch.Tensor
    values: torch.Tensor


@dataclass(frozen=True)
class Maximization:
    """What :func:`activation_maximization` returns: the groups and how they were rendered."""

    groups: List[TargetGroup]
    param: str
    steps: int
    size: int
    seconds: float

    @property
    def count(self) -> int:
        """Images optimised together in the one batch."""
        return sum(len(group.labels) for group in self.groups)


def _pair(size: Union[int, Tuple[int, int]]) -> Tuple[int, int]:
    return (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))


def fit_param(
    make: Callable[..., ImageParam], n: int, size: Tuple[int, int], channels: int, generator: torch.Generator,
    device: torch.device,
) -> ImageParam:
    """A square RGB parametrization made into ``(n, channels, *size)`` images.

    The square side is the larger of ``size`` (centre-cropped to it); one channel is the mean of
    RGB, more than three come from ``ceil(channels / 3)`` RGB images stacked along the channels.

    Example:
        >>> from tb_viz_plugin.methods.optvis.param import pixel_image
        >>> params, image_fn = fit_param(pixel_image, 2, (12, 16), 4, torch.Generator(), torch.device("cpu"))
        >>> tuple(image_fn().shape)
        (2, 4, 12, 16)
    """
    side, groups = max(size), max(1, -(-channels // 3))
    params, rgb_fn = make(n * groups, side, generator=generator, device=device)
    top, left = (side - size[0]) // 2, (side - size[1]) // 2

    def image_fn() -> torch.Tensor:
        images = rgb_fn()[..., top : top + size[0], left : left + size[1]]
        if channels == 3:
            return images
        if channels < 3:
            return images.mean(1, keepdim=True).expand(-1, channels, -1, -1)
        return images.view(groups, n, 3, *size).permute(1, 0, 2, 3, 4).reshape(n, 3 * groups, *size)[:, :channels]

    return params, image_fn


def output_width(
    model: nn.Module, size: Union[int, Tuple[int, int]], mean: Optional[Sequence[float]], std: Optional[Sequence[float]],
    channels: int = 3,
) -> int:
    """Number of model outputs (classes), from one forward pass of a grey ``size`` image of ``channels``.

    Example:
        >>> output_width(nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 5)), 8, None, None)
        5
    """
    with preserved_training_flags(model), torch.inference_mode(False), torch.no_grad():
        grey = torch.full((1, channels, *_pair(size)), 0.5, device=model_device(model))
        return int(model(to_model_input(grey, mean, std)).flatten(1).shape[1])


def maximization_targets(
    model: nn.Module,
    classes: Sequence[int],
    class_names: Optional[Sequence[str]],
    units: Mapping[str, Sequence[int]],
) -> Dict[str, List[Tuple[str, objectives.Objective]]]:
    """The objectives per group: ``{OUTPUT: [(label, class logit)...], layer: [(label, channel mean)...]}``.

    Raises:
        LayerNotFoundError: a layer of ``units`` that is not a module of ``model``.
        ValueError: a layer named like the output group while classes are rendered too.

    Example:
        >>> net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten())
        >>> groups = maximization_targets(net, [1], ["dog", "cat"], {"0": [2]})
        >>> {what: [label for label, _ in members] for what, members in groups.items()}
        {'output': ['cat · logit'], '0': ['unit 2 · mean']}
    """
    groups: Dict[str, List[Tuple[str, objectives.Objective]]] = {}
    if classes:
        names = [class_name(index, class_names) for index in classes]
        groups[OUTPUT] = [(f"{n} · logit", objectives.class_logit(i, n)) for i, n in zip(classes, names)]
    for layer, indices in units.items():
        (path,) = resolve_layers(model, layer, accept=lambda module: True, what="module")
        if path in groups:
            raise ValueError(f"the layer {path!r} would share the group (and tag) of the class logits; give it by another name")
        groups[path] = [(f"unit {unit} · mean", objectives.channel(path, unit)) for unit in indices]
    return groups


def activation_maximization(
    model: nn.Module,
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
    channels: int = 3,
) -> Maximization:
    """Render the image each class (and each listed unit) wants to see, all targets as one batch.

    Every call starts from the same seeded images (our own generator), so calls at successive
    steps differ only through the weights. Eval mode inside (flags restored after), gradients with
    respect to the images only.

    Args:
        model: the network, taking images normalised with ``mean``/``std``; not modified.
        classes: output indices to maximise (the pre-softmax logit); ``None`` = every output
            (at most ``MAX_CLASSES``); ``[]`` = none.
        class_names: names of the outputs, for the labels.
        units: ``{layer name: [channel, ...]}``: maximise each channel's mean activation.
        steps: optimisation steps.
        size: image side, or ``(height, width)`` (e.g. the training images' size, for a network
            with a fixed-size head: the transforms keep it).
        param: ``"pyramid"``, ``"fourier"`` or ``"pixel"``; see ``PARAMETRIZATIONS``.
        mean: per-channel mean of the model's input normalisation (``None`` = inputs in [0, 1]).
        std: per-channel standard deviation of that normalisation.
        seed: seed of the initial images and the random transforms.
        channels: the model's input channels; images of other than 3 channels are made from RGB
            ones (grey = their mean; more channels from further RGB images).

    Returns:
        A :class:`Maximization`: one :class:`TargetGroup` for the classes (if any), then one per layer.

    Raises:
        ValueError: no targets, an unknown ``param``, or too many outputs for ``classes=None``.
        LayerNotFoundError: a layer name that is not a module of ``model``.
        IndexError: a class or unit index out of range.

    Example:
        >>> net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten())
        >>> result = activation_maximization(net, classes=[0, 3], units={"0": [1]}, steps=2, size=16)
        >>> [(g.what, tuple(g.images.shape)) for g in result.groups], result.count
        ([('output', (2, 3, 16, 16)), ('0', (1, 3, 16, 16))], 3)
    """
    if param not in PARAMETRIZATIONS:
        raise ValueError(f"param must be one of {sorted(PARAMETRIZATIONS)}, got {param!r}")
    if classes is None:
        width = output_width(model, size, mean, std, channels)
        if width > MAX_CLASSES:
            raise ValueError(f"the model has {width} outputs; pass classes=[...] with at most {MAX_CLASSES}")
        classes = range(width)
    groups = maximization_targets(model, list(classes), class_names, units or {})
    chosen = [objective for members in groups.values() for _, objective in members]
    if not chosen:
        raise ValueError("nothing to render: give classes and/or units")
    generator = torch.Generator().manual_seed(seed)
    start = time.perf_counter()
    result = render(
        model,
        objectives.batched(chosen),
        fit_param(PARAMETRIZATIONS[param], len(chosen), _pair(size), channels, generator, model_device(model)),
        steps=steps,
        mean=mean,
        std=std,
        generator=generator,
    )
    seconds = time.perf_counter() - start
    images, values = result.images.cpu(), result.values.cpu()
    out, offset = [], 0
    for what, members in groups.items():
        part = slice(offset, offset + len(members))
        out.append(
            TargetGroup(
                what=what,
                objective="class logit (pre-softmax)" if what == OUTPUT else "channel mean activation",
                labels=[label for label, _ in members],
                targets=[objective.name for _, objective in members],
                images=images[part],
                values=values[part],
            )
        )
        offset += len(members)
    return Maximization(groups=out, param=param, steps=steps, size=size, seconds=seconds)
