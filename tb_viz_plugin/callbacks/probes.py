"""Probe images: a fixed, deterministic selection of validation samples shared by the callbacks.

Chosen once (evenly spaced over the validation set, no RNG involved), kept as plain indices in
the callback's ``state_dict`` so a resumed run explains the same images.
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F

from tb_viz_plugin.methods.classes import class_name
from tb_viz_plugin.methods.model_io import ModelIO, split_sample


def evenly_spaced(length: int, count: int) -> List[int]:
    """``count`` indices spread evenly over ``range(length)`` (all of them when ``count >= length``)."""
    if length <= 0:
        return []
    if count >= length:
        return list(range(length))
    return [int(round(i * (length - 1) / max(count - 1, 1))) for i in range(count)] if count > 1 else [0]


def probe_captions(
    indices: Sequence[int], labels: Optional[Sequence[int]], class_names: Optional[Sequence[str]] = None
) -> List[str]:
    """``"val #<index> (<class name>)"`` per probe image; ``(label N)`` without class names, nothing without labels.

    Example:
        >>> probe_captions([3, 9], [1, 7], ["cat", "dog"]), probe_captions([3], [2]), probe_captions([3], None)
        (['val #3 (dog)', 'val #9 (class 7)'], ['val #3 (label 2)'], ['val #3'])
    """
    if labels is None:
        return [f"val #{index}" for index in indices]
    return [
        f"val #{index} ({class_name(int(label), class_names) if class_names else f'label {int(label)}'})"
        for index, label in zip(indices, labels)
    ]


def first_val_loader(trainer: Any) -> Any:
    """The trainer's first validation dataloader (of a list, tuple or dict of them), or ``None``."""
    loaders = trainer.val_dataloaders
    if isinstance(loaders, (list, tuple)):
        return loaders[0] if loaders else None
    if isinstance(loaders, dict):
        return next(iter(loaders.values()), None)
    return loaders


def validation_dataset(trainer: Any) -> Any:
    """The dataset behind the trainer's (first) validation dataloader.

    Raises:
        RuntimeError: no validation dataloader (probe images come from the validation set).
    """
    dataset = getattr(first_val_loader(trainer), "dataset", None)
    if dataset is None:
        raise RuntimeError(
            "probe images are taken from the validation set, but the Trainer has no validation "
            "dataloader; give the LightningModule a val_dataloader() or pass probe images explicitly"
        )
    return dataset


class ProbeImages:
    """A fixed set of validation samples (indices chosen once), loaded on demand.

    Args:
        num_images: how many samples.
        indices: explicit dataset indices instead of the evenly spaced default.
    """

    def __init__(self, num_images: int = 8, indices: Optional[Sequence[int]] = None) -> None:
        if indices is not None:
            indices = [int(i) for i in indices]
            if not indices or min(indices) < 0:
                raise ValueError(f"probe indices must be non-negative and non-empty, got {indices!r}")
            num_images = len(indices)
        if num_images < 1:
            raise ValueError(f"num_images must be >= 1, got {num_images}")
        self.num_images = num_images
        self.indices: Optional[List[int]] = indices

    def load(
        self, dataset: Any, device: torch.device, io: Optional[ModelIO] = None
    ) -> Tuple[torch.Tensor, Optional[torch.Tensor], List[int]]:
        """``(images (N, C, H, W) on device, labels (N, ...) or None, indices)``; picks indices on first use.

        Samples are read with ``io`` (see ``methods.model_io.split_sample``); labels are stacked
        as they are (class indices, multi-hot vectors, values or masks).

        Raises:
            IndexError: explicit indices past the end of the dataset.
        """
        if self.indices is None:
            self.indices = evenly_spaced(len(dataset), self.num_images)
        if self.indices and max(self.indices) >= len(dataset):
            raise IndexError(f"probe index {max(self.indices)} is out of range for a dataset of {len(dataset)}")
        images, labels = [], []
        for index in self.indices:
            image, label = split_sample(dataset[index], io)
            images.append(image)
            labels.append(label)
        batch = torch.stack(images).to(device)
        same = all(l is not None for l in labels) and len({tuple(l.shape) for l in labels}) == 1
        label_tensor = torch.stack(labels).to(device) if same else None
        return batch, label_tensor, list(self.indices)

    def state_dict(self) -> Dict[str, Any]:
        return {"indices": None if self.indices is None else list(self.indices)}

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        if state.get("indices") is not None:
            self.indices = [int(i) for i in state["indices"]]


def load_shrunk(
    dataset: Any, indices: Sequence[int], max_side: int, chunk: int = 256, io: Optional[ModelIO] = None
) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
    """The samples at ``indices`` on the CPU, shrunk (antialiased) so their longer side is at most ``max_side``.

    Loaded ``chunk`` samples at a time, so only the shrunk copies of many samples are held at once
    (e.g. the thumbnails of the ``Embeddings`` callback's subset).

    Returns:
        ``(images (N, C, h, w) float32, labels (N,) or None)``.

    Example:
        >>> data = [(torch.rand(3, 64, 32), i % 2) for i in range(5)]
        >>> images, labels = load_shrunk(data, [0, 2, 4], max_side=16)
        >>> tuple(images.shape), labels.tolist()
        ((3, 3, 16, 8), [0, 0, 0])
    """
    shrunk, labels = [], []
    for start in range(0, len(indices), chunk):
        images, part, _ = ProbeImages(indices=indices[start : start + chunk]).load(dataset, torch.device("cpu"), io)
        images = images.float()
        scale = max_side / max(images.shape[-2:])
        if scale < 1:
            size = (max(1, round(images.shape[-2] * scale)), max(1, round(images.shape[-1] * scale)))
            images = F.interpolate(images, size=size, mode="bilinear", antialias=True, align_corners=False)
        shrunk.append(images)
        labels.append(part)
    all_labels = None if any(part is None for part in labels) else torch.cat(labels)
    return torch.cat(shrunk), all_labels
