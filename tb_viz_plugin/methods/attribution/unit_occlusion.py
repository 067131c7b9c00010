"""Occlusion at any unit (Zhou et al. 2015): where in the image a unit's activation comes from, measured.

A window of baseline values slides over each image and the drop of one unit's activation (a
channel of a layer, at a fixed feature-map position) is recorded for every window position. The
map of those drops is the unit's *discrepancy map*; the region where it is large is the unit's
*empirical* receptive field, usually much smaller than the theoretical one (every input pixel
with a path to the unit, :func:`~tb_viz_plugin.methods.activations.measure_layer`).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Optional, Sequence, Tuple, Union

import torch
from torch import nn

from tb_viz_plugin.methods.attribution.perturbation import _cover, _pair, chunk_size
from tb_viz_plugin.methods.layers import preserved_training_flags, resolve_layers


class _Reached(Exception):
    """Raised by the hook on the layer: the rest of the forward pass is not needed."""

    def __init__(self, output: Any) -> None:
        super().__init__("layer reached")
        self.output = output


def _layer_output(model: nn.Module, layer: str, images: torch.Tensor) -> torch.Tensor:
    """The output ``(N, C, h, w)`` of ``layer`` for ``images``, the forward pass stopped right after it."""

    def stop(module: nn.Module, inputs: Tuple[Any, ...], output: Any) -> None:
        raise _Reached(output)

    handle = model.get_submodule(layer).register_forward_hook(stop)
    try:
        model(images)
    except _Reached as reached:
        output = reached.output
    else:
        raise ValueError(f"layer {layer!r} did not run during the forward pass of {type(model).__name__}")
    finally:
        handle.remove()
    if not isinstance(output, torch.Tensor) or output.dim() != 4:
        shape = tuple(output.shape) if isinstance(output, torch.Tensor) else type(output).__name__
        raise ValueError(f"the output of layer {layer!r} is {shape}, not a feature map (N, C, H, W); choose a conv layer or block")
    return output


@dataclass(frozen=True)
class UnitOcclusion:
    """What :func:`unit_occlusion` returns.

    Attributes:
        maps: ``(N, U, H, W)`` float32 discrepancy maps: per input pixel, the mean drop of the
            unit's activation over the windows covering it (signed: occluding may also raise it).
        positions: ``(N, U, 2)`` the feature-map ``(row, column)`` each unit was read at.
        activations: ``(N, U)`` float32, each unit's activation there on the unoccluded image.
    """

    maps: torch.Tensor
    positions: torch.Tensor
    activations: torch.Tensor


def unit_occlusion(
    model: nn.Module,
    images: torch.Tensor,
    layer: str,
    units: Sequence[int],
    window: Optional[Union[int, Sequence[int]]] = None,
    stride: Optional[Union[int, Sequence[int]]] = None,
    *,
    positions: Optional[torch.Tensor] = None,
    baseline: Union[float, torch.Tensor] = 0.0,
    max_memory_mb: float = 1024.0,
) -> UnitOcclusion:
    """Discrepancy maps of ``units`` of ``layer`` on each image (Zhou et al. 2015, "Object detectors emerge").

    Every unit is read at one feature-map position per image: ``positions`` if given (e.g. where
    TopActivations found its maximum), else the position of its maximum on the unoccluded image.
    All units share the forward passes: one per image and window position, batched in chunks
    whose estimated activation memory stays within ``max_memory_mb`` (as class occlusion does),
    each stopped right after ``layer``. Windows, strides and the per-pixel average are those of
    :func:`~tb_viz_plugin.methods.attribution.perturbation.occlusion_maps`. A window partly
    covering the receptive field also lowers the unit, so the maps spread up to ``window - 1``
    pixels beyond it: keep the window small next to the receptive field.

    Runs in eval mode (every submodule's flag restored), without gradients, inside or outside
    ``torch.inference_mode()``.

    Args:
        model: the network; ``model(images)`` must run ``layer``.
        images: ``(N, C, H, W)`` on the model's device, e.g. a unit's top images.
        layer: module name whose output is a feature map ``(N, K, h, w)``.
        units: channel indices of that output.
        window: occluder size, int or ``(h, w)``; default ``max(1, min(H, W) // 16)``.
        stride: step between windows (at most the window); default half the window.
        positions: ``(N, U, 2)`` feature-map positions per image and unit; default the maxima.
        baseline: the occluder's value, a number (0 = the dataset mean for normalised inputs) or
            a tensor broadcastable to ``(C, H, W)``.
        max_memory_mb: memory budget of one chunk of occluded images.

    Returns:
        A :class:`UnitOcclusion`: maps ``(N, U, H, W)``, positions ``(N, U, 2)``, activations ``(N, U)``.

    Raises:
        LayerNotFoundError: an unknown layer name.
        ValueError: unit indices outside the layer's channels, positions of the wrong shape or
            outside the feature map, a window larger than the images, a stride larger than the
            window, a budget <= 0, a layer whose output is not a feature map.

    Example:
        >>> net = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 4, 3, padding=1))
        >>> result = unit_occlusion(net, torch.rand(2, 3, 16, 16), "1", [0, 3], window=2, stride=1)
        >>> result.maps.shape, result.positions.shape
        (torch.Size([2, 2, 16, 16]), torch.Size([2, 2, 2]))
    """
    if not isinstance(images, torch.Tensor) or images.dim() != 4:
        raise ValueError(f"images must be a batch (N, C, H, W), got {getattr(images, 'shape', type(images).__name__)}")
    (name,) = resolve_layers(model, layer, accept=lambda module: True, what="module")
    chosen = [int(u) for u in units]
    n, _, height, width = images.shape
    wy, wx = _pair(window if window is not None else max(1, min(height, width) // 16), "window")
    sy, sx = _pair(stride if stride is not None else (max(1, wy // 2), max(1, wx // 2)), "stride")
    if wy > height or wx > width or sy > wy or sx > wx or not max_memory_mb > 0:
        raise ValueError(
            f"unit occlusion needs a window within the images {(height, width)}, a stride within the window and "
            f"a positive memory budget; got window {(wy, wx)}, stride {(sy, sx)}, max_memory_mb {max_memory_mb}"
        )
    with preserved_training_flags(model), torch.no_grad():
        x = images.detach()
        reference = _layer_output(model, name, x)
        channels, fh, fw = reference.shape[1:]
        if not chosen or min(chosen) < 0 or max(chosen) >= channels:
            raise ValueError(f"units must be a non-empty list of channel indices in [0, {channels}) of layer {name!r}, got {chosen}")
        index = torch.tensor(chosen, device=x.device)
        maps = reference[:, index].float()  # (N, U, h, w)
        if positions is None:
            flat = maps.flatten(2).argmax(2)
            where = torch.stack([flat // fw, flat % fw], dim=2)
        else:
            where = torch.as_tensor(positions, device=x.device).long()
            if where.shape != (n, len(chosen), 2) or (where < 0).any() or (where[..., 0] >= fh).any() or (where[..., 1] >= fw).any():
                raise ValueError(
                    f"positions must be (N, U, 2) = {(n, len(chosen), 2)} feature-map indices within {(fh, fw)}, "
                    f"got {tuple(where.shape)}"
                )
        rows_at, cols_at = where[..., 0], where[..., 1]
        activations = maps.flatten(2).gather(2, (rows_at * fw + cols_at).unsqueeze(2)).squeeze(2)  # (N, U)
        rows, cols = _cover(height, wy, sy, x.device), _cover(width, wx, sx, x.device)
        windows = (rows[:, None, :, None] * cols[None, :, None, :]).flatten(0, 1).bool()  # (P, H, W)
        count = windows.shape[0]
        fill = torch.as_tensor(baseline, dtype=x.dtype, device=x.device)
        chunk = chunk_size(model, x, max_memory_mb)
        occluded = torch.empty(n * count, len(chosen), dtype=torch.float32, device=x.device)
        for start in range(0, n * count, chunk):
            job = torch.arange(start, min(start + chunk, n * count), device=x.device)
            image, position = job // count, job % count
            out = _layer_output(model, name, torch.where(windows[position][:, None], fill, x[image]))
            read = out[torch.arange(len(job), device=x.device)[:, None], index[None, :], rows_at[image], cols_at[image]]
            occluded[start : start + len(job)] = read.float()
    drops = (activations[:, None, :] - occluded.view(n, count, len(chosen))).view(n, rows.shape[0], cols.shape[0], -1)
    covered = rows.sum(0)[:, None] * cols.sum(0)[None, :]
    return UnitOcclusion(
        maps=torch.einsum("yh,nyxu,xw->nuhw", rows, drops, cols) / covered, positions=where, activations=activations
    )


def empirical_rf_size(maps: torch.Tensor, threshold: float = 0.5) -> torch.Tensor:
    """Height and width of each discrepancy map's region above ``threshold`` times its maximum.

    The bounding box of the pixels whose value is at least ``threshold * max`` (Zhou et al. 2015
    threshold their discrepancy maps the same way), comparable with the theoretical size
    :attr:`~tb_viz_plugin.methods.activations.ReceptiveField.size`. A layer's mean empirical size
    is ``sizes.flatten(0, -2).nanmean(0)``.

    Args:
        maps: ``(..., H, W)`` discrepancy maps (e.g. ``UnitOcclusion.maps``).
        threshold: fraction of each map's maximum, in ``(0, 1]``.

    Returns:
        ``(..., 2)`` float32 ``(height, width)`` in pixels; NaN for a map whose maximum is not
        positive (occluding never lowered that unit).

    Raises:
        ValueError: a threshold outside ``(0, 1]`` or maps with fewer than 2 dimensions.

    Example:
        >>> m = torch.zeros(1, 8, 8); m[0, 2:5, 1:3] = 1.0; m[0, 3, 2] = 2.0
        >>> empirical_rf_size(m, threshold=0.5), empirical_rf_size(m, threshold=0.8)
        (tensor([[3., 2.]]), tensor([[1., 1.]]))
    """
    if not 0 < threshold <= 1:
        raise ValueError(f"threshold must lie in (0, 1], got {threshold}")
    if maps.dim() < 2:
        raise ValueError(f"maps must be (..., H, W), got {tuple(maps.shape)}")
    values = maps.detach().float()
    peak = values.flatten(-2).amax(-1)
    above = values >= threshold * peak[..., None, None]
    sizes = []
    for axis in (-1, -2):  # rows: any pixel above in the row (reduce the columns), then the columns
        hit = above.any(axis)
        index = torch.arange(hit.shape[-1], device=hit.device, dtype=torch.float32)
        first = torch.where(hit, index, float("inf")).amin(-1)
        last = torch.where(hit, index, -float("inf")).amax(-1)
        sizes.append(last - first + 1)
    size = torch.stack(sizes, -1)
    return torch.where((peak > 0)[..., None], size, torch.full_like(size, float("nan")))


@dataclass(frozen=True)
class TopKOcclusion:
    """What :func:`top_k_occlusion` returns: each top-k entry's discrepancy map over its crop.

    Attributes:
        maps: ``(U, k, h, w)`` float32 discrepancy maps over the crops (zeros for empty entries).
        sizes: ``(U, k, 2)`` float32 empirical receptive-field ``(height, width)`` in pixels
            (:func:`empirical_rf_size`); NaN for empty entries and units that never dropped.
        window: ``(h, w)`` of the occluder; stride: ``(rows, columns)`` between windows.
        threshold: the fraction of each map's maximum that bounds the empirical field.
    """

    maps: torch.Tensor
    sizes: torch.Tensor
    window: Tuple[int, int]
    stride: Tuple[int, int]
    threshold: float = 0.5

    def cpu(self) -> "TopKOcclusion":
        """The same result with the tensors detached on the CPU (what the writers take)."""
        return replace(self, maps=self.maps.detach().cpu(), sizes=self.sizes.detach().cpu())


def _paste(fill: torch.Tensor, patches: torch.Tensor, origins: torch.Tensor, size: Tuple[int, int]) -> torch.Tensor:
    """Canvases ``(B, C, H, W)`` of ``fill`` with ``patches`` ``(B, C, h, w)`` at top-left ``origins`` ``(B, 2)``."""
    count, channels, height, width = patches.shape
    canvas = fill.to(patches.dtype).expand(count, channels, *size).clone()
    rows = origins[:, 0, None] + torch.arange(height, device=patches.device)
    cols = origins[:, 1, None] + torch.arange(width, device=patches.device)
    entry = torch.arange(count, device=patches.device)[:, None, None]
    canvas.permute(0, 2, 3, 1)[entry, rows[:, :, None], cols[:, None, :]] = patches.permute(0, 2, 3, 1)
    return canvas


def top_k_occlusion(
    model: nn.Module,
    top: Any,
    *,
    k: Optional[int] = None,
    window: Optional[Union[int, Sequence[int]]] = None,
    stride: Optional[Union[int, Sequence[int]]] = None,
    baseline: float = 0.0,
    threshold: float = 0.5,
    max_memory_mb: float = 1024.0,
) -> TopKOcclusion:
    """Unit occlusion of a top-k (``methods.top_k.UnitTopK``): each unit's empirical receptive field on its top images.

    Each entry's crop (the unit's theoretical receptive field, where the top-k found its maximum)
    is put on a canvas of ``baseline`` values the size of the images, at the crop's place: the unit
    reads only pixels of its receptive field, so its activation there is the one on the whole
    image, and the crops are all the top-k keeps. The occluder then slides over the crop only, and
    the unit is read at the top-k's position. All entries and window positions share batched
    forward passes (chunks within ``max_memory_mb``), each stopped right after the layer; eval mode,
    no gradients, every flag restored.

    Args:
        model: the network the top-k was streamed through.
        top: a ``UnitTopK`` on the model's device.
        k: the first ``k`` ranks of each unit (default all).
        window: occluder size over the crop; default an eighth of the crop's sides (at least 1).
        stride: default the window (an 8 x 8 grid of positions over the crop).
        baseline: the occluder's value (and the canvas's), e.g. 0 = the mean of normalised inputs.
        threshold: fraction of a map's maximum that bounds the empirical receptive field.
        max_memory_mb: memory budget of one chunk of occluded images.

    Returns:
        A :class:`TopKOcclusion` with maps ``(U, k, h, w)`` and sizes ``(U, k, 2)``.

    Raises:
        ValueError: ``k < 1``, a window larger than the crop or a stride larger than the window.

    Example:
        >>> from tb_viz_plugin.methods import top_activations
        >>> net = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 4, 3, padding=1))
        >>> top = top_activations(net, [torch.rand(6, 3, 16, 16)], ["2"], units=2, k=3)["2"]
        >>> result = top_k_occlusion(net, top, window=1)
        >>> result.maps.shape, result.sizes.shape, top.geometry.crop_size
        (torch.Size([2, 3, 5, 5]), torch.Size([2, 3, 2]), (5, 5))
    """
    geometry = top.geometry
    count, ranks = top.values.shape
    k = ranks if k is None else int(k)
    if k < 1:
        raise ValueError(f"unit occlusion needs k >= 1, got {k}")
    k = min(k, ranks)
    height, width = geometry.crop_size
    wy, wx = _pair(window if window is not None else (max(1, -(-height // 8)), max(1, -(-width // 8))), "window")
    sy, sx = _pair(stride if stride is not None else (wy, wx), "stride")
    if wy > height or wx > width or sy > wy or sx > wx:
        raise ValueError(
            f"unit occlusion needs a window within the crop {(height, width)} and a stride within the window; "
            f"got window {(wy, wx)}, stride {(sy, sx)}"
        )
    device = top.values.device
    crops = top.crops[:, :k].flatten(0, 1)  # (M, C, h, w)
    units = top.units.to(device).repeat_interleave(k)
    positions = top.positions[:, :k].flatten(0, 1)
    origins = geometry.crop_origins(positions)
    valid = (top.sample_ids[:, :k].flatten() >= 0).nonzero().flatten()
    rows, cols = _cover(height, wy, sy, device), _cover(width, wx, sx, device)
    windows = (rows[:, None, :, None] * cols[None, :, None, :]).flatten(0, 1).bool()  # (P, h, w)
    maps = torch.zeros(count * k, height, width, device=device)
    with preserved_training_flags(model), torch.no_grad():
        fill = torch.tensor(float(baseline), device=device)
        chunk = chunk_size(model, crops[:1].new_zeros(1, crops.shape[1], *geometry.image_size), max_memory_mb)

        def read(entry: torch.Tensor, patches: torch.Tensor) -> torch.Tensor:
            out = _layer_output(model, top.layer, _paste(fill, patches, origins[entry], geometry.image_size))
            at = positions[entry]
            return out[torch.arange(len(entry), device=device), units[entry], at[:, 0], at[:, 1]].float()

        reference = torch.cat([read(part, crops[part]) for part in valid.split(chunk)]) if len(valid) else valid.float()
        jobs, places = len(valid) * windows.shape[0], windows.shape[0]
        drops = torch.empty(jobs, device=device)
        for start in range(0, jobs, chunk):
            job = torch.arange(start, min(start + chunk, jobs), device=device)
            entry, place = valid[job // places], job % places
            occluded = torch.where(windows[place][:, None], fill, crops[entry])
            drops[start : start + len(job)] = reference[job // places] - read(entry, occluded)
    covered = rows.sum(0)[:, None] * cols.sum(0)[None, :]
    grid = drops.view(len(valid), rows.shape[0], cols.shape[0])
    maps[valid] = torch.einsum("yh,nyx,xw->nhw", rows, grid, cols) / covered
    sizes = empirical_rf_size(maps, threshold)
    sizes[(top.sample_ids[:, :k].flatten() < 0)] = float("nan")
    return TopKOcclusion(
        maps=maps.view(count, k, height, width), sizes=sizes.view(count, k, 2), window=(wy, wx), stride=(sy, sx),
        threshold=float(threshold),
    )
