"""Plain-PyTorch entry points: compute a visualization and write it through a ``SummaryWriter``.

The Lightning callbacks call these same functions with the logger's own writer. One module per
area (``filters.py``, ...); each ``log_*`` function is re-exported here.
"""

from tb_viz_plugin.log.core import log_items
from tb_viz_plugin.log.filters import log_filters

__all__ = ["log_filters", "log_items"]
