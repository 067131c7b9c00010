"""Occlusion sensitivity (Zeiler & Fergus 2014): how much the target probability drops under a sliding window."""

from __future__ import annotations

import math
import weakref
from typing import Any, Callable, Dict, Optional, Sequence, Tuple, Union

import torch
from torch import nn

from tb_viz_plugin.methods.attribution.hooks import is_leaf, trace_modules

_MB = 1 << 20


def _pair(value: Union[int, Sequence[int]], name: str) -> Tuple[int, int]:
    pair = (value, value) if isinstance(value, int) else tuple(value)
    if len(pair) != 2 or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in pair):
        raise ValueError(f"occlusion {name} must be a positive int or a pair of them, got {value!r}")
    return pair  # type: ignore[return-value]


def window_starts(size: int, window: int, stride: int) -> range:
    """Start offsets of a window sliding over ``size`` pixels; the last one is clipped at the border.

    ``ceil((size - window) / stride) + 1`` positions, as captum's ``Occlusion`` places them.

    Example:
        >>> list(window_starts(10, 4, 4))  # the last window covers pixels 8 and 9 only
        [0, 4, 8]
    """
    return range(0, (math.ceil((size - window) / stride) + 1) * stride, stride)


def _cover(size: int, window: int, stride: int, device: torch.device) -> torch.Tensor:
    """``(positions, size)`` float 0/1: which pixels of one axis each window position covers."""
    starts = torch.tensor(list(window_starts(size, window, stride)), device=device)
    pixels = torch.arange(size, device=device)
    return ((pixels >= starts[:, None]) & (pixels < starts[:, None] + window)).float()


_ACTIVATION_BYTES: "weakref.WeakKeyDictionary[nn.Module, Dict[Tuple[Any, ...], int]]" = weakref.WeakKeyDictionary()


def chunk_size(model: nn.Module, images: torch.Tensor, max_memory_mb: float) -> int:
    """How many images to send through ``model`` at once within ``max_memory_mb`` of activations.

    The memory of one image is measured by a no-grad forward pass of one image: its input plus the
    outputs of every leaf module (an upper bound; without gradients most are freed during the
    pass). Measured once per model, image shape, dtype and device (a one-image pass is slow on CPU).

    Example:
        >>> net = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU())  # 3 KiB input + 2 x 8 KiB outputs per image
        >>> chunk_size(net, torch.zeros(4, 3, 16, 16), max_memory_mb=1.0)
        53
    """
    key = (tuple(images.shape[1:]), images.dtype, images.device)
    known = _ACTIVATION_BYTES.setdefault(model, {})
    if key not in known:
        calls, _ = trace_modules(model, images[:1].detach())
        known[key] = images[0].nbytes + sum(
            c.output.nbytes for c in calls if isinstance(c.output, torch.Tensor) and is_leaf(c.module)
        )
    return max(1, int(max_memory_mb * _MB // known[key]))


def occlusion_maps(
    model: nn.Module,
    images: torch.Tensor,
    targets: torch.Tensor,
    *,
    window: Optional[Union[int, Sequence[int]]] = None,
    stride: Optional[Union[int, Sequence[int]]] = None,
    baseline: Union[float, torch.Tensor] = 0.0,
    max_memory_mb: float = 1024.0,
    score: Optional[Callable[[torch.Tensor], torch.Tensor]] = None,
) -> torch.Tensor:
    """Occlusion sensitivity maps: the drop of each image's target probability when a window is covered.

    A ``window`` of ``baseline`` values slides over each image with ``stride``; every occluded
    image goes through the model (no gradients) and its softmax probability of the target class
    is compared with the unoccluded one. A pixel's value is the mean drop over the windows that
    cover it, so ``p(x) - map`` is the probability with that region hidden ("the probability of
    the class as the grey square slides", Zeiler & Fergus). Same windows, strides and per-pixel
    averaging as captum's ``Occlusion`` applied to the softmax output.

    The unoccluded and occluded images go through the model in chunks whose estimated activation
    memory (see :func:`chunk_size`) stays within ``max_memory_mb``.

    Args:
        model: the network (callers set eval mode).
        images: ``(N, C, H, W)``.
        targets: ``(N,)`` class indices.
        window: window size, an int or ``(h, w)``; default a quarter of the smaller image side.
        stride: step between windows (at most the window); default half the window.
        baseline: what covers the window: a number (0 = the dataset mean, grey, for normalised
            inputs) or a tensor broadcastable to ``(C, H, W)``.
        max_memory_mb: memory budget of one chunk of occluded images.
        score: outputs ``(B, K)`` -> what is compared, ``(B, K)``; default the softmax (a sigmoid
            per label for multi-label models, the values themselves for regression).

    Returns:
        ``(N, H, W)`` float32, signed (occluding may also raise the probability).

    Raises:
        ValueError: a window larger than the image, a stride larger than the window, a budget <= 0.

    Example:
        >>> net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 2))
        >>> occlusion_maps(net, torch.randn(2, 3, 16, 16), torch.tensor([0, 1]), window=4).shape
        torch.Size([2, 16, 16])
    """
    n, _, height, width = images.shape
    wy, wx = _pair(window if window is not None else max(1, min(height, width) // 4), "window")
    sy, sx = _pair(stride if stride is not None else (max(1, wy // 2), max(1, wx // 2)), "stride")
    if wy > height or wx > width:
        raise ValueError(f"occlusion window {(wy, wx)} is larger than the images {(height, width)}")
    if sy > wy or sx > wx:
        raise ValueError(f"occlusion stride {(sy, sx)} must not exceed the window {(wy, wx)} (pixels would be skipped)")
    if not max_memory_mb > 0:
        raise ValueError(f"occlusion max_memory_mb must be positive, got {max_memory_mb}")
    images = images.detach()
    rows, cols = _cover(height, wy, sy, images.device), _cover(width, wx, sx, images.device)
    windows = (rows[:, None, :, None] * cols[None, :, None, :]).flatten(0, 1).bool()  # (P, H, W)
    positions = windows.shape[0]
    # Job j < n is image j unoccluded (an empty window); job n + i is image i // P under window i % P.
    # The unoccluded images ride in the first chunk instead of costing a small forward pass of their own.
    windows = torch.cat([windows.new_zeros(1, height, width), windows])
    fill = torch.as_tensor(baseline, dtype=images.dtype, device=images.device)
    chunk = chunk_size(model, images, max_memory_mb)
    jobs = n * (positions + 1)
    probability = torch.empty(jobs, dtype=torch.float32, device=images.device)
    with torch.no_grad():
        for start in range(0, jobs, chunk):
            job = torch.arange(start, min(start + chunk, jobs), device=images.device)
            occluded = job >= n
            image = torch.where(occluded, (job - n) // positions, job)
            window = torch.where(occluded, (job - n) % positions + 1, 0)
            batch = torch.where(windows[window][:, None], fill, images[image])
            outputs = model(batch).float()
            outputs = outputs.softmax(1) if score is None else score(outputs)
            probability[start : start + len(job)] = outputs.gather(1, targets[image][:, None]).squeeze(1)
    drops = probability[:n, None] - probability[n:].view(n, positions)
    drops = drops.view(n, rows.shape[0], cols.shape[0])
    covered = rows.sum(0)[:, None] * cols.sum(0)[None, :]
    return torch.einsum("yh,nyx,xw->nhw", rows, drops, cols) / covered
