"""Pure-torch visualization methods: a model and inputs in, tensors out.

Nothing here logs, renders or knows about Lightning; callbacks and plain-PyTorch users call
these functions and hand the tensors to :mod:`tb_viz_plugin.render`.
"""

from tb_viz_plugin.methods.layers import (
    LayerNotFoundError,
    conv2d_layer_names,
    preserved_training_flags,
    resolve_layers,
)
from tb_viz_plugin.methods.weights import filter_weights
from tb_viz_plugin.methods import optvis
from tb_viz_plugin.methods.activations import (
    LayerGeometry,
    LayerHooks,
    ReceptiveField,
    TopActivationTracker,
    UnitTopK,
    activation_layers,
    capture_activations,
    measure_layer,
    merge_top_k,
    receptive_field,
    top_activations,
)
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
from tb_viz_plugin.methods.embeddings import (
    EmbeddingCapture,
    embedding_layer,
    extract_embeddings,
    knn_accuracy,
    pca,
    procrustes_align,
    silhouette,
    tsne,
)

__all__ = [
    "optvis",
    "LayerGeometry",
    "LayerHooks",
    "ReceptiveField",
    "TopActivationTracker",
    "UnitTopK",
    "activation_layers",
    "capture_activations",
    "measure_layer",
    "merge_top_k",
    "receptive_field",
    "top_activations",
    "EmbeddingCapture",
    "embedding_layer",
    "extract_embeddings",
    "knn_accuracy",
    "pca",
    "procrustes_align",
    "silhouette",
    "tsne",
    "LayerNotFoundError",
    "conv2d_layer_names",
    "filter_weights",
    "preserved_training_flags",
    "resolve_layers",
    "ATTRIBUTION_METHODS",
    "Attribution",
    "CamHeadError",
    "attribute",
    "cam",
    "grad_cam",
    "grad_cam_plus_plus",
    "guided_backprop",
    "guided_grad_cam",
    "integrated_gradients",
    "layer_cam",
    "occlusion",
    "saliency",
    "smooth_grad",
]
