"""How well classes separate in an embedding: leave-one-out k-NN accuracy and the silhouette.

Both are computed in blocks of the pairwise-distance matrix, so memory stays ``O(N)``, and both
follow scikit-learn's conventions (checked against it in the tests).
"""

from __future__ import annotations

import math
from typing import Any, Dict, Iterator, Optional, Tuple

import torch

KNN_K = 5
"""Neighbours of the k-NN accuracy shown with each map."""
_CHUNK = 1024  # rows of a pairwise-distance block: bounds memory at _CHUNK * N values


def _distance_blocks(x: torch.Tensor) -> Iterator[Tuple[torch.Tensor, torch.Tensor]]:
    """Yield ``(rows, distances (len(rows), N))`` blocks of the Euclidean distance matrix of ``x``."""
    for start in range(0, len(x), _CHUNK):
        rows = torch.arange(start, min(start + _CHUNK, len(x)), device=x.device)
        yield rows, torch.cdist(x[rows], x)


def _check(features: torch.Tensor, labels: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    if features.dim() != 2 or labels.shape != (features.shape[0],):
        raise ValueError(f"expected features (N, D) and labels (N,), got {tuple(features.shape)}, {tuple(labels.shape)}")
    return features.detach().to(torch.float64), labels.detach().to(device=features.device, dtype=torch.long)


def knn_accuracy(features: torch.Tensor, labels: torch.Tensor, k: int = 5) -> Optional[float]:
    """Leave-one-out k-nearest-neighbour accuracy: how often a sample's ``k`` nearest others vote its label.

    Euclidean distance, uniform votes, ties to the smallest label (scikit-learn's
    ``KNeighborsClassifier`` conventions). Computed in blocks, so memory stays ``O(N)``.

    Args:
        features: ``(N, D)``.
        labels: ``(N,)`` non-negative integers.
        k: neighbours (lowered to ``N - 1`` for tiny sets).

    Returns:
        The accuracy in ``[0, 1]``, or ``None`` for fewer than 2 samples.

    Example:
        >>> x = torch.cat([torch.randn(20, 3), torch.randn(20, 3) + 10])
        >>> knn_accuracy(x, torch.tensor([0] * 20 + [1] * 20))
        1.0
    """
    x, y = _check(features, labels)
    n = len(x)
    if n < 2:
        return None
    k = min(k, n - 1)
    num_classes = int(y.max()) + 1
    correct = 0
    for rows, dist in _distance_blocks(x):
        dist[torch.arange(len(rows)), rows] = math.inf  # leave the sample itself out
        neighbours = dist.topk(k, dim=1, largest=False).indices
        votes = torch.zeros(len(rows), num_classes, dtype=torch.long, device=x.device)
        votes.scatter_add_(1, y[neighbours], torch.ones_like(neighbours))
        correct += int((votes.argmax(1) == y[rows]).sum())
    return correct / n


def silhouette(features: torch.Tensor, labels: torch.Tensor) -> Optional[float]:
    """Mean silhouette coefficient (Euclidean), as scikit-learn's ``silhouette_score``.

    For each sample ``s = (b - a) / max(a, b)`` with ``a`` the mean distance to the other members of
    its class and ``b`` the smallest mean distance to another class; 0 for a class of one sample.
    ``+1`` = tight, well separated classes; ``0`` = overlapping; negative = mixed up.

    Args:
        features: ``(N, D)``.
        labels: ``(N,)`` non-negative integers.

    Returns:
        The mean silhouette in ``[-1, 1]``, or ``None`` when undefined (fewer than 2 classes, or
        every sample its own class).

    Example:
        >>> x = torch.cat([torch.randn(20, 3), torch.randn(20, 3) + 10])
        >>> silhouette(x, torch.tensor([0] * 20 + [1] * 20)) > 0.8
        True
    """
    x, y = _check(features, labels)
    _, y = torch.unique(y, return_inverse=True)
    num_classes = int(y.max()) + 1 if len(y) else 0
    if not 2 <= num_classes <= len(y) - 1:
        return None
    one_hot = torch.nn.functional.one_hot(y, num_classes).to(torch.float64)
    counts = one_hot.sum(0)
    total = 0.0
    for rows, dist in _distance_blocks(x):
        sums = dist @ one_hot  # (rows, classes): summed distance to each class
        own = y[rows]
        own_count = counts[own]
        a = sums.gather(1, own[:, None]).squeeze(1) / (own_count - 1).clamp_min(1)
        means = sums / counts
        means.scatter_(1, own[:, None], math.inf)
        b = means.min(1).values
        s = (b - a) / torch.maximum(a, b)
        s = torch.where((own_count > 1) & (torch.maximum(a, b) > 0), s, torch.zeros_like(s))
        total += float(s.sum())
    return total / len(y)


def cluster_quality(
    features: torch.Tensor, points: torch.Tensor, labels: torch.Tensor, k: int = KNN_K
) -> Dict[str, Any]:
    """The numbers shown beside a map: k-NN accuracy of the features and of the 2-D points, silhouette.

    Returns:
        ``{"knn_k", "knn_accuracy", "knn_accuracy_2d", "silhouette"}``; ``None`` values where undefined.

    Example:
        >>> x = torch.cat([torch.randn(20, 3), torch.randn(20, 3) + 10])
        >>> cluster_quality(x, x[:, :2], torch.tensor([0] * 20 + [1] * 20))["knn_accuracy"]
        1.0
    """
    return {
        "knn_k": k,
        "knn_accuracy": knn_accuracy(features, labels, k),
        "knn_accuracy_2d": knn_accuracy(points, labels, k),
        "silhouette": silhouette(features, labels),
    }
