"""Synthetic "coloured shapes" dataset, generated deterministically from a seed.

Every image is ``size x size`` RGB and shows one shape (see ``CLASS_NAMES``) drawn in a colour from
``COLOR_NAMES`` (with a little jitter), at a random size, position and rotation, on a textured
background of low-contrast sinusoidal gratings plus noise in muted colours. Colour and class are
drawn independently, so the class can only be recognised from the shape. Each image also carries
its per-pixel object mask and its colour label. Nothing is downloaded: images are rasterised with
vectorised numpy (polar / half-plane tests on a coordinate grid); 5,000 images take ~1.5 s.
"""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

CLASS_NAMES: tuple[str, ...] = ("circle", "square", "triangle", "star", "cross", "ring")
COLOR_NAMES: tuple[str, ...] = ("red", "green", "blue", "yellow", "magenta", "cyan", "orange", "white")
PALETTE: np.ndarray = np.array(
    [
        [0.90, 0.10, 0.10],  # red
        [0.10, 0.80, 0.20],  # green
        [0.15, 0.30, 0.95],  # blue
        [0.95, 0.90, 0.10],  # yellow
        [0.90, 0.15, 0.85],  # magenta
        [0.10, 0.85, 0.90],  # cyan
        [1.00, 0.55, 0.05],  # orange
        [0.97, 0.97, 0.97],  # white
    ],
    dtype=np.float32,
)
"""RGB in [0, 1] of each colour in ``COLOR_NAMES`` (before jitter)."""

MEAN: tuple[float, float, float] = (0.468, 0.463, 0.456)
"""Per-channel mean of the images in [0, 1] (measured over 20,000 generated images)."""
STD: tuple[float, float, float] = (0.176, 0.156, 0.169)
"""Per-channel standard deviation of the images in [0, 1] (same measurement as ``MEAN``)."""

COLOR_JITTER = 0.05  # max per-channel deviation of an object's colour from its palette entry
NOISE = 0.05  # per-pixel uniform noise in [-NOISE, NOISE], over object and background
_MIN_RADIUS, _MAX_RADIUS = 8.0, 20.0  # circumradius of a shape, in pixels
_CHUNK = 512  # images rasterised at once (bounds memory; fixed, so it does not affect results)


def _regular_polygon(rho: np.ndarray, phi: np.ndarray, sides: int) -> np.ndarray:
    """Inside test for a regular polygon with circumradius 1 and a vertex at angle 0."""
    sector = 2 * np.pi / sides
    return rho * np.cos(np.mod(phi, sector) - sector / 2) <= np.cos(np.pi / sides)


def _star(rho: np.ndarray, phi: np.ndarray, points: int = 5, inner: float = 0.45) -> np.ndarray:
    """Inside test for a star with outer radius 1 and inner radius ``inner``.

    The angle is folded into ``[0, pi/points]``, where the star is the triangle between the origin,
    the outer vertex ``(1, 0)`` and the inner vertex at angle ``pi/points``.
    """
    sector = 2 * np.pi / points
    phi_m = np.mod(phi, sector)
    folded = np.minimum(phi_m, sector - phi_m)
    px, py = rho * np.cos(folded), rho * np.sin(folded)
    bx, by = inner * np.cos(sector / 2), inner * np.sin(sector / 2)
    return (bx - 1) * py - by * (px - 1) >= 0


def _shape_mask(label: int, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Mask of shape ``label`` in shape coordinates (scaled so the shape fits the unit circle)."""
    rho, phi = np.hypot(u, v), np.arctan2(v, u)
    name = CLASS_NAMES[label]
    if name == "circle":
        return rho <= 1
    if name == "square":
        return _regular_polygon(rho, phi, 4)
    if name == "triangle":
        return _regular_polygon(rho, phi, 3)
    if name == "star":
        return _star(rho, phi)
    if name == "cross":
        au, av = np.abs(u), np.abs(v)
        return ((au <= 0.3) & (av <= 0.95)) | ((av <= 0.3) & (au <= 0.95))
    if name == "ring":
        return (rho <= 1) & (rho >= 0.55)
    raise ValueError(f"unknown class {label}")


def _background(rng: np.random.Generator, n: int, size: int, gratings: int = 3) -> np.ndarray:
    """Muted textured backgrounds, float32 (n, size, size, 3), 99.8% of values in [0.13, 0.77].

    Each grating ``sin(fx*x + fy*y + phase)`` is built separably from 1-D sines and cosines.
    """
    grey = rng.uniform(0.3, 0.6, (n, 1, 1)).astype(np.float32)
    tint = rng.normal(0.0, 0.04, (n, 1, 3)).astype(np.float32)
    freq = rng.uniform(2.0, 10.0, (n, gratings, 1)) * 2 * np.pi / size  # 2-10 cycles per image
    angle = rng.uniform(0.0, np.pi, (n, gratings, 1))
    phase = rng.uniform(0.0, 2 * np.pi, (n, gratings, 1))
    amplitude = rng.uniform(-0.08, 0.08, (n, gratings, 3)).astype(np.float32)
    coords = np.arange(size)
    x_arg = (freq * np.cos(angle) * coords + phase).astype(np.float32)  # (n, g, W)
    y_arg = (freq * np.sin(angle) * coords).astype(np.float32)  # (n, g, H)
    waves = (
        np.sin(y_arg)[..., :, None] * np.cos(x_arg)[..., None, :]
        + np.cos(y_arg)[..., :, None] * np.sin(x_arg)[..., None, :]
    )  # (n, g, H, W)
    texture = waves.reshape(n, gratings, size * size).transpose(0, 2, 1) @ amplitude  # (n, H*W, 3)
    return (grey + tint + texture).reshape(n, size, size, 3)


def _render_chunk(
    rng: np.random.Generator, labels: np.ndarray, colors: np.ndarray, size: int
) -> tuple[np.ndarray, np.ndarray]:
    """Rasterise one chunk: uint8 images (n, H, W, 3) and bool masks (n, H, W)."""
    n = len(labels)
    radius = rng.uniform(_MIN_RADIUS, _MAX_RADIUS, n)
    cx = rng.uniform(radius + 1, size - radius - 1)  # 1 px margin: the shape is never clipped
    cy = rng.uniform(radius + 1, size - radius - 1)
    theta = rng.uniform(0.0, 2 * np.pi, n)
    jitter = rng.uniform(-COLOR_JITTER, COLOR_JITTER, (n, 3))
    background = _background(rng, n, size)
    noise = rng.random((n, size, size, 3), dtype=np.float32) * (2 * NOISE) - NOISE

    centres = np.arange(size, dtype=np.float32) + 0.5
    dx = centres[None, None, :] - cx.astype(np.float32)[:, None, None]
    dy = centres[None, :, None] - cy.astype(np.float32)[:, None, None]
    cos, sin, r = (a.astype(np.float32)[:, None, None] for a in (np.cos(theta), np.sin(theta), radius))
    u = (dx * cos + dy * sin) / r
    v = (dy * cos - dx * sin) / r

    masks = np.zeros((n, size, size), dtype=bool)
    for label in np.unique(labels):
        sel = labels == label
        masks[sel] = _shape_mask(int(label), u[sel], v[sel])

    color = np.clip(PALETTE[colors] + jitter.astype(np.float32), 0.0, 1.0)[:, None, None, :]
    image = np.where(masks[..., None], color, background) + noise
    np.clip(image, 0.0, 1.0, out=image)
    return (image * 255 + 0.5).astype(np.uint8), masks  # round half up


class ShapesDataset(Dataset):
    """``n`` coloured-shape images generated from ``seed`` (same seed -> bitwise identical data).

    Attributes (numpy arrays indexed by image, and ``size``):
        images: uint8 (N, H, W, 3), RGB.
        labels: int64 (N,), index into ``CLASS_NAMES``; classes are exactly balanced (up to
            ``n % len(CLASS_NAMES)``) and shuffled.
        masks: bool (N, H, W), True where the shape is drawn.
        color_labels: int64 (N,), index into ``COLOR_NAMES``.
        size: the image height and width H = W.

    ``dataset[i]`` is ``(image, label)``: a float32 (3, H, W) tensor normalised with
    ``MEAN``/``STD`` (see ``normalize`` / ``denormalize``) and an int.
    """

    def __init__(self, n: int, seed: int, size: int = 64) -> None:
        rng = np.random.default_rng(seed)
        self.size = size
        self.labels = rng.permutation(np.arange(n) % len(CLASS_NAMES)).astype(np.int64)
        self.color_labels = rng.integers(0, len(COLOR_NAMES), n).astype(np.int64)
        self.images = np.empty((n, size, size, 3), dtype=np.uint8)
        self.masks = np.empty((n, size, size), dtype=bool)
        for start in range(0, n, _CHUNK):
            stop = min(start + _CHUNK, n)
            self.images[start:stop], self.masks[start:stop] = _render_chunk(
                rng, self.labels[start:stop], self.color_labels[start:stop], size
            )

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        return normalize(torch.from_numpy(self.images[index])), int(self.labels[index])


def normalize(images: torch.Tensor) -> torch.Tensor:
    """uint8 channels-last images (..., H, W, 3) -> normalised float32 (..., 3, H, W)."""
    x = images.to(torch.float32).div(255).movedim(-1, -3)
    mean = torch.tensor(MEAN).view(3, 1, 1)
    std = torch.tensor(STD).view(3, 1, 1)
    return (x - mean) / std


def denormalize(x: torch.Tensor) -> torch.Tensor:
    """Invert ``normalize`` up to quantisation: (..., 3, H, W) -> float in [0, 1], same layout."""
    mean = torch.tensor(MEAN, dtype=x.dtype, device=x.device).view(3, 1, 1)
    std = torch.tensor(STD, dtype=x.dtype, device=x.device).view(3, 1, 1)
    return (x * std + mean).clamp(0.0, 1.0)


def _split_seeds(seed: int) -> tuple[int, int]:
    """The train and validation seeds derived from ``seed``."""
    train_seed, val_seed = (int(s.generate_state(1)[0]) for s in np.random.SeedSequence(seed).spawn(2))
    return train_seed, val_seed


def make_splits(seed: int, n_train: int, n_val: int, size: int = 64) -> tuple[ShapesDataset, ShapesDataset]:
    """Train and validation sets generated from two different seeds derived from ``seed``."""
    train_seed, val_seed = _split_seeds(seed)
    return ShapesDataset(n_train, train_seed, size), ShapesDataset(n_val, val_seed, size)


VAL_BATCH_SIZE = 256
"""Batch size of the demo's validation DataLoader."""


def val_loader(seed: int = 0, n_val: int = 1200, size: int = 64) -> DataLoader:
    """The validation DataLoader ``train(seed=seed, n_val=n_val)`` used (same images, same order).

    With its defaults it is the demo's (``python -m tb_viz_plugin.demo``), as ``tb-viz backfill
    --data tb_viz_plugin.demo.data:val_loader`` needs it.

    Example:
        >>> loader = val_loader(n_val=12)
        >>> len(loader.dataset), next(iter(loader))[0].shape
        (12, torch.Size([12, 3, 64, 64]))
    """
    return DataLoader(ShapesDataset(n_val, _split_seeds(seed)[1], size), batch_size=VAL_BATCH_SIZE, num_workers=0)
