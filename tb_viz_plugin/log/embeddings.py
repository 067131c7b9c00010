"""``log_embeddings``: sample features as a 2-D map for the tb-viz scatter view and for the Projector.

One call writes, through the run's own ``SummaryWriter``:

- a tb-viz ``embeddings`` step: the 2-D map (PCA or t-SNE, aligned to the previous step's map),
  labels, predictions and cluster-quality numbers in the manifest's ``meta``, plus the thumbnail
  sprite as the step's image item;
- for TensorBoard's Projector (``projector=True``): ``SummaryWriter.add_embedding`` with the full
  features, a metadata table (index, label, predicted, correct) and the same sprite, one entry per
  step in ``projector_config.pbtxt``. Entries written by earlier writers on the same log directory
  (a resumed run) are kept, and a repeated ``(tag, step)`` replaces its entry instead of listing it twice.
"""

from __future__ import annotations

import os
import shutil
from typing import Any, Dict, List, Optional, Sequence, Tuple

import torch
from google.protobuf import text_format
from tensorboard.compat import tf
from tensorboard.plugins.projector.projector_config_pb2 import ProjectorConfig

from tb_viz_plugin import render
from tb_viz_plugin.log.core import log_items
from tb_viz_plugin.methods.embeddings import knn_accuracy, pca, procrustes_align, silhouette, tsne
from tb_viz_plugin.render.embeddings import THUMB_MAX_PX, sprite, sprite_layout, thumbnails

KIND = "embeddings"
METHODS = ("pca", "tsne")
"""2-D map methods: ``pca`` (torch, exact, fast) and ``tsne`` (scikit-learn, optional)."""
KNN_K = 5
"""Neighbours of the k-NN accuracy shown with each map."""
PROJECTOR_CONFIG = "projector_config.pbtxt"
_DECIMALS = 4


def log_embeddings(
    writer: Any,
    tag: str,
    features: torch.Tensor,
    step: int,
    *,
    labels: Optional[torch.Tensor] = None,
    predicted: Optional[torch.Tensor] = None,
    images: Optional[torch.Tensor] = None,
    class_names: Optional[Sequence[str]] = None,
    indices: Optional[Sequence[int]] = None,
    method: str = "pca",
    reference: Optional[torch.Tensor] = None,
    projector: bool = True,
) -> torch.Tensor:
    """Log the embedding of ``N`` samples at ``step`` (tag ``tag``, kind ``embeddings``).

    Args:
        writer: a ``torch.utils.tensorboard.SummaryWriter`` (use one writer per log directory).
        tag: e.g. ``"embeddings/penultimate"``; also the Projector's tensor name (``<tag>:<step>``).
        features: ``(N, D)`` features of the samples (e.g. from ``extract_embeddings``).
        step: the global step (the Projector lists one entry per step).
        labels: ``(N,)`` true classes; enables the cluster-quality numbers.
        predicted: ``(N,)`` predicted classes.
        images: ``(N, 3, H, W)`` displayable images in ``[0, 1]`` (e.g. un-normalised inputs):
            thumbnails shown on hover and in the Projector, in a sprite within 8192 px.
        class_names: names of the class indices.
        indices: an id per sample (e.g. dataset indices), shown on hover; default ``0..N-1``.
        method: ``"pca"`` or ``"tsne"`` (needs scikit-learn) for the 2-D map.
        reference: the map this call returned at the previous step, for the same samples in the
            same order: the new map is rotated/reflected onto it so points do not jump between steps.
        projector: also write the full features for TensorBoard's Projector.

    Returns:
        The 2-D map ``(N, 2)``: centred, unit RMS radius, aligned to ``reference``.

    Raises:
        ValueError: inconsistent shapes or an unknown ``method``.
        ImportError: ``method="tsne"`` without scikit-learn.

    Example:
        >>> writer = SummaryWriter("runs/exp1")  # doctest: +SKIP
        >>> features, predicted = extract_embeddings(model, images)  # (300, 128), (300,)  # doctest: +SKIP
        >>> previous = None  # doctest: +SKIP
        >>> for epoch in range(10):  # doctest: +SKIP
        ...     train_one_epoch(model)
        ...     features, predicted = extract_embeddings(model, images)
        ...     previous = log_embeddings(writer, "embeddings/penultimate", features, epoch, labels=labels,
        ...                               predicted=predicted, images=to_rgb(images), reference=previous)
    """
    features = _check_inputs(features, labels, predicted, images, indices, method)
    n, dim = features.shape
    ids = list(range(n)) if indices is None else [int(i) for i in indices]
    if method == "pca":
        raw, ratio = pca(features)
    else:
        raw, ratio = tsne(features, init=reference), None
    points = procrustes_align(raw, reference)

    meta: Dict[str, Any] = {
        "method": method,
        "num_samples": n,
        "feature_dim": dim,
        "aligned": reference is not None,
        "indices": ids,
        "points": [[round(float(x), _DECIMALS), round(float(y), _DECIMALS)] for x, y in points.tolist()],
    }
    if ratio is not None:
        meta["explained_variance"] = [round(float(r), _DECIMALS) for r in ratio]
    if labels is not None:
        labels = labels.detach().cpu().long()
        meta["labels"] = labels.tolist()
        meta["quality"] = {
            "knn_k": KNN_K,
            "knn_accuracy": knn_accuracy(features, labels, KNN_K),
            "knn_accuracy_2d": knn_accuracy(points, labels, KNN_K),
            "silhouette": silhouette(features, labels),
        }
    if predicted is not None:
        predicted = predicted.detach().cpu().long()
        meta["predicted"] = predicted.tolist()
    if class_names is not None:
        meta["class_names"] = [str(name) for name in class_names]

    items = []
    thumbs = None
    if images is not None:
        size, columns = sprite_layout(n, min(THUMB_MAX_PX, max(images.shape[-2:])))
        thumbs = thumbnails(images.detach().cpu(), size)
        caption = f"thumbnails of the {n} samples ({size} px, {columns} per row)"
        items.append(render.png_item(sprite(thumbs, columns), caption, tile=size, columns=columns))
    if projector:
        table = _metadata_table(ids, labels, predicted, class_names)
        meta["projector_tensor"] = add_to_projector(writer, tag, step, features, table, thumbs)

    description = (
        f"{n} samples, {dim}-d features, 2-D map by {'PCA' if method == 'pca' else 't-SNE'}"
        + (" (full features in the Projector tab)" if projector else "")
    )
    log_items(writer, tag, KIND, items, step, meta=meta, description=description)
    return points


def _check_inputs(
    features: torch.Tensor,
    labels: Optional[torch.Tensor],
    predicted: Optional[torch.Tensor],
    images: Optional[torch.Tensor],
    indices: Optional[Sequence[int]],
    method: str,
) -> torch.Tensor:
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    if features.dim() != 2 or features.shape[0] < 1:
        raise ValueError(f"expected features of shape (N, D) with N >= 1, got {tuple(features.shape)}")
    n = features.shape[0]
    for name, value in (("labels", labels), ("predicted", predicted)):
        if value is not None and tuple(value.shape) != (n,):
            raise ValueError(f"{name} must have shape ({n},), got {tuple(value.shape)}")
    if images is not None and (images.dim() != 4 or images.shape[0] != n or images.shape[1] != 3):
        raise ValueError(f"images must have shape ({n}, 3, H, W), got {tuple(images.shape)}")
    if indices is not None and len(indices) != n:
        raise ValueError(f"{len(indices)} indices for {n} samples")
    return features.detach().to(device="cpu", dtype=torch.float32)


def _metadata_table(
    ids: List[int],
    labels: Optional[torch.Tensor],
    predicted: Optional[torch.Tensor],
    class_names: Optional[Sequence[str]],
) -> Tuple[Optional[List[str]], List[Any]]:
    """The Projector's metadata: ``(header, rows)``; a single column has no header (its rule)."""

    def name(value: int) -> str:
        text = str(class_names[value]) if class_names is not None and 0 <= value < len(class_names) else str(value)
        return " ".join(text.split())  # no tabs or newlines inside a TSV cell

    columns: Dict[str, List[str]] = {"index": [str(i) for i in ids]}
    if labels is not None:
        columns["label"] = [name(v) for v in labels.tolist()]
    if predicted is not None:
        columns["predicted"] = [name(v) for v in predicted.tolist()]
    if labels is not None and predicted is not None:
        columns["correct"] = ["yes" if a == b else "no" for a, b in zip(labels.tolist(), predicted.tolist())]
    if len(columns) == 1:
        return None, columns["index"]
    return list(columns), [list(row) for row in zip(*columns.values())]


def _encode_tag(tag: str) -> str:
    """The folder name ``SummaryWriter.add_embedding`` gives a tag (``%``, ``/``, ``\\`` escaped)."""
    return tag.replace("%", "%25").replace("/", "%2f").replace("\\", "%5c")


def _read_config(path: str) -> ProjectorConfig:
    config = ProjectorConfig()
    if tf.io.gfile.exists(path):
        with tf.io.gfile.GFile(path, "r") as f:
            text_format.Parse(f.read(), config)
    return config


def add_to_projector(
    writer: Any,
    tag: str,
    step: int,
    features: torch.Tensor,
    table: Tuple[Optional[List[str]], List[Any]],
    thumbs: Optional[torch.Tensor],
) -> str:
    """``writer.add_embedding`` plus the fixes for its traps; returns the Projector's tensor name.

    ``add_embedding`` rewrites ``projector_config.pbtxt`` from the writer's own list, which loses
    the entries of earlier writers on the same directory (a resumed run), and lists a repeated
    ``(tag, step)`` twice. Here the entries found on disk before the call are merged back in and
    every tensor name is listed once (the newest files win).

    Args:
        writer: the run's ``SummaryWriter``.
        tag: the embedding's name.
        step: the global step.
        features: ``(N, D)``.
        table: ``(header or None, rows)`` as ``add_embedding``'s ``metadata_header`` and ``metadata``.
        thumbs: ``(N, 3, s, s)`` in ``[0, 1]`` (square, so that the Projector's sprite is right) or ``None``.

    Returns:
        The Projector's tensor name, ``"<tag>:<step as 5 digits>"``.
    """
    logdir = writer.get_logdir()
    config_path = os.path.join(logdir, PROJECTOR_CONFIG)
    before = _read_config(config_path)
    folder = os.path.join(logdir, f"{step:05d}", _encode_tag(tag))
    if os.path.isdir(folder):  # a repeated step (local disk): start clean instead of a printed warning
        shutil.rmtree(folder)
    header, rows = table
    writer.add_embedding(features, metadata=rows, metadata_header=header, label_img=thumbs, global_step=step, tag=tag)
    written = _read_config(config_path)
    merged: Dict[str, Any] = {}
    for info in list(before.embeddings) + list(written.embeddings):
        merged.pop(info.tensor_name, None)
        merged[info.tensor_name] = info
    if list(merged.values()) != list(written.embeddings):
        config = ProjectorConfig()
        config.CopyFrom(written)
        del config.embeddings[:]
        config.embeddings.extend(merged.values())
        with tf.io.gfile.GFile(config_path, "wb") as f:
            f.write(text_format.MessageToString(config).encode("utf-8"))
    return written.embeddings[-1].tensor_name
