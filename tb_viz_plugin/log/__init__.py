"""Plain-PyTorch entry points: compute a visualization and write it through a ``SummaryWriter``.

The Lightning callbacks call these same functions with the logger's own writer. One module per
area (``filters.py``, ...); each ``log_*`` function is re-exported here.
"""

from tb_viz_plugin.log.core import log_items
from tb_viz_plugin.log.filters import log_filters
from tb_viz_plugin.log.attributions import log_attributions
from tb_viz_plugin.log.activations import log_activation_maps, log_top_activations, log_unit_top_k
from tb_viz_plugin.log.embeddings import log_embeddings
from tb_viz_plugin.log.optimized import log_activation_maximization, log_deepdream

__all__ = ["log_activation_maximization", "log_deepdream", "log_attributions", "log_activation_maps", "log_top_activations", "log_unit_top_k", "log_embeddings", "log_filters", "log_items"]
