"""Plain-PyTorch entry points, one module per view (``log/<kind>.py``).

``log_<kind>`` computes the view through :mod:`tb_viz_plugin.methods` and writes it;
``write_<kind>`` writes results computed elsewhere (CPU tensors; it renders and encodes). The
Lightning callbacks compute with ``methods`` and call the ``write_*`` functions with the logger's
own writer.
"""

from tb_viz_plugin.log.core import make_tag, write_items, write_panel
from tb_viz_plugin.log.filters import log_filters, write_filters
from tb_viz_plugin.log.activation_maps import log_activation_maps, write_activation_maps
from tb_viz_plugin.log.top_activations import log_top_activations, write_top_activations
from tb_viz_plugin.log.attributions import attribution_tag, log_attributions, write_attributions
from tb_viz_plugin.log.embeddings import log_embeddings, write_embeddings
from tb_viz_plugin.log.activation_maximization import log_activation_maximization, write_activation_maximization
from tb_viz_plugin.log.deepdream import log_deepdream, write_deepdream
from tb_viz_plugin.log.network_dissection import log_network_dissection, write_network_dissection
from tb_viz_plugin.log.feature_inversion import inversion_tag, log_feature_inversion, write_feature_inversion
from tb_viz_plugin.log.neural_style import log_neural_style, write_neural_style

__all__ = [
    "attribution_tag",
    "log_activation_maps",
    "log_activation_maximization",
    "log_attributions",
    "log_deepdream",
    "log_embeddings",
    "log_feature_inversion",
    "inversion_tag",
    "log_filters",
    "log_network_dissection",
    "log_neural_style",
    "log_top_activations",
    "make_tag",
    "write_activation_maps",
    "write_activation_maximization",
    "write_attributions",
    "write_deepdream",
    "write_embeddings",
    "write_feature_inversion",
    "write_filters",
    "write_items",
    "write_network_dissection",
    "write_neural_style",
    "write_panel",
    "write_top_activations",
]
