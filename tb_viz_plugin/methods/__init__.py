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

__all__ = [
    "LayerNotFoundError",
    "conv2d_layer_names",
    "filter_weights",
    "preserved_training_flags",
    "resolve_layers",
]
