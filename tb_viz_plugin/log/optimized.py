"""``log_activation_maximization`` and ``log_deepdream``: optimised images, for plain PyTorch.

The Lightning callbacks ``ActivationMaximization`` and ``DeepDream`` call these same functions.
Both write the kind ``optimized_images``; each item's caption names the target and its final
objective value.
"""

from __future__ import annotations

import time
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import torch
from torch import nn

from tb_viz_plugin.log.core import log_items
from tb_viz_plugin.methods.layers import preserved_training_flags
from tb_viz_plugin.methods.optvis import (
    deepdream,
    evaluate,
    from_model_input,
    objectives,
    render,
    to_model_input,
)
from tb_viz_plugin.methods.optvis.param import fourier_image, pixel_image, pyramid_image
from tb_viz_plugin.render import png_item
from tb_viz_plugin.render.optimized import image_arrays, side_by_side

KIND = "optimized_images"
MAX_CLASSES = 64
"""``classes=None`` renders every output of the model, refused above this many (pass ``classes``)."""
PARAMETRIZATIONS = {"pyramid": pyramid_image, "fourier": fourier_image, "pixel": pixel_image}
"""Names accepted by ``param=``: multi-scale octaves, Fourier 1/f, raw pixels (colours decorrelated but for pixels).

The default is ``"pyramid"``: with the callback's small budget (64 steps) on the demo model it
raised every class logit well above real images of the class, where ``"fourier"`` (Lucid's
choice for 512 steps) left some classes on the flat start of their curve."""


def _device(model: nn.Module) -> torch.device:
    return next(model.parameters(), torch.empty(0)).device


def _output_width(model: nn.Module, size: int, mean: Optional[Sequence[float]], std: Optional[Sequence[float]]) -> int:
    """Number of model outputs (classes), from one forward pass of a grey image."""
    with preserved_training_flags(model), torch.inference_mode(False), torch.no_grad():
        grey = torch.full((1, 3, size, size), 0.5, device=_device(model))
        return int(model(to_model_input(grey, mean, std)).flatten(1).shape[1])


def log_activation_maximization(
    writer: Any,
    model: nn.Module,
    step: int,
    *,
    classes: Optional[Sequence[int]] = None,
    class_names: Optional[Sequence[str]] = None,
    layer_units: Optional[Mapping[str, Sequence[int]]] = None,
    steps: int = 64,
    size: int = 64,
    param: str = "pyramid",
    mean: Optional[Sequence[float]] = None,
    std: Optional[Sequence[float]] = None,
    seed: int = 0,
) -> List[str]:
    """Render the image each class (and each listed unit) wants to see; log them at ``step``.

    All targets are optimised together as one batch (one image per target), from the same
    seeded start at every call so that steps compare. Classes go to the tag
    ``optimized/classes``, units of a layer to ``optimized/<layer>``.

    Args:
        writer: a ``torch.utils.tensorboard.SummaryWriter``.
        model: the network, taking images normalised with ``mean``/``std``; not modified.
        step: the global step to log at.
        classes: output indices to maximise (the pre-softmax logit); ``None`` = every output
            (at most ``MAX_CLASSES``); ``[]`` = none.
        class_names: names of the outputs, for captions.
        layer_units: ``{layer name: [channel, ...]}``: maximise each channel's mean activation.
        steps: optimisation steps.
        size: image height and width (independent of the training resolution).
        param: ``"pyramid"`` (multi-scale octaves), ``"fourier"`` (1/f spectrum) or ``"pixel"``
            (no regularization from the parametrization); see ``PARAMETRIZATIONS``.
        mean: per-channel mean of the model's input normalisation (``None`` = inputs in [0, 1]).
        std: per-channel standard deviation of that normalisation.
        seed: seed of the initial images and the random transforms (our own generator).

    Returns:
        The tags written.

    Raises:
        ValueError: no targets, an unknown ``param``, or too many outputs for ``classes=None``.
        LayerNotFoundError: a layer name that is not a module of ``model``.
        IndexError: a class or unit index out of range.

    Example:
        >>> log_activation_maximization(writer, model, step=epoch, class_names=CLASS_NAMES,
        ...                             layer_units={"features.8": [0, 1, 2]},
        ...                             mean=MEAN, std=STD)  # doctest: +SKIP
        ['optimized/classes', 'optimized/features.8']
    """
    if param not in PARAMETRIZATIONS:
        raise ValueError(f"param must be one of {sorted(PARAMETRIZATIONS)}, got {param!r}")
    if classes is None:
        width = _output_width(model, size, mean, std)
        if width > MAX_CLASSES:
            raise ValueError(f"the model has {width} outputs; pass classes=[...] with at most {MAX_CLASSES}")
        classes = range(width)
    names = list(class_names or [])
    groups: Dict[str, List[Tuple[str, objectives.Objective]]] = {}  # tag suffix -> (caption label, objective)
    for index in classes:
        label = names[index] if index < len(names) else f"class {index}"
        groups.setdefault("classes", []).append((f"{label} · logit", objectives.class_logit(index, label)))
    for layer, units in (layer_units or {}).items():
        groups[layer] = [(f"unit {unit} · mean", objectives.channel(layer, unit)) for unit in units]
    targets = [target for group in groups.values() for _, target in group]
    if not targets:
        raise ValueError("nothing to render: give classes and/or layer_units")

    generator = torch.Generator().manual_seed(seed)
    start = time.perf_counter()
    result = render(
        model,
        objectives.batched(targets),
        PARAMETRIZATIONS[param](len(targets), size, generator=generator, device=_device(model)),
        steps=steps,
        mean=mean,
        std=std,
        generator=generator,
    )
    seconds = time.perf_counter() - start
    arrays, values = image_arrays(result.images), result.values.tolist()
    tags, offset = [], 0
    for group, members in groups.items():
        what = "class logit (pre-softmax)" if group == "classes" else "channel mean activation"
        items = []
        for (label, target), array, value in zip(members, arrays[offset:], values[offset:]):
            items.append(png_item(array, f"{label} {value:.3g}", target=target.name, objective=value))
        offset += len(members)
        tags.append(f"optimized/{group}")
        meta = {"objective": what, "param": param, "steps": steps, "size": size, "targets": len(targets),
                "seconds": round(seconds, 2)}  # fmt: skip
        description = f"Images optimised to maximise each {what}" + ("" if group == "classes" else f" of {group}")
        log_items(writer, tags[-1], KIND, items, step, meta=meta, description=description)
    return tags


def log_deepdream(
    writer: Any,
    model: nn.Module,
    images: torch.Tensor,
    step: int,
    *,
    layer: str,
    captions: Optional[Sequence[str]] = None,
    octaves: int = 3,
    steps: int = 10,
    mean: Optional[Sequence[float]] = None,
    std: Optional[Sequence[float]] = None,
    seed: int = 0,
) -> str:
    """DeepDream each image at ``layer`` and log it next to its original (tag ``deepdream/<layer>``).

    Args:
        writer: a ``torch.utils.tensorboard.SummaryWriter``.
        model: the network; not modified.
        images: ``(N, 3, H, W)`` model inputs, normalised with ``mean``/``std`` like the dataset's.
        step: the global step to log at.
        layer: module name whose activations are amplified.
        captions: one per image (e.g. ``"#12 circle"``); default ``"image <i>"``.
        octaves: scales, smallest to full size.
        steps: gradient steps per octave.
        mean: per-channel mean of the input normalisation (``None`` = inputs in [0, 1]).
        std: per-channel standard deviation of that normalisation.
        seed: seed of the jitter (our own generator).

    Returns:
        The tag written.

    Raises:
        LayerNotFoundError: ``layer`` is not a module of ``model``.
        ValueError: ``captions`` of another length than ``images``.

    Example:
        >>> images, labels = next(iter(val_loader))  # doctest: +SKIP
        >>> log_deepdream(writer, model, images[:4], step=epoch, layer="features.8",
        ...               mean=MEAN, std=STD)  # doctest: +SKIP
        'deepdream/features.8'
    """
    labels = list(captions) if captions is not None else [f"image {i}" for i in range(len(images))]
    if len(labels) != len(images):
        raise ValueError(f"got {len(labels)} captions for {len(images)} images")
    with torch.inference_mode(False):
        originals = from_model_input(images.detach().clone(), mean, std)  # a normal tensor, even from inference mode
    before = evaluate(model, objectives.energy(layer), originals, mean=mean, std=std).tolist()
    result = deepdream(
        model, originals, layer, octaves=octaves, steps=steps, mean=mean, std=std,
        generator=torch.Generator().manual_seed(seed),
    )  # fmt: skip
    after = result.values.tolist()
    items = [
        png_item(
            array,
            f"{labels[i]}: energy {before[i]:.3g} → {after[i]:.3g}",
            energy_before=before[i],
            energy_after=after[i],
        )
        for i, array in enumerate(side_by_side(originals, result.images))
    ]
    tag = f"deepdream/{layer}"
    meta = {"layer": layer, "octaves": octaves, "steps_per_octave": steps, "layout": "original | dream"}
    description = f"DeepDream at {layer}: each probe image (left) and its dream (right)"
    log_items(writer, tag, KIND, items, step, meta=meta, description=description)
    return tag
