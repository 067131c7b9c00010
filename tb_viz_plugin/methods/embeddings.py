"""Embeddings: features of chosen samples captured by forward hooks, 2-D maps, cluster quality.

Pure torch (scikit-learn only for the optional t-SNE map). The pieces:

- :class:`EmbeddingCapture`: forward hooks that keep the features of chosen rows of the next
  forward passes (by default the input of the last ``nn.Linear``, i.e. the penultimate features)
  and the predicted class (argmax of the last ``nn.Linear``'s output). Used on the validation
  loop's own passes by the ``Embeddings`` callback, and by :func:`extract_embeddings` for an
  explicit pass.
- :func:`pca` (torch SVD), :func:`tsne` (scikit-learn), :func:`procrustes_align` (centre, unit RMS
  radius, then the rotation/reflection that best matches the previous map, so that maps of
  successive epochs do not flip or spin).
- :func:`knn_accuracy` and :func:`silhouette`: one number for how well the classes separate.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, List, Optional, Sequence, Tuple

import torch
from torch import nn

from tb_viz_plugin.methods.layers import preserved_training_flags, resolve_layers

_CHUNK = 1024  # rows of a pairwise-distance block: bounds memory at _CHUNK * N values


def _is_linear(module: nn.Module) -> bool:
    return isinstance(module, nn.Linear)


def last_linear(model: nn.Module) -> Optional[str]:
    """Name of the last ``nn.Linear`` of ``model`` in definition order (``None`` if it has none).

    Example:
        >>> last_linear(nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2)))
        '2'
    """
    names = [name for name, module in model.named_modules() if _is_linear(module)]
    return names[-1] if names else None


def embedding_layer(model: nn.Module, layer: Optional[str] = None) -> Tuple[str, bool]:
    """Resolve which features to embed: ``(module name, use_its_input)``.

    Args:
        model: the network.
        layer: a module name, whose output is embedded; ``None`` for the input of the last
            ``nn.Linear`` (the penultimate features of a classifier).

    Returns:
        The module name and whether its input (``True``, the default choice) or its output is used.

    Raises:
        LayerNotFoundError: ``layer`` is not a module of ``model`` (the message lists the modules),
            or ``layer`` is ``None`` and ``model`` has no ``nn.Linear``.

    Example:
        >>> net = nn.Sequential(nn.Flatten(), nn.Linear(12, 5), nn.ReLU(), nn.Linear(5, 3))
        >>> embedding_layer(net), embedding_layer(net, "2")
        (('3', True), ('2', False))
    """
    if layer is None:
        (name,) = resolve_layers(
            model,
            None,
            accept=_is_linear,
            what="Linear layer to take the penultimate features from (pass layer=<module name>)",
            default=lambda valid: valid[-1:],
        )
        return name, True
    (name,) = resolve_layers(model, layer, accept=lambda module: True, what="module")
    return name, False


def _as_features(value: Any) -> torch.Tensor:
    """The first tensor of a hook's input/output as ``(N, D)`` float32 (spatial dims averaged)."""
    if isinstance(value, (tuple, list)):
        value = next((v for v in value if isinstance(v, torch.Tensor)), None)
    if not isinstance(value, torch.Tensor) or value.dim() < 2:
        raise TypeError(f"expected a batch tensor of at least 2 dimensions, got {type(value).__name__}")
    value = value.detach()
    if value.dim() > 2:
        value = value.flatten(2).mean(2)  # (N, C, *spatial) -> (N, C): global average pooling
    return value.float()


@dataclass
class _Pending:
    """What to keep from the next forward pass."""

    keys: torch.Tensor
    rows: Optional[torch.Tensor]
    batch_size: Optional[int]
    features_done: bool = False
    predicted_done: bool = False


class EmbeddingCapture:
    """Forward hooks keeping the features and predicted classes of chosen rows of forward passes.

    Arm it with :meth:`expect` before a forward pass: only that pass's first call of the layer
    (and of the head) is kept, only the given rows, labelled with the given keys (e.g. dataset
    indices). Nothing is kept while it is not armed, so the hooks cost nothing outside the chosen
    batches. The hooks never raise: a problem (a batch of unexpected size, an output that is not a
    tensor) is stored in :attr:`error` and capture stops until the next :meth:`expect`.

    Args:
        model: the network.
        layer: a module name whose output is embedded; ``None`` = the input of the last ``nn.Linear``.

    Attributes:
        layer: the resolved module name; ``uses_input`` whether its input is taken.
        head: the last ``nn.Linear`` whose output's argmax is the predicted class (``None`` if absent).
        error: the first problem met since the last :meth:`collect`, or ``None``.

    Raises:
        LayerNotFoundError: see :func:`embedding_layer`.

    Example:
        >>> net = nn.Sequential(nn.Flatten(), nn.Linear(12, 5), nn.ReLU(), nn.Linear(5, 3))
        >>> with EmbeddingCapture(net) as capture:
        ...     capture.expect(keys=[10, 11], rows=[0, 2], batch_size=4)
        ...     _ = net(torch.randn(4, 12))
        ...     keys, features, predicted = capture.collect()
        >>> keys.tolist(), tuple(features.shape), tuple(predicted.shape)
        ([10, 11], (2, 5), (2,))
    """

    def __init__(self, model: nn.Module, layer: Optional[str] = None) -> None:
        self.layer, self.uses_input = embedding_layer(model, layer)
        self.head = last_linear(model)
        self._model = model
        self._handles: List[Any] = []
        self._pending: Optional[_Pending] = None
        self._keys: List[torch.Tensor] = []
        self._features: List[torch.Tensor] = []
        self._predicted: List[torch.Tensor] = []
        self.error: Optional[str] = None

    # ------------------------------------------------------------------ lifecycle

    @property
    def attached(self) -> bool:
        """Whether the hooks are registered."""
        return bool(self._handles)

    def attach(self) -> "EmbeddingCapture":
        """Register the hooks (no-op when attached)."""
        if not self._handles:
            self._handles.append(self._model.get_submodule(self.layer).register_forward_hook(self._on_layer))
            if self.head is not None and not (self.uses_input and self.head == self.layer):
                self._handles.append(self._model.get_submodule(self.head).register_forward_hook(self._on_head))
        return self

    def release(self) -> None:
        """Remove the hooks and disarm (kept data stay until :meth:`collect`)."""
        for handle in self._handles:
            handle.remove()
        self._handles.clear()
        self._pending = None

    def __enter__(self) -> "EmbeddingCapture":
        return self.attach()

    def __exit__(self, *exc_info: Any) -> None:
        self.release()

    # ------------------------------------------------------------------ arming

    def expect(self, keys: Sequence[int], rows: Optional[Sequence[int]] = None, batch_size: Optional[int] = None) -> None:
        """Keep ``rows`` (all rows when ``None``) of the next forward pass, labelled ``keys``.

        ``batch_size``, when given, is checked against the pass's batch: a mismatch means the rows
        do not point at the intended samples, and is reported through :attr:`error`.
        """
        key_tensor = torch.as_tensor(list(keys), dtype=torch.long)
        row_tensor = None if rows is None else torch.as_tensor(list(rows), dtype=torch.long)
        if row_tensor is not None and len(row_tensor) != len(key_tensor):
            raise ValueError(f"{len(key_tensor)} keys for {len(row_tensor)} rows")
        self._pending = _Pending(key_tensor, row_tensor, batch_size) if len(key_tensor) else None

    def disarm(self) -> None:
        """Keep nothing from the following forward passes until the next :meth:`expect`."""
        self._pending = None

    def collect(self) -> Tuple[torch.Tensor, torch.Tensor, Optional[torch.Tensor]]:
        """Everything kept since the last call, and forget it.

        Returns:
            ``(keys (M,) long on CPU, features (M, D) float32, predicted (M,) long or None)``; features
            and predictions stay on the device they were computed on. ``predicted`` is ``None``
            without a head or when not every kept row has a prediction.
        """
        keys = torch.cat(self._keys) if self._keys else torch.zeros(0, dtype=torch.long)
        features = torch.cat(self._features) if self._features else torch.zeros(0, 0)
        predicted = torch.cat(self._predicted) if self._predicted else None
        if predicted is not None and len(predicted) != len(keys):
            predicted = None
        self._keys, self._features, self._predicted = [], [], []
        self._pending = None
        return keys, features, predicted

    # ------------------------------------------------------------------ hooks

    def _take(self, batch: torch.Tensor) -> Optional[torch.Tensor]:
        pending = self._pending
        if pending.batch_size is not None and batch.shape[0] != pending.batch_size:
            raise ValueError(
                f"expected a batch of {pending.batch_size} samples at {self.layer!r}, got {batch.shape[0]}: "
                "the batch rows no longer match the dataset indices"
            )
        return batch if pending.rows is None else batch.index_select(0, pending.rows.to(batch.device))

    def _fail(self, err: Exception) -> None:
        if self.error is None:
            self.error = f"{type(err).__name__}: {err}"
        self._pending = None

    def _on_layer(self, module: nn.Module, inputs: Any, output: Any) -> None:
        pending = self._pending
        if pending is None or pending.features_done:
            return
        try:
            self._features.append(self._take(_as_features(inputs if self.uses_input else output)))
            self._keys.append(pending.keys)
            pending.features_done = True
            if self.uses_input and self.head == self.layer:
                self._on_head(module, inputs, output)
        except Exception as err:  # noqa: BLE001 - a hook must never break the user's forward pass
            self._fail(err)

    def _on_head(self, module: nn.Module, inputs: Any, output: Any) -> None:
        pending = self._pending
        if pending is None or pending.predicted_done:
            return
        try:
            if isinstance(output, torch.Tensor) and output.dim() == 2:
                self._predicted.append(self._take(output.detach()).argmax(1))
            pending.predicted_done = True
        except Exception as err:  # noqa: BLE001 - a hook must never break the user's forward pass
            self._fail(err)


def extract_embeddings(
    model: nn.Module, images: torch.Tensor, layer: Optional[str] = None, batch_size: int = 256
) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
    """Features and predicted classes of ``images`` in an explicit pass (eval mode, no grad).

    Every submodule's training flag is restored after; the hooks are removed.

    Args:
        model: the network (its forward takes a batch of images).
        images: ``(N, C, H, W)`` on the model's device.
        layer: see :class:`EmbeddingCapture`.
        batch_size: images per forward pass.

    Returns:
        ``(features (N, D) float32 on CPU, predicted (N,) long on CPU or None)``.

    Example:
        >>> net = nn.Sequential(nn.Conv2d(3, 8, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 4))
        >>> features, predicted = extract_embeddings(net, torch.randn(10, 3, 16, 16))
        >>> tuple(features.shape), tuple(predicted.shape)
        ((10, 8), (10,))
    """
    with EmbeddingCapture(model, layer) as capture, preserved_training_flags(model), torch.no_grad():
        for start in range(0, len(images), batch_size):
            chunk = images[start : start + batch_size]
            capture.expect(range(start, start + len(chunk)), batch_size=len(chunk))
            model(chunk)
        if capture.error is not None:
            raise RuntimeError(f"feature capture failed: {capture.error}")
        _, features, predicted = capture.collect()
    return features.cpu(), None if predicted is None else predicted.cpu()


# ---------------------------------------------------------------------------- 2-D maps


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
        >>> tsne(torch.randn(50, 8), seed=0).shape  # doctest: +SKIP
        torch.Size([50, 2])
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


# ---------------------------------------------------------------------------- cluster quality


def _distance_blocks(x: torch.Tensor):
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
