"""The optimisation loop: ascend an objective's gradient with respect to an image parametrization.

Model state is left as found: eval mode inside with every submodule's flag restored, gradients
taken with ``torch.autograd.grad`` with respect to the image parameters only (no parameter
``.grad`` is written, no weight gradient is even computed), forward hooks removed in ``finally``,
every random draw from our own ``torch.Generator``. Works inside ``torch.no_grad`` and
``torch.inference_mode`` blocks (a Lightning validation loop) and under autocast.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Callable, Dict, Iterator, List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from tb_viz_plugin.methods.hooks import LayerHooks, StopForward
from tb_viz_plugin.methods.layers import preserved_training_flags, resolve_layers
from tb_viz_plugin.methods.optvis.objectives import INPUT, OUTPUT, Objective
from tb_viz_plugin.methods.optvis.param import ImageParam, own_generator
from tb_viz_plugin.methods.optvis.transform import Transform, compose, default_transforms, gaussian_blur

Score = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
"""``score(image, seen) -> (N,)``: the objective when the model sees ``seen`` (``image`` transformed)."""


@dataclass(frozen=True)
class Rendered:
    """Result of an optimisation.

    Attributes:
        images: ``(N, 3, H, W)`` in ``[0, 1]``, detached, on the model's device.
        values: ``(N,)`` float32 CPU, the objective of each final image, evaluated without transforms.
    """

    images: torch.Tensor
    values: torch.Tensor


def _channel_stats(
    images: torch.Tensor, mean: Optional[Sequence[float]], std: Optional[Sequence[float]]
) -> Tuple[torch.Tensor, torch.Tensor]:
    """``mean`` and ``std`` as ``(1, C, 1, 1)`` tensors like ``images`` (0 and 1 where not given)."""
    channels = images.shape[1]
    mean_t = torch.tensor(mean if mean is not None else [0.0] * channels, dtype=torch.float32)
    std_t = torch.tensor(std if std is not None else [1.0] * channels, dtype=torch.float32)
    return mean_t.to(images).view(1, -1, 1, 1), std_t.to(images).view(1, -1, 1, 1)


def to_model_input(
    images: torch.Tensor, mean: Optional[Sequence[float]] = None, std: Optional[Sequence[float]] = None
) -> torch.Tensor:
    """Images in ``[0, 1]`` to the model's input space: ``(images - mean) / std`` per channel.

    Example:
        >>> to_model_input(torch.ones(1, 3, 1, 1), mean=[0.5] * 3, std=[0.25] * 3).flatten()
        tensor([2., 2., 2.])
    """
    mean_t, std_t = _channel_stats(images, mean, std)
    return (images - mean_t) / std_t


def from_model_input(
    inputs: torch.Tensor, mean: Optional[Sequence[float]] = None, std: Optional[Sequence[float]] = None
) -> torch.Tensor:
    """Inverse of ``to_model_input``, clamped to ``[0, 1]`` (e.g. a dataset's normalised images).

    Example:
        >>> from_model_input(torch.full((1, 3, 1, 1), 2.0), mean=[0.5] * 3, std=[0.25] * 3).flatten()
        tensor([1., 1., 1.])
    """
    mean_t, std_t = _channel_stats(inputs, mean, std)
    return (inputs * std_t + mean_t).clamp(0, 1)


@contextlib.contextmanager
def scoring(
    model: nn.Module,
    objective: Objective,
    mean: Optional[Sequence[float]] = None,
    std: Optional[Sequence[float]] = None,
    truncate: bool = False,
) -> Iterator[Score]:
    """Context yielding ``score(image, seen)``: the objective of images (``seen`` = what the model sees).

    Inside: eval mode (flags restored after), out of inference mode, gradients enabled, hooks on
    the layers the objective reads (removed after). With ``truncate`` (an objective that reads
    layers only, not ``OUTPUT``), each forward pass stops after the last layer it reads, so the
    rest of the network (e.g. a fixed-size head) never sees the image's size.

    Raises:
        LayerNotFoundError: the objective reads a layer the model does not have.
        ValueError: (at a forward pass) such a layer's output is not ``(N, C, H, W)``.
    """
    aliases: Dict[str, List[str]] = {}  # full module path -> the names the objective uses for it
    for name in sorted(objective.layers):
        (path,) = resolve_layers(model, name, accept=lambda m: True, what="module")
        aliases.setdefault(path, []).append(name)
    activations: Dict[str, torch.Tensor] = {}

    stop = truncate and bool(aliases)

    def keep(path: str, output: torch.Tensor) -> None:
        activations.update(dict.fromkeys(aliases[path], output))
        if stop and all(name in activations for names in aliases.values() for name in names):
            raise StopForward

    with contextlib.ExitStack() as stack:
        stack.enter_context(preserved_training_flags(model))
        stack.enter_context(torch.inference_mode(False))
        stack.enter_context(torch.enable_grad())
        stack.enter_context(LayerHooks(model, list(aliases), keep, feature_maps=True))

        def score(image: torch.Tensor, seen: torch.Tensor) -> torch.Tensor:
            activations.clear()
            try:
                outputs = {OUTPUT: model(to_model_input(seen, mean, std))}
            except StopForward:
                outputs = {}
            return objective({**activations, INPUT: image, **outputs})

        yield score


def evaluate(
    model: nn.Module,
    objective: Objective,
    images: torch.Tensor,
    *,
    mean: Optional[Sequence[float]] = None,
    std: Optional[Sequence[float]] = None,
    truncate: bool = False,
) -> torch.Tensor:
    """The objective of ``images`` (``(N, 3, H, W)`` in ``[0, 1]``) as seen untransformed: ``(N,)`` float32 CPU.

    Example:
        >>> from tb_viz_plugin.methods.optvis.objectives import class_logit
        >>> net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten())
        >>> evaluate(net, class_logit(0), torch.rand(2, 3, 16, 16)).shape
        torch.Size([2])
    """
    with scoring(model, objective, mean, std, truncate) as score, torch.no_grad():
        images = images.detach().clone()  # a normal tensor even when the caller's is an inference tensor
        return score(images, images).detach().float().cpu()


def _accepts_other_sizes(
    model: nn.Module, shape: Sequence[int], mean: Optional[Sequence[float]], std: Optional[Sequence[float]],
    device: torch.device,
) -> bool:
    """Whether ``model`` runs on a grey image of ``shape``'s size (no fixed-size head); flags restored."""
    grey = torch.full((1, shape[1], shape[2], shape[3]), 0.5, device=device)
    try:
        with preserved_training_flags(model), torch.inference_mode(False), torch.no_grad():
            model.eval()
            model(to_model_input(grey, mean, std))
    except Exception:  # noqa: BLE001 - any failure means: keep the size
        return False
    return True


def render(
    model: nn.Module,
    objective: Objective,
    param: ImageParam,
    *,
    steps: int = 128,
    lr: float = 0.2,
    transforms: Optional[Sequence[Transform]] = None,
    mean: Optional[Sequence[float]] = None,
    std: Optional[Sequence[float]] = None,
    generator: Optional[torch.Generator] = None,
    blur_every: int = 0,
    blur_sigma: float = 0.5,
    keep_size: Optional[bool] = None,
) -> Rendered:
    """Maximise ``objective`` over the images of ``param`` with Adam; all images in one batch.

    Each step: build the images, transform them (random jitter/scale/rotation), normalise with
    ``mean``/``std``, run the model, score, and step the parameters along the gradient of the
    summed scores (each image's gradient depends on its own score only).

    Args:
        model: any ``nn.Module`` taking normalised ``(N, C, H, W)`` images; not modified.
        objective: what to maximise; a ``batched`` objective needs exactly N images.
        param: ``(params, image_fn)`` from :mod:`.param` (create it inside any ``inference_mode``
            block's ``inference_mode(False)``, on the model's device).
        steps: optimisation steps.
        lr: Adam's learning rate. Lucid uses 0.05 for 512 steps; at 64 steps on the demo model 0.1
            left some classes on the flat start of their curve for some seeds, 0.2 none of 3.
        transforms: robustness transforms; ``None`` = ``default_transforms(image size)``, ``()`` = none.
        mean: per-channel mean the model's inputs were normalised with (``None`` = inputs in [0, 1]).
        std: per-channel standard deviation of that normalisation.
        generator: source of every random draw; ``None`` = a fresh CPU generator seeded 0.
        blur_every: every this many steps, blur the pixel parameters (4-D ones) in place with a
            Gaussian of ``blur_sigma`` pixels (periodic blur, Yosinski 2015); 0 = never.
        blur_sigma: the blur's standard deviation in pixels.
        keep_size: resize the transformed images back to the images' size before the model sees
            them (a network with a fixed-size head needs it); ``None`` = only when the model fails
            on the transformed size (one grey forward pass at the first such step to find out).

    Returns:
        ``Rendered(images (N, 3, H, W) in [0, 1], values (N,))``.

    Raises:
        ValueError: bad ``steps``/``blur_every``, a batched objective for another number of
            images, periodic blur without pixel parameters, or parameters made in inference mode.
        LayerNotFoundError: the objective reads a layer the model does not have.

    Example:
        >>> from tb_viz_plugin.methods.optvis import objectives, param
        >>> model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten())  # 4 "classes"
        >>> g = torch.Generator().manual_seed(0)
        >>> obj = objectives.batched([objectives.class_logit(c) for c in range(4)])
        >>> out = render(model, obj, param.fourier_image(4, 32, generator=g), steps=4,
        ...              mean=[0.5] * 3, std=[0.25] * 3, generator=g)
        >>> out.images.shape, out.values.shape
        (torch.Size([4, 3, 32, 32]), torch.Size([4]))
    """
    if steps < 1 or blur_every < 0:
        raise ValueError(f"need steps >= 1 and blur_every >= 0, got steps={steps}, blur_every={blur_every}")
    params, image_fn = param
    if any(p.is_inference() for p in params):
        raise ValueError("create the parametrization outside inference mode (inside torch.inference_mode(False))")
    generator = own_generator(generator)
    with torch.no_grad():
        shape = image_fn().shape
    if objective.batch_size not in (None, shape[0]):
        raise ValueError(
            f"the objective is batched for {objective.batch_size} images, the parametrization makes {shape[0]}"
        )
    blurred: List[torch.Tensor] = [p for p in params if p.dim() == 4]
    if blur_every and not blurred:
        raise ValueError("periodic blur needs pixel parameters (pixel_image or pyramid_image), not a spectrum")
    pipeline = compose(default_transforms(shape[-1]) if transforms is None else transforms)
    fused = all(p.device.type in ("cpu", "cuda") for p in params)  # one kernel per step instead of ~10 per tensor
    optimizer = torch.optim.Adam(params, lr=lr, maximize=True, fused=fused)
    with scoring(model, objective, mean, std) as score:
        for step in range(1, steps + 1):
            image = image_fn()
            seen = pipeline(image, generator)
            if keep_size is None and seen.shape[-2:] != image.shape[-2:]:  # found out once, at the first other size
                keep_size = not _accepts_other_sizes(model, seen.shape, mean, std, seen.device)
            if keep_size and seen.shape[-2:] != image.shape[-2:]:  # the model sees the images' size (fixed-size heads)
                seen = F.interpolate(seen, size=image.shape[-2:], mode="bilinear", align_corners=False)
            grads = torch.autograd.grad(score(image, seen).sum(), params)
            for parameter, grad in zip(params, grads):
                # fused Adam reads grad memory in the parameter's layout: a channels-last gradient
                # (a model run channels-last) must be copied into that layout first
                same = grad.stride() == parameter.stride()
                parameter.grad = grad if same else torch.empty_like(parameter).copy_(grad)
            optimizer.step()
            if blur_every and step % blur_every == 0:
                with torch.no_grad():
                    for parameter in blurred:
                        parameter.copy_(gaussian_blur(parameter, blur_sigma))
        with torch.no_grad():
            image = image_fn()
            values = score(image, image).float().cpu()
    return Rendered(images=image.detach(), values=values)
