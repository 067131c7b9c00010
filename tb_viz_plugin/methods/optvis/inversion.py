"""Feature inversion (Mahendran & Vedaldi 2015): an image whose features at a layer match a given image's.

What a layer keeps of an image is what any image with the same representation there shares with
it. Starting from noise, :func:`invert` looks for such an image: it minimises the normalised
feature distance ``||phi(x) - phi(x0)||² / ||phi(x0)||²`` plus a total-variation prior (the
natural-image prior of the paper, L1 here) over a sigmoid pixel parametrization, whose bounds
replace the paper's alpha-norm. Reconstructions from an early layer look like the image;
from a deep one they keep what the classifier needs (shape, layout) and lose the rest (colour,
texture, exact position).

Every image x layer of one call is optimised in one batch (row ``l * N + n`` reconstructs image
``n`` from layer ``l``), through :func:`~tb_viz_plugin.methods.optvis.optimize.render`: eval mode
with flags restored, gradients with ``torch.autograd.grad`` to the image only, our own generator.
Inputs keep the model's size and channel count, so fixed-size heads (``nn.Linear`` after a
flatten) and grey or multispectral inputs work. :mod:`.style` builds texture synthesis and neural
style on the same pieces (:func:`capture`, :func:`relative_distance`, :func:`fit`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Union

import torch
from torch import nn

from tb_viz_plugin.methods.layers import resolve_layers
from tb_viz_plugin.methods.optvis import objectives
from tb_viz_plugin.methods.optvis.objectives import INPUT, Activations, Objective
from tb_viz_plugin.methods.optvis.optimize import evaluate, from_model_input, render, scoring
from tb_viz_plugin.methods.optvis.param import ImageParam, fourier_image, pixel_image, pyramid_image

PARAMETRIZATIONS = {"pyramid": pyramid_image, "pixel": pixel_image, "fourier": fourier_image}
"""Starting points of :func:`invert`: multi-scale octaves, free pixels, or a 1/f spectrum."""
TV_WEIGHT = 0.05
"""Default weight of the total-variation prior (mean absolute neighbour difference, images in [0, 1])."""


def full_names(model: nn.Module, layers: Union[str, Sequence[str]]) -> List[str]:
    """The full module names of ``layers`` (a name or a list; unique endings accepted), in order, no repeats.

    Raises:
        ValueError: no layers, or one layer named twice.
        LayerNotFoundError: a name that is not a module of ``model``.

    Example:
        >>> full_names(nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU()), ["0", "1"])
        ['0', '1']
    """
    names = [layers] if isinstance(layers, str) else list(layers)
    if not names:
        raise ValueError("give at least one layer")
    paths = [resolve_layers(model, name, accept=lambda module: True, what="module")[0] for name in names]
    if len(set(paths)) != len(paths):
        raise ValueError(f"a layer is named twice in {names!r}")
    return paths


def squared_norm(values: torch.Tensor) -> torch.Tensor:
    """``||v||²`` of each image's values, ``(N, ...)`` -> ``(N,)`` float32 (summed in place: no flattening copy)."""
    return values.float().pow(2).sum(dim=tuple(range(1, values.dim())))


def relative_distance(
    value: torch.Tensor, target: torch.Tensor, norm: Optional[torch.Tensor] = None, eps: float = 1e-12
) -> torch.Tensor:
    """``||value - target||² / ||target||²`` per image: ``(N, ...)`` -> ``(N,)`` float32.

    ``norm``: ``squared_norm(target)`` when already known (the optimisation loops pass it once).

    Example:
        >>> relative_distance(torch.tensor([[1.0, 1.0]]), torch.tensor([[2.0, 0.0]]))
        tensor([0.5000])
    """
    norm = squared_norm(target) if norm is None else norm
    return squared_norm(value.float() - target) / norm.clamp_min(eps)


def capture(
    model: nn.Module,
    images: torch.Tensor,
    layers: Sequence[str],
    *,
    mean: Optional[Sequence[float]] = None,
    std: Optional[Sequence[float]] = None,
) -> Dict[str, torch.Tensor]:
    """What ``layers`` output for ``images`` (``[0, 1]``), detached float32, seen as the optimisation sees them.

    The same full forward pass as :func:`render`'s (eval mode, hooks without clones), so in-place
    operations after a layer act on its targets as they act on its reconstructions.

    Example:
        >>> net = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU())
        >>> capture(net, torch.rand(2, 1, 8, 8), ["0"])["0"].shape
        torch.Size([2, 4, 6, 6])
    """
    kept: Dict[str, torch.Tensor] = {}

    def keep(acts: Activations) -> torch.Tensor:
        kept.update({layer: acts[layer].detach().float() for layer in layers})
        return torch.zeros(len(acts[INPUT]))

    with scoring(model, Objective(keep, "capture", layers), mean, std) as score, torch.no_grad():
        images = images.detach().clone()  # a normal tensor even when the caller's is an inference tensor
        score(images, images)
    return kept


def start(
    kind: str, n: int, like: torch.Tensor, generator: torch.Generator, sd: Optional[float] = None
) -> ImageParam:
    """A parametrization of ``n`` noise images shaped like ``like`` (channels, size, device), from ``generator``.

    Raises:
        ValueError: ``kind`` not in ``PARAMETRIZATIONS``.
    """
    if kind not in PARAMETRIZATIONS:
        raise ValueError(f"param must be one of {list(PARAMETRIZATIONS)}, got {kind!r}")
    channels, height, width = like.shape[1:]
    extra = {} if sd is None else {"sd": sd}
    return PARAMETRIZATIONS[kind](n, (height, width), channels=channels, generator=generator, device=like.device,
                                  decorrelate=kind != "pixel" and channels == 3, **extra)  # fmt: skip


def fit(
    model: nn.Module,
    loss: Objective,
    param: ImageParam,
    *,
    steps: int,
    lr: float,
    tv_weight: float,
    mean: Optional[Sequence[float]],
    std: Optional[Sequence[float]],
    generator: torch.Generator,
) -> torch.Tensor:
    """Minimise ``loss + tv_weight * tv`` over ``param``'s images (no transforms); the final images ``[0, 1]``."""
    objective = -loss - objectives.total_variation(tv_weight) if tv_weight else -loss
    result = render(model, objective, param, steps=steps, lr=lr, transforms=(), mean=mean, std=std,
                    generator=generator)  # fmt: skip
    return result.images.detach()


@dataclass(frozen=True)
class Inversion:
    """What :func:`invert` returns: each image and its reconstruction from each layer.

    Attributes:
        layers: the layers' full module names (L).
        originals: ``(N, C, H, W)`` the images in ``[0, 1]`` (un-normalised), on the CPU.
        reconstructions: ``(N, L, C, H, W)`` in ``[0, 1]``, on the CPU.
        distances: ``(N, L)`` relative feature distance ``||phi(x) - phi(x0)|| / ||phi(x0)||`` of
            each reconstruction at its layer (the objective met: small).
        pixel_errors: ``(N, L)`` root mean squared pixel difference to the original (``[0, 1]`` units).
        steps: optimisation steps.
        param: the parametrization (a key of ``PARAMETRIZATIONS``).
        seconds: time of the optimisation.
    """

    layers: List[str]
    originals: torch.Tensor
    reconstructions: torch.Tensor
    distances: torch.Tensor
    pixel_errors: torch.Tensor
    steps: int
    param: str
    seconds: float


def _feature_match(targets: Dict[str, torch.Tensor], layers: Sequence[str], n: int) -> Objective:
    """Row ``l * n + i``: the relative distance of ``layers[l]``'s output to image ``i``'s target."""

    norms = {layer: squared_norm(target) for layer, target in targets.items()}

    def fn(acts: Activations) -> torch.Tensor:
        return torch.cat([relative_distance(acts[layer][k * n : (k + 1) * n], targets[layer], norms[layer])
                          for k, layer in enumerate(layers)])  # fmt: skip

    return Objective(fn, "feature distance", layers, batch_size=n * len(layers))


def invert(
    model: nn.Module,
    images: torch.Tensor,
    layers: Union[str, Sequence[str]],
    *,
    steps: int = 200,
    lr: float = 0.1,
    tv_weight: float = TV_WEIGHT,
    param: str = "pyramid",
    mean: Optional[Sequence[float]] = None,
    std: Optional[Sequence[float]] = None,
    seed: int = 0,
) -> Inversion:
    """Reconstruct every image from every layer's features, all ``N x L`` of them in one batch.

    Args:
        model: the network, taking inputs normalised with ``mean``/``std``; not modified. Any
            input channel count; the images keep the size of ``images`` (the model's own).
        images: ``(N, C, H, W)`` model inputs, normalised like the dataset's (inference tensors are fine).
        layers: module names (a name or a list; unique endings of full names accepted).
        steps: Adam steps.
        lr: Adam's learning rate on the pre-sigmoid pixels (or spectrum).
        tv_weight: weight of the total-variation prior (0 = none).
        param: ``"pyramid"``, ``"pixel"`` or ``"fourier"`` (see ``PARAMETRIZATIONS``). On the
            trained demo model (300 steps) pyramid met the objective at every layer (relative
            distance <= 0.11); pixels stalled at the deepest conv for some images (0.46), the 1/f
            spectrum was slow on the first conv's fine detail (0.14).
        mean: per-channel mean of the input normalisation (``None`` = inputs in [0, 1]).
        std: per-channel standard deviation of that normalisation.
        seed: seed of the starting noise (our own generator; the global RNG is untouched).

    Returns:
        An :class:`Inversion` on the CPU.

    Raises:
        ValueError: ``steps < 1``, an unknown ``param``, no layers or a layer named twice, or a
            layer whose output is not ``(N, C, H, W)``.
        LayerNotFoundError: a layer that is not a module of ``model``.

    Example:
        >>> net = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Conv2d(4, 8, 3), nn.Flatten(), nn.Linear(8 * 12 * 12, 2))
        >>> result = invert(net, torch.rand(2, 1, 16, 16), ["0", "2"], steps=3)
        >>> tuple(result.reconstructions.shape), tuple(result.distances.shape)
        ((2, 2, 1, 16, 16), (2, 2))
    """
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    paths = full_names(model, layers)
    with torch.inference_mode(False):
        originals = from_model_input(images.detach().clone(), mean, std)
    n, count = len(originals), len(paths)
    targets = capture(model, originals, paths, mean=mean, std=std)
    match = _feature_match(targets, paths, n)
    generator = torch.Generator().manual_seed(seed)
    began = time.perf_counter()
    with torch.inference_mode(False):
        start_param = start(param, n * count, originals, generator)
    found = fit(model, match, start_param, steps=steps, lr=lr, tv_weight=tv_weight, mean=mean, std=std,
                generator=generator)  # fmt: skip
    seconds = time.perf_counter() - began
    distances = evaluate(model, match, found, mean=mean, std=std).clamp_min(0).sqrt()
    found = found.float().cpu().view(count, n, *originals.shape[1:]).transpose(0, 1)
    originals = originals.float().cpu()
    errors = (found - originals[:, None]).pow(2).flatten(2).mean(2).sqrt()
    return Inversion(paths, originals, found.contiguous(), distances.view(count, n).t().contiguous(), errors,
                     steps, param, seconds)  # fmt: skip
