"""The demo's own pixel-labelled concepts for network dissection: each validation image's shape mask, per class."""

from __future__ import annotations

from typing import Any, Optional

import torch
import torch.nn.functional as F

from tb_viz_plugin.demo.data import CLASS_NAMES, ShapesDataset


class ShapeMasks:
    """``masks(batch, sample_ids) -> (N, 6, S, S)``: the shape's pixels in the channel of its class, per image.

    The user-masks source of ``NetworkDissection`` for the shapes demo: the masks come from the
    dataset by index (the callback passes dataset indices when the validation loader's order is
    known, as it is for the demo's unshuffled loader). Every image shows exactly one shape, so the
    category ``"shape"`` is annotated on every image.

    Args:
        dataset: the validation :class:`~tb_viz_plugin.demo.data.ShapesDataset`.
        size: side of the masks (nearest-neighbour down-sampling); ``None`` = the image size.

    Example:
        >>> data = ShapesDataset(4, seed=0)
        >>> masks = ShapeMasks(data, size=32)(None, torch.arange(4))
        >>> masks.shape, masks.flatten(2).any(2).sum(1).tolist()
        (torch.Size([4, 6, 32, 32]), [1, 1, 1, 1])
    """

    names = list(CLASS_NAMES)
    categories = ["shape"] * len(CLASS_NAMES)

    def __init__(self, dataset: ShapesDataset, size: Optional[int] = None) -> None:
        self.dataset = dataset
        self.size = size

    def __call__(self, batch: Any, sample_ids: torch.Tensor) -> torch.Tensor:
        ids = sample_ids.detach().cpu().numpy()
        shape = torch.from_numpy(self.dataset.masks[ids])  # (N, H, W)
        labels = torch.from_numpy(self.dataset.labels[ids])
        masks = shape[:, None] & (labels.view(-1, 1, 1, 1) == torch.arange(len(CLASS_NAMES)).view(1, -1, 1, 1))
        if self.size is not None and masks.shape[-1] != self.size:
            masks = F.interpolate(masks.float(), size=(self.size, self.size), mode="nearest") > 0.5
        return masks
