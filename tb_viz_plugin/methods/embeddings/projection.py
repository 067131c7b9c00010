"""2-D maps of features: PCA or t-SNE, aligned to the previous step's map (the ``embeddings`` view's method).

:func:`embed` is what the view computes at each step: the map (:func:`pca` in torch or
:func:`tsne` through scikit-learn), standardised and rotated/reflected onto the previous step's map
by :func:`procrustes_align` (so that maps of successive epochs do not flip or spin), and the
cluster quality of the features and of the map.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, Optional, Tuple

import torch

from tb_viz_plugin.methods.embeddings.quality import KNN_K, cluster_quality

METHODS = ("pca", "tsne")
"""2-D map methods: ``pca`` (torch, exact, fast) and ``tsne`` (scikit-learn, optional)."""


def pca(features: torch.Tensor, k: int = 2) -> Tuple[torch.Tensor, torch.Tensor]:
    """Project ``features`` onto their top ``k`` principal components (exact, float64).

    Exact eigendecomposition of the smaller of the covariance (``D x D``) and Gram (``N x N``)
    matrices: ~3x faster than an SVD of the data for 2,000 x 512 features, and no RNG involved
    (``torch.pca_lowrank`` would draw from the global RNG). Signs are fixed like scikit-learn's (the
    largest loading of each component is positive), so the result is deterministic. Components
    beyond the rank (e.g. a single sample) are zero.

    Args:
        features: ``(N, D)``.
        k: number of components.

    Returns:
        ``(scores (N, k) float32, explained variance ratio (k,) float32)``.

    Example:
        >>> scores, ratio = pca(torch.randn(100, 16))
        >>> tuple(scores.shape), tuple(ratio.shape)
        ((100, 2), (2,))
    """
    if features.dim() != 2:
        raise ValueError(f"expected features of shape (N, D), got {tuple(features.shape)}")
    x = features.detach().to(torch.float64)
    x = x - x.mean(0, keepdim=True)
    n, d = x.shape
    scores = torch.zeros(n, k, dtype=torch.float64, device=x.device)
    ratio = torch.zeros(k, dtype=torch.float64, device=x.device)
    total = x.square().sum()
    rank = min(k, n - 1, d)
    if rank > 0 and total > 0:
        if d <= n:
            values, vectors = torch.linalg.eigh(x.T @ x)  # ascending
            values, loadings = values.flip(0)[:rank].clamp_min(0), vectors.flip(1)[:, :rank]
        else:
            values, vectors = torch.linalg.eigh(x @ x.T)
            values = values.flip(0)[:rank].clamp_min(0)
            loadings = (x.T @ vectors.flip(1)[:, :rank]) / values.sqrt().clamp_min(1e-300)
        signs = torch.sign(loadings.gather(0, loadings.abs().argmax(0, keepdim=True))).squeeze(0)
        signs[signs == 0] = 1
        scores[:, :rank] = x @ (loadings * signs)
        ratio[:rank] = values / total
    return scores.float(), ratio.float()


def tsne(
    features: torch.Tensor, *, perplexity: float = 30.0, seed: int = 0, init: Optional[torch.Tensor] = None
) -> torch.Tensor:
    """A 2-D t-SNE map through scikit-learn (an optional dependency: ``pip install scikit-learn``).

    Deterministic for a given ``seed`` (scikit-learn's own ``RandomState``; the global RNGs are
    not touched). The perplexity is lowered for small ``N`` (it must stay below ``N``).

    Args:
        features: ``(N, D)`` with ``N >= 4``.
        perplexity: scikit-learn's perplexity (typical 5-50).
        seed: the random state.
        init: ``(N, 2)`` starting positions, e.g. the previous epoch's map (keeps successive maps
            similar); ``None`` for scikit-learn's PCA initialisation.

    Returns:
        ``(N, 2)`` float32 on CPU.

    Raises:
        ImportError: scikit-learn is not installed (the message says how to install it).
        ValueError: fewer than 4 samples.

    Example:
        >>> tsne(torch.randn(20, 8), seed=0).shape
        torch.Size([20, 2])
    """
    try:
        from sklearn.manifold import TSNE
    except ImportError as err:
        raise ImportError(
            "t-SNE maps need scikit-learn: `pip install scikit-learn` (or `pip install tb-viz[tsne]`), "
            "or use method='pca'"
        ) from err
    n = features.shape[0]
    if n < 4:
        raise ValueError(f"t-SNE needs at least 4 samples, got {n}")
    x = features.detach().to(device="cpu", dtype=torch.float64).numpy()
    start: Any = "pca"
    if init is not None:
        scale = float(init[:, 0].std()) or 1.0
        start = (init.detach().to(device="cpu", dtype=torch.float64) * (1e-4 / scale)).numpy()
    model = TSNE(n_components=2, perplexity=min(perplexity, (n - 1) / 3), init=start, random_state=seed)
    return torch.from_numpy(model.fit_transform(x)).float()


def procrustes_align(points: torch.Tensor, reference: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Centre ``points``, scale them to unit RMS radius and, given a reference, rotate/reflect onto it.

    The orthogonal Procrustes solution: the orthogonal ``R`` minimising ``||P R - Q||`` for the
    standardised points ``P`` and reference ``Q`` (same samples, same order) is ``U V^T`` from the
    SVD ``P^T Q = U S V^T``. Reflections are allowed (PCA signs are arbitrary).

    Args:
        points: ``(N, k)`` map to align.
        reference: ``(N, k)`` previous map of the same samples, or ``None`` (standardise only).

    Returns:
        ``(N, k)`` float32.

    Raises:
        ValueError: ``reference`` has another shape.

    Example:
        >>> p = torch.randn(30, 2)
        >>> turned = p @ torch.tensor([[0.0, -1.0], [1.0, 0.0]]) * 3 + 5
        >>> bool(torch.allclose(procrustes_align(turned, procrustes_align(p)), procrustes_align(p), atol=1e-5))
        True
    """
    p = points.detach().to(torch.float64)
    p = p - p.mean(0, keepdim=True)
    radius = p.square().sum(1).mean().sqrt()
    if radius > 0:
        p = p / radius
    if reference is not None:
        if reference.shape != points.shape:
            raise ValueError(f"reference of shape {tuple(reference.shape)} for points of shape {tuple(points.shape)}")
        q = reference.detach().to(device=p.device, dtype=torch.float64)
        u, _, vt = torch.linalg.svd(p.T @ (q - q.mean(0, keepdim=True)))
        p = p @ (u @ vt)
    return p.float()



@dataclass(frozen=True)
class EmbeddingMap:
    """One step of the ``embeddings`` view: the features of N samples and their 2-D map.

    Attributes:
        features: ``(N, D)`` float32 on the CPU.
        points: ``(N, 2)`` float32 on the CPU: centred, unit RMS radius, aligned to the reference.
        method: ``"pca"`` or ``"tsne"``.
        aligned: whether ``points`` were aligned to a reference map.
        explained_variance: ``(2,)`` ratio of the PCA components, ``None`` for t-SNE.
        quality: :func:`~tb_viz_plugin.methods.embeddings.quality.cluster_quality` (with labels), else ``None``.
    """

    features: torch.Tensor
    points: torch.Tensor
    method: str
    aligned: bool
    explained_variance: Optional[torch.Tensor] = None
    quality: Optional[Dict[str, Any]] = None


def embed(
    features: torch.Tensor,
    *,
    method: str = "pca",
    labels: Optional[torch.Tensor] = None,
    reference: Optional[torch.Tensor] = None,
    knn_k: int = KNN_K,
) -> EmbeddingMap:
    """The 2-D map of ``features`` and how well ``labels`` separate in it: what the view shows per step.

    Args:
        features: ``(N, D)`` features of the samples (e.g. from ``extract_embeddings``).
        method: ``"pca"`` or ``"tsne"`` (needs scikit-learn).
        labels: ``(N,)`` true classes; enables the cluster-quality numbers.
        reference: the map of the previous step, for the same samples in the same order: the new
            map is rotated/reflected onto it (and t-SNE starts from it) so points do not jump.
        knn_k: neighbours of the k-NN accuracy.

    Returns:
        An :class:`EmbeddingMap` on the CPU.

    Raises:
        ValueError: features not ``(N, D)``, labels or reference of another length, an unknown ``method``.
        ImportError: ``method="tsne"`` without scikit-learn.

    Example:
        >>> x = torch.cat([torch.randn(20, 8), torch.randn(20, 8) + 5])
        >>> result = embed(x, labels=torch.tensor([0] * 20 + [1] * 20))
        >>> tuple(result.points.shape), result.quality["knn_accuracy"], result.aligned
        ((40, 2), 1.0, False)
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    if features.dim() != 2 or features.shape[0] < 1:
        raise ValueError(f"expected features of shape (N, D) with N >= 1, got {tuple(features.shape)}")
    n = features.shape[0]
    if labels is not None and tuple(labels.shape) != (n,):
        raise ValueError(f"labels must have shape ({n},), got {tuple(labels.shape)}")
    features = features.detach().to(device="cpu", dtype=torch.float32)
    if method == "pca":
        raw, ratio = pca(features)
    else:
        raw, ratio = tsne(features, init=reference), None
    points = procrustes_align(raw, reference)
    quality = None if labels is None else cluster_quality(features, points, labels.detach().cpu().long(), knn_k)
    return EmbeddingMap(features, points, method, reference is not None, ratio, quality)
