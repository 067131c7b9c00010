"""Texture synthesis and neural style (Gatys et al. 2015, 2016) with the model being trained.

A layer's *style* is the Gram matrix of its feature maps, ``G = F F^T / (H W)`` for the
``(C, H W)`` matrix ``F``: which channels fire together, wherever they do. :func:`texture` starts
from noise and matches the Gram matrices of several layers (a texture of the image: its
statistics without its layout); :func:`style_transfer` starts from the content image and matches
the style image's Gram matrices while keeping the content image's raw features at one layer.
Losses are relative (``||G - G0||² / ||G0||²`` averaged over the style layers; the content
loss as in :mod:`.inversion`), so they compare across layers, models and training steps.

All images of one call are optimised in one batch, on the pieces of :mod:`.inversion`
(:func:`~.inversion.capture`, :func:`~.inversion.fit`): eval mode, gradients to the images only,
our own generator, inputs at the model's size and channel count.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Union

import torch
from torch import nn

from tb_viz_plugin.methods.optvis.inversion import TV_WEIGHT, capture, fit, full_names, relative_distance, start
from tb_viz_plugin.methods.optvis.objectives import Activations, Objective
from tb_viz_plugin.methods.optvis.optimize import evaluate, from_model_input
from tb_viz_plugin.methods.optvis.param import image_param

STYLE_WEIGHT = 4.0
"""Default weight of the style loss against the content loss (both relative, see the module doc).

On the trained demo model (200 steps) 4 brought the style loss to <= 8% of the content image's and the
content loss to <= 19% of the style image's; 10 traded content for style (4%, 31%), 2 the other way (13%, 15%)."""


def gram(features: torch.Tensor) -> torch.Tensor:
    """Gram matrices ``F F^T / (H W)`` of ``(N, C, H, W)`` feature maps: ``(N, C, C)`` float32.

    Example:
        >>> gram(torch.ones(1, 2, 3, 3))
        tensor([[[1., 1.],
                 [1., 1.]]])
    """
    flat = features.float().flatten(2)
    return flat @ flat.transpose(1, 2) / flat.shape[-1]


def style_distance(acts: Activations, grams: Dict[str, torch.Tensor], rows: slice = slice(None)) -> torch.Tensor:
    """Relative Gram distance averaged over the layers of ``grams``: ``(N,)`` for the ``rows`` of ``acts``.

    Example:
        >>> features = torch.rand(2, 3, 4, 4)
        >>> style_distance({"conv": features}, {"conv": gram(features)})
        tensor([0., 0.])
    """
    parts = [relative_distance(gram(acts[layer][rows]), target) for layer, target in grams.items()]
    return torch.stack(parts).mean(0)


def _gram_objective(grams: Dict[str, torch.Tensor], n: int) -> Objective:
    return Objective(lambda acts: style_distance(acts, grams), "style distance", list(grams), batch_size=n)


def _inputs_to_images(inputs: torch.Tensor, mean: Optional[Sequence[float]], std: Optional[Sequence[float]]) -> torch.Tensor:
    with torch.inference_mode(False):
        return from_model_input(inputs.detach().clone(), mean, std)


@dataclass(frozen=True)
class Texture:
    """What :func:`texture` returns: each source image and a texture with its Gram matrices.

    Attributes:
        layers: the style layers' full module names.
        sources: ``(N, C, H, W)`` the source images in ``[0, 1]``, on the CPU.
        textures: ``(N, C, H, W)`` in ``[0, 1]``, on the CPU.
        loss_start: ``(N,)`` the relative Gram loss of the starting noise.
        loss_end: ``(N,)`` the same of the textures (a small fraction of ``loss_start``).
        steps: optimisation steps.
        seconds: time of the optimisation.
    """

    layers: List[str]
    sources: torch.Tensor
    textures: torch.Tensor
    loss_start: torch.Tensor
    loss_end: torch.Tensor
    steps: int
    seconds: float


def texture(
    model: nn.Module,
    images: torch.Tensor,
    layers: Union[str, Sequence[str]],
    *,
    steps: int = 200,
    lr: float = 0.1,
    tv_weight: float = 0.0,
    param: str = "pyramid",
    mean: Optional[Sequence[float]] = None,
    std: Optional[Sequence[float]] = None,
    seed: int = 0,
) -> Texture:
    """Synthesise one texture per image from noise by matching its Gram matrices at ``layers`` (one batch).

    Args:
        model: the network, taking inputs normalised with ``mean``/``std``; not modified.
        images: ``(N, C, H, W)`` model inputs, normalised like the dataset's (the textures' sources).
        layers: the style layers (a name or a list; unique endings of full names accepted).
        steps: Adam steps.
        lr: Adam's learning rate.
        tv_weight: weight of a total-variation prior (0 = none: textures keep their fine grain).
        param: the noise's parametrization, a key of ``inversion.PARAMETRIZATIONS``.
        mean: per-channel mean of the input normalisation (``None`` = inputs in [0, 1]).
        std: per-channel standard deviation of that normalisation.
        seed: seed of the starting noise (our own generator).

    Returns:
        A :class:`Texture` on the CPU.

    Raises:
        ValueError: ``steps < 1``, an unknown ``param``, no layers or one named twice, or a layer
            whose output is not ``(N, C, H, W)``.
        LayerNotFoundError: a layer that is not a module of ``model``.

    Example:
        >>> _ = torch.manual_seed(0)
        >>> net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Conv2d(4, 8, 3), nn.ReLU())
        >>> result = texture(net, torch.rand(2, 3, 16, 16), ["1", "3"], steps=20)
        >>> tuple(result.textures.shape), bool((result.loss_end < result.loss_start).all())
        ((2, 3, 16, 16), True)
    """
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    paths = full_names(model, layers)
    sources = _inputs_to_images(images, mean, std)
    grams = {layer: gram(value) for layer, value in capture(model, sources, paths, mean=mean, std=std).items()}
    loss = _gram_objective(grams, len(sources))
    generator = torch.Generator().manual_seed(seed)
    with torch.inference_mode(False):
        noise = start(param, len(sources), sources, generator)
        with torch.no_grad():
            loss_start = evaluate(model, loss, noise[1](), mean=mean, std=std)
    began = time.perf_counter()
    found = fit(model, loss, noise, steps=steps, lr=lr, tv_weight=tv_weight, mean=mean, std=std, generator=generator)
    seconds = time.perf_counter() - began
    loss_end = evaluate(model, loss, found, mean=mean, std=std)
    return Texture(paths, sources.float().cpu(), found.float().cpu(), loss_start, loss_end, steps, seconds)


@dataclass(frozen=True)
class Stylized:
    """What :func:`style_transfer` returns: each content image painted in the style of its style image.

    Attributes:
        content_layer: the content layer's full module name.
        style_layers: the style layers' full module names.
        contents: ``(N, C, H, W)`` in ``[0, 1]``, on the CPU.
        styles: ``(N, C, H, W)`` in ``[0, 1]`` (one per content image), on the CPU.
        results: ``(N, C, H, W)`` in ``[0, 1]``, on the CPU.
        content_loss: ``(N,)`` relative content loss of each result (to its content image).
        style_loss: ``(N,)`` relative style (Gram) loss of each result (to its style image).
        content_loss_of_style: ``(N,)`` the content loss of the style image itself (what "far
            below" compares to).
        style_loss_of_content: ``(N,)`` the style loss of the content image itself.
        style_weight: the weight of the style loss.
        steps: optimisation steps.
        seconds: time of the optimisation.
    """

    content_layer: str
    style_layers: List[str]
    contents: torch.Tensor
    styles: torch.Tensor
    results: torch.Tensor
    content_loss: torch.Tensor
    style_loss: torch.Tensor
    content_loss_of_style: torch.Tensor
    style_loss_of_content: torch.Tensor
    style_weight: float
    steps: int
    seconds: float


def style_transfer(
    model: nn.Module,
    content: torch.Tensor,
    style: torch.Tensor,
    content_layer: str,
    style_layers: Union[str, Sequence[str]],
    *,
    steps: int = 200,
    style_weight: float = STYLE_WEIGHT,
    lr: float = 0.05,
    tv_weight: float = 0.1 * TV_WEIGHT,
    mean: Optional[Sequence[float]] = None,
    std: Optional[Sequence[float]] = None,
) -> Stylized:
    """Paint each content image in the style of a style image: one batch for all pairs.

    Minimises ``content_loss + style_weight * style_loss (+ tv)`` starting from the content image
    (Gatys start from noise; from the content image the content is there at step 0, and a small
    training-time budget goes to the style).

    Args:
        model: the network, taking inputs normalised with ``mean``/``std``; not modified.
        content: ``(N, C, H, W)`` model inputs (normalised like the dataset's).
        style: ``(N, C, H, W)`` model inputs, one style per content image, or ``(1, C, H, W)``
            for all of them; same size as ``content``.
        content_layer: the layer whose raw features are kept.
        style_layers: the layers whose Gram matrices are matched (a name or a list).
        steps: Adam steps.
        style_weight: weight of the (relative) style loss against the (relative) content loss.
        lr: Adam's learning rate on the pre-sigmoid pixels.
        tv_weight: weight of the total-variation prior.
        mean: per-channel mean of the input normalisation (``None`` = inputs in [0, 1]).
        std: per-channel standard deviation of that normalisation.

    Returns:
        A :class:`Stylized` on the CPU, with the losses of the content and style images themselves.

    Raises:
        ValueError: ``steps < 1``, shapes that do not pair up, a style layer named twice, or a
            layer whose output is not ``(N, C, H, W)``.
        LayerNotFoundError: a layer that is not a module of ``model``.

    Example:
        >>> _ = torch.manual_seed(0)
        >>> net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Conv2d(4, 8, 3), nn.ReLU())
        >>> result = style_transfer(net, torch.rand(2, 3, 16, 16), torch.rand(1, 3, 16, 16), "3", ["1", "3"], steps=20)
        >>> tuple(result.results.shape), bool((result.style_loss < result.style_loss_of_content).all())
        ((2, 3, 16, 16), True)
    """
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    if style.dim() != 4 or style.shape[0] not in (1, len(content)) or style.shape[1:] != content.shape[1:]:
        raise ValueError(f"style must be (1 or {len(content)}, {', '.join(map(str, content.shape[1:]))}), "
                         f"got {tuple(style.shape)}")  # fmt: skip
    (content_path,) = full_names(model, content_layer)
    style_paths = full_names(model, style_layers)
    contents = _inputs_to_images(content, mean, std)
    styles = _inputs_to_images(style, mean, std).expand_as(contents).contiguous()
    n = len(contents)
    captured = capture(model, torch.cat([contents, styles]), sorted({content_path, *style_paths}), mean=mean, std=std)
    content_target = captured[content_path][:n]
    grams = {layer: gram(captured[layer][n:]) for layer in style_paths}

    def fn(acts: Activations) -> torch.Tensor:
        return relative_distance(acts[content_path], content_target) + style_weight * style_distance(acts, grams)

    loss = Objective(fn, "content + style", [content_path, *style_paths], batch_size=n)
    began = time.perf_counter()
    with torch.inference_mode(False):
        generator = torch.Generator().manual_seed(0)  # no random draws: no transforms, a given start
        found = fit(model, loss, image_param(contents), steps=steps, lr=lr, tv_weight=tv_weight, mean=mean, std=std,
                    generator=generator)  # fmt: skip
    seconds = time.perf_counter() - began
    after = capture(model, found, sorted({content_path, *style_paths}), mean=mean, std=std)
    content_loss = relative_distance(after[content_path], content_target).cpu()
    style_loss = style_distance(after, grams).cpu()
    content_of_style = relative_distance(captured[content_path][n:], content_target).cpu()
    style_of_content = style_distance({k: v[:n] for k, v in captured.items()}, grams).cpu()
    return Stylized(content_path, style_paths, contents.float().cpu(), styles.float().cpu(), found.float().cpu(),
                    content_loss, style_loss, content_of_style, style_of_content, float(style_weight), steps,
                    seconds)  # fmt: skip
