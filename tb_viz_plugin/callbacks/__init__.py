"""Lightning callbacks (``pytorch_lightning``) that log tb-viz visualizations at epoch ends.

Example:
    >>> from pytorch_lightning import Trainer  # doctest: +SKIP
    >>> from pytorch_lightning.loggers import TensorBoardLogger  # doctest: +SKIP
    >>> from tb_viz_plugin.callbacks import FilterGrid  # doctest: +SKIP
    >>> trainer = Trainer(logger=TensorBoardLogger("logs"),
    ...                   callbacks=[FilterGrid(layers=["features.0", "features.4"])])  # doctest: +SKIP
"""

from tb_viz_plugin.callbacks.base import VizCallback
from tb_viz_plugin.callbacks.filter_grid import FilterGrid

__all__ = ["FilterGrid", "VizCallback"]
