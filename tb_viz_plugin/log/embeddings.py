"""The ``embeddings`` view: ``log_embeddings`` extracts and maps features, ``write_embeddings`` writes a map.

One step writes, through the run's own ``SummaryWriter``:

- a tb-viz ``embeddings`` step: the 2-D map (PCA or t-SNE, aligned to the previous step's map),
  labels, predictions and cluster-quality numbers in the manifest's ``meta``, plus the thumbnail
  sprite as the step's image item (a static item: stored once per run, see ``summary.Item``);
- for TensorBoard's Projector (``projector=True``): the features (at most ``projector_dims``
  principal axes, float32), a metadata table (index, label, predicted, correct) and the same
  sprite, stored once, one entry per step (see :mod:`tb_viz_plugin.projector`).
"""

from __future__ import annotations

from typing import Any, Optional, Sequence, Union

import torch
from torch import nn

from tb_viz_plugin import projector as projector_files
from tb_viz_plugin.log.core import make_tag, write_panel
from tb_viz_plugin.methods.embeddings import EmbeddingMap, embed, embedding_layer, extract_embeddings, source_name
from tb_viz_plugin.methods.embeddings.capture import logits_head
from tb_viz_plugin.methods.embeddings.projection import pca
from tb_viz_plugin.methods.layers import one_layer
from tb_viz_plugin.methods.model_display import display
from tb_viz_plugin.methods.model_io import IO, prepare
from tb_viz_plugin.render import ToRGB
from tb_viz_plugin.render import embeddings as draw

KIND = "embeddings"
PROJECTOR_DIMS = 128
"""Feature columns the Projector gets by default; wider features are projected on their top principal axes."""


def write_embeddings(
    writer: Any,
    source: str,
    embedding: EmbeddingMap,
    step: int,
    *,
    labels: Optional[torch.Tensor] = None,
    predicted: Optional[torch.Tensor] = None,
    images: Optional[torch.Tensor] = None,
    to_rgb: Optional[ToRGB] = None,
    class_names: Optional[Sequence[str]] = None,
    indices: Optional[Sequence[int]] = None,
    projector: bool = True,
    projector_dims: Optional[int] = PROJECTOR_DIMS,
    name: Optional[str] = None,
) -> str:
    """Write the embedding of ``N`` samples at ``step`` (tag ``embeddings/<source>[/<name>]``).

    Args:
        writer: a ``torch.utils.tensorboard.SummaryWriter`` (use one writer per log directory).
        source: what the features are, e.g. ``"fc.input"`` (the input of ``fc``) or ``"layer4"``.
        embedding: the features and their 2-D map (``methods.embed``).
        step: the global step (the Projector lists one entry per step).
        labels: ``(N,)`` true classes.
        predicted: ``(N,)`` predicted classes.
        images: ``(N, C, H, W)`` the samples (model inputs, CPU; small ones are fine): thumbnails
            shown on hover and in the Projector, in a sprite within 8192 px.
        to_rgb: inputs -> RGB in ``[0, 1]`` for the thumbnails; ``None`` = min-max per image.
        class_names: names of the class indices.
        indices: an id per sample (e.g. dataset indices), shown on hover; default ``0..N-1``.
        projector: also write the features for TensorBoard's Projector (tensor ``<tag>:<step>``).
        projector_dims: the Projector gets at most this many feature columns (the top principal
            axes; ``None`` = all): 1,000 samples cost 0.5 MB per step at 128.
        name: appended to the tag (tells two instances of the view apart).

    Returns:
        The tag written.

    Raises:
        ValueError: labels, predicted, images or indices of another length than the features.

    Example:
        >>> import tempfile
        >>> from torch.utils.tensorboard import SummaryWriter
        >>> features, labels = torch.randn(30, 8), torch.arange(30) % 3
        >>> with tempfile.TemporaryDirectory() as logdir, SummaryWriter(logdir) as writer:
        ...     write_embeddings(writer, "fc.input", embed(features, labels=labels), step=0, labels=labels,
        ...                      images=torch.rand(30, 3, 16, 16))
        'embeddings/fc.input'
    """
    n = embedding.features.shape[0]
    if images is not None and (images.dim() != 4 or images.shape[0] != n):
        raise ValueError(f"images must have shape ({n}, C, H, W), got {tuple(images.shape)}")
    thumbs = None if images is None else draw.sample_thumbnails(images.detach().cpu(), to_rgb)
    labels = None if labels is None else labels.detach().cpu().long()
    predicted = None if predicted is None else predicted.detach().cpu().long()
    panel = draw.panel(embedding, labels=labels, predicted=predicted, thumbs=thumbs, class_names=class_names,
                       indices=indices, projector=projector)  # fmt: skip
    tag = make_tag(KIND, source, name=name)
    if projector:
        table = projector_files.metadata_table(
            panel.meta["indices"],
            None if labels is None else labels.tolist(),
            None if predicted is None else predicted.tolist(),
            class_names,
        )
        sprite = None if thumbs is None else (panel.items[0].data, int(thumbs[0].shape[-1]))
        features = embedding.features.detach().cpu().float()
        if projector_dims is not None and features.shape[1] > projector_dims:
            features = pca(features, projector_dims)[0]  # the Projector's PCA shows the same components
        panel.meta["projector_tensor"] = projector_files.add_embedding(writer, tag, step, features, table, sprite)
    return write_panel(writer, tag, KIND, panel, step)


def log_embeddings(
    writer: Any,
    model: nn.Module,
    images: torch.Tensor,
    step: int,
    layers: Optional[Union[str, Sequence[str]]] = None,
    *,
    labels: Optional[torch.Tensor] = None,
    class_names: Optional[Sequence[str]] = None,
    indices: Optional[Sequence[int]] = None,
    method: str = "pca",
    reference: Optional[torch.Tensor] = None,
    to_rgb: Optional[ToRGB] = None,
    projector: bool = True,
    name: Optional[str] = None,
    io: IO = None,
) -> torch.Tensor:
    """Embed ``images`` (features, predicted classes, 2-D map) and write the step (see :func:`write_embeddings`).

    Args:
        writer: a ``torch.utils.tensorboard.SummaryWriter``.
        model: the network; an explicit pass in eval mode, no gradients, flags restored after.
        images: ``(N, C, H, W)`` on the model's device.
        step: the global step.
        layers: the module whose output is embedded (a name or a one-element list; 4-D outputs are
            averaged over space); ``None`` = the input of the last ``nn.Linear``.
        labels: ``(N,)`` true classes; enables the cluster-quality numbers.
        class_names: names of the class indices.
        indices: an id per sample (e.g. dataset indices); default ``0..N-1``.
        method: ``"pca"`` or ``"tsne"`` (needs scikit-learn).
        reference: the map this function returned at the previous step (same samples, same order):
            the new map is rotated/reflected onto it so points do not jump between steps.
        to_rgb: inputs -> RGB in ``[0, 1]`` for the thumbnails; ``None`` = min-max per image.
        projector: also write the full features for TensorBoard's Projector.
        name: appended to the tag (tells two instances of the view apart).
        io: how the model takes inputs and gives outputs (``methods.model_io.ModelIO`` or a dict of
            its fields): the logits of a dict/tuple output, a forward taking a batch, the task
            (predicted classes are shown for multiclass models only), how inputs are shown.

    Returns:
        The 2-D map ``(N, 2)``: centred, unit RMS radius, aligned to ``reference``.

    Raises:
        LayerNotFoundError: an unknown layer, or no ``nn.Linear`` for the default.
        ValueError: inconsistent shapes or an unknown ``method``.
        ImportError: ``method="tsne"`` without scikit-learn.

    Example:
        >>> import tempfile
        >>> from torch.utils.tensorboard import SummaryWriter
        >>> net = nn.Sequential(nn.Conv2d(3, 8, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 3))
        >>> images, labels = torch.randn(12, 3, 16, 16), torch.arange(12) % 3
        >>> with tempfile.TemporaryDirectory() as logdir, SummaryWriter(logdir) as writer:
        ...     first = log_embeddings(writer, net, images, 0, labels=labels)
        ...     second = log_embeddings(writer, net, images, 1, labels=labels, reference=first)
        >>> tuple(second.shape)
        (12, 2)
    """
    layer = one_layer(layers, "log_embeddings")
    wrapped, resolved = prepare(model, images, io, labels)
    head = logits_head(model, images[:2], resolved) if layer is None else None  # (logits, aux): the logits' head
    source = source_name(*embedding_layer(model, layer, head))
    features, predicted = extract_embeddings(wrapped, images, layer, head=head)
    if resolved.task != "multiclass":
        predicted = None  # an argmax over sigmoid, regression or pooled segmentation scores is no class
    result = embed(features, method=method, labels=labels, reference=reference)
    write_embeddings(
        writer, source, result, step, labels=labels, predicted=predicted, images=images, to_rgb=display(resolved, to_rgb),
        class_names=class_names, indices=indices, projector=projector, name=name,
    )  # fmt: skip
    return result.points
