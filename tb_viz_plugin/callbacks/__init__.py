"""Lightning callbacks (``pytorch_lightning``) that log tb-viz visualizations at epoch ends.

Example:
    >>> from pytorch_lightning import Trainer  # doctest: +SKIP
    >>> from pytorch_lightning.loggers import TensorBoardLogger  # doctest: +SKIP
    >>> from tb_viz_plugin.callbacks import FilterGrid  # doctest: +SKIP
    >>> trainer = Trainer(logger=TensorBoardLogger("logs"),
    ...                   callbacks=[FilterGrid(layers=["features.0", "features.4"])])  # doctest: +SKIP
"""

from tb_viz_plugin.callbacks.base import RankZeroCallback, VizCallback
from tb_viz_plugin.callbacks.activation_maximization import ActivationMaximization
from tb_viz_plugin.callbacks.deepdream import DeepDream
from tb_viz_plugin.callbacks.filter_grid import FilterGrid
from tb_viz_plugin.callbacks.attributions import AttributionMaps
from tb_viz_plugin.callbacks.activation_maps import ActivationMaps
from tb_viz_plugin.callbacks.top_activations import TopActivations
from tb_viz_plugin.callbacks.embeddings import Embeddings

__all__ = [
    "ActivationMaximization",
    "DeepDream",
    "AttributionMaps",
    "ActivationMaps",
    "TopActivations",
    "Embeddings",
    "FilterGrid",
    "RankZeroCallback",
    "VizCallback",
]
