"""Is a map faithful to the model? Deletion and insertion scores (Petsiuk et al. 2018, RISE).

Deletion: the pixels are replaced by a baseline in order of attribution, most attributed first,
and the target's probability is recorded against the fraction replaced; a faithful map makes it
fall fast (low area under the curve). Insertion: the pixels are put, in the same order, into a
blurred copy of the image; a faithful map makes the probability rise fast (high area). A random
map (:func:`random_map`) gives the baseline score any map should beat.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, Callable, List, Optional, Tuple, Union

import torch
import torch.nn.functional as F
from torch import nn

from tb_viz_plugin.methods.attribution.perturbation import chunk_size
from tb_viz_plugin.methods.attribution.targets import Targets, check_targets, resolve_targets
from tb_viz_plugin.methods.layers import preserved_training_flags

Score = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
"""``score(outputs, targets) -> (B,)``: the model's outputs for a batch and each image's target, to one number each."""
Baseline = Union[float, torch.Tensor, str]
"""A number, a tensor broadcastable to the images, or ``"blur"`` (a Gaussian blur of each image, :func:`blur`)."""


def softmax_score(outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """The softmax probability of each image's target class, float32 (the default :data:`Score`).

    Example:
        >>> softmax_score(torch.tensor([[0.0, 0.0], [2.0, 0.0]]), torch.tensor([0, 1]))
        tensor([0.5000, 0.1192])
    """
    return outputs.float().softmax(1).gather(1, targets[:, None]).squeeze(1)


def blur(images: torch.Tensor, sigma: Optional[float] = None) -> torch.Tensor:
    """A separable Gaussian blur of ``(N, C, H, W)`` images, borders replicated, same dtype and device.

    Args:
        images: the batch.
        sigma: standard deviation in pixels; default 5% of the larger side (about the blur of
            Petsiuk et al.'s insertion start at 224 pixels, relative to the image). 0 copies.

    Raises:
        ValueError: a negative sigma.

    Example:
        >>> x = torch.zeros(1, 1, 9, 9); x[0, 0, 4, 4] = 1.0
        >>> y = blur(x, sigma=1.0)
        >>> round(y.sum().item(), 4), bool(y[0, 0, 4, 4] < 1)
        (1.0, True)
    """
    height, width = images.shape[-2:]
    sigma = 0.05 * max(height, width) if sigma is None else float(sigma)
    if sigma < 0:
        raise ValueError(f"blur sigma must be >= 0, got {sigma}")
    if sigma == 0:
        return images.clone()
    radius = max(1, math.ceil(3 * sigma))
    offsets = torch.arange(-radius, radius + 1, device=images.device, dtype=torch.float32)
    kernel = torch.exp(-0.5 * (offsets / sigma) ** 2)
    kernel = (kernel / kernel.sum()).to(images.dtype)
    n, channels = images.shape[:2]
    flat = images.reshape(n * channels, 1, height, width)
    flat = F.conv2d(F.pad(flat, (radius, radius, 0, 0), mode="replicate"), kernel.view(1, 1, 1, -1))
    flat = F.conv2d(F.pad(flat, (0, 0, radius, radius), mode="replicate"), kernel.view(1, 1, -1, 1))
    return flat.view(images.shape)


def random_map(images: torch.Tensor, seed: int = 0) -> torch.Tensor:
    """Uniform random maps ``(N, H, W)`` for ``images`` from this function's own generator (the baseline map).

    Drawn on the CPU (the same maps on every device), returned float32 on the images' device.

    Example:
        >>> a, b = random_map(torch.zeros(2, 3, 4, 4), seed=1), random_map(torch.zeros(2, 3, 4, 4), seed=1)
        >>> a.shape, torch.equal(a, b)
        (torch.Size([2, 4, 4]), True)
    """
    generator = torch.Generator().manual_seed(int(seed))
    n, _, height, width = images.shape
    return torch.rand((n, height, width), generator=generator).to(images.device)


def _fill(images: torch.Tensor, baseline: Baseline) -> torch.Tensor:
    if isinstance(baseline, str):
        if baseline != "blur":
            raise ValueError(f"baseline must be a number, a tensor or 'blur', got {baseline!r}")
        return blur(images)
    return torch.as_tensor(baseline, dtype=images.dtype, device=images.device).expand_as(images)


def _ranks(maps: torch.Tensor) -> torch.Tensor:
    """``(N, H*W)``: each pixel's position when the pixels are sorted by attribution, highest first (ties by index)."""
    flat = maps.detach().float().flatten(1)
    order = torch.sort(flat, dim=1, descending=True, stable=True).indices
    ranks = torch.empty_like(order)
    ranks.scatter_(1, order, torch.arange(flat.shape[1], device=flat.device).expand_as(order))
    return ranks


def _curve(
    model: nn.Module, start: torch.Tensor, end: torch.Tensor, maps: torch.Tensor, targets: torch.Tensor,
    steps: int, score: Score, max_memory_mb: float,
) -> torch.Tensor:  # fmt: skip
    """``(N, steps + 1)``: the score when the top ``k / steps`` of the pixels come from ``end``, the rest from ``start``."""
    n, _, height, width = start.shape
    ranks = _ranks(maps).view(n, height, width)
    counts = torch.tensor([round(k * height * width / steps) for k in range(steps + 1)], device=start.device)
    jobs = n * (steps + 1)
    chunk = chunk_size(model, start, max_memory_mb)
    curve = torch.empty(jobs, dtype=torch.float32, device=start.device)
    for first in range(0, jobs, chunk):
        job = torch.arange(first, min(first + chunk, jobs), device=start.device)
        image, step = job // (steps + 1), job % (steps + 1)
        switched = (ranks[image] < counts[step][:, None, None])[:, None]
        batch = torch.where(switched, end[image], start[image])
        curve[first : first + len(job)] = score(model(batch), targets[image]).float()
    return curve.view(n, steps + 1)


def _prepared(
    model: nn.Module, images: torch.Tensor, maps: torch.Tensor, targets: Targets, steps: int, max_memory_mb: float
) -> Tuple[torch.Tensor, torch.Tensor]:
    """Checked arguments: the images (detached) and the resolved targets (one forward pass of the images)."""
    check_targets(targets)
    if not isinstance(images, torch.Tensor) or images.dim() != 4:
        raise ValueError(f"images must be a batch (N, C, H, W), got {getattr(images, 'shape', type(images).__name__)}")
    n, _, height, width = images.shape
    if not isinstance(maps, torch.Tensor) or tuple(maps.shape) != (n, height, width):
        raise ValueError(
            f"maps must be (N, H, W) = {(n, height, width)} like the images, got {tuple(getattr(maps, 'shape', ()))}; "
            "bring layer-resolution maps to the image size with tb_viz_plugin.methods.attribution.upsample"
        )
    if not isinstance(steps, int) or steps < 1 or not max_memory_mb > 0:
        raise ValueError(f"steps must be an int >= 1 and max_memory_mb positive, got steps={steps!r}, max_memory_mb={max_memory_mb}")
    x = images.detach()
    return x, resolve_targets(targets, model(x).float())


def _faithfulness_curve(
    model: nn.Module, images: torch.Tensor, maps: torch.Tensor, targets: Targets, insertion: bool,
    steps: int, baseline: Baseline, score: Score, max_memory_mb: float,
) -> torch.Tensor:  # fmt: skip
    with preserved_training_flags(model), torch.no_grad():
        x, chosen = _prepared(model, images, maps, targets, steps, max_memory_mb)
        fill = _fill(x, baseline)
        start, end = (fill, x) if insertion else (x, fill)
        return _curve(model, start, end, maps, chosen, steps, score, max_memory_mb)


def deletion_curve(
    model: nn.Module,
    images: torch.Tensor,
    maps: torch.Tensor,
    targets: Targets = "predicted",
    *,
    steps: int = 32,
    baseline: Baseline = 0.0,
    score: Score = softmax_score,
    max_memory_mb: float = 1024.0,
) -> torch.Tensor:
    """The target's score as the most attributed pixels are replaced by ``baseline``, step by step.

    Step ``k`` replaces the top ``round(k / steps * H * W)`` pixels of each map (all channels;
    ties in the order of the pixel index). All steps of all images go through the model without
    gradients, in chunks within ``max_memory_mb`` of estimated activations, in eval mode (every
    submodule's flag restored).

    Args:
        model: the network.
        images: ``(N, C, H, W)`` on the model's device.
        maps: ``(N, H, W)`` attribution maps at the images' resolution (any method, any sign:
            higher means more important).
        targets: the class per image, as for ``attribute``: ``"predicted"``, an int, ``(N,)``
            indices or a callable ``logits -> (N,)``.
        steps: the curve has ``steps + 1`` points, fractions ``0, 1/steps, ..., 1``.
        baseline: what replaces the pixels: a number (0, the dataset mean for normalised
            inputs), a tensor broadcastable to the images, or ``"blur"``.
        score: ``score(outputs, targets) -> (B,)``; default the softmax probability.
        max_memory_mb: memory budget of one chunk.

    Returns:
        ``(N, steps + 1)`` float32.

    Raises:
        ValueError: maps not of the images' size, bad targets, ``steps < 1``, a bad baseline.

    Example:
        >>> net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 2))
        >>> deletion_curve(net, torch.rand(2, 3, 8, 8), torch.rand(2, 8, 8), steps=4).shape
        torch.Size([2, 5])
    """
    return _faithfulness_curve(model, images, maps, targets, False, steps, baseline, score, max_memory_mb)


def insertion_curve(
    model: nn.Module,
    images: torch.Tensor,
    maps: torch.Tensor,
    targets: Targets = "predicted",
    *,
    steps: int = 32,
    baseline: Baseline = "blur",
    score: Score = softmax_score,
    max_memory_mb: float = 1024.0,
) -> torch.Tensor:
    """The target's score as the most attributed pixels are put into ``baseline`` (default a blurred copy).

    The reverse of :func:`deletion_curve` (same arguments): step 0 is the baseline image, step
    ``steps`` the image itself.

    Returns:
        ``(N, steps + 1)`` float32.

    Example:
        >>> net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 2))
        >>> insertion_curve(net, torch.rand(2, 3, 8, 8), torch.rand(2, 8, 8), steps=4).shape
        torch.Size([2, 5])
    """
    return _faithfulness_curve(model, images, maps, targets, True, steps, baseline, score, max_memory_mb)


def auc(curve: torch.Tensor) -> torch.Tensor:
    """Area under ``(N, K + 1)`` curves sampled at fractions ``0, 1/K, ..., 1`` (trapezoid rule).

    Example:
        >>> auc(torch.tensor([[1.0, 0.5, 0.0], [1.0, 1.0, 1.0]]))
        tensor([0.5000, 1.0000])
    """
    return torch.trapezoid(curve, dx=1.0 / (curve.shape[-1] - 1), dim=-1)


def deletion_auc(
    model: nn.Module,
    images: torch.Tensor,
    maps: torch.Tensor,
    targets: Targets = "predicted",
    *,
    steps: int = 32,
    baseline: Baseline = 0.0,
    score: Score = softmax_score,
    max_memory_mb: float = 1024.0,
) -> torch.Tensor:
    """Deletion score per image: :func:`auc` of :func:`deletion_curve` (same arguments). Lower is more faithful.

    Returns:
        ``(N,)`` float32 in ``[0, 1]`` for probability scores.

    Example:
        >>> net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 2))
        >>> x = torch.rand(2, 3, 8, 8)
        >>> deletion_auc(net, x, random_map(x), steps=4).shape
        torch.Size([2])
    """
    return auc(deletion_curve(model, images, maps, targets, steps=steps, baseline=baseline, score=score, max_memory_mb=max_memory_mb))


def insertion_auc(
    model: nn.Module,
    images: torch.Tensor,
    maps: torch.Tensor,
    targets: Targets = "predicted",
    *,
    steps: int = 32,
    baseline: Baseline = "blur",
    score: Score = softmax_score,
    max_memory_mb: float = 1024.0,
) -> torch.Tensor:
    """Insertion score per image: :func:`auc` of :func:`insertion_curve` (same arguments). Higher is more faithful.

    Returns:
        ``(N,)`` float32.

    Example:
        >>> net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 2))
        >>> x = torch.rand(2, 3, 8, 8)
        >>> insertion_auc(net, x, random_map(x), steps=4).shape
        torch.Size([2])
    """
    return auc(insertion_curve(model, images, maps, targets, steps=steps, baseline=baseline, score=score, max_memory_mb=max_memory_mb))


@dataclass(frozen=True)
class Faithfulness:
    """What :func:`faithfulness_scores` returns: deletion and insertion scores of every map of an ``Attribution``.

    Attributes:
        columns: ``(method, layer)`` of each map, in the ``Attribution``'s order.
        deletion: ``(M, N)`` float32 deletion AUC per map and image (lower is more faithful).
        insertion: ``(M, N)`` float32 insertion AUC per map and image (higher is more faithful).
        random_deletion: ``(N,)`` the scores of a random map (:func:`random_map`), the baseline.
        random_insertion: ``(N,)``.
        steps: points of each curve minus one.
    """

    columns: List[Tuple[str, Optional[str]]]
    deletion: torch.Tensor
    insertion: torch.Tensor
    random_deletion: torch.Tensor
    random_insertion: torch.Tensor
    steps: int

    def cpu(self) -> "Faithfulness":
        """The same scores detached on the CPU."""
        moved = {f: getattr(self, f).detach().cpu() for f in ("deletion", "insertion", "random_deletion", "random_insertion")}
        return dataclasses.replace(self, **moved)


def faithfulness_scores(
    model: nn.Module,
    images: torch.Tensor,
    attribution: Any,
    *,
    steps: int = 16,
    seed: int = 0,
    max_memory_mb: float = 1024.0,
) -> Faithfulness:
    """Deletion and insertion AUC of every map of ``attribution`` (``methods.attribute``), and of a random map.

    Each map is scored for the class it explains (``attribution.targets``); the maps of all methods
    and the random baseline go through :func:`deletion_auc` (pixels to 0) and :func:`insertion_auc`
    (pixels into a blurred copy) as one batch each.

    Args:
        model: the network the maps explain.
        images: ``(N, C, H, W)`` the images they explain, on the model's device.
        attribution: what ``attribute(model, images, ...)`` returned.
        steps: points per curve minus one.
        seed: seed of the random map.
        max_memory_mb: memory budget of one chunk of perturbed images.

    Returns:
        A :class:`Faithfulness`.

    Example:
        >>> from tb_viz_plugin.methods.attribution import attribute
        >>> net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 2))
        >>> x = torch.rand(2, 3, 8, 8)
        >>> scores = faithfulness_scores(net, x, attribute(net, x, ["grad_cam", "saliency"]), steps=4)
        >>> scores.deletion.shape, scores.random_insertion.shape, [m for m, _ in scores.columns]
        (torch.Size([2, 2]), torch.Size([2]), ['grad_cam', 'saliency'])
    """
    n = images.shape[0]
    device = images.device
    maps = [entry.values.to(device).float() for entry in attribution.maps] + [random_map(images, seed)]
    stacked = torch.cat(maps)  # ((M + 1) * N, H, W)
    repeated = images.detach().repeat(len(maps), 1, 1, 1)
    targets = attribution.targets.to(device).repeat(len(maps))
    options = dict(steps=steps, max_memory_mb=max_memory_mb)
    deletion = deletion_auc(model, repeated, stacked, targets, **options).view(len(maps), n)
    insertion = insertion_auc(model, repeated, stacked, targets, **options).view(len(maps), n)
    return Faithfulness(
        columns=[(entry.method, entry.layer) for entry in attribution.maps],
        deletion=deletion[:-1],
        insertion=insertion[:-1],
        random_deletion=deletion[-1],
        random_insertion=insertion[-1],
        steps=steps,
    )
