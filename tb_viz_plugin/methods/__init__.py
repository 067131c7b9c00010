"""Pure-torch visualization methods: a model and inputs in, tensors out.

Nothing here logs, renders or knows about Lightning; callbacks and plain-PyTorch users call
these functions and hand the results to the ``write_*`` functions of :mod:`tb_viz_plugin.log`.
One function per view computes what the view shows:

| view | methods function |
|---|---|
| ``filters`` | :func:`filter_weights` |
| ``activation_maps`` | :func:`activation_maps` |
| ``top_activations`` | :func:`top_activations` (or :class:`TopActivationTracker` on someone else's passes) |
| ``attributions`` | :func:`attribute` |
| ``embeddings`` | :func:`extract_embeddings` (or :class:`EmbeddingCapture`), then :func:`embed` |
| ``activation_maximization`` | :func:`activation_maximization` |
| ``deepdream`` | :func:`dream` |
| ``network_dissection`` | :func:`dissect` (or :class:`DissectionTracker` on someone else's passes) |
| ``feature_inversion`` | :func:`invert` |
| ``neural_style`` | :func:`texture` and :func:`style_transfer` |
"""

from tb_viz_plugin.methods.layers import (
    LayerNotFoundError,
    conv2d_layer_names,
    model_device,
    model_dtype,
    preserved_training_flags,
    resolve_layers,
)
from tb_viz_plugin.methods.classes import class_name, find_class_names
from tb_viz_plugin.methods.hooks import LayerHooks, layer_outputs
from tb_viz_plugin.methods.weights import filter_weights
from tb_viz_plugin.methods.activations import (
    FeatureMaps,
    Units,
    activation_layers,
    activation_maps,
    capture_activations,
    check_units,
    select_units,
)
from tb_viz_plugin.methods.receptive_field import LayerGeometry, ReceptiveField, compare_empirical, measure_layer
from tb_viz_plugin.methods.receptive_field import receptive_field
from tb_viz_plugin.methods.top_k import RunningTopK, UnitTopK, merge_top_k
from tb_viz_plugin.methods.tracking import TopActivationTracker, top_activations
from tb_viz_plugin.methods import optvis
from tb_viz_plugin.methods.optvis import Dream, Maximization, activation_maximization, dream
from tb_viz_plugin.methods.optvis import Inversion, Stylized, Texture, invert, style_transfer, texture
from tb_viz_plugin.methods.attribution import (
    METHODS as ATTRIBUTION_METHODS,
    Attribution,
    CamHeadError,
    attribute,
    cam,
    grad_cam,
    grad_cam_plus_plus,
    guided_backprop,
    guided_grad_cam,
    integrated_gradients,
    layer_cam,
    occlusion,
    saliency,
    smooth_grad,
)
from tb_viz_plugin.methods.concepts import COLOR_NAMES, ColorConcepts, color_concepts
from tb_viz_plugin.methods.dissection_counts import DissectionCounts
from tb_viz_plugin.methods.dissection import Dissection, DissectionTracker, TopImages, dissect, merge_top_images
from tb_viz_plugin.methods.embeddings import (
    EmbeddingCapture,
    EmbeddingMap,
    cluster_quality,
    embed,
    embedding_layer,
    extract_embeddings,
    knn_accuracy,
    pca,
    procrustes_align,
    silhouette,
    tsne,
)

__all__ = [
    "ATTRIBUTION_METHODS",
    "COLOR_NAMES",
    "ColorConcepts",
    "Dissection",
    "DissectionCounts",
    "DissectionTracker",
    "TopImages",
    "color_concepts",
    "dissect",
    "merge_top_images",
    "Attribution",
    "CamHeadError",
    "Dream",
    "EmbeddingCapture",
    "EmbeddingMap",
    "FeatureMaps",
    "Inversion",
    "LayerGeometry",
    "LayerHooks",
    "LayerNotFoundError",
    "Maximization",
    "ReceptiveField",
    "RunningTopK",
    "Stylized",
    "Texture",
    "TopActivationTracker",
    "UnitTopK",
    "Units",
    "activation_layers",
    "activation_maps",
    "activation_maximization",
    "attribute",
    "cam",
    "capture_activations",
    "check_units",
    "class_name",
    "cluster_quality",
    "conv2d_layer_names",
    "dream",
    "embed",
    "embedding_layer",
    "extract_embeddings",
    "filter_weights",
    "find_class_names",
    "grad_cam",
    "grad_cam_plus_plus",
    "guided_backprop",
    "guided_grad_cam",
    "integrated_gradients",
    "invert",
    "knn_accuracy",
    "layer_cam",
    "layer_outputs",
    "measure_layer",
    "merge_top_k",
    "model_device",
    "model_dtype",
    "occlusion",
    "optvis",
    "pca",
    "preserved_training_flags",
    "procrustes_align",
    "receptive_field",
    "compare_empirical",
    "resolve_layers",
    "saliency",
    "select_units",
    "silhouette",
    "smooth_grad",
    "style_transfer",
    "texture",
    "top_activations",
    "tsne",
]
