"""Gathering every rank's shard of a result under DDP: one helper for every callback that gathers.

A shard is a dict of named tensors: the same names, dtypes and number of dimensions on every rank
(the same code made them), the sizes free to differ. :func:`gather_shards` exchanges all of them
in three collectives whatever their number: the sizes, then every floating tensor packed into one
flat float32 tensor, then every integer tensor packed into one flat int64 tensor (both padded to
the longest rank).
"""

from __future__ import annotations

from typing import Dict, List, Mapping, Tuple

import torch

Shard = Mapping[str, torch.Tensor]
"""One rank's part of a result: named tensors."""


def all_gather(tensor: torch.Tensor, world_size: int) -> torch.Tensor:
    """``(world_size, *tensor.shape)``: every rank's ``tensor``; a collective, every rank must call it.

    A plain ``torch.distributed.all_gather`` (same shape on every rank). ``LightningModule.all_gather``
    goes through the autograd-aware ``torch.distributed.nn`` version; with it, a spawned gloo rank
    sometimes aborted at exit after ``trainer.validate()`` ("terminate called without an active
    exception", 5 of 39 runs of the DDP test; none of 40 with this one).
    """
    import torch.distributed as dist

    parts = [torch.empty_like(tensor) for _ in range(world_size)]
    dist.all_gather(parts, tensor.contiguous())
    return torch.stack(parts)


def _is_float(tensor: torch.Tensor) -> bool:
    return tensor.is_floating_point() or tensor.is_complex()


def pack(shard: Shard) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(shapes, floats, ints)``: the shard's shapes (int64, flat) and its tensors packed flat, in name order.

    Example:
        >>> shapes, floats, ints = pack({"ids": torch.arange(3), "values": torch.ones(2, 2)})
        >>> shapes.tolist(), floats.tolist(), ints.tolist()
        ([3, 2, 2], [1.0, 1.0, 1.0, 1.0], [0, 1, 2])
    """
    names = sorted(shard)
    tensors = [shard[name].detach() for name in names]
    device = tensors[0].device if tensors else torch.device("cpu")
    shapes = torch.tensor([size for t in tensors for size in t.shape], dtype=torch.long, device=device)
    floats = [t.float().flatten() for t in tensors if _is_float(t)]
    ints = [t.long().flatten() for t in tensors if not _is_float(t)]
    empty_float, empty_int = torch.zeros(0, device=device), torch.zeros(0, dtype=torch.long, device=device)
    return shapes, torch.cat(floats) if floats else empty_float, torch.cat(ints) if ints else empty_int


def unpack(like: Shard, shapes: torch.Tensor, floats: torch.Tensor, ints: torch.Tensor) -> Dict[str, torch.Tensor]:
    """One rank's :func:`pack` output back into named tensors, with the dtypes and dimensions of ``like``.

    Example:
        >>> shard = {"ids": torch.arange(3), "values": torch.ones(2, 2)}
        >>> back = unpack(shard, *pack(shard))
        >>> back["ids"].tolist(), back["values"].shape
        ([0, 1, 2], torch.Size([2, 2]))
    """
    out: Dict[str, torch.Tensor] = {}
    dims, offsets = 0, {True: 0, False: 0}
    for name in sorted(like):
        template = like[name]
        shape = [int(s) for s in shapes[dims : dims + template.dim()]]
        dims += template.dim()
        numel = 1
        for size in shape:
            numel *= size
        kind = _is_float(template)
        flat = floats if kind else ints
        out[name] = flat[offsets[kind] : offsets[kind] + numel].view(shape).to(template.dtype)
        offsets[kind] += numel
    return out


def _padded(flat: torch.Tensor, length: int) -> torch.Tensor:
    out = flat.new_zeros(length)
    out[: len(flat)] = flat
    return out


def gather_shards(shard: Shard, world_size: int) -> List[Dict[str, torch.Tensor]]:
    """Every rank's shard, in rank order, on every rank; a collective: every rank must call it.

    Args:
        shard: this rank's named tensors (same names, dtypes and dimensions on every rank).
        world_size: the number of ranks.

    Returns:
        ``world_size`` dicts of tensors on this rank's device, dtypes as in ``shard``.
    """
    shapes, floats, ints = pack(shard)
    sizes = torch.tensor([len(floats), len(ints)], dtype=torch.long, device=shapes.device)
    header = all_gather(torch.cat([sizes, shapes]), world_size).cpu()
    longest_float, longest_int = int(header[:, 0].max()), int(header[:, 1].max())
    all_floats = all_gather(_padded(floats, longest_float), world_size)
    all_ints = all_gather(_padded(ints, longest_int), world_size)
    return [
        unpack(shard, header[rank, 2:], all_floats[rank, : int(header[rank, 0])], all_ints[rank, : int(header[rank, 1])])
        for rank in range(world_size)
    ]
