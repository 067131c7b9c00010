"""Pixel-labelled concepts for network dissection: the 11 basic colour terms, and several sources as one.

A concept source is a callable ``images (N, C, H, W) -> masks (N, K, H', W')`` (bool) with its
concept names in ``.names`` (K strings) and, optionally, ``.categories`` (K strings, the category
of each concept: the partial-mask rule counts a concept's union only on images where its category
is annotated). :class:`ColorConcepts` labels every pixel with one of the 11 basic colour terms,
from its colour alone, so it works on any image dataset.
"""

from __future__ import annotations

from typing import Callable, List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F

COLOR_NAMES = ("black", "blue", "brown", "green", "grey", "orange", "pink", "purple", "red", "white", "yellow")
"""The 11 basic colour terms (Berlin and Kay), in alphabetical order: the concepts of :class:`ColorConcepts`."""

_PROTOTYPES = torch.tensor(
    [
        [0.00, 0.00, 0.00],  # black
        [0.10, 0.25, 0.90],  # blue
        [0.50, 0.30, 0.12],  # brown
        [0.10, 0.65, 0.15],  # green
        [0.50, 0.50, 0.50],  # grey
        [1.00, 0.55, 0.05],  # orange
        [1.00, 0.60, 0.75],  # pink
        [0.55, 0.15, 0.65],  # purple
        [0.90, 0.10, 0.10],  # red
        [1.00, 1.00, 1.00],  # white
        [0.95, 0.90, 0.10],  # yellow
    ]
)
"""A typical sRGB colour of each term in ``COLOR_NAMES``; a pixel gets the nearest one in CIE Lab."""


def srgb_to_lab(rgb: torch.Tensor) -> torch.Tensor:
    """sRGB in ``[0, 1]`` ``(..., 3)`` to CIE L*a*b* (D65) ``(..., 3)``.

    Example:
        >>> [round(v, 1) + 0.0 for v in srgb_to_lab(torch.tensor([1.0, 1.0, 0.0])).tolist()]
        [97.1, -21.6, 94.5]
    """
    rgb = rgb.float().clamp(0, 1)
    linear = torch.where(rgb <= 0.04045, rgb / 12.92, ((rgb + 0.055) / 1.055) ** 2.4)
    to_xyz = torch.tensor(
        [[0.4124, 0.3576, 0.1805], [0.2126, 0.7152, 0.0722], [0.0193, 0.1192, 0.9505]], device=rgb.device
    )
    xyz = linear @ to_xyz.T / torch.tensor([0.95047, 1.0, 1.08883], device=rgb.device)
    f = torch.where(xyz > (6 / 29) ** 3, xyz.clamp(min=1e-12) ** (1 / 3), xyz / (3 * (6 / 29) ** 2) + 4 / 29)
    return torch.stack([116 * f[..., 1] - 16, 500 * (f[..., 0] - f[..., 1]), 200 * (f[..., 1] - f[..., 2])], dim=-1)


class ColorConcepts:
    """The 11 basic colour terms as concepts: each pixel is labelled with the nearest colour term.

    The nearest of a typical colour per term (``_PROTOTYPES``) in CIE Lab, as Broden's colour labels
    assign every pixel one colour name. Exactly one concept is present at every pixel, so the
    category (``"color"``) is annotated on every image.

    Args:
        to_rgb: model inputs -> RGB ``(N, 3, H, W)`` in ``[0, 1]`` (e.g. un-normalising, the same
            function the other views take); ``None``: the inputs are RGB in ``[0, 1]``.
        size: ``(H', W')`` of the masks (nearest-neighbour down-sampling of the labels, which bounds
            the cost of dissection for large images); ``None`` = the image size.

    Raises:
        ValueError: (when called) images that are not RGB and no ``to_rgb``.

    Example:
        >>> concepts = ColorConcepts()
        >>> images = torch.zeros(1, 3, 2, 2); images[0, 0, 0, 0] = 1.0  # one red pixel on black
        >>> masks = concepts(images)
        >>> masks.shape, [concepts.names[k] for k in masks[0, :, 0, 0].nonzero()[:, 0]], concepts.names[masks[0, :, 1, 1].float().argmax()]
        (torch.Size([1, 11, 2, 2]), ['red'], 'black')
    """

    def __init__(self, to_rgb: Optional[Callable[[torch.Tensor], torch.Tensor]] = None, size: Optional[Tuple[int, int]] = None) -> None:
        self.to_rgb = to_rgb
        self.size = tuple(size) if size is not None else None
        self.names: List[str] = list(COLOR_NAMES)
        self.categories: List[str] = ["color"] * len(COLOR_NAMES)

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        rgb = self.to_rgb(images.detach()) if self.to_rgb is not None else images.detach()
        if rgb.dim() != 4 or rgb.shape[1] != 3:
            raise ValueError(f"colour concepts need RGB images (N, 3, H, W) (or a to_rgb), got {tuple(rgb.shape)}")
        if self.size is not None and tuple(rgb.shape[2:]) != self.size:
            rgb = F.interpolate(rgb.float(), size=self.size, mode="nearest")
        lab = srgb_to_lab(rgb.permute(0, 2, 3, 1))  # (N, H, W, 3)
        prototypes = srgb_to_lab(_PROTOTYPES.to(lab.device))
        nearest = torch.cdist(lab.flatten(1, 2), prototypes[None].expand(len(lab), -1, -1)).argmin(dim=2)
        labels = nearest.view(lab.shape[:3])
        return F.one_hot(labels, len(COLOR_NAMES)).permute(0, 3, 1, 2).bool()

    def __repr__(self) -> str:
        return f"ColorConcepts(to_rgb={getattr(self.to_rgb, '__name__', self.to_rgb)!r}, size={self.size})"


color_concepts = ColorConcepts()
"""The colour concepts of RGB images in ``[0, 1]`` (``ColorConcepts(to_rgb=...)`` for normalised inputs)."""


def concept_names(source: object, names: Optional[Sequence[str]] = None) -> Tuple[List[str], List[str]]:
    """``(names, categories)`` of a concept source: ``names`` or its ``.names``; its ``.categories`` or ``"concept"``.

    Raises:
        ValueError: no names, or categories of another length.
    """
    found = list(names) if names is not None else list(getattr(source, "names", None) or [])
    if not found or not all(isinstance(n, str) for n in found):
        raise ValueError(f"concept names are needed: give the masks' source a .names list of strings, or pass names= (got {found!r})")
    categories = list(getattr(source, "categories", None) or ["concept"] * len(found))
    if len(categories) != len(found):
        raise ValueError(f"{len(found)} concept names but {len(categories)} categories")
    return found, categories


def stack_masks(parts: Sequence[torch.Tensor]) -> torch.Tensor:
    """Masks of several sources ``(N, K_i, H_i, W_i)`` as one ``(N, sum K_i, H_0, W_0)`` (nearest resizing).

    Raises:
        ValueError: masks that are not 4-D or not of the same number of images.
    """
    if any(p.dim() != 4 for p in parts) or len({p.shape[0] for p in parts}) != 1:
        raise ValueError(f"masks must be (N, K, H, W) with the same N, got {[tuple(p.shape) for p in parts]}")
    size = parts[0].shape[2:]
    resized = [p if p.shape[2:] == size else F.interpolate(p.float(), size=size, mode="nearest") > 0.5 for p in parts]
    return torch.cat([p.bool() for p in resized], dim=1)
